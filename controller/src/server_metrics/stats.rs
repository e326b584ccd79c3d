//! A window's statistics from a [`ScrapeLog`]: per replica, the samples from the last one at or
//! before the window's start to the first one at or after its end (the `sample_now` pair when the
//! scraper took them); gauges summarised over those samples (mean, max, p95), counters
//! differenced between their ends (a drop is a restart: counted from 0), and the coverage of the
//! window by successful samples. Replicas are combined per scrape round: gauges summed (the
//! KV-cache usage averaged), counters summed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::log::{Sample, ScrapeLog};
use super::vocabulary::{Quantity, ServerKind};

mod window;

use window::{
    CounterStats, GaugeStats, combine, counter_delta, coverage, gauge, gauge_points, select,
};

/// The `server_*` keys of a result, all present (null when unknown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    pub server_kind: ServerKind,
    pub server_metrics_endpoints: Vec<String>,
    /// The least coverage of any replica: the fraction of the window within three scrape
    /// intervals of a successful sample.
    pub server_metrics_coverage: f64,
    /// No sample, or coverage below 90 %.
    pub server_metrics_incomplete: bool,
    /// Why samples are absent or incomplete.
    pub server_metrics_note: Option<String>,
    pub server_running_mean: Option<f64>,
    pub server_running_max: Option<f64>,
    pub server_running_p95: Option<f64>,
    pub server_waiting_mean: Option<f64>,
    pub server_waiting_max: Option<f64>,
    pub server_waiting_p95: Option<f64>,
    /// Fraction 0..1.
    pub server_kv_cache_usage_mean: Option<f64>,
    pub server_kv_cache_usage_max: Option<f64>,
    pub server_kv_cache_usage_p95: Option<f64>,
    /// Counter deltas over the window, summed over replicas.
    pub server_preemptions: Option<u64>,
    /// Prefix-cache hits / queries, in tokens, over the window.
    pub server_prefix_cache_hit_rate: Option<f64>,
    pub server_prompt_tokens: Option<u64>,
    pub server_generation_tokens: Option<u64>,
    pub server_requests: Option<u64>,
    pub server_generation_tokens_per_s: Option<f64>,
    /// Set by the caller from [`super::cross_check`].
    pub server_tokens_mismatch: Option<Mismatch>,
    /// Per quantity (combined and per replica) `{mean,max,p95,samples}` or `{delta,rate}`, and
    /// every raw counter's delta by `name{labels}` (histogram buckets and `_created` left out).
    pub server_metrics: serde_json::Value,
}

/// Both sides of one quantity that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub server: u64,
    pub client: u64,
}

/// `server_tokens_mismatch`: only the quantities that differ beyond the tolerance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_tokens: Option<Pair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Pair>,
}

/// One replica's part of a window.
struct Replica<'a> {
    samples: Vec<&'a Sample>,
    coverage: f64,
    /// Per gauge quantity: `(round, value)` in round order.
    gauges: BTreeMap<Quantity, Vec<(u64, f64)>>,
    counters: BTreeMap<Quantity, CounterStats>,
}

impl ScrapeLog {
    /// The statistics of the window `[from_ns, to_ns]` (the controller's `CLOCK_MONOTONIC`).
    pub fn stats(&self, from_ns: u64, to_ns: u64) -> ServerStats {
        let replicas: Vec<Replica> = (0..self.endpoints.len())
            .map(|r| self.replica(r, from_ns, to_ns))
            .collect();
        let gauges: BTreeMap<Quantity, GaugeStats> = Quantity::ALL
            .into_iter()
            .filter(|q| !q.is_counter())
            .filter_map(|q| {
                let points: Vec<&[(u64, f64)]> = replicas
                    .iter()
                    .filter_map(|r| r.gauges.get(&q).map(Vec::as_slice))
                    .collect();
                Some((q, gauge(combine(&points, q.averaged()))?))
            })
            .collect();
        let counters: BTreeMap<Quantity, CounterStats> = Quantity::ALL
            .into_iter()
            .filter_map(|q| {
                let each: Vec<&CounterStats> =
                    replicas.iter().filter_map(|r| r.counters.get(&q)).collect();
                (!each.is_empty()).then(|| {
                    let delta = each.iter().map(|c| c.delta).sum();
                    let rate = each.iter().map(|c| c.rate).sum::<Option<f64>>();
                    (q, CounterStats { delta, rate })
                })
            })
            .collect();
        let coverage = replicas
            .iter()
            .map(|r| r.coverage)
            .fold(if replicas.is_empty() { 0.0 } else { 1.0 }, f64::min);
        let no_sample = replicas.iter().all(|r| r.samples.is_empty());
        let details = self.details(&replicas, &gauges, &counters);
        let g = |q: Quantity, f: fn(&GaugeStats) -> f64| gauges.get(&q).map(f);
        let count = |q: Quantity| counters.get(&q).map(|c| c.delta.round().max(0.0) as u64);
        let delta = |q: Quantity| counters.get(&q).map(|c| c.delta);
        ServerStats {
            server_kind: self.kind,
            server_metrics_endpoints: self.endpoints.clone(),
            server_metrics_coverage: coverage,
            server_metrics_incomplete: no_sample || coverage < 0.9,
            server_metrics_note: self.note(&replicas, coverage),
            server_running_mean: g(Quantity::Running, |s| s.mean),
            server_running_max: g(Quantity::Running, |s| s.max),
            server_running_p95: g(Quantity::Running, |s| s.p95),
            server_waiting_mean: g(Quantity::Waiting, |s| s.mean),
            server_waiting_max: g(Quantity::Waiting, |s| s.max),
            server_waiting_p95: g(Quantity::Waiting, |s| s.p95),
            server_kv_cache_usage_mean: g(Quantity::KvCacheUsage, |s| s.mean),
            server_kv_cache_usage_max: g(Quantity::KvCacheUsage, |s| s.max),
            server_kv_cache_usage_p95: g(Quantity::KvCacheUsage, |s| s.p95),
            server_preemptions: count(Quantity::Preemptions),
            server_prefix_cache_hit_rate: delta(Quantity::PrefixCacheHits)
                .zip(delta(Quantity::PrefixCacheQueries).filter(|q| *q > 0.0))
                .map(|(h, q)| h / q),
            server_prompt_tokens: count(Quantity::PromptTokens),
            server_generation_tokens: count(Quantity::GenerationTokens),
            server_requests: count(Quantity::Requests),
            server_generation_tokens_per_s: counters
                .get(&Quantity::GenerationTokens)
                .and_then(|c| c.rate),
            server_tokens_mismatch: None,
            server_metrics: details,
        }
    }

    /// One replica's window: its samples, coverage, gauge points and counter deltas.
    fn replica(&self, r: usize, from: u64, to: u64) -> Replica<'_> {
        let all = self.replica_samples(r);
        let times: Vec<u64> = all.iter().map(|s| s.t_ns).collect();
        let max_gap = 3 * self.interval.as_nanos() as u64;
        let samples = select(&all, from, to);
        let mut replica = Replica {
            coverage: coverage(&times, from, to, max_gap),
            gauges: BTreeMap::new(),
            counters: BTreeMap::new(),
            samples,
        };
        let span_s = match (replica.samples.first(), replica.samples.last()) {
            (Some(a), Some(b)) if b.t_ns > a.t_ns => Some((b.t_ns - a.t_ns) as f64 / 1e9),
            _ => None,
        };
        for q in Quantity::ALL {
            let ids = self.source_ids(q, &replica.samples);
            if ids.is_empty() {
                continue;
            }
            if q.is_counter() {
                let delta: f64 = ids
                    .iter()
                    .filter_map(|&id| counter_delta(&replica.samples, id))
                    .sum();
                let rate = span_s.map(|s| delta / s);
                replica.counters.insert(q, CounterStats { delta, rate });
            } else {
                let points = gauge_points(&replica.samples, &ids, q.averaged());
                replica.gauges.insert(q, points);
            }
        }
        replica
    }

    /// The series feeding `q` in these samples: the first alternative present.
    fn source_ids(&self, q: Quantity, samples: &[&Sample]) -> Vec<u32> {
        for alternative in q.sources(self.kind) {
            let ids: Vec<u32> = self
                .ids_named(alternative)
                .into_iter()
                .filter(|&id| samples.iter().any(|s| s.get(id).is_some()))
                .collect();
            if !ids.is_empty() {
                return ids;
            }
        }
        Vec::new()
    }

    /// Every raw counter's delta in these samples, by `name{labels}`.
    fn raw_counters(&self, samples: &[&Sample]) -> BTreeMap<String, f64> {
        (0..self.series_count() as u32)
            .filter(|&id| {
                let k = self.key(id);
                k.counter && !k.name.ends_with("_bucket")
            })
            .filter_map(|id| Some((self.key(id).display(), counter_delta(samples, id)?)))
            .collect()
    }

    /// `server_metrics`: the combined quantities and raw counters, and each replica's.
    fn details(
        &self,
        replicas: &[Replica],
        gauges: &BTreeMap<Quantity, GaugeStats>,
        counters: &BTreeMap<Quantity, CounterStats>,
    ) -> serde_json::Value {
        let mut raw_total: BTreeMap<String, f64> = BTreeMap::new();
        let per_replica: Vec<serde_json::Value> = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let raw = self.raw_counters(&r.samples);
                for (k, v) in &raw {
                    *raw_total.entry(k.clone()).or_default() += v;
                }
                let gauges: BTreeMap<Quantity, GaugeStats> = r
                    .gauges
                    .iter()
                    .filter_map(|(q, p)| Some((*q, gauge(p.iter().map(|x| x.1).collect())?)))
                    .collect();
                json!({
                    "endpoint": self.endpoints[i],
                    "samples": r.samples.len(),
                    "coverage": r.coverage,
                    "quantities": quantities_json(&gauges, &r.counters),
                    "counters": raw,
                    "scrapes": self.failures[i],
                })
            })
            .collect();
        json!({
            "interval_s": self.interval.as_secs_f64(),
            "quantities": quantities_json(gauges, counters),
            "counters": raw_total,
            "replicas": per_replica,
        })
    }

    /// The failures, replicas without a sample, an unknown server.
    fn note(&self, replicas: &[Replica], coverage: f64) -> Option<String> {
        let mut parts: Vec<String> = self.failure_note().into_iter().collect();
        for (endpoint, r) in self.endpoints.iter().zip(replicas) {
            if r.samples.is_empty() {
                parts.push(format!("{endpoint}: no sample in the window"));
            }
        }
        if parts.is_empty() && coverage < 0.9 && !self.endpoints.is_empty() {
            parts.push(format!(
                "samples cover {:.0}% of the window",
                coverage * 100.0
            ));
        }
        if self.kind == ServerKind::Unknown && replicas.iter().any(|r| !r.samples.is_empty()) {
            parts.push(
                "unknown server (no vllm:, sglang:, llamacpp: or tgi_ metrics): raw counters only"
                    .into(),
            );
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl ServerStats {
    /// The keys when nothing was scraped (scraping off, or the endpoint did not answer a probe).
    pub fn absent(endpoints: Vec<String>, note: String) -> ServerStats {
        // no sample: the interval plays no part
        let mut s = ScrapeLog::new(endpoints, std::time::Duration::ZERO).stats(0, 0);
        s.server_metrics_note = Some(note);
        s
    }
}

fn quantities_json(
    gauges: &BTreeMap<Quantity, GaugeStats>,
    counters: &BTreeMap<Quantity, CounterStats>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (q, g) in gauges {
        m.insert(q.name().into(), json!(g));
    }
    for (q, c) in counters {
        m.insert(q.name().into(), json!(c));
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests;
