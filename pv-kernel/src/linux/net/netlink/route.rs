//! `NETLINK_ROUTE` requests and their answers, as bytes: what `ip link`, `ip addr`, glibc's
//! `getifaddrs` and `if_nameindex`, libuv's `uv_interface_addresses` (Node.js's
//! `os.networkInterfaces()`) and Go's `net.Interfaces` ask the kernel about the guest's
//! devices ([`crate::linux::net::device`]). The answers follow Linux's `rtnetlink.c`, `af_netlink.c` and `devinet.c`/`addrconf.c`:
//! a dump is its messages flagged `NLM_F_MULTI` and a closing `NLMSG_DONE`; an error, or an
//! acknowledgement asked for with `NLM_F_ACK`, is an `NLMSG_ERROR` with the request's header
//! (and its payload for an error, unless `NETLINK_CAP_ACK`); changes (new, delete, set) are
//! `EPERM` without `CAP_NET_ADMIN` and `EOPNOTSUPP` with it; dumps of the other kinds of
//! objects (routes, neighbours, rules, ...) are empty. Pure functions over byte slices,
//! unit-tested on the host.

use alloc::vec::Vec;

use crate::fs::Errno;
use crate::linux::net::device::lo;

/// `struct nlmsghdr`'s size.
pub(crate) const HDR_LEN: usize = 16;

/// Message types below the protocol's own.
mod nlmsg {
    pub(super) const ERROR: u16 = 2;
    pub(super) const DONE: u16 = 3;
    /// The first type a protocol defines.
    pub(super) const MIN_TYPE: u16 = 0x10;
}

/// `nlmsg_flags`.
pub(crate) mod flag {
    pub(crate) const REQUEST: u16 = 0x1;
    pub(crate) const MULTI: u16 = 0x2;
    pub(crate) const ACK: u16 = 0x4;
    pub(crate) const DUMP_FILTERED: u16 = 0x20;
    /// `NLM_F_ROOT | NLM_F_MATCH`.
    pub(crate) const DUMP: u16 = 0x300;
    /// In an `NLMSG_ERROR`: the request's payload is not included.
    pub(crate) const CAPPED: u16 = 0x100;
}

/// rtnetlink message types.
mod rtm {
    pub(super) const BASE: u16 = 16;
    pub(super) const NEWLINK: u16 = 16;
    pub(super) const GETLINK: u16 = 18;
    pub(super) const NEWADDR: u16 = 20;
    pub(super) const GETADDR: u16 = 22;
    /// The last type Linux knows.
    pub(super) const MAX: u16 = 123;
}

/// Link attributes (`IFLA_*`).
mod ifla {
    pub(super) const ADDRESS: u16 = 1;
    pub(super) const BROADCAST: u16 = 2;
    pub(super) const IFNAME: u16 = 3;
    pub(super) const MTU: u16 = 4;
    pub(super) const QDISC: u16 = 6;
    pub(super) const STATS: u16 = 7;
    pub(super) const TXQLEN: u16 = 13;
    pub(super) const OPERSTATE: u16 = 16;
    pub(super) const LINKMODE: u16 = 17;
    pub(super) const STATS64: u16 = 23;
    pub(super) const GROUP: u16 = 27;
    pub(super) const PROMISCUITY: u16 = 30;
    pub(super) const NUM_TX_QUEUES: u16 = 31;
    pub(super) const NUM_RX_QUEUES: u16 = 32;
    pub(super) const CARRIER: u16 = 33;
    pub(super) const CARRIER_CHANGES: u16 = 35;
}

/// Address attributes (`IFA_*`).
mod ifa {
    pub(super) const ADDRESS: u16 = 1;
    pub(super) const LOCAL: u16 = 2;
    pub(super) const LABEL: u16 = 3;
    pub(super) const CACHEINFO: u16 = 6;
    pub(super) const FLAGS: u16 = 8;
}

/// Address families in requests.
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `IFA_F_PERMANENT`.
const IFA_F_PERMANENT: u8 = 0x80;
/// `RT_SCOPE_HOST`.
const RT_SCOPE_HOST: u8 = 254;
/// `struct rtnl_link_stats` and `rtnl_link_stats64`'s sizes (all counters zero: the guest
/// keeps none per device).
const STATS_LEN: usize = 24 * 4;
const STATS64_LEN: usize = 25 * 8;

/// What answers depend on besides the request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asker {
    /// The socket's port id (`nlmsg_pid` of the answers).
    pub(crate) portid: u32,
    /// `NETLINK_GET_STRICT_CHK`: a dump's header fields filter it.
    pub(crate) strict: bool,
    /// `NETLINK_CAP_ACK`: errors carry the request's header only.
    pub(crate) cap_ack: bool,
    /// The sender has `CAP_NET_ADMIN`.
    pub(crate) net_admin: bool,
}

/// A message being built: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32, portid: u32) -> Self {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&portid.to_le_bytes());
        Self(b)
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    /// An attribute (`struct nlattr` and its payload, padded to 4 bytes).
    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_le_bytes());
        self.0.extend_from_slice(&ty.to_le_bytes());
        self.0.extend_from_slice(data);
        self.pad()
    }

    fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_le_bytes())
    }

    fn attr_str(&mut self, ty: u16, s: &[u8]) -> &mut Self {
        let mut z = s.to_vec();
        z.push(0);
        self.attr(ty, &z)
    }

    fn pad(&mut self) -> &mut Self {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    /// The finished message, its length filled in.
    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// One request of a `sendmsg`'s bytes.
#[derive(Clone, Copy, Debug)]
struct Request<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    /// The whole message, header included.
    whole: &'a [u8],
}

impl Request<'_> {
    fn payload(&self) -> &[u8] {
        &self.whole[HDR_LEN..]
    }
}

/// The requests in `data`, as Linux's `netlink_rcv_skb` walks them: a header shorter than
/// 16 bytes or longer than what is left ends the walk.
fn requests(data: &[u8]) -> Vec<Request<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= HDR_LEN {
        let h = &data[at..];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < HDR_LEN || len > h.len() {
            break;
        }
        out.push(Request {
            ty: u16::from_le_bytes([h[4], h[5]]),
            flags: u16::from_le_bytes([h[6], h[7]]),
            seq: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
            whole: &h[..len],
        });
        at += len.next_multiple_of(4).min(h.len());
    }
    out
}

/// The answers to every request in `data` (the bytes of one `sendmsg`), as the datagrams
/// Linux's reads return them: a single answer, then its acknowledgement if asked; a dump's
/// messages, then its `NLMSG_DONE`; an error.
pub(crate) fn answer(data: &[u8], who: &Asker) -> Vec<Vec<u8>> {
    requests(data)
        .into_iter()
        .flat_map(|r| answer_one(&r, who))
        .collect()
}

/// The datagrams answering one request.
fn answer_one(r: &Request<'_>, who: &Asker) -> Vec<Vec<u8>> {
    let result = if r.flags & flag::REQUEST == 0 || r.ty < nlmsg::MIN_TYPE {
        Ok(Reply::Nothing)
    } else {
        rtnetlink(r, who)
    };
    let ack = r.flags & flag::ACK != 0;
    match result {
        Ok(Reply::Dump(msgs)) => {
            let done = end_of_dump(r, msgs.flags, who);
            if msgs.bytes.is_empty() {
                alloc::vec![done]
            } else {
                alloc::vec![msgs.bytes, done]
            }
        }
        Ok(Reply::One(msg)) if ack => alloc::vec![msg, error_msg(r, 0, who)],
        Ok(Reply::One(msg)) => alloc::vec![msg],
        Ok(Reply::Nothing) if ack => alloc::vec![error_msg(r, 0, who)],
        Ok(Reply::Nothing) => Vec::new(),
        Err(e) => alloc::vec![error_msg(r, -(e as i32), who)],
    }
}

/// A dump's messages (without its `NLMSG_DONE`) and the extra flags they carry.
struct Dumped {
    bytes: Vec<u8>,
    flags: u16,
}

/// What a request is answered with (besides an acknowledgement).
enum Reply {
    /// A dump.
    Dump(Dumped),
    /// One message.
    One(Vec<u8>),
    /// Nothing.
    Nothing,
}

/// An `NLMSG_ERROR` answering `r` with `err` (0: an acknowledgement).
fn error_msg(r: &Request<'_>, err: i32, who: &Asker) -> Vec<u8> {
    let whole = err != 0 && !who.cap_ack;
    let flags = if whole { 0 } else { flag::CAPPED };
    let mut m = Msg::new(nlmsg::ERROR, flags, r.seq, who.portid);
    m.bytes(&err.to_le_bytes());
    m.bytes(if whole { r.whole } else { &r.whole[..HDR_LEN] });
    m.pad();
    m.done()
}

/// The rtnetlink request `r`.
fn rtnetlink(r: &Request<'_>, who: &Asker) -> Result<Reply, Errno> {
    if r.ty > rtm::MAX {
        return Err(Errno::EOPNOTSUPP);
    }
    // Linux ignores a request without the family byte.
    let Some(&family) = r.payload().first() else {
        return Ok(Reply::Nothing);
    };
    let kind = (r.ty - rtm::BASE) % 4;
    if kind != 2 {
        return Err(crate::linux::net::device::change_refused(who.net_admin));
    }
    let dump = r.flags & flag::DUMP == flag::DUMP;
    match (r.ty, dump) {
        (rtm::GETLINK, true) => Ok(Reply::Dump(dump_links(r, who))),
        (rtm::GETLINK, false) => get_link(r, who).map(Reply::One),
        (rtm::GETADDR, true) => Ok(Reply::Dump(dump_addrs(r, family, who))),
        (_, true) => Ok(Reply::Dump(Dumped {
            bytes: Vec::new(),
            flags: 0,
        })),
        (_, false) => Err(Errno::EOPNOTSUPP),
    }
}

/// `NLMSG_DONE` closing a dump (with `extra` flags).
fn end_of_dump(r: &Request<'_>, extra: u16, who: &Asker) -> Vec<u8> {
    let mut m = Msg::new(nlmsg::DONE, flag::MULTI | extra, r.seq, who.portid);
    m.bytes(&0i32.to_le_bytes());
    m.done()
}

/// The interface index in a request's fixed part (`ifi_index` at byte 4 of `ifinfomsg`,
/// `ifa_index` at byte 4 of `ifaddrmsg`; 0 if it is short).
fn index_of(r: &Request<'_>) -> i32 {
    r.payload()
        .get(4..8)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The interface index a strict dump request asks for, 0 for all.
fn index_filter(r: &Request<'_>, who: &Asker) -> i32 {
    if who.strict {
        index_of(r)
    } else {
        0
    }
}

/// The `RTM_NEWLINK` message describing `lo`.
fn link_msg(r: &Request<'_>, flags: u16, who: &Asker) -> Vec<u8> {
    let mut m = Msg::new(rtm::NEWLINK, flags, r.seq, who.portid);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    m.bytes(&[AF_UNSPEC, 0])
        .bytes(&lo::TYPE.to_le_bytes())
        .bytes(&lo::INDEX.to_le_bytes())
        .bytes(&lo::FLAGS.to_le_bytes())
        .bytes(&0u32.to_le_bytes());
    m.attr_str(ifla::IFNAME, lo::NAME)
        .attr_u32(ifla::TXQLEN, lo::TXQLEN)
        .attr(ifla::OPERSTATE, &[0])
        .attr(ifla::LINKMODE, &[0])
        .attr_u32(ifla::MTU, lo::MTU)
        .attr_u32(ifla::GROUP, 0)
        .attr_u32(ifla::PROMISCUITY, 0)
        .attr_u32(ifla::NUM_TX_QUEUES, 1)
        .attr_u32(ifla::NUM_RX_QUEUES, 1)
        .attr(ifla::CARRIER, &[1])
        .attr_str(ifla::QDISC, b"noqueue")
        .attr_u32(ifla::CARRIER_CHANGES, 0)
        .attr(ifla::ADDRESS, &[0; 6])
        .attr(ifla::BROADCAST, &[0; 6])
        .attr(ifla::STATS64, &[0; STATS64_LEN])
        .attr(ifla::STATS, &[0; STATS_LEN]);
    m.done()
}

fn dump_links(r: &Request<'_>, who: &Asker) -> Dumped {
    let want = index_filter(r, who);
    let filtered = if want != 0 { flag::DUMP_FILTERED } else { 0 };
    let mut bytes = Vec::new();
    if want == 0 || want == lo::INDEX {
        bytes.extend(link_msg(r, flag::MULTI | filtered, who));
    }
    Dumped {
        bytes,
        flags: filtered,
    }
}

/// `RTM_GETLINK` of one device, by `ifi_index` or else by `IFLA_IFNAME`: `ENODEV` if none.
fn get_link(r: &Request<'_>, who: &Asker) -> Result<Vec<u8>, Errno> {
    let p = r.payload();
    let index = index_of(r);
    let found = if index != 0 {
        index == lo::INDEX
    } else {
        attrs(p.get(16..).unwrap_or(&[]))
            .find(|(ty, _)| *ty == ifla::IFNAME)
            .is_some_and(|(_, v)| v.split(|&c| c == 0).next() == Some(lo::NAME))
    };
    if !found {
        return Err(Errno::ENODEV);
    }
    Ok(link_msg(r, 0, who))
}

/// The attributes in `b` as `(type, payload)`, until one does not fit.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    core::iter::from_fn(move || {
        let h = b.get(at..at + 4)?;
        let len = usize::from(u16::from_le_bytes([h[0], h[1]]));
        let ty = u16::from_le_bytes([h[2], h[3]]) & 0x3fff;
        let v = b.get(at + 4..at.checked_add(len)?).filter(|_| len >= 4)?;
        at += len.next_multiple_of(4);
        Some((ty, v))
    })
}

/// An `RTM_NEWADDR` message of `lo`'s address `addr` (4 or 16 bytes) with `prefix`.
fn addr_msg(r: &Request<'_>, flags: u16, addr: &[u8], prefix: u8, who: &Asker) -> Vec<u8> {
    let v4 = addr.len() == 4;
    let mut m = Msg::new(rtm::NEWADDR, flags, r.seq, who.portid);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    m.bytes(&[
        if v4 { AF_INET } else { AF_INET6 },
        prefix,
        IFA_F_PERMANENT,
        RT_SCOPE_HOST,
    ])
    .bytes(&lo::INDEX.to_le_bytes());
    m.attr(ifa::ADDRESS, addr);
    if v4 {
        m.attr(ifa::LOCAL, addr).attr_str(ifa::LABEL, lo::NAME);
    }
    // struct ifa_cacheinfo: preferred and valid lifetimes forever, created and updated at
    // boot.
    let mut cache = Vec::with_capacity(16);
    cache.extend_from_slice(&u32::MAX.to_le_bytes());
    cache.extend_from_slice(&u32::MAX.to_le_bytes());
    cache.extend_from_slice(&[0; 8]);
    m.attr_u32(ifa::FLAGS, u32::from(IFA_F_PERMANENT))
        .attr(ifa::CACHEINFO, &cache);
    m.done()
}

fn dump_addrs(r: &Request<'_>, family: u8, who: &Asker) -> Dumped {
    let want = index_filter(r, who);
    let filtered = if want != 0 { flag::DUMP_FILTERED } else { 0 };
    let mut out = Vec::new();
    if want == 0 || want == lo::INDEX {
        let flags = flag::MULTI | filtered;
        if matches!(family, AF_UNSPEC | AF_INET) {
            out.extend(addr_msg(r, flags, &lo::V4, lo::V4_PREFIX, who));
        }
        if matches!(family, AF_UNSPEC | AF_INET6) {
            out.extend(addr_msg(r, flags, &lo::V6, lo::V6_PREFIX, who));
        }
    }
    Dumped {
        bytes: out,
        flags: filtered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Asker = Asker {
        portid: 42,
        strict: false,
        cap_ack: false,
        net_admin: false,
    };

    fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Msg::new(ty, flags, seq, 0);
        m.bytes(body).pad();
        m.done()
    }

    /// The messages of a datagram as `(type, flags, seq, pid, payload)`.
    fn parse(d: &[u8]) -> Vec<(u16, u16, u32, u32, Vec<u8>)> {
        requests(d)
            .iter()
            .map(|r| {
                let pid = u32::from_le_bytes(r.whole[12..16].try_into().unwrap());
                (r.ty, r.flags, r.seq, pid, r.payload().to_vec())
            })
            .collect()
    }

    /// The messages of every datagram answering `q`.
    fn all(q: &[u8], who: &Asker) -> Vec<(u16, u16, u32, u32, Vec<u8>)> {
        answer(q, who).iter().flat_map(|d| parse(d)).collect()
    }

    #[test]
    fn a_link_dump_is_lo_and_done() {
        let q = request(rtm::GETLINK, flag::REQUEST | flag::DUMP, 7, &[0; 16]);
        let a = answer(&q, &WHO);
        assert_eq!(a.len(), 2, "the messages, then NLMSG_DONE");
        assert_eq!(parse(&a[1]).len(), 1);
        let msgs = all(&q, &WHO);
        assert_eq!(msgs.len(), 2);
        let (ty, flags, seq, pid, body) = &msgs[0];
        assert_eq!(
            (*ty, *flags, *seq, *pid),
            (rtm::NEWLINK, flag::MULTI, 7, 42)
        );
        assert_eq!(&body[2..4], &lo::TYPE.to_le_bytes());
        assert_eq!(&body[4..8], &1i32.to_le_bytes());
        let name: Vec<_> = attrs(&body[16..]).filter(|a| a.0 == ifla::IFNAME).collect();
        assert_eq!(name, [(ifla::IFNAME, &b"lo\0"[..])]);
        let mtu: Vec<_> = attrs(&body[16..]).filter(|a| a.0 == ifla::MTU).collect();
        assert_eq!(mtu, [(ifla::MTU, &65536u32.to_le_bytes()[..])]);
        assert_eq!(msgs[1].0, nlmsg::DONE);
        assert_eq!(msgs[1].4, 0i32.to_le_bytes());
    }

    #[test]
    fn an_address_dump_follows_the_family_and_a_strict_index() {
        let count = |family: u8, index: i32, who: &Asker| {
            let mut body = [0u8; 8];
            body[0] = family;
            body[4..].copy_from_slice(&index.to_le_bytes());
            let q = request(rtm::GETADDR, flag::REQUEST | flag::DUMP, 1, &body);
            let msgs = all(&q, who);
            assert_eq!(msgs.last().unwrap().0, nlmsg::DONE);
            msgs.len() - 1
        };
        assert_eq!(count(AF_UNSPEC, 0, &WHO), 2);
        assert_eq!(count(AF_INET, 0, &WHO), 1);
        assert_eq!(count(AF_INET6, 0, &WHO), 1);
        assert_eq!(count(17, 0, &WHO), 0);
        assert_eq!(count(AF_UNSPEC, 5, &WHO), 2, "the index is not a filter");
        let strict = Asker {
            strict: true,
            ..WHO
        };
        assert_eq!(count(AF_UNSPEC, 5, &strict), 0);
        assert_eq!(count(AF_UNSPEC, 1, &strict), 2);
    }

    #[test]
    fn one_link_by_index_or_name_else_enodev() {
        let mut by_index = [0u8; 16];
        by_index[4] = 1;
        let a = answer(&request(rtm::GETLINK, flag::REQUEST, 3, &by_index), &WHO);
        assert_eq!(parse(&a[0])[0].0, rtm::NEWLINK);
        assert_eq!(parse(&a[0])[0].1, 0, "not a dump");
        assert_eq!(parse(&a[0]).len(), 1);
        // With NLM_F_ACK, the answer and then an acknowledgement.
        let q = request(rtm::GETLINK, flag::REQUEST | flag::ACK, 3, &by_index);
        assert_eq!(answer(&q, &WHO).len(), 2);
        let msgs = all(&q, &WHO);
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[1].0, &msgs[1].4[..4]), (nlmsg::ERROR, &[0u8; 4][..]));
        let mut by_name = Msg::new(rtm::GETLINK, flag::REQUEST, 4, 0);
        by_name.bytes(&[0; 16]).attr_str(ifla::IFNAME, b"lo");
        let a = answer(&by_name.done(), &WHO);
        assert_eq!(parse(&a[0])[0].0, rtm::NEWLINK);
        by_index[4] = 2;
        let q = request(rtm::GETLINK, flag::REQUEST, 5, &by_index);
        let a = answer(&q, &WHO);
        let (ty, _, seq, _, body) = &parse(&a[0])[0];
        assert_eq!((*ty, *seq), (nlmsg::ERROR, 5));
        assert_eq!(body[..4], (-(Errno::ENODEV as i32)).to_le_bytes());
        assert_eq!(&body[4..], &q[..], "the request, whole");
    }

    #[test]
    fn changes_acks_and_what_is_ignored() {
        let body = [0u8; 8];
        // A change: EPERM without CAP_NET_ADMIN, EOPNOTSUPP with it; with NETLINK_CAP_ACK
        // only the request's header comes back.
        let q = request(rtm::NEWADDR, flag::REQUEST | flag::ACK, 9, &body);
        let err = |who: &Asker| parse(&answer(&q, who)[0])[0].clone();
        assert_eq!(err(&WHO).4[..4], (-(Errno::EPERM as i32)).to_le_bytes());
        let admin = Asker {
            net_admin: true,
            cap_ack: true,
            ..WHO
        };
        let e = err(&admin);
        assert_eq!(e.4[..4], (-(Errno::EOPNOTSUPP as i32)).to_le_bytes());
        assert_eq!((e.1, e.4.len()), (flag::CAPPED, 4 + HDR_LEN));
        // Not a request, or a control type: nothing, or an acknowledgement if asked.
        assert!(answer(&request(rtm::GETLINK, 0, 1, &body), &WHO).is_empty());
        let a = answer(&request(1, flag::REQUEST | flag::ACK, 2, &[]), &WHO);
        let ack = &parse(&a[0])[0];
        assert_eq!((ack.0, &ack.4[..4]), (nlmsg::ERROR, &[0u8; 4][..]));
        // A route dump is empty; a type past Linux's last is EOPNOTSUPP.
        let a = answer(&request(26, flag::REQUEST | flag::DUMP, 3, &body), &WHO);
        assert_eq!(parse(&a[0]).len(), 1);
        let a = answer(&request(200, flag::REQUEST, 4, &body), &WHO);
        assert_eq!(
            parse(&a[0])[0].4[..4],
            (-(Errno::EOPNOTSUPP as i32)).to_le_bytes()
        );
        // Two requests in one send; a truncated third is dropped.
        let mut two = request(rtm::GETLINK, flag::REQUEST | flag::DUMP, 1, &[0; 16]);
        two.extend(request(rtm::GETADDR, flag::REQUEST | flag::DUMP, 2, &body));
        two.extend_from_slice(&[64, 0, 0, 0, 18, 0]);
        assert_eq!(answer(&two, &WHO).len(), 4);
        // A request without its family byte is ignored.
        assert!(answer(&request(rtm::GETLINK, flag::REQUEST, 1, &[]), &WHO).is_empty());
    }
}
