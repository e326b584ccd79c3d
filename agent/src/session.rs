//! The gRPC session with the controller: register, replay what the controller lacks, stream new
//! samples, answer clock pings, apply sampling settings; reconnect with jittered exponential
//! backoff whenever anything fails, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cluster::Link;
use proto::controller_client::ControllerClient;
use proto::{
    AgentMessage, AgentRegister, ClockPong, ControllerToAgent, TelemetryBatch, agent_message,
    controller_to_agent,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::Streaming;
use tracing::{debug, info, warn};

use crate::buffer::RingBuffer;
use crate::clock::Clock;
use crate::metrics::AgentMetrics;
use crate::poller::{MIN_INTERVAL, Poller};

/// Most samples per TelemetryBatch.
pub const MAX_BATCH_SAMPLES: usize = 1000;
/// Messages queued towards the transport; small, so the ring buffer stays the only backlog.
const OUTBOUND_QUEUE: usize = 4;
/// How long the controller has to answer AgentRegister.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown spends sending what is buffered.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a session needs; shared by every reconnection.
#[derive(Debug)]
pub struct SessionContext {
    /// mTLS towards the controller (`--tls-*`).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The controller's URL: fixed (`--controller`) or the elected leader's (`--etcd`); `None`
    /// until one is known.
    pub target: tokio::sync::watch::Receiver<Option<String>>,
    /// Node name, version, instance id, GPUs, simulated (the rest is filled per registration).
    pub register: AgentRegister,
    pub buffer: Arc<RingBuffer>,
    pub poller: Arc<Poller>,
    pub clock: Clock,
    /// `benchctl_agent_connected` is set here.
    pub metrics: AgentMetrics,
    /// `/readyz`: ready while a session is registered.
    pub ready: tokio::sync::watch::Sender<ops::Readiness>,
}

/// Runs sessions until `cancel` fires, reconnecting after every failure.
pub async fn run(ctx: &SessionContext, cancel: &CancellationToken) {
    cluster::reconnect(ctx, ctx.target.clone(), ctx.tls.as_ref(), cancel).await;
}

impl cluster::Session for SessionContext {
    async fn run(&self, link: &mut Link<'_>) -> anyhow::Result<()> {
        let r = session(self, link).await;
        self.metrics.connected.set(0);
        self.ready.send_replace(ops::Readiness::NotReady(format!(
            "no session with the controller (last: {})",
            link.url
        )));
        r
    }
}

fn message(msg: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(msg) }
}

/// One connection: Ok when shut down, Err when anything failed (the caller reconnects).
async fn session(ctx: &SessionContext, link: &mut Link<'_>) -> anyhow::Result<()> {
    let (endpoint, cancel) = (link.endpoint, link.cancel);
    let channel = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        r = endpoint.connect() => r.context("cannot connect")?,
    };
    let mut client = ControllerClient::new(channel);
    let (tx, rx) = mpsc::channel::<AgentMessage>(OUTBOUND_QUEUE);
    let (oldest, next) = ctx.buffer.bounds();
    let register = AgentRegister {
        oldest_buffered_seq: oldest,
        next_seq: next,
        interval_ms: u32::try_from(ctx.poller.interval().as_millis()).unwrap_or(u32::MAX),
        ..ctx.register.clone()
    };
    tx.try_send(message(agent_message::Msg::Register(register)))
        .context("queueing AgentRegister")?;
    let response = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        r = client.agent_session(ReceiverStream::new(rx)) => r.context("AgentSession refused")?,
    };
    let mut inbound = response.into_inner();
    let first = tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        r = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()) => r
            .map_err(|_| anyhow::anyhow!("no AgentRegistered within {REGISTER_TIMEOUT:?}"))?
            .context("waiting for AgentRegistered")?,
    };
    let registered_msg = match first.and_then(|m| m.msg) {
        Some(controller_to_agent::Msg::Registered(r)) => r,
        Some(other) => bail!("expected AgentRegistered first, got {other:?}"),
        None => bail!("the controller closed the session before registering"),
    };
    link.registered();
    ctx.metrics.connected.set(1);
    ctx.ready.send_replace(ops::Readiness::Ready(format!(
        "registered with the controller {}",
        link.url
    )));
    let mut cursor = ctx.buffer.resume_from(registered_msg.resume_from_seq);
    info!(
        controller = %endpoint.uri(),
        controller_id = %registered_msg.controller_id,
        resume_from_seq = cursor,
        replay = next.saturating_sub(cursor),
        "registered with the controller"
    );

    loop {
        let has_data = ctx.buffer.has_from(cursor);
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            moved = link.leader_moved() => return Err(moved.into()),
            msg = inbound.message() => {
                let t2_ns = ctx.clock.now_ns();
                let Some(msg) = msg.context("controller stream failed")? else {
                    bail!("the controller ended the session");
                };
                handle(ctx, &tx, &mut cursor, msg, t2_ns).await?;
            }
            permit = tx.reserve(), if has_data => {
                let permit = permit.context("the session's send stream closed")?;
                let batch = ctx.buffer.copy_from(cursor, MAX_BATCH_SAMPLES);
                if let Some(last) = batch.samples.last() {
                    cursor = last.seq + 1;
                }
                permit.send(message(agent_message::Msg::Telemetry(TelemetryBatch {
                    samples: batch.samples,
                    dropped_samples: batch.dropped,
                })));
            }
            () = ctx.buffer.pushed(), if !has_data => {}
        }
    }
    flush(ctx, tx, inbound, cursor).await;
    Ok(())
}

async fn handle(
    ctx: &SessionContext,
    tx: &mpsc::Sender<AgentMessage>,
    cursor: &mut u64,
    msg: ControllerToAgent,
    t2_ns: u64,
) -> anyhow::Result<()> {
    match msg.msg {
        Some(controller_to_agent::Msg::Ping(ping)) => {
            let permit = tx
                .reserve()
                .await
                .context("the session's send stream closed")?;
            permit.send(message(agent_message::Msg::Pong(ClockPong {
                ping_id: ping.ping_id,
                t1_ns: ping.t1_ns,
                t2_ns,
                t3_ns: ctx.clock.now_ns(),
            })));
        }
        Some(controller_to_agent::Msg::Settings(settings)) if settings.interval_ms > 0 => {
            let requested = Duration::from_millis(u64::from(settings.interval_ms));
            if requested < MIN_INTERVAL {
                warn!(
                    requested_ms = settings.interval_ms,
                    "sampling interval below the minimum; using {MIN_INTERVAL:?}"
                );
            }
            ctx.poller.set_interval(requested);
            info!(interval = ?ctx.poller.interval(), "sampling interval changed by the controller");
        }
        // interval_ms 0: unchanged.
        Some(controller_to_agent::Msg::Settings(_)) => {}
        Some(controller_to_agent::Msg::Registered(r)) => {
            *cursor = ctx.buffer.resume_from(r.resume_from_seq);
            debug!(
                resume_from_seq = *cursor,
                "re-registered within the session"
            );
        }
        None => {}
    }
    Ok(())
}

/// Shutdown: stop sampling, send what is buffered (bounded by [`FLUSH_TIMEOUT`]), end our side
/// of the stream and wait for the controller to end its side.
async fn flush(
    ctx: &SessionContext,
    tx: mpsc::Sender<AgentMessage>,
    mut inbound: Streaming<ControllerToAgent>,
    mut cursor: u64,
) {
    ctx.poller.request_stop();
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    let end = ctx.buffer.bounds().1;
    let drained = tokio::time::timeout_at(deadline, async {
        while cursor < end {
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            let max = usize::try_from(end - cursor).unwrap_or(usize::MAX);
            let batch = ctx.buffer.copy_from(cursor, max.min(MAX_BATCH_SAMPLES));
            let Some(last) = batch.samples.last() else {
                break;
            };
            cursor = last.seq + 1;
            permit.send(message(agent_message::Msg::Telemetry(TelemetryBatch {
                samples: batch.samples,
                dropped_samples: batch.dropped,
            })));
        }
        drop(tx);
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
    if cursor < end {
        warn!(
            unsent = end - cursor,
            "shutdown: could not send every buffered sample"
        );
    } else if drained.is_err() {
        debug!("shutdown: the controller did not end its side of the session in time");
    } else {
        debug!(sent_up_to = cursor, "shutdown: flushed buffered samples");
    }
}
