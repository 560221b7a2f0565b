//! The engines behind one enum: which ones this build has, and preparing a program for one.
//! Every engine's prepared program implements the contract's engine interface
//! (`ebpf_abi::Executable`), so the rest of the facade does not care which one runs. The
//! tiered engine is here too: a first tier that loads at once, Cranelift compiled in the
//! background, and the switch between them.

use std::fmt;
use std::sync::Arc;

use ebpf_abi::Executable;
use ebpf_cfg::facts::{Entry, Facts};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

use crate::LoadError;
use crate::cache::CodeCache;

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
    /// Tiered: `load` returns at the first tier's speed (the x86 JIT where this build and
    /// host have it, else the interpreter); after 16 runs, Cranelift
    /// compiles the program on a background thread, and runs that start once it is ready run
    /// its code. The same results in every tier; a run finishes in the tier it started in;
    /// no run waits for the compiler. For long-lived programs (cargo feature
    /// `jit-cranelift`).
    Tiered,
}

/// Runs of a [`Engine::Tiered`] program before Cranelift starts compiling it: programs that
/// run only a few times never pay for the compile.
#[cfg(feature = "jit-cranelift")]
pub(crate) const TIER_UP_AFTER_RUNS: u64 = 16;

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
        (true, true) => &[
            Engine::Interpreter,
            Engine::X86,
            Engine::Cranelift,
            Engine::Tiered,
        ],
        (true, false) => &[Engine::Interpreter, Engine::X86],
        (false, true) => &[Engine::Interpreter, Engine::Cranelift, Engine::Tiered],
        (false, false) => &[Engine::Interpreter],
    }
}

impl Engine {
    /// Every engine this build contains and this host can run, the interpreter first.
    pub const ALL: &'static [Engine] = available();

    /// The engine's short name, as the CLI spells it (`interp`, `x86`, `cranelift`,
    /// `tiered`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interpreter => "interp",
            Engine::X86 => "x86",
            Engine::Cranelift => "cranelift",
            Engine::Tiered => "tiered",
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

/// How generated code defends itself beyond the contract: the one place the facade configures
/// it, handed to every JIT (both, and both tiers of [`Engine::Tiered`]); the interpreter has
/// nothing to configure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hardening {
    /// Spectre v1 masking of every access checked at run time (each JIT's
    /// `JitOptions::spectre_masking`; [`crate::VmBuilder::spectre_masking`]). `None`: each
    /// JIT's own default, chosen by what masking costs it (on for x86, off for Cranelift).
    pub(crate) spectre_masking: Option<bool>,
    /// Each JIT's branch-free clamp of accesses its facts prove through a branch, with
    /// masking (`JitOptions::spectre_clamp_proven`; [`crate::VmBuilder::spectre_clamp_proven`]).
    pub(crate) spectre_clamp_proven: bool,
}

impl Hardening {
    /// The x86 JIT's options for a program whose runs start as `entry` says.
    #[cfg(feature = "jit-x86")]
    fn x86(self, entry: Option<&Entry>) -> ebpf_jit_x86::JitOptions {
        let default = ebpf_jit_x86::JitOptions::default();
        ebpf_jit_x86::JitOptions {
            entry: entry.cloned(),
            spectre_masking: self.spectre_masking.unwrap_or(default.spectre_masking),
            spectre_clamp_proven: self.spectre_clamp_proven,
            ..default
        }
    }

    /// The Cranelift JIT's options for a program whose runs start as `entry` says.
    #[cfg(feature = "jit-cranelift")]
    fn cranelift(self, entry: Option<&Entry>) -> ebpf_jit_cranelift::JitOptions {
        let default = ebpf_jit_cranelift::JitOptions::default();
        let masking = self.spectre_masking.unwrap_or(default.spectre_masking);
        default
            .with_spectre_masking(masking)
            .with_spectre_clamp_proven(self.spectre_clamp_proven)
            .with_entry(entry.cloned())
    }
}

/// Prepares `program` for `engine`: the one place that knows how each engine prepares a
/// program. What comes back runs through the engine interface, [`Executable`], whatever the
/// engine; adding an engine is a variant of [`Engine`] and an arm here. `entry` is what every
/// run holds at entry and `facts` what the verifier proved from it, if it ran: a JIT drops
/// the checks they make impossible. Cranelift's code (the engine's, and the tiered engine's
/// second tier) comes from `cache` when it has it, and goes into it when compiled.
pub(crate) fn prepare(
    engine: Engine,
    program: &Program,
    entry: &Entry,
    facts: Option<&Facts>,
    hardening: Hardening,
    cache: Option<&CodeCache>,
) -> Result<(Arc<dyn Executable>, Progress), LoadError> {
    if !engine.is_available() {
        return Err(LoadError::EngineUnavailable(engine));
    }
    let _ = (entry, facts, hardening, cache);
    #[cfg(feature = "jit-cranelift")]
    if engine == Engine::Tiered {
        let tiered = Arc::new(tiered::Tiered::new(
            program,
            TIER_UP_AFTER_RUNS,
            hardening,
            entry,
            cache.cloned(),
        ));
        return Ok((tiered.clone(), Progress(Some(tiered))));
    }
    let code = match engine {
        Engine::Interpreter => Ok(Arc::new(Interpreter::new(program)) as Arc<dyn Executable>),
        #[cfg(feature = "jit-x86")]
        Engine::X86 => {
            let options = hardening.x86(Some(entry));
            compiled(
                engine,
                match facts {
                    Some(facts) => ebpf_jit_x86::compile_with_facts(program, &options, facts),
                    None => ebpf_jit_x86::compile(program, &options),
                }
                .map(|code| Arc::new(code) as Arc<dyn Executable>),
            )
        }
        #[cfg(feature = "jit-cranelift")]
        Engine::Cranelift => compiled(
            engine,
            cranelift_code(program, &hardening.cranelift(Some(entry)), facts, cache),
        ),
        #[allow(
            unreachable_patterns,
            reason = "which arms exist depends on the features"
        )]
        _ => Err(LoadError::EngineUnavailable(engine)),
    }?;
    Ok((code, Progress::default()))
}

/// Whether a VM's runs start on its final code ([`crate::Vm::optimised`]): the tiered engine's
/// program until its Cranelift code has taken over; nothing for every other engine.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(#[cfg(feature = "jit-cranelift")] Option<Arc<tiered::Tiered>>);

impl Progress {
    /// Whether runs that start now run the final code.
    pub(crate) fn optimised(&self) -> bool {
        #[cfg(feature = "jit-cranelift")]
        if let Some(tiered) = &self.0 {
            return tiered.is_optimised();
        }
        true
    }

    /// Why the final code will never run, if its compile failed.
    pub(crate) fn failure(&self) -> Option<&str> {
        #[cfg(feature = "jit-cranelift")]
        if let Some(tiered) = &self.0 {
            return tiered.tier_up_failure();
        }
        None
    }
}

/// A compiler's result as the facade holds it: the program behind the engine interface, or
/// the compiler's own error, typed, in [`LoadError::Compile`].
#[cfg(any(feature = "jit-x86", feature = "jit-cranelift"))]
fn compiled<E>(
    engine: Engine,
    result: Result<Arc<dyn Executable>, E>,
) -> Result<Arc<dyn Executable>, LoadError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(program) => Ok(program),
        Err(e) => Err(LoadError::Compile {
            engine,
            source: Arc::new(e),
        }),
    }
}

/// `program` compiled by Cranelift with `options` (and `facts`, the verifier's, proven from
/// `options.entry`, if it ran): from `cache` if it holds that code, else compiled (and stored
/// there). The key holds the entry, which (with the program) decides the facts.
#[cfg(feature = "jit-cranelift")]
fn cranelift_code(
    program: &Program,
    options: &ebpf_jit_cranelift::JitOptions,
    facts: Option<&Facts>,
    cache: Option<&CodeCache>,
) -> Result<Arc<dyn Executable>, ebpf_jit_cranelift::JitError> {
    let compile = || {
        match facts {
            Some(facts) => ebpf_jit_cranelift::compile_with_facts(program, options, facts),
            None => ebpf_jit_cranelift::compile(program, options),
        }
        .map(|code| Arc::new(code) as Arc<dyn Executable>)
    };
    match cache {
        None => compile(),
        Some(cache) => {
            let key = ebpf_jit_cranelift::CodeKey::host(program, options)?;
            cache.get_or_compile(key.as_bytes(), compile)
        }
    }
}

#[cfg(feature = "jit-cranelift")]
mod tiered {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use ebpf_abi::{Binding, Executable, Exit, Helpers, Limits, MemoryMap, Stack, Trap};
    use ebpf_interp::Interpreter;
    use ebpf_isa::Program;

    use ebpf_abi::Session;

    use super::Hardening;
    use crate::cache::CodeCache;
    use ebpf_cfg::facts::Entry;

    /// A program behind [`super::Engine::Tiered`].
    #[derive(Debug)]
    pub(crate) struct Tiered {
        /// Runs until the second tier is ready.
        first: Arc<dyn Executable>,
        /// What the first tier and the compiler thread share.
        shared: Arc<Shared>,
        /// Runs before the compile starts.
        after: u64,
    }

    #[derive(Debug)]
    struct Shared {
        /// What the Cranelift compile is configured with.
        hardening: Hardening,
        /// What every run holds at entry: the Cranelift code's facts assume it.
        entry: Entry,
        /// Where the Cranelift code is looked for and stored.
        cache: Option<CodeCache>,
        /// The Cranelift code, once compiled: set once, read without a lock by every run.
        second: OnceLock<Arc<dyn Executable>>,
        /// The program, until the compiler thread takes it.
        program: Mutex<Option<Program>>,
        /// Runs started so far (counted until the compile starts).
        runs: AtomicU64,
        /// Whether the compile has been started.
        started: AtomicBool,
        /// Why the compile failed, if it did ([`Tiered::tier_up_failure`]).
        failure: OnceLock<String>,
    }

    impl Tiered {
        /// `program` on its first tier; Cranelift starts after `after` runs. When `cache`
        /// already holds its Cranelift code, that runs from the start and no first tier is
        /// compiled.
        pub(crate) fn new(
            program: &Program,
            after: u64,
            hardening: Hardening,
            entry: &Entry,
            cache: Option<CodeCache>,
        ) -> Tiered {
            let second = OnceLock::new();
            let ready = cache.as_ref().and_then(|cache| {
                let options = hardening.cranelift(Some(entry));
                let key = ebpf_jit_cranelift::CodeKey::host(program, &options);
                cache.get(key.ok()?.as_bytes())
            });
            let first = match ready {
                Some(code) => {
                    let _ = second.set(Arc::clone(&code));
                    code
                }
                None => first_tier(program, hardening),
            };
            let pending = second.get().is_none().then(|| program.clone());
            Tiered {
                first,
                shared: Arc::new(Shared {
                    hardening,
                    entry: entry.clone(),
                    cache,
                    second,
                    program: Mutex::new(pending),
                    runs: AtomicU64::new(0),
                    started: AtomicBool::new(false),
                    failure: OnceLock::new(),
                }),
                after,
            }
        }

        /// Whether runs now start on the Cranelift code.
        pub(crate) fn is_optimised(&self) -> bool {
            self.shared.second.get().is_some()
        }

        /// Why the background compile failed, once it has: the program then stays on its
        /// first tier for good.
        pub(crate) fn tier_up_failure(&self) -> Option<&str> {
            self.shared.failure.get().map(String::as_str)
        }

        /// Starts the compile on a background thread, once. A compile that fails (or a
        /// thread that cannot start) leaves the program on its first tier, which computes
        /// the same results, and says why ([`Tiered::tier_up_failure`]).
        fn tier_up(&self) {
            if self.shared.started.swap(true, Ordering::AcqRel) {
                return;
            }
            let shared = Arc::clone(&self.shared);
            let failure = &self.shared.failure;
            let compile = move || {
                let program = shared.program.lock().ok().and_then(|mut p| p.take());
                let Some(program) = program else { return };
                let options = shared.hardening.cranelift(Some(&shared.entry));
                // A panic would end this thread with the program taken and `started` set:
                // nothing would ever retry or say why. `ebpf_jit_cranelift` already turns
                // Cranelift's own panics into errors; this catches any other (the cache, the
                // facade). Unwinding is safe to stop: the program and options are this
                // closure's own, and the cache's slot is a `OnceLock`, left empty for the
                // next load to compile.
                let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(test)]
                    super::tests::tiered::panic_if_injected(&program);
                    super::cranelift_code(&program, &options, None, shared.cache.as_ref())
                }));
                let failure = match compiled {
                    Ok(Ok(code)) => {
                        let _ = shared.second.set(code);
                        return;
                    }
                    Ok(Err(e)) => format!("the Cranelift compile failed: {e}"),
                    Err(payload) => {
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|m| m.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic without a message".to_string());
                        format!("the Cranelift compile panicked: {message}")
                    }
                };
                let _ = shared.failure.set(failure);
            };
            let spawned = std::thread::Builder::new()
                .name("ebpf-tier-up".to_string())
                .spawn(compile);
            if let Err(e) = spawned {
                let _ = failure.set(format!("cannot start the compiler thread: {e}"));
            }
        }
    }

    /// The x86 JIT where it compiles the program, else the interpreter.
    fn first_tier(program: &Program, hardening: Hardening) -> Arc<dyn Executable> {
        // (Only the x86 JIT's options come from it: unused where that JIT is not built.)
        let _ = hardening;
        #[cfg(all(
            feature = "jit-x86",
            target_arch = "x86_64",
            any(target_os = "linux", target_os = "macos")
        ))]
        if let Ok(code) = ebpf_jit_x86::compile(program, &hardening.x86(None)) {
            return Arc::new(code);
        }
        Arc::new(Interpreter::new(program))
    }

    impl Executable for Tiered {
        fn run_in<'m>(
            &self,
            memory: &mut MemoryMap<'m>,
            args: [u64; 2],
            helpers: &Helpers,
            limits: &Limits,
            stack: &'m mut Stack,
        ) -> Result<Exit, Trap> {
            // One atomic load picks the tier for the whole run.
            if let Some(second) = self.shared.second.get() {
                return second.run_in(memory, args, helpers, limits, stack);
            }
            self.count_run();
            self.first.run_in(memory, args, helpers, limits, stack)
        }

        fn code_size(&self) -> usize {
            match self.shared.second.get() {
                Some(second) => second.code_size(),
                None => self.first.code_size(),
            }
        }

        /// A session on the first tier's session until the second tier is ready; the first
        /// run that starts after that makes a session of the second tier and keeps it (a
        /// run finishes on the session it started on).
        fn session(self: Arc<Self>, binding: Arc<dyn Binding>) -> Box<dyn Session> {
            Box::new(Tiered::tiered_session(self, binding))
        }
    }

    impl Tiered {
        /// Counts a run on the first tier, and starts the compile after `after` of them.
        #[inline]
        fn count_run(&self) {
            if !self.shared.started.load(Ordering::Relaxed)
                && self.shared.runs.fetch_add(1, Ordering::Relaxed) >= self.after
            {
                self.tier_up();
            }
        }

        /// [`Executable::session`], as its own type.
        pub(crate) fn tiered_session(
            tiered: Arc<Tiered>,
            binding: Arc<dyn Binding>,
        ) -> TieredSession {
            let second = tiered.shared.second.get();
            let tier = second.unwrap_or(&tiered.first);
            TieredSession {
                current: Arc::clone(tier).session(Arc::clone(&binding)),
                on_second: second.is_some(),
                tiered,
                binding,
                carried_mark: None,
            }
        }
    }

    /// The session of a [`Tiered`] program (see its `session`).
    pub(crate) struct TieredSession {
        current: Box<dyn Session>,
        /// Whether `current` is the second tier's.
        on_second: bool,
        tiered: Arc<Tiered>,
        /// For the second tier's session.
        binding: Arc<dyn Binding>,
        /// The first tier's session's helper stack mark, not yet taken when it was replaced.
        carried_mark: Option<u64>,
    }

    impl TieredSession {
        /// Before a run: switches to the second tier when it is ready (one atomic load while
        /// it is not), else counts the run towards starting its compile.
        #[inline]
        fn pick(&mut self) {
            if self.on_second {
                return;
            }
            match self.tiered.shared.second.get() {
                Some(second) => {
                    self.carried_mark = ebpf_abi::lower_stack_mark(
                        self.carried_mark,
                        self.current.take_helper_stack_mark(),
                    );
                    self.current = Arc::clone(second).session(Arc::clone(&self.binding));
                    self.on_second = true;
                }
                None => self.tiered.count_run(),
            }
        }

        /// Whether runs now start on the second tier's session.
        #[cfg(test)]
        pub(crate) fn is_on_second(&self) -> bool {
            self.on_second
        }
    }

    impl Session for TieredSession {
        fn run(
            &mut self,
            data: Option<&mut [u8]>,
            metadata: Option<&mut [u8]>,
            args: [u64; 2],
            stack: &mut Stack,
        ) -> Result<Exit, Trap> {
            self.pick();
            self.current.run(data, metadata, args, stack)
        }

        fn run_input(&mut self, data: &mut [u8], stack: &mut Stack) -> Result<Exit, Trap> {
            self.pick();
            self.current.run_input(data, stack)
        }

        fn run_in<'m>(
            &mut self,
            memory: &mut MemoryMap<'m>,
            args: [u64; 2],
            stack: &'m mut Stack,
        ) -> Result<Exit, Trap> {
            self.pick();
            self.current.run_in(memory, args, stack)
        }

        fn take_helper_stack_mark(&mut self) -> Option<u64> {
            ebpf_abi::lower_stack_mark(
                self.carried_mark.take(),
                self.current.take_helper_stack_mark(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "jit-x86")]
    #[test]
    fn compile_errors_keep_the_engines_own_type() {
        use ebpf_jit_x86::JitError;
        let failed = compiled(Engine::X86, Err(JitError::Unsupported));
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
                let (prepared, _) =
                    prepare(engine, &program, &entry, facts, Hardening::default(), None).unwrap();
                let exit = prepared
                    .run(
                        ebpf_abi::MemoryMap::new(),
                        [0, 0],
                        &ebpf_abi::Helpers::new(),
                        &ebpf_abi::Limits::default(),
                    )
                    .unwrap();
                assert_eq!((exit.r0, exit.instructions), (42, 3), "{engine}");
                let compiles = !matches!(engine, Engine::Interpreter)
                    && (engine != Engine::Tiered || Engine::X86.is_available());
                assert_eq!(prepared.code_size() > 0, compiles, "{engine}");
            }
        }
    }

    /// The clamp of accesses proven through a branch reaches both JITs' options; a guarded
    /// header's loads are proven by the guard, so clamped code (masked) is larger (in builds
    /// without debug assertions: with them the JITs keep every proven check, `checked_facts`,
    /// and clamp nothing); results are the same on inputs the guard accepts and refuses.
    #[test]
    fn spectre_clamp_proven_reaches_the_jits_and_changes_no_result() {
        let src = "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 8\njgt %r4, %r3, +3\n\
                   ldxdw %r0, [%r1+0]\nldxb %r2, [%r1+7]\nexit\nmov %r0, 1\nexit";
        for &engine in Engine::ALL {
            if !matches!(engine, Engine::X86 | Engine::Cranelift) || !engine.is_available() {
                continue;
            }
            let vm = |clamp| {
                crate::Vm::builder()
                    .engine(engine)
                    .spectre_masking(true)
                    .spectre_clamp_proven(clamp)
                    .load_asm(src)
                    .unwrap()
            };
            #[cfg(feature = "jit-x86")]
            for on in [true, false] {
                let hardening = Hardening {
                    spectre_clamp_proven: on,
                    ..Hardening::default()
                };
                assert_eq!(hardening.x86(None).spectre_clamp_proven, on);
            }
            #[cfg(feature = "jit-cranelift")]
            for on in [true, false] {
                let hardening = Hardening {
                    spectre_clamp_proven: on,
                    ..Hardening::default()
                };
                assert_eq!(hardening.cranelift(None).spectre_clamp_proven, on);
            }
            let (clamped, plain) = (vm(true), vm(false));
            assert!(
                cfg!(debug_assertions) || clamped.code_size() > plain.code_size(),
                "{engine}: {} <= {}",
                clamped.code_size(),
                plain.code_size()
            );
            for len in [12, 8, 7, 0] {
                let mut input: Vec<u8> = (1..=len).collect();
                let (a, b) = (clamped.run(&mut input.clone()), plain.run(&mut input));
                assert_eq!(a, b, "{engine}, input of {len} bytes");
            }
        }
    }

    /// The builder's one switch reaches both JITs: their code without masking is smaller (no
    /// masks on the checked accesses), their results the same — in range, and trapping.
    #[test]
    fn spectre_masking_reaches_every_jit_and_changes_no_result() {
        let src = "ldxw %r0, [%r1+0]\nldxb %r2, [%r1+4]\nadd %r0, %r2\nldabsb 5\nexit";
        for &engine in Engine::ALL {
            if !matches!(engine, Engine::X86 | Engine::Cranelift) {
                continue;
            }
            let vm = |masking| {
                crate::Vm::builder()
                    .engine(engine)
                    .spectre_masking(masking)
                    .load_asm(src)
                    .unwrap()
            };
            let (masked, unmasked) = (vm(true), vm(false));
            assert!(
                masked.code_size() > unmasked.code_size(),
                "{engine}: {} <= {}",
                masked.code_size(),
                unmasked.code_size()
            );
            for len in [8, 6, 5, 2] {
                let mut input: Vec<u8> = (1..=len).collect();
                let (a, b) = (masked.run(&mut input.clone()), unmasked.run(&mut input));
                assert_eq!(a, b, "{engine}, input of {len} bytes");
            }
        }
    }

    #[cfg(feature = "jit-cranelift")]
    pub(super) mod tiered {
        use std::time::{Duration, Instant};

        use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Trap};
        use ebpf_interp::Interpreter;

        use super::super::Hardening;
        use super::super::tiered::Tiered;
        use ebpf_cfg::facts::Entry;

        /// A loop with local calls and frame traffic: 8 + 50 * 11 instructions.
        const PROGRAM: &str = "
            mov %r0, 1
            mov %r6, 50
        l:
            add %r0, %r6
            call local f
            sub %r6, 1
            jne %r6, 0, l
            exit
        f:
            mov %r1, %r0
            lsh %r1, 1
            stxdw [%r10-8], %r1
            ldxdw %r2, [%r10-8]
            xor %r0, %r2
            exit";

        /// Budgets that end the run at different places, and none.
        const BUDGETS: [Option<u64>; 5] = [None, Some(0), Some(7), Some(300), Some(557)];

        fn limits(budget: Option<u64>) -> Limits {
            Limits {
                budget,
                ..Limits::default()
            }
        }

        fn run(engine: &dyn ebpf_abi::Executable, budget: Option<u64>) -> Result<Exit, Trap> {
            engine.run(MemoryMap::new(), [3, 4], &Helpers::new(), &limits(budget))
        }

        /// Whether this host runs Cranelift; says so when not.
        fn tiered_available() -> bool {
            let ok = super::Engine::Tiered.is_available();
            if !ok {
                eprintln!("skipping: no Cranelift on this host");
            }
            ok
        }

        /// The interpreter's results, per budget.
        fn expected(program: &ebpf_isa::Program) -> Vec<Result<Exit, Trap>> {
            let interp = Interpreter::new(program);
            BUDGETS.iter().map(|&b| run(&interp, b)).collect()
        }

        #[test]
        fn tiered_switches_to_cranelift_and_agrees_before_and_after() {
            if !tiered_available() {
                return;
            }
            let program = ebpf_isa::assemble(PROGRAM).unwrap();
            let want = expected(&program);
            assert!(want[0].is_ok() && want[1].is_err(), "{want:?}");
            let tiered = Tiered::new(&program, 3, Hardening::default(), &Entry::unknown(), None);
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut before = 0;
            while !tiered.is_optimised() {
                for (&budget, want) in BUDGETS.iter().zip(&want) {
                    assert_eq!(&run(&tiered, budget), want, "first tier, budget {budget:?}");
                }
                before += 1;
                assert!(Instant::now() < deadline, "Cranelift never took over");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(before >= 1, "the first runs run on the first tier");
            for (&budget, want) in BUDGETS.iter().zip(&want) {
                assert_eq!(&run(&tiered, budget), want, "Cranelift, budget {budget:?}");
            }
        }

        /// The program whose tier-up compile panics (`panic_if_injected`): no other test's.
        const PANICS_ON_TIER_UP: &str = "mov %r0, 0x7e57\nmov %r1, 2\nadd %r0, %r1\nexit";

        /// Panics in the tier-up compile of [`PANICS_ON_TIER_UP`]'s program.
        pub(crate) fn panic_if_injected(program: &ebpf_isa::Program) {
            if ebpf_isa::assemble(PANICS_ON_TIER_UP).is_ok_and(|p| p == *program) {
                panic!("an injected panic");
            }
        }

        /// A tier-up whose compile panics says so and leaves the VM on its first tier, as a
        /// failed one does (the panic used to end the compiler thread silently: the VM
        /// stayed on its first tier with no failure, for good).
        #[test]
        fn a_panicking_tier_up_is_reported() {
            if !tiered_available() {
                return;
            }
            let vm = crate::Vm::builder()
                .engine(super::super::Engine::Tiered)
                .load_asm(PANICS_ON_TIER_UP)
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while vm.tier_up_failure().is_none() {
                assert_eq!(vm.run(&mut []), Ok(0x7e57 + 2));
                assert!(Instant::now() < deadline, "the tier-up never failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            let failure = vm.tier_up_failure().unwrap();
            assert!(failure.contains("panicked: an injected panic"), "{failure}");
            assert!(!vm.optimised());
        }

        /// A tier-up whose compile fails says so (`Vm::tier_up_failure`) and leaves the VM
        /// on its first tier with the same results (it was silent). Cranelift is made to
        /// fail by a setting it does not know in `EBPF_JIT_ISA_FLAGS`, read when the compile
        /// starts; so that no other test sees it, the test runs itself in a child process
        /// with it set.
        #[test]
        fn a_failed_tier_up_is_reported() {
            const CHILD: &str = "EBPF_TEST_TIER_UP_CHILD";
            if !tiered_available() {
                return;
            }
            if std::env::var_os(CHILD).is_none() {
                let name = "engine::tests::tiered::a_failed_tier_up_is_reported";
                let exe = std::env::current_exe().unwrap();
                let out = std::process::Command::new(exe)
                    .args([name, "--exact", "--nocapture", "--test-threads", "1"])
                    .env(CHILD, "1")
                    .env(ebpf_jit_cranelift::ISA_FLAGS_ENV, "no_such_setting=true")
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    stdout.contains("1 passed"),
                    "the child ran no test: {stdout}"
                );
                return;
            }
            let program = "mov %r0, 1\nmov %r1, 10\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, -3\nexit";
            let vm = crate::Vm::builder()
                .engine(super::super::Engine::Tiered)
                .budget(10_000)
                .load_asm(program)
                .unwrap();
            let want = crate::Vm::builder()
                .budget(10_000)
                .load_asm(program)
                .unwrap()
                .run(&mut [])
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            while vm.tier_up_failure().is_none() {
                assert_eq!(vm.run(&mut []).unwrap(), want);
                assert!(Instant::now() < deadline, "the tier-up never failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            let failure = vm.tier_up_failure().unwrap();
            assert!(failure.contains("no_such_setting"), "{failure}");
            assert!(!vm.optimised());
            assert_eq!(vm.run(&mut []).unwrap(), want);
        }

        /// `program` on its second tier: compiled, the switch made (or a panic after two
        /// minutes).
        fn switched(program: &ebpf_isa::Program) -> Tiered {
            let tiered = Tiered::new(program, 0, Hardening::default(), &Entry::unknown(), None);
            // The first run starts the compile (its result does not matter here).
            let _ = run(&tiered, Some(0));
            let deadline = Instant::now() + Duration::from_secs(120);
            while !tiered.is_optimised() {
                assert!(Instant::now() < deadline, "Cranelift never took over");
                std::thread::sleep(Duration::from_millis(1));
            }
            tiered
        }

        #[test]
        fn conformance_vectors_pass_on_both_tiers() {
            if !tiered_available() {
                return;
            }
            let interp = ebpf_contract::engine(Interpreter::new, Interpreter::run);
            // Never switching: the first tier; switched before the vector runs: Cranelift.
            let first = |v: &ebpf_contract::conformance::Vector| {
                Ok::<_, String>(Tiered::new(
                    &v.program,
                    u64::MAX,
                    Hardening::default(),
                    &Entry::unknown(),
                    None,
                ))
            };
            let second = |v: &ebpf_contract::conformance::Vector| Ok(switched(&v.program));
            for (label, prepare) in [
                (
                    "tiered (first tier)",
                    &first as &dyn Fn(&_) -> Result<Tiered, String>,
                ),
                ("tiered (switched)", &second),
            ] {
                ebpf_contract::conformance::check_suite(
                    label,
                    prepare,
                    |p: &Tiered, m, a, h, l| ebpf_abi::Executable::run(p, m, a, h, l),
                    Some(&interp),
                );
            }
        }

        /// A session made before the switch: a run in flight when the second tier becomes
        /// ready finishes on the first tier, the runs after it start on the second, and every
        /// result is the interpreter's.
        #[test]
        fn a_session_switches_tiers_between_runs_never_during_one() {
            if !tiered_available() {
                return;
            }
            let program = ebpf_isa::assemble(
                "mov %r6, %r1
                mov %r1, 20
                call 1
                add %r0, %r6
                exit",
            )
            .unwrap();
            let tiered = std::sync::Arc::new(Tiered::new(
                &program,
                0,
                Hardening::default(),
                &Entry::unknown(),
                None,
            ));
            let watched = std::sync::Arc::clone(&tiered);
            let mut helpers = Helpers::new();
            // Waits (in the first run) until the second tier is ready.
            helpers.insert(1, move |args: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !watched.is_optimised() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(args[0] * 2)
            });
            let limits = limits(None);
            let interp = Interpreter::new(&program);
            let binding = std::sync::Arc::new(ebpf_abi::PlainBinding { helpers, limits });
            let mut session = Tiered::tiered_session(std::sync::Arc::clone(&tiered), binding);
            let mut stack = ebpf_abi::Stack::new();
            let run = |session: &mut dyn ebpf_abi::Session, stack: &mut ebpf_abi::Stack| {
                stack.begin_run();
                let got = session.run(None, None, [3, 0], stack);
                stack.end_run(limits.stack_size() as usize, usize::MAX);
                got
            };
            // (The reference's helper doubles without waiting.)
            let mut doubling = Helpers::new();
            doubling.insert(1, |args: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| {
                Ok(args[0] * 2)
            });
            let want = interp.run(MemoryMap::new(), [3, 0], &doubling, &limits);
            assert_eq!(want.as_ref().map(|e| e.r0), Ok(43));
            assert!(!session.is_on_second());
            // The first run starts the compile, waits in its helper until the compile is
            // done, and finishes on the first tier.
            assert_eq!(run(&mut session, &mut stack), want);
            assert!(tiered.is_optimised(), "Cranelift never took over");
            assert!(!session.is_on_second(), "a run switched tiers halfway");
            for _ in 0..3 {
                assert_eq!(run(&mut session, &mut stack), want);
                assert!(session.is_on_second(), "later runs pick up the second tier");
            }
        }

        #[test]
        fn tiered_agrees_on_several_threads_while_it_switches() {
            if !tiered_available() {
                return;
            }
            let program = ebpf_isa::assemble(PROGRAM).unwrap();
            let want = expected(&program);
            let tiered = Tiered::new(&program, 0, Hardening::default(), &Entry::unknown(), None);
            let deadline = Instant::now() + Duration::from_secs(120);
            std::thread::scope(|s| {
                for t in 0..4 {
                    let (tiered, want) = (&tiered, &want);
                    s.spawn(move || {
                        // Until the switch, and as many runs again after it.
                        let mut after = 0;
                        let mut i = t;
                        while after < 200 {
                            if tiered.is_optimised() {
                                after += 1;
                            }
                            let k = i % BUDGETS.len();
                            assert_eq!(&run(tiered, BUDGETS[k]), &want[k], "thread {t}, run {i}");
                            assert!(Instant::now() < deadline, "Cranelift never took over");
                            i += 1;
                        }
                    });
                }
            });
            assert!(tiered.is_optimised());
        }
    }
}
