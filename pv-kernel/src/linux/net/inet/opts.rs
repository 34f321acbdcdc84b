//! Socket options of an internet socket: the values Linux keeps (`setsockopt` stores them,
//! `getsockopt` reads them back) and the few the loopback acts on (`SO_REUSEADDR`,
//! `SO_REUSEPORT`, `IPV6_V6ONLY`, `SO_LINGER`, the buffer sizes).

use alloc::vec::Vec;

use super::stack::Proto;
use crate::fs::Errno;

/// Option levels.
pub(crate) mod level {
    pub(crate) const SOL_SOCKET: i32 = 1;
    pub(crate) const IPPROTO_IP: i32 = 0;
    pub(crate) const IPPROTO_TCP: i32 = 6;
    pub(crate) const IPPROTO_UDP: i32 = 17;
    pub(crate) const IPPROTO_IPV6: i32 = 41;
}

/// `SOL_SOCKET` option names.
pub(crate) mod so {
    pub(crate) const REUSEADDR: i32 = 2;
    pub(crate) const ERROR: i32 = 4;
    pub(crate) const DONTROUTE: i32 = 5;
    pub(crate) const BROADCAST: i32 = 6;
    pub(crate) const SNDBUF: i32 = 7;
    pub(crate) const RCVBUF: i32 = 8;
    pub(crate) const KEEPALIVE: i32 = 9;
    pub(crate) const OOBINLINE: i32 = 10;
    pub(crate) const PRIORITY: i32 = 12;
    pub(crate) const LINGER: i32 = 13;
    pub(crate) const REUSEPORT: i32 = 15;
    pub(crate) const RCVLOWAT: i32 = 18;
    pub(crate) const SNDLOWAT: i32 = 19;
    pub(crate) const RCVTIMEO: i32 = 20;
    pub(crate) const SNDTIMEO: i32 = 21;
    pub(crate) const TIMESTAMP: i32 = 29;
    pub(crate) const ACCEPTCONN: i32 = 30;
    pub(crate) const SNDBUFFORCE: i32 = 32;
    pub(crate) const RCVBUFFORCE: i32 = 33;
}

/// `IPPROTO_TCP` option names kept as integers.
const TCP_INT_OPTS: [i32; 10] = [
    1,  // TCP_NODELAY
    2,  // TCP_MAXSEG
    3,  // TCP_CORK
    4,  // TCP_KEEPIDLE
    5,  // TCP_KEEPINTVL
    6,  // TCP_KEEPCNT
    9,  // TCP_DEFER_ACCEPT
    12, // TCP_QUICKACK
    18, // TCP_USER_TIMEOUT
    23, // TCP_FASTOPEN
];
/// `IPPROTO_IP` option names kept as integers (`IP_TOS`, `IP_TTL`, `IP_PKTINFO`,
/// `IP_MTU_DISCOVER`, `IP_RECVERR`, `IP_RECVTOS`, `IP_MULTICAST_TTL`, `IP_MULTICAST_LOOP`).
const IP_INT_OPTS: [i32; 8] = [1, 2, 8, 10, 11, 13, 33, 34];
/// `IPPROTO_IPV6` option names kept as integers (`IPV6_UNICAST_HOPS`, `IPV6_MULTICAST_LOOP`,
/// `IPV6_MTU_DISCOVER`, `IPV6_RECVERR`, `IPV6_V6ONLY`, `IPV6_RECVPKTINFO`, `IPV6_TCLASS`).
const IPV6_INT_OPTS: [i32; 7] = [16, 19, 23, 25, 26, 49, 67];
/// `IPV6_V6ONLY`.
pub(crate) const IPV6_V6ONLY: i32 = 26;
/// Integer `SOL_SOCKET` options kept as they are.
const SOCKET_INT_OPTS: [i32; 9] = [
    so::REUSEADDR,
    so::DONTROUTE,
    so::BROADCAST,
    so::KEEPALIVE,
    so::OOBINLINE,
    so::PRIORITY,
    so::REUSEPORT,
    so::RCVLOWAT,
    so::TIMESTAMP,
];

/// The smallest `SO_RCVBUF` (Linux `SOCK_MIN_RCVBUF`, doubled).
const MIN_RCVBUF: u32 = 2304;
/// The smallest `SO_SNDBUF` (Linux `SOCK_MIN_SNDBUF`, doubled).
const MIN_SNDBUF: u32 = 4608;
/// Linux's `rmem_max`/`wmem_max` (a request above is clamped, then doubled).
const BUF_MAX: u32 = 212_992;

/// The options of one socket.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    /// `(level, name)` → integer value for the options kept as they are.
    ints: Vec<(i32, i32, i32)>,
    /// `SO_RCVBUF` as `getsockopt` reports it (already doubled).
    pub(crate) rcvbuf: u32,
    /// `SO_SNDBUF` as reported.
    pub(crate) sndbuf: u32,
    /// `SO_LINGER` (`l_onoff`, `l_linger`).
    pub(crate) linger: (i32, i32),
    /// `SO_RCVTIMEO`/`SO_SNDTIMEO` as stored (`struct timeval`, kept, not acted on).
    timeo: [[u8; 16]; 2],
}

impl Opts {
    /// Linux's defaults for `proto`.
    pub(crate) fn new(proto: Proto) -> Self {
        let (rcvbuf, sndbuf) = match proto {
            Proto::Tcp => (131_072, 16_384),
            Proto::Udp => (BUF_MAX, BUF_MAX),
        };
        Self {
            ints: Vec::new(),
            rcvbuf,
            sndbuf,
            linger: (0, 0),
            timeo: [[0; 16]; 2],
        }
    }

    /// The integer option `(level, name)` (0 when never set).
    pub(crate) fn int(&self, level: i32, name: i32) -> i32 {
        self.ints
            .iter()
            .find(|(l, n, _)| (*l, *n) == (level, name))
            .map_or(0, |e| e.2)
    }

    fn set_int(&mut self, level: i32, name: i32, v: i32) {
        match self
            .ints
            .iter_mut()
            .find(|(l, n, _)| (*l, *n) == (level, name))
        {
            Some(e) => e.2 = v,
            None => self.ints.push((level, name, v)),
        }
    }

    /// `SO_REUSEADDR`.
    pub(crate) fn reuseaddr(&self) -> bool {
        self.int(level::SOL_SOCKET, so::REUSEADDR) != 0
    }

    /// `SO_REUSEPORT`.
    pub(crate) fn reuseport(&self) -> bool {
        self.int(level::SOL_SOCKET, so::REUSEPORT) != 0
    }

    /// `IPV6_V6ONLY`.
    pub(crate) fn v6only(&self) -> bool {
        self.int(level::IPPROTO_IPV6, IPV6_V6ONLY) != 0
    }

    /// `SO_LINGER` on with a zero time: `close` resets the connection.
    pub(crate) fn abortive_close(&self) -> bool {
        self.linger.0 != 0 && self.linger.1 == 0
    }

    /// Is `(level, name)` an option kept as an integer for a socket of `proto` and family
    /// `v6` (`IPPROTO_IPV6` options exist only on `AF_INET6` sockets)?
    fn is_int(proto: Proto, v6: bool, level: i32, name: i32) -> bool {
        match level {
            level::SOL_SOCKET => SOCKET_INT_OPTS.contains(&name),
            level::IPPROTO_TCP => proto == Proto::Tcp && TCP_INT_OPTS.contains(&name),
            level::IPPROTO_IP => IP_INT_OPTS.contains(&name),
            level::IPPROTO_IPV6 => v6 && IPV6_INT_OPTS.contains(&name),
            _ => false,
        }
    }

    /// The options kept as set, for the hand-over record: `(level, name, bytes)` of each
    /// integer option set (4 bytes) and each timeout set (a 16-byte `struct timeval`).
    pub(crate) fn kept(&self) -> Vec<(i32, i32, Vec<u8>)> {
        let mut v: Vec<(i32, i32, Vec<u8>)> = self
            .ints
            .iter()
            .map(|&(l, n, x)| (l, n, x.to_le_bytes().to_vec()))
            .collect();
        for (i, name) in [so::RCVTIMEO, so::SNDTIMEO].into_iter().enumerate() {
            if self.timeo[i] != [0; 16] {
                v.push((level::SOL_SOCKET, name, self.timeo[i].to_vec()));
            }
        }
        v
    }

    /// Sets again one option of [`Opts::kept`] as it was (no doubling, no freezing): false
    /// if it is not one a socket of `proto` and family `v6` keeps, or of the wrong size.
    pub(crate) fn restore(
        &mut self,
        proto: Proto,
        v6: bool,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> bool {
        if level == level::SOL_SOCKET && (name == so::RCVTIMEO || name == so::SNDTIMEO) {
            let Ok(t) = <[u8; 16]>::try_from(val) else {
                return false;
            };
            self.timeo[usize::from(name == so::SNDTIMEO)] = t;
            return true;
        }
        let Ok(b) = <[u8; 4]>::try_from(val) else {
            return false;
        };
        if !Self::is_int(proto, v6, level, name) {
            return false;
        }
        self.set_int(level, name, i32::from_le_bytes(b));
        true
    }

    /// `setsockopt` (`bound`: the socket has a local address, which freezes `IPV6_V6ONLY`).
    pub(crate) fn set(
        &mut self,
        proto: Proto,
        v6: bool,
        bound: bool,
        level: i32,
        name: i32,
        val: &[u8],
    ) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            let b = val.get(..4).ok_or(Errno::EINVAL)?;
            Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if level == level::SOL_SOCKET {
            match name {
                so::SNDBUF | so::SNDBUFFORCE => {
                    let v = (int()?.max(0) as u32).min(BUF_MAX);
                    self.sndbuf = (v * 2).max(MIN_SNDBUF);
                    return Ok(());
                }
                so::RCVBUF | so::RCVBUFFORCE => {
                    let v = (int()?.max(0) as u32).min(BUF_MAX);
                    self.rcvbuf = (v * 2).max(MIN_RCVBUF);
                    return Ok(());
                }
                so::LINGER => {
                    let b = val.get(..8).ok_or(Errno::EINVAL)?;
                    let on = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let t = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    self.linger = (i32::from(on != 0), t.max(0));
                    return Ok(());
                }
                so::RCVTIMEO | so::SNDTIMEO => {
                    let b = val.get(..16).ok_or(Errno::EINVAL)?;
                    let i = usize::from(name == so::SNDTIMEO);
                    self.timeo[i].copy_from_slice(b);
                    return Ok(());
                }
                _ => {}
            }
        }
        if level == level::IPPROTO_IPV6 && name == IPV6_V6ONLY && v6 && bound {
            return Err(Errno::EINVAL);
        }
        if !Self::is_int(proto, v6, level, name) {
            return Err(Errno::ENOPROTOOPT);
        }
        let mut v = int()?;
        // Boolean options read back as 0 or 1.
        let boolean = matches!(
            (level, name),
            (
                level::SOL_SOCKET,
                so::REUSEADDR | so::REUSEPORT | so::KEEPALIVE
            ) | (
                level::SOL_SOCKET,
                so::BROADCAST | so::OOBINLINE | so::DONTROUTE
            ) | (level::IPPROTO_TCP, 1)
                | (level::IPPROTO_IPV6, IPV6_V6ONLY)
        );
        if boolean {
            v = i32::from(v != 0);
        }
        self.set_int(level, name, v);
        Ok(())
    }

    /// `getsockopt` for the options kept here (`SO_ERROR`, `SO_ACCEPTCONN` are the socket's).
    pub(crate) fn get(
        &self,
        proto: Proto,
        v6: bool,
        level: i32,
        name: i32,
    ) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_le_bytes().to_vec());
        if level == level::SOL_SOCKET {
            match name {
                so::SNDBUF => return int(self.sndbuf as i32),
                so::RCVBUF => return int(self.rcvbuf as i32),
                so::SNDLOWAT => return int(1),
                so::LINGER => {
                    let mut b = self.linger.0.to_le_bytes().to_vec();
                    b.extend_from_slice(&self.linger.1.to_le_bytes());
                    return Ok(b);
                }
                so::RCVTIMEO | so::SNDTIMEO => {
                    return Ok(self.timeo[usize::from(name == so::SNDTIMEO)].to_vec())
                }
                so::RCVLOWAT => return int(self.int(level, name).max(1)),
                _ => {}
            }
        }
        if !Self::is_int(proto, v6, level, name) {
            return Err(Errno::ENOPROTOOPT);
        }
        let v = match (level, name) {
            (level::IPPROTO_TCP, 2) => 65_483, // TCP_MAXSEG on loopback
            (level::IPPROTO_TCP, 4) if self.int(level, name) == 0 => 7200,
            (level::IPPROTO_TCP, 5) if self.int(level, name) == 0 => 75,
            (level::IPPROTO_TCP, 6) if self.int(level, name) == 0 => 9,
            (level::IPPROTO_IP, 2) | (level::IPPROTO_IPV6, 16) if self.int(level, name) == 0 => 64,
            (level::IPPROTO_IP, 34) => 1, // IP_MULTICAST_LOOP
            _ => self.int(level, name),
        };
        int(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(v: i32) -> [u8; 4] {
        v.to_le_bytes()
    }

    #[test]
    fn buffers_are_doubled_and_clamped_as_linux() {
        let mut o = Opts::new(Proto::Tcp);
        o.set(Proto::Tcp, false, false, 1, so::RCVBUF, &i(4096))
            .unwrap();
        assert_eq!(o.get(Proto::Tcp, false, 1, so::RCVBUF).unwrap(), i(8192));
        o.set(Proto::Tcp, false, false, 1, so::SNDBUF, &i(1))
            .unwrap();
        assert_eq!(o.get(Proto::Tcp, false, 1, so::SNDBUF).unwrap(), i(4608));
        o.set(Proto::Tcp, false, false, 1, so::RCVBUF, &i(1 << 30))
            .unwrap();
        assert_eq!(o.rcvbuf, 2 * BUF_MAX);
    }

    #[test]
    fn booleans_read_back_as_one_and_unknown_options_are_enoprotoopt() {
        let mut o = Opts::new(Proto::Tcp);
        o.set(Proto::Tcp, false, false, 6, 1, &i(7)).unwrap();
        assert_eq!(o.get(Proto::Tcp, false, 6, 1).unwrap(), i(1));
        assert_eq!(
            o.set(Proto::Udp, false, false, 6, 1, &i(1)),
            Err(Errno::ENOPROTOOPT)
        );
        assert_eq!(
            o.set(Proto::Tcp, false, false, 1, 999, &i(1)),
            Err(Errno::ENOPROTOOPT)
        );
        assert_eq!(
            o.set(Proto::Tcp, false, false, 1, so::KEEPALIVE, &[1]),
            Err(Errno::EINVAL)
        );
        // IPV6_V6ONLY: only on AF_INET6, and only before bind.
        assert_eq!(
            o.set(Proto::Tcp, false, false, 41, 26, &i(1)),
            Err(Errno::ENOPROTOOPT)
        );
        assert_eq!(
            o.set(Proto::Tcp, true, true, 41, 26, &i(1)),
            Err(Errno::EINVAL)
        );
        o.set(Proto::Tcp, true, false, 41, 26, &i(1)).unwrap();
        assert!(o.v6only());
    }

    #[test]
    fn linger_zero_is_an_abortive_close() {
        let mut o = Opts::new(Proto::Tcp);
        assert!(!o.abortive_close());
        let mut v = i(1).to_vec();
        v.extend_from_slice(&i(0));
        o.set(Proto::Tcp, false, false, 1, so::LINGER, &v).unwrap();
        assert!(o.abortive_close());
        assert_eq!(o.get(Proto::Tcp, false, 1, so::LINGER).unwrap(), v);
    }
}
