//! Running one job over several load workers: the claim, the assignments ([`JobSpec`]'s split),
//! the warm-up gate (`StartJob`), the collection of the records, and the rerun when a worker is
//! lost. Each worker's records come back on its own clock and are merged onto the controller's
//! ([`merge`]) with the worker's offset estimate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use loadgen::clock::mono_ns;
use loadgen::worker::split_even;
use loadgen::{RecordStore, RequestRecord};
use proto::controller_to_worker::Msg as ToWorker;
use tokio::sync::mpsc;

use super::job_result::{JobResult, merge};
use super::job_spec::{BeforeStart, JobSpec};
use super::pool::{Claimed, Command, JobEvent, Workers};
use crate::clock::Offset;

/// With several workers: how far ahead of the moment the last one has warmed up their common
/// start is scheduled (room for `StartJob` to reach every worker first), at least; on slow links
/// [`START_LEAD_PER_UNCERTAINTY`] times the largest clock uncertainty (about half a round trip),
/// at most [`START_LEAD_MAX`].
const START_LEAD: Duration = Duration::from_millis(100);
const START_LEAD_PER_UNCERTAINTY: u32 = 20;
const START_LEAD_MAX: Duration = Duration::from_secs(2);

/// How long a failed job waits for the other workers to stop before returning.
const ABORT_DRAIN: Duration = Duration::from_secs(10);
/// Events of one job queued towards [`Workers::run_job`].
const JOB_EVENTS: usize = 1024;

/// A worker was lost during a job (disconnected, or shut down mid-job): the job's records are
/// incomplete and are discarded; [`Workers::run_job_retrying`] runs the job again.
#[derive(Debug)]
pub struct WorkerLost {
    pub worker: String,
    pub job_id: String,
    /// Records received from it before it was lost (discarded).
    pub records: usize,
    pub how: String,
}

impl std::fmt::Display for WorkerLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load worker {} {} {} ({} records received from it, discarded)",
            self.worker, self.how, self.job_id, self.records
        )?;
        Ok(())
    }
}

impl std::error::Error for WorkerLost {}

/// A worker whose channel closed before the job's start reached it: lost, so the job reruns.
fn lost_before_start(worker: &str, job_id: &str) -> anyhow::Error {
    WorkerLost {
        worker: worker.to_string(),
        job_id: job_id.to_string(),
        records: 0,
        how: "disconnected before the start of".into(),
    }
    .into()
}

/// Where a worker taken for a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its assignment was not sent.
    Unsent,
    /// Assigned, no `JobDone` yet.
    Running,
    /// Reported `JobDone`, or left.
    Finished,
}

impl Workers {
    /// Runs a job; when a worker is lost during it, the partial records are discarded and the
    /// whole job runs again, up to `attempts` runs in all. A rerun waits up to `wait` for as many
    /// workers as the job asks for (`JobSpec::workers`; one when it asks for every idle one), so
    /// a restarted or replacement worker takes the lost one's place. Returns the result of the
    /// run that completed and what was lost before it.
    pub async fn run_job_retrying(
        &self,
        job: JobSpec,
        attempts: usize,
        wait: Duration,
    ) -> anyhow::Result<(JobResult, Vec<String>)> {
        let attempts = attempts.max(1);
        let mut lost = Vec::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.wait_for(job.workers.unwrap_or(1), wait)
                    .await
                    .with_context(|| format!("rerunning the job after: {}", lost.join("; ")))?;
            }
            match self.run_job(job.clone()).await {
                Ok(r) => return Ok((r, lost)),
                Err(e) => match e.downcast::<WorkerLost>() {
                    Ok(l) if attempt < attempts => {
                        tracing::warn!("{l}; running the job again ({}/{attempts})", attempt + 1);
                        lost.push(l.to_string());
                        if let Some(p) = &job.progress {
                            p.store(0, Ordering::Relaxed);
                        }
                    }
                    Ok(l) => {
                        lost.push(l.to_string());
                        bail!(
                            "a load worker was lost in each of {attempts} runs of the job: {}",
                            lost.join("; ")
                        );
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Runs `job` on the workers and returns every record on the controller's clock. Fails,
    /// naming the worker, when one disconnects or cannot run its share; the other workers are
    /// then cancelled (the caller decides whether to rerun).
    pub async fn run_job(&self, job: JobSpec) -> anyhow::Result<JobResult> {
        job.check()?;
        // no worker gets an empty share of prompts or a concurrency of 0 (= unlimited)
        let most = job
            .prompts
            .len()
            .min(job.max_concurrency.unwrap_or(usize::MAX));
        let (events_tx, mut events) = mpsc::channel(JOB_EVENTS);
        let (job_id, claimed) = self
            .ask(|reply| Command::Claim {
                want: job.workers,
                most,
                events: events_tx,
                reply,
            })
            .await?
            .map_err(anyhow::Error::msg)?;
        let guard = JobGuard {
            workers: self.clone(),
            job_id: job_id.clone(),
        };
        let mut phases = vec![Phase::Unsent; claimed.len()];
        let result = self
            .drive(&job, &job_id, &claimed, &mut events, &mut phases)
            .await;
        if result.is_err() {
            self.abort(&job_id, &claimed, &phases, &mut events).await;
        }
        drop(guard);
        result
    }

    /// After a failure: frees the workers that never got their assignment, cancels the others
    /// and waits (bounded) until those still running have stopped or left.
    async fn abort(
        &self,
        job_id: &str,
        claimed: &[Claimed],
        phases: &[Phase],
        events: &mut mpsc::Receiver<JobEvent>,
    ) {
        let names = |p: Phase| -> Vec<&str> {
            claimed
                .iter()
                .zip(phases)
                .filter(|(_, q)| **q == p)
                .map(|(w, _)| w.name.as_str())
                .collect()
        };
        let unsent: Vec<String> = names(Phase::Unsent).iter().map(|n| n.to_string()).collect();
        if !unsent.is_empty() {
            self.tell(Command::Unassign {
                job_id: job_id.to_string(),
                names: unsent,
            })
            .await;
        }
        self.tell(Command::Cancel {
            job_id: Some(job_id.to_string()),
        })
        .await;
        drain(events, names(Phase::Running)).await;
    }

    /// The latest clock offset estimate of each claimed worker (`None`: it has left).
    async fn offsets(&self, claimed: &[Claimed]) -> Vec<Option<Offset>> {
        self.ask(|reply| Command::Offsets {
            names: claimed.iter().map(|w| w.name.clone()).collect(),
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Schedules the common start of a gated job [`START_LEAD`] (or more) from now, and tells every worker
    /// when that is on its clock (with the latest offset estimates).
    /// Workers already `done` (ended before the start) are skipped.
    async fn start(
        &self,
        job: &JobSpec,
        job_id: &str,
        claimed: &[Claimed],
        done: &[Option<proto::JobDone>],
    ) -> anyhow::Result<()> {
        if let Some(step) = &job.before_start
            && tokio::time::timeout(BeforeStart::LIMIT, (step.0)())
                .await
                .is_err()
        {
            tracing::warn!(
                "job {job_id}: the step before the measured run took over {:?}",
                BeforeStart::LIMIT
            );
        }
        let latest = self.offsets(claimed).await;
        let uncertainty = latest
            .iter()
            .flatten()
            .map(|o| Duration::from_nanos(o.uncertainty_ns))
            .max()
            .unwrap_or_default();
        let lead = (uncertainty * START_LEAD_PER_UNCERTAINTY).clamp(START_LEAD, START_LEAD_MAX);
        let start_at = mono_ns().saturating_add(lead.as_nanos() as u64);
        tracing::debug!("job {job_id}: every worker is warm, the measured run starts in {lead:?}");
        for (k, w) in claimed.iter().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let offset = latest.get(k).copied().flatten().unwrap_or(w.offset);
            let start = proto::StartJob {
                job_id: job_id.to_string(),
                start_at_ns: offset.to_peer(start_at),
            };
            w.to_worker
                .send(Ok(proto::ControllerToWorker {
                    msg: Some(ToWorker::Start(start)),
                }))
                .await
                .map_err(|_| lost_before_start(&w.name, job_id))?;
        }
        Ok(())
    }

    /// Assigns the shares, collects the records, converts them.
    async fn drive(
        &self,
        job: &JobSpec,
        job_id: &str,
        claimed: &[Claimed],
        events: &mut mpsc::Receiver<JobEvent>,
        phases: &mut [Phase],
    ) -> anyhow::Result<JobResult> {
        let n = claimed.len();
        check_shares(job, claimed)?;
        // one worker runs its measured phase right after its warm-up; several warm up, then
        // start together at a time scheduled once the last one is warm (`StartJob`)
        let gated = n > 1 || job.before_start.is_some();
        tracing::info!(
            "job {job_id}: {} prompts over {n} workers ({})",
            job.prompts.len(),
            claimed
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (k, w) in claimed.iter().enumerate() {
            let assignment = job.assignment(job_id, k, n, gated);
            w.to_worker
                .send(Ok(proto::ControllerToWorker {
                    msg: Some(ToWorker::Job(assignment)),
                }))
                .await
                .map_err(|_| lost_before_start(&w.name, job_id))?;
            phases[k] = Phase::Running;
        }

        let mut received = Received::new(job_id, claimed, gated, job);
        while received.remaining > 0 {
            let ev = events
                .recv()
                .await
                .ok_or_else(|| anyhow!("the worker pool stopped during job {job_id}"))?;
            if received.handle(ev, phases)? == Step::AllWarm {
                self.start(job, job_id, claimed, &received.done).await?;
            }
        }

        // The latest estimates (more exchanges than at the start); the claim's if one has left.
        let latest = self.offsets(claimed).await;
        merge(
            job_id,
            claimed,
            &latest,
            received.records,
            &received.counts,
            received.done,
        )
    }
}

/// Refuses a concurrency share above a worker's `--max-streams`.
fn check_shares(job: &JobSpec, claimed: &[Claimed]) -> anyhow::Result<()> {
    let Some(c) = job.max_concurrency else {
        return Ok(());
    };
    let n = claimed.len();
    for (k, w) in claimed.iter().enumerate() {
        let share = split_even(c, k, n);
        if share > w.max_streams as usize {
            bail!(
                "load worker {} takes at most {} streams (--max-streams), its share of --max-concurrency {c} over {n} workers is {share}: add workers or lower the concurrency",
                w.name,
                w.max_streams
            );
        }
    }
    Ok(())
}

/// What a running job has received from its workers.
struct Received<'a> {
    job_id: &'a str,
    /// Each worker's position in the claim.
    index: HashMap<&'a str, usize>,
    /// Every worker's records (slot: the worker's position), under the job's memory budget.
    records: RecordStore,
    /// Records received from each worker.
    counts: Vec<usize>,
    done: Vec<Option<proto::JobDone>>,
    /// Warmed up (or needing no `StartJob`).
    warm: Vec<bool>,
    /// Workers without a `JobDone` yet.
    remaining: usize,
    progress: Option<&'a Arc<AtomicU64>>,
}

/// What the job does after an event.
#[derive(PartialEq, Eq)]
enum Step {
    Wait,
    /// The last worker has warmed up: send `StartJob`.
    AllWarm,
}

impl<'a> Received<'a> {
    fn new(job_id: &'a str, claimed: &'a [Claimed], gated: bool, job: &'a JobSpec) -> Self {
        let n = claimed.len();
        Received {
            job_id,
            index: claimed
                .iter()
                .enumerate()
                .map(|(k, w)| (w.name.as_str(), k))
                .collect(),
            records: job.records.store(),
            counts: vec![0; n],
            done: vec![None; n],
            warm: vec![!gated; n],
            remaining: n,
            progress: job.progress.as_ref(),
        }
    }

    /// Takes in one event; fails when the worker cannot finish its share.
    fn handle(&mut self, ev: JobEvent, phases: &mut [Phase]) -> anyhow::Result<Step> {
        let job_id = self.job_id;
        match ev {
            JobEvent::Records { worker, batch } => {
                let Some(&k) = self.index.get(worker.as_str()) else {
                    return Ok(Step::Wait);
                };
                for r in batch.records {
                    let r = RequestRecord::try_from(r).with_context(|| {
                        format!("load worker {worker} sent a bad record for job {job_id}")
                    })?;
                    self.counts[k] += 1;
                    let started = self.records.push(k as u32, r).with_context(|| {
                        format!("keeping the records of job {job_id} (--max-memory)")
                    })?;
                    if started {
                        let st = self.records.stats();
                        tracing::warn!(
                            "job {job_id}: the records in memory reached --max-memory {}: the rest spill to a file in {} (unlinked, removed at the end); percentiles stay exact",
                            loadgen::store::format_bytes(st.budget.unwrap_or(0)),
                            self.records.spill_dir().display()
                        );
                    }
                    if let Some(p) = self.progress {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Step::Wait)
            }
            JobEvent::Done { worker, done } => {
                let Some(&k) = self.index.get(worker.as_str()) else {
                    return Ok(Step::Wait);
                };
                phases[k] = Phase::Finished;
                self.done(k, worker, done)
            }
            JobEvent::WarmedUp { worker } => {
                let Some(&k) = self.index.get(worker.as_str()) else {
                    return Ok(Step::Wait);
                };
                Ok(self.warmed_up(k))
            }
            JobEvent::Lost { worker } => {
                let k = self.index.get(worker.as_str()).copied();
                if let Some(k) = k {
                    phases[k] = Phase::Finished;
                }
                Err(WorkerLost {
                    records: k.map_or(0, |k| self.counts[k]),
                    worker,
                    job_id: job_id.to_string(),
                    how: "disconnected during the job".into(),
                }
                .into())
            }
        }
    }

    /// Worker `k`'s `JobDone`.
    fn done(&mut self, k: usize, worker: String, d: proto::JobDone) -> anyhow::Result<Step> {
        let job_id = self.job_id;
        if d.interrupted {
            return Err(WorkerLost {
                worker,
                job_id: job_id.to_string(),
                records: self.counts[k],
                how: "shut down during the job".into(),
            }
            .into());
        }
        if !d.error.is_empty() {
            bail!(
                "load worker {worker} could not run its share of job {job_id}: {}",
                d.error
            );
        }
        if self.done[k].replace(d).is_none() {
            self.remaining -= 1;
        }
        // ended before its start (cancelled while warming up or waiting): it needs no
        // StartJob, and the others must not wait for its WarmedUp
        Ok(self.warmed_up(k))
    }

    /// Worker `k` needs no more warming up.
    fn warmed_up(&mut self, k: usize) -> Step {
        if !std::mem::replace(&mut self.warm[k], true) && self.warm.iter().all(|w| *w) {
            Step::AllWarm
        } else {
            Step::Wait
        }
    }
}

/// Releases a job's route when [`Workers::run_job`] ends, returns early or is dropped: the
/// workers still on it are cancelled.
struct JobGuard {
    workers: Workers,
    job_id: String,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let job_id = std::mem::take(&mut self.job_id);
        self.workers.tell_soon(Command::Release { job_id });
    }
}

/// After a failure: waits (bounded) until the workers still `running` the job have stopped or
/// left.
async fn drain(events: &mut mpsc::Receiver<JobEvent>, mut running: Vec<&str>) {
    let wait = async {
        while !running.is_empty() {
            match events.recv().await {
                Some(JobEvent::Done { worker, .. } | JobEvent::Lost { worker }) => {
                    running.retain(|n| *n != worker);
                }
                Some(JobEvent::Records { .. } | JobEvent::WarmedUp { .. }) => {}
                None => break,
            }
        }
    };
    if tokio::time::timeout(ABORT_DRAIN, wait).await.is_err() {
        tracing::warn!("load workers still running a cancelled job after {ABORT_DRAIN:?}");
    }
}
