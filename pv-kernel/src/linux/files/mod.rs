//! File descriptors and every file-related system call.
//!
//! * [`file`] open file descriptions ([`OpenFile`]), the descriptor table ([`FdTable`]),
//!   reading and writing, `stat` results,
//! * [`eventfd`] event counters, [`epoll`] readiness sets, [`inotify`] file-change events,
//! * [`memfd`] memory files and their seals, [`copy`] `copy_file_range`/`splice`/`tee`,
//! * [`pipe`] pipes, [`dev`] the `/dev` devices, [`tty`] the console terminal, [`random`] the
//!   random bytes,
//! * [`object`] every other kind of open file (sockets, event objects, pseudo files) behind
//!   one trait,
//! * [`fdops`] calls on descriptors, [`path`] calls on path names, [`poll`] readiness waits.
//!
//! Files live in the in-memory filesystem ([`crate::fs`]); each open regular file or
//! directory holds a ramfs handle. Semantics follow Linux (errno values included); every
//! process runs as root, so there are no permission checks except execute bits.

pub(crate) mod blockdev;
pub(crate) mod channel;
pub(crate) mod copy;
pub(crate) mod dev;
pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fdops;
pub(crate) mod file;
pub(crate) mod inotify;
pub(crate) mod locks;
pub(crate) mod memfd;
pub(crate) mod object;
pub(crate) mod path;
pub(crate) mod pipe;
pub(crate) mod poll;
pub(crate) mod random;
pub(crate) mod tty;

use alloc::sync::Arc;

use super::abi::nr;
use super::SysResult;
use crate::fs::ramfs::{oflag, Ino, ROOT_INO};
use crate::fs::Errno;

#[allow(unused_imports)] // for file mappings (the memory layer)
pub(crate) use fdops::{is_dev_zero, map_name, mmap_file, read_fd_at, MmapSource};
pub(crate) use file::{FdTable, OpenFile};

/// A process's filesystem context: its working directory.
#[derive(Clone)]
pub(crate) struct FsContext {
    /// Inode of the working directory (with `synth`, the mount point).
    pub(crate) cwd: Ino,
    /// Inode of the root directory (`chroot`): where absolute paths start and `..` stops.
    pub(crate) root: Ino,
    /// A working directory inside a synthetic filesystem (`/proc/self`): its filesystem and
    /// components after the mount point.
    pub(crate) synth: Option<(
        crate::fs::mount::MountKind,
        alloc::vec::Vec<alloc::vec::Vec<u8>>,
    )>,
}

impl FsContext {
    /// Working directory `cwd` (a directory).
    pub(crate) fn at(cwd: Ino) -> Self {
        Self {
            cwd,
            root: ROOT_INO,
            synth: None,
        }
    }

    /// Sets the working directory to ramfs directory `cwd`.
    pub(crate) fn set(&mut self, cwd: Ino) {
        self.cwd = cwd;
        self.synth = None;
    }
}

/// Creates the `/dev` nodes. Call once the initramfs is unpacked (idempotent; the first
/// process's [`FdTable::with_console`] calls it too).
pub(crate) fn init() {
    dev::init();
    super::procfs::init();
}

/// Console input arrived (`pending::INPUT`): wakes terminal readers and pollers. Safe in
/// event context.
pub(crate) fn console_input() {
    tty::input_arrived();
}

/// The host resized the console (`pending::CONSOLE_SIZE`): its new size, `SIGWINCH` to its
/// foreground group. Safe in event context.
pub(crate) fn console_resized(rows: u16, cols: u16) {
    tty::console_resized(rows, cols);
}

/// The open file of descriptor `fd` of the current process.
pub(crate) fn fd_file(fd: i32) -> Result<Arc<OpenFile>, Errno> {
    super::task::current_process().files.lock().get(fd)
}

/// Installs `file` at the current process's lowest free descriptor (its `RLIMIT_NOFILE`
/// applies), returning the descriptor.
pub(crate) fn install(file: Arc<OpenFile>, cloexec: bool) -> SysResult {
    let p = super::task::current_process();
    let limit = super::rlimit::nofile(&p);
    let fd = p.files.lock().alloc(file, cloexec, 0, limit)?;
    Ok(fd as u64)
}

/// The current process's working directory (`/` outside a process).
fn cwd() -> Ino {
    super::task::try_current_task().map_or(ROOT_INO, |t| t.process.fs.lock().cwd)
}

/// The current process's root directory (`chroot`; `/` outside a process).
pub(crate) fn fs_root() -> Ino {
    super::task::try_current_task().map_or(ROOT_INO, |t| t.process.fs.lock().root)
}

use crate::time::realtime_ns as wall_now;

/// `AT_FDCWD` as a raw argument.
const FDCWD: u64 = path::AT_FDCWD as i64 as u64;

/// Handles system call `nr` if it is a file system call; `None` otherwise.
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> Option<SysResult> {
    use fdops::*;
    use path::*;
    Some(match n {
        nr::READ => sys_read(a[0], a[1], a[2]),
        nr::WRITE => sys_write(a[0], a[1], a[2]),
        nr::READV => sys_readv(a[0], a[1], a[2]),
        nr::WRITEV => sys_writev(a[0], a[1], a[2]),
        nr::PREAD64 => sys_pread64(a[0], a[1], a[2], a[3]),
        nr::PWRITE64 => sys_pwrite64(a[0], a[1], a[2], a[3]),
        nr::PREADV => sys_preadv(a[0], a[1], a[2], a[3], false),
        nr::PWRITEV => sys_pwritev(a[0], a[1], a[2], a[3], false),
        nr::PREADV2 => sys_preadv(a[0], a[1], a[2], a[3], true),
        nr::PWRITEV2 => sys_pwritev(a[0], a[1], a[2], a[3], true),
        nr::LSEEK => sys_lseek(a[0], a[1], a[2]),
        nr::SENDFILE => sys_sendfile(a[0], a[1], a[2], a[3]),

        nr::OPEN => sys_openat(FDCWD, a[0], a[1], a[2]),
        nr::OPENAT => sys_openat(a[0], a[1], a[2], a[3]),
        nr::OPENAT2 => path::sys_openat2(a[0], a[1], a[2], a[3]),
        nr::CREAT => sys_openat(
            FDCWD,
            a[0],
            u64::from(oflag::O_CREAT | oflag::O_WRONLY | oflag::O_TRUNC),
            a[1],
        ),
        nr::CLOSE => sys_close(a[0]),
        nr::CLOSE_RANGE => sys_close_range(a[0], a[1], a[2]),
        nr::DUP => sys_dup(a[0]),
        nr::DUP2 => sys_dup3(a[0], a[1], 0, false),
        nr::DUP3 => sys_dup3(a[0], a[1], a[2], true),
        nr::FCNTL => sys_fcntl(a[0], a[1], a[2]),
        nr::PIPE => sys_pipe2(a[0], 0),
        nr::PIPE2 => sys_pipe2(a[0], a[1]),
        nr::EVENTFD => eventfd::sys_eventfd2(a[0], 0),
        nr::EVENTFD2 => eventfd::sys_eventfd2(a[0], a[1]),
        nr::IOCTL => sys_ioctl(a[0], a[1], a[2]),

        nr::STAT => sys_newfstatat(FDCWD, a[0], a[1], 0),
        nr::LSTAT => sys_newfstatat(FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
        nr::FSTAT => sys_fstat(a[0], a[1]),
        nr::NEWFSTATAT => sys_newfstatat(a[0], a[1], a[2], a[3]),
        nr::STATX => sys_statx(a[0], a[1], a[2], a[3], a[4]),
        nr::STATFS => sys_statfs(a[0], a[1]),
        nr::FSTATFS => sys_fstatfs(a[0], a[1]),
        nr::GETDENTS64 => sys_getdents(a[0], a[1], a[2], false),
        nr::GETDENTS => sys_getdents(a[0], a[1], a[2], true),

        nr::MKDIR => sys_mkdirat(FDCWD, a[0], a[1]),
        nr::MKDIRAT => sys_mkdirat(a[0], a[1], a[2]),
        nr::MKNOD => sys_mknodat(FDCWD, a[0], a[1], a[2]),
        nr::MKNODAT => sys_mknodat(a[0], a[1], a[2], a[3]),
        nr::RMDIR => sys_unlinkat(FDCWD, a[0], AT_REMOVEDIR),
        nr::UNLINK => sys_unlinkat(FDCWD, a[0], 0),
        nr::UNLINKAT => sys_unlinkat(a[0], a[1], a[2]),
        nr::LINK => sys_linkat(FDCWD, a[0], FDCWD, a[1], 0),
        nr::LINKAT => sys_linkat(a[0], a[1], a[2], a[3], a[4]),
        nr::SYMLINK => sys_symlinkat(a[0], FDCWD, a[1]),
        nr::SYMLINKAT => sys_symlinkat(a[0], a[1], a[2]),
        nr::READLINK => sys_readlinkat(FDCWD, a[0], a[1], a[2]),
        nr::READLINKAT => sys_readlinkat(a[0], a[1], a[2], a[3]),
        nr::RENAME => sys_renameat2(FDCWD, a[0], FDCWD, a[1], 0),
        nr::RENAMEAT => sys_renameat2(a[0], a[1], a[2], a[3], 0),
        nr::RENAMEAT2 => sys_renameat2(a[0], a[1], a[2], a[3], a[4]),
        nr::TRUNCATE => sys_truncate(a[0], a[1]),
        nr::FTRUNCATE => sys_ftruncate(a[0], a[1]),
        nr::FALLOCATE => sys_fallocate(a[0], a[1], a[2], a[3]),

        nr::ACCESS => sys_faccessat2(FDCWD, a[0], a[1], 0),
        nr::FACCESSAT => sys_faccessat2(a[0], a[1], a[2], 0),
        nr::FACCESSAT2 => sys_faccessat2(a[0], a[1], a[2], a[3]),
        nr::CHDIR => sys_chdir(a[0]),
        nr::CHROOT => sys_chroot(a[0]),
        nr::MOUNT => sys_mount(a[0], a[1], a[2], a[3]),
        nr::UMOUNT2 => sys_umount2(a[0], a[1]),
        nr::FCHDIR => sys_fchdir(a[0]),
        nr::GETCWD => sys_getcwd(a[0], a[1]),
        nr::CHMOD => sys_fchmodat(FDCWD, a[0], a[1]),
        nr::FCHMOD => sys_fchmod(a[0], a[1]),
        nr::FCHMODAT => sys_fchmodat(a[0], a[1], a[2]),
        nr::FCHMODAT2 => sys_fchmodat2(a[0], a[1], a[2], a[3]),
        nr::CHOWN => sys_fchownat(FDCWD, a[0], a[1], a[2], 0),
        nr::LCHOWN => sys_fchownat(FDCWD, a[0], a[1], a[2], AT_SYMLINK_NOFOLLOW),
        nr::FCHOWN => sys_fchown(a[0], a[1], a[2]),
        nr::FCHOWNAT => sys_fchownat(a[0], a[1], a[2], a[3], a[4]),
        nr::UMASK => sys_umask(a[0]),
        nr::UTIMENSAT => sys_utimensat(a[0], a[1], a[2], a[3]),
        nr::FUTIMESAT => sys_futimesat(a[0], a[1], a[2]),
        nr::UTIMES => sys_futimesat(FDCWD, a[0], a[1]),
        nr::UTIME => sys_utime(a[0], a[1]),

        nr::SYNC => {
            // Every disk's changes go to the host (errors are not sync(2)'s to report).
            let _ = crate::fs::disk::sync_all();
            Ok(0)
        }
        nr::FSYNC | nr::FDATASYNC => fdops::sys_fsync(a[0]),
        nr::SYNCFS => sys_fd_noop(a[0]).and_then(|_| {
            crate::fs::disk::sync_all()?;
            Ok(0)
        }),
        nr::SYNC_FILE_RANGE | nr::READAHEAD => sys_fd_noop(a[0]),
        nr::FLOCK => sys_flock(a[0], a[1]),
        nr::FADVISE64 => sys_fadvise64(a[0], a[3]),

        nr::GETXATTR | nr::LISTXATTR | nr::SETXATTR | nr::REMOVEXATTR => {
            sys_xattr_unsupported(a[0], 0)
        }
        nr::LGETXATTR | nr::LLISTXATTR | nr::LSETXATTR | nr::LREMOVEXATTR => {
            sys_xattr_unsupported(a[0], AT_SYMLINK_NOFOLLOW)
        }
        nr::FGETXATTR | nr::FLISTXATTR | nr::FSETXATTR | nr::FREMOVEXATTR => {
            fd_file(fdops::fd_arg(a[0])).and(Err(crate::fs::Errno::ENOTSUP))
        }

        nr::POLL => poll::sys_poll(a[0], a[1], a[2]),
        nr::PPOLL => poll::sys_ppoll(a[0], a[1], a[2], a[3], a[4]),
        nr::SELECT => poll::sys_select(a[0], a[1], a[2], a[3], a[4]),
        nr::PSELECT6 => poll::sys_pselect6(a[0], a[1], a[2], a[3], a[4], a[5]),

        nr::EPOLL_CREATE => epoll::sys_epoll_create(a[0]),
        nr::EPOLL_CREATE1 => epoll::sys_epoll_create1(a[0]),
        nr::EPOLL_CTL => epoll::sys_epoll_ctl(a[0], a[1], a[2], a[3]),
        nr::EPOLL_WAIT => epoll::sys_epoll_wait(a[0], a[1], a[2], a[3]),
        nr::EPOLL_PWAIT => epoll::sys_epoll_pwait(a),
        nr::EPOLL_PWAIT2 => epoll::sys_epoll_pwait2(a),
        nr::INOTIFY_INIT => inotify::sys_inotify_init1(0),
        nr::INOTIFY_INIT1 => inotify::sys_inotify_init1(a[0]),
        nr::INOTIFY_ADD_WATCH => inotify::sys_inotify_add_watch(a[0], a[1], a[2]),
        nr::INOTIFY_RM_WATCH => inotify::sys_inotify_rm_watch(a[0], a[1]),
        nr::MEMFD_CREATE => memfd::sys_memfd_create(a[0], a[1]),
        nr::COPY_FILE_RANGE => copy::sys_copy_file_range(a),
        nr::SPLICE => copy::sys_splice(a),
        nr::TEE => copy::sys_tee(a[0], a[1], a[2], a[3]),
        nr::VMSPLICE => copy::sys_vmsplice(a[0], a[1], a[2], a[3]),
        _ => return None,
    })
}

/// True if `ino` is one of the `/dev` device nodes (not a regular file to execute).
pub(crate) fn is_device(ino: Ino) -> bool {
    dev::node(ino).is_some()
}
