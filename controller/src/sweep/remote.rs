//! Sweeps run by the controller (distributed mode).
//!
//! `benchctl sweep --controller URL` (or `--etcd URLS`, which finds the elected controller)
//! submits a sweep; the controller runs the same engine as local mode ([`super::engine::execute`])
//! over its load workers and agents, one sweep at a time, with results under its `--data-dir`.
//!
//! With etcd, each sweep is checkpointed under `/benchctl/v1/state/sweeps/<id>`: its plan and
//! target, its status, the test in flight and the tests finished. Every write is fenced by the
//! leader's election key, and a test's checkpoint is written *before* its files: a deposed
//! leader never writes results. A newly elected controller reads the checkpoints, resumes every
//! sweep left running from the result directory (the data directory is shared between the
//! controllers, as a Kubernetes ReadWriteMany volume), reruns nothing finished, and records the
//! failover (from whom, the test in flight that was discarded) in the sweep's summary.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::plan::Plan;
use super::results::ResultDir;
use super::engine::{Exec, Hook, HookEvent, Stop};
use super::plan::SweepTarget;
use super::progress::Progress;
use crate::service::{Registry, Workers};

/// How long a sweep resumed by a new leader waits for the agents to reconnect.
const AGENT_WAIT: Duration = Duration::from_secs(30);

/// Lines a client attaching late still gets.
const BACKLOG: usize = 500;

/// A submitted sweep: what `SubmitSweep` carries and etcd keeps.
#[derive(Clone, Serialize, Deserialize)]
pub struct Spec {
    pub plan: Plan,
    /// The server flags (`--base-url`, `--model-name`, `--workers`…), without the API key.
    pub target: SweepTarget,
}

/// A sweep's checkpoint (`state/sweeps/<id>` in etcd).
#[derive(Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub id: String,
    pub spec: Spec,
    /// queued, running, done, failed, interrupted.
    pub status: String,
    pub submitted_at_unix_s: f64,
    /// The controller (its advertised URL) that owns the sweep.
    pub leader: String,
    /// The test running now (discarded if this leader is lost).
    #[serde(default)]
    pub in_flight: Option<String>,
    /// Tests finished, in order; their files are in the result directory.
    #[serde(default)]
    pub done_tests: Vec<String>,
    #[serde(default)]
    pub failovers: Vec<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// `CancelSweep` was asked: whoever runs it next finishes it as `interrupted`.
    #[serde(default)]
    pub cancel_requested: bool,
    /// GPUs the agents reported when the sweep started: a new leader waits for them.
    #[serde(default)]
    pub gpus: usize,
}

fn checkpoint_key(id: &str) -> String {
    cluster::state_key(&format!("sweeps/{id}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What clients following a sweep see: its lines, progress and end.
pub struct Feed {
    state: Mutex<FeedState>,
    tx: broadcast::Sender<proto::SweepEvent>,
}

#[derive(Default)]
struct FeedState {
    lines: VecDeque<String>,
    progress: proto::SweepProgress,
    finished: Option<proto::SweepFinished>,
}

fn event(e: proto::sweep_event::Event) -> proto::SweepEvent {
    proto::SweepEvent { event: Some(e) }
}

impl Feed {
    fn new() -> Feed {
        Feed {
            state: Mutex::new(FeedState::default()),
            tx: broadcast::channel(1024).0,
        }
    }

    pub fn line(&self, s: String) {
        let mut st = self.state.lock().expect("feed lock");
        if st.lines.len() == BACKLOG {
            st.lines.pop_front();
        }
        st.lines.push_back(s.clone());
        // sent under the lock: a subscriber gets each line once, from the backlog or here
        let _ = self.tx.send(event(proto::sweep_event::Event::Line(s)));
    }

    pub fn progress(&self, done: u64, total: u64, message: String) {
        let mut st = self.state.lock().expect("feed lock");
        let p = proto::SweepProgress {
            done,
            total,
            message,
        };
        if st.progress != p {
            st.progress = p.clone();
            let _ = self.tx.send(event(proto::sweep_event::Event::Progress(p)));
        }
    }

    fn finish(&self, f: proto::SweepFinished) {
        let mut st = self.state.lock().expect("feed lock");
        st.finished = Some(f.clone());
        let _ = self.tx.send(event(proto::sweep_event::Event::Finished(f)));
    }

    /// The state so far and the events after it.
    fn subscribe(
        &self,
    ) -> (
        Vec<proto::SweepEvent>,
        broadcast::Receiver<proto::SweepEvent>,
    ) {
        let st = self.state.lock().expect("feed lock");
        let mut backlog: Vec<proto::SweepEvent> = st
            .lines
            .iter()
            .map(|l| event(proto::sweep_event::Event::Line(l.clone())))
            .collect();
        backlog.push(event(proto::sweep_event::Event::Progress(
            st.progress.clone(),
        )));
        if let Some(f) = &st.finished {
            backlog.push(event(proto::sweep_event::Event::Finished(f.clone())));
        }
        (backlog, self.tx.subscribe())
    }
}

/// One sweep known to this controller.
struct Job {
    feed: Arc<Feed>,
    /// The checkpoint as last written (read briefly, never held across an await).
    doc: Mutex<Checkpoint>,
    /// Serialises the changes to `doc` with their writes to etcd, so that none is lost.
    writes: tokio::sync::Mutex<()>,
    /// `CancelSweep`: interrupt it.
    cancel: CancellationToken,
    /// This controller stops writing (a parent of `cancel`).
    handover: CancellationToken,
}

/// The controller's sweeps: a queue run one at a time.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    workers: Workers,
    registry: Registry,
    data_dir: PathBuf,
    fence: Option<cluster::Fence>,
    /// This controller's advertised URL.
    me: String,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    queue: mpsc::UnboundedSender<String>,
    /// Fires when this controller stops serving.
    stop: CancellationToken,
    runner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The queue's receiver until [`Manager::begin`].
    pending: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl Manager {
    /// Loads the queue. With etcd (`fence`), reads the checkpoints: sweeps left queued or running
    /// by an earlier leader are queued again, in the order they were submitted. Nothing runs
    /// before [`Manager::begin`] (called once the server accepts agents and workers).
    pub async fn start(
        workers: Workers,
        registry: Registry,
        data_dir: PathBuf,
        fence: Option<cluster::Fence>,
        me: String,
    ) -> anyhow::Result<Manager> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("--data-dir {}: cannot create it", data_dir.display()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let m = Manager {
            inner: Arc::new(Inner {
                workers,
                registry,
                data_dir,
                fence,
                me,
                jobs: Mutex::new(BTreeMap::new()),
                queue: tx,
                stop,
                runner: Mutex::new(None),
                pending: Mutex::new(Some(rx)),
            }),
        };
        if let Some(f) = &m.inner.fence {
            let mut docs: Vec<Checkpoint> = Vec::new();
            for (key, value) in f.list(&cluster::state_key("sweeps/")).await? {
                match serde_json::from_slice::<Checkpoint>(&value) {
                    Ok(d) => docs.push(d),
                    Err(e) => tracing::warn!("etcd: {key} is not a sweep checkpoint: {e}"),
                }
            }
            docs.sort_by(|a, b| a.submitted_at_unix_s.total_cmp(&b.submitted_at_unix_s));
            for d in docs {
                let pending = d.status == "queued" || d.status == "running";
                let id = d.id.clone();
                let job = m.add(d.clone());
                if pending {
                    tracing::info!("sweep {id}: left {} by {}; resuming it", d.status, d.leader);
                    let _ = m.inner.queue.send(id);
                } else {
                    job.feed.finish(proto::SweepFinished {
                        status: d.status.clone(),
                        summary_text: String::new(),
                        result_dir: m.inner.data_dir.join(&d.id).display().to_string(),
                        error: d.error.clone().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(m)
    }

    /// Starts running the queue.
    pub fn begin(&self) {
        if let Some(rx) = self.inner.pending.lock().expect("queue lock").take() {
            let runner = tokio::spawn(self.clone().run_queue(rx));
            *self.inner.runner.lock().expect("runner lock") = Some(runner);
        }
    }

    fn add(&self, doc: Checkpoint) -> Arc<Job> {
        let handover = self.inner.stop.child_token();
        let job = Arc::new(Job {
            feed: Arc::new(Feed::new()),
            cancel: handover.child_token(),
            handover,
            doc: Mutex::new(doc.clone()),
            writes: tokio::sync::Mutex::new(()),
        });
        self.inner
            .jobs
            .lock()
            .expect("jobs lock")
            .insert(doc.id, job.clone());
        job
    }

    fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.inner.jobs.lock().expect("jobs lock").get(id).cloned()
    }

    /// Stops: the sweep running is handed over (nothing more is written; with etcd it stays
    /// `running` for the next leader, without etcd its summary says `running` until resumed).
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let runner = self.inner.runner.lock().expect("runner lock").take();
        if let Some(mut r) = runner
            && tokio::time::timeout(Duration::from_secs(2), &mut r)
                .await
                .is_err()
        {
            // its files are written atomically and its array entry last: what it was writing
            // is simply not there; the result directory's lock goes with it
            tracing::warn!("the sweep in flight did not stop within 2 s: aborted");
            r.abort();
            let _ = r.await;
        }
    }

    /// Changes a sweep's checkpoint and writes it (fenced). Changes are applied in order and
    /// none overwrites another's.
    async fn update(&self, job: &Job, f: impl FnOnce(&mut Checkpoint)) -> anyhow::Result<()> {
        let _w = job.writes.lock().await;
        let doc = {
            let mut d = job.doc.lock().expect("doc lock");
            f(&mut d);
            d.clone()
        };
        self.save(&doc).await
    }

    /// The gRPC service.
    pub fn service(&self) -> proto::sweeps_server::SweepsServer<Manager> {
        proto::sweeps_server::SweepsServer::new(self.clone())
    }

    async fn save(&self, doc: &Checkpoint) -> anyhow::Result<()> {
        match &self.inner.fence {
            Some(f) => {
                f.put(&checkpoint_key(&doc.id), &serde_json::to_vec(doc)?)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn run_queue(self, mut rx: mpsc::UnboundedReceiver<String>) {
        loop {
            let id = tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                id = rx.recv() => match id { Some(id) => id, None => return },
            };
            let Some(job) = self.job(&id) else { continue };
            let r = self.run_one(&id, &job).await;
            if job.handover.is_cancelled() {
                tracing::info!("sweep {id}: handed over (this controller stopped leading)");
                return;
            }
            let (status, text, error) = match r {
                Ok((status, text)) => (status, text, String::new()),
                Err(e) => {
                    tracing::warn!("sweep {id} failed: {e:#}");
                    job.feed.line(format!("the sweep failed: {e:#}"));
                    ("failed".to_string(), String::new(), format!("{e:#}"))
                }
            };
            let saved = self
                .update(&job, |d| {
                    d.leader = self.inner.me.clone();
                    d.status = status.clone();
                    d.in_flight = None;
                    d.error = (!error.is_empty()).then(|| error.clone());
                })
                .await;
            if let Err(e) = saved {
                tracing::warn!("sweep {id}: the final checkpoint was not written: {e:#}");
                if job.handover.is_cancelled() {
                    return;
                }
            }
            job.feed.finish(proto::SweepFinished {
                status,
                summary_text: text,
                result_dir: self.inner.data_dir.join(&id).display().to_string(),
                error,
            });
        }
    }

    /// Runs (or resumes) one sweep; answers its status and closing table.
    async fn run_one(&self, id: &str, job: &Arc<Job>) -> anyhow::Result<(String, String)> {
        let mut doc = job.doc.lock().expect("doc lock").clone();
        if job.cancel.is_cancelled() || doc.cancel_requested {
            return Ok(("interrupted".into(), String::new()));
        }
        let run = doc.spec.target.clone();
        // the API key never travels nor lands in etcd: the controller's own
        let target = run.target.clone().with_key_from_env();
        let plan = doc.spec.plan.clone();
        let max_c = plan.concurrency.iter().copied().max().unwrap_or(1) as usize;
        // the target may be restarting too (a node failure): retried for a minute
        let mut tries = 0;
        let prep = loop {
            match crate::target::prepare(&target, max_c).await {
                Ok(p) => break p,
                Err(e) if tries < 12 && !job.handover.is_cancelled() => {
                    tries += 1;
                    job.feed.line(format!("{e:#}; retrying in 5 s"));
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
        let path = self.inner.data_dir.join(id);
        let was_running = doc.status == "running";
        let dir = if path.exists() {
            open_waiting(path.clone(), plan.model_label.clone(), &job.handover).await?
        } else {
            // not there: this --data-dir is not the one the earlier leader wrote to
            let d = ResultDir::create(path.clone(), plan.model_label.clone())?;
            crate::output::write_atomic(
                &d.dir.join(super::plan::PLAN_FILE),
                &serde_json::to_vec_pretty(&plan)?,
            )?;
            if !doc.done_tests.is_empty() {
                let msg = format!(
                    "{} tests checkpointed by {} are not under this controller's --data-dir {} (is it shared?): they run again",
                    doc.done_tests.len(),
                    doc.leader,
                    self.inner.data_dir.display()
                );
                job.feed.line(msg.clone());
                doc.failovers.push(serde_json::json!({"warning": msg}));
                doc.done_tests.clear();
            }
            d
        };
        if was_running {
            let kept = dir.kept().count();
            let f = serde_json::json!({
                "at_unix_s": unix_now(),
                "previous_leader": doc.leader,
                "new_leader": self.inner.me,
                "discarded_test": doc.in_flight,
                "tests_kept": kept,
            });
            let msg = format!(
                "{} took over from {}: {kept} finished tests kept, not rerun{}",
                self.inner.me,
                doc.leader,
                doc.in_flight
                    .as_deref()
                    .map(|t| format!("; test {t} in flight was discarded and runs again"))
                    .unwrap_or_default()
            );
            tracing::warn!("sweep {id}: {msg}");
            job.feed.line(msg);
            doc.failovers.push(f);
        }
        // tests on disk whose checkpoint the earlier leader did not live to write
        for e in dir.kept() {
            if let Some(t) = e["test_id"].as_str()
                && !doc.done_tests.iter().any(|d| d == t)
            {
                doc.done_tests.push(t.to_string());
            }
        }
        // agents reconnect to a new leader within seconds: wait for the GPUs the sweep had
        let want_gpus = doc.gpus.max(run.gpu_num.unwrap_or(0) as usize);
        let connected_gpus = |agents: &[proto::AgentStatus]| -> usize {
            agents
                .iter()
                .filter(|a| a.connected && !a.last_samples.is_empty())
                .map(|a| a.gpus.len())
                .sum()
        };
        let deadline = tokio::time::Instant::now() + AGENT_WAIT;
        while want_gpus > 0
            && connected_gpus(&self.inner.registry.list().await) < want_gpus
            && tokio::time::Instant::now() < deadline
            && !job.handover.is_cancelled()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let gpus = connected_gpus(&self.inner.registry.list().await);
        let (failovers, done_tests) = (doc.failovers.clone(), doc.done_tests.clone());
        let me = self.inner.me.clone();
        self.update(job, |d| {
            d.status = "running".into();
            d.leader = me;
            d.in_flight = None;
            d.failovers = failovers;
            d.done_tests = done_tests;
            d.gpus = d.gpus.max(gpus);
        })
        .await?;
        job.feed
            .line(format!("sweep {id} running on {}", self.inner.me));

        if let Some(n) = run.gpu_num
            && gpus < n as usize
        {
            anyhow::bail!(
                "--gpu-num {n}: the agents connected to the controller report {gpus} GPUs"
            );
        }
        let telemetry = gpus > 0;
        let gpu_note = if telemetry {
            crate::gpu_stats::note(&self.inner.registry).await
        } else {
            "absent: no agent connected to the controller".to_string()
        };
        job.feed.line(format!("GPU statistics: {gpu_note}"));
        if !run.no_preflight {
            super::engine::preflight_plan(&plan, &prep).await?;
        }
        let hook = self.hook(job.clone());
        let progress = Progress::new(
            &plan,
            plan.threshold.is_some(),
            true,
            Some(job.feed.clone()),
        );
        let out = super::engine::execute(Exec {
            plan: &plan,
            base_urls: target.base_urls(),
            want_workers: run.workers.map(|w| w as usize),
            prep,
            workers: self.inner.workers.clone(),
            registry: self.inner.registry.clone(),
            telemetry,
            gpu_note,
            dir,
            cancel: job.cancel.clone(),
            handover: Some(job.handover.clone()),
            progress,
            hook: Some(hook),
            failovers: doc.failovers.clone(),
        })
        .await?;
        let text = super::summary::final_table(&out.summary);
        match out.stop {
            None => Ok(("done".into(), text)),
            Some(Stop::Interrupted | Stop::Handover) => Ok(("interrupted".into(), text)),
            Some(Stop::ServerDown(why)) => Err(anyhow::anyhow!("{why}")),
        }
    }

    /// Checkpoints a test's start and, before its files are written, its end.
    fn hook(&self, job: Arc<Job>) -> Hook {
        let m = self.clone();
        Arc::new(move |e: HookEvent| {
            let m = m.clone();
            let job = job.clone();
            Box::pin(async move {
                let r = m
                    .update(&job, |doc| match e {
                        HookEvent::Start(k) => doc.in_flight = Some(k.id()),
                        HookEvent::Commit(k) => {
                            doc.in_flight = None;
                            doc.done_tests.push(k.id());
                        }
                    })
                    .await;
                if r.is_err() {
                    job.handover.cancel();
                }
                r
            })
        })
    }

    /// Queues a sweep: checks the target (reachable, its model), creates the result directory
    /// (its name is the sweep's id) and checkpoints it.
    async fn submit(&self, spec: Spec) -> anyhow::Result<(String, PathBuf)> {
        let mut spec = spec;
        if spec.plan.io.is_empty() || spec.plan.concurrency.is_empty() {
            anyhow::bail!("the sweep's grid is empty (--io, --concurrency)");
        }
        let target = spec.target.target.clone().with_key_from_env();
        let max_c = spec.plan.concurrency.iter().copied().max().unwrap_or(1) as usize;
        let prep = crate::target::prepare(&target, max_c)
            .await
            .context("the controller cannot reach the target")?;
        let dir = super::engine::create_dir(&self.inner.data_dir, &target, &mut spec.plan, &prep)?;
        let id = dir
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("a result directory without a name")?;
        let path = dir.dir.clone();
        drop(dir);
        let doc = Checkpoint {
            id: id.clone(),
            spec,
            status: "queued".into(),
            submitted_at_unix_s: unix_now(),
            leader: self.inner.me.clone(),
            in_flight: None,
            done_tests: Vec::new(),
            failovers: Vec::new(),
            error: None,
            cancel_requested: false,
            gpus: 0,
        };
        if let Err(e) = self.save(&doc).await {
            let _ = std::fs::remove_dir_all(&path);
            return Err(e);
        }
        let job = self.add(doc);
        job.feed
            .line(format!("sweep {id} queued on {}", self.inner.me));
        let _ = self.inner.queue.send(id.clone());
        Ok((id, path))
    }
}

/// Opens a result directory, waiting (bounded) for a process that still holds its lock (a
/// controller that was just deposed and is winding down).
async fn open_waiting(
    path: PathBuf,
    label: String,
    stop: &CancellationToken,
) -> anyhow::Result<ResultDir> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::SweepEvent, Status>> + Send>>;

#[tonic::async_trait]
impl proto::sweeps_server::Sweeps for Manager {
    type WatchSweepStream = EventStream;

    async fn submit_sweep(
        &self,
        request: Request<proto::SubmitSweepRequest>,
    ) -> Result<Response<proto::SubmitSweepResponse>, Status> {
        if self.inner.stop.is_cancelled() {
            return Err(Status::unavailable("this controller is stopping"));
        }
        let spec: Spec = serde_json::from_str(&request.into_inner().spec_json)
            .map_err(|e| Status::invalid_argument(format!("not a sweep: {e}")))?;
        let (id, path) = self
            .submit(spec)
            .await
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        Ok(Response::new(proto::SubmitSweepResponse {
            id,
            result_dir: path.display().to_string(),
        }))
    }

    async fn list_sweeps(
        &self,
        _: Request<proto::ListSweepsRequest>,
    ) -> Result<Response<proto::ListSweepsResponse>, Status> {
        let jobs: Vec<Arc<Job>> = self
            .inner
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect();
        let mut sweeps = Vec::new();
        for j in jobs {
            let d = j.doc.lock().expect("doc lock").clone();
            sweeps.push(proto::SweepInfo {
                id: d.id.clone(),
                status: d.status.clone(),
                result_dir: self.inner.data_dir.join(&d.id).display().to_string(),
                tests_done: d.done_tests.len() as u64,
                submitted_at_unix_s: d.submitted_at_unix_s,
                detail: d
                    .error
                    .clone()
                    .or_else(|| d.in_flight.as_ref().map(|t| format!("running {t}")))
                    .unwrap_or_default(),
                failovers: d
                    .failovers
                    .iter()
                    .filter(|f| f.get("new_leader").is_some())
                    .count() as u32,
            });
        }
        sweeps.sort_by(|a, b| a.submitted_at_unix_s.total_cmp(&b.submitted_at_unix_s));
        Ok(Response::new(proto::ListSweepsResponse { sweeps }))
    }

    async fn watch_sweep(
        &self,
        request: Request<proto::WatchSweepRequest>,
    ) -> Result<Response<Self::WatchSweepStream>, Status> {
        let id = request.into_inner().id;
        let job = self.job(&id).ok_or_else(|| {
            Status::not_found(format!(
                "no sweep {id:?} on this controller (`benchctl sweeps` lists them)"
            ))
        })?;
        let (backlog, mut rx) = job.feed.subscribe();
        let stop = self.inner.stop.clone();
        let (tx, out) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut done = false;
            for e in backlog {
                done |= matches!(e.event, Some(proto::sweep_event::Event::Finished(_)));
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            while !done {
                let e = tokio::select! {
                    // this controller stops: the client reattaches to the next leader
                    _ = stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the controller is stopping"))).await;
                        return;
                    }
                    e = rx.recv() => e,
                };
                match e {
                    Ok(e) => {
                        done = matches!(e.event, Some(proto::sweep_event::Event::Finished(_)));
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let line = format!("({n} updates skipped: this client is slow)");
                        let _ = tx
                            .send(Ok(event(proto::sweep_event::Event::Line(line))))
                            .await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn cancel_sweep(
        &self,
        request: Request<proto::CancelSweepRequest>,
    ) -> Result<Response<proto::CancelSweepResponse>, Status> {
        let id = request.into_inner().id;
        let job = self
            .job(&id)
            .ok_or_else(|| Status::not_found(format!("no sweep {id:?} on this controller")))?;
        if self.inner.stop.is_cancelled() {
            return Err(Status::unavailable("this controller is stopping"));
        }
        // durable first: a leader taken over meanwhile finishes it as interrupted
        self.update(&job, |d| d.cancel_requested = true)
            .await
            .map_err(|e| Status::unavailable(format!("{e:#}")))?;
        job.cancel.cancel();
        job.feed
            .line("cancel asked: the test in flight is discarded".into());
        Ok(Response::new(proto::CancelSweepResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(e: &proto::SweepEvent) -> Option<&str> {
        match &e.event {
            Some(proto::sweep_event::Event::Line(l)) => Some(l),
            _ => None,
        }
    }

    #[test]
    fn a_late_subscriber_gets_the_backlog_then_every_new_event_once() {
        let f = Feed::new();
        for i in 0..BACKLOG + 5 {
            f.line(format!("line {i}"));
        }
        f.progress(10, 100, "test a".into());
        f.progress(10, 100, "test a".into()); // unchanged: not sent again
        let (backlog, mut rx) = f.subscribe();
        let lines: Vec<&str> = backlog.iter().filter_map(line_of).collect();
        assert_eq!(lines.len(), BACKLOG, "the oldest lines are dropped");
        assert_eq!(lines[0], "line 5");
        assert_eq!(lines[BACKLOG - 1], format!("line {}", BACKLOG + 4));
        assert!(matches!(
            backlog.last().unwrap().event,
            Some(proto::sweep_event::Event::Progress(ref p)) if p.done == 10
        ));
        f.line("after".into());
        f.finish(proto::SweepFinished {
            status: "done".into(),
            ..Default::default()
        });
        assert_eq!(line_of(&rx.try_recv().unwrap()), Some("after"));
        assert!(matches!(
            rx.try_recv().unwrap().event,
            Some(proto::sweep_event::Event::Finished(_))
        ));
        assert!(rx.try_recv().is_err());
        // a subscriber after the end gets the end in its backlog
        let (backlog, _) = f.subscribe();
        assert!(matches!(
            backlog.last().unwrap().event,
            Some(proto::sweep_event::Event::Finished(_))
        ));
    }

    #[test]
    fn a_checkpoint_round_trips_without_the_api_key() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "benchctl",
            "sweep",
            "--base-url",
            "http://127.0.0.1:9",
            "--api-key",
            "sk-secret",
            "--io",
            "64x32",
            "--concurrency",
            "1,2",
        ])
        .unwrap();
        let crate::cli::Command::Sweep(cmd) = cli.command else {
            unreachable!()
        };
        let plan = crate::cmd::sweep_config::resolve(&cmd.args).unwrap();
        let doc = Checkpoint {
            id: "x".into(),
            spec: Spec {
                plan,
                target: crate::cmd::sweep_remote::sweep_target(&cmd.args.common),
            },
            status: "queued".into(),
            submitted_at_unix_s: 1.0,
            leader: "http://a".into(),
            in_flight: None,
            done_tests: vec![],
            failovers: vec![],
            error: None,
            cancel_requested: false,
            gpus: 0,
        };
        let json = serde_json::to_string(&doc).unwrap();
        assert!(!json.contains("sk-secret"), "{json}");
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back.spec.target.target.base_url, "http://127.0.0.1:9");
        assert_eq!(back.spec.target.target.api_key, None);
        assert_eq!(back.spec.plan, doc.spec.plan);
    }
}
