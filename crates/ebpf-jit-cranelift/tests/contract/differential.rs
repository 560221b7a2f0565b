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

#[test]
fn many_return_sites_agree_at_every_budget() {
    if !supported() {
        return;
    }
    // 24 calls (many return sites for one `exit`); callees that read r6 and r3 (kept across
    // the call), use their frame, and call a shared leaf. Every budget stops the run at another
    // instruction, inside or between calls.
    let mut src = String::from("mov %r6, 7\nmov %r3, 100\nmov %r0, %r1\n");
    for i in 0..24 {
        src.push_str(&format!("mov %r1, %r0\ncall local f{i}\nadd %r0, %r3\n"));
    }
    src.push_str("add %r0, %r6\nexit\n");
    for i in 0..24 {
        src.push_str(&format!(
            "f{i}:\nstxdw [%r10-8], %r1\nmov %r6, {i}\ncall local leaf\n\
             ldxdw %r0, [%r10-8]\nadd %r0, %r6\nexit\n"
        ));
    }
    src.push_str("leaf:\nmov %r0, %r6\nmul %r0, 3\nexit\n");
    let program = asm(&src);
    let setup = Setup::input(vec![1; 8]);
    with_differential(|d| {
        let full = d.check(&program, &setup).exit();
        assert!(full.instructions > 200, "{full:?}");
        for budget in 0..=full.instructions + 1 {
            d.check(&program, &setup.clone().budget(Some(budget)));
        }
    });
}

/// What crosses a local call, now that liveness decides what a call saves in its frame and
/// what a return restores and hands on: a caller sets `r3`, `r6` and `r7`; callee `a` reads
/// the caller's `r6` and returns; `b` leaves `r3` alone, so its return site reads the caller's
/// `r3` through it, and calls `a` itself; `c` falls into the next function `d`, which main
/// also calls; a jump from main lands in the middle of `d`. Every budget stops the run at
/// another instruction, in units of three instructions and in one function.
#[test]
fn registers_passed_through_calls_agree_across_units() {
    if !supported() {
        return;
    }
    let program = asm("mov %r6, 7\n\
         mov %r3, 100\n\
         mov %r7, 11\n\
         mov %r0, %r1\n\
         call local a\n\
         add %r0, %r3\n\
         call local b\n\
         add %r0, %r3\n\
         add %r0, %r7\n\
         call local c\n\
         add %r0, %r6\n\
         call local d\n\
         jgt %r0, 1000, mid\n\
         exit\n\
         a:\n\
         mov %r0, %r6\n\
         mul %r0, 3\n\
         exit\n\
         b:\n\
         mov %r6, 9\n\
         mov %r2, %r0\n\
         call local a\n\
         add %r0, %r2\n\
         add %r0, %r3\n\
         exit\n\
         c:\n\
         add %r0, 1\n\
         d:\n\
         add %r0, %r3\n\
         mid:\n\
         add %r0, 5\n\
         exit");
    let setup = Setup::input(vec![1; 8]);
    with_differential(|d| {
        let full = d.check(&program, &setup).exit();
        assert!(full.instructions > 30, "{full:?}");
        for budget in 0..=full.instructions + 2 {
            d.check(&program, &setup.clone().budget(Some(budget)));
        }
    });
}

/// One block with checked loads whose guesses miss one after another as the input shrinks
/// (the first, one in the middle, the last), stores between them to the data region and to
/// the input, and register work on what they loaded. A miss hands the run to the interpreter
/// from the start of its stretch (the block's entry, or just after the latest store), however
/// the JIT groups the tests of a stretch's checks. The trap is the failing access's own (its
/// pc and address), no store after it is visible and none before it is lost or doubled, at
/// every input length and every budget; with `r1` at the read-only data instead, every guess
/// misses and nothing traps until the store into it.
#[test]
fn a_stretch_hands_over_at_its_start_whichever_check_fails() {
    if !supported() {
        return;
    }
    let program = asm("mov %r6, %r1\n\
         lddw %r8, 0x300000000\n\
         ldxb %r2, [%r1+0]\n\
         add %r2, 1\n\
         ldxw %r3, [%r1+4]\n\
         xor %r3, %r2\n\
         stxb [%r8+0], %r2\n\
         ldxdw %r4, [%r1+16]\n\
         add %r3, %r4\n\
         mov %r1, %r3\n\
         ldxb %r5, [%r6+24]\n\
         stxw [%r8+4], %r3\n\
         mov %r0, %r5\n\
         add %r0, %r1\n\
         stxdw [%r6+0], %r0\n\
         exit");
    let input_at = |offset: u64| (ebpf_abi::layout::INPUT << 32) + offset;
    // (pc, address, width) of the load that fails first for an input of `len` bytes.
    let first_miss = |len: usize| match len {
        0 => Some((3, input_at(0), 1)),
        1..8 => Some((5, input_at(4), 4)),
        8..24 => Some((8, input_at(16), 8)),
        24 => Some((11, input_at(24), 1)),
        _ => None,
    };
    with_differential(|d| {
        for len in 0..=32 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let setup = Setup::input(bytes).data(vec![0; 8]);
            let outcome = d.check(&program, &setup);
            match first_miss(len) {
                Some((pc, addr, width)) => {
                    let trap = outcome.trap();
                    assert_eq!(trap.pc, pc, "input of {len} bytes");
                    assert_eq!(
                        trap.kind,
                        TrapKind::OutOfBounds {
                            addr,
                            len: width,
                            write: false
                        }
                    );
                    // The store of `input[0] + 1` (1) to data[0], at pc 7, ran before the
                    // failing load or not at all; the one at pc 12 never.
                    let stored = u8::from(pc > 7);
                    assert_eq!(outcome.data, [stored, 0, 0, 0, 0, 0, 0, 0]);
                }
                None => {
                    outcome.exit();
                }
            }
            for budget in 0..=18 {
                d.check(&program, &setup.clone().budget(Some(budget)));
            }
            let mut elsewhere = Setup::none().rodata(vec![9u8; len]).data(vec![0; 8]);
            elsewhere.args = Some([ebpf_abi::layout::RODATA << 32, len as u64]);
            d.check(&program, &elsewhere);
            for budget in 0..=18 {
                d.check(&program, &elsewhere.clone().budget(Some(budget)));
            }
        }
    });
}

/// Parser chains (load, compare, branch), with sides that only one branch reaches and sides
/// that several share, a store mid-chain: the shapes a translation that carries a failed
/// check's test across a branch (forcing the branch on a miss) must get right. Every input
/// length and budget; and with `r1` at writable data or read-only data of the same bytes
/// instead of the input, where every guess misses without a trap and the interpreter may go
/// the other way at a branch than a forced one would.
#[test]
fn forced_branches_agree_at_every_budget_and_input_length() {
    if !supported() {
        return;
    }
    let program = asm("mov %r6, %r1\n\
         ldxb %r2, [%r1+0]\n\
         jeq %r2, 7, drop\n\
         ldxh %r3, [%r1+2]\n\
         jgt %r3, 0x500, other\n\
         ldxw %r4, [%r6+4]\n\
         jne %r4, 0, cont\n\
         drop:\n\
         mov %r0, 0\n\
         exit\n\
         cont:\n\
         ldxb %r5, [%r6+9]\n\
         stxb [%r6+1], %r5\n\
         ldxb %r5, [%r6+10]\n\
         jeq %r5, 3, drop\n\
         ldxdw %r7, [%r6+12]\n\
         add %r7, %r3\n\
         jset %r7, 1, odd\n\
         mov %r0, %r7\n\
         exit\n\
         odd:\n\
         ldxb %r0, [%r6+20]\n\
         add %r0, %r4\n\
         exit\n\
         other:\n\
         ldxb %r0, [%r6+22]\n\
         exit");
    with_differential(|d| {
        for len in 0..=24 {
            for seed in [1u8, 3, 7] {
                let bytes: Vec<u8> = (0..len as u8)
                    .map(|b| b.wrapping_mul(seed).wrapping_add(seed))
                    .collect();
                let setups = [
                    Setup::input(bytes.clone()),
                    Setup {
                        args: Some([ebpf_abi::layout::DATA << 32, len as u64]),
                        ..Setup::none().data(bytes.clone())
                    },
                    Setup {
                        args: Some([ebpf_abi::layout::RODATA << 32, len as u64]),
                        ..Setup::none().rodata(bytes.clone())
                    },
                ];
                for setup in setups {
                    let full = d.check(&program, &setup);
                    let most = full
                        .result
                        .as_ref()
                        .map_or(24, |exit| exit.instructions + 1);
                    for budget in 0..=most {
                        d.check(&program, &setup.clone().budget(Some(budget)));
                    }
                }
            }
        }
    });
}

/// Facts hold of the interpreter's values, which code running on after a guessed load missed
/// does not have: a load the facts prove (by the guard) and a division whose zero test they
/// removed, after such a load. The checked-facts variants fail loudly if one ever ran on
/// values the interpreter would not have.
#[test]
fn refused_loads_never_reach_facts() {
    if !supported() {
        return;
    }
    let programs = [
        "ldxb %r6, [%r1+12]\nmov %r3, %r1\nadd %r3, 8\nmov %r9, %r1\nadd %r9, %r2\n\
         jgt %r3, %r9, drop\nldxdw %r0, [%r3-8]\nadd %r0, %r6\nexit\n\
         drop:\nmov %r0, 0\nexit",
        "mov %r3, %r1\nadd %r3, 8\nmov %r9, %r1\nadd %r9, %r2\n\
         jgt %r3, %r9, drop\nldxb %r6, [%r1+12]\nldxdw %r0, [%r3-8]\nadd %r0, %r6\nexit\n\
         drop:\nmov %r0, 0\nexit",
        "ldxb %r7, [%r1+0]\njeq %r7, 0, drop\nldxb %r6, [%r1+12]\nmov %r0, 1000\n\
         add %r0, %r6\ndiv %r0, %r7\nmod %r6, %r7\nadd %r0, %r6\nexit\n\
         drop:\nmov %r0, 0\nexit",
    ];
    with_differential(|d| {
        for text in programs {
            let program = asm(text);
            for len in 0..=16 {
                let bytes: Vec<u8> = (0..len as u8).map(|b| b + 1).collect();
                let setup = Setup::input(bytes);
                d.check(&program, &setup);
                for budget in 0..=12 {
                    d.check(&program, &setup.clone().budget(Some(budget)));
                }
            }
        }
    });
}

/// Loops the facts count, which the JIT charges once at their entry when the budget has them
/// all (and what the code after them needs up to its next checkpoint): under every budget
/// from none to a few past the whole run the JIT traps where the interpreter does, with the
/// same count, in every configuration (the checked ones compare each copy's count with its
/// fact; units of three instructions cut the loops, which then keep one copy). One exits at
/// the bottom, one through the fall-through of a forward jump into code with more after it,
/// one through the taken side at the top, one with stack accesses proven in bounds, one
/// followed by stores and loads that the loop's head covers (a budget that has the loop but
/// not them must not let the copy run).
#[test]
fn counted_loops_charge_exactly_under_every_budget() {
    if !supported() {
        return;
    }
    let programs = [
        "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njlt %r1, 20, loop\nexit",
        "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njne %r1, 9, cont\n\
         add %r0, 1000\nmul %r0, 3\njeq %r0, 7, out\nadd %r0, 1\nout:\nexit\ncont:\nja loop",
        "mov %r0, 0\nmov %r1, 12\nloop:\njeq %r1, 0, out\nsub %r1, 1\nadd %r0, 3\nja loop\n\
         out:\nexit",
        "mov %r0, 0\nmov %r1, 0\nloop:\nstxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\n\
         add %r0, %r2\nadd %r1, 1\njlt %r1, 15, loop\nexit",
        "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\njlt %r1, 10, loop\n\
         stxdw [%r10-8], %r0\nadd %r0, 1\nldxdw %r2, [%r10-8]\nadd %r0, %r2\nexit",
    ];
    with_differential(|d| {
        for text in programs {
            let program = asm(text);
            let facts = ebpf_cfg::facts::Facts::analyse(&program, &crate::entry());
            assert_eq!(facts.loops().len(), 1, "not counted:\n{text}");
            let setup = Setup::input(vec![0u8; 16]);
            let total = d.check(&program, &setup).exit().instructions;
            for budget in (0..=total + 2).map(Some).chain([None]) {
                d.check(&program, &setup.clone().budget(budget));
                d.check(&program, &Setup::none().budget(budget));
            }
        }
    });
}

#[test]
fn suspensions_within_a_block_agree_at_every_budget_and_input_length() {
    if !supported() {
        return;
    }
    // One straight block: register work, a hinted load, an atomic add to the input (an effect),
    // more register work and hinted loads that miss on a short input. A miss hands the run to
    // the interpreter from the block's entry or from just after the atomic add: from before
    // it, the add would run twice (the input and r0 would show it). Every budget and input
    // length stops the run at another instruction.
    let program = asm("mov %r6, %r1\n\
         ldxdw %r2, [%r1+0]\n\
         add %r2, 5\n\
         mov %r3, %r2\n\
         lsh %r3, 1\n\
         mov %r4, 1\n\
         lock add [%r1+0], %r4\n\
         add %r3, %r2\n\
         ldxdw %r5, [%r1+8]\n\
         add %r3, %r5\n\
         stxdw [%r10-8], %r3\n\
         mov %r2, %r3\n\
         ldxdw %r5, [%r6+16]\n\
         add %r3, %r5\n\
         ldxdw %r0, [%r1+0]\n\
         add %r0, %r3\n\
         exit");
    with_differential(|d| {
        for len in [0, 4, 8, 12, 16, 20, 24] {
            let setup = Setup::input(vec![3; len]);
            d.check(&program, &setup);
            // (17 instructions: every budget up to one more than a full run.)
            for budget in 0..=18 {
                d.check(&program, &setup.clone().budget(Some(budget)));
            }
        }
    });
}
