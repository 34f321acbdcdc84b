//! The pvmux guest kernel's vDSO.
//!
//! Every guest process gets two extra mappings from the kernel, like Linux's `[vvar]` and
//! `[vdso]`: at [`Vvar`] a read-only page of clock data the kernel keeps up to date, and one
//! page higher the vDSO image, an ELF shared object whose address the kernel passes in the
//! auxiliary vector (`AT_SYSINFO_EHDR`). The C libraries find `__vdso_clock_gettime` and its
//! siblings there (version `LINUX_2.6`) and call them instead of making the system call, so
//! reading the clock costs a `rdtsc` and a little arithmetic instead of a trap into the guest
//! kernel.
//!
//! The guest clock is the one the sandbox stub and the kernel use (docs/ABI.md §6): guest
//! time is `((rdtsc - tsc_base) * mult) >> shift` ns since boot ([`guest_ns`]), wall-clock
//! time adds `wall_epoch_ns`. The kernel writes those values into the vvar page under a
//! sequence counter ([`Vvar::seq`], odd while an update is in progress); a reader retries
//! when the counter changed under it. Clocks the vDSO does not answer (the CPU-time clocks,
//! `CLOCK_TAI`, unknown ids) and a vvar page the kernel has not marked valid
//! ([`Vvar::flags`]) fall back to the system call.
//!
//! Built as a cargo library (the kernel's dependency, the host unit tests), this crate is the
//! vvar layout and the pure arithmetic only; the kernel's build script compiles the same file
//! with `--cfg vdso_image`, which adds the exported entry points, and links it into the image.

#![no_std]

/// The vvar page's contents (at offset 0 of the page; the rest of the page is zero).
///
/// Written only by the kernel (each field with an atomic store, inside a [`Vvar::seq`]
/// update), read by the vDSO in every process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Vvar {
    /// Sequence counter: odd while the kernel updates the page; readers retry if it was odd
    /// or changed while they read.
    pub seq: u32,
    /// [`VVAR_VALID`] once the clock data below is set; 0 makes the vDSO use the system call.
    pub flags: u32,
    /// TSC value at guest time 0.
    pub tsc_base: u64,
    /// TSC-ticks-to-ns multiplier.
    pub mult: u64,
    /// TSC-ticks-to-ns shift (at most 63).
    pub shift: u32,
    /// Padding (0).
    pub reserved: u32,
    /// Nanoseconds since the Unix epoch at guest time 0 (`CLOCK_REALTIME` offset).
    pub wall_epoch_ns: u64,
}

/// [`Vvar::flags`]: the clock data is valid.
pub const VVAR_VALID: u32 = 1;

/// Byte offsets of the [`Vvar`] fields (the kernel writes them one by one).
pub mod vvar_offset {
    /// [`super::Vvar::seq`].
    pub const SEQ: u64 = 0;
    /// [`super::Vvar::flags`].
    pub const FLAGS: u64 = 4;
    /// [`super::Vvar::tsc_base`].
    pub const TSC_BASE: u64 = 8;
    /// [`super::Vvar::mult`].
    pub const MULT: u64 = 16;
    /// [`super::Vvar::shift`].
    pub const SHIFT: u64 = 24;
    /// [`super::Vvar::wall_epoch_ns`].
    pub const WALL_EPOCH_NS: u64 = 32;
}

const _: () = {
    assert!(core::mem::size_of::<Vvar>() == 40);
    assert!(core::mem::offset_of!(Vvar, seq) == vvar_offset::SEQ as usize);
    assert!(core::mem::offset_of!(Vvar, flags) == vvar_offset::FLAGS as usize);
    assert!(core::mem::offset_of!(Vvar, tsc_base) == vvar_offset::TSC_BASE as usize);
    assert!(core::mem::offset_of!(Vvar, mult) == vvar_offset::MULT as usize);
    assert!(core::mem::offset_of!(Vvar, shift) == vvar_offset::SHIFT as usize);
    assert!(core::mem::offset_of!(Vvar, wall_epoch_ns) == vvar_offset::WALL_EPOCH_NS as usize);
};

/// Nanoseconds per second.
pub const NSEC_PER_SEC: u64 = 1_000_000_000;

/// Guest time in ns at TSC value `tsc` (docs/ABI.md §6): 0 before `tsc_base`, the 128-bit
/// product shifted (a shift above 63 counts as 63, as the stub clamps it).
#[inline(always)]
pub fn guest_ns(tsc: u64, tsc_base: u64, mult: u64, shift: u32) -> u64 {
    let ticks = tsc.saturating_sub(tsc_base);
    ((u128::from(ticks) * u128::from(mult)) >> shift.min(63)) as u64
}

/// Which time a clock id reads in the vDSO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time (`CLOCK_REALTIME`, `CLOCK_REALTIME_COARSE`).
    Realtime,
    /// Guest time since boot (`CLOCK_MONOTONIC`, `_RAW`, `_COARSE`, `CLOCK_BOOTTIME`).
    Monotonic,
}

/// The clock a clock id reads, `None` for those the system call answers (CPU-time clocks,
/// the alarm clocks, `CLOCK_TAI`, unknown ids). The kernel's `clock_gettime` gives the same
/// answers for these ids.
#[inline(always)]
pub fn clock_of(id: i32) -> Option<Clock> {
    match id {
        0 | 5 => Some(Clock::Realtime),
        1 | 4 | 6 | 7 => Some(Clock::Monotonic),
        _ => None,
    }
}

/// `ns` as whole seconds and the nanoseconds within the second.
#[inline(always)]
pub fn split_ns(ns: u64) -> (u64, u64) {
    (ns / NSEC_PER_SEC, ns % NSEC_PER_SEC)
}

/// The time clock `clock` shows at TSC value `tsc` according to the vvar data `v`.
#[inline(always)]
pub fn read_clock(v: &Vvar, clock: Clock, tsc: u64) -> u64 {
    let ns = guest_ns(tsc, v.tsc_base, v.mult, v.shift);
    match clock {
        Clock::Monotonic => ns,
        Clock::Realtime => v.wall_epoch_ns.wrapping_add(ns),
    }
}

#[cfg(vdso_image)]
mod image;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ns_matches_the_abi_formula() {
        // 3 GHz: mult/2^shift = 1/3.
        let (mult, shift) = ((1u64 << 32) / 3, 32);
        assert_eq!(guest_ns(1000, 1000, mult, shift), 0);
        assert_eq!(guest_ns(999, 1000, mult, shift), 0, "before tsc_base");
        let ns = guest_ns(1000 + 3_000_000_000, 1000, mult, shift);
        assert!((999_999_999..=1_000_000_000).contains(&ns), "{ns}");
        // No overflow with a huge tick count (128-bit product).
        assert_eq!(guest_ns(u64::MAX, 0, 1 << 32, 32), u64::MAX);
        // A shift above 63 is clamped.
        assert_eq!(guest_ns(1 << 63, 0, 1, 200), 1);
    }

    #[test]
    fn clocks_and_split() {
        assert_eq!(clock_of(0), Some(Clock::Realtime));
        assert_eq!(clock_of(1), Some(Clock::Monotonic));
        assert_eq!(clock_of(2), None, "process CPU time: system call");
        assert_eq!(clock_of(11), None, "TAI: system call");
        assert_eq!(clock_of(-6), None, "a CPU clock id: system call");
        assert_eq!(split_ns(3 * NSEC_PER_SEC + 7), (3, 7));
        let v = Vvar {
            tsc_base: 10,
            mult: 1,
            shift: 0,
            wall_epoch_ns: 1_000,
            flags: VVAR_VALID,
            ..Vvar::default()
        };
        assert_eq!(read_clock(&v, Clock::Monotonic, 15), 5);
        assert_eq!(read_clock(&v, Clock::Realtime, 15), 1_005);
    }
}
