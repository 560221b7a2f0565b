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

/// A program without local calls (the JITs' entry then sets only the registers the code may
/// read before writing them: `r1`, `r2`, `r10` and, zeroed, the others it reads first; the x86
/// JIT saves only the host registers it uses). The input's first byte picks the path; path 0
/// reads `r0` and `r3`–`r9` before writing them, so it returns 0 only if every run starts
/// with them 0, whatever the run before left in them (in the context's registers or in the
/// host's); every other path sets them first. Path 3 reads the input's second byte, which
/// tells the two buffers the runs alternate between apart.
fn flat_program(with_helper: bool) -> String {
    let mut text = String::from(
        "
    ldxb %r2, [%r1]
    jeq %r2, 0, clean
    mov %r0, 10
    mov %r3, 3
    mov %r4, 4
    mov %r5, 5
    mov %r6, 6
    mov %r7, 7
    mov %r8, 8
    mov %r9, 9
    jeq %r2, 1, out_of_bounds
    jeq %r2, 2, forever
    jeq %r2, 3, second_byte
    jeq %r2, 4, nested
    exit
clean:
    add %r0, %r3
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
second_byte:
    ldxb %r0, [%r1+1]
    exit
nested:
",
    );
    // A helper that runs the same VM again, on path 0, from inside this run (whose registers
    // are all set by then): the nested run must start afresh too.
    text.push_str(if with_helper {
        "    call 1\n    add %r0, %r9\n    exit\n"
    } else {
        "    mov %r0, 99\n    exit\n"
    });
    text
}

#[test]
fn registers_read_before_written_start_at_zero_and_buffers_change_between_runs() {
    use std::sync::{Arc, OnceLock};

    use ebpf_vm::VmMemory;

    let load = |engine: Engine, with_helper: bool| {
        let this: Arc<OnceLock<Vm>> = Arc::new(OnceLock::new());
        let inner = Arc::clone(&this);
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .budget(10_000)
            .helper(1, move |_: [u64; 5], _: &mut dyn VmMemory| {
                let mut data = [0u8; 8];
                Ok(inner
                    .get()
                    .map_or(Ok(u64::MAX), |vm| vm.run(&mut data))
                    .unwrap_or(77))
            })
            .load_asm(&flat_program(with_helper))
            .unwrap();
        if this.set(vm).is_err() {
            unreachable!("the cell is new");
        }
        this
    };
    const PATHS: u8 = 5;
    for with_helper in [false, true] {
        let reference = load(Engine::Interpreter, with_helper);
        let reference = reference.get().unwrap();
        let expected = |data: &[u8]| {
            let mut data = data.to_vec();
            reference.run_traced(Input::new(&mut data), &mut Vec::<Step>::new())
        };
        let mut a = vec![0u8, 0x11, 0, 0, 0, 0, 0, 0];
        let mut b = vec![0u8, 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // (The paths end as they should: what every engine must match.)
        let r0 = |path: u8, data: &mut [u8]| {
            data[0] = path;
            expected(data).map(|exit| exit.r0)
        };
        assert_eq!(r0(0, &mut a), Ok(0));
        assert!(r0(1, &mut a).is_err() && r0(2, &mut a).is_err());
        assert_eq!((r0(3, &mut a), r0(3, &mut b)), (Ok(0x11), Ok(0x22)));
        assert_eq!(r0(4, &mut a), Ok(if with_helper { 9 } else { 99 }));
        for &engine in Engine::ALL {
            let vm = load(engine, with_helper);
            let vm = vm.get().unwrap();
            let mut runner = vm.runner();
            for first in 0..PATHS {
                for second in 0..PATHS {
                    // The second path on another buffer, then on the first run's buffer again.
                    for (path, on_a) in [(first, true), (second, false), (second, true)] {
                        let data = if on_a { &mut a } else { &mut b };
                        data[0] = path;
                        let want = expected(data);
                        let context = format!(
                            "{engine}: path {path} after path {first} (buffer {}, helper {with_helper})",
                            if on_a { "a" } else { "b" }
                        );
                        let got = runner.run_with(Input::new(data));
                        assert_eq!(got, want, "{context}, through a runner");
                        let got = vm.run_with(Input::new(data));
                        assert_eq!(got, want, "{context}, through Vm::run_with");
                        let got = vm.run(data);
                        assert_eq!(got, want.map(|exit| exit.r0), "{context}, through Vm::run");
                    }
                }
            }
        }
    }
}
