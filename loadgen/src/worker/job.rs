//! One job on this worker: its warm-up, then (when the controller gates it) `WarmedUp` and the
//! wait for `StartJob`, then its measured run, its records streamed as they complete, and its
//! `JobDone`.

use anyhow::Context;
use proto::worker_message::Msg as ToController;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::WorkerConfig;
use super::outbound::{message, stream_records};
use super::plan::plan;
use crate::clock::{instant_at, mono_ns};
use crate::runner::{Keep, RunOutput};

/// Runs one assignment and sends its `JobDone` (with `error` set when it could not run, or when
/// the worker shut down during it: its records are sent, but the job is not complete).
pub(super) async fn run_job(
    job: proto::JobAssignment,
    mut gate: Gate,
    shutdown: CancellationToken,
    cfg: WorkerConfig,
) {
    let job_id = job.job_id.clone();
    let metrics = &cfg.status.metrics;
    let done = match execute(job, &mut gate, &cfg).await {
        Ok(mut done) if shutdown.is_cancelled() => {
            metrics.job("interrupted");
            warn!(
                "job {job_id}: interrupted by shutdown, {} requests not sent",
                done.not_sent
            );
            done.error = format!(
                "worker {} shut down during the job ({} records sent, {} requests not sent)",
                cfg.name, done.records_sent, done.not_sent
            );
            done.interrupted = true;
            done
        }
        Ok(done) => {
            metrics.job(if gate.cancel.is_cancelled() {
                "interrupted"
            } else {
                "done"
            });
            info!(
                "job {job_id}: done, {} records sent, {} not sent",
                done.records_sent, done.not_sent
            );
            done
        }
        Err(e) => {
            metrics.job("failed");
            warn!("job {job_id} could not run: {e:#}");
            proto::JobDone {
                job_id: job_id.clone(),
                error: format!("{e:#}"),
                ..Default::default()
            }
        }
    };
    let _ = gate.tx.send(message(ToController::Done(done))).await;
}

/// A job's link to its session: messages out, the job's cancellation, and its `StartJob`.
pub(super) struct Gate {
    pub(super) tx: mpsc::Sender<proto::WorkerMessage>,
    pub(super) cancel: CancellationToken,
    pub(super) start: watch::Receiver<Option<u64>>,
}

impl Gate {
    /// Says the warm-up is over and waits for the start time, then until it: `Some(start)`, the
    /// agreed start (monotonic ns); `None`: cancelled (or the session ended) first.
    async fn wait_for_start(&mut self, job_id: &str) -> Option<u64> {
        let warmed = proto::WarmedUp {
            job_id: job_id.to_string(),
        };
        if self
            .tx
            .send(message(ToController::WarmedUp(warmed)))
            .await
            .is_err()
        {
            return None;
        }
        let at = tokio::select! {
            _ = self.cancel.cancelled() => return None,
            r = self.start.wait_for(Option::is_some) => match r {
                Ok(at) => at.expect("waited for Some"),
                Err(_) => return None,
            },
        };
        let late_ns = mono_ns().saturating_sub(at);
        if late_ns > 0 {
            warn!(
                "job {job_id}: StartJob arrived {:.1} ms after its start time",
                late_ns as f64 / 1e6
            );
        }
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            _ = tokio::time::sleep_until(instant_at(at)) => Some(at),
        }
    }
}

/// Runs the job: its warm-up, then (with `start_on_signal`) `WarmedUp` and a wait for
/// `StartJob`, then its measured run, streaming its records.
async fn execute(
    job: proto::JobAssignment,
    gate: &mut Gate,
    cfg: &WorkerConfig,
) -> anyhow::Result<proto::JobDone> {
    let runs = plan(&job, cfg)?;
    let n_prompts = match job.sessions.len() {
        0 => job.prompts.len(),
        _ => job.sessions.iter().map(|s| s.turns.len()).sum(),
    };
    let cancel = gate.cancel.clone();
    let warm = futures_util::future::join_all(
        runs.iter()
            .map(|run| crate::runner::warm_up(&run.client, &run.cfg, &cancel)),
    )
    .await;
    let mut done = proto::JobDone {
        job_id: job.job_id.clone(),
        start_ns: u64::MAX,
        warmup_sent: warm.iter().map(|w| w.sent as u32).sum(),
        warmup_failed: warm.iter().map(|w| w.failed as u32).sum(),
        ..Default::default()
    };
    // the schedule's origin: the start every worker of the test agreed on (a worker that wakes
    // late sends late, and its dispatch lag says so), or now for a job that starts alone
    let started = if cancel.is_cancelled() {
        None
    } else if job.start_on_signal {
        gate.wait_for_start(&job.job_id).await.map(Some)
    } else {
        Some(None)
    };
    let Some(origin) = started else {
        let now = mono_ns();
        done.start_ns = now;
        done.end_ns = now;
        done.not_sent = n_prompts as u32;
        return Ok(done);
    };

    // the worker's CPU over the measured run, read here and at its end only
    let cpu_at_start = crate::cpu::process_cpu_ns();
    let (rec_tx, rec_rx) = mpsc::unbounded_channel::<proto::RequestRecord>();
    let streamer = tokio::spawn(stream_records(job.job_id.clone(), rec_rx, gate.tx.clone()));
    let m = runs.len() as u64;
    let outs = futures_util::future::join_all(runs.into_iter().enumerate().map(|(j, run)| {
        let rec_tx = rec_tx.clone();
        let cancel = &cancel;
        let metrics = cfg.status.metrics.clone();
        async move {
            let on_record = move |r: &crate::RequestRecord| {
                metrics.request(r);
                let mut p = proto::RequestRecord::from(r);
                // back to the index of the prompt in the assignment
                p.index = r.index * m + j as u64;
                // the receiver lives until every sender is gone
                let _ = rec_tx.send(p);
            };
            if run.sessions.is_empty() {
                crate::runner::measure_from(
                    &run.client,
                    run.cfg,
                    origin,
                    cancel,
                    Keep::None,
                    on_record,
                )
                .await
            } else {
                let sessions = &run.sessions;
                crate::conversation::measure_sessions(
                    &run.client,
                    sessions,
                    &run.cfg,
                    cancel,
                    Keep::None,
                    on_record,
                )
                .await
            }
        }
    }))
    .await;
    drop(rec_tx);
    done.cpu_ns = crate::cpu::process_cpu_ns().saturating_sub(cpu_at_start);
    done.cpu_cores = crate::cpu::usable_cores();
    done.records_sent = streamer.await.context("the record streamer failed")?;
    for out in outs {
        let RunOutput {
            start_ns,
            end_ns,
            not_sent,
            panicked,
            ..
        } = out?;
        if panicked > 0 {
            tracing::error!(
                "job {}: {panicked} request tasks panicked (a bug); their records are missing",
                done.job_id
            );
        }
        done.start_ns = done.start_ns.min(start_ns);
        done.end_ns = done.end_ns.max(end_ns);
        done.not_sent += not_sent as u32;
    }
    Ok(done)
}
