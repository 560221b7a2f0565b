//! `ebpf-jit-x86`: a hand-written, single-pass x86-64 JIT for eBPF that is safe on unverified
//! programs.
//!
//! What it is for: turning a decoded [`ebpf_isa::Program`] into x86-64 machine code in one
//! linear pass ([`compile`]) and running it ([`X86Program::run`]) with exactly the semantics of
//! the reference interpreter (`ebpf-interp`) and the runtime contract of `ebpf-abi`: the same
//! `r0`, the same [`Trap`] (kind and pc), the same instruction count and the same final memory,
//! for every program, valid or not. Every load, store and atomic is bounds-checked inline
//! against the run's region table; division never raises #DE; the budget is exact; local calls
//! get real frames; helpers are called through the contract's [`Helpers`]; code pages are
//! written, then made read+execute (never writable and executable at once); immediates are
//! blinded by default.
//!
//! What it is not for: deciding which programs are acceptable (`ebpf-verifier`), setting up
//! regions and entry registers for an embedder (the `ebpf-vm` facade), or other hosts. On
//! anything but x86-64 Linux or macOS the crate compiles, and [`compile`] returns
//! [`JitError::Unsupported`]; no code is ever generated for a host that cannot run it.
//!
//! See `docs/jit-x86.md` for the design: register mapping, context layout, calling convention,
//! budget scheme, trap path, blinding, W^X, and what Windows would need.
//!
//! ```
//! use ebpf_abi::{Helpers, Limits, MemoryMap};
//! use ebpf_jit_x86::{JitError, JitOptions, compile};
//!
//! let program = ebpf_isa::assemble("mov %r0, 6\nmul %r0, 7\nexit").unwrap();
//! match compile(&program, &JitOptions::default()) {
//!     Ok(jit) => {
//!         let exit = jit.run(MemoryMap::new(), [0, 0], &Helpers::new(), &Limits::default()).unwrap();
//!         assert_eq!((exit.r0, exit.instructions), (42, 3));
//!     }
//!     Err(JitError::Unsupported) => {} // not an x86-64 Linux/macOS host
//!     Err(e) => panic!("{e}"),
//! }
//! ```

extern crate alloc;

mod blocks;
mod context;
mod emit;
mod live;
mod slow;

#[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
#[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
mod pages;
#[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
mod run;

#[cfg(test)]
mod tests;

use alloc::string::String;
use core::fmt;

use ebpf_abi::{Executable, Exit, Helpers, Limits, MemoryMap, Stack, Trap};
use ebpf_isa::Program;

/// How to compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Blind immediates: every 32- and 64-bit immediate of the program (ALU operands,
    /// comparison constants, stored constants, `lddw` values, helper ids, packet offsets)
    /// outside -32768..=65535 appears in the code only XORed with a fresh random key, so a
    /// program cannot plant chosen byte sequences longer than two in executable memory (a
    /// value in that range puts two chosen bytes there, as a 16-bit memory offset does; an
    /// `lddw` of a region address `region << 32 | offset` with `offset <= 0xffff` is built
    /// from its parts, `mov`, `shl`, `or`, instead). Costs one or two instructions per blinded
    /// immediate. Default: on.
    pub constant_blinding: bool,
    /// What holds when the program starts (`ebpf_cfg::facts::Entry`): the facts proven from it
    /// drop the checks they make impossible (accesses in bounds, divisors never zero, loops
    /// checked once at entry). A run the entry does not admit (`Entry::admits`: other
    /// arguments or regions) runs a second compilation made without them. `None`: facts from
    /// the stack alone, which every run admits. Default: `None`.
    pub entry: Option<ebpf_cfg::facts::Entry>,
    /// Keep every check a fact makes impossible, and end the run with a panic naming the pc if
    /// one ever fires — a bug in the facts, made loud. For tests. Default: on in builds with
    /// debug assertions.
    pub checked_facts: bool,
    /// Spectre v1 masking: every access whose bounds check runs at run time uses a host
    /// address that is forced to 0 (the null page) when the check fails, by a conditional move
    /// or an `sbb`/`and` mask on the check's own flags — data flow the CPU does not predict —
    /// so a mispredicted check cannot make it load or store out of bounds speculatively and
    /// leak what it read through the cache. Accesses the facts prove in bounds have no check
    /// and no mask; see `spectre_clamp_proven` for those whose proof rests on a branch
    /// (docs/jit-x86.md says what the masking costs). Default: on.
    pub spectre_masking: bool,
    /// With `spectre_masking`, also clamp, without a branch, every access the facts prove in
    /// bounds through a branch of the program's own (a guard, a loop bound, a version's
    /// dispatcher: `Access::InBounds { speculation_safe: false }`): on the path a mispredicted
    /// guard leads to, such an access would otherwise run with the value the guard excluded.
    /// Five instructions per such access, no branch; it costs 12–16% (geomean) on the bench's
    /// memory-bound loops (docs/jit-x86.md, "Measured: Spectre masking"), over the 3% a
    /// default may cost, so it is an option. Default: off.
    pub spectre_clamp_proven: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            constant_blinding: true,
            entry: None,
            checked_facts: cfg!(debug_assertions),
            spectre_masking: true,
            spectre_clamp_proven: false,
        }
    }
}

/// Why a program could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JitError {
    /// This host is not x86-64 Linux or macOS: the JIT is not available.
    Unsupported,
    /// The program has more slots than the code can address (pcs are 32-bit immediates).
    TooLarge {
        /// Number of slots of the program.
        slots: usize,
    },
    /// The assembler rejected the code (a bug in the JIT, never the program's fault).
    Assembler(String),
    /// Executable memory could not be mapped or protected.
    Memory(String),
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::Unsupported => f.write_str("the x86-64 JIT is not available on this host"),
            JitError::TooLarge { slots } => {
                write!(
                    f,
                    "program of {slots} slots is too large for the x86-64 JIT"
                )
            }
            JitError::Assembler(m) => write!(f, "x86-64 assembler error: {m}"),
            JitError::Memory(m) => write!(f, "cannot map executable memory: {m}"),
        }
    }
}

impl std::error::Error for JitError {}

/// A compiled program: immutable read+execute code plus what a run needs. `Send + Sync`: any
/// number of threads may run it at once, each run with its own stack and context.
pub struct X86Program {
    #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
    inner: run::Compiled,
    #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
    inner: core::convert::Infallible,
}

impl fmt::Debug for X86Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X86Program")
            .field("code_size", &self.code_size())
            .finish_non_exhaustive()
    }
}

/// Compiles `program` to x86-64 machine code.
///
/// Never fails on account of the program's contents: what cannot execute compiles to code
/// that traps when reached, exactly where the interpreter traps.
pub fn compile(program: &Program, options: &JitOptions) -> Result<X86Program, JitError> {
    #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
    {
        run::Compiled::new(program, options).map(|inner| X86Program { inner })
    }
    #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
    {
        let _ = (program, options);
        Err(JitError::Unsupported)
    }
}

/// [`compile`] with facts already proven for `program` (by the verifier, say), which saves
/// analysing it again. The facts' entry replaces `options.entry`; facts of another program
/// are not trusted (`Facts::is_for`): the program is analysed afresh instead.
pub fn compile_with_facts(
    program: &Program,
    options: &JitOptions,
    facts: &ebpf_cfg::facts::Facts,
) -> Result<X86Program, JitError> {
    #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
    {
        if !facts.is_for(program) {
            let options = JitOptions {
                entry: Some(facts.entry().clone()),
                ..options.clone()
            };
            return compile(program, &options);
        }
        run::Compiled::with_facts(program, options, facts).map(|inner| X86Program { inner })
    }
    #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
    {
        let _ = (program, options, facts);
        Err(JitError::Unsupported)
    }
}

impl X86Program {
    /// Runs the program, like `ebpf_interp::Interpreter::run`.
    ///
    /// `memory` holds every region the program may touch except the stack, which the run
    /// allocates itself (`limits.stack_size()` bytes, zeroed). `args` are `r1` and `r2`; `r10`
    /// is the top of the entry frame; every other register starts at 0. A helper that panics
    /// makes this call panic with the same payload, after the generated code has returned.
    pub fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        let mut stack = Stack::new();
        let mut memory: MemoryMap<'_> = memory;
        self.run_in(&mut memory, args, helpers, limits, &mut stack)
    }

    /// [`X86Program::run`] on a lent stack (see [`Executable::run_in`]): no allocation once
    /// `stack` has served a run of the same size on this thread.
    #[inline]
    pub fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
        {
            self.inner.run(memory, args, helpers, limits, stack)
        }
        #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
        {
            let _ = (memory, args, helpers, limits, stack);
            match self.inner {}
        }
    }

    /// Bytes of machine code.
    pub fn code_size(&self) -> usize {
        #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
        {
            self.inner.code().len()
        }
        #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
        {
            match self.inner {}
        }
    }

    /// The machine code (readable: the pages are read+execute), for inspection and tests.
    pub fn code(&self) -> &[u8] {
        #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
        {
            self.inner.code()
        }
        #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
        {
            match self.inner {}
        }
    }
}

/// The x86 JIT as an engine: [`X86Program::run`].
impl Executable for X86Program {
    fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        X86Program::run_in(self, memory, args, helpers, limits, stack)
    }

    fn code_size(&self) -> usize {
        X86Program::code_size(self)
    }

    /// A session that owns its context and writes only the run's own rows of the region
    /// table per run (`run::Session`): for code that calls no helper, and for helper-calling
    /// code whose binding has no fixed regions (its helpers get the run's buffers).
    fn session(
        self: alloc::sync::Arc<Self>,
        binding: alloc::sync::Arc<dyn ebpf_abi::Binding>,
    ) -> alloc::boxed::Box<dyn ebpf_abi::Session> {
        #[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]
        {
            alloc::boxed::Box::new(run::Session::new(self, binding))
        }
        #[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos"))))]
        {
            let _ = binding;
            match self.inner {}
        }
    }
}

/// Machine code for `program` as bytes, without mapping it: what [`compile`] would map, on
/// any host (used to inspect the emitted instructions, e.g. with a disassembler). The code
/// follows the System V x86-64 convention and expects the crate's private run-time context,
/// so it cannot be run on its own.
pub fn emit_code(program: &Program, options: &JitOptions) -> Result<alloc::vec::Vec<u8>, JitError> {
    let entry = options
        .entry
        .clone()
        .unwrap_or_else(ebpf_cfg::facts::Entry::unknown);
    let facts = analyse(program, &entry, options);
    emit::emit(program, options, &facts).map(|e| e.code)
}

/// The facts of `program` from `entry`, solved for speculation only when the code will clamp
/// the accesses proven through a branch (`spectre_clamp_proven` with masking): otherwise
/// nothing reads that answer, and its second solve is about a quarter of the analysis.
pub(crate) fn analyse(
    program: &Program,
    entry: &ebpf_cfg::facts::Entry,
    options: &JitOptions,
) -> ebpf_cfg::facts::Facts {
    if options.spectre_masking && options.spectre_clamp_proven {
        ebpf_cfg::facts::Facts::analyse(program, entry)
    } else {
        ebpf_cfg::facts::Facts::analyse_without_speculation(program, entry)
    }
}
