//! Metrics of a run, computed from its records, and their two renderings: the vLLM-compatible
//! result JSON (a superset of `vllm bench serve --save-result`'s keys) and the printed summary.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::ErrorKind;
use crate::record::RequestRecord;
use crate::runner::ChunkTokens;
use crate::stats::{Distribution, percentile_label};

/// A per-request goodput bound (`--goodput ttft:400 tpot:50`, milliseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoodputBound {
    pub metric: Metric,
    pub max_ms: f64,
}

/// The latency metrics of the result, each a distribution in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Time to first token.
    Ttft,
    /// Time per output token after the first.
    Tpot,
    /// Gaps between content chunks, pooled.
    Itl,
    /// End-to-end latency.
    E2el,
    /// Gaps spread over the tokens each chunk carried, pooled.
    ItlPerToken,
    /// Time waiting for a concurrency slot in the client.
    Queue,
    /// How late the open-loop schedule released requests.
    DispatchLag,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Ttft,
        Metric::Tpot,
        Metric::Itl,
        Metric::E2el,
        Metric::ItlPerToken,
        Metric::Queue,
        Metric::DispatchLag,
    ];

    /// The name used in JSON keys (`mean_<name>_ms`).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Tpot => "tpot",
            Metric::Itl => "itl",
            Metric::E2el => "e2el",
            Metric::ItlPerToken => "itl_per_token",
            Metric::Queue => "queue",
            Metric::DispatchLag => "dispatch_lag",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Ttft => "Time to First Token",
            Metric::Tpot => "Time per Output Token (excl. 1st token)",
            Metric::Itl => "Inter-token Latency",
            Metric::E2el => "End-to-end Latency",
            Metric::ItlPerToken => "Inter-token Latency per token",
            Metric::Queue => "Client queue time",
            Metric::DispatchLag => "Dispatch lag (open loop)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Metric::Ttft => "TTFT",
            Metric::Tpot => "TPOT",
            Metric::Itl => "ITL",
            Metric::E2el => "E2EL",
            Metric::ItlPerToken => "ITL/token",
            Metric::Queue => "queue",
            Metric::DispatchLag => "lag",
        }
    }

    /// Parses a goodput/threshold key (`ttft`, `tpot`, `itl`, `e2el`).
    pub fn parse(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// Parses `--goodput "ttft:400 tpot:50"` (milliseconds; keys ttft, tpot, e2el).
pub fn parse_goodput(spec: &str) -> Result<Vec<GoodputBound>, String> {
    let mut out = Vec::new();
    for item in spec.split([' ', ',']).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once(':').ok_or_else(|| {
            format!("--goodput: {item:?} is not KEY:MILLISECONDS (e.g. ttft:400)")
        })?;
        let metric = match k {
            "ttft" => Metric::Ttft,
            "tpot" => Metric::Tpot,
            "e2el" => Metric::E2el,
            _ => {
                return Err(format!(
                    "--goodput: unknown key {k:?} (expected ttft, tpot or e2el)"
                ));
            }
        };
        let max_ms: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| *x > 0.0 && x.is_finite())
            .ok_or_else(|| {
                format!("--goodput: {k}:{v}: the bound must be a positive number of milliseconds")
            })?;
        out.push(GoodputBound { metric, max_ms });
    }
    if out.is_empty() {
        return Err(format!(
            "--goodput: no bound in {spec:?} (expected e.g. \"ttft:400 tpot:50\")"
        ));
    }
    Ok(out)
}

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
    /// Completed requests whose every read carried the kernel's receive time.
    pub kernel_stamped: usize,
    /// Highest output tokens in any one-second window.
    pub max_output_tokens_per_s: f64,
    /// Most requests in flight at once.
    pub max_concurrent_requests: usize,
    pub metrics: BTreeMap<Metric, Distribution>,
    pub percentiles: Vec<f64>,
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
    let mut failed_by_kind = BTreeMap::new();
    let mut failed_by_status = BTreeMap::new();
    let mut first_error = BTreeMap::new();
    for e in records.iter().filter_map(|r| r.error.as_ref()) {
        *failed_by_kind.entry(e.kind).or_insert(0) += 1;
        if let Some(s) = e.status {
            *failed_by_status.entry(s).or_insert(0) += 1;
        }
        first_error
            .entry(e.kind)
            .or_insert_with(|| e.message.clone());
    }
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

    let ms = |ns: f64| ns / 1e6;
    let mut samples: BTreeMap<Metric, Vec<f64>> =
        Metric::ALL.iter().map(|m| (*m, Vec::new())).collect();
    let mut good = 0usize;
    for r in &ok {
        let ttft = r.ttft_ns().map(|v| ms(v as f64));
        let tpot = r.tpot_ns().map(ms);
        let e2el = r.e2el_ns().map(|v| ms(v as f64));
        samples.get_mut(&Metric::Ttft).unwrap().extend(ttft);
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
            let meets = goodput.iter().all(|b| {
                let v = match b.metric {
                    Metric::Ttft => ttft,
                    // vLLM counts a request without TPOT (one token) as meeting the TPOT bound
                    Metric::Tpot => Some(tpot.unwrap_or(0.0)),
                    Metric::E2el => e2el,
                    _ => None,
                };
                v.is_some_and(|v| v <= b.max_ms)
            });
            good += usize::from(meets);
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
    let metrics = samples
        .into_iter()
        .filter_map(|(m, v)| Distribution::of(v, percentiles).map(|d| (m, d)))
        .collect();

    Summary {
        completed: ok.len(),
        failed: records.len() - ok.len(),
        failed_by_kind,
        failed_by_status,
        first_error,
        duration_s,
        total_input_tokens,
        total_input_tokens_target,
        total_output_tokens,
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
        kernel_stamped: ok.iter().filter(|r| r.kernel_rx_stamps).count(),
        max_output_tokens_per_s: max_tokens_per_second(&ok, first_send),
        max_concurrent_requests: max_in_flight(records),
        metrics,
        percentiles: percentiles.to_vec(),
    }
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

/// Run facts that are not computed from records.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub backend: String,
    pub endpoint: String,
    pub model_id: String,
    pub tokenizer_id: String,
    pub num_prompts: usize,
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub warmup_requests: usize,
    pub warmup_failed: usize,
    pub not_sent: usize,
    pub chunk_tokens: ChunkTokens,
    /// The target identified itself as `benchctl sim` (a simulator, not a real model).
    pub target_is_simulator: bool,
    /// Wall-clock start, local time.
    pub date: chrono::DateTime<chrono::Local>,
}

/// The result JSON: vLLM's keys (same names, same units) followed by benchctl's additions.
pub fn result_json(
    info: &RunInfo,
    s: &Summary,
    records: &[RequestRecord],
    detailed: bool,
) -> Value {
    let mut o = Map::new();
    o.insert(
        "date".into(),
        json!(info.date.format("%Y%m%d-%H%M%S").to_string()),
    );
    o.insert("backend".into(), json!(info.backend));
    o.insert("model_id".into(), json!(info.model_id));
    o.insert("tokenizer_id".into(), json!(info.tokenizer_id));
    o.insert("num_prompts".into(), json!(info.num_prompts));
    o.insert(
        "request_rate".into(),
        if info.request_rate.is_finite() {
            json!(info.request_rate)
        } else {
            json!("inf")
        },
    );
    o.insert("burstiness".into(), json!(info.burstiness));
    o.insert("max_concurrency".into(), json!(info.max_concurrency));
    o.insert("duration".into(), json!(s.duration_s));
    o.insert("completed".into(), json!(s.completed));
    o.insert("failed".into(), json!(s.failed));
    o.insert("total_input_tokens".into(), json!(s.total_input_tokens));
    o.insert("total_output_tokens".into(), json!(s.total_output_tokens));
    o.insert("request_throughput".into(), json!(s.request_throughput));
    o.insert("request_goodput".into(), json!(s.request_goodput));
    o.insert("output_throughput".into(), json!(s.output_throughput));
    o.insert(
        "total_token_throughput".into(),
        json!(s.total_token_throughput),
    );
    o.insert(
        "max_output_tokens_per_s".into(),
        json!(s.max_output_tokens_per_s),
    );
    o.insert(
        "max_concurrent_requests".into(),
        json!(s.max_concurrent_requests),
    );
    for m in Metric::ALL {
        let k = m.key();
        let d = s.metrics.get(&m);
        o.insert(format!("mean_{k}_ms"), json!(d.map(|d| d.mean)));
        o.insert(format!("median_{k}_ms"), json!(d.map(|d| d.median)));
        o.insert(format!("std_{k}_ms"), json!(d.map(|d| d.std)));
        for &p in &s.percentiles {
            o.insert(
                format!("p{}_{k}_ms", percentile_label(p)),
                json!(d.and_then(|d| d.get(p))),
            );
        }
    }
    if detailed {
        let ok = records.iter().filter(|r| r.ok());
        o.insert(
            "input_lens".into(),
            ok.clone().map(|r| r.prompt_tokens()).collect(),
        );
        o.insert(
            "output_lens".into(),
            ok.clone().map(|r| r.output_tokens()).collect(),
        );
        o.insert(
            "ttfts".into(),
            ok.clone()
                .map(|r| r.ttft_ns().map(|v| v as f64 / 1e9))
                .collect(),
        );
        o.insert(
            "itls".into(),
            ok.clone()
                .map(|r| r.itl_ns().map(|v| v as f64 / 1e9).collect::<Vec<_>>())
                .collect(),
        );
        o.insert(
            "generated_texts".into(),
            ok.map(|r| r.text.clone()).collect(),
        );
        o.insert(
            "errors".into(),
            records
                .iter()
                .map(|r| r.error.as_ref().map(|e| e.to_string()).unwrap_or_default())
                .collect(),
        );
    }
    // benchctl's additions
    o.insert("benchctl_version".into(), json!(env!("CARGO_PKG_VERSION")));
    o.insert("endpoint".into(), json!(info.endpoint));
    o.insert(
        "target_is_simulator".into(),
        json!(info.target_is_simulator),
    );
    o.insert("percentiles".into(), json!(s.percentiles));
    o.insert("warmup_requests".into(), json!(info.warmup_requests));
    o.insert("warmup_failed".into(), json!(info.warmup_failed));
    o.insert("not_sent".into(), json!(info.not_sent));
    o.insert(
        "failed_by_kind".into(),
        Value::Object(
            s.failed_by_kind
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect(),
        ),
    );
    o.insert(
        "failed_by_status".into(),
        Value::Object(
            s.failed_by_status
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        ),
    );
    o.insert(
        "first_error".into(),
        Value::Object(
            s.first_error
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect(),
        ),
    );
    o.insert(
        "total_input_tokens_target".into(),
        json!(s.total_input_tokens_target),
    );
    o.insert("input_len_mismatches".into(), json!(s.input_len_mismatches));
    o.insert(
        "input_len_max_deviation".into(),
        json!(s.input_len_max_deviation),
    );
    o.insert(
        "output_len_mismatches".into(),
        json!(s.output_len_mismatches),
    );
    o.insert("missing_usage".into(), json!(s.missing_usage));
    o.insert("chunk_tokens".into(), json!(info.chunk_tokens));
    let stamps = if s.completed > 0 && s.kernel_stamped == s.completed {
        "CLOCK_MONOTONIC; each read stamped with the kernel's receive time of its last byte (SO_TIMESTAMPING), before parsing"
    } else if s.kernel_stamped > 0 {
        "CLOCK_MONOTONIC; reads stamped with the kernel's receive time where the socket gave one, else when the read returned; before parsing"
    } else {
        "CLOCK_MONOTONIC, taken when each read of the response returned, before parsing"
    };
    o.insert("timestamps".into(), json!(stamps));
    Value::Object(o)
}

/// The printed summary, laid out like `vllm bench serve`'s.
pub fn render_text(info: &RunInfo, s: &Summary) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let line = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "{k:<40} {v}");
    };
    let _ = writeln!(t, "{:=^50}", " Serving Benchmark Result ");
    if info.target_is_simulator {
        let _ = writeln!(
            t,
            "TARGET IS `benchctl sim`, A SIMULATOR: not a real model's numbers"
        );
    }
    line(&mut t, "Successful requests:", s.completed.to_string());
    line(&mut t, "Failed requests:", s.failed.to_string());
    for (k, n) in &s.failed_by_kind {
        line(
            &mut t,
            &format!("  {k}:"),
            format!(
                "{n}  ({})",
                s.first_error.get(k).map(String::as_str).unwrap_or("")
            ),
        );
    }
    if let Some(c) = info.max_concurrency {
        line(&mut t, "Maximum request concurrency:", c.to_string());
    }
    if info.request_rate.is_finite() {
        line(
            &mut t,
            "Request rate configured (RPS):",
            format!("{:.2}", info.request_rate),
        );
    }
    line(
        &mut t,
        "Benchmark duration (s):",
        format!("{:.2}", s.duration_s),
    );
    line(
        &mut t,
        "Total input tokens:",
        s.total_input_tokens.to_string(),
    );
    line(
        &mut t,
        "Total generated tokens:",
        s.total_output_tokens.to_string(),
    );
    line(
        &mut t,
        "Request throughput (req/s):",
        format!("{:.2}", s.request_throughput),
    );
    if let Some(g) = s.request_goodput {
        line(&mut t, "Request goodput (req/s):", format!("{g:.2}"));
    }
    line(
        &mut t,
        "Output token throughput (tok/s):",
        format!("{:.2}", s.output_throughput),
    );
    line(
        &mut t,
        "Peak output token throughput (tok/s):",
        format!("{:.2}", s.max_output_tokens_per_s),
    );
    line(
        &mut t,
        "Peak concurrent requests:",
        s.max_concurrent_requests.to_string(),
    );
    line(
        &mut t,
        "Total Token throughput (tok/s):",
        format!("{:.2}", s.total_token_throughput),
    );
    if s.input_len_mismatches > 0 {
        line(
            &mut t,
            "Prompts off their target length:",
            format!(
                "{} (max deviation {} tokens)",
                s.input_len_mismatches, s.input_len_max_deviation
            ),
        );
    }
    if s.output_len_mismatches > 0 {
        line(
            &mut t,
            "Server/client output count mismatches:",
            s.output_len_mismatches.to_string(),
        );
    }
    for m in Metric::ALL {
        let Some(d) = s.metrics.get(&m) else { continue };
        if m == Metric::DispatchLag && !info.request_rate.is_finite() {
            continue;
        }
        // With one token per chunk the per-token ITL is the ITL: print it once.
        if m == Metric::ItlPerToken && s.metrics.get(&Metric::Itl) == Some(d) {
            continue;
        }
        let _ = writeln!(t, "{:-^50}", m.title());
        line(
            &mut t,
            &format!("Mean {} (ms):", m.short()),
            format!("{:.2}", d.mean),
        );
        line(
            &mut t,
            &format!("Median {} (ms):", m.short()),
            format!("{:.2}", d.median),
        );
        for (p, v) in d.percentiles.iter().filter(|(p, _)| *p != 50.0) {
            line(
                &mut t,
                &format!("P{} {} (ms):", percentile_label(*p), m.short()),
                format!("{v:.2}"),
            );
        }
    }
    let _ = writeln!(t, "{}", "=".repeat(50));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RequestError;
    use crate::record::ContentChunk;

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

    #[test]
    fn goodput_parse_errors_name_the_problem() {
        assert!(
            parse_goodput("ttft=400")
                .unwrap_err()
                .contains("KEY:MILLISECONDS")
        );
        assert!(parse_goodput("foo:1").unwrap_err().contains("foo"));
        assert!(parse_goodput("ttft:-3").unwrap_err().contains("positive"));
    }

    #[test]
    fn json_has_vllm_keys_and_null_for_no_samples() {
        let info = RunInfo {
            backend: "vllm".into(),
            endpoint: "/v1/completions".into(),
            model_id: "m".into(),
            tokenizer_id: "t".into(),
            num_prompts: 1,
            request_rate: f64::INFINITY,
            burstiness: 1.0,
            max_concurrency: Some(4),
            warmup_requests: 0,
            warmup_failed: 0,
            not_sent: 0,
            chunk_tokens: ChunkTokens::OnePerChunk,
            target_is_simulator: false,
            date: chrono::Local::now(),
        };
        let s = summarize(&[], &[99.0], &[]);
        let j = result_json(&info, &s, &[], false);
        assert_eq!(j["request_rate"], "inf");
        assert!(j["mean_ttft_ms"].is_null());
        assert!(j.get("p99_e2el_ms").is_some());
        assert!(j["request_goodput"].is_null());
    }
}
