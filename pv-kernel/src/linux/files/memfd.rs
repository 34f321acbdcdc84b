//! `memfd_create` and file seals (`fcntl` `F_ADD_SEALS`/`F_GET_SEALS`, Linux `mm/memfd.c`).
//!
//! A memfd is a regular file of the in-memory filesystem that no directory names: an
//! ordinary [`Kind::Node`] description, so `read`/`write`/`ftruncate`/`lseek`/`mmap` work as
//! on any file, and the inode goes away with its last descriptor. Its name and seals live
//! here, keyed by inode number (inode numbers are never reused); entries of freed inodes are
//! pruned when the next memfd is created.
//!
//! Seals are enforced on `write`/`pwrite` (`F_SEAL_WRITE`, `F_SEAL_FUTURE_WRITE`: `EPERM`;
//! `F_SEAL_GROW`: `EPERM` past the end), `ftruncate`/`fallocate` (`F_SEAL_SHRINK`,
//! `F_SEAL_GROW`) and `F_ADD_SEALS` itself (`F_SEAL_SEAL`). A memfd created without
//! `MFD_ALLOW_SEALING` starts with `F_SEAL_SEAL`.

#![deny(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::file::{Kind, OpenFile};
use crate::fs::ramfs::{oflag, Ino};
use crate::fs::{self, Errno};
use crate::irq::IrqLock;
use crate::linux::uaccess::read_cstr;
use crate::linux::SysResult;

/// `memfd_create` flags.
const MFD_CLOEXEC: u64 = 1;
const MFD_ALLOW_SEALING: u64 = 2;
const MFD_HUGETLB: u64 = 4;
const MFD_NOEXEC_SEAL: u64 = 8;
const MFD_EXEC: u64 = 0x10;
/// Longest name (Linux: `NAME_MAX` less the `memfd:` prefix).
const NAME_MAX: usize = 249;

/// Seal bits.
pub(crate) mod seal {
    pub(crate) const SEAL: u32 = 1;
    pub(crate) const SHRINK: u32 = 2;
    pub(crate) const GROW: u32 = 4;
    pub(crate) const WRITE: u32 = 8;
    pub(crate) const FUTURE_WRITE: u32 = 0x10;
    pub(crate) const EXEC: u32 = 0x20;
    pub(crate) const ALL: u32 = SEAL | SHRINK | GROW | WRITE | FUTURE_WRITE | EXEC;
}

/// One memfd's state.
struct Memfd {
    name: Vec<u8>,
    seals: u32,
}

/// Every memfd by inode.
static MEMFDS: IrqLock<BTreeMap<Ino, Memfd>> = IrqLock::new(BTreeMap::new());
/// True once a memfd has been created (writes to other files skip the lookup until then).
static ANY: AtomicBool = AtomicBool::new(false);

/// `memfd_create(name, flags)`.
pub(crate) fn sys_memfd_create(name_va: u64, flags: u64) -> SysResult {
    if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC) != 0
        || flags & (MFD_NOEXEC_SEAL | MFD_EXEC) == MFD_NOEXEC_SEAL | MFD_EXEC
    {
        return Err(Errno::EINVAL);
    }
    if flags & MFD_HUGETLB != 0 {
        // No huge pages in the guest.
        return Err(Errno::EINVAL);
    }
    let name = read_cstr(name_va, NAME_MAX).map_err(|e| match e {
        Errno::ENAMETOOLONG => Errno::EINVAL,
        e => e,
    })?;
    let mut seals = if flags & MFD_ALLOW_SEALING != 0 {
        0
    } else {
        seal::SEAL
    };
    if flags & MFD_NOEXEC_SEAL != 0 {
        // Not executable, and sealable (Linux 6.3+).
        seals = seal::EXEC;
    }
    let perm = if flags & MFD_NOEXEC_SEAL != 0 {
        0o666
    } else {
        0o777
    };
    prune();
    let (h, ino) = fs::with(|fs| fs.open_unnamed(perm))?;
    let file = OpenFile::new(Kind::Node { h, ino, dir: false }, oflag::O_RDWR);
    {
        let mut m = MEMFDS.lock();
        m.insert(ino, Memfd { name, seals });
    }
    ANY.store(true, Ordering::Relaxed);
    super::install(file, flags & MFD_CLOEXEC != 0)
}

/// Forgets the memfds whose inodes are gone.
fn prune() {
    let inos: Vec<Ino> = MEMFDS.lock().keys().copied().collect();
    let gone: Vec<Ino> = inos
        .into_iter()
        .filter(|&ino| fs::with(|fs| fs.stat_ino(ino)).is_err())
        .collect();
    let mut m = MEMFDS.lock();
    for ino in gone {
        m.remove(&ino);
    }
}

/// The seals of inode `ino` if it is a memfd.
fn seals_of(ino: Ino) -> Option<u32> {
    if !ANY.load(Ordering::Relaxed) {
        return None;
    }
    MEMFDS.lock().get(&ino).map(|m| m.seals)
}

/// The memfd inode behind `f`, if it is one.
fn memfd_ino(f: &OpenFile) -> Option<Ino> {
    match f.kind {
        Kind::Node {
            ino, dir: false, ..
        } => seals_of(ino).map(|_| ino),
        _ => None,
    }
}

/// `fcntl(fd, F_GET_SEALS)`: `EINVAL` unless a memfd.
pub(crate) fn get_seals(f: &OpenFile) -> SysResult {
    let ino = memfd_ino(f).ok_or(Errno::EINVAL)?;
    Ok(u64::from(seals_of(ino).unwrap_or(0)))
}

/// `fcntl(fd, F_ADD_SEALS, seals)`: `EINVAL` unless a memfd or for unknown bits, `EPERM`
/// if sealed against sealing or not open for writing.
pub(crate) fn add_seals(f: &OpenFile, add: u64) -> SysResult {
    let ino = memfd_ino(f).ok_or(Errno::EINVAL)?;
    let add = u32::try_from(add).map_err(|_| Errno::EINVAL)?;
    if add & !seal::ALL != 0 {
        return Err(Errno::EINVAL);
    }
    if !f.writable() {
        return Err(Errno::EPERM);
    }
    let mut m = MEMFDS.lock();
    let e = m.get_mut(&ino).ok_or(Errno::EINVAL)?;
    if e.seals & seal::SEAL != 0 {
        return Err(Errno::EPERM);
    }
    e.seals |= add;
    Ok(0)
}

/// Checks a write of `len` bytes at `at` to inode `ino` against its seals (`size`: the
/// file's current size, asked only for a sealed memfd): how many bytes may be written.
pub(crate) fn check_write(
    ino: Ino,
    at: u64,
    len: usize,
    size: impl FnOnce() -> Result<u64, Errno>,
) -> Result<usize, Errno> {
    let Some(s) = seals_of(ino) else {
        return Ok(len);
    };
    if s & !seal::SEAL == 0 {
        return Ok(len);
    }
    write_allowed(s, at, len, size()?)
}

/// The pure rule of [`check_write`]: write seals refuse everything; with `F_SEAL_GROW` the
/// write goes page by page (as Linux's `shmem_write_begin`) and stops at the first page's
/// part that would pass the end — `EPERM` if that is the first.
fn write_allowed(seals: u32, at: u64, len: usize, size: u64) -> Result<usize, Errno> {
    if seals & (seal::WRITE | seal::FUTURE_WRITE) != 0 {
        return Err(Errno::EPERM);
    }
    if seals & seal::GROW == 0 || len == 0 {
        return Ok(len);
    }
    let end = at.saturating_add(len as u64);
    let mut p = at;
    while p < end {
        let chunk_end = end.min((p / 4096 + 1) * 4096);
        if chunk_end > size {
            break;
        }
        p = chunk_end;
    }
    match (p - at) as usize {
        0 => Err(Errno::EPERM),
        n => Ok(n),
    }
}

/// Checks a size change of inode `ino` from `old` to `new` against its seals.
pub(crate) fn check_resize(ino: Ino, old: u64, new: u64) -> Result<(), Errno> {
    let Some(s) = seals_of(ino) else {
        return Ok(());
    };
    resize_allowed(s, old, new)
}

/// The pure rule of [`check_resize`].
fn resize_allowed(seals: u32, old: u64, new: u64) -> Result<(), Errno> {
    if (new < old && seals & seal::SHRINK != 0) || (new > old && seals & seal::GROW != 0) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// True if descriptor `fd` is a memfd sealed against writing (its shared writable mappings
/// are refused with `EPERM`).
pub(crate) fn fd_write_sealed(fd: i32) -> bool {
    let Ok(f) = super::fd_file(fd) else {
        return false;
    };
    memfd_ino(&f)
        .and_then(seals_of)
        .is_some_and(|s| s & (seal::WRITE | seal::FUTURE_WRITE) != 0)
}

/// What `/proc/PID/fd/N` links to for a memfd: `/memfd:NAME (deleted)`.
#[allow(dead_code)] // for /proc/PID/fd (issue 11)
pub(crate) fn link_name(ino: Ino) -> Option<Vec<u8>> {
    let m = MEMFDS.lock();
    let e = m.get(&ino)?;
    let mut out = b"/memfd:".to_vec();
    out.extend_from_slice(&e.name);
    out.extend_from_slice(b" (deleted)");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_match_linux() {
        assert_eq!(seal::SEAL, libc::F_SEAL_SEAL as u32);
        assert_eq!(seal::SHRINK, libc::F_SEAL_SHRINK as u32);
        assert_eq!(seal::GROW, libc::F_SEAL_GROW as u32);
        assert_eq!(seal::WRITE, libc::F_SEAL_WRITE as u32);
        assert_eq!(seal::FUTURE_WRITE, libc::F_SEAL_FUTURE_WRITE as u32);
    }

    #[test]
    fn seal_rules() {
        assert_eq!(write_allowed(0, 0, 10, 0), Ok(10));
        assert_eq!(write_allowed(seal::WRITE, 0, 1, 10), Err(Errno::EPERM));
        assert_eq!(
            write_allowed(seal::GROW, 0, 10, 10),
            Ok(10),
            "within the size"
        );
        assert_eq!(write_allowed(seal::GROW, 5, 10, 10), Err(Errno::EPERM));
        assert_eq!(
            write_allowed(seal::GROW, 12286, 3, 12288),
            Ok(2),
            "stops at the page that passes the end"
        );
        assert_eq!(write_allowed(seal::SHRINK, 5, 10, 10), Ok(10));
        assert_eq!(resize_allowed(seal::SHRINK, 10, 5), Err(Errno::EPERM));
        assert_eq!(resize_allowed(seal::SHRINK, 10, 20), Ok(()));
        assert_eq!(resize_allowed(seal::GROW, 10, 20), Err(Errno::EPERM));
        assert_eq!(resize_allowed(seal::GROW | seal::SHRINK, 10, 10), Ok(()));
    }
}
