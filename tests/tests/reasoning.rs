//! Reasoning and tool calls: TTFT counts the first generated token on any channel, TTFO only
//! visible content; checked against the simulator's own emission log.

use std::collections::HashMap;

use benchctl_tests::{bench, fast_sim, start};

const REASONING: usize = 8;
const OUTPUT: usize = 24;

/// Each request's content events' emission times, by request id, in order.
fn emissions(path: &std::path::Path) -> HashMap<String, Vec<u64>> {
    let mut by_req: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["kind"] == "content" {
            by_req
                .entry(e["request_id"].as_str().unwrap().to_string())
                .or_default()
                .push((e["seq"].as_u64().unwrap(), e["t_mono_ns"].as_u64().unwrap()));
        }
    }
    by_req
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.into_iter().map(|(_, t)| t).collect())
        })
        .collect()
}

fn chat_args(n: &str) -> Vec<&str> {
    vec![
        "--endpoint",
        "/v1/chat/completions",
        "--num-prompts",
        n,
        "--max-concurrency",
        "4",
        "--input-len",
        "32",
        "--output-len",
        "24",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttfo_trails_ttft_by_the_simulators_reasoning_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("emissions.jsonl");
    let sim = start(benchctl_tests::SimConfig {
        reasoning_tokens: REASONING,
        emission_log: Some(log.clone()),
        ..fast_sim()
    })
    .await;
    let run = bench(&sim.base_url(), dir.path(), &chat_args("24")).await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let sent = emissions(&log);
    let mut diffs = vec![];
    for r in &run.records {
        assert!(r.ok(), "{:?}", r.error);
        let t = &sent[&r.request_id];
        assert_eq!(
            r.chunks.len(),
            OUTPUT,
            "reasoning chunks are generated chunks"
        );
        assert_eq!(
            r.output_tokens(),
            OUTPUT as u32,
            "ITL and TPOT span every token"
        );
        assert_eq!(r.reasoning_tokens_server, Some(REASONING as u32));
        let (ttft, ttfo) = (r.ttft_ns().unwrap(), r.ttfo_ns().unwrap());
        assert!(ttft < ttfo, "{}: TTFT {ttft} ≥ TTFO {ttfo}", r.request_id);
        // the simulator's reasoning time: its first visible event minus its first event
        let reasoning_ns = t[REASONING] - t[0];
        // 8 decode steps of about 2 ms (the engine keeps an absolute step schedule)
        assert!(
            reasoning_ns >= REASONING as u64 * 1_000_000,
            "{reasoning_ns}"
        );
        diffs.push((ttfo - ttft) as i64 - reasoning_ns as i64);
        assert_eq!(
            r.hidden_text.len(),
            1,
            "the reasoning is one range: the text's prefix"
        );
        assert_eq!(r.hidden_text[0][0], 0);
    }
    diffs.sort();
    let median = diffs[diffs.len() / 2];
    assert!(
        median.abs() < 1_000_000,
        "median client − sim difference {median} ns"
    );
    assert!(
        diffs.iter().all(|d| d.abs() < 10_000_000),
        "each within a loaded machine's delivery delay: {diffs:?}"
    );
    let j = run.json();
    assert!(j["mean_ttfo_ms"].as_f64().unwrap() > j["mean_ttft_ms"].as_f64().unwrap());
    assert!(j["p99_ttfo_ms"].as_f64().is_some());
    assert_eq!(j["total_reasoning_tokens"], 24 * REASONING as u64);
    assert_eq!(
        j["total_visible_output_tokens"],
        24 * (OUTPUT - REASONING) as u64
    );
    assert_eq!(j["no_visible_output"], 0);
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/result.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        validator.is_valid(j),
        "the result matches docs/result.schema.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_are_generated_tokens_without_visible_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(benchctl_tests::SimConfig {
        reasoning_tokens: 4,
        tool_calls: true,
        tokens_per_chunk: 3,
        ..fast_sim()
    })
    .await;
    let run = bench(&sim.base_url(), dir.path(), &chat_args("8")).await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    for r in &run.records {
        assert!(r.ok(), "a tool call is an answer: {:?}", r.error);
        assert!(r.ttft_ns().is_some() && r.ttfo_ns().is_none());
        assert_eq!(r.visible_text(), "");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.output_tokens(), OUTPUT as u32);
        // 4 reasoning tokens in chunks of 3: the second step's chunk is cut in two events
        assert_eq!(r.chunks.len(), 9);
    }
    let j = run.json();
    assert_eq!(j["no_visible_output"], 8);
    assert!(j["mean_ttfo_ms"].is_null());
    assert!(j["mean_ttft_ms"].as_f64().is_some());
}
