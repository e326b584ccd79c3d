//! The controller's state about its peers, owned by one task; everyone else holds a
//! [`Registry`] handle (a bounded channel) and gets answers on oneshots.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::clock::{ClockEstimator, Exchange, Offset};
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
    tx: mpsc::Sender<Command>,
}

impl Registry {
    /// Spawns the owner task; it ends when every handle is dropped.
    pub fn spawn() -> Registry {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(rx));
        Registry { tx }
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(f(reply)).await.ok()?;
        rx.await.ok()
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
        let _ = self
            .tx
            .send(Command::Telemetry {
                node,
                instance_id,
                batch,
            })
            .await;
    }

    pub async fn pong(&self, node: String, exchange: Exchange) {
        let _ = self.tx.send(Command::Pong { node, exchange }).await;
    }

    pub async fn disconnected(&self, node: String, instance_id: u64, clean: bool) {
        let _ = self
            .tx
            .send(Command::Disconnected {
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

async fn run(mut rx: mpsc::Receiver<Command>) {
    let mut agents: HashMap<String, AgentEntry> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::SetSampling {
                node,
                settings,
                reply,
            } => {
                let mut sent = 0;
                for a in agents
                    .values()
                    .filter(|a| a.connected && (node.is_empty() || a.register.node_name == node))
                {
                    if let Some(tx) = &a.settings {
                        sent += u32::from(tx.try_send(settings).is_ok());
                    }
                }
                let _ = reply.send(sent);
            }
            Command::Register {
                reg,
                settings,
                reply,
            } => {
                let node = reg.node_name.clone();
                let resume = match agents.get_mut(&node) {
                    // the same agent process again: resume after what we have
                    Some(a) if a.register.instance_id == reg.instance_id => {
                        let want = a.last_seq.map_or(reg.oldest_buffered_seq, |s| s + 1);
                        if want < reg.oldest_buffered_seq {
                            a.gaps += reg.oldest_buffered_seq - want;
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
                        agents.remove(&node);
                        let clock = ClockEstimator::for_peer(&reg.boot_id);
                        agents.insert(
                            node,
                            AgentEntry {
                                register: reg,
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
                            },
                        );
                        from
                    }
                };
                let _ = reply.send(resume);
            }
            Command::Telemetry {
                node,
                instance_id,
                batch,
            } => {
                let Some(a) = agents
                    .get_mut(&node)
                    .filter(|a| a.register.instance_id == instance_id)
                else {
                    continue;
                };
                a.last_seen = Instant::now();
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
            }
            Command::Pong { node, exchange } => {
                if let Some(a) = agents.get_mut(&node) {
                    a.clock.add(exchange);
                    a.last_seen = Instant::now();
                }
            }
            Command::Disconnected {
                node,
                instance_id,
                clean,
            } => {
                if let Some(a) = agents
                    .get_mut(&node)
                    .filter(|a| a.register.instance_id == instance_id)
                {
                    a.connected = false;
                    a.settings = None;
                    if clean {
                        tracing::info!("agent {node} closed its session");
                    } else {
                        tracing::warn!("agent {node} disconnected");
                    }
                }
            }
            Command::List { reply } => {
                let mut out: Vec<proto::AgentStatus> = agents
                    .values()
                    .map(|a| {
                        let o = a.clock.estimate();
                        let mut last: Vec<proto::GpuSample> =
                            a.last_by_gpu.values().cloned().collect();
                        last.sort_by_key(|s| s.gpu_index);
                        if let Some(o) = o {
                            last.iter_mut()
                                .for_each(|s| s.t_ns = o.to_controller(s.t_ns));
                        }
                        proto::AgentStatus {
                            node_name: a.register.node_name.clone(),
                            agent_version: a.register.agent_version.clone(),
                            simulated: a.register.simulated,
                            connected: a.connected,
                            gpus: a.register.gpus.clone(),
                            last_samples: last,
                            clock_offset_ns: o.map_or(0, |o| o.offset_ns),
                            clock_uncertainty_ns: o.map_or(u64::MAX, |o| o.uncertainty_ns),
                            samples_received: a.samples_received,
                            dropped_samples: a.dropped_samples + a.gaps,
                            idle_s: a.last_seen.elapsed().as_secs_f64(),
                        }
                    })
                    .collect();
                out.sort_by(|a, b| a.node_name.cmp(&b.node_name));
                let _ = reply.send(out);
            }
            Command::Window {
                from_ns,
                to_ns,
                gpus,
                reply,
            } => {
                let mut out: Vec<NodeWindow> = agents
                    .values()
                    .map(|a| {
                        let o = a.clock.estimate().unwrap_or(Offset {
                            offset_ns: 0,
                            uncertainty_ns: u64::MAX,
                            samples: 0,
                        });
                        a.series.window(
                            &a.register.node_name,
                            a.register.simulated,
                            o,
                            from_ns,
                            to_ns,
                            gpus.as_deref(),
                        )
                    })
                    .collect();
                out.sort_by(|a, b| a.node.cmp(&b.node));
                let _ = reply.send(out);
            }
            Command::Offset { node, reply } => {
                let _ = reply.send(agents.get(&node).and_then(|a| a.clock.estimate()));
            }
        }
    }
}
