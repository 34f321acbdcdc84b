//! `memcpy` and friends: the stub links no libc, and on `x86_64-unknown-linux-gnu` the
//! compiler's builtins do not export them. Written with string instructions so the compiler
//! cannot turn them back into calls to themselves.

use core::arch::asm;

/// # Safety
/// Standard `memcpy` contract: valid, non-overlapping ranges.
#[no_mangle]
pub(crate) unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller contract; rep movsb copies exactly n bytes forwards (DF is clear).
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// Standard `memmove` contract: valid ranges, which may overlap.
#[no_mangle]
pub(crate) unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: no harmful overlap for a forward copy.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: caller contract; copy backwards with DF set, then clear it again.
    unsafe {
        asm!(
            "std", "rep movsb", "cld",
            inout("rdi") dst.add(n).wrapping_sub(1) => _,
            inout("rsi") src.add(n).wrapping_sub(1) => _,
            inout("rcx") n => _,
            options(nostack),
        )
    };
    dst
}

/// # Safety
/// Standard `memset` contract.
#[no_mangle]
pub(crate) unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller contract; rep stosb writes exactly n bytes.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// Standard `memcmp` contract.
#[no_mangle]
pub(crate) unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: caller contract: both ranges are valid for n bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard `bcmp` contract.
#[no_mangle]
pub(crate) unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcmp(a, b, n) }
}

/// Never called (panic=abort), but prebuilt `core` references it.
#[no_mangle]
pub(crate) extern "C" fn rust_eh_personality() {}
