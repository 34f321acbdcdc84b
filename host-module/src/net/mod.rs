//! Host networking for a tenant (`pvmux run --net host`, `--publish`): host sockets opened,
//! used and closed by the host on the guest's behalf through hypercalls 11..=24
//! ([`pvmux_hypercalls::net`], docs/ABI.md §net). The sandbox processes keep no socket
//! system call (their seccomp filters are unchanged): every socket is the host's, named to
//! the guest by a handle, and every argument is validated here (handles, address families,
//! socket types — TCP and UDP only, never raw —, guest memory ranges, lengths, options from
//! a fixed list) with a per-tenant limit on the sockets held.
//!
//! Host sockets are non-blocking: a call that would block returns `Busy` and arms the
//! [`watch`] thread, which raises `pending::NET` on vCPU 0 once the socket is ready (the
//! guest then retries). `--publish` listeners live in the same thread: each connection they
//! accept becomes a handle queued for `NetPublished`.

mod sock;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use pvmux_hypercalls::net::{
    errno_ret, recv, NetAddr, NetPublish, DEFAULT_MAX_SOCKETS, INT_OPTS, IO_MAX, READ_ONLY_OPTS,
};
use pvmux_hypercalls::{HcError, Hypercall};
use zerocopy::{FromBytes, IntoBytes};

use crate::GuestMemory;

/// Transport protocol of a `--publish` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishProto {
    /// TCP.
    Tcp,
}

/// One `--publish [IP:]HOSTPORT:GUESTPORT` rule: the host listens on `host` and hands each
/// connection to the guest's listener on `guest_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Where the host listens.
    pub host: SocketAddr,
    /// The guest port.
    pub guest_port: u16,
    /// The protocol.
    pub proto: PublishProto,
}

/// A tenant's networking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// `--net host`: the guest's internet sockets are host sockets.
    pub host: bool,
    /// `--publish` rules.
    pub publish: Vec<Publish>,
    /// Most host sockets the tenant may hold at once (0: [`DEFAULT_MAX_SOCKETS`]).
    pub max_sockets: usize,
}

impl NetConfig {
    /// True if the tenant gets any host networking.
    pub fn enabled(&self) -> bool {
        self.host || !self.publish.is_empty()
    }
}

/// One host socket of the guest.
struct Entry {
    fd: Arc<OwnedFd>,
    /// A connection a `--publish` listener accepted (usable in every mode).
    published: bool,
}

#[derive(Default)]
struct Table {
    socks: HashMap<u64, Entry>,
    next: u64,
    /// Published connections not yet taken by `NetPublished`.
    queue: VecDeque<(u64, NetPublish)>,
}

/// The host sockets of one tenant.
pub struct HostNet {
    cfg: NetConfig,
    table: Mutex<Table>,
    watch: watch::Watch,
}

impl std::fmt::Debug for HostNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostNet")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A socket error as the call's result.
fn errno(e: std::io::Error) -> i64 {
    errno_ret(e.raw_os_error().unwrap_or(libc::EIO))
}

impl HostNet {
    /// Opens the `--publish` listeners (failing if one cannot listen) and starts the watch
    /// thread; `raise` raises `pending::NET` on the guest.
    pub fn start(cfg: NetConfig, raise: Arc<dyn Fn() + Send + Sync>) -> std::io::Result<Arc<Self>> {
        let mut listeners = Vec::new();
        for p in &cfg.publish {
            let l = std::net::TcpListener::bind(p.host)?;
            l.set_nonblocking(true)?;
            listeners.push((OwnedFd::from(l), *p));
        }
        let net = Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let w = weak.clone();
            let accepted = move |fd: OwnedFd, p: &Publish, peer: NetAddr| {
                w.upgrade().is_some_and(|n| n.publish_accepted(fd, p, peer))
            };
            Self {
                watch: watch::Watch::start(listeners, raise, Box::new(accepted)),
                cfg,
                table: Mutex::new(Table::default()),
            }
        });
        Ok(net)
    }

    fn limit(&self) -> usize {
        if self.cfg.max_sockets == 0 {
            DEFAULT_MAX_SOCKETS
        } else {
            self.cfg.max_sockets
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `fd` as a new handle (`None` at the limit: the socket is closed).
    fn insert(&self, fd: OwnedFd, published: bool) -> Option<u64> {
        let mut t = self.table();
        if t.socks.len() >= self.limit() {
            return None;
        }
        t.next += 1;
        let h = t.next;
        t.socks.insert(
            h,
            Entry {
                fd: Arc::new(fd),
                published,
            },
        );
        Some(h)
    }

    /// A `--publish` listener accepted `fd`: queued for `NetPublished` (false: refused).
    fn publish_accepted(&self, fd: OwnedFd, p: &Publish, peer: NetAddr) -> bool {
        let Some(h) = self.insert(fd, true) else {
            return false;
        };
        let rec = NetPublish {
            guest_port: p.guest_port,
            proto: libc::IPPROTO_TCP as u8,
            reserved: [0; 5],
            peer,
        };
        self.table().queue.push_back((h, rec));
        true
    }

    /// The socket of handle `h` (published ones in every mode, others only with `--net
    /// host`).
    fn sock(&self, h: u64) -> Result<Arc<OwnedFd>, HcError> {
        let t = self.table();
        let e = t.socks.get(&h).ok_or(HcError::InvalidArgument)?;
        if !e.published && !self.cfg.host {
            return Err(HcError::UnknownCall);
        }
        Ok(Arc::clone(&e.fd))
    }

    fn host_only(&self) -> Result<(), HcError> {
        if self.cfg.host {
            Ok(())
        } else {
            Err(HcError::UnknownCall)
        }
    }
}

fn read_addr(mem: &GuestMemory, gpa: u64) -> Result<NetAddr, HcError> {
    let mut a = NetAddr::default();
    mem.read(gpa, a.as_mut_bytes())
        .map_err(|_| HcError::BadAddress)?;
    Ok(a)
}

fn write_addr(mem: &GuestMemory, gpa: u64, a: &NetAddr) -> Result<(), HcError> {
    if gpa == 0 {
        return Ok(());
    }
    mem.write(gpa, a.as_bytes())
        .map_err(|_| HcError::BadAddress)
}

/// Handles network hypercall `call` (`None` for the tenant: no host networking).
pub(crate) fn hc(mem: &GuestMemory, net: Option<&HostNet>, call: Hypercall, a: [u64; 6]) -> i64 {
    match net {
        None => HcError::UnknownCall.to_ret(),
        Some(n) => match dispatch(mem, n, call, a) {
            Ok(v) => v,
            Err(e) => e.to_ret(),
        },
    }
}

fn dispatch(mem: &GuestMemory, n: &HostNet, call: Hypercall, a: [u64; 6]) -> Result<i64, HcError> {
    let ok = |r: std::io::Result<u64>| Ok(r.map_or_else(errno, |v| v as i64));
    match call {
        Hypercall::NetSocket => {
            n.host_only()?;
            let fd = match sock::socket(a[0], a[1]) {
                Ok(fd) => fd,
                Err(sock::Refused::Invalid) => return Err(HcError::InvalidArgument),
                Err(sock::Refused::Os(e)) => return Ok(errno(e)),
            };
            n.insert(fd, false)
                .map(|h| h as i64)
                .ok_or(HcError::NoResources)
        }
        Hypercall::NetBind => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let addr = sock::to_std(&read_addr(mem, a[1])?).ok_or(HcError::InvalidArgument)?;
            ok(sock::bind(&fd, &addr).map(|()| 0))
        }
        Hypercall::NetListen => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let backlog = i32::try_from(a[1].min(4096)).map_err(|_| HcError::InvalidArgument)?;
            ok(sock::listen(&fd, backlog).map(|()| 0))
        }
        Hypercall::NetAccept => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            mem.check_range(a[1], if a[1] == 0 { 0 } else { 24 })
                .map_err(|_| HcError::BadAddress)?;
            match sock::accept(&fd) {
                Ok((nfd, peer)) => {
                    let h = n.insert(nfd, false).ok_or(HcError::NoResources)?;
                    write_addr(mem, a[1], &sock::from_std(&peer))?;
                    Ok(h as i64)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLIN);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetConnect => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let addr = sock::to_std(&read_addr(mem, a[1])?).ok_or(HcError::InvalidArgument)?;
            ok(sock::connect(&fd, &addr).map(|()| 0))
        }
        Hypercall::NetSend => {
            let fd = n.sock(a[0])?;
            let len = a[2].min(IO_MAX) as usize;
            let data = mem.read_vec(a[1], len).map_err(|_| HcError::BadAddress)?;
            let to = if a[3] == 0 {
                None
            } else {
                Some(sock::to_std(&read_addr(mem, a[3])?).ok_or(HcError::InvalidArgument)?)
            };
            match sock::send(&fd, &data, to.as_ref()) {
                Ok(k) => Ok(k as i64),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLOUT);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetRecv => {
            let fd = n.sock(a[0])?;
            let len = a[2].min(IO_MAX);
            mem.check_range(a[1], len)
                .map_err(|_| HcError::BadAddress)?;
            if a[4] & !recv::PEEK != 0 {
                return Err(HcError::InvalidArgument);
            }
            let mut buf = vec![0u8; len as usize];
            match sock::recv(&fd, &mut buf, a[4] & recv::PEEK != 0) {
                Ok((k, from)) => {
                    mem.write(a[1], &buf[..k])
                        .map_err(|_| HcError::BadAddress)?;
                    if let Some(f) = from {
                        write_addr(mem, a[3], &sock::from_std(&f))?;
                    }
                    Ok(k as i64)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLIN);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetShutdown => {
            let fd = n.sock(a[0])?;
            let how = i32::try_from(a[1]).ok().filter(|h| (0..=2).contains(h));
            ok(sock::shutdown(&fd, how.ok_or(HcError::InvalidArgument)?).map(|()| 0))
        }
        Hypercall::NetClose => {
            n.sock(a[0])?;
            n.table().socks.remove(&a[0]);
            n.watch.disarm(a[0]);
            Ok(0)
        }
        Hypercall::NetPoll => {
            let fd = n.sock(a[0])?;
            let events = i16::try_from(a[1]).map_err(|_| HcError::InvalidArgument)?;
            let rev = sock::poll_now(&fd, events);
            // Watch for the asked events that are not ready (a poller may wait for input on
            // a socket that is writable), unless it has an error or hung up.
            let missing = events & !rev;
            if missing != 0 && rev & (libc::POLLERR | libc::POLLHUP) == 0 {
                n.watch.arm(a[0], fd, missing);
            }
            Ok(i64::from(rev as u16))
        }
        Hypercall::NetName => {
            let fd = n.sock(a[0])?;
            let r = match a[1] {
                0 => sock::local_name(&fd),
                1 => sock::peer_name(&fd),
                _ => return Err(HcError::InvalidArgument),
            };
            match r {
                Ok(addr) => write_addr(mem, a[2], &sock::from_std(&addr)).map(|()| 0),
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetSetOpt | Hypercall::NetGetOpt => {
            let fd = n.sock(a[0])?;
            let (level, name) = (a[1] as i32, a[2] as i32);
            if a[1] > i32::MAX as u64
                || a[2] > i32::MAX as u64
                || !INT_OPTS.contains(&(level, name))
            {
                return Err(HcError::InvalidArgument);
            }
            if call == Hypercall::NetSetOpt {
                if READ_ONLY_OPTS.contains(&(level, name)) {
                    return Err(HcError::InvalidArgument);
                }
                ok(sock::setopt(&fd, level, name, a[3] as i32).map(|()| 0))
            } else {
                ok(sock::getopt(&fd, level, name).map(|v| u64::from(v as u32)))
            }
        }
        Hypercall::NetPublished => {
            mem.check_range(a[0], 32).map_err(|_| HcError::BadAddress)?;
            let next = n.table().queue.pop_front();
            match next {
                Some((h, rec)) => {
                    mem.write(a[0], rec.as_bytes())
                        .map_err(|_| HcError::BadAddress)?;
                    Ok(h as i64)
                }
                None => {
                    n.watch.want_published();
                    Err(HcError::Busy)
                }
            }
        }
        _ => Err(HcError::UnknownCall),
    }
}

/// Reads a [`NetAddr`] back (for tests and the CLI).
pub fn addr_from_bytes(b: &[u8]) -> Option<NetAddr> {
    NetAddr::read_from_bytes(b).ok()
}
