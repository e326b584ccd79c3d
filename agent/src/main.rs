//! benchctl-agent: see the `agent` library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cfg = agent::AgentConfig::parse();
    cluster::process::main("info", || {
        if let Some(polls) = cfg.measure_cost {
            println!("{}", agent::measure_cost(&cfg, polls)?);
            return Ok(());
        }
        // The agent is light: one async thread for the session, plus its own poller thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        cluster::process::block_on_until_signal(&runtime, "shutting down", |cancel| {
            agent::run(cfg, cancel)
        })
    })
}
