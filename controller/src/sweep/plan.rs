//! A sweep's plan: everything that decides which tests run and how they are judged, resolved
//! from the flags and `--config` (`cmd/sweep_config.rs`) and saved in the result directory
//! (`benchctl_sweep.json`) so that `--resume DIR` runs the same grid with the same settings; and
//! what a sweep submitted to a controller carries beside it ([`SweepTarget`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::axis::{Axis, DEFAULT_RATE_RESOLUTION, Level, Rate};
use super::grid::Io;
use super::search::{Mode, Resolution};
use super::threshold::{Threshold, Thresholds};
use crate::metrics_source::{self, MetricsSource};
use crate::target::Target;

/// The name of the saved plan in a result directory.
pub const PLAN_FILE: &str = "benchctl_sweep.json";

/// How many requests a test sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompts {
    Fixed(usize),
    PerConcurrency { k: usize, min: usize },
}

impl Prompts {
    pub fn for_concurrency(self, c: u32) -> usize {
        match self {
            Prompts::Fixed(n) => n,
            Prompts::PerConcurrency { k, min } => (k * c as usize).max(min),
        }
    }

    /// A test's requests: k × its concurrency, or k × its rate (k seconds of arrivals), at
    /// least `min`.
    pub fn for_level(self, level: Level) -> usize {
        match (self, level) {
            (_, Level::Concurrency(c)) => self.for_concurrency(c),
            (Prompts::Fixed(n), Level::Rate(_)) => n,
            (Prompts::PerConcurrency { k, min }, Level::Rate(r)) => {
                ((k as f64 * r.per_s()).ceil() as usize).max(min)
            }
        }
    }
}

fn one_group() -> u32 {
    1
}

fn default_rate_resolution() -> f64 {
    DEFAULT_RATE_RESOLUTION
}

fn poisson() -> f64 {
    1.0
}

fn default_metrics_interval() -> Duration {
    metrics_source::DEFAULT_INTERVAL
}

/// The plan file's format: 0 before it had a version (it loads the same).
pub const PLAN_VERSION: u32 = 1;

/// Everything that decides which tests run and how they are judged; saved for `--resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_VERSION`] when written.
    #[serde(default)]
    pub version: u32,
    /// The model name in the directory and file names.
    pub model_label: String,
    pub tp: u32,
    pub dtype: String,
    pub io: Vec<Io>,
    pub concurrency: Vec<u32>,
    /// `--search-axis` (concurrency in plans written before it existed).
    #[serde(default)]
    pub axis: Axis,
    /// `--rates` (req/s) of a rate sweep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<Rate>,
    /// `--rate-resolution`: where bisecting a rate stops (a fraction of the passing rate).
    #[serde(default = "default_rate_resolution")]
    pub rate_resolution: f64,
    /// `--burstiness` of a rate sweep's arrivals (1: Poisson).
    #[serde(default = "poisson")]
    pub burstiness: f64,
    /// `--max-concurrency`: a rate sweep's cap on requests in flight (`None`: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    pub prompts: Prompts,
    /// `None`: the test's concurrency.
    pub warmup_requests: Option<usize>,
    pub threshold: Option<Threshold>,
    pub max_error_rate: f64,
    pub search: Mode,
    pub repeats: u32,
    pub metadata: BTreeMap<String, String>,
    /// Prompt and arrival seed; each test derives its own from it.
    pub seed: u64,
    pub random_range_ratio: f64,
    pub prefix_len: u32,
    /// `--prefix-groups` (1 in plans written before it existed).
    #[serde(default = "one_group")]
    pub prefix_groups: u32,
    /// `--reset-prefix-cache` (off in plans written before it existed).
    #[serde(default)]
    pub reset_prefix_cache: bool,
    pub percentiles: String,
    pub endpoint: String,
    /// `--server-metrics` (off in plans written before it existed).
    #[serde(default)]
    pub server_metrics: MetricsSource,
    #[serde(default = "default_metrics_interval")]
    pub server_metrics_interval: Duration,
    /// The `model` field the requests sent when the sweep began.
    pub served_model: String,
    /// Conversations (`--dataset conversations`): each test's sessions, their messages of the
    /// combination's input length (the spec's own lengths are not used). `None`: random prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<loadgen::conversation::ConversationSpec>,
    /// `--gpu-hour-cost`: one GPU's price per hour, for the cost per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_hour_cost: Option<f64>,
    /// `--max-memory`: bytes of records a test keeps in memory before they spill to the
    /// result directory (`None`, written `null`: no limit). A plan saved before the flag gets
    /// the flag's default.
    #[serde(default = "default_max_memory")]
    pub max_memory_bytes: Option<u64>,
}

/// `--max-memory`'s default, 4 GiB (`cmd/common.rs` says it in `--help`).
pub const DEFAULT_MAX_MEMORY: u64 = 4 << 30;

fn default_max_memory() -> Option<u64> {
    Some(DEFAULT_MAX_MEMORY)
}

impl Plan {
    /// The thresholds with the error-rate gate (`None`: every grid point is tested).
    pub fn thresholds(&self) -> Option<Thresholds> {
        self.threshold
            .as_ref()
            .map(|t| t.with_max_error_rate(self.max_error_rate))
    }

    /// The percentiles every test computes: `--percentiles` and those the thresholds bound.
    pub fn percentiles(&self) -> anyhow::Result<Vec<f64>> {
        let mut percentiles =
            loadgen::stats::parse_percentiles(&self.percentiles).map_err(anyhow::Error::msg)?;
        // p90 TPOT: the frontier's interactivity at p90
        let mut wanted = vec![90.0];
        if let Some(t) = self.thresholds() {
            wanted.extend(t.percentiles());
        }
        for p in wanted {
            if !percentiles.contains(&p) {
                percentiles.push(p);
            }
        }
        Ok(percentiles)
    }

    /// Warm-up requests: `--warmup-requests`, else one wave (the concurrency; a rate test's
    /// requests of one second, at least one).
    pub fn warmup_for(&self, level: Level) -> usize {
        self.warmup_requests.unwrap_or(match level {
            Level::Concurrency(c) => c as usize,
            Level::Rate(r) => (r.per_s().ceil() as usize).max(1),
        })
    }

    /// The grid on the search's axis, as search steps (see `axis.rs`).
    pub fn steps(&self) -> Vec<u32> {
        match self.axis {
            Axis::Concurrency => self.concurrency.clone(),
            Axis::Rate => self.rates.iter().map(|r| r.millis()).collect(),
        }
    }

    /// The grid on the search's axis.
    pub fn levels(&self) -> Vec<Level> {
        self.steps()
            .into_iter()
            .map(|s| self.axis.level(s))
            .collect()
    }

    /// Where bisection stops on the search's axis.
    pub fn resolution(&self) -> Resolution {
        match self.axis {
            Axis::Concurrency => Resolution::Exact,
            Axis::Rate => Resolution::Fraction(self.rate_resolution),
        }
    }

    /// The most requests a test may keep in flight (the target's connection pool): the largest
    /// concurrency; a rate sweep's cap, else what its largest rate sends in a minute.
    pub fn max_in_flight(&self) -> usize {
        match self.axis {
            Axis::Concurrency => self.concurrency.iter().copied().max().unwrap_or(1) as usize,
            Axis::Rate => self.max_concurrency.map_or_else(
                || {
                    let r = self.rates.iter().map(|r| r.per_s()).fold(1.0, f64::max);
                    (r * 60.0).ceil().min(100_000.0) as usize
                },
                |c| c as usize,
            ),
        }
    }

    pub fn load(dir: &Path) -> anyhow::Result<Plan> {
        let path = dir.join(PLAN_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "--resume {}: no {PLAN_FILE} there (not a benchctl sweep directory?)",
                dir.display()
            )
        })?;
        let plan: Plan = serde_json::from_slice(&bytes)
            .with_context(|| format!("--resume {}: {PLAN_FILE} is not valid", dir.display()))?;
        super::threshold::check_max_error_rate(plan.max_error_rate)
            .map_err(|e| anyhow::anyhow!("--resume {}: {PLAN_FILE}: {e}", dir.display()))?;
        Ok(plan)
    }

    /// Writes the plan into a result directory.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        crate::output::write_atomic(&dir.join(PLAN_FILE), &serde_json::to_vec_pretty(self)?)
    }
}

/// What a sweep submitted to a controller carries beside its plan: the target (never the API
/// key: the controller uses its own) and how the load is spread. The same keys as the `benchctl
/// sweep` flags they come from, flat, as the first format (before versions) had them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepTarget {
    #[serde(flatten)]
    pub target: Target,
    /// `--workers`: how many load workers share each test (`None`: every connected one).
    pub workers: Option<u32>,
    /// `--gpu-num`: the GPUs the sweep waits for before it starts.
    pub gpu_num: Option<u32>,
    #[serde(default)]
    pub no_preflight: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan written by benchctl before plans had a version still loads, and is written
    /// back with the same keys and values (plus the version).
    #[test]
    fn a_plan_written_before_versions_loads() {
        let d = tempfile::tempdir().unwrap();
        let fixture = include_str!("../../tests/fixtures/plan-v0.json");
        std::fs::write(d.path().join(PLAN_FILE), fixture).unwrap();
        let p = Plan::load(d.path()).unwrap();
        assert_eq!(p.version, 0);
        assert_eq!(
            p.threshold.as_ref().unwrap().as_str(),
            "p99_ttft:2000 tpot:50"
        );
        assert_eq!(p.thresholds().unwrap().bounds.len(), 2);
        assert_eq!(p.percentiles().unwrap(), vec![50.0, 90.0, 95.0, 99.0]);
        assert_eq!((p.seed, p.search), (7, Mode::Bisect));
        let mut old: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let mut new = serde_json::to_value(&p).unwrap();
        // what came later: the version, and the server metrics (off in an older plan)
        assert_eq!(p.server_metrics, MetricsSource::Off);
        // and the prefix cache's settings (one group, no reset)
        assert_eq!((p.prefix_groups, p.reset_prefix_cache), (1, false));
        // and the records' budget (the flag's default)
        assert_eq!(p.max_memory_bytes, Some(DEFAULT_MAX_MEMORY));
        assert_eq!((p.axis, p.burstiness), (Axis::Concurrency, 1.0));
        for k in [
            "axis",
            "rate_resolution",
            "burstiness",
            "version",
            "server_metrics",
            "server_metrics_interval",
            "prefix_groups",
            "reset_prefix_cache",
            "max_memory_bytes",
        ] {
            new.as_object_mut().unwrap().remove(k);
            old.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(old, new);
    }

    #[test]
    fn a_plan_with_a_bad_threshold_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let fixture = include_str!("../../tests/fixtures/plan-v0.json")
            .replace("p99_ttft:2000 tpot:50", "latency:4");
        std::fs::write(d.path().join(PLAN_FILE), fixture).unwrap();
        let e = format!("{:#}", Plan::load(d.path()).unwrap_err());
        assert!(e.contains("latency"), "{e}");
    }
}
