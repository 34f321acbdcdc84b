//! A tenant's user sandbox *template* (`kind::USER_TEMPLATE`, docs/SECURITY.md "Templates"):
//! a sandbox spawned and jailed like any other, whose stub does a user sandbox's start-up up
//! to its threads, installs the template filter and then forks spares on request. A fork
//! costs the template a `clone` of a small process; a spawned spare costs the host a `clone`,
//! the jail's steps and an `execve`, and the new stub its start-up and a filter compilation.
//!
//! The template is the pid-1 init of its pid namespace, which its children share: if it dies,
//! the kernel kills them all. It reaps its children itself as they exit (`wait4` on
//! `SIGCHLD`); the host takes each child's pidfd from the template with `pidfd_getfd` and
//! reads its exit status from the pidfd (`PIDFD_INFO_EXIT`, Linux 6.15). A child's CPU time
//! reaches the host only with the template's, when the template is reaped at the tenant's end,
//! so a tenant whose CPU is counted over the processes it reaps (no cgroup) keeps spawning.
//!
//! Each child takes a page of the template's control memfd as its own control header; a page
//! is handed out again only after its child has been reaped ([`ChildCtl`]'s drop).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::sandbox::{
    kind, status, TemplateCtl, UserStubCrash, TEMPLATE_CTL_OFFSET, TEMPLATE_MAX_PAGES,
    USER_CRASH_OFFSET,
};
use pvmux_hypercalls::{SandboxHeader, PAGE_SIZE};
use rustix::process::Pid;
use rustix::thread::futex;

use crate::control::{ControlRegion, HeaderInit};
use crate::sandbox::{self, Child, SandboxExit, Stub};
use crate::shm::SharedMemfd;

/// Longest the host waits for the template to answer a fork.
const FORK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the host waits for a reaped child's exit status to show in its pidfd.
const EXIT_INFO_WAIT: Duration = Duration::from_millis(500);

/// The template's control memfd, mapped into the host: page 0 is the template's header and
/// fork channel, pages 1.. the children's headers.
#[derive(Debug)]
pub(super) struct Region {
    shm: SharedMemfd,
    /// Pages free for a new child, and the first page never handed out.
    free: Mutex<(Vec<u32>, u32)>,
}

impl Region {
    fn new(init: &HeaderInit) -> Result<Self, crate::HostError> {
        let shm = SharedMemfd::new("pvmux-utpl", u64::from(TEMPLATE_MAX_PAGES) * PAGE_SIZE)?;
        let r = Self {
            shm,
            free: Mutex::new((Vec::new(), 1)),
        };
        r.write_header(0, init);
        Ok(r)
    }

    /// Writes `init`'s header into page `page` a word at a time, atomically (a page is
    /// rewritten only once its last child is gone, but the host's other views of it stay
    /// atomic).
    fn write_header(&self, page: u32, init: &HeaderInit) {
        for (i, w) in ControlRegion::header_words(init).into_iter().enumerate() {
            self.u64_at(page, 8 * i).store(w, SeqCst);
        }
        // A page is reused: no crash record of its last child may be read as the next one's.
        let record = USER_CRASH_OFFSET..USER_CRASH_OFFSET + size_of::<UserStubCrash>();
        for off in record.step_by(8) {
            self.u64_at(page, off).store(0, SeqCst);
        }
    }

    /// The atomic word at byte `off` (8-aligned, inside the page) of page `page`.
    fn u64_at(&self, page: u32, off: usize) -> &AtomicU64 {
        let at = page as usize * PAGE_SIZE as usize + off;
        assert!(
            page < TEMPLATE_MAX_PAGES && off.is_multiple_of(8) && off + 8 <= PAGE_SIZE as usize
        );
        // SAFETY: an 8-aligned word inside the mapping (checked above), which lives as long as
        // `&self`; the sandboxes write the pages concurrently, so it is only accessed
        // atomically and no other reference to it is formed.
        unsafe { &*self.shm.as_ptr().add(at).cast::<AtomicU64>() }
    }

    /// The 32-bit atomic at byte `off` (4-aligned) of page `page`.
    fn u32_at(&self, page: u32, off: usize) -> &AtomicU32 {
        assert!(
            page < TEMPLATE_MAX_PAGES && off.is_multiple_of(4) && off + 4 <= PAGE_SIZE as usize
        );
        let at = page as usize * PAGE_SIZE as usize + off;
        // SAFETY: as `u64_at`, for a 4-aligned word.
        unsafe { &*self.shm.as_ptr().add(at).cast::<AtomicU32>() }
    }

    /// The template's fork channel.
    fn ctl(&self) -> &TemplateCtl {
        // SAFETY: TemplateCtl is four atomics at a const-asserted offset inside page 0, mapped
        // for as long as `&self`; the template writes it concurrently, atomically.
        unsafe {
            &*self
                .shm
                .as_ptr()
                .add(TEMPLATE_CTL_OFFSET)
                .cast::<TemplateCtl>()
        }
    }

    fn take_page(&self) -> Option<u32> {
        let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = f.0.pop() {
            return Some(p);
        }
        (f.1 < TEMPLATE_MAX_PAGES).then(|| {
            f.1 += 1;
            f.1 - 1
        })
    }

    fn give_back(&self, page: u32) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .push(page);
    }
}

/// A template's child's control header: page `page` of the template's control memfd,
/// handed out again once this is dropped (after the child is reaped).
#[derive(Debug)]
pub(super) struct ChildCtl {
    region: Arc<Region>,
    page: u32,
}

impl ChildCtl {
    /// The header word at byte `off`.
    pub(super) fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.region.u64_at(self.page, off)
    }

    /// `stub_status`, `stub_step` and `stub_error` of the child's header.
    pub(super) fn stub_report(&self) -> [u32; 3] {
        use std::mem::offset_of;
        [
            offset_of!(SandboxHeader, stub_status),
            offset_of!(SandboxHeader, stub_step),
            offset_of!(SandboxHeader, stub_error),
        ]
        .map(|off| self.region.u32_at(self.page, off).load(SeqCst))
    }
}

impl Drop for ChildCtl {
    fn drop(&mut self) {
        self.region.give_back(self.page);
    }
}

/// A running template.
#[derive(Debug)]
pub(super) struct Template {
    child: Child,
    region: Arc<Region>,
    /// Its filter's listener was looked for (before its first fork).
    listener_looked: bool,
}

impl Template {
    /// Spawns a template for spares whose headers `init` describes (with `kind` replaced),
    /// jailed by `jail`.
    pub(super) fn spawn(
        stub: &Stub,
        mem_fd: std::os::fd::RawFd,
        init: &HeaderInit,
        jail: &crate::jail::ChildJail,
    ) -> Result<Self, String> {
        let region = Region::new(&HeaderInit {
            kind: kind::USER_TEMPLATE,
            ..*init
        })
        .map_err(|e| e.to_string())?;
        let child = sandbox::spawn(stub, mem_fd, region.shm.raw_fd(), None, jail)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            region: Arc::new(region),
            listener_looked: false,
        })
    }

    /// The template filter's notification listener, as a descriptor of ours, once: before
    /// the first fork (at which the template closes its own copy), after waiting for the
    /// template to start. `None` if it has none (a host kernel without listeners) or did not
    /// start in time.
    pub(super) fn take_listener(&mut self) -> Option<OwnedFd> {
        if std::mem::replace(&mut self.listener_looked, true) {
            return None;
        }
        use std::mem::offset_of;
        let status = self
            .region
            .u32_at(0, offset_of!(SandboxHeader, stub_status));
        let deadline = Instant::now() + FORK_TIMEOUT;
        loop {
            match status.load(SeqCst) {
                status::READY => break,
                status::FAILED => return None,
                s => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero()
                        || sandbox::wait_exited(&self.child.pidfd, Some(Duration::ZERO))
                    {
                        return None;
                    }
                    let ts = rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: left.min(Duration::from_millis(10)).as_nanos() as i64,
                    };
                    let _ = futex::wait(status, futex::Flags::empty(), s, Some(&ts));
                }
            }
        }
        let fd = self.region.ctl().listener.load(SeqCst);
        let ours = rustix::process::pidfd_getfd(
            &self.child.pidfd,
            fd,
            rustix::process::PidfdGetfdFlags::empty(),
        )
        .ok()?;
        // What the template named must be a listener.
        crate::window::is_listener(&ours).then_some(ours)
    }

    /// The template's process.
    pub(super) fn pid(&self) -> Pid {
        self.child.pid
    }

    /// The template's pidfd.
    pub(super) fn pidfd(&self) -> &OwnedFd {
        &self.child.pidfd
    }

    /// Whether the template's stub reported a failed start.
    pub(super) fn failed(&self) -> bool {
        use std::mem::offset_of;
        self.region
            .u32_at(0, offset_of!(SandboxHeader, stub_status))
            .load(SeqCst)
            == status::FAILED
    }

    /// Forks a spare whose header `init` describes: its process (pid and a pidfd of the
    /// host's own) and its control header.
    pub(super) fn fork(
        &self,
        init: &HeaderInit,
        windows: u32,
    ) -> Result<(Child, ChildCtl), String> {
        let page = self
            .region
            .take_page()
            .ok_or("no free control page in the template")?;
        let ctl = ChildCtl {
            region: Arc::clone(&self.region),
            page,
        };
        self.region.write_header(page, init);
        let t = self.region.ctl();
        t.windows.store(windows, SeqCst);
        t.page.store(page, SeqCst);
        let request = t.request.load(SeqCst).wrapping_add(1);
        t.request.store(request, SeqCst);
        let _ = futex::wake(&t.request, futex::Flags::empty(), 1);
        let deadline = Instant::now() + FORK_TIMEOUT;
        loop {
            let done = t.done.load(SeqCst);
            if done == request {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the template did not answer a fork in time".into());
            }
            if sandbox::wait_exited(&self.child.pidfd, Some(Duration::ZERO)) {
                return Err("the template has exited".into());
            }
            let ts = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: left.min(Duration::from_millis(10)).as_nanos() as i64,
            };
            let _ = futex::wait(&t.done, futex::Flags::empty(), done, Some(&ts));
        }
        let fd = t.pidfd.load(SeqCst);
        if fd < 0 {
            return Err(format!(
                "the template's fork failed: {}",
                std::io::Error::from_raw_os_error(fd.saturating_neg())
            ));
        }
        // `fd` is a number in the template's fd table, not one of ours.
        let pidfd = rustix::process::pidfd_getfd(
            &self.child.pidfd,
            fd,
            rustix::process::PidfdGetfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_getfd from the template: {e}"))?;
        // What the template named must be a pidfd of a child of it.
        let pid = pidfd_pid(&pidfd).ok_or("the template named an fd that is not a pidfd")?;
        if parent_of(pid) != Some(self.child.pid) {
            sandbox::kill(&pidfd);
            return Err("the template named a process that is not its child".into());
        }
        Ok((Child { pid, pidfd }, ctl))
    }
}

/// The pid (in the host's namespace) of the process `pidfd` refers to, from its `fdinfo`;
/// `None` if it is not a pidfd or the process is gone.
fn pidfd_pid(pidfd: &OwnedFd) -> Option<Pid> {
    // (-1 once the process is gone.)
    pid_field(
        &format!("/proc/self/fdinfo/{}", pidfd.as_fd().as_raw_fd()),
        "Pid:",
    )
}

/// The parent of process `pid` (`PPid` of `/proc/PID/status`, in the host's namespace).
fn parent_of(pid: Pid) -> Option<Pid> {
    pid_field(
        &format!("/proc/{}/status", pid.as_raw_nonzero().get()),
        "PPid:",
    )
}

/// The pid on the line of `path` that starts with `key`, if it is one (positive).
fn pid_field(path: &str, key: &str) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .parse()
        .ok()?;
    (v > 0).then(|| Pid::from_raw(v)).flatten()
}

/// `struct pidfd_info` of Linux 6.15 (`PIDFD_GET_INFO`).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ids: [u32; 8],
    exit_code: i32,
    coredump_mask: u32,
    _spare: u32,
}

/// `PIDFD_INFO_EXIT`.
const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// How a template's child that has exited ended, from its pidfd: the exit status shows
/// once the template has reaped it (on its `SIGCHLD`, or within its 50 ms backstop), so this
/// waits for it briefly; `Signaled(0)` (unknown) if it does not show.
pub(super) fn child_exit(pidfd: &OwnedFd) -> SandboxExit {
    let deadline = Instant::now() + EXIT_INFO_WAIT;
    loop {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..PidfdInfo::default()
        };
        // SAFETY: PIDFD_GET_INFO writes at most `size_of::<PidfdInfo>()` bytes (the size the
        // request encodes) into `info`.
        let r = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info) };
        if r == 0 && info.mask & PIDFD_INFO_EXIT != 0 {
            let w = info.exit_code;
            return if libc::WIFEXITED(w) {
                SandboxExit::Exited(libc::WEXITSTATUS(w))
            } else {
                SandboxExit::Signaled(libc::WTERMSIG(w))
            };
        }
        if r != 0 || Instant::now() >= deadline {
            return SandboxExit::Signaled(0);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Whether this kernel reports a reaped process's exit status through its pidfd
/// (`PIDFD_INFO_EXIT`, Linux 6.15), which the template needs.
pub(super) fn supported() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| sandbox::linux_at_least(6, 15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_of_a_reaped_child_is_read_from_its_pidfd() {
        if !supported() {
            eprintln!("PIDFD_INFO_EXIT needs Linux 6.15: not checked here");
            return;
        }
        // Our own child, reaped by us: the pidfd keeps its status.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh");
        let pid = Pid::from_raw(child.id() as i32).expect("pid");
        let pidfd =
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd");
        child.wait().expect("wait");
        assert_eq!(child_exit(&pidfd), SandboxExit::Exited(7));
        assert_eq!(pidfd_pid(&pidfd), None, "gone after the reap");
    }

    #[test]
    fn a_pidfd_names_its_process_and_its_parent() {
        let me = Pid::from_raw(std::process::id() as i32).expect("pid");
        let pidfd =
            rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).expect("pidfd");
        assert_eq!(pidfd_pid(&pidfd), Some(me));
        assert_eq!(parent_of(me), rustix::process::getppid());
    }

    #[test]
    fn pages_are_handed_out_once_and_again_after_their_child() {
        let r = Region::new(&HeaderInit::default()).expect("region");
        let (a, b) = (r.take_page(), r.take_page());
        assert_eq!((a, b), (Some(1), Some(2)));
        r.give_back(1);
        assert_eq!(r.take_page(), Some(1));
        assert_eq!(r.take_page(), Some(3));
    }
}
