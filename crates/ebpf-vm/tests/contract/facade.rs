//! The facade beyond single table runs: configuration and load errors, region addresses,
//! helpers that carry embedder state, one `Vm` on many threads, and the engine list.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use ebpf_isa::{AsmError, AsmErrorKind, DecodeError, DecodeErrorKind, Field};
use ebpf_vm::{
    Engine, HelperError, Input, Limits, LoadError, MetadataLayout, Trap, TrapKind, Vm, VmMemory,
};

use ebpf_abi::layout;

const INPUT: u64 = layout::vm_addr(layout::INPUT, 0);
const EXTRA: u64 = layout::vm_addr(layout::FIRST_EXTRA, 0);

fn layout(len: usize, data_offset: usize, data_end_offset: usize) -> MetadataLayout {
    MetadataLayout {
        len,
        data_offset,
        data_end_offset,
    }
}

/// The smallest program the verifier accepts.
const EXIT: &str = "mov %r0, 0\nexit";

#[test]
fn invalid_metadata_layouts_are_rejected() {
    let exit = [0x95, 0, 0, 0, 0, 0, 0, 0];
    for &engine in Engine::ALL {
        let bad = [
            (15, 0, 8),
            (16, 9, 0),
            (16, 0, 9),
            (0, 0, 0),
            (7, 0, 0),
            (8, usize::MAX, 0),
            (8, 0, usize::MAX - 3),
        ];
        for (len, d, e) in bad {
            let b = Vm::builder().engine(engine).metadata(layout(len, d, e));
            for result in [b.clone().load_asm(EXIT), b.load(&exit)] {
                assert!(
                    matches!(result, Err(LoadError::InvalidConfig(_))),
                    "layout ({len}, {d}, {e}) on {engine}: {result:?}"
                );
            }
        }
        for (len, d, e) in [(16, 0, 8), (16, 8, 0), (8, 0, 0), (4096, 4088, 0)] {
            let vm = Vm::builder()
                .engine(engine)
                .metadata(layout(len, d, e))
                .load_asm("mov %r0, %r2\nexit");
            assert_eq!(
                vm.map(|vm| vm.run(&mut [0; 3])),
                Ok(Ok(len as u64)),
                "layout ({len}, {d}, {e})"
            );
        }
    }
}

/// A configuration the address space cannot hold is a load error, not a panic or an abort at
/// run time: each region is a 4 GiB window, so neither the stack (`(depth + 1) * 512` bytes,
/// with `r10` at its top) nor the metadata buffer may need 4 GiB or more.
#[test]
fn configurations_beyond_the_address_space_are_rejected() {
    // (2^23 - 1 + 1) * 512 = 4 GiB: the entry frame's top would be offset 2^32, which wraps.
    for depth in [usize::MAX, 1 << 40, (1 << 23) - 1] {
        let loaded = Vm::builder().max_call_depth(depth).load_asm(EXIT);
        assert!(
            matches!(loaded, Err(LoadError::InvalidConfig(_))),
            "max_call_depth({depth}): {loaded:?}"
        );
    }
    for len in [usize::MAX, 1 << 40, 1 << 32] {
        let loaded = Vm::builder().metadata(layout(len, 0, 8)).load_asm(EXIT);
        assert!(
            matches!(loaded, Err(LoadError::InvalidConfig(_))),
            "metadata len {len}: {loaded:?}"
        );
    }
}

#[test]
fn at_most_58_extra_regions() {
    let mut b = Vm::builder();
    for i in 0..58u8 {
        b = b.read_only_region(vec![i; 4]);
    }
    let vm = b
        .clone()
        .load_asm("lddw %r1, 0x3f00000000\nldxb %r0, [%r1+3]\nexit")
        .unwrap();
    assert_eq!(vm.read_only_region_address(57), 0x3f_0000_0000);
    assert_eq!(vm.run_no_data(), Ok(57));
    let too_many = b.read_only_region(vec![0]).load_asm(EXIT);
    assert!(
        matches!(too_many, Err(LoadError::InvalidConfig(_))),
        "{too_many:?}"
    );
}

#[test]
fn region_addresses() {
    let vm = Vm::builder()
        .read_only_region(vec![1])
        .read_only_region(vec![2])
        .load_asm(EXIT)
        .unwrap();
    assert_eq!(vm.read_only_region_address(0), EXTRA);
    assert_eq!(vm.read_only_region_address(1), EXTRA + (1 << 32));
    assert_eq!(vm.run_region_address(0), EXTRA + (2 << 32));
    assert_eq!(vm.run_region_address(1), EXTRA + (3 << 32));
    let vm = Vm::builder().load_asm(EXIT).unwrap();
    assert_eq!(vm.run_region_address(0), EXTRA);
}

fn decode_error(bytes: &[u8]) -> DecodeError {
    // Unverified: the decoder's own first error (verification reports every slot's instead).
    match Vm::builder().unverified().load(bytes) {
        Err(LoadError::Decode(e)) => e,
        other => panic!("{bytes:02x?}: want a decode error, got {other:?}"),
    }
}

#[test]
fn load_errors_from_bytes() {
    use DecodeErrorKind::*;
    let exit = [0x95u8, 0, 0, 0, 0, 0, 0, 0];
    let err = |pc, kind| DecodeError { pc, kind };
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    assert_eq!(
        decode_error(&exit[..7]),
        err(0, LengthNotMultipleOf8 { len: 7 })
    );
    assert_eq!(
        decode_error(&cat(&cat(&exit, &exit), &exit[..4])),
        err(2, LengthNotMultipleOf8 { len: 20 })
    );
    assert_eq!(
        decode_error(&[0xff, 0, 0, 0, 0, 0, 0, 0]),
        err(0, UnknownOpcode { opcode: 0xff })
    );
    assert_eq!(
        decode_error(&cat(&exit, &[0xff, 0, 0, 0, 0, 0, 0, 0])),
        err(1, UnknownOpcode { opcode: 0xff })
    );
    // Reserved fields must be zero (rbpf ignores them).
    let reserved = |opcode, field, value| ReservedField {
        opcode,
        field,
        value,
    };
    assert_eq!(
        decode_error(&[0x07, 0x10, 0, 0, 1, 0, 0, 0]),
        err(0, reserved(0x07, Field::Src, 1)),
        "add %r0, 1 with src = 1"
    );
    assert_eq!(
        decode_error(&[0x0f, 0x10, 0, 0, 1, 0, 0, 0]),
        err(0, reserved(0x0f, Field::Imm, 1)),
        "add %r0, %r1 with imm = 1"
    );
    assert_eq!(
        decode_error(&[0xb7, 0x00, 1, 0, 0, 0, 0, 0]),
        err(0, reserved(0xb7, Field::Offset, 1)),
        "mov %r0, 0 with offset = 1"
    );
    assert_eq!(
        decode_error(&[0x95, 0, 0, 0, 1, 0, 0, 0]),
        err(0, reserved(0x95, Field::Imm, 1)),
        "exit with imm = 1"
    );
    // The offset selects sdiv/smod and movsx; other values are invalid (rbpf runs them as
    // div/mov).
    let selector = |opcode, field, value| InvalidSelector {
        opcode,
        field,
        value,
    };
    assert_eq!(
        decode_error(&[0x37, 0x00, 2, 0, 1, 0, 0, 0]),
        err(0, selector(0x37, Field::Offset, 2)),
        "div %r0, 1 with offset = 2"
    );
    assert_eq!(
        decode_error(&[0x9f, 0x10, 2, 0, 0, 0, 0, 0]),
        err(0, selector(0x9f, Field::Offset, 2)),
        "mod %r0, %r1 with offset = 2"
    );
    assert_eq!(
        decode_error(&[0xbf, 0x10, 2, 0, 0, 0, 0, 0]),
        err(0, selector(0xbf, Field::Offset, 2)),
        "mov %r0, %r1 with offset = 2"
    );
    assert_eq!(
        decode_error(&[0xdc, 0x00, 0, 0, 8, 0, 0, 0]),
        err(0, selector(0xdc, Field::Imm, 8)),
        "be8"
    );
    assert_eq!(
        decode_error(&[0xb7, 0x0b, 0, 0, 0, 0, 0, 0]),
        err(
            0,
            InvalidRegister {
                opcode: 0xb7,
                field: Field::Dst,
                value: 11
            }
        )
    );
    assert_eq!(
        decode_error(&[0x18, 0, 0, 0, 1, 0, 0, 0]),
        err(0, TruncatedLddw)
    );
    assert_eq!(
        decode_error(&cat(&[0x18, 0, 0, 0, 1, 0, 0, 0], &exit)),
        err(
            0,
            MalformedLddw {
                field: None,
                value: 0x95
            }
        )
    );
    // An empty program loads; running it falls off the end at once.
    let vm = Vm::builder().unverified().load(&[]).unwrap();
    assert!(vm.program().is_empty());
    assert_eq!(
        vm.run_no_data(),
        Err(Trap {
            pc: 0,
            kind: TrapKind::InvalidInstruction {
                reason: ebpf_vm::InvalidReason::FellOffEnd
            }
        })
    );
}

#[test]
fn load_errors_from_text() {
    let asm_error = |text: &str| match Vm::builder().load_asm(text) {
        Err(LoadError::Asm(e)) => e,
        other => panic!("{text:?}: want an assembly error, got {other:?}"),
    };
    assert_eq!(
        asm_error("foo %r0, 1"),
        AsmError {
            line: 1,
            kind: AsmErrorKind::InvalidMnemonic("foo".into())
        }
    );
    assert_eq!(
        asm_error("mov %r0, 1\nadd %r11, 1"),
        AsmError {
            line: 2,
            kind: AsmErrorKind::InvalidRegister("%r11".into())
        }
    );
    assert_eq!(
        asm_error("ja nowhere\nexit").kind,
        AsmErrorKind::InvalidLabel("nowhere".into())
    );
    assert!(matches!(
        asm_error("mov %r0, 0x100000000").kind,
        AsmErrorKind::ImmediateOutOfRange(_)
    ));
    assert!(matches!(
        asm_error("ldxw %r0, [%r1+40000]").kind,
        AsmErrorKind::OffsetOutOfRange(_)
    ));
    // The error says where; the inner error is in the message, not repeated as a source.
    let e = Vm::builder().load_asm("exit\nbad").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(std::error::Error::source(&e).is_none());
}

#[test]
fn helpers_carry_embedder_state() {
    for &engine in Engine::ALL {
        let total = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let t = Arc::clone(&total);
        let l = Arc::clone(&log);
        let vm = Vm::builder()
            .engine(engine)
            .helper(7, move |args: [u64; 5], _: &mut dyn VmMemory| {
                Ok(t.fetch_add(args[0], Ordering::SeqCst) + args[0])
            })
            .helper(8, move |args: [u64; 5], _: &mut dyn VmMemory| {
                l.lock()
                    .map_err(|_| HelperError::failed("poisoned"))?
                    .push(args);
                Ok(0)
            })
            .load_asm(
                "mov %r1, 1\ncall 7\nmov %r1, 2\ncall 7\n\
                 mov %r1, 3\nmov %r2, 4\nmov %r3, 5\nmov %r4, 6\nmov %r5, 7\ncall 8\n\
                 mov %r1, 3\ncall 7\nexit",
            )
            .unwrap();
        assert_eq!(vm.run_no_data(), Ok(6));
        assert_eq!(vm.run_no_data(), Ok(12));
        assert_eq!(total.load(Ordering::SeqCst), 12);
        assert_eq!(*log.lock().unwrap(), vec![[3, 4, 5, 6, 7]; 2]);
    }
}

#[test]
fn helper_registration() {
    for &engine in Engine::ALL {
        let b = Vm::builder()
            .engine(engine)
            .helper(1, |_: [u64; 5], _: &mut dyn VmMemory| Ok(1))
            .helper(1, |_: [u64; 5], _: &mut dyn VmMemory| Ok(2))
            .helper(u32::MAX, |_: [u64; 5], _: &mut dyn VmMemory| Ok(3))
            .helper(9, |_: [u64; 5], _: &mut dyn VmMemory| {
                Err(HelperError::Memory(TrapKind::MisalignedAtomic {
                    addr: 8,
                    len: 4,
                }))
            });
        // Unverified: the verifier would refuse the unknown constant id before the run.
        let run = |text: &str| b.clone().unverified().load_asm(text).unwrap().run_no_data();
        assert_eq!(run("call 1\nexit"), Ok(2), "the last registration wins");
        assert_eq!(run("call -1\nexit"), Ok(3), "imm -1 is helper 0xffffffff");
        assert_eq!(run("mov32 %r6, -1\ncall %r6\nexit"), Ok(3));
        assert_eq!(
            run("mov %r6, -1\ncall %r6\nexit"),
            Err(Trap {
                pc: 1,
                kind: TrapKind::UnknownHelper { id: u64::MAX }
            })
        );
        // A helper's memory error is the run's trap, at the call.
        assert_eq!(
            run("mov %r0, 1\ncall 9\nexit"),
            Err(Trap {
                pc: 1,
                kind: TrapKind::MisalignedAtomic { addr: 8, len: 4 }
            })
        );
    }
}

/// `r0` = the input bytes hashed (h = 31 h + b), passed through helper 7 (which counts).
const HASH: &str = "
    mov %r0, 0
    jeq %r2, 0, done
loop:
    ldxb %r3, [%r1]
    mul %r0, 31
    add %r0, %r3
    stb [%r1], 0
    add %r1, 1
    sub %r2, 1
    jne %r2, 0, loop
done:
    mov %r1, %r0
    call 7
    exit
";

fn hash(data: &[u8]) -> u64 {
    data.iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

#[test]
fn one_vm_many_threads() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 50;
    for &engine in Engine::ALL {
        let calls = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&calls);
        let vm = Vm::builder()
            .engine(engine)
            .budget(1_000_000)
            .helper(7, move |args: [u64; 5], _: &mut dyn VmMemory| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(args[0])
            })
            .load_asm(HASH)
            .unwrap();
        let start = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (vm, start) = (&vm, &start);
                s.spawn(move || {
                    start.wait();
                    for round in 0..ROUNDS {
                        let len = (t * 37 + round * 11) % 300;
                        let mut data: Vec<u8> =
                            (0..len).map(|i| (i * 7 + t * 13 + round) as u8).collect();
                        let want = hash(&data);
                        let exit = vm.run_with(Input::new(&mut data)).unwrap();
                        assert_eq!(exit.r0, want, "thread {t}, round {round}");
                        assert_eq!(exit.instructions, 5 + 7 * len as u64);
                        assert!(data.iter().all(|&b| b == 0), "the program zeroes its input");
                    }
                });
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), (THREADS * ROUNDS) as u64);
        // A Vm can also be shared by Arc with threads that outlive the scope.
        let vm = Arc::new(vm);
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let vm = Arc::clone(&vm);
                std::thread::spawn(move || vm.run(&mut [t, t + 1]))
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u8;
            assert_eq!(h.join().unwrap(), Ok(hash(&[t, t + 1])));
        }
    }
}

#[test]
fn engines_and_accessors() {
    assert!(Engine::ALL.contains(&Engine::Interpreter));
    assert_eq!(Engine::default(), Engine::Interpreter);
    for &e in Engine::ALL {
        assert_eq!(Engine::from_name(e.name()), Some(e));
        assert_eq!(e.to_string(), e.name());
    }
    assert_eq!(Engine::from_name("no-such-engine"), None);
    let vm = Vm::builder()
        .budget(5)
        .max_call_depth(3)
        .load_asm("mov %r0, 1\nexit")
        .unwrap();
    assert_eq!(vm.engine(), Engine::Interpreter);
    assert_eq!(
        vm.limits(),
        Limits {
            budget: Some(5),
            max_call_depth: 3
        }
    );
    assert_eq!(vm.program().len(), 2);
    let vm = Vm::builder().load_asm(EXIT).unwrap();
    assert_eq!(vm.limits(), Limits::default());
}

#[test]
fn traps_display_where_and_what() {
    let vm = Vm::builder().load_asm("ldxw %r0, [%r1+2]\nexit").unwrap();
    let trap = vm.run(&mut [0; 4]).unwrap_err();
    assert_eq!(
        trap,
        Trap {
            pc: 0,
            kind: TrapKind::OutOfBounds {
                addr: INPUT + 2,
                len: 4,
                write: false
            }
        }
    );
    assert_eq!(
        trap.to_string(),
        "out-of-bounds read of 4 bytes at 0x400000002 at pc 0"
    );
    let vm = Vm::builder()
        .helper(2, |_: [u64; 5], _: &mut dyn VmMemory| {
            Err(HelperError::failed("no such key"))
        })
        .load_asm("call 2\nexit")
        .unwrap();
    assert_eq!(
        vm.run_no_data().unwrap_err().to_string(),
        "helper 2 failed: no such key at pc 0"
    );
}

/// The benchmark programs load the way the benchmarks' users would: verified (no budget, as
/// they loop), and run to the Rust reference's result with the pinned count on every engine.
#[test]
fn benchmark_programs_verify_and_agree_on_every_engine() {
    for p in ebpf_bench::PROGRAMS {
        for &engine in Engine::ALL {
            let vm = Vm::builder()
                .engine(engine)
                .allow_unbounded()
                .load(&p.bytecode())
                .unwrap_or_else(|e| panic!("{} on {engine}: {e}", p.name));
            let mut input = p.input();
            let exit = vm
                .run_with(Input::new(&mut input))
                .unwrap_or_else(|t| panic!("{} on {engine}: {t}", p.name));
            assert_eq!(
                (exit.r0, exit.instructions),
                (p.expected(), p.instructions),
                "{} on {engine}",
                p.name
            );
        }
    }
}

/// A helper that runs another program — through `Vm::run` and through a runner of its own —
/// while the outer program runs through a runner: every result is right, on every engine,
/// and the outer runner goes on afterwards.
#[test]
fn nested_runs_from_a_helper_inside_a_runner_run() {
    for &engine in Engine::ALL {
        let inner = std::sync::Arc::new(
            Vm::builder()
                .engine(engine)
                .load_asm("ldxb %r0, [%r1]\nmul %r0, 3\nexit")
                .unwrap(),
        );
        let inner_vm = std::sync::Arc::clone(&inner);
        let outer = Vm::builder()
            .engine(engine)
            .helper(1, move |args: [u64; 5], _: &mut dyn VmMemory| {
                let mut byte = [args[0] as u8];
                let plain = inner_vm.run(&mut byte).unwrap_or(u64::MAX);
                let through_runner = inner_vm.runner().run(&mut byte).unwrap_or(u64::MAX);
                Ok(plain * 100 + through_runner)
            })
            .load_asm(
                "ldxb %r1, [%r1]
                stdw [%r10-8], 77
                call 1
                ldxdw %r1, [%r10-8]
                add %r0, %r1
                exit",
            )
            .unwrap();
        let mut runner = outer.runner();
        for byte in [1u8, 5, 7] {
            let want = u64::from(byte) * 3 * 101 + 77;
            assert_eq!(runner.run(&mut [byte]), Ok(want), "{engine}, {byte}");
            assert_eq!(outer.run(&mut [byte]), Ok(want), "{engine}, {byte}");
        }
        assert_eq!(inner.runner().run(&mut [2]), Ok(6));
    }
}

/// Code compiled with the facts of the VM's entry runs, through a runner, exactly as the
/// interpreter does on runs the entry does not admit, which the session's fast path must
/// refuse: a caller's metadata buffer shorter than the layout the facts assumed (the loads of
/// its fields are proven in bounds for the layout's 16 bytes; in an 8-byte buffer the second
/// one traps), no input at all, an input with an extra region. The runs the entry admits run
/// as the interpreter runs them too, before and after the refused ones on the same runner.
#[test]
fn a_runner_refuses_the_fast_path_to_runs_the_entry_does_not_admit() {
    let metadata_program = "
        ldxdw %r2, [%r1+0]
        ldxdw %r3, [%r1+8]
        mov %r4, %r2
        add %r4, 4
        jgt %r4, %r3, +2
        ldxw %r0, [%r2]
        exit
        mov %r0, 7
        exit";
    let input_program = "
        mov %r0, 7
        jlt %r2, 4, +1
        ldxw %r0, [%r1]
        exit";
    type Outcome = (Result<u64, Trap>, Vec<u8>);
    // Each engine's outcomes of the same runs, in order, on one runner per VM.
    let outcomes = |engine: Engine| -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let with_metadata = Vm::builder()
            .engine(engine)
            .metadata(layout(16, 0, 8))
            .load_asm(metadata_program)
            .unwrap();
        let mut runner = with_metadata.runner();
        for short in [false, true, false] {
            let mut data = vec![1, 2, 3, 4, 5];
            let mut metadata = vec![0u8; if short { 8 } else { 16 }];
            let r0 = runner
                .run_with(Input::new(&mut data).metadata(&mut metadata))
                .map(|exit| exit.r0);
            outcomes.push((r0, metadata));
            outcomes.push((runner.run(&mut data), data));
        }
        // No input, and a buffer whose fields claim 64 bytes of it.
        let mut lying = [INPUT.to_le_bytes(), (INPUT + 64).to_le_bytes()].concat();
        let r0 = runner
            .run_with(Input::none().metadata(&mut lying))
            .map(|exit| exit.r0);
        outcomes.push((r0, lying));
        let plain = Vm::builder()
            .engine(engine)
            .load_asm(input_program)
            .unwrap();
        let mut runner = plain.runner();
        let mut region = vec![0u8; 4];
        let mut data = vec![9, 0, 0, 0, 1];
        outcomes.push((runner.run(&mut data), data.clone()));
        outcomes.push((runner.run_no_data(), Vec::new()));
        let r0 = runner
            .run_with(Input::new(&mut data).region_mut(&mut region))
            .map(|exit| exit.r0);
        outcomes.push((r0, region));
        outcomes.push((runner.run(&mut data[..2]), data.clone()));
        outcomes.push((runner.run(&mut data), data.clone()));
        outcomes
    };
    let want = outcomes(Engine::Interpreter);
    // What the interpreter does, spelled out: the VM cannot write the input's end into the
    // short buffer.
    let trap = want[2].0.clone().unwrap_err();
    assert!(
        matches!(trap.kind, TrapKind::OutOfBounds { write: true, .. }),
        "{trap}"
    );
    assert_eq!(want[0].0, Ok(u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 0])));
    assert_eq!(
        want[6].0,
        Ok(7),
        "the VM writes the empty input's addresses over the claim"
    );
    assert_eq!(want[8].0, Ok(7), "no input: r2 is 0");
    for &engine in Engine::ALL {
        if engine.is_available() {
            assert_eq!(outcomes(engine), want, "{engine}");
        }
    }
}
