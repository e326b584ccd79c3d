//! One test to spread over the load workers, and its deterministic split: of `n` workers
//! (sorted by name), worker `k` gets prompts `k, k+n, …`, its share of the concurrency (as even
//! as possible, the remainder to the first workers), `rate/n` and seed `seed + k`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::bail;
use loadgen::worker::split_even;

/// One test to spread over the workers.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Base URLs of the server replicas (every worker sends round-robin over all of them).
    pub target_urls: Vec<String>,
    /// What every request sends ([`loadgen::wire::request_spec`]).
    pub spec: proto::RequestSpec,
    /// One request per prompt; the result's record `i` is prompt `i`'s. A conversation job:
    /// each session's first turn.
    pub prompts: Vec<loadgen::Prompt>,
    /// A conversation job's sessions (one per prompt, split like them: a session stays on one
    /// worker); the concurrency and the rate then count sessions. Empty: one request per prompt.
    pub sessions: Vec<loadgen::conversation::Session>,
    /// Total concurrency over all workers (`None`: unlimited).
    pub max_concurrency: Option<usize>,
    /// Total open-loop rate, requests/s (`f64::INFINITY`: closed loop).
    pub request_rate: f64,
    /// Gamma shape of the open-loop gaps (1: Poisson).
    pub burstiness: f64,
    pub seed: u64,
    /// Total warm-up requests, split like the concurrency.
    pub warmup_requests: usize,
    /// Prompts of the warm-up, cycled, split like `prompts` (empty: the warm-up cycles the
    /// measured prompts, which a server with prefix caching then serves from its cache).
    pub warmup_prompts: Vec<loadgen::Prompt>,
    /// Counts the records received so far (for progress displays).
    pub progress: Option<Arc<AtomicU64>>,
    /// How many workers to use (`None`: every idle one).
    pub workers: Option<usize>,
    /// Awaited once every worker is warm, before the measured run is scheduled: the server's
    /// metrics sampled just before the test's window. Gates a single worker's start too.
    pub before_start: Option<BeforeStart>,
    /// How much memory the records received may take before they spill to disk
    /// (`--max-memory`).
    pub records: loadgen::MemoryBudget,
}

/// A step awaited between the warm-up and the measured run (bounded by
/// [`BeforeStart::LIMIT`]).
#[derive(Clone)]
pub struct BeforeStart(pub Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>);

impl BeforeStart {
    /// The longest the measured run waits for it.
    pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
}

impl std::fmt::Debug for BeforeStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeStart")
    }
}

impl JobSpec {
    /// What can be refused before any worker is claimed.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.prompts.is_empty() {
            bail!("a job needs at least one prompt");
        }
        if !self.sessions.is_empty() && self.sessions.len() != self.prompts.len() {
            bail!(
                "a conversation job needs one prompt (the first turn) per session: {} sessions, {} prompts",
                self.sessions.len(),
                self.prompts.len()
            );
        }
        if self.target_urls.is_empty() {
            bail!("a job needs at least one target URL");
        }
        if self.max_concurrency == Some(0) {
            bail!("--max-concurrency must be at least 1, got 0");
        }
        loadgen::Arrivals {
            rate: self.request_rate,
            burstiness: self.burstiness,
            seed: self.seed,
        }
        .validate()?;
        if self.workers == Some(0) {
            bail!("a job needs at least one worker, 0 were asked for");
        }
        Ok(())
    }

    /// Worker `k`'s share of `n`.
    pub(super) fn assignment(
        &self,
        job_id: &str,
        k: usize,
        n: usize,
        gated: bool,
    ) -> proto::JobAssignment {
        let share = |prompts: &[loadgen::Prompt]| -> Vec<proto::Prompt> {
            prompts
                .iter()
                .skip(k)
                .step_by(n)
                .map(proto::Prompt::from)
                .collect()
        };
        proto::JobAssignment {
            job_id: job_id.to_string(),
            target_urls: self.target_urls.clone(),
            spec: Some(self.spec.clone()),
            prompts: share(&self.prompts),
            max_concurrency: self.max_concurrency.map_or(0, |c| split_even(c, k, n)) as u32,
            request_rate: if self.request_rate.is_finite() {
                self.request_rate / n as f64
            } else {
                0.0
            },
            burstiness: self.burstiness,
            seed: self.seed.wrapping_add(k as u64),
            warmup_requests: split_even(self.warmup_requests, k, n) as u32,
            warmup_prompts: share(&self.warmup_prompts),
            start_on_signal: gated,
            sessions: self
                .sessions
                .iter()
                .skip(k)
                .step_by(n)
                .map(proto::Session::from)
                .collect(),
        }
    }
}
