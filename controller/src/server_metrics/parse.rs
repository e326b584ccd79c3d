//! The Prometheus text format (0.0.4) and OpenMetrics, parsed by the `prometheus-parse` crate.
//!
//! The crate matches metric names with `\w+`, so on its own it drops every line whose name has a
//! colon (`vllm:…`, `sglang:…`, `llamacpp:…`; colons are legal in Prometheus names) and the
//! `# TYPE`/`# HELP` lines that name them. Each line is therefore prepared before the crate sees
//! it: the colons of the metric name are swapped for `ː` (U+02D0, a letter to the crate's Unicode
//! `\w` and never in a real name, which is ASCII) and swapped back after, and an empty label set
//! (`name{} 1`, which its label pattern rejects) is dropped. Everything else real servers emit —
//! `# EOF`, `# UNIT`, exemplars, blank lines, `NaN`/`+Inf` values, histograms and summaries — the
//! crate takes as it is; histograms and summaries come back as their series (`_bucket{le=…}`,
//! `{quantile=…}`, `_sum`, `_count`). Known limit of the crate: a label value containing `,` or
//! `=` is split wrongly (no server we know emits one).

use std::borrow::Cow;

use prometheus_parse::{Scrape, Value};

/// Label pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One series' value in one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    /// Only ever grows, except when the server restarts: differenced over a window. Known from
    /// `# TYPE … counter`, a `_total` name, or a histogram's or summary's `_bucket`/`_sum`/`_count`.
    pub counter: bool,
}

/// Stands in for `:` in metric names while the crate parses.
const COLON: char = 'ː';

/// The series of a scrape, sorted by name and labels. An error when the text holds none
/// (an HTML page, a JSON error, an empty body): the message names the size and the first bytes.
pub fn parse(text: &str) -> Result<Vec<Series>, String> {
    let lines = text.lines().map(|l| Ok(prepare(l).into_owned()));
    let scrape = Scrape::parse(lines).map_err(|e| e.to_string())?;
    let bases: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_) | Value::Summary(_)))
        .map(|s| s.metric.as_str())
        .collect();
    let mut series = Vec::with_capacity(scrape.samples.len());
    for s in &scrape.samples {
        let name = s.metric.replace(COLON, ":");
        let labels = || -> Labels {
            let mut l: Labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            l.sort();
            l
        };
        match &s.value {
            Value::Counter(v) => series.push(one(name, labels(), *v, true)),
            Value::Gauge(v) => series.push(one(name, labels(), *v, false)),
            Value::Untyped(v) => {
                let counter = untyped_is_counter(&s.metric, &bases, s.labels.get("le").is_some());
                series.push(one(name, labels(), *v, counter));
            }
            Value::Histogram(buckets) => series.extend(buckets.iter().map(|b| {
                let mut l = labels();
                l.push(("le".into(), bound(b.less_than)));
                l.sort();
                one(format!("{name}_bucket"), l, b.count, true)
            })),
            Value::Summary(quantiles) => series.extend(quantiles.iter().map(|q| {
                let mut l = labels();
                l.push(("quantile".into(), bound(q.quantile)));
                l.sort();
                one(name.clone(), l, q.count, false)
            })),
        }
    }
    if series.is_empty() {
        let start: String = text.chars().take(60).collect();
        return Err(format!(
            "no Prometheus series in {} bytes (starts {start:?})",
            text.len()
        ));
    }
    series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    Ok(series)
}

fn one(name: String, labels: Labels, value: f64, counter: bool) -> Series {
    Series {
        name,
        labels,
        value,
        counter,
    }
}

/// A series without a `# TYPE` of its own name: a counter by the naming conventions (OpenMetrics
/// types `foo` and emits `foo_total`; a histogram's `_sum`/`_count` are typed under its base name).
fn untyped_is_counter(name: &str, histogram_bases: &[&str], has_le: bool) -> bool {
    if name.ends_with("_total") || (name.ends_with("_bucket") && has_le) {
        return true;
    }
    ["_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| histogram_bases.contains(&base))
    })
}

/// A bucket bound or quantile as Prometheus writes it.
fn bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}

/// One line made palatable to the crate (see the module doc).
fn prepare(line: &str) -> Cow<'_, str> {
    let t = line.trim_start();
    if let Some(comment) = t.strip_prefix('#') {
        let comment = comment.trim_start();
        for keyword in ["TYPE", "HELP"] {
            if let Some(rest) = comment.strip_prefix(keyword)
                && rest.starts_with(char::is_whitespace)
            {
                let (name, tail) = split_name(rest.trim_start());
                if name.contains(':') {
                    let name = name.replace(':', &COLON.to_string());
                    return Cow::Owned(format!("# {keyword} {name} {}", tail.trim_start()));
                }
            }
        }
        return Cow::Borrowed(line);
    }
    let (name, tail) = split_name(t);
    let empty_labels = tail.starts_with("{}");
    if !name.contains(':') && !empty_labels {
        return Cow::Borrowed(line);
    }
    let tail = if empty_labels { &tail[2..] } else { tail };
    Cow::Owned(format!("{}{tail}", name.replace(':', &COLON.to_string())))
}

/// A metric name (`[A-Za-z0-9_:]*`) and what follows it.
fn split_name(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(s: &'a [Series], name: &str, labels: &[(&str, &str)]) -> &'a Series {
        s.iter()
            .find(|x| {
                x.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| x.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {s:#?}"))
    }

    #[test]
    fn vllm_colons_labels_histograms_and_created() {
        let s = parse(include_str!("../../tests/fixtures/metrics/vllm.txt")).unwrap();
        let running = get(&s, "vllm:num_requests_running", &[("engine", "0")]);
        assert_eq!((running.value, running.counter), (3.0, false));
        let prompt = get(&s, "vllm:prompt_tokens_total", &[]);
        assert_eq!((prompt.value, prompt.counter), (51200.0, true));
        let created = get(&s, "vllm:prompt_tokens_created", &[]);
        assert!(!created.counter, "a _created series is a timestamp");
        let ok = get(
            &s,
            "vllm:request_success_total",
            &[("finished_reason", "length")],
        );
        assert_eq!(ok.value, 100.0);
        let inf = get(
            &s,
            "vllm:time_to_first_token_seconds_bucket",
            &[("le", "+Inf")],
        );
        assert_eq!((inf.value, inf.counter), (100.0, true));
        let sum = get(&s, "vllm:time_to_first_token_seconds_sum", &[]);
        assert!(sum.counter && (sum.value - 12.5).abs() < 1e-9);
        assert!(get(&s, "vllm:time_to_first_token_seconds_count", &[]).counter);
        assert!(
            get(
                &s,
                "python_gc_objects_collected_total",
                &[("generation", "0")]
            )
            .counter
        );
    }

    #[test]
    fn sglang_llamacpp_and_tgi() {
        let s = parse(include_str!("../../tests/fixtures/metrics/sglang.txt")).unwrap();
        assert_eq!(
            get(&s, "sglang:num_queue_reqs", &[("tp_rank", "0")]).value,
            7.0
        );
        assert!(get(&s, "sglang:cached_tokens_total", &[]).counter);

        let s = parse(include_str!("../../tests/fixtures/metrics/llamacpp.txt")).unwrap();
        let predicted = get(&s, "llamacpp:tokens_predicted_total", &[]);
        assert_eq!((predicted.value, predicted.counter), (12800.0, true));
        assert!(!get(&s, "llamacpp:requests_deferred", &[]).counter);
        let pos = get(
            &s,
            "llamacpp:spec_decode_num_accepted_tokens_per_pos_total",
            &[("position", "1")],
        );
        assert_eq!(pos.value, 5.0);
        // llama.cpp streams doubles with 6 significant digits
        let big = parse("llamacpp:tokens_predicted_total 1.23457e+06\n").unwrap();
        assert_eq!(big[0].value, 1_234_570.0);

        let s = parse(include_str!("../../tests/fixtures/metrics/tgi.txt")).unwrap();
        let ok = get(&s, "tgi_request_success", &[]);
        assert_eq!((ok.value, ok.counter), (100.0, true));
        let input = get(&s, "tgi_request_input_length_sum", &[]);
        assert_eq!((input.value, input.counter), (51200.0, true));
        assert!(!get(&s, "tgi_queue_size", &[]).counter);
        let q = get(&s, "tgi_request_duration", &[("quantile", "0.5")]);
        assert!(!q.counter);
    }

    #[test]
    fn openmetrics_eof_empty_labels_nan_and_blank_lines() {
        let text = "# TYPE a:b counter\n# UNIT a:b tokens\na:b_total{x=\"1\"} 17 # {trace_id=\"t\"} 1 1.5\n\
                    a:b_created{x=\"1\"} 1.7e9\n\nc:d{} NaN\n# TYPE e gauge\ne +Inf\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4, "{s:#?}");
        let a = get(&s, "a:b_total", &[("x", "1")]);
        assert_eq!((a.value, a.counter), (17.0, true));
        assert!(get(&s, "c:d", &[]).value.is_nan());
        assert_eq!(get(&s, "e", &[]).value, f64::INFINITY);
    }

    #[test]
    fn garbage_is_an_error_that_shows_the_start() {
        let e = parse("<html><body>Not Found</body></html>").unwrap_err();
        assert!(
            e.contains("no Prometheus series") && e.contains("<html>"),
            "{e}"
        );
        assert!(parse("").is_err());
        assert!(parse("{\"error\": \"metrics disabled\"}").is_err());
    }
}
