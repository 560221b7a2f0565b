//! Our side of the corpus set: one [`Side`] per engine of `Engine::ALL`, each an
//! `ebpf_vm::Object` (the facade's object API: every program of the object sharing one set of
//! maps, kernel helpers by kernel id, XDP and socket-filter contexts).
//!
//! The maps have one CPU (`KernelHelpers::cpus(1)`), so each per-CPU value has one copy, which
//! is compared with the kernel's copy of the CPU the set is pinned to (see `corpus.rs`).
//! `ktime_get_ns` is the facade's default clock (a constant, non-zero).

use anyhow::{Result, anyhow};
use ebpf_kernel::ProgramType;
use ebpf_vm::elf::Selector;
use ebpf_vm::maps::UpdateFlags;
use ebpf_vm::{Context, Engine, KernelHelpers, Object, Packet, ProgramKind, Vm};

use crate::corpus::{self, Candidate, Contents, CorpusProgram, Run, Side, Snapshot};

/// `BPF_MAP_TYPE_PROG_ARRAY`, `BPF_MAP_TYPE_RINGBUF`.
const PROG_ARRAY: u32 = 3;
const RINGBUF: u32 = 27;

/// The CPUs of our sides' maps: each per-CPU value has one copy.
pub(crate) const CPUS: usize = 1;

/// Enough for every corpus program on any packet (the longest, `xdp_tcp_options`, runs a
/// few thousand instructions).
const BUDGET: u64 = 1_000_000;

/// One engine's object: every packet program of it (`load_object`), or, where that fails
/// for a sibling's sake (the survey's real-world objects), the entry program alone
/// (`load_elf`, its own maps).
enum Loaded {
    Object(Object),
    Single(Box<Vm>),
}

impl Loaded {
    fn program(&self, entry: &str) -> Option<&Vm> {
        match self {
            Loaded::Object(o) => o.program(entry),
            Loaded::Single(vm) => Some(vm),
        }
    }

    fn map(&self, name: &str) -> Option<&std::sync::Arc<ebpf_vm::maps::Map>> {
        match self {
            Loaded::Object(o) => o.map(name),
            Loaded::Single(vm) => vm.maps()?.get(name),
        }
    }
}

/// One engine's object.
struct OurSide {
    object: Loaded,
    entry: String,
    program_type: ProgramType,
    context: Context,
    /// Each map's name, type and value size, in the object's order.
    maps: Vec<(String, u32, u32)>,
}

/// One candidate per engine: the object loaded on it, or why not.
pub(crate) fn candidates(program: &CorpusProgram) -> Vec<Candidate> {
    Engine::ALL
        .iter()
        .map(|&engine| {
            let side = load(program, engine).map(|s| Box::new(s) as Box<dyn Side>);
            (engine.name().to_string(), side)
        })
        .collect()
}

/// The builder every side loads with, with the maps sized at load (`map_sizes`, name and
/// `max_entries`) sized as the kernel's side sizes them.
pub(crate) fn builder(engine: Engine, map_sizes: &[(String, u32)]) -> ebpf_vm::VmBuilder {
    map_sizes.iter().fold(
        Vm::builder()
            .engine(engine)
            .budget(BUDGET)
            .kernel_helpers(KernelHelpers::new().cpus(CPUS)),
        |builder, (name, n)| builder.map_max_entries(name, *n),
    )
}

fn load(program: &CorpusProgram, engine: Engine) -> Result<OurSide> {
    let object = match builder(engine, &program.map_sizes).load_object(&program.object) {
        Ok(object) if object.program(&program.entry).is_some() => Loaded::Object(object),
        Ok(object) => {
            return Err(anyhow!(
                "the object has no program `{}` (it has {})",
                program.entry,
                object
                    .programs()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Err(whole) => Loaded::Single(Box::new(
            builder(engine, &program.map_sizes)
                .load_elf(&program.object, Selector::Function(&program.entry))
                .map_err(|alone| anyhow!("{alone} (the whole object: {whole})"))?,
        )),
    };
    let kind = match program.program_type {
        ProgramType::SocketFilter => ProgramKind::SocketFilter,
        ProgramType::SchedCls => ProgramKind::Tc,
        _ => ProgramKind::Xdp,
    };
    Ok(OurSide {
        object,
        entry: program.entry.clone(),
        program_type: program.program_type,
        context: Context::default_for(kind),
        maps: program
            .maps
            .iter()
            .map(|m| (m.name.clone(), m.map_type, m.value_size))
            .collect(),
    })
}

impl Side for OurSide {
    fn seed(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let m = self
            .object
            .map(map)
            .ok_or_else(|| anyhow!("no map `{map}`"))?;
        m.update(key, value, UpdateFlags::Any)
            .map_err(|e| anyhow!("seeding `{map}`: {e}"))
    }

    fn run(&mut self, frame: &[u8]) -> Result<Run> {
        let vm = self
            .object
            .program(&self.entry)
            .ok_or_else(|| anyhow!("no program `{}`", self.entry))?;
        let mut packet =
            Packet::new(frame).ok_or_else(|| anyhow!("a frame of {} bytes", frame.len()))?;
        let out = vm
            .run_packet(&mut packet, &self.context)
            .map_err(|trap| anyhow!("{trap}"))?;
        Ok(Run {
            retval: out.r0 as u32,
            packet: corpus::comparable_packet(self.program_type, packet.bytes()),
        })
    }

    fn snapshot(&mut self, drain_rings: bool) -> Result<Snapshot> {
        let mut out = Vec::new();
        for (name, map_type, value_size) in &self.maps {
            let map = self
                .object
                .map(name)
                .ok_or_else(|| anyhow!("no map `{name}`"))?;
            let contents = match *map_type {
                corpus::XSKMAP | corpus::PERF_EVENT_ARRAY => Contents::Slots(Vec::new()),
                RINGBUF if !drain_rings => Contents::Records(Vec::new()),
                RINGBUF => {
                    Contents::Records(map.ring_records().map_err(|e| anyhow!("`{name}`: {e}"))?)
                }
                corpus::ARRAY_OF_MAPS | corpus::HASH_OF_MAPS => {
                    Contents::Slots(map.entries().into_iter().map(|(k, _)| k).collect())
                }
                PROG_ARRAY => Contents::Slots(
                    (0..map.spec().max_entries)
                        .filter(|&i| map.program_at(i).is_some())
                        .map(|i| i.to_le_bytes().to_vec())
                        .collect(),
                ),
                _ => corpus::elements(
                    name,
                    map.entries(),
                    map.spec().map_type.is_per_cpu(),
                    *value_size,
                )?,
            };
            out.push((name.clone(), contents));
        }
        Ok(out)
    }
}
