//! Tidy checks: the rules of docs/ARCHITECTURE.md that a machine can check.
//!
//! - the crate graph, read from `cargo metadata --format-version 1 --no-deps`: every edge
//!   between workspace crates — normal, build and dev — is one the table [`ALLOWED`] permits,
//!   and there is no cycle, dev-dependencies included (a test, bench or example may use only
//!   crates that do not depend on its own); `ebpf-isa` has no dependencies at all; the ISA, ABI,
//!   CFG, verifier and interpreter crates have no external dependencies; `anyhow` only in
//!   crates with a binary (and xtask);
//! - every crate inherits the workspace lints and lives in a directory named after it;
//! - every `.rs` file opens with a `//!` comment;
//! - the crates that must not use `unsafe` say `#![forbid(unsafe_code)]`.
//!
//! They run as an ordinary test (`cargo test --workspace`) and as `cargo xtask tidy`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::json::{self, Json};

/// The crate graph, one row per crate: the workspace crates it may depend on (normal and build
/// dependencies), then those only its tests, benches and examples may add (dev-dependencies).
/// A crate missing here is an error: adding a crate means deciding where it sits. The table
/// itself must be acyclic, normal and dev columns together.
const ALLOWED: &[(&str, &[&str], &[&str])] = &[
    ("ebpf-isa", &[], &["ebpf-testdata"]),
    ("ebpf-testdata", &[], &[]),
    ("ebpf-abi", &["ebpf-isa"], &[]),
    ("ebpf-maps", &["ebpf-abi"], &["ebpf-isa"]),
    ("ebpf-testgen", &["ebpf-isa", "ebpf-abi"], &[]),
    (
        "ebpf-contract",
        &["ebpf-isa", "ebpf-abi", "ebpf-testdata"],
        &[],
    ),
    // The facts' tests check every fact against the interpreter's traced runs of generated
    // programs and of clang's objects.
    (
        "ebpf-cfg",
        &["ebpf-isa", "ebpf-abi"],
        &["ebpf-testdata", "ebpf-testgen", "ebpf-interp", "ebpf-elf"],
    ),
    (
        "ebpf-verifier",
        &["ebpf-isa", "ebpf-cfg", "ebpf-abi"],
        &["ebpf-testdata", "ebpf-testgen", "ebpf-interp"],
    ),
    (
        "ebpf-interp",
        &["ebpf-isa", "ebpf-abi"],
        &["ebpf-testdata", "ebpf-testgen", "ebpf-contract"],
    ),
    ("ebpf-bench", &["ebpf-isa", "ebpf-abi"], &["ebpf-interp"]),
    (
        "ebpf-jit-x86",
        &["ebpf-isa", "ebpf-cfg", "ebpf-abi"],
        &["ebpf-interp", "ebpf-testgen", "ebpf-contract", "ebpf-bench"],
    ),
    (
        // The interpreter finishes runs whose budget runs short (see docs/jit-cranelift.md);
        // ebpf-elf gives the compile-time example the ELF fixtures.
        "ebpf-jit-cranelift",
        &["ebpf-isa", "ebpf-cfg", "ebpf-abi", "ebpf-interp"],
        &["ebpf-testgen", "ebpf-contract", "ebpf-bench", "ebpf-elf"],
    ),
    (
        "ebpf-elf",
        &["ebpf-isa"],
        &["ebpf-abi", "ebpf-interp", "ebpf-contract"],
    ),
    ("ebpf-kernel", &[], &["ebpf-isa", "ebpf-maps"]),
    (
        "ebpf-kernel-diff",
        &[
            "ebpf-kernel",
            "ebpf-vm",
            "ebpf-abi",
            "ebpf-testgen",
            "ebpf-testdata",
        ],
        &[],
    ),
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
        ],
        &[
            "ebpf-testdata",
            "ebpf-testgen",
            "ebpf-contract",
            "ebpf-bench",
        ],
    ),
    ("ebpf-cli", &["ebpf-vm", "ebpf-testdata"], &[]),
    ("ebpf-capi", &["ebpf-vm"], &[]),
    ("ebpf-python", &["ebpf-vm"], &[]),
    (
        "ebpf-fuzz-checks",
        &[
            "ebpf-isa",
            "ebpf-abi",
            "ebpf-cfg",
            "ebpf-verifier",
            "ebpf-interp",
            "ebpf-jit-x86",
            "ebpf-jit-cranelift",
            "ebpf-elf",
            "ebpf-testdata",
            "ebpf-testgen",
            "ebpf-vm",
        ],
        &[],
    ),
    ("xtask", &[], &[]),
];

/// Crates that must have no external (crates.io) dependencies and no `unsafe`.
const PURE: &[&str] = &[
    "ebpf-isa",
    "ebpf-abi",
    "ebpf-maps",
    "ebpf-maps",
    "ebpf-cfg",
    "ebpf-verifier",
    "ebpf-interp",
];

/// How a crate depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    Build,
    Dev,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Build => "build",
            Kind::Dev => "dev",
        }
    }
}

/// One dependency of a workspace crate.
#[derive(Clone, Debug)]
pub(crate) struct Dep {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    /// Whether it is a path dependency on a workspace crate.
    pub(crate) local: bool,
}

/// What tidy needs of one workspace crate.
#[derive(Clone, Debug)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) manifest: PathBuf,
    pub(crate) deps: Vec<Dep>,
    pub(crate) has_binary: bool,
    /// The library target's root file, if the crate has one.
    pub(crate) lib: Option<PathBuf>,
}

/// The workspace crates of `cargo metadata --format-version 1 --no-deps` output.
pub(crate) fn read_metadata(text: &str) -> Result<Vec<Package>> {
    let root = json::parse(text).context("reading cargo metadata")?;
    let string = |v: &Json, key: &str| -> Result<String> {
        v.get(key)
            .and_then(Json::as_str)
            .map(str::to_string)
            .with_context(|| format!("cargo metadata: no string `{key}`"))
    };
    let mut packages = Vec::new();
    for p in root.get("packages").map(Json::items).unwrap_or_default() {
        let mut deps = Vec::new();
        for d in p.get("dependencies").map(Json::items).unwrap_or_default() {
            let kind = match d.get("kind").and_then(Json::as_str) {
                None => Kind::Normal,
                Some("build") => Kind::Build,
                Some("dev") => Kind::Dev,
                Some(other) => bail!("cargo metadata: dependency kind `{other}`"),
            };
            deps.push(Dep {
                name: string(d, "name")?,
                kind,
                local: d.get("path").and_then(Json::as_str).is_some(),
            });
        }
        let targets = p.get("targets").map(Json::items).unwrap_or_default();
        let has_kind = |t: &Json, k: &str| {
            t.get("kind")
                .map(Json::items)
                .unwrap_or_default()
                .iter()
                .any(|x| x.as_str() == Some(k))
        };
        let lib = targets
            .iter()
            .find(|t| has_kind(t, "lib"))
            .map(|t| string(t, "src_path").map(PathBuf::from))
            .transpose()?;
        packages.push(Package {
            name: string(p, "name")?,
            manifest: PathBuf::from(string(p, "manifest_path")?),
            deps,
            has_binary: targets.iter().any(|t| has_kind(t, "bin")),
            lib,
        });
    }
    Ok(packages)
}

/// Runs `cargo metadata` on the workspace at `root`.
fn metadata(root: &Path) -> Result<Vec<Package>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    read_metadata(&String::from_utf8_lossy(&out.stdout))
}

/// The workspace root (the directory above `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Checks the crate graph and manifest conventions of the workspace at `root`.
pub(crate) fn check_crate_graph(root: &Path) -> Result<Vec<String>> {
    Ok(check_packages(&metadata(root)?, ALLOWED))
}

/// Every violation of the graph rules by `packages` against `allowed`.
pub(crate) fn check_packages(
    packages: &[Package],
    allowed: &[(&str, &[&str], &[&str])],
) -> Vec<String> {
    let mut problems = Vec::new();
    let table_edges: Vec<(&str, &str)> = allowed
        .iter()
        .flat_map(|(from, normal, dev)| normal.iter().chain(*dev).map(move |to| (*from, *to)))
        .collect();
    if let Some(cycle) = find_cycle(&table_edges) {
        problems.push(format!(
            "the allowed crate graph has a cycle: {}",
            cycle.join(" -> ")
        ));
    }
    let mut edges: Vec<(&str, &str)> = Vec::new();
    for p in packages {
        let name = p.name.as_str();
        let dir = p
            .manifest
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned());
        if dir.as_deref() != Some(name) {
            problems.push(format!(
                "{}: package `{name}` is not in a directory of that name",
                p.manifest.display()
            ));
        }
        if !inherits_lints(&p.manifest) {
            problems.push(format!("{name}: missing `[lints] workspace = true`"));
        }
        if PURE.contains(&name) {
            let text = p
                .lib
                .as_ref()
                .and_then(|lib| fs::read_to_string(lib).ok())
                .unwrap_or_default();
            if !text.contains("#![forbid(unsafe_code)]") {
                problems.push(format!("{name}: lib.rs must say #![forbid(unsafe_code)]"));
            }
        }
        let row = allowed.iter().find(|(n, _, _)| *n == name);
        if row.is_none() {
            problems.push(format!(
                "{name}: not in the tidy crate graph (xtask/src/tidy.rs ALLOWED)"
            ));
        }
        for d in &p.deps {
            let dep = d.name.as_str();
            if d.local {
                edges.push((name, dep));
                let ok = row.is_some_and(|(_, normal, dev)| {
                    normal.contains(&dep) || (d.kind == Kind::Dev && dev.contains(&dep))
                });
                if row.is_some() && !ok {
                    problems.push(format!(
                        "{name} depends on {dep} ({}), which the crate graph does not allow",
                        d.kind.name()
                    ));
                }
            } else if d.kind != Kind::Dev && (PURE.contains(&name) || name == "ebpf-isa") {
                problems.push(format!(
                    "{name} must have no external dependencies, has {dep}"
                ));
            } else if dep == "anyhow" && !p.has_binary {
                problems.push(format!("{name}: anyhow is for binaries and xtask only"));
            }
        }
    }
    edges.sort_unstable();
    edges.dedup();
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!(
            "dependency cycle (dev-dependencies included): {}",
            cycle.join(" -> ")
        ));
    }
    problems
}

/// Whether a manifest says `[lints]` / `workspace = true` (a line scan of the manifests this
/// workspace writes; cargo metadata does not report lint inheritance).
fn inherits_lints(manifest: &Path) -> bool {
    let text = fs::read_to_string(manifest).unwrap_or_default();
    let mut in_lints = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

/// A cycle of `edges`, as the names along it with the first repeated at the end.
fn find_cycle<'a>(edges: &[(&'a str, &'a str)]) -> Option<Vec<&'a str>> {
    let mut nodes: Vec<&str> = edges.iter().flat_map(|(a, b)| [*a, *b]).collect();
    nodes.sort_unstable();
    nodes.dedup();
    // 0: unvisited, 1: on the current path, 2: done.
    let mut state = vec![0u8; nodes.len()];
    let index = |n: &str| nodes.binary_search(&n).unwrap_or(0);
    fn visit<'a>(
        at: usize,
        nodes: &[&'a str],
        edges: &[(&'a str, &'a str)],
        state: &mut [u8],
        path: &mut Vec<usize>,
        index: &dyn Fn(&str) -> usize,
    ) -> Option<Vec<&'a str>> {
        state[at] = 1;
        path.push(at);
        for (_, to) in edges.iter().filter(|(from, _)| *from == nodes[at]) {
            let next = index(to);
            if state[next] == 1 {
                let start = path.iter().position(|&n| n == next).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].iter().map(|&n| nodes[n]).collect();
                cycle.push(nodes[next]);
                return Some(cycle);
            }
            if state[next] == 0
                && let Some(cycle) = visit(next, nodes, edges, state, path, index)
            {
                return Some(cycle);
            }
        }
        path.pop();
        state[at] = 2;
        None
    }
    for start in 0..nodes.len() {
        if state[start] == 0 {
            let mut path = Vec::new();
            if let Some(cycle) = visit(start, &nodes, edges, &mut state, &mut path, &index) {
                return Some(cycle);
            }
        }
    }
    None
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

    /// A crate of [`fake_metadata`]: name, directory, dependencies as (name, kind, local), and
    /// whether it has a binary.
    type FakeCrate<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, Option<&'a str>, bool)],
        bool,
    );

    /// `cargo metadata` output for `crates`, with paths under `root`.
    fn fake_metadata(root: &Path, crates: &[FakeCrate<'_>]) -> String {
        let mut packages = Vec::new();
        for (name, dir, deps, bin) in crates {
            let manifest = root.join(dir).join("Cargo.toml");
            let deps: Vec<String> = deps
                .iter()
                .map(|(dep, kind, local)| {
                    format!(
                        r#"{{"name":"{dep}","kind":{},"path":{}}}"#,
                        kind.map_or("null".to_string(), |k| format!("\"{k}\"")),
                        if *local {
                            format!("\"{}\"", root.join(dep).display())
                        } else {
                            "null".into()
                        }
                    )
                })
                .collect();
            let mut targets = vec![format!(
                r#"{{"kind":["lib"],"src_path":"{}"}}"#,
                root.join(dir).join("src/lib.rs").display()
            )];
            if *bin {
                targets.push(r#"{"kind":["bin"],"src_path":"main.rs"}"#.to_string());
            }
            packages.push(format!(
                r#"{{"name":"{name}","manifest_path":"{}","dependencies":[{}],"targets":[{}]}}"#,
                manifest.display(),
                deps.join(","),
                targets.join(",")
            ));
        }
        format!(r#"{{"packages":[{}],"version":1}}"#, packages.join(","))
    }

    #[test]
    fn the_checks_catch_violations() {
        // A throwaway workspace breaking each rule, to show the checks can fail.
        let root = std::env::temp_dir().join(format!("ebpf-tidy-{}", std::process::id()));
        for (dir, manifest) in [
            ("crates/ebpf-isa", "[package]\nname = \"ebpf-isa\"\n"),
            ("crates/ebpf-abi", "[lints]\nworkspace = true\n"),
            ("crates/ebpf-testgen", "[lints]\nworkspace = true\n"),
            ("crates/ebpf-interp", "[lints]\nworkspace = true\n"),
            ("crates/ebpf-bench", "[lints]\nworkspace = true\n"),
            ("crates/misplaced", "[lints]\nworkspace = true\n"),
        ] {
            fs::create_dir_all(root.join(dir).join("src")).unwrap();
            fs::write(root.join(dir).join("Cargo.toml"), manifest).unwrap();
        }
        fs::write(
            root.join("crates/ebpf-isa/src/lib.rs"),
            "// no module comment\n",
        )
        .unwrap();
        for dir in ["crates/ebpf-abi", "crates/ebpf-interp"] {
            let lib = "//! A pure crate.\n#![forbid(unsafe_code)]\n";
            fs::write(root.join(dir).join("src/lib.rs"), lib).unwrap();
        }
        let text = fake_metadata(
            &root,
            &[
                // A forbidden normal edge up the graph, an external and anyhow in a library.
                (
                    "ebpf-isa",
                    "crates/ebpf-isa",
                    &[("ebpf-vm", None, true), ("anyhow", None, false)],
                    false,
                ),
                // A dev edge that closes a cycle: ebpf-testgen depends on ebpf-abi.
                (
                    "ebpf-abi",
                    "crates/ebpf-abi",
                    &[
                        ("ebpf-isa", None, true),
                        ("ebpf-testgen", Some("dev"), true),
                    ],
                    false,
                ),
                (
                    "ebpf-testgen",
                    "crates/ebpf-testgen",
                    &[("ebpf-abi", None, true)],
                    false,
                ),
                // The old cycle: the bench crate on the facade, an engine's bench on the bench.
                (
                    "ebpf-bench",
                    "crates/ebpf-bench",
                    &[("ebpf-vm", None, true)],
                    false,
                ),
                (
                    "ebpf-interp",
                    "crates/ebpf-interp",
                    &[
                        ("ebpf-bench", Some("dev"), true),
                        ("anyhow", Some("dev"), false),
                    ],
                    false,
                ),
                ("ebpf-new", "crates/misplaced", &[], true),
            ],
        );
        let packages = read_metadata(&text).unwrap();
        let graph = check_packages(&packages, ALLOWED);
        let docs = check_module_docs(&root).unwrap();
        let cyclic_table: &[(&str, &[&str], &[&str])] =
            &[("a", &["b"], &[]), ("b", &[], &["c"]), ("c", &["a"], &[])];
        let table = check_packages(&[], cyclic_table);
        fs::remove_dir_all(&root).unwrap();
        let all = graph.join("\n");
        for want in [
            "ebpf-isa depends on ebpf-vm (normal), which the crate graph does not allow",
            "ebpf-isa must have no external dependencies, has anyhow",
            "ebpf-isa: missing `[lints] workspace = true`",
            "ebpf-isa: lib.rs must say #![forbid(unsafe_code)]",
            "ebpf-abi depends on ebpf-testgen (dev), which the crate graph does not allow",
            "ebpf-bench depends on ebpf-vm (normal), which the crate graph does not allow",
            "ebpf-interp depends on ebpf-bench (dev), which the crate graph does not allow",
            "ebpf-interp: anyhow is for binaries and xtask only",
            "package `ebpf-new` is not in a directory of that name",
            "ebpf-new: not in the tidy crate graph",
            "dependency cycle (dev-dependencies included): ebpf-abi -> ebpf-testgen -> ebpf-abi",
        ] {
            assert!(all.contains(want), "missing `{want}` in:\n{all}");
        }
        assert_eq!(graph.len(), 11, "{all}");
        assert_eq!(
            table,
            ["the allowed crate graph has a cycle: a -> b -> c -> a"]
        );
        assert_eq!(docs.len(), 1, "{docs:?}");
    }
}
