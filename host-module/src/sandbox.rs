//! Spawning and reaping sandbox processes.
//!
//! The stub ELF lives in a sealed memfd. A sandbox is a child that keeps two file
//! descriptors, [`GUEST_MEM_FD`] and [`CTL_FD`] (a kernel sandbox may keep a third,
//! [`KERNEL_IMAGE_FD`], read-only), and `execveat`s the stub memfd. The child is
//! created like `posix_spawn` does, with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its
//! own: the host's page tables are not copied (the host may be large), and the calling
//! thread is suspended until the child has exec'd. Before the exec the child jails itself
//! (namespaces, empty root, rlimits, unprivileged uid, no capabilities: [`crate::jail`]).
//! `PR_SET_PDEATHSIG` is tied to the
//! creating *thread*: a kernel sandbox is spawned by the tenant's monitor thread, which lives
//! until it is reaped; a user sandbox by the vCPU thread that asked for it or, for spares, by
//! the tenant's reaper thread (see `space`), both of which live until the tenant ends.

use std::ffi::c_char;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use pvmux_hypercalls::sandbox::{CTL_FD, GUEST_MEM_FD, KERNEL_IMAGE_FD};
use rustix::process::{Pid, PidfdFlags, WaitOptions};

use crate::jail::ChildJail;
use crate::shm::sealed_blob;
use crate::HostError;

/// `argv[0]` of every sandbox process.
pub const SANDBOX_ARGV0: &std::ffi::CStr = c"pvmux-sandbox";
/// Exit status of a spawned child whose `execveat` of the stub failed.
pub const EXEC_FAILED_STATUS: i32 = 127;
/// Fd of the stub memfd in the child between clone and exec (close-on-exec).
const STUB_FD: RawFd = 6;
/// Fd of the host's `/proc/self/stat` in the child between clone and exec, for the jail's
/// parent check (close-on-exec; closed by the jail before that).
const STAT_FD: RawFd = 7;

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

/// A kernel sandbox a launch started before handing it to its tenant's monitor
/// ([`crate::Host::launch`] starts it while it builds the domain): killed and reaped if it is
/// dropped before [`Prespawned::take`] (the launch failed after the spawn), so no sandbox
/// outlives a failed launch.
#[derive(Debug)]
pub(crate) struct Prespawned(Option<Child>);

impl Prespawned {
    pub(crate) fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The sandbox, now the caller's to reap.
    pub(crate) fn take(mut self) -> Child {
        match self.0.take() {
            Some(c) => c,
            None => unreachable!("a Prespawned holds its child until taken"),
        }
    }
}

impl Drop for Prespawned {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            kill(&c.pidfd);
            if let Err(e) = reap(c.pid) {
                tracing::warn!("reaping an unused kernel sandbox: {e}");
            }
        }
    }
}

/// Bytes of the stack the spawned child runs on until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// What the child needs, prepared by the parent (read-only in the child).
struct ChildArgs<'a> {
    parent: libc::pid_t,
    /// Guest memory, control region, stub, and the kernel image's file (-1: none).
    fds: [RawFd; 4],
    argv: [*const c_char; 2],
    envp: [*const c_char; 1],
    jail: &'a ChildJail,
    /// The CPUs the sandbox may run on: the host process's own (`cpu_spread::home`),
    /// whatever the spawning thread was placed on.
    cpus: Option<libc::cpu_set_t>,
}

/// Spawns a sandbox with `guest_fd` as fd 3 ([`GUEST_MEM_FD`]), `ctl_fd` as fd 4
/// ([`CTL_FD`]) and, for a kernel sandbox that maps its kernel image's pages from the image's
/// file, `image_fd` as fd 5 ([`KERNEL_IMAGE_FD`]), jails it (`crate::jail`) and execs the
/// stub.
pub(crate) fn spawn(
    stub: &Stub,
    guest_fd: RawFd,
    ctl_fd: RawFd,
    image_fd: Option<RawFd>,
    jail: &ChildJail,
) -> Result<Child, HostError> {
    let args = ChildArgs {
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        fds: [
            guest_fd,
            ctl_fd,
            stub.fd.as_raw_fd(),
            image_fd.unwrap_or(-1),
        ],
        argv: [SANDBOX_ARGV0.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
        jail,
        cpus: crate::cpu_spread::home_mask(),
    };
    // SAFETY: `child_main` is a valid child entry for a `ChildArgs` that outlives the clone.
    let pid = unsafe {
        clone_vfork(
            child_main,
            &args as *const ChildArgs<'_> as *mut libc::c_void,
            jail.namespaces,
        )
    };
    let pid = pid.map_err(|e| HostError::os("clone", e))?;
    let pid = Pid::from_raw(pid).ok_or(HostError::BadStub("clone returned pid 0"))?;
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

/// Clones a child that runs `f(arg)` on a stack of its own, sharing the host's memory
/// (`CLONE_VM`) while the calling thread is suspended (`CLONE_VFORK`) until it execs or
/// exits, in the new namespaces `namespaces`. Every signal is blocked around the clone: no
/// handler of the host may run in the child. Restores the host's dumpable flag, which a
/// credential change in the child resets (the flag belongs to the shared memory).
///
/// # Safety
/// `f` must make only async-signal-safe system calls, write no memory of the host but its
/// own stack, and never return; `arg` must stay valid until this returns.
unsafe fn clone_vfork(
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    namespaces: i32,
) -> Result<libc::pid_t, std::io::Error> {
    let mut stack = vec![0u8; CHILD_STACK];
    // 16-byte aligned top of the child's stack.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
    // SAFETY: valid set pointers; this thread's mask is restored below.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the caller guarantees what `f` does; `stack` outlives the child's use of it
    // (this thread is suspended until the child execs or exits).
    let pid = unsafe {
        libc::clone(
            f,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | namespaces,
            arg,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: PR_GET/SET_DUMPABLE take plain integers.
    unsafe {
        if dumpable >= 0 && libc::prctl(libc::PR_GET_DUMPABLE) != dumpable {
            libc::prctl(libc::PR_SET_DUMPABLE, dumpable as libc::c_ulong);
        }
    }
    // SAFETY: restores this thread's mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        Err(err)
    } else {
        Ok(pid)
    }
}

/// Whether a child jailed with `jail` can be started on this host: clones one that jails
/// itself like a sandbox and exits (used once by `jail::layers`). The child says whether it
/// got through in the memory it shares with the caller, which reads it as soon as the child
/// has left that memory (`CLONE_VFORK`): not after the child's namespaces are torn down,
/// which takes the host milliseconds (RCU grace periods), on the path of every launch. The
/// child is reaped on a thread of its own meanwhile.
pub(crate) fn probe(jail: &ChildJail) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct ProbeArgs<'a> {
        parent: libc::pid_t,
        jail: &'a ChildJail,
        jailed: AtomicBool,
    }
    extern "C" fn probe_main(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `probe` passes a valid `ProbeArgs` that outlives the child's use of it (the
        // caller is suspended until the child exits).
        let a = unsafe { &*(arg as *const ProbeArgs<'_>) };
        // SAFETY: we are the freshly cloned child, with every signal blocked.
        let ok = unsafe {
            crate::jail::open_parent_stat(a.jail)
                .is_some_and(|stat| crate::jail::enter(a.jail, a.parent, stat))
        };
        // An atomic store to the shared memory (the only write the child makes outside its
        // own stack).
        a.jailed.store(ok, Ordering::SeqCst);
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
    let args = ProbeArgs {
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        jail,
        jailed: AtomicBool::new(false),
    };
    // SAFETY: `probe_main` only jails itself (async-signal-safe calls), stores one flag in
    // `args` and exits.
    let pid = unsafe {
        clone_vfork(
            probe_main,
            &args as *const ProbeArgs<'_> as *mut libc::c_void,
            jail.namespaces,
        )
    };
    let Ok(pid) = pid else {
        return false;
    };
    let Some(pid) = Pid::from_raw(pid) else {
        return false;
    };
    let jailed = args.jailed.load(Ordering::SeqCst);
    let reaper = std::thread::Builder::new()
        .name("pvmux-probe-reap".into())
        .spawn(move || reap(pid));
    if reaper.is_err() {
        let _ = reap(pid);
    }
    if !jailed {
        tracing::debug!(flags = jail.namespaces, "jail probe failed");
    }
    jailed
}

/// Entry of the cloned child (`arg` is the parent's [`ChildArgs`]).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn` passes a valid `ChildArgs` that outlives the child's use of it (the
    // parent is suspended until the child execs or exits).
    let a = unsafe { &*(arg as *const ChildArgs<'_>) };
    // SAFETY: we are the freshly cloned child, on our own stack.
    unsafe { exec_child(a.parent, a.fds, &a.argv, &a.envp, a.jail, a.cpus.as_ref()) }
}

/// The cloned child: arrange fds 3 and 4, close everything else, jail itself, exec the stub.
///
/// # Safety
///
/// Must be called only in a child just cloned (`CLONE_VM | CLONE_VFORK`) from a
/// multi-threaded process, with every signal blocked; it performs only async-signal-safe
/// system calls, writes no memory of the parent but its own stack (and, at worst, the
/// parent thread's `errno`), and never returns.
unsafe fn exec_child(
    parent: libc::pid_t,
    [guest, ctl, stub, image]: [RawFd; 4],
    argv: &[*const c_char; 2],
    envp: &[*const c_char; 1],
    jail: &ChildJail,
    cpus: Option<&libc::cpu_set_t>,
) -> ! {
    // SAFETY: raw async-signal-safe system calls on plain integers and on pointers to
    // NUL-terminated strings / NULL-terminated arrays that outlive the calls.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Any CPU of the host process's, not only the one the spawning thread may be
        // placed on (best effort: a failure leaves the spawner's).
        if let Some(cpus) = cpus {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus);
        }
        // The parent check's procfs file while the host's procfs is reachable, then the
        // tenant's shared namespaces (a joined mount namespace is the empty root): their fds
        // are closed with the rest below.
        let Some(stat) = crate::jail::open_parent_stat(jail) else {
            libc::_exit(EXEC_FAILED_STATUS);
        };
        if !crate::jail::join(jail) {
            libc::_exit(EXEC_FAILED_STATUS);
        }
        let last_kept = if stat >= 0 { STAT_FD } else { STUB_FD };
        // Move the fds out of the way first, so the dup2s below cannot clobber them.
        let high = [
            libc::fcntl(guest, libc::F_DUPFD_CLOEXEC, 16),
            libc::fcntl(ctl, libc::F_DUPFD_CLOEXEC, 16),
            libc::fcntl(stub, libc::F_DUPFD_CLOEXEC, 16),
            if stat >= 0 {
                libc::fcntl(stat, libc::F_DUPFD_CLOEXEC, 16)
            } else {
                16
            },
            if image >= 0 {
                libc::fcntl(image, libc::F_DUPFD_CLOEXEC, 16)
            } else {
                16
            },
        ];
        if high.iter().any(|&fd| fd < 0)
            || libc::dup2(high[0], GUEST_MEM_FD) < 0
            || libc::dup2(high[1], CTL_FD) < 0
            // Without an image file, fd 5 is closed with everything else not kept.
            || (image >= 0 && libc::dup2(high[4], KERNEL_IMAGE_FD) < 0)
            || (image < 0 && libc::syscall(libc::SYS_close_range, 5u32, 5u32, 0u32) < 0)
            || libc::dup2(high[2], STUB_FD) < 0
            || libc::fcntl(STUB_FD, libc::F_SETFD, libc::FD_CLOEXEC) < 0
            || (stat >= 0
                && (libc::dup2(high[3], STAT_FD) < 0
                    || libc::fcntl(STAT_FD, libc::F_SETFD, libc::FD_CLOEXEC) < 0))
            || libc::syscall(libc::SYS_close_range, 0u32, 2u32, 0u32) < 0
            || libc::syscall(libc::SYS_close_range, last_kept as u32 + 1, u32::MAX, 0u32) < 0
        {
            libc::_exit(EXEC_FAILED_STATUS);
        }
        // Namespaces' set-up, empty root, rlimits, credentials, capabilities,
        // no_new_privs, then PR_SET_PDEATHSIG and the parent check (`crate::jail`).
        if !crate::jail::enter(jail, parent, if stat >= 0 { STAT_FD } else { -1 }) {
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

/// Whether the host kernel's release (`uname -r`) is at least `major.minor`.
pub(crate) fn linux_at_least(major: u32, minor: u32) -> bool {
    let u = rustix::system::uname();
    let release = u.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || -> u32 { parts.next().and_then(|p| p.parse().ok()).unwrap_or(0) };
    (next(), next()) >= (major, minor)
}
