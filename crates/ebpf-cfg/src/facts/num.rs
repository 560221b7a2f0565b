//! The numeric domain: what is known about one 32- or 64-bit number — an unsigned range, a
//! signed range and its known bits (a "tnum": a stride of 8 is "the low three bits are
//! known zero") — with the arithmetic of RFC 9669 on it and the refinement of a conditional
//! jump on each side.
//!
//! Every operation is sound: for any concrete operands inside the abstract ones, the concrete
//! result (computed with `ebpf_abi::semantics`) is inside the abstract result. The three
//! components are kept consistent by [`Num::reduce`], which also detects contradictions (an
//! empty set of values: an infeasible branch).
//!
//! A 32-bit number lives in the same struct: its unsigned range and known bits fit in the low
//! 32 bits and its signed range in `i32`. The ALU32 operations project their operands to 32
//! bits ([`Num::low32`]), compute at 32 bits and zero-extend ([`Num::zext`]), exactly as the
//! ISA does.

use ebpf_abi::semantics;
use ebpf_isa::{AluOp, ByteOrder, Cond, SignExtend, SwapWidth};

/// Bit width of a computation: 32 or 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bits {
    /// 32 bits.
    B32,
    /// 64 bits.
    B64,
}

impl Bits {
    /// All ones at this width.
    pub(crate) const fn max(self) -> u64 {
        match self {
            Bits::B32 => u32::MAX as u64,
            Bits::B64 => u64::MAX,
        }
    }

    /// The smallest signed value.
    const fn smin(self) -> i64 {
        match self {
            Bits::B32 => i32::MIN as i64,
            Bits::B64 => i64::MIN,
        }
    }

    /// The largest signed value.
    const fn smax(self) -> i64 {
        match self {
            Bits::B32 => i32::MAX as i64,
            Bits::B64 => i64::MAX,
        }
    }

    /// The number of bits.
    const fn count(self) -> u32 {
        match self {
            Bits::B32 => 32,
            Bits::B64 => 64,
        }
    }

    /// `v` read as a signed number of this width.
    const fn signed(self, v: u64) -> i64 {
        match self {
            Bits::B32 => v as u32 as i32 as i64,
            Bits::B64 => v as i64,
        }
    }

    /// The bit pattern of a signed number of this width.
    const fn unsigned(self, v: i64) -> u64 {
        match self {
            Bits::B32 => v as i32 as u32 as u64,
            Bits::B64 => v as u64,
        }
    }
}

/// What is known about a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Num {
    /// Smallest value, unsigned.
    pub(crate) umin: u64,
    /// Largest value, unsigned.
    pub(crate) umax: u64,
    /// Smallest value, signed.
    pub(crate) smin: i64,
    /// Largest value, signed.
    pub(crate) smax: i64,
    /// The values of the known bits (zero where `mask` has a one).
    pub(crate) bits: u64,
    /// The unknown bits.
    pub(crate) mask: u64,
}

impl Num {
    /// Any number of the width.
    #[inline]
    pub(crate) const fn top(w: Bits) -> Num {
        Num {
            umin: 0,
            umax: w.max(),
            smin: w.smin(),
            smax: w.smax(),
            bits: 0,
            mask: w.max(),
        }
    }

    /// Exactly `v` (a `w`-bit pattern).
    #[inline]
    pub(crate) const fn constant(v: u64, w: Bits) -> Num {
        let v = v & w.max();
        Num {
            umin: v,
            umax: v,
            smin: w.signed(v),
            smax: w.signed(v),
            bits: v,
            mask: 0,
        }
    }

    /// Any value in `lo..=hi` (unsigned, `lo <= hi`).
    pub(crate) fn range(lo: u64, hi: u64, w: Bits) -> Num {
        let mut n = Num::top(w);
        n.umin = lo;
        n.umax = hi;
        n.reduced(w).unwrap_or(Num::top(w))
    }

    /// The value if it is a single one.
    #[inline]
    pub(crate) fn as_constant(&self) -> Option<u64> {
        (self.umin == self.umax).then_some(self.umin)
    }

    /// Whether `v` is one of the values.
    pub(crate) fn contains(&self, v: u64, w: Bits) -> bool {
        let s = w.signed(v);
        self.umin <= v
            && v <= self.umax
            && self.smin <= s
            && s <= self.smax
            && v & !self.mask == self.bits
    }

    /// Makes the three components agree (each tightened by the others); `None` if no value
    /// satisfies all of them.
    #[inline]
    pub(crate) fn reduced(mut self, w: Bits) -> Option<Num> {
        self.reduce(w).then_some(self)
    }

    /// [`Num::reduced`] in place; `false` if no value is left.
    pub(crate) fn reduce(&mut self, w: Bits) -> bool {
        self.bits &= w.max();
        self.mask &= w.max();
        self.bits &= !self.mask;
        for _ in 0..2 {
            let before = (self.umin, self.umax, self.smin, self.smax, self.mask);
            // Known bits bound the unsigned range...
            self.umin = self.umin.max(self.bits);
            self.umax = self.umax.min(self.bits | self.mask);
            // ...and the signed one.
            let sign = 1u64 << (w.count() - 1);
            if self.mask & sign == 0 {
                // The sign bit is known: the values are the unsigned range of one half.
                let lo = w.signed(self.bits);
                let hi = w.signed(self.bits | self.mask);
                self.smin = self.smin.max(lo);
                self.smax = self.smax.min(hi);
            } else {
                self.smin = self.smin.max(w.signed(self.bits | sign));
                self.smax = self.smax.min(w.signed((self.bits | self.mask) & !sign));
            }
            // A signed range that stays on one side of zero is an unsigned range, and the
            // other way round.
            if (self.smin >= 0) == (self.smax >= 0) {
                self.umin = self.umin.max(w.unsigned(self.smin));
                self.umax = self.umax.min(w.unsigned(self.smax));
            }
            if w.signed(self.umin) <= w.signed(self.umax) {
                self.smin = self.smin.max(w.signed(self.umin));
                self.smax = self.smax.min(w.signed(self.umax));
            }
            if self.umin > self.umax || self.smin > self.smax {
                return false;
            }
            // The unsigned ends move to the nearest values the known bits allow.
            if self.umin & !self.mask != self.bits {
                match next_ge(self.bits, self.mask, self.umin) {
                    Some(v) => self.umin = v,
                    None => return false,
                }
            }
            if self.umax & !self.mask != self.bits {
                match prev_le(self.bits, self.mask, self.umax) {
                    Some(v) => self.umax = v,
                    None => return false,
                }
            }
            if self.umin > self.umax {
                return false;
            }
            // The range's common prefix is known.
            let diff = self.umin ^ self.umax;
            let prefix = if diff == 0 {
                u64::MAX
            } else {
                !(u64::MAX >> diff.leading_zeros())
            };
            let prefix = prefix & w.max();
            if (self.umin & prefix) & !self.mask != self.bits & prefix {
                return false;
            }
            self.bits |= self.umin & prefix;
            self.mask &= !prefix;
            if (self.umin, self.umax, self.smin, self.smax, self.mask) == before {
                break;
            }
        }
        true
    }

    /// The smallest set containing both.
    #[inline]
    pub(crate) fn join(&self, other: &Num) -> Num {
        let mask = self.mask | other.mask | (self.bits ^ other.bits);
        Num {
            umin: self.umin.min(other.umin),
            umax: self.umax.max(other.umax),
            smin: self.smin.min(other.smin),
            smax: self.smax.max(other.smax),
            bits: self.bits & !mask,
            mask,
        }
    }

    /// The values both allow; `None` if none.
    pub(crate) fn meet(&self, other: &Num, w: Bits) -> Option<Num> {
        let known_both = !self.mask & !other.mask;
        if (self.bits ^ other.bits) & known_both != 0 {
            return None;
        }
        Num {
            umin: self.umin.max(other.umin),
            umax: self.umax.min(other.umax),
            smin: self.smin.max(other.smin),
            smax: self.smax.min(other.smax),
            bits: self.bits | other.bits,
            mask: self.mask & other.mask,
        }
        .reduced(w)
    }

    /// Widening: components that grew jump to the next threshold (or the end of the range).
    pub(crate) fn widen(&self, new: &Num, w: Bits, thresholds: &Thresholds) -> Num {
        let umin = if new.umin < self.umin {
            thresholds.below(new.umin)
        } else {
            self.umin
        };
        let umax = if new.umax > self.umax {
            // A value inside one region's window first widens to the window's end.
            let window = (new.umin >> 32 == new.umax >> 32 && new.umin >> 32 != 0)
                .then_some(new.umax | 0xffff_ffff);
            thresholds
                .above(new.umax)
                .min(window.unwrap_or(u64::MAX))
                .min(w.max())
        } else {
            self.umax
        };
        let smin = if new.smin < self.smin {
            thresholds.below_signed(new.smin).max(w.smin())
        } else {
            self.smin
        };
        let smax = if new.smax > self.smax {
            thresholds.above_signed(new.smax).min(w.smax())
        } else {
            self.smax
        };
        let joined = self.join(new);
        // Known bits that changed widen in one step: every bit from the lowest unknown one
        // up becomes unknown (the low known bits, a stride, stay); the range's common prefix
        // comes back in `reduced`.
        let mask = if joined.mask == self.mask {
            joined.mask
        } else {
            (u64::MAX << joined.mask.trailing_zeros().min(63)) & w.max()
        };
        let n = Num {
            umin,
            umax,
            smin,
            smax,
            bits: joined.bits & !mask,
            mask,
        };
        n.reduced(w).unwrap_or(joined)
    }

    /// The low 32 bits, as a 32-bit number.
    pub(crate) fn low32(&self) -> Num {
        let mut n = Num::top(Bits::B32);
        n.bits = self.bits & 0xffff_ffff;
        n.mask = self.mask & 0xffff_ffff;
        if self.umin >> 32 == self.umax >> 32 {
            n.umin = self.umin & 0xffff_ffff;
            n.umax = self.umax & 0xffff_ffff;
        }
        if self.smin >= i64::from(i32::MIN) && self.smax <= i64::from(i32::MAX) {
            n.smin = self.smin;
            n.smax = self.smax;
        }
        n.reduced(Bits::B32).unwrap_or(Num::top(Bits::B32))
    }

    /// A 32-bit number zero-extended to 64 bits.
    pub(crate) fn zext(&self) -> Num {
        Num {
            umin: self.umin,
            umax: self.umax,
            smin: self.umin as i64,
            smax: self.umax as i64,
            bits: self.bits & 0xffff_ffff,
            mask: self.mask & 0xffff_ffff,
        }
    }

    /// Replaces the low 32 bits' facts by `low` (a 32-bit number), keeping what is known of the
    /// high half: exact when the high half is a single value.
    pub(crate) fn with_low32(&self, low: &Num) -> Option<Num> {
        let high_known = self.mask >> 32 == 0;
        let mut n = Num::top(Bits::B64);
        n.bits = (self.bits & !0xffff_ffff) | low.bits;
        n.mask = (self.mask & !0xffff_ffff) | low.mask;
        if high_known {
            let high = self.bits & !0xffff_ffff;
            n.umin = high | low.umin;
            n.umax = high | low.umax;
        }
        n.meet(self, Bits::B64)
    }
}

/// The smallest value `>= x` whose known bits are `bits` (unknown bits in `mask`).
fn next_ge(bits: u64, mask: u64, x: u64) -> Option<u64> {
    let fixed = !mask;
    let diff = (x ^ bits) & fixed;
    if diff == 0 {
        return Some(x);
    }
    let h = 63 - diff.leading_zeros();
    let below = if h == 63 {
        u64::MAX
    } else {
        (1u64 << (h + 1)) - 1
    };
    if bits & (1 << h) != 0 {
        // x has a 0 where a 1 is required: the prefix above h stays, the rest is the smallest.
        return Some((x & !below) | (bits & below));
    }
    // x has a 1 where a 0 is required: carry into the lowest free bit above h that x has 0.
    let free_above = mask & !below & !x;
    if free_above == 0 {
        return None;
    }
    let p = free_above.trailing_zeros();
    let keep = if p == 63 { 0 } else { !((1u64 << (p + 1)) - 1) };
    let low = (1u64 << p) - 1;
    Some((x & keep) | (1 << p) | (bits & low))
}

/// The largest value `<= x` whose known bits are `bits` (unknown bits in `mask`).
fn prev_le(bits: u64, mask: u64, x: u64) -> Option<u64> {
    // Mirror of `next_ge` on the complemented values.
    next_ge(!bits & !mask, mask, !x).map(|v| !v)
}

/// The widening thresholds: constants the program compares against (and their neighbours),
/// plus the ends of the ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct Thresholds {
    /// Sorted, deduplicated values, read unsigned.
    unsigned: alloc::vec::Vec<u64>,
    /// The same values read signed, sorted.
    signed: alloc::vec::Vec<i64>,
}

impl Thresholds {
    /// The widening ladder of a program: its own thresholds the first time, then only the
    /// 32-bit, sign and 64-bit boundaries (so each register climbs a few steps at most).
    pub(crate) fn ladder(program: Thresholds) -> [Thresholds; 2] {
        let coarse = [
            i32::MAX as u64,
            u64::from(u32::MAX),
            i64::MAX as u64,
            u64::MAX,
        ];
        let mut signed: alloc::vec::Vec<i64> = coarse.iter().map(|&v| v as i64).collect();
        signed.extend([i32::MIN as i64, i64::MIN, 0]);
        signed.sort_unstable();
        [
            program,
            Thresholds {
                unsigned: coarse.to_vec(),
                signed,
            },
        ]
    }

    /// Thresholds from the constants of a program.
    pub(crate) fn new(mut values: alloc::vec::Vec<u64>) -> Thresholds {
        let fixed = [
            0,
            u64::from(u8::MAX),
            u64::from(u16::MAX),
            i32::MAX as u64,
            u64::from(u32::MAX),
            i64::MAX as u64,
            u64::MAX,
            i32::MIN as i64 as u64,
            i64::MIN as u64,
        ];
        values.extend(fixed);
        values.sort_unstable();
        values.dedup();
        let mut signed: alloc::vec::Vec<i64> = values.iter().map(|&v| v as i64).collect();
        signed.sort_unstable();
        Thresholds {
            unsigned: values,
            signed,
        }
    }

    /// These thresholds and `more`.
    pub(crate) fn with(&self, more: &[u64]) -> Thresholds {
        let mut unsigned = self.unsigned.clone();
        unsigned.extend_from_slice(more);
        unsigned.sort_unstable();
        unsigned.dedup();
        let mut signed: alloc::vec::Vec<i64> = unsigned.iter().map(|&v| v as i64).collect();
        signed.sort_unstable();
        Thresholds { unsigned, signed }
    }

    /// The smallest threshold `>= v` (unsigned).
    fn above(&self, v: u64) -> u64 {
        let i = self.unsigned.partition_point(|&t| t < v);
        self.unsigned.get(i).copied().unwrap_or(u64::MAX)
    }

    /// The largest threshold `<= v` (unsigned).
    fn below(&self, v: u64) -> u64 {
        let i = self.unsigned.partition_point(|&t| t <= v);
        i.checked_sub(1)
            .and_then(|i| self.unsigned.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// The smallest threshold `>= v`, signed.
    fn above_signed(&self, v: i64) -> i64 {
        let i = self.signed.partition_point(|&t| t < v);
        self.signed.get(i).copied().unwrap_or(i64::MAX)
    }

    /// The largest threshold `<= v`, signed.
    fn below_signed(&self, v: i64) -> i64 {
        let i = self.signed.partition_point(|&t| t <= v);
        i.checked_sub(1)
            .and_then(|i| self.signed.get(i))
            .copied()
            .unwrap_or(i64::MIN)
    }
}

// ---------------------------------------------------------------------------------------------
// Known-bits arithmetic (the Linux verifier's tnum operations, written from their definitions).

#[derive(Clone, Copy)]
struct Tnum {
    v: u64,
    m: u64,
}

impl Tnum {
    #[inline]
    fn of(n: &Num) -> Tnum {
        Tnum {
            v: n.bits,
            m: n.mask,
        }
    }

    #[inline]
    fn add(a: Tnum, b: Tnum) -> Tnum {
        let sm = a.m.wrapping_add(b.m);
        let sv = a.v.wrapping_add(b.v);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | a.m | b.m;
        Tnum { v: sv & !mu, m: mu }
    }

    #[inline]
    fn sub(a: Tnum, b: Tnum) -> Tnum {
        let dv = a.v.wrapping_sub(b.v);
        let alpha = dv.wrapping_add(a.m);
        let beta = dv.wrapping_sub(b.m);
        let chi = alpha ^ beta;
        let mu = chi | a.m | b.m;
        Tnum { v: dv & !mu, m: mu }
    }

    #[inline]
    fn and(a: Tnum, b: Tnum) -> Tnum {
        let alpha = a.v | a.m;
        let beta = b.v | b.m;
        let v = a.v & b.v;
        Tnum {
            v,
            m: alpha & beta & !v,
        }
    }

    #[inline]
    fn or(a: Tnum, b: Tnum) -> Tnum {
        let v = a.v | b.v;
        let mu = a.m | b.m;
        Tnum { v, m: mu & !v }
    }

    #[inline]
    fn xor(a: Tnum, b: Tnum) -> Tnum {
        let v = a.v ^ b.v;
        let mu = a.m | b.m;
        Tnum { v: v & !mu, m: mu }
    }

    /// Known bits of a product: the low bits known in both operands give the product's low
    /// bits (mod 2^k), and known-zero low bits add up.
    fn mul(a: Tnum, b: Tnum) -> Tnum {
        if a.m == 0 && b.m == 0 {
            return Tnum {
                v: a.v.wrapping_mul(b.v),
                m: 0,
            };
        }
        let known = a.m.trailing_zeros().min(b.m.trailing_zeros());
        let zeros = ((a.v | a.m).trailing_zeros() + (b.v | b.m).trailing_zeros()).min(64);
        let low = |k: u32| if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
        if zeros >= known {
            Tnum {
                v: 0,
                m: !low(zeros),
            }
        } else {
            let v = a.v.wrapping_mul(b.v) & low(known);
            Tnum { v, m: !low(known) }
        }
    }

    /// The known bits as a number with any range (not reduced: the callers tighten the
    /// ranges, then reduce once).
    #[inline]
    fn into_num(self, w: Bits) -> Num {
        let mut n = Num::top(w);
        n.mask = self.m & w.max();
        n.bits = self.v & w.max() & !n.mask;
        n
    }
}

// ---------------------------------------------------------------------------------------------
// ALU operations.

/// `dst op src` at width `w` (operands already projected to `w` bits).
pub(crate) fn alu(op: AluOp, a: &Num, b: &Num, w: Bits) -> Num {
    if let (Some(x), Some(y)) = (a.as_constant(), b.as_constant()) {
        let r = match w {
            Bits::B64 => semantics::alu64(op, x, y),
            Bits::B32 => semantics::alu32(op, x, y),
        };
        return Num::constant(r, w);
    }
    let mut r = match op {
        AluOp::Mov => *b,
        AluOp::Add => add(a, b, w),
        AluOp::Sub => sub(a, b, w),
        AluOp::Mul => mul(a, b, w),
        AluOp::Div => div(a, b, w),
        AluOp::Mod => rem(a, b, w),
        AluOp::Sdiv => sdiv(a, b, w),
        AluOp::Smod => smod(a, b, w),
        AluOp::And => and(a, b, w),
        AluOp::Or => or(a, b, w),
        AluOp::Xor => Tnum::xor(Tnum::of(a), Tnum::of(b)).into_num(w),
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => shift(op, a, b, w),
    };
    if !r.reduce(w) {
        r = Num::top(w);
    }
    r
}

fn add(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Tnum::add(Tnum::of(a), Tnum::of(b)).into_num(w);
    let modulus = u128::from(w.max()) + 1;
    let lo = u128::from(a.umin) + u128::from(b.umin);
    let hi = u128::from(a.umax) + u128::from(b.umax);
    if hi < modulus {
        r.umin = r.umin.max(lo as u64);
        r.umax = r.umax.min(hi as u64);
    } else if lo >= modulus {
        r.umin = r.umin.max((lo - modulus) as u64);
        r.umax = r.umax.min((hi - modulus) as u64);
    }
    let slo = i128::from(a.smin) + i128::from(b.smin);
    let shi = i128::from(a.smax) + i128::from(b.smax);
    if slo >= i128::from(w.smin()) && shi <= i128::from(w.smax()) {
        r.smin = r.smin.max(slo as i64);
        r.smax = r.smax.min(shi as i64);
    }
    r
}

fn sub(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Tnum::sub(Tnum::of(a), Tnum::of(b)).into_num(w);
    let modulus = i128::from(w.max()) + 1;
    let lo = i128::from(a.umin) - i128::from(b.umax);
    let hi = i128::from(a.umax) - i128::from(b.umin);
    if lo >= 0 {
        r.umin = r.umin.max(lo as u64);
        r.umax = r.umax.min(hi as u64);
    } else if hi < 0 {
        r.umin = r.umin.max((lo + modulus) as u64);
        r.umax = r.umax.min((hi + modulus) as u64);
    }
    let slo = i128::from(a.smin) - i128::from(b.smax);
    let shi = i128::from(a.smax) - i128::from(b.smin);
    if slo >= i128::from(w.smin()) && shi <= i128::from(w.smax()) {
        r.smin = r.smin.max(slo as i64);
        r.smax = r.smax.min(shi as i64);
    }
    r
}

fn mul(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Tnum::mul(Tnum::of(a), Tnum::of(b)).into_num(w);
    let hi = u128::from(a.umax) * u128::from(b.umax);
    if hi <= u128::from(w.max()) {
        r.umin = r.umin.max(a.umin.wrapping_mul(b.umin));
        r.umax = r.umax.min(hi as u64);
    }
    let corners = [
        i128::from(a.smin) * i128::from(b.smin),
        i128::from(a.smin) * i128::from(b.smax),
        i128::from(a.smax) * i128::from(b.smin),
        i128::from(a.smax) * i128::from(b.smax),
    ];
    let (lo, hi) = corners.iter().fold((i128::MAX, i128::MIN), |(lo, hi), &c| {
        (lo.min(c), hi.max(c))
    });
    if lo >= i128::from(w.smin()) && hi <= i128::from(w.smax()) {
        r.smin = r.smin.max(lo as i64);
        r.smax = r.smax.min(hi as i64);
    }
    r
}

/// The divisor's values without zero, if it has any besides zero.
fn nonzero(b: &Num, w: Bits) -> Option<Num> {
    let mut d = *b;
    d.umin = d.umin.max(1);
    d.reduced(w)
}

fn div(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Num::top(w);
    match nonzero(b, w) {
        Some(d) => {
            r.umin = a.umin / d.umax;
            r.umax = a.umax / d.umin;
            if b.umin == 0 {
                r.umin = 0;
            }
        }
        None => return Num::constant(0, w),
    }
    r
}

fn rem(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Num::top(w);
    match nonzero(b, w) {
        Some(d) => {
            if a.umax < d.umin {
                // Every remainder is the dividend itself.
                return *a;
            }
            r.umax = a.umax.min(d.umax - 1);
            if b.umin == 0 {
                r.umax = r.umax.max(a.umax);
            }
        }
        None => return *a,
    }
    r
}

fn sdiv(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Num::top(w);
    // A divisor range on one side of zero, excluding -1 unless the dividend cannot be MIN:
    // the quotient is monotone in the dividend, so the corners bound it.
    let no_zero = b.smin > 0 || b.smax < 0;
    let no_overflow = b.smax < -1 || b.smin > -1 || a.smin > w.smin();
    if no_zero && no_overflow {
        let q = |x: i64, y: i64| i128::from(x) / i128::from(y);
        let corners = [
            q(a.smin, b.smin),
            q(a.smin, b.smax),
            q(a.smax, b.smin),
            q(a.smax, b.smax),
        ];
        let lo = corners.iter().min().copied().unwrap_or(i128::MIN);
        let hi = corners.iter().max().copied().unwrap_or(i128::MAX);
        if lo >= i128::from(w.smin()) && hi <= i128::from(w.smax()) {
            r.smin = lo as i64;
            r.smax = hi as i64;
        }
    }
    r
}

fn smod(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Num::top(w);
    // |a % b| < |b|, with the sign of a; b == 0 leaves a; MIN % -1 == 0.
    let bound = i128::from(b.smin).abs().max(i128::from(b.smax).abs());
    let limit = (bound - 1).max(0);
    let (mut lo, mut hi) = (-limit, limit);
    if a.smin >= 0 {
        lo = 0;
        hi = hi.min(i128::from(a.smax));
    } else if a.smax <= 0 {
        hi = 0;
        lo = lo.max(i128::from(a.smin));
    }
    if b.smin <= 0 && b.smax >= 0 {
        lo = lo.min(i128::from(a.smin));
        hi = hi.max(i128::from(a.smax));
    }
    if lo >= i128::from(w.smin()) && hi <= i128::from(w.smax()) {
        r.smin = lo as i64;
        r.smax = hi as i64;
    }
    r
}

fn and(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Tnum::and(Tnum::of(a), Tnum::of(b)).into_num(w);
    r.umax = r.umax.min(a.umax).min(b.umax);
    // Two non-negative operands give a non-negative result no larger than either.
    if a.smin >= 0 || b.smin >= 0 {
        r.smin = r.smin.max(0);
    }
    r
}

fn or(a: &Num, b: &Num, w: Bits) -> Num {
    let mut r = Tnum::or(Tnum::of(a), Tnum::of(b)).into_num(w);
    r.umin = r.umin.max(a.umin).max(b.umin);
    r
}

fn shift(op: AluOp, a: &Num, b: &Num, w: Bits) -> Num {
    let n = w.count();
    // The count is masked to the width.
    let count = alu(AluOp::And, b, &Num::constant(u64::from(n - 1), w), w);
    if let Some(k) = count.as_constant() {
        return shift_const(op, a, k as u32, w);
    }
    let (lo, hi) = (count.umin as u32, count.umax as u32);
    let mut r = Num::top(w);
    match op {
        AluOp::Rsh => {
            r.umin = a.umin >> hi;
            r.umax = a.umax >> lo;
        }
        AluOp::Lsh => {
            if hi < 64 && u128::from(a.umax) << hi <= u128::from(w.max()) {
                r.umin = a.umin << lo;
                r.umax = a.umax << hi;
            }
        }
        _ => {
            r.smin = (a.smin >> lo).min(a.smin >> hi);
            r.smax = (a.smax >> lo).max(a.smax >> hi);
        }
    }
    r
}

fn shift_const(op: AluOp, a: &Num, k: u32, w: Bits) -> Num {
    let n = w.count();
    let mut r = Num::top(w);
    match op {
        AluOp::Lsh => {
            r.bits = (a.bits << k) & w.max();
            r.mask = (a.mask << k) & w.max();
            if u128::from(a.umax) << k <= u128::from(w.max()) {
                r.umin = a.umin << k;
                r.umax = a.umax << k;
            }
            let slo = i128::from(a.smin) << k;
            let shi = i128::from(a.smax) << k;
            if slo >= i128::from(w.smin()) && shi <= i128::from(w.smax()) {
                r.smin = slo as i64;
                r.smax = shi as i64;
            }
        }
        AluOp::Rsh => {
            r.bits = a.bits >> k;
            r.mask = a.mask >> k;
            r.umin = a.umin >> k;
            r.umax = a.umax >> k;
        }
        _ => {
            // Arithmetic: shift the sign-extended pattern.
            let sign = 1u64 << (n - 1);
            let ext = |v: u64| w.signed(v);
            let bits = (ext(a.bits) >> k) as u64 & w.max();
            let mask = if a.mask & sign != 0 {
                (ext(a.mask | sign) >> k) as u64 & w.max()
            } else {
                (a.mask >> k) & w.max()
            };
            r.bits = bits & !mask;
            r.mask = mask;
            r.smin = a.smin >> k;
            r.smax = a.smax >> k;
        }
    }
    r
}

/// `-dst` at width `w`.
pub(crate) fn neg(a: &Num, w: Bits) -> Num {
    alu(AluOp::Sub, &Num::constant(0, w), a, w)
}

/// Sign extension of the low `from` bits of `a` to a `w`-bit result.
pub(crate) fn movsx(from: SignExtend, a: &Num, w: Bits) -> Num {
    if let Some(v) = a.as_constant() {
        return Num::constant(semantics::movsx(w == Bits::B64, from, v), w);
    }
    let (bits, half) = match from {
        SignExtend::From8 => (8, 1i64 << 7),
        SignExtend::From16 => (16, 1i64 << 15),
        SignExtend::From32 => (32, 1i64 << 31),
    };
    let field = (1u64 << bits) - 1;
    // The field's values as signed numbers, when the whole value fits in the field.
    let (lo, hi) = if a.umax <= field {
        let (ulo, uhi) = (a.umin as i64, a.umax as i64);
        if uhi < half {
            (ulo, uhi)
        } else if ulo >= half {
            (ulo - 2 * half, uhi - 2 * half)
        } else {
            (-half, half - 1)
        }
    } else {
        (-half, half - 1)
    };
    let mut r = Num::top(w);
    r.smin = lo;
    r.smax = hi;
    r.reduced(w).unwrap_or(Num::top(w))
}

/// A byte-order instruction on `a` (64-bit register).
pub(crate) fn endian(order: ByteOrder, width: SwapWidth, a: &Num) -> Num {
    if let Some(v) = a.as_constant() {
        return Num::constant(semantics::endian(order, width, v), Bits::B64);
    }
    let field = match width {
        SwapWidth::W16 => 0xffff,
        SwapWidth::W32 => 0xffff_ffff,
        SwapWidth::W64 => u64::MAX,
    };
    match order {
        // Truncation: the same as a mask.
        ByteOrder::Le => alu(AluOp::And, a, &Num::constant(field, Bits::B64), Bits::B64),
        ByteOrder::Be | ByteOrder::Swap => Num::range(0, field, Bits::B64),
    }
}

/// The value a `size`-byte load produces (zero- or sign-extended to 64 bits).
pub(crate) fn loaded(bytes: u32, signed: bool) -> Num {
    let field = if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    };
    if !signed || bytes >= 8 {
        return Num::range(0, field, Bits::B64);
    }
    let half = 1i64 << (8 * bytes - 1);
    let mut r = Num::top(Bits::B64);
    r.smin = -half;
    r.smax = half - 1;
    r.reduced(Bits::B64).unwrap_or(Num::top(Bits::B64))
}

// ---------------------------------------------------------------------------------------------
// Branch refinement.

/// The condition that holds on the other side of a jump.
pub(crate) fn negate(cond: Cond) -> Option<Cond> {
    Some(match cond {
        Cond::Eq => Cond::Ne,
        Cond::Ne => Cond::Eq,
        Cond::Gt => Cond::Le,
        Cond::Le => Cond::Gt,
        Cond::Ge => Cond::Lt,
        Cond::Lt => Cond::Ge,
        Cond::Sgt => Cond::Sle,
        Cond::Sle => Cond::Sgt,
        Cond::Sge => Cond::Slt,
        Cond::Slt => Cond::Sge,
        Cond::Set => return None,
    })
}

/// The operands narrowed to the values for which `a cond b` holds (`holds == true`) or fails,
/// at width `w`; `None` if no values make it so (that side of the jump is never taken).
pub(crate) fn refine(a: &Num, b: &Num, cond: Cond, holds: bool, w: Bits) -> Option<(Num, Num)> {
    if let (Some(x), Some(y)) = (a.as_constant(), b.as_constant()) {
        let taken = match w {
            Bits::B64 => semantics::cond64(cond, x, y),
            Bits::B32 => semantics::cond32(cond, x, y),
        };
        return (taken == holds).then_some((*a, *b));
    }
    let (mut a, mut b) = (*a, *b);
    let cond = if holds {
        cond
    } else {
        match negate(cond) {
            Some(c) => c,
            None => {
                // a & b == 0: the known one bits of one are zero in the other.
                if a.bits & b.bits != 0 {
                    return None;
                }
                if b.mask == 0 {
                    a.bits &= !b.bits;
                    a.mask &= !b.bits;
                }
                if a.mask == 0 {
                    b.bits &= !a.bits;
                    b.mask &= !a.bits;
                }
                return Some((a.reduced(w)?, b.reduced(w)?));
            }
        }
    };
    match cond {
        Cond::Eq => {
            let m = a.meet(&b, w)?;
            return Some((m, m));
        }
        Cond::Ne => {
            if let Some(k) = b.as_constant() {
                a = exclude(&a, k, w)?;
            }
            if let Some(k) = a.as_constant() {
                b = exclude(&b, k, w)?;
            }
        }
        Cond::Lt | Cond::Le | Cond::Gt | Cond::Ge => {
            // Normalise to x < y or x <= y.
            let (x, y, strict) = match cond {
                Cond::Lt => (&mut a, &mut b, true),
                Cond::Le => (&mut a, &mut b, false),
                Cond::Gt => (&mut b, &mut a, true),
                _ => (&mut b, &mut a, false),
            };
            let d = u64::from(strict);
            x.umax = x.umax.min(y.umax.checked_sub(d)?);
            y.umin = y.umin.max(x.umin.checked_add(d)?);
        }
        Cond::Slt | Cond::Sle | Cond::Sgt | Cond::Sge => {
            let (x, y, strict) = match cond {
                Cond::Slt => (&mut a, &mut b, true),
                Cond::Sle => (&mut a, &mut b, false),
                Cond::Sgt => (&mut b, &mut a, true),
                _ => (&mut b, &mut a, false),
            };
            let d = i64::from(strict);
            let ymax = y.smax.checked_sub(d)?;
            let xmin = x.smin.checked_add(d)?;
            if ymax < w.smin() || xmin > w.smax() {
                return None;
            }
            x.smax = x.smax.min(ymax);
            y.smin = y.smin.max(xmin);
        }
        Cond::Set => {
            // a & b != 0: impossible if no bit can be one in both.
            let possible_a = a.bits | a.mask;
            let possible_b = b.bits | b.mask;
            if possible_a & possible_b == 0 {
                return None;
            }
            if b.mask == 0 && b.bits.count_ones() == 1 {
                a.bits |= b.bits;
                a.mask &= !b.bits;
            }
            if a.mask == 0 && a.bits.count_ones() == 1 {
                b.bits |= a.bits;
                b.mask &= !a.bits;
            }
        }
    }
    Some((a.reduced(w)?, b.reduced(w)?))
}

/// `a` without the value `k` (only an end of a range can be removed).
fn exclude(a: &Num, k: u64, w: Bits) -> Option<Num> {
    let mut a = *a;
    if a.umin == k {
        a.umin = k.checked_add(1)?;
    }
    if a.umax == k {
        a.umax = k.checked_sub(1)?;
    }
    let s = w.signed(k);
    if a.smin == s {
        a.smin = s.checked_add(1)?;
    }
    if a.smax == s {
        a.smax = s.checked_sub(1)?;
    }
    a.reduced(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Up to `count` values spread over `n`, ends and known-bit patterns included.
    fn samples(n: &Num, w: Bits, salt: u64) -> alloc::vec::Vec<u64> {
        let mut out = alloc::vec![n.umin, n.umax, n.bits, n.bits | n.mask];
        out.push(w.unsigned(n.smin));
        out.push(w.unsigned(n.smax));
        let mut x = salt | 1;
        for _ in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(n.bits | (x & n.mask));
            let span = n.umax.wrapping_sub(n.umin);
            out.push(
                n.umin
                    .wrapping_add(if span == u64::MAX { x } else { x % (span + 1) }),
            );
        }
        out.retain(|&v| n.contains(v, w));
        out
    }

    /// An abstract number around `v`: a range of width `spread`, or known bits, or both.
    fn around(v: u64, spread: u64, known_low: u32, w: Bits) -> Num {
        let v = v & w.max();
        let mut n = Num::top(w);
        match spread % 4 {
            0 => return Num::constant(v, w),
            1 => {
                n.umin = v.saturating_sub(spread);
                n.umax = v.saturating_add(spread).min(w.max());
            }
            2 => {
                let low = if known_low >= 64 {
                    u64::MAX
                } else {
                    (1u64 << known_low) - 1
                };
                n.bits = v & low;
                n.mask = w.max() & !low;
            }
            _ => {
                let s = w.signed(v);
                n.smin = s.saturating_sub(spread as i64 & 0xffff);
                n.smax = s.saturating_add(spread as i64 & 0xffff).min(w.smax());
            }
        }
        n.reduced(w).unwrap_or(Num::constant(v, w))
    }

    fn width(wide: bool) -> Bits {
        if wide { Bits::B64 } else { Bits::B32 }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every ALU operation is sound: concrete results of concrete operands inside the
        /// abstract ones lie inside the abstract result.
        #[test]
        fn alu_is_sound(
            op in prop::sample::select(AluOp::ALL.to_vec()),
            x in any::<u64>(), y in any::<u64>(),
            sx in any::<u64>(), sy in any::<u64>(),
            kx in 0u32..40, ky in 0u32..40,
            wide in any::<bool>(), salt in any::<u64>(),
        ) {
            let w = width(wide);
            let small = |v: u64, s: u64| if s.is_multiple_of(3) { v % 70 } else { v };
            let (x, y) = (small(x, sx), small(y, sy));
            let a = around(x, sx % 1000, kx, w);
            let b = around(y, sy % 1000, ky, w);
            let r = alu(op, &a, &b, w);
            for p in samples(&a, w, salt) {
                for q in samples(&b, w, salt.rotate_left(7)) {
                    let c = match w {
                        Bits::B64 => semantics::alu64(op, p, q),
                        Bits::B32 => semantics::alu32(op, p, q),
                    };
                    prop_assert!(r.contains(c, w), "{op:?} {a:?} {b:?} -> {r:?}: {p:#x} {q:#x} = {c:#x}");
                }
            }
        }

        /// Branch refinement keeps every pair of values for which the condition has that
        /// outcome.
        #[test]
        fn refinement_is_sound(
            cond in prop::sample::select(Cond::ALL.to_vec()),
            x in any::<u64>(), y in any::<u64>(),
            sx in any::<u64>(), sy in any::<u64>(),
            kx in 0u32..40, ky in 0u32..40,
            wide in any::<bool>(), salt in any::<u64>(),
        ) {
            let w = width(wide);
            let a = around(x, sx % 1000, kx, w);
            let b = around(y % 4000, sy % 1000, ky, w);
            for holds in [true, false] {
                let r = refine(&a, &b, cond, holds, w);
                for p in samples(&a, w, salt) {
                    for q in samples(&b, w, salt.rotate_left(9)) {
                        let c = match w {
                            Bits::B64 => semantics::cond64(cond, p, q),
                            Bits::B32 => semantics::cond32(cond, p, q),
                        };
                        if c != holds {
                            continue;
                        }
                        let Some((ra, rb)) = r else {
                            return Err(TestCaseError::fail(alloc::format!(
                                "{cond:?}={holds} called infeasible: {a:?} {b:?} at {p:#x} {q:#x}")));
                        };
                        prop_assert!(ra.contains(p, w) && rb.contains(q, w),
                            "{cond:?}={holds} {a:?} {b:?} -> {ra:?} {rb:?} lost {p:#x} {q:#x}");
                    }
                }
            }
        }

        /// Join contains both; widening contains both; 32-bit projection and extension
        /// contain the projected values.
        #[test]
        fn lattice_operations_are_sound(
            x in any::<u64>(), y in any::<u64>(),
            sx in any::<u64>(), sy in any::<u64>(),
            kx in 0u32..40, ky in 0u32..40, salt in any::<u64>(),
        ) {
            let w = Bits::B64;
            let a = around(x, sx % 1000, kx, w);
            let b = around(y, sy % 1000, ky, w);
            let j = a.join(&b);
            let wide = a.widen(&b, w, &Thresholds::new(alloc::vec![100, 4096]));
            for p in samples(&a, w, salt).into_iter().chain(samples(&b, w, salt)) {
                prop_assert!(j.contains(p, w));
                prop_assert!(wide.contains(p, w));
            }
            for p in samples(&a, w, salt) {
                let low = a.low32();
                prop_assert!(low.contains(p & 0xffff_ffff, Bits::B32), "{a:?} low {low:?} {p:#x}");
                prop_assert!(low.zext().contains(p & 0xffff_ffff, Bits::B64));
                let with = a.with_low32(&low);
                prop_assert!(with.is_some_and(|n| n.contains(p, w)), "{a:?} with {low:?}: {with:?} {p:#x}");
            }
            if let Some(m) = a.meet(&b, w) {
                for p in samples(&a, w, salt) {
                    if b.contains(p, w) {
                        prop_assert!(m.contains(p, w));
                    }
                }
            }
        }

        #[test]
        fn next_and_previous_respect_known_bits(bits in any::<u64>(), mask in any::<u64>(), x in any::<u64>()) {
            let bits = bits & !mask;
            let ok = |v: u64| v & !mask == bits;
            match next_ge(bits, mask, x) {
                Some(v) => {
                    prop_assert!(v >= x && ok(v));
                    // Nothing in between: check a few values below v.
                    for d in 1..=8u64 {
                        if let Some(u) = v.checked_sub(d) && u >= x {
                            prop_assert!(!ok(u));
                        }
                    }
                }
                None => prop_assert!((bits | mask) < x, "the largest matching value is below x"),
            }
            if let Some(v) = prev_le(bits, mask, x) {
                prop_assert!(v <= x && ok(v));
            }
        }
    }

    #[test]
    fn strides_sharpen_inequalities() {
        // A multiple of 8 in 0..=64 that is not 64 is at most 56.
        let mut n = Num::range(0, 64, Bits::B64);
        n.bits = 0;
        n.mask = !7;
        let n = n.reduced(Bits::B64).unwrap();
        let (r, _) = refine(&n, &Num::constant(64, Bits::B64), Cond::Ne, true, Bits::B64).unwrap();
        assert_eq!((r.umin, r.umax), (0, 56));
        // x < 10, unsigned, from any value: at most 9.
        let (r, k) = refine(
            &Num::top(Bits::B64),
            &Num::constant(10, Bits::B64),
            Cond::Lt,
            true,
            Bits::B64,
        )
        .unwrap();
        assert_eq!((r.umin, r.umax, k.umin), (0, 9, 10));
        // The other side: at least 10.
        let (r, _) = refine(
            &Num::top(Bits::B64),
            &Num::constant(10, Bits::B64),
            Cond::Lt,
            false,
            Bits::B64,
        )
        .unwrap();
        assert_eq!(r.umin, 10);
        // Signed: x s< 0 makes x negative, so unsigned it is at least 2^63.
        let (r, _) = refine(
            &Num::top(Bits::B64),
            &Num::constant(0, Bits::B64),
            Cond::Slt,
            true,
            Bits::B64,
        )
        .unwrap();
        assert_eq!(r.umin, 1 << 63);
        // Contradiction: x < 0 unsigned.
        assert!(
            refine(
                &Num::top(Bits::B64),
                &Num::constant(0, Bits::B64),
                Cond::Lt,
                true,
                Bits::B64
            )
            .is_none()
        );
    }

    #[test]
    fn thirty_two_bit_arithmetic_wraps_and_zero_extends() {
        let a = Num::range(0xffff_fff0, 0xffff_ffff, Bits::B32);
        let r = alu(AluOp::Add, &a, &Num::constant(0x20, Bits::B32), Bits::B32);
        assert_eq!((r.umin, r.umax), (0x10, 0x1f));
        let z = r.zext();
        assert_eq!((z.smin, z.smax), (0x10, 0x1f));
        // The low half of a pointer range within one window.
        let p = Num::range(0x4_0000_0010, 0x4_0000_0020, Bits::B64);
        let low = p.low32();
        assert_eq!((low.umin, low.umax), (0x10, 0x20));
    }
}
