//! The controller's gRPC service: agent sessions (registration, telemetry, clock exchanges),
//! load worker sessions and jobs, and the listings. State lives in the [`Registry`] and
//! [`Workers`] tasks.

mod agent_session;
mod job_result;
mod job_spec;
mod jobs;
mod mailbox;
mod ping;
mod pool;
mod registry;
mod worker_session;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status, Streaming};

pub use job_result::JobResult;
pub use job_spec::{BeforeStart, JobSpec};
pub use pool::{WorkerInfo, Workers};
pub use registry::Registry;

use loadgen::clock::mono_ns;

type Outgoing<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

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

/// What a [`Server`] serves and how; the default: fresh state, plain HTTP, no sweep queue.
#[derive(Default)]
pub struct ServerOptions {
    /// The agents' state (`None`: a fresh [`Registry`]).
    pub registry: Option<Registry>,
    /// The load workers' pool (`None`: a fresh [`Workers`]).
    pub workers: Option<Workers>,
    /// TLS, and a client certificate signed by its CA required of every peer.
    pub tls: Option<ServerTlsConfig>,
    /// Further gRPC services served beside the controller's (the `Sweeps` queue of
    /// `benchctl controller`).
    pub extra: Option<tonic::service::Routes>,
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
    pub fn start(listener: TcpListener, options: ServerOptions) -> std::io::Result<Server> {
        let ServerOptions {
            registry,
            workers,
            tls,
            extra,
        } = options;
        let registry = registry.unwrap_or_else(Registry::spawn);
        let workers = workers.unwrap_or_else(Workers::spawn);
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let cancel = CancellationToken::new();
        let service = ControllerService::new(registry.clone(), workers.clone(), cancel.clone());
        let svc = proto::controller_server::ControllerServer::new(service)
            .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(proto::MAX_MESSAGE_BYTES);
        let stop = cancel.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| {
                std::io::Error::other(format!("--tls-cert/--tls-key/--tls-ca: {e}"))
            })?;
        }
        let routes = match extra {
            Some(r) => r.add_service(svc),
            None => tonic::service::Routes::new(svc),
        };
        let task = tokio::spawn(builder.add_routes(routes).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop.cancelled_owned(),
        ));
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
        let outgoing = agent_session::open(
            &self.registry,
            self.controller_id.clone(),
            self.cancel.clone(),
            request.into_inner(),
        )
        .await?;
        Ok(Response::new(Box::pin(outgoing)))
    }

    async fn worker_session(
        &self,
        request: Request<Streaming<proto::WorkerMessage>>,
    ) -> Result<Response<Self::WorkerSessionStream>, Status> {
        let outgoing = worker_session::open(
            &self.workers,
            self.controller_id.clone(),
            request.into_inner(),
        )
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
