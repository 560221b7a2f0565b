//! Property-based differential tests: generated programs give the same `r0`, trap (kind and
//! pc), instruction count and final input and stack memory on the JIT (with and without
//! constant blinding) as on the interpreter.
//!
//! Three generators from `ebpf-testgen`: structured programs (runnable, in bounds, with loops,
//! local calls and atomics) under a random budget that is often too small; arbitrary instruction
//! sequences (jumps anywhere, any memory, unknown helpers: mostly traps); and closed programs
//! (control flow inside the program, so loops and recursion), both under a budget. And the
//! programs the facts exist for: guarded parsers and loops over the input, whose originals
//! never trap and whose off-by-one mutants trap exactly as the interpreter does, under every
//! configuration of the facts (checked or not, from the plain input or the stack alone).

use ebpf_abi::Limits;
use ebpf_contract::differential::{Outcome, Setup, with_stack_dumps};
use ebpf_isa::Program;
use ebpf_isa::table::Form;
use ebpf_isa::{AluOp, Imm64Kind, Insn, Operand, Reg, Size, Width};
use ebpf_testgen::{
    ClampMutant, Guard, ParserStep, StructuredConfig, any_program, any_program_where,
    blinding_edge_imm, blinding_edge_imm64, clamped_walk, closed_program, counted_loop, off_by_one,
    parser, parser_step, structured_with_input, with_immediates,
};
use proptest::prelude::*;

use crate::{RODATA, with_differential};

fn assemble(text: &str) -> Program {
    ebpf_isa::assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A structured program, its input, and no budget or one that is often too small.
fn structured_with_budget(
    config: StructuredConfig,
) -> impl Strategy<Value = (Program, Vec<u8>, Option<u64>)> {
    structured_with_input(config).prop_flat_map(|(s, input)| {
        let budget = prop_oneof![
            1 => Just(None),
            3 => (0..=s.max_steps.saturating_add(2)).prop_map(Some),
        ];
        (Just(s.program), Just(input), budget)
    })
}

fn bigger() -> StructuredConfig {
    StructuredConfig {
        input_len: 128,
        stack_bytes: 256,
        statements: 16,
        depth: 4,
        max_iterations: 8,
        functions: 5,
        ..StructuredConfig::default()
    }
}

/// Compares `program` on the engines over `input` (mapped or not) with `limits`; returns the
/// interpreter's outcome.
fn agree(program: &Program, input: Vec<u8>, map_input: bool, limits: Limits) -> Outcome {
    let setup = Setup {
        input: map_input.then_some(input),
        limits,
        ..Setup::none()
    }
    .rodata(*RODATA);
    with_differential(|d| d.check(program, &setup))
}

/// `program` (ALU operations with an immediate, `lddw`s, stores of an immediate, conditional
/// jumps against one) made to run every instruction and show every value: destinations in
/// `r0`-`r9`, stores at `r10 - 8`, each jump over one `add r0, 1`, and every register stored
/// on the stack at the end.
fn straight_line(program: &Program) -> Program {
    let add = |r: Reg, src: Operand| Insn::Alu {
        width: Width::W64,
        op: AluOp::Add,
        dst: r,
        src,
    };
    let low = |r: Reg| Reg::ALL[usize::from(r.index()) % 10];
    let mut insns = Vec::new();
    for &insn in program.insns() {
        match insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => insns.push(Insn::Alu {
                width,
                op,
                dst: low(dst),
                src,
            }),
            Insn::LoadImm64 { dst, kind, imm } => insns.push(Insn::LoadImm64 {
                dst: low(dst),
                kind,
                imm,
            }),
            Insn::Store { size, src, .. } => insns.push(Insn::Store {
                size,
                dst: Reg::R10,
                off: -8,
                src,
            }),
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                ..
            } => {
                insns.push(Insn::Jump {
                    width,
                    cond,
                    dst: low(dst),
                    src,
                    off: 1,
                });
                insns.push(add(Reg::R0, Operand::Imm(1)));
            }
            _ => {}
        }
    }
    // The stack dump is what shows them: `r0` is the dump helper's result.
    for (r, off) in Reg::ALL[..10].iter().zip((-96..=-16).step_by(8)) {
        insns.push(Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off,
            src: Operand::Reg(*r),
        });
    }
    insns.push(Insn::Exit);
    Program::from_insns(insns)
}

/// Programs of the forms that carry a constant the x86 JIT may blind, for [`straight_line`].
fn constant_forms(len: std::ops::Range<usize>) -> impl Strategy<Value = Program> {
    any_program_where(len.into(), &|spec| {
        matches!(
            spec.form,
            Form::AluImm(..)
                | Form::JumpImm(..)
                | Form::StoreImm(_)
                | Form::LoadImm64(Imm64Kind::Value)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Immediates on both sides of every edge of constant blinding (plain, built from their
    /// parts, blinded) give the values the interpreter computes.
    #[test]
    fn immediates_at_the_edges_of_blinding_agree(
        program in constant_forms(1..40),
        imms in proptest::collection::vec(blinding_edge_imm(), 1..40),
        wides in proptest::collection::vec(blinding_edge_imm64(), 1..8),
    ) {
        let program = straight_line(&with_immediates(&program, &imms, &wides));
        let got = agree(&with_stack_dumps(&program), Vec::new(), true, Limits::default());
        prop_assert!(got.result.is_ok(), "{:?}", got.result);
    }

    #[test]
    fn structured_programs_agree(
        (program, input, budget) in structured_with_budget(StructuredConfig::default())
    ) {
        let limits = Limits { budget, ..Limits::default() };
        agree(&with_stack_dumps(&program), input, true, limits);
    }

    #[test]
    fn larger_structured_programs_agree(
        (program, input, budget) in structured_with_budget(bigger())
    ) {
        let limits = Limits { budget, ..Limits::default() };
        agree(&with_stack_dumps(&program), input, true, limits);
    }

    #[test]
    fn arbitrary_programs_agree(
        program in any_program(1..48),
        input in proptest::collection::vec(any::<u8>(), 0..64),
        budget in 0u64..400,
        map_input in any::<bool>(),
        depth in 0usize..4,
    ) {
        let limits = Limits { budget: Some(budget), max_call_depth: depth };
        agree(&program, input, map_input, limits);
    }

    #[test]
    fn closed_programs_agree(
        program in closed_program(1..48),
        input in proptest::collection::vec(any::<u8>(), 0..64),
        budget in 0u64..2000,
        depth in 0usize..10,
    ) {
        let limits = Limits { budget: Some(budget), max_call_depth: depth };
        agree(&with_stack_dumps(&program), input, true, limits);
    }

    #[test]
    fn guarded_parsers_never_trap_and_their_mutants_trap_alike(
        steps in prop::collection::vec(parser_step(), 1..6),
        (which, kind) in (0usize..24, 0u8..5),
        data in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let (text, _) = parser(&steps, None);
        let program = assemble(&text);
        // A guard on the remaining length (`end - p < n`) lets a pointer already past the end
        // through; every other guard keeps the original in bounds.
        let safe = !steps.iter().any(|s| {
            matches!(s, ParserStep::Header { guard: Guard::Len32, .. })
        });
        for len in [0, 1, data.len() / 3, data.len() / 2, data.len()] {
            let len = len.min(data.len());
            let got = agree(&program, data[..len].to_vec(), true, Limits::default());
            prop_assert!(
                !safe || got.result.is_ok(),
                "{:?} on {} bytes:\n{}", got.result, len, text
            );
        }
        let (mutant, _) = parser(&steps, Some(off_by_one(which, kind, steps.len())));
        let program = assemble(&mutant);
        for len in 0..=data.len().min(48) {
            agree(&program, data[..len].to_vec(), true, Limits::default());
        }
    }

    /// `n = min(len >> s, cap)` and a walk over `n` elements (`tests/elf/loops/sort.c`'s
    /// checksum loop), whose accesses the facts prove: the original never traps; its
    /// off-by-one mutants trap alike on every engine, on lengths around the cap's.
    #[test]
    fn clamped_walks_never_trap_and_their_mutants_trap_alike(
        stride_log in 0u8..4,
        cap in 1u32..48,
        mutant in prop::sample::select(vec![
            ClampMutant::None,
            ClampMutant::None,
            ClampMutant::CapPlusOne,
            ClampMutant::ThresholdLow,
            ClampMutant::Inclusive,
            ClampMutant::PastLast,
        ]),
        around in -3i64..3,
        extra in 0u64..8,
    ) {
        let text = clamped_walk(stride_log, cap, mutant);
        let program = assemble(&text);
        let elems = (i64::from(cap) + around).max(0) as u64;
        let len = (elems << stride_log) + (extra & ((1 << stride_log) - 1));
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let got = agree(&program, data, true, Limits::default());
        if mutant == ClampMutant::None {
            prop_assert!(got.result.is_ok(), "{:?} on {} bytes:\n{}", got.result, len, text);
        }
    }

    #[test]
    fn counted_loops_never_trap_and_their_mutants_trap_alike(
        stride_log in 0u8..4,
        width_log in 0u8..4,
        at in 0u8..9,
        by_index in any::<bool>(),
        le in any::<bool>(),
        len in 0usize..70,
    ) {
        let width_log = width_log.min(stride_log);
        let original = !le && u32::from(at) + (1u32 << width_log) <= 1 << stride_log;
        let text = counted_loop(stride_log, width_log, at, by_index, le);
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let got = agree(&assemble(&text), data, true, Limits::default());
        if original {
            prop_assert!(got.result.is_ok(), "{:?}:\n{}", got.result, text);
        }
    }

    /// The bench programs (loops bounded by lengths and counts read from the input) on bodies
    /// whose length field is right, short, long or absurd: their versioned loops run the
    /// unchecked copy when the conditions hold and the checked loop when they do not.
    #[test]
    fn bench_programs_with_lying_headers_agree(
        which in 0usize..ebpf_bench::PROGRAMS.len(),
        body in prop::collection::vec(any::<u8>(), 0..160),
        lie in prop::sample::select(vec![0i64, 0, 0, -1, -8, 1, 8, 1 << 20, i64::MAX]),
        count in prop::sample::select(vec![None, Some(0u64), Some(1), Some(3), Some(9), Some(u64::MAX / 4)]),
    ) {
        let program = ebpf_bench::PROGRAMS[which].assemble();
        let mut input = Vec::new();
        let len = (body.len() as i64 + 8).wrapping_add(lie) as u64;
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(&body);
        if let (Some(n), true) = (count, input.len() >= 16) {
            input[8..16].copy_from_slice(&n.to_le_bytes());
        }
        let limits = Limits { budget: Some(300_000), ..Limits::default() };
        agree(&program, input, true, limits);
    }
}
