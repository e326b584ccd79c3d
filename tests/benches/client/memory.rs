//! 6. **Records over long outputs** (`-- long`): `--long-requests R` requests of
//!    `--long-tokens T` output tokens, `--long-concurrency C` at a time (default 20 × 100k,
//!    4 at a time), against the simulator; every record kept as
//!    the controller keeps a test's records: in a [`loadgen::RecordStore`] under `--max-memory SIZE`
//!    (`off`, the default here: all in memory), then summarised from it. Prints the client
//!    process's RSS growth (per recorded chunk), the store's peak bytes in memory and what
//!    spilled, and a `memory-result` line for scripts (`scripts/memory.sh`).

use std::time::Duration;

use loadgen::store::{format_bytes, parse_size, record_bytes};
use loadgen::{
    Arrivals, Backend, BodySpec, EndpointKind, HttpClient, MemoryBudget, Prompt, RunConfig, Target,
};
use tokio_util::sync::CancellationToken;

use super::big::{RssPeak, rss};
use super::{PinnedSim, fast, pin, thread_cpu_s};

/// `-- long [--long-requests R] [--long-tokens T] [--max-memory SIZE|off]`.
pub struct Long {
    pub requests: usize,
    pub concurrency: usize,
    pub tokens: u32,
    pub max_memory: Option<u64>,
}

impl Long {
    pub fn from_args(args: &[String], quick: bool) -> Long {
        let get = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let max_memory = match get("--max-memory").as_deref() {
            None | Some("off") => None,
            Some(s) => Some(parse_size(s).unwrap_or_else(|e| panic!("--max-memory: {e}"))),
        };
        Long {
            requests: get("--long-requests").map_or(if quick { 4 } else { 20 }, |v| {
                v.parse().expect("--long-requests N")
            }),
            concurrency: get("--long-concurrency")
                .map_or(4, |v| v.parse().expect("--long-concurrency C")),
            tokens: get("--long-tokens").map_or(if quick { 10_000 } else { 100_000 }, |v| {
                v.parse().expect("--long-tokens T")
            }),
            max_memory,
        }
    }
}

pub fn long_outputs(l: &Long) {
    println!("\n## 6. Records over long outputs");
    let mut sim_args = fast(0.02, l.concurrency);
    sim_args.extend([
        "--max-model-len".into(),
        (l.tokens as usize + 64).to_string(),
    ]);
    let sim = PinnedSim::start(&sim_args);
    let base_url = sim.base_url.clone();
    let (requests, concurrency, tokens, max_bytes) =
        (l.requests, l.concurrency, l.tokens, l.max_memory);
    let before = rss();
    let peak = RssPeak::start();
    let (store, summary, cpu_s, wall_s) = std::thread::spawn(move || {
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
                timeout: Duration::from_secs(600),
                stall_timeout: None,
            };
            let client = HttpClient::new(target, concurrency).unwrap();
            let prompt = Prompt {
                text: "Keep every record of a long answer.".into(),
                prompt_tokens: 8,
                output_len: tokens,
                offset_ns: None,
            };
            let cfg = RunConfig {
                prompts: vec![prompt; requests],
                arrivals: Arrivals::closed_loop(),
                max_concurrency: Some(concurrency),
                warmup_requests: 0,
                warmup_prompts: vec![],
                request_id_prefix: "long-".into(),
            };
            let mut store = MemoryBudget {
                max_bytes,
                spill_dir: std::env::temp_dir(),
            }
            .store();
            let cpu0 = thread_cpu_s();
            let t0 = std::time::Instant::now();
            // as the controller: each finished record goes into the store, none stays in the run
            loadgen::runner::measure(
                &client,
                cfg,
                &CancellationToken::new(),
                loadgen::runner::Keep::None,
                |r| {
                    store
                        .push(0, r.clone())
                        .expect("the spill file takes the record");
                },
            )
            .await
            .unwrap();
            store.finish().unwrap();
            let summary = loadgen::report::summarize(&store, &[50.0, 99.0], &[]);
            store.check().unwrap();
            (
                store,
                summary,
                thread_cpu_s() - cpu0,
                t0.elapsed().as_secs_f64(),
            )
        })
    })
    .join()
    .unwrap();
    let peak = peak.peak();
    sim.stop();
    let st = store.stats();
    let chunks: usize = summary
        .metrics
        .get(&loadgen::report::Metric::Itl)
        .map_or(0, |d| d.count)
        + summary.completed;
    let largest = {
        use loadgen::Records;
        store.each().map(|r| record_bytes(&r)).max().unwrap_or(0)
    };
    let growth = peak.saturating_sub(before);
    println!(
        "{requests} requests × {tokens} tokens, {concurrency} at a time, --max-memory {}: completed {}, failed {} {:?}; {chunks} chunks recorded; wall {wall_s:.1} s, client CPU {cpu_s:.1} s; client RSS {:.0} MB before, {:.0} MB at peak (+{:.0} MB: {:.1} bytes per recorded chunk); records in memory at most {} (largest record {}), spilled {} ({} records)",
        max_bytes.map_or("off".to_string(), format_bytes),
        summary.completed,
        summary.failed,
        summary.failed_by_kind,
        before as f64 / 1e6,
        peak as f64 / 1e6,
        growth as f64 / 1e6,
        growth as f64 / chunks.max(1) as f64,
        format_bytes(st.peak_bytes),
        format_bytes(largest),
        format_bytes(st.spilled_bytes),
        st.spilled,
    );
    println!(
        "memory-result case=long requests={requests} concurrency={concurrency} tokens={tokens} max_memory={} chunks={chunks} failed={} rss_before={before} rss_peak={peak} records_bytes_peak={} records_spilled_bytes={}",
        max_bytes.map_or("off".to_string(), |b| b.to_string()),
        summary.failed,
        st.peak_bytes,
        st.spilled_bytes,
    );
    drop(store);
}
