//! Each peer's clock offset, NTP-style.
//!
//! One exchange: the controller sends a ping at t1 (its clock), the peer receives it at t2 and
//! answers at t3 (peer clock), the controller receives the pong at t4. Then
//! offset θ = ((t2 − t1) + (t3 − t4)) / 2 (peer − controller) and round-trip delay
//! δ = (t4 − t1) − (t3 − t2). Whatever the path's asymmetry, the true offset lies within θ ± δ/2,
//! so of the recent exchanges the one with the smallest delay gives the tightest bound
//! (the minimum-delay filter). Both the offset and that bound are kept.

use std::collections::VecDeque;

/// Exchanges remembered for the filter.
const WINDOW: usize = 32;

/// One ping/pong exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub t1: u64,
    pub t2: u64,
    pub t3: u64,
    pub t4: u64,
}

impl Exchange {
    /// Peer clock minus controller clock, ns.
    pub fn offset(&self) -> i64 {
        ((self.t2 as i128 - self.t1 as i128 + self.t3 as i128 - self.t4 as i128) / 2) as i64
    }

    /// Round-trip time not spent in the peer, ns.
    pub fn delay(&self) -> u64 {
        (self.t4.saturating_sub(self.t1)).saturating_sub(self.t3.saturating_sub(self.t2))
    }
}

/// The offset estimate of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    /// Peer − controller, ns.
    pub offset_ns: i64,
    /// The true offset is within `offset_ns ± uncertainty_ns`.
    pub uncertainty_ns: u64,
    /// Exchanges seen in all.
    pub samples: u64,
}

impl Offset {
    /// A peer timestamp on the controller's clock.
    pub fn to_controller(&self, peer_ns: u64) -> u64 {
        (peer_ns as i128 - self.offset_ns as i128).max(0) as u64
    }

    /// A controller timestamp on the peer's clock.
    pub fn to_peer(&self, controller_ns: u64) -> u64 {
        (controller_ns as i128 + self.offset_ns as i128).max(0) as u64
    }
}

/// Minimum-delay filter over the last exchanges.
#[derive(Debug, Default)]
pub struct ClockEstimator {
    recent: VecDeque<Exchange>,
    total: u64,
    same_host: bool,
}

impl ClockEstimator {
    /// For a peer that registered with `boot_id`: on this machine (same boot id) the clocks are
    /// the same CLOCK_MONOTONIC and the offset is exactly 0; elsewhere it is estimated.
    pub fn for_peer(boot_id: &str) -> ClockEstimator {
        let here = loadgen::clock::boot_id();
        ClockEstimator {
            same_host: !boot_id.is_empty() && boot_id == here,
            ..Default::default()
        }
    }

    pub fn add(&mut self, e: Exchange) {
        if e.t4 < e.t1 || e.t3 < e.t2 {
            return; // not a valid exchange
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
        self.total += 1;
    }

    /// The current estimate, `None` before the first exchange.
    pub fn estimate(&self) -> Option<Offset> {
        if self.same_host {
            return Some(Offset {
                offset_ns: 0,
                uncertainty_ns: 0,
                samples: self.total,
            });
        }
        let best = self.recent.iter().min_by_key(|e| e.delay())?;
        Some(Offset {
            offset_ns: best.offset(),
            uncertainty_ns: best.delay().div_ceil(2),
            samples: self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer `skew` ns ahead; the ping takes `up` ns, the pong `down` ns, the peer holds it `hold`.
    fn exchange(t1: u64, skew: i64, up: u64, hold: u64, down: u64) -> Exchange {
        let t2 = (t1 + up) as i64 + skew;
        let t3 = t2 + hold as i64;
        Exchange {
            t1,
            t2: t2 as u64,
            t3: t3 as u64,
            t4: t1 + up + hold + down,
        }
    }

    #[test]
    fn symmetric_path_gives_the_exact_offset() {
        let e = exchange(1_000_000, 5_000_000, 100, 20, 100);
        assert_eq!(e.offset(), 5_000_000);
        assert_eq!(e.delay(), 200);
    }

    #[test]
    fn the_minimum_delay_exchange_wins_and_bounds_the_error() {
        let skew = -123_456_789;
        let mut c = ClockEstimator::default();
        // noisy, asymmetric exchanges, and one quick one
        c.add(exchange(10_000, skew, 9_000, 50, 300));
        c.add(exchange(20_000, skew, 300, 50, 7_000));
        c.add(exchange(30_000, skew, 150, 50, 110));
        c.add(exchange(40_000, skew, 5_000, 50, 5_500));
        let o = c.estimate().unwrap();
        assert_eq!(o.uncertainty_ns, 130); // (150 + 110) / 2
        assert!(
            (o.offset_ns - skew).unsigned_abs() <= o.uncertainty_ns,
            "{o:?}"
        );
        assert_eq!(o.to_controller(o.to_peer(1_000_000_000)), 1_000_000_000);
    }

    #[test]
    fn the_true_offset_is_always_within_the_bound() {
        // any asymmetry: |θ − true| ≤ δ/2
        for (up, down) in [(1, 1_000_000), (1_000_000, 1), (5, 5), (0, 0)] {
            let e = exchange(7_000_000, 42_000, up, 1_000, down);
            assert!(
                (e.offset() - 42_000).unsigned_abs() <= e.delay().div_ceil(2),
                "{up} {down}"
            );
        }
    }

    #[test]
    fn a_peer_on_this_machine_has_offset_zero() {
        let c = ClockEstimator::for_peer(&loadgen::clock::boot_id());
        assert_eq!(
            c.estimate().map(|o| (o.offset_ns, o.uncertainty_ns)),
            Some((0, 0))
        );
        assert!(
            ClockEstimator::for_peer("another-machine")
                .estimate()
                .is_none()
        );
        assert!(ClockEstimator::for_peer("").estimate().is_none());
    }

    #[test]
    fn invalid_exchanges_are_ignored() {
        let mut c = ClockEstimator::default();
        c.add(Exchange {
            t1: 10,
            t2: 5,
            t3: 4,
            t4: 20,
        });
        assert!(c.estimate().is_none());
    }
}
