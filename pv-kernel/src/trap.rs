//! Exception and event entry: the assembly entry, FPU state saving, and the dispatcher.
//!
//! The stub enters [`pvmux_trap_entry`] (exceptions) or [`pvmux_event_entry`] (events) with
//! `rdi` = &TrapFrame on the current stack, `rsp` = frame - 8, events disabled. The entry
//! saves the live FPU/SSE state with `fxsave64`, calls [`trap_dispatch`], restores the FPU
//! state and leaves through the stub's `iret` with the (possibly edited) frame. An event
//! handler may switch threads: the frame then stays on the interrupted thread's stack and is
//! resumed by that thread, possibly on another vCPU.

use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::frame::{RED_ZONE, TRAP_FRAME_SIZE};
use pvmux_hypercalls::{TrapFrame, Vector, MAX_VCPUS};

use crate::stub;

/// Distance below the interrupted `rsp` of the frame copy the entry irets (see the asm):
/// red zone + frame + 1 KiB, clear of the stub's staging words and of the delivered frame.
const IRET_COPY_GAP: u64 = RED_ZONE + TRAP_FRAME_SIZE as u64 + 1024;

core::arch::global_asm!(
    ".pushsection .text.pvmux_trap_entry, \"ax\", @progbits",
    ".globl pvmux_trap_entry",
    ".globl pvmux_event_entry",
    ".p2align 4",
    "pvmux_trap_entry:",
    "pvmux_event_entry:",
    "    cld",
    // rbx (callee-saved) keeps the frame address across the call; the interrupted value is
    // in the frame already.
    "    mov rbx, rdi",
    // A fake stack frame (interrupted rip, interrupted rbp) so that frame-pointer unwinding
    // walks from the handler into the interrupted code.
    "    push qword ptr [rdi + {off_rip}]",
    "    push qword ptr [rdi + {off_rbp}]",
    "    mov rbp, rsp",
    // 512-byte, 16-byte aligned FXSAVE area; leaves rsp 16-byte aligned for the call.
    "    sub rsp, 512",
    "    and rsp, -16",
    "    fxsave64 [rsp]",
    "    call {dispatch}",
    "    fxrstor64 [rsp]",
    // Leave through a copy of the frame at C = (frame.rsp - IRET_COPY_GAP) & -16, with
    // rsp = C - 8. The stub's `iret` stages rip/rflags just below the target's red zone,
    // which is where the stub delivered this frame; if it then re-delivers pending events
    // "with the same frame", the staged words would have overwritten its rsp/rflags fields.
    // C depends only on frame.rsp, so a re-delivered copy is copied onto itself: no growth.
    "    mov rdx, [rbx + {off_rsp}]",
    "    sub rdx, {gap}",
    "    and rdx, -16",
    "    mov rsi, rbx",
    "    mov rdi, rdx",
    "    mov ecx, {frame_words}",
    "    rep movsq",
    "    lea rsp, [rdx - 8]",
    "    mov rdi, rdx",
    "    jmp qword ptr [rip + {iret}]",
    ".popsection",
    off_rip = const core::mem::offset_of!(TrapFrame, rip),
    off_rbp = const core::mem::offset_of!(TrapFrame, rbp),
    off_rsp = const core::mem::offset_of!(TrapFrame, rsp),
    gap = const IRET_COPY_GAP,
    frame_words = const TRAP_FRAME_SIZE / 8,
    dispatch = sym trap_dispatch,
    iret = sym stub::IRET_ADDR,
);

unsafe extern "C" {
    /// Exception entry (see the module docs). Never called from Rust.
    fn pvmux_trap_entry();
    /// Event entry (the same code as [`pvmux_trap_entry`]). Never called from Rust.
    fn pvmux_event_entry();
}

/// Registers the trap and event entries with the stub.
pub(crate) fn init() {
    let ret = stub::set_callbacks(
        pvmux_trap_entry as *const () as u64,
        pvmux_event_entry as *const () as u64,
    );
    if ret < 0 {
        panic!("set_callbacks failed: {ret}");
    }
}

/// Counters of handled traps.
pub(crate) struct TrapStats {
    /// `int3` breakpoints resumed.
    pub(crate) breakpoints: AtomicU64,
    /// Raw system calls trapped and answered with ENOSYS.
    pub(crate) syscalls: AtomicU64,
    /// System-call number of the last trapped raw system call.
    pub(crate) last_syscall_nr: AtomicU64,
    /// Instruction pointer (after the instruction) of the last trapped raw system call.
    pub(crate) last_syscall_rip: AtomicU64,
    /// Events delivered.
    pub(crate) events: AtomicU64,
}

/// Global trap counters.
pub(crate) static STATS: TrapStats = TrapStats {
    breakpoints: AtomicU64::new(0),
    syscalls: AtomicU64::new(0),
    last_syscall_nr: AtomicU64::new(0),
    last_syscall_rip: AtomicU64::new(0),
    events: AtomicU64::new(0),
};

/// `-ENOSYS`, the answer to every raw Linux system call.
const ENOSYS: i64 = -38;

/// Marker for "no fixup armed".
const NO_FIXUP: u64 = u64::MAX;

/// A per-vCPU exception fixup: if an exception with `vector` arrives on this vCPU, it is
/// recorded and execution resumes at `resume` instead of panicking. Used by the selftest,
/// which arms it and raises the exception with events disabled (so it cannot migrate).
pub(crate) struct Fixup {
    vector: AtomicU64,
    resume: AtomicU64,
    /// Vector of the last fixed-up exception.
    pub(crate) hit_vector: AtomicU64,
    /// Its error code.
    pub(crate) hit_error_code: AtomicU64,
    /// Its fault address.
    pub(crate) hit_fault_addr: AtomicU64,
    /// Its `rip` as delivered (before the fixup changed it).
    pub(crate) hit_rip: AtomicU64,
}

impl Fixup {
    /// Disarmed, no hit.
    const fn new() -> Self {
        Self {
            vector: AtomicU64::new(NO_FIXUP),
            resume: AtomicU64::new(0),
            hit_vector: AtomicU64::new(NO_FIXUP),
            hit_error_code: AtomicU64::new(0),
            hit_fault_addr: AtomicU64::new(0),
            hit_rip: AtomicU64::new(0),
        }
    }

    #[cfg(feature = "diagnostics")]
    /// Arms the fixup for `vector`. The resume address is stored by the faulting asm block
    /// itself into [`Fixup::resume_slot`].
    pub(crate) fn arm(&self, vector: Vector) {
        self.hit_vector.store(NO_FIXUP, Ordering::Relaxed);
        self.resume.store(0, Ordering::Relaxed);
        self.vector.store(vector as u64, Ordering::Relaxed);
    }

    #[cfg(feature = "diagnostics")]
    /// Disarms the fixup; returns the recorded hit's vector, if any.
    pub(crate) fn disarm(&self) -> Option<u64> {
        self.vector.store(NO_FIXUP, Ordering::Relaxed);
        let v = self.hit_vector.load(Ordering::Relaxed);
        (v != NO_FIXUP).then_some(v)
    }

    #[cfg(feature = "diagnostics")]
    /// Address of the resume-address slot (written by the faulting asm block).
    pub(crate) fn resume_slot(&self) -> *mut u64 {
        self.resume.as_ptr()
    }

    /// Applies the fixup to `frame` if it matches; true if it did.
    fn apply(&self, frame: &mut TrapFrame) -> bool {
        let resume = self.resume.load(Ordering::Relaxed);
        if self.vector.load(Ordering::Relaxed) != frame.vector || resume == 0 {
            return false;
        }
        self.hit_error_code
            .store(frame.error_code, Ordering::Relaxed);
        self.hit_fault_addr
            .store(frame.fault_addr, Ordering::Relaxed);
        self.hit_rip.store(frame.rip, Ordering::Relaxed);
        self.hit_vector.store(frame.vector, Ordering::Relaxed);
        self.vector.store(NO_FIXUP, Ordering::Relaxed);
        frame.rip = resume;
        true
    }
}

/// Per-vCPU fixups.
static FIXUPS: [Fixup; MAX_VCPUS as usize] = [const { Fixup::new() }; MAX_VCPUS as usize];

/// This vCPU's fixup (call with events disabled so the thread stays on this vCPU).
pub(crate) fn this_fixup() -> &'static Fixup {
    &FIXUPS[stub::vcpu_id() as usize % MAX_VCPUS as usize]
}

#[cfg(feature = "diagnostics")]
/// A page fault caught by [`read_u64_or_fault`], as the trap handler recorded it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CaughtFault {
    /// The #PF error code.
    pub(crate) error_code: u64,
    /// The faulting address.
    pub(crate) fault_addr: u64,
    /// `rip` of the faulting load.
    pub(crate) rip: u64,
    /// Where execution resumed.
    pub(crate) resume: u64,
}

#[cfg(feature = "diagnostics")]
/// Reads the u64 at `va` with events disabled and a #PF fixup armed on this vCPU: the value
/// if the read worked, or the fault the trap handler recorded (execution resumes right after
/// the load).
pub(crate) fn read_u64_or_fault(va: u64) -> Result<u64, CaughtFault> {
    let _irq = crate::irq::IrqGuard::new();
    let fixup = this_fixup();
    fixup.arm(Vector::PageFault);
    let slot = fixup.resume_slot();
    let value: u64;
    // SAFETY: a load that may fault; the armed fixup resumes at label 2 on #PF, leaving
    // `value` as garbage (it is discarded then). Events stay disabled, so the thread cannot
    // migrate away from this vCPU's fixup.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "mov {tmp}, qword ptr [{addr}]",
            "2:",
            slot = in(reg) slot,
            addr = in(reg) va,
            tmp = out(reg) value,
        )
    };
    fixup_outcome(fixup, slot).map(|()| value)
}

#[cfg(feature = "diagnostics")]
/// Disarms `fixup` after an access that may have faulted: the fault the trap handler
/// recorded, if one did (`slot`: the fixup's resume word).
fn fixup_outcome(fixup: &Fixup, slot: *mut u64) -> Result<(), CaughtFault> {
    // SAFETY: `slot` points at this vCPU's fixup resume word (a live static atomic).
    let resume = unsafe { slot.read_volatile() };
    match fixup.disarm() {
        None => Ok(()),
        Some(_) => Err(CaughtFault {
            error_code: fixup.hit_error_code.load(Ordering::Relaxed),
            fault_addr: fixup.hit_fault_addr.load(Ordering::Relaxed),
            rip: fixup.hit_rip.load(Ordering::Relaxed),
            resume,
        }),
    }
}

#[cfg(feature = "diagnostics")]
/// Writes `value` to the u64 at `va` with events disabled and a #PF fixup armed on this vCPU
/// (as [`read_u64_or_fault`]): `Ok` if the write worked, or the fault the trap handler
/// recorded (execution resumes right after the store).
pub(crate) fn write_u64_or_fault(va: u64, value: u64) -> Result<(), CaughtFault> {
    let _irq = crate::irq::IrqGuard::new();
    let fixup = this_fixup();
    fixup.arm(Vector::PageFault);
    let slot = fixup.resume_slot();
    // SAFETY: a store that may fault; the armed fixup resumes at label 2 on #PF. Events stay
    // disabled, so the thread cannot migrate away from this vCPU's fixup. The caller owns
    // whatever the store may change.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "mov qword ptr [{addr}], {value}",
            "2:",
            slot = in(reg) slot,
            addr = in(reg) va,
            value = in(reg) value,
            tmp = out(reg) _,
        )
    };
    fixup_outcome(fixup, slot)
}

/// Rust side of the trap/event entry.
extern "sysv64" fn trap_dispatch(frame: *mut TrapFrame) {
    // First thing: the entry time for the `interrupt.timer` benchmark (a few ns).
    #[cfg(feature = "diagnostics")]
    let entry_tsc = crate::arch::rdtsc();
    // SAFETY: the entry passes the stub's frame, which lies on this stack above us, is
    // 16-byte aligned, and is used by nothing else until we return and `iret` it.
    let frame = unsafe { &mut *frame };
    let vector = Vector::from_raw(frame.vector);
    if vector == Some(Vector::Event) {
        // Inside `irq_disable`'s sequence: it starts again when the thread resumes, on
        // whichever vCPU that is.
        if let Some(start) = crate::stub::irq_disable_restart(frame.rip) {
            frame.rip = start;
        }
        #[cfg(feature = "diagnostics")]
        crate::bench::on_event(entry_tsc);
        STATS.events.fetch_add(1, Ordering::Relaxed);
        // Every pending bit is accepted: TIMER, KICK, HOST (the host watchdog's heartbeat,
        // which needs no action beyond being taken) and bits a newer host may define are all
        // consumed by the same idempotent checks.
        crate::sched::handle_event(frame.error_code as u32);
        return;
    }
    if this_fixup().apply(frame) {
        return;
    }
    match vector {
        Some(Vector::PageFault) if crate::mm::demand::handle_fault(frame.fault_addr, frame.error_code) => {}
        Some(Vector::Breakpoint) => {
            STATS.breakpoints.fetch_add(1, Ordering::Relaxed);
        }
        Some(Vector::Syscall) => {
            STATS.last_syscall_nr.store(frame.error_code, Ordering::Relaxed);
            STATS.last_syscall_rip.store(frame.rip, Ordering::Relaxed);
            STATS.syscalls.fetch_add(1, Ordering::Relaxed);
            frame.rax = ENOSYS as u64;
        }
        _ => panic!(
            "unhandled exception {} (vector {}) on vCPU {} in thread {}: rip={:#x} fault_addr={:#x} error_code={:#x} rsp={:#x}\n{:#x?}",
            vector.map_or("unknown", Vector::name),
            frame.vector,
            stub::vcpu_id(),
            crate::sched::current_name(),
            frame.rip,
            frame.fault_addr,
            frame.error_code,
            frame.rsp,
            frame
        ),
    }
}
