//! Signal handling: shadow misses, exception and event delivery to the guest, crash records.
//!
//! Every guest exception arrives as a host signal on the vCPU's alternate stack. The handler
//! resolves shadow misses on the spot; anything else is turned into a [`TrapFrame`] written on
//! the guest's stack (through the guest's tables, so delivery itself never faults), and the
//! signal's saved context is redirected to the guest's entry, so `rt_sigreturn` lands there.

use crate::sigctx::*;
use core::sync::atomic::Ordering::*;
use pvmux_hypercalls::frame::{pf, RED_ZONE, RFLAGS_IF, TRAP_FRAME_SIZE};
use pvmux_hypercalls::layout::in_window;
use pvmux_hypercalls::sandbox::STUB_EXIT_CRASH;
use pvmux_hypercalls::vcpu::{pending, stat};
use pvmux_hypercalls::{CrashReason, TrapFrame, VcpuShared, Vector};
use pvmux_switcher::exception::{classify, Classified, SandboxKind};

use crate::shadow::{self, FillError};
use crate::state::{is_stub_code, StubCpu, G, RETRY_TIMER_VALUE, SIG_EVENT};
use crate::sys;

/// Rflags the guest entry starts with: reserved bit 1 and the real IF (always set in user
/// mode); TF, DF and AC cleared.
const ENTRY_RFLAGS: u64 = 0x202;

/// The saved registers of the interrupted context: a copy of the signal frame's `struct
/// sigcontext` words, and where they live (to redirect the context). The frame is on the
/// vCPU's alternate stack, stub memory in the address space the guest kernel runs in (its
/// other vCPUs could write it), so no reference to it is formed: it is read once with
/// volatile loads, and only the redirected words are written back, with volatile stores.
struct Regs {
    words: [u64; 32],
    at: *mut u64,
}

impl Regs {
    /// # Safety
    /// `mcontext` must be the handler's `struct sigcontext` (32 words, 8-aligned).
    unsafe fn read(mcontext: *mut u64) -> Self {
        let mut words = [0u64; 32];
        for (i, w) in words.iter_mut().enumerate() {
            // SAFETY: caller contract: word `i` of the sigcontext.
            *w = unsafe { mcontext.add(i).read_volatile() };
        }
        Self {
            words,
            at: mcontext,
        }
    }

    /// Sets sigcontext word `idx` (an index of `sigctx`), which `rt_sigreturn` loads.
    fn set(&self, idx: usize, value: u64) {
        if idx >= self.words.len() {
            return;
        }
        // SAFETY: `at` is the handler's sigcontext (see `read`), `idx` one of its 32 words.
        unsafe { self.at.add(idx).write_volatile(value) };
    }

    fn frame(&self, vector: u64, error_code: u64, fault_addr: u64, vif: bool) -> TrapFrame {
        let mut f = trap_frame(&self.words, vector, error_code, fault_addr);
        f.rflags = (f.rflags & !RFLAGS_IF) | if vif { RFLAGS_IF } else { 0 };
        f
    }
}

/// The stub's handler for every signal it takes (installed with SA_SIGINFO|SA_ONSTACK,
/// entered through `pvmux_stub_signal_kernel`, which clears AC).
///
/// # Safety
/// Called only by the kernel, with valid `info` and `uc` pointers, on the alternate stack.
pub(crate) unsafe extern "C" fn on_signal(sig: i32, info: *const u8, uc: *mut u8) {
    let cpu = StubCpu::from_stack();
    let shared = cpu.shared();
    // SAFETY: the kernel passes a valid ucontext; its mcontext holds 32 u64 words at offset 40.
    let regs = unsafe { Regs::read(uc.add(UC_MCONTEXT) as *mut u64) };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let si = unsafe { SigInfo::read(info) };
    let in_stub = is_stub_code(regs.words[RIP]);
    if crate::inproc::in_user(cpu) {
        if !in_stub {
            // User code of the trusted in-process mode: an exit back into `inproc_run`.
            let exit = crate::inproc::exit_from_signal(cpu, sig, si, &regs.words);
            regs.set(RIP, crate::inproc::resume_addr());
            regs.set(RSP, crate::inproc::kernel_rsp(cpu));
            regs.set(RBX, cpu as *const StubCpu as u64);
            regs.set(RAX, u64::from(exit));
            regs.set(EFLAGS, ENTRY_RFLAGS);
            return;
        }
        if sig == SIG_EVENT as i32 {
            // Entering or leaving user code: keep the event, look again shortly.
            if si.code == SI_TIMER {
                match si.word24 {
                    RETRY_TIMER_VALUE => cpu.retry_armed.store(0, Relaxed),
                    crate::inproc::SLICE_TIMER_VALUE => crate::inproc::slice_ended(cpu),
                    _ => {
                        shared.pending.fetch_or(pending::TIMER, SeqCst);
                    }
                }
            }
            arm_retry(cpu);
            return;
        }
    }
    if sig == SIG_EVENT as i32 {
        return on_event(cpu, shared, regs, si, in_stub);
    }
    let host = si.host_signal(sig, &regs.words);
    let (vector, error, addr) = match classify(&host, SandboxKind::Kernel) {
        // A miss in the window may be a shadow miss: fill it and retry the access.
        Classified::Exception {
            vector: Vector::PageFault,
            error_code,
            fault_addr,
        } if sig == SIGSEGV && in_window(fault_addr, 1) => {
            let access = error_code & (pf::WRITE | pf::FETCH);
            match shadow::fill(fault_addr, access, shared) {
                Ok(()) => return,
                Err(FillError::Guest(refused)) => {
                    (Vector::PageFault, refused.0 | access, fault_addr)
                }
                Err(FillError::Host(e)) => crash(
                    shared,
                    CrashReason::OutOfHostMappings,
                    &regs.frame(Vector::PageFault as u64, access, fault_addr, false),
                    u64::from(e),
                ),
            }
        }
        Classified::Exception {
            vector,
            error_code,
            fault_addr,
        } => (vector, error_code, fault_addr),
        Classified::Syscall { nr } => {
            crate::state::count(shared, stat::SYSCALL_TRAPS);
            (Vector::Syscall, nr, 0)
        }
        Classified::Other => (Vector::GeneralProtection, 0, 0),
    };
    let vif = shared.irq_enabled.load(Relaxed) != 0;
    if in_stub {
        // A refused system call from stub code (the guest jumped into it with crafted
        // registers; `detail` = the call's number) or a fault inside a stub call (`detail` =
        // the address): the tenant ends with a record of it.
        let (reason, detail) = match vector {
            Vector::Syscall => (CrashReason::AbiViolation, error),
            _ => (CrashReason::StubFault, addr),
        };
        crash(
            shared,
            reason,
            &regs.frame(vector as u64, error, addr, vif),
            detail,
        );
    }
    let entry = G.trap_entry.load(Acquire);
    let frame = regs.frame(vector as u64, error, addr, vif);
    if entry == 0 {
        crash(shared, CrashReason::UnhandledException, &frame, 0);
    }
    crate::state::count(shared, stat::EXCEPTIONS);
    deliver(shared, regs, &frame, entry);
}

fn on_event(cpu: &StubCpu, shared: &VcpuShared, regs: Regs, si: SigInfo, in_stub: bool) {
    if si.code == SI_TIMER {
        // A timer's `sigev_value` says which one.
        if si.word24 == RETRY_TIMER_VALUE {
            cpu.retry_armed.store(0, Relaxed);
        } else if si.word24 == crate::inproc::SLICE_TIMER_VALUE {
            // The in-process slice timer fired while the kernel ran: the next run arms
            // another.
            crate::inproc::slice_ended(cpu);
        } else {
            shared.pending.fetch_or(pending::TIMER, SeqCst);
        }
    }
    if shared.pending.load(SeqCst) == 0 || shared.irq_enabled.load(SeqCst) == 0 {
        return; // taken by irq_enable / iret / halt
    }
    if in_stub {
        // Inside a stub call: try again shortly rather than interrupt stub code.
        arm_retry(cpu);
        return;
    }
    let entry = match G.event_entry.load(Acquire) {
        0 => G.trap_entry.load(Acquire),
        e => e,
    };
    if entry == 0 {
        return;
    }
    let bits = shared.pending.swap(0, SeqCst);
    let frame = regs.frame(Vector::Event as u64, u64::from(bits), 0, true);
    crate::state::count(shared, stat::EVENTS);
    deliver(shared, regs, &frame, entry);
}

pub(crate) fn arm_retry(cpu: &StubCpu) {
    if cpu.retry_armed.swap(1, Relaxed) == 0 {
        let spec = sys::Itimerspec {
            value: sys::Timespec {
                sec: 0,
                nsec: 50_000,
            },
            ..Default::default()
        };
        let _ = sys::timer_settime(cpu.retry_timer_id.load(Relaxed), 0, &spec);
    }
}

/// Writes `frame` below the interrupted stack's red zone and redirects the signal context to
/// `entry` with `rdi` = the frame and events disabled.
fn deliver(shared: &VcpuShared, regs: Regs, frame: &TrapFrame, entry: u64) {
    let fa = frame.rsp.wrapping_sub(RED_ZONE + TRAP_FRAME_SIZE as u64) & !15;
    let mut words = [0u64; 1 + TRAP_FRAME_SIZE / 8];
    words[1..].copy_from_slice(zerocopy::transmute_ref!(frame));
    // Fake return address 0 at fa - 8, then the frame.
    if !in_window(fa.wrapping_sub(8), words.len() as u64 * 8) {
        crash(shared, CrashReason::DoubleFault, frame, fa);
    }
    if let Err(r) = shadow::write_guest(fa - 8, &words) {
        crash(
            shared,
            CrashReason::DoubleFault,
            frame,
            fa | (r.0 & 0xff) << 56,
        );
    }
    shared.irq_enabled.store(0, SeqCst);
    regs.set(RIP, entry);
    regs.set(RSP, fa - 8);
    regs.set(RDI, fa);
    regs.set(EFLAGS, ENTRY_RFLAGS);
}

/// Records a crash in this vCPU's shared page and ends the sandbox.
pub(crate) fn crash(shared: &VcpuShared, reason: CrashReason, regs: &TrapFrame, detail: u64) -> ! {
    let words: &[u64; 21] = zerocopy::transmute_ref!(regs);
    for (slot, w) in shared.crash_regs.iter().zip(words) {
        slot.store(*w, Relaxed);
    }
    shared.crash_vector.store(regs.vector as u32, Relaxed);
    shared.crash_error_code.store(regs.error_code, Relaxed);
    shared.crash_fault_addr.store(regs.fault_addr, Relaxed);
    shared.crash_detail.store(detail, Relaxed);
    shared.crash_reason.store(reason as u32, Release);
    sys::exit_group(STUB_EXIT_CRASH)
}
