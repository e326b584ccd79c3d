//! One session with the controller: `WorkerRegister` → `WorkerRegistered`, then the controller's
//! messages until the session ends: `ClockPing`s answered at once, a `JobAssignment` started (one
//! job at a time), `StartJob` and `CancelJob` passed to the job they name. When the session ends,
//! the job in flight is cancelled.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cluster::Link;
use proto::controller_client::ControllerClient;
use proto::controller_to_worker::Msg as FromController;
use proto::worker_message::Msg as ToController;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tonic::Streaming;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use super::WorkerConfig;
use super::job::{Gate, run_job};
use super::outbound::message;
use crate::clock::mono_ns;

/// The version of the worker protocol (`WorkerRegister.protocol`) this worker speaks: 2 has the
/// warm-up gate (`WarmedUp`, `StartJob`).
pub const PROTOCOL: u32 = 2;
/// Messages queued towards the transport.
const OUTBOUND_QUEUE: usize = 64;
/// How long the controller has to answer `WorkerRegister`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new assignment waits for the previous job's task to end.
const REAP_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a shutdown waits for the cancelled job to send its last records.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages towards the controller, in the order the transport sends them.
type Outgoing = mpsc::Sender<proto::WorkerMessage>;
/// The controller's messages.
type Incoming = Streaming<proto::ControllerToWorker>;

/// One session: register, then serve the controller until the session ends or `cancel` fires.
pub(super) async fn session(link: &mut Link<'_>, cfg: &WorkerConfig) -> anyhow::Result<()> {
    let cancel = link.cancel;
    let Some((tx, mut incoming)) = register(link.endpoint, cancel, cfg).await? else {
        return Ok(());
    };
    link.registered();
    cfg.status.session(link.url, true);

    let mut serving = Serving {
        cfg,
        shutdown: cancel,
        tx,
        job: None,
        cancelled_early: None,
    };
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            moved = link.leader_moved() => break Err(moved.into()),
            r = async { (&mut serving.job.as_mut().expect("guarded").task).await }, if serving.job.is_some() => {
                let done = serving.job.take().expect("guarded");
                if let Err(e) = r {
                    warn!("job {}: its task failed: {e}", done.id);
                }
            }
            m = incoming.message() => {
                let t2 = mono_ns();
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(anyhow::Error::new(e).context("reading from the controller")),
                };
                if let Err(e) = serving.on_message(m, t2).await {
                    break Err(e);
                }
            }
        }
    };
    let tx = serving.end().await;
    if cancel.is_cancelled() && result.is_ok() {
        // Shutdown: close our side so what is queued goes out, and give the controller a moment
        // to close its side.
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(_)) = incoming.message().await {}
        })
        .await;
    }
    result
}

/// Connects, sends `WorkerRegister` and waits for `WorkerRegistered`. `None`: `cancel` fired
/// while connecting.
async fn register(
    endpoint: &Endpoint,
    cancel: &CancellationToken,
    cfg: &WorkerConfig,
) -> anyhow::Result<Option<(Outgoing, Incoming)>> {
    let channel = tokio::select! {
        _ = cancel.cancelled() => return Ok(None),
        c = endpoint.connect() => c.context("connecting")?,
    };
    let mut client = ControllerClient::new(channel)
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(proto::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<proto::WorkerMessage>(OUTBOUND_QUEUE);
    tx.send(message(ToController::Register(proto::WorkerRegister {
        worker_name: cfg.name.clone(),
        worker_version: env!("CARGO_PKG_VERSION").into(),
        max_streams: cfg.max_streams,
        boot_id: crate::clock::boot_id(),
        protocol: PROTOCOL,
    })))
    .await
    .map_err(|_| anyhow!("the outgoing stream closed before WorkerRegister"))?;
    // A pong's t3 is taken when the transport takes the message, not when it was queued: time
    // spent behind record batches counts as the worker's hold time, not as network delay.
    let outgoing = ReceiverStream::new(rx).map(|mut m| {
        if let Some(ToController::Pong(p)) = &mut m.msg {
            p.t3_ns = mono_ns();
        }
        m
    });
    let mut incoming = client
        .worker_session(outgoing)
        .await
        .context("opening WorkerSession")?
        .into_inner();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, incoming.message())
        .await
        .map_err(|_| anyhow!("no WorkerRegistered within {REGISTER_TIMEOUT:?}"))?
        .context("waiting for WorkerRegistered")?;
    match first.and_then(|m| m.msg) {
        Some(FromController::Registered(r)) => {
            info!(
                "registered with controller {} as {:?} ({} streams at most)",
                r.controller_id, cfg.name, cfg.max_streams
            );
        }
        other => bail!("expected WorkerRegistered, the controller sent {other:?}"),
    }
    Ok(Some((tx, incoming)))
}

/// The job this worker is running. Dropping it (the session's future dropped) aborts the job.
struct Running {
    id: String,
    cancel: CancellationToken,
    /// Where a `StartJob` goes: its start time on this worker's clock.
    start: watch::Sender<Option<u64>>,
    task: AbortOnDropHandle<()>,
}

/// A registered session's state: the job it runs and what it answers the controller.
struct Serving<'a> {
    cfg: &'a WorkerConfig,
    /// The worker's shutdown; each job's cancellation is a child of it.
    shutdown: &'a CancellationToken,
    tx: Outgoing,
    job: Option<Running>,
    /// A CancelJob that came before its JobAssignment (the controller cancelled while still
    /// sending a shared job's assignments): that assignment is answered at once, not run.
    cancelled_early: Option<String>,
}

impl Serving<'_> {
    /// Handles one message of the controller, received at `t2` (this worker's clock). Fails
    /// when the outgoing stream closed.
    async fn on_message(&mut self, m: proto::ControllerToWorker, t2: u64) -> anyhow::Result<()> {
        match m.msg {
            Some(FromController::Ping(p)) => {
                let pong = proto::ClockPong {
                    ping_id: p.ping_id,
                    t1_ns: p.t1_ns,
                    t2_ns: t2,
                    t3_ns: t2,
                };
                self.send(ToController::Pong(pong)).await
            }
            Some(FromController::Job(j)) => self.assign(j).await,
            Some(FromController::Start(s)) => {
                match &self.job {
                    Some(j) if j.id == s.job_id => {
                        debug!("job {}: StartJob at {} (now {t2})", j.id, s.start_at_ns);
                        j.start.send_replace(Some(s.start_at_ns));
                    }
                    _ => debug!("StartJob {} for a job not running here", s.job_id),
                }
                Ok(())
            }
            Some(FromController::Cancel(c)) => {
                match &self.job {
                    Some(j) if j.id == c.job_id => {
                        info!("job {}: cancelled by the controller", j.id);
                        j.cancel.cancel();
                    }
                    _ => {
                        debug!("CancelJob {} for a job not running here", c.job_id);
                        self.cancelled_early = Some(c.job_id);
                    }
                }
                Ok(())
            }
            Some(FromController::Registered(_)) | None => Ok(()),
        }
    }

    /// A `JobAssignment`: answered at once when it was cancelled before it came, refused while
    /// another job runs, else started.
    async fn assign(&mut self, j: proto::JobAssignment) -> anyhow::Result<()> {
        // The controller assigns again once it has the previous JobDone: that job's task has
        // sent it and is ending, if the session's loop has not seen it yet.
        if let Some(prev) = &mut self.job
            && tokio::time::timeout(REAP_TIMEOUT, &mut prev.task)
                .await
                .is_ok()
        {
            self.job = None;
        }
        if self.cancelled_early.as_deref() == Some(j.job_id.as_str()) {
            info!("job {}: cancelled before it arrived, not run", j.job_id);
            let now = mono_ns();
            let done = proto::JobDone {
                job_id: j.job_id,
                start_ns: now,
                end_ns: now,
                not_sent: j.prompts.len() as u32,
                ..Default::default()
            };
            self.send(ToController::Done(done)).await
        } else if let Some(busy) = &self.job {
            warn!("job {} refused: job {} is still running", j.job_id, busy.id);
            let done = proto::JobDone {
                job_id: j.job_id,
                error: format!(
                    "busy: worker {} is still running job {}",
                    self.cfg.name, busy.id
                ),
                ..Default::default()
            };
            self.send(ToController::Done(done)).await
        } else {
            self.start(j);
            Ok(())
        }
    }

    /// Spawns the job's task.
    fn start(&mut self, j: proto::JobAssignment) {
        let id = j.job_id.clone();
        info!(
            "job {id}: {} prompts against {:?}",
            j.prompts.len(),
            j.target_urls
        );
        let job_cancel = self.shutdown.child_token();
        let (start, start_rx) = watch::channel(None);
        let gate = Gate {
            tx: self.tx.clone(),
            cancel: job_cancel.clone(),
            start: start_rx,
        };
        let task = AbortOnDropHandle::new(tokio::spawn(run_job(
            j,
            gate,
            self.shutdown.clone(),
            self.cfg.clone(),
        )));
        self.job = Some(Running {
            id,
            cancel: job_cancel,
            start,
            task,
        });
    }

    async fn send(&self, m: ToController) -> anyhow::Result<()> {
        self.tx
            .send(message(m))
            .await
            .map_err(|_| anyhow!("the outgoing stream closed"))
    }

    /// The session is over: the job in flight is cancelled and waited for (at most
    /// [`DRAIN_TIMEOUT`]). Returns the outgoing stream's sender, for a shutdown to close.
    async fn end(self) -> Outgoing {
        let Some(j) = self.job else {
            return self.tx;
        };
        // On shutdown the job still sends the records of its cancelled requests and its JobDone
        // (the session is up); on a broken session its sends fail and it ends at once.
        j.cancel.cancel();
        if self.shutdown.is_cancelled() {
            info!("job {}: cancelled by shutdown", j.id);
        } else {
            warn!("job {}: cancelled, the session broke", j.id);
        }
        match tokio::time::timeout(DRAIN_TIMEOUT, j.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("job {}: its task failed: {e}", j.id),
            Err(_) => warn!("job {}: still draining after {DRAIN_TIMEOUT:?}", j.id),
        }
        self.tx
    }
}
