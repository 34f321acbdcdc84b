//! The XSAVE features the stub saves and restores for user code, shared by the user stub's
//! patched-syscall entry (`user::patch`) and the trusted in-process mode (`inproc`): the
//! host's signal-frame features, so that an image has the size and format of the host's own
//! signal frames.

/// XCR0 bits of the dynamically enabled features: AMX `XTILEDATA`, as Linux's
/// `XFEATURE_MASK_USER_DYNAMIC` (its signal frames hold `XTILECFG`, which is small, but not
/// the tile data, which Linux enables per process on request).
const XFEATURES_DYNAMIC: u64 = 1 << 18;

/// `(mask, size)`: the features enabled in XCR0 but the dynamically enabled ones, and the
/// bytes of their standard-format image (the end of the highest component). `None` when the
/// OS did not enable XSAVE (`OSXSAVE`).
pub(crate) fn signal_frame_features() -> Option<(u64, u32)> {
    const OSXSAVE: u32 = 1 << 27;
    if core::arch::x86_64::__cpuid(1).ecx & OSXSAVE == 0 {
        return None;
    }
    // SAFETY: xgetbv(0) is allowed when the OS set OSXSAVE (checked above).
    let xcr0 = unsafe { core::arch::x86_64::_xgetbv(0) };
    let mask = xcr0 & !XFEATURES_DYNAMIC;
    let mut size = 576u32;
    for i in 2..63 {
        if mask & (1 << i) != 0 {
            let c = core::arch::x86_64::__cpuid_count(0xd, i);
            size = size.max(c.ebx + c.eax);
        }
    }
    Some((mask, size))
}
