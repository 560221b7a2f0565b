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
    /// Nothing useful.
    Nothing,
}

/// Hints for `r0`–`r10`.
pub(crate) type State = [Hint; 11];

fn meet(a: Hint, b: Hint) -> Hint {
    match (a, b) {
        (Hint::Unreached, x) | (x, Hint::Unreached) => x,
        (Hint::Region(x), Hint::Region(y)) if x == y => a,
        _ => Hint::Nothing,
    }
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
                (AluOp::Add | AluOp::Sub, Operand::Imm(_)) => d,
                (AluOp::Add | AluOp::Sub, Operand::Reg(s)) => {
                    match (d, state[usize::from(s.index())]) {
                        (Hint::Region(_), Hint::Region(_)) => Hint::Nothing,
                        (Hint::Region(_), _) => d,
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
pub(crate) fn block_entries(plan: &Plan, insns: &[Insn]) -> Vec<State> {
    let n = plan.blocks.len();
    let mut entries = vec![[Hint::Unreached; 11]; n];
    let Target::Block(entry) = plan.entry else {
        return entries;
    };
    let mut init = [Hint::Nothing; 11];
    init[1] = Hint::Region(layout::INPUT as u8);
    init[10] = Hint::Region(layout::STACK as u8);
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
            let mut callee = state;
            callee[10] = Hint::Region(layout::STACK as u8);
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
        let entries = block_entries(&plan, program.insns());
        let header = plan.blocks.iter().position(|b| b.insns.start == 7).unwrap();
        let s = entries[header];
        assert_eq!(s[1], Hint::Region(4), "r1 advances through the input");
        assert_eq!(s[4], Hint::Region(2));
        assert_eq!(s[6], Hint::Region(2), "index + pointer");
        assert_eq!(s[3], Hint::Region(1), "lddw of a VM address");
        assert_eq!(s[7], Hint::Nothing);
    }
}
