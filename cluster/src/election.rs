//! The controllers' leader election: campaigning, and the leadership it yields.

use std::time::Duration;

use anyhow::bail;
use etcd_client::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::etcd::{EtcdArgs, REQUEST_TIMEOUT};
use crate::fence::Fence;
use crate::keys::ELECTION;
use crate::lease::keep_alive;

/// This controller's leadership: held while its lease lives.
pub struct Leadership {
    client: Client,
    key: Vec<u8>,
    revision: i64,
    lease: i64,
    /// Fires when the lease could not be kept alive (the leadership is then gone).
    pub lost: CancellationToken,
    keepalive: tokio::task::JoinHandle<()>,
}

/// Campaigns for leadership with `value` (the controller's gRPC URL); returns once elected.
/// `ttl`: seconds a crashed leader keeps its key (the standby's takeover time).
pub async fn campaign(
    args: &EtcdArgs,
    value: &str,
    ttl: i64,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Leadership>> {
    loop {
        // no request timeout: the campaign blocks until this controller is elected (its lease,
        // kept alive meanwhile, is what ends a campaign whose etcd went away)
        let Some(mut client) = args.connect_retrying_with(cancel, None).await else {
            return Ok(None);
        };
        let lease = match client.lease_grant(ttl, None).await {
            Ok(l) => l.id(),
            Err(e) => {
                warn!("etcd: cannot grant a lease: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let lost = CancellationToken::new();
        let keepalive = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost.clone()));
        info!("campaigning for leadership as {value}");
        let mut election = client.election_client();
        let r = tokio::select! {
            _ = cancel.cancelled() => {
                keepalive.abort();
                let _ = client.lease_revoke(lease).await;
                return Ok(None);
            }
            _ = lost.cancelled() => {
                keepalive.abort();
                warn!("etcd: lost the campaign's lease; campaigning again");
                continue;
            }
            r = election.campaign(ELECTION, value, lease) => r,
        };
        match r {
            Ok(mut resp) => {
                let Some(leader) = resp.take_leader() else {
                    keepalive.abort();
                    bail!("etcd answered a campaign without a leader key");
                };
                // the election key's create revision: it changes if the key is ever re-created
                let revision = leader.rev();
                info!("elected leader (lease {lease:x}, revision {revision}) as {value}",);
                return Ok(Some(Leadership {
                    client,
                    key: leader.key().to_vec(),
                    revision,
                    lease,
                    lost,
                    keepalive,
                }));
            }
            Err(e) => {
                keepalive.abort();
                warn!("etcd: campaign failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Leadership {
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The election key this leader holds and the revision it was elected at.
    pub fn fence(&self) -> (&[u8], i64) {
        (&self.key, self.revision)
    }

    /// Writes `key = value` only while this controller is still the leader (see [`Fence::put`]).
    pub async fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.fence_handle().put(key, value).await
    }

    /// A handle for fenced writes that tasks of the leader can hold.
    pub fn fence_handle(&self) -> Fence {
        Fence {
            client: self.client.clone(),
            key: self.key.clone(),
            revision: self.revision,
            lost: self.lost.clone(),
        }
    }

    /// Gives the leadership up (a clean stop): the standby takes over at once.
    pub async fn resign(mut self) {
        self.keepalive.abort();
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.client.lease_revoke(self.lease)).await;
    }

    /// Stops keeping the lease alive without resigning, as a crash would: the key expires after
    /// the ttl (for tests of failover).
    pub fn abandon(self) {
        self.keepalive.abort();
    }
}
