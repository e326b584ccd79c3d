//! Arrival times: when each request should start, as offsets from the run's start.
//!
//! Open loop: inter-arrival gaps drawn from a gamma distribution with shape `burstiness` and mean
//! `1/rate` (vLLM's definition: burstiness 1 is a Poisson process, lower is burstier, higher is
//! more regular). The first request starts at 0. An infinite rate starts every request at 0, so
//! only the concurrency limit paces the run (closed loop). The times are absolute, never a tick
//! that accumulates rounding.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    /// Requests per second; `f64::INFINITY` sends everything at once.
    pub rate: f64,
    /// Gamma shape of the gaps; 1.0 = Poisson.
    pub burstiness: f64,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("--request-rate must be a positive number or inf, got {0}")]
    Rate(f64),
    #[error("--burstiness must be a positive number, got {0}")]
    Burstiness(f64),
}

impl Arrivals {
    pub fn closed_loop() -> Self {
        Arrivals {
            rate: f64::INFINITY,
            burstiness: 1.0,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.rate.is_nan() || self.rate <= 0.0 {
            return Err(ScheduleError::Rate(self.rate));
        }
        if !self.burstiness.is_finite() || self.burstiness <= 0.0 {
            return Err(ScheduleError::Burstiness(self.burstiness));
        }
        Ok(())
    }

    pub fn is_open_loop(&self) -> bool {
        self.rate.is_finite()
    }

    /// The offsets (ns from the start) of `n` arrivals.
    pub fn offsets_ns(&self, n: usize) -> Result<Vec<u64>, ScheduleError> {
        self.validate()?;
        if !self.is_open_loop() {
            return Ok(vec![0; n]);
        }
        let scale = 1.0 / (self.rate * self.burstiness);
        let gamma = Gamma::new(self.burstiness, scale)
            .map_err(|_| ScheduleError::Burstiness(self.burstiness))?;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut t = 0.0f64;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push((t * 1e9).round() as u64);
            t += gamma.sample(&mut rng);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_starts_everything_at_once() {
        assert_eq!(
            Arrivals::closed_loop().offsets_ns(3).unwrap(),
            vec![0, 0, 0]
        );
    }

    #[test]
    fn poisson_mean_rate_and_cv() {
        let a = Arrivals {
            rate: 50.0,
            burstiness: 1.0,
            seed: 7,
        };
        let t = a.offsets_ns(20_001).unwrap();
        assert_eq!(t[0], 0);
        let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.02).abs() < 0.0006, "mean gap {mean}");
        // exponential gaps: coefficient of variation 1
        assert!((var.sqrt() / mean - 1.0).abs() < 0.03);
    }

    #[test]
    fn burstiness_changes_the_spread_not_the_mean() {
        let cv = |b: f64| {
            let t = Arrivals {
                rate: 10.0,
                burstiness: b,
                seed: 1,
            }
            .offsets_ns(20_001)
            .unwrap();
            let g: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            let m = g.iter().sum::<f64>() / g.len() as f64;
            let sd = (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt();
            (m / 1e9, sd / m)
        };
        let (m4, cv4) = cv(4.0);
        let (m025, cv025) = cv(0.25);
        assert!((m4 - 0.1).abs() < 0.003 && (m025 - 0.1).abs() < 0.006);
        assert!(
            (cv4 - 0.5).abs() < 0.03,
            "gamma(k=4) cv is 1/sqrt(4): {cv4}"
        );
        assert!((cv025 - 2.0).abs() < 0.15, "gamma(k=0.25) cv is 2: {cv025}");
    }

    #[test]
    fn deterministic_under_a_seed_and_rejects_bad_values() {
        let a = Arrivals {
            rate: 3.0,
            burstiness: 1.0,
            seed: 9,
        };
        assert_eq!(a.offsets_ns(100).unwrap(), a.offsets_ns(100).unwrap());
        assert_eq!(
            Arrivals { rate: 0.0, ..a }.offsets_ns(1),
            Err(ScheduleError::Rate(0.0))
        );
        assert!(
            Arrivals {
                rate: f64::NAN,
                ..a
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            Arrivals {
                burstiness: -1.0,
                ..a
            }
            .validate(),
            Err(ScheduleError::Burstiness(-1.0))
        );
    }
}
