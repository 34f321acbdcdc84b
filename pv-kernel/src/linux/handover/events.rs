//! The event objects a hand-over record carries (docs/ABI.md §handover, descriptor kinds
//! 10-13, sections 24 and 25): `eventfd`, `timerfd`, `signalfd` and `epoll`. The writer's
//! side ([`carry`], [`carry_epolls`]) and the adopter's ([`open`], [`link_epolls`]).
//!
//! Every object is named by its open file description's number in the record, so the
//! descriptors that share a description (in any process) share the object again. An epoll
//! registration names its target the same way — Linux keys a registration by (descriptor
//! number, open file description) — so the adopter links the interest lists only once every
//! description of every process exists ([`link_epolls`]): a registration may name a pipe, a
//! socket, a file, a timerfd or another epoll, held by any process. Readiness is computed,
//! never cached ([`crate::linux::files::epoll`]): what is ready after a switch is reported
//! by the next `epoll_wait` (a level-triggered registration); an edge-triggered one is
//! reported once if its file is ready (its last reported wake-up is not carried: one
//! spurious edge, never a lost one). An `inotify` instance carries its watches by inode —
//! the in-memory filesystem is carried with its inode numbers (sections 21-23) — and its
//! queue as `read` would return it (sections 33 and 34); the kernel's rename cookie goes
//! with it, and an adopter learns where each file open by a descriptor is named, so events
//! on it by descriptor reach its directory's watches ([`adopt_inotify_names`]). A watch of
//! a file without a name (none is left: a file's watches go with its last name) is a
//! blocker.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::handover::{
    blocker, epoll_item_flags, eventfd_flags, fd_state, fill_name, timer_clock, BlockerEntry,
    EpollItemEntry, FdStateEntry, InotifyEntry, InotifyWatchEntry, Record, TimerFdEntry,
};
use zerocopy::FromZeros;

use super::adopt::Refusal;
use super::Inventory;
use crate::linux::files::epoll::{self, Epoll};
use crate::linux::files::eventfd::{self, EventFd};
use crate::linux::files::inotify::{self, Inotify};
use crate::linux::files::object::downcast;
use crate::linux::files::OpenFile;
use crate::linux::signal::signalfd::{self, SignalFd};
use crate::linux::timers::timer::Timer;
use crate::linux::timers::timerfd::{self, TimerFd};

/// Writer: carries descriptor `e` of process `pid` if its file `f` is an event object (its
/// kind and state in `e`; a timerfd's timer and an epoll's list noted in `inv`): `None` if
/// `f` is no event object, `Some(Err(what))` for one the record does not carry.
pub(super) fn carry(
    pid: i32,
    f: &Arc<OpenFile>,
    e: &mut FdStateEntry,
    inv: &mut Inventory,
) -> Option<Result<(), &'static [u8]>> {
    if let Some(ev) = downcast::<EventFd>(f) {
        let (count, semaphore) = ev.carried();
        e.kind = fd_state::EVENTFD;
        e.object = count;
        e.aux = if semaphore {
            eventfd_flags::SEMAPHORE
        } else {
            0
        };
    } else if let Some(s) = downcast::<SignalFd>(f) {
        e.kind = fd_state::SIGNALFD;
        e.object = s.carried();
    } else if let Some(t) = downcast::<TimerFd>(f) {
        let (realtime, next, interval, ticks) = t.carried();
        e.kind = fd_state::TIMERFD;
        inv.timerfds.entry(e.description).or_insert(TimerFdEntry {
            description: e.description,
            clock: if realtime {
                timer_clock::REALTIME
            } else {
                timer_clock::MONOTONIC
            },
            flags: 0,
            next,
            interval: if next == 0 { 0 } else { interval },
            ticks,
        });
    } else if downcast::<Epoll>(f).is_some() {
        e.kind = fd_state::EPOLL;
        inv.epolls.entry(e.description).or_insert((pid, f.clone()));
    } else if let Some(i) = downcast::<Inotify>(f) {
        e.kind = fd_state::INOTIFY;
        if !inv.inotifies.contains_key(&e.description) {
            let c = i.carried();
            let named = crate::fs::with_real_root(|fs| {
                c.watches
                    .iter()
                    .all(|&(_, ino, _)| fs.stat_ino(ino).is_ok_and(|s| s.nlink > 0))
            });
            if !named {
                return Some(Err(b"inotify watches of files without a name"));
            }
            let events = inv.blob_add(&c.events);
            inv.inotify_watches
                .extend(c.watches.iter().map(|&(wd, ino, mask)| InotifyWatchEntry {
                    description: e.description,
                    ino,
                    wd,
                    mask,
                }));
            inv.inotifies.insert(
                e.description,
                InotifyEntry {
                    description: e.description,
                    next_wd: c.next_wd,
                    cookie: inotify::next_cookie(),
                    events,
                },
            );
        }
    } else {
        return None;
    }
    Some(Ok(()))
}

/// Writer, once every process's descriptors are carried: the registrations of every carried
/// epoll (section 25, in (epoll, fd, target) order), each naming its target's description;
/// a registration of a description no carried descriptor holds (one only an `SCM_RIGHTS`
/// message in flight holds, say) is a blocker of the epoll's process.
pub(super) fn carry_epolls(inv: &mut Inventory) {
    let epolls = core::mem::take(&mut inv.epolls);
    let mut orphans: BTreeMap<i32, u32> = BTreeMap::new();
    for (&description, (pid, f)) in &epolls {
        let Some(ep) = downcast::<Epoll>(f) else {
            continue;
        };
        for item in ep.carried() {
            let key = Arc::as_ptr(&item.file) as *const () as usize;
            let Some(&target) = inv.descriptions.get(&key) else {
                *orphans.entry(*pid).or_default() += 1;
                continue;
            };
            let mut flags = 0;
            if item.disabled {
                flags |= epoll_item_flags::DISABLED;
            }
            if downcast::<Epoll>(&item.file).is_some() {
                flags |= epoll_item_flags::EPOLL;
            }
            inv.epoll_items.push(EpollItemEntry {
                epoll: description,
                target,
                fd: item.fd,
                events: item.events,
                data: item.data,
                flags,
                _reserved: 0,
            });
        }
    }
    inv.epoll_items.sort_by_key(|i| (i.epoll, i.fd, i.target));
    for (pid, n) in orphans {
        let mut b = BlockerEntry {
            kind: blocker::FILES,
            pid,
            count: n,
            ..FromZeros::new_zeroed()
        };
        fill_name(
            &mut b.what,
            b"epoll registrations of files no descriptor holds",
        );
        inv.blockers.push(b);
    }
    inv.epolls = epolls;
}

/// Adopter: what the record says of its timerfds and inotify instances, by description.
pub(crate) struct Tables {
    timerfds: BTreeMap<u64, TimerFdEntry>,
    inotifies: BTreeMap<u64, InotifyEntry>,
    /// Each instance's watches, in watch descriptor order.
    watches: BTreeMap<u64, Vec<InotifyWatchEntry>>,
    /// The record's queues are in its blob: each instance's bytes, by description.
    queues: BTreeMap<u64, Vec<u8>>,
}

impl Tables {
    /// The tables of checked record `r`.
    pub(crate) fn of(r: &Record<'_>) -> Self {
        let mut watches: BTreeMap<u64, Vec<InotifyWatchEntry>> = BTreeMap::new();
        for w in r.entries::<InotifyWatchEntry>() {
            watches.entry(w.description).or_default().push(w);
        }
        let inotifies: BTreeMap<u64, InotifyEntry> = r
            .entries::<InotifyEntry>()
            .map(|i| (i.description, i))
            .collect();
        let queues = inotifies
            .values()
            .map(|i| {
                let q = r.blob_bytes(i.events).unwrap_or_default().to_vec();
                (i.description, q)
            })
            .collect();
        Self {
            timerfds: timerfds(r),
            inotifies,
            watches,
            queues,
        }
    }
}

/// Adopter: the inotify watch (instance's description, watch descriptor) of the checked
/// record `r` whose inode is not one of the carried filesystem's named inodes `named`, if
/// any.
pub(crate) fn unnamed_watch(r: &Record<'_>, named: &BTreeSet<u64>) -> Option<(u64, i32)> {
    r.entries::<InotifyWatchEntry>()
        .find(|w| !named.contains(&w.ino))
        .map(|w| (w.description, w.wd))
}

/// Adopter: the rename cookie the record's inotify instances carry (the kernel's counter
/// goes on from it), once the programs' descriptors exist.
pub(crate) fn adopt_inotify_cookie(r: &Record<'_>) {
    if let Some(i) = r.entries::<InotifyEntry>().next() {
        inotify::adopt_cookie(i.cookie);
    }
}

/// Adopter, once the filesystem and every descriptor exist and if an instance has a watch:
/// where each file or directory open by one of `files` is named (by the path it was opened
/// by, if that still names it), so events on it by descriptor reach its directory's
/// watches, as on Linux. Returns how many were learnt.
pub(crate) fn adopt_inotify_names(files: &BTreeMap<u64, Arc<OpenFile>>) -> usize {
    use crate::fs::ramfs::ROOT_INO;
    use crate::linux::files::file::Kind;
    if !inotify::active() {
        return 0;
    }
    let mut n = 0;
    for f in files.values() {
        let Kind::Node { ino, .. } = &f.kind else {
            continue;
        };
        let Some(path) = f.path() else {
            continue;
        };
        let Some(cut) = path.iter().rposition(|&b| b == b'/') else {
            continue;
        };
        let (dir, name) = (&path[..cut], &path[cut + 1..]);
        if name.is_empty() || name == b"." || name == b".." {
            continue;
        }
        let parent = crate::fs::with_real_root(|fs| {
            let parent = if dir.is_empty() {
                ROOT_INO
            } else {
                fs.lookup(ROOT_INO, dir, true).ok()?
            };
            (fs.lookup(parent, name, false).ok()? == *ino).then_some(parent)
        });
        if let Some(parent) = parent {
            inotify::adopt_name(*ino, parent, name);
            n += 1;
        }
    }
    n
}

/// The timers of the record's timerfds, by description.
fn timerfds(r: &Record<'_>) -> BTreeMap<u64, TimerFdEntry> {
    r.entries::<TimerFdEntry>()
        .map(|t| (t.description, t))
        .collect()
}

/// A timerfd's timer made again, to arm once the programs run: the timer, its next expiry
/// (an absolute guest time; 0: disarmed) and interval.
pub(crate) type TimerArm = (Arc<Timer>, u64, u64);

/// Adopter: the open file description of event-object descriptor `f` made again (`None`:
/// `f` is of another kind); a timerfd's timer is added to `arms`.
pub(crate) fn open(
    f: &FdStateEntry,
    tables: &Tables,
    arms: &mut Vec<TimerArm>,
) -> Option<Result<Arc<OpenFile>, Refusal>> {
    let bad = Refusal::Descriptor(f.pid, f.fd);
    Some(Ok(match f.kind {
        fd_state::EVENTFD => eventfd::adopted(
            f.object,
            f.aux & eventfd_flags::SEMAPHORE != 0,
            f.status_flags,
        ),
        fd_state::SIGNALFD => signalfd::adopted(f.object, f.status_flags),
        fd_state::TIMERFD => {
            let Some(t) = tables.timerfds.get(&f.description) else {
                return Some(Err(bad));
            };
            let (file, timer) =
                timerfd::adopted(t.clock == timer_clock::REALTIME, t.ticks, f.status_flags);
            arms.push((timer, t.next, t.interval));
            file
        }
        fd_state::EPOLL => epoll::adopted(f.status_flags),
        fd_state::INOTIFY => {
            let (Some(i), Some(events)) = (
                tables.inotifies.get(&f.description),
                tables.queues.get(&f.description),
            ) else {
                return Some(Err(bad));
            };
            let watches = tables.watches.get(&f.description).map_or(Vec::new(), |w| {
                w.iter().map(|w| (w.wd, w.ino, w.mask)).collect()
            });
            let carried = inotify::Carried {
                next_wd: i.next_wd,
                watches,
                events: events.clone(),
            };
            match inotify::adopted(carried, f.status_flags) {
                Some(file) => file,
                None => return Some(Err(bad)),
            }
        }
        _ => return None,
    }))
}

/// Adopter, once every descriptor of every process exists: fills the interest list of each
/// epoll with its registrations, on the descriptions `files` (by the record's number). A
/// registration of a description the check left out (`left_out`: host files and devices,
/// which a check's kernel does not have) is skipped; one of no epoll, of an unknown
/// description, whose [`epoll_item_flags::EPOLL`] is not what its target is, or that
/// `epoll_ctl` would refuse, is refused.
pub(crate) fn link_epolls(
    r: &Record<'_>,
    files: &BTreeMap<u64, Arc<OpenFile>>,
    left_out: &BTreeSet<u64>,
) -> Result<usize, Refusal> {
    let mut n = 0;
    for i in r.entries::<EpollItemEntry>() {
        let bad = Refusal::Epoll(i.epoll, i.fd);
        let ep = files.get(&i.epoll).ok_or(bad.clone())?;
        if downcast::<Epoll>(ep).is_none() {
            return Err(bad);
        }
        let Some(target) = files.get(&i.target) else {
            if left_out.contains(&i.target) {
                continue;
            }
            return Err(bad);
        };
        let inner = downcast::<Epoll>(target).is_some();
        if inner != (i.flags & epoll_item_flags::EPOLL != 0) {
            return Err(bad);
        }
        epoll::adopt_item(
            ep,
            i.fd,
            target,
            i.events,
            i.data,
            i.flags & epoll_item_flags::DISABLED != 0,
        )
        .map_err(|_| bad)?;
        n += 1;
    }
    Ok(n)
}

/// Arms the adopted timerfds' timers as carried (one due while the tenant was frozen fires
/// at once, adding every expiration missed to its count, as on Linux).
pub(crate) fn arm(arms: Vec<TimerArm>) {
    for (t, next, interval) in arms {
        t.adopted(next, interval, 0);
    }
}
