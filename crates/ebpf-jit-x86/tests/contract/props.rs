//! Property-based differential tests: generated programs give the same `r0`, trap (kind and
//! pc), instruction count and final input and stack memory on the JIT (with and without
//! constant blinding) as on the interpreter.
//!
//! Three generators from `ebpf-testgen`: structured programs (runnable, in bounds, with loops,
//! local calls and atomics) under a random budget that is often too small; arbitrary instruction
//! sequences (jumps anywhere, any memory, unknown helpers: mostly traps); and closed programs
//! (control flow inside the program, so loops and recursion), both under a budget.

use ebpf_abi::Limits;
use ebpf_contract::differential::{Setup, with_stack_dumps};
use ebpf_isa::Program;
use ebpf_testgen::{StructuredConfig, any_program, closed_program, structured_with_input};
use proptest::prelude::*;

use crate::with_differential;

/// Read-only data every run maps (region 1), for programs that happen to read it.
const RODATA: &[u8; 16] = b"read-only bytes!";

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

/// Compares `program` on the engines over `input` (mapped or not) with `limits`.
fn agree(program: &Program, input: Vec<u8>, map_input: bool, limits: Limits) {
    let setup = Setup {
        input: map_input.then_some(input),
        limits,
        ..Setup::none()
    }
    .rodata(*RODATA);
    with_differential(|d| {
        d.check(program, &setup);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
}
