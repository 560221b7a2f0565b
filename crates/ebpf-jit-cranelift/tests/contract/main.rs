//! The Cranelift JIT against the contract and the interpreter, below the facade.
//!
//! One test binary built from modules:
//!
//! - this file — every case of `tests/contract/*.txt` (run by `ebpf-contract` with the regions
//!   and entry registers the contract prescribes) and the 313 bpf_conformance programs, which
//!   must also match the interpreter's count and memory;
//!
//! Everything runs on two variants of the JIT: the program compiled as one function, and cut
//! into units of about three instructions (every transfer between them through the context
//! and the dispatcher, as in large programs).
//! - `differential` — the generated families of `ebpf_contract::differential` (matrices, budget
//!   sweeps, recursion, large programs, every contract case with its final stack) compared with
//!   the interpreter, and what only this JIT shows (helper panics, threads, the call-depth
//!   clamp);
//! - `props` — property tests: generated programs agree with the interpreter.
//!
//! Every test skips, saying so, on a host Cranelift does not support.

mod differential;
mod props;

use std::cell::RefCell;
use std::rc::Rc;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap};
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

/// Every variant the tests run, with its label: the program in one function, and in many —
/// the second with Spectre masking on (off by default), so that both settings run every case
/// without a third variant.
pub(crate) fn variants() -> [(&'static str, JitOptions); 2] {
    [
        ("cranelift", options()),
        (
            "cranelift (units of 3, masked)",
            split_options().with_spectre_masking(true),
        ),
    ]
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

/// Runs `f` with a differential check of the JIT, in both [`variants`], against the
/// interpreter.
pub(crate) fn with_differential<T>(f: impl FnOnce(&Differential<'_>) -> T) -> T {
    let [(whole_label, whole), (split_label, split)] = variants();
    let (interp, whole, split) = (interp(), cranelift_with(whole), cranelift_with(split));
    f(&Differential::new(&interp)
        .engine(whole_label, &whole)
        .engine(split_label, &split)
        .stride(stride()))
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
