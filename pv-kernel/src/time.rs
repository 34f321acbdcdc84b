//! Guest time (the stub's TSC-based clock) and the host wall clock.

/// Guest time in nanoseconds since boot, computed here from the TSC as ABI §6 lets a guest
/// do (exactly the stub's `clock_ns`, without the call): `rdtsc`, then the boot
/// information's scale from this sandbox's TSC base.
#[inline]
pub(crate) fn now_ns() -> u64 {
    ns_at(crate::arch::tsc())
}

/// Guest time in nanoseconds at TSC value `tsc` (an `arch::tsc()` read earlier): lets a
/// path that needs both a TSC and the time read the clock once.
pub(crate) fn ns_at(tsc: u64) -> u64 {
    ticks_to_ns(tsc.saturating_sub(tsc_base()))
}

/// A span of TSC ticks in nanoseconds (the boot information's clock scale).
pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
    let bi = crate::boot::info();
    ((u128::from(ticks) * u128::from(bi.clock_mult)) >> bi.clock_shift.min(63)) as u64
}

/// Wall-clock time in nanoseconds since the Unix epoch, without a hypercall: the host's wall
/// clock at guest time 0 (boot information) plus guest time. The one wall clock of the kernel
/// (system calls, file timestamps, timeouts against `CLOCK_REALTIME`).
pub(crate) fn realtime_ns() -> u64 {
    wall_epoch_ns().saturating_add(now_ns())
}

/// The host's wall clock at guest time 0 as the boot information gave it, or as a restored
/// snapshot's did (`crate::suspend`: guest time continues from the snapshot, the wall clock
/// is the new host's).
static WALL_EPOCH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The wall clock at guest time 0 (ns since the epoch).
pub(crate) fn wall_epoch_ns() -> u64 {
    match WALL_EPOCH.load(core::sync::atomic::Ordering::Relaxed) {
        0 => crate::boot::info().wall_clock_epoch_ns,
        e => e,
    }
}

/// The TSC at guest time 0 of this sandbox (a restored snapshot's host sets another one).
static TSC_BASE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The TSC at guest time 0: `ns = ((tsc - tsc_base) * clock_mult) >> clock_shift`.
pub(crate) fn tsc_base() -> u64 {
    match TSC_BASE.load(core::sync::atomic::Ordering::Relaxed) {
        0 => crate::boot::info().tsc_base,
        t => t,
    }
}

/// Takes the clock of a restored snapshot's boot information: its TSC base (guest time
/// continues from the snapshot's) and its wall clock at guest time 0 (the new host's).
pub(crate) fn set_resumed_clock(tsc_base: u64, wall_epoch_ns: u64) {
    TSC_BASE.store(tsc_base.max(1), core::sync::atomic::Ordering::Relaxed);
    WALL_EPOCH.store(wall_epoch_ns.max(1), core::sync::atomic::Ordering::Relaxed);
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
