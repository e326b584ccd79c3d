//! The latency metrics of a result and the per-request goodput bounds on them.

/// A per-request goodput bound (`--goodput ttft:400 tpot:50`, milliseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoodputBound {
    pub metric: Metric,
    pub max_ms: f64,
}

/// The latency metrics of the result, each a distribution in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Time to first token: the first generated token on any channel (content, reasoning,
    /// tool calls).
    Ttft,
    /// Time to first visible output: the first `content` token (reasoning and tool calls do
    /// not count). Equal to TTFT for a model that does not reason.
    Ttfo,
    /// Time per output token after the first.
    Tpot,
    /// Gaps between content chunks, pooled.
    Itl,
    /// End-to-end latency.
    E2el,
    /// Gaps spread over the tokens each chunk carried, pooled.
    ItlPerToken,
    /// Time waiting for a concurrency slot in the client.
    Queue,
    /// How late the open-loop schedule released requests.
    DispatchLag,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::Ttft,
        Metric::Ttfo,
        Metric::Tpot,
        Metric::Itl,
        Metric::E2el,
        Metric::ItlPerToken,
        Metric::Queue,
        Metric::DispatchLag,
    ];

    /// The name used in JSON keys (`mean_<name>_ms`).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Ttfo => "ttfo",
            Metric::Tpot => "tpot",
            Metric::Itl => "itl",
            Metric::E2el => "e2el",
            Metric::ItlPerToken => "itl_per_token",
            Metric::Queue => "queue",
            Metric::DispatchLag => "dispatch_lag",
        }
    }

    /// Parses a goodput/threshold key (`ttft`, `ttfo`, `tpot`, `itl`, `e2el`).
    pub fn parse(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }
}

/// Parses `--goodput "ttft:400 tpot:50"` (milliseconds; keys ttft, ttfo, tpot, e2el).
pub fn parse_goodput(spec: &str) -> Result<Vec<GoodputBound>, String> {
    let mut out = Vec::new();
    for item in spec.split([' ', ',']).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once(':').ok_or_else(|| {
            format!("--goodput: {item:?} is not KEY:MILLISECONDS (e.g. ttft:400)")
        })?;
        let metric = match k {
            "ttft" => Metric::Ttft,
            "ttfo" => Metric::Ttfo,
            "tpot" => Metric::Tpot,
            "e2el" => Metric::E2el,
            _ => {
                return Err(format!(
                    "--goodput: unknown key {k:?} (expected ttft, ttfo, tpot or e2el)"
                ));
            }
        };
        let max_ms: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| *x > 0.0 && x.is_finite())
            .ok_or_else(|| {
                format!("--goodput: {k}:{v}: the bound must be a positive number of milliseconds")
            })?;
        out.push(GoodputBound { metric, max_ms });
    }
    if out.is_empty() {
        return Err(format!(
            "--goodput: no bound in {spec:?} (expected e.g. \"ttft:400 tpot:50\")"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodput_parse_errors_name_the_problem() {
        assert!(
            parse_goodput("ttft=400")
                .unwrap_err()
                .contains("KEY:MILLISECONDS")
        );
        assert!(parse_goodput("foo:1").unwrap_err().contains("foo"));
        assert!(parse_goodput("ttft:-3").unwrap_err().contains("positive"));
    }
}
