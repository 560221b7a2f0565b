//! What the CLI's integration tests share: a temporary directory per test, running the built
//! executables with stdin, and the assertions on exit status and output that every command's
//! error contract needs (one line on stderr, nothing on stdout, status 1; clap's status 2).

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, unique to this process and test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ebpf-cli-test-{}-{n}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// The names of the entries, sorted (to check that no temporary file is left behind).
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `exe ARGS` in `dir`, feeding `stdin`.
pub fn spawn(exe: &str, dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails early may close stdin before reading it all.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Runs `ebpf ARGS` in `dir`, feeding `stdin`.
pub fn ebpf_with_stdin(dir: &TempDir, args: &[&str], stdin: &[u8]) -> Output {
    spawn(env!("CARGO_BIN_EXE_ebpf"), dir.path(), args, stdin)
}

/// Runs `ebpf ARGS` in `dir` with empty stdin.
pub fn ebpf(dir: &TempDir, args: &[&str]) -> Output {
    ebpf_with_stdin(dir, args, b"")
}

/// Runs the plugin in the current directory with `args`, the program on stdin.
pub fn plugin(args: &[&str], stdin: &[u8]) -> Output {
    spawn(
        env!("CARGO_BIN_EXE_ebpf-conformance-plugin"),
        Path::new("."),
        args,
        stdin,
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Asserts success with nothing on stderr; returns stdout.
pub fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    assert_eq!(stderr(out), "");
    stdout(out)
}

/// Asserts exit status 1, nothing on stdout and exactly one line on stderr, which starts with
/// `prefix` and contains every one of `needles`; returns that line.
pub fn one_line_failure(out: &Output, prefix: &str, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    assert!(
        err.starts_with(prefix) && err.ends_with('\n') && err.lines().count() == 1,
        "not one {prefix:?} line: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{err:?} does not contain {needle:?}");
    }
    err
}

/// [`one_line_failure`] with an `error: ` line.
pub fn one_line_error(out: &Output, needles: &[&str]) -> String {
    one_line_failure(out, "error: ", needles)
}

/// Asserts exit status 2 (a usage error, reported by clap) mentioning every needle.
pub fn usage_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    for needle in needles {
        assert!(err.contains(needle), "{err:?} does not contain {needle:?}");
    }
}

/// The shipped example program, `examples/checksum.s`.
pub fn example_path() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/checksum.s");
    path.to_str().unwrap().to_string()
}
