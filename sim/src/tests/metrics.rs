//! `/metrics` over HTTP: the exposition's shape, and exact counter deltas over a known load.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{completion_body, fast, stream};
use crate::{SimConfig, SimServer};

/// Checks that `text` is Prometheus text exposition as the simulator writes it
/// (every sample `name{labels} value`, its family's `# HELP` and `# TYPE`
/// before it, counters named `…_total`) and returns `name{labels}` → value.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut helped = std::collections::HashSet::new();
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(line);
            assert!(!help.is_empty() && helped.insert(name), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(kind != "counter" || name.ends_with("_total"), "{line}");
            assert!(types.insert(name, kind).is_none(), "two TYPE lines: {line}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let (name, labels) = series.split_once('{').expect(line);
            assert!(types.contains_key(name), "no TYPE before {line}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            let labels = labels.strip_suffix('}').expect(line);
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').expect(line);
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
            }
            assert!(labels.starts_with("model_name=\"benchctl-sim\""), "{line}");
            let v: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(samples.insert(series.to_owned(), v).is_none(), "{line}");
        }
    }
    samples
}

pub(super) async fn scrape(base: &str) -> BTreeMap<String, f64> {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse_exposition(&resp.text().await.unwrap())
}

/// `after − before` of one series (`name` plus, when not empty, more labels).
pub(super) fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    name: &str,
    extra: &str,
) -> f64 {
    let sep = if extra.is_empty() { "" } else { "," };
    let key = format!("{name}{{model_name=\"benchctl-sim\"{sep}{extra}}}");
    after.get(&key).unwrap_or_else(|| panic!("{key} missing")) - before[&key]
}

#[tokio::test]
async fn metrics_count_a_known_load_exactly() {
    let s = SimServer::start(SimConfig {
        prefix_cache_tokens: 4096,
        tokens_per_chunk: 3,
        ..fast()
    })
    .await
    .unwrap();
    let base = s.base_url();
    let c = reqwest::Client::new();
    let _ = stream(&format!("{base}/v1/completions"), completion_body(4), None).await;
    let before = scrape(&base).await;
    // Three identical 40-token prompts (2 full blocks; a hit stops short of
    // the last token: 32 tokens), three prompts of their own, and a chat.
    let shared: Vec<u32> = (100..140).collect();
    let mut prompts = vec![shared.clone(), shared.clone(), shared];
    for (first, len) in [(1000, 20), (2000, 33), (3000, 50)] {
        prompts.push((first..first + len).collect());
    }
    let (mut prompt_sum, mut output_sum) = (0u64, 0u64);
    for (i, prompt) in prompts.iter().enumerate() {
        let max_tokens = 5 + i;
        let body = json!({"prompt": prompt, "max_tokens": max_tokens, "stream": i % 2 == 0,
                          "stream_options": {"include_usage": true}});
        let url = format!("{base}/v1/completions");
        let usage = if i % 2 == 0 {
            stream(&url, body, None).await.json().last().unwrap()["usage"].clone()
        } else {
            let v: Value = c
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["usage"].clone()
        };
        assert_eq!(usage["prompt_tokens"], prompt.len());
        assert_eq!(usage["completion_tokens"], max_tokens);
        prompt_sum += prompt.len() as u64;
        output_sum += max_tokens as u64;
    }
    let chat: Value = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Count me."}], "max_tokens": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    prompt_sum += chat["usage"]["prompt_tokens"].as_u64().unwrap();
    output_sum += 7;
    let after = scrape(&base).await;
    let d = |name: &str, extra: &str| delta(&before, &after, name, extra);
    assert_eq!(d("vllm:prompt_tokens_total", ""), prompt_sum as f64);
    assert_eq!(d("vllm:generation_tokens_total", ""), output_sum as f64);
    assert_eq!(
        d("benchctl_sim_tokens_generated_total", ""),
        output_sum as f64
    );
    assert_eq!(d("benchctl_sim_requests_total", ""), 7.0);
    let success = "vllm:request_success_total";
    assert_eq!(d(success, "finished_reason=\"length\""), 7.0);
    assert_eq!(d(success, "finished_reason=\"stop\""), 0.0);
    assert_eq!(d(success, "finished_reason=\"abort\""), 0.0);
    assert_eq!(d("vllm:prefix_cache_queries_total", ""), prompt_sum as f64);
    assert_eq!(d("vllm:prefix_cache_hits_total", ""), 2.0 * 32.0);
    assert_eq!(d("vllm:num_preemptions_total", ""), 0.0);
    for gauge in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    ] {
        assert_eq!(
            after[&format!("{gauge}{{model_name=\"benchctl-sim\"}}")],
            0.0
        );
    }
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_count_aborted_streams() {
    let s = SimServer::start(SimConfig {
        fault_truncate_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let base = s.base_url();
    let before = scrape(&base).await;
    // Long enough that the cut (after 200 tokens) comes before the scheduler
    // has generated them all; it finds the receiver gone at its next step.
    let r = stream(
        &format!("{base}/v1/completions"),
        completion_body(400),
        None,
    )
    .await;
    assert!(r.body_error);
    let mut aborted = 0.0;
    for _ in 0..100 {
        let after = scrape(&base).await;
        aborted = delta(
            &before,
            &after,
            "vllm:request_success_total",
            "finished_reason=\"abort\"",
        );
        if aborted > 0.0 {
            let length = "finished_reason=\"length\"";
            assert_eq!(
                delta(&before, &after, "vllm:request_success_total", length),
                0.0
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(aborted, 1.0);
    s.shutdown().await;
}
