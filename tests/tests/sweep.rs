//! `benchctl sweep` against `benchctl sim` set so that the boundary is known in advance: a KV
//! cache of 960 tokens holds K = floor(960 / (P + M)) requests at once — 10 of 64x32, 5 of
//! 128x64 — and beyond K requests queue for a whole request (32 or 64 decode steps of 3 ms), so
//! the p99 TTFT jumps from a few ms to ≥ 90 ms. A `p99_ttft:45` threshold then passes exactly up
//! to K.

use std::path::Path;

use benchctl_tests::{SimConfig, SimServer, sim_requests, start, sweep};
use loadgen::RequestRecord;
use serde_json::Value;

fn capacity_sim() -> SimConfig {
    SimConfig {
        kv_cache_tokens: 960,
        decode_step_base_ms: 3.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    }
}

const GRID: &[&str] = &[
    "--io",
    "64x32,128x64",
    "--concurrency",
    "1,2,4,8,16,32",
    "--prompts-per-concurrency",
    "3",
    "--min-prompts",
    "6",
    "--threshold",
    "p99_ttft:45",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = GRID.to_vec();
    v.extend_from_slice(extra);
    v
}

fn u(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn tested(c: &Value) -> Vec<u64> {
    c["tested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisect_finds_the_simulators_capacity_per_combination() {
    let sim = start(capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(&sim.base_url(), root.path(), &args(&["--search", "bisect"])).await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let a = run.combination(64, 32);
    let b = run.combination(128, 64);
    assert_eq!(
        (u(&a["max_passing"]), u(&a["first_failing"])),
        (Some(10), Some(11)),
        "{a}"
    );
    assert_eq!(
        (u(&b["max_passing"]), u(&b["first_failing"])),
        (Some(5), Some(6)),
        "{b}"
    );
    assert!(
        a["bound_by"][0].as_str().unwrap().starts_with("p99_ttft"),
        "the threshold that bound is named: {a}"
    );
    // Without bisection, finding the exact boundary means walking every integer concurrency up
    // to the first failure (K + 1 tests per combination); the grid at that resolution has 32.
    let tests = run.results().len();
    assert_eq!(tests, tested(&a).len() + tested(&b).len());
    assert!(
        tests < 11 + 6,
        "{tests} tests: {:?} {:?}",
        tested(&a),
        tested(&b)
    );
    assert_eq!(tested(&a), vec![1, 2, 4, 8, 16, 12, 10, 11]);
    // every test is in the array exactly once, with its verdict
    for e in run.results() {
        let c = e["concurrency"].as_u64().unwrap();
        let k = if e["input_len"] == 64 { 10 } else { 5 };
        assert_eq!(e["threshold_pass"], Value::Bool(c <= k), "{e}");
        assert_eq!(e["completed"].as_u64(), e["num_prompts"].as_u64());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ascending_is_the_seeds_walk_and_skips_the_rest() {
    let sim = start(capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &args(&["--search", "ascending"]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let a = run.combination(64, 32);
    let b = run.combination(128, 64);
    assert_eq!(
        (u(&a["max_passing"]), u(&a["first_failing"])),
        (Some(8), Some(16))
    );
    assert_eq!(
        (u(&b["max_passing"]), u(&b["first_failing"])),
        (Some(4), Some(8))
    );
    assert_eq!(tested(&a), vec![1, 2, 4, 8, 16]);
    assert_eq!(a["skipped"], serde_json::json!([32]));
    assert_eq!(b["skipped"], serde_json::json!([16, 32]));
    assert_eq!(run.results().len(), 5 + 4);
    let csv = std::fs::read_to_string(run.dir().join("summary.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with(
        "input_len,output_len,status,max_passing_concurrency,first_failing_concurrency,bound_by"
    ));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("64,32,done,8,16,\"p99_ttft")
    );
    assert!(lines.next().unwrap().starts_with("128,64,done,4,8,"));
    let md = std::fs::read_to_string(run.dir().join("summary.md")).unwrap();
    assert!(
        md.contains("SIMULATOR") && md.contains("| 64 | 32 | 8 | 16 |"),
        "{md}"
    );
}

fn records(dir: &Path, test: &str) -> Vec<RequestRecord> {
    std::fs::read_to_string(dir.join("requests").join(format!("{test}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_confirm_the_boundary_on_pooled_requests() {
    let sim = start(capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "128x64",
            "--concurrency",
            "2,4,8",
            "--prompts-per-concurrency",
            "3",
            "--min-prompts",
            "6",
            "--threshold",
            "p99_ttft:45",
            "--search",
            "bisect",
            "--repeats",
            "3",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let c = run.combination(128, 64);
    assert_eq!(
        (u(&c["max_passing"]), u(&c["first_failing"])),
        (Some(5), Some(6))
    );
    let runs = |conc: u64| {
        run.results()
            .iter()
            .filter(|e| e["concurrency"] == conc)
            .map(|e| e["run"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(runs(5), vec![1, 2, 3], "the boundary runs three times");
    assert_eq!(runs(6), vec![1, 2, 3]);
    assert_eq!(runs(2), vec![1], "the rest once");
    // the verdict and the summary's percentiles are of the three runs' requests pooled
    let pooled: Vec<RequestRecord> = ["c5_in128_out64", "c5_in128_out64_r2", "c5_in128_out64_r3"]
        .iter()
        .flat_map(|t| records(run.dir(), t))
        .collect();
    assert_eq!(pooled.len(), 3 * 15);
    let s = loadgen::report::summarize(&pooled, &[99.0], &[]);
    let p99 = s.metrics[&loadgen::report::Metric::Ttft].get(99.0).unwrap();
    let point = c["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["concurrency"] == 5)
        .unwrap()
        .clone();
    assert_eq!(point["runs"], 3);
    assert_eq!(point["completed"], 45);
    assert!(
        (point["p99_ttft_ms"].as_f64().unwrap() - p99).abs() < 1e-9,
        "{point}"
    );
    // the original scripts' GPU directory for run 1, suffixed for later runs; a log per run
    for t in ["c5_in128_out64", "c5_in128_out64_r2", "c5_in128_out64_r3"] {
        assert!(
            run.dir()
                .join("client_log")
                .join(format!("{t}.log"))
                .is_file()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_directory_files_and_log_columns() {
    let sim = start(capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "64x32",
            "--concurrency",
            "1,2",
            "--num-prompts",
            "6",
            "--dtype",
            "fp16",
            "--gpu-num",
            "2",
            "--telemetry-source",
            "simulated",
            "--telemetry-interval",
            "50ms",
            "--metadata",
            "gpu=none,server=sim",
            "--gpu-hour-cost",
            "2.5",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    frontier_is_per_gpu_and_costed(&run.summary(), run.dir());
    let name = run
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (head, ts) = name.split_at("benchctl-sim_tp2_dtypefp16_".len());
    assert_eq!(head, "benchctl-sim_tp2_dtypefp16_", "{name}");
    assert!(
        ts.len() == 15
            && ts.as_bytes()[8] == b'_'
            && ts.replace('_', "").bytes().all(|b| b.is_ascii_digit()),
        "<YYYYmmdd_HHMMSS>: {ts}"
    );
    let array = run.dir().join("benchctl-sim_vllm_result.json");
    let results: Vec<Value> = serde_json::from_slice(&std::fs::read(&array).unwrap()).unwrap();
    assert_eq!(results.len(), 2, "one object per test");
    for (e, c) in results.iter().zip([1, 2]) {
        assert_eq!(e["concurrency"], c);
        assert_eq!(
            (e["input_len"].as_u64(), e["output_len"].as_u64()),
            (Some(64), Some(32))
        );
        for k in [
            "date",
            "backend",
            "model_id",
            "num_prompts",
            "max_concurrency",
            "duration",
            "completed",
            "request_throughput",
            "output_throughput",
            "mean_ttft_ms",
            "p99_tpot_ms",
            "median_e2el_ms",
            "gpu_utilization_mean_pct",
            "gpu_memory_used_mean_mib",
            "gpu_temperature_mean_c",
            "gpu_seed_filter_utilization_pct",
        ] {
            assert!(e.get(k).is_some(), "{k} missing from {e}");
        }
        assert_eq!(e["gpu_telemetry_simulated"], true);
        assert_eq!(e["gpu_telemetry_incomplete"], false, "{e}");
        assert!(e["gpu_telemetry_coverage"].as_f64().unwrap() > 0.9);
        assert_eq!(e["metadata"]["server"], "sim");
        let gpu = run.dir().join(format!("gpu_utilization_c{c}_in64_out32"));
        let raw = std::fs::read_to_string(gpu.join("raw.log")).unwrap();
        let header = raw.lines().find(|l| l.starts_with("# time_s")).unwrap();
        assert_eq!(
            header,
            "# time_s\tmemory_used_mib\tgpu_utilization_pct\ttemperature_c\tmemory_used_pct\tpower_w"
        );
        let rows: Vec<&str> = raw.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(!rows.is_empty(), "samples in {raw}");
        assert!(rows.iter().all(|r| r.split('\t').count() == 6));
        let samples = std::fs::read_to_string(gpu.join("samples.csv")).unwrap();
        let mut lines = samples.lines();
        assert_eq!(
            lines.next(),
            Some("unix_s,node,gpu,utilization_pct,memory_used_mib,temperature_c,power_w")
        );
        let (t0, t1) = (
            e["started_at_unix_s"].as_f64().unwrap(),
            e["ended_at_unix_s"].as_f64().unwrap(),
        );
        assert!(t1 > t0);
        for l in lines {
            let t: f64 = l.split(',').next().unwrap().parse().unwrap();
            assert!(
                t >= t0 - 0.01 && t <= t1 + 0.01,
                "a sample at {t} outside [{t0}, {t1}]"
            );
        }
        assert_eq!(
            samples.lines().filter(|l| l.contains(",1,")).count(),
            samples.lines().filter(|l| l.contains(",0,")).count(),
            "both GPUs sampled"
        );
        let result = std::fs::read_to_string(gpu.join("result.log")).unwrap();
        assert!(result.contains("SIMULATED"), "{result}");
        // the original scripts' filter, then its averages: polls, kept, memory, utilisation, temperature
        assert!(result.contains(
            "# filter: gpu_utilization_pct > 10 and std of memory_used_pct across GPUs < 2"
        ));
        assert!(
            result.contains("# polls\tkept\tmemory_used_mib\tgpu_utilization_pct\ttemperature_c"),
            "{result}"
        );
        let row = result
            .lines()
            .find(|l| !l.starts_with('#'))
            .expect("a data row");
        assert_eq!(row.split('\t').count(), 5, "{row}");
        let log = std::fs::read_to_string(
            run.dir()
                .join("client_log")
                .join(format!("c{c}_in64_out32.log")),
        )
        .unwrap();
        assert!(
            log.contains("Serving Benchmark Result") || log.contains("Successful requests"),
            "{log}"
        );
    }
    for f in [
        "summary.csv",
        "summary.md",
        "summary.json",
        "benchctl_sweep.json",
    ] {
        assert!(run.dir().join(f).is_file(), "{f}");
    }
    assert!(
        run.summary()["gpu_telemetry"]
            .as_str()
            .unwrap()
            .starts_with("SIMULATED"),
        "{}",
        run.summary()
    );
    // the result array follows the published schema
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/result.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for e in &results {
        if let Err(err) = v.validate(e) {
            panic!("a sweep result breaks docs/result.schema.json: {err}");
        }
    }
}

/// Both GPUs the (simulated) agent saw busy count in the "per GPU"; the cost is 2 × 2.5 per
/// hour over the output throughput; the points are in summary.json and frontier.csv.
fn frontier_is_per_gpu_and_costed(summary: &Value, dir: &Path) {
    let c = &summary["combinations"][0];
    let points = c["frontier"].as_array().expect("frontier in summary.json");
    assert_eq!(points.len(), 2, "{c}");
    for (f, p) in points.iter().zip(c["points"].as_array().unwrap()) {
        assert_eq!(f["gpus"], 2.0, "{f}");
        assert_eq!(f["gpus_from"], "telemetry");
        let out = p["output_throughput"].as_f64().unwrap();
        let per_gpu = f["output_tok_s_per_gpu"].as_f64().unwrap();
        assert!((per_gpu - out / 2.0).abs() < 1e-9, "{f}");
        let cost = f["cost_per_million_output_tokens"].as_f64().unwrap();
        assert!((cost - 5.0 / 3600.0 / out * 1e6).abs() < 1e-6, "{f}");
        let tpot = p["pooled"]["mean_tpot_ms"].as_f64().unwrap();
        assert!((f["tok_s_per_user"].as_f64().unwrap() - 1000.0 / tpot).abs() < 1e-9);
        assert!(
            f["tok_s_per_user_p90"].as_f64().is_some(),
            "p90 TPOT pooled"
        );
    }
    assert!(points.iter().any(|p| p["on_frontier"] == true));
    let csv = std::fs::read_to_string(dir.join("frontier.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        std::fs::read_to_string(dir.join("summary.csv"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .ends_with("cost_per_million_output_tokens,frontier_concurrencies")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_statistics_absent_or_required() {
    // This machine has no NVIDIA driver (as CI): without --gpu-num the sweep runs and says so.
    let sim = start(capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &["--io", "64x32", "--concurrency", "1", "--num-prompts", "3"],
    )
    .await;
    run.result
        .as_ref()
        .expect("the sweep runs without GPU statistics");
    let note = run.summary()["gpu_telemetry"].as_str().unwrap().to_string();
    assert!(
        note.starts_with("absent") && note.contains("NVML"),
        "{note}"
    );
    assert!(run.results()[0].get("gpu_utilization_mean_pct").is_none());
    assert!(!run.dir().join("gpu_utilization_c1_in64_out32").exists());

    // --gpu-num N with no driver: a clear error before any load, no directory
    let before = sim_requests(&sim).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &["--io", "64x32", "--gpu-num", "2"],
    )
    .await;
    let e = format!("{:#}", run.result.unwrap_err());
    assert!(e.contains("NVML") && e.contains("--gpu-num"), "{e}");
    assert!(run.dir.is_none());
    assert_eq!(sim_requests(&sim).await, before, "no request was sent");
    sim.shutdown().await;
}

/// `--require-max-passing N` in one process: the sweep's verdict decides the exit, and a
/// combination below N is named (128x64 passes up to 4 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_on_the_largest_passing_concurrency_decides_the_exit() {
    let sim = start(capacity_sim()).await;
    let grid = [
        "--io",
        "128x64",
        "--concurrency",
        "1,2,4,8",
        "--prompts-per-concurrency",
        "3",
        "--min-prompts",
        "6",
        "--threshold",
        "p99_ttft:45",
        "--search",
        "ascending",
    ];
    let root = tempfile::tempdir().unwrap();
    let mut met = grid.to_vec();
    met.extend(["--require-max-passing", "4"]);
    let run = sweep(&sim.base_url(), root.path(), &met).await;
    assert_eq!(
        run.result.as_ref().expect("a gate met"),
        &std::process::ExitCode::SUCCESS
    );
    assert_eq!(u(&run.combination(128, 64)["max_passing"]), Some(4));
    let root = tempfile::tempdir().unwrap();
    let mut missed = grid.to_vec();
    missed.extend(["--require-max-passing", "5"]);
    let run = sweep(&sim.base_url(), root.path(), &missed).await;
    sim.shutdown().await;
    let e = format!("{:#}", run.result.as_ref().expect_err("a gate missed"));
    assert_eq!(
        e,
        "the sweep is done, but --require-max-passing 5: 1 of 1 IO combinations fall short: input 128 / output 64 passed up to concurrency 4"
    );
    // the results are kept all the same
    assert_eq!(run.results().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_stop_before_any_load() {
    let sim = start(capacity_sim()).await;
    for (bad, says) in [
        (vec!["--threshold", "ttft:fast"], "ttft:fast"),
        (vec!["--threshold", "latency:400"], "\"latency\""),
        (vec!["--io", "64by32"], "--io"),
        (
            vec!["--max-error-rate", "1.5", "--threshold", "ttft:1"],
            "--max-error-rate",
        ),
        (vec!["--percentiles", "101"], "101"),
        (
            vec!["--require-max-passing", "2"],
            "--require-max-passing 2 needs --threshold",
        ),
    ] {
        let root = tempfile::tempdir().unwrap();
        let run = sweep(&sim.base_url(), root.path(), &bad).await;
        let e = format!("{:#}", run.result.unwrap_err());
        assert!(e.contains(says), "{bad:?}: {e}");
        assert!(run.dir.is_none(), "{bad:?} made a directory");
    }
    assert_eq!(sim_requests(&sim).await, 0, "no request was sent");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_fails_everything_stops_the_sweep_with_the_failures_counted() {
    let sim = SimServer::start(SimConfig {
        fault_error_rate: 1.0,
        ..capacity_sim()
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "64x32",
            "--concurrency",
            "1,2,4",
            "--num-prompts",
            "4",
            "--threshold",
            "ttft:100",
            "--no-preflight",
        ],
    )
    .await;
    sim.shutdown().await;
    let e = format!("{:#}", run.result.as_ref().unwrap_err());
    assert!(
        e.contains("every request of test c1_in64_out32 failed") && e.contains("--resume"),
        "{e}"
    );
    let results = run.results();
    assert_eq!(
        results.len(),
        1,
        "the failed test is kept, the rest not run"
    );
    assert_eq!(results[0]["failed"], 4);
    assert_eq!(results[0]["failed_by_kind"]["http_5xx"], 4);
    assert_eq!(results[0]["threshold_pass"], false);
    assert_eq!(results[0]["aborted"], "every request failed");
    assert_eq!(run.summary()["status"], "failed");

    // the server is back: --resume runs the aborted test again instead of taking it as a verdict
    let healthy = start(capacity_sim()).await;
    let dir = run.dir().display().to_string();
    let again = sweep(&healthy.base_url(), root.path(), &["--resume", &dir]).await;
    healthy.shutdown().await;
    again.result.as_ref().expect("the resumed sweep succeeds");
    let results = again.results();
    let cs: Vec<u64> = results
        .iter()
        .map(|e| e["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(cs, vec![1, 2, 4], "c=1 once, rerun, then the rest");
    assert!(
        results
            .iter()
            .all(|e| e.get("aborted").is_none() && e["completed"] == 4)
    );
    assert_eq!(again.combination(64, 32)["max_passing"], 4);
}

/// `--workers 3` in local mode: three in-process workers share every test; each test records
/// who ran it (records adding up to the test's prompts) and the spread of their starts, which
/// begin together after the warm-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_each_test_and_the_start_skew_is_recorded() {
    let sim = start(SimConfig::default()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "32x16",
            "--concurrency",
            "3,6",
            "--num-prompts",
            "12",
            "--workers",
            "3",
        ],
    )
    .await;
    run.result.as_ref().expect("the sweep succeeds");
    let entries = run.results();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        let w = e["load_workers"].as_array().unwrap();
        assert_eq!(w.len(), 3, "{e}");
        let total: u64 = w.iter().map(|w| w["records"].as_u64().unwrap()).sum();
        assert_eq!(total, 12);
        assert!(w.iter().all(|w| w["records"] == 4), "an even split: {w:?}");
        let skew = e["start_skew_ms"].as_f64().unwrap();
        eprintln!("{}: start skew {skew:.3} ms", e["test_id"]);
        // one process, one clock: the common start holds to a few ms (a loose bound for a busy
        // machine; `worker.rs` has the exact check)
        assert!((0.0..100.0).contains(&skew), "start skew {skew} ms");
        assert_eq!(e["completed"], 12);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_under_max_memory_spills_and_pools_the_same_numbers() {
    // 16 requests of 4,000 tokens a test: about 1.3 MB of records, over a 1 MiB budget
    let sim = start(SimConfig {
        decode_step_base_ms: 0.05,
        decode_step_per_seq_us: 2.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "16x4000",
            "--concurrency",
            "8",
            "--prompts-per-concurrency",
            "2",
            "--min-prompts",
            "16",
            "--threshold",
            "p99_ttft:100000",
            "--repeats",
            "2",
            "--max-memory",
            "1MiB",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let results = run.results();
    assert_eq!(results.len(), 2, "c8 twice");
    for e in &results {
        assert_eq!(e["completed"], 16);
        assert_eq!(e["max_memory_bytes"], 1u64 << 20);
        assert!(e["records_spilled"].as_u64().unwrap() > 0, "{e}");
        assert!(e["records_bytes_peak"].as_u64().unwrap() < 2 << 20, "{e}");
    }
    // the point's numbers are those of both runs' records pooled, summarised in memory
    let pooled: Vec<RequestRecord> = ["c8_in16_out4000", "c8_in16_out4000_r2"]
        .iter()
        .flat_map(|t| records(run.dir(), t))
        .collect();
    assert_eq!(pooled.len(), 32);
    let s = loadgen::report::summarize(&pooled, &[99.0], &[]);
    let point = run.combination(16, 4000)["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["concurrency"] == 8)
        .unwrap()
        .clone();
    assert_eq!(
        (point["runs"].clone(), point["completed"].clone()),
        (2.into(), 32.into())
    );
    for m in [
        loadgen::report::Metric::Ttft,
        loadgen::report::Metric::Tpot,
        loadgen::report::Metric::Itl,
        loadgen::report::Metric::E2el,
    ] {
        let (d, k) = (&s.metrics[&m], m.key());
        let pooled = &point["pooled"];
        assert_eq!(
            pooled[format!("p99_{k}_ms")],
            d.get(99.0).unwrap(),
            "{point}"
        );
        assert_eq!(pooled[format!("median_{k}_ms")], d.median, "{point}");
        assert_eq!(pooled[format!("mean_{k}_ms")], d.mean, "{point}");
    }
}
