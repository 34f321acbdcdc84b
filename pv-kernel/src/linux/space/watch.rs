//! Sandboxes that die while their process is not running user code.
//!
//! A thread learns that its space's sandbox is gone when it next hands a request over
//! (`Exit::Dead`). A process whose threads all sleep in system calls would never learn it: in
//! particular one whose sandbox the host killed for running without a grant — a program that
//! forged its own thread's exit (say, as a `pause`) and kept that thread spinning. So a kernel
//! thread looks every [`PERIOD_NS`] at every process's space: once the host's reaped word in
//! the space's grant page is set (it is kernel memory: the sandbox cannot forge it), the
//! process is killed with SIGKILL, and the kernel log says why (the host's audit verdict from
//! the same page, or the sandbox's exit status).

use core::sync::atomic::{AtomicBool, Ordering};

use pvmux_hypercalls::user::grant::AUDIT_KILLED;

use super::Space;
use crate::linux::signal::{sig, SigInfo};
use crate::linux::{death, task};

/// How often the watcher looks (ns).
const PERIOD_NS: u64 = 100_000_000;

static STARTED: AtomicBool = AtomicBool::new(false);

/// Starts the watcher (once; with the first space).
pub(super) fn start() {
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if crate::sched::spawn("space-watch", None, run).is_err() {
        // Without it, dead sandboxes are still noticed by the next run of each process.
        STARTED.store(false, Ordering::Release);
    }
}

fn run() {
    loop {
        crate::sched::sleep_until(crate::time::now_ns() + PERIOD_NS);
        sweep();
    }
}

/// Why a space's sandbox is gone.
#[derive(Clone, Copy)]
pub(super) enum Gone {
    /// The host's CPU audit killed it: CPU time used and the bound it exceeded (ns).
    Audit { cpu_ns: u64, bound_ns: u64 },
    /// It ended some other way (the status the host wrote into the context region, which
    /// the sandbox could have written itself: informational).
    Other { status: u32 },
}

impl Space {
    /// `Some` once (the first call after the host reaped this space's sandbox while the
    /// space is still in use).
    pub(super) fn newly_gone(&self) -> Option<Gone> {
        if self.inproc {
            return None; // no sandbox
        }
        let g = self.grants().page();
        if g.reaped.load(Ordering::Acquire) == 0 || self.death_seen.swap(1, Ordering::AcqRel) != 0 {
            return None;
        }
        Some(if g.audit_killed.load(Ordering::Acquire) == AUDIT_KILLED {
            Gone::Audit {
                cpu_ns: g.audit_cpu_ns.load(Ordering::Relaxed),
                bound_ns: g.audit_allowed_ns.load(Ordering::Relaxed),
            }
        } else {
            Gone::Other {
                status: crate::mm::user_ctx::dead_status(self.ctx_gpa),
            }
        })
    }
}

/// Kills every process whose sandbox is gone (every process sharing the space: `vfork`,
/// `CLONE_VM`), once, and logs why.
fn sweep() {
    let procs = task::all_processes();
    let mut gone = alloc::vec::Vec::new();
    for p in &procs {
        if let Some(space) = p.space() {
            if let Some(why) = space.newly_gone() {
                gone.push((alloc::sync::Arc::as_ptr(&space), why));
            }
        }
    }
    if gone.is_empty() {
        return;
    }
    for p in &procs {
        let Some(space) = p.space() else { continue };
        let Some((_, why)) = gone
            .iter()
            .find(|(s, _)| core::ptr::eq(*s, alloc::sync::Arc::as_ptr(&space)))
        else {
            continue;
        };
        log_gone(p, *why);
        death::killed(p, &SigInfo::kernel(sig::SIGKILL));
    }
}

/// Logs why `p` is killed: its space's sandbox is gone (`why`).
pub(super) fn log_gone(p: &task::Process, why: Gone) {
    let name = death::comm(p);
    match why {
        Gone::Audit { cpu_ns, bound_ns } => crate::println!(
            "pvmux: killed process {} ({name}): its user sandbox used {} ms of CPU time, \
             more than the {} ms its vCPU grants allow (a thread ran without a grant)",
            p.pid,
            cpu_ns / 1_000_000,
            bound_ns / 1_000_000
        ),
        Gone::Other { status } => crate::println!(
            "pvmux: killed process {} ({name}): its user sandbox ended (status {status:#x})",
            p.pid
        ),
    }
}
