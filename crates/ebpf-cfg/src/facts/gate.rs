//! The one mechanism by which a JIT runs code compiled with an entry's facts only on the runs
//! that entry admits: [`Gate`], shared by both JITs (with the `std` feature, for its lazy
//! slot).

use std::sync::OnceLock;

use ebpf_abi::MemoryMap;

use super::{Admission, Entry};

/// What code compiled with the facts of an [`Entry`] needs for the runs the entry does not
/// admit: the entry's [`Admission`], checked before every run, and a slot for the code those
/// runs take instead (compiled from [`Entry::unknown`], the stack's facts only), made on first
/// use — most programs never need it.
#[derive(Debug)]
pub struct Gate<T> {
    admission: Admission,
    plain: OnceLock<T>,
}

impl<T> Gate<T> {
    /// The gate of code compiled with the facts of `entry`; `None` when `entry` assumes nothing
    /// beyond the stack, which every run satisfies (no gate, no check).
    pub fn new(entry: &Entry) -> Option<Gate<T>> {
        (*entry != Entry::unknown()).then(|| Gate {
            admission: entry.admission(),
            plain: OnceLock::new(),
        })
    }

    /// `None` when the run (`memory`, `args`) satisfies the entry, so that the code compiled
    /// with its facts may run it; else the code to run instead, made by `plain` the first time
    /// (threads racing here wait for one `plain`).
    #[inline]
    pub fn fallback(
        &self,
        memory: &MemoryMap<'_>,
        args: [u64; 2],
        plain: impl FnOnce() -> T,
    ) -> Option<&T> {
        if self.admission.admits(memory, args) {
            return None;
        }
        Some(self.plain.get_or_init(plain))
    }

    /// What the entry asks of a run (for a caller that checks part of it without a map,
    /// `Admission::input_only`).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The fallback code, if some run has needed it yet.
    pub fn made(&self) -> Option<&T> {
        self.plain.get()
    }
}
