//! Sweeps run by the controller (distributed mode).
//!
//! `benchctl sweep --controller URL` (or `--etcd URLS`, which finds the elected controller)
//! submits a sweep; the controller runs the same engine as local mode ([`super::engine::execute`])
//! over its load workers and agents, one sweep at a time, with results under its `--data-dir`.
//!
//! With etcd, each sweep is checkpointed under `/benchctl/v1/state/sweeps/<id>`: its plan and
//! target, its status, the test in flight and the tests finished. Every write is fenced by the
//! leader's election key, and a test's checkpoint is written *before* its files: a deposed
//! leader never writes results. A newly elected controller reads the checkpoints, resumes every
//! sweep left running from the result directory (the data directory is shared between the
//! controllers, as a Kubernetes ReadWriteMany volume), reruns nothing finished, and records the
//! failover (from whom, the test in flight that was discarded) in the sweep's summary.
//!
//! - `checkpoint`: the checkpoint's schema, its changes, its reads and fenced writes;
//! - `manager`: the [`Manager`] handle, what callers send the owner task;
//! - `queue`: the owner task: the sweeps, their checkpoints, the queue run one at a time;
//! - `runner`: one sweep run or resumed;
//! - `rpc`: the gRPC service over the manager;
//! - `fetch`: a sweep's result directory sent file by file (`FetchSweep`), and written by the
//!   client that asked for it.

pub mod checkpoint;
pub mod fetch;
mod manager;
mod queue;
mod rpc;
mod runner;

pub use checkpoint::{Checkpoint, Spec, TargetSpec};
pub use manager::Manager;
