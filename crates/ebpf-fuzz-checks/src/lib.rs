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
pub mod generate;
pub mod recent;
pub mod seeds;
pub mod targets;

use std::fmt;

/// The fuzz targets: each is `fuzz/fuzz_targets/<name>.rs`, a wrapper around [`Target::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Decoding, encoding, assembling and disassembling ([`targets::isa`]).
    Isa,
    /// The ELF loader ([`targets::elf`]).
    Elf,
    /// The verifier's promises at run time ([`targets::verifier`]).
    Verifier,
    /// Interpreter, x86 JIT and Cranelift JIT on one program ([`targets::differential`]).
    Differential,
    /// The facade on raw bytes, every engine ([`targets::facade`]).
    Facade,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::Isa,
        Target::Elf,
        Target::Verifier,
        Target::Differential,
        Target::Facade,
    ];

    /// The target's name: its file in `fuzz/fuzz_targets/`, its corpus and regression folders.
    pub fn name(self) -> &'static str {
        match self {
            Target::Isa => "isa",
            Target::Elf => "elf",
            Target::Verifier => "verifier",
            Target::Differential => "differential",
            Target::Facade => "facade",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Checks one input: `Err` is a finding.
    pub fn check(self, data: &[u8]) -> Result<(), Finding> {
        match self {
            Target::Isa => targets::isa(data),
            Target::Elf => targets::elf(data),
            Target::Verifier => targets::verifier(data),
            Target::Differential => targets::differential(data),
            Target::Facade => targets::facade(data),
        }
    }
}

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
