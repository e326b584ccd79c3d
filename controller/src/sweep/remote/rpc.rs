//! The `Sweeps` gRPC service: `SubmitSweep`, `ListSweeps`, `WatchSweep`, `CancelSweep`, over a
//! [`Manager`] handle.

use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response};

use super::checkpoint::{Change, Checkpoint, Spec};
use super::manager::Manager;
use crate::sweep::feed::event;

type FetchStream =
    Pin<Box<dyn Stream<Item = Result<proto::FetchSweepResponse, tonic::Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<proto::SweepEvent, tonic::Status>> + Send>>;

/// A sweep as `ListSweeps` shows it.
fn info(d: &Checkpoint, sweeps: &Manager) -> proto::SweepInfo {
    proto::SweepInfo {
        id: d.id.clone(),
        status: d.status.as_str().into(),
        result_dir: sweeps.result_dir(&d.id).display().to_string(),
        tests_done: d.done_tests.len() as u64,
        submitted_at_unix_s: d.submitted_at_unix_s,
        detail: d
            .error
            .clone()
            .or_else(|| d.in_flight.as_ref().map(|t| format!("running {t}")))
            .unwrap_or_default(),
        failovers: d.takeovers() as u32,
    }
}

#[tonic::async_trait]
impl proto::sweeps_server::Sweeps for Manager {
    type WatchSweepStream = EventStream;
    type FetchSweepStream = FetchStream;

    async fn submit_sweep(
        &self,
        request: Request<proto::SubmitSweepRequest>,
    ) -> Result<Response<proto::SubmitSweepResponse>, tonic::Status> {
        if self.stop().is_cancelled() {
            return Err(tonic::Status::unavailable("this controller is stopping"));
        }
        let spec: Spec = serde_json::from_str(&request.into_inner().spec_json)
            .map_err(|e| tonic::Status::invalid_argument(format!("not a sweep: {e}")))?;
        let (id, path) = self
            .submit(spec)
            .await
            .map_err(|e| tonic::Status::failed_precondition(format!("{e:#}")))?;
        Ok(Response::new(proto::SubmitSweepResponse {
            id,
            result_dir: path.display().to_string(),
        }))
    }

    async fn list_sweeps(
        &self,
        _: Request<proto::ListSweepsRequest>,
    ) -> Result<Response<proto::ListSweepsResponse>, tonic::Status> {
        let mut sweeps: Vec<proto::SweepInfo> =
            self.list().await.iter().map(|d| info(d, self)).collect();
        sweeps.sort_by(|a, b| a.submitted_at_unix_s.total_cmp(&b.submitted_at_unix_s));
        Ok(Response::new(proto::ListSweepsResponse { sweeps }))
    }

    async fn watch_sweep(
        &self,
        request: Request<proto::WatchSweepRequest>,
    ) -> Result<Response<Self::WatchSweepStream>, tonic::Status> {
        let id = request.into_inner().id;
        let feed = self.feed(&id).await.ok_or_else(|| {
            tonic::Status::not_found(format!(
                "no sweep {id:?} on this controller (`benchctl sweeps` lists them)"
            ))
        })?;
        let (backlog, mut rx) = feed.subscribe();
        let stop = self.stop().clone();
        let (tx, out) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut done = false;
            for e in backlog {
                done |= matches!(e.event, Some(proto::sweep_event::Event::Finished(_)));
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            while !done {
                let e = tokio::select! {
                    // this controller stops: the client reattaches to the next leader
                    _ = stop.cancelled() => {
                        let stopping = tonic::Status::unavailable("the controller is stopping");
                        let _ = tx.send(Err(stopping)).await;
                        return;
                    }
                    e = rx.recv() => e,
                };
                match e {
                    Ok(e) => {
                        done = matches!(e.event, Some(proto::sweep_event::Event::Finished(_)));
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let line = format!("({n} updates skipped: this client is slow)");
                        let _ = tx
                            .send(Ok(event(proto::sweep_event::Event::Line(line))))
                            .await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn cancel_sweep(
        &self,
        request: Request<proto::CancelSweepRequest>,
    ) -> Result<Response<proto::CancelSweepResponse>, tonic::Status> {
        let id = request.into_inner().id;
        let feed = self.feed(&id).await.ok_or_else(|| {
            tonic::Status::not_found(format!("no sweep {id:?} on this controller"))
        })?;
        if self.stop().is_cancelled() {
            return Err(tonic::Status::unavailable("this controller is stopping"));
        }
        // durable first: a leader taken over meanwhile finishes it as interrupted
        self.update(&id, Change::CancelRequested)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
        self.interrupt(&id).await;
        feed.line("cancel asked: the test in flight is discarded".into());
        Ok(Response::new(proto::CancelSweepResponse {}))
    }

    async fn fetch_sweep(
        &self,
        request: Request<proto::FetchSweepRequest>,
    ) -> Result<Response<Self::FetchSweepStream>, tonic::Status> {
        let id = request.into_inner().id;
        // only a sweep this controller knows: an id is never a path to read
        let Some(d) = self.list().await.into_iter().find(|d| d.id == id) else {
            return Err(tonic::Status::not_found(format!(
                "no sweep {id:?} on this controller (`benchctl sweeps` lists them)"
            )));
        };
        let dir = self.result_dir(&id);
        if !dir.is_dir() {
            return Err(tonic::Status::not_found(format!(
                "sweep {id:?}: its result directory {} is not on this controller's disk",
                dir.display()
            )));
        }
        let status = d.status.as_str().to_string();
        let (tx, out) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || super::fetch::send(&dir, status, &tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
