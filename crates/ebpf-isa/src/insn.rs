//! Typed instructions: what one eBPF instruction means, independent of its encoding.
//!
//! Every field that the encoding leaves open is a typed value here, so that an [`Insn`] cannot
//! describe something the ISA does not have (a register r12, an atomic `sub`, a `movsx` from 64
//! bits). The numbers behind the enums live in [`crate::table`], nowhere else.

/// One of the eleven eBPF registers, `r0` to `r10`.
///
/// The constructor refuses 11..15, so a `Reg` in hand is always a real register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(u8);

impl Reg {
    /// `r0`: return value of helpers, local calls and the program.
    pub const R0: Reg = Reg(0);
    /// `r1`: first argument; at program entry, the input memory.
    pub const R1: Reg = Reg(1);
    /// `r2`: second argument; at program entry, the input length.
    pub const R2: Reg = Reg(2);
    /// `r3`: third argument.
    pub const R3: Reg = Reg(3);
    /// `r4`: fourth argument.
    pub const R4: Reg = Reg(4);
    /// `r5`: fifth argument.
    pub const R5: Reg = Reg(5);
    /// `r6`: callee-saved.
    pub const R6: Reg = Reg(6);
    /// `r7`: callee-saved.
    pub const R7: Reg = Reg(7);
    /// `r8`: callee-saved.
    pub const R8: Reg = Reg(8);
    /// `r9`: callee-saved.
    pub const R9: Reg = Reg(9);
    /// `r10`: the read-only frame pointer.
    pub const R10: Reg = Reg(10);
    /// Every register, `r0` first.
    pub const ALL: [Reg; 11] = [
        Reg(0),
        Reg(1),
        Reg(2),
        Reg(3),
        Reg(4),
        Reg(5),
        Reg(6),
        Reg(7),
        Reg(8),
        Reg(9),
        Reg(10),
    ];

    /// The register numbered `n`, or `None` for 11 and above.
    pub const fn new(n: u8) -> Option<Reg> {
        if n <= 10 { Some(Reg(n)) } else { None }
    }

    /// The register's number, 0..=10.
    pub const fn index(self) -> u8 {
        self.0
    }
}

impl core::fmt::Display for Reg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Operand width of an ALU or jump instruction: the `32` forms (classes ALU, JMP32) or the
/// 64-bit ones (ALU64, JMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    /// 32-bit: operands are the low halves; ALU results zero-extend into the upper half.
    W32,
    /// 64-bit.
    W64,
}

/// The second operand of ALU, jump and store instructions: a register or an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The `src` register (`BPF_X`).
    Reg(Reg),
    /// The 32-bit `imm` field (`BPF_K`), sign-extended where a 64-bit value is needed.
    Imm(i32),
}

/// Binary ALU operations. `Sdiv`/`Smod` share their opcode with `Div`/`Mod` and are told apart
/// by `offset == 1`; they are separate operations here because they mean something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AluOp {
    /// `dst += src`
    Add,
    /// `dst -= src`
    Sub,
    /// `dst *= src`
    Mul,
    /// unsigned `dst /= src`; division by zero gives 0
    Div,
    /// signed `dst /= src` (v4); division by zero gives 0, `MIN / -1 = MIN`
    Sdiv,
    /// `dst |= src`
    Or,
    /// `dst &= src`
    And,
    /// `dst <<= src` (count masked to the width)
    Lsh,
    /// logical `dst >>= src` (count masked to the width)
    Rsh,
    /// unsigned `dst %= src`; modulo by zero leaves `dst`
    Mod,
    /// signed `dst %= src` (v4); modulo by zero leaves `dst`, `MIN % -1 = 0`
    Smod,
    /// `dst ^= src`
    Xor,
    /// `dst = src`
    Mov,
    /// arithmetic `dst >>= src` (count masked to the width)
    Arsh,
}

impl AluOp {
    /// Every binary ALU operation, in table order.
    pub const ALL: [AluOp; 14] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::Sdiv,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::Smod,
        AluOp::Xor,
        AluOp::Mov,
        AluOp::Arsh,
    ];
}

/// Width of a sign-extending `movsx` source: the low 8, 16 or 32 bits of `src`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignExtend {
    /// from 8 bits
    From8,
    /// from 16 bits
    From16,
    /// from 32 bits (only with 64-bit width)
    From32,
}

/// What an END-class instruction does to the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ByteOrder {
    /// `le16/32/64`: convert from little-endian; truncates to the width.
    Le,
    /// `be16/32/64`: convert from big-endian; swaps and truncates.
    Be,
    /// `bswap16/32/64` (v4): swap unconditionally.
    Swap,
}

/// Bit width of an END-class instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SwapWidth {
    /// 16 bits
    W16,
    /// 32 bits
    W32,
    /// 64 bits
    W64,
}

impl SwapWidth {
    /// The width in bits: 16, 32 or 64.
    pub const fn bits(self) -> u32 {
        match self {
            SwapWidth::W16 => 16,
            SwapWidth::W32 => 32,
            SwapWidth::W64 => 64,
        }
    }
}

/// Conditions of conditional jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cond {
    /// `==`
    Eq,
    /// unsigned `>`
    Gt,
    /// unsigned `>=`
    Ge,
    /// `dst & src != 0`
    Set,
    /// `!=`
    Ne,
    /// signed `>`
    Sgt,
    /// signed `>=`
    Sge,
    /// unsigned `<`
    Lt,
    /// unsigned `<=`
    Le,
    /// signed `<`
    Slt,
    /// signed `<=`
    Sle,
}

impl Cond {
    /// Every condition, in table order.
    pub const ALL: [Cond; 11] = [
        Cond::Eq,
        Cond::Gt,
        Cond::Ge,
        Cond::Set,
        Cond::Ne,
        Cond::Sgt,
        Cond::Sge,
        Cond::Lt,
        Cond::Le,
        Cond::Slt,
        Cond::Sle,
    ];
}

/// Access size of loads, stores and atomics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Size {
    /// 1 byte
    B,
    /// 2 bytes
    H,
    /// 4 bytes
    W,
    /// 8 bytes
    DW,
}

impl Size {
    /// Every size, smallest first.
    pub const ALL: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];

    /// The access width in bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
}

/// Read-modify-write operations of the atomic instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AtomicOp {
    /// `*addr += src`; with `fetch`, the old value goes to `src`
    Add {
        /// Whether the old value is written back to `src`.
        fetch: bool,
    },
    /// `*addr |= src`
    Or {
        /// Whether the old value is written back to `src`.
        fetch: bool,
    },
    /// `*addr &= src`
    And {
        /// Whether the old value is written back to `src`.
        fetch: bool,
    },
    /// `*addr ^= src`
    Xor {
        /// Whether the old value is written back to `src`.
        fetch: bool,
    },
    /// swap `*addr` and `src` (always fetches)
    Xchg,
    /// if `*addr == r0` then `*addr = src`; the old value goes to `r0` (always fetches)
    Cmpxchg,
}

impl AtomicOp {
    /// Every atomic operation, in table order.
    pub const ALL: [AtomicOp; 10] = [
        AtomicOp::Add { fetch: false },
        AtomicOp::Or { fetch: false },
        AtomicOp::And { fetch: false },
        AtomicOp::Xor { fetch: false },
        AtomicOp::Add { fetch: true },
        AtomicOp::Or { fetch: true },
        AtomicOp::And { fetch: true },
        AtomicOp::Xor { fetch: true },
        AtomicOp::Xchg,
        AtomicOp::Cmpxchg,
    ];

    /// Whether the old memory value is written back to a register.
    pub const fn fetches(self) -> bool {
        match self {
            AtomicOp::Add { fetch } | AtomicOp::Or { fetch } => fetch,
            AtomicOp::And { fetch } | AtomicOp::Xor { fetch } => fetch,
            AtomicOp::Xchg | AtomicOp::Cmpxchg => true,
        }
    }
}

/// What the 64-bit immediate of `lddw` stands for (its `src` field, RFC 9669 §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Imm64Kind {
    /// src 0: the value itself.
    Value,
    /// src 1: a map by file descriptor (`imm` = fd).
    MapFd,
    /// src 2: an address inside a map value (`imm` = fd, next `imm` = offset).
    MapValue,
    /// src 3: the address of a variable (`imm` = BTF id).
    VarAddr,
    /// src 4: the address of code (`imm` = instruction offset).
    Code,
    /// src 5: a map by index.
    MapIdx,
    /// src 6: an address inside a map value, map by index.
    MapIdxValue,
}

impl Imm64Kind {
    /// Every kind, in `src` order.
    pub const ALL: [Imm64Kind; 7] = [
        Imm64Kind::Value,
        Imm64Kind::MapFd,
        Imm64Kind::MapValue,
        Imm64Kind::VarAddr,
        Imm64Kind::Code,
        Imm64Kind::MapIdx,
        Imm64Kind::MapIdxValue,
    ];
}

/// The three kinds of `call` (its `src` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// src 0: a helper function by static id.
    Helper,
    /// src 1: a local (bpf-to-bpf) function; `imm` is the slot offset from the next instruction.
    Local,
    /// src 2: a helper by BTF id (kfunc).
    Btf,
}

/// How a legacy packet load (`LD_ABS` / `LD_IND`) finds its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketAddr {
    /// `imm` alone.
    Abs,
    /// `src + imm`.
    Ind(Reg),
}

/// One eBPF instruction. `Insn::LoadImm64` takes two 8-byte slots; every other one takes one.
///
/// Jump offsets count slots from the next instruction, as in the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// Binary ALU operation: `dst = dst op src`.
    Alu {
        /// 32- or 64-bit.
        width: Width,
        /// The operation.
        op: AluOp,
        /// Destination and first operand.
        dst: Reg,
        /// Second operand.
        src: Operand,
    },
    /// `dst = -dst`.
    Neg {
        /// 32- or 64-bit.
        width: Width,
        /// The register negated in place.
        dst: Reg,
    },
    /// Sign-extending move (v4): `dst = (sN) src`.
    MovSx {
        /// 32- or 64-bit result.
        width: Width,
        /// How many low bits of `src` are sign-extended.
        from: SignExtend,
        /// Destination.
        dst: Reg,
        /// Source.
        src: Reg,
    },
    /// Byte order conversion or swap.
    Endian {
        /// le, be or bswap.
        order: ByteOrder,
        /// 16, 32 or 64 bits.
        width: SwapWidth,
        /// The register converted in place.
        dst: Reg,
    },
    /// Unconditional jump by a 16-bit offset.
    Ja {
        /// Slots from the next instruction.
        off: i16,
    },
    /// Unconditional jump by a 32-bit offset (`gotol`, v4).
    Ja32 {
        /// Slots from the next instruction.
        imm: i32,
    },
    /// Conditional jump: `if dst cond src goto +off`.
    Jump {
        /// JMP (64-bit compare) or JMP32.
        width: Width,
        /// The comparison.
        cond: Cond,
        /// Left operand.
        dst: Reg,
        /// Right operand; an immediate is sign-extended for 64-bit compares.
        src: Operand,
        /// Slots from the next instruction.
        off: i16,
    },
    /// `call imm`: a helper, a local function or a kfunc.
    Call {
        /// Which kind of callee `imm` names.
        kind: CallKind,
        /// Helper id, slot offset (local) or BTF id.
        imm: i32,
    },
    /// `callx reg`: call the helper whose id is in a register.
    CallX {
        /// The register holding the helper id.
        reg: Reg,
    },
    /// Return from a local function, or end the program with `r0`.
    Exit,
    /// `lddw dst, imm64` (two slots).
    LoadImm64 {
        /// Destination.
        dst: Reg,
        /// What the immediate stands for.
        kind: Imm64Kind,
        /// The 64-bit immediate: low half from the first slot, high half from the second.
        imm: u64,
    },
    /// `dst = *(size *)(src + off)`, zero- or sign-extended.
    Load {
        /// Access size.
        size: Size,
        /// Whether the loaded value is sign-extended (MEMSX, v4; not for DW).
        signed: bool,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Signed byte offset.
        off: i16,
    },
    /// `*(size *)(dst + off) = src` for a register or an immediate.
    Store {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Signed byte offset.
        off: i16,
        /// The value stored (an immediate is truncated to the size).
        src: Operand,
    },
    /// Atomic read-modify-write of 32 or 64 bits at `dst + off`.
    Atomic {
        /// `Size::W` or `Size::DW`.
        width: Width,
        /// The operation.
        op: AtomicOp,
        /// Base address register.
        dst: Reg,
        /// Operand register (and destination of fetched values).
        src: Reg,
        /// Signed byte offset.
        off: i16,
    },
    /// Legacy packet load into `r0`, in network byte order (`LD_ABS`, `LD_IND`).
    LoadPacket {
        /// Access size: B, H or W. (`DW` has no encoding in RFC 9669; the builder refuses it
        /// and the decoder never produces it.)
        size: Size,
        /// Absolute or register-relative.
        addr: PacketAddr,
        /// Offset into the packet.
        imm: i32,
    },
}

impl Insn {
    /// Number of 8-byte slots the instruction occupies: 2 for `lddw`, 1 otherwise.
    pub const fn slots(&self) -> usize {
        match self {
            Insn::LoadImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// For a jump, the pc of its target when the instruction is at `pc` (`None` otherwise, and
    /// for a target before pc 0). Local calls are not jumps: see [`Insn::call_target`].
    pub fn jump_target(&self, pc: usize) -> Option<usize> {
        let delta = match *self {
            Insn::Ja { off } | Insn::Jump { off, .. } => i64::from(off),
            Insn::Ja32 { imm } => i64::from(imm),
            _ => return None,
        };
        relative(pc, delta)
    }

    /// For a local call at `pc`, the pc of the callee's first instruction.
    pub fn call_target(&self, pc: usize) -> Option<usize> {
        match *self {
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => relative(pc, i64::from(imm)),
            _ => None,
        }
    }
}

fn relative(pc: usize, delta: i64) -> Option<usize> {
    let pc = i64::try_from(pc).ok()?;
    let target = pc.checked_add(1)?.checked_add(delta)?;
    usize::try_from(target).ok()
}
