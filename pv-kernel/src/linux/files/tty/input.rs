//! Console input: asking the host for it (`ConsoleRead`, never blocking), and the reads,
//! readiness checks and `FIONREAD` of the console, with or without the line discipline.

use core::sync::atomic::Ordering;

use super::termios::vc;
use super::{ldisc, with_console, Console, CONSOLE, INPUT_SEQ, INPUT_WQ};
use crate::fs::Errno;
use crate::linux::signal;

/// Bytes asked of the host per `ConsoleRead`.
const READ_CHUNK: usize = 4096;

/// What one `ConsoleRead` gave.
pub(super) enum Fill {
    /// This many bytes arrived in `scratch`.
    Data(usize),
    /// End of input.
    Eof,
    /// Nothing buffered on the host yet (or the call failed).
    Empty,
}

impl Console {
    /// Asks the host for input (never blocks); data lands in `scratch`.
    pub(super) fn fill(&mut self) -> Fill {
        if self.scratch.len() != READ_CHUNK {
            self.scratch = alloc::vec![0; READ_CHUNK];
        }
        let Some(gpa) = crate::boot::virt_to_phys(self.scratch.as_ptr() as u64, READ_CHUNK as u64)
        else {
            return Fill::Empty;
        };
        match crate::hcall::console_read(gpa, READ_CHUNK as u64) {
            Ok(0) => Fill::Eof,
            Ok(n) => Fill::Data(usize::try_from(n).map_or(READ_CHUNK, |n| n.min(READ_CHUNK))),
            // `Busy` (nothing yet) and any error: nothing to read now.
            Err(_) => Fill::Empty,
        }
    }

    /// True if a read would not block (input buffered, or end of input), asking the host if
    /// needed. Without the line discipline.
    fn ready(&mut self) -> bool {
        if !self.input.is_empty() || self.eof {
            return true;
        }
        match self.fill() {
            Fill::Data(n) => {
                self.input.extend(&self.scratch[..n]);
                true
            }
            Fill::Eof => {
                self.eof = true;
                true
            }
            Fill::Empty => false,
        }
    }

    /// Moves buffered input to `out`: at most one line in canonical mode on a terminal.
    /// Without the line discipline.
    fn take(&mut self, out: &mut [u8], lines: bool) -> usize {
        let mut n = out.len().min(self.input.len());
        if lines && self.canonical() {
            if let Some(nl) = self.input.iter().take(n).position(|&b| b == b'\n') {
                n = nl + 1;
            }
        }
        self.drain_to(out, n)
    }

    /// Moves the first `n` bytes of input to `out`.
    pub(super) fn drain_to(&mut self, out: &mut [u8], n: usize) -> usize {
        for (dst, src) in out[..n].iter_mut().zip(self.input.drain(..n)) {
            *dst = src;
        }
        n
    }
}

/// What a read on the terminal does next.
enum Step {
    /// Return this.
    Done(usize),
    /// Wait for input, or until this guest time (`VTIME`).
    Wait(Option<u64>),
}

/// Reads console input into `out`: blocks until some arrives (unless `nonblock`); 0 at end
/// of input. `tty` selects terminal (line-at-a-time) behaviour.
pub(crate) fn console_read(out: &mut [u8], nonblock: bool, tty: bool) -> Result<usize, Errno> {
    if out.is_empty() {
        return Ok(0);
    }
    if ldisc() {
        return tty_read(out, nonblock);
    }
    loop {
        let seq = INPUT_SEQ.load(Ordering::Acquire);
        {
            let mut c = CONSOLE.lock();
            if c.ready() {
                if c.input.is_empty() {
                    c.eof = false;
                    return Ok(0);
                }
                return Ok(c.take(out, tty));
            }
        }
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        INPUT_WQ.wait_until(|| INPUT_SEQ.load(Ordering::Acquire) != seq || signal::pending());
    }
}

/// How often a read with a `VTIME` timeout looks at the clock.
const VTIME_TICK_NS: u64 = 10_000_000;

/// A read through the line discipline: canonical mode waits for a line; non-canonical mode
/// follows `VMIN` and `VTIME` (in tenths of a second).
fn tty_read(out: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
    let start = crate::time::now_ns();
    loop {
        let seq = INPUT_SEQ.load(Ordering::Acquire);
        let step = with_console(|c| {
            c.pump();
            if c.tty_available() {
                if c.canonical() {
                    return Step::Done(c.tty_take(out));
                }
                let vmin = usize::from(c.termios.cc[vc::VMIN]).min(out.len());
                let vtime = u64::from(c.termios.cc[vc::VTIME]) * 100_000_000;
                let now = crate::time::now_ns();
                if c.input.len() >= vmin || c.eof || (vtime > 0 && now >= c.last_rx + vtime) {
                    return Step::Done(c.tty_take(out));
                }
                return Step::Wait((vtime > 0).then_some(c.last_rx + vtime));
            }
            if c.eof {
                c.eof = false;
                return Step::Done(0);
            }
            if c.canonical() {
                return Step::Wait(None);
            }
            match (c.termios.cc[vc::VMIN], c.termios.cc[vc::VTIME]) {
                (0, 0) => Step::Done(0),
                (0, vtime) => {
                    let deadline = start + u64::from(vtime) * 100_000_000;
                    if crate::time::now_ns() >= deadline {
                        Step::Done(0)
                    } else {
                        Step::Wait(Some(deadline))
                    }
                }
                _ => Step::Wait(None),
            }
        });
        let deadline = match step {
            Step::Done(n) => return Ok(n),
            Step::Wait(d) => d,
        };
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        if signal::pending() {
            return Err(Errno::EINTR);
        }
        match deadline {
            None => INPUT_WQ
                .wait_until(|| INPUT_SEQ.load(Ordering::Acquire) != seq || signal::pending()),
            Some(d) => {
                let now = crate::time::now_ns();
                crate::sched::sleep_until(d.min(now + VTIME_TICK_NS));
            }
        }
    }
}

/// True if a console read would not block.
pub(crate) fn console_readable() -> bool {
    if ldisc() {
        return with_console(|c| c.tty_ready());
    }
    CONSOLE.lock().ready()
}

/// Bytes of console input buffered (`FIONREAD`), after asking the host for more.
pub(crate) fn console_available() -> usize {
    if ldisc() {
        return with_console(|c| {
            c.pump();
            c.tty_pending()
        });
    }
    let mut c = CONSOLE.lock();
    c.ready();
    c.input.len()
}
