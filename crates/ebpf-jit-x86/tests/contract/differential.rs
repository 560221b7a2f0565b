//! The generated families of `ebpf_contract::differential` on the JIT (with and without
//! constant blinding) against the interpreter, and what only this JIT's own API shows: a
//! helper's panic unwinds through the generated code, and one compiled program runs on many
//! threads with nothing shared between runs.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
use ebpf_contract::differential::{asm, check_families};
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
    // A loop with stores to the input and the stack, a local call and a helper.
    let program = asm("
        mov %r9, %r1
        mov %r6, 0
        mov %r7, 3
    loop:
        stxdw [%r10-8], %r7
        mov %r1, %r9
        call local f
        ldxdw %r2, [%r10-8]
        add %r6, %r2
        mov %r1, %r6
        call 5
        add %r6, %r0
        sub %r7, 1
        jne %r7, 0, loop
        mov %r0, %r6
        exit
    f:
        stdw [%r10-16], 5
        ldxdw %r0, [%r10-16]
        lock add [%r1+0], %r0
        exit
    ");
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let interp = ebpf_interp::Interpreter::new(&program);
    let run = |engine: &dyn Fn(MemoryMap<'_>) -> Result<ebpf_abi::Exit, ebpf_abi::Trap>| {
        let mut mem: Vec<u8> = (0u8..16).collect();
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        (engine(map).unwrap(), mem)
    };
    let mut helpers = Helpers::new();
    helpers.insert(5, ebpf_abi::conformance_helper);
    let args = [layout::vm_addr(layout::INPUT, 0), 16];
    let want = run(&|map| interp.run(map, args, &helpers, &Limits::default()));
    let (jit, helpers, want) = (&jit, &helpers, &want);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(move || {
                for _ in 0..50 {
                    let got = run(&|map| jit.run(map, args, helpers, &Limits::default()));
                    assert_eq!(&got, want);
                }
            });
        }
    });
}
