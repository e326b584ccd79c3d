//! Sweeps run by the controller, with every part a real process and a real etcd (Debian's
//! etcd-server on loopback ports). Each "host" listens on its own loopback address: the
//! simulator on 127.0.0.10, controller A on 127.0.0.2, controller B on 127.0.0.3.
//!
//! - `a_sweep_survives_a_worker_an_agent_and_the_leader_killed`: `benchctl sweep --etcd`
//!   submits a sweep and follows it. Mid-test, a load worker is killed (SIGKILL), later the agent,
//!   later the leader controller. The sweep finishes on the standby with every test exactly
//!   once, the tests finished before the failover untouched, the losses recorded (the worker in
//!   the rerun test's `lost_workers`, the agent's gap in `gpu_telemetry_incomplete`, the
//!   failover in the summary), and the CLI, reattached to the new leader, exits 0.
//! - `a_sweep_survives_an_etcd_restart`: etcd is killed mid-test and restarted; the sweep
//!   completes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::testing::Etcd;
use common::{
    BIN, Proc, controller, dump_logs, free_port, result_array, sibling, spawn, stdout_ok,
};

mod common;

/// One series' value in a controller's `/metrics`.
async fn metric(metrics_url: &str, series: &str) -> Option<f64> {
    let body = reqwest::get(format!("{metrics_url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

fn worker(etcd: &Etcd, name: &str, logs: &Path) -> Proc {
    spawn(
        &sibling("benchctl-loadgen"),
        &["--etcd", &etcd.client_url, "--name", name],
        &logs.join(format!("{name}.log")),
    )
}

fn agent(etcd: &Etcd, logs: &Path, n: u32) -> Proc {
    spawn(
        &sibling("benchctl-agent"),
        &[
            "--etcd",
            &etcd.client_url,
            "--source",
            "simulated",
            "--gpu-num",
            "1",
            "--node-name",
            "node-a",
            "--interval",
            "100ms",
        ],
        &logs.join(format!("agent-{n}.log")),
    )
}

/// A simulator slow enough that a test lasts seconds: 100 output tokens at ~10 ms a step.
fn sim(logs: &Path) -> (Proc, String) {
    let port = free_port("127.0.0.10");
    let p = spawn(
        Path::new(BIN),
        &[
            "sim",
            "--host",
            "127.0.0.10",
            "--port",
            &port.to_string(),
            "--decode-step-base-ms",
            "10",
        ],
        &logs.join("sim.log"),
    );
    (p, format!("http://127.0.0.10:{port}"))
}

async fn leader(etcd: &Etcd) -> Option<String> {
    let mut c = etcd.args().connect().await.ok()?;
    let r = c.leader(cluster::ELECTION).await.ok()?;
    r.kv()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Controller A on 127.0.0.2, elected, then controller B on 127.0.0.3 standing by; both on
/// `data`.
async fn leader_and_standby(
    etcd: &Etcd,
    data: &Path,
    logs: &Path,
) -> ((Proc, String, String), (Proc, String, String)) {
    let (a, a_url, a_metrics) = controller("127.0.0.2", etcd, data, logs, "controller-a");
    let deadline = Instant::now() + Duration::from_secs(20);
    while leader(etcd).await.as_deref() != Some(a_url.as_str()) {
        assert!(Instant::now() < deadline, "controller A was not elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = controller("127.0.0.3", etcd, data, logs, "controller-b");
    ((a, a_url, a_metrics), b)
}

/// Waits until `url` leads and has `workers` load workers and `agents` agents with samples.
async fn ready(etcd: &Etcd, url: &str, workers: usize, agents: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if leader(etcd).await.as_deref() == Some(url)
            && let Ok(mut c) =
                proto::controller_client::ControllerClient::connect(url.to_string()).await
            && let Ok(w) = c.list_workers(proto::ListWorkersRequest {}).await
            && let Ok(a) = c.list_agents(proto::ListAgentsRequest {}).await
            && w.into_inner().workers.len() == workers
            && a.into_inner()
                .agents
                .iter()
                .filter(|a| a.connected && !a.last_samples.is_empty())
                .count()
                == agents
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} was not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sweep checkpoints in etcd.
async fn checkpoints(etcd: &Etcd) -> Vec<serde_json::Value> {
    let Ok(mut c) = etcd.args().connect().await else {
        return Vec::new();
    };
    let Ok(r) = c
        .get(
            cluster::state_key("sweeps/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
    else {
        return Vec::new();
    };
    r.kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect()
}

/// Waits until the one sweep has at least `done` tests checkpointed and one in flight for a
/// while (so that a kill lands mid-test); answers the checkpoint.
async fn mid_test(etcd: &Etcd, done: usize, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(d) = checkpoints(etcd).await.into_iter().next()
            && d["done_tests"].as_array().map_or(0, Vec::len) >= done
            && d["in_flight"].is_string()
        {
            // the checkpoint is written before the load starts: let the test get going
            tokio::time::sleep(Duration::from_millis(800)).await;
            return d;
        }
        assert!(Instant::now() < deadline, "timed out before {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sweep_dir(data: &Path) -> PathBuf {
    std::fs::read_dir(data)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a sweep directory")
}

/// Exactly every test of the grid, once.
fn assert_every_test_once(entries: &[serde_json::Value], grid: &[&str]) {
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["test_id"].as_str().unwrap())
        .collect();
    let set: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "a test appears twice: {ids:?}");
    let want: BTreeSet<&str> = grid.iter().copied().collect();
    assert_eq!(set, want);
    for e in entries {
        assert!(e.get("aborted").is_none(), "{e}");
        assert!(e["completed"].as_u64().unwrap() > 0);
        assert_eq!(e["failed"].as_u64(), Some(0), "{e}");
    }
}

const GRID: [&str; 6] = [
    "c2_in32_out100",
    "c4_in32_out100",
    "c8_in32_out100",
    "c2_in64_out100",
    "c4_in64_out100",
    "c8_in64_out100",
];

fn sweep_args<'a>(etcd_url: &'a str, base_url: &'a str) -> Vec<&'a str> {
    vec![
        "sweep",
        "--etcd",
        etcd_url,
        "--base-url",
        base_url,
        "--io",
        "32x100,64x100",
        "--concurrency",
        "2,4,8",
        "--prompts-per-concurrency",
        "2",
        "--min-prompts",
        "8",
        "--dtype",
        "fp16",
        "--quiet",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_survives_a_worker_an_agent_and_the_leader_killed() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let logs = logs.path();
    let data = tempfile::tempdir().unwrap();
    let (_sim, base_url) = sim(logs);
    let ((mut a, a_url, _), (_b, b_url, b_metrics)) =
        leader_and_standby(&etcd, data.path(), logs).await;
    let _w1 = worker(&etcd, "w1", logs);
    let mut w2 = worker(&etcd, "w2", logs);
    let mut ag = agent(&etcd, logs, 1);
    ready(&etcd, &a_url, 2, 1).await;

    // submit and follow, as a user would
    let cli_log = logs.join("cli.log");
    let mut cli = Proc(
        Command::new(BIN)
            .args(sweep_args(&etcd.client_url, &base_url))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&cli_log).unwrap())
            .spawn()
            .unwrap(),
    );

    // a load worker killed mid-test: that test is discarded and rerun on the other
    let d = mid_test(&etcd, 1, "the worker's kill").await;
    let worker_test = d["in_flight"].as_str().unwrap().to_string();
    w2.kill();

    // the agent killed mid-test, back 2 s later: a gap in the test's telemetry
    let d = mid_test(&etcd, 2, "the agent's kill").await;
    let agent_test = d["in_flight"].as_str().unwrap().to_string();
    ag.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ag2 = agent(&etcd, logs, 2);

    // the leader killed mid-test: the standby resumes from the checkpoint
    let d = mid_test(&etcd, 4, "the leader's kill").await;
    let leader_test = d["in_flight"].as_str().unwrap().to_string();
    let dir = sweep_dir(data.path());
    let before = result_array(&dir);
    a.kill();
    let t = Instant::now();

    // the CLI reattaches to B and exits 0 when the sweep is done
    let rc = loop {
        if let Some(st) = cli.0.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(120) {
            dump_logs(logs);
            panic!("the sweep did not finish within 120 s of the failover");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cli_text = std::fs::read_to_string(&cli_log).unwrap();
    if !rc.success() {
        dump_logs(logs);
    }
    assert!(rc.success(), "benchctl sweep exited {rc}:\n{cli_text}");
    assert!(cli_text.contains("reattaching"), "{cli_text}");
    assert!(
        cli_text.contains(&format!("{b_url} took over from {a_url}")),
        "{cli_text}"
    );
    assert!(cli_text.contains("Sweep summary"), "{cli_text}");

    let entries = result_array(&dir);
    assert_every_test_once(&entries, &GRID);
    // nothing finished before the failover was run again: those entries are untouched
    for e in &before {
        let id = e["test_id"].as_str().unwrap();
        let now = entries.iter().find(|x| x["test_id"] == id).unwrap();
        assert_eq!(now, e, "test {id} changed after the failover");
    }
    assert!(before.len() >= 4);
    // the worker's loss is recorded in the test it was lost in
    let wt = entries
        .iter()
        .find(|e| e["test_id"] == worker_test)
        .unwrap();
    assert_eq!(wt["attempts"], 2, "{wt}");
    let lost = wt["lost_workers"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{wt}");
    assert!(lost[0].as_str().unwrap().contains("load worker w2"), "{wt}");
    // the agent's gap is flagged in the test it happened in
    let at = entries.iter().find(|e| e["test_id"] == agent_test).unwrap();
    assert_eq!(at["gpu_telemetry_incomplete"], true, "{at}");
    assert!(at["gpu_telemetry_coverage"].as_f64().unwrap() < 0.9, "{at}");
    let whole = entries
        .iter()
        .filter(|e| e["gpu_telemetry_incomplete"] == false)
        .count();
    assert!(whole >= 3, "the other tests have their telemetry");
    // the server's metrics (the simulator's, found by `auto`) are scraped once per test by the
    // controller that ran it: exact for the test rerun after the worker's loss, for the one the
    // agent's loss hit, and for those the new leader ran
    for e in &entries {
        assert_eq!(e["server_kind"], "vllm", "{e}");
        assert_eq!(e["server_requests"], e["completed"], "{e}");
        assert_eq!(
            e["server_generation_tokens"], e["total_output_tokens"],
            "{e}"
        );
        assert!(e["server_tokens_mismatch"].is_null(), "{e}");
    }
    // the failover is recorded in the summary and the checkpoint
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "done");
    let f = &summary["failovers"];
    assert_eq!(f.as_array().map(Vec::len), Some(1), "{summary}");
    assert_eq!(f[0]["previous_leader"], a_url.as_str());
    assert_eq!(f[0]["new_leader"], b_url.as_str());
    assert_eq!(f[0]["discarded_test"], leader_test.as_str());
    let cp = checkpoints(&etcd).await;
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0]["status"], "done");
    assert_eq!(cp[0]["leader"], b_url.as_str());
    let done: BTreeSet<&str> = cp[0]["done_tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(done, GRID.iter().copied().collect());
    assert_eq!(cp[0]["done_tests"].as_array().unwrap().len(), GRID.len());

    // `benchctl sweeps` through etcd lists it, done, with its failover
    let out = Command::new(BIN)
        .args(["sweeps", "--etcd", &etcd.client_url, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "done");
    assert_eq!(list[0]["tests_done"], GRID.len());
    assert_eq!(list[0]["failovers"], 1);

    // B's own metrics: one sweep taken over, its discarded test run again, the tests it ran
    let series = [
        ("benchctl_controller_leader", 1.0),
        ("benchctl_sweep_failovers_total", 1.0),
        ("benchctl_tests_rerun_total", 1.0),
        (
            "benchctl_tests_run_total",
            (GRID.len() - before.len()) as f64,
        ),
        (r#"benchctl_sweeps{status="done"}"#, 1.0),
    ];
    for (name, want) in series {
        assert_eq!(metric(&b_metrics, name).await, Some(want), "{name} of B");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_survives_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let logs = logs.path();
    let data = tempfile::tempdir().unwrap();
    let (_sim, base_url) = sim(logs);
    let (_a, a_url, _) = controller("127.0.0.2", &etcd, data.path(), logs, "controller");
    let _w1 = worker(&etcd, "w1", logs);
    ready(&etcd, &a_url, 1, 0).await;

    let mut args = sweep_args(&etcd.client_url, &base_url);
    args.push("--detach");
    let id = stdout_ok(Command::new(BIN).args(&args));

    mid_test(&etcd, 1, "the etcd kill").await;
    etcd.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    etcd.restart().await;

    // reattach through etcd and follow to the end
    let out = tokio::task::spawn_blocking({
        let url = etcd.client_url.clone();
        let id = id.clone();
        move || {
            Command::new(BIN)
                .args(["sweep", "attach", &id, "--etcd", &url, "--quiet"])
                .output()
                .unwrap()
        }
    });
    let out = match tokio::time::timeout(Duration::from_secs(150), out).await {
        Ok(o) => o.unwrap(),
        Err(_) => {
            dump_logs(logs);
            panic!("the sweep did not finish within 150 s of the etcd restart");
        }
    };
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        dump_logs(logs);
    }
    assert!(out.status.success(), "{text}");
    let entries = result_array(&sweep_dir(data.path()));
    assert_every_test_once(&entries, &GRID);
    let cp = checkpoints(&etcd).await;
    assert_eq!(cp[0]["status"], "done", "{}", cp[0]);
}

fn controller_alone(ip: &str, data: &Path, logs: &Path) -> (Proc, String) {
    let port = free_port(ip);
    let listen = format!("{ip}:{port}");
    let p = spawn(
        Path::new(BIN),
        &[
            "controller",
            "--listen",
            &listen,
            "--dashboard-addr",
            "off",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &logs.join("controller.log"),
    );
    (p, format!("http://{listen}"))
}

fn benchctl(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_queues_cancels_and_reattaches_without_etcd() {
    let logs = tempfile::tempdir().unwrap();
    let logs = logs.path();
    let data = tempfile::tempdir().unwrap();
    let (_sim, base_url) = sim(logs);
    let (_c, url) = controller_alone("127.0.0.2", data.path(), logs);
    let _w = spawn(
        &sibling("benchctl-loadgen"),
        &["--controller", &url, "--name", "w1"],
        &logs.join("w1.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = proto::controller_client::ControllerClient::connect(url.clone()).await
            && let Ok(w) = c.list_workers(proto::ListWorkersRequest {}).await
            && w.into_inner().workers.len() == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grid = [
        "--io",
        "32x100",
        "--concurrency",
        "2,4",
        "--num-prompts",
        "8",
        "--quiet",
    ];

    // a target the controller cannot reach: refused at submission, naming it
    let dead = format!("http://127.0.0.10:{}", free_port("127.0.0.10"));
    let mut args = vec!["sweep", "--controller", &url, "--base-url", &dead];
    args.extend(grid);
    let out = benchctl(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot reach") && err.contains(&dead), "{err}");
    // local-only flags are refused with --controller
    let out = benchctl(&["sweep", "--controller", &url, "--sim"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sim with --controller/--etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // two sweeps: the second waits for the first
    let mut args = vec!["sweep", "--controller", &url, "--base-url", &base_url];
    args.extend(grid);
    args.push("--detach");
    let a = benchctl(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = benchctl(&args);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let a = String::from_utf8(a.stdout).unwrap().trim().to_string();
    let b = String::from_utf8(b.stdout).unwrap().trim().to_string();
    assert_ne!(a, b, "each sweep gets its own id and directory");
    let list = benchctl(&["sweeps", "--controller", &url, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["id"], a.as_str());
    assert_eq!(list[1]["id"], b.as_str());
    assert_eq!(list[1]["status"], "queued", "{list}");

    // the queued one cancelled: it never runs; attaching to it says so (exit 130)
    let out = benchctl(&["sweep", "cancel", &b, "--controller", &url]);
    assert!(out.status.success());
    // the first, followed to its end
    let out = benchctl(&["sweep", "attach", &a, "--controller", &url, "--quiet"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Sweep summary") && text.contains("c4_in32_out100"),
        "{text}"
    );
    let out = benchctl(&["sweep", "attach", &b, "--controller", &url, "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was cancelled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = result_array(&data.path().join(&a));
    assert_every_test_once(&entries, &["c2_in32_out100", "c4_in32_out100"]);
    let entries = result_array(&data.path().join(&b));
    assert!(entries.is_empty(), "the cancelled sweep ran nothing");
    let list = benchctl(&["sweeps", "--controller", &url, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["status"], "done");
    assert_eq!(list[1]["status"], "interrupted");
    // an unknown id is a clear error
    let out = benchctl(&["sweep", "attach", "nope", "--controller", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sweep \"nope\""));

    // a sweep's directory fetched from the controller: byte for byte what it wrote
    let here = tempfile::tempdir().unwrap();
    let out = benchctl(&[
        "sweep",
        "fetch",
        &a,
        "--controller",
        &url,
        "--out",
        here.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = here.path().join(&a);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        copy.to_str().unwrap()
    );
    let theirs = files_under(&data.path().join(&a));
    assert!(
        theirs.keys().any(|p| p.starts_with("requests/")),
        "the records are sent: {:?}",
        theirs.keys()
    );
    assert_eq!(files_under(&copy), theirs);
    let out = benchctl(&["sweep", "fetch", "nope", "--controller", &url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sweep \"nope\""));

    // compare over sweep ids: a second sweep of the same grid against the first, both fetched
    let mut args = vec!["sweep", "--controller", &url, "--base-url", &base_url];
    args.extend(grid);
    args.push("--detach");
    let c = benchctl(&args);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let c = String::from_utf8(c.stdout).unwrap().trim().to_string();
    let out = benchctl(&["sweep", "attach", &c, "--controller", &url, "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = tempfile::tempdir().unwrap();
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            &a,
            &c,
            "--controller",
            &url,
            "--format",
            "markdown",
        ];
        args.extend_from_slice(extra);
        benchctl(&args)
    };
    let out = compare(&["--fetch-dir", kept.path().to_str().unwrap()]);
    let (md, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}\n{md}");
    assert!(err.contains(&format!("fetched sweep {a} (done")), "{err}");
    assert!(md.contains(&a) && md.contains(&c), "{md}");
    for test in [
        "| 32x100 c=2 | mean_tpot ms |",
        "| 32x100 c=4 | mean_tpot ms |",
    ] {
        assert!(md.contains(test), "{test} compared: {md}");
    }
    assert_eq!(
        files_under(&kept.path().join(&c)),
        files_under(&data.path().join(&c))
    );
    // a sweep id and a local directory mixed: the same comparison
    let local = data.path().join(&a);
    let out = benchctl(&[
        "compare",
        local.to_str().unwrap(),
        &c,
        "--controller",
        &url,
        "--format",
        "markdown",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        md,
        "same inputs, same seed"
    );
    // an id the controller does not know is named
    let out = benchctl(&["compare", &a, "nope", "--controller", &url]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no sweep \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir`, by its path relative to it, with its bytes.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A cancel is checkpointed before it acts: a sweep cancelled while queued, whose leader then
/// dies, is finished as `interrupted` by the next leader and never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_outlives_the_leader_that_took_it() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let logs = logs.path();
    let data = tempfile::tempdir().unwrap();
    let (_sim, base_url) = sim(logs);
    let ((mut a, a_url, _), (_b, b_url, _)) = leader_and_standby(&etcd, data.path(), logs).await;
    let _w1 = worker(&etcd, "w1", logs);
    ready(&etcd, &a_url, 1, 0).await;
    let mut args = sweep_args(&etcd.client_url, &base_url);
    args.push("--detach");
    let ids: Vec<String> = (0..2)
        .map(|_| stdout_ok(Command::new(BIN).args(&args)))
        .collect();
    stdout_ok(Command::new(BIN).args(["sweep", "cancel", &ids[1], "--etcd", &etcd.client_url]));
    mid_test(&etcd, 1, "the leader's kill").await;
    a.kill();
    let t = Instant::now();
    loop {
        let cp = checkpoints(&etcd).await;
        let st = |id: &str| {
            cp.iter()
                .find(|d| d["id"] == id)
                .map(|d| d["status"].as_str().unwrap_or("").to_string())
        };
        let ended = |s: Option<String>| s.is_some_and(|s| s != "queued" && s != "running");
        if st(&ids[0]).as_deref() == Some("done") && ended(st(&ids[1])) {
            assert_eq!(st(&ids[1]).as_deref(), Some("interrupted"), "{cp:?}");
            let d = cp.iter().find(|d| d["id"] == ids[1].as_str()).unwrap();
            assert_eq!(d["cancel_requested"], true);
            assert_eq!(d["leader"], b_url.as_str(), "B finished it");
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            dump_logs(logs);
            panic!("the first sweep did not finish on B: {cp:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        result_array(&data.path().join(&ids[1])).is_empty(),
        "the cancelled sweep never ran"
    );
    assert_every_test_once(&result_array(&data.path().join(&ids[0])), &GRID);
}
