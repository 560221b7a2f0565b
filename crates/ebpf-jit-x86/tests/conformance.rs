//! All 313 bpf_conformance programs on the x86-64 JIT, with and without constant blinding:
//! each must exit with the expected `r0`, and agree with the interpreter on the instruction
//! count.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
use ebpf_interp::Interpreter;
use ebpf_jit_x86::{JitOptions, compile};

/// An engine's `run`, over a map and `[r1, r2]`.
type Engine<'e> = &'e dyn Fn(MemoryMap<'_>, [u64; 2]) -> Result<ebpf_abi::Exit, ebpf_abi::Trap>;

fn run_suite(constant_blinding: bool) {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    let helpers = Helpers::conformance();
    let limits = Limits {
        budget: Some(1_000_000),
        ..Limits::default()
    };
    let options = JitOptions { constant_blinding };
    assert_eq!(files.len(), 313);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v = ebpf_testdata::read(path).unwrap();
        let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
        let jit = match compile(&program, &options) {
            Ok(jit) => jit,
            Err(e) => {
                failures.push(format!("{name}: compile: {e}"));
                continue;
            }
        };
        let run = |engine: Engine<'_>| {
            let mut mem = v.mem.clone().unwrap_or_default();
            let mut map = MemoryMap::new();
            let args = if v.mem.is_some() {
                [layout::vm_addr(layout::INPUT, 0), mem.len() as u64]
            } else {
                [0, 0]
            };
            map.insert(layout::INPUT, Region::Writable(&mut mem));
            let result = engine(map, args);
            (result, mem)
        };
        let (got, got_mem) = run(&|map, args| jit.run(map, args, &helpers, &limits));
        let interp = Interpreter::new(&program);
        let (want, want_mem) = run(&|map, args| interp.run(map, args, &helpers, &limits));
        match &got {
            Ok(exit) if Some(exit.r0) == v.result && got == want && got_mem == want_mem => {}
            _ => failures.push(format!(
                "{name}: got {got:?}, want {:#x?} (interpreter: {want:?})",
                v.result
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed (blinding {constant_blinding}):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn conformance_suite_passes_with_blinding() {
    run_suite(true);
}

#[test]
fn conformance_suite_passes_without_blinding() {
    run_suite(false);
}
