//! POSIX signals: per-process actions, per-thread masks and pending queues, delivery on the
//! way back to user code (an x86-64 Linux `rt_sigframe` on the user stack), `rt_sigreturn`,
//! and the signal system calls.
//!
//! The pure parts, unit-tested on the host, are split by what they describe:
//! * [`set`] signal numbers, signal sets and `rt_sigprocmask`'s arithmetic,
//! * [`info`] a signal's information and its `siginfo_t` encoding,
//! * [`queue`] a thread's pending signals and the order they are taken in,
//! * [`action`] `struct sigaction`, default actions and what delivery does,
//! * [`altstack`] the alternate signal stack (`sigaltstack`),
//! * [`frame`] the signal frame a handler finds on its stack, [`fpframe`] the FPU state in
//!   it.
//!
//! Like Linux, the kernel keeps nothing per signal frame: everything `rt_sigreturn` needs
//! (registers, mask, alternate stack, FPU state) is in the user frame and validated when it
//! comes back, so a program that leaves its handlers with `siglongjmp` costs the kernel
//! nothing however often it does.
//!
//! This file holds the per-thread state ([`SigState`]) and the glue to tasks, processes and
//! user memory.

#![deny(unsafe_code)]

mod action;
mod altstack;
mod fpframe;
mod frame;
mod info;
mod queue;
mod set;
pub(crate) mod signalfd;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::space::UserState;
use super::task::{self, Process, Task};
use super::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use super::{Errno, SysResult};
use crate::irq::IrqLock;

pub(crate) use action::SigAction;
use action::{sa, Disposition};
use altstack::{AltStack, StackT, STACK_T_SIZE};
use frame::{Frame, RED_ZONE, UCONTEXT_SIZE};
use info::SIGINFO_SIZE;
pub(crate) use info::{code, Carried as CarriedInfo, Detail, Fault, SigInfo};
use queue::SigQueue;
pub(crate) use set::{sig, SigSet};
use set::{How, UNBLOCKABLE};

/// No mask saved (a saved mask never has the unblockable bits).
const NO_SAVED_MASK: u64 = u64::MAX;

/// Pending signals and their information: a thread's own, or its process's shared set.
pub(crate) struct Pending {
    /// A copy of the queue's set, for lock-free checks.
    bits: AtomicU64,
    /// The pending signals and their information.
    queue: IrqLock<SigQueue>,
}

impl Pending {
    /// Nothing pending.
    pub(crate) fn new() -> Self {
        Self {
            bits: AtomicU64::new(0),
            queue: IrqLock::new(SigQueue::default()),
        }
    }

    /// Marks `info.signo` pending, with at most `limit` signals queued with their
    /// information (see [`SigQueue::raise_limited`]).
    fn raise_limited(&self, info: SigInfo, limit: usize) -> Result<(), Errno> {
        let mut q = self.queue.lock();
        let r = q.raise_limited(info, limit);
        self.bits.store(q.pending().bits(), Ordering::Release);
        drop(q);
        // A signalfd may have become readable.
        signalfd::signal_raised();
        r
    }

    /// True if a signal queued by POSIX timer arm `key` is pending.
    fn has_timer(&self, key: u64) -> bool {
        self.queue.lock().has_timer(key)
    }

    /// The signals of `set` pending (an adopted hand-over record's: the record carries the
    /// set, not each signal's information, so each is pending as sent by the kernel).
    pub(crate) fn adopt(&self, set: SigSet) {
        let mut q = self.queue.lock();
        for signo in 1..=64 {
            if set.contains(signo) {
                let _ = q.raise_limited(SigInfo::kernel(signo), queue::MAX_QUEUED);
            }
        }
        self.bits.store(q.pending().bits(), Ordering::Release);
    }

    /// The pending signals' information, in the order sent (a hand-over record's).
    pub(crate) fn infos(&self) -> Vec<SigInfo> {
        self.queue.lock().infos().to_vec()
    }

    /// Replaces what is pending by a hand-over record's: `infos` in the order sent, then
    /// the signals of `set` still without information.
    pub(crate) fn adopt_infos(&self, set: SigSet, infos: &[SigInfo]) {
        let mut q = self.queue.lock();
        *q = SigQueue::default();
        for &info in infos {
            let _ = q.raise_limited(info, queue::MAX_QUEUED);
        }
        for signo in 1..=64 {
            if set.contains(signo) && !q.pending().contains(signo) {
                q.mark(signo);
            }
        }
        self.bits.store(q.pending().bits(), Ordering::Release);
    }

    /// The pending signals.
    pub(crate) fn pending(&self) -> SigSet {
        SigSet::from_bits(self.bits.load(Ordering::Acquire))
    }

    /// Takes the next pending signal in `allowed` (see [`SigQueue::dequeue`]).
    fn dequeue(&self, allowed: SigSet) -> Option<SigInfo> {
        if (self.pending() & allowed).is_empty() {
            return None;
        }
        let mut q = self.queue.lock();
        let info = q.dequeue(allowed);
        self.bits.store(q.pending().bits(), Ordering::Release);
        info
    }

    /// Drops every pending instance of the signals in `set`.
    fn discard(&self, set: SigSet) {
        let mut q = self.queue.lock();
        q.discard(set);
        self.bits.store(q.pending().bits(), Ordering::Release);
    }
}

/// A thread's signal state.
pub(crate) struct SigState {
    /// The signal mask (a [`SigSet`], never with SIGKILL or SIGSTOP).
    blocked: AtomicU64,
    /// Signals sent to this thread (`tgkill`, faults, `SIGEV_THREAD_ID` timers).
    own: Pending,
    /// The mask to go back to once a signal that interrupted `rt_sigsuspend`, `ppoll` or
    /// `pselect6` (which block with a temporary mask) has been handled (Linux's
    /// `saved_sigmask`), or [`NO_SAVED_MASK`]. Only the thread itself touches it.
    saved_mask: AtomicU64,
    /// Signals `rt_sigtimedwait` is waiting for (a process-directed one goes to this thread).
    waiting: AtomicU64,
    /// The alternate signal stack.
    altstack: IrqLock<AltStack>,
    /// System call interrupted by a signal (for SA_RESTART), and its number.
    interrupted: AtomicU64,
}

impl SigState {
    /// Nothing pending, `blocked` blocked, no alternate stack.
    pub(crate) fn new(blocked: SigSet) -> Self {
        Self {
            blocked: AtomicU64::new(blocked.blockable().bits()),
            own: Pending::new(),
            saved_mask: AtomicU64::new(NO_SAVED_MASK),
            waiting: AtomicU64::new(0),
            altstack: IrqLock::new(AltStack::DISABLED),
            interrupted: AtomicU64::new(u64::MAX),
        }
    }

    /// The state of a thread of an adopted hand-over record: its mask, the signals pending
    /// for it alone (see [`Pending::adopt`]) and its alternate stack (base, size, flags).
    pub(crate) fn adopted(blocked: SigSet, pending: SigSet, altstack: (u64, u64, u32)) -> Self {
        let s = Self::new(blocked);
        s.own.adopt(pending);
        *s.altstack.lock() = AltStack::from_raw(altstack);
        s
    }

    /// The state of a thread or process `clone` creates from this thread's: the same mask,
    /// nothing pending, and the same alternate stack unless `shares_memory` — a thread (or
    /// `CLONE_VM` child) that would share it starts without one, as Linux.
    pub(crate) fn cloned(&self, shares_memory: bool) -> Self {
        let s = Self::new(self.blocked());
        if !shares_memory {
            *s.altstack.lock() = *self.altstack.lock();
        }
        s
    }

    /// Marks `info.signo` pending (see [`SigQueue::raise`]).
    #[cfg(test)]
    pub(crate) fn raise(&self, info: SigInfo) -> Result<(), Errno> {
        self.raise_limited(info, queue::MAX_QUEUED)
    }

    /// Marks `info.signo` pending for this thread, with at most `limit` signals queued with
    /// their information (the process's `RLIMIT_SIGPENDING`; see [`SigQueue::raise_limited`]).
    pub(crate) fn raise_limited(&self, info: SigInfo, limit: usize) -> Result<(), Errno> {
        self.own.raise_limited(info, limit)
    }

    /// True if a signal queued by POSIX timer arm `key` is pending.
    fn has_timer(&self, key: u64) -> bool {
        self.own.has_timer(key)
    }

    /// The pending signals.
    fn pending(&self) -> SigSet {
        self.own.pending()
    }

    /// Takes the next pending signal in `allowed` (see [`SigQueue::dequeue`]).
    fn dequeue(&self, allowed: SigSet) -> Option<SigInfo> {
        self.own.dequeue(allowed)
    }

    /// Drops every pending instance of the signals in `set`.
    fn discard(&self, set: SigSet) {
        self.own.discard(set);
    }

    /// The signals pending for this thread alone, with their information (a hand-over
    /// record's).
    pub(crate) fn own(&self) -> &Pending {
        &self.own
    }

    /// The signals pending for this thread alone.
    pub(crate) fn own_pending(&self) -> SigSet {
        self.pending()
    }

    /// The alternate signal stack's base, size and flags (the hand-over record).
    pub(crate) fn altstack_raw(&self) -> (u64, u64, u32) {
        self.altstack.lock().raw()
    }

    /// True if a pending signal is not blocked.
    pub(crate) fn has_deliverable(&self) -> bool {
        !(self.pending() & !self.blocked()).is_empty()
    }

    /// The blocked mask.
    pub(crate) fn blocked(&self) -> SigSet {
        SigSet::from_bits(self.blocked.load(Ordering::Relaxed))
    }

    /// Makes `mask` the blocked mask (without SIGKILL and SIGSTOP).
    ///
    /// A full barrier (an atomic swap): the thread reads the pending sets after it, and a
    /// sender reads this mask after raising a signal (see [`send_info_to_process`]) — with
    /// a plain store both could read the other's old value, and a thread that unblocks a
    /// signal to wait for it (`sigsuspend`) slept with the signal pending and no one to
    /// wake it.
    fn set_blocked(&self, mask: SigSet) {
        self.blocked.swap(mask.blockable().bits(), Ordering::SeqCst);
    }

    /// Records that system call `nr` returned EINTR, for `SA_RESTART`; the calls Linux never
    /// restarts (waits for events, signals or time) are not recorded.
    pub(crate) fn note_interrupted(&self, nr: u64) {
        if !action::never_restarted(nr) {
            self.interrupted.store(nr, Ordering::Relaxed);
        }
    }

    /// The system call a signal interrupted, if one is recorded; clears it. Only the thread
    /// itself touches it: a load first, so the common case (none) writes nothing.
    fn take_interrupted(&self) -> Option<u64> {
        let nr = self.interrupted.load(Ordering::Relaxed);
        if nr == u64::MAX {
            return None;
        }
        self.interrupted.store(u64::MAX, Ordering::Relaxed);
        Some(nr)
    }

    /// Blocks `mask` for the duration of a wait (`rt_sigsuspend`, `ppoll`, `pselect6`),
    /// remembering the mask to go back to.
    fn set_temporary_mask(&self, mask: SigSet) {
        if self.saved_mask.load(Ordering::Relaxed) == NO_SAVED_MASK {
            self.saved_mask
                .store(self.blocked().bits(), Ordering::Relaxed);
        }
        self.set_blocked(mask);
    }

    /// Takes the mask saved by [`Self::set_temporary_mask`], if any.
    fn take_saved_mask(&self) -> Option<SigSet> {
        // Only the thread itself sets and takes it: a load spares the swap when none is.
        if self.saved_mask.load(Ordering::Relaxed) == NO_SAVED_MASK {
            return None;
        }
        let m = self.saved_mask.swap(NO_SAVED_MASK, Ordering::Relaxed);
        (m != NO_SAVED_MASK).then_some(SigSet::from_bits(m))
    }

    /// Goes back to the mask saved by [`Self::set_temporary_mask`], if any.
    fn restore_saved_mask(&self) {
        if let Some(m) = self.take_saved_mask() {
            self.set_blocked(m);
        }
    }
}

/// `AT_MINSIGSTKSZ`: the largest signal frame on this machine, with the FP image of the
/// features the CPU has enabled (CPUID leaf 0xD, asked once: every `execve` wants it; at most
/// what the user stub can carry).
pub(crate) fn min_sigstack_size() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    /// 0: not asked yet.
    static SIZE: AtomicU64 = AtomicU64::new(0);
    match SIZE.load(Ordering::Relaxed) {
        0 => {
            let xsave = core::arch::x86_64::__cpuid_count(0xd, 0).ebx as usize;
            let fp = xsave.clamp(512, pvmux_hypercalls::user::USER_FPSTATE_MAX);
            let v = fpframe::max_frame_size(fp);
            SIZE.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

/// Takes the next pending signal of `t` in `allowed`, its own first, then its process's: a
/// POSIX timer's signal gets its
/// `si_overrun` now, and its timer is armed again (see `linux/timers/timer.rs`).
fn take(t: &Task, allowed: SigSet) -> Option<SigInfo> {
    let mut info = t
        .sig
        .dequeue(allowed)
        .or_else(|| t.process.shared_sig.dequeue(allowed))?;
    if let Detail::Timer {
        timerid,
        ref mut overrun,
        key,
        ..
    } = info.detail
    {
        *overrun = super::timers::signal_taken(&t.process, timerid, key);
    }
    Some(info)
}

/// Takes a pending signal in `allowed` for `t` (`sigtimedwait`, signalfd): its own first,
/// else its process's.
fn take_for_process(t: &Arc<Task>, allowed: SigSet) -> Option<SigInfo> {
    take(t, allowed)
}

/// True if [`take_for_process`] would find a signal in `allowed` for `t`.
fn pending_for_process(t: &Task, allowed: SigSet) -> bool {
    !((t.sig.pending() | t.process.shared_sig.pending()) & allowed).is_empty()
}

/// Wakes every thread of `p` that does not block a signal pending process-wide, so that one
/// takes it (after a thread blocked such signals or exited: Linux's
/// `retarget_shared_pending`). Wake-ups of threads with nothing to do are harmless.
pub(crate) fn retarget_shared(p: &Process) {
    let shared = p.shared_sig.pending();
    if shared.is_empty() {
        return;
    }
    for t in p.threads.lock().iter() {
        if !(shared & !t.sig.blocked()).is_empty() {
            t.kick();
        }
    }
}

/// True if a signal queued by POSIX timer arm `key` is pending in a thread of `p`.
pub(crate) fn timer_signal_queued(p: &Process, key: u64) -> bool {
    p.shared_sig.has_timer(key) || p.threads.lock().iter().any(|t| t.sig.has_timer(key))
}

/// True if the current thread has an unblocked signal pending: blocking system calls return
/// `EINTR` (or restart) when this becomes true.
pub(crate) fn pending() -> bool {
    task::try_current_task().is_some_and(|t| t.signal_pending())
}

/// Sends `signo` to the current thread as if the current process sent it (e.g. `SIGPIPE`
/// from a write to a broken pipe: `SI_USER` from itself, as Linux).
pub(crate) fn raise_current(signo: u32) {
    if let Some(t) = task::try_current_task() {
        let _ = t.send_signal(SigInfo::from_process(signo, code::SI_USER, t.process.pid));
    }
}

/// Forces a synchronous fault signal: unblocks it and resets an ignored action, or one it
/// was blocked under (a fault in the signal's own handler), to default (like Linux
/// `force_sig`). A fault the program does not handle is logged the way Linux
/// logs it (`prog[pid]: segfault at ...`).
pub(crate) fn force(t: &Arc<Task>, info: SigInfo) {
    let signo = info.signo;
    let was_blocked = t
        .sig
        .blocked
        .fetch_and(!SigSet::of(signo).bits(), Ordering::AcqRel)
        & SigSet::of(signo).bits()
        != 0;
    let handled = {
        let mut a = t.process.sigactions.lock();
        let act = &mut a[(signo - 1) as usize];
        // Blocked (a fault in its own handler) or ignored: the default action, as Linux's
        // `force_sig_info_to_task` (the handler is not entered again and again).
        if was_blocked || act.handler == action::SIG_IGN {
            *act = SigAction::DEFAULT;
        }
        act.handler != action::SIG_DFL
    };
    if !handled {
        super::death::log_fatal_fault(&t.process, &info);
    }
    let _ = t.send_signal(info);
}

/// The signals in `set` (bit `n - 1`: signal `n`) that the host sent to init (`SignalTake`):
/// delivered to process 1 as Linux delivers a signal from outside a pid namespace to its
/// init (`SI_USER` from pid 0). Nothing happens when init is gone. Safe in event context.
pub(crate) fn from_host(set: u64) {
    let Some(init) = task::find_process(1) else {
        return;
    };
    for signo in 1..=63u32 {
        if set & (1 << (signo - 1)) != 0 {
            let _ = send_info_to_process(&init, SigInfo::from_process(signo, code::SI_USER, 0));
        }
    }
}

/// Sends `signo` from the kernel to a process (`SI_KERNEL`: terminal keys and the like).
pub(crate) fn send_to_process(p: &Arc<Process>, signo: u32) {
    let _ = send_info_to_process(p, SigInfo::kernel(signo));
}

/// Sends a signal to a process: it becomes pending process-wide (Linux's shared pending set),
/// and a thread waiting for it in `rt_sigtimedwait`, else one that does not block it, is woken
/// to take it; if every thread blocks it, it waits for the first that unblocks it. An ignored
/// signal is dropped unless the first thread blocks it (Linux's `sig_ignored` on the task the
/// pid names). `EAGAIN` if the queue is full (the process's `RLIMIT_SIGPENDING`).
pub(crate) fn send_info_to_process(p: &Arc<Process>, info: SigInfo) -> Result<(), Errno> {
    let signo = info.signo;
    if signo == 0 || !set::valid(signo) {
        return Ok(());
    }
    if signo == sig::SIGKILL {
        super::death::killed(p, &info);
        return Ok(());
    }
    let threads = p.threads.lock().clone();
    let Some(first) = threads.first() else {
        return Ok(());
    };
    if !first.sig.blocked().contains(signo) && is_ignored(p, signo) {
        return Ok(());
    }
    let limit = super::rlimit::of(p, super::rlimit::res::SIGPENDING);
    p.shared_sig
        .raise_limited(info, usize::try_from(limit).unwrap_or(usize::MAX))?;
    // The pending bit must be visible before the masks are read: a thread unblocking the
    // signal at this moment then sees one or the other (see `SigState::set_blocked`).
    core::sync::atomic::fence(Ordering::SeqCst);
    let target = threads
        .iter()
        .find(|t| SigSet::from_bits(t.sig.waiting.load(Ordering::Acquire)).contains(signo))
        .or_else(|| threads.iter().find(|t| !t.sig.blocked().contains(signo)));
    if let Some(t) = target {
        t.kick();
    }
    Ok(())
}

/// Tells `parent` that `child` ended with wait status `status` (its exit signal, usually
/// `SIGCHLD`, with the child's pid, status and CPU times), then marks `child` a zombie and
/// wakes the parent's waiters: whoever reaps the child finds the signal already pending.
///
/// Both happen under the parent's relations lock, which `wait_child` holds while it looks for
/// zombies: a parent woken by the signal that then waits with `WNOHANG` finds the child a
/// zombie (timeout(1) waits so, and with the zombie marked later it slept again until its
/// timer fired), and one that reaps the child finds the signal pending.
pub(crate) fn notify_parent(parent: &Arc<Process>, child: &Process, status: i32) {
    let rel = parent.rel.lock();
    if child.exit_signal != 0 {
        let (code, value) = if status & 0x7f == 0 {
            (code::CLD_EXITED, (status >> 8) & 0xff)
        } else {
            (code::CLD_KILLED, status & 0x7f)
        };
        let usage = child.times.total();
        let info = SigInfo {
            signo: child.exit_signal,
            code,
            detail: Detail::Child {
                pid: child.pid,
                uid: 0,
                status: value,
                utime: super::cputime::ticks(usage.user_ns),
                stime: super::cputime::ticks(usage.system_ns),
            },
        };
        let _ = send_info_to_process(parent, info);
    }
    task::became_zombie(child);
    drop(rel);
    parent.child_wq.wake_all();
}

/// True if `p` ignores `signo` (explicitly, or by default action); never for SIGKILL.
pub(crate) fn is_ignored(p: &Process, signo: u32) -> bool {
    set::valid(signo) && p.sigactions.lock()[(signo - 1) as usize].ignores(signo)
}

/// Delivers pending signals before returning to user code: runs default actions, or builds
/// a handler frame in `st`. `Err` if the task must exit.
pub(crate) fn deliver(t: &Arc<Task>, st: &mut UserState, fresh: &mut bool) -> Result<(), ()> {
    loop {
        let Some(info) = take(t, !t.sig.blocked()) else {
            // A call a signal interrupted, and no handler runs after all (another thread
            // took the process's signal first, or it was ignored): restarted, as Linux
            // restarts `-ERESTARTSYS` when no handler runs, whatever `SA_RESTART` says.
            let interrupted = t.sig.take_interrupted();
            if let Some(nr) = action::restart(interrupted, st.regs.rax, sa::SA_RESTART) {
                st.regs.rax = nr;
                st.regs.rip -= 2;
            }
            // No handler ran: a wait's temporary mask ends here.
            t.sig.restore_saved_mask();
            return Ok(());
        };
        let signo = info.signo;
        let act = t.process.sigactions.lock()[(signo - 1) as usize];
        match act.disposition(signo) {
            Disposition::Ignore => continue,
            Disposition::Terminate => {
                super::death::killed(&t.process, &info);
                return Err(());
            }
            Disposition::Handle => {}
        }
        // Restart or fail the interrupted system call.
        let interrupted = t.sig.take_interrupted();
        if let Some(nr) = action::restart(interrupted, st.regs.rax, act.flags) {
            st.regs.rax = nr;
            st.regs.rip -= 2;
        }
        // The frame records the mask to return to: the one saved by a wait with a
        // temporary mask, else the current one.
        let return_mask = t.sig.take_saved_mask().unwrap_or_else(|| t.sig.blocked());
        if setup_frame(t, st, &info, &act, return_mask).is_err() {
            let segv = SigInfo::kernel(sig::SIGSEGV);
            super::death::killed(&t.process, &segv);
            return Err(());
        }
        *fresh = true;
        {
            let mut a = t.process.sigactions.lock();
            let cur = &mut a[(signo - 1) as usize];
            // Unless the handler changed meanwhile (another thread's `rt_sigaction`).
            if *cur == act {
                *cur = act.after_delivery();
            }
        }
        t.sig.set_blocked(act.handler_mask(signo, t.sig.blocked()));
        return Ok(());
    }
}

/// Builds the `rt_sigframe` for `info`'s handler on the user stack (or the alternate stack),
/// with the FPU state above it (see [`fpframe`]); `return_mask` is the mask `rt_sigreturn`
/// restores. `EFAULT` (a fatal `SIGSEGV` for the caller) if the frame cannot be written,
/// would overflow the alternate stack, or the action has no `SA_RESTORER` to return through
/// (as Linux on x86-64). The handler starts with the initial FPU state, as on Linux.
fn setup_frame(
    t: &Arc<Task>,
    st: &mut UserState,
    info: &SigInfo,
    act: &SigAction,
    return_mask: SigSet,
) -> Result<(), Errno> {
    if act.flags & sa::SA_RESTORER == 0 {
        return Err(Errno::EFAULT);
    }
    st.take_kept_fp();
    let r = st.regs;
    let alt = *t.sig.altstack.lock();
    let (top, on_alt) = alt.frame_top(
        r.rsp.wrapping_sub(RED_ZONE),
        act.flags & sa::SA_ONSTACK != 0,
    );
    let (frame_top, fp) = if st.fp.is_empty() {
        (top, None)
    } else {
        let at = fpframe::area_below(top, st.fp.len());
        (at, Some((at, fpframe::is_xsave(&st.fp))))
    };
    let frame = Frame::build(
        frame_top,
        &r,
        info,
        act.restorer,
        return_mask,
        alt.saved(),
        fp,
    );
    if on_alt && !alt.holds(frame.sp, top) {
        return Err(Errno::EFAULT);
    }
    if let Some((at, _)) = fp {
        copy_to_user(at, &fpframe::frame_bytes(&st.fp)?)?;
    }
    copy_to_user(frame.sp, &frame.bytes)?;
    t.sig.altstack.lock().disarm();
    st.fp = Vec::new();
    st.fp_changed();
    st.regs = frame.handler_regs(&r, info.signo, act.handler);
    Ok(())
}

/// `rt_sigreturn`: restores the state [`setup_frame`] saved in the user frame (registers,
/// mask, alternate stack, FPU state), as the handler may have edited it: whatever the CPU
/// would refuse is sanitised. A frame that cannot be read is a fatal `SIGSEGV`.
pub(crate) fn sigreturn(t: &Arc<Task>, st: &mut UserState) -> SysResult {
    st.take_kept_fp();
    let uc = st.regs.rsp;
    let mut u = [0u8; UCONTEXT_SIZE];
    if copy_from_user(uc, &mut u).is_err() {
        super::death::killed(&t.process, &SigInfo::kernel(sig::SIGSEGV));
        return Err(Errno::EFAULT);
    }
    let back = frame::restore(&u, &st.regs);
    let fp = if back.fpstate == 0 {
        Ok(fpframe::initial(&st.fp))
    } else {
        read_fp_image(back.fpstate, st.fp.len()).map(|user| fpframe::restored(&user, &st.fp))
    };
    let Ok(fp) = fp else {
        super::death::killed(&t.process, &SigInfo::kernel(sig::SIGSEGV));
        return Err(Errno::EFAULT);
    };
    st.regs = back.regs;
    st.fp = fp;
    st.fp_changed();
    t.sig.set_blocked(back.mask);
    // Errors are ignored, as Linux's `restore_altstack` does.
    let _ = t.sig.altstack.lock().set(back.stack, st.regs.rsp);
    Ok(st.regs.rax)
}

/// The bytes at a frame's `fpstate` for a thread whose FP image is `len` bytes: the image
/// and magic2 after it (an FXSAVE-only frame needs only its 512 bytes readable).
fn read_fp_image(at: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = Vec::new();
    let n = len + fpframe::MAGIC2_SIZE;
    buf.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
    buf.resize(n, 0);
    if copy_from_user(at, &mut buf).is_err() {
        buf.truncate(len.min(512));
        copy_from_user(at, &mut buf)?;
    }
    Ok(buf)
}

/// Resets actions for `execve` (handlers become default; ignored stay ignored) and forgets
/// the alternate stack.
pub(crate) fn reset_on_exec(t: &Arc<Task>) {
    for act in t.process.sigactions.lock().iter_mut() {
        *act = act.after_exec();
    }
    *t.sig.altstack.lock() = AltStack::DISABLED;
}

/// `rt_sigaction(signo, act, oldact, sigsetsize)`.
pub(crate) fn sys_rt_sigaction(signo: u64, act: u64, old: u64, size: u64) -> SysResult {
    if size != 8 || signo == 0 || signo > u64::from(sig::NSIG) {
        return Err(Errno::EINVAL);
    }
    let signo = signo as u32;
    let p = task::current_process();
    let new = if act != 0 {
        if UNBLOCKABLE.contains(signo) {
            return Err(Errno::EINVAL);
        }
        Some(read_val::<SigAction>(act)?.installed())
    } else {
        None
    };
    let prev = {
        let mut a = p.sigactions.lock();
        let prev = a[(signo - 1) as usize];
        if let Some(n) = new {
            a[(signo - 1) as usize] = n;
        }
        prev
    };
    // A signal that becomes ignored is discarded from every thread (as Linux).
    if new.is_some() && is_ignored(&p, signo) {
        p.shared_sig.discard(SigSet::of(signo));
        for t in p.threads.lock().iter() {
            t.sig.discard(SigSet::of(signo));
        }
    }
    if old != 0 {
        write_val(old, &prev)?;
    }
    Ok(0)
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
pub(crate) fn sys_rt_sigprocmask(how: u64, set: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let t = task::current_task();
    let cur = t.sig.blocked();
    if set != 0 {
        let s = SigSet::from_bits(read_val(set)?);
        let new = How::from_raw(how)?.apply(cur, s);
        t.sig.set_blocked(new);
        // Process-wide signals this thread now blocks go to another thread.
        if !(t.process.shared_sig.pending() & new & !cur).is_empty() {
            retarget_shared(&t.process);
        }
    }
    if old != 0 {
        write_val(old, &cur.bits())?;
    }
    Ok(0)
}

/// `rt_sigpending(set, size)`.
pub(crate) fn sys_rt_sigpending(set: u64) -> SysResult {
    let t = task::current_task();
    let pending = t.sig.pending() | t.process.shared_sig.pending();
    write_val(set, &(pending & t.sig.blocked()).bits())?;
    Ok(0)
}

/// `sigaltstack(ss, old_ss)` (see [`AltStack::set`] for the rules).
pub(crate) fn sys_sigaltstack(ss: u64, old: u64, sp: u64) -> SysResult {
    let t = task::current_task();
    let new = if ss != 0 {
        let mut b = [0u8; STACK_T_SIZE];
        copy_from_user(ss, &mut b)?;
        Some(StackT::from_bytes(&b))
    } else {
        None
    };
    let report = {
        let mut alt = t.sig.altstack.lock();
        let report = alt.report(sp);
        if let Some(n) = new {
            alt.set(n, sp)?;
        }
        report
    };
    if old != 0 {
        copy_to_user(old, &report.to_bytes())?;
    }
    Ok(0)
}

/// `kill(pid, sig)`.
pub(crate) fn sys_kill(pid: i64, signo: u64) -> SysResult {
    if signo > u64::from(sig::NSIG) {
        return Err(Errno::EINVAL);
    }
    let signo = signo as u32;
    let me = task::current_process();
    let targets: Vec<Arc<Process>> = match pid {
        p if p > 0 => alloc::vec![task::find_process(p as i32).ok_or(Errno::ESRCH)?],
        0 => task::all_processes()
            .into_iter()
            .filter(|p| p.pgid() == me.pgid())
            .collect(),
        -1 => task::all_processes()
            .into_iter()
            .filter(|p| p.pid != 1)
            .collect(),
        p => task::all_processes()
            .into_iter()
            .filter(|q| q.pgid() == (-p) as i32)
            .collect(),
    };
    let targets: Vec<Arc<Process>> = targets
        .into_iter()
        .filter(|p| !p.zombie.load(Ordering::Acquire))
        .collect();
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    // As Linux: each target must be permitted (uids, or SIGCONT within the session); a group
    // kill succeeds if any was, else it is EPERM.
    let mine = me.creds.lock().clone();
    let permitted: Vec<Arc<Process>> = targets
        .into_iter()
        .filter(|p| may_signal_process(&mine, &me, p, signo))
        .collect();
    if permitted.is_empty() {
        return Err(Errno::EPERM);
    }
    let info = SigInfo::from_process(signo, code::SI_USER, me.pid);
    for p in permitted {
        let _ = send_info_to_process(&p, info);
    }
    Ok(0)
}

/// Whether process `me` (credentials `mine`) may send `signo` to `to`.
fn may_signal_process(mine: &super::creds::Creds, me: &Process, to: &Process, signo: u32) -> bool {
    (signo == sig::SIGCONT && me.sid() == to.sid())
        || super::creds::may_signal(mine, &to.creds.lock())
}

/// `EPERM` unless the calling process may send `signo` to `to`.
fn check_may_signal(to: &Process, signo: u32) -> Result<(), Errno> {
    let me = task::current_process();
    if core::ptr::eq(&*me, to) {
        return Ok(());
    }
    let mine = me.creds.lock().clone();
    if may_signal_process(&mine, &me, to, signo) {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The live thread `tid`, of process `tgid` unless `tgid` is negative.
fn target_thread(tgid: i64, tid: i64) -> Result<Arc<Task>, Errno> {
    if tid <= 0 || tid > i64::from(i32::MAX) {
        return Err(Errno::EINVAL);
    }
    let t = task::find_task(tid as i32).ok_or(Errno::ESRCH)?;
    if tgid >= 0 && i64::from(t.process.pid) != tgid {
        return Err(Errno::ESRCH);
    }
    Ok(t)
}

/// Sends `info` to thread `t` (SIGKILL ends its whole process).
fn send_to_thread(t: &Arc<Task>, info: SigInfo) -> Result<(), Errno> {
    match info.signo {
        0 => Ok(()),
        sig::SIGKILL => {
            super::death::killed(&t.process, &info);
            Ok(())
        }
        _ => t.send_signal(info),
    }
}

/// `tgkill(tgid, tid, sig)` / `tkill(tid, sig)` (no `tgid`).
pub(crate) fn sys_tgkill(tgid: Option<i64>, tid: i64, signo: u64) -> SysResult {
    if signo > u64::from(sig::NSIG) || tgid.is_some_and(|g| g <= 0) {
        return Err(Errno::EINVAL);
    }
    let t = target_thread(tgid.unwrap_or(-1), tid)?;
    check_may_signal(&t.process, signo as u32)?;
    let me = task::current_process();
    send_to_thread(
        &t,
        SigInfo::from_process(signo as u32, code::SI_TKILL, me.pid),
    )?;
    Ok(0)
}

/// Reads the `siginfo_t` of `rt_sigqueueinfo`/`rt_tgsigqueueinfo` for signal `signo` sent
/// to process `to`: a process may not pretend to be `kill` or the kernel towards another
/// (`EPERM` for a non-negative `si_code` or `SI_TKILL`, as Linux).
fn queued_info(signo: u32, uinfo: u64, to: i32) -> Result<SigInfo, Errno> {
    let mut raw = [0u8; SIGINFO_SIZE];
    copy_from_user(uinfo, &mut raw)?;
    let info = SigInfo::queued(signo, &raw);
    if (info.code >= 0 || info.code == code::SI_TKILL) && to != task::current_process().pid {
        return Err(Errno::EPERM);
    }
    Ok(info)
}

/// `rt_sigqueueinfo(pid, sig, info)` (`sigqueue`).
pub(crate) fn sys_rt_sigqueueinfo(pid: i64, signo: u64, uinfo: u64) -> SysResult {
    if signo > u64::from(sig::NSIG) {
        return Err(Errno::EINVAL);
    }
    let p = task::find_process(pid as i32)
        .filter(|p| pid > 0 && !p.zombie.load(Ordering::Acquire))
        .ok_or(Errno::ESRCH)?;
    check_may_signal(&p, signo as u32)?;
    let info = queued_info(signo as u32, uinfo, p.pid)?;
    send_info_to_process(&p, info)?;
    Ok(0)
}

/// `rt_tgsigqueueinfo(tgid, tid, sig, info)`.
pub(crate) fn sys_rt_tgsigqueueinfo(tgid: i64, tid: i64, signo: u64, uinfo: u64) -> SysResult {
    if signo > u64::from(sig::NSIG) || tgid <= 0 {
        return Err(Errno::EINVAL);
    }
    let t = target_thread(tgid, tid)?;
    check_may_signal(&t.process, signo as u32)?;
    let info = queued_info(signo as u32, uinfo, t.process.pid)?;
    send_to_thread(&t, info)?;
    Ok(0)
}

/// Sleeps until a signal is pending for `t` (or its process must exit).
fn sleep_for_signal(t: &Task) {
    while !t.signal_pending() {
        let cur = crate::sched::current();
        crate::sched::prepare_block(&cur);
        if t.signal_pending() {
            crate::sched::cancel_block(&cur);
            break;
        }
        crate::sched::timed_block(u64::MAX);
    }
}

/// `rt_sigsuspend(mask, size)`: waits for a signal with `mask` blocked. Always `EINTR`; the
/// handler runs with `mask` in force and `rt_sigreturn` restores the mask of before.
pub(crate) fn sys_rt_sigsuspend(mask: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let t = task::current_task();
    let m = SigSet::from_bits(read_val(mask)?);
    t.sig.set_temporary_mask(m);
    sleep_for_signal(&t);
    // The signal's delivery restores the saved mask (see `deliver`).
    Err(Errno::EINTR)
}

/// Runs the wait `f` of `ppoll`/`pselect6` with the signal mask `mask` in force (if any):
/// set atomically with respect to signal delivery, and restored on return — unless the wait
/// was interrupted by a signal, which is then delivered first, with `mask` still in force,
/// and its `rt_sigreturn` restores the mask (Linux's `restore_saved_sigmask_unless`).
pub(crate) fn with_temporary_mask(
    mask: Option<SigSet>,
    f: impl FnOnce() -> SysResult,
) -> SysResult {
    let Some(mask) = mask else {
        return f();
    };
    let t = task::current_task();
    t.sig.set_temporary_mask(mask);
    let r = f();
    if r != Err(Errno::EINTR) {
        t.sig.restore_saved_mask();
    }
    r
}

/// `rt_sigtimedwait(set, info, timeout, size)` (`sigwaitinfo`, `sigtimedwait`): takes a
/// pending signal of `set`, waiting for one until the timeout (`EAGAIN`) or another signal
/// (`EINTR`).
pub(crate) fn sys_rt_sigtimedwait(set: u64, uinfo: u64, timeout: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let t = task::current_task();
    let wanted = SigSet::from_bits(read_val(set)?).blockable();
    let deadline = if timeout == 0 {
        u64::MAX
    } else {
        crate::time::now_ns().saturating_add(super::futex::read_timespec(timeout)?)
    };
    // A full barrier before the pending sets are read (see `SigState::set_blocked`).
    t.sig.waiting.swap(wanted.bits(), Ordering::SeqCst);
    let got = loop {
        if let Some(info) = take_for_process(&t, wanted) {
            break Ok(info);
        }
        if t.signal_pending() {
            break Err(Errno::EINTR);
        }
        let now = crate::time::now_ns();
        if now >= deadline {
            break Err(Errno::EAGAIN);
        }
        let cur = crate::sched::current();
        crate::sched::prepare_block(&cur);
        if pending_for_process(&t, wanted) || t.signal_pending() {
            crate::sched::cancel_block(&cur);
            continue;
        }
        crate::sched::timed_block(deadline);
    };
    t.sig.waiting.store(0, Ordering::Release);
    let info = got?;
    if uinfo != 0 {
        copy_to_user(uinfo, &info.to_bytes())?;
    }
    Ok(u64::from(info.signo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::abi::nr;

    fn set(signals: &[u32]) -> SigSet {
        signals.iter().fold(SigSet::EMPTY, |s, &n| s.with(n))
    }

    #[test]
    fn the_mask_never_holds_sigkill_or_sigstop() {
        let s = SigState::new(SigSet::FULL);
        assert_eq!(s.blocked(), SigSet::FULL.blockable());
        s.set_blocked(set(&[sig::SIGKILL, sig::SIGUSR1]));
        assert_eq!(s.blocked(), set(&[sig::SIGUSR1]));
    }

    #[test]
    fn pending_signals_are_deliverable_unless_blocked() {
        let s = SigState::new(set(&[sig::SIGUSR1]));
        assert!(!s.has_deliverable());
        s.raise(SigInfo::kernel(sig::SIGUSR1)).unwrap();
        assert!(!s.has_deliverable(), "blocked");
        assert_eq!(s.pending(), set(&[sig::SIGUSR1]));
        assert_eq!(s.dequeue(!s.blocked()), None);
        s.raise(SigInfo::kernel(sig::SIGUSR2)).unwrap();
        assert!(s.has_deliverable());
        assert_eq!(s.dequeue(!s.blocked()).map(|i| i.signo), Some(sig::SIGUSR2));
        s.set_blocked(SigSet::EMPTY);
        assert!(s.has_deliverable());
        s.discard(set(&[sig::SIGUSR1]));
        assert!(!s.has_deliverable());
        assert_eq!(s.pending(), SigSet::EMPTY);
    }

    #[test]
    fn temporary_mask_is_restored() {
        let s = SigState::new(set(&[sig::SIGUSR1]));
        s.set_temporary_mask(SigSet::EMPTY);
        assert_eq!(s.blocked(), SigSet::EMPTY);
        // A nested temporary mask keeps the first saved one.
        s.set_temporary_mask(set(&[sig::SIGKILL, sig::SIGUSR2]));
        assert_eq!(
            s.blocked(),
            set(&[sig::SIGUSR2]),
            "SIGKILL cannot be blocked"
        );
        s.restore_saved_mask();
        assert_eq!(s.blocked(), set(&[sig::SIGUSR1]));
        assert_eq!(s.take_saved_mask(), None);
        // A handler's frame takes the saved mask: rt_sigreturn restores it, not delivery.
        s.set_temporary_mask(SigSet::EMPTY);
        assert_eq!(s.take_saved_mask(), Some(set(&[sig::SIGUSR1])));
        s.restore_saved_mask();
        assert_eq!(s.blocked(), SigSet::EMPTY, "nothing left to restore");
    }

    #[test]
    fn only_restartable_calls_are_noted_for_sa_restart() {
        let s = SigState::new(SigSet::EMPTY);
        s.note_interrupted(nr::PPOLL);
        assert_eq!(s.interrupted.load(Ordering::Relaxed), u64::MAX);
        s.note_interrupted(nr::READ);
        assert_eq!(s.interrupted.load(Ordering::Relaxed), nr::READ);
    }

    #[test]
    fn fork_keeps_the_alternate_stack_and_threads_start_without_one() {
        let s = SigState::new(set(&[sig::SIGUSR1]));
        let alt = StackT {
            sp: 0x7000_0000,
            flags: 0,
            size: 0x4000,
        };
        s.altstack.lock().set(alt, 0).unwrap();
        s.raise(SigInfo::kernel(sig::SIGUSR1)).unwrap();
        let child = s.cloned(false);
        assert_eq!(child.altstack.lock().saved(), alt);
        assert_eq!(child.blocked(), set(&[sig::SIGUSR1]));
        assert_eq!(
            child.pending(),
            SigSet::EMPTY,
            "pending signals are not inherited"
        );
        let thread = s.cloned(true);
        assert_eq!(*thread.altstack.lock(), AltStack::DISABLED);
        assert_eq!(thread.blocked(), set(&[sig::SIGUSR1]));
    }
}
