//! The budget's slow path: stepping through the one chain of blocks in which the budget runs
//! out, until it does or the chain is left.
//!
//! Generated code charges a whole *chain* at its head — a block and the blocks that follow it
//! through the not-taken side of forward conditional jumps, entered no other way — with one
//! `sub rcx, n; jb stub`, and refunds what a taken side exit skips. When fewer than `n`
//! instructions remain, the run may still leave the chain early, or it may run out inside it.
//! So instead of a second, per-instruction counting copy of the code, generated code hands its
//! registers back to Rust, which steps through the chain here with the contract's own
//! arithmetic (`ebpf_abi::semantics`) and memory map: until the budget runs out (the run ends
//! with `BudgetExhausted` at the next instruction), an instruction traps, or a conditional
//! jump leaves the chain — then the run resumes in generated code at the jump's target, with
//! what is left of the budget. The chain's own last instruction (its only other control
//! transfer) is never reached here: it needs more budget than remains. Every trip here
//! consumes at least one instruction of a budget smaller than one chain, so a run makes few.

use ebpf_abi::semantics::{alu32, alu64, cond32, cond64, endian, movsx, neg};
use ebpf_abi::{InvalidReason, MemoryMap, Trap, TrapKind, layout};
use ebpf_isa::{AtomicOp, Imm64Kind, Insn, Operand, PacketAddr, Size, Width};

use crate::blocks::{Shape, invalid_reason, jump_target};

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
    insns: &[Insn],
    shape: &Shape,
    head: usize,
    regs: &mut [u64; 11],
    mut remaining: u64,
    memory: &mut MemoryMap<'_>,
    budget: u64,
) -> Stepped {
    let slots = shape.slots;
    let end = shape
        .blocks
        .get(shape.chain_end(head))
        .map_or(0, |b| b.first + b.len);
    let first = shape.blocks.get(head).map_or(end, |b| b.first);
    let mut last_pc = shape.pcs.get(first).copied().unwrap_or(0);
    for i in first..end {
        let (Some(insn), Some(&pc)) = (insns.get(i), shape.pcs.get(i)) else {
            break;
        };
        last_pc = pc;
        if let Some(reason) = invalid_reason(insn, pc, slots) {
            return Stepped::Trap(trap(pc, TrapKind::InvalidInstruction { reason }));
        }
        if remaining == 0 {
            return Stepped::Trap(trap(pc, TrapKind::BudgetExhausted { budget }));
        }
        remaining -= 1;
        if let Insn::Jump {
            width,
            cond,
            dst,
            src,
            ..
        } = *insn
        {
            let a = r(regs, dst);
            let b = match src {
                Operand::Imm(imm) => imm as i64 as u64,
                Operand::Reg(s) => r(regs, s),
            };
            let taken = match width {
                Width::W64 => cond64(cond, a, b),
                Width::W32 => cond32(cond, a, b),
            };
            if !taken {
                continue;
            }
            let Some(target) = jump_target(insn, pc, slots) else {
                let reason = InvalidReason::TargetOutOfRange;
                return Stepped::Trap(trap(pc, TrapKind::InvalidInstruction { reason }));
            };
            return match shape.block_at(target) {
                Some(block) => Stepped::Resume { block, remaining },
                // The second slot of an `lddw`: it traps when reached, whatever the budget.
                None => Stepped::Trap(trap(
                    target,
                    TrapKind::InvalidInstruction {
                        reason: InvalidReason::LddwTail,
                    },
                )),
            };
        }
        if let Err(kind) = step(insn, regs, memory) {
            return Stepped::Trap(trap(pc, kind));
        }
    }
    // Unreachable: the chain charges more than `remaining`, so the loop returns before the
    // chain's last instruction (its only other control transfer) executes.
    Stepped::Trap(trap(
        last_pc,
        TrapKind::InvalidInstruction {
            reason: InvalidReason::Undecodable,
        },
    ))
}

fn trap(pc: usize, kind: TrapKind) -> Trap {
    Trap { pc, kind }
}

fn r(regs: &[u64; 11], reg: ebpf_isa::Reg) -> u64 {
    regs.get(usize::from(reg.index())).copied().unwrap_or(0)
}

fn set(regs: &mut [u64; 11], reg: ebpf_isa::Reg, value: u64) {
    if let Some(slot) = regs.get_mut(usize::from(reg.index())) {
        *slot = value;
    }
}

fn oob(addr: u64, len: u64, write: bool) -> TrapKind {
    TrapKind::OutOfBounds { addr, len, write }
}

/// Executes one straight-line instruction exactly as the interpreter does. Control transfers
/// never reach here; they are ignored.
fn step(insn: &Insn, regs: &mut [u64; 11], mem: &mut MemoryMap<'_>) -> Result<(), TrapKind> {
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let d = r(regs, dst);
            let v = match (width, src) {
                (Width::W64, Operand::Imm(imm)) => alu64(op, d, imm as i64 as u64),
                (Width::W64, Operand::Reg(s)) => alu64(op, d, r(regs, s)),
                (Width::W32, Operand::Imm(imm)) => alu32(op, d, u64::from(imm as u32)),
                (Width::W32, Operand::Reg(s)) => alu32(op, d, r(regs, s)),
            };
            set(regs, dst, v);
        }
        Insn::Neg { width, dst } => set(regs, dst, neg(width == Width::W64, r(regs, dst))),
        Insn::MovSx {
            width,
            from,
            dst,
            src,
        } => set(regs, dst, movsx(width == Width::W64, from, r(regs, src))),
        Insn::Endian { order, width, dst } => set(regs, dst, endian(order, width, r(regs, dst))),
        Insn::LoadImm64 {
            dst,
            kind: Imm64Kind::Value,
            imm,
        } => set(regs, dst, imm),
        Insn::Load {
            size,
            signed,
            dst,
            src,
            off,
        } => {
            let addr = r(regs, src).wrapping_add(off as i64 as u64);
            let v = match (size, signed) {
                (Size::B, false) => mem.load::<1>(addr).map(|b| u64::from(b[0])),
                (Size::H, false) => mem
                    .load::<2>(addr)
                    .map(|b| u64::from(u16::from_le_bytes(b))),
                (Size::W, false) => mem
                    .load::<4>(addr)
                    .map(|b| u64::from(u32::from_le_bytes(b))),
                (Size::DW, _) => mem.load::<8>(addr).map(u64::from_le_bytes),
                (Size::B, true) => mem.load::<1>(addr).map(|b| b[0] as i8 as i64 as u64),
                (Size::H, true) => mem
                    .load::<2>(addr)
                    .map(|b| i16::from_le_bytes(b) as i64 as u64),
                (Size::W, true) => mem
                    .load::<4>(addr)
                    .map(|b| i32::from_le_bytes(b) as i64 as u64),
            };
            let v = v.ok_or(oob(addr, u64::from(size.bytes()), false))?;
            set(regs, dst, v);
        }
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => {
            let addr = r(regs, dst).wrapping_add(off as i64 as u64);
            let v = match src {
                Operand::Imm(imm) => imm as i64 as u64,
                Operand::Reg(s) => r(regs, s),
            };
            let done = match size {
                Size::B => mem.store::<1>(addr, [v as u8]),
                Size::H => mem.store::<2>(addr, (v as u16).to_le_bytes()),
                Size::W => mem.store::<4>(addr, (v as u32).to_le_bytes()),
                Size::DW => mem.store::<8>(addr, v.to_le_bytes()),
            };
            done.ok_or(oob(addr, u64::from(size.bytes()), true))?;
        }
        Insn::Atomic {
            width,
            op,
            dst,
            src,
            off,
        } => {
            let addr = r(regs, dst).wrapping_add(off as i64 as u64);
            let operand = r(regs, src);
            let r0 = regs[0];
            let fetched = if width == Width::W64 {
                mem.atomic64(addr, op, operand, r0)?
            } else {
                mem.atomic32(addr, op, operand, r0)?
            };
            if let Some(old) = fetched {
                match op {
                    AtomicOp::Cmpxchg => regs[0] = old,
                    _ => set(regs, src, old),
                }
            }
        }
        Insn::LoadPacket { size, addr, imm } => {
            let base = match addr {
                PacketAddr::Abs => 0,
                PacketAddr::Ind(s) => r(regs, s) as u32,
            };
            let offset = u64::from(base.wrapping_add(imm as u32));
            let vm = layout::vm_addr(layout::INPUT, offset);
            let v = match size {
                Size::B => mem.load::<1>(vm).map(|b| u64::from(b[0])),
                Size::H => mem.load::<2>(vm).map(|b| u64::from(u16::from_be_bytes(b))),
                _ => mem.load::<4>(vm).map(|b| u64::from(u32::from_be_bytes(b))),
            };
            regs[0] = v.ok_or(oob(vm, u64::from(size.bytes()), false))?;
        }
        Insn::Ja { .. }
        | Insn::Ja32 { .. }
        | Insn::Jump { .. }
        | Insn::Call { .. }
        | Insn::CallX { .. }
        | Insn::Exit
        | Insn::LoadImm64 { .. } => {}
    }
    Ok(())
}
