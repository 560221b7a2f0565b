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
