//! The trusted in-process mode (`pvmux run --user-isolation none`; docs/ARCHITECTURE.md,
//! "Trusted in-process mode"): a space whose user code runs in the kernel sandbox itself, on
//! the vCPU thread of the task that runs it, through the stub's `inproc_ops` and
//! `inproc_run` entries (`pvmux_hypercalls::user::inproc`) instead of a user sandbox.
//!
//! Which spaces: init's, and the space each `execve` of an in-process space's only process
//! loads (a fresh space replacing it); every other space — `fork` children, exec sessions —
//! has a user sandbox as in the default mode. The kernel sandbox has one user window that
//! all its vCPU threads share, so it holds the mappings of one space at a time: its *owner*
//! ([`OWNER`]). A space that runs and is not the owner first wipes the window (a stub op) and
//! becomes it; pages it had mapped before fault again and are sent again (`Mm::fault`), as
//! after a user sandbox's eviction. Only an `execve` (the new space replaces the old one,
//! whose threads are told to exit) changes the owner in practice.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use pvmux_hypercalls::user::inproc::{fp_flags, InprocRun, INPROC_WIPE};
use pvmux_hypercalls::user::patch::SYSCALL_FROM_ENTRY;
use pvmux_hypercalls::user::{UserExit, UserOp};

use super::handoff::{Exit, UserState};
use super::Space;
use crate::irq::IrqGuard;
use crate::linux::pool;

/// The space whose mappings the kernel sandbox's user window holds (its [`Space::id`];
/// 0: none).
static OWNER: AtomicU64 = AtomicU64::new(0);

/// Ids of spaces.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether the tenant runs in the trusted in-process mode (0 unknown, 1 no, 2 yes).
static MODE: AtomicU8 = AtomicU8::new(0);

/// Whether the tenant runs in the trusted in-process mode (the boot arguments'
/// `USER_ISOLATION_NONE`).
pub(crate) fn trusted_mode() -> bool {
    match MODE.load(Ordering::Relaxed) {
        0 => {
            let on = crate::boot::args().user_isolation_none();
            MODE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        m => m == 2,
    }
}

/// A fresh id for a space.
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The stub's `inproc_ops` on `ops`; `Err` if it refused them.
fn apply(ops: &[UserOp]) -> Result<(), ()> {
    for chunk in ops.chunks(pvmux_hypercalls::user::inproc::INPROC_OPS_MAX as usize) {
        if crate::stub::inproc_ops(chunk) != 0 {
            return Err(());
        }
    }
    Ok(())
}

impl Space {
    /// Puts every queued operation in force in the kernel sandbox's user window (taking the
    /// window first if another space owns it). Under the memory map's lock: batches are
    /// applied in the order they are taken. `Err` if the stub refused an operation.
    pub(super) fn sync_inproc(&self) -> Result<(), ()> {
        let mut freed = alloc::vec::Vec::new();
        let mut result = Ok(());
        {
            let mut mm = self.mm.lock();
            if OWNER.load(Ordering::Acquire) != self.id {
                let wipe = UserOp {
                    kind: INPROC_WIPE,
                    ..UserOp::default()
                };
                result = apply(&[wipe]);
                OWNER.store(self.id, Ordering::Release);
            }
            loop {
                let batch = mm.take_batch();
                if result.is_ok() {
                    result = apply(&batch.ops);
                }
                freed.extend(batch.freed);
                if !batch.more {
                    break;
                }
            }
        }
        // The operations that unmapped them are in force (or the window was wiped).
        pool::put_all(freed);
        result
    }

    /// Runs user code in the kernel sandbox on this vCPU until it comes back.
    pub(super) fn run_inproc(&self, st: &mut UserState, fp_init: bool) -> Exit {
        let _irq = IrqGuard::new();
        if self.sync_inproc().is_err() {
            return Exit::Dead;
        }
        let cpu = crate::stub::vcpu_id();
        // The FPU state: still in this vCPU's registers (kept at the last system call), or
        // an image (parked at a thread switch, or written by an exit).
        let mut fp_flags = u32::from(fp_init);
        if st.fp_kept != 0 {
            if crate::kept_fp::keeps(cpu, st.fp_kept) {
                fp_flags |= fp_flags::LIVE;
            } else {
                st.take_kept_fp();
            }
        }
        if fp_flags & fp_flags::LIVE == 0 {
            crate::kept_fp::forget(cpu);
        }
        // A system-call exit may keep the state once the thread has room to park it.
        if !st.park_ready {
            crate::sched::current().fp_park.lock().prepare();
            st.park_ready = true;
        }
        fp_flags |= fp_flags::MAY_KEEP;
        let mut run = InprocRun {
            regs: st.regs,
            fs_base: st.fs_base,
            fp_flags,
            // The stub keeps the slice: it arms a new one when the last has ended.
            slice_ns: crate::linux::task::SLICE_NS,
            ..InprocRun::default()
        };
        st.fp_changed();
        let r = crate::stub::inproc_run(&mut run, &mut st.fp);
        st.fp_kept = 0;
        if r != 0 {
            crate::kept_fp::forget(cpu);
            return Exit::Dead;
        }
        if run.fp_flags & fp_flags::KEPT != 0 {
            st.fp_kept = crate::kept_fp::kept_now(cpu);
        }
        st.regs = run.regs;
        st.fs_base = run.fs_base;
        st.user_ns += crate::time::ticks_to_ns(run.user_ticks);
        match UserExit::from_raw(run.exit) {
            // Trapped (`SIGSYS`), unless it came through the stub's syscall entry, which
            // the space's patched sites jump to (`linux/patch.rs`).
            Some(UserExit::Syscall) => Exit::Syscall {
                trapped: run.regs.fault_addr != SYSCALL_FROM_ENTRY,
            },
            Some(UserExit::Exception) => Exit::Exception {
                vector: run.regs.vector as u32,
                error_code: run.regs.error_code,
                addr: run.regs.fault_addr,
            },
            Some(UserExit::Interrupt) => Exit::Interrupt,
            _ => Exit::Dead,
        }
    }

    /// A snapshot resumed in a new kernel sandbox (`Space::revive`): its user window holds
    /// nothing, so the space owns it no longer and maps every page again at its first fault;
    /// its patch table names the new sandbox's syscall entry.
    pub(super) fn resumed_inproc(&self) {
        let _ = OWNER.compare_exchange(self.id, 0, Ordering::AcqRel, Ordering::Acquire);
        let freed = {
            let mut mm = self.mm.lock();
            crate::linux::patch::sandbox_moved(&mut mm);
            mm.forget_sandbox()
        };
        pool::put_all(freed);
    }

    /// Gives the kernel sandbox's user window up if this space owns it (the space is being
    /// destroyed: its frames are about to be released).
    pub(super) fn leave_window(&self) {
        if OWNER
            .compare_exchange(self.id, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let wipe = UserOp {
                kind: INPROC_WIPE,
                ..UserOp::default()
            };
            let _irq = IrqGuard::new();
            let _ = apply(&[wipe]);
        }
    }
}
