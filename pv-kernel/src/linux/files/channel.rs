//! `/dev/pvmux/NAME`: channels to other kernels (`pvmux run --channel NAME`; docs/ABI.md
//! §channels, docs/MULTIKERNEL.md "Channels between kernels").
//!
//! The host gives the kernel its channels in the boot arguments (`CHANNEL` records, in
//! index order); [`super::dev::init`] makes a character device node for each. The node is a
//! byte stream to the peer kernel, with a pipe's rules: `write` sends (blocking while the
//! host's ring is full), `read` receives (blocking while it is empty), `poll`/`epoll`
//! report both. When the last open description that may write closes, this side's stream
//! ends: the peer reads end of file once it has read everything (as a pipe whose writers
//! closed). When the last one that may read closes, the peer's writes fail with `EPIPE` (as
//! a pipe whose readers closed). Both are final: a channel carries one stream each way.
//!
//! Waiting: a call that would block first polls the ring for up to [`SPIN_NS`] (hypercalls
//! with `flag::NO_WAKE`, which arm no wake-up; the poll stops at once when another thread
//! may run on this vCPU or a signal is pending). Then it sleeps: its last try arms a wake-up,
//! the host raises `pending::CHANNEL` once the peer moved, and the event handler ([`event`])
//! bumps [`SEQ`] and wakes every waiter, which retries. The poll saves the round trip's
//! wake-ups (the peer's doorbell thread, this kernel's halted vCPU, the reader's thread)
//! when the peer answers within it (docs/BENCHMARKS.md "Channels between kernels").

#![forbid(unsafe_code)]

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::channel::{
    flag, op, poll as cpoll, IO_MAX, MAX_CHANNELS, RET_BROKEN, RET_CLOSED,
};
use pvmux_hypercalls::{HcError, Hypercall};

use super::file::{KStat, OpenFile};
use super::object::{open_object, FileObject};
use super::poll::{self, ev};
use crate::fs::ramfs::oflag;
use crate::fs::Errno;
use crate::linux::signal;
use crate::sched::wait::WaitQueue;

/// Bumped by every `pending::CHANNEL` event.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Readers and writers waiting for an event.
static WAITERS: WaitQueue = WaitQueue::new();
/// Per channel: open descriptions that may read, and that may write.
static READERS: [AtomicU32; MAX_CHANNELS as usize] = [const { AtomicU32::new(0) }; 16];
static WRITERS: [AtomicU32; MAX_CHANNELS as usize] = [const { AtomicU32::new(0) }; 16];

/// The `pending::CHANNEL` event: a peer moved data, made room or closed.
pub(crate) fn event() {
    SEQ.fetch_add(1, Ordering::AcqRel);
    WAITERS.wake_all();
    poll::notify();
}

/// A channel call's result as the guest's: the count, `EPIPE` (the peer reads no more),
/// `EIO` (the channel is broken), `EAGAIN` (would block), `EFAULT`.
pub(crate) fn result(ret: i64) -> Result<usize, Errno> {
    if let Ok(n) = usize::try_from(ret) {
        return Ok(n);
    }
    Err(match ret {
        RET_CLOSED => Errno::EPIPE,
        RET_BROKEN => Errno::EIO,
        _ => match HcError::from_ret(ret) {
            Some(HcError::Busy) => Errno::EAGAIN,
            Some(HcError::BadAddress) => Errno::EFAULT,
            _ => Errno::EIO,
        },
    })
}

/// The guest-physical address of a kernel buffer (`None`: outside the direct map).
fn gpa_of(b: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(b.as_ptr() as u64, b.len() as u64)
}

/// How long a read or write that would block polls the channel before it sleeps (guest
/// ns). A round trip between two kernels whose peers answer at once takes a few tens of
/// microseconds; a longer poll only burns the CPU the peer needs on a loaded host.
pub(crate) const SPIN_NS: u64 = 50_000;

/// The flags of a try: a poll arms no wake-up.
fn flags(polling: bool) -> u64 {
    if polling {
        flag::NO_WAKE
    } else {
        0
    }
}

/// One `ChannelSend` of (a prefix of) `data` (`polling`: arm no wake-up).
fn send(index: u8, data: &[u8], polling: bool) -> Result<usize, Errno> {
    let data = &data[..data.len().min(IO_MAX as usize)];
    let nr = Hypercall::ChannelSend;
    let fl = flags(polling);
    if let Some(g) = gpa_of(data) {
        return result(crate::hcall::channel_flags(
            nr,
            [u64::from(index), g, data.len() as u64],
            fl,
        ));
    }
    let mut b = Vec::new();
    b.try_reserve_exact(data.len()).map_err(|_| Errno::ENOMEM)?;
    b.extend_from_slice(data);
    let g = gpa_of(&b).ok_or(Errno::EIO)?;
    result(crate::hcall::channel_flags(
        nr,
        [u64::from(index), g, b.len() as u64],
        fl,
    ))
}

/// One `ChannelRecv` into (a prefix of) `buf` (`polling`: arm no wake-up).
fn recv(index: u8, buf: &mut [u8], polling: bool) -> Result<usize, Errno> {
    let n = buf.len().min(IO_MAX as usize);
    let nr = Hypercall::ChannelRecv;
    let fl = flags(polling);
    if let Some(g) = gpa_of(&buf[..n]) {
        return result(crate::hcall::channel_flags(
            nr,
            [u64::from(index), g, n as u64],
            fl,
        ));
    }
    let mut b = Vec::new();
    b.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
    b.resize(n, 0);
    let g = gpa_of(&b).ok_or(Errno::EIO)?;
    let got = result(crate::hcall::channel_flags(
        nr,
        [u64::from(index), g, n as u64],
        fl,
    ))?
    .min(n);
    buf[..got].copy_from_slice(&b[..got]);
    Ok(got)
}

/// The bounded poll before a sleep: tries with `flag::NO_WAKE` for up to [`SPIN_NS`], then
/// one try that arms a wake-up. A non-blocking description arms at once (its caller
/// sleeps in `poll`/`epoll`, which arm their own); the poll also ends once another thread
/// may run on this vCPU or a signal is pending.
struct Poll {
    /// Deadline of the poll (0 before the first pause).
    until: u64,
    /// The next try is a poll.
    polling: bool,
}

impl Poll {
    fn new(f: &OpenFile) -> Self {
        Self {
            until: 0,
            polling: !f.nonblock() && SPIN_NS > 0,
        }
    }

    /// After a polling try found nothing: pauses briefly, or ends the poll (the next try
    /// arms a wake-up).
    fn next(&mut self) {
        let now = crate::time::now_ns();
        if self.until == 0 {
            self.until = now.saturating_add(SPIN_NS);
        }
        if now >= self.until || signal::pending() || crate::sched::others_runnable() {
            self.polling = false;
            return;
        }
        for _ in 0..32 {
            core::hint::spin_loop();
        }
    }
}

/// `poll` events of the host's [`cpoll`] bits.
pub(crate) fn poll_events(bits: u64) -> u16 {
    let mut m = 0;
    if bits & cpoll::READABLE != 0 {
        m |= ev::POLLIN | ev::POLLRDNORM;
    }
    if bits & cpoll::WRITABLE != 0 {
        m |= ev::POLLOUT | ev::POLLWRNORM;
    }
    if bits & cpoll::HUP != 0 {
        m |= ev::POLLHUP;
    }
    if bits & cpoll::CLOSED != 0 {
        m |= ev::POLLERR;
    }
    m
}

/// Waits for the next channel event after `seq` (`EAGAIN` when non-blocking, `EINTR` on a
/// signal).
fn wait(f: &OpenFile, seq: u64) -> Result<(), Errno> {
    if f.nonblock() {
        return Err(Errno::EAGAIN);
    }
    if signal::pending() {
        return Err(Errno::EINTR);
    }
    WAITERS.wait_until(|| SEQ.load(Ordering::Acquire) != seq || signal::pending());
    Ok(())
}

/// Which sides an open with access mode `flags` takes: (reads, writes).
pub(crate) fn sides(flags: u32) -> (bool, bool) {
    match flags & oflag::O_ACCMODE {
        oflag::O_WRONLY => (false, true),
        oflag::O_RDWR => (true, true),
        _ => (true, false),
    }
}

/// An open `/dev/pvmux/NAME`.
pub(crate) struct ChannelFile {
    index: u8,
    reader: bool,
    writer: bool,
    /// The node's stat (a character device).
    st: KStat,
    /// The node's path, for `/proc/PID/fd`.
    path: Vec<u8>,
}

/// Opens channel `index` (its node has stat `st`, name `name`) with `flags`.
pub(crate) fn open(index: u8, name: &[u8], st: KStat, flags: u32) -> Arc<OpenFile> {
    let (reader, writer) = sides(flags);
    let i = usize::from(index) % READERS.len();
    if reader {
        READERS[i].fetch_add(1, Ordering::AcqRel);
    }
    if writer {
        WRITERS[i].fetch_add(1, Ordering::AcqRel);
    }
    let mut path = b"/dev/pvmux/".to_vec();
    path.extend_from_slice(name);
    open_object(
        Arc::new(ChannelFile {
            index,
            reader,
            writer,
            st,
            path,
        }),
        flags,
    )
}

impl Drop for ChannelFile {
    fn drop(&mut self) {
        let i = usize::from(self.index) % READERS.len();
        let idx = u64::from(self.index);
        // An adoption that may still give up leaves the streams to the next adopter.
        let ours = crate::linux::handover::host_objects_are_ours();
        if self.writer && WRITERS[i].fetch_sub(1, Ordering::AcqRel) == 1 && ours {
            let _ = crate::hcall::channel(Hypercall::ChannelCtl, [idx, op::SHUT_WR, 0]);
        }
        if self.reader && READERS[i].fetch_sub(1, Ordering::AcqRel) == 1 && ours {
            let _ = crate::hcall::channel(Hypercall::ChannelCtl, [idx, op::SHUT_RD, 0]);
        }
    }
}

impl ChannelFile {
    /// Hand-over: the path of the channel's node, if `f` is an open channel (carried as a
    /// device, opened again by that path: the stream and its data are the host's).
    pub(crate) fn carried_path(f: &OpenFile) -> Option<Vec<u8>> {
        super::object::downcast::<ChannelFile>(f).map(|c| c.path.clone())
    }
}

impl FileObject for ChannelFile {
    fn read(&self, f: &OpenFile, buf: &mut [u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let mut spin = Poll::new(f);
        loop {
            let seq = SEQ.load(Ordering::Acquire);
            match recv(self.index, buf, spin.polling) {
                Err(Errno::EAGAIN) if spin.polling => spin.next(),
                Err(Errno::EAGAIN) => {
                    wait(f, seq)?;
                    spin = Poll::new(f);
                }
                r => return r,
            }
        }
    }

    fn write(&self, f: &OpenFile, data: &[u8], off: Option<u64>) -> Result<usize, Errno> {
        if off.is_some() {
            return Err(Errno::ESPIPE);
        }
        let mut done = 0;
        let mut spin = Poll::new(f);
        while done < data.len() {
            let seq = SEQ.load(Ordering::Acquire);
            match send(self.index, &data[done..], spin.polling) {
                Ok(n) => {
                    done += n;
                    spin = Poll::new(f);
                }
                Err(Errno::EAGAIN) if spin.polling => spin.next(),
                Err(Errno::EAGAIN) => match wait(f, seq) {
                    Ok(()) => spin = Poll::new(f),
                    Err(_) if done > 0 => break,
                    Err(e) => return Err(e),
                },
                Err(_) if done > 0 => break,
                Err(Errno::EPIPE) => {
                    signal::raise_current(signal::sig::SIGPIPE);
                    return Err(Errno::EPIPE);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn poll(&self, _f: &OpenFile) -> u16 {
        let wanted = cpoll::READABLE | cpoll::WRITABLE;
        let ret = crate::hcall::channel(
            Hypercall::ChannelCtl,
            [u64::from(self.index), op::POLL, wanted],
        );
        match u64::try_from(ret) {
            Ok(bits) => poll_events(bits),
            Err(_) => ev::POLLERR,
        }
    }

    fn stat(&self) -> KStat {
        self.st
    }

    fn link_name(&self) -> Vec<u8> {
        self.path.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_errnos() {
        assert_eq!(result(5), Ok(5));
        assert_eq!(result(0), Ok(0));
        assert_eq!(result(RET_CLOSED), Err(Errno::EPIPE));
        assert_eq!(result(RET_BROKEN), Err(Errno::EIO));
        assert_eq!(result(HcError::Busy.to_ret()), Err(Errno::EAGAIN));
        assert_eq!(result(HcError::BadAddress.to_ret()), Err(Errno::EFAULT));
        assert_eq!(result(-12345), Err(Errno::EIO));
    }

    #[test]
    fn poll_bits_and_sides() {
        assert_eq!(poll_events(0), 0);
        assert_eq!(
            poll_events(cpoll::READABLE | cpoll::HUP),
            ev::POLLIN | ev::POLLRDNORM | ev::POLLHUP
        );
        assert_eq!(
            poll_events(cpoll::WRITABLE | cpoll::CLOSED),
            ev::POLLOUT | ev::POLLWRNORM | ev::POLLERR
        );
        assert_eq!(sides(oflag::O_RDONLY), (true, false));
        assert_eq!(sides(oflag::O_WRONLY | 0o100), (false, true));
        assert_eq!(sides(oflag::O_RDWR), (true, true));
    }
}
