//! Jittered exponential backoff: etcd's retries and the reconnects of peers' sessions.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The reconnect delays of agents' and workers' sessions to the controller.
const SESSION_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const SESSION_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The delays of retried etcd requests and connections.
pub(crate) fn etcd_backoff() -> impl Iterator<Item = Duration> {
    jittered_backoff(Duration::from_millis(100), Duration::from_secs(5))
}

/// [`jittered_backoff`] for a peer's sessions to the controller.
pub fn session_backoff() -> impl Iterator<Item = Duration> {
    jittered_backoff(SESSION_BACKOFF_MIN, SESSION_BACKOFF_MAX)
}

/// Endless jittered exponential delays from `min` up to `max`; build a new one to start over.
fn jittered_backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}
