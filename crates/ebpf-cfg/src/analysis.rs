//! Analyses over the built graph: reachability, reverse post-order, dominators (Cooper, Harvey
//! and Kennedy's iterative algorithm over RPO), back edges, natural loops, cycles, the call
//! graph's recursion, and the longest-path bound of loop-free programs.

use alloc::vec;
use alloc::vec::Vec;

use crate::{BlockId, Cfg, FuncId, Loop, Terminator};

/// The static bound of a loop-free program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongestPath {
    /// The most instructions any run can execute (an `lddw` counts once, each call once plus
    /// its callee's longest path).
    pub instructions: u64,
}

pub(crate) fn analyse(cfg: &mut Cfg) {
    let n = cfg.blocks.len();
    cfg.idom = vec![None; n];
    // Reverse post-order per function (iterative DFS), noting retreating edges (cycles).
    let mut rpo_index = vec![usize::MAX; n];
    let mut cyclic_funcs = vec![false; cfg.functions.len()];
    for (f, cyclic_f) in cyclic_funcs.iter_mut().enumerate() {
        let entry = cfg.functions[f].entry_block();
        let (rpo, cyclic) = reverse_post_order(cfg, entry);
        for (i, b) in rpo.iter().enumerate() {
            rpo_index[b.index()] = i;
        }
        cfg.functions[f].rpo = rpo;
        *cyclic_f = cyclic;
    }

    // Dominators per function.
    for f in 0..cfg.functions.len() {
        let rpo = cfg.functions[f].rpo.clone();
        let entry = cfg.functions[f].entry_block();
        let mut idom: Vec<Option<BlockId>> = vec![None; n];
        idom[entry.index()] = Some(entry);
        let mut changed = true;
        while changed {
            changed = false;
            for &b in rpo.iter().skip(1) {
                let mut new: Option<BlockId> = None;
                for &p in &cfg.blocks[b.index()].preds {
                    if idom[p.index()].is_none() {
                        continue;
                    }
                    new = Some(match new {
                        None => p,
                        Some(cur) => intersect(&idom, &rpo_index, p, cur),
                    });
                }
                if new.is_some() && idom[b.index()] != new {
                    idom[b.index()] = new;
                    changed = true;
                }
            }
        }
        for &b in rpo.iter().skip(1) {
            cfg.idom[b.index()] = idom[b.index()];
        }
    }

    // Back edges and natural loops (reachable blocks only).
    let mut back_edges = Vec::new();
    for f in &cfg.functions {
        for &u in &f.rpo {
            for (v, _) in cfg.blocks[u.index()].successors() {
                if cfg.dominates(v, u) {
                    back_edges.push((u, v));
                }
            }
        }
    }
    let mut loops: Vec<Loop> = Vec::new();
    for &(tail, header) in &back_edges {
        let mut body = vec![header];
        let mut work = vec![tail];
        while let Some(b) = work.pop() {
            if body.contains(&b) {
                continue;
            }
            body.push(b);
            for &p in &cfg.blocks[b.index()].preds {
                if rpo_index[p.index()] != usize::MAX {
                    work.push(p);
                }
            }
        }
        match loops.iter_mut().find(|l| l.header == header) {
            Some(l) => l.blocks.extend(body),
            None => loops.push(Loop {
                header,
                blocks: body,
            }),
        }
    }
    for l in &mut loops {
        l.blocks.sort_unstable();
        l.blocks.dedup();
    }
    cfg.back_edges = back_edges;
    cfg.loops = loops;

    // Call graph: reachable functions, recursion.
    let nf = cfg.functions.len();
    let mut reachable = vec![false; nf];
    let callees = |cfg: &Cfg, f: usize| -> Vec<FuncId> {
        let func = &cfg.functions[f];
        let mut out: Vec<FuncId> = func
            .call_sites
            .iter()
            .filter(|(pc, _)| {
                cfg.block_at(*pc)
                    .is_some_and(|b| rpo_index[b.index()] != usize::MAX)
            })
            .map(|&(_, callee)| callee)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    let graph: Vec<Vec<FuncId>> = (0..nf).map(|f| callees(cfg, f)).collect();
    if nf > 0 {
        let mut work = vec![0usize];
        while let Some(f) = work.pop() {
            if core::mem::replace(&mut reachable[f], true) {
                continue;
            }
            work.extend(graph[f].iter().map(|c| c.index()));
        }
    }
    cfg.has_cycles = cyclic_funcs.iter().zip(&reachable).any(|(&c, &r)| c && r);
    cfg.recursion = find_call_cycle(&graph);
    cfg.reachable_funcs = reachable;
}

fn intersect(idom: &[Option<BlockId>], rpo_index: &[usize], a: BlockId, b: BlockId) -> BlockId {
    let (mut a, mut b) = (a, b);
    while a != b {
        while rpo_index[a.index()] > rpo_index[b.index()] {
            a = idom[a.index()].unwrap_or(a);
        }
        while rpo_index[b.index()] > rpo_index[a.index()] {
            b = idom[b.index()].unwrap_or(b);
        }
    }
    a
}

/// Reverse post-order of the blocks reachable from `entry`, and whether the DFS found a
/// retreating edge (a cycle).
fn reverse_post_order(cfg: &Cfg, entry: BlockId) -> (Vec<BlockId>, bool) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; cfg.blocks.len()];
    let mut post = Vec::new();
    let mut cyclic = false;
    // Stack of (block, index of the next successor to visit).
    let mut stack: Vec<(BlockId, usize)> = vec![(entry, 0)];
    state[entry.index()] = State::OnStack;
    while let Some(&mut (b, ref mut next)) = stack.last_mut() {
        let succ = cfg.blocks[b.index()].successors().nth(*next);
        *next += 1;
        match succ {
            Some((s, _)) => match state[s.index()] {
                State::New => {
                    state[s.index()] = State::OnStack;
                    stack.push((s, 0));
                }
                State::OnStack => cyclic = true,
                State::Done => {}
            },
            None => {
                state[b.index()] = State::Done;
                post.push(b);
                stack.pop();
            }
        }
    }
    post.reverse();
    (post, cyclic)
}

/// A cycle in the call graph, as the list of functions on it.
fn find_call_cycle(graph: &[Vec<FuncId>]) -> Option<Vec<FuncId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; graph.len()];
    for root in 0..graph.len() {
        if state[root] != State::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = State::OnStack;
        while let Some(&mut (f, ref mut next)) = stack.last_mut() {
            let callee = graph[f].get(*next).copied();
            *next += 1;
            match callee {
                Some(c) => match state[c.index()] {
                    State::New => {
                        state[c.index()] = State::OnStack;
                        stack.push((c.index(), 0));
                    }
                    State::OnStack => {
                        let from = stack.iter().position(|&(g, _)| g == c.index()).unwrap_or(0);
                        return Some(
                            stack[from..]
                                .iter()
                                .map(|&(g, _)| FuncId(g as u32))
                                .collect(),
                        );
                    }
                    State::Done => {}
                },
                None => {
                    state[f] = State::Done;
                    stack.pop();
                }
            }
        }
    }
    None
}

pub(crate) fn longest_path(cfg: &Cfg) -> Option<crate::LongestPath> {
    if cfg.has_cycles || cfg.recursion.is_some() || !cfg.errors.is_empty() {
        return None;
    }
    let nf = cfg.functions.len();
    // Function costs, computed callees first (memoised DFS; the call graph is acyclic).
    let mut cost: Vec<Option<u64>> = vec![None; nf];
    let mut order = Vec::new();
    let mut seen = vec![false; nf];
    let mut stack = vec![(0usize, false)];
    while let Some((f, expanded)) = stack.pop() {
        if expanded {
            order.push(f);
            continue;
        }
        if core::mem::replace(&mut seen[f], true) {
            continue;
        }
        stack.push((f, true));
        for &(_, c) in &cfg.functions[f].call_sites {
            if !seen[c.index()] {
                stack.push((c.index(), false));
            }
        }
    }
    for f in order {
        let func = &cfg.functions[f];
        let mut best = vec![0u64; cfg.blocks.len()];
        let mut result = 0u64;
        for &b in &func.rpo {
            let block = &cfg.blocks[b.index()];
            let mut own = block.len() as u64;
            for &(pc, callee) in &func.call_sites {
                if block.start <= pc && pc < block.end {
                    own = own.saturating_add(cost[callee.index()].unwrap_or(0));
                }
            }
            let before = block
                .preds
                .iter()
                .map(|p| best[p.index()])
                .max()
                .unwrap_or(0);
            best[b.index()] = before.saturating_add(own);
            if matches!(block.terminator, Terminator::Exit) {
                result = result.max(best[b.index()]);
            }
        }
        cost[f] = Some(result);
    }
    Some(crate::LongestPath {
        instructions: cost.first().copied().flatten()?,
    })
}
