//! benchctl's own health and metrics: the small HTTP server that `benchctl controller`,
//! `benchctl-agent` and `benchctl-loadgen` serve on `--metrics-addr`.
//!
//! - `GET /healthz`: 200 while the process serves HTTP at all (a liveness probe);
//! - `GET /readyz`: 200 with the process's role when it should get traffic, 503 with the reason
//!   when not (a readiness probe); each process says what ready means for it through a
//!   [`watch`] channel of [`Readiness`];
//! - `GET /metrics`: the process's metrics in the Prometheus (OpenMetrics) text format, encoded
//!   by `prometheus-client` from the metrics each process registers under `benchctl_`.
//!
//! The metrics themselves are `prometheus-client` atomics, incremented where the events happen;
//! a scrape only reads them.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
pub use prometheus_client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The paths served, for the manifests' probes and their test.
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";

/// The `Content-Type` of `/metrics` (what `prometheus-client` encodes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric's name begins with this (`benchctl_agents_connected`, …).
pub const PREFIX: &str = "benchctl";

/// `/readyz`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// 200, with the role (e.g. "leader", "standby", "connected to http://…").
    Ready(String),
    /// 503, with the reason (e.g. "etcd http://10.0.0.5:2379 unreachable: …").
    NotReady(String),
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready(_))
    }
}

/// `--metrics-addr`: where to serve, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl FromStr for MetricsAddr {
    type Err = String;

    /// `off`, `HOST:PORT` (an IP address), or `:PORT` (every interface: `0.0.0.0:PORT`).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(MetricsAddr(None));
        }
        let full = match t.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => t.to_string(),
        };
        full.parse::<SocketAddr>()
            .map(|a| MetricsAddr(Some(a)))
            .map_err(|_| {
                format!("{s:?} is not an address such as 0.0.0.0:9464 or :9464 (or \"off\")")
            })
    }
}

/// The `--metrics-addr` flag, the same in the three binaries.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve /healthz (alive), /readyz (ready for work, else 503 with the reason) and /metrics
    /// (Prometheus format) here: IP:PORT, :PORT (every interface) or "off". Off by default in
    /// every benchctl process, as several controllers, agents or workers may share a host;
    /// Kubernetes pods set it (e.g. :9464).
    #[arg(
        long,
        env = "BENCHCTL_METRICS_ADDR",
        value_name = "ADDR",
        default_value = "off"
    )]
    pub metrics_addr: MetricsAddr,
}

/// A registry for one process's metrics, every name under [`PREFIX`].
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// What the server reads.
#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    ready: watch::Receiver<Readiness>,
}

/// A running health and metrics server.
pub struct OpsServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Serves on `addr` until [`OpsServer::stop`]; fails at once when `addr` cannot be bound.
    pub async fn start(
        addr: SocketAddr,
        registry: Arc<Registry>,
        ready: watch::Receiver<Readiness>,
    ) -> anyhow::Result<OpsServer> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-addr {addr}: cannot bind"))?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(HEALTHZ, get(healthz))
            .route(READYZ, get(readyz))
            .route(METRICS, get(metrics))
            .with_state(Shared { registry, ready });
        let cancel = CancellationToken::new();
        let stop = cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
        tracing::info!("health and metrics at http://{addr} (/healthz, /readyz, /metrics)");
        Ok(OpsServer { addr, cancel, task })
    }

    /// [`OpsServer::start`] when `--metrics-addr` is not `off`.
    pub async fn start_if(
        addr: MetricsAddr,
        registry: Arc<Registry>,
        ready: watch::Receiver<Readiness>,
    ) -> anyhow::Result<Option<OpsServer>> {
        match addr.0 {
            Some(a) => Ok(Some(OpsServer::start(a, registry, ready).await?)),
            None => Ok(None),
        }
    }

    /// The address served (the port chosen when it was 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving (a scrape in progress gets 1 s to finish).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        match tokio::time::timeout(Duration::from_secs(1), &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("metrics server: {e}"),
            Ok(Err(e)) => tracing::warn!("metrics server task: {e}"),
            Err(_) => self.task.abort(),
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    match &*s.ready.borrow() {
        Readiness::Ready(role) => (StatusCode::OK, format!("ready: {role}\n")),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding the metrics failed: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn the_address_is_off_an_ip_and_port_or_a_bare_port() {
        assert_eq!("off".parse(), Ok(MetricsAddr(None)));
        assert_eq!("OFF".parse(), Ok(MetricsAddr(None)));
        assert_eq!(
            ":9464".parse(),
            Ok(MetricsAddr(Some("0.0.0.0:9464".parse().unwrap())))
        );
        assert_eq!(
            "127.0.0.1:0".parse(),
            Ok(MetricsAddr(Some("127.0.0.1:0".parse().unwrap())))
        );
        for bad in ["9464", "localhost:9464", ":port", ""] {
            let e = bad.parse::<MetricsAddr>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let mut reg = registry();
        let c = Counter::<u64>::default();
        reg.register("things", "Things counted", c.clone());
        let (tx, rx) = watch::channel(Readiness::NotReady("not elected yet".into()));
        let s = OpsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(reg), rx)
            .await
            .unwrap();
        let base = format!("http://{}", s.addr());
        let get = |p: &str| reqwest::get(format!("{base}{p}"));

        let r = get(HEALTHZ).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = get(READYZ).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), "not ready: not elected yet\n");
        tx.send_replace(Readiness::Ready("leader".into()));
        let r = get(READYZ).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ready: leader\n");

        c.inc_by(3);
        let r = get(METRICS).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], METRICS_CONTENT_TYPE);
        let body = r.text().await.unwrap();
        assert!(body.contains("\nbenchctl_things_total 3\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        s.stop().await;
    }

    #[tokio::test]
    async fn a_port_taken_is_an_error_naming_the_flag() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let (_tx, rx) = watch::channel(Readiness::Ready("x".into()));
        let e = OpsServer::start(addr, Arc::new(registry()), rx)
            .await
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains(&format!("--metrics-addr {addr}")),
            "{e:#}"
        );
    }
}
