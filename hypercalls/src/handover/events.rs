//! Version 2 record entries of the **event objects** a descriptor may name (`eventfd`,
//! `timerfd`, `signalfd`, `epoll`): descriptor kinds [`super::fd_state::EVENTFD`] ..
//! [`super::fd_state::EPOLL`], sections [`super::section::TIMERFD`] and
//! [`super::section::EPOLL_ITEM`], and their part of [`super::Record::check`].
//!
//! An eventfd and a signalfd need no section: their whole state fits their
//! [`super::FdStateEntry`] (an eventfd's counter in `object`, its `EFD_SEMAPHORE` in `aux`; a
//! signalfd's mask in `object`). A timerfd's timer is a [`TimerFdEntry`], an epoll's interest
//! list a run of [`EpollItemEntry`]s; both name their object by the record's open file
//! description number ([`super::FdStateEntry::description`]), so every descriptor of one
//! description — in any process — names the same object, and an epoll registration names
//! its target the way Linux does: by (descriptor number, open file description).

use super::{fd_state, oob, FdStateEntry, Record, RecordError, Table};
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
        for f in fds.iter() {
            let event = matches!(
                f.kind,
                fd_state::EVENTFD | fd_state::TIMERFD | fd_state::SIGNALFD | fd_state::EPOLL
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
                _ => f.aux == 0,
            };
            if !ok {
                return oob(
                    "event object (eventfd count or flags, signalfd mask, timerfd of no timer)",
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
        check_nesting(&nested[..n_nested])
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
        Record::parse(v, (2, 2))
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
        let r = Record::parse(&v, (2, 2)).expect("valid");
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
}
