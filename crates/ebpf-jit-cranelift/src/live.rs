//! Which registers are live at the start of each plan block: the ones a run may still read
//! before writing them. Where generated code hands the run's registers over — to another unit,
//! or to the interpreter when the budget runs short — it stores only those; the others cannot
//! change what the run does.
//!
//! A local call reads every register (the callee sees the caller's registers, and the call
//! saves `r6`–`r10` in its frame), `exit` reads `r0` and, in a program with local calls,
//! `r1`–`r5` too (the caller continues with `r0`–`r5` and gets `r6`–`r10` back from the frame),
//! a helper call reads `r1`–`r5` and writes `r0`–`r5`, and a trap reads nothing.

pub(crate) use ebpf_abi::registers::{ALL, Regs};
use ebpf_abi::registers::{R0_TO_R5, bit, reads};
use ebpf_isa::{AtomicOp, Insn, Reg};

use crate::plan::{Plan, Target, Term};

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
    // Per block: what it reads before writing, and what it writes, in order.
    let mut uses = vec![0 as Regs; n];
    let mut defs = vec![0 as Regs; n];
    let exit = exit_reads(plan);
    for (b, block) in plan.blocks.iter().enumerate() {
        let (mut u, mut d) = (0, 0);
        for insn in &insns[block.insns.clone()] {
            u |= reads(insn, exit) & !d;
            d |= writes(insn);
        }
        (uses[b], defs[b]) = (u, d);
    }
    let mut live = vec![0 as Regs; n];
    // Backward to a fixed point: sweeps from the last block, which converges quickly since
    // most edges go forward.
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..n).rev() {
            let block = &plan.blocks[b];
            if !block.reachable {
                continue;
            }
            let out = match block.term {
                Term::Fall(t) | Term::Jump(t) => live_at(&live, t),
                Term::Branch { taken, fall } => live_at(&live, taken) | live_at(&live, fall),
                // The call itself already reads everything; the exit `r0`–`r5`.
                Term::Call { .. } | Term::Exit | Term::Trap { .. } => 0,
            };
            let new = uses[b] | (out & !defs[b]);
            if new != live[b] {
                live[b] = new;
                changed = true;
            }
        }
    }
    live
}

/// The registers live before each instruction of block `b` (its first is `live[b]`), given
/// every block's live-in set `live`.
pub(crate) fn before_each(plan: &Plan, insns: &[Insn], live: &[Regs], b: usize) -> Vec<Regs> {
    let block = &plan.blocks[b];
    let mut now = match block.term {
        Term::Fall(t) | Term::Jump(t) => live_at(live, t),
        Term::Branch { taken, fall } => live_at(live, taken) | live_at(live, fall),
        Term::Call { .. } | Term::Exit | Term::Trap { .. } => 0,
    };
    let exit = exit_reads(plan);
    let body = &insns[block.insns.clone()];
    let mut out = vec![0; body.len()];
    for (j, insn) in body.iter().enumerate().rev() {
        now = reads(insn, exit) | (now & !writes(insn));
        out[j] = now;
    }
    out
}

/// What `exit` reads: `r0`, and `r1`–`r5` too when a caller may continue after it.
fn exit_reads(plan: &Plan) -> Regs {
    if plan.has_calls {
        R0_TO_R5
    } else {
        bit(Reg::R0)
    }
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
    fn calls_read_everything_and_helpers_their_arguments() {
        let (plan, live) = analyse("mov %r6, 1\ncall local f\nexit\nf:\nmov %r0, 1\nexit");
        assert_eq!(live[0], ALL & !bit(Reg::R6));
        // With local calls, `exit` may return to a caller that reads r0-r5.
        let site = plan.site(0);
        assert_eq!(live[site], R0_TO_R5);
        let (_, live) = analyse("mov %r1, 1\ncall 5\nexit");
        let args = bit(Reg::R2) | bit(Reg::R3) | bit(Reg::R4) | bit(Reg::R5);
        assert_eq!(live[0], args);
    }

    #[test]
    fn liveness_inside_a_block_follows_each_instruction() {
        let src = "mov %r0, 0\nmov %r3, 7\nloop:\nadd %r0, %r2\nsub %r3, 1\njne %r3, 0, loop\nexit";
        let (plan, live) = analyse(src);
        let program = ebpf_isa::assemble(src).unwrap();
        let header = plan.blocks.iter().position(|b| b.insns.start == 2).unwrap();
        let each = before_each(&plan, program.insns(), &live, header);
        let (r0, r2, r3) = (bit(Reg::R0), bit(Reg::R2), bit(Reg::R3));
        assert_eq!(each, [r0 | r2 | r3; 3]);
        let each = before_each(&plan, program.insns(), &live, 0);
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
