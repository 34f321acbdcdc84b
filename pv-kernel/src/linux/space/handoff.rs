//! Running user code: the kernel half of the ABI's slot hand-off
//! (`pvmux_hypercalls::user::handoff`, docs/ABI.md §16.4) on this vCPU's slot of the space's
//! context region, with the kernel's policies around it — queued operations taken in
//! numbered batches (several rounds if there are many), the slice timer re-armed only after it
//! fired, user time clamped to what the kernel measured, frames released only once the
//! operations that unmapped them came back applied, a sandbox that does not answer within
//! [`RUN_TIMEOUT_NS`] treated as dead, and the time each slot holds a grant counted in the
//! space's grant page for the host's CPU audit.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

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
    /// Time user code ran in the runs since this was last taken (the user sandbox's count,
    /// clamped to how long each run took).
    pub(crate) user_ns: u64,
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
            user_ns: 0,
        }
    }
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
        if self.inproc {
            let _irq = IrqGuard::new();
            return self.sync_inproc();
        }
        self.revive()?;
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
        if self.inproc {
            return self.run_inproc(st, fp_init);
        }
        if self.revive().is_err() {
            return Exit::Dead;
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
        let run = (!ops_only).then(|| RunRequest {
            regs: st.regs,
            fs_base: st.fs_base,
            slice_ns: self.slice_for(cpu),
            fp: &st.fp,
            fp_init,
        });
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
            Err(_) => return Some(Exit::Dead),
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
        Some(exit)
    }
}
