//! The few raw instructions the kernel needs outside the trap and switch paths.

/// Stops this vCPU with an invalid opcode: the stub records a crash (used only when nothing
/// else, not even a hypercall, is possible).
pub(crate) fn die() -> ! {
    loop {
        // SAFETY: `ud2` only raises #UD; it touches no memory or registers.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}

/// Reads the TSC, ordered against surrounding instructions (`lfence` on both sides), without a
/// stub call. Also a compiler barrier (no `nomem`), so timed memory accesses stay inside.
#[inline(always)]
pub(crate) fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` is allowed in the sandbox (ABI §6); `lfence` only orders execution.
    // Neither touches memory or the stack.
    unsafe {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            "lfence",
            out("eax") lo,
            out("edx") hi,
            options(nostack, preserves_flags)
        )
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The precompiled `alloc` library was built with unwinding and references this symbol from
/// its landing pads. This kernel is built with `panic = "abort"`, so no unwind ever starts
/// and the landing pads are unreachable; a call would be a bug, so it traps.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub(crate) extern "C" fn _Unwind_Resume() -> ! {
    die()
}

/// Personality routine the precompiled `alloc` library's unwind tables name. Never called:
/// no unwind ever starts in this `panic = "abort"` kernel.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub(crate) extern "C" fn rust_eh_personality() -> ! {
    die()
}
