//! Region hints over the plan's blocks: the shared analysis of `ebpf_cfg::pointers` (which
//! region a register probably points into, and exact frame offsets when `r10` is never
//! written), solved on this crate's block graph. A hint is a guess for speed, never a proof,
//! except for [`Hint::Frame`] offsets that `Hint::frame_access_is_safe` accepts.

use ebpf_cfg::pointers;
pub(crate) use ebpf_cfg::pointers::{Hint, Hints as State, transfer, writes_r10};
use ebpf_isa::Insn;

use crate::plan::{Plan, Target, Term};

/// The hints at the entry of every plan block.
///
/// `frame_exact`: whether `r10` is never written, so that frame offsets are facts.
pub(crate) fn block_entries(plan: &Plan, insns: &[Insn], frame_exact: bool) -> Vec<State> {
    let n = plan.blocks.len();
    let Target::Block(entry) = plan.entry else {
        return vec![[Hint::Unreached; 11]; n];
    };
    pointers::solve(
        n,
        entry,
        pointers::entry_hints(frame_exact),
        |b, hints, edge| {
            let block = &plan.blocks[b];
            let mut state = *hints;
            let end = match block.term {
                // The call itself clobbers nothing here; the callee and return site get their own.
                Term::Call { .. } => block.insns.end.saturating_sub(1),
                _ => block.insns.end,
            };
            for insn in &insns[block.insns.start..end] {
                transfer(&mut state, insn);
            }
            for s in plan.intra_successors(b).into_iter().flatten() {
                edge(s, &state);
            }
            if let Term::Call { target, site } = block.term {
                if let Target::Block(t) = target {
                    edge(t, &pointers::callee_hints(&state, frame_exact));
                }
                edge(plan.site(site), &pointers::return_hints(&state));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_headers_keep_pointer_hints() {
        let program = ebpf_isa::assemble(
            "mov %r4, %r10\nsub %r4, 256\nmov %r6, %r2\nand %r6, 0xf8\nadd %r6, %r4\n\
             lddw %r3, 0x100000000\nadd %r3, 8\nloop:\nldxb %r7, [%r1]\nadd %r1, 1\n\
             jne %r7, 0, loop\nexit",
        )
        .unwrap();
        let plan = Plan::build(&program, usize::MAX, false);
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
    fn callees_see_the_callers_frame_one_frame_up() {
        let program = ebpf_isa::assemble(
            "mov %r4, %r10\nsub %r4, 256\nadd %r4, 8\nmov %r5, %r4\nadd %r5, %r2\n\
             call local f\nexit\nf:\nldxdw %r0, [%r10-8]\nexit",
        )
        .unwrap();
        assert!(!writes_r10(program.insns()));
        let plan = Plan::build(&program, usize::MAX, false);
        let entries = block_entries(&plan, program.insns(), true);
        let callee = plan.blocks.iter().position(|b| b.insns.start == 7).unwrap();
        assert_eq!(entries[callee][10], Hint::frame(0));
        assert_eq!(
            entries[callee][4],
            Hint::frame(-248 + 512),
            "the caller's frame"
        );
        assert_eq!(entries[callee][5], Hint::Region(2), "unknown offset");
    }
}
