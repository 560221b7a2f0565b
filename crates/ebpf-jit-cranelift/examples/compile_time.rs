//! Compile time from the command line: how long `compile` takes per program and per eBPF
//! instruction, for profilers (`valgrind --tool=callgrind`, `perf`) and quick comparisons.
//!
//! `cargo run --release -p ebpf-jit-cranelift --example compile_time [--features timing] --
//! [--repeat N] [--object TRIPLE] [--function-size N] [--entry input|unknown]
//! [--masking on|off] WHAT…` where
//! WHAT is `bench` (the engines-bench programs), `elf` (every program of `tests/elf/*.o`),
//! `SHAPE:N` (a generated program of `ebpf_bench::shapes`) or a file (`.s` assembly, `.bin`
//! bytecode). Prints one line per program (the fastest of N compiles, in wall time and in this
//! thread's CPU time, which a busy machine does not inflate) and the median µs per
//! instruction; built with the `timing` feature, also the time Cranelift spent in each pass.
//! With `--run`, `bench` programs are also run on their inputs, and the run time per executed
//! instruction printed.
//! `--entry input` compiles with the facts of a plain input buffer, as the facade does by
//! default (loop versions included); the default, `unknown`, with the stack's facts only.
//! `--masking` sets Spectre masking (default: `JitOptions`' own, on).
//! The thread's CPU time comes from `/proc/thread-self/schedstat`, which the kernel updates at
//! scheduler events only: a compile shorter than a time slice reads as 0 and is not counted.
//! For exact, load-independent comparisons run it under `valgrind --tool=callgrind`
//! (docs/jit-cranelift.md, "Where one compile's time goes").

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ebpf_isa::Program;
use ebpf_jit_cranelift::JitOptions;

fn programs(what: &str) -> Result<Vec<(String, Program)>, String> {
    if what == "bench" {
        return Ok(bench_programs());
    }
    if what == "elf" {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/elf");
        let mut out = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "o"))
            .collect();
        files.sort();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let object = ebpf_elf::ElfObject::parse(&bytes).map_err(|e| e.to_string())?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            for info in object.programs() {
                let loaded = object.load(ebpf_elf::Selector::Function(&info.name));
                if let Ok(loaded) = loaded {
                    let name = format!("{}:{}", stem.clone().unwrap_or_default(), info.name);
                    out.push((name, loaded.program));
                }
            }
        }
        return Ok(out);
    }
    if let Some((shape, n)) = what.split_once(':')
        && let Ok(n) = n.parse::<usize>()
    {
        return shape_program(shape, n)
            .map(|p| vec![(what.to_string(), p)])
            .ok_or_else(|| format!("unknown shape {shape}"));
    }
    let bytes = std::fs::read(what).map_err(|e| format!("{what}: {e}"))?;
    let program = if what.ends_with(".bin") {
        ebpf_isa::decode(&bytes).map_err(|e| format!("{what}: {e}"))?
    } else {
        let text = String::from_utf8_lossy(&bytes);
        ebpf_isa::assemble(&text).map_err(|e| format!("{what}: {e:?}"))?
    };
    Ok(vec![(what.to_string(), program)])
}

#[cfg(target_arch = "x86_64")]
fn bench_programs() -> Vec<(String, Program)> {
    ebpf_bench::PROGRAMS
        .iter()
        .map(|p| (p.name.to_string(), p.assemble()))
        .collect()
}

/// Runs a bench program on its input for about half a second; prints ns per instruction.
#[cfg(target_arch = "x86_64")]
fn run_bench(name: &str, program: &Program, options: &JitOptions) {
    let Some(p) = ebpf_bench::by_name(name) else {
        return;
    };
    let Ok(jit) = ebpf_jit_cranelift::compile(program, options) else {
        return;
    };
    let helpers = ebpf_abi::Helpers::new();
    let limits = ebpf_abi::Limits::default();
    let input = p.input();
    let mut buf = input.clone();
    let mut best = f64::MAX;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        buf.copy_from_slice(&input);
        let t = Instant::now();
        let r0 = ebpf_bench::run_on_input(&mut buf, |m, a| jit.run(m, a, &helpers, &limits));
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(r0, p.expected(), "{name}: wrong result");
    }
    println!(
        "  run: {:.3} ns per executed instruction (best of many)",
        best * 1e9 / p.instructions as f64
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn run_bench(_: &str, _: &Program, _: &JitOptions) {}

#[cfg(not(target_arch = "x86_64"))]
fn bench_programs() -> Vec<(String, Program)> {
    Vec::new()
}

#[cfg(target_arch = "x86_64")]
fn shape_program(shape: &str, n: usize) -> Option<Program> {
    ebpf_bench::shapes::shape(shape, n)
}

#[cfg(not(target_arch = "x86_64"))]
fn shape_program(_: &str, _: usize) -> Option<Program> {
    None
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let mut repeat = 5usize;
    let mut object = None;
    let mut run = false;
    let mut function_size = None;
    let mut entry = None;
    let mut masking = None;
    let mut all = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or(5),
            "--object" => object = args.next(),
            "--run" => run = true,
            "--function-size" => function_size = args.next().and_then(|n| n.parse().ok()),
            "--entry" => {
                entry = match args.next().as_deref() {
                    Some("input") => Some(ebpf_cfg::facts::Entry::input()),
                    Some("unknown") => None,
                    other => {
                        eprintln!("--entry: `input` or `unknown`, not {other:?}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "--masking" => {
                masking = match args.next().as_deref() {
                    Some("on") => Some(true),
                    Some("off") => Some(false),
                    other => {
                        eprintln!("--masking: `on` or `off`, not {other:?}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            what => match programs(what) {
                Ok(p) => all.extend(p),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    let mut options = JitOptions::default();
    if let Some(size) = function_size {
        options = options.with_function_size(size);
    }
    options = options.with_entry(entry);
    if let Some(masking) = masking {
        options = options.with_spectre_masking(masking);
    }
    let mut per_insn = Vec::new();
    let mut passes = Duration::ZERO;
    let mut cpu_per_insn = Vec::new();
    for (name, program) in &all {
        let mut best = Duration::MAX;
        let mut best_cpu = u64::MAX;
        let mut size = 0;
        for _ in 0..repeat.max(1) {
            let cpu = thread_cpu_ns();
            let start = Instant::now();
            let result = match &object {
                Some(triple) => {
                    ebpf_jit_cranelift::compile_object(program, triple, &options).map(|o| o.len())
                }
                None => ebpf_jit_cranelift::compile(program, &options).map(|p| p.code_size()),
            };
            best = best.min(start.elapsed());
            if let (Some(before), Some(after)) = (cpu, thread_cpu_ns()) {
                best_cpu = best_cpu.min(after.saturating_sub(before));
            }
            match result {
                Ok(s) => size = s,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let insns = program.len().max(1);
        let us = best.as_secs_f64() * 1e6;
        per_insn.push(us / insns as f64);
        let cpu_us = best_cpu as f64 / 1e3;
        if best_cpu != u64::MAX && best_cpu != 0 {
            cpu_per_insn.push(cpu_us / insns as f64);
        }
        println!(
            "{name:<28} {insns:>8} insns {us:>12.1} us {:>8.2} us/insn {size:>10} bytes   \
             cpu {cpu_us:>12.1} us {:>8.2} us/insn",
            us / insns as f64,
            cpu_us / insns as f64
        );
        passes += timing::report(repeat.max(1));
        if run {
            run_bench(name, program, &options);
        }
    }
    per_insn.sort_by(f64::total_cmp);
    cpu_per_insn.sort_by(f64::total_cmp);
    if let Some(median) = per_insn.get(per_insn.len() / 2) {
        println!(
            "median over {} programs: {median:.2} us/insn",
            per_insn.len()
        );
    }
    if let Some(median) = cpu_per_insn.get(cpu_per_insn.len() / 2) {
        println!(
            "median over {} programs, thread CPU time: {median:.2} us/insn",
            cpu_per_insn.len()
        );
    }
    let _ = passes;
    ExitCode::SUCCESS
}

/// This thread's CPU time so far in nanoseconds (Linux: the first field of
/// `/proc/thread-self/schedstat`). On a shared machine, wall time counts the time other
/// processes had the core; this does not.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(feature = "timing")]
mod timing {
    use std::time::Duration;

    /// Prints and resets Cranelift's per-pass times (summed over `repeat` compiles).
    pub(crate) fn report(repeat: usize) -> Duration {
        let times = cranelift_codegen::timing::take_current();
        println!("  cranelift passes (total of {repeat} compiles):\n{times}");
        times.total()
    }
}

#[cfg(not(feature = "timing"))]
mod timing {
    use std::time::Duration;

    pub(crate) fn report(_: usize) -> Duration {
        Duration::ZERO
    }
}
