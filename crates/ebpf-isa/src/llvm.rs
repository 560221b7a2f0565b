//! The LLVM/kernel disassembly syntax: exactly the text `llvm-objdump -d --mcpu=v4` (LLVM 19)
//! prints for each BPF instruction, e.g. `w0 = *(u32 *)(r1 + 0x4)` or `if r1 > r2 goto +0x3`.
//!
//! Which instruction is which comes from [`crate::table`] (through [`Form::of`]); the operator
//! and type spellings that LLVM's syntax adds on top live in the small tables below, keyed by
//! the typed enums, and nowhere else.
//!
//! The output is LLVM's, including where LLVM's text drops information that the bytes hold
//! (`tests/llvm.rs` checks all of this against the real tools):
//!
//! - jump targets are relative slot offsets (`goto +0x3`); objdump's ` <.text+0x30>` target
//!   annotation is not printed, because an instruction alone has no section or symbols;
//! - `call` prints only `imm`, whatever its kind (helper, local function or kfunc), so a local
//!   call or a kfunc call reads like a helper call;
//! - `lddw` with a `src` other than 0 prints as `ld_pseudo\trD, 0xSRC, 0xIMM` with only the low
//!   32 bits of the immediate (and a tab, as objdump has it);
//! - `LD_IND` packet loads print `skb[rS]` without their `imm`.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::insn::{
    AluOp, AtomicOp, Cond, Imm64Kind, Insn, Operand, PacketAddr, Reg, SignExtend, Size, Width,
};
use crate::program::Program;
use crate::table::{Form, Selector};

/// LLVM's operator for each binary ALU operation: `dst OP src`.
const ALU_OPS: [(AluOp, &str); 14] = [
    (AluOp::Add, "+="),
    (AluOp::Sub, "-="),
    (AluOp::Mul, "*="),
    (AluOp::Div, "/="),
    (AluOp::Sdiv, "s/="),
    (AluOp::Or, "|="),
    (AluOp::And, "&="),
    (AluOp::Lsh, "<<="),
    (AluOp::Rsh, ">>="),
    (AluOp::Mod, "%="),
    (AluOp::Smod, "s%="),
    (AluOp::Xor, "^="),
    (AluOp::Mov, "="),
    (AluOp::Arsh, "s>>="),
];

/// LLVM's operator for each jump condition: `if dst OP src goto +off`.
const CONDS: [(Cond, &str); 11] = [
    (Cond::Eq, "=="),
    (Cond::Gt, ">"),
    (Cond::Ge, ">="),
    (Cond::Set, "&"),
    (Cond::Ne, "!="),
    (Cond::Sgt, "s>"),
    (Cond::Sge, "s>="),
    (Cond::Lt, "<"),
    (Cond::Le, "<="),
    (Cond::Slt, "s<"),
    (Cond::Sle, "s<="),
];

/// LLVM's C-like type names for an access size: unsigned (loads, stores, atomics, packet
/// loads) and signed (sign-extending loads and `movsx` casts).
const TYPES: [(Size, &str, &str); 4] = [
    (Size::B, "u8", "s8"),
    (Size::H, "u16", "s16"),
    (Size::W, "u32", "s32"),
    (Size::DW, "u64", "s64"),
];

/// Words of LLVM's syntax that are not operators or types.
mod word {
    /// 16-bit unconditional jump.
    pub(super) const GOTO: &str = "goto";
    /// 32-bit unconditional jump.
    pub(super) const GOTOL: &str = "gotol";
    /// Call by register.
    pub(super) const CALLX: &str = "callx";
    /// Suffix of a plain 64-bit immediate load.
    pub(super) const LL: &str = "ll";
    /// A 64-bit immediate load whose `src` is not 0.
    pub(super) const LD_PSEUDO: &str = "ld_pseudo";
    /// Prefix of the non-fetching atomic read-modify-write.
    pub(super) const LOCK: &str = "lock";
    /// Prefix of the fetching atomic functions; the table's mnemonic (`add`, `or`…) follows.
    pub(super) const ATOMIC_FETCH: &str = "atomic_fetch_";
    /// Suffix of `xchg`/`cmpxchg` on 64 bits.
    pub(super) const XCHG_64: &str = "_64";
    /// Suffix of `xchg`/`cmpxchg` on 32 bits.
    pub(super) const XCHG_32: &str = "32_32";
    /// The packet of a legacy packet load.
    pub(super) const SKB: &str = "skb";
}

fn alu_op(op: AluOp) -> &'static str {
    ALU_OPS.iter().find(|e| e.0 == op).map_or("?", |e| e.1)
}

fn cond_op(cond: Cond) -> &'static str {
    CONDS.iter().find(|e| e.0 == cond).map_or("?", |e| e.1)
}

fn type_name(size: Size, signed: bool) -> &'static str {
    TYPES
        .iter()
        .find(|e| e.0 == size)
        .map_or("?", |e| if signed { e.2 } else { e.1 })
}

/// The source size of a sign-extending move.
fn extend_size(from: SignExtend) -> Size {
    match from {
        SignExtend::From8 => Size::B,
        SignExtend::From16 => Size::H,
        SignExtend::From32 => Size::W,
    }
}

/// The ALU operation that a non-fetching atomic applies (`lock *(..) += src`).
fn atomic_alu(op: AtomicOp) -> Option<AluOp> {
    match op {
        AtomicOp::Add { fetch: false } => Some(AluOp::Add),
        AtomicOp::Or { fetch: false } => Some(AluOp::Or),
        AtomicOp::And { fetch: false } => Some(AluOp::And),
        AtomicOp::Xor { fetch: false } => Some(AluOp::Xor),
        _ => None,
    }
}

/// Displays one instruction in LLVM syntax (`insn.llvm().to_string()`).
#[derive(Clone, Copy, Debug)]
pub struct Llvm<'a>(&'a Insn);

impl Insn {
    /// The instruction in the syntax `llvm-objdump -d --mcpu=v4` prints, e.g.
    /// `w0 = *(u32 *)(r1 + 0x4)`, without objdump's ` <.text+0x30>` jump-target annotation.
    pub fn llvm(&self) -> Llvm<'_> {
        Llvm(self)
    }
}

/// The program in LLVM syntax, one instruction per line.
pub fn disassemble_llvm(program: &Program) -> String {
    let mut out = String::new();
    for insn in program.insns() {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{}", insn.llvm());
    }
    out
}

/// A register as LLVM names it at a width: `w3` for 32 bits, `r3` for 64.
struct R(Reg, Width);

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.1 {
            Width::W32 => 'w',
            Width::W64 => 'r',
        };
        write!(f, "{prefix}{}", self.0.index())
    }
}

/// A 64-bit register, `r3`.
fn r64(reg: Reg) -> R {
    R(reg, Width::W64)
}

/// A signed number in hex: `0x1f`, `-0x5`.
struct Hex(i64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{:#x}", self.0.unsigned_abs())
    }
}

/// A jump offset in hex with its sign always shown: `+0x3`, `-0x3`, `+0x0`.
struct Offset(i64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        write!(f, "{sign}{:#x}", self.0.unsigned_abs())
    }
}

/// A memory address: `r10 - 0x8`, `r1 + 0x0` (without parentheses).
struct Addr(Reg, i16);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.1 < 0 { '-' } else { '+' };
        write!(f, "{} {sign} {:#x}", r64(self.0), self.1.unsigned_abs())
    }
}

/// A typed memory access: `*(u32 *)(r1 + 0x4)`.
struct Mem(&'static str, Reg, i16);

impl fmt::Display for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "*({} *)({})", self.0, Addr(self.1, self.2))
    }
}

/// The second operand of ALU and jump instructions: a register at the width, or a signed
/// immediate.
struct Src(Operand, Width);

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Operand::Reg(r) => R(r, self.1).fmt(f),
            Operand::Imm(i) => Hex(i.into()).fmt(f),
        }
    }
}

/// The width at which a load or store names its value register: 64 bits only for `DW`.
fn value_width(size: Size) -> Width {
    match size {
        Size::DW => Width::W64,
        _ => Width::W32,
    }
}

impl fmt::Display for Llvm<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let insn = self.0;
        let spec = Form::of(insn).spec();
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => write!(f, "{} {} {}", R(dst, width), alu_op(op), Src(src, width)),
            Insn::Neg { width, dst } => {
                write!(
                    f,
                    "{} {} -{}",
                    R(dst, width),
                    alu_op(AluOp::Mov),
                    R(dst, width)
                )
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => write!(
                f,
                "{} {} ({}){}",
                R(dst, width),
                alu_op(AluOp::Mov),
                type_name(extend_size(from), true),
                R(src, width)
            ),
            // `le16`, `be32`, `bswap64`: LLVM uses the table's mnemonics.
            Insn::Endian { dst, .. } => write!(
                f,
                "{} {} {} {}",
                r64(dst),
                alu_op(AluOp::Mov),
                spec.mnemonic,
                r64(dst)
            ),
            Insn::Ja { off } => write!(f, "{} {}", word::GOTO, Offset(off.into())),
            Insn::Ja32 { imm } => write!(f, "{} {}", word::GOTOL, Offset(imm.into())),
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                off,
            } => write!(
                f,
                "if {} {} {} {} {}",
                R(dst, width),
                cond_op(cond),
                Src(src, width),
                word::GOTO,
                Offset(off.into())
            ),
            // Every kind prints the same: LLVM does not show `src`.
            Insn::Call { imm, .. } => write!(f, "{} {}", spec.mnemonic, Hex(imm.into())),
            Insn::CallX { reg } => write!(f, "{} {}", word::CALLX, r64(reg)),
            Insn::Exit => f.write_str(spec.mnemonic),
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm,
            } => write!(
                f,
                "{} {} {} {}",
                r64(dst),
                alu_op(AluOp::Mov),
                Hex(imm.cast_signed()),
                word::LL
            ),
            Insn::LoadImm64 { dst, imm, .. } => {
                let src = match spec.selector {
                    Selector::Src(src) => src,
                    _ => 0,
                };
                // Only the low half: LLVM's `ld_pseudo` has no operand for the high one.
                let low = imm & u64::from(u32::MAX);
                write!(f, "{}\t{}, {src:#x}, {low:#x}", word::LD_PSEUDO, r64(dst))
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let width = if signed {
                    Width::W64
                } else {
                    value_width(size)
                };
                write!(
                    f,
                    "{} {} {}",
                    R(dst, width),
                    alu_op(AluOp::Mov),
                    Mem(type_name(size, signed), src, off)
                )
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => write!(
                f,
                "{} {} {}",
                Mem(type_name(size, false), dst, off),
                alu_op(AluOp::Mov),
                Src(src, value_width(size))
            ),
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => {
                let size = match width {
                    Width::W32 => Size::W,
                    Width::W64 => Size::DW,
                };
                let ty = type_name(size, false);
                let mov = alu_op(AluOp::Mov);
                let (reg, addr) = (R(src, width), Addr(dst, off));
                match op {
                    AtomicOp::Xchg | AtomicOp::Cmpxchg => {
                        let suffix = match width {
                            Width::W32 => word::XCHG_32,
                            Width::W64 => word::XCHG_64,
                        };
                        let name = spec.mnemonic;
                        if op == AtomicOp::Cmpxchg {
                            let r0 = R(Reg::R0, width);
                            write!(f, "{r0} {mov} {name}{suffix}({addr}, {r0}, {reg})")
                        } else {
                            write!(f, "{reg} {mov} {name}{suffix}({addr}, {reg})")
                        }
                    }
                    _ => match atomic_alu(op) {
                        Some(alu) => {
                            let lock = word::LOCK;
                            write!(f, "{lock} *({ty} *)({addr}) {} {reg}", alu_op(alu))
                        }
                        None => {
                            let fetch = word::ATOMIC_FETCH;
                            let name = spec.mnemonic;
                            write!(f, "{reg} {mov} {fetch}{name}(({ty} *)({addr}), {reg})")
                        }
                    },
                }
            }
            Insn::LoadPacket { size, addr, imm } => {
                write!(
                    f,
                    "{} {} *({} *){}[",
                    r64(Reg::R0),
                    alu_op(AluOp::Mov),
                    type_name(size, false),
                    word::SKB
                )?;
                match addr {
                    PacketAddr::Abs => write!(f, "{}]", Hex(imm.into())),
                    // LLVM prints no `imm` for LD_IND.
                    PacketAddr::Ind(r) => write!(f, "{}]", r64(r)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_and_size_has_a_spelling() {
        assert!(AluOp::ALL.iter().all(|&op| alu_op(op) != "?"));
        assert!(Cond::ALL.iter().all(|&c| cond_op(c) != "?"));
        for size in Size::ALL {
            assert_ne!(type_name(size, false), "?");
            assert_ne!(type_name(size, true), "?");
        }
    }
}
