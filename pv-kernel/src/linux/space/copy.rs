//! Copies between the kernel and a space's user memory. User addresses are translated through
//! the space's page map (populating pages as a user access would: demand-zero, copy-on-write
//! for writes) and the bytes copied through the framework (`crate::mm::pool_mem`): a user
//! program may write its pages while the kernel copies them, so the kernel never holds a
//! reference to them, only its own copy.

use core::sync::atomic::Ordering;

use pvmux_hypercalls::user::in_user_window;
use pvmux_hypercalls::PAGE_SIZE;

use super::{current_space, Mm, Space};
use crate::linux::Errno;
use crate::mm::pool_mem;

/// Calls `f(offset, gpa, len)` for each page chunk of `[va, va + len)` in `mm`, after
/// resolving it as a user access would (`write` breaks copy-on-write); `gpa` is the
/// guest-physical address of the chunk's first byte.
fn chunks(
    mm: &mut Mm,
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(usize, u64, usize),
) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    if !in_user_window(va, len as u64) {
        return Err(Errno::EFAULT);
    }
    let mut off = 0usize;
    while off < len {
        let a = va + off as u64;
        let in_page = (PAGE_SIZE - (a & (PAGE_SIZE - 1))) as usize;
        let n = in_page.min(len - off);
        let gpa = mm.touch(a, write, false)?;
        f(off, gpa + (a & (PAGE_SIZE - 1)), n);
        off += n;
    }
    Ok(())
}

/// Copies `buf.len()` bytes from the current address space at `va` into `buf`.
pub(crate) fn current_copy_in(va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    copy_in(&*current_space()?, va, buf)
}

/// Walks `[va, va+len)` of the current address space, calling `f(offset, bytes)` with a copy
/// of each piece in turn (at most [`PIECE`] bytes, never across a page; populating pages as a
/// user access would; `write` breaks copy-on-write).
pub(crate) fn current_copy(
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(usize, &[u8]),
) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let space = current_space()?;
    let mut mm = space.mm.lock();
    let mut piece = [0u8; PIECE];
    chunks(&mut mm, va, len, write, |off, gpa, n| {
        let mut done = 0;
        while done < n {
            let m = (n - done).min(PIECE);
            pool_mem::read(gpa + done as u64, &mut piece[..m]);
            f(off + done, &piece[..m]);
            done += m;
        }
    })
}

/// Largest piece [`current_copy`] hands out at once (a kernel-stack buffer).
const PIECE: usize = 256;

/// Changes the 32-bit word at `va` (4-byte aligned) of the current address space to
/// `f(old)` in one atomic step, as the program's own locked instructions would, and returns
/// `old`. The page must be writable (copy-on-write is broken first).
pub(crate) fn current_atomic_update_u32(
    va: u64,
    mut f: impl FnMut(u32) -> u32,
) -> Result<u32, Errno> {
    let space = current_space()?;
    let mut mm = space.mm.lock();
    let mut old = 0;
    chunks(&mut mm, va, 4, true, |_, gpa, _| {
        old = pool_mem::atomic_u32(gpa)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(f(v)))
            .unwrap_or_else(|v| v);
    })?;
    Ok(old)
}

/// Copies `data` into the current address space at `va`.
pub(crate) fn current_copy_out(va: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let space = current_space()?;
    copy_out(&space, va, data)
}

/// Copies `buf.len()` bytes from `space` at `va` (not necessarily the current space) into
/// `buf`.
pub(crate) fn copy_in(space: &Space, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut mm = space.mm.lock();
    chunks(&mut mm, va, buf.len(), false, |off, gpa, n| {
        pool_mem::read(gpa, &mut buf[off..off + n]);
    })
}

/// Copies `data` into `space` at `va` (not necessarily the current space).
pub(crate) fn copy_out(space: &Space, va: u64, data: &[u8]) -> Result<(), Errno> {
    let mut mm = space.mm.lock();
    chunks(&mut mm, va, data.len(), true, |off, gpa, n| {
        pool_mem::write(gpa, &data[off..off + n]);
    })
}
