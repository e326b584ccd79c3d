//! benchctl: the command line and the controller service, and `benchctl sim`, a simulated
//! OpenAI-compatible server (a test instrument and demo target, not a model).

pub mod agents_cmd;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod dashboard;
pub mod local;
pub mod output;
pub mod service;
pub mod sweep;
pub mod telemetry;
