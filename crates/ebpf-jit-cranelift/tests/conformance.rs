//! All 313 bpf_conformance programs on the Cranelift JIT: each must exit with the expected `r0`,
//! and match the interpreter exactly (r0, trap, instruction count, final memory).

mod common;

use ebpf_abi::Limits;

#[test]
fn conformance_suite_passes() {
    if !ebpf_jit_cranelift::host_supported() {
        eprintln!("skipping: cranelift does not support this host");
        return;
    }
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    let helpers = common::helpers();
    let limits = Limits {
        budget: Some(1_000_000),
        ..Limits::default()
    };
    assert_eq!(files.len(), 313);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v = ebpf_testdata::read(path).unwrap();
        let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
        let jit = match ebpf_jit_cranelift::compile(&program, &common::options()) {
            Ok(jit) => jit,
            Err(e) => {
                failures.push(format!("{name}: compile error: {e}"));
                continue;
            }
        };
        let setup = common::Setup::input(v.mem.clone().unwrap_or_default());
        match common::compare_compiled(&program, &jit, &setup, &helpers, &limits) {
            Ok(outcome) => match outcome.result {
                Ok(exit) if Some(exit.r0) == v.result => {}
                other => failures.push(format!("{name}: got {other:?}, want {:#x?}", v.result)),
            },
            Err(diff) => failures.push(format!("{name}: {diff}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
