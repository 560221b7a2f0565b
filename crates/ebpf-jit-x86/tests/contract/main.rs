//! The x86-64 JIT against the contract and the interpreter, below the facade, in every
//! configuration that changes its code: with and without constant blinding, with the facts of
//! the stack alone or of the plain input, and with the checks the facts make impossible dropped
//! or kept (checked facts: a kept check that fires ends the run with a panic naming the pc, so
//! a wrong fact fails the test instead of hiding behind a passing run).
//!
//! One test binary built from modules:
//!
//! - this file — every case of `tests/contract/*.txt` (run by `ebpf-contract` with the regions
//!   and entry registers the contract prescribes) and the 313 bpf_conformance programs, which
//!   must also match the interpreter's count and memory;
//! - `differential` — the generated families of `ebpf_contract::differential` (matrices, budget
//!   sweeps, recursion, large programs, every contract case with its final stack) compared with
//!   the interpreter, and what only this JIT's own API shows (helper panics, threads);
//! - `props` — property tests: generated programs agree with the interpreter; guarded parsers
//!   and counted loops never trap, and their off-by-one mutants trap as the interpreter does;
//! - `session` — sessions run for run against the interpreter's, every shape of run in turn.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

mod differential;
mod props;
mod session;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap, layout};
use ebpf_cfg::facts::{Entry, RegionSpec};
use ebpf_contract::differential::Differential;
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_x86::{JitOptions, X86Program, compile};

/// The interpreter, the oracle, as an engine.
pub(crate) fn interp()
-> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    ebpf_contract::engine(Interpreter::new, Interpreter::run)
}

/// Read-only data the property tests map (region 1), for programs that happen to read it.
pub(crate) const RODATA: &[u8; 16] = b"read-only bytes!";

/// What the differential runs hold at entry: `r1`/`r2` the input's start and length, the input
/// writable, [`RODATA`] read-only. Runs that break it (no input, other arguments, the contract's
/// own entry registers) are not admitted, so they exercise the JIT's fallback compilation.
pub(crate) fn entry() -> Entry {
    Entry::input().with_region(
        layout::RODATA as u8,
        RegionSpec::Fixed {
            len: RODATA.len() as u64,
            writable: false,
        },
    )
}

/// The configurations every program runs under, with their labels: facts from the stack alone
/// or from [`entry`], each with the checks the facts make impossible kept or dropped, constant
/// blinding on in half of them. Spectre masking is on (the default) in three and off in the
/// one with the most checked accesses (stack facts, nothing kept), so both settings run every
/// case without a fifth configuration; the one with the most proven accesses (input facts,
/// nothing kept) also clamps those proven through a branch (`spectre_clamp_proven`).
pub(crate) fn configurations() -> [(&'static str, JitOptions); 4] {
    let with = |constant_blinding, entry: Option<Entry>, checked_facts| JitOptions {
        constant_blinding,
        entry,
        checked_facts,
        spectre_masking: true,
        spectre_clamp_proven: false,
    };
    let unmasked = |options: JitOptions| JitOptions {
        spectre_masking: false,
        ..options
    };
    [
        ("x86 (stack facts, checked)", with(false, None, true)),
        (
            "x86 (stack facts, blinded, unmasked)",
            unmasked(with(true, None, false)),
        ),
        (
            "x86 (input facts, blinded, checked)",
            with(true, Some(entry()), true),
        ),
        (
            "x86 (input facts, clamped)",
            JitOptions {
                spectre_clamp_proven: true,
                ..with(false, Some(entry()), false)
            },
        ),
    ]
}

/// The JIT as an engine: compiles each program it is given (compiling is cheap).
pub(crate) fn x86(
    options: JitOptions,
) -> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    let compile = move |program: &Program| {
        compile(program, &options)
            .unwrap_or_else(|e| panic!("compile: {e}\n{}", ebpf_isa::disassemble(program)))
    };
    ebpf_contract::engine(compile, X86Program::run)
}

/// Runs `f` with a differential check of the JIT, in every [`configurations`], against the
/// interpreter.
pub(crate) fn with_differential<T>(f: impl FnOnce(&Differential<'_>) -> T) -> T {
    let interp = interp();
    let [(l0, o0), (l1, o1), (l2, o2), (l3, o3)] = configurations();
    let (e0, e1, e2, e3) = (x86(o0), x86(o1), x86(o2), x86(o3));
    let d = Differential::new(&interp)
        .engine(l0, &e0)
        .engine(l1, &e1)
        .engine(l2, &e2)
        .engine(l3, &e3);
    f(&d)
}

#[test]
fn contract_in_every_configuration() {
    for (label, options) in configurations() {
        ebpf_contract::check_engine(label, &x86(options));
    }
}

/// The 313 vectors with `options`: vectors without memory run with `r1 = r2 = 0`, which the
/// input's entry does not admit (they exercise the fallback compilation).
fn conformance(label: &str, options: JitOptions) {
    ebpf_contract::conformance::check_suite(
        label,
        |v| compile(&v.program, &options).map_err(|e| format!("compile: {e}")),
        X86Program::run,
        Some(&interp()),
    );
}

#[test]
fn conformance_suite_in_every_configuration() {
    for (label, options) in configurations() {
        conformance(label, options);
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
        let jit = compile(
            &program,
            &JitOptions {
                entry: Some(entry.clone()),
                checked_facts,
                ..JitOptions::default()
            },
        )
        .unwrap();
        for end in ebpf_testgen::CLAIMED_ENDS {
            let expected = ebpf_testgen::run_claimed_end(
                |m, a| interp.run(m, a, &Helpers::new(), &limits),
                end,
            );
            let got =
                ebpf_testgen::run_claimed_end(|m, a| jit.run(m, a, &Helpers::new(), &limits), end);
            assert_eq!(
                got, expected,
                "x86: end {end}, checked facts {checked_facts}"
            );
        }
    }
}
