//! The x86-64 JIT against rbpf 0.4.1's x86 JIT and our interpreter, on the shared program set
//! of `ebpf-bench`: compile time and run time.
//!
//! Groups `compile/<program>` (ours with and without constant blinding, rbpf's `jit_compile`),
//! `compile/straight-1M` (ours only: rbpf's JIT cannot take programs past a few hundred
//! instructions), and `run/<program>` (our JIT with and without blinding, our JIT with every
//! check the facts drop kept — checked-facts mode, the "before" of `ebpf_cfg::facts` in the same
//! run —, our interpreter, rbpf's JIT, and the program's plain Rust reference compiled natively),
//! each run on a fresh copy of the program's input made outside the timed region. A table of
//! what the facts prove per program (accesses, divisions, loops) comes first. Every engine's result is checked against the Rust reference first; an engine that
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
    run_kept: Option<f64>,
    run_native: Option<f64>,
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
    // Every check the facts make impossible kept (and proven never to fire on this input).
    let kept = JitOptions {
        checked_facts: true,
        ..blinded.clone()
    };
    let jit_kept = compile(&program, &kept).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    assert_eq!(
        run_jit(&jit_kept, &mut input.clone()),
        expected,
        "{}",
        p.name
    );
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

    let samples: [RefCell<Samples>; 9] = Default::default();
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
            layout::input_args(input.len() as u64),
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
    group.bench_function("jit-checks-kept", |b| {
        b.iter_custom(|iters| timed(iters, &input, &samples[7], |m| run_jit(&jit_kept, m)));
    });
    group.bench_function("native", |b| {
        b.iter_custom(|iters| timed(iters, &input, &samples[8], |m| p.reference(m)));
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
        run_kept: m(7),
        run_native: m(8),
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
        "| {:<10} | {:>9} | {:>8} | {:>10} | {:>11} | {:>8} | {:>8} | {:>8} | {:>12} | {:>12} | {:>13} |",
        "program",
        "executed",
        "jit",
        "unblinded",
        "checks kept",
        "interp",
        "rbpf jit",
        "native",
        "jit / native",
        "jit / rbpf",
        "kept / jit",
    );
    println!(
        "|{:-<12}|{:->11}|{:->10}|{:->12}|{:->13}|{:->10}|{:->10}|{:->10}|{:->14}|{:->14}|{:->15}|",
        "", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    for r in rows {
        let n = r.executed as f64;
        let (j, i, rb) = (per(r.run_jit, n), per(r.run_interp, n), per(r.run_rbpf, n));
        let (u, k, nat) = (
            per(r.run_plain, n),
            per(r.run_kept, n),
            per(r.run_native, n),
        );
        println!(
            "| {:<10} | {:>9} | {:>8} | {:>10} | {:>11} | {:>8} | {:>8} | {:>8} | {:>12} | {:>12} | {:>13} | {}",
            r.name,
            r.executed,
            f(j),
            f(u),
            f(k),
            f(i),
            f(rb),
            f(nat),
            ratio(j, nat),
            ratio(j, rb),
            ratio(k, j),
            r.rbpf_note
        );
    }
    let geomean = |pick: &dyn Fn(&Row) -> Option<f64>| {
        let logs: Vec<f64> = rows.iter().filter_map(|r| pick(r).map(f64::ln)).collect();
        (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
    };
    let over = |a: fn(&Row) -> Option<f64>, b: fn(&Row) -> Option<f64>| {
        geomean(&|r: &Row| Some(a(r)? / b(r)?))
    };
    println!(
        "geomean: jit / native {}, jit / rbpf {}, kept / jit {}",
        f(over(|r| r.run_jit, |r| r.run_native)),
        f(over(|r| r.run_jit, |r| r.run_rbpf)),
        f(over(|r| r.run_kept, |r| r.run_jit)),
    );
}

/// What the facts prove on each program, with the facade's entry (the plain input): the
/// checks the JIT drops, counted in the program text and in one run on the program's input
/// (traced: a versioned loop's accesses count as unchecked on the entries where its conditions
/// hold, which is when its dispatcher picks the copy).
fn print_facts() {
    use ebpf_cfg::facts::{Access, Entry, Facts};
    use ebpf_isa::{AluOp, Insn, Operand};
    println!("facts: checks dropped per program (entry: the plain input)");
    println!(
        "| {:<10} | {:>8} | {:>13} | {:>15} | {:>9} | {:>12} | {:>7} | {:>22} | {:>22} |",
        "program",
        "accesses",
        "proven always",
        "in a version",
        "divisions",
        "tests gone",
        "counted",
        "executed accesses",
        "executed divisor tests"
    );
    println!(
        "|{:-<12}|{:->10}|{:->15}|{:->17}|{:->11}|{:->14}|{:->9}|{:->24}|{:->24}|",
        "", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    for p in PROGRAMS {
        let program = p.assemble();
        let facts = Facts::analyse(&program, &Entry::input());
        let insns = program.insns();
        let is_access = |insn: &Insn| {
            matches!(
                insn,
                Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. }
            )
        };
        // Per instruction: how many divisor tests (zero, -1) it has, and how many the facts drop.
        let division = |i: usize| -> (usize, usize) {
            match insns[i] {
                Insn::Alu {
                    op: op @ (AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod),
                    src: Operand::Reg(_),
                    ..
                } => {
                    let d = facts.division(i);
                    let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
                    (
                        1 + usize::from(signed),
                        usize::from(d.nonzero) + usize::from(signed && d.no_overflow),
                    )
                }
                _ => (0, 0),
            }
        };
        let accesses = insns.iter().filter(|i| is_access(i)).count();
        let proven = (0..insns.len())
            .filter(|&i| matches!(facts.access(i), Access::InBounds { .. }))
            .count();
        let versioned: usize = facts.versions().iter().map(|v| v.accesses.len()).sum();
        let (tests, tests_gone) = (0..insns.len())
            .map(division)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        // One traced run.
        let versions = facts.versions();
        let inside = |v: usize, i: usize| versions[v].insns.iter().any(|r| r.contains(&i));
        let mut in_copy = vec![false; versions.len()];
        let mut last: Option<usize> = None;
        let (mut run_accesses, mut run_unchecked, mut run_tests, mut run_tests_gone) =
            (0u64, 0u64, 0u64, 0u64);
        let mut input = p.input();
        let len = input.len() as u64;
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let traced = ebpf_testgen::trace(
            &program,
            map,
            layout::input_args(len),
            &Helpers::new(),
            &Limits::default(),
            |step| {
                let i = step.index;
                for (v, version) in versions.iter().enumerate() {
                    if !inside(v, i) {
                        in_copy[v] = false;
                    } else if i == version.entry && last.is_none_or(|l| !inside(v, l)) {
                        in_copy[v] = version.conditions.iter().all(|c| {
                            let region_len = step
                                .memory
                                .get(u64::from(c.region))
                                .and_then(|r| r.bytes().map(|b| b.len() as u64))
                                .unwrap_or(0);
                            c.holds(step.regs[usize::from(c.reg)], region_len)
                        });
                    }
                }
                last = Some(i);
                if is_access(&insns[i]) {
                    run_accesses += 1;
                    let in_version = versions.iter().enumerate().any(|(v, version)| {
                        in_copy[v] && version.accesses.iter().any(|&(k, _)| k == i)
                    });
                    if in_version || matches!(facts.access(i), Access::InBounds { .. }) {
                        run_unchecked += 1;
                    }
                }
                let (t, g) = division(i);
                run_tests += t as u64;
                run_tests_gone += g as u64;
            },
        );
        assert_eq!(traced.map(|e| e.r0).ok(), Some(p.expected()), "{}", p.name);
        println!(
            "| {:<10} | {:>8} | {:>13} | {:>15} | {:>9} | {:>12} | {:>7} | {:>22} | {:>22} |",
            p.name,
            accesses,
            proven,
            versioned,
            tests,
            tests_gone,
            facts.loops().len(),
            format!("{run_unchecked} of {run_accesses} unchecked"),
            format!("{run_tests_gone} of {run_tests} gone"),
        );
    }
    println!();
}

fn main() {
    print_facts();
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
