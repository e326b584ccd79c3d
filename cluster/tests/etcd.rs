//! Against a real etcd (Debian's etcd-server 3.4) on loopback: the election, its failover, fenced
//! writes, membership under leases, and an etcd restart.

use std::time::{Duration, Instant};

use cluster::testing::Etcd;
use cluster::{ELECTION, agent_key, campaign, follow_leader, register, state_key};
use tokio_util::sync::CancellationToken;

async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(etcd: &Etcd, key: &str) -> Option<String> {
    let mut c = etcd.args().connect().await.ok()?;
    let r = c.get(key, None).await.ok()?;
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_failover_and_fencing() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let cancel = CancellationToken::new();
    let leader = follow_leader(etcd.args(), cancel.clone());

    let a = campaign(&etcd.args(), "http://127.0.0.1:7001", 2, &cancel)
        .await
        .unwrap()
        .expect("elected");
    // B campaigns and waits
    let (args, c2) = (etcd.args(), cancel.clone());
    let b = tokio::spawn(async move { campaign(&args, "http://127.0.0.1:7002", 2, &c2).await });
    let mut rx = leader.clone();
    until("the followers to see A", 10, || {
        let v = rx.borrow_and_update().clone();
        async move { v.as_deref() == Some("http://127.0.0.1:7001") }
    })
    .await;
    a.put(&state_key("sweeps/s1"), b"by A").await.unwrap();
    assert_eq!(
        get(&etcd, &state_key("sweeps/s1")).await.as_deref(),
        Some("by A")
    );
    assert!(!b.is_finished(), "B waits while A holds the lease");

    // A crashes (stops keeping its lease alive, no resignation): B is elected once it expires
    let (a_key, a_rev) = (a.fence().0.to_vec(), a.fence().1);
    let t = Instant::now();
    a.abandon();
    let b = tokio::time::timeout(Duration::from_secs(15), b)
        .await
        .expect("B is elected within 15 s")
        .unwrap()
        .unwrap()
        .expect("elected");
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "failover took {took:?} with a 2 s lease"
    );
    until("the followers to see B", 10, || {
        let v = leader.borrow().clone();
        async move { v.as_deref() == Some("http://127.0.0.1:7002") }
    })
    .await;
    // A's fence no longer holds: its key is gone, so a write fenced by it is refused
    let mut c = etcd.args().connect().await.unwrap();
    let stale = etcd_client::Txn::new()
        .when(vec![etcd_client::Compare::create_revision(
            a_key,
            etcd_client::CompareOp::Equal,
            a_rev,
        )])
        .and_then(vec![etcd_client::TxnOp::put(
            state_key("sweeps/s1"),
            "by stale A",
            None,
        )]);
    assert!(
        !c.txn(stale).await.unwrap().succeeded(),
        "a deposed leader's write is fenced off"
    );
    b.put(&state_key("sweeps/s1"), b"by B").await.unwrap();
    assert_eq!(
        get(&etcd, &state_key("sweeps/s1")).await.as_deref(),
        Some("by B")
    );
    // exactly one leader key
    let r = c
        .get(ELECTION, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 1);
    b.resign().await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_survives_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let cancel = CancellationToken::new();
    let reg = register(
        etcd.args(),
        agent_key("gpu-node-1"),
        "{\"version\":\"test\"}".into(),
        2,
        cancel.clone(),
    );
    until("the registration", 10, || async {
        get(&etcd, &agent_key("gpu-node-1")).await.is_some()
    })
    .await;
    let leader = campaign(&etcd.args(), "http://127.0.0.1:7001", 2, &cancel)
        .await
        .unwrap()
        .expect("elected");
    let follow = follow_leader(etcd.args(), cancel.clone());
    until("the leader", 10, || {
        let v = follow.borrow().clone();
        async move { v.is_some() }
    })
    .await;

    // kill -9 etcd and start it again on the same data: the member registers again, the
    // follower keeps the last leader meanwhile and sees the election again afterwards
    etcd.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        follow.borrow().as_deref(),
        Some("http://127.0.0.1:7001"),
        "the last known leader is kept while etcd is down"
    );
    etcd.restart().await;
    until("the registration after the restart", 20, || async {
        get(&etcd, &agent_key("gpu-node-1")).await.is_some()
    })
    .await;
    drop(leader);

    // a clean stop revokes the lease: the key goes at once
    cancel.cancel();
    let _ = reg.await;
    until("the key to go", 5, || async {
        get(&etcd, &agent_key("gpu-node-1")).await.is_none()
    })
    .await;
}
