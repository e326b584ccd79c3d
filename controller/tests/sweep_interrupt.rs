//! The `benchctl` binary killed mid-sweep: with `kill -9`, then `--resume` reruns no finished
//! test and loses none; with Ctrl-C (SIGINT), it stops cleanly with exit code 130 and a consistent
//! directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::{SimConfig, SimServer};

const PROMPTS: u64 = 6;
const GRID: [u64; 6] = [1, 2, 3, 4, 5, 6];

async fn slow_sim() -> SimServer {
    SimServer::start(SimConfig {
        port: 0,
        decode_step_base_ms: 4.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// `extra` empty: a new sweep; `["--resume", DIR]`: its continuation (the plan is DIR's).
fn spawn_sweep(base_url: &str, root: &Path, log: &Path, extra: &[&str]) -> Child {
    let root = root.display().to_string();
    let prompts = PROMPTS.to_string();
    let mut args = vec![
        "sweep",
        "--base-url",
        base_url,
        "--result-dir",
        &root,
        "--quiet",
        "--dashboard-addr",
        "off",
    ];
    if extra.is_empty() {
        args.extend([
            "--io",
            "64x64",
            "--concurrency",
            "1,2,3,4,5,6",
            "--num-prompts",
            &prompts,
            "--warmup-requests",
            "0",
        ]);
    }
    Command::new(env!("CARGO_BIN_EXE_benchctl"))
        .args(args)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("benchctl runs")
}

fn result_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// The result array; it must parse whenever it is read.
fn array(dir: &Path) -> Vec<Value> {
    let p = dir.join("benchctl-sim_vllm_result.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).expect("the result array is always valid JSON"),
        Err(_) => Vec::new(),
    }
}

async fn wait_for_tests(root: &Path, n: usize, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(d) = result_dir(root)
            && array(&d).len() >= n
        {
            return d;
        }
        assert!(child.try_wait().unwrap().is_none(), "benchctl exited early");
        assert!(Instant::now() < deadline, "no {n} finished tests in 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sim_requests(sim: &SimServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("benchctl_sim_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn concurrencies(a: &[Value]) -> Vec<u64> {
    a.iter()
        .map(|e| e["concurrency"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_reruns_nothing_and_loses_nothing() {
    let sim = slow_sim().await;
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("first.log");
    let mut child = spawn_sweep(&sim.base_url(), root.path(), &log, &[]);
    let dir = wait_for_tests(root.path(), 2, &mut child).await;
    // mid-test: the third test's requests are in flight
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = array(&dir);
    let kept = before.len();
    assert!(
        (2..GRID.len()).contains(&kept),
        "{kept} tests before the kill"
    );
    assert_eq!(concurrencies(&before), GRID[..kept].to_vec());
    tokio::time::sleep(Duration::from_millis(300)).await; // cut connections reach the simulator
    let sent_before = sim_requests(&sim).await;

    let log2 = root.path().join("resume.log");
    let dir_arg = dir.display().to_string();
    let mut resumed = spawn_sweep(&sim.base_url(), root.path(), &log2, &["--resume", &dir_arg]);
    let status = resumed.wait().unwrap();
    let stderr = std::fs::read_to_string(&log2).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{kept} finished tests kept")),
        "{stderr}"
    );
    let after = array(&dir);
    assert_eq!(
        concurrencies(&after),
        GRID.to_vec(),
        "every test exactly once"
    );
    assert_eq!(&after[..kept], &before[..], "finished tests untouched");
    // nothing finished was rerun: the simulator saw the preflight and the missing tests only
    let sent = sim_requests(&sim).await - sent_before;
    assert_eq!(sent, 1 + PROMPTS * (GRID.len() - kept) as u64);
    for c in GRID {
        let records =
            std::fs::read_to_string(dir.join("requests").join(format!("c{c}_in64_out64.jsonl")))
                .unwrap();
        assert_eq!(records.lines().count() as u64, PROMPTS, "c{c}");
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "done");
    assert_eq!(
        result_dir(root.path()),
        Some(dir.clone()),
        "no second directory"
    );
    let leftovers: Vec<_> = walk(&dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    sim.shutdown().await;
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_with_130() {
    let sim = slow_sim().await;
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("run.log");
    let mut child = spawn_sweep(&sim.base_url(), root.path(), &log, &[]);
    let dir = wait_for_tests(root.path(), 1, &mut child).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "benchctl did not stop on SIGINT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let a = array(&dir);
    assert!(!a.is_empty() && a.len() < GRID.len());
    assert_eq!(concurrencies(&a), GRID[..a.len()].to_vec());
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted");
    sim.shutdown().await;
}
