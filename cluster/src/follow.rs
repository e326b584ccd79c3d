//! Following the elected controller's URL, across etcd restarts.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::backoff::etcd_backoff;
use crate::etcd::EtcdArgs;
use crate::keys::ELECTION;

/// Follows the elected controller's URL: `None` until one is known. Survives etcd restarts
/// (reconnects with backoff, keeps the last known URL meanwhile).
pub fn follow_leader(args: EtcdArgs, cancel: CancellationToken) -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = etcd_backoff();
        loop {
            let Some(client) = args.connect_retrying(&cancel).await else {
                return;
            };
            let mut election = client.election_client();
            let r = async {
                // the current leader first (observe sends it too, but only once one exists)
                if let Ok(l) = election.leader(ELECTION).await
                    && let Some(kv) = l.kv()
                {
                    let url = String::from_utf8_lossy(kv.value()).into_owned();
                    tx.send_if_modified(|v| replace(v, url));
                }
                let mut stream = election.observe(ELECTION).await?;
                while let Some(m) = stream.message().await? {
                    if let Some(kv) = m.kv() {
                        let url = String::from_utf8_lossy(kv.value()).into_owned();
                        if tx.send_if_modified(|v| replace(v, url.clone())) {
                            info!("the leader is now {url}");
                        }
                    }
                }
                Ok::<(), etcd_client::Error>(())
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = r => {
                    if let Err(e) = r {
                        debug!("etcd: following the leader: {e}");
                    }
                }
            }
            let wait = backoff.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
    rx
}

fn replace(v: &mut Option<String>, url: String) -> bool {
    if v.as_deref() == Some(url.as_str()) {
        false
    } else {
        *v = Some(url);
        true
    }
}
