//! A chain of tail calls is one run for the budget: every engine stops a chain that runs out
//! with the interpreter's trap (kind and pc), in whichever program of the chain it runs out,
//! and counts the same instructions — the chain's total — when it does not; at every budget
//! around the chain's length.

use std::sync::Arc;

use ebpf_vm::isa::{CallKind, Insn};
use ebpf_vm::maps::{Map, MapSpec, MapType, Maps, UpdateFlags};
use ebpf_vm::{Context, Engine, KernelHelpers, Outcome, Packet, ProgramKind, Trap, TrapKind, Vm};

use crate::corpus::object;
use crate::helpers::program;
use crate::packets::{ipv4, udp};

/// What the test compares of a run: `r0`, the instructions and the tail calls, or the trap.
type Seen = Result<(u64, u64, u32), Trap>;

fn seen(out: Result<Outcome, Trap>) -> Seen {
    out.map(|o| (o.r0, o.instructions, o.tail_calls))
}

/// The links a chain makes before its last program exits.
const LINKS: u64 = 3;

/// `counts[0] += 1` through a lookup, the new count left in `r1` (0, and a jump to `done`,
/// if the lookup fails): 10 instructions, 11 slots.
fn count_run(done: &str) -> String {
    format!(
        "stw [%r10-4], 0
        lddw %r1, 0xfeed000000000000
        mov %r2, %r10
        add %r2, -4
        call 1
        mov %r1, 0
        jeq %r0, 0, {done}
        ldxdw %r1, [%r0]
        add %r1, 1
        stxdw [%r0], %r1"
    )
}

/// Counts its runs in `counts[0]` and tail-calls itself (`progs[0]`) until the count reaches
/// `LINKS`; the last one returns the count. By hand: a link that tail-calls runs 16
/// instructions (the tail call, pc 17, is the 16th), the last link 14 (12, then `mov`,
/// `exit`): 16 + 16 + 14 = 46. The instructions after the tail call never run, but share its
/// straight-line stretch, which engines charge ahead.
fn chain() -> String {
    format!(
        "mov %r6, %r1
        {count}
        jge %r1, 3, out
        mov %r1, %r6
        lddw %r2, 0xfeed000000000001
        mov %r3, 0
        call 12
        mov %r0, 7
        add %r0, 1
        exit
        out:
        mov %r0, %r1
        exit",
        count = count_run("out")
    )
}
const CHAIN_TOTAL: u64 = 46;
const CHAIN_TAIL_CALL_PC: usize = 17;
const CHAIN_LINK: u64 = 16;

/// A tail call from a sub-program, inside a loop, with instructions after it: on the loop's
/// second round, the first run tail-calls itself; the second run's count stops it (4).
fn chain_in_a_loop() -> String {
    format!(
        "mov %r6, %r1
        mov %r7, 0
        loop:
        add %r7, 1
        mov %r1, %r6
        mov %r2, %r7
        call local f
        jlt %r7, 3, loop
        mov %r0, %r7
        exit
        f:
        mov %r8, %r1
        mov %r9, %r2
        {count}
        jge %r1, 4, ret
        jne %r9, 2, ret
        mov %r1, %r8
        lddw %r2, 0xfeed000000000001
        mov %r3, 0
        call 12
        mov %r1, 5
        add %r1, 1
        ret:
        mov %r0, %r1
        exit",
        count = count_run("ret")
    )
}

/// `text`'s chain on `engine` with `budget`, and its counter.
fn chain_of(text: &str, engine: Engine, budget: Option<u64>) -> (Vm, Arc<Map>) {
    let mut maps = Maps::new(1);
    let counts = maps
        .create("counts", MapSpec::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let progs = maps
        .create("progs", MapSpec::new(MapType::ProgArray, 4, 4, 1))
        .unwrap();
    progs
        .update(&0u32.to_le_bytes(), &0u32.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    let mut builder = Vm::builder()
        .engine(engine)
        .kernel_helpers(KernelHelpers::new());
    if let Some(b) = budget {
        builder = builder.budget(b);
    }
    let vm = builder
        .load_with_maps(program(text), ProgramKind::Xdp, Arc::new(maps))
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    (vm, counts)
}

fn run_chain(engine: Engine, budget: Option<u64>) -> Seen {
    run_text(&chain(), engine, budget)
}

fn run_text(text: &str, engine: Engine, budget: Option<u64>) -> Seen {
    let (vm, counts) = chain_of(text, engine, budget);
    counts
        .update(&0u32.to_le_bytes(), &0u64.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    let mut packet = Packet::new(&[0u8; 64]).unwrap();
    seen(vm.run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp)))
}

fn exhausted(pc: usize, budget: u64) -> Seen {
    Err(Trap {
        pc,
        kind: TrapKind::BudgetExhausted { budget },
    })
}

/// Every budget from 0 to the chain's length and beyond: each engine as the interpreter, and
/// the interpreter as counted by hand.
#[test]
fn a_tail_call_chain_runs_under_one_budget_on_every_engine() {
    let done = Ok((LINKS, CHAIN_TOTAL, 2));
    assert_eq!(run_chain(Engine::Interpreter, None), done, "no budget");
    for budget in 0..=CHAIN_TOTAL + 1 {
        let reference = run_chain(Engine::Interpreter, Some(budget));
        match &reference {
            Ok(_) => assert!(budget >= CHAIN_TOTAL, "budget {budget}: {reference:?}"),
            Err(trap) => assert_eq!(
                (budget < CHAIN_TOTAL, &trap.kind),
                (true, &TrapKind::BudgetExhausted { budget }),
                "budget {budget}"
            ),
        }
        for &engine in Engine::ALL {
            assert_eq!(
                run_chain(engine, Some(budget)),
                reference,
                "{engine}, budget {budget}"
            );
        }
    }
    // The boundaries by hand: at each tail call, and in the next program's first instruction.
    for link in 1..LINKS {
        let at_call = link * CHAIN_LINK - 1;
        assert_eq!(
            run_chain(Engine::Interpreter, Some(at_call)),
            exhausted(CHAIN_TAIL_CALL_PC, at_call)
        );
        assert_eq!(
            run_chain(Engine::Interpreter, Some(at_call + 1)),
            exhausted(0, at_call + 1)
        );
    }
    assert_eq!(
        run_chain(Engine::Interpreter, Some(CHAIN_TOTAL - 1)),
        exhausted(CHAIN_TAIL_CALL_PC + 5, CHAIN_TOTAL - 1),
        "the last link's exit"
    );
    assert_eq!(run_chain(Engine::Interpreter, Some(CHAIN_TOTAL)), done);
    for &engine in Engine::ALL {
        assert_eq!(run_chain(engine, None), done, "{engine}, no budget");
    }
}

/// The tail call from a sub-program in a loop: every budget up to past the chain's length,
/// each engine as the interpreter (the stretches the engines charge ahead differ there: the
/// interpreter's straight-line runs, the x86 JIT's chains, Cranelift's checkpoints).
#[test]
fn a_tail_call_from_a_loop_in_a_sub_program_counts_the_same_everywhere() {
    let Ok((r0, total, 1)) = run_text(&chain_in_a_loop(), Engine::Interpreter, Some(10_000)) else {
        panic!("the chain does not run");
    };
    assert_eq!(r0, 3, "three rounds of the second run's loop");
    for budget in 0..=total + 1 {
        let reference = run_text(&chain_in_a_loop(), Engine::Interpreter, Some(budget));
        assert_eq!(reference.is_ok(), budget >= total, "budget {budget}");
        for &engine in Engine::ALL {
            assert_eq!(
                run_text(&chain_in_a_loop(), engine, Some(budget)),
                reference,
                "{engine}, budget {budget}"
            );
        }
    }
}

/// The corpus' dispatcher (`tests/bpf/xdp_tailcall.c`) tail-calling its UDP handler: every
/// budget around the chain's length, each engine as the interpreter; the chain's count is
/// the dispatcher's up to its tail call plus the handler's alone.
#[test]
fn the_dispatcher_and_its_handler_share_one_budget() {
    let frame = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(1, 53, &[]));
    let ctx = Context::default_for(ProgramKind::Xdp);
    let run = |engine: Engine, budget: u64, name: &str| {
        let object = crate::corpus::object_with_budget("xdp_tailcall", engine, budget);
        let mut packet = Packet::new(&frame).unwrap();
        seen(object.program(name).unwrap().run_packet(&mut packet, &ctx))
    };
    let Ok((r0, total, 1)) = run(Engine::Interpreter, 1_000_000, "xdp_dispatch") else {
        panic!("the chain does not run");
    };
    assert_eq!(r0, 2, "XDP_PASS");
    let Ok((_, handler, 0)) = run(Engine::Interpreter, 1_000_000, "handle_udp") else {
        panic!("the handler does not run");
    };
    let dispatcher = total - handler;
    // The dispatcher's tail call (its only `call 12`) is its `dispatcher`-th instruction.
    let d = object("xdp_tailcall", Engine::Interpreter);
    let tail_call_pc = d
        .program("xdp_dispatch")
        .unwrap()
        .program()
        .iter()
        .find(|(_, insn)| {
            matches!(
                insn,
                Insn::Call {
                    kind: CallKind::Helper,
                    imm: 12
                }
            )
        })
        .map(|(pc, _)| pc)
        .unwrap();
    assert_eq!(
        run(Engine::Interpreter, dispatcher - 1, "xdp_dispatch"),
        exhausted(tail_call_pc, dispatcher - 1)
    );
    assert_eq!(
        run(Engine::Interpreter, dispatcher, "xdp_dispatch"),
        exhausted(0, dispatcher)
    );
    for budget in
        (0..=total + 1).filter(|b| b.abs_diff(dispatcher) <= 3 || b + 8 >= total || b % 7 == 0)
    {
        let reference = run(Engine::Interpreter, budget, "xdp_dispatch");
        for &engine in Engine::ALL {
            assert_eq!(
                run(engine, budget, "xdp_dispatch"),
                reference,
                "{engine}, budget {budget}"
            );
        }
    }
}

/// The corpus' TCP option parser (`tests/bpf/xdp_tcp_options.c`), whose `bpf_loop` runs as an
/// inlined function calling the callback once per option byte: every budget around the run's
/// length (and every few in between), each engine as the interpreter — the trap's kind and
/// pc, or the same count.
#[test]
fn the_inlined_bpf_loop_counts_the_same_everywhere() {
    use crate::packets::tcp;
    // MSS, NOP, NOP, SACK-permitted, NOP, window scale, END and padding.
    let options = [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7, 0, 0, 0, 0];
    let frame = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, &tcp(1, 2, 0x02, &options));
    let ctx = Context::default_for(ProgramKind::Xdp);
    let run = |engine: Engine, budget: u64| {
        let object = crate::corpus::object_with_budget("xdp_tcp_options", engine, budget);
        let mut packet = Packet::new(&frame).unwrap();
        seen(
            object
                .program("xdp_tcp_options")
                .unwrap()
                .run_packet(&mut packet, &ctx),
        )
    };
    let Ok((r0, total, 0)) = run(Engine::Interpreter, 1_000_000) else {
        panic!("the parser does not run");
    };
    assert_eq!(r0, 2, "XDP_PASS");
    assert_eq!(
        run(Engine::Interpreter, total),
        Ok((r0, total, 0)),
        "the exact budget"
    );
    assert!(matches!(
        run(Engine::Interpreter, total - 1),
        Err(Trap {
            kind: TrapKind::BudgetExhausted { .. },
            ..
        })
    ));
    for budget in (0..=total + 1).filter(|b| b + 24 >= total || b % 5 == 0) {
        let reference = run(Engine::Interpreter, budget);
        for &engine in Engine::ALL {
            assert_eq!(run(engine, budget), reference, "{engine}, budget {budget}");
        }
    }
}
