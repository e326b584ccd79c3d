//! benchctl: the command line and the controller service, and `benchctl sim`, a simulated
//! OpenAI-compatible server (a test instrument and demo target, not a model).
//!
//! Layers, each using only those below it: `cli` and `cmd/` (the commands: clap stops there) →
//! `sweep/` (plan, engine, results, the controller's queue) → `test_run` (one test) → `target`,
//! `local`, `service/` (the controller service: agent and worker sessions, the registry, the
//! pool) → `gpu_stats`, `telemetry`, `clock`, `progress`, `output`.

pub mod cache_check;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod compare;
pub mod dashboard;
pub mod gpu_stats;
pub mod local;
pub mod metrics_source;
pub mod output;
pub mod prefix_reset;
pub mod progress;
pub mod self_metrics;
pub mod server_metrics;
pub mod service;
pub mod sweep;
pub mod target;
pub mod telemetry;
pub mod test_run;
pub mod validity;
pub mod waiting;
