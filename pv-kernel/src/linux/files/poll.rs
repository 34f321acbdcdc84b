//! `poll`, `ppoll`, `select`, `pselect6`: readiness of pipes, the console and files.
//!
//! Every state change that can make a file ready (pipe reads, writes and closes, console
//! input) calls [`notify`], which wakes all pollers; they re-check their files. Regular
//! files, directories and memory devices are always ready.

#![deny(unsafe_code)]

use crate::linux::abi::nr;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::file::{Kind, OpenFile, NOFILE};
use super::{fd_file, tty};
use crate::fs::Errno;
use crate::irq::{IrqGuard, IrqLock};
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};
use crate::linux::{signal, SysResult};
use crate::sched::thread::Thread;

/// `poll` event bits.
pub(crate) mod ev {
    pub(crate) const POLLIN: u16 = 0x001;
    pub(crate) const POLLPRI: u16 = 0x002;
    pub(crate) const POLLOUT: u16 = 0x004;
    pub(crate) const POLLERR: u16 = 0x008;
    pub(crate) const POLLHUP: u16 = 0x010;
    pub(crate) const POLLNVAL: u16 = 0x020;
    pub(crate) const POLLRDNORM: u16 = 0x040;
    pub(crate) const POLLRDBAND: u16 = 0x080;
    pub(crate) const POLLWRNORM: u16 = 0x100;
    pub(crate) const POLLWRBAND: u16 = 0x200;
}
use ev::*;

/// Pollers waiting for [`notify`].
static POLLERS: IrqLock<Vec<Arc<Thread>>> = IrqLock::new(Vec::new());

/// How many times [`notify`] ran: the wake-up count of files that keep none of their own
/// (see [`wakeups`]).
static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many times [`notify`] ran so far (kernel threads that relay between files and the
/// host wait for it to change).
pub(crate) fn generation() -> u64 {
    GENERATION.load(core::sync::atomic::Ordering::Acquire)
}

/// Something may have become ready: wake every poller.
pub(crate) fn notify() {
    GENERATION.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    let waiters = core::mem::take(&mut *POLLERS.lock());
    for t in &waiters {
        crate::sched::wake(t);
    }
}

/// The events `f` has now (`POLLHUP`/`POLLERR` included whether asked or not).
pub(crate) fn poll_mask(f: &OpenFile) -> u16 {
    let rd = POLLIN | POLLRDNORM;
    let wr = POLLOUT | POLLWRNORM;
    match &f.kind {
        Kind::Node { .. } | Kind::Dev { .. } => rd | wr,
        Kind::PipeRead(p) => {
            let (data, no_writers) = p.read_ready();
            pipe_read_events(data, no_writers)
        }
        Kind::PipeWrite(p) => {
            let (room, no_readers) = p.write_ready();
            pipe_write_events(room, no_readers)
        }
        Kind::Console { .. } => {
            let mut m = 0;
            if f.readable() && tty::console_readable() {
                m |= rd;
            }
            if f.writable() {
                m |= wr;
            }
            m
        }
        Kind::Object(o) => o.poll(f),
    }
}

/// A counter that changes whenever `f` may have a new event among `events` (`EPOLL*`/`POLL*`
/// bits): what edge-triggered `epoll` compares to report an event again. Pipes and objects
/// that count their own wake-ups ([`FileObject::wakeups`](super::object::FileObject::wakeups))
/// give theirs; every other file gives the global count of [`notify`] calls, which may report
/// an edge twice but never misses one.
pub(crate) fn wakeups(f: &OpenFile, events: u32) -> u64 {
    let global = || GENERATION.load(core::sync::atomic::Ordering::Relaxed);
    match &f.kind {
        Kind::PipeRead(p) => p.wakeups(true),
        Kind::PipeWrite(p) => p.wakeups(false),
        Kind::Object(o) => o.wakeups(events).unwrap_or_else(global),
        _ => global(),
    }
}

/// The events of a pipe's read end (Linux's `pipe_poll`): readable with data, `POLLHUP`
/// once every writer is gone.
const fn pipe_read_events(data: bool, no_writers: bool) -> u16 {
    (if data { POLLIN | POLLRDNORM } else { 0 }) | (if no_writers { POLLHUP } else { 0 })
}

/// The events of a pipe's write end (Linux's `pipe_poll`): writable with room, `POLLERR`
/// once every reader is gone — both at once when both hold.
const fn pipe_write_events(room: bool, no_readers: bool) -> u16 {
    (if room { POLLOUT | POLLWRNORM } else { 0 }) | (if no_readers { POLLERR } else { 0 })
}

/// The `revents` of a `pollfd` for descriptor `fd` asking for `events`, whose file has the
/// events `mask` now (`None`: no such descriptor). A negative descriptor is skipped (0);
/// `POLLERR` and `POLLHUP` are reported whether asked or not; a closed one is `POLLNVAL`.
const fn revents(fd: i32, events: u16, mask: Option<u16>) -> u16 {
    if fd < 0 {
        return 0;
    }
    match mask {
        None => POLLNVAL,
        Some(m) => m & (events | POLLERR | POLLHUP),
    }
}

/// Events that make a descriptor ready for `select`'s read, write and exception sets
/// (Linux's `POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET`).
const IN_SET: u16 = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR;
const OUT_SET: u16 = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR;
const EX_SET: u16 = POLLPRI;

/// Which of `select`'s sets a descriptor with events `mask`, asked for in the sets `want`
/// (read, write, exception), is ready in.
const fn select_ready(mask: u16, want: [bool; 3]) -> [bool; 3] {
    [
        want[0] && mask & IN_SET != 0,
        want[1] && mask & OUT_SET != 0,
        want[2] && mask & EX_SET != 0,
    ]
}

/// The number of descriptors `select` looks at: `EINVAL` for a negative `nfds`; more than
/// the table can hold is cut to its size, as Linux does.
fn select_nfds(nfds: u64) -> Result<usize, Errno> {
    let n = nfds as i32;
    if n < 0 {
        return Err(Errno::EINVAL);
    }
    Ok((n as usize).min(NOFILE))
}

/// An `fd_set` (little-endian 64-bit words) as words.
fn fd_set_words(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(8)
        .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .collect()
}

/// True if `fd` is in the `fd_set` `set`.
fn fd_isset(set: &[u64], fd: usize) -> bool {
    set.get(fd / 64).is_some_and(|w| w & (1 << (fd % 64)) != 0)
}

/// How a wait ended.
pub(crate) enum Waited {
    /// Something is ready.
    Ready,
    /// The deadline passed.
    Timeout,
}

/// Waits until `ready()` (checked first), the guest-time `deadline`, or a signal
/// (`EINTR`).
pub(crate) fn wait_for(deadline: Option<u64>, ready: impl Fn() -> bool) -> Result<Waited, Errno> {
    loop {
        if ready() {
            return Ok(Waited::Ready);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        if deadline.is_some_and(|d| crate::time::now_ns() >= d) {
            return Ok(Waited::Timeout);
        }
        let _irq = IrqGuard::new();
        let cur = crate::sched::current();
        crate::sched::prepare_block(&cur);
        POLLERS.lock().push(cur.clone());
        // Re-check after registering: a notify in between would otherwise be lost.
        if ready() || signal::pending() {
            crate::sched::cancel_block(&cur);
        } else {
            crate::sched::timed_block(deadline.unwrap_or(u64::MAX));
        }
        POLLERS.lock().retain(|t| !Arc::ptr_eq(t, &cur));
    }
}

/// A timeout in ns from a `struct timespec` (`EINVAL` if malformed).
pub(crate) fn timespec_ns(sec: i64, nsec: i64) -> Result<u64, Errno> {
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec as u64))
}

/// A timeout in ns from `select`'s `struct timeval`: microseconds of a second or more carry
/// into the seconds, as Linux's `kern_select` does; what is still negative is `EINVAL`.
fn timeval_ns(sec: i64, usec: i64) -> Result<u64, Errno> {
    timespec_ns(
        sec.saturating_add(usec / 1_000_000),
        (usec % 1_000_000) * 1000,
    )
}

/// The deadline for a relative timeout.
pub(crate) fn deadline_after(ns: u64) -> u64 {
    crate::time::now_ns().saturating_add(ns)
}

/// Time left until `deadline`, as (seconds, nanoseconds).
fn remaining(deadline: u64) -> (i64, i64) {
    let left = deadline.saturating_sub(crate::time::now_ns());
    ((left / 1_000_000_000) as i64, (left % 1_000_000_000) as i64)
}

/// One `pollfd` being polled.
struct Entry {
    fd: i32,
    events: u16,
    file: Option<Arc<OpenFile>>,
}

impl Entry {
    /// The `revents` now.
    fn revents(&self) -> u16 {
        revents(self.fd, self.events, self.file.as_deref().map(poll_mask))
    }
}

/// The common part of `poll` and `ppoll`.
fn do_poll(fds_va: u64, nfds: u64, deadline: Option<u64>) -> SysResult {
    // Linux: more entries than RLIMIT_NOFILE is EINVAL.
    if nfds > crate::linux::rlimit::current(crate::linux::rlimit::res::NOFILE).min(NOFILE as u64) {
        return Err(Errno::EINVAL);
    }
    let n = nfds as usize;
    let mut raw = super::file::kbuf(n * 8)?;
    copy_from_user(fds_va, &mut raw)?;
    let mut entries = Vec::with_capacity(n);
    for e in raw.chunks_exact(8) {
        let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let events = u16::from_le_bytes([e[4], e[5]]);
        let file = if fd >= 0 { fd_file(fd).ok() } else { None };
        entries.push(Entry { fd, events, file });
    }
    let any = || entries.iter().any(|e| e.revents() != 0);
    let waited = wait_for(deadline, any)?;
    let mut count = 0;
    for (e, out) in entries.iter().zip(raw.chunks_exact_mut(8)) {
        let r = match waited {
            Waited::Ready => e.revents(),
            Waited::Timeout => 0,
        };
        if r != 0 {
            count += 1;
        }
        out[6..8].copy_from_slice(&r.to_le_bytes());
    }
    copy_to_user(fds_va, &raw)?;
    Ok(count)
}

/// Runs `f` with the calling thread's signal mask replaced by the one at `mask_va` (if
/// non-zero; `sigsetsize` must be 8) for its duration: a signal it unblocks interrupts the
/// wait with `EINTR` and is handled before the old mask comes back (see
/// [`signal::with_temporary_mask`]).
pub(crate) fn with_sigmask(
    mask_va: u64,
    sigsetsize: u64,
    f: impl FnOnce() -> SysResult,
) -> SysResult {
    if mask_va == 0 {
        return f();
    }
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let mask = signal::SigSet::from_bits(read_val(mask_va)?);
    signal::with_temporary_mask(Some(mask), f)
}

/// `poll(fds, nfds, timeout_ms)`.
pub(crate) fn sys_poll(fds: u64, nfds: u64, timeout_ms: u64) -> SysResult {
    let t = timeout_ms as i32;
    let deadline = (t >= 0).then(|| deadline_after(t as u64 * 1_000_000));
    continued(nr::POLL, deadline, |d| do_poll(fds, nfds, d))
}

/// Wait `nr` until `deadline`, or the deadline it had when a hand-over freeze stopped it
/// (see [`crate::linux::timers::sleep::with_continued_deadline`]).
pub(crate) fn continued(
    nr: u64,
    deadline: Option<u64>,
    f: impl FnOnce(Option<u64>) -> SysResult,
) -> SysResult {
    crate::linux::timers::sleep::with_continued_deadline(nr, deadline, f)
}

/// `ppoll(fds, nfds, timeout_ts, sigmask, sigsetsize)`.
pub(crate) fn sys_ppoll(fds: u64, nfds: u64, ts: u64, mask: u64, setsize: u64) -> SysResult {
    let deadline = if ts == 0 {
        None
    } else {
        let [s, ns]: [i64; 2] = read_val(ts)?;
        Some(deadline_after(timespec_ns(s, ns)?))
    };
    let mut used = deadline;
    let r = continued(nr::PPOLL, deadline, |d| {
        used = d;
        with_sigmask(mask, setsize, || do_poll(fds, nfds, d))
    });
    if let Some(d) = used {
        let (s, ns) = remaining(d);
        let _ = write_val(ts, &[s, ns]);
    }
    r
}

/// The common part of `select` and `pselect6`.
fn do_select(nfds: u64, sets: [u64; 3], deadline: Option<u64>) -> SysResult {
    let n = select_nfds(nfds)?;
    let words = n.div_ceil(64);
    let mut input = [Vec::new(), Vec::new(), Vec::new()];
    for (i, &va) in sets.iter().enumerate() {
        if va != 0 && words > 0 {
            let mut raw = super::file::kbuf(words * 8)?;
            copy_from_user(va, &mut raw)?;
            input[i] = fd_set_words(&raw);
        }
    }
    // (fd, file, wanted in the read, write and exception sets)
    let mut entries = Vec::new();
    for fd in 0..n {
        let want = [0, 1, 2].map(|i| fd_isset(&input[i], fd));
        if want.contains(&true) {
            let file = fd_file(fd as i32)?;
            entries.push((fd, file, want));
        }
    }
    let result = |fill: bool| -> ([Vec<u64>; 3], u64) {
        let mut out = [
            alloc::vec![0u64; words],
            alloc::vec![0u64; words],
            alloc::vec![0u64; words],
        ];
        let mut count = 0;
        if fill {
            for (fd, f, want) in &entries {
                let ready = select_ready(poll_mask(f), *want);
                for (i, _) in ready.iter().enumerate().filter(|(_, r)| **r) {
                    out[i][fd / 64] |= 1 << (fd % 64);
                    count += 1;
                }
            }
        }
        (out, count)
    };
    let ready = || {
        entries
            .iter()
            .any(|(_, f, want)| select_ready(poll_mask(f), *want).contains(&true))
    };
    let waited = wait_for(deadline, ready)?;
    let (out, count) = result(matches!(waited, Waited::Ready));
    for (i, &va) in sets.iter().enumerate() {
        if va != 0 && words > 0 {
            let bytes: Vec<u8> = out[i].iter().flat_map(|w| w.to_le_bytes()).collect();
            copy_to_user(va, &bytes)?;
        }
    }
    Ok(count)
}

/// `select(nfds, readfds, writefds, exceptfds, timeout_tv)`.
pub(crate) fn sys_select(nfds: u64, r: u64, w: u64, x: u64, tv: u64) -> SysResult {
    let deadline = if tv == 0 {
        None
    } else {
        let [s, us]: [i64; 2] = read_val(tv)?;
        Some(deadline_after(timeval_ns(s, us)?))
    };
    let mut used = deadline;
    let res = continued(nr::SELECT, deadline, |d| {
        used = d;
        do_select(nfds, [r, w, x], d)
    });
    if let Some(d) = used {
        let (s, ns) = remaining(d);
        let _ = write_val(tv, &[s, ns / 1000]);
    }
    res
}

/// `pselect6(nfds, readfds, writefds, exceptfds, timeout_ts, {sigmask, size})`.
pub(crate) fn sys_pselect6(nfds: u64, r: u64, w: u64, x: u64, ts: u64, sig: u64) -> SysResult {
    let deadline = if ts == 0 {
        None
    } else {
        let [s, ns]: [i64; 2] = read_val(ts)?;
        Some(deadline_after(timespec_ns(s, ns)?))
    };
    let (mask, size) = if sig == 0 {
        (0, 0)
    } else {
        let [m, s]: [u64; 2] = read_val(sig)?;
        (m, s)
    };
    let mut used = deadline;
    let res = continued(nr::PSELECT6, deadline, |d| {
        used = d;
        with_sigmask(mask, size, || do_select(nfds, [r, w, x], d))
    });
    if let Some(d) = used {
        let (s, ns) = remaining(d);
        let _ = write_val(ts, &[s, ns]);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bits_and_layouts_match_the_host_linux() {
        let ours = [
            (POLLIN, libc::POLLIN),
            (POLLPRI, libc::POLLPRI),
            (POLLOUT, libc::POLLOUT),
            (POLLERR, libc::POLLERR),
            (POLLHUP, libc::POLLHUP),
            (POLLNVAL, libc::POLLNVAL),
            (POLLRDNORM, libc::POLLRDNORM),
            (POLLRDBAND, libc::POLLRDBAND),
            (POLLWRNORM, libc::POLLWRNORM),
            (POLLWRBAND, libc::POLLWRBAND),
        ];
        for (o, l) in ours {
            assert_eq!(o, l as u16);
        }
        // The pollfd entries do_poll reads: fd at 0, events at 4, revents at 6.
        assert_eq!(core::mem::size_of::<libc::pollfd>(), 8);
        assert_eq!(core::mem::offset_of!(libc::pollfd, events), 4);
        assert_eq!(core::mem::offset_of!(libc::pollfd, revents), 6);
        assert_eq!(core::mem::size_of::<libc::fd_set>() * 8, libc::FD_SETSIZE);
    }

    #[test]
    fn pipe_ends_poll_like_linux() {
        assert_eq!(pipe_read_events(false, false), 0);
        assert_eq!(pipe_read_events(true, false), POLLIN | POLLRDNORM);
        assert_eq!(pipe_read_events(true, true), POLLIN | POLLRDNORM | POLLHUP);
        assert_eq!(pipe_read_events(false, true), POLLHUP);
        assert_eq!(pipe_write_events(true, false), POLLOUT | POLLWRNORM);
        assert_eq!(pipe_write_events(false, false), 0);
        // No reader left: POLLERR, and still POLLOUT when there is room (Linux reports both).
        assert_eq!(
            pipe_write_events(true, true),
            POLLOUT | POLLWRNORM | POLLERR
        );
        assert_eq!(pipe_write_events(false, true), POLLERR);
    }

    #[test]
    fn revents_report_errors_unasked_and_closed_descriptors() {
        let m = POLLIN | POLLOUT | POLLHUP;
        assert_eq!(revents(3, POLLIN, Some(m)), POLLIN | POLLHUP);
        assert_eq!(revents(3, 0, Some(POLLERR | POLLIN)), POLLERR);
        assert_eq!(revents(3, POLLIN, None), POLLNVAL);
        assert_eq!(revents(-1, POLLIN, None), 0, "negative: ignored");
        assert_eq!(revents(-5, POLLIN, Some(m)), 0);
    }

    #[test]
    fn select_sets() {
        // A hang-up or error counts as readable; an error as writable; POLLPRI as an
        // exception.
        assert_eq!(
            select_ready(POLLHUP, [true, true, true]),
            [true, false, false]
        );
        assert_eq!(
            select_ready(POLLERR, [true, true, true]),
            [true, true, false]
        );
        assert_eq!(
            select_ready(POLLPRI, [true, true, true]),
            [false, false, true]
        );
        assert_eq!(
            select_ready(POLLIN | POLLOUT, [false, true, false]),
            [false, true, false]
        );
        // fd_set words: bit fd % 64 of word fd / 64, little-endian.
        let mut raw = [0u8; 24];
        raw[0] = 0b101; // fds 0 and 2
        raw[8 + 7] = 0x80; // fd 127
        raw[16] = 1; // fd 128
        let w = fd_set_words(&raw);
        let set: Vec<usize> = (0..192).filter(|&fd| fd_isset(&w, fd)).collect();
        assert_eq!(set, [0, 2, 127, 128]);
        assert!(!fd_isset(&w, 500), "past the set");
        assert_eq!(select_nfds(0), Ok(0));
        assert_eq!(select_nfds(1024), Ok(1024));
        assert_eq!(select_nfds(5000), Ok(NOFILE), "cut to the table's size");
        assert_eq!(select_nfds(-1i64 as u64), Err(Errno::EINVAL));
        assert_eq!(
            select_nfds(0x8000_0000),
            Err(Errno::EINVAL),
            "a negative int"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(timespec_ns(1, 5), Ok(1_000_000_005));
        assert_eq!(timespec_ns(-1, 0), Err(Errno::EINVAL));
        assert_eq!(timespec_ns(0, 1_000_000_000), Err(Errno::EINVAL));
        assert_eq!(timespec_ns(i64::MAX, 0), Ok(u64::MAX), "saturates");
        // select: microseconds beyond a second carry over (Linux's kern_select).
        assert_eq!(timeval_ns(0, 1_500_000), Ok(1_500_000_000));
        assert_eq!(timeval_ns(2, 999_999), Ok(2_999_999_000));
        assert_eq!(timeval_ns(0, -1), Err(Errno::EINVAL));
        assert_eq!(timeval_ns(-1, 0), Err(Errno::EINVAL));
        assert_eq!(timeval_ns(-1, 2_000_000), Ok(1_000_000_000));
    }
}
