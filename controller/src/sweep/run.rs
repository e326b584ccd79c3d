//! `benchctl sweep`: every input/output combination, its concurrencies chosen by the search,
//! each test run through the controller service (local mode: in this process), judged, and
//! written to the result directory as it finishes.
//!
//! The sweep never keeps a verdict it cannot recompute: a concurrency's verdict is the judgement
//! of all its runs' requests pooled, read back from the directory on `--resume`. The search is a
//! deterministic function of those verdicts, so replaying it over a directory reruns nothing.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use loadgen::report::{RunInfo, Summary, render_text, result_json, summarize};
use loadgen::{DatasetSpec, RequestRecord};
use tokio_util::sync::CancellationToken;

use super::grid::{Io, run_dir_name};
use super::plan::{PLAN_FILE, Plan, SweepArgs};
use super::results::{ComboSummary, PointSummary, ResultDir, SweepSummary, TestKey};
use super::search::{Mode, Search};
use super::threshold::{Thresholds, Verdict};
pub(crate) use crate::bench::prepare as prepare_target;
use crate::bench::{Prepared, add_gpu_stats, gpu_text, preflight, prepare, write_gpu_logs};
use crate::cli::CommonArgs;
use crate::local::{GpuSelection, LocalSystem, SourceKind, TelemetrySpec};
use crate::service::{JobSpec, Registry, Workers};

/// Runs of a test when load workers are lost during it (the partial run is discarded).
const JOB_ATTEMPTS: usize = 3;
/// How long an interrupted test waits for its workers' last records before it is dropped.
const CANCEL_DRAIN: Duration = Duration::from_secs(5);
/// How long a test waits for its load workers to be connected.
const WORKER_WAIT: Duration = Duration::from_secs(60);

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
        Some(dir) => {
            let plan = Plan::load(dir)?;
            plan.thresholds()?;
            plan
        }
        None => super::plan::resolve(&args)?,
    };
    sim::with_sim(args.common.sim, |sim_url| async move {
        if let Some(url) = sim_url {
            args.common.base_url = url;
        }
        run_with_target(&args, &mut plan).await
    })
    .await
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
    if args.dashboard_addr.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = args.dashboard_addr.parse().map_err(|_| {
        anyhow::anyhow!(
            "--dashboard-addr {:?} is not an address such as 127.0.0.1:8501 (or \"off\")",
            args.dashboard_addr
        )
    })?;
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
    let explicit = match (&c.gpu_num, &c.gpus) {
        (Some(n), _) => Some(GpuSelection::First(*n)),
        (None, Some(v)) => Some(GpuSelection::Indices(v.clone())),
        (None, None) => None,
    };
    let spec = |gpus| TelemetrySpec {
        gpus,
        source: c.telemetry_source,
        interval: c.telemetry_interval,
    };
    match explicit {
        Some(gpus) => {
            let system = LocalSystem::start(Some(spec(gpus)), n_workers).await?;
            let note = telemetry_note(&system.server.registry).await;
            Ok((system, note))
        }
        None if c.telemetry_source == SourceKind::Nvml => {
            match LocalSystem::start(Some(spec(GpuSelection::All)), n_workers).await {
                Ok(system) => {
                    let note = telemetry_note(&system.server.registry).await;
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

pub(crate) async fn telemetry_note(registry: &Registry) -> String {
    let agents = registry.list().await;
    let gpus: usize = agents.iter().map(|a| a.gpus.len()).sum();
    let simulated = agents.iter().any(|a| a.simulated);
    // the product names NVML reports, so that a result never depends on a hand-typed label
    let mut names: Vec<String> = agents
        .iter()
        .flat_map(|a| a.gpus.iter())
        .map(|g| {
            if g.driver_version.is_empty() {
                g.name.clone()
            } else {
                format!("{}, driver {}", g.name, g.driver_version)
            }
        })
        .collect();
    names.dedup();
    let note = if simulated {
        format!("SIMULATED ({gpus} made-up GPUs, not measured)")
    } else {
        format!("nvml: {gpus} GPUs ({})", names.join("; "))
    };
    eprintln!("GPU statistics: {note}");
    note
}

/// Called by the engine around each test: `Start` before its load, `Commit` before its files
/// are written. An error means this controller may no longer write (it was deposed): the test
/// is discarded and the sweep handed over.
pub(crate) type Hook = Arc<
    dyn Fn(HookEvent) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone, Debug)]
pub(crate) enum HookEvent {
    Start(TestKey),
    Commit(TestKey),
}

/// Everything the engine runs a sweep with.
pub(crate) struct Exec<'a> {
    pub plan: &'a Plan,
    pub common: &'a CommonArgs,
    pub prep: Prepared,
    pub workers: Workers,
    pub registry: Registry,
    pub telemetry: bool,
    pub gpu_note: String,
    pub dir: ResultDir,
    /// Fires to interrupt (the test in flight is discarded; status `interrupted`).
    pub cancel: CancellationToken,
    /// Fires when this controller must stop writing (leadership lost, or stopping while a
    /// standby takes over): nothing more is written. A parent of `cancel`.
    pub handover: Option<CancellationToken>,
    pub progress: Progress,
    pub hook: Option<Hook>,
    /// Earlier controllers' losses (distributed mode), kept in the summary.
    pub failovers: Vec<serde_json::Value>,
}

/// How the engine ended.
pub(crate) struct Outcome {
    pub summary: SweepSummary,
    pub stop: Option<Stop>,
    pub dir: ResultDir,
}

/// State of the sweep shared by its steps.
struct Sweep<'a> {
    plan: &'a Plan,
    thresholds: Option<Thresholds>,
    percentiles: Vec<f64>,
    prep: Prepared,
    workers: Workers,
    registry: Registry,
    /// The server's base URLs (its replicas).
    base_urls: Vec<String>,
    /// `--workers`: how many workers share each test (`None`: every idle one).
    want_workers: Option<usize>,
    telemetry: bool,
    dir: ResultDir,
    /// Records of finished tests, by test, read back lazily.
    records: HashMap<TestKey, Arc<Vec<RequestRecord>>>,
    summary: SweepSummary,
    cancel: CancellationToken,
    handover: Option<CancellationToken>,
    hook: Option<Hook>,
    progress: Progress,
}

/// Why the sweep stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    Interrupted,
    ServerDown(String),
    /// This controller may no longer write: a new leader continues the sweep.
    Handover,
}

/// The model, the thresholds' percentiles: what the plan needs from the target before a run.
pub(crate) fn percentiles_of(plan: &Plan) -> anyhow::Result<(Option<Thresholds>, Vec<f64>)> {
    let thresholds = plan.thresholds()?;
    let mut percentiles =
        loadgen::stats::parse_percentiles(&plan.percentiles).map_err(anyhow::Error::msg)?;
    if let Some(t) = &thresholds {
        for p in t.percentiles() {
            if !percentiles.contains(&p) {
                percentiles.push(p);
            }
        }
    }
    Ok((thresholds, percentiles))
}

/// Creates a new sweep's result directory under `root` (the plan gets its model) and writes the
/// plan into it. A directory of that name already there gets a suffix.
pub(crate) fn create_dir(
    root: &std::path::Path,
    common: &CommonArgs,
    plan: &mut Plan,
    prep: &Prepared,
) -> anyhow::Result<ResultDir> {
    plan.served_model = prep.model.clone();
    plan.model_label = model_label(common, &prep.model);
    let name = run_dir_name(
        &plan.model_label,
        plan.tp,
        &plan.dtype,
        chrono::Local::now(),
    );
    let mut path = root.join(&name);
    let mut k = 2;
    while path.exists() {
        path = root.join(format!("{name}-{k}"));
        k += 1;
    }
    let dir = ResultDir::create(path, plan.model_label.clone())?;
    crate::output::write_atomic(&dir.dir.join(PLAN_FILE), &serde_json::to_vec_pretty(plan)?)?;
    Ok(dir)
}

/// The one request sent before a sweep to catch a rejected payload.
pub(crate) async fn preflight_plan(plan: &Plan, prep: &Prepared) -> anyhow::Result<()> {
    let io = plan.io[0];
    let p = loadgen::dataset::build(&dataset(plan, io), 1, &prep.tokenizer, plan.seed).await?;
    preflight(&prep.client, &p[0]).await
}

async fn sweep(
    args: &SweepArgs,
    plan: &mut Plan,
    system: &LocalSystem,
    gpu_note: String,
    dashboard: Option<&crate::dashboard::server::Dashboard>,
) -> anyhow::Result<ExitCode> {
    let max_c = plan.concurrency.iter().copied().max().unwrap_or(1) as usize;
    let prep = prepare(&args.common, max_c).await?;
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
            let dir = create_dir(&args.result_dir, &args.common, plan, &prep)?;
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
        common: &args.common,
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

/// Runs a sweep's missing tests into `x.dir` (new or resumed) and writes its summary. Every
/// failure of the server or interruption is an [`Outcome`] with its `stop`; an error is a
/// failure of the sweep itself (its summary says `failed`).
pub(crate) async fn execute(x: Exec<'_>) -> anyhow::Result<Outcome> {
    let Exec {
        plan,
        common,
        prep,
        workers,
        registry,
        telemetry,
        gpu_note,
        dir,
        cancel,
        handover,
        progress,
        hook,
        failovers,
    } = x;
    let (thresholds, percentiles) = percentiles_of(plan)?;
    let summary = SweepSummary {
        model: prep.model.clone(),
        tp: plan.tp,
        dtype: plan.dtype.clone(),
        threshold: plan.threshold.clone(),
        max_error_rate: plan.max_error_rate,
        search: match (&thresholds, plan.search) {
            (None, _) => "none (every grid point)".into(),
            (Some(_), Mode::Ascending) => "ascending".into(),
            (Some(_), Mode::Bisect) => "bisect".into(),
        },
        repeats: plan.repeats,
        metadata: plan.metadata.clone(),
        target_is_simulator: prep.target_is_simulator,
        gpu_telemetry: gpu_note,
        status: "running".into(),
        failovers,
        combinations: plan
            .io
            .iter()
            .map(|io| ComboSummary {
                input_len: io.input_len,
                output_len: io.output_len,
                status: "pending".into(),
                ..Default::default()
            })
            .collect(),
    };
    // a resumed sweep starts with its finished tests done
    let finished: u64 = dir
        .kept()
        .map(|e| e["completed"].as_u64().unwrap_or(0) + e["failed"].as_u64().unwrap_or(0))
        .sum();
    progress.already_done(finished);
    let mut s = Sweep {
        plan,
        thresholds,
        percentiles,
        prep,
        workers,
        registry,
        base_urls: common.base_urls(),
        want_workers: common.workers.map(|w| w as usize),
        telemetry,
        dir,
        records: HashMap::new(),
        summary,
        cancel,
        handover,
        hook,
        progress,
    };
    let mut stop = None;
    for (i, io) in s.plan.io.iter().copied().enumerate() {
        s.summary.combinations[i].status = "running".into();
        match s.combination(i, io).await {
            Ok(()) => s.summary.combinations[i].status = "done".into(),
            Err(e) => match e.downcast::<StopError>() {
                Ok(StopError(Stop::Handover)) => {
                    // another controller owns the directory now: write nothing more
                    s.progress.finish();
                    return Ok(Outcome {
                        summary: s.summary,
                        stop: Some(Stop::Handover),
                        dir: s.dir,
                    });
                }
                Ok(StopError(why)) => {
                    s.refresh(i, io, None).await?;
                    s.summary.combinations[i].status = match why {
                        Stop::ServerDown(_) => "failed".into(),
                        _ => "interrupted".into(),
                    };
                    stop = Some(why);
                    break;
                }
                Err(e) => {
                    s.summary.status = "failed".into();
                    s.summary.write(&s.dir.dir).ok();
                    s.progress.finish();
                    return Err(e);
                }
            },
        }
        s.summary.write(&s.dir.dir)?;
    }
    s.progress.finish();
    s.summary.status = match &stop {
        None => "done",
        Some(Stop::ServerDown(_)) => "failed",
        Some(_) => "interrupted",
    }
    .into();
    s.summary.write(&s.dir.dir)?;
    Ok(Outcome {
        summary: s.summary,
        stop,
        dir: s.dir,
    })
}

#[derive(Debug)]
struct StopError(Stop);

impl std::fmt::Display for StopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Stop::Interrupted => write!(f, "interrupted"),
            Stop::Handover => write!(f, "handed over to another controller"),
            Stop::ServerDown(w) => write!(f, "{w}"),
        }
    }
}

impl std::error::Error for StopError {}

/// The model name in the directory: `--model-name`, else `--model-path`'s last component (as the
/// seed), else the served model.
fn model_label(common: &CommonArgs, served: &str) -> String {
    let raw = common
        .model_name
        .clone()
        .or_else(|| common.model_path.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_else(|| served.to_string());
    // the directory name's rules (last path component, safe characters)
    let name = run_dir_name(&raw, 1, "x", chrono::Local::now());
    name.rsplit_once("_tp1_dtypex_")
        .map(|(m, _)| m.to_string())
        .unwrap_or(name)
}

fn dataset(plan: &Plan, io: Io) -> DatasetSpec {
    DatasetSpec::Random {
        input_len: io.input_len,
        output_len: io.output_len,
        range_ratio: plan.random_range_ratio,
        prefix_len: plan.prefix_len,
    }
}

/// Each test's own seed: its prompts differ from every other test's (a server with prefix
/// caching must not serve a test from an earlier one's cache) and are the same on a rerun.
fn test_seed(base: u64, key: &TestKey) -> u64 {
    let mut h = base ^ 0x9e37_79b9_7f4a_7c15;
    for v in [
        key.io.input_len as u64,
        key.io.output_len as u64,
        key.concurrency as u64,
        key.run as u64,
    ] {
        h = (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h
}

impl Sweep<'_> {
    /// The stop a fired `cancel` means.
    fn stopped(&self) -> anyhow::Error {
        if self.handover.as_ref().is_some_and(|h| h.is_cancelled()) {
            StopError(Stop::Handover).into()
        } else {
            StopError(Stop::Interrupted).into()
        }
    }

    /// One combination: replays the search over the finished tests and runs what is missing.
    async fn combination(&mut self, i: usize, io: Io) -> anyhow::Result<()> {
        // records are pooled within a combination only: keep one combination's in memory
        self.records.clear();
        let grid = self.plan.concurrency.clone();
        if self.thresholds.is_none() {
            // no thresholds: every grid point, `repeats` runs each
            for &c in &grid {
                self.ensure_runs(io, c, self.plan.repeats).await?;
                self.refresh(i, io, None).await?;
            }
            return Ok(());
        }
        loop {
            let mut search = Search::new(self.plan.search, grid.clone());
            while let Some(c) = search.next_test() {
                if self.dir.runs_of(io, c).is_empty() {
                    self.ensure_runs(io, c, 1).await?;
                }
                let pass = self.verdict(io, c).await?.pass;
                search.record(c, pass);
                self.refresh(i, io, Some(&search)).await?;
            }
            // --repeats: the boundary's tests are run `repeats` times and judged pooled; a
            // verdict that changes moves the boundary, and the search is replayed.
            let o = search.outcome().clone();
            let mut changed = false;
            for c in [o.max_passing, o.first_failing].into_iter().flatten() {
                let before = self.verdict(io, c).await?.pass;
                self.ensure_runs(io, c, self.plan.repeats).await?;
                let after = self.verdict(io, c).await?.pass;
                if before != after {
                    self.progress.line(format!(
                        "{io} c={c}: pooled over {} runs the verdict is now {}; searching again",
                        self.plan.repeats,
                        if after { "pass" } else { "fail" }
                    ));
                    changed = true;
                    break;
                }
            }
            self.refresh(i, io, Some(&search)).await?;
            if !changed {
                self.progress.skip(io, search.skipped(), self.plan);
                return Ok(());
            }
        }
    }

    /// Runs `(io, c)` until it has `runs` finished runs.
    async fn ensure_runs(&mut self, io: Io, c: u32, runs: u32) -> anyhow::Result<()> {
        let have = self.dir.runs_of(io, c).len() as u32;
        for run in have + 1..=runs {
            self.test(TestKey {
                io,
                concurrency: c,
                run,
            })
            .await?;
        }
        Ok(())
    }

    async fn records_of(&mut self, key: &TestKey) -> anyhow::Result<Arc<Vec<RequestRecord>>> {
        if let Some(r) = self.records.get(key) {
            return Ok(r.clone());
        }
        let r = Arc::new(self.dir.load_records(key)?);
        self.records.insert(*key, r.clone());
        Ok(r)
    }

    /// All runs of `(io, c)`, pooled.
    async fn pooled(&mut self, io: Io, c: u32) -> anyhow::Result<(Summary, u32)> {
        let keys = self.dir.runs_of(io, c);
        let mut all = Vec::new();
        for k in &keys {
            all.extend(self.records_of(k).await?.iter().cloned());
        }
        Ok((summarize(&all, &self.percentiles, &[]), keys.len() as u32))
    }

    async fn verdict(&mut self, io: Io, c: u32) -> anyhow::Result<Verdict> {
        let (summary, _) = self.pooled(io, c).await?;
        Ok(self
            .thresholds
            .as_ref()
            .expect("verdicts only with thresholds")
            .judge(&summary))
    }

    /// Recomputes combination `i`'s summary and rewrites the summary files.
    async fn refresh(&mut self, i: usize, io: Io, search: Option<&Search>) -> anyhow::Result<()> {
        let mut cs: Vec<u32> = self
            .dir
            .kept()
            .filter_map(TestKey::of)
            .filter(|k| k.io == io)
            .map(|k| k.concurrency)
            .collect();
        cs.sort_unstable();
        cs.dedup();
        let mut points = Vec::new();
        for c in cs {
            let (s, runs) = self.pooled(io, c).await?;
            let verdict = self.thresholds.as_ref().map(|t| t.judge(&s));
            let entries: Vec<&serde_json::Value> = self
                .dir
                .entries()
                .iter()
                .filter(|e| TestKey::of(e).is_some_and(|k| k.io == io && k.concurrency == c))
                .collect();
            let mean_of = |key: &str| {
                let v: Vec<f64> = entries.iter().filter_map(|e| e[key].as_f64()).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let m = |metric: loadgen::report::Metric| s.metrics.get(&metric);
            use loadgen::report::Metric::*;
            let mut pooled = std::collections::BTreeMap::new();
            for metric in [Ttft, Tpot, Itl, E2el] {
                if let Some(d) = m(metric) {
                    let k = metric.key();
                    pooled.insert(format!("mean_{k}_ms"), d.mean);
                    pooled.insert(format!("median_{k}_ms"), d.median);
                    for &(p, v) in &d.percentiles {
                        pooled.insert(
                            format!("p{}_{k}_ms", loadgen::stats::percentile_label(p)),
                            v,
                        );
                    }
                }
            }
            points.push(PointSummary {
                concurrency: c,
                runs,
                pass: verdict.as_ref().map(|v| v.pass),
                violations: verdict.map(|v| v.violations).unwrap_or_default(),
                completed: s.completed,
                failed: s.failed,
                output_throughput: mean_of("output_throughput").unwrap_or(0.0),
                request_throughput: mean_of("request_throughput").unwrap_or(0.0),
                mean_ttft_ms: m(Ttft).map(|d| d.mean),
                p99_ttft_ms: m(Ttft).and_then(|d| d.get(99.0)),
                mean_tpot_ms: m(Tpot).map(|d| d.mean),
                p99_tpot_ms: m(Tpot).and_then(|d| d.get(99.0)),
                mean_itl_ms: m(Itl).map(|d| d.mean),
                mean_e2el_ms: m(E2el).map(|d| d.mean),
                p99_e2el_ms: m(E2el).and_then(|d| d.get(99.0)),
                gpu_utilization_mean_pct: mean_of("gpu_utilization_mean_pct"),
                pooled,
            });
        }
        let combo = &mut self.summary.combinations[i];
        combo.tests_run = self
            .dir
            .entries()
            .iter()
            .filter_map(TestKey::of)
            .filter(|k| k.io == io)
            .count();
        if let Some(search) = search {
            let o = search.outcome();
            combo.max_passing = o.max_passing;
            combo.first_failing = o.first_failing;
            combo.tested = o.tested.clone();
            combo.failed_below_a_pass = o.failed_below_a_pass.clone();
            combo.skipped = search.skipped().to_vec();
            combo.bound_by = o
                .first_failing
                .and_then(|f| points.iter().find(|p| p.concurrency == f))
                .map(|p| p.violations.clone())
                .unwrap_or_default();
        } else {
            combo.tested = points.iter().map(|p| p.concurrency).collect();
        }
        combo.points = points;
        self.summary.write(&self.dir.dir)
    }

    /// Runs one test and commits it. Errors with [`StopError`] when interrupted (the test is
    /// discarded) or when not one request succeeded (the server is not serving).
    async fn test(&mut self, key: TestKey) -> anyhow::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let c = key.concurrency;
        let n = self.plan.prompts.for_concurrency(c);
        let warmup = self.plan.warmup_for(c);
        let seed = test_seed(self.plan.seed, &key);
        self.progress.start(&key, n);
        let mut prompts = loadgen::dataset::build(
            &dataset(self.plan, key.io),
            n + warmup.min(1000),
            &self.prep.tokenizer,
            seed,
        )
        .await
        .with_context(|| format!("building the prompts of test {}", key.id()))?;
        let warmup_prompts = prompts.split_off(n);
        let counter = Arc::new(AtomicU64::new(0));
        let date = chrono::Local::now();
        let job = JobSpec {
            target_urls: self.base_urls.clone(),
            spec: loadgen::wire::request_spec(&self.plan.endpoint, self.prep.client.target()),
            prompts,
            max_concurrency: Some(c as usize),
            request_rate: f64::INFINITY,
            burstiness: 1.0,
            seed,
            warmup_requests: warmup,
            warmup_prompts,
            progress: Some(counter.clone()),
            workers: self.want_workers,
        };
        if let Some(hook) = &self.hook
            && hook(HookEvent::Start(key)).await.is_err()
        {
            return Err(StopError(Stop::Handover).into());
        }
        // workers reconnecting (after a failover, a restart) are waited for, not failed on
        let want = self.want_workers.unwrap_or(1);
        tokio::select! {
            r = self.workers.wait_for(want, WORKER_WAIT) => { r.with_context(|| format!("test {}", key.id()))?; }
            _ = self.cancel.cancelled() => return Err(self.stopped()),
        }
        let ticker = self.progress.follow(counter);
        // a worker lost mid-test: the test is discarded and run again (3 runs at most)
        let run = self
            .workers
            .run_job_retrying(job, JOB_ATTEMPTS, WORKER_WAIT);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = self.cancel.cancelled() => {
                self.workers.cancel_all().await;
                // the workers stop and report within moments; a job between two attempts, or
                // not yet assigned, is dropped (its guard cancels whoever is still on it)
                let _ = tokio::time::timeout(CANCEL_DRAIN, &mut run).await;
                ticker.abort();
                return Err(self.stopped());
            }
        };
        ticker.abort();
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let (job, lost_workers) = result.with_context(|| format!("test {}", key.id()))?;
        let load_workers = job.load_workers_json();
        let mut records = job.records;
        let tok = self.prep.tokenizer.clone();
        let (records, chunk_tokens) = tokio::task::spawn_blocking(move || {
            let how = loadgen::runner::count_tokens(&mut records, Some(&tok));
            (records, how)
        })
        .await?;
        let summary = summarize(&records, &self.percentiles, &[]);
        let info = RunInfo {
            backend: self.prep.client.body_spec().backend.as_str().into(),
            endpoint: self.plan.endpoint.clone(),
            model_id: self.prep.model.clone(),
            tokenizer_id: self.prep.tokenizer.id(),
            num_prompts: n,
            request_rate: f64::INFINITY,
            burstiness: 1.0,
            max_concurrency: Some(c as usize),
            warmup_requests: job.warmup_sent,
            warmup_failed: job.warmup_failed,
            not_sent: job.not_sent,
            chunk_tokens,
            target_is_simulator: self.prep.target_is_simulator,
            date,
        };
        let verdict = self.thresholds.as_ref().map(|t| t.judge(&summary));
        let mut entry = result_json(&info, &summary, &records, false);
        let mut log = render_text(&info, &summary);
        let o = entry.as_object_mut().expect("an object");
        o.insert("concurrency".into(), c.into());
        o.insert("input_len".into(), key.io.input_len.into());
        o.insert("output_len".into(), key.io.output_len.into());
        o.insert("run".into(), key.run.into());
        o.insert("test_id".into(), key.id().into());
        if let Some(v) = &verdict {
            o.insert("threshold".into(), self.plan.threshold.clone().into());
            o.insert("threshold_pass".into(), v.pass.into());
            o.insert(
                "threshold_violations".into(),
                serde_json::json!(v.violations),
            );
            log.push_str(&format!(
                "threshold {}: {}\n",
                self.plan.threshold.as_deref().unwrap_or(""),
                if v.pass {
                    "PASS".to_string()
                } else {
                    format!("FAIL ({})", v.violations.join("; "))
                }
            ));
        }
        if !self.plan.metadata.is_empty() {
            o.insert("metadata".into(), serde_json::json!(self.plan.metadata));
        }
        let from = records
            .iter()
            .map(|r| r.send_ns)
            .min()
            .unwrap_or(job.start_ns);
        let to = records.iter().map(|r| r.end_ns).max().unwrap_or(job.end_ns);
        // the test's window in Unix time, for charts over time
        let unix_of = unix_clock();
        entry["started_at_unix_s"] = unix_of(from).into();
        entry["load_workers"] = load_workers;
        entry["start_skew_ms"] = (job.start_skew_ns as f64 / 1e6).into();
        if !lost_workers.is_empty() {
            entry["attempts"] = (lost_workers.len() + 1).into();
            entry["lost_workers"] = serde_json::json!(lost_workers);
        }
        entry["ended_at_unix_s"] = unix_of(to).into();
        if let Some(hook) = &self.hook
            && hook(HookEvent::Commit(key)).await.is_err()
        {
            // deposed: the new leader runs this test again
            return Err(StopError(Stop::Handover).into());
        }
        if self.telemetry {
            let nodes = self.registry.window(from, to, None).await;
            add_gpu_stats(&mut entry, &nodes, summary.total_output_tokens);
            let gpu_dir = self.dir.dir.join(key.gpu_dir());
            write_gpu_logs(&gpu_dir, &nodes, from)?;
            crate::output::write_atomic(
                &gpu_dir.join("samples.csv"),
                crate::telemetry::samples_csv(&nodes, &unix_of).as_bytes(),
            )?;
            log.push_str(&gpu_text(&nodes));
        }
        let all_failed = summary.completed == 0;
        if all_failed {
            // kept, with its failures counted, but not a verdict: `--resume` runs it again
            entry["aborted"] = "every request failed".into();
        }
        self.dir.commit(&key, entry, &records, &log)?;
        let records: Vec<RequestRecord> = records
            .into_iter()
            .map(|r| RequestRecord {
                text: String::new(),
                ..r
            })
            .collect();
        self.records.insert(key, Arc::new(records));
        self.progress.finished(&key, &summary, verdict.as_ref());
        if all_failed {
            return Err(StopError(Stop::ServerDown(format!(
                "every request of test {} failed: {}",
                key.id(),
                summary.failures_text()
            )))
            .into());
        }
        Ok(())
    }
}

/// The progress display: one bar over the sweep's requests (an upper bound until the search has
/// skipped what it does not need), with an ETA, and a line per finished test.
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
    quiet: bool,
    /// Distributed mode: what clients following the sweep see.
    feed: Option<Arc<super::remote::Feed>>,
    /// Requests of finished tests.
    done: Arc<AtomicU64>,
}

impl Progress {
    pub(crate) fn new(
        plan: &Plan,
        searching: bool,
        quiet: bool,
        feed: Option<Arc<super::remote::Feed>>,
    ) -> Progress {
        let runs = if searching { 1 } else { plan.repeats as u64 };
        let per_io: u64 = plan
            .concurrency
            .iter()
            .map(|&c| plan.prompts.for_concurrency(c) as u64 * runs)
            .sum();
        let total = per_io * plan.io.len() as u64;
        let bar = crate::bench::progress_bar(total, quiet);
        Progress {
            bar,
            quiet,
            feed,
            done: Arc::new(AtomicU64::new(0)),
        }
    }

    fn already_done(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_length(len.max(n));
        self.bar.set_position(n);
        // the ETA is of what remains, not of what an earlier process did
        self.bar.reset_eta();
        self.publish();
    }

    fn line(&self, s: String) {
        if let Some(f) = &self.feed {
            f.line(s.clone());
        }
        if self.quiet {
            tracing::info!("{s}");
        } else if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }

    fn start(&self, key: &TestKey, n: usize) {
        self.bar
            .set_message(format!("test {} ({n} requests)", key.id()));
        // a test the upper bound did not count (bisect, repeats) lengthens the bar
        let done = self.done.load(Ordering::Relaxed);
        let len = self.bar.length().unwrap_or(0);
        if done + n as u64 > len {
            self.bar.set_length(done + n as u64);
        }
        self.publish();
    }

    /// Follows a running test's record counter.
    fn follow(&self, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        let done = self.done.clone();
        let feed = self.feed.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed) + counter.load(Ordering::Relaxed));
                publish(feed.as_deref(), &bar);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    fn publish(&self) {
        publish(self.feed.as_deref(), &self.bar);
    }

    fn finished(&self, key: &TestKey, s: &Summary, verdict: Option<&Verdict>) {
        let n = (s.completed + s.failed) as u64;
        self.done.fetch_add(n, Ordering::Relaxed);
        self.bar.set_position(self.done.load(Ordering::Relaxed));
        self.publish();
        let m = |metric| {
            s.metrics
                .get(&metric)
                .map(|d| format!("{:.1}", d.mean))
                .unwrap_or("-".into())
        };
        use loadgen::report::Metric::*;
        let v = match verdict {
            None => String::new(),
            Some(v) if v.pass => "  PASS".into(),
            Some(v) => format!("  FAIL: {}", v.violations.join("; ")),
        };
        self.line(format!(
            "{:<26} {:>5} ok {:>3} failed  {:>9.1} tok/s  TTFT {} ms  TPOT {} ms  E2EL {} ms{v}",
            key.id(),
            s.completed,
            s.failed,
            s.output_throughput,
            m(Ttft),
            m(Tpot),
            m(E2el),
        ));
    }

    /// The search skipped these concurrencies of `io`: the bar shortens.
    fn skip(&self, _io: Io, skipped: &[u32], plan: &Plan) {
        let less: u64 = skipped
            .iter()
            .map(|&c| plan.prompts.for_concurrency(c) as u64)
            .sum();
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_length(
            len.saturating_sub(less)
                .max(self.done.load(Ordering::Relaxed)),
        );
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Sends the bar's state to the clients following the sweep (distributed mode).
fn publish(feed: Option<&super::remote::Feed>, bar: &indicatif::ProgressBar) {
    if let Some(f) = feed {
        f.progress(
            bar.position(),
            bar.length().unwrap_or(0),
            bar.message().to_string(),
        );
    }
}

/// The closing table printed to stderr.
pub(crate) fn final_table(s: &SweepSummary) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(t, "{:=^72}", " Sweep summary ");
    if s.target_is_simulator {
        let _ = writeln!(t, "target: benchctl sim (a SIMULATOR, not a model)");
    }
    let _ = writeln!(
        t,
        "threshold: {}   search: {}   status: {}",
        s.threshold.as_deref().unwrap_or("none"),
        s.search,
        s.status
    );
    let _ = writeln!(
        t,
        "{:>7} {:>7}  {:>11} {:>13}  bound by",
        "input", "output", "max passing", "first failing"
    );
    for c in &s.combinations {
        let _ = writeln!(
            t,
            "{:>7} {:>7}  {:>11} {:>13}  {}",
            c.input_len,
            c.output_len,
            c.max_passing.map_or("-".into(), |v| v.to_string()),
            c.first_failing.map_or("-".into(), |v| v.to_string()),
            c.bound_by.join("; ")
        );
    }
    t
}

/// Converts this process's `CLOCK_MONOTONIC` (ns) to Unix seconds, anchored now.
fn unix_clock() -> impl Fn(u64) -> f64 {
    let mono_now = loadgen::clock::mono_ns();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    move |t_ns| unix_now - (mono_now as f64 - t_ns as f64) / 1e9
}
