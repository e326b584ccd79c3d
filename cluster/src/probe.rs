//! Whether etcd answers, for a readiness probe (`/readyz`).

use std::time::Duration;

use anyhow::anyhow;
use etcd_client::Client;

use crate::etcd::EtcdArgs;

/// The limit of one probe (connecting, then etcd's status).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks etcd for its status, keeping the connection between probes.
pub struct EtcdProbe {
    args: EtcdArgs,
    client: Option<Client>,
}

impl EtcdProbe {
    pub fn new(args: EtcdArgs) -> EtcdProbe {
        EtcdProbe { args, client: None }
    }

    /// `Ok` when an etcd endpoint answered a status request within [`PROBE_TIMEOUT`].
    pub async fn check(&mut self) -> anyhow::Result<()> {
        let r = tokio::time::timeout(PROBE_TIMEOUT, self.status()).await;
        let r = r.unwrap_or_else(|_| Err(anyhow!("no answer within {PROBE_TIMEOUT:?}")));
        if r.is_err() {
            // connect afresh next time (etcd may come back on another connection)
            self.client = None;
        }
        r
    }

    async fn status(&mut self) -> anyhow::Result<()> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self
                .client
                .insert(self.args.connect_with(Some(PROBE_TIMEOUT)).await?),
        };
        client.status().await?;
        Ok(())
    }
}
