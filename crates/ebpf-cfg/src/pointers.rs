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
//! One kind of hint is a fact: when no instruction writes `r10` ([`writes_r10`]), `r10` is
//! always the top of the current 512-byte frame, and a register set from it by `mov` and
//! constant additions is exactly `r10 + k` ([`Hint::Frame`]). An access there that
//! [`frame_access_is_safe`] needs no check at all.
//!
//! The JITs split programs into blocks their own way (each must match the interpreter on
//! unverified programs), so this module gives the lattice, the transfer function and a
//! worklist solver ([`solve`]) over any block graph, and each JIT supplies its edges.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::layout;
use ebpf_isa::{AluOp, AtomicOp, Insn, Operand, Reg, Width};

/// What is known about a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Not reached yet (the top of the lattice); at a solved block entry: unreachable.
    Unreached,
    /// Probably an address in this region.
    Region(u8),
    /// Exactly the current frame pointer plus this offset (only when `r10` is never written).
    /// Offsets that do not fit an `i32` are kept as [`STACK`] instead: no access from there
    /// could be in the frame anyway, and a small hint keeps the solver's copies cheap.
    Frame(i32),
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
            Hint::Frame(_) => Some(layout::STACK as u8),
            Hint::Unreached | Hint::Nothing => None,
        }
    }

    fn weaken(self) -> Hint {
        match self {
            Hint::Frame(_) => STACK,
            h => h,
        }
    }

    fn meet(self, other: Hint) -> Hint {
        match (self, other) {
            (Hint::Unreached, x) | (x, Hint::Unreached) => x,
            (a, b) if a == b => a,
            (a, b) if a.weaken() == STACK && b.weaken() == STACK => STACK,
            _ => Hint::Nothing,
        }
    }
}

/// Whether a `width`-byte access at `r10 + offset` (with `r10` never written) is inside the
/// current frame, `[r10 - 512, r10)`, and so inside the stack region whatever the depth.
pub fn frame_access_is_safe(offset: i64, width: u32) -> bool {
    let frame = ebpf_abi::STACK_FRAME_SIZE as i64;
    offset >= -frame && offset.saturating_add(i64::from(width)) <= 0
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
    hints[10] = if frame_exact { Hint::Frame(0) } else { STACK };
    hints
}

/// The hints at a local call's target, from the caller's at the call: the caller's frame lies
/// just above the callee's, and `r10` is the callee's frame pointer.
pub fn callee_hints(caller: &Hints, frame_exact: bool) -> Hints {
    let mut callee = caller.map(|h| match h {
        Hint::Frame(k) => k
            .checked_add(ebpf_abi::STACK_FRAME_SIZE as i32)
            .map_or(STACK, Hint::Frame),
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
    if into == from {
        return false;
    }
    let mut changed = false;
    for (a, b) in into.iter_mut().zip(from) {
        let m = a.meet(*b);
        changed |= m != *a;
        *a = m;
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
            width: Width::W64,
            op,
            dst,
            src,
        } => {
            let d = hints[usize::from(dst.index())];
            let h = match (op, src) {
                (AluOp::Mov, Operand::Reg(s)) => hints[usize::from(s.index())],
                (AluOp::Mov, Operand::Imm(imm)) => region_of_constant(i64::from(imm) as u64),
                (AluOp::Add | AluOp::Sub, Operand::Imm(imm)) => match d {
                    Hint::Frame(k) => {
                        let k = if op == AluOp::Add {
                            k.checked_add(imm)
                        } else {
                            k.checked_sub(imm)
                        };
                        k.map_or(STACK, Hint::Frame)
                    }
                    d => d,
                },
                (AluOp::Add | AluOp::Sub, Operand::Reg(s)) => {
                    match (d.weaken(), hints[usize::from(s.index())].weaken()) {
                        (Hint::Region(_), Hint::Region(_)) => Hint::Nothing,
                        (d @ Hint::Region(_), _) => d,
                        (_, s @ Hint::Region(_)) if op == AluOp::Add => s,
                        _ => Hint::Nothing,
                    }
                }
                _ => Hint::Nothing,
            };
            set(hints, dst, h);
        }
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::Load { dst, .. } => set(hints, dst, Hint::Nothing),
        Insn::LoadImm64 { dst, imm, .. } => set(hints, dst, region_of_constant(imm)),
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

/// Solves the hints at the entry of every block of a graph of `blocks` blocks, starting from
/// `init` at block `entry`. `flow(b, entry_hints, out)` pushes onto `out` each successor of
/// block `b` with the hints that flow there (applying [`transfer`] over the block and the call
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
    mut flow: impl FnMut(usize, &Hints, &mut Vec<(usize, Hints)>),
) -> Vec<Hints> {
    let mut entries = vec![[Hint::Unreached; 11]; blocks];
    if entry >= blocks {
        return entries;
    }
    entries[entry] = init;
    let mut pending = vec![false; blocks];
    pending[entry] = true;
    let mut out = Vec::new();
    let mut sweep_from = Some(entry);
    while let Some(first) = sweep_from.take() {
        for b in first..blocks {
            if !core::mem::replace(&mut pending[b], false) {
                continue;
            }
            out.clear();
            flow(b, &entries[b], &mut out);
            for &(to, ref hints) in &out {
                if let Some(slot) = entries.get_mut(to)
                    && meet_into(slot, hints)
                {
                    pending[to] = true;
                    if to <= b {
                        sweep_from = Some(sweep_from.map_or(to, |s| s.min(to)));
                    }
                }
            }
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
        assert_eq!(h[4], Hint::Frame(-248));
        let callee = callee_hints(&h, true);
        assert_eq!(callee[4], Hint::Frame(-248 + 512), "the caller's frame");
        assert_eq!(callee[10], Hint::Frame(0));
        assert_eq!(return_hints(&h)[4], Hint::Nothing);
        assert_eq!(return_hints(&h)[10], Hint::Frame(0));
        assert!(frame_access_is_safe(-512, 8));
        assert!(frame_access_is_safe(-8, 8));
        assert!(!frame_access_is_safe(-4, 8));
        assert!(!frame_access_is_safe(-513, 1));
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
    fn loops_meet_to_a_fixed_point() {
        // Block 0 sets r2 to the stack; block 1 (a loop) moves r1 along and, on its back edge,
        // overwrites r2 with an input pointer: the loop head ends up knowing nothing of r2.
        let entries = solve(3, 0, entry_hints(false), |b, h, out| {
            let mut h = *h;
            match b {
                0 => {
                    h[2] = STACK;
                    out.push((1, h));
                }
                1 => {
                    let back = {
                        let mut back = h;
                        back[2] = h[1];
                        back
                    };
                    out.push((1, back));
                    out.push((2, h));
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
