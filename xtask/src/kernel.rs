//! `cargo xtask kernel-diff [ARGS...]`: the running Linux kernel as a second oracle. The work
//! is the `kernel-diff` binary of `crates/ebpf-kernel-diff` (xtask depends on no workspace
//! crate); this builds and runs it and passes the arguments on (`--generated N`, `--seed S`,
//! `--set NAME`, `--verbose`). Its exit status is the task's.
//!
//! It builds with the `test` profile (opt-level 1), not `--release`: after
//! `cargo test --workspace` every dependency, Cranelift included, is already built that way,
//! so CI compiles only the tool (seconds) instead of a release Cranelift (minutes on two
//! cores); opt-level 1 runs the thousands of programs fast enough.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "run",
            "--profile",
            "test",
            "-p",
            "ebpf-kernel-diff",
            "--bin",
            "kernel-diff",
            "--",
        ])
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("kernel-diff failed ({status})");
    }
    Ok(())
}
