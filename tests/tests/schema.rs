//! The result file's contract: docs/result.schema.json, and vLLM's key names.

use benchctl_tests::{bench, fast_sim, start};

fn schema() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/result.schema.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The keys `vllm bench serve --save-result` writes (vLLM 0.11), minus the per-request lists
/// that need --save-detailed.
const VLLM_KEYS: &[&str] = &[
    "date",
    "backend",
    "model_id",
    "tokenizer_id",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "duration",
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
    "max_concurrent_requests",
    "mean_ttft_ms",
    "median_ttft_ms",
    "std_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "std_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "std_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "median_e2el_ms",
    "std_e2el_ms",
    "p99_e2el_ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_files_match_the_schema_and_carry_vllms_keys() {
    let validator = jsonschema::validator_for(&schema()).expect("the schema is valid JSON Schema");
    let dir = tempfile::tempdir().unwrap();
    let sim = start(sim::SimConfig {
        fault_error_rate: 0.3,
        ..fast_sim()
    })
    .await;
    for extra in [
        &["--goodput", "ttft:500", "tpot:50"][..],
        &[
            "--save-detailed",
            "--request-rate",
            "200",
            "--percentiles",
            "99,99.9",
        ][..],
    ] {
        let mut args = vec![
            "--num-prompts",
            "12",
            "--max-concurrency",
            "4",
            "--input-len",
            "16",
            "--output-len",
            "6",
            "--no-preflight",
        ];
        args.extend_from_slice(extra);
        let run = bench(&sim.base_url(), dir.path(), &args).await;
        run.result.as_ref().unwrap();
        let j = run.json();
        let errors: Vec<String> = validator
            .iter_errors(j)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        for k in VLLM_KEYS {
            assert!(j.get(*k).is_some(), "vLLM key {k} missing");
        }
        for k in [
            "max_memory_bytes",
            "records_bytes_peak",
            "records_spilled_bytes",
            "records_spilled",
        ] {
            assert!(j.get(k).is_some(), "{k} missing");
        }
        assert!(j["records_bytes_peak"].as_u64().unwrap() > 0);
        assert!(j["failed"].as_u64().unwrap() > 0);
    }
    sim.shutdown().await;
}

#[test]
fn the_schema_rejects_what_it_should() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let mut doc = serde_json::Map::new();
    for k in schema()["required"].as_array().unwrap() {
        doc.insert(k.as_str().unwrap().into(), serde_json::Value::Null);
    }
    // nulls where numbers are required, and an unknown key, are errors
    doc.insert("completely_unknown".into(), 1.into());
    assert!(!validator.is_valid(&serde_json::Value::Object(doc)));
    assert!(!validator.is_valid(&serde_json::json!({})));
}
