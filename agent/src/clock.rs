//! The agent's clock: CLOCK_MONOTONIC plus an injectable constant skew.
//!
//! Every timestamp the agent puts on the wire (sample `t_ns`, pong `t2_ns`/`t3_ns`) comes from
//! [`Clock::now_ns`], so a test can pretend the agent's clock is off by a known amount and check
//! that the controller's offset estimate recovers it.

use std::time::Duration;

use rustix::time::{ClockId, Timespec, clock_gettime};

/// CLOCK_MONOTONIC shifted by a constant skew (0 outside tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    skew_ns: i64,
}

impl Clock {
    /// A clock that reads CLOCK_MONOTONIC + `skew_ns`.
    pub fn new(skew_ns: i64) -> Self {
        Self { skew_ns }
    }

    /// The injected skew, ns.
    pub fn skew_ns(&self) -> i64 {
        self.skew_ns
    }

    /// Now, in ns of the (skewed) agent clock.
    pub fn now_ns(&self) -> u64 {
        monotonic_ns().saturating_add_signed(self.skew_ns)
    }
}

/// CLOCK_MONOTONIC, ns.
pub fn monotonic_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::Monotonic))
}

/// CPU time consumed by the calling thread (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_time() -> Duration {
    Duration::from_nanos(timespec_ns(clock_gettime(ClockId::ThreadCPUTime)))
}

fn timespec_ns(ts: Timespec) -> u64 {
    // Both clocks start near boot and never go negative.
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_shifts_the_clock() {
        let plain = Clock::new(0).now_ns();
        let ahead = Clock::new(5_000_000_000).now_ns();
        let behind = Clock::new(-1_000_000_000).now_ns();
        assert!(ahead >= plain + 5_000_000_000);
        assert!(ahead < plain + 6_000_000_000);
        assert!(behind < plain);
        assert!(monotonic_ns() >= plain);
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
    }
}
