//! The timer daemon: one kernel thread that sleeps until the earliest expiry of the armed
//! timers (the scheduler's sleep list wakes it, `sched::timed_block`), fires what is due and
//! sleeps again. Arming a timer lists it here and wakes the daemon so it can sleep less.
//! CPU-time timers are looked at no earlier than their clock could reach the expiry.
//!
//! After a look that fired a timer, the daemon sleeps at least [`MIN_GAP_NS`]: however many
//! timers of however short an interval a program arms (a timerfd or `setitimer` of 1 ns),
//! the daemon wakes at most 10,000 times a second; the counts of expirations stay exact
//! (they are computed from the time), only their notification is batched.
//!
//! The list holds weak references: a timer whose owner dropped it (a closed timerfd, a
//! deleted POSIX timer, an exited process) falls out at the next look.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::timer::{Check, Timer};

/// The shortest sleep after a look that fired a timer.
const MIN_GAP_NS: u64 = 100_000;
use crate::irq::IrqLock;
use crate::sched::thread::Thread;

/// The timers the daemon watches.
static WATCHED: IrqLock<Vec<Weak<Timer>>> = IrqLock::new(Vec::new());
/// Bumped by every [`watch`]: the daemon re-scans before sleeping if it changed.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The daemon's kernel thread, once started (started by the first [`watch`]; a start that
/// failed for want of memory is tried again by the next).
static DAEMON: IrqLock<Option<Arc<Thread>>> = IrqLock::new(None);

/// Starts watching `t` (just armed) and wakes the daemon.
pub(super) fn watch(t: &Arc<Timer>) {
    {
        let mut w = WATCHED.lock();
        if !t.listed.swap(true, Ordering::AcqRel) {
            if w.try_reserve(1).is_err() {
                t.listed.store(false, Ordering::Release);
                return;
            }
            w.push(Arc::downgrade(t));
        }
    }
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let running = DAEMON.lock().clone();
    match running {
        Some(d) => crate::sched::wake(&d),
        None => {
            let mut slot = DAEMON.lock();
            if slot.is_none() {
                // A new thread is runnable at once: it scans before it first sleeps.
                *slot = crate::sched::spawn("timers", None, daemon_main)
                    .ok()
                    .map(|h| h.thread().clone());
            }
        }
    }
    // The daemon looks at the new timer now, not when a busy caller's slice ends (which
    // would delay a 200 µs `setitimer`'s first expiry by up to the 10 ms slice).
    crate::sched::request_resched();
}

/// The daemon's body.
fn daemon_main() {
    loop {
        let generation = GENERATION.load(Ordering::Acquire);
        let wake_at = scan();
        let cur = crate::sched::current();
        crate::sched::prepare_block(&cur);
        if GENERATION.load(Ordering::Acquire) != generation {
            crate::sched::cancel_block(&cur);
            continue;
        }
        crate::sched::timed_block(wake_at);
    }
}

/// Fires the due timers; returns when to look again (guest ns, `u64::MAX`: never).
fn scan() -> u64 {
    let list: Vec<Weak<Timer>> = WATCHED.lock().clone();
    let mut wake_at = u64::MAX;
    let mut fired = false;
    let start = crate::time::now_ns();
    for w in &list {
        let Some(t) = w.upgrade() else { continue };
        let looked = t.check(crate::time::now_ns());
        fired |= looked.fired;
        if let Check::At(at) = looked.check {
            wake_at = wake_at.min(at);
        }
    }
    if fired {
        wake_at = wake_at.max(start.saturating_add(MIN_GAP_NS));
    }
    // Forget the timers that are gone or disarmed. A timer armed meanwhile is armed before
    // `watch` takes the lock, so it is either kept here or listed again by `watch`.
    WATCHED.lock().retain(|w| match w.upgrade() {
        Some(t) if t.is_armed() => true,
        Some(t) => {
            t.listed.store(false, Ordering::Release);
            false
        }
        None => false,
    });
    wake_at
}
