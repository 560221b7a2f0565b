//! Reading a ring buffer map (`BPF_MAP_TYPE_RINGBUF`) from the host: [`RingReader`], the
//! consumer side of the kernel's protocol over `mmap`ed pages, as libbpf's `ring_buffer__poll`
//! does it.
//!
//! The kernel lays a ring buffer out in pages: the consumer position (page 0, the only page the
//! host may map writable), the producer position (page 1), then the data area of
//! `max_entries` bytes, which the kernel maps twice in a row so that a record that wraps
//! around is still contiguous. Each record starts with an 8-byte header — its length with two
//! flag bits (`BUSY`: reserved, not yet committed; `DISCARD`: committed as discarded) and a
//! page offset the host ignores — and takes `round_up(8 + len, 8)` bytes.

use crate::sys::{self, Mapping};
use crate::{Command, KernelError, Map};

/// `BPF_RINGBUF_BUSY_BIT`: the record is reserved and not yet submitted or discarded.
const BUSY: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`: the record was discarded.
const DISCARD: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
const HEADER: u64 = 8;
/// `BPF_MAP_TYPE_RINGBUF`.
const RINGBUF: u32 = 27;

/// The host's end of a ring buffer map: reads the records programs submitted.
#[derive(Debug)]
pub struct RingReader {
    /// The consumer page, writable.
    consumer: Mapping,
    /// The producer page and the data area, twice.
    producer: Mapping,
    page: usize,
    mask: u64,
}

impl RingReader {
    /// Maps `map`'s pages; the map must be a ring buffer.
    pub fn new(map: &Map) -> Result<RingReader, KernelError> {
        let command = Command::MapMmap;
        if map.map_type() != RINGBUF {
            return Err(KernelError::invalid(
                command,
                format!("map type {} is not a ring buffer (27)", map.map_type()),
            ));
        }
        let size = map.max_entries() as usize;
        if !size.is_power_of_two() {
            return Err(KernelError::invalid(
                command,
                format!("a ring of {size} bytes (the kernel makes only powers of two)"),
            ));
        }
        let page = sys::page_size();
        let data_len = size
            .checked_mul(2)
            .and_then(|d| d.checked_add(page))
            .ok_or_else(|| KernelError::invalid(command, "ring too large to map"))?;
        Ok(RingReader {
            consumer: Mapping::new(map.fd(), 0, page, true)?,
            producer: Mapping::new(map.fd(), page, data_len, false)?,
            page,
            mask: size as u64 - 1,
        })
    }

    /// Takes every committed record (submitted or output) in order, skipping discarded ones,
    /// and advances the consumer position past them; stops at the first record still
    /// reserved.
    pub fn drain(&self) -> Result<Vec<Vec<u8>>, KernelError> {
        let bad = |what: &str| KernelError::invalid(Command::MapMmap, what.to_string());
        let mut records = Vec::new();
        let mut consumer = self
            .consumer
            .load_u64(0)
            .ok_or_else(|| bad("no consumer"))?;
        let producer = self
            .producer
            .load_u64(0)
            .ok_or_else(|| bad("no producer"))?;
        while consumer < producer {
            // The record's header, in the data area (after the producer page).
            let at = self.page + (consumer & self.mask) as usize;
            let header = self
                .producer
                .load_u32(at)
                .ok_or_else(|| bad("a record header outside the ring"))?;
            if header & BUSY != 0 {
                break;
            }
            let len = u64::from(header & !(BUSY | DISCARD));
            if header & DISCARD == 0 {
                let record = self
                    .producer
                    .read(at + HEADER as usize, len as usize)
                    .ok_or_else(|| bad("a record longer than the ring"))?;
                records.push(record);
            }
            consumer += (len + HEADER).next_multiple_of(8);
            self.consumer
                .store_u64(0, consumer)
                .ok_or_else(|| bad("no consumer"))?;
        }
        Ok(records)
    }
}
