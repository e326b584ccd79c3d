//! Membership: agents and load workers keep a key under a lease while they run.

use std::time::Duration;

use etcd_client::PutOptions;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::etcd::EtcdArgs;
use crate::lease::keep_alive;

/// Keeps `key = value` in etcd under a lease of `ttl` seconds until `cancel` fires (then revokes
/// it); re-creates it after an etcd restart or an expired lease.
pub fn register(
    args: EtcdArgs,
    key: String,
    value: String,
    ttl: i64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(mut client) = args.connect_retrying(&cancel).await else {
                return;
            };
            let lease = match client.lease_grant(ttl, None).await {
                Ok(l) => l.id(),
                Err(e) => {
                    debug!("etcd: lease for {key}: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if let Err(e) = client
                .put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
            {
                debug!("etcd: registering {key}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            debug!("registered {key} (lease {lease:x})");
            let lost = CancellationToken::new();
            let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost.clone()));
            tokio::select! {
                _ = cancel.cancelled() => {
                    keeper.abort();
                    let _ = client.lease_revoke(lease).await;
                    return;
                }
                _ = lost.cancelled() => {
                    warn!("etcd: the registration {key} lapsed; registering again");
                }
            }
        }
    })
}
