//! The trusted in-process mode (`pvmux run --user-isolation none`, boot command
//! [`USER_ISOLATION_NONE`](crate::bootargs::command::USER_ISOLATION_NONE)): the guest kernel
//! runs user code of one address space on its own vCPU threads, in the kernel sandbox,
//! through two stub entries instead of the slot hand-off of [`super::handoff`].
//!
//! * `inproc_ops(ops, n) -> i64` applies `n` [`UserOp`](super::UserOp)s (at most
//!   [`INPROC_OPS_MAX`]) to the kernel sandbox's user mappings, in order; an op with kind
//!   [`INPROC_WIPE`] unmaps every user mapping instead. Ranges must lie in
//!   [`INPROC_LOW`] or [`INPROC_HIGH`] (the parts of the user window the kernel sandbox's
//!   own layout leaves free); an op outside them is skipped (its pages then fault as if
//!   unmapped). Returns 0 or a negative [`crate::HcError`].
//! * `inproc_run(run: *mut InprocRun) -> i64` runs user code with `run`'s state until it
//!   traps back (a system call, an exception, an event or the slice timer), then returns
//!   with the state and the exit written back into `run` ([`InprocRun::exit`], a
//!   [`UserExit`](super::UserExit) code). `InvalidArgument` when the mode is off.
//!
//! * `inproc_fp_save(buf, cap) -> i64` writes the FPU state a system-call exit *kept* on
//!   this vCPU (see below) into `buf` as an XSAVE image (the signal frame's format, with the
//!   software bytes) and returns its length; the state is no longer kept afterwards.
//!   `InvalidArgument` if none is kept, `BadAddress` if `buf` is outside the window or
//!   `cap` is too small.
//!
//! **The FPU state kept in the registers.** A system call through the syscall entry does
//! not change the program's FPU state, and the kernel and the stub use only the SSE
//! registers `xmm0`–`xmm15`, `MXCSR` and the x87 control word (no AVX, no x87 arithmetic:
//! their code is built for the x86-64 baseline). So when the kernel asks for it
//! ([`fp_flags::MAY_KEEP`]), the syscall entry saves only those (the stub's per-vCPU area)
//! instead of an `xsave` of the whole image (2.7 KB with AVX-512) and says so
//! ([`fp_flags::KEPT`], no image). The rest of the state stays in the vCPU thread's
//! registers while the kernel serves the call. The next `inproc_run` of the same thread
//! on the same vCPU passes [`fp_flags::LIVE`] and the stub puts the saved registers back
//! (no `xrstor`). Before anything else runs user code on that vCPU (a thread switch), or
//! when the kernel needs the image (a signal frame, `fork`, a hand-over safe point), the
//! kernel fetches it with `inproc_fp_save`.
//!
//! A system call of user code reaches the stub either as `SIGSYS` (the `syscall`
//! instruction outside stub code is trapped by the kernel sandbox's filter) or, with no
//! signal, through the stub's *syscall entry* (`pvmux_stub_inproc_syscall`, see
//! docs/ARCHITECTURE.md): a patched call site jumps there with the registers a `syscall`
//! instruction leaves (`rax` = number, `rcx` = return address, `r11` = rflags).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::TrapFrame;

/// Most operations one `inproc_ops` call takes.
pub const INPROC_OPS_MAX: u64 = 4096;

/// [`UserOp::kind`](super::UserOp::kind) of the operation that unmaps every user mapping
/// of the kernel sandbox (the window changes owner).
pub const INPROC_WIPE: u32 = 0x100;

/// The lower part of the user window a kernel sandbox maps user pages in: below its control
/// region, so that `addr + len` of an allowed range stays below it.
pub const INPROC_LOW: (u64, u64) = (super::USER_BASE, crate::layout::CTL_BASE / 2);
/// The upper part: above the kernel window's guard, up to the user window's end.
pub const INPROC_HIGH: (u64, u64) = (crate::layout::GUARD_END, super::USER_END);
/// Longest range one host call may cover (both parts are followed by at least this much
/// that the kernel sandbox never maps: the rest of the low half below `CTL_BASE`, and
/// `[USER_END, USER_END + INPROC_LEN_MAX)`).
pub const INPROC_LEN_MAX: u64 = crate::layout::CTL_BASE / 2;

/// Whether `[addr, addr + len)` lies inside one of the in-process parts of the user window.
pub const fn in_inproc_window(addr: u64, len: u64) -> bool {
    const fn inside(addr: u64, len: u64, (lo, hi): (u64, u64)) -> bool {
        addr >= lo && addr < hi && len <= hi - addr
    }
    inside(addr, len, INPROC_LOW) || inside(addr, len, INPROC_HIGH)
}

/// The state `inproc_run` runs and gives back (kernel memory, the caller's).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InprocRun {
    /// User registers (in and out; `vector`, `error_code`, `fault_addr` out).
    pub regs: TrapFrame,
    /// FS base (in and out).
    pub fs_base: u64,
    /// Guest-virtual address of the FPU image buffer (an XSAVE image as in a signal frame).
    pub fp_addr: u64,
    /// Its capacity in bytes.
    pub fp_cap: u32,
    /// In: bytes of the image to load (0: keep the initial state if `fp_init`, else reset
    /// it). Out: bytes saved.
    pub fp_len: u32,
    /// [`fp_flags`] bits: in, how to load the FPU state and whether the exit may keep it;
    /// out, whether it was kept ([`fp_flags::KEPT`]: no image written, `fp_len` 0).
    pub fp_flags: u32,
    /// Out: a [`UserExit`](super::UserExit) code.
    pub exit: u32,
    /// In: the time slice, in ns: when the vCPU's last slice has ended (its timer fired, or
    /// its end has passed on the guest clock) or none was armed, the stub arms the slice
    /// timer to fire after this long; a kernel passes its slice length at every run and
    /// reads no clock for it. 0: leave the timer as it is.
    pub slice_ns: u64,
    /// Out: TSC ticks user code ran.
    pub user_ticks: u64,
}

/// [`InprocRun::fp_flags`] bits.
pub mod fp_flags {
    /// In: start from the initial FPU state when `fp_len` is 0 (a fresh thread).
    pub const INIT: u32 = 1;
    /// In: a system-call exit through the syscall entry may keep the FPU state in the vCPU
    /// thread's registers instead of writing the image (the kernel will pass [`LIVE`] or
    /// call `inproc_fp_save` before anything else runs user code on this vCPU).
    pub const MAY_KEEP: u32 = 2;
    /// In: resume with the state this vCPU kept at its last exit (`fp_len` is ignored); the
    /// stub refuses (`InvalidArgument`) if it kept none.
    pub const LIVE: u32 = 4;
    /// Out: the state was kept (no image was written).
    pub const KEPT: u32 = 8;
}

const _: () = assert!(offset_of!(InprocRun, fs_base) == size_of::<TrapFrame>());
const _: () = assert!(size_of::<InprocRun>() == size_of::<TrapFrame>() + 48);
const _: () = assert!(INPROC_LOW.1 + INPROC_LEN_MAX <= crate::layout::CTL_BASE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inproc_window_parts() {
        assert!(in_inproc_window(0x40_0000, 0x1000));
        assert!(in_inproc_window(0x3ff0_0000_0000 - 0x1000, 0x1000));
        assert!(!in_inproc_window(crate::layout::WINDOW_BASE, 0x1000));
        assert!(!in_inproc_window(INPROC_LOW.1 - 0x1000, 0x2000));
        assert!(!in_inproc_window(crate::layout::CTL_BASE, 0x1000));
        assert!(!in_inproc_window(super::super::USER_END, 0x1000));
    }
}
