//! The x86-64 JIT against rbpf 0.4.1's x86 JIT and our interpreter, on the shared program set
//! of `ebpf-bench`: compile time and run time.
//!
//! Groups `compile/<program>` (ours with and without constant blinding, rbpf's `jit_compile`),
//! `compile/straight-1M` (ours only: rbpf's JIT cannot take programs past a few hundred
//! instructions), and `run/<program>` (our JIT with and without blinding, our interpreter,
//! rbpf's JIT), each run on a fresh copy of the program's input made outside the timed
//! region. Every engine's result is checked against the Rust reference first; an engine that
//! gets it wrong is reported and not timed. A summary table at the end gives compile ns per instruction and run ns per executed
//! instruction from the medians of criterion's samples.
//!
//! `cargo bench -p ebpf-jit-x86 --bench jit` (add `-- poly` to run one program's groups).

use std::cell::RefCell;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
use ebpf_bench::timing::{SAMPLE_SIZE, Samples, record, timed};
use ebpf_bench::{PROGRAMS, Program, run_on_input, straight_line};
use ebpf_interp::Interpreter;
use ebpf_jit_x86::{JitOptions, X86Program, compile};

fn run_jit(jit: &X86Program, mem: &mut [u8]) -> u64 {
    run_on_input(mem, |map, args| {
        jit.run(map, args, &Helpers::new(), &Limits::default())
    })
}

fn run_interp(interp: &Interpreter, mem: &mut [u8]) -> u64 {
    run_on_input(mem, |map, args| {
        interp.run(map, args, &Helpers::new(), &Limits::default())
    })
}

struct Row {
    name: &'static str,
    insns: usize,
    executed: u64,
    compile_ours: Option<f64>,
    compile_plain: Option<f64>,
    compile_rbpf: Option<f64>,
    run_jit: Option<f64>,
    run_plain: Option<f64>,
    run_interp: Option<f64>,
    run_rbpf: Option<f64>,
    rbpf_note: &'static str,
}

fn bench_program(c: &mut Criterion, p: &Program) -> Row {
    let program = p.assemble();
    let bytes = p.bytecode();
    let input = p.input();
    let expected = p.expected();
    // The facade's configuration: the plain input's facts, checks they make impossible
    // dropped.
    let blinded = JitOptions {
        entry: Some(ebpf_cfg::facts::Entry::input()),
        checked_facts: false,
        ..JitOptions::default()
    };
    let plain = JitOptions {
        constant_blinding: false,
        ..blinded.clone()
    };

    let jit = compile(&program, &blinded).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    assert_eq!(
        run_jit(&jit, &mut input.clone()),
        expected,
        "{}: jit",
        p.name
    );
    let jit_plain = compile(&program, &plain).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    assert_eq!(
        run_jit(&jit_plain, &mut input.clone()),
        expected,
        "{}",
        p.name
    );
    let interp = Interpreter::new(&program);
    assert_eq!(
        run_interp(&interp, &mut input.clone()),
        expected,
        "{}",
        p.name
    );

    // rbpf's JIT: it may reject the program, panic, or compute something else.
    let rbpf_vm = catch_unwind(AssertUnwindSafe(|| {
        let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).ok()?;
        vm.jit_compile().ok()?;
        Some(vm)
    }))
    .ok()
    .flatten();
    let (rbpf_vm, rbpf_note) = match rbpf_vm {
        None => (None, "rbpf JIT failed to compile"),
        Some(vm) => {
            // SAFETY: rbpf's contract for running its JIT code; the program is one of the
            // benchmark set, which stays in bounds of its input.
            let r0 = unsafe { vm.execute_program_jit(&mut input.clone()) };
            match r0 {
                Ok(r0) if r0 == expected => (Some(vm), ""),
                _ => (None, "rbpf JIT gives a wrong result"),
            }
        }
    };

    let samples: [RefCell<Samples>; 7] = Default::default();
    let mut group = c.benchmark_group(format!("compile/{}", p.name));
    group.throughput(Throughput::Elements(program.len() as u64));
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(compile(black_box(&program), &blinded).ok());
            }
            record(&samples[0], start.elapsed(), iters)
        });
    });
    group.bench_function("ours-unblinded", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(compile(black_box(&program), &plain).ok());
            }
            record(&samples[1], start.elapsed(), iters)
        });
    });
    if rbpf_vm.is_some() {
        group.bench_function("rbpf", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut vm = rbpf::EbpfVmRaw::new(Some(black_box(&bytes))).ok();
                    if let Some(vm) = vm.as_mut() {
                        black_box(vm.jit_compile().ok());
                    }
                    black_box(vm);
                }
                record(&samples[2], start.elapsed(), iters)
            });
        });
    }
    group.finish();

    let executed = interp
        .run(
            {
                let mut m = MemoryMap::new();
                m.insert(layout::INPUT, Region::ReadOnly(&input));
                m
            },
            [layout::vm_addr(layout::INPUT, 0), input.len() as u64],
            &Helpers::new(),
            &Limits::default(),
        )
        .map(|e| e.instructions)
        .unwrap_or(p.instructions);
    let mut group = c.benchmark_group(format!("run/{}", p.name));
    group.throughput(Throughput::Elements(p.instructions));
    group.bench_function("jit", |b| {
        b.iter_custom(|iters| timed(iters, &input, &samples[3], |m| run_jit(&jit, m)));
    });
    group.bench_function("jit-unblinded", |b| {
        b.iter_custom(|iters| timed(iters, &input, &samples[6], |m| run_jit(&jit_plain, m)));
    });
    group.bench_function("interp", |b| {
        b.iter_custom(|iters| timed(iters, &input, &samples[4], |m| run_interp(&interp, m)));
    });
    if let Some(vm) = &rbpf_vm {
        group.bench_function("rbpf-jit", |b| {
            b.iter_custom(|iters| {
                timed(iters, &input, &samples[5], |m| {
                    // SAFETY: as above.
                    match unsafe { vm.execute_program_jit(m) } {
                        Ok(r0) => r0,
                        Err(e) => panic!("{e}"),
                    }
                })
            });
        });
    }
    group.finish();

    let m = |i: usize| samples[i].borrow().median_ns();
    Row {
        name: p.name,
        insns: program.len(),
        executed,
        compile_ours: m(0),
        compile_plain: m(1),
        compile_rbpf: m(2),
        run_jit: m(3),
        run_plain: m(6),
        run_interp: m(4),
        run_rbpf: m(5),
        rbpf_note,
    }
}

fn bench_big_compile(c: &mut Criterion) -> Option<f64> {
    let program = straight_line(1_000_000);
    let samples = RefCell::new(Samples::default());
    let mut group = c.benchmark_group("compile/straight-1M");
    group.sample_size(SAMPLE_SIZE);
    group.throughput(Throughput::Elements(program.len() as u64));
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(compile(black_box(&program), &JitOptions::default()).ok());
            }
            record(&samples, start.elapsed(), iters)
        });
    });
    group.finish();
    samples
        .borrow()
        .median_ns()
        .map(|t| t / program.len() as f64)
}

fn print_summary(rows: &[Row], big: Option<f64>) {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let per = |v: Option<f64>, n: f64| v.map(|v| v / n);
    println!();
    println!("compile: ns per instruction (median of {SAMPLE_SIZE} samples)");
    println!(
        "| {:<10} | {:>6} | {:>12} | {:>15} | {:>10} |",
        "program", "insns", "ours", "ours unblinded", "rbpf"
    );
    println!(
        "|{:-<12}|{:->8}|{:->14}|{:->17}|{:->12}|",
        "", ":", ":", ":", ":"
    );
    for r in rows {
        let n = r.insns as f64;
        println!(
            "| {:<10} | {:>6} | {:>12} | {:>15} | {:>10} |",
            r.name,
            r.insns,
            f(per(r.compile_ours, n)),
            f(per(r.compile_plain, n)),
            f(per(r.compile_rbpf, n)),
        );
    }
    if let Some(big) = big {
        println!("1,000,000-instruction straight-line program: {big:.2} ns per instruction");
    }
    println!();
    println!("run: ns per executed instruction (median of {SAMPLE_SIZE} samples)");
    println!(
        "| {:<10} | {:>9} | {:>8} | {:>10} | {:>8} | {:>8} | {:>13} | {:>11} |",
        "program",
        "executed",
        "jit",
        "unblinded",
        "interp",
        "rbpf jit",
        "interp / jit",
        "rbpf / jit"
    );
    println!(
        "|{:-<12}|{:->11}|{:->10}|{:->12}|{:->10}|{:->10}|{:->15}|{:->13}|",
        "", ":", ":", ":", ":", ":", ":", ":"
    );
    for r in rows {
        let n = r.executed as f64;
        let (j, i, rb) = (per(r.run_jit, n), per(r.run_interp, n), per(r.run_rbpf, n));
        let u = per(r.run_plain, n);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "-".to_string(),
        };
        println!(
            "| {:<10} | {:>9} | {:>8} | {:>10} | {:>8} | {:>8} | {:>13} | {:>11} | {}",
            r.name,
            r.executed,
            f(j),
            f(u),
            f(i),
            f(rb),
            ratio(i, j),
            ratio(rb, j),
            r.rbpf_note
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let rows: Vec<Row> = PROGRAMS.iter().map(|p| bench_program(&mut c, p)).collect();
    let big = bench_big_compile(&mut c);
    c.final_summary();
    print_summary(&rows, big);
}
