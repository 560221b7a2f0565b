//! Kernel helpers' edge cases on hand-written programs: update flags, deletes, full maps,
//! missed lookups, the tail-call limit, bad map handles, helpers we do not provide — on every
//! engine.

use std::sync::Arc;

use ebpf_vm::isa::{Imm64Kind, Insn, Program};
use ebpf_vm::maps::{MapSpec, MapType, Maps, UpdateFlags};
use ebpf_vm::{Context, Engine, KernelHelpers, LoadError, Packet, ProgramKind, TrapKind, Vm};

/// Assembles `text`; `lddw %rX, 0xfeed00000000000N` becomes a reference to map `N`.
fn program(text: &str) -> Program {
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
    let text = "call 5\nmov %r6, %r0\ncall 118\nadd %r6, %r0\ncall 8\nadd %r0, %r6\nexit";
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .kernel_helpers(KernelHelpers::new().clock(|| 8_000_000_000))
            .load_with_maps(program(text), ProgramKind::Xdp, hash(1))
            .unwrap();
        // ktime 8e9 ns + jiffies at 250 Hz (2,000) + CPU 0.
        assert_eq!(r0(&vm), 8_000_002_000, "{engine}");
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
