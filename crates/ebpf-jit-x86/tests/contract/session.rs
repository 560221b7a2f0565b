//! Sessions (`Executable::session`) of the JIT's code against the interpreter's session, run
//! for run on one session and one stack: the shapes of run a session serves without a map —
//! an input alone, no input, a metadata buffer, both — in turn, so that every decision the
//! session keeps between runs (the table's rows, the fallback code's entry, the helpers'
//! memory) is taken again after a run of another shape; on code compiled with the facts of
//! `Vm::run`'s entry (which refuses all but the input-alone runs, and gives them the fallback
//! code) and without; helper-calling code (whose helpers read and write the stack, the input
//! and the metadata buffer, fail, and write past a buffer) under budgets that end runs
//! before, between and after the helper calls; and a binding with a fixed region. Each run's
//! result, the buffers after it and the helpers' stack mark are the interpreter's.

use std::sync::Arc;

use ebpf_abi::{
    Binding, Executable, Exit, HelperError, Helpers, Limits, MemoryMap, Region, Stack, Trap,
    VmMemory, layout,
};
use ebpf_cfg::facts::Entry;
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_x86::{JitOptions, compile};

/// Bytes the [`Fixed`] binding maps read-only at [`layout::RODATA`].
const RODATA: [u8; 8] = *b"rodata!!";

/// A binding with helpers, limits and, if `rodata`, a read-only region every run shares.
struct Fixed {
    helpers: Helpers,
    limits: Limits,
    rodata: bool,
}

impl Binding for Fixed {
    fn helpers(&self) -> &Helpers {
        &self.helpers
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>) {
        if self.rodata {
            map.insert(layout::RODATA, Region::ReadOnly(&RODATA));
        }
    }
}

/// Helper 1: adds `r3` to each of the `r2` bytes at `r1` (reading them, then writing them
/// back), and returns their sum before; a memory trap where they are not all writable.
fn bump(args: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let len = usize::try_from(args[1]).map_err(|_| HelperError::failed("too long"))?;
    memory.check_range(args[0], args[1], true)?;
    let mut bytes = vec![0u8; len];
    memory.read(args[0], &mut bytes)?;
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    for b in &mut bytes {
        *b = b.wrapping_add(args[2] as u8);
    }
    memory.write(args[0], &bytes)?;
    Ok(sum)
}

/// Helper 2: fails when `r1` is 3, else returns `r1 + 1`.
fn count(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    if args[0] == 3 {
        return Err(HelperError::failed("three"));
    }
    Ok(args[0] + 1)
}

/// The shapes of run, in the order the runs take them: the input's length (`None`: no
/// input), the metadata buffer's (`None`: none), and `r1`/`r2` (`None`: those of the buffer
/// the run passes — the metadata buffer if any, else the input, else 0 and 0).
type Shape = (Option<usize>, Option<usize>, Option<[u64; 2]>);

fn shapes() -> Vec<Shape> {
    let start = layout::vm_addr(layout::INPUT, 0);
    vec![
        (Some(8), None, None),
        (None, None, None),
        (Some(8), None, None),
        (Some(8), Some(16), None),
        (None, Some(16), None),
        (Some(8), None, None),
        // `r2` lies about the input.
        (Some(8), None, Some([start, 64])),
        (Some(4), None, Some([start, 64])),
        (Some(3), None, None),
        (None, Some(3), None),
        (Some(0), None, None),
        (None, None, None),
        (Some(16), Some(16), Some([start, 16])),
        (Some(8), None, None),
    ]
}

/// Each run's result, its input and metadata buffer after it, and the helpers' stack mark,
/// on one session of `engine` bound to `binding` and one stack; every input-alone run made
/// both through `Session::run` and `run_input`, in turn.
fn runs(engine: Arc<dyn Executable>, binding: Arc<dyn Binding>) -> Vec<String> {
    let mut session = engine.session(binding);
    let mut stack = Stack::new();
    let mut outcomes = Vec::new();
    for round in 0..2 {
        for (i, (input, metadata, args)) in shapes().into_iter().enumerate() {
            let mut data: Vec<u8> = (1..=input.unwrap_or(0) as u8).collect();
            let mut meta: Vec<u8> = (0..metadata.unwrap_or(0) as u8).map(|b| b + 100).collect();
            let args = args.unwrap_or(match (input, metadata) {
                (_, Some(len)) => [layout::vm_addr(layout::METADATA, 0), len as u64],
                (Some(len), None) => layout::input_args(len as u64),
                (None, None) => [0, 0],
            });
            let input_alone = metadata.is_none() && args == layout::input_args(data.len() as u64);
            let data_arg = input.map(|_| &mut data[..]);
            let meta_arg = metadata.map(|_| &mut meta[..]);
            stack.begin_run();
            let result: Result<Exit, Trap> = match data_arg {
                Some(data) if input_alone && (round + i) % 2 == 1 => {
                    session.run_input(data, &mut stack)
                }
                data_arg => session.run(data_arg, meta_arg, args, &mut stack),
            };
            // What a lender scrubs: all of it (the marks are compared below).
            stack.end_run(Limits::default().stack_size() as usize, usize::MAX);
            let mark = session.take_helper_stack_mark();
            outcomes.push(format!(
                "round {round}, run {i} {:?}: {result:?}, input {data:?}, metadata {meta:?}, \
                 helpers' stack mark {mark:?}",
                (input, metadata, args)
            ));
        }
    }
    outcomes
}

/// The interpreter's outcomes and the JIT's, on `program` compiled with and without the
/// facts of `Vm::run`'s entry (checked or not), for each binding `bindings` gives; each of
/// `expect` is in some outcome of the interpreter's (the runs are not vacuous).
fn check(program: &Program, bindings: impl Fn() -> Vec<Arc<dyn Binding>>, expect: &[&str]) {
    let interp: Arc<dyn Executable> = Arc::new(Interpreter::new(program));
    let mut every = Vec::new();
    for binding in bindings() {
        let want = runs(interp.clone(), binding.clone());
        every.extend(want.iter().cloned());
        for (entry, checked_facts) in [(None, false), (Some(Entry::input()), true)] {
            let entry_label = format!("{entry:?}");
            let options = JitOptions {
                entry,
                checked_facts,
                ..JitOptions::default()
            };
            let jit: Arc<dyn Executable> = Arc::new(compile(program, &options).unwrap());
            let got = runs(jit, binding.clone());
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got, want, "entry {entry_label}");
            }
            assert_eq!(got.len(), want.len());
        }
    }
    for needle in expect {
        assert!(
            every.iter().any(|o| o.contains(needle)),
            "no run gave {needle}"
        );
    }
}

fn bindings(budgets: impl Iterator<Item = Option<u64>> + Clone) -> Vec<Arc<dyn Binding>> {
    let mut helpers = Helpers::new();
    helpers.insert(1, bump);
    helpers.insert(2, count);
    [false, true]
        .into_iter()
        .flat_map(|rodata| {
            let helpers = helpers.clone();
            budgets.clone().map(move |budget| {
                Arc::new(Fixed {
                    helpers: helpers.clone(),
                    limits: Limits {
                        budget,
                        ..Limits::default()
                    },
                    rodata,
                }) as Arc<dyn Binding>
            })
        })
        .collect()
}

/// Code that calls no helper: an 8-byte load of the input proven in bounds (on the code with
/// the entry's facts) by the program's own length test, a store to the stack, and the
/// length: runs the entry refuses take the fallback code, the refused and admitted in turn.
#[test]
fn a_session_serves_every_shape_of_run_as_the_interpreters_does() {
    let program = ebpf_isa::assemble(
        "stdw [%r10-8], 5
        mov %r0, %r2
        mov %r3, %r1
        add %r3, %r2
        mov %r4, %r1
        add %r4, 8
        jgt %r4, %r3, +2
        ldxdw %r5, [%r1]
        add %r0, %r5
        ldxdw %r5, [%r10-8]
        add %r0, %r5
        exit",
    )
    .unwrap();
    check(
        &program,
        || bindings([None, Some(4), Some(9)].into_iter()),
        &["Ok(Exit", "OutOfBounds", "BudgetExhausted"],
    );
}

/// Helper-calling code: the helpers bump the stack, then the buffer `r1`/`r2` describe (the
/// input, the metadata buffer, none; past it where `r2` lies), and fail on a count of 3; the
/// program reads what they wrote. Under every budget from 0 to past the longest run.
#[test]
fn a_session_of_helper_calling_code_serves_every_shape_of_run_as_the_interpreters_does() {
    let program = ebpf_isa::assemble(
        "mov %r6, %r1
        mov %r7, %r2
        stdw [%r10-16], 0x11
        mov %r1, %r10
        add %r1, -16
        mov %r2, 8
        mov %r3, 1
        call 1
        mov %r8, %r0
        ldxdw %r0, [%r10-16]
        add %r0, %r8
        jeq %r7, 0, done
        mov %r1, %r6
        mov %r2, %r7
        mov %r3, 2
        call 1
        add %r0, %r0
        ldxb %r9, [%r6]
        add %r0, %r9
        mov %r1, %r7
        and %r1, 3
        call 2
        add %r0, %r9
    done:
        exit",
    )
    .unwrap();
    check(
        &program,
        || bindings((0..28).map(Some).chain([None])),
        &[
            "Ok(Exit",
            "OutOfBounds { addr: 17179869184, len: 64, write: true }",
            "HelperFailed",
            "BudgetExhausted",
            "mark Some(4592)",
        ],
    );
}

/// The helper's stack mark, the scrub's bound, is the session's to keep: a helper that writes
/// below the program's own stores, on the fast path, leaves the mark the interpreter's
/// session leaves; a run after it without the helper's write leaves none.
#[test]
fn a_session_keeps_the_helpers_stack_mark_of_every_shape_of_run() {
    let program = ebpf_isa::assemble(
        "jeq %r2, 0, skip
        mov %r1, %r10
        add %r1, -300
        mov %r2, 4
        mov %r3, 9
        call 1
    skip:
        mov %r0, 0
        exit",
    )
    .unwrap();
    check(
        &program,
        || bindings([None].into_iter()),
        &["mark Some(4308)", "mark None"],
    );
}
