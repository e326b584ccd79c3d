//! How every process reaches etcd: the `--etcd*` flags and connecting with them.

use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::etcd_backoff;

/// The limit of one etcd request (a campaign has none).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

    pub(crate) async fn connect_with(&self, timeout: Option<Duration>) -> anyhow::Result<Client> {
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

    pub(crate) async fn connect_retrying_with(
        &self,
        cancel: &CancellationToken,
        timeout: Option<Duration>,
    ) -> Option<Client> {
        let mut backoff = etcd_backoff();
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

/// An etcd error worth retrying: etcd unreachable or restarting, not a refusal (permissions, a
/// value too large, bad credentials).
pub(crate) fn transient(e: &etcd_client::Error) -> bool {
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
