//! Keeping an etcd lease alive: the controller's leadership and every membership hang on one.

use std::time::Duration;

use etcd_client::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Keeps `lease` alive (every ttl/3); fires `lost` when etcd says it expired or cannot be
/// reached for longer than the ttl.
pub(crate) async fn keep_alive(mut client: Client, lease: i64, ttl: i64, lost: CancellationToken) {
    let every = Duration::from_millis((ttl.max(1) as u64 * 1000) / 3);
    let deadline = Duration::from_secs(ttl.max(1) as u64);
    let mut last_ok = tokio::time::Instant::now();
    loop {
        let ok = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.ok()?;
            loop {
                keeper.keep_alive().await.ok()?;
                let resp = stream.message().await.ok()??;
                if resp.ttl() <= 0 {
                    return Some(false); // expired
                }
                last_ok = tokio::time::Instant::now();
                tokio::time::sleep(every).await;
            }
        }
        .await;
        if ok == Some(false) || last_ok.elapsed() > deadline {
            warn!("etcd: lease {lease:x} expired");
            lost.cancel();
            return;
        }
        debug!("etcd: keep-alive stream broke; reopening");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
