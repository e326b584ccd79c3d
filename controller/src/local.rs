//! Local mode: the controller service, one load worker (or `--workers N`) and (with `--gpu-num`/`--gpus`) one
//! telemetry agent in this process, talking through the same gRPC services as in distributed
//! mode over loopback, so the one-machine tool is the distributed system with one node.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::service::{JobResult, JobSpec, Server, ServerOptions};
use crate::telemetry::NodeWindow;

// what to monitor is said in the agent's own types
pub use agent::{GpuSelection, SourceKind};

/// What to monitor in local mode.
#[derive(Clone, Debug)]
pub struct TelemetrySpec {
    pub gpus: GpuSelection,
    pub source: SourceKind,
    pub interval: Duration,
}

type Task = tokio::task::JoinHandle<anyhow::Result<()>>;

/// The in-process system.
pub struct LocalSystem {
    pub server: Server,
    workers: Vec<Task>,
    agent: Option<Task>,
    cancel: CancellationToken,
}

impl LocalSystem {
    /// Starts everything and waits until the worker (and the agent, with its first sample) have
    /// registered. No NVIDIA driver (with the NVML source) is an error here, before any load.
    pub async fn start(
        telemetry: Option<TelemetrySpec>,
        n_workers: u32,
    ) -> anyhow::Result<LocalSystem> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the local controller")?;
        let server = Server::start(listener, ServerOptions::default())?;
        let cancel = CancellationToken::new();
        let agent = match telemetry {
            Some(t) => match start_agent(&server, t, &cancel).await {
                Ok(a) => Some(a),
                Err(e) => {
                    cancel.cancel();
                    server.shutdown().await;
                    return Err(e);
                }
            },
            None => None,
        };
        // each worker carries any share in local mode
        let workers: Vec<Task> = (0..n_workers.max(1))
            .map(|k| {
                let name = if n_workers <= 1 {
                    format!("local-{}", local_node_name())
                } else {
                    format!("local-{}-{k}", local_node_name())
                };
                let cfg = loadgen::worker::WorkerConfig {
                    status: Default::default(),
                    controller: server.url(),
                    name,
                    max_streams: 1_000_000,
                    etcd: None,
                    tls: None,
                };
                tokio::spawn(loadgen::worker::run_worker(cfg, cancel.clone()))
            })
            .collect();
        if let Err(e) = server
            .workers
            .wait_for(workers.len(), Duration::from_secs(20))
            .await
        {
            cancel.cancel();
            server.shutdown().await;
            return Err(e.context("the local load workers did not register"));
        }
        Ok(LocalSystem {
            server,
            workers,
            agent,
            cancel,
        })
    }

    /// Runs one test on the local worker, through the controller.
    pub async fn run_job(&self, job: JobSpec) -> anyhow::Result<JobResult> {
        self.server.workers.run_job(job).await
    }

    pub async fn cancel_job(&self) {
        self.server.workers.cancel_all().await;
    }

    /// Telemetry over `[from_ns, to_ns]` of this process's monotonic clock.
    pub async fn window(&self, from_ns: u64, to_ns: u64) -> Vec<NodeWindow> {
        self.server.registry.window(from_ns, to_ns, None).await
    }

    pub fn has_telemetry(&self) -> bool {
        self.agent.is_some()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        for w in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
        if let Some(a) = self.agent {
            let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
        }
        self.server.shutdown().await;
    }
}

/// Starts the in-process agent and waits for its first sample.
async fn start_agent(
    server: &Server,
    t: TelemetrySpec,
    cancel: &CancellationToken,
) -> anyhow::Result<Task> {
    let cfg = agent::AgentConfig::in_process(
        server.url(),
        local_node_name(),
        t.source,
        t.gpus,
        t.interval,
    );
    let mut agent = tokio::spawn(agent::run(cfg, cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let agents = server.registry.list().await;
        if agents
            .iter()
            .any(|a| a.connected && !a.last_samples.is_empty())
        {
            return Ok(agent);
        }
        if agent.is_finished() {
            return match (&mut agent).await {
                Ok(Err(e)) => Err(e.context("GPU telemetry (--gpu-num/--gpus) cannot start")),
                Ok(Ok(())) => Err(anyhow::anyhow!(
                    "the telemetry agent stopped before registering"
                )),
                Err(e) => Err(anyhow::anyhow!("the telemetry agent failed: {e}")),
            };
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the local telemetry agent did not register within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn local_node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
