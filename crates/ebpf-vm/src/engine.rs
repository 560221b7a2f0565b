//! The engines behind one enum: which ones this build has, and preparing a program for one.
//! Every engine's prepared program implements the contract's engine interface
//! (`ebpf_abi::Executable`), so the rest of the facade does not care which one runs.

use std::fmt;
#[cfg(any(feature = "jit-x86", feature = "jit-cranelift"))]
use std::sync::Arc;

use ebpf_abi::Executable;
use ebpf_cfg::facts::{Entry, Facts};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

use crate::LoadError;

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

/// Prepares `program` for `engine`: the one place that knows how each engine prepares a
/// program. What comes back runs through the engine interface, [`Executable`], whatever the
/// engine; adding an engine is a variant of [`Engine`] and an arm here. `entry` is what every
/// run holds at entry and `facts` what the verifier proved from it, if it ran: a JIT drops
/// the checks they make impossible.
pub(crate) fn prepare(
    engine: Engine,
    program: &Program,
    entry: &Entry,
    facts: Option<&Facts>,
) -> Result<Box<dyn Executable>, LoadError> {
    if !engine.is_available() {
        return Err(LoadError::EngineUnavailable(engine));
    }
    let _ = (entry, facts);
    match engine {
        Engine::Interpreter => Ok(Box::new(Interpreter::new(program))),
        #[cfg(feature = "jit-x86")]
        Engine::X86 => {
            let options = ebpf_jit_x86::JitOptions {
                entry: Some(entry.clone()),
                ..ebpf_jit_x86::JitOptions::default()
            };
            compiled(
                engine,
                match facts {
                    Some(facts) => ebpf_jit_x86::compile_with_facts(program, &options, facts),
                    None => ebpf_jit_x86::compile(program, &options),
                },
            )
        }
        #[cfg(feature = "jit-cranelift")]
        Engine::Cranelift => compiled(
            engine,
            ebpf_jit_cranelift::compile(program, &ebpf_jit_cranelift::JitOptions::default()),
        ),
        #[allow(
            unreachable_patterns,
            reason = "which arms exist depends on the features"
        )]
        _ => Err(LoadError::EngineUnavailable(engine)),
    }
}

/// A compiler's result as the facade holds it: the program behind the engine interface, or
/// the compiler's own error, typed, in [`LoadError::Compile`].
#[cfg(any(feature = "jit-x86", feature = "jit-cranelift"))]
fn compiled<P, E>(engine: Engine, result: Result<P, E>) -> Result<Box<dyn Executable>, LoadError>
where
    P: Executable + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(program) => Ok(Box::new(program)),
        Err(e) => Err(LoadError::Compile {
            engine,
            source: Arc::new(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "jit-x86")]
    #[test]
    fn compile_errors_keep_the_engines_own_type() {
        use ebpf_jit_x86::JitError;
        let failed = compiled::<Interpreter, _>(Engine::X86, Err(JitError::Unsupported));
        let Err(err) = failed else {
            panic!("a compile error must fail the load");
        };
        let LoadError::Compile { engine, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*engine, Engine::X86);
        assert_eq!(
            source.downcast_ref::<JitError>(),
            Some(&JitError::Unsupported)
        );
        assert_eq!(
            err.to_string(),
            "the x86 engine cannot compile the program: the x86-64 JIT is not available on this \
             host"
        );
        assert_eq!(err.clone(), err);
        assert_ne!(err, LoadError::EngineUnavailable(Engine::X86));
    }

    #[test]
    fn every_available_engine_prepares_a_program_that_runs() {
        let program = ebpf_isa::assemble("mov %r0, 6\nmul %r0, 7\nexit").unwrap();
        for &engine in Engine::ALL {
            // With the facts of the plain input, proven here or by a verifier; the run has no
            // input, which the entry does not admit (the JIT falls back).
            let entry = Entry::input();
            let facts = Facts::analyse(&program, &entry);
            for facts in [None, Some(&facts)] {
                let prepared = prepare(engine, &program, &entry, facts).unwrap();
                let exit = prepared
                    .run(
                        ebpf_abi::MemoryMap::new(),
                        [0, 0],
                        &ebpf_abi::Helpers::new(),
                        &ebpf_abi::Limits::default(),
                    )
                    .unwrap();
                assert_eq!((exit.r0, exit.instructions), (42, 3), "{engine}");
                assert_eq!(prepared.code_size() > 0, engine != Engine::Interpreter);
            }
        }
    }
}
