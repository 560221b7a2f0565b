//! The code's memory and size, and a run's: pages are read+execute (never writable), the
//! compiled program is `Send + Sync`, large programs compile, and a run allocates frames for the
//! clamped call depth only.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

use ebpf_abi::{Exit, Helpers, Limits, MAX_CALL_DEPTH, MemoryMap, Trap, TrapKind};
use ebpf_jit_x86::{JitOptions, X86Program, compile};

#[test]
fn compiled_programs_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<X86Program>();
}

#[cfg(target_os = "linux")]
#[test]
fn code_pages_are_read_execute_not_writable() {
    let program = ebpf_isa::assemble("mov %r0, 1\nexit").unwrap();
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let addr = jit.code().as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|line| {
            let range = line.split_whitespace().next().unwrap_or("");
            let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
            let lo = usize::from_str_radix(lo, 16).unwrap_or(0);
            let hi = usize::from_str_radix(hi, 16).unwrap_or(0);
            (lo..hi).contains(&addr)
        })
        .expect("the code is mapped");
    let perms = line.split_whitespace().nth(1).unwrap();
    assert_eq!(&perms[..3], "r-x", "{line}");
    // And nothing in the process is writable and executable at once because of us.
    assert!(!maps.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|p| p.starts_with("rwx"))
    }));
}

/// Runs `jit` with no memory, `r1 = r1`, no helpers and default limits.
fn run(jit: &X86Program, r1: u64) -> Exit {
    jit.run(
        MemoryMap::new(),
        [r1, 0],
        &Helpers::new(),
        &Limits::default(),
    )
    .unwrap()
}

#[test]
fn a_million_instructions_compile_and_run() {
    let program = ebpf_bench::straight_line(1_000_000);
    let jit = compile(&program, &JitOptions::default()).unwrap();
    assert!(jit.code_size() > 1_000_000);
    let exit = run(&jit, 0);
    assert_eq!(exit.instructions, 1_000_001);
    let interp = ebpf_interp::Interpreter::new(&program);
    let want = interp
        .run(
            MemoryMap::new(),
            [0, 0],
            &Helpers::new(),
            &Limits::default(),
        )
        .unwrap();
    assert_eq!(exit, want);
}

/// Code pages come from a shared pool that is recycled once every program in a chunk is gone:
/// many threads compiling, running and dropping programs at once, some kept alive across
/// recycling, must each keep running their own code.
#[test]
fn pooled_code_survives_concurrent_compiles_drops_and_recycling() {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..300u64 {
                    let value = t * 1_000_000 + i;
                    let source = format!("lddw %r0, {value}\nadd %r0, %r1\nexit");
                    let program = ebpf_isa::assemble(&source).unwrap();
                    let jit = compile(&program, &JitOptions::default()).unwrap();
                    kept.push((value, jit));
                    // The new program and every one kept so far run their own code.
                    for (value, jit) in &kept {
                        assert_eq!(run(jit, 7).r0, value + 7);
                    }
                    if i % 37 != 0 {
                        kept.pop();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// `max_call_depth` is clamped to `MAX_CALL_DEPTH`, as in the interpreter: a run with
/// `usize::MAX` allocates 65,536 frames (not `usize::MAX`), and endless recursion traps at that
/// depth, at the same pc and count as the interpreter.
#[test]
fn the_call_depth_limit_is_clamped_like_the_interpreters() {
    let program = ebpf_isa::assemble("mov %r0, 0\nf:\nadd %r0, 1\ncall local f\nexit").unwrap();
    let limits = Limits {
        budget: None,
        max_call_depth: usize::MAX,
    };
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let got = jit.run(MemoryMap::new(), [0, 0], &Helpers::new(), &limits);
    let interp = ebpf_interp::Interpreter::new(&program);
    let want = interp.run(MemoryMap::new(), [0, 0], &Helpers::new(), &limits);
    assert_eq!(got, want);
    assert_eq!(
        got,
        Err(Trap {
            pc: 2,
            kind: TrapKind::CallDepthExceeded {
                max_depth: MAX_CALL_DEPTH
            }
        })
    );
}
