//! Guest time (the stub's TSC-based clock) and the host wall clock.

/// Guest time in nanoseconds since boot.
pub(crate) fn now_ns() -> u64 {
    crate::stub::clock_ns()
}

/// Host wall-clock time in nanoseconds since the Unix epoch.
pub(crate) fn wall_ns() -> u64 {
    crate::hcall::wall_clock_ns()
}

/// Blocks the current thread for at least `ns` nanoseconds of guest time.
pub(crate) fn sleep_ns(ns: u64) {
    crate::sched::sleep_until(now_ns().saturating_add(ns));
}

/// Blocks the current thread for at least `ms` milliseconds.
pub(crate) fn sleep_ms(ms: u64) {
    sleep_ns(ms.saturating_mul(1_000_000));
}
