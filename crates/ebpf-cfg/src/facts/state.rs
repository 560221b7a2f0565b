//! Abstract machine states: per register a [`Num`] and up to three relations, plus what is
//! known of the run-time lengths of regions and whether the metadata buffer's address fields
//! are still intact.
//!
//! The relations are what make guards and loops provable:
//!
//! - **link** — `value ≡ (R[b] << s) + o (mod 2^64)`: an exact affine relation to another
//!   register, kept through copies, constant additions and shifts. A comparison that narrows
//!   one register narrows every register linked to it: after `r3 = r6 + 14; if r3 > end
//!   goto drop`, `r6 + 14 <= end` too. At loop heads, two registers that both step by
//!   constants (an index and a pointer, say) are discovered to be linked.
//! - **rel** — `value <= (R[j] << s) + c` as integers (no wrap-around): an upper bound by
//!   another register, from `if i < n` or `if p + 8 > end`.
//! - **end** — `value <= (End(region) + c) >> s` as integers, where `End(region)` is the
//!   run-time address one past the last byte of a region whose length is only known at run
//!   time (the input, the stack, the metadata buffer): from `r1 + r2` at entry, the metadata
//!   buffer's `data_end`, and every guard against them. `exact` marks `==` instead of `<=`.
//!
//! Bounds by `<=` as integers survive wrap-around of additions of non-negative numbers (a
//! wrapped sum is smaller than the true one), which is why they are kept as integer facts
//! rather than modulo 2^64; links are modulo 2^64 and exact.

use super::num::{Bits, Num, Thresholds};
use ebpf_abi::layout;

/// No register / no region.
pub(crate) const NONE: u8 = u8::MAX;

/// How many regions can have a run-time length (the stack and up to three more).
pub(crate) const SLOTS: usize = 4;

/// Registers `r0`–`r10`.
pub(crate) const REGS: usize = 11;

/// The run-time-length regions of an analysis: slot `k` is region `regions[k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Space {
    /// Region id of each slot (`NONE`: unused).
    pub(crate) regions: [u8; SLOTS],
    /// Largest possible length of each slot's region.
    pub(crate) len_max: [u64; SLOTS],
}

impl Space {
    /// VM address of the first byte of a slot's region.
    pub(crate) fn base(&self, slot: u8) -> u64 {
        u64::from(self.regions[usize::from(slot)]) << 32
    }

    /// The largest `End` of a slot's region.
    fn end_max(&self, slot: u8) -> i128 {
        i128::from(self.base(slot)) + i128::from(self.len_max[usize::from(slot)])
    }

    /// The slot of a region, if it has one.
    pub(crate) fn slot_of(&self, region: u64) -> Option<u8> {
        self.regions
            .iter()
            .position(|&r| r != NONE && u64::from(r) == region)
            .map(|s| s as u8)
    }
}

/// What is known about one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Val {
    /// Its value.
    pub(crate) num: Num,
    /// `value ≡ (R[link] << link_shift) + link_off`; `R[link]` itself has no link.
    pub(crate) link: u8,
    /// See `link`.
    pub(crate) link_shift: u8,
    /// See `link`.
    pub(crate) link_off: u64,
    /// `value <= (R[rel] << rel_shift) + rel_off` as integers.
    pub(crate) rel: u8,
    /// See `rel`.
    pub(crate) rel_shift: u8,
    /// See `rel`.
    pub(crate) rel_off: i64,
    /// When set, the bound is lower by this register's value: `value <= (R[rel] <<
    /// rel_shift) + rel_off - R[rel_minus]` (a pointer and the length that reaches an end).
    pub(crate) rel_minus: u8,
    /// `value <= (End(slot end) + end_off) >> end_shift` as integers (`==` when `end_exact`).
    pub(crate) end: u8,
    /// See `end`.
    pub(crate) end_shift: u8,
    /// See `end`.
    pub(crate) end_exact: bool,
    /// See `end`.
    pub(crate) end_off: i64,
    /// The region the value was derived from (a guess, not a fact: a pointer moved, plus or
    /// minus an index), `NONE` if none.
    pub(crate) hint: u8,
}

impl Val {
    /// Only a number, no relations.
    pub(crate) const fn of(num: Num) -> Val {
        Val {
            num,
            link: NONE,
            link_shift: 0,
            link_off: 0,
            rel: NONE,
            rel_shift: 0,
            rel_off: 0,
            rel_minus: NONE,
            end: NONE,
            end_shift: 0,
            end_exact: false,
            end_off: 0,
            hint: NONE,
        }
    }

    /// Anything.
    pub(crate) const fn top() -> Val {
        Val::of(Num::top(Bits::B64))
    }

    /// Exactly `v` (a VM address names its region as the hint).
    pub(crate) const fn constant(v: u64) -> Val {
        let mut val = Val::of(Num::constant(v, Bits::B64));
        let region = v >> 32;
        if region >= 1 && region <= 63 {
            val.hint = region as u8;
        }
        val
    }

    /// Exactly `End(slot) + off`.
    pub(crate) fn end_exactly(slot: u8, off: i64, space: &Space, len_min: u64) -> Val {
        let lo = i128::from(space.base(slot)) + i128::from(len_min) + i128::from(off);
        let hi = space.end_max(slot) + i128::from(off);
        let num = if lo >= 0 && hi <= i128::from(u64::MAX) {
            Num::range(lo as u64, hi as u64, Bits::B64)
        } else {
            Num::top(Bits::B64)
        };
        let mut v = Val {
            end: slot,
            end_shift: 0,
            end_exact: true,
            end_off: off,
            ..Val::of(num)
        };
        if off >= 0 {
            v.hint = space.regions[usize::from(slot)];
        }
        v
    }

    /// Anywhere from `lo` to `End(slot)`: a packet's end, bounded by the end of the region
    /// that holds it but not equal to it.
    pub(crate) fn end_at_most(slot: u8, lo: u64, space: &Space) -> Val {
        let hi = space.end_max(slot);
        let num = if i128::from(lo) <= hi && hi <= i128::from(u64::MAX) {
            Num::range(lo, hi as u64, Bits::B64)
        } else {
            Num::top(Bits::B64)
        };
        Val {
            end: slot,
            end_shift: 0,
            end_exact: false,
            end_off: 0,
            hint: space.regions[usize::from(slot)],
            ..Val::of(num)
        }
    }

    fn drop_link(&mut self) {
        self.link = NONE;
        self.link_shift = 0;
        self.link_off = 0;
    }

    fn drop_rel(&mut self) {
        self.rel = NONE;
        self.rel_shift = 0;
        self.rel_off = 0;
        self.rel_minus = NONE;
    }

    pub(crate) fn drop_end(&mut self) {
        self.end = NONE;
        self.end_shift = 0;
        self.end_exact = false;
        self.end_off = 0;
    }

    /// Sets the end relation if there is none or the new one is tighter: with the same slot
    /// and shift, a smaller offset; with another shift, a smaller bound at the region's largest
    /// end. Both bounds hold, so either choice is sound; this one keeps `n <= (End - v) >> 1`
    /// over the `n <= End - v + c` a rebase through a length derives from it, which a pointer
    /// stepping by 2 up to `n` needs.
    pub(crate) fn offer_end(&mut self, slot: u8, shift: u8, off: i64, space: &Space) {
        if self.end == NONE
            || (self.end == slot && self.end_shift == shift && off < self.end_off)
            || (self.end == slot
                && shift != self.end_shift
                && (space.end_max(slot) + i128::from(off)) >> shift
                    < (space.end_max(slot) + i128::from(self.end_off)) >> self.end_shift)
        {
            self.end = slot;
            self.end_shift = shift;
            self.end_off = off;
            self.end_exact = false;
        }
    }

    /// Sets the register relation (the newest comparison wins, unless the old one is to the
    /// same register and tighter).
    pub(crate) fn offer_rel(&mut self, reg: u8, shift: u8, off: i64) {
        self.offer_rel_minus(reg, shift, off, NONE);
    }

    /// [`Val::offer_rel`] with a subtracted register.
    pub(crate) fn offer_rel_minus(&mut self, reg: u8, shift: u8, off: i64, minus: u8) {
        if self.rel == reg
            && self.rel_shift == shift
            && self.rel_minus == minus
            && self.rel_off <= off
        {
            return;
        }
        self.rel = reg;
        self.rel_shift = shift;
        self.rel_off = off;
        self.rel_minus = if minus == reg { NONE } else { minus };
    }
}

/// `x` as an `i64` if it fits.
fn fit(x: i128) -> Option<i64> {
    i64::try_from(x).ok()
}

/// A machine state at one point, over every path that reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct State {
    /// `r0`–`r10`.
    pub(crate) regs: [Val; REGS],
    /// Per slot: the region's length is at least this.
    pub(crate) len_min: [u64; SLOTS],
    /// The metadata buffer's `data`/`data_end` fields still hold what the embedder wrote.
    pub(crate) meta: bool,
    /// Per register, `Some((lo, hi))`: the register is 0 or in `lo..=hi` (a map lookup's
    /// result: NULL or a whole value in the map's region; a join of NULL and a pointer, see
    /// `State::join_nonnull`). Its number includes 0; a 64-bit
    /// test against 0 narrows it to `lo..=hi` on the side where it is not 0. Cleared by every
    /// write to the register (`State::transfer`, `State::returned`).
    pub(crate) nonnull: [Option<(u64, u64)>; REGS],
}

impl State {
    /// Nothing known: every register any value, no region longer than nothing, the metadata
    /// possibly overwritten.
    pub(crate) fn unknown() -> State {
        State {
            regs: [Val::top(); REGS],
            len_min: [0; SLOTS],
            meta: false,
            nonnull: [None; REGS],
        }
    }

    /// What the register's non-zero values are, as `nonnull` keeps it: `None` when it is
    /// always 0.
    fn nonzero(&self, r: usize) -> Option<(u64, u64)> {
        if let Some(range) = self.nonnull[r] {
            return Some(range);
        }
        let n = &self.regs[r].num;
        (n.umax != 0).then(|| (n.umin.max(1), n.umax))
    }

    /// The join of `nonnull`: kept where either side has it, over the non-zero values of
    /// both (a lookup's result joined with a pointer checked against NULL stays
    /// NULL-or-a-value); and made where one side is 0 and the other a pointer into one region
    /// (`p = c ? &buf[k] : NULL`, tested `if (p)` later). Pointers only: a counter that is 0
    /// on one edge would gain a range that only churns.
    fn join_nonnull(&self, other: &State) -> [Option<(u64, u64)>; REGS] {
        let null_or_pointer = |zero: &State, pointer: &State, r: usize| {
            let n = &pointer.regs[r].num;
            let region = n.umin >> 32;
            zero.regs[r].num.as_constant() == Some(0)
                && n.umin >= 1
                && region == n.umax >> 32
                && region != layout::NULL_REGION
                && region <= layout::MAX_REGION
        };
        let mut out = [None; REGS];
        for (r, slot) in out.iter_mut().enumerate() {
            if self.nonnull[r].is_none()
                && other.nonnull[r].is_none()
                && !null_or_pointer(self, other, r)
                && !null_or_pointer(other, self, r)
            {
                continue;
            }
            *slot = match (self.nonzero(r), other.nonzero(r)) {
                (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                (Some(x), None) | (None, Some(x)) => Some(x),
                (None, None) => None,
            };
        }
        out
    }

    /// The numeric view of register `r`.
    pub(crate) fn num(&self, r: usize) -> &Num {
        &self.regs[r].num
    }

    /// The offset of register `i`'s bound with its subtracted register, if any, replaced by
    /// that register's smallest value.
    pub(crate) fn rel_eff(&self, i: usize) -> i128 {
        let v = &self.regs[i];
        let minus = match v.rel_minus {
            NONE => 0,
            m => i128::from(self.regs[usize::from(m)].num.umin),
        };
        i128::from(v.rel_off) - minus
    }

    /// Folds register `i`'s subtracted register into its bound's offset (before that register
    /// changes).
    pub(crate) fn concretize(&mut self, i: usize) {
        if self.regs[i].rel_minus == NONE {
            return;
        }
        match fit(self.rel_eff(i)) {
            Some(off) => {
                self.regs[i].rel_off = off;
                self.regs[i].rel_minus = NONE;
            }
            None => self.regs[i].drop_rel(),
        }
    }

    /// The smallest `End` of a slot's region in this state.
    pub(crate) fn end_min(&self, space: &Space, slot: u8) -> i128 {
        i128::from(space.base(slot)) + i128::from(self.len_min[usize::from(slot)])
    }

    /// `r`'s relation to `r`'s link base, in the canonical form `(rep, shift, off)` (a
    /// register that is its own representative is `(r, 0, 0)`).
    fn canon(&self, r: usize) -> (u8, u8, u64) {
        let v = &self.regs[r];
        if v.link == NONE {
            (r as u8, 0, 0)
        } else {
            (v.link, v.link_shift, v.link_off)
        }
    }

    /// Whether `R[i] ≡ (R[j] << s) + o` holds in this state.
    fn link_holds(&self, i: usize, j: usize, s: u8, o: u64) -> bool {
        let (ri, si, oi) = self.canon(i);
        let (rj, sj, oj) = self.canon(j);
        if ri == rj && u32::from(si) == u32::from(sj) + u32::from(s) && s < 64 {
            return oi == (oj << s).wrapping_add(o);
        }
        match (
            self.regs[i].num.as_constant(),
            self.regs[j].num.as_constant(),
        ) {
            (Some(a), Some(b)) => s < 64 && a == (b << s).wrapping_add(o),
            _ => false,
        }
    }

    /// `R[i]` expressed from `R[j]`: `(s, o)` with `R[i] ≡ (R[j] << s) + o`, when both are in
    /// one class and `j` is its representative or an unshifted member.
    pub(crate) fn express(&self, i: usize, j: usize) -> Option<(u8, u64)> {
        let (ri, si, oi) = self.canon(i);
        let (rj, sj, oj) = self.canon(j);
        if ri != rj || i == j {
            return None;
        }
        if sj == 0 {
            // R[rep] = R[j] - oj
            return Some((si, oi.wrapping_sub(oj << si)));
        }
        if si == sj {
            return Some((0, oi.wrapping_sub(oj)));
        }
        None
    }

    // -----------------------------------------------------------------------------------------
    // Overwriting a register.

    /// Prepares register `d` to be overwritten: registers linked to it are re-linked to
    /// another member of its class (or lose the link), and bounds by it are rebased or turned
    /// into numbers.
    pub(crate) fn detach(&mut self, d: usize, space: &Space) {
        let d8 = d as u8;
        if !self
            .regs
            .iter()
            .any(|v| v.link == d8 || v.rel == d8 || v.rel_minus == d8)
        {
            return;
        }
        for i in 0..REGS {
            if i != d && self.regs[i].rel_minus == d8 {
                self.concretize(i);
            }
        }
        let old = self.regs[d];
        // Bounds `R[i] <= (R[d] << s) + c`.
        for i in 0..REGS {
            if i == d || self.regs[i].rel != d as u8 {
                continue;
            }
            let v = self.regs[i];
            self.regs[i].drop_rel();
            self.rebase_rel(i, d, v.rel_shift, v.rel_off, v.rel_minus, &old, space);
        }
        // Links `R[i] ≡ (R[d] << s) + o`.
        let mut dependents = [false; REGS];
        for (i, dep) in dependents.iter_mut().enumerate() {
            *dep = i != d && self.regs[i].link == d as u8;
        }
        if old.link != NONE {
            // d is not a representative (so nothing should link to it); compose anyway.
            for i in (0..REGS).filter(|&i| dependents[i]) {
                let (s, o) = (self.regs[i].link_shift, self.regs[i].link_off);
                let total = u32::from(s) + u32::from(old.link_shift);
                if total < 64 {
                    self.regs[i].link = old.link;
                    self.regs[i].link_shift = total as u8;
                    self.regs[i].link_off = (old.link_off << s).wrapping_add(o);
                } else {
                    self.regs[i].drop_link();
                }
            }
            return;
        }
        // The first unshifted member becomes the representative: R[d] = R[root] - root_off.
        let root = (0..REGS).find(|&i| dependents[i] && self.regs[i].link_shift == 0);
        let root_off = root.map_or(0, |r| self.regs[r].link_off);
        for i in (0..REGS).filter(|&i| dependents[i]) {
            match root {
                Some(r) if r != i => {
                    let (s, o) = (self.regs[i].link_shift, self.regs[i].link_off);
                    self.regs[i].link = r as u8;
                    self.regs[i].link_off = o.wrapping_sub(root_off << s);
                }
                _ => self.regs[i].drop_link(),
            }
        }
    }

    /// `R[i] <= (R[d] << s) + c - R[minus]` held with the old value of `d` (about to be
    /// overwritten): keeps what follows from it without `d`.
    #[expect(clippy::too_many_arguments, reason = "one relation, field by field")]
    fn rebase_rel(
        &mut self,
        i: usize,
        d: usize,
        s: u8,
        c: i64,
        minus: u8,
        old: &Val,
        space: &Space,
    ) {
        let minus_min = match minus {
            NONE => 0,
            m => i128::from(self.regs[usize::from(m)].num.umin),
        };
        let c_eff = i128::from(c) - minus_min;
        // Through d's end relation: (R[d] << t) <= End + e with t == s.
        if old.end != NONE
            && old.end_shift == s
            && let Some(off) = fit(c_eff + i128::from(old.end_off))
        {
            self.regs[i].offer_end(old.end, 0, off, space);
        }
        // Through d's own bound when unshifted: R[d] <= (R[k] << t) + e - R[m2].
        if s == 0 && old.rel != NONE && usize::from(old.rel) != i {
            let (off, keep) = if old.rel_minus == NONE {
                (fit(i128::from(c) + i128::from(old.rel_off)), minus)
            } else {
                let m2 = i128::from(self.regs[usize::from(old.rel_minus)].num.umin);
                (fit(c_eff + i128::from(old.rel_off) - m2), NONE)
            };
            if let Some(off) = off {
                self.regs[i].offer_rel_minus(old.rel, old.rel_shift, off, keep);
                return;
            }
        }
        // Through another register equal to d plus a constant (no wrap-around).
        for m in 0..REGS {
            if m == d || m == i {
                continue;
            }
            if let Some((0, o)) = self.express(d, m) {
                // R[d] = R[m] + o (mod 2^64); as integers when neither side wraps.
                let o = o as i64;
                let lo = i128::from(self.regs[m].num.umin) + i128::from(o);
                let hi = i128::from(self.regs[m].num.umax) + i128::from(o);
                if lo >= 0
                    && hi <= i128::from(u64::MAX)
                    && let Some(off) = fit(i128::from(c) + (i128::from(o) << s))
                {
                    self.regs[i].offer_rel_minus(m as u8, s, off, minus);
                    return;
                }
            }
        }
        // Otherwise only the number remains.
        let bound = (i128::from(old.num.umax) << s) + c_eff;
        if (0..=i128::from(u64::MAX)).contains(&bound) {
            let n = &mut self.regs[i].num;
            n.umax = n.umax.min(bound as u64);
            if let Some(r) = n.reduced(Bits::B64) {
                *n = r;
            }
        }
        let _ = space;
    }

    /// Overwrites `d` with `v` (relations of `v` that mention `d` itself are dropped: they
    /// were about `d`'s old value).
    pub(crate) fn assign(&mut self, d: usize, mut v: Val, space: &Space) {
        if usize::from(v.rel) == d {
            v.drop_rel();
        }
        if usize::from(v.rel_minus) == d {
            match fit(i128::from(v.rel_off) - i128::from(self.regs[d].num.umin)) {
                Some(off) => {
                    v.rel_off = off;
                    v.rel_minus = NONE;
                }
                None => v.drop_rel(),
            }
        }
        if usize::from(v.link) == d {
            v.drop_link();
        }
        self.detach(d, space);
        self.regs[d] = v;
    }

    /// `d = s` (64-bit move of a register).
    pub(crate) fn copy(&mut self, d: usize, s: usize, space: &Space) {
        if d == s {
            return;
        }
        self.detach(d, space);
        let src = self.regs[s];
        let mut v = src;
        if src.link == NONE {
            v.link = s as u8;
            v.link_shift = 0;
            v.link_off = 0;
        }
        self.regs[d] = v;
    }

    /// `d += k` in place (64-bit, wrapping): relations shift with it.
    pub(crate) fn add_const(&mut self, d: usize, k: u64, space: &Space) {
        let old = self.regs[d];
        let ks = k as i64;
        let num = super::num::alu(
            ebpf_isa::AluOp::Add,
            &old.num,
            &Num::constant(k, Bits::B64),
            Bits::B64,
        );
        // As integers: no wrap-around when the whole range moves inside 0..2^64.
        let exact = {
            let lo = i128::from(old.num.umin) + i128::from(ks);
            let hi = i128::from(old.num.umax) + i128::from(ks);
            lo >= 0 && hi <= i128::from(u64::MAX)
        };
        // A non-negative step keeps upper bounds even when the sum wraps (it only gets
        // smaller); a negative one needs the exact case.
        let bounds_hold = exact || ks >= 0;
        // Registers bounded by d: R[i] <= (R[d]_old << s) + c = ((R[d]_new - k) << s) + c.
        for i in 0..REGS {
            if i == d || self.regs[i].rel != d as u8 {
                continue;
            }
            let v = self.regs[i];
            let shifted = fit(i128::from(v.rel_off) - (i128::from(ks) << v.rel_shift));
            match shifted {
                Some(off) if exact => self.regs[i].rel_off = off,
                _ => {
                    self.regs[i].drop_rel();
                    self.rebase_rel(i, d, v.rel_shift, v.rel_off, v.rel_minus, &old, space);
                }
            }
        }
        // Registers bounded by something minus d: - R[d]_old = - R[d]_new + k.
        for i in 0..REGS {
            if i == d || self.regs[i].rel_minus != d as u8 {
                continue;
            }
            match fit(i128::from(self.regs[i].rel_off) + i128::from(ks)) {
                Some(off) if exact => self.regs[i].rel_off = off,
                _ => self.concretize(i),
            }
        }
        // Registers linked to d: R[i] = (R[d]_old << s) + o = ((R[d]_new - k) << s) + o.
        for i in 0..REGS {
            if i != d && self.regs[i].link == d as u8 {
                let s = self.regs[i].link_shift;
                self.regs[i].link_off = self.regs[i].link_off.wrapping_sub(k << s);
            }
        }
        let v = &mut self.regs[d];
        v.num = num;
        if v.link != NONE {
            v.link_off = v.link_off.wrapping_add(k);
        }
        if v.rel != NONE {
            match fit(i128::from(v.rel_off) + i128::from(ks)) {
                Some(off) if bounds_hold => v.rel_off = off,
                _ => v.drop_rel(),
            }
        }
        if v.end != NONE {
            match fit(i128::from(v.end_off) + (i128::from(ks) << v.end_shift)) {
                Some(off) if bounds_hold => {
                    v.end_off = off;
                    v.end_exact &= exact;
                }
                _ => v.drop_end(),
            }
        }
    }

    /// `d <<= k` in place (`k < 64`): links and register bounds scale; an end bound
    /// `(End + c) >> t` survives as `(End + c) >> (t - k)` when `t >= k`.
    pub(crate) fn shl_const(&mut self, d: usize, k: u32, space: &Space) {
        let old = self.regs[d];
        // Members of d's class, and registers bounded by d, cannot be expressed from the
        // shifted d (detach leaves d itself alone); nor can a subtracted register be shifted.
        self.detach(d, space);
        self.concretize(d);
        let mut v = self.regs[d];
        v.num = super::num::alu(
            ebpf_isa::AluOp::Lsh,
            &old.num,
            &Num::constant(u64::from(k), Bits::B64),
            Bits::B64,
        );
        if v.link != NONE {
            let total = u32::from(v.link_shift) + k;
            if total < 64 {
                v.link_shift = total as u8;
                v.link_off <<= k;
            } else {
                v.drop_link();
            }
        }
        if v.rel != NONE {
            let total = u32::from(v.rel_shift) + k;
            match fit(i128::from(v.rel_off) << k) {
                Some(off) if total < 64 => {
                    v.rel_shift = total as u8;
                    v.rel_off = off;
                }
                _ => v.drop_rel(),
            }
        }
        if v.end != NONE {
            if u32::from(v.end_shift) >= k {
                v.end_shift -= k as u8;
                v.end_exact = false;
            } else {
                v.drop_end();
            }
        }
        self.regs[d] = v;
    }

    // -----------------------------------------------------------------------------------------
    // Reduction: relations to numbers, numbers through links.

    /// Tightens register `r`'s number with its bounds, and the slots' minimum lengths with
    /// its end relation. `false` if the state turns out to be unreachable.
    pub(crate) fn reduce(&mut self, r: usize, space: &Space) -> bool {
        let v = self.regs[r];
        let mut n = v.num;
        if v.end != NONE {
            let bound = (space.end_max(v.end) + i128::from(v.end_off)) >> v.end_shift;
            if bound < 0 {
                return false;
            }
            if bound < i128::from(n.umax) {
                n.umax = bound as u64;
            }
            if v.end_exact {
                let low = (self.end_min(space, v.end) + i128::from(v.end_off)) >> v.end_shift;
                if low > i128::from(n.umin) && low <= i128::from(u64::MAX) {
                    n.umin = low as u64;
                }
            }
        }
        if v.rel != NONE {
            let j = &self.regs[usize::from(v.rel)].num;
            let bound = (i128::from(j.umax) << v.rel_shift) + self.rel_eff(r);
            if bound < 0 {
                return false;
            }
            if bound < i128::from(n.umax) {
                n.umax = bound as u64;
            }
        }
        let Some(n) = n.reduced(Bits::B64) else {
            return false;
        };
        self.regs[r].num = n;
        if v.end != NONE {
            // (value << t) <= End + c, so End >= (umin << t) - c.
            let need = (i128::from(n.umin) << v.end_shift)
                - i128::from(v.end_off)
                - i128::from(space.base(v.end));
            let slot = usize::from(v.end);
            if need > i128::from(space.len_max[slot]) {
                return false;
            }
            if need > i128::from(self.len_min[slot]) {
                self.len_min[slot] = need as u64;
            }
        }
        true
    }

    /// Carries what is known of `r` to the registers linked with it: their numbers, and the
    /// bounds that an unshifted member shares. `false` if unreachable.
    pub(crate) fn propagate(&mut self, r: usize, space: &Space) -> bool {
        for i in 0..REGS {
            if i == r {
                continue;
            }
            let Some((s, o)) = self.express(i, r) else {
                continue;
            };
            let from = self.regs[r];
            // R[i] ≡ (R[r] << s) + o.
            let shifted = super::num::alu(
                ebpf_isa::AluOp::Lsh,
                &from.num,
                &Num::constant(u64::from(s), Bits::B64),
                Bits::B64,
            );
            let n = super::num::alu(
                ebpf_isa::AluOp::Add,
                &shifted,
                &Num::constant(o, Bits::B64),
                Bits::B64,
            );
            let Some(m) = self.regs[i].num.meet(&n, Bits::B64) else {
                return false;
            };
            self.regs[i].num = m;
            // Upper bounds carry over as integers when (R[r] << s) + o cannot wrap below zero:
            // either nothing wraps, or o is non-negative (wrapping then only lowers R[i]).
            let os = o as i64;
            let lo = (i128::from(from.num.umin) << s) + i128::from(os);
            let hi = (i128::from(from.num.umax) << s) + i128::from(os);
            let exact = lo >= 0 && hi <= i128::from(u64::MAX);
            if exact || os >= 0 {
                if from.rel != NONE && usize::from(from.rel) != i {
                    let total = u32::from(from.rel_shift) + u32::from(s);
                    // A subtracted register carries over unshifted only.
                    let (base, minus) = if s == 0 && usize::from(from.rel_minus) != i {
                        (i128::from(from.rel_off), from.rel_minus)
                    } else {
                        (self.rel_eff(r), NONE)
                    };
                    if let Some(off) = fit((base << s) + i128::from(os))
                        && total < 64
                    {
                        self.regs[i].offer_rel_minus(from.rel, total as u8, off, minus);
                    }
                }
                if from.end != NONE
                    && s == 0
                    && let Some(off) =
                        fit(i128::from(from.end_off) + (i128::from(os) << from.end_shift))
                {
                    self.regs[i].offer_end(from.end, from.end_shift, off, space);
                }
            }
            if !self.reduce(i, space) {
                return false;
            }
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // Join and widening.

    /// The smallest offset `c` such that `R[i] <= (End(slot) + c) >> t` holds in this state,
    /// if it holds for some `c` we can name.
    fn end_offset(&self, i: usize, slot: u8, t: u8, space: &Space) -> Option<i64> {
        let v = &self.regs[i];
        if v.end == slot && v.end_shift == t {
            return Some(v.end_off);
        }
        // (umax << t) <= End_min + c
        fit((i128::from(v.num.umax) << t) - self.end_min(space, slot))
    }

    /// The smallest offset `c` such that `R[i] <= (R[j] << s) + c - R[minus]` holds in this
    /// state.
    fn rel_offset(&self, i: usize, j: usize, s: u8, minus: u8) -> Option<i64> {
        let v = &self.regs[i];
        if usize::from(v.rel) == j && v.rel_shift == s && v.rel_minus == minus {
            return Some(v.rel_off);
        }
        let minus_max = match minus {
            NONE => 0,
            m => i128::from(self.regs[usize::from(m)].num.umax),
        };
        if minus != NONE {
            // Only numbers can show it: R[i] <= (R[j] << s) + c - max(R[minus]).
            return fit(
                i128::from(v.num.umax) - (i128::from(self.regs[j].num.umin) << s) + minus_max,
            );
        }
        if let Some((ls, o)) = self.express(i, j)
            && ls == s
        {
            let os = o as i64;
            let lo = (i128::from(self.regs[j].num.umin) << s) + i128::from(os);
            let hi = (i128::from(self.regs[j].num.umax) << s) + i128::from(os);
            if lo >= 0 && hi <= i128::from(u64::MAX) {
                return Some(os);
            }
        }
        fit(i128::from(v.num.umax) - (i128::from(self.regs[j].num.umin) << s))
    }

    /// The join of two states (every path of either). At loop heads (`head`), registers that
    /// are constants on both sides and step together are discovered to be linked.
    pub(crate) fn join(&self, other: &State, space: &Space, head: bool) -> State {
        if self.regs == other.regs
            && self.len_min == other.len_min
            && self.meta == other.meta
            && self.nonnull == other.nonnull
        {
            return self.clone();
        }
        let mut out = State {
            regs: [Val::top(); REGS],
            len_min: [0; SLOTS],
            meta: self.meta && other.meta,
            nonnull: self.join_nonnull(other),
        };
        let mut any_link = false;
        // Registers equal on both sides (relations included) are copied whole.
        let mut same = [false; REGS];
        for (i, equal) in same.iter_mut().enumerate() {
            let (a, b) = (&self.regs[i], &other.regs[i]);
            any_link |= a.link != NONE || b.link != NONE;
            if a == b {
                out.regs[i] = *a;
                *equal = true;
                continue;
            }
            let mut v = Val::of(a.num.join(&b.num));
            if a.hint == b.hint {
                v.hint = a.hint;
            }
            if a.end == NONE && b.end == NONE && a.rel == NONE && b.rel == NONE {
                out.regs[i] = v;
                continue;
            }
            // End relation.
            for (x, y) in [(self, other), (other, self)] {
                let xv = &x.regs[i];
                if xv.end == NONE || v.end != NONE {
                    continue;
                }
                if let Some(c) = y.end_offset(i, xv.end, xv.end_shift, space) {
                    v.end = xv.end;
                    v.end_shift = xv.end_shift;
                    v.end_off = xv.end_off.max(c);
                    let yv = &y.regs[i];
                    v.end_exact = xv.end_exact
                        && yv.end_exact
                        && yv.end == xv.end
                        && yv.end_shift == xv.end_shift
                        && yv.end_off == xv.end_off;
                }
            }
            // Register bound.
            for (x, y) in [(self, other), (other, self)] {
                let xv = &x.regs[i];
                if xv.rel == NONE || v.rel != NONE {
                    continue;
                }
                if let Some(c) = y.rel_offset(i, usize::from(xv.rel), xv.rel_shift, xv.rel_minus) {
                    v.rel = xv.rel;
                    v.rel_shift = xv.rel_shift;
                    v.rel_off = xv.rel_off.max(c);
                    v.rel_minus = xv.rel_minus;
                }
            }
            out.regs[i] = v;
        }
        if !any_link && !head {
            for (s, m) in out.len_min.iter_mut().enumerate() {
                *m = self.len_min[s].min(other.len_min[s]);
            }
            return out;
        }
        // Links: those that hold on both sides.
        let mut links = [(NONE, 0u8, 0u64); REGS];
        for (i, link) in links.iter_mut().enumerate() {
            let (a, b) = (&self.regs[i], &other.regs[i]);
            if a.link != NONE
                && (same[i]
                    || (a.link, a.link_shift, a.link_off) == (b.link, b.link_shift, b.link_off))
            {
                *link = (a.link, a.link_shift, a.link_off);
                continue;
            }
            for (x, y) in [(self, other), (other, self)] {
                let xv = &x.regs[i];
                if xv.link != NONE
                    && link.0 == NONE
                    && y.link_holds(i, usize::from(xv.link), xv.link_shift, xv.link_off)
                {
                    *link = (xv.link, xv.link_shift, xv.link_off);
                }
            }
            if link.0 == NONE && head {
                *link = discover(self, other, i);
            }
        }
        if head {
            self.link_same_steps(other, &mut links);
        }
        out.set_links(links);
        for (s, m) in out.len_min.iter_mut().enumerate() {
            *m = self.len_min[s].min(other.len_min[s]);
        }
        out
    }

    /// Links, for the registers the join left without one, that both sides prove through a
    /// common representative: `R[i] ≡ (R[j] << s) + o` with the same `s` and `o` in both states,
    /// though `i` and `j` are each linked to their representative with other offsets on the two
    /// sides. Two induction variables stepped in proportion (a pointer `p -= 2` and a counter
    /// `j -= 1`, both copied from the outer loop's index on entry) are linked to that index
    /// with offsets that change every iteration, so the join drops both links; the relation
    /// between the two does not change, and this keeps it, re-rooted at `j`. Sound as every
    /// other link the join keeps: it holds in each state joined. `j` is a register left without
    /// a link at that point (a link to `i` would make a cycle; chains through a `j` that gains
    /// a link later are composed by `set_links`).
    fn link_same_steps(&self, other: &State, links: &mut [(u8, u8, u64); REGS]) {
        for i in 0..REGS {
            if links[i].0 != NONE {
                continue;
            }
            for j in (0..REGS).filter(|&j| j != i && links[j].0 == NONE) {
                let Some((s, o)) = self.express(i, j).or_else(|| other.express(i, j)) else {
                    continue;
                };
                if self.link_holds(i, j, s, o) && other.link_holds(i, j, s, o) {
                    links[i] = (j as u8, s, o);
                    break;
                }
            }
        }
    }

    /// Installs links, composing chains so that every base is a representative and breaking
    /// cycles.
    fn set_links(&mut self, mut links: [(u8, u8, u64); REGS]) {
        let composed = links.iter().enumerate().all(|(i, &(b, _, _))| {
            b == NONE || (usize::from(b) != i && links[usize::from(b)].0 == NONE)
        });
        for _ in 0..if composed { 0 } else { REGS } {
            let mut changed = false;
            for i in 0..REGS {
                let (b, s, o) = links[i];
                if b == NONE {
                    continue;
                }
                if usize::from(b) == i {
                    links[i] = (NONE, 0, 0);
                    changed = true;
                    continue;
                }
                let (bb, bs, bo) = links[usize::from(b)];
                if bb == NONE {
                    continue;
                }
                let total = u32::from(s) + u32::from(bs);
                links[i] = if total < 64 && usize::from(bb) != i {
                    (bb, total as u8, (bo << s).wrapping_add(o))
                } else {
                    (NONE, 0, 0)
                };
                changed = true;
            }
            if !changed {
                break;
            }
        }
        for (v, (b, s, o)) in self.regs.iter_mut().zip(links) {
            if b != NONE && links[usize::from(b)].0 != NONE {
                v.drop_link();
            } else {
                v.link = b;
                v.link_shift = s;
                v.link_off = o;
            }
        }
    }

    /// Widening at a loop head: `self` is the head's previous state, `new` its join with what
    /// flows in now. Numbers jump to thresholds; relations that loosened are dropped.
    /// `levels` counts, per register, how often it was widened at this head: the first time
    /// to the program's thresholds (`ladder[0]`), then to coarser ones, then to the ends.
    pub(crate) fn widen(
        &self,
        new: &State,
        ladder: &[Thresholds],
        levels: &mut [u8; REGS],
        space: &Space,
    ) -> State {
        let mut out = new.clone();
        // The values of registers that are constants here are thresholds too (a loop that
        // counts a pointer down to its base stops there).
        let constants: alloc::vec::Vec<u64> = new
            .regs
            .iter()
            .filter_map(|v| v.num.as_constant())
            .collect();
        let mut first: Option<Thresholds> = None;
        for (i, v) in out.regs.iter_mut().enumerate() {
            let old = &self.regs[i];
            if v.num != old.num {
                let level = usize::from(levels[i]).min(ladder.len() - 1);
                let thresholds = if level == 0 {
                    first.get_or_insert_with(|| ladder[0].with(&constants))
                } else {
                    &ladder[level]
                };
                v.num = old.num.widen(&new.regs[i].num, Bits::B64, thresholds);
                levels[i] = levels[i].saturating_add(1);
            }
            if v.rel != NONE
                && old.rel == v.rel
                && old.rel_shift == v.rel_shift
                && old.rel_minus == v.rel_minus
                && v.rel_off > old.rel_off
            {
                v.drop_rel();
            }
            if v.end != NONE
                && old.end == v.end
                && old.end_shift == v.end_shift
                && v.end_off > old.end_off
            {
                v.drop_end();
            }
        }
        for (s, m) in out.len_min.iter_mut().enumerate() {
            if *m < self.len_min[s] {
                *m = 0;
            }
        }
        // A range that grew is dropped, and stays dropped (so a head settles).
        for (r, n) in out.nonnull.iter_mut().enumerate() {
            if *n != self.nonnull[r] {
                *n = None;
            }
        }
        out.settle(space);
        out
    }

    /// Tightens every register's number with its bounds (after a join or a widening, whose
    /// numbers were computed without them). An unreachable result cannot come from joining
    /// reachable states; it is ignored.
    fn settle(&mut self, space: &Space) {
        for r in 0..REGS {
            if self.regs[r].rel != NONE || self.regs[r].end != NONE {
                let saved = self.regs[r];
                if !self.reduce(r, space) {
                    self.regs[r] = saved;
                }
            }
        }
    }

    /// Gives up on precision (the last resort that guarantees a loop head settles): every
    /// register that changed becomes unknown.
    pub(crate) fn collapse(&self, new: &State) -> State {
        let mut out = new.clone();
        for (i, v) in out.regs.iter_mut().enumerate() {
            if *v != self.regs[i] {
                *v = Val::top();
            }
        }
        for i in 0..REGS {
            if out.regs[i].link != NONE && out.regs[usize::from(out.regs[i].link)] == Val::top() {
                out.regs[i].drop_link();
            }
            if out.regs[i].rel != NONE && out.regs[usize::from(out.regs[i].rel)] == Val::top() {
                out.regs[i].drop_rel();
            }
        }
        for (s, m) in out.len_min.iter_mut().enumerate() {
            if *m != self.len_min[s] {
                *m = 0;
            }
        }
        for (r, n) in out.nonnull.iter_mut().enumerate() {
            if *n != self.nonnull[r] {
                *n = None;
            }
        }
        out.meta &= self.meta;
        out
    }
}

/// A link for register `i` found from two states where it and another register are both
/// constants that differ by amounts in a power-of-two ratio: `R[i] = (R[j] << s) + o` fits
/// both (an index and the pointer it strides, at a loop head).
fn discover(a: &State, b: &State, i: usize) -> (u8, u8, u64) {
    let (Some(ai), Some(bi)) = (a.regs[i].num.as_constant(), b.regs[i].num.as_constant()) else {
        return (NONE, 0, 0);
    };
    let di = bi.wrapping_sub(ai) as i64;
    if di == 0 {
        return (NONE, 0, 0);
    }
    for j in 0..REGS {
        if j == i {
            continue;
        }
        let (Some(aj), Some(bj)) = (a.regs[j].num.as_constant(), b.regs[j].num.as_constant())
        else {
            continue;
        };
        let dj = bj.wrapping_sub(aj) as i64;
        // `checked_rem`: `i64::MIN % -1` overflows (a program stepping one register by 2^63
        // and another by -1 made the analysis panic).
        if dj == 0 || di.checked_rem(dj) != Some(0) {
            continue;
        }
        let ratio = di / dj;
        if ratio <= 0 || !(ratio as u64).is_power_of_two() {
            continue;
        }
        // Prefer the register that steps by less as the base (the index).
        if ratio == 1 && j > i {
            continue;
        }
        let s = ratio.trailing_zeros() as u8;
        let o = ai.wrapping_sub(aj << s);
        if bi == (bj << s).wrapping_add(o) {
            return (j as u8, s, o);
        }
    }
    (NONE, 0, 0)
}
