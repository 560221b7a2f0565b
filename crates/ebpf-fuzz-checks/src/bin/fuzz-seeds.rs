//! `fuzz-seeds DIR`: writes the seed corpus ([`ebpf_fuzz_checks::seeds`]) into `DIR/<target>/`,
//! replacing what was there. `cargo xtask fuzz --seeds` runs it with `DIR` = `fuzz/seeds`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ebpf_fuzz_checks::seeds::{seeds, sources};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        return ExitCode::from(2);
    };
    match write(&dir) {
        Ok(count) => {
            println!("wrote {count} seeds to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &Path) -> Result<usize, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (vectors, objects) = sources(&root)?;
    let vectors: Vec<&Path> = vectors.iter().map(PathBuf::as_path).collect();
    let objects: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
    let mut count = 0;
    for (target, files) in seeds(&vectors, &objects)? {
        let out = dir.join(target.name());
        let io = |e: std::io::Error| format!("{}: {e}", out.display());
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(io)?;
        }
        std::fs::create_dir_all(&out).map_err(io)?;
        for (name, bytes) in files {
            std::fs::write(out.join(name), bytes).map_err(io)?;
            count += 1;
        }
    }
    Ok(count)
}
