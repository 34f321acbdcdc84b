//! The vDSO's exported functions (compiled only into the image, `--cfg vdso_image`): the C
//! ABI of Linux's x86-64 vDSO. Each answers from the vvar page, or makes the system call for
//! what it does not handle.

use core::arch::asm;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::{clock_of, read_clock, split_ns, Vvar, VVAR_VALID};

/// `struct timespec`.
#[repr(C)]
pub struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `struct timeval`.
#[repr(C)]
pub struct Timeval {
    tv_sec: i64,
    tv_usec: i64,
}

/// `struct timezone`.
#[repr(C)]
pub struct Timezone {
    tz_minuteswest: i32,
    tz_dsttime: i32,
}

const SYS_GETTIMEOFDAY: u64 = 96;
const SYS_TIME: u64 = 201;
const SYS_CLOCK_GETTIME: u64 = 228;
const SYS_CLOCK_GETRES: u64 = 229;

/// The vvar page, one page below the image (`link.lds`).
#[inline(always)]
fn vvar_addr() -> usize {
    let addr: usize;
    // SAFETY: computes an address (rip-relative, no dynamic relocation); reads nothing.
    unsafe {
        asm!("lea {}, [rip + pvmux_vvar]", out(reg) addr, options(nomem, nostack, pure));
    }
    addr
}

/// A consistent copy of the vvar data, `None` if the kernel has not made it valid.
#[inline(always)]
fn snapshot() -> Option<Vvar> {
    let base = vvar_addr();
    // SAFETY: the kernel maps the vvar page (readable, page aligned, never unmapped by it)
    // below the image in every process that has the image; the fields are naturally aligned
    // and only read atomically here. (A program that unmaps it faults, as on Linux.)
    let (seq, flags, tsc_base, mult, shift, wall) = unsafe {
        (
            &*(base as *const AtomicU32),
            &*((base + 4) as *const AtomicU32),
            &*((base + 8) as *const AtomicU64),
            &*((base + 16) as *const AtomicU64),
            &*((base + 24) as *const AtomicU32),
            &*((base + 32) as *const AtomicU64),
        )
    };
    loop {
        let s = seq.load(Ordering::Acquire);
        if s & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let v = Vvar {
            seq: s,
            flags: flags.load(Ordering::Relaxed),
            tsc_base: tsc_base.load(Ordering::Relaxed),
            mult: mult.load(Ordering::Relaxed),
            shift: shift.load(Ordering::Relaxed),
            reserved: 0,
            wall_epoch_ns: wall.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == s {
            return (v.flags & VVAR_VALID != 0).then_some(v);
        }
    }
}

#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; it is allowed in guest user mode (docs/ABI.md §6).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A two-argument system call.
#[inline(always)]
fn syscall2(nr: u64, a0: u64, a1: u64) -> i64 {
    let ret: i64;
    // SAFETY: the system call the vDSO function stands for, with the caller's arguments; the
    // kernel checks them. `syscall` clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a0,
            in("rsi") a1,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Stores `ns` at `ts`.
///
/// # Safety
///
/// `ts` must be writable (the caller's contract).
#[inline(always)]
unsafe fn put_timespec(ts: *mut Timespec, ns: u64) {
    let (s, n) = split_ns(ns);
    // SAFETY: the caller's contract.
    unsafe {
        (*ts).tv_sec = s as i64;
        (*ts).tv_nsec = n as i64;
    }
}

/// `clock_gettime(clk, ts)`.
///
/// # Safety
///
/// `ts` must be null or point to a writable `struct timespec` (as for the system call, a bad
/// pointer faults instead of failing with `EFAULT`, as Linux's vDSO does).
#[no_mangle]
pub unsafe extern "C" fn __vdso_clock_gettime(clk: i32, ts: *mut Timespec) -> i32 {
    if let (Some(clock), false) = (clock_of(clk), ts.is_null()) {
        if let Some(v) = snapshot() {
            // SAFETY: the caller's contract; `ts` is not null.
            unsafe { put_timespec(ts, read_clock(&v, clock, rdtsc())) };
            return 0;
        }
    }
    syscall2(SYS_CLOCK_GETTIME, clk as i64 as u64, ts as u64) as i32
}

/// `gettimeofday(tv, tz)`.
///
/// # Safety
///
/// `tv` and `tz` must each be null or writable.
#[no_mangle]
pub unsafe extern "C" fn __vdso_gettimeofday(tv: *mut Timeval, tz: *mut Timezone) -> i32 {
    let Some(v) = snapshot() else {
        return syscall2(SYS_GETTIMEOFDAY, tv as u64, tz as u64) as i32;
    };
    if !tv.is_null() {
        let (s, n) = split_ns(read_clock(&v, super::Clock::Realtime, rdtsc()));
        // SAFETY: the caller's contract; not null.
        unsafe {
            (*tv).tv_sec = s as i64;
            (*tv).tv_usec = (n / 1000) as i64;
        }
    }
    if !tz.is_null() {
        // SAFETY: the caller's contract; not null. The guest is always in UTC.
        unsafe {
            (*tz).tz_minuteswest = 0;
            (*tz).tz_dsttime = 0;
        }
    }
    0
}

/// `time(t)`.
///
/// # Safety
///
/// `t` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn __vdso_time(t: *mut i64) -> i64 {
    let Some(v) = snapshot() else {
        return syscall2(SYS_TIME, t as u64, 0);
    };
    let s = split_ns(read_clock(&v, super::Clock::Realtime, rdtsc())).0 as i64;
    if !t.is_null() {
        // SAFETY: the caller's contract; not null.
        unsafe { *t = s };
    }
    s
}

/// `clock_getres(clk, res)`: 1 ns for the clocks the vDSO reads (the kernel's answer too).
///
/// # Safety
///
/// `res` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn __vdso_clock_getres(clk: i32, res: *mut Timespec) -> i32 {
    if clock_of(clk).is_none() {
        return syscall2(SYS_CLOCK_GETRES, clk as i64 as u64, res as u64) as i32;
    }
    if !res.is_null() {
        // SAFETY: the caller's contract; not null.
        unsafe { put_timespec(res, 1) };
    }
    0
}

/// `getcpu(cpu, node, cache)`: CPU 0 of node 0. (A guest thread is not pinned to a vCPU and
/// user space cannot see which one runs it; 0 is always in its affinity mask, as `getcpu`'s
/// answer must be.)
///
/// # Safety
///
/// `cpu` and `node` must each be null or writable.
#[no_mangle]
pub unsafe extern "C" fn __vdso_getcpu(cpu: *mut u32, node: *mut u32, _cache: *mut u8) -> i32 {
    // SAFETY: the caller's contract; each is checked for null.
    unsafe {
        if !cpu.is_null() {
            *cpu = 0;
        }
        if !node.is_null() {
            *node = 0;
        }
    }
    0
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
