//! Unit tests of the scheduler, on tokio's paused clock.

use super::*;

fn params(max_batch: usize, kv: usize, tpc: usize) -> EngineParams {
    EngineParams {
        prefill_us_per_token: 0.0,
        decode_step_base_ms: 10.0,
        decode_step_per_seq_us: 0.0,
        max_batch,
        kv_cache_tokens: kv,
        tokens_per_chunk: tpc,
        preempt: false,
        prefix_cache_tokens: 0,
    }
}

fn job(prompt: &[u32], max_tokens: usize, tx: mpsc::UnboundedSender<Emit>) -> Job {
    Job {
        prompt_tokens: prompt.len(),
        max_tokens,
        prompt_blocks: crate::prefix_cache::block_hashes(prompt),
        tx,
    }
}

/// Submits the jobs `(prompt, max_tokens)` at once and returns, per job, the
/// times (ms since submission) and contents of its emits, and the metrics
/// once every job has finished.
async fn run(
    p: EngineParams,
    jobs: &[(Vec<u32>, usize)],
) -> (Vec<Vec<(u128, Emit)>>, Arc<Metrics>) {
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let (h, task) = spawn(p, metrics.clone(), cancel.clone());
    let t0 = Instant::now();
    let mut rxs = Vec::new();
    for (prompt, max_tokens) in jobs {
        let (tx, rx) = mpsc::unbounded_channel();
        h.submit(job(prompt, *max_tokens, tx)).unwrap();
        rxs.push(rx);
    }
    let mut readers = Vec::new();
    for mut rx in rxs {
        readers.push(tokio::spawn(async move {
            let mut v = Vec::new();
            while let Some(e) = rx.recv().await {
                v.push(((Instant::now() - t0).as_millis(), e));
            }
            v
        }));
    }
    let mut out = Vec::new();
    for r in readers {
        out.push(r.await.unwrap());
    }
    cancel.cancel();
    task.await.unwrap();
    (out, metrics)
}

/// `n` identical jobs of `prompt` tokens.
async fn run_jobs(
    p: EngineParams,
    n: usize,
    prompt: usize,
    max_tokens: usize,
) -> Vec<Vec<(u128, Emit)>> {
    run(p, &vec![(vec![7; prompt], max_tokens); n]).await.0
}

fn times(emits: &[(u128, Emit)]) -> Vec<u128> {
    emits.iter().map(|(t, _)| *t).collect()
}

#[tokio::test(start_paused = true)]
async fn fifth_request_waits_for_a_free_batch_slot() {
    let out = run_jobs(params(4, 1 << 20, 1), 5, 10, 3).await;
    for seq in &out[..4] {
        let times: Vec<u128> = seq.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![10, 20, 30]);
        assert!(seq[2].1.finished && !seq[1].1.finished);
    }
    // The 5th is admitted at the step boundary after the first four finish.
    let times: Vec<u128> = out[4].iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![40, 50, 60]);
}

#[tokio::test(start_paused = true)]
async fn kv_capacity_queues_requests() {
    // Each request needs 10 + 40 = 50 tokens of KV; 120 fit two (K = 2).
    let out = run_jobs(params(256, 120, 1), 3, 10, 40).await;
    assert_eq!(out[0][0].0, 10);
    assert_eq!(out[1][0].0, 10);
    assert_eq!(out[0].last().unwrap().0, 400);
    assert_eq!(out[2][0].0, 410);
    assert_eq!(out[2].len(), 40);
}

#[tokio::test(start_paused = true)]
async fn step_time_grows_with_batch_and_prefill() {
    let p = EngineParams {
        prefill_us_per_token: 100.0,
        decode_step_base_ms: 5.0,
        decode_step_per_seq_us: 1000.0,
        ..params(8, 1 << 20, 1)
    };
    // First step: 5 + 2×1 + 0.1×2×20 = 11 ms; then 5 + 2 = 7 ms per step.
    let out = run_jobs(p, 2, 20, 3).await;
    let times: Vec<u128> = out[0].iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![11, 18, 25]);
}

#[tokio::test(start_paused = true)]
async fn chunks_group_tokens() {
    let out = run_jobs(params(4, 1 << 20, 4), 1, 1, 10).await;
    let chunks: Vec<(u128, u32, bool)> = out[0]
        .iter()
        .map(|(t, e)| (*t, e.tokens, e.finished))
        .collect();
    assert_eq!(chunks, vec![(40, 4, false), (80, 4, false), (100, 2, true)]);
}

#[tokio::test(start_paused = true)]
async fn disconnect_frees_kv() {
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let (h, task) = spawn(params(4, 100, 1), metrics.clone(), cancel.clone());
    let (tx1, rx1) = mpsc::unbounded_channel();
    h.submit(job(&[7; 50], 50, tx1)).unwrap();
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    h.submit(job(&[7; 50], 50, tx2)).unwrap();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(25)).await;
    drop(rx1);
    let first = rx2.recv().await.unwrap();
    assert_eq!(first.tokens, 1);
    // Dropped at the step ending at 30 ms; the 2nd is admitted then and
    // gets its first token at 40 ms.
    assert_eq!((Instant::now() - t0).as_millis(), 40);
    cancel.cancel();
    task.await.unwrap();
    assert!(rx2.recv().await.is_none());
    // The first sequence was aborted, not finished; the second was cut by the shutdown.
    assert_eq!(metrics.aborted_total.load(Relaxed), 1);
    assert_eq!(metrics.finished_length_total.load(Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn counters_are_exact_after_a_known_load() {
    let jobs: Vec<(Vec<u32>, usize)> = (0..5).map(|i| (vec![3; 10 + i], 3 + i)).collect();
    let (out, m) = run(params(4, 1 << 20, 2), &jobs).await;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    assert_eq!(get(&m.prompt_tokens_total), 10 + 11 + 12 + 13 + 14);
    assert_eq!(get(&m.tokens_generated_total), 3 + 4 + 5 + 6 + 7);
    assert_eq!(get(&m.finished_length_total), 5);
    for c in [
        &m.aborted_total,
        &m.preemptions_total,
        &m.prefix_cache_queries_total,
        &m.prefix_cache_hits_total,
        &m.running,
        &m.waiting,
        &m.kv_reserved_tokens,
    ] {
        assert_eq!(get(c), 0);
    }
    for (seq, (_, max_tokens)) in out.iter().zip(&jobs) {
        let sent: u32 = seq.iter().map(|(_, e)| e.tokens).sum();
        assert_eq!(sent as usize, *max_tokens);
    }
}

#[tokio::test(start_paused = true)]
async fn preemption_recomputes_the_preempted_sequence() {
    // KV grows by one token per sequence per step: three sequences of a
    // 10-token prompt fit 100 tokens until they hold 10 + 23 + 1 each.
    let p = EngineParams {
        prefill_us_per_token: 1000.0,
        preempt: true,
        ..params(256, 100, 1)
    };
    let (out, m) = run(p, &vec![(vec![5; 10], 40); 3]).await;
    // First step: 10 ms + 1 ms × 30 prompt tokens; then 10 ms steps.
    let first: Vec<u128> = (0..40).map(|g| 40 + 10 * g).collect();
    assert_eq!(times(&out[0]), first);
    assert_eq!(times(&out[1]), first);
    // The third is preempted after 23 tokens and readmitted when the others
    // finish (430 ms), prefilling its prompt and 23 tokens again (33 ms).
    let third = times(&out[2]);
    assert_eq!(third[..23], first[..23]);
    assert_eq!(third[23], 473);
    assert_eq!(third[39], 633);
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    assert_eq!(get(&m.preemptions_total), 1);
    assert_eq!(get(&m.prompt_tokens_total), 30);
    assert_eq!(get(&m.tokens_generated_total), 120);
    assert_eq!(get(&m.finished_length_total), 3);
    // Without --preempt, KV is reserved at admission: two run, one waits.
    let (out, m) = run(
        EngineParams {
            preempt: false,
            ..p
        },
        &vec![(vec![5; 10], 40); 3],
    )
    .await;
    // Two run (20 prompt tokens: 30 ms, then 10 ms steps), the third waits.
    assert_eq!(out[1][39].0, 420);
    assert_eq!(out[2][0].0, 440);
    assert_eq!(get(&m.preemptions_total), 0);
}

#[tokio::test(start_paused = true)]
async fn prefix_cache_hits_skip_prefill() {
    let prompt: Vec<u32> = (0..100).collect();
    let p = EngineParams {
        prefill_us_per_token: 1000.0,
        prefix_cache_tokens: 1024,
        ..params(8, 1 << 20, 1)
    };
    let (out, m) = run(p, &vec![(prompt.clone(), 2); 3]).await;
    // The second and third find 6 blocks (96 tokens) cached: one step of
    // 10 ms + 1 ms × (100 + 4 + 4) prefill tokens.
    assert_eq!(times(&out[2]), vec![118, 128]);
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    assert_eq!(get(&m.prefix_cache_queries_total), 300);
    assert_eq!(get(&m.prefix_cache_hits_total), 2 * 96);
    assert_eq!(get(&m.prompt_tokens_total), 300);
    // Off (the default): the whole prompts are prefilled, nothing is counted.
    let (out, m) = run(
        EngineParams {
            prefix_cache_tokens: 0,
            ..p
        },
        &vec![(prompt, 2); 3],
    )
    .await;
    assert_eq!(times(&out[2]), vec![310, 320]);
    assert_eq!(get(&m.prefix_cache_queries_total), 0);
}
