//! The execution graph: basic blocks and edges with the interpreter's rules, which is what
//! every engine executes — not the verifier's view of functions.
//!
//! [`crate::Cfg`] scopes blocks to functions and turns a jump out of a function into a
//! "traps" edge, as a verifier should. But the engines must agree with the interpreter on
//! *unverified* programs, and the interpreter runs a jump from one function into another and
//! falls from the end of one function into the next. Facts must hold on every path the code
//! can take, so they are solved on this graph:
//!
//! - a block starts at the entry, at every jump or local-call target that is an instruction
//!   start, and after every jump, `exit`, local call and instruction that can only trap;
//! - a jump to a target outside the program or into the second slot of an `lddw` is an edge
//!   to nowhere (the jump, or the slot, traps); so is falling off the end;
//! - a local call has two edges: into the callee, and from the call to its return site (the
//!   return restores `r6`–`r10`; what the callee did to memory and `r0`–`r5` is unknown
//!   there). An `exit` has no edge: it returns to whichever call site is on top of the stack,
//!   which the call-to-return edge already covers.
//!
//! Helper calls do not end a block; they are instructions with an effect.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_isa::{CallKind, Imm64Kind, Insn, Program};

/// No block.
pub(crate) const NO_BLOCK: u32 = u32::MAX;

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Term {
    /// Into the next block (`NO_BLOCK`: past the end of the program, which traps).
    Next(u32),
    /// `ja` (`NO_BLOCK`: into an `lddw`'s second slot, which traps).
    Jump(u32),
    /// A conditional jump (`NO_BLOCK` on a side: that side traps).
    Branch {
        /// Where it goes when the condition holds.
        taken: u32,
        /// Where it goes otherwise.
        next: u32,
    },
    /// A local call: into the callee, and (when it returns) to the next block.
    Call {
        /// The callee's first block.
        target: u32,
        /// The return site.
        ret: u32,
    },
    /// `exit`.
    Exit,
    /// The last instruction can only trap.
    Trap,
}

/// One block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Index of the first instruction.
    pub(crate) first: u32,
    /// Number of instructions.
    pub(crate) len: u32,
    /// How it ends.
    pub(crate) term: Term,
}

impl Block {
    /// The instruction indices of the block.
    pub(crate) fn range(&self) -> core::ops::Range<usize> {
        self.first as usize..(self.first + self.len) as usize
    }

    /// Index of the last instruction.
    pub(crate) fn last(&self) -> usize {
        (self.first + self.len - 1) as usize
    }

    /// The successors (blocks, `NO_BLOCK` excluded).
    pub(crate) fn successors(&self) -> impl Iterator<Item = u32> {
        let (a, b) = match self.term {
            Term::Next(t) | Term::Jump(t) => (t, NO_BLOCK),
            Term::Branch { taken, next } => (taken, next),
            Term::Call { target, ret } => (target, ret),
            Term::Exit | Term::Trap => (NO_BLOCK, NO_BLOCK),
        };
        [a, b].into_iter().filter(|&t| t != NO_BLOCK)
    }
}

/// Whether `insn` at `pc` can only trap (the interpreter's invalid operations): a `ja` or
/// local call outside the program, a kfunc call, a pseudo `lddw`.
pub(crate) fn only_traps(insn: &Insn, pc: usize, slots: usize) -> bool {
    match insn {
        Insn::Ja { .. } | Insn::Ja32 { .. } => insn.jump_target(pc).is_none_or(|t| t >= slots),
        Insn::Call {
            kind: CallKind::Local,
            ..
        } => insn.call_target(pc).is_none_or(|t| t >= slots),
        Insn::Call {
            kind: CallKind::Btf,
            ..
        } => true,
        Insn::LoadImm64 { kind, .. } => *kind != Imm64Kind::Value,
        _ => false,
    }
}

/// The execution graph of a program.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    /// Blocks in pc order; block 0 is the entry.
    pub(crate) blocks: Vec<Block>,
    /// Per instruction: its block.
    pub(crate) block_of: Vec<u32>,
    /// Per block: its position in reverse post-order (`u32::MAX` if unreachable).
    pub(crate) order: Vec<u32>,
}

impl Graph {
    /// Builds the graph.
    pub(crate) fn of(program: &Program) -> Graph {
        let insns = program.insns();
        let slots = program.slot_count();
        let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
        // Instruction index of each slot that starts one.
        let mut index_of = vec![u32::MAX; slots];
        for (i, &pc) in pcs.iter().enumerate() {
            index_of[pc] = i as u32;
        }
        let target_index = |t: Option<usize>| -> Option<usize> {
            t.and_then(|t| index_of.get(t))
                .filter(|&&i| i != u32::MAX)
                .map(|&i| i as usize)
        };
        let mut leader = vec![false; insns.len() + 1];
        leader[0] = true;
        for (i, insn) in insns.iter().enumerate() {
            let pc = pcs[i];
            let ends = only_traps(insn, pc, slots)
                || matches!(
                    insn,
                    Insn::Ja { .. } | Insn::Ja32 { .. } | Insn::Jump { .. } | Insn::Exit
                )
                || matches!(
                    insn,
                    Insn::Call {
                        kind: CallKind::Local,
                        ..
                    }
                );
            if ends {
                leader[i + 1] = true;
            }
            if let Some(t) = target_index(insn.jump_target(pc).or_else(|| insn.call_target(pc))) {
                leader[t] = true;
            }
        }
        let mut block_of = vec![0u32; insns.len()];
        let mut starts = Vec::new();
        for (i, &l) in leader[..insns.len()].iter().enumerate() {
            if l {
                starts.push(i);
            }
            block_of[i] = (starts.len() - 1) as u32;
        }
        let block_at = |i: Option<usize>| -> u32 {
            i.filter(|&i| i < insns.len() && leader[i])
                .map_or(NO_BLOCK, |i| block_of[i])
        };
        let mut blocks = Vec::with_capacity(starts.len());
        for (b, &first) in starts.iter().enumerate() {
            let end = starts.get(b + 1).copied().unwrap_or(insns.len());
            let last = end - 1;
            let insn = &insns[last];
            let pc = pcs[last];
            let next = block_at((end < insns.len()).then_some(end));
            let term = if only_traps(insn, pc, slots) {
                Term::Trap
            } else {
                match insn {
                    Insn::Ja { .. } | Insn::Ja32 { .. } => {
                        Term::Jump(block_at(target_index(insn.jump_target(pc))))
                    }
                    Insn::Jump { .. } => Term::Branch {
                        taken: block_at(target_index(insn.jump_target(pc))),
                        next,
                    },
                    Insn::Call {
                        kind: CallKind::Local,
                        ..
                    } => Term::Call {
                        target: block_at(target_index(insn.call_target(pc))),
                        ret: next,
                    },
                    Insn::Exit => Term::Exit,
                    _ => Term::Next(next),
                }
            };
            blocks.push(Block {
                first: first as u32,
                len: (end - first) as u32,
                term,
            });
        }
        let order = reverse_post_order(&blocks);
        Graph {
            blocks,
            block_of,
            order,
        }
    }

    /// Whether the edge `from -> to` goes backwards in reverse post-order (closes a cycle).
    pub(crate) fn retreating(&self, from: u32, to: u32) -> bool {
        self.order[to as usize] <= self.order[from as usize]
    }
}

impl Graph {
    /// The strongly connected components of the reachable blocks, in topological order (a
    /// component comes after every component with an edge into it); each component's blocks
    /// in reverse post-order. Tarjan's algorithm, iteratively; the components are slices of
    /// one array.
    pub(crate) fn components(&self) -> Components {
        let n = self.blocks.len();
        let mut index = vec![u32::MAX; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        // Components as found (reverse topological order), flat.
        let mut blocks: Vec<u32> = Vec::with_capacity(n);
        let mut ends: Vec<u32> = Vec::new();
        let mut counter = 0u32;
        if n > 0 {
            let mut calls: Vec<(u32, u8)> = vec![(0, 0)];
            index[0] = 0;
            counter += 1;
            stack.push(0);
            on_stack[0] = true;
            while let Some(&mut (b, ref mut next)) = calls.last_mut() {
                let succ = self.blocks[b as usize].successors().nth(usize::from(*next));
                *next += 1;
                match succ {
                    Some(s) if index[s as usize] == u32::MAX => {
                        index[s as usize] = counter;
                        low[s as usize] = counter;
                        counter += 1;
                        stack.push(s);
                        on_stack[s as usize] = true;
                        calls.push((s, 0));
                    }
                    Some(s) => {
                        if on_stack[s as usize] {
                            low[b as usize] = low[b as usize].min(index[s as usize]);
                        }
                    }
                    None => {
                        calls.pop();
                        if let Some(&(parent, _)) = calls.last() {
                            low[parent as usize] = low[parent as usize].min(low[b as usize]);
                        }
                        if low[b as usize] == index[b as usize] {
                            let start = blocks.len();
                            while let Some(x) = stack.pop() {
                                on_stack[x as usize] = false;
                                blocks.push(x);
                                if x == b {
                                    break;
                                }
                            }
                            blocks[start..].sort_unstable_by_key(|&x| self.order[x as usize]);
                            ends.push(blocks.len() as u32);
                        }
                    }
                }
            }
        }
        Components { blocks, ends }
    }

    /// Whether a component is a single block without an edge to itself (no cycle).
    pub(crate) fn acyclic(&self, comp: &[u32]) -> bool {
        comp.len() == 1
            && !self.blocks[comp[0] as usize]
                .successors()
                .any(|s| s == comp[0])
    }
}

/// Strongly connected components, flat: component `k` is `blocks[ends[k-1]..ends[k]]`, and
/// they are stored in reverse topological order.
#[derive(Clone, Debug)]
pub(crate) struct Components {
    blocks: Vec<u32>,
    ends: Vec<u32>,
}

impl Components {
    /// The components in topological order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.ends.len()).rev().map(|k| {
            let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
            &self.blocks[start..self.ends[k] as usize]
        })
    }
}

/// Each block's position in the reverse post-order of the blocks reachable from block 0
/// (`u32::MAX` if unreachable).
fn reverse_post_order(blocks: &[Block]) -> Vec<u32> {
    let mut order = vec![u32::MAX; blocks.len()];
    let mut post = Vec::with_capacity(blocks.len());
    if blocks.is_empty() {
        return order;
    }
    let mut seen = vec![false; blocks.len()];
    let mut stack: Vec<(u32, u8)> = vec![(0, 0)];
    seen[0] = true;
    while let Some(&mut (b, ref mut next)) = stack.last_mut() {
        let succ = blocks[b as usize].successors().nth(usize::from(*next));
        *next += 1;
        match succ {
            Some(s) if !seen[s as usize] => {
                seen[s as usize] = true;
                stack.push((s, 0));
            }
            Some(_) => {}
            None => {
                post.push(b);
                stack.pop();
            }
        }
    }
    post.reverse();
    for (i, &b) in post.iter().enumerate() {
        order[b as usize] = i as u32;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(src: &str) -> Graph {
        Graph::of(&ebpf_isa::assemble(src).unwrap())
    }

    #[test]
    fn blocks_follow_the_interpreter() {
        // The callee jumps back into main, after main's call.
        let g = graph("call local +2\nmov %r0, 1\nexit\nmov %r0, 2\njeq %r0, 2, -4\nexit");
        let firsts: Vec<u32> = g.blocks.iter().map(|b| b.first).collect();
        assert_eq!(firsts, vec![0, 1, 3, 5]);
        assert_eq!(g.blocks[0].term, Term::Call { target: 2, ret: 1 });
        assert_eq!(g.blocks[1].term, Term::Exit);
        assert_eq!(g.blocks[2].term, Term::Branch { taken: 1, next: 3 });
        // A loop closes with a retreating edge.
        let g = graph("mov %r0, 0\nadd %r0, 1\njlt %r0, 9, -2\nexit");
        assert_eq!(g.blocks[1].term, Term::Branch { taken: 1, next: 2 });
        assert!(g.retreating(1, 1));
        assert!(!g.retreating(0, 1));
        let comps: Vec<Vec<u32>> = g.components().iter().map(<[u32]>::to_vec).collect();
        assert_eq!(comps, vec![vec![0], vec![1], vec![2]]);
        assert!(!g.acyclic(&[1]));
        assert!(g.acyclic(&[2]));
        // Two loops, one inside the other, and a call into a function that returns.
        let g = graph(
            "mov %r0, 0\nmov %r1, 0\nadd %r1, 1\njlt %r1, 3, -2\nadd %r0, 1\n\
             jlt %r0, 3, -5\ncall local +1\nexit\nexit",
        );
        let comps: Vec<Vec<u32>> = g.components().iter().map(<[u32]>::to_vec).collect();
        assert_eq!(comps.len(), 5, "{comps:?}");
        assert_eq!(comps[1], vec![1, 2, 3], "both loops in one component");
    }

    #[test]
    fn traps_are_edges_to_nowhere() {
        let g = graph("lddw %r1, 5\njeq %r1, 0, -2\nja +5\nmov %r0, 0");
        assert_eq!(
            g.blocks[0].term,
            Term::Branch {
                taken: NO_BLOCK,
                next: 1
            }
        );
        assert_eq!(g.blocks[1].term, Term::Trap, "ja out of the program");
        assert_eq!(g.blocks[2].term, Term::Next(NO_BLOCK), "falls off the end");
        assert_eq!(g.order[2], u32::MAX, "unreachable");
    }
}
