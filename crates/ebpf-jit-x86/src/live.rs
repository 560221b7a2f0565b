//! Which eBPF registers a program's code touches at all, and which it may read at entry before
//! writing them: what the entry's prologue must set up. A run starts with `r1`, `r2` and `r10`
//! set and every other register 0 (the contract); a register the code may read before writing
//! it must hold exactly that, one it never reads before writing can hold anything, and one it
//! never touches needs no host register saved for it.
//!
//! The rules are the interpreter's: a local call reads every register (the callee sees the
//! caller's registers, and the call saves `r6`–`r10` in its frame, which `exit` restores), so a
//! program with local calls touches all of them; `exit` reads `r0` and, in a program with local
//! calls, `r1`–`r5` too (a caller continues with them); a helper call reads `r1`–`r5` (and
//! `callx` its register) and writes `r0`–`r5` (the JIT zeroes `r1`–`r5` after it); an
//! instruction that can only trap reads nothing and continues nowhere.

use alloc::vec;

pub(crate) use ebpf_abi::registers::{ALL, Regs, bit};
use ebpf_abi::registers::{R0_TO_R5, reads};
use ebpf_abi::{Flow, ProgramView, Target};
use ebpf_isa::{AtomicOp, CallKind, Insn, Reg};

/// The registers `insn` writes whenever it completes (a trap ends the run).
fn writes(insn: &Insn) -> Regs {
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
            kind: CallKind::Helper | CallKind::Btf,
            ..
        }
        | Insn::CallX { .. } => R0_TO_R5,
        // A local call writes r6–r10 of its caller on return; it reads them all, which is what
        // both sets are for.
        Insn::Call {
            kind: CallKind::Local,
            ..
        } => ALL,
        _ => 0,
    }
}

/// What the entry needs to know about a program's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryRegs {
    /// The registers any instruction reads or writes (every one, with a local call): the only
    /// ones whose host registers generated code uses, so the only ones it saves and restores
    /// around the budget's slow path.
    pub(crate) used: Regs,
    /// The registers some path from the entry may read before writing: the only ones whose
    /// value at entry can matter.
    pub(crate) live: Regs,
}

/// [`EntryRegs`] of the instructions `insns` with control flow `view`.
pub(crate) fn entry_regs(insns: &[Insn], view: &ProgramView) -> EntryRegs {
    let flows = view.flows();
    let has_calls = flows.iter().any(|f| matches!(f, Flow::Call(_)))
        || insns.iter().any(|i| {
            matches!(
                i,
                Insn::Call {
                    kind: CallKind::Local,
                    ..
                }
            )
        });
    let exit = if has_calls { R0_TO_R5 } else { bit(Reg::R0) };
    let used = insns
        .iter()
        .fold(0, |set, insn| set | reads(insn, exit) | writes(insn));
    // Backward to a fixed point over the instructions (an edge to an index past the end, or
    // to a trap, continues nowhere).
    let n = insns.len().min(flows.len());
    let mut live = vec![0 as Regs; n];
    let at = |live: &[Regs], t: Target| match t {
        Target::Insn(i) => live.get(i).copied().unwrap_or(0),
        Target::Trap { .. } => 0,
    };
    let mut changed = true;
    while changed {
        changed = false;
        for i in (0..n).rev() {
            let insn = &insns[i];
            let new = match flows[i] {
                Flow::Invalid(_) => 0,
                flow => {
                    let out = match flow {
                        Flow::Next => at(&live, view.next(i)),
                        Flow::Jump(t) => at(&live, t),
                        Flow::Branch(t) => at(&live, t) | at(&live, view.next(i)),
                        // A local call reads everything already; `exit` goes to no
                        // instruction of this function.
                        Flow::Call(_) | Flow::Exit | Flow::Invalid(_) => 0,
                    };
                    reads(insn, exit) | (out & !writes(insn))
                }
            };
            if new != live[i] {
                live[i] = new;
                changed = true;
            }
        }
    }
    EntryRegs {
        used,
        live: live.first().copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(src: &str) -> EntryRegs {
        let program = ebpf_isa::assemble(src).unwrap();
        let view = ProgramView::new(&program);
        entry_regs(program.insns(), &view)
    }

    fn set(rs: &[u8]) -> Regs {
        rs.iter().fold(0, |s, &r| s | 1 << r)
    }

    #[test]
    fn the_empty_program_reads_nothing_at_entry() {
        assert_eq!(
            regs("mov %r0, 0\nexit"),
            EntryRegs {
                used: set(&[0]),
                live: 0
            }
        );
        // `exit` alone returns r0 as the run found it: 0, so r0 is live.
        assert_eq!(regs("exit").live, set(&[0]));
        assert_eq!(regs("ldxb %r0, [%r1]\nexit").live, set(&[1]));
    }

    #[test]
    fn a_register_read_on_one_path_only_is_live() {
        let r = regs("jeq %r1, 0, skip\nmov %r3, 1\nskip:\nmov %r0, %r3\nexit");
        assert_eq!(r.live, set(&[1, 3]));
        assert_eq!(r.used, set(&[0, 1, 3]));
        // In a loop: r4 is written before it is read on every path.
        let r = regs(
            "mov %r0, 0\nloop:\nmov %r4, %r2\nadd %r0, %r4\nsub %r2, 1\njne %r2, 0, loop\nexit",
        );
        assert_eq!(r.live, set(&[2]));
    }

    #[test]
    fn calls_read_their_arguments_and_local_calls_everything() {
        let r = regs("mov %r1, 1\ncall 5\nexit");
        assert_eq!(r.live, set(&[2, 3, 4, 5]), "r0 is written by the call");
        let r = regs("mov %r6, 1\ncall local f\nexit\nf:\nmov %r0, 1\nexit");
        assert_eq!(r.live, ALL & !set(&[6]));
        assert_eq!(r.used, ALL);
        // A store through r10 reads r10; an unverified write of r10 first does not.
        assert_eq!(
            regs("stxdw [%r10-8], %r1\nmov %r0, 0\nexit").live,
            set(&[1, 10])
        );
        assert_eq!(regs("mov %r10, 0\nmov %r0, %r10\nexit").live, 0);
    }

    #[test]
    fn an_instruction_that_can_only_trap_reads_nothing() {
        // A jump out of the program traps: nothing after it is reached from there.
        let r = regs("ja +5\nmov %r0, %r7\nexit");
        assert_eq!(r.live, 0);
        assert_eq!(r.used, set(&[0, 7]));
    }
}
