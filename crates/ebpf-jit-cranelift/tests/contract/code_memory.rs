//! Code memory (`src/pool.rs` on x86-64 Linux, `cranelift-jit`'s own provider elsewhere):
//! programs compiled and freed by the hundred, from several threads at once, in one unit or
//! many, and each one's code still runs correctly while the others' pages are freed and
//! handed out again.

use ebpf_abi::{Helpers, Limits, MemoryMap};
use ebpf_contract::differential::asm;
use ebpf_isa::Program;
use ebpf_jit_cranelift::CraneliftProgram;

use crate::{interp, jit_with, options, split_options, supported};

/// A program whose result depends on `seed` and whose code grows with `seed % 40` (a few
/// hundred bytes to several pages, and more than a pool chunk in units of three).
fn program(seed: u64) -> Program {
    let mut text = format!("mov %r0, {seed}\nmov %r1, {}\n", seed ^ 0x5a5a);
    for k in 0..(seed % 40) * 6 {
        text.push_str(&format!(
            "add %r0, {}\nxor %r0, %r1\nlsh %r1, 1\n",
            k * 7 + seed
        ));
    }
    text.push_str("exit\n");
    asm(&text)
}

/// Compiles `program(seed)`, in units of three for every third seed (one module, many
/// functions).
fn compiled(seed: u64) -> (Program, CraneliftProgram) {
    let p = program(seed);
    let options = if seed.is_multiple_of(3) {
        split_options()
    } else {
        options()
    };
    let jit = jit_with(&p, &options);
    (p, jit)
}

/// Runs `jit` and the interpreter on `p`; they must agree.
fn agrees(p: &Program, jit: &CraneliftProgram, seed: u64) {
    let run = |p: &Program| {
        interp()(
            p,
            MemoryMap::new(),
            [0, 0],
            &Helpers::new(),
            &Limits::default(),
        )
    };
    let expected = run(p);
    let got = jit.run(
        MemoryMap::new(),
        [0, 0],
        &Helpers::new(),
        &Limits::default(),
    );
    assert_eq!(got, expected, "program {seed}");
}

#[test]
fn programs_compiled_and_freed_by_the_hundred_keep_running() {
    if !supported() {
        return;
    }
    let mut kept = Vec::new();
    for seed in 0..240 {
        let (p, jit) = compiled(seed);
        agrees(&p, &jit, seed);
        // Most are dropped at once, so their pages are reused by the next ones.
        if seed.is_multiple_of(5) {
            kept.push((seed, p, jit));
        }
    }
    for (seed, p, jit) in &kept {
        agrees(p, jit, *seed);
    }
}

#[test]
fn compiles_on_several_threads_share_code_memory_safely() {
    if !supported() {
        return;
    }
    let kept: Vec<(u64, Program, CraneliftProgram)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                scope.spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..60 {
                        let seed = 1000 + t * 100 + i;
                        let (p, jit) = compiled(seed);
                        agrees(&p, &jit, seed);
                        for (seed, p, jit) in &kept {
                            agrees(p, jit, *seed);
                        }
                        if i.is_multiple_of(7) {
                            kept.push((seed, p, jit));
                        }
                    }
                    kept
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a compiling thread panicked"))
            .collect()
    });
    // Every thread's survivors still run, after all the others' code was freed.
    assert_eq!(kept.len(), 4 * 9);
    for (seed, p, jit) in &kept {
        agrees(p, jit, *seed);
    }
}
