//! Running user code: the kernel half of the ABI's slot hand-off
//! (`pvmux_hypercalls::user::handoff`, docs/ABI.md §16.4) on this vCPU's slot of the space's
//! context region, with the kernel's policies around it — queued operations taken in
//! numbered batches (several rounds if there are many), the slice timer re-armed only after it
//! fired, user time clamped to what the kernel measured, frames released only once the
//! operations that unmapped them came back applied, a sandbox that does not answer within
//! [`RUN_TIMEOUT_NS`] treated as dead, and the time each slot holds a grant counted in the
//! space's grant page for the host's CPU audit.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::user::handoff::{
    Exit as ReturnedExit, KernelSlot, Reply, Request, Returned, RunRequest,
};
use pvmux_hypercalls::{TrapFrame, MAX_VCPUS};

use super::graveyard::reap_graveyard;
use super::mm::Batch;
use super::slot_fp::InSlot;
use super::Space;
use crate::irq::IrqGuard;
use crate::linux::pool;
use crate::mm::user_ctx::{GrantPage, Slot, StubWaiter};

/// Longest a request may stay unanswered before the space is treated as dead. An honest
/// user stub answers within a time slice; a user program can keep it from ever answering
/// (it can write its slot's sequence words, or stop its slice timer from stub code), and
/// this vCPU must not wait for it forever.
const RUN_TIMEOUT_NS: u64 = 2_000_000_000;

/// What came back from running user code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A system call (number in `regs.rax`).
    Syscall {
        /// It trapped (`SIGSYS`); false: it came through the patch entry
        /// (`linux/patch.rs`).
        trapped: bool,
    },
    /// An exception.
    Exception {
        /// Vector.
        vector: u32,
        /// Error code.
        error_code: u64,
        /// Fault address.
        addr: u64,
    },
    /// The time slice ended.
    Interrupt,
    /// The sandbox is gone (killed, crashed) or misbehaved.
    Dead,
}

/// A thread's user-mode state, carried into and out of [`Space::run`].
pub(crate) struct UserState {
    /// Registers.
    pub(crate) regs: TrapFrame,
    /// FS base (TLS).
    pub(crate) fs_base: u64,
    /// Saved FPU state (XSAVE image); empty = initial state. Not the state while
    /// [`Self::fp_in_slot`] or [`Self::fp_kept`] says it is elsewhere: whoever reads or
    /// replaces it calls [`Self::take_kept_fp`] first.
    pub(crate) fp: Vec<u8>,
    /// Which copy of the FPU state this is ([`Space::run`]'s slot token, 0: none): a run on
    /// a slot whose FPU image still has this token sends no image — the sandbox keeps the
    /// state it saved at the exit. Anything that changes `fp` other than an exit sets it to
    /// 0 ([`Self::fp_changed`]).
    pub(crate) fp_token: u64,
    /// The state is the image the last exit left unread in its slot (`super::slot_fp`), not
    /// [`Self::fp`].
    pub(crate) fp_in_slot: Option<InSlot>,
    /// The token of the last exit ([`Space::run`]; 0: none): while its slot still holds
    /// that exit, a run there sends no FPU image if [`Self::fp_token`] is this one, and only
    /// `rax` of the registers if no other register changed from [`Self::exit_regs`].
    pub(crate) exit_token: u64,
    /// The registers that exit left (what its slot holds).
    pub(crate) exit_regs: TrapFrame,
    /// Time user code ran in the runs since this was last taken (the user sandbox's count,
    /// clamped to how long each run took).
    pub(crate) user_ns: u64,
    /// Trusted in-process mode: the token of the FPU state a vCPU keeps in its registers for
    /// this thread (`crate::kept_fp`; 0: [`Self::fp`] is the state). Whoever reads or
    /// replaces `fp` calls [`Self::take_kept_fp`] first.
    pub(crate) fp_kept: u64,
    /// Whether the current kernel thread's park room for a kept state is ready (a
    /// `UserState` never moves to another kernel thread).
    pub(crate) park_ready: bool,
}

impl UserState {
    /// A fresh state entering at `rip` with stack `rsp`.
    pub(crate) fn new(rip: u64, rsp: u64) -> Self {
        Self {
            regs: TrapFrame {
                rip,
                rsp,
                rflags: 0x202,
                ..Default::default()
            },
            fs_base: 0,
            fp: Vec::new(),
            fp_token: 0,
            fp_in_slot: None,
            exit_token: 0,
            exit_regs: TrapFrame::default(),
            user_ns: 0,
            fp_kept: 0,
            park_ready: false,
        }
    }

    /// Makes [`Self::fp`] the thread's FPU state again: read from the slot its last exit
    /// left it in (or from where it was set aside since, `super::slot_fp`), or, if a vCPU
    /// keeps it in its registers (trusted in-process mode), fetched from this vCPU or taken
    /// from where the thread's switch-out parked it. A state found nowhere (a kernel bug)
    /// becomes the initial one, said in the log.
    pub(crate) fn take_kept_fp(&mut self) {
        if let Some(s) = self.fp_in_slot.take() {
            // Still a copy of what the slot holds: `fp_token` stays. (A thread that runs
            // keeps its space: only one whose process is gone finds it dropped.)
            let found = s.space.upgrade().is_some_and(|space| {
                // (If it never comes the space is given up on: its next run fails.)
                space
                    .settled(s.cpu, |ready| {
                        space
                            .slot_fp
                            .take(s.cpu, s.token, &mut self.fp, ready, |len| {
                                space.read_slot_fp(s.cpu, len)
                            })
                    })
                    .unwrap_or(false)
            });
            if !found {
                crate::println!("pvmux-kernel: a thread's FPU image was lost; it is reset");
                self.fp.clear();
                self.fp_changed();
            }
            return;
        }
        if self.fp_kept == 0 {
            return;
        }
        let token = core::mem::take(&mut self.fp_kept);
        self.fp_changed();
        let _irq = IrqGuard::new();
        let cpu = crate::stub::vcpu_id();
        if crate::kept_fp::keeps(cpu, token) {
            crate::kept_fp::forget(cpu);
            if crate::stub::inproc_fp_save(&mut self.fp) > 0 {
                return;
            }
        } else if crate::kept_fp::unpark(&crate::sched::current().fp_park, token, &mut self.fp) {
            return;
        }
        crate::println!("pvmux-kernel: a thread's kept FPU state was lost; it is reset");
        self.fp.clear();
    }

    /// Records that [`Self::fp`] was changed (or replaced) by the kernel: the next run sends
    /// it whole.
    pub(crate) fn fp_changed(&mut self) {
        self.fp_token = 0;
    }
}

/// The next slot token (never 0): this vCPU's index + 1 in the top 16 bits, a count below.
/// Only the vCPU itself takes its tokens, with events off (`Space::run`): a load and a store,
/// no locked add on a line all vCPUs share.
fn next_fp_token() -> u64 {
    static NEXT: [AtomicU64; MAX_VCPUS as usize] =
        [const { AtomicU64::new(0) }; MAX_VCPUS as usize];
    let cpu = crate::stub::vcpu_id() as usize % MAX_VCPUS as usize;
    let n = NEXT[cpu].load(Ordering::Relaxed).wrapping_add(1) & ((1 << 48) - 1);
    NEXT[cpu].store(n, Ordering::Relaxed);
    (cpu as u64 + 1) << 48 | n
}

impl Space {
    /// The space's grant page (present until the space is dropped).
    pub(super) fn grants(&self) -> &GrantPage {
        self.grants.as_ref().expect("grant page")
    }

    /// This vCPU's slot of the context region.
    fn slot(&self, cpu: u32) -> Slot<'_> {
        Slot::new(self.ctx_gpa, self.grants(), cpu)
    }

    /// Puts every operation queued so far in force now, on this vCPU's slot (in rounds if
    /// there are many), and waits until the batches other threads took before are applied
    /// too. `Err` if the sandbox is dead.
    pub(super) fn sync_ops(&self) -> Result<(), ()> {
        self.revive()?;
        if self.inproc {
            let _irq = IrqGuard::new();
            return self.sync_inproc();
        }
        let _irq = IrqGuard::new();
        let cpu = crate::stub::vcpu_id();
        let slot = self.slot(cpu);
        loop {
            let batch = self.mm.lock().take_batch();
            let exit = self.hand_over(&slot, cpu, &batch, None, crate::arch::tsc(), &mut 0);
            self.release(batch.freed, exit.is_some());
            match exit {
                None if batch.more => continue,
                None => return Ok(()),
                Some(_) => return Err(()),
            }
        }
    }

    /// Runs user code on this vCPU's slot until it comes back. Applies queued operations
    /// first (in several rounds if there are many).
    pub(crate) fn run(self: &Arc<Self>, st: &mut UserState, fp_init: bool) -> Exit {
        // Release destroyed spaces that have died since (exit + wait4 + fork loops would
        // otherwise only release them in `Space::new`).
        reap_graveyard();
        // A fork of this space is under way: user code waits until its write protection is
        // in force (see the module documentation).
        if self.forking.load(Ordering::SeqCst) != 0 {
            self.fork_done
                .wait_until(|| self.forking.load(Ordering::SeqCst) == 0);
        }
        if self.revive().is_err() {
            return Exit::Dead;
        }
        if self.inproc {
            return self.run_inproc(st, fp_init);
        }
        let _irq = IrqGuard::new();
        let cpu = crate::stub::vcpu_id();
        let slot = self.slot(cpu);
        loop {
            let batch = self.mm.lock().take_batch();
            let exit = if batch.more {
                // (An `OPS_ONLY` request answered as a run is garbage the ABI refuses.)
                self.hand_over(&slot, cpu, &batch, None, crate::arch::tsc(), &mut 0)
                    .map(|r| r.err().unwrap_or(Exit::Dead))
            } else {
                self.run_on_slot(&slot, cpu, &batch, st, fp_init)
            };
            self.release(batch.freed, exit == Some(Exit::Dead));
            if let Some(e) = exit {
                return e;
            }
        }
    }

    /// [`Self::hand_over`] of a run of `st` (a thread of this space) on this vCPU's slot
    /// `cpu`, with the FPU image's bookkeeping around it (`super::slot_fp`): no image is
    /// sent if the slot still holds the thread's, and the exit's image is left unread in
    /// the slot.
    fn run_on_slot(
        self: &Arc<Self>,
        slot: &Slot<'_>,
        cpu: u32,
        batch: &Batch,
        st: &mut UserState,
        fp_init: bool,
    ) -> Option<Exit> {
        if fp_init {
            // A fresh state: whatever image the thread had is gone.
            st.fp_in_slot = None;
            st.fp_changed();
        }
        // The slot still holds this thread's last exit: the FPU image, unless something
        // changed it since, is sent as none (the sandbox keeps what it saved), and the
        // registers, if only `rax` changed (a system call's return), as `rax` alone.
        let Some(same_exit) = self.settled(cpu, |ready| {
            self.slot_fp
                .claim(cpu, st.exit_token, ready, |len| self.read_slot_fp(cpu, len))
        }) else {
            return Some(Exit::Dead);
        };
        let fp_kept = same_exit && !fp_init && st.fp_token == st.exit_token;
        let regs_kept = same_exit && {
            let mut at_exit = st.exit_regs;
            at_exit.rax = st.regs.rax;
            at_exit == st.regs
        };
        if !fp_kept {
            // The state is sent whole: read it first if it is still in a slot (another
            // vCPU's, or set aside from this one).
            st.take_kept_fp();
        }
        // Sent whole and empty, the state is the initial one (`UserState::fp`): said so,
        // for the stub takes an empty image without `fp_init` as "keep what you have",
        // which on this slot is another thread's state or the stub's own. (Only a state
        // that was lost gets here: a snapshot caught its image unfinished, say.)
        let fp_init = fp_init || (!fp_kept && st.fp.is_empty());
        // One clock read before the run and one after serve the slice, the grant's
        // accounting, the wait's timeout and the bound on user time.
        let start = crate::arch::tsc();
        let run = RunRequest {
            regs: st.regs,
            fs_base: st.fs_base,
            slice_ns: self.slice_for(cpu, crate::time::ns_at(start)),
            fp: if fp_kept { &[] } else { &st.fp },
            fp_init,
            regs_kept,
        };
        let mut end = start;
        let back = match self.hand_over(slot, cpu, batch, Some(run), start, &mut end)? {
            Ok(back) => back,
            Err(dead) => return Some(dead),
        };
        let exit = self.exit_of(cpu, back.exit);
        // User time: what the sandbox counted, at most the whole run (unfenced TSC reads:
        // a bound, not a measurement).
        let ticks = back.user_ticks.min(end.wrapping_sub(start));
        st.user_ns += crate::time::ticks_to_ns(ticks);
        st.regs = back.regs;
        st.exit_regs = back.regs;
        st.fs_base = back.fs_base;
        let token = next_fp_token();
        st.exit_token = token;
        self.slot_fp.filled(cpu, token, back.fp_len);
        if back.fp_len == 0 {
            // No image came back: the initial state.
            st.fp_in_slot = None;
            st.fp.clear();
            st.fp_changed();
        } else {
            st.fp_token = token;
            match &mut st.fp_in_slot {
                Some(s) if s.cpu == cpu && core::ptr::eq(s.space.as_ptr(), Arc::as_ptr(self)) => {
                    s.token = token
                }
                other => {
                    *other = Some(InSlot {
                        space: Arc::downgrade(self),
                        cpu,
                        token,
                    })
                }
            }
        }
        Some(exit)
    }

    /// The first `len` bytes of slot `cpu`'s `fpstate` (at most what a slot holds). A patched
    /// system call's image follows its report: read it through [`Self::settled`].
    pub(super) fn read_slot_fp(&self, cpu: u32, len: usize) -> Vec<u8> {
        let mut image = alloc::vec![0u8; len.min(pvmux_hypercalls::user::USER_FPSTATE_MAX)];
        KernelSlot::new(&self.slot(cpu)).read_fp(&mut image);
        image
    }

    /// `op(ready)`, a [`super::slot_fp::SlotImages`] call that reads slot `cpu`'s image only
    /// if `ready()` (under its lock) and returns `None` otherwise: an image still being
    /// written (`UserSlot::fp_pending`) is waited for outside the lock (the wait may sleep)
    /// and `op` runs once more, reading whatever is there then (a program that sets the word
    /// again meanwhile gets its own bytes). `None` if the sandbox died first or never wrote
    /// it within [`RUN_TIMEOUT_NS`] (a program that set the word itself): the space is then
    /// given up on like one that does not answer a run, and its next run fails.
    fn settled<T>(
        &self,
        cpu: u32,
        mut op: impl FnMut(&dyn Fn() -> bool) -> Option<T>,
    ) -> Option<T> {
        // (The slot is looked at only when an image is to be read: not on a run's fast path.)
        if let Some(v) = op(&|| !KernelSlot::new(&self.slot(cpu)).fp_pending()) {
            return Some(v);
        }
        if let Err(e) = KernelSlot::new(&self.slot(cpu)).wait_fp(&StubWaiter, RUN_TIMEOUT_NS) {
            self.note_failure(e);
            return None;
        }
        op(&|| true)
    }

    /// Slot `cpu`'s image for [`super::slot_fp::SlotImages::park_all`], when the sandbox that
    /// wrote it is gone (a restore): an image it had not finished is lost (empty: the
    /// thread's state is then reset, said in the log).
    pub(super) fn read_slot_fp_left(&self, cpu: u32, len: usize) -> Vec<u8> {
        if KernelSlot::new(&self.slot(cpu)).fp_pending() {
            crate::println!(
                "pvmux-kernel: an FPU image was not finished at the snapshot; it is reset"
            );
            return Vec::new();
        }
        self.read_slot_fp(cpu, len)
    }

    /// Releases the frames a batch unmapped, once its request came back. If it came back
    /// `dead` the operations may not have been applied (a sandbox that did not answer in time
    /// may still run): the frames go back to the space, to wait in the graveyard with it.
    fn release(&self, freed: Vec<u64>, dead: bool) {
        if dead {
            self.mm.lock().defer(freed);
        } else {
            pool::put_all(freed);
        }
    }

    /// The slice to arm for a run on slot `cpu`: a full one if the slot's timer has fired
    /// since it was last armed, else 0 (leave it running).
    pub(super) fn slice_for(&self, cpu: u32, now: u64) -> u64 {
        let dl = &self.slice_deadline[cpu as usize];
        if dl.load(Ordering::Relaxed) <= now {
            dl.store(now + crate::linux::task::SLICE_NS, Ordering::Relaxed);
            crate::linux::task::SLICE_NS
        } else {
            0
        }
    }

    /// One request on `slot` (this vCPU's, `cpu`): `batch`'s operations, then user code if
    /// `run` is given. `None` for a completed `OPS_ONLY` round; `Err(Exit::Dead)` if the
    /// sandbox gave no valid answer.
    fn hand_over(
        &self,
        slot: &Slot<'_>,
        cpu: u32,
        batch: &Batch,
        run: Option<RunRequest<'_>>,
        start_tsc: u64,
        end_tsc: &mut u64,
    ) -> Option<Result<Returned, Exit>> {
        let req = Request {
            ops: &batch.ops,
            ops_seq: batch.seq,
            run,
        };
        if self.failure.load(Ordering::Relaxed) != 0 {
            // Given up on outside a run (`Self::settled`): as dead.
            return Some(Err(Exit::Dead));
        }
        let ticks = &self.slot_ticks[cpu as usize];
        // Only this vCPU uses its slot's word: a load and a store, no `xchg`.
        let known = ticks.load(Ordering::Relaxed);
        ticks.store(u64::MAX, Ordering::Relaxed);
        let k = KernelSlot::new(slot).with_user_ticks((known != u64::MAX).then_some(known));
        // The slot holds a grant from here until the reply (or until we give up on it): that
        // time, and the slot's linger after the reply, is what the host lets the sandbox's
        // CPU time reach (`pvmux_hypercalls::user::grant`).
        let grants = self.grants().page();
        let now = crate::time::ns_at(start_tsc);
        grants.begin(cpu as usize, now);
        let answer = k.hand_over_from(&StubWaiter, &req, RUN_TIMEOUT_NS, now);
        *end_tsc = crate::arch::tsc();
        grants.end(cpu as usize, crate::time::ns_at(*end_tsc));
        // A failed operation means the sandbox refused a mapping we validated: treat it as
        // broken, like a dead, unanswering or garbage-answering one.
        match answer {
            Ok(Reply::OpsDone) => {
                ticks.store(known, Ordering::Relaxed);
                None
            }
            Ok(Reply::Ran(back)) => {
                ticks.store(back.user_ticks_total, Ordering::Relaxed);
                Some(Ok(back))
            }
            Err(e) => {
                self.note_failure(e);
                Some(Err(Exit::Dead))
            }
        }
    }

    /// The kernel's view of why user code on slot `cpu` came back; a slice that ended
    /// re-arms the slot's timer at the next run.
    fn exit_of(&self, cpu: u32, exit: ReturnedExit) -> Exit {
        match exit {
            ReturnedExit::Syscall { trapped } => Exit::Syscall { trapped },
            ReturnedExit::Exception {
                vector,
                error_code,
                addr,
            } => Exit::Exception {
                vector,
                error_code,
                addr,
            },
            ReturnedExit::Interrupt => {
                self.slice_deadline[cpu as usize].store(0, Ordering::Relaxed);
                Exit::Interrupt
            }
        }
    }
}

/// Why a space's sandbox was given up on, packed into one word (`Space::failure`): the
/// kind in bits 32..40, a detail in the low bits. Read back only to explain a kill.
mod failure {
    use pvmux_hypercalls::user::handoff::HandOffError;

    const DEAD: u64 = 1;
    const TIMEOUT: u64 = 2;
    const OP_FAILED: u64 = 3;
    const GARBAGE: u64 = 4;

    /// `e` as a non-zero word.
    pub(super) fn pack(e: HandOffError) -> u64 {
        match e {
            HandOffError::Dead => DEAD << 32,
            HandOffError::Timeout => TIMEOUT << 32,
            HandOffError::OpFailed { index, errno } => {
                OP_FAILED << 32 | u64::from(index & 0xffff) << 16 | u64::from(errno & 0xffff)
            }
            HandOffError::Garbage { reason } => GARBAGE << 32 | u64::from(reason),
        }
    }

    /// The error a [`pack`]ed word stands for (`None` for 0).
    pub(super) fn unpack(w: u64) -> Option<HandOffError> {
        let low = w as u32;
        Some(match w >> 32 {
            DEAD => HandOffError::Dead,
            TIMEOUT => HandOffError::Timeout,
            OP_FAILED => HandOffError::OpFailed {
                index: low >> 16,
                errno: low & 0xffff,
            },
            GARBAGE => HandOffError::Garbage { reason: low },
            _ => return None,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_error_survives_the_round_trip() {
            assert_eq!(unpack(0), None);
            for e in [
                HandOffError::Dead,
                HandOffError::Timeout,
                HandOffError::OpFailed {
                    index: 17,
                    errno: 12,
                },
                HandOffError::Garbage { reason: 99 },
            ] {
                assert_eq!(unpack(pack(e)), Some(e));
            }
        }
    }
}

impl Space {
    /// Remembers why this space's sandbox was given up on (the first reason only).
    fn note_failure(&self, e: pvmux_hypercalls::user::handoff::HandOffError) {
        let _ =
            self.failure
                .compare_exchange(0, failure::pack(e), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Kills `p`, whose thread got [`Exit::Dead`] from this space, and logs why once per
    /// space (the host's status word when the sandbox died, the hand-off error otherwise).
    pub(crate) fn kill_for_failure(&self, p: &alloc::sync::Arc<crate::linux::task::Process>) {
        if let Some(gone) = self.newly_gone() {
            // The host reaped the sandbox: its verdict (e.g. the CPU audit) says why.
            super::watch::log_gone(p, gone);
        } else if self.death_seen.swap(1, Ordering::AcqRel) == 0 {
            let why = match failure::unpack(self.failure.load(Ordering::Acquire)) {
                _ if self.inproc => alloc::string::String::from("in-process run failed"),
                Some(e) => alloc::format!(
                    "{e} (sandbox status {:#x})",
                    crate::mm::user_ctx::dead_status(self.ctx_gpa)
                ),
                None => alloc::string::String::from("no reason recorded"),
            };
            let line = alloc::format!(
                "pvmux: killed process {} ({}): its user sandbox failed: {why}",
                p.pid,
                crate::linux::death::comm(p),
            );
            crate::println!("{line}");
            // On the console's stderr too: without `--log debug` the kernel log is hidden,
            // and the host only sees a program "killed by SIGKILL (sent by the kernel)".
            crate::hcall::console_write_stream(
                pvmux_hypercalls::hypercall::stream::STDERR,
                alloc::format!("{line}\n").as_bytes(),
            );
        }
        crate::linux::death::killed(
            p,
            &crate::linux::signal::SigInfo::kernel(crate::linux::signal::sig::SIGKILL),
        );
    }
}
