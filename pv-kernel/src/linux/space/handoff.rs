//! Running user code: the kernel half of the ABI's slot hand-off
//! (`pvmux_hypercalls::user::handoff`, docs/ABI.md §16.4) on this vCPU's slot of the space's
//! context region, with the kernel's policies around it — queued operations taken in
//! numbered batches (several rounds if there are many), the slice timer re-armed only after it
//! fired, user time clamped to what the kernel measured, frames released only once the
//! operations that unmapped them came back applied, a sandbox that does not answer within
//! [`RUN_TIMEOUT_NS`] treated as dead, and the time each slot holds a grant counted in the
//! space's grant page for the host's CPU audit.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::user::handoff::{KernelSlot, Reply, Request, RunRequest};
use pvmux_hypercalls::TrapFrame;

use super::graveyard::reap_graveyard;
use super::mm::Batch;
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
    /// Saved FPU state (XSAVE image); empty = initial state.
    pub(crate) fp: Vec<u8>,
    /// Which copy of [`Self::fp`] this is ([`Space::run`]'s slot token, 0: none): a run on a
    /// slot whose FPU image still has this token sends no image — the sandbox keeps the
    /// state it saved at the exit, byte for byte what `fp` holds. Anything that changes `fp`
    /// other than the read-back of an exit sets it to 0 ([`Self::fp_changed`]).
    pub(crate) fp_token: u64,
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
            user_ns: 0,
            fp_kept: 0,
            park_ready: false,
        }
    }

    /// Makes [`Self::fp`] the thread's FPU state again if a vCPU keeps it in its registers
    /// (trusted in-process mode): fetched from this vCPU, or taken from where the thread's
    /// switch-out parked it. A state found in neither (a kernel bug) becomes the initial
    /// one, said in the log.
    pub(crate) fn take_kept_fp(&mut self) {
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

/// The next slot token (never 0).
fn next_fp_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// TSC ticks as nanoseconds (the boot information's clock scale).
pub(super) fn ticks_to_ns(ticks: u64) -> u64 {
    let bi = crate::boot::info();
    ((u128::from(ticks) * u128::from(bi.clock_mult)) >> bi.clock_shift.min(63)) as u64
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
        let mut unused = UserState::new(0, 0);
        loop {
            let batch = self.mm.lock().take_batch();
            let exit = self.hand_over(&slot, cpu, &batch, true, &mut unused, false);
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
    pub(crate) fn run(&self, st: &mut UserState, fp_init: bool) -> Exit {
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
            let exit = self.hand_over(&slot, cpu, &batch, batch.more, st, fp_init);
            self.release(batch.freed, exit == Some(Exit::Dead));
            if let Some(e) = exit {
                return e;
            }
        }
    }

    /// Releases the frames a batch unmapped, once its request came back. If it came back
    /// `dead` the operations may not have been applied (a sandbox that did not answer in time
    /// may still run): the frames go back to the space, to wait in the graveyard with it.
    fn release(&self, freed: Vec<u64>, dead: bool) {
        if dead {
            self.mm.lock().defer(freed);
        } else {
            for f in freed {
                pool::put(f);
            }
        }
    }

    /// The slice to arm for a run on slot `cpu`: a full one if the slot's timer has fired
    /// since it was last armed, else 0 (leave it running).
    pub(super) fn slice_for(&self, cpu: u32) -> u64 {
        let now = crate::stub::clock_ns();
        let dl = &self.slice_deadline[cpu as usize];
        if dl.load(Ordering::Relaxed) <= now {
            dl.store(now + crate::linux::task::SLICE_NS, Ordering::Relaxed);
            crate::linux::task::SLICE_NS
        } else {
            0
        }
    }

    /// One request on `slot` (this vCPU's, `cpu`): `batch`'s operations, then — unless
    /// `ops_only` — user code with `st`. Returns `None` for a completed `OPS_ONLY` round.
    fn hand_over(
        &self,
        slot: &Slot<'_>,
        cpu: u32,
        batch: &Batch,
        ops_only: bool,
        st: &mut UserState,
        fp_init: bool,
    ) -> Option<Exit> {
        // The slot's FPU image is still the one this state was read from (same exit, no
        // run of another thread on the slot since, nothing changed it): send none, the
        // sandbox keeps what it saved. Saves the image's two crossings of the CPUs (2.7 KiB
        // with AVX-512) per system call.
        let slot_token = &self.slot_fp_token[cpu as usize];
        let kept = st.fp_token != 0
            && !fp_init
            && !ops_only
            && slot_token.load(Ordering::Relaxed) == st.fp_token;
        let run = (!ops_only).then(|| RunRequest {
            regs: st.regs,
            fs_base: st.fs_base,
            slice_ns: self.slice_for(cpu),
            fp: if kept { &[] } else { &st.fp },
            fp_init,
        });
        if !ops_only {
            // The slot's image is about to change (or be kept and then overwritten by the
            // exit); a failed round leaves it unknown.
            slot_token.store(0, Ordering::Relaxed);
        }
        let req = Request {
            ops: &batch.ops,
            ops_seq: batch.seq,
            run,
        };
        let k = KernelSlot::new(slot);
        let tsc_before = crate::arch::rdtsc();
        // The slot holds a grant from here until the reply (or until we give up on it): that
        // time, and the slot's linger after the reply, is what the host lets the sandbox's
        // CPU time reach (`pvmux_hypercalls::user::grant`).
        let grants = self.grants().page();
        grants.begin(cpu as usize, crate::stub::clock_ns());
        let answer = k.hand_over(&StubWaiter, &req, RUN_TIMEOUT_NS);
        grants.end(cpu as usize, crate::stub::clock_ns());
        // A failed operation means the sandbox refused a mapping we validated: treat it as
        // broken, like a dead, unanswering or garbage-answering one.
        let back = match answer {
            Ok(Reply::OpsDone) => return None,
            Ok(Reply::Ran(back)) => back,
            Err(e) => {
                self.note_failure(e);
                return Some(Exit::Dead);
            }
        };
        let exit = match back.exit {
            pvmux_hypercalls::user::handoff::Exit::Syscall { trapped } => Exit::Syscall { trapped },
            pvmux_hypercalls::user::handoff::Exit::Exception {
                vector,
                error_code,
                addr,
            } => Exit::Exception {
                vector,
                error_code,
                addr,
            },
            pvmux_hypercalls::user::handoff::Exit::Interrupt => {
                self.slice_deadline[cpu as usize].store(0, Ordering::Relaxed);
                Exit::Interrupt
            }
        };
        // User time: what the sandbox counted, at most the whole run.
        let ticks = back
            .user_ticks
            .min(crate::arch::rdtsc().wrapping_sub(tsc_before));
        st.user_ns += ticks_to_ns(ticks);
        st.regs = back.regs;
        st.fs_base = back.fs_base;
        st.fp.resize(back.fp_len, 0);
        k.read_fp(&mut st.fp);
        st.fp_token = 0;
        if !st.fp.is_empty() {
            let t = next_fp_token();
            st.fp_token = t;
            slot_token.store(t, Ordering::Relaxed);
        }
        Some(exit)
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
            crate::println!(
                "pvmux: killed process {} ({}): its user sandbox failed: {why}",
                p.pid,
                crate::linux::death::comm(p),
            );
        }
        crate::linux::death::killed(
            p,
            &crate::linux::signal::SigInfo::kernel(crate::linux::signal::sig::SIGKILL),
        );
    }
}
