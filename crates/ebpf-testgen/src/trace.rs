//! Test-only: a step-by-step runner that shows the machine state before every instruction,
//! for checking static analyses against real executions ("a fact claimed at a pc holds in
//! every concrete state that reaches it").
//!
//! It is not the oracle: `ebpf-interp` is. Tests that use it compare its outcome (r0, trap pc
//! and kind, instruction count) with the interpreter's on the same run, so a state it shows is
//! the interpreter's state on a path the interpreter took. The arithmetic is the contract's
//! (`ebpf_abi::semantics`), memory is the same [`MemoryMap`]; it charges every instruction to
//! the budget before running it, like the interpreter's precise loop.

use ebpf_abi::semantics::{alu32, alu64, cond32, cond64, endian, movsx, neg};
use ebpf_abi::{
    Exit, HelperError, Helpers, InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind, layout,
};
use ebpf_isa::{CallKind, Imm64Kind, Insn, Operand, PacketAddr, Program, Size, Width};

/// The state shown before an instruction runs.
#[derive(Debug)]
pub struct Step<'a, 'm> {
    /// Index of the instruction in `Program::insns`.
    pub index: usize,
    /// Its pc.
    pub pc: usize,
    /// `r0`–`r10`.
    pub regs: &'a [u64; 11],
    /// The memory, the stack included (region 2).
    pub memory: &'a MemoryMap<'m>,
    /// Local-call depth (0: the entry function).
    pub depth: usize,
}

/// Runs `program` like the interpreter, calling `on_step` before each instruction executes
/// (also before the one that traps).
pub fn trace(
    program: &Program,
    memory: MemoryMap<'_>,
    args: [u64; 2],
    helpers: &Helpers,
    limits: &Limits,
    mut on_step: impl FnMut(Step<'_, '_>),
) -> Result<Exit, Trap> {
    let slots = program.slot_count();
    let mut index_at = vec![usize::MAX; slots];
    let mut tail = vec![false; slots];
    for (i, (pc, insn)) in program.iter().enumerate() {
        index_at[pc] = i;
        if insn.slots() == 2 {
            tail[pc + 1] = true;
        }
    }
    let mut stack = vec![0u8; usize::try_from(limits.stack_size()).unwrap_or(0)];
    let mut memory = memory;
    memory.insert(layout::STACK, Region::Writable(&mut stack));
    let mut regs = [0u64; 11];
    regs[1] = args[0];
    regs[2] = args[1];
    regs[10] = limits.frame_pointer(0);
    let budget = limits.budget.unwrap_or(u64::MAX);
    let mut remaining = budget;
    let mut frames: Vec<(usize, [u64; 5])> = Vec::new();
    let mut pc = 0usize;
    let trap = |pc: usize, kind: TrapKind| Err(Trap { pc, kind });
    let invalid = |pc: usize, reason: InvalidReason| {
        Err(Trap {
            pc,
            kind: TrapKind::InvalidInstruction { reason },
        })
    };
    loop {
        let Some(&i) = index_at.get(pc).filter(|&&i| i != usize::MAX) else {
            let reason = if tail.get(pc).copied().unwrap_or(false) {
                InvalidReason::LddwTail
            } else {
                InvalidReason::FellOffEnd
            };
            return invalid(pc, reason);
        };
        let insn = program.insns()[i];
        let only_traps = match insn {
            Insn::Ja { .. } | Insn::Ja32 { .. } => insn.jump_target(pc).is_none_or(|t| t >= slots),
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => insn.call_target(pc).is_none_or(|t| t >= slots),
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } => true,
            Insn::LoadImm64 { kind, .. } => kind != Imm64Kind::Value,
            _ => false,
        };
        on_step(Step {
            index: i,
            pc,
            regs: &regs,
            memory: &memory,
            depth: frames.len(),
        });
        if remaining == 0 && !only_traps {
            return trap(pc, TrapKind::BudgetExhausted { budget });
        }
        if only_traps {
            let reason = match insn {
                Insn::LoadImm64 { .. } => InvalidReason::UnsupportedLddw,
                Insn::Call {
                    kind: CallKind::Btf,
                    ..
                } => InvalidReason::UnsupportedCall,
                _ => InvalidReason::TargetOutOfRange,
            };
            return invalid(pc, reason);
        }
        remaining -= 1;
        let next = pc + insn.slots();
        let r = |x: ebpf_isa::Reg| usize::from(x.index());
        let mut goto = next;
        match insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let d = r(dst);
                regs[d] = match (width, src) {
                    (Width::W64, Operand::Imm(k)) => alu64(op, regs[d], i64::from(k) as u64),
                    (Width::W64, Operand::Reg(s)) => alu64(op, regs[d], regs[r(s)]),
                    (Width::W32, Operand::Imm(k)) => alu32(op, regs[d], u64::from(k as u32)),
                    (Width::W32, Operand::Reg(s)) => alu32(op, regs[d], regs[r(s)]),
                };
            }
            Insn::Neg { width, dst } => regs[r(dst)] = neg(width == Width::W64, regs[r(dst)]),
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => regs[r(dst)] = movsx(width == Width::W64, from, regs[r(src)]),
            Insn::Endian { order, width, dst } => regs[r(dst)] = endian(order, width, regs[r(dst)]),
            Insn::Ja { .. } | Insn::Ja32 { .. } => {
                goto = insn.jump_target(pc).unwrap_or(usize::MAX);
            }
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                ..
            } => {
                let b = match (width, src) {
                    (Width::W64, Operand::Imm(k)) => i64::from(k) as u64,
                    (Width::W32, Operand::Imm(k)) => u64::from(k as u32),
                    (_, Operand::Reg(s)) => regs[r(s)],
                };
                let taken = match width {
                    Width::W64 => cond64(cond, regs[r(dst)], b),
                    Width::W32 => cond32(cond, regs[r(dst)], b),
                };
                if taken {
                    match insn.jump_target(pc).filter(|&t| t <= slots) {
                        Some(t) => goto = t,
                        None => return invalid(pc, InvalidReason::TargetOutOfRange),
                    }
                }
            }
            Insn::LoadImm64 { dst, imm, .. } => regs[r(dst)] = imm,
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let addr = regs[r(src)].wrapping_add(i64::from(off) as u64);
                let value = match (size, signed) {
                    (Size::B, false) => memory.load::<1>(addr).map(|b| u64::from(b[0])),
                    (Size::B, true) => memory.load::<1>(addr).map(|b| b[0] as i8 as u64),
                    (Size::H, false) => memory
                        .load::<2>(addr)
                        .map(|b| u64::from(u16::from_le_bytes(b))),
                    (Size::H, true) => memory.load::<2>(addr).map(|b| i16::from_le_bytes(b) as u64),
                    (Size::W, false) => memory
                        .load::<4>(addr)
                        .map(|b| u64::from(u32::from_le_bytes(b))),
                    (Size::W, true) => memory.load::<4>(addr).map(|b| i32::from_le_bytes(b) as u64),
                    (Size::DW, _) => memory.load::<8>(addr).map(u64::from_le_bytes),
                };
                match value {
                    Some(v) => regs[r(dst)] = v,
                    None => {
                        let len = u64::from(size.bytes());
                        return trap(
                            pc,
                            TrapKind::OutOfBounds {
                                addr,
                                len,
                                write: false,
                            },
                        );
                    }
                }
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let addr = regs[r(dst)].wrapping_add(i64::from(off) as u64);
                let value = match src {
                    Operand::Imm(k) => i64::from(k) as u64,
                    Operand::Reg(s) => regs[r(s)],
                };
                let bytes = value.to_le_bytes();
                let done = match size {
                    Size::B => memory.store::<1>(addr, [bytes[0]]),
                    Size::H => memory.store::<2>(addr, [bytes[0], bytes[1]]),
                    Size::W => memory.store::<4>(addr, [bytes[0], bytes[1], bytes[2], bytes[3]]),
                    Size::DW => memory.store::<8>(addr, bytes),
                };
                if done.is_none() {
                    let len = u64::from(size.bytes());
                    return trap(
                        pc,
                        TrapKind::OutOfBounds {
                            addr,
                            len,
                            write: true,
                        },
                    );
                }
            }
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => {
                let addr = regs[r(dst)].wrapping_add(i64::from(off) as u64);
                let result = match width {
                    Width::W64 => memory.atomic64(addr, op, regs[r(src)], regs[0]),
                    Width::W32 => memory.atomic32(addr, op, regs[r(src)], regs[0]),
                };
                match result {
                    Ok(Some(old)) => match op {
                        ebpf_isa::AtomicOp::Cmpxchg => regs[0] = old,
                        _ => regs[r(src)] = old,
                    },
                    Ok(None) => {}
                    Err(kind) => return trap(pc, kind),
                }
            }
            Insn::LoadPacket { size, addr, imm } => {
                let base = match addr {
                    PacketAddr::Abs => 0,
                    PacketAddr::Ind(s) => regs[r(s)] as u32,
                };
                let at = layout::vm_addr(layout::INPUT, u64::from(base.wrapping_add(imm as u32)));
                let value = match size {
                    Size::B => memory.load::<1>(at).map(|b| u64::from(b[0])),
                    Size::H => memory
                        .load::<2>(at)
                        .map(|b| u64::from(u16::from_be_bytes(b))),
                    _ => memory
                        .load::<4>(at)
                        .map(|b| u64::from(u32::from_be_bytes(b))),
                };
                match value {
                    Some(v) => regs[0] = v,
                    None => {
                        let len = u64::from(size.bytes());
                        return trap(
                            pc,
                            TrapKind::OutOfBounds {
                                addr: at,
                                len,
                                write: false,
                            },
                        );
                    }
                }
            }
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => {
                if frames.len() >= limits.max_depth() {
                    let max_depth = limits.max_depth();
                    return trap(pc, TrapKind::CallDepthExceeded { max_depth });
                }
                frames.push((next, [regs[6], regs[7], regs[8], regs[9], regs[10]]));
                regs[10] = limits.frame_pointer(frames.len());
                goto = insn.call_target(pc).unwrap_or(usize::MAX);
            }
            Insn::Call { .. } | Insn::CallX { .. } => {
                let id = match insn {
                    Insn::CallX { reg } => regs[r(reg)],
                    Insn::Call { imm, .. } => u64::from(imm as u32),
                    _ => 0,
                };
                let Some(helper) = u32::try_from(id).ok().and_then(|id| helpers.get(id)) else {
                    return trap(pc, TrapKind::UnknownHelper { id });
                };
                let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
                match helper.call(args, &mut memory) {
                    Ok(r0) => {
                        regs[0] = r0;
                        regs[1..6].fill(0);
                    }
                    Err(HelperError::Failed(message)) => {
                        return trap(
                            pc,
                            TrapKind::HelperFailed {
                                id: id as u32,
                                message,
                            },
                        );
                    }
                    Err(HelperError::Memory(kind)) => return trap(pc, kind),
                }
            }
            Insn::Exit => match frames.pop() {
                None => {
                    return Ok(Exit {
                        r0: regs[0],
                        instructions: budget - remaining,
                    });
                }
                Some((ret, saved)) => {
                    regs[6..11].copy_from_slice(&saved);
                    goto = ret;
                }
            },
        }
        pc = goto;
    }
}
