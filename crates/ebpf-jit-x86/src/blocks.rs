//! The JIT's view of control flow: where basic blocks start, what each one charges against the
//! instruction budget, and which instructions can only trap.
//!
//! This is deliberately *not* `ebpf-cfg`'s graph. `ebpf-cfg` describes programs the way a
//! verifier sees them: blocks are scoped to functions, a jump out of its function or a fall
//! off the end of a function is a `None` successor ("traps"), and local calls do not end a
//! block. The interpreter — the oracle the JIT must match on every program, verified or not —
//! happily jumps from one function into another and only traps at the end of the *program*.
//! So the JIT computes its own leaders in one linear pass, with the interpreter's rules:
//!
//! - a block starts at pc 0, at every jump or local-call target that is an instruction start
//!   inside the program, and after every instruction that transfers control (jumps, `exit`,
//!   calls of every kind, and instructions that can only trap);
//! - every block ends with at most one control transfer, as its last instruction, so the code
//!   of a block runs straight through or leaves through a trap;
//! - a block *charges* the number of its instructions that consume budget: all of them, except
//!   a final instruction that can only trap (the interpreter traps there even with no budget
//!   left, so it needs none);
//! - blocks form *chains* for budget charging: a block that only the not-taken side of a
//!   forward conditional jump reaches (no jump or call targets it) joins the chain of the block
//!   before it. The chain's head charges all of it at once; a taken side exit refunds what it
//!   skips. Forward, because a forward branch is usually not taken (the refund is paid on the
//!   taken side) — the backward branch closing a loop usually is.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::{Flow, ProgramView, Target};
use ebpf_isa::{Insn, Program};

/// One basic block of the JIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Index (into `Program::insns`) of the first instruction.
    pub(crate) first: usize,
    /// Number of instructions.
    pub(crate) len: usize,
    /// Instructions charged against the budget on entry.
    pub(crate) charge: usize,
}

/// Leaders, blocks and the slot map of a program.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    /// The instructions.
    pub(crate) insns: Vec<Insn>,
    /// Each instruction's pc and control flow, targets resolved (the contract's).
    pub(crate) view: ProgramView,
    /// The blocks, in pc order.
    pub(crate) blocks: Vec<Block>,
    /// Per block: whether it belongs to the chain of the block before it (and charges nothing
    /// itself).
    pub(crate) chained: Vec<bool>,
    /// Per block: what the blocks after it in its chain charge together (the refund of a side
    /// exit taken at its end).
    pub(crate) rest: Vec<usize>,
    /// Per instruction: the block starting there, or `u32::MAX`.
    block_at: Vec<u32>,
}

/// Whether an instruction ends a block: it transfers control (helper calls included), or can
/// only trap.
pub(crate) fn ends_block(insn: &Insn, flow: Flow) -> bool {
    flow != Flow::Next || matches!(insn, Insn::Call { .. } | Insn::CallX { .. })
}

/// The instruction a transfer to `target` arrives at, if it arrives at one.
fn arrives_at(target: Target) -> Option<usize> {
    match target {
        Target::Insn(i) => Some(i),
        Target::Trap { .. } => None,
    }
}

impl Shape {
    /// Computes the shape of `program` in one pass over its instructions (plus one to mark jump
    /// targets).
    pub(crate) fn of(program: &Program) -> Shape {
        let insns = program.insns();
        let view = ProgramView::new(program);
        let flows = view.flows();
        let mut leader = vec![false; insns.len()];
        if let Some(first) = leader.first_mut() {
            *first = true;
        }
        let mut targeted = vec![false; insns.len()];
        for (i, (insn, &flow)) in insns.iter().zip(flows).enumerate() {
            if ends_block(insn, flow)
                && let Some(next) = leader.get_mut(i + 1)
            {
                *next = true;
            }
            let target = match flow {
                Flow::Jump(t) | Flow::Branch(t) | Flow::Call(t) => arrives_at(t),
                Flow::Next | Flow::Exit | Flow::Invalid(_) => None,
            };
            if let Some(t) = target
                && let Some(l) = leader.get_mut(t)
            {
                *l = true;
                targeted[t] = true;
            }
        }
        let mut blocks = Vec::new();
        let mut start = 0usize;
        for i in 0..insns.len() {
            let last = leader.get(i + 1).copied().unwrap_or(true);
            if !last {
                continue;
            }
            let len = i + 1 - start;
            let trailing_invalid = matches!(flows.get(i), Some(Flow::Invalid(_)));
            blocks.push(Block {
                first: start,
                len,
                charge: len - usize::from(trailing_invalid),
            });
            start = i + 1;
        }
        // Chains: a block joins the one before it if only the fall-through of a forward
        // conditional jump (or of one whose target traps) reaches it.
        let chained: Vec<bool> = (0..blocks.len())
            .map(|b| {
                let Some(prev) = b.checked_sub(1).and_then(|p| blocks.get(p)) else {
                    return false;
                };
                let last = prev.first + prev.len - 1;
                let first = blocks.get(b).map_or(0, |b| b.first);
                let forward = match flows.get(last) {
                    Some(&Flow::Branch(t)) => arrives_at(t).is_none_or(|t| t > last),
                    _ => false,
                };
                forward && !targeted.get(first).copied().unwrap_or(true)
            })
            .collect();
        let mut rest = vec![0; blocks.len()];
        for b in (0..blocks.len().saturating_sub(1)).rev() {
            if chained.get(b + 1).copied().unwrap_or(false) {
                rest[b] = rest[b + 1] + blocks[b + 1].charge;
            }
        }
        let mut block_at = vec![u32::MAX; insns.len()];
        for (b, block) in blocks.iter().enumerate() {
            if let Some(slot) = block_at.get_mut(block.first) {
                *slot = b as u32;
            }
        }
        Shape {
            insns: insns.to_vec(),
            view,
            blocks,
            chained,
            rest,
            block_at,
        }
    }

    /// The block a transfer to `target` enters, if it arrives at an instruction (every
    /// instruction a transfer reaches starts a block).
    pub(crate) fn block_of(&self, target: Target) -> Option<usize> {
        let i = arrives_at(target)?;
        self.block_at
            .get(i)
            .filter(|&&b| b != u32::MAX)
            .map(|&b| b as usize)
    }

    /// The last block of the chain that block `b` belongs to.
    pub(crate) fn chain_end(&self, b: usize) -> usize {
        let mut end = b;
        while self.chained.get(end + 1).copied().unwrap_or(false) {
            end += 1;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(src: &str) -> Shape {
        Shape::of(&ebpf_isa::assemble(src).unwrap())
    }

    #[test]
    fn blocks_split_at_jumps_targets_and_calls() {
        let s = shape("mov %r0, 0\nadd %r0, 1\njne %r0, 3, -2\ncall 5\nmov %r1, 1\nexit");
        let starts: Vec<(usize, usize, usize)> = s
            .blocks
            .iter()
            .map(|b| (b.first, b.len, b.charge))
            .collect();
        assert_eq!(starts, vec![(0, 1, 1), (1, 2, 2), (3, 1, 1), (4, 2, 2)]);
    }

    #[test]
    fn a_final_invalid_instruction_is_not_charged() {
        let s = shape("mov %r0, 0\nja +5");
        assert_eq!(
            s.blocks,
            vec![Block {
                first: 0,
                len: 2,
                charge: 1
            }]
        );
    }

    #[test]
    fn jumps_across_functions_make_leaders() {
        // The jump at pc 3 leaves the function that starts at pc 2; the interpreter runs it.
        let s = shape("call local +1\nexit\nmov %r0, 1\nja -3\nexit");
        let firsts: Vec<usize> = s.blocks.iter().map(|b| b.first).collect();
        assert_eq!(firsts, vec![0, 1, 2, 4]);
    }
}
