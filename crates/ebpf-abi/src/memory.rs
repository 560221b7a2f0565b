//! The region table: which VM addresses a run may touch, and the host bytes behind them.
//!
//! [`MemoryMap`] maps region ids (see [`crate::layout`]) to borrowed byte slices, read-only or
//! writable. Engines check every access against it; helpers reach VM memory only through it
//! (it implements [`VmMemory`]).

use alloc::vec::Vec;

use ebpf_isa::AtomicOp;

use crate::layout;
use crate::{TrapKind, VmMemory};

/// One region's bytes.
#[derive(Debug)]
pub enum Region<'a> {
    /// Loads only; a store is `OutOfBounds { write: true }`.
    ReadOnly(&'a [u8]),
    /// Loads and stores.
    Writable(&'a mut [u8]),
}

impl Region<'_> {
    /// The region's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Region::ReadOnly(b) => b,
            Region::Writable(b) => b,
        }
    }

    /// Whether stores are allowed.
    pub fn is_writable(&self) -> bool {
        matches!(self, Region::Writable(_))
    }
}

/// The regions of one run, indexed by region id.
#[derive(Debug, Default)]
pub struct MemoryMap<'a> {
    regions: Vec<Option<Region<'a>>>,
}

impl<'a> MemoryMap<'a> {
    /// An empty map: every access traps.
    pub fn new() -> MemoryMap<'a> {
        MemoryMap {
            regions: Vec::new(),
        }
    }

    /// Maps `region` at region id `id` (replacing what was there). Ids above
    /// [`layout::MAX_REGION`] and region 0 are ignored: they can never be addressed.
    pub fn insert(&mut self, id: u64, region: Region<'a>) {
        if id == layout::NULL_REGION || id > layout::MAX_REGION {
            return;
        }
        let Ok(index) = usize::try_from(id) else {
            return;
        };
        if self.regions.len() <= index {
            self.regions.resize_with(index + 1, || None);
        }
        if let Some(slot) = self.regions.get_mut(index) {
            *slot = Some(region);
        }
    }

    /// The region mapped at `id`, if any.
    pub fn get(&self, id: u64) -> Option<&Region<'a>> {
        self.regions.get(usize::try_from(id).ok()?)?.as_ref()
    }

    /// Removes and returns the region at `id`.
    pub fn take(&mut self, id: u64) -> Option<Region<'a>> {
        self.regions.get_mut(usize::try_from(id).ok()?)?.take()
    }

    /// The `N` bytes at `addr`, if they lie inside one region.
    #[inline(always)]
    pub fn load<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let region = self
            .regions
            .get(layout::region_of(addr) as usize)?
            .as_ref()?;
        let off = layout::offset_of(addr) as usize;
        let bytes = region.bytes().get(off..off.checked_add(N)?)?;
        bytes.try_into().ok()
    }

    /// The writable `N` bytes at `addr`, if they lie inside one writable region.
    #[inline(always)]
    pub fn bytes_mut<const N: usize>(&mut self, addr: u64) -> Option<&mut [u8; N]> {
        let region = self
            .regions
            .get_mut(layout::region_of(addr) as usize)?
            .as_mut()?;
        let Region::Writable(bytes) = region else {
            return None;
        };
        let off = layout::offset_of(addr) as usize;
        bytes.get_mut(off..off.checked_add(N)?)?.try_into().ok()
    }

    /// Stores `value` at `addr`, if the bytes lie inside one writable region.
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, value: [u8; N]) -> Option<()> {
        *self.bytes_mut::<N>(addr)? = value;
        Some(())
    }

    fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let region = self
            .regions
            .get(usize::try_from(layout::region_of(addr)).ok()?)?
            .as_ref()?;
        let off = usize::try_from(layout::offset_of(addr)).ok()?;
        region.bytes().get(off..off.checked_add(len)?)
    }

    fn slice_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let region = self
            .regions
            .get_mut(usize::try_from(layout::region_of(addr)).ok()?)?
            .as_mut()?;
        let Region::Writable(bytes) = region else {
            return None;
        };
        let off = usize::try_from(layout::offset_of(addr)).ok()?;
        bytes.get_mut(off..off.checked_add(len)?)
    }
}

/// One entry of the region table as generated code reads it: host base, length, writability.
///
/// A JIT fills a `[RawRegion; REGION_TABLE_LEN]` from a [`MemoryMap`] with
/// [`MemoryMap::raw_table`] and checks each access against it: region id `addr >> 32` must be
/// below the table length, `(addr & 0xffff_ffff) + width <= len`, and `writable != 0` for
/// stores. An unmapped region has `len == 0`, so every access to it fails the check.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRegion {
    /// Host address of the region's first byte (null when unmapped).
    pub host: *mut u8,
    /// Length in bytes.
    pub len: u64,
    /// 1 if stores are allowed, else 0.
    pub writable: u64,
}

/// Number of entries of a raw region table: region ids `0..=layout::MAX_REGION`.
pub const REGION_TABLE_LEN: usize = layout::MAX_REGION as usize + 1;

impl RawRegion {
    /// An unmapped entry.
    pub const UNMAPPED: RawRegion = RawRegion {
        host: core::ptr::null_mut(),
        len: 0,
        writable: 0,
    };
}

impl MemoryMap<'_> {
    /// Writes the map as a raw table for generated code. The pointers are valid while this
    /// map is neither moved from nor changed; after a helper ran (it may have changed the
    /// map through `VmMemory`), refresh the table.
    ///
    /// Read-only regions get a `*mut` pointer with `writable == 0`; code must never store
    /// through it.
    pub fn raw_table(&mut self, table: &mut [RawRegion; REGION_TABLE_LEN]) {
        *table = [RawRegion::UNMAPPED; REGION_TABLE_LEN];
        for (entry, region) in table.iter_mut().zip(&mut self.regions) {
            *entry = match region {
                Some(Region::ReadOnly(b)) => RawRegion {
                    host: b.as_ptr().cast_mut(),
                    len: b.len() as u64,
                    writable: 0,
                },
                Some(Region::Writable(b)) => RawRegion {
                    host: b.as_mut_ptr(),
                    len: b.len() as u64,
                    writable: 1,
                },
                None => RawRegion::UNMAPPED,
            };
        }
    }
}

/// An atomic read-modify-write of `N` bytes read and written as one little-endian value, as
/// every engine must do it: bounds (as a write) first, then alignment. Returns the old value
/// where the operation fetches it (zero-extended for 32 bits).
macro_rules! atomic_fn {
    ($name:ident, $t:ty, $n:literal, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(
            &mut self,
            addr: u64,
            op: AtomicOp,
            operand: u64,
            r0: u64,
        ) -> Result<Option<u64>, TrapKind> {
            let bytes = self.bytes_mut::<$n>(addr).ok_or(TrapKind::OutOfBounds {
                addr,
                len: $n,
                write: true,
            })?;
            if addr % $n != 0 {
                return Err(TrapKind::MisalignedAtomic { addr, len: $n });
            }
            let old = <$t>::from_le_bytes(*bytes);
            let v = operand as $t;
            let (new, fetch) = match op {
                AtomicOp::Add { fetch } => (old.wrapping_add(v), fetch),
                AtomicOp::Or { fetch } => (old | v, fetch),
                AtomicOp::And { fetch } => (old & v, fetch),
                AtomicOp::Xor { fetch } => (old ^ v, fetch),
                AtomicOp::Xchg => (v, true),
                AtomicOp::Cmpxchg => (if old == r0 as $t { v } else { old }, true),
            };
            *bytes = new.to_le_bytes();
            Ok(fetch.then_some(old as u64))
        }
    };
}

impl MemoryMap<'_> {
    atomic_fn!(
        atomic64,
        u64,
        8,
        "A 64-bit atomic at `addr`: bounds (as a write) first, then alignment; the old value \
         where `op` fetches it (`cmpxchg` compares with `r0`)."
    );
    atomic_fn!(
        atomic32,
        u32,
        4,
        "A 32-bit atomic at `addr`, as [`MemoryMap::atomic64`]; operands are the low halves \
         and the fetched value is zero-extended."
    );
}

impl VmMemory for MemoryMap<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TrapKind> {
        let src = self.slice(addr, buf.len()).ok_or(TrapKind::OutOfBounds {
            addr,
            len: buf.len() as u64,
            write: false,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TrapKind> {
        let dst = self
            .slice_mut(addr, data.len())
            .ok_or(TrapKind::OutOfBounds {
                addr,
                len: data.len() as u64,
                write: true,
            })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_checked_per_region_and_width() {
        let rodata = [1u8, 2, 3, 4];
        let mut input = [0u8; 8];
        let mut map = MemoryMap::new();
        map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let ro = layout::vm_addr(layout::RODATA, 0);
        let inp = layout::vm_addr(layout::INPUT, 0);
        assert_eq!(map.load::<4>(ro), Some([1, 2, 3, 4]));
        assert_eq!(map.load::<4>(ro + 1), None, "straddles the end");
        assert_eq!(map.load::<1>(0), None, "null");
        assert_eq!(map.store(ro, [9u8]), None, "read-only");
        assert_eq!(map.store(inp + 7, [9u8]), Some(()));
        assert_eq!(map.store(inp + 7, [9u8, 9]), None);
        assert_eq!(map.read_u64(inp).unwrap(), 9 << 56);
        let err = map.write(inp + 4, &[0; 8]).unwrap_err();
        assert_eq!(
            err,
            TrapKind::OutOfBounds {
                addr: inp + 4,
                len: 8,
                write: true
            }
        );
        map.insert(0, Region::ReadOnly(&rodata));
        assert_eq!(map.load::<1>(0), None, "region 0 is never mapped");
    }
}
