//! The pace of a session's clock probes (`ClockPing`), the same for agents and load workers.

use std::time::Duration;

use loadgen::clock::mono_ns;
use tokio::time::Instant;

/// How often each peer's clock is probed (ten times faster for the first exchanges).
const PING_EVERY: Duration = Duration::from_secs(1);
const FIRST_PINGS: usize = 8;

/// The next `ClockPing` of one session: the first at once, then every [`PING_EVERY`], ten times
/// faster for the first [`FIRST_PINGS`].
pub(super) struct PingTicker {
    ping_id: u64,
    next: Instant,
}

impl PingTicker {
    pub(super) fn new() -> Self {
        PingTicker {
            ping_id: 0,
            next: Instant::now(),
        }
    }

    /// Waits until the next ping is due and returns it, stamped now. Cancel-safe (a branch of
    /// `select!`): nothing changes until the wait is over.
    pub(super) async fn tick(&mut self) -> proto::ClockPing {
        tokio::time::sleep_until(self.next).await;
        self.ping_id += 1;
        let ping = proto::ClockPing {
            ping_id: self.ping_id,
            t1_ns: mono_ns(),
        };
        let every = if (self.ping_id as usize) < FIRST_PINGS {
            PING_EVERY / 10
        } else {
            PING_EVERY
        };
        self.next += every;
        ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first ping goes at once, the next ones every 100 ms until the eighth, then every
    /// second; ids count from 1.
    #[tokio::test(start_paused = true)]
    async fn pings_fast_then_every_second() {
        let t0 = Instant::now();
        let mut ticker = PingTicker::new();
        let mut at = Vec::new();
        for id in 1..=10 {
            let ping = ticker.tick().await;
            assert_eq!(ping.ping_id, id);
            at.push((Instant::now() - t0).as_millis());
        }
        assert_eq!(at, [0, 100, 200, 300, 400, 500, 600, 700, 1700, 2700]);
    }
}
