//! The watch thread of a tenant's host sockets: waits (`poll`) for the sockets the guest
//! found not ready (armed by a `Busy` result or `NetPoll`) and for `--publish` listeners,
//! and raises `pending::NET` once something happened. An armed socket is watched once: it is
//! disarmed when it fires (the guest re-arms it by trying again). `/udp` publish sockets are
//! read here (each datagram goes to its client's flow), and with any of them the thread also
//! wakes every second to end idle flows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pvmux_hypercalls::net::NetAddr;

use super::{sock, Publish, PublishProto};

/// Called with each connection a publish listener accepted; false: refused (closed).
pub(super) type Accepted = Box<dyn Fn(OwnedFd, &Publish, NetAddr) -> bool + Send + Sync>;

/// Called with each datagram a `/udp` publish socket received: the rule's index, its socket,
/// the data and the client; false: dropped.
pub(super) type Datagram =
    Box<dyn Fn(usize, &Arc<OwnedFd>, &[u8], SocketAddr) -> bool + Send + Sync>;

/// What the thread calls for the publish sockets.
pub(super) struct Hooks {
    /// A TCP connection accepted.
    pub(super) accepted: Accepted,
    /// A UDP datagram received.
    pub(super) datagram: Datagram,
    /// About every second with `/udp` rules: ends idle flows (true: some ended).
    pub(super) tick: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Most datagrams read from one publish socket per wake-up (others wait their turn).
const DATAGRAMS_PER_WAKE: usize = 64;

struct State {
    armed: HashMap<u64, (Arc<OwnedFd>, i16)>,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    /// An eventfd that interrupts the thread's `poll`.
    wake: OwnedFd,
}

impl Inner {
    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The watch thread (stopped and joined on drop).
pub struct Watch {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Starts the thread with the publish `listeners`.
    pub(super) fn start(
        listeners: Vec<(Arc<OwnedFd>, Publish)>,
        raise: Arc<dyn Fn() + Send + Sync>,
        hooks: Hooks,
    ) -> Self {
        // SAFETY: plain system call; the descriptor is owned at once (or -1, checked).
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(efd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                armed: HashMap::new(),
                stop: false,
            }),
            wake,
        });
        let i = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("pvmux-net".into())
            .spawn(move || run(&i, &listeners, &*raise, &hooks))
            .ok();
        Self { inner, thread }
    }

    /// Watches handle `h` for `events`.
    pub(super) fn arm(&self, h: u64, fd: Arc<OwnedFd>, events: i16) {
        let mut s = self.inner.state();
        let e = s.armed.entry(h).or_insert((fd, 0));
        e.1 |= events;
        drop(s);
        self.inner.kick();
    }

    /// Stops watching handle `h` (closed).
    pub(super) fn disarm(&self, h: u64) {
        self.inner.state().armed.remove(&h);
        self.inner.kick();
    }

    /// The guest waits for a published connection: the listeners raise `NET` on each one.
    pub(super) fn want_published(&self) {}
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.inner.state().stop = true;
        self.inner.kick();
        if let Some(t) = self.thread.take() {
            // The watch thread itself may drop the last reference (through `raise` or
            // `accepted` upgrading a weak one): it ends on its own, never join it there.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn run(
    inner: &Inner,
    listeners: &[(Arc<OwnedFd>, Publish)],
    raise: &(dyn Fn() + Send + Sync),
    hooks: &Hooks,
) {
    let udp = listeners.iter().any(|(_, p)| p.proto == PublishProto::Udp);
    let timeout = if udp { 1000 } else { -1 };
    let mut buf = if udp { vec![0u8; 65536] } else { Vec::new() };
    loop {
        let (handles, mut fds) = {
            let s = inner.state();
            if s.stop {
                return;
            }
            let handles: Vec<(u64, Arc<OwnedFd>)> = s
                .armed
                .iter()
                .map(|(h, (fd, _))| (*h, Arc::clone(fd)))
                .collect();
            let mut fds = vec![libc::pollfd {
                fd: inner.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            fds.extend(listeners.iter().map(|(l, _)| libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            fds.extend(s.armed.values().map(|(fd, ev)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: *ev,
                revents: 0,
            }));
            (handles, fds)
        };
        // SAFETY: `fds` is a valid array; the armed descriptors stay open (`handles` holds them).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            continue;
        }
        let mut fire = false;
        if fds[0].revents != 0 {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64.
            let _ = unsafe { libc::read(inner.wake.as_raw_fd(), (&raw mut v).cast(), 8) };
        }
        for (i, (l, p)) in listeners.iter().enumerate() {
            if fds[1 + i].revents == 0 {
                continue;
            }
            match p.proto {
                PublishProto::Tcp => {
                    while let Ok((fd, peer)) = sock::accept(l) {
                        fire |= (hooks.accepted)(fd, p, sock::from_std(&peer));
                    }
                }
                PublishProto::Udp => {
                    for _ in 0..DATAGRAMS_PER_WAKE {
                        match sock::recv(l, &mut buf, false) {
                            Ok((n, Some(from))) => {
                                fire |= (hooks.datagram)(i, l, &buf[..n], from);
                            }
                            Ok((_, None)) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {}
                        }
                    }
                }
            }
        }
        if udp {
            fire |= (hooks.tick)();
        }
        let base = 1 + listeners.len();
        let mut s = inner.state();
        for (i, (h, _)) in handles.iter().enumerate() {
            if fds[base + i].revents != 0 {
                s.armed.remove(h);
                fire = true;
            }
        }
        drop(s);
        if fire {
            raise();
        }
    }
}
