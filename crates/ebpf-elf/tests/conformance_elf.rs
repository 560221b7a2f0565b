//! bpf_conformance in `--elf` mode: each of the 313 programs, wrapped in the small object the
//! runner sends (its README, §5.4), loads with `Selector::Only` into exactly the assembled
//! program and runs to the expected result on the interpreter.

mod common;

use ebpf_elf::{ElfObject, Selector};
use ebpf_interp::Interpreter;

#[test]
fn conformance_programs_load_from_elf() {
    ebpf_contract::conformance::check_suite(
        "interp, from ELF",
        |v| {
            // The runner names the section `.text`, or `xdp` with --xdp_prolog: try both.
            let section = if v.index % 2 == 0 { ".text" } else { "xdp" };
            let elf = common::conformance_elf(&v.program.to_bytes(), section);
            let object = ElfObject::parse(&elf).map_err(|e| format!("parse: {e}"))?;
            let programs = object.programs();
            let found = programs
                .first()
                .map(|p| (&p.name[..], &p.section[..], p.pcs.clone()));
            if programs.len() != 1 || found != Some(("main", section, 0..v.program.slot_count())) {
                return Err(format!("the object lists {programs:?}"));
            }
            let loaded = object
                .load(Selector::Only)
                .map_err(|e| format!("load: {e}"))?;
            if loaded.program != v.program {
                return Err("the loaded program differs from the assembled one".into());
            }
            if !loaded.rodata.is_empty() || !loaded.data.is_empty() {
                return Err("the object has data".into());
            }
            Ok(Interpreter::new(&loaded.program))
        },
        Interpreter::run,
        None,
    );
}
