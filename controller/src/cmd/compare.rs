//! `benchctl compare A B [C …]`: its flags, turned into [`crate::compare::Settings`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::compare::{self, bootstrap, gate, load::Run, metric, render};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for the terminal.
    Table,
    /// Markdown, to paste in a pull request.
    Markdown,
    /// A self-contained HTML page (the frontiers overlaid).
    Html,
}

/// `benchctl compare`: each result against the first (the baseline).
#[derive(Clone, Debug, Args)]
pub struct CompareArgs {
    /// Sweep directories or result files (`bench --save-result`, with their
    /// `.requests.jsonl`); the first is the baseline. A comma list `A1,A2,A3` is one side with
    /// several runs of each test, as are a sweep's `--repeats`: with ≥ 2 runs on a side the
    /// interval is over runs, then requests (with one run per side it covers only within-run
    /// noise, and a NOTE says so).
    #[arg(required = true, num_args = 2..)]
    pub results: Vec<String>,
    /// Confidence of the intervals of the differences.
    #[arg(long, env = "BENCHCTL_CONFIDENCE", default_value_t = 0.95)]
    pub confidence: f64,
    /// Bootstrap resamples per test and metric.
    #[arg(long, env = "BENCHCTL_RESAMPLES", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub resamples: u64,
    /// Seed of the bootstrap: the same inputs and seed give the same output.
    #[arg(long, env = "BENCHCTL_COMPARE_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Changes smaller than this percentage of the baseline are noise, whatever the interval
    /// says (load on the machines moves runs by a few percent).
    #[arg(long, env = "BENCHCTL_MIN_EFFECT", default_value = "2%")]
    pub min_effect: String,
    /// The metrics compared (the --fail-on ones are added).
    #[arg(long, env = "BENCHCTL_METRICS", default_value = metric::DEFAULT)]
    pub metrics: String,
    /// Exit non-zero when a difference is worse than its bound AND outside the noise:
    /// "p99_ttft:+5% output_throughput:-3%" (a CI gate). Each failing test and metric is named.
    #[arg(long, env = "BENCHCTL_FAIL_ON")]
    pub fail_on: Option<String>,
    /// Output format.
    #[arg(long, env = "BENCHCTL_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the output here instead of stdout.
    #[arg(long, short, env = "BENCHCTL_COMPARE_OUT")]
    pub out: Option<PathBuf>,
}

impl CompareArgs {
    pub fn settings(&self) -> anyhow::Result<compare::Settings> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            bail!(
                "--confidence {}: expected a fraction between 0 and 1, e.g. 0.95",
                self.confidence
            );
        }
        let min_effect = self
            .min_effect
            .trim()
            .strip_suffix('%')
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--min-effect {:?}: expected a percentage ≥ 0, e.g. 2%",
                    self.min_effect
                )
            })?;
        let fail_on = match &self.fail_on {
            Some(f) => gate::parse(f).map_err(anyhow::Error::msg)?,
            None => vec![],
        };
        let mut metrics = vec![];
        for m in self.metrics.split(',').filter(|m| !m.trim().is_empty()) {
            metrics.push(metric::Metric::parse(m).map_err(|e| anyhow::anyhow!("--metrics: {e}"))?);
        }
        for b in &fail_on {
            if !metrics.contains(&b.metric) {
                metrics.push(b.metric);
            }
        }
        Ok(compare::Settings {
            metrics,
            bootstrap: bootstrap::Settings {
                confidence: self.confidence,
                resamples: self.resamples as usize,
                seed: self.seed,
            },
            min_effect: min_effect / 100.0,
            fail_on,
        })
    }
}

/// Runs the comparison, prints (or writes) it; the exit status is 1 when a `--fail-on` bound
/// broke.
pub fn run(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let settings = a.settings()?;
    let mut runs = a
        .results
        .iter()
        .map(|p| Run::load_list(p))
        .collect::<anyhow::Result<Vec<Run>>>()?;
    // two sweeps started in the same second have the same directory name: show the paths
    let mut names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < runs.len() {
        for (r, p) in runs.iter_mut().zip(&a.results) {
            r.name = p.clone();
        }
    }
    let report = compare::compare(runs, settings);
    let text = match a.format {
        Format::Table => render::table(&report),
        Format::Markdown => render::markdown(&report),
        Format::Html => render::html(&report),
    };
    match &a.out {
        Some(p) => crate::output::write_atomic(p, text.as_bytes())?,
        None => print!("{text}"),
    }
    let failures = report.failures();
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "benchctl compare: {} regression(s) beyond --fail-on:",
        failures.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    Ok(ExitCode::FAILURE)
}
