//! Every engine on one program, driven directly (not through the facade): compile once per
//! engine, run any number of [`Setup`]s, and compare each engine's [`Outcome`] with the
//! interpreter's — `r0` or the trap (kind and pc), the instruction count, and every writable
//! region's bytes afterwards.
//!
//! Every run is on one lent stack ([`Stack`]), as the facade lends its own: afterwards the
//! harness scrubs what the facade would (`ebpf_vm::scrub`: the program's own stores' reach,
//! fewer bytes when the run satisfies the facts' entry, and what helpers wrote) and then
//! requires the whole buffer to be zero, which is what the next run would read. A run that
//! wrote a stack byte the facade does not scrub is a finding, on any engine.
//!
//! Compiling once and running several setups per compile is what keeps the differential
//! fuzz target fast: the Cranelift JIT compiles in about a millisecond, a run takes
//! microseconds. [`CompileCache`] goes one step further across inputs: an input whose program
//! one of the last inputs compiled under the same options runs on that compile.

use std::cell::RefCell;
use std::rc::Rc;

use ebpf_abi::{
    Executable, Exit, HelperError, HelperFn, Helpers, Limits, MemoryMap, Region, Stack, Trap,
    VmMemory, layout,
};
use ebpf_cfg::facts::{Admission, Entry as FactsEntry, Facts};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_cranelift::{CraneliftProgram, OptLevel};
use ebpf_jit_x86::X86Program;

use crate::Finding;
use crate::recent::Recent;

/// Where a metadata buffer's run writes the input's start and end addresses (rbpf's mbuff,
/// as the facade's `MetadataLayout` does it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Where the input's start address goes (`data_offset + 8 <= buffer length`).
    pub data_offset: usize,
    /// Where the input's end address goes.
    pub data_end_offset: usize,
}

/// The memory and limits of one run: what the facade's `VmBuilder` and `Input` configure,
/// written out so that one compiled program runs under many of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// Budget and call depth.
    pub limits: Limits,
    /// The input (region 4, writable): `r1` and `r2` at entry, unless there is a metadata
    /// buffer.
    pub input: Option<Vec<u8>>,
    /// A metadata buffer (region 5, writable) and where the input's addresses go in it: `r1`
    /// then points to the buffer and `r2` is its length.
    pub metadata: Option<(Vec<u8>, Option<Metadata>)>,
    /// Read-only data (region 1).
    pub rodata: Option<Vec<u8>>,
    /// Writable data (region 3).
    pub data: Option<Vec<u8>>,
    /// Extra regions from region 6 on: (writable, bytes).
    pub extra: Vec<(bool, Vec<u8>)>,
}

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `r0` and the instruction count, or the trap.
    pub result: Result<Exit, Trap>,
    /// Every writable region's bytes after the run: (region id, bytes).
    pub memory: Vec<(u64, Vec<u8>)>,
}

/// The helpers every engine runs with: deterministic, and between them they read and write VM
/// memory (so generated code must see a helper's stores and keep its own region table right
/// across calls), fail, and trap.
///
/// - 1: loads the 8 bytes at `r1` (a memory trap if they are out of bounds);
/// - 2: stores `r2` at `r1` (8 bytes) and returns `r1 + r2`;
/// - 3: fails when `r1` is odd, else returns `r1 / 2`;
/// - 5: the conformance helper (returns `r1`).
pub const HELPERS: [(u32, HelperFn); 4] = [
    (1, load_helper),
    (2, store_helper),
    (3, halve_helper),
    (
        ebpf_abi::CONFORMANCE_HELPER_ID,
        ebpf_abi::conformance_helper,
    ),
];

/// The ids of [`HELPERS`].
pub const HELPER_IDS: [u32; 4] = [1, 2, 3, ebpf_abi::CONFORMANCE_HELPER_ID];

fn load_helper(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(mem.read_u64(args[0])?)
}

fn store_helper(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    mem.write_u64(args[0], args[1])?;
    Ok(args[0].wrapping_add(args[1]))
}

fn halve_helper(args: [u64; 5], _mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    if args[0] % 2 == 1 {
        return Err(HelperError::failed("odd argument"));
    }
    Ok(args[0] / 2)
}

/// [`HELPERS`] as the engines take them.
pub fn helpers() -> Helpers {
    let mut helpers = Helpers::new();
    for (id, helper) in HELPERS {
        helpers.insert(id, helper);
    }
    helpers
}

/// Which engines to compile for, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// The x86 JIT, once with constant blinding and once without (where the host has it).
    pub x86: bool,
    /// The Cranelift JIT (where the host has it).
    pub cranelift: bool,
    /// Cranelift's optimisation level.
    pub cranelift_opt: OptLevel,
    /// What the JITs' facts assume at entry (`None`: the stack alone, which every run
    /// satisfies). A run the entry does not admit takes each JIT's fallback code.
    pub entry: Option<FactsEntry>,
    /// Whether the Cranelift JIT keeps the checks its facts drop and panics when one fires
    /// (`JitOptions::checked_facts`). The blinded x86 build always does; the unblinded one
    /// never does.
    pub cranelift_checked_facts: bool,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            x86: true,
            cranelift: true,
            cranelift_opt: OptLevel::Speed,
            entry: None,
            cranelift_checked_facts: false,
        }
    }
}

/// One program compiled for every engine.
pub struct Engines {
    program: Program,
    interp: Compiled,
    /// (name, compiled program) of the other engines.
    jits: Vec<(&'static str, Compiled)>,
    helpers: Helpers,
    /// The JITs' facts when their entry assumes more than the stack, and what that entry asks
    /// of a run: a run it admits scrubs only what the facts say its stores can reach.
    entry_facts: Option<(Facts, Admission)>,
}

/// A program prepared for one engine.
enum Compiled {
    Interp(Interpreter),
    X86(X86Program),
    Cranelift(Box<CraneliftProgram>),
}

impl Compiled {
    fn executable(&self) -> &dyn Executable {
        match self {
            Compiled::Interp(p) => p,
            Compiled::X86(p) => p,
            Compiled::Cranelift(p) => &**p,
        }
    }

    fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        self.executable().run(memory, args, helpers, limits)
    }
}

impl Engines {
    /// Compiles `program` for every engine `options` asks for that this host has. A JIT that
    /// refuses a program the interpreter takes is a finding (except for size limits, which
    /// `program` is far below in the fuzz targets).
    pub fn compile(program: &Program, options: &EngineOptions) -> Result<Engines, Finding> {
        let mut jits = Vec::new();
        let entry = options.entry.clone().unwrap_or_else(FactsEntry::unknown);
        // One facts analysis for every JIT compile, as the facade shares the verifier's: each
        // JIT would prove the same facts of the same program from the same entry, three times
        // over (a third of an input's work, most of it under compare instrumentation).
        let facts = (options.x86 || options.cranelift).then(|| Facts::analyse(program, &entry));
        if let (true, Some(facts)) = (options.x86, &facts) {
            // The blinded build keeps every check the facts drop (a wrong fact panics, which
            // the fuzzer reports); the unblinded one drops them, as users run it.
            for (name, blinding) in [("x86", true), ("x86-unblinded", false)] {
                let jit_options = ebpf_jit_x86::JitOptions {
                    constant_blinding: blinding,
                    entry: Some(entry.clone()),
                    checked_facts: blinding,
                    spectre_masking: true,
                    spectre_clamp_proven: !blinding,
                };
                match ebpf_jit_x86::compile_with_facts(program, &jit_options, facts) {
                    Ok(p) => jits.push((name, Compiled::X86(p))),
                    Err(ebpf_jit_x86::JitError::Unsupported) => break,
                    Err(e) => return Err(Finding::new(format!("{name} cannot compile: {e}"))),
                }
            }
        }
        if let (true, true, Some(facts)) = (
            options.cranelift,
            ebpf_jit_cranelift::host_supported(),
            &facts,
        ) {
            let jit_options = ebpf_jit_cranelift::JitOptions::default()
                .with_opt_level(options.cranelift_opt)
                .with_checked_facts(options.cranelift_checked_facts);
            let p = ebpf_jit_cranelift::compile_with_facts(program, &jit_options, facts)
                .map_err(|e| Finding::new(format!("cranelift cannot compile: {e}")))?;
            jits.push(("cranelift", Compiled::Cranelift(Box::new(p))));
        }
        // The interpreter alone proves nothing: it scrubs by the instructions only.
        let entry_facts = facts
            .filter(|_| entry != FactsEntry::unknown())
            .map(|facts| (facts, entry.admission()));
        Ok(Engines {
            program: program.clone(),
            interp: Compiled::Interp(Interpreter::new(program)),
            jits,
            helpers: helpers(),
            entry_facts,
        })
    }

    /// The names of the engines compiled, the interpreter first.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.all().map(|(name, _)| name)
    }

    fn all(&self) -> impl Iterator<Item = (&'static str, &Compiled)> {
        core::iter::once(("interp", &self.interp)).chain(self.jits.iter().map(|(n, p)| (*n, p)))
    }

    /// Runs every engine in turn on memory that `memory` builds afresh for each run (so that
    /// a caller can lend the same large buffer to each), with [`helpers`]: (engine, result).
    pub fn run_each(
        &self,
        args: [u64; 2],
        limits: &Limits,
        mut run: impl FnMut(&dyn Fn(MemoryMap<'_>) -> Result<Exit, Trap>) -> Result<Exit, Trap>,
    ) -> Vec<(&'static str, Result<Exit, Trap>)> {
        self.all()
            .map(|(name, p)| {
                let result = run(&|memory| p.run(memory, args, &self.helpers, limits));
                (name, result)
            })
            .collect()
    }

    /// Runs `setup` on the interpreter only; a finding if the run left stack bytes the
    /// facade would not scrub.
    pub fn interpret(&self, setup: &Setup) -> Result<Outcome, Finding> {
        let scrub = self.scrub(&setup.limits);
        self.outcome("interp", &self.interp, setup, &scrub)
    }

    /// Runs `setup` on every engine and returns the interpreter's outcome, or a finding naming
    /// the first engine that differs from it or left stack bytes the facade would not scrub.
    pub fn check(&self, setup: &Setup) -> Result<Outcome, Finding> {
        let scrub = self.scrub(&setup.limits);
        let want = self.outcome("interp", &self.interp, setup, &scrub)?;
        for (name, p) in &self.jits {
            let got = self.outcome(name, p, setup, &scrub)?;
            if got != want {
                return Err(Finding::new(format!(
                    "{name} differs from the interpreter\n  interp: {want:?}\n  {name}: {got:?}\n  setup: {setup:?}"
                )));
            }
        }
        Ok(want)
    }

    /// What the facade scrubs after a run under `limits`, before its helpers' mark.
    fn scrub(&self, limits: &Limits) -> Scrub<'_> {
        Scrub {
            own: ebpf_vm::scrub::own_stack_reach(&self.program, limits),
            admitted: self.entry_facts.as_ref().map(|(facts, admission)| {
                let reach = ebpf_vm::scrub::admitted_stack_reach(&self.program, limits, facts);
                (reach, admission)
            }),
        }
    }

    fn outcome(
        &self,
        name: &str,
        p: &Compiled,
        setup: &Setup,
        scrub: &Scrub<'_>,
    ) -> Result<Outcome, Finding> {
        let run = RunIn {
            program: p.executable(),
            helpers: &self.helpers,
        };
        let size = usize::try_from(setup.limits.stack_size()).unwrap_or(usize::MAX);
        if size > LARGEST_CHECKED_STACK {
            // A stack for a call depth beyond 127 (up to 32 MiB, the deepest the engines
            // clamp to): scanning it after every run of every engine cost seven times the
            // target's speed. Such a run gets a fresh stack, unchecked, as before the check.
            return Ok(run_with(setup, &mut Stack::new(), scrub, |m, a, l, s| {
                run.run(m, a, l, s)
            })
            .0);
        }
        STACK.with(|stack| {
            let stack = &mut *stack.borrow_mut();
            let (outcome, reach) = run_with(setup, stack, scrub, |m, a, l, s| run.run(m, a, l, s));
            stack.scrub(size, reach);
            if stack.is_clean() {
                return Ok(outcome);
            }
            // The next run must find the stack zero, as the facade's would.
            *stack = Stack::new();
            Err(Finding::new(format!(
                "{name} left stack bytes below the {reach} the facade scrubs (of {size})\n  \
                 outcome: {outcome:?}\n  setup: {setup:?}"
            )))
        })
    }
}

/// One engine's program and the helpers it runs with.
struct RunIn<'a> {
    program: &'a dyn Executable,
    helpers: &'a Helpers,
}

impl RunIn<'_> {
    fn run<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap> {
        self.program
            .run_in(memory, args, self.helpers, limits, stack)
    }
}

/// What the facade scrubs after a run ([`ebpf_vm::scrub`]), before the helpers' mark.
struct Scrub<'a> {
    /// What the program's own stores can reach.
    own: usize,
    /// What they can reach in a run the facts' entry admits, and what that entry asks.
    admitted: Option<(usize, &'a Admission)>,
}

/// The largest stack (64 KiB: a call-depth limit of 127) whose runs are checked to leave
/// nothing the facade does not scrub; larger ones run on a fresh stack.
const LARGEST_CHECKED_STACK: usize = 64 * 1024;

thread_local! {
    /// The stack every engine's runs are lent, as the facade lends one per thread.
    static STACK: RefCell<Stack> = const { RefCell::new(Stack::new()) };
}

/// The programs compiled most recently, each with the options it was compiled under, so that
/// an input whose program was compiled a moment ago runs on that compile instead of a new one.
///
/// Most of libFuzzer's mutations leave the program alone: they change a byte of a setup (the
/// input buffer alone is up to 512 bytes), or a byte of a structured program's input past the
/// 32 bytes that seed its generator. Compiling is nearly all the cost of an input (the
/// Cranelift JIT's code generation, two x86 compiles and the facts analysis; runs take
/// microseconds), and compiling is deterministic: the same program under the same options
/// gives the same machine code, so a cached compile checks exactly what a fresh one would.
/// Every setup still runs on every engine and is compared in full.
///
/// What it shares across inputs is the compiled programs, which must not carry anything from
/// one run to the next (their runs are already independent of each other within one input's
/// setups); a finding that does not reproduce from its input alone points there.
pub struct CompileCache {
    /// (program, options) and its compile.
    entries: Recent<(Program, EngineOptions), Rc<Engines>>,
}

impl CompileCache {
    /// A cache of at most `capacity` compiled programs (each holds a few pages of code per
    /// JIT).
    pub fn new(capacity: usize) -> CompileCache {
        CompileCache {
            entries: Recent::new(capacity),
        }
    }

    /// `program` compiled under `options`: from the cache, or compiled now (and kept, the
    /// least recently used entry making room). A compile that fails is not kept.
    pub fn compile(
        &mut self,
        program: &Program,
        options: &EngineOptions,
    ) -> Result<Rc<Engines>, Finding> {
        // Programs compare instruction by instruction (not through `to_bytes`, whose encoder
        // reads the instruction table for every instruction: several per cent of an input
        // under coverage instrumentation).
        if let Some(engines) = self.entries.find(|(p, o)| p == program && o == options) {
            return Ok(engines);
        }
        let engines = Rc::new(Engines::compile(program, options)?);
        self.entries
            .insert((program.clone(), options.clone()), Rc::clone(&engines));
        Ok(engines)
    }
}

thread_local! {
    /// The differential target's [`CompileCache`] (libFuzzer runs inputs on one thread).
    static COMPILED: RefCell<CompileCache> = RefCell::new(CompileCache::new(COMPILE_CACHE_SIZE));
}

/// How many compiled programs the differential target keeps: libFuzzer mutates one corpus
/// input several times in a row (`-mutate_depth`, 5 by default), so the few programs of the
/// last inputs are the ones that come back.
pub const COMPILE_CACHE_SIZE: usize = 16;

/// `program` compiled under `options` through this thread's [`CompileCache`].
pub fn compile_cached(program: &Program, options: &EngineOptions) -> Result<Rc<Engines>, Finding> {
    COMPILED.with(|cache| cache.borrow_mut().compile(program, options))
}

/// Whether the run `setup` makes satisfies `entry` (`Entry::admits` on the map and arguments
/// the engines get), so that code compiled with the entry's facts runs it rather than the
/// fallback code.
pub fn admitted(setup: &Setup, entry: &FactsEntry) -> bool {
    let mut admitted = false;
    let scrub = Scrub {
        own: 0,
        admitted: None,
    };
    run_with(setup, &mut Stack::new(), &scrub, |map, args, _, _| {
        admitted = entry.admits(map, args);
        Ok(Exit {
            r0: 0,
            instructions: 0,
        })
    });
    admitted
}

/// Builds the run's memory map from `setup` (fresh copies of its buffers), runs `engine` on
/// it with `stack` lent, and collects the writable regions afterwards; with how many bytes at
/// the top of the stack the facade would scrub after this run (`scrub`, the run's admission
/// by the facts' entry, and the helpers' mark).
fn run_with(
    setup: &Setup,
    stack: &mut Stack,
    scrub: &Scrub<'_>,
    engine: impl for<'m> FnOnce(
        &mut MemoryMap<'m>,
        [u64; 2],
        &Limits,
        &'m mut Stack,
    ) -> Result<Exit, Trap>,
) -> (Outcome, usize) {
    let mut input = setup.input.clone();
    let mut metadata = setup.metadata.as_ref().map(|(bytes, _)| bytes.clone());
    let mut data = setup.data.clone();
    let mut extra: Vec<(bool, Vec<u8>)> = setup.extra.clone();
    let (data_start, data_len) = match &input {
        Some(bytes) => (layout::vm_addr(layout::INPUT, 0), bytes.len() as u64),
        None => (0, 0),
    };
    let mut args = [data_start, data_len];
    if let (Some(buffer), Some((_, layout))) = (&mut metadata, &setup.metadata) {
        if let Some(m) = layout {
            for (offset, value) in [
                (m.data_offset, data_start),
                (m.data_end_offset, data_start + data_len),
            ] {
                if let Some(slot) = buffer.get_mut(offset..offset.saturating_add(8)) {
                    slot.copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        args = [layout::vm_addr(layout::METADATA, 0), buffer.len() as u64];
    }
    let result = {
        let mut map = MemoryMap::new();
        if let Some(rodata) = &setup.rodata {
            map.insert(layout::RODATA, Region::ReadOnly(rodata));
        }
        if let Some(data) = &mut data {
            map.insert(layout::DATA, Region::Writable(data));
        }
        if let Some(input) = &mut input {
            map.insert(layout::INPUT, Region::Writable(input));
        }
        if let Some(metadata) = &mut metadata {
            map.insert(layout::METADATA, Region::Writable(metadata));
        }
        for (id, (writable, bytes)) in (layout::FIRST_EXTRA..).zip(&mut extra) {
            let region = if *writable {
                Region::Writable(bytes)
            } else {
                Region::ReadOnly(bytes)
            };
            map.insert(id, region);
        }
        // Checked before the run, as the engines check it (a run may move what it checks).
        let own = match scrub.admitted {
            Some((fewer, admission)) if fewer < scrub.own && admission.admits(&map, args) => fewer,
            _ => scrub.own,
        };
        let result = engine(&mut map, args, &setup.limits, stack);
        let size = usize::try_from(setup.limits.stack_size()).unwrap_or(usize::MAX);
        let reach = ebpf_vm::scrub::with_helper_mark(own, size, map.lowest_stack_write());
        (result, reach)
    };
    let (result, reach) = result;
    let mut memory = Vec::new();
    memory.extend(data.map(|b| (layout::DATA, b)));
    memory.extend(input.map(|b| (layout::INPUT, b)));
    memory.extend(metadata.map(|b| (layout::METADATA, b)));
    for (id, (writable, bytes)) in (layout::FIRST_EXTRA..).zip(extra) {
        if writable {
            memory.push((id, bytes));
        }
    }
    (Outcome { result, memory }, reach)
}
