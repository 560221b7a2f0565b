//! Our interpreter against rbpf 0.4.1's, on the shared program set of `ebpf-bench`.
//!
//! One criterion group per program, three functions in each: `ours` (`ebpf_interp::Interpreter`,
//! no budget, the input mapped as the facade maps it: [`ebpf_bench::run_on_input`]), `rbpf`
//! (`rbpf::EbpfVmRaw::execute_program`), and `traced` (ours through `run_traced` with an
//! observer that does nothing: what tracing costs before the observer does any work). Both run the same bytecode on a fresh copy of the same input every iteration (the sort writes to it); the
//! copy is made outside the timed region, for both alike. Before timing, both results are
//! checked against the Rust reference.
//!
//! Throughput is set to the number of executed instructions, so criterion's "thrpt" column is
//! instructions per second. At the end, a table gives ns per instruction for both engines and
//! their ratio, from the median of the very samples criterion measured.
//!
//! `cargo bench -p ebpf-bench --bench interp` (add `-- poly` to run one group).

use std::cell::RefCell;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use ebpf_abi::{Helpers, Limits};
use ebpf_bench::timing::{SAMPLE_SIZE, Samples, timed};
use ebpf_bench::{PROGRAMS, Program, exit_on_input, run_on_input};
use ebpf_interp::{Interpreter, Step};

struct Row {
    name: &'static str,
    instructions: u64,
    ours: Option<f64>,
    rbpf: Option<f64>,
    traced: Option<f64>,
}

fn bench_program(c: &mut Criterion, p: &Program) -> Row {
    let bytes = p.bytecode();
    let input = p.input();
    let expected = p.expected();

    let program = ebpf_isa::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    let interp = Interpreter::new(&program);
    let (helpers, limits) = (Helpers::new(), Limits::default());
    let exit = exit_on_input(&mut input.clone(), |map, args| {
        interp.run(map, args, &helpers, &limits)
    });
    assert_eq!(exit.r0, expected, "{}: ours", p.name);
    assert_eq!(
        exit.instructions, p.instructions,
        "{}: instructions",
        p.name
    );

    let rbpf_vm = rbpf::EbpfVmRaw::new(Some(&bytes)).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    let r0 = rbpf_vm
        .execute_program(&mut input.clone())
        .unwrap_or_else(|e| panic!("{}: rbpf: {e}", p.name));
    assert_eq!(r0, expected, "{}: rbpf", p.name);

    let ours = RefCell::new(Samples::default());
    let theirs = RefCell::new(Samples::default());
    let traced = RefCell::new(Samples::default());
    let mut group = c.benchmark_group(p.name);
    group.throughput(Throughput::Elements(exit.instructions));
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            timed(iters, &input, &ours, |mem| {
                run_on_input(mem, |map, args| interp.run(map, args, &helpers, &limits))
            })
        });
    });
    group.bench_function("rbpf", |b| {
        b.iter_custom(|iters| {
            timed(iters, &input, &theirs, |mem| {
                match rbpf_vm.execute_program(mem) {
                    Ok(r0) => r0,
                    Err(e) => panic!("{e}"),
                }
            })
        });
    });
    group.bench_function("traced", |b| {
        b.iter_custom(|iters| {
            timed(iters, &input, &traced, |mem| {
                run_on_input(mem, |map, args| {
                    interp.run_traced(map, args, &helpers, &limits, &mut |_: &Step| {})
                })
            })
        });
    });
    group.finish();

    Row {
        name: p.name,
        instructions: exit.instructions,
        ours: ours.borrow().median_ns(),
        rbpf: theirs.borrow().median_ns(),
        traced: traced.borrow().median_ns(),
    }
}

fn print_summary(rows: &[Row]) {
    let per_insn = |t: Option<f64>, n: u64| t.map(|t| t / n as f64);
    println!();
    println!("interpreter: ns per executed instruction (median of {SAMPLE_SIZE} samples)");
    println!(
        "| {:<10} | {:>12} | {:>10} | {:>10} | {:>16} | {:>10} | {:>15} |",
        "program", "instructions", "ours", "rbpf", "rbpf / ours", "traced", "traced / ours"
    );
    println!(
        "|{:-<12}|{:->14}|{:->12}|{:->12}|{:->18}|{:->12}|{:->17}|",
        "", ":", ":", ":", ":", ":", ":"
    );
    let (mut log_sum, mut n) = (0.0f64, 0u32);
    for row in rows {
        let ours = per_insn(row.ours, row.instructions);
        let rbpf = per_insn(row.rbpf, row.instructions);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let ratio = match (ours, rbpf) {
            (Some(o), Some(r)) => {
                log_sum += (r / o).ln();
                n += 1;
                format!("{:.2}x", r / o)
            }
            _ => "-".to_string(),
        };
        let traced = per_insn(row.traced, row.instructions);
        let slowdown = match (ours, traced) {
            (Some(o), Some(t)) => format!("{:.2}x", t / o),
            _ => "-".to_string(),
        };
        println!(
            "| {:<10} | {:>12} | {:>10} | {:>10} | {:>16} | {:>10} | {:>15} |",
            row.name,
            row.instructions,
            fmt(ours),
            fmt(rbpf),
            ratio,
            fmt(traced),
            slowdown
        );
    }
    if n > 0 {
        println!(
            "geometric mean of rbpf / ours: {:.2}x",
            (log_sum / f64::from(n)).exp()
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let rows: Vec<Row> = PROGRAMS.iter().map(|p| bench_program(&mut c, p)).collect();
    c.final_summary();
    print_summary(&rows);
}
