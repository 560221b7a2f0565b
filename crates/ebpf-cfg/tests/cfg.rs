//! The control-flow graph on hand-written programs whose shape is known, on the conformance
//! suite, and on arbitrary programs (it must never panic); and the facts against executions
//! (`facts/`).

mod facts;

use ebpf_cfg::{BlockId, Cfg, CfgErrorKind, EdgeKind, FuncId, Terminator};
use proptest::prelude::*;

fn cfg(text: &str) -> Cfg {
    Cfg::build(&ebpf_isa::assemble(text).unwrap())
}

fn b(i: u32) -> BlockId {
    BlockId(i)
}

#[test]
fn straight_line_is_one_block() {
    let g = cfg("mov %r0, 1\nlddw %r1, 0x100000000\nadd %r0, %r1\nexit");
    assert_eq!(g.blocks().len(), 1);
    assert_eq!((g.blocks()[0].start, g.blocks()[0].end), (0, 5));
    assert_eq!(g.blocks()[0].terminator, Terminator::Exit);
    assert_eq!(
        g.block_at(2),
        Some(b(0)),
        "the lddw tail belongs to its block"
    );
    assert!(!g.has_loops());
    assert_eq!(
        g.longest_path().unwrap().instructions,
        4,
        "lddw counts once"
    );
}

#[test]
fn diamond_has_dominators_and_the_longer_arm_bounds_it() {
    let g = cfg("
        jeq %r1, 0, else
        mov %r0, 1
        add %r0, 1
        ja join
        else:
        mov %r0, 2
        join:
        exit");
    // Blocks: [0,1] jeq | [1..4) then | [4] else | [5] join
    assert_eq!(g.blocks().len(), 4);
    assert_eq!(
        g.blocks()[0].terminator,
        Terminator::Branch {
            taken: Some(b(2)),
            fallthrough: Some(b(1))
        }
    );
    let succ: Vec<_> = g.blocks()[0].successors().collect();
    assert_eq!(
        succ,
        vec![(b(2), EdgeKind::Taken), (b(1), EdgeKind::FallThrough)]
    );
    assert_eq!(g.blocks()[1].terminator, Terminator::Jump(Some(b(3))));
    assert_eq!(
        g.blocks()[2].terminator,
        Terminator::FallThrough(Some(b(3)))
    );
    let mut preds = g.blocks()[3].preds.clone();
    preds.sort();
    assert_eq!(preds, vec![b(1), b(2)]);
    assert_eq!(g.idom(b(3)), Some(b(0)));
    assert_eq!(g.idom(b(1)), Some(b(0)));
    assert!(g.dominates(b(0), b(3)) && !g.dominates(b(1), b(3)));
    assert_eq!(g.functions()[0].rpo.first(), Some(&b(0)));
    assert!(g.back_edges().is_empty());
    assert_eq!(
        g.longest_path().unwrap().instructions,
        5,
        "jeq, mov, add, ja, exit"
    );
}

#[test]
fn loops_are_found_with_their_bodies() {
    let g = cfg("
        mov %r0, 0
        outer:
        mov %r1, 0
        inner:
        add %r1, 1
        jlt %r1, 3, inner
        add %r0, 1
        jlt %r0, 3, outer
        exit");
    // Blocks: 0 [mov] | 1 outer [mov] | 2 inner [add, jlt] | 3 [add, jlt] | 4 [exit]
    assert_eq!(g.blocks().len(), 5);
    let mut back = g.back_edges().to_vec();
    back.sort();
    assert_eq!(back, vec![(b(2), b(2)), (b(3), b(1))]);
    assert!(g.has_loops());
    let inner = g.loops().iter().find(|l| l.header == b(2)).unwrap();
    assert_eq!(inner.blocks, vec![b(2)]);
    let outer = g.loops().iter().find(|l| l.header == b(1)).unwrap();
    assert_eq!(outer.blocks, vec![b(1), b(2), b(3)]);
    assert_eq!(g.longest_path(), None);
}

#[test]
fn irreducible_cycles_count_as_loops() {
    // Two entries into the cycle {1, 2}: neither header dominates the other.
    let g = cfg("
        jeq %r1, 0, two
        one:
        add %r0, 1
        two:
        add %r0, 2
        jlt %r0, 100, one
        exit");
    assert!(g.has_loops());
    assert!(
        g.back_edges().is_empty(),
        "no edge's target dominates its source"
    );
}

#[test]
fn functions_call_graph_and_longest_path_through_calls() {
    let g = cfg("
        call local f
        call local f
        exit
        f:
        mov %r0, 1
        call local g
        exit
        g:
        mov %r0, 2
        exit");
    assert_eq!(g.functions().len(), 3);
    assert_eq!(g.functions()[1].entry, 3);
    assert_eq!(g.functions()[1].end, 6);
    assert_eq!(g.function_at(6), Some(FuncId(2)));
    assert_eq!(
        g.functions()[0].call_sites,
        vec![(0, FuncId(1)), (1, FuncId(1))]
    );
    assert!(g.recursion().is_none());
    // main: 3 + 2 * f; f: 3 + g; g: 2  => 3 + 2 * 5 = 13
    assert_eq!(g.longest_path().unwrap().instructions, 13);
    assert!(
        g.blocks()
            .iter()
            .all(|blk| g.is_reachable(BlockId(g.block_at(blk.start).unwrap().0)))
    );
}

#[test]
fn recursion_is_detected() {
    let g = cfg("call local f\nexit\nf:\ncall local g\nexit\ng:\ncall local f\nexit");
    assert_eq!(g.recursion(), Some(&[FuncId(1), FuncId(2)][..]));
    assert_eq!(g.longest_path(), None);
}

#[test]
fn unreachable_blocks_and_functions() {
    let g = cfg("ja +1\nmov %r0, 1\nexit\nf:\nexit");
    // `f` is never called, so it is not a function: it is unreachable code of main.
    assert_eq!(g.functions().len(), 1);
    let dead = g.block_at(1).unwrap();
    assert!(!g.is_reachable(dead));
    assert!(g.is_reachable(g.block_at(2).unwrap()));
    assert!(!g.is_reachable(g.block_at(3).unwrap()));
    let g = cfg("exit\ncall local f\nexit\nf:\nexit");
    assert_eq!(g.functions().len(), 2);
    assert!(
        !g.function_reachable(FuncId(1)),
        "called only from dead code"
    );
}

#[test]
fn structural_errors_are_recorded_with_pcs() {
    let errs = |text: &str| -> Vec<(usize, CfgErrorKind)> {
        cfg(text).errors().iter().map(|e| (e.pc, e.kind)).collect()
    };
    assert_eq!(
        errs("ja +5\nexit"),
        vec![(0, CfgErrorKind::JumpOutOfRange { target: 6 })]
    );
    assert_eq!(
        errs("ja -2\nexit"),
        vec![(0, CfgErrorKind::JumpOutOfRange { target: -1 })]
    );
    assert_eq!(
        errs("jeq %r1, 0, +1\nlddw %r0, 1\nexit"),
        vec![(0, CfgErrorKind::JumpIntoLddw { target: 2, lddw: 1 })]
    );
    assert_eq!(errs("mov %r0, 0"), vec![(0, CfgErrorKind::FallsOffEnd)]);
    assert_eq!(errs("jeq %r1, 0, -1"), vec![(0, CfgErrorKind::FallsOffEnd)]);
    assert_eq!(
        errs("call local f\nexit\nf:\nja -3"),
        vec![(2, CfgErrorKind::JumpOutOfFunction { target: 0 })]
    );
    assert_eq!(
        errs("call local +5\nexit"),
        vec![(0, CfgErrorKind::CallOutOfRange { target: 6 })]
    );
    assert_eq!(
        errs("call local +2\nexit\nlddw %r0, 1\nexit"),
        vec![(0, CfgErrorKind::CallIntoLddw { target: 3, lddw: 2 })]
    );
    // The message a person reads.
    let g = cfg("ja +1\nlddw %r0, 1\nexit");
    assert_eq!(
        g.errors()[0].to_string(),
        "pc 0: jump to pc 2 lands inside the second half of lddw at pc 1"
    );
    assert_eq!(
        Cfg::build(&ebpf_isa::Program::default()).errors()[0].kind,
        CfgErrorKind::Empty
    );
}

#[test]
fn every_conformance_program_builds_cleanly() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    for path in files {
        let v = ebpf_testdata::read(&path).unwrap();
        let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
        let g = Cfg::build(&program);
        assert!(
            g.errors().is_empty(),
            "{}: {:?}",
            path.display(),
            g.errors()
        );
        // Blocks tile the program: every slot belongs to the block that covers it.
        for (i, blk) in g.blocks().iter().enumerate() {
            for pc in blk.start..blk.end {
                assert_eq!(g.block_at(pc), Some(BlockId(i as u32)));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_and_blocks_partition_the_program(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Keep only whole slots, then decode what decodes.
        let whole = &bytes[..bytes.len() / 8 * 8];
        if let Ok(program) = ebpf_isa::decode(whole) {
            let g = Cfg::build(&program);
            let covered: usize = g.blocks().iter().map(|blk| blk.end - blk.start).sum();
            prop_assert_eq!(covered, program.slot_count());
            let _ = g.longest_path();
        }
    }
}
