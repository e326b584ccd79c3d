//! What a sweep varies: the concurrency (closed loop, the original scripts') or the request rate
//! (open loop, `--search-axis rate`). A test's [`Level`] on that axis names its directory, its
//! key and its column; the search walks levels as integers ([`Level::step`]: a concurrency, or
//! a rate in thousandths of a request per second), so one search serves both axes.

use serde::{Deserialize, Serialize};

/// The quantity a sweep searches over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Closed loop: each test keeps C requests in flight (`--concurrency`).
    #[default]
    Concurrency,
    /// Open loop: each test sends R requests per second (`--rates`), Poisson unless
    /// `--burstiness`, with `--max-concurrency` as an optional cap.
    Rate,
}

impl Axis {
    /// The level a search step stands for.
    pub fn level(self, step: u32) -> Level {
        match self {
            Axis::Concurrency => Level::Concurrency(step),
            Axis::Rate => Level::Rate(Rate(step)),
        }
    }

    /// The column's name: `concurrency`, `rate`.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Concurrency => "concurrency",
            Axis::Rate => "rate",
        }
    }

    /// The column with its unit: `concurrency`, `rate (req/s)`.
    pub fn label(self) -> &'static str {
        match self {
            Axis::Concurrency => "concurrency",
            Axis::Rate => "rate (req/s)",
        }
    }
}

/// A request rate, held in thousandths of a request per second so that keys stay exact,
/// ordered and hashable; written as a number of requests per second (`2.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u32);

impl Rate {
    /// The finest rate kept: 0.001 req/s.
    pub const UNIT: f64 = 0.001;

    /// `None` below 0.001 req/s or above ~4 million.
    pub fn from_per_s(r: f64) -> Option<Rate> {
        let m = (r / Self::UNIT).round();
        (r.is_finite() && m >= 1.0 && m <= f64::from(u32::MAX)).then_some(Rate(m as u32))
    }

    pub fn per_s(self) -> f64 {
        f64::from(self.0) * Self::UNIT
    }

    /// The search's step: thousandths of a request per second.
    pub fn millis(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{}.{:03}", self.0 / 1000, self.0 % 1000);
        write!(f, "{}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.per_s())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let r = f64::deserialize(d)?;
        Rate::from_per_s(r).ok_or_else(|| {
            serde::de::Error::custom(format!("rate {r} is not a request rate ≥ 0.001 req/s"))
        })
    }
}

/// One test's load on the sweep's axis. In a result object or a summary point it is one key,
/// `"concurrency": 32` or `"rate": 2.5` (flattened), which says the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Concurrency(u32),
    Rate(Rate),
}

impl Default for Level {
    fn default() -> Level {
        Level::Concurrency(0)
    }
}

impl Level {
    pub fn axis(self) -> Axis {
        match self {
            Level::Concurrency(_) => Axis::Concurrency,
            Level::Rate(_) => Axis::Rate,
        }
    }

    /// The search's integer for it (see [`Axis::level`]).
    pub fn step(self) -> u32 {
        match self {
            Level::Concurrency(c) => c,
            Level::Rate(r) => r.millis(),
        }
    }

    /// The value in its unit (requests in flight, requests per second).
    pub fn value(self) -> f64 {
        match self {
            Level::Concurrency(c) => f64::from(c),
            Level::Rate(r) => r.per_s(),
        }
    }

    /// The concurrency of a closed-loop test.
    pub fn concurrency(self) -> Option<u32> {
        match self {
            Level::Concurrency(c) => Some(c),
            Level::Rate(_) => None,
        }
    }

    /// `c32`, `r2.5`: test ids, directory names, chart labels.
    pub fn tag(self) -> String {
        match self {
            Level::Concurrency(c) => format!("c{c}"),
            Level::Rate(r) => format!("r{r}"),
        }
    }

    /// `c=32`, `rate=2.5/s`: progress lines.
    pub fn spoken(self) -> String {
        match self {
            Level::Concurrency(c) => format!("c={c}"),
            Level::Rate(r) => format!("rate={r}/s"),
        }
    }

    /// Reads the level back from a result object or summary point (`concurrency` or `rate`).
    pub fn of(v: &serde_json::Value) -> Option<Level> {
        if let Some(c) = v.get("concurrency").and_then(serde_json::Value::as_u64) {
            return Some(Level::Concurrency(u32::try_from(c).ok()?));
        }
        let r = v.get("rate").and_then(serde_json::Value::as_f64)?;
        Rate::from_per_s(r).map(Level::Rate)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Concurrency(c) => write!(f, "{c}"),
            Level::Rate(r) => write!(f, "{r}"),
        }
    }
}

/// Levels written as plain numbers (`"max_passing": 16`, `"max_passing": 2.5`), the summary
/// saying the axis once.
pub mod as_number {
    use super::Level;
    use serde::Serializer;

    fn number<S: Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Level::Concurrency(c) => s.serialize_u32(*c),
            Level::Rate(r) => s.serialize_f64(r.per_s()),
        }
    }

    pub fn option<S: Serializer>(l: &Option<Level>, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Some(l) => number(l, s),
            None => s.serialize_none(),
        }
    }

    pub fn vec<S: Serializer>(v: &[Level], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|l| match l {
            Level::Concurrency(c) => serde_json::json!(c),
            Level::Rate(r) => serde_json::json!(r.per_s()),
        }))
    }
}

/// Parses `--rates 1,2,4,8` (requests per second): sorted, without duplicates.
pub fn parse_rates(s: &str) -> Result<Vec<Rate>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let r = item
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| {
                format!("--rates: {item:?} is not a positive request rate (requests per second)")
            })?;
        out.push(Rate::from_per_s(r).ok_or_else(|| {
            format!("--rates: {item:?} is outside 0.001 to 4,000,000 requests per second")
        })?);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(format!(
            "--rates: no value in {s:?} (expected e.g. 1,2,4,8)"
        ));
    }
    Ok(out)
}

/// The default `--rate-resolution`: bisection stops once the first failing rate is within 5 %
/// of the largest passing one.
pub const DEFAULT_RATE_RESOLUTION: f64 = 0.05;

/// Checks `--rate-resolution` (a fraction of the passing rate, above 0 and below 1).
pub fn check_rate_resolution(r: f64) -> Result<f64, String> {
    if r.is_finite() && r > 0.0 && r < 1.0 {
        Ok(r)
    } else {
        Err(format!(
            "--rate-resolution: {r} is not a fraction above 0 and below 1 (e.g. 0.05: within 5 % \
             of the passing rate)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_exactly() {
        let r = parse_rates("8, 0.5,2.25,2.25, 1").unwrap();
        let s: Vec<String> = r.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["0.5", "1", "2.25", "8"]);
        assert!(parse_rates("0").unwrap_err().contains("\"0\""));
        assert!(parse_rates("1,x").unwrap_err().contains("\"x\""));
        assert!(parse_rates("-2").unwrap_err().contains("--rates"));
        assert!(parse_rates("0.0001").unwrap_err().contains("0.001"));
        assert!(parse_rates("").is_err());
        assert!(check_rate_resolution(0.0).is_err());
        assert!(check_rate_resolution(1.0).is_err());
        assert!(check_rate_resolution(f64::NAN).is_err());
    }

    #[test]
    fn a_level_is_one_key_that_names_the_axis() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Point {
            #[serde(flatten)]
            level: Level,
            runs: u32,
        }
        for (level, json) in [
            (Level::Concurrency(32), r#"{"concurrency":32,"runs":1}"#),
            (
                Level::Rate(Rate::from_per_s(2.5).unwrap()),
                r#"{"rate":2.5,"runs":1}"#,
            ),
        ] {
            let p = Point { level, runs: 1 };
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
            assert_eq!(serde_json::from_str::<Point>(json).unwrap(), p);
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(Level::of(&v), Some(level));
            assert_eq!(level.axis().level(level.step()), level);
        }
        assert_eq!(Level::Rate(Rate(2500)).tag(), "r2.5");
        assert_eq!(Level::Concurrency(8).tag(), "c8");
    }
}
