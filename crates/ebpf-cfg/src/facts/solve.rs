//! The fixed point: an ascending phase over the execution graph (a worklist in reverse
//! post-order, widening at the heads of retreating edges after a few visits), then one
//! descending sweep that narrows loop heads and records the facts of every instruction.
//!
//! The descending sweep is sound without any monotonicity argument: visiting blocks in
//! reverse post-order, every predecessor of a block is either visited earlier in the same
//! sweep (a forward edge) or is the source of a retreating edge, whose contribution is taken
//! from the ascending phase's post-fixed point. Both over-approximate every concrete state.

use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;

use ebpf_abi::{STACK_FRAME_SIZE, layout};
use ebpf_isa::{AluOp, Insn, Operand, Program, Width};

use super::graph::{Graph, NO_BLOCK, Term};
use super::loops::{self, Condition, LoopFact, Version};
use super::num::{Bits, Num, Thresholds};
use super::state::{NONE, REGS, SLOTS, Space, State, Val};
use super::transfer::{Ctx, MAPS, MetaFields};
use super::{Access, Arg, Entry, Facts, InsnFact, NO_REGION, RegionSpec};

/// States move between blocks boxed: a move is a pointer, not a kilobyte.
type Boxed = Box<State>;

/// Visits of a loop head before widening starts.
const WIDEN_AFTER: u32 = 0;
/// Visits of a loop head after which every changing register is given up.
const COLLAPSE_AFTER: u32 = 16;
/// Visits of a loop head after which nothing is known there at all: a backstop that bounds
/// the ascent whatever the refinements do (collapse alone settles every loop we know of).
const GIVE_UP_AFTER: u32 = 2 * COLLAPSE_AFTER;

/// The analysis of one program: the state at every block entry, from which the state at any
/// instruction can be recomputed, and the facts.
#[derive(Clone, Debug)]
pub struct Analysis {
    graph: Graph,
    insns: Vec<Insn>,
    ctx: Ctx,
    entries: Vec<Option<Boxed>>,
    facts: Facts,
}

impl Analysis {
    /// Analyses `program` from `entry`, keeping the state at every block (see
    /// [`Analysis::registers_at`]).
    pub fn run(program: &Program, entry: &Entry) -> Analysis {
        Analysis::solve(program, entry, true, true)
    }

    /// The analysis; `keep`: keep the states at block entries (only the facts otherwise);
    /// `speculation`: also solve for [`InsnFact::speculation_safe`] (`false` everywhere
    /// otherwise).
    pub(crate) fn solve(
        program: &Program,
        entry: &Entry,
        keep: bool,
        speculation: bool,
    ) -> Analysis {
        let graph = Graph::of(program);
        let insns = program.insns().to_vec();
        let (ctx, init) = start(entry);
        let thresholds = thresholds(&insns);
        let mut solver = Solver {
            graph: &graph,
            insns: &insns,
            ctx: &ctx,
            ladder: Thresholds::ladder(thresholds),
        };
        let mut facts = vec![InsnFact::default(); insns.len()];
        let mut loops = Loops::default();
        let entries = solver.solve(&init, &mut facts, entry, keep, &mut loops);
        if speculation && facts.iter().any(|f| f.in_bounds) {
            // The same analysis again with every conditional jump refining nothing (both of
            // its sides flow): its states hold on every path a CPU may run, mispredicted
            // branches included. An access it also proves needs no branch (facts.md,
            // "Speculation").
            let spec_ctx = Ctx {
                speculative: true,
                ..ctx
            };
            let mut speculative = Solver {
                ctx: &spec_ctx,
                ..solver
            };
            let mut spec = vec![InsnFact::default(); insns.len()];
            speculative.solve(&init, &mut spec, entry, false, &mut Loops::default());
            for (f, s) in facts.iter_mut().zip(&spec) {
                f.speculation_safe = f.in_bounds && s.in_bounds && s.region == f.region;
            }
        }
        Analysis {
            facts: Facts::new(
                entry.clone(),
                program.clone(),
                facts,
                loops.versions,
                loops.loops,
            ),
            graph,
            insns,
            ctx,
            entries,
        }
    }

    /// The facts.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The facts, without the states.
    pub fn into_facts(self) -> Facts {
        self.facts
    }

    /// What is known of the registers just before instruction `index` executes (`None` if
    /// it is never reached).
    pub fn registers_at(&self, index: usize) -> Option<Registers> {
        let b = *self.graph.block_of.get(index)?;
        let block = self.graph.blocks[b as usize];
        let mut state = *self.entries.get(b as usize)?.clone()?;
        for i in block.first as usize..index {
            state.transfer(&self.insns[i], &self.ctx);
        }
        Some(Registers {
            state,
            space: self.ctx.space,
        })
    }
}

/// What is known of `r0`–`r10` at one point.
#[derive(Clone, Debug)]
pub struct Registers {
    state: State,
    space: Space,
}

/// What is known of one register's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueFacts {
    /// Smallest value, unsigned.
    pub umin: u64,
    /// Largest value, unsigned.
    pub umax: u64,
    /// Smallest value, signed.
    pub smin: i64,
    /// Largest value, signed.
    pub smax: i64,
    /// Values of the known bits.
    pub known_bits: u64,
    /// The unknown bits.
    pub unknown_bits: u64,
}

/// A relation between a register and another register or a region's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// `value ≡ (r[reg] << shift) + offset (mod 2^64)`.
    Link {
        /// The other register.
        reg: u8,
        /// The shift.
        shift: u8,
        /// The offset.
        offset: u64,
    },
    /// `value <= (r[reg] << shift) + offset - r[minus]`, as integers.
    AtMostReg {
        /// The other register.
        reg: u8,
        /// The shift.
        shift: u8,
        /// The offset.
        offset: i64,
        /// A register subtracted, if any.
        minus: Option<u8>,
    },
    /// `value <= (end(region) + offset) >> shift`, as integers (`==` when `exact`), where
    /// `end(region)` is the VM address one past the region's last byte.
    AtMostEnd {
        /// The region.
        region: u8,
        /// The shift.
        shift: u8,
        /// The offset.
        offset: i64,
        /// Equality.
        exact: bool,
    },
}

impl Registers {
    /// What is known of register `r`'s value.
    pub fn value(&self, r: usize) -> Option<ValueFacts> {
        let n = self.state.regs.get(r)?.num;
        Some(ValueFacts {
            umin: n.umin,
            umax: n.umax,
            smin: n.smin,
            smax: n.smax,
            known_bits: n.bits,
            unknown_bits: n.mask,
        })
    }

    /// The relations register `r` is known to be in.
    pub fn relations(&self, r: usize) -> Vec<Relation> {
        let Some(v) = self.state.regs.get(r) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if v.link != NONE {
            out.push(Relation::Link {
                reg: v.link,
                shift: v.link_shift,
                offset: v.link_off,
            });
        }
        if v.rel != NONE {
            out.push(Relation::AtMostReg {
                reg: v.rel,
                shift: v.rel_shift,
                offset: v.rel_off,
                minus: (v.rel_minus != NONE).then_some(v.rel_minus),
            });
        }
        if v.end != NONE {
            out.push(Relation::AtMostEnd {
                region: self.space.regions[usize::from(v.end)],
                shift: v.end_shift,
                offset: v.end_off,
                exact: v.end_exact,
            });
        }
        out
    }

    /// The smallest length region `region` is known to have here.
    pub fn min_len(&self, region: u8) -> u64 {
        self.space
            .slot_of(u64::from(region))
            .map_or(0, |s| self.state.len_min[usize::from(s)])
    }

    /// Whether the metadata buffer's address fields are known to be intact here.
    pub fn metadata_intact(&self) -> bool {
        self.state.meta
    }

    /// Whether a concrete machine state satisfies every fact known here: `regs` are the
    /// registers and `len(region)` the length of each region of the run. The first fact it
    /// breaks, in words, otherwise. For testing the analysis against real executions.
    pub fn check(
        &self,
        regs: &[u64; 11],
        len: impl Fn(u8) -> u64,
    ) -> Result<(), alloc::string::String> {
        use alloc::format;
        let end =
            |region: u8| -> i128 { i128::from(u64::from(region) << 32) + i128::from(len(region)) };
        for (r, v) in self.state.regs.iter().enumerate() {
            let x = regs[r];
            if !v.num.contains(x, Bits::B64) {
                return Err(format!("r{r} = {x:#x} outside {:?}", v.num));
            }
            if let Some((lo, hi)) = self.state.nonnull[r]
                && x != 0
                && !(lo..=hi).contains(&x)
            {
                return Err(format!(
                    "r{r} = {x:#x} neither NULL nor in {lo:#x}..={hi:#x}"
                ));
            }
            for rel in self.relations(r) {
                let ok = match rel {
                    Relation::Link { reg, shift, offset } => {
                        x == (regs[usize::from(reg)] << shift).wrapping_add(offset)
                    }
                    Relation::AtMostReg {
                        reg,
                        shift,
                        offset,
                        minus,
                    } => {
                        let minus = minus.map_or(0, |m| i128::from(regs[usize::from(m)]));
                        i128::from(x)
                            <= (i128::from(regs[usize::from(reg)]) << shift) + i128::from(offset)
                                - minus
                    }
                    Relation::AtMostEnd {
                        region,
                        shift,
                        offset,
                        exact,
                    } => {
                        let bound = (end(region) + i128::from(offset)) >> shift;
                        if exact {
                            i128::from(x) == bound
                        } else {
                            i128::from(x) <= bound
                        }
                    }
                };
                if !ok {
                    return Err(format!("r{r} = {x:#x} breaks {rel:?} (r = {regs:x?})"));
                }
            }
        }
        for (slot, &region) in self.space.regions.iter().enumerate() {
            if region != NONE && len(region) < self.state.len_min[slot] {
                return Err(format!(
                    "region {region} is {} bytes, below the known minimum {}",
                    len(region),
                    self.state.len_min[slot]
                ));
            }
        }
        Ok(())
    }
}

/// The run-time-length regions and the entry state.
fn start(entry: &Entry) -> (Ctx, State) {
    let mut regions = [NONE; SLOTS];
    let mut len_max = [0u64; SLOTS];
    regions[0] = layout::STACK as u8;
    len_max[0] = (ebpf_abi::MAX_CALL_DEPTH as u64 + 1) * STACK_FRAME_SIZE;
    let mut next = 1;
    for (r, spec) in entry.regions.iter().enumerate() {
        if r as u64 == layout::STACK || r as u64 == layout::NULL_REGION {
            continue;
        }
        if matches!(spec, RegionSpec::Dynamic { .. }) && next < SLOTS {
            regions[next] = r as u8;
            len_max[next] = u64::from(u32::MAX);
            next += 1;
        }
    }
    let space = Space { regions, len_max };
    let meta = entry.metadata.and_then(|f| {
        let input = space.slot_of(layout::INPUT)?;
        space.slot_of(layout::METADATA)?;
        Some(MetaFields {
            data: layout::vm_addr(layout::METADATA, u64::from(f.data)),
            data_end: layout::vm_addr(layout::METADATA, u64::from(f.data_end)),
            input,
            packet: f.packet,
        })
    });
    // A lookup returns NULL or `base + k` with `k + value_size <= len`, the region's exact
    // length (`MapRegion::len`, which the admission checks).
    // Its low `align_log2` bits are zero: the region's base is 4 GiB-aligned, and NULL is
    // aligned too.
    let mut maps = [(0, 0, 0, 0); MAPS];
    let known = entry.lookup.iter().flat_map(|l| &l.maps).filter_map(|m| {
        let base = u64::from(m.region) << 32;
        let last = m.len.checked_sub(u64::from(m.value_size))?;
        let align_log2 = m.align.max(1).trailing_zeros() as u8;
        (m.value_size > 0 && last <= u64::from(u32::MAX)).then_some((
            m.handle,
            base,
            base + last,
            align_log2,
        ))
    });
    for (slot, m) in maps.iter_mut().zip(known) {
        *slot = m;
    }
    let ctx = Ctx {
        space,
        meta,
        stack: 0,
        speculative: false,
        lookup: entry.lookup.as_ref().map(|l| l.helper),
        maps,
    };
    let mut state = State {
        regs: [Val::constant(0); REGS],
        len_min: [0; SLOTS],
        meta: meta.is_some(),
        nonnull: [None; REGS],
    };
    state.len_min[0] = STACK_FRAME_SIZE;
    if let (Some(f), Some(m)) = (entry.metadata, meta) {
        // The fields are in the buffer (the admission reads them).
        if let Some(slot) = ctx.space.slot_of(layout::METADATA) {
            state.len_min[usize::from(slot)] = u64::from(f.data.max(f.data_end)) + 8;
        }
        // A packet starts `offset` bytes into the input, no later than it ends, which is no
        // later than the input's end (the admission checks both).
        if let Some(offset) = m.packet {
            state.len_min[usize::from(m.input)] = u64::from(offset);
        }
    }
    for (k, arg) in entry.args.iter().enumerate() {
        state.regs[k + 1] = match *arg {
            // An unknown r1 is most likely the input's start: a guess, never a proof.
            Arg::Unknown if k == 0 => Val {
                hint: layout::INPUT as u8,
                ..Val::top()
            },
            Arg::Unknown => Val::top(),
            Arg::Start(r) => Val::constant(u64::from(r) << 32),
            Arg::Len(r) => match space.slot_of(u64::from(r)) {
                Some(s) => Val::end_exactly(s, -((u64::from(r) << 32) as i64), &space, 0),
                None => Val::of(Num::range(0, u64::from(u32::MAX), Bits::B64)),
            },
        };
    }
    // r10: the stack's end, a multiple of a frame.
    let mut r10 = Val::end_exactly(0, 0, &space, STACK_FRAME_SIZE);
    r10.num.bits &= !(STACK_FRAME_SIZE - 1);
    r10.num.mask &= !(STACK_FRAME_SIZE - 1);
    r10.num = r10.num.reduced(Bits::B64).unwrap_or(Num::top(Bits::B64));
    state.regs[10] = r10;
    (ctx, state)
}

/// Widening thresholds: every constant a conditional jump compares with, and its neighbours.
fn thresholds(insns: &[Insn]) -> Thresholds {
    let mut values = Vec::new();
    for insn in insns {
        if let Insn::Jump {
            width,
            src: Operand::Imm(k),
            ..
        } = *insn
        {
            let k = match width {
                Width::W64 => i64::from(k) as u64,
                Width::W32 => u64::from(k as u32),
            };
            values.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
        }
    }
    Thresholds::new(values)
}

struct Solver<'a> {
    graph: &'a Graph,
    insns: &'a [Insn],
    ctx: &'a Ctx,
    ladder: [Thresholds; 2],
}

impl Solver<'_> {
    /// Runs block `b` from `state`, calling `flow(target, state)` for each way out, and
    /// `record(index, state)` before each instruction.
    fn run_block(
        &self,
        b: u32,
        mut state: Boxed,
        record: &mut dyn FnMut(usize, &State),
        flow: &mut dyn FnMut(u32, Boxed),
    ) {
        let block = self.graph.blocks[b as usize];
        let last = block.last();
        for i in block.range() {
            record(i, &state);
            if i < last {
                state.transfer(&self.insns[i], self.ctx);
            }
        }
        let insn = &self.insns[last];
        match block.term {
            Term::Next(t) => {
                state.transfer(insn, self.ctx);
                flow(t, state);
            }
            Term::Jump(t) => flow(t, state),
            Term::Branch { taken, next } => {
                if let Insn::Jump {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                } = *insn
                {
                    if self.ctx.speculative {
                        // Both sides, unrefined: what a mispredicted branch may run.
                        flow(taken, Box::new((*state).clone()));
                        flow(next, state);
                        return;
                    }
                    if let Some(s) = state.branch(width, cond, dst, src, true, self.ctx) {
                        flow(taken, Box::new(s));
                    }
                    if state.refine(width, cond, dst, src, false, self.ctx) {
                        flow(next, state);
                    }
                }
            }
            Term::Call { target, ret } => {
                flow(target, Box::new(state.callee(self.ctx)));
                flow(ret, Box::new(state.returned(self.ctx)));
            }
            Term::Exit | Term::Trap => {}
        }
    }

    /// Solves every component in topological order. A block outside any cycle is run once,
    /// from the join of what flowed into it; a cyclic component first iterates to a
    /// post-fixed point (widening at the heads of its retreating edges), then runs one
    /// descending sweep, which records the facts and feeds the components after it.
    /// `keep`: also return the entry state of every block.
    fn solve(
        &mut self,
        init: &State,
        facts: &mut [InsnFact],
        entry: &Entry,
        keep: bool,
        out: &mut Loops,
    ) -> Vec<Option<Boxed>> {
        let n = self.graph.blocks.len();
        let mut kept: Vec<Option<Boxed>> = if keep { vec![None; n] } else { Vec::new() };
        // Per block: its position in the component being solved (u32::MAX: not in it).
        let mut local = vec![u32::MAX; n];
        if n == 0 {
            return kept;
        }
        let ctx = self.ctx;
        let components = self.graph.components();
        // What has flowed into blocks not yet run.
        let mut pending = Frontier::new(self.graph, &components);
        pending.joined[0] = Some(Box::new(init.clone()));
        for comp in components.iter() {
            if self.graph.acyclic(comp) {
                let b = comp[0];
                let (Some(state), parts) = pending.take(b, ctx) else {
                    continue;
                };
                if keep {
                    kept[b as usize] = Some(state.clone());
                }
                let mut record = |i, s: &State| facts[i] = record(&self.insns[i], s, ctx, entry);
                if parts.len() < 2 {
                    self.run_block(b, state, &mut record, &mut |t, s| pending.add(t, s, ctx));
                    continue;
                }
                // The facts of its instructions hold on the join; what flows out is the join
                // of what each part gives (each path comes from one predecessor), which keeps
                // a side that no path of one part takes from being joined into another's.
                self.run_block(b, state, &mut record, &mut |_, _| {});
                for part in parts {
                    self.run_block(b, part, &mut |_, _| {}, &mut |t, s| pending.add(t, s, ctx));
                }
                continue;
            }
            for (k, &b) in comp.iter().enumerate() {
                local[b as usize] = k as u32;
            }
            let ext: Vec<Option<Boxed>> = comp
                .iter()
                .map(|&b| pending.joined[b as usize].take())
                .collect();
            let entries: Vec<usize> = (0..comp.len()).filter(|&k| ext[k].is_some()).collect();
            let invariant = !loops::written(self.graph, self.insns, comp);
            let mut wanted: Vec<(loops::Candidate, loops::Natural)> = Vec::new();
            // Speculative paths prove no version and count no loop: both rest on a branch.
            let single = entries.len() == 1 && !ctx.speculative;
            let entry_state = if single {
                ext[entries[0]].as_deref().cloned()
            } else {
                None
            };
            // A counted loop's counter never leaves the values its trip count allows: that
            // caps it at the head (where widening would lose it).
            let counted = entry_state
                .as_ref()
                .and_then(|s| loops::trip(self.graph, self.insns, comp, entries[0], s));
            let cap = counted
                .as_ref()
                .and_then(|c| c.counter)
                .map(|(r, lo, hi)| (entries[0], r, Num::range(lo, hi, Bits::B64)));
            self.cycle(
                comp,
                &local,
                ext,
                cap,
                &mut |i, s| {
                    facts[i] = record(&self.insns[i], s, ctx, entry);
                    if single && !facts[i].in_bounds {
                        wanted.extend(want(&self.insns[i], s, invariant).map(|c| (c, false)));
                        wanted.extend(
                            loops::compared(s, &self.insns[i], invariant).map(|c| (c, true)),
                        );
                    }
                },
                &mut |b, s| {
                    if keep {
                        kept[b as usize] = Some(Box::new(s.clone()));
                    }
                },
                &mut |t, s| pending.add(t, s, ctx),
            );
            if let Some(c) = counted {
                out.loops.push(c.fact);
            }
            if let Some(state) = entry_state {
                let head = entries[0];
                if !wanted.is_empty() {
                    self.version(comp, &local, head, state, wanted, facts, entry, out);
                }
            }
            for &b in comp {
                local[b as usize] = u32::MAX;
            }
        }
        kept
    }

    /// One cyclic component: the ascent from `ext` (what flowed in from outside), then the
    /// descending sweep, which calls `record` before each instruction, `kept` with each block's
    /// final entry state, and `outside` for each state that leaves the component.
    #[expect(
        clippy::too_many_arguments,
        reason = "the component and what to do with it"
    )]
    fn cycle(
        &self,
        comp: &[u32],
        local: &[u32],
        ext: Vec<Option<Boxed>>,
        cap: Option<(usize, usize, Num)>,
        record: &mut dyn FnMut(usize, &State),
        kept: &mut dyn FnMut(u32, &State),
        outside: &mut dyn FnMut(u32, Boxed),
    ) {
        let ctx = self.ctx;
        let back = self.ascend(comp, local, &ext, cap.as_ref());
        let mut next: Vec<Option<Boxed>> = ext;
        for (slot, b) in next.iter_mut().zip(back) {
            if let Some(b) = b {
                *slot = Some(match slot.take() {
                    None => b,
                    Some(s) => Box::new(s.join(&b, &ctx.space, true)),
                });
            }
        }
        for (k, &b) in comp.iter().enumerate() {
            let Some(state) = next[k].take() else {
                continue;
            };
            kept(b, &state);
            self.run_block(b, state, record, &mut |t, s| {
                if t == NO_BLOCK {
                    return;
                }
                match local[t as usize] {
                    u32::MAX => outside(t, s),
                    _ if self.graph.retreating(b, t) => {}
                    lt => join_local(&mut next, lt as usize, s, ctx),
                }
            });
        }
    }

    /// Solves a loop (with one entry, `comp[head]`, entered in `state`) again under the
    /// assumptions its unproven accesses `wanted`, and records a [`Version`] with the
    /// accesses that proves.
    #[expect(
        clippy::too_many_arguments,
        reason = "the solver's state, passed through"
    )]
    fn version(
        &self,
        comp: &[u32],
        local: &[u32],
        head: usize,
        mut state: State,
        mut wanted: Vec<(loops::Candidate, loops::Natural)>,
        facts: &[InsnFact],
        entry: &Entry,
        out: &mut Loops,
    ) {
        // Per (register, shift, region): the natural assumption of a comparison (a claimed end
        // no later than the real one) if there is one, else the weakest need of an access —
        // the most likely to hold at run time. Solving under it proves every access that
        // follows from it, which may be more than the needs suggested.
        wanted.sort_unstable_by_key(|&((reg, shift, region, offset), natural)| {
            (reg, shift, region, !natural, core::cmp::Reverse(offset))
        });
        let mut conditions: Vec<Condition> = Vec::new();
        for ((reg, shift, region, offset), _) in wanted {
            if conditions
                .last()
                .is_some_and(|c| (c.reg, c.shift, c.region) == (reg, shift, region))
            {
                continue;
            }
            conditions.push(Condition {
                reg,
                region,
                offset,
                shift,
            });
        }
        let space = &self.ctx.space;
        for c in &conditions {
            let r = usize::from(c.reg);
            match space.slot_of(u64::from(c.region)) {
                Some(slot) => state.regs[r].offer_end(slot, c.shift, c.offset, space),
                None => {
                    // The dispatcher tests the condition against the run's own end of the
                    // region, so the solve may take a length as the end only where every
                    // admitted run has exactly that length (a map's values). A `Fixed`
                    // region's length is a minimum: a longer region is admitted, and values
                    // between the two ends would reach the copy unexamined.
                    let Some(len) = entry.exact_len(u64::from(c.region)) else {
                        continue;
                    };
                    let bound =
                        ((i128::from(c.region) << 32) + i128::from(len) + i128::from(c.offset))
                            >> c.shift;
                    let n = &mut state.regs[r].num;
                    if bound < 0 {
                        return;
                    }
                    if bound < i128::from(n.umax) {
                        n.umax = bound as u64;
                    }
                }
            }
            if !state.reduce(r, space) || !state.propagate(r, space) {
                return;
            }
        }
        let mut ext: Vec<Option<Boxed>> = vec![None; comp.len()];
        ext[head] = Some(Box::new(state));
        let mut proven: Vec<(usize, u8)> = Vec::new();
        let ctx = self.ctx;
        self.cycle(
            comp,
            local,
            ext,
            None,
            &mut |i, s| {
                let f = record(&self.insns[i], s, ctx, entry);
                if f.in_bounds && !facts[i].in_bounds {
                    proven.push((i, f.region));
                }
            },
            &mut |_, _| {},
            &mut |_, _| {},
        );
        if proven.is_empty() {
            return;
        }
        proven.sort_unstable();
        proven.dedup();
        out.versions.push(Version {
            entry: self.graph.blocks[comp[head] as usize].first as usize,
            insns: loops::ranges(self.graph, comp),
            conditions,
            accesses: proven,
        });
    }

    /// The ascending phase of one cyclic component (`local` maps its blocks to positions,
    /// `ext` is what flowed in from outside): iterates to a post-fixed point and returns, per
    /// block, the join of everything that flowed in over retreating edges.
    fn ascend(
        &self,
        comp: &[u32],
        local: &[u32],
        ext: &[Option<Boxed>],
        cap: Option<&(usize, usize, Num)>,
    ) -> Vec<Option<Boxed>> {
        let m = comp.len();
        let mut entries: Vec<Option<Boxed>> = ext.to_vec();
        // Per block: the latest state each retreating edge brought, by edge (the source's
        // position and the edge's rank among the source's ways out: a jump whose target is its
        // own next instruction brings two states, from both sides, over the same pair of blocks).
        let mut latest: Vec<Vec<((usize, usize), Boxed)>> = vec![Vec::new(); m];
        let mut visits = vec![0u32; m];
        let mut levels = vec![[0u8; REGS]; m];
        let mut head = vec![false; m];
        for &b in comp {
            for t in self.graph.blocks[b as usize].successors() {
                if local[t as usize] != u32::MAX && self.graph.retreating(b, t) {
                    head[local[t as usize] as usize] = true;
                }
            }
        }
        let mut queued = vec![false; m];
        let mut work = BinaryHeap::new();
        for (k, e) in entries.iter().enumerate() {
            if e.is_some() {
                queued[k] = true;
                work.push(Reverse(k as u32));
            }
        }
        let space = &self.ctx.space;
        while let Some(Reverse(k)) = work.pop() {
            let k = k as usize;
            queued[k] = false;
            let Some(state) = entries[k].clone() else {
                continue;
            };
            let b = comp[k];
            let mut outs: Vec<(usize, bool, Boxed)> = Vec::new();
            self.run_block(b, state, &mut |_, _| {}, &mut |t, s| {
                if t != NO_BLOCK && local[t as usize] != u32::MAX {
                    outs.push((local[t as usize] as usize, self.graph.retreating(b, t), s));
                }
            });
            for (rank, (t, retreating, s)) in outs.into_iter().enumerate() {
                if retreating {
                    match latest[t].iter_mut().find(|(edge, _)| *edge == (k, rank)) {
                        Some((_, slot)) => *slot = s.clone(),
                        None => latest[t].push(((k, rank), s.clone())),
                    }
                }
                // A counted loop's cap applies to every state at its head, before the test
                // for change: the join may lose it, and capping after would undo the change
                // forever.
                let capped = |mut state: Boxed| {
                    if let Some(&(h, r, ref range)) = cap
                        && h == t
                        && let Some(m) = state.regs[r].num.meet(range, Bits::B64)
                    {
                        state.regs[r].num = m;
                    }
                    state
                };
                let new = match &entries[t] {
                    None => capped(s),
                    Some(old) => {
                        let joined = capped(Box::new(old.join(&s, space, head[t])));
                        if joined == *old {
                            continue;
                        }
                        if head[t] {
                            visits[t] += 1;
                            capped(Box::new(if visits[t] > GIVE_UP_AFTER {
                                State::unknown()
                            } else if visits[t] > COLLAPSE_AFTER {
                                old.collapse(&joined)
                            } else if visits[t] > WIDEN_AFTER {
                                old.widen(&joined, &self.ladder, &mut levels[t], space)
                            } else {
                                *joined
                            }))
                        } else {
                            joined
                        }
                    }
                };
                entries[t] = Some(new);
                if !queued[t] {
                    queued[t] = true;
                    work.push(Reverse(t as u32));
                }
            }
        }
        // The last run of every block started from its final entry, so the latest states over
        // retreating edges are one application of the transfer to the post-fixed point:
        // joining them with what comes from outside narrows the heads.
        latest
            .into_iter()
            .map(|states| {
                states
                    .into_iter()
                    .map(|(_, s)| s)
                    .reduce(|a, b| Box::new(a.join(&b, space, true)))
            })
            .collect()
    }
}

/// What the loops of a program yield besides per-instruction facts.
#[derive(Default)]
pub(crate) struct Loops {
    pub(crate) versions: Vec<Version>,
    pub(crate) loops: Vec<LoopFact>,
}

/// What a loop would have to assume about a register it never writes to prove the access
/// `insn` (whose addresses lie in `region`).
fn want(insn: &Insn, s: &State, invariant: u16) -> Option<loops::Candidate> {
    let (base, off, bytes) = match *insn {
        Insn::Load { size, src, off, .. } => (src, off, size.bytes()),
        Insn::Store { size, dst, off, .. } => (dst, off, size.bytes()),
        Insn::Atomic {
            width, dst, off, ..
        } => (dst, off, if width == Width::W64 { 8 } else { 4 }),
        _ => return None,
    };
    loops::candidate(s, usize::from(base.index()), off, bytes, invariant)
}

/// The most predecessors' states a short branch block keeps apart ([`Frontier`]).
const PARTS: usize = 4;

/// The most instructions of a branch block whose incoming states are kept apart.
const SPLIT_LEN: u32 = 4;

/// What has flowed into the blocks not yet run: the join of it, or for a short branch block
/// outside any cycle, each state as it came (up to [`PARTS`]; past that, the join alone).
/// Running such a block once per incoming state refines each by the branch on its
/// own: `p = 0; if (a > b) goto L; p = a; L: if (a > b) goto drop` reaches the fall-through
/// only with `p = a`, where the join would have `p` 0 or `a`.
struct Frontier {
    /// Per block, the join of what flowed in (but the parts).
    joined: Vec<Option<Boxed>>,
    /// Per block that splits, the states that flowed in, each apart.
    parts: Vec<Vec<Boxed>>,
    /// Whether the block keeps its incoming states apart (cleared when too many come).
    split: Vec<bool>,
}

impl Frontier {
    fn new(graph: &Graph, components: &super::graph::Components) -> Frontier {
        let n = graph.blocks.len();
        let mut split = vec![false; n];
        for comp in components.iter() {
            let b = comp[0] as usize;
            let block = &graph.blocks[b];
            split[b] = graph.acyclic(comp)
                && matches!(block.term, Term::Branch { .. })
                && block.len <= SPLIT_LEN;
        }
        Frontier {
            joined: vec![None; n],
            parts: vec![Vec::new(); n],
            split,
        }
    }

    /// Joins `s` into what has flowed into block `t` (keeps it apart, if `t` splits).
    fn add(&mut self, t: u32, s: Boxed, ctx: &Ctx) {
        if t == NO_BLOCK {
            return;
        }
        let t = t as usize;
        if self.split[t] {
            if self.parts[t].len() < PARTS {
                self.parts[t].push(s);
                return;
            }
            self.split[t] = false;
            for part in core::mem::take(&mut self.parts[t]) {
                join_local(&mut self.joined, t, part, ctx);
            }
        }
        join_local(&mut self.joined, t, s, ctx);
    }

    /// What has flowed into acyclic block `b`: the join, and the states kept apart when
    /// there are two or more.
    fn take(&mut self, b: u32, ctx: &Ctx) -> (Option<Boxed>, Vec<Boxed>) {
        let b = b as usize;
        let parts = core::mem::take(&mut self.parts[b]);
        if parts.len() < 2 {
            for part in parts {
                join_local(&mut self.joined, b, part, ctx);
            }
            return (self.joined[b].take(), Vec::new());
        }
        let mut joined = parts[0].clone();
        for part in &parts[1..] {
            *joined = joined.join(part, &ctx.space, false);
        }
        (Some(joined), parts)
    }
}

fn join_local(states: &mut [Option<Boxed>], t: usize, s: Boxed, ctx: &Ctx) {
    states[t] = Some(match states[t].take() {
        None => s,
        Some(mut old) => {
            *old = old.join(&s, &ctx.space, false);
            old
        }
    });
}

/// The facts of instruction `insn` in state `s`.
fn record(insn: &Insn, s: &State, ctx: &Ctx, entry: &Entry) -> InsnFact {
    let mut f = InsnFact {
        reached: true,
        region: NO_REGION,
        guess: NO_REGION,
        ..InsnFact::default()
    };
    let access = match *insn {
        Insn::Load { size, src, off, .. } => {
            Some((usize::from(src.index()), off, size.bytes(), false, false))
        }
        Insn::Store { size, dst, off, .. } => {
            Some((usize::from(dst.index()), off, size.bytes(), true, false))
        }
        Insn::Atomic {
            width, dst, off, ..
        } => {
            let bytes = if width == Width::W64 { 8 } else { 4 };
            Some((usize::from(dst.index()), off, bytes, true, true))
        }
        _ => None,
    };
    if let Some((base, off, bytes, write, atomic)) = access {
        f.guess = s.regs[base].hint;
        match prove_access(s, base, off, bytes, write, atomic, ctx, entry) {
            Access::InBounds { region, .. } => {
                f.in_bounds = true;
                f.region = region;
            }
            Access::Checked { region } => f.region = region.unwrap_or(NO_REGION),
        }
    }
    if let Insn::Alu {
        width,
        op: op @ (AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod),
        dst,
        src: Operand::Reg(src),
    } = *insn
    {
        let (a, b, w) = match width {
            Width::W64 => (
                *s.num(usize::from(dst.index())),
                *s.num(usize::from(src.index())),
                Bits::B64,
            ),
            Width::W32 => (
                s.num(usize::from(dst.index())).low32(),
                s.num(usize::from(src.index())).low32(),
                Bits::B32,
            ),
        };
        f.nonzero = !b.contains(0, w);
        let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
        let min = match w {
            Bits::B64 => i64::MIN as u64,
            Bits::B32 => u64::from(i32::MIN as u32),
        };
        f.no_overflow = !signed || !b.contains(w.max(), w) || !a.contains(min, w);
    }
    f
}

/// Whether `size` bytes at `R[base] + off` are in bounds of one region on every path.
#[expect(
    clippy::too_many_arguments,
    reason = "one access, described field by field"
)]
fn prove_access(
    s: &State,
    base: usize,
    off: i16,
    bytes: u32,
    write: bool,
    atomic: bool,
    ctx: &Ctx,
    entry: &Entry,
) -> Access {
    let found = prove_by_range(s, base, off, bytes, write, atomic, ctx, entry);
    if matches!(found, Access::InBounds { .. }) || atomic {
        return found;
    }
    // The base's own range may be unbounded (widened) while a relation to another register
    // bounds it: prove it from the relations alone, in a run-time-length region.
    match prove_by_relation(s, base, i128::from(off), bytes, write, ctx, entry) {
        Some(region) => Access::InBounds {
            region,
            // (Decided by the caller: whether the speculative solve proves it too.)
            speculation_safe: false,
        },
        None => found,
    }
}

/// [`prove_access`] from the base's own range, then its relations to the region's end.
#[expect(
    clippy::too_many_arguments,
    reason = "one access, described field by field"
)]
fn prove_by_range(
    s: &State,
    base: usize,
    off: i16,
    bytes: u32,
    write: bool,
    atomic: bool,
    ctx: &Ctx,
    entry: &Entry,
) -> Access {
    let v = &s.regs[base];
    let off = i128::from(off);
    let lo = i128::from(v.num.umin) + off;
    let hi = i128::from(v.num.umax) + off + i128::from(bytes) - 1;
    if lo < 0 || hi > i128::from(u64::MAX) || lo >> 32 != hi >> 32 {
        return Access::Checked { region: None };
    }
    let region = (lo >> 32) as u64;
    if region == layout::NULL_REGION || region > layout::MAX_REGION {
        return Access::Checked { region: None };
    }
    let checked = Access::Checked {
        region: Some(region as u8),
    };
    if atomic {
        let low = u64::from(bytes) - 1;
        let aligned = v.num.mask & low == 0 && (v.num.bits.wrapping_add(off as u64)) & low == 0;
        if !aligned {
            return checked;
        }
    }
    let base_addr = i128::from(region << 32);
    let in_bounds = match entry.spec(region) {
        RegionSpec::Unknown => false,
        RegionSpec::Fixed { len, writable } => {
            (writable || !write) && hi < base_addr + i128::from(len)
        }
        RegionSpec::Dynamic { writable } => {
            let Some(slot) = ctx.space.slot_of(region) else {
                return checked;
            };
            (writable || !write) && {
                // The last byte, hi, must be below End: End >= base + len_min, or a
                // relation bounds the register by End.
                let numeric = hi < s.end_min(&ctx.space, slot);
                numeric || below_end(s, base, 0, slot, off + i128::from(bytes), 3)
            }
        }
    };
    if in_bounds {
        Access::InBounds {
            region: region as u8,
            // (Decided by the caller: whether the speculative solve proves it too.)
            speculation_safe: false,
        }
    } else {
        checked
    }
}

/// The region of a run-time length that `bytes` bytes at `R[base] + off` lie in on every path,
/// if the relations show it: the first byte at or after the region's start, from the base's
/// smallest value or from the register it is linked to; the byte after the last at or before
/// the region's end, from a relation of the base, of the register it is linked to, or of a
/// register whose bound subtracts the base (`x <= end - 2 - p` after `if (p + 2 + x > end)`,
/// then `x > 13`: `p + 16 <= end`).
fn prove_by_relation(
    s: &State,
    base: usize,
    off: i128,
    bytes: u32,
    write: bool,
    ctx: &Ctx,
    entry: &Entry,
) -> Option<u8> {
    let v = &s.regs[base];
    let extra = off + i128::from(bytes);
    // `R[base] ≡ (R[root] << shift) + o`, as integers when the root's range cannot wrap it.
    let linked = (v.link != NONE)
        .then(|| {
            let root = usize::from(v.link);
            let o = i128::from(v.link_off as i64);
            let n = &s.regs[root].num;
            let lo = (i128::from(n.umin) << v.link_shift) + o;
            let hi = (i128::from(n.umax) << v.link_shift) + o;
            (lo >= 0 && hi <= i128::from(u64::MAX)).then_some((root, v.link_shift, o, lo))
        })
        .flatten();
    let lowest = i128::from(v.num.umin).max(linked.map_or(0, |(_, _, _, lo)| lo));
    let start = lowest + off;
    let region = u64::try_from(start >> 32).ok()?;
    if region == layout::NULL_REGION || region > layout::MAX_REGION {
        return None;
    }
    let RegionSpec::Dynamic { writable } = entry.spec(region) else {
        return None;
    };
    let slot = ctx.space.slot_of(region)?;
    if write && !writable {
        return None;
    }
    // Every End of the slot lies within the region's 4 GiB: a first byte in the region and
    // an end of the access at or below End put the whole access in it.
    let below = below_end(s, base, 0, slot, extra, 3)
        || linked.is_some_and(|(root, shift, o, _)| below_end(s, root, shift, slot, o + extra, 3))
        || (0..REGS).any(|x| {
            let w = &s.regs[x];
            // R[x] <= (R[j] << k) + c - R[base], so R[base] <= (R[j] << k) + c - min(R[x]).
            x != base
                && usize::from(w.rel_minus) == base
                && w.rel != NONE
                && below_end(
                    s,
                    usize::from(w.rel),
                    w.rel_shift,
                    slot,
                    i128::from(w.rel_off) - i128::from(w.num.umin) + extra,
                    3,
                )
        });
    below.then_some(region as u8)
}

/// Whether `(R[r] << shift) + extra <= End(slot)` follows from the relations (chasing register
/// bounds up to `depth` steps).
fn below_end(s: &State, r: usize, shift: u8, slot: u8, extra: i128, depth: u32) -> bool {
    // (R[r] << shift) >= 0 and End < 2^64: a larger `extra` can never be shown, and bounding
    // it keeps the sums below inside i128.
    if extra > i128::from(u64::MAX) {
        return false;
    }
    let v = &s.regs[r];
    if v.end == slot && v.end_shift == shift && i128::from(v.end_off) + extra <= 0 {
        // (R[r] << t) <= End + e, as floor((End + e) / 2^t) >= R[r] >= 0.
        return true;
    }
    if depth == 0 || v.rel == NONE {
        return false;
    }
    // R[r] <= (R[j] << k) + c: enough that (R[j] << (k + shift)) + (c << shift) + extra <= End.
    let j = usize::from(v.rel);
    let total = u32::from(v.rel_shift) + u32::from(shift);
    if total >= 64 {
        return false;
    }
    let Some(next) = s
        .rel_eff(r)
        .checked_mul(1i128 << shift)
        .and_then(|c| c.checked_add(extra))
    else {
        return false;
    };
    below_end(s, j, total as u8, slot, next, depth - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf_abi::semantics;
    use ebpf_isa::{Cond, Operand, Reg, Width};
    use proptest::prelude::*;

    /// A state knowing nothing of `r2` and `r3` but that they lie in the given ranges.
    fn two_registers(x: (u64, u64), y: (u64, u64)) -> (Ctx, State) {
        let (ctx, mut s) = start(&Entry::unknown());
        s.regs[2] = Val::of(Num::range(x.0, x.1, Bits::B64));
        s.regs[3] = Val::of(Num::range(y.0, y.1, Bits::B64));
        (ctx, s)
    }

    /// `r3 > r2` on one side of a branch and `r3 <= r2` on a later one: no path has both,
    /// though the numbers alone allow each.
    #[test]
    fn opposite_relations_are_infeasible() {
        let (ctx, s) = two_registers((0, u64::MAX), (0, u64::MAX));
        let (w, gt, r2, r3) = (Width::W64, Cond::Gt, Operand::Reg(Reg::R2), Reg::R3);
        let taken = s.branch(w, gt, r3, r2, true, &ctx).unwrap();
        assert!(taken.branch(w, gt, r3, r2, false, &ctx).is_none());
        assert!(taken.branch(w, gt, r3, r2, true, &ctx).is_some());
        // `r2 < r3` and then `r2 >= r3`, written the other way round.
        let lt = s
            .branch(w, Cond::Lt, Reg::R2, Operand::Reg(Reg::R3), true, &ctx)
            .unwrap();
        assert!(
            lt.branch(w, Cond::Ge, Reg::R2, Operand::Reg(Reg::R3), true, &ctx)
                .is_none()
        );
        // `r3 >= r2` then `r3 <= r2`: `r3 == r2` is left.
        let ge = s
            .branch(w, Cond::Ge, r3, Operand::Reg(Reg::R2), true, &ctx)
            .unwrap();
        assert!(ge.branch(w, Cond::Le, r3, r2, true, &ctx).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Two compares of `r2` and `r3` in a row (either order, 64 or 32 bits): the sides a
        /// pair of concrete values takes are never called infeasible, and the values stay
        /// in the refined numbers.
        #[test]
        fn chained_compares_keep_every_concrete_path(
            c1 in prop::sample::select(Cond::ALL.to_vec()),
            c2 in prop::sample::select(Cond::ALL.to_vec()),
            w1 in any::<bool>(), w2 in any::<bool>(),
            swap1 in any::<bool>(), swap2 in any::<bool>(),
            base in any::<u64>(), dx in 0u64..64, dy in 0u64..64,
            spread in 0u64..64, small in any::<bool>(),
        ) {
            let base = if small { base % 200 } else { base };
            let p = base.wrapping_add(dx);
            let q = base.wrapping_add(dy);
            let range = |v: u64| (v.saturating_sub(spread), v.saturating_add(spread));
            let (ctx, mut s) = two_registers(range(p), range(q));
            let mut regs = [0u64; 11];
            regs[2] = p;
            regs[3] = q;
            for (cond, wide, swap) in [(c1, w1, swap1), (c2, w2, swap2)] {
                let (d, o) = if swap { (Reg::R2, Reg::R3) } else { (Reg::R3, Reg::R2) };
                let (a, b) = (regs[usize::from(d.index())], regs[usize::from(o.index())]);
                let (width, holds) = if wide {
                    (Width::W64, semantics::cond64(cond, a, b))
                } else {
                    (Width::W32, semantics::cond32(cond, a, b))
                };
                prop_assert!(
                    s.refine(width, cond, d, Operand::Reg(o), holds, &ctx),
                    "{cond:?} {width:?} {d:?} {o:?} = {holds} called infeasible: {p:#x} {q:#x}"
                );
                prop_assert!(s.regs[2].num.contains(p, Bits::B64));
                prop_assert!(s.regs[3].num.contains(q, Bits::B64));
            }
        }
    }
}
