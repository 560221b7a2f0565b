//! [`Words`]: an owned, zeroed buffer of atomic words — the storage behind every map region.

use std::sync::atomic::AtomicU64;

use ebpf_abi::SharedMemory;

/// Zeroed bytes in `AtomicU64` words, cut into equal slices (one per CPU for per-CPU maps).
#[derive(Debug)]
pub(crate) struct Words {
    words: Box<[AtomicU64]>,
    /// Bytes per slice (a multiple of 8).
    slice_len: usize,
}

impl Words {
    /// `slices` zeroed slices of `slice_len` bytes (a multiple of 8).
    pub(crate) fn new(slices: usize, slice_len: usize) -> Words {
        let count = slices.saturating_mul(slice_len) / 8;
        Words {
            words: (0..count).map(|_| AtomicU64::new(0)).collect(),
            slice_len,
        }
    }

    /// Slice `i` as shared memory (empty when `i` is out of range).
    pub(crate) fn slice(&self, i: usize) -> SharedMemory<'_> {
        let per = self.slice_len / 8;
        let words = i
            .checked_mul(per)
            .and_then(|start| self.words.get(start..start.checked_add(per)?))
            .unwrap_or(&[]);
        SharedMemory::new(words)
    }
}
