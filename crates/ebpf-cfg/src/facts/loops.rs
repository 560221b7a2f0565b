//! Loops: the facts a JIT needs to check a loop once instead of on every iteration.
//!
//! - **Versions.** An access whose bound is a register the loop never writes — `p < end`
//!   with `end` loaded from a header, `i < n` with `n` read from the input — cannot be proven
//!   statically, but it is safe whenever that register, at the loop's entry, is no larger
//!   than some amount below a region's end. [`Version`] names those conditions; the accesses
//!   they prove were found by solving the loop again from an entry state that assumes them.
//!   A JIT tests the conditions once on entry and runs an unchecked copy of the loop when they
//!   hold, the checked one otherwise.
//! - **Trip counts.** A loop that is a single path around one cycle, with one exit test on a
//!   register that steps by a constant from a constant, runs a number of instructions known at
//!   its entry ([`LoopFact`]): the budget can be charged once.

use alloc::vec::Vec;
use core::ops::Range;

use ebpf_abi::semantics;
use ebpf_isa::{AluOp, Cond, Insn, Operand, Width};

use super::graph::{Graph, Term};
use super::state::{NONE, State};

/// A run-time condition on a register at a loop's entry: `r[reg] <= (end(region) + offset) >>
/// shift` as integers, where `end(region)` is the VM address one past the region's last byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The register (one the loop never writes).
    pub reg: u8,
    /// The region.
    pub region: u8,
    /// The offset added to the region's end.
    pub offset: i64,
    /// The shift applied after.
    pub shift: u8,
}

impl Condition {
    /// Whether the condition holds for a register value and the region's length.
    pub fn holds(&self, value: u64, region_len: u64) -> bool {
        let end = (i128::from(self.region) << 32) + i128::from(region_len);
        let bound = end + i128::from(self.offset);
        bound >= 0 && i128::from(value) <= bound >> self.shift
    }
}

/// A loop with a second, unchecked version: when every [`Condition`] holds at its entry, the
/// accesses listed are in bounds on every iteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The loop's only entry: the index of its first instruction.
    pub entry: usize,
    /// The loop's instructions, as ranges of instruction indices in program order.
    pub insns: Vec<Range<usize>>,
    /// What must hold on entry (all of them).
    pub conditions: Vec<Condition>,
    /// The accesses proven under the conditions (and not without): instruction index and
    /// region, sorted.
    pub accesses: Vec<(usize, u8)>,
}

/// A loop whose work is known when it is entered: a constant, or a closed form of registers
/// at its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopFact {
    /// The loop's only entry: the index of its first instruction.
    pub entry: usize,
    /// The loop's instructions, as ranges of instruction indices in program order.
    pub insns: Vec<Range<usize>>,
    /// Instructions one full trip around it executes.
    pub per_iteration: u64,
    /// Instructions from its entry up to and including the exit test.
    pub until_exit: u64,
    /// How many times it goes around.
    pub count: TripCount,
}

impl LoopFact {
    /// The instructions one entry executes in all, until it leaves, with `regs` the registers
    /// at its entry; `None` when the count is not known for them (an [`Counter`] whose closed
    /// form does not apply: the loop must be run and counted as it goes).
    pub fn instructions(&self, regs: &[u64; 11]) -> Option<u64> {
        match self.count {
            TripCount::Known { instructions, .. } => Some(instructions),
            TripCount::AtEntry(c) => {
                let bound = match c.bound {
                    Bound::Reg(r) => *regs.get(usize::from(r))?,
                    Bound::Imm(b) => b,
                };
                let x0 = *regs.get(usize::from(c.reg))?;
                c.instructions(x0, bound, self.per_iteration, self.until_exit)
            }
        }
    }

    /// What a dispatcher charges for one entry of the loop, with the figures the closed form
    /// of an [`TripCount::AtEntry`] count needs (see [`Counter::instructions`]).
    pub fn charge(&self) -> Charge {
        match self.count {
            TripCount::Known { instructions, .. } => Charge::Known(instructions),
            TripCount::AtEntry(counter) => Charge::AtEntry {
                counter,
                per_iteration: self.per_iteration,
                until_exit: self.until_exit,
            },
        }
    }
}

/// What a counted loop's dispatcher charges at the loop's entry ([`LoopFact::charge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The same instructions on every entry (`TripCount::Known`).
    Known(u64),
    /// `Counter::instructions` of the registers at the entry (`TripCount::AtEntry`); when
    /// its closed form does not apply, the ordinary loop runs.
    AtEntry {
        /// The loop's counter.
        counter: Counter,
        /// [`LoopFact::per_iteration`].
        per_iteration: u64,
        /// [`LoopFact::until_exit`].
        until_exit: u64,
    },
}

/// How many times a [`LoopFact`]'s loop goes around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TripCount {
    /// The same on every entry.
    Known {
        /// How many times its exit test runs per entry.
        trip_count: u64,
        /// Instructions one entry executes in all, until it leaves: `(trip_count - 1) *
        /// per_iteration + until_exit`.
        instructions: u64,
    },
    /// Computed at the entry from registers: see [`Counter::instructions`].
    AtEntry(Counter),
}

/// What a loop's exit test compares its counter with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A register the loop never writes, as it is at the entry.
    Reg(u8),
    /// A constant.
    Imm(u64),
}

/// The counter of a loop whose trip count is known only at run time. The `t`-th exit test
/// (from 0) sees `x_t = x0 + offset + t * step`, `x0` register `reg` at the entry and `step`
/// `±2^step_log2`, and the loop goes on while `x_t < bound` (`<=` if `inclusive`; `>`, `>=`
/// if `down`; signed if `signed`), or while `x_t != bound` if `until_equal` (step ±1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The counter's register.
    pub reg: u8,
    /// Added to it from the entry up to the first exit test.
    pub offset: u64,
    /// `log2 |step|` (at most 6).
    pub step_log2: u8,
    /// It steps down (and the loop goes on while it is above the bound).
    pub down: bool,
    /// The bound.
    pub bound: Bound,
    /// `<=` / `>=` rather than `<` / `>`.
    pub inclusive: bool,
    /// A signed comparison.
    pub signed: bool,
    /// The loop goes on while the counter differs from the bound (`!=`).
    pub until_equal: bool,
}

/// The largest trip count [`Counter::instructions`] answers for (`2^32 - 1`: a JIT tests
/// the high half): above it, the loop runs counted as it goes.
pub const MAX_AT_ENTRY_TRIPS: u64 = u32::MAX as u64;

impl Counter {
    /// The instructions one entry runs, for the counter's register `x0` and the bound `bound`
    /// at entry: `t * per_iteration + until_exit` for `t` full trips. `None` when the closed
    /// form does not apply: the counter could wrap around before it leaves, the loop would go
    /// on past [`MAX_AT_ENTRY_TRIPS`] trips, or the sum overflows.
    pub fn instructions(
        &self,
        x0: u64,
        bound: u64,
        per_iteration: u64,
        until_exit: u64,
    ) -> Option<u64> {
        let trips = self.trips(x0, bound)?;
        trips.checked_mul(per_iteration)?.checked_add(until_exit)
    }

    /// The full trips (exit tests that continue) for `x0` and `bound`, as [`instructions`]
    /// says. Every condition is brought to "goes on while `x < b`, `x` up by `2^k`": a signed
    /// order is the unsigned one with the top bit flipped on both sides, a down-counter is
    /// an up-counter on the complements (`!(x - s) == !x + s`, `!` reverses the order), and
    /// `x <= b` is `x < b + 1`.
    ///
    /// [`instructions`]: Counter::instructions
    pub fn trips(&self, x0: u64, bound: u64) -> Option<u64> {
        let (mut x, mut b) = (x0.wrapping_add(self.offset), bound);
        if self.signed {
            (x, b) = (x ^ 1 << 63, b ^ 1 << 63);
        }
        if self.down {
            (x, b) = (!x, !b);
        }
        if self.inclusive {
            b = b.checked_add(1)?;
        }
        if x >= b {
            // Equal at once leaves; beyond the bound, `!=` goes on until the counter wraps.
            return (!self.until_equal || x == b).then_some(0);
        }
        let k = u32::from(self.step_log2.min(63));
        // The last counter tested is below `b + 2^k`: no wrap while that fits.
        if b > u64::MAX - ((1u64 << k) - 1) {
            return None;
        }
        let trips = (b - x).div_ceil(1 << k);
        (trips <= MAX_AT_ENTRY_TRIPS).then_some(trips)
    }
}

/// Which registers the instructions of `comp` may write (bit `r`), calls included.
pub(crate) fn written(graph: &Graph, insns: &[Insn], comp: &[u32]) -> u16 {
    let mut mask = 0u16;
    for &b in comp {
        let block = &graph.blocks[b as usize];
        for insn in &insns[block.range()] {
            for r in 0..=10u8 {
                let reg = ebpf_isa::Reg::new(r).unwrap_or(ebpf_isa::Reg::R0);
                if crate::pointers::insn_writes(insn, reg) {
                    mask |= 1 << r;
                }
            }
        }
        if matches!(block.term, Term::Call { .. }) {
            mask |= 0b11_1111;
        }
    }
    mask
}

/// The instruction ranges of a component, in program order.
pub(crate) fn ranges(graph: &Graph, comp: &[u32]) -> Vec<Range<usize>> {
    let mut r: Vec<Range<usize>> = comp
        .iter()
        .map(|&b| graph.blocks[b as usize].range())
        .collect();
    r.sort_unstable_by_key(|x| x.start);
    r
}

/// An assumption that would prove an access in a loop: `(reg, shift, region, offset)`,
/// meaning `r[reg] <= (end(region) + offset) >> shift`.
pub(crate) type Candidate = (u8, u8, u8, i64);

/// Whether a candidate is the natural one of a comparison (preferred over the needs of single
/// accesses).
pub(crate) type Natural = bool;

/// What the loop would need to know about a register it does not write for the access of
/// `bytes` at `R[base] + off` to be in bounds: follows the upper bounds from the base
/// register to a register in `invariant` (chasing at most three steps). The region is the
/// one the base or that register points into, as far as their numbers and relations hint.
pub(crate) fn candidate(
    s: &State,
    base: usize,
    off: i16,
    bytes: u32,
    invariant: u16,
) -> Option<Candidate> {
    // R[base] <= (R[j] << k) + c: enough that (R[j] << k) + c + off + bytes <= End.
    let mut extra = i128::from(off) + i128::from(bytes);
    let mut r = base;
    for _ in 0..3 {
        let v = &s.regs[r];
        if v.rel == NONE {
            return None;
        }
        let j = usize::from(v.rel);
        let (k, c) = (v.rel_shift, s.rel_eff(r));
        if j != 10 && invariant & (1 << j) != 0 {
            let offset = i64::try_from(-(c + extra)).ok()?;
            let region = region_hint(s, base, i128::from(off)).or_else(|| region_hint(s, j, 0))?;
            return Some((j as u8, k, region, offset));
        }
        if k != 0 {
            return None;
        }
        extra += c;
        r = j;
    }
    None
}

/// The natural assumption about a register a loop never writes and compares with another:
/// that it is no later than the end of the region it points into (a claimed end pointer).
pub(crate) fn compared(s: &State, insn: &Insn, invariant: u16) -> Option<Candidate> {
    let Insn::Jump {
        dst,
        src: Operand::Reg(src),
        ..
    } = *insn
    else {
        return None;
    };
    let (d, r) = (usize::from(dst.index()), usize::from(src.index()));
    // A constant is a base, not a bound.
    let j = [r, d]
        .into_iter()
        .find(|&j| j != 10 && invariant & (1 << j) != 0 && s.regs[j].num.as_constant().is_none())?;
    let other = if j == r { d } else { r };
    let region = region_hint(s, j, 0).or_else(|| region_hint(s, other, 0))?;
    Some((j as u8, 0, region, 0))
}

/// The region register `r` (plus `off`) points into, as its smallest value or the pointer it
/// is linked to or bounded by suggest (a pointer plus an index that might wrap around).
fn region_hint(s: &State, r: usize, off: i128) -> Option<u8> {
    let v = &s.regs[r];
    if v.hint != NONE {
        return Some(v.hint);
    }
    let hints = [
        i128::from(v.num.umin) + off,
        if v.link != NONE {
            i128::from(v.link_off)
        } else {
            0
        },
        if v.rel != NONE {
            i128::from(v.rel_off)
        } else {
            0
        },
    ];
    hints.iter().find_map(|&h| {
        let region = u64::try_from(h >> 32).ok()?;
        (region != ebpf_abi::layout::NULL_REGION && region <= ebpf_abi::layout::MAX_REGION)
            .then_some(region as u8)
    })
}

/// The trip count of a loop that is one path around one cycle with one exit test, entered at
/// `comp[head]` with `state` (the join of everything that enters it). `None` unless the exit
/// test compares a register that steps by a constant, from a constant, with a constant.
pub(crate) fn trip(
    graph: &Graph,
    insns: &[Insn],
    comp: &[u32],
    head: usize,
    state: &State,
) -> Option<Counted> {
    // Walk the cycle from the head; every block must continue to exactly one block of the
    // component, and exactly one of them may also leave it (the exit test).
    let inside = |b: u32| comp.contains(&b);
    let mut order = Vec::with_capacity(comp.len());
    let mut b = comp[head];
    let mut exit: Option<(usize, bool)> = None; // (position in the walk, continue when taken)
    loop {
        order.push(b);
        let block = &graph.blocks[b as usize];
        let next = match block.term {
            Term::Next(t) | Term::Jump(t) if inside(t) => t,
            Term::Branch { taken, next } => match (inside(taken), inside(next)) {
                (true, false) if exit.is_none() => {
                    exit = Some((order.len() - 1, true));
                    taken
                }
                (false, true) if exit.is_none() => {
                    exit = Some((order.len() - 1, false));
                    next
                }
                _ => return None,
            },
            _ => return None,
        };
        if next == comp[head] {
            break;
        }
        if order.len() >= comp.len() {
            return None;
        }
        b = next;
    }
    if order.len() != comp.len() {
        return None;
    }
    let (at, continue_when) = exit?;
    // Registers as `value at entry + offset` along the cycle (None: unknown).
    let mut sym: [Option<u64>; 11] = [Some(0); 11];
    let mut per_iteration = 0u64;
    let mut until_exit = 0u64;
    // The exit test: width, condition, counter, bound, and the registers just before it.
    type Test = (Width, Cond, usize, Operand, [Option<u64>; 11]);
    let mut test: Option<Test> = None;
    for (pos, &b) in order.iter().enumerate() {
        let block = &graph.blocks[b as usize];
        for i in block.range() {
            let insn = &insns[i];
            per_iteration += 1;
            if pos == at && i == block.last() {
                until_exit = per_iteration;
                if let Insn::Jump {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                } = *insn
                {
                    test = Some((width, cond, usize::from(dst.index()), src, sym));
                }
            }
            step(&mut sym, insn);
        }
    }
    let (width, cond, dst, src, at_test) = test?;
    // The counter steps by a constant per iteration.
    let step = sym[dst]?;
    let before_test = at_test[dst]?;
    let bound_reg = match src {
        Operand::Imm(_) => None,
        Operand::Reg(r) => {
            let r = usize::from(r.index());
            // Unchanged around the loop.
            if sym[r] != Some(0) || at_test[r] != Some(0) {
                return None;
            }
            Some(r)
        }
    };
    let entry = graph.blocks[comp[head] as usize].first as usize;
    let start = state.regs[dst].num.as_constant();
    let bound = match (src, bound_reg) {
        (Operand::Imm(k), _) => Some(match width {
            Width::W64 => i64::from(k) as u64,
            Width::W32 => u64::from(k as u32),
        }),
        (_, Some(r)) => state.regs[r].num.as_constant(),
        _ => None,
    };
    let (Some(start), Some(bound)) = (start, bound) else {
        // Known only at run time: the counter and the bound are registers at the entry.
        let counter = at_entry(width, cond, continue_when, dst, before_test, step, src)?;
        return Some(Counted {
            fact: LoopFact {
                entry,
                insns: ranges(graph, comp),
                per_iteration,
                until_exit,
                count: TripCount::AtEntry(counter),
            },
            counter: None,
        });
    };
    let first = start.wrapping_add(before_test);
    let trip_count = exit_iteration(width, cond, first, step, bound, continue_when)? + 1;
    let instructions = (trip_count - 1)
        .checked_mul(per_iteration)?
        .checked_add(until_exit)?;
    // The counter at the head: start + t * step for t < trip_count, when that never wraps.
    let delta = i128::from(step as i64);
    let last = i128::from(start) + delta * i128::from(trip_count - 1);
    let (lo, hi) = (i128::from(start).min(last), i128::from(start).max(last));
    let range = (lo >= 0 && hi <= i128::from(u64::MAX)).then_some((lo as u64, hi as u64));
    Some(Counted {
        fact: LoopFact {
            entry,
            insns: ranges(graph, comp),
            per_iteration,
            until_exit,
            count: TripCount::Known {
                trip_count,
                instructions,
            },
        },
        counter: range.map(|(lo, hi)| (dst, lo, hi)),
    })
}

/// The [`Counter`] of a 64-bit exit test `dst cond src` (the loop goes on when the jump is
/// `continue_when`), with `dst` stepping by `step` and `offset` past its entry value at the
/// test; `None` for a test that is not a threshold on a counter moving towards it by a power
/// of two up to 64 (or `!=` by one).
fn at_entry(
    width: Width,
    cond: Cond,
    continue_when: bool,
    dst: usize,
    offset: u64,
    step: u64,
    src: Operand,
) -> Option<Counter> {
    if width != Width::W64 {
        return None;
    }
    let goes_on = if continue_when {
        cond
    } else {
        match cond {
            Cond::Lt => Cond::Ge,
            Cond::Le => Cond::Gt,
            Cond::Gt => Cond::Le,
            Cond::Ge => Cond::Lt,
            Cond::Slt => Cond::Sge,
            Cond::Sle => Cond::Sgt,
            Cond::Sgt => Cond::Sle,
            Cond::Sge => Cond::Slt,
            Cond::Eq => Cond::Ne,
            Cond::Ne | Cond::Set => return None,
        }
    };
    let down = step > 1 << 63;
    let size = if down { step.wrapping_neg() } else { step };
    if !size.is_power_of_two() || size > 64 {
        return None;
    }
    let (towards_down, inclusive, signed, until_equal) = match goes_on {
        Cond::Lt => (false, false, false, false),
        Cond::Le => (false, true, false, false),
        Cond::Gt => (true, false, false, false),
        Cond::Ge => (true, true, false, false),
        Cond::Slt => (false, false, true, false),
        Cond::Sle => (false, true, true, false),
        Cond::Sgt => (true, false, true, false),
        Cond::Sge => (true, true, true, false),
        Cond::Ne if size == 1 => (down, false, false, true),
        _ => return None,
    };
    if towards_down != down {
        return None;
    }
    let bound = match src {
        Operand::Imm(k) => Bound::Imm(i64::from(k) as u64),
        Operand::Reg(r) => Bound::Reg(r.index()),
    };
    Some(Counter {
        reg: dst as u8,
        offset,
        step_log2: size.trailing_zeros() as u8,
        down,
        bound,
        inclusive,
        signed,
        until_equal,
    })
}

/// A loop with a trip count, and what that says of its counter at the head: register, and the
/// smallest and largest values it takes there.
pub(crate) struct Counted {
    pub(crate) fact: LoopFact,
    pub(crate) counter: Option<(usize, u64, u64)>,
}

/// What one instruction does to registers known as `entry value + offset`.
fn step(sym: &mut [Option<u64>; 11], insn: &Insn) {
    match *insn {
        Insn::Alu {
            width: Width::W64,
            op: op @ (AluOp::Add | AluOp::Sub),
            dst,
            src: Operand::Imm(k),
        } => {
            let d = usize::from(dst.index());
            let k = i64::from(k) as u64;
            sym[d] = sym[d].map(|o| {
                if op == AluOp::Add {
                    o.wrapping_add(k)
                } else {
                    o.wrapping_sub(k)
                }
            });
        }
        Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst,
            src: Operand::Reg(s),
        } if dst == s => {}
        _ => {
            for r in 0..=10u8 {
                let reg = ebpf_isa::Reg::new(r).unwrap_or(ebpf_isa::Reg::R0);
                if crate::pointers::insn_writes(insn, reg) {
                    sym[usize::from(r)] = None;
                }
            }
        }
    }
}

/// The first iteration `t` (from 0) at which the exit test `x_t cond bound`, with `x_t =
/// first + t * step` (wrapping), leaves the loop; `None` if it may never, or only after the
/// counter wraps around.
fn exit_iteration(
    width: Width,
    cond: Cond,
    first: u64,
    step: u64,
    bound: u64,
    continue_when: bool,
) -> Option<u64> {
    let bits = if width == Width::W64 { 64 } else { 32 };
    let mask = if bits == 64 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let x = |t: u64| first.wrapping_add(t.wrapping_mul(step)) & mask;
    let leaves = |t: u64| {
        let taken = match width {
            Width::W64 => semantics::cond64(cond, x(t), bound),
            Width::W32 => semantics::cond32(cond, x(t), bound),
        };
        taken != continue_when
    };
    if leaves(0) {
        return Some(0);
    }
    let step = step & mask;
    if step == 0 {
        return None;
    }
    let signed = matches!(cond, Cond::Sgt | Cond::Sge | Cond::Slt | Cond::Sle);
    // The counter as an integer that moves by `delta` (signed) each iteration, and how many
    // iterations it takes before it would leave its range (wrap).
    let delta: i128 = if step > mask / 2 {
        i128::from(step) - (i128::from(mask) + 1)
    } else {
        i128::from(step)
    };
    let value = |v: u64| -> i128 {
        if signed {
            if v > mask / 2 {
                i128::from(v) - (i128::from(mask) + 1)
            } else {
                i128::from(v)
            }
        } else {
            i128::from(v)
        }
    };
    let (lo, hi) = if signed {
        (-(i128::from(mask / 2) + 1), i128::from(mask / 2))
    } else {
        (0, i128::from(mask))
    };
    let x0 = value(x(0));
    let room = if delta > 0 { hi - x0 } else { x0 - lo };
    let t_max = u64::try_from(room / delta.abs()).ok()?.min(1 << 40);
    match cond {
        Cond::Eq | Cond::Ne => {
            // Leaves exactly when x_t == bound (or != bound, which happens at t = 1).
            let target = value(bound & mask);
            if (cond == Cond::Ne) == continue_when {
                // Continues while x != bound: leaves when x == bound.
                let diff = target - x0;
                if diff % delta != 0 || diff / delta <= 0 {
                    return None;
                }
                let t = u64::try_from(diff / delta).ok()?;
                (t <= t_max && leaves(t)).then_some(t)
            } else {
                // Continues while x == bound: x moves on at once.
                leaves(1).then_some(1)
            }
        }
        Cond::Set => None,
        _ => {
            // A threshold test on a monotone counter: binary search for the first exit.
            if !leaves(t_max) {
                return None;
            }
            let (mut lo, mut hi) = (0u64, t_max);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if leaves(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            Some(hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_iterations_of_counters() {
        // for (i = 0; i < 10; i++): x_t = t, leaves when !(t < 10): t = 10.
        assert_eq!(
            exit_iteration(Width::W64, Cond::Lt, 0, 1, 10, true),
            Some(10)
        );
        // do { i += 3 } while (i != 30) from 0, tested after the add: x_t = 3 + 3t.
        assert_eq!(
            exit_iteration(Width::W64, Cond::Ne, 3, 3, 30, true),
            Some(9)
        );
        // Never equal: 31 is not a multiple of 3.
        assert_eq!(exit_iteration(Width::W64, Cond::Ne, 3, 3, 31, true), None);
        // Down-counting with a signed test: while (i s> 0) i -= 2, from 9.
        assert_eq!(
            exit_iteration(Width::W64, Cond::Sgt, 9, (-2i64) as u64, 0, true),
            Some(5)
        );
        // A 32-bit counter that wraps before reaching the bound never leaves in range.
        assert_eq!(
            exit_iteration(Width::W32, Cond::Gt, 0xffff_fff0, 1, 5, false),
            Some(0),
            "0xfffffff0 > 5 leaves at once"
        );
        assert_eq!(
            exit_iteration(Width::W32, Cond::Lt, 0xffff_fff0, 1, 5, true),
            Some(0)
        );
        assert_eq!(
            exit_iteration(Width::W64, Cond::Lt, 0, 0, 10, true),
            None,
            "no progress"
        );
        // Every answer agrees with stepping.
        for (cond, first, step, bound) in [
            (Cond::Le, 1u64, 2u64, 21u64),
            (Cond::Ge, 100, (-7i64) as u64, 3),
            (Cond::Slt, (-50i64) as u64, 4, 7),
        ] {
            let t = exit_iteration(Width::W64, cond, first, step, bound, true).unwrap();
            let x = |t: u64| first.wrapping_add(t.wrapping_mul(step));
            assert!(!semantics::cond64(cond, x(t), bound));
            assert!((0..t).all(|u| semantics::cond64(cond, x(u), bound)));
        }
    }

    /// The full trips of `c` by stepping the counter, up to `limit`; `None` past it.
    fn stepped(c: &Counter, x0: u64, b: u64, limit: u64) -> Option<u64> {
        let step = if c.down {
            (1u64 << c.step_log2).wrapping_neg()
        } else {
            1 << c.step_log2
        };
        let cond = match (c.until_equal, c.down, c.inclusive, c.signed) {
            (true, ..) => Cond::Ne,
            (_, false, false, false) => Cond::Lt,
            (_, false, true, false) => Cond::Le,
            (_, true, false, false) => Cond::Gt,
            (_, true, true, false) => Cond::Ge,
            (_, false, false, true) => Cond::Slt,
            (_, false, true, true) => Cond::Sle,
            (_, true, false, true) => Cond::Sgt,
            (_, true, true, true) => Cond::Sge,
        };
        let mut x = x0.wrapping_add(c.offset);
        for t in 0..=limit {
            if !semantics::cond64(cond, x, b) {
                return Some(t);
            }
            x = x.wrapping_add(step);
        }
        None
    }

    #[test]
    fn run_time_trip_counts_equal_stepping_the_counter() {
        // A fixed seed: the same cases every run.
        let mut rng = ebpf_abi::SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next_u64();
        let edges = [
            0,
            1,
            63,
            64,
            1 << 63,
            (1 << 63) - 1,
            u64::MAX,
            u64::MAX - 64,
        ];
        let (mut answered, mut exact) = (0, 0);
        for case in 0..40_000u32 {
            let r = next();
            let c = Counter {
                reg: 1,
                offset: [0, 1, u64::MAX, 8, 3u64.wrapping_neg()][(r % 5) as usize],
                step_log2: [0, 0, 1, 2, 3, 6][(r >> 3) as usize % 6],
                down: r >> 8 & 1 == 1,
                bound: Bound::Reg(2),
                inclusive: r >> 9 & 1 == 1,
                signed: r >> 10 & 1 == 1,
                until_equal: r >> 11 & 7 == 0,
            };
            if c.until_equal && (c.step_log2 != 0 || c.inclusive || c.signed) {
                continue;
            }
            // Half the cases near the edges of both orders, where wrapping lurks; the rest in
            // the middle, where the closed form must always answer.
            let middle = case % 2 == 0;
            let base = if middle {
                1 << 40
            } else {
                edges[(r >> 14) as usize % edges.len()]
            };
            let spread = |v: u64| (v % 2001).wrapping_sub(1000);
            let x0 = base.wrapping_add(spread(next()));
            let b = base.wrapping_add(spread(next()));
            let per = 1 + next() % 20;
            let until = 1 + next() % per;
            let truth = stepped(&c, x0, b, 5_000);
            match c.instructions(x0, b, per, until) {
                Some(n) => {
                    answered += 1;
                    let t = truth.unwrap_or_else(|| panic!("{c:?} {x0:#x} {b:#x}: wraps"));
                    assert_eq!(n, t * per + until, "{c:?} {x0:#x} {b:#x}");
                    exact += 1;
                }
                None => assert!(!middle || truth.is_none(), "{c:?} {x0:#x} {b:#x}"),
            }
        }
        assert!(answered > 10_000 && exact == answered, "{answered}");
        // Huge counts: above the cap, or where the product overflows, no answer.
        let up = Counter {
            reg: 1,
            offset: 0,
            step_log2: 0,
            down: false,
            bound: Bound::Reg(2),
            inclusive: false,
            signed: false,
            until_equal: false,
        };
        assert_eq!(up.trips(0, MAX_AT_ENTRY_TRIPS), Some(MAX_AT_ENTRY_TRIPS));
        assert_eq!(up.trips(0, MAX_AT_ENTRY_TRIPS + 1), None);
        let most = MAX_AT_ENTRY_TRIPS;
        assert_eq!(up.instructions(0, most, 1 << 32, 0), Some(u64::MAX - most));
        assert_eq!(up.instructions(0, most, 1 << 32, 1 << 32), None, "2^64");
        assert_eq!(up.trips(0, u64::MAX), None);
        // `<=` the largest value never leaves.
        let le = Counter {
            inclusive: true,
            ..up
        };
        assert_eq!(le.trips(u64::MAX - 3, u64::MAX), None);
        // `!=` from beyond the bound goes on until the counter wraps.
        let ne = Counter {
            until_equal: true,
            ..up
        };
        assert_eq!(
            (ne.trips(5, 5), ne.trips(6, 5), ne.trips(4, 9)),
            (Some(0), None, Some(5))
        );
    }
}
