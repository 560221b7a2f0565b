//! [`KernelError`]: why a bpf command failed — refused, rejected by the verifier, failed, or
//! given an argument the kernel cannot take — and [`PatchError`] for `lddw` relocation.

use std::fmt;
use std::io;

/// A `bpf(2)` command, named as the kernel's uapi names it — or one of the two other system
/// calls this crate makes for BPF's sake ([`Command::MapMmap`], [`Command::SchedSetaffinity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// `BPF_MAP_CREATE`.
    MapCreate,
    /// `BPF_MAP_LOOKUP_ELEM`.
    MapLookupElem,
    /// `BPF_MAP_UPDATE_ELEM`.
    MapUpdateElem,
    /// `BPF_MAP_DELETE_ELEM`.
    MapDeleteElem,
    /// `BPF_MAP_GET_NEXT_KEY`.
    MapGetNextKey,
    /// `BPF_PROG_LOAD`.
    ProgLoad,
    /// `BPF_PROG_TEST_RUN`.
    ProgTestRun,
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
    MapLookupAndDeleteElem,
    /// `BPF_MAP_FREEZE`.
    MapFreeze,
    /// `BPF_BTF_LOAD`.
    BtfLoad,
    /// Not a `bpf(2)` command: `mmap(2)` of a map's pages (a ring buffer's positions and data).
    MapMmap,
    /// Not a `bpf(2)` command: `sched_setaffinity(2)`, pinning the thread whose runs fill
    /// per-CPU maps.
    SchedSetaffinity,
}

impl Command {
    /// The command's number in `enum bpf_cmd`.
    #[cfg_attr(
        not(target_os = "linux"),
        expect(dead_code, reason = "only the Linux syscall uses it")
    )]
    pub(crate) fn number(self) -> Option<u32> {
        Some(match self {
            Command::MapCreate => 0,
            Command::MapLookupElem => 1,
            Command::MapUpdateElem => 2,
            Command::MapDeleteElem => 3,
            Command::MapGetNextKey => 4,
            Command::ProgLoad => 5,
            Command::ProgTestRun => 10,
            Command::MapLookupAndDeleteElem => 21,
            Command::MapFreeze => 22,
            Command::BtfLoad => 18,
            Command::MapMmap | Command::SchedSetaffinity => return None,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::MapCreate => "BPF_MAP_CREATE",
            Command::MapLookupElem => "BPF_MAP_LOOKUP_ELEM",
            Command::MapUpdateElem => "BPF_MAP_UPDATE_ELEM",
            Command::MapDeleteElem => "BPF_MAP_DELETE_ELEM",
            Command::MapGetNextKey => "BPF_MAP_GET_NEXT_KEY",
            Command::ProgLoad => "BPF_PROG_LOAD",
            Command::ProgTestRun => "BPF_PROG_TEST_RUN",
            Command::MapLookupAndDeleteElem => "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
            Command::MapFreeze => "BPF_MAP_FREEZE",
            Command::BtfLoad => "BPF_BTF_LOAD",
            Command::MapMmap => "mmap of a map",
            Command::SchedSetaffinity => "sched_setaffinity",
        })
    }
}

/// Why the kernel will not do BPF for this process at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `EPERM`: not root and no `CAP_BPF` (with `kernel.unprivileged_bpf_disabled` set), or
    /// a lockdown or seccomp policy.
    NotPermitted,
    /// `ENOSYS`: the kernel has no `bpf` syscall (or a sandbox hides it).
    NoSyscall,
    /// This is not Linux: the crate compiles, but has no kernel to talk to.
    NotLinux,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NotPermitted => {
                "not permitted (EPERM: run as root or with CAP_BPF; \
                 see /proc/sys/kernel/unprivileged_bpf_disabled)"
            }
            Refusal::NoSyscall => "the kernel has no bpf syscall (ENOSYS)",
            Refusal::NotLinux => "not Linux",
        })
    }
}

/// Why a bpf command did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// The kernel refuses BPF to this process: skip, do not fail.
    Refused {
        /// The command refused.
        command: Command,
        /// Why.
        reason: Refusal,
    },
    /// The verifier rejected the program.
    Rejected {
        /// The error number `BPF_PROG_LOAD` returned (`EACCES` or `EINVAL`, usually).
        errno: i32,
        /// The verifier's log (level 1), which ends with the reason; empty if the kernel
        /// wrote none.
        log: String,
    },
    /// The command failed.
    Failed {
        /// The command.
        command: Command,
        /// The error number.
        errno: i32,
    },
    /// An argument the kernel cannot take, found before calling it.
    InvalidArgument {
        /// The command it was for.
        command: Command,
        /// What is wrong.
        what: String,
    },
}

impl KernelError {
    /// Whether the kernel refused BPF altogether (see [`KernelError::Refused`]).
    pub fn is_refusal(&self) -> bool {
        matches!(self, KernelError::Refused { .. })
    }

    /// The error number, for errors that came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Rejected { errno, .. } | KernelError::Failed { errno, .. } => Some(*errno),
            KernelError::Refused { .. } | KernelError::InvalidArgument { .. } => None,
        }
    }

    /// The classification of a failed syscall: `ENOSYS` is a refusal, and so is `EPERM` from
    /// a command that creates a program or map. (Once a map exists BPF is permitted: `EPERM`
    /// from an element command means something else, such as an update of a frozen map.)
    #[cfg_attr(
        not(target_os = "linux"),
        expect(dead_code, reason = "only the Linux syscall uses it")
    )]
    pub(crate) fn from_errno(command: Command, errno: i32) -> KernelError {
        let creates = matches!(
            command,
            Command::ProgLoad | Command::MapCreate | Command::BtfLoad
        );
        match errno {
            ERRNO_EPERM if creates => KernelError::Refused {
                command,
                reason: Refusal::NotPermitted,
            },
            ERRNO_ENOSYS => KernelError::Refused {
                command,
                reason: Refusal::NoSyscall,
            },
            _ => KernelError::Failed { command, errno },
        }
    }

    pub(crate) fn invalid(command: Command, what: impl Into<String>) -> KernelError {
        KernelError::InvalidArgument {
            command,
            what: what.into(),
        }
    }
}

/// `EPERM` and `ENOSYS` as Linux numbers them (the same on every Linux architecture this
/// crate runs on; off Linux no errno ever reaches the classification).
const ERRNO_EPERM: i32 = 1;
const ERRNO_ENOSYS: i32 = 38;
/// `ENOENT`: no such element (a missing key, or the last key).
pub(crate) const ERRNO_ENOENT: i32 = 2;
/// `ENOSPC`: an output buffer was too small.
pub(crate) const ERRNO_ENOSPC: i32 = 28;

/// The system's text for an error number.
fn strerror(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Refused { command, reason } => {
                write!(f, "the kernel refuses BPF ({command}): {reason}")
            }
            KernelError::Rejected { errno, log } => {
                write!(
                    f,
                    "the kernel's verifier rejected the program ({})",
                    strerror(*errno)
                )?;
                // The last lines of the log say why (before the statistics the kernel appends);
                // the whole log is in the variant.
                let statistics = |line: &&str| {
                    ["processed ", "verification time", "stack depth"]
                        .iter()
                        .any(|s| line.starts_with(s))
                };
                let tail: Vec<&str> = log.lines().rev().skip_while(statistics).take(2).collect();
                for line in tail.iter().rev() {
                    write!(f, "\n  {}", line.escape_debug())?;
                }
                Ok(())
            }
            KernelError::Failed { command, errno } => {
                write!(f, "{command} failed: {}", strerror(*errno))
            }
            KernelError::InvalidArgument { command, what } => write!(f, "{command}: {what}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// Why an `lddw` could not be relocated to a map.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchError {
    /// The slot at `pc` is not the first slot of an `lddw` (opcode `0x18` followed by a
    /// second slot).
    NotLddw {
        /// The slot.
        pc: usize,
    },
    /// The instruction bytes are not a whole number of 8-byte slots.
    NotSlots {
        /// Their length.
        len: usize,
    },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::NotLddw { pc } => write!(f, "pc {pc}: not an lddw"),
            PatchError::NotSlots { len } => {
                write!(
                    f,
                    "{len} bytes of instructions are not a whole number of 8-byte slots"
                )
            }
        }
    }
}

impl std::error::Error for PatchError {}
