//! The load worker's own metrics (`benchctl-loadgen --metrics-addr`): jobs, requests sent and
//! failed by kind, whether a controller session is open; and its `/readyz` answer.
//!
//! Counted once per job and once per request (from its record), never per chunk: the read loop
//! is untouched.

use std::sync::Arc;

use ops::Readiness;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::record::RequestRecord;

/// How a job ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `done`, `interrupted` (the worker shut down or the job was cancelled during it) or
    /// `failed` (it could not run).
    pub outcome: &'static str,
}

/// A failed request's kind (`loadgen::ErrorKind`'s word: `connect`, `http_4xx`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: &'static str,
}

/// The worker's metrics; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct WorkerMetrics {
    pub jobs: Family<JobLabels, Counter>,
    /// Requests sent (one per record, failed ones included).
    pub requests: Counter,
    pub failures: Family<FailureLabels, Counter>,
    /// 1 while a session with the controller is registered.
    pub connected: Gauge,
}

impl WorkerMetrics {
    /// Registers every metric in `registry` (its names under `benchctl_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "worker_jobs",
            "Jobs this worker ran, by outcome (done, interrupted, failed)",
            self.jobs.clone(),
        );
        r.register(
            "worker_requests",
            "Requests this worker sent (one per record, failed ones included)",
            self.requests.clone(),
        );
        r.register(
            "worker_request_failures",
            "Requests that failed, by kind (connect, http_4xx, timeout, …)",
            self.failures.clone(),
        );
        r.register(
            "worker_connected",
            "1 while a session with the controller is registered",
            self.connected.clone(),
        );
    }

    /// One request's record.
    pub fn request(&self, r: &RequestRecord) {
        self.requests.inc();
        if let Some(e) = &r.error {
            self.failures
                .get_or_create(&FailureLabels {
                    kind: e.kind.as_str(),
                })
                .inc();
        }
    }

    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&JobLabels { outcome }).inc();
    }
}

/// What the worker reports of itself: its metrics and its `/readyz` answer (ready while a
/// session with the controller is registered).
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    pub metrics: WorkerMetrics,
    pub ready: Arc<watch::Sender<Readiness>>,
}

impl Default for WorkerStatus {
    fn default() -> Self {
        let (ready, _) = watch::channel(Readiness::NotReady(
            "no session with the controller yet".into(),
        ));
        WorkerStatus {
            metrics: WorkerMetrics::default(),
            ready: Arc::new(ready),
        }
    }
}

impl WorkerStatus {
    /// A session with the controller at `url` was registered (`true`) or ended.
    pub fn session(&self, url: &str, registered: bool) {
        self.metrics.connected.set(i64::from(registered));
        self.ready.send_replace(if registered {
            Readiness::Ready(format!("registered with the controller {url}"))
        } else {
            Readiness::NotReady(format!("no session with the controller (last: {url})"))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, RequestError};

    fn record(kind: Option<ErrorKind>) -> RequestRecord {
        RequestRecord {
            error: kind.map(|kind| RequestError {
                kind,
                status: None,
                message: "x".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_request_counts_and_failures_by_kind() {
        let m = WorkerMetrics::default();
        for k in [
            None,
            Some(ErrorKind::Timeout),
            None,
            Some(ErrorKind::Timeout),
            Some(ErrorKind::Http4xx),
        ] {
            m.request(&record(k));
        }
        let failed = |kind: ErrorKind| {
            m.failures
                .get_or_create(&FailureLabels {
                    kind: kind.as_str(),
                })
                .get()
        };
        assert_eq!(m.requests.get(), 5);
        assert_eq!(failed(ErrorKind::Timeout), 2);
        assert_eq!(failed(ErrorKind::Http4xx), 1);
        let mut r = prometheus_client::registry::Registry::with_prefix("benchctl");
        m.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("benchctl_worker_requests_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("benchctl_worker_request_failures_total{kind=\"timeout\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn readiness_follows_the_session() {
        let s = WorkerStatus::default();
        let rx = s.ready.subscribe();
        assert!(!rx.borrow().is_ready());
        s.session("http://c:7400", true);
        assert_eq!(
            *rx.borrow(),
            Readiness::Ready("registered with the controller http://c:7400".into())
        );
        assert_eq!(s.metrics.connected.get(), 1);
        s.session("http://c:7400", false);
        assert!(!rx.borrow().is_ready());
        assert_eq!(s.metrics.connected.get(), 0);
    }
}
