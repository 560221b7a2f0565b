//! Program arrays (`BPF_MAP_TYPE_PROG_ARRAY`): slots holding program ids, the targets of
//! `bpf_tail_call`. The host fills them (programs cannot); what an id means is up to the
//! embedder that runs tail calls (the facade numbers the programs it loaded).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{MapError, MapSpec, UpdateFlags, next_index, u32_key};

/// An empty slot.
const EMPTY: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct ProgArray {
    slots: Box<[AtomicU32]>,
}

impl ProgArray {
    pub(crate) fn new(spec: MapSpec) -> Result<ProgArray, MapError> {
        if spec.key_size != 4 || spec.value_size != 4 {
            return Err(MapError::BadSpec {
                reason: "a prog array has 4-byte keys and values".into(),
            });
        }
        Ok(ProgArray {
            slots: (0..spec.max_entries)
                .map(|_| AtomicU32::new(EMPTY))
                .collect(),
        })
    }

    fn slot(&self, key: &[u8]) -> Result<&AtomicU32, MapError> {
        self.slots.get(u32_key(key)? as usize).ok_or(MapError::Full)
    }

    /// The program id in slot `index`, if any (what `bpf_tail_call` jumps to).
    pub(crate) fn get(&self, index: u32) -> Option<u32> {
        let id = self.slots.get(index as usize)?.load(Ordering::Acquire);
        (id != EMPTY).then_some(id)
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let id = self.slot(key)?.load(Ordering::Acquire);
        Ok((id != EMPTY).then(|| id.to_le_bytes().to_vec()))
    }

    pub(crate) fn update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), MapError> {
        let value: [u8; 4] = value.try_into().map_err(|_| MapError::ValueSize {
            expected: 4,
            got: value.len(),
        })?;
        let id = u32::from_le_bytes(value);
        if id == EMPTY {
            return Err(MapError::BadSpec {
                reason: format!("program id {id:#x} is reserved for an empty slot"),
            });
        }
        let slot = self.slot(key)?;
        if flags == UpdateFlags::NoExist {
            return Err(MapError::Exists);
        }
        slot.store(id, Ordering::Release);
        Ok(())
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        let old = self.slot(key)?.swap(EMPTY, Ordering::AcqRel);
        if old == EMPTY {
            Err(MapError::NotFound)
        } else {
            Ok(())
        }
    }

    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..self.slots.len() as u32)
            .filter_map(|i| {
                Some((
                    i.to_le_bytes().to_vec(),
                    self.get(i)?.to_le_bytes().to_vec(),
                ))
            })
            .collect()
    }

    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        next_index(key, self.slots.len() as u32)
    }
}
