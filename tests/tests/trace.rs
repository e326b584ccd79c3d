//! `--dataset mooncake`: a trace replayed against `benchctl sim` on its timestamps (compressed by
//! `--trace-speedup`, the dispatch lag reported), its shared blocks served from the simulator's
//! prefix cache exactly as the simulator counts them, and the shipped example trace.

use benchctl_tests::{SimConfig, bench, fast_sim, start};
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

/// Six requests over 3 s: two share two blocks, a third shares one, one repeats a whole short
/// prompt, the rest share nothing.
const TRACE: &str = r#"{"timestamp": 1000, "input_length": 1100, "output_length": 8, "hash_ids": [1, 2, 3]}
{"timestamp": 1500, "input_length": 1200, "output_length": 8, "hash_ids": [1, 2, 4]}
{"timestamp": 2000, "input_length": 700, "output_length": 8, "hash_ids": [1, 5]}
{"timestamp": 2600, "input_length": 600, "output_length": 8, "hash_ids": [6, 7]}
{"timestamp": 3100, "input_length": 300, "output_length": 8, "hash_ids": [8]}
{"timestamp": 4000, "input_length": 300, "output_length": 8, "hash_ids": [8]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_replays_on_schedule_and_its_shared_blocks_hit_the_cache() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.jsonl");
    std::fs::write(&path, TRACE).unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--dataset",
            "mooncake",
            "--dataset-path",
            path.to_str().unwrap(),
            "--trace-speedup",
            "4",
            "--server-metrics",
            "--server-metrics-interval",
            "100ms",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(u(j, "completed"), 6);
    // on schedule: (timestamp − 1000) / 4 ms after the first, each dispatched within 50 ms
    let mut recs = run.records.clone();
    recs.sort_by_key(|r| r.intended_ns);
    let t0 = recs[0].intended_ns;
    let offsets_ms: Vec<u64> = recs
        .iter()
        .map(|r| (r.intended_ns - t0) / 1_000_000)
        .collect();
    assert_eq!(offsets_ms, [0, 125, 250, 400, 525, 750]);
    for r in &recs {
        assert!(
            r.dispatch_ns - r.intended_ns < 50_000_000,
            "lag {}",
            r.dispatch_ns - r.intended_ns
        );
    }
    assert!(
        j["mean_dispatch_lag_ms"].as_f64().unwrap() < 50.0,
        "{}",
        j["mean_dispatch_lag_ms"]
    );
    // the trace's own rate: 5 gaps over 750 ms
    assert!((j["request_rate"].as_f64().unwrap() - 5.0 / 0.75).abs() < 1e-9);
    // the cached tokens the client read equal the simulator's hits, exactly
    let cached = u(j, "total_cached_tokens");
    let hits = j["server_metrics"]["quantities"]["prefix_cache_hits"]["delta"]
        .as_f64()
        .unwrap();
    assert_eq!(cached, hits as u64);
    // and match the trace's overlap: 2 blocks, 1 block and 300 tokens (1024 + 512 + 300), less
    // than a 16-token block each where the simulator stops short of the last token
    assert_eq!(u(j, "expected_cached_tokens"), 1024 + 512 + 300);
    assert!(cached <= 1836 && cached + 3 * 16 >= 1836, "{cached}");
    assert_eq!(j["warm_cache"], false);
    // two workers share the trace: the same schedule (within their start skew), the same hits
    let path = path.to_str().unwrap();
    let args = [
        "--dataset",
        "mooncake",
        "--dataset-path",
        path,
        "--trace-speedup",
        "4",
        "--workers",
        "2",
        "--reset-prefix-cache",
        "--server-metrics",
        "--server-metrics-interval",
        "100ms",
    ];
    let run = bench(&sim.base_url(), dir.path(), &args).await;
    run.result.as_ref().unwrap();
    let j = run.json();
    let mut recs = run.records.clone();
    recs.sort_by_key(|r| r.intended_ns);
    let t0 = recs[0].intended_ns;
    for (r, want) in recs.iter().zip([0, 125, 250, 400, 525, 750]) {
        let got = (r.intended_ns - t0) as f64 / 1e6;
        assert!((got - want as f64).abs() < 5.0, "{got} ms, want {want}");
    }
    let hits = j["server_metrics"]["quantities"]["prefix_cache_hits"]["delta"]
        .as_f64()
        .unwrap();
    assert_eq!(u(j, "total_cached_tokens"), hits as u64);
    assert_eq!(u(j, "total_cached_tokens"), cached);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_trace_replays() {
    let sim = start(caching_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/traces/mooncake-example.jsonl"
    );
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--dataset",
            "mooncake",
            "--dataset-path",
            example,
            "--trace-speedup",
            "20",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(u(j, "completed"), 60);
    let (m, e) = (
        j["cached_token_fraction"].as_f64().unwrap(),
        j["expected_cached_token_fraction"].as_f64().unwrap(),
    );
    assert!(
        e > 0.3 && (m - e).abs() < 0.03,
        "measured {m}, expected {e}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_trace_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.jsonl");
    std::fs::write(&path, TRACE).unwrap();
    let p = path.to_str().unwrap();
    let sim = start(fast_sim()).await;
    for (args, says) in [
        (vec!["--trace-speedup", "0"], "--trace-speedup"),
        (vec!["--request-rate", "5"], "--request-rate"),
    ] {
        let mut a = vec!["--dataset", "mooncake", "--dataset-path", p];
        a.extend(args);
        let e = bench(&sim.base_url(), dir.path(), &a)
            .await
            .result
            .unwrap_err();
        assert!(format!("{e:#}").contains(says), "{e:#}");
    }
    sim.shutdown().await;
}

/// A schedule given its origin (what each worker of a test gets: the start they agreed on) keeps
/// to it: every intended time is origin + offset exactly, whenever the worker got going, and an
/// origin already past makes the first arrival late by at least that much, in its dispatch lag,
/// instead of moving the whole schedule.
#[tokio::test]
async fn a_schedule_keeps_its_agreed_origin() {
    let sim = start(fast_sim()).await;
    let target = loadgen::Target {
        url: format!("{}/v1/completions", sim.base_url())
            .parse()
            .unwrap(),
        api_key: None,
        body: loadgen::BodySpec {
            kind: loadgen::EndpointKind::Completions,
            backend: loadgen::Backend::Vllm,
            model: "benchctl-sim".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Default::default(),
        },
        timeout: std::time::Duration::from_secs(10),
        stall_timeout: None,
    };
    let client = loadgen::HttpClient::new(target, 4).unwrap();
    let offsets_ms = [0u64, 40, 200];
    let prompts = offsets_ms
        .iter()
        .map(|ms| loadgen::Prompt {
            text: "hi".into(),
            prompt_tokens: 1,
            output_len: 4,
            offset_ns: Some(ms * 1_000_000),
        })
        .collect();
    let cfg = loadgen::RunConfig {
        prompts,
        arrivals: loadgen::Arrivals::closed_loop(),
        max_concurrency: None,
        warmup_requests: 0,
        warmup_prompts: vec![],
        request_id_prefix: "o-".into(),
    };
    let late_ms = 30;
    let origin = cluster::clock::mono_ns() - late_ms * 1_000_000;
    let cancel = Default::default();
    let out = loadgen::runner::measure_from(
        &client,
        cfg,
        Some(origin),
        &cancel,
        loadgen::runner::Keep::All,
        |_| {},
    )
    .await
    .unwrap();
    // when it got going (the spread of this over workers is `start_skew_ms`), after the origin
    assert!(out.start_ns >= origin + late_ms * 1_000_000);
    let mut recs = out.records;
    recs.sort_by_key(|r| r.index);
    for (r, ms) in recs.iter().zip(offsets_ms) {
        assert!(r.ok(), "{:?}", r.error);
        assert_eq!(r.intended_ns, origin + ms * 1_000_000);
        assert!(r.dispatch_ns >= r.intended_ns, "sent early: {r:?}");
    }
    let lag_ms = (recs[0].dispatch_ns - recs[0].intended_ns) as f64 / 1e6;
    assert!(lag_ms >= late_ms as f64, "first arrival {lag_ms} ms late");
    sim.shutdown().await;
}
