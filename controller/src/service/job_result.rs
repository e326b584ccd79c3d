//! What a job produced: the workers' records merged onto the controller's clock.

use std::sync::Arc;

use anyhow::{Context, bail};
use loadgen::RecordStore;

use super::pool::Claimed;
use crate::clock::Offset;

/// What a job produced, on the controller's clock.
#[derive(Debug, Default)]
pub struct JobResult {
    /// One per dispatched request, in index order; `index` is the prompt's index in
    /// [`JobSpec::prompts`](super::JobSpec::prompts) (unique across workers). In memory up to
    /// the job's budget, the rest in a spill file.
    pub records: RecordStore,
    /// The earliest start and the latest end of the workers' measured runs.
    pub start_ns: u64,
    pub end_ns: u64,
    pub warmup_sent: usize,
    pub warmup_failed: usize,
    /// Requests never dispatched (the job was cancelled).
    pub not_sent: usize,
    /// Records each worker delivered, in worker order.
    pub per_worker: Vec<(String, usize)>,
    /// The spread of the workers' measured-run starts on the controller's clock (0 with one
    /// worker): how well the common start, scheduled after every worker's warm-up, held.
    pub start_skew_ns: u64,
    /// The busiest worker's CPU use over its measured run, in percent of the cores its runtime
    /// may use (`None`: no worker measured it).
    pub client_cpu_pct: Option<f64>,
}

impl JobResult {
    /// `load_workers` of a result: who ran the job and the records each returned.
    pub fn load_workers_json(&self) -> serde_json::Value {
        self.per_worker
            .iter()
            .map(|(name, records)| serde_json::json!({"name": name, "records": records}))
            .collect()
    }
}

/// Every worker's records on the controller's clock (with the `latest` offsets, else the
/// claim's), as one result indexed like the job's prompts. `counts`: the records each worker
/// sent (slot `k` of `records` is worker `k`'s).
pub(super) fn merge(
    job_id: &str,
    claimed: &[Claimed],
    latest: &[Option<Offset>],
    mut records: RecordStore,
    counts: &[usize],
    done: Vec<Option<proto::JobDone>>,
) -> anyhow::Result<JobResult> {
    let n = claimed.len();
    let mut out = JobResult {
        start_ns: u64::MAX,
        ..Default::default()
    };
    let mut latest_start = 0u64;
    let mut offsets = Vec::with_capacity(n);
    for (k, (w, d)) in claimed.iter().zip(done).enumerate() {
        let d = d.expect("every worker is done");
        if d.records_sent != counts[k] as u64 {
            bail!(
                "load worker {} sent {} records for job {job_id} but {} arrived",
                w.name,
                d.records_sent,
                counts[k]
            );
        }
        let offset = latest.get(k).copied().flatten().unwrap_or(w.offset);
        offsets.push(offset);
        let start = offset.to_controller(d.start_ns);
        out.start_ns = out.start_ns.min(start);
        latest_start = latest_start.max(start);
        out.end_ns = out.end_ns.max(offset.to_controller(d.end_ns));
        out.warmup_sent += d.warmup_sent as usize;
        out.warmup_failed += d.warmup_failed as usize;
        out.not_sent += d.not_sent as usize;
        let cpu = loadgen::cpu::percent(d.cpu_ns, d.end_ns.saturating_sub(d.start_ns), d.cpu_cores);
        out.client_cpu_pct = match (out.client_cpu_pct, cpu) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        out.per_worker.push((w.name.clone(), counts[k]));
    }
    out.start_skew_ns = latest_start.saturating_sub(out.start_ns);
    records.fix(Arc::new(move |k, r| {
        let offset = offsets[k as usize];
        loadgen::wire::map_times(r, |t| offset.to_controller(t));
        // the worker's l-th prompt is prompt k + l·n of the job
        r.index = r.index * n as u64 + u64::from(k);
    }));
    let twice = records
        .finish()
        .with_context(|| format!("job {job_id}: writing the spilled records"))?;
    if twice.is_some() {
        bail!("job {job_id}: two workers returned a record for the same prompt");
    }
    out.records = records;
    Ok(out)
}
