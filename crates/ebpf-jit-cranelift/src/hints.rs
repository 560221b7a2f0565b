//! Region hints: which memory region a register probably points into, so that a memory access
//! can first be checked against that one region's bounds with loop-invariant values (one
//! subtraction, one compare), falling back to the full table lookup only when the guess is
//! wrong. A hint is a guess for speed, never a proof: a wrong hint costs time, not correctness.
//!
//! The analysis is a forward dataflow over the plan's blocks. At entry `r10` points into the
//! stack and `r1` (probably) into the input; `lddw` of a VM address names its region; `mov`,
//! and adding or subtracting a non-pointer, keep a pointer's hint; anything else forgets it.
//! Local calls pass their state to the callee (`r10`: the stack), and return sites get the
//! caller's `r6`–`r10` back.
//!
//! One kind of hint is a fact, not a guess: when no instruction of the program writes `r10`,
//! `r10` is always the top of the current 512-byte frame, and a register set from it by `mov`
//! and constant additions is exactly `r10 + k` ([`Hint::Frame`]). The translator uses that to
//! access `[r10 - 512, r10)` without a check (see [`frame_access_is_safe`]).

use ebpf_abi::layout;
use ebpf_isa::{AluOp, Insn, Operand, Width};

use crate::plan::{Plan, Target, Term};

/// What is known about a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Not reached yet (the top of the lattice).
    Unreached,
    /// Probably an address in this region.
    Region(u8),
    /// Exactly the current frame pointer plus this offset (only when `r10` is never written).
    Frame(i64),
    /// Nothing useful.
    Nothing,
}

/// Hints for `r0`–`r10`.
pub(crate) type State = [Hint; 11];

const STACK: Hint = Hint::Region(layout::STACK as u8);

/// The region guess of a hint (a frame offset is a stack address).
fn weaken(h: Hint) -> Hint {
    match h {
        Hint::Frame(_) => STACK,
        h => h,
    }
}

fn meet(a: Hint, b: Hint) -> Hint {
    match (a, b) {
        (Hint::Unreached, x) | (x, Hint::Unreached) => x,
        (Hint::Frame(x), Hint::Frame(y)) if x == y => a,
        (Hint::Region(x), Hint::Region(y)) if x == y => a,
        (a, b) if weaken(a) == STACK && weaken(b) == STACK => STACK,
        _ => Hint::Nothing,
    }
}

/// Whether a `width`-byte access at `r10 + offset` (with `r10` never written) is inside the
/// current frame, `[r10 - 512, r10)`, and so inside the stack region whatever the depth.
pub(crate) fn frame_access_is_safe(offset: i64, width: u32) -> bool {
    let frame = ebpf_abi::STACK_FRAME_SIZE as i64;
    offset >= -frame && offset.saturating_add(i64::from(width)) <= 0
}

/// Whether any instruction of `insns` can write `r10`.
pub(crate) fn writes_r10(insns: &[Insn]) -> bool {
    insns.iter().any(|insn| match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::LoadImm64 { dst, .. }
        | Insn::Load { dst, .. } => dst == ebpf_isa::Reg::R10,
        Insn::Atomic { op, src, .. } => op.fetches() && src == ebpf_isa::Reg::R10,
        _ => false,
    })
}

/// Meets `from` into `into`; whether `into` changed.
fn meet_into(into: &mut State, from: &State) -> bool {
    let mut changed = false;
    for (a, b) in into.iter_mut().zip(from) {
        let m = meet(*a, *b);
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

/// The effect of one instruction on the hints.
pub(crate) fn transfer(state: &mut State, insn: &Insn) {
    fn set(state: &mut State, r: ebpf_isa::Reg, h: Hint) {
        state[usize::from(r.index())] = h;
    }
    match *insn {
        Insn::Alu {
            width: Width::W64,
            op,
            dst,
            src,
        } => {
            let d = state[usize::from(dst.index())];
            let h = match (op, src) {
                (AluOp::Mov, Operand::Reg(s)) => state[usize::from(s.index())],
                (AluOp::Mov, Operand::Imm(imm)) => region_of_constant(i64::from(imm) as u64),
                (AluOp::Add | AluOp::Sub, Operand::Imm(imm)) => match d {
                    Hint::Frame(k) => {
                        let imm = i64::from(imm);
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
                    match (weaken(d), weaken(state[usize::from(s.index())])) {
                        (Hint::Region(_), Hint::Region(_)) => Hint::Nothing,
                        (d @ Hint::Region(_), _) => d,
                        (_, s @ Hint::Region(_)) if op == AluOp::Add => s,
                        _ => Hint::Nothing,
                    }
                }
                _ => Hint::Nothing,
            };
            state[usize::from(dst.index())] = h;
        }
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::Load { dst, .. } => set(state, dst, Hint::Nothing),
        Insn::LoadImm64 { dst, imm, .. } => set(state, dst, region_of_constant(imm)),
        Insn::Atomic { op, src, .. } => {
            if op.fetches() {
                set(state, src, Hint::Nothing);
                set(state, ebpf_isa::Reg::R0, Hint::Nothing);
            }
        }
        Insn::LoadPacket { .. } => set(state, ebpf_isa::Reg::R0, Hint::Nothing),
        Insn::Call { .. } | Insn::CallX { .. } => {
            for h in &mut state[..6] {
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

/// The hints at the entry of every plan block.
///
/// `frame_exact`: whether `r10` is never written, so that frame offsets are facts.
pub(crate) fn block_entries(plan: &Plan, insns: &[Insn], frame_exact: bool) -> Vec<State> {
    let fp = if frame_exact { Hint::Frame(0) } else { STACK };
    let n = plan.blocks.len();
    let mut entries = vec![[Hint::Unreached; 11]; n];
    let Target::Block(entry) = plan.entry else {
        return entries;
    };
    let mut init = [Hint::Nothing; 11];
    init[1] = Hint::Region(layout::INPUT as u8);
    init[10] = fp;
    entries[entry] = init;
    let mut work = vec![entry];
    let mut queued = vec![false; n];
    queued[entry] = true;
    while let Some(b) = work.pop() {
        queued[b] = false;
        let block = &plan.blocks[b];
        let mut state = entries[b];
        let end = match block.term {
            // The call itself clobbers nothing here; the callee and return site get their own.
            Term::Call { .. } => block.insns.end.saturating_sub(1),
            _ => block.insns.end,
        };
        for insn in &insns[block.insns.start..end] {
            transfer(&mut state, insn);
        }
        let mut flow = |to: usize, s: &State, work: &mut Vec<usize>, queued: &mut Vec<bool>| {
            if meet_into(&mut entries[to], s) && !queued[to] {
                queued[to] = true;
                work.push(to);
            }
        };
        for s in plan.intra_successors(b).into_iter().flatten() {
            flow(s, &state, &mut work, &mut queued);
        }
        if let Term::Call { target, site } = block.term {
            // The caller's frame lies just above the callee's.
            let mut callee = state.map(|h| match h {
                Hint::Frame(k) => k
                    .checked_add(ebpf_abi::STACK_FRAME_SIZE as i64)
                    .map_or(STACK, Hint::Frame),
                h => h,
            });
            callee[10] = fp;
            if let Target::Block(t) = target {
                flow(t, &callee, &mut work, &mut queued);
            }
            if let Some(Target::Block(r)) = plan.sites.get(site).copied() {
                let mut back = [Hint::Nothing; 11];
                back[6..].copy_from_slice(&state[6..]);
                flow(r, &back, &mut work, &mut queued);
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
             lddw %r3, 0x100000000\nadd %r3, 8\nloop:\nldxb %r7, [%r1]\nadd %r1, 1\n\
             jne %r7, 0, loop\nexit",
        )
        .unwrap();
        let plan = Plan::build(&program);
        let entries = block_entries(&plan, program.insns(), false);
        let header = plan.blocks.iter().position(|b| b.insns.start == 7).unwrap();
        let s = entries[header];
        assert_eq!(s[1], Hint::Region(4), "r1 advances through the input");
        assert_eq!(s[4], Hint::Region(2));
        assert_eq!(s[6], Hint::Region(2), "index + pointer");
        assert_eq!(s[3], Hint::Region(1), "lddw of a VM address");
        assert_eq!(s[7], Hint::Nothing);
    }

    #[test]
    fn frame_offsets_are_exact_when_r10_is_never_written() {
        let program = ebpf_isa::assemble(
            "mov %r4, %r10\nsub %r4, 256\nadd %r4, 8\nmov %r5, %r4\nadd %r5, %r2\n\
             call local f\nexit\nf:\nldxdw %r0, [%r10-8]\nexit",
        )
        .unwrap();
        assert!(!writes_r10(program.insns()));
        let plan = Plan::build(&program);
        let entries = block_entries(&plan, program.insns(), true);
        let callee = plan.blocks.iter().position(|b| b.insns.start == 7).unwrap();
        assert_eq!(entries[callee][10], Hint::Frame(0));
        assert_eq!(
            entries[callee][4],
            Hint::Frame(-248 + 512),
            "the caller's frame"
        );
        assert_eq!(entries[callee][5], Hint::Region(2), "unknown offset");
        assert!(frame_access_is_safe(-512, 8));
        assert!(frame_access_is_safe(-8, 8));
        assert!(!frame_access_is_safe(-4, 8));
        assert!(!frame_access_is_safe(-513, 1));
        assert!(writes_r10(
            ebpf_isa::assemble("mov %r10, 0\nexit").unwrap().insns()
        ));
    }
}
