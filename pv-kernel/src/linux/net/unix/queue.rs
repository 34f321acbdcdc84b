//! A socket's receive queue: the messages other sockets sent it, each with its bytes, the
//! descriptors passed with it, the sender's credentials and address, and the sender's
//! send-buffer account ([`Wmem`]) that its bytes are charged to until read.
//!
//! Reading follows Linux's `af_unix.c`: a stream read joins messages (but never past one
//! that carried descriptors, and with `SO_PASSCRED` never across messages from different
//! senders) and takes a partly read message's rest next time; a datagram or record read
//! takes one message whole, cutting what does not fit (`MSG_TRUNC`). A peek copies without
//! consuming and duplicates passed descriptors. Pure logic (`alloc` only, plus the waiters
//! of a [`Wmem`], which the caller wakes): unit-tested on the host.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::sched::wait::WaitQueue;

/// Bytes one queued message costs its sender besides its data (Linux charges an `sk_buff`'s
/// true size), so that even empty datagrams fill a send buffer.
pub(crate) const MSG_OVERHEAD: usize = 256;

/// Credentials a message carries (`struct ucred`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cred {
    /// Process id.
    pub(crate) pid: i32,
    /// User id.
    pub(crate) uid: u32,
    /// Group id.
    pub(crate) gid: u32,
}

impl Cred {
    /// The `struct ucred` bytes.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&self.pid.to_le_bytes());
        b.extend_from_slice(&self.uid.to_le_bytes());
        b.extend_from_slice(&self.gid.to_le_bytes());
        b
    }
}

/// A sender's bytes in flight (Linux `sk_wmem_alloc`): charged when a message is queued,
/// given back as it is read or dropped. Senders waiting for room wait on `wq`.
pub(crate) struct Wmem {
    bytes: AtomicUsize,
    /// Senders waiting for the count to drop.
    pub(crate) wq: WaitQueue,
}

impl Wmem {
    /// A new, empty account.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            wq: WaitQueue::new(),
        })
    }

    /// Bytes in flight (`SIOCOUTQ`).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    fn charge(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn uncharge(&self, n: usize) {
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(n))
            });
    }
}

/// One queued message; `R` is what a passed descriptor is (an open file in the kernel).
pub(crate) struct Msg<R> {
    /// The bytes.
    pub(crate) data: Vec<u8>,
    /// Bytes of `data` already read (streams).
    off: usize,
    /// Descriptors passed with it (taken by the first read that reaches it).
    pub(crate) rights: Vec<R>,
    /// The sender's credentials.
    pub(crate) cred: Cred,
    /// The sender's address, if bound.
    pub(crate) from: Option<Vec<u8>>,
    /// The sender's account.
    wmem: Option<Arc<Wmem>>,
}

impl<R> Msg<R> {
    /// A message of `data` from a sender with `cred` and address `from`, charged to `wmem`
    /// when queued.
    pub(crate) fn new(
        data: Vec<u8>,
        rights: Vec<R>,
        cred: Cred,
        from: Option<Vec<u8>>,
        wmem: Option<Arc<Wmem>>,
    ) -> Self {
        Self {
            data,
            off: 0,
            rights,
            cred,
            from,
            wmem,
        }
    }

    fn unread(&self) -> usize {
        self.data.len() - self.off
    }
}

/// What one read took.
pub(crate) struct Read<R> {
    /// Bytes copied out.
    pub(crate) len: usize,
    /// The message's length (datagrams and records; streams: `len`).
    pub(crate) full_len: usize,
    /// Passed descriptors (copies of them for a peek).
    pub(crate) rights: Vec<R>,
    /// The credentials of the (first) message read.
    pub(crate) cred: Cred,
    /// Its sender's address.
    pub(crate) from: Option<Vec<u8>>,
}

/// A queued message as [`Queue::carried`] shows it.
pub(crate) struct Carried<'a, R> {
    pub(crate) data: &'a [u8],
    pub(crate) rights: &'a [R],
    pub(crate) cred: Cred,
    pub(crate) from: Option<&'a [u8]>,
    pub(crate) wmem: Option<&'a Arc<Wmem>>,
}

/// Accounts whose waiters the caller must wake (after unlocking).
pub(crate) type Freed = Vec<Arc<Wmem>>;

/// A receive queue.
pub(crate) struct Queue<R> {
    msgs: VecDeque<Msg<R>>,
    /// Unread data bytes.
    bytes: usize,
}

impl<R: Clone> Queue<R> {
    /// An empty queue.
    pub(crate) const fn new() -> Self {
        Self {
            msgs: VecDeque::new(),
            bytes: 0,
        }
    }

    /// True if nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Messages queued.
    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Unread bytes (stream `FIONREAD`).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The first message's length (datagram `FIONREAD`).
    pub(crate) fn first_len(&self) -> usize {
        self.msgs.front().map_or(0, Msg::unread)
    }

    /// Queues `m`, charging its sender.
    /// Gives the `index`th queued message (oldest first) the descriptors `rights` (an
    /// adopted message's, which it was queued without); `false` if there is no such
    /// message.
    pub(crate) fn set_rights(&mut self, index: usize, rights: Vec<R>) -> bool {
        match self.msgs.get_mut(index) {
            Some(m) => {
                m.rights = rights;
                true
            }
            None => false,
        }
    }

    pub(crate) fn push(&mut self, m: Msg<R>) {
        if let Some(w) = &m.wmem {
            w.charge(m.data.len() + MSG_OVERHEAD);
        }
        self.bytes += m.data.len();
        self.msgs.push_back(m);
    }

    /// Takes `n` bytes of the first message as read (`n` at most what is unread).
    fn consume(&mut self, n: usize, freed: &mut Freed) {
        let Some(m) = self.msgs.front_mut() else {
            return;
        };
        m.off += n;
        self.bytes -= n;
        if let Some(w) = &m.wmem {
            w.uncharge(n);
        }
        if m.unread() == 0 {
            self.pop(freed);
        }
    }

    /// Removes the first message, giving back what it still had charged.
    fn pop(&mut self, freed: &mut Freed) -> Option<Msg<R>> {
        let m = self.msgs.pop_front()?;
        self.bytes -= m.unread();
        if let Some(w) = &m.wmem {
            w.uncharge(m.unread() + MSG_OVERHEAD);
            freed.push(w.clone());
        }
        Some(m)
    }

    /// Everything queued, removed (the socket is closing): the caller drops it after
    /// unlocking (passed descriptors close then).
    pub(crate) fn take_all(&mut self, freed: &mut Freed) -> Vec<Msg<R>> {
        let mut out = Vec::with_capacity(self.msgs.len());
        while let Some(m) = self.pop(freed) {
            out.push(m);
        }
        out
    }

    /// The queued messages as the hand-over record carries them, oldest first: the bytes
    /// not read yet, whether descriptors are passed with it, the credentials, the sender's
    /// address and account.
    pub(crate) fn carried(&self) -> impl Iterator<Item = Carried<'_, R>> + '_ {
        self.msgs.iter().map(|m| Carried {
            data: &m.data[m.off..],
            rights: &m.rights,
            cred: m.cred,
            from: m.from.as_deref(),
            wmem: m.wmem.as_ref(),
        })
    }

    /// A stream read into `out` (not empty): `None` if nothing is queued. With `peek` nothing
    /// is consumed; `split_creds` (`SO_PASSCRED`) stops before a message whose credentials
    /// differ from the first one's.
    pub(crate) fn read_stream(
        &mut self,
        out: &mut [u8],
        peek: bool,
        split_creds: bool,
        freed: &mut Freed,
    ) -> Option<Read<R>> {
        let first = self.msgs.front()?;
        let mut r = Read {
            len: 0,
            full_len: 0,
            rights: Vec::new(),
            cred: first.cred,
            from: first.from.clone(),
        };
        let mut i = 0;
        let mut first = true;
        while r.len < out.len() {
            let Some(m) = self.msgs.get_mut(i) else {
                break;
            };
            if !first && split_creds && m.cred != r.cred {
                break;
            }
            first = false;
            let n = m.unread().min(out.len() - r.len);
            out[r.len..r.len + n].copy_from_slice(&m.data[m.off..m.off + n]);
            r.len += n;
            let had_rights = !m.rights.is_empty();
            if peek {
                r.rights.extend(m.rights.iter().cloned());
                i += 1;
            } else {
                r.rights.append(&mut m.rights);
                let rest = m.unread() - n;
                self.consume(n, freed);
                if rest > 0 {
                    break;
                }
            }
            if had_rights {
                break;
            }
        }
        r.full_len = r.len;
        Some(r)
    }

    /// A datagram or record read into `out`: the first message, cut to `out`'s size; `None`
    /// if nothing is queued.
    pub(crate) fn read_dgram(
        &mut self,
        out: &mut [u8],
        peek: bool,
        freed: &mut Freed,
    ) -> Option<Read<R>> {
        let m = self.msgs.front_mut()?;
        let n = m.data.len().min(out.len());
        out[..n].copy_from_slice(&m.data[..n]);
        let mut r = Read {
            len: n,
            full_len: m.data.len(),
            rights: Vec::new(),
            cred: m.cred,
            from: m.from.clone(),
        };
        if peek {
            r.rights = m.rights.clone();
        } else {
            r.rights = core::mem::take(&mut m.rights);
            self.pop(freed);
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Cred = Cred {
        pid: 10,
        uid: 0,
        gid: 0,
    };
    const B: Cred = Cred {
        pid: 11,
        uid: 0,
        gid: 0,
    };

    fn msg(data: &[u8], rights: &[u32], cred: Cred, w: &Arc<Wmem>) -> Msg<u32> {
        Msg::new(data.to_vec(), rights.to_vec(), cred, None, Some(w.clone()))
    }

    #[test]
    fn a_stream_read_joins_messages_and_keeps_the_rest() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        let mut out = [0u8; 4];
        assert!(q.read_stream(&mut out, false, false, &mut f).is_none());
        q.push(msg(b"abc", &[], A, &w));
        q.push(msg(b"defg", &[], B, &w));
        assert_eq!(q.bytes(), 7);
        assert_eq!(w.bytes(), 7 + 2 * MSG_OVERHEAD);
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert_eq!((r.len, &out), (4, b"abcd"));
        assert_eq!(r.cred, A);
        assert_eq!(q.bytes(), 3);
        assert_eq!(q.len(), 1);
        assert_eq!(w.bytes(), 3 + MSG_OVERHEAD);
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert_eq!((r.len, &out[..3]), (3, &b"efg"[..]));
        assert!(q.is_empty());
        assert_eq!(w.bytes(), 0, "everything read is given back");
        assert_eq!(f.len(), 2, "one wake-up per message removed");
    }

    #[test]
    fn a_peek_consumes_nothing() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"ab", &[], A, &w));
        q.push(msg(b"cd", &[], A, &w));
        let mut out = [0u8; 8];
        let r = q.read_stream(&mut out, true, false, &mut f).unwrap();
        assert_eq!((r.len, &out[..4]), (4, &b"abcd"[..]));
        assert_eq!(q.bytes(), 4);
        let r = q.read_dgram(&mut out, true, &mut f).unwrap();
        assert_eq!((r.len, r.full_len), (2, 2));
        assert_eq!(q.len(), 2);
        assert!(f.is_empty());
    }

    #[test]
    fn a_stream_read_stops_after_passed_descriptors() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"ab", &[], A, &w));
        q.push(msg(b"cd", &[7, 8], A, &w));
        q.push(msg(b"ef", &[], A, &w));
        let mut out = [0u8; 16];
        let r = q.read_stream(&mut out, true, false, &mut f).unwrap();
        assert_eq!(
            (r.len, r.rights.as_slice()),
            (4, &[7, 8][..]),
            "peek copies"
        );
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert_eq!((r.len, r.rights.as_slice()), (4, &[7, 8][..]));
        assert_eq!(&out[..4], b"abcd");
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert_eq!((r.len, r.rights.len()), (2, 0));
    }

    #[test]
    fn descriptors_go_with_the_first_read_that_reaches_them() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"abcd", &[3], A, &w));
        let mut out = [0u8; 1];
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert_eq!(r.rights, [3]);
        let r = q.read_stream(&mut out, false, false, &mut f).unwrap();
        assert!(r.rights.is_empty());
        assert_eq!(q.bytes(), 2);
    }

    #[test]
    fn with_passcred_a_stream_read_does_not_join_senders() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"ab", &[], A, &w));
        q.push(msg(b"cd", &[], A, &w));
        q.push(msg(b"ef", &[], B, &w));
        let mut out = [0u8; 16];
        let r = q.read_stream(&mut out, true, false, &mut f).unwrap();
        assert_eq!(r.len, 6);
        let r = q.read_stream(&mut out, false, true, &mut f).unwrap();
        assert_eq!((r.len, r.cred), (4, A));
        let r = q.read_stream(&mut out, false, true, &mut f).unwrap();
        assert_eq!((r.len, r.cred), (2, B));
    }

    #[test]
    fn a_datagram_read_takes_one_message_and_cuts_it() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"hello", &[1], A, &w));
        q.push(msg(b"", &[], B, &w));
        q.push(msg(b"xy", &[], A, &w));
        assert_eq!(q.first_len(), 5);
        let mut out = [0u8; 3];
        let r = q.read_dgram(&mut out, false, &mut f).unwrap();
        assert_eq!((r.len, r.full_len, &out), (3, 5, b"hel"));
        assert_eq!(r.rights, [1]);
        let r = q.read_dgram(&mut out, false, &mut f).unwrap();
        assert_eq!((r.len, r.full_len, r.cred), (0, 0, B), "an empty datagram");
        let r = q.read_dgram(&mut out, false, &mut f).unwrap();
        assert_eq!((r.len, &out[..2]), (2, &b"xy"[..]));
        assert!(q.is_empty());
        assert_eq!(w.bytes(), 0);
    }

    #[test]
    fn closing_takes_everything_and_gives_the_charge_back() {
        let w = Wmem::new();
        let mut q = Queue::new();
        let mut f = Vec::new();
        q.push(msg(b"abc", &[4], A, &w));
        let mut out = [0u8; 1];
        q.read_stream(&mut out, false, false, &mut f);
        q.push(msg(b"de", &[5], A, &w));
        let all = q.take_all(&mut f);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].rights, [5]);
        assert_eq!((q.bytes(), w.bytes()), (0, 0));
    }

    #[test]
    fn ucred_bytes() {
        let c = Cred {
            pid: 7,
            uid: 1000,
            gid: 100,
        };
        assert_eq!(
            c.to_bytes(),
            [7, 0, 0, 0, 0xe8, 3, 0, 0, 100, 0, 0, 0].to_vec()
        );
    }
}
