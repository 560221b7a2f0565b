//! A run starts afresh whatever the run before it on the same preparation left: registers,
//! the budget, the shadow stack and the trap report. The JITs' sessions reset only what their
//! generated code reads before writing it (docs/per-run.md), so every way a run can end is
//! followed here by every other, through a runner and through `Vm::run`, on every engine, each
//! result checked against the interpreter's traced run (a fresh machine every time).

use ebpf_vm::{Engine, Input, Step, Vm};

/// The input's first byte picks the path. Every path but the first sets r3–r9 first, so a
/// run that started with an earlier run's registers would show it on path 0.
const PROGRAM: &str = "
    ldxb %r2, [%r1]
    jeq %r2, 0, clean
    mov %r3, 3
    mov %r4, 4
    mov %r5, 5
    mov %r6, 6
    mov %r7, 7
    mov %r8, 8
    mov %r9, 9
    jeq %r2, 1, out_of_bounds
    jeq %r2, 2, forever
    jeq %r2, 3, deep
    jeq %r2, 4, one_call
    mov %r0, 5
    exit
clean:
    mov %r0, %r3
    add %r0, %r4
    add %r0, %r5
    add %r0, %r6
    add %r0, %r7
    add %r0, %r8
    add %r0, %r9
    exit
out_of_bounds:
    ldxdw %r0, [%r1+4000]
    exit
forever:
    ja forever
deep:
    call local deep
    exit
one_call:
    call local callee
    add %r0, 1
    exit
callee:
    mov %r0, %r9
    exit
";

/// How many paths `PROGRAM` has.
const PATHS: u8 = 6;

#[test]
fn every_way_a_run_ends_is_followed_by_a_fresh_run() {
    let load = |engine: Engine| {
        Vm::builder()
            .engine(engine)
            .unverified()
            .budget(10_000)
            .load_asm(PROGRAM)
            .unwrap()
    };
    let reference = load(Engine::Interpreter);
    let expected = |path: u8| {
        let mut data = [path, 0, 0, 0, 0, 0, 0, 0];
        reference.run_traced(Input::new(&mut data), &mut Vec::<Step>::new())
    };
    let expected: Vec<_> = (0..PATHS).map(expected).collect();
    // (The paths do end differently: an exit, a memory trap, the budget, the call depth.)
    assert_eq!(expected[0].as_ref().map(|exit| exit.r0), Ok(0));
    assert!(expected[1].is_err() && expected[2].is_err() && expected[3].is_err());
    assert_ne!(expected[1], expected[2]);
    assert_ne!(expected[2], expected[3]);
    for &engine in Engine::ALL {
        let vm = load(engine);
        let mut runner = vm.runner();
        for first in 0..PATHS {
            for second in 0..PATHS {
                for path in [first, second] {
                    let mut data = [path, 0, 0, 0, 0, 0, 0, 0];
                    let through_runner = runner.run_with(Input::new(&mut data));
                    assert_eq!(
                        through_runner,
                        expected[usize::from(path)],
                        "{engine}: path {path} after path {first}, through a runner"
                    );
                    let mut data = [path, 0, 0, 0, 0, 0, 0, 0];
                    let through_run = vm.run_with(Input::new(&mut data));
                    assert_eq!(
                        through_run,
                        expected[usize::from(path)],
                        "{engine}: path {path} after path {first}, through Vm::run_with"
                    );
                }
            }
        }
    }
}
