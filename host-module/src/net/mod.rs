//! Host networking for a tenant (`pvmux run --net host`, `--publish`): host sockets opened,
//! used and closed by the host on the guest's behalf through hypercalls 11..=24
//! ([`pvmux_hypercalls::net`], docs/ABI.md §net). The sandbox processes keep no socket
//! system call (their seccomp filters are unchanged): every socket is the host's, named to
//! the guest by a handle, and every argument is validated here (handles, address families,
//! socket types — TCP and UDP only, never raw —, guest memory ranges, lengths, options from
//! a fixed list) with a per-tenant limit on the sockets held.
//!
//! Host sockets are non-blocking: a call that would block returns `Busy` and arms the
//! [`watch`] thread, which raises `pending::NET` on vCPU 0 once the socket is ready (the
//! guest then retries). `--publish` listeners live in the same thread: each connection they
//! accept becomes a handle queued for `NetPublished`. A `/udp` rule's socket lives there too:
//! each host client (source address) that sends to it gets a **flow** (`Flow`), a handle
//! queued for `NetPublished` that carries that client's datagrams (`NetRecv`) and the
//! guest's replies (`NetSend`, from the published socket to the client) — docker-proxy's UDP
//! flow table, with an idle timeout and per-tenant limits on flows and queued datagrams.

mod sock;
pub mod watch;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::net::{
    errno_ret, recv, NetAddr, NetPublish, DEFAULT_MAX_SOCKETS, INT_OPTS, IO_MAX, MAX_UDP_FLOWS,
    MAX_UDP_FLOW_QUEUED, MAX_UDP_QUEUED, PUBLISH_TCP, PUBLISH_UDP, READ_ONLY_OPTS,
    UDP_FLOW_IDLE_SECS,
};
use pvmux_hypercalls::{HcError, Hypercall};
use zerocopy::{FromBytes, IntoBytes};

use crate::GuestMemory;

/// Transport protocol of a `--publish` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishProto {
    /// TCP.
    Tcp,
    /// UDP: datagrams, relayed per host client (flow).
    Udp,
}

/// One `--publish [IP:]HOSTPORT:GUESTPORT[/PROTO]` rule: the host listens (TCP) or binds
/// (UDP) on `host` and hands each connection, or each client's datagrams, to the guest's
/// socket on `guest_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Where the host listens.
    pub host: SocketAddr,
    /// The guest port.
    pub guest_port: u16,
    /// The protocol.
    pub proto: PublishProto,
}

/// A tenant's networking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// `--net host`: the guest's internet sockets are host sockets.
    pub host: bool,
    /// `--publish` rules.
    pub publish: Vec<Publish>,
    /// Most host sockets the tenant may hold at once (0: [`DEFAULT_MAX_SOCKETS`]).
    pub max_sockets: usize,
}

impl NetConfig {
    /// True if the tenant gets any host networking.
    pub fn enabled(&self) -> bool {
        self.host || !self.publish.is_empty()
    }
}

/// One host socket of the guest.
struct Entry {
    /// The socket (a flow's: its rule's published UDP socket, shared).
    fd: Arc<OwnedFd>,
    /// A connection a `--publish` listener accepted (usable in every mode).
    published: bool,
    /// A `--publish .../udp` flow: the handle is not the socket itself.
    flow: Option<Flow>,
}

/// The datagrams of one host client of a `/udp` rule.
struct Flow {
    /// Index of the rule in [`NetConfig::publish`].
    rule: usize,
    /// The client, where `NetSend` sends.
    client: SocketAddr,
    /// Datagrams from the client not yet taken by `NetRecv`.
    queue: VecDeque<Vec<u8>>,
    /// The last datagram either way.
    last: Instant,
    /// Idle too long: `NetRecv` says `ETIMEDOUT`, the client's next datagram opens a new flow.
    expired: bool,
}

#[derive(Default)]
struct Table {
    socks: HashMap<u64, Entry>,
    next: u64,
    /// Published connections and flows not yet taken by `NetPublished`.
    queue: VecDeque<(u64, NetPublish)>,
    /// Live flows by (rule, client).
    flows: HashMap<(usize, SocketAddr), u64>,
    /// Datagrams queued in all flows.
    queued: usize,
}

impl Table {
    /// A datagram from `from` to `/udp` rule `rule` (published socket `fd`, guest port
    /// `guest_port`): queued in the client's flow, opened if new (false: dropped, at a
    /// limit; `limit`: the tenant's socket limit).
    #[allow(clippy::too_many_arguments)]
    fn datagram(
        &mut self,
        limit: usize,
        rule: usize,
        fd: &Arc<OwnedFd>,
        guest_port: u16,
        data: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> bool {
        if self.queued >= MAX_UDP_QUEUED {
            return false;
        }
        let h = match self.flows.get(&(rule, from)) {
            Some(&h) => h,
            None => {
                if self.flows.len() >= MAX_UDP_FLOWS || self.socks.len() >= limit {
                    return false;
                }
                self.next += 1;
                let h = self.next;
                let flow = Flow {
                    rule,
                    client: from,
                    queue: VecDeque::new(),
                    last: now,
                    expired: false,
                };
                self.socks.insert(
                    h,
                    Entry {
                        fd: Arc::clone(fd),
                        published: true,
                        flow: Some(flow),
                    },
                );
                self.flows.insert((rule, from), h);
                let rec = NetPublish {
                    guest_port,
                    proto: PUBLISH_UDP,
                    reserved: [0; 5],
                    peer: sock::from_std(&from),
                };
                self.queue.push_back((h, rec));
                h
            }
        };
        let Some(f) = self.socks.get_mut(&h).and_then(|e| e.flow.as_mut()) else {
            return false;
        };
        if f.queue.len() >= MAX_UDP_FLOW_QUEUED {
            return false;
        }
        f.queue.push_back(data.to_vec());
        f.last = now;
        self.queued += 1;
        true
    }

    /// Ends the flows idle for `idle` at `now` (those the guest has not taken yet go at
    /// once); true if any did.
    fn expire(&mut self, now: Instant, idle: Duration) -> bool {
        let old: Vec<u64> = self
            .socks
            .iter()
            .filter_map(|(h, e)| {
                let f = e.flow.as_ref()?;
                (!f.expired && now.saturating_duration_since(f.last) >= idle).then_some(*h)
            })
            .collect();
        for h in &old {
            self.end_flow(*h);
            if let Some(i) = self.queue.iter().position(|(q, _)| q == h) {
                self.queue.remove(i);
                self.socks.remove(h);
            }
        }
        !old.is_empty()
    }

    /// Ends flow `h`: its datagrams dropped, its client free for a new flow.
    fn end_flow(&mut self, h: u64) {
        let Some(f) = self.socks.get_mut(&h).and_then(|e| e.flow.as_mut()) else {
            return;
        };
        self.queued -= f.queue.len();
        f.queue.clear();
        f.expired = true;
        let key = (f.rule, f.client);
        if self.flows.get(&key) == Some(&h) {
            self.flows.remove(&key);
        }
    }

    /// Whether `h` is a published connection or flow the guest has taken (`NetPublished`).
    fn taken_published(&self, h: u64) -> bool {
        self.socks
            .get(&h)
            .is_some_and(|e| e.published || e.flow.is_some())
            && !self.queue.iter().any(|&(q, _)| q == h)
    }

    /// The handles neither in `keep` nor waiting for `NetPublished`.
    fn not_kept(&self, keep: &std::collections::HashSet<u64>) -> Vec<u64> {
        let queued: std::collections::HashSet<u64> = self.queue.iter().map(|&(h, _)| h).collect();
        self.socks
            .keys()
            .filter(|h| !keep.contains(h) && !queued.contains(h))
            .copied()
            .collect()
    }

    /// The flow of handle `h`, if it is one.
    fn flow_mut(&mut self, h: u64) -> Option<&mut Flow> {
        self.socks.get_mut(&h).and_then(|e| e.flow.as_mut())
    }
}

/// The host sockets of one tenant.
pub struct HostNet {
    cfg: NetConfig,
    table: Mutex<Table>,
    watch: watch::Watch,
}

impl std::fmt::Debug for HostNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostNet")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A socket error as the call's result.
fn errno(e: std::io::Error) -> i64 {
    errno_ret(e.raw_os_error().unwrap_or(libc::EIO))
}

impl HostNet {
    /// Opens the `--publish` listeners (failing if one cannot listen) and starts the watch
    /// thread; `raise` raises `pending::NET` on the guest.
    pub fn start(cfg: NetConfig, raise: Arc<dyn Fn() + Send + Sync>) -> std::io::Result<Arc<Self>> {
        let mut listeners = Vec::new();
        for p in &cfg.publish {
            let fd = match p.proto {
                PublishProto::Tcp => {
                    let l = std::net::TcpListener::bind(p.host)?;
                    l.set_nonblocking(true)?;
                    OwnedFd::from(l)
                }
                PublishProto::Udp => {
                    let u = std::net::UdpSocket::bind(p.host)?;
                    u.set_nonblocking(true)?;
                    OwnedFd::from(u)
                }
            };
            listeners.push((Arc::new(fd), *p));
        }
        let net = Arc::new_cyclic(|weak: &std::sync::Weak<Self>| {
            let w = weak.clone();
            let accepted = move |fd: OwnedFd, p: &Publish, peer: NetAddr| {
                w.upgrade().is_some_and(|n| n.publish_accepted(fd, p, peer))
            };
            let w = weak.clone();
            let datagram = move |rule: usize, fd: &Arc<OwnedFd>, data: &[u8], from: SocketAddr| {
                w.upgrade().is_some_and(|n| {
                    let port = n.cfg.publish[rule].guest_port;
                    let limit = n.limit();
                    n.table()
                        .datagram(limit, rule, fd, port, data, from, Instant::now())
                })
            };
            let w = weak.clone();
            let tick = move || {
                w.upgrade().is_some_and(|n| {
                    n.table()
                        .expire(Instant::now(), Duration::from_secs(UDP_FLOW_IDLE_SECS))
                })
            };
            let hooks = watch::Hooks {
                accepted: Box::new(accepted),
                datagram: Box::new(datagram),
                tick: Box::new(tick),
            };
            Self {
                watch: watch::Watch::start(listeners, raise, hooks),
                cfg,
                table: Mutex::new(Table::default()),
            }
        });
        Ok(net)
    }

    /// Kernel hand-over: whether `handle` is a host socket the guest holds of its own (made
    /// by `NetSocket` or `NetAccept`; not a `--publish` connection or flow, which the old
    /// kernel's relays served).
    pub(crate) fn holds(&self, handle: u64) -> bool {
        self.table()
            .socks
            .get(&handle)
            .is_some_and(|e| !e.published && e.flow.is_none())
    }

    /// The `--publish` connections and flows the guest took (`NetPublished`) and has not
    /// closed: what a snapshot cannot carry.
    pub(crate) fn taken_published(&self) -> usize {
        let t = self.table();
        t.socks.keys().filter(|&&h| t.taken_published(h)).count()
    }

    /// Kernel hand-over: whether `handle` is a `--publish` connection or flow the guest
    /// took (`NetPublished`): what a relay of the old kernel served.
    pub(crate) fn relays(&self, handle: u64) -> bool {
        self.table().taken_published(handle)
    }

    /// Kernel hand-over, once the old kernel is stopped: closes every host socket the
    /// adopted record does not name (`keep`) and no published connection waiting for
    /// `NetPublished` is: nothing would ever close them.
    pub(crate) fn keep_only(&self, keep: &std::collections::HashSet<u64>) {
        let gone: Vec<u64> = {
            let mut t = self.table();
            let gone = t.not_kept(keep);
            for h in &gone {
                t.end_flow(*h);
                t.socks.remove(h);
            }
            gone
        };
        for h in gone {
            self.watch.disarm(h);
        }
    }

    fn limit(&self) -> usize {
        if self.cfg.max_sockets == 0 {
            DEFAULT_MAX_SOCKETS
        } else {
            self.cfg.max_sockets
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `fd` as a new handle (`None` at the limit: the socket is closed).
    fn insert(&self, fd: OwnedFd, published: bool) -> Option<u64> {
        let mut t = self.table();
        if t.socks.len() >= self.limit() {
            return None;
        }
        t.next += 1;
        let h = t.next;
        t.socks.insert(
            h,
            Entry {
                fd: Arc::new(fd),
                published,
                flow: None,
            },
        );
        Some(h)
    }

    /// A `--publish` listener accepted `fd`: queued for `NetPublished` (false: refused).
    fn publish_accepted(&self, fd: OwnedFd, p: &Publish, peer: NetAddr) -> bool {
        let Some(h) = self.insert(fd, true) else {
            return false;
        };
        let rec = NetPublish {
            guest_port: p.guest_port,
            proto: PUBLISH_TCP,
            reserved: [0; 5],
            peer,
        };
        self.table().queue.push_back((h, rec));
        true
    }

    /// The socket of handle `h` (published ones in every mode, others only with `--net
    /// host`).
    fn sock(&self, h: u64) -> Result<Arc<OwnedFd>, HcError> {
        let t = self.table();
        let e = t.socks.get(&h).ok_or(HcError::InvalidArgument)?;
        if !e.published && !self.cfg.host {
            return Err(HcError::UnknownCall);
        }
        if e.flow.is_some() {
            // A flow is not a socket of its own (binding, listening... make no sense).
            return Err(HcError::InvalidArgument);
        }
        Ok(Arc::clone(&e.fd))
    }

    /// True if handle `h` is a `/udp` flow.
    fn is_flow(&self, h: u64) -> bool {
        self.table().flow_mut(h).is_some()
    }

    fn host_only(&self) -> Result<(), HcError> {
        if self.cfg.host {
            Ok(())
        } else {
            Err(HcError::UnknownCall)
        }
    }
}

fn read_addr(mem: &GuestMemory, gpa: u64) -> Result<NetAddr, HcError> {
    let mut a = NetAddr::default();
    mem.read(gpa, a.as_mut_bytes())
        .map_err(|_| HcError::BadAddress)?;
    Ok(a)
}

fn write_addr(mem: &GuestMemory, gpa: u64, a: &NetAddr) -> Result<(), HcError> {
    if gpa == 0 {
        return Ok(());
    }
    mem.write(gpa, a.as_bytes())
        .map_err(|_| HcError::BadAddress)
}

/// Handles network hypercall `call` (`None` for the tenant: no host networking).
pub(crate) fn hc(mem: &GuestMemory, net: Option<&HostNet>, call: Hypercall, a: [u64; 6]) -> i64 {
    match net {
        None => HcError::UnknownCall.to_ret(),
        Some(n) => match dispatch(mem, n, call, a) {
            Ok(v) => v,
            Err(e) => e.to_ret(),
        },
    }
}

fn dispatch(mem: &GuestMemory, n: &HostNet, call: Hypercall, a: [u64; 6]) -> Result<i64, HcError> {
    let ok = |r: std::io::Result<u64>| Ok(r.map_or_else(errno, |v| v as i64));
    if (Hypercall::NetSend as u64..=Hypercall::NetGetOpt as u64).contains(&(call as u64))
        && n.is_flow(a[0])
    {
        return flow_call(mem, n, call, a);
    }
    match call {
        Hypercall::NetSocket => {
            n.host_only()?;
            let fd = match sock::socket(a[0], a[1]) {
                Ok(fd) => fd,
                Err(sock::Refused::Invalid) => return Err(HcError::InvalidArgument),
                Err(sock::Refused::Os(e)) => return Ok(errno(e)),
            };
            n.insert(fd, false)
                .map(|h| h as i64)
                .ok_or(HcError::NoResources)
        }
        Hypercall::NetBind => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let addr = sock::to_std(&read_addr(mem, a[1])?).ok_or(HcError::InvalidArgument)?;
            ok(sock::bind(&fd, &addr).map(|()| 0))
        }
        Hypercall::NetListen => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let backlog = i32::try_from(a[1].min(4096)).map_err(|_| HcError::InvalidArgument)?;
            ok(sock::listen(&fd, backlog).map(|()| 0))
        }
        Hypercall::NetAccept => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            mem.check_range(a[1], if a[1] == 0 { 0 } else { 24 })
                .map_err(|_| HcError::BadAddress)?;
            match sock::accept(&fd) {
                Ok((nfd, peer)) => {
                    let h = n.insert(nfd, false).ok_or(HcError::NoResources)?;
                    write_addr(mem, a[1], &sock::from_std(&peer))?;
                    Ok(h as i64)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLIN);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetConnect => {
            n.host_only()?;
            let fd = n.sock(a[0])?;
            let addr = sock::to_std(&read_addr(mem, a[1])?).ok_or(HcError::InvalidArgument)?;
            ok(sock::connect(&fd, &addr).map(|()| 0))
        }
        Hypercall::NetSend => {
            let fd = n.sock(a[0])?;
            let len = a[2].min(IO_MAX) as usize;
            let data = mem.read_vec(a[1], len).map_err(|_| HcError::BadAddress)?;
            let to = if a[3] == 0 {
                None
            } else {
                Some(sock::to_std(&read_addr(mem, a[3])?).ok_or(HcError::InvalidArgument)?)
            };
            match sock::send(&fd, &data, to.as_ref()) {
                Ok(k) => Ok(k as i64),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLOUT);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetRecv => {
            let fd = n.sock(a[0])?;
            let len = a[2].min(IO_MAX);
            mem.check_range(a[1], len)
                .map_err(|_| HcError::BadAddress)?;
            if a[4] & !recv::PEEK != 0 {
                return Err(HcError::InvalidArgument);
            }
            let mut buf = vec![0u8; len as usize];
            match sock::recv(&fd, &mut buf, a[4] & recv::PEEK != 0) {
                Ok((k, from)) => {
                    mem.write(a[1], &buf[..k])
                        .map_err(|_| HcError::BadAddress)?;
                    if let Some(f) = from {
                        write_addr(mem, a[3], &sock::from_std(&f))?;
                    }
                    Ok(k as i64)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(a[0], fd, libc::POLLIN);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetShutdown => {
            let fd = n.sock(a[0])?;
            let how = i32::try_from(a[1]).ok().filter(|h| (0..=2).contains(h));
            ok(sock::shutdown(&fd, how.ok_or(HcError::InvalidArgument)?).map(|()| 0))
        }
        Hypercall::NetClose => {
            n.sock(a[0])?;
            n.table().socks.remove(&a[0]);
            n.watch.disarm(a[0]);
            Ok(0)
        }
        Hypercall::NetPoll => {
            let fd = n.sock(a[0])?;
            let events = i16::try_from(a[1]).map_err(|_| HcError::InvalidArgument)?;
            let rev = sock::poll_now(&fd, events);
            // Watch for the asked events that are not ready (a poller may wait for input on
            // a socket that is writable), unless it has an error or hung up.
            let missing = events & !rev;
            if missing != 0 && rev & (libc::POLLERR | libc::POLLHUP) == 0 {
                n.watch.arm(a[0], fd, missing);
            }
            Ok(i64::from(rev as u16))
        }
        Hypercall::NetName => {
            let fd = n.sock(a[0])?;
            let r = match a[1] {
                0 => sock::local_name(&fd),
                1 => sock::peer_name(&fd),
                _ => return Err(HcError::InvalidArgument),
            };
            match r {
                Ok(addr) => write_addr(mem, a[2], &sock::from_std(&addr)).map(|()| 0),
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetSetOpt | Hypercall::NetGetOpt => {
            let fd = n.sock(a[0])?;
            let (level, name) = (a[1] as i32, a[2] as i32);
            if a[1] > i32::MAX as u64
                || a[2] > i32::MAX as u64
                || !INT_OPTS.contains(&(level, name))
            {
                return Err(HcError::InvalidArgument);
            }
            if call == Hypercall::NetSetOpt {
                if READ_ONLY_OPTS.contains(&(level, name)) {
                    return Err(HcError::InvalidArgument);
                }
                ok(sock::setopt(&fd, level, name, a[3] as i32).map(|()| 0))
            } else {
                ok(sock::getopt(&fd, level, name).map(|v| u64::from(v as u32)))
            }
        }
        Hypercall::NetPublished => {
            mem.check_range(a[0], 32).map_err(|_| HcError::BadAddress)?;
            let next = n.table().queue.pop_front();
            match next {
                Some((h, rec)) => {
                    mem.write(a[0], rec.as_bytes())
                        .map_err(|_| HcError::BadAddress)?;
                    Ok(h as i64)
                }
                None => {
                    n.watch.want_published();
                    Err(HcError::Busy)
                }
            }
        }
        _ => Err(HcError::UnknownCall),
    }
}

/// Calls 16..=23 on `/udp` flow `a[0]`: `NetRecv` takes the client's next datagram,
/// `NetSend` (no destination) sends one to the client from the published socket.
fn flow_call(mem: &GuestMemory, n: &HostNet, call: Hypercall, a: [u64; 6]) -> Result<i64, HcError> {
    let h = a[0];
    let timed_out = Ok(errno_ret(libc::ETIMEDOUT));
    match call {
        Hypercall::NetSend => {
            let len = a[2].min(IO_MAX) as usize;
            let data = mem.read_vec(a[1], len).map_err(|_| HcError::BadAddress)?;
            if a[3] != 0 {
                // A flow has one peer: its client.
                return Err(HcError::InvalidArgument);
            }
            let (fd, client) = {
                let mut t = n.table();
                let fd = t.socks.get(&h).map(|e| Arc::clone(&e.fd));
                let f = t.flow_mut(h).ok_or(HcError::InvalidArgument)?;
                if f.expired {
                    return timed_out;
                }
                (fd.ok_or(HcError::InvalidArgument)?, f.client)
            };
            match sock::send(&fd, &data, Some(&client)) {
                Ok(k) => {
                    if let Some(f) = n.table().flow_mut(h) {
                        f.last = Instant::now();
                    }
                    Ok(k as i64)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    n.watch.arm(h, fd, libc::POLLOUT);
                    Err(HcError::Busy)
                }
                Err(e) => Ok(errno(e)),
            }
        }
        Hypercall::NetRecv => {
            let len = a[2].min(IO_MAX);
            mem.check_range(a[1], len)
                .map_err(|_| HcError::BadAddress)?;
            mem.check_range(a[3], if a[3] == 0 { 0 } else { 24 })
                .map_err(|_| HcError::BadAddress)?;
            if a[4] & !recv::PEEK != 0 {
                return Err(HcError::InvalidArgument);
            }
            let peek = a[4] & recv::PEEK != 0;
            let (d, client) = {
                let mut t = n.table();
                let Table { socks, queued, .. } = &mut *t;
                let f = socks
                    .get_mut(&h)
                    .and_then(|e| e.flow.as_mut())
                    .ok_or(HcError::InvalidArgument)?;
                let d = if peek {
                    f.queue.front().cloned()
                } else {
                    f.queue.pop_front()
                };
                match d {
                    Some(d) => {
                        if !peek {
                            *queued -= 1;
                        }
                        (d, f.client)
                    }
                    None if f.expired => return timed_out,
                    // Each datagram queued raises `pending::NET`: nothing to watch.
                    None => return Err(HcError::Busy),
                }
            };
            let k = d.len().min(len as usize);
            mem.write(a[1], &d[..k]).map_err(|_| HcError::BadAddress)?;
            write_addr(mem, a[3], &sock::from_std(&client))?;
            Ok(k as i64)
        }
        Hypercall::NetShutdown => {
            if a[1] > 2 {
                return Err(HcError::InvalidArgument);
            }
            Ok(0)
        }
        Hypercall::NetClose => {
            let mut t = n.table();
            t.end_flow(h);
            t.socks.remove(&h);
            drop(t);
            n.watch.disarm(h);
            Ok(0)
        }
        Hypercall::NetPoll => {
            let events = i16::try_from(a[1]).map_err(|_| HcError::InvalidArgument)?;
            let mut t = n.table();
            let f = t.flow_mut(h).ok_or(HcError::InvalidArgument)?;
            let mut rev = events & libc::POLLOUT;
            if !f.queue.is_empty() || f.expired {
                rev |= events & libc::POLLIN;
            }
            if f.expired {
                rev |= libc::POLLERR;
            }
            Ok(i64::from(rev as u16))
        }
        Hypercall::NetName => {
            let which = a[1];
            let (fd, client) = {
                let mut t = n.table();
                let fd = t.socks.get(&h).map(|e| Arc::clone(&e.fd));
                let f = t.flow_mut(h).ok_or(HcError::InvalidArgument)?;
                (fd.ok_or(HcError::InvalidArgument)?, f.client)
            };
            let addr = match which {
                0 => match sock::local_name(&fd) {
                    Ok(addr) => addr,
                    Err(e) => return Ok(errno(e)),
                },
                1 => client,
                _ => return Err(HcError::InvalidArgument),
            };
            write_addr(mem, a[2], &sock::from_std(&addr)).map(|()| 0)
        }
        Hypercall::NetSetOpt | Hypercall::NetGetOpt => {
            let (level, name) = (a[1] as i32, a[2] as i32);
            if a[1] > i32::MAX as u64
                || a[2] > i32::MAX as u64
                || !INT_OPTS.contains(&(level, name))
                || (call == Hypercall::NetSetOpt && READ_ONLY_OPTS.contains(&(level, name)))
            {
                return Err(HcError::InvalidArgument);
            }
            // The published socket is shared by every flow: its options are the host's.
            if call == Hypercall::NetGetOpt && (level, name) == (libc::SOL_SOCKET, libc::SO_ERROR) {
                return Ok(0);
            }
            Ok(errno_ret(libc::ENOPROTOOPT))
        }
        _ => Err(HcError::InvalidArgument),
    }
}

/// Reads a [`NetAddr`] back (for tests and the CLI).
pub fn addr_from_bytes(b: &[u8]) -> Option<NetAddr> {
    NetAddr::read_from_bytes(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_fd() -> Arc<OwnedFd> {
        Arc::new(OwnedFd::from(
            std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket"),
        ))
    }

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn each_client_gets_one_flow_with_its_datagrams_in_order() {
        let (mut t, fd, now) = (Table::default(), udp_fd(), Instant::now());
        assert!(t.datagram(256, 0, &fd, 53, b"a1", client(1000), now));
        assert!(t.datagram(256, 0, &fd, 53, b"b1", client(1001), now));
        assert!(t.datagram(256, 0, &fd, 53, b"a2", client(1000), now));
        assert_eq!(t.queue.len(), 2, "one NetPublished record per client");
        let (h, rec) = t.queue[0];
        assert_eq!(
            (rec.guest_port, rec.proto, rec.peer.port),
            (53, PUBLISH_UDP, 1000)
        );
        let f = t.flow_mut(h).unwrap();
        assert_eq!(f.queue, [b"a1".to_vec(), b"a2".to_vec()]);
        assert_eq!(t.queued, 3);
        // The same client on another rule is another flow.
        assert!(t.datagram(256, 1, &fd, 54, b"x", client(1000), now));
        assert_eq!(t.flows.len(), 3);
    }

    #[test]
    fn a_switch_keeps_what_the_record_names_and_what_waits_to_be_taken() {
        let (mut t, fd, now) = (Table::default(), udp_fd(), Instant::now());
        // Two flows: the guest took the first one, the second waits for `NetPublished`.
        assert!(t.datagram(256, 0, &fd, 53, b"a", client(1000), now));
        assert!(t.datagram(256, 0, &fd, 53, b"b", client(1001), now));
        let (taken, _) = t.queue.pop_front().unwrap();
        let (waiting, _) = t.queue[0];
        // And a socket of the guest's own (`--net host`).
        t.next += 1;
        let own = t.next;
        t.socks.insert(
            own,
            Entry {
                fd: udp_fd(),
                published: false,
                flow: None,
            },
        );
        assert!(t.taken_published(taken));
        assert!(!t.taken_published(waiting), "not the guest's yet");
        assert!(
            !t.taken_published(own),
            "a socket of its own, not a relay's"
        );
        assert!(!t.taken_published(own + 100));
        let keep: std::collections::HashSet<u64> = [taken].into();
        assert_eq!(t.not_kept(&keep), [own]);
        let none = std::collections::HashSet::new();
        let mut gone = t.not_kept(&none);
        gone.sort_unstable();
        assert_eq!(gone, [taken.min(own), taken.max(own)]);
    }

    #[test]
    fn flows_and_queued_datagrams_are_bounded() {
        let (mut t, fd, now) = (Table::default(), udp_fd(), Instant::now());
        for i in 0..MAX_UDP_FLOW_QUEUED {
            assert!(t.datagram(1000, 0, &fd, 9, &[i as u8], client(1), now));
        }
        assert!(
            !t.datagram(1000, 0, &fd, 9, b"x", client(1), now),
            "flow queue"
        );
        for p in 2..=MAX_UDP_FLOWS as u16 {
            assert!(t.datagram(1000, 0, &fd, 9, b"x", client(p), now));
        }
        assert!(
            !t.datagram(1000, 0, &fd, 9, b"x", client(5000), now),
            "flows"
        );
        assert_eq!(t.flows.len(), MAX_UDP_FLOWS);
        // The tenant's socket limit counts flows too.
        let mut small = Table::default();
        assert!(small.datagram(1, 0, &fd, 9, b"x", client(1), now));
        assert!(!small.datagram(1, 0, &fd, 9, b"x", client(2), now));
        // And the tenant's total of queued datagrams.
        let mut total = Table::default();
        let mut n = 0;
        for p in 0..MAX_UDP_FLOWS as u16 {
            for _ in 0..MAX_UDP_FLOW_QUEUED {
                n += usize::from(total.datagram(1000, 0, &fd, 9, b"x", client(p + 1), now));
            }
        }
        assert_eq!((n, total.queued), (MAX_UDP_QUEUED, MAX_UDP_QUEUED));
    }

    #[test]
    fn idle_flows_end_and_free_their_client_and_datagrams() {
        let (mut t, fd, now) = (Table::default(), udp_fd(), Instant::now());
        let idle = Duration::from_secs(UDP_FLOW_IDLE_SECS);
        assert!(t.datagram(256, 0, &fd, 9, b"a", client(1), now));
        assert!(t.datagram(256, 0, &fd, 9, b"b", client(2), now));
        // The guest takes client 1's flow; client 2's stays queued.
        let (h1, _) = t.queue.pop_front().unwrap();
        assert!(!t.expire(now + idle / 2, idle));
        assert!(t.expire(now + idle, idle));
        assert_eq!((t.queued, t.flows.len(), t.queue.len()), (0, 0, 0));
        assert!(
            t.flow_mut(h1).unwrap().expired,
            "taken: ends, kept for NetClose"
        );
        assert_eq!(t.socks.len(), 1, "not taken: gone");
        // Client 1 again: a new flow.
        assert!(t.datagram(256, 0, &fd, 9, b"c", client(1), now + idle));
        assert_ne!(t.queue[0].0, h1);
        t.end_flow(h1);
        assert_eq!(t.flows.len(), 1, "ending the old flow keeps the new one");
    }
}
