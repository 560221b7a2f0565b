//! Verifying a 1,000,000-instruction program (control-flow graph, structural checks,
//! dataflow, termination), for the five shapes of `ebpf-cfg/benches/common/programs.rs` —
//! included from there so that this benchmark and `ebpf-cfg`'s measure the same programs.
//! The aim is "well under a second" per verification.
//!
//! Before benchmarking a shape, one verification each of 10,000 and 100,000 instructions is
//! timed and the 1,000,000-instruction time extrapolated, cautiously, from the observed
//! growth: a shape whose projection exceeds [`SKIP_ABOVE`] is reported (with both probe
//! times) and not benchmarked, so that a superlinear regression shows up as a message instead
//! of an hours-long run.
//!
//! `cargo bench -p ebpf-verifier --bench verify` (add `-- loops` to run one shape).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ebpf_verifier::{Verifier, VerifierConfig};

#[path = "../../ebpf-cfg/benches/common/programs.rs"]
mod programs;

/// A shape whose projected 1,000,000-instruction verification takes longer is not
/// benchmarked.
const SKIP_ABOVE: Duration = Duration::from_secs(2);

fn timed(verifier: &Verifier, n: usize, make: programs::Make) -> Duration {
    let program = make(n);
    let start = Instant::now();
    let result = verifier.verify(black_box(program));
    let elapsed = start.elapsed();
    if let Err(rejected) = result {
        panic!("the benchmark program is rejected: {rejected}");
    }
    elapsed
}

fn verify(c: &mut Criterion) {
    let verifier = Verifier::new(VerifierConfig::default());
    let mut group = c.benchmark_group("verify-1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (name, make) in programs::SHAPES {
        if !programs::worth_a_million(name, SKIP_ABOVE, |n| timed(&verifier, n, make)) {
            continue;
        }
        let program = make(programs::MILLION);
        group.throughput(Throughput::Elements(program.len() as u64));
        // `verify` takes the program by value: the clone is made outside the timed region.
        group.bench_function(name, |b| {
            b.iter_batched(
                || program.clone(),
                |p| verifier.verify(p),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    verify(&mut c);
    c.final_summary();
}
