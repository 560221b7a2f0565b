//! Hash maps (`HASH`, `PERCPU_HASH`, `LRU_HASH`, `LRU_PERCPU_HASH`), laid out as the kernel's
//! preallocated hash tables are, in safe Rust.
//!
//! Every element lives in one of a fixed set of *slots* (the kernel's preallocated
//! elements): its key, hash and chain link in atomic arrays here, its value in the value
//! region a program sees, at `slot * stride`. Buckets are singly linked chains of slots.
//!
//! - **Lookups take no lock**: they walk a chain with acquire loads. A slot freed and reused
//!   while a lookup walks it may lead the walk into another bucket's chain; every chain ends
//!   in a *nulls* marker naming its bucket (the kernel's `hlist_nulls`), so the walk sees that
//!   it ended in the wrong bucket and restarts (after a few restarts it takes the lock).
//! - **Writers lock their bucket.** An update of an existing key links a fresh slot with the
//!   new value in place of the old one (readers see the old element or the new one, never a
//!   mix), then frees the old slot — which, as in the kernel, a program may still be reading
//!   through a pointer it got earlier. Freed slots are reused last (first in, first out), and
//!   each slot counts its reuses (a seqlock), so the host's lookups copy a whole element or
//!   retry. Per-CPU values are updated in place, as the kernel does.
//! - **LRU** maps mark an element when a program looks it up; an insert into a full map
//!   evicts with a clock sweep (the first unmarked element, clearing marks on the way). The
//!   kernel's LRU is approximate too; which element goes may differ from it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};

use ebpf_abi::SharedMemory;

use crate::words::Words;
use crate::{MapError, MapSpec, MapType, UpdateFlags, round_up_8};

/// Marks a chain's end; the low bits are the bucket's index.
const NULLS: u32 = 1 << 31;
/// Lock-free attempts before a lookup takes its bucket's lock.
const RETRIES: usize = 4;

#[derive(Debug)]
pub(crate) struct Hash {
    spec: MapSpec,
    lru: bool,
    /// Words per key.
    key_words: usize,
    /// Bytes per value.
    stride: usize,
    /// Copies of each value (CPUs for per-CPU maps, else 1).
    copies: usize,
    /// `buckets.len() - 1` (a power of two minus one).
    bucket_mask: u32,
    buckets: Box<[AtomicU32]>,
    locks: Box<[Mutex<()>]>,
    keys: Box<[AtomicU64]>,
    next: Box<[AtomicU32]>,
    hashes: Box<[AtomicU32]>,
    linked: Box<[AtomicBool]>,
    referenced: Box<[AtomicBool]>,
    /// Per slot: odd while the slot is being filled; changes every time it is.
    generation: Box<[AtomicU32]>,
    values: Words,
    free: Mutex<VecDeque<u32>>,
    count: AtomicU32,
    hand: AtomicU32,
}

/// A key's hash (deterministic: the same on every run and host).
fn hash_of(key: &[u8]) -> u32 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    (h ^ (h >> 32)) as u32
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the link to a slot is: a bucket head or another slot's `next`.
#[derive(Clone, Copy)]
enum Link {
    Head(usize),
    After(usize),
}

impl Hash {
    pub(crate) fn new(spec: MapSpec, cpus: usize) -> Result<Hash, MapError> {
        if spec.key_size == 0 {
            return Err(MapError::BadSpec {
                reason: "a hash map's keys cannot be empty".into(),
            });
        }
        let lru = matches!(spec.map_type, MapType::LruHash | MapType::LruPerCpuHash);
        let copies = if spec.map_type.is_per_cpu() { cpus } else { 1 };
        // Spare slots let an update link the new element before the old one is freed.
        let slots = spec.max_entries.saturating_add(copies as u32 + 4);
        if slots >= NULLS {
            return Err(MapError::TooLarge {
                bytes: u64::from(slots) * round_up_8(spec.value_size) as u64,
            });
        }
        let buckets = spec.max_entries.max(1).next_power_of_two();
        let n = slots as usize;
        let key_words = round_up_8(spec.key_size) / 8;
        let stride = round_up_8(spec.value_size);
        // The limit is on the memory the map takes, all of it — the spare slots, every CPU's
        // copy and the bookkeeping — not on the definition's nominal size, which undercounts a
        // one-entry map of 1 GiB values sixfold and a per-CPU map by the CPU count squared.
        let bytes = Hash::footprint(slots, buckets, copies, key_words, stride);
        if bytes > crate::Map::MAX_BYTES {
            return Err(MapError::TooLarge { bytes });
        }
        Ok(Hash {
            spec,
            lru,
            key_words,
            stride,
            copies,
            bucket_mask: buckets - 1,
            buckets: (0..buckets).map(|b| AtomicU32::new(NULLS | b)).collect(),
            locks: (0..buckets).map(|_| Mutex::new(())).collect(),
            keys: (0..n * key_words).map(|_| AtomicU64::new(0)).collect(),
            next: (0..n).map(|_| AtomicU32::new(NULLS)).collect(),
            hashes: (0..n).map(|_| AtomicU32::new(0)).collect(),
            linked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            referenced: (0..n).map(|_| AtomicBool::new(false)).collect(),
            generation: (0..n).map(|_| AtomicU32::new(0)).collect(),
            values: Words::new(copies, stride * n),
            free: Mutex::new((0..slots).collect()),
            count: AtomicU32::new(0),
            hand: AtomicU32::new(0),
        })
    }

    /// Bytes [`Hash::new`] allocates for `slots` slots and `buckets` buckets: per slot every
    /// CPU's value, the key, and the link, hash, generation and free-list words and two flags;
    /// per bucket its head and its lock.
    fn footprint(slots: u32, buckets: u32, copies: usize, key_words: usize, stride: usize) -> u64 {
        let values = (copies as u64).saturating_mul(stride as u64);
        let per_slot = values.saturating_add(key_words as u64 * 8 + 4 * 4 + 2);
        let per_bucket = 4 + std::mem::size_of::<Mutex<()>>() as u64;
        u64::from(slots)
            .saturating_mul(per_slot)
            .saturating_add(u64::from(buckets).saturating_mul(per_bucket))
    }

    pub(crate) fn values(&self, cpu: usize) -> SharedMemory<'_> {
        self.values.slice(if self.copies == 1 { 0 } else { cpu })
    }

    /// Live elements.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() == self.spec.key_size as usize {
            Ok(())
        } else {
            Err(MapError::KeySize {
                expected: self.spec.key_size,
                got: key.len(),
            })
        }
    }

    fn bucket_of(&self, hash: u32) -> usize {
        (hash & self.bucket_mask) as usize
    }

    fn key_matches(&self, slot: usize, key: &[u8]) -> bool {
        key.chunks(8).enumerate().all(|(i, chunk)| {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.keys
                .get(slot * self.key_words + i)
                .is_some_and(|k| k.load(Ordering::Relaxed) == u64::from_ne_bytes(w))
        })
    }

    fn key_of(&self, slot: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_words * 8);
        self.key_into(slot, &mut out);
        out
    }

    /// Replaces `out` with the key in `slot`.
    fn key_into(&self, slot: usize, out: &mut Vec<u8>) {
        out.clear();
        for i in 0..self.key_words {
            let w = self
                .keys
                .get(slot * self.key_words + i)
                .map_or(0, |k| k.load(Ordering::Relaxed));
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.truncate(self.spec.key_size as usize);
    }

    fn link(&self, link: Link) -> Option<&AtomicU32> {
        match link {
            Link::Head(b) => self.buckets.get(b),
            Link::After(s) => self.next.get(s),
        }
    }

    /// Walks bucket `b` for `key` without a lock: `Ok(slot)` / `Ok(None)`, or `Err(())` when
    /// the walk strayed into another chain (a slot was reused under it).
    fn walk(&self, b: usize, key: &[u8], hash: u32) -> Result<Option<usize>, ()> {
        let mut at = self.buckets.get(b).ok_or(())?.load(Ordering::Acquire);
        for _ in 0..=self.next.len() {
            if at & NULLS != 0 {
                return if at == NULLS | b as u32 {
                    Ok(None)
                } else {
                    Err(())
                };
            }
            let slot = at as usize;
            let same_hash = self
                .hashes
                .get(slot)
                .is_some_and(|h| h.load(Ordering::Relaxed) == hash);
            if same_hash && self.key_matches(slot, key) {
                return Ok(Some(slot));
            }
            at = self.next.get(slot).ok_or(())?.load(Ordering::Acquire);
        }
        Err(())
    }

    /// The slot holding `key`, without a lock (the lock only after repeated interference).
    fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = hash_of(key);
        let b = self.bucket_of(hash);
        for _ in 0..RETRIES {
            if let Ok(found) = self.walk(b, key, hash) {
                return found;
            }
        }
        let _guard = lock(self.locks.get(b)?);
        self.find_locked(b, key, hash).map(|(slot, _)| slot)
    }

    /// With bucket `b` locked: the slot holding `key` and the link that points at it.
    fn find_locked(&self, b: usize, key: &[u8], hash: u32) -> Option<(usize, Link)> {
        let mut link = Link::Head(b);
        for _ in 0..=self.next.len() {
            let at = self.link(link)?.load(Ordering::Acquire);
            if at & NULLS != 0 {
                return None;
            }
            let slot = at as usize;
            if self
                .hashes
                .get(slot)
                .is_some_and(|h| h.load(Ordering::Relaxed) == hash)
                && self.key_matches(slot, key)
            {
                return Some((slot, link));
            }
            link = Link::After(slot);
        }
        None
    }

    /// A program's lookup: the value's offset in [`Hash::values`]. Marks LRU elements used.
    pub(crate) fn lookup_offset(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        self.check_key(key)?;
        let slot = self.find(key);
        if let Some(slot) = slot
            && self.lru
            && let Some(r) = self.referenced.get(slot)
        {
            r.store(true, Ordering::Relaxed);
        }
        Ok(slot.map(|s| s * self.stride))
    }

    fn value_width(&self) -> usize {
        if !self.spec.map_type.is_per_cpu() {
            self.spec.value_size as usize
        } else {
            self.stride
        }
    }

    fn read_all(&self, slot: usize) -> Vec<u8> {
        self.values
            .read_copies(slot * self.stride, self.copies, self.value_width())
    }

    /// The host's lookup (per-CPU: every CPU's value, each padded to 8 bytes): a copy of one
    /// whole element, retried if the slot was refilled while it was read.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        loop {
            let Some(slot) = self.find(key) else {
                return Ok(None);
            };
            let Some(generation) = self.generation.get(slot) else {
                return Ok(None);
            };
            let before = generation.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let value = self.read_all(slot);
            let hash = hash_of(key);
            let still = self.hashes.get(slot).map(|h| h.load(Ordering::Relaxed)) == Some(hash)
                && self.key_matches(slot, key);
            fence(Ordering::Acquire);
            if still && generation.load(Ordering::Relaxed) == before {
                return Ok(Some(value));
            }
        }
    }

    /// Writes a slot's values: `Host(value)` gives every copy (per-CPU: concatenated, padded);
    /// `Cpu(cpu, value)` gives one CPU's copy and, when `fresh`, zeroes the others (what the
    /// kernel does for an element a program creates).
    fn write_values(&self, slot: usize, write: &Write<'_>, fresh: bool) {
        let off = slot * self.stride;
        match *write {
            Write::Host(value) => {
                let own = self.spec.value_size as usize;
                self.values
                    .write_copies(off, value, self.value_width(), own);
            }
            Write::Cpu(this, value) => {
                for cpu in 0..self.copies {
                    let memory = self.values(cpu);
                    if cpu == this || self.copies == 1 {
                        let _ = memory.write(off, value);
                    } else if fresh {
                        let _ = memory.write(off, &vec![0u8; self.stride]);
                    }
                }
            }
        }
    }

    fn alloc(&self) -> Option<usize> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .map(|s| s as usize)
    }

    fn release(&self, slot: usize) {
        if let Some(l) = self.linked.get(slot) {
            l.store(false, Ordering::Relaxed);
        }
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(slot as u32);
    }

    /// Fills a free slot with `key` and its values, ready to be linked.
    fn prepare(&self, slot: usize, key: &[u8], hash: u32, write: &Write<'_>) {
        let generation = self.generation.get(slot);
        if let Some(g) = generation {
            g.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::Release);
        }
        for (i, chunk) in key.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            if let Some(k) = self.keys.get(slot * self.key_words + i) {
                k.store(u64::from_ne_bytes(w), Ordering::Relaxed);
            }
        }
        if let Some(h) = self.hashes.get(slot) {
            h.store(hash, Ordering::Relaxed);
        }
        if let Some(r) = self.referenced.get(slot) {
            r.store(false, Ordering::Relaxed);
        }
        self.write_values(slot, write, true);
        if let Some(g) = generation {
            g.fetch_add(1, Ordering::Release);
        }
    }

    pub(crate) fn update(
        &self,
        key: &[u8],
        write: Write<'_>,
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        self.check_key(key)?;
        let (expected, got) = match write {
            Write::Host(v) => (self.value_width() * self.copies, v.len()),
            Write::Cpu(_, v) => (self.spec.value_size as usize, v.len()),
        };
        if expected != got {
            return Err(MapError::ValueSize { expected, got });
        }
        let hash = hash_of(key);
        let b = self.bucket_of(hash);
        let _guard = lock(self.locks.get(b).ok_or(MapError::NotFound)?);
        match (self.find_locked(b, key, hash), flags) {
            (Some(_), UpdateFlags::NoExist) => Err(MapError::Exists),
            (None, UpdateFlags::Exist) => Err(MapError::NotFound),
            (Some((old, link)), _) => {
                if self.copies > 1 {
                    // Per-CPU values are updated in place, as in the kernel.
                    self.write_values(old, &write, false);
                    return Ok(());
                }
                let Some(slot) = self.alloc() else {
                    // Every spare slot is in use by concurrent updates: write in place.
                    self.write_values(old, &write, false);
                    return Ok(());
                };
                self.prepare(slot, key, hash, &write);
                let after = self
                    .next
                    .get(old)
                    .map_or(NULLS | b as u32, |n| n.load(Ordering::Relaxed));
                if let Some(n) = self.next.get(slot) {
                    n.store(after, Ordering::Relaxed);
                }
                if let Some(l) = self.linked.get(slot) {
                    l.store(true, Ordering::Relaxed);
                }
                if let Some(l) = self.link(link) {
                    l.store(slot as u32, Ordering::Release);
                }
                self.release(old);
                Ok(())
            }
            (None, _) => {
                let full = self.count.fetch_add(1, Ordering::Relaxed) >= self.spec.max_entries;
                if full && !(self.lru && self.evict(b)) {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return Err(MapError::Full);
                }
                let Some(slot) = self.alloc() else {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    return Err(MapError::Full);
                };
                self.prepare(slot, key, hash, &write);
                let head = self.buckets.get(b).ok_or(MapError::Full)?;
                if let Some(n) = self.next.get(slot) {
                    n.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                if let Some(l) = self.linked.get(slot) {
                    l.store(true, Ordering::Relaxed);
                }
                head.store(slot as u32, Ordering::Release);
                Ok(())
            }
        }
    }

    /// With bucket `b` locked: unlinks `slot` (found through `link`) and frees it.
    fn unlink(&self, slot: usize, link: Link) {
        let after = self.next.get(slot).map(|n| n.load(Ordering::Relaxed));
        if let (Some(after), Some(l)) = (after, self.link(link)) {
            l.store(after, Ordering::Release);
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.release(slot);
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let hash = hash_of(key);
        let b = self.bucket_of(hash);
        let _guard = lock(self.locks.get(b).ok_or(MapError::NotFound)?);
        let (slot, link) = self.find_locked(b, key, hash).ok_or(MapError::NotFound)?;
        self.unlink(slot, link);
        Ok(())
    }

    /// Evicts one element (clock sweep), holding bucket `held`'s lock already.
    fn evict(&self, held: usize) -> bool {
        let slots = self.next.len() as u32;
        for _ in 0..slots.saturating_mul(2) {
            let s = (self.hand.fetch_add(1, Ordering::Relaxed) % slots) as usize;
            if !self
                .linked
                .get(s)
                .is_some_and(|l| l.load(Ordering::Relaxed))
            {
                continue;
            }
            if self
                .referenced
                .get(s)
                .is_some_and(|r| r.swap(false, Ordering::Relaxed))
            {
                continue;
            }
            let hash = self.hashes.get(s).map_or(0, |h| h.load(Ordering::Relaxed));
            let b = self.bucket_of(hash);
            let other = if b == held {
                None
            } else {
                match self.locks.get(b).map(Mutex::try_lock) {
                    Some(Ok(g)) => Some(g),
                    _ => continue,
                }
            };
            let key = self.key_of(s);
            if let Some((slot, link)) = self.find_locked(b, &key, hash)
                && slot == s
            {
                // The caller counted its new element already; this one's uncounting makes room.
                self.unlink(slot, link);
                drop(other);
                return true;
            }
        }
        false
    }

    /// The key after `key` in iteration order (bucket by bucket, chain order); the first key
    /// when `key` is `None` or absent.
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        let mut start_bucket = 0;
        if let Some(key) = key {
            self.check_key(key)?;
            let hash = hash_of(key);
            let b = self.bucket_of(hash);
            let _guard = lock(self.locks.get(b).ok_or(MapError::NotFound)?);
            if let Some((slot, _)) = self.find_locked(b, key, hash) {
                let after = self
                    .next
                    .get(slot)
                    .map_or(NULLS, |n| n.load(Ordering::Acquire));
                if after & NULLS == 0 {
                    return Ok(Some(self.key_of(after as usize)));
                }
                start_bucket = b + 1;
            }
        }
        for b in start_bucket..self.buckets.len() {
            let _guard = lock(self.locks.get(b).ok_or(MapError::NotFound)?);
            let head = self
                .buckets
                .get(b)
                .map_or(NULLS, |h| h.load(Ordering::Acquire));
            if head & NULLS == 0 {
                return Ok(Some(self.key_of(head as usize)));
            }
        }
        Ok(None)
    }

    /// Every element's slot with its key, in iteration order.
    fn slots(&self) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::with_capacity(self.len());
        for b in 0..self.buckets.len() {
            let _guard = self.locks.get(b).map(lock);
            let mut at = self
                .buckets
                .get(b)
                .map_or(NULLS, |h| h.load(Ordering::Acquire));
            let mut steps = 0;
            while at & NULLS == 0 && steps <= self.next.len() {
                out.push((self.key_of(at as usize), at as usize));
                at = self
                    .next
                    .get(at as usize)
                    .map_or(NULLS, |n| n.load(Ordering::Acquire));
                steps += 1;
            }
        }
        out
    }

    /// Every element as the host sees it.
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.slots()
            .into_iter()
            .map(|(k, s)| (k, self.read_all(s)))
            .collect()
    }

    /// Every element's key and value offset (for `for_each_map_elem`).
    /// The element whose value lies first at or after offset `cursor`: its value's offset,
    /// its key in `key`. It scans slots from the cursor on, so a walk that moves the cursor
    /// past each element found visits every slot once in all, and it allocates nothing
    /// (`key` is the caller's). An element found is checked to be linked under its bucket's
    /// lock, so its key is whole; one inserted or deleted meanwhile may or may not be seen.
    pub(crate) fn element_at_or_after(&self, cursor: usize, key: &mut Vec<u8>) -> Option<usize> {
        let first = cursor.div_ceil(self.stride.max(1));
        for slot in first..self.linked.len() {
            if !self
                .linked
                .get(slot)
                .is_some_and(|l| l.load(Ordering::Relaxed))
            {
                continue;
            }
            let hash = self
                .hashes
                .get(slot)
                .map_or(0, |h| h.load(Ordering::Relaxed));
            let b = self.bucket_of(hash);
            let _guard = self.locks.get(b).map(lock);
            if self.chain_holds(b, slot) {
                self.key_into(slot, key);
                return Some(slot * self.stride);
            }
        }
        None
    }

    /// With bucket `b` locked: whether `slot` is in its chain.
    fn chain_holds(&self, b: usize, slot: usize) -> bool {
        let mut at = self
            .buckets
            .get(b)
            .map_or(NULLS, |h| h.load(Ordering::Acquire));
        for _ in 0..=self.next.len() {
            if at & NULLS != 0 {
                return false;
            }
            if at as usize == slot {
                return true;
            }
            at = self
                .next
                .get(at as usize)
                .map_or(NULLS, |n| n.load(Ordering::Acquire));
        }
        false
    }

    pub(crate) fn offsets(&self) -> Vec<(Vec<u8>, usize)> {
        self.slots()
            .into_iter()
            .map(|(k, s)| (k, s * self.stride))
            .collect()
    }
}

/// The value an update writes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Write<'v> {
    /// The host's: every CPU's value (per-CPU maps: concatenated, each padded to 8 bytes).
    Host(&'v [u8]),
    /// A program's, running on this CPU.
    Cpu(usize, &'v [u8]),
}
