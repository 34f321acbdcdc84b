//! `mount(2)` and `umount2(2)` of the disks attached to this kernel (`/dev/vdX`, ext2;
//! docs/MULTIKERNEL.md "Devices and who owns them"). Other filesystems are the kernel's own
//! (`/proc`, `/sys`, `/dev/pts`, the `--volume`s) and stay where they are.
//!
//! Linux's order of checks: the caller's `CAP_SYS_ADMIN` (`EPERM`), the flags (`EINVAL`
//! for a remount, bind, move or propagation change, which this kernel does not do), the
//! target (`ENOENT`, `ENOTDIR`), the filesystem type (`ENODEV` for one this kernel does not
//! have), the source (`ENOENT`, `ENOTBLK` for anything but a block device, `ENXIO` for a
//! disk that left), then the disk itself (`EBUSY` when mounted already, `EACCES` for a
//! read-write mount of a read-only disk, as Linux's write-protected device, `EINVAL` when
//! it holds no ext2 filesystem this kernel mounts, `EUCLEAN` when it is corrupted).

#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::super::dev::{self, Dev};
use super::{base, AT_FDCWD};
use crate::fs::{self, Errno};
use crate::linux::caps::cap;
use crate::linux::task::current_process;
use crate::linux::uaccess::{read_cstr, read_path};
use crate::linux::SysResult;

/// `mount(2)` flags (`linux/mount.h`).
pub(crate) mod ms {
    pub(crate) const RDONLY: u64 = 1;
    pub(crate) const NOSUID: u64 = 2;
    pub(crate) const NODEV: u64 = 4;
    pub(crate) const NOEXEC: u64 = 8;
    pub(crate) const SYNCHRONOUS: u64 = 16;
    pub(crate) const REMOUNT: u64 = 32;
    pub(crate) const MANDLOCK: u64 = 64;
    pub(crate) const DIRSYNC: u64 = 128;
    pub(crate) const NOSYMFOLLOW: u64 = 256;
    pub(crate) const NOATIME: u64 = 1024;
    pub(crate) const NODIRATIME: u64 = 2048;
    pub(crate) const BIND: u64 = 4096;
    pub(crate) const MOVE: u64 = 8192;
    pub(crate) const REC: u64 = 16384;
    pub(crate) const SILENT: u64 = 32768;
    pub(crate) const POSIXACL: u64 = 1 << 16;
    pub(crate) const UNBINDABLE: u64 = 1 << 17;
    pub(crate) const PRIVATE: u64 = 1 << 18;
    pub(crate) const SLAVE: u64 = 1 << 19;
    pub(crate) const SHARED: u64 = 1 << 20;
    pub(crate) const RELATIME: u64 = 1 << 21;
    pub(crate) const I_VERSION: u64 = 1 << 23;
    pub(crate) const STRICTATIME: u64 = 1 << 24;
    pub(crate) const LAZYTIME: u64 = 1 << 25;
    /// The old magic in the high half (`MS_MGC_VAL`), which Linux strips.
    pub(crate) const MGC_VAL: u64 = 0xc0ed_0000;
    pub(crate) const MGC_MSK: u64 = 0xffff_0000;
    /// What this kernel does not do: a remount, a bind, a move, a propagation change.
    pub(crate) const UNSUPPORTED: u64 =
        REMOUNT | BIND | MOVE | UNBINDABLE | PRIVATE | SLAVE | SHARED;
    /// Accepted and without effect on a disk mount (this kernel's ext2 keeps no atime;
    /// `nosuid`, `nodev`, `noexec` are not enforced on a disk's files).
    pub(crate) const IGNORED: u64 = NOSUID
        | NODEV
        | NOEXEC
        | SYNCHRONOUS
        | MANDLOCK
        | DIRSYNC
        | NOSYMFOLLOW
        | NOATIME
        | NODIRATIME
        | REC
        | SILENT
        | POSIXACL
        | RELATIME
        | I_VERSION
        | STRICTATIME
        | LAZYTIME;
}

/// `umount2(2)` flags.
pub(crate) mod mnt {
    pub(crate) const FORCE: u64 = 1;
    pub(crate) const DETACH: u64 = 2;
    pub(crate) const EXPIRE: u64 = 4;
    pub(crate) const UMOUNT_NOFOLLOW: u64 = 8;
}

/// The filesystem types `mount(2)` takes.
pub(crate) const FS_TYPES: [&[u8]; 1] = [b"ext2"];

/// `mount(2)` flags checked: read-only or not (`EINVAL` for what this kernel does not do).
pub(crate) fn mount_flags(flags: u64) -> Result<bool, Errno> {
    let mut flags = flags;
    if flags & ms::MGC_MSK == ms::MGC_VAL {
        flags &= !ms::MGC_MSK;
    }
    if flags & ms::UNSUPPORTED != 0 || flags & !(ms::RDONLY | ms::IGNORED) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(flags & ms::RDONLY != 0)
}

/// `umount2(2)` flags checked: whether to follow a final symbolic link, and whether to
/// detach lazily (`MNT_DETACH`).
pub(crate) fn umount_flags(flags: u64) -> Result<(bool, bool), Errno> {
    let all = mnt::FORCE | mnt::DETACH | mnt::EXPIRE | mnt::UMOUNT_NOFOLLOW;
    if flags & !all != 0 || (flags & mnt::EXPIRE != 0 && flags & (mnt::FORCE | mnt::DETACH) != 0) {
        return Err(Errno::EINVAL);
    }
    Ok((flags & mnt::UMOUNT_NOFOLLOW == 0, flags & mnt::DETACH != 0))
}

fn may_mount() -> Result<(), Errno> {
    if current_process().creds.lock().capable(cap::SYS_ADMIN) {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The absolute path of the directory `path` names (following links when `follow`).
fn target_dir(path: &[u8], follow: bool) -> Result<Vec<u8>, Errno> {
    let cwd_fd = AT_FDCWD as i64 as u64;
    let b = base(cwd_fd, path)?;
    let ino = fs::with(|fs| {
        let ino = fs.lookup(b, path, follow)?;
        if fs.stat_ino(ino)?.file_type() != crate::fs::ramfs::FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok::<_, Errno>(ino)
    })?;
    super::dir_path(ino)
}

/// The directory inode `path` names (following a final link when `follow`).
fn target_ino(path: &[u8], follow: bool) -> Result<crate::fs::ramfs::Ino, Errno> {
    let b = base(AT_FDCWD as i64 as u64, path)?;
    fs::with(|fs| {
        let ino = fs.lookup(b, path, follow)?;
        if fs.stat_ino(ino)?.file_type() != crate::fs::ramfs::FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(ino)
    })
}

/// `mount(source, target, fstype, flags, data)`: an ext2 disk, or `proc`, `sysfs` or
/// `devpts` shown over another directory (a chroot's; the source is not looked at, as
/// Linux).
pub(crate) fn sys_mount(src_va: u64, target_va: u64, type_va: u64, flags: u64) -> SysResult {
    may_mount()?;
    let read_only = mount_flags(flags)?;
    let target_path = read_path(target_va)?;
    if type_va == 0 {
        return Err(Errno::EINVAL);
    }
    let fstype = read_cstr(type_va, 4096)?;
    if let Some(kind) = crate::fs::mount::synthetic_kind(&fstype) {
        if read_only {
            return Err(Errno::EINVAL);
        }
        let ino = target_ino(&target_path, true)?;
        fs::with(|fs| fs.mount_at(ino, kind))?;
        return Ok(0);
    }
    let target = target_dir(&target_path, true)?;
    if !FS_TYPES.contains(&fstype.as_slice()) {
        return Err(Errno::ENODEV);
    }
    if src_va == 0 {
        return Err(Errno::EINVAL);
    }
    let src = read_path(src_va)?;
    let cwd_fd = AT_FDCWD as i64 as u64;
    let b = base(cwd_fd, &src)?;
    let ino = fs::with(|fs| fs.lookup(b, &src, true))?;
    let slot = match dev::node(ino) {
        Some(Dev::Disk(n)) => u32::from(n),
        _ => return Err(Errno::ENOTBLK),
    };
    let (_, disk_ro) = fs::disk::geometry(slot)?;
    if disk_ro && !read_only {
        return Err(Errno::EACCES);
    }
    fs::disk::mount_slot(slot, read_only, &target, true)?;
    Ok(0)
}

/// `umount2(target, flags)` (and `umount(target)`): only a disk's mount point unmounts
/// (`EINVAL` for any other path). While the disk is in use (a file or directory of it open
/// or mapped, a process's working directory in it) a plain call (and `MNT_FORCE`, which
/// aborts nothing here) is `EBUSY`; `MNT_DETACH` detaches it from the tree at once and the
/// kernel releases it (written back, marked clean) when it is no longer in use, as Linux.
pub(crate) fn sys_umount2(target_va: u64, flags: u64) -> SysResult {
    may_mount()?;
    let (follow, lazy) = umount_flags(flags)?;
    let path = read_path(target_va)?;
    // A synthetic filesystem a program showed over a directory.
    let ino = target_ino(&path, follow)?;
    match fs::with(|fs| fs.unmount_at(ino)) {
        Err(Errno::EINVAL) => {}
        r => return r.map(|()| 0),
    }
    let target = target_dir(&path, follow)?;
    fs::disk::umount(&target, lazy)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_are_linux() {
        assert_eq!(ms::RDONLY, libc::MS_RDONLY);
        assert_eq!(ms::REMOUNT, libc::MS_REMOUNT);
        assert_eq!(ms::BIND, libc::MS_BIND);
        assert_eq!(ms::MOVE, libc::MS_MOVE);
        assert_eq!(ms::SILENT, libc::MS_SILENT);
        assert_eq!(ms::SHARED, libc::MS_SHARED);
        assert_eq!(ms::RELATIME, libc::MS_RELATIME);
        assert_eq!(ms::LAZYTIME, libc::MS_LAZYTIME);
        assert_eq!(ms::MGC_VAL, libc::MS_MGC_VAL);
        assert_eq!(mnt::DETACH, libc::MNT_DETACH as u64);
        assert_eq!(mnt::UMOUNT_NOFOLLOW, libc::UMOUNT_NOFOLLOW as u64);
    }

    #[test]
    fn mount_flags_are_checked() {
        assert_eq!(mount_flags(0), Ok(false));
        assert_eq!(mount_flags(ms::RDONLY | ms::SILENT), Ok(true));
        assert_eq!(mount_flags(ms::MGC_VAL | ms::RDONLY), Ok(true));
        assert_eq!(
            mount_flags(ms::NOSUID | ms::NODEV | ms::RELATIME),
            Ok(false)
        );
        assert_eq!(mount_flags(ms::REMOUNT), Err(Errno::EINVAL));
        assert_eq!(mount_flags(ms::BIND | ms::REC), Err(Errno::EINVAL));
        assert_eq!(mount_flags(1 << 40), Err(Errno::EINVAL));
        assert_eq!(umount_flags(0), Ok((true, false)));
        assert_eq!(umount_flags(mnt::UMOUNT_NOFOLLOW), Ok((false, false)));
        assert_eq!(umount_flags(mnt::DETACH), Ok((true, true)));
        assert_eq!(umount_flags(mnt::FORCE), Ok((true, false)));
        assert_eq!(umount_flags(mnt::EXPIRE | mnt::DETACH), Err(Errno::EINVAL));
        assert_eq!(umount_flags(16), Err(Errno::EINVAL));
    }
}
