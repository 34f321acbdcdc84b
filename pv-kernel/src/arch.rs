//! The few raw instructions the kernel needs outside the trap and switch paths.

/// Stops this vCPU with an invalid opcode: the stub records a crash (used only when nothing
/// else, not even a hypercall, is possible).
pub(crate) fn die() -> ! {
    loop {
        // SAFETY: `ud2` only raises #UD; it touches no memory or registers.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}

/// Reads the TSC as the stub's clock does: no fence (guest time, `crate::time::now_ns`).
#[inline(always)]
pub(crate) fn tsc() -> u64 {
    // SAFETY: `rdtsc` is allowed in the sandbox (ABI §6) and has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
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

/// The host CPU this vCPU's thread runs on, plus 1: `rdtscp`'s `TSC_AUX`, which Linux sets to
/// `node << 12 | cpu`. 0 if the CPU has no `rdtscp` (CPUID.8000_0001h:EDX bit 27, asked once).
/// A hint for the user hand-off's spinning (`pvmux_hypercalls::doorbell::Waiter::cpu`).
pub(crate) fn host_cpu() -> u32 {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    /// 0: not asked yet, 1: `rdtscp` works, 2: it does not.
    static RDTSCP: AtomicU8 = AtomicU8::new(0);
    let known = match RDTSCP.load(Relaxed) {
        0 => {
            let ext = core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001;
            let has = ext && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0;
            let v = if has { 1 } else { 2 };
            RDTSCP.store(v, Relaxed);
            v
        }
        v => v,
    };
    if known != 1 {
        return 0;
    }
    let mut aux = 0u32;
    // SAFETY: the CPU implements `rdtscp` (checked above); it writes only `aux`.
    unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    (aux & 0xfff) + 1
}

/// True if the CPU implements `rdrand` (CPUID.1:ECX bit 30).
pub(crate) fn has_rdrand() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0
}

/// True if the CPU implements `rdseed` (CPUID.(7,0):EBX bit 18).
pub(crate) fn has_rdseed() -> bool {
    core::arch::x86_64::__cpuid(0).eax >= 7
        && core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 18) != 0
}

/// One `rdrand` value (the CPU's DRBG), if it delivered one within a few tries. Call only
/// when [`has_rdrand`].
pub(crate) fn rdrand() -> Option<u64> {
    for _ in 0..10 {
        let v: u64;
        let ok: u8;
        // SAFETY: the caller checked CPUID for `rdrand`; it writes the named registers and
        // the flags, touches no memory. It is allowed in the sandbox (not a system call).
        unsafe {
            core::arch::asm!(
                "rdrand {v}",
                "setc {ok}",
                v = out(reg) v,
                ok = out(reg_byte) ok,
                options(nomem, nostack),
            );
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

/// One `rdseed` value (the CPU's entropy source, for seeding), if it delivered one within a
/// few tries (it may run dry). Call only when [`has_rdseed`].
pub(crate) fn rdseed() -> Option<u64> {
    for _ in 0..100 {
        let v: u64;
        let ok: u8;
        // SAFETY: the caller checked CPUID for `rdseed`; as `rdrand` above.
        unsafe {
            core::arch::asm!(
                "rdseed {v}",
                "setc {ok}",
                v = out(reg) v,
                ok = out(reg_byte) ok,
                options(nomem, nostack),
            );
        }
        if ok != 0 {
            return Some(v);
        }
        core::hint::spin_loop();
    }
    None
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
