//! Pipes: a 64 KiB byte buffer between a read end and a write end.
//!
//! Linux semantics: reads block until data arrives or every writer is gone (then 0 = end of
//! file); writes block until there is room, fail with `EPIPE` (and `SIGPIPE`) once every
//! reader is gone, and writes of at most [`PIPE_BUF`] bytes are atomic (never interleaved
//! with other writers). `O_NONBLOCK` turns waiting into `EAGAIN`; a signal into `EINTR` (or a
//! short count once something was transferred).

#![deny(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::poll;
use crate::fs::Errno;
use crate::irq::IrqLock;
use crate::linux::signal::{self, sig};
use crate::sched::wait::WaitQueue;

/// Writes of at most this many bytes are atomic.
pub(crate) const PIPE_BUF: usize = 4096;
/// Capacity of a pipe (`F_GETPIPE_SZ`).
pub(crate) const PIPE_SIZE: usize = 64 * 1024;

/// Source of pipe inode numbers (for `fstat`).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The buffer and the number of open ends: the pipe's logic, without waiting.
struct State {
    buf: VecDeque<u8>,
    readers: u32,
    writers: u32,
}

/// What one attempt to read found.
#[derive(Debug, PartialEq, Eq)]
enum Pull {
    /// Bytes were taken.
    Got(usize),
    /// Nothing buffered and no writer left: end of file.
    Eof,
    /// Nothing buffered yet.
    Empty,
}

/// What one attempt to write did.
#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// Bytes went in.
    Wrote(usize),
    /// Not enough room (none at all, or not for the whole of an atomic write).
    Full,
    /// No reader left: `EPIPE` and `SIGPIPE`.
    NoReaders,
}

impl State {
    const fn new() -> Self {
        Self {
            buf: VecDeque::new(),
            readers: 1,
            writers: 1,
        }
    }

    /// Free space.
    fn room(&self) -> usize {
        PIPE_SIZE - self.buf.len()
    }

    /// Takes up to `out.len()` buffered bytes (`out` not empty).
    fn pull(&mut self, out: &mut [u8]) -> Pull {
        if !self.buf.is_empty() {
            let n = out.len().min(self.buf.len());
            for (dst, src) in out[..n].iter_mut().zip(self.buf.drain(..n)) {
                *dst = src;
            }
            if self.buf.is_empty() {
                // An empty pipe holds no kernel heap: thousands of drained pipes must not
                // keep 64 KiB each.
                self.buf = VecDeque::new();
            }
            Pull::Got(n)
        } else if self.writers == 0 {
            Pull::Eof
        } else {
            Pull::Empty
        }
    }

    /// Puts in as much of `data` (not empty) as fits — all of it or nothing if `atomic`.
    fn push(&mut self, data: &[u8], atomic: bool) -> Result<Push, Errno> {
        if self.readers == 0 {
            return Ok(Push::NoReaders);
        }
        let free = self.room();
        if free == 0 || (atomic && free < data.len()) {
            return Ok(Push::Full);
        }
        let n = data.len().min(free);
        // Buffered bytes live in the kernel heap: when it runs short, a pipe that holds
        // data is full (the writer waits for the reader, or gets EAGAIN), and an empty one
        // fails the write with ENOMEM.
        if crate::linux::alloc_guard::reserve(n).is_err() {
            return if self.buf.is_empty() {
                Err(Errno::ENOMEM)
            } else {
                Ok(Push::Full)
            };
        }
        self.buf.try_reserve(n).map_err(|_| Errno::ENOMEM)?;
        self.buf.extend(&data[..n]);
        Ok(Push::Wrote(n))
    }

    /// Readiness of the read end: (data, writers gone).
    fn read_ready(&self) -> (bool, bool) {
        (!self.buf.is_empty(), self.writers == 0)
    }

    /// Readiness of the write end: (room for an atomic write, readers gone).
    fn write_ready(&self) -> (bool, bool) {
        (self.room() >= PIPE_BUF, self.readers == 0)
    }
}

/// A pipe shared by its read and write open file descriptions.
pub(crate) struct Pipe {
    state: IrqLock<State>,
    /// Readers and writers blocked on this pipe.
    wq: WaitQueue,
    /// Inode number reported by `fstat`.
    pub(crate) id: u64,
    /// Creation time (wall clock, ns) reported by `fstat`.
    pub(crate) ctime_ns: u64,
    /// Wake-ups of the read end (writes, the last writer closing): edge-triggered `epoll`.
    rd_events: AtomicU64,
    /// Wake-ups of the write end (reads, the last reader closing).
    wr_events: AtomicU64,
}

impl Pipe {
    /// A copy of the bytes buffered, oldest first (the hand-over record).
    pub(crate) fn buffered(&self) -> alloc::vec::Vec<u8> {
        self.state.lock().buf.iter().copied().collect()
    }

    /// A new pipe with one reader and one writer.
    pub(crate) fn new(now_ns: u64) -> Arc<Self> {
        Arc::new(Self {
            state: IrqLock::new(State::new()),
            wq: WaitQueue::new(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ctime_ns: now_ns,
            rd_events: AtomicU64::new(0),
            wr_events: AtomicU64::new(0),
        })
    }

    /// A pipe rebuilt by an adoption (`linux/handover/adopt.rs`): the id it had (what
    /// `fstat` and `/proc/PID/fd` show), the bytes it buffered, oldest first, and as many
    /// read and write open file descriptions as will refer to it (each one's end closes
    /// one). `None` if the bytes do not fit a pipe.
    pub(crate) fn adopted(
        id: u64,
        now_ns: u64,
        bytes: &[u8],
        readers: u32,
        writers: u32,
    ) -> Option<Arc<Self>> {
        if bytes.len() > PIPE_SIZE || id == 0 {
            return None;
        }
        NEXT_ID.fetch_max(id.saturating_add(1), Ordering::Relaxed);
        let mut buf = VecDeque::new();
        buf.try_reserve_exact(bytes.len()).ok()?;
        buf.extend(bytes.iter().copied());
        Some(Arc::new(Self {
            state: IrqLock::new(State {
                buf,
                readers,
                writers,
            }),
            wq: WaitQueue::new(),
            id,
            ctime_ns: now_ns,
            rd_events: AtomicU64::new(0),
            wr_events: AtomicU64::new(0),
        }))
    }

    /// Wakes everybody who may wait on this pipe.
    fn notify(&self) {
        self.wq.wake_all();
        poll::notify();
    }

    /// A read end is closed.
    pub(crate) fn close_reader(&self) {
        {
            let mut s = self.state.lock();
            s.readers = s.readers.saturating_sub(1);
            if s.readers == 0 {
                // Nobody can read what is left: free it now.
                s.buf = VecDeque::new();
            }
        }
        self.wr_events.fetch_add(1, Ordering::Relaxed);
        self.notify();
    }

    /// A write end is closed.
    pub(crate) fn close_writer(&self) {
        {
            let mut s = self.state.lock();
            s.writers = s.writers.saturating_sub(1);
        }
        self.rd_events.fetch_add(1, Ordering::Relaxed);
        self.notify();
    }

    /// Bytes buffered (`FIONREAD`).
    /// How many times the read end (`read_end`) or the write end was woken: changes with
    /// every event an edge-triggered `epoll` must report again.
    pub(crate) fn wakeups(&self, read_end: bool) -> u64 {
        if read_end {
            self.rd_events.load(Ordering::Relaxed)
        } else {
            self.wr_events.load(Ordering::Relaxed)
        }
    }

    /// Free space in the buffer, and whether every reader is gone (`splice` into it takes
    /// no more than fits).
    pub(crate) fn room(&self) -> (usize, bool) {
        let s = self.state.lock();
        (s.room(), s.readers == 0)
    }

    /// Copies up to `out.len()` buffered bytes without taking them (`tee`).
    pub(crate) fn peek(&self, out: &mut [u8]) -> usize {
        let s = self.state.lock();
        let n = out.len().min(s.buf.len());
        for (dst, src) in out[..n].iter_mut().zip(s.buf.iter()) {
            *dst = *src;
        }
        n
    }

    pub(crate) fn available(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// Readiness of the read end: (data, writers gone).
    pub(crate) fn read_ready(&self) -> (bool, bool) {
        self.state.lock().read_ready()
    }

    /// Readiness of the write end: (room for an atomic write, readers gone).
    pub(crate) fn write_ready(&self) -> (bool, bool) {
        self.state.lock().write_ready()
    }

    /// Reads up to `out.len()` bytes; 0 at end of file (no writers and empty).
    pub(crate) fn read(&self, out: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let pulled = self.state.lock().pull(out);
            match pulled {
                Pull::Got(n) => {
                    self.wr_events.fetch_add(1, Ordering::Relaxed);
                    self.notify();
                    return Ok(n);
                }
                Pull::Eof => return Ok(0),
                Pull::Empty => {}
            }
            if nonblock {
                return Err(Errno::EAGAIN);
            }
            if signal::pending() {
                return Err(Errno::EINTR);
            }
            self.wq.wait_until(|| {
                let s = self.state.lock();
                !s.buf.is_empty() || s.writers == 0 || signal::pending()
            });
        }
    }

    /// Writes `data`. With `atomic` (the whole system-call write is at most [`PIPE_BUF`]
    /// bytes) all of `data` goes in at once; otherwise as much as fits, repeatedly. Returns
    /// the bytes written: less than `data.len()` only if interrupted by a signal or
    /// `nonblock` after a partial write. `EPIPE` (and `SIGPIPE`) without readers.
    pub(crate) fn write(&self, data: &[u8], nonblock: bool, atomic: bool) -> Result<usize, Errno> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut done = 0;
        loop {
            let pushed = self.state.lock().push(&data[done..], atomic)?;
            match pushed {
                Push::NoReaders => {
                    signal::raise_current(sig::SIGPIPE);
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EPIPE)
                    };
                }
                Push::Wrote(n) => {
                    done += n;
                    self.rd_events.fetch_add(1, Ordering::Relaxed);
                    self.notify();
                    if done == data.len() {
                        return Ok(done);
                    }
                    continue;
                }
                Push::Full => {}
            }
            if nonblock {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EAGAIN)
                };
            }
            if signal::pending() {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EINTR)
                };
            }
            let need = if atomic { data.len() - done } else { 1 };
            self.wq.wait_until(|| {
                let s = self.state.lock();
                s.room() >= need || s.readers == 0 || signal::pending()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_host_linux() {
        assert_eq!(PIPE_BUF, libc::PIPE_BUF);
        // Linux's default pipe capacity: 16 pages.
        assert_eq!(PIPE_SIZE, 16 * 4096);
    }

    #[test]
    fn reads_take_what_is_there_in_order_then_end_of_file() {
        let mut s = State::new();
        let mut out = [0u8; 4];
        assert_eq!(s.pull(&mut out), Pull::Empty);
        assert_eq!(s.push(b"hello", false), Ok(Push::Wrote(5)));
        assert_eq!(s.pull(&mut out), Pull::Got(4));
        assert_eq!(&out, b"hell");
        assert_eq!(s.read_ready(), (true, false));
        s.writers = 0;
        assert_eq!(
            s.pull(&mut out),
            Pull::Got(1),
            "what is left, after the writers left"
        );
        assert_eq!(out[0], b'o');
        assert_eq!(s.pull(&mut out), Pull::Eof);
        assert_eq!(s.read_ready(), (false, true));
    }

    #[test]
    fn small_writes_are_atomic_and_large_ones_fill_what_is_free() {
        let mut s = State::new();
        let big = vec![7u8; PIPE_SIZE - 100];
        assert_eq!(s.push(&big, false), Ok(Push::Wrote(PIPE_SIZE - 100)));
        assert_eq!(s.write_ready(), (false, false), "less than PIPE_BUF free");
        // An atomic write of 200 bytes does not fit in 100: all or nothing.
        assert_eq!(s.push(&[1; 200], true), Ok(Push::Full));
        assert_eq!(s.room(), 100);
        // A non-atomic one takes the 100.
        assert_eq!(s.push(&[1; 200], false), Ok(Push::Wrote(100)));
        assert_eq!(s.push(&[1; 1], false), Ok(Push::Full));
        let mut out = vec![0u8; PIPE_BUF];
        assert_eq!(s.pull(&mut out), Pull::Got(PIPE_BUF));
        assert_eq!(s.write_ready(), (true, false));
        assert_eq!(s.push(&[2; PIPE_BUF], true), Ok(Push::Wrote(PIPE_BUF)));
    }

    #[test]
    fn no_readers_is_a_broken_pipe() {
        let mut s = State::new();
        s.push(b"abc", false).unwrap();
        s.readers = 0;
        assert_eq!(s.push(b"x", false), Ok(Push::NoReaders));
        assert_eq!(s.push(b"x", true), Ok(Push::NoReaders));
        assert!(s.write_ready().1);
    }
}
