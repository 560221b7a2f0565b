//! Maps whose loader sizes them at run time (`max_entries` 0 in the object, as xdp-tools
//! leaves its counters): refused with the map's name and how to size it, and loaded once the
//! embedder sizes them with `VmBuilder::map_max_entries` — on every engine.

use ebpf_vm::{Context, Engine, KernelHelpers, LoadError, Object, Packet, ProgramKind, VmBuilder};

use crate::packets::{ipv4, tcp, udp};

/// `bytes` with the BTF array type that holds a map's `max_entries` of `n` (clang encodes
/// `__uint(max_entries, n)` as `int (*max_entries)[n]`) rewritten to 0: the object a loader
/// that sizes the map at run time ships. Exactly one array of `n` elements must exist.
fn unsized_object(bytes: &[u8], n: u32) -> Vec<u8> {
    // struct btf_type { name_off = 0, info = BTF_KIND_ARRAY << 24, size = 0 } followed by
    // struct btf_array { type, index_type, nelems }.
    let array_type = [0u32, 3 << 24, 0].map(u32::to_le_bytes).concat();
    let found: Vec<usize> = (0..bytes.len().saturating_sub(24))
        .filter(|&o| bytes[o..o + 12] == array_type[..] && bytes[o + 20..o + 24] == n.to_le_bytes())
        .collect();
    assert_eq!(found.len(), 1, "arrays of {n} elements at {found:?}");
    let mut out = bytes.to_vec();
    out[found[0] + 20..found[0] + 24].copy_from_slice(&0u32.to_le_bytes());
    out
}

fn builder(engine: Engine) -> VmBuilder {
    ebpf_vm::Vm::builder()
        .engine(engine)
        .budget(1_000_000)
        .kernel_helpers(KernelHelpers::new())
}

/// The classifier's verdict on `frame`.
fn verdict(object: &Object, frame: &[u8]) -> u64 {
    let mut packet = Packet::new(frame).unwrap();
    let vm = object.program("tc_classifier").unwrap();
    vm.run_packet(&mut packet, &Context::default_for(ProgramKind::Tc))
        .unwrap_or_else(|t| panic!("{}: {t}", vm.engine()))
        .r0
}

/// Every entry of the classifier's `actions` counters, by index.
fn actions(object: &Object) -> Vec<Vec<u8>> {
    let map = object.map("actions").unwrap();
    (0..map.spec().max_entries)
        .map(|k| map.lookup(&k.to_le_bytes()).unwrap().unwrap())
        .collect()
}

#[test]
fn a_map_its_loader_sizes_is_refused_by_name_until_the_embedder_sizes_it() {
    let path = format!(
        "{}/../../tests/bpf/tc_classifier.o",
        env!("CARGO_MANIFEST_DIR")
    );
    let original = std::fs::read(path).unwrap();
    // `actions` has 10 entries (tc_classifier.c); the loader's copy leaves it 0.
    let shipped = unsized_object(&original, 10);
    let (a, b) = ([10, 0, 0, 7], [10, 0, 0, 1]);
    let frames = [
        ipv4(a, b, 17, &udp(5, 53, b"hi")),
        ipv4(a, b, 1, &[8, 0, 0, 0, 0, 0, 0, 0]),
        ipv4(a, b, 6, &tcp(1000, 22, 2, &[])),
    ];
    for &engine in Engine::ALL {
        let e = builder(engine).load_object(&shipped).unwrap_err();
        assert!(
            matches!(&e, LoadError::Map { name, .. } if name == "actions"),
            "{engine}: {e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains("map `actions`") && message.contains("map_max_entries"),
            "{message}"
        );
        let sized = builder(engine)
            .map_max_entries("actions", 10)
            .load_object(&shipped)
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        let plain = builder(engine).load_object(&original).unwrap();
        assert_eq!(sized.map("actions").unwrap().spec().max_entries, 10);
        for frame in &frames {
            assert_eq!(verdict(&sized, frame), verdict(&plain, frame), "{engine}");
        }
        assert_eq!(actions(&sized), actions(&plain), "{engine}");
        // TC_ACT_REDIRECT (7) at key 8, TC_ACT_SHOT (2) at 3, TC_ACT_OK (0) at 1.
        let one = 1u64.to_le_bytes().to_vec();
        let zero = 0u64.to_le_bytes().to_vec();
        let counted: Vec<usize> = (0..10).filter(|&k| actions(&sized)[k] == one).collect();
        assert_eq!(counted, [1, 3, 8], "{engine}");
        assert!(actions(&sized).iter().all(|v| *v == one || *v == zero));

        // The embedder's size replaces the object's too: with 3 entries (keys 0..=2) the
        // shot's key 3 and the redirect's key 8 are missed (and not counted); the verdicts
        // stay.
        let small = builder(engine)
            .map_max_entries("actions", 3)
            .load_object(&original)
            .unwrap();
        for frame in &frames {
            assert_eq!(verdict(&small, frame), verdict(&plain, frame), "{engine}");
        }
        assert_eq!(actions(&small), [zero.clone(), one.clone(), zero.clone()]);

        // A size for a map the object does not have is a mistake worth hearing about.
        let e = builder(engine)
            .map_max_entries("action", 10)
            .load_object(&shipped)
            .unwrap_err();
        assert!(
            matches!(&e, LoadError::InvalidConfig(m) if m.contains("map `action`")),
            "{e:?}"
        );
    }
}
