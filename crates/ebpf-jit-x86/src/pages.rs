//! Executable memory for generated code, W^X, at one system call per compiled program.
//!
//! Mapping a fresh region per program costs `mmap`, `mprotect`, `munmap` and a page fault on
//! first write — about four times the emission of a small program. Instead, programs up to
//! [`POOL_LIMIT`] bytes take whole pages from a shared *chunk* of [`CHUNK_PAGES`] pages, mapped
//! read+write once:
//!
//! - allocation bumps a cursor through the current chunk; the pages handed out are read+write
//!   and used by nobody else;
//! - the caller writes its code and calls [`Pages::seal`], which turns exactly those pages
//!   read+execute (the one system call per program);
//! - each handle keeps its chunk alive (`Arc`); a chunk is unmapped when its last program is
//!   dropped and the pool has moved on to another chunk;
//! - when the current chunk is full and no program in it is alive any more, its used pages are
//!   turned back read+write in one call and the chunk is reused, already faulted in.
//!
//! So a page is read+write while free or being written, read+execute from sealing until the
//! chunk is recycled, and never both: the guarantee of the old one-mapping-per-program scheme.
//! The cost is memory: a live program keeps its whole chunk mapped (at most
//! `CHUNK_PAGES` pages, 64 KiB). Larger programs get a mapping of their own.

use alloc::format;
use alloc::sync::Arc;
use std::sync::{Mutex, OnceLock};

use crate::JitError;

/// Pages per pooled chunk.
const CHUNK_PAGES: usize = 16;

/// Code larger than this gets a mapping of its own instead of pages from the pool.
const POOL_LIMIT: usize = 8 * 4096;

/// One anonymous mapping, unmapped when dropped.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the raw pointer is only an address.
// Writes happen through `Pages` while its pages are exclusively owned (see `Pool::take`).
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A fresh read+write anonymous mapping of `len` bytes (a multiple of the page size).
    fn new(len: usize) -> Result<Mapping, JitError> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // existing memory is affected.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(JitError::Memory(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    /// Sets the protection of `len` bytes at page offset `offset` (both page multiples).
    fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> Result<(), JitError> {
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside this mapping (callers pass ranges they own), so only
        // this mapping's pages change protection.
        let rc = unsafe { libc::mprotect(self.base.wrapping_add(offset).cast(), len, prot) };
        if rc != 0 {
            return Err(JitError::Memory(format!(
                "mprotect: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping made by `Mapping::new` that nothing else
        // refers to any more (every `Pages` in it holds this `Arc`, and they are all gone).
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// The process-wide pool: the chunk being handed out and its cursor (in bytes).
struct Pool {
    chunk: Option<Arc<Mapping>>,
    used: usize,
}

fn page_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: Mutex<Pool> = Mutex::new(Pool {
        chunk: None,
        used: 0,
    });
    &POOL
}

/// Pages for one program's code: read+write until [`Pages::seal`], read+execute after.
pub(crate) struct Pages {
    mapping: Arc<Mapping>,
    offset: usize,
    /// Bytes reserved (whole pages).
    reserved: usize,
    /// Bytes of code.
    len: usize,
}

impl Pages {
    /// Read+write pages for `len` bytes of code, owned by the caller alone.
    pub(crate) fn new(len: usize) -> Result<Pages, JitError> {
        let page = page_size();
        let reserved = len.max(1).div_ceil(page).saturating_mul(page);
        if reserved > POOL_LIMIT.max(page) {
            return Ok(Pages {
                mapping: Arc::new(Mapping::new(reserved)?),
                offset: 0,
                reserved,
                len,
            });
        }
        let chunk_len = CHUNK_PAGES * page;
        // A poisoned lock only means another thread panicked while holding it; the pool's
        // state is always consistent between statements, so carry on.
        let mut pool = pool().lock().unwrap_or_else(|e| e.into_inner());
        let fits = pool.chunk.is_some() && pool.used + reserved <= chunk_len;
        if !fits {
            match pool.chunk.take() {
                // Every program in the full chunk is gone (handles are cloned only under
                // this lock, so the count cannot grow back): make its used pages writable
                // again and start over (its pages are already faulted in).
                Some(chunk) if Arc::strong_count(&chunk) == 1 => {
                    // `strong_count` is a relaxed load; the fence pairs it with the release
                    // decrement of each handle's drop (as `Arc`'s own drop does), so everything
                    // their threads did with these pages happens before we rewrite them.
                    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                    chunk.protect(0, pool.used, libc::PROT_READ | libc::PROT_WRITE)?;
                    pool.chunk = Some(chunk);
                }
                // Programs still live there keep it mapped; unmapped when the last one goes.
                _ => pool.chunk = Some(Arc::new(Mapping::new(chunk_len)?)),
            }
            pool.used = 0;
        }
        let Some(chunk) = pool.chunk.clone() else {
            return Err(JitError::Memory("no code chunk".into()));
        };
        let offset = pool.used;
        pool.used += reserved;
        Ok(Pages {
            mapping: chunk,
            offset,
            reserved,
            len,
        })
    }

    /// The code bytes, for writing before [`Pages::seal`].
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `offset..offset + len` lies in pages reserved for this value alone (the
        // pool hands each range out once until the chunk is recycled, which needs every
        // handle on it gone), and they are read+write until `seal` consumes `self`.
        unsafe {
            core::slice::from_raw_parts_mut(self.mapping.base.wrapping_add(self.offset), self.len)
        }
    }

    /// Turns the pages read+execute.
    pub(crate) fn seal(self) -> Result<Code, JitError> {
        self.mapping.protect(
            self.offset,
            self.reserved,
            libc::PROT_READ | libc::PROT_EXEC,
        )?;
        Ok(Code { pages: self })
    }
}

/// Sealed, read+execute code; its pages are returned to the pool when dropped.
pub(crate) struct Code {
    pages: Pages,
}

impl Code {
    /// The code bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the pages are mapped read+execute (readable) for as long as this value
        // holds its chunk, and nothing writes them until the chunk is recycled, which needs
        // this handle gone.
        unsafe {
            core::slice::from_raw_parts(
                self.pages.mapping.base.wrapping_add(self.pages.offset),
                self.pages.len,
            )
        }
    }

    /// The address of the first byte of code.
    pub(crate) fn entry(&self) -> *const u8 {
        self.pages.mapping.base.wrapping_add(self.pages.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_pages_are_disjoint_and_sealed_code_keeps_its_bytes() {
        let codes: Vec<Code> = (0..3 * CHUNK_PAGES)
            .map(|i| {
                let mut p = Pages::new(100 + i).unwrap();
                p.bytes_mut().fill(i as u8);
                p.seal().unwrap()
            })
            .collect();
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(c.bytes().len(), 100 + i);
            assert!(c.bytes().iter().all(|&b| b == i as u8), "program {i}");
        }
        let mut starts: Vec<usize> = codes.iter().map(|c| c.entry() as usize).collect();
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(starts.len(), codes.len());
    }

    #[test]
    fn large_code_gets_its_own_mapping() {
        let mut p = Pages::new(POOL_LIMIT + 1).unwrap();
        p.bytes_mut().fill(0xcc);
        let c = p.seal().unwrap();
        assert_eq!(c.bytes().len(), POOL_LIMIT + 1);
        assert!(c.bytes().iter().all(|&b| b == 0xcc));
    }
}
