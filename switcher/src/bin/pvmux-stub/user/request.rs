//! Serving requests: the user half of the hand-off (`pvmux_hypercalls::user::handoff`) with
//! the stub's system calls behind it — waiting for the slot's next grant ([`super::idle`]),
//! `mmap`/`munmap`/`mprotect` of guest memory for the operations, and loading a `RUN`
//! request's state into the signal frame the handler returns through.

use core::sync::atomic::Ordering::Relaxed;

use pvmux_hypercalls::frame::RFLAGS_USER_MASK;
use pvmux_hypercalls::sandbox::GUEST_MEM_FD;
use pvmux_hypercalls::user::handoff::{
    bump, first_wait_spin, OpsOrder, RunLoad, Served, SlotMem, UserPlatform, UserSide,
};
use pvmux_hypercalls::user::{op, user_stat, UserOp, USER_BASE, USER_END};
use pvmux_hypercalls::window;
use pvmux_switcher::seccomp::USER_LEN_MAX;

use super::cpu::UserCpu;
use super::fpu::{init_fpu, load_fpu};
use super::fsbase::set_fs;
use super::slot::{Futex, Slot};
use crate::sigctx::*;
use crate::start::{MAP_FIXED, MAP_POPULATE, MAP_SHARED};
use crate::state::G;
use crate::sys;

/// The order in which this process has applied its space's operation batches
/// (`UserSlot::ops_seq`), shared by the slot threads.
static ORDER: OpsOrder = OpsOrder::new();

/// The user half of `slot` in this sandbox.
pub(super) fn side(slot: &Slot) -> UserSide<'_, Slot> {
    UserSide::new(slot, G.mem_size.load(Relaxed))
}

/// A spin budget of the hand-off (`ns`: [`first_wait_spin`]) in TSC ticks of the guest clock.
fn spin_ticks(ns: u64) -> u64 {
    let (mult, shift) = (G.clock_mult.load(Relaxed), G.clock_shift.load(Relaxed));
    ((u128::from(ns) << shift) / u128::from(mult.max(1))).min(u128::from(u32::MAX)) as u64
}

/// Serves requests until one runs user code (then returns, so the handler's `rt_sigreturn`
/// enters it, with the request's `run_seq` in `c.cur_seq`): only requests the guest kernel
/// granted, each once (`c.cur_seq` is the last one served). Exits the sandbox once it is
/// marked dead.
pub(super) fn serve(c: &UserCpu, slot: Slot, g: &mut [u64; 32], uc: *mut u8) {
    let mut stub = Stub {
        c,
        slot,
        g,
        uc,
        spin_from: None,
    };
    let last = c.cur_seq.load(Relaxed);
    match side(&slot).serve(&Futex, &ORDER, &mut stub, last) {
        Served::Run(seq) => {
            c.cur_seq.store(seq, Relaxed);
            let now = super::rdtsc();
            if let Some(from) = stub.spin_from {
                bump(
                    slot.counter(user_stat::SPIN_TICKS),
                    now.saturating_sub(from),
                );
            }
            c.user_since.store(now, Relaxed);
        }
        Served::Dead => sys::exit_group(0),
    }
}

/// The stub's system calls for one request, and the signal frame to load a run into.
struct Stub<'a> {
    c: &'a UserCpu,
    slot: Slot,
    g: &'a mut [u64; 32],
    uc: *mut u8,
    /// When the wait for the last grant began, if the thread got it without sleeping.
    spin_from: Option<u64>,
}

/// `ENOMEM`: the host refused a mapping (`RLIMIT_AS`, or `vm.max_map_count`).
const ENOMEM: u32 = 12;

/// Applies `len` bytes (at most [`USER_LEN_MAX`]) of operation `o` from byte `done` on.
fn apply_part(o: &UserOp, done: u64, len: u64) -> Result<(), u32> {
    let addr = o.addr + done;
    // SAFETY: the range lies in the user window (checked by `check_op`), where the stub
    // keeps nothing (its image, areas and context region are above USER_CTX_BASE, checked
    // at start-up).
    unsafe {
        match o.kind {
            op::MAP | op::MAP_POPULATE => {
                let populate = if o.kind == op::MAP_POPULATE {
                    MAP_POPULATE
                } else {
                    0
                };
                let (fd, offset) = match window::slot_of(o.offset) {
                    Some((slot, off)) => (super::windows::fd(slot)?, off + done),
                    None => (GUEST_MEM_FD, o.offset + done),
                };
                sys::mmap(
                    addr,
                    len,
                    o.prot,
                    MAP_SHARED | MAP_FIXED | populate,
                    fd,
                    offset,
                )
                .map(|_| ())
            }
            op::UNMAP => sys::munmap(addr, len),
            _ => sys::mprotect(addr, len, o.prot),
        }
    }
}

/// Unmaps the whole user window: the host's answer to `ENOMEM` (the address-space limit or
/// the VMA budget is reached), as the kernel sandbox evicts its shadow. Every page the guest
/// kernel had mapped faults again and the kernel sends its mapping again (`Mm::fault`), so
/// only speed is lost; rights are only ever taken away. A program that filled its address
/// space through stub code loses those mappings too.
fn evict_user_window() {
    let mut a = USER_BASE;
    while a < USER_END {
        let len = (USER_END - a).min(USER_LEN_MAX);
        // SAFETY: the user window holds nothing of the stub's (see `apply_part`). Whole VMAs
        // go (no VMA crosses the window's ends), so this never needs a new one.
        let _ = unsafe { sys::munmap(a, len) };
        a += len;
    }
}

impl UserPlatform for Stub<'_> {
    /// Waits in [`super::idle`]'s register-only loop for a grant other than `last`.
    fn wait_grant(&mut self, last: u32) -> Option<u32> {
        let slot = self.slot;
        let waited = super::idle::wait_grant(
            slot.grant_word(),
            last,
            slot.waiting_word(),
            spin_ticks(first_wait_spin(last)),
            super::slot::ctx_dead_word(),
            // Without `rdtscp` the loop cannot tell where it runs: it spins as before.
            if crate::xsave::has_rdtscp() {
                slot.cpu_words()
            } else {
                core::ptr::null_mut()
            },
        );
        if waited.slept {
            bump(slot.counter(user_stat::SLEEPS), 1);
        }
        self.spin_from = waited.spin_from;
        Some(waited.grant)
    }

    /// Applies one checked operation (ranges longer than [`USER_LEN_MAX`], which the filter
    /// refuses, are split). On `ENOMEM` the user window is evicted and the part retried: a
    /// `MAP` is then made again; an `UNMAP` or `PROTECT` has nothing left to act on (the
    /// pages refault with the rights the kernel sends).
    fn apply(&mut self, o: &UserOp) -> Result<(), u32> {
        let mut done = 0;
        while done < o.len {
            let len = (o.len - done).min(USER_LEN_MAX);
            match apply_part(o, done, len) {
                Err(ENOMEM) => {
                    evict_user_window();
                    if o.kind == op::MAP || o.kind == op::MAP_POPULATE {
                        apply_part(o, done, len)?;
                    }
                }
                r => r?,
            }
            done += len;
        }
        Ok(())
    }

    /// Loads the requested user state into the signal context (registers, FS base, FPU
    /// state) and arms the slice timer. `Err(errno)` if the FS base cannot be loaded.
    fn load(&mut self, run: &RunLoad) -> Result<(), u32> {
        let (c, g) = (self.c, &mut *self.g);
        let fs = run.fs_base;
        if c.fs_known.load(Relaxed) == 0 || c.last_fs.load(Relaxed) != fs {
            c.fs_known.store(0, Relaxed);
            set_fs(fs)?;
            c.last_fs.store(fs, Relaxed);
            c.fs_known.store(1, Relaxed);
        }
        // From the patch entry (no ucontext) the "frame" is the entry's buffer, loaded whole
        // on the way back only when the state changes here.
        let entry = self.uc.is_null();
        if run.fp_len != 0 {
            if entry {
                super::patch::prepare_full_load(c, run.fp_len);
            }
            load_fpu(self.slot, g, run.fp_len);
        } else if run.fp_init {
            init_fpu(g);
        }
        if entry && (run.fp_len != 0 || run.fp_init) {
            c.tramp_full.store(1, Relaxed);
        }
        let regs = &run.regs;
        g[RAX] = regs.rax;
        g[RBX] = regs.rbx;
        g[RCX] = regs.rcx;
        g[RDX] = regs.rdx;
        g[RSI] = regs.rsi;
        g[RDI] = regs.rdi;
        g[RBP] = regs.rbp;
        g[R8] = regs.r8;
        g[R9] = regs.r9;
        g[R10] = regs.r10;
        g[R11] = regs.r11;
        g[R12] = regs.r12;
        g[R13] = regs.r13;
        g[R14] = regs.r14;
        g[R15] = regs.r15;
        g[RIP] = regs.rip;
        g[RSP] = regs.rsp;
        g[EFLAGS] = (g[EFLAGS] & !RFLAGS_USER_MASK) | (regs.rflags & RFLAGS_USER_MASK);
        if !self.uc.is_null() {
            // SAFETY: the ucontext's signal mask (8 bytes at 296): user code runs with
            // nothing blocked, whatever the frame says. (Null for the patch entry, which
            // runs with the program's empty mask.)
            unsafe { (self.uc.add(UC_SIGMASK) as *mut u64).write(0) };
        }
        let slice = run.slice_ns;
        if slice != 0 {
            let spec = sys::Itimerspec {
                value: sys::Timespec {
                    sec: (slice / 1_000_000_000).min(i64::MAX as u64) as i64,
                    nsec: (slice % 1_000_000_000) as i64,
                },
                ..Default::default()
            };
            let _ = sys::timer_settime(c.timer_id.load(Relaxed), 0, &spec);
        }
        Ok(())
    }
}
