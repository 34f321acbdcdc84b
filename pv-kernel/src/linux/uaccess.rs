//! Copying between the kernel and the current process's user memory.
//!
//! User addresses are translated through the current address space's page map (not the
//! hardware: user memory is not mapped in the kernel sandbox) and accessed through the direct
//! map. Pages not populated yet are populated as a fault would (anonymous zero pages, copy on
//! write); addresses outside every mapping give `EFAULT`.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use pvmux_hypercalls::user::in_user_window;
use pvmux_hypercalls::PAGE_SIZE;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::Errno;

/// Copies `buf.len()` bytes from user address `va`.
pub(crate) fn copy_from_user(va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    super::space::current_copy(va, buf.len(), false, |off, chunk| {
        buf[off..off + chunk.len()].copy_from_slice(chunk);
    })
}

/// Copies `data` to user address `va` (the pages must be writable by the user).
pub(crate) fn copy_to_user(va: u64, data: &[u8]) -> Result<(), Errno> {
    super::space::current_copy_out(va, data)
}

/// Reads a plain value from user address `va`.
pub(crate) fn read_val<T: FromBytes + IntoBytes>(va: u64) -> Result<T, Errno> {
    let mut v = T::new_zeroed();
    copy_from_user(va, v.as_mut_bytes())?;
    Ok(v)
}

/// Writes a plain value to user address `va`.
pub(crate) fn write_val<T: IntoBytes + Immutable>(va: u64, v: &T) -> Result<(), Errno> {
    copy_to_user(va, v.as_bytes())
}

/// Changes the 32-bit word at user address `va` to `f(old)` in one atomic step, as the
/// program's own locked instructions would (threads running on other vCPUs meanwhile see
/// the old or the new value, never a mix), and returns `old`. The page must be writable
/// (copy-on-write is broken first): `EFAULT` otherwise or if unmapped, `EINVAL` if `va` is
/// not 4-byte aligned. `FUTEX_WAKE_OP` changes its second word with it.
pub(crate) fn atomic_update_u32(va: u64, mut f: impl FnMut(u32) -> u32) -> Result<u32, Errno> {
    if !va.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    if !in_user_window(va, 4) {
        return Err(Errno::EFAULT);
    }
    let space = super::task::current_process()
        .space()
        .ok_or(Errno::EFAULT)?;
    // The lock keeps the frame in this space's page map (and so allocated) meanwhile.
    let mut mm = space.mm.lock();
    let gpa = mm.touch(va, true, false)?;
    let ptr = super::pool::frame_ptr(gpa + (va & (PAGE_SIZE - 1))).cast::<u32>();
    // SAFETY: `gpa` is a writable pool frame of the current space, held by its page map
    // while the lock is held, and covered by the direct map; `va` is 4-byte aligned, so the
    // word is aligned and inside the frame. The program may access the word concurrently
    // (from other vCPUs, through its own mapping of the frame), which is why it is only
    // accessed atomically here; no non-atomic reference to it is formed.
    let word = unsafe { AtomicU32::from_ptr(ptr) };
    let old = word
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(f(v)))
        .unwrap_or_else(|v| v);
    Ok(old)
}

/// Reads a NUL-terminated string of at most `max` bytes (NUL excluded) from user address
/// `va`. `ENAMETOOLONG` if longer, `EFAULT` if unmapped.
pub(crate) fn read_cstr(va: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut addr = va;
    loop {
        // Read up to the end of the page, so a string ending just before an unmapped page
        // is fine.
        let room = (4096 - (addr & 4095)) as usize;
        let mut chunk = [0u8; 4096];
        copy_from_user(addr, &mut chunk[..room])?;
        if let Some(n) = chunk[..room].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..n]);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..room]);
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
        addr = addr.checked_add(room as u64).ok_or(Errno::EFAULT)?;
    }
}

/// Reads a path argument (at most `PATH_MAX - 1` bytes; empty is `ENOENT`).
pub(crate) fn read_path(va: u64) -> Result<Vec<u8>, Errno> {
    let p = read_cstr(va, 4095)?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(p)
}
