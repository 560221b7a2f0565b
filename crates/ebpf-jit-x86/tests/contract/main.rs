//! The x86-64 JIT against the contract and the interpreter, below the facade, with and without
//! constant blinding.
//!
//! One test binary built from modules:
//!
//! - this file — every case of `tests/contract/*.txt` (run by `ebpf-contract` with the regions
//!   and entry registers the contract prescribes) and the 313 bpf_conformance programs, which
//!   must also match the interpreter's count and memory;
//! - `differential` — the generated families of `ebpf_contract::differential` (matrices, budget
//!   sweeps, recursion, large programs, every contract case with its final stack) compared with
//!   the interpreter, and what only this JIT's own API shows (helper panics, threads);
//! - `props` — property tests: generated programs agree with the interpreter.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

mod differential;
mod props;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap};
use ebpf_contract::differential::Differential;
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_x86::{JitOptions, X86Program, compile};

/// The interpreter, the oracle, as an engine.
pub(crate) fn interp()
-> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    ebpf_contract::engine(Interpreter::new, Interpreter::run)
}

/// The JIT as an engine: compiles each program it is given (compiling is cheap).
pub(crate) fn x86(
    constant_blinding: bool,
) -> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    let options = JitOptions { constant_blinding };
    let compile = move |program: &Program| {
        compile(program, &options)
            .unwrap_or_else(|e| panic!("compile: {e}\n{}", ebpf_isa::disassemble(program)))
    };
    ebpf_contract::engine(compile, X86Program::run)
}

/// Runs `f` with a differential check of the JIT, with and without blinding, against the
/// interpreter.
pub(crate) fn with_differential<T>(f: impl FnOnce(&Differential<'_>) -> T) -> T {
    let (interp, plain, blinded) = (interp(), x86(false), x86(true));
    let d = Differential::new(&interp)
        .engine("x86", &plain)
        .engine("x86 (blinded)", &blinded);
    f(&d)
}

#[test]
fn contract_without_blinding() {
    ebpf_contract::check_engine("x86", &x86(false));
}

#[test]
fn contract_with_blinding() {
    ebpf_contract::check_engine("x86 (blinded)", &x86(true));
}

fn conformance(constant_blinding: bool) {
    let options = JitOptions { constant_blinding };
    ebpf_contract::conformance::check_suite(
        if constant_blinding {
            "x86 (blinded)"
        } else {
            "x86"
        },
        |v| compile(&v.program, &options).map_err(|e| format!("compile: {e}")),
        X86Program::run,
        Some(&interp()),
    );
}

#[test]
fn conformance_suite_without_blinding() {
    conformance(false);
}

#[test]
fn conformance_suite_with_blinding() {
    conformance(true);
}
