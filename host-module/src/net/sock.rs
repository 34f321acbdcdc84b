//! Host socket system calls for [`super`], on non-blocking sockets (`libc`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use pvmux_hypercalls::net::NetAddr;

/// Why a socket was not created.
pub(super) enum Refused {
    /// Not TCP or UDP over IPv4 or IPv6.
    Invalid,
    /// The host said no.
    Os(io::Error),
}

/// Checks a libc return value.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `socket(domain, type)`: only `AF_INET`/`AF_INET6` with `SOCK_STREAM`/`SOCK_DGRAM`.
pub(super) fn socket(domain: u64, ty: u64) -> Result<OwnedFd, Refused> {
    let domain = match domain {
        2 => libc::AF_INET,
        10 => libc::AF_INET6,
        _ => return Err(Refused::Invalid),
    };
    let ty = match ty {
        1 => libc::SOCK_STREAM,
        2 => libc::SOCK_DGRAM,
        _ => return Err(Refused::Invalid),
    };
    // SAFETY: plain system call; the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    let fd = check(fd).map_err(Refused::Os)?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `sockaddr` of `a`.
fn raw(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v.port().to_be(),
                sin6_flowinfo: v.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v.ip().octets(),
                },
                sin6_scope_id: v.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address in `ss` (`None` for other families).
fn parse(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which fits.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above for sockaddr_in6.
            let s: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(s.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(s.sin6_port),
                s.sin6_flowinfo,
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A guest address as a host one (`None`: not IPv4/IPv6, or non-zero bytes after an IPv4
/// address).
pub(super) fn to_std(a: &NetAddr) -> Option<SocketAddr> {
    match a.family {
        2 => {
            if a.addr[4..] != [0; 12] || a.scope_id != 0 {
                return None;
            }
            let ip = Ipv4Addr::new(a.addr[0], a.addr[1], a.addr[2], a.addr[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), a.port))
        }
        10 => Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(a.addr),
            a.port,
            0,
            a.scope_id,
        ))),
        _ => None,
    }
}

/// A host address for the guest.
pub(super) fn from_std(a: &SocketAddr) -> NetAddr {
    match a {
        SocketAddr::V4(v) => {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&v.ip().octets());
            NetAddr {
                family: 2,
                port: v.port(),
                scope_id: 0,
                addr,
            }
        }
        SocketAddr::V6(v) => NetAddr {
            family: 10,
            port: v.port(),
            scope_id: v.scope_id(),
            addr: v.ip().octets(),
        },
    }
}

pub(super) fn bind(fd: &OwnedFd, a: &SocketAddr) -> io::Result<()> {
    let (ss, len) = raw(a);
    // SAFETY: a valid address of `len` bytes.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

pub(super) fn connect(fd: &OwnedFd, a: &SocketAddr) -> io::Result<()> {
    let (ss, len) = raw(a);
    // SAFETY: a valid address of `len` bytes.
    check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const ss).cast(), len) }).map(drop)
}

pub(super) fn listen(fd: &OwnedFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain system call.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

pub(super) fn accept(fd: &OwnedFd) -> io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the buffer and its length are valid.
    let n = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            (&raw mut ss).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    let n = check(n)?;
    // SAFETY: a fresh descriptor.
    let nfd = unsafe { OwnedFd::from_raw_fd(n) };
    let peer = parse(&ss).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))?;
    Ok((nfd, peer))
}

pub(super) fn send(fd: &OwnedFd, data: &[u8], to: Option<&SocketAddr>) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    let r = match to {
        // SAFETY: the buffer is valid for its length.
        None => unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), flags) },
        Some(a) => {
            let (ss, len) = raw(a);
            // SAFETY: the buffer and address are valid.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    flags,
                    (&raw const ss).cast(),
                    len,
                )
            }
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub(super) fn recv(
    fd: &OwnedFd,
    buf: &mut [u8],
    peek: bool,
) -> io::Result<(usize, Option<SocketAddr>)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: the buffers are valid for their lengths.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&raw mut ss).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r as usize, parse(&ss)))
}

pub(super) fn shutdown(fd: &OwnedFd, how: i32) -> io::Result<()> {
    // SAFETY: plain system call.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// The events of `fd` now.
pub(super) fn poll_now(fd: &OwnedFd, events: i16) -> i16 {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r < 0 {
        0
    } else {
        p.revents
    }
}

fn name(fd: &OwnedFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let f = if peer {
        libc::getpeername
    } else {
        libc::getsockname
    };
    // SAFETY: the buffer and its length are valid.
    check(unsafe { f(fd.as_raw_fd(), (&raw mut ss).cast(), &mut len) })?;
    parse(&ss).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

pub(super) fn local_name(fd: &OwnedFd) -> io::Result<SocketAddr> {
    name(fd, false)
}

pub(super) fn peer_name(fd: &OwnedFd) -> io::Result<SocketAddr> {
    name(fd, true)
}

pub(super) fn setopt(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: a valid int for its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw const v).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub(super) fn getopt(fd: &OwnedFd, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: a valid int and its size.
    check(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&raw mut v).cast(), &mut len) })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_bad_ones_are_refused() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(to_std(&from_std(&a)), Some(a));
        let b: SocketAddr = "[::1]:53".parse().unwrap();
        assert_eq!(to_std(&from_std(&b)), Some(b));
        let mut bad = from_std(&a);
        bad.addr[9] = 1;
        assert_eq!(to_std(&bad), None);
        bad.family = 1;
        assert_eq!(to_std(&bad), None);
        let (ss, _) = raw(&b);
        assert_eq!(parse(&ss), Some(b));
    }

    #[test]
    fn only_tcp_and_udp_sockets() {
        assert!(matches!(socket(2, 3), Err(Refused::Invalid)), "raw");
        assert!(matches!(socket(1, 1), Err(Refused::Invalid)), "unix");
        assert!(matches!(socket(17, 3), Err(Refused::Invalid)), "packet");
        assert!(socket(2, 1).is_ok() && socket(10, 2).is_ok());
    }
}
