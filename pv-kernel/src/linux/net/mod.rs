//! Sockets: the system calls (`socket`, `bind`, `sendmsg`, ...) decoded once here, and the
//! families behind one trait, [`Socket`]:
//!
//! * [`unix`] `AF_UNIX` (stream, datagram, seqpacket; path and abstract names; passing
//!   descriptors and credentials),
//! * [`inet`] `AF_INET`/`AF_INET6` (TCP and UDP on the guest's loopback; with `--net host`,
//!   host sockets the host runtime opens for the guest),
//! * [`netlink`] `AF_NETLINK`'s `NETLINK_ROUTE` (the guest's devices and addresses).
//!
//! A socket is an open file ([`SocketFile`], a [`FileObject`]) so `read`, `write`, `poll`,
//! `epoll`, `fstat`, `close` and `dup` work on it like on any descriptor. The generic layer
//! ([`syscalls`]) copies user memory (addresses, `msghdr`s, iovecs, control messages) into
//! kernel values, so a family sees only kernel buffers and typed [`Control`] messages: it never
//! touches user memory or descriptor tables.

#![forbid(unsafe_code)]
// The families (unix, inet) are being written (issue 11): remove once they use all of this.
#![allow(dead_code)]

pub(crate) mod addr;
pub(crate) mod device;
pub(crate) mod ifreq;
pub(crate) mod inet;
pub(crate) mod msg;
pub(crate) mod netlink;
pub(crate) mod proc_net;
pub(crate) mod syscalls;
pub(crate) mod unix;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use super::files::file::{KStat, OpenFile};
use super::files::object::{anon_ino, anon_stat, FileObject};
use crate::fs::Errno;
use crate::linux::SysResult;

pub(crate) use syscalls::syscall;

/// Address families.
pub(crate) mod af {
    pub(crate) const AF_UNIX: u16 = 1;
    pub(crate) const AF_INET: u16 = 2;
    pub(crate) const AF_INET6: u16 = 10;
    pub(crate) const AF_NETLINK: u16 = 16;
}

/// `SOCK_*` type flags (besides the type itself).
pub(crate) const SOCK_NONBLOCK: u32 = 0o4000;
/// Close-on-exec on the new descriptor.
pub(crate) const SOCK_CLOEXEC: u32 = 0o2000000;

/// A socket's type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SockType {
    /// `SOCK_STREAM`: a byte stream.
    Stream,
    /// `SOCK_DGRAM`: datagrams.
    Dgram,
    /// `SOCK_SEQPACKET`: reliable records.
    SeqPacket,
    /// `SOCK_RAW` (netlink only).
    Raw,
}

impl SockType {
    /// The type from `socket`'s argument with the flag bits removed (`EINVAL` for others;
    /// `SOCK_RAW` and `SOCK_RDM` are `ESOCKTNOSUPPORT`, as a Linux without them).
    pub(crate) fn from_raw(t: u32) -> Result<Self, Errno> {
        match t {
            1 => Ok(Self::Stream),
            2 => Ok(Self::Dgram),
            5 => Ok(Self::SeqPacket),
            3 | 4 | 10 => Err(Errno::ESOCKTNOSUPPORT),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The Linux value (`SO_TYPE`).
    pub(crate) const fn raw(self) -> u32 {
        match self {
            Self::Stream => 1,
            Self::Dgram => 2,
            Self::SeqPacket => 5,
            Self::Raw => 3,
        }
    }
}

/// `MSG_*` flags.
pub(crate) mod msgflag {
    pub(crate) const MSG_OOB: u32 = 0x1;
    pub(crate) const MSG_PEEK: u32 = 0x2;
    pub(crate) const MSG_DONTROUTE: u32 = 0x4;
    pub(crate) const MSG_CTRUNC: u32 = 0x8;
    pub(crate) const MSG_TRUNC: u32 = 0x20;
    pub(crate) const MSG_DONTWAIT: u32 = 0x40;
    pub(crate) const MSG_EOR: u32 = 0x80;
    pub(crate) const MSG_WAITALL: u32 = 0x100;
    pub(crate) const MSG_NOSIGNAL: u32 = 0x4000;
    pub(crate) const MSG_MORE: u32 = 0x8000;
    pub(crate) const MSG_CMSG_CLOEXEC: u32 = 0x4000_0000;
}

/// A control (ancillary) message, decoded: descriptors are open files, not numbers.
pub(crate) enum Control {
    /// `SCM_RIGHTS`: open files passed with the message.
    Rights(Vec<Arc<OpenFile>>),
    /// `SCM_CREDENTIALS`: the sender's (checked) credentials.
    Credentials {
        /// Process id.
        pid: i32,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// Anything else, passed as it is (e.g. `IP_PKTINFO` on receive).
    Raw {
        /// `cmsg_level`.
        level: i32,
        /// `cmsg_type`.
        ty: i32,
        /// The payload.
        data: Vec<u8>,
    },
}

/// What one receive returned.
pub(crate) struct Received {
    /// Bytes placed in the buffer.
    pub(crate) len: usize,
    /// The message's real length (datagrams: more than `len` when truncated; `MSG_TRUNC`
    /// makes `recv` return it).
    pub(crate) full_len: usize,
    /// The sender's address (datagrams; `None`: none to report).
    pub(crate) from: Option<Vec<u8>>,
    /// Control messages that came with the data.
    pub(crate) control: Vec<Control>,
    /// Flags for `msg_flags` (`MSG_TRUNC`, `MSG_EOR`, ...).
    pub(crate) flags: u32,
}

impl Received {
    /// `n` bytes of stream data, nothing else.
    pub(crate) fn bytes(n: usize) -> Self {
        Self {
            len: n,
            full_len: n,
            from: None,
            control: Vec::new(),
            flags: 0,
        }
    }
}

/// One socket of some family. Methods get kernel values only (the generic layer copied
/// them from user memory); blocking ones get the open file for its `O_NONBLOCK` flag and
/// treat `MSG_DONTWAIT` the same, return `EAGAIN` instead of blocking, and `EINTR` when a
/// signal is pending (see [`crate::linux::files::object`]).
pub(crate) trait Socket: Send + Sync + 'static {
    /// `AF_*`.
    fn family(&self) -> u16;
    /// Its type.
    fn sock_type(&self) -> SockType;
    /// `SO_PROTOCOL`.
    fn protocol(&self) -> u32 {
        0
    }
    /// `bind` to the address `addr` (a raw `sockaddr` of at most 128 bytes).
    fn bind(&self, addr: &[u8]) -> Result<(), Errno>;
    /// `connect` to `addr` (`EINPROGRESS` for a non-blocking stream connect as Linux).
    fn connect(&self, f: &OpenFile, addr: &[u8]) -> Result<(), Errno>;
    /// `listen` with `backlog` (already clamped to `0..=4096`).
    fn listen(&self, backlog: u32) -> Result<(), Errno> {
        let _ = backlog;
        Err(Errno::EOPNOTSUPP)
    }
    /// `accept`: the next connection.
    fn accept(&self, f: &OpenFile) -> Result<Arc<dyn Socket>, Errno> {
        let _ = f;
        Err(Errno::EOPNOTSUPP)
    }
    /// Sends `data` (to `to` for unconnected datagrams) with `control` and `MSG_*` `flags`;
    /// returns the bytes sent (a stream may send less; the generic layer loops). `EPIPE`
    /// after shutdown (the generic layer raises `SIGPIPE` unless `MSG_NOSIGNAL`).
    fn send(
        &self,
        f: &OpenFile,
        data: &[u8],
        to: Option<&[u8]>,
        control: Vec<Control>,
        flags: u32,
    ) -> Result<usize, Errno>;
    /// Receives into `buf` with `MSG_*` `flags` (`MSG_PEEK`, `MSG_WAITALL` for streams is the
    /// generic layer's loop).
    fn recv(&self, f: &OpenFile, buf: &mut [u8], flags: u32) -> Result<Received, Errno>;
    /// `shutdown(how)`: 0 reading, 1 writing, 2 both.
    fn shutdown(&self, how: u32) -> Result<(), Errno>;
    /// `getsockname`: the raw local address.
    fn local_addr(&self) -> Result<Vec<u8>, Errno>;
    /// `getpeername`: the raw peer address (`ENOTCONN` if none).
    fn peer_addr(&self) -> Result<Vec<u8>, Errno>;
    /// `setsockopt` for options the generic layer does not answer.
    fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno>;
    /// `getsockopt` for options the generic layer does not answer: the value's bytes.
    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno>;
    /// The `poll` events it has now.
    fn poll(&self) -> u16;
    /// Bytes ready to read (`FIONREAD`/`SIOCINQ`).
    fn available(&self) -> usize {
        0
    }
    /// Bytes sent and not yet read or acknowledged (`SIOCOUTQ`); `None`: `ENOTTY`.
    fn unsent(&self) -> Option<usize> {
        None
    }
    /// Told the inode number of the open file it has become (`socket:[INO]`), in the
    /// process that made the file (for `/proc/net` listings).
    fn opened(&self, ino: u64) {
        let _ = ino;
    }
    /// The object itself, for family-internal downcasts (e.g. a `connect` to a peer).
    fn as_any(&self) -> &dyn Any;
}

/// An `int` option value (`setsockopt`): its first 4 bytes, `EINVAL` if shorter.
pub(crate) fn int_value(val: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = val
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    Ok(i32::from_le_bytes(b))
}

/// Two connected sockets (`socketpair`).
pub(crate) type SocketPair = (Arc<dyn Socket>, Arc<dyn Socket>);

/// A socket as an open file: what descriptors refer to.
pub(crate) struct SocketFile {
    /// The socket.
    pub(crate) sock: Arc<dyn Socket>,
    /// `st_ino` (`socket:[INO]`).
    pub(crate) ino: u64,
}

impl SocketFile {
    /// Wraps `sock` as a new open file description with status `flags` (`O_NONBLOCK`).
    pub(crate) fn open(sock: Arc<dyn Socket>, flags: u32) -> Arc<OpenFile> {
        let ino = anon_ino();
        sock.opened(ino);
        let obj = Arc::new(Self { sock, ino });
        super::files::object::open_object(obj, crate::fs::ramfs::oflag::O_RDWR | flags)
    }
}

/// `SIOCOUTQ` (`TIOCOUTQ`): bytes not yet taken by the receiver.
const SIOCOUTQ: u64 = 0x5411;

/// `S_IFSOCK`.
pub(crate) const S_IFSOCK: u32 = 0o140_000;

impl FileObject for SocketFile {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.sock.recv(f, buf, 0).map(|r| r.len)
    }

    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        syscalls::send_or_sigpipe(&*self.sock, f, data, None, Vec::new(), 0)
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        self.sock.poll()
    }

    fn available(&self) -> Option<usize> {
        Some(self.sock.available())
    }

    fn ioctl(&self, _f: &OpenFile, cmd: u64, arg: u64) -> SysResult {
        if let Some(r) = ifreq::ioctl(self.sock.family(), cmd, arg) {
            return r;
        }
        match cmd {
            SIOCOUTQ => {
                let n = self.sock.unsent().ok_or(Errno::ENOTTY)?;
                let n = n.min(i32::MAX as usize) as i32;
                crate::linux::uaccess::write_val(arg, &n)?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn stat(&self) -> KStat {
        anon_stat(S_IFSOCK | 0o777, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        alloc::format!("socket:[{}]", self.ino).into_bytes()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The socket behind descriptor `fd` of the current process: `EBADF`, or `ENOTSOCK` for
/// another kind of file.
pub(crate) fn socket_of(fd: u64) -> Result<(Arc<OpenFile>, Arc<dyn Socket>), Errno> {
    let f = super::files::fd_file(fd as i32)?;
    let s = super::files::object::downcast::<SocketFile>(&f)
        .ok_or(Errno::ENOTSOCK)?
        .sock
        .clone();
    Ok((f, s))
}

/// Creates a socket of `family` (`socket(2)` after flag decoding).
fn create(family: u16, ty: SockType, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    match family {
        af::AF_UNIX => unix::create(ty, protocol),
        af::AF_INET | af::AF_INET6 => inet::create(family, ty, protocol),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// Installs `sock` as a new descriptor with `SOCK_*` flags.
fn install(sock: Arc<dyn Socket>, flags: u32) -> SysResult {
    let file = SocketFile::open(sock, flags & SOCK_NONBLOCK);
    super::files::install(file, flags & SOCK_CLOEXEC != 0)
}
