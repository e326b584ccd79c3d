//! A run: arrival schedule × concurrency limit × prompt list, combined once.
//!
//! The dispatcher releases request *i* at `start + offset[i]` (absolute schedule) and spawns it;
//! the request then waits for a concurrency slot (closed loop), is sent, and its record goes to
//! one collector. Every request that was dispatched yields exactly one record, failed or not.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
use crate::clock::{instant_at, mono_ns};
use crate::dataset::Prompt;
use crate::error::{ErrorKind, RequestError};
use crate::record::RequestRecord;
use crate::schedule::{Arrivals, ScheduleError};
use crate::tokenizer::Tokenizer;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// One request per prompt, in order.
    pub prompts: Vec<Prompt>,
    pub arrivals: Arrivals,
    /// At most this many requests in flight (`None`: unlimited).
    pub max_concurrency: Option<usize>,
    /// Requests sent (closed loop) before the measured run, not recorded.
    pub warmup_requests: usize,
    /// The warm-up's prompts, cycled (empty: it cycles `prompts`, which a server with prefix
    /// caching then has in its cache when they are measured).
    pub warmup_prompts: Vec<Prompt>,
    /// Prefix of every `X-Request-Id` (the index follows).
    pub request_id_prefix: String,
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// One per dispatched request, sorted by index.
    pub records: Vec<RequestRecord>,
    /// When the schedule started (monotonic ns).
    pub start_ns: u64,
    /// When the last record arrived.
    pub end_ns: u64,
    pub warmup_sent: usize,
    pub warmup_failed: usize,
    /// Requests never dispatched because the run was cancelled.
    pub not_sent: usize,
    /// Request tasks that panicked (a bug; their records are lost and said so).
    pub panicked: usize,
}

/// What a warm-up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Warmup {
    pub sent: usize,
    pub failed: usize,
}

/// Runs `cfg` against `client`: its warm-up, then its measured phase. `on_record` sees every
/// measured record as it completes (progress bars, streaming to a controller).
pub async fn run(
    client: &HttpClient,
    cfg: RunConfig,
    cancel: CancellationToken,
    on_record: impl FnMut(&RequestRecord) + Send,
) -> Result<RunOutput, ScheduleError> {
    cfg.arrivals.validate()?;
    let warm = warm_up(client, &cfg, &cancel).await;
    let mut out = measure(client, cfg, &cancel, Keep::All, on_record).await?;
    out.warmup_sent = warm.sent;
    out.warmup_failed = warm.failed;
    Ok(out)
}

/// Sends `cfg`'s warm-up requests (closed loop, at `cfg`'s concurrency) and waits for them; their
/// records are counted, not kept.
pub async fn warm_up(client: &HttpClient, cfg: &RunConfig, cancel: &CancellationToken) -> Warmup {
    if cfg.warmup_requests == 0 || cfg.prompts.is_empty() {
        return Warmup::default();
    }
    let n = cfg.warmup_requests;
    let source = if cfg.warmup_prompts.is_empty() {
        &cfg.prompts
    } else {
        &cfg.warmup_prompts
    };
    let prompts: Vec<Prompt> = source.iter().cycle().take(n).cloned().collect();
    let warm_sem = Some(Arc::new(Semaphore::new(
        cfg.max_concurrency.unwrap_or(n).clamp(1, n),
    )));
    let (mut sent, mut failed) = (0usize, 0usize);
    phase(
        client,
        mono_ns(),
        &prompts,
        &vec![0; n],
        warm_sem,
        &format!("{}warmup-", cfg.request_id_prefix),
        false,
        cancel,
        Keep::None,
        |r| {
            sent += 1;
            failed += usize::from(!r.ok());
        },
    )
    .await;
    Warmup { sent, failed }
}

/// Whether a run keeps its records in [`RunOutput::records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Every record (sorted by index).
    All,
    /// None: `on_record` sees each one and it is dropped (a load worker streams them to the
    /// controller, so its memory does not grow with the records).
    None,
}

/// The measured phase of `cfg` alone (no warm-up; `warmup_*` of the output are 0): its schedule
/// starts now.
pub async fn measure(
    client: &HttpClient,
    cfg: RunConfig,
    cancel: &CancellationToken,
    keep: Keep,
    on_record: impl FnMut(&RequestRecord) + Send,
) -> Result<RunOutput, ScheduleError> {
    measure_from(client, cfg, None, cancel, keep, on_record).await
}

/// [`measure`] with the schedule's origin given (monotonic ns: the start the workers of a test
/// agreed on; `None`: now). An origin already past makes the first arrivals late, and their
/// dispatch lag says by how much.
pub async fn measure_from(
    client: &HttpClient,
    cfg: RunConfig,
    origin: Option<u64>,
    cancel: &CancellationToken,
    keep: Keep,
    on_record: impl FnMut(&RequestRecord) + Send,
) -> Result<RunOutput, ScheduleError> {
    // a replayed trace's prompts carry their own start times: an open loop on them
    let trace: Option<Vec<u64>> = cfg.prompts.iter().map(|p| p.offset_ns).collect();
    let open_loop = trace.is_some() || cfg.arrivals.is_open_loop();
    let offsets = match trace {
        Some(t) => t,
        None => cfg.arrivals.offsets_ns(cfg.prompts.len())?,
    };
    let sem = cfg
        .max_concurrency
        .map(|c| Arc::new(Semaphore::new(c.max(1))));
    // `start_ns` is when this run got going (the workers' spread of it is the result's
    // `start_skew_ms`); its schedule counts from the origin
    let mut out = RunOutput {
        start_ns: mono_ns(),
        ..Default::default()
    };
    let start = origin.unwrap_or(out.start_ns);
    let (records, not_sent, panicked) = phase(
        client,
        start,
        &cfg.prompts,
        &offsets,
        sem,
        &cfg.request_id_prefix,
        open_loop,
        cancel,
        keep,
        on_record,
    )
    .await;
    out.end_ns = mono_ns();
    out.records = records;
    out.not_sent = not_sent;
    out.panicked = panicked;
    Ok(out)
}

/// Dispatches `prompts` at `start + offsets` and collects their records.
#[allow(clippy::too_many_arguments)] // reason: private helper called twice, each argument is one axis of the run
async fn phase(
    client: &HttpClient,
    start: u64,
    prompts: &[Prompt],
    offsets: &[u64],
    sem: Option<Arc<Semaphore>>,
    id_prefix: &str,
    open_loop: bool,
    cancel: &CancellationToken,
    keep: Keep,
    mut on_record: impl FnMut(&RequestRecord) + Send,
) -> (Vec<RequestRecord>, usize, usize) {
    let (tx, mut rx) = mpsc::channel::<RequestRecord>(4096);
    let mut tasks = JoinSet::new();
    let dispatcher = async {
        let mut not_sent = 0;
        for (i, (prompt, &off)) in prompts.iter().zip(offsets).enumerate() {
            let intended = start + off;
            if !wait_until_due(open_loop, intended, cancel).await {
                not_sent = prompts.len() - i;
                break;
            }
            let rec = RequestRecord {
                index: i as u64,
                request_id: format!("{id_prefix}{i}"),
                intended_ns: intended,
                dispatch_ns: mono_ns(),
                prompt_tokens_target: prompt.prompt_tokens,
                output_tokens_target: prompt.output_len,
                ..Default::default()
            };
            // Render the body now: serialising is not part of the measured latency.
            let body = client.body_spec().render(&prompt.text, prompt.output_len);
            let (client, sem, tx, cancel) =
                (client.clone(), sem.clone(), tx.clone(), cancel.clone());
            tasks.spawn(async move {
                let rec = one(&client, rec, body, sem, &cancel).await;
                // The collector outlives every task, so this send only fails if it panicked.
                let _ = tx.send(rec).await;
            });
        }
        drop(tx);
        let mut panicked = 0;
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!("a request task failed: {e}");
                panicked += 1;
            }
        }
        (not_sent, panicked)
    };
    let collector = async {
        let mut records = Vec::with_capacity(if keep == Keep::All { prompts.len() } else { 0 });
        while let Some(rec) = rx.recv().await {
            on_record(&rec);
            if keep == Keep::All {
                records.push(rec);
            }
        }
        records
    };
    let ((not_sent, panicked), mut records) = tokio::join!(dispatcher, collector);
    records.sort_by_key(|r| r.index);
    (records, not_sent, panicked)
}

async fn one(
    client: &HttpClient,
    mut rec: RequestRecord,
    body: Vec<u8>,
    sem: Option<Arc<Semaphore>>,
    cancel: &CancellationToken,
) -> RequestRecord {
    let _permit = match sem {
        Some(s) => tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            p = s.acquire_owned() => p.ok(),
        },
        None => None,
    };
    if cancel.is_cancelled() {
        rec.send_ns = mono_ns();
        rec.end_ns = rec.send_ns;
        rec.error = Some(RequestError::new(
            ErrorKind::Cancelled,
            "run cancelled before the request was sent",
        ));
        return rec;
    }
    client.execute(&mut rec, body, cancel).await;
    rec
}

/// How per-chunk token counts were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkTokens {
    /// The client's tokenizer, token end offsets mapped onto chunk boundaries.
    Tokenizer,
    /// The server's token count equalled the number of content chunks: one each.
    OnePerChunk,
    /// Neither: the server's count spread evenly over the chunks (per-token ITL approximate).
    Estimated,
}

impl ChunkTokens {
    /// The less exact of two (a run's, from its records'): estimated, else one per chunk,
    /// else the tokenizer.
    pub fn worst(self, other: ChunkTokens) -> ChunkTokens {
        match (self, other) {
            (ChunkTokens::Estimated, _) | (_, ChunkTokens::Estimated) => ChunkTokens::Estimated,
            (ChunkTokens::OnePerChunk, _) | (_, ChunkTokens::OnePerChunk) => {
                ChunkTokens::OnePerChunk
            }
            _ => ChunkTokens::Tokenizer,
        }
    }
}

/// Open loop: sleeps until `intended` (ns on the monotonic clock); closed loop: returns at once.
/// `false` when the run was cancelled (before or while waiting): send nothing more.
pub(crate) async fn wait_until_due(
    open_loop: bool,
    intended: u64,
    cancel: &CancellationToken,
) -> bool {
    if open_loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep_until(instant_at(intended)) => {}
        }
    }
    !cancel.is_cancelled()
}

/// After the run (off the hot path): counts output tokens with the client tokenizer where there
/// is a local one, and fills each content chunk's token count. Returns how chunk counts were
/// obtained (the weakest method used by any request).
pub fn count_tokens(records: &mut [RequestRecord], tok: Option<&Tokenizer>) -> ChunkTokens {
    let mut worst = ChunkTokens::Tokenizer;
    let mut note = |m: ChunkTokens| worst = worst.worst(m);
    for r in records.iter_mut().filter(|r| !r.chunks.is_empty()) {
        if let Some(ends) = tok.and_then(|t| t.token_ends(&r.text)) {
            r.output_tokens_client = Some(ends.len() as u32);
            let mut c = 0;
            for chunk in r.chunks.iter_mut() {
                chunk.tokens = 0;
            }
            for end in ends {
                while c + 1 < r.chunks.len() && (r.chunks[c].text_end as usize) < end {
                    c += 1;
                }
                r.chunks[c].tokens += 1;
            }
            note(ChunkTokens::Tokenizer);
        } else {
            let n = r.chunks.len() as u32;
            let total = r.output_tokens_server.unwrap_or(n);
            if total == n {
                r.chunks.iter_mut().for_each(|c| c.tokens = 1);
                note(ChunkTokens::OnePerChunk);
            } else {
                let (q, rem) = (total / n, total % n);
                for (i, c) in r.chunks.iter_mut().enumerate() {
                    c.tokens = q + u32::from((i as u32) < rem);
                }
                note(ChunkTokens::Estimated);
            }
        }
    }
    worst
}
