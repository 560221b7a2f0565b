//! Running programs written for the kernel: its helpers under their kernel ids
//! ([`KernelHelpers`], a set the embedder opts into), an object's maps wired into runs, the
//! program contexts (`context`) and the per-run state helpers reach through
//! [`VmMemory::run_state`].
//!
//! Semantics follow the kernel's helpers: errors are `-errno` in `r0`, a missed lookup is
//! `NULL`, update flags are `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST`. docs/helpers.md lists every
//! id.

pub(crate) mod context;
pub(crate) mod inline_loop;
mod names;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ebpf_abi::{Helper, HelperError, Helpers, TrapKind, VmMemory, layout};
use ebpf_cfg::facts::MapRegion;
use ebpf_maps::{Map, MapError, MapType, Maps, UpdateFlags};

use context::ProgramKind;

/// The kernel's name of helper `id` (`map_lookup_elem` for 1), if the kernel has one.
pub fn helper_name(id: u32) -> Option<&'static str> {
    names::HELPER_NAMES.get(id as usize).copied()
}

/// The message of [`crate::LoadError::UnsupportedHelper`].
pub(crate) fn unsupported_helper(id: u32) -> String {
    match helper_name(id) {
        Some(name) => {
            format!("the program calls helper {id} (bpf_{name}), which this VM does not provide")
        }
        None => format!("the program calls helper {id}, which no kernel or embedder provides"),
    }
}

/// The helper ids [`KernelHelpers`] provides, ascending.
pub const KERNEL_HELPER_IDS: &[u32] = &[
    MAP_LOOKUP_ELEM,
    MAP_UPDATE_ELEM,
    MAP_DELETE_ELEM,
    KTIME_GET_NS,
    TRACE_PRINTK,
    GET_PRANDOM_U32,
    GET_SMP_PROCESSOR_ID,
    SKB_STORE_BYTES,
    L3_CSUM_REPLACE,
    L4_CSUM_REPLACE,
    TAIL_CALL,
    REDIRECT,
    PERF_EVENT_OUTPUT,
    SKB_LOAD_BYTES,
    CSUM_DIFF,
    GET_HASH_RECALC,
    XDP_ADJUST_HEAD,
    REDIRECT_MAP,
    XDP_ADJUST_TAIL,
    MAP_PUSH_ELEM,
    MAP_POP_ELEM,
    MAP_PEEK_ELEM,
    JIFFIES64,
    KTIME_GET_BOOT_NS,
    RINGBUF_OUTPUT,
    RINGBUF_RESERVE,
    RINGBUF_SUBMIT,
    RINGBUF_DISCARD,
    RINGBUF_QUERY,
    KTIME_GET_COARSE_NS,
];

const MAP_LOOKUP_ELEM: u32 = 1;
const MAP_UPDATE_ELEM: u32 = 2;
const MAP_DELETE_ELEM: u32 = 3;
const KTIME_GET_NS: u32 = 5;
const TRACE_PRINTK: u32 = 6;
const GET_PRANDOM_U32: u32 = 7;
const GET_SMP_PROCESSOR_ID: u32 = 8;
const SKB_STORE_BYTES: u32 = 9;
const L3_CSUM_REPLACE: u32 = 10;
const L4_CSUM_REPLACE: u32 = 11;
/// `bpf_tail_call`.
pub(crate) const TAIL_CALL: u32 = 12;
const REDIRECT: u32 = 23;
const PERF_EVENT_OUTPUT: u32 = 25;
const SKB_LOAD_BYTES: u32 = 26;
const CSUM_DIFF: u32 = 28;
const GET_HASH_RECALC: u32 = 34;
const XDP_ADJUST_HEAD: u32 = 44;
const REDIRECT_MAP: u32 = 51;
const XDP_ADJUST_TAIL: u32 = 65;
const MAP_PUSH_ELEM: u32 = 87;
const MAP_POP_ELEM: u32 = 88;
const MAP_PEEK_ELEM: u32 = 89;
const JIFFIES64: u32 = 118;
const KTIME_GET_BOOT_NS: u32 = 125;
const RINGBUF_OUTPUT: u32 = 130;
const RINGBUF_RESERVE: u32 = 131;
const RINGBUF_SUBMIT: u32 = 132;
const RINGBUF_DISCARD: u32 = 133;
const RINGBUF_QUERY: u32 = 134;
const KTIME_GET_COARSE_NS: u32 = 160;

/// The kernel's limit on tail calls in one run (`MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALLS: u32 = 33;

const EINVAL: i64 = 22;
const ENOENT: i64 = 2;
const EFAULT: i64 = 14;
const EAGAIN: i64 = 11;

/// `-errno` as a register.
fn errno(e: i64) -> u64 {
    (-e) as u64
}

/// A map handle as `lddw map_fd N` becomes at load: a value in no region (so dereferencing
/// it traps, as the kernel's verifier would refuse it), the map's index in the low bits.
pub(crate) const MAP_HANDLE_BASE: u64 = 0xffff_0000_0000_0000;

/// The clock `ktime_get_ns` reads.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where `trace_printk` writes: the formatted line.
pub type TraceSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The kernel's helpers under their kernel ids, for
/// [`VmBuilder::kernel_helpers`](crate::VmBuilder::kernel_helpers): the map helpers, tail calls, the clock, random
/// numbers, packet access and checksums, ring buffers (see docs/helpers.md for every id).
///
/// Deterministic by default: the clock reads a fixed 1 s (set one with
/// [`KernelHelpers::clock`]), random numbers come from a fixed seed, `trace_printk` output is
/// dropped.
#[derive(Clone)]
pub struct KernelHelpers {
    clock: Clock,
    seed: u64,
    trace: Option<TraceSink>,
    cpus: usize,
}

impl fmt::Debug for KernelHelpers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelHelpers")
            .field("seed", &self.seed)
            .field("trace", &self.trace.is_some())
            .field("cpus", &self.cpus)
            .finish()
    }
}

impl Default for KernelHelpers {
    fn default() -> KernelHelpers {
        KernelHelpers::new()
    }
}

impl KernelHelpers {
    /// The helpers with a fixed clock (1 s), seed 0, no trace sink, and one CPU.
    pub fn new() -> KernelHelpers {
        KernelHelpers {
            clock: Arc::new(|| 1_000_000_000),
            seed: 0,
            trace: None,
            cpus: 1,
        }
    }

    /// The clock `ktime_get_ns` (and `ktime_get_boot_ns`, `ktime_get_coarse_ns`, `jiffies64` at
    /// 250 Hz) read, in nanoseconds.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> KernelHelpers {
        self.clock = Arc::new(clock);
        self
    }

    /// The seed of `get_prandom_u32`'s sequence.
    pub fn prandom_seed(mut self, seed: u64) -> KernelHelpers {
        self.seed = seed;
        self
    }

    /// Where `trace_printk` writes its lines.
    pub fn trace_sink(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> KernelHelpers {
        self.trace = Some(Arc::new(sink));
        self
    }

    /// How many CPUs an object's maps have (per-CPU values, and runs at once: a run claims
    /// one for its duration, waiting if all are busy). Default 1.
    pub fn cpus(mut self, cpus: usize) -> KernelHelpers {
        self.cpus = cpus.max(1);
        self
    }

    pub(crate) fn cpu_count(&self) -> usize {
        self.cpus
    }

    /// Registers every kernel helper in `helpers` (replacing helpers under the same ids),
    /// working on `maps`.
    pub(crate) fn install(&self, helpers: &mut Helpers, maps: Arc<ObjectMaps>) {
        let env = Arc::new(Env {
            maps,
            clock: self.clock.clone(),
            rng: AtomicU64::new(self.seed),
            trace: self.trace.clone(),
        });
        for &id in KERNEL_HELPER_IDS
            .iter()
            .chain([&inline_loop::FOR_EACH_STEP])
        {
            helpers.insert(
                id,
                KernelHelper {
                    id,
                    env: Arc::clone(&env),
                },
            );
        }
    }
}

/// An object's maps as runs see them: the set, and the region each map's values are mapped
/// at (`None` for maps whose elements programs never address).
#[derive(Debug)]
pub(crate) struct ObjectMaps {
    pub(crate) maps: Arc<Maps>,
    pub(crate) regions: Vec<Option<u64>>,
}

impl ObjectMaps {
    /// Numbers the value regions of `maps` from `first_region`.
    pub(crate) fn new(maps: Arc<Maps>, first_region: u64) -> ObjectMaps {
        let mut next = first_region;
        let regions = maps
            .iter()
            .map(|m| {
                m.values(0).map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        ObjectMaps { maps, regions }
    }

    /// The region ids used.
    pub(crate) fn region_count(&self) -> u64 {
        self.regions.iter().flatten().count() as u64
    }

    /// What the verifier needs to check accesses through `map_lookup_elem` results: each
    /// map with values, by the handle its `lddw` loads. Hash maps' lookups may return NULL;
    /// arrays' are checked for offsets only (the kernel proves a constant in-range key
    /// non-NULL, so a program may skip the check).
    pub(crate) fn verifier_view(&self) -> ebpf_verifier::MapLookup {
        let maps = self
            .maps
            .iter()
            .enumerate()
            .filter_map(|(index, map)| {
                let spec = map.spec();
                let may_be_null = match spec.map_type {
                    MapType::Hash
                    | MapType::PerCpuHash
                    | MapType::LruHash
                    | MapType::LruPerCpuHash => true,
                    MapType::Array | MapType::PerCpuArray => false,
                    _ => return None,
                };
                let handle = MAP_HANDLE_BASE | index as u64;
                // `lookup_offset` is a slot's offset in `values`, whose length never changes:
                // a whole value lies in the region every run maps (the admission checks the
                // length). A read-only map is read-only (frozen) or writable: stores unproven.
                let region = self
                    .regions
                    .get(index)
                    .copied()
                    .flatten()
                    .zip(map.values(0));
                let region = region.and_then(|(region, values)| {
                    Some(MapRegion {
                        handle,
                        region: u8::try_from(region).ok()?,
                        len: values.len() as u64,
                        value_size: spec.value_size,
                        writable: !spec.read_only_for_programs(),
                        // Values are `round_up_8(value_size)` apart from the region's start,
                        // in every map type above (`ebpf_maps`' `lookup_offset`).
                        align: 8,
                    })
                });
                Some(ebpf_verifier::MapValues {
                    handle,
                    name: map.name().to_string(),
                    value_size: spec.value_size,
                    may_be_null,
                    region,
                })
            })
            .collect();
        let outer_maps = self
            .maps
            .iter()
            .enumerate()
            .filter(|(_, map)| map.spec().map_type.is_of_maps())
            .map(|(index, map)| (MAP_HANDLE_BASE | index as u64, map.name().to_string()))
            .collect();
        ebpf_verifier::MapLookup {
            helper: MAP_LOOKUP_ELEM,
            maps,
            outer_maps,
            map_helpers: vec![
                MAP_UPDATE_ELEM,
                MAP_DELETE_ELEM,
                MAP_PUSH_ELEM,
                MAP_POP_ELEM,
                MAP_PEEK_ELEM,
                REDIRECT_MAP,
                RINGBUF_OUTPUT,
                RINGBUF_RESERVE,
                RINGBUF_QUERY,
            ],
        }
    }

    /// The map a handle names.
    fn decode(&self, handle: u64) -> Option<(usize, &Map)> {
        if handle & !0xffff_ffff != MAP_HANDLE_BASE {
            return None;
        }
        let index = (handle & 0xffff_ffff) as usize;
        Some((index, self.maps.by_index(index)?))
    }

    /// The map whose value region holds `addr` (its index and itself), and the offset of
    /// `addr` in it.
    fn by_address(&self, addr: u64) -> Option<(usize, &Map, usize)> {
        let region = layout::region_of(addr);
        let index = self.regions.iter().position(|r| *r == Some(region))?;
        Some((
            index,
            self.maps.by_index(index)?,
            layout::offset_of(addr) as usize,
        ))
    }

    /// Discards the ring buffer records a run reserved and left (see [`RunState::reserved`]).
    pub(crate) fn release(&self, reserved: &mut Vec<(usize, usize)>) {
        for (index, offset) in reserved.drain(..) {
            if let Some(map) = self.maps.by_index(index) {
                let _ = map.ring_commit(offset, true);
            }
        }
    }
}

/// The per-run state kernel helpers share, lent to each run through
/// [`ebpf_abi::MemoryMap::set_run_state`].
#[derive(Debug, Default)]
pub(crate) struct RunState {
    /// The CPU the run claimed: per-CPU values, `get_smp_processor_id`.
    pub(crate) cpu: usize,
    /// The context's kind.
    pub(crate) kind: Option<ProgramKind>,
    /// The program id a successful `bpf_tail_call` asked for.
    pub(crate) tail_call: Option<u32>,
    /// Tail calls taken so far in this run.
    pub(crate) tail_calls: u32,
    /// The target `bpf_redirect` recorded.
    pub(crate) redirect: Option<u32>,
    /// The entry `bpf_redirect_map` recorded: (the map's index, the key).
    pub(crate) redirect_map: Option<(u32, u32)>,
    /// How many programs the run's object has (valid tail-call targets).
    pub(crate) programs: u32,
    /// A reusable buffer for keys and values (allocated once per thread).
    pub(crate) buf: Vec<u8>,
    /// Ring buffer records this run reserved and has not submitted or discarded yet:
    /// (the map's index, the record's offset). The facade discards them when the run ends
    /// (the kernel's verifier refuses a program that can leak one; ours does not check).
    pub(crate) reserved: Vec<(usize, usize)>,
}

/// What every kernel helper of one set shares.
struct Env {
    maps: Arc<ObjectMaps>,
    clock: Clock,
    rng: AtomicU64,
    trace: Option<TraceSink>,
}

/// One kernel helper: its id picks what it does.
struct KernelHelper {
    id: u32,
    env: Arc<Env>,
}

fn no_state() -> HelperError {
    HelperError::failed("kernel helper called outside a kernel-context run")
}

/// The run's state, taken out for the call (and put back by [`with_state`]).
fn with_state<T>(
    memory: &mut dyn VmMemory,
    f: impl FnOnce(&mut RunState, &mut dyn VmMemory) -> Result<T, HelperError>,
) -> Result<T, HelperError> {
    let mut state = {
        let state = memory
            .run_state()
            .and_then(|s| s.downcast_mut::<RunState>())
            .ok_or_else(no_state)?;
        std::mem::take(state)
    };
    let result = f(&mut state, memory);
    if let Some(slot) = memory
        .run_state()
        .and_then(|s| s.downcast_mut::<RunState>())
    {
        *slot = state;
    }
    result
}

/// Reads `len` bytes at `addr` into `buf` (reused). The length is the program's, so the range
/// is checked before a byte is allocated for it: a length of 2^62 is the trap a read of it
/// would be, not an allocation the host cannot make (which aborts the process).
fn read_into(
    memory: &mut dyn VmMemory,
    buf: &mut Vec<u8>,
    addr: u64,
    len: u64,
) -> Result<(), HelperError> {
    memory.check_range(addr, len, false)?;
    buf.clear();
    buf.resize(len as usize, 0);
    memory.read(addr, buf)?;
    Ok(())
}

/// Zeroes `len` bytes at `addr`, as one write of them would: the same trap when the range is
/// not writable, and then nothing written. In chunks, since the length is the program's.
fn zero_fill(memory: &mut dyn VmMemory, addr: u64, len: u64) -> Result<(), HelperError> {
    const ZEROS: [u8; 256] = [0; 256];
    memory.check_range(addr, len, true)?;
    let mut done = 0;
    loop {
        let n = (len - done).min(ZEROS.len() as u64);
        // The range is mapped (checked above), so only a read-only region refuses a chunk,
        // and it refuses the first one.
        memory
            .write(addr.wrapping_add(done), &ZEROS[..n as usize])
            .map_err(|_| TrapKind::OutOfBounds {
                addr,
                len,
                write: true,
            })?;
        done += n;
        if done == len {
            return Ok(());
        }
    }
}

fn map_result(r: Result<(), MapError>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.helper_result(),
    }
}

impl Helper for KernelHelper {
    fn call(&self, a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
        let env = &*self.env;
        match self.id {
            KTIME_GET_NS | KTIME_GET_BOOT_NS | KTIME_GET_COARSE_NS => Ok((env.clock)()),
            JIFFIES64 => Ok((env.clock)() / 4_000_000),
            GET_PRANDOM_U32 => {
                let mut rng = ebpf_abi::SplitMix64::new(
                    env.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
                );
                Ok(rng.next_u64() & 0xffff_ffff)
            }
            GET_SMP_PROCESSOR_ID => with_state(memory, |s, _| Ok(s.cpu as u64)),
            TRACE_PRINTK => trace_printk(env, a, memory),
            REDIRECT => with_state(memory, |s, _| {
                if s.kind == Some(ProgramKind::Tc) {
                    // TC: `BPF_F_INGRESS` (1) is the only flag; anything else is TC_ACT_SHOT.
                    if a[1] & !1 != 0 {
                        return Ok(2);
                    }
                    s.redirect = Some(a[0] as u32);
                    s.redirect_map = None;
                    return Ok(7); // TC_ACT_REDIRECT
                }
                if a[1] != 0 {
                    return Ok(0); // XDP_ABORTED: flags must be 0
                }
                s.redirect = Some(a[0] as u32);
                s.redirect_map = None;
                Ok(4)
            }),
            CSUM_DIFF => csum_diff(a, memory),
            TAIL_CALL => with_state(memory, |s, _| {
                let Some((_, map)) = env.maps.decode(a[1]) else {
                    return Err(HelperError::failed("tail_call: not a map"));
                };
                let target = map.program_at(a[2] as u32);
                match target {
                    Some(id) if id < s.programs && s.tail_calls < MAX_TAIL_CALLS => {
                        s.tail_calls += 1;
                        s.tail_call = Some(id);
                        Err(tail_call_taken())
                    }
                    _ => Ok(errno(ENOENT)),
                }
            }),
            SKB_LOAD_BYTES => with_state(memory, |s, memory| {
                let (data, end) = packet_bounds(memory, s, a[0])?;
                let (off, len) = (a[1], a[3]);
                let ok = off <= i32::MAX as u64 && within(data, off, len, end);
                if ok {
                    read_into(memory, &mut s.buf, data + off, len)?;
                    memory.write(a[2], &s.buf)?;
                    Ok(0)
                } else {
                    zero_fill(memory, a[2], len)?;
                    Ok(errno(EFAULT))
                }
            }),
            SKB_STORE_BYTES => with_state(memory, |s, memory| {
                if !s.kind.is_some_and(ProgramKind::is_skb) {
                    return Ok(errno(EINVAL));
                }
                if a[4] & !3 != 0 {
                    return Ok(errno(EINVAL));
                }
                let (data, end) = packet_bounds(memory, s, a[0])?;
                let (off, len) = (a[1], a[3]);
                if off > 0xffff || !within(data, off, len, end) {
                    return Ok(errno(EFAULT));
                }
                read_into(memory, &mut s.buf, a[2], len)?;
                memory.write(data + off, &s.buf)?;
                Ok(0)
            }),
            L3_CSUM_REPLACE | L4_CSUM_REPLACE => with_state(memory, |s, memory| {
                if !s.kind.is_some_and(ProgramKind::is_skb) {
                    return Ok(errno(EINVAL));
                }
                let (data, end) = packet_bounds(memory, s, a[0])?;
                csum_replace(self.id == L4_CSUM_REPLACE, a, data, end, memory)
            }),
            GET_HASH_RECALC => with_state(memory, |s, memory| {
                if !s.kind.is_some_and(ProgramKind::is_skb) {
                    return Ok(0);
                }
                let mut hash = [0u8; 4];
                memory.read(a[0].wrapping_add(68), &mut hash)?;
                Ok(u64::from(u32::from_le_bytes(hash)))
            }),
            XDP_ADJUST_HEAD | XDP_ADJUST_TAIL => with_state(memory, |s, memory| {
                if s.kind != Some(ProgramKind::Xdp) {
                    return Ok(errno(EINVAL));
                }
                adjust(self.id == XDP_ADJUST_HEAD, a, memory)
            }),
            inline_loop::FOR_EACH_STEP => for_each_step(env, a, memory),
            _ => self.map_helper(a, memory),
        }
    }
}

/// The inlined `for_each_map_elem`'s step (see `inline_loop`): of map `a[0]`, the element
/// whose value lies first at or after offset `a[1]` in the map's region, its key copied to
/// `a[2]`, its value's address returned; 0 past the last element. Arrays are visited in index
/// order, hashes in the order of their slots (the kernel's is its buckets'). A step is O(1)
/// for an array and scans a hash's slots from the cursor to the element
/// ([`Map::element_at_or_after`]): a walk costs the map's size once, not per step, and
/// allocates nothing (the key goes through the run's buffer).
fn for_each_step(env: &Env, a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let Some((index, map)) = env.maps.decode(a[0]) else {
        return Err(HelperError::failed(format!(
            "for_each_map_elem called with {:#x}, which is not a map",
            a[0]
        )));
    };
    let Some(region) = env.maps.regions.get(index).copied().flatten() else {
        return Ok(0);
    };
    let cursor = usize::try_from(a[1]).unwrap_or(usize::MAX);
    let step = |key: &mut Vec<u8>, memory: &mut dyn VmMemory| {
        let Ok(Some(offset)) = map.element_at_or_after(cursor, key) else {
            return Ok(0);
        };
        if key.len() > (-i32::from(inline_loop::FOR_EACH_KEY) - 32) as usize {
            return Err(HelperError::failed(
                "for_each_map_elem: keys longer than 480 bytes do not fit the frame",
            ));
        }
        memory.write(a[2], key)?;
        Ok(layout::vm_addr(region, offset as u64))
    };
    // `Vm::run` (no kernel context) has no run state, so no buffer to reuse.
    let has_state = memory
        .run_state()
        .is_some_and(|s| s.downcast_mut::<RunState>().is_some());
    if has_state {
        with_state(memory, |state, memory| step(&mut state.buf, memory))
    } else {
        step(&mut Vec::new(), memory)
    }
}

/// The helper error a taken tail call ends its program with. The facade recognises it by the
/// pending target in the run state, never by the text, and never lets it out of
/// `Vm::run_packet`: so it has no message, which a `String` holds without allocating (a taken
/// tail call allocated on every run before).
fn tail_call_taken() -> HelperError {
    HelperError::Failed(String::new())
}

impl KernelHelper {
    /// The helpers whose first argument is a map.
    fn map_helper(&self, a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
        let maps = &self.env.maps;
        if matches!(self.id, RINGBUF_SUBMIT | RINGBUF_DISCARD) {
            let Some((index, map, offset)) = maps.by_address(a[0]) else {
                return Err(HelperError::failed("ringbuf submit/discard of no record"));
            };
            // Only a record this run reserved: the kernel's verifier tracks the reference, ours
            // does not, and a record another run still fills (a header at a guessable offset)
            // must not be published or dropped under it.
            return with_state(memory, |s, _| {
                let Some(at) = s.reserved.iter().position(|&r| r == (index, offset)) else {
                    return Err(HelperError::failed(
                        "ringbuf submit/discard of a record this run did not reserve",
                    ));
                };
                match map.ring_commit(offset, self.id == RINGBUF_DISCARD) {
                    Ok(true) => {
                        s.reserved.swap_remove(at);
                        Ok(0)
                    }
                    _ => Err(HelperError::failed("ringbuf submit/discard of no record")),
                }
            });
        }
        let handle = if self.id == PERF_EVENT_OUTPUT {
            a[1]
        } else {
            a[0]
        };
        let Some((index, map)) = maps.decode(handle) else {
            return Err(HelperError::failed(format!(
                "{} called with {:#x}, which is not a map",
                helper_name(self.id).unwrap_or("helper"),
                handle
            )));
        };
        let spec = *map.spec();
        let key_size = spec.key_size as usize;
        let value_size = spec.value_size as usize;
        with_state(memory, |s, memory| match self.id {
            // An outer map's lookup gives the inner map's handle, which the program may only
            // pass to map helpers (the verifier refuses a dereference).
            MAP_LOOKUP_ELEM if spec.map_type.is_of_maps() => {
                read_into(memory, &mut s.buf, a[1], key_size as u64)?;
                match map.inner_at(&s.buf) {
                    Ok(Some(inner)) => Ok(MAP_HANDLE_BASE | inner as u64),
                    _ => Ok(0),
                }
            }
            MAP_LOOKUP_ELEM => {
                read_into(memory, &mut s.buf, a[1], key_size as u64)?;
                match map.lookup_offset(&s.buf) {
                    Ok(Some(off)) => match maps.regions.get(index).copied().flatten() {
                        Some(region) => Ok(layout::vm_addr(region, off as u64)),
                        None => Ok(0),
                    },
                    _ => Ok(0),
                }
            }
            MAP_UPDATE_ELEM => {
                s.buf.clear();
                s.buf.resize(key_size + value_size, 0);
                let (key, value) = s.buf.split_at_mut(key_size);
                memory.read(a[1], key)?;
                memory.read(a[2], value)?;
                let r = UpdateFlags::from_raw(a[3])
                    .and_then(|flags| map.update_on_cpu(s.cpu, key, value, flags));
                Ok(map_result(r))
            }
            MAP_DELETE_ELEM => {
                read_into(memory, &mut s.buf, a[1], key_size as u64)?;
                Ok(map_result(map.delete(&s.buf)))
            }
            MAP_PUSH_ELEM => {
                read_into(memory, &mut s.buf, a[1], value_size as u64)?;
                let r = UpdateFlags::from_raw(a[2]).and_then(|f| map.push(&s.buf, f));
                Ok(map_result(r))
            }
            MAP_POP_ELEM | MAP_PEEK_ELEM => {
                let r = if self.id == MAP_POP_ELEM {
                    map.pop()
                } else {
                    map.peek()
                };
                match r {
                    Ok(value) => {
                        memory.write(a[1], &value)?;
                        Ok(0)
                    }
                    Err(e) => Ok(e.helper_result()),
                }
            }
            RINGBUF_OUTPUT => {
                if a[3] & !3 != 0 {
                    return Ok(errno(EINVAL));
                }
                read_into(memory, &mut s.buf, a[1], a[2])?;
                match map.ring_output(&s.buf) {
                    Ok(true) => Ok(0),
                    Ok(false) => Ok(errno(EAGAIN)),
                    Err(e) => Ok(e.helper_result()),
                }
            }
            RINGBUF_RESERVE => {
                if a[2] != 0 {
                    return Ok(0);
                }
                match (
                    map.ring_reserve(a[1]),
                    maps.regions.get(index).copied().flatten(),
                ) {
                    (Ok(Some(off)), Some(region)) => {
                        s.reserved.push((index, off));
                        Ok(layout::vm_addr(region, off as u64))
                    }
                    _ => Ok(0),
                }
            }
            REDIRECT_MAP => {
                // `__bpf_xdp_redirect_map`: the low two bits of the flags are the action on a
                // miss; devmaps also take BPF_F_BROADCAST (8) and BPF_F_EXCLUDE_INGRESS (16).
                const ACTIONS: u64 = 3;
                const BROADCAST: u64 = 8;
                const EXCLUDE_INGRESS: u64 = 16;
                let flags = a[2];
                let allowed = match spec.map_type {
                    MapType::DevMap | MapType::DevMapHash => ACTIONS | BROADCAST | EXCLUDE_INGRESS,
                    _ => ACTIONS,
                };
                if flags & !allowed != 0 {
                    return Ok(0); // XDP_ABORTED
                }
                let key = a[1] as u32;
                let Some(found) = map.redirect_entry(key) else {
                    return Ok(0);
                };
                if !found && flags & BROADCAST == 0 {
                    return Ok(flags & ACTIONS);
                }
                s.redirect_map = Some((index as u32, key));
                s.redirect = None;
                Ok(4) // XDP_REDIRECT
            }
            RINGBUF_QUERY => match map.ring_query() {
                Ok((avail, size)) => Ok(match a[1] {
                    0 => avail,
                    1 => size,
                    _ => 0,
                }),
                Err(_) => Ok(0),
            },
            // Packet programs' `bpf_xdp_event_output` / `bpf_skb_event_output`: the record is
            // `meta` then, with `BPF_F_CTXLEN_MASK`, that many of the packet's first bytes.
            PERF_EVENT_OUTPUT => {
                const CURRENT_CPU: u64 = 0xffff_ffff;
                const CTXLEN_MASK: u64 = 0xf_ffff << 32;
                if a[2] & !(CTXLEN_MASK | 0xffff_ffff) != 0 {
                    return Ok(errno(EINVAL));
                }
                let packet_len = (a[2] & CTXLEN_MASK) >> 32;
                let index = a[2] & 0xffff_ffff;
                let index = if index == CURRENT_CPU {
                    s.cpu
                } else {
                    index as usize
                };
                read_into(memory, &mut s.buf, a[3], a[4])?;
                if packet_len != 0 {
                    let (data, data_end) = packet_bounds(memory, s, a[0])?;
                    if !within(data, 0, packet_len, data_end) {
                        return Ok(errno(EFAULT));
                    }
                    memory.check_range(data, packet_len, false)?;
                    let meta_len = s.buf.len();
                    s.buf.resize(meta_len + packet_len as usize, 0);
                    memory.read(data, s.buf.get_mut(meta_len..).unwrap_or_default())?;
                }
                Ok(map_result(map.perf_output(index, &s.buf)))
            }
            _ => Err(HelperError::failed("not a kernel helper")),
        })
    }
}

/// The packet's `[data, data_end)` VM addresses, from the context's hidden slots.
fn packet_bounds(
    memory: &mut dyn VmMemory,
    s: &RunState,
    ctx: u64,
) -> Result<(u64, u64), HelperError> {
    let Some(kind) = s.kind else {
        return Err(no_state());
    };
    let hidden = ctx.wrapping_add(kind.hidden() as u64);
    Ok((
        memory.read_u64(hidden)?,
        memory.read_u64(hidden.wrapping_add(8))?,
    ))
}

/// Whether `len` bytes at `start + off` end no later than `end`. Every operand is the
/// program's (a context pointer can point at a fake context on its stack), so nothing may wrap.
fn within(start: u64, off: u64, len: u64, end: u64) -> bool {
    start
        .checked_add(off)
        .and_then(|p| p.checked_add(len))
        .is_some_and(|e| e <= end)
}

/// `xdp_adjust_head(ctx, delta)` / `xdp_adjust_tail(ctx, delta)`: moves the packet's start or
/// end within the buffer, as the kernel bounds it (the head no lower than the room for the
/// kernel's `xdp_frame`, 40 bytes, plus the metadata; at least `ETH_HLEN` bytes left; the tail
/// no later than the tailroom). New bytes at the tail are zeroed.
fn adjust(head: bool, a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    const XDP_FRAME: u64 = 40;
    let hidden = a[0].wrapping_add(context::ProgramKind::Xdp.hidden() as u64);
    // The context may be a fake one on the program's stack: its words are the program's, and
    // an address or a bound that would wrap is refused as the kernel refuses a bad delta.
    let data = memory.read_u64(hidden)?;
    let end = memory.read_u64(hidden.wrapping_add(8))?;
    let meta = memory.read_u64(hidden.wrapping_add(16))?;
    let base = layout::vm_addr(layout::INPUT, 0);
    let delta = a[1] as i32 as i64;
    let eth = context::ETH_HLEN as u64;
    if head {
        let new = data.wrapping_add(delta as u64);
        let lowest = data
            .checked_sub(meta)
            .and_then(|metalen| (base + XDP_FRAME).checked_add(metalen));
        if lowest.is_none_or(|lowest| new < lowest) || new > end.saturating_sub(eth) {
            return Ok(errno(EINVAL));
        }
        memory.write_u64(hidden, new)?;
        memory.write_u64(hidden.wrapping_add(16), meta.wrapping_add(delta as u64))?;
        memory.write(a[0], &(layout::offset_of(new) as u32).to_le_bytes())?;
        memory.write(
            a[0].wrapping_add(8),
            &(layout::offset_of(new) as u32).to_le_bytes(),
        )?;
    } else {
        let new = end.wrapping_add(delta as u64);
        let hard_end = base + (context::Packet::BUFFER - context::Packet::TAILROOM) as u64;
        if new > hard_end || data.checked_add(eth).is_none_or(|least| new < least) {
            return Ok(errno(EINVAL));
        }
        // Grown: the new tail reads as zeros. In a real context the range is inside the
        // packet buffer; a forged one's `end` is the program's word, and a range that is not
        // all writable traps as one write of it would, before any byte is written (the
        // kernel's verifier refuses such a program; a partial zeroing would be ours alone).
        if new > end {
            zero_fill(memory, end, new - end)?;
        }
        memory.write_u64(hidden.wrapping_add(8), new)?;
        memory.write(
            a[0].wrapping_add(4),
            &(layout::offset_of(new) as u32).to_le_bytes(),
        )?;
    }
    Ok(0)
}

/// `csum_diff(from, from_size, to, to_size, seed)`: the 32-bit ones'-complement sum of `seed`,
/// the complement of each 32-bit word of `from` and each word of `to` (sizes multiples of 4,
/// together at most 512 bytes), as x86's `csum_partial` folds it.
fn csum_diff(a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let (from_size, to_size) = (a[1], a[3]);
    if (from_size | to_size) % 4 != 0 || from_size.checked_add(to_size).is_none_or(|n| n > 512) {
        return Ok(errno(EINVAL));
    }
    let mut sum = a[4] & 0xffff_ffff;
    let mut word = [0u8; 4];
    for (base, size, invert) in [(a[0], from_size, true), (a[2], to_size, false)] {
        for i in 0..size / 4 {
            memory.read(base.wrapping_add(4 * i), &mut word)?;
            // Memory is little-endian on every host, and so is the sum (x86's, which the
            // kernel tests ran on), whatever the host's own order.
            let w = u32::from_le_bytes(word);
            sum += u64::from(if invert { !w } else { w });
        }
    }
    while sum >> 32 != 0 {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    Ok(sum)
}

/// Ones'-complement addition of 32-bit words (end-around carry).
fn ones_add(a: u32, b: u32) -> u32 {
    let (sum, carry) = a.overflowing_add(b);
    sum.wrapping_add(u32::from(carry))
}

/// `csum_fold`: the 32-bit sum folded to 16 bits, complemented.
fn csum_fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// `l3_csum_replace(skb, offset, from, to, flags)` and `l4_csum_replace`: the 16-bit checksum
/// at `offset` in the packet updated for a field changing from `from` to `to` (`flags & 0xf`
/// is the field's size: 2, 4, or 0 for `to` as a precomputed difference), as the kernel does
/// it for a packet without checksum offload (`BPF_F_PSEUDO_HDR` then changes nothing).
/// l4 also knows `BPF_F_MARK_MANGLED_0` (a zero checksum, "none" for UDP, stays zero and a
/// result of zero becomes `0xffff`) and `BPF_F_MARK_ENFORCE`.
fn csum_replace(
    l4: bool,
    a: [u64; 5],
    data: u64,
    end: u64,
    memory: &mut dyn VmMemory,
) -> Result<u64, HelperError> {
    const SIZE: u64 = 0xf;
    const PSEUDO_HDR: u64 = 0x10;
    const MANGLED_0: u64 = 0x20;
    const ENFORCE: u64 = 0x40;
    const IPV6: u64 = 0x80;
    let (offset, from, to, flags) = (a[1], a[2], a[3], a[4]);
    let allowed = if l4 {
        SIZE | PSEUDO_HDR | MANGLED_0 | ENFORCE | IPV6
    } else {
        SIZE
    };
    if flags & !allowed != 0 {
        return Ok(errno(EINVAL));
    }
    if offset > 0xffff || offset & 1 != 0 || !within(data, offset, 2, end) {
        return Ok(errno(EFAULT));
    }
    let at = data + offset;
    let mut field = [0u8; 2];
    memory.read(at, &mut field)?;
    let sum = u16::from_le_bytes(field);
    let mangled_zero = l4 && flags & MANGLED_0 != 0;
    if mangled_zero && flags & ENFORCE == 0 && sum == 0 {
        return Ok(0);
    }
    let unfolded = !u32::from(sum);
    let new = match flags & SIZE {
        0 if from != 0 => return Ok(errno(EINVAL)),
        0 => csum_fold(ones_add(to as u32, unfolded)),
        2 => {
            let tmp = ones_add(unfolded, !(u32::from(from as u16)) & 0xffff);
            csum_fold(ones_add(tmp, u32::from(to as u16)))
        }
        4 => csum_fold(ones_add(ones_add(unfolded, !(from as u32)), to as u32)),
        _ => return Ok(errno(EINVAL)),
    };
    let new = if mangled_zero && new == 0 {
        0xffff
    } else {
        new
    };
    memory.write(at, &new.to_le_bytes())?;
    Ok(0)
}

/// `trace_printk(fmt, fmt_size, a, b, c)`: formats `%d %i %u %x %lld %llu %llx %ld %lu %lx
/// %p %%` with up to three arguments and hands the line to the sink; returns its length.
fn trace_printk(env: &Env, a: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let size = (a[1] as usize).min(1024);
    let mut fmt = vec![0u8; size];
    memory.read(a[0], &mut fmt)?;
    let fmt = fmt.split(|&b| b == 0).next().unwrap_or(&[]);
    let mut out = String::new();
    let mut args = [a[2], a[3], a[4]].into_iter();
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        if c != b'%' {
            out.push(char::from(c));
            continue;
        }
        let mut long = 0;
        while fmt.get(i) == Some(&b'l') {
            long += 1;
            i += 1;
        }
        let conv = fmt.get(i).copied().unwrap_or(b'%');
        i += 1;
        let v = match conv {
            b'%' => {
                out.push('%');
                continue;
            }
            _ => args.next().unwrap_or(0),
        };
        let v32 = long == 0;
        match conv {
            b'd' | b'i' if v32 => out.push_str(&(v as u32 as i32).to_string()),
            b'd' | b'i' => out.push_str(&(v as i64).to_string()),
            b'u' if v32 => out.push_str(&(v as u32).to_string()),
            b'u' => out.push_str(&v.to_string()),
            b'x' if v32 => out.push_str(&format!("{:x}", v as u32)),
            b'x' => out.push_str(&format!("{v:x}")),
            b'p' => out.push_str(&format!("{v:#x}")),
            other => {
                out.push('%');
                out.push(char::from(other));
            }
        }
    }
    if let Some(sink) = &env.trace {
        sink(&out);
    }
    Ok(out.len() as u64)
}
