//! `benchctl compare A B [C …]`: its flags, turned into [`crate::compare::Settings`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::sweep_args::RemoteArgs;
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
    /// `.requests.jsonl`), or, with --controller/--etcd, the ids of sweeps the controller ran
    /// (`benchctl sweeps` lists them; fetched first); the first is the baseline. A comma list
    /// `A1,A2,A3` is one side with several runs of each test, as are a sweep's `--repeats`:
    /// with ≥ 2 runs on a side the interval is over runs, then requests (with one run per side
    /// it covers only within-run noise, and a NOTE says so).
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
    /// Where the sweeps fetched from the controller are kept (`<DIR>/<ID>/`, replaced on each
    /// fetch); by default a temporary directory removed at the end.
    #[arg(long, env = "BENCHCTL_FETCH_DIR")]
    pub fetch_dir: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
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

/// The results as local paths: each name that is not a path here is a sweep id, fetched from
/// the controller into `fetched` (a sweep fetched once serves every side that names it).
async fn local_paths(a: &CompareArgs, fetched: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut have = std::collections::BTreeMap::new();
    let mut out = Vec::with_capacity(a.results.len());
    for spec in &a.results {
        let mut paths = vec![];
        for name in spec.split(',').map(str::trim) {
            if name.is_empty() || std::path::Path::new(name).exists() {
                paths.push(name.to_string());
                continue;
            }
            if !a.remote.enabled() {
                bail!(
                    "benchctl compare {name}: no such file or directory (a sweep id? give --controller URL or --etcd URLS to fetch it from the controller)"
                );
            }
            if !super::sweep_remote::is_sweep_id(name) {
                bail!("benchctl compare {name}: no such file or directory, and not a sweep id");
            }
            if !have.contains_key(name) {
                let f = super::sweep_remote::fetch_to(&a.remote, name, &fetched.join(name)).await?;
                eprintln!(
                    "fetched sweep {name} ({}: {} files, {} bytes){}",
                    f.status,
                    f.files,
                    f.bytes,
                    if a.fetch_dir.is_some() {
                        format!(" into {}", f.dir.display())
                    } else {
                        String::new()
                    }
                );
                if f.status != "done" {
                    eprintln!(
                        "NOTE: sweep {name} is {}: only its finished tests are compared",
                        f.status
                    );
                }
                have.insert(name.to_string(), f.dir);
            }
            paths.push(have[name].display().to_string());
        }
        out.push(paths.join(","));
    }
    Ok(out)
}

/// Runs the comparison, prints (or writes) it; the exit status is 1 when a `--fail-on` bound
/// broke.
pub async fn run(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let settings = a.settings()?;
    let tmp;
    let fetched = match &a.fetch_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("--fetch-dir {}: cannot create it", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let paths = local_paths(&a, &fetched).await?;
    let mut runs = paths
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
