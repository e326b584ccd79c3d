//! A failing server gives counted failures by kind — never a panic, a hang or a lost record.

use std::time::Duration;

use benchctl_tests::{SimConfig, bench, fast_sim, start};

const N: &str = "6";

async fn all_fail(cfg: SimConfig, extra: &[&str]) -> benchctl_tests::BenchRun {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(cfg).await;
    let mut args = vec![
        "--num-prompts",
        N,
        "--max-concurrency",
        "3",
        "--input-len",
        "16",
        "--output-len",
        "8",
        "--no-preflight",
    ];
    args.extend_from_slice(extra);
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        bench(&sim.base_url(), dir.path(), &args),
    )
    .await
    .expect("the run ends (no hang)");
    sim.shutdown().await;
    run
}

fn assert_all(run: &benchctl_tests::BenchRun, kind: &str) {
    let e = format!(
        "{:#}",
        run.result
            .as_ref()
            .expect_err("a run where every request failed exits non-zero")
    );
    assert!(
        e.contains("every request failed") && e.contains(kind),
        "{e}"
    );
    assert_eq!(
        run.records.len(),
        6,
        "one record per request, failed or not"
    );
    assert_eq!(
        run.failed_by_kind(kind),
        6,
        "{}",
        run.json()["failed_by_kind"]
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.error.as_ref().is_some_and(|e| e.kind.as_str() == kind))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_is_counted_with_the_servers_message() {
    let run = all_fail(
        SimConfig {
            fault_error_rate: 1.0,
            ..fast_sim()
        },
        &[],
    )
    .await;
    assert_all(&run, "http_5xx");
    assert_eq!(run.json()["failed_by_status"]["500"], 6);
    assert!(
        run.json()["first_error"]["http_5xx"]
            .as_str()
            .unwrap()
            .contains("simulated internal error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_422_names_the_rejected_field_and_preflight_stops_the_run() {
    let strict = SimConfig {
        strict: true,
        ..fast_sim()
    };
    let run = all_fail(strict.clone(), &[]).await;
    assert_all(&run, "http_4xx");
    assert!(
        run.json()["first_error"]["http_4xx"]
            .as_str()
            .unwrap()
            .contains("ignore_eos")
    );

    // With the preflight (the default), nothing is sent and the message says what to do.
    let dir = tempfile::tempdir().unwrap();
    let sim = start(strict).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "5",
            "--input-len",
            "8",
            "--output-len",
            "4",
        ],
    )
    .await;
    let e = format!("{:#}", run.result.unwrap_err());
    assert!(
        e.contains("preflight")
            && e.contains("422")
            && e.contains("ignore_eos")
            && e.contains("--backend openai"),
        "{e}"
    );
    assert!(run.json.is_none(), "no load was sent, no result written");
    // --backend openai sends only standard fields: the strict server accepts it
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--backend",
            "openai",
            "--num-prompts",
            "5",
            "--input-len",
            "8",
            "--output-len",
            "4",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(run.json()["completed"], 5);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_is_counted() {
    assert_all(
        &all_fail(
            SimConfig {
                fault_malformed_rate: 1.0,
                ..fast_sim()
            },
            &[],
        )
        .await,
        "malformed_chunk",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_stream_is_counted() {
    let run = all_fail(
        SimConfig {
            fault_truncate_rate: 1.0,
            ..fast_sim()
        },
        &[],
    )
    .await;
    assert_all(&run, "truncated_stream");
    // what arrived before the cut is kept in the record
    assert!(run.records.iter().all(|r| !r.chunks.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_past_the_timeout_is_counted() {
    let run = all_fail(
        SimConfig {
            fault_stall_rate: 1.0,
            ..fast_sim()
        },
        &["--timeout", "700ms"],
    )
    .await;
    assert_all(&run, "timeout");
    let run = all_fail(
        SimConfig {
            fault_stall_rate: 1.0,
            ..fast_sim()
        },
        &["--stall-timeout", "300ms"],
    )
    .await;
    assert_all(&run, "stall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_counted_and_stops_the_cli_with_a_sentence() {
    // a port that was just free
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let run = bench(&base, dir.path(), &["--num-prompts", "3"]).await;
    let e = format!("{:#}", run.result.unwrap_err());
    assert!(
        e.contains("cannot reach the server") && e.contains(&base),
        "{e}"
    );

    // The client itself counts it under `connect`.
    let target = loadgen::Target {
        url: format!("{base}/v1/completions").parse().unwrap(),
        api_key: None,
        body: loadgen::BodySpec {
            kind: loadgen::EndpointKind::Completions,
            backend: loadgen::Backend::Vllm,
            model: "m".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Default::default(),
        },
        timeout: Duration::from_secs(5),
        stall_timeout: None,
    };
    let client = loadgen::HttpClient::new(target, 4).unwrap();
    let prompts = vec![
        loadgen::Prompt {
            text: "hi".into(),
            prompt_tokens: 1,
            output_len: 4,
            offset_ns: None,
        };
        5
    ];
    let cfg = loadgen::RunConfig {
        prompts,
        arrivals: loadgen::Arrivals::closed_loop(),
        max_concurrency: Some(2),
        warmup_requests: 0,
        warmup_prompts: vec![],
        request_id_prefix: "t-".into(),
    };
    let out = loadgen::runner::run(&client, cfg, Default::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(out.records.len(), 5);
    assert!(
        out.records
            .iter()
            .all(|r| r.error.as_ref().unwrap().kind == loadgen::ErrorKind::Connect)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_are_all_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(SimConfig {
        fault_error_rate: 0.15,
        fault_malformed_rate: 0.15,
        fault_truncate_rate: 0.15,
        fault_stall_rate: 0.15,
        seed: 3,
        ..fast_sim()
    })
    .await;
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        bench(
            &sim.base_url(),
            dir.path(),
            &[
                "--num-prompts",
                "80",
                "--max-concurrency",
                "16",
                "--input-len",
                "16",
                "--output-len",
                "10",
                "--timeout",
                "2s",
                "--no-preflight",
            ],
        ),
    )
    .await
    .expect("no hang");
    sim.shutdown().await;
    run.result.as_ref().expect("some requests succeed");
    let j = run.json();
    let by_kind = j["failed_by_kind"].as_object().unwrap();
    for k in ["http_5xx", "malformed_chunk", "truncated_stream", "timeout"] {
        assert!(
            by_kind.get(k).and_then(|v| v.as_u64()).unwrap_or(0) > 0,
            "{k} missing from {by_kind:?}"
        );
    }
    let total_failed: u64 = by_kind.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total_failed, j["failed"].as_u64().unwrap());
    assert_eq!(j["completed"].as_u64().unwrap() + total_failed, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_never_written_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(SimConfig {
        fault_error_rate: 0.5,
        ..fast_sim()
    })
    .await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--api-key",
            "sk-do-not-leak-42",
            "--num-prompts",
            "6",
            "--input-len",
            "8",
            "--output-len",
            "4",
            "--save-detailed",
            "--no-preflight",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("sk-do-not-leak-42"));
    }
}
