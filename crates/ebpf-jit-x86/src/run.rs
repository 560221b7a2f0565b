//! Mapping and running generated code (x86-64 Linux and macOS only): W^X mapping, the run's
//! stack and context, the call into generated code, the helper trampoline, and turning what
//! the code reports into an `Exit` or a `Trap`.
//!
//! All of the crate's `unsafe` is here: creating the function pointer, calling it, and the
//! trampoline's dereferences of the context.

use alloc::boxed::Box;
use alloc::vec::Vec;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ebpf_abi::{
    Exit, Helpers, Limits, MemoryMap, Region, Stack, Trap, TrapKind, layout, trap_code,
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
}

/// What code compiled with the facts of an entry needs for the runs that entry does not admit.
struct Fallback {
    /// What the entry the code's facts assume asks of a run.
    admission: ebpf_cfg::facts::Admission,
    /// For runs the entry does not admit: the program compiled with the stack's facts only
    /// (made when first needed), and what to make it from.
    plain: std::sync::OnceLock<Result<Box<Compiled>, JitError>>,
    program: Program,
    options: JitOptions,
}

impl Compiled {
    /// Emits `program` with the facts proven from `options.entry` (or from the stack alone)
    /// and maps the code: written into read+write pages, which are then turned read+execute
    /// (`pages`), so no page is ever writable and executable.
    pub(crate) fn new(program: &Program, options: &JitOptions) -> Result<Compiled, JitError> {
        let entry = options.entry.clone().unwrap_or_else(FactsEntry::unknown);
        let facts = Facts::analyse(program, &entry);
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
        let fallback = (*facts.entry() != FactsEntry::unknown()).then(|| {
            Box::new(Fallback {
                admission: facts.entry().admission(),
                plain: std::sync::OnceLock::new(),
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
        })
    }

    pub(crate) fn code(&self) -> &[u8] {
        self.code.pages.bytes()
    }

    pub(crate) fn run<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        if let Some(fallback) = &self.fallback
            && !fallback.admission.admits(memory, args)
        {
            let plain = fallback.plain.get_or_init(|| {
                let options = JitOptions {
                    entry: None,
                    ..fallback.options.clone()
                };
                Compiled::new(&fallback.program, &options).map(Box::new)
            });
            return match plain {
                Ok(plain) => plain.run(memory, args, helpers, limits, stack),
                // Only mapping memory can fail for a program that compiled once.
                Err(_) => Err(unknown(0)),
            };
        }
        let code = &self.code;
        let stack_size = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
        let mut spare = Spare::take();
        // The lent stack keeps 512 bytes of slack below the region (fast-path stack accesses
        // stay inside `[r10 - 512, r10)`; the slack is a second guard).
        memory.insert(layout::STACK, Region::Writable(stack.region(stack_size)));

        let depth = limits.max_depth();
        let frames = &mut spare.frames;
        // The shadow stack's frame pointers depend only on the limits: rewrite them only when
        // this thread's last run had others.
        if frames.len() != depth
            || frames.first().map(|f| f.callee_fp) != Some(limits.frame_pointer(1))
        {
            frames.clear();
            frames.extend((0..depth).map(|d| Frame {
                callee_fp: limits.frame_pointer(d.saturating_add(1)),
                ..Frame::default()
            }));
        }
        let budget = limits.budget.unwrap_or(u64::MAX);

        let ctx = &mut spare.ctx;
        ctx.reset();
        ctx.refresh(memory);
        ctx.run.regs[1] = args[0];
        ctx.run.regs[2] = args[1];
        ctx.run.regs[10] = limits.frame_pointer(0);
        ctx.run.remaining = budget;
        let base = frames.as_mut_ptr();
        ctx.run.frame_base = base as u64;
        ctx.run.frame_sp = base as u64;
        ctx.run.frame_end = base.wrapping_add(frames.len()) as u64;
        let trampoline: extern "sysv64" fn(*mut Ctx<'_>) -> u32 = helper_trampoline;
        ctx.run.trampoline = trampoline as usize as u64;

        // Generated code runs from its entry, and again from its resume entry each time the
        // budget's slow path leaves a chain with budget to spare.
        let mut start = code.pages.entry();
        let result = loop {
            // Until generated code returns, `memory` is used only through this pointer (by the
            // helper trampoline). The context outlives the run (it is reused), so the pointer's
            // lifetime is erased; it is cleared as soon as the code returns.
            ctx.memory = core::ptr::from_mut(&mut *memory).cast();
            ctx.helpers = helpers;
            // SAFETY: `start` is the entry (offset 0) or the resume entry of the code, both
            // the prologue of a function of signature `Entry` (System V: the context in rdi,
            // the status back in eax, callee-saved registers restored by the shared
            // epilogue), and the code stays mapped read+execute while `self` lives.
            let entry: Entry = unsafe { core::mem::transmute(start) };
            // SAFETY: the context is fully initialised: the region table describes exactly
            // the live buffers of `memory` (bounds checked by the code before every access),
            // the frame pointers and shadow stack point into `frames` (length checked against
            // `frame_end` before every push), `trampoline` is `helper_trampoline`, and for the
            // resume entry `resume` is the address of a block's code. Generated code never
            // touches memory outside these, never unwinds, and returns through its epilogue
            // with the host stack balanced.
            let st = unsafe { entry(ctx) };
            ctx.memory = core::ptr::null_mut();
            ctx.helpers = core::ptr::null();
            match st {
                status::EXIT => {
                    break Ok(Exit {
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
                        Stepped::Trap(trap) => break Err(trap),
                        Stepped::Resume { block, remaining } => {
                            let Some(&offset) = code.block_offsets.get(block) else {
                                break Err(unknown(ctx.run.trap_pc));
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
                status::PANIC => match ctx.panic.take() {
                    Some(payload) => std::panic::resume_unwind(payload),
                    None => break Err(unknown(ctx.run.trap_pc)),
                },
                status::FACT => {
                    // Checked-facts mode: a check the facts declared impossible failed. That
                    // is a bug in the facts, not in the program; say so as loudly as possible.
                    let pc = ctx.run.trap_pc;
                    spare.put_back();
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
                    break Err(trap_of(ctx, limits));
                }
            }
        };
        spare.put_back();
        result
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

/// Called by generated code for `call` and `callx` (System V, 16-byte aligned stack): calls
/// the helper whose id is in the context with `args` and the run's memory, stores `r0` in
/// `regs[0]` and refreshes the region table. Returns 0, or the status with which the
/// generated code must end the run (the trap or panic is recorded in the context).
extern "sysv64" fn helper_trampoline(ctx: *mut Ctx<'_>) -> u32 {
    // SAFETY: generated code passes the context pointer it received from `run`, which is live
    // for the whole run and not referenced elsewhere while generated code runs (it is
    // suspended in this call).
    let ctx = unsafe { &mut *ctx };
    // SAFETY: `helpers` was set by `run` from a `&Helpers` that outlives the run.
    let helpers = unsafe { &*ctx.helpers };
    let id = ctx.run.helper_id;
    let args = ctx.run.args;
    let memory_ptr = ctx.memory;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `memory` points to the run's map, live for the run; generated code holds
        // only raw pointers derived from it (refreshed below), and no reference to it exists
        // while the helper runs.
        let memory = unsafe { &mut *memory_ptr };
        let result = helpers.call(id, args, memory);
        // The helper reached a region's bytes through `&mut` (or changed the map): re-derive
        // the table that generated code reads. A helper that only read (or used shared map
        // memory) leaves the generation, and the table, as they were.
        if memory.generation() != ctx.generation {
            ctx.refresh(memory);
        }
        result
    }));
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
