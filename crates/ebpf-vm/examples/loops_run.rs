//! Runs one of the C loop programs of `tests/elf/loops/` on its `bench` input many times, on
//! one engine through `Vm::run` or natively (the same C built by `ebpf-bench`'s build script):
//! the `loops` bench's programs in a steady loop for counting host instructions exactly, which
//! the machine's load does not change. Under callgrind, the instructions of `RUNS + 100` runs
//! minus those of `RUNS` runs, over 100, are one run's (loading and compiling cancel out):
//!
//! `cargo build --release -p ebpf-vm --features jit-cranelift --example loops_run`, then
//! `valgrind --tool=callgrind target/release/examples/loops_run ENGINE PROGRAM RUNS`
//! (docs/benchmarks.md has the figures).
//!
//! `ENGINE` is an engine's short name (`interp`, `x86`, `cranelift`, `tiered`) or `native`;
//! `PROGRAM` an object of `tests/elf/loops/` (`sum`, `fnv1a`, `sort`, `sieve`, `muldiv`,
//! `packet`, `base64`, `parse`). The engines run with the budget on, as the bench's default
//! columns do; a fourth argument `nobudget` runs them without one (`budget` keeps it). As in
//! the bench, a program that writes its input (the sort) gets a fresh copy before every run.
//!
//! A fifth argument `BATCHES` times instead: `BATCHES` batches of `RUNS` runs each, printing
//! the fastest, first-quartile and median batch in ns per run. On a shared machine the
//! fastest batches are the ones no other process interrupted, so comparing two builds means
//! alternating their processes and comparing these minima (docs/jit-x86.md, "Measured:
//! loop-head alignment").

use std::hint::black_box;
use std::path::PathBuf;

use ebpf_vm::{Engine, Selector, Vm};

/// One run of the program on a buffer, natively or through an engine.
type Run = Box<dyn FnMut(&mut [u8]) -> u64>;

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "x86".to_string());
    let name = args.next().unwrap_or_else(|| "sum".to_string());
    let runs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let budget = args.next().as_deref() != Some("nobudget");
    let batches: Option<usize> = args.next().and_then(|s| s.parse().ok());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    let object = format!("loops/{name}");
    let Some(line) = expected.lines().find(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 4 && f[0] == object && f[2].ends_with("/bench")
    }) else {
        eprintln!("no program {object} with a bench input in expected.txt");
        std::process::exit(2);
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let want = u64::from_str_radix(f[3].trim_start_matches("0x"), 16).expect("a hex result");
    let hex = std::fs::read_to_string(dir.join(format!("inputs/{}.hex", f[2]))).expect("input");
    let input: Vec<u8> = hex
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).expect("hex byte"))
        .collect();
    let mut run: Run = if engine == "native" {
        let Some(native) = ebpf_bench::native::native_loop(f[1]) else {
            eprintln!("no native build (no C compiler when ebpf-bench was built)");
            std::process::exit(2);
        };
        // SAFETY: the pointer and length describe `buf`; the program touches only those bytes.
        Box::new(move |buf: &mut [u8]| unsafe { native(buf.as_mut_ptr(), buf.len() as u64) })
    } else {
        let Some(&engine) = Engine::ALL.iter().find(|e| e.name() == engine) else {
            eprintln!("unknown engine {engine}");
            std::process::exit(2);
        };
        let builder = Vm::builder().engine(engine);
        let builder = if budget {
            builder.budget(1 << 40)
        } else {
            builder.allow_unbounded()
        };
        let bytes = std::fs::read(dir.join(format!("{object}.o"))).expect("the object");
        let vm = builder
            .load_elf(&bytes, Selector::Function(f[1]))
            .unwrap_or_else(|e| panic!("{object}: {e}"));
        Box::new(move |buf: &mut [u8]| vm.run(buf).unwrap_or(u64::MAX))
    };
    let mut buf = input.clone();
    let first = run(&mut buf);
    if first != want {
        eprintln!("{object} on {engine}: {first:#x}, expected.txt says {want:#x}");
        std::process::exit(1);
    }
    let fresh = buf != input;
    if let Some(batches) = batches.filter(|&b| b > 0) {
        let mut per_run: Vec<f64> = (0..batches)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..runs {
                    if fresh {
                        buf.copy_from_slice(&input);
                    }
                    black_box(run(black_box(&mut buf)));
                }
                start.elapsed().as_nanos() as f64 / runs.max(1) as f64
            })
            .collect();
        per_run.sort_by(f64::total_cmp);
        let (min, p25, median) = (per_run[0], per_run[batches / 4], per_run[batches / 2]);
        println!("{object} on {engine}: ns per run: min {min:.1} p25 {p25:.1} median {median:.1}");
        return;
    }
    let mut last = first;
    for _ in 1..runs {
        if fresh {
            buf.copy_from_slice(&input);
        }
        last = run(black_box(&mut buf));
    }
    println!("{object} on {engine}: r0 = {last:#x} after {runs} runs");
}
