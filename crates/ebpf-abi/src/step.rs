//! The reference meaning of one straight-line instruction: [`step`] changes the registers and
//! memory exactly as the contract says, or returns the kind of the trap.
//!
//! It is deliberately simple — a `match` on the typed instruction, the arithmetic of
//! [`crate::semantics`], the checked accesses of [`MemoryMap`] — because it is the definition
//! that faster code is checked against: the interpreter's precise loop steps through it (and
//! its fast loop is tested against that loop), and the x86 JIT's budget slow path finishes a
//! chain of blocks with it. Control transfers are the caller's ([`crate::Flow`]); [`taken`]
//! says whether a jump goes.

use ebpf_isa::{AtomicOp, Imm64Kind, Insn, Operand, PacketAddr, Reg, Size, Width};

use crate::semantics::{alu32, alu64, cond32, cond64, endian, movsx, neg};
use crate::{Helpers, MemoryMap, TrapKind, VmMemory, layout};

/// `r0`..`r10`.
pub type Registers = [u64; 11];

/// Executes `insn` — an instruction whose flow is [`crate::Flow::Next`]: arithmetic, byte
/// order, `lddw` of a value, loads, stores, atomics, packet loads and helper calls — on `regs`
/// and `memory`. A control transfer (`ja`, a conditional jump, a local call, `exit`) or an
/// instruction that can only trap is not executed here: for those, nothing changes.
pub fn step(
    insn: &Insn,
    regs: &mut Registers,
    memory: &mut MemoryMap<'_>,
    helpers: &Helpers,
) -> Result<(), TrapKind> {
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
                (Size::B, false) => memory.load::<1>(addr).map(|b| u64::from(b[0])),
                (Size::H, false) => memory
                    .load::<2>(addr)
                    .map(|b| u64::from(u16::from_le_bytes(b))),
                (Size::W, false) => memory
                    .load::<4>(addr)
                    .map(|b| u64::from(u32::from_le_bytes(b))),
                (Size::DW, _) => memory.load::<8>(addr).map(u64::from_le_bytes),
                (Size::B, true) => memory.load::<1>(addr).map(|b| b[0] as i8 as i64 as u64),
                (Size::H, true) => memory
                    .load::<2>(addr)
                    .map(|b| i16::from_le_bytes(b) as i64 as u64),
                (Size::W, true) => memory
                    .load::<4>(addr)
                    .map(|b| i32::from_le_bytes(b) as i64 as u64),
            };
            let v = v.ok_or(out_of_bounds(addr, u64::from(size.bytes()), false))?;
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
                Size::B => memory.store::<1>(addr, [v as u8]),
                Size::H => memory.store::<2>(addr, (v as u16).to_le_bytes()),
                Size::W => memory.store::<4>(addr, (v as u32).to_le_bytes()),
                Size::DW => memory.store::<8>(addr, v.to_le_bytes()),
            };
            done.ok_or(out_of_bounds(addr, u64::from(size.bytes()), true))?;
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
            let fetched = match width {
                Width::W64 => memory.atomic64(addr, op, operand, r0)?,
                Width::W32 => memory.atomic32(addr, op, operand, r0)?,
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
            // Network byte order; every width but a byte or a half-word reads four bytes.
            let v = match size {
                Size::B => memory.load::<1>(vm).map(|b| u64::from(b[0])),
                Size::H => memory
                    .load::<2>(vm)
                    .map(|b| u64::from(u16::from_be_bytes(b))),
                _ => memory
                    .load::<4>(vm)
                    .map(|b| u64::from(u32::from_be_bytes(b))),
            };
            regs[0] = v.ok_or(out_of_bounds(vm, u64::from(size.bytes()), false))?;
        }
        Insn::Call {
            kind: ebpf_isa::CallKind::Helper,
            imm,
        } => call_helper(helpers, u64::from(imm as u32), regs, memory)?,
        Insn::CallX { reg } => call_helper(helpers, r(regs, reg), regs, memory)?,
        Insn::Ja { .. }
        | Insn::Ja32 { .. }
        | Insn::Jump { .. }
        | Insn::Call { .. }
        | Insn::Exit
        | Insn::LoadImm64 { .. } => {}
    }
    Ok(())
}

/// Whether the jump `insn` goes to its target: `ja` always, a conditional jump when its
/// condition holds on `regs`; any other instruction never.
pub fn taken(insn: &Insn, regs: &Registers) -> bool {
    match *insn {
        Insn::Ja { .. } | Insn::Ja32 { .. } => true,
        Insn::Jump {
            width,
            cond,
            dst,
            src,
            ..
        } => {
            let a = r(regs, dst);
            let b = match src {
                Operand::Imm(imm) => imm as i64 as u64,
                Operand::Reg(s) => r(regs, s),
            };
            match width {
                Width::W64 => cond64(cond, a, b),
                Width::W32 => cond32(cond, a, b),
            }
        }
        _ => false,
    }
}

/// Calls helper `id` ([`Helpers::call`]) with `r1`..`r5`; on success sets `r0` and zeroes
/// `r1`..`r5` (the contract's "clobbered", made deterministic so that every engine agrees).
pub fn call_helper(
    helpers: &Helpers,
    id: u64,
    regs: &mut Registers,
    memory: &mut dyn VmMemory,
) -> Result<(), TrapKind> {
    let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
    regs[0] = helpers.call(id, args, memory)?;
    regs[1..6].fill(0);
    Ok(())
}

fn r(regs: &Registers, reg: Reg) -> u64 {
    regs.get(usize::from(reg.index())).copied().unwrap_or(0)
}

fn set(regs: &mut Registers, reg: Reg, value: u64) {
    if let Some(slot) = regs.get_mut(usize::from(reg.index())) {
        *slot = value;
    }
}

fn out_of_bounds(addr: u64, len: u64, write: bool) -> TrapKind {
    TrapKind::OutOfBounds { addr, len, write }
}
