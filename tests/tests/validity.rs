//! A client that cannot hold its load is marked `invalid`, never passed. The simulator runs on a
//! runtime of its own (its own thread); the client — benchctl's in-process controller and load
//! worker — on this test's single-threaded runtime, which a task starves by blocking it 50 ms at
//! a time (a saturated client core). The simulator's chunks (one per 1 ms step) then wait in the
//! sockets: a read that comes after a stall returns milliseconds after the kernel stamped its last
//! byte (the read lag) and brings dozens of chunks at once, which share one stamp — the read
//! lag and the chunks per read show why the ITLs are wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use benchctl_tests::{SimConfig, bench, sweep};

/// The simulator on a runtime and thread of its own; its URL, and a sender that stops it.
fn sim_elsewhere() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let s = sim::SimServer::start(SimConfig {
                decode_step_base_ms: 1.0,
                decode_step_per_seq_us: 0.0,
                prefill_us_per_token: 1.0,
                ..SimConfig::default()
            })
            .await
            .unwrap();
            url_tx.send(s.base_url()).unwrap();
            let _ = stop_rx.await;
            s.shutdown().await;
        });
    });
    (url_rx.recv().unwrap(), stop_tx)
}

/// Blocks this runtime's only thread 50 ms at a time until `stop`.
fn starve(stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            tokio::task::yield_now().await;
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_starved_client_is_invalid_and_its_read_lag_says_why() {
    let (url, stop_sim) = sim_elsewhere();
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hog = starve(stop.clone());
    let run = bench(
        &url,
        dir.path(),
        &[
            "--max-concurrency",
            "8",
            "--num-prompts",
            "16",
            "--input-len",
            "32",
            "--output-len",
            "64",
            "--warmup-requests",
            "0",
        ],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    hog.await.unwrap();
    let _ = stop_sim.send(());
    run.result.as_ref().expect("the bench runs");
    let j = run.json();
    let why = j["invalid"]
        .as_str()
        .unwrap_or_else(|| panic!("not invalid: {j}"));
    assert!(why.contains("reads fell behind the kernel"), "{why}");
    // how far behind depends on how the two threads share the cores (8.6 ms on a 2-core CI
    // machine with 20 ms stalls); a client that keeps up: p99 ~0.2 ms (release build, 2 cores)
    let p99 = j["client_read_lag_p99_ms"].as_f64().unwrap();
    assert!(p99 > 2.0, "read lag p99 {p99} ms");
    assert!(j["client_events_per_read"].as_f64().unwrap() > 2.0, "{j}");
    // the worker's CPU over the run is measured (this process: the client's thread and the
    // simulator's, against the client runtime's one core). The stalls here are a blocked thread,
    // not a busy one, so the CPU is far from saturated and the reason does not blame it; were it
    // saturated (a loaded machine), the reason would have to name it.
    let cpu = j["client_cpu_pct"]
        .as_f64()
        .expect("client_cpu_pct measured");
    assert!(cpu > 0.0, "{j}");
    assert_eq!(
        why.contains("CPU was saturated"),
        cpu >= 95.0,
        "CPU {cpu} %: {why}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_invalid_test_never_passes_a_sweep() {
    let (url, stop_sim) = sim_elsewhere();
    let root = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hog = starve(stop.clone());
    let run = sweep(
        &url,
        root.path(),
        &[
            "--io",
            "32x64",
            "--concurrency",
            "4,8",
            "--num-prompts",
            "16",
            // met by a healthy client by far (1 ms steps): only the invalid verdict fails it
            "--threshold",
            "tpot:1000",
            "--dashboard-addr",
            "off",
        ],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    hog.await.unwrap();
    let _ = stop_sim.send(());
    run.result.as_ref().expect("the sweep runs");
    let c = run.combination(32, 64);
    assert!(c["max_passing"].is_null(), "{c}");
    let p = &c["points"][0];
    assert_eq!(p["pass"], false, "{p}");
    assert!(p["invalid"].as_str().unwrap().contains("read lag"), "{p}");
    assert!(
        p["violations"][0]
            .as_str()
            .unwrap()
            .starts_with("INVALID ("),
        "{p}"
    );
    let md = std::fs::read_to_string(run.dir().join("summary.md")).unwrap();
    assert!(md.contains("INVALID: reads fell behind the kernel"), "{md}");
}
