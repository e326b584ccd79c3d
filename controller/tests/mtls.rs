//! mTLS on the controller's gRPC service: an agent and a worker with certificates from the
//! controller's CA register; an agent with a certificate from another CA, and a client without
//! any, are refused.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::pki;
use controller::service::{Server, ServerOptions};
use tokio_util::sync::CancellationToken;

fn tls(ca: &Path, cert: &Path, key: &Path) -> cluster::TlsArgs {
    cluster::TlsArgs {
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        tls_ca: Some(ca.to_path_buf()),
    }
}

fn agent_cfg(url: &str, node: &str, tls: cluster::TlsArgs) -> agent::AgentConfig {
    let mut c = agent::AgentConfig::in_process(
        url.to_string(),
        node.into(),
        agent::SourceKind::Simulated,
        agent::GpuSelection::First(1),
        Duration::from_millis(50),
    );
    c.tls = tls;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_peers_with_a_certificate_from_the_controllers_ca_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "cluster");
    let (other_ca, other_cert, other_key) = pki(dir.path(), "other");
    let server_tls = tls(&ca, &cert, &key);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ServerOptions {
        tls: server_tls.server().unwrap(),
        ..Default::default()
    };
    let server = Server::start(listener, options).unwrap();
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");
    let cancel = CancellationToken::new();

    // a stranger: a certificate from another CA (it trusts the controller's CA, so only the
    // controller's check of its certificate can stop it)
    let mut stranger_tls = tls(&ca, &other_cert, &other_key);
    stranger_tls.tls_ca = Some(ca.clone());
    let stranger = tokio::spawn(agent::run(
        agent_cfg(&url, "stranger", stranger_tls),
        cancel.clone(),
    ));
    // a member: the cluster's CA
    let member = tokio::spawn(agent::run(
        agent_cfg(&url, "member", tls(&ca, &cert, &key)),
        cancel.clone(),
    ));
    let worker = tokio::spawn(loadgen::worker::run_worker(
        loadgen::worker::WorkerConfig {
            status: Default::default(),
            controller: url.clone(),
            name: "w-member".into(),
            max_streams: 10,
            etcd: None,
            tls: tls(&ca, &cert, &key).client().unwrap(),
        },
        cancel.clone(),
    ));

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let agents = server.registry.list().await;
        let workers = server.workers.list().await;
        if agents
            .iter()
            .any(|a| a.node_name == "member" && !a.last_samples.is_empty())
            && workers.iter().any(|w| w.name == "w-member")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the member agent and worker did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the stranger has been retrying all along: never admitted
    tokio::time::sleep(Duration::from_secs(1)).await;
    let names: Vec<String> = server
        .registry
        .list()
        .await
        .into_iter()
        .map(|a| a.node_name)
        .collect();
    assert_eq!(names, vec!["member".to_string()]);
    assert!(
        !stranger.is_finished(),
        "the stranger keeps retrying, refused each time"
    );

    // a client with another CA's certificate, and one without a certificate, cannot call in
    for client_tls in [
        Some(tls(&ca, &other_cert, &other_key).client().unwrap().unwrap()),
        Some(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()),
        )),
    ] {
        let ep = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tls_config(client_tls.unwrap())
            .unwrap();
        let refused = match ep.connect().await {
            Err(_) => true,
            Ok(ch) => proto::controller_client::ControllerClient::new(ch)
                .list_agents(proto::ListAgentsRequest {})
                .await
                .is_err(),
        };
        assert!(refused, "a peer without a valid certificate was let in");
    }
    // and plain HTTP gets nothing
    let plain = url.replacen("https://", "http://", 1);
    let r = match proto::controller_client::ControllerClient::connect(plain).await {
        Err(_) => true,
        Ok(mut c) => c.list_agents(proto::ListAgentsRequest {}).await.is_err(),
    };
    assert!(r, "plain HTTP/2 was answered");
    let _ = other_ca;

    cancel.cancel();
    for t in [stranger, member] {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    server.shutdown().await;
}
