//! Compiles the C loop programs of `tests/elf/loops/` natively, with the host's C compiler
//! (`$CC`, else `cc`) at `-O2`, into a static library linked into this crate: the native
//! column of the facade's `loops` bench ([`native_loop`](src/native.rs)).
//!
//! No C compiler, a failed compile or a cross build (the objects would be the host's) leaves
//! the column out with a `cargo:warning`; the build never fails for it, and nothing but that
//! bench needs the library (the tests read the native results from `tests/elf/expected.txt`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(native_loops)");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let elf = manifest.join("../../tests/elf");
    println!("cargo::rerun-if-changed={}", elf.join("loops").display());
    println!(
        "cargo::rerun-if-changed={}",
        elf.join("fixture.h").display()
    );
    println!("cargo::rerun-if-env-changed=CC");
    println!("cargo::rerun-if-env-changed=AR");
    match build(&elf) {
        Ok(()) => println!("cargo::rustc-cfg=native_loops"),
        Err(why) => println!("cargo::warning=the loops bench will have no native column: {why}"),
    }
}

fn build(elf: &Path) -> Result<(), String> {
    let (host, target) = (env::var("HOST"), env::var("TARGET"));
    if host != target {
        return Err(format!("cross build ({target:?} on {host:?})"));
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let ar = env::var("AR").unwrap_or_else(|_| "ar".to_string());
    let mut sources: Vec<PathBuf> = fs::read_dir(elf.join("loops"))
        .map_err(|e| format!("tests/elf/loops: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    let mut objects = Vec::new();
    for source in &sources {
        let object = out.join(source.file_stem().ok_or("a source without a name")?);
        let object = object.with_extension("o");
        // The flags of `cargo xtask fixtures`' native build, which recorded the expected
        // results, without its main().
        run(Command::new(&cc)
            .args([
                "-O2",
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-DFIXTURE_NO_MAIN",
                "-c",
            ])
            .arg(source)
            .arg("-o")
            .arg(&object))?;
        objects.push(object);
    }
    let library = out.join("libebpf_native_loops.a");
    // `ar r` adds to an existing archive: start from none.
    let _ = fs::remove_file(&library);
    run(Command::new(&ar).arg("crs").arg(&library).args(&objects))?;
    println!("cargo::rustc-link-search=native={}", out.display());
    println!("cargo::rustc-link-lib=static=ebpf_native_loops");
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}
