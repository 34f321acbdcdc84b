//! The few raw instructions the kernel needs outside the trap and switch paths.

/// Stops this vCPU with an invalid opcode: the stub records a crash (used only when nothing
/// else, not even a hypercall, is possible).
pub(crate) fn die() -> ! {
    loop {
        // SAFETY: `ud2` only raises #UD; it touches no memory or registers.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}

/// The precompiled `alloc` library was built with unwinding and references this symbol from
/// its landing pads. This kernel is built with `panic = "abort"`, so no unwind ever starts
/// and the landing pads are unreachable; a call would be a bug, so it traps.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn _Unwind_Resume() -> ! {
    die()
}

/// Personality routine the precompiled `alloc` library's unwind tables name. Never called:
/// no unwind ever starts in this `panic = "abort"` kernel.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn rust_eh_personality() -> ! {
    die()
}
