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

    /// The host's view of the values at `off` of the first `copies` slices: `width` bytes of
    /// each, side by side (the kernel's per-CPU layout when `width` is the padded size).
    pub(crate) fn read_copies(&self, off: usize, copies: usize, width: usize) -> Vec<u8> {
        let mut out = vec![0u8; width * copies];
        for (i, chunk) in out.chunks_mut(width.max(1)).enumerate() {
            let _ = self.slice(i).read(off, chunk);
        }
        out
    }

    /// Writes the host's view back: `value` holds `width` bytes per slice, of which the first
    /// `own` (the value size) are stored.
    pub(crate) fn write_copies(&self, off: usize, value: &[u8], width: usize, own: usize) {
        for (i, chunk) in value.chunks(width.max(1)).enumerate() {
            let _ = self.slice(i).write(off, chunk.get(..own).unwrap_or(chunk));
        }
    }

    /// Slice `i` as shared memory (empty when `i` is out of range).
    #[inline]
    pub(crate) fn slice(&self, i: usize) -> SharedMemory<'_> {
        SharedMemory::new(self.slice_words(i))
    }

    /// The first `len` bytes of slice `i` (empty when `i` is out of range or `len` longer
    /// than a slice).
    #[inline]
    pub(crate) fn slice_prefix(&self, i: usize, len: usize) -> SharedMemory<'_> {
        SharedMemory::with_len(self.slice_words(i), len).unwrap_or_else(|| SharedMemory::new(&[]))
    }

    #[inline]
    fn slice_words(&self, i: usize) -> &[AtomicU64] {
        let per = self.slice_len / 8;
        i.checked_mul(per)
            .and_then(|start| self.words.get(start..start.checked_add(per)?))
            .unwrap_or(&[])
    }
}
