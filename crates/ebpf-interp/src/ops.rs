//! The interpreter's internal form: one small [`Op`] per slot, built once by [`predecode`].
//!
//! Everything that can be decided before running is decided here: which operation (one enum
//! variant per hot operation, so the dispatch loop needs a single `match`), absolute branch
//! targets, instructions that can only trap (a jump outside the program, a pseudo `lddw`),
//! which become [`Op::Invalid`], and the length of the straight-line run from each slot
//! ([`run_lengths`]), which the dispatch loop charges to the budget at each control transfer.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::InvalidReason;
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Program,
    SignExtend, Size, SwapWidth, Width,
};

/// A branch target that is outside the program: taking it traps.
pub(crate) const BAD_TARGET: u32 = u32::MAX;

/// One pre-decoded operation. Registers are numbers 0..=10; targets are absolute pcs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add64Imm {
        dst: u8,
        imm: i32,
    },
    Add64Reg {
        dst: u8,
        src: u8,
    },
    Sub64Imm {
        dst: u8,
        imm: i32,
    },
    Sub64Reg {
        dst: u8,
        src: u8,
    },
    Mul64Imm {
        dst: u8,
        imm: i32,
    },
    Mul64Reg {
        dst: u8,
        src: u8,
    },
    Div64Imm {
        dst: u8,
        imm: i32,
    },
    Div64Reg {
        dst: u8,
        src: u8,
    },
    Sdiv64Imm {
        dst: u8,
        imm: i32,
    },
    Sdiv64Reg {
        dst: u8,
        src: u8,
    },
    Or64Imm {
        dst: u8,
        imm: i32,
    },
    Or64Reg {
        dst: u8,
        src: u8,
    },
    And64Imm {
        dst: u8,
        imm: i32,
    },
    And64Reg {
        dst: u8,
        src: u8,
    },
    Lsh64Imm {
        dst: u8,
        imm: i32,
    },
    Lsh64Reg {
        dst: u8,
        src: u8,
    },
    Rsh64Imm {
        dst: u8,
        imm: i32,
    },
    Rsh64Reg {
        dst: u8,
        src: u8,
    },
    Mod64Imm {
        dst: u8,
        imm: i32,
    },
    Mod64Reg {
        dst: u8,
        src: u8,
    },
    Smod64Imm {
        dst: u8,
        imm: i32,
    },
    Smod64Reg {
        dst: u8,
        src: u8,
    },
    Xor64Imm {
        dst: u8,
        imm: i32,
    },
    Xor64Reg {
        dst: u8,
        src: u8,
    },
    Mov64Imm {
        dst: u8,
        imm: i32,
    },
    Mov64Reg {
        dst: u8,
        src: u8,
    },
    Arsh64Imm {
        dst: u8,
        imm: i32,
    },
    Arsh64Reg {
        dst: u8,
        src: u8,
    },
    Add32Imm {
        dst: u8,
        imm: i32,
    },
    Add32Reg {
        dst: u8,
        src: u8,
    },
    Sub32Imm {
        dst: u8,
        imm: i32,
    },
    Sub32Reg {
        dst: u8,
        src: u8,
    },
    Mul32Imm {
        dst: u8,
        imm: i32,
    },
    Mul32Reg {
        dst: u8,
        src: u8,
    },
    Div32Imm {
        dst: u8,
        imm: i32,
    },
    Div32Reg {
        dst: u8,
        src: u8,
    },
    Sdiv32Imm {
        dst: u8,
        imm: i32,
    },
    Sdiv32Reg {
        dst: u8,
        src: u8,
    },
    Or32Imm {
        dst: u8,
        imm: i32,
    },
    Or32Reg {
        dst: u8,
        src: u8,
    },
    And32Imm {
        dst: u8,
        imm: i32,
    },
    And32Reg {
        dst: u8,
        src: u8,
    },
    Lsh32Imm {
        dst: u8,
        imm: i32,
    },
    Lsh32Reg {
        dst: u8,
        src: u8,
    },
    Rsh32Imm {
        dst: u8,
        imm: i32,
    },
    Rsh32Reg {
        dst: u8,
        src: u8,
    },
    Mod32Imm {
        dst: u8,
        imm: i32,
    },
    Mod32Reg {
        dst: u8,
        src: u8,
    },
    Smod32Imm {
        dst: u8,
        imm: i32,
    },
    Smod32Reg {
        dst: u8,
        src: u8,
    },
    Xor32Imm {
        dst: u8,
        imm: i32,
    },
    Xor32Reg {
        dst: u8,
        src: u8,
    },
    Mov32Imm {
        dst: u8,
        imm: i32,
    },
    Mov32Reg {
        dst: u8,
        src: u8,
    },
    Arsh32Imm {
        dst: u8,
        imm: i32,
    },
    Arsh32Reg {
        dst: u8,
        src: u8,
    },
    Neg {
        dst: u8,
        wide: bool,
    },
    MovSx {
        dst: u8,
        src: u8,
        wide: bool,
        from: SignExtend,
    },
    // Byte order, one variant per conversion (`bswap` is `be` on a little-endian VM).
    Le16 {
        dst: u8,
    },
    Le32 {
        dst: u8,
    },
    Le64 {
        dst: u8,
    },
    Be16 {
        dst: u8,
    },
    Be32 {
        dst: u8,
    },
    Be64 {
        dst: u8,
    },

    Ja {
        target: u32,
    },
    // Conditional jumps, one variant per condition, width and operand kind, so that the
    // dispatch loop never matches a second time on the condition.
    Jeq64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jeq64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jgt64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jgt64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jge64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jge64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jset64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jset64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jne64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jne64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsgt64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsgt64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsge64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsge64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jlt64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jlt64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jle64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jle64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jslt64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jslt64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsle64Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsle64Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jeq32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jeq32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jgt32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jgt32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jge32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jge32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jset32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jset32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jne32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jne32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsgt32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsgt32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsge32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsge32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jlt32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jlt32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jle32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jle32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jslt32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jslt32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },
    Jsle32Imm {
        dst: u8,
        imm: i32,
        target: u32,
    },
    Jsle32Reg {
        dst: u8,
        src: u8,
        target: u32,
    },

    LoadImm64 {
        dst: u8,
        index: u32,
    },
    Ldxb {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxh {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxw {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxdw {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxsb {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxsh {
        dst: u8,
        src: u8,
        off: i16,
    },
    Ldxsw {
        dst: u8,
        src: u8,
        off: i16,
    },
    Stb {
        dst: u8,
        off: i16,
        imm: i32,
    },
    Sth {
        dst: u8,
        off: i16,
        imm: i32,
    },
    Stw {
        dst: u8,
        off: i16,
        imm: i32,
    },
    Stdw {
        dst: u8,
        off: i16,
        imm: i32,
    },
    Stxb {
        dst: u8,
        src: u8,
        off: i16,
    },
    Stxh {
        dst: u8,
        src: u8,
        off: i16,
    },
    Stxw {
        dst: u8,
        src: u8,
        off: i16,
    },
    Stxdw {
        dst: u8,
        src: u8,
        off: i16,
    },
    Atomic {
        dst: u8,
        src: u8,
        off: i16,
        wide: bool,
        op: AtomicOp,
    },
    LoadPacket {
        size: u8,
        indirect: bool,
        src: u8,
        imm: i32,
    },

    CallHelper {
        id: u32,
    },
    CallX {
        reg: u8,
    },
    CallLocal {
        target: u32,
    },
    Exit,
    /// Cannot execute: traps with this reason when reached.
    Invalid {
        reason: InvalidReason,
    },
}

fn alu_op(width: Width, op: AluOp, dst: u8, src: Operand) -> Op {
    use Op::*;
    macro_rules! pick {
        ($($aluop:ident => $i64:ident $r64:ident $i32:ident $r32:ident),* $(,)?) => {
            match (op, width, src) {
                $(
                    (AluOp::$aluop, Width::W64, Operand::Imm(imm)) => $i64 { dst, imm },
                    (AluOp::$aluop, Width::W64, Operand::Reg(r)) => $r64 { dst, src: r.index() },
                    (AluOp::$aluop, Width::W32, Operand::Imm(imm)) => $i32 { dst, imm },
                    (AluOp::$aluop, Width::W32, Operand::Reg(r)) => $r32 { dst, src: r.index() },
                )*
            }
        };
    }
    pick! {
        Add => Add64Imm Add64Reg Add32Imm Add32Reg,
        Sub => Sub64Imm Sub64Reg Sub32Imm Sub32Reg,
        Mul => Mul64Imm Mul64Reg Mul32Imm Mul32Reg,
        Div => Div64Imm Div64Reg Div32Imm Div32Reg,
        Sdiv => Sdiv64Imm Sdiv64Reg Sdiv32Imm Sdiv32Reg,
        Or => Or64Imm Or64Reg Or32Imm Or32Reg,
        And => And64Imm And64Reg And32Imm And32Reg,
        Lsh => Lsh64Imm Lsh64Reg Lsh32Imm Lsh32Reg,
        Rsh => Rsh64Imm Rsh64Reg Rsh32Imm Rsh32Reg,
        Mod => Mod64Imm Mod64Reg Mod32Imm Mod32Reg,
        Smod => Smod64Imm Smod64Reg Smod32Imm Smod32Reg,
        Xor => Xor64Imm Xor64Reg Xor32Imm Xor32Reg,
        Mov => Mov64Imm Mov64Reg Mov32Imm Mov32Reg,
        Arsh => Arsh64Imm Arsh64Reg Arsh32Imm Arsh32Reg,
    }
}

fn jump_op(width: Width, cond: Cond, dst: u8, src: Operand, target: u32) -> Op {
    use Op::*;
    macro_rules! pick {
        ($($cond:ident => $i64:ident $r64:ident $i32:ident $r32:ident),* $(,)?) => {
            match (cond, width, src) {
                $(
                    (Cond::$cond, Width::W64, Operand::Imm(imm)) => $i64 { dst, imm, target },
                    (Cond::$cond, Width::W64, Operand::Reg(r)) => $r64 { dst, src: r.index(), target },
                    (Cond::$cond, Width::W32, Operand::Imm(imm)) => $i32 { dst, imm, target },
                    (Cond::$cond, Width::W32, Operand::Reg(r)) => $r32 { dst, src: r.index(), target },
                )*
            }
        };
    }
    pick! {
        Eq => Jeq64Imm Jeq64Reg Jeq32Imm Jeq32Reg,
        Gt => Jgt64Imm Jgt64Reg Jgt32Imm Jgt32Reg,
        Ge => Jge64Imm Jge64Reg Jge32Imm Jge32Reg,
        Set => Jset64Imm Jset64Reg Jset32Imm Jset32Reg,
        Ne => Jne64Imm Jne64Reg Jne32Imm Jne32Reg,
        Sgt => Jsgt64Imm Jsgt64Reg Jsgt32Imm Jsgt32Reg,
        Sge => Jsge64Imm Jsge64Reg Jsge32Imm Jsge32Reg,
        Lt => Jlt64Imm Jlt64Reg Jlt32Imm Jlt32Reg,
        Le => Jle64Imm Jle64Reg Jle32Imm Jle32Reg,
        Slt => Jslt64Imm Jslt64Reg Jslt32Imm Jslt32Reg,
        Sle => Jsle64Imm Jsle64Reg Jsle32Imm Jsle32Reg,
    }
}

/// Builds the operation array (one per slot plus a final sentinel) and the `lddw` constants.
pub(crate) fn predecode(program: &Program) -> (Vec<Op>, Vec<u64>) {
    let len = program.slot_count();
    // Slots not overwritten below are second halves of lddw.
    let mut ops = vec![
        Op::Invalid {
            reason: InvalidReason::LddwTail
        };
        len + 1
    ];
    let mut imm64 = Vec::new();
    let target = |t: Option<usize>| -> u32 {
        match t {
            Some(t) if t < len => u32::try_from(t).unwrap_or(BAD_TARGET),
            _ => BAD_TARGET,
        }
    };
    for (pc, insn) in program.iter() {
        let op = match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => alu_op(width, op, dst.index(), src),
            Insn::Neg { width, dst } => Op::Neg {
                dst: dst.index(),
                wide: width == Width::W64,
            },
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => Op::MovSx {
                dst: dst.index(),
                src: src.index(),
                wide: width == Width::W64,
                from,
            },
            Insn::Endian { order, width, dst } => {
                let dst = dst.index();
                match (order, width) {
                    (ByteOrder::Le, SwapWidth::W16) => Op::Le16 { dst },
                    (ByteOrder::Le, SwapWidth::W32) => Op::Le32 { dst },
                    (ByteOrder::Le, SwapWidth::W64) => Op::Le64 { dst },
                    (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W16) => Op::Be16 { dst },
                    (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W32) => Op::Be32 { dst },
                    (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W64) => Op::Be64 { dst },
                }
            }
            Insn::Ja { .. } | Insn::Ja32 { .. } => match target(insn.jump_target(pc)) {
                BAD_TARGET => Op::Invalid {
                    reason: InvalidReason::TargetOutOfRange,
                },
                t => Op::Ja { target: t },
            },
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                ..
            } => jump_op(width, cond, dst.index(), src, target(insn.jump_target(pc))),
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => Op::CallHelper { id: imm as u32 },
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => match target(insn.call_target(pc)) {
                BAD_TARGET => Op::Invalid {
                    reason: InvalidReason::TargetOutOfRange,
                },
                t => Op::CallLocal { target: t },
            },
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } => Op::Invalid {
                reason: InvalidReason::UnsupportedCall,
            },
            Insn::CallX { reg } => Op::CallX { reg: reg.index() },
            Insn::Exit => Op::Exit,
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm,
            } => {
                let index = u32::try_from(imm64.len()).unwrap_or(u32::MAX);
                imm64.push(imm);
                Op::LoadImm64 {
                    dst: dst.index(),
                    index,
                }
            }
            Insn::LoadImm64 { .. } => Op::Invalid {
                reason: InvalidReason::UnsupportedLddw,
            },
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let (dst, src) = (dst.index(), src.index());
                match (size, signed) {
                    (Size::B, false) => Op::Ldxb { dst, src, off },
                    (Size::H, false) => Op::Ldxh { dst, src, off },
                    (Size::W, false) => Op::Ldxw { dst, src, off },
                    (Size::DW, _) => Op::Ldxdw { dst, src, off },
                    (Size::B, true) => Op::Ldxsb { dst, src, off },
                    (Size::H, true) => Op::Ldxsh { dst, src, off },
                    (Size::W, true) => Op::Ldxsw { dst, src, off },
                }
            }
            Insn::Store {
                size,
                dst,
                off,
                src: Operand::Imm(imm),
            } => {
                let dst = dst.index();
                match size {
                    Size::B => Op::Stb { dst, off, imm },
                    Size::H => Op::Sth { dst, off, imm },
                    Size::W => Op::Stw { dst, off, imm },
                    Size::DW => Op::Stdw { dst, off, imm },
                }
            }
            Insn::Store {
                size,
                dst,
                off,
                src: Operand::Reg(src),
            } => {
                let (dst, src) = (dst.index(), src.index());
                match size {
                    Size::B => Op::Stxb { dst, src, off },
                    Size::H => Op::Stxh { dst, src, off },
                    Size::W => Op::Stxw { dst, src, off },
                    Size::DW => Op::Stxdw { dst, src, off },
                }
            }
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => Op::Atomic {
                dst: dst.index(),
                src: src.index(),
                off,
                wide: width == Width::W64,
                op,
            },
            Insn::LoadPacket { size, addr, imm } => {
                let (indirect, src) = match addr {
                    PacketAddr::Abs => (false, 0),
                    PacketAddr::Ind(r) => (true, r.index()),
                };
                Op::LoadPacket {
                    size: size.bytes() as u8,
                    indirect,
                    src,
                    imm,
                }
            }
        };
        if let Some(slot) = ops.get_mut(pc) {
            *slot = op;
        }
    }
    if let Some(last) = ops.last_mut() {
        *last = Op::Invalid {
            reason: InvalidReason::FellOffEnd,
        };
    }
    (ops, imm64)
}

impl Op {
    /// Whether the operation ends a straight-line run: it transfers control (jumps, taken or
    /// not, calls and exits) or cannot execute at all.
    fn ends_run(&self) -> bool {
        use Op::*;
        matches!(
            self,
            Ja { .. }
                | Jeq64Imm { .. }
                | Jeq64Reg { .. }
                | Jgt64Imm { .. }
                | Jgt64Reg { .. }
                | Jge64Imm { .. }
                | Jge64Reg { .. }
                | Jset64Imm { .. }
                | Jset64Reg { .. }
                | Jne64Imm { .. }
                | Jne64Reg { .. }
                | Jsgt64Imm { .. }
                | Jsgt64Reg { .. }
                | Jsge64Imm { .. }
                | Jsge64Reg { .. }
                | Jlt64Imm { .. }
                | Jlt64Reg { .. }
                | Jle64Imm { .. }
                | Jle64Reg { .. }
                | Jslt64Imm { .. }
                | Jslt64Reg { .. }
                | Jsle64Imm { .. }
                | Jsle64Reg { .. }
                | Jeq32Imm { .. }
                | Jeq32Reg { .. }
                | Jgt32Imm { .. }
                | Jgt32Reg { .. }
                | Jge32Imm { .. }
                | Jge32Reg { .. }
                | Jset32Imm { .. }
                | Jset32Reg { .. }
                | Jne32Imm { .. }
                | Jne32Reg { .. }
                | Jsgt32Imm { .. }
                | Jsgt32Reg { .. }
                | Jsge32Imm { .. }
                | Jsge32Reg { .. }
                | Jlt32Imm { .. }
                | Jlt32Reg { .. }
                | Jle32Imm { .. }
                | Jle32Reg { .. }
                | Jslt32Imm { .. }
                | Jslt32Reg { .. }
                | Jsle32Imm { .. }
                | Jsle32Reg { .. }
                | CallLocal { .. }
                | Exit
                | Invalid { .. }
        )
    }
}

/// For each slot of `ops`, the number of operations executed from there up to and including
/// the first one that [ends the run](Op::ends_run), following `lddw`'s two slots.
///
/// The dispatch loop charges this to the budget when control arrives at a slot by a transfer;
/// since nothing leaves a run before its end except a trap, the charges add up to exactly the
/// instructions executed. The last op is the sentinel, an `Invalid`, so every run ends.
pub(crate) fn run_lengths(ops: &[Op]) -> Vec<u64> {
    let mut costs = vec![1u64; ops.len()];
    for pc in (0..ops.len()).rev() {
        let op = ops[pc];
        if op.ends_run() {
            continue;
        }
        let next = pc
            + if matches!(op, Op::LoadImm64 { .. }) {
                2
            } else {
                1
            };
        costs[pc] = costs.get(next).map_or(1, |c| c + 1);
    }
    costs
}
