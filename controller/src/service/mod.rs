//! The controller's gRPC service: agent sessions (registration, telemetry, clock exchanges) and
//! the agent listing. State lives in the [`Registry`] task.

mod registry;
mod workers;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub use registry::Registry;
pub use workers::{JobResult, JobSpec, WorkerInfo, Workers};

use crate::clock::Exchange;
use loadgen::clock::mono_ns;

type Outgoing<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How often each peer's clock is probed (faster for the first exchanges).
const PING_EVERY: Duration = Duration::from_secs(1);
const FIRST_PINGS: usize = 8;

/// The gRPC service.
#[derive(Clone)]
pub struct ControllerService {
    registry: Registry,
    workers: Workers,
    controller_id: String,
    /// Fired on shutdown: every session ends, so peers reconnect (to a successor).
    cancel: CancellationToken,
}

impl ControllerService {
    pub fn new(registry: Registry, workers: Workers, cancel: CancellationToken) -> Self {
        let controller_id = format!("benchctl-{}-{}", std::process::id(), mono_ns());
        ControllerService {
            registry,
            workers,
            controller_id,
            cancel,
        }
    }
}

/// A running controller server.
pub struct Server {
    pub addr: std::net::SocketAddr,
    /// `http`, or `https` with mTLS.
    scheme: &'static str,
    pub registry: Registry,
    /// The load workers connected to this server.
    pub workers: Workers,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    /// Serves on `listener` until [`Server::shutdown`].
    pub fn start(listener: TcpListener, registry: Registry) -> std::io::Result<Server> {
        Self::start_with(listener, registry, None)
    }

    /// With `tls`: TLS, and a client certificate signed by its CA required of every peer.
    pub fn start_with(
        listener: TcpListener,
        registry: Registry,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> std::io::Result<Server> {
        Self::start_full(listener, registry, Workers::spawn(), tls, None)
    }

    /// Also serves the `Sweeps` service (the controller's sweep queue), when given.
    pub fn start_full(
        listener: TcpListener,
        registry: Registry,
        workers: Workers,
        tls: Option<tonic::transport::ServerTlsConfig>,
        sweeps: Option<proto::sweeps_server::SweepsServer<crate::sweep::remote::Manager>>,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let cancel = CancellationToken::new();
        let service = ControllerService::new(registry.clone(), workers.clone(), cancel.clone());
        let svc = proto::controller_server::ControllerServer::new(service);
        let stop = cancel.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| {
                std::io::Error::other(format!("--tls-cert/--tls-key/--tls-ca: {e}"))
            })?;
        }
        let task = tokio::spawn(
            builder
                .add_service(svc)
                .add_optional_service(sweeps)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                ),
        );
        Ok(Server {
            addr,
            scheme,
            registry,
            workers,
            cancel,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops serving; open sessions end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        if r.is_err() {
            // connections still open: they are closed with the task (the port is free again)
            self.task.abort();
        }
        match r {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("controller server: {e}"),
            Ok(Err(e)) => tracing::warn!("controller server task: {e}"),
            Err(_) => tracing::warn!("controller server: sessions still open after 5 s"),
        }
    }
}

#[tonic::async_trait]
impl proto::controller_server::Controller for ControllerService {
    type AgentSessionStream = Outgoing<proto::ControllerToAgent>;
    type WorkerSessionStream = Outgoing<proto::ControllerToWorker>;

    async fn agent_session(
        &self,
        request: Request<Streaming<proto::AgentMessage>>,
    ) -> Result<Response<Self::AgentSessionStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("the agent session ended before AgentRegister")
        })?;
        let Some(proto::agent_message::Msg::Register(reg)) = first.msg else {
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
        let (settings_tx, mut settings_rx) = mpsc::channel::<proto::SamplingSettings>(8);
        let resume = self.registry.register(reg, settings_tx).await;
        let (tx, rx) = mpsc::channel::<Result<proto::ControllerToAgent, Status>>(64);
        let registered = proto::AgentRegistered {
            controller_id: self.controller_id.clone(),
            resume_from_seq: resume,
        };
        let _ = tx
            .send(Ok(msg_to_agent(
                proto::controller_to_agent::Msg::Registered(registered),
            )))
            .await;

        let registry = self.registry.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            let mut ping_id = 0u64;
            let mut next_ping = tokio::time::Instant::now();
            // a session the agent closed (it is stopping) is not a loss
            let mut clean = false;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the controller is shutting down"))).await;
                        break;
                    }
                    Some(settings) = settings_rx.recv() => {
                        if tx.send(Ok(msg_to_agent(proto::controller_to_agent::Msg::Settings(settings)))).await.is_err() {
                            break;
                        }
                    }
                    m = incoming.message() => match m {
                        Ok(Some(m)) => match m.msg {
                            Some(proto::agent_message::Msg::Telemetry(b)) => registry.telemetry(node.clone(), instance, b).await,
                            Some(proto::agent_message::Msg::Pong(p)) => {
                                let t4 = mono_ns();
                                registry.pong(node.clone(), Exchange { t1: p.t1_ns, t2: p.t2_ns, t3: p.t3_ns, t4 }).await;
                            }
                            Some(proto::agent_message::Msg::Register(_)) | None => {}
                        },
                        Ok(None) => {
                            clean = true;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!("agent {node}: stream error: {e}");
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(next_ping) => {
                        ping_id += 1;
                        let ping = proto::ClockPing { ping_id, t1_ns: mono_ns() };
                        if tx.send(Ok(msg_to_agent(proto::controller_to_agent::Msg::Ping(ping)))).await.is_err() {
                            break;
                        }
                        let every = if (ping_id as usize) < FIRST_PINGS { PING_EVERY / 10 } else { PING_EVERY };
                        next_ping += every;
                    }
                }
            }
            registry.disconnected(node, instance, clean).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn worker_session(
        &self,
        request: Request<Streaming<proto::WorkerMessage>>,
    ) -> Result<Response<Self::WorkerSessionStream>, Status> {
        let outgoing = self
            .workers
            .session(self.controller_id.clone(), request.into_inner())
            .await?;
        // on shutdown the stream ends, so the worker reconnects (to a successor, or to this
        // controller's next term); the session's task then sees the stream dropped
        use futures_util::StreamExt;
        let outgoing = outgoing.take_until(self.cancel.clone().cancelled_owned());
        Ok(Response::new(Box::pin(outgoing)))
    }

    async fn list_agents(
        &self,
        _r: Request<proto::ListAgentsRequest>,
    ) -> Result<Response<proto::ListAgentsResponse>, Status> {
        Ok(Response::new(proto::ListAgentsResponse {
            agents: self.registry.list().await,
        }))
    }

    async fn list_workers(
        &self,
        _r: Request<proto::ListWorkersRequest>,
    ) -> Result<Response<proto::ListWorkersResponse>, Status> {
        let mut workers: Vec<proto::WorkerStatus> = self
            .workers
            .list()
            .await
            .into_iter()
            .map(|w| proto::WorkerStatus {
                name: w.name,
                max_streams: w.max_streams,
                clock_offset_ns: w.clock.offset_ns,
            })
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(proto::ListWorkersResponse { workers }))
    }

    async fn set_sampling(
        &self,
        r: Request<proto::SetSamplingRequest>,
    ) -> Result<Response<proto::SetSamplingResponse>, Status> {
        let r = r.into_inner();
        let settings = r
            .settings
            .ok_or_else(|| Status::invalid_argument("SetSamplingRequest.settings is missing"))?;
        if settings.interval_ms != 0 && settings.interval_ms < 10 {
            return Err(Status::invalid_argument(format!(
                "interval_ms {} is below the agents' minimum of 10 ms",
                settings.interval_ms
            )));
        }
        let agents = self.registry.set_sampling(&r.node_name, settings).await;
        Ok(Response::new(proto::SetSamplingResponse { agents }))
    }
}

fn msg_to_agent(m: proto::controller_to_agent::Msg) -> proto::ControllerToAgent {
    proto::ControllerToAgent { msg: Some(m) }
}
