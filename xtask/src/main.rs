//! `cargo xtask`: project automation that is code, not shell (matklad's xtask pattern).
//!
//! Subcommands:
//! - `tidy`: the checks of `tidy.rs` (crate graph, `//!` headers); they also run as tests.
//! - `fixtures`: rebuilds the ELF fixtures of `tests/elf/` with clang-19 and gcc (`fixtures.rs`).
//! - `test-cross [--arch aarch64|riscv64|s390x ...]`: the interpreter's and the Cranelift JIT's
//!   tests under QEMU, and AOT objects linked by cross gcc (`cross.rs`).
//! - `fuzz --smoke | --long TARGET | --seeds`: the cargo-fuzz targets of `fuzz/` (`fuzz.rs`).
//! - `kernel-diff [ARGS...]`: the same programs on the Linux kernel and on every engine
//!   (`kernel.rs`, which runs `crates/ebpf-kernel-diff`).
//!
//! xtask uses only std and anyhow, so it builds in seconds.

mod cross;
mod fixtures;
mod fuzz;
mod json;
mod kernel;
mod tidy;

use std::process::ExitCode;

/// The tasks, as usage messages list them.
const TASKS: &str = "tidy, fixtures, test-cross, kernel-diff, fuzz";

use anyhow::{Result, bail};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("tidy") => {
            tidy::run(&tidy::workspace_root())?;
            println!("tidy: ok");
            Ok(())
        }
        Some("fixtures") => fixtures::run_fixtures(&tidy::workspace_root()),
        Some("test-cross") => cross::run(&tidy::workspace_root(), &args[1..]),
        Some("fuzz") => fuzz::run(&tidy::workspace_root(), &args[1..]),
        Some("kernel-diff") => kernel::run(&tidy::workspace_root(), &args[1..]),
        Some(other) => bail!("unknown task `{other}`; tasks: {TASKS}"),
        None => bail!("usage: cargo xtask <task>; tasks: {TASKS}"),
    }
}
