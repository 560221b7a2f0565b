//! The memory helpers see in a session's run of helper-calling code: the stack, the input and
//! the metadata buffer, and the binding's fixed regions — what `Vm::run` maps. Such a run
//! writes the three rows of its region table from these buffers (the fixed regions' rows are
//! the session's, written once) and hands the helpers this, instead of building a
//! [`MemoryMap`] (a few hundred bytes written and read back) on every run. The fixed regions
//! are mapped for the helpers only when one of them reaches past the buffers (most helpers
//! touch only these), into a map kept for the rest of the run.
//!
//! Every helper access gives exactly what the same access gives on the run's map
//! (`ebpf_abi::map_run`: the fixed regions, then the buffers): the same bytes, the same
//! [`TrapKind`]s, the same stack mark; and the generation moves on every write, as the map's
//! does, which is when the region table's pointers to the buffers are derived afresh. The
//! tests hold the two to each other access by access.

use core::cell::{Cell, OnceCell};

use ebpf_abi::{
    Binding, MapSpill, MemoryMap, REGION_TABLE_LEN, RawRegion, TrapKind, VmMemory, layout,
};

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
    /// The binding's fixed regions (`None`: it has none; then nothing else is written per
    /// run, nor dropped).
    fixed: Option<Fixed<'a>>,
}

/// The fixed regions of a run's binding, for its helpers.
struct Fixed<'a> {
    binding: &'a dyn Binding,
    /// Its fixed regions, mapped when a helper first reaches past the buffers.
    map: OnceCell<MemoryMap<'a>>,
    /// The session's kept allocation for region ids above the inline ones, which that map
    /// takes (and gives back, [`Buffers::into_spill`]).
    spill: Cell<MapSpill>,
}

impl<'a> Buffers<'a> {
    /// The memory `map_run(map, binding, input, metadata)` then
    /// `map.insert(layout::STACK, stack)` map on an empty map; `fixed`, when the binding has
    /// fixed regions: the binding and the allocation such a map would use for ids above the
    /// inline ones.
    #[inline(always)]
    pub(crate) fn new(
        input: Option<&'a mut [u8]>,
        metadata: Option<&'a mut [u8]>,
        stack: &'a mut [u8],
        fixed: Option<(&'a dyn Binding, MapSpill)>,
    ) -> Buffers<'a> {
        Buffers {
            stack: layout::within_window(stack),
            input: input.map(layout::within_window),
            metadata: metadata.map(layout::within_window),
            generation: 0,
            lowest_stack_write: None,
            fixed: fixed.map(|(binding, spill)| Fixed {
                binding,
                map: OnceCell::new(),
                spill: Cell::new(spill),
            }),
        }
    }

    /// The same memory as a map, for the interpreter that finishes a suspended run, taken out
    /// of this one (which keeps only its stack mark: the map's starts afresh).
    #[cold]
    pub(crate) fn take_map(&mut self) -> MemoryMap<'a> {
        let mut map = MemoryMap::with_spill(self.take_spill());
        if let Some(fixed) = &self.fixed {
            fixed.binding.map_fixed(&mut map);
        }
        map.insert_buffers(
            self.input.take(),
            self.metadata.take(),
            core::mem::take(&mut self.stack),
        );
        map
    }

    /// The spill (see `spill`), given back: the fixed regions' map's, when it was made.
    #[inline(always)]
    pub(crate) fn into_spill(mut self) -> MapSpill {
        self.take_spill()
    }

    /// Gives back the spill a map of [`Buffers::take_map`] used.
    pub(crate) fn put_spill(&mut self, spill: MapSpill) {
        if let Some(fixed) = &self.fixed {
            fixed.spill.set(spill);
        }
    }

    #[inline(always)]
    fn take_spill(&mut self) -> MapSpill {
        let Some(fixed) = &mut self.fixed else {
            return MapSpill::default();
        };
        // (Tested first: taking the map out of its cell moved the whole cell, a few hundred
        // bytes, on every run.)
        if fixed.map.get().is_none() {
            return fixed.spill.take();
        }
        fixed.take_map_spill()
    }

    /// The fixed regions' map, made on first use.
    #[cold]
    fn fixed_map(&self) -> Option<&MemoryMap<'a>> {
        let fixed = self.fixed.as_ref()?;
        Some(fixed.map.get_or_init(|| {
            let mut map = MemoryMap::with_spill(fixed.spill.take());
            fixed.binding.map_fixed(&mut map);
            map
        }))
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

    /// The buffer mapped at `id`, if any (else the fixed regions hold it, or nothing).
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

    /// A read past the buffers: the fixed regions', or out of bounds.
    #[cold]
    fn read_fixed(&self, addr: u64, buf: &mut [u8]) -> Result<(), TrapKind> {
        match self.fixed_map() {
            Some(map) => map.read(addr, buf),
            None => Err(TrapKind::OutOfBounds {
                addr,
                len: buf.len() as u64,
                write: false,
            }),
        }
    }

    /// A write past the buffers: the fixed regions' (which refuse it but for a shared
    /// region's bytes, never reached through `&mut`), or out of bounds.
    #[cold]
    fn write_fixed(&mut self, addr: u64, data: &[u8]) -> Result<(), TrapKind> {
        let _ = self.fixed_map();
        match self.fixed.as_mut().and_then(|fixed| fixed.map.get_mut()) {
            Some(map) => map.write(addr, data),
            None => Err(TrapKind::OutOfBounds {
                addr,
                len: data.len() as u64,
                write: true,
            }),
        }
    }
}

impl Fixed<'_> {
    /// [`Buffers::take_spill`] when the fixed regions were mapped: the map's.
    #[cold]
    fn take_map_spill(&mut self) -> MapSpill {
        match self.map.take() {
            Some(map) => map.into_spill(),
            None => self.spill.take(),
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
        let Some(bytes) = self.region(layout::region_of(addr)) else {
            return self.read_fixed(addr, buf);
        };
        let done = off
            .checked_add(buf.len())
            .and_then(|end| bytes.get(off..end))
            .map(|src| buf.copy_from_slice(src));
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
        if self.region(id).is_none() {
            return self.write_fixed(addr, data);
        }
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
        let rodata = Rodata(vec![7; 40], vec![9; 16]);
        for ((input_len, metadata_len), fixed) in cases
            .into_iter()
            .flat_map(|case| [(case, false), (case, true)])
        {
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
            let binding = fixed.then_some(&rodata as &dyn Binding);
            let mut buffers = Buffers::new(
                input_a.as_deref_mut(),
                meta_a.as_deref_mut(),
                &mut stack_a,
                binding.map(|binding| (binding, MapSpill::default())),
            );
            let mut map = MemoryMap::new();
            if let Some(binding) = binding {
                binding.map_fixed(&mut map);
            }
            map.insert_buffers(input_b.as_deref_mut(), meta_b.as_deref_mut(), &mut stack_b);
            let case = format!("input {input_len:?}, metadata {metadata_len:?}, fixed {fixed}");
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
            for id in [
                0,
                1,
                layout::STACK,
                3,
                layout::INPUT,
                layout::METADATA,
                9,
                63,
            ] {
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
            for id in [layout::RODATA, 9] {
                assert_eq!(taken.extent(id), map.extent(id), "{case}: region {id}");
            }
            assert_eq!(taken.lowest_stack_write(), None);
            assert!(
                taken
                    .write_u64(layout::vm_addr(layout::STACK, 8), 1)
                    .is_ok()
            );
        }
    }

    /// A binding with two read-only fixed regions: at `layout::RODATA`, and at id 9 (past the
    /// inline ids, in the map's spill).
    struct Rodata(Vec<u8>, Vec<u8>);

    impl Binding for Rodata {
        fn helpers(&self) -> &ebpf_abi::Helpers {
            unreachable!("not called by these tests")
        }

        fn limits(&self) -> &ebpf_abi::Limits {
            unreachable!("not called by these tests")
        }

        fn map_fixed<'a>(&'a self, map: &mut MemoryMap<'a>) {
            map.insert(layout::RODATA, ebpf_abi::Region::ReadOnly(&self.0));
            map.insert(9, ebpf_abi::Region::ReadOnly(&self.1));
        }
    }
}
