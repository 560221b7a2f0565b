//! The disassembler for the bpf_conformance syntax: the exact inverse of [`crate::assemble`].
//!
//! Jump and call targets are printed as `+N`/`-N` slot offsets, so that any instruction,
//! including one whose target lies outside the program, prints and assembles back to the same
//! bytes.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::insn::{CallKind, Imm64Kind, Insn, Operand, PacketAddr, Reg};
use crate::program::Program;
use crate::table::{self, Form};

/// Displays one instruction in conformance syntax (`insn.conformance().to_string()`).
#[derive(Clone, Copy, Debug)]
pub struct Conformance<'a>(&'a Insn);

impl Insn {
    /// The instruction in bpf_conformance syntax, e.g. `ldxw %r0, [%r1+4]`.
    pub fn conformance(&self) -> Conformance<'_> {
        Conformance(self)
    }
}

/// The program in conformance syntax, one instruction per line.
pub fn disassemble(program: &Program) -> String {
    let mut out = String::new();
    for insn in program.insns() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}", insn.conformance());
    }
    out
}

struct R(Reg);

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%r{}", self.0.index())
    }
}

struct Mem(Reg, i16);

impl fmt::Display for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            0 => write!(f, "[{}]", R(self.0)),
            off if off > 0 => write!(f, "[{}+{off}]", R(self.0)),
            off => write!(f, "[{}-{}]", R(self.0), off.unsigned_abs()),
        }
    }
}

struct Target(i64);

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{}", self.0.unsigned_abs())
        } else {
            write!(f, "+{}", self.0)
        }
    }
}

struct Src(Operand);

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Operand::Reg(r) => R(r).fmt(f),
            Operand::Imm(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for Conformance<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let insn = self.0;
        let form = Form::of(insn);
        let (a, b) = form.spec().mnemonic_parts();
        match *insn {
            Insn::Alu { dst, src, .. } => write!(f, "{a}{b} {}, {}", R(dst), Src(src)),
            Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => write!(f, "{a}{b} {}", R(dst)),
            Insn::MovSx { dst, src, .. } => write!(f, "{a}{b} {}, {}", R(dst), R(src)),
            Insn::Ja { off } => write!(f, "{a}{b} {}", Target(off.into())),
            Insn::Ja32 { imm } => write!(f, "{a}{b} {}", Target(imm.into())),
            Insn::Jump { dst, src, off, .. } => {
                write!(f, "{a}{b} {}, {}, {}", R(dst), Src(src), Target(off.into()))
            }
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => write!(f, "{a} {imm}"),
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => {
                write!(
                    f,
                    "{a} {} {}",
                    table::call_kind_word(CallKind::Local),
                    Target(imm.into())
                )
            }
            Insn::Call {
                kind: CallKind::Btf,
                imm,
            } => {
                write!(f, "{a} {} {imm}", table::call_kind_word(CallKind::Btf))
            }
            Insn::CallX { reg } => write!(f, "{a} {}", R(reg)),
            Insn::Exit => write!(f, "{a}"),
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm,
            } => {
                write!(f, "{a} {}, {imm:#x}", R(dst))
            }
            Insn::LoadImm64 { dst, kind, imm } => {
                write!(
                    f,
                    "{a} {}, {} {imm:#x}",
                    R(dst),
                    table::imm64_kind_word(kind)
                )
            }
            Insn::Load { dst, src, off, .. } => write!(f, "{a}{b} {}, {}", R(dst), Mem(src, off)),
            Insn::Store { dst, off, src, .. } => {
                write!(f, "{a}{b} {}, {}", Mem(dst, off), Src(src))
            }
            Insn::Atomic {
                op, dst, src, off, ..
            } => {
                let fetch = if op.fetches()
                    && !matches!(op, crate::AtomicOp::Xchg | crate::AtomicOp::Cmpxchg)
                {
                    "fetch "
                } else {
                    ""
                };
                write!(f, "lock {fetch}{a}{b} {}, {}", Mem(dst, off), R(src))
            }
            Insn::LoadPacket {
                addr: PacketAddr::Abs,
                imm,
                ..
            } => write!(f, "{a}{b} {imm}"),
            Insn::LoadPacket {
                addr: PacketAddr::Ind(r),
                imm,
                ..
            } => {
                write!(f, "{a}{b} {}, {imm}", R(r))
            }
        }
    }
}
