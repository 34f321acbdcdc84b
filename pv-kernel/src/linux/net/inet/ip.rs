//! Internet addresses: one internal form for both families (IPv4 as IPv4-mapped IPv6,
//! `::ffff:a.b.c.d`), `sockaddr_in`/`sockaddr_in6` decoding and encoding, and the address
//! sets a bound socket answers for (Linux's bind-conflict and lookup rules).

use alloc::vec::Vec;

use crate::fs::Errno;
use crate::linux::net::af;

/// An address: IPv6, IPv4 as IPv4-mapped.
pub(crate) type Ip = [u8; 16];

/// `::`.
pub(crate) const ANY6: Ip = [0; 16];
/// `::1`.
pub(crate) const LOOPBACK6: Ip = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// `127.0.0.1`, mapped.
pub(crate) const LOOPBACK4: Ip = v4([127, 0, 0, 1]);
/// `0.0.0.0`, mapped.
pub(crate) const ANY4: Ip = v4([0; 4]);

/// `a.b.c.d` as `::ffff:a.b.c.d`.
pub(crate) const fn v4(a: [u8; 4]) -> Ip {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// The IPv4 address of a mapped one.
pub(crate) fn as_v4(ip: &Ip) -> Option<[u8; 4]> {
    (ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
        .then(|| [ip[12], ip[13], ip[14], ip[15]])
}

/// `0.0.0.0` or `::`.
pub(crate) fn is_unspecified(ip: &Ip) -> bool {
    *ip == ANY6 || *ip == ANY4
}

/// `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback(ip: &Ip) -> bool {
    *ip == LOOPBACK6 || as_v4(ip).is_some_and(|a| a[0] == 127)
}

/// The loopback address of `ip`'s family (what `0.0.0.0`/`::` as a destination means).
pub(crate) fn loopback_like(ip: &Ip) -> Ip {
    if as_v4(ip).is_some() {
        LOOPBACK4
    } else {
        LOOPBACK6
    }
}

/// An address and port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Ep {
    /// The address.
    pub(crate) ip: Ip,
    /// The port (host order).
    pub(crate) port: u16,
}

impl Ep {
    /// `ip:port`.
    pub(crate) const fn new(ip: Ip, port: u16) -> Self {
        Self { ip, port }
    }
}

/// `sizeof(struct sockaddr_in)`.
pub(crate) const SOCKADDR_IN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub(crate) const SOCKADDR_IN6: usize = 28;
/// The shortest `sockaddr_in6` Linux accepts (RFC 2133's, without `sin6_scope_id`).
const SOCKADDR_IN6_MIN: usize = 24;

/// What a raw address given to a socket of `family` says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Decoded {
    /// An address of the socket's family.
    Ep(Ep),
    /// `AF_UNSPEC` (disconnect for `connect`; `INADDR_ANY` for an `AF_INET` `bind`).
    Unspec,
}

/// Decodes `raw` for a socket of `family` (`EINVAL` if too short, `EAFNOSUPPORT` for another
/// family, as Linux's `inet_bind`/`inet6_bind`).
pub(crate) fn decode(family: u16, raw: &[u8]) -> Result<Decoded, Errno> {
    let fam = super::super::addr::family_of(raw).ok_or(Errno::EINVAL)?;
    if fam == 0 {
        return Ok(Decoded::Unspec);
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family {
        af::AF_INET => {
            if raw.len() < SOCKADDR_IN {
                return Err(Errno::EINVAL);
            }
            if fam != af::AF_INET {
                return Err(Errno::EAFNOSUPPORT);
            }
            let a = [raw[4], raw[5], raw[6], raw[7]];
            Ok(Decoded::Ep(Ep::new(v4(a), port(raw))))
        }
        _ => {
            if raw.len() < SOCKADDR_IN6_MIN {
                return Err(Errno::EINVAL);
            }
            if fam != af::AF_INET6 {
                return Err(Errno::EAFNOSUPPORT);
            }
            let mut ip = [0; 16];
            ip.copy_from_slice(&raw[8..24]);
            Ok(Decoded::Ep(Ep::new(ip, port(raw))))
        }
    }
}

/// The raw `sockaddr` of `ep` for a socket of `family`.
pub(crate) fn encode(family: u16, ep: &Ep) -> Vec<u8> {
    let port = ep.port.to_be_bytes();
    if family == af::AF_INET {
        let mut b = alloc::vec![0u8; SOCKADDR_IN];
        b[..2].copy_from_slice(&af::AF_INET.to_le_bytes());
        b[2..4].copy_from_slice(&port);
        b[4..8].copy_from_slice(&as_v4(&ep.ip).unwrap_or([0; 4]));
        b
    } else {
        let mut b = alloc::vec![0u8; SOCKADDR_IN6];
        b[..2].copy_from_slice(&af::AF_INET6.to_le_bytes());
        b[2..4].copy_from_slice(&port);
        b[8..24].copy_from_slice(&ep.ip);
        b
    }
}

/// The addresses a socket bound to some address answers for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AddrSet {
    /// Every IPv4 and IPv6 address (`::` on a dual-stack socket).
    All,
    /// Every IPv4 address (`0.0.0.0`).
    AllV4,
    /// Every IPv6 address (`::` with `IPV6_V6ONLY`).
    AllV6,
    /// One address.
    One(Ip),
}

impl AddrSet {
    /// The set of a socket of `family` (with `v6only`) bound to `ip`.
    pub(crate) fn of(family: u16, v6only: bool, ip: &Ip) -> Self {
        if !is_unspecified(ip) {
            Self::One(*ip)
        } else if family == af::AF_INET || as_v4(ip).is_some() {
            Self::AllV4
        } else if v6only {
            Self::AllV6
        } else {
            Self::All
        }
    }

    /// True if it holds `ip`.
    pub(crate) fn contains(&self, ip: &Ip) -> bool {
        match self {
            Self::All => true,
            Self::AllV4 => as_v4(ip).is_some(),
            Self::AllV6 => as_v4(ip).is_none(),
            Self::One(x) => x == ip,
        }
    }

    /// True if some address is in both (two bindings of one port that clash).
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::All, _) | (_, Self::All) => true,
            (Self::One(x), s) | (s, Self::One(x)) => s.contains(x),
            (a, b) => a == b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_addresses_round_trip_as_mapped() {
        let raw = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let d = decode(af::AF_INET, &raw).unwrap();
        assert_eq!(d, Decoded::Ep(Ep::new(LOOPBACK4, 8080)));
        assert_eq!(encode(af::AF_INET, &Ep::new(LOOPBACK4, 8080)), raw.to_vec());
        assert!(is_loopback(&v4([127, 1, 2, 3])));
        assert!(!is_loopback(&v4([10, 0, 0, 1])));
    }

    #[test]
    fn short_or_foreign_addresses_are_refused_as_linux() {
        assert_eq!(decode(af::AF_INET, &[2, 0, 0, 80]), Err(Errno::EINVAL));
        assert_eq!(decode(af::AF_INET, &[]), Err(Errno::EINVAL));
        let mut six = [0u8; 28];
        six[0] = 10;
        assert_eq!(decode(af::AF_INET, &six), Err(Errno::EAFNOSUPPORT));
        assert_eq!(decode(af::AF_INET6, &six[..20]), Err(Errno::EINVAL));
        assert!(matches!(
            decode(af::AF_INET6, &six[..24]),
            Ok(Decoded::Ep(_))
        ));
        assert_eq!(decode(af::AF_INET, &[0; 16]), Ok(Decoded::Unspec));
    }

    #[test]
    fn address_sets_follow_dual_stack_rules() {
        let all = AddrSet::of(af::AF_INET6, false, &ANY6);
        let v6 = AddrSet::of(af::AF_INET6, true, &ANY6);
        let v4all = AddrSet::of(af::AF_INET, false, &ANY4);
        let lo4 = AddrSet::of(af::AF_INET, false, &LOOPBACK4);
        let lo6 = AddrSet::of(af::AF_INET6, false, &LOOPBACK6);
        assert!(all.overlaps(&lo4) && all.overlaps(&v4all));
        assert!(!v6.overlaps(&v4all) && !v6.overlaps(&lo4) && v6.overlaps(&lo6));
        assert!(v4all.overlaps(&lo4) && !v4all.overlaps(&lo6));
        assert!(!lo4.overlaps(&lo6));
        assert!(all.contains(&LOOPBACK4) && !v6.contains(&LOOPBACK4));
    }
}
