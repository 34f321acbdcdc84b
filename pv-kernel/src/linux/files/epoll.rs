//! `epoll`: `epoll_create`/`epoll_create1`, `epoll_ctl`, `epoll_wait`/`epoll_pwait`/
//! `epoll_pwait2` (Linux `fs/eventpoll.c`).
//!
//! An epoll instance is a [`FileObject`] holding its interest list. An entry is keyed by
//! (descriptor number, open file description) as on Linux: it holds the description weakly,
//! so it goes away when the description closes (its last descriptor, wherever `dup`ed or
//! inherited), not when one descriptor of it is closed.
//!
//! Readiness is computed, never cached: every wait scans the interest list with
//! [`poll_mask`] and sleeps on the global [`super::poll::notify`] wake-up, so every kind of
//! file (pipes, the console, eventfd, sockets, timers, nested epolls) works without a per-file
//! callback. Level-triggered entries are reported while ready. Edge-triggered ones
//! (`EPOLLET`) are reported when ready and their file's wake-up counter
//! ([`super::poll::wakeups`]) moved since the last report — the counter is read before the
//! mask, so a wake-up between the two is reported again rather than lost. `EPOLLONESHOT`
//! disables an entry after one report until `EPOLL_CTL_MOD`. Reported entries move to the end
//! of the list, so `maxevents` smaller than the ready set rotates through it like Linux's
//! ready list. `EPOLLEXCLUSIVE` is accepted (every waiter is woken; a waiter that finds
//! nothing sleeps again).

#![deny(unsafe_code)]

use crate::linux::abi::nr;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};

use super::file::{fl, KStat, Kind, OpenFile};
use super::object::{anon_ino, anon_stat, downcast, open_object, FileObject};
use super::poll::{self, ev, poll_mask, Waited};
use super::{dev::Dev, fd_file};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::uaccess::{copy_to_user, read_val};
use crate::linux::SysResult;

/// `epoll_event.events` bits (the low ones are the `poll` bits).
#[allow(dead_code)] // the whole set, as Linux defines it
pub(crate) mod epf {
    pub(crate) const EPOLLIN: u32 = 0x001;
    pub(crate) const EPOLLOUT: u32 = 0x004;
    pub(crate) const EPOLLERR: u32 = 0x008;
    pub(crate) const EPOLLHUP: u32 = 0x010;
    pub(crate) const EPOLLRDNORM: u32 = 0x040;
    pub(crate) const EPOLLRDBAND: u32 = 0x080;
    pub(crate) const EPOLLWRNORM: u32 = 0x100;
    pub(crate) const EPOLLWRBAND: u32 = 0x200;
    pub(crate) const EPOLLMSG: u32 = 0x400;
    pub(crate) const EPOLLRDHUP: u32 = 0x2000;
    pub(crate) const EPOLLEXCLUSIVE: u32 = 1 << 28;
    pub(crate) const EPOLLWAKEUP: u32 = 1 << 29;
    pub(crate) const EPOLLONESHOT: u32 = 1 << 30;
    pub(crate) const EPOLLET: u32 = 1 << 31;
    /// What may come with `EPOLLEXCLUSIVE` (Linux's `EPOLLEXCLUSIVE_OK_BITS`).
    pub(crate) const EXCLUSIVE_OK: u32 = EPOLLIN
        | EPOLLOUT
        | EPOLLRDNORM
        | EPOLLRDBAND
        | EPOLLWRNORM
        | EPOLLWRBAND
        | EPOLLERR
        | EPOLLHUP
        | EPOLLWAKEUP
        | EPOLLET
        | EPOLLEXCLUSIVE;
    /// The control bits (not events).
    pub(crate) const CONTROL: u32 = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;
}
use epf::*;

/// `epoll_ctl` operations.
const EPOLL_CTL_ADD: u64 = 1;
const EPOLL_CTL_DEL: u64 = 2;
const EPOLL_CTL_MOD: u64 = 3;
/// Deepest nesting of epolls in epolls (Linux's `EP_MAX_NESTS`).
const MAX_NESTS: usize = 4;
/// Size of the packed x86-64 `struct epoll_event`.
const EVENT_SIZE: usize = 12;
/// Most events one wait may ask for (Linux's `EP_MAX_EVENTS`).
const MAX_EVENTS: usize = (i32::MAX as usize) / EVENT_SIZE;

/// Source of entry serial numbers (a `MOD` makes a new entry state).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// One interest-list entry.
struct Entry {
    fd: i32,
    file: Weak<OpenFile>,
    /// Interest and control bits (`EPOLLERR | EPOLLHUP` always included).
    events: u32,
    data: u64,
    /// Edge-triggered: the file's wake-up count at the last report (`None`: none yet).
    seen: Option<u64>,
    /// `EPOLLONESHOT` fired: silent until `EPOLL_CTL_MOD`.
    disabled: bool,
    /// Changes with every `ADD`/`MOD`, so a racing wait does not update a newer state.
    serial: u64,
}

/// What a scan decided for one entry: its `revents`, and the wake-up count to remember.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    revents: u32,
    seen: u64,
}

/// Whether an entry with interest `events`, last-reported count `seen` and `disabled`
/// state is reported, given its file's current events `mask` and wake-up count `count`.
fn decide(events: u32, seen: Option<u64>, disabled: bool, mask: u32, count: u64) -> Option<Report> {
    if disabled {
        return None;
    }
    let revents = mask & (events & !CONTROL);
    if revents == 0 {
        return None;
    }
    if events & EPOLLET != 0 && seen == Some(count) {
        return None;
    }
    Some(Report {
        revents,
        seen: count,
    })
}

/// One epoll instance.
pub(crate) struct Epoll {
    entries: IrqLock<Vec<Entry>>,
    /// The epolls whose interest lists hold this one (for the nesting depth check).
    parents: IrqLock<Vec<Weak<OpenFile>>>,
    ino: u64,
}

/// An entry as a scan saw it.
struct Snap {
    fd: i32,
    file: Arc<OpenFile>,
    events: u32,
    seen: Option<u64>,
    data: u64,
    serial: u64,
}

/// An entry found ready by a scan.
struct Found {
    fd: i32,
    file: Arc<OpenFile>,
    serial: u64,
    prev_seen: Option<u64>,
    report: Report,
    data: u64,
    oneshot: bool,
}

impl Epoll {
    /// Scans for ready entries, at most `max`. With `consume`, edge-triggered and one-shot
    /// entries are marked reported and the reported entries move to the end of the list.
    /// Returns `(events, data)` pairs.
    fn scan(&self, max: usize, consume: bool) -> Vec<(u32, u64)> {
        // Snapshot the live, enabled entries, then poll with no lock of ours held.
        let snap: Vec<Snap> = {
            let mut es = self.entries.lock();
            es.retain(|e| e.file.strong_count() > 0);
            es.iter()
                .filter(|e| !e.disabled)
                .filter_map(|e| {
                    Some(Snap {
                        fd: e.fd,
                        file: e.file.upgrade()?,
                        events: e.events,
                        seen: e.seen,
                        data: e.data,
                        serial: e.serial,
                    })
                })
                .collect()
        };
        let mut found = Vec::new();
        for e in snap {
            if found.len() >= max {
                break;
            }
            let count = poll::wakeups(&e.file, e.events);
            let mask = u32::from(poll_mask(&e.file));
            if let Some(report) = decide(e.events, e.seen, false, mask, count) {
                found.push(Found {
                    fd: e.fd,
                    file: e.file,
                    serial: e.serial,
                    prev_seen: e.seen,
                    report,
                    data: e.data,
                    oneshot: e.events & EPOLLONESHOT != 0,
                });
            }
        }
        if !consume {
            return found.iter().map(|f| (f.report.revents, f.data)).collect();
        }
        let mut out = Vec::with_capacity(found.len());
        {
            let mut es = self.entries.lock();
            for f in &found {
                let Some(i) = es
                    .iter()
                    .position(|e| e.fd == f.fd && Weak::ptr_eq(&e.file, &Arc::downgrade(&f.file)))
                else {
                    continue;
                };
                let e = &mut es[i];
                if e.serial != f.serial || e.seen != f.prev_seen || e.disabled {
                    continue; // changed meanwhile (MOD, or another waiter reported it)
                }
                e.seen = Some(f.report.seen);
                e.disabled = f.oneshot;
                out.push((f.report.revents, f.data));
                let moved = es.remove(i);
                es.push(moved);
            }
        }
        // `found` (and the files it holds) drops here, after the lock.
        drop(found);
        out
    }

    /// True if a wait would report something now.
    fn ready(&self) -> bool {
        !self.scan(1, false).is_empty()
    }

    /// The epolls among this one's entries.
    fn nested(&self) -> Vec<Arc<OpenFile>> {
        let files: Vec<Arc<OpenFile>> = self
            .entries
            .lock()
            .iter()
            .filter_map(|e| e.file.upgrade())
            .collect();
        files
            .into_iter()
            .filter(|f| downcast::<Epoll>(f).is_some())
            .collect()
    }

    /// How deep epolls nest below this one (Linux's `ep_loop_check_proc`): more than
    /// [`MAX_NESTS`] if `into` is among them (a loop) or the nesting is too deep.
    fn height(&self, into: &Epoll, depth: usize) -> usize {
        let mut result = 0;
        for f in self.nested() {
            let Some(inner) = downcast::<Epoll>(&f) else {
                continue;
            };
            result = if core::ptr::eq(inner, into) || depth > MAX_NESTS {
                MAX_NESTS + 1
            } else {
                result.max(inner.height(into, depth + 1) + 1)
            };
            if result > MAX_NESTS {
                break;
            }
        }
        result
    }

    /// How deep this epoll is nested in others (Linux's `ep_get_upwards_depth_proc`).
    fn upwards(&self, depth: usize) -> usize {
        if depth > MAX_NESTS {
            return depth;
        }
        let parents: Vec<Arc<OpenFile>> = {
            let mut ps = self.parents.lock();
            ps.retain(|p| p.strong_count() > 0);
            ps.iter().filter_map(Weak::upgrade).collect()
        };
        parents
            .iter()
            .filter_map(|p| downcast::<Epoll>(p))
            .map(|p| p.upwards(depth + 1) + 1)
            .max()
            .unwrap_or(0)
    }

    /// True if adding epoll `to` to this one would make a loop or nest deeper than Linux
    /// allows (`ep_loop_check`).
    fn would_loop(&self, to: &Epoll) -> bool {
        let h = to.height(self, 0);
        h > MAX_NESTS || h + 1 + self.upwards(0) > MAX_NESTS
    }
}

impl FileObject for Epoll {
    fn poll(&self, _f: &OpenFile) -> u16 {
        if self.ready() {
            ev::POLLIN | ev::POLLRDNORM
        } else {
            0
        }
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:[eventpoll]".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A registration of an epoll's interest list, as a hand-over record carries it.
pub(crate) struct CarriedItem {
    /// The descriptor number it was registered by.
    pub(crate) fd: i32,
    /// The open file description registered.
    pub(crate) file: Arc<OpenFile>,
    /// Interest and control bits as registered (`EPOLLERR | EPOLLHUP` included).
    pub(crate) events: u32,
    pub(crate) data: u64,
    /// An `EPOLLONESHOT` registration that reported.
    pub(crate) disabled: bool,
}

impl Epoll {
    /// Its live registrations, in list order. An edge-triggered one's last reported
    /// wake-up count is not carried: it is reported once more if ready (one spurious edge
    /// after a switch rather than a lost one).
    pub(crate) fn carried(&self) -> Vec<CarriedItem> {
        self.entries
            .lock()
            .iter()
            .filter_map(|e| {
                Some(CarriedItem {
                    fd: e.fd,
                    file: e.file.upgrade()?,
                    events: e.events,
                    data: e.data,
                    disabled: e.disabled,
                })
            })
            .collect()
    }
}

/// An epoll made again from a hand-over record, with an empty interest list
/// ([`adopt_item`] fills it once every description exists).
pub(crate) fn adopted(status_flags: u32) -> Arc<OpenFile> {
    let obj = Arc::new(Epoll {
        entries: IrqLock::new(Vec::new()),
        parents: IrqLock::new(Vec::new()),
        ino: anon_ino(),
    });
    open_object(obj, status_flags)
}

/// Adds a carried registration to the adopted epoll `ep`: `target` by descriptor number
/// `fd`, with `events` as registered, `data`, and a fired one-shot `disabled`. The record's
/// check made sure epolls neither loop nor nest too deep; what `epoll_ctl` would refuse
/// here is refused too.
pub(crate) fn adopt_item(
    ep: &Arc<OpenFile>,
    fd: i32,
    target: &Arc<OpenFile>,
    events: u32,
    data: u64,
    disabled: bool,
) -> Result<(), &'static str> {
    let e = downcast::<Epoll>(ep).ok_or("a registration of no epoll")?;
    if Arc::ptr_eq(ep, target) || !pollable(target) {
        return Err("a registration of a file epoll cannot watch");
    }
    let inner = downcast::<Epoll>(target);
    if inner.is_some() && events & EPOLLEXCLUSIVE != 0 {
        return Err("an exclusive registration of an epoll");
    }
    let weak = Arc::downgrade(target);
    if e.entries
        .lock()
        .iter()
        .any(|x| x.fd == fd && Weak::ptr_eq(&x.file, &weak))
    {
        return Err("a registration twice");
    }
    if let Some(t) = inner {
        t.parents.lock().push(Arc::downgrade(ep));
    }
    e.entries.lock().push(Entry {
        fd,
        file: weak,
        events: events | EPOLLERR | EPOLLHUP,
        data,
        seen: None,
        disabled,
        serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
    });
    Ok(())
}

/// `epoll_create1(flags)`.
pub(crate) fn sys_epoll_create1(flags: u64) -> SysResult {
    if flags & !u64::from(fl::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let obj = Arc::new(Epoll {
        entries: IrqLock::new(Vec::new()),
        parents: IrqLock::new(Vec::new()),
        ino: anon_ino(),
    });
    super::install(open_object(obj, oflag::O_RDWR), flags != 0)
}

/// `epoll_create(size)`: `size` must be positive and is otherwise ignored.
pub(crate) fn sys_epoll_create(size: u64) -> SysResult {
    if size as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    sys_epoll_create1(0)
}

/// True if `f` can be polled: regular files, directories and the memory devices cannot
/// (`EPERM` for `epoll_ctl`, as on Linux).
fn pollable(f: &OpenFile) -> bool {
    match &f.kind {
        Kind::Node { .. } => false,
        Kind::Dev { dev, .. } => matches!(dev, Dev::Random | Dev::URandom),
        _ => true,
    }
}

/// Serializes `ADD`s of epolls into epolls, so the loop check sees a stable graph.
static NEST_LOCK: IrqLock<()> = IrqLock::new(());

/// `epoll_ctl(epfd, op, fd, event)`.
pub(crate) fn sys_epoll_ctl(epfd: u64, op: u64, fd: u64, event: u64) -> SysResult {
    let (events, data) = if op != EPOLL_CTL_DEL {
        let raw: [u8; EVENT_SIZE] = read_val(event)?;
        let ev = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&raw[4..12]);
        (ev, u64::from_le_bytes(d))
    } else {
        (0, 0)
    };
    let fd = fd as i32;
    let ef = fd_file(epfd as i32)?;
    let tf = fd_file(fd)?;
    if !pollable(&tf) {
        return Err(Errno::EPERM);
    }
    let ep = downcast::<Epoll>(&ef).ok_or(Errno::EINVAL)?;
    if Arc::ptr_eq(&ef, &tf) {
        return Err(Errno::EINVAL);
    }
    let target_ep = downcast::<Epoll>(&tf);
    if op != EPOLL_CTL_DEL && events & EPOLLEXCLUSIVE != 0 {
        if op == EPOLL_CTL_MOD {
            return Err(Errno::EINVAL);
        }
        if op == EPOLL_CTL_ADD && (target_ep.is_some() || events & !EXCLUSIVE_OK != 0) {
            return Err(Errno::EINVAL);
        }
    }
    let weak = Arc::downgrade(&tf);
    let find = |es: &Vec<Entry>| {
        es.iter()
            .position(|e| e.fd == fd && Weak::ptr_eq(&e.file, &weak))
    };
    let interest = events | EPOLLERR | EPOLLHUP;
    match op {
        EPOLL_CTL_ADD => {
            let _nest = target_ep.map(|_| NEST_LOCK.lock());
            if find(&ep.entries.lock()).is_some() {
                return Err(Errno::EEXIST);
            }
            if let Some(t) = target_ep {
                if ep.would_loop(t) {
                    return Err(Errno::ELOOP);
                }
                t.parents.lock().push(Arc::downgrade(&ef));
            }
            let mut es = ep.entries.lock();
            if find(&es).is_some() {
                return Err(Errno::EEXIST);
            }
            crate::linux::alloc_guard::reserve(core::mem::size_of::<Entry>())?;
            es.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
            es.push(Entry {
                fd,
                file: weak.clone(),
                events: interest,
                data,
                seen: None,
                disabled: false,
                serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            });
        }
        EPOLL_CTL_MOD => {
            let mut es = ep.entries.lock();
            let i = find(&es).ok_or(Errno::ENOENT)?;
            let e = &mut es[i];
            if e.events & EPOLLEXCLUSIVE != 0 {
                return Err(Errno::EINVAL);
            }
            e.events = interest;
            e.data = data;
            e.seen = None;
            e.disabled = false;
            e.serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        }
        EPOLL_CTL_DEL => {
            let removed = {
                let mut es = ep.entries.lock();
                let i = find(&es).ok_or(Errno::ENOENT)?;
                es.remove(i)
            };
            if let Some(t) = target_ep {
                let me = Arc::downgrade(&ef);
                let mut ps = t.parents.lock();
                if let Some(i) = ps.iter().position(|p| Weak::ptr_eq(p, &me)) {
                    ps.remove(i);
                }
            }
            drop(removed);
            return Ok(0);
        }
        _ => return Err(Errno::EINVAL),
    }
    // A waiter of this epoll re-checks with the new entry.
    poll::notify();
    Ok(0)
}

/// The common part of the waits: up to `max` events into `events_va`, waiting until the
/// guest-time `deadline` (`None`: forever).
fn do_wait(epfd: u64, events_va: u64, max: u64, deadline: Option<u64>) -> SysResult {
    let max = max as i32;
    if max <= 0 || max as usize > MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let f = fd_file(epfd as i32)?;
    let ep = downcast::<Epoll>(&f).ok_or(Errno::EINVAL)?;
    loop {
        let got = ep.scan(max as usize, true);
        if !got.is_empty() {
            let mut raw = super::file::kbuf(got.len() * EVENT_SIZE)?;
            for ((events, data), out) in got.iter().zip(raw.chunks_exact_mut(EVENT_SIZE)) {
                out[..4].copy_from_slice(&events.to_le_bytes());
                out[4..].copy_from_slice(&data.to_le_bytes());
            }
            copy_to_user(events_va, &raw)?;
            return Ok(got.len() as u64);
        }
        match poll::wait_for(deadline, || ep.ready())? {
            Waited::Ready => continue,
            Waited::Timeout => return Ok(0),
        }
    }
}

/// The deadline of a millisecond timeout (negative: none).
fn ms_deadline(timeout: u64) -> Option<u64> {
    let t = timeout as i32;
    (t >= 0).then(|| poll::deadline_after(t as u64 * 1_000_000))
}

/// `epoll_wait(epfd, events, maxevents, timeout_ms)`.
pub(crate) fn sys_epoll_wait(epfd: u64, events: u64, max: u64, timeout: u64) -> SysResult {
    poll::continued(nr::EPOLL_WAIT, ms_deadline(timeout), |d| {
        do_wait(epfd, events, max, d)
    })
}

/// `epoll_pwait(epfd, events, maxevents, timeout_ms, sigmask, sigsetsize)`.
pub(crate) fn sys_epoll_pwait(a: [u64; 6]) -> SysResult {
    poll::continued(nr::EPOLL_PWAIT, ms_deadline(a[3]), |d| {
        poll::with_sigmask(a[4], a[5], || do_wait(a[0], a[1], a[2], d))
    })
}

/// `epoll_pwait2(epfd, events, maxevents, timeout_ts, sigmask, sigsetsize)`.
pub(crate) fn sys_epoll_pwait2(a: [u64; 6]) -> SysResult {
    let deadline = if a[3] == 0 {
        None
    } else {
        let [s, ns]: [i64; 2] = read_val(a[3])?;
        Some(poll::deadline_after(poll::timespec_ns(s, ns)?))
    };
    poll::continued(nr::EPOLL_PWAIT2, deadline, |d| {
        poll::with_sigmask(a[4], a[5], || do_wait(a[0], a[1], a[2], d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_triggered_reports_while_ready() {
        let r = decide(
            EPOLLIN | EPOLLERR | EPOLLHUP,
            Some(3),
            false,
            EPOLLIN | EPOLLOUT,
            3,
        );
        assert_eq!(
            r,
            Some(Report {
                revents: EPOLLIN,
                seen: 3
            })
        );
        assert_eq!(decide(EPOLLIN, None, false, EPOLLOUT, 0), None, "not asked");
        assert_eq!(
            decide(EPOLLIN | EPOLLHUP, None, false, EPOLLHUP, 0).map(|r| r.revents),
            Some(EPOLLHUP)
        );
    }

    #[test]
    fn edge_triggered_reports_once_per_wakeup() {
        let et = EPOLLIN | EPOLLET;
        let first = decide(et, None, false, EPOLLIN, 7).expect("first edge");
        assert_eq!(first.seen, 7);
        assert_eq!(
            decide(et, Some(7), false, EPOLLIN, 7),
            None,
            "no new wake-up"
        );
        assert!(
            decide(et, Some(7), false, EPOLLIN, 8).is_some(),
            "new wake-up"
        );
        assert_eq!(
            decide(et, Some(7), false, 0, 8),
            None,
            "woken but not ready"
        );
        assert_eq!(
            decide(et | EPOLLONESHOT, None, true, EPOLLIN, 9),
            None,
            "one-shot fired"
        );
        assert_eq!(
            decide(et, None, false, EPOLLIN, 0).map(|r| r.revents),
            Some(EPOLLIN),
            "control bits never leak into revents"
        );
    }

    #[test]
    fn layout_constants() {
        assert_eq!(EVENT_SIZE, core::mem::size_of::<libc::epoll_event>());
        assert_eq!(EPOLLET, libc::EPOLLET as u32);
        assert_eq!(EPOLLONESHOT, libc::EPOLLONESHOT as u32);
        assert_eq!(EPOLLEXCLUSIVE, libc::EPOLLEXCLUSIVE as u32);
        assert_eq!(EPOLLRDHUP, libc::EPOLLRDHUP as u32);
        assert_eq!(u32::from(ev::POLLIN), EPOLLIN);
        assert_eq!(u32::from(ev::POLLWRBAND), EPOLLWRBAND);
        assert_eq!(EPOLLMSG, libc::EPOLLMSG as u32);
    }
}
