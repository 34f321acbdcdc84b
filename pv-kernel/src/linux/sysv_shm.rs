//! System V shared memory (`shmget`, `shmat`, `shmdt`, `shmctl`): segments kept by key and
//! id, each a shared-memory object (`shmem::ShmObject`, the one behind
//! `MAP_SHARED|MAP_ANONYMOUS`) that `shmat` maps as a region of its own. PostgreSQL's
//! interlock segment, X11's MIT-SHM and older servers use them.
//!
//! A segment's attach count is the number of regions that map its object (a region split
//! or copied by `fork` counts again, as Linux's `shm_nattch` does). `IPC_RMID` removes a
//! segment at once when nothing maps it, else makes its key private and lets it go with
//! its last region: the table then keeps a weak reference only, so the memory goes with the
//! region. Permissions are Linux's `ipcperms` (owner or creator, group, other; `CAP_IPC_OWNER`
//! passes). The ids are not carried by a kernel hand-over (the programs' mappings are).
//!
//! The table's rules are pure methods with host unit tests; the system calls are the glue.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use pvmux_hypercalls::PAGE_SIZE;

use super::shmem::{ShmObject, ShmRef};
use super::uaccess::{copy_from_user, copy_to_user};
use super::{Errno, SysResult};
use crate::irq::IrqLock;

/// `shmget`'s key for a new segment no other `shmget` finds.
const IPC_PRIVATE: i32 = 0;
/// `shmget` flags.
const IPC_CREAT: u32 = 0o1000;
const IPC_EXCL: u32 = 0o2000;
/// `shmctl` commands.
const IPC_RMID: u32 = 0;
const IPC_SET: u32 = 1;
const IPC_STAT: u32 = 2;
const IPC_INFO: u32 = 3;
const SHM_LOCK: u32 = 11;
const SHM_UNLOCK: u32 = 12;
const SHM_STAT: u32 = 13;
const SHM_INFO: u32 = 14;
const SHM_STAT_ANY: u32 = 15;
/// Or'ed into a command by glibc: the 64-bit structures (the only ones here).
const IPC_64: u32 = 0x100;
/// `shmat` flags.
const SHM_RDONLY: u64 = 0o10000;
const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;
/// Mode bit of a removed segment still attached (`IPC_STAT`'s `shm_perm.mode`).
const SHM_DEST: u32 = 0o1000;
/// Most segments (Linux's `SHMMNI`), and the id space per sequence number.
const SHMMNI: u32 = 4096;
const ID_SHIFT: u32 = 15;
/// Largest segment and most pages of all segments (Linux's defaults).
const SHMMAX: u64 = u64::MAX - (1 << 24);
const SHMALL: u64 = u64::MAX - (1 << 24);
/// `CAP_IPC_OWNER` and `CAP_IPC_LOCK`.
const CAP_IPC_OWNER: u32 = 15;
const CAP_IPC_LOCK: u32 = 14;
/// Permission bits asked for (`ipcperms`).
const READ: u32 = 4;
const WRITE: u32 = 2;

/// Who asks: effective ids, groups, and whether `CAP_IPC_OWNER` passes every check.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    pub(crate) groups: Vec<u32>,
    pub(crate) ipc_owner: bool,
    pub(crate) sys_admin: bool,
    pub(crate) ipc_lock: bool,
    pub(crate) pid: i32,
}

/// A segment's object: held, or (removed while attached) only seen.
enum Obj {
    Held(Arc<ShmObject>),
    Removed(Weak<ShmObject>),
}

/// A segment.
struct Segment {
    key: i32,
    seq: u32,
    size: u64,
    obj: Obj,
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    mode: u32,
    cpid: i32,
    lpid: i32,
    atime: u64,
    dtime: u64,
    ctime: u64,
}

impl Segment {
    /// Regions mapping it.
    fn nattch(&self) -> u64 {
        match &self.obj {
            Obj::Held(a) => Arc::strong_count(a) as u64 - 1,
            Obj::Removed(w) => w.strong_count() as u64,
        }
    }

    fn object(&self) -> Option<Arc<ShmObject>> {
        match &self.obj {
            Obj::Held(a) => Some(a.clone()),
            Obj::Removed(w) => w.upgrade(),
        }
    }

    fn is(&self, obj: &Arc<ShmObject>) -> bool {
        match &self.obj {
            Obj::Held(a) => Arc::ptr_eq(a, obj),
            Obj::Removed(w) => core::ptr::eq(w.as_ptr(), Arc::as_ptr(obj)),
        }
    }

    /// Linux's `ipcperms`: whether `who` has every bit of `want` (`READ`, `WRITE`).
    fn allows(&self, who: &Caller, want: u32) -> bool {
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
    fn owned_by(&self, who: &Caller) -> bool {
        who.sys_admin || who.euid == self.uid || who.euid == self.cuid
    }

    /// `struct shmid64_ds` (112 bytes) for segment `id`.
    fn ds(&self, id: i32) -> [u8; 112] {
        let mut b = [0u8; 112];
        let mode = self.mode
            | if matches!(self.obj, Obj::Removed(_)) {
                SHM_DEST
            } else {
                0
            };
        let words32 = [
            self.key as u32,
            self.uid,
            self.gid,
            self.cuid,
            self.cgid,
            mode,
        ];
        for (i, w) in words32.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        b[24..26].copy_from_slice(&((id as u32 >> ID_SHIFT) as u16).to_ne_bytes());
        let words64 = [self.size, self.atime, self.dtime, self.ctime];
        for (i, w) in words64.iter().enumerate() {
            b[48 + i * 8..56 + i * 8].copy_from_slice(&w.to_ne_bytes());
        }
        b[80..84].copy_from_slice(&self.cpid.to_ne_bytes());
        b[84..88].copy_from_slice(&self.lpid.to_ne_bytes());
        b[88..96].copy_from_slice(&self.nattch().to_ne_bytes());
        b
    }
}

/// The segments, by index (an id is its index and the index's sequence number).
#[derive(Default)]
pub(crate) struct Table {
    segs: BTreeMap<u32, Segment>,
    next_seq: u32,
}

impl Table {
    /// Drops removed segments nothing maps any more.
    fn collect(&mut self) {
        self.segs.retain(|_, s| s.object().is_some());
    }

    /// The index of segment `id` (`EINVAL`: none, or a stale id).
    fn index(&self, id: i32) -> Result<u32, Errno> {
        let id = u32::try_from(id).map_err(|_| Errno::EINVAL)?;
        let (idx, seq) = (id & ((1 << ID_SHIFT) - 1), id >> ID_SHIFT);
        match self.segs.get(&idx) {
            Some(s) if s.seq == seq => Ok(idx),
            _ => Err(Errno::EINVAL),
        }
    }

    fn id_of(idx: u32, seq: u32) -> i32 {
        (seq << ID_SHIFT | idx) as i32
    }

    /// `shmget(key, size, flags)` for `who` at time `now` (s): the id.
    pub(crate) fn get(
        &mut self,
        key: i32,
        size: u64,
        flags: u32,
        who: &Caller,
        now: u64,
    ) -> Result<i32, Errno> {
        self.collect();
        if key != IPC_PRIVATE {
            let found = self
                .segs
                .iter()
                .find(|(_, s)| s.key == key && matches!(s.obj, Obj::Held(_)));
            if let Some((&idx, s)) = found {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return Err(Errno::EEXIST);
                }
                if size > s.size {
                    return Err(Errno::EINVAL);
                }
                // Linux's `ipcperms` on the mode bits asked for.
                let want = (flags >> 6 | flags >> 3 | flags) & 7;
                if !s.allows(who, want) {
                    return Err(Errno::EACCES);
                }
                return Ok(Self::id_of(idx, s.seq));
            }
            if flags & IPC_CREAT == 0 {
                return Err(Errno::ENOENT);
            }
        }
        if size == 0 || size > SHMMAX {
            return Err(Errno::EINVAL);
        }
        let pages: u64 = self.segs.values().map(|s| s.size.div_ceil(PAGE_SIZE)).sum();
        if pages.saturating_add(size.div_ceil(PAGE_SIZE)) > SHMALL {
            return Err(Errno::ENOSPC);
        }
        let idx = (0..SHMMNI)
            .find(|i| !self.segs.contains_key(i))
            .ok_or(Errno::ENOSPC)?;
        let seq = self.next_seq;
        self.next_seq = (self.next_seq + 1) % (1 << (31 - ID_SHIFT));
        self.segs.insert(
            idx,
            Segment {
                key,
                seq,
                size,
                obj: Obj::Held(ShmObject::new_owned()),
                uid: who.euid,
                gid: who.egid,
                cuid: who.euid,
                cgid: who.egid,
                mode: flags & 0o777,
                cpid: who.pid,
                lpid: 0,
                atime: 0,
                dtime: 0,
                ctime: now,
            },
        );
        Ok(Self::id_of(idx, seq))
    }

    /// An attach of segment `id` (`write`: read-write) at `now`: its object, size and key.
    pub(crate) fn attach(
        &mut self,
        id: i32,
        write: bool,
        who: &Caller,
        now: u64,
    ) -> Result<(Arc<ShmObject>, u64, i32), Errno> {
        self.collect();
        let idx = self.index(id)?;
        let s = self.segs.get_mut(&idx).ok_or(Errno::EINVAL)?;
        if !s.allows(who, if write { READ | WRITE } else { READ }) {
            return Err(Errno::EACCES);
        }
        let obj = s.object().ok_or(Errno::EINVAL)?;
        s.atime = now;
        s.lpid = who.pid;
        Ok((obj, s.size, s.key))
    }

    /// The size of the segment whose object is `obj`, if it is one.
    pub(crate) fn size_of(&self, obj: &Arc<ShmObject>) -> Option<u64> {
        self.segs.values().find(|s| s.is(obj)).map(|s| s.size)
    }

    /// Notes a detach of the segment whose object is `obj`.
    pub(crate) fn detached(&mut self, obj: &Arc<ShmObject>, who: &Caller, now: u64) {
        if let Some(s) = self.segs.values_mut().find(|s| s.is(obj)) {
            s.dtime = now;
            s.lpid = who.pid;
        }
    }

    /// `IPC_RMID`.
    fn remove(&mut self, idx: u32, who: &Caller) -> Result<(), Errno> {
        let s = self.segs.get_mut(&idx).ok_or(Errno::EINVAL)?;
        if !s.owned_by(who) {
            return Err(Errno::EPERM);
        }
        if let Obj::Held(a) = &s.obj {
            s.obj = Obj::Removed(Arc::downgrade(a));
            s.key = IPC_PRIVATE;
        }
        self.collect();
        Ok(())
    }

    /// The highest index in use (what `IPC_INFO` and `SHM_INFO` return).
    fn highest(&self) -> u32 {
        self.segs.keys().next_back().copied().unwrap_or(0)
    }
}

/// The segments of this kernel.
static TABLE: IrqLock<Option<Table>> = IrqLock::new(None);

/// Runs `f` on the table, removed segments nothing maps any more gone first.
fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut t = TABLE.lock();
    let t = t.get_or_insert_with(Table::default);
    t.collect();
    f(t)
}

/// The caller, as the rules see it.
fn caller() -> Caller {
    let p = super::task::current_process();
    let c = p.creds.lock();
    Caller {
        euid: c.euid,
        egid: c.egid,
        groups: c.groups.clone(),
        ipc_owner: c.capable(CAP_IPC_OWNER),
        sys_admin: c.capable(super::caps::cap::SYS_ADMIN),
        ipc_lock: c.capable(CAP_IPC_LOCK),
        pid: p.pid,
    }
}

/// Wall-clock seconds (the `*time` fields).
fn now() -> u64 {
    super::misc::realtime_ns() / 1_000_000_000
}

/// Whether `obj` is a System V segment's object (a kernel hand-over carries its regions as
/// anonymous shared memory).
pub(crate) fn is_segment(obj: &Arc<ShmObject>) -> bool {
    with(|t| t.size_of(obj).is_some())
}

/// `shmget(key, size, flags)`.
pub(crate) fn sys_shmget(key: u64, size: u64, flags: u64) -> SysResult {
    let who = caller();
    with(|t| t.get(key as u32 as i32, size, flags as u32, &who, now())).map(|id| id as u64)
}

/// `shmat(id, addr, flags)`: the address the segment is mapped at.
pub(crate) fn sys_shmat(id: u64, addr: u64, flags: u64) -> SysResult {
    let who = caller();
    let write = flags & SHM_RDONLY == 0;
    let (obj, size, key) = with(|t| t.attach(id as u32 as i32, write, &who, now()))?;
    let addr = if flags & SHM_RND != 0 {
        addr & !(PAGE_SIZE - 1)
    } else if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    } else {
        addr
    };
    let len = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let prot = 1 | if write { 2 } else { 0 } | if flags & SHM_EXEC != 0 { 4 } else { 0 };
    let name = super::space::MapFile {
        path: format!("/SYSV{:08x} (deleted)", key as u32)
            .as_bytes()
            .into(),
        ino: id as u32 as u64,
        offset: 0,
        bus_past_eof: false,
        image: None,
    };
    super::memory::map_shared_object(
        addr,
        len,
        prot,
        addr != 0,
        flags & SHM_REMAP != 0,
        ShmRef::of(obj, 0),
        &name,
    )
}

/// `shmdt(addr)`: unmaps the segment attached at `addr` (`EINVAL` if none starts there).
pub(crate) fn sys_shmdt(addr: u64) -> SysResult {
    let who = caller();
    let (obj, end) =
        super::memory::shared_object_at(addr, |o| with(|t| t.size_of(o))).ok_or(Errno::EINVAL)?;
    super::memory::sys_munmap(addr, end - addr)?;
    with(|t| t.detached(&obj, &who, now()));
    Ok(0)
}

/// `shmctl(id, cmd, buf)`.
pub(crate) fn sys_shmctl(id: u64, cmd: u64, buf: u64) -> SysResult {
    let who = caller();
    let id = id as u32 as i32;
    match cmd as u32 & !IPC_64 {
        IPC_INFO => {
            let mut b = [0u8; 72];
            for (i, v) in [SHMMAX, 1, u64::from(SHMMNI), u64::from(SHMMNI), SHMALL]
                .iter()
                .enumerate()
            {
                b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            }
            copy_to_user(buf, &b)?;
            Ok(with(|t| t.highest()).into())
        }
        SHM_INFO => {
            let (used, pages, resident, highest) = with(|t| {
                t.collect();
                let pages = t.segs.values().map(|s| s.size.div_ceil(PAGE_SIZE)).sum();
                let resident = t
                    .segs
                    .values()
                    .filter_map(Segment::object)
                    .map(|o| o.page_count())
                    .sum();
                (t.segs.len() as u32, pages, resident, t.highest())
            });
            let mut b = [0u8; 48];
            b[0..4].copy_from_slice(&used.to_ne_bytes());
            b[8..16].copy_from_slice(&u64::to_ne_bytes(pages));
            b[16..24].copy_from_slice(&u64::to_ne_bytes(resident));
            copy_to_user(buf, &b)?;
            Ok(highest.into())
        }
        c @ (SHM_STAT | SHM_STAT_ANY) => {
            let (ds, id) = with(|t| {
                t.collect();
                let idx = u32::try_from(id).map_err(|_| Errno::EINVAL)?;
                let s = t.segs.get(&idx).ok_or(Errno::EINVAL)?;
                if c == SHM_STAT && !s.allows(&who, READ) {
                    return Err(Errno::EACCES);
                }
                let id = Table::id_of(idx, s.seq);
                Ok((s.ds(id), id))
            })?;
            copy_to_user(buf, &ds)?;
            Ok(id as u64)
        }
        IPC_STAT => {
            let ds = with(|t| {
                let idx = t.index(id)?;
                let s = &t.segs[&idx];
                if !s.allows(&who, READ) {
                    return Err(Errno::EACCES);
                }
                Ok(s.ds(id))
            })?;
            copy_to_user(buf, &ds)?;
            Ok(0)
        }
        IPC_SET => {
            let mut b = [0u8; 112];
            copy_from_user(buf, &mut b)?;
            let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let (uid, gid, mode) = (word(4), word(8), word(20));
            let t_now = now();
            with(|t| {
                let idx = t.index(id)?;
                let s = t.segs.get_mut(&idx).ok_or(Errno::EINVAL)?;
                if !s.owned_by(&who) {
                    return Err(Errno::EPERM);
                }
                s.uid = uid;
                s.gid = gid;
                s.mode = mode & 0o777;
                s.ctime = t_now;
                Ok(0)
            })
        }
        IPC_RMID => with(|t| {
            let idx = t.index(id)?;
            t.remove(idx, &who).map(|()| 0)
        }),
        SHM_LOCK | SHM_UNLOCK => with(|t| {
            let idx = t.index(id)?;
            if !who.ipc_lock && !t.segs[&idx].owned_by(&who) {
                return Err(Errno::EPERM);
            }
            // Nothing is ever swapped.
            Ok(0)
        }),
        _ => Err(Errno::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(euid: u32) -> Caller {
        Caller {
            euid,
            egid: euid,
            groups: Vec::new(),
            ipc_owner: false,
            sys_admin: false,
            ipc_lock: false,
            pid: 7,
        }
    }

    #[test]
    fn keys_find_their_segment_and_private_keys_never_do() {
        let mut t = Table::default();
        let me = user(1000);
        let a = t.get(42, 10_000, IPC_CREAT | 0o600, &me, 1).unwrap();
        assert_eq!(t.get(42, 4096, 0, &me, 2), Ok(a));
        assert_eq!(t.get(42, 20_000, 0, &me, 2), Err(Errno::EINVAL), "larger");
        assert_eq!(
            t.get(42, 1, IPC_CREAT | IPC_EXCL | 0o600, &me, 2),
            Err(Errno::EEXIST)
        );
        assert_eq!(t.get(43, 1, 0o600, &me, 2), Err(Errno::ENOENT));
        let p = t.get(IPC_PRIVATE, 1, 0o600, &me, 2).unwrap();
        let q = t.get(IPC_PRIVATE, 1, 0o600, &me, 2).unwrap();
        assert!(p != q && p != a);
        assert_eq!(t.get(44, 0, IPC_CREAT, &me, 2), Err(Errno::EINVAL), "empty");
        // Other users: the mode's group and other bits.
        assert_eq!(t.get(42, 1, 0o400, &user(1001), 2), Err(Errno::EACCES));
        let mut root = user(0);
        root.ipc_owner = true;
        assert_eq!(t.get(42, 1, 0o600, &root, 2), Ok(a));
    }

    #[test]
    fn a_removed_segment_goes_with_its_last_attachment() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(7, 8192, IPC_CREAT | 0o640, &me, 1).unwrap();
        let (obj, size, key) = t.attach(id, true, &me, 5).unwrap();
        assert_eq!((size, key), (8192, 7));
        let idx = t.index(id).unwrap();
        assert_eq!(t.segs[&idx].nattch(), 1, "this test's reference");
        // Reading needs the group bit for a member of the group, writing is refused.
        let mut member = user(1001);
        member.groups.push(1000);
        assert!(t.attach(id, false, &member, 5).is_ok());
        assert_eq!(t.attach(id, true, &member, 5).err(), Some(Errno::EACCES));
        assert_eq!(t.remove(idx, &user(1001)), Err(Errno::EPERM));
        t.remove(idx, &me).unwrap();
        // Still there (attached), its key private, its mode marked.
        assert_eq!(t.get(7, 1, 0o600, &me, 6), Err(Errno::ENOENT));
        let ds = t.segs[&idx].ds(id);
        assert_eq!(
            u32::from_ne_bytes(ds[20..24].try_into().unwrap()),
            0o640 | SHM_DEST
        );
        assert_eq!(u64::from_ne_bytes(ds[88..96].try_into().unwrap()), 1);
        assert_eq!(t.size_of(&obj), Some(8192));
        drop(obj);
        t.collect();
        assert_eq!(t.index(id), Err(Errno::EINVAL), "gone with its last region");
        // A new segment at the same index gets another id.
        let again = t.get(7, 1, IPC_CREAT | 0o600, &me, 7).unwrap();
        assert_ne!(again, id);
        assert_eq!(t.index(id), Err(Errno::EINVAL), "a stale id");
    }

    #[test]
    fn the_status_has_linux_s_layout() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0x1234, 5000, IPC_CREAT | 0o600, &me, 99).unwrap();
        let ds = t.segs[&t.index(id).unwrap()].ds(id);
        let w32 = |o: usize| u32::from_ne_bytes(ds[o..o + 4].try_into().unwrap());
        let w64 = |o: usize| u64::from_ne_bytes(ds[o..o + 8].try_into().unwrap());
        assert_eq!(
            (w32(0), w32(4), w32(8), w32(12), w32(16), w32(20)),
            (0x1234, 1000, 1000, 1000, 1000, 0o600)
        );
        assert_eq!((w64(48), w64(72), w32(80), w64(88)), (5000, 99, 7, 0));
    }
}
