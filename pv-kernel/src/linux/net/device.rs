//! The guest's network devices, as programs ask about them (netlink's `RTM_GETLINK` and
//! `RTM_GETADDR`, the `SIOCGIF*` ioctls): its one device is the loopback, `lo`, with
//! `127.0.0.1/8` and `::1/128`, with `--net none` and `--net host` alike (`--net host`'s
//! host sockets are the host runtime's, not devices of the guest). One description for
//! every interface that reports it, and one answer to every request to change it.

use crate::fs::Errno;

/// The loopback device.
pub(crate) mod lo {
    /// Its interface index.
    pub(crate) const INDEX: i32 = 1;
    /// Its name.
    pub(crate) const NAME: &[u8] = b"lo";
    /// `ARPHRD_LOOPBACK`.
    pub(crate) const TYPE: u16 = 772;
    /// `IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP`.
    pub(crate) const FLAGS: u32 = 0x1 | 0x8 | 0x40 | 0x1_0000;
    /// Its MTU.
    pub(crate) const MTU: u32 = 65536;
    /// Its transmit queue length.
    pub(crate) const TXQLEN: u32 = 1000;
    /// Its IPv4 address and prefix length.
    pub(crate) const V4: [u8; 4] = [127, 0, 0, 1];
    pub(crate) const V4_PREFIX: u8 = 8;
    /// Its IPv6 address and prefix length.
    pub(crate) const V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    pub(crate) const V6_PREFIX: u8 = 128;
}

/// The answer to a request to change the guest's devices, which never change (netlink's
/// new, delete and set messages, the `SIOCSIF*` ioctls): `EPERM` without `CAP_NET_ADMIN`,
/// `EOPNOTSUPP` with it.
pub(crate) fn change_refused(net_admin: bool) -> Errno {
    if net_admin {
        Errno::EOPNOTSUPP
    } else {
        Errno::EPERM
    }
}

/// Whether the calling process has `CAP_NET_ADMIN`.
pub(crate) fn caller_is_net_admin() -> bool {
    crate::linux::task::try_current_task().is_some_and(|t| {
        t.process
            .creds
            .lock()
            .capable(crate::linux::caps::cap::NET_ADMIN)
    })
}
