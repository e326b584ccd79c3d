//! etcd with TLS, client certificates and password auth (Debian's etcd-server, started here on a
//! loopback port): a `benchctl controller` given `--etcd-ca/--etcd-cert/--etcd-key` and
//! `--etcd-user/--etcd-password` is elected; a client without a certificate, with one from
//! another CA, or with a wrong password is refused; the password never reaches the log.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Proc, free_port, pki};

const PASSWORD: &str = "s3cret-etcd-pw";

fn etcd_on_path() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()));
    assert!(
        found || std::env::var("BENCHCTL_REQUIRE_ETCD").as_deref() != Ok("1"),
        "BENCHCTL_REQUIRE_ETCD=1 but etcd is not on PATH"
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_tls_client_certificates_and_auth_pass_through() {
    if !etcd_on_path() {
        eprintln!("SKIPPED: no etcd on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "etcd");
    let (_, rogue_cert, rogue_key) = pki(dir.path(), "rogue");
    let url = format!("https://127.0.0.1:{}", free_port("127.0.0.1"));
    let peer = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let data = dir.path().join("data");
    let _etcd = Proc(
        Command::new("etcd")
            .args([
                "--name",
                "tls",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("tls={peer}"),
                "--cert-file",
                cert.to_str().unwrap(),
                "--key-file",
                key.to_str().unwrap(),
                "--trusted-ca-file",
                ca.to_str().unwrap(),
                "--client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let with_cert = cluster::EtcdArgs {
        endpoints: vec![url.clone()],
        etcd_ca: Some(ca.clone()),
        etcd_cert: Some(cert.clone()),
        etcd_key: Some(key.clone()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admin = loop {
        if let Ok(mut c) = with_cert.connect().await
            && c.status().await.is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "etcd with TLS did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // password auth on: only root (with its password) may read and write
    admin.user_add("root", PASSWORD, None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let full = cluster::EtcdArgs {
        etcd_user: Some("root".into()),
        etcd_password: Some(PASSWORD.into()),
        ..with_cert.clone()
    };
    // refused: no client certificate; one from another CA; a wrong password; plain http
    let refused = [
        (
            "no client certificate",
            cluster::EtcdArgs {
                etcd_cert: None,
                etcd_key: None,
                ..full.clone()
            },
        ),
        (
            "a certificate from another CA",
            cluster::EtcdArgs {
                etcd_cert: Some(rogue_cert),
                etcd_key: Some(rogue_key),
                ..full.clone()
            },
        ),
        (
            "a wrong password",
            cluster::EtcdArgs {
                etcd_password: Some("wrong".into()),
                ..full.clone()
            },
        ),
    ];
    for (what, args) in refused {
        let r = async {
            let mut c = args.connect().await?;
            c.get("/benchctl/v1/", None).await?;
            anyhow::Ok(())
        };
        let r = tokio::time::timeout(Duration::from_secs(15), r).await;
        assert!(
            !matches!(r, Ok(Ok(()))),
            "etcd accepted a client with {what}"
        );
    }

    // a controller with every option is elected
    let etcd_opts = [
        "--etcd",
        &url,
        "--etcd-ca",
        ca.to_str().unwrap(),
        "--etcd-cert",
        cert.to_str().unwrap(),
        "--etcd-key",
        key.to_str().unwrap(),
        "--etcd-user",
        "root",
    ];
    let log = dir.path().join("controller.log");
    let port = free_port("127.0.0.1");
    let _controller = Proc(
        Command::new(env!("CARGO_BIN_EXE_benchctl"))
            .args([
                "controller",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--dashboard-addr",
                "off",
                "--data-dir",
                dir.path().join("bench_logs").to_str().unwrap(),
            ])
            .args(etcd_opts)
            .env("BENCHCTL_ETCD_PASSWORD", PASSWORD)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut c = full.connect().await.unwrap();
    let want = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = c.leader(cluster::ELECTION).await
            && r.kv().map(|kv| kv.value()) == Some(want.as_bytes())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller was not elected: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `benchctl sweeps --etcd` reaches it through the same options
    let listed = common::stdout_ok(
        Command::new(env!("CARGO_BIN_EXE_benchctl"))
            .arg("sweeps")
            .args(etcd_opts)
            .arg("--json")
            .env("BENCHCTL_ETCD_PASSWORD", PASSWORD),
    );
    assert_eq!(listed, "[]");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(PASSWORD),
        "the etcd password reached the log"
    );
}
