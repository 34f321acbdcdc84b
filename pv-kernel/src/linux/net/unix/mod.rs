//! `AF_UNIX` sockets (Linux `net/unix/af_unix.c`): `SOCK_STREAM`, `SOCK_DGRAM` and
//! `SOCK_SEQPACKET`; `socketpair`; names in the filesystem (a socket inode in the ramfs,
//! found again by inode number) and abstract names (a leading NUL), autobind; passing
//! descriptors (`SCM_RIGHTS`) and credentials (`SCM_CREDENTIALS`, `SO_PASSCRED`,
//! `SO_PEERCRED`).
//!
//! Each socket is a [`Sock`] (shared: a connected peer, a listener's queue of connections
//! not yet accepted and the name table refer to it) behind a [`UnixSocket`], the
//! [`Socket`] object its open file holds. When the last descriptor closes, the open file
//! drops the [`UnixSocket`], whose `Drop` releases the [`Sock`] as Linux's
//! `unix_release_sock`: its name is freed, its queue dropped (passed descriptors in it
//! close), a connected stream or seqpacket peer sees end of file (and `ECONNRESET` first if
//! data was left unread), connections waiting in a listener's queue are reset.
//!
//! Messages are queued on the receiver ([`queue`]) and charged to the sender's send buffer
//! until read. Waiting: a receiver (and a sender waiting for room in a datagram receiver's
//! queue, a connecter for room in a listener's backlog, an accepter) waits on the
//! receiving socket's wait queue; a sender waiting for its send buffer to drain waits on
//! its own account's. Each is woken by whoever changes what it waits for, and every change
//! also calls [`poll::notify`]. No lock is held while waiting, and no two sockets' locks
//! are ever held together; messages (and the open files in them) are dropped after
//! unlocking.
//!
//! Not done: the garbage collection of sockets passed over themselves (such a cycle is
//! kept until the guest exits; Linux collects it), `MSG_OOB`, `SO_PEEK_OFF`.

#![forbid(unsafe_code)]

pub(crate) mod carry;
mod name;
mod queue;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use self::name::UnixName;
use self::queue::{Cred, Freed, Msg, Queue, Read, Wmem};
use super::msg::SOL_SOCKET;
use super::msgflag::{MSG_DONTWAIT, MSG_OOB, MSG_PEEK};
use super::{Control, Received, SockType, Socket, SocketPair};
use crate::fs::ramfs::{FileType, Ino, ROOT_INO};
use crate::fs::{self, Errno};
use crate::irq::IrqLock;
use crate::linux::files::file::OpenFile;
use crate::linux::files::poll::{self, ev};
use crate::linux::signal;
use crate::linux::task;
use crate::sched::wait::WaitQueue;

/// `POLLRDHUP`.
const POLLRDHUP: u16 = 0x2000;
/// `sk_shutdown` bits.
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
const SHUTDOWN_MASK: u8 = 3;
/// `net.core.wmem_default` / `rmem_default`: a new socket's buffer sizes.
const DEFAULT_BUF: usize = 212_992;
/// `net.core.wmem_max` / `rmem_max`: the most `SO_SNDBUF`/`SO_RCVBUF` may ask for.
const MAX_BUF: usize = 212_992;
/// The most `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` may ask for (Linux: `INT_MAX / 2`; here a
/// bound on what one socket may keep in the kernel heap).
const MAX_FORCED_BUF: usize = 8 << 20;
/// Linux's `SOCK_MIN_SNDBUF` and `SOCK_MIN_RCVBUF` (x86-64).
const MIN_SNDBUF: usize = 4608;
const MIN_RCVBUF: usize = 2304;
/// `net.unix.max_dgram_qlen`: datagrams a receiver not connected back to the sender queues
/// (one more fits, as Linux's `unix_recvq_full`).
const MAX_DGRAM_QLEN: usize = 10;

/// `SOL_SOCKET` option names.
mod so {
    pub(super) const SO_DEBUG: i32 = 1;
    pub(super) const SO_REUSEADDR: i32 = 2;
    pub(super) const SO_ERROR: i32 = 4;
    pub(super) const SO_DONTROUTE: i32 = 5;
    pub(super) const SO_BROADCAST: i32 = 6;
    pub(super) const SO_SNDBUF: i32 = 7;
    pub(super) const SO_RCVBUF: i32 = 8;
    pub(super) const SO_KEEPALIVE: i32 = 9;
    pub(super) const SO_OOBINLINE: i32 = 10;
    pub(super) const SO_PRIORITY: i32 = 12;
    pub(super) const SO_LINGER: i32 = 13;
    pub(super) const SO_REUSEPORT: i32 = 15;
    pub(super) const SO_PASSCRED: i32 = 16;
    pub(super) const SO_PEERCRED: i32 = 17;
    pub(super) const SO_RCVLOWAT: i32 = 18;
    pub(super) const SO_SNDLOWAT: i32 = 19;
    pub(super) const SO_RCVTIMEO_OLD: i32 = 20;
    pub(super) const SO_SNDTIMEO_OLD: i32 = 21;
    pub(super) const SO_ACCEPTCONN: i32 = 30;
    pub(super) const SO_SNDBUFFORCE: i32 = 32;
    pub(super) const SO_RCVBUFFORCE: i32 = 33;
    pub(super) const SO_PASSSEC: i32 = 34;
    pub(super) const SO_RCVTIMEO_NEW: i32 = 66;
    pub(super) const SO_SNDTIMEO_NEW: i32 = 67;
}

/// What a name table entry is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// An abstract name (without the leading NUL).
    Abstract(Vec<u8>),
    /// The socket inode a path names.
    Path(Ino),
}

/// The bound sockets, by name.
static NAMES: IrqLock<BTreeMap<Key, Weak<Sock>>> = IrqLock::new(BTreeMap::new());
/// The next autobind number.
static AUTOBIND: AtomicU32 = AtomicU32::new(0);

/// A socket's connection state.
enum State {
    /// Neither listening nor connected (datagram sockets stay here; `peer` says whom
    /// they send to).
    Unconnected,
    /// `listen`ed: connections not yet accepted.
    Listening {
        backlog: usize,
        pending: VecDeque<Arc<Sock>>,
    },
    /// A connected stream or seqpacket socket (also after the peer closed).
    Connected,
}

/// The mutable part of a socket.
struct Inner {
    rq: Queue<Arc<OpenFile>>,
    /// The raw bound address.
    addr: Option<Vec<u8>>,
    /// The name table key, while bound.
    key: Option<Key>,
    state: State,
    /// Connected peer (datagrams: the default destination).
    peer: Option<Arc<Sock>>,
    /// `RCV_SHUTDOWN` | `SEND_SHUTDOWN`.
    shutdown: u8,
    /// Pending error (`SO_ERROR`), taken by the next receive.
    err: Option<Errno>,
    sndbuf: usize,
    rcvbuf: usize,
    passcred: bool,
    /// `SO_PEERCRED`: the peer's credentials when connected (the own ones when listening).
    peercred: Option<Cred>,
    /// Options accepted and reported back but without effect here.
    opts: BTreeMap<i32, Vec<u8>>,
    /// Released (its last descriptor closed).
    dead: bool,
    /// Bound to a path: the absolute path of its socket file as bound (the hand-over
    /// record's; `None` if it could not be told).
    path: Option<Vec<u8>>,
}

/// One `AF_UNIX` socket.
pub(crate) struct Sock {
    ty: SockType,
    /// Receivers, accepters, and senders waiting for room in this socket's queue.
    wq: WaitQueue,
    /// This socket's bytes in flight to others.
    wmem: Arc<Wmem>,
    inner: IrqLock<Inner>,
}

/// The current process's credentials.
fn own_cred() -> Cred {
    let (pid, uid, gid) = super::msg::own_credentials();
    Cred { pid, uid, gid }
}

/// The working directory paths start from.
fn cwd() -> Ino {
    task::try_current_task().map_or(ROOT_INO, |t| t.process.fs.lock().cwd)
}

/// True if a call with `MSG_*` `flags` on `f` must not block.
fn nonblocking(f: &OpenFile, flags: u32) -> bool {
    f.nonblock() || flags & MSG_DONTWAIT != 0
}

/// What to do when a call must wait: `EAGAIN` if non-blocking, `EINTR` with a signal
/// pending (restarted with `SA_RESTART`), else `Ok` (go and wait).
fn may_wait(nonblock: bool) -> Result<(), Errno> {
    if nonblock {
        Err(Errno::EAGAIN)
    } else if signal::pending() {
        Err(Errno::EINTR)
    } else {
        Ok(())
    }
}

/// The absolute form of `path` looked up from directory `base` (`None` if the directory's
/// path cannot be told).
fn absolute(base: Ino, path: &[u8]) -> Option<Vec<u8>> {
    if path.starts_with(b"/") {
        return Some(path.to_vec());
    }
    let mut p = crate::linux::files::path::dir_path(base).ok()?;
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(path);
    Some(p)
}

/// Messages of released sockets waiting to be dropped, and whether someone is dropping
/// them.
static GRAVEYARD: IrqLock<Vec<Msg<Arc<OpenFile>>>> = IrqLock::new(Vec::new());
static DIGGING: AtomicBool = AtomicBool::new(false);

/// Drops the messages of a released socket. Dropping a message closes the descriptors in
/// flight in it, which may release more sockets with more messages: a chain of sockets
/// each queued in the previous one would recurse as deep as it is long on the small kernel
/// stack. So messages go to a graveyard that whoever comes first empties in a loop, one
/// message at a time; releases nested in that (or on other vCPUs meanwhile) only add to it.
fn bury(msgs: Vec<Msg<Arc<OpenFile>>>) {
    if msgs.is_empty() {
        return;
    }
    GRAVEYARD.lock().extend(msgs);
    loop {
        if DIGGING.swap(true, Ordering::AcqRel) {
            return;
        }
        loop {
            let m = GRAVEYARD.lock().pop();
            match m {
                Some(m) => drop(m),
                None => break,
            }
        }
        DIGGING.store(false, Ordering::Release);
        // Someone may have added messages after our last look and left them to us.
        if GRAVEYARD.lock().is_empty() {
            return;
        }
    }
}

/// Waits on `wq` until `cond()` holds or a signal is pending, or until guest time
/// `deadline` (`SO_RCVTIMEO`/`SO_SNDTIMEO`): `EAGAIN` then, as Linux.
fn wait_on(wq: &WaitQueue, deadline: Option<u64>, cond: impl Fn() -> bool) -> Result<(), Errno> {
    let c = || cond() || signal::pending();
    match deadline {
        None => {
            wq.wait_until(c);
            Ok(())
        }
        Some(d) if wq.wait_until_deadline(c, d) => Ok(()),
        Some(_) => Err(Errno::EAGAIN),
    }
}

/// A `struct timeval` option value as a timeout in ns: `None` for zero (no timeout), 0 for
/// a negative one (`EDOM` for microseconds out of range, as Linux's `sock_set_timeout`).
fn timeval_timeout(v: &[u8]) -> Result<Option<u64>, Errno> {
    let w = |o: usize| {
        v.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
            .ok_or(Errno::EINVAL)
    };
    let (sec, usec) = (w(0)?, w(8)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    Ok(match (sec, usec) {
        (0, 0) => None,
        (s, _) if s < 0 => Some(0),
        (s, u) => Some((s as u64).saturating_mul(1_000_000_000) + u as u64 * 1000),
    })
}

/// Wakes the senders whose accounts a read or a drop gave bytes back to.
fn wake_freed(freed: Freed) {
    for w in freed {
        w.wq.wake_all();
    }
}

impl Sock {
    fn new(ty: SockType) -> Arc<Self> {
        Arc::new(Self {
            ty,
            wq: WaitQueue::new(),
            wmem: Wmem::new(),
            inner: IrqLock::new(Inner {
                rq: Queue::new(),
                addr: None,
                key: None,
                state: State::Unconnected,
                peer: None,
                shutdown: 0,
                err: None,
                sndbuf: DEFAULT_BUF,
                rcvbuf: DEFAULT_BUF,
                passcred: false,
                peercred: None,
                opts: BTreeMap::new(),
                dead: false,
                path: None,
            }),
        })
    }

    /// Something about this socket changed: wake its waiters and every poller.
    fn changed(&self) {
        self.wq.wake_all();
        self.wmem.wq.wake_all();
        poll::notify();
    }

    fn is_dead(&self) -> bool {
        self.inner.lock().dead
    }

    /// The guest time a call waiting now gives up at, from option `name`
    /// (`SO_RCVTIMEO` or `SO_SNDTIMEO`); `None`: no timeout.
    fn deadline(&self, name: i32) -> Option<u64> {
        let t = self
            .inner
            .lock()
            .opts
            .get(&name)
            .and_then(|v| timeval_timeout(v).ok().flatten())?;
        Some(crate::time::now_ns().saturating_add(t))
    }

    /// Releases the socket (its last descriptor closed, or an unaccepted connection of a
    /// closing listener: `embryo`).
    fn release(self: &Arc<Self>, embryo: bool) {
        let mut freed = Freed::new();
        let (peer, pending, msgs, key, unread) = {
            let mut i = self.inner.lock();
            i.dead = true;
            i.shutdown = SHUTDOWN_MASK;
            let pending = match core::mem::replace(&mut i.state, State::Unconnected) {
                State::Listening { pending, .. } => pending,
                _ => VecDeque::new(),
            };
            let unread = !i.rq.is_empty();
            let msgs = i.rq.take_all(&mut freed);
            (i.peer.take(), pending, msgs, i.key.take(), unread)
        };
        if let Some(key) = key {
            let mut names = NAMES.lock();
            if names
                .get(&key)
                .is_some_and(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(self)))
            {
                names.remove(&key);
            }
        }
        if let Some(p) = &peer {
            if self.ty != SockType::Dgram {
                let mut pi = p.inner.lock();
                pi.shutdown = SHUTDOWN_MASK;
                if unread || embryo {
                    pi.err = Some(Errno::ECONNRESET);
                }
            }
            p.changed();
        }
        for n in pending {
            n.release(true);
        }
        drop(peer);
        wake_freed(freed);
        self.changed();
        bury(msgs);
    }

    /// The socket bound to the address `raw` (`ECONNREFUSED` if none, `ENOENT` for a path
    /// that does not exist).
    fn lookup(raw: &[u8]) -> Result<Arc<Sock>, Errno> {
        let key = match name::parse(raw)? {
            UnixName::Unnamed => return Err(Errno::EINVAL),
            UnixName::Abstract(n) => Key::Abstract(n.to_vec()),
            UnixName::Path(p) => {
                let base = cwd();
                let st = fs::with(|fs| {
                    let ino = fs.lookup(base, p, true)?;
                    let st = fs.stat_ino(ino)?;
                    // Connecting needs write permission on the socket's name (Linux).
                    if st.file_type() == FileType::Socket {
                        fs.may(ino, crate::fs::perm::access::W)?;
                    }
                    Ok::<_, Errno>(st)
                })?;
                if st.file_type() != FileType::Socket {
                    return Err(Errno::ECONNREFUSED);
                }
                Key::Path(st.ino)
            }
        };
        NAMES
            .lock()
            .get(&key)
            .and_then(Weak::upgrade)
            .filter(|s| !s.is_dead())
            .ok_or(Errno::ECONNREFUSED)
    }

    /// Binds to a fresh abstract name (`bind` with just the family, or a socket that must
    /// have a name to pass credentials).
    fn autobind(self: &Arc<Self>) -> Result<(), Errno> {
        for _ in 0..=0xf_ffff {
            let n = name::autobind_name(AUTOBIND.fetch_add(1, Ordering::Relaxed));
            match self.bind_key(Key::Abstract(n.clone()), name::abstract_addr(&n)) {
                Err(Errno::EADDRINUSE) => continue,
                r => return r,
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Enters this socket in the name table under `key` with address `addr`.
    fn bind_key(self: &Arc<Self>, key: Key, addr: Vec<u8>) -> Result<(), Errno> {
        let mut names = NAMES.lock();
        if names
            .get(&key)
            .and_then(Weak::upgrade)
            .is_some_and(|s| !s.is_dead())
        {
            return Err(Errno::EADDRINUSE);
        }
        let mut i = self.inner.lock();
        if i.addr.is_some() {
            return Err(Errno::EINVAL);
        }
        names.insert(key.clone(), Arc::downgrade(self));
        i.addr = Some(addr);
        i.key = Some(key);
        Ok(())
    }

    /// Autobinds if `SO_PASSCRED` asks for a name and there is none (Linux does this on
    /// `connect` and `sendmsg`).
    fn autobind_for_creds(self: &Arc<Self>) -> Result<(), Errno> {
        let need = {
            let i = self.inner.lock();
            i.passcred && i.addr.is_none()
        };
        if need {
            self.autobind()?;
        }
        Ok(())
    }

    fn bind(self: &Arc<Self>, raw: &[u8]) -> Result<(), Errno> {
        let n = name::parse(raw)?;
        // A path's inode is made first (an existing name is EADDRINUSE even for a bound
        // socket), then a second name is refused, as Linux's `unix_bind_bsd`.
        if self.inner.lock().addr.is_some() && !matches!(n, UnixName::Path(_)) {
            return Err(Errno::EINVAL);
        }
        match n {
            UnixName::Unnamed => self.autobind(),
            UnixName::Abstract(a) => self.bind_key(Key::Abstract(a.to_vec()), raw.to_vec()),
            UnixName::Path(p) => {
                let umask = task::current_process().umask.load(Ordering::Relaxed);
                let base = cwd();
                let ino = fs::with(|fs| fs.mksock(base, p, 0o777 & !umask)).map_err(|e| {
                    if e == Errno::EEXIST {
                        Errno::EADDRINUSE
                    } else {
                        e
                    }
                })?;
                let r = self.bind_key(Key::Path(ino), name::path_addr(p));
                if r.is_ok() {
                    self.inner.lock().path = absolute(base, p);
                }
                if r.is_err() {
                    let _ = fs::with(|fs| fs.unlink(base, p));
                }
                r
            }
        }
    }

    /// `connect` of a datagram socket: sets (or, with `AF_UNSPEC`, clears) the default
    /// destination.
    fn connect_dgram(self: &Arc<Self>, raw: &[u8]) -> Result<(), Errno> {
        if raw.len() >= 2 && u16::from_le_bytes([raw[0], raw[1]]) == 0 {
            self.inner.lock().peer = None;
            self.changed();
            return Ok(());
        }
        let other = Self::lookup(raw)?;
        if other.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        self.autobind_for_creds()?;
        if !may_send(self, &other) {
            return Err(Errno::EPERM);
        }
        let old = self.inner.lock().peer.replace(other);
        drop(old);
        self.changed();
        Ok(())
    }

    /// `connect` of a stream or seqpacket socket: queues a new connected socket on the
    /// listener, waiting for room in its backlog unless non-blocking.
    fn connect_stream(self: &Arc<Self>, f: &OpenFile, raw: &[u8]) -> Result<(), Errno> {
        name::parse(raw)?;
        {
            let i = self.inner.lock();
            match i.state {
                State::Listening { .. } => return Err(Errno::EINVAL),
                State::Connected => return Err(Errno::EISCONN),
                State::Unconnected => {}
            }
        }
        let other = Self::lookup(raw)?;
        if other.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        self.autobind_for_creds()?;
        let me = own_cred();
        let embryo = Sock::new(self.ty);
        {
            let mut e = embryo.inner.lock();
            e.state = State::Connected;
            e.peer = Some(self.clone());
            e.peercred = Some(me);
        }
        let deadline = self.deadline(so::SO_SNDTIMEO_OLD);
        let listener_cred = loop {
            {
                let mut guard = other.inner.lock();
                let o = &mut *guard;
                if o.dead {
                    return Err(Errno::ECONNREFUSED);
                }
                let State::Listening { backlog, pending } = &mut o.state else {
                    return Err(Errno::ECONNREFUSED);
                };
                if pending.len() <= *backlog {
                    // The embryo is not reachable by anyone else yet: locking it here
                    // cannot deadlock.
                    embryo.inner.lock().addr = o.addr.clone();
                    pending.push_back(embryo.clone());
                    break o.peercred;
                }
            }
            may_wait(f.nonblock())?;
            wait_on(&other.wq, deadline, || {
                let o = other.inner.lock();
                o.dead
                    || match &o.state {
                        State::Listening { backlog, pending } => pending.len() <= *backlog,
                        _ => true,
                    }
            })?;
        };
        {
            let mut i = self.inner.lock();
            i.state = State::Connected;
            i.peer = Some(embryo);
            i.peercred = listener_cred;
        }
        other.changed();
        self.changed();
        Ok(())
    }

    fn listen(&self, backlog: u32) -> Result<(), Errno> {
        if self.ty == SockType::Dgram {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut i = self.inner.lock();
        if i.addr.is_none() {
            return Err(Errno::EINVAL);
        }
        match &mut i.state {
            State::Connected => return Err(Errno::EINVAL),
            State::Listening { backlog: b, .. } => *b = backlog as usize,
            State::Unconnected => {
                i.state = State::Listening {
                    backlog: backlog as usize,
                    pending: VecDeque::new(),
                };
                i.peercred = Some(own_cred());
            }
        }
        drop(i);
        self.changed();
        Ok(())
    }

    fn accept(&self, f: &OpenFile) -> Result<Arc<Sock>, Errno> {
        let deadline = self.deadline(so::SO_RCVTIMEO_OLD);
        loop {
            {
                let mut i = self.inner.lock();
                let State::Listening { pending, .. } = &mut i.state else {
                    return Err(Errno::EINVAL);
                };
                if let Some(n) = pending.pop_front() {
                    drop(i);
                    self.changed();
                    return Ok(n);
                }
            }
            may_wait(f.nonblock())?;
            wait_on(&self.wq, deadline, || {
                let i = self.inner.lock();
                match &i.state {
                    State::Listening { pending, .. } => !pending.is_empty(),
                    _ => true,
                }
            })?;
        }
    }

    /// Waits until this socket's bytes in flight are below its send buffer (`EAGAIN`,
    /// `EINTR`), or `stop()` says the send fails anyway.
    fn wait_for_room(
        &self,
        nonblock: bool,
        deadline: Option<u64>,
        stop: impl Fn() -> bool,
    ) -> Result<(), Errno> {
        loop {
            let sndbuf = self.inner.lock().sndbuf;
            if self.wmem.bytes() < sndbuf || stop() {
                return Ok(());
            }
            may_wait(nonblock)?;
            wait_on(&self.wmem.wq, deadline, || {
                self.wmem.bytes() < sndbuf || stop()
            })?;
        }
    }

    /// The message to queue for `data` with the send's control messages: its bytes live
    /// in the kernel heap until read, so the heap is asked first (`ENOMEM` without
    /// headroom, never a panic).
    fn message(&self, data: &[u8], control: Vec<Control>) -> Result<Msg<Arc<OpenFile>>, Errno> {
        crate::linux::alloc_guard::reserve(data.len() + queue::MSG_OVERHEAD)?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(data.len())
            .map_err(|_| Errno::ENOMEM)?;
        bytes.extend_from_slice(data);
        let data = bytes;
        let mut rights = Vec::new();
        let mut cred = own_cred();
        for c in control {
            match c {
                Control::Rights(files) => rights.extend(files),
                Control::Credentials { pid, uid, gid } => cred = Cred { pid, uid, gid },
                // Other levels are ignored, as Linux's `__scm_send`.
                Control::Raw { .. } => {}
            }
        }
        let from = self.inner.lock().addr.clone();
        Ok(Msg::new(data, rights, cred, from, Some(self.wmem.clone())))
    }

    fn send_stream(
        &self,
        f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        control: Vec<Control>,
        flags: u32,
    ) -> Result<usize, Errno> {
        let (peer, shut) = {
            let i = self.inner.lock();
            if to.is_some() {
                return Err(if matches!(i.state, State::Connected) {
                    Errno::EISCONN
                } else {
                    Errno::EOPNOTSUPP
                });
            }
            (i.peer.clone().ok_or(Errno::ENOTCONN)?, i.shutdown)
        };
        if shut & SEND_SHUTDOWN != 0 {
            return Err(Errno::EPIPE);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let broken = || {
            let p = peer.inner.lock();
            p.dead || p.shutdown & RCV_SHUTDOWN != 0
        };
        let nonblock = nonblocking(f, flags);
        let deadline = self.deadline(so::SO_SNDTIMEO_OLD);
        let mut control = Some(control);
        let mut done = 0;
        // Like Linux, a blocking send queues everything (in pieces of half the send
        // buffer); a non-blocking or interrupted one returns what it queued.
        while done < data.len() {
            let stop = || broken() || stop_sending(self);
            if let Err(e) = self.wait_for_room(nonblock, deadline, stop) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            let sndbuf = self.inner.lock().sndbuf;
            let n = (data.len() - done).min((sndbuf / 2).max(1));
            let m = match self.message(&data[done..done + n], control.take().unwrap_or_default()) {
                Ok(m) => m,
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            };
            let shut = stop_sending(self);
            {
                let mut p = peer.inner.lock();
                if shut || p.dead || p.shutdown & RCV_SHUTDOWN != 0 {
                    drop(p);
                    drop(m);
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EPIPE)
                    };
                }
                p.rq.push(m);
            }
            done += n;
            peer.changed();
        }
        Ok(done)
    }

    fn send_dgram(
        self: &Arc<Self>,
        f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        control: Vec<Control>,
        flags: u32,
    ) -> Result<usize, Errno> {
        let seqpacket = self.ty == SockType::SeqPacket;
        let (peer, shut, sndbuf, connected) = {
            let i = self.inner.lock();
            (
                i.peer.clone(),
                i.shutdown,
                i.sndbuf,
                matches!(i.state, State::Connected),
            )
        };
        if seqpacket && !connected {
            return Err(Errno::ENOTCONN);
        }
        if shut & SEND_SHUTDOWN != 0 {
            return Err(Errno::EPIPE);
        }
        if data.len() + 32 > sndbuf {
            return Err(Errno::EMSGSIZE);
        }
        let other = match to {
            Some(raw) if !seqpacket => Self::lookup(raw)?,
            _ => peer.clone().ok_or(if seqpacket {
                Errno::EPIPE
            } else {
                Errno::ENOTCONN
            })?,
        };
        if other.ty != self.ty {
            return Err(Errno::EPROTOTYPE);
        }
        self.autobind_for_creds()?;
        let nonblock = nonblocking(f, flags);
        let deadline = self.deadline(so::SO_SNDTIMEO_OLD);
        self.wait_for_room(nonblock, deadline, || other.is_dead())?;
        let mut m = Some(self.message(data, control)?);
        loop {
            {
                let mut o = other.inner.lock();
                if o.dead {
                    drop(o);
                    if seqpacket {
                        return Err(Errno::EPIPE);
                    }
                    // Linux forgets a dead default destination after reporting it once.
                    let mut i = self.inner.lock();
                    if i.peer.as_ref().is_some_and(|p| Arc::ptr_eq(p, &other)) {
                        i.peer = None;
                    }
                    return Err(Errno::ECONNREFUSED);
                }
                if !seqpacket && o.peer.as_ref().is_some_and(|p| !Arc::ptr_eq(p, self)) {
                    return Err(Errno::EPERM);
                }
                if o.shutdown & RCV_SHUTDOWN != 0 {
                    return Err(Errno::EPIPE);
                }
                let connected_back = o.peer.as_ref().is_some_and(|p| Arc::ptr_eq(p, self));
                if connected_back || o.rq.len() <= MAX_DGRAM_QLEN {
                    if let Some(m) = m.take() {
                        o.rq.push(m);
                    }
                    break;
                }
            }
            may_wait(nonblock)?;
            wait_on(&other.wq, deadline, || {
                let o = other.inner.lock();
                o.dead || o.rq.len() <= MAX_DGRAM_QLEN
            })?;
        }
        other.changed();
        Ok(data.len())
    }

    /// The control messages a read delivers: credentials with `SO_PASSCRED`, then the
    /// passed descriptors.
    fn controls(passcred: bool, r: &mut Read<Arc<OpenFile>>) -> Vec<Control> {
        let mut c = Vec::new();
        if passcred {
            c.push(Control::Credentials {
                pid: r.cred.pid,
                uid: r.cred.uid,
                gid: r.cred.gid,
            });
        }
        if !r.rights.is_empty() {
            c.push(Control::Rights(core::mem::take(&mut r.rights)));
        }
        c
    }

    fn recv(&self, f: &OpenFile, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        if flags & MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let peek = flags & MSG_PEEK != 0;
        let nonblock = nonblocking(f, flags);
        let deadline = self.deadline(so::SO_RCVTIMEO_OLD);
        loop {
            let mut freed = Freed::new();
            let got = {
                let mut i = self.inner.lock();
                let connected = matches!(i.state, State::Connected);
                match self.ty {
                    SockType::Stream if !connected => return Err(Errno::EINVAL),
                    SockType::SeqPacket if !connected => return Err(Errno::ENOTCONN),
                    _ => {}
                }
                let passcred = i.passcred;
                let r = if self.ty == SockType::Stream {
                    i.rq.read_stream(buf, peek, passcred, &mut freed)
                } else {
                    i.rq.read_dgram(buf, peek, &mut freed)
                };
                match r {
                    Some(mut r) => Some((Self::controls(passcred, &mut r), r)),
                    None => {
                        if let Some(e) = i.err.take() {
                            return Err(e);
                        }
                        if i.shutdown & RCV_SHUTDOWN != 0 {
                            return Ok(Received::bytes(0));
                        }
                        None
                    }
                }
            };
            if let Some((control, r)) = got {
                if !peek {
                    wake_freed(freed);
                    self.changed();
                }
                return Ok(Received {
                    len: r.len,
                    full_len: r.full_len,
                    from: r.from,
                    control,
                    flags: 0,
                });
            }
            may_wait(nonblock)?;
            wait_on(&self.wq, deadline, || {
                let i = self.inner.lock();
                !i.rq.is_empty() || i.err.is_some() || i.shutdown & RCV_SHUTDOWN != 0
            })?;
        }
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        let mode = (how + 1) as u8 & SHUTDOWN_MASK;
        let peer = {
            let mut i = self.inner.lock();
            i.shutdown |= mode;
            if self.ty == SockType::Dgram {
                None
            } else {
                i.peer.clone()
            }
        };
        if let Some(p) = peer {
            let mut peer_mode = 0;
            if mode & RCV_SHUTDOWN != 0 {
                peer_mode |= SEND_SHUTDOWN;
            }
            if mode & SEND_SHUTDOWN != 0 {
                peer_mode |= RCV_SHUTDOWN;
            }
            p.inner.lock().shutdown |= peer_mode;
            p.changed();
        }
        self.changed();
        Ok(())
    }

    fn poll(&self) -> u16 {
        let (mask, writable, peer) = {
            let i = self.inner.lock();
            let mut m = 0;
            if i.err.is_some() {
                m |= ev::POLLERR;
            }
            if i.shutdown == SHUTDOWN_MASK {
                m |= ev::POLLHUP;
            }
            if i.shutdown & RCV_SHUTDOWN != 0 {
                m |= POLLRDHUP | ev::POLLIN | ev::POLLRDNORM;
            }
            let listening = matches!(i.state, State::Listening { .. });
            let ready = match &i.state {
                State::Listening { pending, .. } => !pending.is_empty(),
                _ => !i.rq.is_empty(),
            };
            if ready {
                m |= ev::POLLIN | ev::POLLRDNORM;
            }
            if self.ty != SockType::Dgram && matches!(i.state, State::Unconnected) {
                m |= ev::POLLHUP;
            }
            let writable = !listening && self.wmem.bytes() * 4 <= i.sndbuf;
            (m, writable, i.peer.clone())
        };
        let mut writable = writable;
        if writable && self.ty != SockType::Stream {
            if let Some(p) = peer {
                let o = p.inner.lock();
                let back = o.peer.as_ref().is_some_and(|q| core::ptr::eq(&**q, self));
                if !back && o.rq.len() > MAX_DGRAM_QLEN {
                    writable = false;
                }
            }
        }
        if writable {
            mask | ev::POLLOUT | ev::POLLWRNORM | ev::POLLWRBAND
        } else {
            mask
        }
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        use so::*;
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = || super::int_value(val);
        let buf = |v: i32, clamp: bool, min: usize| {
            let v = v.max(0) as usize;
            let v = v.min(if clamp { MAX_BUF } else { MAX_FORCED_BUF });
            (v * 2).max(min)
        };
        let mut i = self.inner.lock();
        match name {
            SO_SNDBUF | SO_SNDBUFFORCE => i.sndbuf = buf(int()?, name == SO_SNDBUF, MIN_SNDBUF),
            SO_RCVBUF | SO_RCVBUFFORCE => i.rcvbuf = buf(int()?, name == SO_RCVBUF, MIN_RCVBUF),
            SO_PASSCRED => i.passcred = int()? != 0,
            SO_DEBUG | SO_REUSEADDR | SO_DONTROUTE | SO_BROADCAST | SO_KEEPALIVE | SO_OOBINLINE
            | SO_PRIORITY | SO_REUSEPORT | SO_RCVLOWAT | SO_PASSSEC => {
                let v = int()?;
                let v = match name {
                    SO_PRIORITY => v,
                    SO_RCVLOWAT => v.max(1),
                    _ => i32::from(v != 0),
                };
                i.opts.insert(name, v.to_le_bytes().to_vec());
            }
            SO_LINGER => {
                let v = val.get(..opt_size(name)).ok_or(Errno::EINVAL)?;
                i.opts.insert(name, v.to_vec());
            }
            SO_RCVTIMEO_OLD | SO_SNDTIMEO_OLD | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW => {
                let v = val.get(..opt_size(name)).ok_or(Errno::EINVAL)?;
                timeval_timeout(v)?;
                i.opts.insert(timeo_key(name), v.to_vec());
            }
            _ => return Err(Errno::ENOPROTOOPT),
        }
        drop(i);
        self.changed();
        Ok(())
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        use so::*;
        if level != SOL_SOCKET {
            return Err(Errno::EOPNOTSUPP);
        }
        let int = |v: i32| -> Result<Vec<u8>, Errno> { Ok(v.to_le_bytes().to_vec()) };
        let mut i = self.inner.lock();
        match name {
            SO_ERROR => int(i.err.take().map_or(0, |e| e as i32)),
            SO_SNDBUF => int(i.sndbuf as i32),
            SO_RCVBUF => int(i.rcvbuf as i32),
            SO_PASSCRED => int(i32::from(i.passcred)),
            SO_ACCEPTCONN => int(i32::from(matches!(i.state, State::Listening { .. }))),
            SO_PEERCRED => Ok(i
                .peercred
                .unwrap_or(Cred {
                    pid: 0,
                    uid: u32::MAX,
                    gid: u32::MAX,
                })
                .to_bytes()),
            SO_DEBUG | SO_REUSEADDR | SO_DONTROUTE | SO_BROADCAST | SO_KEEPALIVE | SO_OOBINLINE
            | SO_PRIORITY | SO_REUSEPORT | SO_PASSSEC | SO_LINGER | SO_RCVTIMEO_OLD
            | SO_SNDTIMEO_OLD | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW => Ok(i
                .opts
                .get(&timeo_key(name))
                .cloned()
                .unwrap_or_else(|| alloc::vec![0; opt_size(name)])),
            SO_RCVLOWAT | SO_SNDLOWAT => Ok(i
                .opts
                .get(&name)
                .cloned()
                .unwrap_or_else(|| 1i32.to_le_bytes().to_vec())),
            _ => Err(Errno::ENOPROTOOPT),
        }
    }
}

/// Where a timeout option is kept: the `_NEW` names (same layout on x86-64) share the
/// `_OLD` ones' slot.
fn timeo_key(name: i32) -> i32 {
    match name {
        so::SO_RCVTIMEO_NEW => so::SO_RCVTIMEO_OLD,
        so::SO_SNDTIMEO_NEW => so::SO_SNDTIMEO_OLD,
        n => n,
    }
}

/// The size of option `name`'s value.
fn opt_size(name: i32) -> usize {
    use so::*;
    match name {
        SO_LINGER => 8,
        SO_RCVTIMEO_OLD | SO_SNDTIMEO_OLD | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW => 16,
        _ => 4,
    }
}

/// True once `s` may send no more (`shutdown(SHUT_WR)`, or its peer closed).
fn stop_sending(s: &Sock) -> bool {
    s.inner.lock().shutdown & SEND_SHUTDOWN != 0
}

/// Linux's `unix_may_send`: `other` accepts datagrams from `s` unless it is connected to
/// another socket.
fn may_send(s: &Arc<Sock>, other: &Arc<Sock>) -> bool {
    other
        .inner
        .lock()
        .peer
        .as_ref()
        .is_none_or(|p| Arc::ptr_eq(p, s))
}

/// The [`Socket`] an open file holds: dropping it (the last descriptor closed) releases
/// the socket.
pub(crate) struct UnixSocket {
    sock: Arc<Sock>,
}

impl UnixSocket {
    fn wrap(sock: Arc<Sock>) -> Arc<dyn Socket> {
        Arc::new(Self { sock })
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.sock.release(false);
    }
}

impl Socket for UnixSocket {
    fn family(&self) -> u16 {
        super::af::AF_UNIX
    }

    fn sock_type(&self) -> SockType {
        self.sock.ty
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        self.sock.bind(addr)
    }

    fn connect(&self, f: &OpenFile, addr: &[u8]) -> Result<(), Errno> {
        if self.sock.ty == SockType::Dgram {
            self.sock.connect_dgram(addr)
        } else {
            self.sock.connect_stream(f, addr)
        }
    }

    fn listen(&self, backlog: u32) -> Result<(), Errno> {
        self.sock.listen(backlog)
    }

    fn accept(&self, f: &OpenFile) -> Result<Arc<dyn Socket>, Errno> {
        self.sock.accept(f).map(UnixSocket::wrap)
    }

    fn send(
        &self,
        f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        control: Vec<Control>,
        flags: u32,
    ) -> Result<usize, Errno> {
        if flags & MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if self.sock.ty == SockType::Stream {
            self.sock.send_stream(f, data, to, control, flags)
        } else {
            self.sock.send_dgram(f, data, to, control, flags)
        }
    }

    fn recv(&self, f: &OpenFile, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        self.sock.recv(f, buf, flags)
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        self.sock.shutdown(how)
    }

    fn local_addr(&self) -> Result<Vec<u8>, Errno> {
        Ok(self
            .sock
            .inner
            .lock()
            .addr
            .clone()
            .unwrap_or_else(name::unnamed))
    }

    fn peer_addr(&self) -> Result<Vec<u8>, Errno> {
        let peer = self.sock.inner.lock().peer.clone().ok_or(Errno::ENOTCONN)?;
        let a = peer.inner.lock().addr.clone();
        Ok(a.unwrap_or_else(name::unnamed))
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        self.sock.setsockopt(level, name, val)
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        self.sock.getsockopt(level, name)
    }

    fn poll(&self) -> u16 {
        self.sock.poll()
    }

    fn available(&self) -> usize {
        let i = self.sock.inner.lock();
        match (&i.state, self.sock.ty) {
            (State::Listening { .. }, _) => 0,
            (_, SockType::Dgram) => i.rq.first_len(),
            _ => i.rq.bytes(),
        }
    }

    fn unsent(&self) -> Option<usize> {
        Some(self.sock.wmem.bytes())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `EPROTONOSUPPORT` unless `protocol` is 0 or `PF_UNIX`.
fn check_protocol(protocol: u32) -> Result<(), Errno> {
    if protocol == 0 || protocol == u32::from(super::af::AF_UNIX) {
        Ok(())
    } else {
        Err(Errno::EPROTONOSUPPORT)
    }
}

/// `socket(AF_UNIX, ty, protocol)`.
pub(crate) fn create(ty: SockType, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    check_protocol(protocol)?;
    Ok(UnixSocket::wrap(Sock::new(ty)))
}

/// `socketpair(AF_UNIX, ty, protocol)`: two connected sockets.
pub(crate) fn pair(ty: SockType, protocol: u32) -> Result<SocketPair, Errno> {
    check_protocol(protocol)?;
    let (a, b) = (Sock::new(ty), Sock::new(ty));
    let cred = own_cred();
    for (s, p) in [(&a, &b), (&b, &a)] {
        let mut i = s.inner.lock();
        i.peer = Some(p.clone());
        i.peercred = Some(cred);
        if ty != SockType::Dgram {
            i.state = State::Connected;
        }
    }
    Ok((UnixSocket::wrap(a), UnixSocket::wrap(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(sec: i64, usec: i64) -> Vec<u8> {
        let mut v = sec.to_le_bytes().to_vec();
        v.extend_from_slice(&usec.to_le_bytes());
        v
    }

    #[test]
    fn socket_timeouts_as_linux() {
        assert_eq!(timeval_timeout(&tv(0, 0)), Ok(None), "zero: no timeout");
        assert_eq!(timeval_timeout(&tv(1, 500_000)), Ok(Some(1_500_000_000)));
        assert_eq!(
            timeval_timeout(&tv(-3, 0)),
            Ok(Some(0)),
            "negative: at once"
        );
        assert_eq!(timeval_timeout(&tv(0, 1_000_000)), Err(Errno::EDOM));
        assert_eq!(timeval_timeout(&tv(0, -1)), Err(Errno::EDOM));
        assert_eq!(timeval_timeout(&[0; 8]), Err(Errno::EINVAL));
        assert_eq!(timeo_key(so::SO_RCVTIMEO_NEW), so::SO_RCVTIMEO_OLD);
        assert_eq!(timeo_key(so::SO_SNDTIMEO_NEW), so::SO_SNDTIMEO_OLD);
        assert_eq!(opt_size(so::SO_RCVTIMEO_NEW), 16);
    }
}
