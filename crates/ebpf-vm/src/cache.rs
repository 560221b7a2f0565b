//! [`CodeCache`]: compiled code shared by every load of the same program with the same
//! options in one process, so that loading it again compiles nothing.
//!
//! Keys are the Cranelift JIT's `CodeKey` (`ebpf_jit_cranelift::CodeKey`: compiler build,
//! target and resolved ISA flags, every option, the bytecode), compared whole — a hash
//! only finds the bucket. Entries hold the code *weakly*: the code lives as long as some
//! [`crate::Vm`] (or a tiered program) uses it and is freed with the last one, and the cache
//! drops entries whose code is gone whenever it compiles, so it holds at most one entry per
//! live program plus those freed since its last compile. Loads of the same program from
//! several threads at once compile it once: the others wait for that compile.
//!
//! The Cranelift engine and [`crate::Engine::Tiered`]'s second tier go through it (they share
//! entries: the same options make the same code). The x86 JIT and the interpreter do not: they
//! prepare a program in about the time the verifier takes to check it, and the x86 JIT's code
//! also depends on what the verifier proved for the builder's entry state (docs/jit-cranelift.md,
//! "Compile time").

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use ebpf_abi::Executable;

/// A cache of compiled code, shared by the loads that use it (see the module documentation).
/// Cloning shares the cache. [`CodeCache::global`] is the one every builder uses unless told
/// otherwise ([`crate::VmBuilder::code_cache`], [`crate::VmBuilder::no_code_cache`]).
#[derive(Clone, Default)]
pub struct CodeCache {
    inner: Arc<Inner>,
}

/// What a [`CodeCache`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads that found the code ready (or compiling on another thread, and waited for it).
    pub hits: u64,
    /// Compiles the cache ran: loads that found nothing usable.
    pub compiles: u64,
    /// Entries whose code is still in use.
    pub live: usize,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<Box<[u8]>, Arc<Slot>>>,
    hits: AtomicU64,
    compiles: AtomicU64,
}

/// One key's code: empty while the first load compiles it, then the code (`None` if that
/// compile failed), held weakly.
#[derive(Default)]
struct Slot(OnceLock<Option<Weak<dyn Executable>>>);

impl Slot {
    /// The code, if it was compiled and is still in use.
    fn code(&self) -> Option<Arc<dyn Executable>> {
        self.0.get()?.as_ref()?.upgrade()
    }

    /// Whether a later load can still get something from this slot.
    fn is_live(&self) -> bool {
        match self.0.get() {
            None => true,
            Some(code) => code.as_ref().is_some_and(|c| c.strong_count() > 0),
        }
    }
}

impl CodeCache {
    /// A new, empty cache of its own (for an embedder who wants its loads isolated from the
    /// rest of the process, or a test that counts compiles).
    pub fn new() -> CodeCache {
        CodeCache::default()
    }

    /// The process-wide cache, what builders use by default.
    pub fn global() -> CodeCache {
        static GLOBAL: OnceLock<CodeCache> = OnceLock::new();
        GLOBAL.get_or_init(CodeCache::new).clone()
    }

    /// Its counters.
    pub fn stats(&self) -> CacheStats {
        let live = self
            .entries()
            .values()
            .filter(|s| s.code().is_some())
            .count();
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            compiles: self.inner.compiles.load(Ordering::Relaxed),
            live,
        }
    }

    /// Whether `self` and `other` are the same cache.
    pub fn same(&self, other: &CodeCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Arc<Slot>>> {
        // A poisoned lock only means a thread panicked while holding it; the map is intact
        // (every change to it is a single insert or retain).
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The code for `key` if it is compiled and in use, without compiling.
    #[cfg_attr(
        not(feature = "jit-cranelift"),
        expect(dead_code, reason = "only Cranelift's code is cached")
    )]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<dyn Executable>> {
        let code = self.entries().get(key)?.code()?;
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Some(code)
    }

    /// The code for `key`: the cached one, or what `compile` makes (stored for the next
    /// load). While one thread compiles a key, other threads asking for it wait for the
    /// result. A failed compile is not cached: the error goes to the loads that waited for it
    /// as a fresh compile of their own.
    #[cfg_attr(
        not(feature = "jit-cranelift"),
        expect(dead_code, reason = "only Cranelift's code is cached")
    )]
    pub(crate) fn get_or_compile<E>(
        &self,
        key: &[u8],
        compile: impl Fn() -> Result<Arc<dyn Executable>, E>,
    ) -> Result<Arc<dyn Executable>, E> {
        let slot = {
            let mut entries = self.entries();
            match entries.get(key) {
                Some(slot) if slot.is_live() => Arc::clone(slot),
                _ => {
                    // Before adding an entry, drop those whose code has been freed: the map
                    // never holds more than the live entries and one per compile since.
                    entries.retain(|_, slot| slot.is_live());
                    let slot = Arc::new(Slot::default());
                    entries.insert(key.into(), Arc::clone(&slot));
                    slot
                }
            }
        };
        let mut compiled = None;
        let cached = slot.0.get_or_init(|| {
            self.inner.compiles.fetch_add(1, Ordering::Relaxed);
            let result = compile();
            let weak = result.as_ref().ok().map(Arc::downgrade);
            compiled = Some(result);
            weak
        });
        if let Some(result) = compiled {
            return result;
        }
        match cached.as_ref().and_then(Weak::upgrade) {
            Some(code) => {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                Ok(code)
            }
            // The compile we waited for failed, or its code was freed meanwhile.
            None => {
                self.inner.compiles.fetch_add(1, Ordering::Relaxed);
                compile()
            }
        }
    }
}

impl fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeCache")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Which cache a builder's loads use.
#[derive(Clone, Debug, Default)]
pub(crate) enum CacheChoice {
    /// [`CodeCache::global`].
    #[default]
    Global,
    /// The embedder's own.
    Own(CodeCache),
    /// None: every load compiles.
    Off,
}

impl CacheChoice {
    /// The cache itself, if any.
    pub(crate) fn cache(&self) -> Option<CodeCache> {
        match self {
            CacheChoice::Global => Some(CodeCache::global()),
            CacheChoice::Own(cache) => Some(cache.clone()),
            CacheChoice::Off => None,
        }
    }
}
