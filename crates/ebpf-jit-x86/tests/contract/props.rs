//! Property-based differential tests: generated programs give the same `r0`, trap (kind and
//! pc), instruction count and final input and stack memory on the JIT (with and without
//! constant blinding) as on the interpreter.
//!
//! Three generators from `ebpf-testgen`: structured programs (runnable, in bounds, with loops,
//! local calls and atomics) under a random budget that is often too small; arbitrary instruction
//! sequences (jumps anywhere, any memory, unknown helpers: mostly traps); and closed programs
//! (control flow inside the program, so loops and recursion), both under a budget.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

mod common;

use common::{check_with, with_stack_dumps};
use ebpf_abi::Limits;
use ebpf_testgen::{StructuredConfig, any_program, closed_program, structured_with_input};
use proptest::prelude::*;

fn budget_for(max_steps: u64) -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        3 => (0..=max_steps.saturating_add(2)).prop_map(Some),
    ]
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn structured_programs_agree(
        (s, input, budget) in structured_with_input(StructuredConfig::default())
            .prop_flat_map(|(s, input)| {
                let steps = s.max_steps;
                (Just(s), Just(input), budget_for(steps))
            })
    ) {
        let limits = Limits { budget, ..Limits::default() };
        check_with(&with_stack_dumps(&s.program), &input, &limits, true);
    }

    #[test]
    fn larger_structured_programs_agree(
        (s, input, budget) in structured_with_input(bigger())
            .prop_flat_map(|(s, input)| {
                let steps = s.max_steps;
                (Just(s), Just(input), budget_for(steps))
            })
    ) {
        let limits = Limits { budget, ..Limits::default() };
        check_with(&with_stack_dumps(&s.program), &input, &limits, true);
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
        check_with(&program, &input, &limits, map_input);
    }

    #[test]
    fn closed_programs_agree(
        program in closed_program(1..48),
        input in proptest::collection::vec(any::<u8>(), 0..64),
        budget in 0u64..2000,
        depth in 0usize..10,
    ) {
        let limits = Limits { budget: Some(budget), max_call_depth: depth };
        check_with(&with_stack_dumps(&program), &input, &limits, true);
    }
}
