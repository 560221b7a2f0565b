//! Tidy checks: the rules of docs/ARCHITECTURE.md that a machine can check.
//!
//! - the crate graph: each crate depends only on the crates below it, as the table in
//!   [`ALLOWED`] says; `ebpf-isa` has no dependencies at all; the ISA, CFG, verifier and
//!   interpreter crates have no external dependencies; `anyhow` only in binaries;
//! - every crate inherits the workspace lints and lives in a directory named after it;
//! - every `.rs` file opens with a `//!` comment;
//! - the crates that must not use `unsafe` say `#![forbid(unsafe_code)]`.
//!
//! They run as an ordinary test (`cargo test --workspace`) and as `cargo xtask tidy`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Workspace crates each crate may depend on (normal dependencies). A crate missing from this
/// table is an error: adding a crate means deciding where it sits in the graph.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ebpf-isa", &[]),
    ("ebpf-testdata", &[]),
    ("ebpf-testgen", &["ebpf-isa", "ebpf-abi"]),
    ("ebpf-cfg", &["ebpf-isa", "ebpf-abi"]),
    ("ebpf-abi", &["ebpf-isa"]),
    ("ebpf-maps", &["ebpf-abi"]),
    ("ebpf-verifier", &["ebpf-isa", "ebpf-cfg", "ebpf-abi"]),
    ("ebpf-interp", &["ebpf-isa", "ebpf-abi"]),
    ("ebpf-jit-x86", &["ebpf-isa", "ebpf-cfg", "ebpf-abi"]),
    ("ebpf-jit-cranelift", &["ebpf-isa", "ebpf-cfg", "ebpf-abi"]),
    ("ebpf-elf", &["ebpf-isa"]),
    (
        "ebpf-vm",
        &[
            "ebpf-isa",
            "ebpf-cfg",
            "ebpf-abi",
            "ebpf-verifier",
            "ebpf-interp",
            "ebpf-jit-x86",
            "ebpf-jit-cranelift",
            "ebpf-elf",
            "ebpf-maps",
            "ebpf-testdata",
        ],
    ),
    ("ebpf-cli", &["ebpf-vm"]),
    ("ebpf-capi", &["ebpf-vm"]),
    ("ebpf-python", &["ebpf-vm"]),
    ("ebpf-bench", &["ebpf-isa", "ebpf-abi", "ebpf-vm"]),
    (
        "ebpf-fuzz-checks",
        &[
            "ebpf-isa",
            "ebpf-abi",
            "ebpf-verifier",
            "ebpf-interp",
            "ebpf-jit-x86",
            "ebpf-jit-cranelift",
            "ebpf-elf",
            "ebpf-testdata",
            "ebpf-testgen",
            "ebpf-vm",
        ],
    ),
    ("xtask", &[]),
];

/// Crates that must have no external (crates.io) dependencies and no `unsafe`.
const PURE: &[&str] = &[
    "ebpf-isa",
    "ebpf-abi",
    "ebpf-maps",
    "ebpf-cfg",
    "ebpf-verifier",
    "ebpf-interp",
];

/// The dependencies of one manifest section: (name, is a workspace crate).
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) dependencies: Vec<String>,
    pub(crate) dev_dependencies: Vec<String>,
    pub(crate) has_binary: bool,
    pub(crate) inherits_lints: bool,
}

/// Reads the parts of a `Cargo.toml` that the tidy rules look at.
///
/// This is a line-based reader for the manifests this workspace writes (one dependency per
/// line, `name.workspace = true` or `name = …`), not a TOML parser.
pub(crate) fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut m = Manifest::default();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            if section == "bin" {
                m.has_binary = true;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        let dep = key.split('.').next().unwrap_or(key).to_string();
        match section.as_str() {
            "package" if key == "name" => m.name = value.trim_matches('"').to_string(),
            "lints" if key == "workspace" => m.inherits_lints = value == "true",
            "dependencies" | "build-dependencies" => m.dependencies.push(dep),
            "dev-dependencies" => m.dev_dependencies.push(dep),
            s if s.starts_with("target.") && s.ends_with(".dependencies") => {
                m.dependencies.push(dep)
            }
            _ => {}
        }
    }
    if path
        .parent()
        .is_some_and(|dir| dir.join("src/main.rs").exists())
    {
        m.has_binary = true;
    }
    Ok(m)
}

/// The workspace root (the directory above `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every crate manifest of the workspace: `crates/*/Cargo.toml` and `xtask/Cargo.toml`.
fn manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![root.join("xtask/Cargo.toml")];
    for entry in fs::read_dir(root.join("crates")).context("reading crates/")? {
        let manifest = entry?.path().join("Cargo.toml");
        if manifest.exists() {
            out.push(manifest);
        }
    }
    out.sort();
    Ok(out)
}

/// Checks the crate graph and manifest conventions; returns every violation found.
pub(crate) fn check_crate_graph(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for path in manifests(root)? {
        let m = read_manifest(&path)?;
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned());
        if dir.as_deref() != Some(m.name.as_str()) {
            problems.push(format!(
                "{}: package `{}` is not in a directory of that name",
                path.display(),
                m.name
            ));
        }
        if !m.inherits_lints {
            problems.push(format!("{}: missing `[lints] workspace = true`", m.name));
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(name, _)| *name == m.name) else {
            problems.push(format!(
                "{}: not in the tidy crate graph (xtask/src/tidy.rs ALLOWED)",
                m.name
            ));
            continue;
        };
        let is_workspace_crate = |d: &str| ALLOWED.iter().any(|(name, _)| *name == d);
        for dep in &m.dependencies {
            if is_workspace_crate(dep) {
                if !allowed.contains(&dep.as_str()) {
                    problems.push(format!(
                        "{} depends on {dep}, which the crate graph does not allow",
                        m.name
                    ));
                }
            } else if PURE.contains(&m.name.as_str()) || m.name == "ebpf-isa" {
                problems.push(format!(
                    "{} must have no external dependencies, has {dep}",
                    m.name
                ));
            } else if dep == "anyhow" && !m.has_binary {
                problems.push(format!("{}: anyhow is for binaries and xtask only", m.name));
            }
        }
        for dep in &m.dev_dependencies {
            if dep == "anyhow" && !m.has_binary {
                problems.push(format!("{}: anyhow is for binaries and xtask only", m.name));
            }
        }
        if PURE.contains(&m.name.as_str()) {
            let lib = path.with_file_name("src/lib.rs");
            let text = fs::read_to_string(&lib).unwrap_or_default();
            if !text.contains("#![forbid(unsafe_code)]") {
                problems.push(format!(
                    "{}: lib.rs must say #![forbid(unsafe_code)]",
                    m.name
                ));
            }
        }
    }
    Ok(problems)
}

/// Checks that every `.rs` file under the workspace (outside `target/`) opens with `//!`.
pub(crate) fn check_module_docs(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                if !first.starts_with("//!") {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    problems.push(format!(
                        "{}: does not open with a `//!` comment",
                        rel.display()
                    ));
                }
            }
        }
    }
    problems.sort();
    Ok(problems)
}

/// Runs every tidy check; fails listing all problems.
pub(crate) fn run(root: &Path) -> Result<()> {
    let mut problems = check_crate_graph(root)?;
    problems.extend(check_module_docs(root)?);
    if !problems.is_empty() {
        bail!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_graph_is_respected() {
        let problems = check_crate_graph(&workspace_root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_rust_file_opens_with_a_module_comment() {
        let problems = check_module_docs(&workspace_root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_checks_catch_violations() {
        // A throwaway workspace with one crate breaking each rule, to show the checks can fail.
        let root = std::env::temp_dir().join(format!("ebpf-tidy-{}", std::process::id()));
        let krate = root.join("crates/ebpf-isa");
        fs::create_dir_all(krate.join("src")).unwrap();
        fs::create_dir_all(root.join("xtask")).unwrap();
        fs::write(
            root.join("xtask/Cargo.toml"),
            "[package]\nname = \"xtask\"\n[lints]\nworkspace = true\n",
        )
        .unwrap();
        fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"ebpf-isa\"\n[dependencies]\nebpf-vm.workspace = true\nanyhow = \"1\"\n",
        )
        .unwrap();
        fs::write(krate.join("src/lib.rs"), "// no module comment\n").unwrap();
        let graph = check_crate_graph(&root).unwrap();
        let docs = check_module_docs(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let all = graph.join("\n");
        assert!(all.contains("ebpf-isa depends on ebpf-vm"), "{all}");
        assert!(
            all.contains("ebpf-isa must have no external dependencies, has anyhow"),
            "{all}"
        );
        assert!(all.contains("missing `[lints] workspace = true`"), "{all}");
        assert!(all.contains("#![forbid(unsafe_code)]"), "{all}");
        assert_eq!(docs.len(), 1, "{docs:?}");
    }
}
