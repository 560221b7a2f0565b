//! The engines behind one enum: which ones this build has, compiling a program for one, and
//! running it. Every engine implements the same contract (`ebpf-abi`), so the rest of the
//! facade does not care which one runs.

use std::fmt;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

/// Which engine runs the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// The reference interpreter: portable, no compile step.
    #[default]
    Interpreter,
    /// The single-pass x86-64 JIT: compiles in microseconds (x86-64 Linux and macOS, cargo
    /// feature `jit-x86`).
    X86,
    /// The Cranelift JIT: optimised native code on x86-64, AArch64, RISC-V 64 and s390x
    /// (cargo feature `jit-cranelift`).
    Cranelift,
}

/// Whether this build contains the x86 JIT and runs on a host it supports.
const HAS_X86: bool = cfg!(all(
    feature = "jit-x86",
    target_arch = "x86_64",
    any(target_os = "linux", target_os = "macos")
));

/// Whether this build contains the Cranelift JIT and runs on a host it supports.
const HAS_CRANELIFT: bool = cfg!(all(
    feature = "jit-cranelift",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "s390x"
    )
));

const fn available() -> &'static [Engine] {
    match (HAS_X86, HAS_CRANELIFT) {
        (true, true) => &[Engine::Interpreter, Engine::X86, Engine::Cranelift],
        (true, false) => &[Engine::Interpreter, Engine::X86],
        (false, true) => &[Engine::Interpreter, Engine::Cranelift],
        (false, false) => &[Engine::Interpreter],
    }
}

impl Engine {
    /// Every engine this build contains and this host can run, the interpreter first.
    pub const ALL: &'static [Engine] = available();

    /// The engine's short name, as the CLI spells it (`interp`, `x86`, `cranelift`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interpreter => "interp",
            Engine::X86 => "x86",
            Engine::Cranelift => "cranelift",
        }
    }

    /// The engine with this short name, if this build has it.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// Whether this build contains the engine and the host can run it.
    pub fn is_available(self) -> bool {
        Engine::ALL.contains(&self)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A program prepared for one engine.
pub(crate) enum Compiled {
    Interpreter(Interpreter),
    #[cfg(feature = "jit-x86")]
    X86(Box<ebpf_jit_x86::X86Program>),
    #[cfg(feature = "jit-cranelift")]
    Cranelift(Box<ebpf_jit_cranelift::CraneliftProgram>),
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = match self {
            Compiled::Interpreter(_) => Engine::Interpreter,
            #[cfg(feature = "jit-x86")]
            Compiled::X86(_) => Engine::X86,
            #[cfg(feature = "jit-cranelift")]
            Compiled::Cranelift(_) => Engine::Cranelift,
        };
        write!(f, "Compiled({engine})")
    }
}

/// Why an engine could not prepare a program.
pub(crate) enum CompileError {
    /// This build or host does not have the engine.
    Unavailable,
    /// The engine failed; the message says why.
    Failed(String),
}

impl Compiled {
    pub(crate) fn new(engine: Engine, program: &Program) -> Result<Compiled, CompileError> {
        if !engine.is_available() {
            return Err(CompileError::Unavailable);
        }
        match engine {
            Engine::Interpreter => Ok(Compiled::Interpreter(Interpreter::new(program))),
            #[cfg(feature = "jit-x86")]
            Engine::X86 => ebpf_jit_x86::compile(program, &ebpf_jit_x86::JitOptions::default())
                .map(|p| Compiled::X86(Box::new(p)))
                .map_err(|e| CompileError::Failed(e.to_string())),
            #[cfg(feature = "jit-cranelift")]
            Engine::Cranelift => {
                ebpf_jit_cranelift::compile(program, &ebpf_jit_cranelift::JitOptions::default())
                    .map(|p| Compiled::Cranelift(Box::new(p)))
                    .map_err(|e| CompileError::Failed(e.to_string()))
            }
            #[allow(
                unreachable_patterns,
                reason = "which arms exist depends on the features"
            )]
            _ => Err(CompileError::Unavailable),
        }
    }

    pub(crate) fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        match self {
            Compiled::Interpreter(p) => p.run(memory, args, helpers, limits),
            #[cfg(feature = "jit-x86")]
            Compiled::X86(p) => p.run(memory, args, helpers, limits),
            #[cfg(feature = "jit-cranelift")]
            Compiled::Cranelift(p) => p.run(memory, args, helpers, limits),
        }
    }
}
