//! The memory a session's run of helper-calling code lends its helpers when the binding has no
//! fixed regions: the run's own three buffers (the stack, the input, the metadata buffer) and
//! nothing else — what that run's map would hold — without building the map, a few hundred
//! bytes written and taken apart again on every run.
//!
//! Every helper access gives exactly what the same access gives on a [`MemoryMap`] holding
//! the same three buffers (`MemoryMap::insert_buffers`): the same bytes, the same
//! [`TrapKind`]s, the same stack mark. The table's rows are derived from these buffers, and
//! re-derived whenever a helper reached one through `&mut` (a write), as from a map whose
//! generation moved.

use ebpf_abi::{RawRegion, TrapKind, VmMemory, layout};

use crate::context::Ctx;

/// A run's own buffers, each writable; `None` is unmapped (unlike an empty buffer, which is
/// mapped: a helper's empty write to it succeeds).
pub(crate) struct Lean<'a> {
    stack: &'a mut [u8],
    input: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
    /// Moved by every write, as a map's generation is by [`VmMemory::write`]: while it stays
    /// the same, the table's rows derived from these buffers are still the freshest pointers.
    pub(crate) generation: u64,
    /// As [`ebpf_abi::MemoryMap::lowest_stack_write`].
    pub(crate) lowest_stack_write: Option<u64>,
}

impl<'a> Lean<'a> {
    /// The memory `MemoryMap::insert_buffers(input, metadata, stack)` maps on an empty map
    /// (each buffer cut to its region's 4 GiB window, as `insert` cuts it).
    #[inline(always)]
    pub(crate) fn new(
        input: Option<&'a mut [u8]>,
        metadata: Option<&'a mut [u8]>,
        stack: &'a mut [u8],
    ) -> Lean<'a> {
        Lean {
            stack: layout::within_window(stack),
            input: input.map(layout::within_window),
            metadata: metadata.map(layout::within_window),
            generation: 0,
            lowest_stack_write: None,
        }
    }

    /// Writes the rows of the three buffers into `ctx`'s table, their pointers derived from
    /// this memory's borrows now (a row that already holds the same buffer costs a compare:
    /// see `Ctx::set_run_row`), and records the generation they are current for.
    #[inline(always)]
    pub(crate) fn write_rows(&mut self, ctx: &mut Ctx<'_>) {
        ctx.set_run_row(layout::STACK, RawRegion::writable(self.stack));
        match self.input.as_deref_mut() {
            Some(input) => ctx.set_buffer_row(layout::INPUT, input),
            None => ctx.unmap_run_row(layout::INPUT),
        }
        match self.metadata.as_deref_mut() {
            Some(metadata) => ctx.set_buffer_row(layout::METADATA, metadata),
            None => ctx.unmap_run_row(layout::METADATA),
        }
        ctx.generation = self.generation;
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
}

impl VmMemory for Lean<'_> {
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
        // (Whatever the outcome, as the map's: a failed write costs a refresh, no more.)
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
    use ebpf_abi::MemoryMap;

    /// Every helper access (reads, writes, range checks) at every boundary of every region id
    /// gives on a `Lean` what it gives on the map of the same buffers, and leaves the same
    /// bytes and the same stack mark; with each buffer present, absent or empty. And the rows
    /// it writes are the map's.
    #[test]
    fn lean_memory_is_the_map_of_its_buffers() {
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
            let mut lean = Lean::new(
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
            let mut ctx = Ctx::new();
            lean.write_rows(&mut ctx);
            for id in 0..ebpf_abi::REGION_TABLE_LEN {
                let (row, want) = (ctx.raw[id], map.raw_entry(id));
                assert_eq!(
                    (row.len, row.writable, row.host.is_null()),
                    (want.len, want.writable, want.host.is_null()),
                    "{case}, row {id}"
                );
            }
            let mut addrs = Vec::new();
            for id in 0..=layout::MAX_REGION + 1 {
                let len = map.extent(id).0;
                for off in [0, 1, 3, 7, 8, len.saturating_sub(9), len.saturating_sub(8)] {
                    addrs.push(layout::vm_addr(id, off));
                }
                for off in [len.saturating_sub(4), len.saturating_sub(1), len, len + 1] {
                    addrs.push(layout::vm_addr(id, off));
                }
                addrs.push(layout::vm_addr(id, 0xffff_fffe));
            }
            addrs.push(u64::MAX);
            for (step, &addr) in addrs.iter().enumerate() {
                let at = format!("{case}, addr {addr:#x}");
                for len in [0usize, 1, 2, 8, 9] {
                    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                    assert_eq!(lean.read(addr, &mut a), map.read(addr, &mut b), "{at}");
                    assert_eq!(a, b, "{at}");
                    let data: Vec<u8> = (0..len).map(|i| (step + i) as u8).collect();
                    assert_eq!(lean.write(addr, &data), map.write(addr, &data), "{at}");
                    for write in [false, true] {
                        assert_eq!(
                            lean.check_range(addr, len as u64 + 3, write),
                            map.check_range(addr, len as u64 + 3, write),
                            "{at}"
                        );
                    }
                }
                assert_eq!(
                    lean.lowest_stack_write,
                    map.lowest_stack_write(),
                    "{at}: the stack mark"
                );
            }
            assert!(lean.run_state().is_none() && map.run_state().is_none());
            assert_eq!(stack_a, stack_b, "{case}: the stack's bytes");
            assert_eq!(input_a, input_b, "{case}: the input's bytes");
            assert_eq!(metadata_a, metadata_b, "{case}: the metadata's bytes");
        }
    }
}
