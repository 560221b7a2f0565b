//! Code memory for in-process programs from a per-process pool, W^X, without a mapping of its
//! own per program (x86-64 Linux; other hosts use `cranelift-jit`'s own provider).
//!
//! `cranelift-jit`'s default provider maps every function's code separately and unmaps it when
//! the module is freed: `mmap`, a page fault on first write, `mprotect` and `munmap` per
//! function, about 12 µs of a compile that is ~80 µs for a 2-instruction program. Instead, as
//! in `ebpf-jit-x86`'s `pages.rs`, small code takes whole pages from a shared *chunk* of
//! [`CHUNK_PAGES`] pages, mapped read+write once:
//!
//! - a module's provider ([`PooledCode`]) takes a *span* of pages from the current chunk when
//!   a function no longer fits in the span it is filling (a span sized for that function),
//!   and packs functions into it; the pages are read+write and used by no other module;
//! - `finalize` fills what the module's spans hold besides its code with `int3` and turns the
//!   spans read+execute, one `mprotect` per span: one for a program of one function, about
//!   one per unit for a program split into units (the next unit fits only in the slack of the
//!   previous one's last page);
//! - each span keeps its chunk alive (`Arc`); a chunk is unmapped when its last span is freed
//!   and the pool has moved on to another chunk;
//! - when the current chunk is full and no module's span in it is alive any more, its used
//!   pages are turned back read+write in one call and the chunk is reused, already faulted in.
//!
//! So a page is read+write while free or being written and read+execute from finalisation
//! until its chunk is recycled, never both. The pool itself keeps one chunk ([`CHUNK_PAGES`]
//! pages, 64 KiB with 4 KiB pages), the bound on what it holds beyond live programs; a live
//! program keeps mapped the chunks its spans are in, at most one per span (the spans of a
//! program of several units can be in several chunks, mapped at different times, anywhere in
//! the address space: which is why the dispatcher calls its units through their absolute
//! addresses, `lib.rs::UnitCalls`). Spans larger than [`POOL_LIMIT`] get a mapping of their
//! own. Writable and read-only data (which this crate's code does not declare) go to
//! `cranelift-jit`'s own provider.
//!
//! x86-64 keeps instruction fetch coherent with stores, and `mprotect` is a system call, so no
//! cache maintenance is needed between writing the code and running it (other hosts would
//! need the icache flushed, which is why the pool is not used there).

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider, SystemMemoryProvider};
use cranelift_module::{ModuleError, ModuleResult};

/// Pages per pooled chunk.
const CHUNK_PAGES: usize = 16;

/// A span larger than this gets a mapping of its own instead of pages from the pool.
const POOL_LIMIT: usize = 8 * 4096;

/// One anonymous mapping, unmapped when dropped.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the raw pointer is only an address.
// Writes happen through the `PooledCode` that owns a span, while its pages are read+write and
// handed to it alone (see `Pool::take`).
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only read the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A fresh read+write anonymous mapping of `len` bytes (a multiple of the page size).
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    /// Sets the protection of `len` bytes at page offset `offset` (both page multiples).
    fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside this mapping (callers pass ranges they own), so only
        // this mapping's pages change protection.
        let rc = unsafe { libc::mprotect(self.base.wrapping_add(offset).cast(), len, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping made by `Mapping::new` that nothing refers
        // to any more (every span in it holds this `Arc`, and they are all gone).
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

/// The process's pool, which every module's provider takes its spans from.
fn pool() -> &'static Mutex<Pool> {
    static POOL: Mutex<Pool> = Mutex::new(Pool::EMPTY);
    &POOL
}

/// Pages owned by one module: read+write until its module is finalised, read+execute after.
struct Span {
    mapping: Arc<Mapping>,
    offset: usize,
    len: usize,
}

impl Span {
    fn start(&self) -> *mut u8 {
        self.mapping.base.wrapping_add(self.offset)
    }
}

impl Pool {
    /// A pool with no chunk yet.
    const EMPTY: Pool = Pool {
        chunk: None,
        used: 0,
    };

    /// Read+write pages of `pool` for at least `bytes` bytes, owned by the caller alone.
    fn take(pool: &Mutex<Pool>, bytes: usize) -> io::Result<Span> {
        let page = page_size();
        let len = bytes.max(1).div_ceil(page).saturating_mul(page);
        if len > POOL_LIMIT.max(page) {
            return Ok(Span {
                mapping: Arc::new(Mapping::new(len)?),
                offset: 0,
                len,
            });
        }
        let chunk_len = CHUNK_PAGES * page;
        // A poisoned lock only means another thread panicked while holding it; the pool's
        // state is consistent between statements, so carry on.
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        let fits = pool.chunk.is_some() && pool.used + len <= chunk_len;
        if !fits {
            match pool.chunk.take() {
                // Every span of the full chunk is gone (spans are cloned only under this
                // lock, so the count cannot grow back): make its used pages writable again
                // and start over (they are already faulted in).
                Some(chunk) if Arc::strong_count(&chunk) == 1 => {
                    // `strong_count` is a relaxed load; the fence pairs it with the release
                    // decrement of each span's drop (as `Arc`'s own drop does), so everything
                    // their threads did with these pages happens before they are rewritten.
                    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                    chunk.protect(0, pool.used, libc::PROT_READ | libc::PROT_WRITE)?;
                    pool.chunk = Some(chunk);
                }
                // Modules still live there keep it mapped; unmapped when the last one goes.
                _ => pool.chunk = Some(Arc::new(Mapping::new(chunk_len)?)),
            }
            pool.used = 0;
        }
        let Some(chunk) = pool.chunk.clone() else {
            return Err(io::Error::other("no code chunk"));
        };
        let offset = pool.used;
        pool.used += len;
        Ok(Span {
            mapping: chunk,
            offset,
            len,
        })
    }
}

/// The memory provider of one in-process module: its code in spans from the pool, its data
/// (none today) from `cranelift-jit`'s own provider.
pub(crate) struct PooledCode {
    pool: &'static Mutex<Pool>,
    data: SystemMemoryProvider,
    /// Every span this module holds; `spans[..sealed]` are read+execute.
    spans: Vec<Span>,
    sealed: usize,
    /// Bytes handed out of the last span (meaningful only while it is not sealed).
    used: usize,
}

impl PooledCode {
    pub(crate) fn new() -> PooledCode {
        PooledCode::with_pool(pool())
    }

    /// A provider taking its code memory from `pool` (tests use pools of their own).
    fn with_pool(pool: &'static Mutex<Pool>) -> PooledCode {
        PooledCode {
            pool,
            data: SystemMemoryProvider::new(),
            spans: Vec::new(),
            sealed: 0,
            used: 0,
        }
    }

    /// Room for `size` bytes of code at `align` in a read+write span of this module.
    fn code(&mut self, size: usize, align: u64) -> io::Result<*mut u8> {
        let align = usize::try_from(align)
            .ok()
            .filter(|a| a.is_power_of_two() && *a <= page_size())
            .ok_or_else(|| io::Error::other(format!("code alignment {align}")))?;
        if self.spans.len() > self.sealed
            && let Some(span) = self.spans.last()
        {
            let at = self.used.next_multiple_of(align);
            if at.checked_add(size).is_some_and(|end| end <= span.len) {
                self.trap_fill(self.used..at);
                self.used = at + size;
                return Ok(span.start().wrapping_add(at));
            }
            // This span is left as it is: nothing more will be written after its code.
            self.trap_fill(self.used..span.len);
        }
        // Span starts are page-aligned, hence aligned for any `align` accepted above.
        let span = Pool::take(self.pool, size)?;
        let start = span.start();
        self.spans.push(span);
        self.used = size;
        Ok(start)
    }

    /// Fills `bytes` of the last span, which must be unsealed and not handed out, with `int3`:
    /// on a recycled page they would hold earlier programs' code, and a stray jump there
    /// should trap rather than run it.
    fn trap_fill(&self, bytes: std::ops::Range<usize>) {
        let Some(span) = self.spans.last() else {
            return;
        };
        if self.spans.len() == self.sealed || bytes.start >= bytes.end || bytes.end > span.len {
            return;
        }
        // SAFETY: the range lies inside the last span, which is this module's alone and still
        // read+write (not sealed), and no function was handed these bytes.
        unsafe {
            std::ptr::write_bytes(
                span.start().wrapping_add(bytes.start),
                0xcc,
                bytes.end - bytes.start,
            );
        }
    }
}

impl JITMemoryProvider for PooledCode {
    fn allocate(&mut self, size: usize, align: u64, kind: JITMemoryKind) -> io::Result<*mut u8> {
        match kind {
            JITMemoryKind::Executable => self.code(size, align),
            kind => self.data.allocate(size, align, kind),
        }
    }

    unsafe fn free_memory(&mut self) {
        // SAFETY: the caller (`JITModule::free_memory`) guarantees that nothing uses the
        // module's memory any more.
        unsafe { self.data.free_memory() };
        // The spans go back to the pool: their chunk is recycled once every span in it is gone.
        self.spans.clear();
        self.sealed = 0;
        self.used = 0;
    }

    fn finalize(&mut self, branch_protection: BranchProtection) -> ModuleResult<()> {
        self.data.finalize(branch_protection)?;
        if let Some(span) = self.spans.last() {
            self.trap_fill(self.used..span.len);
        }
        for span in &self.spans[self.sealed..] {
            span.mapping
                .protect(span.offset, span.len, libc::PROT_READ | libc::PROT_EXEC)
                .map_err(|err| ModuleError::Allocation { err })?;
        }
        // Later code goes to fresh spans: these are no longer writable.
        self.sealed = self.spans.len();
        Ok(())
    }
}

impl Drop for PooledCode {
    fn drop(&mut self) {
        // A module dropped without `free_memory` keeps its code valid for the rest of the
        // process, as `cranelift-jit`'s own provider does: its function pointers may outlive
        // it. Forgetting the spans keeps their chunks mapped and never recycled.
        for span in self.spans.drain(..) {
            std::mem::forget(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes of code in `code` and fills them with `byte`.
    fn fill(code: &mut PooledCode, size: usize, align: u64, byte: u8) -> (*mut u8, usize) {
        let p = code
            .allocate(size, align, JITMemoryKind::Executable)
            .unwrap();
        assert_eq!(p as usize % align as usize, 0, "alignment {align}");
        // SAFETY: `p` is `size` bytes of read+write pages owned by `code`, not finalised yet.
        unsafe { std::ptr::write_bytes(p, byte, size) };
        (p, size)
    }

    /// The bytes at `range`, which must be readable.
    fn bytes(range: (*mut u8, usize)) -> &'static [u8] {
        // SAFETY: callers pass ranges of modules that are alive and finalised (read+execute,
        // so readable) for as long as they look.
        unsafe { std::slice::from_raw_parts(range.0, range.1) }
    }

    #[test]
    fn code_of_live_modules_is_disjoint_and_keeps_its_bytes_while_others_are_freed() {
        let sizes = [1, 100, 4000, 4097, 16, 9000, 40_000, 300];
        let mut modules = Vec::new();
        for i in 0..4 * CHUNK_PAGES {
            let mut code = PooledCode::new();
            let byte = i as u8;
            let ranges: Vec<_> = (0..1 + i % 3)
                .map(|k| fill(&mut code, sizes[(i + k) % sizes.len()], 16 << (k % 3), byte))
                .collect();
            code.finalize(BranchProtection::None).unwrap();
            modules.push((code, byte, ranges));
            // Every other module is freed as soon as the next exists: its pages go back.
            if i % 2 == 1 {
                let (mut freed, ..) = modules.remove(modules.len() - 2);
                // SAFETY: nothing runs or reads the freed module's code.
                unsafe { freed.free_memory() };
            }
        }
        let mut all: Vec<(usize, usize)> = Vec::new();
        for (_, byte, ranges) in &modules {
            for &range in ranges {
                assert!(bytes(range).iter().all(|b| b == byte), "module {byte}");
                all.push((range.0 as usize, range.1));
            }
        }
        all.sort_unstable();
        for pair in all.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        }
        for (mut code, ..) in modules {
            // SAFETY: as above.
            unsafe { code.free_memory() };
        }
    }

    #[test]
    fn code_after_finalisation_goes_to_fresh_writable_pages() {
        let mut code = PooledCode::new();
        let first = fill(&mut code, 64, 16, 0xc3);
        code.finalize(BranchProtection::None).unwrap();
        // Writing into the sealed page would fault: the second function must land elsewhere.
        let second = fill(&mut code, 64, 16, 0x90);
        code.finalize(BranchProtection::None).unwrap();
        let page = page_size();
        assert_ne!(first.0 as usize / page, second.0 as usize / page);
        assert!(bytes(first).iter().all(|&b| b == 0xc3));
        assert!(bytes(second).iter().all(|&b| b == 0x90));
        // SAFETY: nothing runs or reads this code any more.
        unsafe { code.free_memory() };
    }

    /// A pool of the test's own, so that no other test's spans keep its chunks alive.
    fn private_pool() -> &'static Mutex<Pool> {
        Box::leak(Box::new(Mutex::new(Pool::EMPTY)))
    }

    /// A finalised module of `pool` whose one function, `size` bytes (at least 6), returns
    /// `value`: `mov eax, value; ret`, then `nop`s.
    fn returning(pool: &'static Mutex<Pool>, value: u32, size: usize) -> (PooledCode, *mut u8) {
        let mut code = PooledCode::with_pool(pool);
        let (p, _) = fill(&mut code, size, 16, 0x90);
        let mut insns = [0xb8, 0, 0, 0, 0, 0xc3];
        insns[1..5].copy_from_slice(&value.to_le_bytes());
        // SAFETY: `p` is `size` >= 6 bytes of read+write pages owned by `code`.
        unsafe { std::ptr::copy_nonoverlapping(insns.as_ptr(), p, insns.len()) };
        code.finalize(BranchProtection::None).unwrap();
        (code, p)
    }

    /// Calls the function at `p`, made by [`returning`] and still alive.
    fn call(p: *mut u8) -> u32 {
        // SAFETY: `p` is the start of a finalised (read+execute) function of a live module,
        // `mov eax, imm32; ret`: a C function of no argument returning a u32.
        let f = unsafe { std::mem::transmute::<*mut u8, extern "C" fn() -> u32>(p) };
        f()
    }

    #[test]
    fn freed_chunks_are_recycled_writable_while_other_chunks_code_keeps_running() {
        let pool = private_pool();
        let page = page_size();
        let round = |value: u32| -> (std::sync::Weak<Mapping>, *mut u8) {
            // A chunk's worth of functions fill their pages with `nop`s, so that the next
            // chunk's worth, 6 bytes each in the same pages once recycled, find stale code
            // past their own end.
            let size = if (value / CHUNK_PAGES as u32).is_multiple_of(2) {
                page
            } else {
                6
            };
            let (mut code, p) = returning(pool, value, size);
            assert_eq!(call(p), value);
            let span = &code.spans[0];
            let chunk = Arc::downgrade(&span.mapping);
            let rest = (p as usize - span.start() as usize) + size..span.len;
            assert!(
                bytes((span.start().wrapping_add(rest.start), rest.len()))
                    .iter()
                    .all(|&b| b == 0xcc),
                "what follows function {value} is not int3"
            );
            // SAFETY: its code does not run any more.
            unsafe { code.free_memory() };
            (chunk, p)
        };
        // Four chunks' worth of one-page modules, each freed at once: the first chunk is
        // recycled three times (a page left read+execute would fault on the next write).
        let (first, _) = round(0);
        for value in 1..4 * CHUNK_PAGES as u32 {
            let (chunk, _) = round(value);
            assert!(
                chunk.ptr_eq(&first),
                "module {value} got a chunk of its own"
            );
        }
        assert!(
            first.upgrade().is_some(),
            "the pool let go of its recycled chunk"
        );
        // One module kept alive pins its chunk: the pool moves on to exactly one new chunk,
        // recycled as the first was, while the kept module's code keeps running.
        let (mut kept, kept_at) = returning(pool, 7777, 6);
        let mut second = None;
        for value in 100..100 + 4 * CHUNK_PAGES as u32 {
            let (chunk, _) = round(value);
            assert_eq!(call(kept_at), 7777);
            if !chunk.ptr_eq(&first) {
                let second = second.get_or_insert_with(|| chunk.clone());
                assert!(chunk.ptr_eq(second), "module {value} got a third chunk");
            }
        }
        assert!(
            second.is_some(),
            "the kept module's chunk was recycled under it"
        );
        assert!(
            first.upgrade().is_some(),
            "the kept module's chunk was unmapped"
        );
        // SAFETY: its code does not run any more.
        unsafe { kept.free_memory() };
    }

    #[test]
    fn oversized_alignments_are_refused() {
        let mut code = PooledCode::new();
        let align = (page_size() * 2) as u64;
        assert!(code.allocate(8, align, JITMemoryKind::Executable).is_err());
        assert!(code.allocate(8, 3, JITMemoryKind::Executable).is_err());
    }
}
