//! The helper interface: functions the embedder registers under an id, which programs call
//! with `call ID` (or `callx`), passing `r1`..`r5` and receiving `r0`.
//!
//! A helper can carry embedder state (it is any `Fn` closure), can read and write VM memory
//! only through the checked accessors of [`VmMemory`], and can end the program with an error.

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

/// The helpers of a program, by id. Cheap to clone (helpers are shared).
#[derive(Clone, Default)]
pub struct Helpers {
    by_id: alloc::collections::BTreeMap<u32, alloc::sync::Arc<dyn Helper>>,
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
        self.by_id.insert(id, alloc::sync::Arc::new(helper));
    }

    /// The helper registered under `id`.
    pub fn get(&self, id: u32) -> Option<&dyn Helper> {
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
    pub fn call(
        &self,
        id: u64,
        args: [u64; 5],
        memory: &mut dyn VmMemory,
    ) -> Result<u64, TrapKind> {
        let id32 = u32::try_from(id).map_err(|_| TrapKind::UnknownHelper { id })?;
        let helper = self.get(id32).ok_or(TrapKind::UnknownHelper { id })?;
        helper.call(args, memory).map_err(|e| match e {
            HelperError::Failed(message) => TrapKind::HelperFailed { id: id32, message },
            HelperError::Memory(kind) => kind,
        })
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
