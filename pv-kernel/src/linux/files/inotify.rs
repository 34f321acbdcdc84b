//! inotify: `inotify_init`/`inotify_init1`, `inotify_add_watch`, `inotify_rm_watch`, and the
//! events the file calls generate (Linux `fs/notify/inotify/`).
//!
//! An inotify instance is a [`FileObject`]: a list of watches (watch descriptor, inode, mask)
//! and a queue of events read as `struct inotify_event` records. The file system calls
//! report what they did through the hooks at the bottom of this module ([`created`],
//! [`removed`], [`renamed`], [`on_inode`], [`on_path`], [`opened`]); each does nothing (one
//! atomic load) until a watch has been added. Events on a file reach the watches of the file
//! itself and of its directory (with the file's name): the directory of a file opened by
//! descriptor is remembered when it is opened while watches exist.
//!
//! Events: `IN_CREATE`, `IN_DELETE`, `IN_MODIFY`, `IN_ATTRIB`, `IN_OPEN`, `IN_CLOSE_WRITE`,
//! `IN_CLOSE_NOWRITE`, `IN_MOVED_FROM`/`IN_MOVED_TO` (one cookie), `IN_MOVE_SELF`,
//! `IN_DELETE_SELF` then `IN_IGNORED`, `IN_Q_OVERFLOW`, `IN_ACCESS` (reads of regular
//! files); flags `IN_ONESHOT`, `IN_ONLYDIR`, `IN_DONT_FOLLOW`, `IN_MASK_ADD`,
//! `IN_MASK_CREATE`, `IN_EXCL_UNLINK` (accepted). An event identical to the last one queued
//! is merged into it, as Linux does. Not generated: `IN_ACCESS` for directory listings and
//! `IN_UNMOUNT`; a file opened before any watch existed reaches its directory's watches only
//! through path calls (its directory is learnt when it is opened).

#![deny(unsafe_code)]

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::fdops::fd_arg;
use super::file::{fl, KStat, OpenFile};
use super::object::{anon_ino, anon_stat, downcast, open_object, FileObject};
use super::poll::{self, ev};
use crate::fs::ramfs::{oflag, FileType, Ino, ROOT_INO};
use crate::fs::{self, Errno};
use crate::irq::IrqLock;
use crate::linux::uaccess::read_path;
use crate::linux::{signal, SysResult};
use crate::sched::wait::WaitQueue;

/// Event and flag bits (`<sys/inotify.h>`).
#[allow(dead_code)] // the whole set, as Linux defines it
pub(crate) mod inm {
    pub(crate) const IN_ACCESS: u32 = 0x1;
    pub(crate) const IN_MODIFY: u32 = 0x2;
    pub(crate) const IN_ATTRIB: u32 = 0x4;
    pub(crate) const IN_CLOSE_WRITE: u32 = 0x8;
    pub(crate) const IN_CLOSE_NOWRITE: u32 = 0x10;
    pub(crate) const IN_OPEN: u32 = 0x20;
    pub(crate) const IN_MOVED_FROM: u32 = 0x40;
    pub(crate) const IN_MOVED_TO: u32 = 0x80;
    pub(crate) const IN_CREATE: u32 = 0x100;
    pub(crate) const IN_DELETE: u32 = 0x200;
    pub(crate) const IN_DELETE_SELF: u32 = 0x400;
    pub(crate) const IN_MOVE_SELF: u32 = 0x800;
    pub(crate) const IN_UNMOUNT: u32 = 0x2000;
    pub(crate) const IN_Q_OVERFLOW: u32 = 0x4000;
    pub(crate) const IN_IGNORED: u32 = 0x8000;
    pub(crate) const IN_ONLYDIR: u32 = 0x0100_0000;
    pub(crate) const IN_DONT_FOLLOW: u32 = 0x0200_0000;
    pub(crate) const IN_EXCL_UNLINK: u32 = 0x0400_0000;
    pub(crate) const IN_MASK_CREATE: u32 = 0x1000_0000;
    pub(crate) const IN_MASK_ADD: u32 = 0x2000_0000;
    pub(crate) const IN_ISDIR: u32 = 0x4000_0000;
    pub(crate) const IN_ONESHOT: u32 = 0x8000_0000;
    /// Every event a watch can ask for.
    pub(crate) const ALL_EVENTS: u32 = 0xfff;
}
use inm::*;

/// Most events queued per instance (Linux's default `max_queued_events`).
const MAX_QUEUED: usize = 16384;
/// Most watches per instance (Linux's default `max_user_watches` is far larger; this bounds
/// the kernel heap one instance takes).
const MAX_WATCHES: usize = 8192;
/// Size of `struct inotify_event` without its name.
const EVENT_HEADER: usize = 16;
/// Most remembered (directory, name) pairs of open files.
const MAX_NAMES: usize = 1024;

/// One watch.
struct Watch {
    wd: i32,
    ino: Ino,
    mask: u32,
}

/// One queued event.
#[derive(Clone, PartialEq, Eq)]
struct Event {
    wd: i32,
    mask: u32,
    cookie: u32,
    name: Vec<u8>,
}

impl Event {
    /// Its size as a record: the name is NUL-padded to a multiple of the header size.
    fn size(&self) -> usize {
        EVENT_HEADER + padded_len(self.name.len())
    }

    /// Appends its record to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let len = padded_len(self.name.len());
        out.extend_from_slice(&self.wd.to_le_bytes());
        out.extend_from_slice(&self.mask.to_le_bytes());
        out.extend_from_slice(&self.cookie.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&self.name);
        out.resize(out.len() + len - self.name.len(), 0);
    }
}

/// The `len` field for a name of `n` bytes: with its NUL, rounded up to 16 (0 for none).
const fn padded_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 1).div_ceil(EVENT_HEADER) * EVENT_HEADER
    }
}

/// An instance's watches and queue.
struct State {
    watches: Vec<Watch>,
    next_wd: i32,
    queue: VecDeque<Event>,
    bytes: usize,
}

impl State {
    /// Queues `e`, merged into the last event if identical; `IN_Q_OVERFLOW` once full.
    fn push(&mut self, e: Event) {
        if self.queue.back() == Some(&e) {
            return;
        }
        // A full queue, or a kernel heap that cannot afford the event, overflows.
        let full = self.queue.len() >= MAX_QUEUED
            || crate::linux::alloc_guard::reserve(e.size() + 32).is_err();
        let e = if full {
            let overflow = Event {
                wd: -1,
                mask: IN_Q_OVERFLOW,
                cookie: 0,
                name: Vec::new(),
            };
            if self.queue.back() == Some(&overflow) {
                return;
            }
            overflow
        } else {
            e
        };
        if self.queue.try_reserve(1).is_err() {
            return;
        }
        self.bytes += e.size();
        self.queue.push_back(e);
    }

    /// Delivers an event with `mask` (and `cookie`, `name`) to the watches of `ino`:
    /// returns true if one was queued. A one-shot watch goes away after it (`IN_IGNORED`).
    fn deliver(&mut self, ino: Ino, mask: u32, cookie: u32, name: &[u8]) -> bool {
        let mut queued = false;
        let mut i = 0;
        while i < self.watches.len() {
            let w = &self.watches[i];
            if w.ino != ino || w.mask & mask & ALL_EVENTS == 0 {
                i += 1;
                continue;
            }
            let (wd, oneshot) = (w.wd, w.mask & IN_ONESHOT != 0);
            self.push(Event {
                wd,
                mask,
                cookie,
                name: name.to_vec(),
            });
            queued = true;
            if oneshot {
                self.watches.remove(i);
                self.push(ignored(wd));
            } else {
                i += 1;
            }
        }
        queued
    }

    /// Drops every watch on `ino` (deleted), each with `IN_IGNORED`.
    fn forget(&mut self, ino: Ino) -> bool {
        let mut any = false;
        while let Some(i) = self.watches.iter().position(|w| w.ino == ino) {
            let w = self.watches.remove(i);
            self.push(ignored(w.wd));
            any = true;
        }
        any
    }
}

/// The `IN_IGNORED` event of watch `wd`.
fn ignored(wd: i32) -> Event {
    Event {
        wd,
        mask: IN_IGNORED,
        cookie: 0,
        name: Vec::new(),
    }
}

/// One inotify instance.
pub(crate) struct Inotify {
    state: IrqLock<State>,
    wq: WaitQueue,
    ino: u64,
    /// Events queued (wake-ups, for edge-triggered epoll).
    queued: AtomicU64,
}

impl Inotify {
    /// Wakes readers and pollers after events were queued.
    fn woke(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.wq.wake_all();
        poll::notify();
    }
}

impl FileObject for Inotify {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        loop {
            {
                let mut s = self.state.lock();
                if let Some(first) = s.queue.front() {
                    if first.size() > buf.len() {
                        return Err(Errno::EINVAL);
                    }
                    let mut out = Vec::new();
                    while let Some(e) = s.queue.front() {
                        if out.len() + e.size() > buf.len() {
                            break;
                        }
                        e.encode(&mut out);
                        let n = e.size();
                        s.bytes -= n;
                        s.queue.pop_front();
                    }
                    buf[..out.len()].copy_from_slice(&out);
                    return Ok(out.len());
                }
            }
            if f.nonblock() {
                return Err(Errno::EAGAIN);
            }
            if signal::pending() {
                return Err(Errno::EINTR);
            }
            self.wq
                .wait_until(|| !self.state.lock().queue.is_empty() || signal::pending());
        }
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        if self.state.lock().queue.is_empty() {
            0
        } else {
            ev::POLLIN | ev::POLLRDNORM
        }
    }

    fn wakeups(&self, _events: u32) -> Option<u64> {
        Some(self.queued.load(Ordering::Relaxed))
    }

    fn available(&self) -> Option<usize> {
        Some(self.state.lock().bytes)
    }

    fn stat(&self) -> KStat {
        anon_stat(0o600, self.ino)
    }

    fn link_name(&self) -> Vec<u8> {
        b"anon_inode:inotify".to_vec()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An instance as a kernel hand-over carries it (`linux/handover/events.rs`, record
/// sections 33 and 34).
pub(crate) struct Carried {
    /// The watch descriptor the next new watch gets.
    pub(crate) next_wd: i32,
    /// Every watch: (watch descriptor, inode, mask), in watch descriptor order.
    pub(crate) watches: Vec<(i32, Ino, u32)>,
    /// The queued events, oldest first, as `read` would return them.
    pub(crate) events: Vec<u8>,
}

impl Inotify {
    /// Its state as a hand-over carries it.
    pub(crate) fn carried(&self) -> Carried {
        let s = self.state.lock();
        let mut watches: Vec<(i32, Ino, u32)> =
            s.watches.iter().map(|w| (w.wd, w.ino, w.mask)).collect();
        watches.sort_unstable_by_key(|w| w.0);
        let mut events = Vec::new();
        for e in &s.queue {
            e.encode(&mut events);
        }
        Carried {
            next_wd: s.next_wd,
            watches,
            events,
        }
    }
}

/// Decodes a carried queue (checked by `pvmux_hypercalls::handover::check_inotify_events`):
/// its events, names without their padding; `None` if it is not well formed.
fn decode_events(mut bytes: &[u8]) -> Option<VecDeque<Event>> {
    pvmux_hypercalls::handover::check_inotify_events(bytes).ok()?;
    let mut q = VecDeque::new();
    while bytes.len() >= EVENT_HEADER {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (wd, mask, cookie, len) = (word(0) as i32, word(4), word(8), word(12) as usize);
        let field = bytes.get(EVENT_HEADER..EVENT_HEADER + len)?;
        let name = &field[..field.iter().position(|&b| b == 0).unwrap_or(len)];
        q.try_reserve(1).ok()?;
        q.push_back(Event {
            wd,
            mask,
            cookie,
            name: name.to_vec(),
        });
        bytes = &bytes[EVENT_HEADER + len..];
    }
    Some(q)
}

/// An adopted instance (`linux/handover/events.rs`): `c`'s watches (their inodes checked
/// by the adopter), next watch descriptor and queue, opened with `status_flags`; `None` if
/// the queue is not well formed or the watches are too many.
pub(crate) fn adopted(c: Carried, status_flags: u32) -> Option<Arc<OpenFile>> {
    let queue = decode_events(&c.events)?;
    if c.next_wd < 1 || c.watches.len() > MAX_WATCHES {
        return None;
    }
    let bytes = queue.iter().map(Event::size).sum();
    let any_watch = !c.watches.is_empty();
    let obj = Arc::new(Inotify {
        state: IrqLock::new(State {
            watches: c
                .watches
                .into_iter()
                .map(|(wd, ino, mask)| Watch { wd, ino, mask })
                .collect(),
            next_wd: c.next_wd,
            queue,
            bytes,
        }),
        wq: WaitQueue::new(),
        ino: anon_ino(),
        queued: AtomicU64::new(0),
    });
    {
        let mut all = INSTANCES.lock();
        all.try_reserve(1).ok()?;
        all.push(Arc::downgrade(&obj));
    }
    if any_watch {
        ACTIVE.store(true, Ordering::Relaxed);
    }
    Some(open_object(obj, status_flags))
}

/// The next rename cookie (what a hand-over carries).
pub(crate) fn next_cookie() -> u32 {
    COOKIE.load(Ordering::Relaxed)
}

/// An adopter: renames from now on take cookies from `next` up (unless this kernel's are
/// already past it), so none pairs with a carried event's.
pub(crate) fn adopt_cookie(next: u32) {
    COOKIE.fetch_max(next, Ordering::Relaxed);
}

/// An adopter, once the filesystem and every descriptor exist: file `ino`, open by a
/// descriptor, is named `name` in directory `parent`, so events on it by descriptor reach
/// that directory's watches too.
pub(crate) fn adopt_name(ino: Ino, parent: Ino, name: &[u8]) {
    if active() {
        remember(ino, parent, name);
    }
}

/// Every instance (pruned as they close).
static INSTANCES: IrqLock<Vec<Weak<Inotify>>> = IrqLock::new(Vec::new());
/// True once a watch was added: until then every hook returns at once.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Rename cookies.
static COOKIE: AtomicU32 = AtomicU32::new(1);
/// Where files opened while watches exist live: inode → (directory, name).
static NAMES: IrqLock<BTreeMap<Ino, (Ino, Vec<u8>)>> = IrqLock::new(BTreeMap::new());

/// The live instances.
fn instances() -> Vec<Arc<Inotify>> {
    let mut all = INSTANCES.lock();
    all.retain(|w| w.strong_count() > 0);
    all.iter().filter_map(Weak::upgrade).collect()
}

/// Delivers `(mask, cookie, name)` to the watches of `ino` in every instance.
fn emit(ino: Ino, mask: u32, cookie: u32, name: &[u8]) {
    for i in instances() {
        let queued = i.state.lock().deliver(ino, mask, cookie, name);
        if queued {
            i.woke();
        }
    }
}

/// `ino` is gone: `IN_DELETE_SELF` (without `IN_ISDIR`, as Linux reports it) to its
/// watches, then `IN_IGNORED` and the watches go away.
fn deleted_self(ino: Ino) {
    emit(ino, IN_DELETE_SELF, 0, &[]);
    for i in instances() {
        let any = i.state.lock().forget(ino);
        if any {
            i.woke();
        }
    }
    NAMES.lock().remove(&ino);
}

/// `IN_ISDIR` if `dir`.
const fn isdir(dir: bool) -> u32 {
    if dir {
        IN_ISDIR
    } else {
        0
    }
}

/// `inotify_init1(flags)` (`inotify_init` is flags 0).
pub(crate) fn sys_inotify_init1(flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !(fl::O_NONBLOCK | fl::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let obj = Arc::new(Inotify {
        state: IrqLock::new(State {
            watches: Vec::new(),
            next_wd: 1,
            queue: VecDeque::new(),
            bytes: 0,
        }),
        wq: WaitQueue::new(),
        ino: anon_ino(),
        queued: AtomicU64::new(0),
    });
    {
        let mut all = INSTANCES.lock();
        all.retain(|w| w.strong_count() > 0);
        all.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        all.push(Arc::downgrade(&obj));
    }
    let file = open_object(obj, oflag::O_RDONLY | (flags & fl::O_NONBLOCK));
    super::install(file, flags & fl::O_CLOEXEC != 0)
}

/// `inotify_add_watch(fd, path, mask)`.
pub(crate) fn sys_inotify_add_watch(fd: u64, path_va: u64, mask: u64) -> SysResult {
    let mask = mask as u32;
    if mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0 {
        return Err(Errno::EINVAL);
    }
    if mask & ALL_EVENTS == 0 {
        return Err(Errno::EINVAL);
    }
    let f = super::fd_file(fd_arg(fd))?;
    let inotify = downcast::<Inotify>(&f).ok_or(Errno::EINVAL)?;
    let path = read_path(path_va)?;
    let base = super::cwd();
    let follow = mask & IN_DONT_FOLLOW == 0;
    let (ino, dir) = fs::with(|fs| {
        let ino = fs.lookup(base, &path, follow)?;
        let st = fs.stat_ino(ino)?;
        // Watching needs read permission on the file (Linux's `inotify_find_inode`).
        fs.may(ino, crate::fs::perm::access::R)?;
        Ok::<_, Errno>((ino, st.file_type() == FileType::Directory))
    })?;
    if mask & IN_ONLYDIR != 0 && !dir {
        return Err(Errno::ENOTDIR);
    }
    let keep = mask & (ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK);
    let mut s = inotify.state.lock();
    if let Some(w) = s.watches.iter_mut().find(|w| w.ino == ino) {
        if mask & IN_MASK_CREATE != 0 {
            return Err(Errno::EEXIST);
        }
        w.mask = if mask & IN_MASK_ADD != 0 {
            w.mask | keep
        } else {
            keep
        };
        return Ok(w.wd as u64);
    }
    if s.watches.len() >= MAX_WATCHES {
        return Err(Errno::ENOSPC);
    }
    s.watches.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
    let wd = s.next_wd;
    s.next_wd = s.next_wd.checked_add(1).unwrap_or(1);
    s.watches.push(Watch {
        wd,
        ino,
        mask: keep,
    });
    ACTIVE.store(true, Ordering::Relaxed);
    Ok(wd as u64)
}

/// `inotify_rm_watch(fd, wd)`: `EINVAL` for an unknown watch; queues `IN_IGNORED`.
pub(crate) fn sys_inotify_rm_watch(fd: u64, wd: u64) -> SysResult {
    let f = super::fd_file(fd_arg(fd))?;
    let inotify = downcast::<Inotify>(&f).ok_or(Errno::EINVAL)?;
    let wd = wd as i32;
    {
        let mut s = inotify.state.lock();
        let i = s
            .watches
            .iter()
            .position(|w| w.wd == wd)
            .ok_or(Errno::EINVAL)?;
        s.watches.remove(i);
        s.push(ignored(wd));
    }
    inotify.woke();
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// Hooks for the file system calls.

/// True once watches may exist (the hooks' fast path).
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// A name a path call acts on: its directory, the last component, and the inode it names
/// now (if any).
pub(crate) struct Target {
    parent: Ino,
    name: Vec<u8>,
    ino: Option<Ino>,
    dir: bool,
}

/// The [`Target`] of `path` from directory `base` (`None` when no watch exists, or for
/// `.`, `..` and `/`). Call outside the filesystem lock.
pub(crate) fn target(base: Ino, path: &[u8]) -> Option<Target> {
    if !active() {
        return None;
    }
    let mut t = path;
    while t.len() > 1 && t.ends_with(b"/") {
        t = &t[..t.len() - 1];
    }
    let (dir, name) = match t.iter().rposition(|&b| b == b'/') {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (&t[..0], t),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    let absolute = t.first() == Some(&b'/');
    fs::with(|fs| {
        let parent = if dir.is_empty() {
            if absolute {
                ROOT_INO
            } else {
                base
            }
        } else {
            fs.lookup(base, dir, true).ok()?
        };
        let ino = fs.lookup(parent, name, false).ok();
        let is_dir = ino.is_some_and(|i| {
            fs.stat_ino(i)
                .is_ok_and(|s| s.file_type() == FileType::Directory)
        });
        Some(Target {
            parent,
            name: name.to_vec(),
            ino,
            dir: is_dir,
        })
    })
}

/// Remembers that `ino` is named `name` in `parent` (events on it by descriptor then reach
/// the directory's watches too).
fn remember(ino: Ino, parent: Ino, name: &[u8]) {
    if crate::linux::alloc_guard::reserve(name.len() + 64).is_err() {
        return;
    }
    let mut m = NAMES.lock();
    if m.len() >= MAX_NAMES && !m.contains_key(&ino) {
        if let Some(&k) = m.keys().next() {
            m.remove(&k);
        }
    }
    m.insert(ino, (parent, name.to_vec()));
}

/// A file was opened through path `t` (taken before the open: `t.ino` is `None` if the open
/// created it) as inode `ino`: `IN_CREATE` for a new one, then `IN_OPEN`, then `IN_MODIFY`
/// for an existing one `truncated` (`O_TRUNC`; Linux truncates after opening).
pub(crate) fn opened(t: Option<Target>, ino: Ino, dir: bool, truncated: bool) {
    let Some(t) = t else {
        return;
    };
    remember(ino, t.parent, &t.name);
    let existed = t.ino.is_some();
    if !existed {
        emit(t.parent, IN_CREATE, 0, &t.name);
    }
    on_inode(ino, IN_OPEN, dir);
    if existed && truncated && !dir {
        on_inode(ino, IN_MODIFY, false);
    }
}

/// Path `t` was created (`mkdir`, `mknod`, `symlink`, `link`; `dir` for a directory).
pub(crate) fn created(t: Option<Target>, dir: bool) {
    if let Some(t) = t {
        emit(t.parent, IN_CREATE | isdir(dir), 0, &t.name);
    }
}

/// The name `t` (taken before the call) was removed (`unlink`, `rmdir`): `IN_DELETE` to its
/// directory; the inode's own watches see `IN_ATTRIB`, and `IN_DELETE_SELF` and
/// `IN_IGNORED` once it has no name left.
pub(crate) fn removed(t: Option<Target>) {
    let Some(t) = t else {
        return;
    };
    let Some(ino) = t.ino else {
        return;
    };
    let gone = t.dir || fs::with(|fs| fs.stat_ino(ino)).map_or(true, |s| s.nlink == 0);
    if !t.dir {
        emit(ino, IN_ATTRIB, 0, &[]);
    }
    if gone {
        deleted_self(ino);
    }
    emit(t.parent, IN_DELETE | isdir(t.dir), 0, &t.name);
}

/// `old` was renamed to `new` (both taken before the call): `IN_MOVED_FROM` and
/// `IN_MOVED_TO` with one cookie, `IN_MOVE_SELF` to the inode; a replaced file that lost its
/// last name is deleted.
pub(crate) fn renamed(old: Option<Target>, new: Option<Target>) {
    let (Some(old), Some(new)) = (old, new) else {
        return;
    };
    let Some(ino) = old.ino else {
        return;
    };
    let cookie = COOKIE.fetch_add(1, Ordering::Relaxed);
    let d = isdir(old.dir);
    emit(old.parent, IN_MOVED_FROM | d, cookie, &old.name);
    emit(new.parent, IN_MOVED_TO | d, cookie, &new.name);
    emit(ino, IN_MOVE_SELF, 0, &[]);
    remember(ino, new.parent, &new.name);
    if let Some(replaced) = new.ino.filter(|&r| r != ino) {
        let gone = fs::with(|fs| fs.stat_ino(replaced)).map_or(true, |s| s.nlink == 0);
        if gone {
            deleted_self(replaced);
        }
    }
}

/// Event `mask` on inode `ino` (a directory if `dir`), acted on by descriptor: to its own
/// watches and, with its name, to its directory's.
pub(crate) fn on_inode(ino: Ino, mask: u32, dir: bool) {
    if !active() {
        return;
    }
    let m = mask | isdir(dir);
    // The directory's watches first, as Linux's `fsnotify_handle_event`.
    let place = NAMES.lock().get(&ino).cloned();
    if let Some((parent, name)) = place {
        emit(parent, m, 0, &name);
    }
    emit(ino, m, 0, &[]);
}

/// Event `mask` on what path `t` names (`chmod`, `truncate`, `utimensat`, ... by path): to
/// its own watches and its directory's.
pub(crate) fn on_path(t: Option<Target>, mask: u32) {
    let Some(t) = t else {
        return;
    };
    let m = mask | isdir(t.dir);
    emit(t.parent, m, 0, &t.name);
    if let Some(ino) = t.ino {
        emit(ino, m, 0, &[]);
    }
}

/// An open file of `ino` was closed (its last descriptor): `IN_CLOSE_WRITE` if it was open
/// for writing, else `IN_CLOSE_NOWRITE`.
pub(crate) fn closed(ino: Ino, writable: bool, dir: bool) {
    if !active() {
        return;
    }
    on_inode(
        ino,
        if writable {
            IN_CLOSE_WRITE
        } else {
            IN_CLOSE_NOWRITE
        },
        dir,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_linux() {
        assert_eq!(EVENT_HEADER, core::mem::size_of::<libc::inotify_event>());
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 16);
        assert_eq!(padded_len(15), 16);
        assert_eq!(padded_len(16), 32);
        let e = Event {
            wd: 3,
            mask: IN_CREATE,
            cookie: 0,
            name: b"abc".to_vec(),
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(out.len(), e.size());
        assert_eq!(&out[..4], &3i32.to_le_bytes());
        assert_eq!(&out[12..16], &16u32.to_le_bytes());
        assert_eq!(&out[16..20], b"abc\0");
        assert_eq!(IN_MOVED_TO, libc::IN_MOVED_TO);
        assert_eq!(IN_ONESHOT, libc::IN_ONESHOT);
        assert_eq!(IN_MASK_ADD, libc::IN_MASK_ADD);
        assert_eq!(ALL_EVENTS, libc::IN_ALL_EVENTS);
    }

    #[test]
    fn a_carried_queue_decodes_to_the_same_events() {
        let events = [
            Event {
                wd: 1,
                mask: IN_MOVED_FROM,
                cookie: 9,
                name: b"a-name-of-sixteen".to_vec(),
            },
            Event {
                wd: 1,
                mask: IN_MOVED_TO | IN_ISDIR,
                cookie: 9,
                name: b"b".to_vec(),
            },
            ignored(2),
        ];
        let mut bytes = Vec::new();
        for e in &events {
            e.encode(&mut bytes);
        }
        let q = decode_events(&bytes).expect("well formed");
        assert!(
            q.iter().eq(events.iter()),
            "the same events, names unpadded"
        );
        assert!(
            decode_events(&bytes[..bytes.len() - 1]).is_none(),
            "cut short"
        );
        let mut bad = bytes.clone();
        bad[16] = 0; // the first name starts with NUL
        assert!(decode_events(&bad).is_none());
        assert!(decode_events(&[]).is_some_and(|q| q.is_empty()));
    }

    #[test]
    fn queue_merges_repeats_and_oneshot_watches_go_away() {
        let mut s = State {
            watches: alloc::vec![
                Watch {
                    wd: 1,
                    ino: 10,
                    mask: IN_MODIFY,
                },
                Watch {
                    wd: 2,
                    ino: 11,
                    mask: IN_CREATE | IN_ONESHOT,
                },
            ],
            next_wd: 3,
            queue: VecDeque::new(),
            bytes: 0,
        };
        assert!(s.deliver(10, IN_MODIFY, 0, b""));
        assert!(s.deliver(10, IN_MODIFY, 0, b""));
        assert_eq!(s.queue.len(), 1, "a repeat merges into the last event");
        assert!(!s.deliver(10, IN_CREATE, 0, b"x"), "not asked for");
        assert!(s.deliver(11, IN_CREATE, 0, b"x"));
        assert_eq!(s.watches.len(), 1, "one-shot watch removed");
        assert_eq!(s.queue.back().map(|e| e.mask), Some(IN_IGNORED));
        assert_eq!(s.bytes, 16 + 32 + 16);
        assert!(s.forget(10));
        assert!(s.watches.is_empty());
    }
}
