//! Single transitions: an in-sandbox stub call, host hypercalls (spinning and blocking), and
//! an exception round trip.

use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use pvmux_hypercalls::hypercall::HC_FLAG_NOSPIN;

use super::clock::{elapsed_ps, rdtsc};
use super::{collect, BenchError, Mode};
use crate::irq::IrqGuard;
use crate::stub;
use crate::trap::STATS;

/// Stub `null` calls timed together in one `call.in_sandbox` sample.
const CALL_BATCH: u64 = 1000;

/// `call.in_sandbox`: one call of the stub's `null` entry (no system call). A single call is
/// a few nanoseconds, too short to time alone: each sample times a batch of [`CALL_BATCH`]
/// back-to-back indirect calls (the entry address is loaded once) and divides by the batch.
pub(super) fn call_in_sandbox(mode: Mode) -> Result<Vec<u64>, BenchError> {
    let null = stub::null_entry();
    collect(50, mode.pick(1000, 10_000), || {
        let _irq = IrqGuard::new();
        let mut sum = 0u64;
        let t0 = rdtsc();
        for _ in 0..CALL_BATCH {
            sum = sum.wrapping_add(core::hint::black_box(null()));
        }
        let t1 = rdtsc();
        if sum != 0 {
            return Err(BenchError::Failed(format!("null returned {sum}")));
        }
        Ok(elapsed_ps(t0, t1) / CALL_BATCH)
    })
}

/// One timed `Nop` hypercall with `flags`, with events disabled (the doorbell is per vCPU).
fn timed_nop(flags: u64) -> Result<u64, BenchError> {
    let _irq = IrqGuard::new();
    let t0 = rdtsc();
    let ret = crate::hcall::nop(flags);
    let t1 = rdtsc();
    if ret != 0 {
        return Err(BenchError::Failed(format!("Nop returned {ret}")));
    }
    Ok(elapsed_ps(t0, t1))
}

/// `hypercall.spin`: round trip of one `Hypercall::Nop` without flags, back to back: the stub
/// spins for the answer and the host's service thread spins after each recent request.
/// One call per sample.
pub(super) fn hypercall_spin(mode: Mode) -> Result<Vec<u64>, BenchError> {
    collect(100, mode.pick(2000, 20_000), || timed_nop(0))
}

/// Pause between `hypercall.block` samples: long enough for the host's service thread to be
/// asleep in its futex (it does not spin after a `NOSPIN` request anyway).
const BLOCK_GAP_NS: u64 = 1_000_000;

/// `hypercall.block`: round trip of one `Hypercall::Nop` with `HC_FLAG_NOSPIN` (the guest
/// blocks on its futex at once). Before each sample the thread sleeps ~1 ms (the vCPU
/// halts), so the host thread is asleep when the request comes. One call per sample.
pub(super) fn hypercall_block(mode: Mode) -> Result<Vec<u64>, BenchError> {
    collect(5, mode.pick(100, 1000), || {
        crate::time::sleep_ns(BLOCK_GAP_NS);
        timed_nop(HC_FLAG_NOSPIN)
    })
}

/// `exception.int3`: `int3` → stub signal handler → guest trap entry → guest handler
/// (counts the breakpoint) → `iret` → back after the `int3`. One `int3` per sample, events
/// disabled (exceptions are delivered regardless).
pub(super) fn exception_int3(mode: Mode) -> Result<Vec<u64>, BenchError> {
    collect(50, mode.pick(1000, 10_000), || {
        let _irq = IrqGuard::new();
        let b0 = STATS.breakpoints.load(Ordering::Relaxed);
        let t0 = rdtsc();
        // SAFETY: `int3` traps to our handler, which counts it and resumes after it; the
        // frame is written below the red zone, so nothing of ours is clobbered.
        unsafe { core::arch::asm!("int3") };
        let t1 = rdtsc();
        let n = STATS.breakpoints.load(Ordering::Relaxed) - b0;
        if n != 1 {
            return Err(BenchError::Failed(format!(
                "{n} breakpoints counted, expected 1"
            )));
        }
        Ok(elapsed_ps(t0, t1))
    })
}
