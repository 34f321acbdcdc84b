//! `print!`/`println!` over the console hypercall, on the kernel-log stream (stream 1: the
//! host shows it with standard output by default, hides it or sends it to standard error
//! when a program runs). Program output uses [`crate::hcall::console_write_stream`].
//!
//! A `print!` is formatted in its vCPU's own line buffer ([`LINES`]) and appended whole to
//! one shared, [`IrqLock`]-protected buffer in the kernel image, so lines from several vCPUs
//! never interleave (unless one call formats more than [`LINE_SIZE`] bytes, which is then
//! appended in pieces).
//!
//! **Written out without the lock.** The vCPU that finds the shared buffer to be written out
//! marks it (`writing`), copies it into [`OUT`] and makes the `ConsoleWrite` without the
//! shared lock; lines other vCPUs append meanwhile go out in its next round. A host call
//! blocks until the host's thread serves it, and vCPUs spinning for the lock meanwhile kept
//! that thread — and, once the host preempted it, the lock's holder — off the host's CPUs:
//! with 32 or 64 vCPUs on a 2-CPU host, the secondary vCPUs' "online" lines made a boot of
//! `/bin/true` take 0.05–1.6 s (78% of all CPU spinning in `print_fmt`); now 21–33 ms.
//!
//! **The boot's lines go out together.** Until [`boot_done`], lines stay in the buffer (it
//! is written out when another line would not fit, and before a shutdown or a panic report):
//! the host's hypercall thread is usually asleep during the boot, and each `ConsoleWrite`
//! waited 20–200 µs for it on the way to init, five times.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::irq::IrqLock;

/// Size of the shared buffer, and of the copy a write-out goes from.
const BUF_SIZE: usize = 8192;
/// Size of a vCPU's line buffer (a longer `print!` is handed over in pieces).
const LINE_SIZE: usize = 1024;

/// The shared buffer: what is waiting to go out, in order.
struct Console {
    buf: [u8; BUF_SIZE],
    len: usize,
    /// A vCPU is writing out a copy of what was here (outside this lock); lines added
    /// meanwhile go out in its next round.
    writing: bool,
}

impl Console {
    /// Hands the buffered bytes to the host under the lock (only where no other vCPU can be
    /// waiting on it for long: a shutdown, a panic report).
    fn flush(&mut self) {
        if self.len > 0 {
            crate::hcall::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

/// A line being formatted (`N` bytes at most at a time); full, it is handed to the shared
/// buffer ([`emit`]).
struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Line<N> {
    const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Formats `args` and hands the whole to the shared buffer.
    fn print(&mut self, args: fmt::Arguments<'_>) {
        self.len = 0;
        let _ = self.write_fmt(args);
        emit(&self.buf[..self.len]);
    }
}

impl<const N: usize> Write for Line<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == N {
                emit(&self.buf[..self.len]);
                self.len = 0;
            }
            let n = bytes.len().min(N - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// The console (a static in the image, so its guest-physical address is known).
static CONSOLE: IrqLock<Console> = IrqLock::new(Console {
    buf: [0; BUF_SIZE],
    len: 0,
    writing: false,
});

/// What the vCPU writing out the console hands to the host: a copy of the shared buffer,
/// taken under its lock and written without it. Only the vCPU that set
/// [`Console::writing`] takes this lock.
static OUT: IrqLock<[u8; BUF_SIZE]> = IrqLock::new([0; BUF_SIZE]);

/// Each vCPU's line buffer.
static LINES: [IrqLock<Line<LINE_SIZE>>; pvmux_hypercalls::MAX_VCPUS as usize] =
    [const { IrqLock::new(Line::new()) }; pvmux_hypercalls::MAX_VCPUS as usize];

/// Bytes a print formats at a time where its vCPU's buffer is not available (on the stack).
const FALLBACK_LINE: usize = 128;

/// Whether lines are held in the buffer (the boot, until [`boot_done`]).
static HELD: AtomicBool = AtomicBool::new(true);

/// Formats `args` and writes them to the console in one piece (held in the buffer during the
/// boot).
pub(crate) fn print_fmt(args: fmt::Arguments<'_>) {
    // Formatted in this vCPU's own buffer (events off: the thread stays on this vCPU). Busy
    // only when this vCPU prints from within a print (a panic while printing), and before
    // the stub is installed: those format on the stack, in smaller pieces.
    let line = crate::stub::installed()
        .then(|| LINES.get(crate::stub::vcpu_id() as usize))
        .flatten()
        .and_then(IrqLock::try_lock);
    match line {
        Some(mut line) => line.print(args),
        None => Line::<FALLBACK_LINE>::new().print(args),
    }
}

/// Appends `bytes` to the shared buffer and, after the boot (or when it is full), writes it
/// out — unless another vCPU is doing so, which then writes these bytes too. The host call
/// is made without the shared lock: a vCPU that prints meanwhile appends and goes on
/// instead of spinning until the host's thread has served the call.
fn emit(bytes: &[u8]) {
    loop {
        let mut console = CONSOLE.lock();
        let room = BUF_SIZE - console.len;
        if bytes.len() <= room {
            let at = console.len;
            console.buf[at..at + bytes.len()].copy_from_slice(bytes);
            console.len += bytes.len();
            if HELD.load(Ordering::Acquire) || console.writing {
                return;
            }
            write_out(console);
            return;
        }
        if !console.writing {
            // Full: out with it, then append.
            write_out(console);
            continue;
        }
        // Full while another vCPU writes it out (more than the buffer in flight at once):
        // wait for room without the lock.
        drop(console);
        core::hint::spin_loop();
    }
}

/// Writes out the shared buffer, `console` (not being written out), in rounds until it is
/// empty; each round copies it into [`OUT`] under its lock and makes the host call without.
fn write_out(mut console: crate::irq::IrqLockGuard<'_, Console>) {
    console.writing = true;
    let mut out = OUT.lock();
    loop {
        let n = console.len;
        if n == 0 {
            console.writing = false;
            return;
        }
        out[..n].copy_from_slice(&console.buf[..n]);
        console.len = 0;
        drop(console);
        crate::hcall::console_write(&out[..n]);
        console = CONSOLE.lock();
    }
}

/// The boot is over: the lines held so far go out, and every later line at once.
pub(crate) fn boot_done() {
    let console = CONSOLE.lock();
    HELD.store(false, Ordering::Release);
    if !console.writing {
        write_out(console);
    }
}

/// Writes out held lines before the kernel stops (a shutdown or a panic report), unless the
/// console is in use (a panic while printing: its lines are lost, not the report).
pub(crate) fn flush_held() {
    if let Some(mut console) = CONSOLE.try_lock() {
        console.flush();
    }
}

/// Writes several raw pieces in order with nothing from other vCPUs in between.
pub(crate) fn write_pieces(pieces: &[&[u8]]) {
    let mut console = CONSOLE.lock();
    console.flush();
    for p in pieces {
        crate::hcall::console_write(p);
    }
}

/// Prints to the tenant console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the tenant console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
