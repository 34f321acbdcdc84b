//! The host kernel's signal frame as the stub's handlers see it (x86-64 Linux): signal
//! numbers, the `siginfo` fields the stub reads, and word indices into `struct sigcontext`,
//! which starts at byte [`UC_MCONTEXT`] of the `ucontext`.

use pvmux_hypercalls::TrapFrame;
pub(crate) use pvmux_switcher::exception::signo::*;
use pvmux_switcher::exception::HostSignal;

/// `si_code` of a POSIX timer expiry.
pub(crate) const SI_TIMER: i32 = -2;
/// `si_code` of a signal the kernel raised for a trap (`int3`, among others).
pub(crate) const SI_KERNEL: i32 = 0x80;

/// Byte offset of `struct sigcontext` (32 words) in the `ucontext`.
pub(crate) const UC_MCONTEXT: usize = 40;
/// Byte offset of the signal mask in the `ucontext`.
pub(crate) const UC_SIGMASK: usize = 296;

// Word indices into `struct sigcontext`.
pub(crate) const R8: usize = 0;
pub(crate) const R9: usize = 1;
pub(crate) const R10: usize = 2;
pub(crate) const R11: usize = 3;
pub(crate) const R12: usize = 4;
pub(crate) const R13: usize = 5;
pub(crate) const R14: usize = 6;
pub(crate) const R15: usize = 7;
pub(crate) const RDI: usize = 8;
pub(crate) const RSI: usize = 9;
pub(crate) const RBP: usize = 10;
pub(crate) const RBX: usize = 11;
pub(crate) const RDX: usize = 12;
pub(crate) const RAX: usize = 13;
pub(crate) const RCX: usize = 14;
pub(crate) const RSP: usize = 15;
pub(crate) const RIP: usize = 16;
pub(crate) const EFLAGS: usize = 17;
pub(crate) const ERR: usize = 19;
pub(crate) const TRAPNO: usize = 20;
pub(crate) const CR2: usize = 22;
/// Pointer to the FPU/XSAVE state.
pub(crate) const FPSTATE: usize = 23;

/// The `siginfo` fields the stub reads (128 bytes from the host kernel).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SigInfo {
    /// `si_code`.
    pub(crate) code: i32,
    /// `si_addr` (faults).
    pub(crate) addr: u64,
    /// The word at byte 24: a POSIX timer's `sigev_value`, or `si_syscall` (low half) and
    /// `si_arch` (high half) for SIGSYS.
    pub(crate) word24: u64,
}

impl SigInfo {
    /// Copies the fields out of the `siginfo` the kernel passed to a handler.
    ///
    /// # Safety
    /// `info` must be the handler's `siginfo` pointer (128 readable bytes).
    pub(crate) unsafe fn read(info: *const u8) -> Self {
        // SAFETY: the caller passes the kernel's siginfo: si_code at 8, si_addr at 16, the
        // union word at 24, all inside its 128 bytes and naturally aligned. Volatile loads,
        // no reference: the frame is on a stack guest code could write (see trap.rs `Regs`).
        unsafe {
            Self {
                code: (info.add(8) as *const i32).read_volatile(),
                addr: (info.add(16) as *const u64).read_volatile(),
                word24: (info.add(24) as *const u64).read_volatile(),
            }
        }
    }

    /// The signal as [`pvmux_switcher::exception::classify`] takes it, with the fault
    /// registers of the context words `g`.
    pub(crate) fn host_signal(&self, signo: i32, g: &[u64; 32]) -> HostSignal {
        HostSignal {
            signo,
            si_addr: self.addr,
            si_syscall: self.word24 as u32,
            si_arch: (self.word24 >> 32) as u32,
            trapno: g[TRAPNO],
            err: g[ERR],
            cr2: g[CR2],
        }
    }
}

/// The registers of `struct sigcontext` words `g` as a [`TrapFrame`] with the given
/// exception fields (rflags as the kernel saved them).
pub(crate) fn trap_frame(
    g: &[u64; 32],
    vector: u64,
    error_code: u64,
    fault_addr: u64,
) -> TrapFrame {
    TrapFrame {
        rax: g[RAX],
        rbx: g[RBX],
        rcx: g[RCX],
        rdx: g[RDX],
        rsi: g[RSI],
        rdi: g[RDI],
        rbp: g[RBP],
        r8: g[R8],
        r9: g[R9],
        r10: g[R10],
        r11: g[R11],
        r12: g[R12],
        r13: g[R13],
        r14: g[R14],
        r15: g[R15],
        vector,
        error_code,
        fault_addr,
        rip: g[RIP],
        rflags: g[EFLAGS],
        rsp: g[RSP],
    }
}
