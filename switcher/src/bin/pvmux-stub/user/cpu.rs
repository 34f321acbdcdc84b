//! The stub's per-slot state ([`UserCpu`], at the start of each slot's private area) and how
//! a handler finds it: from its stack pointer, since user code owns FS.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed};

use pvmux_hypercalls::sandbox::user_crash;
use pvmux_hypercalls::user::USER_CTX_BASE;

use super::crash::{crash, NO_SLOT};
use crate::state::{AREA_SIZE, G};

/// Where the per-slot areas start (above the context region, below the stub).
pub(super) const USER_AREAS_BASE: u64 = USER_CTX_BASE + 0x4000_0000;

/// Per-slot stub state at the start of the slot's area (only its own thread uses it).
#[repr(C)]
pub(super) struct UserCpu {
    /// Slot index.
    pub(super) slot: AtomicU32,
    /// Host thread id.
    pub(super) tid: AtomicU32,
    /// Kernel id of the slice timer.
    pub(super) timer_id: AtomicI32,
    /// 1 once the thread is in its handler loop.
    pub(super) started: AtomicU32,
    /// `run_seq` of the request being served.
    pub(super) cur_seq: AtomicU32,
    /// 1 while `last_fs` is this thread's FS base.
    pub(super) fs_known: AtomicU32,
    /// The FS base last set or observed.
    pub(super) last_fs: AtomicU64,
    /// TSC when user code was last entered (0: not running it), for `user_stat::USER_TICKS`.
    pub(super) user_since: AtomicU64,
    /// The patch entry's save area (`super::patch`): the user state, as the words of a
    /// signal frame's `struct sigcontext` (`crate::sigctx` indices).
    pub(super) tramp: [AtomicU64; 32],
    /// Top of the patch entry's stack (in this area), read by the entry through GS.
    pub(super) tramp_stack: AtomicU64,
    /// The patch entry's XSAVE buffer (in this area, 64-aligned).
    pub(super) tramp_fp: AtomicU64,
    /// 1 while the patch entry runs stub code for this thread (after its prologue).
    pub(super) in_tramp: AtomicU32,
    /// 1 if a slice-timer signal arrived while the patch entry ran: reported as an
    /// interrupt before user code runs again.
    pub(super) tick_pending: AtomicU32,
    /// 1 when the patch entry's buffer holds a whole FPU image to load on the way back (the
    /// kernel sent one, or reset the state); 0: the entry keeps the FPU state in the
    /// registers and its buffer holds only the user's `MXCSR` and `xmm0`-`xmm15`
    /// (`super::patch`).
    pub(super) tramp_full: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<UserCpu>() <= 4096);

/// Where the patch entry's XSAVE buffer starts in an area (after the `UserCpu`; the slot's
/// start stack below `AREA_ALTSTACK` is only used before the thread's first signal).
pub(super) const AREA_TRAMP_FP: u64 = 4096;
/// Bytes reserved for that buffer.
pub(super) const TRAMP_FP_SIZE: u64 = 16 * 1024;
/// Top of the patch entry's stack in an area (it grows down to the buffer's end).
pub(super) const AREA_TRAMP_STACK_TOP: u64 = crate::state::AREA_ALTSTACK;
const _: () = assert!(AREA_TRAMP_FP + TRAMP_FP_SIZE + 12 * 1024 <= AREA_TRAMP_STACK_TOP);

/// Slot `i`'s state.
pub(super) fn ucpu(i: u32) -> &'static UserCpu {
    // SAFETY: start-up maps one zeroed area per slot at USER_AREAS_BASE (all-zero is a valid
    // UserCpu: every field is atomic) and never unmaps them; callers pass i < nr_vcpus.
    unsafe { &*((USER_AREAS_BASE + u64::from(i) * AREA_SIZE) as *const UserCpu) }
}

/// The current thread's `UserCpu`, from the stack pointer (handlers run on the alternate
/// stack inside the slot's area). Anything else is a stub crash.
pub(super) fn ucpu_from_stack() -> &'static UserCpu {
    ucpu_on_stack().unwrap_or_else(|| crash(user_crash::FOREIGN_STACK, NO_SLOT, None))
}

/// [`ucpu_from_stack`], or `None` when the stack pointer is in no slot's area.
pub(super) fn ucpu_on_stack() -> Option<&'static UserCpu> {
    let sp: u64;
    // SAFETY: reads rsp.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nostack, nomem, preserves_flags))
    };
    let area = sp & !(AREA_SIZE - 1);
    let n = u64::from(G.nr_vcpus.load(Relaxed));
    if area < USER_AREAS_BASE || area >= USER_AREAS_BASE + n * AREA_SIZE {
        return None;
    }
    Some(ucpu(((area - USER_AREAS_BASE) / AREA_SIZE) as u32))
}
