//! Metrics of a run, computed from its records, and their two renderings: the vLLM-compatible
//! result JSON (a superset of `vllm bench serve --save-result`'s keys) and the printed summary.
//!
//! - `metric`: the latency metrics and the goodput bounds on them
//! - `sessions`: a conversation run's sessions and their growth by turn
//! - `summary`: everything computed from a run's records ([`summarize`])
//! - `cache`: prefix-cache accounting ([`CacheUsage`])
//! - `json`: the result JSON ([`result_json`]); `text`: the printed summary ([`render_text`])

mod cache;
mod json;
mod metric;
mod sessions;
mod summary;
mod text;

pub use cache::CacheUsage;
pub use json::result_json;
pub use metric::{GoodputBound, Metric, parse_goodput};
pub use sessions::Sessions;
pub use summary::{CHUNK_SAMPLES_HELD, Summary, summarize, summarize_holding};
pub use text::render_text;

use crate::runner::ChunkTokens;

/// Run facts that are not computed from records.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub backend: String,
    pub endpoint: String,
    pub model_id: String,
    pub tokenizer_id: String,
    pub num_prompts: usize,
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub warmup_requests: usize,
    pub warmup_failed: usize,
    pub not_sent: usize,
    pub chunk_tokens: ChunkTokens,
    /// The target identified itself as `benchctl sim` (a simulator, not a real model).
    pub target_is_simulator: bool,
    /// Wall-clock start, local time.
    pub date: chrono::DateTime<chrono::Local>,
}
