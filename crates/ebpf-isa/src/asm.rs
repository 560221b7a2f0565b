//! The assembler for the bpf_conformance (uBPF-style) syntax: `mov32 %r0, 1`, `ldxw %r0,
//! [%r1+4]`, `lock fetch add [%r10-8], %r1`, labels on lines of their own.
//!
//! The dialect follows the suite's own assembler exactly (see the conformance README §4.3):
//! operands are separated by whitespace with one optional trailing comma, mnemonics and
//! registers are lower case, `#` starts a comment, and the first `exit` is an implicit label
//! `exit`. Extensions for instructions the suite never uses: `lddw %rD, KIND IMM` for the
//! pseudo `lddw` kinds (`map_fd`, `map_value`, `var_addr`, `code`, `map_idx`,
//! `map_idx_value`), and `ldabs{b,h,w} IMM` / `ldind{b,h,w} %rS, IMM` for packet loads.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::insn::{AtomicOp, CallKind, Imm64Kind, Insn, Operand, PacketAddr, Reg};
use crate::program::Program;
use crate::quote::quoted;
use crate::table::{self, Form, SPECS, Spec};

/// Why a line does not assemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsmError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub kind: AsmErrorKind,
}

/// What is wrong with a line of assembly.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsmErrorKind {
    /// No instruction has this mnemonic.
    InvalidMnemonic(String),
    /// The wrong number of operands for the mnemonic.
    OperandCount {
        /// The mnemonic.
        mnemonic: String,
        /// How many it takes.
        expected: usize,
        /// How many the line has.
        found: usize,
    },
    /// `lock` without an atomic operation, or with the wrong operands.
    InvalidLock,
    /// Not a register `%r0`..`%r10`.
    InvalidRegister(String),
    /// Not a memory operand `[%rN]`, `[%rN+OFF]` or `[%rN-OFF]`.
    InvalidMemoryOperand(String),
    /// A memory or jump offset that does not fit in 16 signed bits.
    OffsetOutOfRange(String),
    /// Not a number.
    InvalidNumber(String),
    /// A 32-bit immediate out of range (decimal: i32; hex: up to 0xffffffff).
    ImmediateOutOfRange(String),
    /// A jump target that is neither `+N`/`-N` nor a defined label.
    InvalidLabel(String),
    /// A label defined twice.
    DuplicateLabel(String),
    /// A label whose distance does not fit the instruction's offset field.
    TargetOutOfRange(String),
    /// An `lddw` kind word that is not one of the known kinds.
    InvalidLddwKind(String),
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl core::error::Error for AsmError {}

impl fmt::Display for AsmErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsmErrorKind::InvalidMnemonic(m) => write!(f, "invalid mnemonic: {}", quoted(m)),
            AsmErrorKind::OperandCount {
                mnemonic,
                expected,
                found,
            } => write!(
                f,
                "invalid number of operands for mnemonic {}: expected {expected}, found {found}",
                quoted(mnemonic)
            ),
            AsmErrorKind::InvalidLock => write!(
                f,
                "invalid number of operands for lock: expected `lock [fetch] OP [%rD+OFF], %rS`"
            ),
            AsmErrorKind::InvalidRegister(r) => {
                write!(f, "invalid register: {} (expected %r0..%r10)", quoted(r))
            }
            AsmErrorKind::InvalidMemoryOperand(m) => write!(
                f,
                "failed to decode register and offset: {} (expected [%rN], [%rN+OFF] or [%rN-OFF])",
                quoted(m)
            ),
            AsmErrorKind::OffsetOutOfRange(o) => {
                write!(f, "offset out of 16-bit range: {}", quoted(o))
            }
            AsmErrorKind::InvalidNumber(n) => write!(f, "invalid number: {}", quoted(n)),
            AsmErrorKind::ImmediateOutOfRange(n) => {
                write!(f, "immediate out of 32-bit range: {}", quoted(n))
            }
            AsmErrorKind::InvalidLabel(l) => write!(f, "invalid label: {}", quoted(l)),
            AsmErrorKind::DuplicateLabel(l) => write!(f, "label defined twice: {}", quoted(l)),
            AsmErrorKind::TargetOutOfRange(l) => {
                write!(
                    f,
                    "jump target {} is too far for the offset field",
                    quoted(l)
                )
            }
            AsmErrorKind::InvalidLddwKind(k) => write!(f, "invalid lddw kind: {}", quoted(k)),
        }
    }
}

/// Assembles conformance-syntax text. Line numbers in errors count from 1.
pub fn assemble(text: &str) -> Result<Program, AsmError> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
    assemble_lines(&lines)
}

/// Assembles lines that carry their own line numbers (for text cut out of a larger file, such
/// as the `-- asm` section of a `.data` test vector). Comments (`#` to end of line) are removed.
pub fn assemble_lines(lines: &[(usize, &str)]) -> Result<Program, AsmError> {
    // Pass 1: the pc of every instruction line, and the labels.
    let mut stmts: Vec<(usize, Vec<&str>, usize)> = Vec::new();
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first_exit = None;
    let mut pc = 0usize;
    for &(line, text) in lines {
        let text = text.split('#').next().unwrap_or("");
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let Some(&first) = tokens.first() else {
            continue;
        };
        if let Some(name) = first.strip_suffix(':') {
            if labels.insert(name, pc).is_some() {
                return Err(AsmError {
                    line,
                    kind: AsmErrorKind::DuplicateLabel(name.to_string()),
                });
            }
            continue;
        }
        if first == "exit" && first_exit.is_none() {
            first_exit = Some(pc);
        }
        stmts.push((line, tokens, pc));
        pc += if first == "lddw" { 2 } else { 1 };
    }
    if let Some(exit_pc) = first_exit {
        labels.entry("exit").or_insert(exit_pc);
    }

    // Pass 2: the instructions.
    let mut insns = Vec::with_capacity(stmts.len());
    for (line, tokens, pc) in stmts {
        let ctx = Line {
            labels: &labels,
            pc,
        };
        let insn = ctx
            .statement(&tokens)
            .map_err(|kind| AsmError { line, kind })?;
        insns.push(insn);
    }
    Ok(Program::from_insns(insns))
}

struct Line<'a> {
    labels: &'a BTreeMap<&'a str, usize>,
    pc: usize,
}

type Res<T> = Result<T, AsmErrorKind>;

fn operands<'t>(tokens: &[&'t str]) -> Vec<&'t str> {
    tokens
        .iter()
        .map(|t| t.strip_suffix(',').unwrap_or(t))
        .collect()
}

fn expect_count(mnemonic: &str, ops: &[&str], expected: usize) -> Res<()> {
    if ops.len() == expected {
        Ok(())
    } else {
        Err(AsmErrorKind::OperandCount {
            mnemonic: mnemonic.to_string(),
            expected,
            found: ops.len(),
        })
    }
}

impl Line<'_> {
    fn statement(&self, tokens: &[&str]) -> Res<Insn> {
        let (mnemonic, rest) = tokens.split_first().ok_or(AsmErrorKind::InvalidLock)?;
        if *mnemonic == "lock" {
            return self.atomic(rest);
        }
        // `swapN` is an alias of `bswapN`.
        let alias;
        let mnemonic = match mnemonic.strip_prefix("swap") {
            Some(width) => {
                alias = ["bswap", width].concat();
                alias.as_str()
            }
            None => mnemonic,
        };
        let ops = operands(rest);
        let rows: Vec<&Spec> = SPECS.iter().filter(|s| s.has_mnemonic(mnemonic)).collect();
        let Some(first) = rows.first() else {
            return Err(AsmErrorKind::InvalidMnemonic(mnemonic.to_string()));
        };
        let second_is_reg = ops.get(1).is_some_and(|o| o.starts_with('%'));
        match first.form {
            Form::AluImm(width, op) | Form::AluReg(width, op) => {
                expect_count(mnemonic, &ops, 2)?;
                let dst = reg(ops[0])?;
                let src = if second_is_reg {
                    Operand::Reg(reg(ops[1])?)
                } else {
                    Operand::Imm(imm32(ops[1])?)
                };
                Ok(Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                })
            }
            Form::Neg(width) => {
                expect_count(mnemonic, &ops, 1)?;
                Ok(Insn::Neg {
                    width,
                    dst: reg(ops[0])?,
                })
            }
            Form::MovSx(width, from) => {
                expect_count(mnemonic, &ops, 2)?;
                Ok(Insn::MovSx {
                    width,
                    from,
                    dst: reg(ops[0])?,
                    src: reg(ops[1])?,
                })
            }
            Form::Endian(order, width) => {
                expect_count(mnemonic, &ops, 1)?;
                Ok(Insn::Endian {
                    order,
                    width,
                    dst: reg(ops[0])?,
                })
            }
            Form::Ja => {
                expect_count(mnemonic, &ops, 1)?;
                Ok(Insn::Ja {
                    off: self.offset16(ops[0])?,
                })
            }
            Form::Ja32 => {
                expect_count(mnemonic, &ops, 1)?;
                Ok(Insn::Ja32 {
                    imm: self.offset32(ops[0])?,
                })
            }
            Form::JumpImm(width, cond) | Form::JumpReg(width, cond) => {
                expect_count(mnemonic, &ops, 3)?;
                let dst = reg(ops[0])?;
                let src = if second_is_reg {
                    Operand::Reg(reg(ops[1])?)
                } else {
                    Operand::Imm(imm32(ops[1])?)
                };
                Ok(Insn::Jump {
                    width,
                    cond,
                    dst,
                    src,
                    off: self.offset16(ops[2])?,
                })
            }
            Form::Call(_) | Form::CallX => self.call(mnemonic, &ops),
            Form::Exit => {
                expect_count(mnemonic, &ops, 0)?;
                Ok(Insn::Exit)
            }
            Form::LoadImm64(_) => {
                let (kind, value) = match ops.len() {
                    2 => (Imm64Kind::Value, ops[1]),
                    3 => {
                        let kind = table::imm64_kind_from_word(ops[1])
                            .ok_or_else(|| AsmErrorKind::InvalidLddwKind(ops[1].to_string()))?;
                        (kind, ops[2])
                    }
                    _ => return expect_count(mnemonic, &ops, 2).map(|()| Insn::Exit),
                };
                Ok(Insn::LoadImm64 {
                    dst: reg(ops[0])?,
                    kind,
                    imm: imm64(value)?,
                })
            }
            Form::Load(size, signed) => {
                expect_count(mnemonic, &ops, 2)?;
                let dst = reg(ops[0])?;
                let (src, off) = memory(ops[1])?;
                Ok(Insn::Load {
                    size,
                    signed,
                    dst,
                    src,
                    off,
                })
            }
            Form::StoreImm(size) | Form::StoreReg(size) => {
                expect_count(mnemonic, &ops, 2)?;
                let (dst, off) = memory(ops[0])?;
                let src = if matches!(first.form, Form::StoreReg(_)) {
                    Operand::Reg(reg(ops[1])?)
                } else {
                    Operand::Imm(imm32(ops[1])?)
                };
                Ok(Insn::Store {
                    size,
                    dst,
                    off,
                    src,
                })
            }
            Form::Atomic(..) => Err(AsmErrorKind::InvalidMnemonic(mnemonic.to_string())),
            Form::Packet(size, ind) => {
                let expected = if ind { 2 } else { 1 };
                expect_count(mnemonic, &ops, expected)?;
                let addr = if ind {
                    PacketAddr::Ind(reg(ops[0])?)
                } else {
                    PacketAddr::Abs
                };
                let imm = imm32(ops[expected - 1])?;
                Ok(Insn::LoadPacket { size, addr, imm })
            }
        }
    }

    fn call(&self, mnemonic: &str, ops: &[&str]) -> Res<Insn> {
        // `call N`, `call %rN`, `call helper N|%rN`, `call local LABEL|+N`, `call runtime N`.
        let (kind, target) = match ops {
            [target] => (CallKind::Helper, *target),
            [word, target] => {
                let kind = table::call_kind_from_word(word)
                    .ok_or_else(|| AsmErrorKind::InvalidMnemonic(["call ", word].concat()))?;
                (kind, *target)
            }
            _ => return expect_count(mnemonic, ops, 1).map(|()| Insn::Exit),
        };
        if target.starts_with('%') && kind == CallKind::Helper {
            return Ok(Insn::CallX { reg: reg(target)? });
        }
        let imm = match kind {
            CallKind::Local => self.offset32(target)?,
            CallKind::Helper | CallKind::Btf => imm32(target)?,
        };
        Ok(Insn::Call { kind, imm })
    }

    fn atomic(&self, rest: &[&str]) -> Res<Insn> {
        let (fetch, rest) = match rest.split_first() {
            Some((&"fetch", rest)) => (true, rest),
            _ => (false, rest),
        };
        let [mnemonic, mem, src] = rest else {
            return Err(AsmErrorKind::InvalidLock);
        };
        // `fetch` is implied for xchg and cmpxchg, and allowed there.
        let (width, op) = SPECS
            .iter()
            .filter(|s| s.has_mnemonic(mnemonic))
            .find_map(|s| match s.form {
                Form::Atomic(width, op @ (AtomicOp::Xchg | AtomicOp::Cmpxchg)) => Some((width, op)),
                Form::Atomic(width, op) if op.fetches() == fetch => Some((width, op)),
                _ => None,
            })
            .ok_or_else(|| AsmErrorKind::InvalidMnemonic(["lock ", mnemonic].concat()))?;
        let (dst, off) = memory(mem.strip_suffix(',').unwrap_or(mem))?;
        Ok(Insn::Atomic {
            width,
            op,
            dst,
            src: reg(src)?,
            off,
        })
    }

    /// A jump target as a slot offset from the next instruction.
    fn target(&self, text: &str) -> Res<i64> {
        if text.starts_with('+') || text.starts_with('-') {
            return signed_number(text);
        }
        let target = *self
            .labels
            .get(text)
            .ok_or_else(|| AsmErrorKind::InvalidLabel(text.to_string()))?;
        let (t, pc) = (i64::try_from(target), i64::try_from(self.pc));
        match (t, pc) {
            (Ok(t), Ok(pc)) => Ok(t - pc - 1),
            _ => Err(AsmErrorKind::TargetOutOfRange(text.to_string())),
        }
    }

    fn offset16(&self, text: &str) -> Res<i16> {
        let v = self.target(text)?;
        i16::try_from(v).map_err(|_| {
            if self.labels.contains_key(text) {
                AsmErrorKind::TargetOutOfRange(text.to_string())
            } else {
                AsmErrorKind::OffsetOutOfRange(text.to_string())
            }
        })
    }

    fn offset32(&self, text: &str) -> Res<i32> {
        let v = self.target(text)?;
        i32::try_from(v).map_err(|_| AsmErrorKind::TargetOutOfRange(text.to_string()))
    }
}

fn reg(text: &str) -> Res<Reg> {
    let invalid = || AsmErrorKind::InvalidRegister(text.to_string());
    let digits = text.strip_prefix("%r").ok_or_else(invalid)?;
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    digits
        .parse::<u8>()
        .ok()
        .and_then(Reg::new)
        .ok_or_else(invalid)
}

/// An unsigned number, decimal or `0x` hex, as u64.
fn unsigned(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    }
}

/// `+N` / `-N` (decimal or hex) as i64.
fn signed_number(text: &str) -> Res<i64> {
    let invalid = || AsmErrorKind::InvalidNumber(text.to_string());
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let v = unsigned(digits).ok_or_else(invalid)?;
    let v = i64::try_from(v).map_err(|_| AsmErrorKind::OffsetOutOfRange(text.to_string()))?;
    Ok(if neg { -v } else { v })
}

/// A 32-bit immediate: decimal in the i32 range, or hex up to 0xffffffff (a bit pattern).
fn imm32(text: &str) -> Res<i32> {
    let out_of_range = || AsmErrorKind::ImmediateOutOfRange(text.to_string());
    if text.starts_with("0x") || text.starts_with("0X") {
        let v = unsigned(text).ok_or_else(|| {
            if text.len() > 2 && text[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
                out_of_range()
            } else {
                AsmErrorKind::InvalidNumber(text.to_string())
            }
        })?;
        return u32::try_from(v)
            .map(u32::cast_signed)
            .map_err(|_| out_of_range());
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AsmErrorKind::InvalidNumber(text.to_string()));
    }
    let v: i64 = digits.parse().map_err(|_| out_of_range())?;
    let v = if neg { -v } else { v };
    i32::try_from(v).map_err(|_| out_of_range())
}

/// A 64-bit immediate: hex up to 64 bits, or decimal (negative is two's complement).
fn imm64(text: &str) -> Res<u64> {
    let invalid = || AsmErrorKind::InvalidNumber(text.to_string());
    match text.strip_prefix('-') {
        Some(digits) if !digits.starts_with("0x") => {
            let v: i64 = digits
                .parse::<u64>()
                .ok()
                .and_then(|v| 0i64.checked_sub_unsigned(v))
                .ok_or_else(invalid)?;
            Ok(v.cast_unsigned())
        }
        Some(_) => Err(invalid()),
        None => unsigned(text).ok_or_else(invalid),
    }
}

/// `[%rN]`, `[%rN+OFF]` or `[%rN-OFF]`.
fn memory(text: &str) -> Res<(Reg, i16)> {
    let invalid = || AsmErrorKind::InvalidMemoryOperand(text.to_string());
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(invalid)?;
    let split = inner.find(['+', '-']);
    let (r, off) = match split {
        Some(i) => (&inner[..i], &inner[i..]),
        None => (inner, ""),
    };
    let r = reg(r).map_err(|_| invalid())?;
    if off.is_empty() {
        return Ok((r, 0));
    }
    let v = signed_number(off).map_err(|e| match e {
        AsmErrorKind::OffsetOutOfRange(_) => AsmErrorKind::OffsetOutOfRange(off.to_string()),
        _ => invalid(),
    })?;
    let off = i16::try_from(v).map_err(|_| AsmErrorKind::OffsetOutOfRange(off.to_string()))?;
    Ok((r, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input bytes that a terminal would act on never reach the message as they are: a NUL
    /// inside a number, a screen clear, an OSC window title, a bidi override.
    #[test]
    fn errors_quote_and_escape_what_they_echo() {
        let cases = [
            ("mov %r0, 1\0", "line 1: invalid number: \"1\\0\""),
            (
                "mov %r0, 1\nja \u{1b}[2J",
                "line 2: invalid label: \"\\u{1b}[2J\"",
            ),
            (
                "\u{1b}]0;pwned\u{7} %r0",
                "line 1: invalid mnemonic: \"\\u{1b}]0;pwned\\u{7}\"",
            ),
            (
                "ldxw %r0, [%r1+\u{202e}1]",
                "line 1: failed to decode register and offset: \"[%r1+\\u{202e}1]\" (expected \
                 [%rN], [%rN+OFF] or [%rN-OFF])",
            ),
            (
                "mov %r\u{9b}1, 1",
                "line 1: invalid register: \"%r\\u{9b}1\" (expected %r0..%r10)",
            ),
            // Plain tokens read as before.
            ("ldxq %r0, [%r1]", "line 1: invalid mnemonic: ldxq"),
        ];
        for (text, message) in cases {
            let err = assemble(text).unwrap_err();
            assert_eq!(err.to_string(), message, "{text:?}");
        }
    }
}
