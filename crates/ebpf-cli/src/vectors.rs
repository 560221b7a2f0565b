//! `ebpf test`: runs `.data` test vectors (the bpf_conformance format) and reports, per file,
//! `PASS name`, `FAIL name: why` or `SKIP name: why`, then `N passed, N failed[, N skipped]`.
//!
//! A vector passes when its program's `r0` equals `-- result`, or, for a vector with an
//! `-- error` section, when loading or running it fails (the expected text is shown but not
//! compared yet: our messages are not the upstream tools'). It is skipped, as the upstream
//! runner skips it, when it has no program, no expected outcome, or an unknown `--` directive.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ebpf_cli::{MAX_PROGRAM_FILE, read_path_bounded, vector_mem, vector_program, vm_builder};
use ebpf_testdata::TestVector;
use ebpf_vm::Engine;
use ebpf_vm::isa::quoted;

/// How one vector fared.
#[derive(Debug)]
enum Outcome {
    /// It passed; with a remark when an expected error's text was not compared.
    Pass(Option<String>),
    /// It failed, and why.
    Fail(String),
    /// It was not run, and why.
    Skip(String),
}

/// `ebpf test FILES…`.
pub(crate) fn test(files: &[PathBuf], engine: Engine, budget: u64) -> Result<()> {
    let mut paths = Vec::new();
    for path in files {
        if path.is_dir() {
            let found = ebpf_testdata::data_files(path).map_err(|e| anyhow!(e))?;
            if found.is_empty() {
                bail!(
                    "{}: no .data files in this directory",
                    ebpf_cli::quote_path(path)
                );
            }
            paths.extend(found);
        } else {
            paths.push(path.clone());
        }
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut out = io::stdout().lock();
    for path in &paths {
        let stem = path.file_stem().unwrap_or(path.as_os_str());
        let name = ebpf_cli::quote_path(Path::new(stem));
        let line = match check(path, engine, budget) {
            Outcome::Pass(None) => {
                passed += 1;
                format!("PASS {name}")
            }
            Outcome::Pass(Some(remark)) => {
                passed += 1;
                format!("PASS {name}: {remark}")
            }
            Outcome::Fail(why) => {
                failed += 1;
                format!("FAIL {name}: {why}")
            }
            Outcome::Skip(why) => {
                skipped += 1;
                format!("SKIP {name}: {why}")
            }
        };
        writeln!(out, "{line}").context("<stdout>: cannot write")?;
    }
    let mut summary = format!("{passed} passed, {failed} failed");
    if skipped > 0 {
        // Writing to a String cannot fail.
        let _ = write!(summary, ", {skipped} skipped");
    }
    writeln!(out, "{summary}")
        .and_then(|()| out.flush())
        .context("<stdout>: cannot write")?;
    if failed > 0 {
        bail!("{failed} of {} test vectors failed", passed + failed);
    }
    Ok(())
}

/// Reads, runs and judges one vector.
fn check(path: &Path, engine: Engine, budget: u64) -> Outcome {
    let text = match read_path_bounded(path, MAX_PROGRAM_FILE, "test vector") {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => return Outcome::Fail("not valid UTF-8".to_string()),
        },
        Err(e) => return Outcome::Fail(e),
    };
    let vector = match ebpf_testdata::parse(&text) {
        Ok(v) => v,
        // The upstream runner skips a file with a directive it does not know.
        Err(e) if e.message.starts_with("unknown directive") => {
            return Outcome::Skip(e.to_string());
        }
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    if !vector.has_program() {
        return Outcome::Skip("no program (no `-- asm` or `-- raw` instructions)".to_string());
    }
    let outcome = execute(&vector, engine, budget);
    match (&vector.error, vector.result) {
        (Some(expected), _) => match outcome {
            Err(_) if expected.is_empty() => Outcome::Pass(None),
            Err(got) => Outcome::Pass(Some(format!(
                "failed as expected: {got} (expected error: {})",
                quoted(expected)
            ))),
            Ok(r0) if expected.is_empty() => {
                Outcome::Fail(format!("got {r0:#x}, expected an error"))
            }
            Ok(r0) => Outcome::Fail(format!("got {r0:#x}, expected error: {}", quoted(expected))),
        },
        (None, Some(want)) => match outcome {
            Ok(r0) if r0 == want => Outcome::Pass(None),
            Ok(r0) => Outcome::Fail(format!("got {r0:#x}, expected {want:#x}")),
            Err(why) => Outcome::Fail(why),
        },
        (None, None) => Outcome::Skip("no `-- result` or `-- error` to compare with".to_string()),
    }
}

/// Loads and runs a vector's program on its memory: `r0`, or the load error or trap.
fn execute(vector: &TestVector, engine: Engine, budget: u64) -> Result<u64, String> {
    let program = vector_program(vector)?;
    let vm = vm_builder(engine, budget)
        .load_program(program)
        .map_err(|e| e.to_string())?;
    let result = match vector_mem(vector) {
        Some(mut mem) => vm.run(&mut mem),
        None => vm.run_no_data(),
    };
    result.map_err(|trap| trap.to_string())
}
