//! The code cache (`CodeCache`): a second load of the same program with the same options
//! compiles nothing (counted by the cache, not timed), anything that changes the code misses,
//! what does not change it (a run's data, the budget) hits and still runs with the new
//! load's own data, the code is freed with its last user, cached code gives exactly what fresh
//! code gives on every contract case, and loads from several threads compile once.

use std::sync::{Arc, Barrier};

use ebpf_vm::{CacheStats, CodeCache, Engine, Vm, VmBuilder};

use crate::{builder, run_facade};

/// Whether this build and host run Cranelift; says so when not.
fn cranelift_available() -> bool {
    let ok = Engine::Cranelift.is_available();
    if !ok {
        eprintln!("skipping: no Cranelift in this build or on this host (feature jit-cranelift)");
    }
    ok
}

/// Reads the read-only region's first word and adds the input's first byte.
const PROGRAM: &str = "
    mov %r6, %r1
    lddw %r1, 0x600000000
    ldxdw %r0, [%r1]
    ldxb %r2, [%r6]
    add %r0, %r2
    exit";

fn cranelift(cache: &CodeCache) -> VmBuilder {
    Vm::builder()
        .engine(Engine::Cranelift)
        .code_cache(cache.clone())
        .read_only_region(vec![1, 0, 0, 0, 0, 0, 0, 0])
}

fn stats(cache: &CodeCache) -> (u64, u64, usize) {
    let CacheStats {
        hits,
        compiles,
        live,
        ..
    } = cache.stats();
    (hits, compiles, live)
}

#[test]
fn a_second_load_compiles_nothing() {
    if !cranelift_available() {
        return;
    }
    let cache = CodeCache::new();
    let first = cranelift(&cache).load_asm(PROGRAM).unwrap();
    assert_eq!(stats(&cache), (0, 1, 1));
    let second = cranelift(&cache).load_asm(PROGRAM).unwrap();
    assert_eq!(stats(&cache), (1, 1, 1));
    assert_eq!(first.code_size(), second.code_size());
    assert_eq!(first.run(&mut [41]), Ok(42));
    assert_eq!(second.run(&mut [41]), Ok(42));
    // The tiered engine's Cranelift tier is the same code: found at load, it runs from the
    // first run on (its size is Cranelift's, not the x86 tier's), and nothing compiles.
    let tiered = cranelift(&cache)
        .engine(Engine::Tiered)
        .load_asm(PROGRAM)
        .unwrap();
    assert_eq!(stats(&cache), (2, 1, 1));
    assert_eq!(tiered.code_size(), first.code_size());
    assert_eq!(tiered.run(&mut [1]), Ok(2));
}

#[test]
fn what_changes_the_code_misses_and_what_does_not_hits() {
    if !cranelift_available() {
        return;
    }
    let cache = CodeCache::new();
    let base = cranelift(&cache).load_asm(PROGRAM).unwrap();
    let mut kept = vec![base];
    // Another program, and the same one without Spectre masking (on by default): each
    // compiles.
    let other = PROGRAM.replace("add %r0, %r2", "sub %r0, %r2");
    kept.push(cranelift(&cache).load_asm(&other).unwrap());
    assert_eq!(stats(&cache), (0, 2, 2));
    kept.push(
        cranelift(&cache)
            .spectre_masking(false)
            .load_asm(PROGRAM)
            .unwrap(),
    );
    assert_eq!(stats(&cache), (0, 3, 3));
    assert_eq!(kept[1].run(&mut [1]), Ok(0));
    // Other read-only data, a budget, another helper set: the same code (the data is read at
    // run time through the region table), so a hit — and each load runs with its own data.
    let seven = Vm::builder()
        .engine(Engine::Cranelift)
        .code_cache(cache.clone())
        .read_only_region(vec![7, 0, 0, 0, 0, 0, 0, 0])
        .budget(100)
        .helper(9, |args: [u64; 5], _: &mut dyn ebpf_vm::VmMemory| {
            Ok(args[0])
        })
        .load_asm(PROGRAM)
        .unwrap();
    assert_eq!(stats(&cache), (1, 3, 3));
    assert_eq!(seven.run(&mut [1]), Ok(8));
    assert_eq!(kept[0].run(&mut [1]), Ok(2));
    // A read-only region of another length changes the entry every run holds, so the facts
    // and the checks they drop: a miss, never the code proven for 8 bytes.
    let longer = Vm::builder()
        .engine(Engine::Cranelift)
        .code_cache(cache.clone())
        .read_only_region(vec![5, 0, 0, 0, 0, 0, 0, 0, 9])
        .load_asm(PROGRAM)
        .unwrap();
    assert_eq!(stats(&cache), (1, 4, 4));
    assert_eq!(longer.run(&mut [1]), Ok(6));
    // The x86 JIT and the interpreter do not go through the cache.
    for engine in [Engine::Interpreter, Engine::X86] {
        if engine.is_available() {
            let vm = cranelift(&cache).engine(engine).load_asm(PROGRAM).unwrap();
            assert_eq!(vm.run(&mut [1]), Ok(2));
        }
    }
    assert_eq!(stats(&cache), (1, 4, 4));
}

/// Code the facts proved for one entry is never handed to a load with another: the ninth
/// byte of a 9-byte read-only region is proven in bounds (no check in the code), and the same
/// program loaded with an 8-byte region must still trap there.
#[test]
fn code_proven_for_one_entry_is_not_reused_for_another() {
    if !cranelift_available() {
        return;
    }
    let cache = CodeCache::new();
    let ninth = "lddw %r1, 0x600000000\nldxb %r0, [%r1+8]\nexit";
    let load = |bytes: Vec<u8>| {
        Vm::builder()
            .engine(Engine::Cranelift)
            .code_cache(cache.clone())
            .read_only_region(bytes)
            .load_asm(ninth)
            .unwrap()
    };
    let nine = load(vec![0, 0, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(nine.run(&mut []), Ok(9));
    let eight = load(vec![0; 8]);
    assert_eq!(stats(&cache), (0, 2, 2));
    let trap = eight.run(&mut []).unwrap_err();
    assert_eq!(trap.pc, 2, "{trap}");
    assert!(
        matches!(
            trap.kind,
            ebpf_vm::TrapKind::OutOfBounds { write: false, .. }
        ),
        "{trap}"
    );
    // The same entry again: a hit, with the proof still true.
    let again = load(vec![1, 2, 3, 4, 5, 6, 7, 8, 7]);
    assert_eq!(stats(&cache), (1, 2, 2));
    assert_eq!(again.run(&mut []), Ok(7));
}

#[test]
fn code_is_freed_with_its_last_user_and_the_opt_out_shares_nothing() {
    if !cranelift_available() {
        return;
    }
    let cache = CodeCache::new();
    let vm = cranelift(&cache).load_asm(PROGRAM).unwrap();
    let again = cranelift(&cache).load_asm(PROGRAM).unwrap();
    drop(vm);
    assert_eq!(stats(&cache), (1, 1, 1), "still used by the second load");
    drop(again);
    assert_eq!(stats(&cache), (1, 1, 0), "freed with its last user");
    let vm = cranelift(&cache).load_asm(PROGRAM).unwrap();
    assert_eq!(stats(&cache), (1, 2, 1), "compiled again");
    // Opting out after choosing a cache: that cache is not touched.
    for _ in 0..2 {
        let fresh = cranelift(&cache).no_code_cache().load_asm(PROGRAM).unwrap();
        assert_eq!(fresh.run(&mut [2]), Ok(3));
    }
    assert_eq!(stats(&cache), (1, 2, 1));
    assert_eq!(vm.run(&mut [2]), Ok(3));
    assert!(CodeCache::global().same(&CodeCache::global()));
    assert!(!cache.same(&CodeCache::global()));
}

/// Every contract case on code compiled afresh, on a first load through a cache and on a
/// second (a hit: the first one's code), on Cranelift and on the tiered engine (which, on a
/// hit, runs the cached Cranelift code from its first run): the same outcome, the expected
/// one, on all of them.
#[test]
fn cached_code_gives_what_fresh_code_gives_on_every_contract_case() {
    if !cranelift_available() {
        return;
    }
    let cache = CodeCache::new();
    let cases = ebpf_contract::cases();
    let mut failures = Vec::new();
    for case in &cases {
        let program = match case.try_program() {
            Ok(p) => p,
            Err(e) => panic!("{}: {e}", case.name),
        };
        let load = |b: VmBuilder| b.load_program(program.clone()).unwrap();
        let fresh = load(builder(case, Engine::Cranelift).no_code_cache());
        let first = load(builder(case, Engine::Cranelift).code_cache(cache.clone()));
        let before = cache.stats();
        let hit = load(builder(case, Engine::Cranelift).code_cache(cache.clone()));
        let tiered = load(builder(case, Engine::Tiered).code_cache(cache.clone()));
        let after = cache.stats();
        assert_eq!(
            after.compiles, before.compiles,
            "{}: a hit compiled",
            case.name
        );
        assert_eq!(after.hits, before.hits + 2, "{}", case.name);
        let want = run_facade(&fresh, case);
        if let Err(e) = case.check(&want) {
            failures.push(format!("{} (fresh): {e}", case.name));
        }
        for (label, vm) in [("first", &first), ("hit", &hit), ("tiered hit", &tiered)] {
            // Twice: runs of shared code are independent.
            for _ in 0..2 {
                if run_facade(vm, case) != want {
                    failures.push(format!("{} ({label}): differs from fresh code", case.name));
                }
            }
        }
    }
    eprintln!("{} contract cases on cached and fresh code", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn loads_from_several_threads_compile_once() {
    if !cranelift_available() {
        return;
    }
    const THREADS: usize = 6;
    let cache = CodeCache::new();
    let barrier = Arc::new(Barrier::new(THREADS));
    let vms: Vec<Vm> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
                s.spawn(move || {
                    barrier.wait();
                    let vm = cranelift(&cache).load_asm(PROGRAM).unwrap();
                    for i in 0..50u8 {
                        assert_eq!(vm.run(&mut [i]), Ok(u64::from(i) + 1), "thread {t}");
                    }
                    vm
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(stats(&cache), (THREADS as u64 - 1, 1, 1));
    // The loaded programs run from other threads too, at once.
    std::thread::scope(|s| {
        for vm in &vms {
            s.spawn(move || assert_eq!(vm.run(&mut [9]), Ok(10)));
        }
    });
}
