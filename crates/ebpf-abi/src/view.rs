//! [`ProgramView`]: a program's control flow as the contract resolves it — for each
//! instruction its pc and what it does to control ([`Flow`]), with every jump and call target
//! resolved to an instruction or to the trap that reaching it causes ([`Target`]).
//!
//! This is the one place that decides which instructions can only trap and where a transfer
//! lands; every engine builds its code from it, so they cannot disagree on, say, a jump into
//! the second slot of an `lddw`. The rules, as the interpreter has always run them:
//!
//! - pcs count slots; a target is a slot index, and only the first slot of an instruction is a
//!   place control can arrive. Arriving at the second slot of an `lddw` traps there
//!   (`LddwTail`), and arriving past the last slot traps there (`FellOffEnd`) — falling off the
//!   end, or returning from a call that was the last instruction.
//! - A `ja` or a local call whose target is outside the program can only trap
//!   (`TargetOutOfRange` at its own pc, whatever the budget), as can a call by BTF id
//!   (`UnsupportedCall`) and an `lddw` of a map or BTF object (`UnsupportedLddw`): they are
//!   [`Flow::Invalid`]. A *conditional* jump outside the program traps only when taken, at the
//!   jump (`TargetOutOfRange`).
//! - Jumps may leave their function: the flat program is one space of pcs.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_isa::{CallKind, Imm64Kind, Insn, Program};

use crate::InvalidReason;

/// Where control arrives after a transfer (or after falling through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The instruction with this index (into `Program::insns`).
    Insn(usize),
    /// Nothing that can execute: the run traps with `InvalidInstruction { reason }` at `pc`,
    /// whatever the budget.
    Trap {
        /// Where the trap is reported.
        pc: usize,
        /// Why.
        reason: InvalidReason,
    },
}

/// What one instruction does to control flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Execution continues with the next instruction: arithmetic, memory, `lddw` of a value,
    /// helper calls (`call` of a helper id, `callx`).
    Next,
    /// `ja`/`ja32` to a target inside the program.
    Jump(Target),
    /// A conditional jump: to the target when the condition holds, else to the next
    /// instruction. A target outside the program is a `TargetOutOfRange` trap at the jump.
    Branch(Target),
    /// A local call of a target inside the program: a new frame, and `exit` later continues
    /// at the next instruction ([`ProgramView::next`]).
    Call(Target),
    /// `exit`: returns from a local call, or ends the run at depth 0.
    Exit,
    /// The instruction can only trap, with this reason, whatever the budget.
    Invalid(InvalidReason),
}

/// A program's instructions with their pcs and resolved control flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramView {
    /// `pcs[i]`: the pc of instruction `i`.
    pcs: Vec<usize>,
    /// `flows[i]`: what instruction `i` does to control flow.
    flows: Vec<Flow>,
    /// Per slot: the index of the instruction that starts there, or `NOT_A_START`.
    starts: Vec<usize>,
}

/// A slot where no instruction starts (the second slot of an `lddw`).
const NOT_A_START: usize = usize::MAX;

impl ProgramView {
    /// Resolves the control flow of `program`. Never fails: what cannot execute becomes a
    /// trap.
    pub fn new(program: &Program) -> ProgramView {
        let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
        let mut starts = vec![NOT_A_START; program.slot_count()];
        for (i, &pc) in pcs.iter().enumerate() {
            if let Some(slot) = starts.get_mut(pc) {
                *slot = i;
            }
        }
        let mut view = ProgramView {
            pcs,
            flows: Vec::new(),
            starts,
        };
        view.flows = program
            .iter()
            .map(|(pc, insn)| view.resolve(pc, insn))
            .collect();
        view
    }

    fn resolve(&self, pc: usize, insn: &Insn) -> Flow {
        // A target inside the program, or `None`.
        let inside = |t: Option<usize>| t.filter(|&t| t < self.slot_count()).map(|t| self.at(t));
        match *insn {
            Insn::Ja { .. } | Insn::Ja32 { .. } => match inside(insn.jump_target(pc)) {
                Some(t) => Flow::Jump(t),
                None => Flow::Invalid(InvalidReason::TargetOutOfRange),
            },
            Insn::Jump { .. } => {
                Flow::Branch(inside(insn.jump_target(pc)).unwrap_or(Target::Trap {
                    pc,
                    reason: InvalidReason::TargetOutOfRange,
                }))
            }
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => match inside(insn.call_target(pc)) {
                Some(t) => Flow::Call(t),
                None => Flow::Invalid(InvalidReason::TargetOutOfRange),
            },
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } => Flow::Invalid(InvalidReason::UnsupportedCall),
            Insn::LoadImm64 { kind, .. } if kind != Imm64Kind::Value => {
                Flow::Invalid(InvalidReason::UnsupportedLddw)
            }
            Insn::Exit => Flow::Exit,
            _ => Flow::Next,
        }
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.pcs.len()
    }

    /// Whether the program has no instructions.
    pub fn is_empty(&self) -> bool {
        self.pcs.is_empty()
    }

    /// Number of slots (an `lddw` takes two).
    pub fn slot_count(&self) -> usize {
        self.starts.len()
    }

    /// The pc of each instruction.
    pub fn pcs(&self) -> &[usize] {
        &self.pcs
    }

    /// What each instruction does to control flow.
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    /// What control finds when it arrives at slot `pc`: the instruction that starts there, or
    /// a trap (the second slot of an `lddw`; past the last slot, falling off the end).
    pub fn at(&self, pc: usize) -> Target {
        match self.starts.get(pc) {
            Some(&i) if i != NOT_A_START => Target::Insn(i),
            Some(_) => Target::Trap {
                pc,
                reason: InvalidReason::LddwTail,
            },
            None => Target::Trap {
                pc,
                reason: InvalidReason::FellOffEnd,
            },
        }
    }

    /// Where execution continues after instruction `i` falls through (or after the local call
    /// that `i` is returns).
    pub fn next(&self, i: usize) -> Target {
        match self.pcs.get(i + 1) {
            Some(_) => Target::Insn(i + 1),
            None => Target::Trap {
                pc: self.slot_count(),
                reason: InvalidReason::FellOffEnd,
            },
        }
    }

    /// Where a run starts.
    pub fn entry(&self) -> Target {
        self.at(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(src: &str) -> ProgramView {
        ProgramView::new(&ebpf_isa::assemble(src).unwrap())
    }

    #[test]
    fn targets_resolve_to_instructions_or_traps() {
        // pcs: 0 ja, 1 jeq, 2 lddw (3 is its tail), 4 call, 5 exit.
        let v = view("ja +1\njeq %r0, 0, +1\nlddw %r0, 1\ncall local -5\nexit");
        assert_eq!(v.pcs(), [0, 1, 2, 4, 5]);
        assert_eq!(
            v.flows(),
            [
                Flow::Jump(Target::Insn(2)),
                Flow::Branch(Target::Trap {
                    pc: 3,
                    reason: InvalidReason::LddwTail
                }),
                Flow::Next,
                Flow::Call(Target::Insn(0)),
                Flow::Exit,
            ]
        );
        assert_eq!(v.next(3), Target::Insn(4));
        assert_eq!(
            v.next(4),
            Target::Trap {
                pc: 6,
                reason: InvalidReason::FellOffEnd
            }
        );
    }

    #[test]
    fn what_can_only_trap_is_invalid() {
        let v = view("ja +5\ncall local +7\njne %r0, 0, -9\nexit");
        assert_eq!(
            v.flows(),
            [
                Flow::Invalid(InvalidReason::TargetOutOfRange),
                Flow::Invalid(InvalidReason::TargetOutOfRange),
                Flow::Branch(Target::Trap {
                    pc: 2,
                    reason: InvalidReason::TargetOutOfRange
                }),
                Flow::Exit,
            ]
        );
        // A jump to one past the last slot is out of range, not a fall off the end.
        assert_eq!(
            view("ja +0\nja +1").flows()[1],
            Flow::Invalid(InvalidReason::TargetOutOfRange)
        );
        let empty = view("");
        assert_eq!(
            empty.entry(),
            Target::Trap {
                pc: 0,
                reason: InvalidReason::FellOffEnd
            }
        );
    }
}
