//! Property-based differential tests: generated programs give the same r0, trap (kind and pc),
//! instruction count and final memory on the interpreter and on the Cranelift JIT.
//!
//! - structured programs (loops, local calls, stack and input traffic, atomics, every ALU op)
//!   that run to completion, with and without a budget that cuts them short;
//! - arbitrary instruction sequences, which jump anywhere, call anything and touch any
//!   address, under a small budget;
//! - the programs the facts exist for: guarded parsers and loops over the input, whose
//!   originals never trap and whose off-by-one mutants trap exactly as the interpreter does,
//!   and (on x86-64, where the bench crate builds) the engines bench's programs with lying
//!   length and count fields, whose guards the facts rely on.
//!
//! Each runs on the JIT's four variants (see `with_differential`): facts of the stack or of
//! the plain input, checks dropped or kept, one function or units of a few instructions.
//!
//! `PROPTEST_CASES` sets the number of cases (the cross-architecture run lowers it).

use ebpf_abi::Limits;
use ebpf_contract::differential::{Outcome, Setup};
use ebpf_isa::Program;
use ebpf_testgen::{
    ClampMutant, Guard, ParserStep, StructuredConfig, any_program, clamped_walk, closed_program,
    counted_loop, off_by_one, parser, parser_step, structured_with_input,
};
use proptest::prelude::*;

use crate::{RODATA, with_differential};

fn assemble(text: &str) -> Program {
    ebpf_isa::assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Compares `program` on the JIT's variants and the interpreter over `input`, with
/// [`RODATA`] mapped (so that runs are admitted by the input facts' entry) and `limits`;
/// returns the interpreter's outcome.
fn agree(program: &Program, input: Vec<u8>, limits: Limits) -> Outcome {
    let setup = Setup {
        input: Some(input),
        limits,
        ..Setup::none()
    }
    .rodata(*RODATA);
    with_differential(|d| d.check(program, &setup))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn structured() -> StructuredConfig {
    StructuredConfig {
        statements: 12,
        depth: 3,
        max_iterations: 6,
        functions: 3,
        ..StructuredConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_programs_agree(
        (s, input) in structured_with_input(structured()),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        prop_assume!(ebpf_jit_cranelift::host_supported());
        with_differential(|d| {
            let setup = Setup::input(input);
            let full = d.compare(&s.program, &setup).map_err(TestCaseError::fail)?;
            let exit = full.result.map_err(|t| TestCaseError::fail(format!("trapped: {t}")))?;
            prop_assert!(exit.instructions <= s.max_steps);
            // The same run cut short by the budget at a few places (each hands the run to the
            // interpreter somewhere), and with too little call depth.
            for cut in &cuts {
                let budget = cut.index(exit.instructions as usize + 1) as u64;
                d.compare(&s.program, &setup.clone().budget(Some(budget)))
                    .map_err(TestCaseError::fail)?;
            }
            d.compare(&s.program, &setup.depth(1)).map_err(TestCaseError::fail)?;
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_programs_agree(
        program in any_program(1..48),
        input in prop::collection::vec(any::<u8>(), 0..48),
        budget in 0u64..300,
        depth in 0usize..4,
    ) {
        prop_assume!(ebpf_jit_cranelift::host_supported());
        let setup = Setup::input(input).budget(Some(budget)).depth(depth);
        with_differential(|d| d.compare(&program, &setup).map(drop))
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn closed_programs_agree(
        program in closed_program(1..40),
        input in prop::collection::vec(any::<u8>(), 16..32),
        budget in 0u64..500,
    ) {
        prop_assume!(ebpf_jit_cranelift::host_supported());
        let setup = Setup::input(input).budget(Some(budget)).depth(3);
        with_differential(|d| d.compare(&program, &setup).map(drop))
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn guarded_parsers_never_trap_and_their_mutants_trap_alike(
        steps in prop::collection::vec(parser_step(), 1..6),
        (which, kind) in (0usize..24, 0u8..5),
        data in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        prop_assume!(ebpf_jit_cranelift::host_supported());
        let (text, _) = parser(&steps, None);
        let program = assemble(&text);
        // A guard on the remaining length (`end - p < n`) lets a pointer already past the end
        // through; every other guard keeps the original in bounds.
        let safe = !steps.iter().any(|s| {
            matches!(s, ParserStep::Header { guard: Guard::Len32, .. })
        });
        for len in [0, 1, data.len() / 3, data.len() / 2, data.len()] {
            let len = len.min(data.len());
            let got = agree(&program, data[..len].to_vec(), Limits::default());
            prop_assert!(
                !safe || got.result.is_ok(),
                "{:?} on {} bytes:\n{}", got.result, len, text
            );
        }
        let (mutant, _) = parser(&steps, Some(off_by_one(which, kind, steps.len())));
        let program = assemble(&mutant);
        for len in (0..=data.len().min(48)).step_by(3) {
            agree(&program, data[..len].to_vec(), Limits::default());
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
        prop_assume!(ebpf_jit_cranelift::host_supported());
        let text = clamped_walk(stride_log, cap, mutant);
        let program = assemble(&text);
        let elems = (i64::from(cap) + around).max(0) as u64;
        let len = (elems << stride_log) + (extra & ((1 << stride_log) - 1));
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let got = agree(&program, data, Limits::default());
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
        prop_assume!(ebpf_jit_cranelift::host_supported());
        let width_log = width_log.min(stride_log);
        let original = !le && u32::from(at) + (1u32 << width_log) <= 1 << stride_log;
        let text = counted_loop(stride_log, width_log, at, by_index, le);
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let got = agree(&assemble(&text), data, Limits::default());
        if original {
            prop_assert!(got.result.is_ok(), "{:?}:\n{}", got.result, text);
        }
    }
}

/// The bench programs (loops bounded by lengths and counts read from the input), whose
/// accesses the facts place in regions and whose divisors they prove, on bodies whose length
/// field is right, short, long or absurd.
#[cfg(target_arch = "x86_64")]
mod bench_programs {
    use super::*;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn bench_programs_with_lying_headers_agree(
            which in 0usize..ebpf_bench::PROGRAMS.len(),
            body in prop::collection::vec(any::<u8>(), 0..160),
            lie in prop::sample::select(vec![0i64, 0, 0, -1, -8, 1, 8, 1 << 20, i64::MAX]),
            count in prop::sample::select(
                vec![None, Some(0u64), Some(1), Some(3), Some(9), Some(u64::MAX / 4)]
            ),
        ) {
            prop_assume!(ebpf_jit_cranelift::host_supported());
            let program = ebpf_bench::PROGRAMS[which].assemble();
            let mut input = Vec::new();
            let len = (body.len() as i64 + 8).wrapping_add(lie) as u64;
            input.extend_from_slice(&len.to_le_bytes());
            input.extend_from_slice(&body);
            if let (Some(n), true) = (count, input.len() >= 16) {
                input[8..16].copy_from_slice(&n.to_le_bytes());
            }
            let limits = Limits { budget: Some(300_000), ..Limits::default() };
            agree(&program, input, limits);
        }
    }
}
