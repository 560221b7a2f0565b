//! Runs one benchmark program many times on our interpreter: a steady loop for profilers.
//!
//! `cargo run --release -p ebpf-bench --example run -- PROGRAM [RUNS]`, e.g. under
//! `perf record` or `valgrind --tool=callgrind`. Prints r0, the instruction count and the
//! mean time per instruction.

use std::time::Instant;

use ebpf_abi::{Helpers, Limits};
use ebpf_interp::Interpreter;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "poly".to_string());
    let runs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let Some(program) = ebpf_bench::by_name(&name) else {
        let names: Vec<_> = ebpf_bench::PROGRAMS.iter().map(|p| p.name).collect();
        eprintln!("unknown program {name}; one of {names:?}");
        std::process::exit(2);
    };
    let interp = Interpreter::new(&program.assemble());
    let (helpers, limits) = (Helpers::new(), Limits::default());
    let input = program.input();
    let mut buf = input.clone();
    let mut exit = None;
    let start = Instant::now();
    for _ in 0..runs {
        buf.copy_from_slice(&input);
        exit = Some(ebpf_bench::exit_on_input(&mut buf, |map, args| {
            interp.run(map, args, &helpers, &limits)
        }));
    }
    let elapsed = start.elapsed();
    let Some(exit) = exit else { return };
    assert_eq!(exit.r0, program.expected(), "{name}: wrong r0");
    let total = program.instructions * runs;
    println!(
        "{name}: r0 = {:#x}, {} instructions x {runs} runs, {:.3} ns/insn",
        exit.r0,
        exit.instructions,
        elapsed.as_nanos() as f64 / total as f64
    );
}
