//! The memory helpers see in a session's run of helper-calling code when the binding has no
//! fixed regions: the stack, the input and the metadata buffer, and nothing else — what
//! `Vm::run` of a VM without data images or read-only regions maps. Such a run writes the
//! three rows of its region table from these buffers and hands the helpers this, instead of
//! building a [`MemoryMap`] (a few hundred bytes written and read back) on every run.
//!
//! Every helper access gives exactly what the same access gives on a [`MemoryMap`] holding
//! the same three buffers (`MemoryMap::insert_buffers`): the same bytes, the same
//! [`TrapKind`]s, the same stack mark; and the generation moves on every `&mut` access to
//! the bytes, as the map's does, which is when the region table's pointers are derived
//! afresh. The tests hold the two to each other access by access.

use ebpf_abi::{MemoryMap, REGION_TABLE_LEN, RawRegion, TrapKind, VmMemory, layout};

/// A run's own buffers, each writable; `None` is unmapped (unlike an empty buffer, which is
/// mapped: a helper's empty write to it succeeds).
pub(crate) struct Buffers<'a> {
    stack: &'a mut [u8],
    input: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
    /// Moved by every write (as `MemoryMap::generation`): the table's pointers to these
    /// buffers are derived afresh when it moved during a helper call.
    generation: u64,
    /// As [`MemoryMap::lowest_stack_write`].
    lowest_stack_write: Option<u64>,
}

impl<'a> Buffers<'a> {
    /// The memory `MemoryMap::insert_buffers(input, metadata, stack)` maps on an empty map.
    #[inline(always)]
    pub(crate) fn new(
        input: Option<&'a mut [u8]>,
        metadata: Option<&'a mut [u8]>,
        stack: &'a mut [u8],
    ) -> Buffers<'a> {
        Buffers {
            stack: layout::within_window(stack),
            input: input.map(layout::within_window),
            metadata: metadata.map(layout::within_window),
            generation: 0,
            lowest_stack_write: None,
        }
    }

    /// The same buffers on a map, for the interpreter that finishes a suspended run, taken out
    /// of this memory (which keeps only its stack mark: the map's starts afresh).
    #[cold]
    pub(crate) fn take_map(&mut self) -> MemoryMap<'a> {
        let mut map = MemoryMap::new();
        map.insert_buffers(
            self.input.take(),
            self.metadata.take(),
            core::mem::take(&mut self.stack),
        );
        map
    }

    /// The stack mark (see [`MemoryMap::lowest_stack_write`]).
    #[inline(always)]
    pub(crate) fn lowest_stack_write(&self) -> Option<u64> {
        self.lowest_stack_write
    }

    /// The generation (see [`MemoryMap::generation`]).
    #[inline(always)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The raw rows of the three buffers (`None` for an unmapped one), their pointers derived
    /// now, through `&mut`, and exposed: the rows the region table holds for them.
    #[inline(always)]
    pub(crate) fn rows(&mut self) -> [(u64, Option<RawRegion>); 3] {
        [
            (layout::STACK, Some(raw(self.stack))),
            (layout::INPUT, self.input.as_deref_mut().map(raw)),
            (layout::METADATA, self.metadata.as_deref_mut().map(raw)),
        ]
    }

    /// Writes the mapped buffers' rows into `table` with pointers derived afresh (the unmapped
    /// ones are unmapped there already: the run's rows were set from these buffers).
    #[cold]
    pub(crate) fn refresh_rows(&mut self, table: &mut [RawRegion; REGION_TABLE_LEN]) {
        for (id, row) in self.rows() {
            if let (Some(row), Some(entry)) = (row, table.get_mut(id as usize)) {
                *entry = row;
            }
        }
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

/// The row of a writable buffer (already cut to its window), its address exposed so that
/// generated code may use it.
#[inline(always)]
fn raw(bytes: &mut [u8]) -> RawRegion {
    let host = bytes.as_mut_ptr();
    let _ = host.expose_provenance();
    RawRegion {
        host,
        len: bytes.len() as u64,
        writable: 1,
    }
}

impl VmMemory for Buffers<'_> {
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

    /// Every helper access, at every boundary of every region id the session can map (and ids
    /// it cannot), gives on `Buffers` what it gives on the map of the same buffers; the stack
    /// mark after the writes, the rows, and the generation moving on every write too. With
    /// each buffer present, absent or empty.
    #[test]
    fn buffers_are_the_map_of_their_buffers() {
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
            let (mut input_a, mut meta_a) = (fill(input_len, 1), fill(metadata_len, 50));
            let (mut input_b, mut meta_b) = (input_a.clone(), meta_a.clone());
            let mut stack_a: Vec<u8> = (0..512).map(|i| i as u8).collect();
            let mut stack_b = stack_a.clone();
            let mut buffers =
                Buffers::new(input_a.as_deref_mut(), meta_a.as_deref_mut(), &mut stack_a);
            let mut map = MemoryMap::new();
            map.insert_buffers(input_b.as_deref_mut(), meta_b.as_deref_mut(), &mut stack_b);
            let case = format!("input {input_len:?}, metadata {metadata_len:?}");
            // The rows describe what the map's rows describe.
            let mut table = [RawRegion::UNMAPPED; REGION_TABLE_LEN];
            map.raw_table(&mut table);
            for (id, row) in buffers.rows() {
                let theirs = table[id as usize];
                match row {
                    Some(row) => {
                        assert_eq!((row.len, row.writable), (theirs.len, theirs.writable));
                    }
                    None => assert!(theirs.host.is_null(), "{case}: row {id}"),
                }
            }
            for id in [0, layout::STACK, layout::INPUT, layout::METADATA, 4, 63] {
                for off in [0u64, 1, 3, 4, 5, 23, 24, 63, 64, 511, 512, 0xffff_ffff] {
                    let addr = layout::vm_addr(id, off);
                    for len in [0usize, 1, 2, 8] {
                        let mut a = vec![0xaa; len];
                        let mut b = vec![0xaa; len];
                        assert_eq!(
                            buffers.read(addr, &mut a),
                            map.read(addr, &mut b),
                            "{case}: read {addr:#x} {len}"
                        );
                        assert_eq!(a, b, "{case}: read {addr:#x} {len}");
                        let data: Vec<u8> = (0..len as u8).map(|i| i ^ off as u8).collect();
                        let generation = buffers.generation();
                        assert_eq!(
                            buffers.write(addr, &data),
                            map.write(addr, &data),
                            "{case}: write {addr:#x} {len}"
                        );
                        assert_ne!(buffers.generation(), generation, "{case}");
                        assert_eq!(
                            buffers.check_range(addr, len as u64, true),
                            map.check_range(addr, len as u64, true),
                            "{case}"
                        );
                    }
                }
            }
            assert_eq!(
                buffers.lowest_stack_write(),
                map.lowest_stack_write(),
                "{case}"
            );
            assert_eq!(buffers.run_state().is_none(), map.run_state().is_none());
            let mut taken = buffers.take_map();
            for id in [layout::STACK, layout::INPUT, layout::METADATA] {
                assert_eq!(taken.extent(id), map.extent(id), "{case}: region {id}");
                let mut a = vec![0; taken.extent(id).0 as usize];
                let mut b = vec![0; map.extent(id).0 as usize];
                let addr = layout::vm_addr(id, 0);
                assert_eq!(taken.read(addr, &mut a), map.read(addr, &mut b), "{case}");
                assert_eq!(a, b, "{case}: region {id}");
            }
            assert_eq!(taken.lowest_stack_write(), None);
            assert!(
                taken
                    .write_u64(layout::vm_addr(layout::STACK, 8), 1)
                    .is_ok()
            );
        }
    }
}
