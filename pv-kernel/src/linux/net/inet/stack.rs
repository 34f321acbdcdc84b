//! The guest's loopback: every internet socket of the guest in one table, and TCP and UDP
//! between them without an IP stack (a loopback loses, reorders and fragments nothing, so a
//! connection is two byte queues and a datagram is a queued message).
//!
//! Pure logic, no locks and no waiting: the caller ([`super`]) holds the one lock around a
//! [`Stack`], turns [`Errno::EAGAIN`] ("would block") into waiting for a blocking call, and
//! wakes waiters and pollers after each change.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::ip::{self, AddrSet, Ep};
use super::opts::Opts;
use crate::fs::Errno;
use crate::linux::files::poll::ev;
use crate::linux::net::af;

pub(crate) mod carry;

/// A socket's number in the table.
pub(crate) type Id = u64;

/// The transport protocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Proto {
    /// TCP (`SOCK_STREAM`).
    Tcp,
    /// UDP (`SOCK_DGRAM`).
    Udp,
}

/// The ephemeral port range (Linux `ip_local_port_range`).
const EPHEMERAL: core::ops::RangeInclusive<u16> = 32768..=60999;
/// `POLLRDHUP`.
pub(crate) const POLLRDHUP: u16 = 0x2000;
/// Most sockets in the table (`ENOBUFS` above): bounds what a guest can make the kernel hold.
const MAX_SOCKETS: usize = 65_536;

/// One direction-pair of an established connection, seen from one end.
#[derive(Debug)]
struct Conn {
    local: Ep,
    peer: Ep,
    /// The other end while it is open.
    peer_id: Option<Id>,
    /// Bytes received, not yet read.
    rx: VecDeque<u8>,
    /// The peer sent FIN (shut down writing or closed).
    rx_fin: bool,
    /// `shutdown(SHUT_RD)`.
    rd_shut: bool,
    /// `shutdown(SHUT_WR)` (FIN sent).
    wr_shut: bool,
    /// Reset (by the peer, or our write after the peer closed): nothing moves any more.
    reset: bool,
}

/// TCP state.
#[derive(Debug)]
enum Tcp {
    /// Not connected, not listening (new, or after a failed connect).
    Closed,
    /// Listening: established connections not yet accepted.
    Listen { backlog: usize, queue: VecDeque<Id> },
    /// Connected (the connection may be half-closed or reset).
    Est(Conn),
}

/// A datagram waiting to be read.
#[derive(Debug)]
struct Dgram {
    from: Ep,
    data: Vec<u8>,
}

/// UDP state.
#[derive(Debug, Default)]
struct Udp {
    rx: VecDeque<Dgram>,
    rx_bytes: usize,
    /// `connect`ed peer.
    peer: Option<Ep>,
    rd_shut: bool,
    wr_shut: bool,
}

/// One socket.
#[derive(Debug)]
struct Sock {
    family: u16,
    proto: Proto,
    /// The local address once bound (explicitly or by connect/send).
    bound: Option<Ep>,
    opts: Opts,
    /// `SO_ERROR`: an error reported by the next call or `getsockopt(SO_ERROR)`.
    err: Option<Errno>,
    tcp: Tcp,
    udp: Udp,
    /// Who made it and its file, for `/proc/net/tcp` and the like.
    owner: Owner,
}

/// A socket's file inode and its creator's user id (0 until it is an open file: a
/// connection not yet accepted).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Owner {
    pub(crate) ino: u64,
    pub(crate) uid: u32,
}

/// A socket as `/proc/net/{tcp,tcp6,udp,udp6}` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) local: Ep,
    /// The peer (an unconnected socket: the unspecified address, port 0).
    pub(crate) peer: Option<Ep>,
    /// Linux's TCP state number (UDP: 1 connected, 7 not).
    pub(crate) state: u8,
    /// Bytes received and not read.
    pub(crate) rx: usize,
    pub(crate) ino: u64,
    pub(crate) uid: u32,
}

/// Linux's TCP states (`include/net/tcp_states.h`).
mod tcp_state {
    pub(super) const ESTABLISHED: u8 = 1;
    pub(super) const FIN_WAIT2: u8 = 5;
    pub(super) const CLOSE: u8 = 7;
    pub(super) const CLOSE_WAIT: u8 = 8;
    pub(super) const LISTEN: u8 = 10;
    pub(super) const CLOSING: u8 = 11;
}

impl Sock {
    fn set(&self) -> Option<(AddrSet, u16)> {
        self.bound
            .map(|b| (AddrSet::of(self.family, self.opts.v6only(), &b.ip), b.port))
    }

    fn listening(&self) -> bool {
        matches!(self.tcp, Tcp::Listen { .. })
    }

    /// Receive-queue capacity in bytes (the reported `SO_RCVBUF`).
    fn rx_cap(&self) -> usize {
        self.opts.rcvbuf as usize
    }
}

/// What one receive got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Got {
    /// Bytes placed in the buffer.
    pub(crate) len: usize,
    /// The datagram's length (≥ `len`).
    pub(crate) full_len: usize,
    /// The sender (datagrams).
    pub(crate) from: Option<Ep>,
}

/// Every internet socket of the guest.
#[derive(Debug, Default)]
pub(crate) struct Stack {
    socks: BTreeMap<Id, Sock>,
    next_id: Id,
    next_port: u16,
}

impl Stack {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self {
            socks: BTreeMap::new(),
            next_id: 1,
            next_port: 0,
        }
    }

    fn get(&self, id: Id) -> Result<&Sock, Errno> {
        self.socks.get(&id).ok_or(Errno::EBADF)
    }

    fn get_mut(&mut self, id: Id) -> Result<&mut Sock, Errno> {
        self.socks.get_mut(&id).ok_or(Errno::EBADF)
    }

    fn insert(&mut self, s: Sock) -> Result<Id, Errno> {
        if self.socks.len() >= MAX_SOCKETS {
            return Err(Errno::ENOBUFS);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.socks.insert(id, s);
        Ok(id)
    }

    /// A new socket.
    pub(crate) fn socket(&mut self, family: u16, proto: Proto) -> Result<Id, Errno> {
        self.insert(Sock {
            family,
            proto,
            bound: None,
            opts: Opts::new(proto),
            err: None,
            tcp: Tcp::Closed,
            udp: Udp::default(),
            owner: Owner::default(),
        })
    }

    /// Records the file and creator of socket `id`.
    pub(crate) fn set_owner(&mut self, id: Id, owner: Owner) {
        if let Some(s) = self.socks.get_mut(&id) {
            s.owner = owner;
        }
    }

    /// The sockets of `family` and `proto` that Linux's `/proc/net` files list, in table
    /// order: TCP listeners and connections (those not yet accepted too), bound UDP sockets.
    pub(crate) fn rows(&self, family: u16, proto: Proto) -> Vec<Row> {
        use tcp_state::*;
        let mut out = Vec::new();
        for s in self.socks.values() {
            if s.family != family || s.proto != proto {
                continue;
            }
            let (local, peer, state, rx) = match (&s.tcp, proto) {
                (Tcp::Listen { queue, .. }, Proto::Tcp) => {
                    let Some(b) = s.bound else { continue };
                    (b, None, LISTEN, queue.len())
                }
                (Tcp::Est(c), Proto::Tcp) => {
                    let state = match (c.rx_fin, c.wr_shut) {
                        _ if c.reset => CLOSE,
                        (false, false) => ESTABLISHED,
                        (true, false) => CLOSE_WAIT,
                        (false, true) => FIN_WAIT2,
                        (true, true) => CLOSING,
                    };
                    (c.local, Some(c.peer), state, c.rx.len())
                }
                (_, Proto::Udp) => {
                    let Some(b) = s.bound else { continue };
                    let state = if s.udp.peer.is_some() {
                        ESTABLISHED
                    } else {
                        CLOSE
                    };
                    (b, s.udp.peer, state, s.udp.rx_bytes)
                }
                _ => continue,
            };
            out.push(Row {
                local,
                peer,
                state,
                rx,
                ino: s.owner.ino,
                uid: s.owner.uid,
            });
        }
        out
    }

    /// True if socket `me` binding `set`:`port` would clash with another binding.
    fn clashes(&self, me: Id, proto: Proto, set: AddrSet, port: u16) -> bool {
        let mine = &self.socks[&me].opts;
        self.socks.iter().any(|(&id, s)| {
            let Some((other, p)) = s.set() else {
                return false;
            };
            if id == me || s.proto != proto || p != port || !set.overlaps(&other) {
                return false;
            }
            let shared_port = mine.reuseport() && s.opts.reuseport();
            let reuse =
                mine.reuseaddr() && s.opts.reuseaddr() && (proto == Proto::Udp || !s.listening());
            !(shared_port || reuse)
        })
    }

    /// A free ephemeral port for `me` binding `set`.
    fn ephemeral(&mut self, me: Id, proto: Proto, set: AddrSet) -> Result<u16, Errno> {
        let n = EPHEMERAL.end() - EPHEMERAL.start() + 1;
        for _ in 0..n {
            let off = self.next_port % n;
            self.next_port = self.next_port.wrapping_add(1) % n;
            let port = EPHEMERAL.start() + off;
            let free = !self.socks.iter().any(|(&id, s)| {
                id != me
                    && s.proto == proto
                    && s.set().is_some_and(|(o, p)| p == port && o.overlaps(&set))
            });
            if free {
                return Ok(port);
            }
        }
        Err(Errno::EADDRINUSE)
    }

    /// `bind` (`ip` already checked to be an address the guest has).
    pub(crate) fn bind(&mut self, id: Id, ep: Ep) -> Result<(), Errno> {
        let s = self.get(id)?;
        if s.bound.is_some() {
            return Err(Errno::EINVAL);
        }
        if s.family == af::AF_INET6 && s.opts.v6only() && ip::as_v4(&ep.ip).is_some() {
            return Err(Errno::EINVAL);
        }
        let (proto, set) = (s.proto, AddrSet::of(s.family, s.opts.v6only(), &ep.ip));
        let port = if ep.port == 0 {
            self.ephemeral(id, proto, set)?
        } else if self.clashes(id, proto, set, ep.port) {
            return Err(Errno::EADDRINUSE);
        } else {
            ep.port
        };
        self.get_mut(id)?.bound = Some(Ep::new(ep.ip, port));
        Ok(())
    }

    /// Binds an unbound socket to the wildcard address and an ephemeral port (before
    /// `connect`, `listen`, or the first datagram).
    fn autobind(&mut self, id: Id) -> Result<Ep, Errno> {
        let s = self.get(id)?;
        if let Some(b) = s.bound {
            return Ok(b);
        }
        let any = if s.family == af::AF_INET {
            ip::ANY4
        } else {
            ip::ANY6
        };
        self.bind(id, Ep::new(any, 0))?;
        Ok(self.get(id)?.bound.unwrap_or(Ep::new(any, 0)))
    }

    /// `listen`.
    pub(crate) fn listen(&mut self, id: Id, backlog: u32) -> Result<(), Errno> {
        let s = self.get(id)?;
        if s.proto != Proto::Tcp {
            return Err(Errno::EOPNOTSUPP);
        }
        match &s.tcp {
            Tcp::Est(_) => return Err(Errno::EINVAL),
            Tcp::Listen { .. } => {
                if let Tcp::Listen { backlog: b, .. } = &mut self.get_mut(id)?.tcp {
                    *b = backlog as usize;
                }
                return Ok(());
            }
            Tcp::Closed => {}
        }
        self.autobind(id)?;
        let s = self.get(id)?;
        let (set, port) = s.set().ok_or(Errno::EINVAL)?;
        let reuseport = s.opts.reuseport();
        // Two listeners of one address only with SO_REUSEPORT on both (SO_REUSEADDR lets
        // them bind, not listen).
        let clash = self.socks.iter().any(|(&o, t)| {
            o != id
                && t.listening()
                && t.set()
                    .is_some_and(|(ts, p)| p == port && ts.overlaps(&set))
                && !(reuseport && t.opts.reuseport())
        });
        if clash {
            return Err(Errno::EADDRINUSE);
        }
        self.get_mut(id)?.tcp = Tcp::Listen {
            backlog: backlog as usize,
            queue: VecDeque::new(),
        };
        Ok(())
    }

    /// The source address for a connection or datagram from `id` to `dest`.
    fn source(&self, id: Id, dest: &Ep) -> Result<Ep, Errno> {
        let s = self.get(id)?;
        let b = s.bound.ok_or(Errno::EINVAL)?;
        let ip = if ip::is_unspecified(&b.ip) {
            ip::loopback_like(&dest.ip)
        } else {
            b.ip
        };
        Ok(Ep::new(ip, b.port))
    }

    /// Checks that `dest` (from socket `id`) is on the loopback; `0.0.0.0`/`::` mean it.
    fn route(&self, id: Id, dest: Ep) -> Result<Ep, Errno> {
        let s = self.get(id)?;
        let mut d = dest;
        if ip::is_unspecified(&d.ip) {
            d.ip = ip::loopback_like(&d.ip);
        }
        if s.family == af::AF_INET6 && s.opts.v6only() && ip::as_v4(&d.ip).is_some() {
            return Err(Errno::ENETUNREACH);
        }
        if !ip::is_loopback(&d.ip) {
            return Err(Errno::ENETUNREACH);
        }
        Ok(d)
    }

    /// The socket of `proto` that `dest` reaches (a specific binding before a wildcard one),
    /// among those `want` accepts.
    fn lookup(&self, proto: Proto, dest: &Ep, want: impl Fn(&Sock) -> bool) -> Option<Id> {
        let mut best = None;
        for (&id, s) in &self.socks {
            let Some((set, port)) = s.set() else {
                continue;
            };
            if s.proto != proto || port != dest.port || !set.contains(&dest.ip) || !want(s) {
                continue;
            }
            if matches!(set, AddrSet::One(_)) {
                return Some(id);
            }
            best = best.or(Some(id));
        }
        best
    }

    /// TCP `connect`: completes at once on the loopback (`ECONNREFUSED` without a listener,
    /// `EAGAIN` while its accept queue is full). UDP: sets the peer (`None`: dissolves it).
    pub(crate) fn connect(&mut self, id: Id, dest: Option<Ep>) -> Result<(), Errno> {
        let s = self.get(id)?;
        if s.proto == Proto::Udp {
            let Some(dest) = dest else {
                self.get_mut(id)?.udp.peer = None;
                return Ok(());
            };
            let d = self.route(id, dest)?;
            self.autobind(id)?;
            let s = self.get_mut(id)?;
            s.udp.peer = Some(d);
            s.err = None;
            return Ok(());
        }
        let dest = dest.ok_or(Errno::EAFNOSUPPORT)?;
        match &s.tcp {
            Tcp::Closed => {}
            Tcp::Est(_) => return Err(Errno::EISCONN),
            Tcp::Listen { .. } => return Err(Errno::EINVAL),
        }
        let d = self.route(id, dest)?;
        let listener = self.lookup(Proto::Tcp, &d, Sock::listening);
        let Some(lid) = listener else {
            return Err(Errno::ECONNREFUSED);
        };
        if let Tcp::Listen { backlog, queue } = &self.get(lid)?.tcp {
            if queue.len() > *backlog {
                return Err(Errno::EAGAIN);
            }
        }
        self.autobind(id)?;
        let local = self.source(id, &d)?;
        let l = self.get(lid)?;
        let server = Sock {
            family: l.family,
            proto: Proto::Tcp,
            bound: Some(d),
            opts: l.opts.clone(),
            err: None,
            tcp: Tcp::Est(Conn::new(d, local, Some(id))),
            udp: Udp::default(),
            owner: Owner {
                ino: 0,
                uid: l.owner.uid,
            },
        };
        let sid = self.insert(server)?;
        let c = self.get_mut(id)?;
        c.tcp = Tcp::Est(Conn::new(local, d, Some(sid)));
        c.err = None;
        if let Tcp::Listen { queue, .. } = &mut self.get_mut(lid)?.tcp {
            queue.push_back(sid);
        }
        Ok(())
    }

    /// True if a `connect` from `id` to `dest` that got `EAGAIN` may now get further.
    pub(crate) fn accept_queue_full(&self, id: Id, dest: Ep) -> bool {
        let Ok(d) = self.route(id, dest) else {
            return false;
        };
        match self.lookup(Proto::Tcp, &d, Sock::listening) {
            Some(l) => {
                matches!(&self.socks[&l].tcp, Tcp::Listen { backlog, queue } if queue.len() > *backlog)
            }
            None => false,
        }
    }

    /// `accept`: the oldest established connection (`EAGAIN`: none yet).
    pub(crate) fn accept(&mut self, id: Id) -> Result<Id, Errno> {
        match &mut self.get_mut(id)?.tcp {
            Tcp::Listen { queue, .. } => queue.pop_front().ok_or(Errno::EAGAIN),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Sends `data` (to `to` for UDP). TCP: as much as the peer's receive queue takes.
    pub(crate) fn send(&mut self, id: Id, data: &[u8], to: Option<Ep>) -> Result<usize, Errno> {
        let s = self.get_mut(id)?;
        if let Some(e) = s.err.take() {
            return Err(e);
        }
        match s.proto {
            Proto::Tcp => self.send_tcp(id, data),
            Proto::Udp => self.send_udp(id, data, to),
        }
    }

    fn send_tcp(&mut self, id: Id, data: &[u8]) -> Result<usize, Errno> {
        let s = self.get_mut(id)?;
        let Tcp::Est(c) = &mut s.tcp else {
            return Err(Errno::EPIPE);
        };
        if c.wr_shut || c.reset {
            return Err(Errno::EPIPE);
        }
        let Some(pid) = c.peer_id else {
            // The peer closed: the data goes, a reset comes back (the next send is EPIPE).
            c.reset = true;
            s.err = Some(Errno::EPIPE);
            return Ok(data.len());
        };
        let peer = self.get_mut(pid)?;
        let cap = peer.rx_cap();
        let Tcp::Est(pc) = &mut peer.tcp else {
            return Err(Errno::EPIPE);
        };
        let room = cap.saturating_sub(pc.rx.len());
        if room == 0 {
            return if data.is_empty() {
                Ok(0)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = room.min(data.len());
        pc.rx.extend(&data[..n]);
        Ok(n)
    }

    fn send_udp(&mut self, id: Id, data: &[u8], to: Option<Ep>) -> Result<usize, Errno> {
        let s = self.get(id)?;
        if s.udp.wr_shut {
            return Err(Errno::EPIPE);
        }
        let connected = to.is_none();
        let dest = match to.or(s.udp.peer) {
            Some(d) => self.route(id, d)?,
            None => return Err(Errno::EDESTADDRREQ),
        };
        if dest.port == 0 {
            return Err(Errno::EINVAL);
        }
        self.autobind(id)?;
        let from = self.source(id, &dest)?;
        let rcv = self.lookup(Proto::Udp, &dest, |r| {
            r.udp
                .peer
                .is_none_or(|p| p == from || (ip::is_unspecified(&p.ip) && p.port == from.port))
        });
        let Some(rid) = rcv else {
            // ICMP port unreachable: a connected sender hears of it.
            if connected {
                self.get_mut(id)?.err = Some(Errno::ECONNREFUSED);
            }
            return Ok(data.len());
        };
        let r = self.get_mut(rid)?;
        let cap = r.rx_cap();
        if !r.udp.rd_shut && r.udp.rx_bytes + data.len() <= cap {
            r.udp.rx_bytes += data.len();
            r.udp.rx.push_back(Dgram {
                from,
                data: data.to_vec(),
            });
        }
        Ok(data.len())
    }

    /// Receives into `buf` (`peek`: leaves the data queued). `EAGAIN`: nothing yet.
    pub(crate) fn recv(&mut self, id: Id, buf: &mut [u8], peek: bool) -> Result<Got, Errno> {
        let s = self.get_mut(id)?;
        match s.proto {
            Proto::Tcp => {
                let Tcp::Est(c) = &mut s.tcp else {
                    return Err(s.err.take().unwrap_or(Errno::ENOTCONN));
                };
                if !c.rx.is_empty() && !c.rd_shut {
                    let n = buf.len().min(c.rx.len());
                    let (front, back) = c.rx.as_slices();
                    let k = n.min(front.len());
                    buf[..k].copy_from_slice(&front[..k]);
                    buf[k..n].copy_from_slice(&back[..n - k]);
                    if !peek {
                        c.rx.drain(..n);
                    }
                    return Ok(Got {
                        len: n,
                        full_len: n,
                        from: None,
                    });
                }
                if let Some(e) = s.err.take() {
                    return Err(e);
                }
                let Tcp::Est(c) = &s.tcp else {
                    return Err(Errno::ENOTCONN);
                };
                if c.rx_fin || c.rd_shut || c.reset || buf.is_empty() {
                    return Ok(Got {
                        len: 0,
                        full_len: 0,
                        from: None,
                    });
                }
                Err(Errno::EAGAIN)
            }
            Proto::Udp => {
                if let Some(e) = s.err.take() {
                    return Err(e);
                }
                let Some(d) = s.udp.rx.front() else {
                    return if s.udp.rd_shut {
                        Ok(Got {
                            len: 0,
                            full_len: 0,
                            from: None,
                        })
                    } else {
                        Err(Errno::EAGAIN)
                    };
                };
                let n = buf.len().min(d.data.len());
                buf[..n].copy_from_slice(&d.data[..n]);
                let got = Got {
                    len: n,
                    full_len: d.data.len(),
                    from: Some(d.from),
                };
                if !peek {
                    s.udp.rx_bytes -= d.data.len();
                    s.udp.rx.pop_front();
                }
                Ok(got)
            }
        }
    }

    /// `shutdown(how)`.
    pub(crate) fn shutdown(&mut self, id: Id, how: u32) -> Result<(), Errno> {
        let (rd, wr) = (how != 1, how != 0);
        let s = self.get_mut(id)?;
        match s.proto {
            Proto::Udp => {
                if s.udp.peer.is_none() {
                    return Err(Errno::ENOTCONN);
                }
                s.udp.rd_shut |= rd;
                s.udp.wr_shut |= wr;
                Ok(())
            }
            Proto::Tcp => {
                let Tcp::Est(c) = &mut s.tcp else {
                    return Err(Errno::ENOTCONN);
                };
                c.rd_shut |= rd;
                if wr && !c.wr_shut {
                    c.wr_shut = true;
                    if let Some(pid) = c.peer_id {
                        if let Some(p) = self.peer_conn(pid) {
                            p.rx_fin = true;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn peer_conn(&mut self, pid: Id) -> Option<&mut Conn> {
        match &mut self.socks.get_mut(&pid)?.tcp {
            Tcp::Est(c) => Some(c),
            _ => None,
        }
    }

    /// Resets connection `pid` from its peer's side (`ECONNRESET` on its next call).
    fn reset(&mut self, pid: Id) {
        if let Some(p) = self.socks.get_mut(&pid) {
            if let Tcp::Est(c) = &mut p.tcp {
                c.peer_id = None;
                if !c.reset {
                    c.reset = true;
                    c.rx.clear();
                    p.err = Some(if c.rx_fin {
                        Errno::EPIPE
                    } else {
                        Errno::ECONNRESET
                    });
                }
            }
        }
    }

    /// The last descriptor of `id` closed: FIN to the peer, or a reset when unread data is
    /// left (or `SO_LINGER` 0); a listener resets the connections it had not accepted.
    pub(crate) fn close(&mut self, id: Id) {
        let Some(s) = self.socks.remove(&id) else {
            return;
        };
        match s.tcp {
            Tcp::Listen { queue, .. } => {
                for q in queue {
                    let peer = match self.socks.remove(&q).map(|q| q.tcp) {
                        Some(Tcp::Est(c)) => c.peer_id,
                        _ => None,
                    };
                    if let Some(p) = peer {
                        self.reset(p);
                    }
                }
            }
            Tcp::Est(c) => {
                if let Some(pid) = c.peer_id {
                    if (!c.rx.is_empty() || s.opts.abortive_close()) && !c.reset {
                        self.reset(pid);
                    } else if let Some(p) = self.peer_conn(pid) {
                        p.rx_fin = true;
                        p.peer_id = None;
                    }
                }
            }
            Tcp::Closed => {}
        }
    }

    /// `getsockname`.
    pub(crate) fn local(&self, id: Id) -> Result<Ep, Errno> {
        let s = self.get(id)?;
        if let Tcp::Est(c) = &s.tcp {
            return Ok(c.local);
        }
        if let (Some(p), Some(b)) = (s.udp.peer, s.bound) {
            if ip::is_unspecified(&b.ip) {
                return self.source(id, &p);
            }
        }
        let any = if s.family == af::AF_INET {
            ip::ANY4
        } else {
            ip::ANY6
        };
        Ok(s.bound.unwrap_or(Ep::new(any, 0)))
    }

    /// `getpeername` (`ENOTCONN` when not connected).
    pub(crate) fn peer(&self, id: Id) -> Result<Ep, Errno> {
        let s = self.get(id)?;
        match (&s.tcp, s.udp.peer) {
            // Both FINs exchanged: Linux's socket is CLOSE (TIME_WAIT/LAST_ACK done).
            (Tcp::Est(c), _) if !(c.reset || c.wr_shut && c.rx_fin) => Ok(c.peer),
            (_, Some(p)) => Ok(p),
            _ => Err(Errno::ENOTCONN),
        }
    }

    /// Takes `SO_ERROR`.
    pub(crate) fn take_error(&mut self, id: Id) -> Result<Option<Errno>, Errno> {
        Ok(self.get_mut(id)?.err.take())
    }

    /// Records `e` as the socket's `SO_ERROR`.
    pub(crate) fn set_error(&mut self, id: Id, e: Errno) {
        if let Some(s) = self.socks.get_mut(&id) {
            s.err = Some(e);
        }
    }

    /// `SO_ACCEPTCONN`.
    pub(crate) fn is_listening(&self, id: Id) -> bool {
        self.socks.get(&id).is_some_and(Sock::listening)
    }

    /// True once connected (TCP) or with a peer (UDP).
    pub(crate) fn is_connected(&self, id: Id) -> bool {
        self.socks
            .get(&id)
            .is_some_and(|s| matches!(s.tcp, Tcp::Est(_)) || s.udp.peer.is_some())
    }

    /// True if bound.
    pub(crate) fn is_bound(&self, id: Id) -> bool {
        self.socks.get(&id).is_some_and(|s| s.bound.is_some())
    }

    /// The options, to read.
    pub(crate) fn opts(&self, id: Id) -> Result<&Opts, Errno> {
        Ok(&self.get(id)?.opts)
    }

    /// The options, to change.
    pub(crate) fn opts_mut(&mut self, id: Id) -> Result<&mut Opts, Errno> {
        Ok(&mut self.get_mut(id)?.opts)
    }

    /// Bytes to read (`FIONREAD`: a stream's queue, a datagram socket's next datagram).
    pub(crate) fn available(&self, id: Id) -> usize {
        match self.socks.get(&id) {
            Some(Sock {
                tcp: Tcp::Est(c), ..
            }) => c.rx.len(),
            Some(s) => s.udp.rx.front().map_or(0, |d| d.data.len()),
            None => 0,
        }
    }

    /// The `poll` events of `id` (Linux's `tcp_poll`/`udp_poll`).
    pub(crate) fn poll(&self, id: Id) -> u16 {
        let rd = ev::POLLIN | ev::POLLRDNORM;
        let wr = ev::POLLOUT | ev::POLLWRNORM;
        let Some(s) = self.socks.get(&id) else {
            return ev::POLLNVAL;
        };
        let err = if s.err.is_some() { ev::POLLERR } else { 0 };
        if s.proto == Proto::Udp {
            let r = if !s.udp.rx.is_empty() { rd } else { 0 };
            let hup = if s.udp.rd_shut && s.udp.wr_shut {
                ev::POLLHUP
            } else {
                0
            };
            let rdhup = if s.udp.rd_shut { rd | POLLRDHUP } else { 0 };
            return r | wr | err | hup | rdhup;
        }
        match &s.tcp {
            Tcp::Listen { queue, .. } => {
                if queue.is_empty() {
                    0
                } else {
                    rd
                }
            }
            Tcp::Closed => wr | ev::POLLHUP | err,
            Tcp::Est(c) => {
                let mut m = err;
                let in_shut = c.rx_fin || c.rd_shut || c.reset;
                let out_shut = c.wr_shut || c.reset;
                if !c.rx.is_empty() {
                    m |= rd;
                }
                if in_shut {
                    m |= rd | POLLRDHUP;
                }
                if in_shut && out_shut {
                    m |= ev::POLLHUP;
                }
                let room = match c.peer_id.and_then(|p| self.socks.get(&p)) {
                    Some(p) => match &p.tcp {
                        Tcp::Est(pc) => pc.rx.len() < p.rx_cap(),
                        _ => true,
                    },
                    None => true,
                };
                if out_shut || room {
                    m |= wr;
                }
                m
            }
        }
    }
}

impl Conn {
    fn new(local: Ep, peer: Ep, peer_id: Option<Id>) -> Self {
        Self {
            local,
            peer,
            peer_id,
            rx: VecDeque::new(),
            rx_fin: false,
            rd_shut: false,
            wr_shut: false,
            reset: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ip::{LOOPBACK4, LOOPBACK6};

    const V4: u16 = af::AF_INET;
    const V6: u16 = af::AF_INET6;

    fn listener(st: &mut Stack, fam: u16, ep: Ep) -> Id {
        let l = st.socket(fam, Proto::Tcp).unwrap();
        st.bind(l, ep).unwrap();
        st.listen(l, 1).unwrap();
        l
    }

    fn recv_all(st: &mut Stack, id: Id) -> Vec<u8> {
        let mut b = [0u8; 1024];
        let n = st.recv(id, &mut b, false).unwrap().len;
        b[..n].to_vec()
    }

    #[test]
    fn tcp_connect_accept_echo_and_fin() {
        let mut st = Stack::new();
        let l = listener(&mut st, V4, Ep::new(LOOPBACK4, 8080));
        let c = st.socket(V4, Proto::Tcp).unwrap();
        assert_eq!(st.poll(l) & ev::POLLIN, 0);
        st.connect(c, Some(Ep::new(LOOPBACK4, 8080))).unwrap();
        assert_ne!(st.poll(l) & ev::POLLIN, 0);
        let s = st.accept(l).unwrap();
        assert_eq!(st.accept(l), Err(Errno::EAGAIN));
        assert_eq!(st.peer(s).unwrap(), st.local(c).unwrap());
        assert!(EPHEMERAL.contains(&st.local(c).unwrap().port));
        assert_eq!(st.send(c, b"hello", None), Ok(5));
        assert_eq!(st.available(s), 5);
        assert_eq!(recv_all(&mut st, s), b"hello");
        assert_eq!(st.recv(s, &mut [0; 4], false), Err(Errno::EAGAIN));
        st.shutdown(c, 1).unwrap();
        assert_eq!(st.recv(s, &mut [0; 4], false).unwrap().len, 0);
        assert_eq!(st.send(c, b"x", None), Err(Errno::EPIPE));
        assert_eq!(st.send(s, b"back", None), Ok(4));
        assert_eq!(recv_all(&mut st, c), b"back");
        st.close(s);
        assert_eq!(st.recv(c, &mut [0; 4], false).unwrap().len, 0);
    }

    #[test]
    fn refused_unreachable_and_address_in_use() {
        let mut st = Stack::new();
        let c = st.socket(V4, Proto::Tcp).unwrap();
        assert_eq!(
            st.connect(c, Some(Ep::new(LOOPBACK4, 9))),
            Err(Errno::ECONNREFUSED)
        );
        let far = Ep::new(ip::v4([10, 0, 0, 1]), 80);
        assert_eq!(st.connect(c, Some(far)), Err(Errno::ENETUNREACH));
        let l = listener(&mut st, V4, Ep::new(ip::ANY4, 7000));
        let b = st.socket(V4, Proto::Tcp).unwrap();
        assert_eq!(st.bind(b, Ep::new(LOOPBACK4, 7000)), Err(Errno::EADDRINUSE));
        // A v6-only socket does not clash with IPv4; a dual-stack one does.
        let v6 = st.socket(V6, Proto::Tcp).unwrap();
        assert_eq!(st.bind(v6, Ep::new(ip::ANY6, 7000)), Err(Errno::EADDRINUSE));
        st.opts_mut(v6)
            .unwrap()
            .set(Proto::Tcp, true, false, 41, 26, &1i32.to_le_bytes())
            .unwrap();
        st.bind(v6, Ep::new(ip::ANY6, 7000)).unwrap();
        st.close(l);
        st.bind(b, Ep::new(LOOPBACK4, 7000)).unwrap();
    }

    #[test]
    fn reuseaddr_binds_but_only_reuseport_listens_twice() {
        let mut st = Stack::new();
        let on = 1i32.to_le_bytes();
        let mk = |st: &mut Stack, name| {
            let s = st.socket(V4, Proto::Tcp).unwrap();
            st.opts_mut(s)
                .unwrap()
                .set(Proto::Tcp, false, false, 1, name, &on)
                .unwrap();
            st.bind(s, Ep::new(LOOPBACK4, 5000)).map(|()| s)
        };
        let a = mk(&mut st, 2).unwrap();
        let b = mk(&mut st, 2).unwrap();
        st.listen(a, 5).unwrap();
        assert_eq!(st.listen(b, 5), Err(Errno::EADDRINUSE));
        assert_eq!(
            mk(&mut st, 2),
            Err(Errno::EADDRINUSE),
            "a listener holds it"
        );
        let mut st = Stack::new();
        let a = mk(&mut st, 15).unwrap();
        let b = mk(&mut st, 15).unwrap();
        st.listen(a, 5).unwrap();
        st.listen(b, 5).unwrap();
    }

    #[test]
    fn close_with_unread_data_resets_the_peer() {
        let mut st = Stack::new();
        let l = listener(&mut st, V4, Ep::new(LOOPBACK4, 80));
        let c = st.socket(V4, Proto::Tcp).unwrap();
        st.connect(c, Some(Ep::new(LOOPBACK4, 80))).unwrap();
        let s = st.accept(l).unwrap();
        st.send(c, b"unread", None).unwrap();
        st.close(s);
        assert_ne!(st.poll(c) & ev::POLLERR, 0);
        assert_eq!(st.recv(c, &mut [0; 8], false), Err(Errno::ECONNRESET));
        assert_eq!(st.recv(c, &mut [0; 8], false).unwrap().len, 0);
        assert_eq!(st.send(c, b"x", None), Err(Errno::EPIPE));
    }

    #[test]
    fn writes_after_the_peer_closed_get_epipe_the_second_time() {
        let mut st = Stack::new();
        let l = listener(&mut st, V4, Ep::new(LOOPBACK4, 81));
        let c = st.socket(V4, Proto::Tcp).unwrap();
        st.connect(c, Some(Ep::new(LOOPBACK4, 81))).unwrap();
        let s = st.accept(l).unwrap();
        st.close(s);
        assert_eq!(st.send(c, b"x", None), Ok(1));
        assert_eq!(st.send(c, b"x", None), Err(Errno::EPIPE));
    }

    #[test]
    fn backlog_bounds_unaccepted_connections_and_a_closed_listener_resets_them() {
        let mut st = Stack::new();
        let l = st.socket(V4, Proto::Tcp).unwrap();
        st.bind(l, Ep::new(LOOPBACK4, 90)).unwrap();
        st.listen(l, 0).unwrap();
        let d = Ep::new(LOOPBACK4, 90);
        let a = st.socket(V4, Proto::Tcp).unwrap();
        let b = st.socket(V4, Proto::Tcp).unwrap();
        st.connect(a, Some(d)).unwrap();
        assert_eq!(st.connect(b, Some(d)), Err(Errno::EAGAIN));
        assert!(st.accept_queue_full(b, d));
        st.close(l);
        assert_eq!(st.recv(a, &mut [0; 1], false), Err(Errno::ECONNRESET));
    }

    #[test]
    fn stream_send_stops_at_the_receive_buffer() {
        let mut st = Stack::new();
        let l = listener(&mut st, V4, Ep::new(LOOPBACK4, 82));
        let c = st.socket(V4, Proto::Tcp).unwrap();
        st.connect(c, Some(Ep::new(LOOPBACK4, 82))).unwrap();
        let s = st.accept(l).unwrap();
        let big = alloc::vec![7u8; 1 << 20];
        let n = st.send(c, &big, None).unwrap();
        assert_eq!(n, 131_072);
        assert_eq!(st.poll(c) & ev::POLLOUT, 0);
        assert_eq!(st.send(c, &big, None), Err(Errno::EAGAIN));
        recv_all(&mut st, s);
        assert_ne!(st.poll(c) & ev::POLLOUT, 0);
    }

    #[test]
    fn udp_keeps_boundaries_and_reports_senders_in_the_receivers_family() {
        let mut st = Stack::new();
        let r = st.socket(V6, Proto::Udp).unwrap();
        st.bind(r, Ep::new(ip::ANY6, 5353)).unwrap();
        let s4 = st.socket(V4, Proto::Udp).unwrap();
        let s6 = st.socket(V6, Proto::Udp).unwrap();
        assert_eq!(st.send(s4, b"one", Some(Ep::new(LOOPBACK4, 5353))), Ok(3));
        assert_eq!(st.send(s6, b"", Some(Ep::new(LOOPBACK6, 5353))), Ok(0));
        assert_eq!(st.send(s4, b"three", Some(Ep::new(LOOPBACK4, 5353))), Ok(5));
        let mut b = [0u8; 2];
        let g = st.recv(r, &mut b, false).unwrap();
        assert_eq!((g.len, g.full_len), (2, 3));
        assert_eq!(g.from.unwrap().ip, LOOPBACK4);
        assert_eq!(g.from.unwrap().port, st.local(s4).unwrap().port);
        assert_eq!(
            st.recv(r, &mut b, false).unwrap().from.unwrap().ip,
            LOOPBACK6
        );
        assert_eq!(st.recv(r, &mut [0; 9], false).unwrap().len, 5);
        assert_eq!(st.recv(r, &mut b, false), Err(Errno::EAGAIN));
    }

    #[test]
    fn connected_udp_hears_of_an_unreachable_port() {
        let mut st = Stack::new();
        let s = st.socket(V4, Proto::Udp).unwrap();
        st.connect(s, Some(Ep::new(LOOPBACK4, 9999))).unwrap();
        assert_eq!(st.send(s, b"x", None), Ok(1));
        assert_ne!(st.poll(s) & ev::POLLERR, 0);
        assert_eq!(st.recv(s, &mut [0; 1], false), Err(Errno::ECONNREFUSED));
        assert_eq!(st.send(s, b"x", Some(Ep::new(LOOPBACK4, 1))), Ok(1));
    }
}
