//! eBPF to Cranelift IR: one function `fn(ctx) -> r0` for the whole program.
//!
//! Registers `r0`–`r10`, the remaining budget and the call depth are frontend `Variable`s, so
//! Cranelift's SSA construction and register allocator keep them in machine registers. The
//! blocks, their exits and the budget checkpoints come from [`Plan`]; each plan block is
//! emitted as a *fast* copy (no budget tests except at checkpoints) and, when a checkpoint's
//! test fails, a *checked* copy (see `plan.rs` for the scheme).
//!
//! Local calls are jumps: the call pushes `(return site, r6..r9, r10)` on the frame stack in
//! the context's scratch buffer and sets `r10` to the new frame; `exit` at depth 0 returns from
//! the function, deeper it pops the frame and continues at the return site through a jump
//! table. Helpers are called through the context's helper pointer.
//!
//! Every memory access is checked against the region table, inline (see [`Tx::memory`]).
//! Nothing here ever raises a hardware trap: failed checks, and the budget, branch to cold
//! blocks that store the trap in the context and return.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I32, I64};
use cranelift_codegen::ir::{
    self, AbiParam, AliasRegionData, AtomicRmwOp, BlockArg, Endianness, Function, InstBuilder,
    JumpTableData, MemFlagsData, Signature, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use ebpf_abi::{InvalidReason, layout, trap_code as code};
use ebpf_cfg::pointers;
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Insn, Operand, PacketAddr, Program, Reg,
    SignExtend, Size, SwapWidth, Width,
};

use crate::context::off;
use crate::hints::{self, Hint};
use crate::plan::{Plan, Target, Term};

/// `fn(ctx: *mut Context) -> u64`.
pub(crate) fn entry_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The helper entry point: `(ctx, id, r1, r2, r3, r4, r5) -> status`.
fn helper_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// Fills `func` (which has the [`entry_signature`]) with the translation of `program`.
pub(crate) fn translate(program: &Program, func: &mut Function, frontend: TargetFrontendConfig) {
    let call_conv = frontend.default_call_conv;
    let plan = Plan::build(program);
    let mut fctx = FunctionBuilderContext::new();
    let mut builder = FunctionBuilder::new(func, &mut fctx);
    let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
    let mut tx = Tx::new(&mut builder, program.insns(), &pcs, &plan, call_conv);
    tx.run();
    builder.seal_all_blocks();
    builder.finalize(frontend);
}

/// What a checked memory access does once its host address is known.
#[derive(Clone, Copy)]
enum MemOp {
    Load {
        size: Size,
        signed: bool,
    },
    Store {
        size: Size,
        value: Value,
    },
    Atomic {
        wide: bool,
        op: AtomicOp,
        src: Value,
        r0: Value,
    },
}

impl MemOp {
    /// The type of what [`Tx::mem_op`] returns.
    fn result_type(self) -> Option<ir::Type> {
        match self {
            MemOp::Load { .. } => Some(I64),
            MemOp::Store { .. } => None,
            MemOp::Atomic { wide, .. } => Some(if wide { I64 } else { I32 }),
        }
    }
}

/// A cold block whose contents are emitted after all the hot code (see [`Tx::emit_work`]).
enum Cold {
    /// A trap of `kind` at `pc`, with operands `a` (or 0) and `b`.
    Trap {
        block: ir::Block,
        pc: usize,
        kind: u64,
        a: Option<Value>,
        b: u64,
    },
    /// The budget trap at a computed pc.
    Budget { block: ir::Block, pc: Value },
    /// A helper call that failed: the trap code is its status, the operands it stored.
    Helper {
        block: ir::Block,
        pc: usize,
        status: Value,
    },
    /// A hinted access outside its guessed region: the full check, then the operation, then
    /// `cont(host address, result)`.
    Miss {
        block: ir::Block,
        cont: ir::Block,
        addr: Value,
        width: u32,
        write: bool,
        pc: usize,
        op: MemOp,
        /// Whether `cont` takes the host address (for a later access to reuse).
        keep: bool,
    },
}

/// Memory flags of the four kinds of memory generated code touches.
#[derive(Clone, Copy)]
struct Flags {
    /// VM memory: little-endian on every host, checked before the access.
    vm: MemFlagsData,
    /// The region table: never changes during a run, always in bounds.
    table: MemFlagsData,
    /// Scalar fields of the context that generated code writes (trap, budget left) or that
    /// helpers write (their result).
    ctx: MemFlagsData,
    /// Fields of the context that never change during a run (arguments, limits, pointers).
    fixed: MemFlagsData,
    /// The saved frames of local calls.
    frames: MemFlagsData,
}

/// The translator's state.
struct Tx<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    insns: &'a [Insn],
    pcs: &'a [usize],
    plan: &'a Plan,
    regs: [Variable; 11],
    remaining: Variable,
    depth: Variable,
    flags: Flags,
    ctx: Value,
    frames: Value,
    max_depth: Value,
    stack_size: Value,
    helper_fn: Value,
    helper_sig: ir::SigRef,
    /// Returns `r0` from the program.
    exit: ir::Block,
    /// Returns 0 after a trap (the trap is in the context).
    trapped: ir::Block,
    /// Pops a frame and continues at its return site.
    ret: ir::Block,
    /// Fast and checked copies of each plan block, created on first use.
    fast: Vec<Option<ir::Block>>,
    slow: Vec<Option<ir::Block>>,
    /// Fast copies still to emit.
    work: Vec<usize>,
    /// Region hints at each block's entry, and while emitting a block.
    entries: Vec<hints::State>,
    hints: hints::State,
    /// Accesses already checked in the current block: (address, width) to (host address,
    /// checked for writing).
    checked: HashMap<(Value, u32), (Value, bool)>,
    /// Per hinted region: bounds by (region, width, checked for writing), host address.
    bounds: HashMap<(u8, u32, bool), Value>,
    hosts: HashMap<u8, Value>,
    /// Whether `r10` is never written (frame offsets are exact, frame slots unchecked).
    frame_exact: bool,
    /// Whether the access being emitted is repeated later in the block (see
    /// [`reused_accesses`]).
    keep_address: bool,
    /// Cold blocks still to fill.
    cold: Vec<Cold>,
    /// Checked copies still to emit.
    work_slow: Vec<usize>,
    /// Trap stubs still to fill: block, pc, reason.
    stubs: Vec<(ir::Block, usize, InvalidReason)>,
}

impl<'a, 'f> Tx<'a, 'f> {
    fn new(
        b: &'a mut FunctionBuilder<'f>,
        insns: &'a [Insn],
        pcs: &'a [usize],
        plan: &'a Plan,
        call_conv: CallConv,
    ) -> Tx<'a, 'f> {
        let region = |b: &mut FunctionBuilder<'f>, id: u32, what: &'static str| {
            Some(b.func.dfg.alias_regions.insert(AliasRegionData {
                user_id: id,
                description: what.into(),
            }))
        };
        let vm_region = region(b, 1, "vm memory");
        let table_region = region(b, 2, "region table");
        let ctx_region = region(b, 3, "context");
        let frames_region = region(b, 4, "frames");
        let flags = Flags {
            vm: MemFlagsData::new()
                .with_notrap()
                .with_endianness(Endianness::Little)
                .with_alias_region(vm_region),
            table: MemFlagsData::trusted()
                .with_readonly()
                .with_can_move()
                .with_alias_region(table_region),
            ctx: MemFlagsData::trusted().with_alias_region(ctx_region),
            fixed: MemFlagsData::trusted()
                .with_readonly()
                .with_can_move()
                .with_alias_region(ctx_region),
            frames: MemFlagsData::trusted().with_alias_region(frames_region),
        };
        let helper_sig = b.import_signature(helper_signature(call_conv));

        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let ctx = b.block_params(entry)[0];
        let load =
            |b: &mut FunctionBuilder<'f>, offset: i32| b.ins().load(I64, flags.fixed, ctx, offset);
        let frames = load(b, off::FRAMES);
        let max_depth = load(b, off::MAX_DEPTH);
        let stack_size = load(b, off::STACK_SIZE);
        let helper_fn = load(b, off::HELPER);

        let regs = Reg::ALL.map(|_| b.declare_var(I64));
        let remaining = b.declare_var(I64);
        let depth = b.declare_var(I64);
        let zero = b.ins().iconst(I64, 0);
        for (i, &r) in regs.iter().enumerate() {
            let v = match i {
                1 => load(b, off::ARGS),
                2 => load(b, off::ARGS + 8),
                10 => frame_pointer(b, stack_size, zero),
                _ => zero,
            };
            b.def_var(r, v);
        }
        let budget = b.ins().load(I64, flags.ctx, ctx, off::REMAINING);
        b.def_var(remaining, budget);
        b.def_var(depth, zero);

        let exit = b.create_block();
        let trapped = b.create_block();
        b.set_cold_block(trapped);
        let ret = b.create_block();

        let n = plan.blocks.len();
        let frame_exact = !hints::writes_r10(insns);
        Tx {
            b,
            insns,
            pcs,
            plan,
            regs,
            remaining,
            depth,
            flags,
            ctx,
            frames,
            max_depth,
            stack_size,
            helper_fn,
            helper_sig,
            exit,
            trapped,
            ret,
            fast: vec![None; n],
            slow: vec![None; n],
            work: Vec::new(),
            work_slow: Vec::new(),
            cold: Vec::new(),
            stubs: Vec::new(),
            entries: hints::block_entries(plan, insns, frame_exact),
            frame_exact,
            hints: [Hint::Nothing; 11],
            checked: HashMap::new(),
            bounds: HashMap::new(),
            keep_address: false,
            hosts: HashMap::new(),
        }
    }

    /// Emits everything: the entry's jump, every reachable block copy, the shared tails.
    fn run(&mut self) {
        // The current block is the entry block.
        self.precompute_regions();
        self.goto(self.plan.entry, false);
        self.emit_work();
        self.emit_tails();
        self.emit_work();
        self.emit_stubs();
        self.emit_cold();
    }

    /// Emits the queued plan blocks: every fast copy first, then the checked copies.
    ///
    /// The order matters for the code's speed: Cranelift hoists loop invariants only while
    /// its dominator-tree walk has not yet left the loop, so blocks outside loops (checked
    /// copies, trap paths) come after the fast code in the layout.
    fn emit_work(&mut self) {
        loop {
            if let Some(b) = self.work.pop() {
                self.emit_block(b, false);
            } else if let Some(b) = self.work_slow.pop() {
                self.emit_block(b, true);
            } else {
                break;
            }
        }
    }

    /// Fills the deferred cold blocks (which may defer more).
    fn emit_cold(&mut self) {
        while let Some(cold) = self.cold.pop() {
            match cold {
                Cold::Trap {
                    block,
                    pc,
                    kind,
                    a,
                    b,
                } => {
                    self.b.switch_to_block(block);
                    self.jump_trap(pc, kind, a, 0, b);
                }
                Cold::Helper { block, pc, status } => {
                    self.b.switch_to_block(block);
                    let pc = self.iconst(I64, pc as i64);
                    let flags = self.flags.ctx;
                    let a = self.b.ins().load(I64, flags, self.ctx, off::TRAP_A);
                    let b = self.b.ins().load(I64, flags, self.ctx, off::TRAP_B);
                    self.trap_here(pc, status, a, b);
                }
                Cold::Budget { block, pc } => {
                    self.b.switch_to_block(block);
                    let kind = self.iconst(I64, code::BUDGET_EXHAUSTED as i64);
                    let zero = self.iconst(I64, 0);
                    self.trap_here(pc, kind, zero, zero);
                }
                Cold::Miss {
                    block,
                    cont,
                    addr,
                    width,
                    write,
                    pc,
                    op,
                    keep,
                } => {
                    self.b.switch_to_block(block);
                    let p = self.checked_address(addr, width, write, pc);
                    let r = self.mem_op(op, p, addr, pc);
                    if let Some(tail) = self.b.current_block() {
                        self.b.set_cold_block(tail);
                    }
                    let mut args: Vec<BlockArg> =
                        keep.then_some(BlockArg::Value(p)).into_iter().collect();
                    args.extend(r.map(BlockArg::Value));
                    self.b.ins().jump(cont, &args);
                }
            }
        }
    }

    fn emit_stubs(&mut self) {
        while let Some((stub, pc, reason)) = self.stubs.pop() {
            self.b.switch_to_block(stub);
            self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
        }
    }

    fn reg(&mut self, r: Reg) -> Value {
        self.b.use_var(self.regs[usize::from(r.index())])
    }

    fn set(&mut self, r: Reg, v: Value) {
        self.b.def_var(self.regs[usize::from(r.index())], v);
    }

    fn iconst(&mut self, ty: ir::Type, v: i64) -> Value {
        let v = match ty {
            I8 => v & 0xff,
            I16 => v & 0xffff,
            I32 => v & 0xffff_ffff,
            _ => v,
        };
        self.b.ins().iconst(ty, v)
    }

    /// The IR block of plan block `b` (its checked copy if `slow`), created on first use.
    fn block_for(&mut self, b: usize, slow: bool) -> ir::Block {
        let slot = if slow {
            &mut self.slow[b]
        } else {
            &mut self.fast[b]
        };
        if let Some(block) = *slot {
            return block;
        }
        let block = self.b.create_block();
        *slot = Some(block);
        if slow {
            self.b.set_cold_block(block);
            self.work_slow.push(b);
        } else {
            self.work.push(b);
        }
        block
    }

    /// Where an edge to `t` goes from code in the fast (`slow == false`) or checked copy:
    /// checkpoints always in the fast copy (they test the budget themselves).
    fn edge(&mut self, t: Target, slow: bool) -> ir::Block {
        match t {
            Target::Block(s) => {
                let checked = slow && !self.plan.blocks[s].checkpoint;
                self.block_for(s, checked)
            }
            Target::Trap { pc, reason } => {
                // Filled by `emit_stubs` (the current block must be finished first).
                let stub = self.b.create_block();
                self.b.set_cold_block(stub);
                self.stubs.push((stub, pc, reason));
                stub
            }
        }
    }

    /// Ends the current block with a jump to `t`.
    fn goto(&mut self, t: Target, slow: bool) {
        match t {
            Target::Block(_) => {
                let block = self.edge(t, slow);
                self.b.ins().jump(block, &[]);
            }
            Target::Trap { pc, reason } => {
                self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
            }
        }
    }

    /// Ends the current block with a jump to the trap exit; `dynamic_a` overrides `a`.
    fn jump_trap(&mut self, pc: usize, kind: u64, dynamic_a: Option<Value>, a: u64, b: u64) {
        let pc = self.iconst(I64, pc as i64);
        let kind = self.iconst(I64, kind as i64);
        let a = match dynamic_a {
            Some(v) => v,
            None => self.iconst(I64, a as i64),
        };
        let b = self.iconst(I64, b as i64);
        self.trap_here(pc, kind, a, b);
    }

    /// Ends the current block with a trap exit: stores the trap in the context and jumps to
    /// the shared `return 0`. (The stores happen at each site: one shared exit block taking
    /// the trap as block parameters from thousands of predecessors makes register
    /// allocation super-linear on large programs.)
    fn trap_here(&mut self, pc: Value, kind: Value, a: Value, b: Value) {
        for (v, offset) in [pc, kind, a, b].into_iter().zip([
            off::TRAP_PC,
            off::TRAP_KIND,
            off::TRAP_A,
            off::TRAP_B,
        ]) {
            self.b.ins().store(self.flags.ctx, v, self.ctx, offset);
        }
        self.b.ins().jump(self.trapped, &[]);
    }

    /// `if cond { trap }`: the trap's constants live in a cold block of their own, so the
    /// fast path only pays for the compare and branch.
    fn trap_if(&mut self, cond: Value, pc: usize, kind: u64, a: Option<Value>, b: u64) {
        self.cold_if(cond, |block| Cold::Trap {
            block,
            pc,
            kind,
            a,
            b,
        });
    }

    /// `if cond { goto cold }`: a new cold block, filled after the function body as `cold`
    /// describes it; translation continues in a fresh block on the fall-through side.
    fn cold_if(&mut self, cond: Value, cold: impl FnOnce(ir::Block) -> Cold) {
        let block = self.b.create_block();
        self.b.set_cold_block(block);
        let cont = self.b.create_block();
        self.b.ins().brif(cond, block, &[], cont, &[]);
        self.cold.push(cold(block));
        self.b.switch_to_block(cont);
    }

    /// In a checked copy: the budget trap if `remaining` (at block entry, `rem0`) does not
    /// cover the block's instruction `j`. Earlier checks passed, so the budget ran out at
    /// instruction `rem0` of the block, with no effect in between.
    fn budget_check(&mut self, rem0: Value, j: usize, block: usize) {
        let insns = self.plan.blocks[block].insns.clone();
        let start_pc = self.pcs[insns.start];
        let cond = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, rem0, j as i64);
        let mut pc = self.b.ins().iadd_imm_s(rem0, start_pc as i64);
        for (k, i) in insns.enumerate().take(j) {
            if self.insns[i].slots() == 2 {
                let after = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThan, rem0, k as i64);
                let one = self.b.ins().uextend(I64, after);
                pc = self.b.ins().iadd(pc, one);
            }
        }
        self.cold_if(cond, |block| Cold::Budget { block, pc });
    }

    fn emit_block(&mut self, bi: usize, slow: bool) {
        let plan = self.plan;
        let block = &plan.blocks[bi];
        let ir_block = self.block_for(bi, slow);
        self.b.switch_to_block(ir_block);
        let cost = block.cost();
        if !slow && block.checkpoint && block.limit > 0 {
            let rem = self.b.use_var(self.remaining);
            let short = self.b.ins().icmp_imm_s(
                IntCC::UnsignedLessThan,
                rem,
                i64::try_from(block.limit).unwrap_or(i64::MAX),
            );
            let checked = self.block_for(bi, true);
            let body = self.b.create_block();
            self.b.ins().brif(short, checked, &[], body, &[]);
            self.b.switch_to_block(body);
        }
        let rem0 = self.b.use_var(self.remaining);
        if cost > 0 {
            let rem = self.b.ins().iadd_imm_s(rem0, -(cost as i64));
            self.b.def_var(self.remaining, rem);
        }
        let controls = !matches!(block.term, Term::Fall(_) | Term::Trap { .. });
        let body_end = if controls {
            block.insns.end - 1
        } else {
            block.insns.end
        };
        let mut last_checked = None;
        self.hints = self.entries[bi];
        self.checked.clear();
        let reused = reused_accesses(&self.insns[block.insns.start..body_end]);
        for (j, i) in (block.insns.start..body_end).enumerate() {
            let insn = self.insns[i];
            self.keep_address = reused.get(j).copied().unwrap_or(false);
            if slow && has_effect(&insn) {
                self.budget_check(rem0, j, bi);
                last_checked = Some(j);
            }
            self.emit_insn(&insn, self.pcs[i]);
            hints::transfer(&mut self.hints, &insn);
        }
        if slow && cost > 0 && last_checked != Some(cost as usize - 1) {
            self.budget_check(rem0, cost as usize - 1, bi);
        }
        match block.term {
            Term::Fall(t) | Term::Jump(t) => self.goto(t, slow),
            Term::Branch { taken, fall } => {
                let insn = self.insns[block.insns.end - 1];
                let cond = self.condition(&insn);
                let taken = self.edge(taken, slow);
                let fall = self.edge(fall, slow);
                self.b.ins().brif(cond, taken, &[], fall, &[]);
            }
            Term::Exit => {
                if !plan.has_calls {
                    self.b.ins().jump(self.exit, &[]);
                } else {
                    let depth = self.b.use_var(self.depth);
                    self.b.ins().brif(depth, self.ret, &[], self.exit, &[]);
                }
            }
            Term::Call { target, site } => {
                self.local_call(self.pcs[block.insns.end - 1], site);
                // The return site is reached through `ret`'s jump table.
                if let Some(Target::Block(s)) = plan.sites.get(site).copied() {
                    self.block_for(s, false);
                }
                self.goto(target, slow);
            }
            Term::Trap { pc, reason } => {
                self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
            }
        }
    }

    /// The call-depth check, the frame push and the new `r10` of a local call.
    fn local_call(&mut self, pc: usize, site: usize) {
        let depth = self.b.use_var(self.depth);
        let over = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, depth, self.max_depth);
        self.trap_if(over, pc, code::CALL_DEPTH_EXCEEDED, None, 0);
        let offset = self.b.ins().imul_imm_s(depth, off::FRAME_WORDS * 8);
        let frame = self.b.ins().iadd(self.frames, offset);
        let site = self.iconst(I64, site as i64);
        self.b.ins().store(self.flags.frames, site, frame, 0);
        for (k, r) in [Reg::R6, Reg::R7, Reg::R8, Reg::R9, Reg::R10]
            .into_iter()
            .enumerate()
        {
            let v = self.reg(r);
            self.b
                .ins()
                .store(self.flags.frames, v, frame, 8 * (k as i32 + 1));
        }
        let depth = self.b.ins().iadd_imm_s(depth, 1);
        self.b.def_var(self.depth, depth);
        let fp = frame_pointer(self.b, self.stack_size, depth);
        self.set(Reg::R10, fp);
    }

    /// The shared blocks: program exit, frame pop, trap exits.
    fn emit_tails(&mut self) {
        // trapped: the trap is in the context.
        self.b.switch_to_block(self.trapped);
        let zero = self.iconst(I64, 0);
        self.b.ins().return_(&[zero]);

        // exit: store the budget left, return r0.
        self.b.switch_to_block(self.exit);
        let rem = self.b.use_var(self.remaining);
        self.b
            .ins()
            .store(self.flags.ctx, rem, self.ctx, off::REMAINING);
        let zero = self.iconst(I64, 0);
        self.b
            .ins()
            .store(self.flags.ctx, zero, self.ctx, off::TRAP_KIND);
        let r0 = self.reg(Reg::R0);
        self.b.ins().return_(&[r0]);

        // ret: pop a frame, continue at its return site.
        self.b.switch_to_block(self.ret);
        let depth = self.b.use_var(self.depth);
        let depth = self.b.ins().iadd_imm_s(depth, -1);
        self.b.def_var(self.depth, depth);
        let offset = self.b.ins().imul_imm_s(depth, off::FRAME_WORDS * 8);
        let frame = self.b.ins().iadd(self.frames, offset);
        let site = self.b.ins().load(I64, self.flags.frames, frame, 0);
        for (k, r) in [Reg::R6, Reg::R7, Reg::R8, Reg::R9, Reg::R10]
            .into_iter()
            .enumerate()
        {
            let v = self
                .b
                .ins()
                .load(I64, self.flags.frames, frame, 8 * (k as i32 + 1));
            self.set(r, v);
        }
        // Return sites of reachable calls; the others can never be on the frame stack.
        let plan = self.plan;
        let mut sites: Vec<Option<Target>> = vec![None; plan.sites.len()];
        for block in plan.blocks.iter().filter(|b| b.reachable) {
            if let Term::Call { site, .. } = block.term
                && let (Some(slot), Some(t)) = (sites.get_mut(site), plan.sites.get(site))
            {
                *slot = Some(*t);
            }
        }
        let mut blocks = Vec::with_capacity(sites.len());
        for t in sites {
            // Return-site blocks were created when their calls were emitted.
            blocks.push(t.map(|t| self.edge(t, false)));
        }
        if let Some(default) = blocks.iter().flatten().next().copied() {
            // Every entry needs its own `BlockCall`: the SSA builder appends arguments to each.
            let calls: Vec<_> = blocks
                .into_iter()
                .map(|b| self.b.func.dfg.block_call(b.unwrap_or(default), &[]))
                .collect();
            let default = self.b.func.dfg.block_call(default, &[]);
            let index = self.b.ins().ireduce(I32, site);
            let table = self
                .b
                .create_jump_table(JumpTableData::new(default, &calls));
            self.b.ins().br_table(index, table);
        } else {
            // No reachable local calls: the depth is always 0 and this block is unreachable.
            self.b.ins().jump(self.exit, &[]);
        }
    }

    /// Emits one instruction that does not end a block.
    fn emit_insn(&mut self, insn: &Insn, pc: usize) {
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => self.alu(width, op, dst, src),
            Insn::Neg { width, dst } => {
                let d = self.reg(dst);
                let v = match width {
                    Width::W64 => self.b.ins().ineg(d),
                    Width::W32 => {
                        let d = self.b.ins().ireduce(I32, d);
                        let n = self.b.ins().ineg(d);
                        self.b.ins().uextend(I64, n)
                    }
                };
                self.set(dst, v);
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => {
                let s = self.reg(src);
                let ty = match from {
                    SignExtend::From8 => I8,
                    SignExtend::From16 => I16,
                    SignExtend::From32 => I32,
                };
                let narrow = self.b.ins().ireduce(ty, s);
                let v = if width == Width::W64 {
                    self.b.ins().sextend(I64, narrow)
                } else if ty == I32 {
                    self.b.ins().uextend(I64, narrow)
                } else {
                    let w = self.b.ins().sextend(I32, narrow);
                    self.b.ins().uextend(I64, w)
                };
                self.set(dst, v);
            }
            Insn::Endian { order, width, dst } => {
                let d = self.reg(dst);
                let ty = match width {
                    SwapWidth::W16 => I16,
                    SwapWidth::W32 => I32,
                    SwapWidth::W64 => I64,
                };
                let v = match (order, ty) {
                    (ByteOrder::Le, I64) => d,
                    (ByteOrder::Le, _) => {
                        let n = self.b.ins().ireduce(ty, d);
                        self.b.ins().uextend(I64, n)
                    }
                    (_, I64) => self.b.ins().bswap(d),
                    _ => {
                        let n = self.b.ins().ireduce(ty, d);
                        let s = self.b.ins().bswap(n);
                        self.b.ins().uextend(I64, s)
                    }
                };
                self.set(dst, v);
            }
            Insn::LoadImm64 { dst, imm, .. } => {
                let v = self.iconst(I64, imm as i64);
                self.set(dst, v);
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let op = MemOp::Load { size, signed };
                if let Some(v) = self.memory(src, off, size.bytes(), false, pc, op) {
                    self.set(dst, v);
                }
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let value = match src {
                    Operand::Reg(r) => self.reg(r),
                    Operand::Imm(imm) => self.iconst(I64, i64::from(imm)),
                };
                self.memory(
                    dst,
                    off,
                    size.bytes(),
                    true,
                    pc,
                    MemOp::Store { size, value },
                );
            }
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => self.atomic(width, op, dst, src, off, pc),
            Insn::LoadPacket { size, addr, imm } => self.load_packet(size, addr, imm, pc),
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => {
                let id = self.iconst(I64, i64::from(imm as u32));
                self.helper_call(id, pc);
            }
            Insn::CallX { reg } => {
                let id = self.reg(reg);
                self.helper_call(id, pc);
            }
            // Control flow and what cannot execute end blocks (see `Plan`); never here.
            Insn::Ja { .. }
            | Insn::Ja32 { .. }
            | Insn::Jump { .. }
            | Insn::Exit
            | Insn::Call { .. } => {}
        }
    }

    fn alu(&mut self, width: Width, op: AluOp, dst: Reg, src: Operand) {
        let v = match width {
            Width::W64 => {
                let d = self.reg(dst);
                let (s, k) = match src {
                    Operand::Reg(r) => (self.reg(r), None),
                    Operand::Imm(imm) => (self.iconst(I64, i64::from(imm)), Some(i64::from(imm))),
                };
                self.binary(op, I64, d, s, k)
            }
            Width::W32 => {
                let d = self.reg(dst);
                let d = self.b.ins().ireduce(I32, d);
                let (s, k) = match src {
                    Operand::Reg(r) => {
                        let s = self.reg(r);
                        (self.b.ins().ireduce(I32, s), None)
                    }
                    Operand::Imm(imm) => (self.iconst(I32, i64::from(imm)), Some(i64::from(imm))),
                };
                let v = self.binary(op, I32, d, s, k);
                self.b.ins().uextend(I64, v)
            }
        };
        self.set(dst, v);
    }

    /// `d op s` in type `ty`; `k` is `s` when it is a constant (as a signed value of `ty`).
    /// Division and modulo never trap: by zero they give 0 and `d`, `MIN / -1` is `MIN` and
    /// `MIN % -1` is 0.
    fn binary(&mut self, op: AluOp, ty: ir::Type, d: Value, s: Value, k: Option<i64>) -> Value {
        match op {
            AluOp::Add => self.b.ins().iadd(d, s),
            AluOp::Sub => self.b.ins().isub(d, s),
            AluOp::Mul => self.b.ins().imul(d, s),
            AluOp::Or => self.b.ins().bor(d, s),
            AluOp::And => self.b.ins().band(d, s),
            AluOp::Xor => self.b.ins().bxor(d, s),
            AluOp::Mov => s,
            // Cranelift masks shift counts to the width, as eBPF does.
            AluOp::Lsh => self.b.ins().ishl(d, s),
            AluOp::Rsh => self.b.ins().ushr(d, s),
            AluOp::Arsh => self.b.ins().sshr(d, s),
            AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod => self.division(op, ty, d, s, k),
        }
    }

    fn division(&mut self, op: AluOp, ty: ir::Type, d: Value, s: Value, k: Option<i64>) -> Value {
        if let Some(k) = k {
            let zero = self.iconst(ty, 0);
            return match (op, k) {
                (AluOp::Div | AluOp::Sdiv, 0) => zero,
                (AluOp::Mod | AluOp::Smod, 0) => d,
                (AluOp::Sdiv, -1) => self.b.ins().ineg(d),
                (AluOp::Smod, -1) => zero,
                (AluOp::Div, _) => self.b.ins().udiv(d, s),
                (AluOp::Mod, _) => self.b.ins().urem(d, s),
                (AluOp::Sdiv, _) => self.b.ins().sdiv(d, s),
                _ => self.b.ins().srem(d, s),
            };
        }
        // A register divisor: branch around the division when it is 0 (or, signed, -1), so
        // that the common case has no selects on its dependency chain.
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, s, 0);
        let minus_one = self.iconst(ty, -1);
        let is_minus_one = self.b.ins().icmp(IntCC::Equal, s, minus_one);
        let special = match op {
            AluOp::Div | AluOp::Mod => is_zero,
            _ => self.b.ins().bor(is_zero, is_minus_one),
        };
        let normal = self.b.create_block();
        let odd = self.b.create_block();
        self.b.set_cold_block(odd);
        let join = self.b.create_block();
        let result = self.b.append_block_param(join, ty);
        self.b.ins().brif(special, odd, &[], normal, &[]);

        self.b.switch_to_block(normal);
        let v = match op {
            AluOp::Div => self.b.ins().udiv(d, s),
            AluOp::Mod => self.b.ins().urem(d, s),
            AluOp::Sdiv => self.b.ins().sdiv(d, s),
            _ => self.b.ins().srem(d, s),
        };
        self.b.ins().jump(join, &[BlockArg::Value(v)]);

        // x / 0 = 0, x % 0 = x, x / -1 = -x (MIN / -1 = MIN), x % -1 = 0.
        self.b.switch_to_block(odd);
        let zero = self.iconst(ty, 0);
        let v = match op {
            AluOp::Div => zero,
            AluOp::Mod => d,
            AluOp::Sdiv => {
                let neg = self.b.ins().ineg(d);
                self.b.ins().select(is_zero, zero, neg)
            }
            _ => self.b.ins().select(is_zero, d, zero),
        };
        self.b.ins().jump(join, &[BlockArg::Value(v)]);
        self.b.switch_to_block(join);
        result
    }

    /// The branch condition of a conditional jump.
    fn condition(&mut self, insn: &Insn) -> Value {
        let Insn::Jump {
            width,
            cond,
            dst,
            src,
            ..
        } = *insn
        else {
            return self.iconst(I8, 0);
        };
        let ty = if width == Width::W64 { I64 } else { I32 };
        let mut a = self.reg(dst);
        let b = match src {
            Operand::Reg(r) => {
                let v = self.reg(r);
                if ty == I32 {
                    self.b.ins().ireduce(I32, v)
                } else {
                    v
                }
            }
            Operand::Imm(imm) => self.iconst(ty, i64::from(imm)),
        };
        if ty == I32 {
            a = self.b.ins().ireduce(I32, a);
        }
        let cc = match cond {
            Cond::Set => {
                let and = self.b.ins().band(a, b);
                return self.b.ins().icmp_imm_s(IntCC::NotEqual, and, 0);
            }
            Cond::Eq => IntCC::Equal,
            Cond::Ne => IntCC::NotEqual,
            Cond::Gt => IntCC::UnsignedGreaterThan,
            Cond::Ge => IntCC::UnsignedGreaterThanOrEqual,
            Cond::Lt => IntCC::UnsignedLessThan,
            Cond::Le => IntCC::UnsignedLessThanOrEqual,
            Cond::Sgt => IntCC::SignedGreaterThan,
            Cond::Sge => IntCC::SignedGreaterThanOrEqual,
            Cond::Slt => IntCC::SignedLessThan,
            Cond::Sle => IntCC::SignedLessThanOrEqual,
        };
        self.b.ins().icmp(cc, a, b)
    }

    /// A checked memory access of `width` bytes at `base + off` doing `op`; returns what `op`
    /// returns (the loaded or old value).
    ///
    /// When `base` has a region hint, the access is first checked against that region alone
    /// ([`Tx::hinted_check`]) with loop-invariant bounds; when the guess fails, a cold copy of `op` runs
    /// after the full check ([`Tx::checked_address`]). Within a block, an access repeating an
    /// earlier one (same address value and width, no stronger permission needed) is not
    /// checked again.
    fn memory(
        &mut self,
        base: Reg,
        off: i16,
        width: u32,
        write: bool,
        pc: usize,
        op: MemOp,
    ) -> Option<Value> {
        let hint = self.hints[usize::from(base.index())];
        let base = self.reg(base);
        let addr = self.b.ins().iadd_imm_s(base, i64::from(off));
        if let Some(&(p, writable)) = self.checked.get(&(addr, width))
            && (writable || !write)
        {
            return self.mem_op(op, p, addr, pc);
        }
        let keep = self.keep_address;
        let hint = match hint {
            Hint::Frame { .. } if self.frame_exact && hint.frame_access_is_safe(off, width) => {
                // Inside the current frame: no check. (The mask keeps the host address inside
                // an object caller's stack even if one over 4 GiB made frame pointers wrap.)
                let (_, host) = self.region_values(layout::STACK as u8, width, write);
                let offset = self.b.ins().band_imm_s(addr, 0xffff_ffff);
                let p = self.b.ins().iadd(host, offset);
                let result = self.mem_op(op, p, addr, pc);
                if keep {
                    self.checked.insert((addr, width), (p, true));
                }
                return result;
            }
            Hint::Frame { .. } => Hint::Region(layout::STACK as u8),
            h => h,
        };
        let (p, result) = match hint {
            Hint::Region(region) => {
                let (inside, p_fast) = self.hinted_check(addr, region, width, write);
                let fast = self.b.create_block();
                let slow = self.b.create_block();
                self.b.set_cold_block(slow);
                let cont = self.b.create_block();
                let p = keep.then(|| self.b.append_block_param(cont, I64));
                let result = op
                    .result_type()
                    .map(|ty| self.b.append_block_param(cont, ty));
                self.b.ins().brif(inside, fast, &[], slow, &[]);
                self.cold.push(Cold::Miss {
                    block: slow,
                    cont,
                    addr,
                    width,
                    write,
                    pc,
                    op,
                    keep,
                });
                self.b.switch_to_block(fast);
                let r_fast = self.mem_op(op, p_fast, addr, pc);
                let mut args: Vec<BlockArg> =
                    p.map(|_| BlockArg::Value(p_fast)).into_iter().collect();
                args.extend(r_fast.map(BlockArg::Value));
                self.b.ins().jump(cont, &args);
                self.b.switch_to_block(cont);
                (p, result)
            }
            _ => {
                let p = self.checked_address(addr, width, write, pc);
                (Some(p), self.mem_op(op, p, addr, pc))
            }
        };
        if let Some(p) = p {
            self.checked.insert((addr, width), (p, write));
        }
        result
    }

    /// The check of an access to a hinted region: `(inside, host address)`. With `rel = addr -
    /// (region << 32)`, the access is inside the region iff `rel < bound`, where `bound` is
    /// `limit - width + 1` (0 when the region is shorter than `width`) and `limit` the
    /// region's length (0 for a store to a read-only region). Everything but `rel` is
    /// loop-invariant, and the host address is `host + rel`.
    fn hinted_check(&mut self, addr: Value, region: u8, width: u32, write: bool) -> (Value, Value) {
        let (bound, host) = self.region_values(region, width, write);
        let base = self.iconst(I64, (u64::from(region) << 32) as i64);
        let rel = self.b.ins().isub(addr, base);
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, rel, bound);
        (inside, self.b.ins().iadd(host, rel))
    }

    /// `(bound, host address)` of a hinted access (see [`Tx::hinted_check`]), computed once
    /// in the entry block: the region table does not change during a run.
    fn region_values(&mut self, region: u8, width: u32, write: bool) -> (Value, Value) {
        // The stack is always writable (the run allocates it; objects' hosts must too).
        let write = write && u64::from(region) != layout::STACK;
        if let (Some(&bound), Some(&host)) = (
            self.bounds.get(&(region, width, write)),
            self.hosts.get(&region),
        ) {
            return (bound, host);
        }
        let entry = off::REGIONS + i32::from(region) * (off::REGION_SIZE as i32);
        // Not `can_move`: as pure values Cranelift would place these loads at their uses
        // (inside loops); as ordinary loads they stay in the entry block, run once per run.
        let table = MemFlagsData::trusted().with_readonly();
        let len = self
            .b
            .ins()
            .load(I64, table, self.ctx, entry + off::REGION_LEN);
        let zero = self.iconst(I64, 0);
        let limit = if write {
            let writable = self
                .b
                .ins()
                .load(I64, table, self.ctx, entry + off::REGION_WRITABLE);
            self.opaque_select(writable, len, zero)
        } else {
            len
        };
        let fits =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, limit, i64::from(width));
        let bound = self.b.ins().iadd_imm_s(limit, 1 - i64::from(width));
        let bound = self.opaque_select(fits, bound, zero);
        // (Not biased by the region's base: Cranelift rematerialises `x - constant` at every
        // use.)
        let host = self.b.ins().load(I64, table, self.ctx, entry);
        (bound, host)
    }

    /// `if cond { a } else { b }` as control flow, so that the result is a block parameter:
    /// Cranelift cannot rematerialise it at its uses (a `select` of invariants would be
    /// recomputed inside loops whenever its loop-invariant code motion does not apply).
    fn opaque_select(&mut self, cond: Value, a: Value, b: Value) -> Value {
        let yes = self.b.create_block();
        let no = self.b.create_block();
        let join = self.b.create_block();
        let v = self.b.append_block_param(join, I64);
        self.b.ins().brif(cond, yes, &[], no, &[]);
        self.b.switch_to_block(yes);
        self.b.ins().jump(join, &[BlockArg::Value(a)]);
        self.b.switch_to_block(no);
        self.b.ins().jump(join, &[BlockArg::Value(b)]);
        self.b.switch_to_block(join);
        v
    }

    /// In the entry block: the bounds and hosts of every hinted access of the program.
    fn precompute_regions(&mut self) {
        let plan = self.plan;
        let mut wanted = Vec::new();
        for (b, block) in plan.blocks.iter().enumerate() {
            if !block.reachable {
                continue;
            }
            let mut state = self.entries[b];
            for insn in &self.insns[block.insns.clone()] {
                let access = match *insn {
                    Insn::Load { size, src, .. } => Some((src, size.bytes(), false)),
                    Insn::Store { size, dst, .. } => Some((dst, size.bytes(), true)),
                    Insn::Atomic { width, dst, .. } => {
                        Some((dst, if width == Width::W64 { 8 } else { 4 }, true))
                    }
                    _ => None,
                };
                let hint = access.map(|(base, ..)| state[usize::from(base.index())]);
                if let (Some((_, width, write)), Some(Hint::Region(_) | Hint::Frame { .. })) =
                    (access, hint)
                {
                    let region = match hint {
                        Some(Hint::Region(region)) => region,
                        _ => layout::STACK as u8,
                    };
                    let write = write && u64::from(region) != layout::STACK;
                    if !wanted.contains(&(region, width, write)) {
                        wanted.push((region, width, write));
                    }
                }
                hints::transfer(&mut state, insn);
            }
        }
        for (region, width, write) in wanted {
            let (bound, host) = self.region_values(region, width, write);
            self.bounds.insert((region, width, write), bound);
            self.hosts.insert(region, host);
        }
    }

    /// Emits `op` on host address `p` (already checked); `addr` and `pc` are for the
    /// alignment check of atomics.
    fn mem_op(&mut self, op: MemOp, p: Value, addr: Value, pc: usize) -> Option<Value> {
        let f = self.flags.vm;
        match op {
            MemOp::Load { size, signed } => {
                let ins = self.b.ins();
                Some(match (size, signed) {
                    (Size::B, false) => ins.uload8(I64, f, p, 0),
                    (Size::H, false) => ins.uload16(I64, f, p, 0),
                    (Size::W, false) => ins.uload32(f, p, 0),
                    (Size::DW, _) => ins.load(I64, f, p, 0),
                    (Size::B, true) => ins.sload8(I64, f, p, 0),
                    (Size::H, true) => ins.sload16(I64, f, p, 0),
                    (Size::W, true) => ins.sload32(f, p, 0),
                })
            }
            MemOp::Store { size, value } => {
                let ins = self.b.ins();
                match size {
                    Size::B => ins.istore8(f, value, p, 0),
                    Size::H => ins.istore16(f, value, p, 0),
                    Size::W => ins.istore32(f, value, p, 0),
                    Size::DW => ins.store(f, value, p, 0),
                };
                None
            }
            MemOp::Atomic { wide, op, src, r0 } => {
                let bytes: u32 = if wide { 8 } else { 4 };
                let misaligned = self.b.ins().band_imm_s(addr, i64::from(bytes - 1));
                self.trap_if(
                    misaligned,
                    pc,
                    code::MISALIGNED_ATOMIC,
                    Some(addr),
                    u64::from(bytes),
                );
                let ty = if wide { I64 } else { I32 };
                let (v, expected) = if wide {
                    (src, r0)
                } else {
                    (
                        self.b.ins().ireduce(I32, src),
                        self.b.ins().ireduce(I32, r0),
                    )
                };
                // Real host atomics: a shared region (a map value) is written by other runs
                // at the same time, so a load and a store would lose updates.
                let f = f.with_aligned();
                let rmw = match op {
                    AtomicOp::Add { .. } => Some(AtomicRmwOp::Add),
                    AtomicOp::Or { .. } => Some(AtomicRmwOp::Or),
                    AtomicOp::And { .. } => Some(AtomicRmwOp::And),
                    AtomicOp::Xor { .. } => Some(AtomicRmwOp::Xor),
                    AtomicOp::Xchg => Some(AtomicRmwOp::Xchg),
                    AtomicOp::Cmpxchg => None,
                };
                Some(match rmw {
                    Some(rmw) => self.b.ins().atomic_rmw(ty, f, rmw, p, v),
                    None => self.b.ins().atomic_cas(f, p, expected, v),
                })
            }
        }
    }

    fn checked_address(&mut self, addr: Value, width: u32, write: bool, pc: usize) -> Value {
        let hi = self.b.ins().band_imm_s(addr, 0x3f_0000_0000);
        let rel = self.b.ins().isub(addr, hi);
        // (hi >> 32) * 24 as (hi >> 29) * 3: a shift and a lea on x86-64.
        let eight = self.b.ins().ushr_imm_s(hi, 29);
        let sixteen = self.b.ins().ishl_imm_s(eight, 1);
        let offset = self.b.ins().iadd(eight, sixteen);
        let entry = self.b.ins().iadd(self.ctx, offset);
        let len = self
            .b
            .ins()
            .load(I64, self.flags.table, entry, off::REGION_LEN);
        let limit = if write {
            let writable = self
                .b
                .ins()
                .load(I64, self.flags.table, entry, off::REGION_WRITABLE);
            let zero = self.iconst(I64, 0);
            self.b.ins().select(writable, len, zero)
        } else {
            len
        };
        let end = self.b.ins().iadd_imm_s(rel, i64::from(width));
        let out = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, limit);
        let kind = if write {
            code::OUT_OF_BOUNDS_WRITE
        } else {
            code::OUT_OF_BOUNDS_READ
        };
        self.trap_if(out, pc, kind, Some(addr), u64::from(width));
        let host = self.b.ins().load(I64, self.flags.table, entry, 0);
        self.b.ins().iadd(host, rel)
    }

    /// Atomic read-modify-write: bounds (as a write) first, then alignment.
    fn atomic(&mut self, width: Width, op: AtomicOp, dst: Reg, src: Reg, off: i16, pc: usize) {
        let wide = width == Width::W64;
        let mem = MemOp::Atomic {
            wide,
            op,
            src: self.reg(src),
            r0: self.reg(Reg::R0),
        };
        let bytes = if wide { 8 } else { 4 };
        let Some(old) = self.memory(dst, off, bytes, true, pc, mem) else {
            return;
        };
        if op.fetches() {
            let old = if wide {
                old
            } else {
                self.b.ins().uextend(I64, old)
            };
            let to = if op == AtomicOp::Cmpxchg {
                Reg::R0
            } else {
                src
            };
            self.set(to, old);
        }
    }

    /// Legacy `LD_ABS`/`LD_IND`: a big-endian load from the input region into `r0`.
    fn load_packet(&mut self, size: Size, addr: PacketAddr, imm: i32, pc: usize) {
        let base = match addr {
            PacketAddr::Abs => self.iconst(I64, 0),
            PacketAddr::Ind(r) => self.reg(r),
        };
        let sum = self.b.ins().iadd_imm_s(base, i64::from(imm as u32));
        let offset = self.b.ins().band_imm_s(sum, 0xffff_ffff);
        let width = size.bytes();
        let entry = off::REGIONS + (layout::INPUT as i32) * (off::REGION_SIZE as i32);
        let len = self
            .b
            .ins()
            .load(I64, self.flags.table, self.ctx, entry + off::REGION_LEN);
        let end = self.b.ins().iadd_imm_s(offset, i64::from(width));
        let out = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
        let vm_addr = self.b.ins().bor_imm_s(offset, (layout::INPUT << 32) as i64);
        self.trap_if(
            out,
            pc,
            code::OUT_OF_BOUNDS_READ,
            Some(vm_addr),
            u64::from(width),
        );
        let host = self.b.ins().load(I64, self.flags.table, self.ctx, entry);
        let p = self.b.ins().iadd(host, offset);
        let f = self.flags.vm;
        let v = match size {
            Size::B => self.b.ins().uload8(I64, f, p, 0),
            Size::H => {
                let v = self.b.ins().load(I16, f, p, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
            _ => {
                let v = self.b.ins().load(I32, f, p, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
        };
        self.set(Reg::R0, v);
    }

    /// A helper call through the context: status 0 sets `r0` and zeroes `r1`–`r5`.
    fn helper_call(&mut self, id: Value, pc: usize) {
        let mut args = vec![self.ctx, id];
        for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
            args.push(self.reg(r));
        }
        let call = self
            .b
            .ins()
            .call_indirect(self.helper_sig, self.helper_fn, &args);
        let status = self.b.inst_results(call)[0];
        self.cold_if(status, |block| Cold::Helper { block, pc, status });
        let r0 = self
            .b
            .ins()
            .load(I64, self.flags.ctx, self.ctx, off::HELPER_R0);
        self.set(Reg::R0, r0);
        let zero = self.iconst(I64, 0);
        for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
            self.set(r, zero);
        }
    }
}

/// `r10` at call depth `depth`: the top of that frame in the stack region.
fn frame_pointer(b: &mut FunctionBuilder<'_>, stack_size: Value, depth: Value) -> Value {
    let below = b.ins().imul_imm_s(depth, ebpf_abi::STACK_FRAME_SIZE as i64);
    let top = b.ins().isub(stack_size, below);
    let offset = b.ins().band_imm_s(top, 0xffff_ffff);
    b.ins().bor_imm_s(offset, (layout::STACK << 32) as i64)
}

/// For each instruction of a block body: whether it is a memory access whose address (base
/// register, offset) and width a later instruction of the body accesses again before the base
/// register changes, so that the later one can skip its check.
fn reused_accesses(body: &[Insn]) -> Vec<bool> {
    fn access(insn: &Insn) -> Option<(Reg, i16, u32)> {
        match *insn {
            Insn::Load { size, src, off, .. } => Some((src, off, size.bytes())),
            Insn::Store { size, dst, off, .. } => Some((dst, off, size.bytes())),
            Insn::Atomic {
                width, dst, off, ..
            } => Some((dst, off, if width == Width::W64 { 8 } else { 4 })),
            _ => None,
        }
    }
    let mut reused = vec![false; body.len()];
    for (i, insn) in body.iter().enumerate() {
        let Some(a) = access(insn) else { continue };
        if pointers::insn_writes(insn, a.0) {
            continue;
        }
        for later in &body[i + 1..] {
            if access(later) == Some(a) {
                reused[i] = true;
                break;
            }
            if pointers::insn_writes(later, a.0) {
                break;
            }
        }
    }
    reused
}

/// Whether an instruction that does not end a block can trap or change anything outside the
/// registers: the checked copy tests the budget before each.
fn has_effect(insn: &Insn) -> bool {
    matches!(
        insn,
        Insn::Load { .. }
            | Insn::Store { .. }
            | Insn::Atomic { .. }
            | Insn::LoadPacket { .. }
            | Insn::Call { .. }
            | Insn::CallX { .. }
    )
}
