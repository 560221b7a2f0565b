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
//! operations, one per slot, with branch targets resolved; the dispatch loop then does one
//! `match` per instruction and no decoding. It is `#![no_std]` and contains no `unsafe`.
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
pub mod semantics;

use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::{
    Exit, HelperError, Helpers, InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind, layout,
};
use ebpf_isa::{AluOp, Cond, Program};

use ops::Op;
use semantics::{alu32, alu64, cond32, cond64};

/// A pre-decoded program, ready to run any number of times, from any number of threads.
#[derive(Clone, Debug)]
pub struct Interpreter {
    /// One operation per slot, then a sentinel that reports falling off the end.
    ops: Vec<Op>,
    /// The 64-bit immediates of `lddw`, indexed by `Op::LoadImm64::index`.
    imm64: Vec<u64>,
    /// Number of slots of the program.
    len: usize,
}

/// A saved caller frame of a local call.
#[derive(Clone, Copy)]
struct Frame {
    return_pc: usize,
    saved: [u64; 4],
    frame_pointer: u64,
}

impl Interpreter {
    /// Pre-decodes `program`. Never fails: what cannot execute (a jump outside the program, a
    /// pseudo `lddw`) becomes an operation that traps when reached.
    pub fn new(program: &Program) -> Interpreter {
        let (ops, imm64) = ops::predecode(program);
        Interpreter {
            ops,
            imm64,
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
        let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
        let mut stack = vec![0u8; stack_size];
        let mut memory = memory;
        memory.insert(layout::STACK, Region::Writable(&mut stack));
        let mut regs = [0u64; 16];
        regs[1] = args[0];
        regs[2] = args[1];
        regs[10] = limits.frame_pointer(0);
        self.execute(&mut regs, &mut memory, helpers, limits)
    }

    fn execute(
        &self,
        regs: &mut [u64; 16],
        mem: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        let ops = self.ops.as_slice();
        let budget = limits.budget.unwrap_or(u64::MAX);
        let mut remaining = budget;
        let mut frames: Vec<Frame> = Vec::new();
        let mut pc = 0usize;
        // The pc of the instruction executed last: a taken jump to an out-of-range target is
        // reported there.
        let mut last = 0usize;
        let trap = |pc: usize, kind: TrapKind| Err(Trap { pc, kind });
        let invalid = |pc: usize, reason: InvalidReason| {
            Err(Trap {
                pc,
                kind: TrapKind::InvalidInstruction { reason },
            })
        };

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
                if $f($cond, $a, $b) {
                    pc = $target as usize;
                }
            }};
        }
        macro_rules! load {
            ($n:literal, $conv:ty, $ext:ty, $dst:expr, $addr:expr, $at:expr) => {{
                let addr: u64 = $addr;
                match mem.load::<$n>(addr) {
                    Some(b) => r!($dst) = <$conv>::from_le_bytes(b) as $ext as u64,
                    None => return oob($at, addr, $n, false),
                }
            }};
        }
        macro_rules! store {
            ($n:literal, $value:expr, $addr:expr, $at:expr) => {{
                let addr: u64 = $addr;
                if mem.store::<$n>(addr, $value).is_none() {
                    return oob($at, addr, $n, true);
                }
            }};
        }

        loop {
            let at = pc;
            let Some(op) = ops.get(pc) else {
                // Only a taken conditional jump to an out-of-range target gets here: the last
                // op is a sentinel that reports falling off the end.
                return invalid(last, InvalidReason::TargetOutOfRange);
            };
            last = at;
            if remaining == 0 {
                // An operation that cannot execute traps as such, budget or not.
                if let Op::Invalid { reason } = *op {
                    return invalid(at, reason);
                }
                return trap(at, TrapKind::BudgetExhausted { budget });
            }
            remaining -= 1;
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
                Op::Endian { dst, order, width } => {
                    r!(dst) = semantics::endian(order, width, r!(dst));
                }

                // Jumps.
                Op::Ja { target } => pc = target as usize,
                Op::Jeq64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Eq, r!(dst), imm as i64 as u64, target)
                }
                Op::Jeq64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Eq, r!(dst), r!(src), target)
                }
                Op::Jne64Imm { dst, imm, target } => {
                    jump!(cond64, Cond::Ne, r!(dst), imm as i64 as u64, target)
                }
                Op::Jne64Reg { dst, src, target } => {
                    jump!(cond64, Cond::Ne, r!(dst), r!(src), target)
                }
                Op::Jcc64Imm {
                    cond,
                    dst,
                    imm,
                    target,
                } => {
                    jump!(cond64, cond, r!(dst), imm as i64 as u64, target)
                }
                Op::Jcc64Reg {
                    cond,
                    dst,
                    src,
                    target,
                } => jump!(cond64, cond, r!(dst), r!(src), target),
                Op::Jcc32Imm {
                    cond,
                    dst,
                    imm,
                    target,
                } => {
                    jump!(cond32, cond, r!(dst), imm as u32 as u64, target)
                }
                Op::Jcc32Reg {
                    cond,
                    dst,
                    src,
                    target,
                } => jump!(cond32, cond, r!(dst), r!(src), target),

                // Memory.
                Op::LoadImm64 { dst, index } => {
                    r!(dst) = self.imm64.get(index as usize).copied().unwrap_or(0);
                    pc += 1;
                }
                Op::Ldxb { dst, src, off } => {
                    load!(1, u8, u8, dst, r!(src).wrapping_add(off as i64 as u64), at)
                }
                Op::Ldxh { dst, src, off } => load!(
                    2,
                    u16,
                    u16,
                    dst,
                    r!(src).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Ldxw { dst, src, off } => load!(
                    4,
                    u32,
                    u32,
                    dst,
                    r!(src).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Ldxdw { dst, src, off } => load!(
                    8,
                    u64,
                    u64,
                    dst,
                    r!(src).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Ldxsb { dst, src, off } => {
                    load!(1, i8, i64, dst, r!(src).wrapping_add(off as i64 as u64), at)
                }
                Op::Ldxsh { dst, src, off } => load!(
                    2,
                    i16,
                    i64,
                    dst,
                    r!(src).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Ldxsw { dst, src, off } => load!(
                    4,
                    i32,
                    i64,
                    dst,
                    r!(src).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stb { dst, off, imm } => {
                    store!(1, [imm as u8], r!(dst).wrapping_add(off as i64 as u64), at)
                }
                Op::Sth { dst, off, imm } => store!(
                    2,
                    (imm as u16).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stw { dst, off, imm } => store!(
                    4,
                    (imm as u32).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stdw { dst, off, imm } => store!(
                    8,
                    (imm as i64).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stxb { dst, src, off } => store!(
                    1,
                    [r!(src) as u8],
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stxh { dst, src, off } => store!(
                    2,
                    (r!(src) as u16).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stxw { dst, src, off } => store!(
                    4,
                    (r!(src) as u32).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
                Op::Stxdw { dst, src, off } => store!(
                    8,
                    r!(src).to_le_bytes(),
                    r!(dst).wrapping_add(off as i64 as u64),
                    at
                ),
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
                        ops::atomic64(mem, addr, op, operand, r0)
                    } else {
                        ops::atomic32(mem, addr, op, operand, r0)
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
                        None => return oob(at, addr, u64::from(size), false),
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
                    if frames.len() >= limits.max_call_depth {
                        return trap(
                            at,
                            TrapKind::CallDepthExceeded {
                                max_depth: limits.max_call_depth,
                            },
                        );
                    }
                    frames.push(Frame {
                        return_pc: pc,
                        saved: [regs[6], regs[7], regs[8], regs[9]],
                        frame_pointer: regs[10],
                    });
                    regs[10] = limits.frame_pointer(frames.len());
                    pc = target as usize;
                }
                Op::Exit => match frames.pop() {
                    None => {
                        return Ok(Exit {
                            r0: regs[0],
                            instructions: budget - remaining,
                        });
                    }
                    Some(frame) => {
                        regs[6..10].copy_from_slice(&frame.saved);
                        regs[10] = frame.frame_pointer;
                        pc = frame.return_pc;
                    }
                },
                Op::Invalid { reason } => return invalid(at, reason),
            }
        }
    }
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
    let helper = u32::try_from(id).ok().and_then(|id32| helpers.get(id32));
    let Some(helper) = helper else {
        return Err(TrapKind::UnknownHelper { id });
    };
    let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
    match helper.call(args, mem) {
        Ok(r0) => {
            regs[0] = r0;
            regs[1..6].fill(0);
            Ok(())
        }
        Err(HelperError::Failed(message)) => Err(TrapKind::HelperFailed {
            id: id as u32,
            message,
        }),
        Err(HelperError::Memory(kind)) => Err(kind),
    }
}
