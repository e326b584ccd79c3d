//! mTLS on the gRPC connections between controller, agents and workers: the `--tls-*` flags.

use anyhow::Context;

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
