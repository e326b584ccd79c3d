//! The agent against an in-test controller: registration, contiguous telemetry, clock pongs with
//! the injected skew, sampling settings, and a reconnect that replays without loss or duplicates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{AgentConfig, GpuSelection, SourceKind};
use cluster::clock::mono_ns;
use proto::controller_server::{Controller, ControllerServer};
use proto::{
    AgentMessage, AgentRegister, AgentRegistered, ClockPing, ClockPong, ControllerToAgent,
    ControllerToWorker, GpuSample, ListAgentsRequest, ListAgentsResponse, SamplingSettings,
    WorkerMessage, agent_message, controller_to_agent,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

const SKEW_NS: i64 = 7_000_000_000;

#[derive(Debug, Default)]
struct Seen {
    registers: Vec<AgentRegister>,
    samples: Vec<GpuSample>,
    pongs: Vec<(ClockPong, u64)>,
    max_dropped: u64,
}

/// Answers AgentRegistered{resume_from}, sends three pings and optionally a SamplingSettings,
/// records everything.
#[derive(Clone)]
struct TestController {
    seen: Arc<Mutex<Seen>>,
    resume_from: u64,
    settings_ms: u32,
    stop: CancellationToken,
    tasks: TaskTracker,
}

fn to_agent(msg: controller_to_agent::Msg) -> Result<ControllerToAgent, Status> {
    Ok(ControllerToAgent { msg: Some(msg) })
}

impl TestController {
    async fn session(
        self,
        mut inbound: Streaming<AgentMessage>,
        tx: mpsc::Sender<Result<ControllerToAgent, Status>>,
    ) {
        loop {
            let msg = tokio::select! {
                () = self.stop.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("test controller going away"))).await;
                    return;
                }
                msg = inbound.message() => msg,
            };
            let Ok(Some(AgentMessage { msg: Some(msg) })) = msg else {
                return;
            };
            match msg {
                agent_message::Msg::Register(register) => {
                    self.seen.lock().unwrap().registers.push(register);
                    let registered = AgentRegistered {
                        controller_id: "test".into(),
                        resume_from_seq: self.resume_from,
                    };
                    tx.send(to_agent(controller_to_agent::Msg::Registered(registered)))
                        .await
                        .unwrap();
                    if self.settings_ms > 0 {
                        let settings = SamplingSettings {
                            interval_ms: self.settings_ms,
                        };
                        tx.send(to_agent(controller_to_agent::Msg::Settings(settings)))
                            .await
                            .unwrap();
                    }
                    let tx = tx.clone();
                    self.tasks.spawn(async move {
                        for ping_id in 1..=3 {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            let ping = ClockPing {
                                ping_id,
                                t1_ns: mono_ns(),
                            };
                            let _ = tx
                                .send(to_agent(controller_to_agent::Msg::Ping(ping)))
                                .await;
                        }
                    });
                }
                agent_message::Msg::Telemetry(batch) => {
                    let mut seen = self.seen.lock().unwrap();
                    seen.max_dropped = seen.max_dropped.max(batch.dropped_samples);
                    seen.samples.extend(batch.samples);
                }
                agent_message::Msg::Pong(pong) => {
                    self.seen.lock().unwrap().pongs.push((pong, mono_ns()));
                }
            }
        }
    }

    /// Serves on `listener` until [`TestController::shutdown`].
    fn start(
        listener: TcpListener,
        resume_from: u64,
        settings_ms: u32,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let controller = Self {
            seen: Arc::default(),
            resume_from,
            settings_ms,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let stop = controller.stop.clone();
        let service = ControllerServer::new(controller.clone());
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        (controller, server)
    }

    /// Ends every session with an error status and stops the server.
    async fn shutdown(&self, server: tokio::task::JoinHandle<()>) {
        self.stop.cancel();
        self.tasks.close();
        let abort = server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .is_err()
        {
            abort.abort();
        }
        tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .unwrap();
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.seen(&cond) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tonic::async_trait]
impl Controller for TestController {
    type AgentSessionStream = ReceiverStream<Result<ControllerToAgent, Status>>;
    type WorkerSessionStream = ReceiverStream<Result<ControllerToWorker, Status>>;

    async fn agent_session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::AgentSessionStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        self.tasks
            .spawn(self.clone().session(request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn worker_session(
        &self,
        _: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::WorkerSessionStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn set_sampling(
        &self,
        _: Request<proto::SetSamplingRequest>,
    ) -> Result<Response<proto::SetSamplingResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn list_workers(
        &self,
        _: Request<proto::ListWorkersRequest>,
    ) -> Result<Response<proto::ListWorkersResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn assert_contiguous(samples: &[GpuSample], from: u64, gpus: u64) {
    for (i, s) in samples.iter().enumerate() {
        let expected = from + i as u64;
        assert_eq!(
            s.seq,
            expected,
            "sample {i} of {} from {from}",
            samples.len()
        );
        // One number per (poll, GPU), GPUs in order within a poll.
        assert_eq!(u64::from(s.gpu_index), s.seq % gpus, "{s:?}");
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr} again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_answers_pings_and_replays_after_reconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first, server) = TestController::start(listener, 0, 40);

    let started_ns = mono_ns();
    let mut cfg = AgentConfig::in_process(
        format!("http://{addr}"),
        "test-node".into(),
        SourceKind::Simulated,
        GpuSelection::First(2),
        Duration::from_millis(20),
    );
    cfg.clock_skew_ns = SKEW_NS;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(agent::run(cfg, cancel.clone()));

    // Registration, telemetry, pongs.
    first
        .wait_for("samples and pongs", |s| {
            s.samples.len() >= 20 && s.pongs.len() >= 3
        })
        .await;
    let register = first.seen(|s| s.registers[0].clone());
    assert_eq!(register.node_name, "test-node");
    assert_eq!(register.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(register.simulated);
    assert_eq!(register.interval_ms, 20);
    let uuids: Vec<&str> = register.gpus.iter().map(|g| g.uuid.as_str()).collect();
    assert_eq!(uuids, ["SIM-GPU-0", "SIM-GPU-1"]);
    assert!(register.gpus.iter().all(|g| g.name.contains("SIMULATED")));
    first.seen(|s| {
        assert_contiguous(&s.samples, 0, 2);
        assert_eq!(s.max_dropped, 0);
        let now = mono_ns();
        for sample in &s.samples {
            let unskewed = sample.t_ns - SKEW_NS as u64;
            assert!(unskewed >= started_ns && unskewed <= now, "{sample:?}");
        }
        let ids: Vec<u64> = s.pongs.iter().map(|(p, _)| p.ping_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        for (pong, received_ns) in &s.pongs {
            // t1 ≤ t2 − skew ≤ t3 − skew ≤ when the pong arrived.
            let t2 = pong.t2_ns - SKEW_NS as u64;
            let t3 = pong.t3_ns - SKEW_NS as u64;
            assert!(
                pong.t1_ns <= t2 && t2 <= t3 && t3 <= *received_ns,
                "{pong:?}"
            );
            assert!(received_ns - pong.t1_ns < 1_000_000_000, "{pong:?}");
        }
    });

    // The controller goes away; the agent keeps sampling into its buffer.
    first.shutdown(server).await;
    let last_seq = first.seen(|s| s.samples.last().unwrap().seq);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A controller on the same address that has everything up to last_seq.
    let resume_from = last_seq + 1;
    let (second, server) = TestController::start(rebind(addr).await, resume_from, 0);
    second
        .wait_for("replayed and new samples", |s| s.samples.len() >= 40)
        .await;
    let register = second.seen(|s| s.registers[0].clone());
    assert_eq!(
        register.instance_id,
        first.seen(|s| s.registers[0].instance_id)
    );
    assert!(register.oldest_buffered_seq <= resume_from, "{register:?}");
    assert!(
        register.next_seq > resume_from + 10,
        "samples buffered while away: {register:?}"
    );
    assert_eq!(register.interval_ms, 40, "SamplingSettings applied");

    // Shutdown flushes; the controller's view is gap-free and duplicate-free.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent stops when cancelled")
        .unwrap()
        .unwrap();
    second.seen(|s| {
        assert_contiguous(&s.samples, resume_from, 2);
        assert_eq!(s.max_dropped, 0);
    });
    second.shutdown(server).await;
}

#[tokio::test]
async fn nvml_without_driver_fails_before_connecting() {
    if agent::source::open(SourceKind::Nvml, &agent::GpuSelection::All).is_ok() {
        return; // A GPU node: nothing to check here.
    }
    // Nothing listens on port 1; the error must come from NVML, at once.
    let cfg = AgentConfig::in_process(
        "http://127.0.0.1:1".into(),
        "test-node".into(),
        SourceKind::Nvml,
        GpuSelection::First(1),
        Duration::from_millis(500),
    );
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        agent::run(cfg, CancellationToken::new()),
    )
    .await
    .expect("fails at once")
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("NVML") && text.contains("--source simulated"),
        "{text}"
    );
}
