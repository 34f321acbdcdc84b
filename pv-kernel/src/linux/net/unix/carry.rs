//! `AF_UNIX` sockets in the kernel hand-over record (docs/ABI.md §handover, sections 17 and
//! 19): [`Carry`] writes the sockets the carried descriptors reach — both ends of each
//! connection, a listener's connections not accepted yet, what is queued on each — and
//! [`adopt`] re-creates them in the adopting kernel, paired, with their queues, each
//! name in the name table again.
//!
//! A name in the filesystem is a socket inode of the in-memory filesystem: the record
//! carries its absolute path, permission bits and owner, and the adopter makes the socket
//! file again there (its directory must exist in the new kernel's filesystem: a `--rootfs`
//! or volume directory, or one the boot makes).
//!
//! Descriptors in flight (`SCM_RIGHTS`: passed with a queued message, not received yet)
//! are carried as open file descriptions of no process (section 40): [`Carry`] hands the
//! files to the record writer ([`Carry::take_in_flight`]), which carries each as it carries
//! a process's descriptor, and an adopter gives each message its descriptions again
//! ([`attach_rights`]) once every description exists.
//!
//! What is not carried is refused in words (a blocker): a path name removed, moved or
//! never told, a pending error other than `ECONNRESET`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::handover::{
    socket_flags, socket_state, BlobRef, InFlightEntry, SocketEntry, SocketMsgEntry,
    MAX_RIGHTS_PER_MSG, MAX_SOCKET_OPTS,
};

use super::queue::{Cred, Msg};
use super::{Key, Sock, SockType, State, UnixSocket, NAMES, SHUTDOWN_MASK};
use crate::fs::Errno;
use crate::linux::files::file::OpenFile;
use crate::linux::net::{Socket, SocketFile};

/// Where bytes go in the record's blob.
pub(crate) type Blob<'a> = &'a mut dyn FnMut(&[u8]) -> BlobRef;

/// A socket's identity while a record is written.
fn ptr<T>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

/// The `AF_UNIX` socket behind the open file `f`, if it is one.
pub(crate) fn sock_of(f: &OpenFile) -> Option<Arc<Sock>> {
    let s = crate::linux::files::object::downcast::<SocketFile>(f)?;
    s.sock
        .as_any()
        .downcast_ref::<UnixSocket>()
        .map(|u| u.sock.clone())
}

/// `SOCK_*` of a type.
fn raw_type(t: SockType) -> u32 {
    match t {
        SockType::Stream => 1,
        SockType::Dgram => 2,
        SockType::SeqPacket => 5,
        SockType::Raw => 3,
    }
}

/// The sockets (and their queues) a record carries.
#[derive(Default)]
pub(crate) struct Carry {
    /// Ids by socket.
    ids: BTreeMap<usize, u64>,
    /// Socket ids by send-buffer account (a message's sender).
    wmems: BTreeMap<usize, u64>,
    /// By id.
    socks: BTreeMap<u64, SocketEntry>,
    /// Messages with their sender's account and the descriptors passed with them, in the
    /// order [`Carry::add`] met them.
    msgs: Vec<(SocketMsgEntry, usize, Vec<Arc<OpenFile>>)>,
    /// Descriptors in flight met by [`Carry::add`] and not taken by
    /// [`Carry::take_in_flight`] yet, each with the process whose descriptor reached it.
    in_flight: Vec<(i32, Arc<OpenFile>)>,
}

impl Carry {
    /// The id of `sock` in the record, entering it and every socket it reaches (peers, a
    /// listener's connections not accepted yet) with their queues; or, entering nothing,
    /// what cannot be carried. A descriptor of process `pid` reached it: the descriptors in
    /// flight on the sockets entered are kept for [`Carry::take_in_flight`] under `pid`.
    pub(crate) fn add(
        &mut self,
        pid: i32,
        sock: &Arc<Sock>,
        blob: Blob<'_>,
    ) -> Result<u64, &'static [u8]> {
        if let Some(&id) = self.ids.get(&ptr(sock)) {
            return Ok(id);
        }
        let mut todo = alloc::vec![sock.clone()];
        let mut reached: BTreeMap<usize, Arc<Sock>> = BTreeMap::new();
        while let Some(s) = todo.pop() {
            if self.ids.contains_key(&ptr(&s)) || reached.contains_key(&ptr(&s)) {
                continue;
            }
            {
                let i = s.inner.lock();
                if let Some(Key::Path(ino)) = i.key {
                    let same = i.path.as_deref().is_some_and(|p| {
                        crate::fs::with_real_root(|fs| {
                            fs.lookup(crate::fs::ramfs::ROOT_INO, p, false)
                        }) == Ok(ino)
                    });
                    if !same {
                        return Err(b"sockets whose path name was removed or moved");
                    }
                }
                if i.rq
                    .carried()
                    .any(|m| m.rights.len() > MAX_RIGHTS_PER_MSG as usize)
                {
                    return Err(b"messages passing over 253 descriptors");
                }
                if i.err.is_some_and(|e| e != Errno::ECONNRESET) {
                    return Err(b"sockets with a pending error");
                }
                if i.opts.values().map(|v| v.len() + 8).sum::<usize>() > MAX_SOCKET_OPTS as usize {
                    return Err(b"sockets with too many options");
                }
                todo.extend(i.peer.iter().cloned());
                if let State::Listening { pending, .. } = &i.state {
                    todo.extend(pending.iter().cloned());
                }
            }
            reached.insert(ptr(&s), s);
        }
        let first = self.socks.len() as u64 + 1;
        for (id, (&k, s)) in (first..).zip(&reached) {
            self.ids.insert(k, id);
            self.wmems.insert(ptr(&s.wmem), id);
        }
        let mut queued_on: BTreeMap<usize, (u64, u32)> = BTreeMap::new();
        for (k, s) in &reached {
            let id = self.ids[k];
            let i = s.inner.lock();
            let (state, backlog) = match &i.state {
                State::Unconnected => (socket_state::UNCONNECTED, 0),
                State::Connected => (socket_state::CONNECTED, 0),
                State::Listening { backlog, pending } => {
                    for (n, p) in pending.iter().enumerate() {
                        queued_on.insert(ptr(p), (id, n as u32));
                    }
                    (
                        socket_state::LISTENING,
                        u32::try_from(*backlog).unwrap_or(u32::MAX),
                    )
                }
            };
            let mut flags = 0;
            for (on, f) in [
                (i.passcred, socket_flags::PASSCRED),
                (i.peercred.is_some(), socket_flags::PEERCRED),
                (i.dead, socket_flags::DEAD),
                (i.key.is_some(), socket_flags::NAMED),
            ] {
                if on {
                    flags |= f;
                }
            }
            let c = i.peercred.unwrap_or(Cred {
                pid: 0,
                uid: 0,
                gid: 0,
            });
            let mut opts = Vec::new();
            for (name, v) in &i.opts {
                opts.extend_from_slice(&name.to_le_bytes());
                opts.extend_from_slice(&(v.len() as u32).to_le_bytes());
                opts.extend_from_slice(v);
            }
            let (mut mode, mut owner, mut path) = (0, [0; 2], BlobRef::default());
            if let (Some(Key::Path(ino)), Some(p)) = (&i.key, &i.path) {
                if let Ok(st) = crate::fs::with(|fs| fs.stat_ino(*ino)) {
                    mode = st.mode & 0o7777;
                    owner = [st.uid, st.gid];
                }
                path = blob(p);
            }
            let e = SocketEntry {
                id,
                peer: i.peer.as_ref().map_or(0, |p| self.ids[&ptr(p)]),
                listener: 0,
                ty: raw_type(s.ty),
                state,
                flags,
                shutdown: u32::from(i.shutdown),
                backlog,
                err: i.err.map_or(0, |e| e.code() as u32),
                sndbuf: i.sndbuf as u32,
                rcvbuf: i.rcvbuf as u32,
                peercred: [c.pid as u32, c.uid, c.gid],
                mode,
                owner,
                addr: blob(i.addr.as_deref().unwrap_or_default()),
                opts: blob(&opts),
                path,
            };
            self.socks.insert(id, e);
            for m in i.rq.carried() {
                let entry = SocketMsgEntry {
                    socket: id,
                    sender: 0,
                    cred: [m.cred.pid as u32, m.cred.uid, m.cred.gid],
                    _reserved: 0,
                    data: blob(m.data),
                    from: blob(m.from.unwrap_or_default()),
                };
                self.in_flight
                    .extend(m.rights.iter().map(|f| (pid, f.clone())));
                self.msgs
                    .push((entry, m.wmem.map_or(0, ptr), m.rights.to_vec()));
            }
        }
        for (k, (listener, n)) in queued_on {
            if let Some(e) = self.ids.get(&k).and_then(|id| self.socks.get_mut(id)) {
                e.listener = listener;
                e.backlog = n;
            }
        }
        Ok(self.ids[&ptr(sock)])
    }

    /// The descriptors in flight met since the last call, each with the process whose
    /// descriptor reached its socket: the record writer carries each as an open file
    /// description (which may enter more sockets, and so more descriptors in flight).
    pub(crate) fn take_in_flight(&mut self) -> Vec<(i32, Arc<OpenFile>)> {
        core::mem::take(&mut self.in_flight)
    }

    /// The sections: sockets by id, and their messages (socket by socket, each queue
    /// oldest first), each charged to its sender if the record carries it; and the
    /// descriptors in flight (section 40), `description` giving each one's number.
    pub(crate) fn finish(
        &self,
        description: &dyn Fn(&Arc<OpenFile>) -> Option<u64>,
    ) -> (Vec<SocketEntry>, Vec<SocketMsgEntry>, Vec<InFlightEntry>) {
        let socks = self.socks.values().copied().collect();
        let mut msgs: Vec<(SocketMsgEntry, &[Arc<OpenFile>])> = self
            .msgs
            .iter()
            .map(|(m, w, rights)| {
                let m = SocketMsgEntry {
                    sender: self.wmems.get(w).copied().unwrap_or(0),
                    ..*m
                };
                (m, &rights[..])
            })
            .collect();
        // Stable: each queue keeps its order.
        msgs.sort_by_key(|(m, _)| m.socket);
        let mut in_flight = Vec::new();
        for (message, (_, rights)) in msgs.iter().enumerate() {
            for (slot, f) in rights.iter().enumerate() {
                // Every descriptor in flight was carried (`take_in_flight`); the record
                // writer refused the others as blockers.
                if let Some(d) = description(f) {
                    in_flight.push(InFlightEntry {
                        message: message as u32,
                        slot: slot as u32,
                        description: d,
                    });
                }
            }
        }
        (socks, msgs.into_iter().map(|(m, _)| m).collect(), in_flight)
    }

    /// Entries and messages so far (for the record's size).
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.socks.len(), self.msgs.len())
    }
}

/// Why sockets of a record cannot be re-created: the socket's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) u64);

/// The sockets of a checked record re-created ([`adopt`]): the ones descriptors may
/// name, by id.
pub(crate) type Adopted = BTreeMap<u64, Arc<dyn Socket>>;

/// Where [`adopt`] queued each message of the record (by its index in the record): the
/// socket and the message's place in its queue.
pub(crate) type Queued = Vec<(Arc<Sock>, usize)>;

/// Gives message `message` of the record (queued by [`adopt`] without them) the
/// descriptors passed with it, `rights`, in their order; `false` if the record has no such
/// message.
pub(crate) fn attach_rights(queued: &Queued, message: u32, rights: Vec<Arc<OpenFile>>) -> bool {
    queued
        .get(message as usize)
        .is_some_and(|(s, index)| s.inner.lock().rq.set_rights(*index, rights))
}

/// Re-creates the sockets `socks` of a checked record (`Record::check` passed) with the
/// messages `msgs` queued on them (`blob` gives the bytes a reference names): each
/// connection's two ends paired, a listener's connections not accepted yet in its queue
/// in their order, every name in the name table again (refused if it is taken; a path
/// name's socket file made again with its mode and owner when `files`, else — a check in
/// a kernel without the tenant's files — left out), each queue with its bytes charged to
/// its sender. The sockets a descriptor may name (neither
/// released nor waiting in a listener's queue) come back as open-file objects; the
/// others live as long as what refers to them.
pub(crate) fn adopt(
    socks: &[SocketEntry],
    msgs: &[SocketMsgEntry],
    blob: &dyn Fn(BlobRef) -> Option<Vec<u8>>,
    files: bool,
) -> Result<(Adopted, Queued), Refused> {
    let mut made: BTreeMap<u64, Arc<Sock>> = BTreeMap::new();
    for e in socks {
        let ty = SockType::from_raw(e.ty).map_err(|_| Refused(e.id))?;
        made.insert(e.id, Sock::new(ty));
    }
    let get = |id: u64| made.get(&id).cloned().ok_or(Refused(id));
    let mut queues: BTreeMap<u64, Vec<(u32, Arc<Sock>)>> = BTreeMap::new();
    for e in socks {
        let s = get(e.id)?;
        if e.listener != 0 {
            queues
                .entry(e.listener)
                .or_default()
                .push((e.backlog, s.clone()));
        }
        let addr = blob(e.addr).ok_or(Refused(e.id))?;
        let mut opts = BTreeMap::new();
        let mut o = &blob(e.opts).ok_or(Refused(e.id))?[..];
        while o.len() >= 8 {
            let name = i32::from_le_bytes([o[0], o[1], o[2], o[3]]);
            let len = u32::from_le_bytes([o[4], o[5], o[6], o[7]]) as usize;
            let v = o.get(8..8 + len).ok_or(Refused(e.id))?;
            opts.insert(name, v.to_vec());
            o = &o[8 + len..];
        }
        if !o.is_empty() || e.shutdown > u32::from(SHUTDOWN_MASK) {
            return Err(Refused(e.id));
        }
        let err = match e.err {
            0 => None,
            c if c == Errno::ECONNRESET.code() as u32 => Some(Errno::ECONNRESET),
            _ => return Err(Refused(e.id)),
        };
        let peer = match e.peer {
            0 => None,
            p => Some(get(p)?),
        };
        let named = e.flags & socket_flags::NAMED != 0;
        let path = blob(e.path).ok_or(Refused(e.id))?;
        let key = match (named, addr.get(2..)) {
            (false, _) => None,
            (true, Some([0, name @ ..])) => Some(Key::Abstract(name.to_vec())),
            (true, Some(_)) if !path.is_empty() && !files => None,
            (true, Some(_)) if !path.is_empty() => {
                let ino = crate::fs::with_real_root(|fs| {
                    use crate::fs::ramfs::{FileType, ROOT_INO};
                    // The socket file the carried filesystem (sections 21-23) holds already,
                    // or made again.
                    let carried = fs.lookup(ROOT_INO, &path, false).ok().filter(|&i| {
                        fs.stat_ino(i)
                            .is_ok_and(|s| s.file_type() == FileType::Socket)
                    });
                    let ino = match carried {
                        Some(i) => i,
                        None => fs.mksock(ROOT_INO, &path, e.mode & 0o7777)?,
                    };
                    fs.set_meta(ino, e.mode & 0o7777, Some((e.owner[0], e.owner[1])), None)?;
                    Ok::<_, Errno>(ino)
                })
                .map_err(|_| Refused(e.id))?;
                Some(Key::Path(ino))
            }
            _ => return Err(Refused(e.id)),
        };
        let mut i = s.inner.lock();
        i.state = match e.state {
            socket_state::UNCONNECTED => State::Unconnected,
            socket_state::CONNECTED => State::Connected,
            socket_state::LISTENING => State::Listening {
                backlog: e.backlog as usize,
                pending: VecDeque::new(),
            },
            _ => return Err(Refused(e.id)),
        };
        i.addr = (!addr.is_empty()).then_some(addr);
        i.peer = peer;
        i.shutdown = e.shutdown as u8;
        i.err = err;
        i.sndbuf = e.sndbuf as usize;
        i.rcvbuf = e.rcvbuf as usize;
        i.passcred = e.flags & socket_flags::PASSCRED != 0;
        i.peercred = (e.flags & socket_flags::PEERCRED != 0).then_some(Cred {
            pid: e.peercred[0] as i32,
            uid: e.peercred[1],
            gid: e.peercred[2],
        });
        i.opts = opts;
        i.dead = e.flags & socket_flags::DEAD != 0;
        i.path = (!path.is_empty()).then_some(path);
        drop(i);
        if let Some(key) = key {
            let mut names = NAMES.lock();
            if names
                .get(&key)
                .and_then(alloc::sync::Weak::upgrade)
                .is_some_and(|o| !o.is_dead())
            {
                return Err(Refused(e.id));
            }
            names.insert(key.clone(), Arc::downgrade(&s));
            s.inner.lock().key = Some(key);
        }
    }
    for (listener, mut q) in queues {
        q.sort_by_key(|(n, _)| *n);
        let l = get(listener)?;
        let mut i = l.inner.lock();
        let State::Listening { pending, .. } = &mut i.state else {
            return Err(Refused(listener));
        };
        pending.extend(q.into_iter().map(|(_, s)| s));
    }
    let mut queued = Queued::new();
    let mut at = (0u64, 0usize);
    for m in msgs {
        let s = get(m.socket)?;
        at = if at.0 == m.socket && !queued.is_empty() {
            (m.socket, at.1 + 1)
        } else {
            (m.socket, 0)
        };
        queued.push((s.clone(), at.1));
        let wmem = match m.sender {
            0 => None,
            id => Some(get(id)?.wmem.clone()),
        };
        let from = blob(m.from).ok_or(Refused(m.socket))?;
        let data = blob(m.data).ok_or(Refused(m.socket))?;
        let cred = Cred {
            pid: m.cred[0] as i32,
            uid: m.cred[1],
            gid: m.cred[2],
        };
        let msg = Msg::new(
            data,
            Vec::new(),
            cred,
            (!from.is_empty()).then_some(from),
            wmem,
        );
        s.inner.lock().rq.push(msg);
    }
    let mut out = Adopted::new();
    for e in socks {
        if e.listener == 0 && e.flags & socket_flags::DEAD == 0 {
            out.insert(e.id, UnixSocket::wrap(get(e.id)?));
        }
    }
    Ok((out, queued))
}

#[cfg(test)]
mod tests {
    use super::super::queue::Wmem;
    use super::*;
    use pvmux_hypercalls::handover::{
        fd_state, BlobRef, Bounds, FdStateEntry, ProcessEntry, Record, RecordWriter, MAX_PID,
    };

    const ME: Cred = Cred {
        pid: 7,
        uid: 1000,
        gid: 100,
    };

    /// Two connected sockets of `ty` (as `socketpair`).
    fn connected(ty: SockType) -> (Arc<Sock>, Arc<Sock>) {
        let (a, b) = (Sock::new(ty), Sock::new(ty));
        for (s, p) in [(&a, &b), (&b, &a)] {
            let mut i = s.inner.lock();
            i.peer = Some(p.clone());
            i.peercred = Some(ME);
            i.state = State::Connected;
        }
        (a, b)
    }

    fn send(to: &Arc<Sock>, from: &Arc<Wmem>, data: &[u8]) {
        let m = Msg::new(data.to_vec(), Vec::new(), ME, None, Some(from.clone()));
        to.inner.lock().rq.push(m);
    }

    fn unread(s: &Sock) -> Vec<Vec<u8>> {
        s.inner
            .lock()
            .rq
            .carried()
            .map(|m| m.data.to_vec())
            .collect()
    }

    #[test]
    fn descriptors_in_flight_are_handed_out_and_given_back_to_their_message() {
        use crate::linux::files::file::Kind;
        use crate::linux::files::pipe::Pipe;
        let (a, b) = connected(SockType::Dgram);
        let pipe = Pipe::new(0);
        let rd = OpenFile::new(Kind::PipeRead(pipe.clone()), 0);
        let wr = OpenFile::new(Kind::PipeWrite(pipe), 1);
        send(&b, &a.wmem, b"none");
        let m = Msg::new(
            b"two".to_vec(),
            alloc::vec![rd.clone(), wr.clone()],
            ME,
            None,
            None,
        );
        b.inner.lock().rq.push(m);
        let mut carry = Carry::default();
        let mut blob = Vec::new();
        let mut add = |x: &[u8]| {
            let r = BlobRef {
                off: blob.len() as u32,
                len: x.len() as u32,
            };
            blob.extend_from_slice(x);
            r
        };
        carry.add(9, &a, &mut add).expect("carried");
        let got = carry.take_in_flight();
        assert_eq!(got.len(), 2, "both descriptors, once");
        assert!(
            got.iter().all(|(pid, _)| *pid == 9),
            "under the pid that reached them"
        );
        assert!(Arc::ptr_eq(&got[0].1, &rd) && Arc::ptr_eq(&got[1].1, &wr));
        assert!(carry.take_in_flight().is_empty(), "taken once");
        // Descriptions 5 and 6; the message with them is the second one queued on `b`.
        let number = |f: &Arc<OpenFile>| Some(if Arc::ptr_eq(f, &rd) { 5 } else { 6 });
        let (socks, msgs, in_flight) = carry.finish(&number);
        assert_eq!(msgs.len(), 2);
        let slots: Vec<(u32, u32, u64)> = in_flight
            .iter()
            .map(|e| (e.message, e.slot, e.description))
            .collect();
        assert_eq!(slots, [(1, 0, 5), (1, 1, 6)]);
        // Adopted without them, then given them back, in their order.
        for s in [&a, &b] {
            s.release(false);
        }
        let bytes = |r: BlobRef| {
            blob.get(r.off as usize..(r.off + r.len) as usize)
                .map(<[u8]>::to_vec)
        };
        // (The open-file objects hold the sockets, as descriptors would.)
        let (_held, queued) = adopt(&socks, &msgs, &bytes, false).expect("adopts");
        let (b2, at) = queued[1].clone();
        assert_eq!(at, 1, "the second message of its queue");
        assert!(attach_rights(
            &queued,
            1,
            alloc::vec![rd.clone(), wr.clone()]
        ));
        assert!(!attach_rights(&queued, 2, Vec::new()), "no such message");
        let i = b2.inner.lock();
        let rights: Vec<usize> = i.rq.carried().map(|m| m.rights.len()).collect();
        assert_eq!(rights, [0, 2]);
    }

    #[test]
    fn a_socket_pair_a_listener_and_their_queues_are_re_created() {
        // A stream pair with bytes both ways, the second end shut down for writing.
        let (a, b) = connected(SockType::Stream);
        send(&b, &a.wmem, b"hello ");
        send(&b, &a.wmem, b"world");
        send(&a, &b.wmem, b"back");
        b.inner.lock().shutdown = 2;
        a.inner
            .lock()
            .opts
            .insert(super::super::so::SO_RCVTIMEO_OLD, alloc::vec![1; 16]);
        // A seqpacket listener under an abstract name with one connection not accepted
        // yet, its client's first record queued on it.
        let name = b"\x01\x00\x00pvmux-test-carry".to_vec();
        let l = Sock::new(SockType::SeqPacket);
        {
            let mut i = l.inner.lock();
            i.addr = Some(name.clone());
            i.key = Some(Key::Abstract(name[3..].to_vec()));
            i.peercred = Some(ME);
            i.state = State::Listening {
                backlog: 4,
                pending: VecDeque::new(),
            };
        }
        let (client, embryo) = connected(SockType::SeqPacket);
        embryo.inner.lock().addr = Some(name.clone());
        if let State::Listening { pending, .. } = &mut l.inner.lock().state {
            pending.push_back(embryo.clone());
        }
        send(&embryo, &client.wmem, b"rec1");
        send(&embryo, &client.wmem, b"rec2");

        let mut carry = Carry::default();
        let mut blob = Vec::new();
        let mut add = |b: &[u8]| {
            let r = BlobRef {
                off: blob.len() as u32,
                len: b.len() as u32,
            };
            blob.extend_from_slice(b);
            r
        };
        let ids: Vec<u64> = [&a, &b, &l, &client]
            .iter()
            .map(|s| carry.add(1, s, &mut add).expect("carried"))
            .collect();
        assert_eq!(carry.len(), (5, 5), "the embryo too, every message");
        assert_eq!(carry.add(1, &b, &mut add), Ok(ids[1]), "one id per socket");
        // Refused in words: a path name that is not where it was bound.
        let p = Sock::new(SockType::Stream);
        p.inner.lock().key = Some(Key::Path(42));
        assert!(carry.add(1, &p, &mut add).is_err());
        assert_eq!(carry.len(), (5, 5), "nothing entered for a refusal");
        assert!(carry.take_in_flight().is_empty(), "nothing in flight");
        let (socks, msgs, in_flight) = carry.finish(&|_| None);
        assert!(in_flight.is_empty());
        let fds: Vec<FdStateEntry> = ids
            .iter()
            .enumerate()
            .map(|(n, &id)| FdStateEntry {
                pid: 1,
                fd: n as i32,
                kind: fd_state::UNIX_SOCKET,
                fd_flags: 0,
                status_flags: 2,
                aux: 0,
                description: n as u64 + 1,
                pos: 0,
                object: id,
                path: BlobRef::default(),
            })
            .collect();
        let mut rec = Vec::new();
        let mut w = RecordWriter::new(&mut rec, 2, b"t");
        w.section(&[ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        w.section(&fds);
        w.section(&socks);
        w.section(&msgs);
        w.blob(&blob);
        w.finish();
        let r = Record::parse(&rec, (2, 2)).expect("parses");
        r.check(&Bounds {
            user_end: 1 << 40,
            pool_start: 0,
            pool_end: 0,
            max_pid: MAX_PID,
        })
        .expect("checks");
        // The old kernel's sockets are gone (the name is free again) before the new one
        // adopts.
        for s in [&a, &b, &l, &client, &embryo] {
            s.release(false);
        }
        let socks: Vec<SocketEntry> = r.entries().collect();
        let msgs: Vec<SocketMsgEntry> = r.entries().collect();
        let (got, queued) = adopt(
            &socks,
            &msgs,
            &|b| r.blob_bytes(b).map(<[u8]>::to_vec),
            false,
        )
        .expect("adopts");
        assert_eq!(queued.len(), msgs.len(), "each message queued once");
        assert_eq!(got.len(), 4, "the embryo has no descriptor");
        let sock = |id: u64| {
            got[&id]
                .as_any()
                .downcast_ref::<UnixSocket>()
                .expect("unix")
                .sock
                .clone()
        };
        let (a2, b2, l2, c2) = (sock(ids[0]), sock(ids[1]), sock(ids[2]), sock(ids[3]));
        let peer = |s: &Sock| s.inner.lock().peer.clone().expect("peer");
        assert!(Arc::ptr_eq(&peer(&a2), &b2) && Arc::ptr_eq(&peer(&b2), &a2));
        assert_eq!(unread(&b2), [b"hello ".to_vec(), b"world".to_vec()]);
        assert_eq!(unread(&a2), [b"back".to_vec()]);
        assert_eq!(b2.inner.lock().shutdown, 2);
        assert_eq!(a2.wmem.bytes(), 11 + 2 * super::super::queue::MSG_OVERHEAD);
        assert_eq!(
            a2.inner.lock().opts.get(&super::super::so::SO_RCVTIMEO_OLD),
            Some(&alloc::vec![1; 16])
        );
        assert_eq!(a2.inner.lock().peercred, Some(ME));
        // The listener: named again, its connection queued, paired with the client.
        let found = Sock::lookup(&name).expect("the name is bound again");
        assert!(Arc::ptr_eq(&found, &l2));
        let e2 = match &l2.inner.lock().state {
            State::Listening { backlog, pending } => {
                assert_eq!(*backlog, 4);
                pending.front().cloned().expect("a pending connection")
            }
            _ => panic!("not listening"),
        };
        assert!(Arc::ptr_eq(&peer(&e2), &c2) && Arc::ptr_eq(&peer(&c2), &e2));
        assert_eq!(unread(&e2), [b"rec1".to_vec(), b"rec2".to_vec()]);
        assert_eq!(e2.inner.lock().addr.as_deref(), Some(&name[..]));
        // Closing the adopted listener frees its name.
        drop(got);
        assert_eq!(Sock::lookup(&name).err(), Some(Errno::ECONNREFUSED));
    }
}
