//! The confidence interval of a difference between two tests (B − A), by the bootstrap:
//! - one run per side: over their requests. Each resample draws A's and B's requests with
//!   replacement, as many as each has, and computes the metric on both. Within a run requests
//!   share batches (and the server's state that day), so this interval covers only within-run
//!   noise: two runs of one configuration can differ by more than it (see docs/compare-gpu.md).
//! - several runs on a side ([`Runs`]: a sweep's `--repeats`, or `A1,A2,A3`): hierarchical.
//!   Each resample draws as many runs as the side has, with replacement, then within each chosen
//!   run as many of its requests as it has; latencies over the drawn requests pooled,
//!   throughputs the mean of the drawn runs'. Run-to-run noise is then in the interval.
//!
//! The interval is the percentiles of the differences (`(1 − confidence) / 2` and its
//! complement). Seeded: the same records, metric and seed give the same interval.

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

/// One test's side over its runs (at least one).
#[derive(Clone, Debug, Default)]
pub struct Runs {
    pub runs: Vec<Side>,
    /// Every run's requests, in run order: what latencies are computed over.
    pooled: Vec<Sample>,
    /// Where each run's requests start in `pooled`.
    offsets: Vec<usize>,
}

impl Runs {
    pub fn new(runs: Vec<Side>) -> Runs {
        let mut offsets = Vec::with_capacity(runs.len());
        let mut pooled = Vec::new();
        for r in &runs {
            offsets.push(pooled.len());
            pooled.extend(r.samples.iter().cloned());
        }
        Runs {
            runs,
            pooled,
            offsets,
        }
    }

    /// One run.
    pub fn one(side: Side) -> Runs {
        Runs::new(vec![side])
    }

    pub fn count(&self) -> usize {
        self.runs.len()
    }

    /// Adds another result's runs of the same test.
    pub fn extend(self, more: Runs) -> Runs {
        let mut runs = self.runs;
        runs.extend(more.runs);
        Runs::new(runs)
    }

    /// The metric over every run: latencies over the requests pooled (as a sweep's verdict
    /// pools them), throughputs the mean of the runs' measured values.
    pub fn value(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Throughput(_) => mean(self.runs.iter().filter_map(|r| r.value(m))),
            Metric::Latency(stat, lat) => {
                let all: Vec<usize> = (0..self.pooled.len()).collect();
                latency(&self.pooled, &all, stat, lat)
            }
        }
    }

    /// The metric over one hierarchical resample: runs drawn with replacement, then requests
    /// within each drawn run.
    fn resample(&self, rng: &mut StdRng, m: Metric, idx: &mut Vec<usize>) -> Option<f64> {
        let k = self.runs.len();
        let chosen: Vec<usize> = (0..k).map(|_| rng.random_range(0..k)).collect();
        match m {
            Metric::Latency(stat, lat) => {
                idx.clear();
                for &r in &chosen {
                    let (n, off) = (self.runs[r].samples.len(), self.offsets[r]);
                    idx.extend((0..n).map(|_| off + rng.random_range(0..n)));
                }
                latency(&self.pooled, idx, stat, lat)
            }
            Metric::Throughput(_) => {
                let mut values = Vec::with_capacity(k);
                for &r in &chosen {
                    let run = &self.runs[r];
                    let n = run.samples.len();
                    if n == 0 {
                        continue;
                    }
                    let all: Vec<usize> = (0..n).collect();
                    idx.clear();
                    idx.extend((0..n).map(|_| rng.random_range(0..n)));
                    values.extend(run.value_over(idx, &all, m));
                }
                mean(values.into_iter())
            }
        }
    }
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The interval of B − A for `m` over runs: with one run on each side, over requests
/// ([`interval`]); with several on either, hierarchical (runs, then requests within each).
pub fn interval_over_runs(
    a: &Runs,
    b: &Runs,
    m: Metric,
    s: Settings,
    stream: &str,
) -> Option<(f64, f64)> {
    if let ([ra], [rb]) = (a.runs.as_slice(), b.runs.as_slice()) {
        return interval(ra, rb, m, s, stream);
    }
    if a.pooled.is_empty() || b.pooled.is_empty() {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(s.seed ^ fnv1a(stream.as_bytes()) ^ 0x5275_6e73);
    let mut diffs = Vec::with_capacity(s.resamples);
    let mut idx = Vec::new();
    for _ in 0..s.resamples {
        let va = a.resample(&mut rng, m, &mut idx);
        let vb = b.resample(&mut rng, m, &mut idx);
        if let (Some(va), Some(vb)) = (va, vb) {
            diffs.push(vb - va);
        }
    }
    percentiles(diffs, s.confidence)
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
    percentiles(diffs, s.confidence)
}

/// The interval's ends: the differences' `(1 − confidence) / 2` percentile and its complement.
fn percentiles(mut diffs: Vec<f64>, confidence: f64) -> Option<(f64, f64)> {
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0 * 100.0;
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

    /// `runs` runs of 200 requests each, TTFT = the run's base + 0..20 ms, throughput the
    /// run's base / 2.
    fn runs(bases: &[f64]) -> Runs {
        Runs::new(
            bases
                .iter()
                .map(|&b| Side {
                    output_throughput: Some(b / 2.0),
                    ..side((0..200).map(|i| b + f64::from(i % 20)))
                })
                .collect(),
        )
    }

    /// All runs of a side as one (what the request bootstrap sees).
    fn pooled(r: &Runs) -> Runs {
        Runs::one(Side {
            samples: r.pooled.clone(),
            output_throughput: r.value(Metric::Throughput(Rate::Output)),
            ..Default::default()
        })
    }

    #[test]
    fn run_to_run_noise_is_not_called_a_difference_over_runs() {
        let m = Metric::Latency(Stat::Mean, Latency::Ttft);
        let judge = |a: &Runs, b: &Runs| {
            let ci = interval_over_runs(a, b, m, S, "t");
            crate::compare::judge(m, a.value(m), ci, 0.0)
        };
        use crate::compare::Verdict::{WithinNoise, Worse};
        // each run shifted by its own ±15 ms (a day's batches); B is 6 ms slower on average,
        // less than the runs' spread
        let a = runs(&[100.0, 115.0, 85.0]);
        let b = runs(&[121.0, 106.0, 91.0]);
        assert_eq!(judge(&pooled(&a), &pooled(&b)), Worse, "over requests");
        assert_eq!(judge(&a, &b), WithinNoise, "over runs");
        // a real shift larger than the runs' spread: worse both ways
        let c = runs(&[160.0, 175.0, 145.0]);
        assert_eq!(judge(&pooled(&a), &pooled(&c)), Worse);
        assert_eq!(judge(&a, &c), Worse);
        let (lo, hi) = interval_over_runs(&a, &c, m, S, "t").unwrap();
        assert!(lo < 60.0 && hi > 60.0, "covers the shift: {lo}..{hi}");
        // the same for a throughput (the mean of the runs')
        let t = Metric::Throughput(Rate::Output);
        assert_eq!(a.value(t), Some(50.0));
        let ci = interval_over_runs(&a, &b, t, S, "t").unwrap();
        assert!(ci.0 < 0.0 && ci.1 > 0.0, "{ci:?}");
        // reproducible from the seed, another with another seed
        assert_eq!(
            interval_over_runs(&a, &b, m, S, "t"),
            interval_over_runs(&a, &b, m, S, "t")
        );
        let other = Settings { seed: 8, ..S };
        assert_ne!(
            interval_over_runs(&a, &b, m, S, "t"),
            interval_over_runs(&a, &b, m, other, "t")
        );
        // one run each: the request bootstrap, as before
        let (one_a, one_b) = (runs(&[100.0]), runs(&[105.0]));
        assert_eq!(
            interval_over_runs(&one_a, &one_b, m, S, "t"),
            interval(&one_a.runs[0], &one_b.runs[0], m, S, "t")
        );
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
