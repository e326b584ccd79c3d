//! The search for the largest concurrency that meets the thresholds, per input/output
//! combination. A state machine: ask [`Search::next_test`] what to test, tell it with
//! [`Search::record`] whether the test passed, until `next_test` says `None`.
//!
//! - [`Mode::Ascending`] (the original scripts'): the grid in ascending order; once a test fails after a
//!   pass, the rest of the combination is skipped.
//! - [`Mode::Bisect`]: the same walk up the grid, then a binary search between the last pass and
//!   the first failure: over the integers for a concurrency (the boundary is exact), down to a
//!   [`Resolution`] for a request rate (its steps are thousandths of a request per second, see
//!   `axis.rs`).
//!
//! Latency grows with concurrency and with the request rate, so pass/fail is taken to be
//! monotone: everything below a pass passes, everything above a failure fails.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The original scripts': ascending, stop after a pass then a fail.
    Ascending,
    /// Ascending, then bisect between the last pass and the first fail.
    Bisect,
}

/// When bisection stops: the gap between the last pass and the first failure it may leave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolution {
    /// One step (concurrencies: the boundary is exact).
    Exact,
    /// A fraction of the last passing step (rates: `--rate-resolution`, e.g. 0.05).
    Fraction(f64),
}

impl Resolution {
    /// Whether `lo` (a pass) and `hi` (a failure) are close enough to stop.
    fn closed(self, lo: u32, hi: u32) -> bool {
        let gap = match self {
            Resolution::Exact => 1,
            Resolution::Fraction(f) => ((f64::from(lo) * f).floor() as u32).max(1),
        };
        hi <= lo.saturating_add(gap)
    }
}

/// What the search found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The largest concurrency tested that passed.
    pub max_passing: Option<u32>,
    /// The smallest concurrency tested that failed.
    pub first_failing: Option<u32>,
    /// Concurrencies tested, in order.
    pub tested: Vec<u32>,
    /// Failures that a higher concurrency's pass overruled (latency was not monotone).
    pub failed_below_a_pass: Vec<u32>,
}

/// The search over one combination.
#[derive(Clone, Debug)]
pub struct Search {
    mode: Mode,
    resolution: Resolution,
    grid: Vec<u32>,
    /// Next grid position to test while walking up.
    pos: usize,
    outcome: Outcome,
    /// Asked and not yet recorded.
    pending: Option<u32>,
    done: bool,
}

impl Search {
    /// `grid`: the concurrencies to walk (sorted and deduplicated here); bisection to one.
    pub fn new(mode: Mode, grid: Vec<u32>) -> Search {
        Search::with_resolution(mode, grid, Resolution::Exact)
    }

    /// `grid`: the steps to walk (sorted and deduplicated here); bisection to `resolution`.
    pub fn with_resolution(mode: Mode, mut grid: Vec<u32>, resolution: Resolution) -> Search {
        grid.retain(|&c| c > 0);
        grid.sort_unstable();
        grid.dedup();
        let done = grid.is_empty();
        Search {
            mode,
            resolution,
            grid,
            pos: 0,
            outcome: Outcome::default(),
            pending: None,
            done,
        }
    }

    /// The next concurrency to test, or `None` when the search is over.
    pub fn next_test(&mut self) -> Option<u32> {
        if let Some(p) = self.pending {
            return Some(p);
        }
        if self.done {
            return None;
        }
        let c = match (self.outcome.max_passing, self.outcome.first_failing) {
            // the boundary is bracketed: bisect (or stop, in the original scripts' mode)
            (Some(lo), Some(hi)) => {
                if self.mode == Mode::Ascending || self.resolution.closed(lo, hi) {
                    self.done = true;
                    return None;
                }
                lo + (hi - lo) / 2
            }
            _ => match self.grid.get(self.pos) {
                Some(&c) => {
                    self.pos += 1;
                    c
                }
                None => {
                    self.done = true;
                    return None;
                }
            },
        };
        self.pending = Some(c);
        Some(c)
    }

    /// The result of the test `next_test` asked for.
    pub fn record(&mut self, concurrency: u32, pass: bool) {
        debug_assert_eq!(
            self.pending,
            Some(concurrency),
            "record the concurrency next_test() gave"
        );
        self.pending = None;
        self.outcome.tested.push(concurrency);
        if pass {
            self.outcome.max_passing = Some(
                self.outcome
                    .max_passing
                    .map_or(concurrency, |m| m.max(concurrency)),
            );
            // a failure below a pass (a cold start, a noisy server) is not the boundary: it is
            // reported, and the walk goes on up
            if let Some(f) = self.outcome.first_failing.filter(|&f| f <= concurrency) {
                self.outcome.first_failing = None;
                self.outcome.failed_below_a_pass.push(f);
            }
        } else {
            self.outcome.first_failing = Some(
                self.outcome
                    .first_failing
                    .map_or(concurrency, |m| m.min(concurrency)),
            );
        }
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Grid points never tested (skipped once the boundary was found).
    pub fn skipped(&self) -> &[u32] {
        if self.outcome.first_failing.is_some() && self.outcome.max_passing.is_some() {
            &self.grid[self.pos.min(self.grid.len())..]
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, grid: &[u32], k: u32) -> Outcome {
        let mut s = Search::new(mode, grid.to_vec());
        while let Some(c) = s.next_test() {
            s.record(c, c <= k);
        }
        s.outcome().clone()
    }

    #[test]
    fn ascending_is_the_seeds_walk() {
        let grid = [1, 2, 4, 8, 16, 32, 64];
        let o = run(Mode::Ascending, &grid, 20);
        assert_eq!(o.max_passing, Some(16));
        assert_eq!(o.first_failing, Some(32));
        assert_eq!(o.tested, vec![1, 2, 4, 8, 16, 32], "64 is skipped");
        // nothing passes: the original scripts test every point
        let o = run(Mode::Ascending, &grid, 0);
        assert_eq!((o.max_passing, o.tested.len()), (None, 7));
        // everything passes
        let o = run(Mode::Ascending, &grid, 1000);
        assert_eq!((o.max_passing, o.first_failing), (Some(64), None));
    }

    #[test]
    fn bisect_finds_the_exact_boundary_in_fewer_tests() {
        let grid: Vec<u32> = (0..9).map(|i| 1 << i).collect(); // 1..256
        for k in 1..256 {
            let o = run(Mode::Bisect, &grid, k);
            assert_eq!(o.max_passing, Some(k), "k = {k}");
            assert_eq!(o.first_failing, Some(k + 1), "k = {k}");
            // testing every concurrency up to the boundary would take k + 1 tests
            let walk = grid.iter().filter(|&&c| c <= k).count() + 1;
            let bisect = o.tested.len() - walk;
            assert!(
                bisect as f64 <= (k as f64).log2().ceil() + 1.0,
                "k = {k}: {:?}",
                o.tested
            );
            assert!(o.tested.len() < 20, "k = {k}: {} tests", o.tested.len());
        }
    }

    #[test]
    fn grids_are_cleaned_and_skips_reported() {
        let mut s = Search::new(Mode::Ascending, vec![8, 0, 2, 2, 4, 16]);
        let mut seen = vec![];
        while let Some(c) = s.next_test() {
            seen.push(c);
            s.record(c, c < 4);
        }
        assert_eq!(seen, vec![2, 4]);
        assert_eq!(s.skipped(), &[8, 16]);
        assert!(Search::new(Mode::Bisect, vec![]).next_test().is_none());
    }

    #[test]
    fn bisecting_a_rate_stops_at_the_resolution() {
        // rates 1, 2, 4, 8, 16 req/s in thousandths; the boundary at 5.3 req/s
        let grid: Vec<u32> = [1, 2, 4, 8, 16].iter().map(|r| r * 1000).collect();
        let k = 5300;
        let mut s = Search::with_resolution(Mode::Bisect, grid, Resolution::Fraction(0.05));
        while let Some(r) = s.next_test() {
            s.record(r, r <= k);
        }
        let o = s.outcome();
        let (lo, hi) = (o.max_passing.unwrap(), o.first_failing.unwrap());
        assert!(lo <= k && hi > k, "{o:?}");
        assert!(f64::from(hi - lo) <= 0.05 * f64::from(lo), "{o:?}");
        // 4 → 8 halved down to 5 %: 8000, then 6000, 5000, 5500, 5250, 5375 (stop: 125 ≤ 262)
        assert!(o.tested.len() <= 10, "{o:?}");
        // the exact resolution would go on to the thousandth
        let mut exact = Search::new(Mode::Bisect, [4000, 8000].to_vec());
        while let Some(r) = exact.next_test() {
            exact.record(r, r <= k);
        }
        assert_eq!(exact.outcome().max_passing, Some(k));
    }

    #[test]
    fn a_failure_below_a_pass_is_not_the_boundary() {
        // a cold start fails c=1, then 2..=8 pass and 16 fails
        for mode in [Mode::Ascending, Mode::Bisect] {
            let mut s = Search::new(mode, vec![1, 2, 4, 8, 16, 32]);
            while let Some(c) = s.next_test() {
                s.record(c, c != 1 && c <= 10);
            }
            let o = s.outcome();
            assert_eq!(o.failed_below_a_pass, vec![1], "{mode:?}");
            match mode {
                Mode::Ascending => {
                    assert_eq!((o.max_passing, o.first_failing), (Some(8), Some(16)))
                }
                Mode::Bisect => {
                    assert_eq!((o.max_passing, o.first_failing), (Some(10), Some(11)))
                }
            }
        }
    }
}
