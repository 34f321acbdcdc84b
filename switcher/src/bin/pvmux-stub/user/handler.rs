//! The signal handler of a user sandbox: where each slot thread lives. A signal from user code
//! (a trapped system call, a fault, the slice timer) is an exit: the handler saves the user
//! state into the slot and hands it back, then serves the next request ([`super::request`]).

use core::sync::atomic::Ordering::Relaxed;

use pvmux_hypercalls::sandbox::user_crash;
use pvmux_hypercalls::user::handoff::UserTrap;
use pvmux_hypercalls::user::UserExit;
use pvmux_hypercalls::Vector;
use pvmux_switcher::exception::{classify, Classified, SandboxKind};

use super::cpu::{ucpu_on_stack, UserCpu};
use super::crash::{crash, Seen, NO_SLOT};
use super::fpu::save_fpu;
use super::fsbase::get_fs;
use super::patch::Interrupted;
use super::rdtsc;
use super::request::{serve, side};
use super::slot::{Futex, Slot};
use crate::sigctx::*;
use crate::state::is_stub_code;
use crate::sys;

/// The handler of every signal of a user sandbox (SA_SIGINFO | SA_ONSTACK, all signals
/// blocked while it runs; entered through `pvmux_stub_signal_user`, which clears AC).
///
/// # Safety
/// Called only by the kernel, with valid `info` and `uc` pointers, on the alternate stack.
pub(crate) unsafe extern "C" fn on_signal(sig: i32, info: *const u8, uc: *mut u8) {
    // The signal frame's 32 sigcontext words are copied in and written back before the
    // return (`rt_sigreturn` loads them): the frame lies in memory user code of this
    // sandbox's other threads can write, so no reference to it is formed.
    // SAFETY: the kernel passes a valid ucontext: 32 sigcontext words at offset 40, 8-aligned.
    let mcontext = unsafe { uc.add(UC_MCONTEXT) } as *mut u64;
    let mut words = [0u64; 32];
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: word `i` of the sigcontext (see above).
        *w = unsafe { mcontext.add(i).read_volatile() };
    }
    let g = &mut words;
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let si = unsafe { SigInfo::read(info) };
    let Some(c) = ucpu_on_stack() else {
        crash(
            user_crash::FOREIGN_STACK,
            NO_SLOT,
            Some(Seen::new(sig, si, g)),
        )
    };
    let slot_nr = c.slot.load(Relaxed);
    let slot = Slot::get(slot_nr);
    if c.started.load(Relaxed) == 0 {
        // The thread's own first signal, its breakpoint in `start::enter`: start serving.
        if sig != SIGTRAP || si.code != SI_KERNEL || !is_stub_code(g[RIP]) {
            crash(
                user_crash::NOT_STARTED,
                slot_nr,
                Some(Seen::new(sig, si, g)),
            );
        }
        c.started.store(1, Relaxed);
    } else {
        if is_stub_code(g[RIP]) {
            match super::patch::interrupted(c, sig, g) {
                // A slice-timer signal inside the patch entry: held back until it is done.
                Interrupted::Resume => return,
                // The entry's return was cut short: g is the user state it was resuming.
                Interrupted::Finished => {}
                // A fault in stub code (user code jumped into it, or corrupted its state).
                Interrupted::No => crash(
                    user_crash::IN_STUB_CODE,
                    slot_nr,
                    Some(Seen::new(sig, si, g)),
                ),
            }
        }
        // User code ran from `user_since` until this signal.
        let since = c.user_since.swap(0, Relaxed);
        if since != 0 {
            side(&slot).add_user_ticks(rdtsc().saturating_sub(since));
        }
        let Some(trap) = trap_for(c, sig, si, g) else {
            c.user_since.store(rdtsc(), Relaxed);
            return; // a stale slice-timer expiry: resume user code
        };
        record(c, slot, g, &trap);
        side(&slot).publish(&Futex, c.cur_seq.load(Relaxed), trap.reason);
    }
    serve(c, slot, g, uc);
    for (i, w) in words.iter().enumerate() {
        // SAFETY: as for the reads above.
        unsafe { mcontext.add(i).write_volatile(*w) };
    }
}

/// Maps a signal from user code to an exit (the classification is the one the kernel
/// sandbox uses, [`classify`]); `None` for a stale slice-timer expiry (the timer was re-armed
/// after it fired while the thread was in its handler).
fn trap_for(c: &UserCpu, sig: i32, si: SigInfo, g: &[u64; 32]) -> Option<UserTrap> {
    Some(match classify(&si.host_signal(sig, g), SandboxKind::User) {
        Classified::Syscall { nr } => UserTrap {
            reason: UserExit::Syscall,
            vector: Vector::Syscall as u32,
            error_code: nr,
            addr: 0,
        },
        Classified::Exception {
            vector,
            error_code,
            fault_addr,
        } => UserTrap {
            reason: UserExit::Exception,
            vector: vector as u32,
            error_code,
            addr: fault_addr,
        },
        Classified::Other => {
            if si.code == SI_TIMER {
                if let Ok(t) = sys::timer_gettime(c.timer_id.load(Relaxed)) {
                    if t.value.sec != 0 || t.value.nsec != 0 {
                        return None;
                    }
                }
            }
            UserTrap {
                reason: UserExit::Interrupt,
                vector: Vector::Event as u32,
                error_code: 0,
                addr: 0,
            }
        }
    })
}

/// Saves the interrupted user state into the slot: registers (for a system call `rax` is its
/// number), FS base, FPU image (copied from the frame), the exit.
pub(super) fn record(c: &UserCpu, slot: Slot, g: &[u64; 32], trap: &UserTrap) {
    let saved = save_fpu(slot, g);
    record_regs(c, slot, g, trap, saved, false);
}

/// [`record`] but for the FPU image, which the caller wrote or will write (`fp_follows`):
/// `fp_len` bytes of it.
pub(super) fn record_regs(
    c: &UserCpu,
    slot: Slot,
    g: &[u64; 32],
    trap: &UserTrap,
    fp_len: u32,
    fp_follows: bool,
) {
    let mut regs = trap_frame(g, u64::from(trap.vector), trap.error_code, trap.addr);
    if trap.reason == UserExit::Syscall {
        regs.rax = trap.error_code;
    }
    let fs = match get_fs() {
        Ok(v) => {
            c.last_fs.store(v, Relaxed);
            c.fs_known.store(1, Relaxed);
            v
        }
        Err(_) => {
            c.fs_known.store(0, Relaxed);
            0
        }
    };
    side(&slot).record(trap, &regs, fs, fp_len, fp_follows);
}
