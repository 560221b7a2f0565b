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
    // Every per-block array below is allocated once for the whole program: functions own
    // disjoint block ranges and never reach each other's blocks, so one array serves all of
    // them and the work stays linear in the program, not in functions × blocks.
    cfg.idom = vec![None; n];
    let mut rpo_index = vec![usize::MAX; n];
    let mut dfs_state = vec![DfsState::New; n];
    let mut cyclic_funcs = vec![false; cfg.functions.len()];
    for (f, cyclic_f) in cyclic_funcs.iter_mut().enumerate() {
        let entry = cfg.functions[f].entry_block();
        let (rpo, cyclic) = reverse_post_order(cfg, entry, &mut dfs_state);
        for (i, b) in rpo.iter().enumerate() {
            rpo_index[b.index()] = i;
        }
        cfg.functions[f].rpo = rpo;
        *cyclic_f = cyclic;
    }

    // Dominators per function (Cooper, Harvey and Kennedy).
    let mut idom: Vec<Option<BlockId>> = vec![None; n];
    for func in &cfg.functions {
        let entry = func.entry_block();
        idom[entry.index()] = Some(entry);
        let mut changed = true;
        while changed {
            changed = false;
            for &b in func.rpo.iter().skip(1) {
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
        for &b in func.rpo.iter().skip(1) {
            cfg.idom[b.index()] = idom[b.index()];
        }
    }

    // The dominator tree numbered by DFS, so that `dominates` is two comparisons.
    number_dominator_tree(cfg);

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
    let mut loop_of_header = vec![u32::MAX; n];
    // `in_body[b] == stamp` marks `b` as already in the body being collected.
    let mut in_body = vec![u32::MAX; n];
    for (stamp, &(tail, header)) in back_edges.iter().enumerate() {
        let stamp = stamp as u32;
        let index = match loop_of_header[header.index()] {
            u32::MAX => {
                loop_of_header[header.index()] = loops.len() as u32;
                loops.push(Loop {
                    header,
                    blocks: Vec::new(),
                });
                loops.len() - 1
            }
            i => i as usize,
        };
        let body = &mut loops[index].blocks;
        in_body[header.index()] = stamp;
        body.push(header);
        let mut work = vec![tail];
        while let Some(b) = work.pop() {
            if in_body[b.index()] == stamp {
                continue;
            }
            in_body[b.index()] = stamp;
            body.push(b);
            for &p in &cfg.blocks[b.index()].preds {
                if rpo_index[p.index()] != usize::MAX && in_body[p.index()] != stamp {
                    work.push(p);
                }
            }
        }
    }
    for l in &mut loops {
        l.blocks.sort_unstable();
        l.blocks.dedup();
    }
    cfg.back_edges = back_edges;
    cfg.loops = loops;

    // Call graph (calls in reachable blocks): reachable functions, recursion among them.
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

/// Numbers the dominator tree of every function in DFS pre- and post-order.
fn number_dominator_tree(cfg: &mut Cfg) {
    let n = cfg.blocks.len();
    // Children lists in one array (counting sort by parent).
    let mut first_child = vec![0u32; n + 1];
    for b in 0..n {
        if let Some(p) = cfg.idom[b] {
            first_child[p.index() + 1] += 1;
        }
    }
    for i in 0..n {
        first_child[i + 1] += first_child[i];
    }
    let mut next = first_child.clone();
    let mut children = vec![BlockId(0); first_child[n] as usize];
    for b in 0..n {
        if let Some(p) = cfg.idom[b] {
            children[next[p.index()] as usize] = BlockId(b as u32);
            next[p.index()] += 1;
        }
    }
    cfg.dom_pre = vec![u32::MAX; n];
    cfg.dom_post = vec![u32::MAX; n];
    let mut counter = 0u32;
    for f in 0..cfg.functions.len() {
        let entry = cfg.functions[f].entry_block();
        let mut stack: Vec<(BlockId, u32)> = vec![(entry, first_child[entry.index()])];
        cfg.dom_pre[entry.index()] = counter;
        counter += 1;
        while let Some(&mut (b, ref mut child)) = stack.last_mut() {
            if *child < first_child[b.index() + 1] {
                let c = children[*child as usize];
                *child += 1;
                cfg.dom_pre[c.index()] = counter;
                counter += 1;
                stack.push((c, first_child[c.index()]));
            } else {
                cfg.dom_post[b.index()] = counter;
                counter += 1;
                stack.pop();
            }
        }
    }
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

#[derive(Clone, Copy, PartialEq)]
enum DfsState {
    New,
    OnStack,
    Done,
}

/// Reverse post-order of the blocks reachable from `entry`, and whether the DFS found a
/// retreating edge (a cycle).
fn reverse_post_order(cfg: &Cfg, entry: BlockId, state: &mut [DfsState]) -> (Vec<BlockId>, bool) {
    use DfsState as State;
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
    // Only functions reachable from the entry matter: recursion in dead code never runs.
    for root in 0..graph.len().min(1) {
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
    // Structural errors only remove edges (a trap ends the run early), so the bound holds.
    if cfg.has_cycles || cfg.recursion.is_some() || cfg.functions.is_empty() {
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
    // Indexed by block; each function only touches its own range, so one array serves all.
    let mut best = vec![0u64; cfg.blocks.len()];
    let mut calls = vec![0u64; cfg.blocks.len()];
    for f in order {
        let func = &cfg.functions[f];
        for &(pc, callee) in &func.call_sites {
            if let Some(b) = cfg.block_at(pc) {
                let c = cost[callee.index()].unwrap_or(0);
                calls[b.index()] = calls[b.index()].saturating_add(c);
            }
        }
        let mut result = 0u64;
        for &b in &func.rpo {
            let block = &cfg.blocks[b.index()];
            let own = (block.len() as u64).saturating_add(calls[b.index()]);
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
