//! System V IPC: shared memory ([`shm`]), semaphores ([`sem`]) and message queues
//! ([`msg`]). What the three share lives here: keys and ids ([`Ids`]: an id is a slot index
//! and that slot's sequence number, so a removed object's id never finds its successor),
//! the `*get` rules for an existing key, the permission record with Linux's `ipcperms`
//! ([`Perm`]) and its `struct ipc64_perm` layout, and who is asking ([`Caller`]).
//!
//! One namespace for the whole guest (a guest is one IPC namespace). The objects are not
//! carried by a kernel hand-over (shared memory's regions are, as anonymous shared memory).
//! The tables' rules are pure methods with host unit tests; the system calls are the glue.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::task::Task;
use super::Errno;
use crate::sched::wait::WaitQueue;

pub(crate) mod msg;
pub(crate) mod sem;
pub(crate) mod shm;

/// A `*get` key no other `*get` finds.
pub(super) const IPC_PRIVATE: i32 = 0;
/// `*get` flags.
pub(super) const IPC_CREAT: u32 = 0o1000;
pub(super) const IPC_EXCL: u32 = 0o2000;
/// `semop`, `msgsnd`, `msgrcv`: fail with `EAGAIN`/`ENOMSG` instead of waiting.
pub(super) const IPC_NOWAIT: u32 = 0o4000;
/// `*ctl` commands every kind takes.
pub(super) const IPC_RMID: u32 = 0;
pub(super) const IPC_SET: u32 = 1;
pub(super) const IPC_STAT: u32 = 2;
pub(super) const IPC_INFO: u32 = 3;
/// Or'ed into a command by glibc: the 64-bit structures (the only ones here).
pub(super) const IPC_64: u32 = 0x100;
/// `CAP_IPC_OWNER` and `CAP_IPC_LOCK`.
const CAP_IPC_OWNER: u32 = 15;
const CAP_IPC_LOCK: u32 = 14;
/// Permission bits asked for (`ipcperms`).
pub(super) const READ: u32 = 4;
pub(super) const WRITE: u32 = 2;
/// Bits of an id that are the slot index; the sequence number is above them.
const ID_SHIFT: u32 = 15;
/// Size of `struct ipc64_perm` (the head of every `*id64_ds`).
pub(super) const PERM_LEN: usize = 48;

/// Who asks: effective ids, groups, and the capabilities the rules look at.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    pub(crate) groups: Vec<u32>,
    /// `CAP_IPC_OWNER`: passes every permission check.
    pub(crate) ipc_owner: bool,
    /// `CAP_SYS_ADMIN`: may change and remove any object.
    pub(crate) sys_admin: bool,
    /// `CAP_IPC_LOCK`.
    pub(crate) ipc_lock: bool,
    /// `CAP_SYS_RESOURCE`: may raise a queue's byte limit past the default.
    pub(crate) sys_resource: bool,
    pub(crate) pid: i32,
}

/// The caller, as the rules see it.
pub(super) fn caller() -> Caller {
    let p = super::task::current_process();
    let c = p.creds.lock();
    Caller {
        euid: c.euid,
        egid: c.egid,
        groups: c.groups.clone(),
        ipc_owner: c.capable(CAP_IPC_OWNER),
        sys_admin: c.capable(super::caps::cap::SYS_ADMIN),
        ipc_lock: c.capable(CAP_IPC_LOCK),
        sys_resource: c.capable(super::caps::cap::SYS_RESOURCE),
        pid: p.pid,
    }
}

/// Wall-clock seconds (the `*time` fields).
pub(super) fn now() -> u64 {
    super::misc::realtime_ns() / 1_000_000_000
}

/// An object's key, owner, creator and mode (`struct kern_ipc_perm`).
#[derive(Clone, Debug)]
pub(super) struct Perm {
    pub(super) key: i32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) cuid: u32,
    pub(super) cgid: u32,
    /// The low nine bits.
    pub(super) mode: u32,
}

impl Perm {
    /// A new object's: `who` owns and created it, with `flags`' permission bits.
    pub(super) fn new(key: i32, flags: u32, who: &Caller) -> Self {
        Self {
            key,
            uid: who.euid,
            gid: who.egid,
            cuid: who.euid,
            cgid: who.egid,
            mode: flags & 0o777,
        }
    }

    /// Linux's `ipcperms`: whether `who` has every bit of `want` (`READ`, `WRITE`).
    pub(super) fn allows(&self, who: &Caller, want: u32) -> bool {
        if who.ipc_owner {
            return true;
        }
        let granted = if who.euid == self.uid || who.euid == self.cuid {
            self.mode >> 6
        } else if [self.gid, self.cgid]
            .iter()
            .any(|g| *g == who.egid || who.groups.contains(g))
        {
            self.mode >> 3
        } else {
            self.mode
        } & 7;
        want & !granted == 0
    }

    /// Owner, creator or `CAP_SYS_ADMIN` (`IPC_SET`, `IPC_RMID`).
    pub(super) fn owned_by(&self, who: &Caller) -> bool {
        who.sys_admin || who.euid == self.uid || who.euid == self.cuid
    }

    /// The `*get` rules for an existing object with this key: `EEXIST` for `IPC_CREAT |
    /// IPC_EXCL`, `EACCES` if `flags`' permission bits ask for more than `who` has.
    pub(super) fn get_existing(&self, flags: u32, who: &Caller) -> Result<(), Errno> {
        if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
            return Err(Errno::EEXIST);
        }
        let want = (flags >> 6 | flags >> 3 | flags) & 7;
        match self.allows(who, want) {
            true => Ok(()),
            false => Err(Errno::EACCES),
        }
    }

    /// `IPC_SET`: the new owner and mode from a `*id64_ds` the caller wrote (`EPERM` unless
    /// `who` owns or created the object); the rest of the record is the kind's.
    pub(super) fn set_from(&mut self, ds: &[u8], who: &Caller) -> Result<(), Errno> {
        if !self.owned_by(who) {
            return Err(Errno::EPERM);
        }
        let (uid, gid, mode) = (word(ds, 4), word(ds, 8), word(ds, 20));
        (self.uid, self.gid, self.mode) = (uid, gid, mode & 0o777);
        Ok(())
    }

    /// Writes `struct ipc64_perm` for id `id` into `b[..PERM_LEN]`, `extra` or'ed into the
    /// mode (shared memory's `SHM_DEST`).
    pub(super) fn write(&self, b: &mut [u8], id: i32, extra: u32) {
        let words = [
            self.key as u32,
            self.uid,
            self.gid,
            self.cuid,
            self.cgid,
            self.mode | extra,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        b[24..26].copy_from_slice(&((id as u32 >> ID_SHIFT) as u16).to_ne_bytes());
    }
}

/// The native-endian `u32` at `off` of `b`.
pub(super) fn word(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Puts native-endian `u64`s into `b` from offset `off`, one after the other.
pub(super) fn put_u64s(b: &mut [u8], off: usize, words: &[u64]) {
    for (i, w) in words.iter().enumerate() {
        b[off + i * 8..off + i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
}

/// Puts native-endian `i32`s (the `*info` structures) into `b` from offset 0.
pub(super) fn put_i32s(b: &mut [u8], words: &[i32]) {
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
}

/// A kind's change counter and the callers waiting for a change (semaphores, queues):
/// every change bumps the count and wakes them all; a waiter notes the count, looks at the
/// table, and waits for the count to move.
pub(super) struct Changes {
    count: AtomicU64,
    waiters: WaitQueue,
}

impl Changes {
    pub(super) const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            waiters: WaitQueue::new(),
        }
    }

    /// The count now, to wait on after looking.
    pub(super) fn seen(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether something changed since `seen`.
    pub(super) fn moved(&self, seen: u64) -> bool {
        self.seen() != seen
    }

    /// A change: the waiters look again.
    pub(super) fn changed(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.waiters.wake_all();
    }

    /// Waits until a change after `seen`, a signal for `task` or guest time `deadline`:
    /// false at the deadline.
    pub(super) fn wait(&self, seen: u64, task: &Task, deadline: Option<u64>) -> bool {
        let cond = || self.moved(seen) || task.signal_pending();
        match deadline {
            Some(d) => self.waiters.wait_until_deadline(cond, d),
            None => {
                self.waiters.wait_until(cond);
                true
            }
        }
    }
}

/// One object in an [`Ids`] table.
pub(super) struct Entry<T> {
    pub(super) perm: Perm,
    seq: u32,
    pub(super) obj: T,
}

/// Objects of one kind by slot index, at most `max` of them.
pub(super) struct Ids<T> {
    slots: BTreeMap<u32, Entry<T>>,
    next_seq: u32,
    max: u32,
}

impl<T> Ids<T> {
    /// An empty table of at most `max` objects (Linux's `*MNI`).
    pub(super) const fn new(max: u32) -> Self {
        Self {
            slots: BTreeMap::new(),
            next_seq: 0,
            max,
        }
    }

    /// The id of slot `idx` holding sequence number `seq`.
    fn id_of(idx: u32, seq: u32) -> i32 {
        (seq << ID_SHIFT | idx) as i32
    }

    /// The slot of object `id` (`EINVAL`: none, or a stale id).
    pub(super) fn index(&self, id: i32) -> Result<u32, Errno> {
        let id = u32::try_from(id).map_err(|_| Errno::EINVAL)?;
        let (idx, seq) = (id & ((1 << ID_SHIFT) - 1), id >> ID_SHIFT);
        match self.slots.get(&idx) {
            Some(e) if e.seq == seq => Ok(idx),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Object `id` (`EINVAL` if none).
    pub(super) fn get(&self, id: i32) -> Result<&Entry<T>, Errno> {
        let idx = self.index(id)?;
        self.slots.get(&idx).ok_or(Errno::EINVAL)
    }

    /// Object `id`, to change (`EINVAL` if none).
    pub(super) fn get_mut(&mut self, id: i32) -> Result<&mut Entry<T>, Errno> {
        let idx = self.index(id)?;
        self.slots.get_mut(&idx).ok_or(Errno::EINVAL)
    }

    /// The object in slot `idx` and its id (`*_STAT` commands name slots).
    pub(super) fn slot(&self, idx: u32) -> Option<(i32, &Entry<T>)> {
        self.slots.get(&idx).map(|e| (Self::id_of(idx, e.seq), e))
    }

    /// The id a status command names: `id` itself (`IPC_STAT`), or with `by_slot` the id
    /// of the object in slot `id` (`*_STAT`, `*_STAT_ANY`); `EINVAL` if there is none.
    pub(super) fn stat_id(&self, id: i32, by_slot: bool) -> Result<i32, Errno> {
        match by_slot {
            false => self.index(id).map(|_| id),
            true => {
                let idx = u32::try_from(id).map_err(|_| Errno::EINVAL)?;
                self.slot(idx).map(|(id, _)| id).ok_or(Errno::EINVAL)
            }
        }
    }

    /// `*get`: the id of the object with `key` (checked by [`Perm::get_existing`] and then
    /// by `existing`), or of a new one `make` builds (`ENOENT` without `IPC_CREAT`,
    /// `ENOSPC` when the table is full).
    pub(super) fn get_or_make(
        &mut self,
        key: i32,
        flags: u32,
        who: &Caller,
        existing: impl FnOnce(&T) -> Result<(), Errno>,
        make: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<i32, Errno> {
        if key != IPC_PRIVATE {
            if let Some((&idx, e)) = self.slots.iter().find(|(_, e)| e.perm.key == key) {
                e.perm.get_existing(flags, who)?;
                existing(&e.obj)?;
                return Ok(Self::id_of(idx, e.seq));
            }
            if flags & IPC_CREAT == 0 {
                return Err(Errno::ENOENT);
            }
        }
        let idx = (0..self.max)
            .find(|i| !self.slots.contains_key(i))
            .ok_or(Errno::ENOSPC)?;
        let obj = make()?;
        let seq = self.next_seq;
        self.next_seq = (self.next_seq + 1) % (1 << (31 - ID_SHIFT));
        let perm = Perm::new(key, flags, who);
        self.slots.insert(idx, Entry { perm, seq, obj });
        Ok(Self::id_of(idx, seq))
    }

    /// `IPC_RMID` of object `id`: the object (`EPERM` unless `who` owns or created it).
    pub(super) fn remove(&mut self, id: i32, who: &Caller) -> Result<T, Errno> {
        let idx = self.index(id)?;
        if !self.slots[&idx].perm.owned_by(who) {
            return Err(Errno::EPERM);
        }
        self.slots.remove(&idx).map(|e| e.obj).ok_or(Errno::EINVAL)
    }

    /// The objects.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.values().map(|e| &e.obj)
    }

    /// The objects, to change.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.values_mut().map(|e| &mut e.obj)
    }

    /// Keeps only the objects `keep` says.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.slots.retain(|_, e| keep(&e.obj));
    }

    /// How many objects there are.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The highest slot in use (what `IPC_INFO` and `*_INFO` return).
    pub(super) fn highest(&self) -> u32 {
        self.slots.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An unprivileged caller with `euid` as its ids.
    pub(in crate::linux::sysv_ipc) fn user(euid: u32) -> Caller {
        Caller {
            euid,
            egid: euid,
            groups: Vec::new(),
            ipc_owner: false,
            sys_admin: false,
            ipc_lock: false,
            sys_resource: false,
            pid: 7,
        }
    }

    #[test]
    fn ids_find_keys_and_stale_ids_find_nothing() {
        let mut t: Ids<u8> = Ids::new(2);
        let me = user(1000);
        let a = t
            .get_or_make(42, IPC_CREAT | 0o600, &me, |_| Ok(()), || Ok(1))
            .unwrap();
        assert_eq!(t.get_or_make(42, 0, &me, |_| Ok(()), || Ok(2)), Ok(a));
        assert_eq!(
            t.get_or_make(42, 0, &me, |_| Err(Errno::EINVAL), || Ok(2)),
            Err(Errno::EINVAL),
            "the kind's own check"
        );
        assert_eq!(
            t.get_or_make(42, IPC_CREAT | IPC_EXCL, &me, |_| Ok(()), || Ok(2)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            t.get_or_make(43, 0o600, &me, |_| Ok(()), || Ok(2)),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            t.get_or_make(42, 0o400, &user(1001), |_| Ok(()), || Ok(2)),
            Err(Errno::EACCES),
            "another user: the other bits"
        );
        let p = t
            .get_or_make(IPC_PRIVATE, 0o600, &me, |_| Ok(()), || Ok(3))
            .unwrap();
        assert_eq!(
            t.get_or_make(IPC_PRIVATE, 0o600, &me, |_| Ok(()), || Ok(4)),
            Err(Errno::ENOSPC),
            "full"
        );
        assert_eq!(t.remove(p, &user(1001)).err(), Some(Errno::EPERM));
        assert_eq!(t.remove(p, &me).ok(), Some(3));
        assert_eq!(t.index(p), Err(Errno::EINVAL));
        let again = t
            .get_or_make(IPC_PRIVATE, 0o600, &me, |_| Ok(()), || Ok(5))
            .unwrap();
        assert_ne!(again, p, "the same slot, another id");
        assert_eq!(t.get(p).err(), Some(Errno::EINVAL), "a stale id");
        assert_eq!(t.get(again).map(|e| e.obj), Ok(5));
    }

    #[test]
    fn permissions_are_linux_s_ipcperms() {
        let mut p = Perm::new(1, 0o640, &user(1000));
        let mut member = user(1001);
        assert!(!p.allows(&member, READ));
        member.groups.push(1000);
        assert!(p.allows(&member, READ) && !p.allows(&member, WRITE));
        assert!(p.allows(&user(1000), READ | WRITE));
        let mut root = user(0);
        root.ipc_owner = true;
        assert!(p.allows(&root, READ | WRITE));
        let mut ds = [0u8; 64];
        ds[4..8].copy_from_slice(&5u32.to_ne_bytes());
        ds[20..24].copy_from_slice(&0o7777u32.to_ne_bytes());
        assert_eq!(p.set_from(&ds, &user(1001)), Err(Errno::EPERM));
        p.set_from(&ds, &user(1000)).unwrap();
        assert_eq!((p.uid, p.mode, p.cuid), (5, 0o777, 1000));
        let mut b = [0u8; PERM_LEN];
        p.write(&mut b, 3 << ID_SHIFT | 9, 0o1000);
        assert_eq!((word(&b, 0), word(&b, 4), word(&b, 20)), (1, 5, 0o1777));
        assert_eq!(u16::from_ne_bytes([b[24], b[25]]), 3);
    }
}
