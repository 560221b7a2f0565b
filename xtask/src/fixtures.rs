//! `cargo xtask fixtures`: rebuilds the ELF fixtures of `tests/elf/` and their expected results.
//!
//! For every `tests/elf/*.c` it
//! - compiles the BPF object(s) with Debian's clang-19 (`clang-19 -target bpf -c`, with the
//!   flags of the file's `// build:` lines; default `-O2 -mcpu=v3`). `// build NAME: FLAGS`
//!   adds a variant object `NAME.o` built from the same source;
//! - compiles the same source natively with gcc into `target/elf-fixtures/`, runs it on each
//!   input of the file's input set (`// inputs: SET` → `tests/elf/inputs/SET/*.hex`; default:
//!   the file's name), and records every program's result in `tests/elf/expected.txt`.
//!
//! `tests/elf/loops/*.c`, the looping programs the `loops` bench times against the same C built
//! natively, are fixtures too, the same way: objects `tests/elf/loops/NAME.o`, named
//! `loops/NAME` in `expected.txt`, their inputs under `tests/elf/inputs/loops/`.
//!
//! `tests/elf/unsupported/*.c` (kfuncs: they need a kernel) are compiled for BPF only.
//!
//! `tests/bpf/*.c`, the corpus of XDP and socket-filter programs written like real ones
//! (kernel contexts, maps, helpers, against the kernel's UAPI headers and libbpf's
//! `bpf_helpers.h` from Debian's `libbpf-dev`), are compiled for BPF only, with `-g` (their
//! maps are BTF-defined); the kernel is their oracle.
//!
//! The objects and `expected.txt` are committed, so the tests need no C compiler.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// How to install what this task needs (Debian 12).
const INSTALL: &str =
    "sudo apt-get update && sudo apt-get install -y clang-19 gcc libbpf-dev linux-libc-dev";

/// Flags of the corpus in `tests/bpf/` (the multiarch directory holds `asm/types.h`, which
/// the UAPI headers include).
const CORPUS_FLAGS: &str = "-O2 -g -mcpu=v3 -I/usr/include/x86_64-linux-gnu";

/// Flags used when a source has no `// build:` line.
const DEFAULT_FLAGS: &str = "-O2 -mcpu=v3";

/// One object to build from a source: its file stem and its clang flags.
#[derive(Debug, PartialEq, Eq)]
struct Build {
    stem: String,
    flags: Vec<String>,
}

/// What a fixture's leading `//` comment asks for.
#[derive(Debug, PartialEq, Eq)]
struct Directives {
    builds: Vec<Build>,
    inputs: String,
}

/// Reads the `// build:`, `// build NAME:` and `// inputs:` lines of a fixture's header.
fn directives(stem: &str, source: &str) -> Directives {
    let mut builds = Vec::new();
    let mut inputs = stem.to_string();
    for line in source.lines() {
        let Some(comment) = line.trim().strip_prefix("//") else {
            break;
        };
        let comment = comment.trim();
        if let Some(set) = comment.strip_prefix("inputs:") {
            inputs = set.trim().to_string();
        } else if let Some(rest) = comment.strip_prefix("build") {
            let Some((name, flags)) = rest.split_once(':') else {
                continue;
            };
            let name = name.trim();
            builds.push(Build {
                stem: if name.is_empty() {
                    stem.to_string()
                } else {
                    name.to_string()
                },
                flags: flags.split_whitespace().map(str::to_string).collect(),
            });
        }
    }
    if !builds.iter().any(|b| b.stem == stem) {
        let flags = DEFAULT_FLAGS
            .split_whitespace()
            .map(str::to_string)
            .collect();
        builds.insert(
            0,
            Build {
                stem: stem.to_string(),
                flags,
            },
        );
    }
    Directives { builds, inputs }
}

/// Parses a `.hex` input: whitespace-separated two-digit hex bytes, `#` comments.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for token in line.split_whitespace() {
            if token.len() != 2 {
                bail!("line {}: `{token}` is not a two-digit hex byte", n + 1);
            }
            let b = u8::from_str_radix(token, 16)
                .with_context(|| format!("line {}: `{token}` is not hex", n + 1))?;
            bytes.push(b);
        }
    }
    Ok(bytes)
}

/// Runs a command, echoing it; fails with its stderr if it fails. Returns its stdout.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    println!("  {shown}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `clang-19` on `PATH`, else LLVM 19's own directory.
fn find_clang() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("clang-19"),
        PathBuf::from("/usr/lib/llvm-19/bin/clang"),
    ];
    for c in candidates {
        let ok = Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(c);
        }
    }
    bail!(
        "clang-19 not found (neither `clang-19` on PATH nor /usr/lib/llvm-19/bin/clang); install it with:\n  {INSTALL}"
    )
}

fn find_gcc() -> Result<PathBuf> {
    for c in ["gcc", "cc"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(PathBuf::from(c));
        }
    }
    bail!("no native C compiler (gcc) found; install it with:\n  {INSTALL}")
}

/// The `.c` files of a directory, sorted.
fn sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "c") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Compiles `source` for BPF into `dir/<build.stem>.o` (run in `dir` with relative paths, and
/// the debug prefix mapped, so that the objects do not depend on where the workspace is).
fn compile_bpf(clang: &Path, dir: &Path, source: &Path, build: &Build) -> Result<()> {
    let file = source.file_name().context("source without a name")?;
    let mut cmd = Command::new(clang);
    cmd.current_dir(dir)
        .args(["-target", "bpf"])
        .args(&build.flags)
        .arg("-Wall")
        .arg(format!("-fdebug-prefix-map={}=.", dir.display()))
        .arg("-c")
        .arg(file)
        .arg("-o")
        .arg(format!("{}.o", build.stem));
    run(&mut cmd)?;
    Ok(())
}

/// Rebuilds every fixture and `tests/elf/expected.txt`.
pub(crate) fn run_fixtures(root: &Path) -> Result<()> {
    let clang = find_clang()?;
    let gcc = find_gcc()?;
    let dir = root.join("tests/elf");
    let out = root.join("target/elf-fixtures");
    fs::create_dir_all(out.join("inputs")).context("creating target/elf-fixtures")?;
    let mut expected = String::from(
        "# Written by `cargo xtask fixtures`; do not edit.\n\
         # Each line: object (tests/elf/<object>.o), program (function), input\n\
         # (tests/elf/inputs/<input>.hex), and the program's result on that input when the same\n\
         # C source is compiled natively with gcc and run.\n",
    );
    let fixtures = sources(&dir)?;
    if fixtures.is_empty() {
        bail!("no fixtures in {}", dir.display());
    }
    for source in &fixtures {
        build_fixture(&clang, &gcc, &dir, "", source, &out, &mut expected)?;
    }
    let loops = dir.join("loops");
    for source in &sources(&loops)? {
        build_fixture(&clang, &gcc, &loops, "loops/", source, &out, &mut expected)?;
    }
    let unsupported = dir.join("unsupported");
    for source in sources(&unsupported)? {
        let stem = stem_of(&source);
        println!("unsupported/{stem}:");
        let text = fs::read_to_string(&source)?;
        for build in &directives(&stem, &text).builds {
            compile_bpf(&clang, &unsupported, &source, build)?;
        }
    }
    let corpus = root.join("tests/bpf");
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        bail!(
            "libbpf's headers are missing (tests/bpf needs them); install them with:\n  {INSTALL}"
        );
    }
    // The corpus.
    for source in sources(&corpus)? {
        let stem = stem_of(&source);
        println!("bpf/{stem}:");
        let build = Build {
            stem,
            flags: CORPUS_FLAGS
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        };
        compile_bpf(&clang, &corpus, &source, &build)?;
    }
    fs::write(dir.join("expected.txt"), expected).context("writing tests/elf/expected.txt")?;
    println!("fixtures: wrote tests/elf/*.o and tests/elf/expected.txt");
    Ok(())
}

/// Builds one fixture of `dir` (its BPF objects, and its native binary under `out`), runs the
/// native binary on each of its inputs and appends the results to `expected`, each object
/// named `<prefix><stem>` (its path under `tests/elf/` without `.o`).
fn build_fixture(
    clang: &Path,
    gcc: &Path,
    dir: &Path,
    prefix: &str,
    source: &Path,
    out: &Path,
    expected: &mut String,
) -> Result<()> {
    let stem = stem_of(source);
    println!("{prefix}{stem}:");
    let text =
        fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let d = directives(&stem, &text);
    for build in &d.builds {
        compile_bpf(clang, dir, source, build)?;
    }
    let native_dir = out.join(prefix);
    fs::create_dir_all(&native_dir)?;
    let native = native_dir.join(&stem);
    run(Command::new(gcc)
        .args(["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror"])
        .arg("-o")
        .arg(&native)
        .arg(source))?;
    let programs: Vec<String> = run(Command::new(&native).arg("--list"))?
        .lines()
        .map(str::to_string)
        .collect();
    let elf_dir = if prefix.is_empty() {
        dir.to_path_buf()
    } else {
        dir.parent()
            .context("a fixture subdirectory without a parent")?
            .to_path_buf()
    };
    let inputs = sources_with_ext(&elf_dir.join("inputs").join(&d.inputs), "hex")?;
    if inputs.is_empty() {
        bail!("{stem}: no inputs in tests/elf/inputs/{}/", d.inputs);
    }
    let bin_dir = out.join("inputs").join(&d.inputs);
    fs::create_dir_all(&bin_dir)?;
    let mut results = Vec::new();
    for program in &programs {
        for input in &inputs {
            let case = stem_of(input);
            let bytes = parse_hex(&fs::read_to_string(input)?)
                .with_context(|| format!("{}", input.display()))?;
            let bin = bin_dir.join(format!("{case}.bin"));
            fs::write(&bin, &bytes)?;
            let result = run(Command::new(&native).arg(program).arg(&bin))?;
            results.push(format!("{program} {}/{case} {}", d.inputs, result.trim()));
        }
    }
    // Every object built from the source must give the native results.
    for build in &d.builds {
        for line in &results {
            writeln!(expected, "{prefix}{} {line}", build.stem)?;
        }
    }
    Ok(())
}

/// Files of `dir` with extension `ext`, sorted.
fn sources_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_default_and_variants() {
        let d = directives(
            "calls",
            "// build: -O2 -mcpu=v3\n// build calls_O0: -O0 -mcpu=v1\n// inputs: calls\n#include <x>\n// build: ignored\n",
        );
        assert_eq!(d.inputs, "calls");
        assert_eq!(d.builds.len(), 2);
        assert_eq!(
            d.builds[0],
            Build {
                stem: "calls".into(),
                flags: vec!["-O2".into(), "-mcpu=v3".into()]
            }
        );
        assert_eq!(d.builds[1].stem, "calls_O0");
        let d = directives("plain", "// just a comment\nint x;\n");
        assert_eq!(d.inputs, "plain");
        assert_eq!(
            d.builds,
            vec![Build {
                stem: "plain".into(),
                flags: vec!["-O2".into(), "-mcpu=v3".into()]
            }]
        );
    }

    #[test]
    fn hex_inputs_parse_with_comments() {
        assert_eq!(
            parse_hex("# header\n00 ff # trailing\n\n1a\n").unwrap(),
            vec![0, 0xff, 0x1a]
        );
        assert!(parse_hex("0g").is_err());
        assert!(parse_hex("123").is_err());
    }

    #[test]
    fn every_fixture_has_its_object_and_expectations() {
        let root = crate::tidy::workspace_root().join("tests/elf");
        let expected = fs::read_to_string(root.join("expected.txt")).unwrap();
        let mut loops = 0;
        for (dir, prefix) in [(root.clone(), ""), (root.join("loops"), "loops/")] {
            for source in sources(&dir).unwrap() {
                let stem = stem_of(&source);
                let text = fs::read_to_string(&source).unwrap();
                for build in directives(&stem, &text).builds {
                    let object = format!("{prefix}{}", build.stem);
                    assert!(
                        root.join(format!("{object}.o")).exists(),
                        "{object}.o missing: run `cargo xtask fixtures`"
                    );
                    let line = format!("{object} ");
                    assert!(
                        expected.lines().any(|l| l.starts_with(&line)),
                        "expected.txt has no line for {object}"
                    );
                    loops += usize::from(!prefix.is_empty());
                }
            }
        }
        assert!(loops >= 8, "only {loops} loop programs");
    }
}
