//! The corpus set: every program of `tests/bpf/*.o` — real XDP, socket-filter and TC programs
//! with maps and kernel helpers — run on the packets of `packets.rs`, packet after packet,
//! in the kernel and on every engine, comparing after each packet the return value, the
//! output packet and every map's contents.
//!
//! Each side is a [`Side`]: an object loaded with fresh maps, seeded from the host, run one
//! packet at a time (state carries over, as in the kernel), and snapshot after each packet
//! ([`Snapshot`]: every map, normalised as below). The kernel side ([`KernelSide`]) is
//! `ebpf_kernel::KernelObject` and `BPF_PROG_TEST_RUN`; our side is `ours.rs`, one per
//! engine. The reference is a kernel side; a second kernel side, from fresh maps, runs in
//! lockstep with it, so the set also checks that the kernel's own results are deterministic
//! for these programs and packets (what makes them an oracle at all).
//!
//! # Normalisation (what is compared, exactly)
//!
//! - **Hash, LRU and array maps**: the set of (key, value) pairs, in key order (iteration
//!   order is the map's own and differs between implementations). Arrays list every index.
//! - **Per-CPU maps**: every run happens on one CPU — the kernel's on CPU 0, to which the set
//!   pins its thread; ours on the maps' only CPU — so each element's value is that CPU's copy,
//!   and every other copy of the kernel's must be zero (a snapshot fails if not).
//! - **Ring buffers**: the records submitted since the last snapshot, in order (both sides
//!   drain them after each packet; discarded records are not records).
//! - **Xskmaps**: not compared (the kernel lets no host read one; programs cannot write one).
//! - **Devmaps, devmap hashes, cpumaps**: as hash maps (the present entries).
//! - **Prog arrays**: which slots hold a program (the kernel's values are kernel-wide program
//!   ids, ours indices).
//! - **Output packet**: the whole frame for XDP. A socket filter's view starts at the network
//!   header and the kernel zeroes the Ethernet header of `data_out` (`BPF_PROG_TEST_RUN` for
//!   non-L2 program types), so for socket filters only the bytes after the first 14 are
//!   compared.
//! - **Time**: no bytes are masked. The one program that calls `bpf_ktime_get_ns`
//!   (`xdp_conntrack`) stores `ktime_get_ns() ? 1 : 0`, which is 1 on both sides (a kernel's
//!   monotonic clock is never 0; ours is the embedder's, non-zero by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ebpf_kernel::{
    KernelObject, LoadOptions, ObjectMap, ObjectProgram, ProgramType, TestRun, UpdateFlags,
};
use ebpf_vm::elf::{ElfObject, MapDefinition, Selector};

use crate::compare::hex;
use crate::packets::{self, Category, Packet};

/// `BPF_MAP_TYPE_PROG_ARRAY`.
const PROG_ARRAY: u32 = 3;
/// `BPF_MAP_TYPE_RINGBUF`.
const RINGBUF: u32 = 27;
/// `BPF_MAP_TYPE_XSKMAP`: the kernel lets no host read one (`EOPNOTSUPP`), so its contents
/// are not compared (programs cannot change them either).
pub(crate) const XSKMAP: u32 = 17;
/// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: its slots hold perf event descriptors, which the kernel
/// lets no host read back (`ENOTSUPP`, errno 524); not compared, as for [`XSKMAP`] (programs
/// cannot change them).
pub(crate) const PERF_EVENT_ARRAY: u32 = 4;
/// `BPF_MAP_TYPE_ARRAY_OF_MAPS`, `_HASH_OF_MAPS`: compared by their filled slots (which map
/// fills each is the host's doing, the same on every side; programs cannot change it).
pub(crate) const ARRAY_OF_MAPS: u32 = 12;
pub(crate) const HASH_OF_MAPS: u32 = 13;
/// The CPU the set's thread is pinned to, whose copy of per-CPU values the kernel fills.
pub(crate) const CPU: usize = 0;

/// One program of the corpus, with everything needed to load its object anywhere.
#[derive(Clone, Debug)]
pub(crate) struct CorpusProgram {
    /// The object's file name (`xdp_firewall.o`).
    pub(crate) object_name: String,
    /// The object's bytes.
    pub(crate) object: Vec<u8>,
    /// The program (a function name) that each packet enters.
    pub(crate) entry: String,
    /// Its type.
    pub(crate) program_type: ProgramType,
    /// The object's maps.
    pub(crate) maps: Vec<MapDefinition>,
    /// Every program of the object, linked (map references by index), for the kernel.
    pub(crate) programs: Vec<ObjectProgram>,
    /// The `max_entries` its loader would set at run time, by map name (the maps the object
    /// leaves at 0: see `survey::sized_at_load`), given to both sides alike; empty for the
    /// corpus, whose objects size every map.
    pub(crate) map_sizes: Vec<(String, u32)>,
    /// Whether ring buffers are read only after the last packet instead of after each one: a
    /// ring that is never drained fills up, and what a program does when its reserve or
    /// output fails (and how many records fit) is compared too.
    pub(crate) drain_rings_at_end: bool,
}

impl CorpusProgram {
    /// `object.o program`, as reports name it.
    pub(crate) fn name(&self) -> String {
        let undrained = if self.drain_rings_at_end {
            " (twice over, rings read at the end)"
        } else {
            ""
        };
        format!("{} {}{undrained}", self.object_name, self.entry)
    }
}

/// `tests/bpf` of the workspace.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf")
}

/// What the kernel loads a program of `section` as, or `None` for a section the corpus does
/// not use.
pub(crate) fn program_type(section: &str) -> Option<ProgramType> {
    Some(match ebpf_vm::ProgramKind::from_section(section)? {
        ebpf_vm::ProgramKind::Xdp => ProgramType::Xdp,
        ebpf_vm::ProgramKind::SocketFilter => ProgramType::SocketFilter,
        ebpf_vm::ProgramKind::Tc => ProgramType::SchedCls,
    })
}

/// Every program of every object in `tests/bpf`, objects by name; a program whose object has
/// a ring buffer comes twice, the second time with its rings read only at the end.
pub(crate) fn programs() -> Result<Vec<CorpusProgram>> {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no objects", dir.display());
    }
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let object = ElfObject::parse(&bytes).with_context(|| name.clone())?;
        let maps = object.maps().with_context(|| name.clone())?;
        let mut programs = Vec::new();
        for info in object.programs() {
            let Some(program_type) = program_type(&info.section) else {
                continue;
            };
            let loaded = object
                .load_with_data_maps(Selector::Function(&info.name))
                .with_context(|| format!("{name}: {}", info.name))?;
            programs.push(ObjectProgram {
                name: info.name.clone(),
                program_type,
                insns: loaded.program.to_bytes(),
            });
        }
        let has_ring = maps.iter().any(|m| m.map_type == RINGBUF);
        for p in &programs {
            for drain_rings_at_end in [false, true] {
                if drain_rings_at_end && !has_ring {
                    continue;
                }
                out.push(CorpusProgram {
                    object_name: name.clone(),
                    object: bytes.clone(),
                    entry: p.name.clone(),
                    program_type: p.program_type,
                    maps: maps.clone(),
                    programs: programs.clone(),
                    map_sizes: Vec::new(),
                    drain_rings_at_end,
                });
            }
        }
    }
    Ok(out)
}

/// One element the host writes before a program's packets: (map, key, value).
pub(crate) type Seed = (&'static str, Vec<u8>, Vec<u8>);

/// What the host puts in an object's maps before its packets: the firewall's blocked sources
/// (drop counts starting at 0) and the load balancer's four backends (address and MAC).
pub(crate) fn seeds(object_name: &str) -> Vec<Seed> {
    match object_name {
        "xdp_firewall.o" => packets::BLOCKED
            .iter()
            .map(|addr| ("blocked", addr.to_vec(), 0u64.to_le_bytes().to_vec()))
            .collect(),
        "xdp_lb.o" => (0u8..4)
            .map(|i| {
                let mut backend = vec![10, 0, 1, 10 + i]; // address, network order
                backend.extend_from_slice(&[0x02, 0xbe, 0, 0, 0, i]); // MAC
                backend.extend_from_slice(&[0, 0]); // padding
                ("backends", u32::from(i).to_le_bytes().to_vec(), backend)
            })
            .collect(),
        "xdp_redirect.o" => {
            // Interface 1 is the loopback device, the only one the kernel surely has; CPU 0
            // the one the set runs on. Values: the interface (devmap), then no program.
            let entry = |ifindex: u32| [ifindex.to_le_bytes(), 0u32.to_le_bytes()].concat();
            vec![
                (
                    "tx_ports",
                    1u32.to_le_bytes().to_vec(),
                    1u32.to_le_bytes().to_vec(),
                ),
                (
                    "tx_ports",
                    3u32.to_le_bytes().to_vec(),
                    1u32.to_le_bytes().to_vec(),
                ),
                ("by_port", 3u32.to_le_bytes().to_vec(), entry(1)),
                ("by_port", 5u32.to_le_bytes().to_vec(), entry(1)),
                ("cpus", 0u32.to_le_bytes().to_vec(), entry(64)),
            ]
        }
        _ => Vec::new(),
    }
}

/// A map's contents, normalised for comparison (see the module comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// Key → value (per-CPU maps: the run CPU's copy).
    Elements(BTreeMap<Vec<u8>, Vec<u8>>),
    /// Ring buffer records since the last snapshot.
    Records(Vec<Vec<u8>>),
    /// The prog array slots that hold a program.
    Slots(Vec<Vec<u8>>),
}

/// Every map of an object after a packet, by name, in the object's order.
pub(crate) type Snapshot = Vec<(String, Contents)>;

/// What one run of a program returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The low 32 bits of `r0` (what `BPF_PROG_TEST_RUN` returns).
    pub(crate) retval: u32,
    /// The packet after the run (for socket filters, without the Ethernet header).
    pub(crate) packet: Vec<u8>,
}

/// One side of the comparison: an object with its own maps.
pub(crate) trait Side {
    /// Writes one element before the packets.
    fn seed(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Runs the entry program on one frame.
    fn run(&mut self, frame: &[u8]) -> Result<Run>;
    /// Every map now; ring buffers are drained (their records since the last drain) only if
    /// `drain_rings`, else left as they are and shown as no records.
    fn snapshot(&mut self, drain_rings: bool) -> Result<Snapshot>;
}

/// The packet as compared: for socket filters without the Ethernet header (TC programs see
/// it, and the kernel copies it out).
pub(crate) fn comparable_packet(program_type: ProgramType, frame: &[u8]) -> Vec<u8> {
    match program_type {
        ProgramType::SocketFilter => frame.get(packets::MIN_FRAME..).unwrap_or(&[]).to_vec(),
        _ => frame.to_vec(),
    }
}

/// The kernel's side: the object in the kernel, run on the calling thread (which the set pins
/// to [`CPU`]).
pub(crate) struct KernelSide {
    object: KernelObject,
    entry: String,
    program_type: ProgramType,
    /// Each map's name, type and value size, in the object's order.
    maps: Vec<(String, u32, u32)>,
    per_cpu: Vec<bool>,
}

impl KernelSide {
    /// Loads `program`'s object into the kernel with fresh maps.
    pub(crate) fn load(program: &CorpusProgram) -> Result<KernelSide, ebpf_kernel::ObjectError> {
        let maps: Vec<ObjectMap> = program
            .maps
            .iter()
            .map(|m| ObjectMap {
                name: m.name.clone(),
                map_type: m.map_type,
                key_size: m.key_size,
                value_size: m.value_size,
                max_entries: program
                    .map_sizes
                    .iter()
                    .find(|(name, _)| *name == m.name)
                    .map_or(m.max_entries, |&(_, n)| n),
                flags: m.flags,
                initial_programs: m.initial_programs.clone(),
                initial_value: m.initial_value.clone(),
                inner: m.inner.as_ref().map(|inner| {
                    Box::new(ObjectMap {
                        name: inner.name.clone(),
                        map_type: inner.map_type,
                        key_size: inner.key_size,
                        value_size: inner.value_size,
                        max_entries: inner.max_entries,
                        flags: inner.flags,
                        initial_programs: Vec::new(),
                        initial_value: None,
                        inner: None,
                        initial_maps: Vec::new(),
                    })
                }),
                initial_maps: m.initial_maps.clone(),
            })
            .collect();
        let options = LoadOptions {
            license: "GPL",
            ..LoadOptions::default()
        };
        let object = KernelObject::load(&maps, &program.programs, &options)?;
        Ok(KernelSide {
            object,
            entry: program.entry.clone(),
            program_type: program.program_type,
            maps: program
                .maps
                .iter()
                .map(|m| (m.name.clone(), m.map_type, m.value_size))
                .collect(),
            per_cpu: program
                .maps
                .iter()
                .map(|m| ebpf_vm::maps::MapType::from_kernel(m.map_type).is_per_cpu())
                .collect(),
        })
    }
}

impl KernelSide {
    /// Runs the entry program on `frame`, or `None` if `BPF_PROG_TEST_RUN` refuses the frame
    /// itself (`EINVAL`: shorter than the kernel's minimum for the program type; a socket
    /// filter's IPv4 frame whose IPv4 header is not all there).
    pub(crate) fn try_run(&mut self, frame: &[u8]) -> Result<Option<Run>> {
        const EINVAL: i32 = 22;
        match self.run(frame) {
            Ok(run) => Ok(Some(run)),
            Err(e) => match e.downcast_ref::<ebpf_kernel::KernelError>() {
                Some(k) if k.errno() == Some(EINVAL) => Ok(None),
                _ => Err(e),
            },
        }
    }
}

impl Side for KernelSide {
    fn seed(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let m = self
            .object
            .map(map)
            .ok_or_else(|| anyhow!("no map `{map}`"))?;
        m.update(key, value, UpdateFlags::Any)
            .with_context(|| format!("seeding `{map}`"))
    }

    fn run(&mut self, frame: &[u8]) -> Result<Run> {
        let program = self
            .object
            .program(&self.entry)
            .ok_or_else(|| anyhow!("no program `{}`", self.entry))?;
        let out = program.test_run(&TestRun::new(frame))?;
        if out.data_truncated {
            bail!("the output packet outgrew its buffer");
        }
        Ok(Run {
            retval: out.retval,
            packet: comparable_packet(self.program_type, &out.data),
        })
    }

    fn snapshot(&mut self, drain_rings: bool) -> Result<Snapshot> {
        let mut out = Vec::new();
        for ((name, map_type, value_size), &per_cpu) in self.maps.iter().zip(&self.per_cpu) {
            let contents = match *map_type {
                XSKMAP | PERF_EVENT_ARRAY => Contents::Slots(Vec::new()),
                RINGBUF if !drain_rings => Contents::Records(Vec::new()),
                RINGBUF => {
                    let ring = self
                        .object
                        .ring(name)
                        .ok_or_else(|| anyhow!("no ring `{name}`"))?;
                    Contents::Records(ring.drain()?)
                }
                PROG_ARRAY | ARRAY_OF_MAPS | HASH_OF_MAPS => {
                    let map = self.object.map(name).ok_or_else(|| anyhow!("no map"))?;
                    Contents::Slots(map.entries()?.into_iter().map(|(k, _)| k).collect())
                }
                _ => {
                    let map = self.object.map(name).ok_or_else(|| anyhow!("no map"))?;
                    elements(name, map.entries()?, per_cpu, *value_size)?
                }
            };
            out.push((name.clone(), contents));
        }
        Ok(out)
    }
}

/// A hash or array map's elements as compared: sorted by key, per-CPU values reduced to
/// [`CPU`]'s copy (see [`own_copy`]).
pub(crate) fn elements(
    name: &str,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    per_cpu: bool,
    value_size: u32,
) -> Result<Contents> {
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let value = if per_cpu {
            own_copy(&value, value_size).with_context(|| format!("`{name}` key {}", hex(&key)))?
        } else {
            value
        };
        out.insert(key, value);
    }
    Ok(Contents::Elements(out))
}

/// The copy of [`CPU`] of a per-CPU value; an error if another CPU's copy is not zero (a run
/// landed elsewhere).
pub(crate) fn own_copy(value: &[u8], value_size: u32) -> Result<Vec<u8>> {
    let copies = ebpf_kernel::per_cpu_values(value, value_size)
        .ok_or_else(|| anyhow!("a per-CPU value of {} bytes", value.len()))?;
    for (cpu, copy) in copies.iter().enumerate() {
        if cpu != CPU && copy.iter().any(|&b| b != 0) {
            bail!("CPU {cpu}'s copy changed: {}", hex(copy));
        }
    }
    copies
        .get(CPU)
        .map(|c| c.to_vec())
        .ok_or_else(|| anyhow!("no CPU {CPU}"))
}

/// The first difference between two snapshots: map, key and both sides' bytes.
pub(crate) fn first_difference(reference: &Snapshot, other: &Snapshot) -> Option<String> {
    for ((name, a), (other_name, b)) in reference.iter().zip(other) {
        if name != other_name {
            return Some(format!("maps differ: `{name}` against `{other_name}`"));
        }
        if a == b {
            continue;
        }
        let show = |v: Option<&Vec<u8>>| v.map_or_else(|| "(none)".to_string(), |v| hex(v));
        let detail = match (a, b) {
            (Contents::Elements(x), Contents::Elements(y)) => {
                let key = x
                    .iter()
                    .find(|(k, v)| y.get(*k) != Some(v))
                    .map(|(k, _)| k)
                    .or_else(|| y.keys().find(|k| !x.contains_key(*k)));
                match key {
                    Some(k) => format!(
                        "key {}: kernel {}, other {}",
                        hex(k),
                        show(x.get(k)),
                        show(y.get(k))
                    ),
                    None => "the elements differ".to_string(),
                }
            }
            (Contents::Records(x), Contents::Records(y))
            | (Contents::Slots(x), Contents::Slots(y)) => {
                let i = (0..x.len().max(y.len()))
                    .find(|&i| x.get(i) != y.get(i))
                    .unwrap_or(0);
                format!(
                    "entry {i} (of {} and {}): kernel {}, other {}",
                    x.len(),
                    y.len(),
                    show(x.get(i)),
                    show(y.get(i))
                )
            }
            _ => "different kinds of contents".to_string(),
        };
        return Some(format!("map `{name}`: {detail}"));
    }
    (reference.len() != other.len())
        .then(|| format!("{} maps against {}", reference.len(), other.len()))
}

/// How one compared side fared on one program.
#[derive(Debug, Default)]
pub(crate) struct SideResult {
    /// Packets run and compared, up to and including a mismatch.
    pub(crate) compared: usize,
    /// The reproducer of the first mismatch (the side stops there: its state diverged).
    pub(crate) mismatch: Option<String>,
    /// Why the side could not run the program at all (it refused to load it, or failed).
    pub(crate) not_run: Option<String>,
}

/// A side under comparison, by name; `Err` if it could not be created (why).
pub(crate) type Candidate = (String, Result<Box<dyn Side>>);

/// Everything needed to reproduce a mismatch at packet `index`.
fn reproducer(
    program: &CorpusProgram,
    side: &str,
    index: usize,
    packet: &Packet,
    expected: &Run,
    got: &Run,
    difference: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mismatch: {} on {side}, packet {index} ({}, {}: {} bytes)",
        program.name(),
        packet.category.name(),
        packet.what,
        packet.bytes.len()
    );
    let _ = writeln!(out, "    frame: {}", hex(&packet.bytes));
    let _ = writeln!(out, "    kernel: retval {}", expected.retval);
    let _ = writeln!(out, "    {side}: retval {}", got.retval);
    let _ = write!(out, "    first difference: {difference}");
    out
}

/// What one program's comparison found.
#[derive(Debug, Default)]
pub(crate) struct ProgramResult {
    /// How often the kernel returned each value (how many paths the packets took).
    pub(crate) retvals: BTreeMap<u32, usize>,
    /// Packets the kernel's test run refused (run on no side).
    pub(crate) refused: Vec<usize>,
    /// Each candidate side's result.
    pub(crate) sides: Vec<(String, SideResult)>,
}

/// Runs `packets` through the kernel (the reference) and every candidate, seeding each first,
/// and compares after every packet. `Err`: the reference itself failed.
pub(crate) fn compare(
    program: &CorpusProgram,
    packets: &[Packet],
    reference: &mut KernelSide,
    candidates: Vec<Candidate>,
) -> Result<ProgramResult> {
    let mut outcome = ProgramResult::default();
    let seeds = seeds(&program.object_name);
    for (map, key, value) in &seeds {
        reference.seed(map, key, value)?;
    }
    // Each candidate by name, while it still runs, and its result so far.
    type Running = (String, Option<Box<dyn Side>>, SideResult);
    let mut sides: Vec<Running> = Vec::new();
    for (name, side) in candidates {
        let mut result = SideResult::default();
        let side = match side {
            Ok(mut s) => {
                let seeded = seeds
                    .iter()
                    .try_for_each(|(map, key, value)| s.seed(map, key, value));
                match seeded {
                    Ok(()) => Some(s),
                    Err(e) => {
                        result.not_run = Some(format!("seeding: {e:#}"));
                        None
                    }
                }
            }
            Err(e) => {
                result.not_run = Some(format!("{e:#}"));
                None
            }
        };
        sides.push((name, side, result));
    }
    for (index, packet) in packets.iter().enumerate() {
        let expected = reference
            .try_run(&packet.bytes)
            .with_context(|| format!("the kernel on packet {index} ({})", packet.what))?;
        let Some(expected) = expected else {
            outcome.refused.push(index);
            continue;
        };
        *outcome.retvals.entry(expected.retval).or_default() += 1;
        let drain = !program.drain_rings_at_end;
        let expected_maps = reference.snapshot(drain)?;
        for (name, side, result) in &mut sides {
            let Some(s) = side else { continue };
            let got = s
                .run(&packet.bytes)
                .and_then(|run| Ok((run, s.snapshot(drain)?)));
            let (got, maps) = match got {
                Ok(x) => x,
                Err(e) => {
                    result.mismatch = Some(format!(
                        "mismatch: {} on {name}, packet {index} ({}): {e:#}\n    frame: {}",
                        program.name(),
                        packet.what,
                        hex(&packet.bytes)
                    ));
                    result.compared += 1;
                    *side = None;
                    continue;
                }
            };
            result.compared += 1;
            let difference = if got.retval != expected.retval {
                Some("the return value".to_string())
            } else if got.packet != expected.packet {
                let i = (0..got.packet.len().max(expected.packet.len()))
                    .find(|&i| got.packet.get(i) != expected.packet.get(i))
                    .unwrap_or(0);
                Some(format!(
                    "the output packet, from byte {i}: kernel {} ({} bytes), {name} {} ({} bytes)",
                    hex(expected.packet.get(i..).unwrap_or(&[])),
                    expected.packet.len(),
                    hex(got.packet.get(i..).unwrap_or(&[])),
                    got.packet.len()
                ))
            } else {
                first_difference(&expected_maps, &maps)
            };
            if let Some(d) = difference {
                result.mismatch = Some(reproducer(
                    program, name, index, packet, &expected, &got, &d,
                ));
                *side = None;
            }
        }
    }
    if program.drain_rings_at_end {
        // Every record the rings kept, after the last packet.
        let expected_maps = reference.snapshot(true)?;
        for (name, side, result) in &mut sides {
            let Some(s) = side else { continue };
            let difference = match s.snapshot(true) {
                Ok(maps) => first_difference(&expected_maps, &maps),
                Err(e) => Some(format!("{e:#}")),
            };
            if let Some(d) = difference {
                result.mismatch = Some(format!(
                    "mismatch: {} on {name}, the rings after the last packet: {d}",
                    program.name()
                ));
            }
        }
    }
    outcome.sides = sides.into_iter().map(|(n, _, r)| (n, r)).collect();
    Ok(outcome)
}

/// The sequence a program whose rings are read only at the end runs: the packets twice over,
/// enough records to overflow the corpus' 4 KiB ring (and so reach the paths where a
/// program's reserve or output fails).
pub(crate) fn undrained_sequence(packets: &[Packet]) -> Vec<Packet> {
    [packets, packets].concat()
}

/// The packets' counts per category, for the report.
pub(crate) fn categories(packets: &[Packet]) -> String {
    Category::ALL
        .iter()
        .map(|c| {
            let n = packets.iter().filter(|p| p.category == *c).count();
            format!("{n} {}", c.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_values_keep_the_pinned_cpus_copy_and_require_the_rest_zero() {
        // Three CPUs, 4-byte values padded to 8.
        let mut value = vec![0u8; 24];
        value[..4].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(own_copy(&value, 4).unwrap(), [1, 2, 3, 4]);
        value[16] = 9;
        let err = own_copy(&value, 4).unwrap_err().to_string();
        assert!(err.contains("CPU 2's copy changed"), "{err}");
        // Padding is not part of a copy.
        let mut padded = vec![0u8; 16];
        padded[12] = 7;
        assert_eq!(own_copy(&padded, 4).unwrap(), [0; 4]);
        assert!(own_copy(&[0; 5], 4).is_err());
    }

    #[test]
    fn the_first_difference_names_map_and_key() {
        let elements = |pairs: &[(u8, u8)]| {
            Contents::Elements(pairs.iter().map(|&(k, v)| (vec![k], vec![v])).collect())
        };
        let a = vec![("m".to_string(), elements(&[(1, 1), (2, 2)]))];
        assert_eq!(first_difference(&a, &a), None);
        let b = vec![("m".to_string(), elements(&[(1, 1), (2, 3)]))];
        assert_eq!(
            first_difference(&a, &b).unwrap(),
            "map `m`: key 02: kernel 02, other 03"
        );
        let c = vec![("m".to_string(), elements(&[(1, 1), (2, 2), (5, 0)]))];
        assert_eq!(
            first_difference(&a, &c).unwrap(),
            "map `m`: key 05: kernel (none), other 00"
        );
        let r = |rs: &[&[u8]]| {
            vec![(
                "ring".to_string(),
                Contents::Records(rs.iter().map(|r| r.to_vec()).collect()),
            )]
        };
        assert_eq!(
            first_difference(&r(&[&[1], &[2]]), &r(&[&[1]])).unwrap(),
            "map `ring`: entry 1 (of 2 and 1): kernel 02, other (none)"
        );
    }

    #[test]
    fn socket_filters_compare_after_the_ethernet_header() {
        let frame: Vec<u8> = (0..20).collect();
        assert_eq!(comparable_packet(ProgramType::Xdp, &frame), frame);
        assert_eq!(
            comparable_packet(ProgramType::SocketFilter, &frame),
            &frame[14..]
        );
    }

    /// Whether the kernel loads BPF here (CI must be able to).
    fn kernel() -> bool {
        match ebpf_kernel::probe() {
            Ok(()) => true,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI must run these: {e}");
                eprintln!("warning: skipping a kernel-diff corpus test: {e}");
                false
            }
        }
    }

    /// A side that runs the kernel but changes what it reports, to prove each comparison
    /// can fail.
    struct Skewed {
        inner: KernelSide,
        run: fn(&mut Run),
        maps: fn(&mut Snapshot),
    }

    impl Skewed {
        fn maps(inner: KernelSide, maps: fn(&mut Snapshot)) -> Skewed {
            Skewed {
                inner,
                run: |_| {},
                maps,
            }
        }
    }

    impl Side for Skewed {
        fn seed(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<()> {
            self.inner.seed(map, key, value)
        }
        fn run(&mut self, frame: &[u8]) -> Result<Run> {
            let mut run = self.inner.run(frame)?;
            (self.run)(&mut run);
            Ok(run)
        }
        fn snapshot(&mut self, drain_rings: bool) -> Result<Snapshot> {
            let mut s = self.inner.snapshot(drain_rings)?;
            (self.maps)(&mut s);
            Ok(s)
        }
    }

    fn corpus_program(name: &str) -> CorpusProgram {
        programs()
            .unwrap()
            .into_iter()
            .find(|p| p.name() == name)
            .unwrap()
    }

    /// The same packets on the kernel against the kernel agree; a side with one more blocked
    /// address, a ring that loses a record, or a counter one off, is caught at the first packet
    /// where it shows, with a reproducer naming it.
    #[test]
    fn the_comparison_catches_verdicts_packets_and_maps() {
        if !kernel() {
            return;
        }
        // Per-CPU copies are read for CPU 0.
        std::thread::spawn(|| {
            ebpf_kernel::pin_to_cpu(CPU).unwrap();
            let packets = packets::packets(1);
            let run = |program: &CorpusProgram, side: Box<dyn Side>| {
                let mut reference = KernelSide::load(program).unwrap();
                let result = compare(
                    program,
                    &packets,
                    &mut reference,
                    vec![("skewed".into(), Ok(side))],
                )
                .unwrap();
                let (_, r) = result.sides.into_iter().next().unwrap();
                (r, result.retvals)
            };
            // The firewall: one more blocked source, the first packet's.
            let firewall = corpus_program("xdp_firewall.o xdp_firewall");
            let mut extra = KernelSide::load(&firewall).unwrap();
            extra
                .seed("blocked", &[192, 168, 1, 10], &0u64.to_le_bytes())
                .unwrap();
            let (r, retvals) = run(&firewall, Box::new(extra));
            let report = r.mismatch.unwrap();
            assert_eq!(r.compared, 1, "{report}");
            assert!(
                report.contains("packet 0 (valid, tcp syn with options"),
                "{report}"
            );
            assert!(
                report.contains("first difference: the return value"),
                "{report}"
            );
            assert!(retvals.len() >= 2, "both verdicts seen: {retvals:?}");
            // The same program on a fresh kernel object agrees on every packet.
            let again = KernelSide::load(&firewall).unwrap();
            let (r, _) = run(&firewall, Box::new(again));
            assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
            assert_eq!(r.compared, packets.len());
            // The logger's ring, one record short.
            let logger = corpus_program("socket_logger.o socket_logger");
            let skewed = Skewed::maps(KernelSide::load(&logger).unwrap(), |s| {
                for (_, c) in s.iter_mut() {
                    if let Contents::Records(r) = c {
                        r.pop();
                    }
                }
            });
            let report = run(&logger, Box::new(skewed)).0.mismatch.unwrap();
            assert!(
                report.contains("map `events`: entry 0 (of 1 and 0)"),
                "{report}"
            );
            // The counter's per-CPU value, one packet off.
            let counter = corpus_program("xdp_counter.o xdp_counter");
            let skewed = Skewed::maps(KernelSide::load(&counter).unwrap(), |s| {
                if let Some((_, Contents::Elements(e))) = s.first_mut()
                    && let Some(v) = e.values_mut().next()
                {
                    v[0] ^= 1;
                }
            });
            let report = run(&counter, Box::new(skewed)).0.mismatch.unwrap();
            assert!(report.contains("map `stats`: key 00 00 00 00"), "{report}");
            // The load balancer's packet, one byte of a rewritten frame's MAC changed.
            let lb = corpus_program("xdp_lb.o xdp_lb");
            let skewed = Skewed {
                inner: KernelSide::load(&lb).unwrap(),
                run: |r| {
                    if r.retval == 3 {
                        r.packet[5] ^= 0x80;
                    }
                },
                maps: |_| {},
            };
            let report = run(&lb, Box::new(skewed)).0.mismatch.unwrap();
            assert!(
                report.contains("the output packet, from byte 5"),
                "{report}"
            );
        })
        .join()
        .unwrap();
    }

    /// The logger's ring, read only at the end, overflows: the sequence exercises the path
    /// where `bpf_ringbuf_reserve`/`_output` fail and the program counts a lost record.
    #[test]
    fn an_undrained_ring_overflows_in_the_kernel() {
        if !kernel() {
            return;
        }
        let logger = programs()
            .unwrap()
            .into_iter()
            .find(|p| p.drain_rings_at_end)
            .unwrap();
        let mut side = KernelSide::load(&logger).unwrap();
        let mut ran = 0;
        for p in undrained_sequence(&packets::packets(1)) {
            ran += usize::from(side.try_run(&p.bytes).unwrap().is_some());
        }
        let snapshot = side.snapshot(true).unwrap();
        let find = |name: &str| snapshot.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let Contents::Records(records) = find("events") else {
            panic!()
        };
        let Contents::Elements(lost) = find("lost") else {
            panic!()
        };
        let lost = u64::from_le_bytes(lost[&vec![0; 4]][..8].try_into().unwrap());
        assert!(lost > 0, "nothing lost in {ran} runs");
        // What was kept fits the ring's 4 KiB: each record with its 8-byte header, rounded.
        let used: usize = records
            .iter()
            .map(|r| (r.len() + 8).next_multiple_of(8))
            .sum();
        assert!(!records.is_empty() && used <= 4096, "{used}");
        assert!(records.len() as u64 + lost <= ran as u64);
    }

    #[test]
    fn the_corpus_has_every_program_and_its_seeds_name_real_maps() {
        let programs = programs().unwrap();
        let names: Vec<String> = programs.iter().map(CorpusProgram::name).collect();
        // Seventeen programs, the ring buffer's logger twice (rings read after each packet, and
        // only at the end).
        assert_eq!(programs.len(), 18, "{names:?}");
        assert!(names.contains(&"tc_classifier.o tc_classifier".into()));
        // A map of maps: its inner template and initial slots reach the kernel's side.
        let tenants = programs.iter().find(|p| p.entry == "xdp_tenants").unwrap();
        let outer = tenants.maps.iter().find(|m| m.name == "tenants").unwrap();
        assert!(outer.inner.is_some());
        assert_eq!(outer.initial_maps.len(), 2);
        // Global variables: the kernel gets them as maps, like any other.
        assert!(names.contains(&"xdp_bss_counter.o xdp_bss_counter".into()));
        let globals = programs.iter().find(|p| p.entry == "first").unwrap();
        let maps: Vec<&str> = globals.maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(maps, ["jumps", ".data", ".rodata"]);
        assert!(
            names.contains(
                &"socket_logger.o socket_logger (twice over, rings read at the end)".into()
            )
        );
        for p in &programs {
            for (map, key, value) in seeds(&p.object_name) {
                let def = p.maps.iter().find(|m| m.name == map).unwrap();
                assert_eq!(key.len(), def.key_size as usize, "{map}");
                assert_eq!(value.len(), def.value_size as usize, "{map}");
            }
        }
        assert!(!seeds("xdp_firewall.o").is_empty() && !seeds("xdp_lb.o").is_empty());
        assert!(!seeds("xdp_redirect.o").is_empty());
    }
}
