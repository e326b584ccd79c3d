//! The subcommands. Each file owns its clap `Args` and turns them into the plain configuration
//! the rest of the crate takes ([`crate::target::Target`], [`crate::sweep::plan::Plan`], …):
//! clap types stop here.

pub mod agents;
pub mod bench;
pub mod common;
pub mod compare;
pub mod controller;
pub mod conversation_args;
pub mod dashboard;
pub mod sweep;
pub mod sweep_args;
pub mod sweep_config;
pub mod sweep_remote;

use std::net::SocketAddr;

/// `--sim`: starts an in-process `benchctl sim` (a SIMULATED server) on a free loopback port and
/// points `--base-url` at it.
async fn start_sim(common: &mut common::CommonArgs) -> anyhow::Result<Option<sim::SimServer>> {
    if !common.sim {
        return Ok(None);
    }
    let sim = sim::start_announced().await?;
    common.base_url = sim.base_url();
    Ok(Some(sim))
}

/// `--dashboard-addr`: an address, or "off" for none.
fn dashboard_addr(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        anyhow::anyhow!(
            "--dashboard-addr {s:?} is not an address such as 127.0.0.1:8501 (or \"off\")"
        )
    })
}

/// `--metadata KEY=VALUE`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().into(), v.trim().into())),
        _ => Err(format!("{s:?} is not KEY=VALUE (e.g. tp=8)")),
    }
}

/// A price: a finite number ≥ 0 (`--gpu-hour-cost 2.5`).
pub fn parse_cost(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a price ≥ 0 (e.g. 2.5)")),
    }
}
