//! Controller and agent over real gRPC on loopback: registration and streaming, clock skew
//! correction, no sample lost across a controller restart, and `bench --gpu-num`.

use std::time::Duration;

use agent::{AgentConfig, GpuSelection, SourceKind};
use benchctl_tests::{bench, fast_sim, start};
use controller::service::{Server, ServerOptions};
use tokio_util::sync::CancellationToken;

async fn server_on(addr: &str) -> Server {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    Server::start(listener, ServerOptions::default()).unwrap()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn simulated_agent(url: String, gpus: usize, skew_ns: i64) -> AgentConfig {
    let mut cfg = AgentConfig::in_process(
        url,
        "test-node".into(),
        SourceKind::Simulated,
        GpuSelection::First(gpus),
        Duration::from_millis(20),
    );
    cfg.clock_skew_ns = skew_ns;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registers_and_streams() {
    let server = server_on("127.0.0.1:0").await;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(agent::run(
        simulated_agent(server.url(), 2, 0),
        cancel.clone(),
    ));
    let reg = server.registry.clone();
    wait_until("40 samples", 20, || {
        let reg = reg.clone();
        async move {
            reg.list()
                .await
                .first()
                .is_some_and(|a| a.samples_received >= 40)
        }
    })
    .await;
    let a = &server.registry.list().await[0];
    assert_eq!(a.node_name, "test-node");
    assert!(a.connected && a.simulated);
    assert_eq!(a.gpus.len(), 2);
    assert_eq!(a.last_samples.len(), 2);
    assert_eq!(a.dropped_samples, 0);
    let listing = controller::cmd::agents::table(&server.registry.list().await);
    assert!(
        listing.contains("test-node [SIMULATED]") && listing.contains("GPU 1"),
        "{listing}"
    );

    // the controller changes the agent's sampling interval: 20 ms → 200 ms
    let mut client = proto::controller_client::ControllerClient::connect(server.url())
        .await
        .unwrap();
    let settings = |interval_ms| proto::SetSamplingRequest {
        node_name: String::new(),
        settings: Some(proto::SamplingSettings { interval_ms }),
    };
    assert_eq!(
        client
            .set_sampling(settings(200))
            .await
            .unwrap()
            .into_inner()
            .agents,
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.registry.list().await[0].samples_received;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let per_s = server.registry.list().await[0].samples_received - before;
    // 2 GPUs at 200 ms: 10 samples a second (at 20 ms it was 100)
    assert!(
        (6..=16).contains(&per_s),
        "{per_s} samples in 1 s after the change"
    );
    let refused = client.set_sampling(settings(3)).await.unwrap_err();
    assert!(refused.message().contains("10 ms"), "{}", refused.message());
    cancel.cancel();
    agent.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_agent_clock_is_corrected_within_the_computed_uncertainty() {
    let server = server_on("127.0.0.1:0").await;
    let cancel = CancellationToken::new();
    let skew: i64 = 7_345_678_901; // the agent's clock is 7.3 s ahead
    let agent = tokio::spawn(agent::run(
        simulated_agent(server.url(), 1, skew),
        cancel.clone(),
    ));
    let reg = server.registry.clone();
    wait_until("8 clock exchanges", 20, || {
        let reg = reg.clone();
        async move {
            reg.offset("test-node")
                .await
                .is_some_and(|o| o.samples >= 8)
        }
    })
    .await;
    let o = server.registry.offset("test-node").await.unwrap();
    assert!(
        (o.offset_ns - skew).unsigned_abs() <= o.uncertainty_ns,
        "offset {} vs true skew {skew}: off by {} ns, uncertainty {} ns",
        o.offset_ns,
        (o.offset_ns - skew).unsigned_abs(),
        o.uncertainty_ns
    );
    assert!(
        o.uncertainty_ns < 50_000_000,
        "loopback round trips bound it tightly: {} ns",
        o.uncertainty_ns
    );
    // and the samples land in the controller's time: a window ending now holds the last ones
    let now = loadgen::clock::mono_ns();
    let w = server
        .registry
        .window(now - 1_000_000_000, now + 1_000_000_000, None)
        .await;
    assert!(
        w[0].gpus[0].samples > 0,
        "samples converted onto the controller clock"
    );
    let unconverted = server
        .registry
        .window(now + skew as u64 - 1_000_000_000, now + skew as u64, None)
        .await;
    assert_eq!(
        unconverted[0].gpus[0].samples, 0,
        "raw agent times would be 7.3 s in the future"
    );
    cancel.cancel();
    agent.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_mid_stream_loses_no_sample() {
    let first = server_on("127.0.0.1:0").await;
    let addr = first.addr;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(agent::run(
        simulated_agent(first.url(), 2, 0),
        cancel.clone(),
    ));
    let reg = first.registry.clone();
    wait_until("samples at the first controller", 20, || {
        let reg = reg.clone();
        async move {
            reg.list()
                .await
                .first()
                .is_some_and(|a| a.samples_received >= 20)
        }
    })
    .await;
    first.shutdown().await;
    // the agent keeps sampling into its buffer while no controller listens
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = server_on(&addr.to_string()).await;
    let reg = second.registry.clone();
    wait_until(
        "the agent back, streaming to the new controller",
        30,
        || {
            let reg = reg.clone();
            async move {
                reg.list()
                    .await
                    .first()
                    .is_some_and(|a| a.connected && a.samples_received >= 100)
            }
        },
    )
    .await;
    let a = &second.registry.list().await[0];
    assert_eq!(
        a.dropped_samples, 0,
        "no gap in the sequence, nothing dropped"
    );
    // every seq from 0 on, each GPU's samples in order: the replay covered the outage
    let w = second.registry.window(0, u64::MAX / 2, None).await;
    let total: usize = w[0].gpus.iter().map(|g| g.samples).sum();
    assert_eq!(total as u64, a.samples_received);
    assert!(a.samples_received >= 100);
    cancel.cancel();
    agent.await.unwrap().unwrap();
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_with_gpu_num_adds_gpu_statistics_and_the_seed_logs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "24",
            "--max-concurrency",
            "4",
            "--input-len",
            "32",
            "--output-len",
            "40",
            "--gpu-num",
            "2",
            "--telemetry-source",
            "simulated",
            "--telemetry-interval",
            "50ms",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().unwrap();
    let j = run.json();
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/result.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(j)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(j["gpu_telemetry_simulated"], true);
    assert_eq!(j["gpu_count"], 2);
    assert!(j["gpu_utilization_mean_pct"].as_f64().is_some());
    assert!(
        j["gpu_telemetry"][0]["gpus"][0]["samples"]
            .as_u64()
            .unwrap()
            > 2
    );
    let logs = dir.path().join("gpu_utilization_c4_in32_out40");
    let raw = std::fs::read_to_string(logs.join("raw.log")).unwrap();
    assert!(raw.starts_with("# SIMULATED"), "{raw}");
    // both GPUs named: the columns are their mean, as in the original scripts
    assert!(raw.contains(": mean of 2 GPUs: 0, 1\n"), "{raw}");
    assert!(raw.contains("# time_s\tmemory_used_mib\tgpu_utilization_pct\ttemperature_c"));
    assert!(raw.lines().filter(|l| !l.starts_with('#')).count() > 2);
    let result = std::fs::read_to_string(logs.join("result.log")).unwrap();
    assert!(result.contains("gpu_utilization_pct > 10"), "{result}");
    assert!(result.contains(": mean of 2 GPUs: 0, 1\n"), "{result}");
    let per_gpu = j["gpu_telemetry"][0]["gpus"].as_array().unwrap();
    assert_eq!(per_gpu.len(), 2, "{per_gpu:?}");
    assert!(per_gpu.iter().all(|g| g["samples"].as_u64().unwrap() > 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_with_gpu_num_and_no_driver_stops_before_any_load() {
    if std::path::Path::new("/proc/driver/nvidia").exists() {
        return; // a machine with the driver: nothing to show here
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = start(fast_sim()).await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &["--num-prompts", "4", "--gpu-num", "1"],
    )
    .await;
    let metrics = reqwest::get(format!("{}/metrics", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sim.shutdown().await;
    let e = format!("{:#}", run.result.unwrap_err());
    assert!(e.contains("NVML") && e.contains("--gpu-num"), "{e}");
    assert!(run.json.is_none());
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("benchctl_sim_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap();
    assert_eq!(sent, "0", "no request reached the server");
}

/// A source whose one GPU fails mid-run: NVML answers errors for GPU `failing` during polls
/// `from..to` (every field missing, as `NvmlSource` reports a failed read), the other GPUs and
/// the later polls read normally. It notes when the failures began and ended on the monotonic
/// clock the agent stamps with.
struct FailingGpu {
    inner: agent::simulated::SimulatedSource,
    failing: u32,
    polls: std::ops::Range<u64>,
    poll: u64,
    failed_span: std::sync::Arc<std::sync::Mutex<(u64, u64)>>,
}

impl agent::Source for FailingGpu {
    fn inventory(&self) -> Vec<proto::GpuInfo> {
        self.inner.inventory()
    }

    fn sample(&mut self, gpu_index: u32, read_energy: bool) -> proto::GpuSample {
        if gpu_index == 0 {
            self.poll += 1;
        }
        if gpu_index == self.failing && self.polls.contains(&self.poll) {
            let now = loadgen::clock::mono_ns();
            let mut span = self.failed_span.lock().unwrap();
            if span.0 == 0 {
                span.0 = now;
            }
            span.1 = now;
            return proto::GpuSample {
                gpu_index,
                missing_fields: u64::MAX >> 1,
                ..Default::default()
            };
        }
        self.inner.sample(gpu_index, read_energy)
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_errors_for_one_gpu_mid_test_are_a_gap_and_the_run_goes_on() {
    let server = server_on("127.0.0.1:0").await;
    let cancel = CancellationToken::new();
    let span = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
    let source = FailingGpu {
        inner: agent::simulated::SimulatedSource::new(&GpuSelection::First(2)).unwrap(),
        failing: 1,
        // 20 ms polls: GPU 1 fails for 30 polls (~0.6 s) after the first second
        polls: 50..80,
        poll: 0,
        failed_span: span.clone(),
    };
    let agent = tokio::spawn(agent::run_with_source(
        simulated_agent(server.url(), 2, 0),
        Box::new(source),
        cancel.clone(),
    ));
    let reg = server.registry.clone();
    // polls go on after the failures: 130 polls of two GPUs
    wait_until("260 samples", 30, || {
        let reg = reg.clone();
        async move {
            reg.list()
                .await
                .first()
                .is_some_and(|a| a.samples_received >= 260)
        }
    })
    .await;
    let (fail_from, fail_to) = *span.lock().unwrap();
    assert!(fail_to > fail_from, "GPU 1's reads failed");
    // a test window of 0.5 s before the failures to 0.5 s after them
    let (from, to) = (fail_from - 500_000_000, fail_to + 500_000_000);
    let nodes = server.registry.window(from, to, None).await;
    let (g0, g1) = (&nodes[0].gpus[0], &nodes[0].gpus[1]);
    eprintln!(
        "GPU 0: {} samples, coverage {:.3}; GPU 1: {} samples, {} failed reads, coverage {:.3}",
        g0.samples, g0.coverage, g1.samples, g1.failed_reads, g1.coverage
    );
    assert_eq!(g0.failed_reads, 0);
    assert!(g1.failed_reads >= 25, "{}", g1.failed_reads);
    // the failed reads are a gap in GPU 1's coverage (~0.6 s of ~1.6 s), GPU 0 has none
    let gap = (fail_to - fail_from) as f64 / (to - from) as f64;
    assert!(
        g1.coverage < 1.0 - gap * 0.8 && g1.coverage < g0.coverage - 0.2,
        "GPU 1 coverage {} (its reads failed for {:.0} % of the window), GPU 0 {}",
        g1.coverage,
        gap * 100.0,
        g0.coverage
    );
    assert_eq!(
        nodes[0].coverage, g1.coverage,
        "the node's is its worst GPU's"
    );
    // the failed reads' zeros are in no statistic: GPU 1's readings are the simulated ones
    assert!(g1.utilization_pct.unwrap().max > 0.0);
    assert!(g1.power_w.unwrap().mean > 50.0, "{:?}", g1.power_w);
    assert!(g1.memory_used_mib.unwrap().mean > 1000.0);
    // the result keys: the gap is reported, the statistics are there
    let stats = controller::gpu_stats::GpuStats::of(&nodes, 1000);
    assert!(stats.gpu_telemetry_coverage < 1.0 - gap * 0.8);
    assert!(stats.gpu_telemetry_incomplete);
    assert!(stats.gpu_utilization_mean_pct.is_some());
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(
        json["gpu_telemetry"][0]["gpus"][1]["failed_reads"],
        g1.failed_reads
    );
    // and the run went on: GPU 1 reads again after the failures, the agent still streams
    let after = server
        .registry
        .window(fail_to + 100_000_000, u64::MAX / 2, None)
        .await;
    assert!(after[0].gpus[1].samples > 10 && after[0].gpus[1].failed_reads == 0);
    assert!(server.registry.list().await[0].connected);
    cancel.cancel();
    agent.await.unwrap().unwrap();
    server.shutdown().await;
}
