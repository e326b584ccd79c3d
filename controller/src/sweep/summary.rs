//! A sweep's summary: per input/output combination, what the search concluded and each tested
//! concurrency's (or rate's) pooled numbers; written as `summary.json`, `summary.csv` and `summary.md`, and
//! printed as the closing table.

use std::collections::BTreeMap;

use serde::Serialize;

use loadgen::report::Metric::{self, E2el, Itl, Tpot, Ttfo, Ttft};
use loadgen::report::Summary;

use super::axis::{self, Axis, Level};
use super::frontier::{self, FrontierPoint};
use super::search::Search;
use super::status::Status;
use super::threshold::Verdict;

/// The pooled result of one concurrency (or rate) of a combination (all its runs).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PointSummary {
    /// `"concurrency": 32`, or `"rate": 2.5` in a rate sweep.
    #[serde(flatten)]
    pub level: Level,
    pub runs: u32,
    /// `None` without thresholds.
    pub pass: Option<bool>,
    pub violations: Vec<String>,
    pub completed: usize,
    pub failed: usize,
    /// Mean over the runs.
    pub output_throughput: f64,
    pub request_throughput: f64,
    /// Input and output tokens/s, mean over the runs.
    pub total_token_throughput: Option<f64>,
    /// The GPUs the agents saw serve it (the most over its runs; `None` without telemetry).
    pub gpus_serving: Option<f64>,
    /// Energy per output token, mean over the runs (`None` without an energy counter).
    pub gpu_joules_per_output_token: Option<f64>,
    /// Pooled over the runs' requests.
    pub mean_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    /// Time to first visible output (equal to TTFT without reasoning or tool calls).
    pub mean_ttfo_ms: Option<f64>,
    pub p99_ttfo_ms: Option<f64>,
    pub mean_tpot_ms: Option<f64>,
    pub p99_tpot_ms: Option<f64>,
    pub mean_itl_ms: Option<f64>,
    pub mean_e2el_ms: Option<f64>,
    pub p99_e2el_ms: Option<f64>,
    pub gpu_utilization_mean_pct: Option<f64>,
    /// The server's own view, means over the runs (`None` without server metrics): requests
    /// waiting (each run's mean), KV-cache usage (each run's max, a fraction 0..1), sequences
    /// preempted, prefix-cache hit rate (0..1).
    pub server_waiting_mean: Option<f64>,
    /// Sequences the server was running (each run's mean, each run's max).
    pub server_running_mean: Option<f64>,
    pub server_running_max: Option<f64>,
    pub server_kv_cache_usage_max: Option<f64>,
    pub server_preemptions: Option<f64>,
    pub server_prefix_cache_hit_rate: Option<f64>,
    /// Cached prompt tokens / prompt tokens by the server's usage (0..1, mean over the runs;
    /// `None` when the server did not report `cached_tokens`), and what the workload expected.
    pub cached_token_fraction: Option<f64>,
    pub expected_cached_token_fraction: Option<f64>,
    /// A run was served from a warm prefix cache (its result's `warm_cache`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warm_cache: bool,
    /// Why the client could not hold this load (a run's `invalid`); never a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The client's read lag (the worst run's p99), ms.
    pub client_read_lag_p99_ms: Option<f64>,
    /// The load worker's CPU use, % of the cores it may use (the busiest run's).
    pub client_cpu_pct: Option<f64>,
    /// Every statistic of the pooled requests, by result-JSON key (`mean_ttft_ms`,
    /// `p99_tpot_ms`, `median_e2el_ms`…): what the verdict judged, for charts.
    pub pooled: BTreeMap<String, f64>,
}

impl PointSummary {
    /// A level pooled over its `runs` (`s`, judged: `verdict`); means over its runs'
    /// result `entries` where the numbers are per run (throughputs, GPU utilisation, the
    /// server's metrics).
    pub fn of(
        level: Level,
        runs: u32,
        s: &Summary,
        verdict: Option<Verdict>,
        entries: &[&serde_json::Value],
    ) -> PointSummary {
        let mean_of = |key: &str| {
            let v: Vec<f64> = entries.iter().filter_map(|e| e[key].as_f64()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let m = |metric: Metric| s.metrics.get(&metric);
        let mut pooled = BTreeMap::new();
        for metric in [Ttft, Ttfo, Tpot, Itl, E2el] {
            if let Some(d) = m(metric) {
                let k = metric.key();
                pooled.insert(format!("mean_{k}_ms"), d.mean);
                pooled.insert(format!("median_{k}_ms"), d.median);
                for &(p, v) in &d.percentiles {
                    pooled.insert(
                        format!("p{}_{k}_ms", loadgen::stats::percentile_label(p)),
                        v,
                    );
                }
            }
        }
        PointSummary {
            level,
            runs,
            pass: verdict.as_ref().map(|v| v.pass),
            violations: verdict.map(|v| v.violations).unwrap_or_default(),
            completed: s.completed,
            failed: s.failed,
            output_throughput: mean_of("output_throughput").unwrap_or(0.0),
            request_throughput: mean_of("request_throughput").unwrap_or(0.0),
            total_token_throughput: mean_of("total_token_throughput"),
            gpus_serving: entries
                .iter()
                .filter_map(|e| frontier::gpus_serving(e))
                .max()
                .map(|n| n as f64),
            gpu_joules_per_output_token: mean_of("gpu_joules_per_output_token"),
            mean_ttft_ms: m(Ttft).map(|d| d.mean),
            p99_ttft_ms: m(Ttft).and_then(|d| d.get(99.0)),
            mean_ttfo_ms: m(Ttfo).map(|d| d.mean),
            p99_ttfo_ms: m(Ttfo).and_then(|d| d.get(99.0)),
            mean_tpot_ms: m(Tpot).map(|d| d.mean),
            p99_tpot_ms: m(Tpot).and_then(|d| d.get(99.0)),
            mean_itl_ms: m(Itl).map(|d| d.mean),
            mean_e2el_ms: m(E2el).map(|d| d.mean),
            p99_e2el_ms: m(E2el).and_then(|d| d.get(99.0)),
            gpu_utilization_mean_pct: mean_of("gpu_utilization_mean_pct"),
            server_waiting_mean: mean_of("server_waiting_mean"),
            server_running_mean: mean_of("server_running_mean"),
            server_running_max: mean_of("server_running_max"),
            server_kv_cache_usage_max: mean_of("server_kv_cache_usage_max"),
            server_preemptions: mean_of("server_preemptions"),
            server_prefix_cache_hit_rate: mean_of("server_prefix_cache_hit_rate"),
            cached_token_fraction: mean_of("cached_token_fraction"),
            expected_cached_token_fraction: mean_of("expected_cached_token_fraction"),
            warm_cache: entries.iter().any(|e| e["warm_cache"] == true),
            invalid: entries
                .iter()
                .find_map(|e| Some(e.get("invalid")?.as_str()?.to_string())),
            client_read_lag_p99_ms: entries
                .iter()
                .filter_map(|e| e["client_read_lag_p99_ms"].as_f64())
                .reduce(f64::max),
            client_cpu_pct: entries
                .iter()
                .filter_map(|e| e["client_cpu_pct"].as_f64())
                .reduce(f64::max),
            pooled,
        }
    }

    /// This point on the frontier's axes: per GPU (those serving it, else `tp`), per user.
    pub fn on_axes(&self, tp: u32, gpu_hour_cost: Option<f64>) -> FrontierPoint {
        let (gpus, from) = match self.gpus_serving {
            Some(n) if n > 0.0 => (n, "telemetry"),
            _ => (f64::from(tp.max(1)), "--tp"),
        };
        let x = |stat: &str| {
            frontier::interactivity(self.pooled.get(&format!("{stat}_tpot_ms")).copied())
        };
        FrontierPoint {
            level: self.level,
            gpus,
            gpus_from: from.into(),
            output_tok_s_per_gpu: self.output_throughput / gpus,
            total_tok_s_per_gpu: self.total_token_throughput.map(|t| t / gpus),
            tok_s_per_user: x("mean"),
            tok_s_per_user_median: x("median"),
            tok_s_per_user_p90: x("p90"),
            joules_per_output_token: self.gpu_joules_per_output_token,
            cost_per_million_output_tokens: gpu_hour_cost
                .and_then(|c| frontier::cost_per_million(c, gpus, self.output_throughput)),
            pass: self.pass,
            on_frontier: false,
        }
    }

    /// What the server's own numbers say held this concurrency back: a KV cache (nearly)
    /// full, sequences preempted, requests queueing; `None` when none of these shows (or
    /// without server metrics).
    pub fn limiter(&self) -> Option<String> {
        let mut why = vec![];
        if let Some(kv) = self.server_kv_cache_usage_max.filter(|&kv| kv >= 0.95) {
            why.push(format!("KV cache full (max {:.0} %)", kv * 100.0));
        }
        if let Some(n) = self.server_preemptions.filter(|&n| n > 0.0) {
            let n = if n.fract() == 0.0 {
                format!("{n:.0}")
            } else {
                format!("{n:.1}")
            };
            why.push(format!("preemptions ({n})"));
        }
        if let Some(w) = self.server_waiting_mean.filter(|&w| w >= 1.0) {
            why.push(format!("queueing (mean {w:.1} waiting)"));
        }
        // nothing queued, nothing full: the server ran the test's whole concurrency at once
        // (its running count reached the concurrency, or stayed near it), so its decode step
        // grew with the batch (llama.cpp's slots, a batch-size bound). A closed-loop test's
        // mean stays below its concurrency while the last requests drain, hence the max.
        // (an open-loop test has no concurrency to reach: not judged so)
        if let Some(c) = self.level.concurrency() {
            let cf = f64::from(c);
            let all_at_once = self.server_running_max.is_some_and(|m| m >= 0.95 * cf);
            if why.is_empty()
                && let Some(r) = self.server_running_mean
                && (all_at_once || r >= 0.75 * cf)
            {
                why.push(format!(
                    "batch size (mean {r:.0} of {c} running, none queued)"
                ));
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// What the search concluded for one combination.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ComboSummary {
    /// What `max_passing`, `first_failing`, `tested`… count: concurrencies or rates (req/s).
    pub axis: Axis,
    pub input_len: u32,
    pub output_len: u32,
    pub status: Status,
    #[serde(serialize_with = "axis::as_number::option")]
    pub max_passing: Option<Level>,
    #[serde(serialize_with = "axis::as_number::option")]
    pub first_failing: Option<Level>,
    /// The thresholds the first failing concurrency broke (pooled over its runs).
    pub bound_by: Vec<String>,
    /// What the server's metrics say held the boundary back (the first failing concurrency,
    /// else the largest tested): see `PointSummary::limiter`.
    pub limiter: Option<String>,
    /// Concurrencies (rates) tested, in order.
    #[serde(serialize_with = "axis::as_number::vec")]
    pub tested: Vec<Level>,
    /// Failures that a pass at a higher concurrency overruled (latency was not monotone there).
    #[serde(serialize_with = "axis::as_number::vec")]
    pub failed_below_a_pass: Vec<Level>,
    /// Grid points the search did not need.
    #[serde(serialize_with = "axis::as_number::vec")]
    pub skipped: Vec<Level>,
    pub tests_run: usize,
    pub points: Vec<PointSummary>,
    /// Every point on the frontier's axes, marked where it is on the frontier.
    pub frontier: Vec<FrontierPoint>,
}

impl ComboSummary {
    /// The combination's points and `tests_run` as they are now, and what the search (if any)
    /// concluded.
    pub fn update(&mut self, points: Vec<PointSummary>, tests_run: usize, search: Option<&Search>) {
        self.tests_run = tests_run;
        if let Some(search) = search {
            let o = search.outcome();
            let axis = self.axis;
            let levels = |v: &[u32]| v.iter().map(|&s| axis.level(s)).collect::<Vec<_>>();
            self.max_passing = o.max_passing.map(|s| axis.level(s));
            self.first_failing = o.first_failing.map(|s| axis.level(s));
            self.tested = levels(&o.tested);
            self.failed_below_a_pass = levels(&o.failed_below_a_pass);
            self.skipped = levels(search.skipped());
            self.bound_by = self
                .first_failing
                .and_then(|f| points.iter().find(|p| p.level == f))
                .map(|p| p.violations.clone())
                .unwrap_or_default();
        } else {
            self.tested = points.iter().map(|p| p.level).collect();
        }
        let boundary = self
            .first_failing
            .or_else(|| self.tested.iter().max().copied());
        self.limiter = boundary
            .and_then(|c| points.iter().find(|p| p.level == c))
            .and_then(PointSummary::limiter);
        self.points = points;
    }
}

/// The summary files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepSummary {
    pub model: String,
    pub tp: u32,
    pub dtype: String,
    pub threshold: Option<String>,
    pub max_error_rate: f64,
    pub search: String,
    /// What the search varied: concurrency or rate.
    pub axis: Axis,
    pub repeats: u32,
    pub metadata: BTreeMap<String, String>,
    pub target_is_simulator: bool,
    /// `nvml: N GPUs`, `SIMULATED`, or why there are none.
    pub gpu_telemetry: String,
    /// `--gpu-hour-cost`: the price of one GPU for an hour, for the cost per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_hour_cost: Option<f64>,
    pub status: Status,
    /// Distributed mode: each time a new leader took the sweep over (when, from whom, the test
    /// in flight that was discarded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<serde_json::Value>,
    pub combinations: Vec<ComboSummary>,
}

impl SweepSummary {
    /// Recomputes combination `i`'s frontier from its points.
    pub fn mark_frontier(&mut self, i: usize) {
        let (tp, cost) = (self.tp, self.gpu_hour_cost);
        let c = &mut self.combinations[i];
        c.frontier = c.points.iter().map(|p| p.on_axes(tp, cost)).collect();
        frontier::mark(&mut c.frontier);
    }

    pub(super) fn at_max<'a>(&self, c: &'a ComboSummary) -> Option<&'a PointSummary> {
        c.max_passing
            .and_then(|m| c.points.iter().find(|p| p.level == m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::summary_files::final_table;

    fn point(c: u32, waiting: f64, kv: f64, preemptions: f64) -> PointSummary {
        PointSummary {
            level: Level::Concurrency(c),
            runs: 1,
            server_waiting_mean: Some(waiting),
            server_kv_cache_usage_max: Some(kv),
            server_preemptions: Some(preemptions),
            ..Default::default()
        }
    }

    #[test]
    fn the_limiter_is_named_from_the_servers_numbers() {
        assert_eq!(PointSummary::default().limiter(), None, "no server metrics");
        assert_eq!(point(8, 0.4, 0.6, 0.0).limiter(), None, "nothing shows");
        assert_eq!(point(8, 0.99, 0.949, 0.0).limiter(), None, "just below");
        assert_eq!(
            point(8, 0.0, 0.976, 0.0).limiter().as_deref(),
            Some("KV cache full (max 98 %)")
        );
        assert_eq!(
            point(8, 0.0, 0.5, 2.5).limiter().as_deref(),
            Some("preemptions (2.5)")
        );
        assert_eq!(
            point(8, 3.25, 0.5, 0.0).limiter().as_deref(),
            Some("queueing (mean 3.2 waiting)")
        );
        assert_eq!(
            point(8, 12.0, 1.0, 7.0).limiter().as_deref(),
            Some("KV cache full (max 100 %); preemptions (7); queueing (mean 12.0 waiting)")
        );
    }

    #[test]
    fn a_server_that_runs_the_whole_concurrency_is_bound_by_its_batch() {
        let mut p = point(128, 0.0, 0.3, 0.0);
        p.server_running_mean = Some(120.4);
        assert_eq!(
            p.limiter().as_deref(),
            Some("batch size (mean 120 of 128 running, none queued)")
        );
        p.server_running_mean = Some(60.0);
        assert_eq!(p.limiter(), None, "half the concurrency: not the batch");
        // llama.cpp at 512x128 c=161 on the H200 (docs/server-metrics-gpu/distributed): all
        // 161 ran at once, the mean lower while the wave drained
        let mut q = point(161, 0.0, 0.3, 0.0);
        (q.server_running_mean, q.server_running_max) = (Some(112.2), Some(161.0));
        assert_eq!(
            q.limiter().as_deref(),
            Some("batch size (mean 112 of 161 running, none queued)")
        );
        q.server_running_max = Some(120.0);
        assert_eq!(
            q.limiter(),
            None,
            "never all at once, mean 70 %: not the batch"
        );
        p.server_waiting_mean = Some(30.0);
        p.server_running_mean = Some(127.0);
        assert_eq!(
            p.limiter().as_deref(),
            Some("queueing (mean 30.0 waiting)"),
            "queueing names the cause first"
        );
    }

    #[test]
    fn the_limiter_is_judged_at_the_boundary() {
        // no search: at the largest concurrency tested
        let mut c = ComboSummary::default();
        c.update(
            vec![point(4, 0.0, 0.2, 0.0), point(16, 6.0, 0.5, 0.0)],
            2,
            None,
        );
        assert_eq!(c.limiter.as_deref(), Some("queueing (mean 6.0 waiting)"));
        // at the first failing concurrency, where there is one
        c.first_failing = Some(Level::Concurrency(4));
        c.update(
            vec![point(4, 0.0, 0.97, 0.0), point(16, 6.0, 0.5, 0.0)],
            2,
            None,
        );
        assert_eq!(c.limiter.as_deref(), Some("KV cache full (max 97 %)"));
        let s = SweepSummary {
            combinations: vec![c],
            ..Default::default()
        };
        let csv = s.csv();
        assert!(
            csv.starts_with("input_len,output_len,status,max_passing_concurrency,first_failing_concurrency,bound_by,limiter,")
                && csv.contains(",\"\",\"KV cache full (max 97 %)\","),
            "{csv}"
        );
        assert!(final_table(&s).contains("likely limiter"));
        assert!(s.markdown().contains("KV cache max %"), "{}", s.markdown());
    }

    #[test]
    fn tests_served_from_a_warm_cache_are_named_with_the_cached_columns() {
        let warm = PointSummary {
            level: Level::Concurrency(8),
            cached_token_fraction: Some(0.9),
            expected_cached_token_fraction: Some(0.0),
            warm_cache: true,
            ..point(8, 0.0, 0.1, 0.0)
        };
        let mut c = ComboSummary {
            input_len: 512,
            output_len: 64,
            ..Default::default()
        };
        c.update(vec![point(4, 0.0, 0.1, 0.0), warm], 2, None);
        let s = SweepSummary {
            combinations: vec![c],
            ..Default::default()
        };
        let md = s.markdown();
        assert!(md.contains(" cached % | expected cached % |"), "{md}");
        assert!(md.contains(" 90.0 | 0.0 |"), "{md}");
        for text in [md, final_table(&s)] {
            assert!(
                text.contains("WARNING: served from a warm prefix cache")
                    && text.contains("512x64 c=8"),
                "{text}"
            );
        }
    }

    fn measured(c: u32, out: f64, tpot: f64, gpus: Option<f64>) -> PointSummary {
        PointSummary {
            level: Level::Concurrency(c),
            runs: 1,
            output_throughput: out,
            gpus_serving: gpus,
            pass: Some(c <= 8),
            pooled: [("mean_tpot_ms".to_string(), tpot)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_frontier_is_per_gpu_and_in_the_summary_files() {
        let mut s = SweepSummary {
            tp: 4,
            gpu_hour_cost: Some(2.0),
            combinations: vec![ComboSummary::default()],
            ..Default::default()
        };
        // c=8 is dominated by c=4 (less throughput at lower interactivity)
        let points = vec![
            measured(1, 400.0, 10.0, Some(2.0)),
            measured(4, 1200.0, 20.0, Some(2.0)),
            measured(8, 1100.0, 25.0, Some(2.0)),
            measured(16, 2800.0, 50.0, None),
        ];
        s.combinations[0].update(points, 4, None);
        s.combinations[0].max_passing = Some(Level::Concurrency(8));
        s.mark_frontier(0);
        let f = &s.combinations[0].frontier;
        let on: Vec<bool> = f.iter().map(|p| p.on_frontier).collect();
        assert_eq!(on, [true, true, false, true]);
        assert_eq!((f[1].gpus, f[1].gpus_from.as_str()), (2.0, "telemetry"));
        assert_eq!(f[1].output_tok_s_per_gpu, 600.0);
        assert_eq!(f[1].tok_s_per_user, Some(50.0));
        assert_eq!((f[3].gpus, f[3].gpus_from.as_str()), (4.0, "--tp"));
        // 2 GPUs at 2/h over 1100 tok/s
        let cost = f[2].cost_per_million_output_tokens.unwrap();
        assert!((cost - 4.0 / 3600.0 / 1100.0 * 1e6).abs() < 1e-9);
        let csv = s.csv();
        assert!(csv.lines().nth(1).unwrap().ends_with(",1 4 16"), "{csv}");
        assert_eq!(s.frontier_csv().lines().count(), 5);
        assert!(
            s.markdown().contains("| 4 * | 2 (telemetry) | 600.0 |"),
            "{}",
            s.markdown()
        );
    }
}
