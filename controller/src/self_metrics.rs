//! The controller's own metrics (`benchctl controller --metrics-addr`): what it knows of its
//! peers, its sweeps and etcd, as `prometheus-client` atomics incremented where the events
//! happen (the registry and pool owner tasks, the sweep queue and its runner, the etcd probe).
//!
//! A [`ControllerMetrics`] is cheap to clone (every field is a shared atomic). One made with
//! `default()` counts without being exposed (local mode, tests of the parts).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::clock::Offset;

/// Which kind of peer a label names.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum PeerKind {
    Agent,
    Worker,
}

impl PeerKind {
    /// The label's value: `agent`, `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Agent => "agent",
            PeerKind::Worker => "worker",
        }
    }
}

/// A peer's labels: its kind (`agent`, `worker`) and name (the agent's node, the worker's
/// `--name`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub kind: &'static str,
    pub peer: String,
}

/// A sweep's state on this controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SweepLabels {
    pub status: &'static str,
}

/// The sweep states counted by `benchctl_sweeps`, each always present (0 when none): the
/// words of `sweep::status::Status` (this module sits below `sweep/`).
pub const SWEEP_STATES: [&str; 5] = ["queued", "running", "done", "failed", "interrupted"];

/// The controller's metrics.
#[derive(Clone, Default)]
pub struct ControllerMetrics {
    /// 1 while this controller is the elected leader (or serves without etcd), 0 as a standby.
    pub leader: Gauge,
    pub agents_connected: Gauge,
    pub workers_connected: Gauge,
    /// Each connected peer's clock-offset uncertainty (half the round trip of its best clock
    /// exchange), in seconds.
    pub clock_uncertainty: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    /// This controller's sweeps by state (`queued`, `running`, `done`, `failed`, `interrupted`).
    pub sweeps: Family<SweepLabels, Gauge>,
    /// Tests run to their end and committed by this controller's sweeps.
    pub tests_run: Counter,
    /// Tests run again: the test an earlier leader had in flight when it failed over.
    pub tests_rerun: Counter,
    /// Sweeps this controller took over from a leader that left them running.
    pub failovers: Counter,
    /// Leadership terms this controller began (its elections).
    pub elections: Counter,
    /// etcd requests that failed: the readiness probe's, and checkpoint writes refused or lost.
    pub etcd_errors: Counter,
    /// GPU samples received from the agents (new ones; a replayed sample counts once).
    pub samples_received: Counter,
    /// GPU samples lost on the way: dropped by an agent's full buffer or missing from its
    /// sequence.
    pub samples_dropped: Counter,
}

impl ControllerMetrics {
    /// Registers every metric in `registry` (its names under `benchctl_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "controller_leader",
            "1 while this controller is the elected leader (or runs without etcd), 0 as a standby",
            self.leader.clone(),
        );
        r.register(
            "agents_connected",
            "Agents (GPU nodes) with an open session to this controller",
            self.agents_connected.clone(),
        );
        r.register(
            "workers_connected",
            "Load workers with an open session to this controller",
            self.workers_connected.clone(),
        );
        r.register_with_unit(
            "clock_offset_uncertainty",
            "Each connected peer's clock-offset uncertainty (half its best exchange's round trip)",
            Unit::Seconds,
            self.clock_uncertainty.clone(),
        );
        r.register(
            "sweeps",
            "This controller's sweeps by status (queued, running, done, failed, interrupted)",
            self.sweeps.clone(),
        );
        r.register(
            "tests_run",
            "Tests of sweeps run to their end and committed by this controller",
            self.tests_run.clone(),
        );
        r.register(
            "tests_rerun",
            "Tests run again because an earlier leader had them in flight when it failed",
            self.tests_rerun.clone(),
        );
        r.register(
            "sweep_failovers",
            "Sweeps this controller took over from a leader that left them running",
            self.failovers.clone(),
        );
        r.register(
            "controller_elections",
            "Leadership terms this controller began",
            self.elections.clone(),
        );
        r.register(
            "etcd_errors",
            "etcd requests that failed (readiness probes, checkpoint writes)",
            self.etcd_errors.clone(),
        );
        r.register(
            "telemetry_samples_received",
            "GPU samples received from the agents",
            self.samples_received.clone(),
        );
        r.register(
            "telemetry_samples_dropped",
            "GPU samples lost: dropped by an agent's full buffer or missing from its sequence",
            self.samples_dropped.clone(),
        );
        self.set_sweeps([0; 5]);
    }

    /// A peer's clock estimate changed.
    pub fn clock(&self, kind: PeerKind, peer: &str, o: Option<Offset>) {
        if let Some(o) = o {
            self.clock_uncertainty
                .get_or_create(&PeerLabels {
                    kind: kind.as_str(),
                    peer: peer.to_string(),
                })
                .set(o.uncertainty_ns as f64 / 1e9);
        }
    }

    /// A peer left: its clock is no longer estimated.
    pub fn peer_gone(&self, kind: PeerKind, peer: &str) {
        self.clock_uncertainty.remove(&PeerLabels {
            kind: kind.as_str(),
            peer: peer.to_string(),
        });
    }

    /// The sweeps' counts, in the order of [`SWEEP_STATES`].
    pub fn set_sweeps(&self, counts: [i64; 5]) {
        for (s, n) in SWEEP_STATES.iter().zip(counts) {
            self.sweeps.get_or_create(&SweepLabels { status: s }).set(n);
        }
    }

    /// A term as leader ended: its sessions and its sweeps are gone from this controller.
    pub fn term_ended(&self) {
        self.leader.set(0);
        self.agents_connected.set(0);
        self.workers_connected.set(0);
        self.clock_uncertainty.clear();
        self.set_sweeps([0; 5]);
    }
}
