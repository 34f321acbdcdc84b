//! Spawning and reaping sandbox processes.
//!
//! The stub ELF lives in a sealed memfd. A sandbox is a forked child that keeps exactly two
//! file descriptors, [`GUEST_MEM_FD`] and [`CTL_FD`], and `execveat`s the stub memfd. The
//! fork happens on the tenant's monitor thread, which lives until the sandbox is reaped, so
//! `PR_SET_PDEATHSIG` (tied to the forking *thread*) fires only if the host dies.

use std::ffi::c_char;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use pvmux_hypercalls::sandbox::{CTL_FD, GUEST_MEM_FD};
use rustix::process::{Pid, PidfdFlags, WaitOptions};

use crate::shm::sealed_blob;
use crate::HostError;

/// `argv[0]` of every sandbox process.
pub const SANDBOX_ARGV0: &std::ffi::CStr = c"pvmux-sandbox";
/// Exit status of a forked child whose `execveat` of the stub failed.
pub const EXEC_FAILED_STATUS: i32 = 127;
/// Fd of the stub memfd in the child between fork and exec (close-on-exec).
const STUB_FD: RawFd = 5;

/// The sandbox stub executable, sealed in a memfd.
#[derive(Debug)]
pub struct Stub {
    fd: OwnedFd,
}

impl Stub {
    /// Checks that `elf` looks like an ELF executable and seals it into a memfd.
    pub fn new(elf: &[u8]) -> Result<Self, HostError> {
        if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
            return Err(HostError::BadStub("not an ELF file"));
        }
        Ok(Self {
            fd: sealed_blob("pvmux-stub", elf)?,
        })
    }
}

/// How a sandbox process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxExit {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// A running (not yet reaped) sandbox process.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: Pid,
    pub(crate) pidfd: OwnedFd,
}

/// Forks and execs a sandbox with `guest_fd` as fd 3 and `ctl_fd` as fd 4.
pub(crate) fn spawn(stub: &Stub, guest_fd: RawFd, ctl_fd: RawFd) -> Result<Child, HostError> {
    let argv: [*const c_char; 2] = [SANDBOX_ARGV0.as_ptr(), std::ptr::null()];
    let envp: [*const c_char; 1] = [std::ptr::null()];
    let fds = [guest_fd, ctl_fd, stub.fd.as_raw_fd()];
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child runs only `exec_child`, which makes async-signal-safe system calls on
    // data prepared before the fork (no allocation, no locks) and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child; the pointers stay valid (copied address
        // space) until exec.
        unsafe { exec_child(parent, fds, &argv, &envp) }
    }
    if pid < 0 {
        return Err(HostError::os("fork", std::io::Error::last_os_error()));
    }
    let pid = Pid::from_raw(pid).ok_or(HostError::BadStub("fork returned pid 0"))?;
    match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(pidfd) => Ok(Child { pid, pidfd }),
        Err(e) => {
            // Do not leave an unreaped child behind.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = reap(pid);
            Err(HostError::os("pidfd_open", e))
        }
    }
}

/// The forked child: arrange fds 3 and 4, close everything else, exec the stub.
///
/// # Safety
///
/// Must be called only in a child just forked from a multi-threaded process; it performs only
/// async-signal-safe system calls and never returns.
unsafe fn exec_child(
    parent: libc::pid_t,
    [guest, ctl, stub]: [RawFd; 3],
    argv: &[*const c_char; 2],
    envp: &[*const c_char; 1],
) -> ! {
    // SAFETY: raw async-signal-safe system calls on plain integers and on pointers to
    // NUL-terminated strings / NULL-terminated arrays that outlive the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            || libc::getppid() != parent
        {
            libc::_exit(EXEC_FAILED_STATUS);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Move the three fds out of the way first, so the dup2s below cannot clobber them.
        let high = [
            libc::fcntl(guest, libc::F_DUPFD_CLOEXEC, 16),
            libc::fcntl(ctl, libc::F_DUPFD_CLOEXEC, 16),
            libc::fcntl(stub, libc::F_DUPFD_CLOEXEC, 16),
        ];
        if high.iter().any(|&fd| fd < 0)
            || libc::dup2(high[0], GUEST_MEM_FD) < 0
            || libc::dup2(high[1], CTL_FD) < 0
            || libc::dup2(high[2], STUB_FD) < 0
            || libc::fcntl(STUB_FD, libc::F_SETFD, libc::FD_CLOEXEC) < 0
            || libc::syscall(libc::SYS_close_range, 0u32, 2u32, 0u32) < 0
            || libc::syscall(libc::SYS_close_range, STUB_FD as u32 + 1, u32::MAX, 0u32) < 0
        {
            libc::_exit(EXEC_FAILED_STATUS);
        }
        libc::syscall(
            libc::SYS_execveat,
            STUB_FD,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        libc::_exit(EXEC_FAILED_STATUS)
    }
}

/// Waits for `pid` to end and reaps it.
pub(crate) fn reap(pid: Pid) -> Result<SandboxExit, HostError> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(SandboxExit::Exited(code));
                }
                if let Some(sig) = status.terminating_signal() {
                    return Ok(SandboxExit::Signaled(sig));
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(HostError::os("waitpid", e)),
        }
    }
}

/// Waits until the process of `pidfd` has exited (not reaped: its pid stays reserved), at
/// most `timeout` (`None`: no limit). Returns whether it has exited. Once it has, none of its
/// threads runs any more and its memory mappings are gone.
pub(crate) fn wait_exited(pidfd: &OwnedFd, timeout: Option<std::time::Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(std::time::Instant::now());
            Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::warn!("poll(pidfd) failed: {e}");
                return false;
            }
        }
    }
}

impl SandboxExit {
    /// The `dead_status` encoding of user sandboxes: the exit status, or `0x100 | signal`.
    pub fn dead_status(self) -> u32 {
        match self {
            Self::Exited(code) => (code as u32) & 0xff,
            Self::Signaled(sig) => 0x100 | ((sig as u32) & 0xff),
        }
    }
}

/// Sends SIGKILL through a pidfd (harmless after the process was reaped).
pub(crate) fn kill(pidfd: &OwnedFd) {
    match rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => tracing::warn!("pidfd_send_signal(SIGKILL) failed: {e}"),
    }
}
