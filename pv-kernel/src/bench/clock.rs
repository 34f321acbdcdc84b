//! Benchmark time base: raw `rdtsc`, converted to guest time with the boot information's clock
//! calibration (ABI §6: `ns = ((tsc - tsc_base) * clock_mult) >> clock_shift`, 128-bit).
//!
//! Durations are kept in picoseconds (ns × 1000) so that a batch of K operations divided by K
//! keeps three fractional nanosecond digits.

pub(crate) use crate::arch::rdtsc;

/// `ticks * clock_mult * scale >> clock_shift` in 128-bit arithmetic, saturated to `u64`.
fn scale(ticks: u64, scale: u128) -> u64 {
    let bi = crate::boot::info();
    let shift = bi.clock_shift.min(63);
    let v = (u128::from(ticks) * u128::from(bi.clock_mult) * scale) >> shift;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Duration of `ticks` TSC ticks in picoseconds.
pub(crate) fn ticks_to_ps(ticks: u64) -> u64 {
    scale(ticks, 1000)
}

/// Picoseconds between TSC readings `t0` and `t1` (0 if `t1 < t0`).
pub(crate) fn elapsed_ps(t0: u64, t1: u64) -> u64 {
    ticks_to_ps(t1.saturating_sub(t0))
}

/// Guest time of TSC reading `tsc`, in picoseconds (the stub's `clock_ns` × 1000, with the
/// sub-nanosecond digits kept).
pub(crate) fn guest_ps(tsc: u64) -> u64 {
    scale(tsc.saturating_sub(crate::time::tsc_base()), 1000)
}

/// Number of TSC ticks in about `ns` nanoseconds (for busy-wait bounds; at least 1).
pub(crate) fn ns_to_ticks(ns: u64) -> u64 {
    let khz = crate::boot::info().tsc_khz.max(1);
    (u128::from(ns) * u128::from(khz) / 1_000_000).clamp(1, u128::from(u64::MAX)) as u64
}

/// Spins (with `pause`) until `cond()` is true or about `timeout_ns` have passed; returns
/// whether `cond()` became true.
pub(crate) fn spin_until(timeout_ns: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = rdtsc().saturating_add(ns_to_ticks(timeout_ns));
    loop {
        if cond() {
            return true;
        }
        if rdtsc() > end {
            return cond();
        }
        core::hint::spin_loop();
    }
}
