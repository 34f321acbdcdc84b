//! Version 2 record entries of the **event objects** a descriptor may name (`eventfd`,
//! `timerfd`, `signalfd`, `epoll`, `inotify`): descriptor kinds [`super::fd_state::EVENTFD`]
//! .. [`super::fd_state::EPOLL`] and [`super::fd_state::INOTIFY`], sections
//! [`super::section::TIMERFD`], [`super::section::EPOLL_ITEM`], [`super::section::INOTIFY`]
//! and [`super::section::INOTIFY_WATCH`], and their part of [`super::Record::check`].
//!
//! An eventfd and a signalfd need no section: their whole state fits their
//! [`super::FdStateEntry`] (an eventfd's counter in `object`, its `EFD_SEMAPHORE` in `aux`; a
//! signalfd's mask in `object`). A timerfd's timer is a [`TimerFdEntry`], an epoll's interest
//! list a run of [`EpollItemEntry`]s; both name their object by the record's open file
//! description number ([`super::FdStateEntry::description`]), so every descriptor of one
//! description — in any process — names the same object, and an epoll registration names
//! its target the way Linux does: by (descriptor number, open file description). An inotify
//! instance is an [`InotifyEntry`] (its queue, as `read` would return it) and a run of
//! [`InotifyWatchEntry`]s, each naming an inode of the carried in-memory filesystem.

use super::{fd_state, oob, BlobRef, FdStateEntry, Record, RecordError, Table};
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// [`super::fd_state::EVENTFD`]'s [`super::FdStateEntry::aux`] bits.
pub mod eventfd_flags {
    /// `EFD_SEMAPHORE`: a read takes 1.
    pub const SEMAPHORE: u32 = 1 << 0;
    /// Every flag.
    pub const ALL: u32 = SEMAPHORE;
}

/// The largest eventfd counter (Linux's `ULLONG_MAX - 1`).
pub const MAX_EVENTFD_COUNT: u64 = u64::MAX - 1;

/// `SIGKILL` and `SIGSTOP` as signal-set bits: never in a signalfd's mask.
pub const SIGNALFD_NEVER: u64 = (1 << (9 - 1)) | (1 << (19 - 1));

/// Status flags (`F_GETFL`) an event object's descriptor may have: the access mode and
/// `O_APPEND`, `O_NONBLOCK`, `O_DSYNC`, `O_ASYNC`, `O_DIRECT`, `O_LARGEFILE`, `O_NOATIME`,
/// `O_SYNC` (what `open` and `fcntl(F_SETFL)` leave in an x86-64 Linux file's flags).
pub const EVENT_STATUS_FLAGS: u32 =
    0o3 | 0o2000 | 0o4000 | 0o10000 | 0o20000 | 0o40000 | 0o100000 | 0o1000000 | 0o4010000;

/// Version 2 (section [`super::section::TIMERFD`]): the timer of a timerfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TimerFdEntry {
    /// The open file description whose timerfd it is ([`super::FdStateEntry::description`]
    /// of a [`super::fd_state::TIMERFD`] descriptor; entries in increasing order of it).
    pub description: u64,
    /// [`super::timer_clock::REALTIME`] or [`super::timer_clock::MONOTONIC`].
    pub clock: u32,
    /// Zero (`TFD_TIMER_ABSTIME` is a property of a setting, already applied to `next`;
    /// `TFD_TIMER_CANCEL_ON_SET` has no effect: the guest's realtime clock is never set).
    pub flags: u32,
    /// The next expiry as an absolute time of the tenant's guest clock in ns (the same
    /// across a switch); 0: disarmed.
    pub next: u64,
    /// The reload interval in ns (0: one-shot).
    pub interval: u64,
    /// Expirations not read yet (what the next `read` returns).
    pub ticks: u64,
}

const _: () = assert!(size_of::<TimerFdEntry>() == 40);

/// Version 2 (section [`super::section::EPOLL_ITEM`]): one registration of an epoll's
/// interest list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EpollItemEntry {
    /// The epoll's open file description (a [`super::fd_state::EPOLL`] descriptor's).
    pub epoll: u64,
    /// The open file description registered (any carried descriptor's, never `epoll`).
    pub target: u64,
    /// The descriptor number it was registered by (it may have been closed since, the
    /// description living on in a `dup`).
    pub fd: i32,
    /// The `epoll_event.events` as registered: interest and control bits
    /// ([`epoll_bits`]).
    pub events: u32,
    /// The `epoll_event.data` word.
    pub data: u64,
    /// [`epoll_item_flags`].
    pub flags: u32,
    /// Zero.
    pub _reserved: u32,
}

const _: () = assert!(size_of::<EpollItemEntry>() == 40);

/// [`EpollItemEntry::flags`].
pub mod epoll_item_flags {
    /// An `EPOLLONESHOT` registration that reported: silent until `EPOLL_CTL_MOD`.
    pub const DISABLED: u32 = 1 << 0;
    /// The target is an epoll (so [`super::Record::check`] can walk nested epolls for
    /// loops without looking descriptions up; an adopter checks it is true).
    pub const EPOLL: u32 = 1 << 1;
    /// Every flag.
    pub const ALL: u32 = DISABLED | EPOLL;
}

/// `epoll_event.events` bits (x86-64 Linux).
pub mod epoll_bits {
    /// `EPOLLEXCLUSIVE`.
    pub const EXCLUSIVE: u32 = 1 << 28;
    /// `EPOLLONESHOT`.
    pub const ONESHOT: u32 = 1 << 30;
    /// `EPOLLET`.
    pub const ET: u32 = 1 << 31;
    /// Every bit `epoll_ctl` accepts: `EPOLLIN`, `PRI`, `OUT`, `ERR`, `HUP`, `RDNORM`,
    /// `RDBAND`, `WRNORM`, `WRBAND`, `MSG`, `RDHUP`, `EXCLUSIVE`, `WAKEUP`, `ONESHOT`, `ET`.
    pub const ALL: u32 = 0x001
        | 0x002
        | 0x004
        | 0x008
        | 0x010
        | 0x040
        | 0x080
        | 0x100
        | 0x200
        | 0x400
        | 0x2000
        | EXCLUSIVE
        | (1 << 29)
        | ONESHOT
        | ET;
    /// What may come with `EPOLLEXCLUSIVE` (Linux's `EPOLLEXCLUSIVE_OK_BITS`).
    pub const EXCLUSIVE_OK: u32 =
        0x001 | 0x004 | 0x008 | 0x010 | 0x040 | 0x080 | 0x100 | 0x200 | (1 << 29) | ET | EXCLUSIVE;
}

/// Version 2 (section [`super::section::INOTIFY`]): an inotify instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InotifyEntry {
    /// Its open file description (a [`super::fd_state::INOTIFY`] descriptor's; entries in
    /// increasing order of it).
    pub description: u64,
    /// The watch descriptor its next new watch gets (at least 1).
    pub next_wd: i32,
    /// The kernel's next rename cookie (the same in every entry: the counter is the
    /// kernel's), so a rename after the switch never pairs with a queued event's cookie.
    pub cookie: u32,
    /// Its queued events, oldest first, as `read` returns them: `struct inotify_event`
    /// records (in the blob; at most [`MAX_INOTIFY_EVENTS`] of them).
    pub events: BlobRef,
}

const _: () = assert!(size_of::<InotifyEntry>() == 24);

/// Version 2 (section [`super::section::INOTIFY_WATCH`]): one watch of an inotify instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct InotifyWatchEntry {
    /// The instance's open file description (its [`InotifyEntry::description`]).
    pub description: u64,
    /// The inode watched: a [`super::FsNodeEntry::ino`] of the carried filesystem.
    pub ino: u64,
    /// Its watch descriptor (at least 1; entries in (description, wd) order, so unique).
    pub wd: i32,
    /// The events it asks for and its `IN_ONESHOT` and `IN_EXCL_UNLINK` flags
    /// ([`inotify_bits::WATCH`]).
    pub mask: u32,
}

const _: () = assert!(size_of::<InotifyWatchEntry>() == 24);

/// inotify's bits (`<sys/inotify.h>`).
pub mod inotify_bits {
    /// Every event a watch may ask for (`IN_ALL_EVENTS`).
    pub const ALL_EVENTS: u32 = 0xfff;
    /// `IN_ONESHOT`.
    pub const ONESHOT: u32 = 0x8000_0000;
    /// `IN_EXCL_UNLINK`.
    pub const EXCL_UNLINK: u32 = 0x0400_0000;
    /// What a watch keeps: its events and these two flags.
    pub const WATCH: u32 = ALL_EVENTS | ONESHOT | EXCL_UNLINK;
    /// What a queued event's mask may hold: an event, `IN_UNMOUNT`, `IN_Q_OVERFLOW`,
    /// `IN_IGNORED` and `IN_ISDIR`.
    pub const EVENT: u32 = ALL_EVENTS | 0x2000 | 0x4000 | 0x8000 | 0x4000_0000;
}

/// Most watches of one instance (the kernel's `MAX_WATCHES`).
pub const MAX_INOTIFY_WATCHES: usize = 8192;
/// Most queued events of one instance (Linux's default `max_queued_events`).
pub const MAX_INOTIFY_EVENTS: usize = 16384;
/// Size of a `struct inotify_event` without its name.
pub const INOTIFY_EVENT_HEADER: usize = 16;
/// The longest name field of a queued event: `NAME_MAX` and its NUL, NUL-padded to a
/// multiple of [`INOTIFY_EVENT_HEADER`].
pub const MAX_INOTIFY_NAME_FIELD: usize = 256;

/// Checks `bytes` as an inotify queue: [`InotifyEntry::events`]. Returns the number of
/// events, or what is wrong: a record cut short, a name field not a multiple of 16 bytes,
/// longer than [`MAX_INOTIFY_NAME_FIELD`] or without its NUL, a watch descriptor below -1,
/// bits outside [`inotify_bits::EVENT`], or more than [`MAX_INOTIFY_EVENTS`] events.
pub fn check_inotify_events(bytes: &[u8]) -> Result<usize, &'static str> {
    let mut rest = bytes;
    let mut n = 0usize;
    while !rest.is_empty() {
        let Some((head, tail)) = rest.split_at_checked(INOTIFY_EVENT_HEADER) else {
            return Err("inotify event cut short");
        };
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        if wd < -1 || mask & !inotify_bits::EVENT != 0 || mask == 0 {
            return Err("inotify event's watch or mask");
        }
        if len % INOTIFY_EVENT_HEADER != 0 || len > MAX_INOTIFY_NAME_FIELD {
            return Err("inotify event's name length");
        }
        let Some((name, tail)) = tail.split_at_checked(len) else {
            return Err("inotify event cut short");
        };
        if len > 0 && (name[0] == 0 || name[len - 1] != 0) {
            return Err("inotify event's name");
        }
        n += 1;
        if n > MAX_INOTIFY_EVENTS {
            return Err("inotify events (too many)");
        }
        rest = tail;
    }
    Ok(n)
}

/// The deepest nesting of epolls in epolls (Linux's `EP_MAX_NESTS`).
pub const MAX_EPOLL_NESTS: usize = 4;

/// The most registrations of an epoll in another epoll a record may carry (what the loop
/// and depth check of [`Record::check`] walks without allocating; real programs nest
/// epolls rarely, and then a few).
pub const MAX_NESTED_EPOLL_ITEMS: usize = 64;

impl Record<'_> {
    /// [`Record::check`] of the event objects: an eventfd's counter at most
    /// [`MAX_EVENTFD_COUNT`] and known flags; a signalfd's mask without `SIGKILL` and
    /// `SIGSTOP`; every event object's status flags known; each timerfd descriptor with its
    /// [`TimerFdEntry`]; timerfd entries in increasing order, a known clock, times
    /// non-negative as a `timespec`, disarmed with no interval; registrations in (epoll, fd,
    /// target) order (so unique), not of the epoll itself, a descriptor number in range,
    /// known event bits (`EPOLLEXCLUSIVE` only with the bits Linux allows it, never on an
    /// epoll), known flags; and the epolls in epolls neither looping nor nesting deeper
    /// than [`MAX_EPOLL_NESTS`] (at most [`MAX_NESTED_EPOLL_ITEMS`] such registrations). In
    /// time linear in the record: that each description named is one of the record's, of
    /// the kind named, an adopter checks with its own tables.
    pub(super) fn check_events(&self) -> Result<(), RecordError> {
        let fds = Table::<FdStateEntry>::of(self);
        let timerfds = Table::<TimerFdEntry>::of(self);
        let inotifies = Table::<InotifyEntry>::of(self);
        for f in fds.iter() {
            let event = matches!(
                f.kind,
                fd_state::EVENTFD
                    | fd_state::TIMERFD
                    | fd_state::SIGNALFD
                    | fd_state::EPOLL
                    | fd_state::INOTIFY
            );
            if !event {
                continue;
            }
            if f.status_flags & !EVENT_STATUS_FLAGS != 0 {
                return oob("event object status flags", u64::from(f.status_flags));
            }
            let ok = match f.kind {
                fd_state::EVENTFD => {
                    f.object <= MAX_EVENTFD_COUNT && f.aux & !eventfd_flags::ALL == 0
                }
                fd_state::SIGNALFD => f.object & SIGNALFD_NEVER == 0 && f.aux == 0,
                fd_state::TIMERFD => {
                    f.aux == 0 && timerfds.find(f.description, |t| t.description).is_some()
                }
                fd_state::INOTIFY => {
                    f.aux == 0
                        && f.object == 0
                        && inotifies.find(f.description, |i| i.description).is_some()
                }
                _ => f.aux == 0,
            };
            if !ok {
                return oob(
                    "event object (eventfd count or flags, signalfd mask, timerfd of no timer, \
                     inotify of no instance)",
                    f.object,
                );
            }
        }
        let mut last = 0;
        for t in timerfds.iter() {
            if t.description <= last {
                return oob("timerfd (in increasing description order)", t.description);
            }
            last = t.description;
            let clock_ok =
                t.clock == super::timer_clock::REALTIME || t.clock == super::timer_clock::MONOTONIC;
            let times_ok = t.next <= i64::MAX as u64
                && t.interval <= i64::MAX as u64
                && !(t.next == 0 && t.interval != 0);
            if !clock_ok || t.flags != 0 || !times_ok {
                return oob("timerfd (clock, flags, expiry or interval)", t.description);
            }
        }
        let items = Table::<EpollItemEntry>::of(self);
        let mut prev: Option<(u64, i32, u64)> = None;
        let mut nested = [(0u64, 0u64); MAX_NESTED_EPOLL_ITEMS];
        let mut n_nested = 0usize;
        for e in items.iter() {
            let key = (e.epoll, e.fd, e.target);
            if prev.is_some_and(|p| key <= p) {
                return oob("epoll registration (in (epoll, fd, target) order)", e.epoll);
            }
            prev = Some(key);
            if e.target == e.epoll {
                return oob("epoll registration of itself", e.target);
            }
            let inner = e.flags & epoll_item_flags::EPOLL != 0;
            if !(0..super::MAX_FD).contains(&e.fd) {
                return oob("epoll registration's descriptor number", e.fd as u64);
            }
            let exclusive_ok = e.events & epoll_bits::EXCLUSIVE == 0
                || (e.events & !epoll_bits::EXCLUSIVE_OK == 0 && !inner);
            if e.events & !epoll_bits::ALL != 0 || !exclusive_ok {
                return oob("epoll registration's events", u64::from(e.events));
            }
            if e.flags & !epoll_item_flags::ALL != 0 || e._reserved != 0 {
                return oob("epoll registration's flags", u64::from(e.flags));
            }
            if inner {
                if n_nested == MAX_NESTED_EPOLL_ITEMS {
                    return oob("epolls registered in epolls", n_nested as u64 + 1);
                }
                nested[n_nested] = (e.epoll, e.target);
                n_nested += 1;
            }
        }
        check_nesting(&nested[..n_nested])?;
        self.check_inotify(&inotifies)
    }

    /// [`Record::check`] of the inotify instances: entries in increasing description order,
    /// a next watch descriptor of at least 1, the rename cookie the same in every entry, the
    /// queue in the blob and well formed ([`check_inotify_events`]); watches in
    /// (description, wd) order, each of an instance, a watch descriptor of at least 1, an
    /// event asked for and no bit outside [`inotify_bits::WATCH`], at most
    /// [`MAX_INOTIFY_WATCHES`] an instance. That each instance has a descriptor and each
    /// watched inode is carried, an adopter checks with its own tables.
    fn check_inotify(&self, inotifies: &Table<'_, InotifyEntry>) -> Result<(), RecordError> {
        let mut last = 0;
        let mut cookie = None;
        for i in inotifies.iter() {
            if i.description <= last {
                return oob("inotify (in increasing description order)", i.description);
            }
            last = i.description;
            if i.next_wd < 1 || cookie.is_some_and(|c| c != i.cookie) {
                return oob("inotify's next watch or cookie", i.description);
            }
            cookie = Some(i.cookie);
            let Some(bytes) = self.blob_bytes(i.events) else {
                return oob("inotify's queue (outside the blob)", i.description);
            };
            if let Err(what) = check_inotify_events(bytes) {
                return oob(what, i.description);
            }
        }
        let mut prev = (0u64, 0i32);
        let mut in_instance = 0usize;
        for w in self.entries::<InotifyWatchEntry>() {
            let key = (w.description, w.wd);
            in_instance = if key.0 == prev.0 { in_instance + 1 } else { 1 };
            let ok = key > prev
                && w.wd >= 1
                && w.mask & inotify_bits::ALL_EVENTS != 0
                && w.mask & !inotify_bits::WATCH == 0
                && in_instance <= MAX_INOTIFY_WATCHES
                && inotifies.find(w.description, |i| i.description).is_some();
            if !ok {
                return oob(
                    "inotify watch (in order, of an instance, with known events)",
                    w.description,
                );
            }
            prev = key;
        }
        Ok(())
    }
}

/// Whether the epoll-in-epoll registrations `edges` (outer, inner) make no loop and nest at
/// most [`MAX_EPOLL_NESTS`] deep: the height below each edge, relaxed until it settles; a
/// loop never settles and a deep chain goes past the bound.
fn check_nesting(edges: &[(u64, u64)]) -> Result<(), RecordError> {
    let mut height = [0usize; MAX_NESTED_EPOLL_ITEMS];
    for _ in 0..=MAX_EPOLL_NESTS + 1 {
        let mut changed = false;
        for (i, &(_, inner)) in edges.iter().enumerate() {
            let h = edges
                .iter()
                .enumerate()
                .filter(|(_, &(outer, _))| outer == inner)
                .map(|(j, _)| height[j] + 1)
                .max()
                .unwrap_or(1);
            if h != height[i] {
                height[i] = h;
                changed = true;
            }
            if h > MAX_EPOLL_NESTS {
                return oob("epolls nested in a loop or too deep", inner);
            }
        }
        if !changed {
            return Ok(());
        }
    }
    oob("epolls nested in a loop or too deep", 0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::{
        section, BlobRef, Bounds, ProcessEntry, RecordWriter, MAX_PID, RECORD_VERSION,
    };
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const BOUNDS: Bounds = Bounds {
        user_end: crate::user::USER_END,
        pool_start: 16 << 20,
        pool_end: 64 << 20,
        max_pid: MAX_PID,
    };

    fn rec(fds: &[FdStateEntry], timers: &[TimerFdEntry], items: &[EpollItemEntry]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, RECORD_VERSION, b"x");
        w.section(&[ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        w.section(fds);
        w.section(timers);
        w.section(items);
        w.finish();
        v
    }

    /// Descriptor `fd` of process 1, its own description `fd + 1`.
    fn fd(fd: i32, kind: u32, object: u64) -> FdStateEntry {
        FdStateEntry {
            pid: 1,
            fd,
            kind,
            fd_flags: 0,
            status_flags: 0o2,
            aux: 0,
            description: fd as u64 + 1,
            pos: 0,
            object,
            path: BlobRef::default(),
        }
    }

    fn timer(description: u64) -> TimerFdEntry {
        TimerFdEntry {
            description,
            clock: super::super::timer_clock::MONOTONIC,
            flags: 0,
            next: 5_000_000_000,
            interval: 100_000_000,
            ticks: 3,
        }
    }

    fn item(epoll: u64, fd: i32, target: u64) -> EpollItemEntry {
        EpollItemEntry {
            epoll,
            target,
            fd,
            events: 0x001 | epoll_bits::ET,
            data: 0xfeed_0000 ^ fd as u64,
            flags: 0,
            _reserved: 0,
        }
    }

    fn check(v: &[u8]) -> Result<(), RecordError> {
        Record::parse(v, (2, RECORD_VERSION))
            .expect("well formed")
            .check(&BOUNDS)
    }

    /// An eventfd (fd 3), a timerfd (4), a signalfd (5), a pipe-free epoll (6) over them,
    /// and a second epoll (7) holding the first.
    fn good() -> (Vec<FdStateEntry>, Vec<TimerFdEntry>, Vec<EpollItemEntry>) {
        let fds = vec![
            FdStateEntry {
                aux: eventfd_flags::SEMAPHORE,
                status_flags: 0o2 | 0o4000,
                ..fd(3, fd_state::EVENTFD, 42)
            },
            fd(4, fd_state::TIMERFD, 0),
            fd(5, fd_state::SIGNALFD, 1 << (10 - 1)),
            fd(6, fd_state::EPOLL, 0),
            fd(7, fd_state::EPOLL, 0),
        ];
        let items = vec![
            item(7, 3, 4),
            item(7, 4, 5),
            item(7, 5, 6),
            EpollItemEntry {
                flags: epoll_item_flags::EPOLL,
                events: 0x001,
                ..item(8, 6, 7)
            },
        ];
        (fds, vec![timer(5)], items)
    }

    #[test]
    fn event_objects_round_trip() {
        let (fds, timers, items) = good();
        let v = rec(&fds, &timers, &items);
        check(&v).expect("in bounds");
        let r = Record::parse(&v, (2, RECORD_VERSION)).expect("valid");
        assert_eq!(r.entries::<TimerFdEntry>().collect::<Vec<_>>(), timers);
        assert_eq!(r.entries::<EpollItemEntry>().collect::<Vec<_>>(), items);
        assert_eq!(section::TIMERFD, 24);
        assert_eq!(section::EPOLL_ITEM, 25);
    }

    #[test]
    fn malformed_event_objects_are_refused() {
        let (fds, timers, items) = good();
        let with_fd = |i: usize, f: FdStateEntry| {
            let mut v = fds.clone();
            v[i] = f;
            rec(&v, &timers, &items)
        };
        let with_item = |i: usize, e: EpollItemEntry| {
            let mut v = items.clone();
            v[i] = e;
            rec(&fds, &timers, &v)
        };
        let with_timer = |t: TimerFdEntry| rec(&fds, &[t], &items);
        // A loop: epoll 7 (description 8) in epoll 6 (7) in epoll 7.
        let mut looped = items.clone();
        looped.insert(
            3,
            EpollItemEntry {
                flags: epoll_item_flags::EPOLL,
                events: 0x001,
                ..item(7, 7, 8)
            },
        );
        // Too deep: 5 epolls in a chain (4 is Linux's limit).
        let deep_fds: Vec<FdStateEntry> = (0..6).map(|i| fd(i, fd_state::EPOLL, 0)).collect();
        let deep: Vec<EpollItemEntry> = (1..6)
            .map(|d| EpollItemEntry {
                flags: epoll_item_flags::EPOLL,
                events: 0x001,
                ..item(d, d as i32, d + 1)
            })
            .collect();
        let too_many: Vec<EpollItemEntry> = (0..=MAX_NESTED_EPOLL_ITEMS as i32)
            .map(|n| EpollItemEntry {
                flags: epoll_item_flags::EPOLL,
                events: 0x001,
                ..item(7, 100 + n, 8)
            })
            .collect();
        for (v, what) in [
            (
                with_fd(0, fd(3, fd_state::EVENTFD, u64::MAX)),
                "eventfd count",
            ),
            (
                with_fd(
                    0,
                    FdStateEntry {
                        aux: 2,
                        ..fd(3, fd_state::EVENTFD, 1)
                    },
                ),
                "eventfd count or flags",
            ),
            (
                with_fd(
                    0,
                    FdStateEntry {
                        status_flags: 0o2 | 0o200, // O_EXCL
                        ..fd(3, fd_state::EVENTFD, 1)
                    },
                ),
                "status flags",
            ),
            (
                with_fd(2, fd(5, fd_state::SIGNALFD, 1 << 8)),
                "signalfd mask",
            ),
            (rec(&fds, &[], &items), "timerfd of no timer"),
            (
                with_timer(TimerFdEntry {
                    clock: 3,
                    ..timer(5)
                }),
                "timerfd (clock",
            ),
            (
                with_timer(TimerFdEntry {
                    next: 0,
                    ..timer(5)
                }),
                "timerfd (clock",
            ),
            (
                with_timer(TimerFdEntry {
                    next: u64::MAX,
                    ..timer(5)
                }),
                "timerfd (clock",
            ),
            (with_item(1, item(7, 3, 4)), "order"),
            (with_item(0, item(7, 3, 7)), "of itself"),
            (with_item(0, item(7, -1, 4)), "descriptor number"),
            (
                with_item(
                    0,
                    EpollItemEntry {
                        events: 1 << 20,
                        ..item(7, 3, 4)
                    },
                ),
                "events",
            ),
            (
                with_item(
                    0,
                    EpollItemEntry {
                        events: 0x001 | epoll_bits::EXCLUSIVE | epoll_bits::ONESHOT,
                        ..item(7, 3, 4)
                    },
                ),
                "events",
            ),
            (
                with_item(
                    3,
                    EpollItemEntry {
                        events: 0x001 | epoll_bits::EXCLUSIVE,
                        flags: epoll_item_flags::EPOLL,
                        ..item(8, 6, 7)
                    },
                ),
                "events",
            ),
            (
                with_item(
                    0,
                    EpollItemEntry {
                        flags: 4,
                        ..item(7, 3, 4)
                    },
                ),
                "flags",
            ),
            (rec(&fds, &timers, &looped), "loop"),
            (rec(&deep_fds, &[], &deep), "loop or too deep"),
            (rec(&fds, &timers, &too_many), "epolls registered in epolls"),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{what}: {w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
        // Four deep is Linux's limit, and fine.
        check(&rec(&deep_fds[..5], &[], &deep[..4])).expect("four nested epolls");
    }

    /// One `struct inotify_event` record.
    fn event(wd: i32, mask: u32, cookie: u32, name: &[u8]) -> Vec<u8> {
        let len = if name.is_empty() {
            0
        } else {
            (name.len() + 1).div_ceil(16) * 16
        };
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_le_bytes());
        v.extend_from_slice(&mask.to_le_bytes());
        v.extend_from_slice(&cookie.to_le_bytes());
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v.extend_from_slice(name);
        v.resize(v.len() + len - name.len(), 0);
        v
    }

    /// An inotify instance (fd 3, description 4) with `queue` queued and `watches`, the
    /// queue in the blob.
    fn inotify_rec(queue: &[u8], entry: InotifyEntry, watches: &[InotifyWatchEntry]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, RECORD_VERSION, b"x");
        w.section(&[ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        w.section(&[FdStateEntry {
            status_flags: 0o4000,
            ..fd(3, fd_state::INOTIFY, 0)
        }]);
        w.section(&[entry]);
        w.section(watches);
        w.blob(queue);
        w.finish();
        v
    }

    fn instance(len: usize) -> InotifyEntry {
        InotifyEntry {
            description: 4,
            next_wd: 3,
            cookie: 7,
            events: BlobRef {
                off: 0,
                len: len as u32,
            },
        }
    }

    fn watch(wd: i32, ino: u64) -> InotifyWatchEntry {
        InotifyWatchEntry {
            description: 4,
            ino,
            wd,
            mask: 0x100 | 0x200 | inotify_bits::ONESHOT,
        }
    }

    #[test]
    fn inotify_instances_round_trip_and_bad_ones_are_refused() {
        let mut queue = event(1, 0x100, 0, b"a");
        queue.extend(event(1, 0x40, 6, b"a-long-name-of-17"));
        queue.extend(event(2, 0x8000, 0, b""));
        assert_eq!(check_inotify_events(&queue), Ok(3));
        let watches = [watch(1, 40), watch(2, 41)];
        let v = inotify_rec(&queue, instance(queue.len()), &watches);
        check(&v).expect("in bounds");
        let r = Record::parse(&v, (2, RECORD_VERSION)).expect("valid");
        assert_eq!(
            r.entries::<InotifyEntry>().collect::<Vec<_>>(),
            [instance(queue.len())]
        );
        assert_eq!(
            r.entries::<InotifyWatchEntry>().collect::<Vec<_>>(),
            watches
        );
        assert_eq!(r.blob_bytes(instance(queue.len()).events), Some(&queue[..]));
        assert_eq!((section::INOTIFY, section::INOTIFY_WATCH), (33, 34));
        let mut unpadded = event(1, 0x100, 0, b"abc");
        unpadded.truncate(unpadded.len() - 1);
        let mut no_nul = event(1, 0x100, 0, b"0123456789abcde");
        no_nul[16 + 15] = b'x';
        let with_watch = |w: InotifyWatchEntry| inotify_rec(&queue, instance(queue.len()), &[w]);
        for (v, what) in [
            (
                inotify_rec(&event(-2, 0x100, 0, b""), instance(16), &[]),
                "watch or mask",
            ),
            (
                inotify_rec(&event(1, 0x10_0000, 0, b""), instance(16), &[]),
                "watch or mask",
            ),
            (
                inotify_rec(&unpadded, instance(unpadded.len()), &[]),
                "cut short",
            ),
            (inotify_rec(&no_nul, instance(no_nul.len()), &[]), "name"),
            (
                inotify_rec(&queue, instance(queue.len() + 1), &watches),
                "outside the blob",
            ),
            (
                inotify_rec(
                    &queue,
                    InotifyEntry {
                        next_wd: 0,
                        ..instance(queue.len())
                    },
                    &watches,
                ),
                "next watch",
            ),
            (
                inotify_rec(&queue, instance(queue.len()), &[watch(2, 41), watch(1, 40)]),
                "inotify watch",
            ),
            (with_watch(watch(0, 40)), "inotify watch"),
            (
                with_watch(InotifyWatchEntry {
                    mask: inotify_bits::ONESHOT,
                    ..watch(1, 40)
                }),
                "inotify watch",
            ),
            (
                with_watch(InotifyWatchEntry {
                    mask: 0x100 | 0x0100_0000, // IN_ONLYDIR is not kept
                    ..watch(1, 40)
                }),
                "inotify watch",
            ),
            (
                with_watch(InotifyWatchEntry {
                    description: 9,
                    ..watch(1, 40)
                }),
                "inotify watch",
            ),
        ] {
            match check(&v) {
                Err(RecordError::OutOfBounds(w, _)) => assert!(w.contains(what), "{what}: {w}"),
                e => panic!("{what}: {e:?}"),
            }
        }
        // A descriptor of no instance.
        let mut v = Vec::new();
        let mut w = RecordWriter::new(&mut v, RECORD_VERSION, b"x");
        w.section(&[ProcessEntry {
            pid: 1,
            ..Default::default()
        }]);
        w.section(&[fd(3, fd_state::INOTIFY, 0)]);
        w.finish();
        assert!(
            check(&v).is_err(),
            "an inotify descriptor without its instance"
        );
        let too_many: Vec<u8> = (0..=MAX_INOTIFY_EVENTS)
            .flat_map(|_| event(1, 0x2, 0, b""))
            .collect();
        assert!(check_inotify_events(&too_many).is_err());
    }
}
