//! Bytes to instructions and back: [`decode`], [`encode`] and the raw 8-byte slot layout.
//!
//! Decoding is strict: a field the ISA reserves must be zero, a register field must name
//! r0..r10, and a field that selects between forms (div/sdiv, mov/movsx, byte-order widths,
//! atomic operations, lddw and call kinds) must select one. Decoding never panics.

use alloc::vec::Vec;
use core::fmt;

use crate::insn::{Insn, Operand, PacketAddr, Reg, Width};
use crate::program::Program;
use crate::table::{self, Field, Form, Selector, Spec};

/// Size of one instruction slot in bytes.
pub const SLOT_SIZE: usize = 8;

/// One 8-byte instruction slot, split into its fields but not interpreted.
///
/// Useful to build deliberately invalid programs in tests, and to report what a bad slot held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawInsn {
    /// bits 0..8
    pub opcode: u8,
    /// bits 8..12 (0..=15)
    pub dst: u8,
    /// bits 12..16 (0..=15)
    pub src: u8,
    /// bits 16..32
    pub off: i16,
    /// bits 32..64
    pub imm: i32,
}

impl RawInsn {
    /// Splits an 8-byte slot into its fields (little-endian, as RFC 9669 specifies).
    pub fn from_bytes(b: [u8; SLOT_SIZE]) -> RawInsn {
        RawInsn {
            opcode: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The slot's bytes. `dst` and `src` are truncated to four bits.
    pub fn to_bytes(self) -> [u8; SLOT_SIZE] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.opcode,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    fn field(&self, field: Field) -> i64 {
        match field {
            Field::Dst => i64::from(self.dst),
            Field::Src => i64::from(self.src),
            Field::Offset => i64::from(self.off),
            Field::Imm => i64::from(self.imm),
        }
    }
}

/// Why a byte string is not a valid program, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The slot index (pc) of the offending instruction.
    pub pc: usize,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

/// What is wrong with an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The byte length is not a multiple of 8; `len` is the total length.
    LengthNotMultipleOf8 {
        /// Length of the input in bytes.
        len: usize,
    },
    /// No instruction has this opcode.
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
    },
    /// A field the ISA reserves for this instruction is not zero.
    ReservedField {
        /// The opcode byte.
        opcode: u8,
        /// Which field.
        field: Field,
        /// Its value.
        value: i64,
    },
    /// A field that selects the form of the instruction has a value that selects none
    /// (e.g. `offset` 2 on a division, `imm` 8 on a byte swap, `src` 9 on `lddw`).
    InvalidSelector {
        /// The opcode byte.
        opcode: u8,
        /// Which field.
        field: Field,
        /// Its value.
        value: i64,
    },
    /// A register field names r11..r15.
    InvalidRegister {
        /// The opcode byte.
        opcode: u8,
        /// `Dst` or `Src`.
        field: Field,
        /// The register number.
        value: u8,
    },
    /// An `lddw` is the last slot: its second half is missing.
    TruncatedLddw,
    /// The pc asked for is past the last whole slot of the program.
    PastEnd {
        /// How many whole slots the program has.
        slots: usize,
    },
    /// The second slot of an `lddw` is not a pseudo-instruction with only `imm` set.
    MalformedLddw {
        /// The field of the second slot that is not zero (`None`: its opcode is not 0).
        field: Option<Field>,
        /// The value found.
        value: i64,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pc {}: {}", self.pc, self.kind)
    }
}

impl core::error::Error for DecodeError {}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeErrorKind::LengthNotMultipleOf8 { len } => {
                write!(f, "program length {len} is not a multiple of 8 bytes")
            }
            DecodeErrorKind::UnknownOpcode { opcode } => write!(f, "unknown opcode {opcode:#04x}"),
            DecodeErrorKind::ReservedField {
                opcode,
                field,
                value,
            } => write!(
                f,
                "reserved field `{}` of {} (opcode {opcode:#04x}) must be 0, is {value}",
                field.name(),
                mnemonic_for(opcode),
            ),
            DecodeErrorKind::InvalidSelector {
                opcode,
                field,
                value,
            } => {
                write!(
                    f,
                    "invalid `{}` {value} for {} (opcode {opcode:#04x}); valid values:",
                    field.name(),
                    mnemonic_for(opcode),
                )?;
                for spec in table::rows_for_opcode(opcode) {
                    match spec.selector {
                        Selector::Offset(v) => write!(f, " {v}")?,
                        Selector::Src(v) => write!(f, " {v}")?,
                        Selector::Imm(v) => write!(f, " {v:#x}")?,
                        Selector::None => {}
                    }
                }
                Ok(())
            }
            DecodeErrorKind::InvalidRegister {
                opcode,
                field,
                value,
            } => write!(
                f,
                "invalid register r{value} in field `{}` of {} (opcode {opcode:#04x}); registers are r0..r10",
                field.name(),
                mnemonic_for(opcode),
            ),
            DecodeErrorKind::PastEnd { slots } => {
                write!(f, "no instruction here: the program has {slots} slots")
            }
            DecodeErrorKind::TruncatedLddw => {
                write!(f, "lddw needs two slots but is the last instruction")
            }
            DecodeErrorKind::MalformedLddw { field: None, value } => write!(
                f,
                "second slot of lddw must have opcode 0, has {value:#04x}"
            ),
            DecodeErrorKind::MalformedLddw {
                field: Some(field),
                value,
            } => write!(
                f,
                "second slot of lddw must have `{}` 0, has {value}",
                field.name()
            ),
        }
    }
}

fn mnemonic_for(opcode: u8) -> &'static str {
    table::rows_for_opcode(opcode)
        .next()
        .map_or("?", |s| s.mnemonic)
}

/// How an instruction form uses each field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Reserved,
    Reg,
    Value,
    Selector,
}

/// Field usage of a form: (dst, src, offset, imm).
fn usage(spec: &Spec) -> [Use; 4] {
    use Use::*;
    let off_sel = if matches!(spec.selector, crate::table::Selector::Offset(_)) {
        Selector
    } else {
        Reserved
    };
    match spec.form {
        Form::AluImm(..) => [Reg, Reserved, off_sel, Value],
        Form::AluReg(..) => [Reg, Reg, off_sel, Reserved],
        Form::Neg(_) => [Reg, Reserved, Reserved, Reserved],
        Form::MovSx(..) => [Reg, Reg, Selector, Reserved],
        Form::Endian(..) => [Reg, Reserved, Reserved, Selector],
        Form::Ja => [Reserved, Reserved, Value, Reserved],
        Form::Ja32 => [Reserved, Reserved, Reserved, Value],
        Form::JumpImm(..) => [Reg, Reserved, Value, Value],
        Form::JumpReg(..) => [Reg, Reg, Value, Reserved],
        Form::Call(_) => [Reserved, Selector, Reserved, Value],
        Form::CallX => [Reg, Reserved, Reserved, Reserved],
        Form::Exit => [Reserved, Reserved, Reserved, Reserved],
        Form::LoadImm64(_) => [Reg, Selector, Reserved, Value],
        Form::Load(..) => [Reg, Reg, Value, Reserved],
        Form::StoreImm(_) => [Reg, Reserved, Value, Value],
        Form::StoreReg(_) => [Reg, Reg, Value, Reserved],
        Form::Atomic(..) => [Reg, Reg, Value, Selector],
        Form::Packet(_, false) => [Reserved, Reserved, Reserved, Value],
        Form::Packet(_, true) => [Reserved, Reg, Reserved, Value],
    }
}

const FIELDS: [Field; 4] = [Field::Dst, Field::Src, Field::Offset, Field::Imm];

fn selector_matches(selector: Selector, raw: &RawInsn) -> bool {
    match selector {
        Selector::None => true,
        Selector::Src(v) => raw.src == v,
        Selector::Offset(v) => raw.off == v,
        Selector::Imm(v) => raw.imm == v,
    }
}

fn selector_field(selector: Selector) -> Option<Field> {
    match selector {
        Selector::None => None,
        Selector::Src(_) => Some(Field::Src),
        Selector::Offset(_) => Some(Field::Offset),
        Selector::Imm(_) => Some(Field::Imm),
    }
}

/// Finds the table row for a slot and checks its reserved and register fields.
fn classify(raw: &RawInsn) -> Result<&'static Spec, DecodeErrorKind> {
    let opcode = raw.opcode;
    let mut rows = table::rows_for_opcode(opcode).peekable();
    let first = rows
        .peek()
        .copied()
        .ok_or(DecodeErrorKind::UnknownOpcode { opcode })?;
    let spec = match rows.find(|s| selector_matches(s.selector, raw)) {
        Some(spec) => spec,
        None => {
            let field = selector_field(first.selector).unwrap_or(Field::Imm);
            let value = raw.field(field);
            return Err(DecodeErrorKind::InvalidSelector {
                opcode,
                field,
                value,
            });
        }
    };
    for (field, use_) in FIELDS.into_iter().zip(usage(spec)) {
        let value = raw.field(field);
        match use_ {
            Use::Reserved if value != 0 => {
                return Err(DecodeErrorKind::ReservedField {
                    opcode,
                    field,
                    value,
                });
            }
            Use::Reg if value > 10 => {
                let value = u8::try_from(value).unwrap_or(u8::MAX);
                return Err(DecodeErrorKind::InvalidRegister {
                    opcode,
                    field,
                    value,
                });
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn reg(n: u8) -> Reg {
    // `classify` has checked every register field.
    Reg::new(n).unwrap_or(Reg::R0)
}

impl Form {
    /// The instruction of this form with these operands. Fields the form does not use are
    /// ignored; `imm64` is the value of an `lddw` (every other form takes `imm`).
    pub fn with_operands(self, dst: Reg, src: Reg, off: i16, imm: i32, imm64: u64) -> Insn {
        match self {
            Form::AluImm(width, op) => Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Imm(imm),
            },
            Form::AluReg(width, op) => Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Reg(src),
            },
            Form::Neg(width) => Insn::Neg { width, dst },
            Form::MovSx(width, from) => Insn::MovSx {
                width,
                from,
                dst,
                src,
            },
            Form::Endian(order, width) => Insn::Endian { order, width, dst },
            Form::Ja => Insn::Ja { off },
            Form::Ja32 => Insn::Ja32 { imm },
            Form::JumpImm(width, cond) => Insn::Jump {
                width,
                cond,
                dst,
                src: Operand::Imm(imm),
                off,
            },
            Form::JumpReg(width, cond) => Insn::Jump {
                width,
                cond,
                dst,
                src: Operand::Reg(src),
                off,
            },
            Form::Call(kind) => Insn::Call { kind, imm },
            Form::CallX => Insn::CallX { reg: dst },
            Form::Exit => Insn::Exit,
            Form::LoadImm64(kind) => Insn::LoadImm64 {
                dst,
                kind,
                imm: imm64,
            },
            Form::Load(size, signed) => Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            },
            Form::StoreImm(size) => Insn::Store {
                size,
                dst,
                off,
                src: Operand::Imm(imm),
            },
            Form::StoreReg(size) => Insn::Store {
                size,
                dst,
                off,
                src: Operand::Reg(src),
            },
            Form::Atomic(width, op) => Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            },
            Form::Packet(size, ind) => {
                let addr = if ind {
                    PacketAddr::Ind(src)
                } else {
                    PacketAddr::Abs
                };
                Insn::LoadPacket { size, addr, imm }
            }
        }
    }
}

/// Decodes the instruction starting at slot `pc` of `bytes` (which holds the whole program).
///
/// Returns the instruction; it occupies [`Insn::slots`] slots.
pub fn decode_at(bytes: &[u8], pc: usize) -> Result<Insn, DecodeError> {
    let err = |kind| DecodeError { pc, kind };
    let slot = |i: usize| -> Option<RawInsn> {
        let start = i.checked_mul(SLOT_SIZE)?;
        let b: [u8; SLOT_SIZE] = bytes
            .get(start..start.checked_add(SLOT_SIZE)?)?
            .try_into()
            .ok()?;
        Some(RawInsn::from_bytes(b))
    };
    let Some(raw) = slot(pc) else {
        let slots = bytes.len() / SLOT_SIZE;
        let kind = if pc == slots && !bytes.len().is_multiple_of(SLOT_SIZE) {
            DecodeErrorKind::LengthNotMultipleOf8 { len: bytes.len() }
        } else {
            DecodeErrorKind::PastEnd { slots }
        };
        return Err(err(kind));
    };
    let spec = classify(&raw).map_err(err)?;
    let imm = raw.imm;
    let off = raw.off;
    let dst = reg(raw.dst);
    let src = reg(raw.src);
    let imm64 = if let Form::LoadImm64(_) = spec.form {
        let next = pc
            .checked_add(1)
            .and_then(slot)
            .ok_or(err(DecodeErrorKind::TruncatedLddw))?;
        let malformed = |field, value| err(DecodeErrorKind::MalformedLddw { field, value });
        if next.opcode != 0 {
            return Err(malformed(None, i64::from(next.opcode)));
        }
        for field in [Field::Dst, Field::Src, Field::Offset] {
            let value = next.field(field);
            if value != 0 {
                return Err(malformed(Some(field), value));
            }
        }
        // Both halves are bit patterns: reinterpret, do not sign-extend the low one.
        let lo = u64::from(imm.cast_unsigned());
        let hi = u64::from(next.imm.cast_unsigned());
        (hi << 32) | lo
    } else {
        0
    };
    Ok(spec.form.with_operands(dst, src, off, imm, imm64))
}

/// Decodes a whole program. Fails on the first invalid instruction.
pub fn decode(bytes: &[u8]) -> Result<Program, DecodeError> {
    if !bytes.len().is_multiple_of(SLOT_SIZE) {
        let pc = bytes.len() / SLOT_SIZE;
        return Err(DecodeError {
            pc,
            kind: DecodeErrorKind::LengthNotMultipleOf8 { len: bytes.len() },
        });
    }
    let slots = bytes.len() / SLOT_SIZE;
    let mut insns = Vec::with_capacity(slots);
    let mut pc = 0;
    while pc < slots {
        let insn = decode_at(bytes, pc)?;
        pc += insn.slots();
        insns.push(insn);
    }
    Ok(Program::from_insns(insns))
}

impl Insn {
    /// The instruction's slot(s): one [`RawInsn`], or two for `lddw`.
    pub fn to_raw(&self) -> (RawInsn, Option<RawInsn>) {
        let spec = Form::of(self).spec();
        let mut raw = RawInsn {
            opcode: spec.opcode,
            ..RawInsn::default()
        };
        match spec.selector {
            Selector::None => {}
            Selector::Src(v) => raw.src = v,
            Selector::Offset(v) => raw.off = v,
            Selector::Imm(v) => raw.imm = v,
        }
        let mut second = None;
        match *self {
            Insn::Alu { dst, src, .. } => {
                raw.dst = dst.index();
                match src {
                    Operand::Reg(r) => raw.src = r.index(),
                    Operand::Imm(i) => raw.imm = i,
                }
            }
            Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => raw.dst = dst.index(),
            Insn::MovSx { dst, src, .. } => {
                raw.dst = dst.index();
                raw.src = src.index();
            }
            Insn::Ja { off } => raw.off = off,
            Insn::Ja32 { imm } | Insn::Call { imm, .. } => raw.imm = imm,
            Insn::Jump { dst, src, off, .. } => {
                raw.dst = dst.index();
                raw.off = off;
                match src {
                    Operand::Reg(r) => raw.src = r.index(),
                    Operand::Imm(i) => raw.imm = i,
                }
            }
            Insn::CallX { reg } => raw.dst = reg.index(),
            Insn::Exit => {}
            Insn::LoadImm64 { dst, imm, .. } => {
                raw.dst = dst.index();
                // Truncation is the point: each slot holds one half.
                raw.imm = (imm as u32).cast_signed();
                second = Some(RawInsn {
                    imm: ((imm >> 32) as u32).cast_signed(),
                    ..RawInsn::default()
                });
            }
            Insn::Load { dst, src, off, .. } | Insn::Atomic { dst, src, off, .. } => {
                raw.dst = dst.index();
                raw.src = src.index();
                raw.off = off;
            }
            Insn::Store { dst, off, src, .. } => {
                raw.dst = dst.index();
                raw.off = off;
                match src {
                    Operand::Reg(r) => raw.src = r.index(),
                    Operand::Imm(i) => raw.imm = i,
                }
            }
            Insn::LoadPacket { addr, imm, .. } => {
                raw.imm = imm;
                if let PacketAddr::Ind(r) = addr {
                    raw.src = r.index();
                }
            }
        }
        (raw, second)
    }

    /// Appends the instruction's bytes (8, or 16 for `lddw`) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (first, second) = self.to_raw();
        out.extend_from_slice(&first.to_bytes());
        if let Some(second) = second {
            out.extend_from_slice(&second.to_bytes());
        }
    }

    /// The instruction's width, for ALU, jump and atomic instructions.
    pub fn width(&self) -> Option<Width> {
        match *self {
            Insn::Alu { width, .. }
            | Insn::Neg { width, .. }
            | Insn::MovSx { width, .. }
            | Insn::Jump { width, .. }
            | Insn::Atomic { width, .. } => Some(width),
            _ => None,
        }
    }
}

/// Encodes a sequence of instructions to bytes. `decode(&encode(p)) == p` for every program,
/// and `encode(&decode(b)?) == b` for every valid byte string.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * SLOT_SIZE);
    for insn in insns {
        insn.encode_into(&mut out);
    }
    out
}
