//! Copying between the kernel and the current process's user memory.
//!
//! User addresses are translated through the current address space's page map (not the
//! hardware: user memory is not mapped in the kernel sandbox) and the bytes copied by the
//! framework (`crate::mm::pool_mem`), never referenced: the program may write them meanwhile.
//! Pages not populated yet are populated as a fault would (anonymous zero pages, copy on
//! write); addresses outside every mapping give `EFAULT`.

use alloc::vec::Vec;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::Errno;

/// Copies `buf.len()` bytes from user address `va`.
pub(crate) fn copy_from_user(va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    super::space::current_copy_in(va, buf)
}

/// Copies `data` to user address `va` (the pages must be writable by the user).
pub(crate) fn copy_to_user(va: u64, data: &[u8]) -> Result<(), Errno> {
    super::space::current_copy_out(va, data)
}

/// Copies a versioned struct of `size` bytes from `va` (`clone3`'s `clone_args`,
/// `openat2`'s `open_how`): `EINVAL` below its first version's `min` bytes, `E2BIG` past a
/// page, as Linux's callers of `copy_struct_from_user`. The caller's decoder checks that the
/// bytes past the fields it knows are zero.
pub(crate) fn copy_sized_struct(va: u64, size: u64, min: usize) -> Result<Vec<u8>, Errno> {
    let size = usize::try_from(size).map_err(|_| Errno::E2BIG)?;
    if size > pvmux_hypercalls::PAGE_SIZE as usize {
        return Err(Errno::E2BIG);
    }
    if size < min {
        return Err(Errno::EINVAL);
    }
    let mut raw = alloc::vec![0u8; size];
    copy_from_user(va, &mut raw)?;
    Ok(raw)
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
pub(crate) fn atomic_update_u32(va: u64, f: impl FnMut(u32) -> u32) -> Result<u32, Errno> {
    if !va.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    super::space::current_atomic_update_u32(va, f)
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
