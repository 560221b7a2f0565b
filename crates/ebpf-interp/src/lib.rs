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
//! (condition and byte order included); the fast loop then does one `match` per instruction
//! and no decoding. It charges the budget one straight-line run at a time, at control
//! transfers, not per instruction; a run that does not fit in what is left is executed by a
//! second, precise loop that charges each instruction and executes it with the contract's
//! reference step (`ebpf_abi::step`), so counts and traps stay exact. The two loops are
//! independent implementations, and the tests hold them to each other. It is `#![no_std]` and
//! contains no `unsafe`.
//!
//! [`Interpreter::run_traced`] runs a whole program in the precise loop and reports each
//! executed instruction to an [`Observer`] as a [`Step`] (what `ebpf run --trace` prints).
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
mod session;
mod trace;
pub use ebpf_abi::semantics;
pub use trace::{Access, Effect, Observer, Step};

use alloc::vec::Vec;
use core::fmt;

use ebpf_abi::step;
use ebpf_abi::{
    CallFrame, Executable, Exit, Flow, Helpers, InvalidReason, Limits, MemoryMap, ProgramView,
    Region, RunBuffers, Stack, Target, Trap, TrapKind, VmMemory, layout,
};
use ebpf_isa::{AluOp, AtomicOp, ByteOrder, CallKind, Cond, Insn, Program, SwapWidth};

use ops::{Op, for_each_op};
use semantics::{alu32, alu64, cond32, cond64, endian};

/// A pre-decoded program, ready to run any number of times, from any number of threads.
#[derive(Clone)]
pub struct Interpreter {
    /// One operation per slot, then a sentinel that reports falling off the end.
    ops: Vec<Op>,
    /// The 64-bit immediates of `lddw`, indexed by `Op::LoadImm64::index`.
    imm64: Vec<u64>,
    /// For each slot (and the sentinel), how many operations run from there up to and
    /// including the next control transfer: what entering the slot by a jump charges to the
    /// budget (see [`ops::run_lengths`]).
    costs: Vec<u64>,
    /// The instructions, for the precise loop.
    insns: Vec<Insn>,
    /// Their pcs and control flow, for the precise loop.
    view: ProgramView,
}

/// What the dispatch loop would run at a pc outside the program (it never gets one).
const OUT_OF_RANGE: Op = Op::Invalid {
    reason: InvalidReason::FellOffEnd,
};

/// A run stopped between two instructions, for [`Interpreter::resume`]: what another engine
/// hands over when it lets the interpreter finish a run (the Cranelift JIT does when a budget
/// check finds too little budget left for its next stretch of code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    /// The next instruction.
    pub pc: usize,
    /// `r0`–`r10`.
    pub regs: [u64; 11],
    /// The frames of the calls in progress, outermost first.
    pub frames: Vec<CallFrame>,
    /// Instructions the budget still allows (`u64::MAX` minus those executed, without one).
    pub remaining: u64,
}

/// The state of a run, handed from the fast loop to the precise one.
struct Machine<'f> {
    regs: [u64; 16],
    /// Saved caller frames, lent by whoever keeps their allocation (the lent [`Stack`], a
    /// session), so that calls do not allocate, nor a run move the vector in and out.
    frames: &'f mut Vec<CallFrame>,
    /// The next instruction.
    pc: usize,
    /// Instructions the budget still allows (`u64::MAX` minus those executed, without one).
    remaining: u64,
}

/// The memory the fast loop runs on: a [`MemoryMap`], or a session's [`RunBuffers`] (its own
/// buffers alone, when the binding has no fixed regions), which gives exactly what the map of
/// the same buffers gives, access by access.
trait RunMemory: VmMemory {
    /// The `N` bytes at `addr`, if they lie inside one region (`MemoryMap::load`).
    fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]>;
    /// Stores `value` at `addr`, if the bytes lie inside one writable region
    /// (`MemoryMap::store`).
    fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()>;
    /// `MemoryMap::atomic64`.
    fn atomic64(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind>;
    /// `MemoryMap::atomic32`.
    fn atomic32(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind>;
    /// `MemoryMap::set_instructions_at_helper_trap`.
    fn set_instructions_at_helper_trap(&mut self, instructions: u64);
}

impl RunMemory for MemoryMap<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        MemoryMap::load(self, addr)
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        MemoryMap::store(self, addr, value)
    }

    #[inline(always)]
    fn atomic64(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        MemoryMap::atomic64(self, addr, op, operand, r0)
    }

    #[inline(always)]
    fn atomic32(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        MemoryMap::atomic32(self, addr, op, operand, r0)
    }

    #[inline(always)]
    fn set_instructions_at_helper_trap(&mut self, instructions: u64) {
        MemoryMap::set_instructions_at_helper_trap(self, instructions);
    }
}

impl RunMemory for RunBuffers<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        RunBuffers::load(self, addr)
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        RunBuffers::store(self, addr, value)
    }

    #[inline(always)]
    fn atomic64(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        RunBuffers::atomic64(self, addr, op, operand, r0)
    }

    #[inline(always)]
    fn atomic32(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        RunBuffers::atomic32(self, addr, op, operand, r0)
    }

    /// Nothing reads it: a session's run has no caller that asks (only `run_in`'s does, to
    /// add up a chain of tail calls, and that one runs on a map).
    #[inline(always)]
    fn set_instructions_at_helper_trap(&mut self, _: u64) {}
}

impl Interpreter {
    /// Pre-decodes `program`. Never fails: what cannot execute (a jump outside the program, a
    /// pseudo `lddw`) becomes an operation that traps when reached.
    pub fn new(program: &Program) -> Interpreter {
        let view = ProgramView::new(program);
        let (ops, imm64) = ops::predecode(program, &view);
        let costs = ops::run_lengths(&ops);
        Interpreter {
            ops,
            imm64,
            costs,
            insns: program.insns().to_vec(),
            view,
        }
    }

    /// Number of slots of the program.
    pub fn len(&self) -> usize {
        self.view.slot_count()
    }

    /// Whether the program is empty (running it traps at pc 0).
    pub fn is_empty(&self) -> bool {
        self.view.slot_count() == 0
    }

    /// Runs the program on a fresh stack.
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
        let mut stack = Stack::new();
        let mut memory: MemoryMap<'_> = memory;
        self.run_charged(&mut memory, args, helpers, limits, &mut stack, None)
    }

    /// [`Interpreter::run`] on a lent stack (see [`Executable::run_in`]): no allocation once
    /// `stack` has served a run of the same size.
    #[inline]
    pub fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        self.run_charged(memory, args, helpers, limits, stack, None)
    }

    /// [`Interpreter::run`], reporting every executed instruction to `observer` (see
    /// [`Step`]). The whole run goes through the precise loop, so it returns exactly what
    /// `run` returns — the same [`Exit`] or [`Trap`], the same memory afterwards — only
    /// slower; an instruction that traps is not reported (the [`Trap`] says where it is).
    pub fn run_traced(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        observer: &mut dyn Observer,
    ) -> Result<Exit, Trap> {
        let mut stack = Stack::new();
        let mut memory: MemoryMap<'_> = memory;
        self.run_charged(
            &mut memory,
            args,
            helpers,
            limits,
            &mut stack,
            Some(observer),
        )
    }

    /// [`Interpreter::run_in`], with the fast loop, or — when there is an `observer` to report
    /// to — the whole program in the precise loop (the definition the fast loop is tested
    /// against; the tests pass an observer that ignores what it sees).
    fn run_charged<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Exit, Trap> {
        let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
        let (region, frames) = stack.parts(stack_size);
        frames.clear();
        memory.insert(layout::STACK, Region::Writable(region));
        let mut regs = [0u64; 16];
        regs[1] = args[0];
        regs[2] = args[1];
        regs[10] = limits.frame_pointer(0);
        let budget = limits.budget.unwrap_or(u64::MAX);
        let mut machine = Machine {
            regs,
            frames,
            pc: 0,
            remaining: budget,
        };
        self.dispatch(&mut machine, memory, helpers, limits, budget, observer)
    }

    /// Continues a run that another engine started, from `state`, exactly as this
    /// interpreter would have continued it: the same `r0`, instruction count (`budget -
    /// remaining` when it exits, with `limits.budget`) and trap, the same memory.
    ///
    /// `memory` is the run's memory as it is now, with every region the run has, its stack
    /// (region 2, `limits.stack_size()` bytes) included.
    pub fn resume(
        &self,
        state: RunState,
        memory: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        let mut regs = [0u64; 16];
        regs[..11].copy_from_slice(&state.regs);
        let mut frames = state.frames;
        let mut machine = Machine {
            regs,
            frames: &mut frames,
            pc: state.pc,
            remaining: state.remaining,
        };
        let budget = limits.budget.unwrap_or(u64::MAX);
        self.dispatch(&mut machine, memory, helpers, limits, budget, None)
    }

    /// Runs `machine` to its end: in the fast loop, then (if the budget runs short) in the
    /// precise one.
    fn dispatch(
        &self,
        machine: &mut Machine<'_>,
        memory: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Exit, Trap> {
        // The fast loop charges the budget one straight-line run at a time; when a run does not
        // fit in what is left, the precise loop takes over at its first instruction and charges
        // instruction by instruction, so the trap comes at exactly the right pc.
        let entry = self.costs.get(machine.pc).copied().unwrap_or(1);
        if observer.is_none() && entry <= machine.remaining {
            machine.remaining -= entry;
            let fast = self.execute(machine, memory, helpers, limits, budget);
            if let Some(result) = fast {
                return result;
            }
        }
        self.precise(machine, memory, helpers, limits, budget, observer)
    }

    /// A session's run on its own buffers ([`RunBuffers`]: no fixed regions), `machine` at
    /// its first instruction: [`Interpreter::dispatch`] without the map. Inlined into the
    /// session's run, so that the run has one frame; the helpers' stack mark stays in `mem`
    /// (returned beside the result, the result was copied twice more).
    #[inline(always)]
    fn run_lean(
        &self,
        machine: &mut Machine<'_>,
        mem: &mut RunBuffers<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
    ) -> Result<Exit, Trap> {
        let entry = self.costs.get(machine.pc).copied().unwrap_or(1);
        if entry <= machine.remaining {
            machine.remaining -= entry;
            if let Some(result) = self.execute(machine, mem, helpers, limits, budget) {
                return result;
            }
        }
        self.precise_lean(machine, mem, helpers, limits, budget)
    }

    /// The rest of a [`Interpreter::run_lean`] whose budget ran short, in the precise loop on
    /// the map of the same buffers.
    #[cold]
    #[inline(never)]
    fn precise_lean(
        &self,
        machine: &mut Machine<'_>,
        mem: &mut RunBuffers<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
    ) -> Result<Exit, Trap> {
        let mut map = mem.take_map();
        let result = self.precise(machine, &mut map, helpers, limits, budget, None);
        mem.merge_mark(map.lowest_stack_write());
        result
    }

    /// The fast loop: one `match` per operation and nothing charged per instruction. Every
    /// control transfer (taken or not, calls and returns included) charges the whole
    /// straight-line run it enters, and returns `None` — with `machine` at the run's first
    /// instruction — when that run does not fit in the budget left. So `budget - remaining`
    /// is exactly the number of instructions executed whenever the program exits, because a
    /// run, once entered, executes to its end unless the program traps.
    #[inline(always)]
    fn execute<M: RunMemory>(
        &self,
        machine: &mut Machine<'_>,
        mem: &mut M,
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
        /// program) and charges the run that starts there.
        macro_rules! goto {
            ($target:expr, $at:expr) => {{
                let target: usize = $target;
                let Some(&cost) = costs.get(target) else {
                    return Some(invalid($at, InvalidReason::TargetOutOfRange));
                };
                pc = target;
                if cost > remaining {
                    *machine_pc = pc;
                    *machine_remaining = remaining;
                    return None;
                }
                remaining -= cost;
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
            pc += 1;
            /// The dispatch `match` on `op`: the arms of the ALU and jump families come from the
            /// op table (`for_each_op!`), the others are written out below. (Defined here, after
            /// `op` and `at`, so that its arms can name them.)
            macro_rules! dispatch {
                (
                    alu { $($aop:ident => $ai64:ident $ar64:ident $ai32:ident $ar32:ident,)* }
                    jump { $($cond:ident => $ji64:ident $jr64:ident $ji32:ident $jr32:ident,)* }
                ) => {
                    match *op {
                        // ALU64, immediate (sign-extended) and register.
                        $(
                            Op::$ai64 { dst, imm } => alu!(alu64, AluOp::$aop, dst, imm as i64 as u64),
                            Op::$ar64 { dst, src } => alu!(alu64, AluOp::$aop, dst, r!(src)),
                        )*
                        // ALU32: operands are the low halves, results zero-extend.
                        $(
                            Op::$ai32 { dst, imm } => alu!(alu32, AluOp::$aop, dst, imm as u32 as u64),
                            Op::$ar32 { dst, src } => alu!(alu32, AluOp::$aop, dst, r!(src)),
                        )*
                        Op::Neg { dst, wide } => r!(dst) = semantics::neg(wide, r!(dst)),
                        Op::MovSx { dst, src, wide, from } => {
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
                        $(
                            Op::$ji64 { dst, imm, target } => {
                                jump!(cond64, Cond::$cond, r!(dst), imm as i64 as u64, target)
                            }
                            Op::$jr64 { dst, src, target } => {
                                jump!(cond64, Cond::$cond, r!(dst), r!(src), target)
                            }
                        )*
                        $(
                            Op::$ji32 { dst, imm, target } => {
                                jump!(cond32, Cond::$cond, r!(dst), imm as u32 as u64, target)
                            }
                            Op::$jr32 { dst, src, target } => {
                                jump!(cond32, Cond::$cond, r!(dst), r!(src), target)
                            }
                        )*

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
                                helper_trap(mem, budget - remaining, costs, at);
                                return trap(at, kind);
                            }
                        }
                        Op::CallX { reg } => {
                            let id = r!(reg);
                            if let Err(kind) = call_helper(helpers, id, regs, mem) {
                                helper_trap(mem, budget - remaining, costs, at);
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
                            frames.push(CallFrame {
                                return_pc: pc as u64,
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
                                goto!(frame.return_pc as usize, at);
                            }
                        },
                        Op::Invalid { reason } => return Some(invalid(at, reason)),
                    }
                };
            }
            for_each_op!(dispatch);
        }
    }

    /// The precise loop: each instruction is charged to the budget before it runs, and runs
    /// through the contract's reference [`step`] (control transfers resolved by the
    /// [`ProgramView`]) — an implementation independent of the fast loop's operations, which
    /// the tests compare with it. The fast loop hands over to it at the start of a
    /// straight-line run that does not fit in the budget left.
    ///
    /// With an `observer`, it reports each instruction that executed. Never inlined, so that
    /// nothing tracing adds here changes the code of the fast loop, which is inlined into
    /// `run_charged`.
    #[inline(never)]
    fn precise(
        &self,
        machine: &mut Machine<'_>,
        mem: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
        mut observer: Option<&mut dyn Observer>,
    ) -> Result<Exit, Trap> {
        let Machine {
            regs,
            frames,
            pc,
            remaining,
        } = machine;
        let Some(regs) = regs.first_chunk_mut::<11>() else {
            return invalid(*pc, InvalidReason::Undecodable);
        };
        let (pcs, flows) = (self.view.pcs(), self.view.flows());
        // The pc control arrives at by a transfer to `target`, or the trap it causes.
        let arrive = |target: Target| match target {
            Target::Insn(i) => Ok(pcs.get(i).copied().unwrap_or(usize::MAX)),
            Target::Trap { pc, reason } => invalid(pc, reason).map(|_| 0),
        };
        loop {
            let at = *pc;
            let i = match self.view.at(at) {
                Target::Insn(i) => i,
                Target::Trap { pc, reason } => return invalid(pc, reason),
            };
            let (Some(insn), Some(&flow)) = (self.insns.get(i), flows.get(i)) else {
                return invalid(at, InvalidReason::Undecodable);
            };
            // An instruction that cannot execute traps as such, budget or not.
            if let Flow::Invalid(reason) = flow {
                return invalid(at, reason);
            }
            if *remaining == 0 {
                return Err(Trap {
                    pc: at,
                    kind: TrapKind::BudgetExhausted { budget },
                });
            }
            *remaining -= 1;
            // What a trace needs from before the instruction (nothing when untraced).
            let traced = observer
                .is_some()
                .then(|| (*regs, frames.len(), trace::read_before(insn, regs, mem)));
            let next = match flow {
                Flow::Next => {
                    if let Err(kind) = step::step(insn, regs, mem, helpers) {
                        if matches!(
                            insn,
                            Insn::Call {
                                kind: CallKind::Helper,
                                ..
                            } | Insn::CallX { .. }
                        ) {
                            mem.set_instructions_at_helper_trap(budget - *remaining);
                        }
                        return Err(Trap { pc: at, kind });
                    }
                    Some(at + insn.slots())
                }
                Flow::Jump(target) => Some(arrive(target)?),
                Flow::Branch(target) if step::taken(insn, regs) => Some(arrive(target)?),
                Flow::Branch(_) => Some(at + 1),
                Flow::Call(target) => {
                    if frames.len() >= limits.max_depth() {
                        return Err(Trap {
                            pc: at,
                            kind: TrapKind::CallDepthExceeded {
                                max_depth: limits.max_depth(),
                            },
                        });
                    }
                    frames.push(CallFrame {
                        return_pc: (at + 1) as u64,
                        saved: [regs[6], regs[7], regs[8], regs[9]],
                        frame_pointer: regs[10],
                    });
                    regs[10] = limits.frame_pointer(frames.len());
                    Some(arrive(target)?)
                }
                Flow::Exit => match frames.pop() {
                    None => None,
                    Some(frame) => {
                        regs[6..10].copy_from_slice(&frame.saved);
                        regs[10] = frame.frame_pointer;
                        Some(frame.return_pc as usize)
                    }
                },
                Flow::Invalid(reason) => return invalid(at, reason),
            };
            if let (Some(observer), Some((before, depth, old))) = (observer.as_deref_mut(), traced)
            {
                observer.step(&Step {
                    pc: at,
                    insn: *insn,
                    executed: budget - *remaining,
                    depth,
                    before,
                    after: *regs,
                    effect: trace::effect(insn, &before, regs, mem, old),
                    next,
                });
            }
            match next {
                Some(next) => *pc = next,
                None => {
                    return Ok(Exit {
                        r0: regs[0],
                        instructions: budget - *remaining,
                    });
                }
            }
        }
    }
}

impl fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interpreter")
            .field("slots", &self.len())
            .finish_non_exhaustive()
    }
}

/// The interpreter as an engine: [`Interpreter::run`].
impl Executable for Interpreter {
    fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        Interpreter::run_in(self, memory, args, helpers, limits, stack)
    }

    fn session(
        self: alloc::sync::Arc<Self>,
        binding: alloc::sync::Arc<dyn ebpf_abi::Binding>,
    ) -> alloc::boxed::Box<dyn ebpf_abi::Session> {
        session::Session::new(self, binding)
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

/// Records how many instructions ran when the helper call at `at` failed in the fast loop:
/// `charged` (what the budget was charged) less the rest of the straight-line run the call is
/// in, which was charged when the run was entered and never ran (helper calls do not end runs).
#[cold]
fn helper_trap<M: RunMemory>(mem: &mut M, charged: u64, costs: &[u64], at: usize) {
    let unrun = costs.get(at).map_or(0, |c| c - 1);
    mem.set_instructions_at_helper_trap(charged.saturating_sub(unrun));
}

/// A helper call from the fast loop: the contract's [`step::call_helper`] on `r0`..`r10`.
///
/// `r1`..`r5` are read one register at a time and passed to the out-of-line call in host
/// registers. Copied as the array the helper takes (what `step::call_helper` does), they were
/// read with 16-byte loads, and a load that spans a just-written register (`mov r1, r0` right
/// before the call) and its neighbour cannot be forwarded from the store buffer: every such
/// call waited for the store to reach the cache (~4 ns a call on this machine).
#[inline(always)]
fn call_helper<M: RunMemory>(
    helpers: &Helpers,
    id: u64,
    regs: &mut [u64; 16],
    mem: &mut M,
) -> Result<(), TrapKind> {
    let [_, r1, r2, r3, r4, r5, ..] = *regs;
    let mut call = HelperCall {
        helpers,
        mem,
        trap: None,
    };
    match call.call(id, r1, r2, r3, r4, r5) {
        Some(r0) => {
            // `trap` is still `None`: nothing to drop (forgetting spares the check).
            core::mem::forget(call);
            regs[0] = r0;
            regs[1..6].fill(0);
            Ok(())
        }
        // `call` leaves the trap whenever it returns `None`.
        None => Err(call.trap.unwrap_or(TrapKind::UnknownHelper { id })),
    }
}

/// What a helper call from the fast loop needs besides the id and `r1`..`r5`, behind one
/// pointer, so that the call passes the id and `r1`..`r4` in host registers and only `r5` on
/// the stack (one 8-byte store and load, which the store buffer forwards).
struct HelperCall<'h, 'a, M> {
    helpers: &'h Helpers,
    mem: &'a mut M,
    /// Why the call failed, when it did.
    trap: Option<TrapKind>,
}

impl<M: RunMemory> HelperCall<'_, '_, M> {
    /// [`Helpers::call`]: `r0`, or `None` with the trap in `self.trap`. Out of line, so that
    /// its arguments arrive in registers (inlined, the array was copied from `regs` again),
    /// and so that the dispatch loop keeps its values in registers (a helper call inlined
    /// into it spilled some of them).
    #[inline(never)]
    fn call(&mut self, id: u64, r1: u64, r2: u64, r3: u64, r4: u64, r5: u64) -> Option<u64> {
        match self.helpers.call(id, [r1, r2, r3, r4, r5], self.mem) {
            Ok(r0) => Some(r0),
            Err(kind) => {
                self.trap = Some(kind);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;

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
            let mut stack = Stack::new();
            let mut map = MemoryMap::new();
            let args = layout::input_args(mem.len() as u64);
            map.insert(layout::INPUT, Region::Writable(&mut mem));
            // Any observer makes the whole run precise.
            let mut ignore = |_: &Step| {};
            let observer: Option<&mut dyn Observer> = (!fast).then_some(&mut ignore);
            interp.run_charged(&mut map, args, &helpers, &limits, &mut stack, observer)
        };
        let (fast, precise) = (run(true), run(false));
        assert_eq!(fast, precise, "{name} with budget {budget:?}");
        // Through a session: on the input alone (the lean memory) and with a fixed region
        // (a map); the same result and the same input bytes afterwards, on two runs of one
        // session (the second reuses its frames).
        let mut after_precise = input.to_vec();
        {
            let mut stack = Stack::new();
            let mut map = MemoryMap::new();
            let args = layout::input_args(after_precise.len() as u64);
            map.insert(layout::INPUT, Region::Writable(&mut after_precise));
            let mut ignore = |_: &Step| {};
            let observer: Option<&mut dyn Observer> = Some(&mut ignore);
            interp.run_charged(&mut map, args, &helpers, &limits, &mut stack, observer)
        }
        .ok();
        let program = alloc::sync::Arc::new(interp);
        for fixed in [false, true] {
            let binding: alloc::sync::Arc<dyn ebpf_abi::Binding> = if fixed {
                alloc::sync::Arc::new(WithRodata(ebpf_abi::PlainBinding {
                    helpers: helpers.clone(),
                    limits,
                }))
            } else {
                alloc::sync::Arc::new(ebpf_abi::PlainBinding {
                    helpers: helpers.clone(),
                    limits,
                })
            };
            let mut session = program.clone().session(binding);
            for round in 0..2 {
                let mut mem = input.to_vec();
                let got = session.run_input(&mut mem, &mut Stack::new());
                let case = format!("{name}, budget {budget:?}, fixed {fixed}, round {round}");
                assert_eq!(got, fast, "{case}");
                assert_eq!(mem, after_precise, "{case}");
            }
        }
        fast
    }

    /// A binding with one fixed region (read-only `.rodata`), so that a session's runs take
    /// the map.
    struct WithRodata(ebpf_abi::PlainBinding);

    impl ebpf_abi::Binding for WithRodata {
        fn helpers(&self) -> &Helpers {
            &self.0.helpers
        }

        fn limits(&self) -> &Limits {
            &self.0.limits
        }

        fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>) {
            map.insert(layout::RODATA, Region::ReadOnly(&[7; 8]));
        }
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

    /// Traces `text` with no input and the conformance helper.
    fn trace(text: &str, budget: Option<u64>) -> (Result<Exit, Trap>, Vec<Step>) {
        let program = ebpf_isa::assemble(text).unwrap();
        let limits = Limits {
            budget,
            ..Limits::default()
        };
        let mut steps = Vec::new();
        let interp = Interpreter::new(&program);
        let helpers = Helpers::conformance();
        let result = interp.run_traced(MemoryMap::new(), [0, 0], &helpers, &limits, &mut steps);
        let untraced = interp.run(MemoryMap::new(), [0, 0], &helpers, &limits);
        assert_eq!(result, untraced, "{text}");
        (result, steps)
    }

    #[test]
    fn a_trace_shows_every_step_its_registers_memory_and_helper_calls() {
        let (result, steps) = trace(
            "mov %r0, 0\nmov %r1, 3\nloop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, loop\n\
             stxdw [%r10-8], %r0\nldxw %r2, [%r10-8]\nmov %r1, %r2\ncall 5\nexit",
            None,
        );
        // mov, mov, three rounds of (add, sub, jne), stxdw, ldxw, mov, call, exit.
        let pcs: Vec<usize> = steps.iter().map(|s| s.pc).collect();
        assert_eq!(pcs, [0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            result,
            Ok(Exit {
                r0: 6,
                instructions: 16
            })
        );
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(step.executed, i as u64 + 1);
            assert_eq!(step.depth, 0);
            let next = steps.get(i + 1).map(|s| s.pc);
            assert_eq!(step.next, next, "{step:?}");
        }
        // The first add: r0 0 -> 3, nothing else.
        let changed: Vec<_> = steps[2].changed().collect();
        assert_eq!(changed, [(0, 0, 3)]);
        // The last jne changes nothing and falls through.
        assert_eq!(steps[10].changed().count(), 0);
        assert_eq!(steps[10].next, Some(5));
        let slot = Limits::default().frame_pointer(0) - 8;
        assert_eq!(
            steps[11].effect,
            Effect::Write(Access {
                addr: slot,
                len: 8,
                value: 6
            })
        );
        assert_eq!(
            steps[12].effect,
            Effect::Read(Access {
                addr: slot,
                len: 4,
                value: 6
            })
        );
        assert_eq!(steps[12].changed().collect::<Vec<_>>(), [(2, 0, 6)]);
        assert_eq!(
            steps[14].effect,
            Effect::Helper {
                id: 5,
                args: [6, 6, 0, 0, 0],
                result: 6
            }
        );
        // The helper sets r0 (already 6) and zeroes r1 and r2.
        assert_eq!(
            steps[14].changed().collect::<Vec<_>>(),
            [(1, 6, 0), (2, 6, 0)]
        );
        assert_eq!(steps[15].effect, Effect::None);
    }

    #[test]
    fn a_trace_shows_atomics_calls_and_stops_before_a_trap() {
        let (result, steps) = trace(
            "stdw [%r10-8], 40\nmov %r1, 2\nlock fetch add [%r10-8], %r1\ncall local f\n\
             ldxdw %r0, [%r1]\nexit\nf:\nmov %r0, 1\nexit",
            None,
        );
        let slot = Limits::default().frame_pointer(0) - 8;
        assert_eq!(
            steps[2].effect,
            Effect::Atomic {
                read: Access {
                    addr: slot,
                    len: 8,
                    value: 40
                },
                after: 42
            }
        );
        // The fetched value lands in r1.
        assert_eq!(steps[2].changed().collect::<Vec<_>>(), [(1, 2, 40)]);
        // The call moves to the callee's frame; its exit returns to pc 4.
        assert_eq!((steps[3].pc, steps[3].next), (3, Some(6)));
        let fp = |d| Limits::default().frame_pointer(d);
        assert_eq!(steps[3].changed().collect::<Vec<_>>(), [(10, fp(0), fp(1))]);
        assert_eq!((steps[4].depth, steps[5].depth), (1, 1));
        assert_eq!((steps[5].pc, steps[5].next), (7, Some(4)));
        // The load through r1 = 40 traps; the trace stops at the instruction before.
        assert_eq!(steps.len(), 6);
        assert_eq!(
            result,
            Err(Trap {
                pc: 4,
                kind: TrapKind::OutOfBounds {
                    addr: 40,
                    len: 8,
                    write: false
                }
            })
        );
        // A budget trap: the trace holds exactly the instructions the budget allowed.
        let (result, steps) = trace("mov %r0, 1\nja -2", Some(5));
        assert_eq!(steps.len(), 5);
        assert_eq!(
            result.unwrap_err().kind,
            TrapKind::BudgetExhausted { budget: 5 }
        );
    }

    #[test]
    fn resuming_continues_exactly_where_the_state_stands() {
        let program = ebpf_isa::assemble(
            "mov %r6, 5\ncall local f\nadd %r0, %r6\nexit\nf:\nmov %r0, %r1\nadd %r0, 1\nexit",
        )
        .unwrap();
        let interp = Interpreter::new(&program);
        let helpers = Helpers::new();
        let limits = Limits {
            budget: Some(1000),
            ..Limits::default()
        };
        // From the start, the state is the entry state: the same as `run`.
        let mut stack = vec![0u8; limits.stack_size() as usize];
        let mut memory = MemoryMap::new();
        memory.insert(layout::STACK, Region::Writable(&mut stack));
        let mut regs = [0; 11];
        regs[1] = 9;
        regs[10] = limits.frame_pointer(0);
        let start = RunState {
            pc: 0,
            regs,
            frames: Vec::new(),
            remaining: 1000,
        };
        let resumed = interp.resume(start, &mut memory, &helpers, &limits);
        let run = interp.run(MemoryMap::new(), [9, 0], &helpers, &limits);
        assert_eq!(resumed, run);
        assert_eq!(run.unwrap().r0, 15);
        // Inside the callee (before `add %r0, 1`, with r0 = 10 and r6 clobbered), one frame
        // deep, 100 instructions left: the caller gets r6 = 5 back.
        let mut regs = [0; 11];
        regs[0] = 10;
        regs[6] = 99;
        regs[10] = limits.frame_pointer(1);
        let inside = RunState {
            pc: 5,
            regs,
            frames: vec![CallFrame {
                return_pc: 2,
                saved: [5, 0, 0, 0],
                frame_pointer: limits.frame_pointer(0),
            }],
            remaining: 100,
        };
        let exit = interp.resume(inside.clone(), &mut memory, &helpers, &limits);
        // 1000 - 100 already ran; then add, exit, add, exit.
        assert_eq!(
            exit,
            Ok(Exit {
                r0: 16,
                instructions: 904
            })
        );
        // The same with a budget that runs out in the caller, at its `exit`.
        let short = RunState {
            remaining: 3,
            ..inside
        };
        assert_eq!(
            interp.resume(short, &mut memory, &helpers, &limits),
            Err(Trap {
                pc: 3,
                kind: TrapKind::BudgetExhausted { budget: 1000 }
            })
        );
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
