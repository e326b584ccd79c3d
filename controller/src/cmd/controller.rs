//! `benchctl controller`: the service (gRPC for agents and load workers, the sweep queue, the
//! dashboard), elected through etcd in the distributed mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ops::{OpsServer, Readiness};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::self_metrics::ControllerMetrics;
use crate::service::{Registry, Server, ServerOptions, Workers};
use crate::sweep::remote::Manager;

/// How often `/readyz`'s etcd probe runs (and at each change of role).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// `benchctl controller`.
#[derive(Clone, Debug, Args)]
pub struct ControllerArgs {
    /// Address to serve gRPC on (agents and load workers dial it).
    #[arg(long, env = "BENCHCTL_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Serve the web dashboard of the sweeps under --result-dir here ("off": none).
    #[arg(
        long,
        env = "BENCHCTL_DASHBOARD_ADDR",
        default_value = "127.0.0.1:8501"
    )]
    pub dashboard_addr: String,
    /// Bearer token of the dashboard, required when it listens beyond loopback; never logged.
    #[arg(long, env = "BENCHCTL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// The sweeps' result directories are made under this folder (the dashboard shows them).
    /// Controllers that stand in for each other share it (a ReadWriteMany volume), so that a
    /// new leader resumes a sweep from its files.
    #[arg(
        long,
        env = "BENCHCTL_DATA_DIR",
        alias = "result-dir",
        default_value = "bench_logs"
    )]
    pub data_dir: std::path::PathBuf,
    /// Distributed mode: campaign for leadership in etcd and serve only while elected; agents
    /// and workers started with the same --etcd follow the leader.
    #[command(flatten)]
    pub etcd: cluster::EtcdArgs,
    /// The gRPC URL peers dial, published in etcd when elected [default: http://<--listen>].
    #[arg(long, env = "BENCHCTL_ADVERTISE")]
    pub advertise: Option<String>,
    /// How long a crashed leader keeps its leadership in etcd (a standby's takeover time):
    /// whole seconds, 1s to 10m (e.g. 5s; a bare number is seconds).
    #[arg(long, env = "BENCHCTL_LEASE_TTL", default_value = "5s", value_parser = parse_lease_ttl)]
    pub lease_ttl: i64,
    /// mTLS: serve TLS and refuse every peer without a certificate signed by --tls-ca.
    #[command(flatten)]
    pub tls: cluster::TlsArgs,
    /// Health and metrics: /healthz (the process is up), /readyz (elected leader or standby,
    /// and etcd answering; 503 with the reason otherwise), /metrics.
    #[command(flatten)]
    pub metrics: ops::MetricsArgs,
}

/// `--lease-ttl`: etcd leases are whole seconds.
fn parse_lease_ttl(s: &str) -> Result<i64, String> {
    let d = cluster::duration::parse(s)?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !(1..=600).contains(&secs) {
        return Err(format!(
            "{s:?}: a lease is a whole number of seconds from 1s to 10m"
        ));
    }
    Ok(secs as i64)
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(args: ControllerArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(cluster::cancel_on_signal(
        cancel.clone(),
        "stopping: the leadership is given up, the sweep in flight is left to the next leader",
    ));
    serve_until(args, cancel).await
}

/// This controller's part, for `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Starting,
    /// Campaigning: it takes over when the leader goes.
    Standby,
    Leader,
}

/// The process's health and metrics: what the terms update.
struct Ops {
    metrics: ControllerMetrics,
    role: watch::Sender<Role>,
}

impl Ops {
    fn set_role(&self, role: Role) {
        self.role.send_replace(role);
    }
}

/// Serves until `cancel` fires. With `--etcd`: campaigns, serves while elected, and campaigns
/// again when the leadership is lost (a deposed leader stops serving at once). With
/// `--metrics-addr`: serves the health and metrics endpoints meanwhile, standby or leader.
pub async fn serve_until(args: ControllerArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    let metrics = ControllerMetrics::default();
    let mut registry = ops::registry();
    metrics.register(&mut registry);
    let (role, role_rx) = watch::channel(Role::Starting);
    let (ready, ready_rx) = watch::channel(Readiness::NotReady("starting".into()));
    let server =
        OpsServer::start_if(args.metrics.metrics_addr, Arc::new(registry), ready_rx).await?;
    let probe_stop = cancel.child_token();
    let probe = server.is_some().then(|| {
        tokio::spawn(readiness(
            args.etcd.clone(),
            role_rx,
            ready,
            metrics.clone(),
            probe_stop.clone(),
        ))
    });
    let r = terms(&args, &cancel, &Ops { metrics, role }).await;
    probe_stop.cancel();
    if let Some(p) = probe {
        let _ = p.await;
    }
    if let Some(s) = server {
        s.stop().await;
    }
    r
}

/// Keeps `/readyz`'s answer: ready as the leader or as a standby, while etcd answers (probed
/// every [`PROBE_EVERY`] and at each change of role; a failed probe counts as an etcd error).
async fn readiness(
    etcd: cluster::EtcdArgs,
    mut role: watch::Receiver<Role>,
    ready: watch::Sender<Readiness>,
    metrics: ControllerMetrics,
    stop: CancellationToken,
) {
    let mut probe = etcd
        .enabled()
        .then(|| cluster::EtcdProbe::new(etcd.clone()));
    loop {
        let reachable = match &mut probe {
            Some(p) => p.check().await.map_err(|e| {
                metrics.etcd_errors.inc();
                format!("etcd {} does not answer: {e:#}", etcd.endpoints.join(","))
            }),
            None => Ok(()),
        };
        let now = *role.borrow_and_update();
        let answer = match (now, reachable) {
            (_, Err(why)) => Readiness::NotReady(why),
            (Role::Starting, Ok(())) => Readiness::NotReady("starting".into()),
            (Role::Standby, Ok(())) => {
                Readiness::Ready("standby (campaigning; etcd answers)".into())
            }
            (Role::Leader, Ok(())) if probe.is_some() => {
                Readiness::Ready("leader (etcd answers)".into())
            }
            (Role::Leader, Ok(())) => Readiness::Ready("serving (no etcd)".into()),
        };
        ready.send_replace(answer);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = role.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// The controller's terms: one without etcd, or one per election.
async fn terms(args: &ControllerArgs, cancel: &CancellationToken, ops: &Ops) -> anyhow::Result<()> {
    if !args.etcd.enabled() {
        let scheme = if args.tls.enabled() { "https" } else { "http" };
        let me = args
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", args.listen));
        return serve_once(args, cancel, None, me, ops).await;
    }
    if args.listen.ip().is_unspecified() && args.advertise.is_none() {
        anyhow::bail!(
            "--listen {}: with --etcd, give --advertise URL (the address peers dial)",
            args.listen
        );
    }
    let scheme = if args.tls.enabled() { "https" } else { "http" };
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", args.listen));
    loop {
        ops.set_role(Role::Standby);
        let Some(leadership) =
            cluster::campaign(&args.etcd, &advertise, args.lease_ttl, cancel).await?
        else {
            return Ok(());
        };
        let lost = leadership.lost.clone();
        let term = CancellationToken::new();
        let (c1, t1) = (cancel.clone(), term.clone());
        let watcher = tokio::spawn(async move {
            tokio::select! {
                _ = c1.cancelled() => {}
                _ = lost.cancelled() => tracing::warn!("lost the leadership: no longer serving"),
            }
            t1.cancel();
        });
        let r = serve_once(
            args,
            &term,
            Some(leadership.fence_handle()),
            advertise.clone(),
            ops,
        )
        .await;
        watcher.abort();
        if cancel.is_cancelled() {
            leadership.resign().await;
            return r;
        }
        if let Err(e) = r {
            tracing::warn!("serving as the leader failed: {e:#}; campaigning again");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        leadership.abandon();
    }
}

async fn serve_once(
    args: &ControllerArgs,
    cancel: &CancellationToken,
    fence: Option<cluster::Fence>,
    me: String,
    ops: &Ops,
) -> anyhow::Result<()> {
    let elected = fence.is_some();
    let r = term(args, cancel, fence, me, ops).await;
    ops.metrics.term_ended();
    if elected {
        // campaigning again (or stopping)
        ops.set_role(Role::Standby);
    }
    r
}

/// One term: the controller service, its sweeps and its dashboard, until `cancel` fires.
async fn term(
    args: &ControllerArgs,
    cancel: &CancellationToken,
    fence: Option<cluster::Fence>,
    me: String,
    ops: &Ops,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", args.listen))?;
    // the dashboard first: a bad --dashboard-addr stops the command before anything serves
    let dashboard = if let Some(addr) = super::dashboard_addr(&args.dashboard_addr)? {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("--data-dir {}: cannot create it", args.data_dir.display()))?;
        Some(
            crate::dashboard::server::start(crate::dashboard::server::DashboardConfig {
                addr,
                token: args.dashboard_token.clone(),
                sources: crate::dashboard::server::Sources::Root(args.data_dir.clone()),
                metadata: Default::default(),
            })
            .await?,
        )
    } else {
        None
    };
    let registry = Registry::spawn_with(ops.metrics.clone());
    let workers = Workers::spawn_with(ops.metrics.clone());
    // the sweeps left running by an earlier leader are loaded before anyone can ask for them
    let sweeps = match Manager::start(
        workers.clone(),
        registry.clone(),
        args.data_dir.clone(),
        fence,
        me,
        ops.metrics.clone(),
    )
    .await
    {
        Ok(m) => m,
        Err(e) => {
            if let Some(d) = dashboard {
                d.stop().await;
            }
            return Err(e);
        }
    };
    let server = Server::start(
        listener,
        ServerOptions {
            registry: Some(registry),
            workers: Some(workers),
            tls: args.tls.server()?,
            extra: Some(tonic::service::Routes::new(sweeps.service())),
        },
    )?;
    // the agents and workers can connect now; the sweeps left running wait for them
    sweeps.begin();
    ops.metrics.leader.set(1);
    ops.metrics.elections.inc();
    ops.set_role(Role::Leader);
    tracing::info!("benchctl controller listening on {}", server.url());
    if let Some(d) = &dashboard {
        tracing::info!("dashboard at {}", d.url());
    }
    cancel.cancelled().await;
    tracing::info!("benchctl controller: shutting down");
    sweeps.shutdown().await;
    server.shutdown().await;
    if let Some(d) = dashboard {
        d.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn lease_ttl(v: &str) -> Result<i64, String> {
        let cli = crate::cli::Cli::try_parse_from(["benchctl", "controller", "--lease-ttl", v])
            .map_err(|e| e.to_string())?;
        let crate::cli::Command::Controller(c) = cli.command else {
            unreachable!()
        };
        Ok(c.lease_ttl)
    }

    #[test]
    fn the_lease_ttl_takes_a_unit_like_every_duration_flag() {
        assert_eq!(lease_ttl("5s"), Ok(5));
        assert_eq!(lease_ttl("5"), Ok(5));
        assert_eq!(lease_ttl("2m"), Ok(120));
        for bad in ["500ms", "0s", "11m", "soon"] {
            let e = lease_ttl(bad).unwrap_err();
            assert!(e.contains("--lease-ttl") && e.contains(bad), "{e}");
        }
    }
}
