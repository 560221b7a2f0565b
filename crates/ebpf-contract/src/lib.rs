//! `ebpf-contract`: the runtime contract as data, and the one place every engine's tests run it.
//!
//! What it is for (tests only; `publish = false`):
//!
//! - **the contract cases**, `tests/contract/*.txt` at the workspace root (format:
//!   `tests/contract/README.md`): each [`Case`] is a program in conformance assembly, the memory
//!   it runs on, the VM configuration and the exact outcome — `r0` and the instruction count,
//!   or the trap with its kind (every field) and pc — plus memory after the run. [`cases`]
//!   reads them; [`check_engine`] runs every case on an engine given as a closure with the
//!   signature of `Interpreter::run` ([`RawEngine`]), building each run's regions and entry
//!   registers as the contract says ([`Case::run_raw`]), and reports every failure at once;
//!   [`bless`] rewrites expectations from the interpreter (`EBPF_BLESS=1`). The facade's tests
//!   run the same cases through `Vm` on every engine with [`Case::check`];
//! - **the conformance runner**, [`conformance::check_suite`]: the 313 bpf_conformance programs
//!   on one engine, the count and budget stated once;
//! - **the differential harness**, [`differential`]: a program on the interpreter and on a JIT
//!   over identical memory, compared on `r0`, trap, count, input/data memory and the stack, and
//!   the generated program families every JIT is checked on.
//!
//! What it is not for: production code, or knowing any engine. It depends on `ebpf-abi`,
//! `ebpf-isa` and `ebpf-testdata` only; engines come in as closures, so every engine crate can
//! use it in its tests without a dependency cycle.

#![forbid(unsafe_code)]

mod case;
pub mod conformance;
pub mod differential;
mod format;
mod helpers;
mod runner;

pub use case::{Case, Config, Expect, Mem, Meta, Outcome, RawEngine, RunRegion, engine};
pub use helpers::{
    FAIL_MESSAGE, H_ECHO, H_FAIL, H_MIX, H_READ64, H_SUM, H_SUM_BYTES, H_WRITE64, HELPERS, helpers,
};
pub use runner::{bless, blessing, cases, cases_dir, check_engine, place};
