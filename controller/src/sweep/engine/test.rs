//! One test of a sweep: its prompts (its own seed), its job on the load workers (waited for,
//! rerun when a worker is lost), its judgement and its files, committed after the hook.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use loadgen::DatasetSpec;

use super::{CANCEL_DRAIN, HookEvent, JOB_ATTEMPTS, Stop, StopError, Sweep, WORKER_WAIT};
use crate::cache_check::ExpectedCache;
use crate::server_metrics::ScrapeLog;
use crate::service::JobResult;
use crate::sweep::axis::Level;
use crate::sweep::entry::{Entry, EntryVerdict};
use crate::sweep::grid::Io;
use crate::sweep::plan::Plan;
use crate::sweep::results::TestKey;
use crate::sweep::threshold::Verdict;
use crate::target::{Prepared, preflight};
use crate::test_run::{Judging, Measured, ServerWatch, TestSpec, without_text};

/// The one request sent before a sweep to catch a rejected payload.
pub async fn preflight_plan(plan: &Plan, prep: &Prepared) -> anyhow::Result<()> {
    let io = plan.io[0];
    let p = loadgen::dataset::build(&dataset(plan, io), 1, &prep.tokenizer, plan.seed).await?;
    preflight(prep, &p[0]).await
}

impl Sweep<'_> {
    /// Runs one test and commits it. Errors with [`StopError`] when interrupted (the test is
    /// discarded) or when not one request succeeded (the server is not serving).
    pub(super) async fn test(&mut self, key: TestKey) -> anyhow::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let n = self.plan.prompts.for_level(key.level);
        let spec = self.test_spec(&key, n).await?;
        self.progress.start(&key, spec.requests());
        let cache_reset = match self.plan.reset_prefix_cache {
            true => Some(
                crate::prefix_reset::reset(
                    &self.base_urls,
                    self.prep.client.target().api_key.as_deref(),
                )
                .await,
            ),
            false => None,
        };
        let judging = Judging {
            expected_cache: spec.expected_cache,
            cache_reset,
            prep: &self.prep,
            endpoint: &self.plan.endpoint,
            num_prompts: spec.requests(),
            request_rate: spec.request_rate,
            burstiness: spec.burstiness,
            max_concurrency: spec.max_concurrency,
            percentiles: &self.percentiles,
            goodput: &[],
            date: chrono::Local::now(),
        };
        if let Some(hook) = &self.hook
            && hook(HookEvent::Start(key)).await.is_err()
        {
            return Err(StopError(Stop::Handover).into());
        }
        let (job, lost_workers, server) = self.run_job(&key, spec).await?;
        let m = judging.measure(job).await?;
        self.commit(key, m, lost_workers, server).await
    }

    /// The test's prompts (its own seed: the same on a rerun, other than every other test's)
    /// and load.
    async fn test_spec(&self, key: &TestKey, n: usize) -> anyhow::Result<TestSpec> {
        let warmup = self.plan.warmup_for(key.level);
        let seed = test_seed(self.plan.seed, key);
        // closed loop at a concurrency; open loop at a rate (Poisson unless --burstiness),
        // capped by --max-concurrency if given
        let (max_concurrency, request_rate, burstiness) = match key.level {
            Level::Concurrency(c) => (Some(c as usize), f64::INFINITY, 1.0),
            Level::Rate(r) => (
                self.plan.max_concurrency.map(|c| c as usize),
                r.per_s(),
                self.plan.burstiness,
            ),
        };
        let load = TestSpec {
            prompts: vec![],
            sessions: vec![],
            warmup_prompts: vec![],
            warmup_requests: warmup,
            max_concurrency,
            request_rate,
            burstiness,
            seed,
            workers: self.want_workers,
            // a conversation's reuse is its own history, not known beforehand: not judged
            expected_cache: Default::default(),
            memory: self.memory(),
        };
        if let Some(conv) = &self.plan.conversation {
            let conv = loadgen::conversation::ConversationSpec {
                input_len: key.io.input_len,
                output_len: key.io.output_len,
                ..conv.clone()
            };
            let (sessions, prompts, warmup_prompts) = crate::test_run::conversation_prompts(
                &conv,
                n,
                warmup.min(1000),
                &self.prep.tokenizer,
                seed,
            )
            .await
            .with_context(|| format!("building the sessions of test {}", key.id()))?;
            return Ok(TestSpec {
                prompts,
                sessions,
                warmup_prompts,
                ..load
            });
        }
        let what = format!(
            "the prompts of test {}, tokenized by {}",
            key.id(),
            self.prep.tokenizer.id()
        );
        let dataset = dataset(self.plan, key.io);
        let build =
            loadgen::dataset::build(&dataset, n + warmup.min(1000), &self.prep.tokenizer, seed);
        let mut prompts = crate::waiting::announced(&what, build)
            .await
            .with_context(|| format!("building the prompts of test {}", key.id()))?;
        let warmup_prompts = prompts.split_off(n);
        let expected_cache = ExpectedCache::of(
            &dataset,
            seed,
            &prompts,
            if warmup > 0 { warmup_prompts.len() } else { 0 },
        );
        Ok(TestSpec {
            expected_cache,
            prompts,
            warmup_prompts,
            ..load
        })
    }

    /// Runs the test's job on the workers (waited for, not failed on, while they reconnect);
    /// a worker lost mid-test discards the run and runs it again (3 runs at most). Returns the
    /// job and the workers lost.
    async fn run_job(
        &self,
        key: &TestKey,
        spec: TestSpec,
    ) -> anyhow::Result<(JobResult, Vec<String>, Option<ScrapeLog>)> {
        let want = self.want_workers.unwrap_or(1);
        tokio::select! {
            r = self.workers.wait_for(want, WORKER_WAIT) => { r.with_context(|| format!("test {}", key.id()))?; }
            _ = self.cancel.cancelled() => return Err(self.stopped()),
        }
        let counter = Arc::new(AtomicU64::new(0));
        let ticker = self.progress.follow(counter.clone());
        let mut job = spec.job(
            &self.prep,
            self.base_urls.clone(),
            &self.plan.endpoint,
            counter,
        );
        // scraped once per test, here in the controller (never once per worker)
        let watch = (!self.metrics.is_empty())
            .then(|| ServerWatch::start(self.metrics.clone(), self.plan.server_metrics_interval));
        if let Some(w) = &watch {
            w.gate(&mut job);
        }
        let run = self
            .workers
            .run_job_retrying(job, JOB_ATTEMPTS, WORKER_WAIT);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = self.cancel.cancelled() => {
                self.workers.cancel_all().await;
                // the workers stop and report within moments; a job between two attempts, or
                // not yet assigned, is dropped (its guard cancels whoever is still on it)
                let _ = tokio::time::timeout(CANCEL_DRAIN, &mut run).await;
                ticker.abort();
                return Err(self.stopped());
            }
        };
        ticker.abort();
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let log = match watch {
            Some(w) => Some(w.finish().await),
            None => None,
        };
        let (job, lost) = result.with_context(|| format!("test {}", key.id()))?;
        Ok((job, lost, log))
    }

    /// Judges a measured test, writes its files (after the commit hook) and keeps its records
    /// for pooling.
    async fn commit(
        &mut self,
        key: TestKey,
        m: Measured,
        lost_workers: Vec<String>,
        server: Option<ScrapeLog>,
    ) -> anyhow::Result<()> {
        let verdict = self
            .thresholds
            .as_ref()
            .map(|t| super::unless_invalid(t.judge(&m.summary), m.health.invalid.as_deref()));
        // the test's window in Unix time, for charts over time (one anchor for the entry and the
        // GPU samples)
        let unix_of = crate::telemetry::unix_clock();
        let (mut entry, mut log) = self.entry(&key, &m, verdict.as_ref(), lost_workers, &unix_of);
        if let Some(hook) = &self.hook
            && hook(HookEvent::Commit(key)).await.is_err()
        {
            // deposed: the new leader runs this test again
            return Err(StopError(Stop::Handover).into());
        }
        if self.telemetry {
            let nodes = m.gpu_window(&self.registry).await;
            entry.gpu = Some(m.gpu_stats(&nodes));
            let gpu_dir = self.dir.dir.join(key.gpu_dir());
            crate::gpu_stats::write_logs(&gpu_dir, &nodes, m.from_ns)?;
            crate::output::write_atomic(
                &gpu_dir.join("samples.csv"),
                crate::telemetry::samples_csv(&nodes, &unix_of).as_bytes(),
            )?;
            log.push_str(&crate::gpu_stats::text(&nodes));
        }
        if let Some(scraped) = &server {
            let stats = m.server_stats(scraped);
            log.push_str(&stats.text());
            entry.server = Some(stats);
            crate::output::write_atomic(
                &self
                    .dir
                    .dir
                    .join(key.server_metrics_dir())
                    .join("samples.csv"),
                scraped.samples_csv(&unix_of).as_bytes(),
            )?;
        }
        let all_failed = m.summary.completed == 0;
        if all_failed {
            // kept, with its failures counted, but not a verdict: `--resume` runs it again
            entry.aborted = Some("every request failed".into());
        }
        self.dir.commit(&key, &entry, &m.records, &log)?;
        let (summary, records) = (m.summary, m.records);
        // kept for pooling while they fit in memory; spilled ones are read from the file
        if records.stats().spilled == 0 {
            self.records
                .insert(key, Arc::new(without_text(records.into_vec()?)));
        }
        self.progress.finished(&key, &summary, verdict.as_ref());
        if all_failed {
            return Err(StopError(Stop::ServerDown(format!(
                "every request of test {} failed: {}",
                key.id(),
                summary.failures_text()
            )))
            .into());
        }
        Ok(())
    }

    /// The test's result entry (without GPU statistics) and its printed log.
    fn entry(
        &self,
        key: &TestKey,
        m: &Measured,
        verdict: Option<&Verdict>,
        lost_workers: Vec<String>,
        unix_of: &impl Fn(u64) -> f64,
    ) -> (Entry, String) {
        let mut log = m.text();
        let threshold = self.plan.threshold.as_ref().map(ToString::to_string);
        if let (Some(t), Some(v)) = (&threshold, verdict) {
            log.push_str(&format!(
                "threshold {t}: {}\n",
                if v.pass {
                    "PASS".to_string()
                } else {
                    format!("FAIL ({})", v.violations.join("; "))
                }
            ));
        }
        let serde_json::Value::Object(run_result) = m.vllm_result(false) else {
            unreachable!("a result is an object")
        };
        let entry = Entry {
            version: crate::test_run::RESULT_VERSION,
            level: key.level,
            input_len: key.io.input_len,
            output_len: key.io.output_len,
            run: key.run,
            test_id: key.id(),
            verdict: threshold
                .as_deref()
                .zip(verdict)
                .map(|(t, v)| EntryVerdict::new(t, v)),
            metadata: (!self.plan.metadata.is_empty()).then(|| self.plan.metadata.clone()),
            started_at_unix_s: unix_of(m.from_ns),
            ended_at_unix_s: unix_of(m.to_ns),
            load_workers: m.load_workers.clone(),
            start_skew_ms: m.start_skew_ms,
            attempts: (!lost_workers.is_empty()).then(|| lost_workers.len() + 1),
            lost_workers,
            aborted: None,
            gpu: None,
            server: None,
            run_result,
        };
        (entry, log)
    }
}

fn dataset(plan: &Plan, io: Io) -> DatasetSpec {
    DatasetSpec::Random {
        input_len: io.input_len,
        output_len: io.output_len,
        range_ratio: plan.random_range_ratio,
        prefix_len: plan.prefix_len,
        prefix_groups: plan.prefix_groups,
    }
}

/// Each test's own seed: its prompts differ from every other test's (a server with prefix
/// caching must not serve a test from an earlier one's cache) and are the same on a rerun.
fn test_seed(base: u64, key: &TestKey) -> u64 {
    let mut h = base ^ 0x9e37_79b9_7f4a_7c15;
    for v in [
        key.io.input_len as u64,
        key.io.output_len as u64,
        key.level.step() as u64,
        key.run as u64,
    ] {
        h = (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h
}
