//! benchctl-agent: one per GPU node. A poller thread samples NVML (or a simulated node) into a
//! ring buffer; a gRPC session streams the samples to the controller, answers its clock pings and
//! reconnects with backoff, replaying what the controller lacks.
//!
//! ```text
//! source (NVML | simulated) ─▶ poller thread ─▶ ring buffer ─▶ session ═gRPC═▶ controller
//!                                  ▲ interval                     │ ClockPing → ClockPong
//!                                  └──────── SamplingSettings ────┘
//! ```

pub mod buffer;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod nvml;
pub mod poller;
pub mod session;
pub mod simulated;
pub mod source;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::AgentConfig;
pub use metrics::AgentMetrics;
pub use poller::{SamplingCost, measure_sampling_cost};
pub use source::{GpuSelection, Source, SourceError, SourceKind};

use crate::buffer::RingBuffer;
use crate::clock::Clock;
use crate::poller::Poller;
use crate::session::SessionContext;

/// Runs the agent until `cancel` fires: opens the source (failing at once if NVML is missing or
/// the GPU selection is wrong), starts the poller and keeps a session with the controller.
pub async fn run(cfg: AgentConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    cfg.validate()?;
    // NVML loading blocks (dlopen, driver handshake): keep it off the async workers.
    let (kind, selection) = (cfg.source, cfg.gpu_selection());
    let source = tokio::task::spawn_blocking(move || source::open(kind, &selection))
        .await
        .context("opening the sample source")??;
    run_with_source(cfg, source, cancel).await
}

/// [`run`] with a source already open: `cfg.source` and the GPU selection are not read. For a
/// library user with a sampler of their own (any [`Source`]), e.g. one that wraps NVML.
pub async fn run_with_source(
    cfg: AgentConfig,
    source: Box<dyn Source>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let node_name = cfg.resolved_node_name();
    // the controller: fixed, or whichever etcd says is the leader
    let target = cluster::Target::new(&cfg.etcd, cfg.controller.as_deref(), &cancel)?;
    let shown = match &cfg.controller {
        Some(c) if !cfg.etcd.enabled() => c.clone(),
        _ => format!("the leader in etcd {}", cfg.etcd.endpoints.join(",")),
    };
    let gpus = source.inventory();
    let simulated = source.simulated();
    let instance_id: u64 = rand::random();
    info!(
        node = %node_name,
        gpus = gpus.len(),
        source = ?cfg.source,
        interval = ?cfg.interval,
        controller = %shown,
        instance_id = format_args!("{instance_id:016x}"),
        "benchctl-agent starting"
    );
    if simulated {
        info!("samples are SIMULATED (--source simulated); every output derived from them says so");
    }

    let metrics = AgentMetrics::default();
    let mut registry = ops::registry();
    metrics.register(&mut registry);
    let (ready, ready_rx) = tokio::sync::watch::channel(ops::Readiness::NotReady(
        "no session with the controller yet".into(),
    ));
    let server =
        ops::OpsServer::start_if(cfg.metrics.metrics_addr, Arc::new(registry), ready_rx).await?;
    let clock = Clock::new(cfg.clock_skew_ns);
    let buffer = Arc::new(RingBuffer::new(cfg.buffer_samples));
    let poller = Arc::new(
        Poller::spawn(
            source,
            cfg.schedule(),
            buffer.clone(),
            clock,
            metrics.clone(),
        )
        .context("starting the poller thread")?,
    );
    let registration = cfg.etcd.enabled().then(|| {
        cluster::register(
            cfg.etcd.clone(),
            cluster::agent_key(&node_name),
            format!(
                "{{\"version\":\"{}\",\"instance_id\":\"{instance_id:016x}\",\"gpus\":{}}}",
                env!("CARGO_PKG_VERSION"),
                gpus.len()
            ),
            10,
            cancel.clone(),
        )
    });
    let ctx = SessionContext {
        tls: cfg.tls.client()?,
        target: target.url(),
        register: proto::AgentRegister {
            node_name,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            instance_id,
            gpus,
            simulated,
            // an injected skew (tests) must be estimated like a remote clock, not assumed away
            boot_id: if cfg.clock_skew_ns == 0 {
                cluster::clock::boot_id()
            } else {
                String::new()
            },
            ..Default::default()
        },
        buffer: buffer.clone(),
        poller: poller.clone(),
        clock,
        metrics,
        ready,
    };
    session::run(&ctx, &cancel).await;
    if let Some(s) = server {
        s.stop().await;
    }
    if let Some(r) = registration {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), r).await;
    }

    let stats = tokio::task::spawn_blocking(move || poller.stop())
        .await
        .context("stopping the poller thread")?;
    info!(
        polls = stats.polls,
        missed_polls = stats.missed,
        dropped_samples = buffer.dropped(),
        "benchctl-agent stopped"
    );
    Ok(())
}

/// `--measure-cost N`: the poller's CPU cost for this config's source, GPUs and interval.
pub fn measure_cost(cfg: &AgentConfig, polls: usize) -> anyhow::Result<SamplingCost> {
    cfg.validate()?;
    poller::measure_selection(cfg.source, &cfg.gpu_selection(), cfg.schedule(), polls)
}
