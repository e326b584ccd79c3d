//! benchctl's distributed mode on etcd (v3 API: KV, Watch, Lease, Txn, Election — what Debian's
//! etcd-server 3.4 offers):
//!
//! - **Membership.** Agents and load workers keep a key under a lease
//!   ([`register`]); it disappears when they stop or stop answering.
//! - **Leader election** among controllers ([`campaign`]); the elected controller's gRPC URL is
//!   the election's value.
//! - **Fenced writes** ([`Leadership::put`]): a write succeeds only while its author's leader key
//!   exists with the revision it was elected at, so a deposed leader cannot overwrite its
//!   successor's state.
//! - **Following the leader** ([`follow_leader`]): agents and workers learn the current leader's
//!   URL, and learn of every change, across etcd restarts.
//!
//! Key layout (all under `/benchctl/v1/`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `leader/<lease id>` | the leader's gRPC URL (etcd's election keys) | the controller's |
//! | `agents/<node>` | `{"version":…,"instance_id":…}` | the agent's |
//! | `workers/<name>` | `{"version":…,"max_streams":…}` | the worker's |
//! | `state/…` | controller state, written fenced | none |

use std::time::Duration;

use anyhow::{Context, bail};
use backon::{BackoffBuilder, ExponentialBuilder};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The limit of one etcd request (a campaign has none).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The root of every key.
pub const PREFIX: &str = "/benchctl/v1/";
/// The controllers' election.
pub const ELECTION: &str = "/benchctl/v1/leader";

pub fn agent_key(node: &str) -> String {
    format!("{PREFIX}agents/{node}")
}

pub fn worker_key(name: &str) -> String {
    format!("{PREFIX}workers/{name}")
}

pub fn state_key(rest: &str) -> String {
    format!("{PREFIX}state/{rest}")
}

/// How every process reaches etcd. Flattened into each binary's flags.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (e.g. http://10.0.0.5:2379): the distributed mode.
    #[arg(long = "etcd", env = "BENCHCTL_ETCD", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// etcd user (with --etcd-password, for etcd's auth).
    #[arg(long, env = "BENCHCTL_ETCD_USER", requires = "etcd_password")]
    pub etcd_user: Option<String>,
    /// etcd password; never logged.
    #[arg(long, env = "BENCHCTL_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// CA certificate (PEM) that signed etcd's server certificate (https:// endpoints).
    #[arg(long, env = "BENCHCTL_ETCD_CA")]
    pub etcd_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate auth, with --etcd-key.
    #[arg(long, env = "BENCHCTL_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for --etcd-cert.
    #[arg(long, env = "BENCHCTL_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<std::path::PathBuf>,
}

impl EtcdArgs {
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// For tests and embedding: plain endpoints, no auth.
    pub fn plain(endpoints: Vec<String>) -> EtcdArgs {
        EtcdArgs {
            endpoints,
            ..EtcdArgs::default()
        }
    }

    /// `timeout`: the limit of each request (`None` for a campaign, which blocks until elected).
    fn options(&self, timeout: Option<Duration>) -> anyhow::Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(t) = timeout {
            o = o.with_timeout(t);
        }
        if let (Some(u), Some(p)) = (&self.etcd_user, &self.etcd_password) {
            o = o.with_user(u.clone(), p.clone());
        }
        if self.etcd_ca.is_some() || self.etcd_cert.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &self.etcd_ca {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("--etcd-ca {}: cannot read it", ca.display()))?;
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            if let (Some(c), Some(k)) = (&self.etcd_cert, &self.etcd_key) {
                let cert = std::fs::read(c)
                    .with_context(|| format!("--etcd-cert {}: cannot read it", c.display()))?;
                let key = std::fs::read(k)
                    .with_context(|| format!("--etcd-key {}: cannot read it", k.display()))?;
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            o = o.with_tls(tls);
        }
        Ok(o)
    }

    /// One connection attempt.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.connect_with(Some(REQUEST_TIMEOUT)).await
    }

    async fn connect_with(&self, timeout: Option<Duration>) -> anyhow::Result<Client> {
        if self.endpoints.is_empty() {
            bail!("--etcd: no endpoint given");
        }
        let opts = self.options(timeout)?;
        Client::connect(&self.endpoints, Some(opts))
            .await
            .with_context(|| format!("--etcd {}: cannot connect", self.endpoints.join(",")))
    }

    /// Connects, retrying with backoff until `cancel` fires (`None` then).
    pub async fn connect_retrying(&self, cancel: &CancellationToken) -> Option<Client> {
        self.connect_retrying_with(cancel, Some(REQUEST_TIMEOUT))
            .await
    }

    async fn connect_retrying_with(
        &self,
        cancel: &CancellationToken,
        timeout: Option<Duration>,
    ) -> Option<Client> {
        let mut backoff = backoff();
        loop {
            match self.connect_with(timeout).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                    warn!("{e:#}; retrying in {wait:?}");
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

fn backoff() -> impl Iterator<Item = Duration> {
    jittered_backoff(Duration::from_millis(100), Duration::from_secs(5))
}

/// The reconnect delays of agents' and workers' sessions to the controller.
const SESSION_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const SESSION_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Endless jittered exponential delays from `min` up to `max`; build a new one to start over.
fn jittered_backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// [`jittered_backoff`] for a peer's sessions to the controller.
pub fn session_backoff() -> impl Iterator<Item = Duration> {
    jittered_backoff(SESSION_BACKOFF_MIN, SESSION_BACKOFF_MAX)
}

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

/// Keeps `lease` alive (every ttl/3); fires `lost` when etcd says it expired or cannot be
/// reached for longer than the ttl.
async fn keep_alive(mut client: Client, lease: i64, ttl: i64, lost: CancellationToken) {
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

/// An etcd error worth retrying: etcd unreachable or restarting, not a refusal (permissions, a
/// value too large, bad credentials).
fn transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
        ),
        _ => false,
    }
}

/// Fenced writes and plain reads of the controller's state, for as long as the leadership lasts.
#[derive(Clone)]
pub struct Fence {
    client: Client,
    key: Vec<u8>,
    revision: i64,
    lost: CancellationToken,
}

impl Fence {
    /// Writes `key = value` if this controller is still the leader. While etcd cannot be reached
    /// it retries with backoff, until the leadership is lost. A refused write (another leader
    /// was elected) is an error, and fires `lost`.
    pub async fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let mut backoff = backoff();
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
        let mut backoff = backoff();
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

/// Follows the elected controller's URL: `None` until one is known. Survives etcd restarts
/// (reconnects with backoff, keeps the last known URL meanwhile).
pub fn follow_leader(args: EtcdArgs, cancel: CancellationToken) -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = backoff();
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

/// A real etcd (Debian's `etcd-server`) on loopback ports, for tests.
pub mod testing {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// An etcd process with its own data directory; killed on drop.
    pub struct Etcd {
        child: Option<Child>,
        pub client_url: String,
        peer_url: String,
        data: tempfile::TempDir,
        bin: PathBuf,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    }

    impl Etcd {
        /// Starts etcd, or `None` where it is not installed. `BENCHCTL_REQUIRE_ETCD=1` (set by
        /// `.ci/run`, which installs it) turns its absence into a failure.
        pub async fn start() -> Option<Etcd> {
            let bin = std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("etcd"))
                    .find(|p| p.is_file())
            });
            let Some(bin) = bin else {
                assert!(
                    std::env::var("BENCHCTL_REQUIRE_ETCD").as_deref() != Ok("1"),
                    "BENCHCTL_REQUIRE_ETCD=1 but etcd is not on PATH (apt-get install etcd-server)"
                );
                eprintln!("SKIPPED: no etcd on PATH (apt-get install etcd-server)");
                return None;
            };
            let mut e = Etcd {
                child: None,
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://127.0.0.1:{}", free_port()),
                data: tempfile::tempdir().expect("a temporary directory"),
                bin,
            };
            e.spawn().await;
            Some(e)
        }

        async fn spawn(&mut self) {
            let child = Command::new(&self.bin)
                .args([
                    "--name",
                    "benchctl-test",
                    "--data-dir",
                    &self.data.path().display().to_string(),
                    "--listen-client-urls",
                    &self.client_url,
                    "--advertise-client-urls",
                    &self.client_url,
                    "--listen-peer-urls",
                    &self.peer_url,
                    "--initial-advertise-peer-urls",
                    &self.peer_url,
                    "--initial-cluster",
                    &format!("benchctl-test={}", self.peer_url),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd starts");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            let args = super::EtcdArgs::plain(vec![self.client_url.clone()]);
            loop {
                if let Ok(mut c) = args.connect().await
                    && c.status().await.is_ok()
                {
                    return;
                }
                assert!(Instant::now() < deadline, "etcd did not answer within 20 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        pub fn args(&self) -> super::EtcdArgs {
            super::EtcdArgs::plain(vec![self.client_url.clone()])
        }

        /// `kill -9`.
        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        /// Starts it again on the same ports and data.
        pub async fn restart(&mut self) {
            self.kill();
            self.spawn().await;
        }
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

/// mTLS on the gRPC connections between controller, agents and workers: with all three files,
/// the controller serves TLS and refuses a peer without a certificate signed by `--tls-ca`, and
/// peers present theirs and check the controller's against the same CA.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// This process's certificate (PEM), signed by --tls-ca.
    #[arg(long, env = "BENCHCTL_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "BENCHCTL_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<std::path::PathBuf>,
    /// The CA (PEM) every peer's certificate must be signed by.
    #[arg(long, env = "BENCHCTL_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    fn read(
        &self,
    ) -> anyhow::Result<Option<(tonic::transport::Identity, tonic::transport::Certificate)>> {
        let (Some(c), Some(k), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) else {
            return Ok(None);
        };
        let read = |p: &std::path::Path, flag: &str| {
            std::fs::read(p).with_context(|| format!("{flag} {}: cannot read it", p.display()))
        };
        Ok(Some((
            tonic::transport::Identity::from_pem(read(c, "--tls-cert")?, read(k, "--tls-key")?),
            tonic::transport::Certificate::from_pem(read(ca, "--tls-ca")?),
        )))
    }

    /// The controller's side: its identity, and client certificates required.
    pub fn server(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        Ok(self.read()?.map(|(id, ca)| {
            tonic::transport::ServerTlsConfig::new()
                .identity(id)
                .client_ca_root(ca)
                .client_auth_optional(false)
        }))
    }

    /// A peer's side: its identity, and the controller checked against the CA.
    pub fn client(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        Ok(self.read()?.map(|(id, ca)| {
            tonic::transport::ClientTlsConfig::new()
                .identity(id)
                .ca_certificate(ca)
        }))
    }
}

/// The gRPC endpoint of a controller URL, for agents, workers and the CLI (`http://` is assumed
/// when no scheme is given; with `tls`, mTLS).
pub fn controller_endpoint(
    url: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<tonic::transport::Endpoint> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
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

/// A session ended because the elected controller changed: not a failure, reconnect at once.
#[derive(Debug)]
pub struct LeaderMoved(pub String);

impl std::fmt::Display for LeaderMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the controller is now {}: reconnecting", self.0)
    }
}

impl std::error::Error for LeaderMoved {}
