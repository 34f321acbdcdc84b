//! The loopback's table in the kernel hand-over record (docs/ABI.md §handover, sections 18
//! and 20): [`Stack::carry`] writes every socket of the table — both ends of each
//! connection, a listener's connections not accepted yet, UDP sockets — with what is
//! queued on each, and [`Stack::adopt`] re-creates them in the adopting kernel's table,
//! paired, each bound address and port held in the table again.
//!
//! What is not carried is refused in words (a blocker): a pending error other than the
//! ones the loopback sets (`EPIPE`, `ECONNREFUSED`, `ECONNRESET`).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use pvmux_hypercalls::handover::{
    inet_flags, inet_state, BlobRef, InetMsgEntry, InetSocketEntry, MAX_SOCKET_OPTS,
};

use super::{Conn, Dgram, Id, Owner, Proto, Sock, Stack, Tcp, Udp};
use crate::fs::Errno;
use crate::linux::net::af;
use crate::linux::net::inet::ip::{Ep, Ip};
use crate::linux::net::inet::opts::Opts;

/// Where bytes go in the record's blob.
pub(crate) type Blob<'a> = &'a mut dyn FnMut(&[u8]) -> BlobRef;

/// Why sockets of a record cannot be re-created: the socket's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) u64);

/// The pending errors the loopback sets, the only ones a record carries.
const ERRORS: [Errno; 3] = [Errno::EPIPE, Errno::ECONNREFUSED, Errno::ECONNRESET];

/// `IPPROTO_TCP`, `IPPROTO_UDP`.
const TCP: u16 = 6;
const UDP: u16 = 17;

impl Stack {
    /// Every socket of the table as record entries (their ids the table's, so in
    /// increasing order) and the messages queued on them, oldest first; or what cannot be
    /// carried.
    pub(crate) fn carry(
        &self,
        blob: Blob<'_>,
    ) -> Result<(Vec<InetSocketEntry>, Vec<InetMsgEntry>), &'static [u8]> {
        let mut listeners: BTreeMap<Id, (Id, u32)> = BTreeMap::new();
        for (&id, s) in &self.socks {
            if let Tcp::Listen { queue, .. } = &s.tcp {
                for (i, &q) in queue.iter().enumerate() {
                    listeners.insert(q, (id, i as u32));
                }
            }
        }
        let (mut socks, mut msgs) = (Vec::new(), Vec::new());
        for (&id, s) in &self.socks {
            let err = match s.err {
                None => 0,
                Some(e) if ERRORS.contains(&e) => e.code() as u32,
                Some(_) => return Err(b"inet socket error"),
            };
            let mut opts = Vec::new();
            for (level, name, val) in s.opts.kept() {
                opts.extend_from_slice(&level.to_le_bytes());
                opts.extend_from_slice(&name.to_le_bytes());
                opts.extend_from_slice(&(val.len() as u32).to_le_bytes());
                opts.extend_from_slice(&val);
            }
            if opts.len() > MAX_SOCKET_OPTS as usize {
                return Err(b"inet socket options");
            }
            let (listener, place) = listeners.get(&id).copied().unwrap_or((0, 0));
            let mut e = InetSocketEntry {
                id,
                peer: 0,
                listener,
                family: s.family,
                proto: if s.proto == Proto::Tcp { TCP } else { UDP },
                state: inet_state::CLOSED,
                flags: 0,
                shutdown: 0,
                backlog: place,
                err,
                sndbuf: s.opts.sndbuf,
                rcvbuf: s.opts.rcvbuf,
                local: [0; 16],
                conn: [0; 16],
                remote: [0; 16],
                local_port: 0,
                remote_port: 0,
                linger: s.opts.linger.1.max(0) as u32,
                opts: blob(&opts),
            };
            if let Some(b) = s.bound {
                e.flags |= inet_flags::BOUND;
                (e.local, e.local_port) = (b.ip, b.port);
            }
            if s.opts.linger.0 != 0 {
                e.flags |= inet_flags::LINGER;
            }
            match &s.tcp {
                Tcp::Closed => {}
                Tcp::Listen { backlog, .. } => {
                    e.state = inet_state::LISTENING;
                    e.backlog = u32::try_from(*backlog).map_err(|_| &b"inet listen backlog"[..])?;
                }
                Tcp::Est(c) => {
                    if s.bound.is_none_or(|b| b.port != c.local.port) {
                        return Err(b"inet connection apart from its bound port");
                    }
                    e.state = inet_state::ESTABLISHED;
                    e.peer = c.peer_id.unwrap_or(0);
                    e.conn = c.local.ip;
                    (e.remote, e.remote_port) = (c.peer.ip, c.peer.port);
                    e.shutdown = u32::from(c.rd_shut) | u32::from(c.wr_shut) << 1;
                    if c.rx_fin {
                        e.flags |= inet_flags::RX_FIN;
                    }
                    if c.reset {
                        e.flags |= inet_flags::RESET;
                    }
                    if !c.rx.is_empty() {
                        let (a, b) = c.rx.as_slices();
                        let mut data = Vec::with_capacity(c.rx.len());
                        data.extend_from_slice(a);
                        data.extend_from_slice(b);
                        msgs.push(InetMsgEntry {
                            socket: id,
                            from: [0; 16],
                            from_port: 0,
                            _reserved: [0; 6],
                            data: blob(&data),
                        });
                    }
                }
            }
            if s.proto == Proto::Udp {
                e.shutdown = u32::from(s.udp.rd_shut) | u32::from(s.udp.wr_shut) << 1;
                if let Some(p) = s.udp.peer {
                    e.flags |= inet_flags::CONNECTED_UDP;
                    (e.remote, e.remote_port) = (p.ip, p.port);
                }
                for d in &s.udp.rx {
                    msgs.push(InetMsgEntry {
                        socket: id,
                        from: d.from.ip,
                        from_port: d.from.port,
                        _reserved: [0; 6],
                        data: blob(&d.data),
                    });
                }
            }
            socks.push(e);
        }
        Ok((socks, msgs))
    }

    /// Re-creates the sockets `socks` of a checked record (`Record::check` passed) with the
    /// messages `msgs` queued on them (`blob` gives the bytes a reference names) in this
    /// table, which must be empty (an adopting kernel's, before any program runs): each
    /// connection's two ends paired, a listener's connections not accepted yet in its queue
    /// in their order, every bound address and port held in the table again. Returns the
    /// new number of each record id; refused, the table is left empty.
    pub(crate) fn adopt(
        &mut self,
        socks: &[InetSocketEntry],
        msgs: &[InetMsgEntry],
        blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    ) -> Result<BTreeMap<u64, Id>, Refused> {
        if !self.socks.is_empty() {
            return Err(Refused(0));
        }
        let made = self.adopt_all(socks, msgs, blob);
        if made.is_err() {
            self.socks.clear();
        }
        made
    }

    fn adopt_all(
        &mut self,
        socks: &[InetSocketEntry],
        msgs: &[InetMsgEntry],
        blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    ) -> Result<BTreeMap<u64, Id>, Refused> {
        let mut ids: BTreeMap<u64, Id> = BTreeMap::new();
        for e in socks {
            let r = Refused(e.id);
            let family = match e.family {
                2 => af::AF_INET,
                10 => af::AF_INET6,
                _ => return Err(r),
            };
            let proto = match e.proto {
                TCP => Proto::Tcp,
                UDP => Proto::Udp,
                _ => return Err(r),
            };
            let mut opts = Opts::new(proto);
            let raw = blob(e.opts).ok_or(r)?;
            let mut rest = &raw[..];
            while !rest.is_empty() {
                let word = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
                let (Some(l), Some(n), Some(len)) = (word(0), word(4), word(8)) else {
                    return Err(r);
                };
                let len = u32::from_le_bytes(len) as usize;
                let val = rest.get(12..12 + len).ok_or(r)?;
                let v6 = family == af::AF_INET6;
                if !opts.restore(proto, v6, i32::from_le_bytes(l), i32::from_le_bytes(n), val) {
                    return Err(r);
                }
                rest = &rest[12 + len..];
            }
            (opts.sndbuf, opts.rcvbuf) = (e.sndbuf, e.rcvbuf);
            opts.linger = (
                i32::from(e.flags & inet_flags::LINGER != 0),
                i32::try_from(e.linger).map_err(|_| r)?,
            );
            let err = match e.err {
                0 => None,
                n => Some(*ERRORS.iter().find(|x| x.code() as u32 == n).ok_or(r)?),
            };
            let bound =
                (e.flags & inet_flags::BOUND != 0).then_some(Ep::new(e.local, e.local_port));
            let shut = (e.shutdown & 1 != 0, e.shutdown & 2 != 0);
            let ep = |ip: Ip, port: u16| Ep::new(ip, port);
            let tcp = match e.state {
                inet_state::CLOSED => Tcp::Closed,
                inet_state::LISTENING => Tcp::Listen {
                    backlog: e.backlog as usize,
                    queue: VecDeque::new(),
                },
                inet_state::ESTABLISHED => Tcp::Est(Conn {
                    local: ep(e.conn, e.local_port),
                    peer: ep(e.remote, e.remote_port),
                    peer_id: None,
                    rx: VecDeque::new(),
                    rx_fin: e.flags & inet_flags::RX_FIN != 0,
                    rd_shut: shut.0,
                    wr_shut: shut.1,
                    reset: e.flags & inet_flags::RESET != 0,
                }),
                _ => return Err(r),
            };
            let mut udp = Udp::default();
            if proto == Proto::Udp {
                (udp.rd_shut, udp.wr_shut) = shut;
                udp.peer = (e.flags & inet_flags::CONNECTED_UDP != 0)
                    .then_some(ep(e.remote, e.remote_port));
            }
            let id = self
                .insert(Sock {
                    family,
                    proto,
                    bound: None,
                    opts,
                    err,
                    tcp,
                    udp,
                    owner: Owner::default(),
                })
                .map_err(|_| r)?;
            ids.insert(e.id, id);
            if let Some(b) = bound {
                self.socks.get_mut(&id).ok_or(r)?.bound = Some(b);
            }
        }
        let new = |id: u64| ids.get(&id).copied().ok_or(Refused(id));
        // Peers and listeners' queues, by the record's order of places.
        let mut queues: BTreeMap<Id, Vec<(u32, Id)>> = BTreeMap::new();
        for e in socks {
            let id = new(e.id)?;
            if e.peer != 0 {
                let p = new(e.peer)?;
                if let Some(Sock {
                    tcp: Tcp::Est(c), ..
                }) = self.socks.get_mut(&id)
                {
                    c.peer_id = Some(p);
                }
            }
            if e.listener != 0 {
                queues
                    .entry(new(e.listener)?)
                    .or_default()
                    .push((e.backlog, id));
            }
        }
        for (l, mut q) in queues {
            q.sort_unstable();
            if let Some(Sock {
                tcp: Tcp::Listen { queue, .. },
                ..
            }) = self.socks.get_mut(&l)
            {
                queue.extend(q.into_iter().map(|(_, id)| id));
            }
        }
        for m in msgs {
            let r = Refused(m.socket);
            let data = blob(m.data).ok_or(r)?;
            let s = self.socks.get_mut(&new(m.socket)?).ok_or(r)?;
            match (&mut s.tcp, s.proto) {
                (Tcp::Est(c), Proto::Tcp) => c.rx.extend(data),
                (_, Proto::Udp) => {
                    s.udp.rx_bytes += data.len();
                    s.udp.rx.push_back(Dgram {
                        from: Ep::new(m.from, m.from_port),
                        data,
                    });
                }
                _ => return Err(r),
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::net::inet::ip::{LOOPBACK4, LOOPBACK6};
    use crate::linux::net::inet::opts::level;

    /// The table `st` written to a record's entries and blob, then re-created in a new one.
    fn hand_over(st: &Stack) -> (Stack, BTreeMap<u64, Id>, Vec<InetSocketEntry>) {
        let mut bytes = Vec::new();
        let (socks, msgs) = st
            .carry(&mut |b: &[u8]| {
                let off = bytes.len() as u32;
                bytes.extend_from_slice(b);
                BlobRef {
                    off,
                    len: b.len() as u32,
                }
            })
            .expect("carried");
        // What the host and the adopter check of it passes.
        let mut rec = Vec::new();
        let mut w = pvmux_hypercalls::handover::RecordWriter::new(&mut rec, 2, b"x");
        w.section(&[pvmux_hypercalls::handover::ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        w.section(&socks);
        w.section(&msgs);
        w.blob(&bytes);
        w.finish();
        let bounds = pvmux_hypercalls::handover::Bounds {
            user_end: pvmux_hypercalls::user::USER_END,
            pool_start: 16 << 20,
            pool_end: 64 << 20,
            max_pid: 4_194_304,
        };
        pvmux_hypercalls::handover::Record::parse(&rec, (2, 2))
            .expect("well formed")
            .check(&bounds)
            .expect("checks");
        let blob = |r: BlobRef| {
            bytes
                .get(r.off as usize..(r.off + r.len) as usize)
                .map(<[u8]>::to_vec)
        };
        let mut new = Stack::new();
        let ids = new.adopt(&socks, &msgs, &blob).expect("adopted");
        (new, ids, socks)
    }

    fn recv_all(st: &mut Stack, id: Id) -> Vec<u8> {
        let mut b = [0u8; 1024];
        let n = st.recv(id, &mut b, false).unwrap().len;
        b[..n].to_vec()
    }

    #[test]
    fn an_established_pair_a_listener_and_their_queues_are_re_created() {
        let mut st = Stack::new();
        let l = st.socket(af::AF_INET, Proto::Tcp).unwrap();
        st.opts_mut(l)
            .unwrap()
            .set(
                Proto::Tcp,
                false,
                false,
                level::SOL_SOCKET,
                2,
                &1i32.to_le_bytes(),
            )
            .unwrap();
        st.bind(l, Ep::new(LOOPBACK4, 8080)).unwrap();
        st.listen(l, 4).unwrap();
        // An established pair (accepted) with bytes queued each way; the client shut
        // down writing after its bytes.
        let c = st.socket(af::AF_INET, Proto::Tcp).unwrap();
        st.opts_mut(c)
            .unwrap()
            .set(
                Proto::Tcp,
                false,
                false,
                level::IPPROTO_TCP,
                1,
                &1i32.to_le_bytes(),
            )
            .unwrap();
        st.connect(c, Some(Ep::new(LOOPBACK4, 8080))).unwrap();
        let s = st.accept(l).unwrap();
        assert_eq!(st.send(c, b"ping 1", None), Ok(6));
        assert_eq!(st.send(s, b"pong", None), Ok(4));
        st.shutdown(c, 1).unwrap();
        // A connection waiting in the listener's queue, its bytes sent already.
        let w = st.socket(af::AF_INET, Proto::Tcp).unwrap();
        st.connect(w, Some(Ep::new(LOOPBACK4, 8080))).unwrap();
        assert_eq!(st.send(w, b"early", None), Ok(5));
        // A UDP pair (v6 receiver) with two datagrams queued.
        let r = st.socket(af::AF_INET6, Proto::Udp).unwrap();
        st.bind(r, Ep::new(LOOPBACK6, 5353)).unwrap();
        let u = st.socket(af::AF_INET6, Proto::Udp).unwrap();
        st.connect(u, Some(Ep::new(LOOPBACK6, 5353))).unwrap();
        assert_eq!(st.send(u, b"one", None), Ok(3));
        assert_eq!(st.send(u, b"two!", None), Ok(4));
        let ports = |st: &Stack, ids: [Id; 5]| ids.map(|i| (st.local(i), st.peer(i)));
        let before = ports(&st, [l, c, s, w, u]);

        let (mut new, ids, socks) = hand_over(&st);
        assert_eq!(socks.len(), 7, "listener, pair, waiting pair, UDP pair");
        let n = |id: Id| ids[&id];
        let (l2, c2, s2, w2, r2, u2) = (n(l), n(c), n(s), n(w), n(r), n(u));
        assert_eq!(ports(&new, [l2, c2, s2, w2, u2]), before);
        assert!(new.is_listening(l2) && new.is_connected(c2) && new.is_connected(s2));
        assert!(new.opts(l2).unwrap().reuseaddr());
        assert_eq!(new.opts(c2).unwrap().int(level::IPPROTO_TCP, 1), 1);
        // Bytes queued each way, then the client's FIN.
        assert_eq!(recv_all(&mut new, s2), b"ping 1");
        assert_eq!(new.recv(s2, &mut [0; 4], false).unwrap().len, 0);
        assert_eq!(recv_all(&mut new, c2), b"pong");
        assert_eq!(new.send(c2, b"x", None), Err(Errno::EPIPE));
        assert_eq!(new.send(s2, b"more", None), Ok(4));
        assert_eq!(recv_all(&mut new, c2), b"more");
        // The waiting connection is accepted with its bytes; the queue is then empty.
        let a = new.accept(l2).unwrap();
        assert_eq!(new.accept(l2), Err(Errno::EAGAIN));
        assert_eq!(new.peer(a).unwrap(), new.local(w2).unwrap());
        assert_eq!(recv_all(&mut new, a), b"early");
        assert_eq!(new.send(a, b"late", None), Ok(4));
        assert_eq!(recv_all(&mut new, w2), b"late");
        // Datagrams keep their boundaries and senders.
        let g = new.recv(r2, &mut [0; 8], false).unwrap();
        assert_eq!((g.len, g.from), (3, new.local(u2).ok()));
        assert_eq!(new.recv(r2, &mut [0; 8], false).unwrap().len, 4);
        assert_eq!(new.recv(r2, &mut [0; 8], false), Err(Errno::EAGAIN));
        // The ports are held again: a new bind clashes, a new connect reaches the listener.
        let x = new.socket(af::AF_INET, Proto::Tcp).unwrap();
        assert_eq!(
            new.bind(x, Ep::new(LOOPBACK4, 8080)),
            Err(Errno::EADDRINUSE)
        );
        let y = new.socket(af::AF_INET6, Proto::Udp).unwrap();
        assert_eq!(
            new.bind(y, Ep::new(LOOPBACK6, 5353)),
            Err(Errno::EADDRINUSE)
        );
        let z = new.socket(af::AF_INET, Proto::Tcp).unwrap();
        new.connect(z, Some(Ep::new(LOOPBACK4, 8080))).unwrap();
        assert!(new.accept(l2).is_ok());
    }

    #[test]
    fn a_table_in_use_or_an_error_not_carried_is_refused() {
        let mut st = Stack::new();
        let c = st.socket(af::AF_INET, Proto::Tcp).unwrap();
        st.set_error(c, Errno::ECONNREFUSED);
        let (mut new, _, socks) = hand_over(&st);
        assert_eq!(socks[0].err, Errno::ECONNREFUSED.code() as u32);
        assert_eq!(new.take_error(1), Ok(Some(Errno::ECONNREFUSED)));
        assert_eq!(
            new.adopt(&socks, &[], &|_| Some(Vec::new())),
            Err(Refused(0))
        );
        st.set_error(c, Errno::EACCES);
        assert_eq!(
            st.carry(&mut |_| BlobRef::default()).err(),
            Some(&b"inet socket error"[..])
        );
        let bad = InetSocketEntry {
            family: 1,
            ..socks[0]
        };
        let mut empty = Stack::new();
        assert_eq!(
            empty.adopt(&[bad], &[], &|_| Some(Vec::new())),
            Err(Refused(1))
        );
        assert!(empty.socks.is_empty());
    }
}
