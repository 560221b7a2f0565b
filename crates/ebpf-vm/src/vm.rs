//! [`VmBuilder`] (configuration and loading), [`Vm`] (a loaded program) and [`Input`] (the
//! memory of one run).

use std::fmt;
use std::sync::Arc;

use crate::engine::{self, Engine};
use crate::runner::{UNBRACKETED, Warm};
use ebpf_abi::{
    Executable, Exit, Helper, Helpers, Limits, MemoryMap, Region, Stack, Trap, TrapKind, layout,
};
use ebpf_cfg::facts::{Entry, MapLookup, MetadataFields, RegionSpec};
use ebpf_interp::{Interpreter, Observer};
use ebpf_isa::{AsmError, DecodeError, Program};
use ebpf_verifier::{
    Finding, Policy, PolicyView, Rejected, Severity, Termination, Verifier, VerifierConfig,
};

/// Where the VM writes the input's addresses into a metadata buffer (rbpf's "mbuff").
///
/// With a layout configured, each run's `r1` points to the metadata buffer — a fresh zeroed
/// one of `len` bytes, or the caller's (see [`Input::metadata`]) — and the VM stores the VM
/// address of the input's first byte at `data_offset` and of one past its last byte at
/// `data_end_offset`, as little-endian `u64`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataLayout {
    /// Size of the buffer the VM allocates when the caller brings none.
    pub len: usize,
    /// Where the input's start address goes.
    pub data_offset: usize,
    /// Where the input's end address goes.
    pub data_end_offset: usize,
}

/// Why a program could not be loaded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not a valid program.
    Decode(DecodeError),
    /// The text does not assemble.
    Asm(AsmError),
    /// The ELF object could not be loaded.
    #[cfg(feature = "elf")]
    Elf(ebpf_elf::ElfError),
    /// The verifier rejected the program; every finding is inside.
    Rejected(Rejected),
    /// The program can loop, and the VM has no instruction budget: set one with
    /// [`VmBuilder::budget`], or accept the risk with [`VmBuilder::allow_unbounded`].
    NeedsBudget,
    /// The program uses maps, and the builder was not opted into the kernel helpers that
    /// use them ([`VmBuilder::kernel_helpers`]; [`VmBuilder::load_object`] opts in).
    UsesMaps {
        /// The maps it references, by name.
        maps: Vec<String>,
    },
    /// The program calls a helper no one registered (neither the embedder nor
    /// [`VmBuilder::kernel_helpers`]); the message names the kernel's helper of that id.
    UnsupportedHelper {
        /// The helper id.
        id: u32,
    },
    /// The program's section names a kernel program type this VM does not run (only XDP,
    /// socket filters and TC have their contexts here): a kprobe, a tracepoint, fentry, ….
    UnsupportedProgramType {
        /// The section (`kprobe/do_sys_open`).
        section: String,
        /// The kernel's program type (`BPF_PROG_TYPE_KPROBE`).
        program_type: &'static str,
    },
    /// A map of the object cannot be created (a type this VM does not implement, a bad
    /// size).
    Map {
        /// The map's name.
        name: String,
        /// Why.
        error: ebpf_maps::MapError,
    },
    /// The program is longer than any VM loads ([`crate::MAX_PROGRAM_SLOTS`]).
    TooLarge {
        /// Its length in slots (for bytes, their length divided by 8, rounded up).
        slots: usize,
    },
    /// The configuration is inconsistent.
    InvalidConfig(String),
    /// This build or this host does not have the engine.
    EngineUnavailable(Engine),
    /// The engine could not compile the program.
    Compile {
        /// The engine.
        engine: Engine,
        /// The engine's own error (`ebpf_jit_x86::JitError`, `ebpf_jit_cranelift::JitError`):
        /// `source.downcast_ref::<JitError>()` reaches it.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Decode(e) => write!(f, "invalid program: {e}"),
            LoadError::Asm(e) => write!(f, "assembly error: {e}"),
            #[cfg(feature = "elf")]
            LoadError::Elf(e) => write!(f, "invalid ELF object: {e}"),
            LoadError::Rejected(e) => write!(f, "rejected by the verifier: {e}"),
            LoadError::NeedsBudget => write!(
                f,
                "the program can loop forever and no instruction budget is set"
            ),
            LoadError::UsesMaps { maps } => write!(
                f,
                "the program uses map{} `{}`: load it with kernel helpers \
                 (VmBuilder::kernel_helpers or load_object)",
                if maps.len() == 1 { "" } else { "s" },
                maps.iter()
                    .map(|m| ebpf_isa::quoted(m).to_string())
                    .collect::<Vec<_>>()
                    .join("`, `")
            ),
            LoadError::UnsupportedHelper { id } => {
                f.write_str(&crate::kernel::unsupported_helper(*id))
            }
            LoadError::UnsupportedProgramType {
                section,
                program_type,
            } => write!(
                f,
                "section `{}` holds a {program_type} program; this VM runs XDP, socket-filter \
                 and TC programs only",
                ebpf_isa::quoted(section)
            ),
            LoadError::Map { name, error } => write!(
                f,
                "map `{}` cannot be created: {error}",
                ebpf_isa::quoted(name)
            ),
            LoadError::TooLarge { slots } => write!(
                f,
                "the program has {slots} slots, more than the {} a VM loads",
                ebpf_abi::MAX_PROGRAM_SLOTS
            ),
            LoadError::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            LoadError::EngineUnavailable(engine) => {
                write!(
                    f,
                    "the {engine} engine is not available in this build or on this host"
                )
            }
            LoadError::Compile { engine, source } => {
                write!(
                    f,
                    "the {engine} engine cannot compile the program: {source}"
                )
            }
        }
    }
}

/// Two errors are equal when they are the same variant with equal contents; compile errors,
/// whose sources are the engines' own types, when their engines and messages are.
impl PartialEq for LoadError {
    fn eq(&self, other: &LoadError) -> bool {
        use LoadError::*;
        match (self, other) {
            (Decode(a), Decode(b)) => a == b,
            (Asm(a), Asm(b)) => a == b,
            #[cfg(feature = "elf")]
            (Elf(a), Elf(b)) => a == b,
            (Rejected(a), Rejected(b)) => a == b,
            (NeedsBudget, NeedsBudget) => true,
            (UsesMaps { maps: a }, UsesMaps { maps: b }) => a == b,
            (UnsupportedHelper { id: a }, UnsupportedHelper { id: b }) => a == b,
            (
                UnsupportedProgramType {
                    section: a,
                    program_type: p,
                },
                UnsupportedProgramType {
                    section: b,
                    program_type: q,
                },
            ) => a == b && p == q,
            (Map { name: a, error: e }, Map { name: b, error: g }) => a == b && e == g,
            (TooLarge { slots: a }, TooLarge { slots: b }) => a == b,
            (InvalidConfig(a), InvalidConfig(b)) => a == b,
            (EngineUnavailable(a), EngineUnavailable(b)) => a == b,
            (
                Compile {
                    engine: a,
                    source: s,
                },
                Compile {
                    engine: b,
                    source: t,
                },
            ) => a == b && s.to_string() == t.to_string(),
            // Listed, not `_`, so that a new variant must be compared above.
            #[cfg(feature = "elf")]
            (Elf(_), _) => false,
            (
                Decode(_)
                | Asm(_)
                | Rejected(_)
                | NeedsBudget
                | UsesMaps { .. }
                | UnsupportedHelper { .. }
                | UnsupportedProgramType { .. }
                | Map { .. }
                | TooLarge { .. }
                | InvalidConfig(_)
                | EngineUnavailable(_)
                | Compile { .. },
                _,
            ) => false,
        }
    }
}

impl Eq for LoadError {}

/// The inner errors are part of the message rather than `source()`, so that printing a chain
/// (`{:#}` with anyhow) does not say the same thing twice; match on the variant to reach them.
impl std::error::Error for LoadError {}

impl From<DecodeError> for LoadError {
    fn from(e: DecodeError) -> LoadError {
        LoadError::Decode(e)
    }
}

impl From<AsmError> for LoadError {
    fn from(e: AsmError) -> LoadError {
        LoadError::Asm(e)
    }
}

/// How loading checks a program.
#[derive(Clone, Debug, Default)]
enum Verification {
    /// The verifier runs; looping programs need a budget.
    #[default]
    Verify,
    /// The verifier runs; looping programs are accepted without a budget.
    AllowUnbounded,
    /// No verification (engines are memory-safe regardless).
    Skip,
}

/// The data images of an ELF object loaded without kernel helpers: the read-only region,
/// and the writable one — globals that persist across runs and that concurrent runs share,
/// kept in a one-element array map, as the kernel keeps `.data` (map values are the one
/// kind of memory runs share: `ebpf_abi::SharedMemory`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Images {
    pub(crate) rodata: Option<Arc<[u8]>>,
    pub(crate) data: Option<Arc<ebpf_maps::Map>>,
}

/// A policy shared by clones of a builder.
#[derive(Clone)]
struct SharedPolicy(Arc<dyn Policy>);

impl Policy for SharedPolicy {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        self.0.check(program, out);
    }
}

impl fmt::Debug for SharedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

/// Configuration of a VM; [`VmBuilder::load`] turns it and a program into a [`Vm`].
#[derive(Clone, Debug, Default)]
pub struct VmBuilder {
    engine: Engine,
    pub(crate) helpers: Helpers,
    limits: Limits,
    pub(crate) metadata: Option<MetadataLayout>,
    pub(crate) read_only_regions: Vec<Arc<[u8]>>,
    images: Images,
    verification: Verification,
    verifier_config: Option<VerifierConfig>,
    policies: Vec<SharedPolicy>,
    hardening: engine::Hardening,
    /// Where compiled code is shared between loads.
    code_cache: crate::cache::CacheChoice,
    /// The kernel helpers, when the embedder opted in.
    pub(crate) kernel: Option<crate::kernel::KernelHelpers>,
    /// Region ids an object's maps take after the read-only regions.
    pub(crate) map_regions: u64,
    /// What the verifier knows of those maps' values (lookup results' sizes and NULL).
    pub(crate) map_lookup: Option<ebpf_verifier::MapLookup>,
    /// `max_entries` the embedder sets for an object's maps, by name
    /// ([`VmBuilder::map_max_entries`]).
    pub(crate) map_sizes: Vec<(String, u32)>,
    /// The program runs through `Vm::run_packet` (an object's program with a kernel context),
    /// whose metadata buffer holds a packet's addresses, `data` this many bytes into the input
    /// (see `VmBuilder::entry`).
    pub(crate) packet_offset: Option<u32>,
}

impl VmBuilder {
    /// Sets the `max_entries` of the object's map `name` before it is created, replacing the
    /// object's value, as libbpf's `bpf_map__set_max_entries` does: what loaders do for maps
    /// whose definition leaves it 0 (xdp-tools' counters, sized by the CPUs or interfaces at
    /// run time). Such a map cannot be created otherwise — except a perf event array, which
    /// gets one slot per CPU of the object's set ([`crate::KernelHelpers::cpus`]), as the
    /// kernel gives it one per possible CPU. For [`VmBuilder::load_object`] and
    /// [`VmBuilder::load_elf`] with kernel helpers; naming a map the object does not define
    /// is [`LoadError::InvalidConfig`].
    pub fn map_max_entries(mut self, name: &str, max_entries: u32) -> VmBuilder {
        self.map_sizes.retain(|(n, _)| n != name);
        self.map_sizes.push((name.to_string(), max_entries));
        self
    }

    /// The engine (default: the interpreter).
    pub fn engine(mut self, engine: Engine) -> VmBuilder {
        self.engine = engine;
        self
    }

    /// Registers a helper under `id` (`call id` in the program). A closure works:
    /// `|args: [u64; 5], mem: &mut dyn VmMemory| Ok(args[0])`.
    pub fn helper(mut self, id: u32, helper: impl Helper + 'static) -> VmBuilder {
        self.helpers.insert(id, helper);
        self
    }

    /// Opts into the kernel's helpers under their kernel ids (map helpers, tail calls,
    /// clock, random numbers, packet helpers, ring buffers: docs/helpers.md), replacing any
    /// helper registered under those ids (the conformance helper's id 5 becomes
    /// `ktime_get_ns`). With them, [`VmBuilder::load_elf`] creates the object's maps and
    /// gives the program its kernel context ([`Vm::run_packet`]).
    pub fn kernel_helpers(mut self, helpers: crate::kernel::KernelHelpers) -> VmBuilder {
        let maps = std::sync::Arc::new(ebpf_maps::Maps::new(helpers.cpu_count()));
        let none = crate::kernel::ObjectMaps::new(maps, layout::FIRST_EXTRA);
        helpers.install(&mut self.helpers, Arc::new(none));
        self.kernel = Some(helpers);
        self
    }

    /// Stops runs after `instructions` executed instructions with
    /// [`TrapKind::BudgetExhausted`] (default: no limit).
    pub fn budget(mut self, instructions: u64) -> VmBuilder {
        self.limits.budget = Some(instructions);
        self
    }

    /// How deeply local calls may nest (default 8; the entry function is depth 0).
    pub fn max_call_depth(mut self, depth: usize) -> VmBuilder {
        self.limits.max_call_depth = depth;
        self
    }

    /// Passes the input through a metadata buffer (see [`MetadataLayout`]).
    pub fn metadata(mut self, layout: MetadataLayout) -> VmBuilder {
        self.metadata = Some(layout);
        self
    }

    /// Adds a read-only region shared by every run (a lookup table, say). The `i`-th region
    /// added is at [`Vm::read_only_region_address`]`(i)`.
    pub fn read_only_region(mut self, bytes: impl Into<Arc<[u8]>>) -> VmBuilder {
        self.read_only_regions.push(bytes.into());
        self
    }

    /// Replaces the verifier's configuration (unreachable code as an error, a shorter maximum
    /// length, …). Its `helpers`, `max_call_depth` and `entry` are always taken from this
    /// builder.
    pub fn verifier_config(mut self, config: VerifierConfig) -> VmBuilder {
        self.verifier_config = Some(config);
        self
    }

    /// Adds an embedder's own check, run after the built-in ones at load time.
    pub fn policy(mut self, policy: impl Policy + 'static) -> VmBuilder {
        self.policies.push(SharedPolicy(Arc::new(policy)));
        self
    }

    /// Spectre v1 masking in the JITs' code, on or off for both JITs (default: each JIT's
    /// own: on for both — about 1% on the x86 JIT, about 2% on the Cranelift JIT;
    /// docs/security.md). A bounds check is a branch, which the CPU may
    /// mispredict and run the access anyway, speculatively, with an address the check
    /// refused — reading memory outside every region into the cache, where timing can
    /// recover it. With masking, the address of every access checked at run time is forced to
    /// 0 by a conditional move on the check's result, so even speculation never uses it. Turn
    /// it on for programs you do not trust. No effect on the interpreter, nor on results.
    pub fn spectre_masking(mut self, on: bool) -> VmBuilder {
        self.hardening.spectre_masking = Some(on);
        self
    }

    /// With Spectre masking on, also clamp — without a branch — the accesses the JITs' facts
    /// prove in bounds through a branch of the program's own (a guard `if (p + 14 >
    /// end) return`, a loop bound `i < n`, a versioned loop's dispatcher), which otherwise run
    /// unchecked: on the path a mispredicted guard leads to, the CPU would run such an access
    /// with the value the guard excluded. Accesses proven without a branch (frame slots,
    /// masked indices) need nothing. Both JITs (with their masking, on by default:
    /// [`VmBuilder::spectre_masking`]). Default: off — it costs 12–16% on the
    /// engines bench with the x86 JIT (docs/security.md). No effect on the interpreter, nor
    /// on results.
    pub fn spectre_clamp_proven(mut self, on: bool) -> VmBuilder {
        self.hardening.spectre_clamp_proven = on;
        self
    }

    /// Shares compiled code through `cache` instead of the process-wide
    /// [`CodeCache::global`](crate::CodeCache::global) (the default): a load whose program,
    /// options and target match code that `cache` holds, and that some loaded program still
    /// uses, takes that code instead of compiling. Applies to the Cranelift engine and the
    /// tiered engine's Cranelift tier (docs/jit-cranelift.md, "Compile time").
    pub fn code_cache(mut self, cache: crate::CodeCache) -> VmBuilder {
        self.code_cache = crate::cache::CacheChoice::Own(cache);
        self
    }

    /// Compiles every load afresh, sharing no code with other loads (see
    /// [`VmBuilder::code_cache`]).
    pub fn no_code_cache(mut self) -> VmBuilder {
        self.code_cache = crate::cache::CacheChoice::Off;
        self
    }

    /// Accepts programs that can loop even without an instruction budget (by default such a
    /// program is refused with [`LoadError::NeedsBudget`]).
    pub fn allow_unbounded(mut self) -> VmBuilder {
        self.verification = Verification::AllowUnbounded;
        self
    }

    /// Loads without running the verifier. Every engine is memory-safe on any program, so
    /// this is safe; it is for harnesses that must run programs a verifier would reject (to
    /// test engines' traps, say). Prefer verification everywhere else.
    pub fn unverified(mut self) -> VmBuilder {
        self.verification = Verification::Skip;
        self
    }

    /// Loads bytecode. Unless [`unverified`](VmBuilder::unverified), the verifier reports every
    /// problem (including every undecodable slot) in [`LoadError::Rejected`] — except in code
    /// it proves never runs, where an undecodable slot is a warning ([`Vm::warnings`]) and is
    /// compiled as a trap, as the Linux kernel loads such programs. Unverified, every slot must
    /// decode.
    pub fn load(self, bytes: &[u8]) -> Result<Vm, LoadError> {
        self.check_config()?;
        check_size(bytes.len().div_ceil(ebpf_isa::SLOT_SIZE))?;
        if matches!(self.verification, Verification::Skip) {
            let program = ebpf_isa::decode(bytes)?;
            return self.load_program(program);
        }
        let verified = self
            .verifier()
            .verify_bytes(bytes)
            .map_err(LoadError::Rejected)?;
        self.finish(verified.program().clone(), Some(verified))
    }

    /// Loads a program from a BPF ELF object as clang emits it (`clang -target bpf -c`),
    /// chosen by `selector` (`Selector::Only` when the object has one program). Its
    /// `.rodata*` become the read-only data region and its `.data*`/`.bss*` the writable data
    /// region, which every run of the VM shares ([`Vm::global_data`]): globals persist from
    /// run to run, as in the kernel. With [`VmBuilder::kernel_helpers`], the object's global
    /// data sections are maps of their own instead, as [`VmBuilder::load_object`] makes them.
    #[cfg(feature = "elf")]
    pub fn load_elf(
        mut self,
        bytes: &[u8],
        selector: ebpf_elf::Selector<'_>,
    ) -> Result<Vm, LoadError> {
        self.check_config()?;
        let object = ebpf_elf::ElfObject::parse(bytes).map_err(LoadError::Elf)?;
        // With kernel helpers, the selected program's kind decides how it loads (its
        // context, its maps); a selector that chooses none or several fails here as it
        // would in `load`.
        let info = match self.kernel {
            Some(_) => Some(object.selected(selector).map_err(LoadError::Elf)?),
            None => None,
        };
        let info = info.as_ref();
        let kind = info.and_then(|p| crate::ProgramKind::from_section(&p.section));
        // The program type first: what a kprobe also lacks (its externs, its kfuncs) is
        // beside the point.
        if let Some(info) = info
            && kind.is_none()
            && let Some(program_type) = crate::kernel::context::program_type_of(&info.section)
        {
            return Err(LoadError::UnsupportedProgramType {
                section: info.section.clone(),
                program_type,
            });
        }
        let loaded = object.load(selector).map_err(LoadError::Elf)?;
        if let (Some(info), Some(kind)) = (info, kind) {
            let name = info.name.clone();
            let (builder, shared, _) = self.create_maps(&object, &[name.as_str()])?;
            let vm = builder.load_kernel_program(&object, selector, kind, &shared)?;
            crate::object::link(&shared, std::iter::once(&vm));
            return Ok(vm);
        }
        let mut maps: Vec<String> = loaded
            .program
            .iter()
            .filter_map(|(_, insn)| match insn {
                ebpf_isa::Insn::LoadImm64 {
                    kind: ebpf_isa::Imm64Kind::MapFd,
                    imm,
                    ..
                } => Some(
                    loaded
                        .maps
                        .get(*imm as usize)
                        .map_or_else(|| format!("#{imm}"), |m| m.name.clone()),
                ),
                _ => None,
            })
            .collect();
        if !maps.is_empty() {
            maps.sort();
            maps.dedup();
            return Err(LoadError::UsesMaps { maps });
        }
        self.set_images(loaded.rodata, loaded.data)?;
        self.load_program(loaded.program)
    }

    /// An ELF object's data images: read-only, and the initial writable data (the value of
    /// the `.data` map the VM's runs share; [`Vm::global_data`]).
    #[cfg(feature = "elf")]
    pub(crate) fn set_images(&mut self, rodata: Vec<u8>, data: Vec<u8>) -> Result<(), LoadError> {
        let data = if data.is_empty() {
            None
        } else {
            let map_error = |error| LoadError::Map {
                name: ".data".to_string(),
                error,
            };
            let size = u32::try_from(data.len()).map_err(|_| {
                map_error(ebpf_maps::MapError::TooLarge {
                    bytes: data.len() as u64,
                })
            })?;
            let spec = ebpf_maps::MapSpec::new(ebpf_maps::MapType::Array, 4, size, 1);
            let map = ebpf_maps::Map::new(".data", spec, 1).map_err(map_error)?;
            crate::object::fill_global_data(&map, &data)?;
            Some(Arc::new(map))
        };
        self.images = Images {
            rodata: (!rodata.is_empty()).then(|| rodata.into()),
            data,
        };
        Ok(())
    }

    /// Assembles and loads text in the bpf_conformance syntax.
    pub fn load_asm(self, text: &str) -> Result<Vm, LoadError> {
        let program = ebpf_isa::assemble(text)?;
        self.load_program(program)
    }

    /// Loads an already decoded program (verifying it unless
    /// [`unverified`](VmBuilder::unverified)).
    pub fn load_program(self, program: Program) -> Result<Vm, LoadError> {
        self.check_config()?;
        check_size(program.slot_count())?;
        if matches!(self.verification, Verification::Skip) {
            return self.finish(program, None);
        }
        let verified = self
            .verifier()
            .verify(program)
            .map_err(LoadError::Rejected)?;
        self.finish(verified.program().clone(), Some(verified))
    }

    /// Rejects configurations the address space cannot hold.
    pub(crate) fn check_config(&self) -> Result<(), LoadError> {
        if self.limits.max_call_depth > ebpf_abi::MAX_CALL_DEPTH {
            return Err(LoadError::InvalidConfig(format!(
                "max_call_depth {} exceeds the supported {}",
                self.limits.max_call_depth,
                ebpf_abi::MAX_CALL_DEPTH
            )));
        }
        if let Some(m) = self.metadata {
            if m.len > layout::OFFSET_MASK as usize {
                return Err(LoadError::InvalidConfig(format!(
                    "metadata length {} does not fit a 4 GiB region",
                    m.len
                )));
            }
            for (name, off) in [
                ("data_offset", m.data_offset),
                ("data_end_offset", m.data_end_offset),
            ] {
                if off.checked_add(8).is_none_or(|end| end > m.len) {
                    return Err(LoadError::InvalidConfig(format!(
                        "metadata {name} {off} leaves no room for 8 bytes in {} bytes",
                        m.len
                    )));
                }
            }
        }
        for (i, region) in self.read_only_regions.iter().enumerate() {
            if region.len() as u64 > layout::MAX_REGION_LEN {
                return Err(LoadError::InvalidConfig(format!(
                    "read-only region {i} is {} bytes; a region holds at most {} bytes (4 GiB)",
                    region.len(),
                    layout::MAX_REGION_LEN
                )));
            }
        }
        let extra = self.read_only_regions.len() as u64 + self.map_regions;
        if layout::FIRST_EXTRA + extra > layout::MAX_REGION + 1 {
            return Err(LoadError::InvalidConfig(format!(
                "too many regions ({extra})"
            )));
        }
        Ok(())
    }

    /// What every run of this VM holds at entry, for the facts that let engines drop checks
    /// (the entry the verifier proves its facts from and the engines compile for): `r1`/`r2`
    /// as [`VmBuilder::run_with`] sets them, the images' and read-only regions' lengths. A
    /// program with a kernel context gets the packet `Vm::run_packet` lays out: `data` after
    /// the headroom, `data_end` anywhere up to the buffer's end, so that its guards prove its
    /// accesses. Runs that break it (no input, a caller's metadata buffer without the
    /// addresses, a socket filter's packet shorter than its Ethernet header) are still
    /// correct: engines check `Entry::admits` and fall back.
    fn entry(&self) -> Entry {
        let entry = match self.metadata {
            None => Entry::input(),
            Some(m) => match (
                u32::try_from(m.data_offset),
                u32::try_from(m.data_end_offset),
            ) {
                (Ok(data), Ok(data_end)) => Entry::metadata(MetadataFields {
                    data,
                    data_end,
                    packet: self.packet_offset,
                }),
                _ => Entry::unknown(),
            },
        };
        let entry = self.with_fixed_regions(entry);
        // An object's lookups return NULL or a whole value in the map's region.
        let maps: Vec<_> = (self.map_lookup.iter())
            .flat_map(|l| &l.maps)
            .filter_map(|m| m.region)
            .collect();
        match &self.map_lookup {
            Some(l) if !maps.is_empty() => entry.with_lookup(MapLookup {
                helper: l.helper,
                maps,
            }),
            _ => entry,
        }
    }

    /// `entry` with what every run holds in the fixed regions: the object's images and the
    /// read-only regions.
    fn with_fixed_regions(&self, mut entry: Entry) -> Entry {
        let fixed = |len: usize, writable: bool| RegionSpec::Fixed {
            len: len as u64,
            writable,
        };
        if let Some(rodata) = &self.images.rodata {
            entry = entry.with_region(layout::RODATA as u8, fixed(rodata.len(), false));
        }
        if let Some(data) = &self.images.data {
            let len = data.spec().value_size as usize;
            entry = entry.with_region(layout::DATA as u8, fixed(len, true));
        }
        for (i, region) in self.read_only_regions.iter().enumerate() {
            let id = layout::FIRST_EXTRA + i as u64;
            entry = entry.with_region(id as u8, fixed(region.len(), false));
        }
        entry
    }

    fn verifier(&self) -> Verifier {
        let mut config = self.verifier_config.clone().unwrap_or_default();
        config.helpers = Some(self.helpers.ids().collect());
        config.max_call_depth = self.limits.max_call_depth;
        config.entry = self.entry();
        if self.map_lookup.is_some() {
            config.map_lookup.clone_from(&self.map_lookup);
        }
        let mut verifier = Verifier::new(config);
        for policy in &self.policies {
            verifier = verifier.with_policy(policy.clone());
        }
        verifier
    }

    fn finish(
        self,
        program: Program,
        verified: Option<ebpf_verifier::VerifiedProgram>,
    ) -> Result<Vm, LoadError> {
        let termination = verified.as_ref().map(|v| v.termination());
        let unbounded = termination == Some(Termination::Looping) && self.limits.budget.is_none();
        if unbounded && matches!(self.verification, Verification::Verify) {
            return Err(LoadError::NeedsBudget);
        }
        // The verifier's facts are proven from `entry()`, which the engine compiles for.
        let facts = verified.as_ref().map(|v| v.facts());
        let entry = self.entry();
        let (compiled, progress) = engine::prepare(
            self.engine,
            &program,
            &entry,
            facts,
            self.hardening,
            self.code_cache.cache().as_ref(),
        )?;
        // A kernel-context run checks the facts' entry itself, to scrub only what its stores
        // can reach when they hold (`Vm::run_packet`).
        #[cfg(feature = "elf")]
        let admitted_reach = facts.filter(|_| self.packet_offset.is_some()).map(|f| {
            let reach = crate::scrub::admitted_stack_reach(&program, &self.limits, f);
            (reach, f.entry().admission())
        });
        let (warnings, undecodable) = verified
            .map(|v| (v.warnings().to_vec(), v.undecodable().to_vec()))
            .unwrap_or_default();
        let stack_reach = crate::scrub::stack_reach(&program, &self.limits);
        // A helper-calling program's runs scrub what its own stores reach and what its helpers
        // wrote (`Vm::scrub_reach`), when that can be less than the whole stack.
        let own_stack_reach = Some(crate::scrub::own_stack_reach(&program, &self.limits))
            .filter(|&own| own < stack_reach);
        Ok(Vm {
            program,
            entry,
            compiled,
            progress,
            #[cfg(feature = "elf")]
            kernel: None,
            #[cfg(feature = "elf")]
            admitted_reach,
            map_regions: self.map_regions,
            stack_reach,
            own_stack_reach,
            bound: Arc::new(Bound {
                helpers: self.helpers,
                limits: self.limits,
                read_only_regions: self.read_only_regions,
                images: self.images,
            }),
            identity: Arc::new(()),
            metadata: self.metadata,
            engine: self.engine,
            termination,
            warnings,
            undecodable,
        })
    }
}

/// A loaded program with its configuration. `Send + Sync`: share it (`Arc<Vm>` or `&Vm`)
/// and run it from many threads at once, each run with its own [`Input`].
#[derive(Debug)]
pub struct Vm {
    program: Program,
    /// What the engine's facts assume at entry.
    entry: Entry,
    /// The program as the engine prepared it (shared with an object's tail calls).
    pub(crate) compiled: Arc<dyn Executable>,
    /// Whether `compiled` has reached its final code (the tiered engine's switch).
    progress: engine::Progress,
    /// The object it came from, for programs with a kernel context.
    #[cfg(feature = "elf")]
    pub(crate) kernel: Option<crate::object::KernelProgram>,
    /// For a program with a kernel context and facts: what its own stores can reach on the
    /// stack in a run its facts' entry admits, and that entry's admission
    /// (`scrub::admitted_stack_reach`).
    #[cfg(feature = "elf")]
    pub(crate) admitted_reach: Option<(usize, ebpf_cfg::facts::Admission)>,
    /// Region ids its object's maps take after the read-only regions.
    map_regions: u64,
    /// The bytes at the top of the stack a run can write, zeroed after each run
    /// (`scrub::stack_reach`).
    pub(crate) stack_reach: usize,
    /// What the program's own stores can reach (`scrub::own_stack_reach`), when it is less
    /// than `stack_reach` (the program calls helpers): a run then scrubs that and what its
    /// helpers wrote (`Vm::scrub_reach`).
    pub(crate) own_stack_reach: Option<usize>,
    /// Its helpers, limits and shared regions: what its sessions are bound to (and keep alive,
    /// wherever they are kept: `Vm::run`'s per-thread ones outlive a dropped `Vm` until the
    /// thread evicts them).
    pub(crate) bound: Arc<Bound>,
    /// What `Vm::run`'s per-thread sessions know this VM by (`runner::Warm`): only the `Vm`
    /// holds it strongly, so a session whose VM is gone sees it dead.
    pub(crate) identity: Arc<()>,
    pub(crate) metadata: Option<MetadataLayout>,
    engine: Engine,
    termination: Option<Termination>,
    warnings: Vec<Finding>,
    /// Slots whose bytes did not decode, in code the verifier proved never runs; the engines
    /// hold a trapping stand-in there (see `VerifiedProgram::undecodable`).
    pub(crate) undecodable: Vec<usize>,
}

/// What a [`Vm`]'s sessions are bound to ([`ebpf_abi::Binding`]): its helpers and limits and
/// the regions every run shares, immutable once loaded (behind an `Arc`, so that a session,
/// which keeps one, owns what it uses).
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) helpers: Helpers,
    pub(crate) limits: Limits,
    pub(crate) read_only_regions: Vec<Arc<[u8]>>,
    pub(crate) images: Images,
}

impl ebpf_abi::Binding for Bound {
    fn helpers(&self) -> &Helpers {
        &self.helpers
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The ELF images and the read-only regions; the same regions on every call (their
    /// bytes are `Arc`s the VM never changes; `.data`'s are shared map memory).
    fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>) {
        map_data_regions(map, &self.images, &self.read_only_regions);
    }
}

/// How many regions an [`Input`] holds without allocating.
const INLINE_INPUT_REGIONS: usize = 2;

/// The memory of one run: the input, optionally a metadata buffer, and extra regions. Building
/// one allocates nothing unless it has more than two extra regions.
#[derive(Debug, Default)]
pub struct Input<'a> {
    pub(crate) data: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
    /// The first extra regions.
    regions: [Option<Region<'a>>; INLINE_INPUT_REGIONS],
    /// The extra regions after those.
    more_regions: Vec<Region<'a>>,
}

impl<'a> Input<'a> {
    /// An input buffer (writable by the program): `r1` is its address, `r2` its length.
    pub fn new(data: &'a mut [u8]) -> Input<'a> {
        Input {
            data: Some(data),
            ..Input::default()
        }
    }

    /// No input at all: `r1` and `r2` are 0, and the input region is unmapped.
    pub fn none() -> Input<'a> {
        Input::default()
    }

    /// Uses the caller's metadata buffer: `r1` points to it and `r2` is its length. If the VM
    /// has a [`MetadataLayout`], the input's addresses are written into it first.
    pub fn metadata(mut self, buffer: &'a mut [u8]) -> Input<'a> {
        self.metadata = Some(buffer);
        self
    }

    /// Adds a writable region for this run; the `i`-th one added (after the VM's read-only
    /// regions) is at [`Vm::run_region_address`]`(i)`.
    pub fn region_mut(self, bytes: &'a mut [u8]) -> Input<'a> {
        self.with_region(Region::Writable(bytes))
    }

    /// Adds a read-only region for this run.
    pub fn region(self, bytes: &'a [u8]) -> Input<'a> {
        self.with_region(Region::ReadOnly(bytes))
    }

    /// Adds a writable region that other runs and the host may use at the same time (map
    /// values: see [`ebpf_abi::SharedMemory`]); numbered like [`Input::region_mut`].
    pub fn region_shared(self, memory: ebpf_abi::SharedMemory<'a>) -> Input<'a> {
        self.with_region(Region::Shared(memory))
    }

    /// The input's data and metadata buffer (each or neither), when it has no extra region;
    /// else the input.
    #[inline(always)]
    pub(crate) fn into_buffers(self) -> Result<Buffers<'a>, Input<'a>> {
        if self.regions[0].is_some() || !self.more_regions.is_empty() {
            return Err(self);
        }
        Ok((self.data, self.metadata))
    }

    /// The input of [`Input::into_buffers`].
    pub(crate) fn of_buffers((data, metadata): Buffers<'a>) -> Input<'a> {
        Input {
            data,
            metadata,
            ..Input::default()
        }
    }

    fn with_region(mut self, region: Region<'a>) -> Input<'a> {
        match self.regions.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) if self.more_regions.is_empty() => *slot = Some(region),
            _ => self.more_regions.push(region),
        }
        self
    }
}

/// An input's data and metadata buffer, without extra regions ([`Input::into_buffers`]).
pub(crate) type Buffers<'a> = (Option<&'a mut [u8]>, Option<&'a mut [u8]>);

/// What runs on a thread reuse instead of allocating: the stack, and the buffer behind the
/// VM's own metadata buffer. A run takes it and puts it back when
/// it returns (a run from inside a helper finds none and makes its own; a run that panics out
/// drops it, so a stack a run may have dirtied is never lent again).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) stack: Stack,
    pub(crate) metadata: Vec<u8>,
    /// The kernel helpers' per-run state (for programs of objects, which come from ELF).
    #[cfg(feature = "elf")]
    pub(crate) kernel: crate::kernel::RunState,
    /// The allocation of a run's region ids above the map's inline ones (many maps, many
    /// extra regions), kept empty for the next run.
    pub(crate) spill: ebpf_abi::MapSpill,
}

/// The largest stack buffer a thread keeps for its next run (deeper call limits than this
/// allows allocate their stack per run).
pub(crate) const KEPT_STACK: usize = 1 << 20;

std::thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

impl Scratch {
    #[inline]
    pub(crate) fn take() -> Box<Scratch> {
        SCRATCH
            .try_with(std::cell::Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    #[inline]
    pub(crate) fn put_back(self: Box<Scratch>) {
        if self.stack.size() <= KEPT_STACK {
            // During thread teardown there is nowhere to keep it: drop it.
            let _ = SCRATCH.try_with(|s| s.set(Some(self)));
        }
    }
}

/// Drops this thread's preparations of the VM for `Vm::run` (other threads find theirs dead
/// and evict them when they need the slot).
impl Drop for Vm {
    fn drop(&mut self) {
        Warm::evict(&self.identity);
    }
}

impl Vm {
    /// A builder with the defaults: interpreter, no helpers, no budget, call depth 8.
    pub fn builder() -> VmBuilder {
        VmBuilder::default()
    }

    /// The loaded program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// What the facts the engine compiled with assume at entry (what every run is checked
    /// against before it runs that code): for tools, `Facts::analyse(vm.program(),
    /// vm.facts_entry())` shows which accesses run unchecked.
    pub fn facts_entry(&self) -> &Entry {
        &self.entry
    }

    /// The engine that runs it.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether runs that start now run the program's final code: always, except on
    /// [`Engine::Tiered`] until its Cranelift code has taken over from the first tier (never,
    /// there, if that compile failed: the first tier keeps running, with the same results).
    /// For monitoring, and for measuring a tiered VM in its steady state.
    pub fn optimised(&self) -> bool {
        self.progress.optimised()
    }

    /// Why [`Vm::optimised`] will never become true: on [`Engine::Tiered`], the background
    /// compile's error once it has failed (a bad `EBPF_JIT_ISA_FLAGS`, say), or a compiler
    /// thread that could not start; `None` otherwise, and on every other engine. The VM
    /// runs on, on its first tier, with the same results.
    pub fn tier_up_failure(&self) -> Option<&str> {
        self.progress.failure()
    }

    /// Bytes of machine code the engine generated for the program (0 for the interpreter).
    pub fn code_size(&self) -> usize {
        self.compiled.code_size()
    }

    /// The limits runs are held to.
    pub fn limits(&self) -> Limits {
        self.bound.limits
    }

    /// How the verifier classified the program (`None` if it was loaded unverified).
    pub fn termination(&self) -> Option<Termination> {
        self.termination
    }

    /// The verifier's warnings (findings that did not reject the program).
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }

    /// The globals of a program loaded from an ELF object without kernel helpers
    /// ([`VmBuilder::load_elf`]): its `.data*` and `.bss*` sections, one after the other as
    /// the writable data region holds them, as the value (key `0u32`) of a one-element array
    /// map. Every run of this VM reads and writes these bytes in place, so globals persist
    /// from run to run, as in the kernel; the host reads and writes them with
    /// [`Map::lookup`](crate::maps::Map::lookup) and [`Map::update`](crate::maps::Map::update)
    /// while programs run. `None` when the object has no writable globals. (Programs loaded
    /// with kernel helpers have the kernel's maps instead: [`Object::map`](crate::Object::map)
    /// `(".bss")`.)
    pub fn global_data(&self) -> Option<&ebpf_maps::Map> {
        self.bound.images.data.as_deref()
    }

    /// The VM address of the `i`-th [read-only region](VmBuilder::read_only_region).
    pub fn read_only_region_address(&self, i: usize) -> u64 {
        layout::vm_addr(layout::FIRST_EXTRA + i as u64, 0)
    }

    /// The VM address of the `i`-th region an [`Input`] adds.
    pub fn run_region_address(&self, i: usize) -> u64 {
        self.read_only_region_address(
            self.bound.read_only_regions.len() + self.map_regions as usize + i,
        )
    }

    /// Runs the program on `data` (writable; `r1` = its address, `r2` = its length, or the
    /// metadata buffer if the VM has a layout) and returns `r0`.
    ///
    /// The first run of a VM on a thread prepares it for that thread (as [`Vm::runner`] does,
    /// kept in a small per-thread cache), so later runs cost about what a runner's do.
    #[inline]
    pub fn run(&self, data: &mut [u8]) -> Result<u64, Trap> {
        Warm::run(
            self,
            data,
            |prepared, data| prepared.run::<UNBRACKETED>(self, data),
            |data| self.run_unprepared(Input::new(data)).map(|exit| exit.r0),
        )
    }

    /// Runs the program without any input (rbpf's `EbpfVmNoData`) and returns `r0`.
    pub fn run_no_data(&self) -> Result<u64, Trap> {
        Warm::run(
            self,
            (),
            |prepared, ()| prepared.run_no_data::<UNBRACKETED>(self),
            |()| self.run_unprepared(Input::none()).map(|exit| exit.r0),
        )
    }

    /// Runs the program on `input`; returns `r0` and the instruction count.
    ///
    /// Each region holds at most 4 GiB ([`layout::MAX_REGION_LEN`]): an input, metadata
    /// buffer or region longer than that is refused with [`TrapKind::RegionTooLarge`] at pc 0
    /// before anything runs.
    pub fn run_with(&self, input: Input<'_>) -> Result<Exit, Trap> {
        // (Without extra regions, the two buffers alone go on: the whole `Input` moved through
        // the thread's cache cost a run some 80 host instructions.)
        match input.into_buffers() {
            Ok(buffers) => Warm::run(
                self,
                buffers,
                |prepared, buffers| prepared.run_buffers_with::<UNBRACKETED>(self, buffers),
                |buffers| self.run_unprepared(Input::of_buffers(buffers)),
            ),
            Err(input) => Warm::run(
                self,
                input,
                |prepared, input| prepared.run_with::<UNBRACKETED>(self, input),
                |input| self.run_unprepared(input),
            ),
        }
    }

    /// [`Vm::run_with`] without a preparation (the thread keeps as many as it can already,
    /// or is being torn down): a map of every region on the thread's scratch, and the
    /// engine's `run_in`.
    #[cold]
    #[inline(never)]
    fn run_unprepared(&self, input: Input<'_>) -> Result<Exit, Trap> {
        let mut scratch = Scratch::take();
        let result = self.run_mapped(input, &mut scratch, |map, args, stack| {
            self.compiled
                .run_in(map, args, &self.bound.helpers, &self.bound.limits, stack)
        });
        scratch.put_back();
        result
    }

    /// Runs the program on `input` on the interpreter, whatever the VM's engine, and reports
    /// every executed instruction to `observer`: its pc, the instruction, the registers
    /// before and after, the memory it read or wrote, the helper it called (see [`Step`](crate::Step)).
    ///
    /// It returns what [`Vm::run_with`] returns on every engine — the same `r0` and
    /// instruction count, or the same trap — and leaves memory the same; an instruction that
    /// traps is not reported (the trap names its pc). A traced run executes in the
    /// interpreter's precise loop, one instruction at a time, so it is about ten times slower
    /// than an untraced interpreter run before the observer does any work; untraced runs pay
    /// nothing for it (docs/trace.md). A closure is an
    /// observer, and a `Vec<Step>` collects the whole trace:
    ///
    /// ```
    /// use ebpf_vm::{Input, Step, Vm};
    ///
    /// let vm = Vm::builder().load_asm("mov %r0, 6\nmul %r0, 7\nexit")?;
    /// let mut trace: Vec<Step> = Vec::new();
    /// let exit = vm.run_traced(Input::none(), &mut trace)?;
    /// assert_eq!(exit.r0, 42);
    /// assert_eq!(trace.len(), 3);
    /// assert_eq!(trace[1].changed().collect::<Vec<_>>(), [(0, 6, 42)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_traced(&self, input: Input<'_>, observer: &mut dyn Observer) -> Result<Exit, Trap> {
        let interpreter = Interpreter::new(&self.program);
        let mut scratch = Scratch::take();
        // The traced run takes a fresh stack of its own; the thread's stays untouched.
        let result = self.run_mapped(input, &mut scratch, |map, args, _| {
            interpreter.run_traced(
                std::mem::take(map),
                args,
                &self.bound.helpers,
                &self.bound.limits,
                observer,
            )
        });
        scratch.put_back();
        result
    }

    /// Maps `input`, the VM's images and regions into the run's memory (on this thread's
    /// scratch buffers), picks `r1` and `r2`, and runs `run` on them with the scratch stack:
    /// the stack is all zero when the run starts, and is again when it returns (the bytes it
    /// can have written are scrubbed).
    pub(crate) fn run_mapped(
        &self,
        input: Input<'_>,
        scratch: &mut Scratch,
        run: impl for<'m> FnOnce(&mut MemoryMap<'m>, [u64; 2], &'m mut Stack) -> Result<Exit, Trap>,
    ) -> Result<Exit, Trap> {
        let Input {
            data,
            metadata,
            regions,
            more_regions,
        } = input;
        if let Some(bytes) = &data {
            check_region_len(layout::INPUT, bytes.len())?;
        }
        if let Some(bytes) = &metadata {
            check_region_len(layout::METADATA, bytes.len())?;
        }
        let Scratch {
            stack,
            metadata: owned_metadata,
            spill,
            ..
        } = scratch;
        let mut map = MemoryMap::with_spill(core::mem::take(spill));
        if regions[0].is_some() || !more_regions.is_empty() {
            self.map_run_regions(&mut map, regions, more_regions)?;
        }
        self.map_fixed_regions(&mut map);
        // (`start + len`, not `vm_addr(INPUT, len)`: a 4 GiB input ends at the next window.)
        let (data_start, data_end) = match &data {
            Some(d) => {
                let start = layout::vm_addr(layout::INPUT, 0);
                (start, start + d.len() as u64)
            }
            None => (0, 0),
        };
        let data_len = data.as_ref().map_or(0, |d| d.len() as u64);
        if let Some(d) = data {
            map.insert(layout::INPUT, Region::Writable(d));
        }
        let metadata = match (metadata, self.metadata) {
            (Some(buffer), _) => Some(buffer),
            (None, Some(m)) => {
                // A fresh zeroed buffer for every run.
                owned_metadata.clear();
                owned_metadata.resize(m.len, 0);
                Some(owned_metadata.as_mut_slice())
            }
            (None, None) => None,
        };
        let args = match metadata {
            Some(buffer) => {
                if let Some(m) = self.metadata {
                    write_address(buffer, m.data_offset, data_start)?;
                    write_address(buffer, m.data_end_offset, data_end)?;
                }
                let len = buffer.len() as u64;
                map.insert(layout::METADATA, Region::Writable(buffer));
                [layout::vm_addr(layout::METADATA, 0), len]
            }
            None => [data_start, data_len],
        };
        stack.begin_run();
        let result =
            run(&mut map, args, stack).map_err(|trap| undecodable_trap(trap, &self.undecodable));
        let stack_size = usize::try_from(self.bound.limits.stack_size()).unwrap_or(usize::MAX);
        let reach = self.scrub_reach(stack_size, || map.lowest_stack_write());
        *spill = map.into_spill();
        stack.end_run(stack_size, reach);
        result
    }

    /// The bytes at the top of a stack of `stack_size` bytes (the limits') that a run can have
    /// written, to be scrubbed after it: `stack_reach`, or for a program that calls helpers,
    /// what its own stores reach and what its helpers wrote, which `helper_mark` gives
    /// (`MemoryMap::lowest_stack_write` of the run's map; called only for such a program).
    /// Helpers reach the VM's memory only through `VmMemory`, whose writes set the mark.
    #[inline(always)]
    pub(crate) fn scrub_reach(
        &self,
        stack_size: usize,
        helper_mark: impl FnOnce() -> Option<u64>,
    ) -> usize {
        match self.own_stack_reach {
            None => self.stack_reach,
            Some(own) => crate::scrub::with_helper_mark(own, stack_size, helper_mark()),
        }
    }
}

impl Vm {
    /// Maps the extra regions of a run's [`Input`] after the VM's own (refusing any longer
    /// than a region holds).
    #[inline(never)]
    fn map_run_regions<'a>(
        &self,
        map: &mut MemoryMap<'a>,
        regions: [Option<Region<'a>>; INLINE_INPUT_REGIONS],
        more_regions: Vec<Region<'a>>,
    ) -> Result<(), Trap> {
        let first_run_region =
            layout::FIRST_EXTRA + self.bound.read_only_regions.len() as u64 + self.map_regions;
        let ids = first_run_region..;
        for (id, region) in ids
            .clone()
            .zip(regions.iter().flatten().chain(&more_regions))
        {
            check_region_len(id, region.len())?;
        }
        for (id, region) in ids.zip(regions.into_iter().flatten().chain(more_regions)) {
            map.insert(id, region);
        }
        Ok(())
    }

    /// A run's memory with the regions every run of this VM has: the ELF images and the
    /// read-only regions. `map` is a new one (on the thread's [`MapSpill`]); it is filled in
    /// place, not returned (a move copies a few hundred bytes).
    #[inline]
    pub(crate) fn map_fixed_regions<'a>(&'a self, map: &mut MemoryMap<'a>) {
        map_data_regions(map, &self.bound.images, &self.bound.read_only_regions);
    }
}

/// Maps the regions of a program's data into `map`, in place: its read-only image, its
/// globals (the `.data` map's value, shared with every other run: nothing is copied), and
/// the embedder's read-only regions.
#[inline(always)]
pub(crate) fn map_data_regions<'a>(
    map: &mut MemoryMap<'a>,
    images: &'a Images,
    read_only_regions: &'a [Arc<[u8]>],
) {
    if let Some(rodata) = &images.rodata {
        map.insert(layout::RODATA, Region::ReadOnly(rodata));
    }
    if let Some(values) = images.data.as_deref().and_then(|m| m.values(0)) {
        map.insert(layout::DATA, Region::Shared(values));
    }
    for (i, region) in read_only_regions.iter().enumerate() {
        map.insert(layout::FIRST_EXTRA + i as u64, Region::ReadOnly(region));
    }
}

/// A trap at the stand-in for a slot that did not decode says so, whichever engine ran it (the
/// engines see only the stand-in, a call they do not run).
pub(crate) fn undecodable_trap(trap: Trap, undecodable: &[usize]) -> Trap {
    match trap.kind {
        TrapKind::InvalidInstruction { .. } if undecodable.binary_search(&trap.pc).is_ok() => {
            Trap {
                pc: trap.pc,
                kind: TrapKind::InvalidInstruction {
                    reason: ebpf_abi::InvalidReason::Undecodable,
                },
            }
        }
        _ => trap,
    }
}

/// Refuses a run region longer than a region's 4 GiB window, before anything runs.
fn check_region_len(region: u64, len: usize) -> Result<(), Trap> {
    if len as u64 > layout::MAX_REGION_LEN {
        return Err(Trap {
            pc: 0,
            kind: TrapKind::RegionTooLarge {
                region,
                len: len as u64,
            },
        });
    }
    Ok(())
}

/// Refuses programs longer than [`ebpf_abi::MAX_PROGRAM_SLOTS`].
fn check_size(slots: usize) -> Result<(), LoadError> {
    if slots > ebpf_abi::MAX_PROGRAM_SLOTS {
        return Err(LoadError::TooLarge { slots });
    }
    Ok(())
}

/// Stores a VM address into a caller's metadata buffer; a buffer too short for the
/// configured layout is an out-of-bounds write (reported at pc 0, before anything runs).
fn write_address(buffer: &mut [u8], offset: usize, value: u64) -> Result<(), Trap> {
    let slot = offset
        .checked_add(8)
        .and_then(|end| buffer.get_mut(offset..end));
    match slot {
        Some(slot) => {
            slot.copy_from_slice(&value.to_le_bytes());
            Ok(())
        }
        None => Err(Trap {
            pc: 0,
            kind: TrapKind::OutOfBounds {
                addr: layout::vm_addr(layout::METADATA, offset as u64),
                len: 8,
                write: true,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn vm_is_send_and_sync() {
        assert_send_sync::<Vm>();
    }

    #[test]
    fn traps_at_stand_ins_are_undecodable_instructions() {
        use ebpf_abi::InvalidReason;
        let invalid = |pc, reason| Trap {
            pc,
            kind: TrapKind::InvalidInstruction { reason },
        };
        let stand_ins = [3, 4, 9];
        assert_eq!(
            undecodable_trap(invalid(4, InvalidReason::UnsupportedCall), &stand_ins),
            invalid(4, InvalidReason::Undecodable)
        );
        // Elsewhere, and other traps, stay as they are.
        let elsewhere = invalid(5, InvalidReason::UnsupportedCall);
        assert_eq!(undecodable_trap(elsewhere.clone(), &stand_ins), elsewhere);
        let budget = Trap {
            pc: 3,
            kind: TrapKind::BudgetExhausted { budget: 10 },
        };
        assert_eq!(undecodable_trap(budget.clone(), &stand_ins), budget);
    }
}
