//! `samples.csv`: every stored sample's series, one row each, times in Unix seconds.

use std::fmt::Write as _;

use super::log::ScrapeLog;
use super::vocabulary::Quantity;

/// The first line of `samples.csv`. `replica` is the index into `server_metrics_endpoints`,
/// `labels` is `k=v;k=v`, `quantity` the vocabulary names the metric feeds (`;`-separated) or empty.
pub const CSV_HEADER: &str = "unix_s,replica,metric,labels,value,quantity";

impl ScrapeLog {
    /// The samples as CSV, in time order; `unix_of` converts the controller's clock.
    pub fn samples_csv(&self, unix_of: &impl Fn(u64) -> f64) -> String {
        let mut samples: Vec<_> = self.samples().iter().collect();
        samples.sort_by_key(|s| (s.t_ns, s.replica));
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        for s in samples {
            let unix = unix_of(s.t_ns);
            for &(id, value) in &s.values {
                let key = self.key(id);
                let labels: Vec<String> =
                    key.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let quantity: Vec<&str> = Quantity::of_metric(self.kind, &key.name)
                    .map(Quantity::name)
                    .collect();
                let _ = writeln!(
                    out,
                    "{unix:.3},{},{},{},{value},{}",
                    s.replica,
                    field(&key.name),
                    field(&labels.join(";")),
                    quantity.join(";")
                );
            }
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::log::Scraped;
    use super::super::parse::parse;
    use super::*;

    #[test]
    fn one_row_per_series_per_sample_with_its_quantity() {
        let mut log = ScrapeLog::new(vec!["http://a/metrics".into()], Duration::from_secs(1));
        let text = "llamacpp:requests_processing 3\nllamacpp:prompt_tokens_total 10\n\
                    other{model=\"a\\\"b\",x=\"1\"} 2.5\n";
        log.record(Scraped {
            replica: 0,
            round: 1,
            on_demand: true,
            outcome: Ok((2_000_000_000, parse(text).unwrap())),
        });
        let csv = log.samples_csv(&|t| 1_700_000_000.0 + t as f64 / 1e9);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1..],
            [
                "1700000002.000,0,llamacpp:prompt_tokens_total,,10,prefix_cache_queries;prompt_tokens",
                "1700000002.000,0,llamacpp:requests_processing,,3,running",
                "1700000002.000,0,other,\"model=a\\\"\"b;x=1\",2.5,",
            ]
        );
    }
}
