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

impl Trap {
    /// The trap of a run whose code for its entry (a JIT's code compiled without an entry's
    /// facts, made on first use) could not be made: only the host's resources (mapping
    /// memory) can fail a program that compiled once. Every JIT reports this same trap, at pc
    /// 0, with no engine's own error in it, so the JITs agree (the interpreter never gets
    /// here).
    pub fn entry_code_unavailable() -> Trap {
        Trap {
            pc: 0,
            kind: TrapKind::HelperFailed {
                id: 0,
                message: String::from(
                    "the host could not provide the code for this run's entry (out of memory)",
                ),
            },
        }
    }
}

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

/// Trap codes: how generated code reports the way a run ended, as one integer beside up to two
/// operands ([`RawTrap`]). Both JITs use them, and they are part of the C ABI of
/// ahead-of-time objects (`ebpf-jit-cranelift/c/ebpf_jit.h` spells the same values; a test
/// keeps them equal), so the values never change.
pub mod trap_code {
    /// The program exited normally.
    pub const EXIT: u64 = 0;
    /// Out-of-bounds load: `a` = address, `b` = width.
    pub const OUT_OF_BOUNDS_READ: u64 = 1;
    /// Out-of-bounds (or read-only) store or atomic: `a` = address, `b` = width.
    pub const OUT_OF_BOUNDS_WRITE: u64 = 2;
    /// Misaligned atomic: `a` = address, `b` = width.
    pub const MISALIGNED_ATOMIC: u64 = 3;
    /// The instruction budget ran out before the trapping instruction.
    pub const BUDGET_EXHAUSTED: u64 = 4;
    /// A local call would nest deeper than the limit.
    pub const CALL_DEPTH_EXCEEDED: u64 = 5;
    /// No helper has this id: `a` = id.
    pub const UNKNOWN_HELPER: u64 = 6;
    /// The helper failed: `a` = id (a message, if any, stays with the host).
    pub const HELPER_FAILED: u64 = 7;
    /// The instruction cannot execute: `a` = the reason's code ([`super::reason_code`]).
    pub const INVALID_INSTRUCTION: u64 = 8;
    /// The host recorded the trap's kind itself (a helper's error, say); the code carries no
    /// operands.
    pub const HOST: u64 = 9;
}

/// The codes of [`InvalidReason`]s, in a [`RawTrap`]'s `a` for
/// [`trap_code::INVALID_INSTRUCTION`]. Part of the same C ABI as [`trap_code`].
pub mod reason_code {
    /// Execution ran past the last instruction.
    pub const FELL_OFF_END: u64 = 0;
    /// A jump or call target outside the program.
    pub const TARGET_OUT_OF_RANGE: u64 = 1;
    /// Execution reached the second slot of an `lddw`.
    pub const LDDW_TAIL: u64 = 2;
    /// An `lddw` of a map or BTF object.
    pub const UNSUPPORTED_LDDW: u64 = 3;
    /// A call by BTF id (kfunc).
    pub const UNSUPPORTED_CALL: u64 = 4;
    /// Anything else.
    pub const OTHER: u64 = 5;
}

/// Each reason with its code: the one table both directions read.
const REASON_CODES: [(InvalidReason, u64); 6] = [
    (InvalidReason::FellOffEnd, reason_code::FELL_OFF_END),
    (
        InvalidReason::TargetOutOfRange,
        reason_code::TARGET_OUT_OF_RANGE,
    ),
    (InvalidReason::LddwTail, reason_code::LDDW_TAIL),
    (
        InvalidReason::UnsupportedLddw,
        reason_code::UNSUPPORTED_LDDW,
    ),
    (
        InvalidReason::UnsupportedCall,
        reason_code::UNSUPPORTED_CALL,
    ),
    (InvalidReason::Undecodable, reason_code::OTHER),
];

impl InvalidReason {
    /// The reason's code ([`reason_code`]).
    pub fn code(self) -> u64 {
        REASON_CODES
            .iter()
            .find(|(reason, _)| *reason == self)
            .map_or(reason_code::OTHER, |&(_, code)| code)
    }

    /// The reason with this code; an unknown code is [`InvalidReason::Undecodable`].
    pub fn from_code(code: u64) -> InvalidReason {
        REASON_CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(InvalidReason::Undecodable, |&(reason, _)| reason)
    }
}

/// A trap as generated code reports it: a [`trap_code`] and its operands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawTrap {
    /// What happened ([`trap_code`]).
    pub code: u64,
    /// The first operand: an address, a helper id or a reason code.
    pub a: u64,
    /// The second operand: an access width.
    pub b: u64,
}

impl RawTrap {
    /// The [`TrapKind`] this report stands for, under the run's `limits` (which the budget and
    /// call-depth kinds quote). `None` for [`trap_code::EXIT`] (not a trap),
    /// [`trap_code::HOST`] (the host holds the kind) and unknown codes.
    pub fn kind(&self, limits: &crate::Limits) -> Option<TrapKind> {
        let RawTrap { code, a, b } = *self;
        Some(match code {
            trap_code::OUT_OF_BOUNDS_READ | trap_code::OUT_OF_BOUNDS_WRITE => {
                TrapKind::OutOfBounds {
                    addr: a,
                    len: b,
                    write: code == trap_code::OUT_OF_BOUNDS_WRITE,
                }
            }
            trap_code::MISALIGNED_ATOMIC => TrapKind::MisalignedAtomic { addr: a, len: b },
            trap_code::BUDGET_EXHAUSTED => TrapKind::BudgetExhausted {
                budget: limits.budget.unwrap_or(u64::MAX),
            },
            trap_code::CALL_DEPTH_EXCEEDED => TrapKind::CallDepthExceeded {
                max_depth: limits.max_depth(),
            },
            trap_code::UNKNOWN_HELPER => TrapKind::UnknownHelper { id: a },
            trap_code::HELPER_FAILED => TrapKind::HelperFailed {
                id: a as u32,
                message: String::new(),
            },
            trap_code::INVALID_INSTRUCTION => TrapKind::InvalidInstruction {
                reason: InvalidReason::from_code(a),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn reasons_round_trip_through_their_codes() {
        for reason in [
            InvalidReason::FellOffEnd,
            InvalidReason::TargetOutOfRange,
            InvalidReason::LddwTail,
            InvalidReason::UnsupportedLddw,
            InvalidReason::UnsupportedCall,
            InvalidReason::Undecodable,
        ] {
            assert_eq!(InvalidReason::from_code(reason.code()), reason);
        }
        assert_eq!(InvalidReason::from_code(99), InvalidReason::Undecodable);
    }

    #[test]
    fn raw_traps_decode_with_the_runs_limits() {
        let limits = Limits {
            budget: Some(7),
            max_call_depth: usize::MAX,
        };
        let raw = |code, a, b| RawTrap { code, a, b }.kind(&limits);
        assert_eq!(
            raw(trap_code::OUT_OF_BOUNDS_WRITE, 0x4_0000_0010, 8),
            Some(TrapKind::OutOfBounds {
                addr: 0x4_0000_0010,
                len: 8,
                write: true
            })
        );
        assert_eq!(
            raw(trap_code::BUDGET_EXHAUSTED, 0, 0),
            Some(TrapKind::BudgetExhausted { budget: 7 })
        );
        assert_eq!(
            raw(trap_code::CALL_DEPTH_EXCEEDED, 0, 0),
            Some(TrapKind::CallDepthExceeded {
                max_depth: crate::MAX_CALL_DEPTH
            })
        );
        assert_eq!(
            raw(trap_code::INVALID_INSTRUCTION, reason_code::LDDW_TAIL, 0),
            Some(TrapKind::InvalidInstruction {
                reason: InvalidReason::LddwTail
            })
        );
        assert_eq!(raw(trap_code::EXIT, 0, 0), None);
        assert_eq!(raw(trap_code::HOST, 0, 0), None);
    }
}
