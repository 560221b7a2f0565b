//! Property tests of the facade, on every engine: no byte string and no program panics it
//! (whatever loads runs, with a budget, on a small input in every metadata mode); a run is
//! deterministic (twice the same result and the same memory); every engine agrees with the
//! first one (so these become differential tests once a JIT joins `Engine::ALL`); a traced run
//! ([`Vm::run_traced`]) gives what the untraced one gives, on every engine; and
//! well-formed programs from `ebpf_testgen::structured_program` exit without a trap.

use ebpf_isa::Program;
use ebpf_testgen::{
    StructuredConfig, StructuredProgram, any_program, arbitrary_bytes, closed_program, input_bytes,
    structured_program,
};
use ebpf_vm::{
    Engine, Exit, Input, LoadError, MetadataLayout, Step, Trap, TrapKind, Vm, VmBuilder,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// The budget of every run of arbitrary code.
const BUDGET: u64 = 10_000;

/// How the input reaches the program (rbpf's four kinds of VM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Raw,
    NoData,
    FixedMbuff,
    Mbuff,
}

fn any_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Raw),
        Just(Mode::NoData),
        Just(Mode::FixedMbuff),
        Just(Mode::Mbuff),
    ]
}

fn builder(engine: Engine, mode: Mode, depth: usize, budget: u64) -> VmBuilder {
    let mut b = Vm::builder()
        .engine(engine)
        .budget(budget)
        .max_call_depth(depth)
        .read_only_region(vec![0xab; 16]);
    for (id, helper) in ebpf_contract::HELPERS {
        b = b.helper(id, helper);
    }
    if mode == Mode::FixedMbuff {
        b = b.metadata(MetadataLayout {
            len: 24,
            data_offset: 0,
            data_end_offset: 8,
        });
    }
    b
}

/// A run's result and the memory the embedder sees afterwards (input, metadata, region).
type Run = (Result<Exit, Trap>, Vec<u8>, Vec<u8>, Vec<u8>);

fn run(vm: &Vm, mode: Mode, input: &[u8]) -> Run {
    run_by(mode, input, |run| vm.run_with(run))
}

/// [`run`] traced ([`Vm::run_traced`]); also returns the trace's length, checking on the way
/// that its steps are numbered 1, 2, … and each names the pc of the next.
fn run_traced(vm: &Vm, mode: Mode, input: &[u8]) -> (Run, u64) {
    let mut steps = 0u64;
    let mut next_pc = Some(0);
    let mut consistent = true;
    let mut observer = |step: &Step| {
        steps += 1;
        consistent &= step.executed == steps && next_pc == Some(step.pc);
        next_pc = step.next;
    };
    let outcome = run_by(mode, input, |run| vm.run_traced(run, &mut observer));
    assert!(consistent, "steps out of order");
    (outcome, steps)
}

fn run_by(mode: Mode, input: &[u8], run: impl FnOnce(Input<'_>) -> Result<Exit, Trap>) -> Run {
    let mut data = input.to_vec();
    let mut metadata = vec![0x5a; 16];
    let mut region = vec![0u8; 16];
    let result = {
        let input = match mode {
            Mode::NoData => Input::none(),
            Mode::Mbuff => Input::new(&mut data).metadata(&mut metadata),
            Mode::Raw | Mode::FixedMbuff => Input::new(&mut data),
        };
        run(input.region_mut(&mut region))
    };
    (result, data, metadata, region)
}

fn check_invariants(
    vm: &Vm,
    result: &Result<Exit, Trap>,
    depth: usize,
    budget: u64,
) -> Result<(), TestCaseError> {
    let slots = vm.program().slot_count();
    match result {
        Ok(exit) => prop_assert!(
            (1..=budget).contains(&exit.instructions),
            "{} instructions",
            exit.instructions
        ),
        Err(trap) => {
            prop_assert!(trap.pc <= slots, "trap at pc {} of {slots}", trap.pc);
            match trap.kind {
                TrapKind::BudgetExhausted { budget: b } => prop_assert_eq!(b, budget),
                TrapKind::CallDepthExceeded { max_depth } => prop_assert_eq!(max_depth, depth),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Loads with `load` on every engine and runs twice on each; checks the invariants,
/// determinism, and that every engine gives what the first gave. Returns the first run.
fn check_everywhere(
    load: &dyn Fn(VmBuilder) -> Result<Vm, LoadError>,
    mode: Mode,
    depth: usize,
    budget: u64,
    input: &[u8],
) -> Result<Result<Run, LoadError>, TestCaseError> {
    let mut first: Option<(Engine, Result<Run, LoadError>)> = None;
    for &engine in Engine::ALL {
        let outcome = match load(builder(engine, mode, depth, budget)) {
            Err(e) => Err(e),
            Ok(vm) => {
                let a = run(&vm, mode, input);
                let b = run(&vm, mode, input);
                prop_assert_eq!(&a, &b, "two runs differ on {}", engine);
                // Traced, the run is the same, and the trace has one step per instruction
                // executed (a trap's instruction is not a step).
                let (traced, steps) = run_traced(&vm, mode, input);
                prop_assert_eq!(&a, &traced, "traced and untraced runs differ on {}", engine);
                if let Ok(exit) = &a.0 {
                    prop_assert_eq!(steps, exit.instructions);
                }
                if let Err(Trap {
                    kind: TrapKind::BudgetExhausted { budget },
                    ..
                }) = &a.0
                {
                    prop_assert_eq!(steps, *budget);
                }
                check_invariants(&vm, &a.0, depth, budget)?;
                Ok(a)
            }
        };
        match &first {
            None => first = Some((engine, outcome)),
            Some((e0, o0)) => prop_assert_eq!(o0, &outcome, "{} and {} disagree", e0, engine),
        }
    }
    Ok(first.map_or_else(
        || Err(LoadError::InvalidConfig("no engine".into())),
        |f| f.1,
    ))
}

fn any_test_program() -> impl Strategy<Value = Program> {
    prop_oneof![any_program(0..48), closed_program(0..48)]
}

/// A structured program with an input of the length it expects.
fn structured_with_input() -> impl Strategy<Value = (StructuredProgram, Vec<u8>)> {
    structured_program(StructuredConfig::default()).prop_flat_map(|s| {
        let len = s.input_len;
        (Just(s), input_bytes(len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn bytes_never_panic_the_facade(
        bytes in arbitrary_bytes(512),
        input in vec(any::<u8>(), 0..48),
        mode in any_mode(),
        depth in 0usize..=8,
    ) {
        // Unverified, the facade loads exactly what decodes, and must survive running it.
        let loaded =
            check_everywhere(&|b| b.unverified().load(&bytes), mode, depth, BUDGET, &input)?;
        prop_assert_eq!(loaded.is_ok(), ebpf_isa::decode(&bytes).is_ok());
        // Verified, it loads what decodes and passes — and, as the kernel does, bytes whose
        // undecodable slots never run, with a warning for each. What it accepts never hits an
        // instruction that cannot execute.
        let verified = check_everywhere(&|b| b.load(&bytes), mode, depth, BUDGET, &input)?;
        if verified.is_ok() && loaded.is_err() {
            let vm = builder(Engine::Interpreter, mode, depth, BUDGET).load(&bytes);
            let warned = vm.is_ok_and(|vm| {
                vm.warnings()
                    .iter()
                    .any(|w| matches!(w.kind, ebpf_vm::FindingKind::Decode(_)))
            });
            prop_assert!(warned, "undecodable bytes loaded without a warning");
        }
        if let Ok((Err(trap), ..)) = &verified {
            prop_assert!(
                !matches!(trap.kind, TrapKind::InvalidInstruction { .. }),
                "{:?}",
                trap
            );
        }
    }

    #[test]
    fn programs_never_panic_the_facade(
        program in any_test_program(),
        input in vec(any::<u8>(), 0..48),
        mode in any_mode(),
        depth in 0usize..=8,
    ) {
        let loaded = check_everywhere(
            &|b| b.unverified().load_program(program.clone()),
            mode,
            depth,
            BUDGET,
            &input,
        )?;
        prop_assert!(loaded.is_ok(), "{:?}", loaded.err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Programs that stay in bounds and terminate exit, within their bound, on every engine.
    #[test]
    fn structured_programs_exit((s, input) in structured_with_input()) {
        let loaded = check_everywhere(
            &|b| b.load_program(s.program.clone()),
            Mode::Raw,
            8,
            s.max_steps,
            &input,
        )?;
        match loaded {
            Ok((Ok(_), ..)) => {}
            other => prop_assert!(false, "{:?}\n{}", other, ebpf_isa::disassemble(&s.program)),
        }
    }
}
