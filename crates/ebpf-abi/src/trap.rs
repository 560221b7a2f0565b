//! [`Trap`]: how a run ends when it does not reach `exit`. Every engine returns exactly the same
//! `Trap` (kind and pc) as the interpreter for the same program and input.

use alloc::string::String;
use core::fmt;

/// A run-time error: what went wrong, at which instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    /// The pc (slot index) of the instruction that trapped.
    pub pc: usize,
    /// What went wrong.
    pub kind: TrapKind,
}

/// What went wrong at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrapKind {
    /// A load, store or atomic touched memory outside every region it may access (or wrote to a
    /// read-only region).
    OutOfBounds {
        /// The first VM address of the access.
        addr: u64,
        /// Its width in bytes.
        len: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// An atomic operation on an address that is not a multiple of its width.
    MisalignedAtomic {
        /// The VM address.
        addr: u64,
        /// The width in bytes (4 or 8).
        len: u64,
    },
    /// The instruction budget ran out before this instruction.
    BudgetExhausted {
        /// The budget, i.e. how many instructions executed.
        budget: u64,
    },
    /// A local call would nest deeper than the limit.
    CallDepthExceeded {
        /// The limit.
        max_depth: usize,
    },
    /// A call named a helper id that is not registered.
    UnknownHelper {
        /// The id (for `callx`, the register's full value).
        id: u64,
    },
    /// A helper ended the program with an error.
    HelperFailed {
        /// The helper id.
        id: u32,
        /// The helper's message.
        message: String,
    },
    /// A region of the run's memory is longer than the 4 GiB its window can address
    /// ([`crate::layout::MAX_REGION_LEN`]). The facade reports it at pc 0, before anything
    /// runs; engines never raise it (they address only a region's first 4 GiB).
    RegionTooLarge {
        /// The region id.
        region: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// The instruction cannot execute here: a jump or call outside the program, a jump into the
    /// second half of an `lddw`, falling off the end, or an instruction this VM does not run
    /// (map and BTF pseudo-loads, kfunc calls).
    InvalidInstruction {
        /// Why.
        reason: InvalidReason,
    },
}

/// Why an instruction could not execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Execution reached past the last instruction.
    FellOffEnd,
    /// A jump or call target is outside the program.
    TargetOutOfRange,
    /// Execution reached the second slot of an `lddw`.
    LddwTail,
    /// An `lddw` with a map/BTF/code pseudo source, which needs a loader's relocation.
    UnsupportedLddw,
    /// A `call` by BTF id (kfunc).
    UnsupportedCall,
    /// The program could not be decoded at this pc.
    Undecodable,
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at pc {}", self.kind, self.pc)
    }
}

impl core::error::Error for Trap {}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::OutOfBounds { addr, len, write } => {
                let what = if *write { "write" } else { "read" };
                write!(f, "out-of-bounds {what} of {len} bytes at {addr:#x}")
            }
            TrapKind::MisalignedAtomic { addr, len } => {
                write!(f, "misaligned {len}-byte atomic at {addr:#x}")
            }
            TrapKind::BudgetExhausted { budget } => {
                write!(f, "instruction budget of {budget} exhausted")
            }
            TrapKind::CallDepthExceeded { max_depth } => {
                write!(f, "local calls nested deeper than {max_depth}")
            }
            TrapKind::UnknownHelper { id } => write!(f, "unknown helper {id}"),
            TrapKind::HelperFailed { id, message } => write!(f, "helper {id} failed: {message}"),
            TrapKind::RegionTooLarge { region, len } => write!(
                f,
                "region {region} is {len} bytes, more than the {} bytes (4 GiB) a region holds",
                crate::layout::MAX_REGION_LEN
            ),
            TrapKind::InvalidInstruction { reason } => write!(f, "invalid instruction: {reason}"),
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidReason::FellOffEnd => "execution fell off the end of the program",
            InvalidReason::TargetOutOfRange => "jump or call target outside the program",
            InvalidReason::LddwTail => "jump into the second slot of lddw",
            InvalidReason::UnsupportedLddw => "lddw of a map or BTF object needs a loader",
            InvalidReason::UnsupportedCall => "calls by BTF id (kfuncs) are not supported",
            InvalidReason::Undecodable => "undecodable instruction",
        })
    }
}
