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

/// Loops the facts count, which the JIT charges once at their entry when the budget has them
/// all: under every budget from none to a few past the whole run the JIT traps where the
/// interpreter does, with the same count, in every configuration (the checked ones compare
/// each copy's count with its fact). One exits at the bottom, one through the fall-through
/// of a forward jump into the middle of a chain, one through the taken side at the top, one
/// with stack accesses proven in bounds.
#[test]
fn counted_loops_charge_exactly_under_every_budget() {
    let programs = [
        "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njlt %r1, 20, loop\nexit",
        "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njne %r1, 9, cont\n\
         add %r0, 1000\nmul %r0, 3\njeq %r0, 7, out\nadd %r0, 1\nout:\nexit\ncont:\nja loop",
        "mov %r0, 0\nmov %r1, 12\nloop:\njeq %r1, 0, out\nsub %r1, 1\nadd %r0, 3\nja loop\n\
         out:\nexit",
        "mov %r0, 0\nmov %r1, 0\nloop:\nstxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\n\
         add %r0, %r2\nadd %r1, 1\njlt %r1, 15, loop\nexit",
    ];
    with_differential(|d| {
        for text in programs {
            let program = asm(text);
            let facts = ebpf_cfg::facts::Facts::analyse(&program, &crate::entry());
            assert_eq!(facts.loops().len(), 1, "not counted:\n{text}");
            let total = d.check(&program, &Setup::none()).exit().instructions;
            for budget in (0..=total + 2).map(Some).chain([None]) {
                d.check(&program, &Setup::input(vec![0u8; 16]).budget(budget));
                d.check(&program, &Setup::none().budget(budget));
            }
        }
    });
}

/// A side exit out of a chain settles its refund with the charge of the chain it enters in
/// one step: a net refund, nothing at all, or a net charge whose shortfall goes to the entered
/// chain's slow path. A loop takes the exit on every other iteration into a chain of one,
/// two and three instructions (after a refund of two): under every budget from none to a few
/// past the whole run, the JIT traps where the interpreter does, with the same count.
#[test]
fn settled_side_exits_charge_exactly_under_every_budget() {
    with_differential(|d| {
        for entered in 1..=3 {
            let body = "add %r0, 3\n".repeat(entered);
            let program = asm(&format!(
                "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r1, 1\nmov %r2, %r1\nand %r2, 1\n\
                 jeq %r2, 0, even\nadd %r0, 1\nja next\neven:\n{body}next:\njlt %r1, 12, loop\n\
                 exit"
            ));
            let total = d.check(&program, &Setup::none()).exit().instructions;
            for budget in (0..=total + 2).map(Some).chain([None]) {
                d.check(&program, &Setup::none().budget(budget));
            }
        }
    });
}
