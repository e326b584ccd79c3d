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
//!    keeps it until it finishes). The head of the queue blocks the others
//!    (strict FIFO, no skipping).
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// What the scheduler sends to a request's handler: `tokens` new tokens,
/// and whether the sequence is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Emit {
    pub tokens: u32,
    pub finished: bool,
}

/// A request submitted to the scheduler.
#[derive(Debug)]
pub(crate) struct Job {
    pub prompt_tokens: usize,
    pub max_tokens: usize,
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
}

impl EngineHandle {
    /// Queues a job; fails only when the scheduler has stopped.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }
}

struct Seq {
    need: usize,
    max_tokens: usize,
    generated: usize,
    pending: usize,
    tx: mpsc::UnboundedSender<Emit>,
}

struct Scheduler {
    p: EngineParams,
    rx: mpsc::UnboundedReceiver<Job>,
    waiting: VecDeque<Job>,
    running: Vec<Seq>,
    reserved: usize,
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
    let s = Scheduler {
        p,
        rx,
        waiting: VecDeque::new(),
        running: Vec::new(),
        reserved: 0,
        metrics,
        cancel,
    };
    (EngineHandle { tx }, tokio::spawn(s.run()))
}

impl Scheduler {
    async fn run(mut self) {
        let mut clock = Instant::now();
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish();
                let job = tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    j = self.rx.recv() => match j { Some(j) => j, None => break },
                };
                self.waiting.push_back(job);
                clock = Instant::now();
            }
            while let Ok(j) = self.rx.try_recv() {
                self.waiting.push_back(j);
            }
            let prefill_tokens = self.admit();
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

    /// Admits waiting jobs FIFO; returns the prompt tokens of the admitted.
    fn admit(&mut self) -> usize {
        let mut prefill = 0;
        while let Some(front) = self.waiting.front() {
            if front.tx.is_closed() {
                self.waiting.pop_front();
                continue;
            }
            let need = front.prompt_tokens + front.max_tokens;
            if self.running.len() >= self.p.max_batch
                || self.reserved + need > self.p.kv_cache_tokens
            {
                break;
            }
            let job = self.waiting.pop_front().expect("front exists");
            self.reserved += need;
            prefill += job.prompt_tokens;
            self.running.push(Seq {
                need,
                max_tokens: job.max_tokens,
                generated: 0,
                pending: 0,
                tx: job.tx,
            });
        }
        prefill
    }

    /// One token for every running sequence; sends full/final chunks and
    /// retires finished or disconnected sequences.
    fn advance(&mut self) {
        let tpc = self.p.tokens_per_chunk.max(1);
        let mut freed = 0;
        let tokens = self.running.len() as u64;
        self.running.retain_mut(|s| {
            s.generated += 1;
            s.pending += 1;
            let finished = s.generated >= s.max_tokens;
            let alive = if finished || s.pending >= tpc {
                let e = Emit {
                    tokens: s.pending as u32,
                    finished,
                };
                s.pending = 0;
                s.tx.send(e).is_ok()
            } else {
                !s.tx.is_closed()
            };
            if finished || !alive {
                freed += s.need;
                false
            } else {
                true
            }
        });
        self.reserved -= freed;
        self.metrics
            .tokens_generated_total
            .fetch_add(tokens, Relaxed);
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.running.store(self.running.len() as u64, Relaxed);
        m.waiting.store(self.waiting.len() as u64, Relaxed);
        m.kv_reserved_tokens.store(self.reserved as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max_batch: usize, kv: usize, tpc: usize) -> EngineParams {
        EngineParams {
            prefill_us_per_token: 0.0,
            decode_step_base_ms: 10.0,
            decode_step_per_seq_us: 0.0,
            max_batch,
            kv_cache_tokens: kv,
            tokens_per_chunk: tpc,
        }
    }

    /// Submits `n` identical jobs at once and returns, per job, the times
    /// (ms since submission) and contents of its emits.
    async fn run_jobs(
        p: EngineParams,
        n: usize,
        prompt: usize,
        max_tokens: usize,
    ) -> Vec<Vec<(u128, Emit)>> {
        let cancel = CancellationToken::new();
        let (h, task) = spawn(p, Arc::new(Metrics::default()), cancel.clone());
        let t0 = Instant::now();
        let mut rxs = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            h.submit(Job {
                prompt_tokens: prompt,
                max_tokens,
                tx,
            })
            .unwrap();
            rxs.push(rx);
        }
        let mut readers = Vec::new();
        for mut rx in rxs {
            readers.push(tokio::spawn(async move {
                let mut v = Vec::new();
                while let Some(e) = rx.recv().await {
                    v.push(((Instant::now() - t0).as_millis(), e));
                }
                v
            }));
        }
        let mut out = Vec::new();
        for r in readers {
            out.push(r.await.unwrap());
        }
        cancel.cancel();
        task.await.unwrap();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn fifth_request_waits_for_a_free_batch_slot() {
        let out = run_jobs(params(4, 1 << 20, 1), 5, 10, 3).await;
        for seq in &out[..4] {
            let times: Vec<u128> = seq.iter().map(|(t, _)| *t).collect();
            assert_eq!(times, vec![10, 20, 30]);
            assert!(seq[2].1.finished && !seq[1].1.finished);
        }
        // The 5th is admitted at the step boundary after the first four finish.
        let times: Vec<u128> = out[4].iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![40, 50, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn kv_capacity_queues_requests() {
        // Each request needs 10 + 40 = 50 tokens of KV; 120 fit two (K = 2).
        let out = run_jobs(params(256, 120, 1), 3, 10, 40).await;
        assert_eq!(out[0][0].0, 10);
        assert_eq!(out[1][0].0, 10);
        assert_eq!(out[0].last().unwrap().0, 400);
        assert_eq!(out[2][0].0, 410);
        assert_eq!(out[2].len(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn step_time_grows_with_batch_and_prefill() {
        let p = EngineParams {
            prefill_us_per_token: 100.0,
            decode_step_base_ms: 5.0,
            decode_step_per_seq_us: 1000.0,
            ..params(8, 1 << 20, 1)
        };
        // First step: 5 + 2×1 + 0.1×2×20 = 11 ms; then 5 + 2 = 7 ms per step.
        let out = run_jobs(p, 2, 20, 3).await;
        let times: Vec<u128> = out[0].iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![11, 18, 25]);
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_group_tokens() {
        let out = run_jobs(params(4, 1 << 20, 4), 1, 1, 10).await;
        let chunks: Vec<(u128, u32, bool)> = out[0]
            .iter()
            .map(|(t, e)| (*t, e.tokens, e.finished))
            .collect();
        assert_eq!(chunks, vec![(40, 4, false), (80, 4, false), (100, 2, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn disconnect_frees_kv() {
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let (h, task) = spawn(params(4, 100, 1), metrics.clone(), cancel.clone());
        let (tx1, rx1) = mpsc::unbounded_channel();
        h.submit(Job {
            prompt_tokens: 50,
            max_tokens: 50,
            tx: tx1,
        })
        .unwrap();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        h.submit(Job {
            prompt_tokens: 50,
            max_tokens: 50,
            tx: tx2,
        })
        .unwrap();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_millis(25)).await;
        drop(rx1);
        let first = rx2.recv().await.unwrap();
        assert_eq!(first.tokens, 1);
        // Dropped at the step ending at 30 ms; the 2nd is admitted then and
        // gets its first token at 40 ms.
        assert_eq!((Instant::now() - t0).as_millis(), 40);
        cancel.cancel();
        task.await.unwrap();
        assert!(rx2.recv().await.is_none());
    }
}
