//! `benchctl bench`: one configuration against a running server — preflight, prompts, the run,
//! the summary and the result files. Flags follow `vllm bench serve` and the original scripts'
//! `vllm_bench.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use loadgen::report::{GoodputBound, parse_goodput};
use loadgen::{Arrivals, DatasetSpec};
use tokio_util::sync::CancellationToken;

use super::common::CommonArgs;
use crate::local::LocalSystem;
use crate::server_metrics::{ScrapeLog, ServerStats};
use crate::sweep::grid::Io;
use crate::target::{Prepared, preflight, prepare};
use crate::test_run::{Judging, Measured, ServerWatch, TestSpec};
use crate::waiting::{Silence, limits_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetKind {
    /// Random token ids decoded to text of an exact token length (`--input-len`).
    Random,
    /// ShareGPT JSON (`--dataset-path`).
    Sharegpt,
    /// JSONL, one `{"prompt": …, "output_len": …}` a line (`--dataset-path`).
    Jsonl,
    /// Multi-turn sessions (`--turns`, `--think-time`): each turn sends the history with the
    /// server's real answers and a new user message of `--input-len` tokens (or the user turns
    /// of a JSONL of ShareGPT-style conversations, `--dataset-path`). `--num-prompts`,
    /// `--max-concurrency` and `--request-rate` count sessions.
    Conversations,
    /// A Mooncake trace (`--dataset-path`, JSONL of `timestamp` ms, `input_length`,
    /// `output_length`, `hash_ids` of 512-token blocks) replayed on its timestamps.
    Mooncake,
}

/// `benchctl bench`: flags follow `vllm bench serve` and the original scripts' `vllm_bench.sh`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where prompts come from.
    #[arg(long, env = "BENCHCTL_DATASET", value_enum, default_value = "random")]
    pub dataset: DatasetKind,
    #[command(flatten)]
    pub conversation: super::conversation_args::ConversationArgs,
    /// The ShareGPT or JSONL file.
    #[arg(long, env = "BENCHCTL_DATASET_PATH", required_if_eq_any = [("dataset", "sharegpt"), ("dataset", "jsonl"), ("dataset", "mooncake")])]
    pub dataset_path: Option<PathBuf>,
    /// Prompt tokens of random prompts (exact, by the model's tokenizer).
    #[arg(long, env = "BENCHCTL_INPUT_LEN", default_value_t = 1024)]
    pub input_len: u32,
    /// Output tokens asked for (`max_tokens`); for ShareGPT, overrides the reply's length.
    #[arg(long, env = "BENCHCTL_OUTPUT_LEN")]
    pub output_len: Option<u32>,
    /// Requests in the measured run (a trace's: at most its records).
    #[arg(long, env = "BENCHCTL_NUM_PROMPTS", default_value_t = 1000)]
    pub num_prompts: usize,
    /// `--dataset mooncake`: replay the trace this many times faster (2: half the gaps).
    #[arg(long, env = "BENCHCTL_TRACE_SPEEDUP", default_value_t = 1.0)]
    pub trace_speedup: f64,
    /// At most this many requests in flight (closed loop). Combinable with --request-rate.
    #[arg(long, env = "BENCHCTL_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
    /// Open-loop arrivals per second ("inf": all at once, only --max-concurrency paces).
    #[arg(long, env = "BENCHCTL_REQUEST_RATE", default_value = "inf", value_parser = parse_rate)]
    pub request_rate: f64,
    /// Gamma shape of open-loop gaps: 1 = Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, env = "BENCHCTL_BURSTINESS", default_value_t = 1.0)]
    pub burstiness: f64,
    /// Requests sent (closed loop) before the measured run, not counted.
    #[arg(long, env = "BENCHCTL_WARMUP_REQUESTS", default_value_t = 0)]
    pub warmup_requests: usize,
    /// Goodput bounds in ms, e.g. "ttft:400 tpot:50" (keys ttft, tpot, e2el).
    #[arg(long, env = "BENCHCTL_GOODPUT", num_args = 1.., value_delimiter = ' ')]
    pub goodput: Vec<String>,
    /// Write the vLLM-compatible result JSON here, and the per-request records beside it
    /// (`NAME.requests.jsonl`).
    #[arg(long, env = "BENCHCTL_SAVE_RESULT")]
    pub save_result: Option<PathBuf>,
    /// Also put per-request lists (input_lens, ttfts, itls, generated_texts…) in the JSON, and
    /// the generated text in the JSONL, as vLLM's --save-detailed.
    #[arg(long, env = "BENCHCTL_SAVE_DETAILED")]
    pub save_detailed: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = if s.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else {
        s.parse()
            .map_err(|_| format!("{s:?} is not a number or \"inf\""))?
    };
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a positive rate"))
    }
}

/// Runs `benchctl bench`.
pub async fn run(mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    crate::waiting::set_quiet(args.common.quiet);
    let sim = super::start_sim(&mut args.common).await?;
    let result = run_against(args).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    result
}

/// `--dataset mooncake`: the trace schedules the run (no `--request-rate`), and
/// `--num-prompts` replays at most its records.
fn fit_to_trace(args: &mut BenchArgs) -> anyhow::Result<()> {
    if args.request_rate.is_finite() {
        bail!(
            "--request-rate {} does not apply to --dataset mooncake: the trace's timestamps schedule it (--trace-speedup scales them)",
            args.request_rate
        );
    }
    let path = args.dataset_path.clone().unwrap_or_default();
    let records = loadgen::dataset::mooncake::read(&path)?.len();
    args.num_prompts = args.num_prompts.min(records);
    Ok(())
}

async fn run_against(mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.dataset == DatasetKind::Mooncake {
        fit_to_trace(&mut args)?;
    }
    let percentiles =
        loadgen::stats::parse_percentiles(&args.common.percentiles).map_err(anyhow::Error::msg)?;
    let goodput = if args.goodput.is_empty() {
        Vec::new()
    } else {
        parse_goodput(&args.goodput.join(" ")).map_err(anyhow::Error::msg)?
    };
    let arrivals = Arrivals {
        rate: args.request_rate,
        burstiness: args.burstiness,
        seed: args.common.seed,
    };
    arrivals.validate()?;
    if args.max_concurrency == Some(0) {
        bail!("--max-concurrency must be at least 1, got 0");
    }
    if args.num_prompts == 0 {
        bail!("--num-prompts must be at least 1, got 0");
    }
    // GPU telemetry first: no NVIDIA driver is an error before any load is sent.
    let telemetry = args.common.gpus().map(|g| args.common.telemetry(g));
    // The controller, a load worker and the agent in this process, over loopback gRPC.
    let system = LocalSystem::start(telemetry, args.common.workers.unwrap_or(1)).await?;
    let result = measure(&args, &percentiles, &goodput, &system).await;
    system.stop().await;
    result
}

async fn measure(
    args: &BenchArgs,
    percentiles: &[f64],
    goodput: &[GoodputBound],
    system: &LocalSystem,
) -> anyhow::Result<ExitCode> {
    let target = args.common.target();
    let prep = prepare(
        &target,
        args.max_concurrency.unwrap_or(args.num_prompts.min(10_000)),
    )
    .await?;
    let (spec, preflight_prompt) = test_spec(args, &prep).await?;
    if let Some(p) = &preflight_prompt {
        preflight(&prep, p).await?;
    }
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: cancelling requests in flight and writing what was measured");
            on_signal.cancel();
        }
    });

    let requests = spec.requests();
    let bar = crate::progress::bar(requests as u64, args.common.quiet);
    let done = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        let mut silence = Silence::new(limits_text(target.timeout, target.stall_timeout));
        tokio::spawn(async move {
            loop {
                let n = done.load(Ordering::Relaxed);
                bar.set_position(n);
                if let Some(line) = silence.check(n) {
                    crate::progress::note(&bar, line);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let cache_reset = reset_cache(args, &target).await;
    let expected_cache = spec.expected_cache;
    let judging = Judging {
        expected_cache,
        cache_reset,
        prep: &prep,
        endpoint: &target.endpoint,
        num_prompts: requests,
        request_rate: trace_rate(&spec.prompts).unwrap_or(args.request_rate),
        burstiness: args.burstiness,
        max_concurrency: args.max_concurrency,
        percentiles,
        goodput,
        date: chrono::Local::now(),
    };
    let source = args.common.server_metrics.clone().unwrap_or_default();
    let (endpoints, line) = crate::test_run::metrics_endpoints(&source, &target.base_urls()).await;
    if let Some(line) = line {
        eprintln!("{line}");
    }
    let watch = (!endpoints.is_empty()).then(|| {
        let interval = args
            .common
            .server_metrics_interval
            .unwrap_or(crate::metrics_source::DEFAULT_INTERVAL);
        ServerWatch::start(endpoints, interval)
    });
    let mut job = spec.job(&prep, target.base_urls(), &target.endpoint, done);
    if let Some(w) = &watch {
        w.gate(&mut job);
    }
    let run = system.run_job(job);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = cancel.cancelled() => {
            system.cancel_job().await;
            run.await
        }
    };
    ticker.abort();
    bar.finish_and_clear();
    let log = match watch {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let m = judging.measure(result?).await?;
    print!("{}", m.text());
    std::io::stdout().flush().ok();
    if let Some(why) = &m.health.invalid {
        eprintln!("INVALID: the client could not hold this load: {why}");
    }
    let server = log.as_ref().map(|l| (m.server_stats(l), l));
    if let Some((stats, _)) = &server {
        eprint!("{}", stats.text());
    }
    let gpu = match system.has_telemetry() {
        true => {
            let nodes = m.gpu_window(&system.server.registry).await;
            eprint!("{}", crate::gpu_stats::text(&nodes));
            Some(nodes)
        }
        false => None,
    };
    if let Some(path) = &args.save_result {
        save(args, path, &m, gpu.as_deref(), server.as_ref())?;
    }

    if cancel.is_cancelled() {
        eprintln!(
            "the run was interrupted: {} requests not sent",
            m.info.not_sent
        );
        return Ok(ExitCode::from(130));
    }
    if m.summary.completed == 0 {
        bail!("every request failed: {}", m.summary.failures_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// The prompts: the measured ones, then the warm-up's own (cycled past 1000) and the
/// preflight's own, so that a server with prefix caching does not serve measured prompts from
/// its cache. Returns the test and the preflight's prompt (none with `--no-preflight`).
async fn test_spec(
    args: &BenchArgs,
    prep: &Prepared,
) -> anyhow::Result<(TestSpec, Option<loadgen::Prompt>)> {
    eprintln!(
        "building {} prompts ({:?}) with tokenizer {}",
        args.num_prompts,
        args.dataset,
        prep.tokenizer.id()
    );
    let warmup_distinct = args.warmup_requests.min(1000);
    if args.dataset == DatasetKind::Conversations {
        let conv = args.conversation.spec(
            args.input_len,
            args.output_len.unwrap_or(1024),
            args.dataset_path.clone(),
        )?;
        let (sessions, prompts, warmup_prompts) = crate::test_run::conversation_prompts(
            &conv,
            args.num_prompts,
            warmup_distinct,
            &prep.tokenizer,
            args.common.seed,
        )
        .await?;
        // the preflight sends the first session's first turn; a conversation's reuse is its own
        // history, not known beforehand (its cache is not judged)
        let preflight_prompt = (!args.common.no_preflight).then(|| prompts[0].clone());
        let spec = TestSpec {
            prompts,
            sessions,
            warmup_prompts,
            ..test_load(args)
        };
        return Ok((spec, preflight_prompt));
    }
    let preflight = usize::from(!args.common.no_preflight);
    let what = format!("the prompts, tokenized by {}", prep.tokenizer.id());
    let mut prompts = crate::waiting::announced(
        &what,
        loadgen::dataset::build(
            &dataset_spec(args),
            args.num_prompts + warmup_distinct + preflight,
            &prep.tokenizer,
            args.common.seed,
        ),
    )
    .await?;
    let mut warmup_prompts = prompts.split_off(args.num_prompts.min(prompts.len()));
    let preflight_prompt = match preflight {
        1 => warmup_prompts.pop(),
        _ => None,
    };
    let expected_cache = crate::cache_check::ExpectedCache::of(
        &dataset_spec(args),
        args.common.seed,
        &prompts,
        warmup_prompts.len() + preflight,
    );
    let spec = TestSpec {
        expected_cache,
        prompts,
        warmup_prompts,
        ..test_load(args)
    };
    Ok((spec, preflight_prompt))
}

/// The test's load, without its prompts.
fn test_load(args: &BenchArgs) -> TestSpec {
    TestSpec {
        prompts: vec![],
        sessions: vec![],
        warmup_prompts: vec![],
        warmup_requests: args.warmup_requests,
        max_concurrency: args.max_concurrency,
        request_rate: args.request_rate,
        burstiness: args.burstiness,
        seed: args.common.seed,
        workers: args.common.workers.map(|w| w as usize),
        expected_cache: Default::default(),
        memory: args.common.memory(
            args.save_result
                .as_deref()
                .and_then(std::path::Path::parent),
        ),
    }
}

/// `--reset-prefix-cache`: the server's prefix cache emptied before the run; what was done.
async fn reset_cache(args: &BenchArgs, target: &crate::target::Target) -> Option<String> {
    if !args.common.reset_prefix_cache {
        return None;
    }
    let said = crate::prefix_reset::reset(&target.base_urls(), target.api_key.as_deref()).await;
    eprintln!("prefix cache reset: {said}");
    Some(said)
}

/// A replayed trace's mean arrival rate (requests over its span, after the speedup); `None`
/// without start times.
fn trace_rate(prompts: &[loadgen::Prompt]) -> Option<f64> {
    let last = prompts.iter().map(|p| p.offset_ns).max()??;
    (last > 0).then(|| (prompts.len() - 1) as f64 / (last as f64 / 1e9))
}

/// `--save-result`: the result JSON (with the GPU statistics), the GPU logs beside it, and the
/// per-request records.
fn save(
    args: &BenchArgs,
    path: &std::path::Path,
    m: &Measured,
    gpu: Option<&[crate::telemetry::NodeWindow]>,
    server: Option<&(ServerStats, &ScrapeLog)>,
) -> anyhow::Result<()> {
    let mut json = m.result(args.save_detailed);
    let dir_of = |name: fn(Option<usize>, Io) -> String| {
        let io = Io {
            input_len: args.input_len,
            output_len: args.output_len.unwrap_or(1024),
        };
        path.parent()
            .unwrap_or(std::path::Path::new("."))
            .join(name(args.max_concurrency, io))
    };
    if let Some((stats, log)) = server {
        crate::output::add_keys(&mut json, stats);
        let dir = dir_of(crate::sweep::grid::server_metrics_dir_name);
        crate::output::write_atomic(
            &dir.join("samples.csv"),
            log.samples_csv(&crate::telemetry::unix_clock()).as_bytes(),
        )?;
        eprintln!("saved the server's metrics in {}", dir.display());
    }
    if let Some(nodes) = gpu {
        m.gpu_stats(nodes).add_to(&mut json);
        let dir = dir_of(crate::sweep::grid::gpu_dir_name);
        crate::gpu_stats::write_logs(&dir, nodes, m.from_ns)?;
        eprintln!("saved GPU logs in {}", dir.display());
    }
    crate::output::write_atomic(path, &serde_json::to_vec_pretty(&json)?)?;
    let records_path = crate::output::records_path(path);
    crate::output::write_records(&records_path, &m.records, args.save_detailed)?;
    eprintln!("saved {} and {}", path.display(), records_path.display());
    Ok(())
}

fn dataset_spec(args: &BenchArgs) -> DatasetSpec {
    let path = args.dataset_path.clone().unwrap_or_default();
    match args.dataset {
        DatasetKind::Random => DatasetSpec::Random {
            input_len: args.input_len,
            output_len: args.output_len.unwrap_or(1024),
            range_ratio: args.common.random_range_ratio,
            prefix_len: args.common.prefix_len.unwrap_or(0),
            prefix_groups: args.common.prefix_groups.unwrap_or(1),
        },
        DatasetKind::Sharegpt => DatasetSpec::Sharegpt {
            path,
            output_len: args.output_len,
        },
        DatasetKind::Mooncake => DatasetSpec::Mooncake {
            path,
            speedup: args.trace_speedup,
            replay: args.num_prompts,
        },
        DatasetKind::Jsonl => DatasetSpec::Jsonl {
            path,
            output_len: args.output_len.unwrap_or(1024),
        },
        DatasetKind::Conversations => unreachable!("conversations are built as sessions"),
    }
}
