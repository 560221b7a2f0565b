//! Maps of maps on every engine: a program looks a tenant's map up in an array of maps and
//! uses it as the map of a second lookup or an update; an empty slot is NULL; the host swaps
//! slots between runs and during them (a run sees the old map or the new, never anything
//! else); the verifier refuses a dereference of the inner map and a program's update of the
//! outer map. The kernel's behaviour for the same program is pinned down in
//! `crates/ebpf-kernel/tests/kernel.rs` (`an_array_of_maps_hands_its_inner_map_to_the_program`).

use std::sync::Arc;

use crate::helpers::program;
use ebpf_vm::maps::{Map, MapSpec, MapType, Maps, UpdateFlags};
use ebpf_vm::verifier::FindingKind;
use ebpf_vm::{Context, Engine, KernelHelpers, LoadError, Packet, ProgramKind, Vm};

/// Maps 0 and 1: the tenants' hashes (4-byte keys, 8-byte values); map 2: the array of maps
/// (4 slots) whose inner maps are like them.
fn tenants() -> (Arc<Maps>, [Arc<Map>; 3]) {
    let mut maps = Maps::new(1);
    let template = MapSpec::new(MapType::Hash, 4, 8, 16);
    let a = maps.create("tenant_a", template).unwrap();
    let b = maps.create("tenant_b", template).unwrap();
    let outer = maps
        .create_of_maps(
            "tenants",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 4),
            template,
        )
        .unwrap();
    a.update(&7u32.to_le_bytes(), &11u64.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    b.update(&7u32.to_le_bytes(), &22u64.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    (Arc::new(maps), [a, b, outer])
}

/// `inner = lookup(tenants, slot)`: NULL returns 100; then `body` with the inner map in `r6`
/// and the stack's `r10 - 8` free.
fn through_slot(slot: u32, body: &str) -> String {
    format!(
        "stw [%r10-4], {slot}\nlddw %r1, 0xfeed000000000002\nmov %r2, %r10\nadd %r2, -4\n\
         call 1\njne %r0, 0, +2\nmov %r0, 100\nexit\nmov %r6, %r0\n{body}"
    )
}

/// `value = lookup(inner, 7)`: NULL returns 200; else returns `*value`.
const READ_7: &str = "stw [%r10-8], 7\nmov %r1, %r6\nmov %r2, %r10\nadd %r2, -8\ncall 1\n\
                      jne %r0, 0, +2\nmov %r0, 200\nexit\nldxdw %r0, [%r0+0]\nexit";

fn load(engine: Engine, text: &str, maps: &Arc<Maps>) -> Result<Vm, LoadError> {
    Vm::builder()
        .engine(engine)
        .budget(100_000)
        .kernel_helpers(KernelHelpers::new())
        .load_with_maps(program(text), ProgramKind::Xdp, Arc::clone(maps))
}

fn r0(vm: &Vm) -> u64 {
    let mut packet = Packet::new(&[0u8; 64]).unwrap();
    vm.run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp))
        .unwrap_or_else(|t| panic!("{}: {t}", vm.engine()))
        .r0
}

#[test]
fn a_program_uses_the_map_in_a_slot() {
    for &engine in Engine::ALL {
        let (maps, [a, b, outer]) = tenants();
        let slot = |n: u32| n.to_le_bytes();
        maps.set_inner(&outer, &slot(0), &a, UpdateFlags::Any)
            .unwrap();
        maps.set_inner(&outer, &slot(1), &b, UpdateFlags::Any)
            .unwrap();
        let read = |n| load(engine, &through_slot(n, READ_7), &maps).unwrap();
        assert_eq!(r0(&read(0)), 11, "{engine}: tenant a");
        assert_eq!(r0(&read(1)), 22, "{engine}: tenant b");
        assert_eq!(r0(&read(2)), 100, "{engine}: an empty slot is NULL");
        // The host swaps a slot: the same loaded program now reads the other map.
        let first = read(0);
        maps.set_inner(&outer, &slot(0), &b, UpdateFlags::Any)
            .unwrap();
        assert_eq!(r0(&first), 22, "{engine}: after the swap");
        outer.delete(&slot(0)).unwrap();
        assert_eq!(r0(&first), 100, "{engine}: after the delete");
        // An update through the inner map lands in it.
        let write = "stw [%r10-8], 8\nstdw [%r10-16], 5\nmov %r1, %r6\nmov %r2, %r10\n\
                     add %r2, -8\nmov %r3, %r10\nadd %r3, -16\nmov %r4, 0\ncall 2\nexit";
        let vm = load(engine, &through_slot(1, write), &maps).unwrap();
        assert_eq!(r0(&vm), 0, "{engine}");
        assert_eq!(
            b.lookup(&8u32.to_le_bytes()).unwrap(),
            Some(5u64.to_le_bytes().to_vec()),
            "{engine}"
        );
        assert_eq!(a.lookup(&8u32.to_le_bytes()).unwrap(), None, "{engine}");
    }
}

#[test]
fn the_verifier_keeps_inner_maps_to_map_helpers() {
    let refused = |engine: Engine, text: &str| -> Vec<(usize, FindingKind)> {
        let (maps, _) = tenants();
        match load(engine, text, &maps) {
            Ok(_) => Vec::new(),
            Err(LoadError::Rejected(r)) => r.errors().map(|f| (f.pc, f.kind.clone())).collect(),
            Err(e) => panic!("{engine}: {e}"),
        }
    };
    for &engine in Engine::ALL {
        // pc 10: the first instruction of the body.
        assert_eq!(
            refused(engine, &through_slot(0, "ldxdw %r0, [%r6+0]\nexit")),
            [(
                10,
                FindingKind::InnerMapAccess {
                    map: "tenants".into()
                }
            )],
            "{engine}"
        );
        let update = "stw [%r10-4], 0\nlddw %r1, 0xfeed000000000002\nmov %r2, %r10\n\
                      add %r2, -4\nmov %r3, %r2\nmov %r4, 0\ncall 2\nexit";
        assert_eq!(
            refused(engine, update),
            [(
                7,
                FindingKind::OuterMapHelper {
                    map: "tenants".into(),
                    helper: 2
                }
            )],
            "{engine}"
        );
    }
}

/// Runs on 3 threads while the host swaps slot 0 between the tenants: every run reads one
/// tenant's value (11 or 22), whole.
#[test]
fn runs_during_slot_swaps_see_the_old_map_or_the_new() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const THREADS: usize = 3;
    for &engine in Engine::ALL {
        let (maps, [a, b, outer]) = tenants();
        maps.set_inner(&outer, &0u32.to_le_bytes(), &a, UpdateFlags::Any)
            .unwrap();
        let vm = load(engine, &through_slot(0, READ_7), &maps).unwrap();
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        let got = r0(&vm);
                        assert!(got == 11 || got == 22, "{engine}: {got}");
                    }
                    done.fetch_add(1, Ordering::Release);
                });
            }
            let mut round = 0u64;
            while done.load(Ordering::Acquire) < THREADS {
                let next = if round.is_multiple_of(2) { &b } else { &a };
                maps.set_inner(&outer, &0u32.to_le_bytes(), next, UpdateFlags::Any)
                    .unwrap();
                round += 1;
            }
        });
    }
}

/// The corpus' `xdp_tenants` (tests/bpf/xdp_tenants.c): slots 0 and 2 hold `tenant_a` and
/// `tenant_b` from the object's `.values`; a source's fourth packet to its tenant is dropped;
/// tenant 1 has no map until the host puts `tenant_a` in its slot too.
#[test]
fn the_corpus_tenants_program_counts_sources_per_tenant() {
    use crate::corpus::{object, xdp};
    use crate::packets::{arp, ipv4, udp};
    use ebpf_vm::XdpAction::{Drop, Pass};
    let outcome = |o: &ebpf_vm::Object, n: u32| {
        let v = o.map("outcomes").unwrap().lookup(&n.to_le_bytes()).unwrap();
        u64::from_le_bytes(v.unwrap().try_into().unwrap())
    };
    let count = |o: &ebpf_vm::Object, map: &str, src: [u8; 4]| {
        let v = o.map(map).unwrap().lookup(&src).unwrap();
        v.map(|v| u64::from_le_bytes(v.try_into().unwrap()))
    };
    let src = [10, 0, 0, 9];
    for &engine in Engine::ALL {
        let o = object("xdp_tenants", engine);
        // Destination low bits 0: tenant_a.
        let to_a = ipv4(src, [10, 0, 0, 4], 17, &udp(1, 2, &[]));
        let verdicts: Vec<_> = (0..5).map(|_| xdp(&o, "xdp_tenants", &to_a).0).collect();
        assert_eq!(verdicts, [Pass, Pass, Pass, Drop, Drop], "{engine}");
        assert_eq!(count(&o, "tenant_a", src), Some(5), "{engine}");
        // Low bits 2: tenant_b; low bits 1: no map.
        let to_b = ipv4(src, [10, 0, 0, 6], 17, &udp(1, 2, &[]));
        let to_1 = ipv4(src, [10, 0, 0, 5], 17, &udp(1, 2, &[]));
        assert_eq!(xdp(&o, "xdp_tenants", &to_b).0, Pass, "{engine}");
        assert_eq!(xdp(&o, "xdp_tenants", &to_1).0, Pass, "{engine}");
        assert_eq!(count(&o, "tenant_b", src), Some(1), "{engine}");
        assert_eq!(xdp(&o, "xdp_tenants", &arp()).0, Pass, "{engine}");
        assert_eq!(
            (0..5).map(|n| outcome(&o, n)).collect::<Vec<_>>(),
            [1, 1, 4, 2, 0],
            "{engine}: not IPv4, no map, counted, dropped, full"
        );
        // The host gives tenant 1 tenant_a's map: its packets count there now.
        let maps = o.maps();
        let outer = o.map("tenants").unwrap();
        let a = o.map("tenant_a").unwrap();
        maps.set_inner(outer, &1u32.to_le_bytes(), a, UpdateFlags::Any)
            .unwrap();
        assert_eq!(xdp(&o, "xdp_tenants", &to_1).0, Drop, "{engine}");
        assert_eq!(count(&o, "tenant_a", src), Some(6), "{engine}");
    }
}
