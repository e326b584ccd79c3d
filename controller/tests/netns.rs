//! The distributed mode across hosts: each host a Linux network namespace with its own address
//! on a private bridge (10.213.S.0/24, inside this machine: nothing leaves it), every part a real
//! process, a real etcd.
//!
//! - host `ctl-a`: etcd and controller A; host `ctl-b`: controller B (standby); they share the
//!   data directory, as controllers on a shared volume do;
//! - host `gpu`: the inference server (`benchctl sim`) and the telemetry agent;
//! - host `load`: two load workers, and the user's `benchctl` commands.
//!
//! A second test puts a three-member etcd cluster on three hosts and makes one member answer its
//! clients 200 ms late (a delaying proxy in front of it): the controllers' leadership must not
//! flap.
//!
//! Needs root (CAP_NET_ADMIN) for `ip netns`; skipped elsewhere, unless
//! `BENCHCTL_REQUIRE_NETNS=1` (set by `.ci/run`) makes that a failure.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{BIN, Proc, dump_logs, sibling};

mod common;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Hosts as network namespaces on one bridge.
struct Net {
    prefix: String,
    subnet: u32,
    hosts: Vec<String>,
}

impl Net {
    /// `None` where network namespaces cannot be made (not root, no `ip`).
    fn create(hosts: &[&str]) -> Option<Net> {
        // two tests of this file run at once: a counter keeps their names apart
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 10_000;
        let net = Net {
            prefix: format!("bc{id}{n}"),
            subnet: 1 + id % 250,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        match net.build() {
            Ok(()) => Some(net),
            Err(e) => {
                assert!(
                    std::env::var("BENCHCTL_REQUIRE_NETNS").as_deref() != Ok("1"),
                    "BENCHCTL_REQUIRE_NETNS=1 but network namespaces cannot be made: {e}"
                );
                eprintln!("SKIPPED: network namespaces cannot be made here: {e}");
                None
            }
        }
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn addr(&self, host: &str) -> String {
        let i = self.hosts.iter().position(|h| h == host).expect("a host");
        format!("10.213.{}.{}", self.subnet, i + 1)
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (i, h) in self.hosts.iter().enumerate() {
            let ns = self.ns(h);
            let (a, b) = (
                format!("{}h{i}", self.prefix),
                format!("{}s{i}", self.prefix),
            );
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &ns])?;
            ip(&["link", "set", &b, "netns", &sw])?;
            ip(&["-n", &sw, "link", "set", &b, "master", "br0", "up"])?;
            let cidr = format!("{}/24", self.addr(h));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &a])?;
            ip(&["-n", &ns, "link", "set", &a, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// A TCP proxy on `host` from `listen` to `upstream` (both there) whose answers come `delay`
    /// late: every chunk the upstream sends is held for `delay` after it was read, in order, so
    /// the stream keeps its throughput and gains the latency. It runs on a thread of this test
    /// that moved into the host's network namespace (a socket stays in the namespace it was made
    /// in). A kernel's `tc netem` would do the same on the interface; the test VMs have no
    /// `sch_netem`.
    /// Returns the count of chunks it delivered late.
    fn slow_proxy(
        &self,
        host: &str,
        listen: String,
        upstream: String,
        delay: Duration,
    ) -> Arc<AtomicU64> {
        let late = Arc::new(AtomicU64::new(0));
        let counter = late.clone();
        let ns_file = format!("/run/netns/{}", self.ns(host));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::os::fd::AsFd;
            let ns = std::fs::File::open(&ns_file).expect("the host's namespace");
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the host");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let upstream = upstream.clone();
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut c_rx, c_tx) = client.into_split();
                        let (s_rx, mut s_tx) = server.into_split();
                        tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut c_rx, &mut s_tx).await;
                        });
                        late_copy(s_rx, c_tx, delay, counter).await;
                    });
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy listens");
        late
    }

    fn command(&self, host: &str, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)])
            .arg(bin)
            .args(args)
            .env("RUST_LOG", "info");
        c
    }

    /// Starts `bin` on `host` (`ip netns exec` execs it: the child is the process itself).
    fn spawn(&self, host: &str, bin: &Path, args: &[&str], log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        Proc(
            self.command(host, bin, args)
                .stdout(Stdio::null())
                .stderr(f)
                .spawn()
                .unwrap(),
        )
    }

    fn run(&self, host: &str, args: &[&str]) -> Output {
        self.command(host, Path::new(BIN), args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn late_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    late: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            late.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in self.hosts.iter().map(|h| self.ns(h)).chain([self.switch()]) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &h]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = ip(&["netns", "del", &h]);
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The result array of the sweep `id`.
fn entries(data: &Path, id: &str) -> Vec<serde_json::Value> {
    common::result_array(&data.join(id))
}

#[test]
fn a_sweep_across_hosts_shares_load_and_survives_the_leaders_death() {
    let Some(net) = Net::create(&["ctl-a", "ctl-b", "gpu", "load"]) else {
        return;
    };
    let logs_dir = tempfile::tempdir().unwrap();
    let logs = logs_dir.path();
    let data = tempfile::tempdir().unwrap();
    let etcd_data = tempfile::tempdir().unwrap();
    let (a_ip, b_ip, gpu_ip) = (net.addr("ctl-a"), net.addr("ctl-b"), net.addr("gpu"));
    let etcd_url = format!("http://{a_ip}:2379");
    let _etcd = net.spawn(
        "ctl-a",
        Path::new("etcd"),
        &[
            "--data-dir",
            etcd_data.path().to_str().unwrap(),
            "--listen-client-urls",
            &etcd_url,
            "--advertise-client-urls",
            &etcd_url,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "default=http://127.0.0.1:2380",
        ],
        &logs.join("etcd.log"),
    );
    let controller = |host: &str, addr: &str, log: &str| {
        let listen = format!("{addr}:7400");
        net.spawn(
            host,
            Path::new(BIN),
            &[
                "controller",
                "--listen",
                &listen,
                "--etcd",
                &etcd_url,
                "--lease-ttl",
                "2",
                "--dashboard-addr",
                "off",
                "--data-dir",
                data.path().to_str().unwrap(),
            ],
            &logs.join(log),
        )
    };
    let mut a = controller("ctl-a", &a_ip, "controller-a.log");
    // A answers through etcd before B starts: A leads
    let deadline = Instant::now() + Duration::from_secs(30);
    while !net
        .run("load", &["sweeps", "--etcd", &etcd_url, "--json"])
        .status
        .success()
    {
        if Instant::now() > deadline {
            dump_logs(logs);
            panic!("controller A was not elected");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _b = controller("ctl-b", &b_ip, "controller-b.log");
    let _sim = net.spawn(
        "gpu",
        Path::new(BIN),
        &[
            "sim",
            "--host",
            &gpu_ip,
            "--port",
            "8000",
            "--decode-step-base-ms",
            "10",
        ],
        &logs.join("sim.log"),
    );
    let _agent = net.spawn(
        "gpu",
        &sibling("benchctl-agent"),
        &[
            "--etcd",
            &etcd_url,
            "--source",
            "simulated",
            "--gpu-num",
            "2",
            "--node-name",
            "gpu-node",
            "--interval",
            "100ms",
        ],
        &logs.join("agent.log"),
    );
    let _w: Vec<Proc> = ["l1", "l2"]
        .iter()
        .map(|n| {
            net.spawn(
                "load",
                &sibling("benchctl-loadgen"),
                &["--etcd", &etcd_url, "--name", n],
                &logs.join(format!("{n}.log")),
            )
        })
        .collect();
    let a_url = format!("http://{a_ip}:7400");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = net.run("load", &["agents", "--controller", &a_url]);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("load workers: 2") && text.contains("gpu-node") && text.contains("util") {
            break;
        }
        if Instant::now() > deadline {
            dump_logs(logs);
            panic!("the workers and the agent did not join A: {text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // one test on one worker, then on both at the same total load
    let base = format!("http://{gpu_ip}:8000");
    let one_test = |workers: &str| {
        let out = net.run(
            "load",
            &[
                "sweep",
                "--etcd",
                &etcd_url,
                "--base-url",
                &base,
                "--io",
                "64x64",
                "--concurrency",
                "8",
                "--num-prompts",
                "64",
                "--workers",
                workers,
                "--detach",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let out = net.run("load", &["sweep", "attach", &id, "--etcd", &etcd_url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        entries(data.path(), &id).remove(0)
    };
    let one = one_test("1");
    let two = one_test("2");
    assert_eq!(one["load_workers"].as_array().unwrap().len(), 1);
    let w = two["load_workers"].as_array().unwrap();
    assert_eq!(w.len(), 2, "{two}");
    assert!(w.iter().all(|w| w["records"] == 32), "{w:?}");
    assert_eq!(two["completed"], 64);
    assert_eq!(two["gpu_count"], 2, "the agent's GPUs are in the result");
    let close = |k: &str, tol: f64| {
        let (x, y) = (one[k].as_f64().unwrap(), two[k].as_f64().unwrap());
        eprintln!("{k}: one worker {x:.2}, two workers {y:.2}");
        assert!((x - y).abs() / x < tol, "{k}: {x} vs {y}");
    };
    close("mean_tpot_ms", 0.10);
    close("mean_e2el_ms", 0.10);
    close("output_throughput", 0.15);
    eprintln!(
        "start skew over two hosts' workers: {} ms",
        two["start_skew_ms"]
    );

    // the leader killed mid-sweep: B, on another host, finishes it
    let mut cli = net
        .command(
            "load",
            Path::new(BIN),
            &[
                "sweep",
                "--etcd",
                &etcd_url,
                "--base-url",
                &base,
                "--io",
                "32x100",
                "--concurrency",
                "2,4,8",
                "--num-prompts",
                "8",
                "--quiet",
            ],
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.join("cli.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let list = json(&net.run("load", &["sweeps", "--etcd", &etcd_url, "--json"]));
        let s = &list[2];
        if s["tests_done"].as_u64() >= Some(1)
            && s["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("running"))
        {
            break s["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the third sweep did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(90);
    let rc = loop {
        if let Some(rc) = cli.try_wait().unwrap() {
            break rc;
        }
        if Instant::now() > deadline {
            let _ = cli.kill();
            dump_logs(logs);
            panic!("the sweep did not finish after the failover");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let cli_text = std::fs::read_to_string(logs.join("cli.log")).unwrap();
    if !rc.success() {
        dump_logs(logs);
    }
    assert!(rc.success(), "{cli_text}");
    assert!(
        cli_text.contains(&format!("http://{b_ip}:7400 took over from {a_url}")),
        "{cli_text}"
    );
    let e = entries(data.path(), &id);
    let mut ids: Vec<&str> = e.iter().map(|e| e["test_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["c2_in32_out100", "c4_in32_out100", "c8_in32_out100"],
        "every test exactly once"
    );
    let list = json(&net.run("load", &["sweeps", "--etcd", &etcd_url, "--json"]));
    assert_eq!(list[2]["status"], "done");
    assert_eq!(list[2]["failovers"], 1);
}

/// Polls `benchctl sweeps` on `host` until the elected controller answers (30 s at most).
fn wait_for_leader(net: &Net, etcd: &str, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !net
        .run("load", &["sweeps", "--etcd", etcd, "--json"])
        .status
        .success()
    {
        if Instant::now() > deadline {
            dump_logs(logs);
            panic!("no controller was elected");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_slow_etcd_member_causes_no_leadership_flap() {
    let Some(net) = Net::create(&["e1", "e2", "e3", "ctl-a", "ctl-b", "gpu", "load"]) else {
        return;
    };
    let logs_dir = tempfile::tempdir().unwrap();
    let logs = logs_dir.path();
    let data = tempfile::tempdir().unwrap();
    let members = ["e1", "e2", "e3"];
    let url = |h: &str, port: u16| format!("http://{}:{port}", net.addr(h));
    let initial = members
        .iter()
        .map(|h| format!("{h}={}", url(h, 2380)))
        .collect::<Vec<_>>()
        .join(",");
    let etcd_dirs: Vec<tempfile::TempDir> = members
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let _etcd: Vec<Proc> = members
        .iter()
        .zip(&etcd_dirs)
        .map(|(h, d)| {
            let (client, peer) = (url(h, 2379), url(h, 2380));
            // the slow member listens on loopback; its address is the slow proxy's
            let listen = if *h == "e3" {
                "http://127.0.0.1:2379".to_string()
            } else {
                client.clone()
            };
            net.spawn(
                h,
                Path::new("etcd"),
                &[
                    "--name",
                    h,
                    "--data-dir",
                    d.path().to_str().unwrap(),
                    "--listen-client-urls",
                    &listen,
                    "--advertise-client-urls",
                    &client,
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                ],
                &logs.join(format!("etcd-{h}.log")),
            )
        })
        .collect();
    // member e3 answers every client 200 ms late, for the whole run
    let late = net.slow_proxy(
        "e3",
        format!("{}:2379", net.addr("e3")),
        "127.0.0.1:2379".into(),
        Duration::from_millis(200),
    );
    let etcd = members
        .iter()
        .map(|h| url(h, 2379))
        .collect::<Vec<_>>()
        .join(",");
    let controller = |host: &str, log: &str| {
        let listen = format!("{}:7400", net.addr(host));
        net.spawn(
            host,
            Path::new(BIN),
            &[
                "controller",
                "--listen",
                &listen,
                "--etcd",
                &etcd,
                "--lease-ttl",
                "2",
                "--dashboard-addr",
                "off",
                "--data-dir",
                data.path().to_str().unwrap(),
            ],
            &logs.join(log),
        )
    };
    let _a = controller("ctl-a", "controller-a.log");
    wait_for_leader(&net, &etcd, logs);
    let _b = controller("ctl-b", "controller-b.log");
    let gpu_ip = net.addr("gpu");
    let _sim = net.spawn(
        "gpu",
        Path::new(BIN),
        &[
            "sim",
            "--host",
            &gpu_ip,
            "--port",
            "8000",
            "--decode-step-base-ms",
            "5",
        ],
        &logs.join("sim.log"),
    );
    let _w = net.spawn(
        "load",
        &sibling("benchctl-loadgen"),
        &["--etcd", &etcd, "--name", "l1"],
        &logs.join("l1.log"),
    );
    let started = Instant::now();
    let base = format!("http://{gpu_ip}:8000");
    let out = net.run(
        "load",
        &[
            "sweep",
            "--etcd",
            &etcd,
            "--base-url",
            &base,
            "--io",
            "32x64",
            "--concurrency",
            "1,2,4,8",
            "--num-prompts",
            "8",
            "--quiet",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        dump_logs(logs);
    }
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("took over"), "{stderr}");
    // several lease lifetimes (2 s) under the slow member, sweep included
    if let Some(rest) = Duration::from_secs(8).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let list = json(&net.run("load", &["sweeps", "--etcd", &etcd, "--json"]));
    assert_eq!(list[0]["status"], "done", "{list}");
    assert_eq!(list[0]["failovers"], 0, "{list}");
    let log_a = std::fs::read_to_string(logs.join("controller-a.log")).unwrap();
    let log_b = std::fs::read_to_string(logs.join("controller-b.log")).unwrap();
    let flaps = log_a.matches("elected leader").count() != 1
        || log_a.contains("lost the campaign's lease")
        || log_b.contains("elected leader");
    if flaps {
        dump_logs(logs);
    }
    assert!(
        !flaps,
        "A elected once and kept it, B never elected, over {:.1} s with a 200 ms etcd member",
        started.elapsed().as_secs_f64()
    );
    // the slow member was used: the controllers' and the worker's clients spread over it
    let late = late.load(Ordering::Relaxed);
    assert!(late > 0, "no answer went through the slow member");
    eprintln!(
        "{late} answers of etcd member e3 came 200 ms late; no leadership change over {:.1} s with etcd member e3 answering 200 ms late",
        started.elapsed().as_secs_f64()
    );
}
