//! The TSC: frequency discovery and the guest clock parameters.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use raw_cpuid::CpuId;
use rustix::time::{clock_gettime, ClockId};

/// Shift used for TSC-to-ns conversion: `ns = (ticks * mult) >> CLOCK_SHIFT`.
pub const CLOCK_SHIFT: u32 = 32;

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86-64 CPU pvmux supports has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn ns_of(clock: ClockId) -> u64 {
    let t = clock_gettime(clock);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    ns_of(ClockId::Monotonic)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    ns_of(ClockId::Realtime)
}

/// The TSC frequency in kHz: from CPUID (leaf 0x15 or the hypervisor's TSC leaf), else
/// calibrated once per process against CLOCK_MONOTONIC.
pub fn tsc_khz() -> u64 {
    static KHZ: OnceLock<u64> = OnceLock::new();
    *KHZ.get_or_init(|| {
        let khz = cpuid_tsc_khz().unwrap_or_else(calibrate_tsc_khz);
        tracing::debug!(tsc_khz = khz, "TSC frequency");
        khz.max(1)
    })
}

fn cpuid_tsc_khz() -> Option<u64> {
    let cpuid = CpuId::new();
    if let Some(hz) = cpuid.get_tsc_info().and_then(|t| t.tsc_frequency()) {
        if hz >= 1_000_000 {
            return Some(hz / 1000);
        }
    }
    let khz = cpuid.get_hypervisor_info()?.tsc_frequency()?;
    (khz >= 1000).then_some(u64::from(khz))
}

/// Calibrates over 2 ms against CLOCK_MONOTONIC. Each end is the TSC read on both sides of
/// a clock read, the midpoint taken, from the tightest of a few tries: a thread preempted
/// between the two TSC reads (a loaded host) would otherwise put its end anywhere in that
/// gap, and a gap of a millisecond is half the span: a guest clock off by tens of percent
/// for the tenant's life. With tight ends the error is about (clock read time / 2 ms),
/// ~1e-5, while the first launch's start-up stays short.
fn calibrate_tsc_khz() -> u64 {
    let (t0, c0) = tsc_at_clock_read();
    std::thread::sleep(Duration::from_millis(2));
    let (t1, c1) = tsc_at_clock_read();
    let khz = khz_between((t0, c0), (t1, c1));
    tracing::debug!(khz, "calibrated the TSC against CLOCK_MONOTONIC");
    khz
}

/// Tries for one calibration end ([`tsc_at_clock_read`]).
const READ_TRIES: usize = 16;

/// TSC ticks between the two reads around a clock read below which a try is taken at once
/// (a vDSO clock read takes 20–100 ns: 50–250 ticks at 2.5 GHz).
const TIGHT_READ_TICKS: u64 = 1_000;

/// The monotonic clock and the TSC at one instant: the TSC read on both sides of the clock
/// read, the midpoint, from the tightest of up to [`READ_TRIES`] tries.
fn tsc_at_clock_read() -> (Instant, u64) {
    let mut best: Option<(u64, Instant, u64)> = None;
    for _ in 0..READ_TRIES {
        let a = rdtsc();
        let t = Instant::now();
        let b = rdtsc();
        let gap = b.wrapping_sub(a);
        if best.is_none_or(|(g, _, _)| gap < g) {
            best = Some((gap, t, a / 2 + b / 2));
        }
        if gap < TIGHT_READ_TICKS {
            break;
        }
    }
    best.map_or_else(|| (Instant::now(), rdtsc()), |(_, t, c)| (t, c))
}

/// The TSC frequency (kHz) from two `(instant, TSC)` readings.
fn khz_between((t0, c0): (Instant, u64), (t1, c1): (Instant, u64)) -> u64 {
    let ns = t1.saturating_duration_since(t0).as_nanos().max(1);
    (u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns) as u64
}

/// The guest clock's origin and conversion factors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockParams {
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// TSC at guest time 0.
    pub tsc_base: u64,
    /// CLOCK_MONOTONIC (ns) at guest time 0.
    pub mono_base_ns: u64,
    /// CLOCK_REALTIME (ns since the epoch) at guest time 0.
    pub wall_base_ns: u64,
    /// TSC-to-ns multiplier.
    pub mult: u64,
    /// TSC-to-ns shift ([`CLOCK_SHIFT`]).
    pub shift: u32,
}

impl ClockParams {
    /// Samples the clocks now: guest time 0 is this instant.
    pub fn now() -> Self {
        let tsc_khz = tsc_khz();
        let tsc_base = rdtsc();
        let mono_base_ns = monotonic_ns();
        let wall_base_ns = realtime_ns();
        Self {
            tsc_khz,
            tsc_base,
            mono_base_ns,
            wall_base_ns,
            mult: mult_for(tsc_khz),
            shift: CLOCK_SHIFT,
        }
    }

    /// Guest nanoseconds for a TSC value (0 before the base).
    pub fn tsc_to_ns(&self, tsc: u64) -> u64 {
        self.ticks_to_ns(tsc.saturating_sub(self.tsc_base))
    }

    /// A 1 GHz clock (one tick per ns) with its origin at 0, for tests.
    #[cfg(test)]
    pub(crate) const fn test_1ghz() -> Self {
        Self {
            tsc_khz: 1_000_000,
            tsc_base: 0,
            mono_base_ns: 0,
            wall_base_ns: 0,
            mult: 1 << 32,
            shift: 32,
        }
    }

    /// Nanoseconds for a span of `ticks` TSC ticks.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.mult)) >> self.shift) as u64
    }
}

/// `mult` such that `ns = (ticks * mult) >> 32` for a TSC of `khz` kHz.
pub fn mult_for(khz: u64) -> u64 {
    ((1_000_000u128 << CLOCK_SHIFT) / u128::from(khz.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion() {
        let p = ClockParams {
            tsc_khz: 2_000_000,
            tsc_base: 1000,
            mono_base_ns: 0,
            wall_base_ns: 0,
            mult: mult_for(2_000_000),
            shift: CLOCK_SHIFT,
        };
        assert_eq!(p.tsc_to_ns(1000 + 2_000_000_000), 1_000_000_000);
        assert_eq!(p.tsc_to_ns(0), 0);
        assert!(tsc_khz() > 100_000);
    }

    /// The 2 ms calibration agrees with one over 100 ms (whose ends' error weighs 50 times
    /// less) within 0.2 %: a preempted end (before: ±1.2 % in 40 launches next to three
    /// CPU-bound processes) would not.
    #[test]
    fn the_calibration_agrees_with_a_long_one() {
        for _ in 0..5 {
            let short = calibrate_tsc_khz();
            let start = tsc_at_clock_read();
            std::thread::sleep(Duration::from_millis(100));
            let long = khz_between(start, tsc_at_clock_read());
            let off = short.abs_diff(long) as f64 / long as f64;
            assert!(off < 0.002, "2 ms: {short} kHz, 100 ms: {long} kHz");
        }
    }
}
