//! [`Cpus`]: the "CPUs" of a map set. Each run claims one for its whole duration, so a per-CPU
//! value is only ever touched by one run at a time — the kernel's guarantee (a CPU runs one
//! program at a time) that makes `*value += 1` on a per-CPU counter exact without atomics.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

std::thread_local! {
    /// The slots this thread holds: (the `Cpus`' address, the index). A claim from inside a
    /// run (a helper running a program of the same set) finds its thread's slot here.
    static HELD: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// A fixed number of CPU slots; [`Cpus::claim`] hands out a free one.
#[derive(Debug)]
pub struct Cpus {
    busy: Box<[AtomicBool]>,
    /// Where the next claim starts looking (spreads threads over the slots).
    next: AtomicUsize,
}

/// A claimed CPU: its index is the run's `smp_processor_id`; dropping it frees the slot.
/// Not `Send`: the slot is its thread's (see [`Cpus::claim`]).
#[derive(Debug)]
pub struct CpuSlot<'a> {
    cpus: &'a Cpus,
    index: usize,
    /// Whether this is a nested claim of a slot its thread already held, which the outer
    /// claim frees.
    nested: bool,
    not_send: PhantomData<*const ()>,
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

    /// Claims a free slot, waiting (yielding the thread) while every slot is busy. A thread
    /// that already holds a slot of this set (a helper runs a program while its own run is
    /// suspended in it) gets that slot again at once: waiting for a free one could wait for
    /// ever, for the slot its own thread holds (always, with one CPU). The outer run is
    /// suspended meanwhile, so each CPU still runs one program at a time, as when a kernel
    /// program is interrupted by another on its CPU.
    pub fn claim(&self) -> CpuSlot<'_> {
        if let Some(slot) = self.held_by_this_thread() {
            return slot;
        }
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
                .map(|_| self.claimed(index))
        })
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// A nested claim of the slot this thread already holds, if it holds one.
    fn held_by_this_thread(&self) -> Option<CpuSlot<'_>> {
        let key = self.key();
        let index = HELD
            .try_with(|held| {
                held.borrow()
                    .iter()
                    .find(|&&(cpus, _)| cpus == key)
                    .map(|&(_, index)| index)
            })
            .ok()
            .flatten()?;
        Some(CpuSlot {
            cpus: self,
            index,
            nested: true,
            not_send: PhantomData,
        })
    }

    /// Records slot `index`, just claimed, as this thread's.
    fn claimed(&self, index: usize) -> CpuSlot<'_> {
        let key = self.key();
        let _ = HELD.try_with(|held| held.borrow_mut().push((key, index)));
        CpuSlot {
            cpus: self,
            index,
            nested: false,
            not_send: PhantomData,
        }
    }

    /// Claims slot `index` (waiting while it is busy), for runs pinned to one CPU; `None` if
    /// there is no such slot. A thread that holds that slot already gets it again at once
    /// (as with [`Cpus::claim`]).
    pub fn claim_index(&self, index: usize) -> Option<CpuSlot<'_>> {
        let flag = self.busy.get(index)?;
        if let Some(slot) = self.held_by_this_thread().filter(|s| s.index == index) {
            return Some(slot);
        }
        while flag
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Some(self.claimed(index))
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
        if self.nested {
            return;
        }
        let key = self.cpus.key();
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|&h| h == (key, self.index)) {
                held.swap_remove(at);
            }
        });
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

    #[test]
    fn a_thread_that_holds_a_slot_gets_it_again_without_waiting() {
        let cpus = Cpus::new(1);
        let outer = cpus.claim();
        // Before, this waited for ever for the slot its own thread holds.
        let inner = cpus.claim();
        assert_eq!(inner.index(), outer.index());
        assert_eq!(cpus.claim_index(0).map(|s| s.index()), Some(0));
        drop(inner);
        // The nested claim's end frees nothing: the outer run still holds the slot.
        let other = std::thread::scope(|s| s.spawn(|| cpus.try_claim().is_none()).join());
        assert!(other.unwrap());
        drop(outer);
        let other = std::thread::scope(|s| s.spawn(|| cpus.try_claim().map(|s| s.index())).join());
        assert_eq!(other.unwrap(), Some(0));
    }
}
