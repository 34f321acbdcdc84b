//! Exceptions of user programs: a page fault is resolved the way a kernel's fault handler
//! resolves it (demand-zero page, copy-on-write break; without memory, the out-of-memory
//! killer); anything else, or a fault that cannot be resolved, becomes the signal Linux sends
//! for it, with Linux's `si_code`, `si_addr` and sigcontext `trapno`/`err`.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::{TrapFrame, Vector};

use super::signal::{code, sig, Fault, SigInfo};
use super::space::{self, MapGeneration, Space};
use super::task::{self, Process, Task};
use super::Errno;

/// The user bit of the x86 page-fault error code: the stub reports user faults without it;
/// Linux's `error` (in the log and `uc_mcontext.err`) has it.
const PF_USER: u64 = 1 << 2;
/// Out-of-memory kills one fault may cause before its own process is the one to go.
const MAX_OOM_KILLS: u32 = 4;
/// Longest the killer waits for its victim to exit.
const OOM_WAIT_NS: u64 = 5_000_000_000;
/// Poll period of that wait.
const OOM_POLL_NS: u64 = 1_000_000;

/// An exception of user code, as the user sandbox reported it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trap {
    /// Exception vector (a [`Vector`]).
    pub(crate) vector: u32,
    /// x86 error code.
    pub(crate) error_code: u64,
    /// Faulting address (page faults).
    pub(crate) addr: u64,
}

/// Most times a thread may fault at one address in a row with its address space unchanged
/// before the fault counts as a loop (SIGSEGV).
const MAX_UNCHANGED_FAULTS: u32 = 8;

/// A thread's last page fault, to detect a fault loop: the sandbox keeps faulting at an
/// address although the page is resolved and its mapping was sent again each time (a stub
/// that does not apply it, or a misreported access). Only repeats with *no change at all* to
/// the address space in between count ([`MapGeneration`]); a fault at the same address after
/// something changed is a new fault — a parent forking in a loop write-faults at the same
/// stack slot after every `fork`, each time a real copy-on-write break. (Counting every fault
/// at the same address, as this once did, killed a plain `fork`/`_exit`/`waitpid` loop with
/// SIGSEGV after about ten iterations; a `printf` in the loop hid it by faulting elsewhere.)
#[derive(Default)]
pub(crate) struct FaultLoop {
    addr: u64,
    generation: MapGeneration,
    repeats: u32,
}

impl FaultLoop {
    /// Records a resolved fault at `addr`; true if it is one unchanged repeat too many.
    fn is_stuck(&mut self, addr: u64, generation: MapGeneration) -> bool {
        if self.addr == addr && self.generation == generation {
            self.repeats += 1;
        } else {
            *self = Self {
                addr,
                generation,
                repeats: 0,
            };
        }
        self.repeats > MAX_UNCHANGED_FAULTS
    }
}

/// Handles exception `trap` of `task`, whose user registers are `regs`: resolves a page
/// fault, or sends the signal. `fault_loop` detects fault loops.
pub(crate) fn user_exception(
    task: &Arc<Task>,
    space: &Arc<Space>,
    regs: &TrapFrame,
    trap: Trap,
    fault_loop: &mut FaultLoop,
) {
    let fault = |addr: u64, error_code: u64| Fault {
        addr,
        vector: trap.vector,
        error_code,
        ip: regs.rip,
        sp: regs.rsp,
    };
    let info = match Vector::from_raw(u64::from(trap.vector)) {
        Some(Vector::PageFault) if past_eof(space, trap.addr) => SigInfo::fault(
            sig::SIGBUS,
            code::BUS_ADRERR,
            fault(trap.addr, trap.error_code | PF_USER),
        ),
        // The host's `SIGBUS` (`RESERVED`, from the stub) on a host file window's page: the
        // file shrank on the host under its mapping, as Linux for a file truncated under a
        // mapping of it.
        Some(Vector::PageFault)
            if trap.error_code & pf::RESERVED != 0
                && space.mm.lock().maps_window_page(trap.addr) =>
        {
            SigInfo::fault(
                sig::SIGBUS,
                code::BUS_ADRERR,
                fault(trap.addr, trap.error_code | PF_USER),
            )
        }
        Some(Vector::PageFault) => {
            match resolve_page_fault(task, space, trap) {
                Ok(generation) if !fault_loop.is_stuck(trap.addr, generation) => {
                    task.process.times.fault(space.mm.lock().resident_pages());
                    return;
                }
                // Killed for memory (this process, or the fault could not wait).
                Err(Errno::ENOMEM) => return,
                // A page of a program image whose file changed or shrank since the image
                // was made (`imagecache`): as Linux for a file mapping past a truncation.
                Err(Errno::EIO) => SigInfo::fault(
                    sig::SIGBUS,
                    code::BUS_ADRERR,
                    fault(trap.addr, trap.error_code | PF_USER),
                ),
                // Not resolvable, or a fault loop: the sandbox keeps faulting on a page
                // whose mapping it was given.
                Ok(_) | Err(_) => {
                    let mapped = space.mm.lock().vma_at(trap.addr).is_some();
                    let c = if mapped {
                        code::SEGV_ACCERR
                    } else {
                        code::SEGV_MAPERR
                    };
                    let f = fault(trap.addr, trap.error_code | PF_USER);
                    SigInfo::fault(sig::SIGSEGV, c, f)
                }
            }
        }
        Some(Vector::GeneralProtection) => {
            SigInfo::fault(sig::SIGSEGV, code::SI_KERNEL, fault(0, trap.error_code))
        }
        Some(Vector::DivideError) => {
            SigInfo::fault(sig::SIGFPE, code::FPE_INTDIV, fault(regs.rip, 0))
        }
        Some(Vector::X87Fp | Vector::SimdFp) => {
            SigInfo::fault(sig::SIGFPE, code::FPE_FLTINV, fault(regs.rip, 0))
        }
        Some(Vector::InvalidOpcode) => {
            SigInfo::fault(sig::SIGILL, code::ILL_ILLOPN, fault(regs.rip, 0))
        }
        Some(Vector::Breakpoint) => SigInfo::fault(sig::SIGTRAP, code::SI_KERNEL, fault(0, 0)),
        Some(Vector::Debug) => SigInfo::fault(sig::SIGTRAP, code::TRAP_TRACE, fault(regs.rip, 0)),
        Some(Vector::AlignmentCheck) => SigInfo::fault(
            sig::SIGBUS,
            code::BUS_ADRALN,
            fault(trap.addr, trap.error_code),
        ),
        _ => SigInfo::fault(sig::SIGSEGV, code::SI_KERNEL, fault(0, trap.error_code)),
    };
    super::signal::force(task, info);
}

/// Whether a fault at `addr` touches a page of a file mapping (`mmap` of a regular file)
/// that lies wholly past the file's end and is not in the map: Linux's `SIGBUS`
/// (`BUS_ADRERR`) for every kind of file, the page cache's, the `--rootfs` share's and
/// volumes'. A page the map holds (mapped before the file shrank) stays readable.
fn past_eof(space: &Space, addr: u64) -> bool {
    let Some((ino, file_off)) = space.mm.lock().file_page_to_fill(addr) else {
        return false;
    };
    // The mm lock is not held across the filesystem's.
    match crate::fs::with(|fs| fs.stat_ino(ino)) {
        Ok(st) if st.mode & 0o170_000 == 0o100_000 => {
            file_off >= st.size.next_multiple_of(pvmux_hypercalls::PAGE_SIZE)
        }
        _ => false,
    }
}

/// Resolves a page fault: `Ok` (with the map's generation) if the program may retry the
/// access, `Err(ENOMEM)` if the out-of-memory killer ended this process, another error for
/// SIGSEGV.
fn resolve_page_fault(task: &Arc<Task>, space: &Space, trap: Trap) -> Result<MapGeneration, Errno> {
    let mut kills = 0;
    loop {
        let r = space::handle_fault(space, trap.addr, trap.error_code).or_else(|e| {
            // Out of pool memory while exited processes' pages are still on their way
            // back: wait for them, then try once more.
            if e == Errno::ENOMEM && space::wait_for_reclaim() {
                space::handle_fault(space, trap.addr, trap.error_code)
            } else {
                Err(e)
            }
        });
        match r {
            Err(Errno::ENOMEM) => {}
            other => return other,
        }
        // Out of memory for real.
        if kills >= MAX_OOM_KILLS || !out_of_memory(task) {
            if task.process.exit_status.lock().is_none() {
                let usage = space.mm.lock().usage();
                super::death::oom_kill(&task.process, usage);
            }
            return Err(Errno::ENOMEM);
        }
        kills += 1;
    }
}

/// Set while an out-of-memory kill waits for its victim (one kill at a time, like Linux's
/// `oom_lock`: several faulting threads must not kill several processes for one shortage).
static OOM_BUSY: AtomicBool = AtomicBool::new(false);

/// The out-of-memory killer, for a fault of `task` that found no memory: kills the process
/// using the most memory (resident pages, as Linux's `oom_badness`) and waits for it to be
/// gone. Returns true if the fault may be retried; false if `task`'s own process was chosen
/// (the caller kills it).
fn out_of_memory(task: &Arc<Task>) -> bool {
    if OOM_BUSY.swap(true, Ordering::AcqRel) {
        // Another fault is killing already: wait for its victim's memory, then retry.
        let deadline = crate::time::now_ns() + OOM_WAIT_NS;
        while OOM_BUSY.load(Ordering::Acquire) && crate::time::now_ns() < deadline {
            crate::sched::sleep_until(crate::time::now_ns() + OOM_POLL_NS);
        }
        return !task.signal_pending();
    }
    let retry = kill_largest(&task.process);
    OOM_BUSY.store(false, Ordering::Release);
    retry
}

/// Kills the process with the most resident memory unless it is `me`; waits for its memory.
fn kill_largest(me: &Arc<Process>) -> bool {
    let victim = task::all_processes()
        .into_iter()
        .filter(|p| !p.zombie.load(Ordering::Acquire))
        .filter_map(|p| {
            let usage = p.space()?.mm.lock().usage();
            Some((usage.private_pages + usage.shared_pages, usage, p))
        })
        .max_by_key(|(pages, _, p)| (*pages, Arc::ptr_eq(p, me)));
    let Some((_, usage, victim)) = victim else {
        return false;
    };
    if Arc::ptr_eq(&victim, me) {
        return false;
    }
    // A victim already on its way out is waited for, not killed twice.
    if victim.exit_status.lock().is_none() {
        super::death::oom_kill(&victim, usage);
    }
    let deadline = crate::time::now_ns() + OOM_WAIT_NS;
    while !victim.zombie.load(Ordering::Acquire) && crate::time::now_ns() < deadline {
        crate::sched::sleep_until(crate::time::now_ns() + OOM_POLL_NS);
    }
    drop(victim);
    space::wait_for_reclaim();
    true
}
