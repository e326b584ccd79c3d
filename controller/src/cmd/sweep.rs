//! `benchctl sweep` (the seed's `vllm_bench_with_gpu.sh`) in one process: the in-process
//! controller, worker and agent, the live dashboard, Ctrl-C, then the sweep engine; with
//! `--controller/--etcd`, the sweep is submitted instead (`sweep_remote.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::common::CommonArgs;
use crate::local::{GpuSelection, LocalSystem, SourceKind};
use crate::sweep::engine::{Exec, Stop, create_dir, execute, preflight_plan};
use crate::sweep::plan::Plan;
use crate::sweep::progress::Progress;
use crate::sweep::results::ResultDir;
use crate::sweep::search::Mode;
use crate::sweep::summary::final_table;
use crate::target::prepare;

/// `benchctl sweep [attach|cancel]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepCmd {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    #[command(flatten)]
    pub args: SweepArgs,
}

#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Follow a sweep the controller runs: its progress, then its summary (Ctrl-C detaches).
    Attach(super::sweep_remote::AttachArgs),
    /// Stop a sweep the controller runs or has queued (finished tests are kept).
    Cancel(super::sweep_remote::AttachArgs),
}

/// Runs `benchctl sweep`, `sweep attach`, `sweep cancel`.
pub async fn dispatch(cmd: SweepCmd) -> anyhow::Result<ExitCode> {
    match cmd.action {
        Some(SweepAction::Attach(a)) => super::sweep_remote::attach(a).await,
        Some(SweepAction::Cancel(a)) => super::sweep_remote::cancel(a).await,
        None if cmd.args.remote.enabled() => super::sweep_remote::submit(cmd.args).await,
        None => run(cmd.args).await,
    }
}

/// `benchctl sweep`: the seed's `vllm_bench_with_gpu.sh`. Grid flags override `--config`.
#[derive(Clone, Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A TOML file with the grid and the search (see deploy/sweep.example.toml); flags win.
    #[arg(long, env = "BENCHCTL_SWEEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// The model's dtype, for the result directory's name (the seed's `--dtype`). Default: auto.
    #[arg(long, env = "BENCHCTL_DTYPE")]
    pub dtype: Option<String>,
    /// Tensor parallelism of the server, for the directory name. Default: the number of GPUs
    /// monitored (--gpu-num / --gpus), else 1.
    #[arg(long, env = "BENCHCTL_TP", value_parser = clap::value_parser!(u32).range(1..))]
    pub tp: Option<u32>,
    /// Input/output token lengths to test, e.g. 1024x1024,2048x512.
    #[arg(long, env = "BENCHCTL_IO")]
    pub io: Option<String>,
    /// Concurrencies to test per combination, e.g. 1,2,4,8,16.
    #[arg(long, env = "BENCHCTL_CONCURRENCY")]
    pub concurrency: Option<String>,
    /// Requests per test (fixed). Default: max(--min-prompts, --prompts-per-concurrency × C).
    #[arg(long, env = "BENCHCTL_NUM_PROMPTS", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "prompts_per_concurrency")]
    pub num_prompts: Option<u64>,
    /// Requests per test as a multiple of its concurrency [default: 4].
    #[arg(long, env = "BENCHCTL_PROMPTS_PER_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..))]
    pub prompts_per_concurrency: Option<u64>,
    /// The fewest requests in a test [default: 10].
    #[arg(long, env = "BENCHCTL_MIN_PROMPTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_prompts: Option<u64>,
    /// Warm-up requests before each test (own prompts, not measured). Default: the test's
    /// concurrency (one wave); 0 turns it off.
    #[arg(long, env = "BENCHCTL_WARMUP_REQUESTS")]
    pub warmup_requests: Option<u64>,
    /// Latency bounds a test must meet, in ms: "ttft:400 tpot:50" (the seed's; mean), also
    /// p99_ttft:400, median_tpot:50, itl, e2el. Without it every grid point is tested.
    #[arg(long, env = "BENCHCTL_THRESHOLD")]
    pub threshold: Option<String>,
    /// The largest fraction of failed requests a passing test may have [default: 0].
    #[arg(long, env = "BENCHCTL_MAX_ERROR_RATE")]
    pub max_error_rate: Option<f64>,
    /// ascending: the seed's walk (stop after a pass then a fail); bisect: then halve the gap
    /// to the exact boundary [default: ascending].
    #[arg(long, env = "BENCHCTL_SEARCH", value_enum)]
    pub search: Option<Mode>,
    /// Runs of each boundary test (max passing, first failing), judged on the pooled requests;
    /// without --threshold, runs of every test [default: 1].
    #[arg(long, env = "BENCHCTL_REPEATS", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: Option<u32>,
    /// Labels kept with the results: --metadata tp=8 dtype=fp16 (or comma-separated).
    #[arg(long, env = "BENCHCTL_METADATA", num_args = 1.., value_delimiter = ',', value_parser = super::parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// Where result directories are made.
    #[arg(long, env = "BENCHCTL_RESULT_DIR", default_value = "bench_logs")]
    pub result_dir: PathBuf,
    /// Serve the live dashboard of --result-dir while the sweep runs ("off": none). Port 0
    /// picks a free port; the URL is printed.
    #[arg(long, env = "BENCHCTL_DASHBOARD_ADDR", default_value = "127.0.0.1:0")]
    pub dashboard_addr: String,
    /// Bearer token of the dashboard (required beyond loopback); never logged.
    #[arg(long, env = "BENCHCTL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Continue the sweep in this result directory: its saved plan is used, finished tests are
    /// kept, the rest run. Server flags (--base-url, --model-path, API key…) come from this
    /// command line.
    #[arg(long, env = "BENCHCTL_RESUME", conflicts_with_all = [
        "config", "dtype", "tp", "io", "concurrency", "num_prompts", "prompts_per_concurrency",
        "min_prompts", "warmup_requests", "threshold", "max_error_rate", "search", "repeats",
        "metadata",
    ])]
    pub resume: Option<PathBuf>,
    /// Distributed mode: submit the sweep to the controller and follow it (Ctrl-C detaches;
    /// the sweep goes on there).
    #[command(flatten)]
    pub remote: super::sweep_remote::RemoteArgs,
    /// With --controller/--etcd: submit, print the sweep's id and return.
    #[arg(long, env = "BENCHCTL_DETACH")]
    pub detach: bool,
}

/// Runs `benchctl sweep`.
pub async fn run(mut args: SweepArgs) -> anyhow::Result<ExitCode> {
    // Everything the user typed is checked before any process starts or any load is sent.
    if let Some(dir) = &args.resume {
        let abs = dir.canonicalize().map_err(|e| {
            anyhow::anyhow!(
                "--resume {}: {e} (expected a sweep's result directory)",
                dir.display()
            )
        })?;
        args.resume = Some(abs);
    }
    let mut plan = match &args.resume {
        Some(dir) => Plan::load(dir)?,
        None => super::sweep_config::resolve(&args)?,
    };
    let sim = super::start_sim(&mut args.common).await?;
    let result = run_with_target(&args, &mut plan).await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    result
}

async fn run_with_target(args: &SweepArgs, plan: &mut Plan) -> anyhow::Result<ExitCode> {
    let dashboard = start_dashboard(args).await?;
    let (system, gpu_note) = match start_system(args).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(d) = dashboard {
                d.stop().await;
            }
            return Err(e);
        }
    };
    let result = sweep(args, plan, &system, gpu_note, dashboard.as_ref()).await;
    system.stop().await;
    if let Some(d) = dashboard {
        d.stop().await;
    }
    result
}

/// The live dashboard over the result directories (`--dashboard-addr`, "off" for none).
async fn start_dashboard(
    args: &SweepArgs,
) -> anyhow::Result<Option<crate::dashboard::server::Dashboard>> {
    let Some(addr) = super::dashboard_addr(&args.dashboard_addr)? else {
        return Ok(None);
    };
    let root = match &args.resume {
        Some(d) => d
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| ".".into()),
        None => args.result_dir.clone(),
    };
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create --result-dir {}", root.display()))?;
    let d = crate::dashboard::server::start(crate::dashboard::server::DashboardConfig {
        addr,
        token: args.dashboard_token.clone(),
        sources: crate::dashboard::server::Sources::Root(root),
        metadata: Default::default(),
    })
    .await?;
    Ok(Some(d))
}

/// The local controller, worker and (where there are GPUs) agent. `--gpu-num`/`--gpus` make GPU
/// telemetry required; without them the sweep monitors every GPU NVML finds, or says there are
/// none.
async fn start_system(args: &SweepArgs) -> anyhow::Result<(LocalSystem, String)> {
    let c = &args.common;
    let n_workers = c.workers.unwrap_or(1);
    let spec = |gpus| c.telemetry(gpus);
    match c.gpus() {
        Some(gpus) => {
            let system = LocalSystem::start(Some(spec(gpus)), n_workers).await?;
            let note = crate::gpu_stats::note(&system.server.registry).await;
            Ok((system, note))
        }
        None if c.telemetry_source == SourceKind::Nvml => {
            match LocalSystem::start(Some(spec(GpuSelection::All)), n_workers).await {
                Ok(system) => {
                    let note = crate::gpu_stats::note(&system.server.registry).await;
                    Ok((system, note))
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    eprintln!(
                        "GPU statistics are absent from this sweep: {why}\n(the sweep runs without them; --gpu-num N makes them required)"
                    );
                    let system = LocalSystem::start(None, n_workers).await?;
                    Ok((system, format!("absent: {why}")))
                }
            }
        }
        None => {
            eprintln!(
                "GPU statistics are absent from this sweep: --telemetry-source simulated needs --gpu-num or --gpus"
            );
            Ok((
                LocalSystem::start(None, n_workers).await?,
                "absent: no --gpu-num".into(),
            ))
        }
    }
}

async fn sweep(
    args: &SweepArgs,
    plan: &mut Plan,
    system: &LocalSystem,
    gpu_note: String,
    dashboard: Option<&crate::dashboard::server::Dashboard>,
) -> anyhow::Result<ExitCode> {
    let max_c = plan.concurrency.iter().copied().max().unwrap_or(1) as usize;
    let target = args.common.target();
    let prep = prepare(&target, max_c).await?;
    let dir = match &args.resume {
        Some(d) => {
            if prep.model != plan.served_model {
                bail!(
                    "--resume {}: the sweep measured model {:?}, the server now serves {:?} (set --model-name)",
                    d.display(),
                    plan.served_model,
                    prep.model
                );
            }
            let dir = ResultDir::open(d.clone(), plan.model_label.clone())?;
            eprintln!(
                "resuming {}: {} finished tests kept, not rerun",
                d.display(),
                dir.entries().len()
            );
            dir
        }
        None => {
            let dir = create_dir(&args.result_dir, &target, plan, &prep)?;
            eprintln!("results in {}", dir.dir.display());
            dir
        }
    };

    if let Some(d) = dashboard {
        eprintln!(
            "live dashboard: {}sweep/{}{}",
            d.url(),
            dir.dir
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            if args.dashboard_token.is_some() {
                "?token=…"
            } else {
                ""
            }
        );
    }
    if !args.common.no_preflight {
        preflight_plan(plan, &prep).await?;
    }

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let resume_hint = dir.dir.display().to_string();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted: the test in flight is discarded; finished tests are kept. Continue with: benchctl sweep --resume {resume_hint}\n(Ctrl-C again to exit at once)"
            );
            on_signal.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted again: exiting now; finished tests are kept");
            std::process::exit(130);
        }
    });
    let progress = Progress::new(plan, plan.threshold.is_some(), args.common.quiet, None);
    let out = execute(Exec {
        plan,
        base_urls: target.base_urls(),
        want_workers: args.common.workers.map(|w| w as usize),
        prep,
        workers: system.server.workers.clone(),
        registry: system.server.registry.clone(),
        telemetry: system.has_telemetry(),
        gpu_note,
        dir,
        cancel,
        handover: None,
        progress,
        hook: None,
        failovers: Vec::new(),
    })
    .await;
    signal.abort();
    let out = out?;
    eprint!("{}", final_table(&out.summary));
    eprintln!(
        "results: {} ({} tests)\nsummary: {}",
        out.dir.result_path().display(),
        out.dir.entries().len(),
        out.dir.dir.join("summary.md").display()
    );
    match out.stop {
        None => Ok(ExitCode::SUCCESS),
        Some(Stop::Interrupted | Stop::Handover) => Ok(ExitCode::from(130)),
        Some(Stop::ServerDown(why)) => bail!(
            "{why}; the sweep stopped: finished tests are kept, continue with benchctl sweep --resume {}",
            out.dir.dir.display()
        ),
    }
}
