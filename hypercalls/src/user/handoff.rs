//! The hand-off of a [`UserSlot`] between a guest kernel and the user sandbox's slot thread:
//! both halves of the protocol, defined once (docs/ABI.md §16.4 is the prose specification).
//!
//! The guest kernel uses [`KernelSlot`], the user stub [`UserSide`] (with one [`OpsOrder`]
//! per sandbox process), and `tools/tests/user_stub.rs` plays the guest kernel with
//! [`KernelSlot`] too. What differs between them comes from two traits each side implements:
//! [`SlotMem`], how it reaches the slot's memory, and [`Waiter`] (shared with the doorbell), its
//! clock and futexes.
//!
//! ```text
//!  kernel                                          user (the slot's thread)
//!  write the request: ops, nr_ops, ops_seq,        (waiting for a new grant: spin
//!    command; for RUN regs, fs_base, slice_ns,       USER_SPIN_NS, then user_waiting = 1
//!    fpstate, fp_len, fp_init                        and futex-wait on the grant word,
//!  run_seq += 1 (skipping 0)                         re-checking; leave if the space is dead)
//!  grant = run_seq                   ──────►
//!  if user_waiting: wake(grant)                    validate command, nr_ops
//!                                                  wait for batch ops_seq - 1 (other slots)
//!                                                  apply ops[..nr_ops]; batch ops_seq applied
//!                                                  wait for every batch up to ops_seq
//!                                                  OPS_ONLY: reply OpsDone
//!                                                  RUN: load the state, run user code ... trap:
//!  (waiting for done_seq == run_seq: spin            save regs, fs_base, fpstate, exit_*
//!   KERNEL_SPIN_NS, then kernel_waiting = 1  ◄────── exit_reason = why
//!   and futex-wait on done_seq in slices of          done_seq = run_seq
//!   KERNEL_WAIT_SLICE_NS; give up when the           if kernel_waiting: wake(done_seq)
//!   header says dead or after a timeout)
//!  grant = 0; read and validate the reply once
//! ```
//!
//! The slot thread serves only what the slot's **grant word** names (in the space's grant
//! page, kernel memory the program cannot write: [`super::grant`]), each grant once; a
//! `run_seq` the program bumped itself is never served.
//!
//! Who writes what: the kernel writes `run_seq`, the grant word, `kernel_waiting` and the request fields
//! (`command`, `nr_ops`, `ops_seq`, `ops`, `slice_ns`, `fp_len`, `fp_init`; `regs`, `fs_base`
//! and `fpstate` as the request); the user side writes `done_seq`, `user_waiting`, the result
//! fields (`exit_*`, `op_failed`, `op_errno`, `fp_saved_len`; `regs`, `fs_base` and `fpstate`
//! as the result) and the counters; the host writes `exit_reason = Dead` and
//! `done_seq = run_seq` when the sandbox has died ([`mark_dead`]), then the header's `dead`. Each side announces
//! sleeping *before* its last check (store, full fence, load) and publishes *before* it looks
//! at the other side's flag, so no wake-up is lost.
//!
//! **Nothing in a slot can be trusted by the kernel half**: the user program can write its
//! own slots at any time. So [`SlotMem`] has no way to form a Rust reference over a plain
//! field (only the atomic hand-off words and counters are shared as atomics), every field is
//! copied once, and [`KernelSlot::reply`] validates what it copied: an unknown exit reason, or
//! one that does not answer the command, is [`HandOffError::Garbage`]; lengths are clamped.
//! A program that scribbles on its slot only confuses its own thread's state, or makes the
//! kernel give up on the space ([`HandOffError::Timeout`]).

use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::grant::next_grant;
use super::{
    command, in_user_window, op, prot, user_stat, UserExit, UserOp, UserSlot, USER_FPSTATE_MAX,
    USER_OPS_MAX,
};
use crate::{TrapFrame, PAGE_SIZE};

use crate::doorbell::peer_on_my_cpu;
pub use crate::doorbell::Waiter;

/// How long the kernel spins for a reply before it sleeps (ns). (An adaptive budget that
/// shrank after sleeps was measured: once below the user side's turnaround it never
/// recovered, and every system call paid a futex wake-up: 7-10 µs instead of 4 µs.)
///
/// Both spins outlast a cross-CPU futex wake-up, which the side that slept costs its peer:
/// 35 µs median, 120 µs p99 on a nested AMD EPYC cloud host (`native.futex_pingpong.
/// cross_core`), where 30 µs and 20 µs made a page fault or a host file read of a program
/// pay two such wake-ups. 100 µs each: `python3 -c pass` in a guest 41.5–45 → 38 ms
/// (medians of 30–40 alternated runs), a fork+exec loop 52.5 → 46.5 ms (docs/BENCHMARKS.md).
/// A spin stops at once when the peer shares its CPU (`peer_on_my_cpu`).
pub const KERNEL_SPIN_NS: u64 = 100_000;
/// Longest single sleep of the kernel on `done_seq` (ns): it re-checks the header's `dead`
/// flag and its timeout in between, even if a wake-up was missed.
pub const KERNEL_WAIT_SLICE_NS: u64 = 20_000_000;
/// How long a slot thread spins for its next request, or for an earlier batch, before it
/// sleeps (ns): see [`KERNEL_SPIN_NS`].
pub const USER_SPIN_NS: u64 = 100_000;
/// How long a slot thread spins for its next grant (ns): [`USER_SPIN_NS`], except before its
/// first one (`last` = 0), which it waits for asleep.
///
/// A new sandbox's threads all wait for a first grant, and most of them never get one soon:
/// a `fork` child runs on one vCPU, and the other slots' threads spun their whole budget for
/// nothing, on CPUs the child, its parent and the host's spawn of the next spare were
/// waiting for. Asleep, the slot that is granted costs the kernel one futex wake-up instead.
/// A `fork`/`_exit`/`wait` loop on a 2-CPU host: 458–591 µs a round before, 372–441 µs
/// after (docs/BENCHMARKS.md).
pub const fn first_wait_spin(last: u32) -> u64 {
    if last == 0 {
        0
    } else {
        USER_SPIN_NS
    }
}
/// Longest single sleep of a slot thread waiting for an earlier batch (ns): it re-checks
/// `dead` in between.
pub const ORDER_WAIT_SLICE_NS: u64 = 10_000_000;
/// Spin iterations between two clock reads.
const SPIN_CLOCK_EVERY: u32 = 64;
/// How long the kernel spins for an exit's FPU image that is still being written
/// ([`UserSlot::fp_pending`]) before it sleeps on the word (ns): the user side writes it
/// right after its report, in well under a microsecond, unless the host preempted it.
pub const FP_SPIN_NS: u64 = 20_000;
/// Longest single sleep on `fp_pending` (ns): the user side does not wake the kernel (the
/// wait is rare and short), so the kernel polls.
pub const FP_WAIT_SLICE_NS: u64 = 100_000;

/// Adds `n` to a counter of [`UserSlot::stats`] as its one writer, the slot's thread: a load
/// and a store, not a locked add. The kernel reads the line these counters share at every
/// reply, so each locked add waited for the line to come back from the kernel's CPU (three
/// per system call: ≈ 100 ns of a patched `getppid`); plain stores let the fetch overlap with
/// the rest of the exit. (The program can write its own slot: it only skews its own figures,
/// as before.)
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Linux `EINVAL`: what the user side reports for a request or operation it refuses.
pub const EINVAL: u32 = 22;

/// The atomic hand-off words of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// [`UserSlot::run_seq`]: written by the kernel; the user side's futex word.
    RunSeq,
    /// [`UserSlot::done_seq`]: written by the user side (the host on death); the kernel's
    /// futex word.
    DoneSeq,
    /// [`UserSlot::user_waiting`]: written by the user side.
    UserWaiting,
    /// [`UserSlot::kernel_waiting`]: written by the kernel.
    KernelWaiting,
    /// [`UserSlot::user_cpu`]: written by the user side (a hint).
    UserCpu,
    /// [`UserSlot::kernel_cpu`]: written by the kernel (a hint).
    KernelCpu,
    /// [`UserSlot::fp_pending`]: written by the user side; the kernel may sleep on it.
    FpPending,
}

impl Word {
    /// Byte offset of the word in the slot (what a side that addresses the slot by
    /// guest-physical address adds to the slot's address).
    pub const fn offset(self) -> usize {
        match self {
            Self::RunSeq => offset_of!(UserSlot, run_seq),
            Self::DoneSeq => offset_of!(UserSlot, done_seq),
            Self::UserWaiting => offset_of!(UserSlot, user_waiting),
            Self::KernelWaiting => offset_of!(UserSlot, kernel_waiting),
            Self::UserCpu => offset_of!(UserSlot, user_cpu),
            Self::KernelCpu => offset_of!(UserSlot, kernel_cpu),
            Self::FpPending => offset_of!(UserSlot, fp_pending),
        }
    }
}

/// How one side reaches one slot of a context region (and the region's `dead` flag).
///
/// The slot is memory the other process — and, on the kernel's side, a hostile user program —
/// writes concurrently. Implementations reach the plain fields only by copying (volatile or
/// otherwise opaque accesses, never a Rust reference over them); the hand-off words and the
/// counters are shared as atomics, which is what they are.
pub trait SlotMem {
    /// The hand-off word `w`.
    fn word(&self, w: Word) -> &AtomicU32;
    /// Counter `index` (< 8) of [`UserSlot::stats`].
    fn counter(&self, index: usize) -> &AtomicU64;
    /// Copies `buf.len()` bytes at byte offset `off` of the slot into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]);
    /// Copies `data` to byte offset `off` of the slot.
    fn write(&self, off: usize, data: &[u8]);
    /// Whether the host has marked the sandbox dead ([`super::UserCtxHeader::dead`]).
    fn dead(&self) -> bool;
    /// The slot's grant word ([`UserGrant::grant`](super::grant::UserGrant::grant)): in
    /// guest-kernel memory, written only by the kernel (read-only in the user sandbox).
    fn grant(&self) -> &AtomicU32;
}

// Byte offsets of the plain fields.
const COMMAND: usize = offset_of!(UserSlot, command);
const NR_OPS: usize = offset_of!(UserSlot, nr_ops);
const FS_BASE: usize = offset_of!(UserSlot, fs_base);
const SLICE_NS: usize = offset_of!(UserSlot, slice_ns);
const FP_LEN: usize = offset_of!(UserSlot, fp_len);
const FP_INIT: usize = offset_of!(UserSlot, fp_init);
const EXIT_REASON: usize = offset_of!(UserSlot, exit_reason);
const EXIT_VECTOR: usize = offset_of!(UserSlot, exit_vector);
const EXIT_ERROR_CODE: usize = offset_of!(UserSlot, exit_error_code);
const EXIT_ADDR: usize = offset_of!(UserSlot, exit_addr);
const OP_FAILED: usize = offset_of!(UserSlot, op_failed);
const OP_ERRNO: usize = offset_of!(UserSlot, op_errno);
const FP_SAVED_LEN: usize = offset_of!(UserSlot, fp_saved_len);
const REGS: usize = offset_of!(UserSlot, regs);
const OPS_SEQ: usize = offset_of!(UserSlot, ops_seq);
const OPS: usize = offset_of!(UserSlot, ops);
/// Byte offset of [`UserSlot::fpstate`] (the FPU image, [`USER_FPSTATE_MAX`] bytes).
pub const FPSTATE: usize = offset_of!(UserSlot, fpstate);

/// Copies a field of type `T` out of the slot (once).
fn get<T: FromBytes + IntoBytes>(m: &(impl SlotMem + ?Sized), off: usize) -> T {
    let mut v = T::new_zeroed();
    m.read(off, v.as_mut_bytes());
    v
}

/// Copies `v` into a field of the slot.
fn put<T: IntoBytes + Immutable>(m: &(impl SlotMem + ?Sized), off: usize, v: &T) {
    m.write(off, v.as_bytes());
}

/// Spins (bounded by `budget_ns`) until `done()` (true), or until the budget is spent or the
/// other side's published CPU (`peer`) is this thread's own (false; this thread publishes its
/// CPU in `mine`, see [`peer_on_my_cpu`]).
fn spin_apart_until(
    w: &(impl Waiter + ?Sized),
    budget_ns: u64,
    mine: &AtomicU32,
    peer: &AtomicU32,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = w.now_ns().saturating_add(budget_ns);
    let mut i = 0u32;
    loop {
        if done() {
            return true;
        }
        core::hint::spin_loop();
        i = i.wrapping_add(1);
        if i.is_multiple_of(SPIN_CLOCK_EVERY)
            && (w.now_ns() > deadline || peer_on_my_cpu(w, mine, peer))
        {
            return false;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel half.
// ---------------------------------------------------------------------------------------------

/// What a request asks the slot thread to do with user code.
#[derive(Clone, Copy, Debug)]
pub struct RunRequest<'a> {
    /// User registers to load (`vector`, `error_code`, `fault_addr` are ignored).
    pub regs: TrapFrame,
    /// FS base to load.
    pub fs_base: u64,
    /// Arm the slice timer to fire this many ns from now (0: leave it as it is).
    pub slice_ns: u64,
    /// FPU image to load (at most [`USER_FPSTATE_MAX`] bytes are sent); empty: keep the
    /// thread's state, or reset it with `fp_init`.
    pub fp: &'a [u8],
    /// With an empty `fp`: reset the FPU state to its initial configuration.
    pub fp_init: bool,
    /// The slot still holds, from this thread's last exit, every register of `regs` but
    /// `rax` (no other request ran on the slot since): only `rax` is written. The user
    /// side reads the whole `regs` as always; this spares the kernel writing, and the user
    /// side's CPU fetching, the two cache lines of the rest (a system call's return).
    pub regs_kept: bool,
}

/// One request of the kernel to a slot.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Operations to apply first (at most [`USER_OPS_MAX`]; more is a caller bug and panics).
    pub ops: &'a [UserOp],
    /// The batch number of `ops` in the space's order ([`UserSlot::ops_seq`]), or with no
    /// operations the number of the last batch taken before; 0: unordered.
    pub ops_seq: u64,
    /// `Some`: [`command::RUN`] user code with this state; `None`: [`command::OPS_ONLY`].
    pub run: Option<RunRequest<'a>>,
}

/// Why user code came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A system call (number in `regs.rax`).
    Syscall {
        /// It trapped (`SIGSYS`); false if it came through the patch entry
        /// (`exit_addr` == [`super::patch::SYSCALL_FROM_ENTRY`]).
        trapped: bool,
    },
    /// An exception.
    Exception {
        /// Vector (not validated: compare it with [`crate::Vector`] values).
        vector: u32,
        /// Error code.
        error_code: u64,
        /// Fault address.
        addr: u64,
    },
    /// The time slice ended.
    Interrupt,
}

/// What a `RUN` request brought back (copied once; the values are whatever the slot held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Returned {
    /// Why user code stopped.
    pub exit: Exit,
    /// User registers (`vector`, `error_code` and `fault_addr` zeroed).
    pub regs: TrapFrame,
    /// FS base.
    pub fs_base: u64,
    /// Bytes of FPU image saved in the slot, at most [`USER_FPSTATE_MAX`]: read them with
    /// [`KernelSlot::read_fp`] once [`KernelSlot::wait_fp`] says they are all there.
    pub fp_len: usize,
    /// TSC ticks user code ran during the request, as the user side counted them
    /// (untrusted: clamp it to what the kernel measured).
    pub user_ticks: u64,
    /// The user side's tick counter after the request ([`KernelSlot::with_user_ticks`]).
    pub user_ticks_total: u64,
}

/// A slot's answer to a request.
// No allocator to box the large variant (and it is moved once per request).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The operations of an `OPS_ONLY` request are in force.
    OpsDone,
    /// User code ran and came back.
    Ran(Returned),
}

/// Why a request got no valid answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOffError {
    /// The sandbox is gone (the header's `dead` flag, or the host's `Dead` reply).
    Dead,
    /// No answer within the caller's timeout: a hostile program can keep its slot from
    /// answering, so the caller must treat the space as dead.
    Timeout,
    /// The user side refused operation `index` (`u32::MAX`: the request as a whole) with
    /// `errno`; nothing after it was applied and no user code ran.
    OpFailed {
        /// The operation's index.
        index: u32,
        /// Its (positive) errno.
        errno: u32,
    },
    /// An exit reason that is unknown or does not answer the request.
    Garbage {
        /// The raw `exit_reason`.
        reason: u32,
    },
}

impl fmt::Display for HandOffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dead => write!(f, "the user sandbox is dead"),
            Self::Timeout => write!(f, "the user sandbox did not answer in time"),
            Self::OpFailed { index, errno } => {
                write!(f, "operation {index} failed with errno {errno}")
            }
            Self::Garbage { reason } => write!(f, "invalid exit reason {reason}"),
        }
    }
}

impl core::error::Error for HandOffError {}

/// A request handed over and not yet answered.
#[derive(Debug)]
#[must_use = "a handed-over slot must be waited for"]
pub struct Pending {
    seq: u32,
    ops_only: bool,
    ticks_before: u64,
}

impl Pending {
    /// The request's `run_seq`.
    pub const fn seq(&self) -> u32 {
        self.seq
    }
}

/// The kernel half of one slot.
#[derive(Clone, Copy, Debug)]
pub struct KernelSlot<'a, M: ?Sized> {
    mem: &'a M,
    /// The user side's [`user_stat::USER_TICKS`] as the last reply on the slot left it, if
    /// the caller knows it ([`KernelSlot::with_user_ticks`]).
    ticks_known: Option<u64>,
}

impl<'a, M: SlotMem + ?Sized> KernelSlot<'a, M> {
    /// The kernel half on the slot `mem` reaches.
    pub const fn new(mem: &'a M) -> Self {
        Self {
            mem,
            ticks_known: None,
        }
    }

    /// Counts the next request's user time from `ticks`, the [`Returned::user_ticks_total`]
    /// of the slot's last reply, instead of reading the counter when it hands the slot over:
    /// the user side wrote that line at its last exit, and reading it would fetch it to this
    /// CPU once more per request. (The user side adds to it only while it has the slot; a
    /// program that writes it only skews its own user time, which the kernel clamps.)
    #[must_use]
    pub const fn with_user_ticks(mut self, ticks: Option<u64>) -> Self {
        self.ticks_known = ticks;
        self
    }

    /// Writes `req` into the slot, hands it over, waits at most `timeout_ns` for the answer
    /// and reads it.
    pub fn hand_over(
        &self,
        w: &(impl Waiter + ?Sized),
        req: &Request<'_>,
        timeout_ns: u64,
    ) -> Result<Reply, HandOffError> {
        self.hand_over_from(w, req, timeout_ns, w.now_ns())
    }

    /// [`Self::hand_over`], the wait's timeout counted from `now_ns` (`w.now_ns()` the caller
    /// read just before: one clock read less per request).
    pub fn hand_over_from(
        &self,
        w: &(impl Waiter + ?Sized),
        req: &Request<'_>,
        timeout_ns: u64,
        now_ns: u64,
    ) -> Result<Reply, HandOffError> {
        self.write_request(req);
        let pending = self.ring(w, req.run.is_none());
        let waited = self.wait_from(w, &pending, timeout_ns, now_ns);
        // Back (or given up): the thread may not serve this request any more.
        self.revoke();
        waited?;
        self.reply(&pending)
    }

    /// Takes the slot's grant back (`grant = 0`): after the reply, or when the kernel gives
    /// up on the request.
    pub fn revoke(&self) {
        self.mem.grant().store(0, SeqCst);
    }

    /// Writes the request fields (the slot must be the kernel's: `done_seq == run_seq`).
    pub fn write_request(&self, req: &Request<'_>) {
        let m = self.mem;
        assert!(req.ops.len() <= USER_OPS_MAX, "too many operations");
        if !req.ops.is_empty() {
            m.write(OPS, req.ops.as_bytes());
        }
        put(m, NR_OPS, &(req.ops.len() as u32));
        // Its own line, which only the kernel writes: left alone while it holds the value
        // (most requests carry no operations), it stays in the user side's cache.
        if get::<u64>(m, OPS_SEQ) != req.ops_seq {
            put(m, OPS_SEQ, &req.ops_seq);
        }
        let cmd = match &req.run {
            None => command::OPS_ONLY,
            Some(run) => {
                if run.regs_kept {
                    put(m, REGS + offset_of!(TrapFrame, rax), &run.regs.rax);
                } else {
                    put(m, REGS, &run.regs);
                }
                put(m, FS_BASE, &run.fs_base);
                put(m, SLICE_NS, &run.slice_ns);
                let fp = &run.fp[..run.fp.len().min(USER_FPSTATE_MAX)];
                if !fp.is_empty() {
                    m.write(FPSTATE, fp);
                }
                put(m, FP_LEN, &(fp.len() as u32));
                put(m, FP_INIT, &u32::from(run.fp_init && fp.is_empty()));
                command::RUN
            }
        };
        put(m, COMMAND, &cmd);
    }

    /// Writes a raw `command` (tests of the user side's validation).
    pub fn write_raw_command(&self, cmd: u32) {
        put(self.mem, COMMAND, &cmd);
    }

    /// Hands the slot over: publishes the next `run_seq` (never 0), then grants it
    /// (`grant = run_seq`), and wakes the user thread — which sleeps on the grant word — if it
    /// sleeps. `ops_only`: the request written is `OPS_ONLY` (so only `OpsDone` answers it).
    pub fn ring(&self, w: &(impl Waiter + ?Sized), ops_only: bool) -> Pending {
        let m = self.mem;
        let run = m.word(Word::RunSeq);
        let seq = super::grant::next_seq(run.load(Relaxed));
        let ticks_before = match self.ticks_known {
            Some(t) => t,
            None => m.counter(user_stat::USER_TICKS).load(Relaxed),
        };
        // Where this thread waits for the answer (a hint for the user side's spinning).
        let _ = peer_on_my_cpu(w, m.word(Word::KernelCpu), m.word(Word::UserCpu));
        run.store(seq, SeqCst);
        let grant = m.grant();
        grant.store(seq, SeqCst);
        if m.word(Word::UserWaiting).load(SeqCst) != 0 {
            w.wake(grant, u32::MAX);
        }
        Pending {
            seq,
            ops_only,
            ticks_before,
        }
    }

    /// Waits until the slot comes back: spins up to [`KERNEL_SPIN_NS`], then sleeps on
    /// `done_seq` in slices of [`KERNEL_WAIT_SLICE_NS`]. `Err(Dead)` as soon as the header says
    /// the sandbox is dead (checked after publishing and before every sleep, so a death the
    /// host marked after it read `run_seq` is not missed), `Err(Timeout)` after `timeout_ns`.
    pub fn wait(
        &self,
        w: &(impl Waiter + ?Sized),
        pending: &Pending,
        timeout_ns: u64,
    ) -> Result<(), HandOffError> {
        self.wait_from(w, pending, timeout_ns, w.now_ns())
    }

    /// [`Self::wait`], its timeout and spin counted from `start` (a `w.now_ns()`).
    fn wait_from(
        &self,
        w: &(impl Waiter + ?Sized),
        pending: &Pending,
        timeout_ns: u64,
        start: u64,
    ) -> Result<(), HandOffError> {
        let m = self.mem;
        let done = m.word(Word::DoneSeq);
        let waiting = m.word(Word::KernelWaiting);
        let (my_cpu, peer_cpu) = (m.word(Word::KernelCpu), m.word(Word::UserCpu));
        let seq = pending.seq;
        let mut slept = false;
        let mut i = 0u32;
        loop {
            if done.load(Acquire) == seq {
                return Ok(());
            }
            if m.dead() {
                return Err(HandOffError::Dead);
            }
            if !slept {
                i = i.wrapping_add(1);
                if !i.is_multiple_of(SPIN_CLOCK_EVERY) {
                    core::hint::spin_loop();
                    continue;
                }
            }
            let waited = w.now_ns().saturating_sub(start);
            if waited > timeout_ns {
                return Err(HandOffError::Timeout);
            }
            if !slept && waited < KERNEL_SPIN_NS && !peer_on_my_cpu(w, my_cpu, peer_cpu) {
                core::hint::spin_loop();
                continue;
            }
            slept = true;
            waiting.store(1, SeqCst);
            let seen = done.load(SeqCst);
            if seen != seq && !m.dead() {
                let left = timeout_ns - waited;
                w.wait(done, seen, Some(left.clamp(1, KERNEL_WAIT_SLICE_NS)));
            }
            waiting.store(0, Relaxed);
        }
    }

    /// Reads the answer to `pending` (after [`KernelSlot::wait`]) once and validates it.
    pub fn reply(&self, pending: &Pending) -> Result<Reply, HandOffError> {
        let m = self.mem;
        let reason: u32 = get(m, EXIT_REASON);
        let exit = match UserExit::from_raw(reason) {
            Some(UserExit::OpsDone) if pending.ops_only => return Ok(Reply::OpsDone),
            Some(UserExit::Dead) => return Err(HandOffError::Dead),
            Some(UserExit::OpFailed) => {
                return Err(HandOffError::OpFailed {
                    index: get(m, OP_FAILED),
                    errno: get(m, OP_ERRNO),
                })
            }
            Some(UserExit::Syscall) if !pending.ops_only => Exit::Syscall {
                trapped: get::<u64>(m, EXIT_ADDR) != super::patch::SYSCALL_FROM_ENTRY,
            },
            Some(UserExit::Exception) if !pending.ops_only => Exit::Exception {
                vector: get(m, EXIT_VECTOR),
                error_code: get(m, EXIT_ERROR_CODE),
                addr: get(m, EXIT_ADDR),
            },
            Some(UserExit::Interrupt) if !pending.ops_only => Exit::Interrupt,
            _ => return Err(HandOffError::Garbage { reason }),
        };
        let mut regs: TrapFrame = get(m, REGS);
        regs.vector = 0;
        regs.error_code = 0;
        regs.fault_addr = 0;
        let fp_saved: u32 = get(m, FP_SAVED_LEN);
        let ticks = m.counter(user_stat::USER_TICKS).load(Relaxed);
        Ok(Reply::Ran(Returned {
            exit,
            regs,
            fs_base: get(m, FS_BASE),
            fp_len: (fp_saved as usize).min(USER_FPSTATE_MAX),
            user_ticks: ticks.wrapping_sub(pending.ticks_before),
            user_ticks_total: ticks,
        }))
    }

    /// Copies the first `out.len()` (at most [`USER_FPSTATE_MAX`]) bytes of the saved FPU
    /// image into `out`. The last exit's image may still be on its way
    /// ([`UserSlot::fp_pending`]): call [`Self::wait_fp`] first.
    pub fn read_fp(&self, out: &mut [u8]) {
        let n = out.len().min(USER_FPSTATE_MAX);
        self.mem.read(FPSTATE, &mut out[..n]);
    }

    /// Whether the last exit's FPU image is still being written ([`UserSlot::fp_pending`]).
    pub fn fp_pending(&self) -> bool {
        self.mem.word(Word::FpPending).load(Acquire) != 0
    }

    /// Waits until the user side has written the last exit's FPU image (it writes a patched
    /// call's image after its report): spins up to [`FP_SPIN_NS`], then sleeps in slices of
    /// [`FP_WAIT_SLICE_NS`], for at most `timeout_ns`. `Err(Dead)` if the sandbox died first,
    /// `Err(Timeout)` if it never finished (a program that wrote `fp_pending` itself): the
    /// slot then holds what only that program's own threads are made of.
    pub fn wait_fp(&self, w: &(impl Waiter + ?Sized), timeout_ns: u64) -> Result<(), HandOffError> {
        let m = self.mem;
        let pending = m.word(Word::FpPending);
        if pending.load(Acquire) == 0 {
            return Ok(());
        }
        let start = w.now_ns();
        loop {
            if pending.load(Acquire) == 0 {
                return Ok(());
            }
            if m.dead() {
                return Err(HandOffError::Dead);
            }
            let waited = w.now_ns().saturating_sub(start);
            if waited > timeout_ns {
                return Err(HandOffError::Timeout);
            }
            if waited < FP_SPIN_NS {
                core::hint::spin_loop();
            } else {
                w.wait(pending, 1, Some(FP_WAIT_SLICE_NS));
            }
        }
    }
}

/// The host's answer for a slot whose sandbox has died (§16.7), given the slot's `run_seq`,
/// `done_seq` and `exit_reason` words: `exit_reason = Dead`, then `done_seq = run_seq`. The
/// host then sets the header's `dead_status` and `dead` and wakes every waiter on `done_seq`.
/// (The host writes `exit_reason` atomically: nothing else writes the slot then.)
pub fn mark_dead(run_seq: &AtomicU32, done_seq: &AtomicU32, exit_reason: &AtomicU32) {
    exit_reason.store(UserExit::Dead as u32, SeqCst);
    done_seq.store(run_seq.load(SeqCst), SeqCst);
}

// ---------------------------------------------------------------------------------------------
// The user half.
// ---------------------------------------------------------------------------------------------

/// Checks one operation against §16.5 (sizes, alignment, the user window, `prot` bits, and
/// for `MAP` an offset inside guest memory of `mem_size` bytes). `Err(EINVAL)` otherwise.
/// (That a `MAP` lies inside the user pool is the seccomp filter's to enforce.)
pub fn check_op(o: &UserOp, mem_size: u64) -> Result<(), u32> {
    if o.len == 0
        || !o.addr.is_multiple_of(PAGE_SIZE)
        || !o.len.is_multiple_of(PAGE_SIZE)
        || !in_user_window(o.addr, o.len)
    {
        return Err(EINVAL);
    }
    let prot_ok = o.prot & !prot::ALL == 0;
    match o.kind {
        op::MAP | op::MAP_POPULATE
            if prot_ok
                && o.offset.is_multiple_of(PAGE_SIZE)
                && o.offset.checked_add(o.len).is_some_and(|e| e <= mem_size) =>
        {
            Ok(())
        }
        // A host file window's pages (`crate::window`): read-only, inside one slot.
        op::MAP | op::MAP_POPULATE
            if prot_ok
                && o.prot & prot::WRITE == 0
                && o.offset.is_multiple_of(PAGE_SIZE)
                && crate::window::range_of(o.offset, o.len).is_some() =>
        {
            Ok(())
        }
        op::UNMAP => Ok(()),
        op::PROTECT if prot_ok => Ok(()),
        _ => Err(EINVAL),
    }
}

/// The order in which one sandbox process has applied its space's operation batches
/// ([`UserSlot::ops_seq`]): one per process, shared by its slot threads.
#[derive(Debug, Default)]
pub struct OpsOrder {
    /// The highest batch applied so far.
    applied: AtomicU64,
    /// Bumped after every change of `applied`: the futex word of the threads waiting for it.
    event: AtomicU32,
    /// Threads sleeping on `event`.
    waiters: AtomicU32,
}

impl OpsOrder {
    /// Nothing applied yet.
    pub const fn new() -> Self {
        Self {
            applied: AtomicU64::new(0),
            event: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// The highest batch applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Acquire)
    }

    /// Waits until every batch up to `seq` is applied (by any slot thread): spins up to
    /// [`USER_SPIN_NS`], then sleeps in slices of [`ORDER_WAIT_SLICE_NS`]. False if `dead()`
    /// became true first.
    pub fn wait_for(&self, seq: u64, w: &(impl Waiter + ?Sized), dead: impl Fn() -> bool) -> bool {
        if self.applied.load(Acquire) >= seq {
            return true;
        }
        let start = w.now_ns();
        loop {
            let event = self.event.load(SeqCst);
            if self.applied.load(Acquire) >= seq {
                return true;
            }
            if dead() {
                return false;
            }
            if w.now_ns().saturating_sub(start) < USER_SPIN_NS {
                core::hint::spin_loop();
                continue;
            }
            // Another slot is applying (or about to be handed) the earlier batch.
            self.waiters.fetch_add(1, SeqCst);
            if self.applied.load(SeqCst) < seq {
                w.wait(&self.event, event, Some(ORDER_WAIT_SLICE_NS));
            }
            self.waiters.fetch_sub(1, SeqCst);
        }
    }

    /// Records batch `seq` as applied and wakes the threads waiting for it.
    pub fn done(&self, seq: u64, w: &(impl Waiter + ?Sized)) {
        self.applied.fetch_max(seq, SeqCst);
        self.event.fetch_add(1, SeqCst);
        if self.waiters.load(SeqCst) != 0 {
            w.wake(&self.event, u32::MAX);
        }
    }
}

/// A `RUN` request's state for the user thread to load (copied once, lengths clamped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLoad {
    /// Registers (`rflags` still to be masked with [`crate::frame::RFLAGS_USER_MASK`]).
    pub regs: TrapFrame,
    /// FS base.
    pub fs_base: u64,
    /// Slice timer: fire this many ns from now (0: leave it).
    pub slice_ns: u64,
    /// Bytes of `fpstate` to load, at most [`USER_FPSTATE_MAX`] (0: keep or reset).
    pub fp_len: usize,
    /// Reset the FPU state (only meaningful with `fp_len == 0`).
    pub fp_init: bool,
}

/// What the user half needs from the stub: the system calls behind a request.
pub trait UserPlatform {
    /// Applies one operation that passed [`check_op`]; `Err(errno)` if its system call
    /// failed.
    fn apply(&mut self, op: &UserOp) -> Result<(), u32>;
    /// Loads a `RUN` request into the thread about to enter user code (FS base, FPU image
    /// from the slot, registers, slice timer); `Err(errno)` if that fails (no user code runs).
    fn load(&mut self, run: &RunLoad) -> Result<(), u32>;
    /// Waits until the slot's grant word holds a grant other than `last` (the last one this
    /// thread served, 0 for none) and returns it, or `None` once the sandbox is dead.
    /// [`UserSide::wait_request`] is the reference implementation.
    fn wait_grant(&mut self, last: u32) -> Option<u32>;
}

/// What the slot thread does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Enter user code for request `run_seq` (report its exit with [`UserSide::publish`]).
    Run(u32),
    /// The sandbox is dead: leave.
    Dead,
}

/// Why user code came back, as the user side saves it into the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserTrap {
    /// [`UserExit::Syscall`], [`UserExit::Exception`] or [`UserExit::Interrupt`].
    pub reason: UserExit,
    /// Vector.
    pub vector: u32,
    /// Error code (the system-call number for a system call).
    pub error_code: u64,
    /// Fault address.
    pub addr: u64,
}

/// The user half of one slot (the slot's thread in the user stub).
#[derive(Clone, Copy, Debug)]
pub struct UserSide<'a, M: ?Sized> {
    mem: &'a M,
    /// Guest memory size (the bound of `MAP` offsets).
    mem_size: u64,
}

impl<'a, M: SlotMem + ?Sized> UserSide<'a, M> {
    /// The user half on the slot `mem` reaches, for guest memory of `mem_size` bytes.
    pub const fn new(mem: &'a M, mem_size: u64) -> Self {
        Self { mem, mem_size }
    }

    /// Waits until the kernel grants the slot a request this thread has not served (the
    /// grant word holds a `run_seq` other than 0 and `last`, [`next_grant`]): spins up to
    /// [`USER_SPIN_NS`], then sleeps on the grant word. Returns the `run_seq` to serve, or
    /// `None` once the sandbox is marked dead. The slot's own `run_seq` is never trusted for
    /// this: the program can write it.
    ///
    /// The reference implementation ([`UserPlatform::wait_grant`]); the user stub waits with
    /// a loop of its own that keeps its state in registers, since a program can write the
    /// stack of a thread that waits here.
    pub fn wait_request(&self, w: &(impl Waiter + ?Sized), last: u32) -> Option<u32> {
        let m = self.mem;
        let (grant, waiting) = (m.grant(), m.word(Word::UserWaiting));
        loop {
            if m.dead() {
                return None;
            }
            let mut r = None;
            let (mine, peer) = (m.word(Word::UserCpu), m.word(Word::KernelCpu));
            if spin_apart_until(w, first_wait_spin(last), mine, peer, || {
                r = next_grant(grant.load(Acquire), last);
                r.is_some()
            }) {
                return r;
            }
            waiting.store(1, SeqCst);
            let g = grant.load(SeqCst);
            if next_grant(g, last).is_none() && !m.dead() {
                bump(m.counter(user_stat::SLEEPS), 1);
                w.wait(grant, g, None);
            }
            waiting.store(0, Relaxed);
        }
    }

    /// Serves requests (applying their operations in the space's batch order, reporting
    /// `OpsDone` and failures) until one is to run user code, whose state `p` has then
    /// loaded; or until the sandbox is dead.
    /// `last` is the grant this thread served last (0 for none): it only serves grants after
    /// it ([`UserPlatform::wait_grant`]).
    pub fn serve(
        &self,
        w: &(impl Waiter + ?Sized),
        order: &OpsOrder,
        p: &mut impl UserPlatform,
        mut last: u32,
    ) -> Served {
        let m = self.mem;
        loop {
            let Some(seq) = p.wait_grant(last) else {
                return Served::Dead;
            };
            last = seq;
            bump(m.counter(user_stat::RUNS), 1);
            let (cmd, nr_ops, ops_seq): (u32, u32, u64) =
                (get(m, COMMAND), get(m, NR_OPS), get(m, OPS_SEQ));
            if !matches!(cmd, command::RUN | command::OPS_ONLY) || nr_ops as usize > USER_OPS_MAX {
                self.op_failed(w, seq, u32::MAX, EINVAL);
                continue;
            }
            // This request's batch goes after every earlier one (other slots carry them),
            // and nothing runs before all batches up to `ops_seq` are in force.
            let ordered = ops_seq != 0;
            if ordered && nr_ops > 0 && !order.wait_for(ops_seq - 1, w, || m.dead()) {
                return Served::Dead;
            }
            let applied = self.apply_ops(p, nr_ops);
            if ordered && nr_ops > 0 {
                // Failed or not, later batches must not wait for this one forever (a failure
                // ends the space anyway).
                order.done(ops_seq, w);
            }
            if let Err((i, e)) = applied {
                self.op_failed(w, seq, i, e);
                continue;
            }
            if ordered && !order.wait_for(ops_seq, w, || m.dead()) {
                return Served::Dead;
            }
            if cmd == command::OPS_ONLY {
                self.publish(w, seq, UserExit::OpsDone);
                continue;
            }
            let fp_len: u32 = get(m, FP_LEN);
            let fp_init: u32 = get(m, FP_INIT);
            let run = RunLoad {
                regs: get(m, REGS),
                fs_base: get(m, FS_BASE),
                slice_ns: get(m, SLICE_NS),
                fp_len: (fp_len as usize).min(USER_FPSTATE_MAX),
                fp_init: fp_init == 1,
            };
            match p.load(&run) {
                Ok(()) => return Served::Run(seq),
                Err(e) => self.op_failed(w, seq, nr_ops, e),
            }
        }
    }

    /// Applies `ops[0..nr_ops]` in order; `Err((index, errno))` at the first failure.
    fn apply_ops(&self, p: &mut impl UserPlatform, nr_ops: u32) -> Result<(), (u32, u32)> {
        let m = self.mem;
        for i in 0..nr_ops {
            let o: UserOp = get(m, OPS + i as usize * core::mem::size_of::<UserOp>());
            check_op(&o, self.mem_size)
                .and_then(|()| p.apply(&o))
                .map_err(|e| (i, e))?;
            bump(m.counter(user_stat::OPS), 1);
        }
        Ok(())
    }

    /// Copies the first `out.len()` (at most [`USER_FPSTATE_MAX`]) bytes of the request's
    /// FPU image into `out`.
    pub fn read_fp(&self, out: &mut [u8]) {
        let n = out.len().min(USER_FPSTATE_MAX);
        self.mem.read(FPSTATE, &mut out[..n]);
    }

    /// Saves the state user code left into the slot: registers (`rax` as given: for a system
    /// call the caller puts the number there), FS base, how many bytes of FPU image it wrote
    /// to `fpstate` (0: none) — or will write after [`Self::publish`], with `fp_follows`,
    /// calling [`Self::fp_written`] when done — and why it came back; counts the exit.
    pub fn record(
        &self,
        trap: &UserTrap,
        regs: &TrapFrame,
        fs_base: u64,
        fp_saved_len: u32,
        fp_follows: bool,
    ) {
        let m = self.mem;
        put(m, REGS, regs);
        put(m, FS_BASE, &fs_base);
        put(m, FP_SAVED_LEN, &fp_saved_len);
        if fp_follows {
            // Ordered before the report by `publish`'s store of `done_seq`.
            m.word(Word::FpPending).store(1, Relaxed);
        }
        put(m, EXIT_VECTOR, &trap.vector);
        put(m, EXIT_ERROR_CODE, &trap.error_code);
        put(m, EXIT_ADDR, &trap.addr);
        let counter = match trap.reason {
            UserExit::Syscall => user_stat::SYSCALLS,
            UserExit::Exception => user_stat::EXCEPTIONS,
            _ => user_stat::INTERRUPTS,
        };
        bump(m.counter(counter), 1);
    }

    /// The FPU image announced with `fp_follows` is in `fpstate`: the kernel may read it.
    pub fn fp_written(&self) {
        self.mem.word(Word::FpPending).store(0, Release);
    }

    /// Adds `ticks` of time spent running user code ([`user_stat::USER_TICKS`]).
    pub fn add_user_ticks(&self, ticks: u64) {
        bump(self.mem.counter(user_stat::USER_TICKS), ticks);
    }

    /// Hands the slot back: `exit_reason`, then `done_seq = run_seq`, then a wake if the
    /// kernel sleeps.
    pub fn publish(&self, w: &(impl Waiter + ?Sized), run_seq: u32, reason: UserExit) {
        let m = self.mem;
        put(m, EXIT_REASON, &(reason as u32));
        // Where this thread waits for the next grant (a hint for the kernel's spinning).
        let _ = peer_on_my_cpu(w, m.word(Word::UserCpu), m.word(Word::KernelCpu));
        let done = m.word(Word::DoneSeq);
        done.store(run_seq, SeqCst);
        if m.word(Word::KernelWaiting).load(SeqCst) != 0 {
            w.wake(done, u32::MAX);
        }
    }

    /// Reports a failed request: nothing after operation `index` was applied, no user code
    /// ran.
    fn op_failed(&self, w: &(impl Waiter + ?Sized), run_seq: u32, index: u32, errno: u32) {
        put(self.mem, OP_FAILED, &index);
        put(self.mem, OP_ERRNO, &errno);
        self.publish(w, run_seq, UserExit::OpFailed);
    }
}

#[cfg(test)]
mod tests;
