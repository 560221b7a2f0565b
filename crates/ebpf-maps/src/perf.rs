//! Perf event arrays (`BPF_MAP_TYPE_PERF_EVENT_ARRAY`): `bpf_perf_event_output` appends a
//! record to the buffer of one CPU, and the host reads each CPU's records in order. A buffer
//! holds at most [`PerfEventArray::CAPACITY`] records; further ones are counted as lost, as
//! the kernel counts records that do not fit its ring.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{MapError, MapSpec};

#[derive(Debug)]
pub(crate) struct PerfEventArray {
    buffers: Box<[Mutex<VecDeque<Vec<u8>>>]>,
    lost: AtomicU64,
}

impl PerfEventArray {
    /// Records one CPU's buffer holds before it drops new ones.
    pub(crate) const CAPACITY: usize = 4096;
    /// The most buffers (CPUs) an array may have.
    pub(crate) const MAX_BUFFERS: u32 = 4096;

    pub(crate) fn new(spec: MapSpec, cpus: usize) -> Result<PerfEventArray, MapError> {
        if spec.key_size != 4 || spec.value_size != 4 {
            return Err(MapError::BadSpec {
                reason: "a perf event array has 4-byte keys and values".into(),
            });
        }
        if spec.max_entries > Self::MAX_BUFFERS {
            return Err(MapError::BadSpec {
                reason: format!(
                    "a perf event array has one buffer per CPU: {} is more than {}",
                    spec.max_entries,
                    Self::MAX_BUFFERS
                ),
            });
        }
        // The kernel sizes it by the possible CPUs when max_entries is 0.
        let n = if spec.max_entries == 0 {
            cpus
        } else {
            spec.max_entries as usize
        };
        Ok(PerfEventArray {
            buffers: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            lost: AtomicU64::new(0),
        })
    }

    /// Appends `data` to buffer `index`; `Err(Full)` (`E2BIG`, as the kernel's
    /// `__bpf_perf_event_output` says for an index at or past `max_entries`) when there is no
    /// such buffer.
    pub(crate) fn output(&self, index: usize, data: &[u8]) -> Result<(), MapError> {
        let buffer = self.buffers.get(index).ok_or(MapError::Full)?;
        let mut records = buffer.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= Self::CAPACITY {
            self.lost.fetch_add(1, Ordering::Relaxed);
        } else {
            records.push_back(data.to_vec());
        }
        Ok(())
    }

    /// Takes buffer `index`'s records, oldest first.
    pub(crate) fn drain(&self, index: usize) -> Vec<Vec<u8>> {
        self.buffers.get(index).map_or_else(Vec::new, |b| {
            b.lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .collect()
        })
    }

    /// How many buffers there are.
    pub(crate) fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Records dropped because their buffer was full.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}
