//! Kernel helpers' edge cases on hand-written programs: update flags, deletes, full maps,
//! missed lookups, the tail-call limit, bad map handles, helpers we do not provide — on every
//! engine.

use std::sync::Arc;

use crate::packets::ones_sum;
use ebpf_vm::isa::{Imm64Kind, Insn, Program};
use ebpf_vm::maps::{MapSpec, MapType, Maps, UpdateFlags};
use ebpf_vm::{
    Context, Engine, HelperError, KernelHelpers, LoadError, Packet, ProgramKind, TrapKind, Vm,
};

/// Assembles `text`; `lddw %rX, 0xfeed00000000000N` becomes a reference to map `N`.
pub(crate) fn program(text: &str) -> Program {
    let insns = ebpf_vm::isa::assemble(text)
        .unwrap()
        .into_insns()
        .into_iter()
        .map(|insn| match insn {
            Insn::LoadImm64 { dst, imm, .. } if imm >> 32 == 0xfeed_0000 => Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::MapFd,
                imm: imm & 0xffff_ffff,
            },
            other => other,
        })
        .collect();
    Program::from_insns(insns)
}

fn load(engine: Engine, text: &str, maps: &Arc<Maps>) -> Vm {
    Vm::builder()
        .engine(engine)
        .budget(100_000)
        .kernel_helpers(KernelHelpers::new())
        .load_with_maps(program(text), ProgramKind::Xdp, Arc::clone(maps))
        .unwrap_or_else(|e| panic!("{engine}: {e}"))
}

fn run(vm: &Vm) -> Result<ebpf_vm::Outcome, ebpf_vm::Trap> {
    let mut packet = Packet::new(&[0u8; 64]).unwrap();
    vm.run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp))
}

fn r0(vm: &Vm) -> i64 {
    run(vm)
        .unwrap_or_else(|t| panic!("{}: {t}", vm.engine()))
        .r0 as i64
}

fn hash(max_entries: u32) -> Arc<Maps> {
    let mut maps = Maps::new(1);
    maps.create("h", MapSpec::new(MapType::Hash, 4, 8, max_entries))
        .unwrap();
    Arc::new(maps)
}

/// `map_update_elem(h, &key, &value, flags)` with key 7 (or `key`) and value 42.
fn update(key: u32, flags: u64) -> String {
    format!(
        "stw [%r10-4], {key}\nstdw [%r10-16], 42\nlddw %r1, 0xfeed000000000000\n\
         mov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -16\nmov %r4, {flags}\n\
         call 2\nexit"
    )
}

const ENOENT: i64 = -2;
const E2BIG: i64 = -7;
const EEXIST: i64 = -17;
const EINVAL: i64 = -22;

#[test]
fn update_flags_follow_the_kernel() {
    for &engine in Engine::ALL {
        let maps = hash(2);
        let h = maps.get("h").unwrap();
        let key = 7u32.to_le_bytes();
        assert_eq!(
            r0(&load(engine, &update(7, 2), &maps)),
            ENOENT,
            "EXIST, missing"
        );
        assert_eq!(
            r0(&load(engine, &update(7, 1), &maps)),
            0,
            "NOEXIST, missing"
        );
        assert_eq!(h.lookup(&key).unwrap(), Some(42u64.to_le_bytes().to_vec()));
        assert_eq!(
            r0(&load(engine, &update(7, 1), &maps)),
            EEXIST,
            "NOEXIST, present"
        );
        assert_eq!(r0(&load(engine, &update(7, 2), &maps)), 0, "EXIST, present");
        assert_eq!(r0(&load(engine, &update(7, 0), &maps)), 0, "ANY");
        assert_eq!(
            r0(&load(engine, &update(7, 4), &maps)),
            EINVAL,
            "unknown flag"
        );
        assert_eq!(r0(&load(engine, &update(8, 0), &maps)), 0);
        assert_eq!(
            r0(&load(engine, &update(9, 0), &maps)),
            E2BIG,
            "full: {engine}"
        );
        assert_eq!(h.len(), 2);
    }
}

#[test]
fn deletes_and_missed_lookups() {
    let delete = "stw [%r10-4], 7\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\n\
                  call 3\nexit";
    // r0 = the looked-up pointer, or 1000 + the value it points to.
    let lookup = "stw [%r10-4], 7\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\n\
                  call 1\njeq %r0, 0, +2\nldxdw %r0, [%r0]\nadd %r0, 1000\nexit";
    for &engine in Engine::ALL {
        let maps = hash(4);
        let h = maps.get("h").unwrap();
        assert_eq!(
            r0(&load(engine, lookup, &maps)),
            0,
            "NULL for a missing key"
        );
        assert_eq!(r0(&load(engine, delete, &maps)), ENOENT);
        h.update(&7u32.to_le_bytes(), &5u64.to_le_bytes(), UpdateFlags::Any)
            .unwrap();
        assert_eq!(r0(&load(engine, lookup, &maps)), 1005, "{engine}");
        assert_eq!(r0(&load(engine, delete, &maps)), 0);
        assert!(h.is_empty());
        assert_eq!(r0(&load(engine, lookup, &maps)), 0);
    }
}

#[test]
fn bad_map_handles_trap_and_never_reach_memory() {
    let not_a_map = "mov %r1, 1234\nmov %r2, %r10\ncall 1\nexit";
    // A map handle is in no region: dereferencing it traps.
    let deref_handle = "lddw %r1, 0xfeed000000000000\nldxdw %r0, [%r1]\nexit";
    for &engine in Engine::ALL {
        let maps = hash(4);
        let trap = run(&load(engine, not_a_map, &maps)).unwrap_err();
        assert!(
            matches!(trap.kind, TrapKind::HelperFailed { id: 1, .. }),
            "{engine}: {trap}"
        );
        assert_eq!(trap.pc, 2);
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .kernel_helpers(KernelHelpers::new())
            .load_with_maps(program(deref_handle), ProgramKind::Xdp, Arc::clone(&maps))
            .unwrap();
        let trap = run(&vm).unwrap_err();
        assert!(
            matches!(trap.kind, TrapKind::OutOfBounds { write: false, .. }),
            "{engine}: {trap}"
        );
    }
}

#[test]
fn tail_calls_stop_after_33() {
    // Counts its runs in array[0], then tail-calls itself (prog array slot 0 = program 0);
    // when the tail call fails, returns its result.
    let text = "mov %r6, %r1\nstw [%r10-4], 0\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\n\
                add %r2, -4\ncall 1\njeq %r0, 0, +2\nmov %r1, 1\nlock add [%r0], %r1\n\
                mov %r1, %r6\nlddw %r2, 0xfeed000000000001\nmov %r3, 0\ncall 12\nexit";
    for &engine in Engine::ALL {
        let mut maps = Maps::new(1);
        let counts = maps
            .create("counts", MapSpec::new(MapType::Array, 4, 8, 1))
            .unwrap();
        let progs = maps
            .create("progs", MapSpec::new(MapType::ProgArray, 4, 4, 1))
            .unwrap();
        let vm = load(engine, text, &Arc::new(maps));
        let out = run(&vm).unwrap_or_else(|t| panic!("{engine}: {t}"));
        assert_eq!((out.r0 as i64, out.tail_calls), (ENOENT, 0), "empty slot");
        progs
            .update(&0u32.to_le_bytes(), &0u32.to_le_bytes(), UpdateFlags::Any)
            .unwrap();
        let out = run(&vm).unwrap_or_else(|t| panic!("{engine}: {t}"));
        assert_eq!((out.r0 as i64, out.tail_calls), (ENOENT, 33), "{engine}");
        let n = counts.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
        assert_eq!(n, (1u64 + 34).to_le_bytes(), "1 run, then 1 + 33: {engine}");
    }
}

#[test]
fn a_helper_we_do_not_provide_is_refused_by_name() {
    let maps = hash(1);
    let e = Vm::builder()
        .kernel_helpers(KernelHelpers::new())
        .load_with_maps(program("call 4\nexit"), ProgramKind::Xdp, maps)
        .unwrap_err();
    assert_eq!(e, LoadError::UnsupportedHelper { id: 4 });
    assert!(e.to_string().contains("helper 4 (bpf_probe_read)"), "{e}");
    // Without opting in, a program that uses maps is refused with their names.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/bpf/xdp_counter.o"
    ))
    .unwrap();
    let e = Vm::builder()
        .load_elf(&bytes, ebpf_vm::Selector::Only)
        .unwrap_err();
    assert!(matches!(e, LoadError::UsesMaps { .. }), "{e}");
    // Opted in, `load_elf` creates the maps.
    let vm = Vm::builder()
        .kernel_helpers(KernelHelpers::new())
        .load_elf(&bytes, ebpf_vm::Selector::Only)
        .unwrap();
    assert_eq!(vm.maps().unwrap().len(), 1);
    assert_eq!(r0(&vm), 2, "XDP_PASS");
}

#[test]
fn clock_random_and_cpu_helpers() {
    let text = "call 5\nmov %r6, %r0\ncall 118\nadd %r6, %r0\ncall 125\nadd %r6, %r0\n\
                call 160\nadd %r6, %r0\ncall 8\nadd %r0, %r6\nexit";
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new().clock(|| 8_000_000_000))
            .load_with_maps(program(text), ProgramKind::Xdp, hash(1))
            .unwrap();
        // ktime 8e9 ns + jiffies at 250 Hz (2,000) + boot and coarse ktime (8e9 each) + CPU 0.
        assert_eq!(r0(&vm), 24_000_002_000, "{engine}");
    }
    let random = "call 7\nexit";
    let draw = |seed| {
        let vm = Vm::builder()
            .kernel_helpers(KernelHelpers::new().prandom_seed(seed))
            .load_with_maps(program(random), ProgramKind::Xdp, hash(1))
            .unwrap();
        (r0(&vm), r0(&vm))
    };
    let (a, b) = draw(1);
    assert_eq!(draw(1), (a, b), "deterministic per seed");
    assert_ne!(a, b, "a sequence, not a constant");
    assert!(a >= 0 && a <= i64::from(u32::MAX));
}

fn load_kind(engine: Engine, text: &str, kind: ProgramKind, maps: Arc<Maps>) -> Vm {
    Vm::builder()
        .engine(engine)
        .budget(100_000)
        .kernel_helpers(KernelHelpers::new())
        .load_with_maps(program(text), kind, maps)
        .unwrap_or_else(|e| panic!("{engine}: {e}"))
}

/// A UDP datagram's checksum over the IPv4 pseudo-header (0xffff when valid).
fn udp_sum(frame: &[u8]) -> u32 {
    let mut p = Vec::new();
    p.extend_from_slice(&frame[26..34]);
    p.extend_from_slice(&[0, 17]);
    p.extend_from_slice(&((frame.len() - 34) as u16).to_be_bytes());
    p.extend_from_slice(&frame[34..]);
    ones_sum(&p)
}

#[test]
fn store_bytes_and_checksum_replacement_keep_checksums_valid() {
    // A socket filter (its view starts at the IPv4 header) rewrites the destination address
    // and fixes the IPv4 checksum (l3, 4-byte field) and the UDP checksum (l4, pseudo-header).
    let text = "mov %r6, %r1\n\
        mov %r1, %r6\nmov %r2, 16\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 4\ncall 26\n\
        stw [%r10-16], 0x0a0b0c0d\n\
        mov %r1, %r6\nmov %r2, 16\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 4\nmov %r5, 0\ncall 9\n\
        mov %r7, %r0\n\
        ldxw %r3, [%r10-8]\nldxw %r4, [%r10-16]\nmov %r1, %r6\nmov %r2, 10\nmov %r5, 4\ncall 10\n\
        add %r7, %r0\n\
        ldxw %r3, [%r10-8]\nldxw %r4, [%r10-16]\nmov %r1, %r6\nmov %r2, 26\nmov %r5, 0x14\ncall 11\n\
        add %r0, %r7\nexit";
    let mut frame = crate::packets::ipv4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        &crate::packets::udp(53, 53, b"query"),
    );
    let c = !(ones_sum(&{
        let mut p = Vec::new();
        p.extend_from_slice(&frame[26..34]);
        p.extend_from_slice(&[0, 17, 0, 13]);
        p.extend_from_slice(&frame[34..]);
        p
    }) as u16);
    frame[40..42].copy_from_slice(&c.to_be_bytes());
    assert_eq!(udp_sum(&frame), 0xffff);
    for &engine in Engine::ALL {
        let vm = load_kind(engine, text, ProgramKind::SocketFilter, hash(1));
        let mut packet = Packet::new(&frame).unwrap();
        let ctx = Context::default_for(ProgramKind::SocketFilter);
        let out = vm.run_packet(&mut packet, &ctx).unwrap();
        assert_eq!(out.r0, 0, "every helper succeeded: {engine}");
        let out = packet.bytes();
        assert_eq!(out[30..34], [13, 12, 11, 10], "{engine}");
        assert_eq!(ones_sum(&out[14..34]), 0xffff, "IPv4 checksum: {engine}");
        assert_eq!(udp_sum(out), 0xffff, "UDP checksum: {engine}");
    }
}

#[test]
fn xdp_head_and_tail_adjustments_move_the_packet() {
    // Grow the head by 4 bytes and write 0xaa there (bounds-checked), shrink the tail by 10,
    // grow it by 2 (zeroed); an impossible head move fails with -EINVAL (added to r0).
    let text = "mov %r6, %r1\n\
        mov %r1, %r6\nmov %r2, -4\ncall 44\nmov %r7, %r0\n\
        ldxw %r2, [%r6+0]\nldxw %r3, [%r6+4]\nmov %r4, %r2\nadd %r4, 4\njgt %r4, %r3, +1\n\
        stw [%r2], -1\n\
        mov %r1, %r6\nmov %r2, -10\ncall 65\nadd %r7, %r0\n\
        mov %r1, %r6\nmov %r2, 2\ncall 65\nadd %r7, %r0\n\
        mov %r1, %r6\nmov %r2, -1000\ncall 44\nadd %r7, %r0\n\
        mov %r0, %r7\nexit";
    let frame: Vec<u8> = (1..=40).collect();
    for &engine in Engine::ALL {
        let vm = load_kind(engine, text, ProgramKind::Xdp, hash(1));
        let mut packet = Packet::new(&frame).unwrap();
        let out = vm
            .run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp))
            .unwrap();
        assert_eq!(out.r0 as i64, EINVAL, "{engine}");
        let mut want = vec![0xff; 4];
        want.extend_from_slice(&frame[..30]);
        want.extend_from_slice(&[0, 0]);
        assert_eq!(packet.bytes(), want, "{engine}");
    }
}

#[test]
fn redirect_hash_and_trace_printk() {
    for &engine in Engine::ALL {
        let vm = load_kind(
            engine,
            "mov %r1, 7\nmov %r2, 0\ncall 23\nexit",
            ProgramKind::Xdp,
            hash(1),
        );
        let out = run(&vm).unwrap();
        assert_eq!(
            (out.xdp_action(), out.redirect),
            (Some(ebpf_vm::XdpAction::Redirect), Some(7))
        );
        let vm = load_kind(engine, "call 34\nexit", ProgramKind::SocketFilter, hash(1));
        let ctx = Context::SocketFilter(ebpf_vm::SkBuff {
            hash: 77,
            ..Default::default()
        });
        let mut packet = Packet::new(&[0u8; 40]).unwrap();
        assert_eq!(vm.run_packet(&mut packet, &ctx).unwrap().r0, 77, "{engine}");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let vm = Vm::builder()
            .engine(engine)
            .kernel_helpers(
                KernelHelpers::new()
                    .trace_sink(move |line| sink.lock().unwrap().push(line.to_string())),
            )
            .load_with_maps(
                program(
                    "stw [%r10-8], 0x64253d6e\nstb [%r10-4], 0\nmov %r1, %r10\nadd %r1, -8\n\
                     mov %r2, 5\nmov %r3, -42\ncall 6\nexit",
                ),
                ProgramKind::Xdp,
                hash(1),
            )
            .unwrap();
        assert_eq!(r0(&vm), 5, "{engine}");
        assert_eq!(*lines.lock().unwrap(), ["n=-42"]);
    }
}

#[test]
fn ring_buffer_queue_and_perf_records() {
    // Ring (map 0): reserve 8 bytes and submit 0x1122, reserve and discard, output 4 bytes.
    let ring = "lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
        jeq %r0, 0, +12\nstdw [%r0], 0x1122\nmov %r1, %r0\nmov %r2, 0\ncall 132\n\
        lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
        mov %r1, %r0\nmov %r2, 0\ncall 133\n\
        stw [%r10-4], 0x33\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\n\
        mov %r3, 4\nmov %r4, 0\ncall 130\nexit";
    // Queue (map 1): push 1, 2, 3; r0 = pop * 10 + peek. Perf (map 2): one record.
    let queue = "stdw [%r10-8], 1\nlddw %r1, 0xfeed000000000001\nmov %r2, %r10\nadd %r2, -8\n\
        mov %r3, 0\ncall 87\nstdw [%r10-8], 2\nlddw %r1, 0xfeed000000000001\nmov %r2, %r10\n\
        add %r2, -8\nmov %r3, 0\ncall 87\n\
        lddw %r1, 0xfeed000000000001\nmov %r2, %r10\nadd %r2, -16\ncall 88\n\
        lddw %r1, 0xfeed000000000001\nmov %r2, %r10\nadd %r2, -24\ncall 89\n\
        mov %r1, %r6\nlddw %r2, 0xfeed000000000002\nlddw %r3, 0xffffffff\nmov %r4, %r10\n\
        add %r4, -16\nmov %r5, 8\ncall 25\n\
        ldxdw %r0, [%r10-16]\nmul %r0, 10\nldxdw %r1, [%r10-24]\nadd %r0, %r1\nexit";
    for &engine in Engine::ALL {
        let mut maps = Maps::new(1);
        let rb = maps
            .create("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096))
            .unwrap();
        let q = maps
            .create("q", MapSpec::new(MapType::Queue, 0, 8, 4))
            .unwrap();
        let perf = maps
            .create("perf", MapSpec::new(MapType::PerfEventArray, 4, 4, 1))
            .unwrap();
        let maps = Arc::new(maps);
        let vm = load_kind(engine, ring, ProgramKind::Xdp, Arc::clone(&maps));
        assert_eq!(r0(&vm), 0, "{engine}");
        let records = rb.ring_records().unwrap();
        assert_eq!(
            records,
            [
                0x1122u64.to_le_bytes().to_vec(),
                0x33u32.to_le_bytes().to_vec()
            ],
            "{engine}"
        );
        let vm = Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new())
            .load_with_maps(
                program(&format!("mov %r6, %r1\n{queue}")),
                ProgramKind::Xdp,
                maps,
            )
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        assert_eq!(r0(&vm), 12, "popped 1, then 2 is next: {engine}");
        assert_eq!(q.pop().unwrap(), 2u64.to_le_bytes(), "peek left it");
        assert_eq!(perf.perf_records(0).unwrap(), [1u64.to_le_bytes().to_vec()]);
    }
}

/// The verifier is given the maps' value sizes: an access through a lookup's result past
/// the value (8 bytes here) or before a NULL check is refused at load, on every engine, with
/// the map's name; an in-range access after a check loads.
#[test]
fn the_verifier_knows_value_sizes_and_null() {
    use ebpf_vm::verifier::FindingKind;
    let lookup = "stw [%r10-4], 7\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\n\
                  call 1\n";
    let refused = |engine: Engine, body: &str| -> Vec<(usize, FindingKind)> {
        let text = format!("{lookup}{body}\nmov %r0, 0\nexit");
        match Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new())
            .load_with_maps(program(&text), ProgramKind::Xdp, hash(4))
        {
            Ok(_) => Vec::new(),
            Err(LoadError::Rejected(r)) => r.errors().map(|f| (f.pc, f.kind.clone())).collect(),
            Err(e) => panic!("{engine}: {e}"),
        }
    };
    for &engine in Engine::ALL {
        // The lookup is at pc 5; the load at pc 7 reads bytes 4..12 of an 8-byte value.
        assert_eq!(
            refused(engine, "jeq %r0, 0, +1\nldxdw %r3, [%r0+4]"),
            [(
                7,
                FindingKind::MapValueOutOfBounds {
                    map: "h".into(),
                    offset: 4,
                    size: 8,
                    value_size: 8
                }
            )],
            "{engine}"
        );
        assert_eq!(
            refused(engine, "stxw [%r0+0], %r0"),
            [(6, FindingKind::MapValueOrNull { map: "h".into() })],
            "{engine}"
        );
        assert_eq!(refused(engine, "jeq %r0, 0, +1\nldxw %r3, [%r0+4]"), []);
    }
}

/// A record reserved and never submitted (the kernel's verifier refuses such a program; ours
/// loads it) is discarded when the run ends: the next run's records reach the host, and a
/// trap after a reserve releases it too.
#[test]
fn records_reserved_and_left_are_discarded_when_the_run_ends() {
    // Reserve 8 bytes and exit; output 4 bytes; reserve, then trap.
    let leak = "lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
                mov %r0, 2\nexit";
    let output = "stw [%r10-4], 0x77\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\n\
                  add %r2, -4\nmov %r3, 4\nmov %r4, 0\ncall 130\nexit";
    let trap = "lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
                ldxdw %r0, [%r0+4096]\nexit";
    for &engine in Engine::ALL {
        let mut maps = Maps::new(1);
        let rb = maps
            .create("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096))
            .unwrap();
        let maps = Arc::new(maps);
        let leaking = load(engine, leak, &maps);
        let outputting = load(engine, output, &maps);
        let trapping = load(engine, trap, &maps);
        // The host reads as it goes: a leaked record that stayed reserved would block every
        // record after it, and the ring (room for about 250 of these) would fill.
        for _ in 0..1000 {
            run(&leaking).unwrap();
            assert_eq!(
                rb.ring_records().unwrap(),
                Vec::<Vec<u8>>::new(),
                "{engine}"
            );
        }
        assert!(run(&trapping).is_err(), "{engine}");
        assert_eq!(
            rb.ring_records().unwrap(),
            Vec::<Vec<u8>>::new(),
            "{engine}"
        );
        assert_eq!(r0(&outputting), 0, "{engine}: the ring has room");
        assert_eq!(
            rb.ring_records().unwrap(),
            [0x77u32.to_le_bytes().to_vec()],
            "{engine}: the leaked records were discarded, the output is readable"
        );
        assert_eq!(rb.ring_query().unwrap().0, 0, "{engine}");
    }
}

/// The shape of cilium/ebpf's `relocs_read` test program (section `socket`, program `reads`),
/// which the kernel loads for root and we once refused: a socket filter whose sub-program
/// reads a 4-byte stack word at `r10-16` that only some paths write. The read is a verifier
/// warning, the program loads and runs on every engine, and the unwritten word reads zero.
#[test]
fn a_socket_filter_reading_stack_bytes_written_on_one_path_loads_and_reads_zero() {
    // reads(skb) { return read_subprog(skb); }
    // read_subprog: if (skb->len <= 100) *(u32 *)(r10 - 16) = 7; return *(u32 *)(r10 - 16);
    let text = "call local read_subprog\nexit\nread_subprog:\n\
                ldxw %r2, [%r1+0]\njgt %r2, 100, +1\nstw [%r10-16], 7\nldxw %r0, [%r10-16]\nexit";
    for &engine in Engine::ALL {
        let vm = load_kind(engine, text, ProgramKind::SocketFilter, hash(1));
        let read = vm
            .warnings()
            .iter()
            .map(|f| format!("{} {f}", f.severity))
            .collect::<Vec<_>>();
        assert_eq!(
            read,
            ["warning pc 5: 4-byte stack read at r10-16 reads bytes never written on some path"],
            "{engine}"
        );
        let context = Context::default_for(ProgramKind::SocketFilter);
        let mut short = Packet::new(&[0u8; 64]).unwrap();
        let out = vm.run_packet(&mut short, &context).unwrap();
        assert_eq!(out.r0, 7, "{engine}: the path that writes the word");
        let mut long = Packet::new(&[0u8; 200]).unwrap();
        let out = vm.run_packet(&mut long, &context).unwrap();
        assert_eq!(
            out.r0, 0,
            "{engine}: the path that does not (after a run that did)"
        );
    }
}

/// A helper's length argument is the program's: one no region can hold is the trap an access
/// of it gives, at the call, before anything is allocated for it. (`Vec::resize(1 << 62)`
/// aborted the whole process, which no `catch_unwind` stops; `u64::MAX` panicked.)
#[test]
fn lengths_no_region_holds_trap_at_the_call_before_anything_is_allocated() {
    const HUGE: u64 = 1 << 62;
    let huge = "mov %r9, 1\nlsh %r9, 62\n";
    // (program, pc of the call, the access's length, whether it writes)
    let cases = [
        // skb_load_bytes(ctx, 12, fp-8, len): the packet has no such bytes, so the kernel
        // zeroes the destination, which must then hold `len` bytes.
        (
            format!("{huge}mov %r2, 12\nmov %r3, %r10\nadd %r3, -8\nmov %r4, %r9\ncall 26\nexit"),
            6,
            HUGE,
            true,
        ),
        (
            "mov %r2, 12\nmov %r3, %r10\nadd %r3, -8\nmov %r4, -1\ncall 26\nexit".to_string(),
            4,
            u64::MAX,
            true,
        ),
        // ringbuf_output(map, fp-8, len, 0): the record is copied before the map's type is
        // looked at, so any map will do.
        (
            format!(
                "{huge}lddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -8\n\
                 mov %r3, %r9\nmov %r4, 0\ncall 130\nexit"
            ),
            8,
            HUGE,
            false,
        ),
        // perf_event_output(ctx, map, BPF_F_CURRENT_CPU, fp-8, len).
        (
            format!(
                "{huge}lddw %r2, 0xfeed000000000000\nmov32 %r3, -1\nmov %r4, %r10\n\
                 add %r4, -8\nmov %r5, %r9\ncall 25\nexit"
            ),
            8,
            HUGE,
            false,
        ),
    ];
    for (text, pc, len, write) in cases {
        for &engine in Engine::ALL {
            let vm = load(engine, &text, &hash(1));
            let trap = run(&vm).expect_err(&format!("{engine}: {text}"));
            assert_eq!(trap.pc, pc, "{engine}: {text}");
            match trap.kind {
                TrapKind::OutOfBounds {
                    addr,
                    len: got,
                    write: w,
                } => {
                    assert_eq!(
                        (ebpf_vm::layout::region_of(addr), got, w),
                        (ebpf_vm::layout::STACK, len, write),
                        "{engine}: {text}"
                    );
                    assert_eq!(addr % 512, 512 - 8, "fp-8: {engine}: {text}");
                }
                other => panic!("{engine}: {text}: {other}"),
            }
        }
    }
}

/// Sizes and bounds the kernel would refuse with an errno are refused with it, never wrapped
/// or overflowed (which panicked in builds with overflow checks, and in others read on until
/// a region ended), including bounds the program fakes by pointing a helper's context
/// argument at its own stack.
#[test]
fn sizes_and_faked_bounds_that_would_overflow_are_errnos() {
    const EFAULT: i64 = -14;
    // An XDP context on the stack at fp-64: its hidden `data`, `data_end`, `data_meta` at
    // +24, +32, +40.
    let xdp = |data: i64, end: i64, meta: i64| {
        format!(
            "stdw [%r10-40], {data}\nstdw [%r10-32], {end}\nstdw [%r10-24], {meta}\n\
             mov %r1, %r10\nadd %r1, -64\n"
        )
    };
    // A socket filter's context on the stack at fp-256: `data`, `data_end` at +192, +200.
    let skb = "stdw [%r10-64], -2\nstdw [%r10-56], -1\nstdw [%r10-8], 0\n\
               mov %r1, %r10\nadd %r1, -256\n";
    let cases = [
        // csum_diff(fp-8, 2^64 - 4, fp-8, 4, 0): the two sizes' sum wraps to 0.
        (
            ProgramKind::Xdp,
            "stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, -4\nmov %r3, %r1\n\
             mov %r4, 4\nmov %r5, 0\ncall 28\nexit"
                .to_string(),
            EINVAL,
        ),
        // xdp_adjust_head with `data_meta` above `data`.
        (
            ProgramKind::Xdp,
            format!("{}mov %r2, 0\ncall 44\nexit", xdp(0, 0, 1)),
            EINVAL,
        ),
        // xdp_adjust_tail with `data` at the top of the address space.
        (
            ProgramKind::Xdp,
            format!("{}mov %r2, 0\ncall 65\nexit", xdp(-1, 0, 0)),
            EINVAL,
        ),
        // skb_store_bytes(ctx, 0, fp-8, 4, 0) with `data + 4` past 2^64.
        (
            ProgramKind::SocketFilter,
            format!(
                "{skb}mov %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 4\nmov %r5, 0\n\
                 call 9\nexit"
            ),
            EFAULT,
        ),
        // l3_csum_replace(ctx, 0, 0, 0, 2): the field's 2 bytes past 2^64.
        (
            ProgramKind::SocketFilter,
            format!("{skb}mov %r2, 0\nmov %r3, 0\nmov %r4, 0\nmov %r5, 2\ncall 10\nexit"),
            EFAULT,
        ),
    ];
    for (kind, text, errno) in cases {
        for &engine in Engine::ALL {
            let vm = load_kind(engine, &text, kind, hash(1));
            let mut packet = Packet::new(&[0u8; 64]).unwrap();
            let out = vm
                .run_packet(&mut packet, &Context::default_for(kind))
                .unwrap_or_else(|t| panic!("{engine}: {text}: {t}"));
            assert_eq!(out.r0 as i64, errno, "{engine}: {text}");
        }
    }
}

/// An embedder helper with a bug: it panics.
fn panicking_helper(_: [u64; 5], _: &mut dyn ebpf_vm::VmMemory) -> Result<u64, HelperError> {
    panic!("an embedder helper's bug")
}

/// A record reserved before a helper panics is discarded as the panic unwinds through the
/// run: left busy, it would stop every later read of the ring at it.
#[test]
fn a_helper_that_panics_leaves_no_ring_record_reserved() {
    // Reserves 8 bytes, then calls an embedder helper that panics.
    let text = "lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
                call 4096\nmov %r0, 2\nexit";
    for &engine in Engine::ALL {
        let mut maps = Maps::new(1);
        let ring = maps
            .create("ring", MapSpec::new(MapType::RingBuf, 0, 0, 4096))
            .unwrap();
        let vm = Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new())
            .helper(4096, panicking_helper)
            .load_with_maps(program(text), ProgramKind::Xdp, Arc::new(maps))
            .unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&vm)));
        assert!(caught.is_err(), "{engine}");
        assert!(ring.ring_output(b"after").unwrap(), "{engine}");
        assert_eq!(
            ring.ring_records().unwrap(),
            vec![b"after".to_vec()],
            "{engine}"
        );
        // The thread runs on, its next run included.
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&vm))).is_err(),
            "{engine}"
        );
        assert!(ring.ring_output(b"again").unwrap(), "{engine}");
        assert_eq!(ring.ring_records().unwrap(), vec![b"again".to_vec()]);
    }
}

/// A run submits or discards only the records it reserved: a second run given the address of
/// a record the first still fills (here a run a helper starts, with the address as a constant)
/// cannot publish it under the first, which then submits it whole.
#[test]
fn a_run_cannot_submit_a_record_another_run_reserved() {
    // Reserves 8 bytes, hands the record to helper 4096, then fills and submits it.
    let text = "lddw %r1, 0xfeed000000000000\nmov %r2, 8\nmov %r3, 0\ncall 131\n\
                jeq %r0, 0, +9\nmov %r6, %r0\nmov %r1, %r0\ncall 4096\nmov %r7, %r0\n\
                stdw [%r6], 0x1122\nmov %r1, %r6\nmov %r2, 0\ncall 132\nmov %r0, %r7\nexit";
    for &engine in Engine::ALL {
        for helper in [132, 133] {
            let mut maps = Maps::new(1);
            let ring = maps
                .create("ring", MapSpec::new(MapType::RingBuf, 0, 0, 4096))
                .unwrap();
            let maps = Arc::new(maps);
            let inner_maps = Arc::clone(&maps);
            let outer = Vm::builder()
                .engine(engine)
                .kernel_helpers(KernelHelpers::new())
                .helper(4096, move |a: [u64; 5], _: &mut dyn ebpf_vm::VmMemory| {
                    let steal = format!("lddw %r1, {:#x}\nmov %r2, 0\ncall {helper}\nexit", a[0]);
                    let inner = Vm::builder()
                        .engine(engine)
                        .kernel_helpers(KernelHelpers::new())
                        .unverified()
                        .load_with_maps(program(&steal), ProgramKind::Xdp, Arc::clone(&inner_maps))
                        .map_err(|e| HelperError::failed(e.to_string()))?;
                    match run(&inner) {
                        Ok(_) => Ok(0),
                        Err(trap) => {
                            assert!(trap.to_string().contains("did not reserve"), "{trap}");
                            Ok(1)
                        }
                    }
                })
                .load_with_maps(program(text), ProgramKind::Xdp, Arc::clone(&maps))
                .unwrap();
            let r0 = run(&outer).unwrap_or_else(|t| panic!("{engine}: {t}")).r0;
            assert_eq!(
                r0, 1,
                "{engine}, helper {helper}: the second run's commit was refused"
            );
            assert_eq!(
                ring.ring_records().unwrap(),
                vec![0x1122u64.to_le_bytes().to_vec()],
                "{engine}, helper {helper}"
            );
        }
    }
}

/// A helper may run a program of its own run's map set: the nested run gets the CPU its
/// thread already holds (with one CPU, the default, it waited for ever for it).
#[test]
fn a_helper_may_run_a_program_of_the_same_maps() {
    for &engine in Engine::ALL {
        let maps = hash(1);
        // The inner run counts in the same map as the outer one.
        let inner = Arc::new(load(engine, &update(1, 0), &maps));
        let outer = Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new())
            .helper(4096, move |_: [u64; 5], _: &mut dyn ebpf_vm::VmMemory| {
                run(&inner)
                    .map(|o| o.r0 + 100)
                    .map_err(|t| HelperError::failed(t.to_string()))
            })
            .load_with_maps(
                program("call 4096\nexit"),
                ProgramKind::Xdp,
                Arc::clone(&maps),
            )
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run(&outer).map(|o| o.r0));
        });
        let r0 = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{engine}: the nested run hangs"));
        assert_eq!(r0.unwrap(), 100, "{engine}");
        let value = maps.get("h").unwrap().lookup(&1u32.to_le_bytes()).unwrap();
        assert_eq!(value, Some(42u64.to_le_bytes().to_vec()), "{engine}");
        // The slot is free again: a run from this thread gets it.
        assert_eq!(r0_of_update(engine, &maps), EEXIST, "{engine}");
    }
}

fn r0_of_update(engine: Engine, maps: &Arc<Maps>) -> i64 {
    r0(&load(engine, &update(1, 1), maps))
}

/// A frozen per-CPU map programs only read gives each CPU its own values, as the kernel does
/// (the snapshot was CPU 0's alone).
#[test]
fn a_frozen_per_cpu_map_gives_each_cpu_its_own_values() {
    let text = "stw [%r10-4], 0\nlddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\n\
                call 1\njeq %r0, 0, +1\nldxdw %r0, [%r0]\nexit";
    for &engine in Engine::ALL {
        let mut maps = Maps::new(2);
        let spec = MapSpec {
            flags: ebpf_vm::maps::BPF_F_RDONLY_PROG,
            ..MapSpec::new(MapType::PerCpuArray, 4, 8, 1)
        };
        let m = maps.create("ro", spec).unwrap();
        let mut v = 1u64.to_le_bytes().to_vec();
        v.extend(2u64.to_le_bytes());
        m.update(&0u32.to_le_bytes(), &v, UpdateFlags::Any).unwrap();
        m.freeze();
        let vm = load(engine, text, &Arc::new(maps));
        // Runs take the CPUs in turn (each claim starts at the next slot).
        let mut seen = [r0(&vm), r0(&vm)];
        seen.sort();
        assert_eq!(seen, [1, 2], "{engine}");
        assert_eq!(m.frozen_on(1), Some(&2u64.to_le_bytes()[..]), "{engine}");
    }
}

/// `perf_event_output` from a packet program is the kernel's `bpf_xdp_event_output`: the
/// flags' `BPF_F_CTXLEN_MASK` appends that many packet bytes to the record (`-EFAULT` past the
/// packet), other upper bits are `-EINVAL`, and an index past the array is `-E2BIG`.
#[test]
fn perf_event_output_appends_packet_bytes_and_gives_the_kernels_errnos() {
    const EFAULT: i64 = -14;
    let frame: Vec<u8> = (0..60).collect();
    let meta = 0x1234u64.to_le_bytes();
    let with_packet = |n: usize| [&meta[..], &frame[..n]].concat();
    let cases: [(u64, i64, Option<Vec<u8>>); 6] = [
        (0xffff_ffff, 0, Some(meta.to_vec())),
        (0x0000_000e_ffff_ffff, 0, Some(with_packet(14))),
        (0x0000_003c_0000_0000, 0, Some(with_packet(60))),
        (0x0000_003d_ffff_ffff, EFAULT, None),
        (1 << 52 | 0xffff_ffff, EINVAL, None),
        (5, E2BIG, None),
    ];
    for &engine in Engine::ALL {
        for (flags, want, record) in &cases {
            let mut maps = Maps::new(1);
            let perf = maps
                .create("perf", MapSpec::new(MapType::PerfEventArray, 4, 4, 1))
                .unwrap();
            let text = format!(
                "mov %r6, %r1\nstdw [%r10-8], 0x1234\nmov %r1, %r6\n\
                 lddw %r2, 0xfeed000000000000\nlddw %r3, {flags:#x}\nmov %r4, %r10\n\
                 add %r4, -8\nmov %r5, 8\ncall 25\nexit"
            );
            let vm = load_kind(engine, &text, ProgramKind::Xdp, Arc::new(maps));
            let mut packet = Packet::new(&frame).unwrap();
            let out = vm
                .run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp))
                .unwrap_or_else(|t| panic!("{engine}: {flags:#x}: {t}"));
            assert_eq!(out.r0 as i64, *want, "{engine}: {flags:#x}");
            let records = perf.perf_records(0).unwrap();
            assert_eq!(
                records,
                record.iter().cloned().collect::<Vec<_>>(),
                "{engine}"
            );
        }
    }
}

/// `xdp_adjust_tail` growing a forged context's packet (an XDP context on the stack whose
/// `data_end` the program points into its own stack) over a range that runs off the stack's
/// top traps as one write of the whole range would — at the call, the range's start and
/// length — and not after zeroing what of it was writable, 64 bytes at a time (which trapped
/// at the first chunk that crossed the top, with that chunk's address and length).
#[test]
fn growing_a_forged_contexts_tail_off_the_stack_traps_as_one_write() {
    // The context at fp-64: `data` 0 at +24, `data_end` fp-200 at +32, `data_meta` 0 at +40;
    // the tail grows by 264 bytes, to 64 bytes past the stack's top.
    let text = "mov %r3, %r10\nadd %r3, -200\nstxdw [%r10-32], %r3\n\
                stdw [%r10-40], 0\nstdw [%r10-24], 0\n\
                mov %r1, %r10\nadd %r1, -64\nmov %r2, 264\ncall 65\nexit";
    for &engine in Engine::ALL {
        let vm = load_kind(engine, text, ProgramKind::Xdp, hash(1));
        let trap = run(&vm).expect_err(engine.name());
        assert_eq!(trap.pc, 8, "{engine}");
        match trap.kind {
            TrapKind::OutOfBounds { addr, len, write } => {
                assert_eq!(
                    (ebpf_vm::layout::region_of(addr), addr % 512, len, write),
                    (ebpf_vm::layout::STACK, 512 - 200, 264, true),
                    "{engine}"
                );
            }
            other => panic!("{engine}: {other}"),
        }
    }
}
