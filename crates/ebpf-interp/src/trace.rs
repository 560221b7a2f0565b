//! Tracing: what each executed instruction did, as the precise loop reports it to an
//! [`Observer`] ([`Interpreter::run_traced`](crate::Interpreter::run_traced)).
//!
//! A traced run executes every instruction in the precise loop — the contract's reference
//! `step`, charged one instruction at a time — so it returns exactly what an untraced run
//! returns (the tests hold every engine to that). The fast loop has no hook at all: tracing
//! costs an untraced run nothing.
//!
//! What a [`Step`] records is computed from the instruction and the registers around it, plus
//! one extra read of memory for atomics (the value before); helpers' own accesses to VM memory
//! (through `VmMemory`) are not recorded, only their arguments and result.

use ebpf_abi::step::Registers;
use ebpf_abi::{MemoryMap, layout};
use ebpf_isa::{CallKind, Insn, Operand, PacketAddr, Width};

/// Receives one [`Step`] per executed instruction, in execution order.
///
/// A closure `|step: &Step| …` is an observer, and so is a `Vec<Step>` (it keeps them all).
pub trait Observer {
    /// `step` has just executed.
    fn step(&mut self, step: &Step);
}

impl<F: FnMut(&Step)> Observer for F {
    fn step(&mut self, step: &Step) {
        self(step);
    }
}

/// Collects the whole trace.
impl Observer for alloc::vec::Vec<Step> {
    fn step(&mut self, step: &Step) {
        self.push(step.clone());
    }
}

/// One executed instruction: where, what, and what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its pc (slot index).
    pub pc: usize,
    /// The instruction.
    pub insn: Insn,
    /// How many instructions the run has executed, this one included (what the budget
    /// counts).
    pub executed: u64,
    /// How many local calls were in progress when it executed (0 in the entry function).
    pub depth: usize,
    /// `r0`–`r10` before it executed.
    pub before: Registers,
    /// `r0`–`r10` after it executed (for a local call, in the callee's frame; for an `exit`
    /// that returns, in the caller's).
    pub after: Registers,
    /// What it did besides changing registers.
    pub effect: Effect,
    /// The pc that executes next; `None` when this was the `exit` that ends the run.
    pub next: Option<usize>,
}

impl Step {
    /// The registers it changed: `(index, before, after)`, in register order.
    pub fn changed(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        self.before
            .iter()
            .zip(&self.after)
            .enumerate()
            .filter(|(_, (b, a))| b != a)
            .map(|(i, (&b, &a))| (i, b, a))
    }
}

/// What an instruction did besides changing registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing else (arithmetic, jumps, local calls and returns).
    None,
    /// It read memory (a load or a packet load).
    Read(Access),
    /// It wrote memory (a store).
    Write(Access),
    /// An atomic read-modify-write: the value before and after (equal when a `cmpxchg` found
    /// another value, or the operation left it as it was).
    Atomic {
        /// The address and the value it read.
        read: Access,
        /// The value the memory holds afterwards.
        after: u64,
    },
    /// A helper call: its id, `r1`–`r5`, and what it returned in `r0`.
    Helper {
        /// The helper id (for `callx`, the register's value).
        id: u64,
        /// `r1`–`r5` at the call.
        args: [u64; 5],
        /// `r0` afterwards.
        result: u64,
    },
}

/// One memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The VM address of its first byte.
    pub addr: u64,
    /// Its width in bytes (1, 2, 4 or 8).
    pub len: u8,
    /// The value, as the instruction moved it: little-endian bytes zero-extended (before sign
    /// extension, for a signed load), or for a packet load the value in network byte order.
    pub value: u64,
}

/// What must be read before an instruction executes to describe it afterwards: an atomic's
/// old memory value (`None` for every other instruction, or when the access will trap).
pub(crate) fn read_before(insn: &Insn, regs: &Registers, mem: &MemoryMap<'_>) -> Option<u64> {
    let Insn::Atomic {
        width, dst, off, ..
    } = *insn
    else {
        return None;
    };
    let addr = reg(regs, dst.index()).wrapping_add(off as i64 as u64);
    read(mem, addr, width)
}

/// The effect of `insn`, which executed without trapping, from the registers around it, the
/// memory after it and what [`read_before`] found.
pub(crate) fn effect(
    insn: &Insn,
    before: &Registers,
    after: &Registers,
    mem: &MemoryMap<'_>,
    old: Option<u64>,
) -> Effect {
    match *insn {
        Insn::Load {
            size,
            dst,
            src,
            off,
            ..
        } => Effect::Read(access(
            reg(before, src.index()).wrapping_add(off as i64 as u64),
            size.bytes(),
            reg(after, dst.index()),
        )),
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => {
            let value = match src {
                Operand::Imm(imm) => imm as i64 as u64,
                Operand::Reg(s) => reg(before, s.index()),
            };
            Effect::Write(access(
                reg(before, dst.index()).wrapping_add(off as i64 as u64),
                size.bytes(),
                value,
            ))
        }
        Insn::LoadPacket { size, addr, imm } => {
            let base = match addr {
                PacketAddr::Abs => 0,
                PacketAddr::Ind(s) => reg(before, s.index()) as u32,
            };
            let offset = u64::from(base.wrapping_add(imm as u32));
            // Every width but a byte or a half-word reads four bytes.
            let len = size.bytes().min(4);
            Effect::Read(access(
                layout::vm_addr(layout::INPUT, offset),
                len,
                reg(after, 0),
            ))
        }
        Insn::Atomic {
            width, dst, off, ..
        } => {
            let addr = reg(before, dst.index()).wrapping_add(off as i64 as u64);
            let len = if width == Width::W64 { 8 } else { 4 };
            let old = old.unwrap_or(0);
            Effect::Atomic {
                read: access(addr, len, old),
                after: read(mem, addr, width).unwrap_or(old),
            }
        }
        Insn::Call {
            kind: CallKind::Helper,
            imm,
        } => helper(u64::from(imm as u32), before, after),
        Insn::CallX { reg: r } => helper(reg(before, r.index()), before, after),
        _ => Effect::None,
    }
}

fn helper(id: u64, before: &Registers, after: &Registers) -> Effect {
    Effect::Helper {
        id,
        args: [before[1], before[2], before[3], before[4], before[5]],
        result: after[0],
    }
}

fn access(addr: u64, len: u32, value: u64) -> Access {
    let mask = match len {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    Access {
        addr,
        len: len as u8,
        value: value & mask,
    }
}

fn read(mem: &MemoryMap<'_>, addr: u64, width: Width) -> Option<u64> {
    match width {
        Width::W64 => mem.load::<8>(addr).map(u64::from_le_bytes),
        Width::W32 => mem
            .load::<4>(addr)
            .map(|b| u64::from(u32::from_le_bytes(b))),
    }
}

fn reg(regs: &Registers, index: u8) -> u64 {
    regs.get(usize::from(index)).copied().unwrap_or(0)
}
