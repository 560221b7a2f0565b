//! `cargo xtask test-cross [--arch aarch64|riscv64|s390x ...]`: the interpreter's and the
//! Cranelift JIT's test suites (conformance included) on foreign architectures under QEMU user
//! emulation, plus the ahead-of-time object path for each.
//!
//! For each architecture it
//! 1. checks the tools (`qemu-<arch>`, Debian's cross gcc and its sysroot) and prints the exact
//!    `apt-get install` line when something is missing;
//! 2. adds the Rust target with `rustup target add` if needed;
//! 3. runs `cargo test --target <triple> -p ebpf-interp -p ebpf-jit-cranelift --tests` with the
//!    cross gcc as linker and `qemu-<arch> -L /usr/<gnu triple>` as runner, baseline ISA flags
//!    for the JIT (`EBPF_JIT_ISA_FLAGS=baseline`, so nothing depends on what the emulated CPU
//!    reports), and fewer proptest cases (`PROPTEST_CASES`, default 64 here);
//! 4. runs the object test on the host for that target: every conformance program compiled
//!    into one object, linked with `crates/ebpf-jit-cranelift/c/harness.c` by the cross gcc,
//!    run under QEMU and compared with the interpreter.
//!
//! It prints how long each step took.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One foreign architecture.
struct Arch {
    /// Name for `--arch`.
    name: &'static str,
    /// Rust target triple.
    triple: &'static str,
    /// GNU triple: prefix of the cross tools and name of the sysroot under `/usr`.
    gnu: &'static str,
    /// QEMU user-mode emulator.
    qemu: &'static str,
    /// Debian packages with the cross compiler and libc.
    packages: &'static [&'static str],
}

const ARCHES: &[Arch] = &[
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        gnu: "aarch64-linux-gnu",
        qemu: "qemu-aarch64",
        packages: &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
    },
    Arch {
        name: "riscv64",
        triple: "riscv64gc-unknown-linux-gnu",
        gnu: "riscv64-linux-gnu",
        qemu: "qemu-riscv64",
        packages: &["gcc-riscv64-linux-gnu", "libc6-dev-riscv64-cross"],
    },
    Arch {
        name: "s390x",
        triple: "s390x-unknown-linux-gnu",
        gnu: "s390x-linux-gnu",
        qemu: "qemu-s390x",
        packages: &["gcc-s390x-linux-gnu", "libc6-dev-s390x-cross"],
    },
];

/// Parses `--arch A [--arch B …]` (also `--arch A,B`); no flag: every architecture.
fn parse_arches(args: &[String]) -> Result<Vec<&'static Arch>> {
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--arch=") {
            Some(v) => v.to_string(),
            None if arg == "--arch" => it.next().context("--arch needs a value")?.clone(),
            None => bail!(
                "unknown argument `{arg}`; usage: cargo xtask test-cross [--arch aarch64|riscv64|s390x ...]"
            ),
        };
        names.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    if names.is_empty() {
        return Ok(ARCHES.iter().collect());
    }
    let mut out = Vec::new();
    for name in names {
        let arch = ARCHES.iter().find(|a| a.name == name).with_context(|| {
            format!("unknown architecture `{name}`; known: aarch64, riscv64, s390x")
        })?;
        if !out.iter().any(|a: &&Arch| a.name == arch.name) {
            out.push(arch);
        }
    }
    Ok(out)
}

/// Whether `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What is missing for `arches`, as Debian packages.
fn missing_packages(arches: &[&Arch]) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for arch in arches {
        if !on_path(arch.qemu) && !missing.contains(&"qemu-user") {
            missing.push("qemu-user");
        }
        let gcc = format!("{}-gcc", arch.gnu);
        let sysroot = Path::new("/usr").join(arch.gnu).join("include/stdio.h");
        if !on_path(&gcc) || !sysroot.is_file() {
            missing.extend(arch.packages);
        }
    }
    missing
}

/// Makes sure the Rust standard library for `triple` is installed.
fn ensure_rust_target(triple: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running `rustup target list --installed` (is rustup installed?)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == triple)
    {
        return Ok(());
    }
    println!("test-cross: rustup target add {triple}");
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup target add {triple}` failed; run it by hand");
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn run_step(what: &str, cmd: &mut Command) -> Result<f64> {
    println!("test-cross: {what}");
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{what}: failed ({status}) after {secs:.0} s");
    }
    println!("test-cross: {what}: ok in {secs:.0} s");
    Ok(secs)
}

/// Runs the task; `args` are the arguments after `test-cross`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let arches = parse_arches(args)?;
    let missing = missing_packages(&arches);
    if !missing.is_empty() {
        bail!(
            "missing cross tools; install them with:\n    sudo apt-get update && sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    let total = Instant::now();
    let proptest_cases = std::env::var("PROPTEST_CASES").unwrap_or_else(|_| "64".to_string());
    let mut report = Vec::new();
    for arch in arches {
        ensure_rust_target(arch.triple)?;
        let env_triple = arch.triple.to_uppercase().replace('-', "_");
        let gcc = format!("{}-gcc", arch.gnu);
        let runner = format!("{} -L /usr/{}", arch.qemu, arch.gnu);

        let mut tests = Command::new(cargo());
        tests
            .current_dir(root)
            .args(["test", "--target", arch.triple])
            .args(["-p", "ebpf-interp", "-p", "ebpf-jit-cranelift", "--tests"])
            .env(format!("CARGO_TARGET_{env_triple}_LINKER"), &gcc)
            .env(format!("CARGO_TARGET_{env_triple}_RUNNER"), &runner)
            .env("EBPF_JIT_ISA_FLAGS", "baseline")
            .env("EBPF_CROSS_EMULATED", "1")
            .env("PROPTEST_CASES", &proptest_cases);
        let t_tests = run_step(
            &format!("{}: test suites under {}", arch.name, arch.qemu),
            &mut tests,
        )?;

        let mut objects = Command::new(cargo());
        objects
            .current_dir(root)
            .args(["test", "-p", "ebpf-jit-cranelift", "--test", "object"])
            .env("EBPF_OBJECT_TARGET", arch.triple)
            .env("EBPF_OBJECT_CC", &gcc)
            .env("EBPF_OBJECT_RUNNER", &runner)
            .env("EBPF_JIT_ISA_FLAGS", "baseline")
            .env_remove("EBPF_CROSS_EMULATED");
        let t_objects = run_step(
            &format!("{}: conformance objects linked by {gcc}", arch.name),
            &mut objects,
        )?;
        report.push(format!(
            "{:<8} tests {t_tests:>5.0} s, objects {t_objects:>4.0} s",
            arch.name
        ));
    }
    println!(
        "test-cross: all passed in {:.0} s",
        total.elapsed().as_secs_f64()
    );
    for line in report {
        println!("  {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_arguments() {
        let all = parse_arches(&[]).unwrap();
        assert_eq!(all.len(), 3);
        let args: Vec<String> = ["--arch", "s390x", "--arch=aarch64,s390x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let some = parse_arches(&args).unwrap();
        assert_eq!(
            some.iter().map(|a| a.name).collect::<Vec<_>>(),
            ["s390x", "aarch64"]
        );
        assert!(parse_arches(&["--arch".to_string(), "mips".to_string()]).is_err());
        assert!(parse_arches(&["--fast".to_string()]).is_err());
    }
}
