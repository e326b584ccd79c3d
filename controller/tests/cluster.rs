//! The distributed mode with real processes and a real etcd (Debian's etcd-server, started on
//! loopback ports): two `benchctl controller --etcd` processes, an agent and a load worker that
//! find the leader through etcd. The leader is killed with SIGKILL, then etcd itself is killed and
//! restarted; every time, the agent and the worker end up connected to the elected controller.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::testing::{Etcd, free_port};
use tokio_util::sync::CancellationToken;

struct Controller {
    child: Child,
    url: String,
}

impl Controller {
    fn spawn(etcd: &Etcd) -> Controller {
        let port = free_port("127.0.0.1");
        let child = Command::new(env!("CARGO_BIN_EXE_benchctl"))
            .args([
                "controller",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--etcd",
                &etcd.client_url,
                "--lease-ttl",
                "2",
                "--dashboard-addr",
                "off",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("benchctl controller starts");
        Controller {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no resignation, the lease must expire
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn leader(etcd: &Etcd) -> Option<String> {
    let mut c = etcd.args().connect().await.ok()?;
    let r = c.leader(cluster::ELECTION).await.ok()?;
    r.kv()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// The agents and workers connected to the controller at `url`.
async fn members(url: &str) -> Option<(Vec<String>, Vec<String>)> {
    let mut c = proto::controller_client::ControllerClient::connect(url.to_string())
        .await
        .ok()?;
    let agents = c
        .list_agents(proto::ListAgentsRequest {})
        .await
        .ok()?
        .into_inner()
        .agents
        .into_iter()
        .filter(|a| a.connected && !a.last_samples.is_empty())
        .map(|a| a.node_name)
        .collect();
    let workers = c
        .list_workers(proto::ListWorkersRequest {})
        .await
        .ok()?
        .into_inner()
        .workers
        .into_iter()
        .map(|w| w.name)
        .collect();
    Some((agents, workers))
}

/// Waits until etcd names a leader among `candidates` and both members are connected to it.
async fn settled(etcd: &Etcd, candidates: &[&str], what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = leader(etcd).await
            && candidates.contains(&l.as_str())
            && let Some((agents, workers)) = members(&l).await
            && agents == vec!["node-a".to_string()]
            && workers == vec!["worker-a".to_string()]
        {
            return l;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_and_workers_follow_the_leader_through_a_kill_and_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let mut a = Controller::spawn(&etcd);
    // A is elected before B starts, so the order is known
    let deadline = Instant::now() + Duration::from_secs(20);
    while leader(&etcd).await.as_deref() != Some(a.url.as_str()) {
        assert!(Instant::now() < deadline, "controller A was not elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = Controller::spawn(&etcd);

    let cancel = CancellationToken::new();
    let mut agent_cfg = agent::AgentConfig::in_process(
        String::new(),
        "node-a".into(),
        agent::SourceKind::Simulated,
        agent::GpuSelection::First(1),
        Duration::from_millis(50),
    );
    agent_cfg.controller = None;
    agent_cfg.etcd = etcd.args();
    let agent = tokio::spawn(agent::run(agent_cfg, cancel.clone()));
    let worker = tokio::spawn(loadgen::worker::run_worker(
        loadgen::worker::WorkerConfig {
            status: Default::default(),
            controller: String::new(),
            name: "worker-a".into(),
            max_streams: 100,
            etcd: Some(etcd.args()),
            tls: None,
        },
        cancel.clone(),
    ));
    // membership keys under leases
    let mut c = etcd.args().connect().await.unwrap();
    let l = settled(&etcd, &[&a.url], "the agent and the worker on A").await;
    assert_eq!(l, a.url);
    for key in [
        cluster::agent_key("node-a"),
        cluster::worker_key("worker-a"),
    ] {
        assert_eq!(
            c.get(key.clone(), None).await.unwrap().kvs().len(),
            1,
            "{key}"
        );
    }

    // kill -9 the leader: B is elected when A's lease expires; both members move to B
    let t = Instant::now();
    a.kill();
    let l = settled(
        &etcd,
        &[&b.url],
        "the agent and the worker on B after A's kill",
    )
    .await;
    assert_eq!(l, b.url);
    eprintln!(
        "failover to B with both members reconnected: {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(20));

    // etcd killed and restarted: the cluster settles again on a leader with both members
    etcd.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.restart().await;
    settled(&etcd, &[&b.url], "the cluster after the etcd restart").await;

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    // a clean stop revokes the members' leases
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = etcd.args().connect().await.unwrap();
    loop {
        let left = c
            .get(
                format!("{}agents/", cluster::PREFIX),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap()
            .kvs()
            .len();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's key outlived it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);
}
