//! The controller's state about its peers, owned by one task; everyone else holds a
//! [`Registry`] handle (a bounded channel) and gets answers on oneshots.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::mailbox::Mailbox;
use crate::clock::{ClockEstimator, Exchange, Offset};
use crate::self_metrics::{ControllerMetrics, PeerKind};
use crate::telemetry::{NodeSeries, NodeWindow, Sample};

/// What the controller knows of one agent (one node).
struct AgentEntry {
    register: proto::AgentRegister,
    connected: bool,
    clock: ClockEstimator,
    series: NodeSeries,
    /// Highest seq received from the current instance.
    last_seq: Option<u64>,
    samples_received: u64,
    dropped_samples: u64,
    /// Samples missing from the sequence (gaps the agent could not replay).
    gaps: u64,
    last_seen: Instant,
    last_by_gpu: HashMap<u32, proto::GpuSample>,
    /// The session's channel for sampling settings (while connected).
    settings: Option<mpsc::Sender<proto::SamplingSettings>>,
}

enum Command {
    Register {
        reg: proto::AgentRegister,
        settings: mpsc::Sender<proto::SamplingSettings>,
        reply: oneshot::Sender<u64>,
    },
    SetSampling {
        node: String,
        settings: proto::SamplingSettings,
        reply: oneshot::Sender<u32>,
    },
    Telemetry {
        node: String,
        instance_id: u64,
        batch: proto::TelemetryBatch,
    },
    Pong {
        node: String,
        exchange: Exchange,
    },
    Disconnected {
        node: String,
        instance_id: u64,
        /// The agent ended its stream (it is stopping), rather than the connection breaking.
        clean: bool,
    },
    List {
        reply: oneshot::Sender<Vec<proto::AgentStatus>>,
    },
    Window {
        from_ns: u64,
        to_ns: u64,
        gpus: Option<Vec<u32>>,
        reply: oneshot::Sender<Vec<NodeWindow>>,
    },
    Offset {
        node: String,
        reply: oneshot::Sender<Option<Offset>>,
    },
}

/// A handle on the registry task.
#[derive(Clone)]
pub struct Registry {
    mailbox: Mailbox<Command>,
}

impl Registry {
    /// Spawns the owner task; it ends when every handle is dropped.
    pub fn spawn() -> Registry {
        Registry::spawn_with(ControllerMetrics::default())
    }

    /// [`Registry::spawn`], counting into `metrics` (agents connected, their clocks, samples).
    pub fn spawn_with(metrics: ControllerMetrics) -> Registry {
        Registry {
            mailbox: Mailbox::spawn(|rx| run(rx, metrics)),
        }
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        self.mailbox.ask(f).await
    }

    /// Registers (or re-registers) an agent; returns the seq it should resume from.
    /// `settings` reaches the agent's session, for [`Registry::set_sampling`].
    pub async fn register(
        &self,
        reg: proto::AgentRegister,
        settings: mpsc::Sender<proto::SamplingSettings>,
    ) -> u64 {
        let fallback = reg.oldest_buffered_seq;
        self.ask(|reply| Command::Register {
            reg,
            settings,
            reply,
        })
        .await
        .unwrap_or(fallback)
    }

    /// Sends sampling settings to the connected agent on `node` ("" for all); returns how many.
    pub async fn set_sampling(&self, node: &str, settings: proto::SamplingSettings) -> u32 {
        let node = node.to_string();
        self.ask(|reply| Command::SetSampling {
            node,
            settings,
            reply,
        })
        .await
        .unwrap_or(0)
    }

    pub async fn telemetry(&self, node: String, instance_id: u64, batch: proto::TelemetryBatch) {
        self.mailbox
            .tell(Command::Telemetry {
                node,
                instance_id,
                batch,
            })
            .await;
    }

    pub async fn pong(&self, node: String, exchange: Exchange) {
        self.mailbox.tell(Command::Pong { node, exchange }).await;
    }

    pub async fn disconnected(&self, node: String, instance_id: u64, clean: bool) {
        self.mailbox
            .tell(Command::Disconnected {
                node,
                instance_id,
                clean,
            })
            .await;
    }

    pub async fn list(&self) -> Vec<proto::AgentStatus> {
        self.ask(|reply| Command::List { reply })
            .await
            .unwrap_or_default()
    }

    /// Telemetry of every node over `[from_ns, to_ns]` of the controller's clock.
    pub async fn window(
        &self,
        from_ns: u64,
        to_ns: u64,
        gpus: Option<Vec<u32>>,
    ) -> Vec<NodeWindow> {
        self.ask(|reply| Command::Window {
            from_ns,
            to_ns,
            gpus,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    pub async fn offset(&self, node: &str) -> Option<Offset> {
        self.ask(|reply| Command::Offset {
            node: node.to_string(),
            reply,
        })
        .await
        .flatten()
    }
}

async fn run(mut rx: mpsc::Receiver<Command>, metrics: ControllerMetrics) {
    let mut agents = Agents {
        agents: HashMap::new(),
        metrics,
    };
    while let Some(cmd) = rx.recv().await {
        agents.handle(cmd);
    }
    // the term is over: no agent is connected to it any more
    agents.metrics.agents_connected.set(0);
}

/// The owner task's state: every agent seen, by node name.
struct Agents {
    agents: HashMap<String, AgentEntry>,
    metrics: ControllerMetrics,
}

impl Agents {
    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::SetSampling {
                node,
                settings,
                reply,
            } => {
                let _ = reply.send(self.set_sampling(&node, settings));
            }
            Command::Register {
                reg,
                settings,
                reply,
            } => {
                let _ = reply.send(self.register(reg, settings));
                self.count_connected();
            }
            Command::Telemetry {
                node,
                instance_id,
                batch,
            } => self.telemetry(&node, instance_id, batch),
            Command::Pong { node, exchange } => {
                if let Some(a) = self.agents.get_mut(&node) {
                    a.clock.add(exchange);
                    a.last_seen = Instant::now();
                    self.metrics
                        .clock(PeerKind::Agent, &node, a.clock.estimate());
                }
            }
            Command::Disconnected {
                node,
                instance_id,
                clean,
            } => {
                self.disconnected(&node, instance_id, clean);
                self.count_connected();
            }
            Command::List { reply } => {
                let mut out: Vec<proto::AgentStatus> =
                    self.agents.values().map(AgentEntry::status).collect();
                out.sort_by(|a, b| a.node_name.cmp(&b.node_name));
                let _ = reply.send(out);
            }
            Command::Window {
                from_ns,
                to_ns,
                gpus,
                reply,
            } => {
                let mut out: Vec<NodeWindow> = self
                    .agents
                    .values()
                    .map(|a| a.window(from_ns, to_ns, gpus.as_deref()))
                    .collect();
                out.sort_by(|a, b| a.node.cmp(&b.node));
                let _ = reply.send(out);
            }
            Command::Offset { node, reply } => {
                let _ = reply.send(self.agents.get(&node).and_then(|a| a.clock.estimate()));
            }
        }
    }

    fn count_connected(&self) {
        let n = self.agents.values().filter(|a| a.connected).count();
        self.metrics.agents_connected.set(n as i64);
    }

    /// Sends `settings` to the connected agents on `node` ("" for all); returns how many.
    fn set_sampling(&self, node: &str, settings: proto::SamplingSettings) -> u32 {
        let mut sent = 0;
        for a in self
            .agents
            .values()
            .filter(|a| a.connected && (node.is_empty() || a.register.node_name == node))
        {
            if let Some(tx) = &a.settings {
                sent += u32::from(tx.try_send(settings).is_ok());
            }
        }
        sent
    }

    /// Registers an agent; returns the seq it should resume from.
    fn register(
        &mut self,
        reg: proto::AgentRegister,
        settings: mpsc::Sender<proto::SamplingSettings>,
    ) -> u64 {
        let node = reg.node_name.clone();
        match self.agents.get_mut(&node) {
            // the same agent process again: resume after what we have
            Some(a) if a.register.instance_id == reg.instance_id => {
                let want = a.last_seq.map_or(reg.oldest_buffered_seq, |s| s + 1);
                if want < reg.oldest_buffered_seq {
                    a.gaps += reg.oldest_buffered_seq - want;
                    self.metrics
                        .samples_dropped
                        .inc_by(reg.oldest_buffered_seq - want);
                }
                a.register = reg;
                a.connected = true;
                a.settings = Some(settings);
                a.last_seen = Instant::now();
                want
            }
            _ => {
                // a new agent, or a restarted one (its seq starts again): take all it has
                let from = reg.oldest_buffered_seq;
                tracing::info!(
                    "agent {node} registered: {} GPUs{}",
                    reg.gpus.len(),
                    if reg.simulated {
                        " (SIMULATED source)"
                    } else {
                        ""
                    }
                );
                self.agents.remove(&node);
                self.agents.insert(node, AgentEntry::new(reg, settings));
                from
            }
        }
    }

    fn telemetry(&mut self, node: &str, instance_id: u64, batch: proto::TelemetryBatch) {
        let Some(a) = self
            .agents
            .get_mut(node)
            .filter(|a| a.register.instance_id == instance_id)
        else {
            return;
        };
        a.last_seen = Instant::now();
        let lost_before = a.dropped_samples + a.gaps;
        let received_before = a.samples_received;
        a.dropped_samples = a.dropped_samples.max(batch.dropped_samples);
        for s in batch.samples {
            if a.last_seq.is_some_and(|l| s.seq <= l) {
                continue; // already have it
            }
            if let Some(l) = a.last_seq {
                a.gaps += s.seq - l - 1;
            }
            a.last_seq = Some(s.seq);
            a.samples_received += 1;
            a.series.push(Sample::from(&s));
            a.last_by_gpu.insert(s.gpu_index, s);
        }
        self.metrics
            .samples_received
            .inc_by(a.samples_received - received_before);
        self.metrics
            .samples_dropped
            .inc_by((a.dropped_samples + a.gaps).saturating_sub(lost_before));
    }

    fn disconnected(&mut self, node: &str, instance_id: u64, clean: bool) {
        if let Some(a) = self
            .agents
            .get_mut(node)
            .filter(|a| a.register.instance_id == instance_id)
        {
            a.connected = false;
            a.settings = None;
            self.metrics.peer_gone(PeerKind::Agent, node);
            if clean {
                tracing::info!("agent {node} closed its session");
            } else {
                tracing::warn!("agent {node} disconnected");
            }
        }
    }
}

impl AgentEntry {
    fn new(
        register: proto::AgentRegister,
        settings: mpsc::Sender<proto::SamplingSettings>,
    ) -> Self {
        let clock = ClockEstimator::for_peer(&register.boot_id);
        AgentEntry {
            register,
            connected: true,
            clock,
            series: NodeSeries::default(),
            last_seq: None,
            samples_received: 0,
            dropped_samples: 0,
            gaps: 0,
            last_seen: Instant::now(),
            last_by_gpu: HashMap::new(),
            settings: Some(settings),
        }
    }

    /// Its line of the agent listing, its last samples on the controller's clock.
    fn status(&self) -> proto::AgentStatus {
        let o = self.clock.estimate();
        let mut last: Vec<proto::GpuSample> = self.last_by_gpu.values().cloned().collect();
        last.sort_by_key(|s| s.gpu_index);
        if let Some(o) = o {
            last.iter_mut()
                .for_each(|s| s.t_ns = o.to_controller(s.t_ns));
        }
        proto::AgentStatus {
            node_name: self.register.node_name.clone(),
            agent_version: self.register.agent_version.clone(),
            simulated: self.register.simulated,
            connected: self.connected,
            gpus: self.register.gpus.clone(),
            last_samples: last,
            clock_offset_ns: o.map_or(0, |o| o.offset_ns),
            clock_uncertainty_ns: o.map_or(u64::MAX, |o| o.uncertainty_ns),
            samples_received: self.samples_received,
            dropped_samples: self.dropped_samples + self.gaps,
            idle_s: self.last_seen.elapsed().as_secs_f64(),
        }
    }

    /// Its telemetry over `[from_ns, to_ns]` of the controller's clock (with no clock estimate
    /// yet: unshifted, of unbounded uncertainty).
    fn window(&self, from_ns: u64, to_ns: u64, gpus: Option<&[u32]>) -> NodeWindow {
        let o = self.clock.estimate().unwrap_or(Offset {
            offset_ns: 0,
            uncertainty_ns: u64::MAX,
            samples: 0,
        });
        self.series.window(
            &self.register.node_name,
            self.register.simulated,
            o,
            from_ns,
            to_ns,
            gpus,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[u64], dropped: u64) -> proto::TelemetryBatch {
        proto::TelemetryBatch {
            samples: seqs
                .iter()
                .map(|&seq| proto::GpuSample {
                    seq,
                    ..Default::default()
                })
                .collect(),
            dropped_samples: dropped,
        }
    }

    /// The controller's metrics count each new sample once, and each one lost (the agent's own
    /// drops, a gap in the sequence) once; the connected count follows the session.
    #[tokio::test]
    async fn samples_received_and_lost_are_counted_once() {
        let metrics = ControllerMetrics::default();
        let registry = Registry::spawn_with(metrics.clone());
        let reg = proto::AgentRegister {
            node_name: "n1".into(),
            instance_id: 7,
            ..Default::default()
        };
        let (tx, _rx) = mpsc::channel(1);
        registry.register(reg, tx).await;
        assert_eq!(metrics.agents_connected.get(), 1);
        registry
            .telemetry("n1".into(), 7, batch(&[0, 1, 2], 0))
            .await;
        // a replay of 2, then 5 after a gap of 3 and 4; the agent says it dropped 1 sample
        registry.telemetry("n1".into(), 7, batch(&[2, 5], 1)).await;
        // another instance's batch is not this agent's
        registry.telemetry("n1".into(), 8, batch(&[9], 0)).await;
        registry.disconnected("n1".into(), 7, false).await;
        registry.list().await; // every message before this one is handled
        assert_eq!(metrics.samples_received.get(), 4);
        assert_eq!(metrics.samples_dropped.get(), 3);
        assert_eq!(metrics.agents_connected.get(), 0);
    }
}
