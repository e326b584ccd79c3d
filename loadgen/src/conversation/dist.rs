//! A value fixed or drawn from a distribution, for `--turns` and `--think-time`:
//! `4`, `uniform:2:6` (inclusive), `exp:MEAN` (exponential); durations in humantime (`2s`,
//! `uniform:500ms:3s`, `exp:2s`).

use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// A distribution over `f64` (turns, or nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum Dist {
    Fixed { value: f64 },
    Uniform { low: f64, high: f64 },
    Exp { mean: f64 },
}

impl Dist {
    /// Parses `SPEC` for `flag`, each number read by `unit` (errors name the flag and value).
    fn parse_with(
        flag: &str,
        spec: &str,
        unit: impl Fn(&str) -> Option<f64>,
        what: &str,
    ) -> Result<Dist, String> {
        let bad = |why: &str| {
            format!(
                "{flag}: {spec:?} {why} (expected {what}, uniform:LOW:HIGH or exp:MEAN, e.g. uniform:2:6)"
            )
        };
        let num = |s: &str| unit(s).filter(|v| v.is_finite() && *v >= 0.0);
        let parts: Vec<&str> = spec.split(':').collect();
        let d = match parts.as_slice() {
            [v] => Dist::Fixed {
                value: num(v).ok_or_else(|| bad("is not a value"))?,
            },
            ["uniform", lo, hi] => {
                let (low, high) = (
                    num(lo).ok_or_else(|| bad("has a bad low bound"))?,
                    num(hi).ok_or_else(|| bad("has a bad high bound"))?,
                );
                if low > high {
                    return Err(bad("has its low bound above its high bound"));
                }
                Dist::Uniform { low, high }
            }
            ["exp", m] => Dist::Exp {
                mean: num(m).ok_or_else(|| bad("has a bad mean"))?,
            },
            _ => return Err(bad("is not a distribution")),
        };
        Ok(d)
    }

    /// `--turns`: whole numbers of turns, at least 1.
    pub fn parse_turns(spec: &str) -> Result<Dist, String> {
        let d = Dist::parse_with(
            "--turns",
            spec,
            |s| s.parse::<u32>().ok().map(f64::from),
            "N",
        )?;
        if d.min() < 1.0 {
            return Err(format!("--turns: {spec:?}: a session has at least 1 turn"));
        }
        Ok(d)
    }

    /// `--think-time`: durations (humantime), kept in nanoseconds.
    pub fn parse_duration(flag: &str, spec: &str) -> Result<Dist, String> {
        Dist::parse_with(
            flag,
            spec,
            |s| {
                humantime::parse_duration(s)
                    .ok()
                    .map(|d| d.as_nanos() as f64)
            },
            "a duration such as 2s",
        )
    }

    fn min(&self) -> f64 {
        match *self {
            Dist::Fixed { value } => value,
            Dist::Uniform { low, .. } => low,
            Dist::Exp { .. } => 0.0,
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut StdRng) -> f64 {
        match *self {
            Dist::Fixed { value } => value,
            Dist::Uniform { low, high } if low == high => low,
            Dist::Uniform { low, high } => rng.random_range(low..=high),
            Dist::Exp { mean } => -mean * (1.0 - rng.random::<f64>()).ln(),
        }
    }

    /// One draw of a whole number (turns), uniform over the integers of `[low, high]`.
    pub fn sample_count(&self, rng: &mut StdRng) -> u32 {
        match *self {
            Dist::Uniform { low, high } => rng.random_range(low as u32..=high as u32),
            _ => self.sample(rng).round().max(1.0) as u32,
        }
    }

    /// One draw of a duration.
    pub fn sample_duration(&self, rng: &mut StdRng) -> Duration {
        Duration::from_nanos(self.sample(rng) as u64)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn fixed_uniform_and_exp() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Dist::parse_turns("4").unwrap().sample_count(&mut rng), 4);
        let u = Dist::parse_turns("uniform:2:6").unwrap();
        let draws: Vec<u32> = (0..200).map(|_| u.sample_count(&mut rng)).collect();
        assert!(draws.iter().all(|d| (2..=6).contains(d)));
        assert!(draws.contains(&2) && draws.contains(&6), "inclusive bounds");
        let t = Dist::parse_duration("--think-time", "2s").unwrap();
        assert_eq!(t.sample_duration(&mut rng), Duration::from_secs(2));
        let e = Dist::parse_duration("--think-time", "exp:100ms").unwrap();
        let mean = (0..4000).map(|_| e.sample(&mut rng)).sum::<f64>() / 4000.0;
        assert!((mean / 1e8 - 1.0).abs() < 0.1, "{mean}");
    }

    #[test]
    fn errors_name_the_flag_and_value() {
        let e = Dist::parse_turns("0").unwrap_err();
        assert!(e.contains("--turns") && e.contains("\"0\""), "{e}");
        let e = Dist::parse_turns("uniform:6:2").unwrap_err();
        assert!(e.contains("low bound above"), "{e}");
        let e = Dist::parse_duration("--think-time", "soon").unwrap_err();
        assert!(e.contains("--think-time") && e.contains("soon"), "{e}");
        assert!(Dist::parse_turns("normal:1:2").is_err());
    }
}
