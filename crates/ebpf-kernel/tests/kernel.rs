//! The crate against the running kernel: loading, test runs, the verifier's log, maps and
//! `lddw` relocation. Where the kernel refuses BPF (not root), every test says so on stderr and
//! passes — except under `CI`, where a refusal fails (CI machines run as root and must run
//! these).

use ebpf_kernel::{
    BPF_F_RDONLY_PROG, Command, KernelError, KernelObject, LoadOptions, Map, MapSpec, ObjectError,
    ObjectMap, ObjectProgram, PatchError, ProgramType, TestRun, UpdateFlags, create_map,
    create_map_of_maps, current_cpu, load_program, patch_map_fd, patch_map_value, per_cpu_values,
    pin_to_cpu, possible_cpus, probe,
};
use ebpf_maps::MapType;

/// Whether the kernel loads BPF here; prints why not (or fails under `CI`).
fn kernel() -> bool {
    match probe() {
        Ok(()) => true,
        Err(e) if e.is_refusal() => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the kernel tests, but {e}"
            );
            eprintln!("warning: skipping a kernel test: {e}");
            false
        }
        Err(e) => panic!("probing the kernel: {e}"),
    }
}

fn asm(text: &str) -> Vec<u8> {
    ebpf_isa::assemble(text).unwrap().to_bytes()
}

/// A minimal Ethernet-sized packet.
const PACKET: [u8; 14] = [7, 9, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

/// Reads packet byte 0 into r0 and copies byte 1 over it, after proving two bytes exist.
const XDP_SWAP: &str = "
    ldxw %r2, [%r1+4]
    ldxw %r1, [%r1+0]
    mov %r3, %r1
    add %r3, 2
    jgt %r3, %r2, +4
    ldxb %r0, [%r1+0]
    ldxb %r4, [%r1+1]
    stxb [%r1+0], %r4
    exit
    mov %r0, 99
    exit
";

#[test]
fn both_program_types_return_r0() {
    if !kernel() {
        return;
    }
    let insns = asm("mov %r0, 42\nexit");
    for ty in [
        ProgramType::SocketFilter,
        ProgramType::Xdp,
        ProgramType::SchedCls,
    ] {
        let program = load_program(ty, &insns, &LoadOptions::default()).unwrap();
        assert_eq!(program.program_type(), ty);
        let out = program.test_run(&TestRun::new(&PACKET)).unwrap();
        assert_eq!(out.retval, 42, "{ty}");
        if ty == ProgramType::SocketFilter {
            // A socket filter never sees the Ethernet header; the kernel zeroes it on the way
            // out.
            assert_eq!(out.data, [0; 14]);
        } else {
            assert_eq!(out.data, PACKET, "{ty}");
        }
        assert!(!out.data_truncated);
    }
}

#[test]
fn only_the_low_32_bits_of_r0_come_back() {
    if !kernel() {
        return;
    }
    let insns = asm("lddw %r0, 0x123456789abcdef0\nexit");
    let program = load_program(ProgramType::Xdp, &insns, &LoadOptions::default()).unwrap();
    let out = program.test_run(&TestRun::new(&PACKET).repeat(10)).unwrap();
    assert_eq!(out.retval, 0x9abc_def0);
}

#[test]
fn an_xdp_program_reads_and_writes_the_packet() {
    if !kernel() {
        return;
    }
    let program = load_program(ProgramType::Xdp, &asm(XDP_SWAP), &LoadOptions::default()).unwrap();
    let out = program.test_run(&TestRun::new(&PACKET)).unwrap();
    assert_eq!(out.retval, 7);
    let mut expected = PACKET;
    expected[0] = 9;
    assert_eq!(out.data, expected);
}

#[test]
fn a_short_output_buffer_truncates_the_packet() {
    if !kernel() {
        return;
    }
    let program = load_program(ProgramType::Xdp, &asm(XDP_SWAP), &LoadOptions::default()).unwrap();
    let run = TestRun {
        data_out_capacity: Some(4),
        ..TestRun::new(&PACKET)
    };
    let out = program.test_run(&run).unwrap();
    assert_eq!(out.retval, 7, "the program still ran");
    assert!(out.data_truncated);
    assert_eq!(out.data, [9, 9, 3, 4]);
}

#[test]
fn a_rejection_carries_the_verifiers_log() {
    if !kernel() {
        return;
    }
    // r0 is never written.
    let err = load_program(ProgramType::Xdp, &asm("exit"), &LoadOptions::default()).unwrap_err();
    let KernelError::Rejected { errno, log } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*errno, 13, "EACCES");
    assert!(log.contains("R0 !read_ok"), "{log}");
    assert!(err.to_string().contains("R0 !read_ok"), "{err}");
    // A packet read the program did not bounds-check.
    let err = load_program(
        ProgramType::Xdp,
        &asm("ldxw %r1, [%r1+0]\nldxb %r0, [%r1+0]\nexit"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, KernelError::Rejected { log, .. } if log.contains("invalid access to packet")),
        "{err:?}"
    );
}

#[test]
fn a_rejection_without_a_log_is_still_a_rejection() {
    if !kernel() {
        return;
    }
    let options = LoadOptions {
        log_on_rejection: false,
        ..LoadOptions::default()
    };
    let err = load_program(ProgramType::Xdp, &asm("exit"), &options).unwrap_err();
    assert_eq!(
        err,
        KernelError::Rejected {
            errno: 13,
            log: String::new()
        }
    );
}

#[test]
fn a_tiny_log_buffer_grows() {
    if !kernel() {
        return;
    }
    let options = LoadOptions {
        log_size: 1,
        ..LoadOptions::default()
    };
    let err = load_program(ProgramType::Xdp, &asm("exit"), &options).unwrap_err();
    assert!(
        matches!(&err, KernelError::Rejected { log, .. } if log.contains("R0 !read_ok")),
        "{err:?}"
    );
}

#[test]
fn bad_arguments_are_refused_before_the_kernel_sees_them() {
    // No kernel needed: these never reach the syscall.
    let invalid = |e: KernelError| matches!(e, KernelError::InvalidArgument { .. });
    let options = LoadOptions::default();
    assert!(invalid(
        load_program(ProgramType::Xdp, &[], &options).unwrap_err()
    ));
    assert!(invalid(
        load_program(ProgramType::Xdp, &[0; 12], &options).unwrap_err()
    ));
    let insns = asm("mov %r0, 0\nexit");
    let named = |name| LoadOptions {
        name,
        ..LoadOptions::default()
    };
    let err = load_program(ProgramType::Xdp, &insns, &named("has space")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BPF_PROG_LOAD: program name \"has space\" is not at most 15 bytes of [A-Za-z0-9_.]"
    );
    let long = "a_name_of_16_chr";
    assert!(invalid(
        load_program(ProgramType::Xdp, &insns, &named(long)).unwrap_err()
    ));
    let nul = LoadOptions {
        license: "G\0PL",
        ..LoadOptions::default()
    };
    assert!(invalid(
        load_program(ProgramType::Xdp, &insns, &nul).unwrap_err()
    ));
}

fn array(value_size: u32, max_entries: u32) -> Map {
    create_map(&MapSpec {
        map_type: MapType::Array.kernel_id(),
        key_size: 4,
        value_size,
        max_entries,
        flags: 0,
        name: "test_array",
    })
    .unwrap()
}

#[test]
fn array_maps_hold_what_is_written() {
    if !kernel() {
        return;
    }
    let map = array(8, 4);
    assert_eq!(map.map_type(), MapType::Array.kernel_id());
    assert_eq!(
        (map.key_size(), map.value_size(), map.max_entries()),
        (4, 8, 4)
    );
    assert_eq!(map.value_len(), 8);
    // Arrays start zeroed and have every key.
    assert_eq!(map.lookup(&2u32.to_le_bytes()).unwrap(), Some(vec![0; 8]));
    map.update(&2u32.to_le_bytes(), &42u64.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    assert_eq!(
        map.lookup(&2u32.to_le_bytes()).unwrap(),
        Some(42u64.to_le_bytes().to_vec())
    );
    assert_eq!(
        map.lookup(&4u32.to_le_bytes()).unwrap(),
        None,
        "past the end"
    );
    let keys: Vec<Vec<u8>> = map.keys().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        keys,
        (0u32..4)
            .map(|k| k.to_le_bytes().to_vec())
            .collect::<Vec<_>>()
    );
    // Wrong sizes never reach the kernel.
    let err = map.lookup(&[0; 8]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "BPF_MAP_LOOKUP_ELEM: key of 8 bytes for a map with 4-byte keys"
    );
    let err = map.update(&[0; 4], &[0; 4], UpdateFlags::Any).unwrap_err();
    assert!(matches!(
        err,
        KernelError::InvalidArgument {
            command: Command::MapUpdateElem,
            ..
        }
    ));
}

#[test]
fn hash_maps_insert_iterate_and_delete() {
    if !kernel() {
        return;
    }
    let map = create_map(&MapSpec {
        map_type: MapType::Hash.kernel_id(),
        key_size: 2,
        value_size: 3,
        max_entries: 8,
        flags: 0,
        name: "test_hash",
    })
    .unwrap();
    assert_eq!(map.next_key(None).unwrap(), None, "empty");
    map.update(&[1, 0], &[1, 2, 3], UpdateFlags::NoExist)
        .unwrap();
    map.update(&[2, 0], &[4, 5, 6], UpdateFlags::Any).unwrap();
    let err = map
        .update(&[1, 0], &[0; 3], UpdateFlags::NoExist)
        .unwrap_err();
    assert_eq!(err.errno(), Some(17), "EEXIST: {err}");
    let err = map
        .update(&[3, 0], &[0; 3], UpdateFlags::Exist)
        .unwrap_err();
    assert_eq!(err.errno(), Some(2), "ENOENT: {err}");
    let mut keys: Vec<Vec<u8>> = map.keys().collect::<Result<_, _>>().unwrap();
    keys.sort();
    assert_eq!(keys, [vec![1, 0], vec![2, 0]]);
    assert!(map.delete(&[1, 0]).unwrap());
    assert!(!map.delete(&[1, 0]).unwrap(), "already gone");
    assert_eq!(map.lookup(&[1, 0]).unwrap(), None);
    assert_eq!(map.lookup_and_delete(&[2, 0]).unwrap(), Some(vec![4, 5, 6]));
    assert_eq!(map.next_key(None).unwrap(), None);
}

#[test]
fn per_cpu_values_come_once_per_cpu() {
    if !kernel() {
        return;
    }
    let cpus = possible_cpus().unwrap();
    assert!(cpus >= 1);
    let map = create_map(&MapSpec {
        map_type: MapType::PerCpuArray.kernel_id(),
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        flags: 0,
        name: "test_percpu",
    })
    .unwrap();
    assert_eq!(map.value_len(), 8 * cpus, "each copy padded to 8 bytes");
    let values: Vec<u8> = (0..map.value_len() as u8).collect();
    map.update(&[0; 4], &values, UpdateFlags::Any).unwrap();
    let back = map.lookup(&[0; 4]).unwrap().unwrap();
    for cpu in 0..cpus {
        let copy = &back[8 * cpu..8 * cpu + 8];
        assert_eq!(&copy[..4], &values[8 * cpu..8 * cpu + 4], "cpu {cpu}");
    }
}

#[test]
fn queues_push_peek_and_pop_without_keys() {
    if !kernel() {
        return;
    }
    let map = create_map(&MapSpec {
        map_type: MapType::Queue.kernel_id(),
        key_size: 0,
        value_size: 4,
        max_entries: 4,
        flags: 0,
        name: "test_queue",
    })
    .unwrap();
    map.update(&[], &1u32.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    map.update(&[], &2u32.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    assert_eq!(map.lookup(&[]).unwrap(), Some(1u32.to_le_bytes().to_vec()));
    assert_eq!(
        map.lookup_and_delete(&[]).unwrap(),
        Some(1u32.to_le_bytes().to_vec())
    );
    assert_eq!(
        map.lookup_and_delete(&[]).unwrap(),
        Some(2u32.to_le_bytes().to_vec())
    );
    assert_eq!(map.lookup_and_delete(&[]).unwrap(), None);
}

#[test]
fn a_program_updates_a_map_through_a_patched_lddw() {
    if !kernel() {
        return;
    }
    let map = array(8, 1);
    // *(u32 *)(r10 - 4) = 0; r0 = map_lookup_elem(map, r10 - 4); if found, *r0 += 3.
    let mut insns = asm("
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd 0
        call 1
        jeq %r0, 0, +2
        mov %r1, 3
        lock add [%r0+0], %r1
        mov %r0, 1
        exit
    ");
    assert_eq!(
        patch_map_fd(&mut insns, 2, &map),
        Err(PatchError::NotLddw { pc: 2 })
    );
    patch_map_fd(&mut insns, 3, &map).unwrap();
    let program = load_program(ProgramType::Xdp, &insns, &LoadOptions::default()).unwrap();
    drop(program.test_run(&TestRun::new(&PACKET).repeat(5)).unwrap());
    assert_eq!(
        map.lookup(&[0; 4]).unwrap(),
        Some(15u64.to_le_bytes().to_vec()),
        "five runs, 3 each"
    );
}

/// Map-in-map as the kernel does it, the behaviour our own must match: an array of maps whose
/// slots hold arrays; a program looks a slot up and uses the result as the map of a second
/// lookup; an empty slot is NULL. The verifier refuses a dereference of the slot's map and a
/// program's update of the outer map.
#[test]
fn an_array_of_maps_hands_its_inner_map_to_the_program() {
    if !kernel() {
        return;
    }
    let inner = array(8, 1);
    let outer = create_map_of_maps(
        &MapSpec {
            map_type: 12,
            key_size: 4,
            value_size: 4,
            max_entries: 2,
            flags: 0,
            name: "test_outer",
        },
        &inner,
    )
    .unwrap();
    outer.set_map(&0u32.to_le_bytes(), &inner).unwrap();
    // A map unlike the template (another value size) is refused.
    assert!(outer.set_map(&1u32.to_le_bytes(), &array(16, 1)).is_err());
    // The host reads a slot as the inner map's id.
    let id = outer.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    assert_eq!(id.len(), 4);
    assert_ne!(id, [0; 4]);
    assert_eq!(outer.lookup(&1u32.to_le_bytes()).unwrap(), None, "empty");
    // key = *(u32 *)(r10 - 4) = r6; inner = lookup(outer, key); NULL: return 1;
    // value = lookup(inner, 0); NULL: return 2; *value += 3; return 0.
    let program = |slot: i32| {
        let mut insns = asm(&format!(
            "
            stw [%r10-4], {slot}
            mov %r2, %r10
            add %r2, -4
            lddw %r1, map_fd 0
            call 1
            jeq %r0, 0, +10
            mov %r1, %r0
            stw [%r10-4], 0
            mov %r2, %r10
            add %r2, -4
            call 1
            jeq %r0, 0, +6
            mov %r1, 3
            lock add [%r0+0], %r1
            mov %r0, 0
            exit
            mov %r0, 1
            exit
            mov %r0, 2
            exit
        "
        ));
        patch_map_fd(&mut insns, 3, &outer).unwrap();
        load_program(ProgramType::Xdp, &insns, &LoadOptions::default()).unwrap()
    };
    let run = |slot| {
        program(slot)
            .test_run(&TestRun::new(&PACKET).repeat(5))
            .unwrap()
            .retval
    };
    assert_eq!(run(0), 0);
    assert_eq!(
        inner.lookup(&[0; 4]).unwrap(),
        Some(15u64.to_le_bytes().to_vec()),
        "five runs through the outer map, 3 each"
    );
    assert_eq!(run(1), 1, "an empty slot is NULL");
    assert!(outer.delete(&0u32.to_le_bytes()).unwrap());
    assert_eq!(run(0), 1, "a slot the host emptied is NULL");
    // The slot's map is no pointer to memory a program writes (the kernel lets a privileged
    // program read `struct bpf_map`'s fields through it, by the kernel's BTF: that is kernel
    // memory, which this VM has not, so its verifier refuses reads too).
    let rejected = |text: &str| {
        let mut insns = asm(text);
        patch_map_fd(&mut insns, 3, &outer).unwrap();
        match load_program(ProgramType::Xdp, &insns, &LoadOptions::default()) {
            Err(KernelError::Rejected { log, .. }) => log,
            other => panic!("{other:?}"),
        }
    };
    let log = rejected(
        "
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd 0
        call 1
        jeq %r0, 0, +1
        stdw [%r0+0], 1
        exit
    ",
    );
    assert!(log.contains("bpf_map"), "{log}");
    // Programs may not update an outer map.
    let log = rejected(
        "
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd 0
        mov %r3, %r2
        mov %r4, 0
        call 2
        exit
    ",
    );
    assert!(log.contains("cannot pass map_type 12"), "{log}");
}

#[test]
fn a_program_reads_a_map_value_directly() {
    if !kernel() {
        return;
    }
    let map = array(16, 1);
    let mut value = [0u8; 16];
    value[8..].copy_from_slice(&0x5566_7788u64.to_le_bytes());
    map.update(&[0; 4], &value, UpdateFlags::Any).unwrap();
    // r1 = &value[8]; r0 = *(u64 *)r1
    let mut insns = asm("lddw %r1, map_value 0\nldxdw %r0, [%r1+0]\nexit");
    patch_map_value(&mut insns, 0, &map, 8).unwrap();
    let program = load_program(ProgramType::SocketFilter, &insns, &LoadOptions::default()).unwrap();
    assert_eq!(
        program.test_run(&TestRun::new(&PACKET)).unwrap().retval,
        0x5566_7788
    );
    map.freeze().unwrap();
    let err = map.update(&[0; 4], &value, UpdateFlags::Any).unwrap_err();
    assert_eq!(err.errno(), Some(1), "EPERM after freeze: {err}");
}

/// The refusal path, for real: this test runs itself again as `nobody` (through util-linux's
/// `setpriv`) where the kernel forbids unprivileged BPF, and the child checks that every
/// creating command says [`Refusal::NotPermitted`](ebpf_kernel::Refusal::NotPermitted).
#[test]
fn an_unprivileged_process_is_refused() {
    use std::os::unix::fs::MetadataExt;

    const CHILD: &str = "EBPF_KERNEL_TEST_UNPRIVILEGED_CHILD";
    let refused = |e: &KernelError| {
        matches!(
            e,
            KernelError::Refused {
                reason: ebpf_kernel::Refusal::NotPermitted,
                ..
            }
        )
    };
    if std::env::var_os(CHILD).is_some() {
        let e = probe().unwrap_err();
        assert!(refused(&e), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("the kernel refuses BPF (BPF_PROG_LOAD): not permitted")
        );
        let e = create_map(&MapSpec {
            map_type: MapType::Array.kernel_id(),
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            flags: 0,
            name: "",
        })
        .unwrap_err();
        assert!(refused(&e), "{e:?}");
        return;
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|v| v.trim() != "0");
    if !root || !disabled {
        eprintln!(
            "warning: skipping the unprivileged run: needs root and unprivileged BPF disabled"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args([
            "--exact",
            "an_unprivileged_process_is_refused",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .status();
    match status {
        Ok(status) => assert!(status.success(), "the unprivileged child failed: {status}"),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI needs setpriv: {e}");
            eprintln!("warning: skipping the unprivileged run: setpriv: {e}");
        }
    }
}

/// A whole object: a ring buffer and a per-CPU counter used by an entry program that
/// tail-calls a second one through a prog array the object initialises. Runs on a pinned
/// thread: every run lands in that CPU's copy, and every record comes back from the ring.
#[test]
fn an_object_loads_with_its_maps_and_prog_array() {
    if !kernel() {
        return;
    }
    let map = |name: &str, map_type: MapType, key_size, value_size, max_entries| ObjectMap {
        name: name.to_string(),
        map_type: map_type.kernel_id(),
        key_size,
        value_size,
        max_entries,
        flags: 0,
        initial_programs: Vec::new(),
        initial_value: None,
        inner: None,
        initial_maps: Vec::new(),
    };
    let maps = vec![
        map("events", MapType::RingBuf, 0, 0, 4096),
        map("per_cpu_count", MapType::PerCpuArray, 4, 8, 1),
        ObjectMap {
            initial_programs: vec![(1, "second".to_string())],
            ..map("jump", MapType::ProgArray, 4, 4, 2)
        },
    ];
    // entry: count on this CPU, then tail-call slot 1 (falls through to return 1 if empty).
    let entry = asm("
        mov %r6, %r1
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        lddw %r1, map_fd 1
        call 1
        jeq %r0, 0, +2
        mov %r1, 1
        lock add [%r0+0], %r1
        mov %r1, %r6
        lddw %r2, map_fd 2
        mov %r3, 1
        call 12
        mov %r0, 1
        exit
    ");
    // second: a 12-byte record (an 8-byte marker and 4 bytes of the packet's length), XDP_TX.
    let second = asm("
        ldxw %r2, [%r1+4]
        ldxw %r1, [%r1+0]
        sub %r2, %r1
        stxw [%r10-8], %r2
        stdw [%r10-16], 0x5e0c
        mov %r2, %r10
        add %r2, -16
        lddw %r1, map_fd 0
        mov %r3, 12
        mov %r4, 0
        call 130
        mov %r0, 3
        exit
    ");
    let programs = vec![
        ObjectProgram {
            name: "entry".into(),
            program_type: ProgramType::Xdp,
            insns: entry,
        },
        ObjectProgram {
            name: "second".into(),
            program_type: ProgramType::Xdp,
            insns: second,
        },
    ];
    let object = KernelObject::load(&maps, &programs, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let ring = object.ring("events").unwrap();
    assert!(object.ring("per_cpu_count").is_none());
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(0).unwrap();
            assert_eq!(current_cpu().unwrap(), 0);
            let entry = object.program("entry").unwrap();
            for len in [14usize, 20, 60] {
                let out = entry.test_run(&TestRun::new(&vec![0; len])).unwrap();
                assert_eq!(out.retval, 3, "the tail call ran `second`");
                let mut expected = 0x5e0cu64.to_le_bytes().to_vec();
                expected.extend_from_slice(&(len as u32).to_le_bytes());
                assert_eq!(ring.drain().unwrap(), [expected]);
            }
            assert_eq!(ring.drain().unwrap(), Vec::<Vec<u8>>::new(), "drained");
        });
    });
    let counts = object.map("per_cpu_count").unwrap().entries().unwrap();
    assert_eq!(counts.len(), 1);
    let copies = per_cpu_values(&counts[0].1, 8).unwrap();
    assert_eq!(copies.len(), possible_cpus().unwrap());
    assert_eq!(copies[0], 3u64.to_le_bytes(), "three runs on CPU 0");
    assert!(copies[1..].iter().all(|c| c.iter().all(|&b| b == 0)));
    // The prog array lists the filled slot only.
    let slots = object.map("jump").unwrap().entries().unwrap();
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].0, 1u32.to_le_bytes());
}

/// Global data as libbpf gives it to the kernel: `.data` (a counter the program increments,
/// starting from its initial value) and a frozen `.rodata` (read-only for programs and host),
/// reached with `lddw map_value`; the counter persists from run to run.
#[test]
fn global_data_maps_get_their_initial_values_and_rodata_is_frozen() {
    if !kernel() {
        return;
    }
    let global = |name: &str, flags, value: &[u8]| ObjectMap {
        name: name.to_string(),
        map_type: MapType::Array.kernel_id(),
        key_size: 4,
        value_size: value.len() as u32,
        max_entries: 1,
        flags,
        initial_programs: Vec::new(),
        initial_value: Some(value.to_vec()),
        inner: None,
        initial_maps: Vec::new(),
    };
    let maps = vec![
        global(".data", 0, &100u64.to_le_bytes()),
        global(".rodata", BPF_F_RDONLY_PROG, &[0, 0, 0, 0, 7, 0, 0, 0]),
    ];
    // r0 = ++counter * 1000 + rodata[1] (as u32, byte offset 4).
    let program = asm("
        lddw %r1, map_value 0
        ldxdw %r0, [%r1]
        add %r0, 1
        stxdw [%r1], %r0
        mul %r0, 1000
        lddw %r2, map_value 0x400000001
        ldxw %r3, [%r2]
        add %r0, %r3
        exit
    ");
    let programs = vec![ObjectProgram {
        name: "count".into(),
        program_type: ProgramType::Xdp,
        insns: program,
    }];
    let object = KernelObject::load(&maps, &programs, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let count = object.program("count").unwrap();
    for n in 101..104u32 {
        let out = count.test_run(&TestRun::new(&[0; 64])).unwrap();
        assert_eq!(out.retval, n * 1000 + 7);
    }
    let data = object.map(".data").unwrap();
    assert_eq!(
        data.lookup(&0u32.to_le_bytes()),
        Ok(Some(103u64.to_le_bytes().to_vec()))
    );
    let rodata = object.map(".rodata").unwrap();
    let err = rodata
        .update(&0u32.to_le_bytes(), &[0; 8], UpdateFlags::Any)
        .unwrap_err();
    assert_eq!(err.errno(), Some(1), "EPERM: {err}");
}

#[test]
fn an_object_names_what_failed() {
    if !kernel() {
        return;
    }
    let programs = vec![ObjectProgram {
        name: "reads_r5".into(),
        program_type: ProgramType::Xdp,
        insns: asm("mov %r0, %r5\nexit"),
    }];
    let err = KernelObject::load(&[], &programs, &LoadOptions::default()).unwrap_err();
    let ObjectError::Program { program, error } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(program, "reads_r5");
    assert!(
        matches!(error, KernelError::Rejected { log, .. } if log.contains("R5 !read_ok")),
        "{error:?}"
    );
    let map = ObjectMap {
        name: "too_big".into(),
        map_type: MapType::Array.kernel_id(),
        key_size: 4,
        value_size: 8,
        max_entries: 0,
        flags: 0,
        initial_programs: Vec::new(),
        initial_value: None,
        inner: None,
        initial_maps: Vec::new(),
    };
    let err = KernelObject::load(&[map], &[], &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ObjectError::Map { map, error } if map == "too_big" && error.errno() == Some(22)),
        "{err:?}"
    );
}
