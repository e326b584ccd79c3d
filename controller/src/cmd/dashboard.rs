//! `benchctl dashboard` and `benchctl report`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::dashboard::data::{Source, SweepView};
use crate::dashboard::server::{DashboardConfig, Sources};

/// `benchctl dashboard`: the original scripts' realtime page, without Python.
#[derive(Clone, Debug, Args)]
pub struct DashboardArgs {
    /// Follow this result file (`<model>_vllm_result.json`) as it grows.
    #[arg(long, env = "BENCHCTL_JSON_FILE", conflicts_with = "result_dir")]
    pub json_file: Option<PathBuf>,
    /// Or list every sweep under this directory.
    #[arg(long, env = "BENCHCTL_RESULT_DIR")]
    pub result_dir: Option<PathBuf>,
    /// Labels shown with the results (repeatable or comma-separated): --metadata tp=8 dtype=fp16.
    #[arg(long, env = "BENCHCTL_METADATA", num_args = 1.., value_delimiter = ',', value_parser = super::parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// Where to serve.
    #[arg(
        long,
        env = "BENCHCTL_DASHBOARD_ADDR",
        default_value = "127.0.0.1:8501"
    )]
    pub dashboard_addr: SocketAddr,
    /// Bearer token the browser must present (required beyond loopback); never logged.
    #[arg(long, env = "BENCHCTL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
}

/// `benchctl report DIR`: one self-contained HTML file and the charts as SVG.
#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// A sweep's result directory (or a result JSON file).
    pub dir: PathBuf,
    /// Where to write: a directory for report.html and the .svg charts [default: DIR/report].
    #[arg(long, short, env = "BENCHCTL_REPORT_OUT")]
    pub out: Option<PathBuf>,
    /// Labels shown with the results.
    #[arg(long, env = "BENCHCTL_METADATA", num_args = 1.., value_delimiter = ',', value_parser = super::parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// One GPU's price per hour, for the cost per million output tokens (the sweep's
    /// --gpu-hour-cost otherwise), e.g. --gpu-hour-cost 2.5.
    #[arg(long, env = "BENCHCTL_GPU_HOUR_COST", value_parser = super::parse_cost)]
    pub gpu_hour_cost: Option<f64>,
}

pub async fn dashboard(a: DashboardArgs) -> anyhow::Result<()> {
    let sources = match (&a.json_file, &a.result_dir) {
        (Some(f), _) => {
            if !f.is_file() {
                bail!("--json-file {}: no such file", f.display());
            }
            Sources::Single(Source::File(f.clone()))
        }
        (None, Some(d)) => {
            if !d.is_dir() {
                bail!("--result-dir {}: no such directory", d.display());
            }
            Sources::Root(d.clone())
        }
        (None, None) => {
            bail!("give --json-file FILE (one sweep) or --result-dir DIR (every sweep in it)")
        }
    };
    let d = crate::dashboard::server::start(DashboardConfig {
        addr: a.dashboard_addr,
        token: a.dashboard_token.clone(),
        sources,
        metadata: a.metadata.into_iter().collect(),
    })
    .await?;
    eprintln!(
        "dashboard at {}{} (Ctrl-C to stop)",
        d.url(),
        if a.dashboard_token.is_some() {
            "?token=…"
        } else {
            ""
        }
    );
    tokio::signal::ctrl_c().await.ok();
    d.stop().await;
    Ok(())
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let src = if a.dir.is_dir() {
        Source::Dir(a.dir.clone())
    } else if a.dir.is_file() {
        Source::File(a.dir.clone())
    } else {
        bail!(
            "benchctl report {}: no such directory or file",
            a.dir.display()
        );
    };
    if src.result_file().is_none() {
        bail!(
            "benchctl report {}: no *_vllm_result.json in it",
            a.dir.display()
        );
    }
    let meta: BTreeMap<String, String> = a.metadata.into_iter().collect();
    let mut view = SweepView::load(&src, &meta)?;
    if a.gpu_hour_cost.is_some() {
        view.gpu_hour_cost = a.gpu_hour_cost;
    }
    let out = a.out.clone().unwrap_or_else(|| match &src {
        Source::Dir(d) => d.join("report"),
        Source::File(f) => f.with_extension("report"),
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for (id, _, svg) in crate::dashboard::charts::all(&view) {
        crate::output::write_atomic(&out.join(format!("{id}.svg")), svg.as_bytes())?;
    }
    let html = crate::dashboard::page::page(&view, None);
    crate::output::write_atomic(&out.join("report.html"), html.as_bytes())?;
    eprintln!(
        "report: {} ({} tests; open it in any browser, no network needed) and the charts as SVG beside it",
        out.join("report.html").display(),
        view.entries.len()
    );
    Ok(())
}
