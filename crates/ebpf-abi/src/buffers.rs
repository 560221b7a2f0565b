//! A run's own buffers (the stack, the input, the metadata buffer) as a memory of their own:
//! what a [`crate::Session`] whose binding has no fixed regions lends a run — the regions
//! `MemoryMap::insert_buffers` would map on an empty map — without building that map (a few
//! hundred bytes written and taken apart again on every run).
//!
//! Every access gives exactly what the same access gives on a [`MemoryMap`] holding the same
//! three buffers: the same bytes, the same `None`s and [`TrapKind`]s, the same stack mark and
//! the same raw rows. The test below holds the two to each other access by access.

use ebpf_isa::AtomicOp;

use crate::{MemoryMap, RawRegion, TrapKind, VmMemory, layout, lower_stack_mark, semantics};

/// A run's own buffers, each writable, as the memory of that run: the stack at
/// [`layout::STACK`], the input at [`layout::INPUT`] and the metadata buffer at
/// [`layout::METADATA`], each cut to its region's 4 GiB window. An absent input or metadata
/// buffer is unmapped (unlike an empty one, which is mapped: a helper's empty write to it
/// succeeds).
#[derive(Debug)]
pub struct RunBuffers<'a> {
    stack: &'a mut [u8],
    input: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
    /// As [`MemoryMap::generation`]: moved by every [`VmMemory::write`], whatever its outcome.
    generation: u64,
    /// As [`MemoryMap::lowest_stack_write`].
    lowest_stack_write: Option<u64>,
}

impl<'a> RunBuffers<'a> {
    /// The memory `MemoryMap::insert_buffers(input, metadata, stack)` maps on an empty map.
    #[inline(always)]
    pub fn new(
        input: Option<&'a mut [u8]>,
        metadata: Option<&'a mut [u8]>,
        stack: &'a mut [u8],
    ) -> RunBuffers<'a> {
        RunBuffers {
            stack: layout::within_window(stack),
            input: input.map(layout::within_window),
            metadata: metadata.map(layout::within_window),
            generation: 0,
            lowest_stack_write: None,
        }
    }

    /// The same buffers on a map (for a run that goes on where only a map will do), taken out
    /// of this memory, which keeps only its stack mark and generation: the map's mark starts
    /// afresh, and [`RunBuffers::merge_mark`] adds it back.
    #[cold]
    pub fn take_map(&mut self) -> MemoryMap<'a> {
        let mut map = MemoryMap::new();
        map.insert_buffers(
            self.input.take(),
            self.metadata.take(),
            core::mem::take(&mut self.stack),
        );
        map
    }

    /// Lowers the stack mark to `mark` (the mark of the map [`RunBuffers::take_map`] made).
    #[cold]
    pub fn merge_mark(&mut self, mark: Option<u64>) {
        self.lowest_stack_write = lower_stack_mark(self.lowest_stack_write, mark);
    }

    /// The stack mark (see [`MemoryMap::lowest_stack_write`]).
    #[inline(always)]
    pub fn lowest_stack_write(&self) -> Option<u64> {
        self.lowest_stack_write
    }

    /// A number that moves whenever a buffer's bytes were reached through `&mut` by
    /// [`VmMemory::write`] (see [`MemoryMap::generation`]): while it stays the same, rows
    /// derived from these buffers are still the freshest pointers. Starts at 0.
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The three buffers themselves — the stack, the input and the metadata buffer, as
    /// mapped — for a JIT that writes their rows into its own table (deriving each pointer
    /// now, through `&mut`).
    #[inline(always)]
    pub fn buffers_mut(&mut self) -> (&mut [u8], Option<&mut [u8]>, Option<&mut [u8]>) {
        (
            self.stack,
            self.input.as_deref_mut(),
            self.metadata.as_deref_mut(),
        )
    }

    /// The raw rows of the three buffers' ids ([`layout::STACK`], [`layout::INPUT`],
    /// [`layout::METADATA`], in this order), each [`RawRegion::UNMAPPED`] when the buffer is
    /// absent, passed to `f`: [`MemoryMap::raw_entry`] of the map of the same buffers, each
    /// pointer derived afresh.
    #[inline(always)]
    pub fn raw_rows(&mut self, mut f: impl FnMut(usize, RawRegion)) {
        let (stack, input, metadata) = self.buffers_mut();
        let row = |bytes: Option<&mut [u8]>| bytes.map_or(RawRegion::UNMAPPED, RawRegion::writable);
        f(layout::STACK as usize, RawRegion::writable(stack));
        f(layout::INPUT as usize, row(input));
        f(layout::METADATA as usize, row(metadata));
    }

    #[inline(always)]
    fn region(&self, id: u64) -> Option<&[u8]> {
        match id {
            layout::STACK => Some(self.stack),
            layout::INPUT => self.input.as_deref(),
            layout::METADATA => self.metadata.as_deref(),
            _ => None,
        }
    }

    #[inline(always)]
    fn region_mut(&mut self, id: u64) -> Option<&mut [u8]> {
        match id {
            layout::STACK => Some(self.stack),
            layout::INPUT => self.input.as_deref_mut(),
            layout::METADATA => self.metadata.as_deref_mut(),
            _ => None,
        }
    }

    /// The `N` bytes at `addr`, as [`MemoryMap::load`].
    #[inline(always)]
    pub fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let bytes = self.region(layout::region_of(addr))?;
        let off = layout::offset_of(addr) as usize;
        bytes.get(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// The writable `N` bytes at `addr`, as [`MemoryMap::bytes_mut`] (this memory's
    /// generation does not move: only [`VmMemory::write`] moves it, which is what a JIT's
    /// rows must follow; the interpreter, the one caller of this, keeps none).
    #[inline(always)]
    pub fn bytes_mut<const N: usize>(&mut self, addr: u64) -> Option<&mut [u8; N]> {
        let bytes = self.region_mut(layout::region_of(addr))?;
        let off = layout::offset_of(addr) as usize;
        bytes.get_mut(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// Stores `value` at `addr`, as [`MemoryMap::store`].
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        *self.bytes_mut::<N>(addr)? = value;
        Some(())
    }

    /// A 64-bit atomic at `addr`, as [`MemoryMap::atomic64`] (the rule is
    /// [`semantics::atomic_in_place`]'s).
    #[inline(always)]
    pub fn atomic64(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        semantics::atomic_in_place(self.bytes_mut::<8>(addr), addr, op, operand, r0)
    }

    /// A 32-bit atomic at `addr`, as [`MemoryMap::atomic32`].
    #[inline(always)]
    pub fn atomic32(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        semantics::atomic_in_place(self.bytes_mut::<4>(addr), addr, op, operand, r0)
    }
}

impl VmMemory for RunBuffers<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TrapKind> {
        let off = layout::offset_of(addr) as usize;
        let done = self.region(layout::region_of(addr)).and_then(|bytes| {
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
        // (Whatever the outcome, as the map's: a failed write costs a JIT a refresh, no more.)
        self.generation = self.generation.wrapping_add(1);
        let id = layout::region_of(addr);
        let off = layout::offset_of(addr) as usize;
        let done = self.region_mut(id).and_then(|bytes| {
            let end = off.checked_add(data.len())?;
            bytes.get_mut(off..end).map(|dst| dst.copy_from_slice(data))
        });
        if id == layout::STACK && done.is_some() && !data.is_empty() {
            let off = off as u64;
            self.lowest_stack_write = Some(self.lowest_stack_write.map_or(off, |low| low.min(off)));
        }
        done.ok_or(TrapKind::OutOfBounds {
            addr,
            len: data.len() as u64,
            write: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Every access a run makes (loads, stores and atomics of the interpreter's fast loop;
    /// helpers' reads, writes and range checks), at every boundary of every region id a run
    /// can address (and ids it cannot), gives on `RunBuffers` what it gives on the map of the
    /// same buffers, and leaves the same bytes and the same stack mark; with each buffer
    /// present, absent or empty. Its raw rows are the map's; its generation moves on every
    /// write; the map it hands over is the map of its buffers.
    #[test]
    fn run_buffers_are_the_map_of_their_buffers() {
        let cases: [(Option<usize>, Option<usize>); 6] = [
            (Some(64), None),
            (Some(0), None),
            (None, None),
            (Some(5), Some(24)),
            (None, Some(0)),
            (Some(1), Some(3)),
        ];
        for (input_len, metadata_len) in cases {
            let fill = |len: Option<usize>, seed: u8| {
                len.map(|len| {
                    (0..len)
                        .map(|i| seed.wrapping_add(i as u8))
                        .collect::<Vec<_>>()
                })
            };
            let buffers = || {
                let stack: Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
                (stack, fill(input_len, 11), fill(metadata_len, 101))
            };
            let (mut stack_a, mut input_a, mut metadata_a) = buffers();
            let (mut stack_b, mut input_b, mut metadata_b) = buffers();
            let mut run = RunBuffers::new(
                input_a.as_deref_mut(),
                metadata_a.as_deref_mut(),
                &mut stack_a,
            );
            let mut map = MemoryMap::new();
            map.insert_buffers(
                input_b.as_deref_mut(),
                metadata_b.as_deref_mut(),
                &mut stack_b,
            );
            let case = format!("input {input_len:?}, metadata {metadata_len:?}");
            let mut rows = [None; crate::REGION_TABLE_LEN];
            run.raw_rows(|id, row| rows[id] = Some(row));
            for (id, row) in rows.iter().enumerate() {
                let want = map.raw_entry(id);
                let got = row.unwrap_or(RawRegion::UNMAPPED);
                assert_eq!(
                    (got.len, got.writable, got.host.is_null()),
                    (want.len, want.writable, want.host.is_null()),
                    "{case}, row {id}"
                );
                // (Each mapped row points at its buffer's first byte.)
                let (stack, input, metadata) = run.buffers_mut();
                let buffer = match id as u64 {
                    layout::STACK => Some(stack),
                    layout::INPUT => input,
                    layout::METADATA => metadata,
                    _ => None,
                };
                let host = buffer.map_or(core::ptr::null_mut(), |b| b.as_mut_ptr());
                assert_eq!(got.host, host, "{case}, row {id}");
            }
            let mut addrs = Vec::new();
            for id in 0..=layout::MAX_REGION + 1 {
                let len = map.extent(id).0;
                for off in [
                    0,
                    1,
                    3,
                    4,
                    7,
                    8,
                    len.saturating_sub(9),
                    len.saturating_sub(8),
                ] {
                    addrs.push(layout::vm_addr(id, off));
                }
                for off in [len.saturating_sub(4), len.saturating_sub(1), len, len + 1] {
                    addrs.push(layout::vm_addr(id, off));
                }
                addrs.push(layout::vm_addr(id, 0xffff_fffe));
            }
            addrs.push(u64::MAX);
            let ops = [
                AtomicOp::Add { fetch: true },
                AtomicOp::Xchg,
                AtomicOp::Cmpxchg,
            ];
            for (step, &addr) in addrs.iter().enumerate() {
                let v = (step as u64).wrapping_mul(0x0101_0101_0101_0101);
                let at = format!("{case}, addr {addr:#x}");
                assert_eq!(run.load::<1>(addr), map.load::<1>(addr), "{at}");
                assert_eq!(run.load::<2>(addr), map.load::<2>(addr), "{at}");
                assert_eq!(run.load::<4>(addr), map.load::<4>(addr), "{at}");
                assert_eq!(run.load::<8>(addr), map.load::<8>(addr), "{at}");
                assert_eq!(
                    run.store::<2>(addr, [1, 2]),
                    map.store::<2>(addr, [1, 2]),
                    "{at}"
                );
                assert_eq!(
                    run.store::<8>(addr, v.to_le_bytes()),
                    map.store::<8>(addr, v.to_le_bytes()),
                    "{at}"
                );
                let op = ops[step % ops.len()];
                assert_eq!(
                    run.atomic64(addr, op, v, 3),
                    map.atomic64(addr, op, v, 3),
                    "{at}"
                );
                assert_eq!(
                    run.atomic32(addr, op, v, 3),
                    map.atomic32(addr, op, v, 3),
                    "{at}"
                );
                for len in [0usize, 1, 2, 8, 9] {
                    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                    assert_eq!(run.read(addr, &mut a), map.read(addr, &mut b), "{at}");
                    assert_eq!(a, b, "{at}");
                    let generation = run.generation();
                    let data: Vec<u8> = (0..len).map(|i| (step + i) as u8).collect();
                    assert_eq!(run.write(addr, &data), map.write(addr, &data), "{at}");
                    assert_ne!(run.generation(), generation, "{at}: a write moves it");
                    for write in [false, true] {
                        for extra in [0, 3] {
                            let len = len as u64 + extra;
                            assert_eq!(
                                run.check_range(addr, len, write),
                                map.check_range(addr, len, write),
                                "{at}"
                            );
                        }
                    }
                }
                assert_eq!(
                    run.lowest_stack_write(),
                    map.lowest_stack_write(),
                    "{at}: the stack mark"
                );
            }
            assert!(run.run_state().is_none() && map.run_state().is_none());
            let mark = run.lowest_stack_write();
            let generation = run.generation();
            let handed = run.take_map();
            assert_eq!(handed.mapped_ids(), map.mapped_ids(), "{case}");
            for id in 0..=layout::MAX_REGION + 1 {
                assert_eq!(handed.extent(id), map.extent(id), "{case}, id {id}");
            }
            assert_eq!(handed.lowest_stack_write(), None, "{case}: a fresh mark");
            drop((handed, map));
            assert_eq!(run.generation(), generation, "{case}");
            run.merge_mark(None);
            assert_eq!(run.lowest_stack_write(), mark, "{case}");
            // (The writes above reached the stack's first byte: the mark is 0.)
            assert_eq!(mark, Some(0), "{case}");
            run.merge_mark(Some(5));
            assert_eq!(run.lowest_stack_write(), Some(0), "{case}");
            let mut fresh = RunBuffers::new(None, None, &mut []);
            fresh.merge_mark(Some(5));
            assert_eq!(
                fresh.lowest_stack_write(),
                Some(5),
                "a mark merged into none"
            );
            assert_eq!(stack_a, stack_b, "{case}: the stack's bytes");
            assert_eq!(input_a, input_b, "{case}: the input's bytes");
            assert_eq!(metadata_a, metadata_b, "{case}: the metadata's bytes");
        }
    }
}
