//! Running compiled code in-process: the context a run builds, the helper trampoline, the
//! conversion of the context's trap fields into an `ebpf_abi::Trap`, and the hand-over of a run
//! whose budget runs short to the interpreter.
//!
//! Generated code tests the budget only at checkpoints, each covering at most
//! `plan::MAX_STRETCH` instructions. When one finds less budget left than its stretch may use,
//! the code stops (`context::SUSPENDED`) with the run as it stands at the checkpoint in the
//! context: registers, call depth and frames, budget, pc. The interpreter then finishes the
//! run from there, exactly, on the same memory: it runs at most `MAX_STRETCH` instructions
//! before the budget runs out, so the hand-over costs microseconds, once per run, and only in
//! runs that end by exhausting their budget or come within a stretch of it.
//!
//! This file and `lib.rs` (mapping the code) hold the crate's only `unsafe`.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use ebpf_abi::{
    Binding, CallFrame, Exit, Helpers, Limits, MemoryMap, RawRegion, RawTrap, Region, Stack, Trap,
    TrapKind, layout, trap_code,
};
use ebpf_interp::RunState;

use crate::Finish;
use crate::context::{Context, FACT_FAILED, SUSPENDED, off};

/// The entry point of compiled code.
pub(crate) type EntryFn = unsafe extern "C" fn(*mut Context) -> u64;

/// What the helper trampoline needs: the helpers, the run's memory, and where to leave what
/// happened.
struct Host<'h, 'm> {
    helpers: &'h Helpers,
    memory: &'h mut MemoryMap<'m>,
    /// A trap a helper caused (reported with [`trap_code::HOST`]).
    trap: Option<TrapKind>,
    /// A helper's panic, resumed once generated code has returned.
    panic: Option<Box<dyn Any + Send>>,
    /// The context's region table is unmapped outside this bit set of rows.
    rows: u64,
    /// The map's generation when the table was last refreshed (see
    /// `MemoryMap::generation`).
    generation: u64,
}

/// The context of a finished run, kept per thread so that the next run rewrites only the
/// rows of its region table that can be mapped instead of building 64 entries. A run takes
/// it (a nested run, from a helper, finds none and makes its own) and puts it back when it
/// ends; a run that panics out drops it.
struct Spare {
    ctx: Context,
    /// `ctx.regions` is unmapped outside this bit set of rows.
    rows: u64,
    /// A session's saved call frames (`max_depth` of them, allocated with the session), which
    /// its fast path's context points to; empty in a thread's spare, whose runs use the
    /// stack's.
    frames: Vec<CallFrame>,
}

std::thread_local! {
    static SPARE: core::cell::Cell<Option<Box<Spare>>> = const { core::cell::Cell::new(None) };
}

impl Spare {
    fn take() -> Box<Spare> {
        SPARE
            .try_with(core::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(Spare::fresh)
    }

    /// A new context, for the thread's first run (out of line, so that a run's stack frame
    /// does not hold one).
    #[cold]
    #[inline(never)]
    fn fresh() -> Box<Spare> {
        Box::new(Spare {
            ctx: Context {
                regions: [RawRegion::UNMAPPED; ebpf_abi::REGION_TABLE_LEN],
                args: [0; 2],
                remaining: 0,
                stack_size: 0,
                max_depth: 0,
                frames: core::ptr::null_mut(),
                helper: trampoline,
                user: core::ptr::null_mut(),
                helper_r0: 0,
                trap_kind: trap_code::EXIT,
                trap_pc: 0,
                trap_a: 0,
                trap_b: 0,
                state: [0; 11],
                depth: 0,
                next: 0,
                host: 0,
            },
            rows: 0,
            frames: Vec::new(),
        })
    }

    /// Makes row `r` (a run's own buffer) describe `host`, `len`, `writable`: a compare when
    /// it already does. The address is exposed either way, so that the one generated code uses
    /// has this run's borrow as its freshest exposed provenance, as a rewritten row's would.
    #[inline(always)]
    fn set_run_row(&mut self, r: u64, host: *mut u8, len: u64, writable: u64) {
        let _ = host.expose_provenance();
        // (Field by field: comparing the structs would put the new row in memory first.)
        let kept = self
            .ctx
            .regions
            .get(r as usize)
            .is_some_and(|raw| raw.host == host && raw.len == len && raw.writable == writable);
        if !kept {
            self.replace_run_row(r, host, len, writable);
        }
    }

    /// [`Spare::set_run_row`] of a row that changed. (The row's words as arguments, in
    /// registers: a `RawRegion` argument would be stored in memory on every run.)
    #[cold]
    #[inline(never)]
    fn replace_run_row(&mut self, r: u64, host: *mut u8, len: u64, writable: u64) {
        if let Some(raw) = self.ctx.regions.get_mut(r as usize) {
            *raw = RawRegion {
                host,
                len,
                writable,
            };
            // (A superset of the rows mapped is harmless: a refresh unmaps the others.)
            self.rows |= 1 << r;
        }
    }

    /// [`Spare::set_run_row`] of `RawRegion::writable(bytes)`, compared with the buffer
    /// itself: the region's length clamp costs more than the compare.
    #[inline(always)]
    fn set_buffer_row(&mut self, r: u64, bytes: &mut [u8]) {
        let kept = self.ctx.regions.get(r as usize).is_some_and(|raw| {
            raw.host == bytes.as_mut_ptr() && raw.len == bytes.len() as u64 && raw.writable == 1
        });
        if kept {
            let _ = bytes.as_mut_ptr().expose_provenance();
        } else {
            let RawRegion {
                host,
                len,
                writable,
            } = RawRegion::writable(bytes);
            self.set_run_row(r, host, len, writable);
        }
    }

    /// Makes row `r` (a run's own buffer) unmapped: a test of its address when it already is
    /// (a row with a null host address describes nothing).
    #[inline(always)]
    fn unmap_run_row(&mut self, r: u64) {
        if self
            .ctx
            .regions
            .get(r as usize)
            .is_some_and(|raw| !raw.host.is_null())
        {
            let RawRegion {
                host,
                len,
                writable,
            } = RawRegion::UNMAPPED;
            self.replace_run_row(r, host, len, writable);
        }
    }

    fn put_back(mut self: Box<Spare>) {
        // No pointer of the finished run stays reachable but the table's, which the next run
        // rewrites (the rows in `rows`) before generated code sees it.
        self.ctx.user = core::ptr::null_mut();
        self.ctx.frames = core::ptr::null_mut();
        // During thread teardown there is nowhere to keep it: drop it.
        let _ = SPARE.try_with(|s| s.set(Some(self)));
    }
}

/// The helper entry point of in-process runs.
///
/// # Safety
///
/// `ctx` must be the context of a run in progress ([`run`]), whose `user` points to its
/// [`Host`] or is null.
unsafe extern "C" fn trampoline(
    ctx: *mut Context,
    id: u64,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
) -> u64 {
    // SAFETY: generated code passes on the context pointer `run` gave it; `run` keeps the
    // context alive and does not touch it while generated code (and so this call) runs.
    let ctx = unsafe { &mut *ctx };
    // The fast path runs code that calls no helper with no host (`user` null): a call here
    // would mean that `calls_helpers` missed an instruction that calls this entry. Trap, as
    // the x86 JIT does, rather than dereference null.
    if ctx.user.is_null() {
        return called_without_host(ctx, id);
    }
    // SAFETY: `run` stored a pointer to its live, otherwise unused `Host` in `user` (not
    // null, checked above).
    let host = unsafe { &mut *ctx.user.cast::<Host<'_, '_>>() };
    let helpers = host.helpers;
    let memory = &mut *host.memory;
    let result = catch_unwind(AssertUnwindSafe(|| {
        helpers.call(id, [r1, r2, r3, r4, r5], memory)
    }));
    match result {
        // The common call stays here: only a helper that failed, panicked or moved the
        // map's generation goes out of line, so this saves few registers.
        Ok(Ok(r0)) if host.memory.generation() == host.generation => {
            ctx.helper_r0 = r0;
            trap_code::EXIT
        }
        result => after_helper(ctx, host, id, result),
    }
}

/// A helper called from code run without a host: the run traps with helper `id` failed (the
/// message is `outcome`'s, the x86 JIT's "helper called without a map").
#[cold]
#[inline(never)]
fn called_without_host(ctx: &mut Context, id: u64) -> u64 {
    ctx.trap_a = id;
    trap_code::HOST
}

/// The trampoline's slow path: a helper that reached a region's bytes through `&mut` (or
/// changed the map), failed or panicked.
#[cold]
#[inline(never)]
fn after_helper(
    ctx: &mut Context,
    host: &mut Host<'_, '_>,
    id: u64,
    result: std::thread::Result<Result<u64, TrapKind>>,
) -> u64 {
    // A helper that reached the regions' bytes through `&mut` (or changed the map): refresh
    // the raw table from the map, as the contract asks, with pointers derived afresh. One that
    // only read, or used shared map memory, leaves the generation and the table as they were.
    if host.memory.generation() != host.generation {
        host.rows = host.memory.refresh_raw_table(&mut ctx.regions, host.rows);
        host.generation = host.memory.generation();
    }
    match result {
        Ok(Ok(r0)) => {
            ctx.helper_r0 = r0;
            trap_code::EXIT
        }
        Ok(Err(kind)) => {
            host.trap = Some(kind);
            trap_code::HOST
        }
        Err(payload) => {
            host.panic = Some(payload);
            host.trap = Some(TrapKind::HelperFailed {
                id: id as u32,
                message: "helper panicked".to_string(),
            });
            trap_code::HOST
        }
    }
}

/// Runs `program` (or its fallback code, when its code was compiled with the facts of an
/// entry the run does not satisfy) on this thread's context (see `CraneliftProgram::run`).
pub(crate) fn run<'m>(
    program: &crate::CraneliftProgram,
    memory: &mut MemoryMap<'m>,
    args: [u64; 2],
    helpers: &Helpers,
    limits: &Limits,
    stack: &'m mut Stack,
) -> Result<Exit, Trap> {
    let mut spare = Spare::take();
    let result = run_on_map(program, &mut spare, limits, memory, args, helpers, stack);
    spare.put_back();
    result
}

/// A run of the code at `entry` on `spare`'s context.
///
/// # Safety
///
/// `entry` must be the entry point of code generated by this crate's translator for the
/// host, still mapped, and `finish` that code's program's.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "`run`'s arguments and the context"
)]
unsafe fn run_on<'m>(
    spare: &mut Spare,
    entry: EntryFn,
    finish: &Finish,
    memory: &mut MemoryMap<'m>,
    args: [u64; 2],
    helpers: &Helpers,
    limits: &Limits,
    stack: &'m mut Stack,
) -> Result<Exit, Trap> {
    const _: () = assert!(size_of::<CallFrame>() == off::FRAME_WORDS as usize * 8);
    // As the interpreter: the stack is one region of `stack_size` bytes, lent by the caller.
    let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
    // The depth the contract enforces (`max_call_depth` clamped to `MAX_CALL_DEPTH`). Generated
    // code keeps `FRAME_WORDS` words per saved frame: a `CallFrame` is exactly that.
    let max_depth = limits.max_depth();
    let (region, kept_frames) = stack.parts(stack_size);
    if kept_frames.len() < max_depth {
        kept_frames.resize(max_depth, CallFrame::default());
    }
    let frames: *mut u64 = kept_frames.as_mut_ptr().cast();
    memory.insert(layout::STACK, Region::Writable(region));
    let mut host = Host {
        helpers,
        memory,
        trap: None,
        panic: None,
        rows: 0,
        generation: 0,
    };
    let budget = limits.budget.unwrap_or(u64::MAX);
    let frame = (limits.stack_size(), limits.max_depth());
    start_state(&mut spare.ctx, args, budget, frame, frames);
    host.rows = host
        .memory
        .refresh_raw_table(&mut spare.ctx.regions, spare.rows);
    host.generation = host.memory.generation();
    spare.rows = host.rows;
    let ctx = &mut spare.ctx;
    ctx.user = (&raw mut host).cast();
    let ctx_ptr: *mut Context = &raw mut *ctx;
    // SAFETY: `entry` is generated code for this host (the caller's promise) with the C ABI
    // `fn(*mut Context) -> u64`. The context is fully initialised: its region table describes
    // live buffers (the map's regions and `stack`, all outliving the call; rows outside
    // `host.rows` are unmapped), `frames` has room for `max_depth` frames of `FRAME_WORDS`
    // words (the stack's frames are not touched while the map borrows its bytes), `helper` is
    // `trampoline` and `user` points to `host`. Generated code touches only those, after
    // checking every VM access against the table, and nothing else uses `ctx`, `host`,
    // `stack` or `frames` until it returns.
    let r0 = unsafe { entry(ctx_ptr) };
    ctx.user = core::ptr::null_mut();
    if let Some(payload) = host.panic.take() {
        // A helper panicked: let the panic continue, as it does through the interpreter.
        resume_unwind(payload);
    }
    // SAFETY: `frames` points to the `max_depth` frames `stack.frames` lent, which live as
    // long as `stack`; generated code, their only other user, has returned, and the map
    // borrows only the stack's bytes.
    unsafe {
        finish_run(
            ctx, r0, frames, max_depth, finish, helpers, limits, budget, &mut host,
        )
    }
}

/// Sets the context's fields for a run from the entry (everything but the region table and
/// `user`): `stack_size` and `max_depth` are the limits'.
#[inline(always)]
fn start_state(
    ctx: &mut Context,
    args: [u64; 2],
    budget: u64,
    (stack_size, max_depth): (u64, usize),
    frames: *mut u64,
) {
    ctx.args = args;
    ctx.remaining = budget;
    set_fixed_words(ctx, (stack_size, max_depth), frames);
}

/// Sets the words of the context that are the same at the entry of every run on one
/// session: the frame's shape, the helper entry point, and the outputs and scratch words as
/// a fresh run finds them (no trap, depth 0). A session's fast path writes them once
/// (`Session::fixed_table`) and then only `args` and `remaining` per run: a run that exits
/// leaves them so (why: `Session::run_ready`).
#[inline(always)]
fn set_fixed_words(ctx: &mut Context, (stack_size, max_depth): (u64, usize), frames: *mut u64) {
    ctx.stack_size = stack_size;
    ctx.max_depth = max_depth as u64;
    ctx.frames = frames;
    ctx.helper = trampoline;
    ctx.helper_r0 = 0;
    ctx.trap_kind = trap_code::EXIT;
    ctx.trap_pc = 0;
    ctx.trap_a = 0;
    ctx.trap_b = 0;
    ctx.depth = 0;
    ctx.next = 0;
    ctx.host = 0;
}

/// The result of a run whose code returned `r0`: its exit or trap, or — when the code
/// suspended — what the interpreter makes of the rest.
///
/// # Safety
///
/// `frames` points to `max_depth` saved frames that nothing else uses (generated code has
/// returned).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "a run's state, handed on")]
unsafe fn finish_run(
    ctx: &Context,
    r0: u64,
    frames: *mut u64,
    max_depth: usize,
    finish: &Finish,
    helpers: &Helpers,
    limits: &Limits,
    budget: u64,
    host: &mut Host<'_, '_>,
) -> Result<Exit, Trap> {
    if ctx.trap_kind == FACT_FAILED {
        // Checked facts: a check the facts declared impossible failed. That is a bug in the
        // facts, not in the program; say so as loudly as possible.
        let pc = ctx.trap_pc;
        panic!(
            "ebpf-jit-cranelift (checked facts): a check the facts declared impossible failed \
             at pc {pc}"
        );
    }
    if ctx.trap_kind == SUSPENDED {
        // SAFETY: the caller's promise.
        let frames = unsafe { core::slice::from_raw_parts(frames.cast::<CallFrame>(), max_depth) };
        hand_over(ctx, frames, finish, helpers, limits, host)
    } else {
        outcome(ctx, r0, budget, limits, host)
    }
}

/// A program bound to its helpers, limits and fixed regions for runs on one thread
/// (`Executable::session`): it owns its context (no thread-local per run), keeps the fixed
/// regions' rows of the region table, and — for code that calls no helper — writes only the
/// rows of the run's own buffers (input, metadata, stack) per run, building the run's map
/// only when the run suspends (the interpreter finishes it on the map).
pub(crate) struct Session {
    /// The program: its code (mapped while it lives), what finishes a suspended run, and —
    /// when its code was compiled with an entry's facts (`gated`) — the gate: a run its entry
    /// does not quickly admit (`CraneliftProgram::fast_admits`) goes through its `run_in`,
    /// which checks the gate and runs the fallback code when the run is not admitted.
    program: Arc<crate::CraneliftProgram>,
    entry: EntryFn,
    gated: bool,
    binding: Arc<dyn Binding>,
    /// The binding's limits (read on every run; a copy saves the virtual call).
    limits: Limits,
    spill: ebpf_abi::MapSpill,
    /// The helpers' stack mark of the mapped runs since it was last taken (a fast run calls
    /// no helper).
    helper_stack_mark: Option<u64>,
    spare: Box<Spare>,
    /// The table holds the fixed regions' rows and, of the rest, at most the rows of the
    /// run's own buffers (`spare.rows` says which may be mapped), and the context's words
    /// that are the same for every run are set (`set_fixed_words`): what the fast path
    /// writes on. A mapped run, or a fast one that did not exit, may leave other rows or
    /// words, and clears it.
    fast_table: bool,
    /// `input_fast && fast_table`, in one flag: `run_input` tests only this on its fast path.
    input_ready: bool,
    /// Whether the program calls a helper (a kfunc, `callx`): then every run builds its map.
    calls_helpers: bool,
    /// The limits' stack size (in bytes), call depth and budget (`u64::MAX` without one),
    /// worked out once.
    stack_size: usize,
    max_depth: usize,
    budget: u64,
    /// Whether every run of an input alone (`run_input`: `r1`/`r2` its start and length, at
    /// most `u32::MAX` bytes) takes the fast path: the code calls no helper and its entry asks
    /// at most what such a run gives (`Admission::input_only`). Worked out once.
    input_fast: bool,
}

impl Session {
    /// # Safety
    ///
    /// `entry` must be the entry point of `program`'s code, generated by this crate's
    /// translator for the host (it stays mapped while `program` lives).
    pub(crate) unsafe fn new(
        program: Arc<crate::CraneliftProgram>,
        entry: EntryFn,
        binding: Arc<dyn Binding>,
    ) -> Session {
        let calls_helpers = program.finish.program.iter().any(|(_, insn)| {
            matches!(
                insn,
                ebpf_isa::Insn::Call {
                    kind: ebpf_isa::CallKind::Helper | ebpf_isa::CallKind::Btf,
                    ..
                } | ebpf_isa::Insn::CallX { .. }
            )
        });
        let limits = *binding.limits();
        let input_fast = !calls_helpers
            && program.fallback.as_ref().is_none_or(|fallback| {
                fallback.gate.admission().input_only() == Some(layout::INPUT as u8)
            });
        Session {
            input_fast,
            gated: program.fallback.is_some(),
            program,
            entry,
            stack_size: usize::try_from(limits.stack_size()).unwrap_or(usize::MAX),
            max_depth: limits.max_depth(),
            budget: limits.budget.unwrap_or(u64::MAX),
            limits,
            binding,
            spill: ebpf_abi::MapSpill::default(),
            spare: {
                let mut spare = Spare::fresh();
                spare.frames = vec![CallFrame::default(); limits.max_depth()];
                spare
            },
            fast_table: false,
            input_ready: false,
            helper_stack_mark: None,
            calls_helpers,
        }
    }

    /// A run on a map of the fixed regions and the run's buffers.
    #[cold]
    #[inline(never)]
    fn run_mapped(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        self.fast_table = false;
        self.input_ready = false;
        let binding = &*self.binding;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        ebpf_abi::map_run(&mut map, binding, data, metadata);
        let result = run_on_map(
            &self.program,
            &mut self.spare,
            &self.limits,
            &mut map,
            args,
            binding.helpers(),
            stack,
        );
        self.helper_stack_mark =
            ebpf_abi::lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        result
    }

    /// A fast run that did not exit: it suspended (the interpreter finishes it on a map of
    /// the run's regions) or trapped.
    #[cold]
    #[inline(never)]
    fn finish_mapped(
        &mut self,
        r0: u64,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        stack: &mut Stack,
        budget: u64,
    ) -> Result<Exit, Trap> {
        // (The run may have left trap words, a depth or other rows: the next fast run starts
        // from `fixed_table` again.)
        self.fast_table = false;
        self.input_ready = false;
        let limits = &self.limits;
        let binding = &*self.binding;
        let (stack_size, max_depth) = (self.stack_size, self.max_depth);
        let (region, _) = stack.parts(stack_size);
        // The frames the code used: the session's own, through the pointer it was given.
        let frames = self.spare.ctx.frames;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        ebpf_abi::map_run(&mut map, binding, data, metadata);
        map.insert(layout::STACK, Region::Writable(region));
        let mut host = Host {
            helpers: binding.helpers(),
            memory: &mut map,
            trap: None,
            panic: None,
            rows: self.spare.rows,
            generation: 0,
        };
        // SAFETY: `frames` points to the session's `max_depth` frames (`fixed_table` set it
        // from `spare.frames`, untouched since), which generated code, their only other user,
        // no longer uses.
        let result = unsafe {
            finish_run(
                &self.spare.ctx,
                r0,
                frames,
                max_depth,
                &self.program.finish,
                binding.helpers(),
                limits,
                budget,
                &mut host,
            )
        };
        self.helper_stack_mark =
            ebpf_abi::lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        result
    }

    /// Makes the table hold the fixed regions' rows only (every other row unmapped), derived
    /// from the binding (whose regions are the same on every call and outlive the session).
    #[cold]
    #[inline(never)]
    fn fixed_table(&mut self) {
        let mut fixed = MemoryMap::new();
        self.binding.map_fixed(&mut fixed);
        let spare = &mut *self.spare;
        spare.rows = fixed.refresh_raw_table(&mut spare.ctx.regions, spare.rows);
        // (A mapped run may have set other words, or a trap left its own: the fast path
        // writes only what changes from run to run.)
        let frames: *mut u64 = spare.frames.as_mut_ptr().cast();
        set_fixed_words(
            &mut spare.ctx,
            (self.stack_size as u64, self.max_depth),
            frames,
        );
        spare.ctx.user = core::ptr::null_mut();
        self.fast_table = true;
        self.input_ready = self.input_fast;
    }

    /// A run the fast path admits (see [`ebpf_abi::Session::run`] below): makes the table
    /// ready if it is not, then [`Session::run_ready`].
    #[inline(always)]
    fn run_fast(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        if !self.fast_table {
            // Only the fixed regions' rows and words; the run's rows follow.
            self.fixed_table();
        }
        self.run_ready(data, metadata, args, stack)
    }

    /// `run_input`'s fast path when the table is not ready (out of line: the first run, or
    /// the first after a mapped run or a trap).
    #[cold]
    #[inline(never)]
    fn run_input_unready(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (The arguments worked out here: passed in, they were stored in memory on every run.)
        let args = layout::input_args(data.len() as u64);
        self.run_fast(Some(data), None, args, stack)
    }

    /// [`Session::run_fast`] on a ready table (`fast_table`): writes the rows of the run's own
    /// buffers that changed, `r1`/`r2` and the budget, and calls the code.
    ///
    /// Nothing else is written per run: the words `set_fixed_words` sets are the same at
    /// the entry of every run, and a run that exits leaves them so — the frame's shape, the
    /// helper entry point and `user` are never written by generated code; `trap_kind` is
    /// `EXIT` again (the exit path stores it); `trap_pc`, `trap_a`, `trap_b`, `depth` and
    /// `next` are written only on the way to a trap, a suspension or another unit, which
    /// never exit from here (the dispatcher of a program of several units writes `depth` and
    /// `next` itself on entry, before any unit reads them); `host` is written by the check
    /// function before it is read; `helper_r0` only by a helper call, which code run here
    /// never makes. A run that does not exit clears `fast_table` (`finish_mapped`).
    #[inline(always)]
    fn run_ready(
        &mut self,
        mut data: Option<&mut [u8]>,
        mut metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        let spare = &mut *self.spare;
        // The rows of this run's own buffers, their pointers derived from this run's borrows
        // (the stack's too: the caller scrubbed it through `&mut` since the last run).
        let region = stack.raw_region(self.stack_size);
        spare.set_run_row(layout::STACK, region.host, region.len, region.writable);
        match data.as_deref_mut() {
            Some(data) => spare.set_buffer_row(layout::INPUT, data),
            None => spare.unmap_run_row(layout::INPUT),
        }
        match metadata.as_deref_mut() {
            Some(metadata) => spare.set_buffer_row(layout::METADATA, metadata),
            None => spare.unmap_run_row(layout::METADATA),
        }
        let budget = self.budget;
        let ctx = &mut spare.ctx;
        // (Word by word: an array argument was put in memory by two stores and read back by
        // one wider load, which cannot be forwarded from them.)
        ctx.args[0] = args[0];
        ctx.args[1] = args[1];
        ctx.remaining = budget;
        let ctx_ptr: *mut Context = &raw mut *ctx;
        // SAFETY: `entry` is generated code for this host, mapped while `self.program` lives
        // (`Session::new`'s promise). The context is initialised for a run from the entry:
        // its table holds the fixed regions' rows (derived from the binding's, which the
        // session keeps alive and whose bytes are never reached through `&mut`) and the rows
        // of `data`, `metadata` and the stack region, derived from their borrows above,
        // which nothing else uses until the code returns; every other row is unmapped; the
        // other words are those of a run from the entry (above), `frames` pointing to the
        // session's `max_depth` frames (`fixed_table`), which live as long as it. The code
        // calls no helper, so `user` (null) is never read.
        let r0 = unsafe { (self.entry)(ctx_ptr) };
        if ctx.trap_kind == trap_code::EXIT {
            return Ok(Exit {
                r0,
                instructions: budget.wrapping_sub(ctx.remaining),
            });
        }
        self.finish_mapped(r0, data, metadata, stack, budget)
    }
}

impl ebpf_abi::Session for Session {
    #[inline]
    fn run(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        // Code compiled with an entry's facts runs here only on a run its entry admits.
        if self.calls_helpers
            || (self.gated
                && !self
                    .program
                    .fast_admits(data.as_deref(), metadata.is_some(), args))
        {
            return self.run_mapped(data, metadata, args, stack);
        }
        self.run_fast(data, metadata, args, stack)
    }

    #[inline]
    fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (What `run` checks, worked out once: only the length is left; and the table is
        // ready.)
        let short = data.len() as u64 <= u64::from(u32::MAX);
        if self.input_ready && short {
            let args = layout::input_args(data.len() as u64);
            return self.run_ready(Some(data), None, args, stack);
        }
        if self.input_fast && short {
            return self.run_input_unready(data, stack);
        }
        // (Called from here, not from `run_input_unready`: its frame, the fast path inlined,
        // cost every run of code that calls helpers some 30 instructions.)
        let args = layout::input_args(data.len() as u64);
        self.run_mapped(Some(data), None, args, stack)
    }

    fn run_in<'m>(
        &mut self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        self.fast_table = false;
        self.input_ready = false;
        run_on_map(
            &self.program,
            &mut self.spare,
            &self.limits,
            memory,
            args,
            self.binding.helpers(),
            stack,
        )
    }

    fn take_helper_stack_mark(&mut self) -> Option<u64> {
        self.helper_stack_mark.take()
    }
}

/// A session's run on `memory` (`Session::run_in`), from the session's fields (so that a
/// caller may hold a borrow of its binding), on the session's own context (the fallback
/// code's too, when the run's entry is not the one `program`'s code was compiled for).
#[inline(always)]
fn run_on_map<'m>(
    program: &crate::CraneliftProgram,
    spare: &mut Spare,
    limits: &Limits,
    memory: &mut MemoryMap<'m>,
    args: [u64; 2],
    helpers: &Helpers,
    stack: &'m mut Stack,
) -> Result<Exit, Trap> {
    let code = program.admitted(memory, args)?;
    // SAFETY: `code.entry` is the code of `code` (`program` or its fallback), generated by
    // this crate for the host and mapped while it lives.
    unsafe {
        run_on(
            spare,
            code.entry,
            &code.finish,
            memory,
            args,
            helpers,
            limits,
            stack,
        )
    }
}

/// A run generated code suspended, finished by the interpreter: it suspends when a budget
/// check finds too little budget left for its next stretch of code, with `r0`–`r10` in
/// `state`, the call depth in `depth` and the saved frames in `frames`.
fn hand_over(
    ctx: &Context,
    frames: &[CallFrame],
    finish: &Finish,
    helpers: &Helpers,
    limits: &Limits,
    host: &mut Host<'_, '_>,
) -> Result<Exit, Trap> {
    let pc = usize::try_from(ctx.trap_pc).unwrap_or(usize::MAX);
    // Suspended by `ret` on its way to a return site: the site's word is in `next`.
    let pc = if ctx.trap_pc == u64::MAX {
        finish.return_pc(ctx.next)
    } else {
        pc
    };
    let depth = usize::try_from(ctx.depth).unwrap_or(0);
    let callers = frames
        .iter()
        .take(depth)
        .map(|f| CallFrame {
            return_pc: finish.return_pc(f.return_pc) as u64,
            ..*f
        })
        .collect();
    let state = RunState {
        pc,
        regs: ctx.state,
        frames: callers,
        remaining: ctx.remaining,
    };
    finish
        .interpreter()
        .resume(state, host.memory, helpers, limits)
}

/// The run's result from the context generated code left.
fn outcome(
    ctx: &Context,
    r0: u64,
    budget: u64,
    limits: &Limits,
    host: &mut Host<'_, '_>,
) -> Result<Exit, Trap> {
    if ctx.trap_kind == trap_code::EXIT {
        return Ok(Exit {
            r0,
            instructions: budget.wrapping_sub(ctx.remaining),
        });
    }
    let pc = usize::try_from(ctx.trap_pc).unwrap_or(usize::MAX);
    if ctx.trap_kind == trap_code::HOST {
        // A helper's trap: the failed call stored the budget left after it.
        let executed = budget.wrapping_sub(ctx.remaining);
        host.memory.set_instructions_at_helper_trap(executed);
    }
    let raw = RawTrap {
        code: ctx.trap_kind,
        a: ctx.trap_a,
        b: ctx.trap_b,
    };
    // A helper's trap is in the host, unless the helper was called without one.
    let kind = raw
        .kind(limits)
        .or_else(|| host.trap.take())
        .unwrap_or_else(|| TrapKind::HelperFailed {
            id: ctx.trap_a as u32,
            message: "helper called without a map".into(),
        });
    Err(Trap { pc, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_called_without_a_host_traps_instead_of_dereferencing_null() {
        let mut spare = Spare::take();
        assert!(spare.ctx.user.is_null());
        // SAFETY: `ctx` is a live context that nothing else uses; its `user` is null, which
        // the trampoline must refuse without reading through it.
        let code = unsafe { trampoline(&raw mut spare.ctx, 7, 1, 2, 3, 4, 5) };
        assert_eq!(code, trap_code::HOST);
        assert_eq!(spare.ctx.trap_a, 7);
        spare.put_back();
    }
}
