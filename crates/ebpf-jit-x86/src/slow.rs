//! The budget's slow path: stepping through the one chain of blocks in which the budget runs
//! out, until it does or the chain is left.
//!
//! Generated code charges a whole *chain* at its head — a block and the blocks that follow it
//! through the not-taken side of forward conditional jumps, entered no other way — with one
//! `sub rcx, n; jb stub`, and refunds what a taken side exit skips. When fewer than `n`
//! instructions remain, the run may still leave the chain early, or it may run out inside it.
//! So instead of a second, per-instruction counting copy of the code, generated code hands its
//! registers back to Rust, which steps through the chain here with the contract's reference
//! step (`ebpf_abi::step`, the interpreter's precise loop's too) and memory map: until the budget runs out (the run ends
//! with `BudgetExhausted` at the next instruction), an instruction traps, or a conditional
//! jump leaves the chain — then the run resumes in generated code at the jump's target, with
//! what is left of the budget. The chain's own last instruction (its only other control
//! transfer) is never reached here: it needs more budget than remains. Every trip here
//! consumes at least one instruction of a budget smaller than one chain, so a run makes few.

use ebpf_abi::step::{self, Registers};
use ebpf_abi::{Flow, Helpers, InvalidReason, MemoryMap, Target, Trap, TrapKind};

use crate::blocks::Shape;

/// How stepping a chain ended.
#[derive(Debug)]
pub(crate) enum Stepped {
    /// The run ends with this trap.
    Trap(Trap),
    /// A conditional jump left the chain: resume generated code at the start of this block
    /// with this many instructions left (the registers are updated in place).
    Resume {
        /// Index of the block to resume at.
        block: usize,
        /// The budget that remains.
        remaining: u64,
    },
}

/// Steps through the chain that starts at block `head` with `remaining` instructions of
/// budget (fewer than the chain charges).
pub(crate) fn finish_chain(
    shape: &Shape,
    head: usize,
    regs: &mut Registers,
    mut remaining: u64,
    memory: &mut MemoryMap<'_>,
    helpers: &Helpers,
    budget: u64,
) -> Stepped {
    let (insns, pcs, flows) = (&shape.insns, shape.view.pcs(), shape.view.flows());
    let end = shape
        .blocks
        .get(shape.chain_end(head))
        .map_or(0, |b| b.first + b.len);
    let first = shape.blocks.get(head).map_or(end, |b| b.first);
    let mut last_pc = pcs.get(first).copied().unwrap_or(0);
    for i in first..end {
        let (Some(insn), Some(&pc), Some(&flow)) = (insns.get(i), pcs.get(i), flows.get(i)) else {
            break;
        };
        last_pc = pc;
        if let Flow::Invalid(reason) = flow {
            return Stepped::Trap(trap(pc, TrapKind::InvalidInstruction { reason }));
        }
        if remaining == 0 {
            return Stepped::Trap(trap(pc, TrapKind::BudgetExhausted { budget }));
        }
        remaining -= 1;
        if let Flow::Branch(target) = flow {
            if !step::taken(insn, regs) {
                continue;
            }
            return match target {
                Target::Trap { pc, reason } => {
                    Stepped::Trap(trap(pc, TrapKind::InvalidInstruction { reason }))
                }
                Target::Insn(_) => match shape.block_of(target) {
                    Some(block) => Stepped::Resume { block, remaining },
                    // Unreachable: every instruction a jump reaches starts a block.
                    None => Stepped::Trap(trap(pc, undecodable())),
                },
            };
        }
        if let Err(kind) = step::step(insn, regs, memory, helpers) {
            return Stepped::Trap(trap(pc, kind));
        }
    }
    // Unreachable: the chain charges more than `remaining`, so the loop returns before the
    // chain's last instruction (its only other control transfer) executes.
    Stepped::Trap(trap(last_pc, undecodable()))
}

fn trap(pc: usize, kind: TrapKind) -> Trap {
    Trap { pc, kind }
}

fn undecodable() -> TrapKind {
    TrapKind::InvalidInstruction {
        reason: InvalidReason::Undecodable,
    }
}
