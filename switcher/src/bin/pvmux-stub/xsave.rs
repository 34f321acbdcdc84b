//! The CPU facts the stub needs, from the host: the XSAVE features the stub saves and
//! restores for user code, shared by the user stub's patched-syscall entry (`user::patch`) and
//! the trusted in-process mode (`inproc`) — the host's signal-frame features, so that an image
//! has the size and format of the host's own signal frames — and whether `rdtscp` works.
//!
//! The host asks CPUID once per process and writes the answers into the sandbox header
//! (`xsave_mask`, `xsave_size`, `cpu_flags`); [`load`] copies them at start-up, before any
//! guest code runs (a kernel sandbox's guest can write its header page). The stub never asks
//! CPUID itself: in a VM every `cpuid` traps to the hypervisor (~4 µs on a nested EPYC).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use pvmux_hypercalls::sandbox::cpu_flags;

static MASK: AtomicU64 = AtomicU64::new(0);
static SIZE: AtomicU32 = AtomicU32::new(0);
static FLAGS: AtomicU32 = AtomicU32::new(0);

/// Copies the header's CPU facts (start-up, after the header is mapped and before any guest
/// code runs).
pub(crate) fn load() {
    MASK.store(crate::state::header_read!(xsave_mask), Relaxed);
    SIZE.store(crate::state::header_read!(xsave_size), Relaxed);
    FLAGS.store(crate::state::header_read!(cpu_flags), Relaxed);
}

/// `(mask, size)`: the features enabled in XCR0 but the dynamically enabled ones, and the
/// bytes of their standard-format image (the end of the highest component). `None` when the
/// OS did not enable XSAVE, or the host's answer is not a plausible image (callers check
/// that it fits their buffers).
pub(crate) fn signal_frame_features() -> Option<(u64, u32)> {
    let (mask, size) = (MASK.load(Relaxed), SIZE.load(Relaxed));
    // x87 and SSE state are always there with XSAVE; an image holds at least the legacy
    // area and the XSAVE header.
    (mask & 0b11 == 0b11 && size >= 576).then_some((mask, size))
}

/// Whether the CPU implements `rdtscp` (CPUID.8000_0001h:EDX bit 27, asked by the host).
pub(crate) fn has_rdtscp() -> bool {
    FLAGS.load(Relaxed) & cpu_flags::RDTSCP != 0
}
