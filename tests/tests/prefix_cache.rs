//! Prefix-cache accounting against `benchctl sim`, whose cache is exact: the cached tokens the
//! client reads from each usage equal the simulator's own hit counter; shared prefixes give the
//! hits they promise; a test served from a cache that its warm-up filled is flagged, a clean
//! one is not; `--reset-prefix-cache` empties the cache between runs.

use benchctl_tests::{SimConfig, bench, fast_sim, start, sweep};
use serde_json::Value;

fn caching_sim() -> SimConfig {
    SimConfig {
        prefix_cache_tokens: 1 << 20,
        ..fast_sim()
    }
}

fn u(j: &Value, k: &str) -> u64 {
    j[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a count: {}", j[k]))
}

/// The measured run's delta of one of the server's quantities (`prefix_cache_hits`…).
fn server_delta(j: &Value, quantity: &str) -> u64 {
    let d = &j["server_metrics"]["quantities"][quantity]["delta"];
    d.as_f64().unwrap_or_else(|| panic!("{quantity}: {d}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_prefixes_give_the_hits_they_promise_and_the_simulator_counts() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "40",
            "--max-concurrency",
            "4",
            "--input-len",
            "40",
            "--output-len",
            "4",
            "--prefix-len",
            "256",
            "--prefix-groups",
            "4",
            "--warmup-requests",
            "4",
            "--server-metrics",
            "--server-metrics-interval",
            "100ms",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    let cached = u(j, "total_cached_tokens");
    assert_eq!(cached, server_delta(j, "prefix_cache_hits"));
    let per_record: u64 = run
        .records
        .iter()
        .map(|r| u64::from(r.cached_tokens_server.unwrap()))
        .sum();
    assert_eq!(per_record, cached);
    assert_eq!(u(j, "cached_tokens_reported"), 40);
    // every request's group is warm (4 warm-up prompts cover few groups; the rest warm up in
    // the run): expected within one 16-token block a request of what was measured
    let expected = u(j, "expected_cached_tokens");
    assert!(expected >= 36 * 256, "{expected}");
    assert!(
        cached.abs_diff(expected) <= 40 * 16,
        "{cached} vs {expected}"
    );
    let (m, e) = (
        j["cached_token_fraction"].as_f64().unwrap(),
        j["expected_cached_token_fraction"].as_f64().unwrap(),
    );
    assert!((m - e).abs() < 0.05, "{m} vs {e}");
    assert_eq!(j["warm_cache"], false);
    // the simulator looks up every prompt token: its hit rate is the client's fraction
    assert_eq!(j["server_prefix_cache_hit_rate"].as_f64(), Some(m));
    sim.shutdown().await;
}

/// A JSONL dataset of `n` distinct prompts of about 60 tokens each.
fn jsonl(dir: &std::path::Path, n: usize) -> String {
    let path = dir.join("prompts.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let words: Vec<String> = (0..40).map(|w| format!("w{}x{w}", i * 7 + 1)).collect();
            serde_json::json!({"prompt": words.join(" ")}).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_test_served_from_its_warm_ups_cache_is_flagged_and_a_clean_one_is_not() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), 5);
    // five prompts, five warm-up requests: the warm-up sends the measured prompts themselves
    let common = [
        "--max-concurrency",
        "2",
        "--output-len",
        "4",
        "--warmup-requests",
        "5",
    ];
    let jsonl_args = [
        "--dataset",
        "jsonl",
        "--dataset-path",
        &file,
        "--num-prompts",
        "5",
    ];
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[&common[..], &jsonl_args].concat(),
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(j["warm_cache"], true, "{j}");
    assert!(j["cached_token_fraction"].as_f64().unwrap() > 0.5);
    assert_eq!(u(j, "expected_cached_tokens"), 0);
    assert!(j["warm_cache_note"].as_str().unwrap().contains("warm-up"));
    // random prompts of their own (the warm-up's and the preflight's too): clean
    let random = ["--input-len", "64", "--num-prompts", "10"];
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[&common[..], &random].concat(),
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(j["warm_cache"], false, "{j}");
    assert!(j["warm_cache_note"].is_null());
    assert!(j["cached_token_fraction"].as_f64().unwrap() < 0.05);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_prefix_cache_empties_the_cache_an_earlier_run_filled() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), 6);
    let args = [
        "--dataset",
        "jsonl",
        "--dataset-path",
        &file,
        "--num-prompts",
        "6",
        "--max-concurrency",
        "2",
        "--output-len",
        "4",
        "--no-preflight",
    ];
    let first = bench(&sim.base_url(), dir.path(), &args)
        .await
        .json()
        .clone();
    assert_eq!(first["warm_cache"], false, "{first}");
    assert_eq!(u(&first, "total_cached_tokens"), 0);
    // the same prompts again: served from the first run's cache
    let again = bench(&sim.base_url(), dir.path(), &args)
        .await
        .json()
        .clone();
    assert_eq!(again["warm_cache"], true, "{again}");
    assert!(again["prefix_cache_reset"].is_null());
    // reset first: clean again, and the result says how it was reset
    let reset = [&args[..], &["--reset-prefix-cache"]].concat();
    let clean = bench(&sim.base_url(), dir.path(), &reset)
        .await
        .json()
        .clone();
    assert_eq!(clean["warm_cache"], false, "{clean}");
    assert_eq!(u(&clean, "total_cached_tokens"), 0);
    assert_eq!(clean["prefix_cache_reset"], "vLLM POST /reset_prefix_cache");
    sim.shutdown().await;
}

/// A server with no reset endpoint: the reset says so, naming what it tried.
#[tokio::test]
async fn a_server_without_a_reset_endpoint_is_named() {
    let app = axum::Router::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let said = controller::prefix_reset::reset(std::slice::from_ref(&base), None).await;
    assert!(said.starts_with("NOT DONE"), "{said}");
    assert!(
        said.contains("/reset_prefix_cache: HTTP 404") && said.contains("/flush_cache: HTTP 404"),
        "{said}"
    );
}

/// A sweep over shared prefixes, each test's cache reset first: every entry's cached tokens are
/// the simulator's hits over its measured run, near what the workload expects, never warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_over_shared_prefixes_resets_and_accounts_each_test() {
    let sim = start(caching_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "64x4",
            "--concurrency",
            "2,4",
            "--num-prompts",
            "24",
            "--prefix-len",
            "256",
            "--prefix-groups",
            "3",
            "--reset-prefix-cache",
            "--server-metrics",
            "--server-metrics-interval",
            "100ms",
            "--dashboard-addr",
            "off",
        ],
    )
    .await;
    run.result.as_ref().expect("the sweep succeeds");
    let entries = run.results();
    assert_eq!(entries.len(), 2);
    for j in &entries {
        assert_eq!(
            j["prefix_cache_reset"], "vLLM POST /reset_prefix_cache",
            "{j}"
        );
        assert_eq!(
            u(j, "total_cached_tokens"),
            server_delta(j, "prefix_cache_hits")
        );
        let (m, e) = (
            j["cached_token_fraction"].as_f64().unwrap(),
            j["expected_cached_token_fraction"].as_f64().unwrap(),
        );
        assert!(
            e > 0.5 && (m - e).abs() < 0.05,
            "measured {m}, expected {e}"
        );
        assert_eq!(j["warm_cache"], false);
    }
    let md = std::fs::read_to_string(run.dir().join("summary.md")).unwrap();
    assert!(
        md.contains("expected cached %") && !md.contains("WARNING"),
        "{md}"
    );
    sim.shutdown().await;
}

/// A conversation reuses its own history: the cached tokens the client reads equal the
/// simulator's hit counter exactly, and every later turn finds its history in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversations_cached_tokens_are_the_simulators_hits() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--endpoint",
            "/v1/chat/completions",
            "--dataset",
            "conversations",
            "--turns",
            "3",
            "--input-len",
            "48",
            "--output-len",
            "16",
            "--num-prompts",
            "6",
            "--max-concurrency",
            "3",
            "--server-metrics",
            "--server-metrics-interval",
            "100ms",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    let cached = u(j, "total_cached_tokens");
    assert_eq!(cached, server_delta(j, "prefix_cache_hits"));
    let per_record: u64 = run
        .records
        .iter()
        .map(|r| u64::from(r.cached_tokens_server.unwrap()))
        .sum();
    assert_eq!(per_record, cached);
    assert_eq!(u(j, "cached_tokens_reported"), 18);
    // turn k ≥ 1 sends turn k−1's prompt and answer again: at least its whole 16-token blocks
    for r in run.records.iter().filter(|r| r.turn.unwrap() >= 1) {
        assert!(
            r.cached_tokens_server.unwrap() >= 48,
            "turn {:?}: {:?} cached",
            r.turn,
            r.cached_tokens_server
        );
    }
    // its reuse is its own history, not a warm cache
    assert_eq!(j["warm_cache"], Value::Null);
    sim.shutdown().await;
}
