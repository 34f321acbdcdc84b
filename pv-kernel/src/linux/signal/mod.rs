//! POSIX signals: per-process actions, per-thread masks and pending sets, delivery on the way
//! back to user code (an x86-64 Linux `rt_sigframe` on the user stack), `rt_sigreturn`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::frame::RFLAGS_USER_MASK;

use super::space::UserState;
use super::task::{self, Process, Task};
use super::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use super::{Errno, SysResult};
use crate::irq::IrqLock;

/// Signal numbers (x86-64 Linux).
#[allow(dead_code)]
pub(crate) mod sig {
    pub(crate) const SIGHUP: u32 = 1;
    pub(crate) const SIGINT: u32 = 2;
    pub(crate) const SIGQUIT: u32 = 3;
    pub(crate) const SIGILL: u32 = 4;
    pub(crate) const SIGTRAP: u32 = 5;
    pub(crate) const SIGABRT: u32 = 6;
    pub(crate) const SIGBUS: u32 = 7;
    pub(crate) const SIGFPE: u32 = 8;
    pub(crate) const SIGKILL: u32 = 9;
    pub(crate) const SIGUSR1: u32 = 10;
    pub(crate) const SIGSEGV: u32 = 11;
    pub(crate) const SIGUSR2: u32 = 12;
    pub(crate) const SIGPIPE: u32 = 13;
    pub(crate) const SIGALRM: u32 = 14;
    pub(crate) const SIGTERM: u32 = 15;
    pub(crate) const SIGCHLD: u32 = 17;
    pub(crate) const SIGCONT: u32 = 18;
    pub(crate) const SIGSTOP: u32 = 19;
    pub(crate) const SIGTSTP: u32 = 20;
    pub(crate) const SIGTTIN: u32 = 21;
    pub(crate) const SIGTTOU: u32 = 22;
    pub(crate) const SIGURG: u32 = 23;
    pub(crate) const SIGWINCH: u32 = 28;
    pub(crate) const SIGSYS: u32 = 31;
    /// Highest signal number.
    pub(crate) const NSIG: u32 = 64;
}

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;

/// First real-time signal: from here on every instance is queued with its information.
const SIGRTMIN: u32 = 32;
/// Most queued signals per thread (Linux: `RLIMIT_SIGPENDING`); beyond it a real-time
/// signal sent with information fails with `EAGAIN`, any other is merged without it.
const MAX_QUEUED: usize = 256;

/// `si_code` values (`<asm-generic/siginfo.h>`).
pub(crate) mod code {
    /// Sent by `kill`.
    pub(crate) const SI_USER: i32 = 0;
    /// Sent by the kernel.
    pub(crate) const SI_KERNEL: i32 = 0x80;
    /// Sent by `tkill`/`tgkill`.
    pub(crate) const SI_TKILL: i32 = -6;
    /// SIGSEGV: address not mapped.
    pub(crate) const SEGV_MAPERR: i32 = 1;
    /// SIGSEGV: no permission for the access.
    pub(crate) const SEGV_ACCERR: i32 = 2;
    /// SIGILL: illegal operand (what Linux reports for `#UD`).
    pub(crate) const ILL_ILLOPN: i32 = 2;
    /// SIGFPE: integer divide by zero.
    pub(crate) const FPE_INTDIV: i32 = 1;
    /// SIGFPE: floating-point invalid operation (x87/SIMD exceptions).
    pub(crate) const FPE_FLTINV: i32 = 7;
    /// SIGTRAP: trace trap.
    pub(crate) const TRAP_TRACE: i32 = 2;
    /// SIGBUS: invalid address alignment.
    pub(crate) const BUS_ADRALN: i32 = 1;
    /// SIGCHLD: the child exited.
    pub(crate) const CLD_EXITED: i32 = 1;
    /// SIGCHLD: the child was killed.
    pub(crate) const CLD_KILLED: i32 = 2;
}

fn bit(signo: u32) -> u64 {
    1u64 << (signo - 1)
}

/// Signals that can be neither caught nor blocked.
const UNBLOCKABLE: u64 = (1 << (sig::SIGKILL - 1)) | (1 << (sig::SIGSTOP - 1));
/// Signals a fault raises: delivered before any other pending signal (as Linux does).
const SYNCHRONOUS: u64 = (1 << (sig::SIGSEGV - 1))
    | (1 << (sig::SIGBUS - 1))
    | (1 << (sig::SIGILL - 1))
    | (1 << (sig::SIGTRAP - 1))
    | (1 << (sig::SIGFPE - 1))
    | (1 << (sig::SIGSYS - 1));

/// What a fault signal carries besides `si_addr`: where the program was and what it did, for
/// the signal frame's `uc_mcontext` and the kernel log's `segfault at` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fault {
    /// `si_addr`: the faulting address (page faults), else the instruction's.
    pub(crate) addr: u64,
    /// The exception vector (`uc_mcontext.trapno`).
    pub(crate) vector: u32,
    /// The exception's error code (`uc_mcontext.err`).
    pub(crate) error_code: u64,
    /// Instruction pointer of the faulting instruction.
    pub(crate) ip: u64,
    /// Stack pointer at the fault.
    pub(crate) sp: u64,
}

/// The kind-specific part of a signal's information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Sent by a process (`kill`, `tgkill`, `SIGPIPE`), or by the kernel (pid 0).
    Sender {
        /// Sending process.
        pid: i32,
        /// Its real user id.
        uid: u32,
    },
    /// `rt_sigqueueinfo`: the sender's own `siginfo_t` after the header, passed through.
    Queued([u8; 112]),
    /// A child's state change (`SIGCHLD`).
    Child {
        /// The child.
        pid: i32,
        /// Its real user id.
        uid: u32,
        /// Exit code or killing signal.
        status: i32,
        /// User CPU time in clock ticks.
        utime: i64,
        /// System CPU time in clock ticks.
        stime: i64,
    },
    /// A fault of the program itself.
    Fault(Fault),
}

/// One signal's information: what the `siginfo_t` of its delivery says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SigInfo {
    /// Signal number.
    pub(crate) signo: u32,
    /// `si_code`.
    pub(crate) code: i32,
    /// The rest.
    pub(crate) detail: Detail,
}

impl SigInfo {
    /// A signal from the kernel itself (terminal keys, a dead sandbox).
    pub(crate) const fn kernel(signo: u32) -> Self {
        Self {
            signo,
            code: code::SI_KERNEL,
            detail: Detail::Sender { pid: 0, uid: 0 },
        }
    }

    /// A signal sent by process `pid` with `code` (`SI_USER`, `SI_TKILL`).
    pub(crate) const fn from_process(signo: u32, code: i32, pid: i32) -> Self {
        Self {
            signo,
            code,
            detail: Detail::Sender { pid, uid: 0 },
        }
    }

    /// A fault signal.
    pub(crate) const fn fault(signo: u32, code: i32, fault: Fault) -> Self {
        Self {
            signo,
            code,
            detail: Detail::Fault(fault),
        }
    }

    /// The fault, for fault signals.
    pub(crate) const fn fault_info(&self) -> Option<Fault> {
        match self.detail {
            Detail::Fault(f) => Some(f),
            _ => None,
        }
    }

    /// The x86-64 `siginfo_t` (128 bytes).
    pub(crate) fn to_bytes(self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&(self.signo as i32).to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        match self.detail {
            Detail::Sender { pid, uid } => {
                b[16..20].copy_from_slice(&pid.to_le_bytes());
                b[20..24].copy_from_slice(&uid.to_le_bytes());
            }
            Detail::Queued(rest) => b[16..].copy_from_slice(&rest),
            Detail::Child {
                pid,
                uid,
                status,
                utime,
                stime,
            } => {
                b[16..20].copy_from_slice(&pid.to_le_bytes());
                b[20..24].copy_from_slice(&uid.to_le_bytes());
                b[24..28].copy_from_slice(&status.to_le_bytes());
                b[32..40].copy_from_slice(&utime.to_le_bytes());
                b[40..48].copy_from_slice(&stime.to_le_bytes());
            }
            Detail::Fault(f) => b[16..24].copy_from_slice(&f.addr.to_le_bytes()),
        }
        b
    }
}

/// One signal's action (the kernel `struct sigaction` of x86-64).
#[derive(
    Clone, Copy, Debug, Default, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(C)]
pub(crate) struct SigAction {
    /// Handler address, SIG_DFL (0) or SIG_IGN (1).
    pub(crate) handler: u64,
    /// SA_* flags.
    pub(crate) flags: u64,
    /// Return trampoline (SA_RESTORER).
    pub(crate) restorer: u64,
    /// Signals blocked while the handler runs.
    pub(crate) mask: u64,
}

impl SigAction {
    /// The default action.
    pub(crate) const DEFAULT: Self = Self {
        handler: SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
}

/// The pending signals of a thread and their information: at most one instance of a
/// standard signal, every instance of a real-time one, in the order sent.
#[derive(Default)]
struct SigQueue {
    /// A bit per pending signal.
    pending: u64,
    /// The information of the pending signals.
    entries: Vec<SigInfo>,
}

impl SigQueue {
    /// Marks `info.signo` pending with its information. A standard signal already pending
    /// is not queued twice. `Err(EAGAIN)` when the queue is full and the signal is a
    /// real-time one sent with information (as Linux); any other is then merged without.
    fn raise(&mut self, info: SigInfo) -> Result<(), Errno> {
        let signo = info.signo;
        if !(1..=sig::NSIG).contains(&signo) {
            return Ok(());
        }
        if signo < SIGRTMIN && self.pending & bit(signo) != 0 {
            return Ok(());
        }
        if self.entries.len() >= MAX_QUEUED {
            if signo >= SIGRTMIN && info.code != code::SI_USER {
                return Err(Errno::EAGAIN);
            }
        } else {
            self.entries.push(info);
        }
        self.pending |= bit(signo);
        Ok(())
    }

    /// Takes the next pending signal in `allowed`: fault signals first, then the lowest
    /// number (as Linux), with its information.
    fn dequeue(&mut self, allowed: u64) -> Option<SigInfo> {
        let ready = self.pending & allowed;
        if ready == 0 {
            return None;
        }
        let sync = ready & SYNCHRONOUS;
        let signo = (if sync != 0 { sync } else { ready }).trailing_zeros() + 1;
        let info = match self.entries.iter().position(|i| i.signo == signo) {
            Some(i) => self.entries.remove(i),
            // Merged beyond the queue limit: the information was lost.
            None => SigInfo::from_process(signo, code::SI_USER, 0),
        };
        if !self.entries.iter().any(|i| i.signo == signo) {
            self.pending &= !bit(signo);
        }
        Some(info)
    }

    /// Drops every pending instance of the signals in `set`.
    fn discard(&mut self, set: u64) {
        self.entries.retain(|i| bit(i.signo) & set == 0);
        self.pending &= !set;
    }
}

/// No mask saved (a saved mask never has the unblockable bits).
const NO_SAVED_MASK: u64 = u64::MAX;

/// A thread's signal state.
pub(crate) struct SigState {
    /// Pending signals: a copy of the queue's bits, for lock-free checks.
    pending: AtomicU64,
    blocked: AtomicU64,
    /// The pending signals and their information.
    queue: IrqLock<SigQueue>,
    /// The mask to go back to once a signal that interrupted `rt_sigsuspend`, `ppoll` or
    /// `pselect6` (which block with a temporary mask) has been handled (Linux's
    /// `saved_sigmask`), or [`NO_SAVED_MASK`]. Only the thread itself touches it.
    saved_mask: AtomicU64,
    /// Signals `rt_sigtimedwait` is waiting for (a process-directed one goes to this thread).
    waiting: AtomicU64,
    /// Alternate stack: (sp, size, flags).
    altstack: IrqLock<(u64, u64, u32)>,
    /// System call interrupted by a signal (for SA_RESTART), and its number.
    interrupted: AtomicU64,
}

impl SigState {
    /// Nothing pending, `blocked` blocked.
    pub(crate) fn new(blocked: u64) -> Self {
        Self {
            pending: AtomicU64::new(0),
            blocked: AtomicU64::new(blocked),
            queue: IrqLock::new(SigQueue::default()),
            saved_mask: AtomicU64::new(NO_SAVED_MASK),
            waiting: AtomicU64::new(0),
            altstack: IrqLock::new((0, 0, SS_DISABLE)),
            interrupted: AtomicU64::new(u64::MAX),
        }
    }

    /// Marks `info.signo` pending (see [`SigQueue::raise`]).
    pub(crate) fn raise(&self, info: SigInfo) -> Result<(), Errno> {
        let mut q = self.queue.lock();
        let r = q.raise(info);
        self.pending.store(q.pending, Ordering::Release);
        r
    }

    /// Takes the next pending signal in `allowed` (see [`SigQueue::dequeue`]).
    fn dequeue(&self, allowed: u64) -> Option<SigInfo> {
        if self.pending.load(Ordering::Acquire) & allowed == 0 {
            return None;
        }
        let mut q = self.queue.lock();
        let info = q.dequeue(allowed);
        self.pending.store(q.pending, Ordering::Release);
        info
    }

    /// Drops every pending instance of the signals in `set`.
    fn discard(&self, set: u64) {
        let mut q = self.queue.lock();
        q.discard(set);
        self.pending.store(q.pending, Ordering::Release);
    }

    /// True if a pending signal is not blocked.
    pub(crate) fn has_deliverable(&self) -> bool {
        self.pending.load(Ordering::Acquire) & !self.blocked.load(Ordering::Relaxed) != 0
    }

    /// The blocked mask.
    pub(crate) fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Records that system call `nr` returned EINTR, for `SA_RESTART`; the calls Linux never
    /// restarts (waits for events, signals or time) are not recorded.
    pub(crate) fn note_interrupted(&self, nr: u64) {
        use super::abi::nr;
        let never = matches!(
            nr,
            nr::POLL
                | nr::PPOLL
                | nr::SELECT
                | nr::PSELECT6
                | nr::EPOLL_WAIT
                | nr::EPOLL_PWAIT
                | nr::RT_SIGSUSPEND
                | nr::RT_SIGTIMEDWAIT
                | nr::PAUSE
                | nr::NANOSLEEP
                | nr::CLOCK_NANOSLEEP
        );
        if !never {
            self.interrupted.store(nr, Ordering::Relaxed);
        }
    }

    /// Blocks `mask` for the duration of a wait (`rt_sigsuspend`, `ppoll`, `pselect6`),
    /// remembering the mask to go back to.
    fn set_temporary_mask(&self, mask: u64) {
        if self.saved_mask.load(Ordering::Relaxed) == NO_SAVED_MASK {
            self.saved_mask.store(self.blocked(), Ordering::Relaxed);
        }
        self.blocked.store(mask & !UNBLOCKABLE, Ordering::Release);
    }

    /// Takes the mask saved by [`Self::set_temporary_mask`], if any.
    fn take_saved_mask(&self) -> Option<u64> {
        let m = self.saved_mask.swap(NO_SAVED_MASK, Ordering::Relaxed);
        (m != NO_SAVED_MASK).then_some(m)
    }

    /// Goes back to the mask saved by [`Self::set_temporary_mask`], if any.
    fn restore_saved_mask(&self) {
        if let Some(m) = self.take_saved_mask() {
            self.blocked.store(m, Ordering::Release);
        }
    }
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

/// Forces a synchronous fault signal: unblocks it and resets an ignored action to default
/// (like Linux `force_sig`). A fault the program does not handle is logged the way Linux
/// logs it (`prog[pid]: segfault at ...`).
pub(crate) fn force(t: &Arc<Task>, info: SigInfo) {
    let signo = info.signo;
    t.sig.blocked.fetch_and(!bit(signo), Ordering::AcqRel);
    let handled = {
        let mut a = t.process.sigactions.lock();
        if a[(signo - 1) as usize].handler == SIG_IGN {
            a[(signo - 1) as usize] = SigAction::DEFAULT;
        }
        a[(signo - 1) as usize].handler != SIG_DFL
    };
    if !handled {
        super::death::log_fatal_fault(&t.process, &info);
    }
    let _ = t.send_signal(info);
}

/// Sends `signo` from the kernel to a process (`SI_KERNEL`: terminal keys and the like).
pub(crate) fn send_to_process(p: &Arc<Process>, signo: u32) {
    let _ = send_info_to_process(p, SigInfo::kernel(signo));
}

/// Sends a signal to a process: to a thread waiting for it in `rt_sigtimedwait`, else to one
/// that does not block it, else to the first. `EAGAIN` if its queue is full (see
/// [`SigState::raise`]).
pub(crate) fn send_info_to_process(p: &Arc<Process>, info: SigInfo) -> Result<(), Errno> {
    let signo = info.signo;
    if signo == 0 {
        return Ok(());
    }
    if signo == sig::SIGKILL {
        super::death::killed(p, &info);
        return Ok(());
    }
    let threads = p.threads.lock().clone();
    let target = threads
        .iter()
        .find(|t| t.sig.waiting.load(Ordering::Acquire) & bit(signo) != 0)
        .or_else(|| threads.iter().find(|t| t.sig.blocked() & bit(signo) == 0))
        .or(threads.first())
        .cloned();
    match target {
        Some(t) => t.send_signal(info),
        None => Ok(()),
    }
}

/// Tells `parent` that `child` ended with wait status `status` (its exit signal, usually
/// `SIGCHLD`, with the child's pid, status and CPU times), then marks `child` a zombie and
/// wakes the parent's waiters: whoever reaps the child finds the signal already pending.
pub(crate) fn notify_parent(parent: &Arc<Process>, child: &Process, status: i32) {
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
    child.zombie.store(true, Ordering::Release);
    parent.child_wq.wake_all();
}

/// True if `p` ignores `signo` (explicitly, or by default action); never for SIGKILL.
pub(crate) fn is_ignored(p: &Process, signo: u32) -> bool {
    if signo == sig::SIGKILL || !(1..=sig::NSIG).contains(&signo) {
        return false;
    }
    let act = p.sigactions.lock()[(signo - 1) as usize];
    act.handler == SIG_IGN || (act.handler == SIG_DFL && !default_terminates(signo))
}

/// Default action of a signal: true = terminate, false = ignore.
fn default_terminates(signo: u32) -> bool {
    !matches!(
        signo,
        sig::SIGCHLD
            | sig::SIGCONT
            | sig::SIGURG
            | sig::SIGWINCH
            | sig::SIGSTOP
            | sig::SIGTSTP
            | sig::SIGTTIN
            | sig::SIGTTOU
    )
}

/// Delivers pending signals before returning to user code: runs default actions, or builds
/// a handler frame in `st`. `Err` if the task must exit.
pub(crate) fn deliver(t: &Arc<Task>, st: &mut UserState, fresh: &mut bool) -> Result<(), ()> {
    loop {
        let Some(info) = t.sig.dequeue(!t.sig.blocked()) else {
            t.sig.interrupted.store(u64::MAX, Ordering::Relaxed);
            // No handler ran: a wait's temporary mask ends here.
            t.sig.restore_saved_mask();
            return Ok(());
        };
        let signo = info.signo;
        let act = t.process.sigactions.lock()[(signo - 1) as usize];
        if signo == sig::SIGKILL || act.handler == SIG_DFL {
            if default_terminates(signo) {
                super::death::killed(&t.process, &info);
                return Err(());
            }
            continue;
        }
        if act.handler == SIG_IGN {
            continue;
        }
        // Restart or fail the interrupted system call.
        let interrupted = t.sig.interrupted.swap(u64::MAX, Ordering::Relaxed);
        if interrupted != u64::MAX
            && st.regs.rax == (-(Errno::EINTR.code() as i64)) as u64
            && act.flags & SA_RESTART != 0
        {
            st.regs.rax = interrupted;
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
        if act.flags & SA_RESETHAND != 0 {
            t.process.sigactions.lock()[(signo - 1) as usize] = SigAction::DEFAULT;
        }
        let mut add = act.mask;
        if act.flags & SA_NODEFER == 0 {
            add |= bit(signo);
        }
        t.sig.blocked.fetch_or(add & !UNBLOCKABLE, Ordering::AcqRel);
        return Ok(());
    }
}

/// Size of the kernel `struct ucontext` on x86-64.
const UCONTEXT_SIZE: u64 = 304;
/// Offset of `uc_mcontext` (struct sigcontext) in it.
const MCTX: u64 = 40;
/// Offset of `uc_sigmask`.
const SIGMASK_OFF: u64 = MCTX + 256;

/// Offsets in `uc_mcontext` (struct sigcontext) of `err`, `trapno` and `cr2`.
const MCTX_ERR: u64 = MCTX + 152;
const MCTX_TRAPNO: u64 = MCTX + 160;
const MCTX_CR2: u64 = MCTX + 176;

/// Builds the `rt_sigframe` for `info`'s handler on the user stack; `return_mask` is the
/// mask `rt_sigreturn` restores.
fn setup_frame(
    t: &Arc<Task>,
    st: &mut UserState,
    info: &SigInfo,
    act: &SigAction,
    return_mask: u64,
) -> Result<(), Errno> {
    let signo = info.signo;
    let r = st.regs;
    let (ss_sp, ss_size, ss_flags) = *t.sig.altstack.lock();
    let on_alt = ss_flags & SS_DISABLE == 0 && r.rsp > ss_sp && r.rsp <= ss_sp + ss_size;
    let mut sp = if act.flags & SA_ONSTACK != 0 && ss_flags & SS_DISABLE == 0 && !on_alt {
        ss_sp + ss_size
    } else {
        r.rsp - 128
    };
    sp -= 128;
    let siginfo = sp & !15;
    sp = siginfo - UCONTEXT_SIZE;
    sp &= !15;
    let uc = sp;
    let frame = uc - 8; // pretcode; (frame + 8) % 16 == 0 as for a function entry
    copy_to_user(siginfo, &info.to_bytes())?;
    // ucontext
    let mut u = [0u8; UCONTEXT_SIZE as usize];
    let mut put = |off: u64, v: u64| {
        u[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(16, ss_sp);
    put(24, u64::from(if on_alt { SS_ONSTACK } else { ss_flags }));
    put(32, ss_size);
    let g = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.rflags,
    ];
    for (i, v) in g.iter().enumerate() {
        put(MCTX + 8 * i as u64, *v);
    }
    put(MCTX + 144, 0x002b_0000_0000_0033); // cs = 0x33, ss = 0x2b
    if let Some(f) = info.fault_info() {
        put(MCTX_ERR, f.error_code);
        put(MCTX_TRAPNO, u64::from(f.vector));
        put(MCTX_CR2, f.addr);
    }
    put(SIGMASK_OFF, return_mask);
    copy_to_user(uc, &u)?;
    write_val(frame, &act.restorer)?;
    t.fp_stack.lock().push(core::mem::take(&mut st.fp));
    st.regs.rdi = u64::from(signo);
    st.regs.rsi = siginfo;
    st.regs.rdx = uc;
    st.regs.rax = 0;
    st.regs.rip = act.handler;
    st.regs.rsp = frame;
    st.regs.rflags &= !(1 << 10 | 1 << 8); // DF, TF
    Ok(())
}

/// `rt_sigreturn`: restores the state saved by [`setup_frame`].
pub(crate) fn sigreturn(t: &Arc<Task>, st: &mut UserState) -> SysResult {
    let uc = st.regs.rsp;
    let mut u = [0u8; UCONTEXT_SIZE as usize];
    if copy_from_user(uc, &mut u).is_err() {
        super::death::killed(&t.process, &SigInfo::kernel(sig::SIGSEGV));
        return Err(Errno::EFAULT);
    }
    let get = |off: u64| {
        u64::from_le_bytes(
            u[off as usize..off as usize + 8]
                .try_into()
                .unwrap_or([0; 8]),
        )
    };
    let r = &mut st.regs;
    let g: Vec<u64> = (0..18).map(|i| get(MCTX + 8 * i)).collect();
    r.r8 = g[0];
    r.r9 = g[1];
    r.r10 = g[2];
    r.r11 = g[3];
    r.r12 = g[4];
    r.r13 = g[5];
    r.r14 = g[6];
    r.r15 = g[7];
    r.rdi = g[8];
    r.rsi = g[9];
    r.rbp = g[10];
    r.rbx = g[11];
    r.rdx = g[12];
    r.rax = g[13];
    r.rcx = g[14];
    r.rsp = g[15];
    r.rip = g[16];
    r.rflags = (g[17] & RFLAGS_USER_MASK) | 0x202;
    t.sig
        .blocked
        .store(get(SIGMASK_OFF) & !UNBLOCKABLE, Ordering::Release);
    st.fp = t.fp_stack.lock().pop().unwrap_or_default();
    Ok(st.regs.rax)
}

/// Resets actions for `execve` (handlers become default; ignored stay ignored).
pub(crate) fn reset_on_exec(t: &Arc<Task>) {
    let mut a = t.process.sigactions.lock();
    for act in a.iter_mut() {
        if act.handler != SIG_IGN {
            *act = SigAction::DEFAULT;
        }
    }
    *t.sig.altstack.lock() = (0, 0, SS_DISABLE);
    t.fp_stack.lock().clear();
}

/// `rt_sigaction(signo, act, oldact, sigsetsize)`.
pub(crate) fn sys_rt_sigaction(signo: u64, act: u64, old: u64, size: u64) -> SysResult {
    if size != 8 || signo == 0 || signo > u64::from(sig::NSIG) {
        return Err(Errno::EINVAL);
    }
    let signo = signo as u32;
    let p = task::current_process();
    let new = if act != 0 {
        if signo == sig::SIGKILL || signo == sig::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        Some(read_val::<SigAction>(act)?)
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
        for t in p.threads.lock().iter() {
            t.sig.discard(bit(signo));
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
        let s: u64 = read_val(set)?;
        let n = match how {
            0 => cur | s,
            1 => cur & !s,
            2 => s,
            _ => return Err(Errno::EINVAL),
        };
        t.sig.blocked.store(n & !UNBLOCKABLE, Ordering::Release);
    }
    if old != 0 {
        write_val(old, &cur)?;
    }
    Ok(0)
}

/// `rt_sigpending(set, size)`.
pub(crate) fn sys_rt_sigpending(set: u64) -> SysResult {
    let t = task::current_task();
    write_val(
        set,
        &(t.sig.pending.load(Ordering::Acquire) & t.sig.blocked()),
    )?;
    Ok(0)
}

/// `sigaltstack(ss, old_ss)`.
pub(crate) fn sys_sigaltstack(ss: u64, old: u64) -> SysResult {
    let t = task::current_task();
    let cur = *t.sig.altstack.lock();
    if old != 0 {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&cur.0.to_le_bytes());
        b[8..12].copy_from_slice(&cur.2.to_le_bytes());
        b[16..24].copy_from_slice(&cur.1.to_le_bytes());
        copy_to_user(old, &b)?;
    }
    if ss != 0 {
        let mut b = [0u8; 24];
        copy_from_user(ss, &mut b)?;
        let sp = u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        let flags = u32::from_le_bytes(b[8..12].try_into().unwrap_or([0; 4]));
        let size = u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8]));
        if flags & !(SS_DISABLE | (1 << 31)) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & SS_DISABLE == 0 && size < 2048 {
            return Err(Errno::ENOMEM);
        }
        *t.sig.altstack.lock() = (sp, size, flags & SS_DISABLE);
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
    let info = SigInfo::from_process(signo, code::SI_USER, me.pid);
    for p in targets {
        let _ = send_info_to_process(&p, info);
    }
    Ok(0)
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
    let mut raw = [0u8; 128];
    copy_from_user(uinfo, &mut raw)?;
    let code = i32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
    if (code >= 0 || code == code::SI_TKILL) && to != task::current_process().pid {
        return Err(Errno::EPERM);
    }
    let mut rest = [0u8; 112];
    rest.copy_from_slice(&raw[16..]);
    Ok(SigInfo {
        signo,
        code,
        detail: Detail::Queued(rest),
    })
}

/// `rt_sigqueueinfo(pid, sig, info)` (`sigqueue`).
pub(crate) fn sys_rt_sigqueueinfo(pid: i64, signo: u64, uinfo: u64) -> SysResult {
    if signo > u64::from(sig::NSIG) {
        return Err(Errno::EINVAL);
    }
    let p = task::find_process(pid as i32)
        .filter(|p| pid > 0 && !p.zombie.load(Ordering::Acquire))
        .ok_or(Errno::ESRCH)?;
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
    let m: u64 = read_val(mask)?;
    t.sig.set_temporary_mask(m);
    sleep_for_signal(&t);
    // The signal's delivery restores the saved mask (see `deliver`).
    Err(Errno::EINTR)
}

/// Runs the wait `f` of `ppoll`/`pselect6` with the signal mask `mask` in force (if any):
/// set atomically with respect to signal delivery, and restored on return — unless the wait
/// was interrupted by a signal, which is then delivered first, with `mask` still in force,
/// and its `rt_sigreturn` restores the mask (Linux's `restore_saved_sigmask_unless`).
pub(crate) fn with_temporary_mask(mask: Option<u64>, f: impl FnOnce() -> SysResult) -> SysResult {
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
    let wanted: u64 = read_val::<u64>(set)? & !UNBLOCKABLE;
    let deadline = if timeout == 0 {
        u64::MAX
    } else {
        crate::time::now_ns().saturating_add(super::futex::read_timespec(timeout)?)
    };
    t.sig.waiting.store(wanted, Ordering::Release);
    let got = loop {
        if let Some(info) = t.sig.dequeue(wanted) {
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
        if t.sig.pending.load(Ordering::Acquire) & wanted != 0 || t.signal_pending() {
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

    /// `si_code` of `sigqueue`.
    const SI_QUEUE: i32 = -1;

    fn i32_at(b: &[u8], o: usize) -> i32 {
        i32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn siginfo_layouts() {
        let b = SigInfo::from_process(sig::SIGUSR1, code::SI_USER, 42).to_bytes();
        assert_eq!((i32_at(&b, 0), i32_at(&b, 8)), (10, 0));
        assert_eq!((i32_at(&b, 16), i32_at(&b, 20)), (42, 0));
        let c = SigInfo {
            signo: sig::SIGCHLD,
            code: code::CLD_KILLED,
            detail: Detail::Child {
                pid: 7,
                uid: 0,
                status: 9,
                utime: 3,
                stime: 4,
            },
        }
        .to_bytes();
        assert_eq!((i32_at(&c, 0), i32_at(&c, 8)), (17, 2));
        assert_eq!((i32_at(&c, 16), i32_at(&c, 24)), (7, 9));
        assert_eq!(i64::from_le_bytes(c[32..40].try_into().unwrap()), 3);
        assert_eq!(i64::from_le_bytes(c[40..48].try_into().unwrap()), 4);
        let f = SigInfo::fault(
            sig::SIGSEGV,
            code::SEGV_MAPERR,
            Fault {
                addr: 0xdead_0000,
                ..Fault::default()
            },
        )
        .to_bytes();
        assert_eq!(
            u64::from_le_bytes(f[16..24].try_into().unwrap()),
            0xdead_0000
        );
    }

    #[test]
    fn queue_merges_standard_signals_and_queues_realtime_ones() {
        let mut q = SigQueue::default();
        let from = |pid| SigInfo::from_process(sig::SIGUSR1, code::SI_USER, pid);
        q.raise(from(5)).unwrap();
        q.raise(from(6)).unwrap();
        let rt = |pid| SigInfo::from_process(40, SI_QUEUE, pid);
        q.raise(rt(1)).unwrap();
        q.raise(rt(2)).unwrap();
        // A fault signal goes first, whatever its number.
        q.raise(SigInfo::fault(sig::SIGSEGV, 1, Fault::default()))
            .unwrap();
        assert_eq!(q.dequeue(!0).map(|i| i.signo), Some(sig::SIGSEGV));
        assert_eq!(q.dequeue(!0), Some(from(5)));
        // Blocked ones stay.
        assert_eq!(q.dequeue(!bit(40)), None);
        assert_eq!(q.dequeue(!0), Some(rt(1)));
        assert_ne!(q.pending, 0);
        assert_eq!(q.dequeue(!0), Some(rt(2)));
        assert_eq!(q.dequeue(!0), None);
        assert_eq!(q.pending, 0);
        q.raise(rt(3)).unwrap();
        q.raise(from(7)).unwrap();
        q.discard(bit(40));
        assert_eq!(q.dequeue(!0), Some(from(7)));
        assert_eq!(q.dequeue(!0), None);
    }

    #[test]
    fn full_queue_refuses_realtime_signals_with_information() {
        let mut q = SigQueue::default();
        for i in 0..MAX_QUEUED {
            q.raise(SigInfo::from_process(40, SI_QUEUE, i as i32))
                .unwrap();
        }
        assert_eq!(
            q.raise(SigInfo::from_process(41, SI_QUEUE, 1)),
            Err(Errno::EAGAIN)
        );
        // kill() of a standard signal still gets through, without its information.
        q.raise(SigInfo::from_process(sig::SIGUSR2, code::SI_USER, 9))
            .unwrap();
        assert_eq!(
            q.dequeue(bit(sig::SIGUSR2)),
            Some(SigInfo::from_process(sig::SIGUSR2, code::SI_USER, 0))
        );
    }

    #[test]
    fn temporary_mask_is_restored() {
        let s = SigState::new(bit(sig::SIGUSR1));
        s.set_temporary_mask(0);
        assert_eq!(s.blocked(), 0);
        // A nested temporary mask keeps the first saved one.
        s.set_temporary_mask(bit(sig::SIGKILL) | bit(sig::SIGUSR2));
        assert_eq!(s.blocked(), bit(sig::SIGUSR2), "SIGKILL cannot be blocked");
        s.restore_saved_mask();
        assert_eq!(s.blocked(), bit(sig::SIGUSR1));
        assert_eq!(s.take_saved_mask(), None);
    }
}
