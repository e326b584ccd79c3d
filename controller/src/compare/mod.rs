//! `benchctl compare A B [C …]`: each later result against the first, per test that both ran
//! (same input/output lengths and concurrency or rate) and per metric — the values, the
//! difference (B − A), its bootstrap confidence interval from the per-request records (over
//! runs, then requests, where a side has several runs: `--repeats`, `A1,A2,A3`), and a verdict:
//! better, worse or within noise. `--fail-on` turns worse-than-bound differences into a
//! non-zero exit (a CI gate).

pub mod bootstrap;
pub mod gate;
pub mod load;
pub mod metric;
pub mod render;

use std::fmt;

use load::{Run, TestId};
use metric::Metric;

/// How a comparison is made.
#[derive(Clone, Debug)]
pub struct Settings {
    pub metrics: Vec<Metric>,
    pub bootstrap: bootstrap::Settings,
    /// Changes smaller than this fraction of the baseline are noise whatever the interval says
    /// (a machine's load moves a run's numbers by a few percent).
    pub min_effect: f64,
    pub fail_on: Vec<gate::Bound>,
}

/// A metric's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    /// The interval reaches within `min_effect` of no change.
    WithinNoise,
    /// A side has no value (no requests, no TPOT…).
    NoData,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinNoise => "within noise",
            Verdict::NoData => "no data",
        })
    }
}

/// One test and metric of a comparison.
#[derive(Clone, Debug)]
pub struct Row {
    pub test: TestId,
    /// Runs of the test on each side (A, B): with ≥ 2 on a side the interval is over runs.
    pub runs: (usize, usize),
    pub metric: Metric,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// The interval of B − A.
    pub ci: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// The `--fail-on` bounds it broke.
    pub failed: Vec<gate::Bound>,
}

impl Row {
    /// One run on each side: the interval covers only within-run noise.
    pub fn single_runs(&self) -> bool {
        self.runs.0 < 2 && self.runs.1 < 2
    }

    /// B − A, and in percent of A.
    pub fn diff(&self) -> Option<(f64, Option<f64>)> {
        let (a, b) = (self.a?, self.b?);
        Some((b - a, (a != 0.0).then(|| (b - a) / a.abs() * 100.0)))
    }
}

/// One result against the baseline.
pub struct Comparison {
    pub baseline: usize,
    pub other: usize,
    pub rows: Vec<Row>,
    /// Tests only one side ran.
    pub unmatched: Vec<(TestId, usize)>,
}

/// Everything compared.
pub struct Report {
    pub runs: Vec<Run>,
    pub comparisons: Vec<Comparison>,
    pub settings: Settings,
}

impl Report {
    /// Each `test metric` that broke a `--fail-on` bound, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut v = vec![];
        for c in &self.comparisons {
            for r in &c.rows {
                for b in &r.failed {
                    let (d, pct) = r.diff().unwrap_or((0.0, None));
                    v.push(format!(
                        "{} vs {}: {} {} {}: {:.3} → {:.3} ({}{}), beyond {b} and outside the noise",
                        self.runs[c.other].name,
                        self.runs[c.baseline].name,
                        r.test.0,
                        r.test.1.spoken(),
                        r.metric,
                        r.a.unwrap_or_default(),
                        r.b.unwrap_or_default(),
                        fmt_signed(d),
                        pct.map(|p| format!(", {p:+.1} %")).unwrap_or_default(),
                    ));
                }
            }
        }
        v
    }
}

pub fn fmt_signed(v: f64) -> String {
    format!("{v:+.3}")
}

/// Compares each run after the first with the first.
pub fn compare(runs: Vec<Run>, settings: Settings) -> Report {
    let comparisons = (1..runs.len())
        .map(|k| pair(&runs[0], &runs[k], k, &settings))
        .collect();
    Report {
        runs,
        comparisons,
        settings,
    }
}

fn pair(a: &Run, b: &Run, other: usize, s: &Settings) -> Comparison {
    let mut rows = vec![];
    let mut unmatched = vec![];
    for (id, sa) in &a.tests {
        let Some(sb) = b.tests.get(id) else {
            unmatched.push((*id, 0));
            continue;
        };
        for &m in &s.metrics {
            // (`1024x1024_c32_…`: the same streams as before rates were compared)
            let stream = format!("{}_{}_{m}", id.0, id.1.tag());
            let (va, vb) = (sa.value(m), sb.value(m));
            let ci = bootstrap::interval_over_runs(sa, sb, m, s.bootstrap, &stream);
            let verdict = judge(m, va, ci, s.min_effect);
            let failed = match (va, vb) {
                (Some(x), Some(y)) if verdict == Verdict::Worse => s
                    .fail_on
                    .iter()
                    .filter(|g| g.metric == m && g.exceeded(x, y))
                    .copied()
                    .collect(),
                _ => vec![],
            };
            rows.push(Row {
                test: *id,
                runs: (sa.count(), sb.count()),
                metric: m,
                a: va,
                b: vb,
                ci,
                verdict,
                failed,
            });
        }
    }
    unmatched.extend(
        b.tests
            .keys()
            .filter(|id| !a.tests.contains_key(id))
            .map(|id| (*id, other)),
    );
    Comparison {
        baseline: 0,
        other,
        rows,
        unmatched,
    }
}

/// Worse (better) when the whole interval lies beyond `min_effect × |A|` on the worse (better)
/// side; otherwise within noise.
pub fn judge(m: Metric, a: Option<f64>, ci: Option<(f64, f64)>, min_effect: f64) -> Verdict {
    let (Some(a), Some((lo, hi))) = (a, ci) else {
        return Verdict::NoData;
    };
    let floor = min_effect * a.abs();
    let (up, down) = (lo > floor, hi < -floor);
    match (up, down, m.higher_is_better()) {
        (true, _, false) | (_, true, true) => Verdict::Worse,
        (true, _, true) | (_, true, false) => Verdict::Better,
        _ => Verdict::WithinNoise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_each_metrics_direction_and_the_floor() {
        let lat = Metric::parse("p99_ttft").unwrap();
        let thr = Metric::parse("output_throughput").unwrap();
        assert_eq!(
            judge(lat, Some(100.0), Some((2.0, 8.0)), 0.0),
            Verdict::Worse
        );
        assert_eq!(
            judge(thr, Some(100.0), Some((2.0, 8.0)), 0.0),
            Verdict::Better
        );
        assert_eq!(
            judge(lat, Some(100.0), Some((-8.0, -2.0)), 0.0),
            Verdict::Better
        );
        assert_eq!(
            judge(thr, Some(100.0), Some((-8.0, -2.0)), 0.0),
            Verdict::Worse
        );
        assert_eq!(
            judge(lat, Some(100.0), Some((-1.0, 8.0)), 0.0),
            Verdict::WithinNoise
        );
        // outside the interval's noise but under a 3 % floor
        assert_eq!(
            judge(lat, Some(100.0), Some((2.0, 8.0)), 0.03),
            Verdict::WithinNoise
        );
        assert_eq!(judge(lat, None, Some((2.0, 8.0)), 0.0), Verdict::NoData);
    }
}
