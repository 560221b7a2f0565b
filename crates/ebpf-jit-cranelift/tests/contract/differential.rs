//! The generated families of `ebpf_contract::differential` on the JIT against the interpreter,
//! and what only this JIT shows: a helper's panic reaches the caller, one compiled program runs
//! on many threads, and a call depth above the contract's maximum is clamped like the
//! interpreter's.

use ebpf_abi::{Helpers, Limits, MemoryMap, TrapKind};
use ebpf_contract::differential::{LOOPS_AND_CALLS, Setup, asm, check_families, shared_by_threads};

use crate::{jit, supported, with_differential};

#[test]
fn every_family_agrees_with_the_interpreter() {
    if supported() {
        with_differential(check_families);
    }
}

#[test]
fn a_helper_panic_propagates_like_in_the_interpreter() {
    if !supported() {
        return;
    }
    let mut h = Helpers::new();
    h.insert(
        6,
        |_: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| -> Result<u64, _> {
            panic!("helper 6 panics")
        },
    );
    let jit = jit(&asm("call 6\nexit"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jit.run(MemoryMap::new(), [0, 0], &h, &Limits::default())
    }));
    let payload = result.expect_err("the helper's panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"helper 6 panics"));
    // The program is still usable afterwards.
    let ok = jit.run(
        MemoryMap::new(),
        [0, 0],
        &Helpers::new(),
        &Limits::default(),
    );
    assert_eq!(ok.unwrap_err().kind, TrapKind::UnknownHelper { id: 6 });
}

#[test]
fn compiled_programs_are_send_sync_and_run_concurrently() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<ebpf_jit_cranelift::CraneliftProgram>();
    if !supported() {
        return;
    }
    let program = asm(LOOPS_AND_CALLS);
    let compiled = jit(&program);
    shared_by_threads(
        &program,
        &Setup::input(vec![3; 40]),
        &crate::interp(),
        &|_, map, args, helpers, limits| compiled.run(map, args, helpers, limits),
    );
}

#[test]
fn call_depth_above_the_contract_maximum_is_clamped_like_the_interpreter() {
    if !supported() {
        return;
    }
    // Endless recursion: the depth limit (max_call_depth clamped to MAX_CALL_DEPTH) or the
    // budget ends it, at the same pc with the same kind, and the deepest frames are in bounds.
    let p = asm("f:\nstdw [%r10-8], 1\ncall local f\nexit");
    for max_call_depth in [
        ebpf_abi::MAX_CALL_DEPTH,
        ebpf_abi::MAX_CALL_DEPTH + 1,
        usize::MAX,
    ] {
        let setup = Setup::none().budget(Some(1 << 20)).depth(max_call_depth);
        let trap = with_differential(|d| d.check(&p, &setup)).trap();
        assert_eq!(
            trap.kind,
            TrapKind::CallDepthExceeded {
                max_depth: ebpf_abi::MAX_CALL_DEPTH
            }
        );
    }
}
