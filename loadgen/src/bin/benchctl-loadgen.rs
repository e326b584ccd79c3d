//! benchctl-loadgen: a load worker; see [`loadgen::worker`].

use std::process::ExitCode;

use clap::Parser;
use loadgen::worker::{WorkerConfig, WorkerStatus, run_worker};

/// benchctl-loadgen: a load worker. Dials the benchctl controller, runs the share of each test it
/// is assigned against the inference servers, and streams one record per request back.
/// Reconnects with backoff until interrupted (SIGINT/SIGTERM).
#[derive(Debug, Parser)]
#[command(name = "benchctl-loadgen", version)]
struct Args {
    /// Controller gRPC URL, e.g. http://benchctl-controller:50051.
    #[arg(
        long,
        env = "BENCHCTL_LOADGEN_CONTROLLER",
        value_name = "URL",
        required_unless_present = "endpoints",
        conflicts_with = "endpoints"
    )]
    controller: Option<String>,

    /// Find the controller through etcd (the elected leader) instead of --controller, and
    /// register this worker there under a lease.
    #[command(flatten)]
    etcd: cluster::EtcdArgs,

    /// mTLS towards the controller.
    #[command(flatten)]
    tls: cluster::TlsArgs,

    /// Worker name, unique among the controller's workers [default: the host name].
    #[arg(long, env = "BENCHCTL_LOADGEN_NAME", value_name = "NAME")]
    name: Option<String>,

    /// The most concurrent streams this worker should be given.
    #[arg(
        long,
        env = "BENCHCTL_LOADGEN_MAX_STREAMS",
        value_name = "N",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_streams: u32,

    /// Health and metrics: /healthz, /readyz (a session with the controller is registered),
    /// /metrics (jobs, requests sent, failures by kind, connected).
    #[command(flatten)]
    metrics: ops::MetricsArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cluster::process::main("info", || real_main(args))
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let cfg = WorkerConfig {
        controller: args.controller.unwrap_or_default(),
        name: args.name.unwrap_or_else(cluster::process::host_name),
        max_streams: args.max_streams,
        etcd: args.etcd.enabled().then_some(args.etcd),
        tls: args.tls.client()?,
        status: WorkerStatus::default(),
    };
    let mut registry = ops::registry();
    cfg.status.metrics.register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let metrics_addr = args.metrics.metrics_addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    cluster::process::block_on_until_signal(
        &runtime,
        "shutting down: cancelling the job in flight and sending what was measured",
        |cancel| async move {
            let ready = cfg.status.ready.subscribe();
            let server = ops::OpsServer::start_if(metrics_addr, registry, ready).await?;
            let r = run_worker(cfg, cancel).await;
            if let Some(s) = server {
                s.stop().await;
            }
            r
        },
    )
}
