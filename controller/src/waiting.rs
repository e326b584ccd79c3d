//! Saying what benchctl waits for: when nothing visible happens for a few seconds (the model
//! list, the server's `/tokenize`, the preflight, a test whose requests do not finish), a line
//! names what it waits on and for how long, so that a slow server can be told from a dead one.
//! With `--quiet`, the same lines go to stderr at a lower rate.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

/// Silence before the first line.
pub const FIRST: Duration = Duration::from_secs(3);
/// Between the first two lines; each later gap doubles, up to [`MAX_GAP`], so that a long wait
/// (a long output on a healthy server) does not fill the terminal.
pub const EVERY: Duration = Duration::from_secs(5);
pub const MAX_GAP: Duration = Duration::from_secs(60);
/// Silence before the first line, and between two, with `--quiet`.
pub const QUIET_FIRST: Duration = Duration::from_secs(5);
pub const QUIET_EVERY: Duration = Duration::from_secs(30);

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: the lines come at the slower pace (set once by the command).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// When the lines come.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub first: Duration,
    pub every: Duration,
}

impl Pace {
    pub fn new(quiet: bool) -> Pace {
        if quiet {
            Pace {
                first: QUIET_FIRST,
                every: QUIET_EVERY,
            }
        } else {
            Pace {
                first: FIRST,
                every: EVERY,
            }
        }
    }
}

/// Runs `fut`; while it takes longer than the pace's first delay, prints on stderr
/// "waiting for WHAT (Ns)" at the pace's rate.
pub async fn announced<F: Future>(what: &str, fut: F) -> F::Output {
    let pace = Pace::new(quiet());
    let start = Instant::now();
    let mut next = start + pace.first;
    let mut gap = pace.every;
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = sleep_until(next) => {
                eprintln!("waiting for {what} ({})", secs(start.elapsed()));
                next += gap;
                gap = (gap * 2).min(MAX_GAP);
            }
        }
    }
}

/// A run's progress counter watched for silence: [`Silence::check`] gives a line when no
/// request has finished for the pace's delay.
pub struct Silence {
    pace: Pace,
    last: u64,
    since: Instant,
    next: Instant,
    gap: Duration,
    /// Said in each line: the limits that will end the wait.
    limits: String,
}

impl Silence {
    pub fn new(limits: String) -> Silence {
        Silence::with_pace(Pace::new(quiet()), limits)
    }

    pub fn with_pace(pace: Pace, limits: String) -> Silence {
        let now = Instant::now();
        Silence {
            pace,
            last: 0,
            since: now,
            next: now + pace.first,
            gap: pace.every,
            limits,
        }
    }

    /// `done` requests of the run have finished: a line to show if it is time for one.
    pub fn check(&mut self, done: u64) -> Option<String> {
        let now = Instant::now();
        if done != self.last {
            self.last = done;
            self.since = now;
            self.next = now + self.pace.first;
            self.gap = self.pace.every;
            return None;
        }
        if now < self.next {
            return None;
        }
        self.next = now + self.gap;
        self.gap = (self.gap * 2).min(MAX_GAP);
        let quiet_for = secs(now - self.since);
        let limits = match self.limits.is_empty() {
            true => String::new(),
            false => format!("; {}", self.limits),
        };
        Some(if done == 0 {
            format!(
                "waiting for the server: no request has finished yet ({quiet_for}; warm-up, queueing, prefill or long outputs{limits})"
            )
        } else {
            format!(
                "waiting for the server: no request has finished for {quiet_for} ({done} done{limits})"
            )
        })
    }
}

/// The limits that end a request, for the lines above.
pub fn limits_text(timeout: Duration, stall: Option<Duration>) -> String {
    let stall = match stall {
        Some(s) => humantime::format_duration(s).to_string(),
        None => "off".into(),
    };
    format!(
        "a request ends at --timeout {}, --stall-timeout {stall}",
        humantime::format_duration(timeout)
    )
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_is_told_at_the_pace_and_progress_resets_it() {
        let mut s = Silence::with_pace(Pace::new(false), "limits".into());
        assert_eq!(s.check(0), None);
        tokio::time::advance(FIRST).await;
        let line = s.check(0).unwrap();
        assert!(line.contains("no request has finished yet (3s"), "{line}");
        assert!(line.contains("limits"), "{line}");
        assert_eq!(s.check(0), None, "not again before EVERY");
        tokio::time::advance(EVERY).await;
        assert!(s.check(0).unwrap().contains("(8s"));
        tokio::time::advance(EVERY).await;
        assert_eq!(s.check(0), None, "the gaps double");
        tokio::time::advance(EVERY).await;
        assert!(s.check(0).unwrap().contains("(18s"));
        assert_eq!(s.check(2), None, "a finished request resets the silence");
        tokio::time::advance(FIRST).await;
        assert!(s.check(2).unwrap().contains("for 3s (2 done"));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_is_slower() {
        let mut s = Silence::with_pace(Pace::new(true), String::new());
        tokio::time::advance(FIRST).await;
        assert_eq!(s.check(0), None);
        tokio::time::advance(QUIET_FIRST - FIRST).await;
        assert!(s.check(0).is_some());
        tokio::time::advance(EVERY).await;
        assert_eq!(s.check(0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quick_future_says_nothing_and_returns_its_value() {
        assert_eq!(announced("x", async { 7 }).await, 7);
        let slow = announced("y", tokio::time::sleep(Duration::from_secs(9)));
        slow.await;
    }
}
