//! The `SIOCGIF*` ioctls on any socket (Linux's `dev_ioctl`): an interface's index, name,
//! flags, MTU, addresses and hardware address by `struct ifreq`, and the list of IPv4
//! interfaces by `SIOCGIFCONF`, answered from the guest's devices
//! ([`super::device`]). glibc's `if_nametoindex` and `if_indextoname`, Java's
//! `NetworkInterface` and older tools (`ifconfig`) ask this way instead of netlink. The
//! `SIOCSIF*` changes are `EPERM` without `CAP_NET_ADMIN`, `EOPNOTSUPP` with it. The
//! answers are pure functions over a request's bytes; [`ioctl`] copies them from and to
//! the program.

use alloc::vec::Vec;

use super::device::lo;
use crate::fs::Errno;
use crate::linux::uaccess::{copy_from_user, copy_to_user};
use crate::linux::SysResult;

/// `sizeof(struct ifreq)`.
const IFREQ_LEN: usize = 40;
/// `IFNAMSIZ`.
const IFNAMSIZ: usize = 16;

/// The requests (`linux/sockios.h`).
mod cmd {
    pub(super) const SIOCGIFNAME: u64 = 0x8910;
    pub(super) const SIOCGIFCONF: u64 = 0x8912;
    pub(super) const SIOCGIFFLAGS: u64 = 0x8913;
    pub(super) const SIOCGIFADDR: u64 = 0x8915;
    pub(super) const SIOCGIFDSTADDR: u64 = 0x8917;
    pub(super) const SIOCGIFBRDADDR: u64 = 0x8919;
    pub(super) const SIOCGIFNETMASK: u64 = 0x891b;
    pub(super) const SIOCGIFMETRIC: u64 = 0x891d;
    pub(super) const SIOCGIFMTU: u64 = 0x8921;
    pub(super) const SIOCGIFHWADDR: u64 = 0x8927;
    pub(super) const SIOCGIFINDEX: u64 = 0x8933;
    pub(super) const SIOCGIFTXQLEN: u64 = 0x8942;
    /// The `SIOCSIF*` and other changes Linux's `dev_ioctl` takes.
    /// (`SIOCSIFFLAGS`, `ADDR`, `DSTADDR`, `BRDADDR`, `NETMASK`, `METRIC`, `MTU`, `NAME`,
    /// `HWADDR`, `PFLAGS`, `HWBROADCAST`, `TXQLEN`, `SIOCADDMULTI`, `SIOCDELMULTI`).
    pub(super) const CHANGES: [u64; 14] = [
        0x8914, 0x8916, 0x8918, 0x891a, 0x891c, 0x891e, 0x8922, 0x8923, 0x8924, 0x8934, 0x8937,
        0x8943, 0x8931, 0x8932,
    ];
}

/// Whether `c` is one of the interface ioctls answered here.
pub(crate) fn is_interface_ioctl(c: u64) -> bool {
    use cmd::*;
    matches!(
        c,
        SIOCGIFNAME
            | SIOCGIFCONF
            | SIOCGIFFLAGS
            | SIOCGIFADDR
            | SIOCGIFDSTADDR
            | SIOCGIFBRDADDR
            | SIOCGIFNETMASK
            | SIOCGIFMETRIC
            | SIOCGIFMTU
            | SIOCGIFHWADDR
            | SIOCGIFINDEX
            | SIOCGIFTXQLEN
    ) || CHANGES.contains(&c)
}

/// A `struct sockaddr_in` of `addr` (16 bytes: family, port 0, address, zeros).
fn sockaddr_in(addr: [u8; 4]) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&2u16.to_le_bytes());
    s[4..8].copy_from_slice(&addr);
    s
}

/// The netmask of a prefix length.
fn netmask(prefix: u8) -> [u8; 4] {
    let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    bits.to_be_bytes()
}

/// `lo`'s `struct ifreq` for `SIOCGIFCONF`: its name and IPv4 address.
fn lo_ifreq() -> [u8; IFREQ_LEN] {
    let mut r = [0u8; IFREQ_LEN];
    r[..lo::NAME.len()].copy_from_slice(lo::NAME);
    r[IFNAMSIZ..IFNAMSIZ + 16].copy_from_slice(&sockaddr_in(lo::V4));
    r
}

/// Answers request `c` in place in `req` (a `struct ifreq`) on a socket of family `family`:
/// `ENODEV` for an interface the guest does not have; the address requests are `AF_INET`'s
/// (`ENOTTY` on other sockets, as Linux).
fn answer(c: u64, req: &mut [u8; IFREQ_LEN], family: u16, net_admin: bool) -> Result<(), Errno> {
    use cmd::*;
    let address = matches!(
        c,
        SIOCGIFADDR | SIOCGIFDSTADDR | SIOCGIFBRDADDR | SIOCGIFNETMASK
    );
    if address && family != super::af::AF_INET {
        return Err(Errno::ENOTTY);
    }
    if CHANGES.contains(&c) {
        return Err(super::device::change_refused(net_admin));
    }
    if c == SIOCGIFNAME {
        let index = i32::from_le_bytes([req[16], req[17], req[18], req[19]]);
        if index != lo::INDEX {
            return Err(Errno::ENODEV);
        }
        req[..IFNAMSIZ].fill(0);
        req[..lo::NAME.len()].copy_from_slice(lo::NAME);
        return Ok(());
    }
    // Linux ends the name at its last byte whatever is there.
    let name = &req[..IFNAMSIZ - 1];
    let name = name.split(|&b| b == 0).next().unwrap_or(name);
    if name != lo::NAME {
        return Err(Errno::ENODEV);
    }
    let data = &mut req[IFNAMSIZ..];
    match c {
        SIOCGIFFLAGS => data[..2].copy_from_slice(&(lo::FLAGS as u16).to_le_bytes()),
        SIOCGIFADDR | SIOCGIFDSTADDR => data[..16].copy_from_slice(&sockaddr_in(lo::V4)),
        SIOCGIFBRDADDR => data[..16].copy_from_slice(&sockaddr_in([0; 4])),
        SIOCGIFNETMASK => data[..16].copy_from_slice(&sockaddr_in(netmask(lo::V4_PREFIX))),
        SIOCGIFMETRIC => data[..4].copy_from_slice(&0i32.to_le_bytes()),
        SIOCGIFMTU => data[..4].copy_from_slice(&lo::MTU.to_le_bytes()),
        SIOCGIFHWADDR => {
            data[..16].fill(0);
            data[..2].copy_from_slice(&lo::TYPE.to_le_bytes());
        }
        SIOCGIFINDEX => data[..4].copy_from_slice(&lo::INDEX.to_le_bytes()),
        SIOCGIFTXQLEN => data[..4].copy_from_slice(&lo::TXQLEN.to_le_bytes()),
        _ => return Err(Errno::ENOTTY),
    }
    Ok(())
}

/// `SIOCGIFCONF`: given the `struct ifconf`'s length and whether it has a buffer, the
/// `ifreq`s to write and the length to report (the length needed when there is no buffer).
fn ifconf(room: i32, has_buf: bool) -> (Vec<u8>, i32) {
    let all = lo_ifreq().to_vec();
    if !has_buf {
        return (Vec::new(), all.len() as i32);
    }
    let fit = usize::try_from(room).unwrap_or(0) / IFREQ_LEN * IFREQ_LEN;
    let out: Vec<u8> = all.into_iter().take(fit).collect();
    let n = out.len() as i32;
    (out, n)
}

/// The ioctl `c` with argument `arg` on a socket of `family`, if it is one of the interface
/// ioctls.
pub(crate) fn ioctl(family: u16, c: u64, arg: u64) -> Option<SysResult> {
    if !is_interface_ioctl(c) {
        return None;
    }
    Some(if c == cmd::SIOCGIFCONF {
        ioctl_ifconf(arg)
    } else {
        ioctl_ifreq(family, c, arg)
    })
}

fn ioctl_ifreq(family: u16, c: u64, arg: u64) -> SysResult {
    let mut req = [0u8; IFREQ_LEN];
    copy_from_user(arg, &mut req)?;
    answer(c, &mut req, family, super::device::caller_is_net_admin())?;
    copy_to_user(arg, &req)?;
    Ok(0)
}

fn ioctl_ifconf(arg: u64) -> SysResult {
    // struct ifconf: int ifc_len, 4 bytes of padding, char *ifc_buf.
    let mut conf = [0u8; 16];
    copy_from_user(arg, &mut conf)?;
    let room = i32::from_le_bytes([conf[0], conf[1], conf[2], conf[3]]);
    let mut p = [0u8; 8];
    p.copy_from_slice(&conf[8..16]);
    let buf = u64::from_le_bytes(p);
    let (reqs, len) = ifconf(room, buf != 0);
    if !reqs.is_empty() {
        copy_to_user(buf, &reqs)?;
    }
    copy_to_user(arg, &len.to_le_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INET: u16 = super::super::af::AF_INET;

    fn named(name: &[u8]) -> [u8; IFREQ_LEN] {
        let mut r = [0xaau8; IFREQ_LEN];
        r[..IFNAMSIZ].fill(0);
        r[..name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn lo_by_name_and_by_index() {
        let mut r = named(b"lo");
        assert_eq!(answer(cmd::SIOCGIFINDEX, &mut r, INET, false), Ok(()));
        assert_eq!(r[16..20], 1i32.to_le_bytes());
        let mut r = named(b"lo");
        answer(cmd::SIOCGIFFLAGS, &mut r, INET, false).unwrap();
        assert_eq!(r[16..18], 0x49u16.to_le_bytes(), "UP LOOPBACK RUNNING");
        let mut r = named(b"lo");
        answer(cmd::SIOCGIFNETMASK, &mut r, INET, false).unwrap();
        assert_eq!(r[16..24], [2, 0, 0, 0, 255, 0, 0, 0]);
        let mut r = named(b"lo");
        answer(cmd::SIOCGIFHWADDR, &mut r, INET, false).unwrap();
        assert_eq!(r[16..18], 772u16.to_le_bytes());
        let mut r = [0u8; IFREQ_LEN];
        r[16] = 1;
        answer(cmd::SIOCGIFNAME, &mut r, INET, false).unwrap();
        assert_eq!(&r[..3], b"lo\0");
        r[16] = 2;
        assert_eq!(
            answer(cmd::SIOCGIFNAME, &mut r, INET, false),
            Err(Errno::ENODEV)
        );
        assert_eq!(
            answer(cmd::SIOCGIFMTU, &mut named(b"eth0"), INET, false),
            Err(Errno::ENODEV)
        );
        // A name filling all 16 bytes is cut at the 15th.
        let mut long = [b'l'; IFREQ_LEN];
        long[..2].copy_from_slice(b"lo");
        assert_eq!(
            answer(cmd::SIOCGIFMTU, &mut long, INET, false),
            Err(Errno::ENODEV)
        );
        assert_eq!(
            answer(cmd::SIOCGIFADDR, &mut named(b"lo"), 1, false),
            Err(Errno::ENOTTY),
            "an AF_UNIX socket"
        );
        assert_eq!(netmask(0), [0; 4]);
        assert_eq!(netmask(32), [255; 4]);
    }

    #[test]
    fn changes_need_the_right_and_then_are_not_supported() {
        let set_flags = 0x8914;
        assert!(is_interface_ioctl(set_flags));
        assert_eq!(
            answer(set_flags, &mut named(b"lo"), INET, false),
            Err(Errno::EPERM)
        );
        assert_eq!(
            answer(set_flags, &mut named(b"lo"), INET, true),
            Err(Errno::EOPNOTSUPP)
        );
        assert!(!is_interface_ioctl(0x5401), "TCGETS");
    }

    #[test]
    fn ifconf_sizes_then_fills_whole_entries() {
        assert_eq!(ifconf(0, false), (Vec::new(), 40));
        assert_eq!(ifconf(39, true), (Vec::new(), 0));
        let (reqs, n) = ifconf(100, true);
        assert_eq!((reqs.len(), n), (40, 40));
        assert_eq!(&reqs[..3], b"lo\0");
        assert_eq!(reqs[20..24], [127, 0, 0, 1]);
    }
}
