//! The socket system calls: arguments and user memory decoded here, then the family's
//! [`Socket`] method called with kernel values.

use alloc::vec::Vec;

use super::addr::{read_sockaddr, write_sockaddr};
use super::msg::{self, MsgHdr, MSGHDR_SIZE};
use super::msgflag::*;
use super::{
    af, create, install, socket_of, Control, SockType, Socket, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use crate::fs::Errno;
use crate::linux::abi::nr;
use crate::linux::files::file::{kbuf, OpenFile, UserBuf};
use crate::linux::signal;
use crate::linux::uaccess::{copy_from_user, read_val, write_val};
use crate::linux::SysResult;

/// Bytes copied between user memory and a stream socket per step.
const STREAM_CHUNK: usize = 64 * 1024;
/// Largest datagram or record accepted (`EMSGSIZE` above): Linux's default `wmem_max`.
const MAX_DATAGRAM: usize = 212_992;
/// `SOMAXCONN`: the backlog ceiling.
const SOMAXCONN: u32 = 4096;
/// `SOL_SOCKET` options answered here for every family.
const SO_TYPE: i32 = 3;
const SO_PROTOCOL: i32 = 38;
const SO_DOMAIN: i32 = 39;

/// Handles system call `n` if it is a socket call; `None` otherwise.
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> Option<SysResult> {
    Some(match n {
        nr::SOCKET => sys_socket(a[0], a[1], a[2]),
        nr::SOCKETPAIR => sys_socketpair(a[0], a[1], a[2], a[3]),
        nr::BIND => sys_bind(a[0], a[1], a[2]),
        nr::CONNECT => sys_connect(a[0], a[1], a[2]),
        nr::LISTEN => sys_listen(a[0], a[1]),
        nr::ACCEPT => sys_accept4(a[0], a[1], a[2], 0),
        nr::ACCEPT4 => sys_accept4(a[0], a[1], a[2], a[3]),
        nr::SENDTO => sys_sendto(a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::RECVFROM => sys_recvfrom(a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::SENDMSG => sys_sendmsg(a[0], a[1], a[2]),
        nr::RECVMSG => sys_recvmsg(a[0], a[1], a[2]),
        nr::SENDMMSG => sys_sendmmsg(a[0], a[1], a[2], a[3]),
        nr::RECVMMSG => sys_recvmmsg(a[0], a[1], a[2], a[3]),
        nr::SHUTDOWN => sys_shutdown(a[0], a[1]),
        nr::GETSOCKNAME => sys_getname(a[0], a[1], a[2], false),
        nr::GETPEERNAME => sys_getname(a[0], a[1], a[2], true),
        nr::SETSOCKOPT => sys_setsockopt(a[0], a[1], a[2], a[3], a[4]),
        nr::GETSOCKOPT => sys_getsockopt(a[0], a[1], a[2], a[3], a[4]),
        _ => return None,
    })
}

/// Splits `socket`'s type argument into the type's number and the `SOCK_*` flags: `EINVAL`
/// for an unknown flag or a type past Linux's `SOCK_MAX`.
fn split_type(t: u64) -> Result<(u32, u32), Errno> {
    let t = u32::try_from(t).map_err(|_| Errno::EINVAL)?;
    let flags = t & !0xf;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 || t & 0xf >= 11 {
        return Err(Errno::EINVAL);
    }
    Ok((t & 0xf, flags))
}

/// Splits `socket`'s type argument into the type and the `SOCK_*` flags.
fn type_and_flags(t: u64) -> Result<(SockType, u32), Errno> {
    let (raw, flags) = split_type(t)?;
    Ok((SockType::from_raw(raw)?, flags))
}

fn family_arg(d: u64) -> Result<u16, Errno> {
    u16::try_from(d).map_err(|_| Errno::EAFNOSUPPORT)
}

/// Linux's order for a family this kernel has no sockets of (`AF_PACKET`, ...): a type out
/// of range or an unknown flag is `EINVAL`, anything else `EAFNOSUPPORT`, whatever the
/// type. (Checking the type first said `ESOCKTNOSUPPORT` for such a family, which libpam
/// did not take for "no audit here" when netlink was one: `su` and `runuser` failed with
/// "System error".)
fn known_family(family: u16, ty: u64) -> Result<(), Errno> {
    if matches!(
        family,
        af::AF_UNIX | af::AF_INET | af::AF_INET6 | af::AF_NETLINK
    ) {
        return Ok(());
    }
    split_type(ty)?;
    Err(Errno::EAFNOSUPPORT)
}

/// `socket(domain, type, protocol)`.
fn sys_socket(domain: u64, ty: u64, protocol: u64) -> SysResult {
    let family = family_arg(domain)?;
    known_family(family, ty)?;
    if family == af::AF_NETLINK {
        // Its own types (`SOCK_RAW`, `SOCK_DGRAM`) and protocols.
        let (raw, flags) = split_type(ty)?;
        return install(super::netlink::create(raw, protocol as u32)?, flags);
    }
    let (ty, flags) = type_and_flags(ty)?;
    let sock = create(family, ty, protocol as u32)?;
    install(sock, flags)
}

/// `socketpair(domain, type, protocol, sv)`.
fn sys_socketpair(domain: u64, ty: u64, protocol: u64, sv: u64) -> SysResult {
    let family = family_arg(domain)?;
    known_family(family, ty)?;
    if family == af::AF_NETLINK {
        // A netlink socket is made, then has no pairs.
        let (raw, _) = split_type(ty)?;
        super::netlink::create(raw, protocol as u32)?;
        return Err(Errno::EOPNOTSUPP);
    }
    let (ty, flags) = type_and_flags(ty)?;
    if family != af::AF_UNIX {
        return Err(match family {
            af::AF_INET | af::AF_INET6 => Errno::EOPNOTSUPP,
            _ => Errno::EAFNOSUPPORT,
        });
    }
    let (s0, s1) = super::unix::pair(ty, protocol as u32)?;
    let fd0 = install(s0, flags)?;
    let fd1 = match install(s1, flags) {
        Ok(fd) => fd,
        Err(e) => {
            close_quietly(fd0);
            return Err(e);
        }
    };
    if let Err(e) = write_val(sv, &[fd0 as i32, fd1 as i32]) {
        close_quietly(fd0);
        close_quietly(fd1);
        return Err(e);
    }
    Ok(0)
}

/// Takes back a descriptor this call installed (its file closes after the table lock).
fn close_quietly(fd: u64) {
    let p = crate::linux::task::current_process();
    let f = p.files.lock().take(fd as i32);
    drop(f);
}

/// `bind(fd, addr, len)`.
fn sys_bind(fd: u64, addr: u64, len: u64) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let a = read_sockaddr(addr, len)?;
    s.bind(&a).map(|()| 0)
}

/// `connect(fd, addr, len)`.
fn sys_connect(fd: u64, addr: u64, len: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let a = read_sockaddr(addr, len)?;
    s.connect(&f, &a).map(|()| 0)
}

/// `listen(fd, backlog)`: a negative or too large backlog is `SOMAXCONN`, as Linux.
fn sys_listen(fd: u64, backlog: u64) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let b = backlog as u32 as i32;
    let b = if b < 0 {
        SOMAXCONN
    } else {
        (b as u32).min(SOMAXCONN)
    };
    s.listen(b).map(|()| 0)
}

/// `accept4(fd, addr, addrlen, flags)`.
fn sys_accept4(fd: u64, addr: u64, lenp: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let (f, s) = socket_of(fd)?;
    let new = s.accept(&f)?;
    let peer = new.peer_addr().unwrap_or_default();
    let nfd = install(new, flags)?;
    if let Err(e) = write_sockaddr(addr, lenp, &peer) {
        close_quietly(nfd);
        return Err(e);
    }
    Ok(nfd)
}

/// True if the call must not block (`O_NONBLOCK` or `MSG_DONTWAIT`).
fn nonblocking(f: &OpenFile, flags: u32) -> bool {
    f.nonblock() || flags & MSG_DONTWAIT != 0
}

/// One family `send`, raising `SIGPIPE` for `EPIPE` unless `MSG_NOSIGNAL`.
pub(crate) fn send_or_sigpipe(
    s: &dyn Socket,
    f: &OpenFile,
    data: &[u8],
    to: Option<&[u8]>,
    control: Vec<Control>,
    flags: u32,
) -> Result<usize, Errno> {
    let r = s.send(f, data, to, control, flags);
    if r == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        signal::raise_current(crate::linux::signal::sig::SIGPIPE);
    }
    r
}

/// Sends the user buffer `ub`: a stream in chunks (blocking until all is sent unless
/// non-blocking or interrupted after a partial send), a datagram or record whole.
fn send_user(
    f: &OpenFile,
    s: &dyn Socket,
    ub: &UserBuf,
    to: Option<&[u8]>,
    control: Vec<Control>,
    flags: u32,
) -> SysResult {
    let total = ub.len();
    if s.sock_type() != SockType::Stream {
        if total > MAX_DATAGRAM {
            return Err(Errno::EMSGSIZE);
        }
        let mut buf = kbuf(total)?;
        ub.copy_in(0, &mut buf)?;
        return send_or_sigpipe(s, f, &buf, to, control, flags).map(|n| n as u64);
    }
    let mut buf = kbuf(total.min(STREAM_CHUNK))?;
    let mut control = Some(control);
    let mut done = 0;
    loop {
        let want = (total - done).min(STREAM_CHUNK);
        ub.copy_in(done, &mut buf[..want])?;
        let ctl = control.take().unwrap_or_default();
        let n = match send_or_sigpipe(s, f, &buf[..want], to, ctl, flags) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if done >= total || nonblocking(f, flags) || signal::pending() {
            break;
        }
    }
    Ok(done as u64)
}

/// What a receive delivered to the user.
struct Delivered {
    /// The return value (bytes, or the real length with `MSG_TRUNC` on a datagram).
    ret: usize,
    from: Option<Vec<u8>>,
    control: Vec<Control>,
    flags: u32,
}

/// Receives into the user buffer `ub`: one family `recv` (streams: repeated for
/// `MSG_WAITALL` until full, end of stream, an error or a signal).
fn recv_user(f: &OpenFile, s: &dyn Socket, ub: &UserBuf, flags: u32) -> Result<Delivered, Errno> {
    let total = ub.len();
    if s.sock_type() != SockType::Stream {
        let mut buf = kbuf(total.min(MAX_DATAGRAM))?;
        let r = s.recv(f, &mut buf, flags)?;
        ub.copy_out(0, &buf[..r.len])?;
        let mut fl = r.flags;
        if r.full_len > r.len {
            fl |= MSG_TRUNC;
        }
        let ret = if flags & MSG_TRUNC != 0 {
            r.full_len
        } else {
            r.len
        };
        return Ok(Delivered {
            ret,
            from: r.from,
            control: r.control,
            flags: fl,
        });
    }
    let mut buf = kbuf(total.min(STREAM_CHUNK))?;
    let mut d = Delivered {
        ret: 0,
        from: None,
        control: Vec::new(),
        flags: 0,
    };
    loop {
        let want = (total - d.ret).min(STREAM_CHUNK);
        let r = match s.recv(f, &mut buf[..want], flags) {
            Ok(r) => r,
            Err(e) if d.ret == 0 => return Err(e),
            Err(_) => break,
        };
        ub.copy_out(d.ret, &buf[..r.len])?;
        d.ret += r.len;
        d.from = d.from.or(r.from);
        d.control.extend(r.control);
        d.flags |= r.flags;
        let more = flags & MSG_WAITALL != 0 && flags & MSG_PEEK == 0;
        if r.len == 0 || d.ret >= total || !more || signal::pending() {
            break;
        }
    }
    Ok(d)
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`.
fn sys_sendto(fd: u64, buf: u64, len: u64, flags: u64, addr: u64, alen: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let to = if addr != 0 {
        Some(read_sockaddr(addr, alen)?)
    } else {
        None
    };
    send_user(
        &f,
        &*s,
        &UserBuf::single(buf, len),
        to.as_deref(),
        Vec::new(),
        flags as u32,
    )
}

/// `recvfrom(fd, buf, len, flags, addr, addrlen)`.
fn sys_recvfrom(fd: u64, buf: u64, len: u64, flags: u64, addr: u64, lenp: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let d = recv_user(&f, &*s, &UserBuf::single(buf, len), flags as u32)?;
    if let Some(from) = &d.from {
        write_sockaddr(addr, lenp, from)?;
    } else if addr != 0 && lenp != 0 {
        write_val(lenp, &0u32)?;
    }
    Ok(d.ret as u64)
}

/// One `sendmsg` of the `msghdr` at `va`.
fn sendmsg_one(f: &OpenFile, s: &dyn Socket, va: u64, flags: u32) -> SysResult {
    let m = MsgHdr::read(va)?;
    let to = if m.name != 0 && m.namelen != 0 {
        Some(read_sockaddr(m.name, u64::from(m.namelen))?)
    } else {
        None
    };
    let ub = UserBuf::iovec(m.iov, m.iovlen)?;
    let control = msg::read_control(m.control, m.controllen)?;
    send_user(f, s, &ub, to.as_deref(), control, flags)
}

/// One `recvmsg` into the `msghdr` at `va`.
fn recvmsg_one(f: &OpenFile, s: &dyn Socket, va: u64, flags: u32) -> SysResult {
    let m = MsgHdr::read(va)?;
    let ub = UserBuf::iovec(m.iov, m.iovlen)?;
    let d = recv_user(f, s, &ub, flags)?;
    let namelen = match (&d.from, m.name) {
        (Some(from), name) if name != 0 => {
            let n = (m.namelen as usize).min(from.len());
            crate::linux::uaccess::copy_to_user(name, &from[..n])?;
            from.len() as u32
        }
        _ => 0,
    };
    let (clen, ctrunc) = msg::write_control(
        m.control,
        m.controllen,
        d.control,
        flags & MSG_CMSG_CLOEXEC != 0,
    )?;
    let out_flags = d.flags | if ctrunc { MSG_CTRUNC } else { 0 };
    msg::write_results(va, namelen, clen, out_flags)?;
    Ok(d.ret as u64)
}

/// `sendmsg(fd, msg, flags)`.
fn sys_sendmsg(fd: u64, va: u64, flags: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    sendmsg_one(&f, &*s, va, flags as u32)
}

/// `recvmsg(fd, msg, flags)`.
fn sys_recvmsg(fd: u64, va: u64, flags: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    recvmsg_one(&f, &*s, va, flags as u32)
}

/// `sizeof(struct mmsghdr)`: a `msghdr` and `msg_len`, padded.
const MMSGHDR_SIZE: u64 = 64;
/// Most messages one `sendmmsg`/`recvmmsg` handles (Linux `UIO_MAXIOV`).
const MAX_MMSG: u64 = 1024;

/// `sendmmsg(fd, vec, vlen, flags)`: stops at the first failure after a success.
fn sys_sendmmsg(fd: u64, vec: u64, vlen: u64, flags: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let mut sent = 0;
    for i in 0..vlen.min(MAX_MMSG) {
        let va = vec + i * MMSGHDR_SIZE;
        match sendmsg_one(&f, &*s, va, flags as u32) {
            Ok(n) => write_val(va + MSGHDR_SIZE, &(n as u32))?,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
        sent += 1;
    }
    Ok(sent)
}

/// `MSG_WAITFORONE` (recvmmsg): non-blocking after the first message.
const MSG_WAITFORONE: u32 = 0x10000;

/// `recvmmsg(fd, vec, vlen, flags, timeout)` (the timeout is checked after each message
/// as Linux; messages are received while they are there).
fn sys_recvmmsg(fd: u64, vec: u64, vlen: u64, flags: u64) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let mut flags = flags as u32;
    let mut got = 0;
    for i in 0..vlen.min(MAX_MMSG) {
        let va = vec + i * MMSGHDR_SIZE;
        match recvmsg_one(&f, &*s, va, flags) {
            Ok(n) => write_val(va + MSGHDR_SIZE, &(n as u32))?,
            Err(e) if got == 0 => return Err(e),
            Err(_) => break,
        }
        got += 1;
        if flags & MSG_WAITFORONE != 0 {
            flags |= MSG_DONTWAIT;
        }
    }
    Ok(got)
}

/// `shutdown(fd, how)`.
fn sys_shutdown(fd: u64, how: u64) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let how = u32::try_from(how)
        .ok()
        .filter(|&h| h <= 2)
        .ok_or(Errno::EINVAL)?;
    s.shutdown(how).map(|()| 0)
}

/// `getsockname` / `getpeername`.
fn sys_getname(fd: u64, addr: u64, lenp: u64, peer: bool) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let a = if peer {
        s.peer_addr()?
    } else {
        s.local_addr()?
    };
    if addr == 0 || lenp == 0 {
        return Err(Errno::EFAULT);
    }
    write_sockaddr(addr, lenp, &a).map(|()| 0)
}

/// Longest option value read or written.
const MAX_OPT: usize = 4096;

/// `setsockopt(fd, level, name, val, len)`.
fn sys_setsockopt(fd: u64, level: u64, name: u64, val: u64, len: u64) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let len = usize::try_from(len as u32 as i32).map_err(|_| Errno::EINVAL)?;
    let mut b = kbuf(len.min(MAX_OPT))?;
    copy_from_user(val, &mut b)?;
    s.setsockopt(level as i32, name as i32, &b).map(|()| 0)
}

/// `getsockopt(fd, level, name, val, lenp)`.
fn sys_getsockopt(fd: u64, level: u64, name: u64, val: u64, lenp: u64) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let room: i32 = read_val(lenp)?;
    let room = usize::try_from(room).map_err(|_| Errno::EINVAL)?;
    let (level, name) = (level as i32, name as i32);
    let v = if level == msg::SOL_SOCKET && matches!(name, SO_TYPE | SO_PROTOCOL | SO_DOMAIN) {
        let n = match name {
            SO_TYPE => s.sock_type().raw(),
            SO_PROTOCOL => s.protocol(),
            _ => u32::from(s.family()),
        };
        n.to_le_bytes().to_vec()
    } else {
        s.getsockopt(level, name)?
    };
    let n = room.min(v.len());
    crate::linux::uaccess::copy_to_user(val, &v[..n])?;
    write_val(lenp, &(n as u32))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_without_sockets_is_eafnosupport_whatever_the_type() {
        for f in [af::AF_UNIX, af::AF_INET, af::AF_INET6, af::AF_NETLINK] {
            assert_eq!(known_family(f, 3), Ok(()));
        }
        // A packet socket, with flags; a family past the last.
        assert_eq!(known_family(17, 10), Err(Errno::EAFNOSUPPORT));
        assert_eq!(
            known_family(17, u64::from(3 | SOCK_CLOEXEC)),
            Err(Errno::EAFNOSUPPORT)
        );
        assert_eq!(known_family(46, 2), Err(Errno::EAFNOSUPPORT));
        // A type out of range or an unknown flag first.
        assert_eq!(known_family(17, 11), Err(Errno::EINVAL));
        assert_eq!(known_family(17, 0x100 | 3), Err(Errno::EINVAL));
        assert_eq!(
            split_type(u64::from(3 | SOCK_NONBLOCK)),
            Ok((3, SOCK_NONBLOCK))
        );
    }
}
