//! The one clock every timestamp comes from: `CLOCK_MONOTONIC` in nanoseconds, in the controller,
//! the load workers and the agents.
//!
//! Monotonic, so a wall-clock step cannot bend a latency; system-wide, so a timestamp taken here
//! and one taken in another process on the same machine (the simulator's emission log) can be
//! compared directly. Two processes with the same [`boot_id`] share it.

use std::time::Duration;

use rustix::time::{ClockId, Timespec, clock_gettime};

/// Nanoseconds of `CLOCK_MONOTONIC`. On the load generator's read path: keep it a plain inline
/// `clock_gettime`.
#[inline]
pub fn mono_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::Monotonic))
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    Duration::from_nanos(timespec_ns(clock_gettime(ClockId::ThreadCPUTime)))
}

/// Both clocks start near boot and never go negative.
#[inline]
fn timespec_ns(ts: Timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This boot of this machine (`/proc/sys/kernel/random/boot_id`), "" where unknown: two
/// processes with the same boot id share `CLOCK_MONOTONIC`.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A `tokio::time::Instant` for a monotonic timestamp `t_ns` (for `sleep_until` on an absolute
/// schedule).
pub fn instant_at(t_ns: u64) -> tokio::time::Instant {
    let now_ns = mono_ns();
    let now = tokio::time::Instant::now();
    if t_ns >= now_ns {
        now + Duration::from_nanos(t_ns - now_ns)
    } else {
        now.checked_sub(Duration::from_nanos(now_ns - t_ns))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_in_nanoseconds() {
        let a = mono_ns();
        std::thread::sleep(Duration::from_millis(5));
        let b = mono_ns();
        assert!(b > a);
        let d = b - a;
        assert!(
            (4_000_000..1_000_000_000).contains(&d),
            "5 ms sleep measured as {d} ns"
        );
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
    }

    #[test]
    fn the_boot_id_is_stable() {
        assert_eq!(boot_id(), boot_id());
    }
}
