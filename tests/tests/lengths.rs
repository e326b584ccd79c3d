//! Exact input lengths: the prompt tokens the simulator counts equal the targets, with the local
//! tokenizer (a committed byte-level BPE) and with the server's /tokenize endpoint.

use benchctl_tests::{bench, fast_sim, start, write_tokenizer};

fn assert_exact(run: &benchctl_tests::BenchRun, n: usize) {
    run.result.as_ref().expect("the run succeeds");
    assert_eq!(run.records.len(), n);
    let mut distinct = std::collections::BTreeSet::new();
    for r in &run.records {
        assert!(r.ok(), "{:?}", r.error);
        assert_eq!(
            r.prompt_tokens_server,
            Some(r.prompt_tokens_target),
            "request {}",
            r.request_id
        );
        distinct.insert(r.prompt_tokens_target);
    }
    assert_eq!(run.json()["input_len_mismatches"], 0);
    assert!(
        distinct.len() > 1 || n == 1,
        "--random-range-ratio varies the targets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_prompts_have_exact_lengths_with_the_local_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_tokenizer(dir.path());
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--tokenizer",
            tok.to_str().unwrap(),
            "--num-prompts",
            "40",
            "--max-concurrency",
            "8",
            "--input-len",
            "300",
            "--random-range-ratio",
            "0.5",
            "--prefix-len",
            "37",
            "--output-len",
            "4",
        ],
    )
    .await;
    sim.shutdown().await;
    assert_exact(&run, 40);
    // the prefix is shared: every prompt starts with the same text
    assert!(
        run.records
            .iter()
            .all(|r| r.prompt_tokens_target >= 37 + 150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_prompts_have_exact_lengths_with_the_servers_tokenize_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "20",
            "--max-concurrency",
            "8",
            "--input-len",
            "128",
            "--random-range-ratio",
            "0.3",
            "--output-len",
            "4",
        ],
    )
    .await;
    sim.shutdown().await;
    assert_exact(&run, 20);
    assert!(
        run.json()["tokenizer_id"]
            .as_str()
            .unwrap()
            .ends_with("/tokenize")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_and_sharegpt_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let tok = write_tokenizer(dir.path());
    let jsonl = dir.path().join("p.jsonl");
    std::fs::write(&jsonl, "{\"prompt\": \"Hello there, how are you?\", \"output_len\": 5}\n\n{\"prompt\": \"Tell me a story\"}\n").unwrap();
    let sharegpt = dir.path().join("sg.json");
    let conv = |q: &str, a: &str| serde_json::json!({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]});
    std::fs::write(
        &sharegpt,
        serde_json::to_vec(&vec![
            conv(
                "What is the capital of the moon, and why is it so quiet?",
                "There is no capital on the moon; it is quiet because there is no air.",
            ),
            conv("hi", "x"), // filtered out: too short
            conv(
                "Write two sentences about rivers and mountains please.",
                "Rivers carve valleys between mountains. Mountains feed rivers with snow.",
            ),
        ])
        .unwrap(),
    )
    .unwrap();
    let sim = start(fast_sim()).await;
    let t = tok.to_str().unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--tokenizer",
            t,
            "--dataset",
            "jsonl",
            "--dataset-path",
            jsonl.to_str().unwrap(),
            "--num-prompts",
            "4",
            "--output-len",
            "3",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    let outs: Vec<u32> = run.records.iter().map(|r| r.output_tokens_target).collect();
    assert_eq!(
        outs,
        vec![5, 3, 5, 3],
        "output_len per line, --output-len as the default, cycled"
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.prompt_tokens_server == Some(r.prompt_tokens_target))
    );

    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--tokenizer",
            t,
            "--dataset",
            "sharegpt",
            "--dataset-path",
            sharegpt.to_str().unwrap(),
            "--num-prompts",
            "2",
        ],
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(run.records.len(), 2);
    assert!(
        run.records
            .iter()
            .all(|r| r.prompt_tokens_target > 4 && r.output_tokens_target > 4)
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.output_tokens_server == Some(r.output_tokens_target))
    );

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": 1}\n").unwrap();
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--tokenizer",
            t,
            "--dataset",
            "jsonl",
            "--dataset-path",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    let e = format!("{:#}", run.result.unwrap_err());
    assert!(e.contains("bad.jsonl") && e.contains("line 1"), "{e}");
    sim.shutdown().await;
}
