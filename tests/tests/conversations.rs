//! Conversations against the simulator: each turn's prompt is the previous prompt plus the
//! server's answer plus the new message; think times are honoured; sessions are the unit of
//! concurrency.

use std::collections::BTreeMap;

use benchctl_tests::{bench, fast_sim, start};
use loadgen::RequestRecord;

/// The records grouped by session (the request id without its turn), each in turn order.
fn sessions(records: &[RequestRecord]) -> BTreeMap<String, Vec<&RequestRecord>> {
    let mut by: BTreeMap<String, Vec<&RequestRecord>> = BTreeMap::new();
    for r in records {
        let (session, _) = r.request_id.rsplit_once('-').unwrap();
        by.entry(session.to_string()).or_default().push(r);
    }
    for turns in by.values_mut() {
        turns.sort_by_key(|r| r.turn);
    }
    by
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--endpoint",
        "/v1/chat/completions",
        "--dataset",
        "conversations",
        "--input-len",
        "32",
        "--output-len",
        "16",
    ];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_prompt_is_the_last_one_plus_its_answer_plus_the_new_message() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let tok = benchctl_tests::write_tokenizer(dir.path());
    let tok = tok.to_str().unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--turns",
            "4",
            "--num-prompts",
            "6",
            "--max-concurrency",
            "3",
            "--save-detailed",
            "--tokenizer",
            tok,
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    assert_eq!(run.records.len(), 24, "6 sessions of 4 turns");
    let by = sessions(&run.records);
    assert_eq!(by.len(), 6);
    // The sim's chat template adds the same tokens around every new message and answer; the
    // answer is counted as the sim's tokenizer counts its text (the client's count, the same
    // tokenizer), which is what the next prompt holds.
    let mut overheads = vec![];
    for turns in by.values() {
        assert_eq!(turns.len(), 4);
        for w in turns.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(a.ok() && b.ok());
            let grown = b.prompt_tokens_server.unwrap()
                - a.prompt_tokens_server.unwrap()
                - a.output_tokens_client.unwrap()
                - 32;
            overheads.push(grown);
            assert!(!a.text.is_empty(), "the answer is in the history");
        }
    }
    // The template's tokens (15 with the sim's tokenizer), give or take a merge where a
    // message meets the template; exact per turn in the file test below.
    let least = *overheads.iter().min().unwrap();
    assert!(
        overheads.iter().all(|&o| o - least <= 2) && least <= 16,
        "every turn grows by its answer and message plus the template's tokens: {overheads:?}"
    );
    let j = run.json();
    assert_eq!(
        (j["sessions"].as_u64(), j["sessions_completed"].as_u64()),
        (Some(6), Some(6))
    );
    let prompts: Vec<f64> = j["mean_prompt_tokens_by_turn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(prompts.len(), 4);
    assert!(
        prompts.windows(2).all(|w| w[1] > w[0] + 32.0),
        "{prompts:?}"
    );
    assert_eq!(j["mean_ttft_ms_by_turn"].as_array().unwrap().len(), 4);
    assert_eq!(j["num_prompts"], 24, "every turn is a request");
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/result.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(j).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_time_separates_an_answer_from_the_next_turn() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--turns",
            "3",
            "--num-prompts",
            "2",
            "--think-time",
            "150ms",
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    for turns in sessions(&run.records).values() {
        for w in turns.windows(2) {
            let gap_ms = (w[1].send_ns - w[0].end_ns) as f64 / 1e6;
            assert!((150.0..200.0).contains(&gap_ms), "think time {gap_ms} ms");
            let planned_ms = (w[1].intended_ns - w[0].end_ns) as f64 / 1e6;
            assert!(
                (150.0..160.0).contains(&planned_ms),
                "planned {planned_ms} ms"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_the_unit_of_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--turns",
            "uniform:2:4",
            "--num-prompts",
            "8",
            "--max-concurrency",
            "3",
            "--think-time",
            "20ms",
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let by = sessions(&run.records);
    assert_eq!(by.len(), 8);
    assert!(by.values().all(|t| (2..=4).contains(&t.len())));
    // sessions in flight: from the first turn's send to the last turn's end
    let mut ev: Vec<(u64, i32)> = vec![];
    for turns in by.values() {
        ev.push((turns[0].send_ns, 1));
        ev.push((turns.last().unwrap().end_ns, -1));
    }
    ev.sort();
    let (mut cur, mut max) = (0, 0);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    assert_eq!(max, 3, "3 sessions in flight at most, and at once");
    // a session waits for a slot, then its turns never queue
    for turns in by.values() {
        assert!(turns[1..].iter().all(|r| r.queue_ns() < 1_000_000));
    }
}

/// The simulator's ChatML rendering of `messages` (user, assistant, user…), as it counts it.
fn chatml(messages: &[&str]) -> String {
    let mut out = String::new();
    for (m, role) in messages.iter().zip(["user", "assistant"].iter().cycle()) {
        out.push_str(&format!("<|im_start|>{role}\n{m}<|im_end|>\n"));
    }
    out + "<|im_start|>assistant\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_conversations_is_replayed_with_the_real_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("convs.jsonl");
    let convs = [
        vec!["Hello there, how are you?", "Tell me more.", "And then?"],
        vec!["What is a prefix cache?", "Why does it matter?"],
    ];
    let mut jsonl = String::new();
    for c in &convs {
        let msgs: Vec<_> = c
            .iter()
            .flat_map(|u| {
                [
                    serde_json::json!({"from": "human", "value": u}),
                    serde_json::json!({"from": "gpt", "value": "ignored: the server answers"}),
                ]
            })
            .collect();
        jsonl += &format!("{}\n", serde_json::json!({"conversations": msgs}));
    }
    std::fs::write(&file, jsonl).unwrap();
    let tok_path = benchctl_tests::write_tokenizer(dir.path());
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--dataset-path",
            file.to_str().unwrap(),
            "--num-prompts",
            "2",
            "--save-detailed",
            "--tokenizer",
            tok_path.to_str().unwrap(),
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let tok = loadgen::Tokenizer::from_path(&tok_path).unwrap();
    let by = sessions(&run.records);
    assert_eq!(by.len(), 2);
    for turns in by.values() {
        let users = convs.iter().find(|c| c.len() == turns.len()).unwrap();
        let mut history: Vec<&str> = vec![];
        for (k, r) in turns.iter().enumerate() {
            history.push(users[k]);
            let expected = tok.encode(&chatml(&history)).await.unwrap().len() as u32;
            assert_eq!(
                r.prompt_tokens_server,
                Some(expected),
                "turn {k}: the history with the server's real answers"
            );
            history.push(&r.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_on_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--turns",
            "3",
            "--num-prompts",
            "6",
            "--max-concurrency",
            "4",
            "--workers",
            "2",
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let workers = run.json()["load_workers"].as_array().unwrap().clone();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(
        workers.iter().all(|w| w["records"] == 9),
        "3 sessions of 3 turns each: {workers:?}"
    );
    // a session's id names its worker: every session has all its turns under one id
    let by = sessions(&run.records);
    assert_eq!(by.len(), 6);
    assert!(
        by.values()
            .all(|t| t.len() == 3 && t.iter().enumerate().all(|(k, r)| r.turn == Some(k as u32)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_rate_schedules_session_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &args(&[
            "--turns",
            "2",
            "--num-prompts",
            "5",
            "--request-rate",
            "20",
            "--think-time",
            "10ms",
        ]),
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let by = sessions(&run.records);
    let mut arrivals: Vec<u64> = by.values().map(|t| t[0].intended_ns).collect();
    arrivals.sort();
    arrivals.dedup();
    assert_eq!(arrivals.len(), 5, "each session its own arrival");
    for turns in by.values() {
        assert!(turns[0].dispatch_lag_ns() < 20_000_000, "on schedule");
        // the second turn is paced by the first answer and the think time, not by the rate
        assert!(turns[1].intended_ns >= turns[0].end_ns + 10_000_000);
    }
}
