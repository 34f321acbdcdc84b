//! System V message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`): queues of typed
//! messages kept by key and id, Linux's `ipc/msg.c` rules. Postfix-era daemons, Perl's
//! `IPC::Msg`, `ipcmk -Q` and batch systems use them.
//!
//! A queue holds at most `msg_qbytes` bytes (and as many messages); a sender waits for room
//! and a receiver for a message it selects (the first; the first of a type; the first not of
//! it, `MSG_EXCEPT`; the lowest type up to a bound; or, `MSG_COPY`, a copy of the Nth)
//! unless it asked `IPC_NOWAIT` (`EAGAIN`, `ENOMSG`). Every change bumps `CHANGES` ([`super::Changes`]) and
//! wakes the waiters, who look again. A wait ends with `EIDRM` when the queue is removed and
//! `EINTR` for a signal (never restarted, `signal(7)`). Messages live in the kernel heap,
//! each charged to it before it is kept ([`crate::linux::alloc_guard`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::{
    caller, now, put_i32s, put_u64s, Caller, Changes, Ids, IPC_64, IPC_INFO, IPC_NOWAIT, IPC_RMID,
    IPC_SET, IPC_STAT, PERM_LEN, READ, WRITE,
};
use crate::irq::IrqLock;
use crate::linux::uaccess::{copy_from_user, copy_to_user};
use crate::linux::{Errno, SysResult};

/// `msgctl` commands of queues only.
const MSG_STAT: u32 = 11;
const MSG_INFO: u32 = 12;
const MSG_STAT_ANY: u32 = 13;
/// `msgrcv` flags.
const MSG_NOERROR: u32 = 0o10000;
const MSG_EXCEPT: u32 = 0o20000;
const MSG_COPY: u32 = 0o40000;
/// Linux's defaults: most queues, largest message, a new queue's byte limit.
const MSGMNI: u32 = 32000;
const MSGMAX: u64 = 8192;
const MSGMNB: u64 = 16384;
/// Size of `struct msqid64_ds` and of `struct msginfo`.
const DS_LEN: usize = 120;
const INFO_LEN: usize = 32;
/// Kernel heap a message costs beyond its bytes.
const MSG_OVERHEAD: usize = 48;

/// One message.
struct Msg {
    mtype: i64,
    text: Vec<u8>,
}

/// A queue.
struct Queue {
    msgs: VecDeque<Msg>,
    cbytes: u64,
    qbytes: u64,
    lspid: i32,
    lrpid: i32,
    stime: u64,
    rtime: u64,
    ctime: u64,
}

/// Which message a receive takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Select {
    /// The first.
    Any,
    /// The first of this type.
    Type(i64),
    /// The first not of this type.
    Except(i64),
    /// The first of the lowest type up to this one.
    UpTo(i64),
    /// A copy of the message at this position (`MSG_COPY`).
    Copy(usize),
}

impl Select {
    /// `msgrcv`'s `msgtyp` and flags as a selection (`EINVAL`: `MSG_COPY` without
    /// `IPC_NOWAIT`, or with `MSG_EXCEPT`).
    pub(crate) fn of(msgtyp: i64, flags: u32) -> Result<Self, Errno> {
        if flags & MSG_COPY != 0 {
            if flags & IPC_NOWAIT == 0 || flags & MSG_EXCEPT != 0 {
                return Err(Errno::EINVAL);
            }
            return Ok(Self::Copy(usize::try_from(msgtyp).unwrap_or(usize::MAX)));
        }
        Ok(match msgtyp {
            0 => Self::Any,
            t if t < 0 => Self::UpTo(t.checked_neg().unwrap_or(i64::MAX)),
            t if flags & MSG_EXCEPT != 0 => Self::Except(t),
            t => Self::Type(t),
        })
    }

    /// The position in `msgs` of the message selected, if any.
    fn find(self, msgs: &VecDeque<Msg>) -> Option<usize> {
        let first = |f: &dyn Fn(&Msg) -> bool| msgs.iter().position(f);
        match self {
            Self::Any => first(&|_| true),
            Self::Type(t) => first(&|m| m.mtype == t),
            Self::Except(t) => first(&|m| m.mtype != t),
            Self::UpTo(t) => msgs
                .iter()
                .enumerate()
                .filter(|(_, m)| m.mtype <= t)
                .min_by_key(|&(i, m)| (m.mtype, i))
                .map(|(i, _)| i),
            Self::Copy(n) => (n < msgs.len()).then_some(n),
        }
    }
}

/// What a receive came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// A message: its type and text (cut to the buffer with `MSG_NOERROR`).
    Msg(i64, Vec<u8>),
    /// None selected yet.
    Wait,
}

/// The queues.
pub(crate) struct Table {
    ids: Ids<Queue>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            ids: Ids::new(MSGMNI),
        }
    }
}

impl Table {
    /// `msgget(key, flags)` for `who` at `now` (s): the id.
    pub(crate) fn get(
        &mut self,
        key: i32,
        flags: u32,
        who: &Caller,
        now: u64,
    ) -> Result<i32, Errno> {
        self.ids.get_or_make(
            key,
            flags,
            who,
            |_| Ok(()),
            || {
                Ok(Queue {
                    msgs: VecDeque::new(),
                    cbytes: 0,
                    qbytes: MSGMNB,
                    lspid: 0,
                    lrpid: 0,
                    stime: 0,
                    rtime: 0,
                    ctime: now,
                })
            },
        )
    }

    /// Tries to queue `text` as a message of type `mtype` on queue `id` for `who`: `true`
    /// if queued, `false` if there is no room yet (`EAGAIN` with `nowait`).
    pub(crate) fn try_send(
        &mut self,
        id: i32,
        mtype: i64,
        text: &mut Option<Vec<u8>>,
        nowait: bool,
        who: &Caller,
        now: u64,
    ) -> Result<bool, Errno> {
        let e = self.ids.get_mut(id)?;
        if !e.perm.allows(who, WRITE) {
            return Err(Errno::EACCES);
        }
        let q = &mut e.obj;
        let len = text.as_ref().map_or(0, Vec::len) as u64;
        // Linux counts messages against the byte limit too.
        let fits = len + q.cbytes <= q.qbytes && (q.msgs.len() as u64) < q.qbytes;
        if !fits {
            return match nowait {
                true => Err(Errno::EAGAIN),
                false => Ok(false),
            };
        }
        crate::linux::alloc_guard::reserve(len as usize + MSG_OVERHEAD)?;
        q.msgs.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        let text = text.take().unwrap_or_default();
        q.msgs.push_back(Msg { mtype, text });
        q.cbytes += len;
        (q.lspid, q.stime) = (who.pid, now);
        Ok(true)
    }

    /// Tries to take (or copy) the message `sel` selects from queue `id` for `who`, for a
    /// buffer of `room` bytes: `E2BIG` if it is longer and `noerror` is not set (the message
    /// stays); `ENOMSG` for none with `nowait`.
    pub(crate) fn try_receive(
        &mut self,
        id: i32,
        sel: Select,
        room: usize,
        flags: u32,
        who: &Caller,
        now: u64,
    ) -> Result<Received, Errno> {
        let e = self.ids.get_mut(id)?;
        if !e.perm.allows(who, READ) {
            return Err(Errno::EACCES);
        }
        let q = &mut e.obj;
        let Some(i) = sel.find(&q.msgs) else {
            return match flags & IPC_NOWAIT != 0 {
                true => Err(Errno::ENOMSG),
                false => Ok(Received::Wait),
            };
        };
        if q.msgs[i].text.len() > room && flags & MSG_NOERROR == 0 {
            return Err(Errno::E2BIG);
        }
        if let Select::Copy(_) = sel {
            let m = &q.msgs[i];
            let mut text = Vec::new();
            let n = m.text.len().min(room);
            text.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
            text.extend_from_slice(&m.text[..n]);
            return Ok(Received::Msg(m.mtype, text));
        }
        let mut m = q.msgs.remove(i).ok_or(Errno::EINVAL)?;
        q.cbytes -= m.text.len() as u64;
        (q.lrpid, q.rtime) = (who.pid, now);
        m.text.truncate(room);
        Ok(Received::Msg(m.mtype, m.text))
    }

    /// `IPC_SET` of queue `id` from the `msqid64_ds` in `ds`: owner, mode and byte limit
    /// (past `MSGMNB` only with `CAP_SYS_RESOURCE`, else `EPERM`).
    fn set(&mut self, id: i32, ds: &[u8], who: &Caller, now: u64) -> Result<(), Errno> {
        let e = self.ids.get_mut(id)?;
        if !e.perm.owned_by(who) {
            return Err(Errno::EPERM);
        }
        let qbytes = u64::from_ne_bytes(ds[88..96].try_into().map_err(|_| Errno::EINVAL)?);
        if qbytes > MSGMNB && !who.sys_resource {
            return Err(Errno::EPERM);
        }
        e.perm.set_from(ds, who)?;
        e.obj.qbytes = qbytes;
        e.obj.ctime = now;
        Ok(())
    }

    /// `struct msqid64_ds` of queue `id`, `READ` checked unless `any` (`MSG_STAT_ANY`).
    fn ds(&self, id: i32, who: &Caller, any: bool) -> Result<[u8; DS_LEN], Errno> {
        let e = self.ids.get(id)?;
        if !any && !e.perm.allows(who, READ) {
            return Err(Errno::EACCES);
        }
        let mut b = [0u8; DS_LEN];
        e.perm.write(&mut b, id, 0);
        let q = &e.obj;
        put_u64s(
            &mut b,
            PERM_LEN,
            &[
                q.stime,
                q.rtime,
                q.ctime,
                q.cbytes,
                q.msgs.len() as u64,
                q.qbytes,
            ],
        );
        b[96..100].copy_from_slice(&q.lspid.to_ne_bytes());
        b[100..104].copy_from_slice(&q.lrpid.to_ne_bytes());
        Ok(b)
    }
}

/// The queues of this kernel.
static TABLE: IrqLock<Option<Table>> = IrqLock::new(None);
/// Changes callers waiting in `msgsnd` or `msgrcv` look again after.
static CHANGES: Changes = Changes::new();

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut t = TABLE.lock();
    f(t.get_or_insert_with(Table::default))
}

/// Wakes the waiters after a change.
fn changed() {
    CHANGES.changed();
}

/// Runs `attempt` until it gives `Some` (then wakes the other waiters), waiting for a change
/// in between: `EIDRM` if the object went while this caller waited (`attempt`'s `EINVAL`
/// then), `EINTR` for a signal.
fn until_done<R>(mut attempt: impl FnMut() -> Result<Option<R>, Errno>) -> Result<R, Errno> {
    let task = crate::linux::task::current_task();
    let mut waited = false;
    loop {
        let seen = CHANGES.seen();
        match attempt() {
            Ok(Some(r)) => {
                changed();
                return Ok(r);
            }
            Ok(None) => {}
            Err(Errno::EINVAL) if waited => return Err(Errno::EIDRM),
            Err(e) => return Err(e),
        }
        if task.signal_pending() {
            return Err(Errno::EINTR);
        }
        waited = true;
        CHANGES.wait(seen, &task, None);
    }
}

/// How many queues there are (a kernel hand-over does not carry them).
pub(crate) fn count() -> usize {
    with(|t| t.ids.len())
}

/// `msgget(key, flags)`.
pub(crate) fn sys_msgget(key: u64, flags: u64) -> SysResult {
    let who = caller();
    with(|t| t.get(key as u32 as i32, flags as u32, &who, now())).map(|id| id as u64)
}

/// `msgsnd(id, msgp, msgsz, flags)`.
pub(crate) fn sys_msgsnd(id: u64, msgp: u64, msgsz: u64, flags: u64) -> SysResult {
    let id = id as u32 as i32;
    if msgsz > MSGMAX || id < 0 {
        return Err(Errno::EINVAL);
    }
    let mtype: i64 = crate::linux::uaccess::read_val(msgp)?;
    if mtype < 1 {
        return Err(Errno::EINVAL);
    }
    let mut text = Vec::new();
    text.try_reserve_exact(msgsz as usize)
        .map_err(|_| Errno::ENOMEM)?;
    text.resize(msgsz as usize, 0);
    copy_from_user(msgp.wrapping_add(8), &mut text)?;
    let mut text = Some(text);
    let who = caller();
    let nowait = flags as u32 & IPC_NOWAIT != 0;
    until_done(|| {
        with(|t| t.try_send(id, mtype, &mut text, nowait, &who, now()))
            .map(|sent| sent.then_some(0))
    })
}

/// `msgrcv(id, msgp, msgsz, msgtyp, flags)`: the bytes of text received.
pub(crate) fn sys_msgrcv(id: u64, msgp: u64, msgsz: u64, msgtyp: u64, flags: u64) -> SysResult {
    let id = id as u32 as i32;
    let room = usize::try_from(msgsz as i64).map_err(|_| Errno::EINVAL)?;
    if id < 0 {
        return Err(Errno::EINVAL);
    }
    let flags = flags as u32;
    let sel = Select::of(msgtyp as i64, flags)?;
    let who = caller();
    let (mtype, text) = until_done(|| {
        with(|t| t.try_receive(id, sel, room, flags, &who, now())).map(|r| match r {
            Received::Msg(mtype, text) => Some((mtype, text)),
            Received::Wait => None,
        })
    })?;
    copy_to_user(msgp, &mtype.to_ne_bytes())?;
    copy_to_user(msgp.wrapping_add(8), &text)?;
    Ok(text.len() as u64)
}

/// `msgctl(id, cmd, buf)`.
pub(crate) fn sys_msgctl(id: u64, cmd: u64, buf: u64) -> SysResult {
    let who = caller();
    let id = id as u32 as i32;
    match cmd as u32 & !IPC_64 {
        c @ (IPC_INFO | MSG_INFO) => {
            let (queues, msgs, bytes, highest) = with(|t| {
                let msgs: usize = t.ids.values().map(|q| q.msgs.len()).sum();
                let bytes: u64 = t.ids.values().map(|q| q.cbytes).sum();
                (
                    t.ids.len() as i32,
                    msgs as i32,
                    bytes as i32,
                    t.ids.highest(),
                )
            });
            let (pool, map, tql) = match c {
                MSG_INFO => (queues, msgs, bytes),
                _ => (
                    (u64::from(MSGMNI) * MSGMNB / 1024) as i32,
                    MSGMNB as i32,
                    MSGMNB as i32,
                ),
            };
            let mut b = [0u8; INFO_LEN];
            put_i32s(
                &mut b,
                &[
                    pool,
                    map,
                    MSGMAX as i32,
                    MSGMNB as i32,
                    MSGMNI as i32,
                    16,
                    tql,
                ],
            );
            b[28..30].copy_from_slice(&0xffffu16.to_ne_bytes());
            copy_to_user(buf, &b)?;
            Ok(highest.into())
        }
        c @ (IPC_STAT | MSG_STAT | MSG_STAT_ANY) => {
            let (ds, id) = with(|t| {
                let id = t.ids.stat_id(id, c != IPC_STAT)?;
                Ok::<_, Errno>((t.ds(id, &who, c == MSG_STAT_ANY)?, id))
            })?;
            copy_to_user(buf, &ds)?;
            Ok(if c == IPC_STAT { 0 } else { id as u64 })
        }
        IPC_SET => {
            let mut b = [0u8; DS_LEN];
            copy_from_user(buf, &mut b)?;
            with(|t| t.set(id, &b, &who, now()))?;
            changed();
            Ok(0)
        }
        IPC_RMID => {
            with(|t| t.ids.remove(id, &who))?;
            changed();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::user;
    use super::super::IPC_CREAT;
    use super::*;

    fn send(t: &mut Table, id: i32, mtype: i64, text: &[u8]) -> Result<bool, Errno> {
        t.try_send(id, mtype, &mut Some(text.to_vec()), false, &user(1000), 1)
    }

    fn take(t: &mut Table, id: i32, sel: Select, room: usize) -> Result<Received, Errno> {
        t.try_receive(id, sel, room, IPC_NOWAIT, &user(1000), 2)
    }

    #[test]
    fn receives_select_as_linux_does() {
        let mut t = Table::default();
        let id = t.get(9, IPC_CREAT | 0o600, &user(1000), 1).unwrap();
        for (ty, text) in [(5, "a"), (2, "b"), (5, "c"), (1, "d"), (2, "e")] {
            assert_eq!(send(&mut t, id, ty, text.as_bytes()), Ok(true));
        }
        let got = |r: Result<Received, Errno>| match r {
            Ok(Received::Msg(ty, text)) => Ok((ty, text)),
            Ok(Received::Wait) => Err(Errno::EAGAIN),
            Err(e) => Err(e),
        };
        assert_eq!(
            got(take(&mut t, id, Select::Copy(2), 8)),
            Ok((5, b"c".to_vec()))
        );
        assert_eq!(
            got(take(&mut t, id, Select::Type(2), 8)),
            Ok((2, b"b".to_vec()))
        );
        assert_eq!(
            got(take(&mut t, id, Select::UpTo(4), 8)),
            Ok((1, b"d".to_vec()))
        );
        assert_eq!(
            got(take(&mut t, id, Select::Except(5), 8)),
            Ok((2, b"e".to_vec()))
        );
        assert_eq!(
            got(take(&mut t, id, Select::Any, 8)),
            Ok((5, b"a".to_vec()))
        );
        assert_eq!(take(&mut t, id, Select::Type(7), 8), Err(Errno::ENOMSG));
        assert_eq!(take(&mut t, id, Select::Copy(1), 8), Err(Errno::ENOMSG));
        // Too long: stays unless MSG_NOERROR, which cuts it.
        send(&mut t, id, 3, b"long text").unwrap();
        assert_eq!(take(&mut t, id, Select::Type(3), 4), Err(Errno::E2BIG));
        assert_eq!(
            got(t.try_receive(id, Select::Any, 4, MSG_NOERROR, &user(1000), 3)),
            Ok((5, b"c".to_vec()))
        );
        assert_eq!(
            got(t.try_receive(id, Select::Any, 4, MSG_NOERROR, &user(1000), 3)),
            Ok((3, b"long".to_vec()))
        );
        assert_eq!(Select::of(-3, 0), Ok(Select::UpTo(3)));
        assert_eq!(Select::of(i64::MIN, 0), Ok(Select::UpTo(i64::MAX)));
        assert_eq!(Select::of(4, MSG_EXCEPT), Ok(Select::Except(4)));
        assert_eq!(Select::of(0, MSG_COPY), Err(Errno::EINVAL));
        assert_eq!(Select::of(1, MSG_COPY | IPC_NOWAIT), Ok(Select::Copy(1)));
    }

    #[test]
    fn a_full_queue_makes_senders_wait_and_limits_need_privilege() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0, 0o600, &me, 1).unwrap();
        let mut ds = t.ds(id, &me, false).unwrap();
        ds[88..96].copy_from_slice(&10u64.to_ne_bytes());
        t.set(id, &ds, &me, 2).unwrap();
        assert_eq!(send(&mut t, id, 1, &[0; 8]), Ok(true));
        assert_eq!(send(&mut t, id, 1, &[0; 3]), Ok(false), "no room");
        assert_eq!(
            t.try_send(id, 1, &mut Some(vec![0; 3]), true, &me, 3),
            Err(Errno::EAGAIN)
        );
        assert_eq!(send(&mut t, id, 1, &[0; 2]), Ok(true), "exactly full");
        ds[88..96].copy_from_slice(&(MSGMNB + 1).to_ne_bytes());
        assert_eq!(t.set(id, &ds, &me, 4), Err(Errno::EPERM));
        let mut admin = user(1000);
        admin.sys_resource = true;
        t.set(id, &ds, &admin, 4).unwrap();
        assert_eq!(
            t.set(id, &ds, &user(1001), 4),
            Err(Errno::EPERM),
            "not the owner"
        );
        let ds = t.ds(id, &me, false).unwrap();
        let w64 = |o: usize| u64::from_ne_bytes(ds[o..o + 8].try_into().unwrap());
        assert_eq!((w64(72), w64(80), w64(88)), (10, 2, MSGMNB + 1));
        assert_eq!(i32::from_ne_bytes(ds[96..100].try_into().unwrap()), 7);
        assert_eq!(
            t.try_receive(id, Select::Any, 8, 0, &user(1001), 5),
            Err(Errno::EACCES)
        );
    }
}
