//! The helper interface: functions the embedder registers under an id, which programs call
//! with `call ID` (or `callx`), passing `r1`..`r5` and receiving `r0`.
//!
//! A helper can carry embedder state (it is any `Fn` closure), can read and write VM memory
//! only through the checked accessors of [`VmMemory`], can reach the state of the run it is
//! called from ([`VmMemory::run_state`]: engines pass it through untouched), and can end the
//! program with an error.

use alloc::string::String;
use core::fmt;

use crate::TrapKind;

/// VM memory as a helper sees it: every access is checked against the run's regions.
pub trait VmMemory {
    /// Copies `buf.len()` bytes starting at VM address `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TrapKind>;

    /// Copies `data` to VM memory starting at `addr` (which must be writable).
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TrapKind>;

    /// Reads a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, TrapKind> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), TrapKind> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Whether all of the `len` bytes at `addr` are mapped, found without touching more than
    /// the last of them: for a helper to refuse a length the program chose before it allocates
    /// a buffer of that length (an allocation the host cannot make aborts the process). No
    /// region is longer than its window ([`crate::layout::MAX_REGION_LEN`]), so the range must
    /// end inside `addr`'s window, and then the region holds all of it if it holds the last
    /// byte (a region's bytes are its window's first ones). Fails with the `OutOfBounds` an
    /// access of the whole range gives (`write` says which kind); whether the region is
    /// writable is left to the write, and an empty range to the access.
    fn check_range(&self, addr: u64, len: u64, write: bool) -> Result<(), TrapKind> {
        let Some(last) = len.checked_sub(1) else {
            return Ok(());
        };
        let in_window = crate::layout::offset_of(addr)
            .checked_add(len)
            .is_some_and(|end| end <= crate::layout::MAX_REGION_LEN);
        // Inside the window `addr + last` cannot wrap.
        if !in_window || self.read(addr + last, &mut [0u8]).is_err() {
            return Err(TrapKind::OutOfBounds { addr, len, write });
        }
        Ok(())
    }

    /// The state the embedder lent this run ([`crate::MemoryMap::set_run_state`]): what a
    /// helper needs beyond its arguments and memory (the run's CPU, its context, a verdict
    /// to record). A helper downcasts it to the type its embedder uses; `None` when the run
    /// has none.
    fn run_state(&mut self) -> Option<&mut dyn core::any::Any> {
        None
    }
}

/// Why a helper ended the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperError {
    /// The helper decided the program must stop; the message reaches the embedder in
    /// `TrapKind::HelperFailed`.
    Failed(String),
    /// A memory access through [`VmMemory`] failed; the run traps with this kind (typically
    /// `OutOfBounds`) at the call's pc.
    Memory(TrapKind),
}

impl HelperError {
    /// A failure with a message.
    pub fn failed(message: impl Into<String>) -> HelperError {
        HelperError::Failed(message.into())
    }
}

impl From<TrapKind> for HelperError {
    fn from(kind: TrapKind) -> HelperError {
        HelperError::Memory(kind)
    }
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Failed(m) => f.write_str(m),
            HelperError::Memory(kind) => write!(f, "{kind}"),
        }
    }
}

impl core::error::Error for HelperError {}

/// A helper function. Implemented for every suitable closure, so registering one is
/// `|args, mem| Ok(args[0])`.
///
/// Helpers are `Send + Sync` because a loaded program runs on many threads at once; state that
/// changes belongs behind a lock or an atomic.
pub trait Helper: Send + Sync {
    /// Runs the helper with `r1`..`r5`; `Ok` is the new `r0`.
    fn call(&self, args: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError>;
}

impl<F> Helper for F
where
    F: Fn([u64; 5], &mut dyn VmMemory) -> Result<u64, HelperError> + Send + Sync,
{
    fn call(&self, args: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
        self(args, memory)
    }
}

/// The plain-function form of a helper.
pub type HelperFn = fn([u64; 5], &mut dyn VmMemory) -> Result<u64, HelperError>;

/// The helper bpf_conformance programs call under [`crate::CONFORMANCE_HELPER_ID`]: returns its
/// first argument.
pub fn conformance_helper(args: [u64; 5], _memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args[0])
}

/// Helper ids below this are also found by indexing (kernel helper ids are all below it), so
/// that a call does not search a tree.
const DENSE_IDS: u32 = 256;

/// The helpers of a program, by id. Cheap to clone (helpers are shared).
#[derive(Clone, Default)]
pub struct Helpers {
    by_id: alloc::collections::BTreeMap<u32, alloc::sync::Arc<dyn Helper>>,
    /// `dense[id]` for the registered ids below [`DENSE_IDS`] (as long as the largest of
    /// them needs): the same helpers as `by_id`.
    dense: alloc::vec::Vec<Option<alloc::sync::Arc<dyn Helper>>>,
}

impl Helpers {
    /// No helpers.
    pub fn new() -> Helpers {
        Helpers::default()
    }

    /// Only [`conformance_helper`] under [`crate::CONFORMANCE_HELPER_ID`]: what the
    /// bpf_conformance programs call.
    pub fn conformance() -> Helpers {
        let mut helpers = Helpers::new();
        helpers.insert(crate::CONFORMANCE_HELPER_ID, conformance_helper);
        helpers
    }

    /// Registers `helper` under `id`, replacing any helper registered there.
    pub fn insert(&mut self, id: u32, helper: impl Helper + 'static) {
        let helper: alloc::sync::Arc<dyn Helper> = alloc::sync::Arc::new(helper);
        if id < DENSE_IDS {
            let index = id as usize;
            if self.dense.len() <= index {
                self.dense.resize(index + 1, None);
            }
            if let Some(slot) = self.dense.get_mut(index) {
                *slot = Some(helper.clone());
            }
        }
        self.by_id.insert(id, helper);
    }

    /// The helper registered under `id`.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&dyn Helper> {
        if id < DENSE_IDS {
            return self.dense.get(id as usize)?.as_deref();
        }
        self.by_id.get(&id).map(|h| &**h)
    }

    /// Calls the helper registered under `id` — a `call`'s immediate, or the full value of a
    /// `callx` register — with `r1`..`r5`, as every engine must: `Ok` is the new `r0`; an
    /// error is the kind of the run's trap (at the call's pc): `UnknownHelper` when no helper
    /// has the id (an id above `u32::MAX` never does), `HelperFailed` with the helper's
    /// message, or the memory trap of a failed access through `memory`.
    ///
    /// A helper's panic passes through; engines that must not unwind through generated code
    /// catch it around this call.
    #[inline]
    pub fn call(
        &self,
        id: u64,
        args: [u64; 5],
        memory: &mut dyn VmMemory,
    ) -> Result<u64, TrapKind> {
        // Every engine's helper call comes through here, so the common case — a registered
        // id below `DENSE_IDS` that returns `Ok` — is one compare (the dense table is at most
        // `DENSE_IDS` long, so it also rules out ids above `u32::MAX`), a load, a test and the
        // call; everything else is out of line.
        let slot = usize::try_from(id).ok().and_then(|i| self.dense.get(i));
        let Some(Some(helper)) = slot else {
            return self.call_sparse(id, args, memory);
        };
        match helper.call(args, memory) {
            Ok(r0) => Ok(r0),
            Err(error) => Err(helper_trap(id, error)),
        }
    }

    /// [`Helpers::call`] of an id the dense table does not hold.
    #[cold]
    #[inline(never)]
    fn call_sparse(
        &self,
        id: u64,
        args: [u64; 5],
        memory: &mut dyn VmMemory,
    ) -> Result<u64, TrapKind> {
        let id32 = u32::try_from(id).map_err(|_| TrapKind::UnknownHelper { id })?;
        let helper = self.get(id32).ok_or(TrapKind::UnknownHelper { id })?;
        helper.call(args, memory).map_err(|e| helper_trap(id, e))
    }

    /// The registered ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.keys().copied()
    }
}

impl fmt::Debug for Helpers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_id.keys()).finish()
    }
}

/// The trap of helper `id` (a registered one, so below 2^32) that returned `error`.
#[cold]
#[inline(never)]
fn helper_trap(id: u64, error: HelperError) -> TrapKind {
    match error {
        HelperError::Failed(message) => TrapKind::HelperFailed {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            message,
        },
        HelperError::Memory(kind) => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant<const N: u64>(_: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
        Ok(N)
    }

    #[test]
    fn dense_and_sparse_ids_find_the_same_helpers() {
        let mut helpers = Helpers::new();
        helpers.insert(3, constant::<30>);
        helpers.insert(255, constant::<2550>);
        helpers.insert(256, constant::<2560>);
        helpers.insert(70_000, constant::<7>);
        helpers.insert(3, constant::<31>);
        let call = |id| helpers.call(id, [0; 5], &mut crate::MemoryMap::new());
        assert_eq!(call(3), Ok(31), "replaced");
        assert_eq!(call(255), Ok(2550));
        assert_eq!(call(256), Ok(2560));
        assert_eq!(call(70_000), Ok(7));
        // An id above `u32::MAX` is never registered, whatever its low 32 bits (3 is).
        for id in [0, 4, 254, 257, 1 << 32, (1 << 32) | 3, u64::MAX] {
            assert_eq!(call(id), Err(TrapKind::UnknownHelper { id }));
        }
        assert_eq!(
            helpers.ids().collect::<alloc::vec::Vec<_>>(),
            [3, 255, 256, 70_000]
        );
    }

    /// A helper reaches the state lent to its run, and changes it; without one it sees none.
    #[test]
    fn helpers_reach_the_run_state() {
        let mut helpers = Helpers::new();
        helpers.insert(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
            let Some(count) = mem.run_state().and_then(|s| s.downcast_mut::<u64>()) else {
                return Err(HelperError::failed("no state"));
            };
            *count += args[0];
            Ok(*count)
        });
        let mut count = 10u64;
        let mut map = crate::MemoryMap::new();
        map.set_run_state(&mut count);
        assert_eq!(helpers.call(1, [5, 0, 0, 0, 0], &mut map), Ok(15));
        assert_eq!(helpers.call(1, [1, 0, 0, 0, 0], &mut map), Ok(16));
        drop(map);
        assert_eq!(count, 16);
        let none = helpers.call(1, [0; 5], &mut crate::MemoryMap::new());
        assert!(matches!(none, Err(TrapKind::HelperFailed { id: 1, .. })));
    }
}
