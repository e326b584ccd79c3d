//! A sweep over conversations against `benchctl sim` set so that the boundary is known: a batch
//! of 4 sequences, 5 reasoning tokens before the content, 10 ms decode steps, 30 ms of think
//! time (so a session's finished sequence has left the batch before its next turn). Up to 4
//! sessions in flight every turn is admitted at once and its first visible token comes after
//! about 5 steps (50 ms); with 8, turns queue for a whole answer (16 steps, 160 ms). A
//! `p99_ttfo:130` threshold then passes up to 4 sessions and fails at 8, while TTFT (the first
//! reasoning token) stays lower than TTFO throughout.

use benchctl_tests::{SimConfig, start, sweep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_sweep_finds_the_most_sessions_within_a_ttfo_bound() {
    let sim = start(SimConfig {
        max_batch: 4,
        reasoning_tokens: 5,
        decode_step_base_ms: 10.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--endpoint",
            "/v1/chat/completions",
            "--dataset",
            "conversations",
            "--turns",
            "3",
            "--think-time",
            "30ms",
            "--io",
            "32x16",
            "--concurrency",
            "1,2,4,8,16",
            "--prompts-per-concurrency",
            "2",
            "--min-prompts",
            "4",
            "--threshold",
            "p99_ttfo:130",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let c = run.combination(32, 16);
    assert_eq!(
        (c["max_passing"].as_u64(), c["first_failing"].as_u64()),
        (Some(4), Some(8)),
        "{c}"
    );
    assert!(
        c["bound_by"][0].as_str().unwrap().starts_with("p99_ttfo"),
        "{c}"
    );
    for e in run.results() {
        let sessions = e["concurrency"].as_u64().unwrap().max(2) * 2;
        assert_eq!(e["sessions"].as_u64(), Some(sessions.max(4)), "{e}");
        assert_eq!(
            e["num_prompts"].as_u64(),
            Some(3 * sessions.max(4)),
            "three turns each"
        );
        assert!(
            e["mean_ttft_ms"].as_f64() < e["mean_ttfo_ms"].as_f64(),
            "{e}"
        );
        assert_eq!(e["mean_ttft_ms_by_turn"].as_array().unwrap().len(), 3);
    }
    let point = &c["points"][0];
    assert!(point["p99_ttfo_ms"].as_f64().is_some(), "{point}");
}
