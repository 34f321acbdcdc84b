//! `AF_NETLINK` sockets of protocol `NETLINK_ROUTE`: the kernel's answers about network
//! devices and addresses ([`route`]), for `ip`, `getifaddrs`, `if_nameindex`, Node.js's
//! `os.networkInterfaces()`, Go's `net.Interfaces` and database servers that look for an
//! address. A socket (`SOCK_RAW` or `SOCK_DGRAM`, as Linux) gets a port id when it binds
//! or first sends (the process id for a process's first, then negative ids), sends requests
//! to the kernel (port 0) and reads the answers, a datagram per request, from its queue.
//! Nothing changes in the guest's devices, so subscribing to multicast groups is accepted
//! and never delivers a message. Other netlink protocols (audit, sock_diag, uevents, ...)
//! are `EPROTONOSUPPORT`, as on a Linux without them. A kernel hand-over refuses a process
//! holding one of these sockets (as any socket but `AF_UNIX`'s).

pub(crate) mod route;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::any::Any;

use super::msg::SOL_SOCKET;
use super::msgflag::{MSG_DONTWAIT, MSG_OOB, MSG_PEEK};
use super::{af, Control, Received, SockType, Socket};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::files::file::OpenFile;
use crate::linux::files::poll::{self, ev};
use crate::linux::{signal, task};
use crate::sched::wait::WaitQueue;

/// `NETLINK_ROUTE`.
const NETLINK_ROUTE: u32 = 0;
/// Protocols are below this (`MAX_LINKS`).
const MAX_LINKS: u32 = 32;
/// `SOL_NETLINK`.
const SOL_NETLINK: i32 = 270;
/// `struct sockaddr_nl`'s size.
const ADDR_LEN: usize = 12;

/// `SOL_NETLINK` options.
mod opt {
    pub(super) const ADD_MEMBERSHIP: i32 = 1;
    pub(super) const DROP_MEMBERSHIP: i32 = 2;
    pub(super) const PKTINFO: i32 = 3;
    pub(super) const BROADCAST_ERROR: i32 = 4;
    pub(super) const NO_ENOBUFS: i32 = 5;
    pub(super) const LISTEN_ALL_NSID: i32 = 8;
    pub(super) const CAP_ACK: i32 = 10;
    pub(super) const EXT_ACK: i32 = 11;
    pub(super) const GET_STRICT_CHK: i32 = 12;
    /// The options that are an on/off flag, kept and read back.
    pub(super) const FLAGS: [i32; 7] = [
        PKTINFO,
        BROADCAST_ERROR,
        NO_ENOBUFS,
        LISTEN_ALL_NSID,
        CAP_ACK,
        EXT_ACK,
        GET_STRICT_CHK,
    ];
}

/// `SOL_SOCKET` buffer sizes (Linux doubles what is asked, within limits).
const SO_SNDBUF: i32 = 7;
const SO_RCVBUF: i32 = 8;
const SO_SNDBUFFORCE: i32 = 32;
const SO_RCVBUFFORCE: i32 = 33;
/// The default and largest buffer sizes (`net.core.{r,w}mem_{default,max}`).
const BUF_DEFAULT: i32 = 212_992;
const BUF_MAX: i32 = 212_992;

/// The port ids in use (by this guest's netlink sockets).
static PORTS: IrqLock<BTreeSet<u32>> = IrqLock::new(BTreeSet::new());

/// Takes a free port id: `pid` if free, else the next free negative one (Linux's
/// `netlink_autobind`).
fn take_port(pid: u32) -> u32 {
    let mut ports = PORTS.lock();
    if pid != 0 && ports.insert(pid) {
        return pid;
    }
    let mut id: i32 = -4096;
    while !ports.insert(id as u32) {
        id = id.wrapping_sub(1);
    }
    id as u32
}

/// A socket's state.
struct Inner {
    /// Its port id once bound (0: not yet).
    portid: u32,
    /// Multicast groups joined (accepted; nothing is ever sent to them).
    groups: u32,
    /// Answers not yet read, and their bytes (at most `rcvbuf`).
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// Answers were dropped for want of room: the next read is `ENOBUFS` (Linux's
    /// `sk_err`), unless `NETLINK_NO_ENOBUFS`.
    overrun: bool,
    /// `SOL_NETLINK` flags set (`NETLINK_CAP_ACK`, `NETLINK_EXT_ACK`, ...), by option.
    flags: BTreeMap<i32, bool>,
    /// `SO_SNDBUF`, `SO_RCVBUF`.
    sndbuf: i32,
    rcvbuf: i32,
}

/// A `NETLINK_ROUTE` socket.
pub(crate) struct NetlinkSocket {
    ty: SockType,
    inner: IrqLock<Inner>,
    /// Readers waiting for an answer.
    wq: WaitQueue,
}

/// `socket(AF_NETLINK, raw_type, protocol)` (`raw_type` without the flag bits).
pub(crate) fn create(raw_type: u32, protocol: u32) -> Result<alloc::sync::Arc<dyn Socket>, Errno> {
    let ty = match raw_type {
        3 => SockType::Raw,
        2 => SockType::Dgram,
        _ => return Err(Errno::ESOCKTNOSUPPORT),
    };
    if protocol >= MAX_LINKS || protocol != NETLINK_ROUTE {
        return Err(Errno::EPROTONOSUPPORT);
    }
    Ok(alloc::sync::Arc::new(NetlinkSocket {
        ty,
        inner: IrqLock::new(Inner {
            portid: 0,
            groups: 0,
            queue: VecDeque::new(),
            queued: 0,
            overrun: false,
            flags: BTreeMap::new(),
            sndbuf: BUF_DEFAULT,
            rcvbuf: BUF_DEFAULT,
        }),
        wq: WaitQueue::new(),
    }))
}

/// The raw `sockaddr_nl` of port `pid` and `groups`.
fn sockaddr(pid: u32, groups: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(ADDR_LEN);
    a.extend_from_slice(&af::AF_NETLINK.to_le_bytes());
    a.extend_from_slice(&[0, 0]);
    a.extend_from_slice(&pid.to_le_bytes());
    a.extend_from_slice(&groups.to_le_bytes());
    a
}

/// A `sockaddr_nl` given to `bind`, `connect` or `sendto`: `(pid, groups)`; `EINVAL` if
/// short or of another family.
fn parse_addr(a: &[u8]) -> Result<(u32, u32), Errno> {
    if a.len() < ADDR_LEN || super::addr::family_of(a) != Some(af::AF_NETLINK) {
        return Err(Errno::EINVAL);
    }
    let w = |o: usize| u32::from_le_bytes([a[o], a[o + 1], a[o + 2], a[o + 3]]);
    Ok((w(4), w(8)))
}

/// The current process's id, for a first port id.
fn own_pid() -> u32 {
    task::try_current_task().map_or(0, |t| t.process.pid as u32)
}

impl NetlinkSocket {
    /// Its port id, binding it first if it has none.
    fn bound(&self) -> u32 {
        let mut i = self.inner.lock();
        if i.portid == 0 {
            i.portid = take_port(own_pid());
        }
        i.portid
    }

    fn flag(&self, o: i32) -> bool {
        self.inner.lock().flags.get(&o).copied().unwrap_or(false)
    }
}

impl Drop for NetlinkSocket {
    fn drop(&mut self) {
        let port = self.inner.lock().portid;
        if port != 0 {
            PORTS.lock().remove(&port);
        }
    }
}

impl Socket for NetlinkSocket {
    fn family(&self) -> u16 {
        af::AF_NETLINK
    }

    fn sock_type(&self) -> SockType {
        self.ty
    }

    fn protocol(&self) -> u32 {
        NETLINK_ROUTE
    }

    fn bind(&self, addr: &[u8]) -> Result<(), Errno> {
        let (pid, groups) = parse_addr(addr)?;
        let mut i = self.inner.lock();
        if i.portid == 0 {
            i.portid = if pid == 0 {
                take_port(own_pid())
            } else if PORTS.lock().insert(pid) {
                pid
            } else {
                return Err(Errno::EADDRINUSE);
            };
        } else if pid != 0 && pid != i.portid {
            return Err(Errno::EINVAL);
        }
        i.groups = groups;
        Ok(())
    }

    fn connect(&self, _f: &OpenFile, addr: &[u8]) -> Result<(), Errno> {
        // Only the kernel (port 0) answers here.
        let (pid, _) = parse_addr(addr)?;
        if pid != 0 {
            return Err(Errno::ECONNREFUSED);
        }
        self.bound();
        Ok(())
    }

    fn send(
        &self,
        _f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        _control: Vec<Control>,
        _flags: u32,
    ) -> Result<usize, Errno> {
        if let Some(to) = to.filter(|a| !a.is_empty()) {
            let (pid, _) = parse_addr(to)?;
            if pid != 0 {
                return Err(Errno::ECONNREFUSED);
            }
        }
        let who = route::Asker {
            portid: self.bound(),
            strict: self.flag(opt::GET_STRICT_CHK),
            cap_ack: self.flag(opt::CAP_ACK),
            net_admin: super::device::caller_is_net_admin(),
        };
        let answers = route::answer(data, &who);
        if !answers.is_empty() {
            let bytes: usize = answers.iter().map(Vec::len).sum();
            // Kernel memory kept for the program until it reads.
            crate::linux::alloc_guard::reserve(bytes)?;
            let mut i = self.inner.lock();
            if i.queued + bytes > i.rcvbuf as usize {
                // Dropped, as Linux drops what does not fit its receive buffer; the send
                // itself succeeds.
                i.overrun = !i.flags.get(&opt::NO_ENOBUFS).copied().unwrap_or(false);
                return Ok(data.len());
            }
            i.queue
                .try_reserve(answers.len())
                .map_err(|_| Errno::ENOMEM)?;
            i.queued += bytes;
            i.queue.extend(answers);
            drop(i);
            self.wq.wake_all();
            poll::notify();
        }
        Ok(data.len())
    }

    fn recv(&self, f: &OpenFile, buf: &mut [u8], flags: u32) -> Result<Received, Errno> {
        if flags & MSG_OOB != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        loop {
            {
                let mut i = self.inner.lock();
                // The error first, then what was kept (Linux's `sock_error` before the
                // queue).
                if core::mem::take(&mut i.overrun) {
                    return Err(Errno::ENOBUFS);
                }
                if let Some(d) = i.queue.front() {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    let full_len = d.len();
                    if flags & MSG_PEEK == 0 {
                        i.queue.pop_front();
                        i.queued -= full_len;
                    }
                    return Ok(Received {
                        len: n,
                        full_len,
                        from: Some(sockaddr(0, 0)),
                        control: Vec::new(),
                        flags: if n < full_len {
                            super::msgflag::MSG_TRUNC
                        } else {
                            0
                        },
                    });
                }
            }
            if f.nonblock() || flags & MSG_DONTWAIT != 0 {
                return Err(Errno::EAGAIN);
            }
            if signal::pending() {
                return Err(Errno::EINTR);
            }
            self.wq
                .wait_until(|| !self.inner.lock().queue.is_empty() || signal::pending());
        }
    }

    fn shutdown(&self, _how: u32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn local_addr(&self) -> Result<Vec<u8>, Errno> {
        let i = self.inner.lock();
        Ok(sockaddr(i.portid, i.groups))
    }

    fn peer_addr(&self) -> Result<Vec<u8>, Errno> {
        Ok(sockaddr(0, 0))
    }

    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        let int = || super::int_value(val);
        let mut i = self.inner.lock();
        match (level, name) {
            (SOL_SOCKET, SO_SNDBUF | SO_SNDBUFFORCE) => {
                i.sndbuf = int()?.clamp(2304, BUF_MAX).saturating_mul(2);
            }
            (SOL_SOCKET, SO_RCVBUF | SO_RCVBUFFORCE) => {
                i.rcvbuf = int()?.clamp(1152, BUF_MAX).saturating_mul(2);
            }
            (SOL_SOCKET, _) => return Err(Errno::ENOPROTOOPT),
            (SOL_NETLINK, opt::ADD_MEMBERSHIP | opt::DROP_MEMBERSHIP) => {
                let g = int()? as u32;
                if g == 0 {
                    return Err(Errno::EINVAL);
                }
                // Groups past 32 are accepted too; only the first 32 show in the address.
                if let Some(bit) = 1u32.checked_shl(g - 1) {
                    if name == opt::ADD_MEMBERSHIP {
                        i.groups |= bit;
                    } else {
                        i.groups &= !bit;
                    }
                }
            }
            (SOL_NETLINK, _) if opt::FLAGS.contains(&name) => {
                let on = int()? != 0;
                i.flags.insert(name, on);
            }
            _ => return Err(Errno::ENOPROTOOPT),
        }
        Ok(())
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let i = self.inner.lock();
        let v = match (level, name) {
            (SOL_SOCKET, SO_SNDBUF) => i.sndbuf,
            (SOL_SOCKET, SO_RCVBUF) => i.rcvbuf,
            (SOL_NETLINK, _) if opt::FLAGS.contains(&name) => {
                i32::from(i.flags.get(&name).copied().unwrap_or(false))
            }
            _ => return Err(Errno::ENOPROTOOPT),
        };
        Ok(v.to_le_bytes().to_vec())
    }

    fn poll(&self) -> u16 {
        let readable = if self.inner.lock().queue.is_empty() {
            0
        } else {
            ev::POLLIN | ev::POLLRDNORM
        };
        readable | ev::POLLOUT | ev::POLLWRNORM
    }

    fn available(&self) -> usize {
        self.inner.lock().queue.front().map_or(0, Vec::len)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ids_are_the_pid_first_then_negative() {
        let a = take_port(90_001);
        let b = take_port(90_001);
        assert_eq!(a, 90_001);
        assert!((b as i32) < 0, "{b}");
        assert_ne!(take_port(90_001), b);
        assert!((take_port(0) as i32) < 0);
    }

    #[test]
    fn addresses_are_sockaddr_nl() {
        let a = sockaddr(7, 1);
        assert_eq!(a.len(), ADDR_LEN);
        assert_eq!(parse_addr(&a), Ok((7, 1)));
        assert_eq!(parse_addr(&a[..8]), Err(Errno::EINVAL));
        let mut other = a.clone();
        other[0] = 1;
        assert_eq!(parse_addr(&other), Err(Errno::EINVAL));
        assert!(create(3, 9).is_err(), "NETLINK_AUDIT");
        assert!(create(1, 0).is_err(), "SOCK_STREAM");
        assert!(create(2, 0).is_ok());
    }
}
