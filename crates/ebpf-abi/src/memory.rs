//! The region table: which VM addresses a run may touch, and the host bytes behind them.
//!
//! [`MemoryMap`] maps region ids (see [`crate::layout`]) to borrowed byte slices, read-only or
//! writable, or to [`SharedMemory`] that concurrent runs share (map values). Engines check every
//! access against it; helpers reach VM memory only through it (it implements [`VmMemory`]).

use alloc::vec::Vec;
use core::any::Any;

use ebpf_isa::AtomicOp;

use crate::{SharedMemory, TrapKind, VmMemory, layout, semantics};

/// One region's bytes.
#[derive(Debug)]
pub enum Region<'a> {
    /// Loads only; a store is `OutOfBounds { write: true }`.
    ReadOnly(&'a [u8]),
    /// Loads and stores.
    Writable(&'a mut [u8]),
    /// Loads and stores of memory that other runs (on other threads) and the host access at
    /// the same time: map values. Every access is atomic per aligned word (see
    /// [`SharedMemory`]).
    Shared(SharedMemory<'a>),
}

impl Region<'_> {
    /// The region's bytes, when this run has them to itself (`None` for [`Region::Shared`],
    /// whose bytes other threads may change at any time: see [`Region::to_vec`]).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Region::ReadOnly(b) => Some(b),
            Region::Writable(b) => Some(b),
            Region::Shared(_) => None,
        }
    }

    /// A copy of the region's bytes (for shared memory, each word as one atomic load).
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Region::ReadOnly(b) => b.to_vec(),
            Region::Writable(b) => b.to_vec(),
            Region::Shared(s) => {
                let mut out = alloc::vec![0; s.len()];
                let _ = s.read(0, &mut out);
                out
            }
        }
    }

    /// Whether stores are allowed.
    pub fn is_writable(&self) -> bool {
        matches!(self, Region::Writable(_) | Region::Shared(_))
    }

    /// The region cut to the bytes its 4 GiB window can address.
    #[inline]
    fn within_window(self) -> Self {
        let max = usize::try_from(layout::MAX_REGION_LEN).unwrap_or(usize::MAX);
        match self {
            Region::ReadOnly(b) => Region::ReadOnly(b.get(..max).unwrap_or(b)),
            Region::Writable(b) => Region::Writable(layout::within_window(b)),
            Region::Shared(s) => Region::Shared(s.prefix(max)),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Region::ReadOnly(b) => b.len(),
            Region::Writable(b) => b.len(),
            Region::Shared(s) => s.len(),
        }
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Region ids `0..INLINE_REGIONS` live inside the map itself, so that a run that maps only
/// those (the data regions, the stack, the input, the metadata and two extra regions) builds
/// its map without allocating.
const INLINE_REGIONS: usize = 8;

/// The regions of one run, indexed by region id.
///
/// Engines take it by `&mut` (it is a few hundred bytes: moving it costs a `memcpy` per run).
/// Besides the regions it keeps, for the inline ids, each region's [`RawRegion`] (computed
/// once, when the region is mapped, so that a JIT's table refresh is a few compares), one past
/// the highest id mapped, and a [generation](MemoryMap::generation) that changes whenever a
/// region's bytes may have been reached through `&mut`.
#[derive(Debug, Default)]
pub struct MemoryMap<'a> {
    /// Ids `0..INLINE_REGIONS`.
    inline: [Option<Region<'a>>; INLINE_REGIONS],
    /// `raw[id]` describes `inline[id]` (unmapped where it is `None`).
    raw: [Row; INLINE_REGIONS],
    /// Bit `id` is set when region `id` is mapped (ids above [`layout::MAX_REGION`] never
    /// are, so every mapped id has a bit).
    mapped: u64,
    /// Bumped by every `&mut` access to a region's bytes and every change of a region.
    generation: u64,
    /// `raw` was derived (through `&mut`) at this generation; when the map has moved on
    /// since, [`MemoryMap::raw_rows`] derives it afresh.
    raw_generation: u64,
    /// Ids from `INLINE_REGIONS` on (empty, so unallocated, until such an id is mapped; or an
    /// allocation kept from an earlier run, see [`MapSpill`]).
    extra: Vec<Option<Region<'a>>>,
    /// The embedder's state of this run, which its helpers reach through
    /// [`VmMemory::run_state`] (see [`MemoryMap::set_run_state`]).
    run_state: Option<&'a mut (dyn Any + Send + 'static)>,
    /// Set by the engine when a run stops at a failed helper call: the instructions it had
    /// executed, that call included (see [`MemoryMap::instructions_at_helper_trap`]).
    helper_trap_instructions: Option<u64>,
    /// The lowest offset into the stack region that [`VmMemory::write`] wrote (see
    /// [`MemoryMap::lowest_stack_write`]).
    lowest_stack_write: Option<u64>,
}

/// A kept [`RawRegion`], its pointer's provenance exposed (so that the map stays `Send` and
/// `Sync`, as a raw pointer would not let it be).
#[derive(Clone, Copy, Debug, Default)]
struct Row {
    host: usize,
    len: u64,
    writable: u64,
}

impl Row {
    #[inline]
    fn of(raw: RawRegion) -> Row {
        Row {
            host: raw.host.expose_provenance(),
            len: raw.len,
            writable: raw.writable,
        }
    }

    #[inline]
    fn raw(self) -> RawRegion {
        RawRegion {
            host: core::ptr::with_exposed_provenance_mut(self.host),
            len: self.len,
            writable: self.writable,
        }
    }
}

/// The allocation behind the region ids of a [`MemoryMap`] above the inline ones, kept empty
/// between runs ([`MemoryMap::into_spill`], [`MemoryMap::with_spill`]) so that a run whose map
/// has many regions (an object with many maps, a run with many extra regions) allocates it
/// once per thread, not once per run.
#[derive(Debug, Default)]
pub struct MapSpill(Vec<Option<Region<'static>>>);

/// An empty vector of regions of another lifetime on the same allocation: `collect` of a
/// `map` over a `Vec`'s `into_iter` reuses the allocation when the element types have the same
/// size and alignment (which they do: only the lifetime differs), and nothing is moved, the
/// vector being empty.
#[inline]
fn respan<'b>(mut regions: Vec<Option<Region<'_>>>) -> Vec<Option<Region<'b>>> {
    regions.clear();
    regions.into_iter().map(|_| None).collect()
}

impl<'a> MemoryMap<'a> {
    /// An empty map: every access traps.
    #[inline]
    pub fn new() -> MemoryMap<'a> {
        MemoryMap::default()
    }

    /// An empty map whose ids above the inline ones use `spill`'s allocation.
    #[inline]
    pub fn with_spill(spill: MapSpill) -> MemoryMap<'a> {
        MemoryMap {
            extra: respan(spill.0),
            ..MemoryMap::default()
        }
    }

    /// Maps a run's own buffers: `data` at [`layout::INPUT`] and `metadata` at
    /// [`layout::METADATA`] (each writable; left as they are when `None`), then `stack` at
    /// [`layout::STACK`]. The same as those `insert`s in that order (generation and kept rows
    /// included), without what `insert` checks for an id it does not know: for the
    /// interpreter's session, which maps them on every run.
    #[inline(always)]
    pub fn insert_buffers(
        &mut self,
        data: Option<&'a mut [u8]>,
        metadata: Option<&'a mut [u8]>,
        stack: &'a mut [u8],
    ) {
        let fresh = self.raw_generation == self.generation;
        let mut inserts = 0;
        if let Some(data) = data {
            inserts += self.put_inline(layout::INPUT, data);
        }
        if let Some(metadata) = metadata {
            inserts += self.put_inline(layout::METADATA, metadata);
        }
        inserts += self.put_inline(layout::STACK, stack);
        // (What that many `insert`s do: each moves the generation, and rows current before
        // stay current, each being derived as its region is mapped.)
        self.generation = self.generation.wrapping_add(inserts);
        if fresh {
            self.raw_generation = self.generation;
        }
    }

    /// `insert`'s mapping of a writable buffer at an inline id, without the generation;
    /// returns 1 (0 for an id that is not inline, which `insert_buffers` never passes: its
    /// ids are all below `INLINE_REGIONS`, and its test would fail if one were not).
    #[inline(always)]
    fn put_inline(&mut self, id: u64, bytes: &'a mut [u8]) -> u64 {
        let index = id as usize;
        let (Some(raw), Some(slot)) = (self.raw.get_mut(index), self.inline.get_mut(index)) else {
            return 0;
        };
        let mut region = Region::Writable(bytes).within_window();
        *raw = Row::of(raw_of(&mut region));
        *slot = Some(region);
        self.mapped |= 1 << id;
        1
    }

    /// Maps into `map` the regions of this one that runs share — the read-only and the
    /// shared ones (a run's own writable regions are left out: they cannot be lent twice) —
    /// borrowing what this map borrows, not the map itself. A [`crate::Session`] keeps a
    /// program's fixed regions (its data images, the embedder's read-only regions) in a map
    /// and makes each run's map from it, in place (a map returned by value is a few hundred
    /// bytes copied).
    #[inline]
    pub fn share_into<'m>(&self, map: &mut MemoryMap<'m>)
    where
        'a: 'm,
    {
        let mut ids = self.mapped;
        while ids != 0 {
            let id = u64::from(ids.trailing_zeros());
            ids &= ids - 1;
            let shared = match self.get(id) {
                Some(Region::ReadOnly(bytes)) => Region::ReadOnly(bytes),
                Some(Region::Shared(memory)) => Region::Shared(*memory),
                Some(Region::Writable(_)) | None => continue,
            };
            map.insert(id, shared);
        }
    }

    /// Unmaps everything and returns the allocation of the ids above the inline ones, for the
    /// next map ([`MemoryMap::with_spill`]).
    #[inline]
    pub fn into_spill(self) -> MapSpill {
        MapSpill(respan(self.extra))
    }

    /// A number that changes whenever a region is mapped or unmapped, or its bytes are reached
    /// through `&mut` (a store, a helper's write, an atomic): a JIT that derived raw pointers
    /// from the map re-derives them only when it changed (see [`MemoryMap::raw_entry`]).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The lowest offset into the stack region ([`layout::STACK`]) that a write through
    /// [`VmMemory::write`] reached since the map was made, `None` if none did. Helpers reach
    /// the VM's memory only through [`VmMemory`], so this bounds what the helpers of a run
    /// wrote on its stack: a lender that scrubs after a run can scrub the larger of this and
    /// what the program's own stores can reach, rather than the whole stack.
    #[inline]
    pub fn lowest_stack_write(&self) -> Option<u64> {
        self.lowest_stack_write
    }

    /// The slot of region `id`, if it exists (is inline, or was mapped at some point).
    #[inline(always)]
    fn slot(&self, id: u64) -> Option<&Option<Region<'a>>> {
        let index = usize::try_from(id).ok()?;
        match self.inline.get(index) {
            Some(slot) => Some(slot),
            None => self.extra.get(index - INLINE_REGIONS),
        }
    }

    #[inline(always)]
    fn slot_mut(&mut self, id: u64) -> Option<&mut Option<Region<'a>>> {
        let index = usize::try_from(id).ok()?;
        match self.inline.get_mut(index) {
            Some(slot) => Some(slot),
            None => self.extra.get_mut(index - INLINE_REGIONS),
        }
    }

    /// Maps `region` at region id `id` (replacing what was there). Ids above
    /// [`layout::MAX_REGION`] and region 0 are ignored: they can never be addressed.
    ///
    /// Only the first [`layout::MAX_REGION_LEN`] (4 GiB) bytes of a longer slice are mapped:
    /// the rest would have the addresses of the next region, so they are unaddressable on every
    /// engine (and for helpers) instead. Embedders should refuse such regions before a run, as
    /// the facade does.
    #[inline]
    pub fn insert(&mut self, id: u64, region: Region<'a>) {
        if id == layout::NULL_REGION || id > layout::MAX_REGION {
            return;
        }
        let region = region.within_window();
        let Ok(index) = usize::try_from(id) else {
            return;
        };
        if let Some(extra) = index.checked_sub(INLINE_REGIONS)
            && self.extra.len() <= extra
        {
            self.extra.resize_with(extra + 1, || None);
        }
        let fresh = self.raw_generation == self.generation;
        self.generation = self.generation.wrapping_add(1);
        if fresh {
            self.raw_generation = self.generation;
        }
        self.mapped |= 1 << (id & 63);
        let mut region = region;
        if let Some(raw) = self.raw.get_mut(index) {
            *raw = Row::of(raw_of(&mut region));
        }
        if let Some(slot) = self.slot_mut(id) {
            *slot = Some(region);
        }
    }

    /// The region mapped at `id`, if any.
    #[inline]
    pub fn get(&self, id: u64) -> Option<&Region<'a>> {
        self.slot(id)?.as_ref()
    }

    /// The length of the region mapped at `id` and whether stores are allowed (`(0, false)`
    /// when nothing is): what a check before a run asks, in two loads for the inline ids (from
    /// the rows kept since the regions were mapped, no match on the region).
    #[inline]
    pub fn extent(&self, id: u64) -> (u64, bool) {
        match usize::try_from(id).ok().and_then(|i| self.raw.get(i)) {
            Some(row) => (row.len, row.writable != 0),
            None => self
                .get(id)
                .map_or((0, false), |g| (g.len() as u64, g.is_writable())),
        }
    }

    /// Lends the run's helpers per-run state: whatever the embedder keeps for one run (the
    /// CPU it claimed, the packet's context, a verdict a helper records, a tail call it
    /// asked for). Every engine hands this map to [`crate::Helpers::call`] unchanged, so a
    /// helper reaches the state with [`VmMemory::run_state`] and downcasts it to the type it
    /// knows; engines never look at it. Costs nothing when unset.
    #[inline]
    pub fn set_run_state(&mut self, state: &'a mut (dyn Any + Send + 'static)) {
        self.run_state = Some(state);
    }

    /// How many instructions the run had executed, the failing call included, when it stopped
    /// because a helper call (`call` of a helper id, `callx`) failed — [`crate::TrapKind::HelperFailed`]
    /// or any other trap [`crate::Helpers::call`] returned. Every engine sets it there, counting
    /// exactly as the interpreter counts; `None` when the run did not stop at a helper. A chain
    /// of tail calls (each a helper that fails on purpose) adds them up, so that it runs under
    /// one budget.
    #[inline]
    pub fn instructions_at_helper_trap(&self) -> Option<u64> {
        self.helper_trap_instructions
    }

    /// Records [`MemoryMap::instructions_at_helper_trap`]: what an engine calls, on its cold
    /// path, when a helper call fails.
    #[cold]
    pub fn set_instructions_at_helper_trap(&mut self, instructions: u64) {
        self.helper_trap_instructions = Some(instructions);
    }

    /// Removes and returns the region at `id`.
    pub fn take(&mut self, id: u64) -> Option<Region<'a>> {
        self.generation = self.generation.wrapping_add(1);
        if id <= layout::MAX_REGION {
            self.mapped &= !(1 << id);
        }
        if let Some(raw) = usize::try_from(id).ok().and_then(|i| self.raw.get_mut(i)) {
            *raw = Row::default();
        }
        self.slot_mut(id)?.take()
    }

    /// The `N` bytes at `addr`, if they lie inside one region.
    #[inline(always)]
    pub fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let region = self.get(layout::region_of(addr))?;
        let off = layout::offset_of(addr) as usize;
        let bytes = match region {
            Region::ReadOnly(b) => &**b,
            Region::Writable(b) => &**b,
            Region::Shared(s) => return s.load::<N>(off),
        };
        bytes.get(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// The writable `N` bytes at `addr`, if they lie inside one writable region that this run
    /// has to itself (never [`Region::Shared`] memory: use [`MemoryMap::store`]).
    #[inline(always)]
    pub fn bytes_mut<const N: usize>(&mut self, addr: u64) -> Option<&mut [u8; N]> {
        self.generation = self.generation.wrapping_add(1);
        let region = self.slot_mut(layout::region_of(addr))?.as_mut()?;
        let Region::Writable(bytes) = region else {
            return None;
        };
        let off = layout::offset_of(addr) as usize;
        bytes.get_mut(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// Stores `value` at `addr`, if the bytes lie inside one writable region.
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        if let Some(Region::Shared(s)) = self.get(layout::region_of(addr)) {
            return s.store(layout::offset_of(addr) as usize, value);
        }
        *self.bytes_mut::<N>(addr)? = value;
        Some(())
    }

    /// The region holding `addr` and the offset of `addr` in it.
    fn locate(&self, addr: u64) -> Option<(&Region<'a>, usize)> {
        let region = self.get(layout::region_of(addr))?;
        Some((region, usize::try_from(layout::offset_of(addr)).ok()?))
    }
}

/// One entry of the region table as generated code reads it: host base, length, writability.
///
/// A JIT fills a `[RawRegion; REGION_TABLE_LEN]` from a [`MemoryMap`] with
/// [`MemoryMap::raw_table`] and checks each access against it: region id `addr >> 32` must be
/// below the table length, `(addr & 0xffff_ffff) + width <= len`, and `writable != 0` for
/// stores. An unmapped region has `len == 0`, so every access to it fails the check.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRegion {
    /// Host address of the region's first byte (null when unmapped).
    pub host: *mut u8,
    /// Length in bytes.
    pub len: u64,
    /// 1 if stores are allowed, else 0.
    pub writable: u64,
}

/// Number of entries of a raw region table: region ids `0..=layout::MAX_REGION`.
pub const REGION_TABLE_LEN: usize = layout::MAX_REGION as usize + 1;

impl RawRegion {
    /// An unmapped entry.
    pub const UNMAPPED: RawRegion = RawRegion {
        host: core::ptr::null_mut(),
        len: 0,
        writable: 0,
    };

    /// The entry of a writable region of `bytes` (cut to the 4 GiB a region's window
    /// addresses, as [`MemoryMap::insert`] cuts it), its pointer derived from `bytes` now:
    /// what a [`crate::Session`] writes for a run's own buffer without building a map.
    #[inline]
    pub fn writable(bytes: &mut [u8]) -> RawRegion {
        RawRegion {
            host: bytes.as_mut_ptr(),
            len: (bytes.len() as u64).min(layout::MAX_REGION_LEN),
            writable: 1,
        }
    }
}

impl MemoryMap<'_> {
    /// One past the highest region id that can be mapped: every id from here on is unmapped
    /// (so a raw table needs only its rows below it).
    #[inline]
    pub fn id_bound(&self) -> usize {
        64 - self.mapped.leading_zeros() as usize
    }

    /// The ids mapped, as a bit set (bit `id` for region `id`).
    #[inline]
    pub fn mapped_ids(&self) -> u64 {
        self.mapped
    }

    /// The raw table entry of region `id` (see [`MemoryMap::raw_table`]), its pointer derived
    /// afresh from the region's reference.
    #[inline]
    pub fn raw_entry(&mut self, id: usize) -> RawRegion {
        match self.slot_mut(id as u64) {
            Some(Some(region)) => raw_of(region),
            Some(None) | None => RawRegion::UNMAPPED,
        }
    }

    /// [`MemoryMap::raw_entry`] of every id in the bit set `ids` (bit `id` for region `id`), in
    /// increasing order, passed to `f` — from the rows kept since the regions were mapped: as
    /// long as nothing reached a region's bytes through `&mut` since (the [generation](
    /// MemoryMap::generation) did not move), each is a load; else every kept row is derived
    /// afresh first.
    #[inline(always)]
    pub fn raw_rows(&mut self, ids: u64, mut f: impl FnMut(usize, RawRegion)) {
        self.rederive_if_stale();
        let mut ids = ids;
        while ids != 0 {
            let id = ids.trailing_zeros() as usize;
            ids &= ids - 1;
            let entry = match self.raw.get(id) {
                Some(raw) => raw.raw(),
                None => self.raw_entry(id),
            };
            f(id, entry);
        }
    }

    #[inline(always)]
    fn rederive_if_stale(&mut self) {
        if self.raw_generation != self.generation {
            self.rederive();
        }
    }

    /// Derives every kept row afresh (through `&mut`) and marks them current.
    #[inline(never)]
    fn rederive(&mut self) {
        for (id, slot) in self.inline.iter_mut().enumerate() {
            if let (Some(region), Some(raw)) = (slot, self.raw.get_mut(id)) {
                *raw = Row::of(raw_of(region));
            }
        }
        self.raw_generation = self.generation;
    }

    /// Writes the map as a raw table for generated code. The pointers are valid while this
    /// map is neither moved from nor changed; after a helper ran (it may have changed the
    /// map through `VmMemory`), refresh the table.
    ///
    /// Read-only regions get a `*mut` pointer with `writable == 0`; code must never store
    /// through it.
    pub fn raw_table(&mut self, table: &mut [RawRegion; REGION_TABLE_LEN]) {
        self.refresh_raw_table(table, u64::MAX);
    }

    /// [`MemoryMap::raw_table`] for a table whose rows outside the bit set `rows` (bit `r` for
    /// row `r`) are unmapped — what this returned for it last time, or 0 for a fresh table:
    /// rewrites only the rows mapped now or in `rows`, and returns the set to pass next time
    /// (the ids mapped now). This is how a run that reuses its table refreshes it in a few
    /// stores instead of 64 entries.
    #[inline]
    pub fn refresh_raw_table(
        &mut self,
        table: &mut [RawRegion; REGION_TABLE_LEN],
        rows: u64,
    ) -> u64 {
        let now = self.mapped_ids();
        self.raw_rows(now | rows, |id, entry| {
            if let Some(row) = table.get_mut(id) {
                *row = entry;
            }
        });
        now
    }
}

/// The raw table entry of `region`. A read-only region gets a `*mut` pointer with
/// `writable == 0`: code must never store through it.
#[inline]
fn raw_of(region: &mut Region<'_>) -> RawRegion {
    match region {
        Region::ReadOnly(b) => RawRegion {
            host: b.as_ptr().cast_mut(),
            len: b.len() as u64,
            writable: 0,
        },
        Region::Writable(b) => RawRegion {
            host: b.as_mut_ptr(),
            len: b.len() as u64,
            writable: 1,
        },
        Region::Shared(s) => RawRegion {
            host: s.as_ptr(),
            len: s.len() as u64,
            writable: 1,
        },
    }
}

/// An atomic read-modify-write of `N` bytes: a shared region's own atomic, else
/// [`semantics::atomic_in_place`] on the bytes.
macro_rules! atomic_fn {
    ($name:ident, $n:literal, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(
            &mut self,
            addr: u64,
            op: AtomicOp,
            operand: u64,
            r0: u64,
        ) -> Result<Option<u64>, TrapKind> {
            if let Some((Region::Shared(s), off)) = self.locate(addr) {
                return s.$name(addr, off, op, operand, r0);
            }
            semantics::atomic_in_place(self.bytes_mut::<$n>(addr), addr, op, operand, r0)
        }
    };
}

impl MemoryMap<'_> {
    atomic_fn!(
        atomic64,
        8,
        "A 64-bit atomic at `addr`: bounds (as a write) first, then alignment; the old value \
         where `op` fetches it (`cmpxchg` compares with `r0`)."
    );
    atomic_fn!(
        atomic32,
        4,
        "A 32-bit atomic at `addr`, as [`MemoryMap::atomic64`]; operands are the low halves \
         and the fetched value is zero-extended."
    );
}

impl VmMemory for MemoryMap<'_> {
    fn run_state(&mut self) -> Option<&mut dyn Any> {
        match &mut self.run_state {
            Some(state) => Some(&mut **state),
            None => None,
        }
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TrapKind> {
        let done = self.locate(addr).and_then(|(region, off)| {
            let bytes = match region {
                Region::ReadOnly(b) => &**b,
                Region::Writable(b) => &**b,
                Region::Shared(s) => return s.read(off, buf),
            };
            buf.copy_from_slice(bytes.get(off..off.checked_add(buf.len())?)?);
            Some(())
        });
        done.ok_or(TrapKind::OutOfBounds {
            addr,
            len: buf.len() as u64,
            write: false,
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TrapKind> {
        self.generation = self.generation.wrapping_add(1);
        let oob = TrapKind::OutOfBounds {
            addr,
            len: data.len() as u64,
            write: true,
        };
        let id = layout::region_of(addr);
        let region = self.slot_mut(id).and_then(Option::as_mut);
        let off = layout::offset_of(addr) as usize;
        let done = match region {
            Some(Region::Writable(bytes)) => off
                .checked_add(data.len())
                .and_then(|end| bytes.get_mut(off..end))
                .map(|dst| dst.copy_from_slice(data)),
            Some(Region::Shared(s)) => s.write(off, data),
            Some(Region::ReadOnly(_)) | None => None,
        };
        if id == layout::STACK && done.is_some() && !data.is_empty() {
            let off = off as u64;
            self.lowest_stack_write = Some(self.lowest_stack_write.map_or(off, |low| low.min(off)));
        }
        done.ok_or(oob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `insert_buffers` builds the map the `insert`s build: the same regions, extents, ids,
    /// kept rows, generation and accesses at every boundary, and the same stack mark after
    /// writes; with each buffer present or absent, on a fresh map and on one whose rows are
    /// stale (a region's bytes reached through `&mut` since they were derived).
    #[test]
    fn inserting_the_buffers_at_once_is_inserting_them_in_turn() {
        use alloc::{format, vec};
        let sizes = [
            (Some(0), None),
            (Some(1), Some(0)),
            (Some(64), Some(24)),
            (None, Some(8)),
        ];
        let rodata = [7u8; 16];
        for ((data_len, metadata_len), stale) in sizes
            .iter()
            .copied()
            .chain([(None, None)])
            .flat_map(|lens| [(lens, false), (lens, true)])
        {
            let buffers = || {
                let mut fill = 0u8;
                let mut buffer = |len: Option<usize>| {
                    len.map(|len| {
                        (0..len)
                            .map(|_| {
                                fill = fill.wrapping_add(1);
                                fill
                            })
                            .collect::<Vec<u8>>()
                    })
                };
                (
                    vec![0u8; 512],
                    vec![3u8; 8],
                    buffer(data_len),
                    buffer(metadata_len),
                )
            };
            let (mut stack_a, mut extra_a, mut data_a, mut metadata_a) = buffers();
            let (mut stack_b, mut extra_b, mut data_b, mut metadata_b) = buffers();
            let mut a = MemoryMap::with_spill(MapSpill::default());
            let mut b = MemoryMap::with_spill(MapSpill::default());
            for map in [&mut a, &mut b] {
                map.insert(layout::RODATA, Region::ReadOnly(&rodata));
            }
            a.insert(layout::FIRST_EXTRA, Region::Writable(&mut extra_a));
            b.insert(layout::FIRST_EXTRA, Region::Writable(&mut extra_b));
            if stale {
                let at = layout::vm_addr(layout::FIRST_EXTRA, 0);
                a.write(at, &[1]).unwrap();
                b.write(at, &[1]).unwrap();
            }
            a.insert_buffers(
                data_a.as_deref_mut(),
                metadata_a.as_deref_mut(),
                &mut stack_a,
            );
            if let Some(data) = data_b.as_deref_mut() {
                b.insert(layout::INPUT, Region::Writable(data));
            }
            if let Some(metadata) = metadata_b.as_deref_mut() {
                b.insert(layout::METADATA, Region::Writable(metadata));
            }
            b.insert(layout::STACK, Region::Writable(&mut stack_b));
            let case = format!("input {data_len:?}, metadata {metadata_len:?}, stale {stale}");
            assert_eq!(a.mapped_ids(), b.mapped_ids(), "{case}");
            assert_eq!(a.id_bound(), b.id_bound(), "{case}");
            assert_eq!(a.generation(), b.generation(), "{case}");
            assert_eq!(a.raw_generation, b.raw_generation, "{case}");
            for id in 0..=layout::MAX_REGION {
                assert_eq!(a.extent(id), b.extent(id), "{case}, id {id}");
                assert_eq!(a.get(id).is_some(), b.get(id).is_some(), "{case}, id {id}");
                let (row_a, row_b) = (a.raw_entry(id as usize), b.raw_entry(id as usize));
                assert_eq!(row_a.len, row_b.len, "{case}, id {id}");
                assert_eq!(row_a.writable, row_b.writable, "{case}, id {id}");
                assert_eq!(
                    row_a.host.is_null(),
                    row_b.host.is_null(),
                    "{case}, id {id}"
                );
            }
            let mut rows = (Vec::new(), Vec::new());
            a.raw_rows(a.mapped_ids(), |id, row| {
                rows.0.push((id, row.len, row.writable))
            });
            b.raw_rows(b.mapped_ids(), |id, row| {
                rows.1.push((id, row.len, row.writable))
            });
            assert_eq!(rows.0, rows.1, "{case}");
            for id in [layout::INPUT, layout::METADATA, layout::STACK] {
                let len = a.extent(id).0;
                for off in [0, 1, len.saturating_sub(1), len, len + 1] {
                    let addr = layout::vm_addr(id, off);
                    assert_eq!(
                        a.load::<1>(addr),
                        b.load::<1>(addr),
                        "{case}, id {id}+{off}"
                    );
                    assert_eq!(
                        a.load::<8>(addr),
                        b.load::<8>(addr),
                        "{case}, id {id}+{off}"
                    );
                    assert_eq!(
                        a.store(addr, [0xa5u8; 2]),
                        b.store(addr, [0xa5u8; 2]),
                        "{case}, id {id}+{off}"
                    );
                }
            }
            for off in [500, 8, 300] {
                let addr = layout::vm_addr(layout::STACK, off);
                assert_eq!(a.write(addr, &[1, 2]), b.write(addr, &[1, 2]), "{case}");
                assert_eq!(a.lowest_stack_write(), b.lowest_stack_write(), "{case}");
            }
            drop((a, b));
            assert_eq!(
                (stack_a, extra_a, data_a, metadata_a),
                (stack_b, extra_b, data_b, metadata_b),
                "{case}"
            );
        }
    }

    #[test]
    fn accesses_are_checked_per_region_and_width() {
        let rodata = [1u8, 2, 3, 4];
        let mut input = [0u8; 8];
        let mut map = MemoryMap::new();
        map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let ro = layout::vm_addr(layout::RODATA, 0);
        let inp = layout::vm_addr(layout::INPUT, 0);
        assert_eq!(map.load::<4>(ro), Some([1, 2, 3, 4]));
        assert_eq!(map.load::<4>(ro + 1), None, "straddles the end");
        assert_eq!(map.load::<1>(0), None, "null");
        assert_eq!(map.store(ro, [9u8]), None, "read-only");
        assert_eq!(map.store(inp + 7, [9u8]), Some(()));
        assert_eq!(map.store(inp + 7, [9u8, 9]), None);
        assert_eq!(map.read_u64(inp).unwrap(), 9 << 56);
        let err = map.write(inp + 4, &[0; 8]).unwrap_err();
        assert_eq!(
            err,
            TrapKind::OutOfBounds {
                addr: inp + 4,
                len: 8,
                write: true
            }
        );
        map.insert(0, Region::ReadOnly(&rodata));
        assert_eq!(map.load::<1>(0), None, "region 0 is never mapped");
    }

    #[test]
    fn a_range_is_mapped_when_it_ends_inside_its_region() {
        let mut input = [0u8; 64];
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let at = |off| layout::vm_addr(layout::INPUT, off);
        let oob = |addr, len| TrapKind::OutOfBounds {
            addr,
            len,
            write: false,
        };
        assert_eq!(map.check_range(at(0), 64, false), Ok(()));
        assert_eq!(map.check_range(at(63), 1, false), Ok(()));
        assert_eq!(map.check_range(at(1), 64, false), Err(oob(at(1), 64)));
        assert_eq!(
            map.check_range(at(0), 1 << 62, false),
            Err(oob(at(0), 1 << 62))
        );
        assert_eq!(
            map.check_range(at(8), u64::MAX, false),
            Err(oob(at(8), u64::MAX))
        );
        // The window's end: the next region's first byte is not this region's.
        let next = layout::vm_addr(layout::METADATA, 0);
        assert_eq!(
            map.check_range(at(0xffff_ffff), 2, true),
            Err(TrapKind::OutOfBounds {
                addr: at(0xffff_ffff),
                len: 2,
                write: true
            })
        );
        assert_eq!(map.check_range(next, 1, false), Err(oob(next, 1)));
        assert_eq!(
            map.check_range(0, 0, false),
            Ok(()),
            "an empty range is the access's"
        );
    }

    #[test]
    fn the_lowest_stack_offset_written_through_vm_memory_is_kept() {
        let mut stack = [0u8; 64];
        let mut input = [0u8; 64];
        let mut map = MemoryMap::new();
        map.insert(layout::STACK, Region::Writable(&mut stack));
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let stack_at = |off| layout::vm_addr(layout::STACK, off);
        assert_eq!(map.lowest_stack_write(), None);
        map.write(layout::vm_addr(layout::INPUT, 0), &[1; 8])
            .unwrap();
        assert_eq!(map.lowest_stack_write(), None, "not the stack");
        map.write(stack_at(40), &[1; 8]).unwrap();
        map.write(stack_at(48), &[1; 8]).unwrap();
        assert_eq!(map.lowest_stack_write(), Some(40));
        assert!(map.write(stack_at(60), &[1; 8]).is_err());
        map.write(stack_at(8), &[]).unwrap();
        assert_eq!(map.lowest_stack_write(), Some(40), "nothing written");
        map.write(stack_at(16), &[1]).unwrap();
        assert_eq!(map.lowest_stack_write(), Some(16));
    }

    /// A slice longer than 4 GiB is mapped as its first 4 GiB only: its later bytes would have
    /// the next region's addresses. (A zeroed `Vec` is not backed by memory until touched.)
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_region_holds_at_most_its_4_gib_window() {
        let window = layout::MAX_REGION_LEN as usize;
        let mut big = alloc::vec![0u8; window + 16];
        big[window - 1] = 7;
        big[window] = 9;
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut big));
        let start = layout::vm_addr(layout::INPUT, 0);
        assert_eq!(map.get(layout::INPUT).map(Region::len), Some(window));
        assert_eq!(map.load::<1>(start + window as u64 - 1), Some([7]));
        assert_eq!(
            map.load::<8>(start + window as u64 - 4),
            None,
            "straddles the window"
        );
        assert_eq!(
            map.load::<1>(start + window as u64),
            None,
            "the next region"
        );
        assert_eq!(map.store(start + window as u64 - 2, [1u8, 2]), Some(()));
        assert_eq!(map.store(start + window as u64 - 1, [1u8, 2]), None);
        let mut buf = [0u8; 2];
        assert!(map.read(start + window as u64 - 1, &mut buf).is_err());
        let rodata = alloc::vec![0u8; window + 1];
        map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        assert_eq!(map.get(layout::RODATA).map(Region::len), Some(window));
    }
}
