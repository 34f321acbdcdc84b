//! The lock table: which advisory locks are held on which inode, and the rules by which a
//! new one conflicts, replaces, splits and merges (Linux's `fs/locks.c`), without waiting
//! (the system calls in `locks.rs` wait and wake).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// An inode number.
pub(crate) type Ino = u64;

/// The last byte a lock "to the end of the file" covers (Linux's `OFFSET_MAX`).
pub(crate) const OFFSET_MAX: u64 = i64::MAX as u64;

/// The most locks the kernel holds at once (each a few dozen bytes of kernel heap): past
/// it a new lock, or an unlock that splits one, fails with `ENOLCK` as Linux's does when it
/// cannot allocate one.
pub(crate) const MAX_LOCKS: usize = 16_384;

/// How many owners [`LockTable::would_deadlock`] follows (Linux's
/// `MAX_DEADLK_ITERATIONS`).
const MAX_DEADLOCK_HOPS: usize = 10;

/// Who holds a byte-range lock: a process (a POSIX record lock, `F_SETLK`) or an open file
/// description (`F_OFD_SETLK`). Both kinds share one range space and conflict with each
/// other.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Owner {
    /// A process, by pid.
    Process(i32),
    /// An open file description, by its id (`OpenFile::id`).
    Description(u64),
}

/// A shared (read) or exclusive (write) lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Shared: `F_RDLCK`, `LOCK_SH`.
    Read,
    /// Exclusive: `F_WRLCK`, `LOCK_EX`.
    Write,
}

impl Mode {
    /// Whether a lock of this mode and one of `other`'s can both be held (by two owners).
    fn compatible(self, other: Mode) -> bool {
        self == Mode::Read && other == Mode::Read
    }
}

/// A byte-range lock: bytes `start..=end` of its inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RangeLock {
    /// Who holds it.
    pub(crate) owner: Owner,
    /// Shared or exclusive.
    pub(crate) mode: Mode,
    /// The first byte.
    pub(crate) start: u64,
    /// The last byte ([`OFFSET_MAX`]: to the end of the file, however long).
    pub(crate) end: u64,
}

impl RangeLock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// A whole-file `flock` lock, held by an open file description.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FlockLock {
    /// The description's id.
    pub(crate) desc: u64,
    /// The process that took it (what `/proc/locks` shows).
    pub(crate) pid: i32,
    /// Shared or exclusive.
    pub(crate) mode: Mode,
}

/// The locks on one inode.
#[derive(Default, Debug)]
struct InodeLocks {
    ranges: Vec<RangeLock>,
    flocks: Vec<FlockLock>,
}

impl InodeLocks {
    fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.flocks.is_empty()
    }
}

/// Every advisory lock of the kernel, by inode.
#[derive(Default, Debug)]
pub(crate) struct LockTable {
    inodes: BTreeMap<Ino, InodeLocks>,
    /// Processes blocked in `F_SETLKW`: the process that holds what each waits for.
    waits: BTreeMap<i32, i32>,
    /// Locks held, of every kind.
    count: usize,
}

impl LockTable {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self {
            inodes: BTreeMap::new(),
            waits: BTreeMap::new(),
            count: 0,
        }
    }

    /// Whether a change that may add two locks (a lock or unlock splitting another) would
    /// pass [`MAX_LOCKS`].
    pub(crate) fn is_full(&self) -> bool {
        self.count + 2 > MAX_LOCKS
    }

    /// Whether no lock is held at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }

    /// The first byte-range lock of another owner than `owner` on `ino` that a lock of
    /// `mode` over `start..=end` would conflict with (what `F_GETLK` reports).
    pub(crate) fn conflict(
        &self,
        ino: Ino,
        owner: Owner,
        mode: Mode,
        start: u64,
        end: u64,
    ) -> Option<RangeLock> {
        self.inodes
            .get(&ino)?
            .ranges
            .iter()
            .copied()
            .find(|l| l.owner != owner && l.overlaps(start, end) && !l.mode.compatible(mode))
    }

    /// Sets (`Some(mode)`) or removes (`None`) `owner`'s lock over `start..=end` of `ino`:
    /// the owner's locks there are replaced (split where they reach past the range) and the
    /// new one merged with the owner's adjacent locks of the same mode. `Err` with the
    /// conflicting lock, changing nothing, if another owner's lock is in the way.
    pub(crate) fn set_range(
        &mut self,
        ino: Ino,
        owner: Owner,
        mode: Option<Mode>,
        start: u64,
        end: u64,
    ) -> Result<(), RangeLock> {
        debug_assert!(start <= end && end <= OFFSET_MAX);
        if let Some(m) = mode {
            if let Some(c) = self.conflict(ino, owner, m, start, end) {
                return Err(c);
            }
        }
        let Some(locks) = self.inodes.get_mut(&ino) else {
            if let Some(mode) = mode {
                let mut l = InodeLocks::default();
                l.ranges.push(RangeLock {
                    owner,
                    mode,
                    start,
                    end,
                });
                self.inodes.insert(ino, l);
                self.count += 1;
            }
            return Ok(());
        };
        let before = locks.ranges.len();
        let mut kept = Vec::with_capacity(before + 2);
        for l in locks.ranges.drain(..) {
            if l.owner != owner || !l.overlaps(start, end) {
                kept.push(l);
                continue;
            }
            if l.start < start {
                kept.push(RangeLock {
                    end: start - 1,
                    ..l
                });
            }
            if l.end > end {
                kept.push(RangeLock {
                    start: end + 1,
                    ..l
                });
            }
        }
        if let Some(mode) = mode {
            let (mut s, mut e) = (start, end);
            // Merge with the owner's adjacent locks of the same mode.
            kept.retain(|l| {
                let adjacent = l.owner == owner
                    && l.mode == mode
                    && (l.end.checked_add(1) == Some(s) || e.checked_add(1) == Some(l.start));
                if adjacent {
                    s = s.min(l.start);
                    e = e.max(l.end);
                }
                !adjacent
            });
            kept.push(RangeLock {
                owner,
                mode,
                start: s,
                end: e,
            });
        }
        kept.sort_by_key(|l| (l.start, l.owner));
        self.count = self.count + kept.len() - before;
        locks.ranges = kept;
        if locks.is_empty() {
            self.inodes.remove(&ino);
        }
        Ok(())
    }

    /// `flock`: description `desc` takes (`Some(mode)`) or drops (`None`) its lock on
    /// `ino`. As Linux, a conversion drops the old lock first, so a conversion that would
    /// wait has given it up (`Err(true)`, as any conflict); `Ok(true)` if a lock was dropped
    /// or weakened, which may let waiters go on (`Ok(false)`: nothing others could gain).
    pub(crate) fn flock(
        &mut self,
        ino: Ino,
        desc: u64,
        pid: i32,
        mode: Option<Mode>,
    ) -> Result<bool, bool> {
        let locks = self.inodes.entry(ino).or_default();
        let held = locks.flocks.iter().position(|l| l.desc == desc);
        let mut released = false;
        if let Some(i) = held {
            if Some(locks.flocks[i].mode) == mode {
                return Ok(false);
            }
            released = true;
            locks.flocks.remove(i);
            self.count -= 1;
        }
        let result = match mode {
            None => Ok(released),
            Some(m) => {
                if locks.flocks.iter().any(|l| !l.mode.compatible(m)) {
                    Err(released)
                } else {
                    locks.flocks.push(FlockLock { desc, pid, mode: m });
                    self.count += 1;
                    Ok(released)
                }
            }
        };
        if locks.is_empty() {
            self.inodes.remove(&ino);
        }
        result
    }

    /// Whether description `desc` would have to wait for a `flock` lock of `mode` on `ino`.
    pub(crate) fn flock_blocked(&self, ino: Ino, desc: u64, mode: Mode) -> bool {
        self.inodes.get(&ino).is_some_and(|l| {
            l.flocks
                .iter()
                .any(|l| l.desc != desc && !l.mode.compatible(mode))
        })
    }

    /// Drops every lock of description `desc` (its last descriptor was closed): its
    /// `flock` locks and its open-file-description locks. Whether it had any.
    pub(crate) fn release_description(&mut self, desc: u64) -> bool {
        let mut gone = 0;
        self.inodes.retain(|_, l| {
            let n = l.flocks.len() + l.ranges.len();
            l.flocks.retain(|f| f.desc != desc);
            l.ranges.retain(|r| r.owner != Owner::Description(desc));
            gone += n - (l.flocks.len() + l.ranges.len());
            !l.is_empty()
        });
        self.count -= gone;
        gone > 0
    }

    /// Drops process `pid`'s record locks on `ino` (it closed a descriptor of it, whichever:
    /// POSIX's rule). Whether it had any.
    pub(crate) fn release_process_inode(&mut self, pid: i32, ino: Ino) -> bool {
        let Some(l) = self.inodes.get_mut(&ino) else {
            return false;
        };
        let n = l.ranges.len();
        l.ranges.retain(|r| r.owner != Owner::Process(pid));
        let any = n != l.ranges.len();
        self.count -= n - l.ranges.len();
        if l.is_empty() {
            self.inodes.remove(&ino);
        }
        any
    }

    /// Drops every record lock of process `pid` (it exited). Whether it had any.
    pub(crate) fn release_process(&mut self, pid: i32) -> bool {
        self.waits.remove(&pid);
        let inos: Vec<Ino> = self.inodes.keys().copied().collect();
        let mut any = false;
        for ino in inos {
            any |= self.release_process_inode(pid, ino);
        }
        any
    }

    /// Whether process `pid` waiting for a lock `holder` holds would close a cycle of
    /// processes each waiting for the next (`EDEADLK`), following at most
    /// [`MAX_DEADLOCK_HOPS`] waits as Linux does.
    pub(crate) fn would_deadlock(&self, pid: i32, holder: i32) -> bool {
        let mut at = holder;
        for _ in 0..MAX_DEADLOCK_HOPS {
            if at == pid {
                return true;
            }
            match self.waits.get(&at) {
                Some(&next) => at = next,
                None => return false,
            }
        }
        false
    }

    /// Notes that process `pid` waits for a lock `holder` holds (`None`: no longer waits).
    pub(crate) fn set_waiting(&mut self, pid: i32, holder: Option<i32>) {
        match holder {
            Some(h) => self.waits.insert(pid, h),
            None => self.waits.remove(&pid),
        };
    }

    /// Every lock, by inode: `(inode, byte-range locks, flock locks)` (`/proc/locks`, a
    /// kernel hand-over).
    pub(crate) fn all(&self) -> impl Iterator<Item = (Ino, &[RangeLock], &[FlockLock])> {
        self.inodes
            .iter()
            .map(|(&ino, l)| (ino, l.ranges.as_slice(), l.flocks.as_slice()))
    }

    /// Puts carried locks in place as they were (an adopted hand-over record), replacing
    /// everything; `Err` if two of them conflict.
    pub(crate) fn adopt(
        &mut self,
        ranges: &[(Ino, RangeLock)],
        flocks: &[(Ino, FlockLock)],
    ) -> Result<(), &'static str> {
        let mut t = LockTable::new();
        if ranges.len() + flocks.len() > MAX_LOCKS {
            return Err("more locks than a kernel holds");
        }
        for &(ino, l) in ranges {
            if l.start > l.end || l.end > OFFSET_MAX {
                return Err("a lock's range");
            }
            // An owner's locks never overlap; another owner's must be compatible.
            if t.inodes.get(&ino).is_some_and(|i| {
                i.ranges
                    .iter()
                    .any(|o| o.owner == l.owner && o.overlaps(l.start, l.end))
            }) {
                return Err("locks of one owner that overlap");
            }
            t.set_range(ino, l.owner, Some(l.mode), l.start, l.end)
                .map_err(|_| "locks that conflict")?;
        }
        for &(ino, l) in flocks {
            let twice = t
                .inodes
                .get(&ino)
                .is_some_and(|i| i.flocks.iter().any(|f| f.desc == l.desc));
            if twice || t.flock(ino, l.desc, l.pid, Some(l.mode)).is_err() {
                return Err("flock locks that conflict");
            }
        }
        if t.count > MAX_LOCKS {
            return Err("more locks than a kernel holds");
        }
        *self = t;
        Ok(())
    }
}

/// What `/proc/locks` shows of a lock: its kind, its mode, its process (-1 for an open
/// file description lock), its file (device major, minor, inode) and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcLine {
    /// `POSIX`, `OFDLCK` or `FLOCK`.
    pub(crate) kind: &'static str,
    pub(crate) mode: Mode,
    pub(crate) pid: i32,
    pub(crate) dev: (u32, u32),
    pub(crate) ino: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// `/proc/locks`: one line per lock, numbered from 1, as Linux's `lock_get_status` prints
/// them (`1: POSIX  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`).
pub(crate) fn proc_text(lines: &[ProcLine]) -> Vec<u8> {
    use core::fmt::Write;
    let mut out = alloc::string::String::new();
    for (i, l) in lines.iter().enumerate() {
        let end = if l.end == OFFSET_MAX {
            alloc::string::String::from("EOF")
        } else {
            alloc::format!("{}", l.end)
        };
        let _ = writeln!(
            out,
            "{}: {:<6} ADVISORY  {} {} {:02x}:{:02x}:{} {} {}",
            i + 1,
            l.kind,
            if l.mode == Mode::Write {
                "WRITE"
            } else {
                "READ "
            },
            l.pid,
            l.dev.0,
            l.dev.1,
            l.ino,
            l.start,
            end
        );
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const P1: Owner = Owner::Process(1);
    const P2: Owner = Owner::Process(2);
    const D7: Owner = Owner::Description(7);

    fn ranges(t: &LockTable, ino: Ino) -> Vec<(Owner, Mode, u64, u64)> {
        t.all()
            .filter(|(i, _, _)| *i == ino)
            .flat_map(|(_, r, _)| r.iter().map(|l| (l.owner, l.mode, l.start, l.end)))
            .collect()
    }

    #[test]
    fn readers_share_and_a_writer_excludes() {
        let mut t = LockTable::new();
        assert_eq!(t.set_range(5, P1, Some(Mode::Read), 0, 99), Ok(()));
        assert_eq!(t.set_range(5, P2, Some(Mode::Read), 50, 149), Ok(()));
        let c = t.set_range(5, D7, Some(Mode::Write), 120, 130).unwrap_err();
        assert_eq!((c.owner, c.start, c.end), (P2, 50, 149));
        // Past both: free.
        assert_eq!(
            t.set_range(5, D7, Some(Mode::Write), 150, OFFSET_MAX),
            Ok(())
        );
        assert_eq!(
            t.conflict(5, P1, Mode::Read, 200, 200).map(|l| l.owner),
            Some(D7)
        );
        // Its own locks never conflict; another inode is another space.
        assert_eq!(t.conflict(5, D7, Mode::Write, 150, 160), None);
        assert_eq!(t.set_range(6, P2, Some(Mode::Write), 0, OFFSET_MAX), Ok(()));
    }

    #[test]
    fn a_lock_replaces_splits_and_merges_its_owners_locks() {
        let mut t = LockTable::new();
        t.set_range(1, P1, Some(Mode::Write), 0, 99).unwrap();
        // A read lock in the middle splits the write lock in three.
        t.set_range(1, P1, Some(Mode::Read), 40, 59).unwrap();
        assert_eq!(
            ranges(&t, 1),
            vec![
                (P1, Mode::Write, 0, 39),
                (P1, Mode::Read, 40, 59),
                (P1, Mode::Write, 60, 99)
            ]
        );
        // Writing the middle again merges all three.
        t.set_range(1, P1, Some(Mode::Write), 40, 59).unwrap();
        assert_eq!(ranges(&t, 1), vec![(P1, Mode::Write, 0, 99)]);
        // Adjacent locks of the same mode merge, unlocking a hole splits.
        t.set_range(1, P1, Some(Mode::Write), 100, 199).unwrap();
        assert_eq!(ranges(&t, 1), vec![(P1, Mode::Write, 0, 199)]);
        t.set_range(1, P1, None, 10, 19).unwrap();
        assert_eq!(
            ranges(&t, 1),
            vec![(P1, Mode::Write, 0, 9), (P1, Mode::Write, 20, 199)]
        );
        t.set_range(1, P1, None, 0, OFFSET_MAX).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn closes_and_exits_release_what_they_should() {
        let mut t = LockTable::new();
        t.set_range(1, P1, Some(Mode::Write), 0, 9).unwrap();
        t.set_range(2, P1, Some(Mode::Write), 0, 9).unwrap();
        t.set_range(1, D7, Some(Mode::Read), 20, 29).unwrap();
        assert_eq!(t.flock(1, 7, 0, Some(Mode::Write)), Ok(false));
        // A close by P1 of inode 1 drops its record locks there only.
        assert!(t.release_process_inode(1, 1));
        assert!(!t.release_process_inode(1, 1));
        assert_eq!(ranges(&t, 1), vec![(D7, Mode::Read, 20, 29)]);
        assert_eq!(ranges(&t, 2), vec![(P1, Mode::Write, 0, 9)]);
        // The description's last close drops its flock and OFD locks.
        assert!(t.release_description(7));
        assert_eq!(ranges(&t, 1), vec![]);
        assert!(!t.flock_blocked(1, 8, Mode::Write));
        assert!(t.release_process(1));
        assert!(t.is_empty());
    }

    #[test]
    fn flock_shares_excludes_and_converts() {
        let mut t = LockTable::new();
        assert_eq!(t.flock(3, 1, 0, Some(Mode::Read)), Ok(false));
        assert_eq!(t.flock(3, 2, 0, Some(Mode::Read)), Ok(false));
        // Converting to exclusive while another shares it: the shared lock is given up.
        assert_eq!(t.flock(3, 1, 0, Some(Mode::Write)), Err(true));
        assert!(t.flock_blocked(3, 1, Mode::Write));
        assert_eq!(t.flock(3, 2, 0, None), Ok(true));
        assert_eq!(t.flock(3, 1, 0, Some(Mode::Write)), Ok(false));
        assert_eq!(
            t.flock(3, 1, 0, Some(Mode::Write)),
            Ok(false),
            "again: nothing"
        );
        assert_eq!(t.flock(3, 2, 0, Some(Mode::Read)), Err(false));
        // flock and record locks do not interact.
        assert_eq!(t.set_range(3, P2, Some(Mode::Write), 0, OFFSET_MAX), Ok(()));
        assert_eq!(t.flock(3, 1, 0, None), Ok(true));
        assert_eq!(t.flock(3, 9, 0, None), Ok(false), "unlocking nothing");
    }

    #[test]
    fn locks_are_counted_and_bounded() {
        let mut t = LockTable::new();
        t.set_range(1, P1, Some(Mode::Write), 0, 99).unwrap();
        t.set_range(1, P1, None, 10, 19).unwrap(); // split: two
        t.flock(1, 7, 0, Some(Mode::Read)).unwrap();
        t.set_range(1, D7, Some(Mode::Read), 200, 299).unwrap();
        assert_eq!(t.count, 4);
        assert!(t.release_description(7));
        assert_eq!(t.count, 2);
        assert!(t.release_process(1));
        assert_eq!((t.count, t.is_empty()), (0, true));
        // Past the bound: full, and a carried table that large is refused.
        for i in 0..(MAX_LOCKS as u64 / 2) {
            t.set_range(i, P1, Some(Mode::Read), 0, 0).unwrap();
            t.flock(i, 1, 0, Some(Mode::Read)).unwrap();
        }
        assert!(t.is_full());
        let many: Vec<(Ino, RangeLock)> = (0..=MAX_LOCKS as u64)
            .map(|i| {
                (
                    i,
                    RangeLock {
                        owner: P1,
                        mode: Mode::Read,
                        start: 0,
                        end: 0,
                    },
                )
            })
            .collect();
        assert!(LockTable::new().adopt(&many, &[]).is_err());
    }

    #[test]
    fn proc_locks_lines_are_linuxs() {
        let l = |kind, mode, pid, end| ProcLine {
            kind,
            mode,
            pid,
            dev: (0, 0x1a),
            ino: 5678,
            start: 0,
            end,
        };
        let text = proc_text(&[
            l("POSIX", Mode::Write, 1234, OFFSET_MAX),
            l("OFDLCK", Mode::Read, -1, 9),
            l("FLOCK", Mode::Read, 77, OFFSET_MAX),
        ]);
        assert_eq!(
            core::str::from_utf8(&text).unwrap(),
            "1: POSIX  ADVISORY  WRITE 1234 00:1a:5678 0 EOF\n\
             2: OFDLCK ADVISORY  READ  -1 00:1a:5678 0 9\n\
             3: FLOCK  ADVISORY  READ  77 00:1a:5678 0 EOF\n"
        );
    }

    #[test]
    fn a_cycle_of_waits_is_a_deadlock() {
        let mut t = LockTable::new();
        // 1 waits for 2, 2 for 3: 3 waiting for 1 would close the cycle.
        t.set_waiting(1, Some(2));
        t.set_waiting(2, Some(3));
        assert!(t.would_deadlock(3, 1));
        assert!(!t.would_deadlock(4, 1));
        assert!(t.would_deadlock(5, 5), "waiting for itself");
        t.set_waiting(2, None);
        assert!(!t.would_deadlock(3, 1));
    }

    #[test]
    fn carried_locks_are_adopted_unless_they_conflict() {
        let mut t = LockTable::new();
        let r = |owner, mode, start, end| RangeLock {
            owner,
            mode,
            start,
            end,
        };
        let ok = [
            (1, r(P1, Mode::Read, 0, 9)),
            (1, r(P2, Mode::Read, 5, 20)),
            (1, r(P1, Mode::Write, 30, OFFSET_MAX)),
        ];
        let fl = [
            (
                1,
                FlockLock {
                    desc: 3,
                    pid: 1,
                    mode: Mode::Read,
                },
            ),
            (
                1,
                FlockLock {
                    desc: 4,
                    pid: 1,
                    mode: Mode::Read,
                },
            ),
        ];
        assert_eq!(t.adopt(&ok, &fl), Ok(()));
        assert_eq!(ranges(&t, 1).len(), 3);
        let bad = [(1, r(P1, Mode::Write, 0, 9)), (1, r(P2, Mode::Read, 5, 20))];
        assert!(t.adopt(&bad, &[]).is_err());
        let overlapping_own = [(1, r(P1, Mode::Read, 0, 9)), (1, r(P1, Mode::Read, 5, 20))];
        assert!(t.adopt(&overlapping_own, &[]).is_err());
        let fl_bad = [
            (
                1,
                FlockLock {
                    desc: 3,
                    pid: 1,
                    mode: Mode::Write,
                },
            ),
            (
                1,
                FlockLock {
                    desc: 4,
                    pid: 1,
                    mode: Mode::Read,
                },
            ),
        ];
        assert!(t.adopt(&[], &fl_bad).is_err());
        assert_eq!(ranges(&t, 1).len(), 3, "a refusal changes nothing");
    }
}
