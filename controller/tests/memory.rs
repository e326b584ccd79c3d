//! `--max-memory`: `benchctl bench` (the binary) against the simulator with long outputs. Past
//! the budget the records spill to disk, the run says so on stderr, and the metrics computed
//! from the spilled records are those of the same records in memory; the spill file leaves
//! nothing behind; a bad budget is refused with the flag's name.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use loadgen::RequestRecord;
use loadgen::report::{Metric, summarize};
use loadgen::stats::percentile_label;

const HANG: Duration = Duration::from_secs(180);
const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

struct Run {
    ok: bool,
    stderr: String,
    json: serde_json::Value,
    records: Vec<RequestRecord>,
}

/// 32 requests of 3,000 output tokens at concurrency 16 (about 60 KB of records each, 2 MB in
/// all), with their text written (`--save-detailed`), plus `extra`.
async fn bench(base_url: &str, dir: &Path, extra: &[&str]) -> Run {
    let tok = dir.join("tokenizer.json");
    std::fs::write(&tok, sim::TOKENIZER_JSON).unwrap();
    let result = dir.join("result.json");
    let mut cmd = tokio::process::Command::new(common::BIN);
    cmd.args([
        "bench",
        "--base-url",
        base_url,
        "--model-name",
        "benchctl-sim",
    ])
    .arg("--tokenizer")
    .arg(&tok)
    .args(["--num-prompts", "32", "--max-concurrency", "16"])
    .args(["--input-len", "16", "--output-len", "3000", "--seed", "3"])
    .args([
        "--percentiles",
        "50,90,99,99.9",
        "--save-detailed",
        "--quiet",
    ])
    .arg("--save-result")
    .arg(&result)
    .args(extra)
    .env_remove("OPENAI_API_KEY")
    .env_remove("BENCHCTL_MAX_MEMORY")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(HANG, cmd.output())
        .await
        .expect("benchctl ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = std::fs::read(&result)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_else(|_| panic!("a result was written; stderr: {stderr}"));
    let records = std::fs::read_to_string(controller::output::records_path(&result))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Run {
        ok: out.status.success(),
        stderr,
        json,
        records,
    }
}

/// Every metric's count, mean, median, std and percentiles, the counts and the token totals of
/// `j` equal those computed in memory from `records`.
fn assert_same_metrics(j: &serde_json::Value, records: &[RequestRecord]) {
    let s = summarize(records, &PERCENTILES, &[]);
    assert_eq!(j["completed"].as_u64().unwrap() as usize, s.completed);
    assert_eq!(j["failed"].as_u64().unwrap() as usize, s.failed);
    assert_eq!(j["total_input_tokens"], s.total_input_tokens);
    assert_eq!(j["total_output_tokens"], s.total_output_tokens);
    assert_eq!(j["max_output_tokens_per_s"], s.max_output_tokens_per_s);
    assert_eq!(j["max_concurrent_requests"], s.max_concurrent_requests);
    let mut compared = 0;
    for m in Metric::ALL {
        let Some(d) = s.metrics.get(&m) else {
            continue;
        };
        let k = m.key();
        assert_eq!(j[format!("mean_{k}_ms")], d.mean, "mean {k}");
        assert_eq!(j[format!("median_{k}_ms")], d.median, "median {k}");
        assert_eq!(j[format!("std_{k}_ms")], d.std, "std {k}");
        for (p, v) in &d.percentiles {
            assert_eq!(
                j[format!("p{}_{k}_ms", percentile_label(*p))],
                *v,
                "p{p} {k}"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 6 * PERCENTILES.len(),
        "{compared} percentiles compared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_max_memory_spill_and_give_the_same_metrics() {
    let sim = sim::SimServer::start(sim::SimConfig {
        decode_step_base_ms: 0.1,
        decode_step_per_seq_us: 5.0,
        prefill_us_per_token: 1.0,
        ..sim::SimConfig::default()
    })
    .await
    .unwrap();
    let url = sim.base_url();

    let budget = 1u64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let spilled = bench(&url, dir.path(), &["--max-memory", "1MiB"]).await;
    assert!(spilled.ok, "{}", spilled.stderr);
    let j = &spilled.json;
    assert_eq!(j["completed"], 32, "{}", spilled.stderr);
    assert_eq!(j["total_output_tokens"], 32 * 3000);
    assert_eq!(j["max_memory_bytes"], budget);
    let n_spilled = j["records_spilled"].as_u64().unwrap();
    assert!(
        n_spilled > 0 && n_spilled < 32,
        "some records spilled, not all: {n_spilled}"
    );
    assert!(j["records_spilled_bytes"].as_u64().unwrap() > 0);
    assert!(
        spilled.stderr.contains("--max-memory") && spilled.stderr.contains("spill"),
        "spilling is said on stderr: {}",
        spilled.stderr
    );
    // the records in memory never exceeded the budget by more than the record being kept
    let largest = spilled
        .records
        .iter()
        .map(loadgen::store::record_bytes)
        .max()
        .unwrap();
    let peak = j["records_bytes_peak"].as_u64().unwrap();
    eprintln!(
        "--max-memory 1MiB: peak {peak} B in memory, {n_spilled} of 32 records spilled ({} B), largest record {largest} B",
        j["records_spilled_bytes"]
    );
    assert!(
        peak <= budget + largest && peak > budget / 2,
        "peak {peak} B, budget {budget} B, largest record {largest} B"
    );
    // the metrics from the spilled records are those of the same records in memory
    assert_eq!(spilled.records.len(), 32);
    assert_same_metrics(j, &spilled.records);
    // the spill file was unlinked from the start: only the result files are left
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["result.json", "result.requests.jsonl", "tokenizer.json"]
    );

    // the same seeded run without a budget: nothing spilled, the same counts and tokens
    let dir2 = tempfile::tempdir().unwrap();
    let all = bench(&url, dir2.path(), &["--max-memory", "off"]).await;
    assert!(all.ok, "{}", all.stderr);
    let k = &all.json;
    assert_eq!(k["records_spilled"], 0);
    assert_eq!(k["records_spilled_bytes"], 0);
    assert!(k["max_memory_bytes"].is_null());
    assert!(k["records_bytes_peak"].as_u64().unwrap() > budget);
    for key in [
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
    ] {
        assert_eq!(j[key], k[key], "{key}");
    }
    assert_same_metrics(k, &all.records);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_max_memory_names_the_flag_and_the_value() {
    for (value, says) in [
        ("10KiB", "below the least budget"),
        ("lots", "is not a size"),
        ("3 parsecs", "unknown unit"),
    ] {
        let out = tokio::process::Command::new(common::BIN)
            .args(["bench", "--base-url", "http://127.0.0.1:9"])
            .args(["--max-memory", value])
            .env_remove("BENCHCTL_MAX_MEMORY")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("--max-memory") && stderr.contains(value) && stderr.contains(says),
            "{stderr}"
        );
    }
}
