//! [`Map`] (one map of any type, one API) and [`Maps`] (a program's set of maps and its CPUs).

use std::sync::{Arc, OnceLock};

use ebpf_abi::SharedMemory;

use crate::array::Array;
use crate::cpus::Cpus;
use crate::hash::{Hash, Write};
use crate::perf::PerfEventArray;
use crate::prog_array::ProgArray;
use crate::queue::Queue;
use crate::ringbuf::RingBuf;
use crate::{MapError, MapSpec, MapType, UpdateFlags, round_up_8};

#[derive(Debug)]
enum Kind {
    Array(Array),
    Hash(Hash),
    Queue(Queue),
    RingBuf(RingBuf),
    Perf(PerfEventArray),
    Prog(ProgArray),
    /// A devmap, devmap hash, cpumap or xskmap: a hash of present entries (the array types'
    /// keys bounded by `max_entries`), so that a slot can be empty and a program's lookup
    /// finds the value in place.
    Redirect(Hash),
    /// An array or hash of maps.
    OfMaps(OfMaps),
}

/// An array or hash of maps: each slot holds the index of a map of the same [`Maps`] set (the
/// kernel's slots hold map pointers; an index into the set, whose maps live as long as it,
/// keeps a run's lookup from ever seeing a freed map). Every inner map is like `template`.
#[derive(Debug)]
struct OfMaps {
    template: MapSpec,
    /// An array of maps: indices as a prog array keeps program ids (an atomic `u32` per
    /// slot, a swap atomic for concurrent runs).
    array: Option<ProgArray>,
    /// A hash of maps: indices as 4-byte values.
    hash: Option<Hash>,
}

/// `BPF_F_INNER_MAP`: an inner array map's `max_entries` need not match the template's.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;

/// One map. `Send + Sync`: share it (`Arc<Map>`) between the host and concurrent runs.
///
/// Two views of the same elements:
/// - the **program's**, on a CPU ([`Map::values`], [`Map::lookup_offset`],
///   [`Map::update_on_cpu`]): values in place, in the region a run maps;
/// - the **host's** ([`Map::lookup`], [`Map::update`], [`Map::entries`]): copies, with a
///   per-CPU map's value for every CPU side by side, each padded to a multiple of 8 bytes
///   (the layout of the kernel's `bpf(BPF_MAP_LOOKUP_ELEM)`).
#[derive(Debug)]
pub struct Map {
    name: String,
    spec: MapSpec,
    cpus: usize,
    kind: Kind,
    /// The values when the map was frozen ([`Map::freeze`]), one copy per CPU (per-CPU maps)
    /// or one: they never change again.
    frozen: OnceLock<Box<[Box<[u8]>]>>,
}

impl Map {
    /// The most memory one map may take (1 GiB): larger definitions are
    /// [`MapError::TooLarge`], not an allocation failure.
    pub const MAX_BYTES: u64 = 1 << 30;

    /// Creates an empty map (arrays: every element zero) with per-CPU values for `cpus`
    /// CPUs.
    pub fn new(name: impl Into<String>, spec: MapSpec, cpus: usize) -> Result<Map, MapError> {
        let cpus = cpus.max(1);
        let copies = if spec.map_type.is_per_cpu() { cpus } else { 1 } as u64;
        let values = round_up_8(spec.value_size) as u64 + round_up_8(spec.key_size) as u64;
        let bytes = if spec.map_type == MapType::RingBuf {
            u64::from(spec.max_entries)
        } else {
            u64::from(spec.max_entries)
                .saturating_mul(values.max(4))
                .saturating_mul(copies)
        };
        if bytes > Map::MAX_BYTES {
            return Err(MapError::TooLarge { bytes });
        }
        let needs_entries = !matches!(spec.map_type, MapType::PerfEventArray);
        if needs_entries && spec.max_entries == 0 {
            return Err(MapError::BadSpec {
                reason: "max_entries is 0".into(),
            });
        }
        let value_types = matches!(
            spec.map_type,
            MapType::Array
                | MapType::PerCpuArray
                | MapType::Hash
                | MapType::PerCpuHash
                | MapType::LruHash
                | MapType::LruPerCpuHash
        );
        if value_types && spec.value_size == 0 {
            return Err(MapError::BadSpec {
                reason: "value_size is 0".into(),
            });
        }
        let kind = match spec.map_type {
            MapType::Array | MapType::PerCpuArray => Kind::Array(Array::new(spec, cpus)?),
            MapType::Hash | MapType::PerCpuHash | MapType::LruHash | MapType::LruPerCpuHash => {
                Kind::Hash(Hash::new(spec, cpus)?)
            }
            MapType::Queue | MapType::Stack => Kind::Queue(Queue::new(spec)?),
            MapType::RingBuf => Kind::RingBuf(RingBuf::new(spec)?),
            MapType::PerfEventArray => Kind::Perf(PerfEventArray::new(spec, cpus)?),
            MapType::ProgArray => Kind::Prog(ProgArray::new(spec)?),
            t if t.is_of_maps() => {
                return Err(MapError::BadSpec {
                    reason: "a map of maps needs its inner maps' template: create it with \
                             Maps::create_of_maps"
                        .into(),
                });
            }
            t if t.is_redirect() => {
                let value_sizes: &[u32] = if t == MapType::XskMap { &[4] } else { &[4, 8] };
                if spec.key_size != 4 || !value_sizes.contains(&spec.value_size) {
                    return Err(MapError::BadSpec {
                        reason: format!(
                            "a {} has 4-byte keys and values of {} bytes",
                            t.name(),
                            if t == MapType::XskMap { "4" } else { "4 or 8" }
                        ),
                    });
                }
                Kind::Redirect(Hash::new(
                    MapSpec {
                        map_type: MapType::Hash,
                        ..spec
                    },
                    cpus,
                )?)
            }
            other => return Err(MapError::UnsupportedType(other)),
        };
        Ok(Map {
            name: name.into(),
            spec,
            cpus,
            kind,
            frozen: OnceLock::new(),
        })
    }

    /// Creates an empty array or hash of maps (`spec.map_type` [`MapType::ArrayOfMaps`] or
    /// [`MapType::HashOfMaps`], 4-byte values) whose slots take maps like `template`: the
    /// same type, key and value sizes and flags, and for arrays the same `max_entries`
    /// unless `template` has [`BPF_F_INNER_MAP`] (the kernel's `bpf_map_meta_equal`). Slots
    /// are filled through the set ([`Maps::set_inner`]).
    pub fn new_of_maps(
        name: impl Into<String>,
        spec: MapSpec,
        template: MapSpec,
    ) -> Result<Map, MapError> {
        let array = spec.map_type == MapType::ArrayOfMaps;
        if !spec.map_type.is_of_maps() {
            return Err(MapError::BadSpec {
                reason: format!("a {} is not a map of maps", spec.map_type.name()),
            });
        }
        if spec.value_size != 4 || (array && spec.key_size != 4) || spec.max_entries == 0 {
            return Err(MapError::BadSpec {
                reason: format!(
                    "a {} has 4-byte values{} and at least one entry",
                    spec.map_type.name(),
                    if array { " and keys" } else { "" }
                ),
            });
        }
        if template.map_type.is_of_maps() || template.map_type == MapType::ProgArray {
            return Err(MapError::BadSpec {
                reason: format!("an inner map cannot be a {}", template.map_type.name()),
            });
        }
        let slots = MapSpec {
            map_type: MapType::Hash,
            flags: 0,
            ..spec
        };
        let of = OfMaps {
            template,
            array: if array {
                Some(ProgArray::new(slots)?)
            } else {
                None
            },
            hash: if array {
                None
            } else {
                Some(Hash::new(slots, 1)?)
            },
        };
        Ok(Map {
            name: name.into(),
            spec,
            cpus: 1,
            kind: Kind::OfMaps(of),
            frozen: OnceLock::new(),
        })
    }

    /// The template of a map of maps' inner maps.
    pub fn inner_template(&self) -> Option<&MapSpec> {
        match &self.kind {
            Kind::OfMaps(of) => Some(&of.template),
            _ => None,
        }
    }

    /// A map of maps' slot `key`: the index in the set of the map it holds, or `None` when
    /// it is empty (a program's `map_lookup_elem` on an outer map).
    pub fn inner_at(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        let Kind::OfMaps(of) = &self.kind else {
            return Err(self.unsupported("an inner map lookup"));
        };
        let index = match (&of.array, &of.hash) {
            (Some(a), _) => a.lookup(key)?,
            (_, Some(h)) => h.lookup(key)?,
            _ => None,
        };
        Ok(index
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(|v| u32::from_le_bytes(v) as usize))
    }

    /// Puts the map of index `inner` in slot `key` (the set checked it is like the template).
    fn set_inner_index(&self, key: &[u8], inner: u32, flags: UpdateFlags) -> Result<(), MapError> {
        let Kind::OfMaps(of) = &self.kind else {
            return Err(self.unsupported("setting an inner map"));
        };
        let value = inner.to_le_bytes();
        match (&of.array, &of.hash) {
            (Some(a), _) => a.update(key, &value, flags),
            (_, Some(h)) => h.update(key, Write::Host(&value), flags),
            _ => Err(self.unsupported("setting an inner map")),
        }
    }

    /// The map's name (its symbol in the object).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the map is.
    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    fn unsupported(&self, op: &'static str) -> MapError {
        MapError::Unsupported {
            op,
            map_type: self.spec.map_type,
        }
    }

    /// The memory a run on CPU `cpu` maps as this map's region: the values of an array or
    /// hash map (that CPU's copy for per-CPU maps), or a ring buffer's data area. `None` for
    /// maps whose elements programs never address (queues, stacks, perf event arrays, prog
    /// arrays).
    #[inline]
    pub fn values(&self, cpu: usize) -> Option<SharedMemory<'_>> {
        match &self.kind {
            Kind::Array(a) => Some(a.values(cpu)),
            Kind::Hash(h) | Kind::Redirect(h) => Some(h.values(cpu)),
            Kind::RingBuf(r) => Some(r.values()),
            Kind::Queue(_) | Kind::Perf(_) | Kind::Prog(_) | Kind::OfMaps(_) => None,
        }
    }

    /// A program's `map_lookup_elem`: the offset of the value in [`Map::values`], or `None`
    /// when there is no such element. Marks the element used in an LRU map.
    pub fn lookup_offset(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        match &self.kind {
            Kind::Array(a) => a.lookup_offset(key),
            Kind::Hash(h) | Kind::Redirect(h) => h.lookup_offset(key),
            _ => Err(self.unsupported("lookup from a program")),
        }
    }

    /// The host's lookup: a copy of the value (per-CPU: every CPU's, side by side), or `None`.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        match &self.kind {
            Kind::Array(a) => a.lookup(key),
            Kind::Hash(h) | Kind::Redirect(h) => h.lookup(key),
            Kind::Prog(p) => p.lookup(key),
            Kind::OfMaps(_) => Ok(self
                .inner_at(key)?
                .map(|i| (i as u32).to_le_bytes().to_vec())),
            _ => Err(self.unsupported("lookup")),
        }
    }

    /// Makes the map read-only for good (the kernel's `BPF_MAP_FREEZE`, what libbpf does to
    /// an object's `.rodata` after writing its initial value): host updates and deletes fail
    /// with [`MapError::Frozen`] from now on, and so do programs' `map_update_elem`. Returns
    /// the values as they are now (CPU 0's, for a per-CPU map), which is what
    /// [`Map::frozen`] gives from then on; freezing again changes nothing. Every CPU's
    /// values are kept ([`Map::frozen_on`]).
    pub fn freeze(&self) -> &[u8] {
        let copies = self.frozen.get_or_init(|| {
            let cpus = if self.spec.map_type.is_per_cpu() {
                self.cpus
            } else {
                1
            };
            (0..cpus)
                .map_while(|cpu| {
                    let values = self.values(cpu)?;
                    let mut bytes = vec![0; values.len()];
                    let _ = values.read(0, &mut bytes);
                    Some(bytes.into_boxed_slice())
                })
                .collect()
        });
        copies.first().map_or(&[], |b| &**b)
    }

    /// A frozen map's values, which never change again: what a run maps read-only for a
    /// map programs may only read (`BPF_F_RDONLY_PROG`, an object's `.rodata`). `None`
    /// until [`Map::freeze`]. For a per-CPU map these are CPU 0's ([`Map::frozen_on`]).
    pub fn frozen(&self) -> Option<&[u8]> {
        self.frozen_on(0)
    }

    /// A frozen map's values as CPU `cpu` sees them: its own copy for a per-CPU map (`None`
    /// past the last CPU), the only one otherwise. `None` until [`Map::freeze`].
    pub fn frozen_on(&self, cpu: usize) -> Option<&[u8]> {
        let copies = self.frozen.get()?;
        let cpu = if self.spec.map_type.is_per_cpu() {
            cpu
        } else {
            0
        };
        copies.get(cpu).map(|b| &**b)
    }

    fn check_not_frozen(&self) -> Result<(), MapError> {
        match self.frozen.get() {
            Some(_) => Err(MapError::Frozen),
            None => Ok(()),
        }
    }

    /// The host's update (per-CPU: `value` holds every CPU's value, each padded to 8 bytes).
    /// For a prog array, `value` is a program id (`u32`).
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.check_not_frozen()?;
        match &self.kind {
            Kind::Array(a) => a.update(key, value, flags),
            Kind::Hash(h) => h.update(key, Write::Host(value), flags),
            Kind::Prog(p) => p.update(key, value, flags),
            Kind::Redirect(h) => self.redirect_update(h, key, value, flags),
            Kind::Queue(_) if key.is_empty() => self.push(value, flags),
            Kind::OfMaps(_) => {
                Err(self.unsupported("update (put a map in a slot with Maps::set_inner)"))
            }
            _ => Err(self.unsupported("update")),
        }
    }

    /// A program's `map_update_elem` on CPU `cpu`: `value` is one value; a per-CPU map
    /// changes only that CPU's copy (a new element's other copies start zeroed, as in the
    /// kernel).
    pub fn update_on_cpu(
        &self,
        cpu: usize,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.check_not_frozen()?;
        match &self.kind {
            Kind::Array(a) => a.update_on(cpu, key, value, flags),
            Kind::Hash(h) => h.update(key, Write::Cpu(cpu, value), flags),
            Kind::Queue(_) => self.push(value, flags),
            _ => Err(self.unsupported("update from a program")),
        }
    }

    /// Deletes the element with `key` ([`MapError::NotFound`] if there is none; arrays
    /// cannot delete).
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_not_frozen()?;
        match &self.kind {
            Kind::Array(a) => a.delete(),
            Kind::Hash(h) | Kind::Redirect(h) => h.delete(key),
            Kind::Prog(p) => p.delete(key),
            Kind::OfMaps(OfMaps { array: Some(a), .. }) => a.delete(key),
            Kind::OfMaps(OfMaps { hash: Some(h), .. }) => h.delete(key),
            _ => Err(self.unsupported("delete")),
        }
    }

    /// The key after `key` (`bpf_map_get_next_key`): the first key for `None` or a key that
    /// is not in the map; `None` after the last.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        match &self.kind {
            Kind::Array(a) => a.next_key(key),
            Kind::Hash(h) | Kind::Redirect(h) => h.next_key(key),
            Kind::Prog(p) | Kind::OfMaps(OfMaps { array: Some(p), .. }) => p.next_key(key),
            Kind::OfMaps(OfMaps { hash: Some(h), .. }) => h.next_key(key),
            _ => Err(self.unsupported("get_next_key")),
        }
    }

    /// Every element as `(key, value)`, in iteration order, as the host sees them. Queues and
    /// stacks give their values in pop order with empty keys; ring buffers and perf event
    /// arrays give nothing (read their records instead).
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        match &self.kind {
            Kind::Array(a) => a.entries(),
            Kind::Hash(h) | Kind::Redirect(h) => h.entries(),
            Kind::Prog(p) | Kind::OfMaps(OfMaps { array: Some(p), .. }) => p.entries(),
            Kind::OfMaps(OfMaps { hash: Some(h), .. }) => h.entries(),
            Kind::Queue(q) => q.entries().into_iter().map(|v| (Vec::new(), v)).collect(),
            Kind::RingBuf(_) | Kind::Perf(_) | Kind::OfMaps(_) => Vec::new(),
        }
    }

    /// Every element's key and the offset of its value in [`Map::values`], in iteration order
    /// (what `bpf_for_each_map_elem` visits).
    pub fn element_offsets(&self) -> Result<Vec<(Vec<u8>, usize)>, MapError> {
        match &self.kind {
            Kind::Array(a) => Ok(a.offsets()),
            Kind::Hash(h) => Ok(h.offsets()),
            _ => Err(self.unsupported("for_each_map_elem")),
        }
    }

    /// One step of `for_each_map_elem`: the element whose value lies first at or after
    /// offset `cursor` in [`Map::values`], as its offset, with its key written to `key`;
    /// `None` past the last: a walk visits the elements in the order of their offsets. A
    /// step costs O(1) for an
    /// array; for a hash it scans the slots from the cursor to the element, so a whole walk
    /// scans each slot once. Nothing is allocated once `key` can hold a key. Only arrays
    /// and hashes.
    pub fn element_at_or_after(
        &self,
        cursor: usize,
        key: &mut Vec<u8>,
    ) -> Result<Option<usize>, MapError> {
        match &self.kind {
            Kind::Array(a) => Ok(a.element_at_or_after(cursor, key)),
            Kind::Hash(h) => Ok(h.element_at_or_after(cursor, key)),
            _ => Err(self.unsupported("for_each_map_elem")),
        }
    }

    /// How many elements the map holds (arrays: always `max_entries`).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Array(_) => self.spec.max_entries as usize,
            Kind::Hash(h) | Kind::Redirect(h) => h.len(),
            Kind::Queue(q) => q.len(),
            Kind::Prog(p) => p.entries().len(),
            Kind::RingBuf(r) => usize::from(r.pending() > 0),
            Kind::Perf(p) => p.len(),
            Kind::OfMaps(_) => self.entries().len(),
        }
    }

    /// Whether the map holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn queue(&self) -> Result<&Queue, MapError> {
        match &self.kind {
            Kind::Queue(q) => Ok(q),
            _ => Err(self.unsupported("push/pop/peek")),
        }
    }

    /// `map_push_elem` on a queue or stack.
    pub fn push(&self, value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.queue()?.push(value, flags)
    }

    /// `map_pop_elem`: removes and returns the next value.
    pub fn pop(&self) -> Result<Vec<u8>, MapError> {
        self.queue()?.pop(true)
    }

    /// `map_peek_elem`: the next value, left in place.
    pub fn peek(&self) -> Result<Vec<u8>, MapError> {
        self.queue()?.pop(false)
    }

    fn ring(&self) -> Result<&RingBuf, MapError> {
        match &self.kind {
            Kind::RingBuf(r) => Ok(r),
            _ => Err(self.unsupported("ring buffer operations")),
        }
    }

    /// `ringbuf_reserve`: the offset in [`Map::values`] of `size` reserved bytes, or `None`
    /// when the ring has no room.
    pub fn ring_reserve(&self, size: u64) -> Result<Option<usize>, MapError> {
        Ok(self.ring()?.reserve(size))
    }

    /// `ringbuf_submit` (or with `discard`, `ringbuf_discard`) of the record reserved at
    /// `offset`; `false` if no reserved record starts there.
    pub fn ring_commit(&self, offset: usize, discard: bool) -> Result<bool, MapError> {
        Ok(self.ring()?.commit(offset, discard))
    }

    /// `ringbuf_output`: one record holding `data`; `false` when the ring has no room.
    pub fn ring_output(&self, data: &[u8]) -> Result<bool, MapError> {
        Ok(self.ring()?.output(data))
    }

    /// Takes the submitted records, oldest first (discarded ones are skipped; reading stops
    /// at the first record still reserved).
    pub fn ring_records(&self) -> Result<Vec<Vec<u8>>, MapError> {
        Ok(self.ring()?.drain())
    }

    /// `ringbuf_query`: `(bytes waiting, ring size)`.
    pub fn ring_query(&self) -> Result<(u64, u64), MapError> {
        let r = self.ring()?;
        Ok((r.pending(), r.size()))
    }

    fn perf(&self) -> Result<&PerfEventArray, MapError> {
        match &self.kind {
            Kind::Perf(p) => Ok(p),
            _ => Err(self.unsupported("perf_event_output")),
        }
    }

    /// `perf_event_output` into buffer `index` (a CPU number); [`MapError::Full`] (`E2BIG`, the
    /// kernel's errno) past the last buffer.
    pub fn perf_output(&self, index: usize, data: &[u8]) -> Result<(), MapError> {
        self.perf()?.output(index, data)
    }

    /// Takes buffer `index`'s records, oldest first.
    pub fn perf_records(&self, index: usize) -> Result<Vec<Vec<u8>>, MapError> {
        Ok(self.perf()?.drain(index))
    }

    /// Records dropped because their buffer was full.
    pub fn perf_lost(&self) -> Result<u64, MapError> {
        Ok(self.perf()?.lost())
    }

    /// The host's update of a devmap, devmap hash, cpumap or xskmap, as the kernel takes it:
    /// the value's first `u32` is the interface (devmaps), the queue size (cpumaps) or the
    /// socket (xskmaps, any id the embedder gives its sockets); 0 empties an array slot
    /// (devmap, cpumap) and is refused by a devmap hash; a second `u32` (a program to run on
    /// redirected frames) must be 0 or -1: no program. Array slots past `max_entries` are
    /// `E2BIG`, and `BPF_NOEXIST` is `EEXIST` on them, as for every kernel array.
    fn redirect_update(
        &self,
        h: &Hash,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let index = crate::u32_key(key)?;
        let t = self.spec.map_type;
        let array = t != MapType::DevMapHash;
        if array && index >= self.spec.max_entries {
            return Err(MapError::Full);
        }
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::ValueSize {
                expected: self.spec.value_size as usize,
                got: value.len(),
            });
        }
        let word = |i: usize| {
            value
                .get(4 * i..4 * i + 4)
                .and_then(|w| w.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let first = word(0).unwrap_or(0);
        if word(1).is_some_and(|fd| fd as i32 > 0) {
            return Err(MapError::Unsupported {
                op: "a program run on redirected frames",
                map_type: t,
            });
        }
        if array && flags == UpdateFlags::NoExist {
            return Err(MapError::Exists);
        }
        if first == 0 && t != MapType::XskMap {
            if t == MapType::DevMapHash {
                return Err(MapError::InvalidValue {
                    reason: "interface 0".into(),
                });
            }
            return match h.delete(key) {
                Ok(()) | Err(MapError::NotFound) => Ok(()),
                Err(e) => Err(e),
            };
        }
        if t == MapType::CpuMap && index as usize >= self.cpus {
            return Err(MapError::InvalidValue {
                reason: format!("no CPU {index} (the maps have {})", self.cpus),
            });
        }
        let mut stored = [0u8; 8];
        stored[..4].copy_from_slice(&first.to_le_bytes());
        let flags = if array { UpdateFlags::Any } else { flags };
        h.update(key, Write::Host(&stored[..value.len()]), flags)
    }

    /// Whether `bpf_redirect_map` finds an entry for `key` (a devmap, devmap hash, cpumap or
    /// xskmap; `None` for other maps).
    pub fn redirect_entry(&self, key: u32) -> Option<bool> {
        match &self.kind {
            Kind::Redirect(h) => Some(matches!(h.lookup_offset(&key.to_le_bytes()), Ok(Some(_)))),
            _ => None,
        }
    }

    /// The program id in slot `index` of a prog array (`bpf_tail_call`'s target).
    pub fn program_at(&self, index: u32) -> Option<u32> {
        match &self.kind {
            Kind::Prog(p) => p.get(index),
            _ => None,
        }
    }

    /// How many CPUs the map keeps values for (1 unless per-CPU).
    pub fn copies(&self) -> usize {
        if self.spec.map_type.is_per_cpu() {
            self.cpus
        } else {
            1
        }
    }
}

/// A set of maps (those of one object, say) and the CPUs their runs claim.
#[derive(Debug)]
pub struct Maps {
    cpus: Cpus,
    maps: Vec<Arc<Map>>,
}

impl Maps {
    /// No maps, with `cpus` CPUs (at least one) for per-CPU values and concurrent runs.
    pub fn new(cpus: usize) -> Maps {
        Maps {
            cpus: Cpus::new(cpus),
            maps: Vec::new(),
        }
    }

    /// No maps, with as many CPUs as the host runs threads in parallel.
    pub fn for_host() -> Maps {
        Maps::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The CPUs runs claim.
    pub fn cpus(&self) -> &Cpus {
        &self.cpus
    }

    /// Creates a map; its index is the number of maps created before it.
    pub fn create(&mut self, name: &str, spec: MapSpec) -> Result<Arc<Map>, MapError> {
        let map = Arc::new(Map::new(name, spec, self.cpus.count())?);
        self.maps.push(Arc::clone(&map));
        Ok(map)
    }

    /// Creates an array or hash of maps whose slots take maps like `template`
    /// ([`Map::new_of_maps`]); its index is the number of maps created before it.
    pub fn create_of_maps(
        &mut self,
        name: &str,
        spec: MapSpec,
        template: MapSpec,
    ) -> Result<Arc<Map>, MapError> {
        let map = Arc::new(Map::new_of_maps(name, spec, template)?);
        self.maps.push(Arc::clone(&map));
        Ok(map)
    }

    /// Puts `inner`, a map of this set, in slot `key` of the map of maps `outer` (the host's
    /// `bpf_map_update_elem` with the inner map's descriptor). An `outer` or `inner` of another
    /// set, or an `inner` unlike `outer`'s template ([`Map::new_of_maps`]), is [`MapError::InvalidValue`]. A run
    /// looking the slot up at the same time gets the old map or the new one, both alive as
    /// long as the set.
    pub fn set_inner(
        &self,
        outer: &Map,
        key: &[u8],
        inner: &Map,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let template = outer.inner_template().ok_or(MapError::Unsupported {
            op: "setting an inner map",
            map_type: outer.spec.map_type,
        })?;
        // The slot holds an index into this set, which a program's lookup decodes against its
        // own set: an outer map of another set would name whatever map sits there in it.
        if !self.maps.iter().any(|m| std::ptr::eq(&**m, outer)) {
            return Err(MapError::InvalidValue {
                reason: format!("map `{}` is not of this set", outer.name),
            });
        }
        let index = self
            .maps
            .iter()
            .position(|m| std::ptr::eq(&**m, inner))
            .ok_or_else(|| MapError::InvalidValue {
                reason: format!("map `{}` is not of this set", inner.name),
            })?;
        let spec = inner.spec;
        let array = matches!(spec.map_type, MapType::Array | MapType::PerCpuArray);
        let like = spec.map_type == template.map_type
            && spec.key_size == template.key_size
            && spec.value_size == template.value_size
            && spec.flags == template.flags
            && (!array
                || template.flags & BPF_F_INNER_MAP != 0
                || spec.max_entries == template.max_entries);
        if !like {
            return Err(MapError::InvalidValue {
                reason: format!(
                    "map `{}` ({} key {} value {} max_entries {} flags {:#x}) is not like the \
                     inner maps of `{}` ({} key {} value {} max_entries {} flags {:#x})",
                    inner.name,
                    spec.map_type.name(),
                    spec.key_size,
                    spec.value_size,
                    spec.max_entries,
                    spec.flags,
                    outer.name,
                    template.map_type.name(),
                    template.key_size,
                    template.value_size,
                    template.max_entries,
                    template.flags
                ),
            });
        }
        let index = u32::try_from(index).map_err(|_| MapError::Full)?;
        outer.set_inner_index(key, index, flags)
    }

    /// The map in slot `key` of the map of maps `outer`, if any.
    pub fn inner(&self, outer: &Map, key: &[u8]) -> Result<Option<&Arc<Map>>, MapError> {
        Ok(outer.inner_at(key)?.and_then(|i| self.maps.get(i)))
    }

    /// The map named `name` (the first, if several share it).
    pub fn get(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps.iter().find(|m| m.name() == name)
    }

    /// The `index`-th map created.
    pub fn by_index(&self, index: usize) -> Option<&Arc<Map>> {
        self.maps.get(index)
    }

    /// Every map, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Map>> {
        self.maps.iter()
    }

    /// How many maps there are.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}
