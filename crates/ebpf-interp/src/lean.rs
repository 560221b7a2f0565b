//! The memory of a session's run when the binding has no fixed regions: the stack, the input
//! and the metadata buffer, and nothing else — what `Vm::run` of a VM without data images or
//! read-only regions maps. The fast loop runs on it instead of a [`MemoryMap`], which a run
//! would otherwise build (a few hundred bytes written) and take apart again each time.
//!
//! Every access gives exactly what the same access gives on a [`MemoryMap`] holding the same
//! three buffers (`MemoryMap::insert_buffers`): the same bytes, the same `None`s for the fast
//! loop's traps, the same [`TrapKind`]s and stack mark for helpers. The tests hold the two to
//! each other access by access, and the session's runs to `Interpreter::run_in`.

use ebpf_abi::{MemoryMap, TrapKind, VmMemory, layout, semantics};
use ebpf_isa::AtomicOp;

use crate::RunMemory;

/// A run's own buffers, each writable; `None` is unmapped (unlike an empty buffer, which is
/// mapped: a helper's empty write to it succeeds).
pub(crate) struct Lean<'a> {
    stack: &'a mut [u8],
    input: Option<&'a mut [u8]>,
    metadata: Option<&'a mut [u8]>,
    /// As [`MemoryMap::lowest_stack_write`].
    lowest_stack_write: Option<u64>,
}

impl<'a> Lean<'a> {
    /// The memory `MemoryMap::insert_buffers(input, metadata, stack)` maps on an empty map.
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
            lowest_stack_write: None,
        }
    }

    /// The same buffers on a map, for the precise loop (a run whose budget runs short),
    /// taken out of this memory (which keeps only its stack mark: the map's starts afresh,
    /// and [`Lean::merge_mark`] adds it back).
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

    /// Lowers the stack mark to `mark` (the mark of the map [`Lean::take_map`] made).
    #[cold]
    pub(crate) fn merge_mark(&mut self, mark: Option<u64>) {
        self.lowest_stack_write = ebpf_abi::lower_stack_mark(self.lowest_stack_write, mark);
    }

    /// The stack mark (see [`MemoryMap::lowest_stack_write`]).
    #[inline(always)]
    pub(crate) fn lowest_stack_write(&self) -> Option<u64> {
        self.lowest_stack_write
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

    /// The writable `N` bytes at `addr` (`MemoryMap::bytes_mut`).
    #[inline(always)]
    fn bytes_mut<const N: usize>(&mut self, addr: u64) -> Option<&mut [u8; N]> {
        let bytes = self.region_mut(layout::region_of(addr))?;
        let off = layout::offset_of(addr) as usize;
        bytes.get_mut(off..off.checked_add(N)?)?.try_into().ok()
    }
}

impl RunMemory for Lean<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let bytes = self.region(layout::region_of(addr))?;
        let off = layout::offset_of(addr) as usize;
        bytes.get(off..off.checked_add(N)?)?.try_into().ok()
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        *self.bytes_mut::<N>(addr)? = value;
        Some(())
    }

    /// As `MemoryMap`'s (the rule is [`semantics::atomic_in_place`]'s).
    #[inline(always)]
    fn atomic64(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        semantics::atomic_in_place(self.bytes_mut::<8>(addr), addr, op, operand, r0)
    }

    /// As `atomic64`, on 32 bits.
    #[inline(always)]
    fn atomic32(
        &mut self,
        addr: u64,
        op: AtomicOp,
        operand: u64,
        r0: u64,
    ) -> Result<Option<u64>, TrapKind> {
        semantics::atomic_in_place(self.bytes_mut::<4>(addr), addr, op, operand, r0)
    }

    /// Nothing reads it: a session's run has no caller that asks (only `run_in`'s does, to
    /// add up a chain of tail calls, and that one runs on a map).
    #[inline(always)]
    fn set_instructions_at_helper_trap(&mut self, _: u64) {}
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
    use alloc::vec;
    use alloc::vec::Vec;
    use ebpf_isa::AtomicOp;

    /// Every access the fast loop and helpers make, at every boundary of every region id the
    /// session can map (and ids it cannot), gives on a `Lean` what it gives on the map of the
    /// same buffers; the stack mark after helpers' writes too. With each buffer present,
    /// absent or empty.
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
                let mut stack = vec![0u8; 1024];
                for (i, b) in stack.iter_mut().enumerate() {
                    *b = (i * 7) as u8;
                }
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
            let case = alloc::format!("input {input_len:?}, metadata {metadata_len:?}");
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
                let at = alloc::format!("{case}, addr {addr:#x}");
                assert_eq!(lean.load::<1>(addr), map.load::<1>(addr), "{at}");
                assert_eq!(lean.load::<2>(addr), map.load::<2>(addr), "{at}");
                assert_eq!(lean.load::<4>(addr), map.load::<4>(addr), "{at}");
                assert_eq!(lean.load::<8>(addr), map.load::<8>(addr), "{at}");
                assert_eq!(
                    lean.store::<2>(addr, [1, 2]),
                    map.store::<2>(addr, [1, 2]),
                    "{at}"
                );
                assert_eq!(
                    lean.store::<8>(addr, v.to_le_bytes()),
                    map.store::<8>(addr, v.to_le_bytes()),
                    "{at}"
                );
                let op = ops[step % ops.len()];
                assert_eq!(
                    RunMemory::atomic64(&mut lean, addr, op, v, 3),
                    map.atomic64(addr, op, v, 3),
                    "{at}"
                );
                assert_eq!(
                    RunMemory::atomic32(&mut lean, addr, op, v, 3),
                    map.atomic32(addr, op, v, 3),
                    "{at}"
                );
                for len in [0, 1, 8, 9] {
                    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                    assert_eq!(lean.read(addr, &mut a), map.read(addr, &mut b), "{at}");
                    assert_eq!(a, b, "{at}");
                    let data = vec![step as u8; len];
                    assert_eq!(lean.write(addr, &data), map.write(addr, &data), "{at}");
                    for write in [false, true] {
                        assert_eq!(
                            lean.check_range(addr, len as u64, write),
                            map.check_range(addr, len as u64, write),
                            "{at}"
                        );
                    }
                }
                assert_eq!(lean.lowest_stack_write(), map.lowest_stack_write(), "{at}");
            }
            let mark = lean.lowest_stack_write();
            let handed = lean.take_map();
            assert_eq!(handed.mapped_ids(), map.mapped_ids(), "{case}");
            for id in 0..=layout::MAX_REGION {
                assert_eq!(handed.extent(id), map.extent(id), "{case}, id {id}");
            }
            drop((handed, map));
            lean.merge_mark(None);
            assert_eq!(lean.lowest_stack_write(), mark, "{case}");
            // (The writes above reached the stack's first byte: the mark is 0.)
            assert_eq!(mark, Some(0), "{case}");
            lean.merge_mark(Some(5));
            assert_eq!(lean.lowest_stack_write(), Some(0), "{case}");
            assert_eq!(stack_a, stack_b, "{case}");
            assert_eq!(input_a, input_b, "{case}");
            assert_eq!(metadata_a, metadata_b, "{case}");
        }
    }
}
