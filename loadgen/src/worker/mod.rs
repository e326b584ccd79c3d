//! A load worker (`benchctl-loadgen`): dials the controller, holds one `WorkerSession`, and runs
//! the jobs it is assigned with [`crate::runner::run`], streaming each record back as it
//! completes.
//!
//! The session: `WorkerRegister` → `WorkerRegistered`; then `ClockPing`s are answered at once, a
//! `JobAssignment` starts a job (one at a time), `CancelJob` cancels it. A job streams
//! `RecordBatch`es (every 100 ms or 256 records) and ends with one `JobDone`, sent after its last
//! batch. When the session breaks, the job in flight is cancelled (the controller reruns it) and
//! the worker reconnects with jittered exponential backoff until it is shut down.
//!
//! - `session`: registration and the controller's messages, one session
//! - `job`: one job: its warm-up, the start signal, its measured run
//! - `plan`: a job split over its target URLs
//! - `outbound`: messages to the controller; records in batches

mod job;
pub mod metrics;
mod outbound;
mod plan;
mod session;

use std::time::Duration;

use anyhow::bail;
use cluster::Link;
use tokio_util::sync::CancellationToken;

pub use metrics::{WorkerMetrics, WorkerStatus};
pub use outbound::{FLUSH_EVERY, MAX_BATCH_RECORDS};
pub use plan::split_even;
pub use session::PROTOCOL;

/// Who the worker is and where it reports.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The controller's gRPC URL (`http://host:port`; `http://` is assumed without a scheme).
    pub controller: String,
    /// Unique among the controller's workers.
    pub name: String,
    /// The most concurrent streams this worker should be given.
    pub max_streams: u32,
    /// Find the controller through etcd (the elected leader; `controller` is then unused) and
    /// register the worker there.
    pub etcd: Option<cluster::EtcdArgs>,
    /// mTLS towards the controller (`--tls-*`).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Its metrics and `/readyz` answer (served by `benchctl-loadgen --metrics-addr`).
    pub status: WorkerStatus,
}

/// Runs worker sessions until `cancel` fires, reconnecting after every failure. Fails only on a
/// configuration that can never work (an unparsable controller URL, an empty name).
pub async fn run_worker(cfg: WorkerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    if cfg.name.is_empty() {
        bail!("--name is empty: every worker needs a name, unique among the controller's workers");
    }
    // the controller: fixed, or whichever etcd says is the leader
    let etcd = cfg.etcd.clone().unwrap_or_default();
    let target = cluster::Target::new(&etcd, Some(&cfg.controller), &cancel)?;
    let registration = etcd.enabled().then(|| {
        cluster::register(
            etcd.clone(),
            cluster::worker_key(&cfg.name),
            format!(
                "{{\"version\":\"{}\",\"max_streams\":{}}}",
                env!("CARGO_PKG_VERSION"),
                cfg.max_streams
            ),
            10,
            cancel.clone(),
        )
    });
    cluster::reconnect(&Sessions(&cfg), target.url(), cfg.tls.as_ref(), &cancel).await;
    if let Some(r) = registration {
        let _ = tokio::time::timeout(Duration::from_secs(3), r).await;
    }
    Ok(())
}

/// The worker's side of a session, for [`cluster::reconnect`].
struct Sessions<'a>(&'a WorkerConfig);

impl cluster::Session for Sessions<'_> {
    async fn run(&self, link: &mut Link<'_>) -> anyhow::Result<()> {
        let r = session::session(link, self.0).await;
        self.0.status.session(link.url, false);
        r
    }
}
