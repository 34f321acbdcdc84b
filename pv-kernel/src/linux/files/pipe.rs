//! Pipes: a 64 KiB byte buffer between a read end and a write end.
//!
//! Linux semantics: reads block until data arrives or every writer is gone (then 0 = end of
//! file); writes block until there is room, fail with `EPIPE` (and `SIGPIPE`) once every
//! reader is gone, and writes of at most [`PIPE_BUF`] bytes are atomic (never interleaved
//! with other writers). `O_NONBLOCK` turns waiting into `EAGAIN`; a signal into `EINTR` (or a
//! short count once something was transferred).

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

/// The buffer and the number of open ends.
struct State {
    buf: VecDeque<u8>,
    readers: u32,
    writers: u32,
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
}

impl Pipe {
    /// A new pipe with one reader and one writer.
    pub(crate) fn new(now_ns: u64) -> Arc<Self> {
        Arc::new(Self {
            state: IrqLock::new(State {
                buf: VecDeque::new(),
                readers: 1,
                writers: 1,
            }),
            wq: WaitQueue::new(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ctime_ns: now_ns,
        })
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
        self.notify();
    }

    /// A write end is closed.
    pub(crate) fn close_writer(&self) {
        {
            let mut s = self.state.lock();
            s.writers = s.writers.saturating_sub(1);
        }
        self.notify();
    }

    /// Bytes buffered (`FIONREAD`).
    pub(crate) fn available(&self) -> usize {
        self.state.lock().buf.len()
    }

    /// Readiness of the read end: (data or end of file, writers gone).
    pub(crate) fn read_ready(&self) -> (bool, bool) {
        let s = self.state.lock();
        (!s.buf.is_empty(), s.writers == 0)
    }

    /// Readiness of the write end: (room for an atomic write, readers gone).
    pub(crate) fn write_ready(&self) -> (bool, bool) {
        let s = self.state.lock();
        (PIPE_SIZE - s.buf.len() >= PIPE_BUF, s.readers == 0)
    }

    /// Reads up to `out.len()` bytes; 0 at end of file (no writers and empty).
    pub(crate) fn read(&self, out: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut s = self.state.lock();
                if !s.buf.is_empty() {
                    let n = out.len().min(s.buf.len());
                    for (dst, src) in out[..n].iter_mut().zip(s.buf.drain(..n)) {
                        *dst = src;
                    }
                    drop(s);
                    self.notify();
                    return Ok(n);
                }
                if s.writers == 0 {
                    return Ok(0);
                }
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
            {
                let mut s = self.state.lock();
                if s.readers == 0 {
                    drop(s);
                    signal::raise_current(sig::SIGPIPE);
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EPIPE)
                    };
                }
                let free = PIPE_SIZE - s.buf.len();
                let rest = data.len() - done;
                let fits = if atomic { free >= rest } else { free > 0 };
                if fits && rest > 0 {
                    let n = rest.min(free);
                    s.buf.try_reserve(n).map_err(|_| Errno::ENOMEM)?;
                    s.buf.extend(&data[done..done + n]);
                    done += n;
                    drop(s);
                    self.notify();
                    if done == data.len() {
                        return Ok(done);
                    }
                    continue;
                }
                if rest == 0 {
                    return Ok(done);
                }
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
                PIPE_SIZE - s.buf.len() >= need || s.readers == 0 || signal::pending()
            });
        }
    }
}
