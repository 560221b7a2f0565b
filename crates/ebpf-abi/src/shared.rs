//! [`SharedMemory`]: a region that concurrent runs share (map values), accessed only through
//! atomics, so that many threads may load, store and read-modify-write it at once without
//! undefined behaviour.
//!
//! # Why a region kind of its own
//!
//! A [`crate::Region::Writable`] is a `&mut [u8]`: exclusive to one run. Map values are not:
//! every run of a program (on any thread) and the host see the same bytes, as in the kernel.
//! Holding `&mut` to memory another thread writes is undefined behaviour in Rust, so shared
//! bytes live in `AtomicU64` words and every access from Rust is an atomic one:
//!
//! - a load or store of 1, 2, 4 or 8 bytes that lies inside one aligned 8-byte word is a
//!   single atomic access of that word (a store narrower than the word is a compare-and-swap
//!   loop that changes only its own bytes, so a neighbour's concurrent store is never lost);
//! - an access that straddles two words is one atomic access per word (it can tear between
//!   the words, as an unaligned access can on the kernel's hosts);
//! - `atomic_*` instructions are sequentially consistent read-modify-writes of their word.
//!
//! # What every engine agrees on
//!
//! The JITs access the same words through [`SharedMemory::as_ptr`] with ordinary
//! instructions: on the hosts they support, an aligned access of up to 8 bytes is a single
//! access (never torn), and their `atomic_*` instructions are the host's atomic
//! read-modify-writes (`lock`-prefixed on x86-64). So every engine gives what the kernel gives
//! a BPF program: aligned accesses are atomic per access, atomics are atomic, and nothing
//! orders plain accesses of different threads (programs that need order use atomics).
//! Plain loads and stores from Rust are `Relaxed`; atomics are `SeqCst`.
//!
//! Bytes are laid out in memory order (`to_ne_bytes` of each word), so that the bytes at
//! `as_ptr() + i` are the bytes a Rust load at offset `i` returns, on every host.

use core::sync::atomic::{AtomicU64, Ordering};

use ebpf_isa::{AtomicOp, Width};

use crate::{TrapKind, semantics};

/// Bytes shared between concurrent runs and the host, in atomic 8-byte words.
///
/// `len` may be shorter than the words (the last word's tail is then unreachable).
#[derive(Clone, Copy, Debug)]
pub struct SharedMemory<'a> {
    words: &'a [AtomicU64],
    len: usize,
}

/// Bytes `start..start + n` of `word`, in memory order.
fn word_bytes(word: u64) -> [u8; 8] {
    word.to_ne_bytes()
}

impl<'a> SharedMemory<'a> {
    /// All the bytes of `words`.
    pub fn new(words: &'a [AtomicU64]) -> SharedMemory<'a> {
        SharedMemory {
            words,
            len: words.len().saturating_mul(8),
        }
    }

    /// The first `len` bytes of `words`, or `None` if the words are shorter.
    pub fn with_len(words: &'a [AtomicU64], len: usize) -> Option<SharedMemory<'a>> {
        (len <= words.len().saturating_mul(8)).then_some(SharedMemory { words, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes at most (for `MemoryMap`'s 4 GiB windows).
    pub(crate) fn prefix(self, len: usize) -> SharedMemory<'a> {
        SharedMemory {
            words: self.words,
            len: self.len.min(len),
        }
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host address of the first byte, for generated code. Writing through it is allowed
    /// (the words are atomics, which permit mutation through a shared reference); generated
    /// code must access it only with single instructions of at most 8 bytes or atomic
    /// instructions, as the module documentation says.
    pub fn as_ptr(&self) -> *mut u8 {
        self.words.as_ptr().cast_mut().cast::<u8>()
    }

    /// Whether `off..off + n` lies inside the region.
    fn contains(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    fn word(&self, index: usize) -> Option<&AtomicU64> {
        self.words.get(index)
    }

    /// Reads one byte (the slow path of unaligned accesses).
    fn byte(&self, at: usize) -> u8 {
        let word = self.word(at / 8).map_or(0, |w| w.load(Ordering::Relaxed));
        word_bytes(word)[at % 8]
    }

    /// Changes bytes `start..start + data.len()` of word `index` (all inside it) atomically.
    fn write_in_word(&self, index: usize, start: usize, data: &[u8]) {
        let Some(word) = self.word(index) else {
            return;
        };
        if start == 0 && data.len() == 8 {
            let mut b = [0; 8];
            b.copy_from_slice(data);
            word.store(u64::from_ne_bytes(b), Ordering::Relaxed);
            return;
        }
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            let mut b = word_bytes(old);
            if let Some(dst) = b.get_mut(start..start + data.len()) {
                dst.copy_from_slice(data);
            }
            Some(u64::from_ne_bytes(b))
        });
    }

    /// The `N` bytes at offset `off`, if they lie inside the region.
    #[inline]
    pub fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        if !self.contains(off, N) {
            return None;
        }
        let mut out = [0u8; N];
        let start = off % 8;
        if start + N <= 8 {
            let word = self.word(off / 8)?.load(Ordering::Relaxed);
            out.copy_from_slice(word_bytes(word).get(start..start + N)?);
        } else {
            self.read(off, &mut out)?;
        }
        Some(out)
    }

    /// Stores `value` at offset `off`, if the bytes lie inside the region.
    #[inline]
    pub fn store<const N: usize>(&self, off: usize, value: [u8; N]) -> Option<()> {
        self.write(off, &value)
    }

    /// Copies `buf.len()` bytes from offset `off` into `buf`.
    pub fn read(&self, off: usize, buf: &mut [u8]) -> Option<()> {
        if !self.contains(off, buf.len()) {
            return None;
        }
        let mut at = off;
        let mut rest = buf;
        while !rest.is_empty() {
            let start = at % 8;
            let n = (8 - start).min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            if n == 1 {
                head[0] = self.byte(at);
            } else {
                let word = self.word(at / 8)?.load(Ordering::Relaxed);
                head.copy_from_slice(word_bytes(word).get(start..start + n)?);
            }
            at += n;
            rest = tail;
        }
        Some(())
    }

    /// Copies `data` to offset `off`, one atomic access per word touched.
    pub fn write(&self, off: usize, data: &[u8]) -> Option<()> {
        if !self.contains(off, data.len()) {
            return None;
        }
        let mut at = off;
        let mut rest = data;
        while !rest.is_empty() {
            let start = at % 8;
            let n = (8 - start).min(rest.len());
            let (head, tail) = rest.split_at(n);
            self.write_in_word(at / 8, start, head);
            at += n;
            rest = tail;
        }
        Some(())
    }

    /// Sets every byte to zero.
    pub fn zero(&self) {
        for word in self.words {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// A 64-bit atomic read-modify-write of the little-endian value at offset `off`, as
    /// [`crate::MemoryMap::atomic64`] specifies it: bounds (as a write) first, then alignment;
    /// `Ok(Some(old))` where `op` fetches. `addr` (the VM address) is for the trap.
    pub fn atomic64(
        &self,
        addr: u64,
        off: usize,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        self.atomic(addr, off, 8, op, operand, r0)
    }

    /// A 32-bit atomic, as [`SharedMemory::atomic64`]; the operands are the low halves and
    /// the fetched value is zero-extended. The other half of the word never changes.
    pub fn atomic32(
        &self,
        addr: u64,
        off: usize,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        self.atomic(addr, off, 4, op, operand, r0)
    }

    /// `width` is 4 or 8 (the two public forms above).
    fn atomic(
        &self,
        addr: u64,
        off: usize,
        width: usize,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        if !self.contains(off, width) {
            return Err(TrapKind::OutOfBounds {
                addr,
                len: width as u64,
                write: true,
            });
        }
        if !addr.is_multiple_of(width as u64) || !off.is_multiple_of(width) {
            return Err(TrapKind::MisalignedAtomic {
                addr,
                len: width as u64,
            });
        }
        let word = self.word(off / 8).ok_or(TrapKind::OutOfBounds {
            addr,
            len: width as u64,
            write: true,
        })?;
        let start = off % 8;
        let mask_width = if width == 8 { Width::W64 } else { Width::W32 };
        // The value's bytes in memory are little-endian; the word holds them in memory order.
        let value_of = |w: u64| -> u64 {
            let b = word_bytes(w);
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(&b[start..start + width]);
            u64::from_le_bytes(v)
        };
        let with_value = |w: u64, v: u64| -> u64 {
            let mut b = word_bytes(w);
            b[start..start + width].copy_from_slice(&v.to_le_bytes()[..width]);
            u64::from_ne_bytes(b)
        };
        // The contract's arithmetic, applied to the word atomically.
        let apply = |old: u64| semantics::atomic(op, mask_width, old, operand, r0);
        let previous = word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                Some(with_value(w, apply(value_of(w)).0))
            })
            .unwrap_or_else(|w| w);
        Ok(apply(value_of(previous)).1)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn loads_and_stores_are_little_endian_and_bounded() {
        let w = words(2);
        let m = SharedMemory::with_len(&w, 12).unwrap();
        assert_eq!(m.store(0, 0x0102_0304u32.to_le_bytes()), Some(()));
        assert_eq!(m.load::<1>(0), Some([4]));
        assert_eq!(m.load::<2>(2), Some([2, 1]));
        // Straddles the two words.
        assert_eq!(m.store(6, [0xaa, 0xbb, 0xcc, 0xdd]), Some(()));
        assert_eq!(m.load::<4>(6), Some([0xaa, 0xbb, 0xcc, 0xdd]));
        assert_eq!(m.load::<8>(5), None, "past the 12-byte length");
        assert_eq!(m.store(11, [1, 2]), None);
        assert_eq!(m.load::<1>(11), Some([0]));
        let mut buf = [0u8; 12];
        m.read(0, &mut buf).unwrap();
        assert_eq!(buf, [4, 3, 2, 1, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0]);
        assert!(SharedMemory::with_len(&w, 17).is_none());
        // The raw bytes behind the pointer are what the loads see.
        let host = m.as_ptr();
        assert!(!host.is_null());
    }

    #[test]
    fn narrow_stores_keep_their_neighbours() {
        let w = words(1);
        let m = SharedMemory::new(&w);
        m.store(0, [0x11u8; 8]).unwrap();
        m.store(3, [0x22u8]).unwrap();
        assert_eq!(
            m.load::<8>(0),
            Some([0x11, 0x11, 0x11, 0x22, 0x11, 0x11, 0x11, 0x11])
        );
    }

    #[test]
    fn atomics_check_bounds_then_alignment() {
        let w = words(2);
        let m = SharedMemory::new(&w);
        let base = 0x6_0000_0000;
        let add = AtomicOp::Add { fetch: true };
        assert_eq!(m.atomic64(base, 0, add, 5, 0), Ok(Some(0)));
        assert_eq!(m.atomic64(base, 0, add, u64::MAX, 0), Ok(Some(5)));
        assert_eq!(m.load::<8>(0), Some(4u64.to_le_bytes()));
        // The upper 32-bit half: a carry out of it is dropped, the lower half is untouched.
        assert_eq!(m.atomic32(base + 4, 4, add, u64::MAX, 0), Ok(Some(0)));
        assert_eq!(m.atomic32(base + 4, 4, add, 2, 0), Ok(Some(0xffff_ffff)));
        assert_eq!(m.load::<8>(0), Some(0x1_0000_0004u64.to_le_bytes()));
        let cmpxchg = AtomicOp::Cmpxchg;
        assert_eq!(m.atomic64(base + 8, 8, cmpxchg, 7, 1), Ok(Some(0)));
        assert_eq!(m.atomic64(base + 8, 8, cmpxchg, 7, 0), Ok(Some(0)));
        assert_eq!(m.load::<8>(8), Some(7u64.to_le_bytes()));
        assert_eq!(
            m.atomic64(base + 12, 12, add, 1, 0),
            Err(TrapKind::OutOfBounds {
                addr: base + 12,
                len: 8,
                write: true
            })
        );
        assert_eq!(
            m.atomic32(base + 2, 2, add, 1, 0),
            Err(TrapKind::MisalignedAtomic {
                addr: base + 2,
                len: 4
            })
        );
    }

    #[test]
    fn concurrent_adds_and_narrow_stores_lose_nothing() {
        extern crate std;
        let w = words(2);
        let m = SharedMemory::new(&w);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                s.spawn(move || {
                    for _ in 0..10_000 {
                        m.atomic64(0, 0, AtomicOp::Add { fetch: false }, 1, 0)
                            .unwrap();
                        // Each thread owns one byte of the second word.
                        let at = 8 + usize::from(t);
                        let [b] = m.load::<1>(at).unwrap();
                        m.store(at, [b.wrapping_add(1)]).unwrap();
                    }
                });
            }
        });
        assert_eq!(m.load::<8>(0), Some(40_000u64.to_le_bytes()));
        let expected = (10_000 % 256) as u8;
        assert_eq!(
            m.load::<4>(8),
            Some([expected; 4]),
            "no byte store was lost"
        );
    }
}
