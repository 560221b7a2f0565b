//! [`Executable`]: the engine interface — what a program prepared by any engine offers, so
//! that the facade, and an engine that wraps others (a tiered one, say), hold programs of every
//! engine alike.
//!
//! Each engine has its own way to prepare a program (`Interpreter::new`, the JITs' `compile`
//! with their options and their own error type); what they share is how the result runs. A
//! new engine implements this trait for its prepared program, and the facade adds one arm
//! where it picks engines.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;

use crate::{Exit, Helpers, Limits, MapSpill, MemoryMap, Region, Stack, Trap, layout};

/// A program an engine has prepared (pre-decoded or compiled), ready to run any number of
/// times, from any number of threads at once, each run with its own memory.
///
/// Every implementation runs with exactly the contract's semantics: for the same program,
/// memory, arguments, helpers and limits, every engine returns the same [`Exit`] (`r0` and
/// instruction count) or the same [`Trap`] (kind and pc), and leaves memory the same. The
/// interpreter (`ebpf-interp`) is the reference.
pub trait Executable: Send + Sync + fmt::Debug {
    /// Runs the program on a fresh stack (see [`Executable::run_in`]).
    ///
    /// `memory` holds every region the program may touch except the stack, which the run
    /// allocates itself (`limits.stack_size()` bytes, zeroed). `args` are `r1` and `r2`;
    /// `r10` is the top of the entry frame; every other register starts at 0. A helper that
    /// panics makes this call panic with the same payload.
    fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        let mut stack = Stack::new();
        // The map may hold the stack for no longer than the stack lives.
        let mut memory: MemoryMap<'_> = memory;
        self.run_in(&mut memory, args, helpers, limits, &mut stack)
    }

    /// Runs the program with the stack region `stack.region(limits.stack_size())`, which the
    /// caller lends: as [`Executable::run`] when that region is all zero (what the caller
    /// promises, by keeping [`Stack`]'s invariant), and without allocating once the stack has
    /// been used for a run of the same size. The run may leave its data in the region: the
    /// caller scrubs it before lending the stack again.
    ///
    /// The map is lent, not moved (a move copies a few hundred bytes per run); the run maps
    /// the stack into it at [`crate::layout::STACK`] (replacing what is there), which is why
    /// the stack is borrowed as long as the map's regions are. The map holds the same regions
    /// afterwards, the stack's included.
    fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap>;

    /// Bytes of machine code the engine generated for the program (0 for an engine that
    /// generates none).
    fn code_size(&self) -> usize {
        0
    }

    /// A [`Session`]: the program prepared for many runs on one thread, bound to `binding`
    /// (its helpers, limits and the regions every run shares), so that each run pays only for
    /// what differs between runs — its input.
    ///
    /// The session owns what it uses (the program and the binding, by `Arc`), so a caller may
    /// keep it anywhere — in a per-thread cache, say — for as long as it likes.
    ///
    /// The default session builds a map per run and calls [`Executable::run_in`]: every
    /// engine has one; an engine overrides this where it can do less per run (keep its
    /// context, write only the input's row of its region table).
    fn session(self: Arc<Self>, binding: Arc<dyn Binding>) -> Box<dyn Session>
    where
        Self: 'static,
    {
        Box::new(MappedSession::new(self, binding))
    }
}

/// What a [`Session`] is bound to besides the program: the helpers and limits of its runs and
/// the regions every run shares — what a loaded VM configures once (the facade implements it).
pub trait Binding: Send + Sync {
    /// The helpers runs call: the same set on every call (a session may copy it when it is
    /// made, as the interpreter's does, to save a virtual call per run).
    fn helpers(&self) -> &Helpers;

    /// The limits runs are held to.
    fn limits(&self) -> &Limits;

    /// Maps the regions every run shares into `map`, a new one: read-only and shared regions
    /// only (their bytes are never reached through `&mut`), the same ones on every call, so
    /// that raw rows derived from one call describe the next call's regions too.
    fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>);
}

/// A [`Binding`] with no fixed regions: helpers and limits alone (what an engine's own tests
/// and a caller without shared regions bind a session to).
#[derive(Clone, Debug, Default)]
pub struct PlainBinding {
    /// The helpers runs call.
    pub helpers: Helpers,
    /// The limits runs are held to.
    pub limits: Limits,
}

impl Binding for PlainBinding {
    fn helpers(&self) -> &Helpers {
        &self.helpers
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn map_fixed<'a>(&'a self, _: &mut MemoryMap<'a>) {}
}

/// A program bound to its helpers, limits and fixed regions for runs on one thread
/// ([`Executable::session`]); what an embedder's per-thread runner holds, and what `Vm::run`
/// keeps per thread and VM.
///
/// Each run has exactly the contract's semantics, as [`Executable::run_in`] with a map of the
/// fixed regions and the run's own. The caller lends the stack to each run and keeps its
/// invariant (all zero when lent; it scrubs what the run can have written afterwards, as
/// for `run_in`).
pub trait Session {
    /// Runs the program on the fixed regions, `data` at [`layout::INPUT`] and `metadata` at
    /// [`layout::METADATA`] (both writable, each unmapped when `None`), with `args` as
    /// `r1`/`r2` and the stack region `stack.region(limits.stack_size())`.
    fn run(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap>;

    /// [`Session::run`] of `data` alone, with `r1`/`r2` its start and length: the run
    /// `Vm::run` makes, on which a session may take a path of its own (its checks worked out
    /// once, for every such run). `data` is at most [`layout::MAX_REGION_LEN`] bytes.
    #[inline]
    fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        let args = layout::input_args(data.len() as u64);
        self.run(Some(data), None, args, stack)
    }

    /// Runs the program on `memory`, which the caller built with every region of the run
    /// but the stack (the fixed ones included): as [`Executable::run_in`] with the
    /// session's helpers and limits.
    fn run_in<'m>(
        &mut self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap>;

    /// The lowest offset into the stack region that a helper wrote
    /// ([`MemoryMap::lowest_stack_write`]) in the session's [`Session::run`]s and
    /// [`Session::run_input`]s since the last call (`None` if none did), forgotten as it is
    /// returned: what a lender that scrubs only what a run can have written adds to the
    /// program's own reach. (A [`Session::run_in`] run's mark is in the caller's map.)
    ///
    /// A session that does not keep it says `Some(0)`: the whole stack.
    fn take_helper_stack_mark(&mut self) -> Option<u64> {
        Some(0)
    }
}

/// The lower of two stack marks ([`MemoryMap::lowest_stack_write`]), `None` meaning "nothing
/// written": what a session that builds a map per run keeps across runs until
/// [`Session::take_helper_stack_mark`] takes it.
#[inline]
pub fn lower_stack_mark(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The default [`Session`]: each run maps its buffers next to the fixed regions and calls
/// [`Executable::run_in`].
struct MappedSession<E: ?Sized> {
    program: Arc<E>,
    binding: Arc<dyn Binding>,
    /// The binding's limits (a copy saves a virtual call per run).
    limits: Limits,
    /// Whether the binding has fixed regions to map (most VMs have none: no call then).
    has_fixed: bool,
    /// The allocation of region ids above the inline ones, kept between runs.
    spill: MapSpill,
    /// The helpers' stack mark of the runs since it was last taken.
    helper_stack_mark: Option<u64>,
}

impl<E: ?Sized> MappedSession<E> {
    fn new(program: Arc<E>, binding: Arc<dyn Binding>) -> MappedSession<E> {
        let has_fixed = has_fixed_regions(&*binding);
        MappedSession {
            program,
            limits: *binding.limits(),
            binding,
            has_fixed,
            spill: MapSpill::default(),
            helper_stack_mark: None,
        }
    }
}

impl<E: Executable + ?Sized> Session for MappedSession<E> {
    fn run(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        let binding = &*self.binding;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        if self.has_fixed {
            binding.map_fixed(&mut map);
        }
        map_buffers(&mut map, data, metadata);
        let result = self
            .program
            .run_in(&mut map, args, binding.helpers(), &self.limits, stack);
        self.helper_stack_mark = lower_stack_mark(self.helper_stack_mark, map.lowest_stack_write());
        self.spill = map.into_spill();
        result
    }

    fn run_in<'m>(
        &mut self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        self.program
            .run_in(memory, args, self.binding.helpers(), &self.limits, stack)
    }

    fn take_helper_stack_mark(&mut self) -> Option<u64> {
        self.helper_stack_mark.take()
    }
}

/// Fills `map` (a new one, on the session's kept [`MapSpill`]) as [`Session::run`] describes
/// a run's memory — the binding's fixed regions, `data` at [`layout::INPUT`], `metadata` at
/// [`layout::METADATA`] — in place (a map returned by value is a few hundred bytes copied):
/// what a session that maps every run (or a cold path of one that does not) builds.
#[inline(always)]
pub fn map_run<'a>(
    map: &mut MemoryMap<'a>,
    binding: &'a dyn Binding,
    data: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
) {
    binding.map_fixed(map);
    map_buffers(map, data, metadata);
}

/// Whether `binding` has fixed regions to map: a session that knows it has none skips
/// [`Binding::map_fixed`] (a virtual call) on every run.
pub fn has_fixed_regions(binding: &dyn Binding) -> bool {
    let mut fixed = MemoryMap::new();
    binding.map_fixed(&mut fixed);
    fixed.mapped_ids() != 0
}

/// Maps a run's own buffers: `data` at [`layout::INPUT`], `metadata` at [`layout::METADATA`].
#[inline(always)]
pub fn map_buffers<'a>(
    map: &mut MemoryMap<'a>,
    data: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
) {
    if let Some(data) = data {
        map.insert(layout::INPUT, Region::Writable(data));
    }
    if let Some(metadata) = metadata {
        map.insert(layout::METADATA, Region::Writable(metadata));
    }
}
