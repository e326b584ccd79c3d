//! benchctl-agent: see the `agent` library.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cfg = agent::AgentConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match real_main(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cfg: agent::AgentConfig) -> anyhow::Result<()> {
    if let Some(polls) = cfg.measure_cost {
        println!("{}", agent::measure_cost(&cfg, polls)?);
        return Ok(());
    }
    // The agent is light: one async thread for the session, plus its own poller thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(cluster::cancel_on_signal(cancel.clone(), "shutting down"));
        agent::run(cfg, cancel).await
    })
}
