//! What each instruction does to an abstract state: ALU operations with their relations,
//! loads and stores, calls; and what a conditional jump tells on each of its sides.

use ebpf_isa::{AluOp, ByteOrder, CallKind, Cond, Insn, Operand, Reg, Size, SwapWidth, Width};

use super::num::{self, Bits, Num};
use super::state::{NONE, Space, State, Val};

/// What the analysis knows about the run, beyond the state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// The run-time-length regions.
    pub(crate) space: Space,
    /// The metadata buffer's address fields, if the entry has them.
    pub(crate) meta: Option<MetaFields>,
    /// The stack's slot.
    pub(crate) stack: u8,
    /// Speculative paths: conditional jumps refine nothing and both of their sides flow, as
    /// on the path a mispredicted branch leads a CPU down (see `Analysis::solve`).
    pub(crate) speculative: bool,
    /// The map-lookup helper's id, if the entry knows lookups.
    pub(crate) lookup: Option<u32>,
    /// What a lookup returns for each known map (the first [`MAPS`]): `(handle, lo, hi,
    /// align_log2)`, NULL or an address in `lo..=hi` whose low `align_log2` bits are zero.
    pub(crate) maps: [(u64, u64, u64, u8); MAPS],
}

/// How many maps' lookups the analysis knows (the rest return unknown values).
pub(crate) const MAPS: usize = 16;

impl Ctx {
    /// What `r0` is after helper `helper` with `r1 == handle`: NULL or an address in
    /// `lo..=hi` with its low `align_log2` bits zero, for a lookup in a known map.
    fn looked_up(&self, helper: u32, handle: Option<u64>) -> Option<(u64, u64, u8)> {
        let handle = handle?;
        if self.lookup != Some(helper) {
            return None;
        }
        let &(_, lo, hi, align_log2) = self.maps.iter().find(|m| m.0 == handle && m.1 != 0)?;
        Some((lo, hi, align_log2))
    }
}

/// Where the metadata buffer holds the data's addresses, and what they are at entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaFields {
    /// VM address of the `data` field.
    pub(crate) data: u64,
    /// VM address of the `data_end` field.
    pub(crate) data_end: u64,
    /// The input's slot.
    pub(crate) input: u8,
    /// `None`: the input's start and end. `Some(offset)`: a packet `offset` bytes into the
    /// input, ending no later than the input (`MetadataFields::packet`).
    pub(crate) packet: Option<u32>,
}

/// The second operand, as the analysis sees it.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// A known value (an immediate, extended as the instruction extends it).
    Const(u64),
    /// A register.
    Reg(usize),
}

fn reg(r: Reg) -> usize {
    usize::from(r.index())
}

impl State {
    fn src_num(&self, src: Src) -> Num {
        match src {
            Src::Const(k) => Num::constant(k, Bits::B64),
            Src::Reg(r) => self.regs[r].num,
        }
    }

    /// The source as a constant when it is one.
    fn src_const(&self, src: Src) -> Option<u64> {
        match src {
            Src::Const(k) => Some(k),
            Src::Reg(r) => self.regs[r].num.as_constant(),
        }
    }

    /// Whether `R[a] <= R[b]` on every path (as integers).
    pub(crate) fn le_reg(&self, a: usize, b: usize) -> bool {
        let (va, vb) = (&self.regs[a], &self.regs[b]);
        if va.num.umax <= vb.num.umin {
            return true;
        }
        if va.rel == NONE || va.rel_shift != 0 {
            return false;
        }
        let j = usize::from(va.rel);
        let c = self.rel_eff(a);
        if j == b {
            return c <= 0;
        }
        // R[a] <= R[j] + c and R[b] = R[j] + o without wrap-around.
        let Some((0, o)) = self.express(b, j) else {
            return false;
        };
        let os = o as i64;
        let lo = i128::from(self.regs[j].num.umin) + i128::from(os);
        let hi = i128::from(self.regs[j].num.umax) + i128::from(os);
        lo >= 0 && hi <= i128::from(u64::MAX) && c <= i128::from(os)
    }

    /// One instruction that does not transfer control (jumps, local calls and `exit` are the
    /// solver's). Helper calls clobber `r0`–`r5` as the contract says: `r0` unknown, `r1`–`r5`
    /// zero.
    pub(crate) fn transfer(&mut self, insn: &Insn, ctx: &Ctx) {
        let space = &ctx.space;
        // What `nonnull` says of a register holds only until it is written.
        match *insn {
            Insn::Alu { dst, .. }
            | Insn::Neg { dst, .. }
            | Insn::MovSx { dst, .. }
            | Insn::Endian { dst, .. }
            | Insn::LoadImm64 { dst, .. }
            | Insn::Load { dst, .. } => self.nonnull[reg(dst)] = None,
            Insn::Atomic { op, src, .. } if op.fetches() => {
                self.nonnull[0] = None;
                self.nonnull[reg(src)] = None;
            }
            Insn::LoadPacket { .. } | Insn::Call { .. } | Insn::CallX { .. } => {
                self.nonnull[..=5].fill(None);
            }
            _ => {}
        }
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let src = match (src, width) {
                    (Operand::Imm(k), Width::W64) => Src::Const(i64::from(k) as u64),
                    (Operand::Imm(k), Width::W32) => Src::Const(u64::from(k as u32)),
                    (Operand::Reg(r), _) => Src::Reg(reg(r)),
                };
                match width {
                    Width::W64 => self.alu64(op, reg(dst), src, space),
                    Width::W32 => self.alu32(op, reg(dst), src, space),
                }
            }
            Insn::Neg { width, dst } => {
                let d = reg(dst);
                let n = match width {
                    Width::W64 => num::neg(&self.regs[d].num, Bits::B64),
                    Width::W32 => num::neg(&self.regs[d].num.low32(), Bits::B32).zext(),
                };
                self.assign(d, Val::of(n), space);
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => {
                let s = &self.regs[reg(src)].num;
                let n = match width {
                    Width::W64 => num::movsx(from, s, Bits::B64),
                    Width::W32 => num::movsx(from, &s.low32(), Bits::B32).zext(),
                };
                self.assign(reg(dst), Val::of(n), space);
            }
            Insn::Endian { order, width, dst } => {
                let d = reg(dst);
                if order == ByteOrder::Le && width == SwapWidth::W64 {
                    return; // no change
                }
                let old = self.regs[d];
                let mut v = Val::of(num::endian(order, width, &old.num));
                if order == ByteOrder::Le {
                    // Truncation never makes a value larger.
                    keep_bounds(&mut v, &old);
                }
                self.assign(d, v, space);
            }
            Insn::LoadImm64 { dst, imm, .. } => self.assign(reg(dst), Val::constant(imm), space),
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let v = self.loaded(size, signed, reg(src), off, ctx);
                self.assign(reg(dst), v, space);
            }
            Insn::Store { size, dst, off, .. } => self.stored(reg(dst), off, size.bytes(), ctx),
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => {
                let bytes = if width == Width::W64 { 8 } else { 4 };
                self.stored(reg(dst), off, bytes, ctx);
                if op.fetches() {
                    let to = if op == ebpf_isa::AtomicOp::Cmpxchg {
                        0
                    } else {
                        reg(src)
                    };
                    self.assign(to, Val::of(num::loaded(bytes, false)), space);
                }
            }
            Insn::LoadPacket { size, .. } => {
                self.assign(0, Val::of(num::loaded(size.bytes(), false)), space)
            }
            Insn::Call { .. } | Insn::CallX { .. } => {
                let looked_up = match *insn {
                    Insn::Call {
                        kind: CallKind::Helper,
                        imm,
                    } => ctx.looked_up(imm as u32, self.regs[1].num.as_constant()),
                    _ => None,
                };
                self.assign(0, Val::top(), space);
                if let Some((lo, hi, align_log2)) = looked_up {
                    let low = (1u64 << align_log2) - 1;
                    let mut n = Num::range(0, hi, Bits::B64);
                    n.bits &= !low;
                    n.mask &= !low;
                    let mut v = Val::of(n.reduced(Bits::B64).unwrap_or(Num::top(Bits::B64)));
                    v.hint = (lo >> 32) as u8;
                    self.assign(0, v, space);
                    self.nonnull[0] = Some((lo, hi));
                }
                for r in 1..=5 {
                    self.assign(r, Val::constant(0), space);
                }
                self.meta = false;
            }
            Insn::Ja { .. } | Insn::Ja32 { .. } | Insn::Jump { .. } | Insn::Exit => {}
        }
    }

    /// The value a load produces: a field of the metadata buffer if it is one and intact, else
    /// whatever the size allows. Intact means no store and no call since entry (`meta`): a
    /// helper that moves the packet (`xdp_adjust_head`) rewrites the fields, and what a load
    /// reads after it is not what the entry's admission checked.
    fn loaded(&self, size: Size, signed: bool, base: usize, off: i16, ctx: &Ctx) -> Val {
        if let (Some(m), Size::DW, true) = (ctx.meta, size, self.meta) {
            let addr = self.regs[base]
                .num
                .as_constant()
                .map(|b| b.wrapping_add(i64::from(off) as u64));
            let start = ctx.space.base(m.input);
            let len_min = self.len_min[usize::from(m.input)];
            if addr == Some(m.data) {
                return Val::constant(start + u64::from(m.packet.unwrap_or(0)));
            }
            if addr == Some(m.data_end) {
                return match m.packet {
                    None => Val::end_exactly(m.input, 0, &ctx.space, len_min),
                    Some(offset) => {
                        Val::end_at_most(m.input, start + u64::from(offset), &ctx.space)
                    }
                };
            }
        }
        Val::of(num::loaded(size.bytes(), signed))
    }

    /// A store of `bytes` at `R[base] + off`: it may overwrite the metadata fields.
    fn stored(&mut self, base: usize, off: i16, bytes: u32, ctx: &Ctx) {
        let Some(MetaFields { data, data_end, .. }) = ctx.meta else {
            return;
        };
        if !self.meta {
            return;
        }
        let n = &self.regs[base].num;
        let lo = i128::from(n.umin) + i128::from(off);
        let hi = i128::from(n.umax) + i128::from(off) + i128::from(bytes);
        let hits = |field: u64| lo < i128::from(field) + 8 && i128::from(field) < hi;
        if hits(data) || hits(data_end) {
            self.meta = false;
        }
    }

    fn alu64(&mut self, op: AluOp, d: usize, src: Src, space: &Space) {
        let k = self.src_const(src);
        match (op, src, k) {
            (AluOp::Mov, Src::Reg(s), _) => {
                self.copy(d, s, space);
                self.nonnull[d] = self.nonnull[s];
                return;
            }
            (AluOp::Mov, Src::Const(c), _) => return self.assign(d, Val::constant(c), space),
            (AluOp::Add, _, Some(k)) => return self.add_const(d, k, space),
            (AluOp::Sub, _, Some(k)) => return self.add_const(d, k.wrapping_neg(), space),
            (AluOp::Lsh, _, Some(k)) => return self.shl_const(d, (k & 63) as u32, space),
            (AluOp::Mul, _, Some(k)) if k.is_power_of_two() => {
                return self.shl_const(d, k.trailing_zeros(), space);
            }
            (AluOp::Add, Src::Reg(s), None) if self.regs[d].num.as_constant().is_some() => {
                // dst is a constant c: dst = src + c, linked to src.
                let c = self.regs[d].num.umin;
                let hint = match (self.regs[d].hint, self.regs[s].hint) {
                    (h, NONE) => h,
                    (NONE, h) => h,
                    _ => NONE,
                };
                self.copy(d, s, space);
                self.add_const(d, c, space);
                self.regs[d].hint = hint;
                return;
            }
            _ => {}
        }
        let old = self.regs[d];
        let s_num = self.src_num(src);
        // dst += src with registers and no wrap-around: every register equal to dst plus a
        // constant is now dst minus src plus that constant.
        let mut behind: [(u8, i64); 11] = [(NONE, 0); 11];
        if let (AluOp::Add, Src::Reg(s)) = (op, src)
            && u128::from(old.num.umax) + u128::from(s_num.umax) <= u128::from(u64::MAX)
        {
            for (m, slot) in behind.iter_mut().enumerate() {
                if m == d || m == s {
                    continue;
                }
                if let Some((0, o)) = self.express(m, d) {
                    let o = o as i64;
                    let lo = i128::from(old.num.umin) + i128::from(o);
                    let hi = i128::from(old.num.umax) + i128::from(o);
                    if lo >= 0 && hi <= i128::from(u64::MAX) {
                        *slot = (s as u8, o);
                    }
                }
            }
        }
        let mut v = Val::of(num::alu(op, &old.num, &s_num, Bits::B64));
        // A pointer plus or minus a non-pointer keeps the pointer's region as a guess.
        if let (AluOp::Add | AluOp::Sub, Src::Reg(s)) = (op, src) {
            v.hint = match (old.hint, self.regs[s].hint) {
                (h, NONE) => h,
                (NONE, h) if op == AluOp::Add => h,
                _ => NONE,
            };
        }
        match op {
            AluOp::Add => {
                // Bounds of one operand plus the other's maximum (wrap-around only lowers).
                if let Src::Reg(s) = src {
                    let other = &self.regs[s];
                    add_bounds(&mut v, &old, other.num.umax);
                    if v.rel == NONE && v.end == NONE {
                        add_bounds(&mut v, other, old.num.umax);
                    }
                }
            }
            AluOp::Sub => {
                if let Src::Reg(s) = src
                    && self.le_reg(s, d)
                {
                    // No borrow: dst - src <= dst - min(src).
                    let min = self.regs[s].num.umin;
                    add_bounds(&mut v, &old, 0);
                    shift_bounds_down(&mut v, min);
                }
            }
            AluOp::Rsh | AluOp::Div
                if k.is_some_and(|k| op == AluOp::Rsh || k.is_power_of_two()) =>
            {
                let k = k.unwrap_or(1);
                let by = if op == AluOp::Rsh {
                    (k & 63) as u32
                } else {
                    k.trailing_zeros()
                };
                keep_bounds(&mut v, &old);
                if v.rel_minus != NONE {
                    // A subtracted register does not shift: fold it in first.
                    let m = i128::from(self.regs[usize::from(v.rel_minus)].num.umin);
                    match i64::try_from(i128::from(v.rel_off) - m) {
                        Ok(off) => {
                            v.rel_off = off;
                            v.rel_minus = NONE;
                        }
                        Err(_) => v.rel = NONE,
                    }
                }
                if v.end != NONE && u32::from(v.end_shift) + by < 64 {
                    // floor(floor(x / 2^a) / 2^b) = floor(x / 2^(a+b)): exact stays exact.
                    v.end_shift += by as u8;
                    v.end_exact = old.end_exact;
                }
                if v.rel != NONE && u32::from(v.rel_shift) >= by {
                    v.rel_shift -= by as u8;
                    v.rel_off >>= by;
                }
            }
            // Results never larger than dst.
            AluOp::Rsh | AluOp::Div | AluOp::Mod => keep_bounds(&mut v, &old),
            AluOp::And => {
                keep_bounds(&mut v, &old);
                if let Src::Reg(s) = src
                    && v.rel == NONE
                    && v.end == NONE
                {
                    keep_bounds(&mut v, &self.regs[s]);
                }
            }
            _ => {}
        }
        self.assign(d, v, space);
        for (m, &(s, o)) in behind.iter().enumerate() {
            if s != NONE {
                self.regs[m].offer_rel_minus(d as u8, 0, o, s);
            }
        }
    }

    fn alu32(&mut self, op: AluOp, d: usize, src: Src, space: &Space) {
        let a = self.regs[d].num;
        let b = self.src_num(src);
        let small = a.umax <= u64::from(u32::MAX) && b.umax <= u64::from(u32::MAX);
        // When the operands fit in 32 bits and the 64-bit result does too, the 32-bit
        // operation is the 64-bit one (and keeps its relations).
        let same = small
            && match op {
                AluOp::Mov | AluOp::Div | AluOp::Mod | AluOp::And | AluOp::Or | AluOp::Xor => true,
                AluOp::Add => u128::from(a.umax) + u128::from(b.umax) <= u128::from(u32::MAX),
                AluOp::Sub => a.umin >= b.umax,
                AluOp::Mul => u128::from(a.umax) * u128::from(b.umax) <= u128::from(u32::MAX),
                AluOp::Lsh => {
                    b.umax < 32
                        && b.as_constant().is_some()
                        && (a.umax << b.umax) <= u64::from(u32::MAX)
                }
                AluOp::Rsh => b.umax < 32,
                AluOp::Sdiv | AluOp::Smod | AluOp::Arsh => false,
            };
        if same {
            return self.alu64(op, d, src, space);
        }
        let old = self.regs[d];
        let n = num::alu(op, &a.low32(), &b.low32(), Bits::B32).zext();
        let mut v = Val::of(n);
        match (op, src) {
            // The low half of a value is no larger than the value.
            (AluOp::Mov, Src::Reg(s)) => keep_bounds(&mut v, &self.regs[s]),
            (AluOp::Add, Src::Const(k)) if k <= u64::from(i32::MAX as u32) => {
                add_bounds(&mut v, &old, k);
            }
            (AluOp::And | AluOp::Rsh | AluOp::Div | AluOp::Mod, _) => keep_bounds(&mut v, &old),
            _ => {}
        }
        self.assign(d, v, space);
    }

    /// The state on one side of a conditional jump `if dst cond src`; `None` if that side is
    /// never taken.
    pub(crate) fn branch(
        &self,
        width: Width,
        cond: Cond,
        dst: Reg,
        src: Operand,
        taken: bool,
        ctx: &Ctx,
    ) -> Option<State> {
        let mut out = self.clone();
        out.refine(width, cond, dst, src, taken, ctx).then_some(out)
    }

    /// [`State::branch`] in place: narrows this state to one side of the jump; `false` if that
    /// side is never taken (the state is then meaningless).
    pub(crate) fn refine(
        &mut self,
        width: Width,
        cond: Cond,
        dst: Reg,
        src: Operand,
        taken: bool,
        ctx: &Ctx,
    ) -> bool {
        self.refined(width, cond, dst, src, taken, ctx).is_some()
    }

    fn refined(
        &mut self,
        width: Width,
        cond: Cond,
        dst: Reg,
        src: Operand,
        taken: bool,
        ctx: &Ctx,
    ) -> Option<()> {
        let space = &ctx.space;
        let d = reg(dst);
        let src = match (src, width) {
            (Operand::Imm(k), Width::W64) => Src::Const(i64::from(k) as u64),
            (Operand::Imm(k), Width::W32) => Src::Const(u64::from(k as u32)),
            (Operand::Reg(r), _) => Src::Reg(reg(r)),
        };
        let out = self;
        // `r != 0` (64-bit) on a lookup's result: the address of a whole value. A 32-bit test
        // says nothing of the high half, where a non-NULL address differs from NULL.
        if let (Width::W64, Some(0), Some((lo, hi))) = (width, out.src_const(src), out.nonnull[d])
            && matches!((cond, taken), (Cond::Eq, false) | (Cond::Ne, true))
        {
            let value = Num::range(lo, hi, Bits::B64);
            out.regs[d].num = out.regs[d].num.meet(&value, Bits::B64)?;
        }
        let a = out.regs[d].num;
        let b = out.src_num(src);
        let (na, nb) = match width {
            Width::W64 => num::refine(&a, &b, cond, taken, Bits::B64)?,
            Width::W32 => {
                let (la, lb) = num::refine(&a.low32(), &b.low32(), cond, taken, Bits::B32)?;
                (a.with_low32(&la)?, b.with_low32(&lb)?)
            }
        };
        out.regs[d].num = na;
        if let Src::Reg(s) = src {
            out.regs[s].num = out.regs[s].num.meet(&nb, Bits::B64)?;
            if s == d {
                out.regs[d].num = na.meet(&nb, Bits::B64)?;
            } else if !out.relate(d, s, width, cond, taken, space) {
                return None;
            }
        }
        let len_min = out.len_min;
        for r in [Some(d), if let Src::Reg(s) = src { Some(s) } else { None }]
            .into_iter()
            .flatten()
        {
            if !out.reduce(r, space) || !out.propagate(r, space) {
                return None;
            }
        }
        // A region known to be longer raises the registers that are its exact length.
        if out.len_min != len_min {
            for r in 0..out.regs.len() {
                let v = &out.regs[r];
                if v.end != NONE
                    && v.end_exact
                    && out.len_min[usize::from(v.end)] != len_min[usize::from(v.end)]
                    && (!out.reduce(r, space) || !out.propagate(r, space))
                {
                    return None;
                }
            }
        }
        Some(())
    }

    /// Records what `R[d] cond R[s]` (holding or not) says between the two registers;
    /// `false` if it contradicts what the state knows of them (no path takes that side).
    fn relate(
        &mut self,
        d: usize,
        s: usize,
        width: Width,
        cond: Cond,
        holds: bool,
        space: &Space,
    ) -> bool {
        let cond = if holds {
            cond
        } else {
            match num::negate(cond) {
                Some(c) => c,
                None => return true,
            }
        };
        let (vd, vs) = (&self.regs[d].num, &self.regs[s].num);
        // A 32-bit compare of values that fit in 32 bits, or a signed compare of non-negative
        // values, is an unsigned 64-bit compare.
        let fits = width == Width::W64
            || (vd.umax <= u64::from(u32::MAX) && vs.umax <= u64::from(u32::MAX));
        // Signed compares of values that are non-negative at the compare's width.
        let non_negative = match width {
            Width::W64 => vd.smin >= 0 && vs.smin >= 0,
            Width::W32 => vd.umax <= i32::MAX as u64 && vs.umax <= i32::MAX as u64,
        };
        if !fits {
            return true;
        }
        let (small, big, strict) = match cond {
            Cond::Lt => (d, s, 1),
            Cond::Le => (d, s, 0),
            Cond::Gt => (s, d, 1),
            Cond::Ge => (s, d, 0),
            Cond::Slt if non_negative => (d, s, 1),
            Cond::Sle if non_negative => (d, s, 0),
            Cond::Sgt if non_negative => (s, d, 1),
            Cond::Sge if non_negative => (s, d, 0),
            Cond::Ne => {
                self.not_equal(d, s);
                self.not_equal(s, d);
                return true;
            }
            _ => return true,
        };
        self.less(small, big, strict, space)
    }

    /// `R[x] + strict <= R[y]`; a strict inequality between registers with the same known
    /// low bits (both stepping by a stride from aligned starts) is short by a whole stride.
    /// `false` if the state already bounds `R[y] <= R[x] + c` with `c < strict`: no value
    /// satisfies both (the re-test of a pointer after a join, `!p || p + n > end`).
    fn less(&mut self, x: usize, y: usize, strict: i64, space: &Space) -> bool {
        let vy = self.regs[y];
        let vx = self.regs[x];
        if usize::from(vy.rel) == x
            && vy.rel_shift == 0
            && vy.rel_minus == NONE
            && vy.rel_off < strict
        {
            return false;
        }
        let strict = if strict == 0 {
            0
        } else {
            let k = vx
                .num
                .mask
                .trailing_zeros()
                .min(vy.num.mask.trailing_zeros())
                .min(32);
            let low = (1u64 << k) - 1;
            if vx.num.bits & low == vy.num.bits & low {
                1i64 << k
            } else {
                1
            }
        };
        self.regs[x].offer_rel(y as u8, 0, -strict);
        if vy.end != NONE
            && let Some(off) =
                i64::try_from(i128::from(vy.end_off) - (i128::from(strict) << vy.end_shift)).ok()
        {
            self.regs[x].offer_end(vy.end, vy.end_shift, off, space);
        }
        true
    }

    /// `R[x] != R[y]`: when `R[x] <= R[y]` is known, `R[x] < R[y]` — by a whole stride when
    /// both have the same known low bits.
    fn not_equal(&mut self, x: usize, y: usize) {
        let (vx, vy) = (self.regs[x], self.regs[y]);
        let stride = {
            let k = vx
                .num
                .mask
                .trailing_zeros()
                .min(vy.num.mask.trailing_zeros())
                .min(63);
            let low = (1u64 << k) - 1;
            if vx.num.bits & low == vy.num.bits & low {
                1i64 << k
            } else {
                1
            }
        };
        if usize::from(vx.rel) == y && vx.rel_shift == 0 && vx.rel_off == 0 && vx.rel_minus == NONE
        {
            self.regs[x].rel_off = -stride;
        }
        if vy.end != NONE
            && vy.end_exact
            && vx.end == vy.end
            && vx.end_shift == vy.end_shift
            && vx.end_off == vy.end_off
            && vx.end_shift == 0
        {
            self.regs[x].end_off -= 1;
        }
    }

    /// The state at a local call's target: `r10` is the next frame's top, which lies at least
    /// one frame below the stack's end and at least one frame above its start (the call
    /// succeeded, so the depth allows it).
    pub(crate) fn callee(&self, ctx: &Ctx) -> State {
        let mut out = self.clone();
        let space = &ctx.space;
        let frame = ebpf_abi::STACK_FRAME_SIZE;
        let base = space.base(ctx.stack);
        let max = base + space.len_max[usize::from(ctx.stack)] - frame;
        let mut v = Val::of(Num::range(base + frame, max, Bits::B64));
        v.num.bits &= !(frame - 1);
        v.num.mask &= !(frame - 1);
        v.num = v.num.reduced(Bits::B64).unwrap_or(Num::top(Bits::B64));
        v.end = ctx.stack;
        v.end_off = -(frame as i64);
        out.assign(10, v, space);
        out.nonnull[10] = None;
        out.reduce(10, space);
        out
    }

    /// The state at a local call's return site: `r6`–`r10` are restored, `r0`–`r5` and memory
    /// are whatever the callee left.
    pub(crate) fn returned(&self, ctx: &Ctx) -> State {
        let mut out = self.clone();
        for r in 0..=5 {
            out.assign(r, Val::top(), &ctx.space);
        }
        out.nonnull[..=5].fill(None);
        out.meta = false;
        out
    }
}

/// Copies `from`'s upper bounds (not its link) into `v`: for results never larger than `from`.
fn keep_bounds(v: &mut Val, from: &Val) {
    v.rel = from.rel;
    v.rel_shift = from.rel_shift;
    v.rel_off = from.rel_off;
    v.rel_minus = from.rel_minus;
    v.end = from.end;
    v.end_shift = from.end_shift;
    v.end_off = from.end_off;
    v.end_exact = false;
}

/// `from`'s upper bounds plus `k` (for `from + x` with `x <= k`).
fn add_bounds(v: &mut Val, from: &Val, k: u64) {
    if from.rel != NONE
        && let Ok(off) = i64::try_from(i128::from(from.rel_off) + i128::from(k))
    {
        v.rel = from.rel;
        v.rel_shift = from.rel_shift;
        v.rel_off = off;
        v.rel_minus = from.rel_minus;
    }
    if from.end != NONE
        && let Ok(off) = i64::try_from(i128::from(from.end_off) + (i128::from(k) << from.end_shift))
    {
        v.end = from.end;
        v.end_shift = from.end_shift;
        v.end_off = off;
        v.end_exact = false;
    }
}

/// Lowers `v`'s upper bounds by `k` (for `x - y` with `y >= k` and no borrow).
fn shift_bounds_down(v: &mut Val, k: u64) {
    if v.rel != NONE {
        match i64::try_from(i128::from(v.rel_off) - i128::from(k)) {
            Ok(off) => v.rel_off = off,
            Err(_) => v.rel = NONE,
        }
    }
    if v.end != NONE {
        match i64::try_from(i128::from(v.end_off) - (i128::from(k) << v.end_shift)) {
            Ok(off) => v.end_off = off,
            Err(_) => v.drop_end(),
        }
    }
}
