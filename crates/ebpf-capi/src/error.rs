//! `ebpf_status` (what every call returns) and `ebpf_error` (the details: status, pc, message),
//! with the mapping from the facade's `LoadError` and `Trap`.

use std::ffi::{CString, c_char};

use ebpf_vm::{LoadError, Trap, TrapKind};

use crate::boundary;

/// What a call returns: `EBPF_STATUS_OK`, or what went wrong. Load errors, run-time traps and
/// misuse have their own values, so a caller can branch without an error object.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// An argument is NULL, too long, not UTF-8 or out of range; nothing was done.
    InvalidArgument = 1,
    /// Loading: the bytes are not a sequence of valid instructions (the pc says where).
    Decode = 10,
    /// Loading: the assembly text does not assemble.
    Asm = 11,
    /// Loading: the ELF object is malformed, or has no such program.
    Elf = 12,
    /// Loading: the verifier rejected the program (the pc is its first error's).
    Rejected = 13,
    /// Loading: the program can loop and no budget is set.
    NeedsBudget = 14,
    /// Loading: the configuration is inconsistent (a call depth above the maximum, say).
    InvalidConfig = 15,
    /// Loading: the engine is not in this build of the library, or not on this host.
    EngineUnavailable = 16,
    /// Loading: the engine could not compile the program.
    Compile = 17,
    /// Loading: the ELF program uses maps, which runs do not provide yet (the message names
    /// them).
    UsesMaps = 18,
    /// Loading: the program is longer than any VM loads (1,000,000 slots).
    TooLarge = 19,
    /// Trap: a load, store or atomic outside the memory the program may access.
    TrapOutOfBounds = 30,
    /// Trap: an atomic operation on a misaligned address.
    TrapMisalignedAtomic = 31,
    /// Trap: the instruction budget ran out.
    TrapBudgetExhausted = 32,
    /// Trap: local calls nested deeper than the limit.
    TrapCallDepthExceeded = 33,
    /// Trap: a call to a helper id nothing is registered under.
    TrapUnknownHelper = 34,
    /// Trap: a helper reported failure.
    TrapHelperFailed = 35,
    /// Trap: an instruction that cannot execute (a jump outside the program, …).
    TrapInvalidInstruction = 36,
    /// Trap (before the run, pc 0): an input, metadata buffer or region longer than the 4 GiB
    /// a region can hold.
    TrapRegionTooLarge = 37,
    /// A bug in the library (a caught panic), or an error of a kind newer than this API.
    Internal = 99,
}

/// The details of a failed call. Free it with `ebpf_error_free`.
#[derive(Debug)]
pub struct Error {
    pub(crate) status: Status,
    pc: Option<usize>,
    message: CString,
}

impl Error {
    pub(crate) fn new(status: Status, pc: Option<usize>, message: String) -> Error {
        // A message with an interior NUL would be cut short in C; show it instead.
        let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        Error {
            status,
            pc,
            message,
        }
    }

    /// The message as Rust text (for tests).
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        self.message.to_str().unwrap_or_default()
    }

    /// A bad argument.
    pub(crate) fn invalid(message: String) -> Error {
        Error::new(Status::InvalidArgument, None, message)
    }

    /// A NULL pointer where an object or a buffer is required.
    pub(crate) fn null(name: &str) -> Error {
        Error::invalid(format!("{name} is NULL"))
    }

    /// A caught panic.
    pub(crate) fn internal(message: String) -> Error {
        Error::new(Status::Internal, None, message)
    }

    /// The error of a failed load.
    pub(crate) fn load(e: &LoadError) -> Error {
        let (status, pc) = match e {
            LoadError::Decode(d) => (Status::Decode, Some(d.pc)),
            LoadError::Asm(_) => (Status::Asm, None),
            LoadError::Elf(_) => (Status::Elf, None),
            LoadError::Rejected(r) => (Status::Rejected, r.errors().next().map(|f| f.pc)),
            LoadError::NeedsBudget => (Status::NeedsBudget, None),
            LoadError::InvalidConfig(_) => (Status::InvalidConfig, None),
            LoadError::EngineUnavailable(_) => (Status::EngineUnavailable, None),
            LoadError::Compile { .. } => (Status::Compile, None),
            LoadError::UsesMaps { .. } => (Status::UsesMaps, None),
            LoadError::TooLarge { .. } => (Status::TooLarge, None),
            _ => (Status::Internal, None),
        };
        Error::new(status, pc, e.to_string())
    }

    /// The error of a run that trapped.
    pub(crate) fn trap(t: &Trap) -> Error {
        Error::new(trap_status(&t.kind), Some(t.pc), t.to_string())
    }
}

/// The status of a trap of this kind.
pub(crate) fn trap_status(kind: &TrapKind) -> Status {
    match kind {
        TrapKind::OutOfBounds { .. } => Status::TrapOutOfBounds,
        TrapKind::MisalignedAtomic { .. } => Status::TrapMisalignedAtomic,
        TrapKind::BudgetExhausted { .. } => Status::TrapBudgetExhausted,
        TrapKind::CallDepthExceeded { .. } => Status::TrapCallDepthExceeded,
        TrapKind::UnknownHelper { .. } => Status::TrapUnknownHelper,
        TrapKind::HelperFailed { .. } => Status::TrapHelperFailed,
        TrapKind::InvalidInstruction { .. } => Status::TrapInvalidInstruction,
        TrapKind::RegionTooLarge { .. } => Status::TrapRegionTooLarge,
        _ => Status::Internal,
    }
}

/// The error's status (never `EBPF_STATUS_OK`); `EBPF_STATUS_INVALID_ARGUMENT` for NULL.
///
/// # Safety
/// `error` is NULL or an error this library returned and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_error_status(error: *const Error) -> Status {
    boundary::guard_value(Status::Internal, || {
        // SAFETY: the caller guarantees a live error or NULL.
        unsafe { boundary::object(error, "error") }.map_or(Status::InvalidArgument, |e| e.status)
    })
}

/// The pc (instruction slot) the error is about, or -1 when it has none: a trap's pc, a
/// decode error's, the verifier's first error's.
///
/// # Safety
/// `error` is NULL or an error this library returned and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_error_pc(error: *const Error) -> i64 {
    boundary::guard_value(-1, || {
        // SAFETY: the caller guarantees a live error or NULL.
        unsafe { boundary::object(error, "error") }
            .ok()
            .and_then(|e| e.pc)
            .and_then(|pc| i64::try_from(pc).ok())
            .unwrap_or(-1)
    })
}

/// The error's message, one line of UTF-8 (`out-of-bounds read of 4 bytes at 0x400000002 at
/// pc 0`). It lives as long as the error; NULL for a NULL error.
///
/// # Safety
/// `error` is NULL or an error this library returned and not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_error_message(error: *const Error) -> *const c_char {
    boundary::guard_value(std::ptr::null(), || {
        // SAFETY: the caller guarantees a live error or NULL.
        unsafe { boundary::object(error, "error") }.map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// Frees an error; NULL is ignored.
///
/// # Safety
/// `error` is NULL or an error this library returned and not yet freed; it is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_error_free(error: *mut Error) {
    // SAFETY: the caller guarantees an error from this library, freed once, or NULL.
    boundary::guard_value((), || unsafe { boundary::free(error) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_uses_maps_has_its_own_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/bpf/xdp_counter.o");
        let bytes = std::fs::read(path).unwrap();
        let e = ebpf_vm::Vm::builder()
            .load_elf(&bytes, ebpf_vm::Selector::Only)
            .unwrap_err();
        let error = Error::load(&e);
        assert_eq!(error.status, Status::UsesMaps, "{e}");
        assert!(error.message().contains("uses map"), "{}", error.message());
    }

    #[test]
    fn oversized_programs_and_regions_have_their_own_statuses() {
        let slots = ebpf_vm::MAX_PROGRAM_SLOTS + 1;
        let e = ebpf_vm::Vm::builder()
            .load(&vec![0u8; slots * 8])
            .unwrap_err();
        assert_eq!(Error::load(&e).status, Status::TooLarge, "{e}");
        let kind = TrapKind::RegionTooLarge {
            region: ebpf_vm::layout::INPUT,
            len: 1 << 33,
        };
        assert_eq!(trap_status(&kind), Status::TrapRegionTooLarge);
    }
}
