//! The ring buffer between the poller thread and the session task.
//!
//! The poller pushes a few samples per interval; the session copies ranges out to send them. The
//! buffer assigns sequence numbers, so `seq` is gap-free per agent instance and the buffer's
//! contents are always one contiguous run of sequence numbers. Samples stay after they are sent:
//! only a controller's `resume_from_seq` (on registration) or overflow removes them, so a
//! reconnecting agent can replay what the controller lacks.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use proto::GpuSample;
use tokio::sync::Notify;

/// Bounded FIFO of samples not yet acknowledged by a controller.
#[derive(Debug)]
pub struct RingBuffer {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Woken after every push (single consumer: the current session).
    notify: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Contiguous `seq`s, oldest first.
    samples: VecDeque<GpuSample>,
    /// The next `seq` to assign.
    next_seq: u64,
    /// Every `seq` below this was handed to a session at least once.
    sent_mark: u64,
    /// Samples overwritten before any session sent them.
    dropped: u64,
}

/// A copied range of samples and the drop counter at the time of the copy.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<GpuSample>,
    pub dropped: u64,
}

impl RingBuffer {
    /// A buffer that holds at most `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            inner: Mutex::new(Inner {
                samples: VecDeque::with_capacity(capacity.min(1 << 16)),
                ..Inner::default()
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent data (every update is one push or
        // pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends samples, assigning their `seq`; evicts the oldest when full. Wakes the sender.
    pub fn push(&self, samples: impl IntoIterator<Item = GpuSample>) {
        {
            let mut inner = self.lock();
            for mut sample in samples {
                if inner.samples.len() == self.capacity {
                    let evicted = inner.samples.pop_front().map_or(0, |s| s.seq);
                    if evicted >= inner.sent_mark {
                        inner.dropped += 1;
                    }
                }
                sample.seq = inner.next_seq;
                inner.next_seq += 1;
                inner.samples.push_back(sample);
            }
        }
        self.notify.notify_one();
    }

    /// The controller has everything below `resume_from`: forget it. Returns where to send from
    /// (`resume_from`, or `next_seq` when the controller asks for samples not yet taken).
    pub fn resume_from(&self, resume_from: u64) -> u64 {
        let mut inner = self.lock();
        let resume_from = resume_from.min(inner.next_seq);
        while inner.samples.front().is_some_and(|s| s.seq < resume_from) {
            inner.samples.pop_front();
        }
        inner.sent_mark = inner.sent_mark.max(resume_from);
        resume_from
    }

    /// Copies up to `max` samples with `seq >= from` (from the oldest buffered one if `from` was
    /// already evicted) and marks them sent.
    pub fn copy_from(&self, from: u64, max: usize) -> Batch {
        let mut inner = self.lock();
        let front = inner.samples.front().map_or(inner.next_seq, |s| s.seq);
        let skip = usize::try_from(from.saturating_sub(front)).unwrap_or(usize::MAX);
        let samples: Vec<GpuSample> = inner.samples.iter().skip(skip).take(max).cloned().collect();
        if let Some(last) = samples.last() {
            inner.sent_mark = inner.sent_mark.max(last.seq + 1);
        }
        Batch {
            samples,
            dropped: inner.dropped,
        }
    }

    /// Whether a sample with `seq >= from` is buffered.
    pub fn has_from(&self, from: u64) -> bool {
        let inner = self.lock();
        from < inner.next_seq && !inner.samples.is_empty()
    }

    /// Oldest buffered `seq` (`next_seq` when empty) and the next `seq` to assign.
    pub fn bounds(&self) -> (u64, u64) {
        let inner = self.lock();
        let oldest = inner.samples.front().map_or(inner.next_seq, |s| s.seq);
        (oldest, inner.next_seq)
    }

    /// Samples overwritten before they could be sent, since the agent started.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Buffered samples.
    pub fn len(&self) -> usize {
        self.lock().samples.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves after the next push (or at once if one happened since the last wait).
    pub async fn pushed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize) -> Vec<GpuSample> {
        (0..n)
            .map(|i| GpuSample {
                gpu_index: u32::try_from(i % 2).unwrap(),
                ..GpuSample::default()
            })
            .collect()
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.samples.iter().map(|s| s.seq).collect()
    }

    #[test]
    fn assigns_contiguous_seq() {
        let buf = RingBuffer::new(10);
        buf.push(samples(3));
        buf.push(samples(2));
        assert_eq!(seqs(&buf.copy_from(0, 100)), vec![0, 1, 2, 3, 4]);
        assert_eq!(buf.bounds(), (0, 5));
    }

    #[test]
    fn overflow_drops_oldest_and_counts_unsent() {
        let buf = RingBuffer::new(4);
        buf.push(samples(6));
        assert_eq!(buf.len(), 4);
        assert_eq!(buf.bounds(), (2, 6));
        let batch = buf.copy_from(0, 100);
        assert_eq!(seqs(&batch), vec![2, 3, 4, 5]);
        assert_eq!(batch.dropped, 2);
        // Evicting samples that were already sent is not a loss.
        buf.push(samples(3));
        assert_eq!(buf.dropped(), 2);
        assert_eq!(buf.bounds(), (5, 9));
        // Evicting unsent ones is.
        buf.push(samples(4));
        assert_eq!(buf.dropped(), 5);
    }

    #[test]
    fn resume_from_drops_acknowledged() {
        let buf = RingBuffer::new(100);
        buf.push(samples(10));
        assert_eq!(buf.resume_from(7), 7);
        assert_eq!(buf.bounds(), (7, 10));
        assert_eq!(seqs(&buf.copy_from(7, 100)), vec![7, 8, 9]);
        // A controller asking for the future gets what comes next.
        assert_eq!(buf.resume_from(50), 10);
        assert!(buf.is_empty());
        assert!(!buf.has_from(10));
        buf.push(samples(1));
        assert!(buf.has_from(10));
        assert_eq!(seqs(&buf.copy_from(10, 100)), vec![10]);
    }

    #[test]
    fn range_copies_are_bounded_and_repeatable() {
        let buf = RingBuffer::new(100);
        buf.push(samples(10));
        assert_eq!(seqs(&buf.copy_from(2, 3)), vec![2, 3, 4]);
        assert_eq!(seqs(&buf.copy_from(2, 3)), vec![2, 3, 4]);
        assert_eq!(seqs(&buf.copy_from(8, 3)), vec![8, 9]);
        assert!(buf.copy_from(10, 3).samples.is_empty());
        assert!(buf.has_from(9));
        assert!(!buf.has_from(10));
        // Still buffered after sending, until a resume acknowledges it.
        assert_eq!(buf.len(), 10);
        assert_eq!(buf.dropped(), 0);
    }

    #[tokio::test]
    async fn push_wakes_the_sender() {
        let buf = std::sync::Arc::new(RingBuffer::new(4));
        let waiter = tokio::spawn({
            let buf = buf.clone();
            async move { buf.pushed().await }
        });
        tokio::task::yield_now().await;
        buf.push(samples(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
