//! `AF_INET` and `AF_INET6` sockets: TCP and UDP on the guest's loopback (`127.0.0.0/8`,
//! `::1` and their IPv4-mapped forms).
//!
//! Every internet socket of the guest lives in one table ([`stack::Stack`]) behind one lock;
//! a descriptor's [`Socket`] is a handle ([`InetSocket`]) holding its number, whose drop (the
//! last descriptor closed) is the socket's `close`. Blocking calls wait on one wait queue,
//! woken (with [`poll::notify`]) after every change of the table.
//!
//! Why not an IP stack (smoltcp) for the loopback: a loopback neither loses, reorders,
//! fragments nor congests, so TCP's sequence numbers, retransmission, windows and
//! checksums do no work there; a connection is two byte queues and a datagram a queued
//! message. The hand-written loopback copies each byte once (sender's buffer into the
//! receiver's queue) with no header, checksum or segmentation per 64 KiB, and answers
//! `connect`/`accept` at once; it also has exactly Linux's observable rules (bind
//! conflicts, `SO_REUSEADDR`/`SO_REUSEPORT`, dual-stack sets, `ECONNREFUSED` at once,
//! resets on close with unread data) that an embedded stack does not model. See
//! `docs/ARCHITECTURE.md` ("Internet sockets") for the measured comparison.

pub(crate) mod host;
pub(crate) mod ip;
pub(crate) mod opts;
pub(crate) mod relay;
pub(crate) mod stack;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};

use self::ip::{Decoded, Ep};
use self::opts::{level, so};
use self::stack::{Id, Proto, Stack};
use super::{af, msgflag, Control, Received, SockType, Socket};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::files::file::OpenFile;
use crate::linux::files::poll::{self, ev};
use crate::linux::signal;
use crate::sched::wait::WaitQueue;
use pvmux_hypercalls::net::INT_OPTS;

/// `IPPROTO_TCP`.
const IPPROTO_TCP: u32 = 6;
/// `IPPROTO_UDP`.
const IPPROTO_UDP: u32 = 17;

/// Every internet socket of the guest.
static STACK: IrqLock<Stack> = IrqLock::new(Stack::new());
/// Threads blocked in an internet socket call.
static WAITERS: WaitQueue = WaitQueue::new();

/// Bumped by every change of the table (relays wait for it).
static STACK_SEQ: AtomicU64 = AtomicU64::new(0);

/// The table changed: wake blocked calls and pollers.
fn changed() {
    STACK_SEQ.fetch_add(1, Ordering::AcqRel);
    WAITERS.wake_all();
    poll::notify();
}

/// `socket(family, ty, protocol)` for `AF_INET`/`AF_INET6`.
pub(crate) fn create(family: u16, ty: SockType, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    let proto = match (ty, protocol) {
        (SockType::Stream, 0 | IPPROTO_TCP) => Proto::Tcp,
        (SockType::Dgram, 0 | IPPROTO_UDP) => Proto::Udp,
        (SockType::SeqPacket, _) => return Err(Errno::ESOCKTNOSUPPORT),
        _ => return Err(Errno::EPROTONOSUPPORT),
    };
    let host = host::socket(family, proto == Proto::Tcp)?;
    let id = STACK.lock().socket(family, proto)?;
    Ok(Arc::new(InetSocket {
        id,
        family,
        proto,
        host,
    }))
}

/// Hand-over: the number in the table of the internet socket behind `f` and, for one of
/// `--net host`, the handle of the host socket that carries it (its table entry holds
/// only its options); `None`: not an internet socket.
pub(crate) fn carried_id(f: &OpenFile) -> Option<(u64, Option<u64>)> {
    let s = crate::linux::files::object::downcast::<super::SocketFile>(f)?;
    let i = s.sock.as_any().downcast_ref::<InetSocket>()?;
    Some((i.id, i.host.as_ref().map(|h| h.h)))
}

/// Hand-over: every socket of the table as record entries (sections 18 and 20), their
/// bytes in the blob `blob` writes; or what cannot be carried.
pub(crate) fn carry(
    blob: stack::carry::Blob<'_>,
) -> Result<
    (
        Vec<pvmux_hypercalls::handover::InetSocketEntry>,
        Vec<pvmux_hypercalls::handover::InetMsgEntry>,
    ),
    &'static [u8],
> {
    STACK.lock().carry(blob)
}

/// The loopback sockets an adoption made again ([`adopt`]), by record id.
pub(crate) struct AdoptedSockets {
    /// The ones a descriptor may name (not waiting in a listener's queue, not a relay's).
    pub(crate) sockets: alloc::collections::BTreeMap<u64, Arc<dyn Socket>>,
    /// The relays' (section 46), with their families, for [`relay::adopt`].
    pub(crate) relays: alloc::collections::BTreeMap<u64, (Id, u16)>,
}

/// Hand-over: the internet sockets of a checked record re-created in the table (which is
/// empty: no program has run); one flagged `HOST` on the host socket `hosts` names for it
/// (section 41; the host keeps its sockets across a switch); the sockets of relays
/// (`relays`, section 46) left to them. Dropping the sockets empties the table again (and
/// closes those host sockets, once the adoption is done: [`host::adoption_done`]).
pub(crate) fn adopt(
    socks: &[pvmux_hypercalls::handover::InetSocketEntry],
    msgs: &[pvmux_hypercalls::handover::InetMsgEntry],
    hosts: &alloc::collections::BTreeMap<u64, u64>,
    relays: &alloc::collections::BTreeSet<u64>,
    blob: &dyn Fn(pvmux_hypercalls::handover::BlobRef) -> Option<Vec<u8>>,
) -> Result<AdoptedSockets, stack::carry::Refused> {
    let mut out = AdoptedSockets {
        sockets: alloc::collections::BTreeMap::new(),
        relays: alloc::collections::BTreeMap::new(),
    };
    if socks.is_empty() {
        return Ok(out);
    }
    let ids = STACK.lock().adopt(socks, msgs, blob)?;
    changed();
    for e in socks.iter().filter(|e| e.listener == 0) {
        let (family, proto) = match (e.family, e.proto) {
            (2, p) => (af::AF_INET, p),
            (_, p) => (af::AF_INET6, p),
        };
        let proto = if proto == IPPROTO_TCP as u16 {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let id = ids[&e.id];
        if relays.contains(&e.id) {
            out.relays.insert(e.id, (id, family));
            continue;
        }
        let host = match (
            e.flags & pvmux_hypercalls::handover::inet_flags::HOST,
            hosts.get(&e.id),
        ) {
            (0, _) => None,
            (_, Some(&h)) => Some(host::HostSock::adopted(h, family)),
            (_, None) => return Err(stack::carry::Refused(e.id)),
        };
        let s: Arc<dyn Socket> = Arc::new(InetSocket {
            id,
            family,
            proto,
            host,
        });
        out.sockets.insert(e.id, s);
    }
    Ok(out)
}

/// One internet socket: a handle on its entry in [`STACK`].
pub(crate) struct InetSocket {
    /// Its entry in [`STACK`] (with a host socket: only its options live there).
    id: Id,
    family: u16,
    proto: Proto,
    /// With `--net host`: the host socket that carries it.
    host: Option<host::HostSock>,
}

impl Drop for InetSocket {
    fn drop(&mut self) {
        STACK.lock().close(self.id);
        changed();
    }
}

/// Runs `op` on the stack until it does not say "would block" (`EAGAIN`), waiting for
/// `ready` between tries: `EAGAIN` if `nonblock`, `EINTR` on a signal.
fn blocking<T>(
    nonblock: bool,
    mut op: impl FnMut(&mut Stack) -> Result<T, Errno>,
    ready: impl Fn(&Stack) -> bool,
) -> Result<T, Errno> {
    loop {
        let r = op(&mut STACK.lock());
        match r {
            Err(Errno::EAGAIN) => {}
            r => {
                changed();
                return r;
            }
        }
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        WAITERS.wait_until(|| ready(&STACK.lock()) || signal::pending());
    }
}

impl InetSocket {
    /// Decodes an address given to a host socket (`AF_UNSPEC`: `EAFNOSUPPORT`).
    fn decode_ep(&self, raw: &[u8]) -> Result<Ep, Errno> {
        match self.decode(raw)? {
            Decoded::Ep(ep) => Ok(ep),
            Decoded::Unspec => Err(Errno::EAFNOSUPPORT),
        }
    }

    /// Decodes an address given to this socket.
    fn decode(&self, raw: &[u8]) -> Result<Decoded, Errno> {
        ip::decode(self.family, raw)
    }

    /// True if the poll events of this socket include one of `mask` (or an error/hang-up).
    fn has(&self, st: &Stack, mask: u16) -> bool {
        st.poll(self.id) & (mask | ev::POLLERR | ev::POLLHUP) != 0
    }

    /// The address a `bind` names, checked to be one the guest has (`EADDRNOTAVAIL`).
    fn bind_addr(&self, raw: &[u8]) -> Result<Ep, Errno> {
        let ep = match self.decode(raw)? {
            Decoded::Ep(ep) => ep,
            // Linux accepts AF_UNSPEC with INADDR_ANY on an AF_INET socket.
            Decoded::Unspec if self.family == af::AF_INET && raw.get(4..8) == Some(&[0; 4]) => {
                let port = raw
                    .get(2..4)
                    .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
                Ep::new(ip::ANY4, port)
            }
            Decoded::Unspec => return Err(Errno::EAFNOSUPPORT),
        };
        if !ip::is_unspecified(&ep.ip) && !ip::is_loopback(&ep.ip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        Ok(ep)
    }

    fn tcp_connect(&self, f: &OpenFile, dest: Ep) -> Result<(), Errno> {
        let id = self.id;
        let nonblock = f.nonblock();
        let r = blocking(
            nonblock,
            |st| st.connect(id, Some(dest)),
            |st| !st.accept_queue_full(id, dest),
        );
        match r {
            // A non-blocking connect reports completion through poll and SO_ERROR, as
            // Linux's (whose loopback handshake is not finished when connect returns).
            Ok(()) if nonblock => Err(Errno::EINPROGRESS),
            Err(Errno::ECONNREFUSED) if nonblock => {
                STACK.lock().set_error(id, Errno::ECONNREFUSED);
                changed();
                Err(Errno::EINPROGRESS)
            }
            r => r,
        }
    }
}

impl Socket for InetSocket {
    fn family(&self) -> u16 {
        self.family
    }

    fn sock_type(&self) -> SockType {
        match self.proto {
            Proto::Tcp => SockType::Stream,
            Proto::Udp => SockType::Dgram,
        }
    }

    fn protocol(&self) -> u32 {
        match self.proto {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
        }
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        if let Some(h) = &self.host {
            return h.bind(&self.decode_ep(addr)?);
        }
        let ep = self.bind_addr(addr)?;
        if self.proto == Proto::Udp {
            // A `--publish .../udp` flow may be for this socket.
            host::start_publish_pump();
        }
        STACK.lock().bind(self.id, ep)
    }

    fn connect(&self, f: &OpenFile, addr: &[u8]) -> Result<(), Errno> {
        if let Some(h) = &self.host {
            return h.connect(&self.decode_ep(addr)?, f.nonblock());
        }
        match (self.decode(addr)?, self.proto) {
            (Decoded::Ep(ep), Proto::Tcp) => self.tcp_connect(f, ep),
            (d, Proto::Udp) => {
                let dest = match d {
                    Decoded::Ep(ep) => Some(ep),
                    Decoded::Unspec => None,
                };
                let r = STACK.lock().connect(self.id, dest);
                changed();
                r
            }
            // AF_UNSPEC on a stream: a disconnect; nothing to do unless connected.
            (Decoded::Unspec, Proto::Tcp) => {
                if STACK.lock().is_connected(self.id) {
                    Err(Errno::EISCONN)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn listen(&self, backlog: u32) -> Result<(), Errno> {
        if let Some(h) = &self.host {
            return h.listen(backlog);
        }
        host::start_publish_pump();
        let r = STACK.lock().listen(self.id, backlog);
        changed();
        r
    }

    fn accept(&self, f: &OpenFile) -> Result<Arc<dyn Socket>, Errno> {
        if let Some(h) = &self.host {
            let new = h.accept(f.nonblock())?;
            let id = STACK.lock().socket(self.family, self.proto)?;
            return Ok(Arc::new(InetSocket {
                id,
                family: self.family,
                proto: self.proto,
                host: Some(new),
            }));
        }
        if !STACK.lock().is_listening(self.id) {
            return Err(Errno::EINVAL);
        }
        let id = self.id;
        let new = blocking(
            f.nonblock(),
            |st| st.accept(id),
            |st| st.poll(id) & ev::POLLIN != 0 || !st.is_listening(id),
        )?;
        Ok(Arc::new(InetSocket {
            id: new,
            family: self.family,
            proto: self.proto,
            host: None,
        }))
    }

    fn send(
        &self,
        f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        control: Vec<Control>,
        flags: u32,
    ) -> Result<usize, Errno> {
        drop(control);
        if flags & msgflag::MSG_OOB != 0 && self.proto == Proto::Udp {
            return Err(Errno::EOPNOTSUPP);
        }
        let to = match (to, self.proto) {
            (Some(raw), Proto::Udp) => match self.decode(raw)? {
                Decoded::Ep(ep) => Some(ep),
                Decoded::Unspec => return Err(Errno::EAFNOSUPPORT),
            },
            _ => None,
        };
        let nonblock = f.nonblock() || flags & msgflag::MSG_DONTWAIT != 0;
        if let Some(h) = &self.host {
            return h.send(data, to.as_ref(), nonblock);
        }
        blocking(
            nonblock,
            |st| st.send(self.id, data, to),
            |st| self.has(st, ev::POLLOUT),
        )
    }

    fn recv(&self, f: &OpenFile, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        if flags & msgflag::MSG_OOB != 0 {
            return Err(Errno::EINVAL);
        }
        let peek = flags & msgflag::MSG_PEEK != 0;
        let nonblock = f.nonblock() || flags & msgflag::MSG_DONTWAIT != 0;
        if let Some(h) = &self.host {
            let (n, from) = h.recv(buf, peek, nonblock)?;
            let mut r = Received::bytes(n);
            if self.proto == Proto::Udp {
                r.from = from.map(|ep| ip::encode(self.family, &ep));
            }
            return Ok(r);
        }
        let got = blocking(
            nonblock,
            |st| st.recv(self.id, buf, peek),
            |st| self.has(st, ev::POLLIN),
        )?;
        Ok(Received {
            len: got.len,
            full_len: got.full_len,
            from: got.from.map(|ep| ip::encode(self.family, &ep)),
            control: Vec::new(),
            flags: 0,
        })
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        if let Some(h) = &self.host {
            return h.shutdown(how);
        }
        let r = STACK.lock().shutdown(self.id, how);
        changed();
        r
    }

    fn local_addr(&self) -> Result<Vec<u8>, Errno> {
        if let Some(h) = &self.host {
            return Ok(ip::encode(self.family, &h.name(false)?));
        }
        let ep = STACK.lock().local(self.id)?;
        Ok(ip::encode(self.family, &ep))
    }

    fn peer_addr(&self) -> Result<Vec<u8>, Errno> {
        if let Some(h) = &self.host {
            return Ok(ip::encode(self.family, &h.name(true)?));
        }
        let ep = STACK.lock().peer(self.id)?;
        Ok(ip::encode(self.family, &ep))
    }

    fn setsockopt(&self, lvl: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        if lvl == level::SOL_SOCKET && matches!(name, so::ERROR | so::ACCEPTCONN) {
            return Err(Errno::ENOPROTOOPT);
        }
        if let Some(h) = &self.host {
            if INT_OPTS.contains(&(lvl, name)) {
                let b = val.get(..4).ok_or(Errno::EINVAL)?;
                return h.setopt(lvl, name, i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        let mut st = STACK.lock();
        let bound = st.is_bound(self.id);
        let v6 = self.family == af::AF_INET6;
        let r = st
            .opts_mut(self.id)?
            .set(self.proto, v6, bound, lvl, name, val);
        drop(st);
        changed();
        r
    }

    fn getsockopt(&self, lvl: i32, name: i32) -> Result<Vec<u8>, Errno> {
        if let Some(h) = &self.host {
            if INT_OPTS.contains(&(lvl, name)) {
                return Ok(h.getopt(lvl, name)?.to_le_bytes().to_vec());
            }
        }
        let mut st = STACK.lock();
        if lvl == level::SOL_SOCKET && name == so::ERROR {
            let e = st.take_error(self.id)?.map_or(0, Errno::code);
            drop(st);
            changed();
            return Ok(e.to_le_bytes().to_vec());
        }
        if lvl == level::SOL_SOCKET && name == so::ACCEPTCONN {
            return Ok(i32::from(st.is_listening(self.id)).to_le_bytes().to_vec());
        }
        let v6 = self.family == af::AF_INET6;
        st.opts(self.id)?.get(self.proto, v6, lvl, name)
    }

    fn poll(&self) -> u16 {
        if let Some(h) = &self.host {
            return h.poll(ev::POLLIN | ev::POLLOUT);
        }
        STACK.lock().poll(self.id)
    }

    fn available(&self) -> usize {
        STACK.lock().available(self.id)
    }

    fn opened(&self, ino: u64) {
        let uid = crate::linux::task::try_current_task().map_or(0, |t| t.process.creds.lock().uid);
        STACK.lock().set_owner(self.id, stack::Owner { ino, uid });
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The rows of `/proc/net/{tcp,tcp6,udp,udp6}`: the guest's own internet sockets of
/// `family` and `proto` (with `--net host`, whose sockets are the host's, none).
pub(crate) fn proc_rows(family: u16, proto: Proto) -> Vec<stack::Row> {
    STACK.lock().rows(family, proto)
}
