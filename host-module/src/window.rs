//! Host file windows (docs/ABI.md §windows, `pvmux_hypercalls::window`): read-only regular
//! files of a tenant's `--rootfs` share that its user sandboxes map straight from the host's
//! page cache. The guest kernel opens a window on a file it knows (`WindowOpen`: the share's
//! checked read descriptor, of the size and modification time the guest expects) and names
//! the window's pages in user mapping operations; a user sandbox's stub asks for a slot's
//! descriptor the first time it maps one of its pages, with a system call its seccomp filter
//! hands to the host (`SECCOMP_RET_USER_NOTIF`), and the host's [`Server`] installs the
//! descriptor at the slot's fixed number (`SECCOMP_IOCTL_NOTIF_ADDFD`) before it answers.
//!
//! What a sandbox gets is only ever a descriptor the host opened read-only on a file of the
//! tenant's own share: nothing it could not read through `HostfsRead` already. Its filter lets
//! it map such a descriptor readable and executable at most (a shared mapping of a read-only
//! descriptor can never be made writable), so programs share the host's pages and no tenant
//! can change them for another.
//!
//! The listeners: a template's filter has one for all its children (taken from the template
//! before its first fork); a sandbox spawned without a template installs its base filter
//! with a listener of its own, taken from it when it is assigned a space (the number its
//! header publishes, checked to be a listener once ours).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmux_hypercalls::hostfs::READ_MAX;
use pvmux_hypercalls::window::{
    MAX_WINDOWS, SYNC_ALL, WINDOW_FD_BASE, WINDOW_SPAN, WINDOW_SYNC_NR,
};
use pvmux_hypercalls::HcError;
use rustix::event::epoll;

use crate::hostfs::HostFs;
use crate::GuestMemory;

/// One open window: the share's read descriptor of a file and the version it was opened at.
#[derive(Debug)]
struct WindowFile {
    fd: Arc<OwnedFd>,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: u64,
}

/// A tenant's windows and the server that hands their descriptors to its sandboxes.
#[derive(Debug)]
pub(crate) struct Windows {
    server: Server,
}

/// Locks `m`, whatever a panicking holder left (the tables stay consistent at every step).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Windows {
    /// A tenant's windows, or `None` where this host cannot hand descriptors to sandboxes
    /// (Linux before 5.9: no `SECCOMP_IOCTL_NOTIF_ADDFD`) or the server cannot start.
    pub(crate) fn new(tenant: &str) -> Option<Arc<Self>> {
        if !supported() {
            return None;
        }
        let server = match Server::start(tenant) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant, "host file windows off: {e}");
                return None;
            }
        };
        Some(Arc::new(Self { server }))
    }

    /// `WindowOpen(path, size, mtime_ns)`: the slot of the share's regular file at `path`,
    /// opened now unless a slot holds that file at that version already.
    pub(crate) fn open(
        &self,
        share: &HostFs,
        path: &[u8],
        size: u64,
        mtime_ns: u64,
    ) -> Result<u32, HcError> {
        if !self.server.running() {
            return Err(HcError::UnknownCall);
        }
        if size == 0 || size >= WINDOW_SPAN {
            return Err(HcError::InvalidArgument);
        }
        let fd = share.file(path)?;
        let st = rustix::fs::fstat(&*fd).map_err(|_| HcError::NoResources)?;
        let mtime = (st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128).max(0);
        if st.st_size as u64 != size || mtime as u64 != mtime_ns {
            return Err(HcError::InvalidArgument);
        }
        let (dev, ino) = (st.st_dev, st.st_ino);
        let mut files = locked(&self.server.state.files);
        if let Some(i) = files
            .iter()
            .position(|w| (w.dev, w.ino, w.size, w.mtime_ns) == (dev, ino, size, mtime_ns))
        {
            return Ok(i as u32);
        }
        if files.len() >= MAX_WINDOWS as usize {
            return Err(HcError::NoResources);
        }
        files.push(WindowFile {
            fd,
            dev,
            ino,
            size,
            mtime_ns,
        });
        Ok(files.len() as u32 - 1)
    }

    /// `WindowRead(slot, offset, buf_gpa, len)`: up to `min(len, READ_MAX)` bytes of the
    /// window's file at `offset` into guest memory (range checked first).
    pub(crate) fn read(
        &self,
        mem: &GuestMemory,
        slot: u64,
        offset: u64,
        gpa: u64,
        len: u64,
    ) -> Result<u64, HcError> {
        let fd = {
            let files = locked(&self.server.state.files);
            let w = usize::try_from(slot)
                .ok()
                .and_then(|s| files.get(s))
                .ok_or(HcError::InvalidArgument)?;
            Arc::clone(&w.fd)
        };
        let len = len.min(READ_MAX);
        mem.check_range(gpa, len).map_err(|_| HcError::BadAddress)?;
        offset.checked_add(len).ok_or(HcError::InvalidArgument)?;
        let n = mem
            .read_file(fd.as_fd(), offset, len, &[Some(gpa)])
            .map_err(|_| HcError::NoResources)?;
        Ok(n as u64)
    }

    /// Every window's file and size, in slot order (a snapshot saves their bytes).
    pub(crate) fn files(&self) -> Vec<(Arc<OwnedFd>, u64)> {
        locked(&self.server.state.files)
            .iter()
            .map(|w| (Arc::clone(&w.fd), w.size))
            .collect()
    }

    /// A restored tenant's windows: slots `0..` hold `files` (a snapshot's window bytes, in
    /// read-only sealed memory files), so that its user pages name what they named.
    pub(crate) fn restore(&self, files: Vec<OwnedFd>) -> Result<(), HcError> {
        let mut table = locked(&self.server.state.files);
        for fd in files {
            let st = rustix::fs::fstat(&fd).map_err(|_| HcError::NoResources)?;
            table.push(WindowFile {
                fd: Arc::new(fd),
                dev: st.st_dev,
                ino: st.st_ino,
                size: st.st_size as u64,
                // Never a share file's version: the guest's later opens get slots of their own.
                mtime_ns: u64::MAX,
            });
        }
        Ok(())
    }

    /// How many windows are open (slots `0..n`).
    pub(crate) fn count(&self) -> u32 {
        locked(&self.server.state.files).len() as u32
    }

    /// Starts answering the window requests of the sandboxes behind `listener` (a template's
    /// filter's, or a spawned sandbox's own).
    pub(crate) fn serve(&self, listener: OwnedFd) {
        self.server.add(listener);
    }

    /// Takes the listener of the user sandbox `pidfd` refers to (a sandbox spawned without a
    /// template), whose number plus one `published` reads from its header (0: not yet), and
    /// serves it; a sandbox still starting is retried by the server until its listener
    /// exists or it is gone.
    pub(crate) fn serve_sandbox(&self, pidfd: Arc<OwnedFd>, published: Published) {
        match take_listener(&pidfd, &published) {
            Some(l) => self.server.add(l),
            None => self.server.add_pending(pidfd, published),
        }
    }
}

/// `WindowOpen(path_gpa, path_len, size, mtime_ns)`: `UnknownCall` without a share or
/// windows; the path's range is checked as `HostfsRead`'s.
pub(crate) fn hc_open(
    mem: &GuestMemory,
    share: Option<&HostFs>,
    windows: Option<&Windows>,
    a: [u64; 6],
) -> Result<u64, HcError> {
    let (Some(share), Some(windows)) = (share, windows) else {
        return Err(HcError::UnknownCall);
    };
    let path = crate::hostfs::guest_path(mem, a[0], a[1])?;
    windows.open(share, &path, a[2], a[3]).map(u64::from)
}

/// Installs `file` as window `slot`'s descriptor in the process of notification `id`:
/// 0, or the errno.
fn install(listener: BorrowedFd<'_>, id: u64, slot: u32, file: &OwnedFd) -> i32 {
    let add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: file.as_raw_fd() as u32,
        newfd: (WINDOW_FD_BASE as u32) + slot,
        newfd_flags: libc::O_CLOEXEC as u32,
    };
    // SAFETY: SECCOMP_IOCTL_NOTIF_ADDFD reads one `seccomp_notif_addfd`.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD as _,
            &add,
        )
    };
    if r < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        0
    }
}

/// Whether this host kernel can install a descriptor for a notification
/// (`SECCOMP_IOCTL_NOTIF_ADDFD`, Linux 5.9).
fn supported() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| crate::sandbox::linux_at_least(5, 9))
}

/// Reads a sandbox's published listener number plus one (its header's `window_listener`;
/// 0: not yet). Untrusted: what it names is checked.
pub(crate) type Published = Box<dyn Fn() -> u32 + Send>;

/// The seccomp notification listener the process `pidfd` refers to published, as a
/// descriptor of ours (`pidfd_getfd`), checked to be one; `None` if it published none yet
/// (or a number that is not one).
fn take_listener(pidfd: &OwnedFd, published: &Published) -> Option<OwnedFd> {
    let fd = RawFd::try_from(published().checked_sub(1)?).ok()?;
    let ours =
        rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()?;
    is_listener(&ours).then_some(ours)
}

/// Whether `fd` is a seccomp notification listener.
pub(crate) fn is_listener(fd: &OwnedFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|t| t.as_os_str() == "anon_inode:seccomp notify")
}

/// The thread answering a tenant's window requests: an epoll over its listeners.
#[derive(Debug)]
struct Server {
    state: Arc<ServerState>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct ServerState {
    epoll: OwnedFd,
    /// The listeners, by epoll token.
    listeners: Mutex<HashMap<u64, OwnedFd>>,
    /// Sandboxes whose listener does not exist yet.
    pending: Mutex<Vec<(Arc<OwnedFd>, Published)>>,
    /// The open windows, by slot (the tenant's table: [`Windows`] reaches it here).
    files: Mutex<Vec<WindowFile>>,
    next_token: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
    /// An eventfd that wakes the thread (a stop, a pending sandbox).
    wake: OwnedFd,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("listeners", &locked(&self.listeners).len())
            .field("pending", &locked(&self.pending).len())
            .field("windows", &locked(&self.files).len())
            .finish_non_exhaustive()
    }
}

/// epoll token of [`ServerState::wake`].
const WAKE_TOKEN: u64 = 0;
/// How often a pending sandbox's listener is looked for.
const PENDING_RETRY: Duration = Duration::from_millis(1);

impl Server {
    fn start(tenant: &str) -> std::io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        let state = Arc::new(ServerState {
            epoll,
            listeners: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
            next_token: std::sync::atomic::AtomicU64::new(WAKE_TOKEN + 1),
            stop: AtomicBool::new(false),
            wake,
        });
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("pvmux-win-{tenant}"))
            .spawn(move || st.run())?;
        Ok(Self {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn running(&self) -> bool {
        !self.state.stop.load(SeqCst)
    }

    fn add(&self, listener: OwnedFd) {
        self.state.add(listener);
    }

    fn add_pending(&self, pidfd: Arc<OwnedFd>, published: Published) {
        locked(&self.state.pending).push((pidfd, published));
        self.state.poke();
    }

    fn stop(&self) {
        self.state.stop.store(true, SeqCst);
        self.state.poke();
        if let Some(t) = locked(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ServerState {
    fn poke(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn add(&self, listener: OwnedFd) {
        let token = self.next_token.fetch_add(1, SeqCst);
        if epoll::add(
            &self.epoll,
            &listener,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .is_ok()
        {
            locked(&self.listeners).insert(token, listener);
        }
    }

    fn run(&self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(16);
        let retry = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: PENDING_RETRY.as_nanos() as i64,
        };
        while !self.stop.load(SeqCst) {
            let timeout = if locked(&self.pending).is_empty() {
                None
            } else {
                Some(&retry)
            };
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout,
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::warn!("host file window server stops: {e}");
                    self.stop.store(true, SeqCst);
                    return;
                }
            }
            for ev in &events {
                let (token, flags) = (ev.data.u64(), ev.flags);
                if token == WAKE_TOKEN {
                    let mut b = [0u8; 8];
                    let _ = rustix::io::read(&self.wake, &mut b);
                    continue;
                }
                let hup = flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR);
                if flags.contains(epoll::EventFlags::IN) {
                    let l = locked(&self.listeners);
                    if let Some(fd) = l.get(&token) {
                        self.answer(fd.as_fd());
                    }
                } else if hup {
                    // No process uses the filter any more.
                    if let Some(fd) = locked(&self.listeners).remove(&token) {
                        let _ = epoll::delete(&self.epoll, &fd);
                    }
                }
            }
            self.retry_pending();
        }
    }

    /// Looks again for the listeners of the sandboxes still starting; drops the gone ones.
    fn retry_pending(&self) {
        let pending = std::mem::take(&mut *locked(&self.pending));
        let mut still = Vec::new();
        for (pidfd, published) in pending {
            match take_listener(&pidfd, &published) {
                Some(l) => self.add(l),
                None if crate::sandbox::wait_exited(&pidfd, Some(Duration::ZERO)) => {}
                None => still.push((pidfd, published)),
            }
        }
        locked(&self.pending).extend(still);
    }

    /// Receives one notification on `listener` and answers it: for a window request of a
    /// slot that is open, the slot's descriptor installed at its number first.
    fn answer(&self, listener: BorrowedFd<'_>) {
        // SAFETY: an all-zero `seccomp_notif` is valid (and the kernel requires it zeroed).
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: SECCOMP_IOCTL_NOTIF_RECV writes one `seccomp_notif` into `n`.
        let r = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV as _,
                &mut n,
            )
        };
        if r != 0 {
            return; // interrupted, or the caller went away meanwhile
        }
        let fds: Vec<Arc<OwnedFd>> = locked(&self.files)
            .iter()
            .map(|w| Arc::clone(&w.fd))
            .collect();
        let (slot, all) = (n.data.args[0], n.data.args[1] & SYNC_ALL != 0);
        let error = if n.data.nr as u32 != WINDOW_SYNC_NR {
            libc::ENOSYS
        } else if usize::try_from(slot).map_or(true, |s| s >= fds.len()) {
            libc::EBADF
        } else {
            let wanted: Box<dyn Iterator<Item = usize>> = if all {
                Box::new(0..fds.len())
            } else {
                Box::new(std::iter::once(slot as usize))
            };
            wanted
                .map(|s| install(listener, n.id, s as u32, &fds[s]))
                .find(|&e| e != 0)
                .unwrap_or(0)
        };
        let resp = libc::seccomp_notif_resp {
            id: n.id,
            val: if error == 0 { fds.len() as i64 } else { 0 },
            error: -error,
            flags: 0,
        };
        // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads one `seccomp_notif_resp`.
        let _ = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND as _,
                &resp,
            )
        };
    }
}
