//! Build script: a fingerprint of the sources that decide what code this crate generates (its
//! own, and the ISA, ABI and CFG crates it translates with) and of the locked dependency
//! versions (Cranelift's among them), as `EBPF_CODEGEN_FINGERPRINT`. It is part of every code
//! cache key (`src/cache.rs`), so an object cached on disk by one build of the compiler is
//! never reused by a build that could generate different code, even at the same crate version.
//! Outside this workspace (a published crate) the sibling sources are absent and the
//! fingerprint covers this crate's sources alone; the crate version is in the key as well.

use std::path::{Path, PathBuf};
use std::{env, fs};

#[path = "src/fnv.rs"]
#[expect(dead_code, reason = "the build script uses only part of the hasher")]
mod fnv;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let crates = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut inputs = vec![manifest.join("src")];
    for sibling in ["ebpf-isa", "ebpf-abi", "ebpf-cfg"] {
        inputs.push(crates.join(sibling).join("src"));
    }
    if let Some(root) = crates.parent() {
        inputs.push(root.join("Cargo.lock"));
    }
    let mut hash = fnv::Fnv1a::new();
    for input in &inputs {
        if !input.exists() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", input.display());
        let mut files = Vec::new();
        collect(input, &mut files);
        files.sort();
        for file in files {
            let name = file.strip_prefix(&crates).unwrap_or(&file);
            hash.write(name.to_string_lossy().as_bytes());
            hash.write(&[0]);
            hash.write(&fs::read(&file).unwrap_or_default());
            hash.write(&[0]);
        }
    }
    println!(
        "cargo:rustc-env=EBPF_CODEGEN_FINGERPRINT={:016x}",
        hash.finish()
    );
}

/// Every file under `path` (or `path` itself, if it is a file).
fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(path) else {
        if path.is_file() {
            out.push(path.to_path_buf());
        }
        return;
    };
    for entry in entries.flatten() {
        collect(&entry.path(), out);
    }
}
