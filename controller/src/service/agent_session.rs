//! A telemetry agent's session (the `AgentSession` rpc): registers the agent with the
//! [`Registry`], then relays its telemetry and clock pongs there, sends it sampling settings and
//! pings its clock until the stream ends or the controller shuts down.

use loadgen::clock::mono_ns;
use proto::agent_message::Msg as FromAgent;
use proto::controller_to_agent::Msg as ToAgent;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::ping::PingTicker;
use super::registry::Registry;
use crate::clock::Exchange;

type ToAgentTx = mpsc::Sender<Result<proto::ControllerToAgent, Status>>;

/// Checks the agent's `AgentRegister`, registers it (answering with the seq to resume from) and
/// spawns the relay; returns the stream towards the agent.
pub(super) async fn open(
    registry: &Registry,
    controller_id: String,
    cancel: CancellationToken,
    mut incoming: Streaming<proto::AgentMessage>,
) -> Result<ReceiverStream<Result<proto::ControllerToAgent, Status>>, Status> {
    let first = incoming
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("the agent session ended before AgentRegister"))?;
    let Some(FromAgent::Register(reg)) = first.msg else {
        return Err(Status::invalid_argument(
            "the first message of an agent session must be AgentRegister",
        ));
    };
    if reg.node_name.is_empty() {
        return Err(Status::invalid_argument(
            "AgentRegister.node_name is empty: give the agent --node-name",
        ));
    }
    let node = reg.node_name.clone();
    let instance = reg.instance_id;
    let (settings_tx, settings_rx) = mpsc::channel::<proto::SamplingSettings>(8);
    let resume = registry.register(reg, settings_tx).await;
    let (tx, rx) = mpsc::channel(64);
    let registered = proto::AgentRegistered {
        controller_id,
        resume_from_seq: resume,
    };
    let _ = tx.send(Ok(to_agent(ToAgent::Registered(registered)))).await;
    let relay = Relay {
        registry: registry.clone(),
        node,
        instance,
        tx,
    };
    tokio::spawn(relay.run(incoming, settings_rx, cancel));
    Ok(ReceiverStream::new(rx))
}

fn to_agent(m: ToAgent) -> proto::ControllerToAgent {
    proto::ControllerToAgent { msg: Some(m) }
}

/// One registered agent's session.
struct Relay {
    registry: Registry,
    node: String,
    instance: u64,
    tx: ToAgentTx,
}

impl Relay {
    async fn run(
        self,
        mut incoming: Streaming<proto::AgentMessage>,
        mut settings: mpsc::Receiver<proto::SamplingSettings>,
        cancel: CancellationToken,
    ) {
        let mut ticker = PingTicker::new();
        // a session the agent closed (it is stopping) is not a loss
        let mut clean = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = self.tx.send(Err(Status::unavailable("the controller is shutting down"))).await;
                    break;
                }
                Some(s) = settings.recv() => {
                    if self.tx.send(Ok(to_agent(ToAgent::Settings(s)))).await.is_err() {
                        break;
                    }
                }
                m = incoming.message() => match m {
                    Ok(Some(m)) => self.handle_message(m).await,
                    Ok(None) => {
                        clean = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("agent {}: stream error: {e}", self.node);
                        break;
                    }
                },
                ping = ticker.tick() => {
                    if self.tx.send(Ok(to_agent(ToAgent::Ping(ping)))).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.registry
            .disconnected(self.node, self.instance, clean)
            .await;
    }

    /// Passes one message of the agent to the registry.
    async fn handle_message(&self, m: proto::AgentMessage) {
        match m.msg {
            Some(FromAgent::Telemetry(b)) => {
                self.registry
                    .telemetry(self.node.clone(), self.instance, b)
                    .await;
            }
            Some(FromAgent::Pong(p)) => {
                let t4 = mono_ns();
                let exchange = Exchange {
                    t1: p.t1_ns,
                    t2: p.t2_ns,
                    t3: p.t3_ns,
                    t4,
                };
                self.registry.pong(self.node.clone(), exchange).await;
            }
            Some(FromAgent::Register(_)) | None => {}
        }
    }
}
