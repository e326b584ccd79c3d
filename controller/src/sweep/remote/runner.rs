//! Runs (or resumes) one sweep on this controller: reaches the target, opens its result
//! directory (recording a failover when an earlier leader left it running), waits for the
//! agents, then runs the engine with checkpoints at each test's start and commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::checkpoint::{Change, Checkpoint, TargetSpec, unix_now};
use super::manager::{Ending, Manager};
use crate::sweep::engine::{self, Exec, Hook, HookEvent, Stop};
use crate::sweep::feed::Feed;
use crate::sweep::plan::Plan;
use crate::sweep::progress::Progress;
use crate::sweep::results::ResultDir;
use crate::sweep::status::Status;
use crate::target::Prepared;

/// How long a sweep resumed by a new leader waits for the agents to reconnect.
const AGENT_WAIT: Duration = Duration::from_secs(30);

/// How long a resumed sweep waits for a deposed controller to release its result directory.
const DIR_WAIT: Duration = Duration::from_secs(30);

/// One sweep to run, as the owner hands it to its runner.
pub(super) struct Run {
    pub sweeps: Manager,
    /// Its checkpoint when it started.
    pub doc: Checkpoint,
    pub feed: Arc<Feed>,
    /// `CancelSweep`: interrupt it.
    pub cancel: CancellationToken,
    /// This controller stops writing (a parent of `cancel`).
    pub handover: CancellationToken,
}

impl Run {
    /// Runs (or resumes) the sweep; a failure is the sweep's (`failed`).
    pub(super) async fn run(mut self) -> anyhow::Result<Ending> {
        if self.cancel.is_cancelled() || self.doc.cancel_requested {
            return Ok(Ending::ran(Status::Interrupted, String::new()));
        }
        let target = self.doc.spec.target_with_key();
        let plan = self.doc.spec.plan.clone();
        let prep = self.reach_target(&target, &plan).await?;
        let was_running = self.doc.status == Status::Running;
        // the test an earlier leader had in flight: when it starts here, it is a rerun
        let discarded = if was_running {
            self.doc.in_flight.clone()
        } else {
            None
        };
        let dir = self.open_dir(&plan).await?;
        if was_running {
            self.record_failover(&dir);
        }
        self.adopt_kept(&dir);
        let gpus = self.wait_for_agents(&target).await;
        let me = self.sweeps.setup.me.clone();
        let running = Change::Running {
            leader: me.clone(),
            failovers: self.doc.failovers.clone(),
            done_tests: self.doc.done_tests.clone(),
            gpus,
        };
        self.sweeps.update(&self.doc.id, running).await?;
        self.feed
            .line(format!("sweep {} running on {me}", self.doc.id));
        if let Some(n) = target.gpu_num
            && gpus < n as usize
        {
            anyhow::bail!(
                "--gpu-num {n}: the agents connected to the controller report {gpus} GPUs"
            );
        }
        self.engine(&plan, &target, prep, dir, gpus > 0, discarded)
            .await
    }

    /// Reaches the target (it may be restarting too, after a node failure: retried for a
    /// minute) and checks it still serves the sweep's model.
    async fn reach_target(&self, target: &TargetSpec, plan: &Plan) -> anyhow::Result<Prepared> {
        let mut tries = 0;
        let prep = loop {
            match crate::target::prepare(&target.target, self.doc.spec.max_concurrency()).await {
                Ok(p) => break p,
                Err(e) if tries < 12 && !self.handover.is_cancelled() => {
                    tries += 1;
                    self.feed.line(format!("{e:#}; retrying in 5 s"));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if prep.model != plan.served_model {
            anyhow::bail!(
                "the sweep measured model {:?}, the server now serves {:?} (a sweep keeps its --model-name)",
                plan.served_model,
                prep.model
            );
        }
        Ok(prep)
    }

    /// Opens the sweep's result directory, or creates it when this controller's `--data-dir`
    /// does not have it (then the tests checkpointed elsewhere run again).
    async fn open_dir(&mut self, plan: &Plan) -> anyhow::Result<ResultDir> {
        let path = self.sweeps.result_dir(&self.doc.id);
        if path.exists() {
            return open_waiting(path, plan.model_label.clone(), &self.handover).await;
        }
        // not there: this --data-dir is not the one the earlier leader wrote to
        let d = ResultDir::create(path, plan.model_label.clone())?;
        crate::output::write_atomic(
            &d.dir.join(crate::sweep::plan::PLAN_FILE),
            &serde_json::to_vec_pretty(plan)?,
        )?;
        let doc = &mut self.doc;
        if !doc.done_tests.is_empty() {
            let msg = format!(
                "{} tests checkpointed by {} are not under this controller's --data-dir {} (is it shared?): they run again",
                doc.done_tests.len(),
                doc.leader,
                self.sweeps.setup.data_dir.display()
            );
            self.feed.line(msg.clone());
            doc.failovers.push(serde_json::json!({"warning": msg}));
            doc.done_tests.clear();
        }
        Ok(d)
    }

    /// Records that this controller took the sweep over from the one that left it running.
    fn record_failover(&mut self, dir: &ResultDir) {
        let me = &self.sweeps.setup.me;
        let doc = &mut self.doc;
        let kept = dir.kept().count();
        let f = serde_json::json!({
            "at_unix_s": unix_now(),
            "previous_leader": doc.leader,
            "new_leader": me,
            "discarded_test": doc.in_flight,
            "tests_kept": kept,
        });
        let msg = format!(
            "{me} took over from {}: {kept} finished tests kept, not rerun{}",
            doc.leader,
            doc.in_flight
                .as_deref()
                .map(|t| format!("; test {t} in flight was discarded and runs again"))
                .unwrap_or_default()
        );
        tracing::warn!("sweep {}: {msg}", doc.id);
        self.feed.line(msg);
        doc.failovers.push(f);
        self.sweeps.setup.metrics.failovers.inc();
    }

    /// Counts as done the tests on disk whose checkpoint the earlier leader did not live to
    /// write.
    fn adopt_kept(&mut self, dir: &ResultDir) {
        for e in dir.kept() {
            if let Some(t) = e["test_id"].as_str()
                && !self.doc.done_tests.iter().any(|d| d == t)
            {
                self.doc.done_tests.push(t.to_string());
            }
        }
    }

    /// Agents reconnect to a new leader within seconds: waits (bounded) for the GPUs the sweep
    /// had; answers the GPUs connected now.
    async fn wait_for_agents(&self, target: &TargetSpec) -> usize {
        let registry = &self.sweeps.setup.registry;
        let want_gpus = self.doc.gpus.max(target.gpu_num.unwrap_or(0) as usize);
        let deadline = tokio::time::Instant::now() + AGENT_WAIT;
        while want_gpus > 0
            && connected_gpus(&registry.list().await) < want_gpus
            && tokio::time::Instant::now() < deadline
            && !self.handover.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        connected_gpus(&registry.list().await)
    }

    /// Runs the sweep's tests through the engine, from where the result directory is.
    async fn engine(
        &self,
        plan: &Plan,
        target: &TargetSpec,
        prep: Prepared,
        dir: ResultDir,
        telemetry: bool,
        discarded: Option<String>,
    ) -> anyhow::Result<Ending> {
        let setup = &self.sweeps.setup;
        let gpu_note = if telemetry {
            crate::gpu_stats::note(&setup.registry).await
        } else {
            "absent: no agent connected to the controller".to_string()
        };
        self.feed.line(format!("GPU statistics: {gpu_note}"));
        if !target.no_preflight {
            engine::preflight_plan(plan, &prep).await?;
        }
        let progress = Progress::new(
            plan,
            plan.threshold.is_some(),
            true,
            Some(self.feed.clone()),
        );
        let out = engine::execute(Exec {
            plan,
            base_urls: target.target.base_urls(),
            want_workers: target.workers.map(|w| w as usize),
            prep,
            workers: setup.workers.clone(),
            registry: setup.registry.clone(),
            telemetry,
            gpu_note,
            dir,
            cancel: self.cancel.clone(),
            handover: Some(self.handover.clone()),
            progress,
            hook: Some(self.hook(discarded)),
            failovers: self.doc.failovers.clone(),
        })
        .await?;
        let table = crate::sweep::summary_files::final_table(&out.summary);
        match out.stop {
            None => Ok(Ending {
                combinations: crate::sweep::verdict::combinations(&out.summary),
                ..Ending::ran(Status::Done, table)
            }),
            Some(Stop::Interrupted | Stop::Handover) => Ok(Ending::ran(Status::Interrupted, table)),
            Some(Stop::ServerDown(why)) => Err(anyhow::anyhow!("{why}")),
        }
    }

    /// Checkpoints a test's start and, before its files are written, its end. A write refused
    /// hands the sweep over. Counts the tests run, and as a rerun the start of `discarded` (the
    /// test an earlier leader had in flight).
    fn hook(&self, discarded: Option<String>) -> Hook {
        let sweeps = self.sweeps.clone();
        let id = self.doc.id.clone();
        let handover = self.handover.clone();
        Arc::new(move |e: HookEvent| {
            let (sweeps, id, handover) = (sweeps.clone(), id.clone(), handover.clone());
            let discarded = discarded.clone();
            Box::pin(async move {
                let metrics = &sweeps.setup.metrics;
                let committed = matches!(e, HookEvent::Commit(_));
                let change = match e {
                    HookEvent::Start(k) => {
                        let t = k.id();
                        if discarded.as_deref() == Some(t.as_str()) {
                            metrics.tests_rerun.inc();
                        }
                        Change::TestStarted(t)
                    }
                    HookEvent::Commit(k) => Change::TestCommitted(k.id()),
                };
                let r = sweeps.update(&id, change).await;
                match &r {
                    Err(_) => handover.cancel(),
                    Ok(()) if committed => {
                        metrics.tests_run.inc();
                    }
                    Ok(()) => {}
                }
                r
            })
        })
    }
}

/// GPUs of the agents connected and reporting.
fn connected_gpus(agents: &[proto::AgentStatus]) -> usize {
    agents
        .iter()
        .filter(|a| a.connected && !a.last_samples.is_empty())
        .map(|a| a.gpus.len())
        .sum()
}

/// Opens a result directory, waiting (bounded) for a process that still holds its lock (a
/// controller that was just deposed and is winding down).
async fn open_waiting(
    path: PathBuf,
    label: String,
    stop: &CancellationToken,
) -> anyhow::Result<ResultDir> {
    let deadline = tokio::time::Instant::now() + DIR_WAIT;
    loop {
        match ResultDir::open(path.clone(), label.clone()) {
            Ok(d) => return Ok(d),
            Err(e) if tokio::time::Instant::now() < deadline && !stop.is_cancelled() => {
                tracing::debug!("{}: {e:#}; retrying", path.display());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
