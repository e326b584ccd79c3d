//! What a test's scraping produced: every successful sample (values by interned series), and
//! every failure counted per endpoint and kind. Memory is bounded: past [`MAX_SAMPLES`] the
//! periodic samples are dropped (and counted); the samples taken on demand are always kept.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::parse::{Labels, Series};
use super::vocabulary::ServerKind;

/// About 28 hours of one replica at the default interval; a test's samples only.
pub const MAX_SAMPLES: usize = 100_000;

/// A series' identity, interned once per log.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Labels,
    pub counter: bool,
}

impl SeriesKey {
    /// `name{k="v",…}`, Prometheus' own notation.
    pub fn display(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// One successful scrape of one replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Index into the log's endpoints.
    pub replica: usize,
    /// Scrapes started together (one tick, or one `sample_now`) share a round; rounds increase
    /// in the order they were started.
    pub round: u64,
    /// `CLOCK_MONOTONIC` ns when the body had been read (the controller's clock).
    pub t_ns: u64,
    /// `(series id, value)`, sorted by id.
    pub values: Vec<(u32, f64)>,
}

impl Sample {
    pub fn get(&self, id: u32) -> Option<f64> {
        self.values
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| self.values[i].1)
    }
}

/// Why a scrape gave no sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused or reset, DNS, a broken body.
    Unreachable,
    /// An answer other than 2xx.
    HttpStatus,
    /// No complete answer within the timeout.
    Timeout,
    /// An answer that holds no Prometheus series, or too large.
    Unparsable,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// One kind of failure of one endpoint: how often, and the first message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FailureCount {
    pub count: u64,
    pub first: Option<String>,
}

/// One endpoint's scrapes, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Failures {
    pub ok: u64,
    pub unreachable: FailureCount,
    pub http_status: FailureCount,
    pub timeout: FailureCount,
    pub unparsable: FailureCount,
    /// Successful periodic samples not kept (past [`MAX_SAMPLES`]).
    pub dropped: u64,
}

impl Failures {
    fn by_kind(&self) -> [(FailureKind, &FailureCount); 4] {
        [
            (FailureKind::HttpStatus, &self.http_status),
            (FailureKind::Timeout, &self.timeout),
            (FailureKind::Unreachable, &self.unreachable),
            (FailureKind::Unparsable, &self.unparsable),
        ]
    }

    pub fn failed(&self) -> u64 {
        self.by_kind().iter().map(|(_, c)| c.count).sum()
    }

    fn count(&mut self, f: Failure) {
        let c = match f.kind {
            FailureKind::Unreachable => &mut self.unreachable,
            FailureKind::HttpStatus => &mut self.http_status,
            FailureKind::Timeout => &mut self.timeout,
            FailureKind::Unparsable => &mut self.unparsable,
        };
        c.count += 1;
        c.first.get_or_insert(f.message);
    }
}

/// What one scrape of one replica gave (the scraper's tasks send these to the log's owner).
#[derive(Clone, Debug, PartialEq)]
pub struct Scraped {
    pub replica: usize,
    pub round: u64,
    /// Taken by `sample_now` (always kept) rather than by the periodic tick.
    pub on_demand: bool,
    /// The body's read time and its series, or why there is none.
    pub outcome: Result<(u64, Vec<Series>), Failure>,
}

/// A test's scraping: samples and failures. Read it with `stats`, `samples_csv` and `note`.
#[derive(Clone, Debug)]
pub struct ScrapeLog {
    pub endpoints: Vec<String>,
    pub interval: Duration,
    /// Detected from the first successful sample.
    pub kind: ServerKind,
    /// Per endpoint.
    pub failures: Vec<Failures>,
    samples: Vec<Sample>,
    keys: Vec<SeriesKey>,
    index: HashMap<(String, Labels), u32>,
}

impl ScrapeLog {
    pub fn new(endpoints: Vec<String>, interval: Duration) -> ScrapeLog {
        ScrapeLog {
            failures: vec![Failures::default(); endpoints.len()],
            endpoints,
            interval,
            kind: ServerKind::Unknown,
            samples: Vec::new(),
            keys: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Stores one scrape's outcome.
    pub fn record(&mut self, s: Scraped) {
        let Some(failures) = self.failures.get_mut(s.replica) else {
            return;
        };
        let (t_ns, series) = match s.outcome {
            Err(f) => return failures.count(f),
            Ok(ok) => ok,
        };
        failures.ok += 1;
        if !s.on_demand && self.samples.len() >= MAX_SAMPLES {
            failures.dropped += 1;
            return;
        }
        if self.kind == ServerKind::Unknown {
            self.kind = ServerKind::detect(series.iter().map(|x| x.name.as_str()));
        }
        let mut values: Vec<(u32, f64)> = series.into_iter().map(|x| self.intern(x)).collect();
        values.sort_by_key(|(id, _)| *id);
        values.dedup_by_key(|(id, _)| *id);
        self.samples.push(Sample {
            replica: s.replica,
            round: s.round,
            t_ns,
            values,
        });
    }

    fn intern(&mut self, s: Series) -> (u32, f64) {
        let next = self.keys.len() as u32;
        let id = *self
            .index
            .entry((s.name.clone(), s.labels.clone()))
            .or_insert(next);
        if id == next {
            self.keys.push(SeriesKey {
                name: s.name,
                labels: s.labels,
                counter: s.counter,
            });
        }
        (id, s.value)
    }

    /// Every stored sample, in arrival order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// One replica's samples in time order.
    pub fn replica_samples(&self, replica: usize) -> Vec<&Sample> {
        let mut v: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.replica == replica)
            .collect();
        v.sort_by_key(|s| (s.t_ns, s.round));
        v
    }

    pub fn key(&self, id: u32) -> &SeriesKey {
        &self.keys[id as usize]
    }

    /// Ids of the series with one of these names.
    pub fn ids_named(&self, names: &[&str]) -> Vec<u32> {
        (0..self.keys.len() as u32)
            .filter(|&id| names.contains(&self.keys[id as usize].name.as_str()))
            .collect()
    }

    pub fn series_count(&self) -> usize {
        self.keys.len()
    }

    /// Why samples are missing, one clause per endpoint and kind of failure, e.g.
    /// `http://h:8000/metrics: HTTP 404 Not Found (12 of 12 scrapes)`; `None` when nothing failed.
    pub fn failure_note(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (endpoint, f) in self.endpoints.iter().zip(&self.failures) {
            let total = f.ok + f.failed();
            if total == 0 {
                parts.push(format!("{endpoint}: never scraped"));
            }
            for (_, c) in f.by_kind().into_iter().filter(|(_, c)| c.count > 0) {
                let first = c.first.as_deref().unwrap_or("?");
                parts.push(format!(
                    "{endpoint}: {first} ({} of {total} scrapes)",
                    c.count
                ));
            }
            if f.dropped > 0 {
                parts.push(format!(
                    "{endpoint}: {} samples dropped past {MAX_SAMPLES}",
                    f.dropped
                ));
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, value: f64) -> Series {
        Series {
            name: name.into(),
            labels: vec![("a".into(), "1".into())],
            value,
            counter: true,
        }
    }

    #[test]
    fn records_intern_series_detect_the_kind_and_count_failures() {
        let mut log = ScrapeLog::new(vec!["http://a/metrics".into()], Duration::from_secs(1));
        let ok = |round, v| Scraped {
            replica: 0,
            round,
            on_demand: false,
            outcome: Ok((
                round * 10,
                vec![series("vllm:x_total", v), series("y", 1.0)],
            )),
        };
        log.record(ok(1, 5.0));
        log.record(ok(2, 7.0));
        for _ in 0..3 {
            log.record(Scraped {
                replica: 0,
                round: 3,
                on_demand: true,
                outcome: Err(Failure {
                    kind: FailureKind::HttpStatus,
                    message: "HTTP 404 Not Found".into(),
                }),
            });
        }
        assert_eq!(log.kind, ServerKind::Vllm);
        assert_eq!(log.series_count(), 2);
        let id = log.ids_named(&["vllm:x_total"])[0];
        assert_eq!(log.key(id).display(), "vllm:x_total{a=\"1\"}");
        let values: Vec<f64> = log.samples().iter().filter_map(|s| s.get(id)).collect();
        assert_eq!(values, [5.0, 7.0]);
        assert_eq!(
            log.failure_note().unwrap(),
            "http://a/metrics: HTTP 404 Not Found (3 of 5 scrapes)"
        );
    }

    #[test]
    fn nothing_failed_no_note_and_a_silent_endpoint_is_named() {
        let log = ScrapeLog::new(vec!["http://b/metrics".into()], Duration::from_secs(1));
        assert_eq!(
            log.failure_note().unwrap(),
            "http://b/metrics: never scraped"
        );
        let log = ScrapeLog::new(vec![], Duration::from_secs(1));
        assert_eq!(log.failure_note(), None);
    }
}
