//! benchctl's load generator: drives OpenAI-compatible streaming endpoints and returns one record
//! per request; every metric is computed from those records afterwards.
//!
//! - [`schedule`]: when requests start (open loop) — [`runner`] adds the concurrency limit (closed loop)
//! - [`client`]: one request; [`http1`] reads its socket and stamps each read ([`clock`]);
//!   [`stream`] parses the body ([`sse`], [`openai`])
//! - [`record`]: one request's timings; [`store`]: a run's records under a memory budget;
//!   [`report`] and [`stats`]: metrics from records
//! - [`dataset`] and [`tokenizer`]: prompts of an exact token length
//! - [`worker`]: a load worker serving the controller's jobs over gRPC; [`wire`]: its messages

pub mod client;
pub mod clock;
pub mod conversation;
pub mod cpu;
pub mod dataset;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod http1;
pub mod openai;
pub mod record;
pub mod report;
pub mod runner;
pub mod rxstamp;
pub mod schedule;
pub mod sse;
pub mod stats;
pub mod store;
pub mod stream;
pub mod tokenizer;
pub mod wire;
pub mod worker;

pub use client::{HttpClient, Target, Transport};
pub use dataset::{DatasetSpec, Prompt};
pub use error::{ErrorKind, RequestError};
pub use openai::{Backend, BodySpec, EndpointKind};
pub use record::RequestRecord;
pub use runner::{RunConfig, RunOutput};
pub use schedule::Arrivals;
pub use store::{MemoryBudget, RecordStore, Records, StoreStats};
pub use tokenizer::Tokenizer;
