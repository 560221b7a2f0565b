//! The C fixtures of `tests/elf/`, compiled by clang-19: each parses, lists its programs, loads
//! by section, by function and (when it has one program) without a selector, and gives on
//! every input the result the same C gives natively (`tests/elf/expected.txt`).

mod common;

use std::collections::BTreeMap;

use common::{expectations, fixture, input, run, section, sections};
use ebpf_elf::{DATA_BASE, ElfErrorKind, ElfObject, LoadedElf, RODATA_BASE, Selector};
use ebpf_isa::{CallKind, CpuVersion, Insn};

/// The programs each object must list: (function, section).
const PROGRAMS: &[(&str, &[(&str, &str)])] = &[
    ("calls", &[("mix_words", ".text"), ("call_chain", "xdp")]),
    ("calls_O0", &[("mix_words", ".text"), ("call_chain", "xdp")]),
    ("checksum", &[("inet_checksum", "tc"), ("adler32", "tc")]),
    ("globals", &[("histogram", "xdp")]),
    ("ip_filter", &[("xdp_ip_filter", "xdp")]),
    (
        "lookup",
        &[("crc32", "classifier"), ("http_method", "socket")],
    ),
    ("port_filter", &[("socket_port_filter", "socket")]),
    ("sort", &[("sort_bytes", "tc/sort")]),
    ("strings", &[("str_to_u64", ".text")]),
    ("v4_ops", &[("signed_stats", "xdp")]),
    // The looping programs of the `loops` bench.
    ("loops/base64", &[("base64_decode", "socket")]),
    ("loops/fnv1a", &[("fnv1a_64", "tc")]),
    ("loops/muldiv", &[("mul_div", "tc")]),
    ("loops/packet", &[("packet_stats", "xdp")]),
    ("loops/parse", &[("parse_ints", "socket")]),
    ("loops/sieve", &[("sieve", "xdp")]),
    ("loops/sort", &[("insertion_sort", "tc")]),
    ("loops/sum", &[("array_sum", "tc")]),
    (
        "unsupported/maps",
        &[
            ("count_packets", "xdp"),
            ("legacy_lookup", "socket"),
            ("no_maps", "tc"),
        ],
    ),
    (
        "unsupported/kfunc",
        &[("uses_kfunc", "xdp"), ("uses_kconfig", "tc")],
    ),
    (
        "unsupported/program_types",
        &[
            ("probe", "kprobe/do_sys_open"),
            ("trace", "tracepoint/syscalls/sys_enter_openat"),
            ("entry", "fentry/tcp_connect"),
        ],
    ),
    // The corpus of `tests/bpf/` (maps, kernel contexts and helpers).
    ("../bpf/socket_logger", &[("socket_logger", "socket")]),
    ("../bpf/xdp_conntrack", &[("xdp_conntrack", "xdp")]),
    ("../bpf/xdp_counter", &[("xdp_counter", "xdp")]),
    ("../bpf/xdp_firewall", &[("xdp_firewall", "xdp")]),
    ("../bpf/xdp_lb", &[("xdp_lb", "xdp")]),
    (
        "../bpf/xdp_tailcall",
        &[
            ("handle_tcp", "xdp"),
            ("handle_udp", "xdp"),
            ("handle_icmp", "xdp"),
            ("xdp_dispatch", "xdp"),
        ],
    ),
    ("../bpf/xdp_tcp_options", &[("xdp_tcp_options", "xdp")]),
    ("../bpf/tc_classifier", &[("tc_classifier", "tc")]),
    ("../bpf/xdp_redirect", &[("xdp_redirect", "xdp")]),
    ("../bpf/xdp_flow_stats", &[("xdp_flow_stats", "xdp")]),
    ("../bpf/xdp_bss_counter", &[("xdp_bss_counter", "xdp")]),
    ("../bpf/xdp_globals", &[("second", "xdp"), ("first", "xdp")]),
    ("../bpf/xdp_tenants", &[("xdp_tenants", "xdp")]),
];

fn parse(name: &str) -> ElfObject {
    ElfObject::parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load(name: &str, selector: Selector<'_>) -> LoadedElf {
    parse(name)
        .load(selector)
        .unwrap_or_else(|e| panic!("{name} {selector}: {e}"))
}

#[test]
fn the_base_addresses_are_the_contracts() {
    use ebpf_abi::layout::{DATA, RODATA, vm_addr};
    assert_eq!(RODATA_BASE, vm_addr(RODATA, 0));
    assert_eq!(DATA_BASE, vm_addr(DATA, 0));
}

#[test]
fn every_fixture_lists_its_programs() {
    assert_eq!(common::all_fixture_names().len(), PROGRAMS.len());
    for name in common::all_fixture_names() {
        let (_, want) = PROGRAMS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name}: not in PROGRAMS"));
        let object = parse(&name);
        let mut got: Vec<(&str, &str)> = object
            .programs()
            .iter()
            .map(|p| (p.name.as_str(), p.section.as_str()))
            .collect();
        let mut want = want.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
        for p in object.programs() {
            assert!(!p.pcs.is_empty(), "{name}: {p:?}");
        }
    }
}

#[test]
fn every_program_loads_by_function_and_by_unique_section() {
    for (name, programs) in PROGRAMS {
        if name.starts_with("unsupported/") {
            continue;
        }
        let object = parse(name);
        for (function, sec) in *programs {
            let by_function = object
                .load(Selector::Function(function))
                .unwrap_or_else(|e| panic!("{name} {function}: {e}"));
            assert!(!by_function.program.is_empty());
            let info = object.selected(Selector::Function(function)).unwrap();
            assert_eq!(
                (info.name.as_str(), info.section.as_str()),
                (*function, *sec)
            );
            // `selected` chooses as `load` does, errors included.
            assert_eq!(
                object.selected(Selector::Section(sec)).err(),
                object.load(Selector::Section(sec)).err(),
                "{name} {sec}"
            );
            let alone = programs.iter().filter(|(_, s)| s == sec).count() == 1;
            match object.load(Selector::Section(sec)) {
                Ok(by_section) if alone => assert_eq!(by_section, by_function, "{name} {sec}"),
                Err(e) if !alone => {
                    assert!(matches!(e.kind, ElfErrorKind::Ambiguous { .. }), "{e}");
                    assert_eq!(e.offset, None);
                }
                other => panic!("{name} section {sec}: {other:?}"),
            }
        }
        assert_eq!(
            object.selected(Selector::Only).err(),
            object.load(Selector::Only).err(),
            "{name}"
        );
        match object.load(Selector::Only) {
            Ok(only) => {
                assert_eq!(programs.len(), 1, "{name}");
                assert_eq!(only, load(name, Selector::Function(programs[0].0)));
            }
            Err(e) => {
                assert!(programs.len() > 1, "{name}: {e}");
                let ElfErrorKind::Ambiguous { candidates, .. } = e.kind else {
                    panic!("{name}: {e}")
                };
                assert_eq!(candidates.len(), programs.len());
            }
        }
    }
}

#[test]
fn selectors_that_match_nothing_or_too_much_are_errors() {
    let checksum = parse("checksum");
    let e = checksum.load(Selector::Section("tc")).unwrap_err();
    assert_eq!(
        e.kind,
        ElfErrorKind::Ambiguous {
            selector: "section `tc`".into(),
            candidates: vec!["inet_checksum (tc)".into(), "adler32 (tc)".into()],
        }
    );
    assert!(
        e.to_string().contains("inet_checksum (tc), adler32 (tc)"),
        "{e}"
    );
    for selector in [Selector::Section("xdp"), Selector::Function("nope")] {
        let e = checksum.load(selector).unwrap_err();
        assert!(matches!(e.kind, ElfErrorKind::NotFound { .. }), "{e}");
        assert_eq!(e.offset, None);
    }
}

#[test]
fn a_static_function_can_be_the_entry() {
    // gcd is a static subprogram: not listed, but selectable by name.
    let object = parse("calls");
    assert!(object.programs().iter().all(|p| p.name != "gcd"));
    let gcd = object.load(Selector::Function("gcd")).unwrap();
    let input = [0u8; 4];
    // r1 = the input's address (a multiple of 2^32), r2 = 4: gcd(0x4_0000_0000, 4) = 4.
    let (exit, _) = run(&gcd, &input, Some(100_000));
    assert_eq!(exit.unwrap().r0, 4);
}

#[test]
fn calls_are_linked_after_the_entry_and_helpers_stay_helpers() {
    for name in ["calls", "calls_O0"] {
        let loaded = load(name, Selector::Section("xdp"));
        let p = &loaded.program;
        let mut local = 0;
        let mut helper = 0;
        for (pc, insn) in p.iter() {
            match *insn {
                Insn::Call {
                    kind: CallKind::Local,
                    ..
                } => {
                    let target = insn.call_target(pc).unwrap();
                    assert!(target < p.slot_count(), "{name}: call at {pc} to {target}");
                    assert!(p.at_pc(target).is_some(), "{name}: call into an lddw");
                    local += 1;
                }
                Insn::Call {
                    kind: CallKind::Helper,
                    imm,
                } => {
                    assert_eq!(imm, 5);
                    helper += 1;
                }
                _ => {}
            }
        }
        // call_chain calls sum_bytes, gcd, fib, fill_squares, mix_words; fib calls itself.
        assert!(local >= 6, "{name}: {local} local calls");
        assert_eq!(helper, 1, "{name}");
        // The entry function comes first: its first instructions are the section's.
        let bytes = fixture(name);
        let xdp = section(&bytes, "xdp");
        let first = ebpf_isa::decode_at(&bytes[xdp.offset..xdp.offset + xdp.size], 0).unwrap();
        assert_eq!(p.insns()[0], first, "{name}");
    }
}

#[test]
fn debug_and_btf_sections_are_ignored() {
    let bytes = fixture("ip_filter");
    let names: Vec<String> = sections(&bytes).into_iter().map(|s| s.name).collect();
    for wanted in [
        ".BTF",
        ".BTF.ext",
        ".debug_info",
        ".rel.debug_info",
        ".rel.BTF.ext",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing: {names:?}"
        );
    }
    let loaded = load("ip_filter", Selector::Only);
    assert!(loaded.rodata.is_empty() && loaded.data.is_empty());
}

#[test]
fn v4_fixture_uses_v4_instructions() {
    let loaded = load("v4_ops", Selector::Only);
    assert_eq!(loaded.program.requirements().1, CpuVersion::V4);
    for name in ["ip_filter", "lookup", "calls"] {
        let (_, cpu) = load(
            name,
            Selector::Function(PROGRAMS.iter().find(|(n, _)| *n == name).unwrap().1[0].0),
        )
        .program
        .requirements();
        assert!(cpu <= CpuVersion::V3, "{name}: {cpu:?}");
    }
    // calls_O0 is built for cpu v1: only local calls (which bpf_conformance files under v3)
    // need more.
    for insn in load("calls_O0", Selector::Section("xdp")).program.insns() {
        let cpu = ebpf_isa::table::Form::of(insn).spec().cpu;
        let local = matches!(
            insn,
            Insn::Call {
                kind: CallKind::Local,
                ..
            }
        );
        assert!(cpu == CpuVersion::V1 || local, "{insn:?}: {cpu:?}");
    }
}

#[test]
fn rodata_holds_tables_and_string_literals() {
    let loaded = load("lookup", Selector::Function("http_method"));
    assert!(loaded.data.is_empty());
    let r = &loaded.rodata;
    // The CRC table: entry 1 is 0x77073096.
    let table = r
        .windows(8)
        .position(|w| w == [0, 0, 0, 0, 0x96, 0x30, 0x07, 0x77])
        .expect("crc table");
    assert_eq!(table % 4, 0);
    // The table of methods holds VM addresses of the literals, relocated by R_BPF_64_ABS64.
    let get = r.windows(5).position(|w| w == b"GET \0").expect("\"GET \"");
    let pointer = (RODATA_BASE + get as u64).to_le_bytes();
    assert!(r.windows(8).any(|w| w == pointer), "no pointer to \"GET \"");
    // The lddws of the program point into the image.
    let mut addresses = 0;
    for insn in loaded.program.insns() {
        if let Insn::LoadImm64 { imm, .. } = *insn {
            assert!(
                imm >= RODATA_BASE && imm < RODATA_BASE + r.len() as u64,
                "{imm:#x}"
            );
            addresses += 1;
        }
    }
    assert!(addresses >= 2);
}

#[test]
fn clang_puts_the_addend_of_section_symbols_in_the_immediate() {
    // In globals.o, static variables are relocated against the .data/.bss section symbols,
    // with their offset in the lddw's immediate; globals against their own symbols (imm 0).
    let bytes = fixture("globals");
    let xdp = section(&bytes, "xdp");
    let symtab = section(&bytes, ".symtab");
    let rel = sections(&bytes)
        .into_iter()
        .find(|s| s.sh_type == common::SHT_REL && s.info == xdp.index as u32)
        .unwrap();
    let loaded = load("globals", Selector::Only);
    let data_index = section(&bytes, ".data").index;
    let (mut with_addend, mut checked) = (0, 0);
    for i in 0..rel.size / 16 {
        let entry = rel.offset + i * 16;
        let r_offset = common::u64_at(&bytes, entry) as usize;
        let sym = (common::u64_at(&bytes, entry + 8) >> 32) as usize;
        let st = symtab.offset + sym * 24;
        let is_section = bytes[st + 4] & 0xf == 3;
        let shndx = u16::from_le_bytes([bytes[st + 6], bytes[st + 7]]) as usize;
        let at = xdp.offset + r_offset;
        let imm = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as u64;
        if !is_section {
            assert_eq!(imm, 0);
            continue;
        }
        with_addend += usize::from(imm != 0);
        // .data comes first in the writable image, so a .data offset is its VM offset.
        if shndx == data_index {
            let Some(Insn::LoadImm64 { imm: linked, .. }) = loaded.program.at_pc(r_offset / 8)
            else {
                panic!("no lddw at {r_offset:#x}")
            };
            assert_eq!(*linked, DATA_BASE + imm);
            checked += 1;
        }
    }
    assert!(with_addend > 0 && checked > 0, "{with_addend} {checked}");
}

#[test]
fn data_and_bss_start_fresh_on_every_run() {
    let loaded = load("globals", Selector::Only);
    let d = &loaded.data;
    // .data: total_bytes = 1000 and seed = 0x12345678; then .bss (16 u32 + 2 u64) as zeroes.
    assert!(d.windows(8).any(|w| w == 1000u64.to_le_bytes()));
    assert!(d.windows(4).any(|w| w == 0x1234_5678u32.to_le_bytes()));
    assert!(d.len() >= 16 + 64 + 16, "{}", d.len());
    assert!(!loaded.rodata.is_empty(), "weights[] lives in .rodata");
    let bytes = input("globals/text");
    let first = run(&loaded, &bytes, Some(1_000_000)).0.unwrap().r0;
    let second = run(&loaded, &bytes, Some(1_000_000)).0.unwrap().r0;
    assert_eq!(first, second);
    // Running on the state the first run left behind gives another result.
    let mut stale = loaded.clone();
    stale.data = run_keeping_data(&loaded, &bytes);
    let (third, _) = run(&stale, &bytes, Some(1_000_000));
    assert_ne!(first, third.unwrap().r0);
}

fn run_keeping_data(loaded: &LoadedElf, input: &[u8]) -> Vec<u8> {
    use ebpf_abi::{Limits, MemoryMap, Region, layout};
    let mut data = loaded.data.clone();
    let mut mem = input.to_vec();
    let mut map = MemoryMap::new();
    map.insert(layout::RODATA, Region::ReadOnly(&loaded.rodata));
    map.insert(layout::DATA, Region::Writable(&mut data));
    map.insert(layout::INPUT, Region::Writable(&mut mem));
    let args = layout::input_args(input.len() as u64);
    ebpf_interp::Interpreter::new(&loaded.program)
        .run(map, args, &common::helpers(), &Limits::default())
        .unwrap();
    data
}

#[test]
fn every_fixture_gives_the_native_result() {
    let expectations = expectations();
    let mut objects: BTreeMap<String, ElfObject> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut per_object: BTreeMap<String, usize> = BTreeMap::new();
    for e in &expectations {
        let object = objects
            .entry(e.object.clone())
            .or_insert_with(|| parse(&e.object));
        let loaded = object
            .load(Selector::Function(&e.program))
            .unwrap_or_else(|err| panic!("{} {}: {err}", e.object, e.program));
        let bytes = input(&e.input);
        let (exit, _) = run(&loaded, &bytes, Some(10_000_000));
        match exit {
            Ok(exit) if exit.r0 == e.result => {}
            other => failures.push(format!(
                "{} {} {}: got {other:x?}, native C gives {:#x}",
                e.object, e.program, e.input, e.result
            )),
        }
        *per_object.entry(e.object.clone()).or_default() += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every runnable fixture is checked, on several inputs (the corpus needs kernel
    // contexts and helpers: the kernel is its oracle).
    for (name, _) in PROGRAMS
        .iter()
        .filter(|(n, _)| !n.starts_with("unsupported/") && !n.starts_with("../bpf/"))
    {
        assert!(
            per_object.get(*name).copied().unwrap_or(0) >= 4,
            "{name}: {per_object:?}"
        );
    }
    assert!(expectations.len() >= 80, "{}", expectations.len());
}

#[test]
fn the_packet_filters_pass_and_drop() {
    let xdp = load("ip_filter", Selector::Only);
    let socket = load("port_filter", Selector::Only);
    let verdict = |frame: &str| {
        let bytes = input(&format!("frames/{frame}"));
        let a = run(&xdp, &bytes, None).0.unwrap().r0;
        let b = run(&socket, &bytes, None).0.unwrap().r0;
        (a, b, bytes.len() as u64)
    };
    let (xdp_pass, xdp_drop) = (2, 1);
    let (a, b, len) = verdict("ipv4_tcp_http");
    assert_eq!((a, b), (xdp_pass, len));
    let (a, b, _) = verdict("ipv4_from_10net");
    assert_eq!((a, b), (xdp_drop, 64));
    let (a, b, _) = verdict("ipv4_telnet");
    assert_eq!((a, b), (xdp_pass, 0));
    let (a, b, _) = verdict("vlan_ipv4_smb");
    assert_eq!((a, b), (xdp_drop, 0));
    let (a, b, _) = verdict("runt");
    assert_eq!((a, b), (xdp_drop, 0));
}
