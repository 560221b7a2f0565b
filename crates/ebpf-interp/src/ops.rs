//! The interpreter's internal form: one small [`Op`] per slot, built once by [`predecode`].
//!
//! Everything that can be decided before running is decided here: which operation (one enum
//! variant per hot operation, so the dispatch loop needs a single `match`), absolute branch
//! targets and the instructions that can only trap (both from the contract's
//! [`ProgramView`]; the latter become [`Op::Invalid`]), and the length of the straight-line run
//! from each slot ([`run_lengths`]), which the dispatch loop charges to the budget at each
//! control transfer.
//!
//! The 100 variants of the ALU and conditional-jump families are written once, in
//! [`for_each_op!`]'s table: the enum, the predecoder's choice of variant, [`Op::ends_run`]
//! and the dispatch loop's arms are all generated from it, so they cannot disagree (a new row
//! is a new variant everywhere at once). The other variants are matched exhaustively wherever
//! they are used, with no wildcard, so a new one cannot be forgotten either.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::{Flow, InvalidReason, ProgramView, Target};
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Program,
    SignExtend, Size, SwapWidth, Width,
};

/// A branch target that is outside the program: taking it traps.
pub(crate) const BAD_TARGET: u32 = u32::MAX;

/// The table of the operation families that differ only in their arithmetic: for each ALU
/// operation (an [`AluOp`]) and each condition (a [`Cond`]), the variants for a 64-bit
/// immediate, a 64-bit register, a 32-bit immediate and a 32-bit register operand.
///
/// `for_each_op!(m)` invokes `m! { alu { .. } jump { .. } }` with the rows; the macro `m`
/// generates what it needs from them.
macro_rules! for_each_op {
    ($m:ident) => {
        $m! {
            alu {
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
            jump {
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
    };
}
pub(crate) use for_each_op;

/// The enum, the choice of variant for an ALU operation or conditional jump, and
/// [`Op::ends_run`], from the table.
macro_rules! define_ops {
    (
        alu { $($aop:ident => $ai64:ident $ar64:ident $ai32:ident $ar32:ident,)* }
        jump { $($cond:ident => $ji64:ident $jr64:ident $ji32:ident $jr32:ident,)* }
    ) => {
        /// One pre-decoded operation. Registers are numbers 0..=10; targets are absolute pcs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Op {
            $( $ai64 { dst: u8, imm: i32 }, $ar64 { dst: u8, src: u8 }, )*
            $( $ai32 { dst: u8, imm: i32 }, $ar32 { dst: u8, src: u8 }, )*
            Neg { dst: u8, wide: bool },
            MovSx { dst: u8, src: u8, wide: bool, from: SignExtend },
            // Byte order, one variant per conversion (`bswap` is `be` on a little-endian VM).
            Le16 { dst: u8 },
            Le32 { dst: u8 },
            Le64 { dst: u8 },
            Be16 { dst: u8 },
            Be32 { dst: u8 },
            Be64 { dst: u8 },

            Ja { target: u32 },
            // Conditional jumps, one variant per condition, width and operand kind, so that
            // the dispatch loop never matches a second time on the condition.
            $(
                $ji64 { dst: u8, imm: i32, target: u32 },
                $jr64 { dst: u8, src: u8, target: u32 },
            )*
            $(
                $ji32 { dst: u8, imm: i32, target: u32 },
                $jr32 { dst: u8, src: u8, target: u32 },
            )*

            LoadImm64 { dst: u8, index: u32 },
            Ldxb { dst: u8, src: u8, off: i16 },
            Ldxh { dst: u8, src: u8, off: i16 },
            Ldxw { dst: u8, src: u8, off: i16 },
            Ldxdw { dst: u8, src: u8, off: i16 },
            Ldxsb { dst: u8, src: u8, off: i16 },
            Ldxsh { dst: u8, src: u8, off: i16 },
            Ldxsw { dst: u8, src: u8, off: i16 },
            Stb { dst: u8, off: i16, imm: i32 },
            Sth { dst: u8, off: i16, imm: i32 },
            Stw { dst: u8, off: i16, imm: i32 },
            Stdw { dst: u8, off: i16, imm: i32 },
            Stxb { dst: u8, src: u8, off: i16 },
            Stxh { dst: u8, src: u8, off: i16 },
            Stxw { dst: u8, src: u8, off: i16 },
            Stxdw { dst: u8, src: u8, off: i16 },
            Atomic { dst: u8, src: u8, off: i16, wide: bool, op: AtomicOp },
            LoadPacket { size: u8, indirect: bool, src: u8, imm: i32 },

            CallHelper { id: u32 },
            CallX { reg: u8 },
            CallLocal { target: u32 },
            Exit,
            /// Cannot execute: traps with this reason when reached.
            Invalid { reason: InvalidReason },
        }

        fn alu_op(width: Width, op: AluOp, dst: u8, src: Operand) -> Op {
            match (op, width, src) {
                $(
                    (AluOp::$aop, Width::W64, Operand::Imm(imm)) => Op::$ai64 { dst, imm },
                    (AluOp::$aop, Width::W64, Operand::Reg(r)) => Op::$ar64 { dst, src: r.index() },
                    (AluOp::$aop, Width::W32, Operand::Imm(imm)) => Op::$ai32 { dst, imm },
                    (AluOp::$aop, Width::W32, Operand::Reg(r)) => Op::$ar32 { dst, src: r.index() },
                )*
            }
        }

        fn jump_op(width: Width, cond: Cond, dst: u8, src: Operand, target: u32) -> Op {
            match (cond, width, src) {
                $(
                    (Cond::$cond, Width::W64, Operand::Imm(imm)) => Op::$ji64 { dst, imm, target },
                    (Cond::$cond, Width::W64, Operand::Reg(r)) => {
                        Op::$jr64 { dst, src: r.index(), target }
                    }
                    (Cond::$cond, Width::W32, Operand::Imm(imm)) => Op::$ji32 { dst, imm, target },
                    (Cond::$cond, Width::W32, Operand::Reg(r)) => {
                        Op::$jr32 { dst, src: r.index(), target }
                    }
                )*
            }
        }

        impl Op {
            /// Whether the operation ends a straight-line run: it transfers control (jumps,
            /// taken or not, local calls and exits) or cannot execute at all. Helper calls do
            /// not end a run: control comes back to the next operation.
            pub(crate) fn ends_run(&self) -> bool {
                match self {
                    $( Op::$ai64 { .. } | Op::$ar64 { .. } | Op::$ai32 { .. } | Op::$ar32 { .. } )|* => false,
                    $( Op::$ji64 { .. } | Op::$jr64 { .. } | Op::$ji32 { .. } | Op::$jr32 { .. } )|* => true,
                    Op::Neg { .. }
                    | Op::MovSx { .. }
                    | Op::Le16 { .. }
                    | Op::Le32 { .. }
                    | Op::Le64 { .. }
                    | Op::Be16 { .. }
                    | Op::Be32 { .. }
                    | Op::Be64 { .. }
                    | Op::LoadImm64 { .. }
                    | Op::Ldxb { .. }
                    | Op::Ldxh { .. }
                    | Op::Ldxw { .. }
                    | Op::Ldxdw { .. }
                    | Op::Ldxsb { .. }
                    | Op::Ldxsh { .. }
                    | Op::Ldxsw { .. }
                    | Op::Stb { .. }
                    | Op::Sth { .. }
                    | Op::Stw { .. }
                    | Op::Stdw { .. }
                    | Op::Stxb { .. }
                    | Op::Stxh { .. }
                    | Op::Stxw { .. }
                    | Op::Stxdw { .. }
                    | Op::Atomic { .. }
                    | Op::LoadPacket { .. }
                    | Op::CallHelper { .. }
                    | Op::CallX { .. } => false,
                    Op::Ja { .. } | Op::CallLocal { .. } | Op::Exit | Op::Invalid { .. } => true,
                }
            }
        }
    };
}
for_each_op!(define_ops);

/// Builds the operation array (one per slot plus a final sentinel) and the `lddw` constants.
/// Control flow — targets, and what can only trap — comes from `view`.
pub(crate) fn predecode(program: &Program, view: &ProgramView) -> (Vec<Op>, Vec<u64>) {
    let len = program.slot_count();
    // Slots not overwritten below are second halves of lddw.
    let mut ops = vec![
        Op::Invalid {
            reason: InvalidReason::LddwTail
        };
        len + 1
    ];
    let mut imm64 = Vec::new();
    // The slot a transfer to `t` lands on: an instruction's, or the second slot of an `lddw`
    // (whose op traps there); any other trap is `BAD_TARGET`, which traps at the transfer.
    let slot_of = |t: Target| -> u32 {
        let slot = match t {
            Target::Insn(i) => view.pcs().get(i).copied(),
            Target::Trap {
                pc,
                reason: InvalidReason::LddwTail,
            } => Some(pc),
            Target::Trap { .. } => None,
        };
        slot.and_then(|s| u32::try_from(s).ok())
            .unwrap_or(BAD_TARGET)
    };
    for ((pc, insn), &flow) in program.iter().zip(view.flows()) {
        let op = match (flow, *insn) {
            (Flow::Invalid(reason), _) => Op::Invalid { reason },
            (Flow::Jump(t), _) => Op::Ja { target: slot_of(t) },
            (
                Flow::Branch(t),
                Insn::Jump {
                    width,
                    cond,
                    dst,
                    src,
                    ..
                },
            ) => jump_op(width, cond, dst.index(), src, slot_of(t)),
            (Flow::Call(t), _) => Op::CallLocal { target: slot_of(t) },
            (Flow::Exit, _) => Op::Exit,
            (
                _,
                Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                },
            ) => alu_op(width, op, dst.index(), src),
            (_, Insn::Neg { width, dst }) => Op::Neg {
                dst: dst.index(),
                wide: width == Width::W64,
            },
            (
                _,
                Insn::MovSx {
                    width,
                    from,
                    dst,
                    src,
                },
            ) => Op::MovSx {
                dst: dst.index(),
                src: src.index(),
                wide: width == Width::W64,
                from,
            },
            (_, Insn::Endian { order, width, dst }) => {
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
            (
                _,
                Insn::Call {
                    kind: CallKind::Helper,
                    imm,
                },
            ) => Op::CallHelper { id: imm as u32 },
            (_, Insn::CallX { reg }) => Op::CallX { reg: reg.index() },
            (
                _,
                Insn::LoadImm64 {
                    dst,
                    kind: Imm64Kind::Value,
                    imm,
                },
            ) => {
                let index = u32::try_from(imm64.len()).unwrap_or(u32::MAX);
                imm64.push(imm);
                Op::LoadImm64 {
                    dst: dst.index(),
                    index,
                }
            }
            (
                _,
                Insn::Load {
                    size,
                    signed,
                    dst,
                    src,
                    off,
                },
            ) => {
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
            (
                _,
                Insn::Store {
                    size,
                    dst,
                    off,
                    src: Operand::Imm(imm),
                },
            ) => {
                let dst = dst.index();
                match size {
                    Size::B => Op::Stb { dst, off, imm },
                    Size::H => Op::Sth { dst, off, imm },
                    Size::W => Op::Stw { dst, off, imm },
                    Size::DW => Op::Stdw { dst, off, imm },
                }
            }
            (
                _,
                Insn::Store {
                    size,
                    dst,
                    off,
                    src: Operand::Reg(src),
                },
            ) => {
                let (dst, src) = (dst.index(), src.index());
                match size {
                    Size::B => Op::Stxb { dst, src, off },
                    Size::H => Op::Stxh { dst, src, off },
                    Size::W => Op::Stxw { dst, src, off },
                    Size::DW => Op::Stxdw { dst, src, off },
                }
            }
            (
                _,
                Insn::Atomic {
                    width,
                    op,
                    dst,
                    src,
                    off,
                },
            ) => Op::Atomic {
                dst: dst.index(),
                src: src.index(),
                off,
                wide: width == Width::W64,
                op,
            },
            (_, Insn::LoadPacket { size, addr, imm }) => {
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
            // The view gives every jump, local or BTF call, `exit` and pseudo `lddw` one of
            // the flows above; none reaches here.
            (
                _,
                Insn::Ja { .. }
                | Insn::Ja32 { .. }
                | Insn::Jump { .. }
                | Insn::Call { .. }
                | Insn::Exit
                | Insn::LoadImm64 { .. },
            ) => Op::Invalid {
                reason: InvalidReason::Undecodable,
            },
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
