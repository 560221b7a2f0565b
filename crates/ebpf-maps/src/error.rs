//! [`MapError`]: why a map operation failed, with the errno the kernel gives for it.

use std::fmt;

use crate::MapType;

/// Why a map could not be created, or an operation on it failed.
///
/// Helpers return these to programs as the kernel does, as a negative errno
/// ([`MapError::errno`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// The key has the wrong length.
    KeySize {
        /// The map's key size.
        expected: u32,
        /// The length given.
        got: usize,
    },
    /// The value has the wrong length.
    ValueSize {
        /// The length the operation needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// No element has the key (or the queue is empty): `ENOENT`.
    NotFound,
    /// `BPF_NOEXIST` and the key exists: `EEXIST`.
    Exists,
    /// The map is full (or the index is past its end): `E2BIG`.
    Full,
    /// Flags the operation does not accept: `EINVAL`.
    InvalidFlags {
        /// The flags given.
        flags: u64,
    },
    /// The operation does not apply to this map type (deleting from an array, looking up in
    /// a queue, …): `EINVAL`, or `ENOTSUPP` where the kernel says so.
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The map's type.
        map_type: MapType,
    },
    /// A value the map's type does not take (a devmap hash entry for interface 0, a cpumap
    /// entry for a CPU the maps do not have, …): `EINVAL`.
    InvalidValue {
        /// Why.
        reason: String,
    },
    /// The spec cannot make a map (zero entries, a key size the type forbids, a ring buffer
    /// size that is not a power of two, …): `EINVAL`.
    BadSpec {
        /// What is wrong.
        reason: String,
    },
    /// The map would need more memory than this crate allocates for one map
    /// ([`crate::Map::MAX_BYTES`]): `ENOMEM`.
    TooLarge {
        /// The bytes it would need.
        bytes: u64,
    },
    /// A map of this type exists in the kernel, but not here.
    UnsupportedType(MapType),
    /// The map is frozen ([`crate::Map::freeze`]: an object's `.rodata`) and cannot be
    /// changed: `EPERM`.
    Frozen,
}

impl MapError {
    /// The kernel's errno for this error (positive; helpers return its negation).
    pub fn errno(&self) -> i32 {
        const EPERM: i32 = 1;
        const ENOENT: i32 = 2;
        const E2BIG: i32 = 7;
        const ENOMEM: i32 = 12;
        const EEXIST: i32 = 17;
        const EINVAL: i32 = 22;
        const ENOTSUPP: i32 = 524;
        match self {
            MapError::NotFound => ENOENT,
            MapError::Exists => EEXIST,
            MapError::Full => E2BIG,
            MapError::TooLarge { .. } => ENOMEM,
            MapError::UnsupportedType(_) => ENOTSUPP,
            MapError::Frozen => EPERM,
            MapError::KeySize { .. }
            | MapError::ValueSize { .. }
            | MapError::InvalidFlags { .. }
            | MapError::Unsupported { .. }
            | MapError::InvalidValue { .. }
            | MapError::BadSpec { .. } => EINVAL,
        }
    }

    /// The value a helper returns for this error: `-errno` as a 64-bit register.
    pub fn helper_result(&self) -> u64 {
        i64::from(-self.errno()) as u64
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::KeySize { expected, got } => {
                write!(f, "key of {got} bytes, the map's keys have {expected}")
            }
            MapError::ValueSize { expected, got } => {
                write!(f, "value of {got} bytes, the operation needs {expected}")
            }
            MapError::NotFound => f.write_str("no such element"),
            MapError::Exists => f.write_str("the element exists (BPF_NOEXIST)"),
            MapError::Full => f.write_str("the map is full"),
            MapError::InvalidFlags { flags } => write!(f, "invalid flags {flags:#x}"),
            MapError::Unsupported { op, map_type } => {
                write!(f, "{op} is not supported on a {map_type} map")
            }
            MapError::InvalidValue { reason } => write!(f, "invalid value: {reason}"),
            MapError::BadSpec { reason } => write!(f, "invalid map definition: {reason}"),
            MapError::TooLarge { bytes } => write!(
                f,
                "the map needs {bytes} bytes, more than the {} a map may have",
                crate::Map::MAX_BYTES
            ),
            MapError::UnsupportedType(t) => {
                write!(f, "map type {t} needs a kernel and is not supported")
            }
            MapError::Frozen => f.write_str("the map is frozen (read-only)"),
        }
    }
}

impl std::error::Error for MapError {}
