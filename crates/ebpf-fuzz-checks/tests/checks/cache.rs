//! The differential target's caches. The compile cache: the same program under the same
//! options is compiled once, other options or programs compile anew, the least recently used
//! entry makes room, and a cached compile runs every setup as a fresh compile does. The
//! structured program generator's: a kept draw is the draw its seed gives afresh.

use std::rc::Rc;

use ebpf_abi::Limits;
use ebpf_fuzz_checks::engines::{CompileCache, EngineOptions, Engines, Setup};
use ebpf_jit_cranelift::OptLevel;

/// `r0 = *(u8 *)(r1 + 0) + k`, storing `k` back at `r1 + 1`: a result and a memory change.
fn program(k: i32) -> ebpf_isa::Program {
    let text = format!("ldxb %r0, [%r1]\nadd %r0, {k}\nstb [%r1+1], {k}\nexit");
    ebpf_isa::assemble(&text).unwrap()
}

fn speed() -> EngineOptions {
    EngineOptions::default()
}

fn unoptimised() -> EngineOptions {
    EngineOptions {
        cranelift_opt: OptLevel::None,
        ..EngineOptions::default()
    }
}

#[test]
fn the_same_program_and_options_compile_once() {
    let mut cache = CompileCache::new(4);
    let first = cache.compile(&program(1), &speed()).unwrap();
    let again = cache.compile(&program(1), &speed()).unwrap();
    assert!(Rc::ptr_eq(&first, &again));
    let other_options = cache.compile(&program(1), &unoptimised()).unwrap();
    assert!(!Rc::ptr_eq(&first, &other_options));
    let other_program = cache.compile(&program(2), &speed()).unwrap();
    assert!(!Rc::ptr_eq(&first, &other_program));
    // Both options of program 1 are still there.
    assert!(Rc::ptr_eq(
        &other_options,
        &cache.compile(&program(1), &unoptimised()).unwrap()
    ));
    assert!(Rc::ptr_eq(
        &first,
        &cache.compile(&program(1), &speed()).unwrap()
    ));
}

#[test]
fn the_least_recently_used_compile_makes_room() {
    let mut cache = CompileCache::new(2);
    let one = cache.compile(&program(1), &speed()).unwrap();
    let two = cache.compile(&program(2), &speed()).unwrap();
    // Using 1 again makes 2 the least recently used: 3 evicts it.
    assert!(Rc::ptr_eq(
        &one,
        &cache.compile(&program(1), &speed()).unwrap()
    ));
    cache.compile(&program(3), &speed()).unwrap();
    assert!(Rc::ptr_eq(
        &one,
        &cache.compile(&program(1), &speed()).unwrap()
    ));
    assert!(!Rc::ptr_eq(
        &two,
        &cache.compile(&program(2), &speed()).unwrap()
    ));
}

#[test]
fn a_cache_of_size_zero_keeps_nothing() {
    let mut cache = CompileCache::new(0);
    let first = cache.compile(&program(1), &speed()).unwrap();
    assert!(!Rc::ptr_eq(
        &first,
        &cache.compile(&program(1), &speed()).unwrap()
    ));
}

#[test]
fn a_cached_compile_runs_every_setup_as_a_fresh_one() {
    let mut cache = CompileCache::new(4);
    let setup = |byte: u8| Setup {
        limits: Limits {
            budget: Some(100),
            ..Limits::default()
        },
        input: Some(vec![byte, 0, 0, 0]),
        ..Setup::default()
    };
    for k in [1, 7] {
        for byte in [0, 5, 255] {
            // Each round after the first takes program(k) from the cache, whose engines have
            // run earlier setups: their outcomes must not depend on that.
            let cached = cache.compile(&program(k), &speed()).unwrap();
            let fresh = Engines::compile(&program(k), &speed()).unwrap();
            let want = fresh.check(&setup(byte)).unwrap();
            assert_eq!(cached.check(&setup(byte)).unwrap(), want);
            assert_eq!(
                want.result.as_ref().map(|exit| exit.r0),
                Ok(u64::from(byte) + k as u64)
            );
            assert_eq!(want.memory[0].1[1], k as u8);
        }
    }
}

#[test]
fn a_kept_structured_draw_is_the_draw_its_seed_gives_afresh() {
    use ebpf_fuzz_checks::generate::{STRUCTURED_CACHE_SIZE, draw_structured, structured_program};
    let seed = |i: usize| {
        let mut s = [0u8; 32];
        s[0] = i as u8;
        s[31] = 0x5a;
        s
    };
    // More seeds than the cache keeps, then each again: the first ones were evicted and are
    // drawn anew, the last ones come from the cache; all must equal a fresh draw.
    let seeds = STRUCTURED_CACHE_SIZE + 4;
    let fresh: Vec<_> = (0..seeds).map(|i| draw_structured(seed(i))).collect();
    assert!(
        fresh.iter().flatten().count() > seeds / 2,
        "few programs drawn"
    );
    assert!(
        fresh.windows(2).any(|w| w[0] != w[1]),
        "seeds gave one program"
    );
    for _ in 0..2 {
        for (i, want) in fresh.iter().enumerate() {
            // Bytes past the 32 of the seed do not change the draw.
            let mut bytes = seed(i).to_vec();
            bytes.extend_from_slice(&[i as u8; 7]);
            assert_eq!(&structured_program(&bytes), want, "seed {i}");
            assert_eq!(&structured_program(&seed(i)), want, "seed {i}");
        }
    }
}
