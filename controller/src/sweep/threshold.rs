//! `--threshold "ttft:400 tpot:50"`: the latency bounds a test must meet, in milliseconds.
//!
//! The original scripts' syntax first: `KEY:MS` with keys `ttft`, `tpot`, `e2el` (and `itl`), judged on the
//! mean. Extended: a statistic prefix (`p99_ttft:400`, `median_tpot:50`, `p99.9_itl:80`,
//! `mean_e2el:9000`). Failed requests fail the test unless `--max-error-rate` allows them.

use loadgen::report::{Metric, Summary};
use serde::{Deserialize, Serialize};

/// Which statistic of a metric is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Stat {
    Mean,
    Median,
    Percentile(f64),
}

impl Stat {
    fn label(self) -> String {
        match self {
            Stat::Mean => "mean".into(),
            Stat::Median => "median".into(),
            Stat::Percentile(p) => format!("p{}", loadgen::stats::percentile_label(p)),
        }
    }
}

/// One bound: `stat(metric) ≤ max_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    pub metric: Metric,
    pub stat: Stat,
    pub max_ms: f64,
}

impl Bound {
    /// `p99_ttft`, `mean_tpot`…
    pub fn name(&self) -> String {
        format!("{}_{}", self.stat.label(), self.metric.key())
    }
}

/// `--threshold` as typed, parsed once: written back (plan files, checkpoints, summaries) as the
/// text the user gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Threshold {
    spec: String,
    bounds: Vec<Bound>,
}

impl Threshold {
    /// Parses `--threshold`. Errors name the bad key or value.
    pub fn parse(spec: &str) -> Result<Threshold, String> {
        Ok(Threshold {
            spec: spec.to_string(),
            bounds: parse_bounds(spec)?,
        })
    }

    /// The text the user gave.
    pub fn as_str(&self) -> &str {
        &self.spec
    }

    pub fn bounds(&self) -> &[Bound] {
        &self.bounds
    }

    /// These bounds with the error-rate gate: what judges a test.
    pub fn with_max_error_rate(&self, max_error_rate: f64) -> Thresholds {
        Thresholds {
            bounds: self.bounds.clone(),
            max_error_rate,
        }
    }
}

impl TryFrom<String> for Threshold {
    type Error = String;
    fn try_from(s: String) -> Result<Threshold, String> {
        Threshold::parse(&s)
    }
}

impl From<Threshold> for String {
    fn from(t: Threshold) -> String {
        t.spec
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

/// Every bound of a test, and the error-rate gate.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub bounds: Vec<Bound>,
    /// The largest failed fraction of requests that still passes (0: any failure fails).
    pub max_error_rate: f64,
}

/// Whether a test met its thresholds, and what bound it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub pass: bool,
    /// The bounds it broke, e.g. `p99_ttft 512.3 ms > 400 ms`, or the error rate.
    pub violations: Vec<String>,
}

/// Parses `--threshold` (and `--max-error-rate`). Errors name the bad key or value.
pub fn parse(spec: &str, max_error_rate: f64) -> Result<Thresholds, String> {
    check_max_error_rate(max_error_rate)?;
    Ok(Threshold::parse(spec)?.with_max_error_rate(max_error_rate))
}

/// `--max-error-rate` is a fraction.
pub fn check_max_error_rate(max_error_rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&max_error_rate) {
        Ok(())
    } else {
        Err(format!(
            "--max-error-rate must be within [0, 1], got {max_error_rate}"
        ))
    }
}

fn parse_bounds(spec: &str) -> Result<Vec<Bound>, String> {
    let mut bounds = Vec::new();
    for item in spec.split([' ', ',']).filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once(':').ok_or_else(|| {
            format!("--threshold: {item:?} is not KEY:MILLISECONDS (e.g. ttft:400 or p99_tpot:50)")
        })?;
        let (stat, metric) = match key.rsplit_once('_') {
            Some((s, m)) if Metric::parse(m).is_some() => (parse_stat(s, key)?, m),
            _ => (Stat::Mean, key),
        };
        let metric = match Metric::parse(metric) {
            Some(m @ (Metric::Ttft | Metric::Ttfo | Metric::Tpot | Metric::E2el | Metric::Itl)) => {
                m
            }
            _ => {
                return Err(format!(
                    "--threshold: unknown key {key:?} (expected ttft, ttfo, tpot, e2el or itl, optionally prefixed by mean_, median_ or pNN_)"
                ));
            }
        };
        let max_ms: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("--threshold: {key}:{value}: the bound must be a positive number of milliseconds"))?;
        bounds.push(Bound {
            metric,
            stat,
            max_ms,
        });
    }
    if bounds.is_empty() {
        return Err(format!(
            "--threshold: no bound in {spec:?} (expected e.g. \"ttft:400 tpot:50\")"
        ));
    }
    Ok(bounds)
}

fn parse_stat(s: &str, key: &str) -> Result<Stat, String> {
    match s {
        "mean" => Ok(Stat::Mean),
        "median" => Ok(Stat::Median),
        _ => s
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| *p > 0.0 && *p < 100.0)
            .map(Stat::Percentile)
            .ok_or_else(|| format!("--threshold: {key:?}: unknown statistic {s:?} (expected mean, median or pNN such as p99)")),
    }
}

impl Thresholds {
    /// The percentiles a run must compute for these bounds.
    pub fn percentiles(&self) -> Vec<f64> {
        self.bounds
            .iter()
            .filter_map(|b| match b.stat {
                Stat::Percentile(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Judges a test's summary.
    pub fn judge(&self, s: &Summary) -> Verdict {
        let mut violations = Vec::new();
        let total = s.completed + s.failed;
        let rate = if total == 0 {
            1.0
        } else {
            s.failed as f64 / total as f64
        };
        if rate > self.max_error_rate {
            violations.push(format!(
                "error rate {:.2}% ({} of {total} failed) > {:.2}%",
                100.0 * rate,
                s.failed,
                100.0 * self.max_error_rate
            ));
        }
        for b in &self.bounds {
            let value = s.metrics.get(&b.metric).and_then(|d| match b.stat {
                Stat::Mean => Some(d.mean),
                Stat::Median => Some(d.median),
                Stat::Percentile(p) => d.get(p),
            });
            match value {
                Some(v) if v <= b.max_ms => {}
                Some(v) => violations.push(format!("{} {v:.1} ms > {} ms", b.name(), b.max_ms)),
                None => violations.push(format!("{}: no sample", b.name())),
            }
        }
        Verdict {
            pass: violations.is_empty(),
            violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_syntax_and_the_extensions() {
        let t = parse("ttft:400 tpot:50", 0.0).unwrap();
        assert_eq!(t.bounds.len(), 2);
        assert_eq!(
            t.bounds[0],
            Bound {
                metric: Metric::Ttft,
                stat: Stat::Mean,
                max_ms: 400.0
            }
        );
        let t = parse("p99_ttft:400,median_tpot:50 p99.9_itl:80 e2el:9000", 0.01).unwrap();
        assert_eq!(t.bounds[0].stat, Stat::Percentile(99.0));
        assert_eq!(t.bounds[1].stat, Stat::Median);
        assert_eq!(t.bounds[2].name(), "p99.9_itl");
        assert_eq!(t.percentiles(), vec![99.0, 99.9]);
        let t = parse("p99_ttfo:2000 ttfo:900", 0.0).unwrap();
        assert_eq!(t.bounds[0].metric, Metric::Ttfo);
        assert_eq!(t.bounds[0].name(), "p99_ttfo");
        assert_eq!(
            (t.bounds[1].metric, t.bounds[1].stat),
            (Metric::Ttfo, Stat::Mean)
        );
    }

    #[test]
    fn bad_thresholds_name_the_key_or_value() {
        assert!(
            parse("ttft=400", 0.0)
                .unwrap_err()
                .contains("KEY:MILLISECONDS")
        );
        assert!(
            parse("latency:400", 0.0)
                .unwrap_err()
                .contains("\"latency\"")
        );
        assert!(parse("p101_ttft:400", 0.0).unwrap_err().contains("p101"));
        assert!(parse("ttft:-1", 0.0).unwrap_err().contains("ttft:-1"));
        assert!(parse("ttft:abc", 0.0).unwrap_err().contains("abc"));
        assert!(parse("", 0.0).is_err());
        assert!(
            parse("ttft:1", 1.5)
                .unwrap_err()
                .contains("--max-error-rate")
        );
    }

    fn summary(ttft: &[f64], failed: usize) -> Summary {
        use loadgen::record::{ContentChunk, RequestRecord};
        let mut records: Vec<RequestRecord> = ttft
            .iter()
            .map(|&ms| {
                let t = (ms * 1e6) as u64;
                RequestRecord {
                    chunks: vec![ContentChunk {
                        t_ns: t,
                        text_end: 1,
                        tokens: 1,
                    }],
                    last_choice_ns: Some(t),
                    end_ns: t,
                    output_tokens_server: Some(1),
                    ..Default::default()
                }
            })
            .collect();
        for _ in 0..failed {
            records.push(RequestRecord {
                error: Some(loadgen::RequestError::new(loadgen::ErrorKind::Http5xx, "x")),
                ..Default::default()
            });
        }
        loadgen::report::summarize(&records, &[99.0], &[])
    }

    #[test]
    fn judging_a_test() {
        let t = parse("ttft:400", 0.0).unwrap();
        assert!(t.judge(&summary(&[100.0, 200.0, 300.0], 0)).pass);
        let v = t.judge(&summary(&[100.0, 200.0, 1200.0], 0));
        assert!(
            !v.pass && v.violations[0].starts_with("mean_ttft 500.0 ms > 400 ms"),
            "{v:?}"
        );
        // any failure fails by default; --max-error-rate lets some through
        assert!(!t.judge(&summary(&[100.0; 99], 1)).pass);
        assert!(
            parse("ttft:400", 0.01)
                .unwrap()
                .judge(&summary(&[100.0; 99], 1))
                .pass
        );
        // the p99 sees the tail the mean hides
        let tail: Vec<f64> = (0..100)
            .map(|i| if i < 97 { 100.0 } else { 3000.0 })
            .collect();
        assert!(
            parse("ttft:400", 0.0)
                .unwrap()
                .judge(&summary(&tail, 0))
                .pass
        );
        assert!(
            !parse("p99_ttft:400", 0.0)
                .unwrap()
                .judge(&summary(&tail, 0))
                .pass
        );
    }
}
