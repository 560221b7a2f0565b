//! Mapping and running generated code (x86-64 Linux and macOS only): W^X mapping, the run's
//! stack and context, the call into generated code, the helper trampoline, and turning what
//! the code reports into an `Exit` or a `Trap`.
//!
//! The crate's `unsafe` for running code is here: creating the function pointer, calling it,
//! and the trampoline's dereferences of the context (mapping and protecting the code's pages
//! is `pages.rs`'s).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ebpf_abi::{
    Binding, Exit, Helpers, Limits, MemoryMap, Region, RunBuffers, Stack, Trap, TrapKind, VmMemory,
    layout, trap_code,
};
use ebpf_isa::Program;

use crate::blocks::Shape;
use crate::context::{Ctx, Frame, status, unpacked};
use crate::emit::emit;
use crate::pages::{self, Pages};
use crate::slow::{Stepped, finish_chain};
use crate::{JitError, JitOptions};
use ebpf_cfg::facts::{Entry as FactsEntry, Facts};

/// The signature of generated code.
type Entry = unsafe extern "sysv64" fn(*mut Ctx<'_>) -> u32;

/// Read+execute code.
struct Code {
    pages: pages::Code,
    /// Code offset of each block (where a run resumes after the budget's slow path).
    block_offsets: Vec<u32>,
    /// Code offset of the resume entry.
    resume_offset: u32,
}

/// A compiled program.
pub(crate) struct Compiled {
    code: Code,
    shape: Shape,
    /// When the code's facts assume more than the stack's: what runs the entry does not admit
    /// run instead (boxed: most programs have none, and this keeps `X86Program` small).
    fallback: Option<Box<Fallback>>,
    /// Whether the program has a `call` of a helper or kfunc, or a `callx`: code that may
    /// enter the helper trampoline, which needs the run's map.
    calls_helpers: bool,
}

/// What code compiled with the facts of an entry needs for the runs that entry does not admit:
/// the gate both JITs share, and what to compile the plain code from.
struct Fallback {
    /// For runs the entry does not admit: the program compiled with the stack's facts only.
    gate: ebpf_cfg::facts::Gate<Result<Box<Compiled>, JitError>>,
    program: Program,
    options: JitOptions,
}

impl Compiled {
    /// Emits `program` with the facts proven from `options.entry` (or from the stack alone)
    /// and maps the code: written into read+write pages, which are then turned read+execute
    /// (`pages`), so no page is ever writable and executable.
    pub(crate) fn new(program: &Program, options: &JitOptions) -> Result<Compiled, JitError> {
        let entry = options.entry.clone().unwrap_or_else(FactsEntry::unknown);
        let facts = crate::analyse(program, &entry, options);
        Compiled::with_facts(program, options, &facts)
    }

    /// [`Compiled::new`] with facts already proven (by the verifier, say) for this program.
    pub(crate) fn with_facts(
        program: &Program,
        options: &JitOptions,
        facts: &Facts,
    ) -> Result<Compiled, JitError> {
        let emitted = emit(program, options, facts)?;
        let mut pages = Pages::new(emitted.code.len())?;
        pages.bytes_mut().copy_from_slice(&emitted.code);
        let fallback = ebpf_cfg::facts::Gate::new(facts.entry()).map(|gate| {
            Box::new(Fallback {
                gate,
                program: program.clone(),
                options: options.clone(),
            })
        });
        Ok(Compiled {
            code: Code {
                pages: pages.seal()?,
                block_offsets: emitted.block_offsets,
                resume_offset: emitted.resume_offset,
            },
            shape: emitted.shape,
            fallback,
            calls_helpers: program.iter().any(|(_, insn)| {
                matches!(
                    insn,
                    ebpf_isa::Insn::Call {
                        kind: ebpf_isa::CallKind::Helper | ebpf_isa::CallKind::Btf,
                        ..
                    } | ebpf_isa::Insn::CallX { .. }
                )
            }),
        })
    }

    pub(crate) fn code(&self) -> &[u8] {
        self.code.pages.bytes()
    }

    /// The code that runs with `memory` and `args`: this, or — when this code was compiled
    /// with the facts of an entry that the run does not satisfy — the program compiled with
    /// the stack's facts only (made when first needed).
    #[inline]
    fn admitted(&self, memory: &MemoryMap<'_>, args: [u64; 2]) -> Result<&Compiled, Trap> {
        let Some(fallback) = &self.fallback else {
            return Ok(self);
        };
        let Some(plain) = fallback.gate.fallback(memory, args, || {
            let options = JitOptions {
                entry: None,
                ..fallback.options.clone()
            };
            Compiled::new(&fallback.program, &options).map(Box::new)
        }) else {
            return Ok(self);
        };
        match plain {
            Ok(plain) => Ok(plain),
            // Only mapping memory can fail for a program that compiled once.
            Err(_) => Err(Trap::entry_code_unavailable()),
        }
    }

    pub(crate) fn run<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        let code = self.admitted(memory, args)?;
        let mut spare = Spare::take();
        let result = code.run_on(&mut spare, memory, args, helpers, limits, stack);
        spare.put_back();
        result
    }

    /// A run on `spare`'s context (this code admits the run).
    #[inline(always)]
    fn run_on<'m>(
        &self,
        spare: &mut Spare,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
        // The lent stack keeps 512 bytes of slack below the region (fast-path stack accesses
        // stay inside `[r10 - 512, r10)`; the slack is a second guard).
        memory.insert(layout::STACK, Region::Writable(stack.region(stack_size)));
        spare.prepare_frames(limits);
        let Spare { ctx, frames } = spare;
        ctx.reset();
        ctx.refresh(memory);
        let budget = start_state(ctx, frames, args, limits);
        self.drive(ctx, memory, helpers, limits, budget, None)
    }

    /// Runs generated code from its entry (or handles `pending`, the status a run that
    /// already started returned) until the run exits or traps: from the resume entry again
    /// each time the budget's slow path leaves a chain with budget to spare. (Inlined: a call
    /// with its seven arguments cost `Vm::run` some 40 instructions per run.)
    #[inline(always)]
    fn drive(
        &self,
        ctx: &mut Ctx<'static>,
        memory: &mut MemoryMap<'_>,
        helpers: &Helpers,
        limits: &Limits,
        budget: u64,
        mut pending: Option<u32>,
    ) -> Result<Exit, Trap> {
        let code = &self.code;
        let mut start = code.pages.entry();
        loop {
            let st = match pending.take() {
                Some(st) => st,
                None => {
                    // Until generated code returns, `memory` is used only through this pointer
                    // (by the helper trampoline). The context outlives the run (it is reused),
                    // so the pointer's lifetime is erased; it is cleared as soon as the code
                    // returns.
                    ctx.memory = core::ptr::from_mut(&mut *memory).cast();
                    ctx.helpers = helpers;
                    // SAFETY: as in `call`; the context's table describes `memory`'s regions.
                    let st = unsafe { call(start, ctx) };
                    ctx.memory = core::ptr::null_mut();
                    ctx.helpers = core::ptr::null();
                    st
                }
            };
            match st {
                status::EXIT => {
                    return Ok(Exit {
                        r0: ctx.run.regs[0],
                        instructions: budget.wrapping_sub(ctx.run.remaining),
                    });
                }
                status::BUDGET => {
                    let head = usize::try_from(ctx.run.block).unwrap_or(usize::MAX);
                    let stepped = finish_chain(
                        &self.shape,
                        head,
                        &mut ctx.run.regs,
                        ctx.run.remaining,
                        memory,
                        helpers,
                        budget,
                    );
                    match stepped {
                        Stepped::Trap(trap) => return Err(trap),
                        Stepped::Resume { block, remaining } => {
                            let Some(&offset) = code.block_offsets.get(block) else {
                                return Err(unknown(ctx.run.trap_pc));
                            };
                            ctx.run.remaining = remaining;
                            // The slow path stored through the map: re-derive the table.
                            if memory.generation() != ctx.generation {
                                ctx.refresh(memory);
                            }
                            ctx.run.resume =
                                code.pages.entry().wrapping_add(offset as usize) as u64;
                            start = code.pages.entry().wrapping_add(code.resume_offset as usize);
                        }
                    }
                }
                status::PANIC => {
                    return match ctx.panic.take() {
                        Some(payload) => std::panic::resume_unwind(payload),
                        None => Err(unknown(ctx.run.trap_pc)),
                    };
                }
                status::FACT => {
                    // Checked-facts mode: a check the facts declared impossible failed. That
                    // is a bug in the facts, not in the program; say so as loudly as possible.
                    let pc = ctx.run.trap_pc;
                    panic!(
                        "ebpf-jit-x86 (checked facts): a check the facts declared impossible \
                         failed at pc {pc}"
                    );
                }
                _ => {
                    // A helper's trap: its block ends at the call and charged exactly up to
                    // it (a chain never continues past a call), and the call stored the budget.
                    if ctx.run.trap_code == trap_code::HOST {
                        let executed = budget.wrapping_sub(ctx.run.remaining);
                        memory.set_instructions_at_helper_trap(executed);
                    }
                    return Err(trap_of(ctx, limits));
                }
            }
        }
    }

    /// Whether every run of an input alone, `r1`/`r2` its start and length (at most
    /// `u32::MAX` bytes), is admitted: the code's entry asks at most what such a run gives
    /// (`Admission::input_only`). Worked out once per session.
    fn admits_every_input(&self) -> bool {
        self.fallback.as_ref().is_none_or(|fallback| {
            fallback.gate.admission().input_only() == Some(layout::INPUT as u8)
        })
    }

    /// Whether a session's run of `data` (and a metadata buffer, if `metadata`) with `args`
    /// is admitted, found in a few compares: the run satisfies the entry the code was
    /// compiled for — checked here only for the entry of `Vm::run`, the input's start and
    /// length in `r1`/`r2`. `false` leaves the run to [`Compiled::refuses_input_run`].
    #[inline]
    fn fast_admits(&self, data: Option<&[u8]>, metadata: bool, args: [u64; 2]) -> bool {
        let Some(fallback) = &self.fallback else {
            return true;
        };
        fallback.gate.admission().admits_input(data, metadata, args)
    }

    /// Whether the entry the code was compiled for refuses every run of this shape — `data`
    /// (or none) at [`layout::INPUT`] with `args`, whatever the other regions and bytes —
    /// so that the run takes the fallback code, which admits every run, without a map to
    /// check. Decided only for the entry of `Vm::run` ([`Compiled::admits_every_input`]),
    /// which asks only that `r1` be the input's start, `r2` its length (0 when unmapped:
    /// an unmapped region has length 0) and that length below 4 GiB: so the answer depends on
    /// the arguments and the input's length alone, and is the same for every run with them
    /// (`entry_refusals_are_the_admissions_refusals` holds it to `Admission::admits`). Any
    /// other entry: `false`, and the run takes the mapped path, which checks it in full.
    #[inline]
    fn refuses_input_run(&self, data: Option<&[u8]>, args: [u64; 2]) -> bool {
        if self.fallback.is_none() || !self.admits_every_input() {
            return false;
        }
        let len = data.map_or(0, |data| data.len() as u64);
        args != layout::input_args(len) || len > u64::from(u32::MAX)
    }

    /// The code that runs what this code's entry does not admit: the program compiled with
    /// the stack's facts only, made the first time it is needed (`None` when this code was
    /// compiled with those already, and admits every run).
    #[cold]
    #[inline(never)]
    fn plain(&self) -> Option<Result<&Compiled, Trap>> {
        self.fallback.as_ref()?;
        // (The gate makes the code for a run it refuses, and `Vm::run`'s entry — the only
        // one asked here — refuses every run with `r1` 0.)
        let refused = MemoryMap::new();
        match self.admitted(&refused, [0, 0]) {
            Ok(code) if core::ptr::eq(code, self) => None,
            other => Some(other),
        }
    }
}

/// Calls generated code at `start` with the context.
///
/// # Safety
///
/// `start` is the entry (offset 0) or the resume entry of code that lives while the call
/// runs, and the context is fully initialised for a run: its region table describes live
/// buffers that nothing else uses while the code runs; the frame pointers and shadow stack
/// point into live frames (`frame_end` bounds them); `trampoline` is `helper_trampoline`,
/// and `memory`/`helpers` point to the run's map and helpers, or are null when the code
/// calls no helper; for the resume entry, `resume` is the address of a block's code.
#[inline(always)]
unsafe fn call(start: *const u8, ctx: &mut Ctx<'static>) -> u32 {
    // SAFETY: `start` is the prologue of a function of signature `Entry` (System V: the
    // context in rdi, the status back in eax, callee-saved registers restored by the shared
    // epilogue), mapped read+execute while the code lives (the caller's promise).
    let entry: Entry = unsafe { core::mem::transmute(start) };
    // SAFETY: the context is as the caller promises; generated code never touches memory
    // outside the table's regions, the shadow stack and the context, never unwinds, and
    // returns through its epilogue with the host stack balanced.
    unsafe { entry(ctx) }
}

/// Sets the context's registers, budget, shadow stack and trampoline for a run from the
/// entry; returns the budget.
#[inline(always)]
fn start_state(ctx: &mut Ctx<'_>, frames: &mut [Frame], args: [u64; 2], limits: &Limits) -> u64 {
    let budget = limits.budget.unwrap_or(u64::MAX);
    start_state_with(ctx, frames, args, budget, limits.frame_pointer(0));
    budget
}

/// [`start_state`] with the limits' budget and entry frame pointer worked out already.
#[inline(always)]
fn start_state_with(
    ctx: &mut Ctx<'_>,
    frames: &mut [Frame],
    args: [u64; 2],
    budget: u64,
    frame_pointer: u64,
) {
    set_fixed_words(ctx, frames);
    start_registers(ctx, args, budget, frame_pointer);
}

/// Sets the words of the run state that generated code only reads and that are the same for
/// every run on `frames`: the shadow stack's bounds and the trampoline.
#[inline(always)]
fn set_fixed_words(ctx: &mut Ctx<'_>, frames: &mut [Frame]) {
    let base = frames.as_mut_ptr();
    ctx.run.frame_base = base as u64;
    ctx.run.frame_end = base.wrapping_add(frames.len()) as u64;
    ctx.run.trampoline = MAP_TRAMPOLINE as usize as u64;
}

/// Sets what a run from the entry starts with besides [`set_fixed_words`]: `r1`, `r2`, `r10`,
/// the budget and an empty shadow stack.
#[inline(always)]
fn start_registers(ctx: &mut Ctx<'_>, args: [u64; 2], budget: u64, frame_pointer: u64) {
    ctx.run.regs[1] = args[0];
    ctx.run.regs[2] = args[1];
    ctx.run.regs[10] = frame_pointer;
    ctx.run.remaining = budget;
    ctx.run.frame_sp = ctx.run.frame_base;
}

/// A program bound to its helpers, limits and fixed regions for runs on one thread
/// (`Executable::session`): it owns its context and shadow stack (no thread-local per run),
/// keeps the fixed regions' rows of the region table from run to run, and writes only the
/// rows of the run's own buffers (input, metadata, stack) before calling the code, building
/// the run's map only if a cold path (the budget's slow path, a trap) needs one.
///
/// That fast path takes every run of code that calls no helper, and of helper-calling code
/// when the binding has no fixed regions (its helpers then get the run's buffers as a
/// [`RunBuffers`] memory instead of a map): on the code compiled for the program's entry when the
/// run is admitted, on the fallback code (which admits every run) when the entry of
/// `Vm::run` refuses it (`Compiled::refuses_input_run`: no input, a metadata buffer in
/// `r1`/`r2`). Other runs — helper-calling code with fixed regions, entries that ask more —
/// take the mapped path.
pub(crate) struct Session {
    program: Arc<crate::X86Program>,
    binding: Arc<dyn Binding>,
    /// The binding's limits (read on every run; a copy saves the virtual call).
    limits: Limits,
    /// The binding's helpers (a copy saves the virtual call; made with the session).
    helpers: Helpers,
    spill: ebpf_abi::MapSpill,
    /// The helpers' stack mark of the runs since it was last taken.
    helper_stack_mark: Option<u64>,
    spare: Box<Spare>,
    /// The table holds the fixed regions' rows and, of the rest, at most the rows of the
    /// run's own buffers: what the fast path writes on. A mapped run (or a cold path) may
    /// leave other rows, and clears it.
    fast_table: bool,
    stack_size: usize,
    /// The limits' budget (`u64::MAX` without one) and `r10` at entry, worked out once.
    budget: u64,
    frame_pointer: u64,
    /// The code calls helpers, and the binding has no fixed regions: its fast runs lend the
    /// helpers a [`RunBuffers`] memory.
    lean: bool,
    /// The code calls helpers, and the binding has fixed regions: every run is mapped.
    mapped_only: bool,
    /// What `input_ready` becomes once the table is ready: [`READY_PLAIN`] or
    /// [`READY_LEAN`] when every run of an input alone takes the fast path
    /// ([`Compiled::admits_every_input`] and not `mapped_only`), else [`NOT_READY`].
    input_fast: u8,
    /// `input_fast` once `fast_table` is set, else [`NOT_READY`]: what `run_input` tests
    /// (one load, not two).
    input_ready: u8,
    /// The code's entry (`code.pages.entry()` of the program), which lives while `program`
    /// does: a fast run calls it without loading it through three pointers.
    entry: *const u8,
    /// The fallback code's entry (`Compiled::plain`), once a run has needed it; null until
    /// then. It lives while `program` does (the gate keeps the code once made).
    plain_entry: *const u8,
}

/// `Session::input_ready`: `run_input` takes the mapped path or makes the table ready.
const NOT_READY: u8 = 0;
/// `Session::input_ready`: `run_input` takes the fast path of code that calls no helper.
const READY_PLAIN: u8 = 1;
/// `Session::input_ready`: `run_input` takes the fast path with a [`RunBuffers`] memory.
const READY_LEAN: u8 = 2;

impl Session {
    pub(crate) fn new(program: Arc<crate::X86Program>, binding: Arc<dyn Binding>) -> Session {
        let limits = *binding.limits();
        let mut spare = Spare::fresh();
        spare.prepare_frames(&limits);
        let calls_helpers = program.inner.calls_helpers;
        let mapped_only = calls_helpers && ebpf_abi::has_fixed_regions(&*binding);
        let input_fast = match (program.inner.admits_every_input(), calls_helpers) {
            (true, false) => READY_PLAIN,
            (true, true) if !mapped_only => READY_LEAN,
            _ => NOT_READY,
        };
        Session {
            helpers: binding.helpers().clone(),
            binding,
            limits,
            spill: ebpf_abi::MapSpill::default(),
            spare,
            fast_table: false,
            helper_stack_mark: None,
            stack_size: usize::try_from(limits.stack_size()).unwrap_or(usize::MAX),
            budget: limits.budget.unwrap_or(u64::MAX),
            frame_pointer: limits.frame_pointer(0),
            lean: calls_helpers && !mapped_only,
            mapped_only,
            input_fast,
            input_ready: NOT_READY,
            entry: program.inner.code.pages.entry(),
            plain_entry: core::ptr::null(),
            program,
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
        self.input_ready = NOT_READY;
        let binding = &*self.binding;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        ebpf_abi::map_run(&mut map, binding, data, metadata);
        let result = self.program.inner.admitted(&map, args).and_then(|code| {
            code.run_on(
                &mut self.spare,
                &mut map,
                args,
                &self.helpers,
                &self.limits,
                stack,
            )
        });
        self.helper_stack_mark =
            ebpf_abi::lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        result
    }

    /// A fast run that returned `st` other than an exit: builds the run's map (its rows are
    /// the ones the table already has, derived afresh) and finishes the run on it, on the
    /// code it started on (the fallback code if `on_plain`).
    #[cold]
    #[inline(never)]
    fn finish_mapped(
        &mut self,
        st: u32,
        on_plain: bool,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        stack: &mut Stack,
        budget: u64,
    ) -> Result<Exit, Trap> {
        self.fast_table = false;
        self.input_ready = NOT_READY;
        let inner = &self.program.inner;
        let code = if on_plain {
            match inner.plain() {
                Some(Ok(code)) => code,
                _ => return Err(Trap::entry_code_unavailable()),
            }
        } else {
            inner
        };
        let binding = &*self.binding;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        ebpf_abi::map_run(&mut map, binding, data, metadata);
        map.insert(
            layout::STACK,
            Region::Writable(stack.region(self.stack_size)),
        );
        let ctx = &mut self.spare.ctx;
        ctx.refresh(&mut map);
        // (The run may have started with a `RunBuffers` memory: the code resumed from here calls
        // helpers with the map.)
        ctx.run.trampoline = MAP_TRAMPOLINE as usize as u64;
        let result = code.drive(ctx, &mut map, &self.helpers, &self.limits, budget, Some(st));
        self.helper_stack_mark =
            ebpf_abi::lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        result
    }

    /// [`ebpf_abi::Session::run_input`] of an input the fast path serves when `input_ready`
    /// is not set: the session's first run, or a run after a mapped one.
    #[cold]
    #[inline(never)]
    fn run_input_unready(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (The arguments worked out here: passed in, they were stored in memory on every run.)
        let args = layout::input_args(data.len() as u64);
        self.run_fast(false, Some(data), None, args, stack)
    }

    /// [`ebpf_abi::Session::run`] of a run the code's entry refuses (see
    /// `Compiled::refuses_input_run`) before the fallback code's entry is known: makes the
    /// fallback code (once per program) and runs on it.
    #[cold]
    #[inline(never)]
    fn run_plain_unready(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        match self.program.inner.plain() {
            Some(Ok(plain)) => {
                self.plain_entry = plain.code.pages.entry();
                self.run_fast(true, data, metadata, args, stack)
            }
            // (The mapped path gives the same trap, or runs what there is.)
            _ => self.run_mapped(data, metadata, args, stack),
        }
    }

    /// Makes the table hold the fixed regions' rows only (every other row unmapped), derived
    /// from the binding (whose regions are the same on every call and outlive the session).
    #[cold]
    #[inline(never)]
    fn fixed_table(&mut self) {
        let mut fixed = MemoryMap::new();
        self.binding.map_fixed(&mut fixed);
        let Spare { ctx, frames } = &mut *self.spare;
        ctx.refresh(&mut fixed);
        // (A mapped run may have reset the run state: the fast path writes only what
        // changes from run to run.)
        set_fixed_words(ctx, frames);
        self.fast_table = true;
        self.input_ready = self.input_fast;
    }

    /// A run the fast path admits (see [`ebpf_abi::Session::run`] below) on the code (the
    /// fallback code if `on_plain`, whose entry is then known): writes the rows of the run's own
    /// buffers and the run state the code reads first, and calls the code.
    #[inline(always)]
    fn run_fast(
        &mut self,
        on_plain: bool,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        if !self.fast_table {
            // Only the fixed regions' rows; the run's rows follow.
            self.fixed_table();
        }
        if self.lean {
            return self.run_lean(on_plain, data, metadata, args, stack);
        }
        self.run_ready(on_plain, data, metadata, args, stack)
    }

    /// [`Session::run_fast`] of code that calls no helper, on a table that holds the fixed
    /// regions' rows (`fast_table`).
    #[inline(always)]
    fn run_ready(
        &mut self,
        on_plain: bool,
        mut data: Option<&mut [u8]>,
        mut metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        let ctx = &mut self.spare.ctx;
        // The rows of this run's own buffers, their pointers derived from this run's borrows
        // (the stack's too: the caller scrubbed it through `&mut` since the last run).
        ctx.set_run_row(layout::STACK, stack.raw_region(self.stack_size));
        match data.as_deref_mut() {
            Some(data) => ctx.set_buffer_row(layout::INPUT, data),
            None => ctx.unmap_run_row(layout::INPUT),
        }
        match metadata.as_deref_mut() {
            Some(metadata) => ctx.set_buffer_row(layout::METADATA, metadata),
            None => ctx.unmap_run_row(layout::METADATA),
        }
        // (Not `reset`: `memory` and `helpers` are null and `helper_trap` and `panic` empty
        // after every run — the code returned, and a trap or panic was taken — so only the
        // run state is fresh, and of it only what the code reads before writing it; the
        // words that are the same for every run were set by `fixed_table`.)
        ctx.run.clear_for_entry();
        let budget = self.budget;
        start_registers(ctx, args, budget, self.frame_pointer);
        // (Loaded here, not passed in: passed, it was kept in memory across the rows' writes.)
        let entry = if on_plain {
            self.plain_entry
        } else {
            self.entry
        };
        // SAFETY: `entry` is the entry of the code (or of its fallback code, if `on_plain`:
        // set before a run takes it), which lives while `self.program` does, and that code
        // admits this run (the caller checked). The context is initialised for a run from the entry: its table holds the
        // fixed regions' rows (derived from the binding's, which the session keeps alive and
        // whose bytes are never reached through `&mut`) and the rows of
        // `data`, `metadata` and the stack region, derived from their borrows above, which
        // nothing else uses until the code returns; every other row is unmapped. The shadow
        // stack's words are those of `self.spare.frames` (`fixed_table`), which lives as
        // long as the session. The code calls no helper (`lean` is not set), so `memory`
        // and `helpers` stay null (and the trampoline refuses a null map).
        let st = unsafe { call(entry, ctx) };
        if st == status::EXIT {
            return Ok(Exit {
                r0: ctx.run.regs[0],
                instructions: budget.wrapping_sub(ctx.run.remaining),
            });
        }
        self.finish_mapped(st, on_plain, data, metadata, stack, budget)
    }

    /// [`Session::run_fast`] of helper-calling code (`lean`), on a table that holds the
    /// fixed regions' rows — none: the binding has no fixed regions. The run's buffers are
    /// lent to a [`RunBuffers`] memory, the table's rows derived from its borrows, and the
    /// helpers reach the buffers through it, as they would through the run's map. (Inlined:
    /// out of line, its call and second frame cost every run of helper-calling code 51 host
    /// instructions; inlined, a helper-free run through `run_input` pays 1 for the larger
    /// frame.)
    #[inline(always)]
    fn run_lean(
        &mut self,
        on_plain: bool,
        mut data: Option<&mut [u8]>,
        mut metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        let budget = self.budget;
        let entry = if on_plain {
            self.plain_entry
        } else {
            self.entry
        };
        let ctx = &mut self.spare.ctx;
        let st = {
            let mut lean = RunBuffers::new(
                data.as_deref_mut(),
                metadata.as_deref_mut(),
                stack.region(self.stack_size),
            );
            ctx.write_buffer_rows(&mut lean);
            ctx.run.clear_for_entry();
            start_registers(ctx, args, budget, self.frame_pointer);
            ctx.run.trampoline = LEAN_TRAMPOLINE as usize as u64;
            // Until the code returns, `lean` is used only through this pointer (by the
            // trampoline), as a run's map is in `drive`.
            ctx.memory = core::ptr::from_mut(&mut lean).cast();
            ctx.helpers = &self.helpers;
            // SAFETY: as in `run_ready`, with the rows of the run's buffers derived from
            // `lean`'s borrows of them (`write_buffer_rows`), and `memory` pointing to `lean`, which
            // lives until the code returns, with the trampoline made for its type
            // (`LEAN_TRAMPOLINE`); `helpers` points to the session's, which outlive the run.
            // A helper that reaches a buffer through `&mut` moves `lean`'s generation, and
            // the trampoline re-derives the rows from `lean` before the code goes on.
            let st = unsafe { call(entry, ctx) };
            ctx.memory = core::ptr::null_mut();
            ctx.helpers = core::ptr::null();
            self.helper_stack_mark =
                ebpf_abi::lower_stack_mark(self.helper_stack_mark, lean.lowest_stack_write());
            st
        };
        if st == status::EXIT {
            return Ok(Exit {
                r0: ctx.run.regs[0],
                instructions: budget.wrapping_sub(ctx.run.remaining),
            });
        }
        self.finish_mapped(st, on_plain, data, metadata, stack, budget)
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
        let inner = &self.program.inner;
        if self.mapped_only {
            return self.run_mapped(data, metadata, args, stack);
        }
        if inner.fast_admits(data.as_deref(), metadata.is_some(), args) {
            return self.run_fast(false, data, metadata, args, stack);
        }
        if !inner.refuses_input_run(data.as_deref(), args) {
            return self.run_mapped(data, metadata, args, stack);
        }
        if self.plain_entry.is_null() {
            return self.run_plain_unready(data, metadata, args, stack);
        }
        self.run_fast(true, data, metadata, args, stack)
    }

    #[inline]
    fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        // (What `fast_admits` checks, worked out once: only the length is left; and the
        // fixed regions' rows are in the table.)
        if data.len() as u64 > u64::from(u32::MAX) || self.input_ready != READY_PLAIN {
            if self.input_ready == READY_LEAN && data.len() as u64 <= u64::from(u32::MAX) {
                let args = layout::input_args(data.len() as u64);
                return self.run_lean(false, Some(data), None, args, stack);
            }
            if self.input_fast == NOT_READY || data.len() as u64 > u64::from(u32::MAX) {
                // (Called from here, not from `run_input_unready`: a call more cost every
                // run of code that calls helpers some 20 instructions.)
                let args = layout::input_args(data.len() as u64);
                return self.run_mapped(Some(data), None, args, stack);
            }
            return self.run_input_unready(data, stack);
        }
        let args = layout::input_args(data.len() as u64);
        self.run_ready(false, Some(data), None, args, stack)
    }

    fn run_in<'m>(
        &mut self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        self.fast_table = false;
        self.input_ready = NOT_READY;
        let code = self.program.inner.admitted(memory, args)?;
        code.run_on(
            &mut self.spare,
            memory,
            args,
            &self.helpers,
            &self.limits,
            stack,
        )
    }

    fn take_helper_stack_mark(&mut self) -> Option<u64> {
        self.helper_stack_mark.take()
    }
}

/// The largest shadow stack (in frames) a thread keeps for its next run.
const KEPT_FRAMES: usize = 4096;

/// What a run needs besides the code and the stack — the context (about 11 KiB of region
/// tables) and the shadow stack — kept per thread for the next run, so that a run of a small
/// program is not mostly allocation. A run takes it (a nested run, from a helper, finds none
/// and makes its own) and puts it back when it ends.
struct Spare {
    ctx: Ctx<'static>,
    frames: Vec<Frame>,
}

std::thread_local! {
    static SPARE: core::cell::Cell<Option<Box<Spare>>> = const { core::cell::Cell::new(None) };
}

impl Spare {
    #[inline(always)]
    fn take() -> Box<Spare> {
        SPARE
            .try_with(core::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(Spare::fresh)
    }

    /// A new context, for the thread's first run (out of line: building the 11 KiB context
    /// inline gave every run a stack frame of that size, probed page by page).
    #[cold]
    #[inline(never)]
    fn fresh() -> Box<Spare> {
        Box::new(Spare {
            ctx: Ctx::new(),
            frames: Vec::new(),
        })
    }

    /// Makes the shadow stack's frames those of `limits`: their frame pointers depend only
    /// on the limits, so they are rewritten only when the last run had others.
    #[inline]
    fn prepare_frames(&mut self, limits: &Limits) {
        let depth = limits.max_depth();
        let frames = &mut self.frames;
        if frames.len() != depth
            || frames.first().map(|f| f.callee_fp) != Some(limits.frame_pointer(1))
        {
            frames.clear();
            frames.extend((0..depth).map(|d| Frame {
                callee_fp: limits.frame_pointer(d.saturating_add(1)),
                ..Frame::default()
            }));
        }
    }

    #[inline(always)]
    fn put_back(self: Box<Spare>) {
        if self.frames.capacity() <= KEPT_FRAMES {
            // During thread teardown there is nowhere to keep it: drop it.
            let _ = SPARE.try_with(|s| s.set(Some(self)));
        }
    }
}

fn unknown(pc: u64) -> Trap {
    Trap {
        pc: pc as usize,
        kind: TrapKind::InvalidInstruction {
            reason: ebpf_abi::InvalidReason::Undecodable,
        },
    }
}

/// The trap that generated code (or the trampoline) described in the context.
fn trap_of(ctx: &mut Ctx<'_>, limits: &Limits) -> Trap {
    let raw = unpacked(ctx.run.trap_code, ctx.run.trap_addr);
    match raw.kind(limits).or_else(|| ctx.helper_trap.take()) {
        Some(kind) => Trap {
            pc: ctx.run.trap_pc as usize,
            kind,
        },
        None => unknown(ctx.run.trap_pc),
    }
}

/// The type of [`helper_trampoline`], whose address generated code finds in the context.
type Trampoline = extern "sysv64" fn(*mut Ctx<'_>, u64, u64, u64, u64, u64) -> u32;

/// The trampoline of runs whose `ctx.memory` is a map.
const MAP_TRAMPOLINE: Trampoline = map_trampoline;

/// The trampoline of a session's runs whose `ctx.memory` is a [`RunBuffers`].
const LEAN_TRAMPOLINE: Trampoline = lean_trampoline;

/// [`helper_trampoline`] of a map.
extern "sysv64" fn map_trampoline(
    ctx: *mut Ctx<'_>,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
) -> u32 {
    helper_trampoline::<MemoryMap<'static>>(ctx, r1, r2, r3, r4, r5)
}

/// [`helper_trampoline`] of a [`RunBuffers`]. (Each its own function, the generic body inlined:
/// a generic `extern fn` kept a drop test of the helper's result and two more saved
/// registers on every call's path.)
extern "sysv64" fn lean_trampoline(
    ctx: *mut Ctx<'_>,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
) -> u32 {
    helper_trampoline::<RunBuffers<'static>>(ctx, r1, r2, r3, r4, r5)
}

/// What a trampoline needs of the memory it lends helpers besides [`VmMemory`].
trait HelperMemory: VmMemory {
    /// A number that moves whenever a region's bytes may have been reached through `&mut`
    /// ([`MemoryMap::generation`]).
    fn generation(&self) -> u64;

    /// Re-derives the context's rows of this memory's regions (after it moved on).
    fn refresh(&mut self, ctx: &mut Ctx<'_>);
}

impl HelperMemory for MemoryMap<'_> {
    #[inline(always)]
    fn generation(&self) -> u64 {
        MemoryMap::generation(self)
    }

    fn refresh(&mut self, ctx: &mut Ctx<'_>) {
        ctx.refresh(self);
    }
}

impl HelperMemory for RunBuffers<'_> {
    #[inline(always)]
    fn generation(&self) -> u64 {
        RunBuffers::generation(self)
    }

    fn refresh(&mut self, ctx: &mut Ctx<'_>) {
        ctx.write_buffer_rows(self);
    }
}

/// Called by generated code for `call` and `callx` (System V, 16-byte aligned stack) with
/// `r1`..`r5`: calls the helper whose id is in the context with them and the run's memory,
/// stores `r0` in `regs[0]` and refreshes the region table. Returns 0, or the status with
/// which the generated code must end the run (the trap or panic is recorded in the context).
///
/// Only a call that returns `Ok` and leaves the map's generation as it was stays on the hot
/// path; every other outcome is out of line, so the common call saves few registers.
///
/// `M` is the type of the memory `ctx.memory` points to: a run sets the trampoline of that
/// type ([`MAP_TRAMPOLINE`], [`LEAN_TRAMPOLINE`]) with the pointer.
#[inline(always)]
fn helper_trampoline<M: HelperMemory + 'static>(
    ctx: *mut Ctx<'_>,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
) -> u32 {
    // SAFETY: generated code passes the context pointer it received from `run`, which is live
    // for the whole run and not referenced elsewhere while generated code runs (it is
    // suspended in this call).
    let ctx = unsafe { &mut *ctx };
    let memory_ptr = ctx.memory.cast::<M>();
    let helpers_ptr = ctx.helpers;
    if memory_ptr.is_null() || helpers_ptr.is_null() {
        return called_without_map(ctx);
    }
    // SAFETY: `helpers` was set by `run` from a `&Helpers` that outlives the run.
    let helpers = unsafe { &*helpers_ptr };
    let id = ctx.run.helper_id;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `memory` points to the run's memory (of type `M`: the run set this
        // trampoline with it), live for the run; generated code holds only raw pointers
        // derived from it (refreshed below when they may have gone stale), and no other
        // reference to it exists while the helper runs.
        let memory = unsafe { &mut *memory_ptr };
        helpers.call(id, [r1, r2, r3, r4, r5], memory)
    }));
    // SAFETY: as above; the helper's borrow of the memory ended with its call.
    let generation = unsafe { (*memory_ptr).generation() };
    if let Ok(Ok(r0)) = outcome
        && generation == ctx.generation
    {
        ctx.run.regs[0] = r0;
        // (Nothing to drop; said so, the call's path tests no drop flag.)
        core::mem::forget(outcome);
        return 0;
    }
    after_helper(ctx, memory_ptr as *mut dyn HelperMemory, outcome)
}

/// The trampoline's answer to a call from a run that lent no memory (a session's fast run of
/// code that calls no helper): were a call to come anyway, it traps rather than touching
/// memory that is not there.
#[cold]
#[inline(never)]
fn called_without_map(ctx: &mut Ctx<'_>) -> u32 {
    ctx.run.trap_code = trap_code::HOST;
    ctx.helper_trap = Some(TrapKind::HelperFailed {
        id: ctx.run.helper_id as u32,
        message: "helper called without a map".into(),
    });
    status::TRAP
}

/// The trampoline's slow path: a helper that reached a region's bytes through `&mut` (or
/// changed the map), failed or panicked.
#[cold]
#[inline(never)]
fn after_helper(
    ctx: &mut Ctx<'_>,
    memory_ptr: *mut dyn HelperMemory,
    outcome: std::thread::Result<Result<u64, TrapKind>>,
) -> u32 {
    // The helper may have reborrowed region bytes through `&mut`: re-derive the table that
    // generated code reads. A helper that only read (or used shared map memory) leaves the
    // generation, and the table, as they were (the hot path above).
    // SAFETY: `memory_ptr` is the run's live memory (the trampoline checked it is not null),
    // and the helper's borrow of it has ended.
    let memory = unsafe { &mut *memory_ptr };
    if memory.generation() != ctx.generation {
        memory.refresh(ctx);
    }
    match outcome {
        Ok(Ok(r0)) => {
            ctx.run.regs[0] = r0;
            0
        }
        Ok(Err(kind)) => {
            ctx.helper_trap = Some(kind);
            ctx.run.trap_code = trap_code::HOST;
            status::TRAP
        }
        Err(payload) => {
            ctx.panic = Some(payload);
            status::PANIC
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// `Compiled::refuses_input_run` refuses a run exactly when the entry of `Vm::run`
    /// (`Admission::admits`, on the run's whole map) does not admit it — for every input
    /// length, with a metadata buffer or without, a fixed region or not, and `r1`/`r2` right,
    /// lying, zero or the metadata buffer's — so a refused run is one the fallback code must
    /// take, and an admitted one never is; with no entry facts (no fallback), nothing is
    /// refused.
    #[test]
    fn entry_refusals_are_the_admissions_refusals() {
        let program = ebpf_isa::assemble("mov %r0, 0\nexit").unwrap();
        let with_entry = JitOptions {
            entry: Some(FactsEntry::input()),
            ..JitOptions::default()
        };
        let code = Compiled::new(&program, &with_entry).unwrap();
        let plain = Compiled::new(&program, &JitOptions::default()).unwrap();
        let admission = FactsEntry::input().admission();
        let start = layout::vm_addr(layout::INPUT, 0);
        let meta_start = layout::vm_addr(layout::METADATA, 0);
        let rodata = [1u8; 8];
        let mut checked = 0;
        for len in [None, Some(0), Some(1), Some(8), Some(64)] {
            for metadata in [false, true] {
                for fixed in [false, true] {
                    let n = len.unwrap_or(0) as u64;
                    for args in [
                        layout::input_args(n),
                        [start, n + 1],
                        [start, n.saturating_sub(1)],
                        [start + 1, n],
                        [0, 0],
                        [start, 0],
                        [meta_start, 16],
                        [0, n],
                    ] {
                        let mut data = vec![7u8; len.unwrap_or(0)];
                        let mut meta = [0u8; 16];
                        let mut map = MemoryMap::new();
                        if fixed {
                            map.insert(layout::RODATA, Region::ReadOnly(&rodata));
                        }
                        if len.is_some() {
                            map.insert(layout::INPUT, Region::Writable(&mut data));
                        }
                        if metadata {
                            map.insert(layout::METADATA, Region::Writable(&mut meta));
                        }
                        let admitted = admission.admits(&map, args);
                        let data = len.map(|n| vec![7u8; n]);
                        let case = format!("input {len:?}, metadata {metadata}, args {args:x?}");
                        assert_eq!(
                            code.refuses_input_run(data.as_deref(), args),
                            !admitted,
                            "{case}"
                        );
                        assert!(!plain.refuses_input_run(data.as_deref(), args), "{case}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 2 * 2 * 8);
    }
}
