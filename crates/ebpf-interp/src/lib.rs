//! `ebpf-interp`: the reference interpreter — what every eBPF program means.
//!
//! What it is for: running any decoded program, verified or not, with exactly the semantics of
//! RFC 9669 and of the runtime contract in `ebpf-abi`: checked memory accesses, local calls
//! with their own frames, helpers, an exact instruction budget. Every other engine is tested
//! against it, so when it and a JIT disagree, it is right by definition (and a bug here is a
//! bug in the contract).
//!
//! What it is not for: deciding whether a program is acceptable (that is `ebpf-verifier`) or
//! setting up memory regions and entry registers (that is the `ebpf-vm` facade).
//!
//! The program is pre-decoded once ([`Interpreter::new`]) into a flat array of small
//! operations, one per slot, with branch targets resolved and one variant per operation
//! (condition and byte order included); the dispatch loop then does one `match` per
//! instruction and no decoding. The budget is charged one straight-line run at a time, at
//! control transfers, not per instruction; a run that does not fit in what is left is executed
//! by a second, precise loop that charges each instruction, so counts and traps stay exact.
//! It is `#![no_std]` and contains no `unsafe`.
//!
//! ```
//! use ebpf_abi::{Helpers, Limits, MemoryMap};
//! use ebpf_interp::Interpreter;
//!
//! let program = ebpf_isa::assemble("mov %r0, 6\nmul %r0, 7\nexit").unwrap();
//! let interp = Interpreter::new(&program);
//! let exit = interp.run(MemoryMap::new(), [0, 0], &Helpers::new(), &Limits::default()).unwrap();
//! assert_eq!(exit.r0, 42);
//! assert_eq!(exit.instructions, 3);
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod ops;
pub use ebpf_abi::semantics;

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::{Exit, Helpers, InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_isa::{AluOp, ByteOrder, Cond, Program, SwapWidth};

use ops::Op;
use semantics::{alu32, alu64, cond32, cond64, endian};

/// A pre-decoded program, ready to run any number of times, from any number of threads.
#[derive(Clone, Debug)]
pub struct Interpreter {
    /// One operation per slot, then a sentinel that reports falling off the end.
    ops: Vec<Op>,
    /// The 64-bit immediates of `lddw`, indexed by `Op::LoadImm64::index`.
    imm64: Vec<u64>,
    /// For each slot (and the sentinel), how many operations run from there up to and
    /// including the next control transfer: what entering the slot by a jump charges to the
    /// budget (see [`ops::run_lengths`]).
    costs: Vec<u64>,
    /// Number of slots of the program.
    len: usize,
}

/// What the dispatch loop would run at a pc outside the program (it never gets one).
const OUT_OF_RANGE: Op = Op::Invalid {
    reason: InvalidReason::FellOffEnd,
};

/// A saved caller frame of a local call.
#[derive(Clone, Copy)]
struct Frame {
    return_pc: usize,
    saved: [u64; 4],
    frame_pointer: u64,
}

/// The state of a run, handed from the fast loop to the precise one.
struct Machine {
    regs: [u64; 16],
    frames: Vec<Frame>,
    /// The next instruction.
    pc: usize,
    /// Instructions the budget still allows (`u64::MAX` minus those executed, without one).
    remaining: u64,
}

impl Interpreter {
    /// Pre-decodes `program`. Never fails: what cannot execute (a jump outside the program, a
    /// pseudo `lddw`) becomes an operation that traps when reached.
    pub fn new(program: &Program) -> Interpreter {
        let (ops, imm64) = ops::predecode(program);
        let costs = ops::run_lengths(&ops);
        Interpreter {
            ops,
            imm64,
            costs,
            len: program.slot_count(),
        }
    }

    /// Number of slots of the program.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the program is empty (running it traps at pc 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs the program.
    ///
    /// `memory` holds every region the program may touch except the stack, which the run
    /// allocates itself (`limits.stack_size()` bytes, zeroed). `args` are `r1` and `r2`; `r10`
    /// is the top of the entry frame; every other register starts at 0.
    pub fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        self.run_charged(memory, args, helpers, limits, true)
    }

    /// [`Interpreter::run`], with or without the fast loop (`fast = false` charges every
    /// instruction from the start: the definition the fast loop is tested against).
    fn run_charged(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        fast: bool,
    ) -> Result<Exit, Trap> {
        let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
        let mut stack = vec![0u8; stack_size];
        let mut memory = memory;
        memory.insert(layout::STACK, Region::Writable(&mut stack));
        let mut regs = [0u64; 16];
        regs[1] = args[0];
        regs[2] = args[1];
        regs[10] = limits.frame_pointer(0);
        let budget = limits.budget.unwrap_or(u64::MAX);
        let mut machine = Machine {
            regs,
            frames: Vec::new(),
            pc: 0,
            remaining: budget,
        };
        // The fast loop charges the budget one straight-line run at a time; when a run does not
        // fit in what is left, the precise loop takes over at its first instruction and charges
        // instruction by instruction, so the trap comes at exactly the right pc.
        let entry = self.costs.first().copied().unwrap_or(1);
        if fast && entry <= machine.remaining {
            machine.remaining -= entry;
            let fast = self.execute::<false>(&mut machine, &mut memory, helpers, limits, budget);
            if let Some(result) = fast {
                return result;
            }
        }
        self.execute::<true>(&mut machine, &mut memory, helpers, limits, budget)
            .unwrap_or_else(|| invalid(machine.pc, InvalidReason::FellOffEnd))
    }

    /// The dispatch loop. With `PRECISE`, every instruction is charged to the budget before it
    /// runs. Without, nothing is charged per instruction: every control transfer (taken or not,
    /// calls and returns included) charges the whole straight-line run it enters, and returns
    /// `None` — with `machine` at the run's first instruction — when that run does not fit in
    /// the budget left. Either way `budget - remaining` is exactly the number of instructions
    /// executed whenever the program exits, because a run, once entered, executes to its end
    /// unless the program traps.
    #[inline(always)]
    fn execute<const PRECISE: bool>(
        &self,
        machine: &mut Machine,
        mem: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
    ) -> Option<Result<Exit, Trap>> {
        let ops = self.ops.as_slice();
        let costs = self.costs.as_slice();
        let Machine {
            regs,
            frames,
            pc: machine_pc,
            remaining: machine_remaining,
        } = machine;
        let mut pc = *machine_pc;
        let mut remaining = *machine_remaining;
        let trap = |pc: usize, kind: TrapKind| Some(Err(Trap { pc, kind }));

        /// Transfers control to `$target` (the jump at `$at` traps if it is outside the
        /// program) and, in the fast loop, charges the run that starts there.
        macro_rules! goto {
            ($target:expr, $at:expr) => {{
                let target: usize = $target;
                let Some(&cost) = costs.get(target) else {
                    return Some(invalid($at, InvalidReason::TargetOutOfRange));
                };
                pc = target;
                if !PRECISE {
                    if cost > remaining {
                        *machine_pc = pc;
                        *machine_remaining = remaining;
                        return None;
                    }
                    remaining -= cost;
                }
            }};
        }
        macro_rules! r {
            ($i:expr) => {
                regs[($i as usize) & 15]
            };
        }
        macro_rules! alu {
            ($f:ident, $op:expr, $dst:expr, $src:expr) => {{
                let d = ($dst as usize) & 15;
                regs[d] = $f($op, regs[d], $src);
            }};
        }
        macro_rules! jump {
            ($f:ident, $cond:expr, $a:expr, $b:expr, $target:expr) => {{
                // `pc` is already past the jump.
                if $f($cond, $a, $b) {
                    goto!($target as usize, pc - 1);
                } else {
                    goto!(pc, pc - 1);
                }
            }};
        }
        macro_rules! load {
            ($n:literal, $conv:ty, $ext:ty, $dst:expr, $base:expr, $off:expr, $at:expr) => {{
                let addr = r!($base).wrapping_add($off as i64 as u64);
                match mem.load::<$n>(addr) {
                    Some(b) => r!($dst) = <$conv>::from_le_bytes(b) as $ext as u64,
                    None => return Some(oob($at, addr, $n, false)),
                }
            }};
        }
        macro_rules! store {
            ($n:literal, $value:expr, $base:expr, $off:expr, $at:expr) => {{
                let addr = r!($base).wrapping_add($off as i64 as u64);
                if mem.store::<$n>(addr, $value).is_none() {
                    return Some(oob($at, addr, $n, true));
                }
            }};
        }

        loop {
            let at = pc;
            // `pc` is always in range: every transfer checks its target, and the last op is a
            // sentinel that reports falling off the end. (A select, not a branch, keeps the
            // dispatch one basic block.)
            let op = ops.get(pc).unwrap_or(&OUT_OF_RANGE);
            if PRECISE {
                if remaining == 0 {
                    // An operation that cannot execute traps as such, budget or not.
                    if let Op::Invalid { reason } = *op {
                        return Some(invalid(at, reason));
                    }
                    return trap(at, TrapKind::BudgetExhausted { budget });
                }
                remaining -= 1;
            }
            pc += 1;
            match *op {
                // ALU64, immediate (sign-extended) and register.
                Op::Add64Imm { dst, imm } => alu!(alu64, AluOp::Add, dst, imm as i64 as u64),
                Op::Add64Reg { dst, src } => alu!(alu64, AluOp::Add, dst, r!(src)),
                Op::Sub64Imm { dst, imm } => alu!(alu64, AluOp::Sub, dst, imm as i64 as u64),
                Op::Sub64Reg { dst, src } => alu!(alu64, AluOp::Sub, dst, r!(src)),
                Op::Mul64Imm { dst, imm } => alu!(alu64, AluOp::Mul, dst, imm as i64 as u64),
                Op::Mul64Reg { dst, src } => alu!(alu64, AluOp::Mul, dst, r!(src)),
                Op::Div64Imm { dst, imm } => alu!(alu64, AluOp::Div, dst, imm as i64 as u64),
                Op::Div64Reg { dst, src } => alu!(alu64, AluOp::Div, dst, r!(src)),
                Op::Sdiv64Imm { dst, imm } => alu!(alu64, AluOp::Sdiv, dst, imm as i64 as u64),
                Op::Sdiv64Reg { dst, src } => alu!(alu64, AluOp::Sdiv, dst, r!(src)),
                Op::Or64Imm { dst, imm } => alu!(alu64, AluOp::Or, dst, imm as i64 as u64),
                Op::Or64Reg { dst, src } => alu!(alu64, AluOp::Or, dst, r!(src)),
                Op::And64Imm { dst, imm } => alu!(alu64, AluOp::And, dst, imm as i64 as u64),
                Op::And64Reg { dst, src } => alu!(alu64, AluOp::And, dst, r!(src)),
                Op::Lsh64Imm { dst, imm } => alu!(alu64, AluOp::Lsh, dst, imm as i64 as u64),
                Op::Lsh64Reg { dst, src } => alu!(alu64, AluOp::Lsh, dst, r!(src)),
                Op::Rsh64Imm { dst, imm } => alu!(alu64, AluOp::Rsh, dst, imm as i64 as u64),
                Op::Rsh64Reg { dst, src } => alu!(alu64, AluOp::Rsh, dst, r!(src)),
                Op::Mod64Imm { dst, imm } => alu!(alu64, AluOp::Mod, dst, imm as i64 as u64),
                Op::Mod64Reg { dst, src } => alu!(alu64, AluOp::Mod, dst, r!(src)),
                Op::Smod64Imm { dst, imm } => alu!(alu64, AluOp::Smod, dst, imm as i64 as u64),
                Op::Smod64Reg { dst, src } => alu!(alu64, AluOp::Smod, dst, r!(src)),
                Op::Xor64Imm { dst, imm } => alu!(alu64, AluOp::Xor, dst, imm as i64 as u64),
                Op::Xor64Reg { dst, src } => alu!(alu64, AluOp::Xor, dst, r!(src)),
                Op::Mov64Imm { dst, imm } => r!(dst) = imm as i64 as u64,
                Op::Mov64Reg { dst, src } => r!(dst) = r!(src),
                Op::Arsh64Imm { dst, imm } => alu!(alu64, AluOp::Arsh, dst, imm as i64 as u64),
                Op::Arsh64Reg { dst, src } => alu!(alu64, AluOp::Arsh, dst, r!(src)),
                // ALU32: operands are the low halves, results zero-extend.
                Op::Add32Imm { dst, imm } => alu!(alu32, AluOp::Add, dst, imm as u32 as u64),
                Op::Add32Reg { dst, src } => alu!(alu32, AluOp::Add, dst, r!(src)),
                Op::Sub32Imm { dst, imm } => alu!(alu32, AluOp::Sub, dst, imm as u32 as u64),
                Op::Sub32Reg { dst, src } => alu!(alu32, AluOp::Sub, dst, r!(src)),
                Op::Mul32Imm { dst, imm } => alu!(alu32, AluOp::Mul, dst, imm as u32 as u64),
                Op::Mul32Reg { dst, src } => alu!(alu32, AluOp::Mul, dst, r!(src)),
                Op::Div32Imm { dst, imm } => alu!(alu32, AluOp::Div, dst, imm as u32 as u64),
                Op::Div32Reg { dst, src } => alu!(alu32, AluOp::Div, dst, r!(src)),
                Op::Sdiv32Imm { dst, imm } => alu!(alu32, AluOp::Sdiv, dst, imm as u32 as u64),
                Op::Sdiv32Reg { dst, src } => alu!(alu32, AluOp::Sdiv, dst, r!(src)),
                Op::Or32Imm { dst, imm } => alu!(alu32, AluOp::Or, dst, imm as u32 as u64),
                Op::Or32Reg { dst, src } => alu!(alu32, AluOp::Or, dst, r!(src)),
                Op::And32Imm { dst, imm } => alu!(alu32, AluOp::And, dst, imm as u32 as u64),
                Op::And32Reg { dst, src } => alu!(alu32, AluOp::And, dst, r!(src)),
                Op::Lsh32Imm { dst, imm } => alu!(alu32, AluOp::Lsh, dst, imm as u32 as u64),
                Op::Lsh32Reg { dst, src } => alu!(alu32, AluOp::Lsh, dst, r!(src)),
                Op::Rsh32Imm { dst, imm } => alu!(alu32, AluOp::Rsh, dst, imm as u32 as u64),
                Op::Rsh32Reg { dst, src } => alu!(alu32, AluOp::Rsh, dst, r!(src)),
                Op::Mod32Imm { dst, imm } => alu!(alu32, AluOp::Mod, dst, imm as u32 as u64),
                Op::Mod32Reg { dst, src } => alu!(alu32, AluOp::Mod, dst, r!(src)),
                Op::Smod32Imm { dst, imm } => alu!(alu32, AluOp::Smod, dst, imm as u32 as u64),
                Op::Smod32Reg { dst, src } => alu!(alu32, AluOp::Smod, dst, r!(src)),
                Op::Xor32Imm { dst, imm } => alu!(alu32, AluOp::Xor, dst, imm as u32 as u64),
                Op::Xor32Reg { dst, src } => alu!(alu32, AluOp::Xor, dst, r!(src)),
                Op::Mov32Imm { dst, imm } => r!(dst) = u64::from(imm as u32),
                Op::Mov32Reg { dst, src } => r!(dst) = u64::from(r!(src) as u32),
                Op::Arsh32Imm { dst, imm } => alu!(alu32, AluOp::Arsh, dst, imm as u32 as u64),
                Op::Arsh32Reg { dst, src } => alu!(alu32, AluOp::Arsh, dst, r!(src)),
                Op::Neg { dst, wide } => r!(dst) = semantics::neg(wide, r!(dst)),
                Op::MovSx {
                    dst,
                    src,
                    wide,
                    from,
                } => {
                    r!(dst) = semantics::movsx(wide, from, r!(src));
                }
                Op::Le16 { dst } => r!(dst) = endian(ByteOrder::Le, SwapWidth::W16, r!(dst)),
                Op::Le32 { dst } => r!(dst) = endian(ByteOrder::Le, SwapWidth::W32, r!(dst)),
                Op::Le64 { dst } => r!(dst) = endian(ByteOrder::Le, SwapWidth::W64, r!(dst)),
                Op::Be16 { dst } => r!(dst) = endian(ByteOrder::Be, SwapWidth::W16, r!(dst)),
                Op::Be32 { dst } => r!(dst) = endian(ByteOrder::Be, SwapWidth::W32, r!(dst)),
                Op::Be64 { dst } => r!(dst) = endian(ByteOrder::Be, SwapWidth::W64, r!(dst)),

                // Jumps.
                Op::Ja { target } => goto!(target as usize, at),
                Op::Jeq64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Eq, r!(dst), imm as i64 as u64, target)
                }
                Op::Jeq64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Eq, r!(dst), r!(src), target)
                }
                Op::Jgt64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Gt, r!(dst), imm as i64 as u64, target)
                }
                Op::Jgt64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Gt, r!(dst), r!(src), target)
                }
                Op::Jge64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Ge, r!(dst), imm as i64 as u64, target)
                }
                Op::Jge64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Ge, r!(dst), r!(src), target)
                }
                Op::Jset64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Set, r!(dst), imm as i64 as u64, target)
                }
                Op::Jset64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Set, r!(dst), r!(src), target)
                }
                Op::Jne64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Ne, r!(dst), imm as i64 as u64, target)
                }
                Op::Jne64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Ne, r!(dst), r!(src), target)
                }
                Op::Jsgt64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Sgt, r!(dst), imm as i64 as u64, target)
                }
                Op::Jsgt64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Sgt, r!(dst), r!(src), target)
                }
                Op::Jsge64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Sge, r!(dst), imm as i64 as u64, target)
                }
                Op::Jsge64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Sge, r!(dst), r!(src), target)
                }
                Op::Jlt64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Lt, r!(dst), imm as i64 as u64, target)
                }
                Op::Jlt64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Lt, r!(dst), r!(src), target)
                }
                Op::Jle64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Le, r!(dst), imm as i64 as u64, target)
                }
                Op::Jle64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Le, r!(dst), r!(src), target)
                }
                Op::Jslt64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Slt, r!(dst), imm as i64 as u64, target)
                }
                Op::Jslt64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Slt, r!(dst), r!(src), target)
                }
                Op::Jsle64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Sle, r!(dst), imm as i64 as u64, target)
                }
                Op::Jsle64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Sle, r!(dst), r!(src), target)
                }
                Op::Jeq32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Eq, r!(dst), imm as u32 as u64, target)
                }
                Op::Jeq32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Eq, r!(dst), r!(src), target)
                }
                Op::Jgt32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Gt, r!(dst), imm as u32 as u64, target)
                }
                Op::Jgt32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Gt, r!(dst), r!(src), target)
                }
                Op::Jge32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Ge, r!(dst), imm as u32 as u64, target)
                }
                Op::Jge32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Ge, r!(dst), r!(src), target)
                }
                Op::Jset32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Set, r!(dst), imm as u32 as u64, target)
                }
                Op::Jset32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Set, r!(dst), r!(src), target)
                }
                Op::Jne32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Ne, r!(dst), imm as u32 as u64, target)
                }
                Op::Jne32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Ne, r!(dst), r!(src), target)
                }
                Op::Jsgt32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Sgt, r!(dst), imm as u32 as u64, target)
                }
                Op::Jsgt32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Sgt, r!(dst), r!(src), target)
                }
                Op::Jsge32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Sge, r!(dst), imm as u32 as u64, target)
                }
                Op::Jsge32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Sge, r!(dst), r!(src), target)
                }
                Op::Jlt32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Lt, r!(dst), imm as u32 as u64, target)
                }
                Op::Jlt32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Lt, r!(dst), r!(src), target)
                }
                Op::Jle32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Le, r!(dst), imm as u32 as u64, target)
                }
                Op::Jle32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Le, r!(dst), r!(src), target)
                }
                Op::Jslt32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Slt, r!(dst), imm as u32 as u64, target)
                }
                Op::Jslt32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Slt, r!(dst), r!(src), target)
                }
                Op::Jsle32Imm { dst, imm, target } => {
                    jump!(cond32, Cond::Sle, r!(dst), imm as u32 as u64, target)
                }
                Op::Jsle32Reg { dst, src, target } => {
                    jump!(cond32, Cond::Sle, r!(dst), r!(src), target)
                }

                // Memory.
                Op::LoadImm64 { dst, index } => {
                    r!(dst) = self.imm64.get(index as usize).copied().unwrap_or(0);
                    pc += 1;
                }
                Op::Ldxb { dst, src, off } => load!(1, u8, u8, dst, src, off, at),
                Op::Ldxh { dst, src, off } => load!(2, u16, u16, dst, src, off, at),
                Op::Ldxw { dst, src, off } => load!(4, u32, u32, dst, src, off, at),
                Op::Ldxdw { dst, src, off } => load!(8, u64, u64, dst, src, off, at),
                Op::Ldxsb { dst, src, off } => load!(1, i8, i64, dst, src, off, at),
                Op::Ldxsh { dst, src, off } => load!(2, i16, i64, dst, src, off, at),
                Op::Ldxsw { dst, src, off } => load!(4, i32, i64, dst, src, off, at),
                Op::Stb { dst, off, imm } => store!(1, [imm as u8], dst, off, at),
                Op::Sth { dst, off, imm } => store!(2, (imm as u16).to_le_bytes(), dst, off, at),
                Op::Stw { dst, off, imm } => store!(4, (imm as u32).to_le_bytes(), dst, off, at),
                Op::Stdw { dst, off, imm } => store!(8, (imm as i64).to_le_bytes(), dst, off, at),
                Op::Stxb { dst, src, off } => store!(1, [r!(src) as u8], dst, off, at),
                Op::Stxh { dst, src, off } => {
                    store!(2, (r!(src) as u16).to_le_bytes(), dst, off, at)
                }
                Op::Stxw { dst, src, off } => {
                    store!(4, (r!(src) as u32).to_le_bytes(), dst, off, at)
                }
                Op::Stxdw { dst, src, off } => store!(8, r!(src).to_le_bytes(), dst, off, at),
                Op::Atomic {
                    dst,
                    src,
                    off,
                    wide,
                    op,
                } => {
                    let addr = r!(dst).wrapping_add(off as i64 as u64);
                    let operand = r!(src);
                    let r0 = r!(0);
                    let result = if wide {
                        mem.atomic64(addr, op, operand, r0)
                    } else {
                        mem.atomic32(addr, op, operand, r0)
                    };
                    match result {
                        Ok(Some(old)) => match op {
                            ebpf_isa::AtomicOp::Cmpxchg => r!(0) = old,
                            _ => r!(src) = old,
                        },
                        Ok(None) => {}
                        Err(kind) => return trap(at, kind),
                    }
                }
                Op::LoadPacket {
                    size,
                    indirect,
                    src,
                    imm,
                } => {
                    let base = if indirect { r!(src) as u32 } else { 0 };
                    let offset = u64::from(base.wrapping_add(imm as u32));
                    let addr = layout::vm_addr(layout::INPUT, offset);
                    let value = match size {
                        1 => mem.load::<1>(addr).map(|b| u64::from(b[0])),
                        2 => mem
                            .load::<2>(addr)
                            .map(|b| u64::from(u16::from_be_bytes(b))),
                        _ => mem
                            .load::<4>(addr)
                            .map(|b| u64::from(u32::from_be_bytes(b))),
                    };
                    match value {
                        Some(v) => r!(0) = v,
                        None => return Some(oob(at, addr, u64::from(size), false)),
                    }
                }

                // Calls.
                Op::CallHelper { id } => {
                    let result = call_helper(helpers, u64::from(id), regs, mem);
                    if let Err(kind) = result {
                        return trap(at, kind);
                    }
                }
                Op::CallX { reg } => {
                    let id = r!(reg);
                    if let Err(kind) = call_helper(helpers, id, regs, mem) {
                        return trap(at, kind);
                    }
                }
                Op::CallLocal { target } => {
                    if frames.len() >= limits.max_depth() {
                        return trap(
                            at,
                            TrapKind::CallDepthExceeded {
                                max_depth: limits.max_depth(),
                            },
                        );
                    }
                    frames.push(Frame {
                        return_pc: pc,
                        saved: [regs[6], regs[7], regs[8], regs[9]],
                        frame_pointer: regs[10],
                    });
                    regs[10] = limits.frame_pointer(frames.len());
                    goto!(target as usize, at);
                }
                Op::Exit => match frames.pop() {
                    None => {
                        return Some(Ok(Exit {
                            r0: regs[0],
                            instructions: budget - remaining,
                        }));
                    }
                    Some(frame) => {
                        regs[6..10].copy_from_slice(&frame.saved);
                        regs[10] = frame.frame_pointer;
                        goto!(frame.return_pc, at);
                    }
                },
                Op::Invalid { reason } => return Some(invalid(at, reason)),
            }
        }
    }
}

#[cold]
fn invalid(pc: usize, reason: InvalidReason) -> Result<Exit, Trap> {
    Err(Trap {
        pc,
        kind: TrapKind::InvalidInstruction { reason },
    })
}

#[cold]
fn oob(pc: usize, addr: u64, len: u64, write: bool) -> Result<Exit, Trap> {
    Err(Trap {
        pc,
        kind: TrapKind::OutOfBounds { addr, len, write },
    })
}

/// Calls helper `id` with r1..r5; sets r0 and zeroes r1..r5 (the contract's "clobbered",
/// made deterministic so that every engine agrees).
fn call_helper(
    helpers: &Helpers,
    id: u64,
    regs: &mut [u64; 16],
    mem: &mut MemoryMap<'_>,
) -> Result<(), TrapKind> {
    let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
    regs[0] = helpers.call(id, args, mem)?;
    regs[1..6].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    /// Runs `program` on `input` with `budget`, with the fast loop and charging every
    /// instruction; both must agree exactly (r0, instruction count, trap pc and kind).
    fn check(
        name: &str,
        program: &Program,
        input: &[u8],
        budget: Option<u64>,
    ) -> Result<Exit, Trap> {
        let interp = Interpreter::new(program);
        let helpers = Helpers::conformance();
        let limits = Limits {
            budget,
            ..Limits::default()
        };
        let run = |fast: bool| {
            let mut mem = input.to_vec();
            let mut map = MemoryMap::new();
            let args = [layout::vm_addr(layout::INPUT, 0), mem.len() as u64];
            map.insert(layout::INPUT, Region::Writable(&mut mem));
            interp.run_charged(map, args, &helpers, &limits, fast)
        };
        let (fast, precise) = (run(true), run(false));
        assert_eq!(fast, precise, "{name} with budget {budget:?}");
        fast
    }

    /// Every budget around a program's instruction count, and a few far below it.
    fn check_budgets(name: &str, program: &Program, input: &[u8]) {
        let Ok(exit) = check(name, program, input, None) else {
            return;
        };
        let n = exit.instructions;
        let mut budgets: Vec<u64> = (0..n.min(64) + 2).collect();
        budgets.extend([
            n / 3,
            n / 2,
            n.saturating_sub(2),
            n.saturating_sub(1),
            n,
            n + 1,
        ]);
        for b in budgets {
            let result = check(name, program, input, Some(b));
            match result {
                Ok(e) => assert!(
                    e.instructions == n && n <= b,
                    "{name}: {e:?} with budget {b}"
                ),
                Err(Trap {
                    kind: TrapKind::BudgetExhausted { .. },
                    ..
                }) => assert!(b < n, "{name}: exhausted with budget {b} >= {n}"),
                Err(t) => panic!("{name}: {t} with budget {b}"),
            }
        }
    }

    #[test]
    fn fast_loop_charges_exactly_like_the_precise_one_on_the_conformance_suite() {
        let Some((files, _)) = ebpf_testdata::suite() else {
            return;
        };
        for path in &files {
            let name = String::from(path.file_name().unwrap().to_string_lossy());
            let v = ebpf_testdata::read(path).unwrap();
            let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
            check_budgets(&name, &program, &v.mem.clone().unwrap_or_default());
        }
    }

    #[test]
    fn fast_loop_charges_exactly_across_calls_lddw_and_traps() {
        let cases: &[(&str, &str)] = &[
            (
                "loop with a local call and lddw",
                "mov %r6, 0\nloop:\nlddw %r1, 0x100000000\ncall local f\nadd %r6, 1\n\
                 jlt %r6, 5, loop\nmov %r0, %r6\nexit\nf:\nmov %r0, %r1\nadd %r0, 1\nexit",
            ),
            (
                "jump into straight-line code",
                "mov %r0, 0\nja +1\nadd %r0, 1\nadd %r0, 2\nexit",
            ),
            (
                "taken jump out of range",
                "mov %r0, 1\njeq %r0, 1, +5\nexit",
            ),
            (
                "untaken jump out of range",
                "mov %r0, 2\njeq %r0, 1, +5\nexit",
            ),
            ("fall off the end", "mov %r0, 1\nadd %r0, 1"),
            ("jump to lddw tail", "mov %r0, 1\nja +1\nlddw %r1, 5\nexit"),
            (
                "out-of-bounds load mid-run",
                "mov %r0, 1\nldxw %r0, [%r1+4096]\nexit",
            ),
            ("helper call", "mov %r1, 7\ncall 5\nadd %r0, 1\nexit"),
            ("unknown helper", "mov %r0, 1\ncall 99\nexit"),
            ("empty", ""),
        ];
        for (name, text) in cases {
            let program = ebpf_isa::assemble(text).unwrap();
            check(name, &program, &[0; 16], None).ok();
            for b in 0..64 {
                check(&format!("{name} (budget {b})"), &program, &[0; 16], Some(b)).ok();
            }
            check_budgets(name, &program, &[0; 16]);
        }
    }

    #[test]
    fn run_lengths_end_at_transfers() {
        let program = ebpf_isa::assemble(
            "mov %r0, 0\nlddw %r1, 1\nadd %r0, 1\njne %r0, 3, +1\nexit\nmov %r0, 2\nexit",
        )
        .unwrap();
        let interp = Interpreter::new(&program);
        // Slots: mov, lddw, (tail), add, jne, exit, mov, exit, sentinel.
        assert_eq!(interp.costs, [4, 3, 1, 2, 1, 1, 2, 1, 1]);
    }
}
