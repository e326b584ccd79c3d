//! Everything computed from a run's records: counts, throughputs, length checks and the latency
//! distribution of every [`Metric`].

use std::collections::BTreeMap;

use super::cache::CacheUsage;
use super::metric::{GoodputBound, Metric};
use super::sessions::Sessions;
use crate::error::ErrorKind;
use crate::record::RequestRecord;
use crate::stats::Distribution;
use crate::store::Records;

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
/// Two passes over the records; only the metrics' samples are held (a [`RecordStore`] may
/// keep the records themselves on disk). After a pass over a [`RecordStore`], check it
/// ([`RecordStore::check`]): a read error ends the pass early.
///
/// [`RecordStore`]: crate::store::RecordStore
/// [`RecordStore::check`]: crate::store::RecordStore::check
pub fn summarize(
    records: &(impl Records + ?Sized),
    percentiles: &[f64],
    goodput: &[GoodputBound],
) -> Summary {
    summarize_holding(records, percentiles, goodput, CHUNK_SAMPLES_HELD)
}

/// The most per-chunk samples (ITL and per-token ITL together, 8 bytes each) held to compute
/// their distributions: 16 M, 128 MB. A run with more (e.g. 160 requests of 100k tokens) gets
/// them by [`Distribution::of_replayed`] over the records instead: the same percentiles, five
/// more passes over the records (read back from disk where they spilled), no samples held.
pub const CHUNK_SAMPLES_HELD: usize = 16 << 20;

/// [`summarize`] holding at most `held` per-chunk samples.
pub fn summarize_holding(
    records: &(impl Records + ?Sized),
    percentiles: &[f64],
    goodput: &[GoodputBound],
    held: usize,
) -> Summary {
    let ms = |ns: f64| ns / 1e6;
    let mut replay_chunks = false;
    let mut samples: BTreeMap<Metric, Vec<f64>> =
        Metric::ALL.iter().map(|m| (*m, Vec::new())).collect();
    let mut failures = Failures::default();
    let (mut n, mut ok) = (0usize, 0usize);
    let (mut first_send, mut last_end) = (u64::MAX, 0u64);
    let (mut total_input_tokens, mut total_input_tokens_target, mut total_output_tokens) =
        (0u64, 0u64, 0u64);
    let mut total_reasoning_tokens: Option<u64> = None;
    let (mut no_visible_output, mut good) = (0usize, 0usize);
    let (mut input_len_mismatches, mut input_len_max_deviation) = (0usize, 0u32);
    let (mut output_len_mismatches, mut missing_usage, mut kernel_stamped) = (0, 0, 0);
    let mut cache = CacheUsage::default();
    let mut in_flight: Vec<(u64, i32)> = Vec::new();
    let mut sessions = Sessions::builder();
    for r in records.each() {
        let r: &RequestRecord = &r;
        n += 1;
        first_send = first_send.min(r.send_ns);
        last_end = last_end.max(r.end_ns);
        failures.add(r);
        sessions.add(r);
        if r.end_ns > r.send_ns {
            in_flight.push((r.send_ns, 1));
            in_flight.push((r.end_ns, -1));
        }
        if r.error
            .as_ref()
            .is_none_or(|e| e.kind != ErrorKind::Cancelled)
        {
            samples
                .get_mut(&Metric::Queue)
                .unwrap()
                .push(ms(r.queue_ns() as f64));
            samples
                .get_mut(&Metric::DispatchLag)
                .unwrap()
                .push(ms(r.dispatch_lag_ns() as f64));
        }
        if !r.ok() {
            continue;
        }
        ok += 1;
        total_input_tokens += r.prompt_tokens() as u64;
        total_input_tokens_target += r.prompt_tokens_target as u64;
        total_output_tokens += r.output_tokens() as u64;
        if let Some(t) = r.reasoning_tokens_server {
            *total_reasoning_tokens.get_or_insert(0) += u64::from(t);
        }
        no_visible_output += usize::from(r.first_visible_ns.is_none());
        if let Some(s) = r.prompt_tokens_server {
            input_len_mismatches += usize::from(s != r.prompt_tokens_target);
            input_len_max_deviation =
                input_len_max_deviation.max(s.abs_diff(r.prompt_tokens_target));
        }
        output_len_mismatches += usize::from(
            matches!((r.output_tokens_server, r.output_tokens_client), (Some(s), Some(c)) if s != c),
        );
        missing_usage += usize::from(r.output_tokens_server.is_none());
        cache.add(r);
        kernel_stamped += usize::from(r.kernel_rx_stamps);
        good += usize::from(add_samples(&mut samples, r, goodput, replay_chunks));
        if !replay_chunks
            && samples[&Metric::Itl].len() + samples[&Metric::ItlPerToken].len() > held
        {
            // too many to hold: computed from the records below
            replay_chunks = true;
            for m in [Metric::Itl, Metric::ItlPerToken] {
                samples.insert(m, Vec::new());
            }
        }
    }
    if n == 0 {
        first_send = 0;
    }
    let duration_s = last_end.saturating_sub(first_send) as f64 / 1e9;
    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let mut metrics: BTreeMap<Metric, Distribution> = samples
        .into_iter()
        .filter_map(|(m, v)| Distribution::of(v, percentiles).map(|d| (m, d)))
        .collect();
    if replay_chunks {
        let mut itl = |f: &mut dyn FnMut(f64)| {
            for r in records.each().filter(|r| r.ok()) {
                r.itl_ns().for_each(|v| f(ms(v as f64)));
            }
        };
        metrics.extend(Distribution::of_replayed(&mut itl, percentiles).map(|d| (Metric::Itl, d)));
        let mut per_token = |f: &mut dyn FnMut(f64)| {
            for r in records.each().filter(|r| r.ok()) {
                r.itl_per_token_ns().into_iter().for_each(|v| f(ms(v)));
            }
        };
        metrics.extend(
            Distribution::of_replayed(&mut per_token, percentiles)
                .map(|d| (Metric::ItlPerToken, d)),
        );
    }

    Summary {
        completed: ok,
        failed: n - ok,
        failed_by_kind: failures.by_kind,
        failed_by_status: failures.by_status,
        first_error: failures.first_error,
        duration_s,
        total_input_tokens,
        total_input_tokens_target,
        total_output_tokens,
        total_reasoning_tokens,
        no_visible_output,
        request_throughput: per_s(ok as f64),
        output_throughput: per_s(total_output_tokens as f64),
        total_token_throughput: per_s((total_input_tokens + total_output_tokens) as f64),
        request_goodput: (!goodput.is_empty()).then(|| per_s(good as f64)),
        input_len_mismatches,
        input_len_max_deviation,
        output_len_mismatches,
        missing_usage,
        cache,
        kernel_stamped,
        max_output_tokens_per_s: max_tokens_per_second(records, first_send),
        max_concurrent_requests: max_in_flight(in_flight),
        metrics,
        percentiles: percentiles.to_vec(),
        sessions: sessions.finish(),
    }
}

/// The failed requests: counted by kind and by HTTP status, with each kind's first message.
#[derive(Default)]
struct Failures {
    by_kind: BTreeMap<ErrorKind, usize>,
    by_status: BTreeMap<u16, usize>,
    first_error: BTreeMap<ErrorKind, String>,
}

impl Failures {
    fn add(&mut self, r: &RequestRecord) {
        let Some(e) = r.error.as_ref() else {
            return;
        };
        *self.by_kind.entry(e.kind).or_insert(0) += 1;
        if let Some(s) = e.status {
            *self.by_status.entry(s).or_insert(0) += 1;
        }
        self.first_error
            .entry(e.kind)
            .or_insert_with(|| e.message.clone());
    }
}

/// Adds a completed request's samples (milliseconds); returns whether it meets every goodput
/// bound (false without bounds).
fn add_samples(
    samples: &mut BTreeMap<Metric, Vec<f64>>,
    r: &RequestRecord,
    goodput: &[GoodputBound],
    skip_chunks: bool,
) -> bool {
    let ms = |ns: f64| ns / 1e6;
    let ttft = r.ttft_ns().map(|v| ms(v as f64));
    let ttfo = r.ttfo_ns().map(|v| ms(v as f64));
    let tpot = r.tpot_ns().map(ms);
    let e2el = r.e2el_ns().map(|v| ms(v as f64));
    samples.get_mut(&Metric::Ttft).unwrap().extend(ttft);
    samples.get_mut(&Metric::Ttfo).unwrap().extend(ttfo);
    samples.get_mut(&Metric::Tpot).unwrap().extend(tpot);
    samples.get_mut(&Metric::E2el).unwrap().extend(e2el);
    if !skip_chunks {
        samples
            .get_mut(&Metric::Itl)
            .unwrap()
            .extend(r.itl_ns().map(|v| ms(v as f64)));
        samples
            .get_mut(&Metric::ItlPerToken)
            .unwrap()
            .extend(r.itl_per_token_ns().into_iter().map(ms));
    }
    !goodput.is_empty() && meets(goodput, [ttft, ttfo, tpot, e2el])
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

/// Output tokens per one-second bucket (from the chunk timestamps of the completed requests),
/// maximum over buckets.
fn max_tokens_per_second(records: &(impl Records + ?Sized), start: u64) -> f64 {
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for r in records.each().filter(|r| r.ok()) {
        for c in &r.chunks {
            *buckets
                .entry(c.t_ns.saturating_sub(start) / 1_000_000_000)
                .or_insert(0) += c.tokens.max(1) as u64;
        }
    }
    buckets.values().copied().max().unwrap_or(0) as f64
}

/// The most requests in flight at once, from +1 at each send and −1 at each end.
fn max_in_flight(mut ev: Vec<(u64, i32)>) -> usize {
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

    /// Past the held samples, ITL comes from replaying the records: the same distribution (exact
    /// percentiles bit for bit), with a failed request's chunks left out as before.
    #[test]
    fn chunk_metrics_past_the_held_samples_are_the_same() {
        let mut recs: Vec<RequestRecord> = (0..40u64)
            .map(|i| {
                let send = i * 3_000_000;
                // uneven gaps, some repeated: 1.0 to 4.9 ms
                let mut t = send + 20_000_000;
                let chunks: Vec<u64> = (0..50u64)
                    .map(|k| {
                        t += 1_000_000 + ((i * 7 + k * 13) % 40) * 100_000;
                        t
                    })
                    .collect();
                rec(i, send, &chunks, 50)
            })
            .collect();
        recs[3].error = Some(RequestError {
            kind: ErrorKind::Timeout,
            status: None,
            message: "late".into(),
        });
        let pct = [50.0, 90.0, 99.0, 99.9];
        let held = summarize(&recs, &pct, &[]);
        let replayed = summarize_holding(&recs, &pct, &[], 100);
        for m in [Metric::Itl, Metric::ItlPerToken] {
            let (a, b) = (&held.metrics[&m], &replayed.metrics[&m]);
            assert_eq!(a.count, 39 * 49, "{m:?}");
            assert_eq!(
                (a.count, &a.percentiles, a.median),
                (b.count, &b.percentiles, b.median)
            );
            assert_eq!((a.min, a.max), (b.min, b.max));
            assert!((a.mean - b.mean).abs() < 1e-9 && (a.std - b.std).abs() < 1e-9);
        }
        // the per-request metrics are untouched
        assert_eq!(held.metrics[&Metric::Tpot], replayed.metrics[&Metric::Tpot]);
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
