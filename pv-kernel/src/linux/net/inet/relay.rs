//! The relays of `--publish` connections and UDP flows: kernel threads between a
//! connection or flow the host accepted (a host handle, [`super::host::publish_pump`]) and
//! the guest's socket on the published port of the loopback (127.0.0.1, else ::1).
//!
//! * A **TCP** relay connects a loopback socket of its own to the guest's listener and
//!   moves bytes both ways, at most [`CHUNK`] held in each direction, until both directions
//!   have ended or one side fails.
//! * A **UDP** relay carries one host client's datagrams to the guest's UDP socket on the
//!   port from a loopback UDP socket of its own connected there (so the flow has its own
//!   guest source port and the guest's replies to it go back to that client), datagram by
//!   datagram; a datagram nobody is bound for is dropped, as Linux drops it. It ends when
//!   the host ends the flow (idle) or fails.
//!
//! **Hand-over.** Every relay is in [`RELAYS`] with its state, and changes it only inside
//! a kernel step ([`crate::linux::handover::kernel_step`]): while a record is written no
//! step runs, so [`carry`] reads each relay at rest — its handle, socket, the bytes it
//! holds each way and which directions ended (section 46). An adopter makes them again
//! ([`adopt`]) and starts them once the adoption is done ([`start_adopted`]).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use pvmux_hypercalls::handover::{relay_flags, BlobRef, RelayEntry, MAX_RELAY_BYTES};
use pvmux_hypercalls::net::{PUBLISH_TCP, PUBLISH_UDP};

use super::host::{self, HostSock};
use super::ip::{self, Ep};
use super::stack::{Id, Proto};
use super::{changed, STACK, STACK_SEQ, WAITERS};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::net::af;

/// The most bytes a relay reads at a time, and holds, in each direction.
const CHUNK: usize = MAX_RELAY_BYTES as usize;

/// Where a relay reaches the guest, in order of preference.
const DESTS: [(u16, ip::Ip); 2] = [(af::AF_INET, ip::LOOPBACK4), (af::AF_INET6, ip::LOOPBACK6)];

/// The index in [`DESTS`] of a socket of `family`.
fn dest_of(family: u16) -> usize {
    usize::from(family == af::AF_INET6)
}

/// Every live relay, by host handle.
static RELAYS: IrqLock<BTreeMap<u64, Arc<Relay>>> = IrqLock::new(BTreeMap::new());

/// One relay: its host connection or flow and what it holds.
pub(crate) struct Relay {
    hs: HostSock,
    state: spin::Mutex<State>,
}

enum State {
    Tcp(TcpRelay),
    Udp(UdpRelay),
}

/// A TCP relay's state.
struct TcpRelay {
    /// The guest port.
    port: u16,
    /// Its loopback socket (`None`: none yet; not connected until `connected`).
    id: Option<Id>,
    /// The index in [`DESTS`] it connects (or connected) to.
    dest: usize,
    connected: bool,
    /// Read from the host, not yet queued on the guest's socket.
    to_guest: Vec<u8>,
    /// Read from the guest, not yet sent to the host.
    to_host: Vec<u8>,
    host_eof: bool,
    guest_eof: bool,
}

/// A UDP relay's state.
struct UdpRelay {
    /// The guest port.
    port: u16,
    /// Its socket and the index in [`DESTS`] it is connected to.
    cur: Option<(Id, usize)>,
}

/// What a step did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Moved something: look again at once.
    Moved,
    /// Nothing to do: wait for the host or the loopback.
    Idle,
    /// The relay is over.
    Done,
}

/// Starts relaying published connection (or, `udp`, flow) `hs` to the guest's `port`: a
/// new kernel thread (none: the connection is closed).
pub(crate) fn start(hs: HostSock, port: u16, udp: bool) {
    let state = if udp {
        State::Udp(UdpRelay { port, cur: None })
    } else {
        State::Tcp(TcpRelay {
            port,
            id: None,
            dest: 0,
            connected: false,
            to_guest: Vec::new(),
            to_host: Vec::new(),
            host_eof: false,
            guest_eof: false,
        })
    };
    run_new(Relay {
        hs,
        state: spin::Mutex::new(state),
    });
}

/// Registers `r` and starts its thread.
fn run_new(r: Relay) {
    let h = r.hs.h;
    let r = Arc::new(r);
    RELAYS.lock().insert(h, Arc::clone(&r));
    let mine = Arc::clone(&r);
    if crate::sched::thread::spawn("net-relay", None, move || run(&mine)).is_err() {
        r.end();
    }
}

/// A relay's thread: one step after another, each inside a kernel step.
fn run(r: &Arc<Relay>) {
    let mut buf = alloc::vec![0u8; CHUNK];
    loop {
        let (seq_net, seq_stack) = (host::seq(), STACK_SEQ.load(Ordering::Acquire));
        let step = {
            let Some(_step) = crate::linux::handover::kernel_step() else {
                continue;
            };
            let s = r.step(&mut buf);
            if s == Step::Done {
                r.end();
            }
            s
        };
        match step {
            Step::Moved => {}
            Step::Idle => WAITERS.wait_until(|| {
                host::seq() != seq_net || STACK_SEQ.load(Ordering::Acquire) != seq_stack
            }),
            Step::Done => return,
        }
    }
}

impl Relay {
    fn step(&self, buf: &mut [u8]) -> Step {
        match &mut *self.state.lock() {
            State::Tcp(t) => t.step(&self.hs, buf),
            State::Udp(u) => u.step(&self.hs, buf),
        }
    }

    /// The relay is over: out of [`RELAYS`], its loopback socket closed (its host
    /// connection closes when the last reference goes).
    fn end(&self) {
        RELAYS.lock().remove(&self.hs.h);
        let id = match &mut *self.state.lock() {
            State::Tcp(t) => t.id.take(),
            State::Udp(u) => u.cur.take().map(|(id, _)| id),
        };
        if let Some(id) = id {
            STACK.lock().close(id);
            changed();
        }
    }
}

impl TcpRelay {
    fn step(&mut self, hs: &HostSock, buf: &mut [u8]) -> Step {
        let Some(id) = self.id.filter(|_| self.connected) else {
            return self.connect();
        };
        let mut moved = false;
        if self.to_guest.is_empty() && !self.host_eof {
            match hs.recv(buf, false, true) {
                Ok((0, _)) => {
                    self.host_eof = true;
                    moved = true;
                    let _ = STACK.lock().shutdown(id, 1);
                    changed();
                }
                Ok((n, _)) => {
                    self.to_guest.extend_from_slice(&buf[..n]);
                    moved = true;
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => return Step::Done,
            }
        }
        if !self.to_guest.is_empty() {
            let r = STACK.lock().send(id, &self.to_guest, None);
            match r {
                Ok(n) => {
                    self.to_guest.drain(..n);
                    moved = true;
                    changed();
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => return Step::Done,
            }
        }
        if self.to_host.is_empty() && !self.guest_eof {
            let r = STACK.lock().recv(id, buf, false);
            match r {
                Ok(g) if g.len == 0 => {
                    self.guest_eof = true;
                    moved = true;
                    let _ = hs.shutdown(1);
                }
                Ok(g) => {
                    self.to_host.extend_from_slice(&buf[..g.len]);
                    moved = true;
                    changed();
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => return Step::Done,
            }
        }
        if !self.to_host.is_empty() {
            match hs.send(&self.to_host, None, true) {
                Ok(n) => {
                    self.to_host.drain(..n);
                    moved = true;
                }
                Err(Errno::EAGAIN) => {}
                Err(_) => return Step::Done,
            }
        }
        if self.host_eof && self.guest_eof && self.to_guest.is_empty() && self.to_host.is_empty() {
            Step::Done
        } else if moved {
            Step::Moved
        } else {
            Step::Idle
        }
    }

    /// Connects the relay's socket to the guest listener on its port (127.0.0.1, else
    /// ::1): `Idle` while the listener's queue is full, `Done` when neither listens.
    fn connect(&mut self) -> Step {
        while self.dest < DESTS.len() {
            let (family, addr) = DESTS[self.dest];
            let mut st = STACK.lock();
            let id = match self.id {
                Some(id) => id,
                None => match st.socket(family, Proto::Tcp) {
                    Ok(id) => *self.id.insert(id),
                    Err(_) => return Step::Done,
                },
            };
            match st.connect(id, Some(Ep::new(addr, self.port))) {
                Ok(()) => {
                    self.connected = true;
                    drop(st);
                    changed();
                    return Step::Moved;
                }
                Err(Errno::EAGAIN) => return Step::Idle,
                Err(_) => {
                    st.close(id);
                    self.id = None;
                    self.dest += 1;
                }
            }
        }
        changed();
        Step::Done
    }
}

impl UdpRelay {
    fn step(&mut self, hs: &HostSock, buf: &mut [u8]) -> Step {
        let mut moved = false;
        match hs.recv(buf, false, true) {
            Ok((n, _)) => {
                self.deliver(&buf[..n]);
                moved = true;
            }
            Err(Errno::EAGAIN) => {}
            Err(_) => return Step::Done,
        }
        if let Some((id, _)) = self.cur {
            let r = STACK.lock().recv(id, buf, false);
            match r {
                Ok(g) => {
                    changed();
                    moved = true;
                    match hs.send(&buf[..g.len], None, true) {
                        // A full host socket buffer drops the datagram, as UDP does.
                        Ok(_) | Err(Errno::EAGAIN) => {}
                        Err(_) => return Step::Done,
                    }
                }
                Err(Errno::EAGAIN) => {}
                // The port-unreachable of a dropped datagram (taken: not again).
                Err(Errno::ECONNREFUSED) => moved = true,
                Err(_) => return Step::Done,
            }
        }
        if moved {
            Step::Moved
        } else {
            Step::Idle
        }
    }

    /// Sends one datagram of the flow to the guest's socket on the port: from the relay's
    /// socket if its destination has a socket bound, else from a new one connected to the
    /// other destination (which the relay then keeps).
    fn deliver(&mut self, data: &[u8]) {
        let start = self.cur.map_or(0, |(_, i)| i);
        for i in (start..DESTS.len()).chain(0..start) {
            let (family, addr) = DESTS[i];
            let mut st = STACK.lock();
            let id = match self.cur {
                Some((id, j)) if j == i => id,
                old => {
                    if let Some((old, _)) = old {
                        st.close(old);
                    }
                    self.cur = None;
                    let Ok(id) = st.socket(family, Proto::Udp) else {
                        return;
                    };
                    if st.connect(id, Some(Ep::new(addr, self.port))).is_err() {
                        st.close(id);
                        return;
                    }
                    self.cur = Some((id, i));
                    id
                }
            };
            let sent = st.send(id, data, None);
            // Nobody bound there: the port-unreachable comes back at once on the loopback.
            let refused = st.take_error(id).ok().flatten() == Some(Errno::ECONNREFUSED);
            drop(st);
            changed();
            if sent.is_ok() && !refused {
                return;
            }
        }
    }
}

/// Hand-over, while no kernel step runs: every relay as a record entry (in the order of
/// their sockets, those without one first), its bytes added with `add`.
pub(crate) fn carry(add: &mut dyn FnMut(&[u8]) -> BlobRef) -> Vec<RelayEntry> {
    let relays: Vec<Arc<Relay>> = RELAYS.lock().values().cloned().collect();
    let mut bytes = |b: &[u8]| {
        if b.is_empty() {
            BlobRef::default()
        } else {
            add(b)
        }
    };
    let mut out: Vec<RelayEntry> = relays
        .iter()
        .map(|r| {
            let mut e = RelayEntry {
                handle: r.hs.h,
                ..RelayEntry::default()
            };
            match &*r.state.lock() {
                State::Tcp(t) => {
                    e.socket = t.id.unwrap_or(0);
                    e.port = t.port;
                    e.proto = PUBLISH_TCP;
                    for (on, flag) in [
                        (t.connected, relay_flags::CONNECTED),
                        (t.host_eof, relay_flags::HOST_EOF),
                        (t.guest_eof, relay_flags::GUEST_EOF),
                    ] {
                        if on {
                            e.flags |= flag;
                        }
                    }
                    e.to_guest = bytes(&t.to_guest);
                    e.to_host = bytes(&t.to_host);
                }
                State::Udp(u) => {
                    e.socket = u.cur.map_or(0, |(id, _)| id);
                    e.port = u.port;
                    e.proto = PUBLISH_UDP;
                }
            }
            e
        })
        .collect();
    out.sort_by_key(|e| (e.socket, e.handle));
    out
}

/// Whether a relay has a loopback socket now (the record must then carry the loopback's
/// sockets).
pub(crate) fn any_socket() -> bool {
    RELAYS.lock().values().any(|r| match &*r.state.lock() {
        State::Tcp(t) => t.id.is_some(),
        State::Udp(u) => u.cur.is_some(),
    })
}

/// A relay an adopter made again, to start once the adoption is done. Dropped unstarted
/// (by a check, or a verdict before the build), it closes its loopback socket, so the
/// table is empty again; its host connection stays as it is (the adoption is not done).
pub(crate) struct Adopted(Option<Relay>);

impl Drop for Adopted {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.end();
        }
    }
}

/// Hand-over: the relays of a checked record made again, on the loopback sockets the
/// adopter re-created (`sockets`: by record id, with their families). `None`: a relay
/// names a socket that is not there.
pub(crate) fn adopt(
    entries: &[RelayEntry],
    sockets: &BTreeMap<u64, (Id, u16)>,
    blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
) -> Option<Vec<Adopted>> {
    let mut out = Vec::new();
    for e in entries {
        let sock = match e.socket {
            0 => None,
            id => Some(*sockets.get(&id)?),
        };
        let hs = HostSock {
            h: e.handle,
            family: af::AF_INET,
        };
        let state = if e.proto == PUBLISH_UDP {
            State::Udp(UdpRelay {
                port: e.port,
                cur: sock.map(|(id, family)| (id, dest_of(family))),
            })
        } else {
            State::Tcp(TcpRelay {
                port: e.port,
                id: sock.map(|(id, _)| id),
                dest: sock.map_or(0, |(_, family)| dest_of(family)),
                connected: e.flags & relay_flags::CONNECTED != 0,
                to_guest: blob(e.to_guest)?,
                to_host: blob(e.to_host)?,
                host_eof: e.flags & relay_flags::HOST_EOF != 0,
                guest_eof: e.flags & relay_flags::GUEST_EOF != 0,
            })
        };
        out.push(Adopted(Some(Relay {
            hs,
            state: spin::Mutex::new(state),
        })));
    }
    Some(out)
}

/// Starts the adopted relays (the adoption is done: their host handles are this kernel's).
pub(crate) fn start_adopted(relays: Vec<Adopted>) {
    for mut a in relays {
        if let Some(r) = a.0.take() {
            run_new(r);
        }
    }
}
