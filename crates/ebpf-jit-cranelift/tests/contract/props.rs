//! Property-based differential tests: generated programs give the same r0, trap (kind and pc),
//! instruction count and final memory on the interpreter and on the Cranelift JIT.
//!
//! - structured programs (loops, local calls, stack and input traffic, atomics, every ALU op)
//!   that run to completion, with and without a budget that cuts them short;
//! - arbitrary instruction sequences, which jump anywhere, call anything and touch any
//!   address, under a small budget.
//!
//! `PROPTEST_CASES` sets the number of cases (the cross-architecture run lowers it).

use ebpf_contract::differential::Setup;
use ebpf_testgen::{StructuredConfig, any_program, closed_program, structured_with_input};
use proptest::prelude::*;

use crate::with_differential;

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
        cut in any::<prop::sample::Index>(),
    ) {
        prop_assume!(ebpf_jit_cranelift::host_supported());
        with_differential(|d| {
            let setup = Setup::input(input);
            let full = d.compare(&s.program, &setup).map_err(TestCaseError::fail)?;
            let exit = full.result.map_err(|t| TestCaseError::fail(format!("trapped: {t}")))?;
            prop_assert!(exit.instructions <= s.max_steps);
            // The same run cut short somewhere by the budget, and with too little call depth.
            let budget = cut.index(exit.instructions as usize + 1) as u64;
            d.compare(&s.program, &setup.clone().budget(Some(budget)))
                .map_err(TestCaseError::fail)?;
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
}
