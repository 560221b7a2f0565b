//! Hash and array maps against a model (a `BTreeMap` with the kernel's rules): random
//! sequences of updates with every flag, deletes, lookups from the host and the program side,
//! and iteration must agree with the model after every step.

use std::collections::BTreeMap;

use ebpf_maps::{Map, MapError, MapSpec, MapType, UpdateFlags};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Update(u8, u8, UpdateFlags),
    Delete(u8),
    Lookup(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![
        Just(UpdateFlags::Any),
        Just(UpdateFlags::NoExist),
        Just(UpdateFlags::Exist)
    ];
    // Keys from a small range so that operations collide.
    prop_oneof![
        (0u8..24, any::<u8>(), flags).prop_map(|(k, v, f)| Op::Update(k, v, f)),
        (0u8..24).prop_map(Op::Delete),
        (0u8..24).prop_map(Op::Lookup),
    ]
}

/// 3-byte keys (not a multiple of 8) and 5-byte values, so padding is exercised.
fn key(k: u8) -> [u8; 3] {
    [k, 0x5a, k.wrapping_mul(3)]
}

fn value(v: u8) -> [u8; 5] {
    [v, v, 0, v, 1]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_hash_map_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        const CAPACITY: usize = 16;
        let map = Map::new("h", MapSpec::new(MapType::Hash, 3, 5, CAPACITY as u32), 1).unwrap();
        let mut model: BTreeMap<[u8; 3], [u8; 5]> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Update(k, v, flags) => {
                    let exists = model.contains_key(&key(k));
                    let want = match (exists, flags) {
                        (true, UpdateFlags::NoExist) => Err(MapError::Exists),
                        (false, UpdateFlags::Exist) => Err(MapError::NotFound),
                        (false, _) if model.len() >= CAPACITY => Err(MapError::Full),
                        _ => Ok(()),
                    };
                    let got = map.update(&key(k), &value(v), flags);
                    prop_assert_eq!(&got, &want);
                    if got.is_ok() {
                        model.insert(key(k), value(v));
                    }
                }
                Op::Delete(k) => {
                    let want = if model.remove(&key(k)).is_some() {
                        Ok(())
                    } else {
                        Err(MapError::NotFound)
                    };
                    prop_assert_eq!(map.delete(&key(k)), want);
                }
                Op::Lookup(k) => {
                    let want = model.get(&key(k)).map(|v| v.to_vec());
                    prop_assert_eq!(map.lookup(&key(k)).unwrap(), want.clone());
                    // The program's view: the value in the region at the offset given.
                    let off = map.lookup_offset(&key(k)).unwrap();
                    prop_assert_eq!(off.is_some(), want.is_some());
                    if let (Some(off), Some(want)) = (off, want) {
                        let mut seen = [0u8; 5];
                        map.values(0).unwrap().read(off, &mut seen).unwrap();
                        prop_assert_eq!(seen.to_vec(), want);
                    }
                }
            }
            prop_assert_eq!(map.len(), model.len());
        }
        // Iteration with next_key visits exactly the model's keys, each once.
        let mut seen = Vec::new();
        let mut at: Option<Vec<u8>> = None;
        while let Some(next) = map.next_key(at.as_deref()).unwrap() {
            prop_assert!(seen.len() <= model.len(), "iteration does not end");
            seen.push(next.clone());
            at = Some(next);
        }
        seen.sort();
        let want: Vec<Vec<u8>> = model.keys().map(|k| k.to_vec()).collect();
        prop_assert_eq!(seen, want);
        let entries: BTreeMap<Vec<u8>, Vec<u8>> = map.entries().into_iter().collect();
        let want: BTreeMap<Vec<u8>, Vec<u8>> =
            model.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        prop_assert_eq!(entries, want);
    }

    #[test]
    fn an_array_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        const LEN: u8 = 16;
        let map = Map::new("a", MapSpec::new(MapType::Array, 4, 5, u32::from(LEN)), 1).unwrap();
        let mut model = [[0u8; 5]; LEN as usize];
        let index = |k: u8| u32::from(k).to_le_bytes();
        for op in ops {
            match op {
                Op::Update(k, v, flags) => {
                    let want = if k >= LEN {
                        Err(MapError::Full)
                    } else if flags == UpdateFlags::NoExist {
                        Err(MapError::Exists)
                    } else {
                        Ok(())
                    };
                    let got = map.update(&index(k), &value(v), flags);
                    prop_assert_eq!(&got, &want);
                    if got.is_ok() {
                        model[k as usize] = value(v);
                    }
                }
                Op::Delete(k) => {
                    let unsupported = matches!(map.delete(&index(k)), Err(MapError::Unsupported { .. }));
                    prop_assert!(unsupported, "arrays cannot delete");
                }
                Op::Lookup(k) => {
                    let want = model.get(k as usize).map(|v| v.to_vec());
                    prop_assert_eq!(map.lookup(&index(k)).unwrap(), want);
                }
            }
        }
    }
}
