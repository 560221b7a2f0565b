//! The generated families of `ebpf_contract::differential` on the JIT (with and without
//! constant blinding) against the interpreter, and what only this JIT's own API shows: a
//! helper's panic unwinds through the generated code, and one compiled program runs on many
//! threads with nothing shared between runs.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ebpf_abi::{Helpers, Limits, MemoryMap};
use ebpf_contract::differential::{BUSY, Setup, asm, check_families, shared_by_threads};
use ebpf_jit_x86::{JitOptions, compile};

use crate::with_differential;

#[test]
fn every_family_agrees_with_the_interpreter() {
    with_differential(check_families);
}

#[test]
fn a_helper_panic_resumes_after_the_generated_code_returned() {
    let program = asm("call 7\nexit");
    let mut helpers = Helpers::new();
    helpers.insert(
        7,
        |_: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| -> Result<u64, _> {
            panic!("helper panicked")
        },
    );
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        jit.run(MemoryMap::new(), [0, 0], &helpers, &Limits::default())
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"helper panicked"));
    // Programs still run afterwards.
    let ok = asm("mov %r0, 3\nexit");
    let jit = compile(&ok, &JitOptions::default()).unwrap();
    let exit = jit
        .run(MemoryMap::new(), [0, 0], &helpers, &Limits::default())
        .unwrap();
    assert_eq!(exit.r0, 3);
}

#[test]
fn runs_share_nothing_and_threads_may_run_one_program() {
    let program = asm(BUSY);
    let jit = compile(&program, &JitOptions::default()).unwrap();
    shared_by_threads(
        &program,
        &Setup::input((0u8..16).collect::<Vec<_>>()),
        &crate::interp(),
        &|_, map, args, helpers, limits| jit.run(map, args, helpers, limits),
    );
}
