//! Building the control-flow graph of a 1,000,000-instruction program, for five shapes
//! (`common/programs.rs`): many small loops, the same inside one outer loop, many branches
//! (loop-free), many call sites, many functions. The aim is "well under a second" per build.
//!
//! Before benchmarking a shape, one build each of 10,000 and 100,000 instructions is timed
//! and the 1,000,000-instruction time extrapolated, cautiously, from the observed growth: a
//! shape whose projection exceeds [`SKIP_ABOVE`] is reported (with both probe times) and not
//! benchmarked, so that a superlinear regression shows up as a message instead of an
//! hours-long run.
//!
//! The same for the facts (`ebpf_cfg::facts`, the analysis both JITs run before emitting
//! code), on the same programs from `Entry::input()`.
//!
//! `cargo bench -p ebpf-cfg --bench cfg` (add `-- loops` to run one shape).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ebpf_cfg::Cfg;
use ebpf_cfg::facts::{Entry, Facts};

#[path = "common/programs.rs"]
mod programs;

/// A shape whose projected 1,000,000-instruction build takes longer is not benchmarked.
const SKIP_ABOVE: Duration = Duration::from_secs(2);

fn timed(n: usize, make: programs::Make) -> Duration {
    let program = make(n);
    let start = Instant::now();
    let cfg = Cfg::build(black_box(&program));
    let elapsed = start.elapsed();
    assert!(cfg.errors().is_empty(), "{:?}", &cfg.errors()[..1]);
    elapsed
}

fn cfg_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("cfg-build-1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, make) in programs::SHAPES {
        if !programs::worth_a_million(name, SKIP_ABOVE, |n| timed(n, make)) {
            continue;
        }
        let program = make(programs::MILLION);
        let cfg = Cfg::build(&program);
        println!(
            "{name}: {} instructions, {} blocks, {} functions, {} loops",
            program.len(),
            cfg.blocks().len(),
            cfg.functions().len(),
            cfg.loops().len()
        );
        group.throughput(Throughput::Elements(program.len() as u64));
        group.bench_function(name, |b| b.iter(|| Cfg::build(black_box(&program))));
    }
    group.finish();
}

fn timed_facts(n: usize, make: programs::Make) -> Duration {
    let program = make(n);
    let start = Instant::now();
    let facts = Facts::analyse(black_box(&program), &Entry::input());
    let elapsed = start.elapsed();
    assert!(facts.reached(0));
    elapsed
}

fn facts(c: &mut Criterion) {
    let mut group = c.benchmark_group("facts-1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, make) in programs::SHAPES {
        if !programs::worth_a_million(name, SKIP_ABOVE, |n| timed_facts(n, make)) {
            continue;
        }
        let program = make(programs::MILLION);
        let facts = Facts::analyse(&program, &Entry::input());
        println!(
            "{name}: {} instructions, {} accesses proven in bounds",
            program.len(),
            facts.accesses_in_bounds().count()
        );
        group.throughput(Throughput::Elements(program.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| Facts::analyse(black_box(&program), &Entry::input()))
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    cfg_build(&mut c);
    facts(&mut c);
    c.final_summary();
}
