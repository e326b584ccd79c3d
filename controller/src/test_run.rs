//! One test, as `benchctl bench` and the sweep engine both run it: the job over the load
//! workers, then its records turned into the numbers — tokens counted, the summary, the
//! vLLM-compatible result object, the test's window on the controller's clock and the GPU
//! statistics of that window.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use loadgen::report::{GoodputBound, RunInfo, Summary, result_json, summarize};
use loadgen::{Prompt, RecordStore, Records, RequestRecord};

use crate::cache_check::{CacheCheck, ExpectedCache};
use crate::gpu_stats::GpuStats;
use crate::server_metrics::{
    ClientTotals, ScrapeLog, Scraper, ServerKind, ServerStats, cross_check,
};
use crate::service::{BeforeStart, JobResult, JobSpec, Registry};
use crate::target::Prepared;
use crate::telemetry::NodeWindow;

/// The format of a result object (a bench's result file, an entry of a sweep's result array):
/// 0 before results had a version (they load the same). Written as `benchctl_result_version`.
pub const RESULT_VERSION: u32 = 1;

/// What one test sends, and how.
pub struct TestSpec {
    /// The measured requests, one per prompt.
    pub prompts: Vec<Prompt>,
    /// A conversation test's sessions (`prompts` then holds their first turns).
    pub sessions: Vec<loadgen::conversation::Session>,
    /// Prompts of the warm-up (cycled), never measured.
    pub warmup_prompts: Vec<Prompt>,
    pub warmup_requests: usize,
    pub max_concurrency: Option<usize>,
    /// Open-loop arrivals per second (infinite: closed loop).
    pub request_rate: f64,
    pub burstiness: f64,
    pub seed: u64,
    /// Workers sharing the test (`None`: every idle one).
    pub workers: Option<usize>,
    /// The prefix-cache reuse its prompts ask for.
    pub expected_cache: ExpectedCache,
    /// How much memory its records may take before they spill to disk (`--max-memory`).
    pub memory: loadgen::MemoryBudget,
}

impl ExpectedCache {
    /// The reuse `dataset` asks for in its `measured` prompts, when the `warm` prompts built
    /// after them (the warm-up's, a preflight's) were sent first.
    pub fn of(
        dataset: &loadgen::DatasetSpec,
        seed: u64,
        measured: &[Prompt],
        warm: usize,
    ) -> ExpectedCache {
        ExpectedCache {
            cached_tokens: loadgen::dataset::expected_cached_tokens(
                dataset,
                seed,
                measured.len(),
                warm,
            ),
            prompt_tokens: measured.iter().map(|p| u64::from(p.prompt_tokens)).sum(),
        }
    }
}

/// A conversation test's sessions, their first turns as prompts, and `warmup` random warm-up
/// prompts of the same message length (never the sessions' own).
pub async fn conversation_prompts(
    spec: &loadgen::conversation::ConversationSpec,
    sessions: usize,
    warmup: usize,
    tok: &loadgen::Tokenizer,
    seed: u64,
) -> anyhow::Result<(
    Vec<loadgen::conversation::Session>,
    Vec<Prompt>,
    Vec<Prompt>,
)> {
    let sessions = loadgen::conversation::build_sessions(spec, sessions, tok, seed).await?;
    let firsts = sessions
        .iter()
        .filter_map(|s| s.first_prompt().cloned())
        .collect();
    let warmup_prompts = if warmup == 0 {
        vec![]
    } else {
        let random = loadgen::DatasetSpec::Random {
            input_len: spec.input_len.max(1),
            output_len: spec.output_len,
            range_ratio: 0.0,
            prefix_len: 0,
            prefix_groups: 1,
        };
        loadgen::dataset::build(&random, warmup, tok, seed ^ 0x77a2_3f01).await?
    };
    Ok((sessions, firsts, warmup_prompts))
}

impl TestSpec {
    /// The requests the test sends: one per prompt, or every turn of its sessions.
    pub fn requests(&self) -> usize {
        match self.sessions.len() {
            0 => self.prompts.len(),
            _ => self.sessions.iter().map(|s| s.turns.len()).sum(),
        }
    }

    /// The job for the workers; `progress` counts its finished requests.
    pub fn job(
        self,
        prep: &Prepared,
        base_urls: Vec<String>,
        endpoint: &str,
        progress: Arc<AtomicU64>,
    ) -> JobSpec {
        JobSpec {
            target_urls: base_urls,
            spec: loadgen::wire::request_spec(endpoint, prep.client.target()),
            prompts: self.prompts,
            sessions: self.sessions,
            max_concurrency: self.max_concurrency,
            request_rate: self.request_rate,
            burstiness: self.burstiness,
            seed: self.seed,
            warmup_requests: self.warmup_requests,
            warmup_prompts: self.warmup_prompts,
            progress: Some(progress),
            workers: self.workers,
            before_start: None,
            records: self.memory,
        }
    }
}

/// A finished test's numbers.
pub struct Measured {
    /// In index order; in memory up to `--max-memory`, the rest in a spill file (removed when
    /// this is dropped).
    pub records: RecordStore,
    pub info: RunInfo,
    pub summary: Summary,
    /// The test's window on the controller's clock: the first send to the last end.
    pub from_ns: u64,
    pub to_ns: u64,
    /// Who ran it (`[{name, records}]`).
    pub load_workers: serde_json::Value,
    /// The spread of the workers' measured-run starts.
    pub start_skew_ms: f64,
    /// The prefix cache's use against the workload's.
    pub cache: CacheCheck,
    /// Whether the client held the load (read lag, in-flight, dispatch lag).
    pub health: crate::validity::ClientHealth,
}

/// How a test's numbers are computed and labelled.
pub struct Judging<'a> {
    pub prep: &'a Prepared,
    pub endpoint: &'a str,
    pub num_prompts: usize,
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub percentiles: &'a [f64],
    pub goodput: &'a [GoodputBound],
    /// When the test started (local time, for the result's `date`).
    pub date: chrono::DateTime<chrono::Local>,
    /// The prefix-cache reuse the test's prompts ask for.
    pub expected_cache: ExpectedCache,
    /// What `--reset-prefix-cache` did before the test.
    pub cache_reset: Option<String>,
}

impl Judging<'_> {
    /// Counts the records' tokens (off the async threads), summarises them, and finds the window.
    pub async fn measure(&self, job: JobResult) -> anyhow::Result<Measured> {
        let load_workers = job.load_workers_json();
        let start_skew_ms = job.start_skew_ns as f64 / 1e6;
        let tok = self.prep.tokenizer.clone();
        let mut records = job.records;
        let (records, chunk_tokens) = tokio::task::spawn_blocking(move || {
            let mut how = loadgen::runner::ChunkTokens::Tokenizer;
            records.update(|r| {
                how = how.worst(loadgen::runner::count_tokens(
                    std::slice::from_mut(r),
                    Some(&tok),
                ));
            })?;
            anyhow::Ok((records, how))
        })
        .await?
        .context("counting the tokens of the spilled records")?;
        let info = RunInfo {
            backend: self.prep.client.body_spec().backend.as_str().into(),
            endpoint: self.endpoint.into(),
            model_id: self.prep.model.clone(),
            tokenizer_id: self.prep.tokenizer.id(),
            num_prompts: self.num_prompts,
            request_rate: self.request_rate,
            burstiness: self.burstiness,
            max_concurrency: self.max_concurrency,
            warmup_requests: job.warmup_sent,
            warmup_failed: job.warmup_failed,
            not_sent: job.not_sent,
            chunk_tokens,
            target_is_simulator: self.prep.target_is_simulator,
            date: self.date,
        };
        let summary = summarize(&records, self.percentiles, self.goodput);
        let health = crate::validity::judge(
            &records,
            self.request_rate.is_finite(),
            self.max_concurrency,
            job.client_cpu_pct,
            crate::validity::Bounds::default(),
        );
        let (from_ns, to_ns) = records.each().fold((u64::MAX, 0), |(a, b), r| {
            (a.min(r.send_ns), b.max(r.end_ns))
        });
        let (from_ns, to_ns) = if records.is_empty() {
            (job.start_ns, job.end_ns)
        } else {
            (from_ns, to_ns)
        };
        records
            .check()
            .context("reading the spilled records back")?;
        let cache = CacheCheck::of(&summary, self.expected_cache, self.cache_reset.clone());
        Ok(Measured {
            cache,
            health,
            records,
            info,
            summary,
            from_ns,
            to_ns,
            load_workers,
            start_skew_ms,
        })
    }
}

impl Measured {
    /// The vLLM-compatible result object (vLLM's keys and benchctl's run keys, the records'
    /// memory among them).
    pub fn vllm_result(&self, detailed: bool) -> serde_json::Value {
        let mut json = result_json(&self.info, &self.summary, &self.records, detailed);
        crate::output::add_keys(&mut json, &self.cache);
        crate::output::add_keys(&mut json, &self.health);
        let st = self.records.stats();
        json["max_memory_bytes"] = st.budget.into();
        json["records_bytes_peak"] = st.peak_bytes.into();
        json["records_spilled_bytes"] = st.spilled_bytes.into();
        json["records_spilled"] = st.spilled.into();
        json
    }

    /// The printed summary: the client's numbers, then the prefix cache's check.
    pub fn text(&self) -> String {
        let mut t = loadgen::report::render_text(&self.info, &self.summary);
        t.push_str(&self.cache.text(&self.summary));
        t
    }

    /// [`Measured::vllm_result`] with who ran it and their start skew.
    pub fn result(&self, detailed: bool) -> serde_json::Value {
        let mut json = self.vllm_result(detailed);
        json["load_workers"] = self.load_workers.clone();
        json["start_skew_ms"] = self.start_skew_ms.into();
        json["benchctl_result_version"] = RESULT_VERSION.into();
        json
    }

    /// The GPU telemetry of the test's window.
    pub async fn gpu_window(&self, registry: &Registry) -> Vec<NodeWindow> {
        registry.window(self.from_ns, self.to_ns, None).await
    }

    /// The GPU statistics of that telemetry.
    pub fn gpu_stats(&self, nodes: &[NodeWindow]) -> GpuStats {
        GpuStats::of(nodes, self.summary.total_output_tokens)
    }
}

/// The endpoints to scrape for `source` on a target of `base_urls`, and a line that says so.
/// `auto` keeps them only if the first answers as a Prometheus endpoint, and says when it does
/// not.
pub async fn metrics_endpoints(
    source: &crate::metrics_source::MetricsSource,
    base_urls: &[String],
) -> (Vec<String>, Option<String>) {
    let endpoints = source.endpoints(base_urls);
    if endpoints.is_empty() {
        return (endpoints, None);
    }
    let kind = crate::server_metrics::probe(&endpoints[0]).await;
    match (kind, source) {
        (Err(why), crate::metrics_source::MetricsSource::Auto) => (
            Vec::new(),
            Some(format!(
                "server metrics: none ({why}); the run goes on without them (--server-metrics URL names an endpoint)"
            )),
        ),
        (Err(why), _) => {
            let line = format!(
                "server metrics: {} does not answer yet ({why}); scraped anyway, each result notes what was missing",
                endpoints[0]
            );
            (endpoints, Some(line))
        }
        (Ok(kind), _) => {
            let line = format!(
                "server metrics: {} ({}) during every test",
                endpoints.join(", "),
                kind.as_str()
            );
            (endpoints, Some(line))
        }
    }
}

/// The server's Prometheus metrics around one test (`--server-metrics`): scraped every interval
/// from the test's start, once more when every worker is warm — the job waits for that sample,
/// so it falls between the warm-up and the measured run — and once when the job has ended. The
/// counters' deltas between those two samples are the measured run's alone.
pub struct ServerWatch {
    scraper: Scraper,
}

impl ServerWatch {
    pub fn start(endpoints: Vec<String>, interval: std::time::Duration) -> ServerWatch {
        ServerWatch {
            scraper: Scraper::start(endpoints, interval),
        }
    }

    /// Makes `job` sample the server just before its measured run (each attempt's).
    pub fn gate(&self, job: &mut JobSpec) {
        let scraper = self.scraper.clone();
        job.before_start = Some(BeforeStart(Arc::new(move || {
            let scraper = scraper.clone();
            Box::pin(async move {
                scraper.sample_now().await;
            })
        })));
    }

    /// The sample just after the test, then the whole log.
    pub async fn finish(self) -> ScrapeLog {
        self.scraper.sample_now().await;
        self.scraper.finish().await
    }
}

impl Measured {
    /// The server's statistics over the test's window, cross-checked against the client's
    /// counts: prompt and generated tokens, requests. The tolerance: what the failed requests
    /// may or may not have cost the server, and llama.cpp's counters printed to 6 significant
    /// digits.
    pub fn server_stats(&self, log: &ScrapeLog) -> ServerStats {
        let mut stats = log.stats(self.from_ns, self.to_ns);
        let (failed, failed_tokens) =
            self.records
                .each()
                .filter(|r| !r.ok())
                .fold((0u64, 0u64), |(n, t), r| {
                    (
                        n + 1,
                        t + r.prompt_tokens_target as u64 + r.output_tokens_target as u64,
                    )
                });
        let s = &self.summary;
        let client = ClientTotals {
            prompt_tokens: s.total_input_tokens,
            output_tokens: s.total_output_tokens,
            requests: (s.completed + s.failed) as u64,
            in_flight_at_edges: failed_tokens + print_precision(log),
            requests_in_flight_at_edges: failed,
        };
        stats.server_tokens_mismatch = cross_check(&stats, &client);
        stats
    }
}

/// llama.cpp prints its counters with 6 significant digits (`1.23457e+06`): a delta between two
/// such values is exact to 2 × 5 ppm of the largest. 0 for the other servers (exact integers).
fn print_precision(log: &ScrapeLog) -> u64 {
    if log.kind != ServerKind::LlamaCpp {
        return 0;
    }
    let ids = log.ids_named(&[
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "llamacpp:prompt_tokens_cached_total",
    ]);
    let largest = log
        .samples()
        .iter()
        .flat_map(|s| ids.iter().filter_map(|&id| s.get(id)))
        .fold(0.0, f64::max);
    if largest < 1e6 {
        0
    } else {
        (largest * 1e-5).ceil() as u64 * 2
    }
}

/// Records without their generated text (what is kept in memory and written, unless asked).
pub fn without_text(records: Vec<RequestRecord>) -> Vec<RequestRecord> {
    records
        .into_iter()
        .map(|r| RequestRecord {
            text: String::new(),
            ..r
        })
        .collect()
}
