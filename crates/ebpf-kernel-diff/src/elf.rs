//! The ELF set: every (object, function, input) of `tests/elf/expected.txt`, loaded on our side
//! by the ELF loader and given to the kernel as the loader links it.
//!
//! The fixtures are C functions `u64 f(u8 *data, u64 len)`, which the prologue of
//! `compare.rs` serves as XDP programs. Most bound their loops by `len` rather than by the
//! packet's end, which the kernel's verifier cannot follow: those the kernel rejects. Functions
//! with `.rodata`/`.data`/`.bss` reach the kernel only as numbers it will not dereference (this
//! set loads each function alone, without the array maps the kernel needs for them; the corpus
//! set compares global data), and a call of helper 5 means something else there: such
//! programs are counted, never compared.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ebpf_vm::elf::{ElfObject, Selector};

use crate::compare::{Ours, Subject};

/// Enough for every fixture on its inputs.
const BUDGET: u64 = 10_000_000;

/// `tests/elf` of the workspace.
fn elf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf")
}

/// A `.hex` input: two-digit hex bytes, `#` comments.
fn input(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(format!("inputs/{name}.hex"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    text.lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).with_context(|| format!("{}: {t:?}", path.display())))
        .collect()
}

/// Every fixture run of `expected.txt` as a subject.
pub(crate) fn subjects() -> Result<Vec<Subject>> {
    let dir = elf_dir();
    let path = dir.join("expected.txt");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut subjects = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [object, function, input_name, _native] = fields[..] else {
            anyhow::bail!("{}: malformed line {line:?}", path.display());
        };
        let object_path = dir.join(format!("{object}.o"));
        let bytes =
            std::fs::read(&object_path).with_context(|| object_path.display().to_string())?;
        let loaded = ElfObject::parse(&bytes)
            .and_then(|o| o.load(Selector::Function(function)))
            .with_context(|| format!("{object}.o: {function}"))?;
        let kernel = loaded.program.to_bytes();
        let incomparable = if !loaded.rodata.is_empty() || !loaded.data.is_empty() {
            Some(
                "uses .rodata/.data/.bss (this set loads it without its global data maps)"
                    .to_string(),
            )
        } else if let Some(s) = kernel.chunks(8).find(|s| s[0] == 0x85 && s[1] >> 4 == 0) {
            let id = i32::from_le_bytes([s[4], s[5], s[6], s[7]]);
            Some(format!(
                "calls helper {id} (the conformance helper here, a kernel helper there)"
            ))
        } else {
            None
        };
        subjects.push(Subject {
            name: format!("{object}.o {function} {input_name}"),
            ours: Ours::Elf {
                object: bytes,
                function: function.to_string(),
            },
            kernel,
            mem: Some(input(&dir, input_name)?),
            budget: BUDGET,
            incomparable,
        });
    }
    Ok(subjects)
}
