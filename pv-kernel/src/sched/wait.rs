//! Wait queues and one-shot completions.
//!
//! Blocking primitives tolerate spurious wake-ups: a waiter always re-checks its condition.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::thread::Thread;
use crate::irq::{IrqGuard, IrqLock};

/// Threads waiting for a condition.
pub(crate) struct WaitQueue {
    waiters: IrqLock<Vec<Arc<Thread>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub(crate) const fn new() -> Self {
        Self {
            waiters: IrqLock::new(Vec::new()),
        }
    }

    /// Blocks the current thread until `cond()` is true. `cond` must become true only through
    /// code that calls [`WaitQueue::wake_all`] afterwards.
    pub(crate) fn wait_until(&self, cond: impl Fn() -> bool) {
        loop {
            let _irq = IrqGuard::new();
            if cond() {
                return;
            }
            let cur = super::current();
            super::prepare_block(&cur);
            self.waiters.lock().push(cur.clone());
            if cond() {
                super::cancel_block(&cur);
                self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &cur));
                return;
            }
            drop(cur);
            super::schedule();
        }
    }

    /// Like [`WaitQueue::wait_until`], but gives up at guest time `deadline` (ns): true if
    /// `cond()` held, false on the deadline.
    pub(crate) fn wait_until_deadline(&self, cond: impl Fn() -> bool, deadline: u64) -> bool {
        loop {
            let _irq = IrqGuard::new();
            if cond() {
                return true;
            }
            if crate::time::now_ns() >= deadline {
                return false;
            }
            let cur = super::current();
            super::prepare_block(&cur);
            self.waiters.lock().push(cur.clone());
            if cond() {
                super::cancel_block(&cur);
                self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &cur));
                return true;
            }
            super::timed_block(deadline);
            self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &cur));
        }
    }

    /// Wakes every waiter.
    pub(crate) fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock());
        for t in &waiters {
            super::wake(t);
        }
    }
}

/// A one-shot event: `wait` blocks until `signal` was called once.
pub(crate) struct Completion {
    done: AtomicBool,
    queue: WaitQueue,
}

impl Completion {
    /// A new, unsignalled completion.
    pub(crate) const fn new() -> Self {
        Self {
            done: AtomicBool::new(false),
            queue: WaitQueue::new(),
        }
    }

    /// Blocks until signalled.
    pub(crate) fn wait(&self) {
        self.queue.wait_until(|| self.done.load(Ordering::SeqCst));
    }

    /// Whether it has been signalled.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Signals the completion and wakes its waiters.
    pub(crate) fn signal(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.queue.wake_all();
    }
}
