//! `--fail-on "p99_ttft:+5% output_throughput:-3%"`: the CI gate. A bound is a metric and the
//! largest change allowed in its worse direction, in percent of the baseline (latencies: `+`,
//! throughputs: `-`). A test breaks it when its difference is worse than the bound *and* the
//! verdict is `worse` (outside the noise).

use std::fmt;

use super::metric::Metric;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    pub metric: Metric,
    /// Signed, in percent: `+5` (a latency may grow 5 %), `-3` (a throughput may drop 3 %).
    pub pct: f64,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:+}%", self.metric, self.pct)
    }
}

/// Parses `--fail-on`.
pub fn parse(s: &str) -> Result<Vec<Bound>, String> {
    let mut v = vec![];
    for part in s.split([' ', ',']).filter(|p| !p.trim().is_empty()) {
        let (m, pct) = part.split_once(':').ok_or_else(|| {
            format!("--fail-on {part:?}: expected METRIC:±PCT% (e.g. p99_ttft:+5% output_throughput:-3%)")
        })?;
        let metric = Metric::parse(m).map_err(|e| format!("--fail-on {part:?}: {e}"))?;
        let num = pct.trim().strip_suffix('%').ok_or_else(|| {
            format!("--fail-on {part:?}: the bound is a percentage of the baseline, e.g. {m}:+5%")
        })?;
        let pct: f64 = num
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite())
            .ok_or_else(|| format!("--fail-on {part:?}: {num:?} is not a number"))?;
        let (worse, example) = if metric.higher_is_better() {
            (pct <= 0.0, "-3%")
        } else {
            (pct >= 0.0, "+5%")
        };
        if !worse {
            return Err(format!(
                "--fail-on {part:?}: {} {metric} is worse, so its bound is {} (e.g. {metric}:{example})",
                if metric.higher_is_better() {
                    "a lower"
                } else {
                    "a higher"
                },
                if metric.higher_is_better() {
                    "≤ 0"
                } else {
                    "≥ 0"
                },
            ));
        }
        v.push(Bound { metric, pct });
    }
    if v.is_empty() {
        return Err("--fail-on \"\": give at least one METRIC:±PCT% bound".into());
    }
    Ok(v)
}

impl Bound {
    /// Whether B's change from A is worse than this bound allows.
    pub fn exceeded(&self, a: f64, b: f64) -> bool {
        if a == 0.0 {
            return false;
        }
        let change = (b - a) / a.abs() * 100.0;
        if self.metric.higher_is_better() {
            change < self.pct
        } else {
            change > self.pct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_with_their_direction() {
        let b = parse("p99_ttft:+5% output_throughput:-3%").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].to_string(), "p99_ttft:+5%");
        assert!(b[0].exceeded(100.0, 105.5) && !b[0].exceeded(100.0, 104.0));
        assert!(b[1].exceeded(100.0, 96.0) && !b[1].exceeded(100.0, 98.0));
        for (bad, says) in [
            ("p99_ttft:-5%", "a higher p99_ttft is worse"),
            (
                "output_throughput:+3%",
                "a lower output_throughput is worse",
            ),
            ("p99_ttft:5", "percentage"),
            ("p99_ttft", "METRIC:±PCT%"),
            ("foo:+1%", "not a metric"),
            ("p99_ttft:x%", "not a number"),
            ("", "at least one"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("--fail-on") && e.contains(says), "{bad}: {e}");
        }
    }
}
