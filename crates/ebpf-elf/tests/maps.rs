//! Map definitions and map references of the corpus (`tests/bpf/`, real XDP and socket-filter
//! programs built against libbpf's `bpf_helpers.h`): every BTF-defined map is described as its
//! C source declares it, every program links with its map references as `lddw map_fd N`
//! naming the right map, callbacks become `lddw code OFF` at their function, and a prog
//! array's initial programs are listed.

mod common;

use std::collections::BTreeSet;

use ebpf_elf::{ElfObject, MapDefinition, MapStyle, Selector};
use ebpf_isa::{CallKind, Imm64Kind, Insn};

fn corpus(name: &str) -> ElfObject {
    let path = common::elf_dir().join(format!("../bpf/{name}.o"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ElfObject::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (name, type, key size, value size, max_entries), as the C sources declare them.
type Declared = (&'static str, u32, u32, u32, u32);

/// Every corpus object's maps, from its source: `BPF_MAP_TYPE_HASH` is 1, `ARRAY` 2,
/// `PROG_ARRAY` 3, `PERCPU_ARRAY` 6, `LRU_HASH` 9, `RINGBUF` 27.
const DECLARED: &[(&str, &[Declared])] = &[
    (
        "socket_logger",
        &[("events", 27, 0, 0, 4096), ("lost", 2, 4, 8, 1)],
    ),
    // struct flow is 16 bytes, struct flow_state 32.
    ("xdp_conntrack", &[("flows", 9, 16, 32, 4096)]),
    // struct counters is two u64.
    ("xdp_counter", &[("stats", 6, 4, 16, 6)]),
    (
        "xdp_firewall",
        &[("blocked", 1, 4, 8, 1024), ("verdicts", 2, 4, 8, 4)],
    ),
    // struct backend is 12 bytes.
    ("xdp_lb", &[("backends", 2, 4, 12, 4), ("hits", 2, 4, 8, 4)]),
    (
        "xdp_tailcall",
        &[("dispatch", 3, 4, 4, 3), ("handled", 2, 4, 8, 4)],
    ),
    ("xdp_tcp_options", &[("kinds", 2, 4, 8, 16)]),
    // ARRAY_OF_MAPS is 12.
    (
        "xdp_tenants",
        &[
            ("tenant_a", 1, 4, 8, 64),
            ("tenant_b", 1, 4, 8, 64),
            ("tenants", 12, 4, 4, 4),
            ("outcomes", 2, 4, 8, 5),
        ],
    ),
];

/// The maps each program references, by name.
const USES: &[(&str, &str, &[&str])] = &[
    ("socket_logger", "socket_logger", &["events", "lost"]),
    ("xdp_conntrack", "xdp_conntrack", &["flows"]),
    ("xdp_counter", "xdp_counter", &["stats"]),
    ("xdp_firewall", "xdp_firewall", &["blocked", "verdicts"]),
    ("xdp_lb", "xdp_lb", &["backends", "hits"]),
    ("xdp_tailcall", "xdp_dispatch", &["dispatch", "handled"]),
    ("xdp_tailcall", "handle_udp", &["handled"]),
    ("xdp_tcp_options", "xdp_tcp_options", &["kinds"]),
    ("xdp_tenants", "xdp_tenants", &["tenants", "outcomes"]),
];

#[test]
fn every_corpus_map_is_described_as_declared() {
    for (object, declared) in DECLARED {
        let maps = corpus(object).maps().unwrap();
        let got: Vec<Declared> = maps
            .iter()
            .map(|m| {
                let name: &'static str = declared
                    .iter()
                    .find(|d| d.0 == m.name)
                    .unwrap_or_else(|| panic!("{object}: unexpected map {}", m.name))
                    .0;
                (name, m.map_type, m.key_size, m.value_size, m.max_entries)
            })
            .collect();
        assert_eq!(&got, declared, "{object}");
        for m in &maps {
            assert_eq!(
                (m.style, m.section.as_str(), m.flags),
                (MapStyle::Btf, ".maps", 0)
            );
        }
    }
}

fn map_refs(object: &str, program: &str) -> (Vec<MapDefinition>, BTreeSet<String>) {
    let loaded = corpus(object)
        .load(Selector::Function(program))
        .unwrap_or_else(|e| panic!("{object} {program}: {e}"));
    let mut used = BTreeSet::new();
    for (pc, insn) in loaded.program.iter() {
        if let Insn::LoadImm64 { kind, imm, .. } = insn {
            match kind {
                Imm64Kind::Value | Imm64Kind::Code => {}
                Imm64Kind::MapFd => {
                    let map = loaded
                        .maps
                        .get(*imm as usize)
                        .unwrap_or_else(|| panic!("{object} {program} pc {pc}: map {imm}"));
                    used.insert(map.name.clone());
                }
                other => panic!("{object} {program} pc {pc}: {other:?}"),
            }
        }
    }
    (loaded.maps, used)
}

#[test]
fn every_corpus_program_links_with_its_map_references() {
    for (object, program, uses) in USES {
        let (_, used) = map_refs(object, program);
        let want: BTreeSet<String> = uses.iter().map(|s| s.to_string()).collect();
        assert_eq!(used, want, "{object} {program}");
    }
}

#[test]
fn a_bpf_loop_callback_is_a_code_address_of_its_linked_function() {
    let loaded = corpus("xdp_tcp_options")
        .load(Selector::Function("xdp_tcp_options"))
        .unwrap();
    let insns: Vec<(usize, Insn)> = loaded.program.iter().map(|(pc, i)| (pc, *i)).collect();
    let (pc, imm) = insns
        .iter()
        .find_map(|(pc, i)| match i {
            Insn::LoadImm64 {
                kind: Imm64Kind::Code,
                imm,
                ..
            } => Some((*pc, *imm)),
            _ => None,
        })
        .expect("a callback address");
    // The kernel's convention (BPF_PSEUDO_FUNC): the target is pc + imm + 1, and the second
    // slot's immediate is 0.
    assert_eq!(imm >> 32, 0);
    let target = pc as i64 + i64::from(imm as u32 as i32) + 1;
    // The callback is linked after the program: the first instruction after the entry
    // function's last exit, and it is not called directly (only bpf_loop calls it).
    let first_exit = insns.iter().find(|(_, i)| *i == Insn::Exit).unwrap().0;
    assert_eq!(target, first_exit as i64 + 1);
    assert!(!insns.iter().any(|(_, i)| matches!(
        i,
        Insn::Call {
            kind: CallKind::Local,
            ..
        }
    )));
    // And bpf_loop (helper 181) is what receives it.
    assert!(insns.iter().any(|(_, i)| *i
        == Insn::Call {
            kind: CallKind::Helper,
            imm: 181
        }));
}

#[test]
fn a_prog_array_lists_its_initial_programs() {
    let maps = corpus("xdp_tailcall").maps().unwrap();
    let dispatch = maps.iter().find(|m| m.name == "dispatch").unwrap();
    assert_eq!(
        dispatch.initial_programs,
        vec![
            (0, "handle_tcp".to_string()),
            (1, "handle_udp".to_string()),
            (2, "handle_icmp".to_string())
        ]
    );
    assert_eq!(
        dispatch.to_string(),
        "dispatch: type 3 key 4 value 4 max_entries 3 flags 0x0 (BTF, .maps)"
    );
}

/// An array of maps carries its inner maps' template (from `__array(values, struct …)`) and
/// the slots its `.values` fill, by map name.
#[test]
fn an_array_of_maps_lists_its_template_and_initial_maps() {
    let maps = corpus("xdp_tenants").maps().unwrap();
    let tenants = maps.iter().find(|m| m.name == "tenants").unwrap();
    assert_eq!(
        tenants.initial_maps,
        vec![(0, "tenant_a".to_string()), (2, "tenant_b".to_string())]
    );
    assert!(tenants.initial_programs.is_empty());
    let inner = tenants.inner.as_deref().unwrap();
    assert_eq!(
        (
            inner.name.as_str(),
            inner.map_type,
            inner.key_size,
            inner.value_size,
            inner.max_entries
        ),
        ("tenants.inner", 1, 4, 8, 64)
    );
    assert!(
        maps.iter()
            .all(|m| m.name == "tenants" || m.inner.is_none())
    );
}

/// Each global data section is a one-element array map after the object's own maps, as
/// libbpf makes them (`.rodata` read-only for programs), holding the section's bytes.
#[test]
fn global_data_sections_are_described_as_libbpf_makes_their_maps() {
    let object = corpus("xdp_bss_counter");
    let maps = object.maps().unwrap();
    /// (name, type, key size, value size, max_entries, flags, initial value)
    type Global<'a> = (&'a str, u32, u32, u32, u32, u32, Option<Vec<u8>>);
    let globals: Vec<Global<'_>> = maps
        .iter()
        .map(|m| {
            assert_eq!(m.style, MapStyle::GlobalData, "{}", m.name);
            assert_eq!(m.section, m.name);
            let d = (m.map_type, m.key_size, m.value_size, m.max_entries, m.flags);
            (
                m.name.as_str(),
                d.0,
                d.1,
                d.2,
                d.3,
                d.4,
                m.initial_value.clone(),
            )
        })
        .collect();
    let bss = vec![0u8; 16];
    assert_eq!(
        globals,
        [
            // Section order: .data, .bss, .rodata as clang emits them.
            (
                ".data",
                2,
                4,
                4,
                1,
                0,
                Some(0xffffu32.to_le_bytes().to_vec())
            ),
            (".bss", 2, 4, 16, 1, 0, Some(bss)),
            (
                ".rodata",
                2,
                4,
                4,
                1,
                1 << 7,
                Some(5u32.to_le_bytes().to_vec())
            ),
        ]
    );
    // After the object's own maps: xdp_globals has a prog array first.
    let names: Vec<String> = corpus("xdp_globals")
        .maps()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["jumps", ".data", ".rodata"]);
}

/// `load_with_data_maps` makes each reference to a global `lddw map_value N, OFF` into its
/// section's map; `load` makes it an address in the data regions.
#[test]
fn globals_link_as_map_values_or_as_addresses() {
    let object = corpus("xdp_bss_counter");
    let maps = object.maps().unwrap();
    let index = |name: &str| maps.iter().position(|m| m.name == name).unwrap() as u64;
    let refs = |loaded: ebpf_elf::LoadedElf| -> BTreeSet<(Imm64Kind, u64)> {
        loaded
            .program
            .iter()
            .filter_map(|(_, insn)| match *insn {
                Insn::LoadImm64 { kind, imm, .. } => Some((kind, imm)),
                _ => None,
            })
            .collect()
    };
    let loaded = object
        .load_with_data_maps(Selector::Function("xdp_bss_counter"))
        .unwrap();
    assert!(loaded.rodata.is_empty() && loaded.data.is_empty());
    let value = |name: &str, off: u64| (Imm64Kind::MapValue, index(name) | off << 32);
    assert_eq!(
        refs(loaded),
        BTreeSet::from([
            value(".bss", 0),
            value(".bss", 8),
            value(".data", 0),
            value(".rodata", 0)
        ])
    );
    // As addresses: `.data` then `.bss` in the writable region, `.rodata` in the read-only one.
    let loaded = object.load(Selector::Function("xdp_bss_counter")).unwrap();
    let addresses: BTreeSet<u64> = refs(loaded).into_iter().map(|(_, imm)| imm).collect();
    let data = ebpf_elf::DATA_BASE;
    assert_eq!(
        addresses,
        BTreeSet::from([data, data + 8, data + 16, ebpf_elf::RODATA_BASE])
    );
}
