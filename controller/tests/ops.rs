//! benchctl's own health and metrics, and the Kubernetes sweep Job's command, with every part a
//! real process and a real etcd (as `remote_sweep.rs`): the simulator on 127.0.0.10, controller
//! A (the leader) on 127.0.0.2, controller B (the standby) on 127.0.0.3, a load worker and an
//! agent, each serving `--metrics-addr` on its own loopback address.
//!
//! `health_metrics_and_the_sweep_jobs_verdict`: each endpoint of each process is scraped while
//! the worker and the agent connect, while the command of `deploy/k8s/sweep-job.yaml` runs twice
//! (one sweep queued behind the other: a gate it meets exits 0, a gate it misses exits 1 naming
//! the combination), while the worker and the agent leave, and once etcd is gone (both
//! controllers' `/readyz` answer 503 naming etcd).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::testing::Etcd;
use common::{BIN, Proc, dump_logs, free_port, sibling, spawn};

mod common;

/// A process's `--metrics-addr` on its own loopback address, and its base URL.
fn metrics_addr(ip: &str) -> (String, String) {
    let addr = format!("{ip}:{}", free_port(ip));
    let url = format!("http://{addr}");
    (addr, url)
}

/// A simulator answering 20 tokens in about 0.2 s.
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

/// `GET url`: the status and the body (`None` while nothing answers).
async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// The value of one series (`name` or `name{labels}`) in a Prometheus text body.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

/// Polls `base/metrics` until `ok` holds for it (panics after 60 s, showing the last body).
async fn metrics_until(base: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Some((200, body)) = get(&format!("{base}/metrics")).await {
            if ok(&body) {
                return body;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "{base}: not {what} within 60 s; last /metrics:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `base/readyz` until its status is `status` and its body contains `says`.
async fn readyz_until(base: &str, status: u16, says: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = get(&format!("{base}/readyz")).await;
        if let Some((s, body)) = &last
            && *s == status
            && body.contains(says)
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{base}/readyz: not {status} \"{says}\" within 60 s; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `deploy/k8s/sweep-job.yaml`: the Job's `args` and the ConfigMap's `sweep.toml`.
fn the_job() -> (Vec<String>, String) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/k8s/sweep-job.yaml"
    ))
    .unwrap();
    let mut lines = text.lines();
    lines
        .find(|l| l.trim() == "sweep.toml: |")
        .expect("sweep.toml");
    let toml: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.starts_with("    "))
        .map(|l| &l[4..])
        .collect();
    lines
        .find(|l| l.trim() == "command: [\"benchctl\", \"sweep\"]")
        .expect("the Job runs benchctl sweep");
    assert_eq!(lines.next().map(str::trim), Some("args:"));
    let args = lines
        .map(str::trim)
        .take_while(|l| l.starts_with("- --"))
        .map(|l| l[2..].to_string())
        .collect();
    (args, toml.join("\n"))
}

/// The Job's command, run here: its etcd, target and config are the test's; its grid is made
/// small by flags (which win over the config file), its gate is `gate`.
fn job(etcd: &Etcd, base_url: &str, config: &Path, gate: u32, log: &Path) -> Proc {
    let (args, _) = the_job();
    let mut cmd = Command::new(BIN);
    cmd.arg("sweep");
    let mut seen = Vec::new();
    for a in &args {
        let (flag, _) = a.split_once('=').unwrap_or((a, ""));
        seen.push(flag.to_string());
        match flag {
            "--etcd" => cmd.arg(format!("--etcd={}", etcd.client_url)),
            "--config" => cmd.arg(format!("--config={}", config.display())),
            "--base-url" => cmd.arg(format!("--base-url={base_url}")),
            "--require-max-passing" => cmd.arg(format!("--require-max-passing={gate}")),
            _ => cmd.arg(a),
        };
    }
    for want in ["--etcd", "--config", "--base-url", "--require-max-passing"] {
        assert!(seen.iter().any(|s| s == want), "the Job gives no {want}");
    }
    cmd.args([
        "--io",
        "64x20",
        "--concurrency",
        "1,2",
        "--num-prompts",
        "4",
        "--warmup-requests",
        "0",
        "--threshold",
        "ttft:60000",
    ]);
    Proc(
        cmd.env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Waits for a child's exit (at most `limit`).
async fn exit_of(p: &mut Proc, limit: Duration, logs: &Path) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > limit {
            dump_logs(logs);
            panic!("the Job's command did not end within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_and_the_sweep_jobs_verdict() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let logs_dir = tempfile::tempdir().unwrap();
    let logs = logs_dir.path();
    let data = tempfile::tempdir().unwrap();
    let (_sim, base_url) = sim(logs);

    // controller A: alive, then ready as the leader
    let (_a, _, a) = common::controller("127.0.0.2", &etcd, data.path(), logs, "controller-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("{a}/healthz")).await != Some((200, "ok\n".into())) {
        assert!(Instant::now() < deadline, "controller A's /healthz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    readyz_until(&a, 200, "leader").await;
    let m = metrics_until(&a, "leading", |b| {
        value(b, "benchctl_controller_leader") == Some(1.0)
    })
    .await;
    assert_eq!(value(&m, "benchctl_agents_connected"), Some(0.0), "{m}");
    assert_eq!(value(&m, "benchctl_workers_connected"), Some(0.0), "{m}");
    assert_eq!(value(&m, "benchctl_controller_elections_total"), Some(1.0));
    for s in ["queued", "running", "done", "failed", "interrupted"] {
        let series = format!("benchctl_sweeps{{status=\"{s}\"}}");
        assert_eq!(value(&m, &series), Some(0.0), "{series}\n{m}");
    }

    // controller B: ready as a standby, not leading
    let (_b, _, b) = common::controller("127.0.0.3", &etcd, data.path(), logs, "controller-b");
    readyz_until(&b, 200, "standby").await;
    let m = metrics_until(&b, "up", |b| b.contains("benchctl_controller_leader")).await;
    assert_eq!(value(&m, "benchctl_controller_leader"), Some(0.0), "{m}");

    // a load worker and an agent connect: their own endpoints, and the controller's counts
    let (w_addr, w) = metrics_addr("127.0.0.4");
    let mut worker = spawn(
        &sibling("benchctl-loadgen"),
        &[
            "--etcd",
            &etcd.client_url,
            "--name",
            "w1",
            "--metrics-addr",
            &w_addr,
        ],
        &logs.join("w1.log"),
    );
    let (ag_addr, ag) = metrics_addr("127.0.0.5");
    let mut agent = spawn(
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
            "--metrics-addr",
            &ag_addr,
        ],
        &logs.join("agent.log"),
    );
    assert_eq!(
        get(&format!("{w}/healthz")).await.map(|r| r.0),
        Some(200),
        "the worker's /healthz"
    );
    readyz_until(&w, 200, "registered with the controller").await;
    readyz_until(&ag, 200, "registered with the controller").await;
    let m = metrics_until(&w, "connected", |b| {
        value(b, "benchctl_worker_connected") == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&m, "benchctl_worker_requests_total"),
        Some(0.0),
        "{m}"
    );
    metrics_until(&ag, "sampling and connected", |b| {
        value(b, "benchctl_agent_connected") == Some(1.0)
            && value(b, "benchctl_agent_samples_taken_total").is_some_and(|n| n >= 3.0)
            && value(b, "benchctl_agent_nvml_errors_total") == Some(0.0)
    })
    .await;
    let m = metrics_until(&a, "seeing the worker and the agent", |b| {
        value(b, "benchctl_agents_connected") == Some(1.0)
            && value(b, "benchctl_workers_connected") == Some(1.0)
            && value(b, "benchctl_telemetry_samples_received_total").is_some_and(|n| n > 0.0)
    })
    .await;
    // every connected peer has a clock estimate, of bounded uncertainty
    for peer in [
        r#"kind="agent",peer="node-a""#,
        r#"kind="worker",peer="w1""#,
    ] {
        let series = format!("benchctl_clock_offset_uncertainty_seconds{{{peer}}}");
        let u = metrics_until(&a, "estimating the clocks", |b| value(b, &series).is_some()).await;
        let u = value(&u, &series).unwrap();
        assert!((0.0..1.0).contains(&u), "{series} = {u}\n{m}");
    }

    // the Job's command, twice at once: one sweep runs while the other is queued; a gate met
    // exits 0, a gate missed exits 1 naming the combination
    let (_, toml) = the_job();
    let config = logs.join("sweep.toml");
    std::fs::write(&config, &toml).unwrap();
    let mut pass = job(&etcd, &base_url, &config, 2, &logs.join("job-pass.log"));
    let mut fail = job(&etcd, &base_url, &config, 4, &logs.join("job-fail.log"));
    let mut saw_running = false;
    let mut saw_queued_behind = false;
    let t = Instant::now();
    while pass.0.try_wait().unwrap().is_none() || fail.0.try_wait().unwrap().is_none() {
        if let Some((200, m)) = get(&format!("{a}/metrics")).await {
            let running = value(&m, r#"benchctl_sweeps{status="running"}"#);
            let queued = value(&m, r#"benchctl_sweeps{status="queued"}"#);
            saw_running |= running == Some(1.0);
            saw_queued_behind |= running == Some(1.0) && queued == Some(1.0);
        }
        if t.elapsed() > Duration::from_secs(180) {
            dump_logs(logs);
            panic!("the two sweeps did not end within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pass_rc = exit_of(&mut pass, Duration::ZERO, logs).await;
    let fail_rc = exit_of(&mut fail, Duration::ZERO, logs).await;
    let pass_log = std::fs::read_to_string(logs.join("job-pass.log")).unwrap();
    let fail_log = std::fs::read_to_string(logs.join("job-fail.log")).unwrap();
    if !pass_rc.success() || fail_rc.code() != Some(1) {
        dump_logs(logs);
    }
    assert!(pass_rc.success(), "gate 2: exited {pass_rc}\n{pass_log}");
    assert!(
        pass_log.contains("--require-max-passing 2: every IO combination passed"),
        "{pass_log}"
    );
    assert_eq!(
        fail_rc.code(),
        Some(1),
        "gate 4: exited {fail_rc}\n{fail_log}"
    );
    assert!(
        fail_log.contains(
            "--require-max-passing 4: 1 of 1 IO combinations fall short: input 64 / output 20 passed up to concurrency 2"
        ),
        "{fail_log}"
    );
    assert!(
        saw_running,
        "benchctl_sweeps{{status=\"running\"}} was never 1"
    );
    assert!(
        saw_queued_behind,
        "never saw one sweep queued while the other ran"
    );

    // both done; 2 tests each (concurrency 1 and 2), 4 requests each, counted by the worker
    let m = metrics_until(&a, "with both sweeps done", |b| {
        value(b, r#"benchctl_sweeps{status="done"}"#) == Some(2.0)
    })
    .await;
    for (series, want) in [
        (r#"benchctl_sweeps{status="queued"}"#, 0.0),
        (r#"benchctl_sweeps{status="running"}"#, 0.0),
        (r#"benchctl_sweeps{status="failed"}"#, 0.0),
        ("benchctl_tests_run_total", 4.0),
        ("benchctl_tests_rerun_total", 0.0),
        ("benchctl_sweep_failovers_total", 0.0),
    ] {
        assert_eq!(value(&m, series), Some(want), "{series}\n{m}");
    }
    let m = metrics_until(&w, "after the sweeps", |b| {
        b.contains("benchctl_worker_jobs_total")
    })
    .await;
    assert_eq!(
        value(&m, "benchctl_worker_requests_total"),
        Some(16.0),
        "{m}"
    );
    assert_eq!(
        value(&m, r#"benchctl_worker_jobs_total{outcome="done"}"#),
        Some(4.0),
        "{m}"
    );
    assert!(
        !m.contains("benchctl_worker_request_failures_total{"),
        "{m}"
    );

    // the worker and the agent leave
    worker.kill();
    let m = metrics_until(&a, "without the worker", |b| {
        value(b, "benchctl_workers_connected") == Some(0.0)
    })
    .await;
    assert!(
        !m.contains(r#"peer="w1""#),
        "the worker's clock is still listed\n{m}"
    );
    agent.kill();
    metrics_until(&a, "without the agent", |b| {
        value(b, "benchctl_agents_connected") == Some(0.0)
    })
    .await;

    // etcd gone: neither controller is ready, and each says why
    etcd.kill();
    for c in [&a, &b] {
        let why = readyz_until(c, 503, "etcd").await;
        assert!(why.starts_with("not ready: etcd "), "{why}");
        metrics_until(c, "counting etcd errors", |b| {
            value(b, "benchctl_etcd_errors_total").is_some_and(|n| n >= 1.0)
        })
        .await;
        // alive all the same: liveness must not restart a controller for etcd's outage
        assert_eq!(get(&format!("{c}/healthz")).await.map(|r| r.0), Some(200));
    }
}

/// The Job's manifest parses as this test reads it (a guard on `the_job`).
#[test]
fn the_jobs_command_and_config_are_found() {
    let (args, toml) = the_job();
    assert!(args.iter().any(|a| a.starts_with("--require-max-passing=")));
    assert!(toml.contains("threshold"), "{toml}");
}
