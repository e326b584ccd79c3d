//! The life of a benchctl binary: its `main`, its host name, and the clean stop on SIGINT or
//! SIGTERM.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A binary's `main` after its flags are parsed: logging to stderr ([`crate::logging::init`]
/// with `default_filter`), then `run`; an error is printed as `Error: …` and exits with 1.
#[cfg(feature = "logging")]
pub fn main(default_filter: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    crate::logging::init(default_filter);
    exit_code(run())
}

/// `Ok`: success; an error is printed as `Error: …` (with its causes) and exits with 1.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `run(cancel)` on `runtime` to its end; SIGINT or SIGTERM fires `cancel` (logging
/// `on_signal`).
pub fn block_on_until_signal<F: Future>(
    runtime: &tokio::runtime::Runtime,
    on_signal: &'static str,
    run: impl FnOnce(CancellationToken) -> F,
) -> F::Output {
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(cancel_on_signal(cancel.clone(), on_signal));
        run(cancel).await
    })
}

/// Fires `cancel` on SIGINT or SIGTERM (logging `what`): the clean stop of every long-running
/// benchctl process (leases revoked, the job in flight cancelled and reported).
pub async fn cancel_on_signal(cancel: CancellationToken, what: &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("{what}");
    cancel.cancel();
}

/// This machine's host name (`uname -n`): the default name of an agent's node and of a worker.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_known() {
        assert!(!host_name().is_empty());
    }
}
