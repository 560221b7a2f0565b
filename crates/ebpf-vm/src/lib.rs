//! `ebpf-vm`: run eBPF programs in user space — the facade most users depend on.
//!
//! What it is for: one small API over the workspace. Load a program from bytes or text
//! ([`Vm::builder`] … [`VmBuilder::load`]) — loading runs the verifier, which reports every
//! problem with its pc, and refuses a program that can loop unless a budget is set —,
//! configure it once (engine, helpers, budget, call
//! depth, metadata buffer, extra regions), then run it as often as you like, from as many
//! threads as you like, each run with its own memory. A run returns `r0` or a [`Trap`] with the
//! pc and what went wrong — never a crash, whatever the bytes. [`Vm::run_traced`] shows what a
//! run does, instruction by instruction. A thread that runs one program millions of times
//! holds a [`Runner`] ([`Vm::runner`]): the same results, at a fraction of the fixed cost of a
//! run.
//!
//! Programs written for the kernel — XDP and socket filters that use maps and kernel helpers —
//! load with [`VmBuilder::load_object`] (every program of an object, sharing its maps) and run
//! with [`Vm::run_packet`] on a [`Packet`] and a [`Context`]; the kernel's helpers are a set
//! the embedder opts into ([`VmBuilder::kernel_helpers`], `docs/helpers.md`).
//!
//! What it is not for: logic of its own. Semantics live in `ebpf-interp`, the contract in
//! `ebpf-abi`, the instruction set in `ebpf-isa` (re-exported as [`isa`]); this crate chooses,
//! configures and wires them together.
//!
//! # Example
//!
//! ```
//! use ebpf_vm::{HelperError, Trap, TrapKind, Vm, VmMemory};
//!
//! // r0 = the first byte of the input plus the value helper 1 computes from it.
//! let program = "
//!     ldxb %r1, [%r1]
//!     mov %r6, %r1
//!     call 1
//!     add %r0, %r6
//!     exit
//! ";
//! let vm = Vm::builder()
//!     .helper(1, |args: [u64; 5], _mem: &mut dyn VmMemory| {
//!         if args[0] > 100 {
//!             return Err(HelperError::failed("too large"));
//!         }
//!         Ok(args[0] * 10)
//!     })
//!     .budget(10_000)
//!     .load_asm(program)?;
//!
//! assert_eq!(vm.run(&mut [4])?, 44);
//! // A helper can end the program; the trap says where.
//! let err = vm.run(&mut [200]).unwrap_err();
//! assert_eq!(err.pc, 2);
//! assert!(matches!(err.kind, TrapKind::HelperFailed { id: 1, .. }));
//! // Reading past the input is a trap, not a crash.
//! let err: Trap = Vm::builder().load_asm("ldxw %r0, [%r1+2]\nexit")?.run(&mut [0; 4]).unwrap_err();
//! assert_eq!(err.to_string(), "out-of-bounds read of 4 bytes at 0x400000002 at pc 0");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Memory and entry registers
//!
//! Programs see a virtual address space (see [`layout`]): the input is at
//! `0x4_0000_0000`, the stack below `r10`, and so on. At entry `r1` is the input's address and
//! `r2` its length — or, with a [metadata buffer](VmBuilder::metadata), `r1` points to that
//! buffer, into which the VM writes the input's start and end addresses. `r10` is the top of
//! a 512-byte frame; every local call gets a fresh frame.
//!
//! # Resource limits
//!
//! Whatever the program and the input, a load and a run are bounded (`docs/limits.md` has
//! the measured time and memory of each engine at the limits):
//!
//! - **Program size**: at most [`MAX_PROGRAM_SLOTS`] (1,000,000) slots, verified or not; a
//!   longer program is [`LoadError::TooLarge`] before it is decoded or compiled. The verifier's
//!   `max_slots` can lower the limit, not raise it.
//! - **Call depth**: at most [`MAX_CALL_DEPTH`] (65,536) nested local calls
//!   ([`VmBuilder::max_call_depth`], default 8; more is [`LoadError::InvalidConfig`]). Each
//!   frame is 512 bytes, so a run's stack — allocated and zeroed for each run — is
//!   `(depth + 1) × 512` bytes, at most 32 MiB.
//! - **Budget**: [`VmBuilder::budget`] stops a run after that many instructions, exactly, on
//!   every engine; a chain of tail calls ([`Vm::run_packet`]) is one run, its programs
//!   sharing the budget. Without one, only programs the verifier proves loop-free load (and they
//!   execute at most the instructions its `Termination::Bounded` says), unless
//!   [`VmBuilder::allow_unbounded`] accepts the risk.
//! - **Memory per run**: each region (input, metadata buffer, extra regions) is borrowed, not
//!   copied, and holds at most 4 GiB ([`layout::MAX_REGION_LEN`]); a longer one is refused
//!   with [`TrapKind::RegionTooLarge`] before the run. An ELF object's data images are at most
//!   64 MiB each (the writable one is copied for each run).
//!
//! # Code cache
//!
//! Loading a program that is already loaded — same bytecode, same JIT options, same host —
//! reuses its Cranelift code instead of compiling it again ([`CodeCache`]: process-wide by
//! default, per builder with [`VmBuilder::code_cache`], off with
//! [`VmBuilder::no_code_cache`]). The code is freed with the last [`Vm`] that uses it.
//!
//! rbpf's four kinds of VM map onto one configuration each: `EbpfVmRaw` is the default;
//! `EbpfVmNoData` is [`Vm::run_no_data`]; `EbpfVmFixedMbuff` is
//! [`VmBuilder::metadata`]; `EbpfVmMbuff` is [`Vm::run_with`] with
//! [`Input::metadata`]. See `docs/rbpf-migration.md`.

#![forbid(unsafe_code)]

mod cache;
mod engine;
// Without `elf` nothing loads an object, so the kernel helpers' object side (contexts
// written for a run, map regions, program types) is compiled but never called.
#[cfg_attr(
    not(feature = "elf"),
    allow(
        dead_code,
        reason = "objects come from ELF: their loading is behind `elf`"
    )
)]
pub mod kernel;
#[cfg(feature = "elf")]
mod object;
mod runner;
pub mod scrub;
mod vm;

pub use cache::{CacheStats, CodeCache};
pub use ebpf_abi::{
    CONFORMANCE_HELPER_ID, Exit, Helper, HelperError, InvalidReason, Limits, MAX_CALL_DEPTH,
    MAX_PROGRAM_SLOTS, SharedMemory, Trap, TrapKind, VmMemory, conformance_helper, layout,
};
/// Control-flow graphs on their own (blocks, functions, loops: what `ebpf cfg` draws).
pub use ebpf_cfg as cfg;
/// The ELF loader on its own (listing an object's programs, say).
#[cfg(feature = "elf")]
pub use ebpf_elf as elf;
/// Selecting a program in an ELF object: [`VmBuilder::load_elf`]'s second argument.
#[cfg(feature = "elf")]
pub use ebpf_elf::Selector;
/// Tracing a run ([`Vm::run_traced`]): what each executed instruction did.
pub use ebpf_interp::{Access, Effect, Observer, Step};
/// The instruction set: typed instructions, decoding, encoding, assembly and disassembly.
pub use ebpf_isa as isa;
/// The Cranelift JIT on its own: ahead-of-time objects for other targets
/// (`compile_object`), with the C ABI of its `c/ebpf_jit.h`.
#[cfg(feature = "jit-cranelift")]
pub use ebpf_jit_cranelift as cranelift;
/// BPF maps (array, hash, LRU, per-CPU, ring buffer, …) shared by concurrent runs and the host.
pub use ebpf_maps as maps;
/// The verifier on its own, for tools that check programs without running them.
pub use ebpf_verifier as verifier;
pub use ebpf_verifier::{
    Finding, FindingKind, Policy, PolicyView, Rejected, Severity, Termination, VerifierConfig,
};
pub use engine::Engine;
pub use kernel::KernelHelpers;
pub use kernel::context::{Context, Packet, ProgramKind, SkBuff, TcAction, XdpAction, XdpMd};
#[cfg(feature = "elf")]
pub use object::{Object, Outcome};
pub use runner::Runner;
pub use vm::{Input, LoadError, MetadataLayout, Vm, VmBuilder};
