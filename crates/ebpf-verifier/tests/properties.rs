//! Properties of the verifier on generated inputs:
//!
//! - it never panics, on arbitrary byte strings (`verify_bytes`) or on arbitrary decoded
//!   programs, and neither does the control-flow graph it builds on;
//! - `verify` and `verify_bytes` agree on every program that encodes;
//! - a policy adds its findings to the built-in ones and never replaces them;
//! - every program it accepts runs in the interpreter without an `InvalidInstruction` trap
//!   (other traps — out of bounds, budget — are allowed), and a `Bounded { max_instructions }`
//!   program never executes more than that many instructions (checked on accepted byte
//!   strings, on random closed programs behind a prologue that writes every register and the
//!   frame — about a fifth of which pass — and on the two kinds below);
//! - whatever sits behind a jump on a known constant that always goes elsewhere (random,
//!   often undecodable slots) neither rejects a program nor changes what it computes;
//! - programs that are correct by construction — straight-line code that initialises every
//!   register and its stack area first, then random ALU, stack, atomic, helper and forward-jump
//!   operations, then `exit`; and `ebpf_testgen::structured_program`s — are all accepted.

use ebpf_abi::{
    Exit, HelperError, Helpers, Limits, MemoryMap, Region, Trap, TrapKind, VmMemory, layout,
};
use ebpf_cfg::{BlockId, Cfg};
use ebpf_interp::Interpreter;
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Insn, Operand, Program, Reg, SignExtend, Size,
    SwapWidth, Width,
};
use ebpf_testgen::{StructuredConfig, arbitrary_bytes, closed_program, structured_with_input};
use ebpf_verifier::{
    Finding, FindingKind, Policy, PolicyView, Severity, Termination, VerifiedProgram, Verifier,
    VerifierConfig,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// The helper ids the generated programs may call, registered in both the verifier and the
/// interpreter.
const HELPERS: [u32; 2] = [1, 2];

fn config() -> VerifierConfig {
    VerifierConfig {
        helpers: Some(HELPERS.to_vec()),
        ..VerifierConfig::default()
    }
}

fn helpers() -> Helpers {
    let mut h = Helpers::new();
    h.insert(
        1,
        |a: [u64; 5], _: &mut dyn VmMemory| -> Result<u64, HelperError> {
            Ok(a[0].wrapping_add(a[1]))
        },
    );
    h.insert(
        2,
        |a: [u64; 5], _: &mut dyn VmMemory| -> Result<u64, HelperError> { Ok(a[2] ^ 0x5a) },
    );
    h
}

/// Exercises every query of the graph (they must not panic either).
fn walk(cfg: &Cfg) {
    for (i, block) in cfg.blocks().iter().enumerate() {
        let id = BlockId(i as u32);
        let _ = (
            cfg.is_reachable(id),
            cfg.idom(id),
            block.successors().count(),
        );
        assert!(block.start < block.end, "empty block {i}");
    }
    let _ = (
        cfg.loops(),
        cfg.back_edges(),
        cfg.recursion(),
        cfg.longest_path(),
    );
}

/// Runs an accepted program; returns the run's result.
fn run(verified: &VerifiedProgram, input: &mut [u8], budget: u64) -> Result<Exit, Trap> {
    let interp = Interpreter::new(verified.program());
    let mut map = MemoryMap::new();
    let args = layout::input_args(input.len() as u64);
    map.insert(layout::INPUT, Region::Writable(input));
    let limits = Limits {
        budget: Some(budget),
        ..Limits::default()
    };
    interp.run(map, args, &helpers(), &limits)
}

/// What an accepted program promises: no `InvalidInstruction` trap within a budget of 10,000,
/// and for a bounded one, no more than its bound (so a budget of exactly the bound suffices).
fn check_accepted(verified: &VerifiedProgram, input: &[u8]) -> Result<(), TestCaseError> {
    let result = run(verified, &mut input.to_vec(), 10_000);
    if let Err(Trap {
        pc,
        kind: TrapKind::InvalidInstruction { reason },
    }) = &result
    {
        return Err(TestCaseError::fail(format!(
            "accepted program trapped at pc {pc}: {reason}\n{}",
            ebpf_isa::disassemble(verified.program())
        )));
    }
    if let Termination::Bounded { max_instructions } = verified.termination() {
        if let Ok(exit) = &result {
            prop_assert!(
                exit.instructions <= max_instructions,
                "ran {} instructions, bound {max_instructions}",
                exit.instructions
            );
        }
        let tight = run(verified, &mut input.to_vec(), max_instructions);
        prop_assert!(
            !matches!(
                tight,
                Err(Trap {
                    kind: TrapKind::BudgetExhausted { .. },
                    ..
                })
            ),
            "a budget of the bound {max_instructions} ran out: {tight:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Programs correct by construction.

/// One generated operation; `reg`s are r0..=r9 (r10 is only ever a base or a source).
#[derive(Clone, Debug)]
enum Op {
    Alu(Width, AluOp, u8, Src),
    Neg(Width, u8),
    Endian(ByteOrder, SwapWidth, u8),
    MovSx(Width, SignExtend, u8, u8),
    Lddw(u8, u64),
    /// Store to the slot'th 8-byte slot below r10 (0..8), at an offset aligned to the size.
    Store(Size, u8, u8, Src),
    Load(Size, bool, u8, u8, u8),
    Atomic(Width, AtomicOp, u8, u8),
    /// A conditional jump over the next `skip` operations (clamped to the exit).
    Jump(Width, Cond, u8, Src, u8),
    /// An unconditional jump over the next `skip` operations.
    Ja(u8),
    /// A helper call (r1-r5 are re-initialised after it).
    Call(u32),
}

#[derive(Clone, Debug)]
enum Src {
    Reg(u8),
    Imm(i32),
}

fn reg(r: u8) -> Reg {
    Reg::new(r).unwrap()
}

fn operand(s: &Src) -> Operand {
    match *s {
        Src::Reg(r) => Operand::Reg(reg(r)),
        Src::Imm(i) => Operand::Imm(i),
    }
}

fn any_src() -> impl Strategy<Value = Src> {
    prop_oneof![
        // Reading r10 is allowed: its value is a pointer, and arithmetic on it is fine.
        (0u8..=10).prop_map(Src::Reg),
        prop_oneof![
            Just(0),
            Just(-1),
            Just(1),
            Just(8),
            Just(32),
            Just(i32::MIN),
            any::<i32>()
        ]
        .prop_map(Src::Imm),
    ]
}

fn any_width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W32), Just(Width::W64)]
}

fn any_op() -> impl Strategy<Value = Op> {
    let dst = 0u8..=9;
    prop_oneof![
        8 => (any_width(), select(AluOp::ALL.to_vec()), dst.clone(), any_src())
            .prop_map(|(w, op, d, s)| Op::Alu(w, op, d, s)),
        1 => (any_width(), dst.clone()).prop_map(|(w, d)| Op::Neg(w, d)),
        1 => (
            prop_oneof![Just(ByteOrder::Le), Just(ByteOrder::Be), Just(ByteOrder::Swap)],
            prop_oneof![Just(SwapWidth::W16), Just(SwapWidth::W32), Just(SwapWidth::W64)],
            dst.clone(),
        )
            .prop_map(|(o, w, d)| Op::Endian(o, w, d)),
        1 => (
            prop_oneof![
                Just((Width::W32, SignExtend::From8)),
                Just((Width::W32, SignExtend::From16)),
                Just((Width::W64, SignExtend::From8)),
                Just((Width::W64, SignExtend::From16)),
                Just((Width::W64, SignExtend::From32)),
            ],
            dst.clone(),
            0u8..=10,
        )
            .prop_map(|((w, f), d, s)| Op::MovSx(w, f, d, s)),
        1 => (dst.clone(), any::<u64>()).prop_map(|(d, v)| Op::Lddw(d, v)),
        3 => (select(Size::ALL.to_vec()), 0u8..8, 0u8..8, any_src())
            .prop_map(|(size, slot, sub, s)| Op::Store(size, slot, sub, s)),
        3 => (select(Size::ALL.to_vec()), any::<bool>(), dst.clone(), 0u8..8, 0u8..8)
            .prop_map(|(size, signed, d, slot, sub)| Op::Load(size, signed, d, slot, sub)),
        1 => (any_width(), select(AtomicOp::ALL.to_vec()), 0u8..8, 0u8..=9)
            .prop_map(|(w, op, slot, s)| Op::Atomic(w, op, slot, s)),
        2 => (any_width(), select(Cond::ALL.to_vec()), dst.clone(), any_src(), 0u8..6)
            .prop_map(|(w, c, d, s, k)| Op::Jump(w, c, d, s, k)),
        1 => (0u8..4).prop_map(Op::Ja),
        1 => select(HELPERS.to_vec()).prop_map(Op::Call),
    ]
}

/// The offset below r10 of an access of `size` in 8-byte slot `slot` (0 = r10-8), at sub-slot
/// position `sub` rounded to the size.
fn stack_off(size: Size, slot: u8, sub: u8) -> i16 {
    let bytes = size.bytes() as i16;
    let within = (i16::from(sub) * bytes) % 8;
    -8 * (i16::from(slot) + 1) + within
}

/// A straight-line program: prologue (every register r0..=r9 and the 64 bytes below r10
/// written), the operations, `exit`. Forward jumps only, so it is loop-free.
fn lower(inits: &[i32], ops: &[Op]) -> Program {
    let mut insns = Vec::new();
    for (r, imm) in inits.iter().enumerate().take(10) {
        insns.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: reg(r as u8),
            src: Operand::Imm(*imm),
        });
    }
    for slot in 0..8u8 {
        insns.push(Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: stack_off(Size::DW, slot, 0),
            src: Operand::Imm(inits[usize::from(slot)]),
        });
    }
    // Instruction index of each op's first instruction, and jumps to patch: (insn, target op).
    let mut first = Vec::with_capacity(ops.len() + 1);
    let mut patches = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        first.push(insns.len());
        let insn = match op {
            Op::Alu(w, op, d, s) => Insn::Alu {
                width: *w,
                op: *op,
                dst: reg(*d),
                src: operand(s),
            },
            Op::Neg(w, d) => Insn::Neg {
                width: *w,
                dst: reg(*d),
            },
            Op::Endian(o, w, d) => Insn::Endian {
                order: *o,
                width: *w,
                dst: reg(*d),
            },
            Op::MovSx(w, f, d, s) => Insn::MovSx {
                width: *w,
                from: *f,
                dst: reg(*d),
                src: reg(*s),
            },
            Op::Lddw(d, v) => Insn::LoadImm64 {
                dst: reg(*d),
                kind: ebpf_isa::Imm64Kind::Value,
                imm: *v,
            },
            Op::Store(size, slot, sub, s) => Insn::Store {
                size: *size,
                dst: Reg::R10,
                off: stack_off(*size, *slot, *sub),
                src: operand(s),
            },
            Op::Load(size, signed, d, slot, sub) => {
                // There is no sign-extending doubleword load.
                let signed = *signed && *size != Size::DW;
                Insn::Load {
                    size: *size,
                    signed,
                    dst: reg(*d),
                    src: Reg::R10,
                    off: stack_off(*size, *slot, *sub),
                }
            }
            Op::Atomic(w, op, slot, s) => {
                let size = if *w == Width::W64 { Size::DW } else { Size::W };
                Insn::Atomic {
                    width: *w,
                    op: *op,
                    dst: Reg::R10,
                    src: reg(*s),
                    off: stack_off(size, *slot, 0),
                }
            }
            Op::Jump(w, c, d, s, skip) => {
                patches.push((insns.len(), (i + 1 + usize::from(*skip)).min(ops.len())));
                Insn::Jump {
                    width: *w,
                    cond: *c,
                    dst: reg(*d),
                    src: operand(s),
                    off: 0,
                }
            }
            Op::Ja(skip) => {
                patches.push((insns.len(), (i + 1 + usize::from(*skip)).min(ops.len())));
                Insn::Ja { off: 0 }
            }
            Op::Call(id) => Insn::Call {
                kind: CallKind::Helper,
                imm: *id as i32,
            },
        };
        insns.push(insn);
        if let Op::Call(_) = op {
            for r in 1..=5u8 {
                insns.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: reg(r),
                    src: Operand::Imm(i32::from(r)),
                });
            }
        }
    }
    first.push(insns.len());
    insns.push(Insn::Exit);
    // Patch jump offsets in slots (an lddw takes two).
    let mut pcs = Vec::with_capacity(insns.len());
    let mut pc = 0i64;
    for insn in &insns {
        pcs.push(pc);
        pc += insn.slots() as i64;
    }
    for (at, target_op) in patches {
        let off = pcs[first[target_op]] - pcs[at] - 1;
        let off = i16::try_from(off).unwrap();
        match &mut insns[at] {
            Insn::Jump { off: o, .. } | Insn::Ja { off: o } => *o = off,
            _ => unreachable!(),
        }
    }
    Program::from_insns(insns)
}

fn constructed_program() -> impl Strategy<Value = Program> {
    (vec(any::<i32>(), 10), vec(any_op(), 0..40)).prop_map(|(inits, ops)| lower(&inits, &ops))
}

/// `mov r0, 0; jeq r0, 0, +k`, then `junk` (k slots), then `program`: the junk never runs.
/// Jumps, calls and `lddw` in the junk become an unknown opcode, so that the junk cannot reach
/// into the program (a jump or call target outside the program is an error even in dead code,
/// as in the kernel, and an `lddw` would swallow the program's first slot).
fn behind_dead_junk(junk: &[u8], program: &Program) -> Vec<u8> {
    let mut junk = junk.to_vec();
    for slot in junk.chunks_mut(8) {
        let class = slot[0] & 7;
        if slot[0] == 0x18 || (matches!(class, 5 | 6) && slot[0] != 0x95) {
            slot[0] = 0xff;
        }
    }
    let k = (junk.len() / 8) as i16;
    let prefix = Program::from_insns(vec![
        Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Operand::Imm(0),
        },
        Insn::Jump {
            width: Width::W64,
            cond: Cond::Eq,
            dst: Reg::R0,
            src: Operand::Imm(0),
            off: k,
        },
    ]);
    [prefix.to_bytes(), junk, program.to_bytes()].concat()
}

// ---------------------------------------------------------------------------------------------
// Policies for the "adds, never replaces" property.

/// One warning per instruction that writes memory.
struct EveryStore;

impl Policy for EveryStore {
    fn name(&self) -> &str {
        "every-store"
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        for (pc, insn) in program.iter() {
            if matches!(insn, Insn::Store { .. } | Insn::Atomic { .. }) {
                out.push((pc, Severity::Warning, "stores".into()));
            }
        }
    }
}

/// One error at pc 0, always.
struct Never;

impl Policy for Never {
    fn name(&self) -> &str {
        "never"
    }

    fn check(&self, _program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        out.push((0, Severity::Error, "no program is allowed".into()));
    }
}

fn findings(result: &Result<VerifiedProgram, ebpf_verifier::Rejected>) -> Vec<Finding> {
    match result {
        Ok(v) => v.warnings().to_vec(),
        Err(r) => r.findings().to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn verify_bytes_never_panics(bytes in arbitrary_bytes(320)) {
        let verifier = Verifier::new(config());
        let result = verifier.verify_bytes(&bytes);
        if let Ok(program) = ebpf_isa::decode(&bytes) {
            walk(&Cfg::build(&program));
            // Both entry points agree when the bytes decode.
            prop_assert_eq!(findings(&verifier.verify(program)), findings(&result));
            if let Ok(verified) = &result {
                prop_assert!(verified.undecodable().is_empty());
            }
        } else if let Ok(verified) = &result {
            // Undecodable bytes are accepted only where they never run: each has a warning,
            // and `check_accepted` below runs the program and requires that no stand-in traps.
            prop_assert!(!verified.undecodable().is_empty());
            let warned: Vec<usize> = verified
                .warnings()
                .iter()
                .filter(|w| matches!(w.kind, FindingKind::Decode(_)))
                .map(|w| w.pc)
                .collect();
            for pc in &warned {
                prop_assert!(verified.undecodable().contains(pc));
            }
            prop_assert!(!warned.is_empty());
        }
        if let Ok(verified) = &result {
            check_accepted(verified, &[0u8; 64])?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn closed_programs_verify_and_accepted_ones_run(program in closed_program(0..40)) {
        walk(&Cfg::build(&program));
        let verifier = Verifier::new(config());
        let result = verifier.verify(program.clone());
        prop_assert_eq!(findings(&verifier.verify_bytes(&program.to_bytes())), findings(&result));
        // Findings are sorted by pc.
        let f = findings(&result);
        prop_assert!(f.windows(2).all(|w| w[0].pc <= w[1].pc));
        if let Ok(verified) = &result {
            check_accepted(verified, &[0u8; 64])?;
        }
    }

    #[test]
    fn policies_add_findings_and_never_replace_them(program in closed_program(0..30)) {
        let plain = findings(&Verifier::new(config()).verify(program.clone()));
        let with = Verifier::new(config()).with_policy(EveryStore).with_policy(Never);
        let result = with.verify(program.clone());
        prop_assert!(result.is_err(), "the `never` policy rejects everything");
        let all = findings(&result);
        let built_in: Vec<Finding> = all
            .iter()
            .filter(|f| !matches!(f.kind, FindingKind::Policy { .. }))
            .cloned()
            .collect();
        prop_assert_eq!(&built_in, &plain);
        let stores = program
            .insns()
            .iter()
            .filter(|i| matches!(i, Insn::Store { .. } | Insn::Atomic { .. }))
            .count();
        prop_assert_eq!(all.len(), plain.len() + stores + 1);
    }

    #[test]
    fn constructed_programs_are_accepted_and_run(program in constructed_program()) {
        let verifier = Verifier::new(config());
        let verified = match verifier.verify(program.clone()) {
            Ok(v) => v,
            Err(r) => {
                return Err(TestCaseError::fail(format!(
                    "rejected: {:?}\n{}",
                    r.findings().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    ebpf_isa::disassemble(&program)
                )));
            }
        };
        // Only warnings a straight-line program can have: division by zero, code jumped over
        // by a `ja`, and code behind a jump on constants that always goes elsewhere.
        for w in verified.warnings() {
            prop_assert!(
                matches!(
                    w.kind,
                    FindingKind::DivisionByZero
                        | FindingKind::Unreachable { .. }
                        | FindingKind::NeverRuns { .. }
                ),
                "unexpected warning {}", w
            );
        }
        let bounded = matches!(verified.termination(), Termination::Bounded { .. });
        prop_assert!(bounded, "a loop-free program is bounded");
        check_accepted(&verified, &[])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever sits behind a jump that always goes elsewhere — undecodable slots, unknown
    /// helpers, reads of unwritten registers — a program accepted without it is accepted
    /// with it, says so in warnings, never traps on it, and computes the same.
    #[test]
    fn dead_junk_changes_nothing(
        program in constructed_program(),
        junk in ebpf_testgen::near_valid_slots(1..8),
        input in vec(any::<u8>(), 64),
    ) {
        let verifier = Verifier::new(config());
        let plain = verifier.verify(program.clone());
        prop_assert!(plain.is_ok(), "constructed programs are accepted");
        let bytes = behind_dead_junk(&junk, &program);
        let junked = match verifier.verify_bytes(&bytes) {
            Ok(v) => v,
            Err(r) => {
                return Err(TestCaseError::fail(format!(
                    "rejected for dead junk: {:?}",
                    r.findings().iter().map(ToString::to_string).collect::<Vec<_>>(),
                )));
            }
        };
        let end = 2 + junk.len() / 8;
        let never_runs = FindingKind::NeverRuns { end, branch: 1 };
        prop_assert!(
            junked.warnings().iter().any(|w| w.pc == 2 && w.kind == never_runs),
            "{:?}", junked.warnings()
        );
        prop_assert!(junked.undecodable().iter().all(|pc| (2..end).contains(pc)));
        check_accepted(&junked, &input)?;
        let plain = plain.unwrap();
        let r0 = |v: &VerifiedProgram| run(v, &mut input.clone(), 10_000).map(|e| e.r0);
        prop_assert_eq!(r0(&plain), r0(&junked).map_err(|t| Trap { pc: t.pc - end, ..t }));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn structured_programs_are_accepted_and_run(
        (s, input) in structured_with_input(StructuredConfig::default())
    ) {
        let verifier = Verifier::new(config());
        let verified = match verifier.verify(s.program.clone()) {
            Ok(v) => v,
            Err(r) => {
                return Err(TestCaseError::fail(format!(
                    "rejected: {:?}\n{}",
                    r.findings().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    ebpf_isa::disassemble(&s.program)
                )));
            }
        };
        check_accepted(&verified, &input)?;
        // Structured programs stay in bounds and terminate: the run must succeed.
        let mut mem = input.clone();
        let exit = run(&verified, &mut mem, s.max_steps.max(1));
        prop_assert!(exit.is_ok(), "{exit:?}");
    }
}

/// Random closed programs after a prologue that writes every register and the whole frame:
/// enough of them pass the verifier for "accepted programs run" to be exercised on arbitrary
/// instructions too (counted, and required to be at least 5%).
#[test]
fn initialised_closed_programs_verify_and_accepted_ones_run() {
    use proptest::test_runner::{Config, TestRunner};
    const CASES: u32 = 4096;
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    let prologue: Vec<Insn> = (0..=9u8)
        .map(|r| Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: reg(r),
            src: Operand::Imm(0),
        })
        .chain((1..=64i16).map(|k| Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: -8 * k,
            src: Operand::Imm(0),
        }))
        .collect();
    let result = runner.run(&closed_program(0..30), |body| {
        let mut insns = prologue.clone();
        insns.extend(body.into_insns());
        let program = Program::from_insns(insns);
        if let Ok(verified) = Verifier::new(config()).verify(program) {
            accepted.set(accepted.get() + 1);
            check_accepted(&verified, &[0u8; 64])?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!("{} of {CASES} accepted", accepted.get());
    assert!(
        accepted.get() >= CASES / 20,
        "only {} of {CASES} accepted",
        accepted.get()
    );
}
