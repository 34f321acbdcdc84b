//! Guest time (the stub's TSC-based clock) and the host wall clock.

/// Guest time in nanoseconds since boot.
pub(crate) fn now_ns() -> u64 {
    crate::stub::clock_ns()
}

/// Wall-clock time in nanoseconds since the Unix epoch, without a hypercall: the host's wall
/// clock at guest time 0 (boot information) plus guest time. The one wall clock of the kernel
/// (system calls, file timestamps, timeouts against `CLOCK_REALTIME`).
pub(crate) fn realtime_ns() -> u64 {
    crate::boot::info()
        .wall_clock_epoch_ns
        .saturating_add(now_ns())
}

/// The host's wall clock now, asked by hypercall (the self-test compares it with
/// [`realtime_ns`]).
#[cfg(feature = "diagnostics")]
pub(crate) fn host_wall_ns() -> u64 {
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
