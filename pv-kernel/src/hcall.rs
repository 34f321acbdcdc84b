//! Host hypercalls (console, shutdown and its record, panic, wall clock) over the doorbell.
//! (User-mode calls such as `SpaceCreate` and `ConsoleRead` belong to `crate::linux`.)
//!
//! Every call runs with events disabled: the doorbell is per vCPU, so a thread must neither be
//! preempted and migrated nor interrupted by an event handler that rings the same doorbell.
//! Buffers are passed by guest-physical address ([`crate::boot::virt_to_phys`]).

use pvmux_hypercalls::hypercall::{stream, CONSOLE_WRITE_MAX, PANIC_MSG_MAX};
use pvmux_hypercalls::Hypercall;

use crate::irq::IrqGuard;

/// Makes host hypercall `nr` with up to three arguments.
fn call(nr: Hypercall, a0: u64, a1: u64, a2: u64) -> i64 {
    let _irq = IrqGuard::new();
    crate::stub::hypercall(nr as u64, a0, a1, a2, 0, 0)
}

/// Writes `bytes` to the kernel log (console stream 1, which the host routes: with standard
/// output by default, hidden or to standard error when a program runs).
pub(crate) fn console_write(bytes: &[u8]) {
    console_write_stream(stream::KERNEL_LOG, bytes);
}

/// Writes `bytes` to console `stream` ([`stream::STDOUT`], [`stream::KERNEL_LOG`] or
/// [`stream::STDERR`]). Bytes outside the image and direct map are dropped.
pub(crate) fn console_write_stream(stream: u64, bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        let va = chunk.as_ptr() as u64;
        if let Some(gpa) = crate::boot::virt_to_phys(va, chunk.len() as u64) {
            call(Hypercall::ConsoleWrite, gpa, chunk.len() as u64, stream);
        }
    }
}

/// Ends the tenant with exit code `code & 0xff`.
pub(crate) fn shutdown(code: u64) -> ! {
    call(Hypercall::Shutdown, code, 0, 0);
    // The host does not return from a shutdown; if it does, crash loudly.
    crate::arch::die()
}

/// Ends the tenant with exit code `code & 0xff`, telling the host how init ended.
pub(crate) fn shutdown_with_record(code: u64, record: &pvmux_hypercalls::ShutdownRecord) -> ! {
    let va = record as *const _ as u64;
    let len = core::mem::size_of_val(record) as u64;
    let gpa = crate::boot::virt_to_phys(va, len).unwrap_or(0);
    call(Hypercall::Shutdown, code, gpa, 0);
    crate::arch::die()
}

/// Reports a kernel panic with `msg`; the host records a crash report. Does not return.
pub(crate) fn panic(msg: &[u8]) -> ! {
    let len = msg.len().min(PANIC_MSG_MAX as usize);
    if let Some(gpa) = crate::boot::virt_to_phys(msg.as_ptr() as u64, len as u64) {
        call(Hypercall::Panic, gpa, len as u64, 0);
    }
    shutdown(125)
}

/// Host wall-clock time in ns since the Unix epoch.
#[cfg(feature = "diagnostics")]
pub(crate) fn wall_clock_ns() -> u64 {
    call(Hypercall::WallClock, 0, 0, 0).max(0) as u64
}
