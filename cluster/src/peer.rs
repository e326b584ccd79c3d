//! A peer of the controller (an agent, a load worker): the controller's gRPC endpoint, and the
//! one loop that connects, runs a session, backs off and reconnects until shutdown.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tracing::{info, warn};

use crate::backoff::{SESSION_BACKOFF_MAX, session_backoff};
use crate::etcd::EtcdArgs;
use crate::follow::follow_leader;

/// The gRPC endpoint of a controller URL, for agents, workers and the CLI (`http://` is assumed
/// when no scheme is given; with `tls`, mTLS).
pub fn controller_endpoint(url: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Endpoint> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("--controller {url}: not a valid URL"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match tls {
        Some(t) => endpoint
            .tls_config(t.clone())
            .with_context(|| format!("--controller {url}: TLS settings")),
        None => Ok(endpoint),
    }
}

/// The controller a peer dials: a fixed URL (`--controller`), or with `--etcd` the leader elected
/// there, followed across elections.
pub struct Target {
    rx: watch::Receiver<Option<String>>,
    /// Keeps a fixed URL's channel open while the peer runs.
    _fixed: Option<watch::Sender<Option<String>>>,
}

impl Target {
    /// The leader in etcd where `etcd` is enabled, else `controller` (a URL that cannot be
    /// parsed is refused here, not in the reconnect loop).
    pub fn new(
        etcd: &EtcdArgs,
        controller: Option<&str>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Target> {
        if etcd.enabled() {
            return Ok(Target {
                rx: follow_leader(etcd.clone(), cancel.clone()),
                _fixed: None,
            });
        }
        let controller = controller.context("--controller or --etcd is required")?;
        controller_endpoint(controller, None)?;
        let (tx, rx) = watch::channel(Some(controller.to_owned()));
        Ok(Target {
            rx,
            _fixed: Some(tx),
        })
    }

    /// The controller's URL, `None` until one is known; for [`reconnect`].
    pub fn url(&self) -> watch::Receiver<Option<String>> {
        self.rx.clone()
    }
}

/// The next controller URL to dial: the current one, or the first that becomes known. `None`
/// when `cancel` fires or nobody will ever tell (the sender is gone).
pub async fn next_controller(
    target: &mut watch::Receiver<Option<String>>,
    cancel: &CancellationToken,
) -> Option<String> {
    loop {
        if let Some(u) = target.borrow_and_update().clone() {
            return Some(u);
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            r = target.changed() => if r.is_err() { return None },
        }
    }
}

/// A session ended because the elected controller changed: not a failure, reconnect at once.
#[derive(Debug)]
pub struct LeaderMoved(pub String);

impl std::fmt::Display for LeaderMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the controller is now {}: reconnecting", self.0)
    }
}

impl std::error::Error for LeaderMoved {}

/// One session of a peer with the controller; [`reconnect`] runs it again after every failure.
pub trait Session: Sync {
    /// Connects to `link.endpoint` and serves the session until it ends: `Ok` when it ended
    /// cleanly or `link.cancel` fired, `Err` when anything failed, [`LeaderMoved`] (from
    /// [`Link::leader_moved`]) when another controller was elected. Calls [`Link::registered`]
    /// once the controller accepted the peer.
    fn run(&self, link: &mut Link<'_>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What one session gets from [`reconnect`]: where to connect, and the leader to watch.
pub struct Link<'a> {
    /// The controller's URL as given (or published in etcd).
    pub url: &'a str,
    /// Its gRPC endpoint (with mTLS where configured).
    pub endpoint: &'a Endpoint,
    /// Shutdown.
    pub cancel: &'a CancellationToken,
    target: &'a mut watch::Receiver<Option<String>>,
    /// `false` once the target's sender is gone (a fixed `--controller`: nothing will change).
    watching: bool,
    registered: bool,
}

impl Link<'_> {
    /// The controller accepted this peer: after this session the retries start over from the
    /// shortest delay.
    pub fn registered(&mut self) {
        self.registered = true;
    }

    /// Resolves when the elected controller is no longer this session's (never for a fixed
    /// `--controller`). Cancel-safe, for a `select!` loop.
    pub async fn leader_moved(&mut self) -> LeaderMoved {
        loop {
            if !self.watching {
                return std::future::pending().await;
            }
            if self.target.changed().await.is_err() {
                self.watching = false;
            } else if let Some(now) = self
                .target
                .borrow_and_update()
                .clone()
                .filter(|n| n != self.url)
            {
                return LeaderMoved(now);
            }
        }
    }
}

/// Runs `session` against the controller that `target` names until `cancel` fires: waits for a
/// URL, connects, and after every failure reconnects with jittered exponential backoff (at once
/// when the leader moved; from the shortest delay again once a session was registered).
pub async fn reconnect(
    session: &impl Session,
    mut target: watch::Receiver<Option<String>>,
    tls: Option<&ClientTlsConfig>,
    cancel: &CancellationToken,
) {
    let mut backoff = session_backoff();
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        // the controller to dial: wait until one is known
        let Some(url) = next_controller(&mut target, cancel).await else {
            return;
        };
        let endpoint = match controller_endpoint(&url, tls) {
            Ok(e) => e,
            Err(e) => {
                warn!("{e:#}; waiting for another controller URL");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    r = target.changed() => if r.is_err() { return },
                }
                continue;
            }
        };
        let mut link = Link {
            url: &url,
            endpoint: &endpoint,
            cancel,
            target: &mut target,
            watching: true,
            registered: false,
        };
        let result = session.run(&mut link).await;
        let registered = link.registered;
        if cancel.is_cancelled() {
            return;
        }
        if registered {
            // The controller was reachable: start the next series of retries from the minimum.
            backoff = session_backoff();
            attempt = 1;
        }
        if let Err(e) = &result
            && e.is::<LeaderMoved>()
        {
            info!("{e}");
            backoff = session_backoff();
            attempt = 0;
            continue;
        }
        let delay = backoff.next().unwrap_or(SESSION_BACKOFF_MAX);
        let controller = endpoint.uri();
        match result {
            Ok(()) => info!(
                %controller,
                attempt,
                retry_in = ?delay,
                "the controller ended the session"
            ),
            Err(e) => warn!(
                %controller,
                attempt,
                retry_in = ?delay,
                "controller session failed: {}",
                chain(&e)
            ),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// `a: b: c`, each cause once (tonic's transport errors repeat their source's message).
fn chain(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in e.chain() {
        let m = c.to_string();
        if !out.iter().any(|o| o.contains(&m)) {
            out.push(m);
        }
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_each_cause_once() {
        let e = anyhow::anyhow!("connection refused")
            .context("transport error: connection refused")
            .context("connecting");
        assert_eq!(chain(&e), "connecting: transport error: connection refused");
    }

    #[test]
    fn a_url_without_a_scheme_is_http() {
        let e = controller_endpoint("127.0.0.1:5", None).unwrap();
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:5/");
        let err = controller_endpoint("http://bad host", None).unwrap_err();
        assert!(format!("{err:#}").contains("--controller"), "{err:#}");
    }

    /// Fails until `fail` sessions have run, then waits for shutdown; counts its runs.
    struct Flaky {
        runs: std::sync::atomic::AtomicU32,
        fail: u32,
    }

    impl Session for Flaky {
        async fn run(&self, link: &mut Link<'_>) -> anyhow::Result<()> {
            let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n <= self.fail {
                anyhow::bail!("run {n} failed");
            }
            link.registered();
            tokio::select! {
                () = link.cancel.cancelled() => Ok(()),
                moved = link.leader_moved() => Err(moved.into()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_sessions_are_retried_with_backoff_and_a_moved_leader_at_once() {
        let flaky = Flaky {
            runs: 0.into(),
            fail: 3,
        };
        let (tx, rx) = watch::channel(Some("http://127.0.0.1:1".to_owned()));
        let cancel = CancellationToken::new();
        let t0 = tokio::time::Instant::now();
        let runs = || flaky.runs.load(std::sync::atomic::Ordering::SeqCst);
        let driver = async {
            while runs() < 4 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // three failures: three delays of at least the minimum
            assert!(
                t0.elapsed() >= Duration::from_millis(600),
                "{:?}",
                t0.elapsed()
            );
            let t1 = tokio::time::Instant::now();
            tx.send_replace(Some("http://127.0.0.1:2".to_owned()));
            while runs() < 5 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(
                t1.elapsed() < Duration::from_millis(50),
                "{:?}",
                t1.elapsed()
            );
            cancel.cancel();
        };
        tokio::join!(reconnect(&flaky, rx, None, &cancel), driver);
        assert_eq!(runs(), 5);
    }
}
