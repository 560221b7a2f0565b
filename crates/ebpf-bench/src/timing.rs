//! What every engine benchmark measures the same way: criterion's `iter_custom` routines that
//! time each run on a fresh copy of the input (made outside the timed region), and record the
//! mean time per run of each sample, so a summary table can be printed from the very samples
//! criterion measured.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Samples per benchmark (criterion's minimum is 10).
pub const SAMPLE_SIZE: usize = 20;

/// Nanoseconds per call, one entry per criterion sample (warm-up calls included).
#[derive(Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// The median of the last [`SAMPLE_SIZE`] entries: the measured samples (criterion's
    /// warm-up calls the routine too, before them). `None` with fewer entries.
    pub fn median_ns(&self) -> Option<f64> {
        let start = self.0.len().checked_sub(SAMPLE_SIZE)?;
        let mut v = self.0[start..].to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

/// Records `total` over `iters` calls as one sample, and returns `total` (for `iter_custom`).
pub fn record(samples: &RefCell<Samples>, total: Duration, iters: u64) -> Duration {
    samples
        .borrow_mut()
        .0
        .push(total.as_nanos() as f64 / iters.max(1) as f64);
    total
}

/// Times `iters` runs of `run`, each on a fresh copy of `input` made outside the timed region,
/// and records the mean as one sample.
pub fn timed(
    iters: u64,
    input: &[u8],
    samples: &RefCell<Samples>,
    mut run: impl FnMut(&mut [u8]) -> u64,
) -> Duration {
    let mut buf = input.to_vec();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        buf.copy_from_slice(input);
        let start = Instant::now();
        black_box(run(black_box(&mut buf)));
        total += start.elapsed();
    }
    record(samples, total, iters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_warm_up_samples() {
        let samples = RefCell::new(Samples::default());
        assert_eq!(samples.borrow().median_ns(), None);
        record(&samples, Duration::from_nanos(1_000_000), 1);
        for i in 0..SAMPLE_SIZE as u64 {
            record(&samples, Duration::from_nanos(10 * (i + 1)), 10);
        }
        assert_eq!(samples.borrow().median_ns(), Some(11.0));
        let mut seen = Vec::new();
        timed(3, &[1, 2], &samples, |m| {
            seen.push(m.to_vec());
            m[0] = 9;
            0
        });
        assert_eq!(seen, [[1, 2], [1, 2], [1, 2]], "a fresh copy every run");
    }
}
