//! All 313 bpf_conformance programs on the interpreter: each must exit with the expected `r0`.

use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
use ebpf_interp::Interpreter;

#[test]
fn conformance_suite_passes() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    let helpers = Helpers::conformance();
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
        let interp = Interpreter::new(&program);
        let mut mem = v.mem.clone().unwrap_or_default();
        let mut map = MemoryMap::new();
        let args = if v.mem.is_some() {
            [layout::vm_addr(layout::INPUT, 0), mem.len() as u64]
        } else {
            [0, 0]
        };
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        match interp.run(map, args, &helpers, &limits) {
            Ok(exit) if Some(exit.r0) == v.result => {}
            other => failures.push(format!("{name}: got {other:?}, want {:#x?}", v.result)),
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
