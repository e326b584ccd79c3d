//! Fenced writes: the leader's writes succeed only while it is still the leader.

use std::time::Duration;

use anyhow::bail;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::etcd_backoff;
use crate::etcd::{REQUEST_TIMEOUT, transient};

/// Fenced writes and plain reads of the controller's state, for as long as the leadership lasts.
#[derive(Clone)]
pub struct Fence {
    pub(crate) client: Client,
    pub(crate) key: Vec<u8>,
    pub(crate) revision: i64,
    pub(crate) lost: CancellationToken,
}

impl Fence {
    /// Writes `key = value` if this controller is still the leader. While etcd cannot be reached
    /// it retries with backoff, until the leadership is lost. A refused write (another leader
    /// was elected) is an error, and fires `lost`.
    pub async fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let mut backoff = etcd_backoff();
        loop {
            if self.lost.is_cancelled() {
                bail!("no longer the leader: {key} was not written");
            }
            let mut c = self.client.clone();
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    self.key.clone(),
                    CompareOp::Equal,
                    self.revision,
                )])
                .and_then(vec![TxnOp::put(key, value.to_vec(), None)]);
            // the leader's client has no request timeout (its campaign blocks): one here
            let r = match tokio::time::timeout(REQUEST_TIMEOUT, c.txn(txn)).await {
                Ok(r) => r,
                Err(_) => Err(etcd_client::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 10 s",
                ))),
            };
            match r {
                Ok(r) if r.succeeded() => return Ok(()),
                Ok(_) => {
                    self.lost.cancel();
                    bail!("no longer the leader: the write of {key} was refused (fenced)");
                }
                Err(e) if !transient(&e) => {
                    bail!("etcd refused the write of {key}: {e}");
                }
                Err(e) => {
                    let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                    warn!("etcd: writing {key}: {e}; retrying in {wait:?}");
                    tokio::select! {
                        _ = self.lost.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Every key under `prefix` and its value, retrying while etcd cannot be reached (until the
    /// leadership is lost).
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut backoff = etcd_backoff();
        loop {
            if self.lost.is_cancelled() {
                bail!("no longer the leader: {prefix} was not read");
            }
            let mut c = self.client.clone();
            let r = tokio::time::timeout(
                REQUEST_TIMEOUT,
                c.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())),
            )
            .await
            .unwrap_or_else(|_| {
                Err(etcd_client::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 10 s",
                )))
            });
            match r {
                Ok(r) => {
                    return Ok(r
                        .kvs()
                        .iter()
                        .map(|kv| {
                            (
                                String::from_utf8_lossy(kv.key()).into_owned(),
                                kv.value().to_vec(),
                            )
                        })
                        .collect());
                }
                Err(e) if !transient(&e) => {
                    bail!("etcd refused the read of {prefix}: {e}");
                }
                Err(e) => {
                    let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                    warn!("etcd: reading {prefix}: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Fires when the leadership is lost.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}
