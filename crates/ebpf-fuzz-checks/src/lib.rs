//! `ebpf-fuzz-checks`: what each fuzz target checks, as ordinary functions.
//!
//! What it is for: the check logic of the cargo-fuzz targets in `fuzz/` (which are thin
//! wrappers around [`check`]), so that a plain `cargo test` — stable toolchain, no libFuzzer —
//! replays the committed seed corpus and every regression input through exactly the same
//! code, and so that tests elsewhere can drive every engine directly ([`engines`]).
//!
//! What it is not for: production code (nothing depends on it but tests and the fuzz crate),
//! or generating inputs for property tests (that is `ebpf-testgen`, which the targets reuse).

#![forbid(unsafe_code)]

pub mod engines;

use std::fmt;

/// Something a fuzz target found: a disagreement, a broken promise, an unprintable message.
/// The fuzz targets panic with it, which is how libFuzzer learns of a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    what: String,
}

impl Finding {
    /// A finding described by `what`.
    pub fn new(what: impl Into<String>) -> Finding {
        Finding { what: what.into() }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Finding {}
