//! Running sessions: session `s` arrives at `start + offset[s]` (the run's arrival schedule,
//! now over sessions), waits for a session slot (`max_concurrency` sessions in flight), then
//! sends its turns one after another, each after the previous answer and its think time. A
//! failed turn ends its session: the turns after it are not sent (counted in `not_sent`).

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Session;
use crate::client::HttpClient;
use crate::clock::{instant_at, mono_ns};
use crate::record::RequestRecord;
use crate::runner::{Keep, RunConfig, RunOutput};
use crate::schedule::ScheduleError;

/// Runs `sessions` under `cfg`'s arrivals and concurrency (`cfg.prompts` is not used). Records
/// are indexed by the turn's position in the sessions' turns laid end to end.
pub async fn measure_sessions(
    client: &HttpClient,
    sessions: &[Session],
    cfg: &RunConfig,
    cancel: &CancellationToken,
    keep: Keep,
    mut on_record: impl FnMut(&RequestRecord) + Send,
) -> Result<RunOutput, ScheduleError> {
    let offsets = cfg.arrivals.offsets_ns(sessions.len())?;
    let sem = cfg
        .max_concurrency
        .map(|c| Arc::new(Semaphore::new(c.max(1))));
    let open_loop = cfg.arrivals.is_open_loop();
    let start = mono_ns();
    let total_turns: usize = sessions.iter().map(|s| s.turns.len()).sum();
    let (tx, mut rx) = mpsc::channel::<RequestRecord>(4096);
    let dispatcher = async {
        let mut tasks = JoinSet::new();
        let mut base = 0u64;
        let mut not_sent = 0usize;
        for (s, (session, &off)) in sessions.iter().zip(&offsets).enumerate() {
            let intended = start + off;
            if !crate::runner::wait_until_due(open_loop, intended, cancel).await {
                not_sent += sessions[s..].iter().map(|x| x.turns.len()).sum::<usize>();
                break;
            }
            let one = OneSession {
                client: client.clone(),
                session: session.clone(),
                first_index: base,
                id_prefix: format!("{}s{s}-", cfg.request_id_prefix),
                intended_ns: intended,
            };
            base += session.turns.len() as u64;
            let (sem, tx, cancel) = (sem.clone(), tx.clone(), cancel.clone());
            tasks.spawn(async move { one.run(sem, &cancel, tx).await });
        }
        drop(tx);
        let mut panicked = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(unsent) => not_sent += unsent,
                Err(e) => {
                    tracing::error!("a session task failed: {e}");
                    panicked += 1;
                }
            }
        }
        (not_sent, panicked)
    };
    let collector = async {
        let mut records = Vec::with_capacity(if keep == Keep::All { total_turns } else { 0 });
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
    Ok(RunOutput {
        records,
        start_ns: start,
        end_ns: mono_ns(),
        not_sent,
        panicked,
        ..Default::default()
    })
}

/// One session's task.
struct OneSession {
    client: HttpClient,
    session: Session,
    first_index: u64,
    id_prefix: String,
    /// When the schedule released the session (its first turn's intended time).
    intended_ns: u64,
}

impl OneSession {
    /// Sends the turns in order; returns how many were not sent (after a failure or a cancel).
    async fn run(
        self,
        sem: Option<Arc<Semaphore>>,
        cancel: &CancellationToken,
        tx: mpsc::Sender<RequestRecord>,
    ) -> usize {
        let dispatch_ns = mono_ns();
        let _permit = match sem {
            Some(s) => tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.session.turns.len(),
                p = s.acquire_owned() => p.ok(),
            },
            None => None,
        };
        let n = self.session.turns.len();
        let mut history: Vec<String> = Vec::with_capacity(2 * n);
        let (mut intended, mut dispatched) = (self.intended_ns, dispatch_ns);
        // the prompt expected: the previous one and its answer as the server counted them
        let mut history_tokens = 0u32;
        for (k, turn) in self.session.turns.iter().enumerate() {
            if k > 0 {
                intended = mono_ns() + turn.think_ns;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return n - k,
                    _ = tokio::time::sleep_until(instant_at(intended)) => {}
                }
                dispatched = mono_ns();
            }
            if cancel.is_cancelled() {
                return n - k;
            }
            history.push(turn.user.text.clone());
            let turns: Vec<&str> = history.iter().map(String::as_str).collect();
            let body = self
                .client
                .body_spec()
                .render_turns(&turns, turn.user.output_len);
            let mut rec = RequestRecord {
                index: self.first_index + k as u64,
                request_id: format!("{}{k}", self.id_prefix),
                intended_ns: intended,
                dispatch_ns: dispatched,
                prompt_tokens_target: history_tokens + turn.user.prompt_tokens,
                output_tokens_target: turn.user.output_len,
                turn: Some(k as u32),
                session_turns: Some(n as u32),
                ..Default::default()
            };
            self.client.execute(&mut rec, body, cancel).await;
            let ok = rec.ok();
            history_tokens = rec.prompt_tokens() + rec.output_tokens();
            history.push(rec.visible_text());
            // the collector outlives every task, so this send only fails if it panicked
            let _ = tx.send(rec).await;
            if !ok {
                return n - k - 1;
            }
        }
        0
    }
}
