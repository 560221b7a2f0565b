//! `ebpf-jit-cranelift`: eBPF compiled by Cranelift, in-process or ahead of time, for x86-64,
//! AArch64, RISC-V 64 and s390x.
//!
//! What it is for: turning a decoded [`Program`] into native code that behaves *exactly* like
//! the reference interpreter (`ebpf-interp`) — the same `r0`, the same trap (kind and pc), the
//! same instruction count and the same final memory, for every program, verified or not:
//!
//! - [`compile`] + [`CraneliftProgram::run`]: the in-process JIT (`cranelift-jit`), with the
//!   same inputs as `ebpf_interp::Interpreter::run`;
//! - [`compile_object`]: a relocatable object for any supported target (`cranelift-object`),
//!   whose C ABI is `c/ebpf_jit.h` (see `docs/jit-cranelift.md`);
//! - [`CodeKey`]: everything that decides the generated code, the key of the facade's
//!   in-process code cache, and [`compile_object_cached`] through an [`ObjectCache`], a
//!   directory of objects reused when their full key matches.
//!
//! Both come from one translator (`translate.rs`): one Cranelift function per program, blocks
//! from `ebpf-cfg`, eBPF registers as frontend variables, every memory access bounds-checked
//! inline against the region table and little-endian on every host, local calls with their
//! own frames and a depth limit, helpers through the context, and an exact instruction budget
//! tested only at checkpoints (loop headers, calls, returns; see `plan.rs`). Nothing a program
//! does raises a hardware trap.
//!
//! What it is not for: deciding whether a program is acceptable (`ebpf-verifier`) or mapping
//! an embedder's buffers (`ebpf-vm`).
//!
//! ```
//! use ebpf_abi::{Helpers, Limits, MemoryMap};
//!
//! if ebpf_jit_cranelift::host_supported() {
//!     let program = ebpf_isa::assemble("mov %r0, 6\nmul %r0, 7\nexit").unwrap();
//!     let jit = ebpf_jit_cranelift::compile(&program, &Default::default()).unwrap();
//!     let exit = jit.run(MemoryMap::new(), [0, 0], &Helpers::new(), &Limits::default()).unwrap();
//!     assert_eq!((exit.r0, exit.instructions), (42, 3));
//! }
//! ```

mod buffers;
mod cache;
mod context;
mod error;
mod fnv;
mod hints;
mod live;
mod options;
mod plan;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod pool;
mod runtime;
mod translate;

use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use ebpf_abi::{Executable, Exit, Helpers, Limits, MemoryMap, Stack, Trap};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

pub use cache::{
    CachedObject, CodeKey, Lookup, OBJECT_CACHE_ENV, ObjectCache, ObjectCacheError,
    ObjectCacheErrorKind, compile_object_cached,
};
/// The trap and reason codes of the C ABI (`c/ebpf_jit.h`): the contract's own.
pub use ebpf_abi::{reason_code as invalid_reason, trap_code};
pub use error::JitError;
pub use options::{ISA_FLAGS_ENV, IsaFlags, JitOptions, OptLevel};

use cranelift_codegen::ir;
use ebpf_cfg::facts::{Entry, Facts, Gate};
use runtime::EntryFn;
pub use translate::Removed;
use translate::{Check, Prepared, Shortfall};

/// Whether [`compile`] can generate code for this host (a 64-bit x86-64, AArch64, RISC-V 64
/// or s390x machine that Cranelift supports).
pub fn host_supported() -> bool {
    cfg!(target_pointer_width = "64") && cranelift_native::builder().is_ok()
}

/// A program compiled for this host, ready to run any number of times, from any thread.
pub struct CraneliftProgram {
    entry: EntryFn,
    /// Owns the executable memory, freed when dropped. Behind a mutex only because the module
    /// is not `Sync`; nothing touches it between compilation and drop.
    _code: Mutex<Code>,
    code_size: usize,
    /// What finishes a run whose budget runs short (see [`runtime`]).
    finish: Finish,
    /// When the code's facts assume more than the stack's: what runs the entry does not admit
    /// run instead (boxed: most programs have none).
    fallback: Option<Box<Fallback>>,
    /// What the facts removed from the code.
    removed: Removed,
}

/// What code compiled with the facts of an entry needs for the runs that entry does not admit:
/// the gate both JITs share (`ebpf_cfg::facts::Gate`), and what to compile the plain code
/// (from the stack's facts only) from.
struct Fallback {
    gate: Gate<Result<Box<CraneliftProgram>, JitError>>,
    options: JitOptions,
}

/// What the in-process JIT needs to hand a run to the interpreter: the program (decoded for
/// the interpreter on first use) and the pc of each return-site word of the frame stack.
struct Finish {
    program: Program,
    interpreter: OnceLock<Interpreter>,
    return_sites: Vec<(u64, usize)>,
}

impl Finish {
    fn interpreter(&self) -> &Interpreter {
        self.interpreter
            .get_or_init(|| Interpreter::new(&self.program))
    }

    /// The pc a frame's return word stands for.
    fn return_pc(&self, word: u64) -> usize {
        match self.return_sites.binary_search_by_key(&word, |&(w, _)| w) {
            Ok(i) => self.return_sites[i].1,
            // Never: generated code pushes only these words.
            Err(_) => usize::MAX,
        }
    }
}

/// The JIT module, whose memory is freed when this is dropped.
struct Code(Option<JITModule>);

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the module's code is only called through `CraneliftProgram::run`, which
            // borrows the program, and through a `runtime::Session`, which holds an
            // `Arc<CraneliftProgram>`; so dropping the program (or a failed compilation) proves
            // no call is in progress and none can follow.
            unsafe { module.free_memory() };
        }
    }
}

impl std::fmt::Debug for CraneliftProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CraneliftProgram")
            .field("code_size", &self.code_size)
            .finish_non_exhaustive()
    }
}

impl CraneliftProgram {
    /// Runs the program, exactly as `ebpf_interp::Interpreter::run` does.
    ///
    /// `memory` holds every region the program may touch except the stack, which the run
    /// allocates itself (`limits.stack_size()` bytes, zeroed). `args` are `r1` and `r2`;
    /// `r10` is the top of the entry frame; every other register starts at 0.
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

    /// [`CraneliftProgram::run`] on a lent stack (see [`Executable::run_in`]): no allocation
    /// once `stack` has served a run of the same size.
    #[inline]
    pub fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        runtime::run(self, memory, args, helpers, limits, stack)
    }

    /// The code that runs with `memory` and `args`: this, or — when this code was compiled
    /// with the facts of an entry that the run does not satisfy — the program compiled
    /// without them (made when first needed).
    #[inline]
    pub(crate) fn admitted(
        &self,
        memory: &MemoryMap<'_>,
        args: [u64; 2],
    ) -> Result<&CraneliftProgram, Trap> {
        let Some(fallback) = &self.fallback else {
            return Ok(self);
        };
        let Some(plain) = fallback.gate.fallback(memory, args, || {
            let options = fallback.options.clone().with_entry(None);
            compile(&self.finish.program, &options).map(Box::new)
        }) else {
            return Ok(self);
        };
        match plain {
            Ok(plain) => Ok(plain),
            // Only the host's resources can fail a program that compiled once.
            Err(_) => Err(Trap::entry_code_unavailable()),
        }
    }

    /// Bytes of machine code generated.
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    /// What the facts removed from this code (accesses left unchecked, divisor tests left
    /// out); nothing with [`JitOptions::checked_facts`].
    pub fn removed(&self) -> Removed {
        self.removed
    }
}

/// The Cranelift JIT as an engine: [`CraneliftProgram::run`].
impl Executable for CraneliftProgram {
    fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        CraneliftProgram::run_in(self, memory, args, helpers, limits, stack)
    }

    fn code_size(&self) -> usize {
        self.code_size
    }

    /// A session that owns its context and, for code that calls no helper and a run its entry
    /// admits, writes only the run's own rows of the region table per run
    /// (`runtime::Session`).
    fn session(
        self: std::sync::Arc<Self>,
        binding: std::sync::Arc<dyn ebpf_abi::Binding>,
    ) -> Box<dyn ebpf_abi::Session> {
        let entry = self.entry;
        // SAFETY: `entry` was generated by `compile` for this host and stays mapped while the
        // program (which owns its module, and which the session keeps) lives.
        Box::new(unsafe { runtime::Session::new(self, entry, binding) })
    }
}

impl CraneliftProgram {
    /// The fallback code (compiled without the entry's facts), once a run has needed it.
    #[inline]
    fn fallback_code(&self) -> Option<&CraneliftProgram> {
        match self.fallback.as_ref()?.gate.made()? {
            Ok(plain) => Some(plain),
            Err(_) => None,
        }
    }

    /// Whether a session's run of `data` (and a metadata buffer, if `metadata`) with `args`
    /// may run this code without passing the entry's gate: the code assumes nothing of the
    /// entry, or the run is `Vm::run`'s run of an entry that asks no more
    /// (`Admission::admits_input`, shared with the x86 JIT's session).
    #[inline]
    fn fast_admits(&self, data: Option<&[u8]>, metadata: bool, args: [u64; 2]) -> bool {
        self.fallback
            .as_ref()
            .is_none_or(|fallback| fallback.gate.admission().admits_input(data, metadata, args))
    }
}

thread_local! {
    /// Cranelift's per-function state, reused by every compilation on a thread.
    static WORKSPACE: RefCell<(cranelift_codegen::Context, FunctionBuilderContext)> =
        RefCell::new((cranelift_codegen::Context::new(), FunctionBuilderContext::new()));
}

/// Defines the functions of `prep` in `module`: one, or the units and a dispatcher. Returns
/// the id of the function named `symbol` (the entry point) and the bytes of code.
///
/// `check` is the check function: its address, or its id in `module`. `units` says how the
/// dispatcher calls the units.
fn define<M: Module>(
    module: &mut M,
    prep: &Prepared<'_>,
    symbol: &str,
    isa: &dyn TargetIsa,
    check: CheckFn,
    units: UnitCalls,
) -> Result<(FuncId, usize), JitError> {
    let frontend = isa.frontend_config();
    let sig = translate::entry_signature(isa.default_call_conv());
    WORKSPACE.with(|workspace| {
        let mut workspace = workspace.borrow_mut();
        let (ctx, fctx) = &mut *workspace;
        let mut size = 0;
        let mut emit = |module: &mut M,
                        ctx: &mut cranelift_codegen::Context,
                        id: FuncId|
         -> Result<(), JitError> {
            let defined = module.define_function(id, ctx);
            size += ctx
                .compiled_code()
                .map_or(0, |c| c.code_info().total_size as usize);
            ctx.clear();
            defined.map_err(JitError::from)
        };
        let entry = module.declare_function(symbol, Linkage::Export, &sig)?;
        let checker = |module: &mut M, func: &mut ir::Function| match check {
            CheckFn::Address(a) => Check::Address(a),
            CheckFn::Id(id) => Check::Func(module.declare_func_in_func(id, func)),
        };
        ctx.clear();
        #[cfg(test)]
        if PANIC_IN_DEFINE.with(|p| p.replace(false)) {
            // Mid-function, as a Cranelift panic would leave the workspace.
            ctx.func.signature = sig.clone();
            let _ = cranelift_frontend::FunctionBuilder::new(&mut ctx.func, fctx).create_block();
            panic!("an injected panic");
        }
        if prep.is_whole() {
            ctx.func.signature = sig.clone();
            let check = checker(module, &mut ctx.func);
            translate::translate_unit(prep, 0, check, &mut ctx.func, fctx, frontend);
            emit(module, ctx, entry)?;
        } else {
            let mut unit_ids = Vec::with_capacity(prep.plan.units.len());
            for u in 0..prep.plan.units.len() {
                let name = format!("{symbol}.unit{u}");
                unit_ids.push(module.declare_function(&name, Linkage::Local, &sig)?);
            }
            for (u, &id) in unit_ids.iter().enumerate() {
                ctx.func.signature = sig.clone();
                let check = checker(module, &mut ctx.func);
                translate::translate_unit(prep, u, check, &mut ctx.func, fctx, frontend);
                emit(module, ctx, id)?;
            }
            ctx.func.signature = sig.clone();
            let refs: Vec<_> = unit_ids
                .iter()
                .map(|&id| {
                    let f = module.declare_func_in_func(id, &mut ctx.func);
                    // A local function is colocated by default: a `call rel32` (or the ISA's
                    // PC-relative call), which `cranelift-jit` cannot relocate (it panics) if
                    // the unit's memory is more than ±2 GiB from the dispatcher's.
                    ctx.func.dfg.ext_funcs[f].colocated = units == UnitCalls::Near;
                    f
                })
                .collect();
            translate::translate_dispatcher(prep, &refs, &mut ctx.func, fctx, frontend);
            emit(module, ctx, entry)?;
        }
        Ok((entry, size))
    })
}

/// How a dispatcher calls its units.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UnitCalls {
    /// PC-relative: one object's text, which the linker keeps together.
    Near,
    /// Through a 64-bit absolute address (in-process): a module's functions are in memory
    /// allocated separately (`pool.rs`: spans of chunks mapped at different times, or
    /// mappings of their own), which nothing keeps within a relative call's reach.
    Absolute,
}

/// Where the check function of cold paths is (see `translate::translate_check`).
#[derive(Clone, Copy)]
enum CheckFn {
    /// At this address: in-process, compiled once per ISA.
    Address(u64),
    /// In the same module (objects).
    Id(FuncId),
}

/// Defines the check function in `module` (local: every program of an object calls it).
fn define_check<M: Module>(module: &mut M, isa: &dyn TargetIsa) -> Result<FuncId, JitError> {
    let sig = translate::check_signature();
    let id = module.declare_function("ebpf_jit.check", Linkage::Local, &sig)?;
    let mut ctx = cranelift_codegen::Context::new();
    ctx.func.signature = sig;
    let mut fctx = FunctionBuilderContext::new();
    translate::translate_check(&mut ctx.func, &mut fctx, isa.frontend_config());
    module.define_function(id, &mut ctx)?;
    Ok(id)
}

/// The in-process check function of one ISA: its address, and the module that owns its code.
pub(crate) struct CheckCode {
    address: u64,
    /// Kept (never freed) as long as the ISA's cache entry, that is for the life of the
    /// process: every program compiled for this ISA calls into it. Held rather than
    /// forgotten, so that the memory stays reachable (leak checkers see no leak); in a
    /// `Mutex` only because the cache is shared between threads and a module is not `Sync`.
    _module: Mutex<JITModule>,
}

/// The address of the in-process check function for `target`, compiled on first use and
/// kept for the life of the process (a few hundred bytes per distinct ISA configuration).
fn check_address(target: &options::Target) -> Result<u64, JitError> {
    let built = target.check.get_or_init(|| {
        let build = || -> Result<CheckCode, JitError> {
            let mut module = JITModule::new(JITBuilder::with_isa(
                target.isa.clone(),
                default_libcall_names(),
            ));
            let id = define_check(&mut module, &*target.isa)?;
            module.finalize_definitions()?;
            let address = module.get_finalized_function(id) as u64;
            Ok(CheckCode {
                address,
                _module: Mutex::new(module),
            })
        };
        build().map_err(|e| e.to_string())
    });
    match built {
        Ok(code) => Ok(code.address),
        Err(reason) => Err(JitError::UnsupportedHost {
            reason: reason.clone(),
        }),
    }
}

/// The builder of a program's JIT module: its code from the pool of `pool.rs` where there is
/// one (every program's module is freed when the program is dropped, so its pages can be
/// reused; the check function's module, kept for the process, keeps `cranelift-jit`'s own).
fn program_builder(isa: std::sync::Arc<dyn TargetIsa>) -> JITBuilder {
    let builder = JITBuilder::with_isa(isa, default_libcall_names());
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    let builder = {
        let mut builder = builder;
        builder.memory_provider(Box::new(pool::PooledCode::new()));
        builder
    };
    builder
}

/// Compiles `program` for this host, with the facts proven from `options.entry` (or from the
/// stack alone).
pub fn compile(program: &Program, options: &JitOptions) -> Result<CraneliftProgram, JitError> {
    let entry = options.entry.clone().unwrap_or_else(Entry::unknown);
    let facts = analyse(program, &entry, options);
    compile_facts(program, options, &facts)
}

/// The facts of `program` from `entry`, solved for speculation only when the code will clamp
/// the accesses proven through a branch: otherwise nothing reads that answer, and its second
/// solve is about a quarter of the analysis.
fn analyse(program: &Program, entry: &Entry, options: &JitOptions) -> Facts {
    if options.spectre_masking && options.spectre_clamp_proven {
        Facts::analyse(program, entry)
    } else {
        Facts::analyse_without_speculation(program, entry)
    }
}

/// [`compile`] with facts already proven for `program` (by the verifier, say), which saves
/// analysing it again. The facts' entry replaces `options.entry`; facts of another program
/// are not trusted (`Facts::is_for`): the program is analysed afresh instead.
pub fn compile_with_facts(
    program: &Program,
    options: &JitOptions,
    facts: &Facts,
) -> Result<CraneliftProgram, JitError> {
    let options = options.clone().with_entry(Some(facts.entry().clone()));
    if !facts.is_for(program) {
        return compile(program, &options);
    }
    compile_facts(program, &options, facts)
}

/// Runs one compile, with a panic inside Cranelift (a bug: say, a relocation it cannot
/// apply) turned into [`JitError::Panicked`] so that it reaches the caller as the typed
/// error of a failed compile.
///
/// Unwinding is safe to stop here: a module being built is dropped on the way out (its
/// memory freed: none of its code ever ran), the pool's state is consistent between its
/// statements and its lock ignores poisoning, and the caller's inputs are only read. The
/// thread's Cranelift workspace may be left in the middle of a function: it is replaced.
fn guarded<T>(compile: impl FnOnce() -> Result<T, JitError>) -> Result<T, JitError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(compile)).unwrap_or_else(|payload| {
        WORKSPACE.with(|workspace| {
            if let Ok(mut workspace) = workspace.try_borrow_mut() {
                *workspace = (
                    cranelift_codegen::Context::new(),
                    FunctionBuilderContext::new(),
                );
            }
        });
        let message = payload
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(JitError::Panicked(message))
    })
}

#[cfg(test)]
thread_local! {
    /// Makes the next `define` on this thread panic (tests of [`guarded`]).
    static PANIC_IN_DEFINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`compile`] with `facts`, which are `program`'s and `options.entry`'s.
fn compile_facts(
    program: &Program,
    options: &JitOptions,
    facts: &Facts,
) -> Result<CraneliftProgram, JitError> {
    guarded(|| compile_facts_unguarded(program, options, facts))
}

/// [`compile_facts`] with a panic unwinding into the caller.
fn compile_facts_unguarded(
    program: &Program,
    options: &JitOptions,
    facts: &Facts,
) -> Result<CraneliftProgram, JitError> {
    let target = options::isa(None, options)?;
    let check = CheckFn::Address(check_address(&target)?);
    let isa = target.isa.clone();
    let mut prep = Prepared::new(
        program,
        options.function_size,
        Shortfall::Suspend,
        options.spectre_masking,
        options.spectre_masking && options.spectre_clamp_proven,
        Some(facts),
        options.checked_facts,
    );
    prep.plain_selects = options.opt_level == OptLevel::None;
    let mut code = Code(Some(JITModule::new(program_builder(isa.clone()))));
    let Some(module) = code.0.as_mut() else {
        return Err(JitError::UnsupportedHost {
            reason: "no JIT module".to_string(),
        });
    };
    let (id, code_size) = define(
        module,
        &prep,
        &options.symbol,
        &*isa,
        check,
        UnitCalls::Absolute,
    )?;
    module.finalize_definitions()?;
    let address = module.get_finalized_function(id);
    // SAFETY: `address` is the entry of the function just defined with `entry_signature`
    // (one pointer in, one u64 out) in the host's default calling convention, which is the
    // C convention on every supported platform; a data pointer and a function pointer have
    // the same size on them.
    let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(address) };
    Ok(CraneliftProgram {
        entry,
        _code: Mutex::new(code),
        code_size,
        finish: Finish {
            program: program.clone(),
            interpreter: OnceLock::new(),
            return_sites: prep.return_sites(),
        },
        fallback: Gate::new(facts.entry()).map(|gate| {
            Box::new(Fallback {
                gate,
                options: options.clone(),
            })
        }),
        removed: prep.removed(),
    })
}

/// Compiles `program` into a relocatable object for `target` (a triple such as
/// `aarch64-unknown-linux-gnu`) that defines one function, `options.symbol`, with the C ABI of
/// `c/ebpf_jit.h`: `uint64_t ebpf_main(struct ebpf_ctx *ctx)`. It imports nothing.
pub fn compile_object(
    program: &Program,
    target: &str,
    options: &JitOptions,
) -> Result<Vec<u8>, JitError> {
    compile_objects(&[(&options.symbol, program)], target, options)
}

/// Like [`compile_object`], for many programs in one object: one exported function per
/// `(symbol, program)`.
pub fn compile_objects(
    programs: &[(&str, &Program)],
    target: &str,
    options: &JitOptions,
) -> Result<Vec<u8>, JitError> {
    guarded(|| compile_objects_unguarded(programs, target, options))
}

/// [`compile_objects`] with a panic unwinding into the caller.
fn compile_objects_unguarded(
    programs: &[(&str, &Program)],
    target: &str,
    options: &JitOptions,
) -> Result<Vec<u8>, JitError> {
    let isa = options::isa(Some(target), options)?.isa.clone();
    let builder = ObjectBuilder::new(isa.clone(), "ebpf", default_libcall_names())?;
    let mut module = ObjectModule::new(builder);
    let check = CheckFn::Id(define_check(&mut module, &*isa)?);
    for (symbol, program) in programs {
        // No facts: an object's caller describes its memory to no entry.
        let mut prep = Prepared::new(
            program,
            options.function_size,
            Shortfall::CheckedCopy,
            options.spectre_masking,
            false,
            None,
            false,
        );
        prep.plain_selects = options.opt_level == OptLevel::None;
        define(&mut module, &prep, symbol, &*isa, check, UnitCalls::Near)?;
    }
    module
        .finish()
        .emit()
        .map_err(|e| JitError::Object(e.to_string()))
}

/// What [`ir_text`] prints.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrStage {
    /// The IR as translated.
    Translated,
    /// After Cranelift's IR optimisations.
    Optimized,
    /// The machine code after register allocation, as Cranelift prints it.
    Machine,
}

/// The Cranelift IR of `program`'s translation for the host (each unit's function; not the
/// dispatcher of a program of several) at `stage`, for debugging and documentation.
#[doc(hidden)]
pub fn ir_text(program: &Program, stage: IrStage) -> Result<String, JitError> {
    ir_text_with(program, stage, &JitOptions::default())
}

/// [`ir_text`] under `options`.
#[doc(hidden)]
pub fn ir_text_with(
    program: &Program,
    stage: IrStage,
    options: &JitOptions,
) -> Result<String, JitError> {
    let target = options::isa(None, options)?;
    let check = Check::Address(check_address(&target)?);
    let isa = &target.isa;
    let entry = options.entry.clone().unwrap_or_else(Entry::unknown);
    let facts = analyse(program, &entry, options);
    let mut prep = Prepared::new(
        program,
        options.function_size,
        Shortfall::Suspend,
        options.spectre_masking,
        options.spectre_masking && options.spectre_clamp_proven,
        Some(&facts),
        options.checked_facts,
    );
    prep.plain_selects = options.opt_level == OptLevel::None;
    let mut text = String::new();
    let mut fctx = FunctionBuilderContext::new();
    for u in 0..prep.plan.units.len() {
        let mut ctx = cranelift_codegen::Context::new();
        ctx.func.signature = translate::entry_signature(isa.default_call_conv());
        let frontend = isa.frontend_config();
        translate::translate_unit(&prep, u, check, &mut ctx.func, &mut fctx, frontend);
        match stage {
            IrStage::Translated => text.push_str(&ctx.func.display().to_string()),
            IrStage::Optimized => {
                ctx.optimize(&**isa, &mut Default::default())
                    .map_err(JitError::Codegen)?;
                text.push_str(&ctx.func.display().to_string());
            }
            IrStage::Machine => {
                ctx.set_disasm(true);
                let code = ctx
                    .compile(&**isa, &mut Default::default())
                    .map_err(|e| JitError::Codegen(e.inner))?;
                text.push_str(code.vcode.as_deref().unwrap_or(""));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        let sum_of_one_to_five =
            "mov %r0, 0\nmov %r1, 5\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, -3\nexit";
        ebpf_isa::assemble(sum_of_one_to_five).unwrap()
    }

    #[test]
    fn a_panic_while_compiling_is_a_typed_error_and_the_next_compile_works() {
        if !host_supported() {
            return;
        }
        let program = program();
        let options = JitOptions::default();
        PANIC_IN_DEFINE.with(|p| p.set(true));
        let failed = compile(&program, &options);
        assert!(
            matches!(&failed, Err(JitError::Panicked(m)) if m == "an injected panic"),
            "{failed:?}"
        );
        let exit = compile(&program, &options).unwrap().run(
            MemoryMap::new(),
            [0, 0],
            &Helpers::new(),
            &Limits::default(),
        );
        assert_eq!(exit.map(|e| e.r0), Ok(15));
    }

    #[test]
    fn a_panic_while_writing_an_object_is_a_typed_error() {
        let program = program();
        let options = JitOptions::default();
        let target = "x86_64-unknown-linux-gnu";
        PANIC_IN_DEFINE.with(|p| p.set(true));
        let failed = compile_object(&program, target, &options);
        assert!(matches!(failed, Err(JitError::Panicked(_))), "{failed:?}");
        assert!(compile_object(&program, target, &options).is_ok());
    }
}
