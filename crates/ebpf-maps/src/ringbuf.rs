//! Ring buffers (`BPF_MAP_TYPE_RINGBUF`): variable-length records that programs reserve,
//! fill in place and submit (or discard), and the host reads in order.
//!
//! The data area is the map's region (a program writes its reserved record through an
//! ordinary VM pointer). Records use the kernel's layout: an 8-byte header (`u32 len` with
//! a busy bit (31) while reserved and a discard bit (30), `u32` offset), then the data, the
//! whole rounded up to 8 bytes. The kernel maps its data area twice so that a record may wrap
//! around the end; a region cannot, so a record that would wrap is placed at the start and
//! the space before the end is filled with a discarded padding record (which the reader
//! skips). The host reads with [`crate::Map::ring_records`]; it stops at the first record
//! still reserved, as the kernel's consumer does.

use std::sync::Mutex;

use ebpf_abi::SharedMemory;

use crate::words::Words;
use crate::{MapError, MapSpec};

/// Set in a header's `len` while the record is reserved.
const BUSY: u32 = 1 << 31;
/// Set in a header's `len` when the record was discarded.
const DISCARD: u32 = 1 << 30;
/// Header bytes before each record's data.
const HEADER: usize = 8;

#[derive(Debug)]
struct Positions {
    /// Bytes ever reserved (the next record's header is at `producer % size`).
    producer: u64,
    /// Bytes ever consumed by the host.
    consumer: u64,
}

#[derive(Debug)]
pub(crate) struct RingBuf {
    size: usize,
    data: Words,
    positions: Mutex<Positions>,
}

impl RingBuf {
    pub(crate) fn new(spec: MapSpec) -> Result<RingBuf, MapError> {
        let size = spec.max_entries as usize;
        if spec.key_size != 0 || spec.value_size != 0 {
            return Err(MapError::BadSpec {
                reason: "a ring buffer has no keys or values (sizes 0)".into(),
            });
        }
        if !size.is_power_of_two() || size < 4096 {
            return Err(MapError::BadSpec {
                reason: format!(
                    "a ring buffer's size ({size}) must be a power of two of at least 4096 bytes"
                ),
            });
        }
        Ok(RingBuf {
            size,
            data: Words::new(1, size),
            positions: Mutex::new(Positions {
                producer: 0,
                consumer: 0,
            }),
        })
    }

    pub(crate) fn values(&self) -> SharedMemory<'_> {
        self.data.slice(0)
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn header(&self, at: usize, len: u32) {
        let memory = self.values();
        let _ = memory.write(at, &len.to_le_bytes());
        let _ = memory.write(at + 4, &((at / 8) as u32).to_le_bytes());
    }

    /// Reserves `size` bytes: the offset of the record's data in [`RingBuf::values`], or
    /// `None` when there is no room (`bpf_ringbuf_reserve` returns NULL).
    pub(crate) fn reserve(&self, size: u64) -> Option<usize> {
        let total = usize::try_from(size).ok()?.checked_add(HEADER)?.div_ceil(8) * 8;
        if total > self.size || size >= u64::from(DISCARD) {
            return None;
        }
        let mut p = self.positions();
        let ring = self.size as u64;
        let at = (p.producer % ring) as usize;
        let pad = if at + total > self.size {
            self.size - at
        } else {
            0
        };
        let used = p.producer - p.consumer;
        // The kernel refuses a reserve that would bring the producer `size` bytes ahead of
        // the consumer (`new_prod_pos - cons_pos > mask`): a ring never fills completely, at
        // most `size - 8` bytes of records are outstanding. (Found by kernel-diff's corpus
        // set: with the 4 KiB ring full to the last record, the kernel lost one we kept.)
        if used + (pad + total) as u64 >= ring {
            return None;
        }
        if pad > 0 {
            self.header(at, (pad - HEADER) as u32 | DISCARD);
            p.producer += pad as u64;
        }
        let at = (p.producer % ring) as usize;
        self.header(at, size as u32 | BUSY);
        p.producer += total as u64;
        Some(at + HEADER)
    }

    /// Submits (or discards) the record whose data starts at `offset`; `false` if no
    /// reserved record starts there.
    pub(crate) fn commit(&self, offset: usize, discard: bool) -> bool {
        let Some(at) = offset.checked_sub(HEADER) else {
            return false;
        };
        let memory = self.values();
        let Some(len) = memory.load::<4>(at).map(u32::from_le_bytes) else {
            return false;
        };
        if at % 8 != 0 || len & BUSY == 0 {
            return false;
        }
        let len = (len & !BUSY) | if discard { DISCARD } else { 0 };
        memory.write(at, &len.to_le_bytes()).is_some()
    }

    /// Copies `data` into a new record and submits it; `false` when there is no room.
    pub(crate) fn output(&self, data: &[u8]) -> bool {
        let Some(at) = self.reserve(data.len() as u64) else {
            return false;
        };
        let _ = self.values().write(at, data);
        self.commit(at, false)
    }

    /// Takes every submitted record, in order, up to the first one still reserved.
    pub(crate) fn drain(&self) -> Vec<Vec<u8>> {
        let mut p = self.positions();
        let ring = self.size as u64;
        let memory = self.values();
        let mut out = Vec::new();
        while p.consumer < p.producer {
            let at = (p.consumer % ring) as usize;
            let Some(len) = memory.load::<4>(at).map(u32::from_le_bytes) else {
                break;
            };
            if len & BUSY != 0 {
                break;
            }
            let data_len = (len & !(BUSY | DISCARD)) as usize;
            // A program may have scribbled over a header; never read past the ring.
            let data_len = data_len.min(self.size - at - HEADER);
            if len & DISCARD == 0 {
                let mut record = vec![0u8; data_len];
                let _ = memory.read(at + HEADER, &mut record);
                out.push(record);
            }
            // Never past the producer, whatever a scribbled header says.
            let step = ((data_len + HEADER).div_ceil(8) * 8) as u64;
            p.consumer = p.consumer.saturating_add(step).min(p.producer);
        }
        out
    }

    /// Bytes reserved and not yet consumed (`BPF_RB_AVAIL_DATA`).
    pub(crate) fn pending(&self) -> u64 {
        let p = self.positions();
        p.producer - p.consumer
    }

    /// The ring's size in bytes (`BPF_RB_RING_SIZE`).
    pub(crate) fn size(&self) -> u64 {
        self.size as u64
    }
}
