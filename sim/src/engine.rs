//! The continuous-batching scheduler of the simulator: one owner task holds
//! all scheduling state; handlers submit [`Job`]s through an mpsc channel and
//! receive their tokens through a per-request unbounded channel.
//!
//! # Model
//!
//! Each loop iteration is one engine *step*:
//!
//! 1. Admit waiting requests in FIFO order while `running < max_batch` and
//!    `reserved_kv + prompt_tokens + max_tokens <= kv_cache_tokens` (a request
//!    reserves its whole `prompt + max_tokens` KV footprint at admission and
//!    keeps it until it finishes, so it is never preempted). The head of the
//!    queue blocks the others (strict FIFO, no skipping).
//! 2. The step lasts
//!    `decode_step_base_ms + decode_step_per_seq_us × running + prefill_us_per_token × Σ prompt tokens of the newly admitted`
//!    where `running` includes the newly admitted sequences.
//! 3. The scheduler sleeps until the step's end on an absolute schedule
//!    (`step_end = previous step_end + duration`, so timer granularity never
//!    accumulates into drift), then every running sequence gets one token (a
//!    newly admitted sequence gets its first token from its prefill step).
//!    Tokens are grouped into chunks of `tokens_per_chunk` before they are sent
//!    to the handler (a chunk is sent when full or when the sequence finishes).
//!    Sequences that reach `max_tokens` finish and free their KV reservation.
//!    The simulator never stops early (no EOS): every sequence produces
//!    exactly `max_tokens` tokens.
//! 4. When nothing is running or waiting, the scheduler waits for the next
//!    arrival; the next step starts at that arrival time.
//!
//! A sequence whose receiver is gone (client disconnected, or the stall
//! fault) is dropped at the next step and its KV is freed.
//!
//! Consequences, useful for checking a benchmark client: TTFT ≈ queue wait +
//! the first (prefill) step; TPOT ≈ the step time, which grows linearly with
//! the batch. With identical requests of `P` prompt and `M` output tokens, at
//! most
//!
//! ```text
//! K = min(max_batch, floor(kv_cache_tokens / (P + M)))
//! ```
//!
//! run at once; beyond concurrency `K` requests queue and latency jumps
//! (TTFT grows by whole request durations).
//!
//! # Options (off by default; the model above is then exact)
//!
//! * `preempt` (`--preempt`): KV is reserved as a sequence grows, vLLM's way:
//!   `prompt + generated + 1` tokens for the step ahead (admission needs
//!   `prompt + 1`, the prompt and its first token). Before each step every
//!   running sequence takes one more token of KV; while they do not fit, the
//!   most recently admitted is preempted (vLLM's FCFS policy): it frees its KV
//!   and goes back to the front of the queue keeping its generated tokens,
//!   and on readmission its prompt and those tokens are prefilled again
//!   (vLLM's recompute). No request is admitted in a step that preempted.
//! * `prefix_cache_tokens` > 0: a [`PrefixCache`] of prompt blocks; the
//!   tokens a newly admitted sequence finds cached cost no prefill time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::prefix_cache::PrefixCache;

/// What the scheduler sends to a request's handler: `tokens` new tokens,
/// and whether the sequence is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Emit {
    pub tokens: u32,
    pub finished: bool,
    /// The prompt tokens found in the prefix cache at the sequence's first admission (vLLM's
    /// `num_cached_tokens`); `None` when the cache is off.
    pub cached_tokens: Option<u32>,
}

/// A request submitted to the scheduler.
#[derive(Debug)]
pub(crate) struct Job {
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    /// The prompt's block hashes ([`super::prefix_cache::block_hashes`]);
    /// empty when the prefix cache is off.
    pub prompt_blocks: Vec<u64>,
    pub tx: mpsc::UnboundedSender<Emit>,
}

/// The timing and capacity parameters of the simulated engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineParams {
    pub prefill_us_per_token: f64,
    pub decode_step_base_ms: f64,
    pub decode_step_per_seq_us: f64,
    pub max_batch: usize,
    pub kv_cache_tokens: usize,
    pub tokens_per_chunk: usize,
    /// Reserve KV incrementally and preempt when it runs out (module docs).
    pub preempt: bool,
    /// Capacity of the prefix cache in tokens (0 = off).
    pub prefix_cache_tokens: usize,
}

impl EngineParams {
    fn step_duration(&self, running: usize, prefill_tokens: usize) -> Duration {
        let us = self.decode_step_base_ms * 1e3
            + self.decode_step_per_seq_us * running as f64
            + self.prefill_us_per_token * prefill_tokens as f64;
        Duration::from_nanos((us.max(0.0) * 1e3).round() as u64)
    }
}

/// The handlers' side of the scheduler.
#[derive(Clone, Debug)]
pub(crate) struct EngineHandle {
    tx: mpsc::UnboundedSender<Job>,
    reset_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl EngineHandle {
    /// Queues a job; fails only when the scheduler has stopped.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }

    /// Empties the prefix cache (vLLM's `reset_prefix_cache`) before the next step; returns
    /// once it is done, or `false` when the scheduler has stopped.
    pub(crate) async fn reset_prefix_cache(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.reset_tx.send(tx).is_ok() && rx.await.is_ok()
    }
}

/// A request inside the scheduler, waiting or running.
struct Seq {
    prompt_tokens: usize,
    max_tokens: usize,
    prompt_blocks: Vec<u64>,
    generated: usize,
    /// Generated tokens not sent yet (a partial chunk).
    pending: usize,
    /// KV tokens reserved (0 while waiting).
    held: usize,
    /// Whether its prompt is in `prompt_tokens_total` (counted at the first admission).
    counted: bool,
    /// Prompt tokens found cached at its first admission (`None`: the cache is off).
    cached_tokens: Option<u32>,
    tx: mpsc::UnboundedSender<Emit>,
}

impl Seq {
    fn new(job: Job) -> Self {
        Self {
            prompt_tokens: job.prompt_tokens,
            max_tokens: job.max_tokens,
            prompt_blocks: job.prompt_blocks,
            generated: 0,
            pending: 0,
            held: 0,
            counted: false,
            cached_tokens: None,
            tx: job.tx,
        }
    }

    /// With `preempt`: the KV it needs for the coming step.
    fn next_step_kv(&self) -> usize {
        self.prompt_tokens + self.generated + 1
    }
}

struct Scheduler {
    p: EngineParams,
    rx: mpsc::UnboundedReceiver<Job>,
    reset_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    reserved: usize,
    prefix_cache: Option<PrefixCache>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
}

/// Spawns the scheduler task; it ends when `cancel` fires (dropping every
/// per-request sender, so the handlers see their channel close).
pub(crate) fn spawn(
    p: EngineParams,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> (EngineHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (reset_tx, reset_rx) = mpsc::unbounded_channel();
    let s = Scheduler {
        p,
        rx,
        reset_rx,
        waiting: VecDeque::new(),
        running: Vec::new(),
        reserved: 0,
        prefix_cache: PrefixCache::new(p.prefix_cache_tokens),
        metrics,
        cancel,
    };
    (EngineHandle { tx, reset_tx }, tokio::spawn(s.run()))
}

impl Scheduler {
    async fn run(mut self) {
        let mut clock = Instant::now();
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish();
                let job = tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    Some(done) = self.reset_rx.recv() => {
                        self.reset_prefix_cache(done);
                        continue;
                    }
                    j = self.rx.recv() => match j { Some(j) => j, None => break },
                };
                self.waiting.push_back(Seq::new(job));
                clock = Instant::now();
            }
            while let Ok(j) = self.rx.try_recv() {
                self.waiting.push_back(Seq::new(j));
            }
            while let Ok(done) = self.reset_rx.try_recv() {
                self.reset_prefix_cache(done);
            }
            let prefill_tokens = if self.p.preempt && self.make_room() {
                0
            } else {
                self.admit()
            };
            if self.running.is_empty() {
                continue;
            }
            let end = clock + self.p.step_duration(self.running.len(), prefill_tokens);
            self.publish();
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep_until(end) => {}
            }
            clock = end;
            self.advance();
        }
        self.running.clear();
        self.waiting.clear();
        self.reserved = 0;
        self.publish();
    }

    /// Forgets every cached block (the counters keep counting, as vLLM's do).
    fn reset_prefix_cache(&mut self, done: oneshot::Sender<()>) {
        if let Some(cache) = &mut self.prefix_cache {
            cache.clear();
        }
        let _ = done.send(());
    }

    /// With `preempt`: reserves every running sequence's KV for the coming
    /// step, preempting from the back of the batch while they do not fit
    /// (module docs). Returns whether any sequence was preempted.
    fn make_room(&mut self) -> bool {
        let mut need: usize = self.running.iter().map(Seq::next_step_kv).sum();
        let mut preempted = false;
        // A lone sequence always fits: the handlers reject prompt + max_tokens > capacity.
        while need > self.p.kv_cache_tokens && self.running.len() > 1 {
            let mut s = self.running.pop().expect("more than one running");
            need -= s.next_step_kv();
            s.held = 0;
            self.waiting.push_front(s);
            self.metrics.preemptions_total.fetch_add(1, Relaxed);
            preempted = true;
        }
        for s in &mut self.running {
            s.held = s.next_step_kv();
        }
        self.reserved = need;
        preempted
    }

    /// Admits waiting sequences FIFO; returns the tokens they prefill.
    fn admit(&mut self) -> usize {
        let mut prefill = 0;
        while let Some(front) = self.waiting.front() {
            if front.tx.is_closed() {
                self.waiting.pop_front();
                self.metrics.aborted_total.fetch_add(1, Relaxed);
                continue;
            }
            let need = if self.p.preempt {
                front.next_step_kv()
            } else {
                front.prompt_tokens + front.max_tokens
            };
            if self.running.len() >= self.p.max_batch
                || self.reserved + need > self.p.kv_cache_tokens
            {
                break;
            }
            let mut s = self.waiting.pop_front().expect("front exists");
            s.held = need;
            self.reserved += need;
            prefill += self.prefill(&mut s);
            self.running.push(s);
        }
        prefill
    }

    /// Counts an admission in the metrics and returns the tokens it
    /// prefills: the prompt and the tokens generated before a preemption
    /// (recomputed), less those found in the prefix cache.
    fn prefill(&mut self, s: &mut Seq) -> usize {
        let m = &self.metrics;
        if !s.counted {
            s.counted = true;
            m.prompt_tokens_total
                .fetch_add(s.prompt_tokens as u64, Relaxed);
        }
        let tokens = s.prompt_tokens + s.generated;
        let Some(cache) = &mut self.prefix_cache else {
            return tokens;
        };
        let hit = cache.admit(&s.prompt_blocks, tokens.saturating_sub(1));
        // vLLM reports the hits of the first admission (a readmission's recompute is not).
        s.cached_tokens.get_or_insert(hit as u32);
        m.prefix_cache_queries_total
            .fetch_add(tokens as u64, Relaxed);
        m.prefix_cache_hits_total.fetch_add(hit as u64, Relaxed);
        tokens - hit
    }

    /// One token for every running sequence; sends full/final chunks and
    /// retires finished or disconnected sequences. The counters move before
    /// the sends, so a client that has its last token sees it counted.
    fn advance(&mut self) {
        let tpc = self.p.tokens_per_chunk.max(1);
        let m = &self.metrics;
        m.tokens_generated_total
            .fetch_add(self.running.len() as u64, Relaxed);
        let mut freed = 0;
        self.running.retain_mut(|s| {
            s.generated += 1;
            s.pending += 1;
            let finished = s.generated >= s.max_tokens;
            if finished {
                m.finished_length_total.fetch_add(1, Relaxed);
            }
            let alive = if finished || s.pending >= tpc {
                let e = Emit {
                    tokens: s.pending as u32,
                    finished,
                    cached_tokens: s.cached_tokens,
                };
                s.pending = 0;
                s.tx.send(e).is_ok()
            } else {
                !s.tx.is_closed()
            };
            if !finished && !alive {
                m.aborted_total.fetch_add(1, Relaxed);
            }
            if finished || !alive {
                freed += s.held;
                false
            } else {
                true
            }
        });
        self.reserved -= freed;
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.running.store(self.running.len() as u64, Relaxed);
        m.waiting.store(self.waiting.len() as u64, Relaxed);
        m.kv_reserved_tokens.store(self.reserved as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests;
