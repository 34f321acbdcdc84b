//! `interrupt.timer` and its hook in the event path.
//!
//! A per-vCPU *bench deadline* slot: the benchmark stores a deadline `D` there and lets the
//! scheduler arm the timer ([`crate::sched::rearm_timer`] takes the earlier of its own
//! deadline and [`timer_deadline`]), so the scheduler's own timer handling is undisturbed and
//! any re-arm while waiting keeps `D`. The trap dispatcher reads the TSC first thing and, for
//! an event, calls [`on_event`], which records the entry time once `D` has passed and clears
//! the slot; the scheduler's `handle_event` then re-arms its own deadline as usual.
//!
//! Time base: `D` and the entry time are both guest time (TSC); the stub arms its host timer
//! relative to the guest's own clock, so calibration error does not shift the deadline.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::MAX_VCPUS;

use super::clock::{guest_ps, rdtsc, spin_until};
use super::{collect, BenchError, Mode};
use crate::irq::IrqGuard;
use crate::stub;

/// One vCPU's bench deadline.
struct Slot {
    /// Deadline in guest ns; 0 = none armed.
    deadline_ns: AtomicU64,
    /// Guest time (ps) at which the event entry saw the deadline pass; 0 = not yet.
    hit_ps: AtomicU64,
}

/// Per-vCPU slots, indexed by vCPU id.
static SLOTS: [Slot; MAX_VCPUS as usize] = [const {
    Slot {
        deadline_ns: AtomicU64::new(0),
        hit_ps: AtomicU64::new(0),
    }
}; MAX_VCPUS as usize];

/// Number of armed slots: lets [`on_event`] return after one load when no benchmark runs.
static ARMED: AtomicU32 = AtomicU32::new(0);

/// This vCPU's slot (events disabled, or a thread pinned to this vCPU).
fn this_slot() -> &'static Slot {
    &SLOTS[stub::vcpu_id() as usize % SLOTS.len()]
}

/// The bench deadline armed on vCPU `cpu` in guest ns, `u64::MAX` if none (for the
/// scheduler's timer arming).
pub(crate) fn timer_deadline(cpu: usize) -> u64 {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return u64::MAX;
    }
    match SLOTS[cpu % SLOTS.len()].deadline_ns.load(Ordering::Relaxed) {
        0 => u64::MAX,
        d => d,
    }
}

/// Event-path hook: `entry_tsc` is the TSC read first thing in the trap dispatcher, `bits`
/// records the hit if this vCPU's deadline has passed.
pub(crate) fn on_event(entry_tsc: u64) {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let slot = this_slot();
    let d = slot.deadline_ns.load(Ordering::Relaxed);
    if d == 0 {
        return;
    }
    let t = guest_ps(entry_tsc);
    if t < d.saturating_mul(1000) {
        // Another event (a kick, the scheduler's own timer) before the deadline.
        return;
    }
    slot.hit_ps.store(t, Ordering::Relaxed);
    if slot.deadline_ns.swap(0, Ordering::Release) != 0 {
        ARMED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Clears this vCPU's slot if still armed (events disabled by the caller).
fn disarm(slot: &Slot) {
    if slot.deadline_ns.swap(0, Ordering::Relaxed) != 0 {
        ARMED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How far ahead of "now" each sample's deadline lies.
const LEAD_NS: u64 = 200_000;
/// Give up on a sample whose event has not come after this long.
const TIMEOUT_NS: u64 = 100_000_000;
/// `interrupt.timer`: arm the vCPU timer at `D = now + 200 µs` (through the bench deadline
/// slot), busy-wait with events enabled (no stub calls, so the host signal interrupts guest
/// code); the sample is the guest time at the event entry's Rust handler minus `D`.
pub(super) fn interrupt_timer(mode: Mode) -> Result<Vec<u64>, BenchError> {
    let slot = {
        let _irq = IrqGuard::new();
        this_slot()
    };
    collect(5, mode.pick(100, 1000), || {
        let d = {
            let _irq = IrqGuard::new();
            let d = guest_ps(rdtsc()) / 1000 + LEAD_NS;
            slot.hit_ps.store(0, Ordering::Relaxed);
            if slot.deadline_ns.swap(d, Ordering::Relaxed) == 0 {
                ARMED.fetch_add(1, Ordering::Relaxed);
            }
            crate::sched::rearm_timer();
            d
        };
        let got = spin_until(TIMEOUT_NS, || slot.hit_ps.load(Ordering::Acquire) != 0);
        if !got {
            let _irq = IrqGuard::new();
            disarm(slot);
            crate::sched::rearm_timer();
            return Err(BenchError::Failed("no timer event within 100 ms".into()));
        }
        Ok(slot
            .hit_ps
            .load(Ordering::Acquire)
            .saturating_sub(d.saturating_mul(1000)))
    })
}
