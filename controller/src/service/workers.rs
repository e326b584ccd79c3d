//! The controller's load workers: their sessions, clocks and jobs.
//!
//! State (who is connected, each one's clock estimate, which job each runs, where each job's
//! events go) is owned by one task; the sessions and [`Workers::run_job`] hold a [`Workers`]
//! handle (a bounded channel) and get answers on oneshots. Assignments go straight to each
//! worker's outgoing stream; records come back through the owner task to the job's channel.
//!
//! A job is split deterministically: of `n` workers (sorted by name), worker `k` gets prompts
//! `k, k+n, …`, its share of the concurrency (as even as possible, the remainder to the first
//! workers), `rate/n` and seed `seed + k`. Its records come back on its own clock and are moved
//! onto the controller's with the worker's offset estimate.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use loadgen::RequestRecord;
use loadgen::worker::split_even;
use proto::controller_to_worker::Msg as ToWorker;
use proto::worker_message::Msg as FromWorker;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{FIRST_PINGS, Outgoing, PING_EVERY};
use crate::clock::{ClockEstimator, Exchange, Offset};
use loadgen::clock::mono_ns;

/// With several workers: how far ahead of the moment the last one has warmed up their common
/// start is scheduled (room for `StartJob` to reach every worker first), at least; on slow links
/// [`START_LEAD_PER_UNCERTAINTY`] times the largest clock uncertainty (about half a round trip),
/// at most [`START_LEAD_MAX`].
const START_LEAD: Duration = Duration::from_millis(100);
const START_LEAD_PER_UNCERTAINTY: u32 = 20;
const START_LEAD_MAX: Duration = Duration::from_secs(2);

/// How long a failed job waits for the other workers to stop before returning.
const ABORT_DRAIN: Duration = Duration::from_secs(10);
/// Events of one job queued towards [`Workers::run_job`].
const JOB_EVENTS: usize = 1024;

/// A connected worker, as [`Workers::wait_for`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub name: String,
    /// The most concurrent streams the worker accepts.
    pub max_streams: u32,
    /// Its clock's offset from the controller's.
    pub clock: Offset,
}

/// One test to spread over the workers.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Base URLs of the server replicas (every worker sends round-robin over all of them).
    pub target_urls: Vec<String>,
    /// What every request sends ([`loadgen::wire::request_spec`]).
    pub spec: proto::RequestSpec,
    /// One request per prompt; the result's record `i` is prompt `i`'s.
    pub prompts: Vec<loadgen::Prompt>,
    /// Total concurrency over all workers (`None`: unlimited).
    pub max_concurrency: Option<usize>,
    /// Total open-loop rate, requests/s (`f64::INFINITY`: closed loop).
    pub request_rate: f64,
    /// Gamma shape of the open-loop gaps (1: Poisson).
    pub burstiness: f64,
    pub seed: u64,
    /// Total warm-up requests, split like the concurrency.
    pub warmup_requests: usize,
    /// Prompts of the warm-up, cycled, split like `prompts` (empty: the warm-up cycles the
    /// measured prompts, which a server with prefix caching then serves from its cache).
    pub warmup_prompts: Vec<loadgen::Prompt>,
    /// Counts the records received so far (for progress displays).
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// How many workers to use (`None`: every idle one).
    pub workers: Option<usize>,
}

/// What a job produced, on the controller's clock.
#[derive(Debug, Default)]
pub struct JobResult {
    /// One per dispatched request, sorted by index; `index` is the prompt's index in
    /// [`JobSpec::prompts`] (unique across workers).
    pub records: Vec<RequestRecord>,
    /// The earliest start and the latest end of the workers' measured runs.
    pub start_ns: u64,
    pub end_ns: u64,
    pub warmup_sent: usize,
    pub warmup_failed: usize,
    /// Requests never dispatched (the job was cancelled).
    pub not_sent: usize,
    /// Records each worker delivered, in worker order.
    pub per_worker: Vec<(String, usize)>,
    /// The spread of the workers' measured-run starts on the controller's clock (0 with one
    /// worker): how well the common start, scheduled after every worker's warm-up, held.
    pub start_skew_ns: u64,
}

impl JobResult {
    /// `load_workers` of a result: who ran the job and the records each returned.
    pub fn load_workers_json(&self) -> serde_json::Value {
        self.per_worker
            .iter()
            .map(|(name, records)| serde_json::json!({"name": name, "records": records}))
            .collect()
    }
}

/// A worker was lost during a job (disconnected, or shut down mid-job): the job's records are
/// incomplete and are discarded; [`Workers::run_job_retrying`] runs the job again.
#[derive(Debug)]
pub struct WorkerLost {
    pub worker: String,
    pub job_id: String,
    /// Records received from it before it was lost (discarded).
    pub records: usize,
    pub how: String,
}

impl std::fmt::Display for WorkerLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load worker {} {} {} ({} records received from it, discarded)",
            self.worker, self.how, self.job_id, self.records
        )?;
        Ok(())
    }
}

impl std::error::Error for WorkerLost {}

/// What one worker's session tells the job it works on.
enum JobEvent {
    Records {
        worker: String,
        batch: proto::RecordBatch,
    },
    Done {
        worker: String,
        done: proto::JobDone,
    },
    /// Its warm-up is over; it waits for `StartJob`.
    WarmedUp {
        worker: String,
    },
    Lost {
        worker: String,
    },
}

type ToWorkerTx = mpsc::Sender<Result<proto::ControllerToWorker, Status>>;

/// Where a worker taken for a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its assignment was not sent.
    Unsent,
    /// Assigned, no `JobDone` yet.
    Running,
    /// Reported `JobDone`, or left.
    Finished,
}

/// A worker taken for a job.
struct Claimed {
    name: String,
    max_streams: u32,
    to_worker: ToWorkerTx,
    offset: Offset,
}

enum Command {
    Register {
        reg: proto::WorkerRegister,
        to_worker: ToWorkerTx,
        reply: oneshot::Sender<Result<u64, Status>>,
    },
    Pong {
        session: u64,
        exchange: Exchange,
    },
    Records {
        session: u64,
        batch: proto::RecordBatch,
    },
    Done {
        session: u64,
        done: proto::JobDone,
    },
    WarmedUp {
        session: u64,
        job_id: String,
    },
    Disconnected {
        session: u64,
    },
    List {
        /// Only those without a job (the ones a job can claim).
        idle_only: bool,
        reply: oneshot::Sender<Vec<WorkerInfo>>,
    },
    Claim {
        want: Option<usize>,
        most: usize,
        events: mpsc::Sender<JobEvent>,
        reply: oneshot::Sender<Result<(String, Vec<Claimed>), String>>,
    },
    Offsets {
        names: Vec<String>,
        reply: oneshot::Sender<Vec<Option<Offset>>>,
    },
    Cancel {
        job_id: Option<String>,
    },
    /// These workers never got their assignment of the job: free again.
    Unassign {
        job_id: String,
        names: Vec<String>,
    },
    Release {
        job_id: String,
    },
}

/// A handle on the worker pool's task.
#[derive(Clone)]
pub struct Workers {
    tx: mpsc::Sender<Command>,
}

impl Workers {
    /// Spawns the owner task; it ends when every handle is dropped.
    pub fn spawn() -> Workers {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(rx));
        Workers { tx }
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(f(reply))
            .await
            .map_err(|_| anyhow!("the worker pool has stopped"))?;
        rx.await.map_err(|_| anyhow!("the worker pool has stopped"))
    }

    async fn tell(&self, c: Command) {
        let _ = self.tx.send(c).await;
    }

    /// The connected workers whose clock offset is known, sorted by name.
    pub async fn list(&self) -> Vec<WorkerInfo> {
        self.ask(|reply| Command::List {
            idle_only: false,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Waits until at least `n` workers are connected and idle (no job, not leaving) with a clock
    /// estimate; returns those.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<WorkerInfo>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = self
                .ask(|reply| Command::List {
                    idle_only: true,
                    reply,
                })
                .await
                .unwrap_or_default();
            if ready.len() >= n {
                return Ok(ready);
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<&str> = ready.iter().map(|w| w.name.as_str()).collect();
                bail!(
                    "{} of the {n} load workers wanted connected and idle within {} ({names:?}); start more with `benchctl-loadgen --controller URL`",
                    ready.len(),
                    humantime::format_duration(timeout)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `CancelJob` to every worker running a job.
    pub async fn cancel_all(&self) {
        self.tell(Command::Cancel { job_id: None }).await;
    }

    /// Runs a job; when a worker is lost during it, the partial records are discarded and the
    /// whole job runs again, up to `attempts` runs in all. A rerun waits up to `wait` for as many
    /// workers as the job asks for (`JobSpec::workers`; one when it asks for every idle one), so
    /// a restarted or replacement worker takes the lost one's place. Returns the result of the
    /// run that completed and what was lost before it.
    pub async fn run_job_retrying(
        &self,
        job: JobSpec,
        attempts: usize,
        wait: Duration,
    ) -> anyhow::Result<(JobResult, Vec<String>)> {
        let attempts = attempts.max(1);
        let mut lost = Vec::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.wait_for(job.workers.unwrap_or(1), wait)
                    .await
                    .with_context(|| format!("rerunning the job after: {}", lost.join("; ")))?;
            }
            match self.run_job(job.clone()).await {
                Ok(r) => return Ok((r, lost)),
                Err(e) => match e.downcast::<WorkerLost>() {
                    Ok(l) if attempt < attempts => {
                        tracing::warn!("{l}; running the job again ({}/{attempts})", attempt + 1);
                        lost.push(l.to_string());
                        if let Some(p) = &job.progress {
                            p.store(0, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Ok(l) => {
                        lost.push(l.to_string());
                        bail!(
                            "a load worker was lost in each of {attempts} runs of the job: {}",
                            lost.join("; ")
                        );
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Runs `job` on the workers and returns every record on the controller's clock. Fails,
    /// naming the worker, when one disconnects or cannot run its share; the other workers are
    /// then cancelled (the caller decides whether to rerun).
    pub async fn run_job(&self, job: JobSpec) -> anyhow::Result<JobResult> {
        if job.prompts.is_empty() {
            bail!("a job needs at least one prompt");
        }
        if job.target_urls.is_empty() {
            bail!("a job needs at least one target URL");
        }
        if job.max_concurrency == Some(0) {
            bail!("--max-concurrency must be at least 1, got 0");
        }
        loadgen::Arrivals {
            rate: job.request_rate,
            burstiness: job.burstiness,
            seed: job.seed,
        }
        .validate()?;
        if job.workers == Some(0) {
            bail!("a job needs at least one worker, 0 were asked for");
        }
        // no worker gets an empty share of prompts or a concurrency of 0 (= unlimited)
        let most = job
            .prompts
            .len()
            .min(job.max_concurrency.unwrap_or(usize::MAX));
        let (events_tx, mut events) = mpsc::channel(JOB_EVENTS);
        let (job_id, claimed) = self
            .ask(|reply| Command::Claim {
                want: job.workers,
                most,
                events: events_tx,
                reply,
            })
            .await?
            .map_err(anyhow::Error::msg)?;
        let guard = JobGuard {
            tx: self.tx.clone(),
            job_id: job_id.clone(),
        };
        let mut phases = vec![Phase::Unsent; claimed.len()];
        let result = self
            .drive(&job, &job_id, &claimed, &mut events, &mut phases)
            .await;
        if result.is_err() {
            let names = |p: Phase| -> Vec<&str> {
                claimed
                    .iter()
                    .zip(&phases)
                    .filter(|(_, q)| **q == p)
                    .map(|(w, _)| w.name.as_str())
                    .collect()
            };
            let unsent: Vec<String> = names(Phase::Unsent).iter().map(|n| n.to_string()).collect();
            if !unsent.is_empty() {
                self.tell(Command::Unassign {
                    job_id: job_id.clone(),
                    names: unsent,
                })
                .await;
            }
            self.tell(Command::Cancel {
                job_id: Some(job_id.clone()),
            })
            .await;
            drain(&mut events, names(Phase::Running)).await;
        }
        drop(guard);
        result
    }

    /// The latest clock offset estimate of each claimed worker (`None`: it has left).
    async fn offsets(&self, claimed: &[Claimed]) -> Vec<Option<Offset>> {
        self.ask(|reply| Command::Offsets {
            names: claimed.iter().map(|w| w.name.clone()).collect(),
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Schedules the common start of a gated job [`START_LEAD`] (or more) from now, and tells every worker
    /// when that is on its clock (with the latest offset estimates).
    /// Workers already `done` (ended before the start) are skipped.
    async fn start(
        &self,
        job_id: &str,
        claimed: &[Claimed],
        done: &[Option<proto::JobDone>],
    ) -> anyhow::Result<()> {
        let latest = self.offsets(claimed).await;
        let uncertainty = latest
            .iter()
            .flatten()
            .map(|o| Duration::from_nanos(o.uncertainty_ns))
            .max()
            .unwrap_or_default();
        let lead = (uncertainty * START_LEAD_PER_UNCERTAINTY).clamp(START_LEAD, START_LEAD_MAX);
        let start_at = mono_ns().saturating_add(lead.as_nanos() as u64);
        tracing::debug!("job {job_id}: every worker is warm, the measured run starts in {lead:?}");
        for (k, w) in claimed.iter().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let offset = latest.get(k).copied().flatten().unwrap_or(w.offset);
            let start = proto::StartJob {
                job_id: job_id.to_string(),
                start_at_ns: offset.to_peer(start_at),
            };
            w.to_worker
                .send(Ok(proto::ControllerToWorker {
                    msg: Some(ToWorker::Start(start)),
                }))
                .await
                .map_err(|_| lost_before_start(&w.name, job_id))?;
        }
        Ok(())
    }

    /// Assigns the shares, collects the records, converts them.
    async fn drive(
        &self,
        job: &JobSpec,
        job_id: &str,
        claimed: &[Claimed],
        events: &mut mpsc::Receiver<JobEvent>,
        phases: &mut [Phase],
    ) -> anyhow::Result<JobResult> {
        let n = claimed.len();
        if let Some(c) = job.max_concurrency {
            for (k, w) in claimed.iter().enumerate() {
                let share = split_even(c, k, n);
                if share > w.max_streams as usize {
                    bail!(
                        "load worker {} takes at most {} streams (--max-streams), its share of --max-concurrency {c} over {n} workers is {share}: add workers or lower the concurrency",
                        w.name,
                        w.max_streams
                    );
                }
            }
        }
        // one worker runs its measured phase right after its warm-up; several warm up, then
        // start together at a time scheduled once the last one is warm (`StartJob`)
        let gated = n > 1;
        tracing::info!(
            "job {job_id}: {} prompts over {n} workers ({})",
            job.prompts.len(),
            claimed
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (k, w) in claimed.iter().enumerate() {
            let assignment = proto::JobAssignment {
                job_id: job_id.to_string(),
                target_urls: job.target_urls.clone(),
                spec: Some(job.spec.clone()),
                prompts: job
                    .prompts
                    .iter()
                    .skip(k)
                    .step_by(n)
                    .map(proto::Prompt::from)
                    .collect(),
                max_concurrency: job.max_concurrency.map_or(0, |c| split_even(c, k, n)) as u32,
                request_rate: if job.request_rate.is_finite() {
                    job.request_rate / n as f64
                } else {
                    0.0
                },
                burstiness: job.burstiness,
                seed: job.seed.wrapping_add(k as u64),
                warmup_requests: split_even(job.warmup_requests, k, n) as u32,
                warmup_prompts: job
                    .warmup_prompts
                    .iter()
                    .skip(k)
                    .step_by(n)
                    .map(proto::Prompt::from)
                    .collect(),
                start_on_signal: gated,
            };
            w.to_worker
                .send(Ok(proto::ControllerToWorker {
                    msg: Some(ToWorker::Job(assignment)),
                }))
                .await
                .map_err(|_| lost_before_start(&w.name, job_id))?;
            phases[k] = Phase::Running;
        }

        let index: HashMap<&str, usize> = claimed
            .iter()
            .enumerate()
            .map(|(k, w)| (w.name.as_str(), k))
            .collect();
        let mut records: Vec<Vec<RequestRecord>> = vec![Vec::new(); n];
        let mut done: Vec<Option<proto::JobDone>> = vec![None; n];
        let mut warm = vec![!gated; n];
        let mut remaining = n;
        while remaining > 0 {
            let ev = events
                .recv()
                .await
                .ok_or_else(|| anyhow!("the worker pool stopped during job {job_id}"))?;
            match ev {
                JobEvent::Records { worker, batch } => {
                    let Some(&k) = index.get(worker.as_str()) else {
                        continue;
                    };
                    for r in batch.records {
                        let r = RequestRecord::try_from(r).with_context(|| {
                            format!("load worker {worker} sent a bad record for job {job_id}")
                        })?;
                        records[k].push(r);
                        if let Some(p) = &job.progress {
                            p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                JobEvent::Done { worker, done: d } => {
                    let Some(&k) = index.get(worker.as_str()) else {
                        continue;
                    };
                    phases[k] = Phase::Finished;
                    if d.interrupted {
                        return Err(WorkerLost {
                            worker,
                            job_id: job_id.to_string(),
                            records: records[k].len(),
                            how: "shut down during the job".into(),
                        }
                        .into());
                    }
                    if !d.error.is_empty() {
                        bail!(
                            "load worker {worker} could not run its share of job {job_id}: {}",
                            d.error
                        );
                    }
                    if done[k].replace(d).is_none() {
                        remaining -= 1;
                    }
                    // ended before its start (cancelled while warming up or waiting): it needs no
                    // StartJob, and the others must not wait for its WarmedUp
                    if !std::mem::replace(&mut warm[k], true) && warm.iter().all(|w| *w) {
                        self.start(job_id, claimed, &done).await?;
                    }
                }
                JobEvent::WarmedUp { worker } => {
                    let Some(&k) = index.get(worker.as_str()) else {
                        continue;
                    };
                    if !std::mem::replace(&mut warm[k], true) && warm.iter().all(|w| *w) {
                        self.start(job_id, claimed, &done).await?;
                    }
                }
                JobEvent::Lost { worker } => {
                    let k = index.get(worker.as_str()).copied();
                    if let Some(k) = k {
                        phases[k] = Phase::Finished;
                    }
                    return Err(WorkerLost {
                        records: k.map_or(0, |k| records[k].len()),
                        worker,
                        job_id: job_id.to_string(),
                        how: "disconnected during the job".into(),
                    }
                    .into());
                }
            }
        }

        // The latest estimates (more exchanges than at the start); the claim's if one has left.
        let latest = self.offsets(claimed).await;
        let mut out = JobResult {
            start_ns: u64::MAX,
            ..Default::default()
        };
        let mut latest_start = 0u64;
        for (k, (w, d)) in claimed.iter().zip(done).enumerate() {
            let d = d.expect("every worker is done");
            let mut recs = std::mem::take(&mut records[k]);
            if d.records_sent != recs.len() as u64 {
                bail!(
                    "load worker {} sent {} records for job {job_id} but {} arrived",
                    w.name,
                    d.records_sent,
                    recs.len()
                );
            }
            let offset = latest.get(k).copied().flatten().unwrap_or(w.offset);
            for r in &mut recs {
                loadgen::wire::map_times(r, |t| offset.to_controller(t));
                // the worker's l-th prompt is prompt k + l·n of the job
                r.index = r.index * n as u64 + k as u64;
            }
            let start = offset.to_controller(d.start_ns);
            out.start_ns = out.start_ns.min(start);
            latest_start = latest_start.max(start);
            out.end_ns = out.end_ns.max(offset.to_controller(d.end_ns));
            out.warmup_sent += d.warmup_sent as usize;
            out.warmup_failed += d.warmup_failed as usize;
            out.not_sent += d.not_sent as usize;
            out.per_worker.push((w.name.clone(), recs.len()));
            out.records.append(&mut recs);
        }
        out.start_skew_ns = latest_start.saturating_sub(out.start_ns);
        out.records.sort_by_key(|r| r.index);
        if out.records.windows(2).any(|w| w[0].index == w[1].index) {
            bail!("job {job_id}: two workers returned a record for the same prompt");
        }
        Ok(out)
    }

    /// A worker's session (the `WorkerSession` rpc): registers it, then relays its messages and
    /// pings its clock until the stream ends.
    pub(super) async fn session(
        &self,
        controller_id: String,
        mut incoming: Streaming<proto::WorkerMessage>,
    ) -> Result<Outgoing<proto::ControllerToWorker>, Status> {
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("the worker session ended before WorkerRegister")
        })?;
        let Some(FromWorker::Register(reg)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message of a worker session must be WorkerRegister",
            ));
        };
        if reg.worker_name.is_empty() {
            return Err(Status::invalid_argument(
                "WorkerRegister.worker_name is empty: give the worker --name",
            ));
        }
        if reg.protocol != loadgen::worker::PROTOCOL {
            return Err(Status::failed_precondition(format!(
                "load worker {:?} ({}) speaks worker protocol {}, this controller {}: run benchctl-loadgen from the controller's release",
                reg.worker_name,
                reg.worker_version,
                reg.protocol,
                loadgen::worker::PROTOCOL
            )));
        }
        let name = reg.worker_name.clone();
        let (to_worker, rx) = mpsc::channel(64);
        let session = self
            .ask(|reply| Command::Register {
                reg,
                to_worker: to_worker.clone(),
                reply,
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))??;
        let registered = proto::WorkerRegistered { controller_id };
        let _ = to_worker
            .send(Ok(proto::ControllerToWorker {
                msg: Some(ToWorker::Registered(registered)),
            }))
            .await;

        let workers = self.clone();
        tokio::spawn(async move {
            let mut ping_id = 0u64;
            let mut next_ping = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    m = incoming.message() => {
                        let t4 = mono_ns();
                        match m {
                            Ok(Some(m)) => match m.msg {
                                Some(FromWorker::Pong(p)) => {
                                    let exchange = Exchange { t1: p.t1_ns, t2: p.t2_ns, t3: p.t3_ns, t4 };
                                    workers.tell(Command::Pong { session, exchange }).await;
                                }
                                Some(FromWorker::Records(batch)) => workers.tell(Command::Records { session, batch }).await,
                                Some(FromWorker::Done(done)) => workers.tell(Command::Done { session, done }).await,
                                Some(FromWorker::WarmedUp(w)) => workers.tell(Command::WarmedUp { session, job_id: w.job_id }).await,
                                Some(FromWorker::Register(_)) | None => {}
                            },
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!("load worker {name}: stream error: {e}");
                                break;
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(next_ping) => {
                        ping_id += 1;
                        let ping = proto::ClockPing { ping_id, t1_ns: mono_ns() };
                        let msg = proto::ControllerToWorker { msg: Some(ToWorker::Ping(ping)) };
                        if to_worker.send(Ok(msg)).await.is_err() {
                            break;
                        }
                        let every = if (ping_id as usize) < FIRST_PINGS { PING_EVERY / 10 } else { PING_EVERY };
                        next_ping += every;
                    }
                    // the worker's side of the stream is gone
                    _ = to_worker.closed() => break,
                }
            }
            workers.tell(Command::Disconnected { session }).await;
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// A worker whose channel closed before the job's start reached it: lost, so the job reruns.
fn lost_before_start(worker: &str, job_id: &str) -> anyhow::Error {
    WorkerLost {
        worker: worker.to_string(),
        job_id: job_id.to_string(),
        records: 0,
        how: "disconnected before the start of".into(),
    }
    .into()
}

/// Releases a job's route when [`Workers::run_job`] ends, returns early or is dropped: the
/// workers still on it are cancelled.
struct JobGuard {
    tx: mpsc::Sender<Command>,
    job_id: String,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let job_id = std::mem::take(&mut self.job_id);
        if let Err(mpsc::error::TrySendError::Full(c)) =
            self.tx.try_send(Command::Release { job_id })
        {
            let tx = self.tx.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { tx.send(c).await });
            }
        }
    }
}

/// After a failure: waits (bounded) until the workers still `running` the job have stopped or
/// left.
async fn drain(events: &mut mpsc::Receiver<JobEvent>, mut running: Vec<&str>) {
    let wait = async {
        while !running.is_empty() {
            match events.recv().await {
                Some(JobEvent::Done { worker, .. } | JobEvent::Lost { worker }) => {
                    running.retain(|n| *n != worker);
                }
                Some(JobEvent::Records { .. } | JobEvent::WarmedUp { .. }) => {}
                None => break,
            }
        }
    };
    if tokio::time::timeout(ABORT_DRAIN, wait).await.is_err() {
        tracing::warn!("load workers still running a cancelled job after {ABORT_DRAIN:?}");
    }
}

/// What the owner task knows of one worker session.
struct Entry {
    name: String,
    max_streams: u32,
    to_worker: ToWorkerTx,
    clock: ClockEstimator,
    /// The job it runs, from its assignment until its `JobDone`.
    job: Option<String>,
    /// It said it is shutting down (a `JobDone` marked interrupted): its stream has not closed
    /// yet, but it is neither listed nor given another job.
    leaving: bool,
}

impl Entry {
    fn cancel(&self, job_id: &str) {
        let msg = proto::ControllerToWorker {
            msg: Some(ToWorker::Cancel(proto::CancelJob {
                job_id: job_id.to_string(),
            })),
        };
        if self.to_worker.try_send(Ok(msg)).is_err() {
            tracing::warn!(
                "load worker {}: could not send CancelJob {job_id}",
                self.name
            );
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Command>) {
    let mut sessions: HashMap<u64, Entry> = HashMap::new();
    let mut routes: HashMap<String, mpsc::Sender<JobEvent>> = HashMap::new();
    let mut next_session = 0u64;
    let mut next_job = 0u64;
    // Forwards to a job's route; a route whose run_job is gone is dropped.
    async fn forward(
        routes: &mut HashMap<String, mpsc::Sender<JobEvent>>,
        job_id: &str,
        ev: JobEvent,
    ) {
        if let Some(r) = routes.get(job_id)
            && r.send(ev).await.is_err()
        {
            routes.remove(job_id);
        }
    }
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Register {
                reg,
                to_worker,
                reply,
            } => {
                if sessions.values().any(|e| e.name == reg.worker_name) {
                    let _ = reply.send(Err(Status::already_exists(format!(
                        "a load worker named {:?} is already connected: give each worker a distinct --name",
                        reg.worker_name
                    ))));
                    continue;
                }
                next_session += 1;
                tracing::info!(
                    "load worker {} registered ({} streams at most, version {})",
                    reg.worker_name,
                    reg.max_streams,
                    reg.worker_version
                );
                sessions.insert(
                    next_session,
                    Entry {
                        clock: ClockEstimator::for_peer(&reg.boot_id),
                        name: reg.worker_name,
                        max_streams: reg.max_streams,
                        to_worker,
                        job: None,
                        leaving: false,
                    },
                );
                let _ = reply.send(Ok(next_session));
            }
            Command::Pong { session, exchange } => {
                if let Some(e) = sessions.get_mut(&session) {
                    e.clock.add(exchange);
                }
            }
            Command::Records { session, batch } => {
                let Some(e) = sessions.get(&session) else {
                    continue;
                };
                let job_id = batch.job_id.clone();
                let ev = JobEvent::Records {
                    worker: e.name.clone(),
                    batch,
                };
                forward(&mut routes, &job_id, ev).await;
            }
            Command::Done { session, done } => {
                let Some(e) = sessions.get_mut(&session) else {
                    continue;
                };
                if e.job.as_deref() == Some(done.job_id.as_str()) {
                    e.job = None;
                }
                e.leaving |= done.interrupted;
                let job_id = done.job_id.clone();
                let ev = JobEvent::Done {
                    worker: e.name.clone(),
                    done,
                };
                forward(&mut routes, &job_id, ev).await;
            }
            Command::WarmedUp { session, job_id } => {
                let Some(e) = sessions.get(&session) else {
                    continue;
                };
                let ev = JobEvent::WarmedUp {
                    worker: e.name.clone(),
                };
                forward(&mut routes, &job_id, ev).await;
            }
            Command::Disconnected { session } => {
                let Some(e) = sessions.remove(&session) else {
                    continue;
                };
                match e.job {
                    Some(job_id) => {
                        tracing::warn!("load worker {} disconnected during job {job_id}", e.name);
                        forward(&mut routes, &job_id, JobEvent::Lost { worker: e.name }).await;
                    }
                    None => tracing::info!("load worker {} disconnected", e.name),
                }
            }
            Command::List { idle_only, reply } => {
                let mut out: Vec<WorkerInfo> = sessions
                    .values()
                    .filter(|e| !e.leaving)
                    .filter(|e| !idle_only || e.job.is_none())
                    .filter_map(|e| {
                        Some(WorkerInfo {
                            name: e.name.clone(),
                            max_streams: e.max_streams,
                            clock: e.clock.estimate()?,
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(out);
            }
            Command::Claim {
                want,
                most,
                events,
                reply,
            } => {
                let mut idle: Vec<(u64, &Entry, Offset)> = sessions
                    .iter()
                    .filter(|(_, e)| e.job.is_none() && !e.leaving)
                    .filter_map(|(&s, e)| Some((s, e, e.clock.estimate()?)))
                    .collect();
                idle.sort_by(|a, b| a.1.name.cmp(&b.1.name));
                let take = match want {
                    Some(w) if w > idle.len() => {
                        let busy = sessions.len() - idle.len();
                        let _ = reply.send(Err(format!(
                            "{w} load workers asked for, {} idle ({busy} busy, leaving or without a clock estimate yet)",
                            idle.len()
                        )));
                        continue;
                    }
                    Some(w) => w,
                    None if idle.is_empty() => {
                        let _ = reply.send(Err(format!(
                            "no idle load worker ({} connected): start one with `benchctl-loadgen --controller URL`",
                            sessions.len()
                        )));
                        continue;
                    }
                    None => idle.len(),
                };
                if take > most {
                    tracing::info!(
                        "using {most} of {take} load workers (no worker gets an empty share)"
                    );
                }
                idle.truncate(take.min(most).max(1));
                next_job += 1;
                let job_id = format!("job-{next_job}");
                let claimed: Vec<Claimed> = idle
                    .iter()
                    .map(|(_, e, offset)| Claimed {
                        name: e.name.clone(),
                        max_streams: e.max_streams,
                        to_worker: e.to_worker.clone(),
                        offset: *offset,
                    })
                    .collect();
                let ids: Vec<u64> = idle.iter().map(|(s, _, _)| *s).collect();
                for s in ids {
                    if let Some(e) = sessions.get_mut(&s) {
                        e.job = Some(job_id.clone());
                    }
                }
                routes.insert(job_id.clone(), events);
                let _ = reply.send(Ok((job_id, claimed)));
            }
            Command::Offsets { names, reply } => {
                let out = names
                    .iter()
                    .map(|n| {
                        sessions
                            .values()
                            .find(|e| &e.name == n)
                            .and_then(|e| e.clock.estimate())
                    })
                    .collect();
                let _ = reply.send(out);
            }
            Command::Cancel { job_id } => {
                for e in sessions.values() {
                    if let Some(j) = &e.job
                        && job_id.as_ref().is_none_or(|want| want == j)
                    {
                        e.cancel(j);
                    }
                }
            }
            Command::Unassign { job_id, names } => {
                for e in sessions.values_mut() {
                    if names.contains(&e.name) && e.job.as_ref() == Some(&job_id) {
                        e.job = None;
                    }
                }
            }
            Command::Release { job_id } => {
                routes.remove(&job_id);
                for e in sessions
                    .values()
                    .filter(|e| e.job.as_ref() == Some(&job_id))
                {
                    e.cancel(&job_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Registry, Server};

    /// A worker of another protocol version (here one from before the warm-up gate) is refused
    /// at registration, naming both versions, instead of being given jobs it would run wrong.
    #[tokio::test]
    async fn a_worker_of_another_protocol_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, Registry::spawn()).unwrap();
        let mut client = proto::controller_client::ControllerClient::connect(server.url())
            .await
            .unwrap();
        let register = proto::WorkerMessage {
            msg: Some(FromWorker::Register(proto::WorkerRegister {
                worker_name: "old".into(),
                worker_version: "0.0.9".into(),
                max_streams: 10,
                boot_id: String::new(),
                protocol: 0,
            })),
        };
        let err = client
            .worker_session(tokio_stream::iter([register]))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains(&format!(
                "speaks worker protocol 0, this controller {}",
                loadgen::worker::PROTOCOL
            )),
            "{}",
            err.message()
        );
        assert!(server.workers.list().await.is_empty());
        server.shutdown().await;
    }
}
