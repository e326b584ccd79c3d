//! A load worker (`benchctl-loadgen`): dials the controller, holds one `WorkerSession`, and runs
//! the jobs it is assigned with [`crate::runner::run`], streaming each record back as it
//! completes.
//!
//! The session: `WorkerRegister` → `WorkerRegistered`; then `ClockPing`s are answered at once, a
//! `JobAssignment` starts a job (one at a time), `CancelJob` cancels it. A job streams
//! `RecordBatch`es (every 100 ms or 256 records) and ends with one `JobDone`, sent after its last
//! batch. When the session breaks, the job in flight is cancelled (the controller reruns it) and
//! the worker reconnects with jittered exponential backoff until it is shut down.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cluster::Link;
use proto::controller_client::ControllerClient;
use proto::controller_to_worker::Msg as FromController;
use proto::worker_message::Msg as ToController;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::client::HttpClient;
use crate::clock::{instant_at, mono_ns};
use crate::dataset::Prompt;
use crate::runner::{RunConfig, RunOutput};
use crate::schedule::Arrivals;

/// Records per `RecordBatch`, at most.
pub const MAX_BATCH_RECORDS: usize = 256;
/// The version of the worker protocol (`WorkerRegister.protocol`) this worker speaks: 2 has the
/// warm-up gate (`WarmedUp`, `StartJob`).
pub const PROTOCOL: u32 = 2;
/// A record waits at most this long before its batch is sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Messages queued towards the transport.
const OUTBOUND_QUEUE: usize = 64;
/// How long the controller has to answer `WorkerRegister`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new assignment waits for the previous job's task to end.
const REAP_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a shutdown waits for the cancelled job to send its last records.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Who the worker is and where it reports.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The controller's gRPC URL (`http://host:port`; `http://` is assumed without a scheme).
    pub controller: String,
    /// Unique among the controller's workers.
    pub name: String,
    /// The most concurrent streams this worker should be given.
    pub max_streams: u32,
    /// Find the controller through etcd (the elected leader; `controller` is then unused) and
    /// register the worker there.
    pub etcd: Option<cluster::EtcdArgs>,
    /// mTLS towards the controller (`--tls-*`).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Share `k` of `n` when `total` is split as evenly as possible, the remainder going to the
/// first shares (`split_even(10, k, 4)` is 3, 3, 2, 2).
pub fn split_even(total: usize, k: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    total / n + usize::from(k < total % n)
}

/// Runs worker sessions until `cancel` fires, reconnecting after every failure. Fails only on a
/// configuration that can never work (an unparsable controller URL, an empty name).
pub async fn run_worker(cfg: WorkerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    if cfg.name.is_empty() {
        bail!("--name is empty: every worker needs a name, unique among the controller's workers");
    }
    // the controller: fixed, or whichever etcd says is the leader
    let etcd = cfg.etcd.clone().unwrap_or_default();
    let target = cluster::Target::new(&etcd, Some(&cfg.controller), &cancel)?;
    let registration = etcd.enabled().then(|| {
        cluster::register(
            etcd.clone(),
            cluster::worker_key(&cfg.name),
            format!(
                "{{\"version\":\"{}\",\"max_streams\":{}}}",
                env!("CARGO_PKG_VERSION"),
                cfg.max_streams
            ),
            10,
            cancel.clone(),
        )
    });
    cluster::reconnect(&Sessions(&cfg), target.url(), cfg.tls.as_ref(), &cancel).await;
    if let Some(r) = registration {
        let _ = tokio::time::timeout(Duration::from_secs(3), r).await;
    }
    Ok(())
}

/// The worker's side of a session, for [`cluster::reconnect`].
struct Sessions<'a>(&'a WorkerConfig);

impl cluster::Session for Sessions<'_> {
    async fn run(&self, link: &mut Link<'_>) -> anyhow::Result<()> {
        session(link, self.0).await
    }
}

fn message(m: ToController) -> proto::WorkerMessage {
    proto::WorkerMessage { msg: Some(m) }
}

/// The job this worker is running. Dropping it (the session's future dropped) aborts the job.
struct Running {
    id: String,
    cancel: CancellationToken,
    /// Where a `StartJob` goes: its start time on this worker's clock.
    start: watch::Sender<Option<u64>>,
    task: AbortOnDropHandle<()>,
}

/// One session: register, then serve the controller until the session ends or `cancel` fires.
async fn session(link: &mut Link<'_>, cfg: &WorkerConfig) -> anyhow::Result<()> {
    let (endpoint, cancel) = (link.endpoint, link.cancel);
    let channel = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        c = endpoint.connect() => c.context("connecting")?,
    };
    let mut client = ControllerClient::new(channel);
    let (tx, rx) = mpsc::channel::<proto::WorkerMessage>(OUTBOUND_QUEUE);
    tx.send(message(ToController::Register(proto::WorkerRegister {
        worker_name: cfg.name.clone(),
        worker_version: env!("CARGO_PKG_VERSION").into(),
        max_streams: cfg.max_streams,
        boot_id: crate::clock::boot_id(),
        protocol: PROTOCOL,
    })))
    .await
    .map_err(|_| anyhow!("the outgoing stream closed before WorkerRegister"))?;
    // A pong's t3 is taken when the transport takes the message, not when it was queued: time
    // spent behind record batches counts as the worker's hold time, not as network delay.
    let outgoing = ReceiverStream::new(rx).map(|mut m| {
        if let Some(ToController::Pong(p)) = &mut m.msg {
            p.t3_ns = mono_ns();
        }
        m
    });
    let mut incoming = client
        .worker_session(outgoing)
        .await
        .context("opening WorkerSession")?
        .into_inner();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, incoming.message())
        .await
        .map_err(|_| anyhow!("no WorkerRegistered within {REGISTER_TIMEOUT:?}"))?
        .context("waiting for WorkerRegistered")?;
    match first.and_then(|m| m.msg) {
        Some(FromController::Registered(r)) => {
            info!(
                "registered with controller {} as {:?} ({} streams at most)",
                r.controller_id, cfg.name, cfg.max_streams
            );
        }
        other => bail!("expected WorkerRegistered, the controller sent {other:?}"),
    }
    link.registered();

    let mut job: Option<Running> = None;
    // a CancelJob that came before its JobAssignment (the controller cancelled while still
    // sending a shared job's assignments): that assignment is answered at once, not run
    let mut cancelled_early: Option<String> = None;
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            moved = link.leader_moved() => break Err(moved.into()),
            r = async { (&mut job.as_mut().expect("guarded").task).await }, if job.is_some() => {
                let done = job.take().expect("guarded");
                if let Err(e) = r {
                    warn!("job {}: its task failed: {e}", done.id);
                }
            }
            m = incoming.message() => {
                let t2 = mono_ns();
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(anyhow::Error::new(e).context("reading from the controller")),
                };
                match m.msg {
                    Some(FromController::Ping(p)) => {
                        let pong = proto::ClockPong { ping_id: p.ping_id, t1_ns: p.t1_ns, t2_ns: t2, t3_ns: t2 };
                        if tx.send(message(ToController::Pong(pong))).await.is_err() {
                            break Err(anyhow!("the outgoing stream closed"));
                        }
                    }
                    Some(FromController::Job(j)) => {
                        // The controller assigns again once it has the previous JobDone: that
                        // job's task has sent it and is ending, if this loop has not seen it yet.
                        if let Some(prev) = &mut job
                            && tokio::time::timeout(REAP_TIMEOUT, &mut prev.task).await.is_ok()
                        {
                            job = None;
                        }
                        if cancelled_early.as_deref() == Some(j.job_id.as_str()) {
                            info!("job {}: cancelled before it arrived, not run", j.job_id);
                            let now = mono_ns();
                            let done = proto::JobDone {
                                job_id: j.job_id,
                                start_ns: now,
                                end_ns: now,
                                not_sent: j.prompts.len() as u32,
                                ..Default::default()
                            };
                            if tx.send(message(ToController::Done(done))).await.is_err() {
                                break Err(anyhow!("the outgoing stream closed"));
                            }
                        } else if let Some(busy) = &job {
                            warn!("job {} refused: job {} is still running", j.job_id, busy.id);
                            let done = proto::JobDone {
                                job_id: j.job_id,
                                error: format!("busy: worker {} is still running job {}", cfg.name, busy.id),
                                ..Default::default()
                            };
                            if tx.send(message(ToController::Done(done))).await.is_err() {
                                break Err(anyhow!("the outgoing stream closed"));
                            }
                        } else {
                            let id = j.job_id.clone();
                            info!("job {id}: {} prompts against {:?}", j.prompts.len(), j.target_urls);
                            let job_cancel = cancel.child_token();
                            let (start, start_rx) = watch::channel(None);
                            let gate = Gate { tx: tx.clone(), cancel: job_cancel.clone(), start: start_rx };
                            let task = AbortOnDropHandle::new(tokio::spawn(run_job(j, gate, cancel.clone(), cfg.clone())));
                            job = Some(Running { id, cancel: job_cancel, start, task });
                        }
                    }
                    Some(FromController::Start(s)) => match &job {
                        Some(j) if j.id == s.job_id => {
                            debug!("job {}: StartJob at {} (now {t2})", j.id, s.start_at_ns);
                            j.start.send_replace(Some(s.start_at_ns));
                        }
                        _ => debug!("StartJob {} for a job not running here", s.job_id),
                    },
                    Some(FromController::Cancel(c)) => match &job {
                        Some(j) if j.id == c.job_id => {
                            info!("job {}: cancelled by the controller", j.id);
                            j.cancel.cancel();
                        }
                        _ => {
                            debug!("CancelJob {} for a job not running here", c.job_id);
                            cancelled_early = Some(c.job_id);
                        }
                    },
                    Some(FromController::Registered(_)) | None => {}
                }
            }
        }
    };
    if let Some(j) = job {
        // On shutdown the job still sends the records of its cancelled requests and its JobDone
        // (the session is up); on a broken session its sends fail and it ends at once.
        j.cancel.cancel();
        if cancel.is_cancelled() {
            info!("job {}: cancelled by shutdown", j.id);
        } else {
            warn!("job {}: cancelled, the session broke", j.id);
        }
        match tokio::time::timeout(DRAIN_TIMEOUT, j.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("job {}: its task failed: {e}", j.id),
            Err(_) => warn!("job {}: still draining after {DRAIN_TIMEOUT:?}", j.id),
        }
    }
    if cancel.is_cancelled() && result.is_ok() {
        // Shutdown: close our side so what is queued goes out, and give the controller a moment
        // to close its side.
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(_)) = incoming.message().await {}
        })
        .await;
    }
    result
}

/// Runs one assignment and sends its `JobDone` (with `error` set when it could not run, or when
/// the worker shut down during it: its records are sent, but the job is not complete).
async fn run_job(
    job: proto::JobAssignment,
    mut gate: Gate,
    shutdown: CancellationToken,
    cfg: WorkerConfig,
) {
    let job_id = job.job_id.clone();
    let done = match execute(job, &mut gate, &cfg).await {
        Ok(mut done) if shutdown.is_cancelled() => {
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
            info!(
                "job {job_id}: done, {} records sent, {} not sent",
                done.records_sent, done.not_sent
            );
            done
        }
        Err(e) => {
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
struct Gate {
    tx: mpsc::Sender<proto::WorkerMessage>,
    cancel: CancellationToken,
    start: watch::Receiver<Option<u64>>,
}

impl Gate {
    /// Says the warm-up is over and waits for the start time, then until it. `false`: cancelled
    /// (or the session ended) first.
    async fn wait_for_start(&mut self, job_id: &str) -> bool {
        let warmed = proto::WarmedUp {
            job_id: job_id.to_string(),
        };
        if self
            .tx
            .send(message(ToController::WarmedUp(warmed)))
            .await
            .is_err()
        {
            return false;
        }
        let at = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            r = self.start.wait_for(Option::is_some) => match r {
                Ok(at) => at.expect("waited for Some"),
                Err(_) => return false,
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
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep_until(instant_at(at)) => true,
        }
    }
}

/// One run per target URL: prompts round-robin over the targets by index.
struct SubRun {
    client: HttpClient,
    cfg: RunConfig,
}

/// Splits the assignment over its targets (prompt `i` goes to target `i mod m`, with that
/// target's share of the concurrency, rate and warm-up).
fn plan(job: &proto::JobAssignment, cfg: &WorkerConfig) -> anyhow::Result<Vec<SubRun>> {
    let spec = job
        .spec
        .as_ref()
        .ok_or_else(|| anyhow!("JobAssignment.spec is missing"))?;
    if job.target_urls.is_empty() {
        bail!("JobAssignment.target_urls is empty");
    }
    let prompts: Vec<Prompt> = job.prompts.iter().cloned().map(Prompt::from).collect();
    let warmup: Vec<Prompt> = job
        .warmup_prompts
        .iter()
        .cloned()
        .map(Prompt::from)
        .collect();
    let max_concurrency = (job.max_concurrency > 0).then_some(job.max_concurrency as usize);
    // 0 means "not set" on the wire; anything else must be valid
    let rate = if job.request_rate == 0.0 {
        f64::INFINITY
    } else {
        job.request_rate
    };
    let burstiness = if job.burstiness == 0.0 {
        1.0
    } else {
        job.burstiness
    };
    Arrivals {
        rate,
        burstiness,
        seed: job.seed,
    }
    .validate()?;
    // No target gets an empty share of prompts or a concurrency of 0 (which would mean no limit).
    let m = job
        .target_urls
        .len()
        .min(prompts.len().max(1))
        .min(max_concurrency.unwrap_or(usize::MAX));
    let mut runs = Vec::with_capacity(m);
    for (j, url) in job.target_urls.iter().take(m).enumerate() {
        let target = crate::wire::target(url, spec)?;
        let share: Vec<Prompt> = prompts.iter().skip(j).step_by(m).cloned().collect();
        let concurrency = max_concurrency.map(|c| split_even(c, j, m));
        let conns = concurrency
            .unwrap_or(share.len())
            .min(cfg.max_streams.max(1) as usize)
            .max(1);
        let client =
            HttpClient::new(target, conns).with_context(|| format!("an HTTP client for {url}"))?;
        let prefix = if m == 1 {
            format!("{}-{}-", cfg.name, job.job_id)
        } else {
            format!("{}-{}-t{j}-", cfg.name, job.job_id)
        };
        runs.push(SubRun {
            client,
            cfg: RunConfig {
                prompts: share,
                arrivals: Arrivals {
                    rate: rate / m as f64,
                    burstiness,
                    seed: job.seed.wrapping_add(j as u64),
                },
                max_concurrency: concurrency,
                warmup_requests: split_even(job.warmup_requests as usize, j, m),
                warmup_prompts: warmup.iter().skip(j).step_by(m).cloned().collect(),
                request_id_prefix: prefix,
            },
        });
    }
    Ok(runs)
}

/// Runs the job: its warm-up, then (with `start_on_signal`) `WarmedUp` and a wait for
/// `StartJob`, then its measured run, streaming its records.
async fn execute(
    job: proto::JobAssignment,
    gate: &mut Gate,
    cfg: &WorkerConfig,
) -> anyhow::Result<proto::JobDone> {
    let runs = plan(&job, cfg)?;
    let n_prompts = job.prompts.len();
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
    let started =
        !cancel.is_cancelled() && (!job.start_on_signal || gate.wait_for_start(&job.job_id).await);
    if !started {
        let now = mono_ns();
        done.start_ns = now;
        done.end_ns = now;
        done.not_sent = n_prompts as u32;
        return Ok(done);
    }

    let (rec_tx, rec_rx) = mpsc::unbounded_channel::<proto::RequestRecord>();
    let streamer = tokio::spawn(stream_records(job.job_id.clone(), rec_rx, gate.tx.clone()));
    let m = runs.len() as u64;
    let outs = futures_util::future::join_all(runs.into_iter().enumerate().map(|(j, run)| {
        let rec_tx = rec_tx.clone();
        let cancel = &cancel;
        async move {
            let on_record = move |r: &crate::RequestRecord| {
                let mut p = proto::RequestRecord::from(r);
                // back to the index of the prompt in the assignment
                p.index = r.index * m + j as u64;
                // the receiver lives until every sender is gone
                let _ = rec_tx.send(p);
            };
            crate::runner::measure(&run.client, run.cfg, cancel, on_record).await
        }
    }))
    .await;
    drop(rec_tx);
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

/// Streams records as `RecordBatch`es: a batch goes when it holds [`MAX_BATCH_RECORDS`] or its
/// first record is [`FLUSH_EVERY`] old, and the rest when `rx` closes. Returns the records sent.
async fn stream_records(
    job_id: String,
    mut rx: mpsc::UnboundedReceiver<proto::RequestRecord>,
    tx: mpsc::Sender<proto::WorkerMessage>,
) -> u64 {
    let mut sent = 0u64;
    let mut batch: Vec<proto::RequestRecord> = Vec::new();
    let mut flush_at: Option<Instant> = None;
    loop {
        let (closed, due) = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    batch.push(r);
                    flush_at.get_or_insert_with(|| Instant::now() + FLUSH_EVERY);
                    (false, batch.len() >= MAX_BATCH_RECORDS)
                }
                None => (true, true),
            },
            _ = async { tokio::time::sleep_until(flush_at.expect("guarded")).await }, if flush_at.is_some() => (false, true),
        };
        if due && !batch.is_empty() {
            let records = std::mem::take(&mut batch);
            let n = records.len() as u64;
            let msg = message(ToController::Records(proto::RecordBatch {
                job_id: job_id.clone(),
                records,
            }));
            if tx.send(msg).await.is_ok() {
                sent += n;
            }
        }
        if due {
            flush_at = None;
        }
        if closed {
            return sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_splits_give_the_remainder_to_the_first() {
        let shares: Vec<usize> = (0..4).map(|k| split_even(10, k, 4)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!((0..3).map(|k| split_even(2, k, 3)).sum::<usize>(), 2);
        assert_eq!(split_even(5, 0, 0), 0);
    }

    fn job(urls: &[&str], prompts: usize, concurrency: u32) -> proto::JobAssignment {
        let target = crate::Target {
            url: "http://h/v1/completions".parse().unwrap(),
            api_key: None,
            body: crate::BodySpec {
                kind: crate::EndpointKind::Completions,
                backend: crate::Backend::Vllm,
                model: "m".into(),
                ignore_eos: true,
                temperature: 0.0,
                extra_body: Default::default(),
            },
            timeout: Duration::from_secs(5),
            stall_timeout: None,
        };
        proto::JobAssignment {
            job_id: "j".into(),
            target_urls: urls.iter().map(|s| s.to_string()).collect(),
            spec: Some(crate::wire::request_spec("/v1/completions", &target)),
            prompts: (0..prompts)
                .map(|i| proto::Prompt {
                    text: format!("p{i}"),
                    prompt_tokens: 1,
                    output_len: 2,
                })
                .collect(),
            max_concurrency: concurrency,
            request_rate: 10.0,
            burstiness: 0.0,
            seed: 3,
            warmup_requests: 3,
            warmup_prompts: vec![],
            start_on_signal: false,
        }
    }

    fn cfg() -> WorkerConfig {
        WorkerConfig {
            controller: "http://c".into(),
            name: "w".into(),
            max_streams: 100,
            etcd: None,
            tls: None,
        }
    }

    #[tokio::test]
    async fn prompts_go_round_robin_over_the_targets() {
        let runs = plan(&job(&["http://a:1", "http://b:2/"], 5, 3), &cfg()).unwrap();
        assert_eq!(runs.len(), 2);
        let texts = |r: &SubRun| {
            r.cfg
                .prompts
                .iter()
                .map(|p| p.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&runs[0]), ["p0", "p2", "p4"]);
        assert_eq!(texts(&runs[1]), ["p1", "p3"]);
        assert_eq!(
            runs[1].client.target().url.as_str(),
            "http://b:2/v1/completions"
        );
        assert_eq!(
            (runs[0].cfg.max_concurrency, runs[1].cfg.max_concurrency),
            (Some(2), Some(1))
        );
        assert_eq!(runs[0].cfg.arrivals.rate, 5.0);
        assert_eq!(runs[1].cfg.arrivals.seed, 4);
        assert_eq!(runs[0].cfg.arrivals.burstiness, 1.0);
        assert_eq!(
            (runs[0].cfg.warmup_requests, runs[1].cfg.warmup_requests),
            (2, 1)
        );
        // a concurrency of 1 uses one target only: no share of 0 (= unlimited)
        let runs = plan(&job(&["http://a:1", "http://b:2"], 5, 1), &cfg()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].cfg.prompts.len(), 5);
    }

    #[tokio::test]
    async fn jobs_that_cannot_run_are_refused() {
        assert!(plan(&job(&[], 5, 1), &cfg()).is_err());
        let Err(err) = plan(&job(&["nope"], 5, 1), &cfg()) else {
            panic!("a bad URL was accepted")
        };
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
        let mut j = job(&["http://a:1"], 5, 1);
        j.spec = None;
        assert!(plan(&j, &cfg()).is_err());
        let mut j = job(&["http://a:1"], 5, 1);
        j.request_rate = f64::NAN;
        assert!(plan(&j, &cfg()).is_err());
    }

    #[tokio::test]
    async fn records_go_in_batches_and_all_arrive() {
        let (rec_tx, rec_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(1024);
        for i in 0..600 {
            rec_tx
                .send(proto::RequestRecord {
                    index: i,
                    ..Default::default()
                })
                .unwrap();
        }
        drop(rec_tx);
        let sent = stream_records("j".into(), rec_rx, tx).await;
        assert_eq!(sent, 600);
        let mut sizes = Vec::new();
        while let Some(m) = rx.recv().await {
            let Some(ToController::Records(b)) = m.msg else {
                panic!("not a batch")
            };
            sizes.push(b.records.len());
        }
        assert_eq!(sizes, [256, 256, 88]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_is_sent_within_the_flush_interval() {
        let (rec_tx, rec_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(16);
        let streamer = tokio::spawn(stream_records("j".into(), rec_rx, tx));
        let t0 = Instant::now();
        rec_tx.send(proto::RequestRecord::default()).unwrap();
        let m = rx.recv().await.unwrap();
        assert!(matches!(m.msg, Some(ToController::Records(ref b)) if b.records.len() == 1));
        assert_eq!(t0.elapsed(), FLUSH_EVERY);
        drop(rec_tx);
        assert_eq!(streamer.await.unwrap(), 1);
    }
}
