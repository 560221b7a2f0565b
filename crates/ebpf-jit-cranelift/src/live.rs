//! Which registers are live at the start of each plan block: the ones a run may still read
//! before writing them. Where generated code hands the run's registers over — to another unit,
//! or to the interpreter when the budget runs short — it stores only those; the others cannot
//! change what the run does.
//!
//! The analysis is interprocedural. A local call reads what its callee reads of `r0`–`r9`
//! (`r10` becomes the callee's frame) and what its return site reads of `r6`–`r10` (the call
//! saves those in its frame and `exit` restores them). `exit` reads `r0` (the host's result)
//! and what any return site reads of `r0`–`r5` (the caller continues with the callee's). A
//! helper call reads `r1`–`r5` and writes `r0`–`r5`, and a trap reads nothing. Registers are
//! not observable at the end of a run, so a register no path reads before writing is dead
//! even where another engine would still hold it.

use std::ops::Range;

pub(crate) use ebpf_abi::registers::{ALL, Regs};
use ebpf_abi::registers::{R0_TO_R5, bit, reads};
use ebpf_isa::{AtomicOp, Insn, Reg};

use crate::plan::{Plan, Target, Term};

/// `r6`–`r10`: what a local call's frame carries back to its return site.
const R6_TO_R10: Regs = ALL & !R0_TO_R5;

/// The registers `insn` writes whenever it completes (a trap ends the run).
pub(crate) fn writes(insn: &Insn) -> Regs {
    match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::LoadImm64 { dst, .. }
        | Insn::Load { dst, .. } => bit(dst),
        // A fetching atomic writes its source, a compare-exchange `r0`.
        Insn::Atomic { op, src, .. } if op.fetches() => {
            if op == AtomicOp::Cmpxchg {
                bit(Reg::R0)
            } else {
                bit(src)
            }
        }
        Insn::LoadPacket { .. } => bit(Reg::R0),
        Insn::Call {
            kind: ebpf_isa::CallKind::Helper,
            ..
        }
        | Insn::CallX { .. } => R0_TO_R5,
        _ => 0,
    }
}

/// The registers live at the start of each block of `plan`.
pub(crate) fn live_in(plan: &Plan, insns: &[Insn]) -> Vec<Regs> {
    let n = plan.blocks.len();
    // Per block: what its body reads before writing, and what it writes, in order. A local
    // call or `exit` that ends the block is left out: what it reads depends on `live`.
    let mut uses = vec![0 as Regs; n];
    let mut defs = vec![0 as Regs; n];
    for b in 0..plan.blocks.len() {
        let (mut u, mut d) = (0, 0);
        for insn in &insns[body(plan, b)] {
            u |= reads(insn, R0_TO_R5) & !d;
            d |= writes(insn);
        }
        (uses[b], defs[b]) = (u, d);
    }
    let mut live = vec![0 as Regs; n];
    let mut exit = exit_reads(return_reads(plan, &live));
    // Backward to a fixed point: sweeps from the last block, which converges quickly since
    // most edges go forward. `live` and `exit` only grow, so it ends.
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..n).rev() {
            if !plan.blocks[b].reachable {
                continue;
            }
            let new = uses[b] | (live_out(plan, &live, exit, b) & !defs[b]);
            if new != live[b] {
                live[b] = new;
                changed = true;
            }
        }
        let now = exit_reads(return_reads(plan, &live));
        if now != exit {
            exit = now;
            changed = true;
        }
    }
    live
}

/// The registers live before each instruction of block `b` (its first is `live[b]`), given
/// every block's live-in set `live` and what the return sites read, `ret_live`
/// ([`return_reads`], computed once per program: it looks at every block).
pub(crate) fn before_each(
    plan: &Plan,
    insns: &[Insn],
    live: &[Regs],
    ret_live: Regs,
    b: usize,
) -> Vec<Regs> {
    let block = &plan.blocks[b];
    let mut now = live_out(plan, live, exit_reads(ret_live), b);
    let body = body(plan, b);
    let mut out = vec![0; block.insns.len()];
    // The ending call or `exit`, if any, was counted in `live_out`.
    if let Some(last) = out.get_mut(body.len()) {
        *last = now;
    }
    for (j, insn) in insns[body].iter().enumerate().rev() {
        now = reads(insn, R0_TO_R5) | (now & !writes(insn));
        out[j] = now;
    }
    out
}

/// The registers live after block `b`'s body: at the start of its successors, or read by the
/// local call or `exit` that ends it.
fn live_out(plan: &Plan, live: &[Regs], exit: Regs, b: usize) -> Regs {
    match plan.blocks[b].term {
        Term::Fall(t) | Term::Jump(t) => live_at(live, t),
        Term::Branch { taken, fall } => live_at(live, taken) | live_at(live, fall),
        Term::Call { target, site } => {
            (live_at(live, target) & !bit(Reg::R10)) | (live[plan.site(site)] & R6_TO_R10)
        }
        Term::Exit => exit,
        Term::Trap { .. } => 0,
    }
}

/// The instructions of block `b` before a local call or `exit` that ends it.
fn body(plan: &Plan, b: usize) -> Range<usize> {
    let block = &plan.blocks[b];
    match block.term {
        Term::Call { .. } | Term::Exit => block.insns.start..block.insns.end.saturating_sub(1),
        _ => block.insns.clone(),
    }
}

/// What `exit` reads, given what the return sites read: `r0`, and what a return site may
/// still read of `r0`–`r5`.
fn exit_reads(ret_live: Regs) -> Regs {
    bit(Reg::R0) | (R0_TO_R5 & ret_live)
}

/// What any return site of a reachable local call reads: where `ret` may continue.
pub(crate) fn return_reads(plan: &Plan, live: &[Regs]) -> Regs {
    plan.blocks
        .iter()
        .filter(|b| b.reachable)
        .filter_map(|b| match b.term {
            Term::Call { site, .. } => Some(live[plan.site(site)]),
            _ => None,
        })
        .fold(0, |all, l| all | l)
}

fn live_at(live: &[Regs], t: Target) -> Regs {
    match t {
        Target::Block(s) => live[s],
        Target::Trap { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse(src: &str) -> (Plan, Vec<Regs>) {
        let program = ebpf_isa::assemble(src).unwrap();
        let plan = Plan::build(&program, usize::MAX, false);
        let live = live_in(&plan, program.insns());
        (plan, live)
    }

    #[test]
    fn a_loop_keeps_what_it_reads_alive() {
        let (plan, live) = analyse(
            "mov %r0, 0\nmov %r3, 7\nloop:\nadd %r0, %r2\nsub %r3, 1\njne %r3, 0, loop\n\
             mov %r4, 1\nexit",
        );
        let header = plan.blocks.iter().position(|b| b.insns.start == 2).unwrap();
        assert_eq!(live[0], bit(Reg::R2), "r0 and r3 are written first");
        // r0 (accumulated, returned), r2 (read), r3 (the counter); not r4, written first.
        assert_eq!(live[header], bit(Reg::R0) | bit(Reg::R2) | bit(Reg::R3));
    }

    #[test]
    fn calls_read_what_callee_and_return_site_read_and_helpers_their_arguments() {
        let (plan, live) = analyse("mov %r6, 1\ncall local f\nexit\nf:\nmov %r0, 1\nexit");
        // The callee writes r0 first and its return site reads only r0, the host's result.
        assert_eq!(live[0], 0);
        let site = plan.site(0);
        assert_eq!(live[site], bit(Reg::R0));
        let (_, live) = analyse("mov %r1, 1\ncall 5\nexit");
        let args = bit(Reg::R2) | bit(Reg::R3) | bit(Reg::R4) | bit(Reg::R5);
        assert_eq!(live[0], args);
    }

    fn block_at(plan: &Plan, start: usize) -> usize {
        plan.blocks
            .iter()
            .position(|b| b.insns.start == start)
            .unwrap()
    }

    #[test]
    fn exits_read_only_what_return_sites_need() {
        let (r0, r1, r3, r6, r7, r10) = (
            bit(Reg::R0),
            bit(Reg::R1),
            bit(Reg::R3),
            bit(Reg::R6),
            bit(Reg::R7),
            bit(Reg::R10),
        );
        // The `calls` shape: each callee reads its argument and its frame, each site only r0.
        let (plan, live) = analyse(
            "mov %r0, %r1\nmov %r1, %r0\ncall local f\nmov %r1, %r0\ncall local g\nexit\n\
             f:\nstxdw [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit\n\
             g:\nadd %r1, 1\nmov %r0, %r1\nexit",
        );
        assert_eq!(live[0], r1, "the call gives the callee its own r10");
        assert_eq!(live[block_at(&plan, 6)], r1 | r10);
        assert_eq!(live[block_at(&plan, 9)], r1);
        assert_eq!(live[plan.site(0)], r0);
        assert_eq!(live[plan.site(1)], r0);
        // r3 passes from the caller through a callee that leaves it alone to the return site.
        let (plan, live) =
            analyse("mov %r3, 5\ncall local f\nadd %r0, %r3\nexit\nf:\nmov %r0, 1\nexit");
        assert_eq!(live[plan.site(0)], r0 | r3);
        assert_eq!(live[block_at(&plan, 4)], r3);
        assert_eq!(live[0], 0);
        // The callee reads the caller's r6; the return site reads r7, which the frame keeps.
        let src = "mov %r6, 7\nmov %r7, 3\ncall local f\nadd %r0, %r7\nexit\n\
                   f:\nmov %r0, %r6\nexit";
        let (plan, live) = analyse(src);
        let program = ebpf_isa::assemble(src).unwrap();
        assert_eq!(live[block_at(&plan, 5)], r6);
        assert_eq!(live[plan.site(0)], r0 | r7);
        let each = before_each(&plan, program.insns(), &live, return_reads(&plan, &live), 0);
        assert_eq!(each, [0, r6, r6 | r7]);
    }

    #[test]
    fn liveness_inside_a_block_follows_each_instruction() {
        let src = "mov %r0, 0\nmov %r3, 7\nloop:\nadd %r0, %r2\nsub %r3, 1\njne %r3, 0, loop\nexit";
        let (plan, live) = analyse(src);
        let program = ebpf_isa::assemble(src).unwrap();
        let header = plan.blocks.iter().position(|b| b.insns.start == 2).unwrap();
        let each = before_each(&plan, program.insns(), &live, 0, header);
        let (r0, r2, r3) = (bit(Reg::R0), bit(Reg::R2), bit(Reg::R3));
        assert_eq!(each, [r0 | r2 | r3; 3]);
        let each = before_each(&plan, program.insns(), &live, 0, 0);
        assert_eq!(each, [r2, r0 | r2]);
    }

    #[test]
    fn only_fetching_atomics_write_and_only_their_destination() {
        let program = ebpf_isa::assemble(
            "lock fetch and [%r9+48], %r3\nlock add [%r9], %r4\nlock cmpxchg [%r9], %r5",
        )
        .unwrap();
        let w: Vec<Regs> = program.insns().iter().map(writes).collect();
        assert_eq!(w, [bit(Reg::R3), 0, bit(Reg::R0)]);
    }
}
