//! The one clock every timestamp comes from: `CLOCK_MONOTONIC` in nanoseconds.
//!
//! Monotonic, so a wall-clock step cannot bend a latency; system-wide, so a timestamp taken here
//! and one taken in another process on the same machine (the simulator's emission log) can be
//! compared directly.

/// Nanoseconds of `CLOCK_MONOTONIC`.
#[inline]
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This boot of this machine (`/proc/sys/kernel/random/boot_id`), "" where unknown: two
/// processes with the same boot id share `CLOCK_MONOTONIC`.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A `tokio::time::Instant` for a monotonic timestamp `t_ns` (for `sleep_until` on an absolute schedule).
pub fn instant_at(t_ns: u64) -> tokio::time::Instant {
    let now_ns = mono_ns();
    let now = tokio::time::Instant::now();
    if t_ns >= now_ns {
        now + std::time::Duration::from_nanos(t_ns - now_ns)
    } else {
        now.checked_sub(std::time::Duration::from_nanos(now_ns - t_ns))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_in_nanoseconds() {
        let a = mono_ns();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = mono_ns();
        assert!(b > a);
        let d = b - a;
        assert!(
            (4_000_000..1_000_000_000).contains(&d),
            "5 ms sleep measured as {d} ns"
        );
    }
}
