//! What a person watching a sweep sees: one bar over the sweep's requests and a line per
//! finished test, also sent to the clients following a controller-run sweep.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loadgen::report::Summary;

use super::grid::Io;
use super::plan::Plan;
use super::results::TestKey;
use super::threshold::Verdict;

/// The progress display: one bar over the sweep's requests (an upper bound until the search has
/// skipped what it does not need), with an ETA, and a line per finished test.
pub struct Progress {
    bar: indicatif::ProgressBar,
    quiet: bool,
    /// Distributed mode: what clients following the sweep see.
    feed: Option<Arc<super::feed::Feed>>,
    /// Requests of finished tests.
    done: Arc<AtomicU64>,
    /// The limits that end a silent request, said when none finishes for a while.
    limits: String,
}

impl Progress {
    pub fn new(
        plan: &Plan,
        searching: bool,
        quiet: bool,
        feed: Option<Arc<super::feed::Feed>>,
    ) -> Progress {
        let runs = if searching { 1 } else { plan.repeats as u64 };
        let per_io: u64 = plan
            .levels()
            .into_iter()
            .map(|l| plan.prompts.for_level(l) as u64 * runs)
            .sum();
        let total = per_io * plan.io.len() as u64;
        let bar = crate::progress::bar(total, quiet);
        Progress {
            bar,
            quiet,
            feed,
            done: Arc::new(AtomicU64::new(0)),
            limits: String::new(),
        }
    }

    /// Names the request limits in the lines said when no request finishes for a while.
    pub fn with_limits(mut self, limits: String) -> Progress {
        self.limits = limits;
        self
    }

    pub fn already_done(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_length(len.max(n));
        self.bar.set_position(n);
        // the ETA is of what remains, not of what an earlier process did
        self.bar.reset_eta();
        self.publish();
    }

    pub fn line(&self, s: String) {
        if let Some(f) = &self.feed {
            f.line(s.clone());
        }
        if self.quiet {
            tracing::info!("{s}");
        } else if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }

    pub fn start(&self, key: &TestKey, n: usize) {
        self.bar
            .set_message(format!("test {} ({n} requests)", key.id()));
        // a test the upper bound did not count (bisect, repeats) lengthens the bar
        let done = self.done.load(Ordering::Relaxed);
        let len = self.bar.length().unwrap_or(0);
        if done + n as u64 > len {
            self.bar.set_length(done + n as u64);
        }
        self.publish();
    }

    /// Follows a running test's record counter.
    pub fn follow(&self, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
        let bar = self.bar.clone();
        let done = self.done.clone();
        let feed = self.feed.clone();
        let mut silence = crate::waiting::Silence::new(self.limits.clone());
        tokio::spawn(async move {
            loop {
                let n = counter.load(Ordering::Relaxed);
                bar.set_position(done.load(Ordering::Relaxed) + n);
                if let Some(line) = silence.check(n) {
                    if let Some(f) = &feed {
                        f.line(line.clone());
                    }
                    crate::progress::note(&bar, line);
                }
                publish(feed.as_deref(), &bar);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    pub fn publish(&self) {
        publish(self.feed.as_deref(), &self.bar);
    }

    pub fn finished(&self, key: &TestKey, s: &Summary, verdict: Option<&Verdict>) {
        let n = (s.completed + s.failed) as u64;
        self.done.fetch_add(n, Ordering::Relaxed);
        self.bar.set_position(self.done.load(Ordering::Relaxed));
        self.publish();
        let m = |metric| {
            s.metrics
                .get(&metric)
                .map(|d| format!("{:.1}", d.mean))
                .unwrap_or("-".into())
        };
        use loadgen::report::Metric::*;
        let v = match verdict {
            None => String::new(),
            Some(v) if v.pass => "  PASS".into(),
            Some(v) => format!("  FAIL: {}", v.violations.join("; ")),
        };
        self.line(format!(
            "{:<26} {:>5} ok {:>3} failed  {:>9.1} tok/s  TTFT {} ms  TPOT {} ms  E2EL {} ms{v}",
            key.id(),
            s.completed,
            s.failed,
            s.output_throughput,
            m(Ttft),
            m(Tpot),
            m(E2el),
        ));
    }

    /// The search skipped these steps of `io` (concurrencies, rates): the bar shortens.
    pub fn skip(&self, _io: Io, skipped: &[u32], plan: &Plan) {
        let less: u64 = skipped
            .iter()
            .map(|&s| plan.prompts.for_level(plan.axis.level(s)) as u64)
            .sum();
        let len = self.bar.length().unwrap_or(0);
        self.bar.set_length(
            len.saturating_sub(less)
                .max(self.done.load(Ordering::Relaxed)),
        );
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Sends the bar's state to the clients following the sweep (distributed mode).
fn publish(feed: Option<&super::feed::Feed>, bar: &indicatif::ProgressBar) {
    if let Some(f) = feed {
        f.progress(
            bar.position(),
            bar.length().unwrap_or(0),
            bar.message().to_string(),
        );
    }
}
