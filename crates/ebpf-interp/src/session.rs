//! The interpreter's [`ebpf_abi::Session`]: what `Vm::run` and a runner run on.
//!
//! A run of a session whose binding has no fixed regions (most VMs: no data images, no
//! read-only regions) maps nothing: the fast loop runs on the run's own buffers
//! ([`RunBuffers`]), and only a run whose budget runs short builds a [`MemoryMap`] of
//! them, for the precise loop. With fixed regions a run builds a map (safe code cannot keep a
//! map of borrowed buffers from one run to the next). Either way, what the session saves
//! against the default one is everything around the loop: one call from the facade to it
//! instead of three, the saved frames kept here instead of in the lent stack, and the limits'
//! budget and frame pointer computed once.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ebpf_abi::{
    Binding, CallFrame, Exit, Helpers, Limits, MapSpill, MemoryMap, RunBuffers, Stack, Trap, layout,
};

use crate::{Interpreter, Machine};

/// An [`Interpreter`] bound to its helpers, limits and fixed regions for runs on one thread.
pub(crate) struct Session {
    program: Arc<Interpreter>,
    binding: Arc<dyn Binding>,
    /// The binding's helpers (a copy saves a virtual call per run; cloning shares each
    /// helper, and happens once, when the session is made).
    helpers: Helpers,
    /// The binding's limits (a copy saves a virtual call per run).
    limits: Limits,
    /// Whether the binding has fixed regions to map (most VMs have none: no call then).
    has_fixed: bool,
    /// The allocation of region ids above the inline ones, kept between runs.
    spill: MapSpill,
    /// The saved caller frames of a run's calls: empty between runs, their allocation kept.
    frames: Vec<CallFrame>,
    /// `limits.stack_size()`, in bytes.
    stack_size: usize,
    /// `r10` at entry.
    frame_pointer: u64,
    /// The budget, `u64::MAX` without one.
    budget: u64,
    /// The helpers' stack mark of the runs since it was last taken.
    helper_stack_mark: Option<u64>,
    /// Whether the program calls a helper (a kfunc, `callx`): only then can a run's map hold
    /// a mark (which saves the helper-free runs the merge).
    calls_helpers: bool,
}

impl Session {
    pub(crate) fn new(program: Arc<Interpreter>, binding: Arc<dyn Binding>) -> Box<Session> {
        let has_fixed = ebpf_abi::has_fixed_regions(&*binding);
        let limits = *binding.limits();
        let calls_helpers = program.insns.iter().any(|insn| {
            matches!(
                insn,
                ebpf_isa::Insn::Call {
                    kind: ebpf_isa::CallKind::Helper | ebpf_isa::CallKind::Btf,
                    ..
                } | ebpf_isa::Insn::CallX { .. }
            )
        });
        Box::new(Session {
            calls_helpers,
            helpers: binding.helpers().clone(),
            program,
            binding,
            has_fixed,
            spill: MapSpill::default(),
            frames: Vec::new(),
            stack_size: usize::try_from(limits.stack_size()).unwrap_or(usize::MAX),
            frame_pointer: limits.frame_pointer(0),
            budget: limits.budget.unwrap_or(u64::MAX),
            helper_stack_mark: None,
            limits,
        })
    }
}

impl ebpf_abi::Session for Session {
    fn run(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        self.run_buffers(data, metadata, args, stack)
    }

    fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
        let args = layout::input_args(data.len() as u64);
        self.run_buffers(Some(data), None, args, stack)
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

impl Session {
    /// [`ebpf_abi::Session::run`] (inlined into it and into `run_input`, where the metadata
    /// buffer is known to be absent). Without fixed regions the run's memory is its three
    /// buffers alone, and the fast loop runs on them directly ([`RunBuffers`], inlined here: one
    /// frame for the whole run); with fixed regions, on a map of them and the buffers (out of
    /// line: joining the two paths' results made the fast one copy its result twice).
    #[inline(always)]
    fn run_buffers(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        if self.has_fixed {
            return self.run_mapped(data, metadata, args, stack);
        }
        // (Empty after every run that returns; a helper's panic caught around the session's
        // caller can leave a run's frames here.)
        self.frames.clear();
        let mut machine = Machine {
            regs: entry_regs(args, self.frame_pointer),
            frames: &mut self.frames,
            pc: 0,
            remaining: self.budget,
        };
        let mut memory = RunBuffers::new(data, metadata, stack.region(self.stack_size));
        let result = self.program.run_lean(
            &mut machine,
            &mut memory,
            &self.helpers,
            &self.limits,
            self.budget,
        );
        self.end_run(memory.lowest_stack_write());
        result
    }

    /// A run of a session with fixed regions: on a map of them and the run's buffers.
    #[inline(never)]
    fn run_mapped(
        &mut self,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
        stack: &mut Stack,
    ) -> Result<Exit, Trap> {
        self.frames.clear();
        let binding = &*self.binding;
        let mut map = MemoryMap::with_spill(core::mem::take(&mut self.spill));
        binding.map_fixed(&mut map);
        map.insert_buffers(data, metadata, stack.region(self.stack_size));
        let mut machine = Machine {
            regs: entry_regs(args, self.frame_pointer),
            frames: &mut self.frames,
            pc: 0,
            remaining: self.budget,
        };
        let result = self.program.dispatch(
            &mut machine,
            &mut map,
            binding.helpers(),
            &self.limits,
            self.budget,
            None,
        );
        let mark = map.lowest_stack_write();
        self.spill = map.into_spill();
        self.end_run(mark);
        result
    }

    /// After a run: its frames dropped (a run that trapped inside a call leaves some: they
    /// hold its registers), the helpers' stack mark merged.
    #[inline(always)]
    fn end_run(&mut self, mark: Option<u64>) {
        self.frames.clear();
        if self.calls_helpers {
            self.helper_stack_mark = ebpf_abi::lower_stack_mark(self.helper_stack_mark, mark);
        }
    }
}

/// The registers at entry: `r1`/`r2` the arguments, `r10` the frame pointer, the rest zero.
#[inline(always)]
fn entry_regs(args: [u64; 2], frame_pointer: u64) -> [u64; 16] {
    let mut regs = [0u64; 16];
    regs[1] = args[0];
    regs[2] = args[1];
    regs[10] = frame_pointer;
    regs
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::sync::Arc;

    use ebpf_abi::{
        Executable, HelperError, Helpers, Limits, PlainBinding, Stack, VmMemory, layout,
    };

    use crate::Interpreter;

    /// A helper's panic inside a local call, caught around the run (as an embedder that keeps
    /// its runner may), leaves the call's frame in the session; the next run must not return
    /// into it: it exits at its own `exit`, with its own `r0` and count.
    #[test]
    fn a_run_after_a_caught_panic_in_a_call_starts_with_no_frames() {
        let program = ebpf_isa::assemble(
            "ldxb %r6, [%r1]\nmov %r0, 5\njeq %r6, 0, +3\ncall local f\nmov %r0, 99\nexit\n\
             exit\nf:\nmov %r1, %r6\ncall 1\nexit",
        )
        .unwrap();
        let mut helpers = Helpers::new();
        helpers.insert(
            1,
            |_: [u64; 5], _: &mut dyn VmMemory| -> Result<u64, HelperError> {
                panic!("the helper panics")
            },
        );
        let binding = Arc::new(PlainBinding {
            helpers,
            limits: Limits::default(),
        });
        let mut session = Arc::new(Interpreter::new(&program)).session(binding);
        let mut stack = Stack::new();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.run_input(&mut [1u8], &mut stack)
        }));
        assert!(caught.is_err());
        let exit = session.run_input(&mut [0u8], &mut Stack::new());
        assert_eq!(exit.map(|e| (e.r0, e.instructions)), Ok((5, 4)));
    }

    /// A helper's stack write reaches the session's mark whether its call runs in the fast
    /// loop (on the lean memory) or, the budget short, in the precise loop (on the map the hand-
    /// over made): the lowest of both, which the scrub after the run must reach. Either mark
    /// lost would leave a helper's bytes for the next run to read.
    #[test]
    fn the_helpers_mark_survives_the_hand_over_to_the_precise_loop() {
        // pcs: 0 call 1 | 1 mov | 2 add | 3 jlt | 4 call 2 | 5 mov | 6 exit. 2 + 2 * 10 = 22
        // instructions before pc 4; with a budget of 24, `call 2; mov; exit` (3) does not fit
        // the 2 left, so `call 2` runs in the precise loop, which runs out at `exit`.
        let program = ebpf_isa::assemble(
            "call 1\nmov %r6, 0\nloop:\nadd %r6, 1\njlt %r6, 10, loop\ncall 2\nmov %r0, 0\nexit",
        )
        .unwrap();
        let program = Arc::new(Interpreter::new(&program));
        // (fast loop's offset, precise loop's offset): the lower one on either side.
        for (fast, precise) in [(48u64, 40u64), (40, 48)] {
            let mut helpers = Helpers::new();
            for (id, off) in [(1u32, fast), (2, precise)] {
                helpers.insert(
                    id,
                    move |_: [u64; 5], mem: &mut dyn VmMemory| -> Result<u64, HelperError> {
                        mem.write(layout::vm_addr(layout::STACK, off), &[1])?;
                        Ok(0)
                    },
                );
            }
            for (budget, expected) in [(None, Ok(0)), (Some(24), Err(6))] {
                let limits = Limits {
                    budget,
                    ..Limits::default()
                };
                let binding = Arc::new(PlainBinding {
                    helpers: helpers.clone(),
                    limits,
                });
                let mut session = program.clone().session(binding);
                let got = session.run_input(&mut [0u8; 4], &mut Stack::new());
                let what = (fast, precise, budget);
                assert_eq!(got.map(|e| e.r0).map_err(|t| t.pc), expected, "{what:?}");
                assert_eq!(session.take_helper_stack_mark(), Some(40), "{what:?}");
            }
        }
    }
}
