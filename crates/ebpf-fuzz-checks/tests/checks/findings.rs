//! Issue 16's findings, each a test named after the bug (docs/fuzzing.md lists them). On every
//! engine, driven directly (the facade refuses what these feed them): a region longer than its
//! 4 GiB window is addressable only inside the window, for loads, stores and atomics, whatever
//! region it is; call depths beyond the maximum are clamped alike. In the ELF loader: names
//! from the object are quoted in messages.
//!
//! The buffers are zeroed `Vec`s of 4 GiB + 16 bytes, which the OS backs with memory only
//! where a page is touched.

use ebpf_abi::{Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_fuzz_checks::engines::{EngineOptions, Engines};

const WINDOW: u64 = layout::MAX_REGION_LEN;

/// `r3 = r1 + 0xffff_ffff`, the window's last byte; then the access under test.
fn program(access: &str) -> ebpf_isa::Program {
    let text = format!("mov32 %r2, -1\nmov %r3, %r1\nadd %r3, %r2\n{access}\nexit");
    ebpf_isa::assemble(&text).unwrap()
}

#[test]
fn bytes_past_a_regions_4_gib_window_are_unaddressable_on_every_engine() {
    let len = WINDOW as usize + 16;
    let mut big = vec![0u8; len];
    // The bytes a wrong check would reach: right after the window.
    big[WINDOW as usize..].fill(0xaa);
    let oob = |addr, len, write| Err(TrapKind::OutOfBounds { addr, len, write });
    // (region, writable): the next region's window is unmapped after each.
    let regions = [
        (layout::DATA, true),
        (layout::INPUT, true),
        (layout::METADATA, true),
        (layout::FIRST_EXTRA, true),
        (layout::FIRST_EXTRA + 1, false),
    ];
    for (region, writable) in regions {
        let base = layout::vm_addr(region, 0);
        let next = base + WINDOW;
        // (access at pc 3, r0 or the trap kind); every access but the last reaches past the
        // window.
        let mut cases = vec![
            ("ldxb %r0, [%r3+1]", oob(next, 1, false)),
            ("ldxdw %r0, [%r3-3]", oob(next - 4, 8, false)),
            ("ldxh %r0, [%r3]", oob(next - 1, 2, false)),
            ("stb [%r3+1], 1", oob(next, 1, true)),
            ("stxdw [%r3-3], %r2", oob(next - 4, 8, true)),
            ("lock add [%r3+1], %r2", oob(next, 8, true)),
            ("lock fetch xor32 [%r3-2], %r2", oob(next - 3, 4, true)),
            ("lock cmpxchg [%r3-6], %r2", oob(next - 7, 8, true)),
        ];
        if writable {
            // Inside the window, the last byte is there (and stays zero: nothing was written).
            cases.push(("ldxb %r0, [%r3]", Ok(0)));
        }
        for (access, want) in cases {
            let engines = Engines::compile(&program(access), &EngineOptions::default()).unwrap();
            let limits = Limits::default();
            // r1 points at the region under test.
            let results = engines.run_each([base, len as u64], &limits, |run| {
                let mut map = MemoryMap::new();
                let bytes = if writable {
                    Region::Writable(&mut big)
                } else {
                    Region::ReadOnly(&big)
                };
                map.insert(region, bytes);
                run(map)
            });
            for (engine, result) in results {
                let expected = want.clone().map_err(|kind| Trap { pc: 3, kind });
                assert_eq!(
                    result.map(|exit| exit.r0),
                    expected,
                    "{engine}, region {region}: {access}"
                );
            }
        }
    }
    assert!(big[WINDOW as usize..].iter().all(|&b| b == 0xaa));
    assert_eq!(big[WINDOW as usize - 8..WINDOW as usize], [0; 8]);
}

/// A call depth beyond what engines support is clamped to `MAX_CALL_DEPTH` by every engine
/// alike (the facade refuses it; an embedder driving an engine directly gets the clamp). The
/// x86 JIT once sized its shadow stack from the unclamped value: `usize::MAX` frames.
#[test]
fn call_depths_beyond_the_maximum_are_clamped_alike_on_every_engine() {
    // Recurses until the depth limit stops it.
    let program = ebpf_isa::assemble("call local -1\nexit").unwrap();
    let engines = Engines::compile(&program, &EngineOptions::default()).unwrap();
    for depth in [ebpf_abi::MAX_CALL_DEPTH + 1, 1 << 40, usize::MAX] {
        let limits = Limits {
            budget: None,
            max_call_depth: depth,
        };
        for (engine, result) in engines.run_each([0, 0], &limits, |run| run(MemoryMap::new())) {
            assert_eq!(
                result,
                Err(Trap {
                    pc: 0,
                    kind: TrapKind::CallDepthExceeded {
                        max_depth: ebpf_abi::MAX_CALL_DEPTH
                    }
                }),
                "{engine}, max_call_depth {depth}"
            );
        }
    }
}

/// Fuzz target `elf` (the input is `fuzz/regressions/elf/map-name-with-a-control-character`):
/// an object whose legacy map name holds a control character (`legacy_table\u{1}tc`) had it
/// echoed raw in the loader's error message (terminal injection). Names from the object are
/// quoted: the message shows the escape, never the byte.
#[test]
fn a_map_name_with_a_control_character_is_quoted_in_loader_messages() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/elf/map-name-with-a-control-character");
    let bytes = std::fs::read(&path).unwrap();
    let mut messages = Vec::new();
    let object = ebpf_elf::ElfObject::parse(&bytes).unwrap();
    for info in object.programs() {
        for selector in [
            ebpf_elf::Selector::Function(&info.name),
            ebpf_elf::Selector::Section(&info.section),
        ] {
            if let Err(e) = object.load(selector) {
                messages.push(e.to_string());
            }
        }
    }
    let naming: Vec<&String> = messages
        .iter()
        .filter(|m| m.contains("legacy_table"))
        .collect();
    assert!(!naming.is_empty(), "no message names the map: {messages:?}");
    for message in naming {
        assert!(
            !message.chars().any(char::is_control),
            "a control character in {message:?}"
        );
        assert!(message.contains(r"legacy_table\u{1}tc"), "{message:?}");
    }
}
