//! Load workers over real gRPC on loopback: a controller, `benchctl sim`, and in-process
//! `benchctl-loadgen` workers sharing a job.

use std::time::Duration;

use benchctl_tests::{SimServer, fast_sim, start};
use controller::service::{JobSpec, Server, ServerOptions, Workers};
use loadgen::worker::{WorkerConfig, run_worker};
use loadgen::{
    Arrivals, Backend, BodySpec, EndpointKind, HttpClient, Prompt, RequestRecord, RunConfig, Target,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ENDPOINT: &str = "/v1/completions";

async fn controller() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::start(listener, ServerOptions::default()).unwrap()
}

fn worker(
    server: &Server,
    name: &str,
    cancel: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    worker_with(server, name, 1000, cancel)
}

fn worker_with(
    server: &Server,
    name: &str,
    max_streams: u32,
    cancel: CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let cfg = WorkerConfig {
        status: Default::default(),
        controller: server.url(),
        name: name.into(),
        max_streams,
        etcd: None,
        tls: None,
    };
    tokio::spawn(run_worker(cfg, cancel))
}

/// `benchctl sim` (fast), a controller, and workers w1 and w2 connected to it, stopped by the
/// token.
async fn two_workers() -> (
    SimServer,
    Server,
    CancellationToken,
    [JoinHandle<anyhow::Result<()>>; 2],
) {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let w = [
        worker(&server, "w1", cancel.child_token()),
        worker(&server, "w2", cancel.child_token()),
    ];
    server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();
    (sim, server, cancel, w)
}

fn target(sim: &SimServer) -> Target {
    Target {
        url: format!("{}{ENDPOINT}", sim.base_url()).parse().unwrap(),
        api_key: None,
        body: BodySpec {
            kind: EndpointKind::from_path(ENDPOINT),
            backend: Backend::Vllm,
            model: "benchctl-sim".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Default::default(),
        },
        timeout: Duration::from_secs(20),
        stall_timeout: None,
    }
}

/// `n` prompts asking for 3..=9 output tokens (`out` more each with `long`).
fn prompts(n: usize, long: u32) -> Vec<Prompt> {
    (0..n)
        .map(|i| Prompt {
            text: format!("prompt number {i}: one two three"),
            prompt_tokens: 8,
            output_len: 3 + (i as u32 % 7) + long,
            offset_ns: None,
        })
        .collect()
}

fn job(sim: &SimServer, prompts: Vec<Prompt>, concurrency: usize) -> JobSpec {
    JobSpec {
        target_urls: vec![sim.base_url()],
        spec: loadgen::wire::request_spec(ENDPOINT, &target(sim)),
        prompts,
        sessions: vec![],
        max_concurrency: Some(concurrency),
        request_rate: f64::INFINITY,
        burstiness: 1.0,
        seed: 7,
        warmup_requests: 2,
        warmup_prompts: vec![],
        progress: None,
        workers: None,
        before_start: None,
        records: Default::default(),
    }
}

async fn run_job(
    workers: &Workers,
    job: JobSpec,
) -> anyhow::Result<controller::service::JobResult> {
    tokio::time::timeout(Duration::from_secs(60), workers.run_job(job))
        .await
        .expect("run_job returns within 60 s")
}

/// What a record looks like apart from its timings and generated text.
fn shape(r: &RequestRecord) -> (usize, Option<u32>, Option<u32>, u32, bool, Option<String>) {
    (
        r.chunks.len(),
        r.output_tokens_server,
        r.prompt_tokens_server,
        r.output_tokens_target,
        r.done_marker,
        r.finish_reason.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_job_and_return_intact_records() {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let handles = [
        worker(&server, "w1", cancel.child_token()),
        worker(&server, "w2", cancel.child_token()),
    ];
    let ready = server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();
    let names: Vec<&str> = ready.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["w1", "w2"]);
    for w in &ready {
        // the same machine, the same clock: the estimate is within its own bound of 0
        assert!(
            w.clock.offset_ns.unsigned_abs() <= w.clock.uncertainty_ns.max(1_000_000),
            "{w:?}"
        );
    }

    let prompts = prompts(40, 0);
    let res = run_job(&server.workers, job(&sim, prompts.clone(), 8))
        .await
        .unwrap();

    assert_eq!(res.records.len(), 40);
    let indices: Vec<u64> = res.records.iter().map(|r| r.index).collect();
    assert_eq!(indices, (0..40).collect::<Vec<u64>>());
    assert_eq!(
        res.per_worker,
        [("w1".to_string(), 20), ("w2".to_string(), 20)]
    );
    assert_eq!(
        (res.warmup_sent, res.warmup_failed, res.not_sent),
        (2, 0, 0)
    );
    assert!(res.start_ns > 0 && res.start_ns < res.end_ns);
    for r in &res.records {
        let p = &prompts[r.index as usize];
        assert!(r.ok(), "{r:?}");
        // worker k of 2 sent prompts k, k+2, …
        let worker = if r.index % 2 == 0 { "w1-" } else { "w2-" };
        assert!(r.request_id.starts_with(worker), "{}", r.request_id);
        assert_eq!(r.output_tokens_target, p.output_len);
        assert_eq!(r.output_tokens_server, Some(p.output_len));
        assert_eq!(r.chunks.len(), p.output_len as usize);
        assert!(!r.text.is_empty());
        assert!(
            res.start_ns <= r.dispatch_ns && r.end_ns <= res.end_ns,
            "record {} [{}, {}] outside the job [{}, {}]",
            r.index,
            r.dispatch_ns,
            r.end_ns,
            res.start_ns,
            res.end_ns
        );
        for c in &r.chunks {
            assert!(
                (res.start_ns..=res.end_ns).contains(&c.t_ns),
                "chunk at {} outside [{}, {}]",
                c.t_ns,
                res.start_ns,
                res.end_ns
            );
        }
        assert!(r.send_ns <= r.chunks[0].t_ns);
    }

    // The same job run directly has the same shape, record for record.
    let client = HttpClient::new(target(&sim), 8).unwrap();
    let direct = loadgen::runner::run(
        &client,
        RunConfig {
            prompts: prompts.clone(),
            arrivals: Arrivals::closed_loop(),
            max_concurrency: Some(8),
            warmup_requests: 2,
            warmup_prompts: vec![],
            request_id_prefix: "direct-".into(),
        },
        CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(direct.records.len(), 40);
    for (a, b) in res.records.iter().zip(&direct.records) {
        assert_eq!(a.index, b.index);
        assert_eq!(shape(&a), shape(b), "record {}", a.index);
    }

    cancel.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("the worker stops")
            .unwrap()
            .unwrap();
    }
    server.shutdown().await;
    sim.shutdown().await;
}

/// The workers' warm-ups take unequal times (one stream each; w1 sends two warm-up requests one
/// after the other, w2 one): their measured runs still start together, once both are warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_the_measured_run_together_after_unequal_warm_ups() {
    let (sim, server, cancel, _w) = two_workers().await;

    // 153..=159 output tokens at >= 2 ms a step: >= 300 ms a request
    let spec = JobSpec {
        warmup_requests: 3,
        ..job(&sim, prompts(8, 150), 2)
    };
    let t0 = loadgen::clock::mono_ns();
    let res = run_job(&server.workers, spec).await.unwrap();
    assert_eq!(res.records.len(), 8);
    assert!(res.records.iter().all(|r| r.ok()));
    assert_eq!((res.warmup_sent, res.warmup_failed), (3, 0));
    assert_eq!(
        res.per_worker,
        [("w1".to_string(), 4), ("w2".to_string(), 4)]
    );

    let ms = |ns: u64| ns as f64 / 1e6;
    // w1's two sequential warm-ups came first
    assert!(
        res.start_ns - t0 >= 600_000_000,
        "the measured run started {:.1} ms after the job, before w1's warm-up ended",
        ms(res.start_ns - t0)
    );
    // worker k sent the prompts k, k + 2, …: its first send is its start
    let first_send = |k: u64| {
        res.records
            .iter()
            .filter(|r| r.index % 2 == k)
            .map(|r| r.send_ns)
            .min()
            .unwrap()
    };
    let gap = first_send(0).abs_diff(first_send(1));
    // ungated, the gap is one warm-up request (>= 300 ms)
    assert!(
        res.start_skew_ns < 50_000_000 && gap < 50_000_000,
        "start skew {:.1} ms, first sends {:.1} ms apart",
        ms(res.start_skew_ns),
        ms(gap)
    );
    eprintln!(
        "start skew {:.3} ms, first sends {:.3} ms apart",
        ms(res.start_skew_ns),
        ms(gap)
    );

    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

/// A shared job cancelled during its warm-up ends at once: no worker waits for a start that will
/// not come, nothing is measured, every prompt is counted as not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_during_the_warm_up_ends_without_measuring() {
    let (sim, server, cancel, _w) = two_workers().await;
    // a warm-up of one ~2000-step request per worker: seconds
    let spec = job(&sim, prompts(8, 2_000), 4);
    let workers = server.workers.clone();
    let t0 = std::time::Instant::now();
    let running = tokio::spawn(async move { workers.run_job(spec).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.workers.cancel_all().await;
    let res = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancelled job ends")
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(res.records.is_empty(), "{} records", res.records.len());
    assert_eq!(res.not_sent, 8);
    assert_eq!(res.warmup_sent, 2);
    // both are free for the next job
    assert_eq!(
        server
            .workers
            .wait_for(2, Duration::from_secs(5))
            .await
            .unwrap()
            .len(),
        2
    );

    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

/// Starts a long job on w1 and w2, lets it run, then `kill`s w2; `run_job` must fail naming it
/// and saying `why`, and w1 must be free for the next job.
async fn a_worker_lost_mid_job(
    kill: impl FnOnce(CancellationToken, &JoinHandle<anyhow::Result<()>>),
    why: &str,
) {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let w1 = worker(&server, "w1", cancel.child_token());
    let w2_cancel = cancel.child_token();
    let w2 = worker(&server, "w2", w2_cancel.clone());
    server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();

    // ~2000 decode steps of 2 ms each: seconds of work per request; no warm-up, so that the loss
    // lands in the measured run
    let long = JobSpec {
        warmup_requests: 0,
        ..job(&sim, prompts(8, 2_000), 4)
    };
    let workers = server.workers.clone();
    let running = tokio::spawn(async move { run_job(&workers, long).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.is_finished(), "the long job ended too soon");
    kill(w2_cancel, &w2);

    let err = running
        .await
        .unwrap()
        .expect_err("a lost worker fails the job");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("load worker w2"),
        "the error names the worker: {msg}"
    );
    assert!(msg.contains(why), "{msg}");

    // w1 was cancelled and is free again: a rerun on it alone works
    let ready = server.workers.list().await;
    assert_eq!(
        ready.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["w1"]
    );
    let rerun = JobSpec {
        workers: Some(1),
        ..job(&sim, prompts(4, 0), 2)
    };
    let res = run_job(&server.workers, rerun).await.unwrap();
    assert_eq!(res.per_worker, [("w1".to_string(), 4)]);
    assert!(res.records.iter().all(|r| r.ok()));

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), w1).await;
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shut_down_mid_job_fails_the_job_naming_it() {
    a_worker_lost_mid_job(|cancel, _| cancel.cancel(), "shut down during the job").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_fails_the_job_naming_it() {
    a_worker_lost_mid_job(|_, handle| handle.abort(), "disconnected during the job").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_names_are_unique_and_too_many_workers_is_an_error() {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let _a = worker(&server, "same", cancel.child_token());
    server
        .workers
        .wait_for(1, Duration::from_secs(10))
        .await
        .unwrap();
    // a second "same" is refused (and keeps retrying in the background)
    let _b = worker(&server, "same", cancel.child_token());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.workers.list().await.len(), 1);

    let err = run_job(
        &server.workers,
        JobSpec {
            workers: Some(2),
            ..job(&sim, prompts(4, 0), 2)
        },
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("2 load workers asked for, 1 idle"),
        "{err:#}"
    );
    let err = server
        .workers
        .wait_for(3, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("1 of the 3"), "{err:#}");

    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_over_max_streams_is_refused_and_leaves_the_workers_free() {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let _a = worker_with(&server, "a", 2, cancel.child_token());
    let _b = worker_with(&server, "b", 2, cancel.child_token());
    server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();
    // 5 over 2 workers: a gets 3 > 2
    let err = run_job(&server.workers, job(&sim, prompts(6, 0), 5))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("load worker a takes at most 2 streams"),
        "{msg}"
    );
    let res = run_job(&server.workers, job(&sim, prompts(6, 0), 4))
        .await
        .unwrap();
    assert_eq!(res.per_worker, [("a".to_string(), 3), ("b".to_string(), 3)]);

    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lost_mid_job_is_discarded_and_the_job_rerun_on_the_others() {
    let sim = start(fast_sim()).await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let w1 = worker(&server, "w1", cancel.child_token());
    let w2 = worker(&server, "w2", cancel.child_token());
    server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();
    // two rounds of ~200 decode steps of 2 ms per worker (2 streams each): w2 is killed once 4
    // records have arrived, which w1 alone cannot send before its second round ends, so some
    // of them are w2's (sent within FLUSH_EVERY of its first round) and must be discarded
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let spec = JobSpec {
        progress: Some(progress.clone()),
        ..job(&sim, prompts(8, 200), 4)
    };
    let workers = server.workers.clone();
    let running = tokio::spawn(async move {
        workers
            .run_job_retrying(spec, 3, Duration::from_secs(10))
            .await
    });
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 4 {
        assert!(!running.is_finished(), "the job ended before w2 was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w2.abort(); // killed: its session breaks in the measured run
    let (res, lost) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the rerun finishes")
        .unwrap()
        .expect("the job completes on the remaining worker");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].contains("load worker w2") && lost[0].contains("discarded"),
        "{lost:?}"
    );
    let from_w2: usize = lost[0]
        .split('(')
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {lost:?}"));
    assert!(
        from_w2 >= 1,
        "w2 was killed before it sent a record: {lost:?}"
    );
    // the result is one whole run, never merged from a part
    assert_eq!(res.per_worker, [("w1".to_string(), 8)]);
    assert_eq!(res.records.len(), 8);
    assert!(res.records.iter().all(|r| r.ok()));
    let mut idx: Vec<u64> = res.records.iter().map(|r| r.index).collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..8).collect::<Vec<_>>(), "every prompt exactly once");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), w1).await;
    server.shutdown().await;
    sim.shutdown().await;
}

/// A job that asks for two workers loses one: the rerun waits for a second worker (here a new
/// one, started after the loss) instead of failing on "1 idle".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_that_needs_two_workers_waits_for_a_replacement() {
    let (sim, server, cancel, [_w1, w2]) = two_workers().await;
    // 8 prompts on 2 workers, up to 3 runs, each rerun waiting up to `wait` for 2 idle workers
    let run_on_two = |wait: Duration| {
        let spec = JobSpec {
            workers: Some(2),
            ..job(&sim, prompts(8, 200), 4)
        };
        let workers = server.workers.clone();
        tokio::spawn(async move { workers.run_job_retrying(spec, 3, wait).await })
    };
    let running = run_on_two(Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished());
    w2.abort();
    // the job is lost and waits: w1 alone is not enough
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !running.is_finished(),
        "the rerun did not wait for a second worker"
    );
    let w3 = worker(&server, "w3", cancel.child_token());
    let (res, lost) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the rerun finishes")
        .unwrap()
        .expect("the job completes on w1 and w3");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].contains("load worker w2"), "{lost:?}");
    assert_eq!(
        res.per_worker,
        [("w1".to_string(), 4), ("w3".to_string(), 4)]
    );
    assert!(res.records.iter().all(|r| r.ok()));

    // w3 lost too, and nobody comes back: the wait is bounded, and the error says what was lost
    let running = run_on_two(Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(300)).await;
    w3.abort();
    let err = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the wait is bounded")
        .unwrap()
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("rerunning the job after: load worker w3") && msg.contains("1 of the 2"),
        "{msg}"
    );

    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_measure_what_one_worker_measures_at_the_same_total_load() {
    // the simulator's timing is deterministic in the batch size (no per-sequence cost here), so
    // at the same total concurrency both splits must see the same latencies within noise
    let sim = start(benchctl_tests::SimConfig {
        decode_step_base_ms: 4.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..benchctl_tests::SimConfig::default()
    })
    .await;
    let server = controller().await;
    let cancel = CancellationToken::new();
    let _w1 = worker(&server, "w1", cancel.child_token());
    let _w2 = worker(&server, "w2", cancel.child_token());
    server
        .workers
        .wait_for(2, Duration::from_secs(10))
        .await
        .unwrap();
    let summary = |records: &[RequestRecord]| {
        let mut r = records.to_vec();
        loadgen::runner::count_tokens(&mut r, None);
        loadgen::report::summarize(&r, &[50.0, 99.0], &[])
    };
    let mut runs = vec![];
    for workers in [1, 2] {
        let spec = JobSpec {
            workers: Some(workers),
            ..job(&sim, prompts(64, 32), 16)
        };
        let res = run_job(&server.workers, spec).await.unwrap();
        assert_eq!(res.per_worker.len(), workers);
        assert_eq!(res.records.len(), 64);
        assert!(res.records.iter().all(|r| r.ok()));
        runs.push(summary(&res.records.into_vec().unwrap()));
    }
    use loadgen::report::Metric;
    let (one, two) = (&runs[0], &runs[1]);
    for m in [Metric::Tpot, Metric::E2el] {
        let (a, b) = (one.metrics[&m].mean, two.metrics[&m].mean);
        assert!(
            (a - b).abs() <= 0.1 * a.max(b),
            "{m:?}: one worker {a:.2} ms, two workers {b:.2} ms"
        );
    }
    let (a, b) = (one.output_throughput, two.output_throughput);
    assert!(
        (a - b).abs() <= 0.15 * a.max(b),
        "throughput: one worker {a:.0}, two workers {b:.0} tok/s"
    );
    cancel.cancel();
    server.shutdown().await;
    sim.shutdown().await;
}

/// An assignment over tonic's default 4 MiB message limit (a long-prompt test at a high
/// concurrency: an H200 sweep's c=128 of 1536-token prompts was 4.7 MB) reaches the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_over_four_mebibytes_reaches_the_worker() {
    let (sim, server, cancel, _w) = two_workers().await;
    let long = "word ".repeat(4000); // 20 kB a prompt: 300 prompts make 6 MB
    let prompts: Vec<Prompt> = (0..300)
        .map(|i| Prompt {
            text: format!("{i} {long}"),
            prompt_tokens: 4000,
            output_len: 2,
            offset_ns: None,
        })
        .collect();
    let res = run_job(
        &server.workers,
        JobSpec {
            workers: Some(1),
            warmup_requests: 0,
            ..job(&sim, prompts, 16)
        },
    )
    .await
    .unwrap();
    assert_eq!(res.records.len(), 300);
    assert!(res.records.iter().all(|r| r.ok()));
    cancel.cancel();
    sim.shutdown().await;
}
