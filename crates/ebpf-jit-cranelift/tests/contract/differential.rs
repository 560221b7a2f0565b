//! Hand-written differential cases: every trap kind, exact budgets, call depth, helpers, memory,
//! division edge cases, packet loads and the odd corners of control flow, each run on the
//! interpreter and the JIT and compared on r0, trap (kind and pc), instruction count and final
//! memory. Each case also states what the interpreter must do, so that it tests what it says.

mod common;

use common::{Setup, compare, helpers};
use ebpf_abi::{InvalidReason, Limits, Trap, TrapKind, layout};
use ebpf_isa::{CallKind, Imm64Kind, Insn, Program, Reg};

fn asm(src: &str) -> Program {
    ebpf_isa::assemble(src).unwrap_or_else(|e| panic!("{e:?}\n{src}"))
}

fn limits(budget: Option<u64>) -> Limits {
    Limits {
        budget,
        ..Limits::default()
    }
}

/// Compares the engines and returns the (common) result.
fn check(program: &Program, setup: &Setup, limits: &Limits) -> Result<ebpf_abi::Exit, Trap> {
    match compare(program, setup, &helpers(), limits) {
        Ok(outcome) => outcome.result,
        Err(diff) => panic!("{diff}"),
    }
}

fn trap_kind(r: Result<ebpf_abi::Exit, Trap>) -> (usize, TrapKind) {
    match r {
        Err(t) => (t.pc, t.kind),
        Ok(e) => panic!("expected a trap, got {e:?}"),
    }
}

fn r0(r: Result<ebpf_abi::Exit, Trap>) -> u64 {
    match r {
        Ok(e) => e.r0,
        Err(t) => panic!("expected an exit, got {t}"),
    }
}

fn supported() -> bool {
    let ok = ebpf_jit_cranelift::host_supported();
    if !ok {
        eprintln!("skipping: cranelift does not support this host");
    }
    ok
}

#[test]
fn out_of_bounds_accesses_trap_with_address_width_and_direction() {
    if !supported() {
        return;
    }
    let none = Setup::default();
    let input = Setup::input(vec![1, 2, 3, 4, 5, 6, 7, 8]);
    let rodata = Setup {
        rodata: Some(vec![9; 16]),
        data: Some(vec![0; 16]),
        ..Setup::input(vec![0; 8])
    };
    let oob = |addr: u64, len: u64, write: bool| TrapKind::OutOfBounds { addr, len, write };
    let cases: Vec<(&str, &Setup, (usize, TrapKind))> = vec![
        ("ldxdw %r0, [%r1]\nexit", &none, (0, oob(0, 8, false))),
        (
            "ldxdw %r0, [%r1+1]\nexit",
            &input,
            (0, oob(0x4_0000_0001, 8, false)),
        ),
        (
            "ldxb %r0, [%r1-1]\nexit",
            &input,
            (0, oob(0x3_ffff_ffff, 1, false)),
        ),
        (
            "lddw %r1, 0x4000000000\nldxb %r0, [%r1]\nexit",
            &input,
            (2, oob(0x40_0000_0000, 1, false)),
        ),
        (
            "lddw %r1, 0xffffffff00000000\nldxw %r0, [%r1+4]\nexit",
            &input,
            (2, oob(0xffff_ffff_0000_0004, 4, false)),
        ),
        (
            "lddw %r1, 0x100000000\nstb [%r1], 1\nexit",
            &rodata,
            (2, oob(0x1_0000_0000, 1, true)),
        ),
        (
            "lddw %r1, 0x100000000\nldxdw %r0, [%r1+8]\nstxdw [%r1+8], %r0\nexit",
            &rodata,
            (3, oob(0x1_0000_0008, 8, true)),
        ),
        (
            "lddw %r1, 0x300000000\nstxdw [%r1+9], %r1\nexit",
            &rodata,
            (2, oob(0x3_0000_0009, 8, true)),
        ),
        (
            "ldxdw %r0, [%r10]\nexit",
            &none,
            (0, oob(layout::vm_addr(layout::STACK, 9 * 512), 8, false)),
        ),
        (
            "sth [%r10-4609], 7\nexit",
            &none,
            (
                0,
                oob(layout::vm_addr(layout::RODATA, 0xffff_ffff), 2, true),
            ),
        ),
        (
            "mov %r10, 0\nstb [%r10], 1\nexit",
            &none,
            (1, oob(0, 1, true)),
        ),
    ];
    for (src, setup, want) in cases {
        let got = trap_kind(check(&asm(src), setup, &limits(None)));
        assert_eq!(got, want, "{src}");
    }
    // In bounds everywhere: the whole stack, both data regions, the input's last byte.
    let ok = asm(
        "stxdw [%r10-4608], %r1\nldxdw %r0, [%r10-4608]\nldxb %r2, [%r1+7]\nadd %r0, %r2\n\
         lddw %r3, 0x100000000\nldxdw %r4, [%r3+8]\nadd %r0, %r4\n\
         lddw %r3, 0x300000000\nstxdw [%r3+8], %r0\nexit",
    );
    assert_eq!(
        r0(check(&ok, &rodata, &limits(None))),
        0x4_0000_0000 + 0x0909_0909_0909_0909
    );
}

#[test]
fn atomics_check_bounds_then_alignment() {
    if !supported() {
        return;
    }
    let rodata = Setup {
        rodata: Some(vec![0; 16]),
        ..Setup::input(vec![0; 16])
    };
    let cases = [
        (
            "lock add [%r10-12], %r1\nexit",
            (
                0,
                TrapKind::MisalignedAtomic {
                    addr: layout::vm_addr(layout::STACK, 9 * 512 - 12),
                    len: 8,
                },
            ),
        ),
        (
            "lock fetch or32 [%r1+2], %r1\nexit",
            (
                0,
                TrapKind::MisalignedAtomic {
                    addr: 0x4_0000_0002,
                    len: 4,
                },
            ),
        ),
        (
            // Misaligned and out of bounds: bounds first.
            "lock xchg [%r1+13], %r1\nexit",
            (
                0,
                TrapKind::OutOfBounds {
                    addr: 0x4_0000_000d,
                    len: 8,
                    write: true,
                },
            ),
        ),
        (
            "lddw %r2, 0x100000000\nlock cmpxchg32 [%r2], %r1\nexit",
            (
                2,
                TrapKind::OutOfBounds {
                    addr: 0x1_0000_0000,
                    len: 4,
                    write: true,
                },
            ),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(
            trap_kind(check(&asm(src), &rodata, &limits(None))),
            want,
            "{src}"
        );
    }
}

#[test]
fn every_atomic_operation_on_input_memory() {
    if !supported() {
        return;
    }
    let mut src = String::from("mov %r0, 0x55\nlddw %r9, 0x0123456789abcdef\n");
    let ops = [
        "add",
        "or",
        "and",
        "xor",
        "fetch add",
        "fetch or",
        "fetch and",
        "fetch xor",
        "xchg",
        "cmpxchg",
    ];
    for (i, op) in ops.iter().enumerate() {
        for (w, off) in [("", 0), ("32", 8), ("32", 12)] {
            src.push_str(&format!(
                "mov %r2, {}\nxor %r2, %r9\nlock {op}{w} [%r1+{off}], %r2\nxor %r0, %r2\nmul %r0, 31\n\
                 ldxdw %r3, [%r1+{off2}]\nxor %r0, %r3\n",
                i * 0x1111 + 7,
                off2 = off & !7,
            ));
        }
        // cmpxchg that succeeds: r0 equals memory.
        src.push_str("ldxdw %r0, [%r1]\nlock cmpxchg [%r1], %r9\nldxw %r0, [%r1+8]\nlock cmpxchg32 [%r1+8], %r2\n");
    }
    src.push_str("exit");
    let setup = Setup::input((0u8..16).map(|b| b.wrapping_mul(37)).collect());
    check(&asm(&src), &setup, &limits(None)).unwrap();
}

/// A program with a loop, local calls, a helper with side effects and stores to input memory.
const LOOPS_AND_CALLS: &str = "
    mov %r6, 0
    mov %r0, 0
loop:
    mov %r1, %r6
    call local f
    add %r0, %r1
    stxdw [%r10-8], %r0
    mov %r7, %r6
    lsh %r7, 3
    and %r7, 31
    mov %r1, %r9
    add %r1, %r7
    mov %r2, %r0
    call 4
    add %r6, 1
    jlt %r6, 5, loop
    ldxdw %r0, [%r10-8]
    lddw %r2, 0x1234
    add %r0, %r2
    exit
f:
    mov %r2, %r1
    mul %r2, 3
    stxdw [%r10-16], %r2
    lsh %r1, 1
    jeq %r1, 4, skip
    call local g
    add %r1, 7
skip:
    mov %r0, %r2
    exit
g:
    add %r1, 1
    exit
";

#[test]
fn budgets_are_exact_on_loops_and_calls() {
    if !supported() {
        return;
    }
    let program = asm(&format!("mov %r9, %r1\n{LOOPS_AND_CALLS}"));
    let setup = Setup::input(vec![0xa5; 40]);
    let full = check(&program, &setup, &limits(None)).unwrap();
    assert!(full.instructions > 100, "{full:?}");
    let jit = common::jit(&program);
    let mut traps = 0;
    for budget in 0..=full.instructions + 2 {
        let outcome =
            common::compare_compiled(&program, &jit, &setup, &helpers(), &limits(Some(budget)))
                .unwrap_or_else(|d| panic!("budget {budget}: {d}"));
        match outcome.result {
            Ok(exit) => {
                assert!(budget >= full.instructions);
                assert_eq!(exit, full);
            }
            Err(t) => {
                assert_eq!(t.kind, TrapKind::BudgetExhausted { budget });
                traps += 1;
            }
        }
    }
    assert_eq!(traps, full.instructions);
}

#[test]
fn budget_zero_and_what_traps_regardless() {
    if !supported() {
        return;
    }
    let none = Setup::default();
    let invalid = |pc, reason| (pc, TrapKind::InvalidInstruction { reason });
    let budget0 = |pc| (pc, TrapKind::BudgetExhausted { budget: 0 });
    let cases = [
        ("mov %r0, 1\nexit", Some(0), budget0(0)),
        (
            "ja +7\nexit",
            Some(0),
            invalid(0, InvalidReason::TargetOutOfRange),
        ),
        ("mov %r0, 1", Some(1), invalid(1, InvalidReason::FellOffEnd)),
        ("mov %r0, 1", Some(0), budget0(0)),
        ("mov %r0, 1", None, invalid(1, InvalidReason::FellOffEnd)),
        // A taken jump to an out-of-range target traps at the jump, whatever the budget left.
        (
            "jeq %r1, 0, +9\nexit",
            Some(1),
            invalid(0, InvalidReason::TargetOutOfRange),
        ),
        ("jeq %r1, 0, +9\nexit", Some(0), budget0(0)),
        // Into the second slot of an lddw: at that slot.
        (
            "ja +1\nlddw %r0, 1\nexit",
            Some(1),
            invalid(2, InvalidReason::LddwTail),
        ),
        (
            "jeq %r1, 0, +1\nlddw %r0, 1\nexit",
            None,
            invalid(2, InvalidReason::LddwTail),
        ),
        (
            "call local +1\nlddw %r0, 1\nexit",
            None,
            invalid(2, InvalidReason::LddwTail),
        ),
        (
            "call local +5\nexit",
            Some(0),
            invalid(0, InvalidReason::TargetOutOfRange),
        ),
        (
            "call local -5\nexit",
            None,
            invalid(0, InvalidReason::TargetOutOfRange),
        ),
        (
            "mov %r0, 1\nja -3\nexit",
            None,
            invalid(1, InvalidReason::TargetOutOfRange),
        ),
    ];
    for (src, budget, want) in cases {
        assert_eq!(
            trap_kind(check(&asm(src), &none, &limits(budget))),
            want,
            "{src} with budget {budget:?}"
        );
    }
    // Not taken: the bad target is harmless.
    let p = asm("mov %r0, 2\njeq %r0, 0, +9\nexit");
    assert_eq!(r0(check(&p, &none, &limits(Some(3)))), 2);

    // Instructions that can only trap, built directly.
    let pseudo = Program::from_insns(vec![
        Insn::Alu {
            width: ebpf_isa::Width::W64,
            op: ebpf_isa::AluOp::Mov,
            dst: Reg::R0,
            src: ebpf_isa::Operand::Imm(1),
        },
        Insn::LoadImm64 {
            dst: Reg::R1,
            kind: Imm64Kind::MapFd,
            imm: 3,
        },
        Insn::Exit,
    ]);
    for budget in [None, Some(1), Some(0)] {
        let want = if budget == Some(0) {
            budget0(0)
        } else {
            invalid(1, InvalidReason::UnsupportedLddw)
        };
        assert_eq!(trap_kind(check(&pseudo, &none, &limits(budget))), want);
    }
    let kfunc = Program::from_insns(vec![
        Insn::Call {
            kind: CallKind::Btf,
            imm: 1234,
        },
        Insn::Exit,
    ]);
    assert_eq!(
        trap_kind(check(&kfunc, &none, &limits(Some(0)))),
        invalid(0, InvalidReason::UnsupportedCall)
    );
    assert_eq!(
        trap_kind(check(&Program::default(), &none, &limits(Some(0)))),
        invalid(0, InvalidReason::FellOffEnd)
    );
}

#[test]
fn budget_sweeps_on_effects_between_lddw() {
    if !supported() {
        return;
    }
    // Stores, lddw (two slots, one instruction) and a helper, in one block: the budget trap
    // must come at the right pc, after exactly the right stores.
    let program = asm(
        "mov %r6, %r1\nlddw %r2, 0x1122334455667788\nstxdw [%r1], %r2\nlddw %r3, 7\n\
         stb [%r1+8], 9\nmov %r5, 1\nlddw %r4, 3\nmov %r2, 0\ncall 4\nstw [%r6+12], 5\n\
         lddw %r0, 42\nexit",
    );
    let setup = Setup::input(vec![0; 16]);
    let full = check(&program, &setup, &limits(None)).unwrap();
    for budget in 0..=full.instructions {
        // Either outcome is fine: `check` compares it with the interpreter's.
        let _ = check(&program, &setup, &limits(Some(budget)));
    }
}

#[test]
fn call_depth_is_limited_and_frames_are_fresh() {
    if !supported() {
        return;
    }
    // f(n) recurses n times; each level writes its own frame.
    let program = asm("mov %r1, %r6\ncall local f\nexit\n\
         f:\nstxdw [%r10-8], %r1\njeq %r1, 0, done\nsub %r1, 1\ncall local f\n\
         ldxdw %r2, [%r10-8]\nadd %r0, %r2\nexit\ndone:\nmov %r0, 0\nexit");
    for max_call_depth in [0usize, 1, 2, 3, 8, 20] {
        for n in 0..12u64 {
            let src = format!("mov %r6, {n}\n");
            let mut insns = asm(&src).into_insns();
            insns.extend(program.insns().iter().copied());
            let p = Program::from_insns(insns);
            let limits = Limits {
                budget: None,
                max_call_depth,
            };
            let r = check(&p, &Setup::default(), &limits);
            if (n as usize) < max_call_depth {
                assert_eq!(r0(r), n * (n + 1) / 2);
            } else {
                assert_eq!(
                    trap_kind(r).1,
                    TrapKind::CallDepthExceeded {
                        max_depth: max_call_depth
                    }
                );
            }
        }
    }
}

#[test]
fn local_calls_preserve_r6_to_r10_and_share_r0_to_r5() {
    if !supported() {
        return;
    }
    let none = Setup::default();
    let cases = [
        // The callee sees the caller's registers; r6-r9 and r10 come back, r0-r5 do not.
        (
            "mov %r0, 3\nmov %r6, 7\nmov %r2, 11\ncall local f\nlsh %r0, 8\nadd %r0, %r6\n\
             lsh %r0, 8\nadd %r0, %r2\nexit\n\
             f:\nmov %r0, %r6\nadd %r0, %r2\nmov %r6, 100\nmov %r2, 5\nexit",
            ((18u64 << 8) + 7) << 8 | 5,
        ),
        // r10 written before the call is restored after it.
        (
            "mov %r6, %r10\nadd %r10, -8\ncall local f\nmov %r0, %r10\nsub %r0, %r6\nexit\n\
             f:\nmov %r0, %r10\nexit",
            (-8i64) as u64,
        ),
        // The callee's frame is below the caller's.
        (
            "stdw [%r10-8], 1\ncall local f\nldxdw %r0, [%r10-8]\nexit\n\
             f:\nstdw [%r10-8], 2\nstdw [%r10+504], 3\nexit",
            3,
        ),
        // A jump from the callee into the caller's code: its exit returns to the call.
        (
            "mov %r0, 0\ncall local f\nadd %r0, 100\nexit\nf:\nmov %r0, 5\nja -4",
            205,
        ),
        // Falling from the main code into a function after returning from it.
        (
            "mov %r0, 1\ncall local f\nmov %r0, 2\nf:\nadd %r0, 3\nexit",
            5,
        ),
        // A call as the last instruction: falls off the end after returning.
        ("ja +1\nexit\ncall local -2", 0),
    ];
    for (src, want) in cases {
        let r = check(&asm(src), &none, &limits(Some(1000)));
        if src.ends_with("call local -2") {
            assert_eq!(
                trap_kind(r),
                (
                    3,
                    TrapKind::InvalidInstruction {
                        reason: InvalidReason::FellOffEnd
                    }
                )
            );
        } else {
            assert_eq!(r0(r), want, "{src}");
        }
    }
}

#[test]
fn helpers_results_failures_memory_and_clobbers() {
    if !supported() {
        return;
    }
    let input = Setup::input(vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ok = [
        // r1-r5 are zeroed after a helper call.
        (
            "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 1\nmov %r6, %r0\n\
             or %r0, %r1\nor %r0, %r2\nor %r0, %r3\nor %r0, %r4\nor %r0, %r5\nexit",
            15,
        ),
        ("mov %r1, 77\ncall 5\nexit", 77),
        // Reading and writing VM memory through the helper interface.
        ("call 3\nexit", 0x0807_0605_0403_0201),
        (
            "mov %r6, %r1\nadd %r1, 8\nlddw %r2, 0xdeadbeef\ncall 4\nldxdw %r0, [%r6+8]\nexit",
            0xdead_beef,
        ),
        // callx: the id in a register.
        ("mov %r7, 1\nmov %r1, 40\nmov %r2, 2\ncall %r7\nexit", 42),
    ];
    for (src, want) in ok {
        assert_eq!(r0(check(&asm(src), &input, &limits(None))), want, "{src}");
    }
    let traps = [
        ("call 99\nexit", (0, TrapKind::UnknownHelper { id: 99 })),
        (
            "call -1\nexit",
            (0, TrapKind::UnknownHelper { id: 0xffff_ffff }),
        ),
        (
            "lddw %r7, 0x100000005\ncall %r7\nexit",
            (2, TrapKind::UnknownHelper { id: 0x1_0000_0005 }),
        ),
        (
            "mov %r0, 1\nmov %r1, 9\ncall 2\nexit",
            (
                2,
                TrapKind::HelperFailed {
                    id: 2,
                    message: "failed with 9".to_string(),
                },
            ),
        ),
        (
            "mov %r1, 0\ncall 3\nexit",
            (
                1,
                TrapKind::OutOfBounds {
                    addr: 0,
                    len: 8,
                    write: false,
                },
            ),
        ),
        (
            "add %r1, 12\ncall 4\nexit",
            (
                1,
                TrapKind::OutOfBounds {
                    addr: 0x4_0000_000c,
                    len: 8,
                    write: true,
                },
            ),
        ),
    ];
    for (src, want) in traps {
        assert_eq!(
            trap_kind(check(&asm(src), &input, &limits(None))),
            want,
            "{src}"
        );
    }
}

#[test]
fn a_helper_panic_propagates_like_in_the_interpreter() {
    if !supported() {
        return;
    }
    let mut h = ebpf_abi::Helpers::new();
    h.insert(
        6,
        |_: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| -> Result<u64, _> {
            panic!("helper 6 panics")
        },
    );
    let jit = common::jit(&asm("call 6\nexit"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jit.run(ebpf_abi::MemoryMap::new(), [0, 0], &h, &Limits::default())
    }));
    let payload = result.expect_err("the helper's panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"helper 6 panics"));
    // The program is still usable afterwards.
    let ok = jit.run(
        ebpf_abi::MemoryMap::new(),
        [0, 0],
        &helpers(),
        &Limits::default(),
    );
    assert_eq!(ok.unwrap_err().kind, TrapKind::UnknownHelper { id: 6 });
}

#[test]
fn legacy_packet_loads_are_big_endian_and_checked() {
    if !supported() {
        return;
    }
    let input = Setup::input(vec![0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
    let ok = [
        ("ldabsb 1\nexit", 0x34),
        ("ldabsh 0\nexit", 0x1234),
        ("ldabsw 2\nexit", 0x5678_9abc),
        ("mov %r2, 3\nldindh %r2, 1\nexit", 0x9abc),
        // The register's low half plus imm, wrapping in 32 bits.
        ("mov %r2, -1\nldindb %r2, 1\nexit", 0x12),
        ("lddw %r2, 0x700000002\nldindw %r2, 0\nexit", 0x5678_9abc),
        (
            "mov %r0, 7\nmov %r1, 9\nldabsb 0\nadd %r0, %r1\nexit",
            0x12 + 9,
        ),
    ];
    for (src, want) in ok {
        assert_eq!(r0(check(&asm(src), &input, &limits(None))), want, "{src}");
    }
    let oob = |pc, off: u64, len| {
        (
            pc,
            TrapKind::OutOfBounds {
                addr: 0x4_0000_0000 + off,
                len,
                write: false,
            },
        )
    };
    let traps = [
        ("ldabsw 3\nexit", oob(0, 3, 4)),
        ("ldabsb -1\nexit", oob(0, 0xffff_ffff, 1)),
        ("mov %r2, -2\nldindh %r2, 0\nexit", oob(1, 0xffff_fffe, 2)),
    ];
    for (src, want) in traps {
        assert_eq!(
            trap_kind(check(&asm(src), &input, &limits(None))),
            want,
            "{src}"
        );
    }
    // Without input memory, every packet load traps.
    assert_eq!(
        trap_kind(check(
            &asm("ldabsb 0\nexit"),
            &Setup::default(),
            &limits(None)
        )),
        oob(0, 0, 1)
    );
}

#[test]
fn division_and_shift_edge_cases() {
    if !supported() {
        return;
    }
    let values: [u64; 9] = [
        0,
        1,
        7,
        u64::MAX,
        i64::MIN as u64,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        (-7i64) as u64,
    ];
    let ops = ["div", "mod", "sdiv", "smod", "lsh", "rsh", "arsh", "mul"];
    let mut sources = Vec::new();
    for op in ops {
        for w in ["", "32"] {
            for &d in &values {
                for &s in &values {
                    sources.push(format!(
                        "lddw %r0, {d:#x}\nlddw %r1, {s:#x}\n{op}{w} %r0, %r1\nexit"
                    ));
                }
                for imm in [0i64, 1, -1, 7, -7, i32::MIN as i64, 63, 65] {
                    sources.push(format!("lddw %r0, {d:#x}\n{op}{w} %r0, {imm}\nexit"));
                }
            }
        }
    }
    // One program with every case in sequence, each result folded into r9.
    let mut big = String::new();
    for src in &sources {
        let body = src.strip_suffix("exit").unwrap_or(src);
        big.push_str(body);
        big.push_str("xor %r9, %r0\nmul %r9, 0x1003\n");
    }
    big.push_str("mov %r0, %r9\nexit");
    check(&asm(&big), &Setup::default(), &limits(None)).unwrap();
    // And a few as separate programs, where constants reach the JIT's immediate forms.
    for src in sources.iter().step_by(7) {
        check(&asm(src), &Setup::default(), &limits(None)).unwrap();
    }
}

#[test]
fn byte_order_sign_extension_and_jumps() {
    if !supported() {
        return;
    }
    let mut big = String::from("lddw %r1, 0x8192a3b4c5d6e7f8\nmov %r9, 0\n");
    for op in [
        "le16", "le32", "le64", "be16", "be32", "be64", "bswap16", "bswap32", "bswap64",
    ] {
        big.push_str(&format!(
            "mov %r0, %r1\n{op} %r0\nxor %r9, %r0\nmul %r9, 3\n"
        ));
    }
    for op in [
        "movsx864",
        "movsx1664",
        "movsx3264",
        "movsx832",
        "movsx1632",
    ] {
        big.push_str(&format!("{op} %r0, %r1\nxor %r9, %r0\nmul %r9, 5\n"));
    }
    big.push_str("neg32 %r1\nxor %r9, %r1\nneg %r1\nxor %r9, %r1\n");
    let conds = [
        "jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset",
    ];
    let mut label = 0;
    for c in conds {
        for w in ["", "32"] {
            for (a, b) in [
                (0u64, 0u64),
                (1, u64::MAX),
                (0x1_0000_0000, 1),
                (i64::MIN as u64, 5),
            ] {
                big.push_str(&format!(
                    "lddw %r2, {a:#x}\nlddw %r3, {b:#x}\nmov %r0, 1\n{c}{w} %r2, %r3, l{label}\nmov %r0, 2\nl{label}:\nxor %r9, %r0\nmul %r9, 7\n"
                ));
                label += 1;
                big.push_str(&format!(
                    "mov %r0, 1\n{c}{w} %r2, -1, l{label}\nmov %r0, 2\nl{label}:\nxor %r9, %r0\nmul %r9, 7\n"
                ));
                label += 1;
            }
        }
    }
    big.push_str("mov %r0, %r9\nexit");
    check(&asm(&big), &Setup::default(), &limits(None)).unwrap();
}

#[test]
fn compiled_programs_are_send_sync_and_run_concurrently() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<ebpf_jit_cranelift::CraneliftProgram>();
    if !supported() {
        return;
    }
    let program = asm(&format!("mov %r9, %r1\n{LOOPS_AND_CALLS}"));
    let jit = common::jit(&program);
    let setup = Setup::input(vec![3; 40]);
    let want = check(&program, &setup, &limits(None));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let got = setup.run(|map, args| jit.run(map, args, &helpers(), &limits(None)));
                    assert_eq!(got.result, want);
                }
            });
        }
    });
}

#[test]
fn frame_slots_are_unchecked_only_where_provably_inside_the_frame() {
    if !supported() {
        return;
    }
    let none = Setup::default();
    // At the deepest frame, [r10-512] is the region's first byte and [r10-513] is outside.
    let deep = |depth: usize, access: &str| {
        let mut src = String::new();
        for i in 0..depth {
            src.push_str(&format!("call local f{i}\nexit\nf{i}:\n"));
        }
        src.push_str(access);
        src.push_str("\nexit");
        asm(&src)
    };
    let limits = |max_call_depth| Limits {
        budget: None,
        max_call_depth,
    };
    for depth in [0usize, 1, 3] {
        let p = deep(depth, "stdw [%r10-512], 7\nldxdw %r0, [%r10-512]");
        assert_eq!(r0(check(&p, &none, &limits(depth))), 7);
        let p = deep(depth, "stb [%r10-513], 7");
        assert_eq!(
            trap_kind(check(&p, &none, &limits(depth))),
            (
                depth * 2,
                TrapKind::OutOfBounds {
                    addr: layout::vm_addr(layout::RODATA, 0xffff_ffff),
                    len: 1,
                    write: true
                }
            )
        );
        // The caller's frame, one level up, through an offset above r10: checked, in bounds
        // unless at depth 0.
        let p = deep(depth, "stdw [%r10+8], 1\nmov %r0, 1");
        check(&p, &none, &limits(depth)).ok();
    }
}

#[test]
fn call_depth_above_the_contract_maximum_is_clamped_like_the_interpreter() {
    if !supported() {
        return;
    }
    // Endless recursion: the depth limit (max_call_depth clamped to MAX_CALL_DEPTH) or the
    // budget ends it, at the same pc with the same kind, and the deepest frames are in bounds.
    let p = asm("f:\nstdw [%r10-8], 1\ncall local f\nexit");
    for max_call_depth in [
        ebpf_abi::MAX_CALL_DEPTH,
        ebpf_abi::MAX_CALL_DEPTH + 1,
        usize::MAX,
    ] {
        let limits = Limits {
            budget: Some(1 << 20),
            max_call_depth,
        };
        let (_, kind) = trap_kind(check(&p, &Setup::default(), &limits));
        assert_eq!(
            kind,
            TrapKind::CallDepthExceeded {
                max_depth: ebpf_abi::MAX_CALL_DEPTH
            }
        );
    }
}

#[test]
fn large_programs_compile_and_agree() {
    if !supported() {
        return;
    }
    // 7,500 instructions (1,500 under emulation): straight-line arithmetic and stack traffic,
    // branches every few instructions, a loop around it all, and a call.
    let groups = if std::env::var_os("EBPF_CROSS_EMULATED").is_some() {
        300
    } else {
        1_500
    };
    let mut src = String::from("mov %r6, 0\nmov %r0, 1\nouter:\n");
    for i in 0..groups {
        src.push_str(&format!(
            "add %r0, {i}\nstxdw [%r10-{}], %r0\njgt %r0, {}, s{i}\nxor %r0, 0x55\ns{i}:\nmul %r0, 3\n",
            8 * (i % 60 + 1),
            i * 7
        ));
    }
    src.push_str("call local f\nadd %r6, 1\njlt %r6, 3, outer\nexit\nf:\nldxdw %r1, [%r10+8]\nadd %r0, %r1\nexit");
    let program = asm(&src);
    assert!(program.len() > groups * 5);
    let start = std::time::Instant::now();
    let jit = common::jit(&program);
    eprintln!(
        "{} instructions compiled in {:?} to {} bytes",
        program.len(),
        start.elapsed(),
        jit.code_size()
    );
    let full = groups as u64 * 15;
    for budget in [None, Some(full / 2), Some(full - 1)] {
        common::compare_compiled(
            &program,
            &jit,
            &Setup::default(),
            &helpers(),
            &limits(budget),
        )
        .unwrap_or_else(|d| panic!("{}", &d[..d.len().min(2000)]));
    }
}
