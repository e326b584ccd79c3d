//! The metrics `benchctl compare` judges, which way each is better, and their value over any
//! subset of a test's requests (what the bootstrap resamples).

use std::fmt;

use loadgen::RequestRecord;
use loadgen::stats::{percentile_label, percentile_sorted};

/// A latency, per request (ITL: per gap, pooled over the requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    Ttft,
    Tpot,
    Itl,
    E2el,
}

/// A statistic of a latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    Mean,
    /// A percentile, 0–100 (`median` is 50).
    P(f64),
}

/// A throughput over the test's wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Output,
    Request,
    TotalToken,
}

/// One metric: `p99_ttft`, `mean_tpot`, `median_e2el`, `output_throughput`…
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    Latency(Stat, Latency),
    Throughput(Rate),
}

/// What `compare` shows without `--metrics`.
pub const DEFAULT: &str =
    "mean_ttft,p99_ttft,mean_tpot,p99_tpot,mean_itl,mean_e2el,p99_e2el,output_throughput";

impl Metric {
    pub fn parse(s: &str) -> Result<Metric, String> {
        let s = s.trim();
        let rate = match s {
            "output_throughput" => Some(Rate::Output),
            "request_throughput" => Some(Rate::Request),
            "total_token_throughput" => Some(Rate::TotalToken),
            _ => None,
        };
        if let Some(r) = rate {
            return Ok(Metric::Throughput(r));
        }
        let bad = || {
            format!(
                "{s:?} is not a metric: STAT_LATENCY (mean_ttft, median_tpot, p99_e2el, p99.9_itl) or output_throughput, request_throughput, total_token_throughput"
            )
        };
        let (stat, lat) = s.split_once('_').ok_or_else(bad)?;
        let lat = match lat {
            "ttft" => Latency::Ttft,
            "tpot" => Latency::Tpot,
            "itl" => Latency::Itl,
            "e2el" => Latency::E2el,
            _ => return Err(bad()),
        };
        let stat = match stat {
            "mean" => Stat::Mean,
            "median" => Stat::P(50.0),
            p => match p.strip_prefix('p').and_then(|v| v.parse::<f64>().ok()) {
                Some(v) if v > 0.0 && v < 100.0 => Stat::P(v),
                _ => return Err(bad()),
            },
        };
        Ok(Metric::Latency(stat, lat))
    }

    /// Whether a larger value is better (throughputs) or worse (latencies).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Throughput(_))
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Latency(..) => "ms",
            Metric::Throughput(Rate::Request) => "req/s",
            Metric::Throughput(_) => "tok/s",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Throughput(r) => f.write_str(match r {
                Rate::Output => "output_throughput",
                Rate::Request => "request_throughput",
                Rate::TotalToken => "total_token_throughput",
            }),
            Metric::Latency(stat, lat) => {
                let lat = match lat {
                    Latency::Ttft => "ttft",
                    Latency::Tpot => "tpot",
                    Latency::Itl => "itl",
                    Latency::E2el => "e2el",
                };
                match stat {
                    Stat::Mean => write!(f, "mean_{lat}"),
                    Stat::P(p) if *p == 50.0 => write!(f, "median_{lat}"),
                    Stat::P(p) => write!(f, "p{}_{lat}", percentile_label(*p)),
                }
            }
        }
    }
}

/// One successful request's numbers, in ms and tokens.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ttft: Option<f64>,
    pub tpot: Option<f64>,
    pub e2el: Option<f64>,
    pub itl: Vec<f64>,
    pub output_tokens: f64,
    pub input_tokens: f64,
}

impl Sample {
    /// The successful requests' samples.
    pub fn of(records: &[RequestRecord]) -> Vec<Sample> {
        let ms = |ns: f64| ns / 1e6;
        records
            .iter()
            .filter(|r| r.ok())
            .map(|r| Sample {
                ttft: r.ttft_ns().map(|v| ms(v as f64)),
                tpot: r.tpot_ns().map(ms),
                e2el: r.e2el_ns().map(|v| ms(v as f64)),
                itl: r.itl_ns().map(|v| ms(v as f64)).collect(),
                output_tokens: f64::from(r.output_tokens()),
                input_tokens: f64::from(r.prompt_tokens()),
            })
            .collect()
    }
}

/// A latency statistic over the requests `idx` of `samples` (`None`: no value among them).
pub fn latency(samples: &[Sample], idx: &[usize], stat: Stat, lat: Latency) -> Option<f64> {
    let mut v: Vec<f64> = match lat {
        Latency::Itl => idx
            .iter()
            .flat_map(|&i| samples[i].itl.iter().copied())
            .collect(),
        _ => idx
            .iter()
            .filter_map(|&i| {
                let s = &samples[i];
                match lat {
                    Latency::Ttft => s.ttft,
                    Latency::Tpot => s.tpot,
                    _ => s.e2el,
                }
            })
            .collect(),
    };
    if v.is_empty() {
        return None;
    }
    match stat {
        Stat::Mean => Some(v.iter().sum::<f64>() / v.len() as f64),
        Stat::P(p) => {
            v.sort_by(f64::total_cmp);
            Some(percentile_sorted(&v, p))
        }
    }
}

/// The ratio a throughput moves with over a subset of requests: tokens (or requests) per second
/// of request time, Σ tokens / Σ E2EL. With the streams kept busy (closed loop), throughput is
/// the concurrency times this ratio, so a resample scales the measured throughput by its ratio
/// over the ratio of all requests.
pub fn rate_ratio(samples: &[Sample], idx: &[usize], rate: Rate) -> Option<f64> {
    let (mut num, mut time) = (0.0, 0.0);
    for &i in idx {
        let s = &samples[i];
        let Some(e) = s.e2el else { continue };
        time += e;
        num += match rate {
            Rate::Output => s.output_tokens,
            Rate::Request => 1.0,
            Rate::TotalToken => s.output_tokens + s.input_tokens,
        };
    }
    (time > 0.0).then(|| num / time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_know_their_direction() {
        for s in [
            "mean_ttft",
            "median_tpot",
            "p99_e2el",
            "p99.9_itl",
            "output_throughput",
            "request_throughput",
        ] {
            assert_eq!(Metric::parse(s).unwrap().to_string(), s);
        }
        assert!(
            Metric::parse("output_throughput")
                .unwrap()
                .higher_is_better()
        );
        assert!(!Metric::parse("p99_ttft").unwrap().higher_is_better());
        for bad in ["p100_ttft", "ttft", "mean_foo", "p_ttft"] {
            assert!(Metric::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn statistics_over_a_subset_of_requests() {
        let s: Vec<Sample> = [10.0, 20.0, 30.0, 40.0]
            .iter()
            .map(|&t| Sample {
                ttft: Some(t),
                e2el: Some(t * 10.0),
                output_tokens: 10.0,
                itl: vec![1.0, t],
                ..Default::default()
            })
            .collect();
        let all = [0, 1, 2, 3];
        assert_eq!(latency(&s, &all, Stat::Mean, Latency::Ttft), Some(25.0));
        assert_eq!(
            latency(&s, &[0, 0, 3], Stat::P(50.0), Latency::Ttft),
            Some(10.0)
        );
        assert_eq!(latency(&s, &[1], Stat::Mean, Latency::Itl), Some(10.5));
        assert_eq!(latency(&s, &all, Stat::Mean, Latency::Tpot), None);
        // 40 tokens over 1000 ms of requests
        assert_eq!(rate_ratio(&s, &all, Rate::Output), Some(0.04));
    }
}
