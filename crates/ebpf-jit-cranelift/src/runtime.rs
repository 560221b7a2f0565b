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
use crate::buffers::Buffers;
use crate::context::{Context, FACT_FAILED, SUSPENDED, off};

/// The entry point of compiled code.
pub(crate) type EntryFn = unsafe extern "C" fn(*mut Context) -> u64;

/// The memory a run lends its helpers: a map of every region, or a session's [`Buffers`]
/// (the run's own buffers, and the binding's fixed regions mapped when first reached). What
/// the trampoline needs of it besides `VmMemory`.
trait HostMemory: ebpf_abi::VmMemory {
    /// Moves on every `&mut` access to a region's bytes (`MemoryMap::generation`).
    fn generation(&self) -> u64;

    /// Writes the rows of `table` that can be mapped with pointers derived afresh; `rows` and
    /// the result as `MemoryMap::refresh_raw_table`'s.
    fn refresh_rows(
        &mut self,
        table: &mut [RawRegion; ebpf_abi::REGION_TABLE_LEN],
        rows: u64,
    ) -> u64;

    /// Records the instructions a run had executed when a helper failed, for a caller that
    /// asks (`MemoryMap::instructions_at_helper_trap`).
    fn set_instructions_at_helper_trap(&mut self, instructions: u64);
}

impl HostMemory for MemoryMap<'_> {
    #[inline(always)]
    fn generation(&self) -> u64 {
        MemoryMap::generation(self)
    }

    fn refresh_rows(
        &mut self,
        table: &mut [RawRegion; ebpf_abi::REGION_TABLE_LEN],
        rows: u64,
    ) -> u64 {
        self.refresh_raw_table(table, rows)
    }

    fn set_instructions_at_helper_trap(&mut self, instructions: u64) {
        MemoryMap::set_instructions_at_helper_trap(self, instructions);
    }
}

impl HostMemory for Buffers<'_> {
    #[inline(always)]
    fn generation(&self) -> u64 {
        Buffers::generation(self)
    }

    /// (The set of mapped rows is the run's, unchanged by helpers: only the pointers are
    /// derived afresh.)
    fn refresh_rows(
        &mut self,
        table: &mut [RawRegion; ebpf_abi::REGION_TABLE_LEN],
        rows: u64,
    ) -> u64 {
        Buffers::refresh_rows(self, table);
        rows
    }

    /// Nothing reads it: only a `run_in` caller asks (to add up a chain of tail calls), and
    /// that run is on a map.
    fn set_instructions_at_helper_trap(&mut self, _: u64) {}
}

/// What the helper trampoline needs: the helpers, the run's memory, and where to leave what
/// happened.
struct Host<'h, M: ?Sized> {
    helpers: &'h Helpers,
    memory: &'h mut M,
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
    /// A session's saved call frames, which its fast path's context points to (its
    /// `max_depth` is their number): none for a program without local calls, else as many as
    /// the default call depth allows (at most the limit), twice as many whenever a run
    /// suspended at a call that found them all in use (`Session::grow_frames`), up to the
    /// limit. Empty in a thread's spare, whose runs use the stack's.
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

    /// The number of the session's frames the context points to, and whether a run of code
    /// that makes local calls (`local_calls`), which suspended, had them all in use (its
    /// depth, saved with its registers, reached their number) while the limit (`limit`)
    /// allows more: then the session grows them after the run.
    #[inline(always)]
    fn frames_in_use(&self, local_calls: bool, limit: usize) -> (usize, bool) {
        let len = self.frames.len();
        let full = local_calls
            && self.ctx.trap_kind == SUSPENDED
            && self.ctx.depth >= len as u64
            && len < limit;
        (len, full)
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

/// The helper entry point of in-process runs on a map (`run_on`).
///
/// # Safety
///
/// `ctx` must be the context of a run in progress ([`run`]), whose `user` points to its
/// [`Host`] over a [`MemoryMap`] or is null.
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
    // SAFETY: `run` stored a pointer to its live, otherwise unused `Host` over a map in
    // `user` (not null, checked above).
    let host = unsafe { &mut *ctx.user.cast::<Host<'_, MemoryMap<'_>>>() };
    call_helper(ctx, host, id, [r1, r2, r3, r4, r5])
}

/// The helper entry point of a session's runs on its [`Buffers`] (`Session::run_buffers`).
///
/// # Safety
///
/// `ctx` must be the context of a run in progress, whose `user` points to its [`Host`] over
/// [`Buffers`] or is null.
unsafe extern "C" fn buffers_trampoline(
    ctx: *mut Context,
    id: u64,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
) -> u64 {
    // SAFETY: generated code passes on the context pointer `run_buffers` gave it, which keeps
    // the context alive and does not touch it while generated code (and so this call) runs.
    let ctx = unsafe { &mut *ctx };
    // (Null only if `calls_helpers` missed an instruction that calls this entry: as above.)
    if ctx.user.is_null() {
        return called_without_host(ctx, id);
    }
    // SAFETY: `run_buffers` stored a pointer to its live, otherwise unused `Host` over its
    // `Buffers` in `user` (not null, checked above), and set this entry only then.
    let host = unsafe { &mut *ctx.user.cast::<Host<'_, Buffers<'_>>>() };
    call_helper(ctx, host, id, [r1, r2, r3, r4, r5])
}

/// A helper call from generated code: the helper's result in `helper_r0`, or a trap code.
#[inline(always)]
fn call_helper<M: HostMemory>(
    ctx: &mut Context,
    host: &mut Host<'_, M>,
    id: u64,
    args: [u64; 5],
) -> u64 {
    let helpers = host.helpers;
    let memory = &mut *host.memory;
    let result = catch_unwind(AssertUnwindSafe(|| helpers.call(id, args, memory)));
    match result {
        // The common call stays here: only a helper that failed, panicked or moved the
        // memory's generation goes out of line, so this saves few registers.
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
fn after_helper<M: HostMemory>(
    ctx: &mut Context,
    host: &mut Host<'_, M>,
    id: u64,
    result: std::thread::Result<Result<u64, TrapKind>>,
) -> u64 {
    // A helper that reached the regions' bytes through `&mut` (or changed the map): refresh
    // the raw table from the map, as the contract asks, with pointers derived afresh. One that
    // only read, or used shared map memory, leaves the generation and the table as they were.
    if host.memory.generation() != host.generation {
        host.rows = host.memory.refresh_rows(&mut ctx.regions, host.rows);
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
    host: &mut Host<'_, MemoryMap<'_>>,
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
/// regions' rows of the region table, and writes only the rows of the run's own buffers
/// (input, metadata, stack) per run, building the run's map only when the run suspends (the
/// interpreter finishes it on the map). Code that calls helpers runs so too: its helpers see
/// the run's [`Buffers`] (`Session::run_buffers`).
pub(crate) struct Session {
    /// The program: its code (mapped while it lives), what finishes a suspended run, and —
    /// when its code was compiled with an entry's facts (`gated`) — the gate: a run its entry
    /// does not quickly admit (`CraneliftProgram::fast_admits`) runs the fallback code when
    /// it is a run without buffers whose admission the session decided once (`bare`), else
    /// goes through `run_in`, which checks the gate.
    program: Arc<crate::CraneliftProgram>,
    entry: EntryFn,
    gated: bool,
    binding: Arc<dyn Binding>,
    /// The binding's helpers (a copy saves a virtual call per run of helper-calling code;
    /// cloning shares each helper, once, when the session is made).
    helpers: Helpers,
    /// The binding's limits (read on every run; a copy saves the virtual call).
    limits: Limits,
    spill: ebpf_abi::MapSpill,
    /// The helpers' stack mark of the runs since it was last taken.
    helper_stack_mark: Option<u64>,
    spare: Box<Spare>,
    /// The table holds the fixed regions' rows and, of the rest, at most the rows of the
    /// run's own buffers (`spare.rows` says which may be mapped), and the context's words
    /// that are the same for every run are set (`set_fixed_words`, the helper entry
    /// `buffers_trampoline`): what the fast path writes on. A mapped run, or a fast one that
    /// did not exit, may leave other rows or words, and clears it.
    fast_table: bool,
    /// `input_fast && fast_table`, in one flag: `run_input` tests only this on its fast path.
    input_ready: bool,
    /// Whether the program calls a helper (a kfunc, `callx`).
    calls_helpers: bool,
    /// Whether the program makes local calls (else its code never reads `frames`).
    local_calls: bool,
    /// Whether the binding maps fixed regions: then a run's helpers map them when they first
    /// reach past the run's buffers (`Buffers`).
    has_fixed: bool,
    /// The limits' stack size (in bytes), call depth and budget (`u64::MAX` without one),
    /// worked out once.
    stack_size: usize,
    max_depth: usize,
    budget: u64,
    /// Whether every run of an input alone (`run_input`: `r1`/`r2` its start and length, at
    /// most `u32::MAX` bytes) takes the fast path: the code calls no helper and its entry asks
    /// at most what such a run gives (`Admission::input_only`). Worked out once.
    input_fast: bool,
    /// The same for code that calls helpers: every run of an input alone runs on its
    /// `Buffers` (`Session::run_buffers`).
    input_buffers: bool,
    /// For a run with neither input nor metadata buffer (`Vm::run_no_data`,
    /// `run_with(Input::none())`) of gated code: the arguments whose admission was decided,
    /// the entry of the code such a run takes and whether it is the fallback code's (which
    /// the program owns: its entry stays mapped while the session lives). The answer cannot
    /// change while the arguments do not: the entry's admission looks at the regions it
    /// speaks of — the fixed ones, the same on every run (`Binding::map_fixed`), and the
    /// input and metadata buffers, unmapped in every such run — at the arguments, and at the
    /// metadata buffer's contents, which such a run has none of.
    bare: Option<([u64; 2], EntryFn, bool)>,
    /// Whether the code is gated by an entry that asks only what `Vm::run` gives
    /// (`Admission::input_only`): then it refuses every run whose `r1` is not the input's
    /// start (a run without input, one with a metadata buffer in `r1`), whatever its
    /// buffers hold, and such a run takes the fallback code without a map.
    gated_input_only: bool,
    /// The fallback code's entry, once a run has needed it (the program owns the code: it
    /// stays mapped while the session lives).
    fallback_entry: Option<EntryFn>,
    /// `!gated && !calls_helpers`: every run `run` is given takes the fast path.
    plain: bool,
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
        let local_calls = program.finish.program.iter().any(|(_, insn)| {
            matches!(
                insn,
                ebpf_isa::Insn::Call {
                    kind: ebpf_isa::CallKind::Local,
                    ..
                }
            )
        });
        let limits = *binding.limits();
        let has_fixed = ebpf_abi::has_fixed_regions(&*binding);
        let input_only = program.fallback.as_ref().is_none_or(|fallback| {
            fallback.gate.admission().input_only() == Some(layout::INPUT as u8)
        });
        Session {
            gated_input_only: input_only && program.fallback.is_some(),
            fallback_entry: None,
            input_fast: !calls_helpers && input_only,
            input_buffers: calls_helpers && input_only,
            plain: !calls_helpers && program.fallback.is_none(),
            gated: program.fallback.is_some(),
            program,
            entry,
            stack_size: usize::try_from(limits.stack_size()).unwrap_or(usize::MAX),
            max_depth: limits.max_depth(),
            budget: limits.budget.unwrap_or(u64::MAX),
            limits,
            helpers: binding.helpers().clone(),
            binding,
            spill: ebpf_abi::MapSpill::default(),
            spare: {
                let mut spare = Spare::fresh();
                let frames = match local_calls {
                    true => limits.max_depth().min(ebpf_abi::DEFAULT_MAX_CALL_DEPTH),
                    false => 0,
                };
                spare.frames = vec![CallFrame::default(); frames];
                spare
            },
            fast_table: false,
            input_ready: false,
            helper_stack_mark: None,
            calls_helpers,
            has_fixed,
            local_calls,
            bare: None,
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

    /// Decides, once for `args`, which code a run with neither input nor metadata buffer
    /// runs (see `bare`): its entry, and true for the fallback code (made here when first
    /// needed).
    #[cold]
    #[inline(never)]
    fn decide_bare(&mut self, args: [u64; 2]) -> Result<(EntryFn, bool), Trap> {
        // (The stack, which the map lacks, is a region the admission never looks at.)
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        ebpf_abi::map_run(&mut map, &*self.binding, None, None);
        let program = &*self.program;
        let code = program
            .admitted(&map, args)
            .map(|code| (code.entry, !core::ptr::eq(code, program)));
        self.spill = map.into_spill();
        let (entry, on_fallback) = code?;
        self.bare = Some((args, entry, on_fallback));
        Ok((entry, on_fallback))
    }

    /// A fast run that did not exit: it suspended (the interpreter finishes it on a map of
    /// the run's regions) or trapped. `on_fallback`: it ran the fallback code.
    #[cold]
    #[inline(never)]
    fn finish_mapped(
        &mut self,
        r0: u64,
        on_fallback: bool,
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
        let stack_size = self.stack_size;
        let (region, _) = stack.parts(stack_size);
        // The frames the code used: the session's own, through the pointer it was given.
        let frames = self.spare.ctx.frames;
        let (max_depth, full) = self.spare.frames_in_use(self.local_calls, self.max_depth);
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
                &code_finish(&self.program, on_fallback).finish,
                binding.helpers(),
                limits,
                budget,
                &mut host,
            )
        };
        self.helper_stack_mark =
            ebpf_abi::lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        if full {
            self.grow_frames();
        }
        result
    }

    /// More frames for the fast path (see `Spare::frames`): after a run that suspended with
    /// every frame in use — at a call that found none free, or deeper in a callee — which the
    /// interpreter finished. The next fast run's `fixed_table` points the context to them.
    #[cold]
    #[inline(never)]
    fn grow_frames(&mut self) {
        let frames = &mut self.spare.frames;
        let grown = frames
            .len()
            .saturating_mul(2)
            .max(ebpf_abi::DEFAULT_MAX_CALL_DEPTH)
            .min(self.max_depth);
        frames.resize(grown, CallFrame::default());
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
        // (The code's depth limit is the frames the session has: a call past them suspends,
        // and the interpreter, held to the limits' depth, goes on.)
        let frames: *mut u64 = spare.frames.as_mut_ptr().cast();
        set_fixed_words(
            &mut spare.ctx,
            (self.stack_size as u64, spare.frames.len()),
            frames,
        );
        // A fast run's helpers, when its code calls any, see its `Buffers`.
        spare.ctx.helper = buffers_trampoline;
        spare.ctx.user = core::ptr::null_mut();
        self.fast_table = true;
        self.input_ready = self.input_fast;
    }

    /// A run the fast path admits (see [`ebpf_abi::Session::run`] below) of code that calls
    /// no helper, on `entry` (the fallback code's when `on_fallback`): makes the table ready
    /// if it is not, then [`Session::run_ready`].
    #[inline(always)]
    fn run_fast(
        &mut self,
        entry: EntryFn,
        on_fallback: bool,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        if !self.fast_table {
            // Only the fixed regions' rows and words; the run's rows follow.
            self.fixed_table();
        }
        self.run_ready(entry, on_fallback, data, metadata, args, stack)
    }

    /// `run_input`'s path for code that calls helpers (`input_buffers`): out of line, its
    /// arguments in registers (passed on, `run_buffers`' were stored on every run).
    #[inline(never)]
    fn run_input_buffers(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        let args = layout::input_args(data.len() as u64);
        self.run_buffers(self.entry, false, Some(data), None, args, stack)
    }

    /// `run_input`'s fast path when the table is not ready (out of line: the first run, or
    /// the first after a mapped run or a trap).
    #[cold]
    #[inline(never)]
    fn run_input_unready(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (The arguments worked out here: passed in, they were stored in memory on every run.)
        let args = layout::input_args(data.len() as u64);
        self.run_fast(self.entry, false, Some(data), None, args, stack)
    }

    /// [`Session::run_fast`] on a ready table (`fast_table`): writes the rows of the run's own
    /// buffers that changed, `r1`/`r2` and the budget, and calls the code at `entry`.
    ///
    /// Nothing else is written per run: the words `set_fixed_words` sets are the same at
    /// the entry of every run, and a run that exits leaves them so — the frame's shape, the
    /// helper entry point and `user` are never written by generated code; `trap_kind` is
    /// `EXIT` again (the exit path stores it); `trap_pc`, `trap_a`, `trap_b`, `depth` and
    /// `next` are written only on the way to a trap, a suspension or another unit, which
    /// never exit from here (the dispatcher of a program of several units writes `depth` and
    /// `next` itself on entry, before any unit reads them); `host` is written by the check
    /// function before it is read; `helper_r0` only by a helper call, which code run here
    /// never makes. A run that does not exit clears `fast_table` (`finish_mapped`). The same
    /// holds of the program's code and its fallback (one translator, one context layout), so
    /// runs of the two may alternate on one table.
    #[inline(always)]
    fn run_ready(
        &mut self,
        entry: EntryFn,
        on_fallback: bool,
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
        // (`Session::new`'s promise, and `run_other`'s for the fallback code, which the
        // program owns). The context is initialised for a run from the entry: its table
        // holds the fixed regions' rows (derived from the binding's, which the session keeps
        // alive and whose bytes are never reached through `&mut`) and the rows of `data`,
        // `metadata` and the stack region, derived from their borrows above, which nothing
        // else uses until the code returns; every other row is unmapped; the other words are
        // those of a run from the entry (above), `frames` pointing to the session's
        // `max_depth` frames (`fixed_table`), which live as long as it. The code calls no
        // helper, so `user` (null) is never read.
        let r0 = unsafe { entry(ctx_ptr) };
        if ctx.trap_kind == trap_code::EXIT {
            return Ok(Exit {
                r0,
                instructions: budget.wrapping_sub(ctx.remaining),
            });
        }
        self.finish_mapped(r0, on_fallback, data, metadata, stack, budget)
    }

    /// A run of code that calls helpers on `entry` (the fallback code's when `on_fallback`):
    /// as [`Session::run_fast`], with the run's memory lent to its helpers as [`Buffers`] —
    /// the same regions the table maps (the buffers' rows derived from the `Buffers` before
    /// the code runs and afresh after any helper that reached their bytes through `&mut`, the
    /// trampoline's refresh, as on a map; the fixed regions' rows the session's, whose bytes
    /// nothing reaches through `&mut`: a helper writes a shared region through its atomic
    /// words, and a read-only one not at all).
    #[inline(always)]
    fn run_buffers(
        &mut self,
        entry: EntryFn,
        on_fallback: bool,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        if !self.fast_table {
            self.fixed_table();
        }
        // (Without fixed regions nothing maps a region past the buffers: the spill stays.)
        let fixed = match self.has_fixed {
            true => Some((&*self.binding, core::mem::take(&mut self.spill))),
            false => None,
        };
        let mut memory = Buffers::new(data, metadata, stack.region(self.stack_size), fixed);
        let spare = &mut *self.spare;
        for (r, row) in memory.rows() {
            match row {
                Some(RawRegion {
                    host,
                    len,
                    writable,
                }) => spare.set_run_row(r, host, len, writable),
                None => spare.unmap_run_row(r),
            }
        }
        let budget = self.budget;
        let mut host = Host {
            helpers: &self.helpers,
            memory: &mut memory,
            trap: None,
            panic: None,
            rows: spare.rows,
            generation: 0,
        };
        let ctx = &mut spare.ctx;
        ctx.args[0] = args[0];
        ctx.args[1] = args[1];
        ctx.remaining = budget;
        ctx.user = (&raw mut host).cast();
        let ctx_ptr: *mut Context = &raw mut *ctx;
        // SAFETY: as `run_ready`'s, but for the rows of `data`, `metadata` and the stack,
        // derived from `memory`, and the helper entry: `fixed_table` set it to
        // `buffers_trampoline`, and `user` points to `host`, a `Host` over `memory`, which
        // live until the code returns; nothing else uses them, the buffers or the context
        // meanwhile, and the trampoline derives the rows afresh when a helper reached the
        // buffers' bytes through `&mut`.
        let r0 = unsafe { entry(ctx_ptr) };
        ctx.user = core::ptr::null_mut();
        let mark = host.memory.lowest_stack_write();
        if mark.is_some() {
            self.helper_stack_mark = ebpf_abi::lower_stack_mark(self.helper_stack_mark, mark);
        }
        if ctx.trap_kind == trap_code::EXIT {
            if self.has_fixed {
                self.spill = memory.into_spill();
            }
            return Ok(Exit {
                r0,
                instructions: budget.wrapping_sub(ctx.remaining),
            });
        }
        // (The run may have left trap words, a depth or other rows: as `finish_mapped`.)
        self.fast_table = false;
        self.input_ready = false;
        let frames = ctx.frames;
        let (max_depth, full) = spare.frames_in_use(self.local_calls, self.max_depth);
        let ctx = &spare.ctx;
        // SAFETY: `frames` points to the session's `max_depth` frames (`fixed_table` set it
        // from `spare.frames`, untouched since), which generated code, their only other user,
        // no longer uses.
        let result = unsafe {
            finish_buffers(
                ctx,
                r0,
                frames,
                max_depth,
                &code_finish(&self.program, on_fallback).finish,
                &self.limits,
                budget,
                &mut host,
                &mut self.helper_stack_mark,
            )
        };
        if self.has_fixed {
            self.spill = memory.into_spill();
        }
        if full {
            self.grow_frames();
        }
        result
    }

    /// A run of `data` (if any) and `metadata` (if any) with `args` that `run`'s fast path
    /// does not take: of code that calls helpers, or of gated code. It runs on the session's
    /// table: on the program's code when the entry quickly admits it; else on the fallback
    /// code when the entry refuses it without a map (`gated_input_only`) or it has no
    /// buffers (decided once per arguments, `bare`). The other runs of gated code run on a
    /// map (`run_mapped`, which checks the entry's admission in full).
    #[inline(never)]
    fn run_other(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        let (entry, on_fallback) = if !self.gated
            || self
                .program
                .fast_admits(data.as_deref(), metadata.is_some(), args)
        {
            (self.entry, false)
        } else if self.gated_input_only && args[0] != layout::vm_addr(layout::INPUT, 0) {
            match self.fallback_entry {
                Some(entry) => (entry, true),
                None => match self.program.fallback_code() {
                    Some(fallback) => {
                        self.fallback_entry = Some(fallback.entry);
                        (fallback.entry, true)
                    }
                    // (The first such run makes the fallback code: the next find it.)
                    None => return self.run_mapped(data, metadata, args, stack),
                },
            }
        } else if data.is_none() && metadata.is_none() {
            match self.bare {
                Some((bare, entry, on_fallback)) if bare == args => (entry, on_fallback),
                _ => self.decide_bare(args)?,
            }
        } else {
            return self.run_mapped(data, metadata, args, stack);
        };
        if self.calls_helpers {
            self.run_buffers(entry, on_fallback, data, metadata, args, stack)
        } else {
            self.run_fast(entry, on_fallback, data, metadata, args, stack)
        }
    }
}

/// The program's code or (`on_fallback`) its fallback code, for what finishes a run of it.
/// (The fallback is made before any run of it; were it not, the program's own would do: it
/// is the same program, only the return sites' words might not be found.)
#[inline(always)]
fn code_finish(program: &crate::CraneliftProgram, on_fallback: bool) -> &crate::CraneliftProgram {
    match on_fallback {
        true => program.fallback_code().unwrap_or(program),
        false => program,
    }
}

/// A run on a session's [`Buffers`] that did not exit: a helper panicked (the panic goes on),
/// trapped or failed, or the code suspended (the interpreter finishes the run on a map of the
/// same buffers) or failed a checked fact. The helpers' stack mark of what runs here is
/// merged into `mark`.
///
/// # Safety
///
/// As [`finish_run`]'s.
#[cold]
#[inline(never)]
#[expect(clippy::too_many_arguments, reason = "a run's state, handed on")]
unsafe fn finish_buffers(
    ctx: &Context,
    r0: u64,
    frames: *mut u64,
    max_depth: usize,
    finish: &Finish,
    limits: &Limits,
    budget: u64,
    host: &mut Host<'_, Buffers<'_>>,
    mark: &mut Option<u64>,
) -> Result<Exit, Trap> {
    if let Some(payload) = host.panic.take() {
        // A helper panicked: let the panic continue, as it does through the interpreter.
        resume_unwind(payload);
    }
    if ctx.trap_kind != SUSPENDED && ctx.trap_kind != FACT_FAILED {
        return outcome(ctx, r0, budget, limits, host);
    }
    let mut map = host.memory.take_map();
    let mut mapped = Host {
        helpers: host.helpers,
        memory: &mut map,
        trap: None,
        panic: None,
        rows: host.rows,
        generation: 0,
    };
    // SAFETY: the caller's promise.
    let result = unsafe {
        finish_run(
            ctx,
            r0,
            frames,
            max_depth,
            finish,
            host.helpers,
            limits,
            budget,
            &mut mapped,
        )
    };
    *mark = ebpf_abi::lower_stack_mark(*mark, map.lowest_stack_write());
    host.memory.put_spill(map.into_spill());
    result
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
        // (Code compiled with an entry's facts runs only on a run its entry admits, and code
        // that calls helpers lends them its memory: `run_other`.)
        if self.plain {
            return self.run_fast(self.entry, false, data, metadata, args, stack);
        }
        self.run_other(data, metadata, args, stack)
    }

    #[inline]
    fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (What `run` checks, worked out once: only the length is left; and the table is
        // ready.)
        let short = data.len() as u64 <= u64::from(u32::MAX);
        if self.input_ready && short {
            let args = layout::input_args(data.len() as u64);
            return self.run_ready(self.entry, false, Some(data), None, args, stack);
        }
        if self.input_buffers && short {
            return self.run_input_buffers(data, stack);
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
    host: &mut Host<'_, MemoryMap<'_>>,
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
fn outcome<M: HostMemory + ?Sized>(
    ctx: &Context,
    r0: u64,
    budget: u64,
    limits: &Limits,
    host: &mut Host<'_, M>,
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

    /// A session of `source` compiled with the default options, bound to `limits`.
    fn session_of(source: &str, limits: Limits) -> (Session, ebpf_isa::Program) {
        let program = ebpf_isa::assemble(source).unwrap();
        let code = Arc::new(crate::compile(&program, &crate::JitOptions::default()).unwrap());
        let entry = code.entry;
        let binding = Arc::new(ebpf_abi::PlainBinding {
            helpers: Helpers::new(),
            limits,
        });
        // SAFETY: `entry` is `code`'s, generated by `compile` for this host.
        (unsafe { Session::new(code, entry, binding) }, program)
    }

    /// A session allocates the frames its runs use, not the limit's: none for a program
    /// without local calls, the default depth's for one with calls however deep the limit
    /// allows, and more only after a run that used them all — which the interpreter finished
    /// exactly, as every deeper run is, the call depth exceeded included.
    #[test]
    fn a_session_allocates_the_frames_its_runs_use() {
        use ebpf_abi::{DEFAULT_MAX_CALL_DEPTH, Executable, PlainBinding, Session as _};
        if !crate::host_supported() {
            return;
        }
        let deep = Limits {
            max_call_depth: 200,
            ..Limits::default()
        };
        let flat = Limits {
            max_call_depth: ebpf_abi::MAX_CALL_DEPTH,
            ..Limits::default()
        };
        let (mut session, _) = session_of("mov %r0, 1\nexit", flat);
        assert_eq!(session.spare.frames.len(), 0);
        let mut stack = Stack::new();
        assert_eq!(
            session.run_input(&mut [0; 8], &mut stack).map(|e| e.r0),
            Ok(1)
        );
        // `r0` is the depth the input's first byte asks for, reached by recursion.
        let recursive = "ldxb %r1, [%r1]
            call local f
            exit
        f:
            jeq %r1, 0, done
            sub %r1, 1
            call local f
            add %r0, 1
            exit
        done:
            mov %r0, 0
            exit";
        let (mut session, program) = session_of(recursive, deep);
        assert_eq!(session.spare.frames.len(), DEFAULT_MAX_CALL_DEPTH);
        let binding = Arc::new(PlainBinding {
            helpers: Helpers::new(),
            limits: deep,
        });
        let mut interp = Arc::new(ebpf_interp::Interpreter::new(&program)).session(binding);
        let mut interp_stack = Stack::new();
        let mut sizes = Vec::new();
        for depth in [3u8, 5, 6, 7, 100, 3, 100, 100, 150, 198, 199, 200, 255, 5] {
            let mut data = [depth; 8];
            let got = session.run_input(&mut data, &mut stack);
            let want = interp.run_input(&mut [depth; 8], &mut interp_stack);
            assert_eq!(got, want, "depth {depth}");
            sizes.push(session.spare.frames.len());
            // (The lender's part: the stack all zero again.)
            stack.region(deep.stack_size() as usize).fill(0);
            interp_stack.region(deep.stack_size() as usize).fill(0);
        }
        // Calls nest 1 + depth deep: 8 frames serve up to depth 7; each run past them
        // doubles them (once per run), up to the limit; the limit exceeded past 199.
        assert_eq!(
            sizes,
            [8, 8, 8, 8, 16, 16, 32, 64, 128, 200, 200, 200, 200, 200]
        );
        let exceeded = session.run_input(&mut [200; 8], &mut stack);
        assert!(matches!(
            exceeded,
            Err(Trap {
                kind: TrapKind::CallDepthExceeded { .. },
                ..
            })
        ));
    }
}
