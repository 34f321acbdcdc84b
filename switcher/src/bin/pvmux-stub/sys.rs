//! Raw Linux system calls (no libc). Every `syscall` instruction of the sandbox lives in stub
//! code, which is what the seccomp filter's instruction-pointer check relies on.

use core::arch::asm;

use pvmux_hypercalls::PAGE_SIZE;

/// System-call numbers used by the stub.
pub(crate) mod nr {
    pub(crate) const CLOSE: usize = 3;
    pub(crate) const MMAP: usize = 9;
    pub(crate) const MPROTECT: usize = 10;
    pub(crate) const MUNMAP: usize = 11;
    pub(crate) const RT_SIGACTION: usize = 13;
    pub(crate) const PWRITE64: usize = 18;
    pub(crate) const SCHED_YIELD: usize = 24;
    pub(crate) const MINCORE: usize = 27;
    pub(crate) const GETPID: usize = 39;
    pub(crate) const CLONE: usize = 56;
    pub(crate) const WAIT4: usize = 61;
    pub(crate) const SIGALTSTACK: usize = 131;
    pub(crate) const PRCTL: usize = 157;
    pub(crate) const ARCH_PRCTL: usize = 158;
    pub(crate) const GETTID: usize = 186;
    pub(crate) const FUTEX: usize = 202;
    pub(crate) const TIMER_CREATE: usize = 222;
    pub(crate) const TIMER_SETTIME: usize = 223;
    pub(crate) const TIMER_GETTIME: usize = 224;
    pub(crate) const EXIT_GROUP: usize = 231;
    pub(crate) const TGKILL: usize = 234;
    pub(crate) const SECCOMP: usize = 317;
}

/// Makes a system call with up to six arguments; returns the raw result (negative errno).
///
/// # Safety
/// The caller must uphold the kernel contract of the call (valid pointers and lengths).
#[inline(always)]
pub(crate) unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments are valid for system call `n`; the
    // `syscall` instruction clobbers only rax, rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Converts a raw result to `Result<usize, errno>`.
#[inline(always)]
pub(crate) fn check(ret: isize) -> Result<usize, u32> {
    if (-4095..0).contains(&ret) {
        Err((-ret) as u32)
    } else {
        Ok(ret as usize)
    }
}

/// `mmap` of `len` bytes of `fd` at `offset`, fixed at `addr`.
///
/// # Safety
/// Replacing the mapping at `addr` must not invalidate memory the stub relies on.
pub(crate) unsafe fn mmap(
    addr: u64,
    len: u64,
    prot: u32,
    flags: u32,
    fd: i32,
    off: u64,
) -> Result<u64, u32> {
    // SAFETY: forwarded caller contract.
    let r = unsafe {
        syscall6(
            nr::MMAP,
            [
                addr as usize,
                len as usize,
                prot as usize,
                flags as usize,
                fd as usize,
                off as usize,
            ],
        )
    };
    check(r).map(|v| v as u64)
}

/// Whether all of the `vec.len()` pages from `page` on are mapped: one `mincore` (its
/// residency bytes go to `vec`), false if the range has a hole (`ENOMEM`) or on any other
/// error.
pub(crate) fn all_mapped(page: u64, vec: &mut [u8]) -> bool {
    // SAFETY: mincore writes one byte per page of the range (`vec.len()` pages) to `vec`.
    let r = unsafe {
        syscall6(
            nr::MINCORE,
            [
                page as usize,
                vec.len() * PAGE_SIZE as usize,
                vec.as_mut_ptr() as usize,
                0,
                0,
                0,
            ],
        )
    };
    check(r).is_ok()
}

/// `munmap`.
///
/// # Safety
/// Nothing the stub relies on may live in the range.
pub(crate) unsafe fn munmap(addr: u64, len: u64) -> Result<(), u32> {
    // SAFETY: forwarded caller contract.
    check(unsafe { syscall6(nr::MUNMAP, [addr as usize, len as usize, 0, 0, 0, 0]) }).map(|_| ())
}

/// `futex(FUTEX_WAIT)` without timeout (shared: the word may live in a shared mapping).
pub(crate) fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) -> Result<(), u32> {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    check(unsafe {
        syscall6(
            nr::FUTEX,
            [word.as_ptr() as usize, 0, expected as usize, 0, 0, 0],
        )
    })
    .map(|_| ())
}

/// `futex(FUTEX_WAIT)` (shared) with an optional relative timeout.
pub(crate) fn futex_wait_shared(
    word: &core::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<&Timespec>,
) -> Result<(), u32> {
    let ts = timeout.map_or(0, |t| t as *const Timespec as usize);
    // SAFETY: `word` is a valid, aligned u32 and `ts` is NULL or a valid timespec for the
    // duration of the call.
    check(unsafe {
        syscall6(
            nr::FUTEX,
            [word.as_ptr() as usize, 0, expected as usize, ts, 0, 0],
        )
    })
    .map(|_| ())
}

/// `futex(FUTEX_WAKE)` (shared) of up to `n` waiters; returns the number woken.
pub(crate) fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) -> u32 {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not write memory.
    let r = unsafe { syscall6(nr::FUTEX, [word.as_ptr() as usize, 1, n as usize, 0, 0, 0]) };
    check(r).map_or(0, |n| n as u32)
}

/// `pwrite64(fd, src, len, offset)`: the bytes written, or the errno (`EFAULT` when `src`
/// has no host mapping at its start).
///
/// # Safety
/// `[src, src + len)` must be memory the caller may read (an unmapped part ends the write
/// short, or with `EFAULT`: the host kernel checks, nothing faults).
pub(crate) unsafe fn pwrite(fd: i32, src: u64, len: u64, offset: u64) -> Result<usize, u32> {
    // SAFETY: the caller vouches for the source range; the host kernel reads it with its own
    // checks and writes only the file.
    let r = unsafe {
        syscall6(
            nr::PWRITE64,
            [
                fd as usize,
                src as usize,
                len as usize,
                offset as usize,
                0,
                0,
            ],
        )
    };
    check(r)
}

/// `close(fd)` (errors ignored: only start-up closes, and a failure leaves nothing to do).
pub(crate) fn close(fd: i32) {
    // SAFETY: close has no memory effects.
    unsafe { syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// `sched_yield`.
pub(crate) fn sched_yield() {
    // SAFETY: no arguments, no memory effects.
    unsafe { syscall6(nr::SCHED_YIELD, [0; 6]) };
}

/// `getpid`.
pub(crate) fn getpid() -> u32 {
    // SAFETY: no arguments, no memory effects.
    unsafe { syscall6(nr::GETPID, [0; 6]) as u32 }
}

/// `gettid`.
pub(crate) fn gettid() -> u32 {
    // SAFETY: no arguments, no memory effects.
    unsafe { syscall6(nr::GETTID, [0; 6]) as u32 }
}

/// `tgkill(pid, tid, sig)`.
pub(crate) fn tgkill(pid: u32, tid: u32, sig: u32) -> Result<(), u32> {
    // SAFETY: no memory effects.
    check(unsafe {
        syscall6(
            nr::TGKILL,
            [pid as usize, tid as usize, sig as usize, 0, 0, 0],
        )
    })
    .map(|_| ())
}

/// `exit_group(code)`.
pub(crate) fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process.
    unsafe { syscall6(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]) };
    loop {
        core::hint::spin_loop();
    }
}

/// Kernel `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Timespec {
    pub(crate) sec: i64,
    pub(crate) nsec: i64,
}

/// Kernel `struct itimerspec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Itimerspec {
    pub(crate) interval: Timespec,
    pub(crate) value: Timespec,
}

/// `timer_settime(id, flags, spec, NULL)`.
pub(crate) fn timer_settime(id: i32, flags: u32, spec: &Itimerspec) -> Result<(), u32> {
    // SAFETY: `spec` is a valid itimerspec; old value pointer is NULL.
    check(unsafe {
        syscall6(
            nr::TIMER_SETTIME,
            [
                id as usize,
                flags as usize,
                spec as *const _ as usize,
                0,
                0,
                0,
            ],
        )
    })
    .map(|_| ())
}

/// `timer_gettime(id, spec)`.
pub(crate) fn timer_gettime(id: i32) -> Result<Itimerspec, u32> {
    let mut spec = Itimerspec::default();
    // SAFETY: `spec` is a valid, writable itimerspec.
    check(unsafe {
        syscall6(
            nr::TIMER_GETTIME,
            [id as usize, &mut spec as *mut _ as usize, 0, 0, 0, 0],
        )
    })
    .map(|_| spec)
}

/// `mprotect`.
///
/// # Safety
/// Nothing the stub relies on may live in the range.
pub(crate) unsafe fn mprotect(addr: u64, len: u64, prot: u32) -> Result<(), u32> {
    // SAFETY: forwarded caller contract.
    check(unsafe {
        syscall6(
            nr::MPROTECT,
            [addr as usize, len as usize, prot as usize, 0, 0, 0],
        )
    })
    .map(|_| ())
}

/// `arch_prctl(ARCH_SET_FS, base)`: this thread's FS base (the stub's user mode never uses FS).
pub(crate) fn set_fs(base: u64) -> Result<(), u32> {
    // SAFETY: changes only this thread's FS base, which no stub code of a user sandbox reads.
    check(unsafe { syscall6(nr::ARCH_PRCTL, [0x1002, base as usize, 0, 0, 0, 0]) }).map(|_| ())
}

/// `arch_prctl(ARCH_GET_FS, &out)`: this thread's FS base.
pub(crate) fn get_fs() -> Result<u64, u32> {
    let mut out = 0u64;
    // SAFETY: the kernel writes 8 bytes to `out`, a valid local.
    check(unsafe {
        syscall6(
            nr::ARCH_PRCTL,
            [0x1003, &mut out as *mut u64 as usize, 0, 0, 0, 0],
        )
    })
    .map(|_| out)
}

/// `arch_prctl(ARCH_SET_GS, base)`: this thread's GS base (a user sandbox points it at the
/// slot's area before its filter, for the patch entry; guest programs do not use GS).
pub(crate) fn set_gs(base: u64) -> Result<(), u32> {
    // SAFETY: changes only this thread's GS base, which only the patch entry reads.
    check(unsafe { syscall6(nr::ARCH_PRCTL, [0x1001, base as usize, 0, 0, 0, 0]) }).map(|_| ())
}
