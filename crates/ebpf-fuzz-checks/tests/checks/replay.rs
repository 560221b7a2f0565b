//! Every committed fuzz input, replayed through its target's check by a plain `cargo test`
//! (stable toolchain, no libFuzzer): the seed corpus (`fuzz/seeds/<target>/`) and the
//! regressions (`fuzz/regressions/<target>/`, one file per finding fixed). The seed corpus must
//! also be exactly what `cargo xtask fuzz --seeds` generates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ebpf_fuzz_checks::Target;
use ebpf_fuzz_checks::seeds::{seeds, sources};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, by name; `None` (with a warning a person sees, and a failure under CI)
/// when the folder is missing.
fn inputs(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: its inputs cannot be replayed",
            dir.display()
        );
        eprintln!(
            "warning: {} is missing: its inputs are not replayed",
            dir.display()
        );
        return None;
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && !name.starts_with('.') && name != "README.md" {
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
    Some(files)
}

/// Replays every input of `fuzz/<kind>/<target>/`; returns how many ran.
fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in Target::ALL {
        let dir = fuzz_dir().join(kind).join(target.name());
        for (name, bytes) in inputs(&dir).unwrap_or_default() {
            count += 1;
            if let Err(finding) = target.check(&bytes) {
                failures.push(format!("{kind}/{}/{name}: {finding}", target.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    count
}

#[test]
fn every_seed_passes_its_check() {
    let count = replay("seeds");
    assert!(count > 0 || std::env::var_os("CI").is_none(), "no seeds");
}

#[test]
fn every_regression_input_passes_its_check() {
    replay("regressions");
}

/// The committed corpus is generated, never edited by hand: `cargo xtask fuzz --seeds`
/// rewrites it from the conformance vectors and the ELF fixtures.
#[test]
fn the_seed_corpus_is_what_the_generator_makes() {
    if ebpf_testdata::suite().is_none() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (vectors, objects) = sources(&root).unwrap();
    let vectors: Vec<&Path> = vectors.iter().map(PathBuf::as_path).collect();
    let objects: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
    let want = seeds(&vectors, &objects).unwrap();
    for target in Target::ALL {
        let dir = fuzz_dir().join("seeds").join(target.name());
        let got = inputs(&dir).unwrap_or_default();
        let want = want.get(&target).cloned().unwrap_or_default();
        let stale: Vec<&String> = want
            .keys()
            .chain(got.keys())
            .filter(|name| want.get(*name) != got.get(*name))
            .collect();
        assert!(
            stale.is_empty(),
            "fuzz/seeds/{} is stale ({} files differ, e.g. {:?}): run `cargo xtask fuzz --seeds`",
            target.name(),
            stale.len(),
            stale.first()
        );
    }
}
