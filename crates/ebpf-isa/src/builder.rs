//! A typed builder for writing eBPF programs in Rust, with labels for jumps and local calls.
//!
//! What rbpf's `insn_builder` does, checked by the compiler where it can be: registers are
//! [`Reg`] constants (there is no `r11` to mistype), a second operand is anything that
//! implements [`IntoOperand`] (an `i32` immediate or a [`Reg`]), and every instruction form of
//! RFC 9669 has a method named after its conformance-syntax mnemonic (`add64`, `jeq32`,
//! `ldxsh`, `atomic_fetch_add64`, …). Jump targets are [`Label`]s, bound before or after the
//! jump; [`Builder::build`] resolves them and reports what it cannot resolve as a
//! [`BuildError`]. Nothing here panics.
//!
//! ```
//! use ebpf_isa::Reg;
//! use ebpf_isa::builder::Builder;
//!
//! // r0 = 1 + 2 + ... + 10
//! let mut b = Builder::new();
//! b.mov64(Reg::R0, 0).mov64(Reg::R1, 10);
//! let top = b.label_here();
//! b.add64(Reg::R0, Reg::R1).sub64(Reg::R1, 1).jne(Reg::R1, 0, top);
//! b.exit();
//! let program = b.build().unwrap();
//!
//! let text = "mov %r0, 0\nmov %r1, 10\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, -3\nexit";
//! assert_eq!(program, ebpf_isa::assemble(text).unwrap());
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::insn::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Reg,
    SignExtend, Size, SwapWidth, Width,
};
use crate::program::Program;
use crate::table::{Form, spec_of};

/// A value usable as the second operand of ALU, jump and store instructions.
///
/// Implemented for [`Reg`] (the `BPF_X` forms), `i32` (the `BPF_K` forms: an integer literal
/// such as `5` or `-1` is an `i32`) and [`Operand`] itself.
pub trait IntoOperand {
    /// The operand.
    fn into_operand(self) -> Operand;
}

impl IntoOperand for Reg {
    fn into_operand(self) -> Operand {
        Operand::Reg(self)
    }
}

impl IntoOperand for i32 {
    fn into_operand(self) -> Operand {
        Operand::Imm(self)
    }
}

impl IntoOperand for Operand {
    fn into_operand(self) -> Operand {
        self
    }
}

/// A jump or local-call target inside the program being built.
///
/// Made by [`Builder::label`], placed by [`Builder::bind`]. A label belongs to the builder that
/// made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(usize);

impl Label {
    /// The label's number: labels are numbered 0, 1, 2… in the order their builder made them.
    pub const fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "label #{}", self.0)
    }
}

/// Why [`Builder::build`] could not produce a program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A jump or local call targets a label that was never bound.
    UnboundLabel {
        /// The label.
        label: Label,
        /// The pc of the first instruction that targets it.
        pc: usize,
    },
    /// A label was bound twice.
    LabelBoundTwice {
        /// The label.
        label: Label,
        /// The pc it was bound to first.
        first: usize,
        /// The pc of the second binding.
        second: usize,
    },
    /// The distance to a label does not fit the instruction's offset field: 16 bits for `ja`
    /// and conditional jumps, 32 bits for `ja32` and local calls.
    TargetOutOfRange {
        /// The label.
        label: Label,
        /// The pc of the jump or call.
        pc: usize,
        /// The offset it would need, in slots from the next instruction.
        offset: i64,
    },
    /// A label made by another builder was bound or used.
    ForeignLabel {
        /// The label.
        label: Label,
    },
    /// An instruction given to [`Builder::insn`] that the ISA does not have (a sign-extending
    /// 8-byte load, an 8-byte packet load, or a 32-bit `movsx` from 32 bits).
    NoSuchInstruction {
        /// Its pc.
        pc: usize,
        /// The instruction.
        insn: Insn,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::UnboundLabel { label, pc } => {
                write!(f, "pc {pc}: {label} is never bound")
            }
            BuildError::LabelBoundTwice {
                label,
                first,
                second,
            } => write!(
                f,
                "{label} is bound twice: at pc {first} and at pc {second}"
            ),
            BuildError::TargetOutOfRange { label, pc, offset } => write!(
                f,
                "pc {pc}: {label} is {offset} slots away, too far for the offset field"
            ),
            BuildError::ForeignLabel { label } => {
                write!(f, "{label} was made by another builder")
            }
            BuildError::NoSuchInstruction { pc, insn } => {
                write!(f, "pc {pc}: {insn:?} is not an instruction of the ISA")
            }
        }
    }
}

impl core::error::Error for BuildError {}

/// An instruction whose offset waits for a label.
#[derive(Clone, Copy, Debug)]
struct Fixup {
    /// Index into `Builder::insns`.
    index: usize,
    /// The instruction's pc.
    pc: usize,
    /// The target.
    label: Label,
}

/// Builds a [`Program`] one instruction at a time.
///
/// Every method that adds an instruction returns `&mut Self`, so calls chain. Offsets of
/// jumps and local calls to labels are filled in by [`Builder::build`]; jumps by a raw offset
/// can be added with [`Builder::insn`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    insns: Vec<Insn>,
    /// The pc of the next instruction.
    pc: usize,
    /// The pc each label is bound to.
    labels: Vec<Option<usize>>,
    fixups: Vec<Fixup>,
    /// The first error found while adding instructions or binding labels.
    error: Option<BuildError>,
}

/// Methods for binary ALU operations: name, width, operation, what it computes.
macro_rules! alu_methods {
    ($($name:ident $width:ident $op:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " dst, src`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, src: impl IntoOperand) -> &mut Self {
            self.alu(Width::$width, AluOp::$op, dst, src)
        }
    )*};
}

/// Methods for conditional jumps: name, width, condition, what it compares.
macro_rules! jump_methods {
    ($($name:ident $width:ident $cond:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " dst, src, target`: jump if ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, src: impl IntoOperand, target: Label) -> &mut Self {
            self.jump(Width::$width, Cond::$cond, dst, src, target)
        }
    )*};
}

/// Methods for byte-order instructions: name, order, width.
macro_rules! endian_methods {
    ($($name:ident $order:ident $width:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " dst`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg) -> &mut Self {
            self.push(Insn::Endian { order: ByteOrder::$order, width: SwapWidth::$width, dst })
        }
    )*};
}

/// Methods for sign-extending moves: name, width, source bits.
macro_rules! movsx_methods {
    ($($name:ident $width:ident $from:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " dst, src`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, src: Reg) -> &mut Self {
            self.push(Insn::MovSx { width: Width::$width, from: SignExtend::$from, dst, src })
        }
    )*};
}

/// Methods for loads: name, size, signed.
macro_rules! load_methods {
    ($($name:ident $size:ident $signed:literal $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " dst, [src+off]`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
            self.push(Insn::Load { size: Size::$size, signed: $signed, dst, src, off })
        }
    )*};
}

/// Methods for stores of an immediate (`st`) or a register (`stx`): name, size, operand type.
macro_rules! store_methods {
    ($($name:ident $size:ident $ty:ty, $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " [dst+off], src`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, off: i16, src: $ty) -> &mut Self {
            self.store(Size::$size, dst, off, src)
        }
    )*};
}

/// Methods for atomic operations: name, width, operation.
macro_rules! atomic_methods {
    ($($name:ident $width:ident $op:expr, $what:literal;)*) => {$(
        #[doc = concat!("`lock ", stringify!($name), " [dst+off], src`: ", $what, ".")]
        pub fn $name(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
            self.atomic(Width::$width, $op, dst, off, src)
        }
    )*};
}

/// Methods for legacy packet loads: name, size, indirect.
macro_rules! packet_methods {
    ($($name:ident $size:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " imm`: ", $what, ".")]
        pub fn $name(&mut self, imm: i32) -> &mut Self {
            self.push(Insn::LoadPacket { size: Size::$size, addr: PacketAddr::Abs, imm })
        }
    )*};
    (ind $($name:ident $size:ident $what:literal;)*) => {$(
        #[doc = concat!("`", stringify!($name), " src, imm`: ", $what, ".")]
        pub fn $name(&mut self, src: Reg, imm: i32) -> &mut Self {
            self.push(Insn::LoadPacket { size: Size::$size, addr: PacketAddr::Ind(src), imm })
        }
    )*};
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The pc the next instruction will have (slots so far: an `lddw` counts twice).
    pub fn pc(&self) -> usize {
        self.pc
    }

    /// The instructions added so far, with jumps to labels not yet resolved (offset 0).
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// A new label, not yet bound to a position.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the current position: jumps to it land on the next instruction added.
    ///
    /// Binding a label twice is an error that [`Builder::build`] reports.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let pc = self.pc;
        match self.labels.get_mut(label.0) {
            Some(slot @ None) => *slot = Some(pc),
            Some(Some(first)) => {
                let first = *first;
                self.fail(BuildError::LabelBoundTwice {
                    label,
                    first,
                    second: pc,
                });
            }
            None => self.fail(BuildError::ForeignLabel { label }),
        }
        self
    }

    /// A new label bound to the current position (the head of a loop, typically).
    pub fn label_here(&mut self) -> Label {
        let label = self.label();
        self.bind(label);
        label
    }

    /// Adds any instruction as it is, jumps included (their offsets are taken literally).
    ///
    /// An [`Insn`] value that no instruction form has makes [`Builder::build`] fail with
    /// [`BuildError::NoSuchInstruction`].
    pub fn insn(&mut self, insn: Insn) -> &mut Self {
        let form = Form::of(&insn);
        if spec_of(form).form != form {
            let pc = self.pc;
            self.fail(BuildError::NoSuchInstruction { pc, insn });
        }
        self.push(insn)
    }

    /// Resolves the labels and returns the program.
    ///
    /// Fails on the first problem: a label bound twice or made by another builder (in the
    /// order those happened), else the first jump (in program order) to an unbound label or
    /// to a label too far away.
    pub fn build(&self) -> Result<Program, BuildError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let mut insns = self.insns.clone();
        for fixup in &self.fixups {
            let Fixup { index, pc, label } = *fixup;
            let target = match self.labels.get(label.0) {
                Some(Some(target)) => *target,
                Some(None) => return Err(BuildError::UnboundLabel { label, pc }),
                None => return Err(BuildError::ForeignLabel { label }),
            };
            let offset = i64::try_from(target)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(pc).unwrap_or(i64::MAX))
                .saturating_sub(1);
            let out_of_range = BuildError::TargetOutOfRange { label, pc, offset };
            match insns.get_mut(index) {
                Some(Insn::Ja { off } | Insn::Jump { off, .. }) => {
                    *off = i16::try_from(offset).map_err(|_| out_of_range)?;
                }
                Some(
                    Insn::Ja32 { imm }
                    | Insn::Call {
                        kind: CallKind::Local,
                        imm,
                    },
                ) => {
                    *imm = i32::try_from(offset).map_err(|_| out_of_range)?;
                }
                // Fixups are only made for the instructions above.
                _ => {}
            }
        }
        Ok(Program::from_insns(insns))
    }

    fn fail(&mut self, error: BuildError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    fn push(&mut self, insn: Insn) -> &mut Self {
        self.pc = self.pc.saturating_add(insn.slots());
        self.insns.push(insn);
        self
    }

    fn push_to(&mut self, insn: Insn, label: Label) -> &mut Self {
        if label.0 >= self.labels.len() {
            self.fail(BuildError::ForeignLabel { label });
        }
        self.fixups.push(Fixup {
            index: self.insns.len(),
            pc: self.pc,
            label,
        });
        self.push(insn)
    }

    // ---- ALU ----

    /// Any binary ALU operation: `dst = dst op src`, 32- or 64-bit.
    pub fn alu(&mut self, width: Width, op: AluOp, dst: Reg, src: impl IntoOperand) -> &mut Self {
        self.push(Insn::Alu {
            width,
            op,
            dst,
            src: src.into_operand(),
        })
    }

    alu_methods! {
        add64 W64 Add "`dst += src`";
        sub64 W64 Sub "`dst -= src`";
        mul64 W64 Mul "`dst *= src`";
        div64 W64 Div "unsigned `dst /= src` (0 if `src` is 0)";
        sdiv64 W64 Sdiv "signed `dst /= src` (0 if `src` is 0)";
        or64 W64 Or "`dst |= src`";
        and64 W64 And "`dst &= src`";
        lsh64 W64 Lsh "`dst <<= src`";
        rsh64 W64 Rsh "logical `dst >>= src`";
        mod64 W64 Mod "unsigned `dst %= src` (`dst` unchanged if `src` is 0)";
        smod64 W64 Smod "signed `dst %= src` (`dst` unchanged if `src` is 0)";
        xor64 W64 Xor "`dst ^= src`";
        mov64 W64 Mov "`dst = src`";
        arsh64 W64 Arsh "arithmetic `dst >>= src`";
        add32 W32 Add "`dst += src` on the low 32 bits, zero-extended";
        sub32 W32 Sub "`dst -= src` on the low 32 bits, zero-extended";
        mul32 W32 Mul "`dst *= src` on the low 32 bits, zero-extended";
        div32 W32 Div "unsigned 32-bit `dst /= src` (0 if `src` is 0)";
        sdiv32 W32 Sdiv "signed 32-bit `dst /= src` (0 if `src` is 0)";
        or32 W32 Or "`dst |= src` on the low 32 bits, zero-extended";
        and32 W32 And "`dst &= src` on the low 32 bits, zero-extended";
        lsh32 W32 Lsh "32-bit `dst <<= src`, zero-extended";
        rsh32 W32 Rsh "32-bit logical `dst >>= src`, zero-extended";
        mod32 W32 Mod "unsigned 32-bit `dst %= src`";
        smod32 W32 Smod "signed 32-bit `dst %= src`";
        xor32 W32 Xor "`dst ^= src` on the low 32 bits, zero-extended";
        mov32 W32 Mov "`dst = src` on the low 32 bits, zero-extended";
        arsh32 W32 Arsh "32-bit arithmetic `dst >>= src`, zero-extended";
    }

    /// `neg64 dst`: `dst = -dst`.
    pub fn neg64(&mut self, dst: Reg) -> &mut Self {
        self.push(Insn::Neg {
            width: Width::W64,
            dst,
        })
    }

    /// `neg32 dst`: `dst = -dst` on the low 32 bits, zero-extended.
    pub fn neg32(&mut self, dst: Reg) -> &mut Self {
        self.push(Insn::Neg {
            width: Width::W32,
            dst,
        })
    }

    movsx_methods! {
        movsx832 W32 From8 "`dst = (s8) src`, 32-bit result zero-extended";
        movsx1632 W32 From16 "`dst = (s16) src`, 32-bit result zero-extended";
        movsx864 W64 From8 "`dst = (s8) src`, 64-bit result";
        movsx1664 W64 From16 "`dst = (s16) src`, 64-bit result";
        movsx3264 W64 From32 "`dst = (s32) src`, 64-bit result";
    }

    endian_methods! {
        le16 Le W16 "convert the low 16 bits from little-endian (truncating)";
        le32 Le W32 "convert the low 32 bits from little-endian (truncating)";
        le64 Le W64 "convert 64 bits from little-endian";
        be16 Be W16 "convert the low 16 bits from big-endian (truncating)";
        be32 Be W32 "convert the low 32 bits from big-endian (truncating)";
        be64 Be W64 "convert 64 bits from big-endian";
        bswap16 Swap W16 "swap the bytes of the low 16 bits (truncating)";
        bswap32 Swap W32 "swap the bytes of the low 32 bits (truncating)";
        bswap64 Swap W64 "swap the 8 bytes";
    }

    // ---- jumps and calls ----

    /// `ja target`: jump (16-bit offset).
    pub fn ja(&mut self, target: Label) -> &mut Self {
        self.push_to(Insn::Ja { off: 0 }, target)
    }

    /// `ja32 target` (`gotol`): jump (32-bit offset).
    pub fn ja32(&mut self, target: Label) -> &mut Self {
        self.push_to(Insn::Ja32 { imm: 0 }, target)
    }

    /// Any conditional jump: `if dst cond src goto target`, 32- or 64-bit compare.
    pub fn jump(
        &mut self,
        width: Width,
        cond: Cond,
        dst: Reg,
        src: impl IntoOperand,
        target: Label,
    ) -> &mut Self {
        let insn = Insn::Jump {
            width,
            cond,
            dst,
            src: src.into_operand(),
            off: 0,
        };
        self.push_to(insn, target)
    }

    jump_methods! {
        jeq W64 Eq "`dst == src`";
        jgt W64 Gt "`dst > src` (unsigned)";
        jge W64 Ge "`dst >= src` (unsigned)";
        jset W64 Set "`dst & src != 0`";
        jne W64 Ne "`dst != src`";
        jsgt W64 Sgt "`dst > src` (signed)";
        jsge W64 Sge "`dst >= src` (signed)";
        jlt W64 Lt "`dst < src` (unsigned)";
        jle W64 Le "`dst <= src` (unsigned)";
        jslt W64 Slt "`dst < src` (signed)";
        jsle W64 Sle "`dst <= src` (signed)";
        jeq32 W32 Eq "the low 32 bits are equal";
        jgt32 W32 Gt "the low 32 bits compare `dst > src` (unsigned)";
        jge32 W32 Ge "the low 32 bits compare `dst >= src` (unsigned)";
        jset32 W32 Set "the low 32 bits of `dst & src` are not 0";
        jne32 W32 Ne "the low 32 bits differ";
        jsgt32 W32 Sgt "the low 32 bits compare `dst > src` (signed)";
        jsge32 W32 Sge "the low 32 bits compare `dst >= src` (signed)";
        jlt32 W32 Lt "the low 32 bits compare `dst < src` (unsigned)";
        jle32 W32 Le "the low 32 bits compare `dst <= src` (unsigned)";
        jslt32 W32 Slt "the low 32 bits compare `dst < src` (signed)";
        jsle32 W32 Sle "the low 32 bits compare `dst <= src` (signed)";
    }

    /// `call id`: call the helper function with static id `id`.
    pub fn call_helper(&mut self, id: i32) -> &mut Self {
        self.push(Insn::Call {
            kind: CallKind::Helper,
            imm: id,
        })
    }

    /// `call local target`: call the local (bpf-to-bpf) function that starts at `target`.
    pub fn call_local(&mut self, target: Label) -> &mut Self {
        let insn = Insn::Call {
            kind: CallKind::Local,
            imm: 0,
        };
        self.push_to(insn, target)
    }

    /// `call runtime btf_id`: call the kernel function (kfunc) with BTF id `btf_id`.
    pub fn call_kfunc(&mut self, btf_id: i32) -> &mut Self {
        self.push(Insn::Call {
            kind: CallKind::Btf,
            imm: btf_id,
        })
    }

    /// `callx reg` (`call %rN`): call the helper whose id is in `reg`.
    pub fn callx(&mut self, reg: Reg) -> &mut Self {
        self.push(Insn::CallX { reg })
    }

    /// `exit`: return `r0` from a local function, or end the program.
    pub fn exit(&mut self) -> &mut Self {
        self.push(Insn::Exit)
    }

    // ---- 64-bit immediates ----

    /// `lddw dst, imm`: `dst = imm` (two slots).
    pub fn lddw(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.lddw_kind(dst, Imm64Kind::Value, imm)
    }

    /// `lddw dst, KIND imm`: an `lddw` whose immediate stands for a map, a variable or code.
    pub fn lddw_kind(&mut self, dst: Reg, kind: Imm64Kind, imm: u64) -> &mut Self {
        self.push(Insn::LoadImm64 { dst, kind, imm })
    }

    // ---- memory ----

    /// Any zero-extending load: `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::Load {
            size,
            signed: false,
            dst,
            src,
            off,
        })
    }

    load_methods! {
        ldxb B false "`dst = *(u8 *)(src + off)`";
        ldxh H false "`dst = *(u16 *)(src + off)`";
        ldxw W false "`dst = *(u32 *)(src + off)`";
        ldxdw DW false "`dst = *(u64 *)(src + off)`";
        ldxsb B true "`dst = *(s8 *)(src + off)`, sign-extended to 64 bits";
        ldxsh H true "`dst = *(s16 *)(src + off)`, sign-extended to 64 bits";
        ldxsw W true "`dst = *(s32 *)(src + off)`, sign-extended to 64 bits";
    }

    /// Any store: `*(size *)(dst + off) = src`, of an immediate (`st`) or a register (`stx`).
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: impl IntoOperand) -> &mut Self {
        self.push(Insn::Store {
            size,
            dst,
            off,
            src: src.into_operand(),
        })
    }

    store_methods! {
        stb B i32, "`*(u8 *)(dst + off) = src` (the immediate truncated)";
        sth H i32, "`*(u16 *)(dst + off) = src` (the immediate truncated)";
        stw W i32, "`*(u32 *)(dst + off) = src`";
        stdw DW i32, "`*(u64 *)(dst + off) = src` (the immediate sign-extended)";
        stxb B Reg, "`*(u8 *)(dst + off) = src`";
        stxh H Reg, "`*(u16 *)(dst + off) = src`";
        stxw W Reg, "`*(u32 *)(dst + off) = src`";
        stxdw DW Reg, "`*(u64 *)(dst + off) = src`";
    }

    /// Any atomic operation on the 32 or 64 bits at `dst + off`, with operand `src`.
    pub fn atomic(
        &mut self,
        width: Width,
        op: AtomicOp,
        dst: Reg,
        off: i16,
        src: Reg,
    ) -> &mut Self {
        self.push(Insn::Atomic {
            width,
            op,
            dst,
            src,
            off,
        })
    }

    atomic_methods! {
        atomic_add64 W64 AtomicOp::Add { fetch: false }, "`*(u64 *)(dst + off) += src`";
        atomic_or64 W64 AtomicOp::Or { fetch: false }, "`*(u64 *)(dst + off) |= src`";
        atomic_and64 W64 AtomicOp::And { fetch: false }, "`*(u64 *)(dst + off) &= src`";
        atomic_xor64 W64 AtomicOp::Xor { fetch: false }, "`*(u64 *)(dst + off) ^= src`";
        atomic_fetch_add64 W64 AtomicOp::Add { fetch: true },
            "`*(u64 *)(dst + off) += src`, the old value to `src`";
        atomic_fetch_or64 W64 AtomicOp::Or { fetch: true },
            "`*(u64 *)(dst + off) |= src`, the old value to `src`";
        atomic_fetch_and64 W64 AtomicOp::And { fetch: true },
            "`*(u64 *)(dst + off) &= src`, the old value to `src`";
        atomic_fetch_xor64 W64 AtomicOp::Xor { fetch: true },
            "`*(u64 *)(dst + off) ^= src`, the old value to `src`";
        atomic_xchg64 W64 AtomicOp::Xchg, "swap `*(u64 *)(dst + off)` and `src`";
        atomic_cmpxchg64 W64 AtomicOp::Cmpxchg,
            "if `*(u64 *)(dst + off) == r0` store `src`; the old value to `r0`";
        atomic_add32 W32 AtomicOp::Add { fetch: false }, "`*(u32 *)(dst + off) += src`";
        atomic_or32 W32 AtomicOp::Or { fetch: false }, "`*(u32 *)(dst + off) |= src`";
        atomic_and32 W32 AtomicOp::And { fetch: false }, "`*(u32 *)(dst + off) &= src`";
        atomic_xor32 W32 AtomicOp::Xor { fetch: false }, "`*(u32 *)(dst + off) ^= src`";
        atomic_fetch_add32 W32 AtomicOp::Add { fetch: true },
            "`*(u32 *)(dst + off) += src`, the old value to `src` (zero-extended)";
        atomic_fetch_or32 W32 AtomicOp::Or { fetch: true },
            "`*(u32 *)(dst + off) |= src`, the old value to `src` (zero-extended)";
        atomic_fetch_and32 W32 AtomicOp::And { fetch: true },
            "`*(u32 *)(dst + off) &= src`, the old value to `src` (zero-extended)";
        atomic_fetch_xor32 W32 AtomicOp::Xor { fetch: true },
            "`*(u32 *)(dst + off) ^= src`, the old value to `src` (zero-extended)";
        atomic_xchg32 W32 AtomicOp::Xchg, "swap `*(u32 *)(dst + off)` and the low half of `src`";
        atomic_cmpxchg32 W32 AtomicOp::Cmpxchg,
            "if `*(u32 *)(dst + off)` equals the low half of `r0` store `src`; the old value to `r0`";
    }

    // ---- legacy packet loads ----

    packet_methods! {
        ldabsb B "`r0 = *(u8 *)(packet + imm)`";
        ldabsh H "`r0 = ntohs(*(u16 *)(packet + imm))`";
        ldabsw W "`r0 = ntohl(*(u32 *)(packet + imm))`";
    }

    packet_methods! { ind
        ldindb B "`r0 = *(u8 *)(packet + src + imm)`";
        ldindh H "`r0 = ntohs(*(u16 *)(packet + src + imm))`";
        ldindw W "`r0 = ntohl(*(u32 *)(packet + src + imm))`";
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::table::SPECS;
    use crate::{assemble, decode};

    const R0: Reg = Reg::R0;
    const R1: Reg = Reg::R1;
    const R2: Reg = Reg::R2;
    const R10: Reg = Reg::R10;

    #[track_caller]
    fn same_as_asm(b: &Builder, text: &str) {
        let built = b.build().unwrap();
        let assembled = assemble(text).unwrap();
        assert_eq!(built.to_bytes(), assembled.to_bytes(), "\n{text}");
        assert_eq!(decode(&built.to_bytes()).unwrap(), built);
    }

    #[test]
    fn loop_with_backward_label_matches_assembler() {
        let mut b = Builder::new();
        b.mov64(R0, 0).mov64(R1, 10);
        let top = b.label_here();
        b.add64(R0, R1).sub64(R1, 1).jne(R1, 0, top).exit();
        same_as_asm(
            &b,
            "mov %r0, 0\nmov %r1, 10\ntop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, top\nexit",
        );
    }

    #[test]
    fn forward_labels_across_lddw_match_assembler() {
        let mut b = Builder::new();
        let (skip, out) = (b.label(), b.label());
        b.ldxw(R2, R1, 4)
            .jslt32(R2, -1, skip)
            .lddw(R0, 0x1122_3344_5566_7788)
            .ja(out)
            .bind(skip)
            .lddw(R0, u64::MAX)
            .ja32(out)
            .mov32(R0, 7)
            .bind(out)
            .exit();
        same_as_asm(
            &b,
            "ldxw %r2, [%r1+4]\n\
             jslt32 %r2, -1, skip\n\
             lddw %r0, 0x1122334455667788\n\
             ja out\n\
             skip:\n\
             lddw %r0, 0xffffffffffffffff\n\
             ja32 out\n\
             mov32 %r0, 7\n\
             out:\n\
             exit",
        );
        let p = b.build().unwrap();
        assert_eq!(
            p.at_pc(1),
            Some(&Insn::Jump {
                width: Width::W32,
                cond: Cond::Slt,
                dst: R2,
                src: Operand::Imm(-1),
                off: 3,
            })
        );
        assert_eq!(p.at_pc(4), Some(&Insn::Ja { off: 4 }));
        assert_eq!(p.at_pc(7), Some(&Insn::Ja32 { imm: 1 }));
    }

    #[test]
    fn memory_atomics_and_calls_match_assembler() {
        let mut b = Builder::new();
        let f = b.label();
        b.stdw(R10, -8, 5)
            .stxw(R10, -16, R1)
            .atomic_fetch_add64(R10, -8, R1)
            .atomic_cmpxchg32(R10, -16, R2)
            .atomic_xor64(R10, -8, R2)
            .ldxsh(R0, R10, -8)
            .call_local(f)
            .call_helper(1)
            .call_kfunc(7)
            .callx(R2)
            .exit()
            .bind(f)
            .sdiv64(R0, -3)
            .smod32(R0, R1)
            .movsx3264(R0, R1)
            .bswap16(R0)
            .be64(R0)
            .neg32(R0)
            .lddw_kind(R1, Imm64Kind::MapFd, 3)
            .ldabsh(12)
            .ldindw(R1, -4)
            .exit();
        same_as_asm(
            &b,
            "stdw [%r10-8], 5\n\
             stxw [%r10-16], %r1\n\
             lock fetch add [%r10-8], %r1\n\
             lock cmpxchg32 [%r10-16], %r2\n\
             lock xor [%r10-8], %r2\n\
             ldxsh %r0, [%r10-8]\n\
             call local f\n\
             call 1\n\
             call runtime 7\n\
             call %r2\n\
             exit\n\
             f:\n\
             sdiv %r0, -3\n\
             smod32 %r0, %r1\n\
             movsx3264 %r0, %r1\n\
             bswap16 %r0\n\
             be64 %r0\n\
             neg32 %r0\n\
             lddw %r1, map_fd 3\n\
             ldabsh 12\n\
             ldindw %r1, -4\n\
             exit",
        );
    }

    #[test]
    fn label_bound_before_any_use_and_self_loop() {
        let mut b = Builder::new();
        let here = b.label_here();
        b.ja(here);
        let p = b.build().unwrap();
        assert_eq!(p.insns(), &[Insn::Ja { off: -1 }]);
        assert_eq!(p.insns()[0].jump_target(0), Some(0));
    }

    #[test]
    fn labels_used_many_times_and_never_used() {
        let mut b = Builder::new();
        let (end, unused) = (b.label(), b.label());
        let _ = unused;
        b.jeq(R1, 0, end).jeq(R1, 1, end).jeq(R1, R2, end);
        b.bind(end).exit();
        let p = b.build().unwrap();
        let offs: Vec<_> = p
            .insns()
            .iter()
            .filter_map(|i| match i {
                Insn::Jump { off, .. } => Some(*off),
                _ => None,
            })
            .collect();
        assert_eq!(offs, vec![2, 1, 0]);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut b = Builder::new();
        let l = b.label();
        b.mov64(R0, 0).ja(l).exit();
        let err = b.build().unwrap_err();
        assert_eq!(err, BuildError::UnboundLabel { label: l, pc: 1 });
        assert_eq!(err.to_string(), "pc 1: label #0 is never bound");
    }

    #[test]
    fn label_bound_twice_is_an_error() {
        let mut b = Builder::new();
        let l = b.label();
        b.bind(l).mov64(R0, 0).bind(l).exit();
        let err = b.build().unwrap_err();
        assert_eq!(
            err,
            BuildError::LabelBoundTwice {
                label: l,
                first: 0,
                second: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "label #0 is bound twice: at pc 0 and at pc 1"
        );
    }

    #[test]
    fn target_out_of_i16_range_is_an_error_but_fits_ja32() {
        let far = |b: &mut Builder| {
            for _ in 0..=i16::MAX {
                b.mov64(R0, 0);
            }
        };
        // Forward: offset 32768 does not fit i16.
        let mut b = Builder::new();
        let l = b.label();
        b.jeq(R1, 0, l);
        far(&mut b);
        b.bind(l).exit();
        let err = b.build().unwrap_err();
        assert_eq!(
            err,
            BuildError::TargetOutOfRange {
                label: l,
                pc: 0,
                offset: 32768
            }
        );
        assert!(err.to_string().contains("32768 slots away"));

        // The same distance with ja32 is fine.
        let mut b = Builder::new();
        let l = b.label();
        b.ja32(l);
        far(&mut b);
        b.bind(l).exit();
        let p = b.build().unwrap();
        assert_eq!(p.insns()[0], Insn::Ja32 { imm: 32768 });

        // Backward: -32768 fits, -32769 does not.
        let mut b = Builder::new();
        let l = b.label_here();
        for _ in 0..i16::MAX {
            b.mov64(R0, 0);
        }
        b.ja(l);
        assert_eq!(
            b.build().unwrap().insns().last(),
            Some(&Insn::Ja { off: i16::MIN })
        );
        b.mov64(R0, 0).ja(l);
        assert!(matches!(
            b.build(),
            Err(BuildError::TargetOutOfRange { offset: -32770, .. })
        ));
    }

    #[test]
    fn foreign_label_is_an_error() {
        let mut other = Builder::new();
        other.label();
        let foreign = other.label();
        let mut b = Builder::new();
        b.ja(foreign).exit();
        let err = b.build().unwrap_err();
        assert_eq!(err, BuildError::ForeignLabel { label: foreign });
        assert_eq!(err.to_string(), "label #1 was made by another builder");
        let mut b = Builder::new();
        b.bind(foreign).exit();
        assert_eq!(b.build(), Err(BuildError::ForeignLabel { label: foreign }));
    }

    #[test]
    fn insn_rejects_values_without_a_form() {
        let bad = Insn::LoadPacket {
            size: Size::DW,
            addr: crate::PacketAddr::Abs,
            imm: 4,
        };
        let mut b = Builder::new();
        b.exit().insn(bad);
        let err = b.build().unwrap_err();
        assert_eq!(err, BuildError::NoSuchInstruction { pc: 1, insn: bad });
        assert!(err.to_string().starts_with("pc 1: LoadPacket"));

        // Raw jumps go in untouched.
        let mut b = Builder::new();
        b.insn(Insn::Ja { off: 100 }).exit();
        assert_eq!(b.build().unwrap().insns()[0], Insn::Ja { off: 100 });
    }

    #[test]
    fn errors_are_std_errors() {
        fn is_error<E: core::error::Error>(_: &E) {}
        is_error(&BuildError::ForeignLabel { label: Label(0) });
    }

    /// Every form of the table has a builder method: one program that uses each method once
    /// covers every row of [`SPECS`].
    #[test]
    fn every_form_has_a_method() {
        let mut b = Builder::new();
        let l = b.label_here();
        let (r, k) = (R1, 1);
        b.add64(R0, k)
            .add64(R0, r)
            .sub64(R0, k)
            .sub64(R0, r)
            .mul64(R0, k)
            .mul64(R0, r);
        b.div64(R0, k)
            .div64(R0, r)
            .sdiv64(R0, k)
            .sdiv64(R0, r)
            .or64(R0, k)
            .or64(R0, r);
        b.and64(R0, k)
            .and64(R0, r)
            .lsh64(R0, k)
            .lsh64(R0, r)
            .rsh64(R0, k)
            .rsh64(R0, r);
        b.mod64(R0, k)
            .mod64(R0, r)
            .smod64(R0, k)
            .smod64(R0, r)
            .xor64(R0, k)
            .xor64(R0, r);
        b.mov64(R0, k).mov64(R0, r).arsh64(R0, k).arsh64(R0, r);
        b.add32(R0, k)
            .add32(R0, r)
            .sub32(R0, k)
            .sub32(R0, r)
            .mul32(R0, k)
            .mul32(R0, r);
        b.div32(R0, k)
            .div32(R0, r)
            .sdiv32(R0, k)
            .sdiv32(R0, r)
            .or32(R0, k)
            .or32(R0, r);
        b.and32(R0, k)
            .and32(R0, r)
            .lsh32(R0, k)
            .lsh32(R0, r)
            .rsh32(R0, k)
            .rsh32(R0, r);
        b.mod32(R0, k)
            .mod32(R0, r)
            .smod32(R0, k)
            .smod32(R0, r)
            .xor32(R0, k)
            .xor32(R0, r);
        b.mov32(R0, k).mov32(R0, r).arsh32(R0, k).arsh32(R0, r);
        b.neg64(R0).neg32(R0);
        b.movsx832(R0, r)
            .movsx1632(R0, r)
            .movsx864(R0, r)
            .movsx1664(R0, r)
            .movsx3264(R0, r);
        b.le16(R0).le32(R0).le64(R0).be16(R0).be32(R0).be64(R0);
        b.bswap16(R0).bswap32(R0).bswap64(R0);
        b.ja(l).ja32(l);
        b.jeq(R0, k, l)
            .jeq(R0, r, l)
            .jgt(R0, k, l)
            .jgt(R0, r, l)
            .jge(R0, k, l)
            .jge(R0, r, l);
        b.jset(R0, k, l).jset(R0, r, l).jne(R0, k, l).jne(R0, r, l);
        b.jsgt(R0, k, l)
            .jsgt(R0, r, l)
            .jsge(R0, k, l)
            .jsge(R0, r, l);
        b.jlt(R0, k, l).jlt(R0, r, l).jle(R0, k, l).jle(R0, r, l);
        b.jslt(R0, k, l)
            .jslt(R0, r, l)
            .jsle(R0, k, l)
            .jsle(R0, r, l);
        b.jeq32(R0, k, l)
            .jeq32(R0, r, l)
            .jgt32(R0, k, l)
            .jgt32(R0, r, l);
        b.jge32(R0, k, l)
            .jge32(R0, r, l)
            .jset32(R0, k, l)
            .jset32(R0, r, l);
        b.jne32(R0, k, l)
            .jne32(R0, r, l)
            .jsgt32(R0, k, l)
            .jsgt32(R0, r, l);
        b.jsge32(R0, k, l)
            .jsge32(R0, r, l)
            .jlt32(R0, k, l)
            .jlt32(R0, r, l);
        b.jle32(R0, k, l)
            .jle32(R0, r, l)
            .jslt32(R0, k, l)
            .jslt32(R0, r, l);
        b.jsle32(R0, k, l).jsle32(R0, r, l);
        b.call_helper(1)
            .call_local(l)
            .call_kfunc(1)
            .callx(R1)
            .exit();
        for kind in Imm64Kind::ALL.into_iter().skip(1) {
            b.lddw_kind(R0, kind, 1);
        }
        b.lddw(R0, 1);
        b.ldxb(R0, r, 0)
            .ldxh(R0, r, 0)
            .ldxw(R0, r, 0)
            .ldxdw(R0, r, 0);
        b.ldxsb(R0, r, 0).ldxsh(R0, r, 0).ldxsw(R0, r, 0);
        b.stb(R10, 0, k)
            .sth(R10, 0, k)
            .stw(R10, 0, k)
            .stdw(R10, 0, k);
        b.stxb(R10, 0, r)
            .stxh(R10, 0, r)
            .stxw(R10, 0, r)
            .stxdw(R10, 0, r);
        b.atomic_add64(R10, 0, r)
            .atomic_or64(R10, 0, r)
            .atomic_and64(R10, 0, r);
        b.atomic_xor64(R10, 0, r)
            .atomic_fetch_add64(R10, 0, r)
            .atomic_fetch_or64(R10, 0, r);
        b.atomic_fetch_and64(R10, 0, r)
            .atomic_fetch_xor64(R10, 0, r);
        b.atomic_xchg64(R10, 0, r).atomic_cmpxchg64(R10, 0, r);
        b.atomic_add32(R10, 0, r)
            .atomic_or32(R10, 0, r)
            .atomic_and32(R10, 0, r);
        b.atomic_xor32(R10, 0, r)
            .atomic_fetch_add32(R10, 0, r)
            .atomic_fetch_or32(R10, 0, r);
        b.atomic_fetch_and32(R10, 0, r)
            .atomic_fetch_xor32(R10, 0, r);
        b.atomic_xchg32(R10, 0, r).atomic_cmpxchg32(R10, 0, r);
        b.ldabsb(0)
            .ldabsh(0)
            .ldabsw(0)
            .ldindb(r, 0)
            .ldindh(r, 0)
            .ldindw(r, 0);

        let p = b.build().unwrap();
        for spec in &SPECS {
            assert!(
                p.insns().iter().any(|i| Form::of(i) == spec.form),
                "no method makes {:?}",
                spec.form
            );
        }
        assert_eq!(p.len(), SPECS.len());
        assert_eq!(decode(&p.to_bytes()).unwrap(), p);
    }
}
