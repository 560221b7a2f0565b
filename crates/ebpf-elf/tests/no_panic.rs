//! Parsing and loading never panic: the fixtures, mutated (bit flips, byte and word overwrites
//! aimed at the headers and tables, truncations), go through `parse`, `programs` and `load`
//! with every selector, and whatever loads runs on the interpreter under a budget.

mod common;

use std::sync::OnceLock;

use common::{all_fixture_names, fixture, sections, u64_at};
use ebpf_elf::{ElfObject, Selector};
use proptest::prelude::*;

/// Every fixture's bytes and the byte ranges worth aiming at: the ELF header, the section
/// header table, and the contents of the symbol and relocation tables.
struct Target {
    bytes: Vec<u8>,
    regions: Vec<(usize, usize)>,
}

fn targets() -> &'static [Target] {
    static TARGETS: OnceLock<Vec<Target>> = OnceLock::new();
    TARGETS.get_or_init(|| {
        all_fixture_names()
            .iter()
            .map(|name| {
                let bytes = fixture(name);
                let shoff = u64_at(&bytes, 40) as usize;
                let mut regions = vec![(0, bytes.len()), (0, 64), (shoff, bytes.len())];
                for s in sections(&bytes) {
                    // Symbol and relocation tables, and the BTF that describes maps.
                    let btf = matches!(s.name.as_str(), ".BTF" | ".maps");
                    if (matches!(s.sh_type, 2 | 9) || btf) && s.size > 0 {
                        regions.push((s.offset, s.offset + s.size));
                    }
                }
                Target { bytes, regions }
            })
            .collect()
    })
}

/// Everything a user of the loader might do with an object; must not panic.
fn exercise(bytes: &[u8]) {
    let Ok(object) = ElfObject::parse(bytes) else {
        return;
    };
    if let Ok(maps) = object.maps() {
        for m in maps {
            assert!(!m.to_string().is_empty());
        }
    }
    let mut selectors = vec![
        Selector::Only,
        Selector::Function("gcd"),
        Selector::Section(".text"),
    ];
    for p in object.programs() {
        selectors.push(Selector::Function(&p.name));
        selectors.push(Selector::Section(&p.section));
    }
    for selector in selectors {
        if let Ok(loaded) = object.load(selector) {
            let _ = common::run(&loaded, &[0x45; 64], Some(20_000));
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        region: usize,
        at: usize,
        bit: u8,
    },
    SetByte {
        region: usize,
        at: usize,
        value: u8,
    },
    SetWord {
        region: usize,
        at: usize,
        value: u64,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        Just(0u64),
        Just(1),
        Just(8),
        Just(0xffff),
        Just(0xffff_ffff),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1 << 40),
        0u64..0x4000,
        any::<u64>(),
    ];
    prop_oneof![
        (0usize..8, any::<usize>(), 0u8..8).prop_map(|(region, at, bit)| Mutation::FlipBit {
            region,
            at,
            bit
        }),
        (0usize..8, any::<usize>(), any::<u8>())
            .prop_map(|(region, at, value)| Mutation::SetByte { region, at, value }),
        (0usize..8, any::<usize>(), word).prop_map(|(region, at, value)| Mutation::SetWord {
            region,
            at,
            value
        }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(target: &Target, mutations: &[Mutation]) -> Vec<u8> {
    let mut b = target.bytes.clone();
    let pick = |b: &[u8], region: usize, at: usize| -> Option<usize> {
        let (start, end) = target.regions[region % target.regions.len()];
        let end = end.min(b.len());
        (start < end).then(|| start + at % (end - start))
    };
    for m in mutations {
        match *m {
            Mutation::FlipBit { region, at, bit } => {
                if let Some(i) = pick(&b, region, at) {
                    b[i] ^= 1 << bit;
                }
            }
            Mutation::SetByte { region, at, value } => {
                if let Some(i) = pick(&b, region, at) {
                    b[i] = value;
                }
            }
            Mutation::SetWord { region, at, value } => {
                if let Some(i) = pick(&b, region, at) {
                    // Words land on 4-byte boundaries, where ELF fields are.
                    let i = i & !3;
                    let n = (b.len() - i).min(8);
                    b[i..i + n].copy_from_slice(&value.to_le_bytes()[..n]);
                }
            }
            Mutation::Truncate { at } => {
                let len = at % (b.len() + 1);
                b.truncate(len);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_objects_never_panic(which in any::<usize>(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let targets = targets();
        let target = &targets[which % targets.len()];
        exercise(&apply(target, &mutations));
    }

    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        // A valid identification, then noise.
        let mut b = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0\xf7\0".to_vec();
        b.extend(tail);
        exercise(&b);
    }
}

#[test]
fn every_truncation_and_every_byte_flip_of_the_headers() {
    for target in targets() {
        let b = &target.bytes;
        for len in 0..b.len() {
            exercise(&b[..len]);
        }
        let shoff = u64_at(b, 40) as usize;
        for i in (0..64).chain(shoff..b.len()) {
            for value in [0x00, 0xff, b[i] ^ 0x80] {
                let mut m = b.clone();
                m[i] = value;
                exercise(&m);
            }
        }
    }
}
