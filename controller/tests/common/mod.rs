//! Helpers shared by the process-level tests: ports, child processes, binaries, certificates.
// each test file uses a part of them (the re-exported fixtures too)
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cluster::testing::Etcd;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

// ports and result files: the fixtures every crate's tests share
pub use cluster::testing::{free_port, result_array};

pub const BIN: &str = env!("CARGO_BIN_EXE_benchctl");

/// Runs `cmd`, asserts it succeeded (showing its stderr if not), returns its trimmed stdout.
pub fn stdout_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The loadgen and agent binaries, built beside `benchctl` (same workspace target dir).
pub fn sibling(name: &str) -> PathBuf {
    let p = Path::new(BIN).with_file_name(name);
    if !p.exists() {
        // `cargo test -p controller` alone does not build the other packages' binaries
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "loadgen", "-p", "agent", "--bins"])
            .status()
            .expect("cargo build runs");
        assert!(st.success(), "building {name}");
    }
    p
}

/// A child process killed (SIGKILL) on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prints the last lines of every log in `dir` (on a failure).
pub fn dump_logs(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("==== {} (last lines)", e.path().display());
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
}

/// A CA and a certificate it signed for 127.0.0.1 (server and client use), written as PEM files
/// into `dir`: `(ca.pem, cert.pem, key.pem)`.
pub fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name}-peer"));
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    std::fs::write(p("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(p("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}
pub mod hostile;

/// `bin args…` with its stderr in `log` (RUST_LOG=info), killed when the `Proc` drops.
pub fn spawn(bin: &Path, args: &[&str], log: &Path) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", bin.display())),
    )
}

/// A controller on `ip`: its process, its gRPC URL and its health and metrics URL.
pub fn controller(
    ip: &str,
    etcd: &Etcd,
    data: &Path,
    logs: &Path,
    name: &str,
) -> (Proc, String, String) {
    let port = free_port(ip);
    let listen = format!("{ip}:{port}");
    let metrics = format!("{ip}:{}", free_port(ip));
    let p = spawn(
        Path::new(BIN),
        &[
            "controller",
            "--listen",
            &listen,
            "--etcd",
            &etcd.client_url,
            "--lease-ttl",
            "2",
            "--dashboard-addr",
            "off",
            "--data-dir",
            data.to_str().unwrap(),
            "--metrics-addr",
            &metrics,
        ],
        &logs.join(format!("{name}.log")),
    );
    (p, format!("http://{listen}"), format!("http://{metrics}"))
}
