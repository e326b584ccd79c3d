//! `--server-metrics`: the server's own counters over each test, against `benchctl sim` (whose
//! vLLM-named counters are exact), and servers whose `/metrics` is missing, garbage, hung or gone
//! mid-test (the benchmark completes, with a note).

use std::time::Duration;

use benchctl_tests::{bench, fast_sim, start, sweep};
use serde_json::Value;

const SMALL: &[&str] = &[
    "--num-prompts",
    "24",
    "--max-concurrency",
    "4",
    "--input-len",
    "32",
    "--output-len",
    "12",
    "--warmup-requests",
    "4",
    "--server-metrics-interval",
    "100ms",
];

fn u(j: &Value, k: &str) -> u64 {
    j[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a count: {}", j[k]))
}

/// The server's deltas over the measured run equal what the client counted, exactly: the
/// warm-up's 4 requests are outside the window (sampled after it), the measured 24 inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_servers_counter_deltas_are_the_tests_exact_counts() {
    let sim = start(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = SMALL.to_vec();
    args.push("--server-metrics");
    let run = bench(&sim.base_url(), dir.path(), &args).await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(j["server_kind"], "vllm");
    assert_eq!(u(j, "server_requests"), 24);
    assert_eq!(u(j, "server_prompt_tokens"), u(j, "total_input_tokens"));
    assert_eq!(
        u(j, "server_generation_tokens"),
        u(j, "total_output_tokens")
    );
    assert_eq!(u(j, "server_generation_tokens"), 24 * 12);
    assert_eq!(u(j, "server_preemptions"), 0);
    assert!(
        j["server_tokens_mismatch"].is_null(),
        "{}",
        j["server_tokens_mismatch"]
    );
    assert_eq!(j["server_metrics_coverage"].as_f64(), Some(1.0));
    assert_eq!(j["server_metrics_incomplete"], false);
    assert!(j["server_running_max"].as_f64().unwrap() <= 4.0);
    let csv = std::fs::read_to_string(
        dir.path()
            .join("server_metrics_c4_in32_out12")
            .join("samples.csv"),
    )
    .unwrap();
    assert!(csv.starts_with("unix_s,replica,metric,labels,value,quantity\n"));
    assert!(csv.contains("vllm:generation_tokens_total"));
    // two workers, the same exactness (one scrape per test, not per worker)
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[args.as_slice(), &["--workers", "2"]].concat(),
    )
    .await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(u(j, "server_requests"), 24);
    assert_eq!(
        u(j, "server_generation_tokens"),
        u(j, "total_output_tokens")
    );
    sim.shutdown().await;
}

/// Two replicas: each one's endpoint is scraped, the counters summed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_are_scraped_each_and_summed() {
    let (a, b) = (start(fast_sim()).await, start(fast_sim()).await);
    let dir = tempfile::tempdir().unwrap();
    let urls = format!("{},{}", a.base_url(), b.base_url());
    let mut args = SMALL.to_vec();
    args.push("--server-metrics");
    let run = bench(&urls, dir.path(), &args).await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(j["server_metrics_endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(u(j, "server_requests"), 24);
    assert_eq!(
        u(j, "server_generation_tokens"),
        u(j, "total_output_tokens")
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Every test of a sweep carries the server's view of its own window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_sweep_test_has_its_own_exact_deltas() {
    let sim = start(fast_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "32x8",
            "--concurrency",
            "1,4",
            "--dashboard-addr",
            "off",
            "--server-metrics-interval",
            "100ms",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let results = run.results();
    assert_eq!(results.len(), 2);
    for e in &results {
        assert_eq!(
            e["server_kind"], "vllm",
            "auto finds the simulator's /metrics"
        );
        assert_eq!(u(e, "server_requests"), u(e, "completed"));
        assert_eq!(
            u(e, "server_generation_tokens"),
            u(e, "total_output_tokens")
        );
        assert_eq!(u(e, "server_prompt_tokens"), u(e, "total_input_tokens"));
        assert!(e["server_tokens_mismatch"].is_null());
        let key = format!(
            "server_metrics_c{}_in32_out8/samples.csv",
            u(e, "concurrency")
        );
        assert!(run.dir().join(key).is_file());
    }
    sim.shutdown().await;
}

/// A `/metrics` that is not there, answers garbage, hangs, or goes away mid-test: the benchmark
/// completes and says why the server's numbers are missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_garbage_hung_or_vanishing_endpoint_gives_a_note_not_a_failure() {
    use axum::routing::get;
    let sim = start(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = axum::Router::new()
        .route(
            "/garbage",
            get(|| async { "{\"this is\": not prometheus ]]]\n\u{0}\u{1}" }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (endpoint, why) in [
        (format!("{base}/missing"), "404"),
        (format!("{base}/garbage"), ""),
        (format!("{base}/hang"), "no answer within"),
    ] {
        let mut args = SMALL.to_vec();
        args.extend(["--server-metrics", &endpoint]);
        let run = tokio::time::timeout(
            Duration::from_secs(60),
            bench(&sim.base_url(), dir.path(), &args),
        )
        .await
        .unwrap_or_else(|_| panic!("{endpoint}: the bench hung"));
        run.result
            .as_ref()
            .unwrap_or_else(|e| panic!("{endpoint}: {e:#}"));
        let j = run.json();
        assert_eq!(u(j, "completed"), 24, "{endpoint}");
        assert_eq!(j["server_metrics_incomplete"], true, "{endpoint}");
        let note = j["server_metrics_note"].as_str().unwrap_or_default();
        assert!(
            note.contains(&endpoint) && note.to_lowercase().contains(why),
            "{endpoint}: {note}"
        );
    }

    // the endpoint disappears mid-test: a second simulator serves only /metrics and stops
    let gone = start(fast_sim()).await;
    let metrics = format!("{}/metrics", gone.base_url());
    let stop = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gone.shutdown().await;
    });
    let mut args: Vec<&str> = SMALL
        .iter()
        .map(|a| if *a == "24" { "60" } else { a })
        .collect();
    args.extend(["--server-metrics", &metrics]);
    let run = bench(&sim.base_url(), dir.path(), &args).await;
    stop.await.unwrap();
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(u(j, "completed"), 60);
    assert_eq!(j["server_metrics_incomplete"], true);
    assert!(
        j["server_metrics_note"]
            .as_str()
            .is_some_and(|n| n.contains(&metrics)),
        "{}",
        j["server_metrics_note"]
    );
    sim.shutdown().await;
}
