//! [`Runner`]: a loaded program prepared for many runs on one thread — what an embedder that
//! calls a short program millions of times a second holds (`Vm::runner`), so that a run costs
//! about what a function call costs (docs/per-run.md).
//!
//! A runner does once what `Vm::run` does for every run: it owns a stack and the buffers of
//! a run, and asks the engine for a session (`ebpf_abi::Session`) bound to the VM's helpers,
//! limits and fixed regions, which keeps the engine's context from run to run. A run then
//! hands the session only its input. The stack stays private exactly as for `Vm::run`: the
//! runner scrubs what each run can have written, and a run that panicked out (the embedder
//! caught the panic around it) leaves a mark that makes the next run zero the whole buffer.

use std::fmt;

use ebpf_abi::{Exit, MemoryMap, Session, Trap, layout};

use crate::vm::{Input, Scratch, Vm, undecodable_trap};

/// A [`Vm`] prepared for many runs on one thread ([`Vm::runner`]): same results as
/// [`Vm::run`] and [`Vm::run_with`], run for run, at a fraction of the fixed cost per run.
///
/// Make one per thread (it is not `Send`) and keep it as long as the thread runs the program:
/// making one allocates (its stack, the engine's context); its runs allocate nothing.
///
/// ```
/// use ebpf_vm::Vm;
///
/// let vm = Vm::builder().load_asm("ldxb %r0, [%r1+0]\nexit")?;
/// let mut runner = vm.runner();
/// for byte in 0..4u8 {
///     assert_eq!(runner.run(&mut [byte, 0xff])?, u64::from(byte));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Runner<'vm> {
    vm: &'vm Vm,
    session: Box<dyn Session + 'vm>,
    /// The runner's own stack and buffers (not the thread's: `Vm::run` on the same thread
    /// keeps its own, and neither allocates per run).
    scratch: Box<Scratch>,
    /// `vm.limits.stack_size()`, in bytes.
    stack_size: usize,
}

impl fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("engine", &self.vm.engine())
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// This VM prepared for many runs on the calling thread: see [`Runner`].
    pub fn runner(&self) -> Runner<'_> {
        let mut fixed = MemoryMap::new();
        self.map_fixed_regions(&mut fixed);
        Runner {
            vm: self,
            session: self.compiled.session(&self.helpers, &self.limits, fixed),
            scratch: Box::default(),
            stack_size: usize::try_from(self.limits.stack_size()).unwrap_or(usize::MAX),
        }
    }
}

impl<'vm> Runner<'vm> {
    /// The VM it runs.
    pub fn vm(&self) -> &'vm Vm {
        self.vm
    }

    /// [`Vm::run`]: runs the program on `data` (writable; `r1` = its address, `r2` = its
    /// length, or the metadata buffer if the VM has a layout) and returns `r0`.
    #[inline]
    pub fn run(&mut self, data: &mut [u8]) -> Result<u64, Trap> {
        if self.vm.metadata.is_some() || data.len() as u64 > layout::MAX_REGION_LEN {
            return self.run_with(Input::new(data)).map(|exit| exit.r0);
        }
        let args = [layout::vm_addr(layout::INPUT, 0), data.len() as u64];
        self.run_buffers(Some(data), args).map(|exit| exit.r0)
    }

    /// [`Vm::run_no_data`]: runs the program without any input and returns `r0`.
    pub fn run_no_data(&mut self) -> Result<u64, Trap> {
        if self.vm.metadata.is_some() {
            return self.run_with(Input::none()).map(|exit| exit.r0);
        }
        self.run_buffers(None, [0, 0]).map(|exit| exit.r0)
    }

    /// [`Vm::run_with`]: runs the program on `input` (a metadata buffer, extra regions);
    /// returns `r0` and the instruction count.
    pub fn run_with(&mut self, input: Input<'_>) -> Result<Exit, Trap> {
        // An input alone (no caller's metadata buffer, no extra regions) is what the fast
        // path serves.
        if self.vm.metadata.is_none() && input.is_data_only() {
            let data = input.data;
            match data {
                Some(data) if data.len() as u64 <= layout::MAX_REGION_LEN => {
                    let args = [layout::vm_addr(layout::INPUT, 0), data.len() as u64];
                    return self.run_buffers(Some(data), args);
                }
                Some(data) => return self.run_mapped(Input::new(data)),
                None => return self.run_buffers(None, [0, 0]),
            }
        }
        self.run_mapped(input)
    }

    /// A run on a map built as `Vm::run_with` builds it, through the session.
    fn run_mapped(&mut self, input: Input<'_>) -> Result<Exit, Trap> {
        let session = &mut self.session;
        self.vm
            .run_mapped(input, &mut self.scratch, |map, args, stack| {
                session.run_in(map, args, stack)
            })
    }

    /// A run of the session's fast path: the input alone, on the runner's stack.
    #[inline]
    fn run_buffers(&mut self, data: Option<&mut [u8]>, args: [u64; 2]) -> Result<Exit, Trap> {
        let stack = &mut self.scratch.stack;
        stack.begin_run();
        let result = self.session.run(data, None, args, stack);
        stack.end_run(self.stack_size, self.vm.stack_reach);
        result.map_err(|trap| undecodable_trap(trap, &self.vm.undecodable))
    }
}
