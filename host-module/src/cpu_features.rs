//! What the host tells every sandbox about the CPU in its [`SandboxHeader`]
//! (`xsave_mask`, `xsave_size`, `cpu_flags`), asked once per pvmux process.
//!
//! In a VM, `cpuid` traps to the hypervisor: ~4 µs a call on a nested AMD EPYC host, where a
//! user sandbox used to ask eight times at every start (the XSAVE components of its signal
//! frames and `rdtscp`), which is ~30 µs of CPU per guest `fork`. The host asks once and
//! every sandbox reads the answer from its header.
//!
//! [`SandboxHeader`]: pvmux_hypercalls::SandboxHeader

use std::sync::OnceLock;

use pvmux_hypercalls::sandbox::cpu_flags;

/// XCR0 bits of the dynamically enabled features: AMX `XTILEDATA`, as Linux's
/// `XFEATURE_MASK_USER_DYNAMIC` (its signal frames hold `XTILECFG`, which is small, but not
/// the tile data, which Linux enables per process on request).
const XFEATURES_DYNAMIC: u64 = 1 << 18;

/// The legacy area and the XSAVE header: the smallest standard-format image.
const XSAVE_MIN: u32 = 576;

/// The CPU facts of a [`pvmux_hypercalls::SandboxHeader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuFeatures {
    /// XCR0 without the dynamically enabled features; 0 when the OS did not enable XSAVE.
    pub(crate) xsave_mask: u64,
    /// Bytes of the standard-format image of `xsave_mask`'s components; 0 with the mask.
    pub(crate) xsave_size: u32,
    /// [`cpu_flags`] bits.
    pub(crate) flags: u32,
}

/// This CPU's facts, asked at the first call.
pub(crate) fn get() -> CpuFeatures {
    static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
    *FEATURES.get_or_init(ask)
}

fn ask() -> CpuFeatures {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    const OSXSAVE: u32 = 1 << 27;
    const RDTSCP: u32 = 1 << 27;
    let mut f = CpuFeatures::default();
    if __cpuid(1).ecx & OSXSAVE != 0 {
        // SAFETY: `xgetbv(0)` is defined when the OS set CPUID.1:ECX.OSXSAVE (checked
        // above); it reads XCR0 and touches no memory.
        let xcr0 = unsafe { xgetbv0() };
        let mask = xcr0 & !XFEATURES_DYNAMIC;
        f.xsave_mask = mask;
        f.xsave_size = (2..63)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| {
                let c = __cpuid_count(0xd, i);
                c.ebx + c.eax
            })
            .fold(XSAVE_MIN, u32::max);
    }
    if __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).edx & RDTSCP != 0 {
        f.flags |= cpu_flags::RDTSCP;
    }
    f
}

/// XCR0.
///
/// # Safety
///
/// The OS must have enabled XSAVE (CPUID.1:ECX.OSXSAVE), else `xgetbv` raises #UD.
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked OSXSAVE.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The facts match what this host's kernel says about its own signal frames: the XSAVE
    /// image fits in `AT_MINSIGSTKSZ` (which adds the frame around it), and `rdtscp` is
    /// there when /proc/cpuinfo lists it.
    #[test]
    fn the_cpu_facts_agree_with_the_host_kernel() {
        let f = get();
        assert_eq!(f, get(), "asked once, the same every time");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .expect("a flags line");
        let has = |w: &str| flags.split_whitespace().any(|x| x == w);
        assert_eq!(f.flags & cpu_flags::RDTSCP != 0, has("rdtscp"));
        if has("xsave") {
            assert!(
                f.xsave_mask & 0b11 == 0b11,
                "x87 and SSE state: {:#x}",
                f.xsave_mask
            );
            assert_eq!(f.xsave_mask & (1 << 2) != 0, has("avx"));
            assert_eq!(f.xsave_mask & XFEATURES_DYNAMIC, 0);
            assert!(f.xsave_size >= XSAVE_MIN && f.xsave_size.is_multiple_of(8));
            // SAFETY: getauxval only reads the process's auxiliary vector.
            let min_sigstksz = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) };
            if min_sigstksz != 0 {
                assert!(
                    u64::from(f.xsave_size) < min_sigstksz,
                    "{f:?} vs {min_sigstksz}"
                );
            }
        } else {
            assert_eq!((f.xsave_mask, f.xsave_size), (0, 0));
        }
    }
}
