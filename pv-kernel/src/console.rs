//! `print!`/`println!` over the console hypercall, on the kernel-log stream (stream 1: the
//! host shows it with standard output by default, hides it or sends it to standard error
//! when a program runs). Program output uses [`crate::hcall::console_write_stream`].
//!
//! One [`IrqLock`]-protected buffer in the kernel image: a whole `print!` is formatted and
//! written under the lock, so lines from several vCPUs never interleave (unless one call
//! formats more than [`BUF_SIZE`] bytes, which is then written in pieces).
//!
//! **The boot's lines go out together.** Until [`boot_done`], lines stay in the buffer (it
//! is written out when another line would not fit, and before a shutdown or a panic report):
//! the host's hypercall thread is usually asleep during the boot, and each `ConsoleWrite`
//! waited 20–200 µs for it on the way to init, five times.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::irq::IrqLock;

/// Size of the console buffer.
const BUF_SIZE: usize = 1024;

/// A console line buffer.
struct Console {
    buf: [u8; BUF_SIZE],
    len: usize,
}

impl Console {
    /// Hands the buffered bytes to the host.
    fn flush(&mut self) {
        if self.len > 0 {
            crate::hcall::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == BUF_SIZE {
                self.flush();
            }
            let n = bytes.len().min(BUF_SIZE - self.len);
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
});

/// Whether lines are held in the buffer (the boot, until [`boot_done`]).
static HELD: AtomicBool = AtomicBool::new(true);

/// Formats `args` and writes them to the console in one piece (held in the buffer during the
/// boot).
pub(crate) fn print_fmt(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    let _ = console.write_fmt(args);
    if !HELD.load(Ordering::Relaxed) || console.len > BUF_SIZE / 2 {
        console.flush();
    }
}

/// The boot is over: the lines held so far go out, and every later line at once.
pub(crate) fn boot_done() {
    HELD.store(false, Ordering::Relaxed);
    CONSOLE.lock().flush();
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
