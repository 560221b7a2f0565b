//! The runtime contract through the facade, on every engine of `Engine::ALL`.
//!
//! One test binary built from modules (as rust-analyzer organizes its tests), so that the
//! workspace links one executable instead of one per file:
//!
//! - this file — runs every case of `tests/contract/*.txt` (read by `ebpf-contract`) through
//!   `Vm` on every engine, twice, checks the shortcuts (`run`, `run_no_data`), checks that the
//!   facade sets up memory exactly as the contract's own description (`Case::run_raw` on the
//!   interpreter) does, and that the checker notices every difference; the same through a
//!   `Runner` (twice on one), and the conformance vectors through a runner on every engine;
//! - `cache` — the code cache: a second load compiles nothing, what changes the code misses,
//!   cached code gives what fresh code gives on every case, loads from several threads;
//! - `facade` — what is not a program run: configuration and load errors, threads, helpers
//!   with embedder state;
//! - `dead_code` — code the verifier proves never runs: it loads, and traps if reached;
//! - `limits` — the resource limits (region sizes) on every engine;
//! - `trace` — a traced run gives exactly what an untraced one gives, on every case and
//!   engine, and its steps are the instructions the run executed;
//! - `props` — property tests: no byte string, program or input panics the facade, runs are
//!   deterministic, and engines agree.

mod cache;
mod dead_code;
mod facade;
mod limits;
mod props;
mod trace;

use ebpf_contract::{Case, Expect, Mem, Outcome, RunRegion};
use ebpf_interp::Interpreter;
use ebpf_vm::{Engine, Input, MetadataLayout, Trap, TrapKind, Vm, VmBuilder};

/// A builder configured as `case` says (with the contract's helpers), for `engine`.
///
/// Unverified: the contract pins down what engines do at run time, including on programs a
/// verifier rejects (jumps out of range, falling off the end, uninitialised reads).
pub(crate) fn builder(case: &Case, engine: Engine) -> VmBuilder {
    let mut b = Vm::builder().engine(engine).unverified();
    for (id, helper) in ebpf_contract::HELPERS {
        b = b.helper(id, helper);
    }
    if let Some(budget) = case.config.budget {
        b = b.budget(budget);
    }
    if let Some(depth) = case.config.max_call_depth {
        b = b.max_call_depth(depth);
    }
    if let Some(m) = case.config.metadata {
        b = b.metadata(MetadataLayout {
            len: m.len,
            data_offset: m.data_offset,
            data_end_offset: m.data_end_offset,
        });
    }
    for bytes in &case.config.read_only {
        b = b.read_only_region(bytes.clone());
    }
    b
}

/// `case` loaded on `engine`.
pub(crate) fn load(case: &Case, engine: Engine) -> Result<Vm, String> {
    builder(case, engine)
        .load_program(case.try_program()?)
        .map_err(|e| format!("{}: does not load: {e}", case.name))
}

/// Runs `case` on a loaded `vm`, with fresh copies of the case's memory.
pub(crate) fn run_facade(vm: &Vm, case: &Case) -> Outcome {
    run_facade_by(case, |input| vm.run_with(input))
}

/// [`run_facade`] with another way to run (`Vm::run_traced`, say).
pub(crate) fn run_facade_by(
    case: &Case,
    run_with: impl FnOnce(Input<'_>) -> Result<ebpf_vm::Exit, Trap>,
) -> Outcome {
    let mut input = case.input.clone();
    let mut metadata = case.metadata_buffer.clone();
    let mut regions = case.run_regions.clone();
    let result = {
        let mut run = match input.as_deref_mut() {
            Some(data) => Input::new(data),
            None => Input::none(),
        };
        if let Some(buffer) = metadata.as_deref_mut() {
            run = run.metadata(buffer);
        }
        for region in &mut regions {
            run = match region {
                RunRegion::ReadOnly(b) => run.region(b),
                RunRegion::Writable(b) => run.region_mut(b),
            };
        }
        run_with(run)
    };
    Outcome {
        result,
        input,
        metadata,
        regions: regions.iter().map(|r| r.bytes().to_vec()).collect(),
    }
}

#[test]
fn contract_on_every_engine() {
    let cases = ebpf_contract::cases();
    let mut failures = Vec::new();
    for &engine in Engine::ALL {
        for case in &cases {
            let vm = match load(case, engine) {
                Ok(vm) => vm,
                Err(e) => {
                    failures.push(format!("[{engine}] {e}"));
                    continue;
                }
            };
            assert_eq!(vm.engine(), engine);
            // Twice on the same Vm: nothing of one run is visible to the next.
            for run in ["first", "second"] {
                if let Err(e) = case.check(&run_facade(&vm, case)) {
                    failures.push(format!("[{engine}] {run} run: {e}"));
                }
            }
            // Through a runner, twice on the same one (its fast path for cases with an input
            // alone, its mapped path for the rest).
            let mut runner = vm.runner();
            for run in ["first", "second"] {
                if let Err(e) = case.check(&run_facade_by(case, |input| runner.run_with(input))) {
                    failures.push(format!("[{engine}] {run} run of a runner: {e}"));
                }
            }
            // The shortcuts agree with run_with.
            if case.metadata_buffer.is_none() && case.run_regions.is_empty() {
                let want = run_facade(&vm, case).result.map(|exit| exit.r0);
                let got = match case.input.clone() {
                    Some(mut data) => vm.run(&mut data),
                    None => vm.run_no_data(),
                };
                if got != want {
                    failures.push(format!(
                        "[{engine}] {}: run/run_no_data gave {got:#x?}, run_with {want:#x?}",
                        case.name
                    ));
                }
                let got = match case.input.clone() {
                    Some(mut data) => runner.run(&mut data),
                    None => runner.run_no_data(),
                };
                if got != want {
                    failures.push(format!(
                        "[{engine}] {}: Runner::run/run_no_data gave {got:#x?}, run_with \
                         {want:#x?}",
                        case.name
                    ));
                }
            }
        }
    }
    eprintln!("{} cases on {:?}", cases.len(), Engine::ALL);
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        cases.len() * Engine::ALL.len() * 2,
        failures.join("\n")
    );
}

/// The checker is not vacuous: on every case, an outcome that differs from the expected one
/// in r0, the count, the trap's pc or kind, or the memory is rejected.
#[test]
fn the_checker_notices_every_difference() {
    let mut rejected = 0;
    for case in ebpf_contract::cases() {
        let vm = load(&case, Engine::Interpreter).unwrap_or_else(|e| panic!("{e}"));
        let outcome = run_facade(&vm, &case);
        if case.check(&outcome).is_err() {
            continue; // reported by contract_on_every_engine
        }
        let mut wrongs = Vec::new();
        match &case.expect {
            Expect::Exit { r0, instructions } => {
                for (r0, instructions) in [(r0 ^ 1, *instructions), (*r0, instructions + 1)] {
                    let mut w = case.clone();
                    w.expect = Expect::Exit { r0, instructions };
                    wrongs.push(w);
                }
                let mut w = case.clone();
                w.expect = Expect::Trap(Trap {
                    pc: 0,
                    kind: TrapKind::BudgetExhausted { budget: 0 },
                });
                wrongs.push(w);
            }
            Expect::Trap(t) => {
                let mut w = case.clone();
                w.expect = Expect::Trap(Trap {
                    pc: t.pc + 1,
                    kind: t.kind.clone(),
                });
                wrongs.push(w);
                let mut w = case.clone();
                w.expect = Expect::Trap(Trap {
                    pc: t.pc,
                    kind: TrapKind::UnknownHelper { id: 12345 },
                });
                wrongs.push(w);
            }
        }
        for i in 0..case.memory_after.len() {
            let mut w = case.clone();
            match w.memory_after[i].1.first_mut() {
                Some(b) => *b ^= 1,
                None => w.memory_after[i].1.push(0),
            }
            wrongs.push(w);
        }
        let mut w = case.clone();
        w.memory_after.push((Mem::RunRegion(99), vec![]));
        wrongs.push(w);
        for w in wrongs {
            assert!(
                w.check(&outcome).is_err(),
                "{}: {:?} accepted",
                w.name,
                w.expect
            );
            rejected += 1;
        }
    }
    assert!(rejected > 1000, "{rejected}");
}

/// The facade's memory set-up (regions, entry registers, metadata writes) is the contract's:
/// on every case, `Vm` and `Case::run_raw` on the interpreter end in the same result and the
/// same memory, including cases that do not check memory themselves.
#[test]
fn facade_sets_up_memory_as_the_contract_says() {
    let interp = ebpf_contract::engine(Interpreter::new, Interpreter::run);
    let mut failures = Vec::new();
    for case in ebpf_contract::cases() {
        let raw = case.run_raw(&interp);
        let vm = load(&case, Engine::Interpreter).unwrap_or_else(|e| panic!("{e}"));
        let facade = run_facade(&vm, &case);
        if raw != facade {
            failures.push(format!(
                "{}:\n  contract: {raw:#x?}\n  facade:   {facade:#x?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The bpf_conformance vectors through a [`ebpf_vm::Runner`] on every engine, against the
/// interpreter run raw: a vector with memory through the runner's fast path (`run_with` of
/// an input alone), one without through `run_no_data`'s.
#[test]
fn conformance_vectors_through_a_runner_on_every_engine() {
    use ebpf_contract::conformance::{BUDGET, Vector};
    let interp = ebpf_contract::engine(Interpreter::new, Interpreter::run);
    for &engine in Engine::ALL {
        let prepare = |v: &Vector| {
            Vm::builder()
                .engine(engine)
                .unverified()
                .budget(BUDGET)
                .helper(ebpf_vm::CONFORMANCE_HELPER_ID, ebpf_vm::conformance_helper)
                .load_program(v.program.clone())
                .map_err(|e| e.to_string())
        };
        ebpf_contract::conformance::check_suite(
            &format!("runner on {engine}"),
            prepare,
            |vm: &Vm, mut map, args, _helpers, _limits| {
                let mut runner = vm.runner();
                match map.take(ebpf_vm::layout::INPUT) {
                    Some(ebpf_abi::Region::Writable(data)) if args[0] != 0 => {
                        runner.run_with(Input::new(data))
                    }
                    _ => runner.run_with(Input::none()),
                }
            },
            Some(&interp),
        );
    }
}
