//! bpf_conformance in `--elf` mode: each of the 313 programs, wrapped in the small object the
//! runner sends (its README, §5.4), loads with `Selector::Only` into exactly the assembled
//! program and runs to the expected result on the interpreter.

mod common;

use ebpf_abi::{Limits, MemoryMap, Region, layout};
use ebpf_elf::{ElfObject, Selector};
use ebpf_interp::Interpreter;

#[test]
fn conformance_programs_load_from_elf() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    assert_eq!(files.len(), 313);
    let limits = Limits {
        budget: Some(1_000_000),
        ..Limits::default()
    };
    let helpers = common::helpers();
    let mut failures = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v = ebpf_testdata::read(path).unwrap();
        let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
        // The runner names the section `.text`, or `xdp` with --xdp_prolog: try both.
        let section = if i % 2 == 0 { ".text" } else { "xdp" };
        let elf = common::conformance_elf(&program.to_bytes(), section);
        let object = match ElfObject::parse(&elf) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        assert_eq!(object.programs().len(), 1, "{name}");
        assert_eq!(object.programs()[0].name, "main");
        assert_eq!(object.programs()[0].section, section);
        assert_eq!(object.programs()[0].pcs, 0..program.slot_count());
        let loaded = match object.load(Selector::Only) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{name}: load: {e}"));
                continue;
            }
        };
        if loaded.program != program {
            failures.push(format!(
                "{name}: the loaded program differs from the assembled one"
            ));
            continue;
        }
        assert!(loaded.rodata.is_empty() && loaded.data.is_empty());
        let Some(want) = v.result else { continue };
        let mut mem = v.mem.clone().unwrap_or_default();
        let args = if v.mem.is_some() {
            [layout::vm_addr(layout::INPUT, 0), mem.len() as u64]
        } else {
            [0, 0]
        };
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        match Interpreter::new(&loaded.program).run(map, args, &helpers, &limits) {
            Ok(exit) if exit.r0 == want => {}
            other => failures.push(format!("{name}: got {other:?}, want {want:#x}")),
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
