//! Every engine of ours side by side, in one run, on the shared program set: the numbers behind
//! "the x86 JIT compiles at least 20x faster than the Cranelift JIT and runs within 1.5x of
//! it", with rbpf 0.4.1's x86 JIT (no bounds checks at all) as the outside reference.
//!
//! All our engines go through the `ebpf-vm` facade exactly as a user would: `compile/<program>`
//! times `Vm::builder().engine(e).unverified().no_code_cache().load(bytes)` (decode and
//! compile; verification is left out so the figure is the engine's own, and the code cache so
//! that every load compiles), and `compile/<program>/cranelift-hit` the same load on
//! Cranelift when the code cache holds the program's code (a second load of a program in
//! use); the summary gives compile times per program and per instruction. `run/<program>`
//! times `Vm::run` on a fresh
//! copy of the input made outside the timed region. rbpf's JIT is timed with `jit_compile` and
//! `execute_program_jit`. Every result is checked against the Rust reference before timing; an
//! engine that gets one wrong is reported and not timed.
//!
//! Each JIT runs twice, with Spectre masking (the default, named after the engine) and
//! without (`x86-nomask`, `cranelift-nomask`), so the summary has the cost of masking per
//! program and its geometric mean, measured in the same run. Criterion times one
//! configuration after another, so load from other processes that comes and goes shows up as
//! a difference between them; the bench therefore also times masked and unmasked code in
//! alternating batches (`interleaved`) and reports the median of the paired ratios, which
//! such drift cancels. The interleaved table also has each JIT with the clamp of accesses
//! its facts prove through a branch (`VmBuilder::spectre_clamp_proven`) over unmasked code.
//!
//! `cargo bench -p ebpf-vm --features jit-cranelift --bench engines` (add `-- sort` to run one
//! program's groups, `-- 'run/.*/(x86|cranelift|rbpf)'` the JITs' run groups only; without the
//! feature, Cranelift is left out).

use std::cell::RefCell;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ebpf_bench::timing::{SAMPLE_SIZE, Samples, record, timed};
use ebpf_bench::{PROGRAMS, Program};
use ebpf_vm::{CodeCache, Engine, Input, Vm};

/// rbpf's x86 JIT, where it compiles the program and gets the reference result.
#[cfg(target_arch = "x86_64")]
fn rbpf_jit<'a>(p: &Program, bytes: &'a [u8]) -> Option<rbpf::EbpfVmRaw<'a>> {
    p.rbpf_compatible().ok()?;
    let vm = catch_unwind(AssertUnwindSafe(|| {
        let mut vm = rbpf::EbpfVmRaw::new(Some(bytes)).ok()?;
        vm.jit_compile().ok()?;
        Some(vm)
    }))
    .ok()
    .flatten()?;
    // SAFETY: rbpf's contract for its JIT code; the benchmark programs stay inside their input.
    let r0 = unsafe { vm.execute_program_jit(&mut p.input()) }.ok()?;
    (r0 == p.expected()).then_some(vm)
}

struct Row {
    name: &'static str,
    executed: u64,
    /// The program's length in instructions.
    length: usize,
    /// A Cranelift load that finds the code in the cache, ns.
    cache_hit: Option<f64>,
    /// Per configuration of `configurations()`, then rbpf's JIT: (compile ns, run ns).
    times: Vec<(Option<f64>, Option<f64>)>,
}

/// What is timed: every engine of `Engine::ALL` as configured by default (Spectre masking
/// on), then each JIT without masking.
fn configurations() -> Vec<(String, Engine, bool)> {
    let mut all: Vec<(String, Engine, bool)> = Engine::ALL
        .iter()
        .map(|&e| (e.name().to_string(), e, true))
        .collect();
    for &e in Engine::ALL {
        if matches!(e, Engine::X86 | Engine::Cranelift) {
            all.push((format!("{}-nomask", e.name()), e, false));
        }
    }
    all
}

fn bench_program(c: &mut Criterion, p: &Program) -> Row {
    let bytes = p.bytecode();
    let input = p.input();
    let expected = p.expected();
    let configs = configurations();
    let load = |engine: Engine, masking: bool| {
        Vm::builder()
            .engine(engine)
            .spectre_masking(masking)
            .unverified()
            .no_code_cache()
            .load(black_box(&bytes))
    };
    let vms: Vec<Option<Vm>> = configs
        .iter()
        .map(|&(_, e, masking)| {
            let vm = load(e, masking).ok()?;
            (vm.run(&mut input.clone()).ok()? == expected).then_some(vm)
        })
        .collect();
    let executed = vms
        .iter()
        .flatten()
        .next()
        .and_then(|vm| vm.run_with(Input::new(&mut input.clone())).ok())
        .map_or(p.instructions, |exit| exit.instructions);
    #[cfg(target_arch = "x86_64")]
    let rbpf = rbpf_jit(p, &bytes);

    let n = configs.len() + 1;
    let compile: Vec<RefCell<Samples>> = (0..n).map(|_| RefCell::default()).collect();
    let run: Vec<RefCell<Samples>> = (0..n).map(|_| RefCell::default()).collect();

    let mut group = c.benchmark_group(format!("compile/{}", p.name));
    group.throughput(Throughput::Elements(p.assemble().len() as u64));
    for (i, (name, engine, masking)) in configs.iter().enumerate() {
        if vms[i].is_none() {
            continue;
        }
        group.bench_function(name.as_str(), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(load(*engine, *masking).ok());
                }
                record(&compile[i], start.elapsed(), iters)
            });
        });
    }
    // A load that finds the code in use: the cache holds it as long as `in_use` lives.
    let cache = CodeCache::new();
    let cached = || {
        Vm::builder()
            .engine(Engine::Cranelift)
            .code_cache(cache.clone())
            .unverified()
            .load(black_box(&bytes))
    };
    let in_use = cached().ok();
    let cache_hit = RefCell::<Samples>::default();
    if in_use.is_some() {
        group.bench_function("cranelift-hit", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(cached().ok());
                }
                record(&cache_hit, start.elapsed(), iters)
            });
        });
        assert_eq!(cache.stats().compiles, 1, "every timed load is a hit");
    }
    #[cfg(target_arch = "x86_64")]
    if rbpf.is_some() {
        group.bench_function("rbpf-x86", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut vm = rbpf::EbpfVmRaw::new(Some(black_box(&bytes))).ok();
                    if let Some(vm) = vm.as_mut() {
                        black_box(vm.jit_compile().ok());
                    }
                    black_box(vm);
                }
                record(&compile[n - 1], start.elapsed(), iters)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("run/{}", p.name));
    group.throughput(Throughput::Elements(executed));
    for (i, (name, _, _)) in configs.iter().enumerate() {
        let Some(vm) = &vms[i] else { continue };
        group.bench_function(name.as_str(), |b| {
            b.iter_custom(|iters| {
                timed(iters, &input, &run[i], |m| match vm.run(m) {
                    Ok(r0) => r0,
                    Err(t) => panic!("{t}"),
                })
            });
        });
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(vm) = &rbpf {
        group.bench_function("rbpf-x86", |b| {
            b.iter_custom(|iters| {
                timed(iters, &input, &run[n - 1], |m| {
                    // SAFETY: as in `rbpf_jit`.
                    match unsafe { vm.execute_program_jit(m) } {
                        Ok(r0) => r0,
                        Err(e) => panic!("{e}"),
                    }
                })
            });
        });
    }
    group.finish();

    Row {
        name: p.name,
        executed,
        length: p.assemble().len(),
        cache_hit: cache_hit.borrow().median_ns(),
        times: (0..n)
            .map(|i| (compile[i].borrow().median_ns(), run[i].borrow().median_ns()))
            .collect(),
    }
}

fn print_summary(rows: &[Row]) {
    let configs = configurations();
    let mut names: Vec<&str> = configs.iter().map(|(n, _, _)| n.as_str()).collect();
    names.push("rbpf-x86");
    let cell =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    let index = |name: &str| names.iter().position(|n| *n == name);
    let (x86, cl, rb) = (index("x86"), index("cranelift"), index("rbpf-x86"));
    let pick = |r: &Row, i: Option<usize>, run: bool| {
        i.and_then(|i| r.times.get(i))
            .and_then(|t| if run { t.1 } else { t.0 })
    };
    for (title, run) in [
        ("compile: microseconds per program", false),
        ("run: ns per executed instruction", true),
    ] {
        if !run {
            print_compile_per_instruction(rows, &names);
        }
        println!();
        println!("{title} (median of {SAMPLE_SIZE} samples, one run)");
        print!("| {:<10} |", "program");
        for name in &names {
            print!(" {name:>11} |");
        }
        println!(" cranelift / x86 | rbpf-x86 / x86 |");
        print!("|{:-<12}|", "");
        for _ in &names {
            print!("{:->13}|", ":");
        }
        println!("{:->17}|{:->16}|", ":", ":");
        for r in rows {
            let scale = |v: Option<f64>| {
                v.map(|v| {
                    if run {
                        v / r.executed as f64
                    } else {
                        v / 1000.0
                    }
                })
            };
            print!("| {:<10} |", r.name);
            for t in &r.times {
                let v = scale(if run { t.1 } else { t.0 });
                print!(" {:>11} |", cell(v, if run { 3 } else { 1 }));
            }
            println!(
                " {:>15} | {:>14} |",
                ratio(pick(r, cl, run), pick(r, x86, run)),
                ratio(pick(r, rb, run), pick(r, x86, run)),
            );
        }
    }
    print_masking(rows, &names);
}

/// Compile time per instruction of the program, per configuration, and a Cranelift load that
/// hits the code cache beside one that compiles.
fn print_compile_per_instruction(rows: &[Row], names: &[&str]) {
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!();
    println!("compile: microseconds per instruction (median of {SAMPLE_SIZE} samples, one run)");
    print!("| {:<10} | insns |", "program");
    for name in names {
        print!(" {name:>11} |");
    }
    println!(" cranelift-hit µs | hit µs/insn |");
    print!("|{:-<12}|{:->7}|", "", ":");
    for _ in names {
        print!("{:->13}|", ":");
    }
    println!("{:->18}|{:->13}|", ":", ":");
    let mut per_insn: Vec<Vec<f64>> = vec![Vec::new(); names.len() + 1];
    for r in rows {
        let len = r.length.max(1) as f64;
        print!("| {:<10} | {:>5} |", r.name, r.length);
        for (i, t) in r.times.iter().enumerate() {
            let v = t.0.map(|ns| ns / 1000.0 / len);
            if let Some(v) = v {
                per_insn[i].push(v);
            }
            print!(" {:>11} |", cell(v));
        }
        let hit = r.cache_hit.map(|ns| ns / 1000.0 / len);
        if let Some(v) = hit {
            per_insn[names.len()].push(v);
        }
        println!(
            " {:>16} | {:>11} |",
            r.cache_hit
                .map_or("-".to_string(), |ns| format!("{:.1}", ns / 1000.0)),
            cell(hit)
        );
    }
    print!("| {:<10} | {:>5} |", "median", "");
    for values in &mut per_insn[..names.len()] {
        print!(" {:>11} |", cell(median(values)));
    }
    println!(
        " {:>16} | {:>11} |",
        "",
        cell(median(&mut per_insn[names.len()]))
    );
}

/// The median of `values` (the mean of the middle two when their number is even).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| (values[(n - 1) / 2] + values[n / 2]) / 2.0)
}

/// The cost of Spectre masking: per program, each JIT's run time masked over unmasked (and
/// rbpf's JIT, which checks nothing, over ours masked), with their geometric means.
fn print_masking(rows: &[Row], names: &[&str]) {
    let index = |name: &str| names.iter().position(|n| *n == name);
    let run = |r: &Row, i: Option<usize>| i.and_then(|i| r.times.get(i)).and_then(|t| t.1);
    let pairs = [
        ("x86 masked / unmasked", index("x86"), index("x86-nomask")),
        (
            "cranelift masked / unmasked",
            index("cranelift"),
            index("cranelift-nomask"),
        ),
        ("rbpf-x86 / x86 masked", index("rbpf-x86"), index("x86")),
        (
            "rbpf-x86 / cranelift masked",
            index("rbpf-x86"),
            index("cranelift"),
        ),
    ];
    println!();
    println!("Spectre masking: run time ratios (one run)");
    print!("| {:<10} |", "program");
    for (title, _, _) in &pairs {
        print!(" {title:>27} |");
    }
    println!();
    print!("|{:-<12}|", "");
    for _ in &pairs {
        print!("{:->29}|", ":");
    }
    println!();
    let mut logs = vec![(0.0f64, 0usize); pairs.len()];
    for r in rows {
        print!("| {:<10} |", r.name);
        for (k, (_, a, b)) in pairs.iter().enumerate() {
            match (run(r, *a), run(r, *b)) {
                (Some(a), Some(b)) => {
                    logs[k].0 += (a / b).ln();
                    logs[k].1 += 1;
                    print!(" {:>26.3}x |", a / b);
                }
                _ => print!(" {:>27} |", "-"),
            }
        }
        println!();
    }
    print!("| {:<10} |", "geomean");
    for (sum, n) in logs {
        if n == 0 {
            print!(" {:>27} |", "-");
        } else {
            print!(" {:>26.3}x |", (sum / n as f64).exp());
        }
    }
    println!();
}

/// Per JIT (its name): masked over unmasked run time, where it could be measured.
type MaskingRatios = Vec<(&'static str, Option<f64>)>;

/// Rounds of [`interleaved`], and the time one batch of runs aims at.
const ROUNDS: usize = 41;
const BATCH: Duration = Duration::from_millis(15);

/// Each JIT's run time masked over unmasked on `p`, timed in [`ROUNDS`] pairs of alternating
/// batches (masked first in even rounds, second in odd ones): the median of the rounds'
/// ratios. `None` for a JIT this build or host lacks.
fn interleaved(p: &Program) -> MaskingRatios {
    let bytes = p.bytecode();
    let input = p.input();
    let load = |engine: Engine, masking: bool, clamp: bool| {
        let vm = Vm::builder()
            .engine(engine)
            .spectre_masking(masking)
            .spectre_clamp_proven(clamp)
            .unverified()
            .load(&bytes)
            .ok()?;
        (vm.run(&mut input.clone()).ok()? == p.expected()).then_some(vm)
    };
    let scratch = RefCell::default();
    let batch = |vm: &Vm, iters: u64| {
        timed(iters, &input, &scratch, |m| vm.run(m).unwrap_or(0)).as_nanos() as f64
    };
    // Each JIT also with the clamp of accesses proven through a branch.
    [
        ("x86", Engine::X86, false),
        ("x86-clamped", Engine::X86, true),
        ("cranelift", Engine::Cranelift, false),
        ("cranelift-clamped", Engine::Cranelift, true),
    ]
    .into_iter()
    .map(|(name, engine, clamp)| {
        let (Some(masked), Some(plain)) = (load(engine, true, clamp), load(engine, false, false))
        else {
            return (name, None);
        };
        let once = batch(&plain, 20) / 20.0;
        let iters = ((BATCH.as_nanos() as f64 / once.max(1.0)) as u64).max(1);
        let mut ratios: Vec<f64> = (0..ROUNDS)
            .map(|round| {
                let (a, b) = if round % 2 == 0 {
                    let a = batch(&masked, iters);
                    (a, batch(&plain, iters))
                } else {
                    let b = batch(&plain, iters);
                    (batch(&masked, iters), b)
                };
                a / b
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        (name, ratios.get(ROUNDS / 2).copied())
    })
    .collect()
}

/// The interleaved ratios of every program, with their geometric means.
fn print_interleaved(rows: &[(&'static str, MaskingRatios)]) {
    println!();
    println!(
        "Spectre masking, interleaved: masked / unmasked run time, median of {ROUNDS} paired \
         batches of ~{} ms",
        BATCH.as_millis()
    );
    println!(
        "| program    |   x86 masked / unmasked | x86 masked+clamped / unmasked | cranelift masked / unmasked | cranelift masked+clamped / unmasked |"
    );
    println!(
        "|------------|------------------------:|------------------------------:|----------------------------:|------------------------------------:|"
    );
    let widths = [23, 29, 27, 35];
    let mut logs = [(0.0f64, 0usize); 4];
    for (name, ratios) in rows {
        print!("| {name:<10} |");
        for (k, (_, r)) in ratios.iter().enumerate() {
            let width = widths[k];
            match r {
                Some(r) => {
                    logs[k].0 += r.ln();
                    logs[k].1 += 1;
                    print!(" {:>w$} |", format!("{r:.3}x"), w = width);
                }
                None => print!(" {:>w$} |", "-", w = width),
            }
        }
        println!();
    }
    print!("| {:<10} |", "geomean");
    for (k, (sum, n)) in logs.iter().enumerate() {
        let width = widths[k];
        let g = if *n == 0 {
            "-".to_string()
        } else {
            format!("{:.3}x", (sum / *n as f64).exp())
        };
        print!(" {g:>width$} |");
    }
    println!();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .configure_from_args();
    let rows: Vec<Row> = PROGRAMS.iter().map(|p| bench_program(&mut c, p)).collect();
    c.final_summary();
    print_summary(&rows);
    let masking: Vec<_> = PROGRAMS.iter().map(|p| (p.name, interleaved(p))).collect();
    print_interleaved(&masking);
}
