//! Builds `tests/c/capi_test.c` with the system C compiler against `libebpf.a` and
//! `include/ebpf.h`, under AddressSanitizer (which also reports leaks at exit), and runs it on
//! an ELF fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory cargo put this build's `libebpf.a` in: beside this test binary
/// (`target/<profile>/deps/`).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .expect("the test binary's directory")
        .to_path_buf()
}

/// The C compiler: `$CC`, else `cc`.
fn compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

/// Whether the compiler runs at all; outside CI a machine without one skips the C test loudly.
fn compiler_available(cc: &str) -> bool {
    let works = Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        assert!(
            std::env::var_os("CI").is_none(),
            "no C compiler (`{cc}`): CI must have one"
        );
        eprintln!("warning: skipping the C API's C test: no C compiler (`{cc}`); set CC");
    }
    works
}

#[test]
fn c_program_passes_under_address_sanitizer() {
    let cc = compiler();
    if !compiler_available(&cc) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = root.join("../..");
    let library = library_dir().join("libebpf.a");
    assert!(library.exists(), "{} was not built", library.display());
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi_test");
    let build = Command::new(&cc)
        .args(["-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"])
        .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
        // The library's JITs clamp nothing with debug assertions (they keep every proven check).
        .arg(format!(
            "-DEBPF_DEBUG_ASSERTIONS={}",
            u8::from(cfg!(debug_assertions))
        ))
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/capi_test.c"))
        .arg(&library)
        // What the Rust standard library in libebpf.a needs (`rustc --print native-static-libs`).
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running the C compiler");
    assert!(
        build.status.success(),
        "building capi_test.c failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(&exe)
        .arg(workspace.join("tests/elf/ip_filter.o"))
        .arg(workspace.join("tests/elf/inputs/frames/ipv4_tcp_http.hex"))
        .arg(workspace.join("tests/elf/globals.o"))
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .output()
        .expect("running capi_test");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stderr.is_empty(),
        "capi_test failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    // Every check ran: the summary counts them (a change that skips a group shows here).
    let summary = stdout.lines().last().unwrap_or_default();
    let passed: u32 = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        summary.ends_with(" passed, 0 failed") && passed >= 100,
        "unexpected summary: {summary}"
    );
}
