//! The result JSON: vLLM's keys (a superset of `vllm bench serve --save-result`'s, same names,
//! same units) followed by benchctl's additions.

use serde_json::{Map, Value, json};

use super::RunInfo;
use super::metric::Metric;
use super::summary::Summary;
use crate::stats::percentile_label;
use crate::store::Records;

/// The result JSON: vLLM's keys (same names, same units) followed by benchctl's additions.
pub fn result_json(
    info: &RunInfo,
    s: &Summary,
    records: &(impl Records + ?Sized),
    detailed: bool,
) -> Value {
    let mut o = Map::new();
    insert_run_keys(&mut o, info, s);
    insert_distribution_keys(&mut o, s);
    if detailed {
        insert_per_request_keys(&mut o, records);
    }
    insert_benchctl_keys(&mut o, info, s);
    Value::Object(o)
}

/// vLLM's run facts, counts and throughputs.
fn insert_run_keys(o: &mut Map<String, Value>, info: &RunInfo, s: &Summary) {
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
}

/// `mean_`, `median_`, `std_` and `p<N>_` of every metric: `null` where it has no samples.
fn insert_distribution_keys(o: &mut Map<String, Value>, s: &Summary) {
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
}

/// `--save-detailed`: vLLM's per-request lists (one pass each over the records).
fn insert_per_request_keys(o: &mut Map<String, Value>, records: &(impl Records + ?Sized)) {
    let ok = || records.each().filter(|r| r.ok());
    o.insert(
        "input_lens".into(),
        ok().map(|r| r.prompt_tokens()).collect(),
    );
    o.insert(
        "output_lens".into(),
        ok().map(|r| r.output_tokens()).collect(),
    );
    o.insert(
        "ttfts".into(),
        ok().map(|r| r.ttft_ns().map(|v| v as f64 / 1e9)).collect(),
    );
    o.insert(
        "itls".into(),
        ok().map(|r| r.itl_ns().map(|v| v as f64 / 1e9).collect::<Vec<_>>())
            .collect(),
    );
    o.insert(
        "generated_texts".into(),
        ok().map(|r| r.text.clone()).collect(),
    );
    o.insert(
        "errors".into(),
        records
            .each()
            .map(|r| r.error.as_ref().map(|e| e.to_string()).unwrap_or_default())
            .collect(),
    );
}

/// Reasoning against visible output: token counts where the server reported them.
fn insert_reasoning_keys(o: &mut Map<String, Value>, s: &Summary) {
    o.insert(
        "total_reasoning_tokens".into(),
        json!(s.total_reasoning_tokens),
    );
    o.insert(
        "total_visible_output_tokens".into(),
        json!(
            s.total_reasoning_tokens
                .map(|r| s.total_output_tokens.saturating_sub(r))
        ),
    );
    o.insert("no_visible_output".into(), json!(s.no_visible_output));
}

/// benchctl's additions, after vLLM's keys.
fn insert_benchctl_keys(o: &mut Map<String, Value>, info: &RunInfo, s: &Summary) {
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
    insert_reasoning_keys(o, s);
    if let Some(c) = &s.sessions {
        o.insert("sessions".into(), json!(c.started));
        o.insert("sessions_completed".into(), json!(c.completed));
        o.insert("mean_ttft_ms_by_turn".into(), json!(c.mean_ttft_ms_by_turn));
        o.insert("mean_ttfo_ms_by_turn".into(), json!(c.mean_ttfo_ms_by_turn));
        o.insert(
            "mean_prompt_tokens_by_turn".into(),
            json!(c.mean_prompt_tokens_by_turn),
        );
    }
    insert_cache_keys(o, s);
    o.insert("chunk_tokens".into(), json!(info.chunk_tokens));
    let stamps = if s.completed > 0 && s.kernel_stamped == s.completed {
        "CLOCK_MONOTONIC; each read stamped with the kernel's receive time of its last byte (SO_TIMESTAMPING), before parsing"
    } else if s.kernel_stamped > 0 {
        "CLOCK_MONOTONIC; reads stamped with the kernel's receive time where the socket gave one, else when the read returned; before parsing"
    } else {
        "CLOCK_MONOTONIC, taken when each read of the response returned, before parsing"
    };
    o.insert("timestamps".into(), json!(stamps));
}

/// The prefix cache as the server's usage reported it (`null`s when it did not).
fn insert_cache_keys(o: &mut Map<String, Value>, s: &Summary) {
    let c = &s.cache;
    let reported = c.reported > 0;
    o.insert(
        "total_cached_tokens".into(),
        json!(reported.then_some(c.cached_tokens)),
    );
    o.insert("cached_token_fraction".into(), json!(c.fraction()));
    o.insert("cached_tokens_reported".into(), json!(c.reported));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summarize;
    use crate::runner::ChunkTokens;

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
        let none: Vec<crate::RequestRecord> = vec![];
        let s = summarize(&none, &[99.0], &[]);
        let j = result_json(&info, &s, &none, false);
        assert_eq!(j["request_rate"], "inf");
        assert!(j["mean_ttft_ms"].is_null());
        assert!(j.get("p99_e2el_ms").is_some());
        assert!(j["request_goodput"].is_null());
    }
}
