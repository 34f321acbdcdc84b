//! Advisory file locks, as Linux keeps them (`fs/locks.c`):
//!
//! - `flock(fd, LOCK_SH | LOCK_EX | LOCK_UN [| LOCK_NB])`: a whole-file lock held by the open
//!   file description (shared by `dup` and `fork`), dropped when its last descriptor is
//!   closed. A conversion gives the old lock up first.
//! - POSIX record locks (`fcntl` `F_SETLK`, `F_SETLKW`, `F_GETLK`): byte ranges held by the
//!   process, not inherited by `fork`, dropped when the process closes *any* descriptor of
//!   the file or exits; a wait that would close a cycle of waiting processes fails with
//!   `EDEADLK`.
//! - Open file description locks (`F_OFD_SETLK`, `F_OFD_SETLKW`, `F_OFD_GETLK`): byte ranges
//!   held by the description, in the same range space as the POSIX locks.
//!
//! Locks are the inode's, so they act between every process of this kernel; the host's
//! processes do not see them (a volume file locked in the guest is not locked on the
//! host). Files without an inode here (pipes, sockets, event objects) take every lock at
//! once and report none held, as before. The rules are [`table::LockTable`]'s (host unit
//! tests); this module parses the calls, waits (a signal interrupts the wait with `EINTR`;
//! a kernel hand-over's freeze re-issues it) and wakes. The locks are carried across a
//! kernel hand-over (record section 43).

pub(crate) mod table;

use alloc::vec::Vec;

use table::{LockTable, Mode, Owner, RangeLock, OFFSET_MAX};

use super::file::{fstat, OpenFile};
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::signal;
use crate::linux::task::current_process;
use crate::linux::uaccess::{read_val, write_val};
use crate::linux::SysResult;
use crate::sched::wait::WaitQueue;

/// Every lock of this kernel.
static LOCKS: IrqLock<LockTable> = IrqLock::new(LockTable::new());
/// Threads waiting for a lock; woken whenever a lock is dropped or weakened.
static LOCK_WQ: WaitQueue = WaitQueue::new();

/// `struct flock::l_type`.
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
/// `struct flock::l_whence`.
const SEEK_SET: i16 = 0;
const SEEK_CUR: i16 = 1;
const SEEK_END: i16 = 2;

/// `flock` operations.
const LOCK_SH: u64 = 1;
const LOCK_EX: u64 = 2;
const LOCK_NB: u64 = 4;
const LOCK_UN: u64 = 8;

/// Which `fcntl` lock command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum LockCmd {
    /// `F_GETLK` / `F_OFD_GETLK`.
    Get,
    /// `F_SETLK` / `F_OFD_SETLK`.
    Set,
    /// `F_SETLKW` / `F_OFD_SETLKW`: waits for a conflicting lock to go.
    SetWait,
}

/// `struct flock` as the user passes it (32 bytes).
#[derive(
    Clone, Copy, Debug, Default, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable,
)]
#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    _pad: u32,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
    _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<Flock>() == 32);

/// The byte range `l` names, from `base` (its `l_whence`'s origin): `start..=end`.
/// `EINVAL` for a range that starts before byte 0, `EOVERFLOW` for one past
/// [`OFFSET_MAX`].
fn range_of(base: u64, l_start: i64, l_len: i64) -> Result<(u64, u64), Errno> {
    let base = i64::try_from(base).map_err(|_| Errno::EOVERFLOW)?;
    let start = base.checked_add(l_start).ok_or(Errno::EOVERFLOW)?;
    let (start, end) = match l_len {
        0 => (start, OFFSET_MAX as i64),
        n if n > 0 => (start, start.checked_add(n - 1).ok_or(Errno::EOVERFLOW)?),
        n => (start.checked_add(n).ok_or(Errno::EINVAL)?, start - 1),
    };
    if start < 0 || end < start {
        return Err(Errno::EINVAL);
    }
    Ok((start as u64, end as u64))
}

/// The inode of a lockable description (`None`: no inode here, see the module docs);
/// `EBADF` for an `O_PATH` descriptor.
fn lock_ino(f: &OpenFile) -> Result<Option<u64>, Errno> {
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    Ok(match f.kind {
        super::file::Kind::Node { ino, .. } => Some(ino),
        _ => None,
    })
}

/// `fcntl(fd, cmd, arg)` for the record-lock commands; `ofd` for the open file
/// description ones.
pub(crate) fn fcntl(f: &OpenFile, cmd: LockCmd, ofd: bool, arg: u64) -> SysResult {
    let mut lk: Flock = read_val(arg)?;
    let mode = match lk.l_type {
        F_RDLCK => Some(Mode::Read),
        F_WRLCK => Some(Mode::Write),
        F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    if ofd && lk.l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let Some(ino) = lock_ino(f)? else {
        if cmd == LockCmd::Get {
            if mode.is_none() {
                return Err(Errno::EINVAL);
            }
            lk.l_type = F_UNLCK;
            write_val(arg, &lk)?;
        }
        return Ok(0);
    };
    let base = match lk.l_whence {
        SEEK_SET => 0,
        SEEK_CUR => *f.pos(),
        SEEK_END => fstat(f)?.st.size,
        _ => return Err(Errno::EINVAL),
    };
    let (start, end) = range_of(base, lk.l_start, lk.l_len)?;
    let pid = current_process().pid;
    let owner = if ofd {
        f.note_locked();
        Owner::Description(f.id())
    } else {
        Owner::Process(pid)
    };
    if cmd == LockCmd::Get {
        let mode = mode.ok_or(Errno::EINVAL)?;
        match LOCKS.lock().conflict(ino, owner, mode, start, end) {
            None => lk.l_type = F_UNLCK,
            Some(c) => {
                lk.l_type = if c.mode == Mode::Write {
                    F_WRLCK
                } else {
                    F_RDLCK
                };
                lk.l_whence = SEEK_SET;
                lk.l_start = c.start as i64;
                lk.l_len = if c.end == OFFSET_MAX {
                    0
                } else {
                    (c.end - c.start + 1) as i64
                };
                lk.l_pid = match c.owner {
                    Owner::Process(p) => p,
                    Owner::Description(_) => -1,
                };
            }
        }
        write_val(arg, &lk)?;
        return Ok(0);
    }
    // The descriptor must be open for what the lock protects.
    match mode {
        Some(Mode::Read) if !f.readable() => return Err(Errno::EBADF),
        Some(Mode::Write) if !f.writable() => return Err(Errno::EBADF),
        _ => {}
    }
    loop {
        let mut t = LOCKS.lock();
        if t.is_full() {
            return Err(Errno::ENOLCK);
        }
        let conflict = match t.set_range(ino, owner, mode, start, end) {
            Ok(()) => {
                t.set_waiting(pid, None);
                drop(t);
                // Unlocking or weakening a range may let waiters go on.
                if mode != Some(Mode::Write) {
                    LOCK_WQ.wake_all();
                }
                return Ok(0);
            }
            Err(c) => c,
        };
        if cmd != LockCmd::SetWait {
            return Err(Errno::EAGAIN);
        }
        if let (Owner::Process(_), Owner::Process(holder)) = (owner, conflict.owner) {
            if t.would_deadlock(pid, holder) {
                t.set_waiting(pid, None);
                return Err(Errno::EDEADLK);
            }
            t.set_waiting(pid, Some(holder));
        }
        drop(t);
        if signal::pending() {
            LOCKS.lock().set_waiting(pid, None);
            return Err(Errno::EINTR);
        }
        let m = mode.unwrap_or(Mode::Read);
        LOCK_WQ.wait_until(|| {
            signal::pending() || LOCKS.lock().conflict(ino, owner, m, start, end).is_none()
        });
    }
}

/// `flock(fd, operation)`.
pub(crate) fn flock(f: &OpenFile, op: u64) -> SysResult {
    let mode = match op & !LOCK_NB {
        LOCK_SH => Some(Mode::Read),
        LOCK_EX => Some(Mode::Write),
        LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let Some(ino) = lock_ino(f)? else {
        return Ok(0);
    };
    let desc = f.id();
    let pid = current_process().pid;
    f.note_locked();
    loop {
        let r = {
            let mut t = LOCKS.lock();
            if mode.is_some() && t.is_full() {
                return Err(Errno::ENOLCK);
            }
            t.flock(ino, desc, pid, mode)
        };
        let released = match r {
            Ok(r) | Err(r) => r,
        };
        if released {
            LOCK_WQ.wake_all();
        }
        if r.is_ok() {
            return Ok(0);
        }
        if op & LOCK_NB != 0 {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        let m = mode.unwrap_or(Mode::Read);
        LOCK_WQ.wait_until(|| signal::pending() || !LOCKS.lock().flock_blocked(ino, desc, m));
    }
}

/// Process `pid` closed a descriptor of `f`: POSIX drops its record locks on the file.
pub(crate) fn descriptor_closed(pid: i32, f: &OpenFile) {
    let super::file::Kind::Node { ino, .. } = f.kind else {
        return;
    };
    let released = {
        let mut t = LOCKS.lock();
        !t.is_empty() && t.release_process_inode(pid, ino)
    };
    if released {
        LOCK_WQ.wake_all();
    }
}

/// Description `id` is gone (its last descriptor closed): its `flock` and open file
/// description locks go.
pub(crate) fn description_closed(id: u64) {
    let released = LOCKS.lock().release_description(id);
    if released {
        LOCK_WQ.wake_all();
    }
}

/// Process `pid` exited: its record locks go.
pub(crate) fn process_exited(pid: i32) {
    let released = {
        let mut t = LOCKS.lock();
        !t.is_empty() && t.release_process(pid)
    };
    if released {
        LOCK_WQ.wake_all();
    }
}

/// Every lock held, for a kernel hand-over record and `/proc/locks`: `(inode, byte-range
/// locks, flock locks)`.
pub(crate) fn held() -> Vec<(u64, Vec<RangeLock>, Vec<table::FlockLock>)> {
    LOCKS
        .lock()
        .all()
        .map(|(ino, r, f)| (ino, r.to_vec(), f.to_vec()))
        .collect()
}

/// A kernel hand-over: the carried locks, as they were held (this kernel holds none yet);
/// `Err` if two of them conflict.
pub(crate) fn adopt(
    ranges: &[(u64, RangeLock)],
    flocks: &[(u64, table::FlockLock)],
) -> Result<(), &'static str> {
    LOCKS.lock().adopt(ranges, flocks)
}

/// `/proc/locks`: every lock, with its file's device and inode number as `stat` shows them.
pub(crate) fn proc_locks() -> Vec<u8> {
    use table::ProcLine;
    let mut lines = Vec::new();
    for (ino, ranges, flocks) in held() {
        let (dev, shown) = crate::fs::with(|fs| fs.stat_ino(ino))
            .map(|st| (super::file::decode_dev(st.dev), st.shown_ino()))
            .unwrap_or(((0, 0), ino));
        let line = |kind, mode, pid, start, end| ProcLine {
            kind,
            mode,
            pid,
            dev,
            ino: shown,
            start,
            end,
        };
        for r in &ranges {
            lines.push(match r.owner {
                Owner::Process(pid) => line("POSIX", r.mode, pid, r.start, r.end),
                Owner::Description(_) => line("OFDLCK", r.mode, -1, r.start, r.end),
            });
        }
        for l in &flocks {
            lines.push(line("FLOCK", l.mode, l.pid, 0, OFFSET_MAX));
        }
    }
    table::proc_text(&lines)
}
