//! The load worker's own CPU use over a test, for the validity verdict: the process's CPU time
//! (user + system, `CLOCK_PROCESS_CPUTIME_ID`), read when the measured run starts and when it
//! ends (never on the read path), against the wall time and the cores its runtime may use.

/// The process's CPU time so far (user + system, every thread), in ns.
pub fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// The cores the calling tokio runtime may use: its worker threads, at most the CPUs this
/// process's affinity allows (1 outside a runtime with one CPU).
pub fn usable_cores() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(cpus);
    workers.min(cpus).max(1) as u32
}

/// CPU use in percent of `cores` over `wall_ns` (100: every usable core busy all along);
/// `None` when nothing was measured.
pub fn percent(cpu_ns: u64, wall_ns: u64, cores: u32) -> Option<f64> {
    (wall_ns > 0 && cores > 0 && cpu_ns > 0)
        .then(|| cpu_ns as f64 / (wall_ns as f64 * f64::from(cores)) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_as_cpu_time() {
        let t0 = process_cpu_ns();
        let w0 = std::time::Instant::now();
        let mut x = 0u64;
        while w0.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = process_cpu_ns() - t0;
        // the spinning thread ran for most of the 50 ms (a loaded machine takes some away)
        assert!(
            used >= 10_000_000,
            "{used} ns of CPU over 50 ms of spinning"
        );
        assert_eq!(percent(500, 1000, 1), Some(50.0));
        assert_eq!(percent(1000, 1000, 2), Some(50.0));
        assert_eq!(percent(0, 1000, 2), None);
        assert!(usable_cores() >= 1);
    }
}
