//! The agent's clock: CLOCK_MONOTONIC plus an injectable constant skew.
//!
//! Every timestamp the agent puts on the wire (sample `t_ns`, pong `t2_ns`/`t3_ns`) comes from
//! [`Clock::now_ns`], so a test can pretend the agent's clock is off by a known amount and check
//! that the controller's offset estimate recovers it.

use cluster::clock::mono_ns;

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
        mono_ns().saturating_add_signed(self.skew_ns)
    }
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
        assert!(mono_ns() >= plain);
    }
}
