//! Runs one short program through `Vm::run` (or a `Runner`) many times on one engine: a steady loop for
//! counting what a run costs besides the program (docs/per-run.md). Under callgrind, the
//! instructions of `RUNS + 10000` runs minus those of `RUNS` runs, over 10,000, is the cost of
//! one run, whatever the machine's load:
//!
//! `cargo build --release -p ebpf-vm --features jit-cranelift --example per_run`, then
//! `valgrind --tool=callgrind target/release/examples/per_run ENGINE PROGRAM RUNS`
//! (docs/benchmarks.md has the figures).
//!
//! `ENGINE` is an engine's short name (`interp`, `x86`, `cranelift`, `tiered`); `PROGRAM` one
//! of `empty` (`mov r0, 0; exit`), `load` (one byte load from the input), `helper1` and
//! `helper10` (one or ten calls of a helper that adds one to its argument), or `direct1` and
//! `direct10` (no program: one or ten direct Rust calls of that helper through `&dyn Helper`
//! per "run", each feeding the next, the figure a helper call through an engine is compared
//! with). A fourth argument names the run: `runner` runs through `Vm::runner` instead of
//! `Vm::run`; `none` runs `run_with(Input::none())` (no input: `r1` and `r2` are 0), and
//! `meta` runs `run_with(Input::new(input).metadata(buffer))` (a caller's 16-byte metadata
//! buffer in `r1`/`r2`); `runner-none` and `runner-meta` make those through a runner.

use std::hint::black_box;

use ebpf_vm::{Engine, Helper, HelperError, Input, Trap, Vm, VmMemory};

fn helper(args: [u64; 5], _memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args[0].wrapping_add(1))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "x86".to_string());
    let program = args.next().unwrap_or_else(|| "empty".to_string());
    let runs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let path = args.next().unwrap_or_default();
    let through_runner = path.starts_with("runner");
    let shape = path.trim_start_matches("runner").trim_start_matches('-');
    if !matches!(shape, "" | "none" | "meta") {
        eprintln!("unknown run {path}");
        std::process::exit(2);
    }
    let Some(&engine) = Engine::ALL.iter().find(|e| e.name() == engine) else {
        eprintln!("unknown engine {engine}");
        std::process::exit(2);
    };
    if let Some(calls) = program.strip_prefix("direct") {
        let calls: u64 = calls.parse().unwrap_or(1);
        let h: &dyn Helper = &helper;
        // One map for every call, as a run lends its own: building a map is not part of a call.
        let mut memory = ebpf_abi::MemoryMap::new();
        let mut last = 0;
        for _ in 0..runs {
            for _ in 0..calls {
                let args = [last, 2, 3, 4, 5];
                last = black_box(h).call(args, &mut memory).unwrap_or(u64::MAX);
            }
        }
        println!("{calls} direct calls per run: {last} after {runs} runs");
        return;
    }
    let builder = Vm::builder().engine(engine).helper(1, helper);
    let calls = |n: usize| {
        let mut text = String::from("mov %r0, 0\n");
        for _ in 0..n {
            text.push_str("mov %r1, %r0\ncall 1\n");
        }
        text + "exit"
    };
    let text = match program.as_str() {
        "empty" => "mov %r0, 0\nexit".to_string(),
        "load" => "ldxb %r0, [%r1]\nexit".to_string(),
        "helper1" => calls(1),
        "helper10" => calls(10),
        _ => {
            eprintln!("unknown program {program}");
            std::process::exit(2);
        }
    };
    let vm = builder.load_asm(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut input = vec![7u8; 64];
    let mut metadata = vec![7u8; 16];
    let mut last = 0;
    let r0 = |exit: Result<ebpf_vm::Exit, Trap>| exit.map_or(u64::MAX, |exit| exit.r0);
    if through_runner {
        let mut runner = vm.runner();
        for _ in 0..runs {
            last = match shape {
                "none" => r0(runner.run_with(Input::none())),
                "meta" => r0(runner.run_with(
                    Input::new(black_box(&mut input)).metadata(black_box(&mut metadata)),
                )),
                _ => runner.run(black_box(&mut input)).unwrap_or(u64::MAX),
            };
        }
    } else {
        for _ in 0..runs {
            last = match shape {
                "none" => r0(vm.run_with(Input::none())),
                "meta" => r0(vm.run_with(
                    Input::new(black_box(&mut input)).metadata(black_box(&mut metadata)),
                )),
                _ => vm.run(black_box(&mut input)).unwrap_or(u64::MAX),
            };
        }
    }
    println!(
        "{program} on {}: r0 = {last} after {runs} runs",
        engine.name()
    );
}
