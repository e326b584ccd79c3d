//! The confidence interval of a difference between two tests (B − A), by the bootstrap over
//! their requests: each resample draws A's and B's requests with replacement, as many as each
//! has, and computes the metric on both; the interval is the percentiles of the differences
//! (`(1 − confidence) / 2` and its complement). Seeded: the same records, metric and seed give
//! the same interval.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::metric::{Metric, Rate, Sample, latency, rate_ratio};

/// One test's side: its successful requests, and the throughputs it measured (over its wall
/// time: the value a resample scales, see [`rate_ratio`]).
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub samples: Vec<Sample>,
    pub output_throughput: Option<f64>,
    pub request_throughput: Option<f64>,
    pub total_token_throughput: Option<f64>,
}

impl Side {
    fn measured(&self, r: Rate) -> Option<f64> {
        match r {
            Rate::Output => self.output_throughput,
            Rate::Request => self.request_throughput,
            Rate::TotalToken => self.total_token_throughput,
        }
    }

    /// The metric over the requests `idx`.
    fn value_over(&self, idx: &[usize], all: &[usize], m: Metric) -> Option<f64> {
        match m {
            Metric::Latency(stat, lat) => latency(&self.samples, idx, stat, lat),
            Metric::Throughput(r) => {
                let whole = rate_ratio(&self.samples, all, r)?;
                Some(self.measured(r)? * rate_ratio(&self.samples, idx, r)? / whole)
            }
        }
    }

    /// The metric over every request (throughputs: as measured).
    pub fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Throughput(r) => self.measured(r),
            _ => {
                let all: Vec<usize> = (0..self.samples.len()).collect();
                self.value_over(&all, &all, m)
            }
        }
    }
}

/// The bootstrap's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub confidence: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// The interval of B − A for `m`; `None` when either side has no value.
pub fn interval(a: &Side, b: &Side, m: Metric, s: Settings, stream: &str) -> Option<(f64, f64)> {
    let (na, nb) = (a.samples.len(), b.samples.len());
    if na == 0 || nb == 0 {
        return None;
    }
    let (all_a, all_b): (Vec<usize>, Vec<usize>) = ((0..na).collect(), (0..nb).collect());
    let mut rng = StdRng::seed_from_u64(s.seed ^ fnv1a(stream.as_bytes()));
    let mut diffs = Vec::with_capacity(s.resamples);
    let (mut ia, mut ib) = (vec![0; na], vec![0; nb]);
    for _ in 0..s.resamples {
        ia.iter_mut().for_each(|i| *i = rng.random_range(0..na));
        ib.iter_mut().for_each(|i| *i = rng.random_range(0..nb));
        if let (Some(va), Some(vb)) = (a.value_over(&ia, &all_a, m), b.value_over(&ib, &all_b, m)) {
            diffs.push(vb - va);
        }
    }
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - s.confidence) / 2.0 * 100.0;
    Some((
        loadgen::stats::percentile_sorted(&diffs, tail),
        loadgen::stats::percentile_sorted(&diffs, 100.0 - tail),
    ))
}

/// A stable 64-bit hash (FNV-1a) of the stream's name: each test and metric draws its own
/// resamples, whatever else is compared beside it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::metric::{Latency, Stat};

    fn side(ttfts: impl Iterator<Item = f64>) -> Side {
        Side {
            samples: ttfts
                .map(|t| Sample {
                    ttft: Some(t),
                    e2el: Some(100.0),
                    output_tokens: 10.0,
                    ..Default::default()
                })
                .collect(),
            output_throughput: Some(50.0),
            ..Default::default()
        }
    }

    const S: Settings = Settings {
        confidence: 0.95,
        resamples: 2000,
        seed: 7,
    };

    #[test]
    fn the_interval_covers_a_known_shift_and_is_reproducible() {
        // B's TTFTs are A's plus 5 ms, spread 0..20 ms
        let a = side((0..200).map(|i| f64::from(i % 20)));
        let b = side((0..200).map(|i| f64::from(i % 20) + 5.0));
        let m = Metric::Latency(Stat::Mean, Latency::Ttft);
        let (lo, hi) = interval(&a, &b, m, S, "t").unwrap();
        assert!(lo > 3.5 && lo < 5.0 && hi > 5.0 && hi < 6.5, "{lo}..{hi}");
        assert_eq!(interval(&a, &b, m, S, "t"), Some((lo, hi)), "same seed");
        assert_ne!(
            interval(&a, &b, m, S, "u"),
            Some((lo, hi)),
            "another stream"
        );
        // A against itself: the interval holds 0
        let (lo, hi) = interval(&a, &a, m, S, "t").unwrap();
        assert!(lo < 0.0 && hi > 0.0, "{lo}..{hi}");
    }

    #[test]
    fn a_throughput_keeps_its_measured_value_and_constant_requests_give_no_spread() {
        let a = side((0..50).map(f64::from));
        let m = Metric::Throughput(Rate::Output);
        assert_eq!(a.value(m), Some(50.0));
        // every request the same tokens and E2EL: every resample the measured value
        assert_eq!(interval(&a, &a, m, S, "t"), Some((0.0, 0.0)));
        assert_eq!(interval(&Side::default(), &a, m, S, "t"), None);
    }
}
