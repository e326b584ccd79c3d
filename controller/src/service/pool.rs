//! The controller's load workers: who is connected, each one's clock estimate, which job each
//! runs and where each job's events go.
//!
//! That state is owned by one task; the sessions (`worker_session.rs`) and the jobs
//! ([`Workers::run_job`]) hold a [`Workers`] handle and get answers on oneshots. Assignments go
//! straight to each worker's outgoing stream; records come back through the owner task to the
//! job's channel.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use proto::controller_to_worker::Msg as ToWorker;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::mailbox::Mailbox;
use crate::clock::{ClockEstimator, Exchange, Offset};
use crate::self_metrics::{ControllerMetrics, PeerKind};

/// A connected worker, as [`Workers::wait_for`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub name: String,
    /// The most concurrent streams the worker accepts.
    pub max_streams: u32,
    /// Its clock's offset from the controller's.
    pub clock: Offset,
}

/// What one worker's session tells the job it works on.
pub(super) enum JobEvent {
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

/// A worker's outgoing stream.
pub(super) type ToWorkerTx = mpsc::Sender<Result<proto::ControllerToWorker, Status>>;

/// A worker taken for a job.
pub(super) struct Claimed {
    pub(super) name: String,
    pub(super) max_streams: u32,
    pub(super) to_worker: ToWorkerTx,
    pub(super) offset: Offset,
}

pub(super) enum Command {
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
    mailbox: Mailbox<Command>,
}

impl Workers {
    /// Spawns the owner task; it ends when every handle is dropped.
    pub fn spawn() -> Workers {
        Workers::spawn_with(ControllerMetrics::default())
    }

    /// [`Workers::spawn`], counting into `metrics` (workers connected, their clocks).
    pub fn spawn_with(metrics: ControllerMetrics) -> Workers {
        let pool = Pool {
            metrics,
            ..Pool::default()
        };
        Workers {
            mailbox: Mailbox::spawn(|rx| pool.run(rx)),
        }
    }

    pub(super) async fn ask<T>(
        &self,
        f: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> anyhow::Result<T> {
        self.mailbox
            .ask(f)
            .await
            .ok_or_else(|| anyhow!("the worker pool has stopped"))
    }

    pub(super) async fn tell(&self, c: Command) {
        self.mailbox.tell(c).await;
    }

    /// [`Workers::tell`] from a `Drop`.
    pub(super) fn tell_soon(&self, c: Command) {
        self.mailbox.tell_soon(c);
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

    fn is_idle(&self) -> bool {
        self.job.is_none() && !self.leaving
    }
}

/// The owner task's state.
#[derive(Default)]
struct Pool {
    sessions: HashMap<u64, Entry>,
    /// Where each running job's events go.
    routes: HashMap<String, mpsc::Sender<JobEvent>>,
    next_session: u64,
    next_job: u64,
    metrics: ControllerMetrics,
}

impl Pool {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd).await;
        }
        // the term is over: no worker is connected to it any more
        self.metrics.workers_connected.set(0);
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Register {
                reg,
                to_worker,
                reply,
            } => {
                let _ = reply.send(self.register(reg, to_worker));
                self.metrics
                    .workers_connected
                    .set(self.sessions.len() as i64);
            }
            Command::Pong { session, exchange } => {
                if let Some(e) = self.sessions.get_mut(&session) {
                    e.clock.add(exchange);
                    self.metrics
                        .clock(PeerKind::Worker, &e.name, e.clock.estimate());
                }
            }
            Command::Records { session, batch } => {
                let job_id = batch.job_id.clone();
                self.forward_from(session, &job_id, |worker| JobEvent::Records {
                    worker,
                    batch,
                })
                .await;
            }
            Command::Done { session, done } => {
                if let Some(e) = self.sessions.get_mut(&session) {
                    if e.job.as_deref() == Some(done.job_id.as_str()) {
                        e.job = None;
                    }
                    e.leaving |= done.interrupted;
                }
                let job_id = done.job_id.clone();
                self.forward_from(session, &job_id, |worker| JobEvent::Done { worker, done })
                    .await;
            }
            Command::WarmedUp { session, job_id } => {
                self.forward_from(session, &job_id, |worker| JobEvent::WarmedUp { worker })
                    .await;
            }
            Command::Disconnected { session } => self.disconnected(session).await,
            Command::List { idle_only, reply } => {
                let _ = reply.send(self.list(idle_only));
            }
            Command::Claim {
                want,
                most,
                events,
                reply,
            } => {
                let _ = reply.send(self.claim(want, most, events));
            }
            Command::Offsets { names, reply } => {
                let _ = reply.send(self.offsets(&names));
            }
            Command::Cancel { job_id } => self.cancel(job_id.as_deref()),
            Command::Unassign { job_id, names } => {
                for e in self.sessions.values_mut() {
                    if names.contains(&e.name) && e.job.as_ref() == Some(&job_id) {
                        e.job = None;
                    }
                }
            }
            Command::Release { job_id } => {
                self.routes.remove(&job_id);
                self.cancel(Some(&job_id));
            }
        }
    }

    /// A new session, unless a worker of that name is connected already.
    fn register(
        &mut self,
        reg: proto::WorkerRegister,
        to_worker: ToWorkerTx,
    ) -> Result<u64, Status> {
        if self.sessions.values().any(|e| e.name == reg.worker_name) {
            return Err(Status::already_exists(format!(
                "a load worker named {:?} is already connected: give each worker a distinct --name",
                reg.worker_name
            )));
        }
        self.next_session += 1;
        tracing::info!(
            "load worker {} registered ({} streams at most, version {})",
            reg.worker_name,
            reg.max_streams,
            reg.worker_version
        );
        self.sessions.insert(
            self.next_session,
            Entry {
                clock: ClockEstimator::for_peer(&reg.boot_id),
                name: reg.worker_name,
                max_streams: reg.max_streams,
                to_worker,
                job: None,
                leaving: false,
            },
        );
        Ok(self.next_session)
    }

    /// Sends `CancelJob` to the workers running job `job_id` (`None`: any job).
    fn cancel(&self, job_id: Option<&str>) {
        for e in self.sessions.values() {
            if let Some(j) = &e.job
                && job_id.is_none_or(|want| want == j)
            {
                e.cancel(j);
            }
        }
    }

    /// Forwards the event `ev` makes of the session's worker name to job `job_id`'s route; a
    /// route whose `run_job` is gone is dropped.
    async fn forward_from(
        &mut self,
        session: u64,
        job_id: &str,
        ev: impl FnOnce(String) -> JobEvent,
    ) {
        let Some(e) = self.sessions.get(&session) else {
            return;
        };
        let ev = ev(e.name.clone());
        self.forward(job_id, ev).await;
    }

    async fn forward(&mut self, job_id: &str, ev: JobEvent) {
        if let Some(r) = self.routes.get(job_id)
            && r.send(ev).await.is_err()
        {
            self.routes.remove(job_id);
        }
    }

    async fn disconnected(&mut self, session: u64) {
        let Some(e) = self.sessions.remove(&session) else {
            return;
        };
        self.metrics
            .workers_connected
            .set(self.sessions.len() as i64);
        self.metrics.peer_gone(PeerKind::Worker, &e.name);
        match e.job {
            Some(job_id) => {
                tracing::warn!("load worker {} disconnected during job {job_id}", e.name);
                self.forward(&job_id, JobEvent::Lost { worker: e.name })
                    .await;
            }
            None => tracing::info!("load worker {} disconnected", e.name),
        }
    }

    fn list(&self, idle_only: bool) -> Vec<WorkerInfo> {
        let mut out: Vec<WorkerInfo> = self
            .sessions
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
        out
    }

    /// Takes `want` idle workers (`None`: every one), at most `most` and at least one, for a
    /// new job whose events go to `events`.
    fn claim(
        &mut self,
        want: Option<usize>,
        most: usize,
        events: mpsc::Sender<JobEvent>,
    ) -> Result<(String, Vec<Claimed>), String> {
        let mut idle: Vec<(u64, &Entry, Offset)> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.is_idle())
            .filter_map(|(&s, e)| Some((s, e, e.clock.estimate()?)))
            .collect();
        idle.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let take = match want {
            Some(w) if w > idle.len() => {
                let busy = self.sessions.len() - idle.len();
                return Err(format!(
                    "{w} load workers asked for, {} idle ({busy} busy, leaving or without a clock estimate yet)",
                    idle.len()
                ));
            }
            Some(w) => w,
            None if idle.is_empty() => {
                return Err(format!(
                    "no idle load worker ({} connected): start one with `benchctl-loadgen --controller URL`",
                    self.sessions.len()
                ));
            }
            None => idle.len(),
        };
        if take > most {
            tracing::info!("using {most} of {take} load workers (no worker gets an empty share)");
        }
        idle.truncate(take.min(most).max(1));
        self.next_job += 1;
        let job_id = format!("job-{}", self.next_job);
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
            if let Some(e) = self.sessions.get_mut(&s) {
                e.job = Some(job_id.clone());
            }
        }
        self.routes.insert(job_id.clone(), events);
        Ok((job_id, claimed))
    }

    /// The clock estimate of each named worker (`None`: it has left, or has none).
    fn offsets(&self, names: &[String]) -> Vec<Option<Offset>> {
        names
            .iter()
            .map(|n| {
                self.sessions
                    .values()
                    .find(|e| &e.name == n)
                    .and_then(|e| e.clock.estimate())
            })
            .collect()
    }
}
