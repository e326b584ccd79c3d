//! Test fixtures (the `testing` feature, for dev-dependencies only): a real etcd on loopback
//! ports, free ports, result files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EtcdArgs;

/// A free TCP port on `ip` (a loopback address such as `127.0.0.1`).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The result array (`*_vllm_result.json`) of the sweep directory `dir`; panics without one.
pub fn result_array(dir: &Path) -> Vec<serde_json::Value> {
    let f = result_file(dir).expect("the result array");
    serde_json::from_slice(&std::fs::read(f).unwrap()).expect("the result array parses")
}

/// The result array of the sweep directory `dir`, `None` while there is none (or it does not
/// parse yet): for polling a sweep in progress.
pub fn try_result_array(dir: &Path) -> Option<Vec<serde_json::Value>> {
    let f = result_file(dir)?;
    serde_json::from_slice(&std::fs::read(f).ok()?).ok()
}

fn result_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_vllm_result.json"))
}

/// A real etcd (Debian's `etcd-server`) on loopback ports: an etcd process with its own data
/// directory; killed on drop.
pub struct Etcd {
    child: Option<Child>,
    pub client_url: String,
    peer_url: String,
    data: tempfile::TempDir,
    bin: PathBuf,
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
            client_url: format!("http://127.0.0.1:{}", free_port("127.0.0.1")),
            peer_url: format!("http://127.0.0.1:{}", free_port("127.0.0.1")),
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
        let args = EtcdArgs::plain(vec![self.client_url.clone()]);
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

    pub fn args(&self) -> EtcdArgs {
        EtcdArgs::plain(vec![self.client_url.clone()])
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
