//! The shape of the generated code: translation blocks, their exits, checkpoints and budget
//! limits, decided before any Cranelift IR is built.
//!
//! The interpreter runs a flat array of slots: a jump may land anywhere in the program, a local
//! call pushes a frame and goes to any pc, and `exit` pops the newest frame, wherever the code
//! that runs it was reached from. To be exactly as permissive, the whole program becomes *one*
//! Cranelift function over the flat pc space, with local calls as jumps plus an explicit frame
//! stack (see `translate.rs`).
//!
//! Blocks start from `ebpf-cfg`'s basic blocks and are split further where the flat view needs
//! it: after every local call (the return site, which `exit` reaches through a jump table), at
//! jump targets in other functions (which the CFG reports as errors, but the interpreter runs),
//! and after instructions that can only trap. Each block ends with a [`Term`].
//!
//! # The budget scheme
//!
//! Every block costs its number of instructions (an `lddw` counts once; an instruction that can
//! only trap costs nothing, because it traps whatever the budget says). *Checkpoints* are the
//! entry block, every local-call target, every return site and the target of every retreating
//! edge of a depth-first search, so every cycle of the graph passes through one. Removing the
//! edges into checkpoints leaves an acyclic graph, in which [`Block::limit`] of a checkpoint is
//! the cost of the longest path from it to the next checkpoint (or an exit, or a trap).
//!
//! At a checkpoint the generated code tests `remaining < limit` once; when enough budget is
//! left, the whole region up to the next checkpoint runs without any further test, each block
//! subtracting its cost. Otherwise it continues in a second, *checked* copy of the code, which
//! tests the budget before every instruction with an effect (memory access, call, exit) and at
//! the end of each block, so the trap happens at exactly the interpreter's pc, after exactly the
//! interpreter's side effects. The checked copy re-enters the fast copy at the next checkpoint.

use std::ops::Range;

use ebpf_abi::{Flow, InvalidReason, ProgramView};
use ebpf_cfg::Cfg;
use ebpf_isa::Program;

/// Where control goes when it leaves a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A block of the plan.
    Block(usize),
    /// A trap that happens whatever the budget: `InvalidInstruction { reason }` at `pc`.
    Trap {
        /// Where the interpreter reports it.
        pc: usize,
        /// Why.
        reason: InvalidReason,
    },
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Term {
    /// The last instruction is an ordinary one; execution continues at the next pc.
    Fall(Target),
    /// The last instruction is `ja`/`ja32` with a target inside the program.
    Jump(Target),
    /// The last instruction is a conditional jump.
    Branch {
        /// Where it goes when the condition holds.
        taken: Target,
        /// Where it goes otherwise.
        fall: Target,
    },
    /// The last instruction is `exit`.
    Exit,
    /// The last instruction is a local call with a target inside the program.
    Call {
        /// The callee's first instruction.
        target: Target,
        /// Index of the return site in [`Plan::sites`].
        site: usize,
    },
    /// The instruction after the block's instructions can only trap (it is not counted).
    Trap {
        /// Its pc.
        pc: usize,
        /// Why it cannot execute.
        reason: InvalidReason,
    },
}

/// One translation block.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// Indices into `Program::insns()` of the instructions the block executes (for
    /// [`Term::Trap`], the trapping instruction is the one at `insns.end`, not included).
    pub(crate) insns: Range<usize>,
    /// How the block ends.
    pub(crate) term: Term,
    /// Whether the block tests the budget on entry.
    pub(crate) checkpoint: bool,
    /// For a checkpoint: the most instructions any path runs until the next checkpoint.
    pub(crate) limit: u64,
    /// Whether execution can reach the block.
    pub(crate) reachable: bool,
}

impl Block {
    /// The instructions the block charges to the budget.
    pub(crate) fn cost(&self) -> u64 {
        self.insns.len() as u64
    }
}

/// The translation plan of a program.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Blocks in pc order.
    pub(crate) blocks: Vec<Block>,
    /// Where execution starts.
    pub(crate) entry: Target,
    /// Return sites of the reachable and unreachable local calls, by site index: where `exit`
    /// continues after popping the frame the call pushed.
    pub(crate) sites: Vec<Target>,
    /// Whether a reachable block makes a local call (otherwise the depth is always 0).
    pub(crate) has_calls: bool,
}

impl Plan {
    /// Plans the translation of `program`. Never fails: what cannot run becomes a trap.
    pub(crate) fn build(program: &Program) -> Plan {
        let insns = program.insns();
        // Each instruction's pc and control flow, targets resolved (the contract's).
        let view = ProgramView::new(program);
        let (pcs, flows) = (view.pcs(), view.flows());

        // Leaders: ebpf-cfg's block starts, refined for the flat view.
        let mut leader = vec![false; insns.len()];
        if let Some(first) = leader.first_mut() {
            *first = true;
        }
        let cfg = Cfg::build(program);
        for block in cfg.blocks() {
            if let Some(l) = leader.get_mut(block.insns.start) {
                *l = true;
            }
        }
        for (i, flow) in flows.iter().enumerate() {
            let target = match *flow {
                Flow::Next => continue,
                Flow::Jump(t) | Flow::Branch(t) | Flow::Call(t) => match t {
                    ebpf_abi::Target::Insn(t) => Some(t),
                    ebpf_abi::Target::Trap { .. } => None,
                },
                Flow::Exit | Flow::Invalid(_) => None,
            };
            if let Some(l) = leader.get_mut(i + 1) {
                *l = true;
            }
            if let Some(l) = target.and_then(|t| leader.get_mut(t)) {
                *l = true;
            }
        }

        // Blocks.
        let mut block_of = vec![usize::MAX; insns.len()];
        let mut blocks = Vec::new();
        let mut sites = Vec::new();
        let mut start = 0usize;
        for i in 0..insns.len() {
            block_of[i] = blocks.len();
            let ends = i + 1 == insns.len() || leader[i + 1];
            if !ends {
                continue;
            }
            let next = tgt(view.next(i));
            let (range, term) = match flows[i] {
                Flow::Next => (start..i + 1, Term::Fall(next)),
                Flow::Jump(t) => (start..i + 1, Term::Jump(tgt(t))),
                Flow::Branch(t) => (
                    start..i + 1,
                    Term::Branch {
                        taken: tgt(t),
                        fall: next,
                    },
                ),
                Flow::Exit => (start..i + 1, Term::Exit),
                Flow::Call(t) => {
                    sites.push(next);
                    (
                        start..i + 1,
                        Term::Call {
                            target: tgt(t),
                            site: sites.len() - 1,
                        },
                    )
                }
                Flow::Invalid(reason) => (start..i, Term::Trap { pc: pcs[i], reason }),
            };
            blocks.push(Block {
                insns: range,
                term,
                checkpoint: false,
                limit: 0,
                reachable: false,
            });
            start = i + 1;
        }
        // Instruction indices to block indices.
        let map = |t: Target| match t {
            Target::Block(i) => Target::Block(block_of[i]),
            trap => trap,
        };
        for block in &mut blocks {
            block.term = match block.term {
                Term::Fall(t) => Term::Fall(map(t)),
                Term::Jump(t) => Term::Jump(map(t)),
                Term::Branch { taken, fall } => Term::Branch {
                    taken: map(taken),
                    fall: map(fall),
                },
                Term::Call { target, site } => Term::Call {
                    target: map(target),
                    site,
                },
                t @ (Term::Exit | Term::Trap { .. }) => t,
            };
        }
        for site in &mut sites {
            *site = map(*site);
        }
        let entry = tgt(view.entry());
        let mut plan = Plan {
            blocks,
            entry,
            sites,
            has_calls: false,
        };
        plan.analyse();
        plan.has_calls = plan
            .blocks
            .iter()
            .any(|b| b.reachable && matches!(b.term, Term::Call { .. }));
        plan
    }

    /// Successors inside a region (not through calls or returns).
    pub(crate) fn intra_successors(&self, b: usize) -> [Option<usize>; 2] {
        let block = |t: Target| match t {
            Target::Block(b) => Some(b),
            Target::Trap { .. } => None,
        };
        match self.blocks[b].term {
            Term::Fall(t) | Term::Jump(t) => [block(t), None],
            Term::Branch { taken, fall } => [block(taken), block(fall)],
            Term::Exit | Term::Call { .. } | Term::Trap { .. } => [None, None],
        }
    }

    /// Reachability, checkpoints and limits.
    fn analyse(&mut self) {
        let n = self.blocks.len();
        let Target::Block(entry) = self.entry else {
            return;
        };
        // Roots of regions: the entry, and the targets and return sites of reachable calls.
        let mut roots = vec![entry];
        let mut stack = vec![entry];
        self.blocks[entry].reachable = true;
        while let Some(b) = stack.pop() {
            let mut next: Vec<usize> = self.intra_successors(b).into_iter().flatten().collect();
            if let Term::Call { target, site } = self.blocks[b].term {
                for t in [Some(target), self.sites.get(site).copied()]
                    .into_iter()
                    .flatten()
                {
                    if let Target::Block(t) = t {
                        roots.push(t);
                        next.push(t);
                    }
                }
            }
            for s in next {
                if !self.blocks[s].reachable {
                    self.blocks[s].reachable = true;
                    stack.push(s);
                }
            }
        }
        for &r in &roots {
            self.blocks[r].checkpoint = true;
        }

        // Depth-first search from every root: targets of retreating edges become checkpoints.
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut color = vec![WHITE; n];
        for &root in &roots {
            if color[root] != WHITE {
                continue;
            }
            color[root] = GREY;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (b, ref mut i)) = stack.last_mut() {
                let succs = self.intra_successors(b);
                if let Some(s) = succs.get(*i).copied() {
                    *i += 1;
                    let Some(s) = s else { continue };
                    match color[s] {
                        WHITE => {
                            color[s] = GREY;
                            stack.push((s, 0));
                        }
                        GREY => self.blocks[s].checkpoint = true,
                        _ => {}
                    }
                } else {
                    color[b] = BLACK;
                    stack.pop();
                }
            }
        }

        // Longest path to the next checkpoint, in post-order of the acyclic graph left after
        // removing the edges into checkpoints.
        let mut longest = vec![0u64; n];
        let mut done = vec![false; n];
        for start in 0..n {
            if done[start] || !self.blocks[start].reachable {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            while let Some(&mut (b, ref mut i)) = stack.last_mut() {
                let succs = self.intra_successors(b);
                if let Some(s) = succs.get(*i).copied() {
                    *i += 1;
                    if let Some(s) = s
                        && !self.blocks[s].checkpoint
                        && !done[s]
                    {
                        stack.push((s, 0));
                    }
                } else {
                    let tail = succs
                        .into_iter()
                        .flatten()
                        .filter(|&s| !self.blocks[s].checkpoint)
                        .map(|s| longest[s])
                        .max()
                        .unwrap_or(0);
                    longest[b] = self.blocks[b].cost().saturating_add(tail);
                    done[b] = true;
                    stack.pop();
                }
            }
        }
        for (block, l) in self.blocks.iter_mut().zip(longest) {
            block.limit = l;
        }
    }
}

/// A resolved target of the contract's view, with instruction indices where block indices go
/// (`Plan::build` maps them).
fn tgt(t: ebpf_abi::Target) -> Target {
    match t {
        ebpf_abi::Target::Insn(i) => Target::Block(i),
        ebpf_abi::Target::Trap { pc, reason } => Target::Trap { pc, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> Plan {
        Plan::build(&ebpf_isa::assemble(src).unwrap())
    }

    #[test]
    fn straight_line_code_is_one_region() {
        let p = plan("mov %r0, 1\nadd %r0, 2\njeq %r0, 3, +1\nmov %r0, 0\nexit");
        assert_eq!(p.blocks.len(), 3);
        assert!(p.blocks[0].checkpoint);
        assert!(!p.blocks[1].checkpoint && !p.blocks[2].checkpoint);
        assert_eq!(p.blocks[0].limit, 5, "the longest path runs all five");
    }

    #[test]
    fn loops_get_a_checkpoint_at_the_header() {
        let p = plan("mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 10, loop\nexit");
        let header = p.blocks.iter().position(|b| b.insns.start == 1).unwrap();
        assert!(p.blocks[header].checkpoint);
        assert_eq!(p.blocks[header].limit, 3, "add, jne, exit");
        assert_eq!(p.blocks[0].limit, 1);
    }

    #[test]
    fn calls_split_blocks_and_record_return_sites() {
        let p = plan("mov %r1, 1\ncall local f\nadd %r0, 1\nexit\nf:\nmov %r0, 2\nexit");
        assert_eq!(p.sites, vec![Target::Block(1)]);
        assert!(p.blocks.iter().all(|b| b.checkpoint));
        assert_eq!(p.blocks[0].limit, 2);
    }

    #[test]
    fn invalid_targets_become_traps() {
        let p = plan("ja +5\nexit");
        assert_eq!(
            p.blocks[0].term,
            Term::Trap {
                pc: 0,
                reason: InvalidReason::TargetOutOfRange
            }
        );
        assert_eq!(p.blocks[0].cost(), 0);
        let p = plan("mov %r0, 1");
        assert_eq!(
            p.blocks[0].term,
            Term::Fall(Target::Trap {
                pc: 1,
                reason: InvalidReason::FellOffEnd
            })
        );
        let p = plan("jeq %r0, 0, +1\nlddw %r0, 0x100000000\nexit");
        assert!(matches!(
            p.blocks[0].term,
            Term::Branch {
                taken: Target::Trap {
                    pc: 2,
                    reason: InvalidReason::LddwTail
                },
                ..
            }
        ));
    }
}
