//! Window statistics over scripted samples: exact deltas and rates, gauges, resets, replicas,
//! coverage.

use std::time::Duration;

use super::super::log::{ScrapeLog, Scraped};
use super::super::parse::parse;
use super::*;

const S: u64 = 1_000_000_000;

fn log(replicas: usize) -> ScrapeLog {
    let endpoints = (0..replicas)
        .map(|i| format!("http://r{i}/metrics"))
        .collect();
    ScrapeLog::new(endpoints, Duration::from_secs(1))
}

/// One sample of `replica` at `t_ms`.
fn push(log: &mut ScrapeLog, replica: usize, round: u64, t_ms: u64, text: &str) {
    log.record(Scraped {
        replica,
        round,
        on_demand: false,
        outcome: Ok((t_ms * 1_000_000, parse(text).unwrap())),
    });
}

/// A vLLM page with these values.
fn vllm(running: f64, kv: f64, prompt: u64, generated: u64, preempt: u64) -> String {
    format!(
        "vllm:num_requests_running{{engine=\"0\"}} {running}\n\
         vllm:num_requests_waiting{{engine=\"0\"}} 0\n\
         vllm:kv_cache_usage_perc{{engine=\"0\"}} {kv}\n\
         vllm:gpu_cache_usage_perc{{engine=\"0\"}} 0.99\n\
         vllm:prompt_tokens_total{{engine=\"0\"}} {prompt}\n\
         vllm:generation_tokens_total{{engine=\"0\"}} {generated}\n\
         vllm:num_preemptions_total{{engine=\"0\"}} {preempt}\n\
         vllm:prefix_cache_queries_total{{engine=\"0\"}} {prompt}\n\
         vllm:prefix_cache_hits_total{{engine=\"0\"}} {}\n\
         vllm:request_success_total{{finished_reason=\"length\"}} {}\n\
         vllm:request_success_total{{finished_reason=\"stop\"}} 1\n",
        prompt / 4,
        generated / 128,
    )
}

#[test]
fn counter_deltas_and_rates_are_exact_over_the_window() {
    let mut l = log(1);
    // outside the window: before the "before" sample, and after the "after" one
    push(&mut l, 0, 0, 200, &vllm(0.0, 0.0, 0, 0, 0));
    // the before sample (t = 0.9 s), ten periodic ones, the after sample (t = 11.1 s)
    push(&mut l, 0, 1, 900, &vllm(0.0, 0.1, 1024, 128, 2));
    for k in 2..=10 {
        let running = 2.0 * (k - 1) as f64;
        let tokens = 1024 + 512 * (k - 1);
        push(
            &mut l,
            0,
            k,
            k * 1000,
            &vllm(running, 0.1 * k as f64, tokens, 128 * k, 2),
        );
    }
    push(
        &mut l,
        0,
        11,
        11_100,
        &vllm(20.0, 0.5, 1024 + 5120, 128 * 11, 5),
    );
    push(&mut l, 0, 12, 12_000, &vllm(99.0, 0.9, 99_999, 99_999, 99));

    let s = l.stats(S, 11 * S);
    assert_eq!(s.server_kind, ServerKind::Vllm);
    assert_eq!(s.server_prompt_tokens, Some(5120));
    assert_eq!(s.server_generation_tokens, Some(1280));
    assert_eq!(s.server_preemptions, Some(3));
    assert_eq!(s.server_requests, Some(10), "summed over finished_reason");
    assert_eq!(s.server_prefix_cache_hit_rate, Some(0.25));
    let rate = s.server_generation_tokens_per_s.unwrap();
    assert!((rate - 1280.0 / 10.2).abs() < 1e-9, "{rate}");
    // running at the 11 samples: 0, 2, 4, …, 20 → mean 10, max 20, p95 19 (numpy's linear)
    assert_eq!(s.server_running_mean, Some(10.0));
    assert_eq!(s.server_running_max, Some(20.0));
    assert_eq!(s.server_running_p95, Some(19.0));
    assert_eq!(s.server_waiting_max, Some(0.0));
    // kv_cache_usage_perc wins over the deprecated gpu_cache_usage_perc (0.99)
    assert_eq!(s.server_kv_cache_usage_max, Some(1.0));
    let kv = s.server_kv_cache_usage_mean.unwrap();
    assert!((kv - 6.0 / 11.0).abs() < 1e-12, "{kv}");
    assert_eq!(s.server_metrics_coverage, 1.0);
    assert!(!s.server_metrics_incomplete);
    assert_eq!(s.server_metrics_note, None);
    let q = &s.server_metrics["quantities"];
    assert_eq!(q["prompt_tokens"]["delta"], 5120.0);
    assert_eq!(q["running"]["samples"], 11);
    let raw = &s.server_metrics["counters"];
    assert_eq!(raw["vllm:prompt_tokens_total{engine=\"0\"}"], 5120.0);
    assert_eq!(s.server_metrics["replicas"][0]["samples"], 11);
}

#[test]
fn a_counter_reset_counts_from_zero_and_a_new_series_from_zero() {
    let mut l = log(1);
    let page = |tokens: u64, abort: Option<u64>| {
        let mut p = format!("vllm:generation_tokens_total {tokens}\n");
        if let Some(a) = abort {
            p.push_str(&format!(
                "vllm:request_success_total{{finished_reason=\"abort\"}} {a}\n"
            ));
        }
        p
    };
    push(&mut l, 0, 1, 0, &page(100, None));
    push(&mut l, 0, 2, 1000, &page(150, None));
    push(&mut l, 0, 3, 2000, &page(20, Some(1)));
    push(&mut l, 0, 4, 3000, &page(60, Some(3)));
    let s = l.stats(0, 3 * S);
    assert_eq!(s.server_generation_tokens, Some(50 + 20 + 40));
    assert_eq!(s.server_requests, Some(3));
}

#[test]
fn replicas_are_summed_per_round_and_kv_usage_averaged() {
    let mut l = log(2);
    let page = |running: u64, kv: f64, tokens: u64| {
        format!(
            "vllm:num_requests_running {running}\nvllm:kv_cache_usage_perc {kv}\n\
             vllm:generation_tokens_total {tokens}\n"
        )
    };
    push(&mut l, 0, 1, 0, &page(2, 0.2, 0));
    push(&mut l, 1, 1, 10, &page(3, 0.4, 1000));
    // replica 1 missed round 2: its round-1 value stands in
    push(&mut l, 0, 2, 1000, &page(4, 0.4, 100));
    push(&mut l, 0, 3, 2000, &page(6, 0.6, 200));
    push(&mut l, 1, 3, 2010, &page(5, 0.6, 1300));
    let s = l.stats(0, 2 * S);
    // rounds: 2+3, 4+3, 6+5
    assert_eq!(s.server_running_max, Some(11.0));
    assert_eq!(s.server_running_mean, Some((5.0 + 7.0 + 11.0) / 3.0));
    let kv = s.server_kv_cache_usage_mean.unwrap();
    assert!((kv - (0.3 + 0.4 + 0.6) / 3.0).abs() < 1e-12, "{kv}");
    assert_eq!(s.server_generation_tokens, Some(200 + 300));
    let rate = s.server_generation_tokens_per_s.unwrap();
    assert!((rate - (200.0 / 2.0 + 300.0 / 2.0)).abs() < 1e-9, "{rate}");
    let replicas = s.server_metrics["replicas"].as_array().unwrap();
    assert_eq!(
        replicas[1]["quantities"]["generation_tokens"]["delta"],
        300.0
    );
    assert_eq!(replicas[0]["quantities"]["running"]["max"], 6.0);
}

#[test]
fn a_gap_longer_than_three_intervals_is_uncovered() {
    let mut l = log(1);
    for t in [0, 1, 2, 3, 8, 9, 10] {
        push(&mut l, 0, t, t * 1000, "vllm:num_requests_running 1\n");
    }
    let s = l.stats(0, 10 * S);
    assert!((s.server_metrics_coverage - 0.5).abs() < 1e-9);
    assert!(s.server_metrics_incomplete);
    assert_eq!(
        s.server_metrics_note.as_deref(),
        Some("samples cover 50% of the window")
    );
    // a gap of three intervals is still covered
    let mut l = log(1);
    for t in [0, 1, 4, 5] {
        push(&mut l, 0, t, t * 1000, "vllm:num_requests_running 1\n");
    }
    assert_eq!(l.stats(0, 5 * S).server_metrics_coverage, 1.0);
}

#[test]
fn no_sample_gives_every_key_null_and_a_note() {
    let s = log(1).stats(0, 10 * S);
    assert_eq!(s.server_metrics_coverage, 0.0);
    assert!(s.server_metrics_incomplete);
    assert_eq!(
        s.server_metrics_note.as_deref(),
        Some("http://r0/metrics: never scraped; http://r0/metrics: no sample in the window")
    );
    let json = serde_json::to_value(&s).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected = vec![
        "server_kind",
        "server_metrics_endpoints",
        "server_metrics_coverage",
        "server_metrics_incomplete",
        "server_metrics_note",
        "server_running_mean",
        "server_running_max",
        "server_running_p95",
        "server_waiting_mean",
        "server_waiting_max",
        "server_waiting_p95",
        "server_kv_cache_usage_mean",
        "server_kv_cache_usage_max",
        "server_kv_cache_usage_p95",
        "server_preemptions",
        "server_prefix_cache_hit_rate",
        "server_prompt_tokens",
        "server_generation_tokens",
        "server_requests",
        "server_generation_tokens_per_s",
        "server_tokens_mismatch",
        "server_metrics",
    ];
    let mut keys = keys;
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(json["server_kind"], "unknown");
    assert!(json["server_prompt_tokens"].is_null());
    let back: ServerStats = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    let absent = ServerStats::absent(vec!["http://x/metrics".into()], "off".into());
    assert_eq!(absent.server_metrics_note.as_deref(), Some("off"));
}

#[test]
fn an_unknown_server_keeps_its_raw_counters() {
    let mut l = log(1);
    push(
        &mut l,
        0,
        1,
        0,
        "my_requests_total{code=\"200\"} 5\nmy_queue 3\n",
    );
    push(
        &mut l,
        0,
        2,
        1000,
        "my_requests_total{code=\"200\"} 12\nmy_queue 4\n",
    );
    let s = l.stats(0, S);
    assert_eq!(s.server_kind, ServerKind::Unknown);
    assert_eq!(s.server_running_mean, None);
    assert_eq!(
        s.server_metrics["counters"]["my_requests_total{code=\"200\"}"],
        7.0
    );
    assert!(s.server_metrics_note.unwrap().contains("unknown server"));
}
