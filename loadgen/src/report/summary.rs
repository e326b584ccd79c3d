//! Everything computed from a run's records: counts, throughputs, length checks and the latency
//! distribution of every [`Metric`].

use std::collections::BTreeMap;

use super::cache::CacheUsage;
use super::metric::{GoodputBound, Metric};
use super::sessions::Sessions;
use crate::error::ErrorKind;
use crate::record::RequestRecord;
use crate::stats::Distribution;

/// Everything computed from a run's records.
#[derive(Clone, Debug)]
pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    pub failed_by_kind: BTreeMap<ErrorKind, usize>,
    pub failed_by_status: BTreeMap<u16, usize>,
    /// First message of each failure kind (for people).
    pub first_error: BTreeMap<ErrorKind, String>,
    /// Seconds from the first send to the last completion.
    pub duration_s: f64,
    pub total_input_tokens: u64,
    /// Sum of the targets of completed requests (compare with `total_input_tokens`).
    pub total_input_tokens_target: u64,
    pub total_output_tokens: u64,
    /// Reasoning tokens among the output tokens, where the server reported them
    /// (`completion_tokens_details.reasoning_tokens`); `None` when no request's usage did.
    pub total_reasoning_tokens: Option<u64>,
    /// Completed requests whose answer had no visible output (only reasoning or tool calls).
    pub no_visible_output: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_goodput: Option<f64>,
    /// Completed requests whose server-counted prompt differs from the target.
    pub input_len_mismatches: usize,
    /// Largest |server − target| prompt tokens.
    pub input_len_max_deviation: u32,
    /// Completed requests whose server output count differs from the client tokenizer's.
    pub output_len_mismatches: usize,
    /// Completed requests that reported no usage (output counted by the client).
    pub missing_usage: usize,
    /// The prompt tokens the server served from its prefix cache, by its usage.
    pub cache: CacheUsage,
    /// Completed requests whose every read carried the kernel's receive time.
    pub kernel_stamped: usize,
    /// Highest output tokens in any one-second window.
    pub max_output_tokens_per_s: f64,
    /// Most requests in flight at once.
    pub max_concurrent_requests: usize,
    pub metrics: BTreeMap<Metric, Distribution>,
    pub percentiles: Vec<f64>,
    /// A conversation run's sessions (`None` for single requests).
    pub sessions: Option<Sessions>,
}

impl Summary {
    /// The failures by kind with each kind's first error: `3 http (503 …); 1 timeout (…)`.
    pub fn failures_text(&self) -> String {
        self.failed_by_kind
            .iter()
            .map(|(k, n)| {
                format!(
                    "{n} {k} ({})",
                    self.first_error.get(k).map(String::as_str).unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Computes the summary of `records` (pooled: records of several workers may be concatenated).
pub fn summarize(
    records: &[RequestRecord],
    percentiles: &[f64],
    goodput: &[GoodputBound],
) -> Summary {
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
    let failures = Failures::of(records);
    let first_send = records.iter().map(|r| r.send_ns).min().unwrap_or(0);
    let last_end = records.iter().map(|r| r.end_ns).max().unwrap_or(0);
    let duration_s = last_end.saturating_sub(first_send) as f64 / 1e9;
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };

    let total_input_tokens: u64 = ok.iter().map(|r| r.prompt_tokens() as u64).sum();
    let total_input_tokens_target: u64 = ok.iter().map(|r| r.prompt_tokens_target as u64).sum();
    let total_output_tokens: u64 = ok.iter().map(|r| r.output_tokens() as u64).sum();

    let (samples, good) = samples(records, &ok, goodput);
    let metrics = samples
        .into_iter()
        .filter_map(|(m, v)| Distribution::of(v, percentiles).map(|d| (m, d)))
        .collect();

    Summary {
        completed: ok.len(),
        failed: records.len() - ok.len(),
        failed_by_kind: failures.by_kind,
        failed_by_status: failures.by_status,
        first_error: failures.first_error,
        duration_s,
        total_input_tokens,
        total_input_tokens_target,
        total_output_tokens,
        total_reasoning_tokens: ok
            .iter()
            .filter_map(|r| r.reasoning_tokens_server.map(u64::from))
            .reduce(|a, b| a + b),
        no_visible_output: ok.iter().filter(|r| r.first_visible_ns.is_none()).count(),
        request_throughput: per_s(ok.len() as f64),
        output_throughput: per_s(total_output_tokens as f64),
        total_token_throughput: per_s((total_input_tokens + total_output_tokens) as f64),
        request_goodput: (!goodput.is_empty()).then(|| per_s(good as f64)),
        input_len_mismatches: ok
            .iter()
            .filter(|r| r.prompt_tokens_server.is_some_and(|s| s != r.prompt_tokens_target))
            .count(),
        input_len_max_deviation: ok
            .iter()
            .filter_map(|r| r.prompt_tokens_server.map(|s| s.abs_diff(r.prompt_tokens_target)))
            .max()
            .unwrap_or(0),
        output_len_mismatches: ok
            .iter()
            .filter(|r| matches!((r.output_tokens_server, r.output_tokens_client), (Some(s), Some(c)) if s != c))
            .count(),
        missing_usage: ok.iter().filter(|r| r.output_tokens_server.is_none()).count(),
        cache: CacheUsage::of(ok.iter().copied()),
        kernel_stamped: ok.iter().filter(|r| r.kernel_rx_stamps).count(),
        max_output_tokens_per_s: max_tokens_per_second(&ok, first_send),
        max_concurrent_requests: max_in_flight(records),
        metrics,
        percentiles: percentiles.to_vec(),
        sessions: Sessions::of(records),
    }
}

/// The failed requests: counted by kind and by HTTP status, with each kind's first message.
struct Failures {
    by_kind: BTreeMap<ErrorKind, usize>,
    by_status: BTreeMap<u16, usize>,
    first_error: BTreeMap<ErrorKind, String>,
}

impl Failures {
    fn of(records: &[RequestRecord]) -> Failures {
        let mut f = Failures {
            by_kind: BTreeMap::new(),
            by_status: BTreeMap::new(),
            first_error: BTreeMap::new(),
        };
        for e in records.iter().filter_map(|r| r.error.as_ref()) {
            *f.by_kind.entry(e.kind).or_insert(0) += 1;
            if let Some(s) = e.status {
                *f.by_status.entry(s).or_insert(0) += 1;
            }
            f.first_error
                .entry(e.kind)
                .or_insert_with(|| e.message.clone());
        }
        f
    }
}

/// Every metric's samples in milliseconds, and how many completed requests meet every goodput
/// bound. The latencies are the completed requests' (`ok`); queue time and dispatch lag are
/// every request's but the cancelled ones'.
fn samples(
    records: &[RequestRecord],
    ok: &[&RequestRecord],
    goodput: &[GoodputBound],
) -> (BTreeMap<Metric, Vec<f64>>, usize) {
    let ms = |ns: f64| ns / 1e6;
    let mut samples: BTreeMap<Metric, Vec<f64>> =
        Metric::ALL.iter().map(|m| (*m, Vec::new())).collect();
    let mut good = 0usize;
    for r in ok {
        let ttft = r.ttft_ns().map(|v| ms(v as f64));
        let ttfo = r.ttfo_ns().map(|v| ms(v as f64));
        let tpot = r.tpot_ns().map(ms);
        let e2el = r.e2el_ns().map(|v| ms(v as f64));
        samples.get_mut(&Metric::Ttft).unwrap().extend(ttft);
        samples.get_mut(&Metric::Ttfo).unwrap().extend(ttfo);
        samples.get_mut(&Metric::Tpot).unwrap().extend(tpot);
        samples.get_mut(&Metric::E2el).unwrap().extend(e2el);
        samples
            .get_mut(&Metric::Itl)
            .unwrap()
            .extend(r.itl_ns().map(|v| ms(v as f64)));
        samples
            .get_mut(&Metric::ItlPerToken)
            .unwrap()
            .extend(r.itl_per_token_ns().into_iter().map(ms));
        if !goodput.is_empty() {
            good += usize::from(meets(goodput, [ttft, ttfo, tpot, e2el]));
        }
    }
    for r in records.iter().filter(|r| {
        r.error
            .as_ref()
            .is_none_or(|e| e.kind != ErrorKind::Cancelled)
    }) {
        samples
            .get_mut(&Metric::Queue)
            .unwrap()
            .push(ms(r.queue_ns() as f64));
        samples
            .get_mut(&Metric::DispatchLag)
            .unwrap()
            .push(ms(r.dispatch_lag_ns() as f64));
    }
    (samples, good)
}

/// Whether a completed request meets every goodput bound (milliseconds).
fn meets(goodput: &[GoodputBound], [ttft, ttfo, tpot, e2el]: [Option<f64>; 4]) -> bool {
    goodput.iter().all(|b| {
        let v = match b.metric {
            Metric::Ttft => ttft,
            Metric::Ttfo => ttfo,
            // vLLM counts a request without TPOT (one token) as meeting the TPOT bound
            Metric::Tpot => Some(tpot.unwrap_or(0.0)),
            Metric::E2el => e2el,
            _ => None,
        };
        v.is_some_and(|v| v <= b.max_ms)
    })
}

/// Output tokens per one-second bucket (from the chunk timestamps), maximum over buckets.
fn max_tokens_per_second(ok: &[&RequestRecord], start: u64) -> f64 {
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for r in ok {
        for c in &r.chunks {
            *buckets
                .entry(c.t_ns.saturating_sub(start) / 1_000_000_000)
                .or_insert(0) += c.tokens.max(1) as u64;
        }
    }
    buckets.values().copied().max().unwrap_or(0) as f64
}

fn max_in_flight(records: &[RequestRecord]) -> usize {
    let mut ev: Vec<(u64, i32)> = Vec::with_capacity(records.len() * 2);
    for r in records.iter().filter(|r| r.end_ns > r.send_ns) {
        ev.push((r.send_ns, 1));
        ev.push((r.end_ns, -1));
    }
    ev.sort_unstable(); // ends (-1) before starts (+1) at the same instant
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RequestError;
    use crate::record::ContentChunk;
    use crate::report::parse_goodput;

    fn rec(i: u64, send: u64, chunks: &[u64], out: u32) -> RequestRecord {
        RequestRecord {
            index: i,
            dispatch_ns: send,
            send_ns: send,
            chunks: chunks
                .iter()
                .map(|&t| ContentChunk {
                    t_ns: t,
                    text_end: 0,
                    tokens: 1,
                })
                .collect(),
            last_choice_ns: chunks.last().copied(),
            end_ns: chunks.last().copied().unwrap_or(send),
            prompt_tokens_target: 10,
            prompt_tokens_server: Some(10),
            output_tokens_target: out,
            output_tokens_server: Some(out),
            ..Default::default()
        }
    }

    #[test]
    fn totals_throughput_goodput_and_failures() {
        let ms = 1_000_000;
        let mut bad = rec(2, 0, &[], 0);
        bad.error = Some(RequestError {
            kind: ErrorKind::Http5xx,
            status: Some(500),
            message: "boom".into(),
        });
        bad.end_ns = 10 * ms;
        let records = vec![
            rec(0, 0, &[100 * ms, 200 * ms, 300 * ms], 3), // ttft 100, tpot 100
            rec(1, 0, &[500 * ms, 1000 * ms, 2000 * ms], 3), // ttft 500, tpot 750; ends at 2 s
            bad,
        ];
        let goodput = parse_goodput("ttft:400 tpot:200").unwrap();
        let s = summarize(&records, &[50.0, 99.0], &goodput);
        assert_eq!((s.completed, s.failed), (2, 1));
        assert_eq!(s.failed_by_kind[&ErrorKind::Http5xx], 1);
        assert_eq!(s.failed_by_status[&500], 1);
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(s.total_output_tokens, 6);
        assert_eq!(s.output_throughput, 3.0);
        assert_eq!(s.request_goodput, Some(0.5)); // only request 0 meets both bounds
        let ttft = &s.metrics[&Metric::Ttft];
        assert_eq!((ttft.mean, ttft.median), (300.0, 300.0));
        assert_eq!(s.metrics[&Metric::Tpot].mean, 425.0);
        assert_eq!(s.metrics[&Metric::Itl].count, 4);
        assert_eq!(s.max_concurrent_requests, 3);
    }
}
