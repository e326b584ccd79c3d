//! The handle on the controller's sweeps ([`Manager`]): what every caller (the gRPC service,
//! the runner of the sweep in flight, `benchctl controller`) sends the owner task in `queue.rs`,
//! which holds the sweeps, their checkpoints and the queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Change, Checkpoint, Spec};
use crate::self_metrics::ControllerMetrics;
use crate::service::{Registry, Workers};
use crate::sweep::feed::Feed;
use crate::sweep::status::Status;

/// Messages queued towards the owner task.
pub(super) const COMMANDS: usize = 256;

/// How long [`Manager::shutdown`] lets the sweep in flight stop before aborting it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// What the owner and every runner share, fixed at start.
pub(super) struct Setup {
    pub workers: Workers,
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// This controller's advertised URL.
    pub me: String,
    /// Its own metrics (sweeps by state, tests, failovers, etcd errors).
    pub metrics: ControllerMetrics,
}

pub(super) enum Command {
    /// A new sweep: checkpointed, then queued.
    Submit {
        doc: Box<Checkpoint>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    /// Changes a sweep's checkpoint; answered once it is written.
    Update {
        id: String,
        change: Change,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    /// Interrupts a sweep (the test in flight is discarded).
    Interrupt { id: String },
    List {
        reply: oneshot::Sender<Vec<Checkpoint>>,
    },
    Feed {
        id: String,
        reply: oneshot::Sender<Option<Arc<Feed>>>,
    },
    /// Nothing more starts; answers the runner of the sweep in flight.
    Shutdown {
        reply: oneshot::Sender<Option<JoinHandle<anyhow::Result<Ending>>>>,
    },
}

/// A handle on the controller's sweeps.
#[derive(Clone)]
pub struct Manager {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) setup: Arc<Setup>,
    /// Fires when this controller stops serving.
    pub(super) stop: CancellationToken,
    /// Fires at [`Manager::begin`].
    pub(super) begun: CancellationToken,
}

impl Manager {
    /// Starts running the queue.
    pub fn begin(&self) {
        self.begun.cancel();
    }

    /// Stops: the sweep running is handed over (nothing more is written; with etcd it stays
    /// `running` for the next leader, without etcd its summary says `running` until resumed).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let runner = self
            .ask(|reply| Command::Shutdown { reply })
            .await
            .flatten();
        if let Some(mut r) = runner
            && tokio::time::timeout(SHUTDOWN_WAIT, &mut r).await.is_err()
        {
            // its files are written atomically and its array entry last: what it was writing
            // is simply not there; the result directory's lock goes with it
            tracing::warn!("the sweep in flight did not stop within 2 s: aborted");
            r.abort();
            let _ = r.await;
        }
    }

    /// The gRPC service.
    pub fn service(&self) -> proto::sweeps_server::SweepsServer<Manager> {
        proto::sweeps_server::SweepsServer::new(self.clone())
    }

    /// This controller is stopping: it takes no new sweep.
    pub(super) fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Where a sweep's results are.
    pub(super) fn result_dir(&self, id: &str) -> PathBuf {
        self.setup.data_dir.join(id)
    }

    pub(super) async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(f(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Queues a sweep: checks the target (reachable, its model), creates the result directory
    /// (its name is the sweep's id) and checkpoints it.
    pub(super) async fn submit(&self, mut spec: Spec) -> anyhow::Result<(String, PathBuf)> {
        crate::sweep::threshold::check_max_error_rate(spec.plan.max_error_rate)
            .map_err(anyhow::Error::msg)?;
        if spec.plan.io.is_empty() || spec.plan.steps().is_empty() {
            anyhow::bail!("the sweep's grid is empty (--io, --concurrency or --rates)");
        }
        let target = spec.target_with_key();
        let prep = crate::target::prepare(&target.target, spec.max_concurrency())
            .await
            .context("the controller cannot reach the target")?;
        let dir = crate::sweep::engine::create_dir(
            &self.setup.data_dir,
            &target.target,
            &mut spec.plan,
            &prep,
        )?;
        let id = dir
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("a result directory without a name")?;
        let path = dir.dir.clone();
        drop(dir);
        let doc = Checkpoint::queued(id.clone(), spec, self.setup.me.clone());
        let queued = self
            .ask(|reply| Command::Submit {
                doc: Box::new(doc),
                reply,
            })
            .await
            .unwrap_or_else(|| Err(anyhow::anyhow!("the controller is stopping")));
        if let Err(e) = queued {
            let _ = std::fs::remove_dir_all(&path);
            return Err(e);
        }
        Ok((id, path))
    }

    /// Changes a sweep's checkpoint and writes it (fenced); answers once it is written.
    pub(super) async fn update(&self, id: &str, change: Change) -> anyhow::Result<()> {
        self.ask(|reply| Command::Update {
            id: id.to_string(),
            change,
            reply,
        })
        .await
        .unwrap_or_else(|| Err(anyhow::anyhow!("the controller is stopping")))
    }

    /// Interrupts a sweep (after its `cancel_requested` is written).
    pub(super) async fn interrupt(&self, id: &str) {
        let _ = self
            .tx
            .send(Command::Interrupt { id: id.to_string() })
            .await;
    }

    /// Every sweep's checkpoint as last changed.
    pub(super) async fn list(&self) -> Vec<Checkpoint> {
        self.ask(|reply| Command::List { reply })
            .await
            .unwrap_or_default()
    }

    /// What a sweep's followers see (`None`: no such sweep here).
    pub(super) async fn feed(&self, id: &str) -> Option<Arc<Feed>> {
        self.ask(|reply| Command::Feed {
            id: id.to_string(),
            reply,
        })
        .await
        .flatten()
    }
}

/// How one run of a sweep ended: its final status and what its followers are shown.
pub(super) struct Ending {
    pub status: Status,
    /// The closing table (empty when the sweep did not run).
    pub table: String,
    pub error: Option<String>,
    /// Each IO combination's largest passing concurrency (empty when the sweep did not run).
    pub combinations: Vec<proto::CombinationVerdict>,
}

impl Ending {
    pub(super) fn ran(status: Status, table: String) -> Ending {
        Ending {
            status,
            table,
            error: None,
            combinations: Vec::new(),
        }
    }

    pub(super) fn failed(e: &anyhow::Error) -> Ending {
        Ending {
            status: Status::Failed,
            table: String::new(),
            error: Some(format!("{e:#}")),
            combinations: Vec::new(),
        }
    }
}
