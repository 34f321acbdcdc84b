//! `poll`, `ppoll`, `select`, `pselect6`: readiness of pipes, the console and files.
//!
//! Every state change that can make a file ready (pipe reads, writes and closes, console
//! input) calls [`notify`], which wakes all pollers; they re-check their files. Regular
//! files, directories and memory devices are always ready.

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

/// Something may have become ready: wake every poller.
pub(crate) fn notify() {
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
            let (data, hup) = p.read_ready();
            (if data { rd } else { 0 }) | (if hup { POLLHUP } else { 0 })
        }
        Kind::PipeWrite(p) => {
            let (room, err) = p.write_ready();
            if err {
                POLLERR
            } else if room {
                wr
            } else {
                0
            }
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
    }
}

/// How a wait ended.
enum Waited {
    /// Something is ready.
    Ready,
    /// The deadline passed.
    Timeout,
}

/// Waits until `ready()` (checked first), the guest-time `deadline`, or a signal
/// (`EINTR`).
fn wait_for(deadline: Option<u64>, ready: impl Fn() -> bool) -> Result<Waited, Errno> {
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
fn timespec_ns(sec: i64, nsec: i64) -> Result<u64, Errno> {
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec as u64))
}

/// The deadline for a relative timeout.
fn deadline_after(ns: u64) -> u64 {
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
        if self.fd < 0 {
            return 0;
        }
        match &self.file {
            None => POLLNVAL,
            Some(f) => poll_mask(f) & (self.events | POLLERR | POLLHUP),
        }
    }
}

/// The common part of `poll` and `ppoll`.
fn do_poll(fds_va: u64, nfds: u64, deadline: Option<u64>) -> SysResult {
    if nfds > NOFILE as u64 {
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
fn with_sigmask(mask_va: u64, sigsetsize: u64, f: impl FnOnce() -> SysResult) -> SysResult {
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
    do_poll(fds, nfds, deadline)
}

/// `ppoll(fds, nfds, timeout_ts, sigmask, sigsetsize)`.
pub(crate) fn sys_ppoll(fds: u64, nfds: u64, ts: u64, mask: u64, setsize: u64) -> SysResult {
    let deadline = if ts == 0 {
        None
    } else {
        let [s, ns]: [i64; 2] = read_val(ts)?;
        Some(deadline_after(timespec_ns(s, ns)?))
    };
    let r = with_sigmask(mask, setsize, || do_poll(fds, nfds, deadline));
    if let Some(d) = deadline {
        let (s, ns) = remaining(d);
        let _ = write_val(ts, &[s, ns]);
    }
    r
}

/// The common part of `select` and `pselect6`.
fn do_select(nfds: u64, sets: [u64; 3], deadline: Option<u64>) -> SysResult {
    if nfds > NOFILE as u64 {
        return Err(Errno::EINVAL);
    }
    let n = nfds as usize;
    let words = n.div_ceil(64);
    let mut input = [Vec::new(), Vec::new(), Vec::new()];
    for (i, &va) in sets.iter().enumerate() {
        if va != 0 && words > 0 {
            let mut raw = super::file::kbuf(words * 8)?;
            copy_from_user(va, &mut raw)?;
            input[i] = raw
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
                .collect();
        }
    }
    let bit =
        |set: &Vec<u64>, fd: usize| set.get(fd / 64).is_some_and(|w| w & (1 << (fd % 64)) != 0);
    // (fd, file, wants read, write, except)
    let mut entries = Vec::new();
    for fd in 0..n {
        let (r, w, x) = (bit(&input[0], fd), bit(&input[1], fd), bit(&input[2], fd));
        if r || w || x {
            let file = fd_file(fd as i32)?;
            entries.push((fd, file, r, w, x));
        }
    }
    const IN_SET: u16 = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR;
    const OUT_SET: u16 = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR;
    const EX_SET: u16 = POLLPRI;
    let result = |fill: bool| -> ([Vec<u64>; 3], u64) {
        let mut out = [
            alloc::vec![0u64; words],
            alloc::vec![0u64; words],
            alloc::vec![0u64; words],
        ];
        let mut count = 0;
        if fill {
            for (fd, f, r, w, x) in &entries {
                let m = poll_mask(f);
                for (i, (want, set)) in [(*r, IN_SET), (*w, OUT_SET), (*x, EX_SET)]
                    .into_iter()
                    .enumerate()
                {
                    if want && m & set != 0 {
                        out[i][fd / 64] |= 1 << (fd % 64);
                        count += 1;
                    }
                }
            }
        }
        (out, count)
    };
    let ready = || {
        entries.iter().any(|(_, f, r, w, x)| {
            let m = poll_mask(f);
            (*r && m & IN_SET != 0) || (*w && m & OUT_SET != 0) || (*x && m & EX_SET != 0)
        })
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
        if !(0..1_000_000).contains(&us) {
            return Err(Errno::EINVAL);
        }
        Some(deadline_after(timespec_ns(s, us * 1000)?))
    };
    let res = do_select(nfds, [r, w, x], deadline);
    if let Some(d) = deadline {
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
    let res = with_sigmask(mask, size, || do_select(nfds, [r, w, x], deadline));
    if let Some(d) = deadline {
        let (s, ns) = remaining(d);
        let _ = write_val(ts, &[s, ns]);
    }
    res
}
