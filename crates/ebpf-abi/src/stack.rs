//! [`Stack`]: the memory behind a run's stack region and its saved call frames, which a caller
//! lends to [`crate::Executable::run_in`] and reuses for its next run, so that a run neither
//! allocates nor zeroes kilobytes it will not touch.
//!
//! The invariant that makes reuse private: **between runs, every byte of the buffer is zero.**
//! A new buffer is zeroed memory; growing it replaces it with a larger zeroed one; and whoever
//! lends a buffer to a run scrubs, once the run has returned, every byte the run can have written
//! ([`Stack::scrub`]; how many bytes that is comes from the program, see
//! `docs/per-run.md`). A run that panics out never returns its buffer to the lender, so a
//! buffer that might hold a run's data is never lent again. So a run finds a stack that is all
//! zeroes, exactly as if it had been freshly allocated: it can never read another run's data.

use alloc::vec::Vec;

use crate::{RawRegion, STACK_FRAME_SIZE};

/// Bytes below the stack region that the buffer keeps (and never lends): the x86 JIT's
/// unchecked frame accesses stay inside `[r10 - 512, r10)`, and this slack is a second guard.
const SLACK: usize = STACK_FRAME_SIZE as usize;

/// The alignment of the region's first byte (and so of every frame).
const ALIGN: usize = 16;

/// A saved caller frame of a local call, for engines that keep them in Rust (the interpreter)
/// or in a plain word array (the Cranelift JIT: 6 words per frame).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallFrame {
    /// Where the caller resumes.
    pub return_pc: u64,
    /// The caller's `r6`–`r9`.
    pub saved: [u64; 4],
    /// The caller's `r10`.
    pub frame_pointer: u64,
}

/// The stack of a run (see the module documentation): a zeroed byte buffer with slack below
/// it, and room for saved call frames. Reuse one for every run on a thread: after the first
/// run, lending it allocates nothing.
#[derive(Debug)]
pub struct Stack {
    bytes: Vec<u8>,
    /// Saved call frames: engines may use them as they like; their contents are never
    /// addressable by a program (a frame is written by the call that pushes it before the
    /// return that pops it reads it).
    pub frames: Vec<CallFrame>,
    /// Set by [`Stack::begin_run`], cleared by [`Stack::end_run`]: a run that never came back
    /// (a helper's panic, caught by the embedder around the run) leaves it set, and the
    /// buffer may hold that run's data.
    dirty: bool,
    /// The region size the last [`Stack::parts`] served (`usize::MAX` when none yet), and
    /// where that region starts and ends in the buffer: a run of the same size finds its
    /// region without recomputing the alignment or the end.
    served: (usize, usize, usize),
    /// The served region's length as a [`RawRegion`] holds it (clamped to a region's most).
    served_raw_len: u64,
}

impl Default for Stack {
    fn default() -> Stack {
        Stack::new()
    }
}

impl Stack {
    /// An empty stack (it allocates on first use).
    pub const fn new() -> Stack {
        Stack {
            bytes: Vec::new(),
            frames: Vec::new(),
            dirty: false,
            served: (usize::MAX, 0, 0),
            served_raw_len: 0,
        }
    }

    /// Call before lending the stack to a run that [`Stack::end_run`] follows: a stack whose
    /// last run never ended (it panicked out, and the panic was caught) is zeroed whole first,
    /// so the invariant holds even for a lender that outlives a panic.
    #[inline]
    pub fn begin_run(&mut self) {
        if self.dirty {
            self.bytes.fill(0);
        }
        self.dirty = true;
    }

    /// Call when the run that [`Stack::begin_run`] announced has returned: scrubs the top
    /// `reach` bytes of the region of `size` bytes ([`Stack::scrub`]) and marks the stack
    /// clean.
    #[inline]
    pub fn end_run(&mut self, size: usize, reach: usize) {
        self.scrub(size, reach);
        self.dirty = false;
    }

    /// Whether a run began on the stack and did not end ([`Stack::begin_run`]).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Where the region of `size` bytes starts and ends in the buffer, replacing the buffer
    /// with a larger zeroed one if it is too small (for a size other than the last one
    /// served: [`Stack::parts`] finds that one in `served`).
    #[inline(never)]
    fn serve(&mut self, size: usize) -> (usize, usize) {
        let needed = size.saturating_add(SLACK + ALIGN);
        if self.bytes.len() < needed {
            // A fresh zeroed buffer rather than `resize`: the old bytes are all zero (the
            // invariant), and a zeroed allocation of this size comes from the allocator
            // already zero (`calloc`, fresh pages for large sizes) where `resize` writes every
            // byte. A run touches only the top frames of a deep stack, so its other pages are
            // never faulted in: a `run` with `max_call_depth` at `MAX_CALL_DEPTH` (32 MiB)
            // no longer zeroes 32 MiB first, which was half the differential fuzz target's time.
            self.bytes = alloc::vec![0; needed];
        }
        let misalignment = self
            .bytes
            .get(SLACK..)
            .map_or(0, |s| s.as_ptr().align_offset(ALIGN));
        let start = SLACK
            + if misalignment < ALIGN {
                misalignment
            } else {
                0
            };
        let end = start.saturating_add(size);
        // (The buffer is replaced only here, so the range holds until the size changes.)
        self.served = (size, start, end);
        self.served_raw_len = (size as u64).min(crate::layout::MAX_REGION_LEN);
        (start, end)
    }

    /// The stack region of a run, `size` bytes (`Limits::stack_size`), 16-byte aligned, with
    /// at least 512 bytes of the buffer below it. All zero unless a run wrote it and it was
    /// not [scrubbed](Stack::scrub) since.
    #[inline]
    pub fn region(&mut self, size: usize) -> &mut [u8] {
        self.parts(size).0
    }

    /// [`Stack::region`] and the saved frames at once, for an engine that maps the region and
    /// keeps using the frames while the map holds it.
    #[inline]
    pub fn parts(&mut self, size: usize) -> (&mut [u8], &mut Vec<CallFrame>) {
        let (start, end) = match self.served {
            (served, start, end) if served == size => (start, end),
            _ => self.serve(size),
        };
        let region = match self.bytes.get_mut(start..end) {
            Some(region) => region,
            None => &mut [],
        };
        (region, &mut self.frames)
    }

    /// [`RawRegion::writable`] of [`Stack::region`]`(size)`, for an engine that keeps the
    /// region's row in a raw table (the x86 JIT's fast path): the address is derived from
    /// this `&mut` borrow of the buffer, as the region's would be. The region served last
    /// costs no slice: `served` holds its bounds, which `serve` worked out for the buffer
    /// `bytes` holds now (it is replaced only there), and the test that its end is inside the
    /// buffer is what `bytes.get_mut(start..end)` would test, minus the fallback.
    #[inline]
    pub fn raw_region(&mut self, size: usize) -> RawRegion {
        match self.served {
            // (`end` is `start + size` unless that saturated, and then it is past the buffer.)
            (served, start, end) if served == size && end <= self.bytes.len() => RawRegion {
                host: self.bytes.as_mut_ptr().wrapping_add(start),
                len: self.served_raw_len,
                writable: 1,
            },
            _ => RawRegion::writable(self.region(size)),
        }
    }

    /// Zeroes the top `reach` bytes of the region of `size` bytes (all of it when `reach` is
    /// larger): what a run on that region can have written.
    #[inline]
    pub fn scrub(&mut self, size: usize, reach: usize) {
        if reach == 0 {
            return;
        }
        let region = self.region(size);
        let from = region.len().saturating_sub(reach);
        if let Some(dirty) = region.get_mut(from..) {
            dirty.fill(0);
        }
    }

    /// Makes room for `n` saved frames (growing, never shrinking) and returns them.
    #[inline]
    pub fn frames(&mut self, n: usize) -> &mut [CallFrame] {
        if self.frames.len() < n {
            self.frames.resize(n, CallFrame::default());
        }
        match self.frames.get_mut(..n) {
            Some(frames) => frames,
            None => &mut [],
        }
    }

    /// Bytes the buffer holds (the largest region it served, plus slack).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Whether every byte of the buffer is zero (for tests of the invariant).
    pub fn is_clean(&self) -> bool {
        self.bytes.iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_aligned_zeroed_and_scrubbed_from_the_top() {
        let mut stack = Stack::new();
        let region = stack.region(1536);
        assert_eq!(region.len(), 1536);
        assert_eq!(region.as_ptr() as usize % ALIGN, 0);
        assert!(region.iter().all(|&b| b == 0));
        region.fill(0xaa);
        stack.scrub(1536, 100);
        let region = stack.region(1536);
        assert!(region[1436..].iter().all(|&b| b == 0));
        assert!(region[..1436].iter().all(|&b| b == 0xaa));
        stack.scrub(1536, usize::MAX);
        assert!(stack.is_clean());
        // A larger region grows the buffer with zeroes.
        assert!(stack.region(8192).iter().all(|&b| b == 0));
    }

    #[test]
    fn a_raw_region_describes_the_region_across_sizes_and_growth() {
        let mut stack = Stack::new();
        // Each size twice (the second finds it served), a smaller one after a larger, and
        // growth past the buffer (which replaces it: the served bounds must follow).
        for size in [
            512,
            512,
            1536,
            1536,
            64,
            8192,
            8192,
            512,
            1 << 16,
            1536,
            0,
            0,
        ] {
            for _ in 0..2 {
                let raw = stack.raw_region(size);
                let region = stack.region(size);
                assert_eq!(
                    raw,
                    RawRegion::writable(region),
                    "size {size}: the raw row and the region differ"
                );
                assert_eq!(raw.host as usize % ALIGN, 0);
            }
        }
    }

    #[test]
    fn a_run_that_never_ended_is_zeroed_whole_before_the_next() {
        let mut stack = Stack::new();
        stack.begin_run();
        stack.region(1536).fill(0xaa);
        stack.end_run(1536, 100);
        assert!(
            !stack.is_dirty() && !stack.is_clean(),
            "only the reach is scrubbed"
        );
        stack.scrub(1536, usize::MAX);
        stack.begin_run();
        stack.region(1536).fill(0xbb);
        // The run panicked out: no `end_run`. The next run finds every byte zero.
        assert!(stack.is_dirty());
        stack.begin_run();
        assert!(stack.is_clean());
        stack.end_run(1536, 0);
        assert!(!stack.is_dirty());
    }
}
