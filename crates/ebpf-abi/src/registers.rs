//! Which eBPF registers an instruction reads, by the interpreter's rules: what both JITs'
//! liveness (which registers an entry must set up, which a hand-over must store) is built on.
//!
//! A local call reads every register (the callee sees the caller's registers, and the call
//! saves `r6`–`r10` in its frame); `exit` reads what the caller continues with (the caller
//! says: `r0`, and `r1`–`r5` too in a program with local calls); a helper call reads
//! `r1`–`r5` (and `callx` its register); a trap reads nothing.

use ebpf_isa::{AluOp, AtomicOp, CallKind, Insn, Operand, PacketAddr, Reg};

/// A set of registers: bit `i` is `r<i>`.
pub type Regs = u16;

/// Every register, `r0`–`r10`.
pub const ALL: Regs = (1 << 11) - 1;

/// `r0`–`r5`: what a helper call writes (`r0` its result, `r1`–`r5` zeroed).
pub const R0_TO_R5: Regs = 0b11_1111;

/// `r1`–`r5`: a helper call's arguments.
pub const ARGS: Regs = 0b11_1110;

/// The set holding `r` alone.
pub fn bit(r: Reg) -> Regs {
    1 << r.index()
}

fn operand(src: Operand) -> Regs {
    match src {
        Operand::Reg(r) => bit(r),
        Operand::Imm(_) => 0,
    }
}

/// The registers `insn` reads; `exit` reads `exit`.
pub fn reads(insn: &Insn, exit: Regs) -> Regs {
    match *insn {
        Insn::Alu {
            op: AluOp::Mov,
            src,
            ..
        } => operand(src),
        Insn::Alu { dst, src, .. } => bit(dst) | operand(src),
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => bit(dst),
        Insn::MovSx { src, .. } => bit(src),
        Insn::LoadImm64 { .. } | Insn::Ja { .. } | Insn::Ja32 { .. } => 0,
        Insn::Load { src, .. } => bit(src),
        Insn::Store { dst, src, .. } => bit(dst) | operand(src),
        Insn::Atomic { dst, src, op, .. } => {
            let r0 = if op == AtomicOp::Cmpxchg {
                bit(Reg::R0)
            } else {
                0
            };
            bit(dst) | bit(src) | r0
        }
        Insn::LoadPacket { addr, .. } => match addr {
            PacketAddr::Abs => 0,
            PacketAddr::Ind(r) => bit(r),
        },
        Insn::Jump { dst, src, .. } => bit(dst) | operand(src),
        Insn::Call {
            kind: CallKind::Local,
            ..
        } => ALL,
        Insn::Call { .. } => ARGS,
        Insn::CallX { reg } => ARGS | bit(reg),
        Insn::Exit => exit,
    }
}
