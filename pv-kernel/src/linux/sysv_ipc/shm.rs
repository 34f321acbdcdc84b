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

use alloc::format;
use alloc::sync::{Arc, Weak};

use pvmux_hypercalls::PAGE_SIZE;

use super::{
    caller, now, put_u64s, Caller, Ids, IPC_64, IPC_INFO, IPC_PRIVATE, IPC_RMID, IPC_SET, IPC_STAT,
    PERM_LEN, READ, WRITE,
};
use crate::irq::IrqLock;
use crate::linux::shmem::{ShmObject, ShmRef};
use crate::linux::uaccess::{copy_from_user, copy_to_user};
use crate::linux::{Errno, SysResult};

/// `shmctl` commands of shared memory only.
const SHM_LOCK: u32 = 11;
const SHM_UNLOCK: u32 = 12;
const SHM_STAT: u32 = 13;
const SHM_INFO: u32 = 14;
const SHM_STAT_ANY: u32 = 15;
/// `shmat` flags.
const SHM_RDONLY: u64 = 0o10000;
const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;
/// Mode bit of a removed segment still attached (`IPC_STAT`'s `shm_perm.mode`).
const SHM_DEST: u32 = 0o1000;
/// Most segments (Linux's `SHMMNI`).
const SHMMNI: u32 = 4096;
/// Largest segment and most pages of all segments (Linux's defaults).
const SHMMAX: u64 = u64::MAX - (1 << 24);
const SHMALL: u64 = u64::MAX - (1 << 24);
/// Size of `struct shmid64_ds`.
const DS_LEN: usize = 112;

/// A segment's object: held, or (removed while attached) only seen.
enum Obj {
    Held(Arc<ShmObject>),
    Removed(Weak<ShmObject>),
}

/// A segment.
struct Segment {
    size: u64,
    obj: Obj,
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
}

/// `struct shmid64_ds` for segment `e` of id `id`.
fn ds(e: &super::Entry<Segment>, id: i32) -> [u8; DS_LEN] {
    let mut b = [0u8; DS_LEN];
    let s = &e.obj;
    let dest = match s.obj {
        Obj::Removed(_) => SHM_DEST,
        Obj::Held(_) => 0,
    };
    e.perm.write(&mut b, id, dest);
    put_u64s(&mut b, PERM_LEN, &[s.size, s.atime, s.dtime, s.ctime]);
    b[80..84].copy_from_slice(&s.cpid.to_ne_bytes());
    b[84..88].copy_from_slice(&s.lpid.to_ne_bytes());
    b[88..96].copy_from_slice(&s.nattch().to_ne_bytes());
    b
}

/// The segments.
pub(crate) struct Table {
    ids: Ids<Segment>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            ids: Ids::new(SHMMNI),
        }
    }
}

impl Table {
    /// Drops removed segments nothing maps any more.
    fn collect(&mut self) {
        self.ids.retain(|s| s.object().is_some());
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
        let pages: u64 = self.ids.values().map(|s| s.size.div_ceil(PAGE_SIZE)).sum();
        self.ids.get_or_make(
            key,
            flags,
            who,
            |s| match size > s.size {
                true => Err(Errno::EINVAL),
                false => Ok(()),
            },
            || {
                if size == 0 || size > SHMMAX {
                    return Err(Errno::EINVAL);
                }
                if pages.saturating_add(size.div_ceil(PAGE_SIZE)) > SHMALL {
                    return Err(Errno::ENOSPC);
                }
                Ok(Segment {
                    size,
                    obj: Obj::Held(ShmObject::new_owned()),
                    cpid: who.pid,
                    lpid: 0,
                    atime: 0,
                    dtime: 0,
                    ctime: now,
                })
            },
        )
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
        let e = self.ids.get_mut(id)?;
        if !e.perm.allows(who, if write { READ | WRITE } else { READ }) {
            return Err(Errno::EACCES);
        }
        let key = e.perm.key;
        let s = &mut e.obj;
        let obj = s.object().ok_or(Errno::EINVAL)?;
        s.atime = now;
        s.lpid = who.pid;
        Ok((obj, s.size, key))
    }

    /// The size of the segment whose object is `obj`, if it is one.
    pub(crate) fn size_of(&self, obj: &Arc<ShmObject>) -> Option<u64> {
        self.ids.values().find(|s| s.is(obj)).map(|s| s.size)
    }

    /// Notes a detach of the segment whose object is `obj`.
    pub(crate) fn detached(&mut self, obj: &Arc<ShmObject>, who: &Caller, now: u64) {
        if let Some(s) = self.ids.values_mut().find(|s| s.is(obj)) {
            s.dtime = now;
            s.lpid = who.pid;
        }
    }

    /// `IPC_RMID`: gone now if nothing maps it, else its key private and gone with its last
    /// region.
    fn remove(&mut self, id: i32, who: &Caller) -> Result<(), Errno> {
        let e = self.ids.get_mut(id)?;
        if !e.perm.owned_by(who) {
            return Err(Errno::EPERM);
        }
        if let Obj::Held(a) = &e.obj.obj {
            e.obj.obj = Obj::Removed(Arc::downgrade(a));
            e.perm.key = IPC_PRIVATE;
        }
        self.collect();
        Ok(())
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
    let name = crate::linux::space::MapFile {
        path: format!("/SYSV{:08x} (deleted)", key as u32)
            .as_bytes()
            .into(),
        ino: id as u32 as u64,
        offset: 0,
        bus_past_eof: false,
        image: None,
    };
    crate::linux::memory::map_shared_object(
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
    let (obj, end) = crate::linux::memory::shared_object_at(addr, |o| with(|t| t.size_of(o)))
        .ok_or(Errno::EINVAL)?;
    crate::linux::memory::sys_munmap(addr, end - addr)?;
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
            Ok(with(|t| t.ids.highest()).into())
        }
        SHM_INFO => {
            let (used, pages, resident, highest) = with(|t| {
                let pages = t.ids.values().map(|s| s.size.div_ceil(PAGE_SIZE)).sum();
                let resident = t
                    .ids
                    .values()
                    .filter_map(Segment::object)
                    .map(|o| o.page_count())
                    .sum();
                (t.ids.len() as u32, pages, resident, t.ids.highest())
            });
            let mut b = [0u8; 48];
            b[0..4].copy_from_slice(&used.to_ne_bytes());
            b[8..16].copy_from_slice(&u64::to_ne_bytes(pages));
            b[16..24].copy_from_slice(&u64::to_ne_bytes(resident));
            copy_to_user(buf, &b)?;
            Ok(highest.into())
        }
        c @ (IPC_STAT | SHM_STAT | SHM_STAT_ANY) => {
            let (ds, id) = with(|t| {
                let id = t.ids.stat_id(id, c != IPC_STAT)?;
                let e = t.ids.get(id)?;
                if c != SHM_STAT_ANY && !e.perm.allows(&who, READ) {
                    return Err(Errno::EACCES);
                }
                Ok((ds(e, id), id))
            })?;
            copy_to_user(buf, &ds)?;
            Ok(if c == IPC_STAT { 0 } else { id as u64 })
        }
        IPC_SET => {
            let mut b = [0u8; DS_LEN];
            copy_from_user(buf, &mut b)?;
            let t_now = now();
            with(|t| {
                let e = t.ids.get_mut(id)?;
                e.perm.set_from(&b, &who)?;
                e.obj.ctime = t_now;
                Ok(0)
            })
        }
        IPC_RMID => with(|t| t.remove(id, &who).map(|()| 0)),
        SHM_LOCK | SHM_UNLOCK => with(|t| {
            if !who.ipc_lock && !t.ids.get(id)?.perm.owned_by(&who) {
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
    use super::super::tests::user;
    use super::super::{IPC_CREAT, IPC_EXCL};
    use super::*;

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
        assert_eq!(
            t.ids.get(id).unwrap().obj.nattch(),
            1,
            "this test's reference"
        );
        // Reading needs the group bit for a member of the group, writing is refused.
        let mut member = user(1001);
        member.groups.push(1000);
        assert!(t.attach(id, false, &member, 5).is_ok());
        assert_eq!(t.attach(id, true, &member, 5).err(), Some(Errno::EACCES));
        assert_eq!(t.remove(id, &user(1001)), Err(Errno::EPERM));
        t.remove(id, &me).unwrap();
        // Still there (attached), its key private, its mode marked.
        assert_eq!(t.get(7, 1, 0o600, &me, 6), Err(Errno::ENOENT));
        let ds = ds(t.ids.get(id).unwrap(), id);
        assert_eq!(
            u32::from_ne_bytes(ds[20..24].try_into().unwrap()),
            0o640 | SHM_DEST
        );
        assert_eq!(u64::from_ne_bytes(ds[88..96].try_into().unwrap()), 1);
        assert_eq!(t.size_of(&obj), Some(8192));
        drop(obj);
        t.collect();
        assert_eq!(
            t.ids.index(id),
            Err(Errno::EINVAL),
            "gone with its last region"
        );
        // A new segment at the same index gets another id.
        let again = t.get(7, 1, IPC_CREAT | 0o600, &me, 7).unwrap();
        assert_ne!(again, id);
        assert_eq!(t.ids.index(id), Err(Errno::EINVAL), "a stale id");
    }

    #[test]
    fn the_status_has_linux_s_layout() {
        let mut t = Table::default();
        let me = user(1000);
        let id = t.get(0x1234, 5000, IPC_CREAT | 0o600, &me, 99).unwrap();
        let ds = ds(t.ids.get(id).unwrap(), id);
        let w32 = |o: usize| u32::from_ne_bytes(ds[o..o + 4].try_into().unwrap());
        let w64 = |o: usize| u64::from_ne_bytes(ds[o..o + 8].try_into().unwrap());
        assert_eq!(
            (w32(0), w32(4), w32(8), w32(12), w32(16), w32(20)),
            (0x1234, 1000, 1000, 1000, 1000, 0o600)
        );
        assert_eq!((w64(48), w64(72), w32(80), w64(88)), (5000, 99, 7, 0));
    }
}
