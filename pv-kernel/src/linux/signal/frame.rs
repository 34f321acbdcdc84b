//! The x86-64 Linux signal frame (`struct rt_sigframe`): what a handler finds on its stack,
//! built from the interrupted registers, and read back by `rt_sigreturn`.
//!
//! ```text
//!  frame + 0    pretcode      the action's restorer: the handler's return address
//!  frame + 8    ucontext      uc_flags, uc_link, uc_stack, uc_mcontext (sigcontext),
//!                             uc_sigmask — 304 bytes
//!  frame + 312  siginfo       128 bytes
//! ```
//!
//! `frame + 8` is 16-byte aligned, as at a function's entry. The FPU state is in the user
//! frame too, above the `rt_sigframe` (see [`super::fpframe`]): `uc_mcontext.fpstate`
//! points at it, and `uc_flags` has `UC_FP_XSTATE` when it is an XSAVE image. The kernel
//! keeps nothing per frame.

use pvmux_hypercalls::frame::{TrapFrame, RFLAGS_USER_MASK};

use super::altstack::{StackT, STACK_T_SIZE};
use super::info::{SigInfo, SIGINFO_SIZE};
use super::set::SigSet;

/// Size of the kernel `struct ucontext` of x86-64.
pub(crate) const UCONTEXT_SIZE: usize = 304;
/// Size of the whole frame: return address, `ucontext`, `siginfo`.
pub(crate) const FRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
/// Bytes below the stack pointer a program may use without moving it (never overwritten).
pub(crate) const RED_ZONE: u64 = 128;

/// Offset of `uc_stack` in the `ucontext`.
const UC_STACK: usize = 16;
/// Offset of `uc_mcontext` (the `struct sigcontext`).
const UC_MCONTEXT: usize = 40;
/// Offset of `uc_sigmask`.
const UC_SIGMASK: usize = UC_MCONTEXT + 256;
/// `uc_flags`: the FP state is an XSAVE image.
const UC_FP_XSTATE: u64 = 1;

/// Indices of the 8-byte words of `struct sigcontext` (the C library's `REG_*`).
mod greg {
    pub(super) const R8: usize = 0;
    pub(super) const R9: usize = 1;
    pub(super) const R10: usize = 2;
    pub(super) const R11: usize = 3;
    pub(super) const R12: usize = 4;
    pub(super) const R13: usize = 5;
    pub(super) const R14: usize = 6;
    pub(super) const R15: usize = 7;
    pub(super) const RDI: usize = 8;
    pub(super) const RSI: usize = 9;
    pub(super) const RBP: usize = 10;
    pub(super) const RBX: usize = 11;
    pub(super) const RDX: usize = 12;
    pub(super) const RAX: usize = 13;
    pub(super) const RCX: usize = 14;
    pub(super) const RSP: usize = 15;
    pub(super) const RIP: usize = 16;
    pub(super) const EFL: usize = 17;
    /// `cs`, `gs`, `fs` and `ss`, 16 bits each.
    pub(super) const CSGSFS: usize = 18;
    pub(super) const ERR: usize = 19;
    pub(super) const TRAPNO: usize = 20;
    pub(super) const OLDMASK: usize = 21;
    pub(super) const CR2: usize = 22;
    /// `fpstate`: the address of the FP image (0: none).
    pub(super) const FPSTATE: usize = 23;
}

/// User code and stack segments of x86-64 Linux (`__USER_CS`, `__USER_DS`).
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;
/// `rflags` bits cleared for the handler: trap (single step) and direction.
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_DF: u64 = 1 << 10;
/// `rflags` bits always set in user mode: interrupts enabled and the reserved bit 1.
const RFLAGS_ALWAYS: u64 = 0x202;

/// The general registers in `struct sigcontext` order.
fn gregs(r: &TrapFrame) -> [(usize, u64); 18] {
    use greg::*;
    [
        (R8, r.r8),
        (R9, r.r9),
        (R10, r.r10),
        (R11, r.r11),
        (R12, r.r12),
        (R13, r.r13),
        (R14, r.r14),
        (R15, r.r15),
        (RDI, r.rdi),
        (RSI, r.rsi),
        (RBP, r.rbp),
        (RBX, r.rbx),
        (RDX, r.rdx),
        (RAX, r.rax),
        (RCX, r.rcx),
        (RSP, r.rsp),
        (RIP, r.rip),
        (EFL, r.rflags),
    ]
}

/// A signal frame ready to be copied to the user stack.
pub(crate) struct Frame {
    /// Its address: the handler's stack pointer (pointing at the return address).
    pub(crate) sp: u64,
    /// Its bytes.
    pub(crate) bytes: [u8; FRAME_SIZE],
}

impl Frame {
    /// The frame for a handler whose stack top is `top` (below the red zone, or the top of
    /// the alternate stack): `regs` interrupted, the signal `info`, the handler returning
    /// to `restorer`, `rt_sigreturn` restoring the mask `mask`, the alternate stack
    /// `uc_stack` and the FP image at `fp` (`(address, XSAVE?)`, or `None`).
    pub(crate) fn build(
        top: u64,
        regs: &TrapFrame,
        info: &SigInfo,
        restorer: u64,
        mask: SigSet,
        uc_stack: StackT,
        fp: Option<(u64, bool)>,
    ) -> Self {
        // Linux's `align_sigframe`: `sp + 8` is 16-byte aligned.
        let sp = (top.wrapping_sub(FRAME_SIZE as u64) & !15).wrapping_sub(8);
        let mut b = [0u8; FRAME_SIZE];
        b[0..8].copy_from_slice(&restorer.to_le_bytes());
        let uc = &mut b[8..8 + UCONTEXT_SIZE];
        if let Some((_, true)) = fp {
            uc[0..8].copy_from_slice(&UC_FP_XSTATE.to_le_bytes());
        }
        uc[UC_STACK..UC_STACK + STACK_T_SIZE].copy_from_slice(&uc_stack.to_bytes());
        let mut put = |word: usize, v: u64| {
            let o = UC_MCONTEXT + 8 * word;
            uc[o..o + 8].copy_from_slice(&v.to_le_bytes());
        };
        for (i, v) in gregs(regs) {
            put(i, v);
        }
        put(greg::CSGSFS, USER_CS | (USER_SS << 48));
        if let Some(f) = info.fault_info() {
            put(greg::ERR, f.error_code);
            put(greg::TRAPNO, u64::from(f.vector));
            put(greg::CR2, f.addr);
        }
        put(greg::OLDMASK, mask.bits());
        put(greg::FPSTATE, fp.map_or(0, |(a, _)| a));
        uc[UC_SIGMASK..UC_SIGMASK + 8].copy_from_slice(&mask.bits().to_le_bytes());
        b[8 + UCONTEXT_SIZE..].copy_from_slice(&info.to_bytes());
        Self { sp, bytes: b }
    }

    /// Address of the `ucontext` (the handler's third argument).
    pub(crate) const fn ucontext(&self) -> u64 {
        self.sp.wrapping_add(8)
    }

    /// Address of the `siginfo` (the handler's second argument).
    pub(crate) const fn siginfo(&self) -> u64 {
        self.sp.wrapping_add(8 + UCONTEXT_SIZE as u64)
    }

    /// The registers the handler `handler` of `signo` starts with, from the interrupted
    /// `regs`: `(signo, &siginfo, &ucontext)` as arguments, `rax` 0, trap and direction
    /// flags clear.
    pub(crate) fn handler_regs(&self, regs: &TrapFrame, signo: u32, handler: u64) -> TrapFrame {
        TrapFrame {
            rdi: u64::from(signo),
            rsi: self.siginfo(),
            rdx: self.ucontext(),
            rax: 0,
            rip: handler,
            rsp: self.sp,
            rflags: regs.rflags & !(RFLAGS_TF | RFLAGS_DF),
            ..*regs
        }
    }
}

/// What `rt_sigreturn` takes back from a `ucontext`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Restored {
    /// The registers to resume with.
    pub(crate) regs: TrapFrame,
    /// The signal mask to restore (SIGKILL and SIGSTOP already removed).
    pub(crate) mask: SigSet,
    /// The alternate stack to restore.
    pub(crate) stack: StackT,
    /// Address of the FP image to restore (`uc_mcontext.fpstate`; 0: none, the initial
    /// state).
    pub(crate) fpstate: u64,
}

/// Reads the `ucontext` `uc` back (`rt_sigreturn`): the general registers, only the flags a
/// program may change (with interrupts enabled), the mask and the alternate stack. The
/// other fields of `cur` stay.
pub(crate) fn restore(uc: &[u8; UCONTEXT_SIZE], cur: &TrapFrame) -> Restored {
    let u64_at = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&uc[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let g = |word: usize| u64_at(UC_MCONTEXT + 8 * word);
    let mut regs = *cur;
    {
        use greg::*;
        regs.r8 = g(R8);
        regs.r9 = g(R9);
        regs.r10 = g(R10);
        regs.r11 = g(R11);
        regs.r12 = g(R12);
        regs.r13 = g(R13);
        regs.r14 = g(R14);
        regs.r15 = g(R15);
        regs.rdi = g(RDI);
        regs.rsi = g(RSI);
        regs.rbp = g(RBP);
        regs.rbx = g(RBX);
        regs.rdx = g(RDX);
        regs.rax = g(RAX);
        regs.rcx = g(RCX);
        regs.rsp = g(RSP);
        regs.rip = g(RIP);
        regs.rflags = (g(EFL) & RFLAGS_USER_MASK) | RFLAGS_ALWAYS;
    }
    let mut st = [0u8; STACK_T_SIZE];
    st.copy_from_slice(&uc[UC_STACK..UC_STACK + STACK_T_SIZE]);
    Restored {
        regs,
        mask: SigSet::from_bits(u64_at(UC_SIGMASK)).blockable(),
        stack: StackT::from_bytes(&st),
        fpstate: g(greg::FPSTATE),
    }
}

#[cfg(test)]
mod tests {
    use super::super::altstack::SS_AUTODISARM;
    use super::super::info::{code, Fault};
    use super::super::set::sig;
    use super::*;

    /// Distinct values in every register.
    fn regs() -> TrapFrame {
        TrapFrame {
            rax: 0x1001,
            rbx: 0x1002,
            rcx: 0x1003,
            rdx: 0x1004,
            rsi: 0x1005,
            rdi: 0x1006,
            rbp: 0x1007,
            r8: 0x1008,
            r9: 0x1009,
            r10: 0x100a,
            r11: 0x100b,
            r12: 0x100c,
            r13: 0x100d,
            r14: 0x100e,
            r15: 0x100f,
            vector: 14,
            error_code: 6,
            fault_addr: 0,
            rip: 0x40_1234,
            rflags: 0x202 | RFLAGS_TF | RFLAGS_DF | 0x1, // CF
            rsp: 0x7fff_f000_0128,
        }
    }

    /// The `ucontext` of a frame as the C library's `ucontext_t` sees its first 304 bytes.
    fn libc_words(frame: &Frame) -> Vec<u64> {
        frame.bytes[8..8 + UCONTEXT_SIZE]
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn layout_matches_the_c_librarys_ucontext() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(libc::ucontext_t, uc_stack), UC_STACK);
        assert_eq!(offset_of!(libc::ucontext_t, uc_mcontext), UC_MCONTEXT);
        assert_eq!(offset_of!(libc::ucontext_t, uc_sigmask), UC_SIGMASK);
        // The kernel's ucontext ends with a 64-bit mask; the C library's mask is larger.
        assert_eq!(UC_SIGMASK + 8, UCONTEXT_SIZE);
        assert_eq!(offset_of!(libc::mcontext_t, gregs), 0);
        assert_eq!(offset_of!(libc::mcontext_t, fpregs), 23 * 8);
        for (ours, c) in [
            (greg::R8, libc::REG_R8),
            (greg::R15, libc::REG_R15),
            (greg::RDI, libc::REG_RDI),
            (greg::RSI, libc::REG_RSI),
            (greg::RBP, libc::REG_RBP),
            (greg::RBX, libc::REG_RBX),
            (greg::RDX, libc::REG_RDX),
            (greg::RAX, libc::REG_RAX),
            (greg::RCX, libc::REG_RCX),
            (greg::RSP, libc::REG_RSP),
            (greg::RIP, libc::REG_RIP),
            (greg::EFL, libc::REG_EFL),
            (greg::CSGSFS, libc::REG_CSGSFS),
            (greg::ERR, libc::REG_ERR),
            (greg::TRAPNO, libc::REG_TRAPNO),
            (greg::OLDMASK, libc::REG_OLDMASK),
            (greg::CR2, libc::REG_CR2),
        ] {
            assert_eq!(ours as i32, c);
        }
    }

    #[test]
    fn the_frame_holds_what_a_handler_reads() {
        let r = regs();
        let fault = Fault {
            addr: 0xdead_b000,
            vector: 14,
            error_code: 6,
            ip: r.rip,
            sp: r.rsp,
        };
        let info = SigInfo::fault(sig::SIGSEGV, code::SEGV_MAPERR, fault);
        let mask = SigSet::of(sig::SIGUSR1);
        let alt = StackT {
            sp: 0x6000_0000,
            flags: SS_AUTODISARM,
            size: 0x8000,
        };
        let top = r.rsp - RED_ZONE;
        let f = Frame::build(
            top,
            &r,
            &info,
            0x40_0f00,
            mask,
            alt,
            Some((0x7fff_f000_1000, true)),
        );
        // Placement: below the top, `sp + 8` aligned like a function entry, and the whole
        // frame fits below the top.
        assert_eq!((f.sp + 8) % 16, 0);
        assert!(f.sp + FRAME_SIZE as u64 <= top && top - f.sp < FRAME_SIZE as u64 + 32);
        assert_eq!(f.ucontext(), f.sp + 8);
        assert_eq!(f.siginfo(), f.sp + 312);
        assert_eq!(
            &f.bytes[0..8],
            &0x40_0f00u64.to_le_bytes(),
            "return address"
        );
        // The registers, by the C library's REG_* indices (uc_mcontext.gregs).
        let w = libc_words(&f);
        let gregs = |reg: i32| w[UC_MCONTEXT / 8 + reg as usize];
        assert_eq!(gregs(libc::REG_RAX), r.rax);
        assert_eq!(gregs(libc::REG_RDI), r.rdi);
        assert_eq!(gregs(libc::REG_R15), r.r15);
        assert_eq!(gregs(libc::REG_RSP), r.rsp);
        assert_eq!(gregs(libc::REG_RIP), r.rip);
        assert_eq!(gregs(libc::REG_EFL), r.rflags);
        assert_eq!(gregs(libc::REG_CSGSFS) & 0xffff, USER_CS);
        assert_eq!(gregs(libc::REG_CSGSFS) >> 48, USER_SS);
        assert_eq!(gregs(libc::REG_ERR), 6);
        assert_eq!(gregs(libc::REG_TRAPNO), 14);
        assert_eq!(gregs(libc::REG_CR2), 0xdead_b000);
        assert_eq!(gregs(libc::REG_OLDMASK), mask.bits());
        assert_eq!(
            gregs(23),
            0x7fff_f000_1000,
            "fpstate: the FP image's address"
        );
        assert_eq!(w[UC_SIGMASK / 8], mask.bits());
        assert_eq!(w[0], UC_FP_XSTATE, "uc_flags: an XSAVE image");
        assert_eq!(w[1], 0, "uc_link");
        let mut st = [0u8; STACK_T_SIZE];
        st.copy_from_slice(&f.bytes[8 + UC_STACK..8 + UC_STACK + STACK_T_SIZE]);
        assert_eq!(StackT::from_bytes(&st), alt);
        assert_eq!(&f.bytes[312..], &info.to_bytes()[..]);
        // The handler's registers.
        let h = f.handler_regs(&r, sig::SIGSEGV, 0x40_2000);
        assert_eq!((h.rdi, h.rsi, h.rdx), (11, f.siginfo(), f.ucontext()));
        assert_eq!((h.rip, h.rsp, h.rax), (0x40_2000, f.sp, 0));
        assert_eq!(h.rflags, 0x203, "TF and DF cleared, CF kept");
        assert_eq!((h.rbx, h.r12), (r.rbx, r.r12), "the others are kept");
    }

    #[test]
    fn non_fault_signals_leave_the_fault_words_clear() {
        let r = regs();
        let info = SigInfo::from_process(sig::SIGUSR1, code::SI_USER, 3);
        let f = Frame::build(
            0x1000_0000,
            &r,
            &info,
            1,
            SigSet::EMPTY,
            StackT::default(),
            None,
        );
        let w = libc_words(&f);
        for reg in [libc::REG_ERR, libc::REG_TRAPNO, libc::REG_CR2] {
            assert_eq!(w[UC_MCONTEXT / 8 + reg as usize], 0);
        }
        assert_eq!(f.sp, 0x1000_0000 - 448 - 8);
        assert_eq!((w[0], w[UC_MCONTEXT / 8 + 23]), (0, 0), "no FP image");
    }

    #[test]
    fn sigreturn_restores_what_the_frame_saved_and_sanitizes_it() {
        let r = regs();
        let mask = SigSet::of(sig::SIGUSR2) | SigSet::of(40);
        let alt = StackT {
            sp: 0x6000_0000,
            flags: 0,
            size: 0x8000,
        };
        let info = SigInfo::kernel(sig::SIGINT);
        let f = Frame::build(
            r.rsp - RED_ZONE,
            &r,
            &info,
            0,
            mask,
            alt,
            Some((0x5000, false)),
        );
        let handler = f.handler_regs(&r, sig::SIGINT, 0x40_2000);
        let mut uc = [0u8; UCONTEXT_SIZE];
        uc.copy_from_slice(&f.bytes[8..8 + UCONTEXT_SIZE]);
        let back = restore(&uc, &handler);
        let mut want = r;
        want.rflags = (r.rflags & RFLAGS_USER_MASK) | RFLAGS_ALWAYS;
        assert_eq!(back.regs, want);
        assert_eq!(back.mask, mask);
        assert_eq!(back.stack, alt);
        assert_eq!(back.fpstate, 0x5000);
        // A handler that edits its ucontext: privileged flags and unblockable signals are
        // refused (IOPL, the virtual interrupt flag's neighbours, SIGKILL, SIGSTOP).
        let efl = UC_MCONTEXT + 8 * greg::EFL;
        uc[efl..efl + 8].copy_from_slice(&(0x3000u64 | 0x4_0000 | 0x1).to_le_bytes());
        uc[UC_SIGMASK..UC_SIGMASK + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let rip = UC_MCONTEXT + 8 * greg::RIP;
        uc[rip..rip + 8].copy_from_slice(&0x40_5555u64.to_le_bytes());
        let edited = restore(&uc, &handler);
        assert_eq!(
            edited.regs.rflags,
            0x4_0000 | 0x1 | RFLAGS_ALWAYS,
            "AC and CF only"
        );
        assert_eq!(edited.mask, SigSet::FULL.blockable());
        assert_eq!(edited.regs.rip, 0x40_5555);
    }
}
