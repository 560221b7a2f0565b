//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/` (libFuzzer, nightly).
//!
//! - `--smoke [--time S]`: every target for `S` seconds (default 30), one after the other; fails
//!   on the first finding, naming the input libFuzzer saved. CI runs this.
//! - `--long TARGET [--time S] [--no-asan]`: one target for `S` seconds (default 3600); prints
//!   the executions and executions per second libFuzzer reports, for `docs/fuzzing.md`.
//!   `--no-asan` builds without AddressSanitizer (in its own target directory), which the long
//!   runs use: docs/fuzzing.md says what ASan checks here and why the long runs can do without.
//! - `--seeds`: rewrites the seed corpus `fuzz/seeds/` from the conformance vectors and the ELF
//!   fixtures (the `fuzz-seeds` binary of `ebpf-fuzz-checks`).
//!
//! Runs use `fuzz/corpus/<target>/` (not committed) as the working corpus and the committed
//! `fuzz/seeds/<target>/` as a read-only one; findings go to `fuzz/artifacts/<target>/`. The
//! targets are built in release mode with AddressSanitizer (`cargo fuzz`'s default), without
//! debug assertions (they make the Cranelift JIT verify its IR on every compile, several times
//! slower), and with coverage instrumentation for our crates only (`fuzz/rustc-wrapper.sh`). Needs the nightly toolchain and cargo-fuzz: `.ci/run` installs both.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The targets, in the order `--smoke` runs them (as `fuzz/Cargo.toml` lists them).
const TARGETS: [&str; 5] = ["isa", "elf", "verifier", "differential", "facade"];

/// How the targets are built: with AddressSanitizer (`cargo fuzz`'s default; the smoke run), or
/// without (`--long --no-asan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sanitizer {
    Address,
    None,
}

impl Sanitizer {
    /// `cargo fuzz --sanitizer`'s name for it.
    fn name(self) -> &'static str {
        match self {
            Sanitizer::Address => "address",
            Sanitizer::None => "none",
        }
    }

    /// The target directory of builds with this sanitizer (cargo would rebuild everything on
    /// each switch if they shared one).
    fn target_dir(self) -> &'static str {
        match self {
            Sanitizer::Address => "fuzz/target/xtask",
            Sanitizer::None => "fuzz/target/xtask-noasan",
        }
    }
}

/// What libFuzzer reported at the end of a run.
#[derive(Debug, Default)]
struct Stats {
    executions: u64,
    per_second: u64,
    peak_rss_mb: u64,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut time = None;
    let mut mode = None;
    let mut target = None;
    let mut sanitizer = Sanitizer::Address;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" | "--long" | "--seeds" => mode = Some(arg.as_str()),
            "--no-asan" => sanitizer = Sanitizer::None,
            "--time" => {
                let value = args.next().context("--time needs a number of seconds")?;
                time = Some(
                    value
                        .parse::<u64>()
                        .with_context(|| format!("--time: {value:?} is not a number"))?,
                );
            }
            name if TARGETS.contains(&name) => target = Some(name),
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if sanitizer != Sanitizer::Address && mode != Some("--long") {
        bail!("--no-asan is for --long runs (the smoke run keeps AddressSanitizer); {USAGE}");
    }
    match (mode, target) {
        (Some("--seeds"), None) => seeds(root),
        (Some("--smoke"), None) => {
            check_tools()?;
            build(root, sanitizer)?;
            let time = time.unwrap_or(30);
            let started = Instant::now();
            for target in TARGETS {
                let stats = fuzz(root, target, time, sanitizer)?;
                if stats.executions == 0 {
                    bail!(
                        "fuzz {target}: libFuzzer reported no executions: the smoke run proved nothing"
                    );
                }
                println!(
                    "fuzz {target}: {} executions in {time} s ({}/s), peak RSS {} MB, no finding",
                    stats.executions, stats.per_second, stats.peak_rss_mb
                );
            }
            println!(
                "fuzz --smoke: {} targets, no finding ({} s)",
                TARGETS.len(),
                started.elapsed().as_secs()
            );
            Ok(())
        }
        (Some("--long"), Some(target)) => {
            check_tools()?;
            build(root, sanitizer)?;
            let time = time.unwrap_or(3600);
            let stats = fuzz(root, target, time, sanitizer)?;
            println!(
                "fuzz {target} (sanitizer: {}): {} executions in {time} s ({}/s), peak RSS {} MB, \
                 no finding",
                sanitizer.name(),
                stats.executions,
                stats.per_second,
                stats.peak_rss_mb
            );
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

const USAGE: &str = "usage: cargo xtask fuzz --smoke [--time S] | --long TARGET [--time S] \
                     [--no-asan] | --seeds; targets: isa, elf, verifier, differential, facade";

/// Fails with what to install when the nightly toolchain or cargo-fuzz is missing.
fn check_tools() -> Result<()> {
    let ok = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&["+nightly", "--version"]) {
        bail!("no nightly toolchain: `rustup toolchain install nightly --profile minimal`");
    }
    if !ok(&["fuzz", "--version"]) {
        bail!("cargo-fuzz is not installed: `cargo install cargo-fuzz --locked`");
    }
    Ok(())
}

/// The `cargo +nightly fuzz` command with the build options every run uses.
fn cargo_fuzz(root: &Path, subcommand: &str, sanitizer: Sanitizer) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["+nightly", "fuzz", subcommand, "--release", "--sanitizer"])
        .arg(sanitizer.name())
        // Its own target directory: cargo does not notice a change of `RUSTC_WRAPPER`, so a
        // plain `cargo fuzz build` (everything instrumented) must not share artifacts with it.
        .arg("--target-dir")
        .arg(root.join(sanitizer.target_dir()))
        // Not the stable toolchain this xtask runs under.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        // Coverage instrumentation for our crates only (see the script).
        .env("RUSTC_WRAPPER", root.join("fuzz/rustc-wrapper.sh"))
        .env("CARGO_TERM_COLOR", "never");
    cmd
}

fn build(root: &Path, sanitizer: Sanitizer) -> Result<()> {
    println!(
        "==> building the fuzz targets (nightly, sanitizer: {})",
        sanitizer.name()
    );
    let status = cargo_fuzz(root, "build", sanitizer)
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed");
    }
    Ok(())
}

/// Runs one target for `seconds`; its libFuzzer log goes to `fuzz/target/logs/<target>.log`.
fn fuzz(root: &Path, target: &str, seconds: u64, sanitizer: Sanitizer) -> Result<Stats> {
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let logs = fuzz_dir.join("target/logs");
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    println!(
        "==> fuzz {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let status = cargo_fuzz(root, "run", sanitizer)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args([
            "-print_final_stats=1",
            // A slow input is a finding too (a hang), but the Cranelift JIT under ASan needs
            // some room on a loaded machine.
            "-timeout=20",
            "-rss_limit_mb=4096",
        ])
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running cargo fuzz run")?;
    let stats = read_stats(&log_path)?;
    if !status.success() {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz {target} found something (see {} and fuzz/artifacts/{target}/):\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    Ok(stats)
}

/// The `stat::` lines libFuzzer prints at the end (`-print_final_stats=1`).
fn read_stats(log: &Path) -> Result<Stats> {
    let file = File::open(log).with_context(|| format!("reading {}", log.display()))?;
    let mut stats = Stats::default();
    for line in BufReader::new(file).lines() {
        let line = line.unwrap_or_default();
        // `stat::number_of_executed_units: 166592`: the key has colons of its own.
        let Some((key, value)) = line.rsplit_once(':') else {
            continue;
        };
        let value = value.trim().parse().unwrap_or(0);
        match key.trim() {
            "stat::number_of_executed_units" => stats.executions = value,
            "stat::average_exec_per_sec" => stats.per_second = value,
            "stat::peak_rss_mb" => stats.peak_rss_mb = value,
            _ => {}
        }
    }
    Ok(stats)
}

/// `--seeds`: regenerates `fuzz/seeds/`.
fn seeds(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "-p",
            "ebpf-fuzz-checks",
            "--bin",
            "fuzz-seeds",
            "--",
        ])
        .arg(root.join("fuzz/seeds"))
        .status()
        .context("running fuzz-seeds")?;
    if !status.success() {
        bail!("fuzz-seeds failed");
    }
    Ok(())
}
