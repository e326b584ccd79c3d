//! Scenario 5, multi-core scaling: the load generator on a multi-thread runtime pinned to k CPUs
//! (k = 1, 2, 4, 8), against k simulators, each a process pinned to its own CPU of the other
//! half of the machine, so the offered load grows with k (k × streams / step chunks/s). Per k:
//! content chunks/s, the client's CPU-seconds per million chunks and its CPU use (of k cores),
//! and the p99 stamp error against the simulators' emission logs.
//!
//! `client -- scaling [--cores 1,2,4,8] [--sim-cpus 0-7] [--client-cpus 8-15] [--streams 256]
//! [--step-ms 1] [--secs 2]`; the defaults split the machine's CPUs in two halves.

use std::collections::HashMap;
use std::time::Duration;

use loadgen::{Arrivals, Backend, BodySpec, EndpointKind, HttpClient, Prompt, RunConfig, Target};

/// The scenario's settings, from the command line.
pub struct Scaling {
    pub cores: Vec<usize>,
    pub sim_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub streams: usize,
    pub step_ms: f64,
    pub secs: f64,
}

fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

impl Scaling {
    pub fn from_args(args: &[String]) -> Scaling {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let get = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let half = (n / 2).max(1);
        let sim_cpus = get("--sim-cpus").map_or((0..half).collect(), |s| cpu_list(&s));
        let client_cpus = get("--client-cpus").map_or((half..n.max(2)).collect(), |s| cpu_list(&s));
        let max = client_cpus.len().min(sim_cpus.len());
        let cores = get("--cores").map_or_else(
            || [1, 2, 4, 8].into_iter().filter(|&k| k <= max).collect(),
            |s| cpu_list(&s),
        );
        Scaling {
            cores,
            sim_cpus,
            client_cpus,
            streams: get("--streams").map_or(256, |s| s.parse().unwrap()),
            step_ms: get("--step-ms").map_or(1.0, |s| s.parse().unwrap()),
            secs: get("--secs").map_or(2.0, |s| s.parse().unwrap()),
        }
    }
}

pub fn scaling(s: &Scaling) {
    println!(
        "\n## 5. Multi-core scaling (simulators on CPUs {:?}, one per client core; client on CPUs {:?})",
        s.sim_cpus, s.client_cpus
    );
    println!(
        "Offered: {} streams per simulator, one chunk per stream every {} ms ({:.0} chunks/s per simulator).\n",
        s.streams,
        s.step_ms,
        s.streams as f64 * 1000.0 / s.step_ms
    );
    println!(
        "| client cores | simulators | chunks | failed | wall s | chunks/s (steady) | of linear | client CPU-s per M chunks | client CPU % of its cores | p50 stamp error µs | p99 stamp error µs | kernel-stamped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut one_core = None;
    for &k in &s.cores {
        let row = run(s, k);
        let base = *one_core.get_or_insert(row.rate / k as f64);
        println!(
            "| {k} | {k} | {} | {} | {:.2} | {:.0} | {:.0} % | {:.2} | {:.0} | {:.0} | {:.0} | {}/{} |",
            row.chunks,
            row.failed,
            row.wall_s,
            row.rate,
            100.0 * row.rate / (base * k as f64),
            row.cpu_s / (row.chunks as f64 / 1e6),
            100.0 * row.cpu_s / (row.wall_s * k as f64),
            row.p50_us,
            row.p99_us,
            row.kernel,
            row.requests,
        );
    }
}

struct Row {
    chunks: usize,
    failed: usize,
    requests: usize,
    kernel: usize,
    wall_s: f64,
    rate: f64,
    cpu_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn process_cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn run(s: &Scaling, k: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let out_len = (s.secs * 1000.0 / s.step_ms) as u32;
    let sims: Vec<_> = (0..k)
        .map(|i| {
            let log = dir.path().join(format!("emissions-{i}.jsonl"));
            let mut args = super::fast(s.step_ms, s.streams);
            args.extend(["--emission-log".to_string(), log.display().to_string()]);
            (
                super::PinnedSim::start_on(s.sim_cpus[i % s.sim_cpus.len()], &args),
                log,
            )
        })
        .collect();
    let urls: Vec<String> = sims.iter().map(|(p, _)| p.base_url.clone()).collect();
    let cpus: Vec<usize> = s.client_cpus.iter().copied().cycle().take(k).collect();
    let streams = s.streams;
    let (records, wall_s, cpu_s) = std::thread::spawn(move || {
        super::pin_set(&cpus);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(k)
            .enable_all()
            .build()
            .unwrap();
        let cpu0 = process_cpu_s();
        let t0 = std::time::Instant::now();
        let records = rt.block_on(shards(urls, streams, out_len));
        (records, t0.elapsed().as_secs_f64(), process_cpu_s() - cpu0)
    })
    .join()
    .unwrap();
    let mut emitted: HashMap<(String, u32), u64> = HashMap::new();
    for (sim, log) in sims {
        sim.stop();
        for line in std::fs::read_to_string(&log).unwrap().lines() {
            let e: super::Emission = serde_json::from_str(line).unwrap();
            if e.kind == "content" {
                emitted.insert((e.request_id, e.seq), e.t_mono_ns);
            }
        }
    }
    let mut err_us = Vec::new();
    for rec in &records {
        for (i, c) in rec.chunks.iter().enumerate() {
            if let Some(&t) = emitted.get(&(rec.request_id.clone(), i as u32)) {
                err_us.push((c.t_ns as f64 - t as f64) / 1e3);
            }
        }
    }
    let d = loadgen::stats::Distribution::of(err_us, &[50.0, 99.0]);
    let out = loadgen::RunOutput {
        records,
        ..Default::default()
    };
    Row {
        chunks: super::chunks(&out),
        failed: super::failed(&out),
        requests: out.records.len(),
        kernel: out.records.iter().filter(|r| r.kernel_rx_stamps).count(),
        wall_s,
        rate: super::steady_rate(&out),
        cpu_s,
        p50_us: d.as_ref().and_then(|d| d.get(50.0)).unwrap_or(f64::NAN),
        p99_us: d.as_ref().and_then(|d| d.get(99.0)).unwrap_or(f64::NAN),
    }
}

/// One run per simulator, all on this runtime at once; their records together.
async fn shards(urls: Vec<String>, streams: usize, out_len: u32) -> Vec<loadgen::RequestRecord> {
    let mut tasks = Vec::new();
    for (i, url) in urls.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::new(target(&url), streams).unwrap();
            let prompt = Prompt {
                text: "Benchmark the client, not the server.".into(),
                prompt_tokens: 8,
                output_len: out_len,
                offset_ns: None,
            };
            let cfg = RunConfig {
                prompts: vec![prompt; streams],
                arrivals: Arrivals::closed_loop(),
                max_concurrency: Some(streams),
                warmup_requests: 0,
                warmup_prompts: vec![],
                request_id_prefix: format!("s{i}-"),
            };
            loadgen::runner::run(&client, cfg, Default::default(), |_| {})
                .await
                .unwrap()
                .records
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn target(base_url: &str) -> Target {
    Target {
        url: format!("{base_url}/v1/completions").parse().unwrap(),
        api_key: None,
        body: BodySpec {
            kind: EndpointKind::Completions,
            backend: Backend::Vllm,
            model: "benchctl-sim".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Default::default(),
        },
        timeout: Duration::from_secs(300),
        stall_timeout: None,
    }
}
