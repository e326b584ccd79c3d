//! Messages towards the controller: each wrapped in a `WorkerMessage`, a job's records in
//! `RecordBatch`es.

use std::time::Duration;

use proto::worker_message::Msg as ToController;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Records per `RecordBatch`, at most.
pub const MAX_BATCH_RECORDS: usize = 256;
/// A record waits at most this long before its batch is sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub(super) fn message(m: ToController) -> proto::WorkerMessage {
    proto::WorkerMessage { msg: Some(m) }
}

/// Streams records as `RecordBatch`es: a batch goes when it holds [`MAX_BATCH_RECORDS`] or its
/// first record is [`FLUSH_EVERY`] old, and the rest when `rx` closes. Returns the records sent.
pub(super) async fn stream_records(
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
