//! `benchctl controller` (the service) and `benchctl agents` (what it sees).

use std::fmt::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;

use tokio_util::sync::CancellationToken;

use crate::service::{Registry, Server, Workers};
use crate::sweep::remote::Manager;

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
    /// Seconds a crashed leader keeps its leadership in etcd (a standby's takeover time).
    #[arg(long, env = "BENCHCTL_LEASE_TTL", default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..=600))]
    pub lease_ttl: i64,
    /// mTLS: serve TLS and refuse every peer without a certificate signed by --tls-ca.
    #[command(flatten)]
    pub tls: cluster::TlsArgs,
}

/// `benchctl agents`.
#[derive(Clone, Debug, Args)]
pub struct AgentsArgs {
    /// The controller's gRPC URL.
    #[arg(
        long,
        env = "BENCHCTL_CONTROLLER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub controller: String,
    /// Print JSON instead of a table.
    #[arg(long, env = "BENCHCTL_JSON")]
    pub json: bool,
    /// Change the sampling interval of the connected agents (all, or --node), e.g. 100ms.
    #[arg(long, env = "BENCHCTL_SET_INTERVAL", value_parser = humantime::parse_duration)]
    pub set_interval: Option<std::time::Duration>,
    /// With --set-interval: only this node's agent.
    #[arg(long, env = "BENCHCTL_NODE", requires = "set_interval")]
    pub node: Option<String>,
    /// mTLS towards the controller (an https:// URL).
    #[command(flatten)]
    pub tls: cluster::TlsArgs,
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

/// Serves until `cancel` fires. With `--etcd`: campaigns, serves while elected, and campaigns
/// again when the leadership is lost (a deposed leader stops serving at once).
pub async fn serve_until(args: ControllerArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    if !args.etcd.enabled() {
        let scheme = if args.tls.enabled() { "https" } else { "http" };
        let me = args
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", args.listen));
        return serve_once(&args, &cancel, None, me).await;
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
        let Some(leadership) =
            cluster::campaign(&args.etcd, &advertise, args.lease_ttl, &cancel).await?
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
            &args,
            &term,
            Some(leadership.fence_handle()),
            advertise.clone(),
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
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", args.listen))?;
    // the dashboard first: a bad --dashboard-addr stops the command before anything serves
    let dashboard = if args.dashboard_addr.eq_ignore_ascii_case("off") {
        None
    } else {
        let addr: SocketAddr = args.dashboard_addr.parse().map_err(|_| {
            anyhow::anyhow!(
                "--dashboard-addr {:?} is not an address such as 127.0.0.1:8501 (or \"off\")",
                args.dashboard_addr
            )
        })?;
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
    };
    let registry = Registry::spawn();
    let workers = Workers::spawn();
    // the sweeps left running by an earlier leader are loaded before anyone can ask for them
    let sweeps = match Manager::start(
        workers.clone(),
        registry.clone(),
        args.data_dir.clone(),
        fence,
        me,
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
    let server = Server::start_full(
        listener,
        registry,
        workers,
        args.tls.server()?,
        Some(sweeps.service()),
    )?;
    // the agents and workers can connect now; the sweeps left running wait for them
    sweeps.begin();
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

/// Prints the agents a controller knows.
pub async fn list(args: AgentsArgs) -> anyhow::Result<()> {
    let endpoint = cluster::controller_endpoint(&args.controller, args.tls.client()?.as_ref())?;
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("--controller {}: cannot connect", args.controller))?;
    let mut client = proto::controller_client::ControllerClient::new(channel);
    if let Some(interval) = args.set_interval {
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        let n = client
            .set_sampling(proto::SetSamplingRequest {
                node_name: args.node.clone().unwrap_or_default(),
                settings: Some(proto::SamplingSettings { interval_ms }),
            })
            .await
            .map_err(|s| {
                anyhow::anyhow!(
                    "--set-interval {}: {}",
                    humantime::format_duration(interval),
                    s.message()
                )
            })?
            .into_inner()
            .agents;
        eprintln!(
            "sampling interval {} sent to {n} agent(s)",
            humantime::format_duration(interval)
        );
    }
    let agents = client
        .list_agents(proto::ListAgentsRequest {})
        .await
        .with_context(|| format!("--controller {}: ListAgents failed", args.controller))?
        .into_inner()
        .agents;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&agents.iter().map(agent_json).collect::<Vec<_>>())?
        );
    } else {
        print!("{}", table(&agents));
        let workers = client
            .list_workers(proto::ListWorkersRequest {})
            .await
            .with_context(|| format!("--controller {}: ListWorkers failed", args.controller))?
            .into_inner()
            .workers;
        println!("load workers: {}", workers.len());
        for w in &workers {
            println!(
                "  {}  max {} streams  clock offset {:.3} ms",
                w.name,
                w.max_streams,
                w.clock_offset_ns as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn agent_json(a: &proto::AgentStatus) -> serde_json::Value {
    serde_json::json!({
        "node": a.node_name,
        "agent_version": a.agent_version,
        "simulated": a.simulated,
        "connected": a.connected,
        "clock_offset_ns": a.clock_offset_ns,
        "clock_uncertainty_ns": a.clock_uncertainty_ns,
        "samples_received": a.samples_received,
        "dropped_samples": a.dropped_samples,
        "idle_s": a.idle_s,
        "gpus": a.gpus.iter().map(|g| serde_json::json!({
            "index": g.index, "uuid": g.uuid, "name": g.name,
            "memory_total_bytes": g.memory_total_bytes, "driver_version": g.driver_version,
            "last": a.last_samples.iter().find(|s| s.gpu_index == g.index).map(|s| serde_json::json!({
                "utilization_pct": s.utilization_pct, "memory_used_bytes": s.memory_used_bytes,
                "temperature_c": s.temperature_c, "power_w": s.power_w, "sm_clock_mhz": s.sm_clock_mhz,
                "energy_mj": s.energy_mj, "throttle_reasons": s.throttle_reasons,
            })),
        })).collect::<Vec<_>>(),
    })
}

/// The human-readable listing.
pub fn table(agents: &[proto::AgentStatus]) -> String {
    let mut t = String::new();
    if agents.is_empty() {
        t.push_str("no agent has registered with this controller\n");
        return t;
    }
    for a in agents {
        let unc = if a.clock_uncertainty_ns == u64::MAX {
            "not yet estimated".to_string()
        } else {
            format!(
                "{:+.3} ms ± {:.3} ms",
                a.clock_offset_ns as f64 / 1e6,
                a.clock_uncertainty_ns as f64 / 1e6
            )
        };
        let _ = writeln!(
            t,
            "{}{}  {}  agent {}  clock {}  samples {}  lost {}  idle {:.1} s",
            a.node_name,
            if a.simulated { " [SIMULATED]" } else { "" },
            if a.connected {
                "connected"
            } else {
                "DISCONNECTED"
            },
            a.agent_version,
            unc,
            a.samples_received,
            a.dropped_samples,
            a.idle_s
        );
        for g in &a.gpus {
            let last = a.last_samples.iter().find(|s| s.gpu_index == g.index);
            let now = match last {
                Some(s) => format!(
                    "util {:>3.0}%  mem {:>6.0}/{:.0} MiB  {:>3.0}°C  {:>5.1} W  SM {} MHz",
                    s.utilization_pct,
                    s.memory_used_bytes as f64 / 1048576.0,
                    g.memory_total_bytes as f64 / 1048576.0,
                    s.temperature_c,
                    s.power_w,
                    s.sm_clock_mhz
                ),
                None => "no sample yet".into(),
            };
            let _ = writeln!(
                t,
                "  GPU {} {} ({}, driver {}): {now}",
                g.index, g.name, g.uuid, g.driver_version
            );
        }
    }
    t
}
