//! The Cranelift JIT against the contract and the interpreter, below the facade.
//!
//! One test binary built from modules:
//!
//! - this file — every case of `tests/contract/*.txt` (run by `ebpf-contract` with the regions
//!   and entry registers the contract prescribes) and the 313 bpf_conformance programs, which
//!   must also match the interpreter's count and memory;
//!
//! Everything runs on four variants of the JIT, the configurations the x86 JIT's tests use:
//! with the facts of the stack alone or of the plain input ([`entry`]), each with the checks the
//! facts make impossible dropped or kept (checked facts: a kept check that fires ends the run
//! with a panic naming the pc, so a wrong fact fails the test instead of hiding behind a
//! passing run); two of them compile the program as one function, two cut it into units of
//! about three instructions (every transfer between them through the context and the
//! dispatcher, as in large programs), and those two mask (Spectre), so that both settings run
//! every case.
//! - `code_memory` — programs compiled and freed by the hundred, and from several threads at
//!   once, keep running correctly while the code memory of the others is reused;
//! - `differential` — the generated families of `ebpf_contract::differential` (matrices, budget
//!   sweeps, recursion, large programs, every contract case with its final stack) compared with
//!   the interpreter, and what only this JIT shows (helper panics, threads, the call-depth
//!   clamp);
//! - `props` — property tests: generated programs agree with the interpreter; guarded parsers
//!   and counted loops never trap, and their off-by-one mutants trap as the interpreter does.
//!
//! Every test skips, saying so, on a host Cranelift does not support.

mod code_memory;
mod differential;
mod props;

use std::cell::RefCell;
use std::rc::Rc;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap, layout};
use ebpf_cfg::facts::{Entry, RegionSpec};
use ebpf_contract::differential::Differential;
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_cranelift::{CraneliftProgram, JitOptions};

/// The interpreter, the oracle, as an engine.
pub(crate) fn interp()
-> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    ebpf_contract::engine(Interpreter::new, Interpreter::run)
}

/// Whether this host can run the JIT; says so when not.
pub(crate) fn supported() -> bool {
    let ok = ebpf_jit_cranelift::host_supported();
    if !ok {
        eprintln!("skipping: cranelift does not support this host");
    }
    ok
}

/// Options for tests: the defaults (ISA flags from `EBPF_JIT_ISA_FLAGS`).
pub(crate) fn options() -> JitOptions {
    JitOptions::default()
}

/// The same, with the program cut into units of about three instructions: every jump, call
/// and return between them goes through the context and the dispatcher.
pub(crate) fn split_options() -> JitOptions {
    JitOptions::default().with_function_size(3)
}

/// Read-only data the property tests map (region 1), for programs that happen to read it.
pub(crate) const RODATA: &[u8; 16] = b"read-only bytes!";

/// What the differential runs hold at entry: `r1`/`r2` the input's start and length, the input
/// writable, [`RODATA`] read-only. Runs that break it (no input, no read-only data, other
/// arguments, the contract's own entry registers) are not admitted, so they exercise the
/// JIT's fallback compilation.
pub(crate) fn entry() -> Entry {
    Entry::input().with_region(
        layout::RODATA as u8,
        RegionSpec::Fixed {
            len: RODATA.len() as u64,
            writable: false,
        },
    )
}

/// Every variant the tests run, with its label (see the module documentation): facts of the
/// stack or of [`entry`], checks dropped or kept, one function or units of three; masked
/// (the default) but for the first; with the input's facts in units, accesses proven through
/// a branch clamped too.
/// Under QEMU (`cargo xtask test-cross`), where every compile is slow, the two that drop the
/// checks (what the host architecture could get wrong: the checked ones test the facts,
/// which are the same on every host and are tested natively) — the same cost as before the
/// facts.
pub(crate) fn variants() -> Vec<(&'static str, JitOptions)> {
    let input = || Some(entry());
    let all = vec![
        (
            "cranelift (unmasked, stack facts)",
            options()
                .with_spectre_masking(false)
                .with_checked_facts(false),
        ),
        (
            "cranelift (units of 3, masked, stack facts, checked)",
            split_options()
                .with_spectre_masking(true)
                .with_checked_facts(true),
        ),
        (
            "cranelift (input facts, checked)",
            options().with_entry(input()).with_checked_facts(true),
        ),
        (
            "cranelift (units of 3, masked and clamped, input facts)",
            split_options()
                .with_spectre_masking(true)
                .with_spectre_clamp_proven(true)
                .with_entry(input())
                .with_checked_facts(false),
        ),
    ];
    if std::env::var_os("EBPF_CROSS_EMULATED").is_some() {
        return all
            .into_iter()
            .filter(|(_, options)| !options.checked_facts)
            .collect();
    }
    all
}

/// `program` compiled, or a panic with the error.
pub(crate) fn jit(program: &Program) -> CraneliftProgram {
    jit_with(program, &options())
}

/// `program` compiled with `options`, or a panic with the error.
pub(crate) fn jit_with(program: &Program, options: &JitOptions) -> CraneliftProgram {
    ebpf_jit_cranelift::compile(program, options)
        .unwrap_or_else(|e| panic!("compile failed: {e}\n{}", ebpf_isa::disassemble(program)))
}

/// The JIT with `options` as an engine. Compiling takes milliseconds, so the last few
/// programs stay compiled: contract cases run twice and budget sweeps run one program many
/// times.
pub(crate) fn cranelift_with(
    options: JitOptions,
) -> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    const KEEP: usize = 4;
    let cache: RefCell<Vec<(Program, Rc<CraneliftProgram>)>> = RefCell::new(Vec::new());
    move |program, map, args, helpers, limits| {
        let hit = cache
            .borrow()
            .iter()
            .find(|(p, _)| p == program)
            .map(|(_, jit)| jit.clone());
        let compiled = hit.unwrap_or_else(|| {
            let compiled = Rc::new(jit_with(program, &options));
            let mut cache = cache.borrow_mut();
            if cache.len() == KEEP {
                cache.remove(0);
            }
            cache.push((program.clone(), compiled.clone()));
            compiled
        });
        compiled.run(map, args, helpers, limits)
    }
}

/// Under QEMU (`cargo xtask test-cross`), where every compile is slow, the families that run
/// many small programs one by one run every 31st (natively every one); each is also part of a
/// folded program that runs whole.
fn stride() -> usize {
    if std::env::var_os("EBPF_CROSS_EMULATED").is_some() {
        31
    } else {
        1
    }
}

/// Runs `f` with a differential check of the JIT, in every one of its [`variants`], against
/// the interpreter.
pub(crate) fn with_differential<T>(f: impl FnOnce(&Differential<'_>) -> T) -> T {
    let interp = interp();
    let engines: Vec<_> = variants()
        .into_iter()
        .map(|(label, options)| (label, cranelift_with(options)))
        .collect();
    let mut d = Differential::new(&interp).stride(stride());
    for (label, engine) in &engines {
        d = d.engine(label, engine);
    }
    f(&d)
}

#[test]
fn contract() {
    if supported() {
        for (label, options) in variants() {
            ebpf_contract::check_engine(label, &cranelift_with(options));
        }
    }
}

#[test]
fn conformance_suite() {
    if supported() {
        for (label, options) in variants() {
            ebpf_contract::conformance::check_suite(
                label,
                |v| ebpf_jit_cranelift::compile(&v.program, &options).map_err(|e| e.to_string()),
                CraneliftProgram::run,
                Some(&interp()),
            );
        }
    }
}

/// A session of code compiled with the input's facts (an 8-byte load proven in bounds by the
/// program's own length test) runs it without the entry's gate only on a run the entry
/// admits: a length in `r2` that lies about the input, a metadata buffer, no input, the same
/// through `run_in` — each gives what the interpreter's session gives (a trap, not a read past
/// the buffer), and admitted runs around them still give the input's word.
#[test]
fn a_session_runs_the_facts_code_only_on_runs_the_entry_admits() {
    use ebpf_abi::{Executable, Stack};
    if !supported() {
        return;
    }
    let program = ebpf_isa::assemble(
        "mov %r0, 7
        mov %r3, %r1
        add %r3, %r2
        mov %r4, %r1
        add %r4, 8
        jgt %r4, %r3, +1
        ldxdw %r0, [%r1]
        exit",
    )
    .unwrap();
    let options = options()
        .with_entry(Some(Entry::input()))
        .with_checked_facts(false);
    let jit = jit_with(&program, &options);
    assert_eq!(jit.removed().unchecked, 1, "the load is proven in bounds");
    let interp = Interpreter::new(&program);
    let binding = std::sync::Arc::new(ebpf_abi::PlainBinding::default());
    let start = layout::vm_addr(layout::INPUT, 0);
    type Outcome = (Result<Exit, Trap>, Vec<u8>);
    let runs = |engine: std::sync::Arc<dyn Executable>| -> Vec<Outcome> {
        let mut session = engine.session(binding.clone());
        let mut stack = Stack::new();
        let mut outcomes = Vec::new();
        let cases: [(usize, bool, [u64; 2]); 6] = [
            (8, false, [start, 8]),
            (4, false, [start, 64]),
            (8, true, [start, 8]),
            (0, false, [0, 64]),
            (16, false, [start + 12, 16]),
            (8, false, [start, 8]),
        ];
        for (len, metadata, args) in cases {
            let mut data: Vec<u8> = (1..=len as u8).collect();
            let mut meta = [0u8; 16];
            let data_arg = (len > 0).then_some(&mut data[..]);
            let meta_arg = metadata.then_some(&mut meta[..]);
            let result = session.run(data_arg, meta_arg, args, &mut stack);
            outcomes.push((result, data));
        }
        // The same lie through `run_in`, on a map the caller built.
        let mut data = vec![1, 2, 3, 4];
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, ebpf_abi::Region::Writable(&mut data));
        let mut stack = Stack::new();
        let result = session.run_in(&mut map, [start, 64], &mut stack);
        outcomes.push((result, Vec::new()));
        outcomes
    };
    let want = runs(std::sync::Arc::new(interp));
    let got = runs(std::sync::Arc::new(jit));
    assert_eq!(got, want);
    assert_eq!(want[0].0.as_ref().map(|e| e.r0), Ok(0x0807_0605_0403_0201));
    for i in [1, 4, 6] {
        let trap = want[i].0.as_ref().unwrap_err();
        assert_eq!(trap.pc, 6, "{i}: {trap}");
    }
}

/// A session's fast path writes only `r1`, `r2`, the budget and the rows that changed per run;
/// everything else it set once, and a run that does not exit makes it set them again. So
/// every way a run ends — exit, a memory trap, the budget running short inside a local call
/// (the interpreter finishes the run, from the session's own saved frames: it traps, or
/// returns to the caller, whose `r6` the frame restores), an exit through two returns, the
/// call depth exceeded — is followed here by every other, on one session and
/// one stack, with the input's length and buffer changing; each result and the input after it
/// as the interpreter's session gives them, whole and cut into units.
#[test]
fn a_session_run_starts_afresh_whatever_the_run_before_it_left() {
    use ebpf_abi::{Executable, Stack, TrapKind};
    if !supported() {
        return;
    }
    // The input's first byte picks the path; the paths that return write into the input. The
    // callee's last stretch may run 30 more instructions than it does: a run whose budget
    // falls short of that suspends there, and the interpreter returns to the caller.
    let program = ebpf_isa::assemble(&format!(
        "ldxb %r2, [%r1]
        jeq %r2, 1, oob
        jeq %r2, 2, budget
        jeq %r2, 3, nested
        jeq %r2, 4, deep
        mov %r0, 7
        exit
    oob:
        ldxdw %r0, [%r1+4000]
        exit
    budget:
        mov %r6, 11
        call local spin
        add %r0, %r6
        exit
    nested:
        call local middle
        add %r0, 1
        exit
    deep:
        call local deep
        exit
    middle:
        call local inner
        stxb [%r1+2], %r0
        exit
    inner:
        mov %r0, 5
        stxb [%r1+1], %r0
        exit
    spin:
        ldxb %r7, [%r1+1]
        mov %r6, 0
    again:
        add %r6, 1
        stxb [%r1+3], %r6
        jlt %r6, %r7, again
        mov %r0, %r6
        jne %r6, 255, done
        {}
    done:
        exit",
        "add %r0, 1\n".repeat(30)
    ))
    .unwrap();
    let interp = Interpreter::new(&program);
    let binding = std::sync::Arc::new(ebpf_abi::PlainBinding {
        helpers: Helpers::new(),
        limits: Limits {
            budget: Some(200),
            ..Limits::default()
        },
    });
    const PATHS: u8 = 5;
    type Outcome = (Result<Exit, Trap>, Vec<u8>);
    let runs = |engine: std::sync::Arc<dyn Executable>| -> Vec<Outcome> {
        let mut session = engine.session(binding.clone());
        let mut stack = Stack::new();
        let mut outcomes = Vec::new();
        for first in 0..PATHS {
            for then in 0..PATHS {
                for (path, len) in [(first, 8), (then, 16), (first, 8)] {
                    let mut data = vec![0u8; len];
                    data[0] = path;
                    // The loop's count: around the budget, so that some runs of path 2
                    // suspend in the callee and return to the caller from the interpreter.
                    data[1] = 36 + 4 * (outcomes.len() % 10) as u8;
                    let result = session.run_input(&mut data, &mut stack);
                    outcomes.push((result, data));
                }
            }
        }
        outcomes
    };
    let want = runs(std::sync::Arc::new(interp));
    // Every way of ending happened (the first run of each group is path `first`).
    let ended = |path: u8| &want[usize::from(path) * usize::from(PATHS) * 3].0;
    assert_eq!(ended(0).as_ref().map(|e| e.r0), Ok(7));
    assert!(matches!(
        ended(1),
        Err(Trap {
            pc: 7,
            kind: TrapKind::OutOfBounds { .. }
        })
    ));
    // Path 2 both ran out of budget in the callee and returned to the caller.
    let path2 = || want.iter().filter(|(_, d)| d[0] == 2);
    assert!(path2().any(|(r, _)| matches!(
        r,
        Err(Trap {
            kind: TrapKind::BudgetExhausted { .. },
            ..
        })
    )));
    assert!(path2().any(|(r, d)| r.as_ref().map(|e| e.r0) == Ok(u64::from(d[1]) + 11)));
    assert_eq!(ended(3).as_ref().map(|e| e.r0), Ok(6));
    assert!(matches!(
        ended(4),
        Err(Trap {
            kind: TrapKind::CallDepthExceeded { .. },
            ..
        })
    ));
    for options in [options(), split_options()] {
        let got = runs(std::sync::Arc::new(jit_with(&program, &options)));
        assert_eq!(got, want);
    }
}

/// An entry declares read-only data as `Fixed { len: 64 }` (at least 64 bytes) and a run maps
/// 128: `ebpf_testgen::CLAIMED_END_IN_FIXED_REGION` must keep its stack access's check where
/// the claimed end lies past 64 bytes — the same trap at the same pc as the interpreter, with
/// the checks the facts drop dropped or kept. (The analysis once versioned the loop as if the
/// data ended at its declared length, and this access ran unchecked past the host's stack
/// buffer.)
#[test]
fn a_fixed_region_mapped_longer_than_declared_keeps_the_checks_it_needs() {
    if !supported() {
        return;
    }
    let program = ebpf_isa::assemble(ebpf_testgen::CLAIMED_END_IN_FIXED_REGION).unwrap();
    let entry = Entry::input().with_region(
        layout::RODATA as u8,
        RegionSpec::Fixed {
            len: ebpf_testgen::CLAIMED_END_DECLARED_LEN,
            writable: false,
        },
    );
    let limits = Limits {
        budget: Some(10_000),
        ..Limits::default()
    };
    let interp = Interpreter::new(&program);
    for checked_facts in [true, false] {
        let jit = jit_with(
            &program,
            &options()
                .with_entry(Some(entry.clone()))
                .with_checked_facts(checked_facts),
        );
        for end in ebpf_testgen::CLAIMED_ENDS {
            let expected = ebpf_testgen::run_claimed_end(
                |m, a| interp.run(m, a, &Helpers::new(), &limits),
                end,
            );
            let got =
                ebpf_testgen::run_claimed_end(|m, a| jit.run(m, a, &Helpers::new(), &limits), end);
            assert_eq!(
                got, expected,
                "cranelift: end {end}, checked facts {checked_facts}"
            );
        }
    }
}

/// A session's runs of code that calls helpers run on its own buffers (no map) when the binding
/// has no fixed regions: every way such a run can go — a helper that only computes, one that
/// writes the stack (the helpers' stack mark) or the input (which the code reads back after
/// the call: the rows derived afresh), one that fails, one that panics, the budget running
/// short between helper calls (the interpreter finishes on a map of the same buffers), the
/// call depth exceeded — followed by every other, through `run_input`, a run with neither
/// input nor metadata, a run with a metadata buffer and `run_in` with an extra region, on two
/// stacks used in turn; each result, the input after it and the helpers' stack mark as the
/// interpreter's session gives them, with and without the input's facts (runs without input
/// take the fallback code), whole and cut into units.
#[test]
fn a_session_run_of_helper_calling_code_is_the_interpreters() {
    use ebpf_abi::{HelperError, VmMemory};
    if !supported() {
        return;
    }
    let program = ebpf_isa::assemble(
        "mov %r6, %r1
        mov %r7, %r2
        mov %r1, %r2
        call 1
        mov %r8, %r0
        jeq %r7, 0, bare
        ldxb %r2, [%r6]
        jeq %r2, 1, stack
        jeq %r2, 2, input
        jeq %r2, 3, fail
        jeq %r2, 4, panic
        jeq %r2, 5, budget
        jeq %r2, 6, deep
        jeq %r2, 7, rodata
        jeq %r2, 8, rodata_write
        mov %r0, %r8
        exit
    rodata:
        lddw %r1, 0x100000004
        call 5
        exit
    rodata_write:
        lddw %r1, 0x100000000
        call 2
        exit
    bare:
        mov %r0, %r8
        add %r0, 100
        exit
    stack:
        mov %r1, %r10
        add %r1, -64
        call 2
        ldxdw %r0, [%r10-64]
        exit
    input:
        mov %r1, %r6
        add %r1, 8
        call 2
        ldxdw %r0, [%r6+8]
        exit
    fail:
        call 3
        exit
    panic:
        call 4
        exit
    budget:
        ldxb %r9, [%r6+1]
    again:
        mov %r1, %r9
        call 1
        mov %r9, %r0
        stxb [%r6+3], %r9
        jlt %r9, 200, again
        mov %r0, %r9
        exit
    deep:
        call local deep
        exit",
    )
    .unwrap();
    let mut helpers = Helpers::new();
    helpers.insert(1, |args: [u64; 5], _: &mut dyn VmMemory| Ok(args[0] + 1));
    helpers.insert(2, |args: [u64; 5], memory: &mut dyn VmMemory| {
        memory.write(args[0], &[0xab; 8])?;
        Ok(0)
    });
    helpers.insert(3, |_: [u64; 5], _: &mut dyn VmMemory| {
        Err(HelperError::failed("no"))
    });
    helpers.insert(
        4,
        |_: [u64; 5], _: &mut dyn VmMemory| -> Result<u64, HelperError> { panic!("helper 4") },
    );
    helpers.insert(5, |args: [u64; 5], memory: &mut dyn VmMemory| {
        Ok(memory.read_u64(args[0])?)
    });
    let limits = Limits {
        budget: Some(300),
        ..Limits::default()
    };
    // Without fixed regions, and with read-only data at `layout::RODATA` (which path 7's
    // helper reads and path 8's may not write).
    let plain = ebpf_abi::PlainBinding {
        helpers: helpers.clone(),
        limits,
    };
    helper_calling_sessions(&program, std::sync::Arc::new(plain), false);
    let rodata = WithRodata {
        helpers,
        limits,
        rodata: (1..=32).collect(),
    };
    helper_calling_sessions(&program, std::sync::Arc::new(rodata), true);
}

/// A binding with read-only data at `layout::RODATA`.
struct WithRodata {
    helpers: Helpers,
    limits: Limits,
    rodata: Vec<u8>,
}

impl ebpf_abi::Binding for WithRodata {
    fn helpers(&self) -> &Helpers {
        &self.helpers
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>) {
        map.insert(layout::RODATA, ebpf_abi::Region::ReadOnly(&self.rodata));
    }
}

/// `a_session_run_of_helper_calling_code_is_the_interpreters` on one binding (`fixed`: with
/// the read-only data).
fn helper_calling_sessions(
    program: &Program,
    binding: std::sync::Arc<dyn ebpf_abi::Binding>,
    fixed: bool,
) {
    use ebpf_abi::{Executable, Region, Stack, TrapKind};
    const PATHS: u8 = 9;
    // (The run's result, or that it panicked; the input after it; the helpers' stack mark.)
    type Outcome = (Option<Result<Exit, Trap>>, Vec<u8>, Option<u64>);
    let runs = |engine: std::sync::Arc<dyn Executable>| -> Vec<Outcome> {
        let mut session = engine.session(binding.clone());
        let mut stacks = [Stack::new(), Stack::new()];
        let mut outcomes = Vec::new();
        let mut extra = [5u8; 32];
        for first in 0..PATHS {
            for then in 0..PATHS {
                for (shape, path) in [(0, first), (1, then), (2, first), (3, then), (0, then)] {
                    let n = outcomes.len();
                    let mut data = vec![0u8; 16 + 8 * (n % 3)];
                    data[0] = path;
                    // The loop's start: around the budget, so that some runs of path 5
                    // suspend between helper calls and some finish.
                    data[1] = 120 + 7 * (n % 11) as u8;
                    let mut meta = data.clone();
                    let stack = &mut stacks[n % 2];
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match shape {
                            0 => session.run_input(&mut data, stack),
                            1 => session.run(None, None, [0, 0], stack),
                            2 => {
                                let args = [layout::vm_addr(layout::METADATA, 0), 24];
                                session.run(Some(&mut data), Some(&mut meta), args, stack)
                            }
                            _ => {
                                let mut map = MemoryMap::new();
                                map.insert(5, Region::Writable(&mut extra));
                                let len = data.len() as u64;
                                map.insert(layout::INPUT, Region::Writable(&mut data));
                                let args = layout::input_args(len);
                                let result = session.run_in(&mut map, args, stack);
                                // (A `run_in` run's mark is in the caller's map.)
                                let mark = map.lowest_stack_write();
                                assert!(session.take_helper_stack_mark().is_none());
                                return (result, mark);
                            }
                        }
                        .map_or_else(|trap| (Err(trap), None), |exit| (Ok(exit), None))
                    }));
                    let (result, mark) = match result {
                        Ok((result, None)) if shape != 3 => {
                            (Some(result), session.take_helper_stack_mark())
                        }
                        Ok((result, mark)) => (Some(result), mark),
                        Err(_) => (None, session.take_helper_stack_mark()),
                    };
                    // The lender's part: the stack all zero again before it is lent.
                    stack.region(limits_stack()).fill(0);
                    outcomes.push((result, data, mark));
                }
            }
        }
        outcomes
    };
    fn limits_stack() -> usize {
        Limits::default().stack_size() as usize
    }
    let want = runs(std::sync::Arc::new(Interpreter::new(program)));
    // Every way of ending happened, on each shape of run.
    let of = |path: u8| want.iter().filter(move |(_, d, _)| d[0] == path);
    assert!(of(0).any(|(r, _, _)| matches!(r, Some(Ok(e)) if e.r0 == 17)));
    assert!(
        want.iter()
            .any(|(r, _, _)| matches!(r, Some(Ok(e)) if e.r0 == 101))
    );
    assert!(
        of(1).any(
            |(r, _, m)| matches!(r, Some(Ok(e)) if e.r0 == 0xabab_abab_abab_abab) && m.is_some()
        )
    );
    assert!(of(2).any(
        |(r, d, _)| matches!(r, Some(Ok(e)) if e.r0 == 0xabab_abab_abab_abab)
            && d[8..16] == [0xab; 8]
    ));
    assert!(of(3).any(|(r, _, _)| matches!(
        r,
        Some(Err(Trap {
            kind: TrapKind::HelperFailed { .. },
            ..
        }))
    )));
    assert!(of(4).any(|(r, _, _)| r.is_none()));
    assert!(of(5).any(|(r, _, _)| matches!(
        r,
        Some(Err(Trap {
            kind: TrapKind::BudgetExhausted { .. },
            ..
        }))
    )));
    assert!(of(5).any(|(r, _, _)| matches!(r, Some(Ok(e)) if e.r0 == 200)));
    assert!(of(6).any(|(r, _, _)| matches!(
        r,
        Some(Err(Trap {
            kind: TrapKind::CallDepthExceeded { .. },
            ..
        }))
    )));
    // Path 7 reads the read-only data's bytes 4..12 where there are some; path 8 may not
    // write them. (Runs without input take neither.)
    assert!(of(7).any(|(r, _, _)| match r {
        Some(Ok(e)) => fixed && e.r0 == u64::from_le_bytes([5, 6, 7, 8, 9, 10, 11, 12]),
        Some(Err(t)) => !fixed && matches!(t.kind, TrapKind::OutOfBounds { .. }),
        None => false,
    }));
    assert!(of(8).any(|(r, _, _)| matches!(
        r,
        Some(Err(Trap {
            kind: TrapKind::OutOfBounds { write: true, .. },
            ..
        }))
    )));
    let input = || options().with_entry(Some(Entry::input()));
    for options in [
        options(),
        split_options(),
        input(),
        input().with_checked_facts(true),
    ] {
        let got = runs(std::sync::Arc::new(jit_with(program, &options)));
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(got, want, "run {i}");
        }
    }
}
