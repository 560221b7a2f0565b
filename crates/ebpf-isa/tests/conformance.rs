//! The conformance suite as assembler, encoder and disassembler test data: every one of the
//! 313 programs assembles to the right bytes and survives both round trips, the `invalid_*`
//! vectors fail to assemble with a line and a reason, and the `unused-*` vectors fail to decode.

use std::collections::BTreeMap;
use std::path::Path;

use ebpf_isa::{DecodeErrorKind, Program, assemble, assemble_lines, decode, disassemble};

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn assembled(path: &Path) -> Program {
    let v = ebpf_testdata::read(path).unwrap();
    assemble_lines(&v.asm_lines()).unwrap_or_else(|e| panic!("{}: {e}", name(path)))
}

#[test]
fn every_program_assembles_and_round_trips() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    assert_eq!(files.len(), 313, "the suite has 313 positive vectors");
    let mut with_raw = 0;
    for path in &files {
        let v = ebpf_testdata::read(path).unwrap();
        let program = assembled(path);
        let bytes = program.to_bytes();
        if let Some(raw) = &v.raw {
            assert_eq!(
                &bytes,
                raw,
                "{}: assembled bytes differ from -- raw",
                name(path)
            );
            with_raw += 1;
        }
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", name(path)));
        assert_eq!(decoded, program, "{}: decode(encode(p)) != p", name(path));
        assert_eq!(
            decoded.to_bytes(),
            bytes,
            "{}: encode(decode(b)) != b",
            name(path)
        );
        let text = disassemble(&program);
        let again = assemble(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", name(path)));
        assert_eq!(
            again.to_bytes(),
            bytes,
            "{}: assemble(disassemble(b)) != b\n{text}",
            name(path)
        );
    }
    assert_eq!(with_raw, 1, "lddw.data is the one file with -- raw");
}

#[test]
fn groups_and_cpu_versions_match_the_suite_index() {
    let Some(_) = ebpf_testdata::suite() else {
        return;
    };
    let dir = ebpf_testdata::conformance_dir();
    let index = std::fs::read_to_string(dir.join("../bpf_conformance-index.tsv")).unwrap();
    let mut checked = 0;
    let mut mismatches = BTreeMap::new();
    for line in index.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let program = assembled(&dir.join(cols[0]));
        let (groups, cpu) = program.requirements();
        let mut groups: Vec<&str> = groups.iter().map(|g| g.name()).collect();
        groups.sort_unstable();
        let cpu = format!("{cpu:?}").to_lowercase();
        if (cpu.as_str(), groups.join(",").as_str()) != (cols[2], cols[3]) {
            mismatches.insert(
                cols[0].to_string(),
                (cpu, groups.join(","), cols[2], cols[3]),
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 313);
    assert!(mismatches.is_empty(), "ours vs the index: {mismatches:#?}");
}

#[test]
fn invalid_vectors_fail_to_assemble_with_line_and_reason() {
    let Some((_, negative)) = ebpf_testdata::suite() else {
        return;
    };
    let expected = [
        (
            "invalid_imm32_dec_range.data",
            "immediate out of 32-bit range: 2147483648",
        ),
        (
            "invalid_imm32_hex_range.data",
            "immediate out of 32-bit range: 0x100000000",
        ),
        ("invalid_label.data", "invalid label: NOT_A_LABEL"),
        ("invalid_lock.data", "invalid number of operands for lock"),
        ("invalid_lock2.data", "invalid number of operands for lock"),
        ("invalid_mnemonic.data", "invalid mnemonic: ldxq"),
        (
            "invalid_offset.data",
            "failed to decode register and offset: %r1",
        ),
        (
            "invalid_offset_range.data",
            "offset out of 16-bit range: +0x10000",
        ),
        (
            "invalid_operand_count.data",
            "invalid number of operands for mnemonic lddw",
        ),
        ("invalid_register.data", "invalid register: %r50"),
    ];
    let found: Vec<String> = negative
        .iter()
        .map(|p| name(p))
        .filter(|n| n.starts_with("invalid_"))
        .collect();
    for (file, message) in expected {
        let path = negative
            .iter()
            .find(|p| name(p) == file)
            .unwrap_or_else(|| panic!("{file} missing"));
        let v = ebpf_testdata::read(path).unwrap();
        let err = assemble_lines(&v.asm_lines()).expect_err(file);
        let first_asm_line = v.asm[0].0;
        assert_eq!(err.line, first_asm_line, "{file}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("line {first_asm_line}: {message}")),
            "{file}: {text}"
        );
    }
    // The eleventh, invalid_unknown_directive.data, is a reader error, not an assembler one.
    assert_eq!(found.len(), 11);
    let path = negative
        .iter()
        .find(|p| name(p) == "invalid_unknown_directive.data")
        .unwrap();
    assert!(
        ebpf_testdata::read(path)
            .unwrap_err()
            .contains("unknown directive")
    );
}

#[test]
fn unused_field_vectors_are_rejected_naming_the_field() {
    let Some((_, negative)) = ebpf_testdata::suite() else {
        return;
    };
    let unused: Vec<_> = negative
        .iter()
        .filter(|p| name(p).starts_with("unused-"))
        .collect();
    assert_eq!(unused.len(), 45);
    for path in unused {
        let file = name(path);
        let v = ebpf_testdata::read(path).unwrap();
        assert_eq!(v.error.as_deref(), Some(""), "{file}");
        let err = decode(v.raw.as_ref().unwrap()).expect_err(&file);
        assert_eq!(err.pc, 0, "{file}");
        // The file name says which field is misused: `unused-add_imm-src` -> `src`.
        let field = file.trim_end_matches(".data").rsplit('-').next().unwrap();
        let named = match &err.kind {
            DecodeErrorKind::ReservedField { field: f, .. }
            | DecodeErrorKind::InvalidSelector { field: f, .. } => f.name(),
            other => panic!("{file}: unexpected {other:?}"),
        };
        assert_eq!(named, field, "{file}: {err}");
        assert!(
            err.to_string().contains(&format!("`{field}`")),
            "{file}: {err}"
        );
    }
}
