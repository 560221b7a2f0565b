//! What the facts prove in the kernel-context programs of `tests/bpf` (XDP, TC and socket
//! filters, as `Object` loads them: maps resolved, context accesses converted): per program,
//! its memory accesses, and how many are proven in bounds under the entry the facade compiles
//! them for (the packet after its headroom, `data_end` bounded by the input's end) and under
//! the entry it used before (nothing said of the packet's addresses), by region (the packet's
//! buffer, the context); and the packet's accesses left checked (the analysis's guess of their
//! region is the input). docs/facts.md has the table.
//!
//! `cargo run --release -p ebpf-vm --example packet_facts [PROGRAM]` (with a program's name,
//! also its instructions and the fact of each access, on standard error)

use ebpf_vm::cfg::facts::{Access, Entry, Facts, MetadataFields, RegionSpec};
use ebpf_vm::isa::Insn;
use ebpf_vm::{Packet, ProgramKind, Vm, layout};

fn main() {
    let show = std::env::args().nth(1);
    let dir = format!("{}/../../tests/bpf", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .collect();
    files.sort();
    println!(
        "| program | kind | accesses | proven | of which packet | of which context | \
         packet, left checked | proven, with map values | of which map values |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut total = [0usize; 10];
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let object = Vm::builder()
            .budget(1_000_000)
            .load_object(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (name, _) in object.programs() {
            let Some(vm) = object.program(name) else {
                continue;
            };
            let kind = vm.program_kind().unwrap_or(ProgramKind::Xdp);
            let (hidden, offset) = match kind {
                ProgramKind::Xdp => (24, Packet::HEADROOM),
                ProgramKind::Tc => (192, Packet::HEADROOM),
                ProgramKind::SocketFilter => (192, Packet::HEADROOM + 14),
            };
            let buffer = RegionSpec::Dynamic { writable: true };
            let before = Entry::unknown()
                .with_region(layout::INPUT as u8, buffer)
                .with_region(layout::METADATA as u8, buffer);
            let now = Entry::metadata(MetadataFields::packet(hidden, hidden + 8, offset as u32));
            let program = vm.program();
            let (facts_before, facts_now) = (
                Facts::analyse(program, &before),
                Facts::analyse(program, &now),
            );
            // What the engines compile with: the packet entry and the maps' value regions.
            let facts_vm = Facts::analyse(program, vm.facts_entry());
            let map_regions: Vec<u8> = (vm.facts_entry().lookup.iter())
                .flat_map(|l| &l.maps)
                .map(|m| m.region)
                .collect();
            let accesses: Vec<usize> = program
                .insns()
                .iter()
                .enumerate()
                .filter(|(_, i)| {
                    matches!(
                        i,
                        Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. }
                    )
                })
                .map(|(k, _)| k)
                .collect();
            let proven = |f: &Facts| {
                accesses
                    .iter()
                    .filter(|&&k| matches!(f.access(k), Access::InBounds { .. }))
                    .count()
            };
            let in_region = |f: &Facts, r: u64| {
                accesses
                    .iter()
                    .filter(|&&k| {
                        matches!(f.access(k), Access::InBounds { region, .. } if u64::from(region) == r)
                    })
                    .count()
            };
            if show.as_deref() == Some(name) {
                for (k, insn) in program.insns().iter().enumerate() {
                    let fact = accesses.contains(&k).then(|| facts_now.access(k));
                    eprintln!(
                        "{k:4} {insn:?} {}",
                        fact.map_or(String::new(), |f| format!("{f:?}"))
                    );
                }
            }
            let packet_checked = accesses
                .iter()
                .filter(|&&k| {
                    matches!(facts_now.access(k), Access::Checked { .. })
                        && facts_now.likely_region(k) == Some(layout::INPUT as u8)
                })
                .count();
            let row = [
                accesses.len(),
                proven(&facts_before),
                proven(&facts_now),
                in_region(&facts_before, layout::INPUT),
                in_region(&facts_now, layout::INPUT),
                in_region(&facts_before, layout::METADATA),
                in_region(&facts_now, layout::METADATA),
                packet_checked,
                proven(&facts_vm),
                accesses
                    .iter()
                    .filter(|&&k| {
                        matches!(facts_vm.access(k), Access::InBounds { region, .. }
                            if map_regions.contains(&region))
                    })
                    .count(),
            ];
            for (t, x) in total.iter_mut().zip(row) {
                *t += x;
            }
            let [a, b, n, pb, pn, cb, cn, pc, m, mv] = row;
            println!(
                "| {name} | {kind:?} | {a} | {b} → {n} | {pb} → {pn} | {cb} → {cn} | {pc} | {m} \
                 | {mv} |"
            );
        }
    }
    let [a, b, n, pb, pn, cb, cn, pc, m, mv] = total;
    println!("| all | | {a} | {b} → {n} | {pb} → {pn} | {cb} → {cn} | {pc} | {m} | {mv} |");
}
