//! Channels between kernels (`pvmux run --channel NAME`; docs/MULTIKERNEL.md "Channels
//! between kernels", docs/ABI.md §channels, [`pvmux_hypercalls::channel`]).
//!
//! A channel is a file `DIR/NAME` (the state root's `.channels/` directory) of
//! [`OBJECT_SIZE`] bytes: a [`ChannelHeader`] and one byte ring per direction. The host
//! process of each of the two tenants maps it `MAP_SHARED`; the sandboxes never do (their
//! seccomp filters are unchanged: they map nothing but their own memfd). A guest moves
//! bytes with `ChannelSend`/`ChannelRecv`, which this host process copies between the
//! guest's memory and the ring, so each side maps only the channel, never the other
//! tenant's memory.
//!
//! **Ends.** Exactly two tenants: each holds an open-file-description lock (`F_OFD_SETLK`)
//! on byte 0 or byte 1 of the file for as long as its end is open, so a lock that is free
//! again means that end's process is gone (even after `kill -9`). Byte 2 is the join lock,
//! held while a tenant picks its end: the first finds no live end and (re)initialises the
//! file, the second takes the other end, a third finds both taken and is refused. An end is
//! used once (`EndWords::joined`): a tenant cannot take over the end of one that left.
//! The last end to leave removes the file.
//!
//! **Trust.** The other end is another process (normally pvmux, but anything that can
//! write the file): every word read from the object is untrusted. Each side keeps its own
//! position (the ring's `tail` for the writer, `head` for the reader) in private memory and
//! reads only the other's from the object, checking `0 <= tail - head <= RING_SIZE`; ring
//! offsets are `position % RING_SIZE` and lengths are bounded by the private position and
//! the ring size, so no value in the object can make a copy leave the ring. An inconsistent
//! value makes the channel *broken* ([`RET_BROKEN`], `EIO` in the guest): nothing outside the
//! channel's data is affected.
//!
//! **Waking.** A side that finds the ring empty (or full, or polls without result) sets its
//! `want` word; the other side, after moving its position, rings the waiting side's `bell`
//! (add 1, `FUTEX_WAKE`). Each end has a thread that waits on its own bell and raises
//! `pending::CHANNEL` on the tenant's vCPU 0; it also notices, every
//! [`LIVENESS_INTERVAL`], a peer whose lock is free (gone without closing).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pvmux_hypercalls::channel::{
    flag, name_ok, op, poll, ring_offset, ChannelHeader, EndWords, RingWords, CHANNEL_MAGIC,
    CHANNEL_VERSION, IO_MAX, MAX_CHANNELS, NAME_MAX, OBJECT_SIZE, RET_BROKEN, RET_CLOSED,
    RING_SIZE,
};
use pvmux_hypercalls::{HcError, Hypercall};

use crate::GuestMemory;

/// How often an end's thread checks that its peer's process is still there.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);

/// Why a channel cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Not a valid channel name.
    #[error(
        "channel name {0:?} is not valid: 1 to {NAME_MAX} letters, digits, '_', '.' or '-', \
         starting with a letter or digit"
    )]
    BadName(String),
    /// Both ends are taken (or were: an end is used once).
    #[error(
        "channel {0:?} already connects two tenants (a channel has exactly two ends; it is \
         free again once both have ended)"
    )]
    Full(String),
    /// The same name twice for one tenant.
    #[error("channel {0:?} is given twice")]
    Duplicate(String),
    /// More than [`MAX_CHANNELS`].
    #[error("at most {MAX_CHANNELS} channels per tenant")]
    TooMany,
    /// The file is not a channel of this version.
    #[error("{0} is not a pvmux channel of this version (remove it if no tenant uses it)")]
    Foreign(PathBuf),
    /// A host system call failed.
    #[error("channel {name:?}: {what}: {source}")]
    Io {
        /// The channel.
        name: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Checks a channel name ([`name_ok`]).
pub fn check_name(name: &str) -> Result<(), ChannelError> {
    if name_ok(name.as_bytes()) {
        Ok(())
    } else {
        Err(ChannelError::BadName(name.to_owned()))
    }
}

/// Opens the channels `names` (in index order) in directory `dir`, created if missing: the
/// tenant's ends. A bad, repeated or full channel is an error and nothing stays open.
pub fn join_all(dir: &Path, names: &[String]) -> Result<Vec<Arc<ChannelEnd>>, ChannelError> {
    if names.len() > MAX_CHANNELS as usize {
        return Err(ChannelError::TooMany);
    }
    for (i, n) in names.iter().enumerate() {
        check_name(n)?;
        if names[..i].contains(n) {
            return Err(ChannelError::Duplicate(n.clone()));
        }
    }
    names
        .iter()
        .map(|n| ChannelEnd::join(dir, n).map(Arc::new))
        .collect()
}

/// The shared mapping of a channel file.
struct Mapping {
    ptr: NonNull<u8>,
}

// SAFETY: plain shared memory; every access goes through atomics or raw-pointer copies.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of a file we hold open, at an address the kernel
        // picks; it aliases no Rust object.
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                OBJECT_SIZE as usize,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                file,
                0,
            )
        }?;
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or(io::ErrorKind::Other)?;
        Ok(Self { ptr })
    }

    /// The 32-bit word at byte `off` of the header (4-byte aligned, inside the header).
    fn word32(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= size_of::<ChannelHeader>());
        // SAFETY: in bounds and aligned (checked); atomics are the only access to header
        // words, by both processes.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The 64-bit word at byte `off` of the header.
    fn word64(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= size_of::<ChannelHeader>());
        // SAFETY: as `word32`.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// Copies `src` into ring `d` at position `pos` (wrapping).
    fn ring_write(&self, d: usize, pos: u64, src: &[u8]) {
        let n = src.len().min(RING_SIZE as usize);
        let at = (pos % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - at);
        let base = ring_offset(d) as usize;
        // SAFETY: both ranges are inside ring `d` (at < RING_SIZE, first <= RING_SIZE - at,
        // n - first <= at), which lies inside the OBJECT_SIZE mapping; `src` is private.
        unsafe {
            let ring = self.ptr.as_ptr().add(base);
            std::ptr::copy_nonoverlapping(src.as_ptr(), ring.add(at), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), ring, n - first);
        }
    }

    /// Copies from ring `d` at position `pos` into `dst` (wrapping).
    fn ring_read(&self, d: usize, pos: u64, dst: &mut [u8]) {
        let n = dst.len().min(RING_SIZE as usize);
        let at = (pos % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - at);
        let base = ring_offset(d) as usize;
        // SAFETY: as `ring_write`; `dst` is private memory.
        unsafe {
            let ring = self.ptr.as_ptr().add(base);
            std::ptr::copy_nonoverlapping(ring.add(at), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(ring, dst.as_mut_ptr().add(first), n - first);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping of OBJECT_SIZE bytes; no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), OBJECT_SIZE as usize) };
    }
}

use std::mem::{offset_of, size_of};

/// Header offset of end `e`'s word at `field` (an offset in [`EndWords`]).
const fn end_off(e: usize, field: usize) -> usize {
    offset_of!(ChannelHeader, ends) + e * size_of::<EndWords>() + field
}

/// Header offset of ring `d`'s word at `field` (an offset in [`RingWords`]).
const fn ring_word_off(d: usize, field: usize) -> usize {
    offset_of!(ChannelHeader, rings) + d * size_of::<RingWords>() + field
}

const JOINED: usize = offset_of!(EndWords, joined);
const CLOSED_TX: usize = offset_of!(EndWords, closed_tx);
const CLOSED_RX: usize = offset_of!(EndWords, closed_rx);
const BELL: usize = offset_of!(EndWords, bell);
const WANT: usize = offset_of!(EndWords, want);
const HEAD: usize = offset_of!(RingWords, head);
const TAIL: usize = offset_of!(RingWords, tail);

/// Bytes queued from `head` to `tail` if that is a valid ring state (at most a ring).
pub fn queued(head: u64, tail: u64) -> Option<u64> {
    let n = tail.wrapping_sub(head);
    (n <= RING_SIZE).then_some(n)
}

/// What this process knows of one end, shared with its thread.
struct Inner {
    name: String,
    path: PathBuf,
    file: File,
    map: Mapping,
    /// 0 or 1.
    me: usize,
    /// Our writing position in ring `me` (private: the object's copy is only published).
    tail: Mutex<u64>,
    /// Our reading position in ring `1 - me`.
    head: Mutex<u64>,
    shut_wr: AtomicBool,
    shut_rd: AtomicBool,
    /// The peer's process is gone (its lock is free) without closing.
    peer_gone: AtomicBool,
    /// The object's indices were inconsistent: the channel is unusable.
    broken: AtomicBool,
    stop: AtomicBool,
    /// The end was given up (its lock released, see [`Inner::leave`]).
    left: AtomicBool,
    /// Raises `pending::CHANNEL` on the tenant (set when the tenant starts).
    raise: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Events raised on the tenant, and bells that found no tenant to raise them on
    /// (for [`ChannelEnd::describe`]).
    raised: AtomicU64,
    unraised: AtomicU64,
}

/// One tenant's end of a channel (see the module documentation). Dropping it closes both
/// directions, wakes the peer, and removes the file when the peer is gone too.
pub struct ChannelEnd {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ChannelEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelEnd")
            .field("name", &self.inner.name)
            .field("end", &self.inner.me)
            .finish_non_exhaustive()
    }
}

/// `fcntl` open-file-description lock operations on byte `byte` of `file`.
fn ofd_lock(file: &File, byte: i64, cmd: libc::c_int, ty: libc::c_int) -> io::Result<libc::flock> {
    // SAFETY: an all-zero flock is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: fcntl on our own descriptor with a valid flock (l_pid 0, as OFD locks need).
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &raw mut fl) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl)
    }
}

/// Whether another open file description holds a lock on `byte` of `file`.
fn locked_elsewhere(file: &File, byte: i64) -> io::Result<bool> {
    let fl = ofd_lock(file, byte, libc::F_OFD_GETLK, libc::F_WRLCK)?;
    Ok(i32::from(fl.l_type) != libc::F_UNLCK)
}

/// The join lock (byte 2), held while alive.
struct JoinLock<'a>(&'a File);

impl<'a> JoinLock<'a> {
    fn take(file: &'a File) -> io::Result<Self> {
        loop {
            match ofd_lock(file, 2, libc::F_OFD_SETLKW, libc::F_WRLCK) {
                Ok(_) => return Ok(Self(file)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for JoinLock<'_> {
    fn drop(&mut self) {
        let _ = ofd_lock(self.0, 2, libc::F_OFD_SETLK, libc::F_UNLCK);
    }
}

/// `FUTEX_WAKE` of every waiter on `word` (shared: other processes may wait on it).
fn futex_wake(word: &AtomicU32) {
    // SAFETY: a futex call on a valid, aligned word of a shared mapping.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        );
    }
}

/// `FUTEX_WAIT` on `word` while it holds `val`, at most `timeout`.
fn futex_wait(word: &AtomicU32, val: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: as `futex_wake`; `ts` lives across the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            &raw const ts,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

impl Inner {
    fn io(&self, what: &'static str) -> impl FnOnce(io::Error) -> ChannelError + '_ {
        move |source| ChannelError::Io {
            name: self.name.clone(),
            what,
            source,
        }
    }

    fn peer(&self) -> usize {
        1 - self.me
    }

    fn end_word(&self, e: usize, field: usize) -> &AtomicU32 {
        self.map.word32(end_off(e, field))
    }

    fn ring_word(&self, d: usize, field: usize) -> &AtomicU64 {
        self.map.word64(ring_word_off(d, field))
    }

    /// Rings `e`'s bell (it may be waiting, or `force`).
    fn ring_bell(&self, e: usize, force: bool) {
        fence(Ordering::SeqCst);
        if self.end_word(e, WANT).swap(0, Ordering::SeqCst) != 0 || force {
            self.end_word(e, BELL).fetch_add(1, Ordering::SeqCst);
            futex_wake(self.end_word(e, BELL));
        }
    }

    /// Says we wait (the peer rings our bell after its next move).
    fn want(&self) {
        self.end_word(self.me, WANT).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    fn mark_broken(&self) -> i64 {
        if !self.broken.swap(true, Ordering::SeqCst) {
            tracing::warn!(channel = %self.name, "channel indices are inconsistent: channel broken");
        }
        RET_BROKEN
    }

    /// The peer ended its stream: it shut writing, or its process is gone.
    fn peer_ended(&self) -> bool {
        self.end_word(self.peer(), CLOSED_TX)
            .load(Ordering::Acquire)
            != 0
            || self.peer_gone.load(Ordering::Acquire)
    }

    /// Sends fail: we shut writing, the peer reads no more, or it is gone.
    fn send_closed(&self) -> bool {
        self.shut_wr.load(Ordering::Acquire)
            || self
                .end_word(self.peer(), CLOSED_RX)
                .load(Ordering::Acquire)
                != 0
            || self.peer_gone.load(Ordering::Acquire)
    }

    /// Free room in our ring with our private `tail`, or `None` (broken).
    fn room(&self, tail: u64) -> Option<u64> {
        let head = self.ring_word(self.me, HEAD).load(Ordering::Acquire);
        queued(head, tail).map(|q| RING_SIZE - q)
    }

    /// Bytes queued towards us with our private `head`, or `None` (broken).
    fn avail(&self, head: u64) -> Option<u64> {
        let tail = self.ring_word(self.peer(), TAIL).load(Ordering::Acquire);
        queued(head, tail)
    }

    /// Sends up to `max` bytes, which `fill` provides (it reads them from the guest).
    /// With `!wake`, a full ring arms no wake-up (a guest's poll, [`flag::NO_WAKE`]).
    fn send(
        &self,
        max: u64,
        wake: bool,
        fill: impl FnOnce(&mut [u8]) -> Result<(), HcError>,
    ) -> i64 {
        if self.broken.load(Ordering::Acquire) {
            return RET_BROKEN;
        }
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if self.send_closed() {
            return RET_CLOSED;
        }
        let mut room = match self.room(*tail) {
            Some(r) => r,
            None => return self.mark_broken(),
        };
        if room == 0 {
            if !wake {
                return if self.send_closed() {
                    RET_CLOSED
                } else {
                    HcError::Busy.to_ret()
                };
            }
            self.want();
            room = match self.room(*tail) {
                Some(r) => r,
                None => return self.mark_broken(),
            };
            if room == 0 {
                return if self.send_closed() {
                    RET_CLOSED
                } else {
                    HcError::Busy.to_ret()
                };
            }
        }
        let n = max.min(room).min(IO_MAX) as usize;
        let r = BOUNCE.with(|b| {
            let mut b = b.borrow_mut();
            fill(&mut b[..n])?;
            self.map.ring_write(self.me, *tail, &b[..n]);
            Ok::<(), HcError>(())
        });
        if let Err(e) = r {
            return e.to_ret();
        }
        *tail = tail.wrapping_add(n as u64);
        self.ring_word(self.me, TAIL)
            .store(*tail, Ordering::Release);
        drop(tail);
        self.ring_bell(self.peer(), false);
        n as i64
    }

    /// Receives up to `max` bytes, handed to `take` (it writes them to the guest, whose
    /// range was checked before: it cannot fail after bytes left the ring).
    /// With `!wake`, an empty ring arms no wake-up (a guest's poll, [`flag::NO_WAKE`]).
    fn recv(&self, max: u64, wake: bool, take: impl FnOnce(&[u8])) -> i64 {
        if self.broken.load(Ordering::Acquire) {
            return RET_BROKEN;
        }
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        if self.shut_rd.load(Ordering::Acquire) {
            return 0;
        }
        // The peer publishes its tail before its close: look at the close first.
        let mut ended = self.peer_ended();
        let mut avail = match self.avail(*head) {
            Some(a) => a,
            None => return self.mark_broken(),
        };
        if avail == 0 {
            if ended {
                return 0;
            }
            if !wake {
                return HcError::Busy.to_ret();
            }
            self.want();
            ended = self.peer_ended();
            avail = match self.avail(*head) {
                Some(a) => a,
                None => return self.mark_broken(),
            };
            if avail == 0 {
                return if ended { 0 } else { HcError::Busy.to_ret() };
            }
        }
        let n = max.min(avail).min(IO_MAX) as usize;
        BOUNCE.with(|b| {
            let mut b = b.borrow_mut();
            self.map.ring_read(self.peer(), *head, &mut b[..n]);
            take(&b[..n]);
        });
        *head = head.wrapping_add(n as u64);
        self.ring_word(self.peer(), HEAD)
            .store(*head, Ordering::Release);
        drop(head);
        self.ring_bell(self.peer(), false);
        n as i64
    }

    /// The [`poll`] bits in force.
    fn poll_bits(&self) -> u64 {
        if self.broken.load(Ordering::Acquire) {
            return poll::ALL;
        }
        let ended = self.peer_ended();
        let head = *self.head.lock().unwrap_or_else(|e| e.into_inner());
        let tail = *self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(avail), Some(room)) = (self.avail(head), self.room(tail)) else {
            self.mark_broken();
            return poll::ALL;
        };
        let closed = self.send_closed();
        let mut bits = 0;
        if avail > 0 || ended || self.shut_rd.load(Ordering::Acquire) {
            bits |= poll::READABLE;
        }
        if room > 0 || closed {
            bits |= poll::WRITABLE;
        }
        if ended {
            bits |= poll::HUP;
        }
        if closed {
            bits |= poll::CLOSED;
        }
        bits
    }

    fn poll(&self, wanted: u64) -> i64 {
        let bits = self.poll_bits();
        if bits & wanted != 0 || wanted == 0 {
            return bits as i64;
        }
        self.want();
        self.poll_bits() as i64
    }

    fn shut_wr(&self) {
        self.shut_wr.store(true, Ordering::SeqCst);
        // Under the tail lock: a send in progress publishes its bytes first.
        drop(self.tail.lock().unwrap_or_else(|e| e.into_inner()));
        self.end_word(self.me, CLOSED_TX)
            .store(1, Ordering::Release);
        self.ring_bell(self.peer(), true);
    }

    fn shut_rd(&self) {
        self.shut_rd.store(true, Ordering::SeqCst);
        self.end_word(self.me, CLOSED_RX)
            .store(1, Ordering::Release);
        self.ring_bell(self.peer(), true);
    }

    /// Gives the end up once both directions are closed: releases its lock and, when the
    /// peer's is free too, removes the file (under the join lock, so that no tenant joins
    /// the file being removed: a joiner rechecks the path after locking).
    fn leave(&self) {
        // Once only: after the lock is released the file may belong to a new pair.
        if self.left.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shut_wr();
        self.shut_rd();
        if let Ok(_lock) = JoinLock::take(&self.file) {
            let _ = ofd_lock(&self.file, self.me as i64, libc::F_OFD_SETLK, libc::F_UNLCK);
            if !locked_elsewhere(&self.file, self.peer() as i64).unwrap_or(true) {
                let same = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if same {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
        tracing::info!(channel = %self.name, end = self.me, "channel left");
    }

    fn raise(&self) {
        let hook = self.raise.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            self.raised.fetch_add(1, Ordering::Relaxed);
            h();
        } else {
            self.unraised.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The end's thread: raises the tenant's event when its bell rings (moves from `seen`,
    /// its value when the end was joined) or the peer's process disappears.
    fn run(&self, mut seen: u32) {
        let bell = self.end_word(self.me, BELL);
        while !self.stop.load(Ordering::SeqCst) {
            futex_wait(bell, seen, LIVENESS_INTERVAL);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = bell.load(Ordering::SeqCst);
            if now != seen {
                seen = now;
                self.raise();
                continue;
            }
            let p = self.peer();
            if !self.peer_gone.load(Ordering::SeqCst)
                && self.end_word(p, JOINED).load(Ordering::SeqCst) != 0
                && !locked_elsewhere(&self.file, p as i64).unwrap_or(true)
            {
                tracing::info!(channel = %self.name, "the peer tenant is gone");
                self.peer_gone.store(true, Ordering::SeqCst);
                self.raise();
            }
        }
    }
}

thread_local! {
    /// The bounce buffer between guest memory and a ring (no reference is ever formed over
    /// either shared mapping).
    static BOUNCE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; IO_MAX as usize]);
}

impl ChannelEnd {
    /// Opens (and creates if needed) channel `name` in `dir` and takes a free end: the
    /// first tenant to name it takes end 0, the second end 1; a third is refused
    /// ([`ChannelError::Full`]).
    pub fn join(dir: &Path, name: &str) -> Result<Self, ChannelError> {
        check_name(name)?;
        let io = |what: &'static str| {
            move |source| ChannelError::Io {
                name: name.to_owned(),
                what,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create the channels directory"))?;
        let path = dir.join(name);
        for _ in 0..16 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io("cannot open the channel file"))?;
            let lock = JoinLock::take(&file).map_err(io("cannot lock the channel file"))?;
            // A leaving end may have removed the file between our open and our lock.
            let meta = file
                .metadata()
                .map_err(io("cannot stat the channel file"))?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.ino() == meta.ino() && m.dev() == meta.dev() => {}
                _ => continue,
            }
            if !meta.file_type().is_file() {
                return Err(ChannelError::Foreign(path));
            }
            let live = [
                locked_elsewhere(&file, 0).map_err(io("cannot test the channel's locks"))?,
                locked_elsewhere(&file, 1).map_err(io("cannot test the channel's locks"))?,
            ];
            let fresh = !live[0] && !live[1];
            if fresh {
                // First end (or a file left by tenants that are all gone): start afresh.
                file.set_len(0)
                    .map_err(io("cannot reset the channel file"))?;
                file.set_len(OBJECT_SIZE)
                    .map_err(io("cannot size the channel file"))?;
            } else if meta.len() != OBJECT_SIZE {
                return Err(ChannelError::Foreign(path));
            }
            let map = Mapping::new(&file).map_err(io("cannot map the channel file"))?;
            if fresh {
                map.word64(offset_of!(ChannelHeader, ring_size))
                    .store(RING_SIZE, Ordering::SeqCst);
                map.word32(offset_of!(ChannelHeader, version))
                    .store(CHANNEL_VERSION, Ordering::SeqCst);
                map.word64(offset_of!(ChannelHeader, magic))
                    .store(CHANNEL_MAGIC, Ordering::SeqCst);
            } else if map
                .word64(offset_of!(ChannelHeader, magic))
                .load(Ordering::SeqCst)
                != CHANNEL_MAGIC
                || map
                    .word32(offset_of!(ChannelHeader, version))
                    .load(Ordering::SeqCst)
                    != CHANNEL_VERSION
                || map
                    .word64(offset_of!(ChannelHeader, ring_size))
                    .load(Ordering::SeqCst)
                    != RING_SIZE
            {
                return Err(ChannelError::Foreign(path));
            }
            let Some(me) = (0..2)
                .find(|&e| !live[e] && map.word32(end_off(e, JOINED)).load(Ordering::SeqCst) == 0)
            else {
                return Err(ChannelError::Full(name.to_owned()));
            };
            ofd_lock(&file, me as i64, libc::F_OFD_SETLK, libc::F_WRLCK)
                .map_err(io("cannot lock the channel's end"))?;
            map.word32(end_off(me, JOINED)).store(1, Ordering::SeqCst);
            drop(lock);
            let inner = Arc::new(Inner {
                name: name.to_owned(),
                path,
                file,
                map,
                me,
                tail: Mutex::new(0),
                head: Mutex::new(0),
                shut_wr: AtomicBool::new(false),
                shut_rd: AtomicBool::new(false),
                peer_gone: AtomicBool::new(false),
                broken: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                left: AtomicBool::new(false),
                raise: Mutex::new(None),
                raised: AtomicU64::new(0),
                unraised: AtomicU64::new(0),
            });
            let i = Arc::clone(&inner);
            // The bell as it is now, before the thread starts: a ring between this and the
            // thread's first look (a loaded host may start it tens of milliseconds later)
            // is still a change it raises.
            let seen = inner.end_word(me, BELL).load(Ordering::SeqCst);
            let thread = std::thread::Builder::new()
                .name(format!("pvmux-chan-{name}"))
                .spawn(move || i.run(seen))
                .map_err(inner.io("cannot start the channel's thread"))?;
            tracing::info!(channel = name, end = me, "channel joined");
            return Ok(Self {
                inner,
                thread: Mutex::new(Some(thread)),
            });
        }
        Err(ChannelError::Io {
            name: name.to_owned(),
            what: "the channel file keeps changing",
            source: io::ErrorKind::WouldBlock.into(),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Which end this is (0: the first tenant to name the channel).
    pub fn end(&self) -> usize {
        self.inner.me
    }

    /// Sets what raises the tenant's `pending::CHANNEL` event.
    pub fn set_raise(&self, raise: Arc<dyn Fn() + Send + Sync>) {
        *self.inner.raise.lock().unwrap_or_else(|e| e.into_inner()) = Some(raise);
    }

    /// The tenant ended: both directions close (the peer reads the end of the stream, its
    /// sends fail) and the end is given up (the last end to go removes the file).
    pub fn close(&self) {
        self.inner.leave();
    }

    /// Sends `data` (at most [`IO_MAX`] bytes): bytes sent, or a hypercall return code.
    pub fn send_bytes(&self, data: &[u8]) -> i64 {
        self.inner.send(data.len() as u64, true, |b| {
            b.copy_from_slice(&data[..b.len()]);
            Ok(())
        })
    }

    /// Receives into `buf`: bytes received (0: end of stream), or a hypercall return code.
    pub fn recv_bytes(&self, buf: &mut [u8]) -> i64 {
        self.inner.recv(buf.len() as u64, true, |b| {
            buf[..b.len()].copy_from_slice(b)
        })
    }

    /// `ChannelCtl(POLL)`: the [`poll`] bits in force (arming a wake-up when none of
    /// `wanted` is).
    pub fn poll(&self, wanted: u64) -> u64 {
        self.inner.poll(wanted).max(0) as u64
    }

    /// One line of this end's state for a diagnosis (a benchmark or test that timed out):
    /// our private positions, the object's positions and words of both ends. Values read
    /// from the object are untrusted and only printed.
    pub fn describe(&self) -> String {
        let i = &self.inner;
        let (me, peer) = (i.me, i.peer());
        let tail = *i.tail.lock().unwrap_or_else(|e| e.into_inner());
        let head = *i.head.lock().unwrap_or_else(|e| e.into_inner());
        let w32 = |e: usize, f: usize| i.end_word(e, f).load(Ordering::SeqCst);
        let w64 = |d: usize, f: usize| i.ring_word(d, f).load(Ordering::SeqCst);
        format!(
            "channel {:?} end {me}: sent {tail} (peer read {}), read {head} (peer sent {}); \
             want {}/{}, bell {}/{}, closed tx {}/{} rx {}/{}, peer gone {}, broken {}, \
             events raised {} (without a tenant {})",
            i.name,
            w64(me, HEAD),
            w64(peer, TAIL),
            w32(me, WANT),
            w32(peer, WANT),
            w32(me, BELL),
            w32(peer, BELL),
            w32(me, CLOSED_TX),
            w32(peer, CLOSED_TX),
            w32(me, CLOSED_RX),
            w32(peer, CLOSED_RX),
            i.peer_gone.load(Ordering::SeqCst),
            i.broken.load(Ordering::SeqCst),
            i.raised.load(Ordering::Relaxed),
            i.unraised.load(Ordering::Relaxed),
        )
    }

    /// Waits until the bell of this end rings or `timeout` passes (benchmarks and tests
    /// without a tenant; the tenant's thread does this for guests).
    pub fn wait(&self, timeout: Duration) {
        let bell = self.inner.end_word(self.inner.me, BELL);
        let v = bell.load(Ordering::SeqCst);
        let wanted = poll::READABLE | poll::WRITABLE;
        if self.inner.poll(wanted) as u64 & wanted == 0 {
            futex_wait(bell, v, timeout);
        }
    }
}

impl Drop for ChannelEnd {
    fn drop(&mut self) {
        let i = &self.inner;
        i.stop.store(true, Ordering::SeqCst);
        i.end_word(i.me, BELL).fetch_add(1, Ordering::SeqCst);
        futex_wake(i.end_word(i.me, BELL));
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        i.leave();
    }
}

/// The channel hypercalls (`ChannelSend`, `ChannelRecv`, `ChannelCtl`) for a tenant with
/// `chans`: every argument is checked (index, guest range, length cap, operation).
pub(crate) fn hc(
    mem: &GuestMemory,
    chans: &[Arc<ChannelEnd>],
    call: Hypercall,
    a: [u64; 6],
) -> i64 {
    if chans.is_empty() {
        return HcError::UnknownCall.to_ret();
    }
    let Some(ch) = usize::try_from(a[0]).ok().and_then(|i| chans.get(i)) else {
        return HcError::InvalidArgument.to_ret();
    };
    let i = &ch.inner;
    match call {
        _ if matches!(call, Hypercall::ChannelSend | Hypercall::ChannelRecv)
            && a[3] & !flag::ALL != 0 =>
        {
            HcError::InvalidArgument.to_ret()
        }
        Hypercall::ChannelSend => {
            let (gpa, len) = (a[1], a[2].min(IO_MAX));
            if mem.check_range(gpa, len).is_err() {
                return HcError::BadAddress.to_ret();
            }
            i.send(len, a[3] & flag::NO_WAKE == 0, |b| {
                mem.read(gpa, b).map_err(|_| HcError::BadAddress)
            })
        }
        Hypercall::ChannelRecv => {
            let (gpa, len) = (a[1], a[2].min(IO_MAX));
            if mem.check_range(gpa, len).is_err() {
                return HcError::BadAddress.to_ret();
            }
            // The range was checked: the write cannot fail.
            i.recv(len, a[3] & flag::NO_WAKE == 0, |b| {
                let _ = mem.write(gpa, b);
            })
        }
        Hypercall::ChannelCtl => match a[1] {
            op::POLL if a[2] & !poll::ALL == 0 => i.poll(a[2]),
            op::SHUT_WR => {
                i.shut_wr();
                0
            }
            op::SHUT_RD => {
                i.shut_rd();
                0
            }
            _ => HcError::InvalidArgument.to_ret(),
        },
        _ => HcError::UnknownCall.to_ret(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pvmux-chan-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Sends all of `data` from `a`, receiving on `b` as it goes; returns what `b` got.
    fn pump(a: &ChannelEnd, b: &ChannelEnd, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sent = 0;
        let mut buf = vec![0; 100_000];
        while sent < data.len() {
            let end = (sent + IO_MAX as usize).min(data.len());
            let n = a.send_bytes(&data[sent..end]);
            if n > 0 {
                sent += n as usize;
            } else {
                assert_eq!(n, HcError::Busy.to_ret());
            }
            let n = b.recv_bytes(&mut buf);
            if n > 0 {
                out.extend_from_slice(&buf[..n as usize]);
            }
        }
        loop {
            let n = b.recv_bytes(&mut buf);
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        out
    }

    #[test]
    fn two_ends_a_third_is_refused_and_the_last_removes_the_file() {
        let dir = tmpdir("ends");
        let a = ChannelEnd::join(&dir, "c").unwrap();
        let b = ChannelEnd::join(&dir, "c").unwrap();
        assert_eq!((a.end(), b.end()), (0, 1));
        let e = ChannelEnd::join(&dir, "c").unwrap_err();
        assert!(matches!(e, ChannelError::Full(_)), "{e}");
        assert!(e.to_string().contains("two tenants"));
        drop(a);
        // An end is used once: the freed end 0 is not taken over.
        assert!(matches!(
            ChannelEnd::join(&dir, "c"),
            Err(ChannelError::Full(_))
        ));
        assert!(dir.join("c").exists());
        drop(b);
        assert!(!dir.join("c").exists());
        // Free again: a new pair starts afresh.
        let a = ChannelEnd::join(&dir, "c").unwrap();
        assert_eq!(a.end(), 0);
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_names_and_duplicates_are_refused() {
        let dir = tmpdir("names");
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"y".repeat(65)] {
            assert!(matches!(
                ChannelEnd::join(&dir, bad),
                Err(ChannelError::BadName(_))
            ));
        }
        let names = vec!["a".to_owned(), "a".to_owned()];
        assert!(matches!(
            join_all(&dir, &names),
            Err(ChannelError::Duplicate(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bytes_cross_both_ways_in_order_with_wrap_around() {
        let dir = tmpdir("bytes");
        let a = ChannelEnd::join(&dir, "c").unwrap();
        let b = ChannelEnd::join(&dir, "c").unwrap();
        let data: Vec<u8> = (0..5 * RING_SIZE as usize + 12345)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        assert_eq!(pump(&a, &b, &data), data);
        assert_eq!(pump(&b, &a, &data[..777_777]), &data[..777_777]);
        // A full ring is Busy, then room comes back as the peer reads.
        let chunk = vec![1u8; IO_MAX as usize];
        let mut sent = 0;
        loop {
            let n = a.send_bytes(&chunk);
            if n < 0 {
                assert_eq!(n, HcError::Busy.to_ret());
                break;
            }
            sent += n as u64;
        }
        assert_eq!(sent, RING_SIZE);
        assert_eq!(a.poll(poll::WRITABLE) & poll::WRITABLE, 0);
        let mut buf = vec![0; 10];
        assert_eq!(b.recv_bytes(&mut buf), 10);
        assert_ne!(a.poll(poll::WRITABLE) & poll::WRITABLE, 0);
        drop((a, b));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn end_of_stream_and_closed_reader() {
        let dir = tmpdir("eof");
        let a = ChannelEnd::join(&dir, "c").unwrap();
        let b = ChannelEnd::join(&dir, "c").unwrap();
        let mut buf = vec![0; 16];
        assert_eq!(b.recv_bytes(&mut buf), HcError::Busy.to_ret());
        assert_eq!(a.send_bytes(b"last words"), 10);
        a.inner.shut_wr();
        assert_eq!(a.send_bytes(b"more"), RET_CLOSED);
        assert_ne!(b.poll(0) & poll::HUP, 0);
        // The data first, then the end of the stream.
        assert_eq!(b.recv_bytes(&mut buf), 10);
        assert_eq!(&buf[..10], b"last words");
        assert_eq!(b.recv_bytes(&mut buf), 0);
        // The other direction is still open until b stops reading.
        assert_eq!(b.send_bytes(b"x"), 1);
        a.inner.shut_rd();
        assert_eq!(b.send_bytes(b"y"), RET_CLOSED);
        // A peer that leaves closes both directions.
        drop(a);
        assert_eq!(b.recv_bytes(&mut buf), 0);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_peer_process_that_vanishes_ends_the_stream() {
        let dir = tmpdir("gone");
        let a = ChannelEnd::join(&dir, "c").unwrap();
        // The peer's end lock lives in a child process that dies without closing.
        let path =
            std::ffi::CString::new(dir.join("c").into_os_string().into_encoded_bytes()).unwrap();
        let off = end_off(1, JOINED);
        // SAFETY: plain fork; the child makes only async-signal-safe calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: its own open file description, lock and mapping; then it exits.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                let mut fl: libc::flock = std::mem::zeroed();
                fl.l_type = libc::F_WRLCK as libc::c_short;
                fl.l_start = 1;
                fl.l_len = 1;
                libc::fcntl(fd, libc::F_OFD_SETLK, &raw mut fl);
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if p != libc::MAP_FAILED {
                    (*p.cast::<u8>().add(off).cast::<AtomicU32>()).store(1, Ordering::SeqCst);
                }
                libc::sleep(1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0);
        std::thread::sleep(Duration::from_millis(300));
        assert!(a.send_bytes(b"to nobody") > 0);
        let mut st = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &raw mut st, 0) };
        let t = std::time::Instant::now();
        while !a.inner.peer_gone.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "peer death not noticed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(a.send_bytes(b"x"), RET_CLOSED);
        let mut buf = [0u8; 4];
        assert_eq!(a.recv_bytes(&mut buf), 0);
        drop(a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A hostile peer writes garbage into every shared word: each call returns an error
    /// code (broken) or a bounded count, never copies outside the ring, never panics.
    #[test]
    fn garbage_indices_break_the_channel_not_the_host() {
        let dir = tmpdir("garbage");
        let a = ChannelEnd::join(&dir, "c").unwrap();
        let b = ChannelEnd::join(&dir, "c").unwrap();
        assert_eq!(a.send_bytes(b"hello"), 5);
        let values = [
            u64::MAX,
            RING_SIZE + 1,
            1 << 63,
            RING_SIZE * 3 + 5,
            u64::MAX - RING_SIZE,
        ];
        for (k, v) in values.into_iter().enumerate() {
            let a = ChannelEnd::join(&dir, &format!("g{k}")).unwrap();
            let b = ChannelEnd::join(&dir, &format!("g{k}")).unwrap();
            assert_eq!(a.send_bytes(b"abc"), 3);
            // The peer (b) claims to have written `v` bytes, and read `v`.
            b.inner.ring_word(1, TAIL).store(v, Ordering::SeqCst);
            b.inner.ring_word(0, HEAD).store(v, Ordering::SeqCst);
            let mut buf = vec![0u8; 64];
            let r = a.recv_bytes(&mut buf);
            assert!(r == RET_BROKEN || (0..=64).contains(&r), "{v:#x}: {r}");
            let s = a.send_bytes(&[9; 64]);
            assert!(s == RET_BROKEN || (0..=64).contains(&s), "{v:#x}: {s}");
            assert!(a.poll(poll::ALL) <= poll::ALL);
            if v > RING_SIZE {
                assert_eq!(a.recv_bytes(&mut buf), RET_BROKEN, "{v:#x}");
            }
        }
        // Within bounds but lying: the reader gets at most a ring of stale bytes, no more.
        b.inner
            .ring_word(0, TAIL)
            .store(RING_SIZE, Ordering::SeqCst);
        let mut buf = vec![0u8; IO_MAX as usize];
        let mut total = 0;
        loop {
            let r = b.recv_bytes(&mut buf);
            if r <= 0 {
                break;
            }
            total += r as u64;
        }
        assert!(total <= RING_SIZE);
        assert_eq!(queued(5, 4), None);
        assert_eq!(queued(u64::MAX, 0), Some(1));
        assert_eq!(queued(0, RING_SIZE), Some(RING_SIZE));
        assert_eq!(queued(0, RING_SIZE + 1), None);
        drop((a, b));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hypercalls_check_their_arguments() {
        let dir = tmpdir("hc");
        let mem = GuestMemory::new(16 << 20).unwrap();
        let a = Arc::new(ChannelEnd::join(&dir, "c").unwrap());
        let b = Arc::new(ChannelEnd::join(&dir, "c").unwrap());
        let chans = [Arc::clone(&a)];
        let call = |c, args: [u64; 6]| hc(&mem, &chans, c, args);
        assert_eq!(
            hc(&mem, &[], Hypercall::ChannelSend, [0; 6]),
            HcError::UnknownCall.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelSend, [1, 0, 1, 0, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelSend, [u64::MAX, 0, 1, 0, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelSend, [0, (16 << 20) - 2, 4, 0, 0, 0]),
            HcError::BadAddress.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, u64::MAX - 1, 4, 0, 0, 0]),
            HcError::BadAddress.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelCtl, [0, 99, 0, 0, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelCtl, [0, op::POLL, 1 << 40, 0, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        // A huge length is capped at IO_MAX.
        mem.write(0x1000, b"guest bytes").unwrap();
        assert_eq!(call(Hypercall::ChannelSend, [0, 0x1000, 11, 0, 0, 0]), 11);
        let mut buf = [0u8; 11];
        assert_eq!(b.recv_bytes(&mut buf), 11);
        assert_eq!(&buf, b"guest bytes");
        assert_eq!(b.send_bytes(b"back"), 4);
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, 0x2000, 1 << 40, 0, 0, 0]),
            4
        );
        assert_eq!(mem.read_vec(0x2000, 4).unwrap(), b"back");
        // A poll (NO_WAKE) of an empty ring is Busy and arms no wake-up; one without the
        // flag arms it; an unknown flag is refused.
        let want = || a.inner.end_word(a.inner.me, WANT).load(Ordering::SeqCst);
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, 0x2000, 4, flag::NO_WAKE, 0, 0]),
            HcError::Busy.to_ret()
        );
        assert_eq!(want(), 0);
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, 0x2000, 4, 0, 0, 0]),
            HcError::Busy.to_ret()
        );
        assert_eq!(want(), 1);
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, 0x2000, 4, 2, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        assert_eq!(
            call(Hypercall::ChannelSend, [0, 0x2000, 4, 1 << 8, 0, 0]),
            HcError::InvalidArgument.to_ret()
        );
        assert_eq!(b.send_bytes(b"more"), 4);
        assert_eq!(
            call(Hypercall::ChannelRecv, [0, 0x2000, 4, flag::NO_WAKE, 0, 0]),
            4
        );
        assert_eq!(call(Hypercall::ChannelCtl, [0, op::SHUT_WR, 0, 0, 0, 0]), 0);
        assert_eq!(b.recv_bytes(&mut buf), 0);
        drop(chans);
        drop((a, b));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
