//! Local mode: the controller service and a telemetry agent in this process, talking through
//! the same gRPC services as in distributed mode (over loopback), so the one-machine tool is the
//! distributed system with one node.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::service::{Registry, Server};
use crate::telemetry::NodeWindow;

pub use agent::SourceKind;

/// Which GPUs of this machine to monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuSelection {
    /// The first N (the seed's `--gpu-num`).
    First(u32),
    /// These NVML indices.
    Indices(Vec<u32>),
}

/// An in-process controller with an in-process agent connected to it.
pub struct LocalTelemetry {
    pub server: Server,
    agent: tokio::task::JoinHandle<anyhow::Result<()>>,
    cancel: CancellationToken,
    pub simulated: bool,
}

impl LocalTelemetry {
    /// Starts both and waits until the agent has registered and sent a first sample. No NVIDIA
    /// driver (with the NVML source) is an error here, before any load is sent.
    pub async fn start(
        gpus: GpuSelection,
        source: SourceKind,
        interval: Duration,
    ) -> anyhow::Result<LocalTelemetry> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the local controller")?;
        let server = Server::start(listener, Registry::spawn())?;
        let (gpu_num, indices) = match &gpus {
            GpuSelection::First(n) => (*n as usize, None),
            GpuSelection::Indices(v) => (v.len(), Some(v.clone())),
        };
        let mut cfg = agent::AgentConfig::for_test(server.url(), source, gpu_num, interval, 0);
        cfg.node_name = Some(local_node_name());
        if let Some(v) = indices {
            cfg.gpus = Some(v);
            cfg.gpu_num = None;
        }
        let cancel = CancellationToken::new();
        let mut agent = tokio::spawn(agent::run(cfg, cancel.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let agents = server.registry.list().await;
            if agents
                .iter()
                .any(|a| a.connected && !a.last_samples.is_empty())
            {
                break;
            }
            if agent.is_finished() {
                let r = (&mut agent).await;
                server.shutdown().await;
                match r {
                    Ok(Err(e)) => {
                        return Err(e.context("GPU telemetry (--gpu-num/--gpus) cannot start"));
                    }
                    Ok(Ok(())) => bail!("the telemetry agent stopped before registering"),
                    Err(e) => bail!("the telemetry agent failed: {e}"),
                }
            }
            if tokio::time::Instant::now() > deadline {
                cancel.cancel();
                server.shutdown().await;
                bail!("the local telemetry agent did not register within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(LocalTelemetry {
            server,
            agent,
            cancel,
            simulated: source == SourceKind::Simulated,
        })
    }

    /// Telemetry over `[from_ns, to_ns]` of this process's monotonic clock.
    pub async fn window(&self, from_ns: u64, to_ns: u64) -> Vec<NodeWindow> {
        self.server.registry.window(from_ns, to_ns, None).await
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.agent).await;
        self.server.shutdown().await;
    }
}

fn local_node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
