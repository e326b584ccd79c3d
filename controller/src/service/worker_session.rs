//! A load worker's session (the `WorkerSession` rpc): registers the worker with the pool, then
//! relays its messages to the pool and pings its clock until the stream ends.

use loadgen::clock::mono_ns;
use proto::controller_to_worker::Msg as ToWorker;
use proto::worker_message::Msg as FromWorker;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::ping::PingTicker;
use super::pool::{Command, ToWorkerTx, Workers};
use crate::clock::Exchange;

/// Checks the worker's `WorkerRegister`, registers it and spawns the relay; returns the stream
/// towards the worker.
pub(super) async fn open(
    workers: &Workers,
    controller_id: String,
    mut incoming: Streaming<proto::WorkerMessage>,
) -> Result<ReceiverStream<Result<proto::ControllerToWorker, Status>>, Status> {
    let first = incoming.message().await?.ok_or_else(|| {
        Status::invalid_argument("the worker session ended before WorkerRegister")
    })?;
    let Some(FromWorker::Register(reg)) = first.msg else {
        return Err(Status::invalid_argument(
            "the first message of a worker session must be WorkerRegister",
        ));
    };
    check_register(&reg)?;
    let name = reg.worker_name.clone();
    let (to_worker, rx) = mpsc::channel(64);
    let session = workers
        .ask(|reply| Command::Register {
            reg,
            to_worker: to_worker.clone(),
            reply,
        })
        .await
        .map_err(|e| Status::unavailable(e.to_string()))??;
    let registered = proto::WorkerRegistered { controller_id };
    let _ = to_worker
        .send(Ok(proto::ControllerToWorker {
            msg: Some(ToWorker::Registered(registered)),
        }))
        .await;
    let relay = Relay {
        workers: workers.clone(),
        session,
        name,
        to_worker,
    };
    tokio::spawn(relay.run(incoming));
    Ok(ReceiverStream::new(rx))
}

/// Refuses a nameless worker, or one of another protocol version (it would run jobs wrong).
fn check_register(reg: &proto::WorkerRegister) -> Result<(), Status> {
    if reg.worker_name.is_empty() {
        return Err(Status::invalid_argument(
            "WorkerRegister.worker_name is empty: give the worker --name",
        ));
    }
    if reg.protocol != loadgen::worker::PROTOCOL {
        return Err(Status::failed_precondition(format!(
            "load worker {:?} ({}) speaks worker protocol {}, this controller {}: run benchctl-loadgen from the controller's release",
            reg.worker_name,
            reg.worker_version,
            reg.protocol,
            loadgen::worker::PROTOCOL
        )));
    }
    Ok(())
}

/// One registered worker's session.
struct Relay {
    workers: Workers,
    session: u64,
    name: String,
    to_worker: ToWorkerTx,
}

impl Relay {
    async fn run(self, mut incoming: Streaming<proto::WorkerMessage>) {
        let mut ticker = PingTicker::new();
        loop {
            tokio::select! {
                m = incoming.message() => {
                    let t4 = mono_ns();
                    match m {
                        Ok(Some(m)) => self.handle_message(m, t4).await,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!("load worker {}: stream error: {e}", self.name);
                            break;
                        }
                    }
                }
                ping = ticker.tick() => {
                    let msg = proto::ControllerToWorker { msg: Some(ToWorker::Ping(ping)) };
                    if self.to_worker.send(Ok(msg)).await.is_err() {
                        break;
                    }
                }
                // the worker's side of the stream is gone
                _ = self.to_worker.closed() => break,
            }
        }
        self.workers
            .tell(Command::Disconnected {
                session: self.session,
            })
            .await;
    }

    /// Passes one message of the worker (received at `t4`) to the pool.
    async fn handle_message(&self, m: proto::WorkerMessage, t4: u64) {
        let session = self.session;
        let cmd = match m.msg {
            Some(FromWorker::Pong(p)) => {
                let exchange = Exchange {
                    t1: p.t1_ns,
                    t2: p.t2_ns,
                    t3: p.t3_ns,
                    t4,
                };
                Command::Pong { session, exchange }
            }
            Some(FromWorker::Records(batch)) => Command::Records { session, batch },
            Some(FromWorker::Done(done)) => Command::Done { session, done },
            Some(FromWorker::WarmedUp(w)) => Command::WarmedUp {
                session,
                job_id: w.job_id,
            },
            Some(FromWorker::Register(_)) | None => return,
        };
        self.workers.tell(cmd).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Server, ServerOptions};

    /// A worker of another protocol version (here one from before the warm-up gate) is refused
    /// at registration, naming both versions, instead of being given jobs it would run wrong.
    #[tokio::test]
    async fn a_worker_of_another_protocol_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, ServerOptions::default()).unwrap();
        let mut client = proto::controller_client::ControllerClient::connect(server.url())
            .await
            .unwrap();
        let register = proto::WorkerMessage {
            msg: Some(FromWorker::Register(proto::WorkerRegister {
                worker_name: "old".into(),
                worker_version: "0.0.9".into(),
                max_streams: 10,
                boot_id: String::new(),
                protocol: 0,
            })),
        };
        let err = client
            .worker_session(tokio_stream::iter([register]))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains(&format!(
                "speaks worker protocol 0, this controller {}",
                loadgen::worker::PROTOCOL
            )),
            "{}",
            err.message()
        );
        assert!(server.workers.list().await.is_empty());
        server.shutdown().await;
    }
}
