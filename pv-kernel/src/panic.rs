//! The panic handler: console message, then the host's `Panic` hypercall (crash report).

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

/// Capacity of the panic message buffer.
const MSG_MAX: usize = 2048;

/// The message buffer (in the image, so it has a guest-physical address).
struct PanicBuf(UnsafeCell<[u8; MSG_MAX]>);

// SAFETY: only the first panicking vCPU (the winner of `PANICKING`) ever touches the buffer.
unsafe impl Sync for PanicBuf {}

static PANIC_BUF: PanicBuf = PanicBuf(UnsafeCell::new([0; MSG_MAX]));
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Formats into a byte slice, truncating silently.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Reports a panic: the image's `#[panic_handler]` calls this.
pub fn report(info: &PanicInfo<'_>) -> ! {
    if !crate::stub::installed() {
        crate::arch::die();
    }
    crate::stub::irq_disable();
    if PANICKING.swap(true, Ordering::AcqRel) {
        // Another vCPU (or a nested panic) is already reporting; wait for the host to stop us.
        crate::hcall::panic(b"nested panic while panicking");
    }
    // SAFETY: we won `PANICKING`, so this is the only reference to the buffer ever made.
    let buf = unsafe { &mut *PANIC_BUF.0.get() };
    let mut w = SliceWriter { buf, len: 0 };
    let _ = match info.location() {
        Some(l) => write!(
            w,
            "panicked at {}:{}:{}: {}",
            l.file(),
            l.line(),
            l.column(),
            info.message()
        ),
        None => write!(w, "panicked: {}", info.message()),
    };
    let len = w.len;
    crate::console::flush_held();
    crate::hcall::console_write(b"\n");
    crate::hcall::console_write(&w.buf[..len]);
    crate::hcall::console_write(b"\n");
    crate::hcall::panic(&w.buf[..len])
}
