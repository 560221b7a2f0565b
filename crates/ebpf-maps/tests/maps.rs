//! Every map type through the host API: the kernel's semantics for each operation (errors and
//! errnos included), the program's view (offsets into the value region), and concurrent
//! stress tests in which many threads update shared maps and the totals come out exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use ebpf_isa::AtomicOp;
use ebpf_maps::{Map, MapError, MapSpec, MapType, Maps, UpdateFlags};

fn key(k: u32) -> [u8; 4] {
    k.to_le_bytes()
}

fn u64_at(map: &Map, cpu: usize, off: usize) -> u64 {
    u64::from_le_bytes(map.values(cpu).unwrap().load::<8>(off).unwrap())
}

#[test]
fn arrays_hold_every_index_and_update_in_place() {
    let map = Map::new("a", MapSpec::new(MapType::Array, 4, 12, 3), 2).unwrap();
    assert_eq!(map.lookup(&key(2)).unwrap(), Some(vec![0; 12]));
    assert_eq!(map.lookup(&key(3)).unwrap(), None, "past max_entries");
    let value: Vec<u8> = (1..=12).collect();
    map.update(&key(1), &value, UpdateFlags::Any).unwrap();
    assert_eq!(map.lookup(&key(1)).unwrap(), Some(value.clone()));
    // The program sees the value at index * round_up(12, 8) in the region.
    assert_eq!(map.lookup_offset(&key(1)).unwrap(), Some(16));
    let mut seen = [0u8; 12];
    map.values(0).unwrap().read(16, &mut seen).unwrap();
    assert_eq!(seen.to_vec(), value);
    assert_eq!(
        map.update(&key(1), &value, UpdateFlags::NoExist),
        Err(MapError::Exists)
    );
    assert_eq!(
        map.update(&key(3), &value, UpdateFlags::Any),
        Err(MapError::Full)
    );
    assert_eq!(map.delete(&key(1)).unwrap_err().errno(), 22);
    assert_eq!(
        map.update(&key(0), &[0; 8], UpdateFlags::Any),
        Err(MapError::ValueSize {
            expected: 12,
            got: 8
        })
    );
    assert_eq!(
        map.lookup(&[0; 8]),
        Err(MapError::KeySize {
            expected: 4,
            got: 8
        })
    );
    assert_eq!(map.next_key(None).unwrap(), Some(key(0).to_vec()));
    assert_eq!(map.next_key(Some(&key(1))).unwrap(), Some(key(2).to_vec()));
    assert_eq!(map.next_key(Some(&key(2))).unwrap(), None);
    assert_eq!(map.next_key(Some(&key(99))).unwrap(), Some(key(0).to_vec()));
    assert_eq!(map.entries().len(), 3);
}

#[test]
fn per_cpu_arrays_keep_a_value_per_cpu() {
    let map = Map::new("pc", MapSpec::new(MapType::PerCpuArray, 4, 4, 2), 3).unwrap();
    map.update_on_cpu(1, &key(0), &7u32.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    // The host sees all three CPUs' values, each padded to 8 bytes.
    let all = map.lookup(&key(0)).unwrap().unwrap();
    assert_eq!(
        all,
        [vec![0; 8], vec![7, 0, 0, 0, 0, 0, 0, 0], vec![0; 8]].concat()
    );
    let host: Vec<u8> = [[1u8; 8], [2; 8], [3; 8]].concat();
    map.update(&key(1), &host, UpdateFlags::Any).unwrap();
    // Only value_size bytes of each padded value are stored.
    assert_eq!(
        map.lookup(&key(1)).unwrap().unwrap(),
        [
            [1, 1, 1, 1, 0, 0, 0, 0],
            [2, 2, 2, 2, 0, 0, 0, 0],
            [3, 3, 3, 3, 0, 0, 0, 0]
        ]
        .concat()
    );
    assert_eq!(map.values(2).unwrap().load::<4>(8), Some([3; 4]));
}

/// With one CPU, a per-CPU map's host view is still the kernel's syscall layout: the value
/// padded to 8 bytes (a 4-byte per-CPU value reads back as 8 bytes, as `bpf_map_lookup_elem`
/// gives it on a one-CPU machine), for arrays and hashes alike.
#[test]
fn per_cpu_values_are_padded_with_one_cpu_too() {
    for map_type in [MapType::PerCpuArray, MapType::PerCpuHash] {
        let map = Map::new("pc", MapSpec::new(map_type, 4, 4, 2), 1).unwrap();
        map.update(&key(0), &[5, 0, 0, 0, 0, 0, 0, 0], UpdateFlags::Any)
            .unwrap();
        assert_eq!(
            map.lookup(&key(0)).unwrap().unwrap(),
            [5, 0, 0, 0, 0, 0, 0, 0],
            "{map_type:?}"
        );
        assert_eq!(
            map.update(&key(1), &[5, 0, 0, 0], UpdateFlags::Any),
            Err(MapError::ValueSize {
                expected: 8,
                got: 4
            }),
            "{map_type:?}"
        );
    }
}

#[test]
fn hashes_create_replace_and_delete() {
    let map = Map::new("h", MapSpec::new(MapType::Hash, 6, 8, 4), 1).unwrap();
    let k = |n: u8| [n, 0, 0, 0, 0, n];
    for n in 0..4 {
        map.update(&k(n), &u64::from(n).to_le_bytes(), UpdateFlags::NoExist)
            .unwrap();
    }
    assert_eq!(map.len(), 4);
    assert_eq!(
        map.update(&k(9), &[0; 8], UpdateFlags::Any),
        Err(MapError::Full)
    );
    assert_eq!(MapError::Full.errno(), 7, "E2BIG");
    assert_eq!(
        map.update(&k(1), &[0; 8], UpdateFlags::NoExist),
        Err(MapError::Exists)
    );
    assert_eq!(
        map.update(&k(9), &[0; 8], UpdateFlags::Exist),
        Err(MapError::NotFound)
    );
    // Replacing an element moves it to a fresh slot: an old pointer keeps the old value.
    let before = map.lookup_offset(&k(2)).unwrap().unwrap();
    map.update(&k(2), &42u64.to_le_bytes(), UpdateFlags::Exist)
        .unwrap();
    let after = map.lookup_offset(&k(2)).unwrap().unwrap();
    assert_ne!(before, after);
    assert_eq!(u64_at(&map, 0, after), 42);
    assert_eq!(
        map.lookup(&k(2)).unwrap(),
        Some(42u64.to_le_bytes().to_vec())
    );
    map.delete(&k(2)).unwrap();
    assert_eq!(map.delete(&k(2)), Err(MapError::NotFound));
    assert_eq!(map.lookup(&k(2)).unwrap(), None);
    map.update(&k(9), &[9; 8], UpdateFlags::Any).unwrap();
    // Iteration visits every key once, whatever the order.
    let mut keys = Vec::new();
    let mut at = None;
    while let Some(next) = map.next_key(at.as_deref()).unwrap() {
        keys.push(next.clone());
        at = Some(next);
    }
    keys.sort();
    assert_eq!(
        keys,
        vec![k(0).to_vec(), k(1).to_vec(), k(3).to_vec(), k(9).to_vec()]
    );
    assert_eq!(map.entries().len(), 4);
    assert_eq!(map.element_offsets().unwrap().len(), 4);
}

#[test]
fn per_cpu_hashes_zero_the_other_cpus_of_a_new_element() {
    let map = Map::new("ph", MapSpec::new(MapType::PerCpuHash, 4, 8, 8), 2).unwrap();
    map.update_on_cpu(1, &key(5), &[5; 8], UpdateFlags::Any)
        .unwrap();
    assert_eq!(
        map.lookup(&key(5)).unwrap().unwrap(),
        [[0u8; 8], [5; 8]].concat()
    );
    // An existing element: only this CPU's copy changes, in place.
    let off = map.lookup_offset(&key(5)).unwrap().unwrap();
    map.update_on_cpu(0, &key(5), &[1; 8], UpdateFlags::Exist)
        .unwrap();
    assert_eq!(map.lookup_offset(&key(5)).unwrap(), Some(off));
    assert_eq!(
        map.lookup(&key(5)).unwrap().unwrap(),
        [[1u8; 8], [5; 8]].concat()
    );
}

#[test]
fn lru_hashes_evict_the_least_recently_used() {
    let map = Map::new("lru", MapSpec::new(MapType::LruHash, 4, 8, 4), 1).unwrap();
    for n in 0..4 {
        map.update(&key(n), &[n as u8; 8], UpdateFlags::Any)
            .unwrap();
    }
    // A program looks up 0, 1 and 3: 2 is the one not used since it was inserted.
    for n in [0, 1, 3] {
        assert!(map.lookup_offset(&key(n)).unwrap().is_some());
    }
    map.update(&key(10), &[10; 8], UpdateFlags::Any).unwrap();
    assert_eq!(map.len(), 4);
    assert_eq!(map.lookup(&key(2)).unwrap(), None, "2 was evicted");
    for n in [0, 1, 3, 10] {
        assert!(map.lookup(&key(n)).unwrap().is_some(), "{n} stays");
    }
    // Inserting many more never exceeds the capacity.
    for n in 100..200 {
        map.update(&key(n), &[1; 8], UpdateFlags::Any).unwrap();
    }
    assert_eq!(map.len(), 4);
    assert_eq!(map.entries().len(), 4);
    assert!(
        map.lookup(&key(199)).unwrap().is_some(),
        "the newest is there"
    );
}

#[test]
fn queues_and_stacks_pop_in_their_order() {
    for (map_type, order) in [(MapType::Queue, [1u8, 2, 3]), (MapType::Stack, [3, 2, 1])] {
        let map = Map::new("q", MapSpec::new(map_type, 0, 2, 3), 1).unwrap();
        for v in 1..=3u8 {
            map.push(&[v, v], UpdateFlags::Any).unwrap();
        }
        assert_eq!(map.push(&[4, 4], UpdateFlags::Any), Err(MapError::Full));
        assert_eq!(map.peek().unwrap(), vec![order[0]; 2]);
        let popped: Vec<u8> = (0..3).map(|_| map.pop().unwrap()[0]).collect();
        assert_eq!(popped, order);
        assert_eq!(map.pop(), Err(MapError::NotFound));
    }
    // BPF_EXIST on a full queue drops the oldest.
    let map = Map::new("q", MapSpec::new(MapType::Queue, 0, 1, 2), 1).unwrap();
    for v in 1..=3u8 {
        map.push(&[v], UpdateFlags::Exist).unwrap();
    }
    assert_eq!(map.entries(), vec![(vec![], vec![2]), (vec![], vec![3])]);
    assert!(Map::new("q", MapSpec::new(MapType::Queue, 4, 1, 2), 1).is_err());
}

#[test]
fn ring_buffers_deliver_submitted_records_in_order() {
    let map = Map::new("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096), 1).unwrap();
    assert!(map.ring_output(b"hello").unwrap());
    let a = map.ring_reserve(3).unwrap().unwrap();
    let b = map.ring_reserve(16).unwrap().unwrap();
    map.values(0).unwrap().write(a, b"abc").unwrap();
    map.values(0).unwrap().write(b, &[7; 16]).unwrap();
    // b is submitted, a is still reserved: the reader stops before a.
    assert!(map.ring_commit(b, false).unwrap());
    assert_eq!(map.ring_records().unwrap(), vec![b"hello".to_vec()]);
    assert!(map.ring_commit(a, true).unwrap(), "discard a");
    assert!(!map.ring_commit(a, false).unwrap(), "not reserved any more");
    assert_eq!(map.ring_records().unwrap(), vec![vec![7; 16]]);
    // Fill and wrap around: records never straddle the end of the region.
    let mut sent = 0;
    for i in 0..200u32 {
        if map.ring_output(&[i as u8; 100]).unwrap() {
            sent += 1;
        }
        if i % 10 == 9 {
            let got = map.ring_records().unwrap();
            assert!(got.iter().all(|r| r.len() == 100));
            sent -= got.len();
        }
    }
    assert_eq!(map.ring_records().unwrap().len(), sent);
    assert_eq!(map.ring_query().unwrap(), (0, 4096));
    assert_eq!(
        map.ring_reserve(5000).unwrap(),
        None,
        "larger than the ring"
    );
    assert!(Map::new("rb", MapSpec::new(MapType::RingBuf, 0, 0, 5000), 1).is_err());
}

/// As in the kernel (`__bpf_ringbuf_reserve`: `new_prod_pos - cons_pos > mask` fails), the
/// producer never gets a whole ring ahead of the consumer: 4 KiB hold 4,088 bytes of records.
#[test]
fn ring_buffers_never_fill_completely() {
    let map = Map::new("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096), 1).unwrap();
    // 127 records of 24 bytes (32 with the header) take 4,064 bytes.
    for _ in 0..127 {
        assert!(map.ring_output(&[1; 24]).unwrap());
    }
    // 32 more would fill all 4,096: refused; 24 (16 + 8) still fit.
    assert!(!map.ring_output(&[2; 24]).unwrap());
    assert_eq!(map.ring_reserve(24).unwrap(), None);
    assert!(map.ring_output(&[3; 16]).unwrap());
    assert!(
        !map.ring_output(&[]).unwrap(),
        "even an empty record needs 8 more"
    );
    assert_eq!(map.ring_records().unwrap().len(), 128);
    assert!(map.ring_output(&[4; 24]).unwrap(), "room again once read");
}

#[test]
fn ring_buffers_survive_scribbled_headers() {
    let map = Map::new("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096), 1).unwrap();
    let a = map.ring_reserve(8).unwrap().unwrap();
    // A program writes over its header: lengths are clamped, nothing panics.
    map.values(0)
        .unwrap()
        .write(a - 8, &[0x3f, 0xff, 0xff, 0x3f])
        .unwrap();
    let records = map.ring_records().unwrap();
    assert!(records.len() <= 1);
}

#[test]
fn perf_event_arrays_and_prog_arrays() {
    let perf = Map::new("events", MapSpec::new(MapType::PerfEventArray, 4, 4, 0), 2).unwrap();
    perf.perf_output(1, b"x").unwrap();
    // The kernel's errno for an index past the array: E2BIG.
    assert_eq!(perf.perf_output(2, b"y"), Err(MapError::Full));
    assert_eq!(perf.perf_records(1).unwrap(), vec![b"x".to_vec()]);
    assert!(perf.perf_records(0).unwrap().is_empty());

    let progs = Map::new("jmp", MapSpec::new(MapType::ProgArray, 4, 4, 4), 1).unwrap();
    assert_eq!(progs.program_at(1), None);
    progs
        .update(&key(1), &7u32.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    assert_eq!(progs.program_at(1), Some(7));
    assert_eq!(
        progs.entries(),
        vec![(key(1).to_vec(), 7u32.to_le_bytes().to_vec())]
    );
    progs.delete(&key(1)).unwrap();
    assert_eq!(progs.program_at(1), None);
    assert_eq!(progs.delete(&key(1)), Err(MapError::NotFound));
    assert!(progs.values(0).is_none());
}

/// The 1 GiB limit counts what a hash map really allocates: the spare slots an update needs,
/// every CPU's copy, the keys and bookkeeping. Each of these passed the nominal count
/// (`max_entries` × (value + key) × CPUs) and then allocated and zeroed far more: 6 GiB for one
/// entry of a 1 GiB value, ~17 GiB for a 64-CPU per-CPU hash of 4 MiB values, ~2.9 GiB for 2^26
/// small entries.
#[test]
fn a_hash_map_is_refused_on_what_it_would_allocate() {
    for (spec, cpus) in [
        (MapSpec::new(MapType::Hash, 4, (1 << 30) - 8, 1), 1),
        (MapSpec::new(MapType::LruHash, 4, (1 << 30) - 8, 1), 1),
        (MapSpec::new(MapType::PerCpuHash, 4, 4 << 20, 1), 64),
        (MapSpec::new(MapType::Hash, 4, 4, 1 << 26), 1),
    ] {
        match Map::new("x", spec, cpus) {
            Err(MapError::TooLarge { bytes }) => assert!(bytes > Map::MAX_BYTES, "{spec:?}"),
            other => panic!("{spec:?} on {cpus} CPUs: {other:?}"),
        }
    }
    // A large map within the limit is still made.
    let fits = MapSpec::new(MapType::Hash, 4, 4, 1 << 20);
    assert!(Map::new("x", fits, 1).is_ok());
}

#[test]
fn bad_specs_are_errors_not_allocations() {
    let too_big = MapSpec::new(MapType::Hash, 64, 1 << 20, u32::MAX);
    assert!(matches!(
        Map::new("x", too_big, 1),
        Err(MapError::TooLarge { .. })
    ));
    assert!(matches!(
        Map::new("x", MapSpec::new(MapType::Array, 8, 4, 4), 1),
        Err(MapError::BadSpec { .. })
    ));
    assert!(matches!(
        Map::new("x", MapSpec::new(MapType::Hash, 4, 4, 0), 1),
        Err(MapError::BadSpec { .. })
    ));
    let lpm = Map::new("x", MapSpec::new(MapType::from_kernel(11), 8, 4, 4), 1).unwrap_err();
    assert_eq!(
        lpm.to_string(),
        "map type lpm_trie (type 11) needs a kernel and is not supported"
    );
    assert_eq!(
        UpdateFlags::from_raw(4),
        Err(MapError::InvalidFlags { flags: 4 })
    );
    for id in 0..40 {
        assert_eq!(MapType::from_kernel(id).kernel_id(), id);
    }
}

/// N threads each run "programs" (through the program-side API, as the helpers will) that
/// count packets per key in a shared hash with atomic adds on the value in place, insert
/// and delete keys of their own, and bump a per-CPU counter on the CPU they claimed. The
/// totals must be exact.
#[test]
fn concurrent_updates_keep_exact_totals() {
    const THREADS: usize = 4;
    const ROUNDS: u64 = 20_000;
    let mut maps = Maps::new(3);
    let shared = maps
        .create("counts", MapSpec::new(MapType::Hash, 4, 8, 64))
        .unwrap();
    let per_cpu = maps
        .create("per_cpu", MapSpec::new(MapType::PerCpuArray, 4, 8, 1))
        .unwrap();
    let array = maps
        .create("array", MapSpec::new(MapType::Array, 4, 8, 8))
        .unwrap();
    for k in 0..8 {
        shared
            .update(&key(k), &[0; 8], UpdateFlags::NoExist)
            .unwrap();
    }
    let maps = Arc::new(maps);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let maps = Arc::clone(&maps);
            s.spawn(move || {
                let shared = maps.get("counts").unwrap();
                let per_cpu = maps.get("per_cpu").unwrap();
                let array = maps.get("array").unwrap();
                for i in 0..ROUNDS {
                    let cpu = maps.cpus().claim();
                    let k = key((i % 8) as u32);
                    let off = shared.lookup_offset(&k).unwrap().unwrap();
                    shared
                        .values(cpu.index())
                        .unwrap()
                        .atomic64(0, off, AtomicOp::Add { fetch: false }, 1, 0)
                        .unwrap();
                    // A plain read-modify-write of this CPU's counter: exact only because
                    // no other run holds this CPU now.
                    let region = per_cpu.values(cpu.index()).unwrap();
                    let v = u64::from_le_bytes(region.load::<8>(0).unwrap());
                    region.store(0, (v + 1).to_le_bytes()).unwrap();
                    // Whole-element replacements of a private key, and churn of others.
                    let own = key(1000 + t as u32);
                    shared
                        .update_on_cpu(cpu.index(), &own, &i.to_le_bytes(), UpdateFlags::Any)
                        .unwrap();
                    let churn = key(2000 + t as u32 * 100 + (i % 50) as u32);
                    let _ = shared.update_on_cpu(cpu.index(), &churn, &[1; 8], UpdateFlags::Any);
                    let _ = shared.delete(&churn);
                    // Array elements: each thread owns one word.
                    let aoff = array.lookup_offset(&key(t as u32)).unwrap().unwrap();
                    array
                        .values(0)
                        .unwrap()
                        .store(aoff, (i + 1).to_le_bytes())
                        .unwrap();
                }
            });
        }
    });
    let total: u64 = (0..8)
        .map(|k| u64::from_le_bytes(shared.lookup(&key(k)).unwrap().unwrap().try_into().unwrap()))
        .sum();
    assert_eq!(total, THREADS as u64 * ROUNDS);
    let per_cpu_total: u64 = per_cpu
        .lookup(&key(0))
        .unwrap()
        .unwrap()
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .sum();
    assert_eq!(per_cpu_total, THREADS as u64 * ROUNDS);
    for t in 0..THREADS as u32 {
        assert_eq!(
            shared.lookup(&key(1000 + t)).unwrap(),
            Some((ROUNDS - 1).to_le_bytes().to_vec())
        );
        assert_eq!(
            array.lookup(&key(t)).unwrap(),
            Some(ROUNDS.to_le_bytes().to_vec())
        );
    }
    // Only the 8 counters and the 4 private keys remain.
    let keys: BTreeMap<Vec<u8>, Vec<u8>> = shared.entries().into_iter().collect();
    assert_eq!(keys.len(), 12);
    assert_eq!(shared.len(), 12);
}

/// Lookups race with replacements of the same key: every lookup finds the key (an update
/// never makes an existing key disappear) and reads one whole value, never a mix.
#[test]
fn lookups_see_old_or_new_elements_never_a_mix() {
    let map = Arc::new(Map::new("h", MapSpec::new(MapType::Hash, 4, 16, 16), 1).unwrap());
    map.update(&key(1), &[0; 16], UpdateFlags::Any).unwrap();
    std::thread::scope(|s| {
        let writer = Arc::clone(&map);
        s.spawn(move || {
            for i in 1..=20_000u64 {
                let v = [i.to_le_bytes(), i.to_le_bytes()].concat();
                writer.update(&key(1), &v, UpdateFlags::Exist).unwrap();
            }
        });
        for _ in 0..2 {
            let reader = Arc::clone(&map);
            s.spawn(move || {
                for _ in 0..20_000 {
                    let v = reader
                        .lookup(&key(1))
                        .unwrap()
                        .expect("the key is always there");
                    assert_eq!(v[..8], v[8..], "a torn element");
                }
            });
        }
    });
}

/// Many threads insert into and evict from one small LRU map: it never holds more than its
/// capacity and every key it holds has its own value.
#[test]
fn concurrent_lru_inserts_stay_within_capacity() {
    let map = Arc::new(Map::new("lru", MapSpec::new(MapType::LruHash, 4, 8, 32), 4).unwrap());
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let map = Arc::clone(&map);
            s.spawn(move || {
                for i in 0..5_000u32 {
                    let k = t * 100_000 + i;
                    map.update(&key(k), &u64::from(k).to_le_bytes(), UpdateFlags::Any)
                        .unwrap();
                    let _ = map.lookup_offset(&key(k));
                }
            });
        }
    });
    let entries = map.entries();
    assert!(entries.len() <= 32 && map.len() <= 32, "{}", entries.len());
    for (k, v) in entries {
        assert_eq!(
            u64::from(u32::from_le_bytes(k.try_into().unwrap())),
            u64::from_le_bytes(v.try_into().unwrap())
        );
    }
}

#[test]
fn oversized_ring_buffers_and_perf_arrays_are_refused() {
    let ring = MapSpec::new(MapType::RingBuf, 0, 0, 1 << 31);
    assert!(matches!(
        Map::new("rb", ring, 1),
        Err(MapError::TooLarge { .. })
    ));
    let perf = MapSpec::new(MapType::PerfEventArray, 4, 4, 1 << 20);
    assert!(matches!(
        Map::new("p", perf, 1),
        Err(MapError::BadSpec { .. })
    ));
}

/// A program that scribbles over every header of its ring: the reader never reads past the
/// ring, never passes the producer, and the ring keeps working.
#[test]
fn a_scribbled_ring_keeps_its_positions_consistent() {
    let map = Map::new("rb", MapSpec::new(MapType::RingBuf, 0, 0, 4096), 1).unwrap();
    for round in 0..50u32 {
        let at = map.ring_reserve(24).unwrap().unwrap();
        assert!(map.ring_commit(at, false).unwrap());
        // Claim a huge record length (busy and discard bits clear).
        let huge = (0x3fff_0000 | round).to_le_bytes();
        map.values(0).unwrap().write(at - 8, &huge).unwrap();
        let _ = map.ring_records().unwrap();
        let (pending, size) = map.ring_query().unwrap();
        assert!(pending <= size);
    }
    assert!(map.ring_output(b"still works").unwrap());
    assert_eq!(map.ring_records().unwrap(), vec![b"still works".to_vec()]);
}

#[test]
fn redirect_maps_take_entries_as_the_kernel_does() {
    let key = |k: u32| k.to_le_bytes();
    let entry = |ifindex: u32, prog: u32| [ifindex.to_le_bytes(), prog.to_le_bytes()].concat();
    let mut maps = Maps::new(2);
    let dev = maps
        .create("dev", MapSpec::new(MapType::DevMap, 4, 8, 4))
        .unwrap();
    assert_eq!(dev.redirect_entry(1), Some(false));
    dev.update(&key(1), &entry(7, u32::MAX), UpdateFlags::Any)
        .unwrap();
    assert_eq!(dev.redirect_entry(1), Some(true));
    // No program id is stored; -1 and 0 both mean none, a real descriptor is refused.
    assert_eq!(dev.lookup(&key(1)).unwrap(), Some(entry(7, 0)));
    assert!(matches!(
        dev.update(&key(1), &entry(7, 3), UpdateFlags::Any),
        Err(MapError::Unsupported { .. })
    ));
    // Interface 0 empties the slot; slots past max_entries are E2BIG; NOEXIST is EEXIST.
    dev.update(&key(1), &entry(0, 0), UpdateFlags::Any).unwrap();
    assert_eq!(dev.redirect_entry(1), Some(false));
    assert_eq!(dev.lookup(&key(1)).unwrap(), None);
    assert_eq!(
        dev.update(&key(4), &entry(7, 0), UpdateFlags::Any),
        Err(MapError::Full)
    );
    assert_eq!(
        dev.update(&key(2), &entry(7, 0), UpdateFlags::NoExist),
        Err(MapError::Exists)
    );
    // A devmap hash takes any key, refuses interface 0, and keeps hash flags.
    let hash = maps
        .create("hash", MapSpec::new(MapType::DevMapHash, 4, 4, 2))
        .unwrap();
    hash.update(&key(1000), &key(7), UpdateFlags::NoExist)
        .unwrap();
    assert_eq!(
        hash.update(&key(1000), &key(8), UpdateFlags::NoExist),
        Err(MapError::Exists)
    );
    assert!(matches!(
        hash.update(&key(5), &key(0), UpdateFlags::Any),
        Err(MapError::InvalidValue { .. })
    ));
    assert_eq!(hash.redirect_entry(1000), Some(true));
    // A cpumap's keys are CPUs the maps have.
    let cpus = maps
        .create("cpus", MapSpec::new(MapType::CpuMap, 4, 4, 4))
        .unwrap();
    cpus.update(&key(1), &key(64), UpdateFlags::Any).unwrap();
    assert!(matches!(
        cpus.update(&key(2), &key(64), UpdateFlags::Any),
        Err(MapError::InvalidValue { .. })
    ));
    // Sizes the kernel refuses.
    assert!(Map::new("x", MapSpec::new(MapType::XskMap, 4, 8, 4), 1).is_err());
    assert!(Map::new("x", MapSpec::new(MapType::DevMap, 8, 4, 4), 1).is_err());
    // Other maps are no redirect targets.
    let array = maps
        .create("array", MapSpec::new(MapType::Array, 4, 4, 4))
        .unwrap();
    assert_eq!(array.redirect_entry(0), None);
}

/// A frozen map (`BPF_MAP_FREEZE`, an object's `.rodata`) keeps its values: host and
/// program updates fail with `EPERM`, and `frozen` is what the map held when frozen.
#[test]
fn frozen_maps_refuse_every_change() {
    let map = Map::new("ro", MapSpec::new(MapType::Array, 4, 8, 2), 1).unwrap();
    assert_eq!(map.frozen(), None);
    map.update(&key(1), &7u64.to_le_bytes(), UpdateFlags::Any)
        .unwrap();
    let mut want = [0u8; 16];
    want[8] = 7;
    assert_eq!(map.freeze(), &want[..]);
    for err in [
        map.update(&key(0), &1u64.to_le_bytes(), UpdateFlags::Any),
        map.update_on_cpu(0, &key(0), &1u64.to_le_bytes(), UpdateFlags::Any),
        map.delete(&key(0)),
    ] {
        assert_eq!(err, Err(MapError::Frozen));
    }
    assert_eq!(MapError::Frozen.errno(), 1);
    assert_eq!(map.frozen(), Some(&want[..]));
    assert_eq!(map.lookup(&key(1)), Ok(Some(7u64.to_le_bytes().to_vec())));
}

/// Arrays and hashes of maps hold maps of their set like their template; a slot reads back
/// as the inner map, an emptied slot as nothing; the host's raw update is refused (a map goes
/// in by `Maps::set_inner`), and so are maps unlike the template, maps of another set, and
/// nesting.
#[test]
fn maps_of_maps_hold_maps_of_their_set_like_their_template() {
    let mut maps = Maps::new(1);
    let template = MapSpec::new(MapType::Hash, 4, 8, 16);
    let a = maps.create("tenant_a", template).unwrap();
    let b = maps.create("tenant_b", template).unwrap();
    let other = maps
        .create("other", MapSpec::new(MapType::Hash, 4, 16, 16))
        .unwrap();
    for outer_type in [MapType::ArrayOfMaps, MapType::HashOfMaps] {
        let outer = maps
            .create_of_maps(
                &format!("outer_{}", outer_type.name()),
                MapSpec::new(outer_type, 4, 4, 4),
                template,
            )
            .unwrap();
        assert_eq!(outer.inner_template(), Some(&template));
        assert!(maps.inner(&outer, &key(1)).unwrap().is_none());
        maps.set_inner(&outer, &key(1), &b, UpdateFlags::Any)
            .unwrap();
        maps.set_inner(&outer, &key(2), &a, UpdateFlags::Any)
            .unwrap();
        assert_eq!(
            maps.inner(&outer, &key(1)).unwrap().unwrap().name(),
            "tenant_b"
        );
        // The host's lookup gives the inner map's index in the set (the kernel gives its id).
        assert_eq!(
            outer.lookup(&key(2)).unwrap(),
            Some(0u32.to_le_bytes().to_vec())
        );
        assert_eq!(outer.entries().len(), 2);
        let err = maps
            .set_inner(&outer, &key(0), &other, UpdateFlags::Any)
            .unwrap_err();
        assert!(
            err.to_string().contains("is not like the inner maps of"),
            "{err}"
        );
        let stranger = Map::new("stranger", template, 1).unwrap();
        assert!(matches!(
            maps.set_inner(&outer, &key(0), &stranger, UpdateFlags::Any),
            Err(MapError::InvalidValue { .. })
        ));
        assert!(matches!(
            outer.update(&key(0), &[0; 4], UpdateFlags::Any),
            Err(MapError::Unsupported { .. })
        ));
        outer.delete(&key(1)).unwrap();
        assert!(maps.inner(&outer, &key(1)).unwrap().is_none());
        assert_eq!(outer.delete(&key(1)), Err(MapError::NotFound));
    }
    // An array of maps' keys are indices below max_entries.
    let outer = maps
        .create_of_maps("arr", MapSpec::new(MapType::ArrayOfMaps, 4, 4, 2), template)
        .unwrap();
    assert_eq!(
        maps.set_inner(&outer, &key(2), &a, UpdateFlags::Any),
        Err(MapError::Full)
    );
    // Inner arrays must match the template's size unless it says BPF_F_INNER_MAP.
    let small = maps
        .create("small", MapSpec::new(MapType::Array, 4, 8, 2))
        .unwrap();
    let array_template = MapSpec::new(MapType::Array, 4, 8, 4);
    let strict = maps
        .create_of_maps(
            "strict",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 1),
            array_template,
        )
        .unwrap();
    assert!(
        maps.set_inner(&strict, &key(0), &small, UpdateFlags::Any)
            .is_err()
    );
    let loose = maps
        .create_of_maps(
            "loose",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 1),
            MapSpec {
                flags: ebpf_maps::BPF_F_INNER_MAP,
                ..array_template
            },
        )
        .unwrap();
    let small_inner = maps
        .create(
            "small_inner",
            MapSpec {
                flags: ebpf_maps::BPF_F_INNER_MAP,
                ..MapSpec::new(MapType::Array, 4, 8, 2)
            },
        )
        .unwrap();
    maps.set_inner(&loose, &key(0), &small_inner, UpdateFlags::Any)
        .unwrap();
    // No map of maps without a template, none nested, none of a prog array.
    assert!(Map::new("m", MapSpec::new(MapType::ArrayOfMaps, 4, 4, 1), 1).is_err());
    assert!(
        Map::new_of_maps(
            "m",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 1),
            MapSpec::new(MapType::HashOfMaps, 4, 4, 1)
        )
        .is_err()
    );
}

/// The host swaps a slot between two maps while threads look it up: every lookup sees one of
/// the two (both alive as long as the set), never anything else. The readers go on until the
/// writer has swapped `SWAPS` times, so the two overlap however the threads are scheduled (on
/// a loaded machine the readers once finished before the writer's first swap).
#[test]
fn a_slot_swapped_during_lookups_gives_the_old_map_or_the_new() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    const READERS: usize = 3;
    const SWAPS: u64 = 200;
    let mut maps = Maps::new(1);
    let template = MapSpec::new(MapType::Array, 4, 8, 1);
    let a = maps.create("a", template).unwrap();
    let b = maps.create("b", template).unwrap();
    let outer = maps
        .create_of_maps(
            "outer",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 1),
            template,
        )
        .unwrap();
    maps.set_inner(&outer, &key(0), &a, UpdateFlags::Any)
        .unwrap();
    let done = AtomicUsize::new(0);
    let swaps = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                let mut lookups = 0;
                while lookups < 50_000 || swaps.load(Ordering::Acquire) < SWAPS {
                    match outer.inner_at(&key(0)).unwrap() {
                        Some(0 | 1) => {}
                        other => panic!("slot held {other:?}"),
                    }
                    lookups += 1;
                }
                done.fetch_add(1, Ordering::Release);
            });
        }
        let mut round = 0u64;
        while done.load(Ordering::Acquire) < READERS {
            let next = if round.is_multiple_of(2) { &b } else { &a };
            maps.set_inner(&outer, &key(0), next, UpdateFlags::Any)
                .unwrap();
            round += 1;
            swaps.store(round, Ordering::Release);
        }
        assert!(round >= SWAPS);
    });
}

#[test]
fn an_outer_map_of_another_set_takes_no_inner_map() {
    let template = MapSpec::new(MapType::Hash, 4, 8, 16);
    let mut a = Maps::new(1);
    a.create("a0", template).unwrap();
    let a1 = a.create("a1", template).unwrap(); // index 1 in `a`
    let mut b = Maps::new(1);
    let outer = b
        .create_of_maps(
            "outer",
            MapSpec::new(MapType::ArrayOfMaps, 4, 4, 4),
            template,
        )
        .unwrap(); // index 0 in `b`
    // Index 1 in `b`: what a program of `b` would have found in the slot.
    b.create("progs", MapSpec::new(MapType::ProgArray, 4, 4, 4))
        .unwrap();
    assert!(matches!(
        a.set_inner(&outer, &key(0), &a1, UpdateFlags::Any),
        Err(MapError::InvalidValue { .. })
    ));
    assert!(b.inner(&outer, &key(0)).unwrap().is_none());
}

/// The steps of `for_each_map_elem` visit what `element_offsets` lists, in offset order,
/// each key whole, and skip nothing when the element just visited is deleted.
#[test]
fn element_steps_visit_every_element_in_offset_order() {
    let walk = |map: &Map, delete: bool| {
        let mut key = Vec::new();
        let mut seen = Vec::new();
        let mut cursor = 0;
        while let Some(offset) = map.element_at_or_after(cursor, &mut key).unwrap() {
            seen.push((key.clone(), offset));
            if delete {
                map.delete(&key).unwrap();
            }
            cursor = offset + 1;
        }
        seen
    };
    let array = Map::new("a", MapSpec::new(MapType::Array, 4, 12, 5), 1).unwrap();
    let want: Vec<_> = (0..5u32)
        .map(|i| (key(i).to_vec(), i as usize * 16))
        .collect();
    assert_eq!(walk(&array, false), want);
    assert_eq!(
        array
            .element_at_or_after(usize::MAX, &mut Vec::new())
            .unwrap(),
        None
    );
    for map_type in [MapType::Hash, MapType::LruPerCpuHash] {
        let hash = Map::new("h", MapSpec::new(map_type, 4, 8, 64), 2).unwrap();
        let value = vec![7; if map_type.is_per_cpu() { 16 } else { 8 }];
        for k in [3u32, 17, 40, 41, 63, 1000] {
            hash.update(&key(k), &value, UpdateFlags::Any).unwrap();
        }
        hash.delete(&key(40)).unwrap();
        let mut want = hash.element_offsets().unwrap();
        want.sort_by_key(|&(_, offset)| offset);
        assert_eq!(want.len(), 5);
        assert_eq!(walk(&hash, false), want, "{map_type:?}");
        assert_eq!(walk(&hash, true), want, "{map_type:?}");
        assert!(hash.is_empty());
        assert_eq!(walk(&hash, false), vec![]);
    }
    let queue = Map::new("q", MapSpec::new(MapType::Queue, 0, 4, 4), 1).unwrap();
    assert!(queue.element_at_or_after(0, &mut Vec::new()).is_err());
}

/// The facade tells the facts that every value a program looks up is 8-aligned in its region
/// (`MapRegion::align`), which proves atomics on map values aligned: it must hold for every
/// map type a program looks values up in, whatever the value size.
#[test]
fn every_value_a_program_looks_up_starts_at_a_multiple_of_8() {
    let types = [
        MapType::Array,
        MapType::PerCpuArray,
        MapType::Hash,
        MapType::LruHash,
        MapType::PerCpuHash,
        MapType::LruPerCpuHash,
    ];
    for map_type in types {
        for value_size in [1, 4, 12, 16, 24] {
            let spec = MapSpec::new(map_type, 4, value_size, 5);
            let map = Map::new("m", spec, 2).unwrap();
            // (The host writes a per-CPU value for each CPU, each padded to 8 bytes.)
            let len = if map_type.is_per_cpu() {
                ebpf_maps::round_up_8(value_size) * 2
            } else {
                value_size as usize
            };
            let value = vec![0xa5; len];
            for k in 0..5 {
                map.update(&key(k), &value, UpdateFlags::Any).unwrap();
            }
            // Replace and delete some, so that hashes reuse and move slots.
            map.update(&key(1), &value, UpdateFlags::Exist).unwrap();
            // (An array's elements cannot be deleted.)
            if map.delete(&key(3)).is_ok() {
                map.update(&key(3), &value, UpdateFlags::NoExist).unwrap();
            }
            for k in 0..5 {
                let off = map.lookup_offset(&key(k)).unwrap();
                let off = off.unwrap_or_else(|| panic!("{map_type:?} {value_size}: key {k}"));
                assert_eq!(
                    off % 8,
                    0,
                    "{map_type:?}, {value_size}-byte values, key {k}"
                );
            }
        }
    }
}
