//! The controller's sweeps, run one at a time.
//!
//! One task owns them (the jobs, the queue, their checkpoints and the fenced writes of those);
//! the gRPC service and the runner of the sweep in flight hold a [`Manager`] handle (a bounded
//! channel) and get answers on oneshots. The owner writes checkpoints one at a time, in the
//! order the changes came, without waiting on them between messages: a change answered is
//! durable, and no write overwrites a later one. It spawns the runner of the next sweep once
//! the previous one's final checkpoint is written.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Change, Checkpoint};
use super::manager::{COMMANDS, Command, Ending, Manager, Setup};
use super::runner::Run;
use crate::self_metrics::ControllerMetrics;
use crate::service::{Registry, Workers};
use crate::sweep::feed::Feed;
use crate::sweep::status::Status;

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
        metrics: ControllerMetrics,
    ) -> anyhow::Result<Manager> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("--data-dir {}: cannot create it", data_dir.display()))?;
        let docs = match &fence {
            Some(f) => checkpoint::load_all(f).await.inspect_err(|_| {
                metrics.etcd_errors.inc();
            })?,
            None => Vec::new(),
        };
        let (tx, rx) = mpsc::channel(COMMANDS);
        let m = Manager {
            tx,
            setup: Arc::new(Setup {
                workers,
                registry,
                data_dir,
                me,
                metrics,
            }),
            stop: CancellationToken::new(),
            begun: CancellationToken::new(),
        };
        let mut owner = Owner {
            setup: m.setup.clone(),
            stop: m.stop.clone(),
            begun: m.begun.clone(),
            handles: m.tx.downgrade(),
            jobs: BTreeMap::new(),
            queue: VecDeque::new(),
            writes: Writes::new(fence),
            current: None,
            runner: None,
            started: false,
            halted: false,
        };
        for d in docs {
            owner.load(d);
        }
        tokio::spawn(owner.run(rx));
        Ok(m)
    }
}

/// One sweep known to this controller.
struct Job {
    /// The checkpoint as last changed (written, or being written).
    doc: Checkpoint,
    feed: Arc<Feed>,
    /// `CancelSweep`: interrupt it.
    cancel: CancellationToken,
    /// This controller stops writing (a parent of `cancel`).
    handover: CancellationToken,
}

/// What to do once a checkpoint is written (or not).
enum Then {
    /// Answer who asked for the change.
    Reply(oneshot::Sender<anyhow::Result<()>>),
    /// A submitted sweep is durable: queue it.
    Queue {
        doc: Box<Checkpoint>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    /// The final checkpoint of the sweep in flight: tell its followers, run the next.
    Finish { id: String, ending: Ending },
}

type Write = Pin<Box<dyn Future<Output = (anyhow::Result<()>, Then)> + Send>>;

/// The checkpoint writes, one at a time, in the order they were asked.
struct Writes {
    fence: Option<cluster::Fence>,
    current: Option<Write>,
    waiting: VecDeque<Write>,
}

impl Writes {
    fn new(fence: Option<cluster::Fence>) -> Writes {
        Writes {
            fence,
            current: None,
            waiting: VecDeque::new(),
        }
    }

    /// Writes `doc` (a snapshot), after the writes asked before.
    fn push(&mut self, doc: Checkpoint, then: Then) {
        let fence = self.fence.clone();
        let write: Write = Box::pin(async move {
            let r = checkpoint::save(fence.as_ref(), &doc).await;
            (r, then)
        });
        if self.current.is_none() {
            self.current = Some(write);
        } else {
            self.waiting.push_back(write);
        }
    }

    fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// The write in progress, once done; the next starts. Cancel-safe: the write in progress
    /// is kept while its result is not taken.
    async fn next(&mut self) -> (anyhow::Result<()>, Then) {
        let out = match self.current.as_mut() {
            Some(w) => w.await,
            None => std::future::pending().await,
        };
        self.current = self.waiting.pop_front();
        out
    }
}

/// Awaits a runner, if there is one.
async fn ended(
    runner: Option<&mut JoinHandle<anyhow::Result<Ending>>>,
) -> Result<anyhow::Result<Ending>, JoinError> {
    match runner {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

enum Event {
    Command(Command),
    /// Every handle is gone.
    Closed,
    Written(anyhow::Result<()>, Then),
    Ran(Result<anyhow::Result<Ending>, JoinError>),
    Begin,
}

/// The owner of the sweeps.
struct Owner {
    setup: Arc<Setup>,
    stop: CancellationToken,
    begun: CancellationToken,
    /// For the runners' handles (the owner does not keep its own channel open).
    handles: mpsc::WeakSender<Command>,
    jobs: BTreeMap<String, Job>,
    /// Sweeps waiting to run, oldest first.
    queue: VecDeque<String>,
    writes: Writes,
    /// The sweep running, or whose final checkpoint is being written.
    current: Option<String>,
    runner: Option<JoinHandle<anyhow::Result<Ending>>>,
    /// [`Manager::begin`] was called.
    started: bool,
    /// Handed over (this controller may no longer write): nothing more runs.
    halted: bool,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut open = true;
        while open || self.writes.busy() || self.runner.is_some() {
            self.start_next();
            let event = tokio::select! {
                c = rx.recv(), if open => c.map_or(Event::Closed, Event::Command),
                (r, then) = self.writes.next(), if self.writes.busy() => Event::Written(r, then),
                r = ended(self.runner.as_mut()), if self.runner.is_some() => Event::Ran(r),
                _ = self.begun.cancelled(), if !self.started => Event::Begin,
            };
            match event {
                Event::Command(c) => self.command(c),
                Event::Closed => open = false,
                Event::Written(r, then) => self.written(r, then),
                Event::Ran(r) => self.ran(r),
                Event::Begin => self.started = true,
            }
            self.count();
        }
    }

    /// `benchctl_sweeps`: those waiting, the one running, and the ended ones by status.
    fn count(&self) {
        let ended = |st: Status| self.jobs.values().filter(|j| j.doc.status == st).count() as i64;
        let running = self.current.is_some() && self.runner.is_some();
        self.setup.metrics.set_sweeps([
            self.queue.len() as i64,
            i64::from(running),
            ended(Status::Done),
            ended(Status::Failed),
            ended(Status::Interrupted),
        ]);
    }

    /// A checkpoint read at start: queued again if it was left queued or running.
    fn load(&mut self, d: Checkpoint) {
        let id = d.id.clone();
        let (status, leader, error) = (d.status, d.leader.clone(), d.error.clone());
        let dir = self.setup.data_dir.join(&id);
        let result_dir = dir.display().to_string();
        let job = self.add(d);
        if status.is_pending() {
            tracing::info!("sweep {id}: left {status} by {leader}; resuming it");
            self.queue.push_back(id);
        } else {
            job.feed.finish(proto::SweepFinished {
                status: status.as_str().into(),
                summary_text: String::new(),
                result_dir,
                error: error.unwrap_or_default(),
                combinations: crate::sweep::verdict::from_summary_file(&dir),
            });
        }
    }

    fn add(&mut self, doc: Checkpoint) -> &Job {
        let handover = self.stop.child_token();
        let id = doc.id.clone();
        let job = Job {
            doc,
            feed: Arc::new(Feed::new()),
            cancel: handover.child_token(),
            handover,
        };
        self.jobs.insert(id.clone(), job);
        &self.jobs[&id]
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Submit { doc, reply } => {
                self.writes.push((*doc).clone(), Then::Queue { doc, reply });
            }
            Command::Update { id, change, reply } => match self.jobs.get_mut(&id) {
                Some(job) => {
                    job.doc.apply(change);
                    self.writes.push(job.doc.clone(), Then::Reply(reply));
                }
                None => {
                    let _ = reply.send(Err(anyhow::anyhow!("no sweep {id:?} on this controller")));
                }
            },
            Command::Interrupt { id } => {
                if let Some(job) = self.jobs.get(&id) {
                    job.cancel.cancel();
                }
            }
            Command::List { reply } => {
                let _ = reply.send(self.jobs.values().map(|j| j.doc.clone()).collect());
            }
            Command::Feed { id, reply } => {
                let _ = reply.send(self.jobs.get(&id).map(|j| j.feed.clone()));
            }
            Command::Shutdown { reply } => {
                self.halted = true;
                let _ = reply.send(self.runner.take());
            }
        }
    }

    fn written(&mut self, r: anyhow::Result<()>, then: Then) {
        if r.is_err() && self.writes.fence.is_some() {
            self.setup.metrics.etcd_errors.inc();
        }
        match then {
            Then::Reply(reply) => {
                let _ = reply.send(r);
            }
            Then::Queue { doc, reply } => {
                if r.is_ok() {
                    let id = doc.id.clone();
                    let me = self.setup.me.clone();
                    self.add(*doc)
                        .feed
                        .line(format!("sweep {id} queued on {me}"));
                    self.queue.push_back(id);
                }
                let _ = reply.send(r);
            }
            Then::Finish { id, ending } => self.finished(id, ending, r),
        }
    }

    /// Spawns the runner of the next sweep, if none runs and running is allowed.
    fn start_next(&mut self) {
        if !self.started || self.halted || self.stop.is_cancelled() || self.current.is_some() {
            return;
        }
        let Some(tx) = self.handles.upgrade() else {
            return;
        };
        while let Some(id) = self.queue.pop_front() {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let sweeps = Manager {
                tx,
                setup: self.setup.clone(),
                stop: self.stop.clone(),
                begun: self.begun.clone(),
            };
            let run = Run {
                sweeps,
                doc: job.doc.clone(),
                feed: job.feed.clone(),
                cancel: job.cancel.clone(),
                handover: job.handover.clone(),
            };
            self.runner = Some(tokio::spawn(run.run()));
            self.current = Some(id);
            return;
        }
    }

    /// The runner of the sweep in flight is over: its final checkpoint is written next.
    fn ran(&mut self, r: Result<anyhow::Result<Ending>, JoinError>) {
        self.runner = None;
        let Some(job) = self.current.as_ref().and_then(|id| self.jobs.get_mut(id)) else {
            return;
        };
        let id = job.doc.id.clone();
        if job.handover.is_cancelled() {
            tracing::info!("sweep {id}: handed over (this controller stopped leading)");
            self.halted = true;
            return;
        }
        let ending = match r.unwrap_or_else(|e| Err(anyhow::anyhow!("its task ended: {e}"))) {
            Ok(ending) => ending,
            Err(e) => {
                tracing::warn!("sweep {id} failed: {e:#}");
                job.feed.line(format!("the sweep failed: {e:#}"));
                Ending::failed(&e)
            }
        };
        job.doc.apply(Change::Finished {
            leader: self.setup.me.clone(),
            status: ending.status,
            error: ending.error.clone(),
        });
        self.writes
            .push(job.doc.clone(), Then::Finish { id, ending });
    }

    /// The final checkpoint of the sweep in flight is written (or not): its followers get its
    /// end, unless this controller was deposed meanwhile.
    fn finished(&mut self, id: String, ending: Ending, written: anyhow::Result<()>) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if let Err(e) = written {
            tracing::warn!("sweep {id}: the final checkpoint was not written: {e:#}");
            if job.handover.is_cancelled() {
                self.halted = true;
                return;
            }
        }
        job.feed.finish(proto::SweepFinished {
            status: ending.status.as_str().into(),
            summary_text: ending.table,
            result_dir: self.setup.data_dir.join(&id).display().to_string(),
            error: ending.error.unwrap_or_default(),
            combinations: ending.combinations,
        });
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &str = include_str!("../../../tests/fixtures/checkpoint-v0.json");

    /// Without etcd and without a target: a sweep queued directly (as `submit` does once the
    /// target answered), changed, cancelled, then run: the runner ends it at once.
    #[tokio::test]
    async fn the_owner_queues_changes_cancels_and_finishes_a_sweep() {
        let data = tempfile::tempdir().unwrap();
        let m = Manager::start(
            Workers::spawn(),
            Registry::spawn(),
            data.path().to_path_buf(),
            None,
            "http://me".into(),
            ControllerMetrics::default(),
        )
        .await
        .unwrap();
        let mut doc = Checkpoint::parse(V0.as_bytes()).unwrap();
        doc.status = Status::Queued;
        let queued = m
            .ask(|reply| Command::Submit {
                doc: Box::new(doc),
                reply,
            })
            .await
            .unwrap();
        queued.unwrap();
        let id = "m_tp2_20260101-120000";
        let feed = m.feed(id).await.unwrap();
        assert!(m.feed("other").await.is_none());
        assert!(m.update("other", Change::CancelRequested).await.is_err());

        m.update(id, Change::TestStarted("c1_in1024_out128".into()))
            .await
            .unwrap();
        let listed = m.list().await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, Status::Queued);
        assert_eq!(listed[0].in_flight.as_deref(), Some("c1_in1024_out128"));

        m.update(id, Change::CancelRequested).await.unwrap();
        m.interrupt(id).await;
        let (backlog, mut rx) = feed.subscribe();
        assert!(backlog.iter().any(|e| matches!(
            &e.event,
            Some(proto::sweep_event::Event::Line(l)) if l == &format!("sweep {id} queued on http://me")
        )));
        m.begin();
        let finished = loop {
            if let Some(proto::sweep_event::Event::Finished(f)) = rx.recv().await.unwrap().event {
                break f;
            }
        };
        assert_eq!(finished.status, "interrupted");
        assert_eq!(
            finished.result_dir,
            data.path().join(id).display().to_string()
        );
        let d = &m.list().await[0];
        assert_eq!(
            (d.status, d.leader.as_str()),
            (Status::Interrupted, "http://me")
        );
        assert!(d.cancel_requested && d.in_flight.is_none());
        m.shutdown().await;
    }
}
