//! The Cranelift JIT against our interpreter and rbpf 0.4.1's JITs, on the shared program set
//! of `ebpf-bench`, plus compile time.
//!
//! Per program, one criterion group with up to four functions: `cranelift` (ours, with every
//! memory access bounds-checked and no budget), `interp` (our interpreter), `rbpf-x86` (rbpf's
//! x86-64 JIT, no bounds checks) and, with `--features rbpf-cranelift`, `rbpf-cranelift`
//! (rbpf's own Cranelift JIT). Every engine runs the same bytecode on a fresh copy of the same
//! input per iteration (copied outside the timed region); every result is checked against the
//! Rust reference first. A second group per program times `compile`.
//!
//! At the end, a table gives ns per executed instruction and ns per compiled instruction,
//! from the median of the samples criterion measured.
//!
//! `cargo bench -p ebpf-jit-cranelift --bench jit [--features rbpf-cranelift] [-- poly]`
//! (x86-64 only: elsewhere it prints a note and exits).

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput};
    use ebpf_abi::{Helpers, Limits};
    use ebpf_bench::timing::{SAMPLE_SIZE, Samples, record, timed};
    use ebpf_bench::{PROGRAMS, Program, run_on_input};
    use ebpf_jit_cranelift::JitOptions;

    struct Row {
        name: &'static str,
        instructions: u64,
        program_len: usize,
        code_size: usize,
        /// Engine name to ns per run.
        run: BTreeMap<&'static str, f64>,
        /// ns per compilation.
        compile: Option<f64>,
    }

    fn bench_program(c: &mut Criterion, p: &Program) -> Row {
        let program = p.assemble();
        let bytes = p.bytecode();
        let input = p.input();
        let expected = p.expected();
        let helpers = Helpers::new();
        let limits = Limits::default();
        let options = JitOptions::default();

        let jit = ebpf_jit_cranelift::compile(&program, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let interp = ebpf_interp::Interpreter::new(&program);
        let r0 = run_on_input(&mut input.clone(), |m, a| jit.run(m, a, &helpers, &limits));
        assert_eq!(r0, expected, "{}: cranelift", p.name);
        assert_eq!(
            run_on_input(&mut input.clone(), |m, a| interp
                .run(m, a, &helpers, &limits)),
            expected,
            "{}: interp",
            p.name
        );

        let mut samples: BTreeMap<&'static str, RefCell<Samples>> = BTreeMap::new();
        let mut group = c.benchmark_group(p.name);
        group.throughput(Throughput::Elements(p.instructions));
        let s = samples.entry("cranelift").or_default();
        group.bench_function("cranelift", |b| {
            b.iter_custom(|iters| {
                timed(iters, &input, s, |mem| {
                    run_on_input(mem, |m, a| jit.run(m, a, &helpers, &limits))
                })
            });
        });
        let s = samples.entry("interp").or_default();
        group.bench_function("interp", |b| {
            b.iter_custom(|iters| {
                timed(iters, &input, s, |mem| {
                    run_on_input(mem, |m, a| interp.run(m, a, &helpers, &limits))
                })
            });
        });

        {
            let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).unwrap_or_else(|e| panic!("{e}"));
            vm.jit_compile()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            // SAFETY: rbpf's JIT runs the program without memory checks; the benchmark programs
            // are checked against their Rust references (and by our engines' bounds checks) to
            // stay inside their input.
            let r0 = unsafe { vm.execute_program_jit(&mut input.clone()) };
            match r0 {
                Ok(r0) if r0 == expected => {
                    let s = samples.entry("rbpf-x86").or_default();
                    group.bench_function("rbpf-x86", |b| {
                        b.iter_custom(|iters| {
                            timed(iters, &input, s, |mem| {
                                // SAFETY: as above.
                                match unsafe { vm.execute_program_jit(mem) } {
                                    Ok(r0) => r0,
                                    Err(e) => panic!("{e}"),
                                }
                            })
                        });
                    });
                }
                other => eprintln!("{}: rbpf's x86 JIT returns {other:?}, skipped", p.name),
            }
        }

        #[cfg(feature = "rbpf-cranelift")]
        {
            let mut vm = rbpf::EbpfVmRaw::new(Some(&bytes)).unwrap_or_else(|e| panic!("{e}"));
            vm.cranelift_compile()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            match vm.execute_program_cranelift(&mut input.clone()) {
                Ok(r0) if r0 == expected => {
                    let s = samples.entry("rbpf-cranelift").or_default();
                    group.bench_function("rbpf-cranelift", |b| {
                        b.iter_custom(|iters| {
                            timed(iters, &input, s, |mem| {
                                match vm.execute_program_cranelift(mem) {
                                    Ok(r0) => r0,
                                    Err(e) => panic!("{e}"),
                                }
                            })
                        });
                    });
                }
                other => eprintln!(
                    "{}: rbpf's Cranelift JIT returns {other:?}, skipped",
                    p.name
                ),
            }
        }
        let _ = &bytes;
        group.finish();

        // Compile time.
        let compile = RefCell::new(Samples::default());
        let mut group = c.benchmark_group(format!("{}-compile", p.name));
        group.throughput(Throughput::Elements(program.len() as u64));
        group.bench_function("cranelift", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let compiled = ebpf_jit_cranelift::compile(black_box(&program), &options);
                    total += start.elapsed();
                    black_box(compiled.map(|c| c.code_size()).unwrap_or(0));
                }
                record(&compile, total, iters)
            });
        });
        group.finish();

        Row {
            name: p.name,
            instructions: p.instructions,
            program_len: program.len(),
            code_size: jit.code_size(),
            run: samples
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.borrow().median_ns()?)))
                .collect(),
            compile: compile.borrow().median_ns(),
        }
    }

    fn print_summary(rows: &[Row]) {
        let engines = ["cranelift", "interp", "rbpf-x86", "rbpf-cranelift"];
        println!();
        println!("run time: ns per executed instruction (median of {SAMPLE_SIZE} samples)");
        print!("| {:<10} | {:>12} |", "program", "instructions");
        for e in engines {
            print!(" {e:>14} |");
        }
        println!(" {:>20} |", "rbpf-x86 / cranelift");
        print!("|{:-<12}|{:->14}|", "", ":");
        for _ in engines {
            print!("{:->16}|", ":");
        }
        println!("{:->22}|", ":");
        let (mut log_sum, mut n) = (0.0f64, 0u32);
        for row in rows {
            print!("| {:<10} | {:>12} |", row.name, row.instructions);
            for e in engines {
                let v = row.run.get(e).map(|t| t / row.instructions as f64);
                print!(
                    " {:>14} |",
                    v.map_or("-".to_string(), |v| format!("{v:.3}"))
                );
            }
            let ratio = match (row.run.get("rbpf-x86"), row.run.get("cranelift")) {
                (Some(r), Some(o)) => {
                    log_sum += (r / o).ln();
                    n += 1;
                    format!("{:.2}x", r / o)
                }
                _ => "-".to_string(),
            };
            println!(" {ratio:>20} |");
        }
        if n > 0 {
            println!(
                "geometric mean of rbpf-x86 / cranelift: {:.2}x (above 1: ours is faster)",
                (log_sum / f64::from(n)).exp()
            );
        }
        println!();
        println!("compile time (median of {SAMPLE_SIZE} samples)");
        println!(
            "| {:<10} | {:>12} | {:>12} | {:>16} | {:>16} |",
            "program", "instructions", "µs", "µs per insn", "code bytes"
        );
        println!(
            "|{:-<12}|{:->14}|{:->14}|{:->18}|{:->18}|",
            "", ":", ":", ":", ":"
        );
        for row in rows {
            let us = row.compile.map(|ns| ns / 1000.0);
            println!(
                "| {:<10} | {:>12} | {:>12} | {:>16} | {:>16} |",
                row.name,
                row.program_len,
                us.map_or("-".to_string(), |v| format!("{v:.1}")),
                us.map_or("-".to_string(), |v| format!(
                    "{:.2}",
                    v / row.program_len.max(1) as f64
                )),
                row.code_size
            );
        }
    }

    pub(crate) fn main() {
        if !ebpf_jit_cranelift::host_supported() {
            eprintln!("cranelift does not support this host");
            return;
        }
        let mut c = Criterion::default()
            .sample_size(SAMPLE_SIZE)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        let rows: Vec<Row> = PROGRAMS.iter().map(|p| bench_program(&mut c, p)).collect();
        c.final_summary();
        print_summary(&rows);
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86_64::main();
    #[cfg(not(target_arch = "x86_64"))]
    eprintln!("the benchmark compares with rbpf's x86-64 JIT and runs on x86-64 only");
}
