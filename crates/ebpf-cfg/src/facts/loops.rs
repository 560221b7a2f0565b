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

/// A loop whose work is known when it is entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopFact {
    /// The loop's only entry: the index of its first instruction.
    pub entry: usize,
    /// The loop's instructions, as ranges of instruction indices in program order.
    pub insns: Vec<Range<usize>>,
    /// How many times its exit test runs per entry.
    pub trip_count: u64,
    /// Instructions one full trip around it executes.
    pub per_iteration: u64,
    /// Instructions from its entry up to and including the exit test.
    pub until_exit: u64,
    /// Instructions one entry executes in all, until it leaves: `(trip_count - 1) *
    /// per_iteration + until_exit`.
    pub instructions: u64,
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
    // The counter steps by a constant per iteration and is a constant at entry.
    let step = sym[dst]?;
    let before_test = at_test[dst]?;
    let start = state.regs[dst].num.as_constant()?;
    let bound = match src {
        Operand::Imm(k) => match width {
            Width::W64 => i64::from(k) as u64,
            Width::W32 => u64::from(k as u32),
        },
        Operand::Reg(r) => {
            let r = usize::from(r.index());
            // Unchanged around the loop and a constant at entry.
            if sym[r] != Some(0) || at_test[r] != Some(0) {
                return None;
            }
            state.regs[r].num.as_constant()?
        }
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
            entry: graph.blocks[comp[head] as usize].first as usize,
            insns: ranges(graph, comp),
            trip_count,
            per_iteration,
            until_exit,
            instructions,
        },
        counter: range.map(|(lo, hi)| (dst, lo, hi)),
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
}
