//! The server's own view of a test: its Prometheus `/metrics` scraped during the test, on the
//! controller's clock, turned into window statistics beside the GPU telemetry and cross-checked
//! against what the client counted.
//!
//! Arrows point one way: `parse` (text → series) and `vocabulary` (server kinds, the common
//! quantities and each server's metric names) know nothing of the rest; `log` stores what was
//! scraped; `scrape` fills a log over HTTP; `stats`, `csv` and `check` read a log.
//!
//! A test's use: [`Scraper::start`] before the warm-up ends, [`Scraper::sample_now`] just before
//! and just after the measured window, [`Scraper::finish`] → [`ScrapeLog`], then
//! [`ScrapeLog::stats`] → [`ServerStats`] (flat `server_*` keys), [`cross_check`] against the
//! client's [`ClientTotals`], and [`ScrapeLog::samples_csv`] for `samples.csv`. Scraping never fails
//! or blocks a run: every failure is counted and becomes `server_metrics_note`.

mod check;
mod csv;
mod log;
mod parse;
mod scrape;
mod stats;
mod text;
mod vocabulary;

pub use check::{ClientTotals, cross_check};
pub use csv::CSV_HEADER;
pub use log::{
    Failure, FailureCount, FailureKind, Failures, Sample, ScrapeLog, Scraped, SeriesKey,
};
pub use parse::{Labels, Series, parse};
pub use scrape::{DEFAULT_INTERVAL, Scraper, default_timeout, probe, probe_within};
pub use stats::{Mismatch, Pair, ServerStats};
pub use vocabulary::{Quantity, ServerKind};
