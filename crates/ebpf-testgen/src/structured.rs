//! Runnable programs: [`structured_program`] generates programs that every engine can run to
//! completion with the same result, for differential tests (interpreter vs JITs) and for the
//! verifier's acceptance paths.
//!
//! A program is generated as a small tree — straight-line operations, memory accesses,
//! if/else, counted loops, local calls, early exits — and lowered with
//! [`ebpf_isa::builder::Builder`], so every jump lands where the tree says. See
//! [`StructuredProgram`] for exactly what is guaranteed.

use std::sync::Arc;

use ebpf_abi::{SplitMix64, semantics};
use ebpf_isa::builder::{Builder, Label};
use ebpf_isa::table::{Form, Spec};
use ebpf_isa::{
    AluOp, CallKind, Cond, CpuVersion, Group, Imm64Kind, Insn, Operand, Program, Reg, Size, Width,
};
use proptest::array::{uniform5, uniform9};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::Union;

use crate::insn::{any_imm, any_imm64, forms_where, insn_of_form_using, reg_in};

/// The registers a structured program computes with. `r9` holds the input pointer and `r10`
/// is the frame pointer; neither is ever an operand of an ALU, jump or store instruction.
pub const GENERAL_REGS: [Reg; 9] = [
    Reg::R0,
    Reg::R1,
    Reg::R2,
    Reg::R3,
    Reg::R4,
    Reg::R5,
    Reg::R6,
    Reg::R7,
    Reg::R8,
];

/// The register that holds the input pointer in every function of a structured program.
pub const INPUT_REG: Reg = Reg::R9;

/// Largest number of sub-functions (so at most 8 frames are live, as in Linux).
pub const MAX_FUNCTIONS: usize = 7;

/// Largest nesting depth of if/else and loops.
pub const MAX_DEPTH: u32 = 6;

/// Largest number of iterations of one loop.
pub const MAX_ITERATIONS: u32 = 16;

/// What [`structured_program`] generates. Out-of-range values are clamped (see each field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructuredConfig {
    /// Size in bytes of the input memory that `r1` points to at entry (at most 32 768, so
    /// that offsets fit 16 bits). 0: no input accesses.
    pub input_len: usize,
    /// Bytes of each function's stack frame that are used: `[r10 - stack_bytes, r10)`. The
    /// top `8 * depth` bytes hold loop counters (none without loops), the rest data. Rounded
    /// up to a multiple of 8 and clamped so that at least 8 data bytes remain, and to 512.
    pub stack_bytes: usize,
    /// Most statements in one block (at least 1, at most 64). Nested blocks are smaller.
    pub statements: usize,
    /// Most nesting of if/else and loops (at most [`MAX_DEPTH`]).
    pub depth: u32,
    /// Most iterations of one loop (at most [`MAX_ITERATIONS`]); 0: no loops.
    pub max_iterations: u32,
    /// Most sub-functions (at most [`MAX_FUNCTIONS`]); forced to 0 below [`CpuVersion::V3`].
    pub functions: usize,
    /// Newest instructions used: e.g. [`CpuVersion::V3`] leaves out `sdiv`, `movsx`,
    /// sign-extending loads, `bswap` and `ja32`.
    pub max_cpu: CpuVersion,
    /// Conformance groups the generated operations may come from. Leaving out
    /// [`Group::Divmul32`] and [`Group::Divmul64`] leaves out multiplication and division;
    /// leaving out the atomic groups leaves out atomics. The scaffolding (see
    /// [`StructuredProgram`]) uses base32 and base64 instructions whatever this says.
    pub groups: Vec<Group>,
    /// Only what the Linux verifier accepts: immediate shift counts below the operand width,
    /// no division or modulo by an immediate zero (RFC 9669 defines both; the kernel refuses
    /// them), and no code that no path reaches (the kernel refuses that too): an early `exit`
    /// is taken only when `r0`'s low bit is clear (`jset r0, 1` jumps over it), and each
    /// function ends by calling the next one (so every sub-function is called; its result is
    /// xored into `r0`). Default: off.
    pub kernel_compatible: bool,
    /// Before every `exit` of the main function, fold `r0`'s upper half into its lower half
    /// (`r0 ^= r0 >> 32`, through `r1`), so that a 32-bit return value — what the kernel's
    /// `BPF_PROG_TEST_RUN` reports — still depends on all 64 bits. Default: off.
    pub fold_r0: bool,
    /// Sometimes pass a register through a stack slot and an atomic `or` with itself (needs
    /// [`Group::Atomic64`]): its value is unchanged, but a verifier that tracks constants
    /// through the stack (the kernel's) no longer knows it, so both sides of later branches
    /// are explored. Default: off.
    pub opaque_values: bool,
    /// Add code that never runs (see [`StructuredProgram::dead`]): behind a conditional jump
    /// on a constant that always goes the other way, instructions that would be wrong if they
    /// ran — misaligned and out-of-frame stack accesses, reads of unwritten stack bytes and
    /// registers, an unknown helper, a write to `r10`. Default: off.
    pub dead_code: bool,
}

impl Default for StructuredConfig {
    /// 64 bytes of input, 64 bytes of stack (24 of them for loop counters), blocks of up to 8 statements nested 3 deep,
    /// loops of up to 4 iterations, up to 2 sub-functions, every CPU version, every group
    /// except `callx` and `packet` (which structured programs never use anyway).
    fn default() -> StructuredConfig {
        StructuredConfig {
            input_len: 64,
            stack_bytes: 64,
            statements: 8,
            depth: 3,
            max_iterations: 4,
            functions: 2,
            max_cpu: CpuVersion::V4,
            groups: vec![
                Group::Base32,
                Group::Base64,
                Group::Atomic32,
                Group::Atomic64,
                Group::Divmul32,
                Group::Divmul64,
            ],
            kernel_compatible: false,
            fold_r0: false,
            opaque_values: false,
            dead_code: false,
        }
    }
}

impl StructuredConfig {
    /// The configuration with every field clamped to what the generator supports.
    pub fn normalized(&self) -> StructuredConfig {
        let depth = self.depth.min(MAX_DEPTH);
        let max_iterations = self.max_iterations.min(MAX_ITERATIONS);
        let counters = if max_iterations > 0 {
            depth as usize
        } else {
            0
        };
        let stack_bytes = self
            .stack_bytes
            .next_multiple_of(8)
            .clamp(8 * (counters + 1), 512);
        let functions = if self.max_cpu >= CpuVersion::V3 {
            self.functions.min(MAX_FUNCTIONS)
        } else {
            0
        };
        StructuredConfig {
            input_len: self.input_len.min(32_768),
            stack_bytes,
            statements: self.statements.clamp(1, 64),
            depth,
            max_iterations,
            functions,
            max_cpu: self.max_cpu,
            groups: self.groups.clone(),
            kernel_compatible: self.kernel_compatible,
            fold_r0: self.fold_r0,
            opaque_values: self.opaque_values && self.groups.contains(&Group::Atomic64),
            dead_code: self.dead_code,
        }
    }

    fn allows(&self, spec: &Spec) -> bool {
        spec.cpu <= self.max_cpu && self.groups.contains(&spec.group)
    }

    /// Bytes at the top of each frame reserved for loop counters: one 8-byte slot per level.
    fn counter_bytes(&self) -> usize {
        if self.max_iterations > 0 {
            8 * self.depth as usize
        } else {
            0
        }
    }
}

/// A program from [`structured_program`], with what a test needs to run it.
///
/// # Guarantees
///
/// Given input memory of `input_len` bytes in `r1` (8-byte aligned) and a stack frame of 512
/// bytes per call in `r10` (8-byte aligned), on an engine that implements RFC 9669 (with
/// `r6`–`r9` preserved across local calls):
///
/// - **Layout.** The main function starts at pc 0; each sub-function starts at a pc listed in
///   `functions`, after the main function. Every function ends with `exit`.
/// - **Control flow.** Every jump targets an instruction start inside its own function. Local
///   calls target only function entries, and a function calls only functions after it, so
///   there is no recursion and at most `functions.len() + 1` frames are live.
/// - **Termination.** Loops are counted (1 to `max_iterations` iterations, counter in a stack
///   slot that nothing else writes), so every run ends with `exit` from the main function
///   after at most `max_steps` executed instructions (counting an `lddw` as two, so the
///   bound holds whether an engine counts instructions or slots).
/// - **Memory.** Every load, store and atomic addresses `[r10 - stack_bytes, r10)` of the
///   current frame or `[r1, r1 + input_len)` of the input, naturally aligned (offsets are
///   multiples of the access size), through `r10`, `r9` (a copy of `r1`) or another register
///   that was set to `r9`/`r10` plus a constant just before. Stack bytes are written before
///   they are read: each function's prologue fills its stack area with constants.
/// - **Determinism.** Every register is written before it is read, in the verifier's sense
///   (`r1`–`r5` are rewritten after each call; a sub-function reads only `r1`–`r5` of its
///   caller). Pointers never reach a computation, a comparison, a store or `r0`: a register
///   that held a pointer is overwritten right after its memory access. So `r0` at exit and the
///   final input memory depend only on the input bytes, the same on every engine.
///
/// Not guaranteed: that a verifier proves the loops bounded (counters live on the stack), and
/// anything about helpers, `callx`, packet loads or `lddw` pseudo-kinds, which are never used.
///
/// # Scaffolding
///
/// Besides the generated operations, structured programs always contain: `mov64 r9, r1` at
/// each function entry; constants in `r0`–`r8` (`mov64` or `lddw`) and `stdw` to the stack in
/// prologues; `ja` (or `ja32` from v4) and 64- or 32-bit conditional jumps for if/else;
/// `stdw`, `ldxdw`, `add64`, `stxdw` and `jne` for loop counters; `mov64 r1, r9`, `call local`
/// and `mov64` to `r1`–`r5` around calls; `mov64`/`add64` to derive pointers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructuredProgram {
    /// The program.
    pub program: Program,
    /// Bytes of input memory the program may access through `r1`.
    pub input_len: usize,
    /// Bytes of each stack frame the program may access below `r10`.
    pub stack_bytes: usize,
    /// Upper bound on the instructions executed in one run (`lddw` counted twice, local calls
    /// and their callees included).
    pub max_steps: u64,
    /// The pc of each sub-function's first instruction, in order.
    pub functions: Vec<usize>,
    /// The pcs of instructions that never run (with [`StructuredConfig::dead_code`]): each
    /// sits behind a conditional jump on a register just set to a constant, which always goes
    /// the other way. Each takes one slot, so a test may replace its bytes with anything,
    /// undecodable ones included, without changing what the program computes.
    pub dead: Vec<usize>,
}

/// Runnable programs as configured by `config` (see [`StructuredProgram`] for the
/// guarantees).
pub fn structured_program(
    config: StructuredConfig,
) -> impl Strategy<Value = StructuredProgram> + Clone {
    let cfg = Arc::new(config.normalized());
    let function = function_strategy(&cfg);
    (function.clone(), vec(function, 0..=cfg.functions)).prop_filter_map(
        "program too large for 16-bit jump offsets",
        move |(main, subs)| lower(&cfg, &main, &subs),
    )
}

/// A structured program together with input memory of the right size ([`input_bytes`]):
/// what a differential test runs.
pub fn structured_with_input(
    config: StructuredConfig,
) -> impl Strategy<Value = (StructuredProgram, Vec<u8>)> + Clone {
    structured_program(config).prop_flat_map(|s| {
        let len = s.input_len;
        (Just(s), input_bytes(len))
    })
}

/// Input memory for a structured program: `len` bytes, mostly random, sometimes all zero or
/// all `0xff`.
pub fn input_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        8 => vec(any::<u8>(), len),
        1 => Just(vec![0u8; len]),
        1 => Just(vec![0xffu8; len]),
    ]
}

/// How a register gets its initial value.
#[derive(Clone, Copy, Debug)]
enum Const {
    Mov(i32),
    Lddw(u64),
}

/// A memory access of a structured program.
#[derive(Clone, Debug)]
struct Mem {
    /// `Load`, `StoreImm`, `StoreReg` or `Atomic`.
    form: Form,
    /// Loaded into, stored from, or the atomic operand.
    reg: Reg,
    /// The stored immediate, or the value that overwrites a derived pointer after a store.
    imm: i32,
    /// Input memory rather than the stack.
    input: bool,
    /// Which aligned position of the region.
    slot: Index,
    /// Access through a register set to the base plus a shift.
    via: Option<(Reg, i16)>,
}

#[derive(Clone, Debug)]
enum Stmt {
    /// An ALU, byte-order or `lddw` instruction on general registers.
    Op(Insn),
    Mem(Mem),
    If {
        width: Width,
        cond: ebpf_isa::Cond,
        dst: Reg,
        src: Operand,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
        /// Leave the else branch with `ja32` (when allowed).
        long: bool,
    },
    Loop {
        iterations: u32,
        /// The register the counter passes through.
        tmp: Reg,
        body: Vec<Stmt>,
    },
    Call {
        /// Which of the functions after the caller.
        callee: Index,
        /// Values of `r1`–`r5` after the call.
        after: [i32; 5],
    },
    Exit,
    /// The register through a stack slot and `lock or` with itself (value unchanged).
    Opaque(Reg),
    Dead(Dead),
}

/// Code that never runs: `mov r0, value; j<cond> r0, imm` goes one way on every run, and
/// `junk` sits on the other side.
#[derive(Clone, Debug)]
struct Dead {
    width: Width,
    cond: Cond,
    value: i32,
    imm: i32,
    junk: Vec<Junk>,
}

/// An instruction that would be wrong if it ran.
#[derive(Clone, Copy, Debug)]
enum Junk {
    /// `stw [r10-6], 1`.
    Misaligned,
    /// `stdw [r10+8], 1`.
    OutOfFrame,
    /// `ldxdw r0, [r10-512]` (the generated code writes only the top of the frame).
    UnwrittenStack,
    /// `call 0x7ffffff0`.
    UnknownHelper,
    /// `mov r10, 0`.
    WriteR10,
    /// `mov r0, rN` for r6–r9 (only at a function's start, where those are unwritten).
    UnwrittenRegister(u8),
}

#[derive(Clone, Debug)]
struct Function {
    body: Vec<Stmt>,
    /// Initial values of `r0`–`r8` (a sub-function uses those of `r0`, `r1`, `r6`–`r8`).
    inits: [Const; 9],
    /// Seed of the stack's initial contents.
    seed: u64,
    /// Code that never runs at the function's start (before any register is written).
    dead: Option<Dead>,
}

fn constant() -> impl Strategy<Value = Const> + Clone {
    prop_oneof![
        3 => any_imm().prop_map(Const::Mov),
        1 => any_imm64().prop_map(Const::Lddw),
    ]
}

fn general() -> impl Strategy<Value = Reg> + Clone {
    reg_in(&GENERAL_REGS)
}

fn function_strategy(cfg: &Arc<StructuredConfig>) -> BoxedStrategy<Function> {
    let dead = if cfg.dead_code {
        proptest::option::of(dead_strategy(true)).boxed()
    } else {
        Just(None).boxed()
    };
    (
        block_strategy(cfg),
        uniform9(constant()),
        any::<u64>(),
        dead,
    )
        .prop_map(|(body, inits, seed, dead)| Function {
            body,
            inits,
            seed,
            dead,
        })
        .boxed()
}

/// Dead code; `at_start`: it may read the registers a function has not written yet.
fn dead_strategy(at_start: bool) -> impl Strategy<Value = Dead> + Clone {
    let widths = select(vec![Width::W32, Width::W64]);
    let conds = select(Cond::ALL.to_vec());
    let mut junk: Vec<BoxedStrategy<Junk>> = vec![
        Just(Junk::Misaligned).boxed(),
        Just(Junk::OutOfFrame).boxed(),
        Just(Junk::UnwrittenStack).boxed(),
        Just(Junk::UnknownHelper).boxed(),
        Just(Junk::WriteR10).boxed(),
    ];
    if at_start {
        junk.push((6u8..=9).prop_map(Junk::UnwrittenRegister).boxed());
    }
    (
        widths,
        conds,
        any_imm(),
        any_imm(),
        vec(Union::new(junk), 1..=3),
    )
        .prop_map(|(width, cond, value, imm, junk)| Dead {
            width,
            cond,
            value,
            imm,
            junk,
        })
}

/// Makes an ALU instruction's immediate one the Linux verifier accepts (see
/// [`StructuredConfig::kernel_compatible`]): shift counts are masked to the width, as every
/// engine masks them at run time, and an immediate zero divisor becomes -1.
fn kernel_immediate(insn: Insn) -> Insn {
    match insn {
        Insn::Alu {
            width,
            op,
            dst,
            src: Operand::Imm(i),
        } => {
            let bits = if width == Width::W64 { 64 } else { 32 };
            let i = match op {
                AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => i & (bits - 1),
                AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod if i == 0 => -1,
                _ => i,
            };
            Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Imm(i),
            }
        }
        other => other,
    }
}

fn block_strategy(cfg: &Arc<StructuredConfig>) -> BoxedStrategy<Vec<Stmt>> {
    let compute = forms_where(|s| {
        cfg.allows(s)
            && matches!(
                s.form,
                Form::AluImm(..)
                    | Form::AluReg(..)
                    | Form::Neg(_)
                    | Form::MovSx(..)
                    | Form::Endian(..)
                    | Form::LoadImm64(Imm64Kind::Value)
            )
    });
    let memory = forms_where(|s| {
        cfg.allows(s)
            && matches!(
                s.form,
                Form::Load(..) | Form::StoreImm(_) | Form::StoreReg(_) | Form::Atomic(..)
            )
    });
    let jumps =
        forms_where(|s| cfg.allows(s) && matches!(s.form, Form::JumpImm(..) | Form::JumpReg(..)));

    let mut leaves: Vec<(u32, BoxedStrategy<Stmt>)> = Vec::new();
    if !compute.is_empty() {
        let kernel = cfg.kernel_compatible;
        let op = select(compute)
            .prop_flat_map(|form| insn_of_form_using(form, general()))
            .prop_map(move |insn| Stmt::Op(if kernel { kernel_immediate(insn) } else { insn }));
        leaves.push((16, op.boxed()));
    }
    if cfg.opaque_values {
        leaves.push((3, general().prop_map(Stmt::Opaque).boxed()));
    }
    if cfg.dead_code {
        leaves.push((1, dead_strategy(false).prop_map(Stmt::Dead).boxed()));
    }
    if !memory.is_empty() {
        let via = proptest::option::weighted(0.3, (general(), -64i16..=64));
        let mem = (
            select(memory),
            general(),
            any_imm(),
            any::<bool>(),
            any::<Index>(),
            via,
        )
            .prop_map(|(form, reg, imm, input, slot, via)| {
                Stmt::Mem(Mem {
                    form,
                    reg,
                    imm,
                    input,
                    slot,
                    via,
                })
            });
        leaves.push((8, mem.boxed()));
    }
    if cfg.functions > 0 {
        let call = (any::<Index>(), uniform5(any_imm()))
            .prop_map(|(callee, after)| Stmt::Call { callee, after });
        leaves.push((2, call.boxed()));
    }
    // Scaffolding alone: an early exit (rare) and a plain move, so the union is never empty.
    leaves.push((1, Just(Stmt::Exit).boxed()));
    leaves.push((
        1,
        (general(), any_imm())
            .prop_map(|(dst, i)| {
                Stmt::Op(Insn::Alu {
                    width: Width::W64,
                    op: ebpf_isa::AluOp::Mov,
                    dst,
                    src: Operand::Imm(i),
                })
            })
            .boxed(),
    ));
    let leaf = Union::new_weighted(leaves);

    let n = cfg.statements;
    let inner_n = n / 2 + 1;
    let loops = cfg.max_iterations;
    let jumps = if jumps.is_empty() {
        // base64 is scaffolding: fall back to a 64-bit `jne`.
        vec![Form::JumpImm(Width::W64, ebpf_isa::Cond::Ne)]
    } else {
        jumps
    };
    let stmt = leaf.prop_recursive(cfg.depth, (n * 4) as u32, inner_n as u32, move |inner| {
        let branch = (
            select(jumps.clone()),
            general(),
            general(),
            any_imm(),
            vec(inner.clone(), 0..=inner_n),
            vec(inner.clone(), 0..=inner_n),
            any::<bool>(),
        )
            .prop_map(|(form, dst, r, i, then, els, long)| {
                let (width, cond, src) = match form {
                    Form::JumpReg(w, c) => (w, c, Operand::Reg(r)),
                    Form::JumpImm(w, c) => (w, c, Operand::Imm(i)),
                    _ => (Width::W64, ebpf_isa::Cond::Ne, Operand::Imm(i)),
                };
                Stmt::If {
                    width,
                    cond,
                    dst,
                    src,
                    then,
                    els,
                    long,
                }
            });
        let mut arms: Vec<(u32, BoxedStrategy<Stmt>)> = vec![(2, branch.boxed())];
        if loops > 0 {
            let looped = (1..=loops, general(), vec(inner, 1..=inner_n)).prop_map(
                |(iterations, tmp, body)| Stmt::Loop {
                    iterations,
                    tmp,
                    body,
                },
            );
            arms.push((1, looped.boxed()));
        }
        Union::new_weighted(arms)
    });
    vec(stmt, 1..=n).boxed()
}

/// Lays out the main function and the sub-functions; `None` if a jump does not fit.
fn lower(cfg: &StructuredConfig, main: &Function, subs: &[Function]) -> Option<StructuredProgram> {
    let n = subs.len();
    // Costs first, last function first: a function calls only functions after it.
    let mut costs = vec![0u64; n + 1];
    for k in (1..=n).rev() {
        let mut scratch = Emitter::new(cfg, n, &costs);
        costs[k] = scratch.function(k, &subs[k - 1]);
    }
    let mut e = Emitter::new(cfg, n, &costs);
    let max_steps = e.function(0, main);
    let mut functions = Vec::with_capacity(n);
    for (k, f) in subs.iter().enumerate() {
        functions.push(e.b.pc());
        e.function(k + 1, f);
    }
    let program = e.b.build().ok()?;
    Some(StructuredProgram {
        program,
        input_len: cfg.input_len,
        stack_bytes: cfg.stack_bytes,
        max_steps,
        functions,
        dead: e.dead,
    })
}

/// Emits functions into a builder; each emitting method returns the most instructions the
/// code it emitted can execute (the step bound), so the bound and the code cannot disagree.
struct Emitter<'a> {
    cfg: &'a StructuredConfig,
    b: Builder,
    /// `entries[k]`: the label of function `k` (`entries[0]`, main's, is never targeted).
    entries: Vec<Label>,
    /// Step bounds of the functions, known for every function a caller may call.
    costs: &'a [u64],
    /// The pcs of the instructions that never run.
    dead: Vec<usize>,
}

impl<'a> Emitter<'a> {
    fn new(cfg: &'a StructuredConfig, subs: usize, costs: &'a [u64]) -> Emitter<'a> {
        let mut b = Builder::new();
        let entries = (0..=subs).map(|_| b.label()).collect();
        Emitter {
            cfg,
            b,
            entries,
            costs,
            dead: Vec::new(),
        }
    }

    fn insn(&mut self, insn: Insn) -> u64 {
        self.b.insn(insn);
        insn.slots() as u64
    }

    fn mov(&mut self, dst: Reg, src: impl ebpf_isa::builder::IntoOperand) -> u64 {
        self.b.mov64(dst, src);
        1
    }

    fn constant(&mut self, dst: Reg, c: Const) -> u64 {
        match c {
            Const::Mov(i) => self.mov(dst, i),
            Const::Lddw(imm) => {
                self.b.lddw(dst, imm);
                2
            }
        }
    }

    fn function(&mut self, k: usize, f: &Function) -> u64 {
        self.b.bind(self.entries[k]);
        let mut cost = f.dead.as_ref().map_or(0, |d| self.dead(d));
        cost += self.mov(INPUT_REG, Reg::R1);
        let regs: &[Reg] = if k == 0 {
            &GENERAL_REGS
        } else {
            // A callee keeps r2..r5 from its caller (its arguments).
            &[Reg::R0, Reg::R1, Reg::R6, Reg::R7, Reg::R8]
        };
        for (i, &r) in regs.iter().enumerate() {
            cost += self.constant(r, f.inits[i]);
        }
        // The data area of the frame; loop counters sit above it and are written by loops.
        // The frame's initial contents come from the function's seed.
        let mut rng = SplitMix64::new(f.seed);
        let data_end = self.cfg.counter_bytes();
        let mut off = self.cfg.stack_bytes;
        while off > data_end {
            let value = rng.next_u64() as i32;
            self.b.stdw(Reg::R10, -(off as i16), value);
            cost += 1;
            off -= 8;
        }
        cost += self.block(k, &f.body, 0);
        if self.cfg.kernel_compatible && k + 1 < self.entries.len() {
            // Every function runs: each calls the next one last, and mixes its result in.
            self.b
                .mov64(Reg::R6, Reg::R0)
                .mov64(Reg::R1, INPUT_REG)
                .call_local(self.entries[k + 1])
                .xor64(Reg::R0, Reg::R6);
            cost += 4u64.saturating_add(self.costs[k + 1]);
        }
        cost + self.exit(k)
    }

    /// `exit`, after folding `r0` in the main function when configured.
    fn exit(&mut self, k: usize) -> u64 {
        let mut cost = 0;
        if k == 0 && self.cfg.fold_r0 {
            self.b
                .mov64(Reg::R1, Reg::R0)
                .rsh64(Reg::R1, 32)
                .xor64(Reg::R0, Reg::R1);
            cost += 3;
        }
        cost + self.insn(Insn::Exit)
    }

    /// Code that never runs behind `mov r0, value; j<cond> r0, imm`; returns the cost of the
    /// two instructions that do run.
    fn dead(&mut self, d: &Dead) -> u64 {
        let value = i64::from(d.value) as u64;
        let imm = i64::from(d.imm) as u64;
        let taken = match d.width {
            Width::W64 => semantics::cond64(d.cond, value, imm),
            Width::W32 => semantics::cond32(d.cond, value, imm),
        };
        let (junk, after) = (self.b.label(), self.b.label());
        self.b.mov64(Reg::R0, d.value);
        let target = if taken { after } else { junk };
        self.b.jump(d.width, d.cond, Reg::R0, d.imm, target);
        if !taken {
            self.b.ja(after);
        }
        self.b.bind(junk);
        for j in &d.junk {
            self.dead.push(self.b.pc());
            self.b.insn(junk_insn(*j));
        }
        self.b.bind(after);
        if taken { 2 } else { 3 }
    }

    fn block(&mut self, k: usize, stmts: &[Stmt], level: usize) -> u64 {
        stmts
            .iter()
            .fold(0u64, |c, s| c.saturating_add(self.stmt(k, s, level)))
    }

    fn stmt(&mut self, k: usize, stmt: &Stmt, level: usize) -> u64 {
        match stmt {
            Stmt::Op(insn) => self.insn(*insn),
            Stmt::Mem(m) => self.mem(m),
            Stmt::Exit if self.cfg.kernel_compatible => {
                // A conditional exit: the code after it stays reachable.
                let skip = self.b.label();
                self.b.jump(Width::W64, Cond::Set, Reg::R0, 1, skip);
                let cost = 1 + self.exit(k);
                self.b.bind(skip);
                cost
            }
            Stmt::Exit => self.exit(k),
            Stmt::Opaque(r) => self.opaque(*r),
            Stmt::Dead(d) => self.dead(d),
            Stmt::If {
                width,
                cond,
                dst,
                src,
                then,
                els,
                long,
            } => {
                let (then_label, end) = (self.b.label(), self.b.label());
                self.b.jump(*width, *cond, *dst, *src, then_label);
                let els_cost = self.block(k, els, level);
                if *long && self.cfg.max_cpu >= CpuVersion::V4 {
                    self.b.ja32(end);
                } else {
                    self.b.ja(end);
                }
                self.b.bind(then_label);
                let then_cost = self.block(k, then, level);
                self.b.bind(end);
                1 + then_cost.max(els_cost.saturating_add(1))
            }
            Stmt::Loop {
                iterations,
                tmp,
                body,
            } => {
                if 8 * (level + 1) > self.cfg.counter_bytes() {
                    // Deeper than the counters reserved (cannot happen: the tree is at most
                    // `depth` deep); run the body once.
                    return self.block(k, body, level);
                }
                let counter = -8 * (level as i16 + 1);
                let iterations = *iterations as i32;
                self.b.stdw(Reg::R10, counter, iterations);
                let head = self.b.label_here();
                let body_cost = self.block(k, body, level + 1);
                self.b
                    .ldxdw(*tmp, Reg::R10, counter)
                    .add64(*tmp, -1)
                    .stxdw(Reg::R10, counter, *tmp)
                    .jne(*tmp, 0, head);
                1 + (iterations as u64).saturating_mul(body_cost.saturating_add(4))
            }
            Stmt::Call { callee, after } => {
                let later = self.entries.len() - 1 - k;
                if later == 0 {
                    return 0;
                }
                let target = k + 1 + callee.index(later);
                self.b
                    .mov64(Reg::R1, INPUT_REG)
                    .call_local(self.entries[target]);
                for (r, &v) in GENERAL_REGS[1..6].iter().zip(after) {
                    self.b.mov64(*r, v);
                }
                7u64.saturating_add(self.costs[target])
            }
        }
    }

    /// `r` through the lowest data slot of the frame and back, with an atomic `or` of itself
    /// in between.
    fn opaque(&mut self, r: Reg) -> u64 {
        let slot = -(self.cfg.stack_bytes as i16);
        self.b
            .stxdw(Reg::R10, slot, r)
            .atomic_or64(Reg::R10, slot, r)
            .ldxdw(r, Reg::R10, slot);
        3
    }

    fn mem(&mut self, m: &Mem) -> u64 {
        let size = match m.form {
            Form::Load(size, _) | Form::StoreImm(size) | Form::StoreReg(size) => size,
            Form::Atomic(Width::W32, _) => Size::W,
            _ => Size::DW,
        };
        let bytes = size.bytes() as usize;
        let input_slots = self.cfg.input_len / bytes;
        let stack_data = self.cfg.stack_bytes - self.cfg.counter_bytes();
        let (base, off) = if m.input && input_slots > 0 {
            (INPUT_REG, (m.slot.index(input_slots) * bytes) as i16)
        } else {
            let pos = m.slot.index(stack_data / bytes) * bytes;
            (Reg::R10, pos as i16 - self.cfg.stack_bytes as i16)
        };
        let mut cost = 0;
        let (base, off, via) = match m.via {
            Some((p, shift)) => {
                // A shift that would push the offset out of 16 bits is dropped.
                let shift = if off.checked_sub(shift).is_some() {
                    shift
                } else {
                    0
                };
                // The pointer register must not be the value register, nor r0 (cmpxchg
                // compares with it).
                let p = if p == m.reg || p == Reg::R0 {
                    GENERAL_REGS[1..]
                        .iter()
                        .copied()
                        .find(|&r| r != m.reg)
                        .unwrap_or(Reg::R8)
                } else {
                    p
                };
                cost += self.mov(p, base);
                cost += self.insn(Insn::Alu {
                    width: Width::W64,
                    op: ebpf_isa::AluOp::Add,
                    dst: p,
                    src: Operand::Imm(i32::from(shift)),
                });
                (p, off - shift, Some(p))
            }
            None => (base, off, None),
        };
        let insn = match m.form {
            Form::Load(size, signed) => Insn::Load {
                size,
                signed,
                // Through a derived pointer, the loaded value overwrites the pointer.
                dst: via.unwrap_or(m.reg),
                src: base,
                off,
            },
            Form::StoreImm(size) => Insn::Store {
                size,
                dst: base,
                off,
                src: Operand::Imm(m.imm),
            },
            Form::StoreReg(size) => Insn::Store {
                size,
                dst: base,
                off,
                src: Operand::Reg(m.reg),
            },
            Form::Atomic(width, op) => Insn::Atomic {
                width,
                op,
                dst: base,
                src: m.reg,
                off,
            },
            _ => return cost,
        };
        cost += self.insn(insn);
        if let (Some(p), false) = (via, matches!(m.form, Form::Load(..))) {
            cost += self.mov(p, m.imm);
        }
        cost
    }
}

/// The one-slot instruction for a piece of junk.
fn junk_insn(j: Junk) -> Insn {
    match j {
        Junk::Misaligned => Insn::Store {
            size: Size::W,
            dst: Reg::R10,
            off: -6,
            src: Operand::Imm(1),
        },
        Junk::OutOfFrame => Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: 8,
            src: Operand::Imm(1),
        },
        Junk::UnwrittenStack => Insn::Load {
            size: Size::DW,
            signed: false,
            dst: Reg::R0,
            src: Reg::R10,
            off: -512,
        },
        Junk::UnknownHelper => Insn::Call {
            kind: CallKind::Helper,
            imm: 0x7fff_fff0,
        },
        Junk::WriteR10 => Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: Reg::R10,
            src: Operand::Imm(0),
        },
        Junk::UnwrittenRegister(r) => Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Operand::Reg(Reg::new(r).unwrap_or(Reg::R9)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ebpf_isa::{decode, disassemble};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{TestCaseError, TestRunner};

    use super::*;
    use crate::check::run;

    /// Everything [`StructuredProgram`] promises, checked by running it.
    fn keeps_promises(
        config: &StructuredConfig,
        s: &StructuredProgram,
        input: &[u8],
    ) -> Result<(), TestCaseError> {
        let text = || disassemble(&s.program);
        let out = run(s, input).map_err(|e| TestCaseError::fail(format!("{e}\n{}", text())))?;
        prop_assert!(out.steps <= s.max_steps);
        prop_assert!(out.depth <= s.functions.len());
        prop_assert_eq!(run(s, input).ok(), Some(out), "not deterministic");
        // Layout: every function ends with exit, right before the next one starts.
        let insns = s.program.insns();
        prop_assert_eq!(insns.last(), Some(&Insn::Exit));
        for &entry in &s.functions {
            prop_assert!(entry > 0);
            let before = s.program.iter().take_while(|(pc, _)| *pc < entry).last();
            prop_assert_eq!(before.map(|(_, i)| *i), Some(Insn::Exit));
        }
        // Only allowed instructions (plus the base scaffolding).
        let cfg = config.normalized();
        let (groups, cpu) = s.program.requirements();
        prop_assert!(cpu <= cfg.max_cpu);
        for g in groups {
            prop_assert!(
                cfg.groups.contains(&g) || matches!(g, Group::Base32 | Group::Base64),
                "{:?}",
                g
            );
        }
        prop_assert_eq!(decode(&s.program.to_bytes()).ok(), Some(s.program.clone()));
        Ok(())
    }

    /// The pcs some path reaches from pc 0: both ways of conditional jumps, calls' targets and
    /// the next instruction of everything but `exit` and `ja`.
    fn reachable(program: &Program) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut work = vec![0usize];
        while let Some(pc) = work.pop() {
            let Some(insn) = program.at_pc(pc) else {
                continue;
            };
            if !seen.insert(pc) {
                continue;
            }
            work.extend(insn.jump_target(pc));
            work.extend(insn.call_target(pc));
            if !matches!(insn, Insn::Exit | Insn::Ja { .. } | Insn::Ja32 { .. }) {
                work.push(pc + insn.slots());
            }
        }
        seen
    }

    fn small_v1() -> StructuredConfig {
        StructuredConfig {
            input_len: 0,
            stack_bytes: 0,
            statements: 4,
            depth: 2,
            max_iterations: 0,
            functions: 3,
            max_cpu: CpuVersion::V1,
            groups: vec![Group::Base32, Group::Base64],
            ..StructuredConfig::default()
        }
    }

    fn large() -> StructuredConfig {
        StructuredConfig {
            input_len: 1000,
            stack_bytes: 512,
            statements: 12,
            depth: 4,
            max_iterations: 3,
            functions: MAX_FUNCTIONS,
            ..StructuredConfig::default()
        }
    }

    /// What kernel-diff generates: register and stack only, what the kernel's verifier
    /// takes, folded, with hidden values and dead code.
    fn kernel() -> StructuredConfig {
        StructuredConfig {
            input_len: 0,
            kernel_compatible: true,
            fold_r0: true,
            opaque_values: true,
            dead_code: true,
            ..StructuredConfig::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The evaluator refuses every piece of junk, so a run that succeeds never ran one.
        /// And no instruction is out of every path's reach (the kernel refuses that).
        #[test]
        fn kernel_programs_keep_their_promises((s, input) in structured_with_input(kernel())) {
            keeps_promises(&kernel(), &s, &input)?;
            for &pc in &s.dead {
                prop_assert!(s.program.at_pc(pc).is_some_and(|i| i.slots() == 1));
            }
            let reached = reachable(&s.program);
            for (pc, _) in s.program.iter() {
                prop_assert!(reached.contains(&pc), "pc {} is unreachable\n{}", pc, disassemble(&s.program));
            }
        }

        #[test]
        fn default_programs_keep_their_promises((s, input) in structured_with_input(StructuredConfig::default())) {
            keeps_promises(&StructuredConfig::default(), &s, &input)?;
        }

        #[test]
        fn v1_programs_keep_their_promises((s, input) in structured_with_input(small_v1())) {
            keeps_promises(&small_v1(), &s, &input)?;
            prop_assert!(s.functions.is_empty());
        }

        #[test]
        fn large_programs_keep_their_promises((s, input) in structured_with_input(large())) {
            keeps_promises(&large(), &s, &input)?;
        }
    }

    /// The kernel options do what they say: immediates the kernel takes, every kind of junk,
    /// a fold before each main exit, and opaque round trips.
    #[test]
    fn kernel_options_show_up() {
        let mut runner = TestRunner::deterministic();
        let strategy = structured_program(kernel());
        let (mut junk, mut folds, mut opaque, mut dead) = (BTreeSet::new(), 0, 0, 0);
        for _ in 0..300 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            dead += s.dead.len();
            let insns: Vec<(usize, &Insn)> = s.program.iter().collect();
            for (i, &(pc, insn)) in insns.iter().enumerate() {
                if s.dead.contains(&pc) {
                    junk.insert(format!("{:?}", Form::of(insn)));
                    continue;
                }
                if let Insn::Alu {
                    width,
                    op,
                    src: Operand::Imm(imm),
                    ..
                } = *insn
                {
                    let bits = if width == Width::W64 { 64 } else { 32 };
                    match op {
                        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => assert!((0..bits).contains(&imm)),
                        AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod => assert_ne!(imm, 0),
                        _ => {}
                    }
                }
                let next = |k: usize| insns.get(i + k).map(|(_, insn)| **insn);
                if matches!(insn, Insn::Atomic { .. }) && matches!(next(1), Some(Insn::Load { .. }))
                {
                    opaque += 1;
                }
                if *insn == Insn::Exit
                    && i > 0
                    && matches!(insns[i - 1].1, Insn::Alu { op: AluOp::Xor, .. })
                {
                    folds += 1;
                }
            }
        }
        // Misaligned and out-of-frame stores are one form, as are the two register moves.
        assert!(junk.len() >= 4, "junk forms: {junk:?}");
        assert!(
            dead > 300 && folds > 300 && opaque > 100,
            "dead {dead}, folds {folds}, opaque {opaque}"
        );
    }

    #[test]
    fn config_is_clamped() {
        let c = StructuredConfig {
            input_len: usize::MAX,
            stack_bytes: 1,
            statements: 0,
            depth: 100,
            max_iterations: 100,
            functions: 100,
            max_cpu: CpuVersion::V2,
            groups: vec![],
            opaque_values: true,
            ..StructuredConfig::default()
        }
        .normalized();
        assert!(!c.opaque_values, "opaque values need atomics");
        assert_eq!(c.input_len, 32_768);
        assert_eq!(c.stack_bytes, 8 * (MAX_DEPTH as usize + 1));
        assert_eq!(c.statements, 1);
        assert_eq!(c.depth, MAX_DEPTH);
        assert_eq!(c.max_iterations, MAX_ITERATIONS);
        assert_eq!(c.functions, 0, "no local calls before v3");
        assert_eq!(
            StructuredConfig::default().normalized(),
            StructuredConfig::default()
        );
    }

    /// Every allowed operation, jump and memory form shows up, and so do loops and calls.
    #[test]
    fn generated_programs_cover_every_allowed_form() {
        let cfg = StructuredConfig::default();
        let mut runner = TestRunner::deterministic();
        let strategy = structured_program(cfg.clone());
        let (mut seen, mut calls, mut loops, mut slots) = (BTreeSet::new(), 0, 0, 0);
        for _ in 0..300 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            slots += s.program.slot_count();
            calls += usize::from(!s.functions.is_empty());
            for insn in s.program.insns() {
                seen.insert(format!("{:?}", Form::of(insn)));
                loops += usize::from(matches!(insn, Insn::Jump { off, .. } if *off < 0));
            }
        }
        let wanted = forms_where(|s| {
            cfg.allows(s)
                && !matches!(
                    s.form,
                    Form::Call(_) | Form::CallX | Form::LoadImm64(_) | Form::Packet(..)
                )
        });
        let missing: Vec<_> = wanted
            .iter()
            .map(|f| format!("{f:?}"))
            .filter(|f| !seen.contains(f))
            .collect();
        assert!(missing.is_empty(), "never generated: {missing:?}");
        assert!(calls > 100 && loops > 100, "calls {calls}, loops {loops}");
        // Programs stay small enough for fast tests: about 100 slots on average.
        assert!(slots / 300 < 400, "average {} slots", slots / 300);
    }
}
