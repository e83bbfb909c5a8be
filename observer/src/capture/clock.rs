//! Kernel time to wall-clock time. The kernel stamps events with `bpf_ktime_get_ns`
//! (CLOCK_MONOTONIC); reports and event logs carry nanoseconds since the Unix epoch.

use time::OffsetDateTime;

/// Converts kernel monotonic timestamps (`bpf_ktime_get_ns`) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock nanoseconds since the epoch at `mono_ns`.
    wall_ns: i128,
    mono_ns: u64,
}

impl Clock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            wall_ns: OffsetDateTime::now_utc().unix_timestamp_nanos(),
            mono_ns: monotonic_ns(),
        }
    }

    /// Nanoseconds since the Unix epoch at kernel time `mono_ns`.
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        let ns = self.wall_ns + (i128::from(mono_ns) - i128::from(self.mono_ns));
        u64::try_from(ns).unwrap_or(0)
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
