//! The poller thread: samples every monitored GPU on an absolute schedule and pushes into the
//! ring buffer. A plain thread, because NVML calls block and serialise in the driver; it never
//! touches the network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cluster::clock::thread_cpu_time;
use proto::GpuSample;

use crate::buffer::RingBuffer;
use crate::clock::Clock;
use crate::metrics::AgentMetrics;
use crate::source::{GpuSelection, Source, SourceKind};

/// The smallest sampling interval (`--interval`, SamplingSettings).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// When the poller samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Every field but energy, every `interval` (the controller may change it).
    pub interval: Duration,
    /// The energy counter at most this often (zero: every poll).
    pub energy_interval: Duration,
}

impl Schedule {
    /// Everything every `interval`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            energy_interval: Duration::ZERO,
        }
    }
}

enum Command {
    SetInterval(Duration),
    Stop,
}

/// Handle to the running poller thread.
#[derive(Debug)]
pub struct Poller {
    commands: mpsc::Sender<Command>,
    interval_ns: AtomicU64,
    thread: Mutex<Option<JoinHandle<PollStats>>>,
}

/// What one run of the poll loop did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStats {
    /// Polls completed (each samples every monitored GPU).
    pub polls: u64,
    /// Polls skipped because the previous one overran its slot.
    pub missed: u64,
    /// CPU time of the poller thread, including the scheduling loop.
    pub cpu: Duration,
}

impl Poller {
    /// Starts the thread; it polls at once, then every `schedule.interval`, counting into
    /// `metrics`.
    pub fn spawn(
        source: Box<dyn Source>,
        schedule: Schedule,
        buffer: Arc<RingBuffer>,
        clock: Clock,
        metrics: AgentMetrics,
    ) -> std::io::Result<Self> {
        Self::spawn_inner(source, schedule, buffer, clock, None, metrics)
    }

    fn spawn_inner(
        source: Box<dyn Source>,
        schedule: Schedule,
        buffer: Arc<RingBuffer>,
        clock: Clock,
        max_polls: Option<u64>,
        metrics: AgentMetrics,
    ) -> std::io::Result<Self> {
        let interval = schedule.interval.max(MIN_INTERVAL);
        let schedule = Schedule {
            interval,
            ..schedule
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("nvml-poller".into())
            .spawn(move || {
                let to = Sink {
                    buffer: &buffer,
                    metrics: &metrics,
                };
                poll_loop(source, schedule, to, clock, &rx, max_polls)
            })?;
        Ok(Self {
            commands: tx,
            interval_ns: AtomicU64::new(duration_ns(interval)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The current sampling interval.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    /// Changes the interval (clamped to [`MIN_INTERVAL`]); the next poll is one new interval
    /// from now.
    pub fn set_interval(&self, interval: Duration) {
        let interval = interval.max(MIN_INTERVAL);
        self.interval_ns
            .store(duration_ns(interval), Ordering::Relaxed);
        self.send(Command::SetInterval(interval));
    }

    fn send(&self, command: Command) {
        // The thread only exits on Stop or when max_polls is reached; a failed send means it
        // already has.
        let _ = self.commands.send(command);
    }

    /// Asks the thread to stop after the current poll, without waiting.
    pub fn request_stop(&self) {
        self.send(Command::Stop);
    }

    /// Stops the thread and waits for it (at most one poll).
    pub fn stop(&self) -> PollStats {
        self.request_stop();
        self.join()
    }

    fn join(&self) -> PollStats {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(stats)) => stats,
            Some(Err(_)) => {
                tracing::error!("the poller thread panicked");
                PollStats::default()
            }
            None => PollStats::default(),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.request_stop();
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where a poll's samples go: the ring buffer, and their count to the metrics.
struct Sink<'a> {
    buffer: &'a RingBuffer,
    metrics: &'a AgentMetrics,
}

fn poll_loop(
    mut source: Box<dyn Source>,
    schedule: Schedule,
    to: Sink<'_>,
    clock: Clock,
    commands: &mpsc::Receiver<Command>,
    max_polls: Option<u64>,
) -> PollStats {
    let cpu_start = thread_cpu_time();
    let gpus: Vec<u32> = source.inventory().iter().map(|g| g.index).collect();
    let mut samples: Vec<GpuSample> = Vec::with_capacity(gpus.len());
    let mut stats = PollStats::default();
    let mut interval = schedule.interval;
    let mut next = Instant::now();
    let mut energy_due = next;
    loop {
        // Sleep until the slot, handling commands as they come.
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            match commands.recv_timeout(next - now) {
                Ok(Command::SetInterval(new)) => {
                    interval = new;
                    next = Instant::now() + interval;
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    stats.cpu = thread_cpu_time().saturating_sub(cpu_start);
                    return stats;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // Read energy on the poll nearest to each energy slot.
        let read_energy = next + interval / 2 >= energy_due;
        if read_energy {
            energy_due = next + schedule.energy_interval;
        }
        for &gpu in &gpus {
            let mut sample = source.sample(gpu, read_energy);
            sample.t_ns = clock.now_ns();
            samples.push(sample);
        }
        to.metrics
            .poll(samples.iter().map(|s| s.missing_fields), read_energy);
        to.buffer.push(samples.drain(..));
        stats.polls += 1;
        if max_polls.is_some_and(|max| stats.polls >= max) {
            stats.cpu = thread_cpu_time().saturating_sub(cpu_start);
            return stats;
        }
        // Absolute schedule: the slot after `next`; if the poll overran, skip the missed slots.
        next += interval;
        let now = Instant::now();
        if next < now {
            let behind = now - next;
            let skip = behind.as_nanos() / interval.as_nanos().max(1) + 1;
            stats.missed += u64::try_from(skip).unwrap_or(u64::MAX);
            next += interval * u32::try_from(skip).unwrap_or(u32::MAX);
            tracing::debug!(skipped = skip, "poll overran its interval");
        }
    }
}

/// The poller's cost, measured on its own thread.
#[derive(Debug, Clone, Copy)]
pub struct SamplingCost {
    /// Sampling interval used.
    pub interval: Duration,
    /// Energy read interval used (zero: every poll).
    pub energy_interval: Duration,
    /// GPUs sampled per poll.
    pub gpus: usize,
    /// Polls measured.
    pub polls: u64,
    /// Polls skipped because one overran its interval.
    pub missed_polls: u64,
    /// Total CPU time of the poller thread (CLOCK_THREAD_CPUTIME_ID).
    pub cpu_total: Duration,
    /// CPU time per poll (all GPUs).
    pub cpu_per_poll: Duration,
    /// CPU time per sample (one GPU, one poll).
    pub cpu_per_sample: Duration,
}

impl std::fmt::Display for SamplingCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interval {}: {:.3} ms CPU per poll of {} GPUs ({} polls; {:.3} ms per sample, {:.2}% of one core; energy read {})",
            humantime::format_duration(self.interval),
            self.cpu_per_poll.as_secs_f64() * 1e3,
            self.gpus,
            self.polls,
            self.cpu_per_sample.as_secs_f64() * 1e3,
            100.0 * self.cpu_per_poll.as_secs_f64() / self.interval.as_secs_f64(),
            if self.energy_interval.is_zero() {
                "every poll".to_owned()
            } else {
                format!("every {}", humantime::format_duration(self.energy_interval))
            },
        )?;
        if self.missed_polls > 0 {
            write!(f, "; {} polls missed", self.missed_polls)?;
        }
        Ok(())
    }
}

/// Runs the poller for `polls` polls of the first `gpus` GPUs at `interval` (the same loop as
/// the agent, pushing into a ring buffer) and reports its thread's CPU time. Blocks for about
/// `polls × interval`.
pub fn measure_sampling_cost(
    source: SourceKind,
    gpus: usize,
    interval: Duration,
    polls: usize,
) -> anyhow::Result<SamplingCost> {
    measure_selection(
        source,
        &GpuSelection::First(gpus),
        Schedule::every(interval),
        polls,
    )
}

/// Refuses a sampling interval below [`MIN_INTERVAL`] (the message names both).
pub(crate) fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < MIN_INTERVAL {
        return Err(format!(
            "{} is below the minimum of {}",
            humantime::format_duration(interval),
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    Ok(())
}

/// [`measure_sampling_cost`] for any GPU selection.
pub fn measure_selection(
    source: SourceKind,
    selection: &GpuSelection,
    schedule: Schedule,
    polls: usize,
) -> anyhow::Result<SamplingCost> {
    let interval = schedule.interval;
    anyhow::ensure!(polls > 0, "--measure-cost: need at least one poll");
    check_interval(interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let source = crate::source::open(source, selection)?;
    let inventory = source.inventory();
    tracing::debug!(?inventory, "measuring the poller");
    let gpus = inventory.len();
    let polls = u64::try_from(polls)?;
    let buffer = Arc::new(RingBuffer::new(
        usize::try_from(polls)?.saturating_mul(gpus).min(1 << 20),
    ));
    let poller = Poller::spawn_inner(
        source,
        schedule,
        buffer.clone(),
        Clock::default(),
        Some(polls),
        AgentMetrics::default(),
    )?;
    let stats = poller.join();
    let (_, next_seq) = buffer.bounds();
    let last_poll = next_seq.saturating_sub(u64::try_from(gpus)?);
    for sample in buffer.copy_from(last_poll, gpus).samples {
        tracing::debug!(?sample, "last poll");
    }
    anyhow::ensure!(stats.polls == polls, "the poller thread stopped early");
    let per_poll = stats.cpu / u32::try_from(stats.polls.max(1)).unwrap_or(u32::MAX);
    Ok(SamplingCost {
        interval,
        energy_interval: schedule.energy_interval,
        gpus,
        polls: stats.polls,
        missed_polls: stats.missed,
        cpu_total: stats.cpu,
        cpu_per_poll: per_poll,
        cpu_per_sample: per_poll / u32::try_from(gpus.max(1)).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::SimulatedSource;

    #[test]
    fn polls_on_schedule_with_gap_free_seq() {
        let source = Box::new(SimulatedSource::new(&GpuSelection::First(3)).unwrap());
        let buffer = Arc::new(RingBuffer::new(1000));
        let clock = Clock::new(1_000_000_000_000);
        let metrics = AgentMetrics::default();
        let poller = Poller::spawn(
            source,
            Schedule::every(Duration::from_millis(10)),
            buffer.clone(),
            clock,
            metrics.clone(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        poller.set_interval(Duration::from_millis(20));
        assert_eq!(poller.interval(), Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(60));
        let stats = poller.stop();
        let batch = buffer.copy_from(0, 10_000);
        assert!(stats.polls >= 8, "{stats:?}");
        assert_eq!(batch.samples.len() as u64, stats.polls * 3);
        assert_eq!(metrics.samples_taken.get(), stats.polls * 3);
        assert_eq!(metrics.nvml_errors.get(), 0);
        for (i, s) in batch.samples.iter().enumerate() {
            assert_eq!(s.seq, i as u64);
            assert_eq!(s.gpu_index, (i % 3) as u32);
            assert!(s.t_ns > 1_000_000_000_000);
        }
        // t_ns is non-decreasing.
        assert!(batch.samples.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    }

    #[test]
    fn measures_cost() {
        let cost =
            measure_sampling_cost(SourceKind::Simulated, 2, Duration::from_millis(10), 5).unwrap();
        assert_eq!(cost.polls, 5);
        assert!(cost.cpu_total > Duration::ZERO);
        let text = cost.to_string();
        assert!(text.starts_with("interval 10ms: "), "{text}");
        assert!(text.contains("per poll of 2 GPUs (5 polls"), "{text}");
    }

    #[test]
    fn energy_is_read_at_its_own_interval() {
        let source = Box::new(SimulatedSource::new(&GpuSelection::First(1)).unwrap());
        let buffer = Arc::new(RingBuffer::new(1000));
        let schedule = Schedule {
            interval: Duration::from_millis(10),
            energy_interval: Duration::from_millis(40),
        };
        let metrics = AgentMetrics::default();
        let poller = Poller::spawn_inner(
            source,
            schedule,
            buffer.clone(),
            Clock::default(),
            Some(12),
            metrics.clone(),
        )
        .unwrap();
        assert_eq!(poller.join().polls, 12);
        let with_energy: Vec<u64> = buffer
            .copy_from(0, 100)
            .samples
            .iter()
            .filter(|s| s.missing_fields == 0)
            .map(|s| s.seq)
            .collect();
        // Polls 0, 4, 8 (unless a poll overran and the schedule skipped a slot).
        assert!(with_energy.starts_with(&[0]), "{with_energy:?}");
        assert!((2..=4).contains(&with_energy.len()), "{with_energy:?}");
        // the energy skipped between its reads is no NVML error
        assert_eq!(
            (metrics.samples_taken.get(), metrics.nvml_errors.get()),
            (12, 0)
        );
    }
}
