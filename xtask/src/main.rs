//! `cargo xtask`: project automation that is code, not shell (matklad's xtask pattern).
//!
//! Subcommands:
//! - `tidy`: the checks of `tidy.rs` (crate graph, `//!` headers); they also run as tests.
//! - `fixtures`: rebuilds the ELF fixtures of `tests/elf/` with clang-19 and gcc (`fixtures.rs`).
//!
//! xtask uses only std and anyhow, so it builds in seconds.

mod fixtures;
mod tidy;

use std::process::ExitCode;

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
        Some(other) => bail!("unknown task `{other}`; tasks: tidy, fixtures"),
        None => bail!("usage: cargo xtask <task>; tasks: tidy, fixtures"),
    }
}
