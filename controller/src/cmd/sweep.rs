//! `benchctl sweep` (the original scripts' `vllm_bench_with_gpu.sh`) in one process: the in-process
//! controller, worker and agent, the live dashboard, Ctrl-C, then the sweep engine; with
//! `--controller/--etcd`, the sweep is submitted instead (`sweep_remote.rs`).

use std::process::ExitCode;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::sweep_args::{SweepAction, SweepArgs, SweepCmd};
use crate::local::{GpuSelection, LocalSystem, SourceKind};
use crate::sweep::engine::{Exec, Stop, create_dir, execute, preflight_plan};
use crate::sweep::plan::Plan;
use crate::sweep::progress::Progress;
use crate::sweep::results::ResultDir;
use crate::sweep::summary_files::final_table;
use crate::target::prepare;

/// Runs `benchctl sweep`, `sweep attach`, `sweep cancel`.
pub async fn dispatch(cmd: SweepCmd) -> anyhow::Result<ExitCode> {
    match cmd.action {
        Some(SweepAction::Attach(a)) => super::sweep_remote::attach(a).await,
        Some(SweepAction::Cancel(a)) => super::sweep_remote::cancel(a).await,
        Some(SweepAction::Fetch(a)) => super::sweep_remote::fetch(a).await,
        None if cmd.args.remote.enabled() => super::sweep_remote::submit(cmd.args).await,
        None => run(cmd.args).await,
    }
}

/// Runs `benchctl sweep`.
pub async fn run(mut args: SweepArgs) -> anyhow::Result<ExitCode> {
    crate::waiting::set_quiet(args.common.quiet);
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
    super::sweep_remote::gate_needs_threshold(&args, &plan)?;
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
    let max_c = plan.max_in_flight();
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
    let kept_dir = resume_hint.clone();
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
    let progress =
        Progress::new(plan, plan.threshold.is_some(), args.common.quiet, None).with_limits(
            crate::waiting::limits_text(target.timeout, target.stall_timeout),
        );
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
    // a failure mid-sweep (a full disk, a lost controller): what is kept and how to go on
    let out = out.with_context(|| {
        format!(
            "the sweep stopped; its finished tests are kept in {kept_dir}. Once the cause is fixed, continue with: benchctl sweep --resume {kept_dir}"
        )
    })?;
    eprint!("{}", final_table(&out.summary));
    eprintln!(
        "results: {} ({} tests)\nsummary: {}",
        out.dir.result_path().display(),
        out.dir.entries().len(),
        out.dir.dir.join("summary.md").display()
    );
    match out.stop {
        None => {
            if let Some(n) = args.require_max_passing {
                let combos = crate::sweep::verdict::combinations(&out.summary);
                crate::sweep::verdict::require_max_passing(n, &combos)
                    .map_err(|e| anyhow::anyhow!("the sweep is done, but {e}"))?;
                eprintln!(
                    "--require-max-passing {n}: every IO combination passed at concurrency {n} or more"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Stop::Interrupted | Stop::Handover) => Ok(ExitCode::from(130)),
        Some(Stop::ServerDown(why)) => bail!(
            "{why}; the sweep stopped: finished tests are kept, continue with benchctl sweep --resume {}",
            out.dir.dir.display()
        ),
    }
}
