//! Process file descriptors (Linux `kernel/pid.c`, `kernel/fork.c`, `kernel/signal.c`):
//! `pidfd_open`, `CLONE_PIDFD` (`clone`, `clone3`), `pidfd_send_signal`, `pidfd_getfd` and
//! `waitid(P_PIDFD)`.
//!
//! A pidfd names one process for good: it holds the process itself, not its number, so a
//! signal sent through it never reaches another process. It reads as nothing; `poll` and
//! `epoll` report it readable (`POLLIN`) once the process has exited, and also `POLLHUP` once
//! it has been reaped (the process's exit wakes pollers, `task::became_zombie`). Its
//! `/proc/PID/fdinfo` entry gives `Pid:` (`-1` once reaped), where glibc's `pidfd_getpid`
//! reads it. Thread pidfds (`PIDFD_THREAD`, `CLONE_PIDFD` with `CLONE_THREAD`) are
//! `EINVAL`.

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::Ordering;

use super::files::file::{fl, KStat, OpenFile};
use super::files::object::{anon_ino, anon_stat, downcast, open_object, FileObject};
use super::files::poll::ev;
use super::task::{self, Process};
use super::{Errno, SysResult};
use crate::fs::ramfs::oflag;
use crate::irq::IrqLock;

/// `PIDFD_NONBLOCK` (`O_NONBLOCK`): `waitid(P_PIDFD)` of a process still running is
/// `EAGAIN` instead of a wait.
const PIDFD_NONBLOCK: u32 = fl::O_NONBLOCK;
/// `PIDFD_THREAD` (`O_EXCL`): a pidfd for one thread (not supported: `EINVAL`).
const PIDFD_THREAD: u32 = 0o200;

/// `pidfd_send_signal` flags: the scope of the signal (Linux 6.9).
mod scope {
    /// The thread the pidfd names (for a process's pidfd: its first thread).
    pub(super) const THREAD: u64 = 1;
    /// The thread group (the default for a process's pidfd).
    pub(super) const THREAD_GROUP: u64 = 2;
    /// The process group the process leads.
    pub(super) const PROCESS_GROUP: u64 = 4;
}

/// One pidfd.
pub(crate) struct PidFd {
    /// The process; `None` only while `clone` makes it ([`reserve`]).
    process: IrqLock<Option<Arc<Process>>>,
    ino: u64,
}

impl PidFd {
    /// The process it names (`None` while `clone` is still making it).
    fn process(&self) -> Option<Arc<Process>> {
        self.process.lock().clone()
    }

    /// Whether the process has exited (a zombie, or reaped).
    fn exited(p: &Process) -> bool {
        p.zombie.load(Ordering::Acquire)
    }

    /// Whether the process has been reaped (it no longer has its number).
    fn reaped(p: &Arc<Process>) -> bool {
        task::find_process(p.pid).is_none_or(|q| !Arc::ptr_eq(&q, p))
    }
}

impl FileObject for PidFd {
    fn poll(&self, _f: &OpenFile) -> u16 {
        let Some(p) = self.process() else {
            return 0;
        };
        match (Self::exited(&p), Self::reaped(&p)) {
            (_, true) => ev::POLLIN | ev::POLLRDNORM | ev::POLLHUP,
            (true, false) => ev::POLLIN | ev::POLLRDNORM,
            _ => 0,
        }
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:[pidfd]".to_vec()
    }

    fn fdinfo(&self) -> Vec<u8> {
        let pid = match self.process() {
            Some(p) if !Self::reaped(&p) => p.pid,
            _ => -1,
        };
        alloc::format!("Pid:\t{pid}\nNSpid:\t{pid}\n").into_bytes()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A new pidfd description for `process`, non-blocking if `nonblock`.
fn open(process: Option<Arc<Process>>, nonblock: bool) -> (Arc<PidFd>, Arc<OpenFile>) {
    let obj = Arc::new(PidFd {
        process: IrqLock::new(process),
        ino: anon_ino(),
    });
    let status = if nonblock { fl::O_NONBLOCK } else { 0 };
    (obj.clone(), open_object(obj, oflag::O_RDWR | status))
}

/// A descriptor of the caller's for the pidfd of a process `clone` is about to make
/// (`CLONE_PIDFD`), taken first so that running out of descriptors fails the `clone`
/// before there is a child. Closed again if dropped before [`Reserved::bind`].
pub(crate) struct Reserved {
    fd: i32,
    obj: Arc<PidFd>,
    bound: bool,
}

/// Takes a close-on-exec descriptor (as Linux's pidfds always are) for a pidfd.
pub(crate) fn reserve() -> Result<Reserved, Errno> {
    let (obj, file) = open(None, false);
    let fd = super::files::install(file, true)? as i32;
    Ok(Reserved {
        fd,
        obj,
        bound: false,
    })
}

impl Reserved {
    /// The descriptor (which a `fork`ed table must not keep: the child has no pidfd).
    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    /// Makes the pidfd name `process`; returns the descriptor.
    pub(crate) fn bind(mut self, process: Arc<Process>) -> i32 {
        *self.obj.process.lock() = Some(process);
        self.bound = true;
        self.fd
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.bound {
            let f = task::current_process().files.lock().take(self.fd);
            drop(f);
        }
    }
}

/// The process pidfd `fd` names, and whether the description is non-blocking: `EBADF` for
/// a descriptor that is not open or not a pidfd, as Linux (`ESRCH` for one whose process
/// another thread's `clone` is still making).
pub(crate) fn process_of(fd: i32) -> Result<(Arc<Process>, bool), Errno> {
    let f = super::files::fd_file(fd)?;
    let p = downcast::<PidFd>(&f).ok_or(Errno::EBADF)?;
    Ok((p.process().ok_or(Errno::ESRCH)?, f.nonblock()))
}

/// `pidfd_open(pid, flags)`.
pub(crate) fn sys_pidfd_open(pid: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let pid = pid as i32;
    if flags & !(PIDFD_NONBLOCK | PIDFD_THREAD) != 0 || flags & PIDFD_THREAD != 0 || pid <= 0 {
        return Err(Errno::EINVAL);
    }
    let Some(p) = task::find_process(pid) else {
        // A thread's id names no process: Linux's `ENOENT` without `PIDFD_THREAD`.
        return Err(if task::find_task(pid).is_some() {
            Errno::ENOENT
        } else {
            Errno::ESRCH
        });
    };
    let (_, file) = open(Some(p), flags & PIDFD_NONBLOCK != 0);
    super::files::install(file, true)
}

/// `pidfd_send_signal(pidfd, sig, info, flags)`: as `kill` (no `info`) or `rt_sigqueueinfo`
/// to the process the pidfd names, which must not have exited (`ESRCH`).
pub(crate) fn sys_pidfd_send_signal(fd: u64, signo: u64, info: u64, flags: u64) -> SysResult {
    if flags & !(scope::THREAD | scope::THREAD_GROUP | scope::PROCESS_GROUP) != 0
        || flags.count_ones() > 1
    {
        return Err(Errno::EINVAL);
    }
    let (p, _) = process_of(fd as i32)?;
    if p.zombie.load(Ordering::Acquire) {
        return Err(Errno::ESRCH);
    }
    let pid = i64::from(p.pid);
    match (flags, info) {
        (scope::PROCESS_GROUP, 0) => super::signal::sys_kill(-i64::from(p.pgid()), signo),
        (scope::PROCESS_GROUP, _) => Err(Errno::EINVAL),
        (scope::THREAD, 0) => super::signal::sys_tgkill(Some(pid), pid, signo),
        (scope::THREAD, _) => super::signal::sys_rt_tgsigqueueinfo(pid, pid, signo, info),
        (_, 0) => super::signal::sys_kill(pid, signo),
        (_, _) => super::signal::sys_rt_sigqueueinfo(pid, signo, info),
    }
}

/// `pidfd_getfd(pidfd, targetfd, flags)`: a duplicate of the process's descriptor
/// `targetfd` in the caller's table (close-on-exec), with the `ptrace` attach right over it.
pub(crate) fn sys_pidfd_getfd(fd: u64, target_fd: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let (p, _) = process_of(fd as i32)?;
    if p.zombie.load(Ordering::Acquire) {
        return Err(Errno::ESRCH);
    }
    super::process_vm::may_attach(&p)?;
    let file = p
        .files
        .lock()
        .get(target_fd as i32)
        .map_err(|_| Errno::EBADF)?;
    super::files::install(file, true)
}
