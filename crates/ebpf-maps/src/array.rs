//! Arrays (`BPF_MAP_TYPE_ARRAY`, `BPF_MAP_TYPE_PERCPU_ARRAY`): `max_entries` values indexed by
//! a `u32` key, all present from the start (zeroed), updated in place as the kernel does
//! (each aligned 8-byte word atomically; a reader may see a half-written element, as in the
//! kernel), never deleted.

use ebpf_abi::SharedMemory;

use crate::words::Words;
use crate::{MapError, MapSpec, UpdateFlags, next_index, round_up_8, u32_key};

#[derive(Debug)]
pub(crate) struct Array {
    spec: MapSpec,
    stride: usize,
    /// Copies of every value: one slice per CPU for a per-CPU array, else one.
    copies: usize,
    values: Words,
}

impl Array {
    pub(crate) fn new(spec: MapSpec, cpus: usize) -> Result<Array, MapError> {
        if spec.key_size != 4 {
            return Err(MapError::BadSpec {
                reason: format!("an array's keys are 4 bytes, not {}", spec.key_size),
            });
        }
        let stride = round_up_8(spec.value_size);
        let copies = if spec.map_type.is_per_cpu() { cpus } else { 1 };
        Ok(Array {
            spec,
            stride,
            copies,
            values: Words::new(copies, stride * spec.max_entries as usize),
        })
    }

    /// The element index a key names, if it is in range.
    fn index(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        let index = u32_key(key)?;
        Ok((index < self.spec.max_entries).then_some(index as usize))
    }

    /// The region a run maps. A one-element array (an object's `.data`, `.bss`, `.rodata`)
    /// is exactly its value, not padded to 8 bytes: an access past it traps, where the
    /// kernel's verifier refuses it.
    #[inline]
    pub(crate) fn values(&self, cpu: usize) -> SharedMemory<'_> {
        let slice = if self.copies == 1 { 0 } else { cpu };
        if self.spec.max_entries == 1 {
            self.values
                .slice_prefix(slice, self.spec.value_size as usize)
        } else {
            self.values.slice(slice)
        }
    }

    pub(crate) fn lookup_offset(&self, key: &[u8]) -> Result<Option<usize>, MapError> {
        Ok(self.index(key)?.map(|i| i * self.stride))
    }

    /// The host's view: the value, or for a per-CPU array every CPU's value, each padded to
    /// a multiple of 8 bytes (the kernel's syscall layout).
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let Some(off) = self.lookup_offset(key)? else {
            return Ok(None);
        };
        Ok(Some(self.read_all(off)))
    }

    /// Bytes per copy in the host's view: the value, or padded to 8 for per-CPU maps.
    fn host_width(&self) -> usize {
        if !self.spec.map_type.is_per_cpu() {
            self.spec.value_size as usize
        } else {
            self.stride
        }
    }

    fn read_all(&self, off: usize) -> Vec<u8> {
        self.values.read_copies(off, self.copies, self.host_width())
    }

    fn check_flags(&self, flags: UpdateFlags) -> Result<(), MapError> {
        match flags {
            UpdateFlags::NoExist => Err(MapError::Exists),
            UpdateFlags::Any | UpdateFlags::Exist => Ok(()),
        }
    }

    /// The host's update: for a per-CPU array, `value` holds every CPU's value, each padded
    /// to a multiple of 8 bytes.
    pub(crate) fn update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let width = self.host_width();
        let expected = width * self.copies;
        if value.len() != expected {
            return Err(MapError::ValueSize {
                expected,
                got: value.len(),
            });
        }
        let index = self.index(key)?.ok_or(MapError::Full)?;
        self.check_flags(flags)?;
        let own = self.spec.value_size as usize;
        self.values
            .write_copies(index * self.stride, value, width, own);
        Ok(())
    }

    /// A program's update, on CPU `cpu`: only that CPU's copy changes.
    pub(crate) fn update_on(
        &self,
        cpu: usize,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        if value.len() != self.spec.value_size as usize {
            return Err(MapError::ValueSize {
                expected: self.spec.value_size as usize,
                got: value.len(),
            });
        }
        let index = self.index(key)?.ok_or(MapError::Full)?;
        self.check_flags(flags)?;
        let _ = self.values(cpu).write(index * self.stride, value);
        Ok(())
    }

    pub(crate) fn delete(&self) -> Result<(), MapError> {
        Err(MapError::Unsupported {
            op: "delete",
            map_type: self.spec.map_type,
        })
    }

    /// The key after `key` (the first key for `None` or a key out of range).
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        next_index(key, self.spec.max_entries)
    }

    /// Every element, in index order, as the host sees it.
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..self.spec.max_entries)
            .map(|i| {
                (
                    i.to_le_bytes().to_vec(),
                    self.read_all(i as usize * self.stride),
                )
            })
            .collect()
    }

    /// The element whose value lies first at or after offset `cursor`: its value's offset,
    /// its index in `key` (O(1), allocating nothing once `key` holds 4 bytes).
    pub(crate) fn element_at_or_after(&self, cursor: usize, key: &mut Vec<u8>) -> Option<usize> {
        let index = u32::try_from(cursor.div_ceil(self.stride.max(1))).ok()?;
        if index >= self.spec.max_entries {
            return None;
        }
        key.clear();
        key.extend_from_slice(&index.to_le_bytes());
        Some(index as usize * self.stride)
    }

    /// The element offsets in index order, with their keys (for `for_each_map_elem`).
    pub(crate) fn offsets(&self) -> Vec<(Vec<u8>, usize)> {
        (0..self.spec.max_entries)
            .map(|i| (i.to_le_bytes().to_vec(), i as usize * self.stride))
            .collect()
    }
}
