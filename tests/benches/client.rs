//! The client's speed and accuracy against `benchctl sim`, each pinned to its own core.
//!
//! `cargo bench -p benchctl-tests --bench client` (add `-- quick` for a short run). Four
//! scenarios, the first three each on a fresh simulator:
//! 1. **Throughput**: many streams with a fast decode step; content chunks per second ingested,
//!    and per second of the client thread's CPU time (its capacity even where the simulator's
//!    core is the limit).
//! 2. **Streams held**: 10,000 concurrent streams open at once, none failed.
//! 3. **Timestamp error** at ~50k chunks/s: each chunk's client read time minus the simulator's
//!    emission time (the same CLOCK_MONOTONIC), p50/p99/max.
//! 4. **Big bodies** (`big.rs`): MB request bodies, chunks across 64 KB, thousands of events per
//!    write, a 100k-token output, against a canned server; with the client's RSS growth.
//!
//! 5. **Multi-core scaling** (`scaling.rs`, on demand: `-- scaling`): the client on 1, 2, 4, 8
//!    cores against as many simulators.
//!
//! 6. **Records over long outputs** (`memory.rs`, on demand: `-- long`): 20 requests of 100k
//!    tokens at once, their records kept under `--max-memory` as the controller keeps them.
//!
//! One scenario alone: `-- throughput`, `-- streams`, `-- accuracy`, `-- big`, `-- scaling` or
//! `-- long`. `scripts/memory.sh` runs the memory cases (streams held, long outputs).
//!
//! The simulator runs in a child process (this binary, re-executed) on a current-thread runtime
//! pinned to CPU 1; the client on a current-thread runtime in a thread pinned to CPU 0 (on a
//! 1-CPU machine both share CPU 0).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sim::{SimConfig, SimServer};

use loadgen::{Arrivals, Backend, BodySpec, EndpointKind, HttpClient, Prompt, RunConfig, Target};

#[path = "client/big.rs"]
mod big;
#[path = "client/memory.rs"]
mod memory;
#[path = "client/scaling.rs"]
mod scaling;

fn pin(cpu: usize) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu % n);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin to CPU {cpu}: {e}");
    }
}

/// Pins the calling thread (and the threads it starts later) to these CPUs.
fn pin_set(cpus: &[usize]) {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin to CPUs {cpus:?}: {e}");
    }
}

fn thread_cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
}

/// A simulator in a child process (this binary re-executed with `__sim`), pinned to CPU 1: its
/// own process, so that 10,000 client sockets and 10,000 server sockets do not share one
/// open-files limit.
struct PinnedSim {
    base_url: String,
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl PinnedSim {
    fn start(args: &[String]) -> PinnedSim {
        PinnedSim::start_on(1, args)
    }

    /// A simulator pinned to `cpu`.
    fn start_on(cpu: usize, args: &[String]) -> PinnedSim {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("__sim")
            .env("BENCH_SIM_CPU", cpu.to_string())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("re-executing the benchmark as the simulator");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        PinnedSim {
            base_url: line.trim().to_string(),
            child,
            stdout,
        }
    }

    /// Stops the simulator (closing its stdin); returns its CPU seconds.
    fn stop(mut self) -> f64 {
        use std::io::BufRead;
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        self.child.wait().unwrap();
        line.trim().parse().unwrap_or(f64::NAN)
    }
}

/// The child side: `__sim [benchctl sim flags]`.
fn sim_child(args: &[String]) {
    #[derive(clap::Parser)]
    struct SimArgs {
        #[command(flatten)]
        cfg: SimConfig,
    }
    use clap::Parser;
    let cfg =
        SimArgs::parse_from(std::iter::once("__sim".to_string()).chain(args.iter().cloned())).cfg;
    raise_nofile();
    pin(std::env::var("BENCH_SIM_CPU")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let sim = SimServer::start(cfg).await.unwrap();
        println!("{}", sim.base_url());
        let cpu0 = thread_cpu_s();
        // the parent closes our stdin to stop us
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await;
        let cpu = thread_cpu_s() - cpu0;
        sim.shutdown().await;
        println!("{cpu}");
    });
}

struct ClientRun {
    out: loadgen::RunOutput,
    cpu_s: f64,
    wall_s: f64,
}

fn run_client(base_url: &str, streams: usize, output_len: u32, timeout: Duration) -> ClientRun {
    let prompt = Prompt {
        text: "Benchmark the client, not the server.".into(),
        prompt_tokens: 8,
        output_len,
        offset_ns: None,
    };
    run_prompts(base_url, vec![prompt; streams], streams, timeout)
}

/// `requests` requests of `prompt` (its text sent as is), `concurrency` at a time.
fn run_client_with(
    base_url: &str,
    requests: usize,
    concurrency: usize,
    prompt: String,
    timeout: Duration,
) -> ClientRun {
    let prompt = Prompt {
        prompt_tokens: (prompt.len() / 4) as u32,
        text: prompt,
        output_len: 16,
        offset_ns: None,
    };
    run_prompts(base_url, vec![prompt; requests], concurrency, timeout)
}

fn run_prompts(
    base_url: &str,
    prompts: Vec<Prompt>,
    streams: usize,
    timeout: Duration,
) -> ClientRun {
    let base_url = base_url.to_string();
    std::thread::spawn(move || {
        pin(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let target = Target {
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
                timeout,
                stall_timeout: None,
            };
            let client = HttpClient::new(target, streams).unwrap();
            let cfg = RunConfig {
                prompts,
                arrivals: Arrivals::closed_loop(),
                max_concurrency: Some(streams),
                warmup_requests: 0,
                warmup_prompts: vec![],
                request_id_prefix: "b-".into(),
            };
            let cpu0 = thread_cpu_s();
            let t0 = std::time::Instant::now();
            let out = loadgen::runner::run(&client, cfg, Default::default(), |_| {})
                .await
                .unwrap();
            ClientRun {
                out,
                cpu_s: thread_cpu_s() - cpu0,
                wall_s: t0.elapsed().as_secs_f64(),
            }
        })
    })
    .join()
    .unwrap()
}

/// Simulator flags: a fixed decode step, no prefill cost, everything in one batch.
fn fast(step_ms: f64, batch: usize) -> Vec<String> {
    [
        "--port",
        "0",
        "--decode-step-base-ms",
        &step_ms.to_string(),
        "--decode-step-per-seq-us",
        "0",
        "--prefill-us-per-token",
        "0",
        "--max-batch",
        &batch.to_string(),
        "--kv-cache-tokens",
        "1000000000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn chunks(out: &loadgen::RunOutput) -> usize {
    out.records.iter().map(|r| r.chunks.len()).sum()
}

fn failed(out: &loadgen::RunOutput) -> usize {
    out.records.iter().filter(|r| !r.ok()).count()
}

/// Chunk rate over the window where all streams were running: from the last first chunk to the
/// first last chunk (ramp-up and drain excluded).
fn steady_rate(out: &loadgen::RunOutput) -> f64 {
    let ok: Vec<_> = out
        .records
        .iter()
        .filter(|r| r.ok() && !r.chunks.is_empty())
        .collect();
    let from = ok.iter().map(|r| r.chunks[0].t_ns).max().unwrap_or(0);
    let to = ok
        .iter()
        .map(|r| r.chunks.last().unwrap().t_ns)
        .min()
        .unwrap_or(0);
    if to <= from {
        return 0.0;
    }
    let n: usize = ok
        .iter()
        .map(|r| {
            r.chunks
                .iter()
                .filter(|c| c.t_ns > from && c.t_ns <= to)
                .count()
        })
        .sum();
    n as f64 / ((to - from) as f64 / 1e9)
}

fn throughput(quick: bool) {
    println!("## 1. Content chunks ingested per second (one client core)");
    println!(
        "| streams | step | chunks | failed | wall s | chunks/s (steady) | client CPU % | chunks per client CPU-s | sim CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cases: &[(usize, f64, u32)] = if quick {
        &[(256, 1.0, 200)]
    } else {
        &[
            (64, 0.2, 2000),
            (256, 1.0, 1000),
            (1024, 4.0, 500),
            (2048, 8.0, 400),
        ]
    };
    for &(streams, step, out_len) in cases {
        let sim = PinnedSim::start(&fast(step, streams));
        let r = run_client(&sim.base_url, streams, out_len, Duration::from_secs(300));
        let sim_cpu = sim.stop();
        let n = chunks(&r.out);
        println!(
            "| {streams} | {step} ms | {n} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
            failed(&r.out),
            r.wall_s,
            steady_rate(&r.out),
            100.0 * r.cpu_s / r.wall_s,
            n as f64 / r.cpu_s,
            100.0 * sim_cpu / r.wall_s,
        );
    }
}

/// `--held 1000,10000,50000` overrides the counts (each needs that many open files in this
/// process and as many ephemeral ports towards the simulator: see scripts/scaling-gpu.sh).
fn streams_held(quick: bool, args: &[String]) {
    println!("\n## 2. Concurrent streams held");
    let given = args
        .iter()
        .position(|a| a == "--held")
        .and_then(|i| args.get(i + 1))
        .map(|l| {
            l.split(',')
                .map(|n| n.parse().unwrap())
                .collect::<Vec<usize>>()
        });
    let counts = given.unwrap_or(if quick {
        vec![2_000]
    } else {
        vec![1_000, 10_000]
    });
    for streams in counts {
        hold(streams);
    }
}

/// `streams` streams at once, 60 chunks each; the client process's RSS growth per stream.
fn hold(streams: usize) {
    let sim = PinnedSim::start(&fast(50.0, streams));
    let base = big::rss();
    let peak = big::RssPeak::start();
    let r = run_client(&sim.base_url, streams, 60, Duration::from_secs(300));
    let peak = peak.peak();
    sim.stop();
    let s = loadgen::report::summarize(&r.out.records, &[99.0], &[]);
    let first_chunks_by = r
        .out
        .records
        .iter()
        .filter_map(|r| r.chunks.first())
        .map(|c| c.t_ns)
        .max()
        .unwrap_or(0);
    let last_starts = r
        .out
        .records
        .iter()
        .filter_map(|r| r.chunks.last())
        .map(|c| c.t_ns)
        .min()
        .unwrap_or(0);
    let recorded: usize = r.out.records.iter().map(|r| r.chunks.len()).sum();
    println!(
        "{streams} streams asked; peak in flight {}; completed {}; failed {} {:?} {:?}; all streaming at once: {}; wall {:.1} s; client CPU {:.1} s; client RSS {:.0} MB before, {:.0} MB at peak: {:.1} KB per stream (with its record of 60 chunks; {recorded} chunks recorded)",
        s.max_concurrent_requests,
        s.completed,
        s.failed,
        s.failed_by_kind,
        s.first_error,
        first_chunks_by < last_starts,
        r.wall_s,
        r.cpu_s,
        base as f64 / 1e6,
        peak as f64 / 1e6,
        peak.saturating_sub(base) as f64 / 1e3 / streams as f64,
    );
    println!(
        "memory-result case=streams streams={streams} held={} failed={} chunks={recorded} rss_before={base} rss_peak={peak}",
        s.max_concurrent_requests, s.failed,
    );
}

#[derive(serde::Deserialize)]
struct Emission {
    request_id: String,
    seq: u32,
    kind: String,
    t_mono_ns: u64,
}

fn timestamp_error(quick: bool) {
    println!("\n## 3. Timestamp error against the simulator's emission log, at 50k chunks/s");
    println!(
        "Every decode step emits one chunk per stream at once, as a batching server does. Error ="
    );
    println!("the client's stamp − the simulator's emission stamp (the same CLOCK_MONOTONIC).\n");
    println!(
        "| streams | step | chunks/s (steady) | compared | unmatched | failed | kernel-stamped requests | min µs | p50 µs | p99 µs | p99.9 µs | max µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let cases: &[(usize, f64)] = if quick {
        &[(100, 2.0), (1000, 20.0)]
    } else {
        &[(50, 1.0), (100, 2.0), (250, 5.0), (500, 10.0), (1000, 20.0)]
    };
    for &(streams, step) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log: PathBuf = dir.path().join("emissions.jsonl");
        let secs = if quick { 1.0 } else { 4.0 };
        let out_len = (secs * 1000.0 / step) as u32;
        let mut args = fast(step, streams);
        args.extend(["--emission-log".to_string(), log.display().to_string()]);
        let sim = PinnedSim::start(&args);
        let r = run_client(&sim.base_url, streams, out_len, Duration::from_secs(300));
        sim.stop();
        let mut emitted: HashMap<(String, u32), u64> = HashMap::new();
        for line in std::fs::read_to_string(&log).unwrap().lines() {
            let e: Emission = serde_json::from_str(line).unwrap();
            if e.kind == "content" {
                emitted.insert((e.request_id, e.seq), e.t_mono_ns);
            }
        }
        let mut err_us = Vec::new();
        let mut missing = 0usize;
        for rec in &r.out.records {
            for (i, c) in rec.chunks.iter().enumerate() {
                match emitted.get(&(rec.request_id.clone(), i as u32)) {
                    Some(&t) => err_us.push((c.t_ns as f64 - t as f64) / 1e3),
                    None => missing += 1,
                }
            }
        }
        let d = loadgen::stats::Distribution::of(err_us, &[50.0, 99.0, 99.9]).unwrap();
        println!(
            "| {streams} | {step} ms | {:.0} | {} | {missing} | {} | {}/{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            steady_rate(&r.out),
            d.count,
            failed(&r.out),
            r.out.records.iter().filter(|r| r.kernel_rx_stamps).count(),
            r.out.records.len(),
            d.min,
            d.get(50.0).unwrap(),
            d.get(99.0).unwrap(),
            d.get(99.9).unwrap(),
            d.max,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sim") {
        return sim_child(&args[2..]);
    }
    raise_nofile();
    let quick = args.iter().any(|a| a == "quick");
    let only = |name: &str| {
        !args.iter().any(|a| {
            [
                "throughput",
                "streams",
                "accuracy",
                "big",
                "scaling",
                "long",
            ]
            .contains(&a.as_str())
        }) || args.iter().any(|a| a == name)
    };
    println!(
        "# benchctl client benchmark ({} CPUs, {})\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        if quick { "quick" } else { "full" }
    );
    if only("throughput") {
        throughput(quick);
    }
    if only("streams") {
        streams_held(quick, &args);
    }
    if only("accuracy") {
        timestamp_error(quick);
    }
    if only("big") {
        big::big_bodies(quick);
    }
    // on demand only: it wants many CPUs (the GPU machine's 16: scripts/scaling-gpu.sh)
    if args.iter().any(|a| a == "scaling") {
        scaling::scaling(&scaling::Scaling::from_args(&args));
    }
    // on demand only: minutes, and GBs of records without --max-memory
    if args.iter().any(|a| a == "long") {
        memory::long_outputs(&memory::Long::from_args(&args, quick));
    }
}
