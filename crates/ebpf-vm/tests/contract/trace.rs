//! `Vm::run_traced` on every contract case and every engine: the traced run (always on the
//! interpreter's precise loop) returns exactly what the engine's untraced run returns — `r0`
//! and instruction count, or the trap's kind and pc — and leaves memory the same; the trace
//! has one step per executed instruction, numbered in order, each naming the next one's pc.

use ebpf_contract::Case;
use ebpf_vm::{Engine, Step, Trap, TrapKind};

use crate::{load, run_facade, run_facade_by};

/// What the trace of one run looked like, and whether its steps were consistent.
#[derive(Default)]
struct Summary {
    steps: u64,
    last: Option<Step>,
    problems: Vec<String>,
}

fn traced(vm: &ebpf_vm::Vm, case: &Case) -> (ebpf_contract::Outcome, Summary) {
    let mut summary = Summary::default();
    let mut observer = |step: &Step| {
        summary.steps += 1;
        let expected_pc = summary.last.as_ref().map_or(Some(0), |last| last.next);
        if step.executed != summary.steps || Some(step.pc) != expected_pc {
            summary.problems.push(format!(
                "step {} at pc {} (executed {}), expected pc {expected_pc:?}",
                summary.steps, step.pc, step.executed
            ));
        }
        summary.last = Some(step.clone());
    };
    let outcome = run_facade_by(case, |input| vm.run_traced(input, &mut observer));
    (outcome, summary)
}

#[test]
fn traced_runs_agree_with_untraced_runs_on_every_case_and_engine() {
    let cases = ebpf_contract::cases();
    let mut failures = Vec::new();
    let mut traps = 0;
    for &engine in Engine::ALL {
        for case in &cases {
            let vm = match load(case, engine) {
                Ok(vm) => vm,
                Err(e) => {
                    failures.push(format!("[{engine}] {e}"));
                    continue;
                }
            };
            let untraced = run_facade(&vm, case);
            let (traced, summary) = traced(&vm, case);
            let name = &case.name;
            if traced != untraced {
                failures.push(format!(
                    "[{engine}] {name}: traced {:#x?}, untraced {:#x?}",
                    traced.result, untraced.result
                ));
            }
            if let Err(e) = case.check(&traced) {
                failures.push(format!("[{engine}] traced: {e}"));
            }
            failures.extend(
                summary
                    .problems
                    .iter()
                    .map(|p| format!("[{engine}] {name}: {p}")),
            );
            match &untraced.result {
                Ok(exit) => {
                    if summary.steps != exit.instructions {
                        failures.push(format!(
                            "[{engine}] {name}: {} steps for {} instructions",
                            summary.steps, exit.instructions
                        ));
                    }
                    if summary.last.as_ref().map(|s| s.next) != Some(None) {
                        failures.push(format!("[{engine}] {name}: the last step is not the exit"));
                    }
                }
                Err(Trap {
                    kind: TrapKind::BudgetExhausted { budget },
                    pc,
                }) => {
                    traps += 1;
                    let next = summary.last.as_ref().and_then(|s| s.next);
                    if summary.steps != *budget || (*budget > 0 && next != Some(*pc)) {
                        failures.push(format!(
                            "[{engine}] {name}: {} steps for a budget of {budget}, then pc {next:?} \
                             for a trap at {pc}",
                            summary.steps
                        ));
                    }
                }
                Err(_) => traps += 1,
            }
        }
    }
    assert!(traps > 0, "no case traps");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
