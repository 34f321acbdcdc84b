//! Host networking (`pvmux run --net host`, `--publish`): host sockets the host runtime opens
//! and polices for a guest (the gVisor *hostinet* model: the sandbox processes keep no
//! socket system call; the host does them on the guest's behalf), hypercalls 11..=24
//! (docs/ABI.md §net).
//!
//! A socket is named by a **handle** (≥ 1) the host gave. Addresses cross as a [`NetAddr`]
//! at a guest-physical address. Results: a value ≥ 0; [`crate::HcError`] for a bad call
//! (unknown handle or malformed argument: `InvalidArgument`; a range outside guest memory:
//! `BadAddress`; a tenant without host networking: `UnknownCall`; the per-tenant socket
//! limit: `NoResources`); `Busy` when the call would block — the host then watches the
//! socket and raises `pending::NET` once it may be ready; and the host socket's own error as
//! `-(ERRNO_BASE + errno)` ([`errno_ret`], [`ret_errno`]), with Linux's numbers.
//!
//! * `NetSocket(domain, type) -> handle`: `domain` `AF_INET` (2) or `AF_INET6` (10), `type`
//!   `SOCK_STREAM` (1) or `SOCK_DGRAM` (2) — TCP or UDP only, never raw.
//! * `NetBind(h, addr_gpa)`, `NetListen(h, backlog)`.
//! * `NetAccept(h, addr_gpa) -> handle`: the peer's address written at `addr_gpa` (0: not).
//! * `NetConnect(h, addr_gpa) -> 0`: `EINPROGRESS` while a stream connects; completion is
//!   `NetPoll` writable and `NetGetOpt(SO_ERROR)`.
//! * `NetSend(h, buf_gpa, len, addr_gpa) -> bytes` (at most [`IO_MAX`]; `addr_gpa` 0: the
//!   connected peer).
//! * `NetRecv(h, buf_gpa, len, addr_gpa, flags) -> bytes`: `flags` [`recv::PEEK`]; the
//!   sender's address written at `addr_gpa` (0: not).
//! * `NetShutdown(h, how)`, `NetClose(h)`.
//! * `NetPoll(h, events) -> revents` (`POLLIN` 1, `POLLOUT` 4, `POLLERR` 8, `POLLHUP` 0x10):
//!   the host watches those of `events` that are not ready (unless the socket has an error or
//!   hung up) and raises `pending::NET` once one is.
//! * `NetName(h, peer, addr_gpa)`: the local (`peer` 0) or peer (1) address.
//! * `NetSetOpt(h, level, name, value)`, `NetGetOpt(h, level, name) -> value`: the integer
//!   options of [`INT_OPTS`] only.
//! * `NetPublished(rec_gpa) -> handle`: the next connection a `--publish` listener accepted,
//!   for the guest to hand to its listener; its [`NetPublish`] record written at `rec_gpa`.
//!   `Busy` when none (the host raises `pending::NET` when one arrives). For a `/udp` rule
//!   the handle is a **flow** (`proto` 17): the datagrams of one host client, which
//!   `NetRecv` gives one at a time (the sender's address: the client) and `NetSend` (no
//!   destination) sends back to the client from the published socket; idle for
//!   [`UDP_FLOW_IDLE_SECS`], a flow ends (`NetRecv`: `ETIMEDOUT`) and the next datagram of
//!   that client opens a new one. At most [`MAX_UDP_FLOWS`] live flows and
//!   [`MAX_UDP_QUEUED`] queued datagrams per tenant ([`MAX_UDP_FLOW_QUEUED`] per flow): more
//!   are dropped, as a full socket buffer drops them.

use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Socket errors are returned as `-(ERRNO_BASE + errno)`.
pub const ERRNO_BASE: i64 = 4096;
/// Largest `NetSend`/`NetRecv` transfer (longer ones are short).
pub const IO_MAX: u64 = 256 * 1024;
/// The options of [`INT_OPTS`] that `NetSetOpt` refuses (read only).
pub const READ_ONLY_OPTS: [(i32, i32); 2] = [(1, 4), (1, 30)];
/// Default limit of host sockets one tenant may hold.
pub const DEFAULT_MAX_SOCKETS: usize = 256;
/// `--publish .../udp`: most live flows (host clients) per tenant.
pub const MAX_UDP_FLOWS: usize = 64;
/// `--publish .../udp`: most datagrams queued for the guest per tenant.
pub const MAX_UDP_QUEUED: usize = 256;
/// `--publish .../udp`: most datagrams queued for one flow.
pub const MAX_UDP_FLOW_QUEUED: usize = 64;
/// `--publish .../udp`: a flow with no datagram either way for this long ends.
pub const UDP_FLOW_IDLE_SECS: u64 = 30;
/// `NetPublish::proto` of a TCP connection (`IPPROTO_TCP`).
pub const PUBLISH_TCP: u8 = 6;
/// `NetPublish::proto` of a UDP flow (`IPPROTO_UDP`).
pub const PUBLISH_UDP: u8 = 17;

/// The return value for socket error `errno`.
pub const fn errno_ret(errno: i32) -> i64 {
    -(ERRNO_BASE + errno as i64)
}

/// The socket error of a return value, if it is one.
pub const fn ret_errno(ret: i64) -> Option<i32> {
    if ret < -ERRNO_BASE && ret > -ERRNO_BASE - 4096 {
        Some((-ret - ERRNO_BASE) as i32)
    } else {
        None
    }
}

/// `NetRecv` flags.
pub mod recv {
    /// Leave the data queued (`MSG_PEEK`).
    pub const PEEK: u64 = 1;
}

/// `(level, name)` of the integer options `NetSetOpt`/`NetGetOpt` pass to the host socket
/// (`SO_ERROR` and `SO_ACCEPTCONN` get only): `SO_REUSEADDR`, `SO_ERROR`, `SO_BROADCAST`,
/// `SO_SNDBUF`, `SO_RCVBUF`, `SO_KEEPALIVE`, `SO_REUSEPORT`, `SO_ACCEPTCONN`, `TCP_NODELAY`,
/// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`, `IPV6_V6ONLY`.
pub const INT_OPTS: [(i32, i32); 13] = [
    (1, 2),
    (1, 4),
    (1, 6),
    (1, 7),
    (1, 8),
    (1, 9),
    (1, 15),
    (1, 30),
    (6, 1),
    (6, 4),
    (6, 5),
    (6, 6),
    (41, 26),
];

/// An internet address and port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetAddr {
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// The port, host byte order.
    pub port: u16,
    /// `sin6_scope_id` (0 for IPv4).
    pub scope_id: u32,
    /// The address: IPv6, or IPv4 in the first 4 bytes (the rest 0).
    pub addr: [u8; 16],
}

/// `NetPublished`'s record: which guest port a published connection is for.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetPublish {
    /// The guest port (`-p HOSTPORT:GUESTPORT`).
    pub guest_port: u16,
    /// [`PUBLISH_TCP`] (a connection) or [`PUBLISH_UDP`] (a flow).
    pub proto: u8,
    /// 0.
    pub reserved: [u8; 5],
    /// The connecting (or sending) client on the host side.
    pub peer: NetAddr,
}

const _: () = assert!(size_of::<NetAddr>() == 24);
const _: () = assert!(size_of::<NetPublish>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_returns_round_trip_and_stay_clear_of_hc_errors() {
        assert_eq!(ret_errno(errno_ret(111)), Some(111));
        assert_eq!(ret_errno(errno_ret(1)), Some(1));
        for e in -6..=0 {
            assert_eq!(ret_errno(e), None);
        }
        assert_eq!(ret_errno(-ERRNO_BASE), None);
    }
}
