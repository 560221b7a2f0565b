//! Reading every case file, running every case on one engine, reporting every failure at once,
//! and rewriting expectations from the oracle (`EBPF_BLESS=1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::case::{Case, Outcome, RawEngine};
use crate::format;

/// The directory of the case files: `tests/contract/` at the workspace root.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/contract")
}

/// Every case of `tests/contract/*.txt`, file by file (sorted by name), in file order.
///
/// # Panics
///
/// If the directory cannot be read, or listing every file that does not parse and every name
/// used twice: a broken case file is a failing test, never a skipped case.
pub fn cases() -> Vec<Case> {
    let dir = cases_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let category = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| format::parse_file(file, &category, &text));
        match parsed {
            Ok(c) => cases.extend(c),
            Err(e) => errors.push(e),
        }
    }
    let mut seen: BTreeMap<&str, &Case> = BTreeMap::new();
    for case in &cases {
        if let Some(other) = seen.insert(&case.name, case) {
            errors.push(format!(
                "{}:{} and {}:{}: two cases named {}",
                other.file.display(),
                other.line,
                case.file.display(),
                case.line,
                case.name
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "bad contract case files:\n{}",
        errors.join("\n")
    );
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

/// Whether `EBPF_BLESS=1` asks to rewrite expectations.
pub fn blessing() -> bool {
    std::env::var_os("EBPF_BLESS").is_some_and(|v| v == "1")
}

/// `file:line: name`, where a case stands.
pub fn place(case: &Case) -> String {
    format!(
        "{}:{}: {}",
        case.file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        case.line,
        case.name
    )
}

/// Runs every case twice on `engine` (nothing of one run may be visible to the next) with the
/// memory and entry registers of [`Case::run_raw`], and panics listing every failure.
///
/// `label` names the engine in the report.
pub fn check_engine(label: &str, engine: RawEngine<'_>) {
    let cases = cases();
    let mut failures = Vec::new();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        *by_category.entry(case.category()).or_default() += 1;
        if let Err(e) = case.try_program() {
            failures.push(format!("[{label}] {e}"));
            continue;
        }
        for run in ["first", "second"] {
            if let Err(e) = case.check(&case.run_raw(engine)) {
                failures.push(format!("[{label}] {run} run: {e}"));
            }
        }
    }
    eprintln!("[{label}] {} contract cases: {by_category:?}", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        2 * cases.len(),
        failures.join("\n")
    );
}

/// Rewrites the `--- expect` section of every case whose outcome on `oracle` differs from it:
/// the result line, and the bytes of each memory the case already observes (add a memory line
/// with no bytes, e.g. `input:`, to have it filled in). Returns how many cases changed.
///
/// For the interpreter only: the contract's expectations are the oracle's behaviour, worked
/// out by hand first; blessing fills in what was checked, never makes a failure go away.
pub fn bless(oracle: RawEngine<'_>) -> usize {
    let cases = cases();
    let mut edits: BTreeMap<&Path, Vec<(&Case, Vec<String>)>> = BTreeMap::new();
    for case in &cases {
        let outcome = case.run_raw(oracle);
        if case.check(&outcome).is_ok() {
            continue;
        }
        let expect = match &outcome.result {
            Ok(exit) => crate::Expect::Exit {
                r0: exit.r0,
                instructions: exit.instructions,
            },
            Err(trap) => crate::Expect::Trap(trap.clone()),
        };
        let memory: Vec<_> = case
            .memory_after
            .iter()
            .map(|(mem, _)| (*mem, actual_memory(&outcome, *mem)))
            .collect();
        let lines = format::render_expect(&expect, &memory);
        edits.entry(&case.file).or_default().push((case, lines));
    }
    let mut changed = 0;
    for (file, mut file_edits) in edits {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        // From the bottom up, so that earlier ranges stay valid.
        file_edits.sort_by_key(|(c, _)| std::cmp::Reverse(c.expect_lines.start));
        for (case, new) in file_edits {
            lines.splice(case.expect_lines.clone(), new);
            changed += 1;
        }
        std::fs::write(file, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    changed
}

fn actual_memory(outcome: &Outcome, mem: crate::Mem) -> Vec<u8> {
    outcome.memory(mem).map(<[u8]>::to_vec).unwrap_or_default()
}
