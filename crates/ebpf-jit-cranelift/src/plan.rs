//! The shape of the generated code: translation blocks, their exits, checkpoints and budget
//! limits, and how the program is cut into Cranelift functions, decided before any Cranelift IR
//! is built.
//!
//! The interpreter runs a flat array of slots: a jump may land anywhere in the program, a local
//! call pushes a frame and goes to any pc, and `exit` pops the newest frame, wherever the code
//! that runs it was reached from. To be exactly as permissive, the generated code works over
//! the flat pc space, with local calls as jumps plus an explicit frame stack (see
//! `translate.rs`).
//!
//! Blocks start from `ebpf-cfg`'s basic blocks and are split further where the flat view needs
//! it: after every local call (the return site, which `exit` reaches through a jump table), at
//! jump targets in other functions (which the CFG reports as errors, but the interpreter runs),
//! after instructions that can only trap, and every [`MAX_STRETCH`] instructions. Each block
//! ends with a [`Term`]. A local call that is the program's last instruction returns to a
//! synthetic empty block at the end, which traps (`FellOffEnd`), so that every return site is a
//! block.
//!
//! # The budget scheme
//!
//! Every block costs its number of instructions (an `lddw` counts once; an instruction that can
//! only trap costs nothing, because it traps whatever the budget says). *Checkpoints* are the
//! entry block, every local-call target, every return site, the target of every retreating
//! edge of a depth-first search (so every cycle of the graph passes through one), every block
//! entered from another unit (below), and whatever more it takes for no path between two
//! checkpoints to be longer than [`MAX_STRETCH`] instructions. Removing the edges into
//! checkpoints leaves an acyclic graph, in which [`Block::limit`] of a checkpoint is the cost
//! of the longest path from it to the next checkpoint (or an exit, or a trap): at most
//! [`MAX_STRETCH`].
//!
//! At a checkpoint the generated code tests `remaining < limit` once; when enough budget is
//! left, the whole region up to the next checkpoint runs without any further test, each block
//! subtracting its cost. Otherwise the run cannot be finished by this region's code without
//! per-instruction counting, and one of two things happens (`translate::Shortfall`): the
//! in-process JIT hands the run, as it stands at the checkpoint, to the interpreter, which
//! finishes it exactly (at most `limit` more instructions: the budget runs out first); objects,
//! which have no interpreter to hand over to, continue in a second, *checked* copy of the code,
//! which tests the budget before every instruction with an effect (memory access, call, exit)
//! and at the end of each block, so the trap happens at exactly the interpreter's pc, after
//! exactly the interpreter's side effects, and re-enters the fast copy at the next checkpoint.
//!
//! # Units
//!
//! Compile time and memory must grow linearly with the program, and Cranelift's are not linear
//! in the size of one function. So a large program is cut into *units* of about
//! `function_size` instructions, contiguous in pc order, each its own Cranelift function; cuts
//! avoid splitting loops where they can. A jump, fall-through, call or return from one unit into
//! another leaves the function with the registers in the context, and a small dispatcher calls
//! the unit that continues; such targets are each unit's *entries*, and they are checkpoints.
use std::ops::Range;

use ebpf_abi::{Flow, InvalidReason, ProgramView};
use ebpf_cfg::Cfg;
use ebpf_isa::Program;

/// The most local calls a unit of a program of several units holds (see `Plan::cut_units`).
pub(crate) const MAX_CALLS_PER_UNIT: usize = 64;

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
    /// Whether the block starts a region (see the module docs).
    pub(crate) checkpoint: bool,
    /// Whether it tests the budget on entry: every checkpoint but the return sites that
    /// `ret` tests (see [`Plan::return_limit`]).
    pub(crate) tested: bool,
    /// For a checkpoint: the most instructions any path runs until the next checkpoint.
    pub(crate) limit: u64,
    /// Whether execution can reach the block.
    pub(crate) reachable: bool,
    /// Whether it is the return site of a reachable local call.
    pub(crate) return_site: bool,
}

impl Block {
    /// The instructions the block charges to the budget.
    pub(crate) fn cost(&self) -> u64 {
        self.insns.len() as u64
    }
}

/// The most instructions any path runs between two budget checks: what the interpreter may
/// have to run when the in-process JIT hands it a run whose budget is about to run out.
pub(crate) const MAX_STRETCH: usize = 1024;

/// One Cranelift function's share of the program.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unit {
    /// Its blocks, in pc order.
    pub(crate) blocks: Range<usize>,
    /// The blocks execution can enter it at from outside (see [`Plan::word`]), in pc order.
    pub(crate) entries: Vec<usize>,
}

/// The translation plan of a program.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Blocks in pc order (the synthetic end block, if any, last).
    pub(crate) blocks: Vec<Block>,
    /// Where execution starts.
    pub(crate) entry: Target,
    /// Return sites of the reachable and unreachable local calls, by site index: the block
    /// where `exit` continues after popping the frame the call pushed.
    pub(crate) sites: Vec<usize>,
    /// Whether a reachable block makes a local call (otherwise the depth is always 0).
    pub(crate) has_calls: bool,
    /// The first pc of each block (for the synthetic end block, the slot count).
    pub(crate) start_pcs: Vec<usize>,
    /// The units, in pc order; at least one.
    pub(crate) units: Vec<Unit>,
    /// Unit of each block.
    pub(crate) unit_of: Vec<u32>,
    /// Index of each block in its unit's entries (`u32::MAX` if it is not an entry).
    entry_index: Vec<u32>,
    /// What `ret` tests before continuing at a return site: the largest limit of the return
    /// sites it tests for (0: none).
    pub(crate) return_limit: u64,
}

impl Plan {
    /// Plans the translation of `program`, in units of about `function_size` instructions;
    /// `ret_tests`: see [`Plan::return_limit`]. Never fails: what cannot run becomes a trap.
    pub(crate) fn build(program: &Program, function_size: usize, ret_tests: bool) -> Plan {
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

        // Blocks. A return site past the last instruction is the synthetic end block, at
        // instruction index `insns.len()`.
        let end_index = insns.len();
        let len = view.slot_count();
        let mut block_of = vec![usize::MAX; insns.len() + 1];
        let mut blocks = Vec::new();
        let mut sites = Vec::new();
        let mut start = 0usize;
        for i in 0..insns.len() {
            block_of[i] = blocks.len();
            let ends = i + 1 == insns.len() || leader[i + 1] || i + 1 - start == MAX_STRETCH;
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
                    // The only slot after a one-slot call that is not an instruction is the
                    // end of the program.
                    sites.push(match view.next(i) {
                        ebpf_abi::Target::Insn(n) => n,
                        ebpf_abi::Target::Trap { .. } => end_index,
                    });
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
                tested: false,
                limit: 0,
                reachable: false,
                return_site: false,
            });
            start = i + 1;
        }
        let mut start_pcs: Vec<usize> = blocks.iter().map(|b| pcs[b.insns.start]).collect();
        if sites.contains(&end_index) {
            block_of[end_index] = blocks.len();
            blocks.push(Block {
                insns: end_index..end_index,
                term: Term::Trap {
                    pc: len,
                    reason: InvalidReason::FellOffEnd,
                },
                checkpoint: false,
                tested: false,
                limit: 0,
                reachable: false,
                return_site: false,
            });
            start_pcs.push(len);
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
            *site = block_of[*site];
        }
        let entry = tgt(view.entry());
        let n = blocks.len();
        let mut plan = Plan {
            blocks,
            entry,
            sites,
            has_calls: false,
            start_pcs,
            units: Vec::new(),
            unit_of: vec![0; n],
            entry_index: vec![u32::MAX; n],
            return_limit: 0,
        };
        plan.analyse(function_size, ret_tests);
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

    /// The return site of a local call's site index.
    pub(crate) fn site(&self, site: usize) -> usize {
        self.sites.get(site).copied().unwrap_or(0)
    }

    /// How generated code names an entry `b` of a unit (in the frames of local calls and in
    /// the context between units): its unit in the high 32 bits, its index among the unit's
    /// entries in the low ones.
    pub(crate) fn word(&self, b: usize) -> u64 {
        (u64::from(self.unit_of[b]) << 32) | u64::from(self.entry_index[b])
    }

    /// Whether `b` is an entry of its unit.
    pub(crate) fn is_entry(&self, b: usize) -> bool {
        self.entry_index[b] != u32::MAX
    }

    /// Whether an edge from block `from` to block `to` leaves `from`'s unit.
    pub(crate) fn crosses(&self, from: usize, to: usize) -> bool {
        self.unit_of[from] != self.unit_of[to]
    }

    /// Successors inside a region: [`Plan::intra_successors`] and a local call's target (the
    /// callee's code up to its `exit` belongs to the caller's region).
    fn region_successors(&self, b: usize) -> [Option<usize>; 3] {
        let [a, c] = self.intra_successors(b);
        let callee = match self.blocks[b].term {
            Term::Call {
                target: Target::Block(t),
                ..
            } => Some(t),
            _ => None,
        };
        [a, c, callee]
    }

    /// Reachability, units, checkpoints, limits and entries. With `ret_tests`, return sites
    /// entered only by returns are tested in the shared `ret` block instead of at their start.
    fn analyse(&mut self, function_size: usize, ret_tests: bool) {
        let n = self.blocks.len();
        self.units = vec![Unit {
            blocks: 0..n,
            entries: Vec::new(),
        }];
        let Target::Block(entry) = self.entry else {
            return;
        };
        // Roots of regions: the entry and the return sites of reachable calls.
        let mut roots = vec![entry];
        let mut stack = vec![entry];
        self.blocks[entry].reachable = true;
        while let Some(b) = stack.pop() {
            let mut next: Vec<usize> = self.region_successors(b).into_iter().flatten().collect();
            if let Term::Call { site, .. } = self.blocks[b].term {
                roots.push(self.site(site));
                next.push(self.site(site));
            }
            for s in next {
                if !self.blocks[s].reachable {
                    self.blocks[s].reachable = true;
                    stack.push(s);
                }
            }
        }

        self.cut_units(function_size);
        // Blocks entered from another unit start regions too; so does the entry.
        let mut entered = vec![false; n];
        let mut preds = vec![0u32; n];
        preds[entry] += 1;
        for b in 0..n {
            if !self.blocks[b].reachable {
                continue;
            }
            for t in self.region_successors(b).into_iter().flatten() {
                preds[t] += 1;
                if self.crosses(b, t) {
                    roots.push(t);
                    entered[t] = true;
                }
            }
        }
        for &r in &roots {
            self.blocks[r].checkpoint = true;
            self.blocks[r].tested = true;
        }

        // Depth-first search from every root: targets of retreating edges become checkpoints.
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut color = vec![WHITE; n];
        let mut postorder = Vec::with_capacity(n);
        for &root in &roots {
            if color[root] != WHITE {
                continue;
            }
            color[root] = GREY;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (b, ref mut i)) = stack.last_mut() {
                let succs = self.region_successors(b);
                if let Some(s) = succs.get(*i).copied() {
                    *i += 1;
                    let Some(s) = s else { continue };
                    match color[s] {
                        WHITE => {
                            color[s] = GREY;
                            stack.push((s, 0));
                        }
                        GREY => {
                            self.blocks[s].checkpoint = true;
                            self.blocks[s].tested = true;
                        }
                        _ => {}
                    }
                } else {
                    color[b] = BLACK;
                    postorder.push(b);
                    stack.pop();
                }
            }
        }

        // No stretch between checkpoints longer than MAX_STRETCH: in topological order of the
        // acyclic graph (reverse post-order; every retreating edge enters a checkpoint), the
        // longest path from a checkpoint to each block's start.
        let mut before = vec![0u64; n];
        for &b in postorder.iter().rev() {
            let cost = self.blocks[b].cost();
            if self.blocks[b].checkpoint {
                before[b] = 0;
            } else if before[b] + cost > MAX_STRETCH as u64 {
                self.blocks[b].checkpoint = true;
                self.blocks[b].tested = true;
                before[b] = 0;
            }
            let after = before[b] + cost;
            for s in self.region_successors(b).into_iter().flatten() {
                if !self.blocks[s].checkpoint {
                    before[s] = before[s].max(after);
                }
            }
        }

        // Longest path to the next checkpoint, in post-order of the same graph.
        let mut longest = vec![0u64; n];
        for &b in &postorder {
            let tail = self
                .region_successors(b)
                .into_iter()
                .flatten()
                .filter(|&s| !self.blocks[s].checkpoint)
                .map(|s| longest[s])
                .max()
                .unwrap_or(0);
            longest[b] = self.blocks[b].cost().saturating_add(tail);
        }
        for (block, l) in self.blocks.iter_mut().zip(longest) {
            block.limit = l;
        }

        // Entries: the program's entry, return sites, and targets of edges between units.
        entered[entry] = true;
        for b in 0..n {
            if let (true, Term::Call { site, .. }) = (self.blocks[b].reachable, self.blocks[b].term)
            {
                let s = self.site(site);
                entered[s] = true;
                self.blocks[s].return_site = true;
            }
        }
        // Return sites that nothing but a return enters are tested in `ret`, before it jumps
        // to them, against the largest of their limits.
        if ret_tests {
            for (block, &preds) in self.blocks.iter_mut().zip(&preds) {
                if block.return_site && preds == 0 {
                    block.tested = false;
                    self.return_limit = self.return_limit.max(block.limit);
                }
            }
        }
        for unit in &mut self.units {
            for b in unit.blocks.clone() {
                if entered[b] && self.blocks[b].reachable {
                    self.entry_index[b] = unit.entries.len() as u32;
                    unit.entries.push(b);
                }
            }
        }
    }

    /// Cuts the blocks into units of about `function_size` instructions (at least one
    /// block each), preferring cuts that no loop spans: a cut inside a loop costs a trip
    /// through the dispatcher per iteration. A unit also ends after [`MAX_CALLS_PER_UNIT`]
    /// local calls (in a program that does not fit in one unit): each call's return site is
    /// a target of `ret`'s jump table (or of the dispatcher's), and the SSA construction and
    /// the register allocator pay for those tables quadratically in their size.
    fn cut_units(&mut self, function_size: usize) {
        let n = self.blocks.len();
        let size = function_size.max(1);
        let total: usize = self.blocks.iter().map(|b| b.insns.len()).sum();
        if total <= size {
            return;
        }
        // spans[i]: backward edges across the boundary before block i.
        let mut delta = vec![0i64; n + 1];
        for b in 0..n {
            for t in self.intra_successors(b).into_iter().flatten() {
                if t <= b {
                    delta[t + 1] += 1;
                    delta[b + 1] -= 1;
                }
            }
        }
        let mut spans = vec![0i64; n + 1];
        let mut running = 0;
        for i in 0..=n {
            running += delta[i];
            spans[i] = running;
        }
        let mut units = Vec::new();
        let mut start = 0;
        let mut count = 0;
        let mut calls = 0;
        let mut b = 0;
        while b < n {
            count += self.blocks[b].insns.len();
            calls += usize::from(matches!(self.blocks[b].term, Term::Call { .. }));
            b += 1;
            if (count < size && calls < MAX_CALLS_PER_UNIT) || b == n {
                continue;
            }
            // Look ahead up to half a unit for a boundary no loop spans; else the least spanned.
            let mut best = b;
            let mut ahead = 0;
            let mut i = b;
            while i < n && ahead <= size / 2 && spans[best] > 0 {
                if spans[i] < spans[best] {
                    best = i;
                }
                ahead += self.blocks[i].insns.len();
                i += 1;
            }
            b = best;
            units.push(Unit {
                blocks: start..b,
                entries: Vec::new(),
            });
            start = b;
            count = 0;
            calls = 0;
        }
        if start < n {
            units.push(Unit {
                blocks: start..n,
                entries: Vec::new(),
            });
        }
        for (u, unit) in units.iter().enumerate() {
            for b in unit.blocks.clone() {
                self.unit_of[b] = u as u32;
            }
        }
        self.units = units;
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
        Plan::build(&ebpf_isa::assemble(src).unwrap(), usize::MAX, false)
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
        let src = "mov %r1, 1\ncall local f\nadd %r0, 1\nexit\nf:\nmov %r0, 2\nexit";
        let p = plan(src);
        assert_eq!(p.sites, vec![1]);
        let checkpoints: Vec<bool> = p.blocks.iter().map(|b| b.checkpoint).collect();
        assert_eq!(
            checkpoints,
            [true, true, false],
            "the callee is in its caller's region"
        );
        assert_eq!(
            p.blocks[0].limit, 4,
            "mov, call, and the callee's mov, exit"
        );
        assert!(p.blocks[1].tested);
        // Tested in `ret` instead: nothing else enters the return site.
        let p = Plan::build(&ebpf_isa::assemble(src).unwrap(), usize::MAX, true);
        assert!(p.blocks[1].checkpoint && !p.blocks[1].tested);
        assert_eq!(p.return_limit, 2);
    }

    /// Many local calls in a program of several units: every unit holds at most
    /// `MAX_CALLS_PER_UNIT` of them (their return sites fill the jump tables), a program that
    /// fits in one unit stays whole, and the code split this way runs as the interpreter does,
    /// at every budget around the end of the run.
    #[test]
    fn many_calls_end_units() {
        let calls = 3 * MAX_CALLS_PER_UNIT + 10;
        let mut src = String::from("mov %r0, %r1\n");
        for i in 0..calls {
            src += &format!("mov %r1, %r0\ncall local f{i}\n");
        }
        src += "exit\n";
        for i in 0..calls {
            src += &format!("f{i}:\nmov %r0, %r1\nadd %r0, {i}\nexit\n");
        }
        let program = ebpf_isa::assemble(&src).unwrap();
        let size = 512;
        assert!(program.len() > size);
        let p = Plan::build(&program, size, true);
        assert!(
            p.units.len() > calls / MAX_CALLS_PER_UNIT,
            "{}",
            p.units.len()
        );
        for unit in &p.units {
            let in_unit = unit
                .blocks
                .clone()
                .filter(|&b| matches!(p.blocks[b].term, Term::Call { .. }))
                .count();
            assert!(in_unit <= MAX_CALLS_PER_UNIT, "{in_unit}");
        }
        assert_eq!(Plan::build(&program, usize::MAX, true).units.len(), 1);
        if !crate::host_supported() {
            eprintln!("skipping the run: cranelift does not support this host");
            return;
        }
        let options = crate::JitOptions::default().with_function_size(size);
        let jit = crate::compile(&program, &options).unwrap();
        let interp = ebpf_interp::Interpreter::new(&program);
        let helpers = ebpf_abi::Helpers::new();
        let full = 1 + 5 * calls as u64 + 1;
        for budget in [
            None,
            Some(0),
            Some(1),
            Some(full / 2),
            Some(full - 1),
            Some(full),
        ] {
            let limits = ebpf_abi::Limits {
                budget,
                ..ebpf_abi::Limits::default()
            };
            let run =
                |engine: &dyn Fn(ebpf_abi::MemoryMap<'_>) -> _| engine(ebpf_abi::MemoryMap::new());
            let expected = run(&|m| interp.run(m, [7, 0], &helpers, &limits));
            let got = run(&|m| jit.run(m, [7, 0], &helpers, &limits));
            assert_eq!(got, expected, "budget {budget:?}");
        }
        let exit = jit
            .run(
                ebpf_abi::MemoryMap::new(),
                [7, 0],
                &helpers,
                &Default::default(),
            )
            .unwrap();
        let sum: u64 = (0..calls as u64).sum();
        assert_eq!((exit.r0, exit.instructions), (7 + sum, full));
    }

    #[test]
    fn recursion_makes_the_callee_a_checkpoint() {
        let p = plan("call local f\nexit\nf:\njeq %r1, 0, +1\ncall local f\nexit");
        let f = p.blocks.iter().position(|b| b.insns.start == 2).unwrap();
        assert!(p.blocks[f].checkpoint && p.blocks[f].tested);
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
