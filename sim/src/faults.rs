//! Deterministic fault injection for the simulator.
//!
//! Every generation request gets an arrival index (0-based, in the order the
//! handlers see the requests). The fault of a request is a pure function of
//! `(seed, arrival index, rates)`, so a run against the simulator is
//! reproducible. The four rates are *exclusive* fractions of the requests:
//! one uniform draw `u` in `[0, 1)` is compared with the cumulative rates in
//! the order error, malformed, truncate, stall (so their sum must be ≤ 1).

/// What goes wrong with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Nothing: a normal response.
    None,
    /// HTTP 500 with an OpenAI-style error JSON, before any streaming.
    Error,
    /// The 2nd content event is replaced by broken JSON (`data: {"choices": [`).
    Malformed,
    /// After half of the tokens the body is aborted (no terminating chunk).
    Truncate,
    /// After the first content chunk the stream stays silent forever.
    Stall,
}

/// The four fault rates, each a fraction in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FaultRates {
    pub error: f64,
    pub malformed: f64,
    pub truncate: f64,
    pub stall: f64,
}

impl FaultRates {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, r) in [
            ("fault_error_rate", self.error),
            ("fault_malformed_rate", self.malformed),
            ("fault_truncate_rate", self.truncate),
            ("fault_stall_rate", self.stall),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&r),
                "{name} must be in [0, 1], got {r}"
            );
        }
        let sum = self.error + self.malformed + self.truncate + self.stall;
        anyhow::ensure!(
            sum <= 1.0 + 1e-9,
            "the fault rates are exclusive fractions of the requests and must sum to at most 1, got {sum}"
        );
        Ok(())
    }

    /// The fault of the request with this arrival index.
    pub(crate) fn decide(&self, seed: u64, arrival_index: u64) -> Fault {
        if self.error + self.malformed + self.truncate + self.stall <= 0.0 {
            return Fault::None;
        }
        let u = unit_f64(mix(seed ^ 0xFA17_FA17_FA17_FA17, arrival_index));
        let mut acc = self.error;
        if u < acc {
            return Fault::Error;
        }
        acc += self.malformed;
        if u < acc {
            return Fault::Malformed;
        }
        acc += self.truncate;
        if u < acc {
            return Fault::Truncate;
        }
        acc += self.stall;
        if u < acc {
            return Fault::Stall;
        }
        Fault::None
    }
}

/// One SplitMix64 step: advances `state` and returns the next output.
#[inline]
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Combines the seed with a request's arrival index into a well-mixed value.
pub(crate) fn mix(seed: u64, index: u64) -> u64 {
    let mut s = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    splitmix64(&mut s)
}

fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected_and_deterministic() {
        let rates = FaultRates {
            error: 0.1,
            malformed: 0.2,
            truncate: 0.0,
            stall: 0.3,
        };
        let n = 20_000;
        let mut counts = [0usize; 5];
        for i in 0..n {
            let f = rates.decide(7, i);
            assert_eq!(f, rates.decide(7, i));
            counts[f as usize] += 1;
        }
        let frac = |c: usize| c as f64 / n as f64;
        assert!((frac(counts[Fault::Error as usize]) - 0.1).abs() < 0.02);
        assert!((frac(counts[Fault::Malformed as usize]) - 0.2).abs() < 0.02);
        assert_eq!(counts[Fault::Truncate as usize], 0);
        assert!((frac(counts[Fault::Stall as usize]) - 0.3).abs() < 0.02);
        for f in [
            Fault::Error,
            Fault::Malformed,
            Fault::Truncate,
            Fault::Stall,
        ] {
            let one = FaultRates {
                error: (f == Fault::Error) as u8 as f64,
                malformed: (f == Fault::Malformed) as u8 as f64,
                truncate: (f == Fault::Truncate) as u8 as f64,
                stall: (f == Fault::Stall) as u8 as f64,
            };
            assert!((0..100).all(|i| one.decide(3, i) == f));
        }
        assert!(
            FaultRates {
                error: 0.6,
                stall: 0.6,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
