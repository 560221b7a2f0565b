//! Malformed and unsupported objects: each is an `ElfError` with the right kind and the file
//! offset of the offending structure (header field, section header, symbol, relocation entry or
//! instruction) — never a panic, never a wrong program.

mod common;

use common::{
    SHT_REL, Section, conformance_elf, fixture, rel, section, sections, strtab, symbol, u64_at,
    write_elf,
};
use ebpf_elf::{ElfError, ElfErrorKind, ElfObject, LoadedElf, Selector};

fn parse_err(bytes: &[u8]) -> ElfError {
    match ElfObject::parse(bytes) {
        Ok(o) => panic!("parsed: {:?}", o.programs()),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn load(bytes: &[u8], selector: Selector<'_>) -> Result<LoadedElf, ElfError> {
    ElfObject::parse(bytes).unwrap().load(selector)
}

fn load_err(bytes: &[u8], selector: Selector<'_>) -> ElfError {
    let e = load(bytes, selector).unwrap_err();
    if let Some(offset) = e.offset {
        assert!(e.to_string().contains(&format!("{offset:#x}")), "{e}");
    }
    e
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The relocation entries patching section `target`: (entry offset, r_offset, sym, type).
fn relocs(b: &[u8], target: &str) -> Vec<(usize, u64, u32, u32)> {
    let index = section(b, target).index as u32;
    let table = sections(b)
        .into_iter()
        .find(|s| s.sh_type == SHT_REL && s.info == index)
        .unwrap_or_else(|| panic!("no relocations for {target}"));
    (0..table.size / 16)
        .map(|i| {
            let at = table.offset + i * 16;
            let info = u64_at(b, at + 8);
            (at, u64_at(b, at), (info >> 32) as u32, info as u32)
        })
        .collect()
}

// ---- The ELF header -------------------------------------------------------------------------

#[test]
fn empty_and_foreign_files() {
    let e = parse_err(&[]);
    assert_eq!(e.offset, Some(0));
    assert!(matches!(e.kind, ElfErrorKind::Truncated { .. }), "{e}");
    let e = parse_err(b"MZ\x90\x00 this is not an ELF file at all, it is much too long anyway");
    assert_eq!((e.offset, e.kind), (Some(0), ElfErrorKind::NotElf));
    let e = parse_err(b"\x7fEL");
    assert!(matches!(e.kind, ElfErrorKind::Truncated { .. }), "{e}");
}

#[test]
fn truncated_headers() {
    let bytes = fixture("strings");
    for len in [4, 5, 6, 16, 40, 63] {
        let e = parse_err(&bytes[..len]);
        assert_eq!(e.offset, Some(0), "{len}");
        assert_eq!(
            e.kind,
            ElfErrorKind::Truncated {
                what: "the ELF header"
            },
            "{len}"
        );
    }
    // The section header table is cut off.
    let shoff = u64_at(&bytes, 40);
    let e = parse_err(&bytes[..bytes.len() - 10]);
    assert_eq!(e.offset, Some(shoff));
    assert_eq!(
        e.kind,
        ElfErrorKind::Truncated {
            what: "the section header table"
        }
    );
}

#[test]
fn wrong_class_endianness_type_machine() {
    let good = fixture("strings");
    let mut b = good.clone();
    b[4] = 1;
    let e = parse_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (Some(4), ElfErrorKind::WrongClass { class: 1 })
    );
    let mut b = good.clone();
    b[5] = 2;
    let e = parse_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (Some(5), ElfErrorKind::WrongEndianness { data: 2 })
    );
    let mut b = good.clone();
    put_u16(&mut b, 16, 2);
    let e = parse_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (Some(16), ElfErrorKind::NotRelocatable { e_type: 2 })
    );
    let mut b = good.clone();
    put_u16(&mut b, 18, 62);
    let e = parse_err(&b);
    assert!(e.to_string().contains("EM_BPF"), "{e}");
    assert_eq!(
        (e.offset, e.kind),
        (Some(18), ElfErrorKind::WrongMachine { machine: 62 })
    );
}

#[test]
fn bad_section_header_table() {
    let good = fixture("strings");
    // Entry size.
    let mut b = good.clone();
    put_u16(&mut b, 58, 40);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(58));
    assert!(matches!(e.kind, ElfErrorKind::BadHeader { .. }), "{e}");
    // Table offset past the end, or overflowing.
    for shoff in [good.len() as u64, u64::MAX - 8] {
        let mut b = good.clone();
        put_u64(&mut b, 40, shoff);
        let e = parse_err(&b);
        assert_eq!(e.offset, Some(shoff));
        assert!(matches!(e.kind, ElfErrorKind::Truncated { .. }), "{e}");
    }
    // More sections than the file holds.
    let mut b = good.clone();
    put_u16(&mut b, 60, 0xfff0);
    assert!(matches!(parse_err(&b).kind, ElfErrorKind::Truncated { .. }));
    // Section-name table index.
    let mut b = good.clone();
    put_u16(&mut b, 62, 200);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(62));
    assert!(
        matches!(e.kind, ElfErrorKind::BadSectionIndex { index: 200, .. }),
        "{e}"
    );
}

#[test]
fn section_contents_outside_the_file() {
    let good = fixture("strings");
    let text = section(&good, ".text");
    for (offset, size) in [
        (good.len() as u64, 8),
        (text.offset as u64, good.len() as u64),
        (u64::MAX - 4, 16),
        (8, u64::MAX),
    ] {
        let mut b = good.clone();
        put_u64(&mut b, text.header + 24, offset);
        put_u64(&mut b, text.header + 32, size);
        let e = parse_err(&b);
        assert_eq!(e.offset, Some(text.header as u64), "{e}");
        assert_eq!(
            e.kind,
            ElfErrorKind::SectionOutOfRange {
                section: text.index,
                start: offset,
                size
            }
        );
    }
}

#[test]
fn bad_names_and_alignment() {
    let good = fixture("strings");
    let text = section(&good, ".text");
    let mut b = good.clone();
    put_u32(&mut b, text.header, 0x7fff_0000);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(text.header as u64));
    assert!(
        matches!(
            e.kind,
            ElfErrorKind::BadStringOffset {
                offset: 0x7fff_0000
            }
        ),
        "{e}"
    );
    let mut b = good.clone();
    put_u64(&mut b, text.header + 48, 12);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(text.header as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadHeader { .. }), "{e}");
    // A code section whose size is not a whole number of instructions.
    let mut b = good.clone();
    put_u64(&mut b, text.header + 32, text.size as u64 - 3);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(text.header as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadHeader { .. }), "{e}");
}

#[test]
fn bad_symbols() {
    let good = fixture("strings");
    let symtab = section(&good, ".symtab");
    let count = symtab.size / 24;
    let last = symtab.offset + (count - 1) * 24; // str_to_u64, the global function
    // Name outside the string table.
    let mut b = good.clone();
    put_u32(&mut b, last, 0xffff_fff0);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(last as u64));
    assert!(
        matches!(e.kind, ElfErrorKind::BadStringOffset { .. }),
        "{e}"
    );
    // Section index out of range.
    let mut b = good.clone();
    put_u16(&mut b, last + 6, 0x0fff);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(last as u64));
    assert!(
        matches!(e.kind, ElfErrorKind::BadSectionIndex { index: 0x0fff, .. }),
        "{e}"
    );
    // A function not on an instruction boundary, or past its section's end.
    for value in [4, 1 << 40] {
        let mut b = good.clone();
        put_u64(&mut b, last + 8, value);
        let e = parse_err(&b);
        assert_eq!(e.offset, Some(last as u64));
        assert!(matches!(e.kind, ElfErrorKind::BadSymbol { .. }), "{e}");
    }
    // The symbol table's link to its string table.
    let mut b = good.clone();
    put_u32(&mut b, symtab.header + 40, 99);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(symtab.header as u64));
    assert!(
        matches!(e.kind, ElfErrorKind::BadSectionIndex { index: 99, .. }),
        "{e}"
    );
}

// ---- Relocations ------------------------------------------------------------------------------

#[test]
fn relocation_with_a_bad_symbol_index() {
    let good = fixture("calls");
    let (entry, _, _, r_type) = relocs(&good, "xdp")[0];
    let mut b = good.clone();
    put_u64(&mut b, entry + 8, (5000u64 << 32) | u64::from(r_type));
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(entry as u64));
    assert!(
        matches!(
            e.kind,
            ElfErrorKind::BadSymbolIndex {
                index: 5000,
                count: 10
            }
        ),
        "{e}"
    );
}

#[test]
fn relocation_outside_its_section() {
    let good = fixture("calls");
    let xdp = section(&good, "xdp");
    let (entry, _, _, _) = relocs(&good, "xdp")[1];
    for r_offset in [xdp.size as u64, xdp.size as u64 - 4, u64::MAX - 2] {
        let mut b = good.clone();
        put_u64(&mut b, entry, r_offset);
        let e = parse_err(&b);
        assert_eq!(e.offset, Some(entry as u64));
        assert_eq!(
            e.kind,
            ElfErrorKind::RelocationOutOfRange {
                section: "xdp".into(),
                r_offset
            }
        );
    }
    // Inside, but not on an instruction boundary.
    let mut b = good.clone();
    put_u64(&mut b, entry, 4);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(entry as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadRelocation { .. }), "{e}");
    // A relocation table whose target section does not exist.
    let table = sections(&good)
        .into_iter()
        .find(|s| s.sh_type == SHT_REL)
        .unwrap();
    let mut b = good.clone();
    put_u32(&mut b, table.header + 44, 77);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(table.header as u64));
    assert!(
        matches!(e.kind, ElfErrorKind::BadSectionIndex { index: 77, .. }),
        "{e}"
    );
}

#[test]
fn unknown_and_duplicate_relocations() {
    let good = fixture("calls");
    let all = relocs(&good, "xdp");
    let (entry, _, sym, _) = all[0];
    let mut b = good.clone();
    put_u64(&mut b, entry + 8, (u64::from(sym) << 32) | 77);
    let e = parse_err(&b);
    assert_eq!(
        (e.offset, e.kind),
        (
            Some(entry as u64),
            ElfErrorKind::UnknownRelocationType { r_type: 77 }
        )
    );
    let (second, _, _, _) = all[1];
    let mut b = good.clone();
    put_u64(&mut b, second, all[0].1);
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(second as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadRelocation { .. }), "{e}");
}

#[test]
fn relocation_of_an_instruction_that_is_neither_lddw_nor_call() {
    let good = fixture("calls");
    let xdp = section(&good, "xdp");
    let all = relocs(&good, "xdp");
    let (entry, _, _, _) = all[0];
    // Slot 0 of call_chain is an ALU or store instruction, not lddw or call.
    let opcode = good[xdp.offset];
    assert!(opcode != 0x18 && opcode != 0x85, "{opcode:#x}");
    let mut b = good.clone();
    put_u64(&mut b, entry, 0);
    let e = load_err(&b, Selector::Section("xdp"));
    assert_eq!(e.offset, Some(entry as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadRelocation { .. }), "{e}");
    // An lddw relocation on a call, and a call relocation on an lddw.
    let globals = fixture("globals");
    let (entry, _, sym, _) = relocs(&globals, "xdp")[0];
    let mut b = globals.clone();
    put_u64(&mut b, entry + 8, (u64::from(sym) << 32) | 10);
    let e = load_err(&b, Selector::Only);
    assert_eq!(e.offset, Some(entry as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadRelocation { .. }), "{e}");
}

#[test]
fn relocation_of_the_second_slot_of_an_lddw() {
    let good = fixture("globals");
    let (entry, r_offset, _, _) = relocs(&good, "xdp")[0];
    let mut b = good.clone();
    put_u64(&mut b, entry, r_offset + 8);
    let e = load_err(&b, Selector::Only);
    assert_eq!(e.offset, Some(entry as u64));
    assert!(matches!(e.kind, ElfErrorKind::BadRelocation { .. }), "{e}");
}

#[test]
fn an_invalid_instruction_is_a_decode_error_at_its_offset() {
    let good = fixture("strings");
    let text = section(&good, ".text");
    let mut b = good.clone();
    // The last instruction of .text (str_to_u64's exit) becomes opcode 0xff.
    let at = text.offset + text.size - 8;
    b[at] = 0xff;
    let e = load_err(&b, Selector::Only);
    assert_eq!(e.offset, Some(at as u64));
    assert!(matches!(e.kind, ElfErrorKind::Decode(_)), "{e}");
}

#[test]
fn a_bss_too_large_to_allocate() {
    let good = fixture("globals");
    let bss = section(&good, ".bss");
    let mut b = good.clone();
    put_u64(&mut b, bss.header + 32, 1 << 40);
    let e = load_err(&b, Selector::Only);
    assert_eq!(e.offset, Some(bss.header as u64));
    assert!(matches!(e.kind, ElfErrorKind::TooLarge { .. }), "{e}");
}

// ---- Unsupported features ---------------------------------------------------------------------

#[test]
fn a_map_section_that_cannot_be_read_fails_only_the_programs_that_use_it() {
    // `unsupported/maps.o` was built without -g: its `.maps` has no BTF to describe it.
    let b = fixture("unsupported/maps");
    let object = ElfObject::parse(&b).unwrap();
    let e = object.maps().unwrap_err();
    assert!(matches!(e.kind, ElfErrorKind::BadBtf { .. }), "{e}");
    assert_eq!(e.offset, Some(section(&b, ".maps").header as u64));
    let e = load_err(&b, Selector::Function("count_packets"));
    assert!(e.to_string().contains("without a .BTF section"), "{e}");
    // The legacy map in `maps` is read, and the program that uses it links.
    let loaded = load(&b, Selector::Function("legacy_lookup")).unwrap();
    assert_eq!(loaded.maps.len(), 1);
    assert_eq!(loaded.maps[0].name, "legacy_table");
    assert_eq!(
        (
            loaded.maps[0].map_type,
            loaded.maps[0].key_size,
            loaded.maps[0].value_size
        ),
        (2, 4, 8)
    );
    // A program in the same object that uses no map loads and runs.
    let loaded = load(&b, Selector::Function("no_maps")).unwrap();
    assert_eq!(common::run(&loaded, &[1, 2, 3], None).0.unwrap().r0, 4);
}

/// The corpus' firewall with its `.BTF` broken in one place at a time: each is an error
/// (for `maps()` and for loading the program), never a panic or a wrong definition.
#[test]
fn malformed_btf_is_a_clear_error() {
    let good = std::fs::read(common::elf_dir().join("../bpf/xdp_firewall.o")).unwrap();
    let btf = section(&good, ".BTF");
    let cases: [(usize, &[u8], &str); 4] = [
        (0, &[0, 0], "bad magic"),
        (4, &[8, 0, 0, 0], "hdr_len"),
        // type_len past the section's end.
        (12, &[0xff, 0xff, 0xff, 0x00], "the type table lies outside"),
        // str_off past the section's end.
        (
            16,
            &[0xff, 0xff, 0xff, 0x00],
            "the string table lies outside",
        ),
    ];
    for (at, bytes, message) in cases {
        let mut b = good.clone();
        b[btf.offset + at..btf.offset + at + bytes.len()].copy_from_slice(bytes);
        let e = ElfObject::parse(&b).unwrap().maps().unwrap_err();
        assert!(matches!(e.kind, ElfErrorKind::BadBtf { .. }), "{e}");
        assert!(e.to_string().contains(message), "{message}: {e}");
        let e = load_err(&b, Selector::Function("xdp_firewall"));
        assert!(e.to_string().contains(message), "{e}");
    }
    // A section cut short.
    let mut b = good.clone();
    let shdr = btf.header;
    put_u64(&mut b, shdr + 32, 20);
    let e = ElfObject::parse(&b).unwrap().maps().unwrap_err();
    assert!(e.to_string().contains("shorter than its header"), "{e}");
}

/// A map reference that does not point at a map's start, and one into a map section whose
/// symbol names no map.
#[test]
fn references_into_the_middle_of_a_map_are_errors() {
    let good = std::fs::read(common::elf_dir().join("../bpf/xdp_firewall.o")).unwrap();
    let text = section(&good, "xdp");
    // The first relocated lddw: give it an addend of 8 (its imm).
    let (_, r_offset, _, _) = relocs(&good, "xdp")[0];
    let mut b = good.clone();
    put_u32(&mut b, text.offset + r_offset as usize + 4, 8);
    let e = load_err(&b, Selector::Function("xdp_firewall"));
    let ElfErrorKind::BadMap { map, reason } = &e.kind else {
        panic!("{e}")
    };
    assert_eq!(map, "verdicts");
    assert!(reason.contains("8 bytes into"), "{e}");
}

#[test]
fn kfuncs_and_externs_are_unsupported_and_named() {
    let b = fixture("unsupported/kfunc");
    for (program, name, what) in [
        ("uses_kfunc", "bpf_ktime_get_coarse_ns", "kfunc"),
        ("uses_kconfig", "LINUX_KERNEL_VERSION", "extern"),
    ] {
        let e = load_err(&b, Selector::Function(program));
        let ElfErrorKind::Unsupported { symbol, reason } = &e.kind else {
            panic!("{program}: {e}")
        };
        assert_eq!(symbol, name);
        assert!(reason.contains(what), "{e}");
        assert!(e.offset.is_some());
    }
}

// ---- Hand-built objects ---------------------------------------------------------------------

/// An object with `.text` holding `code`, function symbols `(name, value, size, global)` and
/// `.rel.text` entries.
fn object(code: &[u8], functions: &[(&str, u64, u64, bool)], relocations: &[Vec<u8>]) -> Vec<u8> {
    let mut names = vec![".shstrtab", ".symtab", ".text", ".rel.text"];
    names.extend(functions.iter().map(|f| f.0));
    let (table, off) = strtab(&names);
    let mut symtab = symbol(0, 0, 0, 0, 0);
    let mut locals = Vec::new();
    let mut globals = Vec::new();
    for (i, (_, value, size, global)) in functions.iter().enumerate() {
        let info = if *global { 0x12 } else { 0x02 };
        let s = symbol(off[4 + i], info, 3, *value, *size);
        if *global {
            globals.push(s)
        } else {
            locals.push(s)
        }
    }
    let first_global = 1 + locals.len() as u32;
    symtab.extend(locals.into_iter().flatten());
    symtab.extend(globals.into_iter().flatten());
    let sections = [
        Section::names(off[0], table),
        Section::symbols(off[1], symtab, first_global),
        Section::code(off[2], code),
        Section {
            name_offset: off[3],
            sh_type: SHT_REL,
            flags: 0,
            data: relocations.concat(),
            link: 2,
            info: 3,
            align: 8,
            entsize: 16,
        },
    ];
    write_elf(&sections, 1)
}

/// File offset of `.text`: the offset of its first instruction.
fn text_offset(b: &[u8]) -> u64 {
    section(b, ".text").offset as u64
}

fn asm(text: &str) -> Vec<u8> {
    ebpf_isa::assemble(text).unwrap().to_bytes()
}

#[test]
fn a_jump_out_of_its_function() {
    // f: ja +2 (into g); exit — g: mov r0, 1; exit
    let code = asm("ja +2\nexit\nmov %r0, 1\nexit");
    let b = object(&code, &[("f", 0, 16, true), ("g", 16, 16, true)], &[]);
    let e = load_err(&b, Selector::Function("f"));
    assert_eq!(e.offset, Some(text_offset(&b)));
    assert_eq!(
        e.kind,
        ElfErrorKind::JumpOutsideFunction {
            function: "f".into()
        }
    );
    assert_eq!(load(&b, Selector::Function("g")).unwrap().program.len(), 2);
}

#[test]
fn a_function_that_falls_through() {
    let code = asm("mov %r0, 1\nmov %r0, 2\nexit");
    let b = object(&code, &[("f", 0, 8, true), ("g", 8, 16, true)], &[]);
    let e = load_err(&b, Selector::Function("f"));
    assert_eq!(e.offset, Some(text_offset(&b)));
    assert_eq!(
        e.kind,
        ElfErrorKind::FallsThrough {
            function: "f".into()
        }
    );
}

#[test]
fn calls_to_nowhere() {
    // An unrelocated local call past the section's end.
    let code = asm("call local +100\nexit");
    let b = object(&code, &[("f", 0, 16, true)], &[]);
    let e = load_err(&b, Selector::Only);
    assert_eq!(e.offset, Some(text_offset(&b)));
    assert!(matches!(e.kind, ElfErrorKind::BadCallTarget { .. }), "{e}");
    // A relocated call whose symbol + imm lies past the end.
    let mut code = asm("call local -1\nexit\nmov %r0, 7\nexit");
    code[4..8].copy_from_slice(&50i32.to_le_bytes());
    let b = object(
        &code,
        &[("f", 0, 16, true), ("g", 16, 16, false)],
        &[rel(0, 1, 10)],
    );
    let e = load_err(&b, Selector::Only);
    assert!(matches!(e.kind, ElfErrorKind::BadCallTarget { .. }), "{e}");
}

#[test]
fn a_relocated_call_is_linked_to_its_symbol() {
    // f calls g through a relocation against g (imm -1, as clang emits); g is local.
    let code = asm("mov %r1, 5\ncall local -1\nadd %r0, 1\nexit\nmov %r0, %r1\nexit");
    let b = object(
        &code,
        &[("f", 0, 32, true), ("g", 32, 16, false)],
        &[rel(8, 1, 10)],
    );
    let object = ElfObject::parse(&b).unwrap();
    assert_eq!(object.programs().len(), 1);
    let loaded = object.load(Selector::Only).unwrap();
    assert_eq!(
        loaded.program.to_bytes(),
        asm("mov %r1, 5\ncall local +2\nadd %r0, 1\nexit\nmov %r0, %r1\nexit")
    );
    assert_eq!(common::run(&loaded, &[], None).0.unwrap().r0, 6);
}

#[test]
fn rela_relocations_are_unsupported() {
    let code = asm("mov %r0, 1\nexit");
    let mut b = object(&code, &[("f", 0, 16, true)], &[rel(0, 1, 1)]);
    let table = sections(&b)
        .into_iter()
        .find(|s| s.sh_type == SHT_REL)
        .unwrap();
    put_u32(&mut b, table.header + 4, 4); // SHT_RELA
    let e = parse_err(&b);
    assert_eq!(e.offset, Some(table.header as u64));
    assert!(matches!(e.kind, ElfErrorKind::Unsupported { .. }), "{e}");
}

#[test]
fn objects_without_programs() {
    // No section headers at all.
    let mut b = conformance_elf(&asm("exit"), ".text");
    put_u64(&mut b, 40, 0);
    put_u16(&mut b, 60, 0);
    put_u16(&mut b, 62, 0);
    let object = ElfObject::parse(&b).unwrap();
    assert!(object.programs().is_empty());
    let e = object.load(Selector::Only).unwrap_err();
    assert_eq!((e.offset, e.kind), (None, ElfErrorKind::NoPrograms));
}

#[test]
fn extended_section_numbering() {
    // e_shnum = 0: the count is the null section's sh_size.
    let mut b = conformance_elf(&asm("mov %r0, 3\nexit"), ".text");
    let shoff = u64_at(&b, 40) as usize;
    put_u16(&mut b, 60, 0);
    put_u64(&mut b, shoff + 32, 4);
    let loaded = load(&b, Selector::Only).unwrap();
    assert_eq!(loaded.program.len(), 2);
}

#[test]
fn a_32_bit_absolute_address_in_data_is_unsupported() {
    // lookup's table of string pointers, relocated by R_BPF_64_ABS64; as ABS32 it cannot hold
    // a VM address.
    let good = fixture("lookup");
    let (entry, _, sym, r_type) = relocs(&good, ".rodata")[0];
    assert_eq!(r_type, 2);
    let mut b = good.clone();
    put_u64(&mut b, entry + 8, (u64::from(sym) << 32) | 3);
    let e = load_err(&b, Selector::Function("crc32"));
    assert_eq!(e.offset, Some(entry as u64));
    let ElfErrorKind::Unsupported { symbol, .. } = &e.kind else {
        panic!("{e}")
    };
    assert_eq!(symbol, ".rodata.str1.1");
}

/// Names come from the object: a message shows them escaped, so an object cannot clear the
/// screen or set the terminal's title through an error (nor print invalid UTF-8).
#[test]
fn names_from_the_object_are_escaped_in_messages() {
    let code = asm("mov %r0, 1\nexit\nmov %r0, 2\nmov %r0, 3\nexit");
    let mut b = object(
        &code,
        &[
            ("f\u{1b}[2J", 0, 16, true),
            ("g\u{1b}]0;pwned\u{7}", 16, 8, true),
            ("hX", 24, 16, true),
        ],
        &[],
    );
    let at = b.windows(3).position(|w| w == b"hX\0").unwrap();
    b[at + 1] = 0xff;
    let e = load_err(&b, Selector::Only);
    assert_eq!(
        e.to_string(),
        "the object has 3 programs: \"f\\u{1b}[2J\" (.text), \"g\\u{1b}]0;pwned\\u{7}\" \
         (.text), h\u{fffd} (.text); select one by section or function"
    );
    let e = load_err(&b, Selector::Function("g\u{1b}]0;pwned\u{7}"));
    assert_eq!(
        e.to_string(),
        format!(
            "function `\"g\\u{{1b}}]0;pwned\\u{{7}}\"` does not end with exit or an \
             unconditional jump (at file offset {:#x})",
            text_offset(&b) + 16
        )
    );
    let e = load_err(&b, Selector::Section("\0x"));
    assert_eq!(e.to_string(), "no program matches section `\"\\0x\"`");
}

/// `histogram_counts - 4` as clang writes it: the first slot's immediate 0xfffffffc, the second
/// slot's 0. libbpf reads the addend as an `s32`, so the address is 4 bytes before the array's;
/// read as an unsigned 64-bit immediate it was almost 4 GiB after it, in the next region (the
/// input: a run read its packet where it meant a global). Found by review.
#[test]
fn a_negative_addend_is_the_signed_32_bit_immediate() {
    let address_at_pc_41 = |bytes: &[u8]| {
        let loaded = load(bytes, Selector::Only).unwrap();
        match loaded.program.iter().find(|&(pc, _)| pc == 41) {
            Some((_, ebpf_isa::Insn::LoadImm64 { imm, .. })) => *imm,
            other => panic!("pc 41: {other:?}"),
        }
    };
    let mut bytes = fixture("globals");
    let before = address_at_pc_41(&bytes);
    let xdp = section(&bytes, "xdp");
    let (_, r_offset, _, _) = relocs(&bytes, "xdp")
        .into_iter()
        .find(|&(_, r, _, _)| r == 41 * 8)
        .expect("pc 41 (r1 = histogram_counts ll) is relocated");
    put_u32(
        &mut bytes,
        xdp.offset + r_offset as usize + 4,
        (-4i32) as u32,
    );
    assert_eq!(address_at_pc_41(&bytes), before.wrapping_sub(4));
}
