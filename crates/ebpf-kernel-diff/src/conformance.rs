//! The conformance set: every vector of the bpf_conformance suite (`*.data` and
//! `negative/*.data`) that has a program, with its `-- mem` as the input.
//!
//! A vector that calls a helper loads on both sides but is not compared: id 5 is the
//! conformance helper here (it returns `r1`) and `bpf_ktime_get_ns` in the kernel.

use anyhow::{Result, bail};
use ebpf_testdata as testdata;
use ebpf_vm::isa::{self, CallKind, Insn};

use crate::compare::{Ours, Subject};

/// Enough for the suite's loops.
const BUDGET: u64 = 1_000_000;

/// The suite's vectors as subjects, and how many files had no program to load.
pub(crate) fn subjects() -> Result<(Vec<Subject>, usize)> {
    let dir = testdata::conformance_dir();
    let (positive, negative) = match (
        testdata::data_files(&dir),
        testdata::data_files(&dir.join("negative")),
    ) {
        (Ok(p), Ok(n)) if !p.is_empty() => (p, n),
        _ if std::env::var_os("CI").is_some() => {
            bail!(
                "the conformance suite is not at {} (set EBPF_CONFORMANCE_DIR)",
                dir.display()
            )
        }
        _ => {
            eprintln!(
                "warning: kernel-diff: no conformance suite at {}; skipping that set",
                dir.display()
            );
            return Ok((Vec::new(), 0));
        }
    };
    let mut subjects = Vec::new();
    let mut skipped = 0;
    for path in positive.iter().chain(&negative) {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let Some(bytes) = testdata::read(path)
            .ok()
            .and_then(|v| program(&v).map(|b| (v, b)))
        else {
            skipped += 1;
            continue;
        };
        let (vector, bytes) = bytes;
        let incomparable = helper_call(&bytes).map(|id| {
            format!("calls helper {id} (the conformance helper here, a kernel helper there)")
        });
        subjects.push(Subject {
            name,
            ours: Ours::Bytes(bytes.clone()),
            kernel: bytes,
            mem: vector.mem,
            budget: BUDGET,
            incomparable,
        });
    }
    Ok((subjects, skipped))
}

/// The vector's program as bytes: its `raw` section, or its assembly (`None` if it has neither
/// or the assembly does not assemble — a negative vector of the assembler).
fn program(vector: &testdata::TestVector) -> Option<Vec<u8>> {
    if !vector.has_program() {
        return None;
    }
    match &vector.raw {
        Some(raw) => Some(raw.clone()),
        None => isa::assemble_lines(&vector.asm_lines())
            .ok()
            .map(|p| p.to_bytes()),
    }
}

/// The id of the first helper the program calls, slot by slot (undecodable slots skipped).
fn helper_call(bytes: &[u8]) -> Option<i32> {
    (0..bytes.len() / 8).find_map(|pc| match isa::decode_at(bytes, pc) {
        Ok(Insn::Call {
            kind: CallKind::Helper,
            imm,
        }) => Some(imm),
        _ => None,
    })
}
