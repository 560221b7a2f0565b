//! The instruction table: every opcode number and every mnemonic of the ISA, written once.
//!
//! [`SPECS`] has one row per instruction *form* (an opcode plus, where the opcode is shared, the
//! field value that selects the form). The decoder, the encoder, both assemblers' mnemonic
//! lookup, both disassemblers and the conformance-group classification all read this table; a
//! number or a mnemonic that appears anywhere else in the crate is a bug.
//!
//! The rows are generated at compile time from the small per-family tables below (ALU
//! operations, jump conditions, sizes, atomic operations…), which are the only place the
//! numbers are spelled out.

use crate::insn::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, SignExtend,
    Size, SwapWidth, Width,
};

// Instruction classes (RFC 9669 §3, low three bits of the opcode).
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;

// Source bit of ALU and JMP opcodes.
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;

// Load/store modes (high three bits).
const MODE_IMM: u8 = 0x00;
const MODE_ABS: u8 = 0x20;
const MODE_IND: u8 = 0x40;
const MODE_MEM: u8 = 0x60;
const MODE_MEMSX: u8 = 0x80;
const MODE_ATOMIC: u8 = 0xc0;

// Operation codes that are not part of a family table below.
const ALU_NEG: u8 = 0x80;
const ALU_END: u8 = 0xd0;
const JMP_JA: u8 = 0x00;
const JMP_CALL: u8 = 0x80;
const JMP_EXIT: u8 = 0x90;

// The atomic `fetch` flag in `imm`.
const ATOMIC_FETCH: i32 = 0x01;

/// Binary ALU operations: operation, code (high four bits), `offset` selector, mnemonic.
const ALU_OPS: [(AluOp, u8, i16, &str); 14] = [
    (AluOp::Add, 0x00, 0, "add"),
    (AluOp::Sub, 0x10, 0, "sub"),
    (AluOp::Mul, 0x20, 0, "mul"),
    (AluOp::Div, 0x30, 0, "div"),
    (AluOp::Sdiv, 0x30, 1, "sdiv"),
    (AluOp::Or, 0x40, 0, "or"),
    (AluOp::And, 0x50, 0, "and"),
    (AluOp::Lsh, 0x60, 0, "lsh"),
    (AluOp::Rsh, 0x70, 0, "rsh"),
    (AluOp::Mod, 0x90, 0, "mod"),
    (AluOp::Smod, 0x90, 1, "smod"),
    (AluOp::Xor, 0xa0, 0, "xor"),
    (AluOp::Mov, 0xb0, 0, "mov"),
    (AluOp::Arsh, 0xc0, 0, "arsh"),
];

/// Jump conditions: condition, code, mnemonic.
const CONDS: [(Cond, u8, &str); 11] = [
    (Cond::Eq, 0x10, "jeq"),
    (Cond::Gt, 0x20, "jgt"),
    (Cond::Ge, 0x30, "jge"),
    (Cond::Set, 0x40, "jset"),
    (Cond::Ne, 0x50, "jne"),
    (Cond::Sgt, 0x60, "jsgt"),
    (Cond::Sge, 0x70, "jsge"),
    (Cond::Lt, 0xa0, "jlt"),
    (Cond::Le, 0xb0, "jle"),
    (Cond::Slt, 0xc0, "jslt"),
    (Cond::Sle, 0xd0, "jsle"),
];

/// Access sizes: size, code, suffix.
const SIZES: [(Size, u8, &str); 4] = [
    (Size::W, 0x00, "w"),
    (Size::H, 0x08, "h"),
    (Size::B, 0x10, "b"),
    (Size::DW, 0x18, "dw"),
];

/// Atomic operations: operation, `imm`, mnemonic (without `lock`, `fetch` or the `32` suffix).
#[expect(
    clippy::identity_op,
    reason = "`0x00 | FETCH` reads as the operation code plus its flag"
)]
const ATOMIC_OPS: [(AtomicOp, i32, &str); 10] = [
    (AtomicOp::Add { fetch: false }, 0x00, "add"),
    (AtomicOp::Or { fetch: false }, 0x40, "or"),
    (AtomicOp::And { fetch: false }, 0x50, "and"),
    (AtomicOp::Xor { fetch: false }, 0xa0, "xor"),
    (AtomicOp::Add { fetch: true }, 0x00 | ATOMIC_FETCH, "add"),
    (AtomicOp::Or { fetch: true }, 0x40 | ATOMIC_FETCH, "or"),
    (AtomicOp::And { fetch: true }, 0x50 | ATOMIC_FETCH, "and"),
    (AtomicOp::Xor { fetch: true }, 0xa0 | ATOMIC_FETCH, "xor"),
    (AtomicOp::Xchg, 0xe0 | ATOMIC_FETCH, "xchg"),
    (AtomicOp::Cmpxchg, 0xf0 | ATOMIC_FETCH, "cmpxchg"),
];

/// Byte-order instructions: order, width, class | source bit, `imm`, mnemonic.
const ENDIANS: [(ByteOrder, SwapWidth, u8, i32, &str); 9] = [
    (ByteOrder::Le, SwapWidth::W16, CLASS_ALU | SRC_K, 16, "le16"),
    (ByteOrder::Le, SwapWidth::W32, CLASS_ALU | SRC_K, 32, "le32"),
    (ByteOrder::Le, SwapWidth::W64, CLASS_ALU | SRC_K, 64, "le64"),
    (ByteOrder::Be, SwapWidth::W16, CLASS_ALU | SRC_X, 16, "be16"),
    (ByteOrder::Be, SwapWidth::W32, CLASS_ALU | SRC_X, 32, "be32"),
    (ByteOrder::Be, SwapWidth::W64, CLASS_ALU | SRC_X, 64, "be64"),
    (
        ByteOrder::Swap,
        SwapWidth::W16,
        CLASS_ALU64 | SRC_K,
        16,
        "bswap16",
    ),
    (
        ByteOrder::Swap,
        SwapWidth::W32,
        CLASS_ALU64 | SRC_K,
        32,
        "bswap32",
    ),
    (
        ByteOrder::Swap,
        SwapWidth::W64,
        CLASS_ALU64 | SRC_K,
        64,
        "bswap64",
    ),
];

/// Sign-extending moves: width, source bits, `offset`, mnemonic.
const MOVSX: [(Width, SignExtend, i16, &str); 5] = [
    (Width::W32, SignExtend::From8, 8, "movsx832"),
    (Width::W32, SignExtend::From16, 16, "movsx1632"),
    (Width::W64, SignExtend::From8, 8, "movsx864"),
    (Width::W64, SignExtend::From16, 16, "movsx1664"),
    (Width::W64, SignExtend::From32, 32, "movsx3264"),
];

/// `lddw` kinds: kind, `src`, the word the conformance syntax uses for it.
const IMM64_KINDS: [(Imm64Kind, u8, &str); 7] = [
    (Imm64Kind::Value, 0, ""),
    (Imm64Kind::MapFd, 1, "map_fd"),
    (Imm64Kind::MapValue, 2, "map_value"),
    (Imm64Kind::VarAddr, 3, "var_addr"),
    (Imm64Kind::Code, 4, "code"),
    (Imm64Kind::MapIdx, 5, "map_idx"),
    (Imm64Kind::MapIdxValue, 6, "map_idx_value"),
];

/// Call kinds: kind, `src`, the word the conformance syntax uses for it.
const CALL_KINDS: [(CallKind, u8, &str); 3] = [
    (CallKind::Helper, 0, "helper"),
    (CallKind::Local, 1, "local"),
    (CallKind::Btf, 2, "runtime"),
];

/// Mnemonics that are one row each.
const MNEMONIC_NEG: &str = "neg";
const MNEMONIC_JA: &str = "ja";
const MNEMONIC_JA32: &str = "ja32";
const MNEMONIC_CALL: &str = "call";
const MNEMONIC_EXIT: &str = "exit";
const MNEMONIC_LDDW: &str = "lddw";
const PREFIX_LDX: &str = "ldx";
const PREFIX_LDXS: &str = "ldxs";
const PREFIX_ST: &str = "st";
const PREFIX_STX: &str = "stx";
const PREFIX_LDABS: &str = "ldabs";
const PREFIX_LDIND: &str = "ldind";
/// Suffix of the 32-bit ALU and JMP32 mnemonics.
pub(crate) const SUFFIX_32: &str = "32";

/// The shape of an instruction without its operands: one per row of [`SPECS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Binary ALU with an immediate.
    AluImm(Width, AluOp),
    /// Binary ALU with a register.
    AluReg(Width, AluOp),
    /// Negation.
    Neg(Width),
    /// Sign-extending move.
    MovSx(Width, SignExtend),
    /// Byte order.
    Endian(ByteOrder, SwapWidth),
    /// 16-bit unconditional jump.
    Ja,
    /// 32-bit unconditional jump.
    Ja32,
    /// Conditional jump against an immediate.
    JumpImm(Width, Cond),
    /// Conditional jump against a register.
    JumpReg(Width, Cond),
    /// Call by immediate.
    Call(CallKind),
    /// Call by register.
    CallX,
    /// Exit.
    Exit,
    /// 64-bit immediate load.
    LoadImm64(Imm64Kind),
    /// Load from memory; `true` for sign-extending.
    Load(Size, bool),
    /// Store of an immediate.
    StoreImm(Size),
    /// Store of a register.
    StoreReg(Size),
    /// Atomic operation.
    Atomic(Width, AtomicOp),
    /// Legacy packet load; `true` for `LD_IND`.
    Packet(Size, bool),
}

/// Which field, besides the opcode, tells rows with the same opcode apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The opcode alone decides.
    None,
    /// The `src` field (lddw kinds, call kinds).
    Src(u8),
    /// The `offset` field (div/sdiv, mod/smod, mov/movsx).
    Offset(i16),
    /// The `imm` field (byte order width, atomic operation).
    Imm(i32),
}

/// One of the fields of an encoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// bits 8..12
    Dst,
    /// bits 12..16
    Src,
    /// bits 16..32
    Offset,
    /// bits 32..64
    Imm,
}

impl Field {
    /// The field's name as the RFC writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Dst => "dst",
            Field::Src => "src",
            Field::Offset => "offset",
            Field::Imm => "imm",
        }
    }
}

/// A conformance group of RFC 9669 §2.2 (plus `callx`, as bpf_conformance has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// 32-bit base instructions.
    Base32,
    /// 64-bit base instructions.
    Base64,
    /// 32-bit atomics.
    Atomic32,
    /// 64-bit atomics.
    Atomic64,
    /// 32-bit multiplication and division.
    Divmul32,
    /// 64-bit multiplication and division.
    Divmul64,
    /// Call by register.
    Callx,
    /// Legacy packet loads.
    Packet,
}

impl Group {
    /// Every group.
    pub const ALL: [Group; 8] = [
        Group::Base32,
        Group::Base64,
        Group::Atomic32,
        Group::Atomic64,
        Group::Divmul32,
        Group::Divmul64,
        Group::Callx,
        Group::Packet,
    ];

    /// The group's name as RFC 9669 and bpf_conformance spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Group::Base32 => "base32",
            Group::Base64 => "base64",
            Group::Atomic32 => "atomic32",
            Group::Atomic64 => "atomic64",
            Group::Divmul32 => "divmul32",
            Group::Divmul64 => "divmul64",
            Group::Callx => "callx",
            Group::Packet => "packet",
        }
    }
}

/// The `-mcpu` version that introduced an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuVersion {
    /// the original ISA
    V1,
    /// adds `jlt`, `jle`, `jslt`, `jsle`
    V2,
    /// adds JMP32, atomics and local calls
    V3,
    /// adds `sdiv`/`smod`, `movsx`, sign-extending loads, `bswap` and `gotol`
    V4,
}

/// One row of the instruction table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The opcode byte.
    pub opcode: u8,
    /// The field value that picks this row among rows with the same opcode.
    pub selector: Selector,
    /// The operand shape.
    pub form: Form,
    /// The conformance-syntax mnemonic (for atomics, the operation word without `lock`/`fetch`).
    pub mnemonic: &'static str,
    /// The conformance group.
    pub group: Group,
    /// The first CPU version that has it.
    pub cpu: CpuVersion,
}

const fn alu_class(width: Width) -> u8 {
    match width {
        Width::W32 => CLASS_ALU,
        Width::W64 => CLASS_ALU64,
    }
}

const fn jmp_class(width: Width) -> u8 {
    match width {
        Width::W32 => CLASS_JMP32,
        Width::W64 => CLASS_JMP,
    }
}

const fn size_code(size: Size) -> u8 {
    let mut i = 0;
    while i < SIZES.len() {
        if SIZES[i].0 as u8 == size as u8 {
            return SIZES[i].1;
        }
        i += 1;
    }
    unreachable!()
}

const fn base(w: Width) -> Group {
    match w {
        Width::W32 => Group::Base32,
        Width::W64 => Group::Base64,
    }
}

const fn group_of(form: Form) -> (Group, CpuVersion) {
    use CpuVersion::*;
    use Group::*;
    match form {
        Form::AluImm(w, op) | Form::AluReg(w, op) => {
            let divmul = match w {
                Width::W32 => Divmul32,
                Width::W64 => Divmul64,
            };
            match op {
                AluOp::Mul | AluOp::Div | AluOp::Mod => (divmul, V1),
                AluOp::Sdiv | AluOp::Smod => (divmul, V4),
                _ => (base(w), V1),
            }
        }
        // bpf_conformance files both negations under base32 (its index agrees); kept so that
        // `Program::requirements` answers exactly as the suite's runner does.
        Form::Neg(_) => (Base32, V1),
        Form::MovSx(w, _) => (base(w), V4),
        Form::Endian(ByteOrder::Swap, _) => (Base32, V4),
        Form::Endian(..) => (Base32, V1),
        Form::Ja => (Base32, V1),
        Form::Ja32 => (Base32, V4),
        Form::JumpImm(Width::W32, _) | Form::JumpReg(Width::W32, _) => (Base32, V3),
        Form::JumpImm(_, c) | Form::JumpReg(_, c) => match c {
            Cond::Lt | Cond::Le | Cond::Slt | Cond::Sle => (Base64, V2),
            _ => (Base64, V1),
        },
        Form::Call(CallKind::Local) => (Base32, V3),
        Form::Call(_) | Form::Exit => (Base32, V1),
        Form::CallX => (Callx, V1),
        Form::LoadImm64(_) => (Base64, V1),
        Form::Load(Size::DW, _) | Form::StoreImm(Size::DW) | Form::StoreReg(Size::DW) => {
            (Base64, V1)
        }
        Form::Load(_, true) => (Base32, V4),
        Form::Load(..) | Form::StoreImm(_) | Form::StoreReg(_) => (Base32, V1),
        Form::Atomic(Width::W32, _) => (Atomic32, V3),
        Form::Atomic(Width::W64, _) => (Atomic64, V3),
        Form::Packet(..) => (Packet, V1),
    }
}

const fn row(opcode: u8, selector: Selector, form: Form, mnemonic: &'static str) -> Spec {
    let (group, cpu) = group_of(form);
    Spec {
        opcode,
        selector,
        form,
        mnemonic,
        group,
        cpu,
    }
}

const PLACEHOLDER: Spec = row(0, Selector::None, Form::Exit, "");

/// How many rows [`SPECS`] has.
const ROWS: usize = 2 * 2 * ALU_OPS.len()  // ALU and ALU64, K and X
    + 2                                  // neg
    + MOVSX.len()
    + ENDIANS.len()
    + 2                                  // ja, ja32
    + 2 * 2 * CONDS.len()                // JMP and JMP32, K and X
    + CALL_KINDS.len() + 1 + 1           // call, callx, exit
    + IMM64_KINDS.len()
    + 4 + 3                              // ldx, ldxs
    + 4 + 4                              // st, stx
    + 2 * ATOMIC_OPS.len()
    + 3 + 3; // ldabs, ldind

const fn build() -> [Spec; ROWS] {
    let mut t = [PLACEHOLDER; ROWS];
    let mut n = 0;
    let widths = [Width::W32, Width::W64];

    let mut w = 0;
    while w < 2 {
        let width = widths[w];
        let class = alu_class(width);
        let mut i = 0;
        while i < ALU_OPS.len() {
            let (op, code, off, name) = ALU_OPS[i];
            let sel = if off == 0 {
                Selector::None
            } else {
                Selector::Offset(off)
            };
            // A plain `mov` shares its X opcode with `movsx`, told apart by the offset.
            let sel_x = match (op, sel) {
                (AluOp::Mov, Selector::None) => Selector::Offset(0),
                (AluOp::Div | AluOp::Mod, Selector::None) => Selector::Offset(0),
                _ => sel,
            };
            let sel_k = match (op, sel) {
                (AluOp::Div | AluOp::Mod, Selector::None) => Selector::Offset(0),
                _ => sel,
            };
            t[n] = row(class | SRC_K | code, sel_k, Form::AluImm(width, op), name);
            t[n + 1] = row(class | SRC_X | code, sel_x, Form::AluReg(width, op), name);
            n += 2;
            i += 1;
        }
        t[n] = row(
            class | SRC_K | ALU_NEG,
            Selector::None,
            Form::Neg(width),
            MNEMONIC_NEG,
        );
        n += 1;

        let jclass = jmp_class(width);
        let mut i = 0;
        while i < CONDS.len() {
            let (cond, code, name) = CONDS[i];
            t[n] = row(
                jclass | SRC_K | code,
                Selector::None,
                Form::JumpImm(width, cond),
                name,
            );
            t[n + 1] = row(
                jclass | SRC_X | code,
                Selector::None,
                Form::JumpReg(width, cond),
                name,
            );
            n += 2;
            i += 1;
        }

        let mut i = 0;
        while i < ATOMIC_OPS.len() {
            let (op, imm, name) = ATOMIC_OPS[i];
            let size = match width {
                Width::W32 => Size::W,
                Width::W64 => Size::DW,
            };
            let opcode = CLASS_STX | MODE_ATOMIC | size_code(size);
            t[n] = row(opcode, Selector::Imm(imm), Form::Atomic(width, op), name);
            n += 1;
            i += 1;
        }
        w += 1;
    }

    let mut i = 0;
    while i < MOVSX.len() {
        let (width, from, off, name) = MOVSX[i];
        let opcode = alu_class(width) | SRC_X | 0xb0;
        t[n] = row(
            opcode,
            Selector::Offset(off),
            Form::MovSx(width, from),
            name,
        );
        n += 1;
        i += 1;
    }

    let mut i = 0;
    while i < ENDIANS.len() {
        let (order, width, class_src, imm, name) = ENDIANS[i];
        t[n] = row(
            class_src | ALU_END,
            Selector::Imm(imm),
            Form::Endian(order, width),
            name,
        );
        n += 1;
        i += 1;
    }

    t[n] = row(CLASS_JMP | JMP_JA, Selector::None, Form::Ja, MNEMONIC_JA);
    t[n + 1] = row(
        CLASS_JMP32 | JMP_JA,
        Selector::None,
        Form::Ja32,
        MNEMONIC_JA32,
    );
    n += 2;

    let mut i = 0;
    while i < CALL_KINDS.len() {
        let (kind, src, _) = CALL_KINDS[i];
        let opcode = CLASS_JMP | SRC_K | JMP_CALL;
        t[n] = row(opcode, Selector::Src(src), Form::Call(kind), MNEMONIC_CALL);
        n += 1;
        i += 1;
    }
    t[n] = row(
        CLASS_JMP | SRC_X | JMP_CALL,
        Selector::None,
        Form::CallX,
        MNEMONIC_CALL,
    );
    t[n + 1] = row(
        CLASS_JMP | JMP_EXIT,
        Selector::None,
        Form::Exit,
        MNEMONIC_EXIT,
    );
    n += 2;

    let mut i = 0;
    while i < IMM64_KINDS.len() {
        let (kind, src, _) = IMM64_KINDS[i];
        let opcode = CLASS_LD | MODE_IMM | size_code(Size::DW);
        t[n] = row(
            opcode,
            Selector::Src(src),
            Form::LoadImm64(kind),
            MNEMONIC_LDDW,
        );
        n += 1;
        i += 1;
    }

    let mut i = 0;
    while i < SIZES.len() {
        let (size, code, suffix) = SIZES[i];
        let _ = suffix;
        t[n] = row(
            CLASS_LDX | MODE_MEM | code,
            Selector::None,
            Form::Load(size, false),
            PREFIX_LDX,
        );
        t[n + 1] = row(
            CLASS_ST | MODE_MEM | code,
            Selector::None,
            Form::StoreImm(size),
            PREFIX_ST,
        );
        t[n + 2] = row(
            CLASS_STX | MODE_MEM | code,
            Selector::None,
            Form::StoreReg(size),
            PREFIX_STX,
        );
        n += 3;
        if !matches!(size, Size::DW) {
            t[n] = row(
                CLASS_LDX | MODE_MEMSX | code,
                Selector::None,
                Form::Load(size, true),
                PREFIX_LDXS,
            );
            t[n + 1] = row(
                CLASS_LD | MODE_ABS | code,
                Selector::None,
                Form::Packet(size, false),
                PREFIX_LDABS,
            );
            t[n + 2] = row(
                CLASS_LD | MODE_IND | code,
                Selector::None,
                Form::Packet(size, true),
                PREFIX_LDIND,
            );
            n += 3;
        }
        i += 1;
    }

    assert!(n == ROWS, "ROWS does not match the rows built");
    t
}

/// Every instruction form of RFC 9669, one row each.
pub static SPECS: [Spec; ROWS] = SPECS_BUILT;

/// The rows for each opcode byte: `OPCODE_INDEX[op]` lists indices into [`SPECS`].
struct OpcodeIndex {
    /// `start[op]..start[op + 1]` is the range of `rows` for opcode `op`.
    start: [u16; 257],
    rows: [u16; ROWS],
}

const fn build_index() -> OpcodeIndex {
    let table = SPECS_BUILT;
    let mut idx = OpcodeIndex {
        start: [0; 257],
        rows: [0; ROWS],
    };
    let mut n = 0;
    let mut op = 0;
    while op < 256 {
        idx.start[op] = n as u16;
        let mut i = 0;
        while i < ROWS {
            if table[i].opcode as usize == op {
                idx.rows[n] = i as u16;
                n += 1;
            }
            i += 1;
        }
        op += 1;
    }
    idx.start[256] = n as u16;
    idx
}

static OPCODE_INDEX: OpcodeIndex = build_index();

/// The rows whose opcode byte is `opcode` (empty for an unknown opcode).
pub fn rows_for_opcode(opcode: u8) -> impl Iterator<Item = &'static Spec> {
    let from = usize::from(OPCODE_INDEX.start[usize::from(opcode)]);
    let to = usize::from(OPCODE_INDEX.start[usize::from(opcode) + 1]);
    OPCODE_INDEX.rows[from..to]
        .iter()
        .map(|&i| &SPECS[usize::from(i)])
}

/// How many numbers [`form_key`] gives to each variant of [`Form`]: its operands take
/// `a * 16 + b` for an outer operand `a < 4` and an inner one `b < 16`.
const FORM_STRIDE: usize = 64;
/// How many variants [`Form`] has.
const FORM_VARIANTS: usize = 18;
/// The size of [`FORM_INDEX`].
const FORM_KEYS: usize = FORM_VARIANTS * FORM_STRIDE;
/// An entry of [`FORM_INDEX`] for a form without a row (`Form::Load(Size::DW, true)`, say).
const NO_ROW: u16 = u16::MAX;

// The operand enums fit the stride (an operand added past it fails the build here).
const _: () = assert!(AluOp::ALL.len() <= 16 && Cond::ALL.len() <= 16);
const _: () = assert!(Imm64Kind::ALL.len() <= 16);
const _: () = assert!(Size::ALL.len() <= 4 && ROWS < NO_ROW as usize);

/// A number for each form, different for different forms (a unit test checks every form):
/// the variant, then its operands. Only [`FORM_INDEX`] uses it.
const fn form_key(form: Form) -> usize {
    const fn pair(outer: usize, inner: usize) -> usize {
        outer * 16 + inner
    }
    let (variant, operands) = match form {
        Form::AluImm(w, op) => (0, pair(w as usize, op as usize)),
        Form::AluReg(w, op) => (1, pair(w as usize, op as usize)),
        Form::Neg(w) => (2, w as usize),
        Form::MovSx(w, from) => (3, pair(w as usize, from as usize)),
        Form::Endian(order, w) => (4, pair(order as usize, w as usize)),
        Form::Ja => (5, 0),
        Form::Ja32 => (6, 0),
        Form::JumpImm(w, cond) => (7, pair(w as usize, cond as usize)),
        Form::JumpReg(w, cond) => (8, pair(w as usize, cond as usize)),
        Form::Call(kind) => (9, kind as usize),
        Form::CallX => (10, 0),
        Form::Exit => (11, 0),
        Form::LoadImm64(kind) => (12, kind as usize),
        Form::Load(size, signed) => (13, pair(size as usize, signed as usize)),
        Form::StoreImm(size) => (14, size as usize),
        Form::StoreReg(size) => (15, size as usize),
        Form::Atomic(w, op) => (16, pair(w as usize, atomic_number(op))),
        Form::Packet(size, ind) => (17, pair(size as usize, ind as usize)),
    };
    variant * FORM_STRIDE + operands
}

/// A number below 16 for each atomic operation (the one operand enum with fields).
const fn atomic_number(op: AtomicOp) -> usize {
    let (base, fetch) = match op {
        AtomicOp::Add { fetch } => (0, fetch),
        AtomicOp::Or { fetch } => (1, fetch),
        AtomicOp::And { fetch } => (2, fetch),
        AtomicOp::Xor { fetch } => (3, fetch),
        AtomicOp::Xchg => (4, false),
        AtomicOp::Cmpxchg => (5, false),
    };
    base * 2 + fetch as usize
}

/// The row of each form: `FORM_INDEX[form_key(form)]` is its index into [`SPECS`], or
/// [`NO_ROW`]. Built from [`SPECS`] (the one source of truth), so that [`spec_of`] is a lookup
/// instead of a search of the table: the structured program generator, the JITs and the facts
/// analysis ask for a row per instruction, and under a fuzzer's compare instrumentation the
/// search's `Form` comparisons were ~4% of an input.
static FORM_INDEX: [u16; FORM_KEYS] = build_form_index();

const fn build_form_index() -> [u16; FORM_KEYS] {
    let mut index = [NO_ROW; FORM_KEYS];
    let mut i = 0;
    while i < ROWS {
        let key = form_key(SPECS_BUILT[i].form);
        assert!(index[key] == NO_ROW, "two rows of SPECS share a form key");
        index[key] = i as u16;
        i += 1;
    }
    index
}

/// [`SPECS`] as a constant, for the index built at compile time (a `static` cannot be read
/// by a constant initializer).
const SPECS_BUILT: [Spec; ROWS] = build();

/// The row describing `form`.
pub fn spec_of(form: Form) -> &'static Spec {
    // Every form `Form::of` gives has exactly one row (checked by a unit test); the fallback
    // to the first row for the few forms without one (which `Form::of` never gives) keeps this
    // function total without a panic path, as the linear search it replaces did.
    match FORM_INDEX.get(form_key(form)) {
        Some(&row) if row != NO_ROW => SPECS.get(usize::from(row)).unwrap_or(&SPECS[0]),
        _ => &SPECS[0],
    }
}

impl Form {
    /// The form of an instruction.
    pub fn of(insn: &Insn) -> Form {
        match *insn {
            Insn::Alu {
                width,
                op,
                src: Operand::Imm(_),
                ..
            } => Form::AluImm(width, op),
            Insn::Alu {
                width,
                op,
                src: Operand::Reg(_),
                ..
            } => Form::AluReg(width, op),
            Insn::Neg { width, .. } => Form::Neg(width),
            // A 32-bit result sign-extended from 32 bits is a plain `mov32`.
            Insn::MovSx {
                width: Width::W32,
                from: SignExtend::From32,
                ..
            } => Form::AluReg(Width::W32, AluOp::Mov),
            Insn::MovSx { width, from, .. } => Form::MovSx(width, from),
            Insn::Endian { order, width, .. } => Form::Endian(order, width),
            Insn::Ja { .. } => Form::Ja,
            Insn::Ja32 { .. } => Form::Ja32,
            Insn::Jump {
                width,
                cond,
                src: Operand::Imm(_),
                ..
            } => Form::JumpImm(width, cond),
            Insn::Jump {
                width,
                cond,
                src: Operand::Reg(_),
                ..
            } => Form::JumpReg(width, cond),
            Insn::Call { kind, .. } => Form::Call(kind),
            Insn::CallX { .. } => Form::CallX,
            Insn::Exit => Form::Exit,
            Insn::LoadImm64 { kind, .. } => Form::LoadImm64(kind),
            // Sign-extending 64 bits is the identity: the same instruction as `ldxdw`.
            Insn::Load { size: Size::DW, .. } => Form::Load(Size::DW, false),
            Insn::Load { size, signed, .. } => Form::Load(size, signed),
            Insn::Store {
                size,
                src: Operand::Imm(_),
                ..
            } => Form::StoreImm(size),
            Insn::Store {
                size,
                src: Operand::Reg(_),
                ..
            } => Form::StoreReg(size),
            Insn::Atomic { width, op, .. } => Form::Atomic(width, op),
            Insn::LoadPacket { size, addr, .. } => {
                Form::Packet(size, matches!(addr, PacketAddr::Ind(_)))
            }
        }
    }

    /// The row of the table for this form.
    pub fn spec(self) -> &'static Spec {
        spec_of(self)
    }
}

impl Spec {
    /// The conformance-syntax mnemonic as two parts whose concatenation is the mnemonic
    /// (`("add", "32")`, `("ldx", "dw")`, `("exit", "")`). Atomics leave out `lock`/`fetch`.
    pub fn mnemonic_parts(&self) -> (&'static str, &'static str) {
        match self.form {
            Form::AluImm(Width::W32, _)
            | Form::AluReg(Width::W32, _)
            | Form::Neg(Width::W32)
            | Form::JumpImm(Width::W32, _)
            | Form::JumpReg(Width::W32, _)
            | Form::Atomic(Width::W32, _) => (self.mnemonic, SUFFIX_32),
            Form::Load(size, _)
            | Form::StoreImm(size)
            | Form::StoreReg(size)
            | Form::Packet(size, _) => (self.mnemonic, size_suffix(size)),
            _ => (self.mnemonic, ""),
        }
    }

    /// Whether `word` is this row's conformance-syntax mnemonic.
    pub fn has_mnemonic(&self, word: &str) -> bool {
        let (a, b) = self.mnemonic_parts();
        word.len() == a.len() + b.len() && word.starts_with(a) && word.ends_with(b)
    }
}

/// The suffix that names a size in load/store mnemonics (`b`, `h`, `w`, `dw`).
pub(crate) fn size_suffix(size: Size) -> &'static str {
    SIZES.iter().find(|s| s.0 == size).map_or("", |s| s.2)
}

/// The conformance-syntax word for an `lddw` kind (empty for a plain value).
pub(crate) fn imm64_kind_word(kind: Imm64Kind) -> &'static str {
    IMM64_KINDS.iter().find(|k| k.0 == kind).map_or("", |k| k.2)
}

/// The `lddw` kind named by a conformance-syntax word.
pub(crate) fn imm64_kind_from_word(word: &str) -> Option<Imm64Kind> {
    IMM64_KINDS
        .iter()
        .find(|k| !k.2.is_empty() && k.2 == word)
        .map(|k| k.0)
}

/// The conformance-syntax word for a call kind.
pub(crate) fn call_kind_word(kind: CallKind) -> &'static str {
    CALL_KINDS.iter().find(|k| k.0 == kind).map_or("", |k| k.2)
}

/// The call kind named by a conformance-syntax word.
pub(crate) fn call_kind_from_word(word: &str) -> Option<CallKind> {
    CALL_KINDS.iter().find(|k| k.2 == word).map(|k| k.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn every_form_has_exactly_one_row() {
        for (i, a) in SPECS.iter().enumerate() {
            for b in &SPECS[i + 1..] {
                assert_ne!(a.form, b.form, "two rows for {:?}", a.form);
                assert!(
                    !(a.opcode == b.opcode && a.selector == b.selector),
                    "rows {:?} and {:?} share opcode {:#04x} and selector",
                    a.form,
                    b.form,
                    a.opcode
                );
            }
        }
    }

    #[test]
    fn index_covers_every_row_once() {
        let total: usize = (0..=255u8).map(|op| rows_for_opcode(op).count()).sum();
        assert_eq!(total, SPECS.len());
        for op in 0..=255u8 {
            assert!(rows_for_opcode(op).all(|s| s.opcode == op));
        }
    }

    /// Every value of [`Form`], with or without a row (built from each operand enum's values,
    /// so a form the table lacks is in it too).
    fn every_form() -> Vec<Form> {
        let widths = [Width::W32, Width::W64];
        let extends = [SignExtend::From8, SignExtend::From16, SignExtend::From32];
        let orders = [ByteOrder::Le, ByteOrder::Be, ByteOrder::Swap];
        let swaps = [SwapWidth::W16, SwapWidth::W32, SwapWidth::W64];
        let calls = [CallKind::Helper, CallKind::Local, CallKind::Btf];
        let mut forms = vec![Form::Ja, Form::Ja32, Form::CallX, Form::Exit];
        for w in widths {
            forms.push(Form::Neg(w));
            for op in AluOp::ALL {
                forms.extend([Form::AluImm(w, op), Form::AluReg(w, op)]);
            }
            for cond in Cond::ALL {
                forms.extend([Form::JumpImm(w, cond), Form::JumpReg(w, cond)]);
            }
            for op in AtomicOp::ALL {
                forms.push(Form::Atomic(w, op));
            }
            forms.extend(extends.map(|from| Form::MovSx(w, from)));
        }
        for order in orders {
            forms.extend(swaps.map(|sw| Form::Endian(order, sw)));
        }
        forms.extend(calls.map(Form::Call));
        forms.extend(Imm64Kind::ALL.map(Form::LoadImm64));
        for size in Size::ALL {
            forms.extend([Form::StoreImm(size), Form::StoreReg(size)]);
            for flag in [false, true] {
                forms.extend([Form::Load(size, flag), Form::Packet(size, flag)]);
            }
        }
        forms
    }

    /// What `spec_of` did before the index: a search of the table.
    fn spec_by_search(form: Form) -> &'static Spec {
        SPECS.iter().find(|s| s.form == form).unwrap_or(&SPECS[0])
    }

    #[test]
    fn the_form_index_agrees_with_a_search_of_the_table_for_every_form() {
        let forms = every_form();
        // Forms without a row are in the list too (sign-extending `ldxdw`, `movsx32` from 32).
        assert!(forms.len() > SPECS.len(), "{} forms", forms.len());
        for spec in &SPECS {
            assert!(forms.contains(&spec.form), "{:?} missing", spec.form);
        }
        let mut keys: Vec<usize> = forms.iter().map(|&f| form_key(f)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), forms.len(), "two forms share a key");
        assert!(keys.iter().all(|&k| k < FORM_KEYS));
        for form in forms {
            assert!(
                core::ptr::eq(spec_of(form), spec_by_search(form)),
                "spec_of({form:?}) is {:?}, the table's row is {:?}",
                spec_of(form),
                spec_by_search(form)
            );
        }
    }

    #[test]
    fn the_form_index_finds_every_row_of_every_opcode() {
        for op in 0..=255u8 {
            let searched: Vec<&Spec> = SPECS.iter().filter(|s| s.opcode == op).collect();
            let indexed: Vec<&Spec> = rows_for_opcode(op).collect();
            assert_eq!(indexed, searched, "opcode {op:#04x}");
            for spec in indexed {
                assert!(core::ptr::eq(spec_of(spec.form), spec), "{:?}", spec.form);
                assert_eq!(spec.form.spec().opcode, op);
            }
        }
    }

    #[test]
    fn well_known_opcodes() {
        // Spot checks against RFC 9669's appendix, independent of how the table is built.
        let op = |f: Form| spec_of(f).opcode;
        assert_eq!(op(Form::AluImm(Width::W64, AluOp::Add)), 0x07);
        assert_eq!(op(Form::AluReg(Width::W32, AluOp::Mov)), 0xbc);
        assert_eq!(op(Form::Neg(Width::W64)), 0x87);
        assert_eq!(op(Form::Endian(ByteOrder::Be, SwapWidth::W16)), 0xdc);
        assert_eq!(op(Form::Endian(ByteOrder::Swap, SwapWidth::W64)), 0xd7);
        assert_eq!(op(Form::JumpImm(Width::W32, Cond::Sle)), 0xd6);
        assert_eq!(op(Form::JumpReg(Width::W64, Cond::Set)), 0x4d);
        assert_eq!(op(Form::Ja32), 0x06);
        assert_eq!(op(Form::CallX), 0x8d);
        assert_eq!(op(Form::Exit), 0x95);
        assert_eq!(op(Form::LoadImm64(Imm64Kind::Value)), 0x18);
        assert_eq!(op(Form::Load(Size::H, true)), 0x89);
        assert_eq!(op(Form::StoreImm(Size::B)), 0x72);
        assert_eq!(op(Form::StoreReg(Size::DW)), 0x7b);
        assert_eq!(op(Form::Atomic(Width::W32, AtomicOp::Cmpxchg)), 0xc3);
        assert_eq!(op(Form::Packet(Size::W, false)), 0x20);
        assert_eq!(op(Form::Packet(Size::B, true)), 0x50);
    }
}
