//! Host sockets (`--net host`, `--publish`): internet sockets the host opens and polices for
//! the guest (hypercalls `NetSocket`..`NetPublished`, docs/ABI.md §net).
//!
//! * With `--net host` every internet socket of the guest is a host socket (the gVisor
//!   *hostinet* model): the guest's addresses are the host's, its 127.0.0.1 the host's
//!   loopback. The kernel finds out at the first `socket()`: a host without networking for
//!   this tenant answers `UnknownCall`, and the guest keeps its own loopback from then on.
//! * With `--publish` (and the default `--net none`), the host listens and hands each
//!   connection to the guest ([`publish_pump`]): a kernel thread takes it (`NetPublished`),
//!   connects a loopback socket to the guest's listener on the published port and relays
//!   bytes both ways until both directions end. A `/udp` rule's handle is a flow (one host
//!   client's datagrams): its thread relays datagram by datagram to the guest's UDP socket on
//!   the published port from a loopback UDP socket of its own, and the replies back.
//!
//! Waiting: a call that would block returns `Busy` and the host raises `pending::NET` once
//! the socket may be ready; the event handler bumps [`NET_SEQ`] and wakes every waiter.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use pvmux_hypercalls::net::{ret_errno, NetAddr, NetPublish, IO_MAX, PUBLISH_UDP};
use pvmux_hypercalls::{HcError, Hypercall};
use zerocopy::{FromBytes, IntoBytes};

use super::ip::{self, Ep};
use crate::fs::Errno;
use crate::linux::net::af;
use crate::linux::signal;

/// Bumped by every `pending::NET` event.
static NET_SEQ: AtomicU64 = AtomicU64::new(0);

/// What the host offers: not asked yet, nothing, host sockets.
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const NONE: u8 = 1;
const HOST: u8 = 2;

/// The `pending::NET` event: host sockets may be ready, or a published connection arrived.
pub(crate) fn event() {
    NET_SEQ.fetch_add(1, Ordering::AcqRel);
    super::changed();
}

/// A host call's result: `Busy` is `EAGAIN` (would block), the host's socket errors are
/// theirs, a call the host does not offer is `ENETUNREACH`, other refusals `EINVAL`.
fn result(ret: i64) -> Result<u64, Errno> {
    if let Ok(v) = u64::try_from(ret) {
        return Ok(v);
    }
    if let Some(e) = ret_errno(ret) {
        return Err(errno(e));
    }
    Err(match HcError::from_ret(ret) {
        Some(HcError::Busy) => Errno::EAGAIN,
        Some(HcError::UnknownCall) => Errno::ENETUNREACH,
        Some(HcError::NoResources) => Errno::ENOBUFS,
        Some(HcError::BadAddress) => Errno::EFAULT,
        _ => Errno::EINVAL,
    })
}

/// A Linux errno the host returned (the network ones; anything else is `EIO`).
fn errno(n: i32) -> Errno {
    match n {
        1 => Errno::EPERM,
        11 => Errno::EAGAIN,
        12 => Errno::ENOMEM,
        13 => Errno::EACCES,
        22 => Errno::EINVAL,
        24 => Errno::EMFILE,
        32 => Errno::EPIPE,
        89 => Errno::EDESTADDRREQ,
        90 => Errno::EMSGSIZE,
        92 => Errno::ENOPROTOOPT,
        95 => Errno::EOPNOTSUPP,
        97 => Errno::EAFNOSUPPORT,
        98 => Errno::EADDRINUSE,
        99 => Errno::EADDRNOTAVAIL,
        100 => Errno::ENETDOWN,
        101 => Errno::ENETUNREACH,
        103 => Errno::ECONNABORTED,
        104 => Errno::ECONNRESET,
        105 => Errno::ENOBUFS,
        106 => Errno::EISCONN,
        107 => Errno::ENOTCONN,
        110 => Errno::ETIMEDOUT,
        111 => Errno::ECONNREFUSED,
        113 => Errno::EHOSTUNREACH,
        114 => Errno::EALREADY,
        115 => Errno::EINPROGRESS,
        _ => Errno::EIO,
    }
}

/// Makes host network call `nr`.
fn call(nr: Hypercall, a: [u64; 5]) -> Result<u64, Errno> {
    result(crate::hcall::net(nr, a))
}

/// The guest-physical address of a kernel buffer (`None`: outside the direct map).
fn gpa_of(b: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(b.as_ptr() as u64, b.len() as u64)
}

/// Runs `op` with a host-visible copy of `buf` when `buf` itself is not in the direct map.
fn with_buf<R>(
    buf: &mut [u8],
    op: impl FnOnce(u64, &mut [u8]) -> Result<R, Errno>,
) -> Result<R, Errno> {
    if buf.is_empty() {
        // Nothing to move: the host checks an empty range at 0.
        return op(0, buf);
    }
    if let Some(g) = gpa_of(buf) {
        return op(g, buf);
    }
    let mut b = Vec::new();
    b.try_reserve_exact(buf.len()).map_err(|_| Errno::ENOMEM)?;
    b.extend_from_slice(buf);
    let g = gpa_of(&b).ok_or(Errno::EIO)?;
    let r = op(g, &mut b);
    buf.copy_from_slice(&b);
    r
}

/// A host address record for `ep` (`family` of the guest socket).
fn net_addr(family: u16, ep: &Ep) -> NetAddr {
    let mut addr = [0; 16];
    let fam = if family == af::AF_INET {
        addr[..4].copy_from_slice(&ip::as_v4(&ep.ip).unwrap_or([0; 4]));
        2
    } else {
        addr = ep.ip;
        10
    };
    NetAddr {
        family: fam,
        port: ep.port,
        scope_id: 0,
        addr,
    }
}

/// The address of a host record (`None`: malformed).
fn ep_of(a: &NetAddr) -> Option<Ep> {
    match a.family {
        2 => Some(Ep::new(
            ip::v4([a.addr[0], a.addr[1], a.addr[2], a.addr[3]]),
            a.port,
        )),
        10 => Some(Ep::new(a.addr, a.port)),
        _ => None,
    }
}

/// A call with an address record in (`addr`) at argument `at`.
fn call_addr_in(nr: Hypercall, mut a: [u64; 5], at: usize, addr: &NetAddr) -> Result<u64, Errno> {
    let mut rec = [0u8; 24];
    rec.copy_from_slice(addr.as_bytes());
    with_buf(&mut rec, |g, _| {
        a[at] = g;
        call(nr, a)
    })
}

/// A call that writes an address record at argument `at` (and a buffer first, if any).
fn call_addr_out(nr: Hypercall, mut a: [u64; 5], at: usize) -> Result<(u64, Option<Ep>), Errno> {
    let mut rec = [0u8; 24];
    let v = with_buf(&mut rec, |g, _| {
        a[at] = g;
        call(nr, a)
    })?;
    let got = NetAddr::read_from_bytes(&rec)
        .ok()
        .filter(|r| r.family != 0);
    Ok((v, got.as_ref().and_then(ep_of)))
}

/// A host socket, by handle.
pub(crate) struct HostSock {
    pub(crate) h: u64,
    pub(crate) family: u16,
}

/// `socket()` in host mode: `None` when the host has no networking for this tenant.
pub(crate) fn socket(family: u16, stream: bool) -> Result<Option<HostSock>, Errno> {
    if MODE.load(Ordering::Acquire) == NONE {
        return Ok(None);
    }
    let ty = if stream { 1 } else { 2 };
    let ret = crate::hcall::net(Hypercall::NetSocket, [u64::from(family), ty, 0, 0, 0]);
    if ret == HcError::UnknownCall.to_ret() {
        MODE.store(NONE, Ordering::Release);
        return Ok(None);
    }
    MODE.store(HOST, Ordering::Release);
    let h = result(ret)?;
    Ok(Some(HostSock { h, family }))
}

/// Runs `op` until it does not say "would block", waiting for the host's `NET` events.
pub(crate) fn blocking<T>(
    nonblock: bool,
    mut op: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    loop {
        let seq = NET_SEQ.load(Ordering::Acquire);
        match op() {
            Err(Errno::EAGAIN) => {}
            r => return r,
        }
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        super::WAITERS.wait_until(|| NET_SEQ.load(Ordering::Acquire) != seq || signal::pending());
    }
}

impl HostSock {
    pub(crate) fn bind(&self, ep: &Ep) -> Result<(), Errno> {
        call_addr_in(
            Hypercall::NetBind,
            [self.h, 0, 0, 0, 0],
            1,
            &net_addr(self.family, ep),
        )
        .map(drop)
    }

    pub(crate) fn listen(&self, backlog: u32) -> Result<(), Errno> {
        call(Hypercall::NetListen, [self.h, u64::from(backlog), 0, 0, 0]).map(drop)
    }

    /// `connect`: a stream waits for the handshake unless `nonblock` (`EINPROGRESS`).
    pub(crate) fn connect(&self, ep: &Ep, nonblock: bool) -> Result<(), Errno> {
        match call_addr_in(
            Hypercall::NetConnect,
            [self.h, 0, 0, 0, 0],
            1,
            &net_addr(self.family, ep),
        ) {
            Err(Errno::EINPROGRESS) if !nonblock => {}
            r => return r.map(drop),
        }
        blocking(false, || {
            if self.poll(0x4) & (0x4 | 0x8 | 0x10) == 0 {
                return Err(Errno::EAGAIN);
            }
            Ok(())
        })?;
        match self.getopt(1, 4)? {
            0 => Ok(()),
            e => Err(errno(e)),
        }
    }

    pub(crate) fn accept(&self, nonblock: bool) -> Result<HostSock, Errno> {
        let (h, _) = blocking(nonblock, || {
            call_addr_out(Hypercall::NetAccept, [self.h, 0, 0, 0, 0], 1)
        })?;
        Ok(HostSock {
            h,
            family: self.family,
        })
    }

    /// One send (at most [`IO_MAX`] bytes).
    pub(crate) fn send(
        &self,
        data: &[u8],
        to: Option<&Ep>,
        nonblock: bool,
    ) -> Result<usize, Errno> {
        let len = data.len().min(IO_MAX as usize);
        let mut copy = Vec::new();
        copy.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
        copy.extend_from_slice(&data[..len]);
        let g = if len == 0 {
            0
        } else {
            gpa_of(&copy).ok_or(Errno::EIO)?
        };
        let n = blocking(nonblock, || match to {
            None => call(Hypercall::NetSend, [self.h, g, len as u64, 0, 0]),
            Some(ep) => call_addr_in(
                Hypercall::NetSend,
                [self.h, g, len as u64, 0, 0],
                3,
                &net_addr(self.family, ep),
            ),
        })?;
        Ok((n as usize).min(len))
    }

    /// One receive: the bytes and the sender.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
        peek: bool,
        nonblock: bool,
    ) -> Result<(usize, Option<Ep>), Errno> {
        let len = buf.len().min(IO_MAX as usize);
        let flags = u64::from(peek);
        blocking(nonblock, || {
            with_buf(&mut buf[..len], |g, _| {
                let (n, from) =
                    call_addr_out(Hypercall::NetRecv, [self.h, g, len as u64, 0, flags], 3)?;
                Ok(((n as usize).min(len), from))
            })
        })
    }

    pub(crate) fn shutdown(&self, how: u32) -> Result<(), Errno> {
        call(Hypercall::NetShutdown, [self.h, u64::from(how), 0, 0, 0]).map(drop)
    }

    /// The `poll` events now (`POLLIN` 1, `POLLOUT` 4, `POLLERR` 8, `POLLHUP` 0x10); the host
    /// raises `NET` when one of `events` becomes ready.
    pub(crate) fn poll(&self, events: u16) -> u16 {
        call(
            Hypercall::NetPoll,
            [self.h, u64::from(events | 0x1 | 0x4), 0, 0, 0],
        )
        .map_or(0x8, |v| v as u16)
    }

    pub(crate) fn name(&self, peer: bool) -> Result<Ep, Errno> {
        let (_, ep) = call_addr_out(Hypercall::NetName, [self.h, u64::from(peer), 0, 0, 0], 2)?;
        ep.ok_or(Errno::EINVAL)
    }

    pub(crate) fn setopt(&self, level: i32, name: i32, v: i32) -> Result<(), Errno> {
        call(
            Hypercall::NetSetOpt,
            [self.h, level as u64, name as u64, v as u32 as u64, 0],
        )
        .map(drop)
    }

    pub(crate) fn getopt(&self, level: i32, name: i32) -> Result<i32, Errno> {
        call(
            Hypercall::NetGetOpt,
            [self.h, level as u64, name as u64, 0, 0],
        )
        .map(|v| v as u32 as i32)
    }
}

impl HostSock {
    /// The host socket `h` a hand-over record names (an adopter's): the host kept it
    /// across the switch.
    pub(crate) fn adopted(h: u64, family: u16) -> Self {
        MODE.store(HOST, Ordering::Release);
        Self { h, family }
    }
}

impl Drop for HostSock {
    fn drop(&mut self) {
        // Not while an adoption may still give up: the socket is the next adopter's.
        if crate::linux::handover::host_objects_are_ours() {
            let _ = call(Hypercall::NetClose, [self.h, 0, 0, 0, 0]);
        }
    }
}

/// True once the pump has been started.
static PUMP: spin::Once<()> = spin::Once::new();

/// Starts the thread that takes `--publish` connections (once; at the first `listen`).
pub(crate) fn start_publish_pump() {
    PUMP.call_once(|| {
        let _ = crate::sched::thread::spawn("net-publish", None, publish_pump);
    });
}

/// Takes each published connection and relays it to the guest listener it is for
/// ([`super::relay`]); ends when the host has no `--publish` (`UnknownCall`). Taking one
/// is a kernel step (`handover::kernel_step`): none is taken while a record is written,
/// and each one taken is a relay of the record.
fn publish_pump() {
    loop {
        let seq = NET_SEQ.load(Ordering::Acquire);
        let r = {
            let Some(_step) = crate::linux::handover::kernel_step() else {
                continue;
            };
            let mut rec = [0u8; 32];
            let r = with_buf(&mut rec, |g, _| {
                call(Hypercall::NetPublished, [g, 0, 0, 0, 0])
            });
            if let Ok(h) = r {
                let hs = HostSock {
                    h,
                    family: af::AF_INET,
                };
                if let Ok(p) = NetPublish::read_from_bytes(&rec) {
                    super::relay::start(hs, p.guest_port, p.proto == PUBLISH_UDP);
                }
            }
            r
        };
        match r {
            Ok(_) => {}
            Err(Errno::EAGAIN) => {
                super::WAITERS.wait_until(|| NET_SEQ.load(Ordering::Acquire) != seq);
            }
            Err(_) => return,
        }
    }
}

/// The current `NET` event count (relays wait for it or a loopback change).
pub(crate) fn seq() -> u64 {
    NET_SEQ.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::net::errno_ret;

    #[test]
    fn host_results_become_linux_errors() {
        assert_eq!(result(5), Ok(5));
        assert_eq!(result(errno_ret(111)), Err(Errno::ECONNREFUSED));
        assert_eq!(result(errno_ret(115)), Err(Errno::EINPROGRESS));
        assert_eq!(result(errno_ret(4000)), Err(Errno::EIO));
        assert_eq!(result(HcError::Busy.to_ret()), Err(Errno::EAGAIN));
        assert_eq!(
            result(HcError::UnknownCall.to_ret()),
            Err(Errno::ENETUNREACH)
        );
        assert_eq!(result(HcError::NoResources.to_ret()), Err(Errno::ENOBUFS));
        assert_eq!(result(-77), Err(Errno::EINVAL));
    }

    #[test]
    fn addresses_cross_in_the_guest_sockets_family() {
        let v4 = Ep::new(ip::LOOPBACK4, 80);
        let rec = net_addr(af::AF_INET, &v4);
        assert_eq!(
            (rec.family, rec.port, &rec.addr[..4]),
            (2, 80, &[127, 0, 0, 1][..])
        );
        assert_eq!(ep_of(&rec), Some(v4));
        // An AF_INET6 socket sends mapped addresses as IPv6 (the host maps them back).
        let rec6 = net_addr(af::AF_INET6, &v4);
        assert_eq!((rec6.family, rec6.addr), (10, ip::LOOPBACK4));
        assert_eq!(ep_of(&NetAddr::default()), None);
    }
}
