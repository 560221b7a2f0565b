//! `ebpf-testdata`: the reader for `.data` test vectors, the format of the bpf_conformance
//! suite (its README §4), shared by every engine's tests and by `ebpf test`.
//!
//! What it is for: splitting a vector into its sections — assembly lines with their line
//! numbers, raw bytecode, input memory, expected `r0` or error — and finding the suite on disk
//! (`$EBPF_CONFORMANCE_DIR`, else `../shared/conformance/bpf_conformance` beside the workspace).
//! What it is not for: assembling or running anything. It depends on no other crate, so any
//! crate may use it in its tests, including `ebpf-isa`, whose assembler turns the `asm` lines
//! into a program.

use std::fmt;
use std::path::{Path, PathBuf};

/// The sections of one `.data` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestVector {
    /// `-- asm` lines with their 1-based line numbers in the file, comments removed, blank
    /// lines dropped.
    pub asm: Vec<(usize, String)>,
    /// `-- raw` bytecode, if the file has that section (it then replaces `asm`).
    pub raw: Option<Vec<u8>>,
    /// `-- mem` bytes, if the file has that section.
    pub mem: Option<Vec<u8>>,
    /// `-- result`: the expected 64-bit `r0`.
    pub result: Option<u64>,
    /// `-- error`: the expected error text (empty: "must be rejected", as in `negative/unused-*`).
    pub error: Option<String>,
}

impl TestVector {
    /// Whether the file has a program at all.
    pub fn has_program(&self) -> bool {
        !self.asm.is_empty() || self.raw.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// The `asm` lines as `(line, text)` pairs borrowed from the vector.
    pub fn asm_lines(&self) -> Vec<(usize, &str)> {
        self.asm.iter().map(|(n, l)| (*n, l.as_str())).collect()
    }
}

/// Why a `.data` file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Asm,
    Result,
    Mem,
    Raw,
    Ignored,
    Error,
}

/// Parses the text of a `.data` file, following the upstream reader's rules: `#` starts a
/// comment anywhere, a line containing `--` starts a section chosen by substring (`asm`,
/// `result`, `mem`, `raw`, `no register offset`, ` c`, `error`, in that order), an unknown
/// directive is an error, blank lines are ignored.
pub fn parse(text: &str) -> Result<TestVector, ParseError> {
    let mut v = TestVector::default();
    let mut section = Section::None;
    let mut result_line: Option<(usize, String)> = None;
    let mut raw = Vec::new();
    let mut mem = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let err = |message: String| ParseError {
            line: number,
            message,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.split('#').next().unwrap_or("");
        if line.contains("--") {
            section = if line.contains("asm") {
                Section::Asm
            } else if line.contains("result") {
                Section::Result
            } else if line.contains("mem") {
                v.mem.get_or_insert_with(Vec::new);
                Section::Mem
            } else if line.contains("raw") {
                v.raw.get_or_insert_with(Vec::new);
                Section::Raw
            } else if line.contains("no register offset") || line.contains(" c") {
                Section::Ignored
            } else if line.contains("error") {
                v.error.get_or_insert_with(String::new);
                Section::Error
            } else {
                return Err(err(format!("unknown directive {:?}", line.trim())));
            };
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match section {
            Section::None | Section::Ignored => {}
            Section::Asm => v.asm.push((number, trimmed.to_string())),
            Section::Result => result_line = Some((number, trimmed.to_string())),
            Section::Error => v.error = Some(trimmed.to_string()),
            Section::Mem => {
                for tok in trimmed.split_whitespace() {
                    let byte = u32::from_str_radix(tok, 16)
                        .map_err(|_| err(format!("{tok:?} is not a hex byte in -- mem")))?;
                    // The upstream reader keeps the low 8 bits of each token.
                    mem.push(byte.to_le_bytes()[0]);
                }
            }
            Section::Raw => parse_raw_line(trimmed, &mut raw).map_err(err)?,
        }
    }
    if let Some(m) = v.mem.as_mut() {
        *m = mem;
    }
    if let Some(r) = v.raw.as_mut() {
        *r = raw;
    }
    if let Some((number, text)) = result_line {
        let parsed = match text.find("0x") {
            Some(i) => u64::from_str_radix(text[i + 2..].trim(), 16).ok(),
            None => text.parse().ok(),
        };
        v.result = Some(parsed.ok_or(ParseError {
            line: number,
            message: format!("{text:?} is not a 64-bit result"),
        })?);
    }
    Ok(v)
}

/// A `-- raw` line: either 64-bit integers, one per slot (`0x5566778800000018`), or eight
/// two-digit hex bytes in memory order (the `negative/unused-*` layout).
fn parse_raw_line(line: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let byte_layout = tokens.len() == 8
        && tokens
            .iter()
            .all(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    if byte_layout {
        for t in tokens {
            out.push(u8::from_str_radix(t, 16).map_err(|e| e.to_string())?);
        }
        return Ok(());
    }
    for t in tokens {
        let value = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => t.parse(),
        }
        .map_err(|_| format!("{t:?} is not a 64-bit instruction in -- raw"))?;
        out.extend_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

/// Reads and parses a `.data` file. Errors name the file.
pub fn read(path: &Path) -> Result<TestVector, String> {
    let name = format!("{:?}", path.display().to_string());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    parse(&text).map_err(|e| format!("{name}: {e}"))
}

/// Where the conformance suite is: `$EBPF_CONFORMANCE_DIR`, else
/// `../shared/conformance/bpf_conformance` relative to the workspace root.
pub fn conformance_dir() -> PathBuf {
    match std::env::var_os("EBPF_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/conformance/bpf_conformance"),
    }
}

/// The `.data` files directly in `dir`, sorted by name.
pub fn data_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{:?}: {e}", dir.display().to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The suite's positive vectors (`*.data`) and negative ones (`negative/*.data`), for tests.
///
/// Returns `None` when the suite is absent and `CI` is unset, so that a developer without the
/// shared folder can still run the other tests. With `CI` set, an absent suite panics: the test
/// must fail rather than pass by skipping.
pub fn suite() -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let dir = conformance_dir();
    match (data_files(&dir), data_files(&dir.join("negative"))) {
        (Ok(pos), Ok(neg)) if !pos.is_empty() => Some((pos, neg)),
        (pos, _) => {
            let why = pos.err().unwrap_or_else(|| "no .data files".to_string());
            assert!(
                std::env::var_os("CI").is_none(),
                "conformance suite not found at {} ({why}); set EBPF_CONFORMANCE_DIR",
                dir.display()
            );
            eprintln!(
                "skipping: conformance suite not found at {} ({why})",
                dir.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_comments_and_line_numbers() {
        let v = parse(
            "# SPDX header\n-- asm\nmov %r0, 1 # trailing\n\nexit\n-- mem\naa BB\n 11 cc\n-- result\n0x\n0x2A\n",
        )
        .unwrap();
        assert_eq!(
            v.asm,
            vec![(3, "mov %r0, 1".to_string()), (5, "exit".to_string())]
        );
        assert_eq!(v.mem, Some(vec![0xaa, 0xbb, 0x11, 0xcc]));
        assert_eq!(v.result, Some(0x2a));
        assert_eq!(v.raw, None);
        assert_eq!(v.error, None);
    }

    #[test]
    fn raw_in_both_layouts_and_empty_error() {
        let v = parse("-- raw\n0x5566778800000018\n95 00 00 00 00 00 00 00\n-- error\n").unwrap();
        let mut want = 0x5566778800000018u64.to_le_bytes().to_vec();
        want.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v.raw, Some(want));
        assert_eq!(v.error, Some(String::new()));
    }

    #[test]
    fn decimal_result_and_unknown_directive() {
        assert_eq!(parse("-- result\n0\n").unwrap().result, Some(0));
        let e = parse("-- asm\n-- Unknown directive\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown directive"), "{e}");
    }

    #[test]
    fn bad_mem_and_result_are_errors_with_lines() {
        assert_eq!(parse("-- mem\nzz\n").unwrap_err().line, 2);
        assert_eq!(parse("-- result\nnope\n").unwrap_err().line, 2);
    }

    /// What a message echoes from the file is quoted and escaped (`{:?}`), so a NUL, a screen
    /// clear or an OSC title never reaches the terminal as it is; a file that is not UTF-8 is
    /// an error that echoes nothing of it.
    #[test]
    fn errors_escape_what_they_echo() {
        let cases = [
            (
                "-- mem\naa\0\n",
                r#"line 2: "aa\0" is not a hex byte in -- mem"#,
            ),
            (
                "-- result\n\u{1b}[2J\n",
                r#"line 2: "\u{1b}[2J" is not a 64-bit result"#,
            ),
            (
                "-- \u{1b}]0;pwned\u{7}\n",
                r#"line 1: unknown directive "-- \u{1b}]0;pwned\u{7}""#,
            ),
            (
                "-- raw\n\u{202e}95\n",
                r#"line 2: "\u{202e}95" is not a 64-bit instruction in -- raw"#,
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), message, "{text:?}");
        }
        let dir = std::env::temp_dir().join(format!("ebpf-testdata-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad\u{1b}[2J.data");
        std::fs::write(&path, b"-- asm\nexit \xff\n").unwrap();
        let e = read(&path).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!e.contains('\u{1b}') && !e.contains('\u{ff}'), "{e:?}");
        assert!(
            e.contains("bad\\u{1b}[2J.data") && e.contains("valid UTF-8"),
            "{e}"
        );
    }
}
