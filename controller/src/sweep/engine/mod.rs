//! The sweep engine: every input/output combination, its concurrencies (or request rates)
//! chosen by the search,
//! each test run through the controller service (local mode: in this process; the controller's
//! queue in the distributed mode), judged, and written to the result directory as it finishes.
//!
//! The sweep never keeps a verdict it cannot recompute: a concurrency's verdict is the judgement
//! of all its runs' requests pooled, read back from the directory on `--resume`. The search is a
//! deterministic function of those verdicts, so replaying it over a directory reruns nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use loadgen::RequestRecord;
use loadgen::report::{Summary, summarize};
use tokio_util::sync::CancellationToken;

use super::axis::Level;
use super::grid::{Io, run_dir_name};
use super::plan::Plan;
use super::progress::Progress;
use super::results::{ResultDir, TestKey};
use super::search::{Mode, Search};
use super::status::Status;
use super::summary::{ComboSummary, PointSummary, SweepSummary};
use super::threshold::{Thresholds, Verdict};
use crate::service::{Registry, Workers};
use crate::target::{Prepared, Target};

/// Runs of a test when load workers are lost during it (the partial run is discarded).
mod test;

pub use test::preflight_plan;

const JOB_ATTEMPTS: usize = 3;
/// How long an interrupted test waits for its workers' last records before it is dropped.
const CANCEL_DRAIN: Duration = Duration::from_secs(5);
/// How long a test waits for its load workers to be connected.
const WORKER_WAIT: Duration = Duration::from_secs(60);

/// Called by the engine around each test: `Start` before its load, `Commit` before its files
/// are written. An error means this controller may no longer write (it was deposed): the test
/// is discarded and the sweep handed over.
pub type Hook = Arc<
    dyn Fn(HookEvent) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone, Debug)]
pub enum HookEvent {
    Start(TestKey),
    Commit(TestKey),
}

/// Everything the engine runs a sweep with.
pub struct Exec<'a> {
    pub plan: &'a Plan,
    /// The server's base URLs (its replicas).
    pub base_urls: Vec<String>,
    /// `--workers`: how many workers share each test (`None`: every idle one).
    pub want_workers: Option<usize>,
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
pub struct Outcome {
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
    /// The server's metrics endpoints scraped during each test (none: not scraped).
    metrics: Vec<String>,
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
pub enum Stop {
    Interrupted,
    ServerDown(String),
    /// This controller may no longer write: a new leader continues the sweep.
    Handover,
}

/// Creates a new sweep's result directory under `root` (the plan gets its model) and writes the
/// plan into it. A directory of that name already there gets a suffix.
pub fn create_dir(
    root: &std::path::Path,
    target: &Target,
    plan: &mut Plan,
    prep: &Prepared,
) -> anyhow::Result<ResultDir> {
    plan.served_model = prep.model.clone();
    plan.model_label = model_label(target, &prep.model);
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
    plan.save(&dir.dir)?;
    Ok(dir)
}

/// Runs a sweep's missing tests into `x.dir` (new or resumed) and writes its summary. Every
/// failure of the server or interruption is an [`Outcome`] with its `stop`; an error is a
/// failure of the sweep itself (its summary says `failed`).
pub async fn execute(x: Exec<'_>) -> anyhow::Result<Outcome> {
    let summary = new_summary(&x);
    let percentiles = x.plan.percentiles()?;
    // a resumed sweep starts with its finished tests done
    let finished: u64 = x.dir.kept().map(requests_of).sum();
    x.progress.already_done(finished);
    let mut s = Sweep {
        plan: x.plan,
        thresholds: x.plan.thresholds(),
        percentiles,
        prep: x.prep,
        workers: x.workers,
        registry: x.registry,
        base_urls: x.base_urls,
        want_workers: x.want_workers,
        telemetry: x.telemetry,
        metrics: Vec::new(),
        dir: x.dir,
        records: HashMap::new(),
        summary,
        cancel: x.cancel,
        handover: x.handover,
        hook: x.hook,
        progress: x.progress,
    };
    let (metrics, line) =
        crate::test_run::metrics_endpoints(&s.plan.server_metrics, &s.base_urls).await;
    if let Some(line) = line {
        s.progress.line(line);
    }
    s.metrics = metrics;
    let stop = match s.combinations().await {
        Ok(stop) => stop,
        Err(e) => {
            s.summary.status = Status::Failed;
            s.summary.write(&s.dir.dir).ok();
            s.progress.finish();
            return Err(e);
        }
    };
    s.progress.finish();
    if !matches!(stop, Some(Stop::Handover)) {
        // (a handed-over sweep belongs to another controller now: nothing more is written)
        s.summary.status = status_of(stop.as_ref());
        s.summary.write(&s.dir.dir)?;
    }
    Ok(Outcome {
        summary: s.summary,
        stop,
        dir: s.dir,
    })
}

/// The summary of a sweep about to run: every combination pending.
fn new_summary(x: &Exec<'_>) -> SweepSummary {
    let plan = x.plan;
    SweepSummary {
        model: x.prep.model.clone(),
        tp: plan.tp,
        dtype: plan.dtype.clone(),
        threshold: plan.threshold.as_ref().map(ToString::to_string),
        max_error_rate: plan.max_error_rate,
        search: match (&plan.threshold, plan.search) {
            (None, _) => "none (every grid point)".into(),
            (Some(_), Mode::Ascending) => "ascending".into(),
            (Some(_), Mode::Bisect) => "bisect".into(),
        },
        axis: plan.axis,
        repeats: plan.repeats,
        metadata: plan.metadata.clone(),
        target_is_simulator: x.prep.target_is_simulator,
        gpu_telemetry: x.gpu_note.clone(),
        gpu_hour_cost: plan.gpu_hour_cost,
        status: Status::Running,
        failovers: x.failovers.clone(),
        combinations: plan
            .io
            .iter()
            .map(|io| ComboSummary {
                axis: plan.axis,
                input_len: io.input_len,
                output_len: io.output_len,
                status: Status::Pending,
                ..Default::default()
            })
            .collect(),
    }
}

/// An invalid test never passes: its verdict fails with the reason first.
pub(crate) fn unless_invalid(mut v: Verdict, invalid: Option<&str>) -> Verdict {
    if let Some(why) = invalid {
        v.pass = false;
        v.violations.insert(0, format!("INVALID ({why})"));
    }
    v
}

/// A sweep's (or a combination's) status once it stopped, early or not.
fn status_of(stop: Option<&Stop>) -> Status {
    match stop {
        None => Status::Done,
        Some(Stop::ServerDown(_)) => Status::Failed,
        Some(_) => Status::Interrupted,
    }
}

/// Requests a result entry sent (completed and failed).
fn requests_of(e: &serde_json::Value) -> u64 {
    e["completed"].as_u64().unwrap_or(0) + e["failed"].as_u64().unwrap_or(0)
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
fn model_label(target: &Target, served: &str) -> String {
    let raw = target
        .model_name
        .clone()
        .or_else(|| target.model_path.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_else(|| served.to_string());
    // the directory name's rules (last path component, safe characters)
    let name = run_dir_name(&raw, 1, "x", chrono::Local::now());
    name.rsplit_once("_tp1_dtypex_")
        .map(|(m, _)| m.to_string())
        .unwrap_or(name)
}

impl Sweep<'_> {
    /// Every combination in turn; `Some` when the sweep stopped early. An error is a failure of
    /// the sweep itself.
    async fn combinations(&mut self) -> anyhow::Result<Option<Stop>> {
        for (i, io) in self.plan.io.iter().copied().enumerate() {
            self.summary.combinations[i].status = Status::Running;
            match self.combination(i, io).await {
                Ok(()) => self.summary.combinations[i].status = Status::Done,
                Err(e) => match e.downcast::<StopError>() {
                    // another controller owns the directory now: write nothing more
                    Ok(StopError(Stop::Handover)) => return Ok(Some(Stop::Handover)),
                    Ok(StopError(why)) => {
                        self.refresh(i, io, None).await?;
                        self.summary.combinations[i].status = status_of(Some(&why));
                        return Ok(Some(why));
                    }
                    Err(e) => return Err(e),
                },
            }
            self.summary.write(&self.dir.dir)?;
        }
        Ok(None)
    }

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
        let axis = self.plan.axis;
        if self.thresholds.is_none() {
            // no thresholds: every grid point, `repeats` runs each
            for level in self.plan.levels() {
                self.ensure_runs(io, level, self.plan.repeats).await?;
                self.refresh(i, io, None).await?;
            }
            return Ok(());
        }
        loop {
            let mut search = Search::with_resolution(
                self.plan.search,
                self.plan.steps(),
                self.plan.resolution(),
            );
            while let Some(step) = search.next_test() {
                let level = axis.level(step);
                if self.dir.runs_of(io, level).is_empty() {
                    self.ensure_runs(io, level, 1).await?;
                }
                let pass = self.verdict(io, level).await?.pass;
                search.record(step, pass);
                self.refresh(i, io, Some(&search)).await?;
            }
            // --repeats: the boundary's tests are run `repeats` times and judged pooled; a
            // verdict that changes moves the boundary, and the search is replayed.
            let o = search.outcome().clone();
            let mut changed = false;
            for level in [o.max_passing, o.first_failing]
                .into_iter()
                .flatten()
                .map(|s| axis.level(s))
            {
                let before = self.verdict(io, level).await?.pass;
                self.ensure_runs(io, level, self.plan.repeats).await?;
                let after = self.verdict(io, level).await?.pass;
                if before != after {
                    self.progress.line(format!(
                        "{io} {}: pooled over {} runs the verdict is now {}; searching again",
                        level.spoken(),
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

    /// Runs `(io, level)` until it has `runs` finished runs.
    async fn ensure_runs(&mut self, io: Io, level: Level, runs: u32) -> anyhow::Result<()> {
        let have = self.dir.runs_of(io, level).len() as u32;
        for run in have + 1..=runs {
            self.test(TestKey { io, level, run }).await?;
        }
        Ok(())
    }

    /// The records' budget (`--max-memory`), their spill file in the result directory.
    fn memory(&self) -> loadgen::MemoryBudget {
        loadgen::MemoryBudget {
            max_bytes: self.plan.max_memory_bytes,
            spill_dir: self.dir.dir.clone(),
        }
    }

    /// All runs of `(io, level)`, pooled: the records of this combination's tests kept in memory
    /// (those that fit `--max-memory`), the others read back from their files, all under the
    /// budget.
    async fn pooled(&mut self, io: Io, level: Level) -> anyhow::Result<(Summary, u32)> {
        let keys = self.dir.runs_of(io, level);
        let mut all = self.memory().store();
        for k in &keys {
            match self.records.get(k) {
                Some(r) => {
                    for x in r.iter() {
                        all.push(0, x.clone())?;
                    }
                }
                None => self
                    .dir
                    .each_record(k, |r| Ok(all.push(0, r).map(|_| ())?))?,
            }
        }
        // runs of one grid point share indexes: only the order matters here
        all.finish()?;
        let summary = summarize(&all, &self.percentiles, &[]);
        all.check().context("reading the pooled records back")?;
        Ok((summary, keys.len() as u32))
    }

    async fn verdict(&mut self, io: Io, level: Level) -> anyhow::Result<Verdict> {
        let (summary, _) = self.pooled(io, level).await?;
        let v = self
            .thresholds
            .as_ref()
            .expect("verdicts only with thresholds")
            .judge(&summary);
        Ok(unless_invalid(v, self.invalid_of(io, level).as_deref()))
    }

    /// Why a run of `(io, level)` is invalid (the client could not hold its load), if one is.
    fn invalid_of(&self, io: Io, level: Level) -> Option<String> {
        self.dir
            .entries()
            .iter()
            .filter(|e| TestKey::of(e).is_some_and(|k| k.io == io && k.level == level))
            .find_map(|e| Some(e.get("invalid")?.as_str()?.to_string()))
    }

    /// Recomputes combination `i`'s summary and rewrites the summary files.
    async fn refresh(&mut self, i: usize, io: Io, search: Option<&Search>) -> anyhow::Result<()> {
        let mut levels: Vec<Level> = self
            .dir
            .kept()
            .filter_map(TestKey::of)
            .filter(|k| k.io == io)
            .map(|k| k.level)
            .collect();
        levels.sort_unstable();
        levels.dedup();
        let mut points = Vec::new();
        for level in levels {
            let (s, runs) = self.pooled(io, level).await?;
            let invalid = self.invalid_of(io, level);
            let verdict = self
                .thresholds
                .as_ref()
                .map(|t| unless_invalid(t.judge(&s), invalid.as_deref()));
            let entries: Vec<&serde_json::Value> = self
                .dir
                .entries()
                .iter()
                .filter(|e| TestKey::of(e).is_some_and(|k| k.io == io && k.level == level))
                .collect();
            points.push(PointSummary::of(level, runs, &s, verdict, &entries));
        }
        let tests_run = self
            .dir
            .entries()
            .iter()
            .filter_map(TestKey::of)
            .filter(|k| k.io == io)
            .count();
        self.summary.combinations[i].update(points, tests_run, search);
        self.summary.mark_frontier(i);
        self.summary.write(&self.dir.dir)
    }
}
