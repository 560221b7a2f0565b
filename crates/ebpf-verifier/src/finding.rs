//! [`Finding`]: one problem the verifier found, with its pc, severity, typed kind and a message
//! a person can act on.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ebpf_cfg::CfgErrorKind;
use ebpf_isa::{DecodeErrorKind, Reg, quoted};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The program is rejected.
    Error,
    /// Reported, but the program is accepted.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, at one pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Where (the slot index of the instruction).
    pub pc: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What.
    pub kind: FindingKind,
}

impl Finding {
    pub(crate) fn error(pc: usize, kind: FindingKind) -> Finding {
        Finding {
            pc,
            severity: Severity::Error,
            kind,
        }
    }

    pub(crate) fn warning(pc: usize, kind: FindingKind) -> Finding {
        Finding {
            pc,
            severity: Severity::Warning,
            kind,
        }
    }
}

/// What the verifier found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// The program has no instructions.
    Empty,
    /// The program is longer than the configured maximum.
    TooLong {
        /// Its length in slots.
        slots: usize,
        /// The maximum.
        max: usize,
    },
    /// The slot does not decode (unknown opcode, reserved field not zero, invalid register,
    /// invalid offset for div/mod/mov, malformed lddw, …).
    Decode(DecodeErrorKind),
    /// A structural problem: a jump or call target outside the program or its function or
    /// inside an `lddw`, or execution falling off the end.
    Structure(CfgErrorKind),
    /// No `exit` is reachable from the entry.
    NoReachableExit,
    /// Instructions no execution reaches (pcs `pc..end`): no path leads there.
    Unreachable {
        /// One past the last unreachable slot of the run.
        end: usize,
    },
    /// Instructions that can never run (pcs `pc..end`), although a path leads there: a
    /// conditional jump on values known at load time always goes the other way (`mov r0, 7;
    /// jeq r0, 7, +1` never runs the next instruction). What is wrong inside them is reported
    /// as warnings, as the kernel loads such programs; every engine traps if they run after
    /// all.
    NeverRuns {
        /// One past the last slot of the run.
        end: usize,
        /// The pc of a conditional jump that never goes into the run.
        branch: usize,
    },
    /// An instruction writes the read-only frame pointer `r10`.
    WriteToR10,
    /// A jump to itself: once taken, it never ends.
    SelfLoop,
    /// A call to a helper id the embedder did not register.
    UnknownHelper {
        /// The id.
        id: u64,
    },
    /// A call by BTF id (kfunc); no engine runs those.
    UnsupportedCall,
    /// An `lddw` of a map or BTF object, which needs a loader's relocation.
    UnsupportedLddw,
    /// A chain of local calls nests deeper than the limit.
    CallDepthExceeded {
        /// The depth this call reaches.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// Functions call each other in a cycle.
    Recursion {
        /// Entry pcs of the functions on the cycle, in call order.
        cycle: Vec<usize>,
    },
    /// A register is read before it is written on some path to this instruction.
    UninitializedRegister {
        /// The register.
        reg: Reg,
    },
    /// A stack access through `r10` plus a constant falls outside the 512-byte frame.
    StackOutOfBounds {
        /// Offset from `r10` of the first byte.
        offset: i64,
        /// Width in bytes.
        size: u32,
    },
    /// A stack access through `r10` plus a constant is not aligned to its width.
    MisalignedStack {
        /// Offset from `r10` of the first byte.
        offset: i64,
        /// Width in bytes.
        size: u32,
    },
    /// A stack read of bytes that are not written on some path to it. A warning, as the
    /// kernel allows it to privileged loaders (`allow_uninit_stack`): the bytes read are zero
    /// (the stack is zero when a run starts) or what this run wrote there earlier, the same in
    /// every engine.
    UninitializedStack {
        /// Offset from `r10` of the first byte.
        offset: i64,
        /// Width in bytes.
        size: u32,
    },
    /// An access through the result of a map lookup, at a constant offset, falls outside the
    /// map's value (the kernel's "invalid access to map value").
    MapValueOutOfBounds {
        /// The map's name.
        map: String,
        /// Offset from the value's start of the first byte.
        offset: i64,
        /// Width in bytes.
        size: u32,
        /// The map's value size.
        value_size: u32,
    },
    /// The result of a map lookup is dereferenced on a path where it was not checked against
    /// NULL (the kernel's "invalid mem access 'map_value_or_null'").
    MapValueOrNull {
        /// The map's name.
        map: String,
    },
    /// The result of a lookup in a map of maps — an inner map, which a program may only
    /// pass to map helpers — is dereferenced (the kernel lets a privileged program read its
    /// `struct bpf_map`, kernel memory this VM does not have).
    InnerMapAccess {
        /// The map of maps.
        map: String,
    },
    /// A map helper other than the lookup is called on a map of maps: programs may only look
    /// maps of maps up (the kernel's "cannot pass map_type 12 into func").
    OuterMapHelper {
        /// The map of maps.
        map: String,
        /// The helper's id.
        helper: u32,
    },
    /// Division or modulo by a constant zero (defined: the result is 0, or `dst` for
    /// modulo — but rarely what was meant).
    DivisionByZero,
    /// A finding of an embedder's policy.
    Policy {
        /// The policy's name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pc {}: {}", self.pc, self.kind)
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FindingKind::Empty => write!(f, "the program is empty"),
            FindingKind::TooLong { slots, max } => {
                write!(f, "the program has {slots} slots; the limit is {max}")
            }
            FindingKind::Decode(kind) => write!(f, "{kind}"),
            FindingKind::Structure(kind) => {
                // CfgError's Display starts with its own pc; print just the message.
                let text = alloc::format!("{}", ebpf_cfg::CfgError { pc: 0, kind: *kind });
                f.write_str(text.strip_prefix("pc 0: ").unwrap_or(&text))
            }
            FindingKind::NoReachableExit => write!(f, "no exit is reachable from the entry"),
            FindingKind::Unreachable { end } => {
                write!(
                    f,
                    "unreachable instructions up to pc {}",
                    end.saturating_sub(1)
                )
            }
            FindingKind::NeverRuns { end, branch } => write!(
                f,
                "instructions up to pc {} never run: the jump at pc {branch} always goes \
                 elsewhere",
                end.saturating_sub(1)
            ),
            FindingKind::WriteToR10 => write!(f, "writes r10, the read-only frame pointer"),
            FindingKind::SelfLoop => write!(f, "jumps to itself: an endless loop once taken"),
            FindingKind::UnknownHelper { id } => write!(f, "call to unknown helper {id}"),
            FindingKind::UnsupportedCall => write!(f, "calls by BTF id (kfuncs) are not supported"),
            FindingKind::UnsupportedLddw => {
                write!(f, "lddw of a map or BTF object needs a loader's relocation")
            }
            FindingKind::CallDepthExceeded { depth, max } => {
                write!(f, "call nests {depth} deep; the limit is {max}")
            }
            FindingKind::Recursion { cycle } => {
                write!(f, "recursive calls between the functions at pcs")?;
                for (i, pc) in cycle.iter().enumerate() {
                    write!(f, "{}{pc}", if i == 0 { " " } else { " -> " })?;
                }
                Ok(())
            }
            FindingKind::UninitializedRegister { reg } => {
                write!(f, "{reg} is read before it is written")
            }
            FindingKind::StackOutOfBounds { offset, size } => write!(
                f,
                "{size}-byte stack access at r10{offset:+} is outside the 512-byte frame"
            ),
            FindingKind::MisalignedStack { offset, size } => {
                write!(
                    f,
                    "{size}-byte stack access at r10{offset:+} is not {size}-byte aligned"
                )
            }
            FindingKind::UninitializedStack { offset, size } => write!(
                f,
                "{size}-byte stack read at r10{offset:+} reads bytes never written on some path"
            ),
            FindingKind::MapValueOutOfBounds {
                map,
                offset,
                size,
                value_size,
            } => write!(
                f,
                "invalid access to a value of map `{}`: {size} bytes at offset {offset}, \
                 but its values are {value_size} bytes",
                quoted(map)
            ),
            FindingKind::MapValueOrNull { map } => write!(
                f,
                "invalid mem access 'map_value_or_null': the result of a lookup in map \
                 `{}` is dereferenced before it is checked against NULL",
                quoted(map)
            ),
            FindingKind::InnerMapAccess { map } => write!(
                f,
                "invalid mem access 'map_ptr': the result of a lookup in map of maps `{}` is \
                 a map, which a program passes to map helpers but does not dereference",
                quoted(map)
            ),
            FindingKind::OuterMapHelper { map, helper } => write!(
                f,
                "helper {helper} on map of maps `{}`: programs may only look maps of maps up",
                quoted(map)
            ),
            FindingKind::DivisionByZero => write!(f, "division or modulo by constant zero"),
            FindingKind::Policy { name, message } => write!(f, "{name}: {message}"),
        }
    }
}
