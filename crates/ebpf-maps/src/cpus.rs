//! [`Cpus`]: the "CPUs" of a map set. Each run claims one for its whole duration, so a per-CPU
//! value is only ever touched by one run at a time — the kernel's guarantee (a CPU runs one
//! program at a time) that makes `*value += 1` on a per-CPU counter exact without atomics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A fixed number of CPU slots; [`Cpus::claim`] hands out a free one.
#[derive(Debug)]
pub struct Cpus {
    busy: Box<[AtomicBool]>,
    /// Where the next claim starts looking (spreads threads over the slots).
    next: AtomicUsize,
}

/// A claimed CPU: its index is the run's `smp_processor_id`; dropping it frees the slot.
#[derive(Debug)]
pub struct CpuSlot<'a> {
    cpus: &'a Cpus,
    index: usize,
}

impl Cpus {
    /// `count` slots (at least one).
    pub fn new(count: usize) -> Cpus {
        Cpus {
            busy: (0..count.max(1)).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// How many slots there are (the per-CPU maps' number of copies).
    pub fn count(&self) -> usize {
        self.busy.len()
    }

    /// Claims a free slot, waiting (yielding the thread) while every slot is busy.
    pub fn claim(&self) -> CpuSlot<'_> {
        loop {
            if let Some(slot) = self.try_claim() {
                return slot;
            }
            std::thread::yield_now();
        }
    }

    /// Claims a free slot, or `None` if every slot is busy.
    pub fn try_claim(&self) -> Option<CpuSlot<'_>> {
        let n = self.busy.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let index = (start.wrapping_add(i)) % n;
            let flag = self.busy.get(index)?;
            flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| CpuSlot { cpus: self, index })
        })
    }

    /// Claims slot `index` (waiting while it is busy), for runs pinned to one CPU; `None` if
    /// there is no such slot.
    pub fn claim_index(&self, index: usize) -> Option<CpuSlot<'_>> {
        let flag = self.busy.get(index)?;
        while flag
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Some(CpuSlot { cpus: self, index })
    }
}

impl CpuSlot<'_> {
    /// The slot's index: `0 .. Cpus::count()`.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for CpuSlot<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.cpus.busy.get(self.index) {
            flag.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_held_until_dropped() {
        let cpus = Cpus::new(2);
        let a = cpus.try_claim().unwrap();
        let b = cpus.try_claim().unwrap();
        assert_ne!(a.index(), b.index());
        assert!(cpus.try_claim().is_none());
        let freed = a.index();
        drop(a);
        assert_eq!(cpus.try_claim().map(|s| s.index()), Some(freed));
        assert!(cpus.claim_index(5).is_none());
    }
}
