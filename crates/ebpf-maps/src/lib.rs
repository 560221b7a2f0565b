//! `ebpf-maps`: BPF maps in user space, shared safely between concurrent runs and the host.
//!
//! What it is for: the map types real XDP and socket-filter programs use — array, hash, LRU
//! hash, their per-CPU forms, prog array (tail calls), ring buffer and perf event array
//! (records the host reads), queue and stack — with the kernel's semantics for concurrent use:
//! updates are atomic per element where the kernel's are (a hash update replaces the element;
//! an array update writes it in place, word by word), hash lookups take no lock, and per-CPU
//! values belong to one run at a time ([`Cpus`]). A [`Maps`] set is the host's handle: create,
//! look up, update, delete, iterate.
//!
//! Map values live in the VM's address space: [`Map::values`] is the [`SharedMemory`] an
//! embedder maps as a region, and a program-side lookup ([`Map::lookup_offset`]) gives the
//! offset of the value in it, so `map_lookup_elem` returns an ordinary VM pointer that every
//! engine bounds-checks like any other.
//!
//! What it is not for: running programs or knowing any engine (the facade wires maps into
//! runs and helpers), parsing objects (`ebpf-elf` describes maps; it creates none), or the
//! kernel's map types that need kernel objects (sockets, cgroups, devices' queues, stack
//! traces): [`MapType::from_kernel`] names them and [`Map::new`] refuses them.
//!
//! ```
//! use ebpf_maps::{MapSpec, MapType, Maps, UpdateFlags};
//!
//! let mut maps = Maps::new(2);
//! let hits = maps
//!     .create("hits", MapSpec::new(MapType::Hash, 4, 8, 1024))
//!     .unwrap();
//! hits.update(&7u32.to_le_bytes(), &1u64.to_le_bytes(), UpdateFlags::Any).unwrap();
//! assert_eq!(hits.lookup(&7u32.to_le_bytes()).unwrap(), Some(1u64.to_le_bytes().to_vec()));
//! ```

#![forbid(unsafe_code)]

mod array;
mod cpus;
mod error;
mod hash;
mod map;
mod perf;
mod prog_array;
mod queue;
mod ringbuf;
mod words;

pub use cpus::{CpuSlot, Cpus};
pub use ebpf_abi::SharedMemory;
pub use error::MapError;
pub use map::{BPF_F_INNER_MAP, Map, Maps};

/// A map's type, numbered as the kernel numbers `enum bpf_map_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH` (1).
    Hash,
    /// `BPF_MAP_TYPE_ARRAY` (2).
    Array,
    /// `BPF_MAP_TYPE_PROG_ARRAY` (3): program ids, for tail calls.
    ProgArray,
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY` (4): records the host reads, one buffer per CPU.
    PerfEventArray,
    /// `BPF_MAP_TYPE_PERCPU_HASH` (5).
    PerCpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (6).
    PerCpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH` (9): a hash that evicts the least recently used element
    /// when full.
    LruHash,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH` (10).
    LruPerCpuHash,
    /// `BPF_MAP_TYPE_QUEUE` (22): first in, first out.
    Queue,
    /// `BPF_MAP_TYPE_STACK` (23): last in, first out.
    Stack,
    /// `BPF_MAP_TYPE_RINGBUF` (27): variable-length records the host reads.
    RingBuf,
    /// `BPF_MAP_TYPE_DEVMAP` (14): interfaces by index, targets of `bpf_redirect_map`.
    DevMap,
    /// `BPF_MAP_TYPE_CPUMAP` (16): CPUs (their queue sizes), targets of `bpf_redirect_map`.
    CpuMap,
    /// `BPF_MAP_TYPE_XSKMAP` (17): AF_XDP sockets by queue, targets of `bpf_redirect_map`.
    XskMap,
    /// `BPF_MAP_TYPE_DEVMAP_HASH` (25): interfaces by any `u32` key.
    DevMapHash,
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS` (12): slots holding maps of the same set, all like one
    /// template ([`Maps::create_of_maps`]); a program's lookup gives the inner map.
    ArrayOfMaps,
    /// `BPF_MAP_TYPE_HASH_OF_MAPS` (13): maps of the same set by any key.
    HashOfMaps,
    /// Any other kernel map type, by number: described, never created.
    Other(u32),
}

impl MapType {
    /// The type the kernel numbers `id`.
    pub fn from_kernel(id: u32) -> MapType {
        match id {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            4 => MapType::PerfEventArray,
            5 => MapType::PerCpuHash,
            6 => MapType::PerCpuArray,
            9 => MapType::LruHash,
            10 => MapType::LruPerCpuHash,
            22 => MapType::Queue,
            23 => MapType::Stack,
            27 => MapType::RingBuf,
            14 => MapType::DevMap,
            16 => MapType::CpuMap,
            17 => MapType::XskMap,
            25 => MapType::DevMapHash,
            12 => MapType::ArrayOfMaps,
            13 => MapType::HashOfMaps,
            other => MapType::Other(other),
        }
    }

    /// The kernel's number for this type.
    pub fn kernel_id(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PerfEventArray => 4,
            MapType::PerCpuHash => 5,
            MapType::PerCpuArray => 6,
            MapType::LruHash => 9,
            MapType::LruPerCpuHash => 10,
            MapType::Queue => 22,
            MapType::Stack => 23,
            MapType::RingBuf => 27,
            MapType::DevMap => 14,
            MapType::CpuMap => 16,
            MapType::XskMap => 17,
            MapType::DevMapHash => 25,
            MapType::ArrayOfMaps => 12,
            MapType::HashOfMaps => 13,
            MapType::Other(id) => id,
        }
    }

    /// Whether each CPU has its own copy of every value.
    pub fn is_per_cpu(self) -> bool {
        matches!(
            self,
            MapType::PerCpuArray | MapType::PerCpuHash | MapType::LruPerCpuHash
        )
    }

    /// The kernel's name (`hash`, `percpu_array`, …), as `bpftool` prints it.
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::ProgArray => "prog_array",
            MapType::PerfEventArray => "perf_event_array",
            MapType::PerCpuHash => "percpu_hash",
            MapType::PerCpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::LruPerCpuHash => "lru_percpu_hash",
            MapType::Queue => "queue",
            MapType::Stack => "stack",
            MapType::RingBuf => "ringbuf",
            MapType::DevMap => "devmap",
            MapType::CpuMap => "cpumap",
            MapType::XskMap => "xskmap",
            MapType::DevMapHash => "devmap_hash",
            MapType::ArrayOfMaps => "array_of_maps",
            MapType::HashOfMaps => "hash_of_maps",
            MapType::Other(id) => kernel_type_name(id),
        }
    }

    /// Whether its values are maps (an array or hash of maps).
    pub fn is_of_maps(self) -> bool {
        matches!(self, MapType::ArrayOfMaps | MapType::HashOfMaps)
    }

    /// Whether `bpf_redirect_map` takes it: a devmap, devmap hash, cpumap or xskmap.
    pub fn is_redirect(self) -> bool {
        matches!(
            self,
            MapType::DevMap | MapType::CpuMap | MapType::XskMap | MapType::DevMapHash
        )
    }
}

/// Names of the kernel map types this crate does not implement (for messages).
fn kernel_type_name(id: u32) -> &'static str {
    match id {
        7 => "stack_trace",
        8 => "cgroup_array",
        11 => "lpm_trie",
        12 => "array_of_maps",
        13 => "hash_of_maps",
        14 => "devmap",
        15 => "sockmap",
        16 => "cpumap",
        17 => "xskmap",
        18 => "sockhash",
        19 => "cgroup_storage",
        20 => "reuseport_sockarray",
        21 => "percpu_cgroup_storage",
        24 => "sk_storage",
        25 => "devmap_hash",
        26 => "struct_ops",
        28 => "inode_storage",
        29 => "task_storage",
        30 => "bloom_filter",
        31 => "user_ringbuf",
        32 => "cgrp_storage",
        33 => "arena",
        _ => "unknown",
    }
}

impl core::fmt::Display for MapType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapType::Other(id) => write!(f, "{} (type {id})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// What a map is: its type, key and value sizes, capacity and flags (`struct bpf_map_def`,
/// or the attributes of a BTF-defined map).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapSpec {
    /// The type.
    pub map_type: MapType,
    /// Key size in bytes (4 for arrays, 0 for queues, stacks and ring buffers).
    pub key_size: u32,
    /// Value size in bytes (0 for ring buffers).
    pub value_size: u32,
    /// Capacity: elements, or bytes for a ring buffer.
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_NO_PREALLOC`, …): kept, and ignored where they only tune the
    /// kernel's memory use.
    pub flags: u32,
}

/// `BPF_F_RDONLY_PROG` in [`MapSpec::flags`]: programs may only read the map (libbpf sets
/// it on an object's `.rodata`).
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;

impl MapSpec {
    /// Whether programs may only read the map ([`BPF_F_RDONLY_PROG`]).
    pub fn read_only_for_programs(&self) -> bool {
        self.flags & BPF_F_RDONLY_PROG != 0
    }

    /// A spec without flags.
    pub fn new(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
        }
    }
}

/// How an update treats an existing element (the kernel's `BPF_ANY`, `BPF_NOEXIST`,
/// `BPF_EXIST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateFlags {
    /// `BPF_ANY` (0): create or replace.
    Any,
    /// `BPF_NOEXIST` (1): create only; an existing key is [`MapError::Exists`].
    NoExist,
    /// `BPF_EXIST` (2): replace only; a missing key is [`MapError::NotFound`]. For a queue or
    /// stack: when full, drop the oldest element.
    Exist,
}

impl UpdateFlags {
    /// The flags a program or the host passed as a number (`BPF_F_LOCK` and unknown bits are
    /// [`MapError::InvalidFlags`]).
    pub fn from_raw(flags: u64) -> Result<UpdateFlags, MapError> {
        match flags {
            0 => Ok(UpdateFlags::Any),
            1 => Ok(UpdateFlags::NoExist),
            2 => Ok(UpdateFlags::Exist),
            _ => Err(MapError::InvalidFlags { flags }),
        }
    }
}

/// Rounds `n` up to a multiple of 8: the stride of values (the kernel's `round_up(size, 8)`).
pub fn round_up_8(n: u32) -> usize {
    (n as usize).div_ceil(8) * 8
}

/// The index a 4-byte key names (arrays, prog arrays).
pub(crate) fn u32_key(key: &[u8]) -> Result<u32, MapError> {
    let key: [u8; 4] = key.try_into().map_err(|_| MapError::KeySize {
        expected: 4,
        got: key.len(),
    })?;
    Ok(u32::from_le_bytes(key))
}

/// `get_next_key` of an indexed map of `len` elements: index 0 for `None` or an index out of
/// range, else the next index; `None` after the last.
pub(crate) fn next_index(key: Option<&[u8]>, len: u32) -> Result<Option<Vec<u8>>, MapError> {
    let next = match key {
        None => 0,
        Some(k) => match u32_key(k)? {
            i if i < len => u64::from(i) + 1,
            _ => 0,
        },
    };
    Ok((next < u64::from(len)).then(|| (next as u32).to_le_bytes().to_vec()))
}
