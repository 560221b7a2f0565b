//! A run never sees another run's stack: the stack buffer a thread reuses is scrubbed after
//! every run (only the bytes the run can have written, see `docs/per-run.md`), on every engine
//! of `Engine::ALL`.
//!
//! Each case is a run A that leaves a secret on its stack — by every way a program can write
//! there: stores at constant offsets from `r10` in nested calls (the bounded case), stores
//! through a computed pointer, a helper writing through `VmMemory`, a run that traps or runs
//! out of budget halfway, a helper that panics — followed, on the same thread, by a run B of an
//! unverified program that reads every byte of every frame of the stack: all must be zero.
//! Then the same through a `Runner`, whose stack only its own runs use: one program that
//! writes (run A) or reads (run B) depending on its input's first byte, A then B on one
//! runner — a panic caught around A included.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ebpf_vm::{Engine, HelperError, Limits, Vm, VmMemory, layout};

const SECRET: u64 = 0x5ec2_e75e_c2e7_5ec2;

/// Bytes of the stack region under the default limits (9 frames of 512 bytes).
fn stack_size() -> u64 {
    Limits::default().stack_size()
}

/// Run B: ORs every 8 bytes of the stack region, from its lowest byte up to the entry
/// frame's `r10`, into `r0`.
fn reader(engine: Engine) -> Vm {
    let program = read_the_stack("loop");
    Vm::builder()
        .engine(engine)
        .unverified()
        .budget(100_000)
        .load_asm(&program)
        .unwrap()
}

/// Run B's code: ORs every 8 bytes of the stack region into `r0` and exits (its loop's label
/// is `label`).
fn read_the_stack(label: &str) -> String {
    format!(
        "mov %r0, 0
        mov %r1, %r10
        sub %r1, {size}
        {label}:
        ldxdw %r2, [%r1]
        or %r0, %r2
        add %r1, 8
        jlt %r1, %r10, {label}
        exit",
        size = stack_size()
    )
}

/// Stores the secret in every 8 bytes of the stack region through a computed pointer, then
/// runs `tail`.
fn fill_through_pointer(tail: &str) -> String {
    format!(
        "lddw %r3, {SECRET:#x}
        mov %r1, %r10
        sub %r1, {size}
        loop:
        stxdw [%r1], %r3
        add %r1, 8
        jlt %r1, %r10, loop
        {tail}",
        size = stack_size()
    )
}

/// Functions `f0` → `f1` → … → `f{depth}`, each storing the secret in every 8 bytes of its
/// own frame with constant offsets from `r10` (no computed pointers, no helpers: the scrub is
/// bounded, not the whole stack).
fn fill_frames_in_calls(depth: usize) -> String {
    let mut text = String::new();
    for d in 0..=depth {
        if d > 0 {
            writeln!(text, "f{d}:").unwrap();
        }
        writeln!(text, "lddw %r3, {SECRET:#x}").unwrap();
        for off in (8..=512).step_by(8) {
            writeln!(text, "stxdw [%r10-{off}], %r3").unwrap();
        }
        if d < depth {
            writeln!(text, "call local f{}", d + 1).unwrap();
        }
        writeln!(text, "mov %r0, 0\nexit").unwrap();
    }
    text
}

/// Helper 1: writes the secret over the whole stack region.
fn smear(_args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let bytes: Vec<u8> = SECRET
        .to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(stack_size() as usize)
        .collect();
    mem.write(layout::vm_addr(layout::STACK, 0), &bytes)?;
    Ok(0)
}

/// Helper 1 of a program whose own stores reach only the top 8 bytes: writes the secret at
/// a few offsets far below them (the stack's lowest 8 bytes, the middle of the entry's caller
/// frames, 24 bytes under the top), so a scrub of the program's own reach alone would leave
/// them; a helper's write is bounded only by the mark it leaves in the run's map.
fn write_below_own_reach(_args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let size = stack_size();
    for off in [0, size / 2, size - 24] {
        mem.write(layout::vm_addr(layout::STACK, off), &SECRET.to_le_bytes())?;
    }
    Ok(0)
}

/// Run A's code for [`write_below_own_reach`]: its own store at `r10 - 8`, then the helper.
const OWN_STORE_THEN_HELPER: &str = "lddw %r3, 0x5ec2e75ec2e75ec2
    stxdw [%r10-8], %r3
    call 1
    mov %r0, 0
    exit";

/// The runs A, by name: each leaves the secret on the stack (and may trap or panic).
fn writers(engine: Engine) -> Vec<(&'static str, Vm)> {
    let base = || Vm::builder().engine(engine).unverified().budget(100_000);
    vec![
        (
            "constant offsets in 3 nested calls",
            base().load_asm(&fill_frames_in_calls(3)).unwrap(),
        ),
        (
            "a computed pointer",
            base()
                .load_asm(&fill_through_pointer("mov %r0, 0\nexit"))
                .unwrap(),
        ),
        (
            "a computed pointer, then a trap",
            base()
                .load_asm(&fill_through_pointer("ldxdw %r0, [%r0]\nexit"))
                .unwrap(),
        ),
        (
            "a computed pointer, out of budget halfway",
            Vm::builder()
                .engine(engine)
                .unverified()
                .budget(700)
                .load_asm(&fill_through_pointer("mov %r0, 0\nexit"))
                .unwrap(),
        ),
        (
            "a helper",
            base()
                .helper(1, smear)
                .load_asm("call 1\nmov %r0, 0\nexit")
                .unwrap(),
        ),
        (
            "a helper that then panics",
            base()
                .helper(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
                    smear(args, mem)?;
                    panic!("helper gives up")
                })
                .load_asm("call 1\nmov %r0, 0\nexit")
                .unwrap(),
        ),
        (
            "a helper writing below the program's own stores",
            base()
                .helper(1, write_below_own_reach)
                .load_asm(OWN_STORE_THEN_HELPER)
                .unwrap(),
        ),
    ]
}

#[test]
fn no_run_reads_what_an_earlier_run_left_on_the_stack() {
    check_writers_then_readers();
}

/// Every run A of [`writers`] on every engine, each followed on this thread by run B of
/// [`reader`] on every engine: B reads zero.
fn check_writers_then_readers() {
    let mut checked = 0;
    for &a_engine in Engine::ALL {
        for (name, writer) in writers(a_engine) {
            for &b_engine in Engine::ALL {
                let reader = reader(b_engine);
                // The writer must really leave the secret where the reader looks: the
                // reader's own stack read right after the writer's stores, in one program.
                let outcome = catch_unwind(AssertUnwindSafe(|| writer.run(&mut [0u8; 8])));
                let r0 = reader.run(&mut [0u8; 8]).unwrap();
                assert_eq!(
                    r0, 0,
                    "{a_engine} run A ({name}: {outcome:?}) left {r0:#x} for {b_engine}'s run B"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * Engine::ALL.len() * Engine::ALL.len());
}

/// The reader and writers are not vacuous: within one run, the reader's loop does see what
/// the writer's loop stored (so the reader would see a leak).
#[test]
fn the_reader_sees_stores_of_its_own_run() {
    for &engine in Engine::ALL {
        let program = fill_through_pointer(&read_the_stack("again"));
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .budget(100_000)
            .load_asm(&program)
            .unwrap();
        assert_eq!(vm.run(&mut [0u8; 8]).unwrap(), SECRET, "{engine}");
        // The nested-calls writer reaches 4 frames: its deepest store is 4 * 512 bytes below
        // the top.
        let calls = Vm::builder()
            .engine(engine)
            .load_asm(&fill_frames_in_calls(3))
            .unwrap();
        assert_eq!(calls.run(&mut [0u8; 8]).unwrap(), 0, "{engine}");
    }
}

/// A verified program may read stack bytes that no path before it wrote (a verifier warning,
/// as the kernel allows root): every engine reads zero there, or what this run wrote there
/// earlier — never what an earlier run left.
#[test]
fn reads_of_stack_bytes_never_written_see_zero_or_this_runs_bytes() {
    // The input's first byte picks the path: non-zero stores the secret at r10-16 first.
    let one_path = format!(
        "ldxb %r2, [%r1]
        jeq %r2, 0, read
        lddw %r3, {SECRET:#x}
        stxdw [%r10-16], %r3
        read:
        ldxw %r0, [%r10-16]
        exit"
    );
    // f writes its frame's r10-16; g, called next at the same depth, reads its own r10-16,
    // which no path of g writes: the same bytes, written earlier in this run.
    let two_calls = format!(
        "call local f
        call local g
        exit
        f:
        lddw %r3, {SECRET:#x}
        stxdw [%r10-16], %r3
        mov %r0, 0
        exit
        g:
        ldxw %r0, [%r10-16]
        exit"
    );
    let low = SECRET & 0xffff_ffff;
    for &engine in Engine::ALL {
        let load = |text: &str| Vm::builder().engine(engine).load_asm(text).unwrap();
        let vm = load(&one_path);
        assert!(
            vm.warnings().iter().any(|f| matches!(
                f.kind,
                ebpf_vm::FindingKind::UninitializedStack {
                    offset: -16,
                    size: 4
                }
            )),
            "{engine}: {:?}",
            vm.warnings()
        );
        assert_eq!(vm.run(&mut [0]).unwrap(), 0, "{engine}: first run");
        assert_eq!(vm.run(&mut [1]).unwrap(), low, "{engine}: written path");
        assert_eq!(vm.run(&mut [0]).unwrap(), 0, "{engine}: after the secret");
        let calls = load(&two_calls);
        assert_eq!(
            calls.run(&mut [0]).unwrap(),
            low,
            "{engine}: g reads f's bytes"
        );
        assert_eq!(vm.run(&mut [0]).unwrap(), 0, "{engine}: after the calls");
    }
}

/// One program for a runner's runs A and B: with a non-zero first input byte it runs
/// `writer` (which leaves the secret on the stack, and may trap or panic), with a zero one
/// the reader of [`reader`].
fn writer_or_reader(writer: &str) -> String {
    format!(
        "ldxb %r4, [%r1]
        jeq %r4, 0, read
        {writer}
        read:
        {reader}",
        reader = read_the_stack("again")
    )
}

/// One program for runs A and B of any shape: with a non-zero `r2` (the length of the input
/// or of the metadata buffer) it runs `writer`, with a zero one (no input, or empty ones) the
/// reader of [`reader`].
fn writer_or_reader_by_length(writer: &str) -> String {
    format!(
        "jeq %r2, 0, read
        {writer}
        read:
        {reader}",
        reader = read_the_stack("again")
    )
}

/// The runs A of a runner, by name: programs for [`writer_or_reader`]'s writer part, and the
/// builder to load them with.
fn runner_writers(engine: Engine) -> Vec<(&'static str, Vm)> {
    runner_writers_with(engine, writer_or_reader)
}

/// [`runner_writers`], each writer made a program by `program` ([`writer_or_reader`] or
/// [`writer_or_reader_by_length`]).
fn runner_writers_with(engine: Engine, program: fn(&str) -> String) -> Vec<(&'static str, Vm)> {
    let load = |builder: ebpf_vm::VmBuilder, writer: &str| {
        builder
            .engine(engine)
            .unverified()
            .budget(100_000)
            .load_asm(&program(writer))
            .unwrap()
    };
    // Constant offsets from r10 only, in the entry frame and one call deep.
    let mut constant = String::from("lddw %r3, 0x5ec2e75ec2e75ec2\n");
    for off in (8..=512).step_by(8) {
        writeln!(constant, "stxdw [%r10-{off}], %r3").unwrap();
    }
    constant.push_str("call local deeper\nmov %r0, 0\nexit\ndeeper:\n");
    for off in (8..=512).step_by(8) {
        writeln!(constant, "stxdw [%r10-{off}], %r3").unwrap();
    }
    constant.push_str("mov %r0, 0\nexit");
    vec![
        (
            "constant offsets, one call deep",
            load(Vm::builder(), &constant),
        ),
        (
            "a computed pointer",
            load(Vm::builder(), &fill_through_pointer("mov %r0, 0\nexit")),
        ),
        (
            "a computed pointer, then a trap",
            load(
                Vm::builder(),
                &fill_through_pointer("ldxdw %r0, [%r0]\nexit"),
            ),
        ),
        (
            "a computed pointer, for ever (out of budget)",
            load(Vm::builder(), &fill_through_pointer("ja -5")),
        ),
        (
            "a helper",
            load(Vm::builder().helper(1, smear), "call 1\nmov %r0, 0\nexit"),
        ),
        (
            "a helper that then panics",
            load(
                Vm::builder().helper(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
                    smear(args, mem)?;
                    panic!("helper gives up")
                }),
                "call 1\nmov %r0, 0\nexit",
            ),
        ),
        (
            "a helper writing below the program's own stores",
            load(
                Vm::builder().helper(1, write_below_own_reach),
                OWN_STORE_THEN_HELPER,
            ),
        ),
        (
            "a helper writing below the program's own stores, then a trap",
            load(
                Vm::builder().helper(1, write_below_own_reach),
                "stdw [%r10-8], 1\ncall 1\nldxdw %r0, [%r0]\nexit",
            ),
        ),
        (
            "a helper writing below the program's own stores, then panicking",
            load(
                Vm::builder().helper(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
                    write_below_own_reach(args, mem)?;
                    panic!("helper gives up")
                }),
                OWN_STORE_THEN_HELPER,
            ),
        ),
    ]
}

#[test]
fn no_run_of_a_runner_reads_what_its_earlier_run_left_on_the_stack() {
    a_then_b_on_every_writer(1, |vm, a_then_b| {
        let mut runner = vm.runner();
        a_then_b(&mut |input| runner.run(input));
    });
}

/// One way of running a VM: `Runner::run` or `Vm::run`.
type Run<'a> = &'a mut dyn FnMut(&mut [u8]) -> Result<u64, ebpf_vm::Trap>;

/// For every engine and each of [`runner_writers`], hands the VM to `with`, which hands
/// the check one way of running it: three rounds of run A (the secret written; a panic
/// caught around it and the same way used again) then run B, which must read only zeroes;
/// `with` hands it `ways` ways.
fn a_then_b_on_every_writer(ways: usize, with: impl Fn(&Vm, &mut dyn FnMut(Run<'_>))) {
    let mut checked = 0;
    for &engine in Engine::ALL {
        for (name, vm) in runner_writers(engine) {
            with(&vm, &mut |run| {
                for round in 0..3 {
                    let a = catch_unwind(AssertUnwindSafe(|| run(&mut [1u8; 8])));
                    let b = run(&mut [0u8; 8]);
                    assert_eq!(
                        b,
                        Ok(0),
                        "{engine}, round {round}: run A ({name}: {a:?}) left the secret for run B"
                    );
                    checked += 1;
                }
            });
        }
    }
    assert_eq!(checked, ways * 9 * 3 * Engine::ALL.len());
}

/// The runner's writers are not vacuous: a run that writes then reads in one run sees the
/// secret (the reader would see a leak), on the fast path of a helper-free program too.
#[test]
fn a_runner_run_sees_its_own_stores() {
    for &engine in Engine::ALL {
        let text = writer_or_reader(&fill_through_pointer("ja read"));
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .budget(100_000)
            .load_asm(&text)
            .unwrap();
        let mut runner = vm.runner();
        assert_eq!(runner.run(&mut [1u8; 8]), Ok(SECRET), "{engine}");
        assert_eq!(runner.run(&mut [0u8; 8]), Ok(0), "{engine}");
    }
}

/// Through `Runner::run_with` and `Vm::run_with`: an input alone (the path `run` takes), and
/// an input with an extra region (each run's memory mapped by the facade: the helpers' mark is
/// the facade's map's, not the session's).
#[test]
fn no_run_with_reads_what_an_earlier_run_left_on_the_stack() {
    a_then_b_on_every_writer(2, |vm, a_then_b| {
        let mut runner = vm.runner();
        a_then_b(&mut |input| runner.run_with(ebpf_vm::Input::new(input)).map(|e| e.r0));
        let mut extra = [0u8; 16];
        a_then_b(&mut |input| {
            let input = ebpf_vm::Input::new(input).region_mut(&mut extra);
            runner.run_with(input).map(|e| e.r0)
        });
    });
    a_then_b_on_every_writer(2, |vm, a_then_b| {
        a_then_b(&mut |input| vm.run_with(ebpf_vm::Input::new(input)).map(|e| e.r0));
        let mut extra = [0u8; 16];
        a_then_b(&mut |input| {
            let input = ebpf_vm::Input::new(input).region_mut(&mut extra);
            vm.run_with(input).map(|e| e.r0)
        });
    });
}

/// Runs of every shape the sessions serve without the facade's map, A and B of different
/// shapes in turn, through `Vm::run_with` and a runner: run A with an input and a metadata
/// buffer, a metadata buffer alone, an input alone; run B with no input, an empty metadata
/// buffer, an empty input. (With `r2` zero the program reads; the runs of code compiled for
/// `Vm::run`'s entry that the entry does not admit take the fallback code, and helper-calling
/// code lends its helpers the run's buffers without a map: the helpers' mark must still
/// bound the scrub.)
#[test]
fn no_run_of_another_shape_reads_what_an_earlier_run_left_on_the_stack() {
    use ebpf_vm::Input;
    let mut checked = 0;
    for &engine in Engine::ALL {
        for (name, vm) in runner_writers_with(engine, writer_or_reader_by_length) {
            let mut runner = vm.runner();
            for round in 0..6 {
                for through_runner in [false, true] {
                    let (mut input, mut metadata) = ([1u8; 8], [2u8; 16]);
                    let mut run = |input: Input<'_>| match through_runner {
                        true => runner.run_with(input),
                        false => vm.run_with(input),
                    };
                    let a = catch_unwind(AssertUnwindSafe(|| match round % 3 {
                        0 => run(Input::new(&mut input).metadata(&mut metadata)),
                        1 => run(Input::none().metadata(&mut metadata)),
                        _ => run(Input::new(&mut input)),
                    }));
                    let b = match round % 3 {
                        0 => run(Input::none()),
                        1 => run(Input::none().metadata(&mut [])),
                        _ => run(Input::new(&mut [])),
                    };
                    assert_eq!(
                        b.map(|exit| exit.r0),
                        Ok(0),
                        "{engine}, round {round}, runner {through_runner}: run A ({name}: {a:?}) \
                         left the secret for run B"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 9 * 6 * 2 * Engine::ALL.len());
}

/// The writers by length are not vacuous: a run of each shape A takes that writes then reads
/// in one run sees the secret; one with `r2` zero reads zero.
#[test]
fn a_run_of_every_shape_sees_its_own_stores() {
    use ebpf_vm::Input;
    for &engine in Engine::ALL {
        for (label, writer) in [
            ("a computed pointer", fill_through_pointer("ja read")),
            ("a helper", "call 1\nja read".to_string()),
        ] {
            let vm = Vm::builder()
                .engine(engine)
                .unverified()
                .budget(100_000)
                .helper(1, smear)
                .load_asm(&writer_or_reader_by_length(&writer))
                .unwrap();
            let (mut input, mut metadata) = ([1u8; 8], [2u8; 16]);
            let seen = [
                vm.run_with(Input::new(&mut input).metadata(&mut metadata)),
                vm.run_with(Input::none().metadata(&mut metadata)),
                vm.run_with(Input::new(&mut input)),
            ];
            for (shape, exit) in seen.into_iter().enumerate() {
                assert_eq!(exit.map(|e| e.r0), Ok(SECRET), "{engine}, {label}, {shape}");
            }
            assert_eq!(vm.run_with(Input::none()).map(|e| e.r0), Ok(0), "{engine}");
        }
    }
}

/// The helper writing below the program's own stores is not vacuous: in one run, the reader
/// after it sees the secret at the lowest byte of the stack, which the program's own stores
/// never reach.
#[test]
fn a_helper_below_the_programs_own_stores_leaves_the_secret_for_its_own_run() {
    for &engine in Engine::ALL {
        let text = writer_or_reader("stdw [%r10-8], 0\ncall 1\nja read");
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .budget(100_000)
            .helper(1, write_below_own_reach)
            .load_asm(&text)
            .unwrap();
        assert_eq!(vm.run(&mut [1u8; 8]), Ok(SECRET), "{engine}");
        assert_eq!(vm.run(&mut [0u8; 8]), Ok(0), "{engine}");
    }
}

/// `Vm::run` keeps a prepared session and stack per thread and VM: a VM's runs on a thread
/// reuse one stack, as a runner's do. The same runs A and B as for a runner, through
/// `Vm::run` on one VM — a panic caught around A included (the panicking run's stack is
/// dropped, never lent again).
#[test]
fn no_vm_run_reads_what_an_earlier_run_of_that_vm_left_on_the_stack() {
    a_then_b_on_every_writer(1, |vm, a_then_b| a_then_b(&mut |input| vm.run(input)));
}

/// The same through runs nested in a helper: by its first input byte, the program writes the
/// secret and runs the VM again from its helper, writing again (1); writes without nesting
/// (2); reads the stack, after a nested run that reads the stack too (3). Run A (1) leaves
/// the secret on both of the VM's prepared stacks (the nested run takes a second); run B (3)
/// reads both.
#[test]
fn nested_vm_runs_leave_nothing_on_either_stack() {
    let reader = read_the_stack("again").replace("exit", "or %r0, %r6\nexit");
    let text = format!(
        "ldxb %r4, [%r1]
        jeq %r4, 0, read
        jeq %r4, 3, nested_read
        {writer}
        nested_read:
        mov %r1, 3
        call 1
        mov %r6, %r0
        ja read
        read:
        {reader}",
        writer = fill_through_pointer("mov %r1, %r4\ncall 1\nmov %r0, 0\nexit"),
    );
    for &engine in Engine::ALL {
        let cell: std::sync::Arc<std::sync::OnceLock<Vm>> = Default::default();
        let inner = std::sync::Arc::clone(&cell);
        let loaded = Vm::builder()
            .engine(engine)
            .unverified()
            .budget(100_000)
            .helper(1, move |args: [u64; 5], _: &mut dyn VmMemory| {
                let input = match args[0] {
                    1 => 2,
                    3 => 0,
                    _ => return Ok(0),
                };
                let vm = inner.get().expect("loaded");
                vm.run(&mut [input; 8])
                    .map_err(|trap| HelperError::failed(trap.to_string()))
            })
            .load_asm(&text)
            .unwrap();
        let _ = cell.set(loaded);
        let vm = cell.get().unwrap();
        for round in 0..3 {
            let a = vm.run(&mut [1u8; 8]);
            assert_eq!(a, Ok(0), "{engine}, round {round}: run A");
            assert_eq!(
                vm.run(&mut [3u8; 8]),
                Ok(0),
                "{engine}, round {round}: a nested run A left the secret"
            );
        }
    }
}

/// A thread that runs more VMs than it keeps prepared runs the others through a map on its
/// shared stack, which VMs take in turn: the first test's runs A and B, with every slot of
/// the thread's cache held by other live VMs first.
#[test]
fn runs_past_the_thread_cache_leave_nothing_on_the_shared_stack() {
    let fillers: Vec<Vm> = (0..16)
        .map(|_| Vm::builder().load_asm("mov %r0, 0\nexit").unwrap())
        .collect();
    for filler in &fillers {
        filler.run(&mut [0u8; 8]).unwrap();
    }
    check_writers_then_readers();
    drop(fillers);
}
