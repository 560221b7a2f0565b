//! Pointer hints: which memory region a register probably points into, for the JITs.
//!
//! A JIT that knows where an access probably goes can check it against that one region's bounds
//! (a subtraction and a compare with values that do not depend on the address) and fall back
//! to the full region-table lookup only when the guess is wrong. A hint is a guess for speed,
//! never a proof: a wrong hint costs time, not correctness, so the analysis is cheap and
//! deliberately simple. At entry `r10` points into the stack and `r1` (probably) into the
//! input; `lddw` of a VM address names its region; `mov`, and adding or subtracting a
//! non-pointer, keep a pointer's hint; anything else forgets it.
//!
//! Two kinds of hint are facts. [`Hint::AtMost`] bounds a non-pointer integer (a masked,
//! shifted or zero-extended loaded value, a small constant). And when no instruction writes
//! `r10` ([`writes_r10`]), `r10` is always the top of the current 512-byte frame, and a
//! register set from it by `mov`, constant additions and additions of bounded integers is
//! `r10 + k` for a `k` in a known range ([`Hint::Frame`]): `&local_array[x & 31]` is one. An
//! access that [`Hint::frame_access_is_safe`] accepts needs no check at all.
//!
//! The JITs split programs into blocks their own way (each must match the interpreter on
//! unverified programs), so this module gives the lattice, the transfer function and a
//! worklist solver ([`solve`]) over any block graph, and each JIT supplies its edges.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::layout;
use ebpf_isa::{AluOp, AtomicOp, Insn, Operand, Reg, Size, Width};

/// What is known about a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, u32)]
pub enum Hint {
    /// Not reached yet (the top of the lattice); at a solved block entry: unreachable.
    Unreached,
    /// Probably an address in this region.
    Region(u8),
    /// Exactly the current frame pointer plus some `k` in `lo..=hi` (only when `r10` is never
    /// written); `lo == hi` for an exact offset. Offsets that do not fit an `i32` are kept as
    /// [`STACK`] instead: no access from there could be in the frame anyway, and a small hint
    /// keeps the solver's copies cheap.
    Frame {
        /// The smallest offset from `r10`.
        lo: i32,
        /// The largest offset from `r10`.
        hi: i32,
    },
    /// Not a pointer: an integer at most this (unsigned), on every path.
    AtMost(u32),
    /// Nothing useful.
    Nothing,
}

/// Hints for `r0`–`r10`.
pub type Hints = [Hint; 11];

/// The stack region as a hint.
pub const STACK: Hint = Hint::Region(layout::STACK as u8);

impl Hint {
    /// The region this hint guesses, if any (a frame offset is a stack address).
    pub fn region(self) -> Option<u8> {
        match self {
            Hint::Region(r) => Some(r),
            Hint::Frame { .. } => Some(layout::STACK as u8),
            Hint::Unreached | Hint::AtMost(_) | Hint::Nothing => None,
        }
    }

    /// An exact frame offset: `Frame(k)`.
    pub fn frame(k: i32) -> Hint {
        Hint::Frame { lo: k, hi: k }
    }

    /// The offset from `r10` if this is exactly one frame offset.
    pub fn exact_frame_offset(self) -> Option<i32> {
        match self {
            Hint::Frame { lo, hi } if lo == hi => Some(lo),
            _ => None,
        }
    }

    /// Whether a `width`-byte access at this register plus `off` is inside the current frame,
    /// `[r10 - 512, r10)`, for every offset the register can hold, and so inside the stack
    /// region whatever the call depth. Only a fact when `r10` is never written.
    pub fn frame_access_is_safe(self, off: i16, width: u32) -> bool {
        let Hint::Frame { lo, hi } = self else {
            return false;
        };
        let frame = ebpf_abi::STACK_FRAME_SIZE as i64;
        let off = i64::from(off);
        i64::from(lo) + off >= -frame && i64::from(hi) + off + i64::from(width) <= 0
    }

    fn weaken(self) -> Hint {
        match self {
            Hint::Frame { .. } => STACK,
            Hint::AtMost(_) => Hint::Nothing,
            h => h,
        }
    }

    /// The join of two paths' hints. Different frame ranges or bounds are not merged into a
    /// wider one (a loop would widen them one step per sweep): they fall to the stack region
    /// or to nothing, which keeps the lattice three levels deep.
    fn meet(self, other: Hint) -> Hint {
        const S: u8 = layout::STACK as u8;
        if self == other {
            return self;
        }
        match (self, other) {
            (Hint::Unreached, x) | (x, Hint::Unreached) => x,
            (Hint::Region(S) | Hint::Frame { .. }, Hint::Region(S) | Hint::Frame { .. }) => STACK,
            _ => Hint::Nothing,
        }
    }

    /// `r10 + lo..=hi` as a hint, or the stack region when an end does not fit an `i32`.
    fn frame_range(lo: i64, hi: i64) -> Hint {
        match (i32::try_from(lo), i32::try_from(hi)) {
            (Ok(lo), Ok(hi)) => Hint::Frame { lo, hi },
            _ => STACK,
        }
    }

    /// An integer bound as a hint, or nothing when it does not fit a `u32`.
    fn at_most(max: u64) -> Hint {
        u32::try_from(max).map_or(Hint::Nothing, Hint::AtMost)
    }
}

/// Whether `insn` writes register `r` (helper and local calls write `r0`–`r5`).
pub fn insn_writes(insn: &Insn, r: Reg) -> bool {
    match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::LoadImm64 { dst, .. }
        | Insn::Load { dst, .. } => dst == r,
        // A compare-exchange writes r0, never its source.
        Insn::Atomic { op, src, .. } => {
            op.fetches() && (r == Reg::R0 || (op != AtomicOp::Cmpxchg && src == r))
        }
        Insn::LoadPacket { .. } => r == Reg::R0,
        Insn::Call { .. } | Insn::CallX { .. } => r.index() <= 5,
        _ => false,
    }
}

/// Whether `insn` writes register `r10`.
pub fn insn_writes_r10(insn: &Insn) -> bool {
    insn_writes(insn, Reg::R10)
}

/// Whether any instruction of `insns` can write `r10`.
pub fn writes_r10(insns: &[Insn]) -> bool {
    insns.iter().any(insn_writes_r10)
}

/// The hints at the program's entry. `frame_exact`: `r10` is never written.
pub fn entry_hints(frame_exact: bool) -> Hints {
    let mut hints = [Hint::Nothing; 11];
    hints[1] = Hint::Region(layout::INPUT as u8);
    hints[10] = if frame_exact { Hint::frame(0) } else { STACK };
    hints
}

/// The hints at a local call's target, from the caller's at the call: the caller's frame lies
/// just above the callee's, and `r10` is the callee's frame pointer.
pub fn callee_hints(caller: &Hints, frame_exact: bool) -> Hints {
    let frame = ebpf_abi::STACK_FRAME_SIZE as i64;
    let mut callee = caller.map(|h| match h {
        Hint::Frame { lo, hi } => Hint::frame_range(i64::from(lo) + frame, i64::from(hi) + frame),
        h => h,
    });
    callee[10] = entry_hints(frame_exact)[10];
    callee
}

/// The hints after a local call returns, from the caller's at the call: `r6`–`r10` are
/// preserved, the rest is whatever the callee left.
pub fn return_hints(caller: &Hints) -> Hints {
    let mut back = [Hint::Nothing; 11];
    back[6..].copy_from_slice(&caller[6..]);
    back
}

/// Meets `from` into `into`; whether `into` changed.
pub fn meet_into(into: &mut Hints, from: &Hints) -> bool {
    let mut changed = false;
    for (a, &b) in into.iter_mut().zip(from) {
        if *a != b {
            let m = a.meet(b);
            changed |= m != *a;
            *a = m;
        }
    }
    changed
}

/// The region a VM address constant lies in, if it can be one.
fn region_of_constant(value: u64) -> Hint {
    let region = layout::region_of(value);
    if (1..=layout::MAX_REGION).contains(&region) {
        Hint::Region(region as u8)
    } else {
        Hint::Nothing
    }
}

/// The effect of one instruction on the hints. A local call is left to the caller of this
/// function ([`callee_hints`], [`return_hints`]); for a helper call, `r0`–`r5` are forgotten.
pub fn transfer(hints: &mut Hints, insn: &Insn) {
    fn set(hints: &mut Hints, r: Reg, h: Hint) {
        hints[usize::from(r.index())] = h;
    }
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let d = hints[usize::from(dst.index())];
            let src = match src {
                Operand::Reg(s) => Src::Reg(hints[usize::from(s.index())]),
                Operand::Imm(imm) => Src::Imm(i64::from(imm)),
            };
            let h = if width == Width::W64 {
                alu64(op, d, src)
            } else {
                alu32(op, d, src)
            };
            set(hints, dst, h);
        }
        Insn::Load {
            size, signed, dst, ..
        } => {
            let h = match (size, signed) {
                (Size::B, false) => Hint::AtMost(0xff),
                (Size::H, false) => Hint::AtMost(0xffff),
                (Size::W, false) => Hint::AtMost(u32::MAX),
                _ => Hint::Nothing,
            };
            set(hints, dst, h);
        }
        Insn::Neg { dst, .. } | Insn::MovSx { dst, .. } | Insn::Endian { dst, .. } => {
            set(hints, dst, Hint::Nothing)
        }
        Insn::LoadImm64 { dst, imm, .. } => {
            let h = u32::try_from(imm).map_or_else(|_| region_of_constant(imm), Hint::AtMost);
            set(hints, dst, h);
        }
        Insn::Atomic { op, src, .. } => {
            if op.fetches() {
                set(hints, src, Hint::Nothing);
                set(hints, Reg::R0, Hint::Nothing);
            }
        }
        Insn::LoadPacket { .. } => set(hints, Reg::R0, Hint::Nothing),
        Insn::Call { .. } | Insn::CallX { .. } => {
            for h in &mut hints[..6] {
                *h = Hint::Nothing;
            }
        }
        Insn::Store { .. }
        | Insn::Ja { .. }
        | Insn::Ja32 { .. }
        | Insn::Jump { .. }
        | Insn::Exit => {}
    }
}

/// The source operand of an ALU instruction, as the hint functions see it.
#[derive(Clone, Copy)]
enum Src {
    /// An immediate, sign-extended to 64 bits.
    Imm(i64),
    /// A register's hint.
    Reg(Hint),
}

impl Src {
    /// An unsigned upper bound of the 64-bit source value, if one is known.
    fn bound(self) -> Option<u64> {
        match self {
            Src::Imm(k) if k >= 0 => Some(k as u64),
            Src::Reg(Hint::AtMost(m)) => Some(u64::from(m)),
            _ => None,
        }
    }
}

/// The hint for the result of a 64-bit ALU operation `d = d op src`.
fn alu64(op: AluOp, d: Hint, src: Src) -> Hint {
    let dst_bound = match d {
        Hint::AtMost(m) => Some(u64::from(m)),
        _ => None,
    };
    match (op, src) {
        (AluOp::Mov, Src::Imm(k)) if k >= 0 => Hint::at_most(k as u64),
        (AluOp::Mov, Src::Imm(k)) => region_of_constant(k as u64),
        (AluOp::Mov, Src::Reg(s)) => s,
        (AluOp::Add | AluOp::Sub, Src::Imm(k)) => {
            let k = if op == AluOp::Add { k } else { -k };
            match d {
                Hint::Frame { lo, hi } => Hint::frame_range(i64::from(lo) + k, i64::from(hi) + k),
                Hint::AtMost(m) if k >= 0 => Hint::at_most(u64::from(m) + k as u64),
                Hint::AtMost(_) => Hint::Nothing,
                d => d,
            }
        }
        (AluOp::Add, Src::Reg(s)) => match (d, s) {
            (Hint::Frame { lo, hi }, Hint::AtMost(m))
            | (Hint::AtMost(m), Hint::Frame { lo, hi }) => {
                Hint::frame_range(i64::from(lo), i64::from(hi) + i64::from(m))
            }
            (Hint::AtMost(a), Hint::AtMost(b)) => Hint::at_most(u64::from(a) + u64::from(b)),
            _ => pointer_arithmetic(op, d, s),
        },
        (AluOp::Sub, Src::Reg(s)) => match (d, s) {
            (Hint::Frame { lo, hi }, Hint::AtMost(m)) => {
                Hint::frame_range(i64::from(lo) - i64::from(m), i64::from(hi))
            }
            _ => pointer_arithmetic(op, d, s),
        },
        (AluOp::Mul, _) => match (dst_bound, src.bound()) {
            (Some(a), Some(b)) => a.checked_mul(b).map_or(Hint::Nothing, Hint::at_most),
            _ => Hint::Nothing,
        },
        (AluOp::And, _) => match (dst_bound, src.bound()) {
            (Some(a), Some(b)) => Hint::at_most(a.min(b)),
            (Some(m), None) | (None, Some(m)) => Hint::at_most(m),
            (None, None) => Hint::Nothing,
        },
        // Unsigned division and right shifts never make a value larger.
        (AluOp::Div | AluOp::Rsh, Src::Reg(_)) => dst_bound.map_or(Hint::Nothing, Hint::at_most),
        (AluOp::Rsh, Src::Imm(k)) => Hint::at_most(dst_bound.unwrap_or(u64::MAX) >> (k & 63)),
        (AluOp::Lsh, Src::Imm(k)) => match dst_bound {
            Some(m) if k & 63 < 32 => Hint::at_most(m << (k & 63)),
            _ => Hint::Nothing,
        },
        _ => Hint::Nothing,
    }
}

/// The hint for the result of a 32-bit ALU operation (zero-extended, so at most `u32::MAX`).
fn alu32(op: AluOp, d: Hint, src: Src) -> Hint {
    let dst_bound = match d {
        Hint::AtMost(m) => m,
        _ => u32::MAX,
    };
    // The operation reads the low 32 bits of the source.
    let src_bound = match src {
        Src::Imm(k) => k as u32,
        Src::Reg(Hint::AtMost(m)) => m,
        Src::Reg(_) => u32::MAX,
    };
    Hint::AtMost(match (op, src) {
        (AluOp::Mov, _) => src_bound,
        (AluOp::And, _) => dst_bound.min(src_bound),
        (AluOp::Div | AluOp::Rsh, Src::Reg(_)) => dst_bound,
        (AluOp::Rsh, Src::Imm(k)) => dst_bound >> (k & 31),
        _ => u32::MAX,
    })
}

/// Adding or subtracting registers that are not a frame offset and a bound: a pointer plus or
/// minus a non-pointer keeps the pointer's region guess; anything else is unknown.
fn pointer_arithmetic(op: AluOp, d: Hint, s: Hint) -> Hint {
    match (d.weaken(), s.weaken()) {
        (Hint::Region(_), Hint::Region(_)) => Hint::Nothing,
        (d @ Hint::Region(_), _) => d,
        (_, s @ Hint::Region(_)) if op == AluOp::Add => s,
        _ => Hint::Nothing,
    }
}

/// Solves the hints at the entry of every block of a graph of `blocks` blocks, starting from
/// `init` at block `entry`. `flow(b, entry_hints, edge)` calls `edge(successor, hints)` for
/// each successor of block `b` with the hints that flow there (applying [`transfer`] over the block and the call
/// rules as the JIT's graph requires). Unreached blocks keep [`Hint::Unreached`].
///
/// Blocks are visited in index order, sweep after sweep, each only when its entry changed.
/// The JITs number blocks in pc order, where most edges go forward, so one sweep settles
/// straight-line code and each enclosing loop adds about one more (the lattice is three
/// levels deep), instead of revisiting join points once per path as a stack worklist does.
pub fn solve(
    blocks: usize,
    entry: usize,
    init: Hints,
    mut flow: impl FnMut(usize, &Hints, &mut dyn FnMut(usize, &Hints)),
) -> Vec<Hints> {
    let mut entries = vec![[Hint::Unreached; 11]; blocks];
    if entry >= blocks {
        return entries;
    }
    entries[entry] = init;
    let mut pending = vec![false; blocks];
    pending[entry] = true;
    let mut sweep_from = Some(entry);
    while let Some(first) = sweep_from.take() {
        for b in first..blocks {
            if !core::mem::replace(&mut pending[b], false) {
                continue;
            }
            let state = entries[b];
            flow(b, &state, &mut |to, hints| {
                if let Some(slot) = entries.get_mut(to)
                    && meet_into(slot, hints)
                {
                    pending[to] = true;
                    if to <= b {
                        sweep_from = Some(sweep_from.map_or(to, |s| s.min(to)));
                    }
                }
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_keep_their_region_through_moves_and_offsets() {
        let program = ebpf_isa::assemble(
            "mov %r4, %r10\nsub %r4, 256\nmov %r6, %r2\nand %r6, 0xf8\nadd %r6, %r4\n\
             lddw %r3, 0x100000000\nadd %r3, 8\nmov %r7, %r6\nadd %r7, %r4\nexit",
        )
        .unwrap();
        let mut h = entry_hints(false);
        for insn in program.insns() {
            transfer(&mut h, insn);
        }
        assert_eq!(h[1], Hint::Region(4), "r1: the input");
        assert_eq!(h[4], STACK);
        assert_eq!(h[6], STACK, "index + pointer");
        assert_eq!(h[3], Hint::Region(1), "lddw of a VM address");
        assert_eq!(h[7], Hint::Nothing, "pointer + pointer");
        assert_eq!(h[2], Hint::Nothing);
    }

    #[test]
    fn frame_offsets_are_exact_and_shift_by_a_frame_across_calls() {
        let program = ebpf_isa::assemble("mov %r4, %r10\nsub %r4, 256\nadd %r4, 8\nexit").unwrap();
        assert!(!writes_r10(program.insns()));
        let mut h = entry_hints(true);
        for insn in program.insns() {
            transfer(&mut h, insn);
        }
        assert_eq!(h[4], Hint::frame(-248));
        let callee = callee_hints(&h, true);
        assert_eq!(callee[4], Hint::frame(-248 + 512), "the caller's frame");
        assert_eq!(callee[10], Hint::frame(0));
        assert_eq!(return_hints(&h)[4], Hint::Nothing);
        assert_eq!(return_hints(&h)[10], Hint::frame(0));
        let r10 = Hint::frame(0);
        assert!(r10.frame_access_is_safe(-512, 8));
        assert!(r10.frame_access_is_safe(-8, 8));
        assert!(!r10.frame_access_is_safe(-4, 8));
        assert!(!r10.frame_access_is_safe(-513, 1));
        assert!(
            !STACK.frame_access_is_safe(-8, 8),
            "a region guess is not a fact"
        );
        let atomic = |op| Insn::Atomic {
            width: Width::W64,
            op,
            dst: Reg::R1,
            src: Reg::R10,
            off: 0,
        };
        assert!(insn_writes_r10(&atomic(AtomicOp::Add { fetch: true })));
        assert!(!insn_writes_r10(&atomic(AtomicOp::Add { fetch: false })));
        assert!(!insn_writes_r10(&atomic(AtomicOp::Cmpxchg)), "writes r0");
        assert!(writes_r10(
            ebpf_isa::assemble("mov %r10, 0\nexit").unwrap().insns()
        ));
    }

    #[test]
    fn bounded_indices_make_frame_ranges() {
        // A 32-entry u64 table at r10 - 256, indexed by a byte: &table[byte >> 3].
        let program = ebpf_isa::assemble(
            "mov %r4, %r10\nsub %r4, 256\nldxb %r6, [%r1]\nand %r6, 0xf8\nadd %r6, %r4\n\
             ldxb %r7, [%r1]\nrsh %r7, 3\nlsh %r7, 3\nmov %r8, %r4\nadd %r8, %r7\n\
             ldxh %r9, [%r1]\nadd %r9, %r4\nmov %r5, %r10\nsub %r5, %r7\nexit",
        )
        .unwrap();
        let mut h = entry_hints(true);
        for insn in program.insns() {
            transfer(&mut h, insn);
        }
        assert_eq!(h[6], Hint::Frame { lo: -256, hi: -8 });
        assert!(h[6].frame_access_is_safe(0, 8));
        assert!(
            !h[6].frame_access_is_safe(1, 8),
            "the last entry's end would pass r10"
        );
        assert_eq!(h[7], Hint::AtMost(0xf8), "byte >> 3 << 3");
        assert_eq!(h[8], Hint::Frame { lo: -256, hi: -8 });
        assert_eq!(
            h[9],
            Hint::Frame {
                lo: -256,
                hi: 65279
            },
            "a u16 index overruns"
        );
        assert!(!h[9].frame_access_is_safe(0, 1));
        assert_eq!(h[5], Hint::Frame { lo: -248, hi: 0 });
        assert!(
            !h[5].frame_access_is_safe(0, 8),
            "r10 - 0 is past the frame"
        );
        // Unknown values are not bounded; 32-bit results are.
        let mut h = entry_hints(true);
        let program = ebpf_isa::assemble(
            "ldxdw %r2, [%r1]\nmov %r3, %r2\nadd %r3, %r10\nmov32 %r4, %r2\nmov %r5, %r4\n\
             mul %r5, 2\nmov %r6, %r4\nsub %r6, 1\nexit",
        )
        .unwrap();
        for insn in program.insns() {
            transfer(&mut h, insn);
        }
        assert_eq!(h[3], STACK, "an unknown index: a guess, not a range");
        assert_eq!(h[4], Hint::AtMost(u32::MAX));
        assert_eq!(h[5], Hint::Nothing, "past u32::MAX");
        assert_eq!(h[6], Hint::Nothing, "may wrap below zero");
        assert_eq!(
            Hint::AtMost(3).meet(Hint::AtMost(4)),
            Hint::Nothing,
            "no widening"
        );
        assert_eq!(Hint::frame(-8).meet(Hint::frame(-16)), STACK);
    }

    #[test]
    fn loops_meet_to_a_fixed_point() {
        // Block 0 sets r2 to the stack; block 1 (a loop) moves r1 along and, on its back edge,
        // overwrites r2 with an input pointer: the loop head ends up knowing nothing of r2.
        let entries = solve(3, 0, entry_hints(false), |b, h, edge| {
            let mut h = *h;
            match b {
                0 => {
                    h[2] = STACK;
                    edge(1, &h);
                }
                1 => {
                    let back = {
                        let mut back = h;
                        back[2] = h[1];
                        back
                    };
                    edge(1, &back);
                    edge(2, &h);
                }
                _ => {}
            }
        });
        assert_eq!(entries[1][1], Hint::Region(4));
        assert_eq!(entries[1][2], Hint::Nothing);
        assert_eq!(entries[2][2], Hint::Nothing);
        assert_eq!(
            solve(2, 0, entry_hints(false), |_, _, _| {})[1][0],
            Hint::Unreached
        );
    }
}
