//! The FS base of user code (its TLS pointer): read at every exit, loaded before every run
//! unless it is already the thread's.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::sys;

/// 1 when the host kernel lets user space read and write the FS base directly
/// (`AT_HWCAP2 & HWCAP2_FSGSBASE`): the hot path then avoids two `arch_prctl` calls.
pub(super) static FSGSBASE: AtomicU32 = AtomicU32::new(0);

/// This thread's FS base (the interrupted user code's: signal delivery does not change it).
pub(super) fn get_fs() -> Result<u64, u32> {
    if FSGSBASE.load(Relaxed) != 0 {
        let v: u64;
        // SAFETY: `rdfsbase` is enabled for user space (AT_HWCAP2); it only reads FS base.
        unsafe {
            core::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        return Ok(v);
    }
    sys::get_fs()
}

/// Sets this thread's FS base for the user code about to run. Addresses outside the lower
/// canonical half fail (`EPERM`, as `arch_prctl` would) instead of faulting in the stub.
pub(super) fn set_fs(v: u64) -> Result<(), u32> {
    if FSGSBASE.load(Relaxed) != 0 && v < 0x0000_8000_0000_0000 {
        // SAFETY: `wrfsbase` is enabled for user space (AT_HWCAP2) and `v` is canonical; it
        // changes only this thread's FS base, which no stub code of a user sandbox reads.
        unsafe {
            core::arch::asm!("wrfsbase {}", in(reg) v, options(nomem, nostack, preserves_flags))
        };
        return Ok(());
    }
    sys::set_fs(v)
}
