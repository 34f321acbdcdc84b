//! The virtual interrupt flag: save/restore guards and a spin lock that disables events.
//!
//! Rule: every lock in this kernel is an [`IrqLock`]. A lock holder can then neither be
//! interrupted by an event handler on its own vCPU nor be preempted (preemption only happens
//! from the event handler), so no vCPU ever spins on a lock held by a thread that cannot run.
//!
//! In host unit tests (`cfg(test)`) there is no stub and no virtual interrupt flag: disabling
//! and enabling events are no-ops, so code that takes an [`IrqLock`] runs on the host as an
//! ordinary spin lock.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

#[cfg(not(test))]
use crate::stub;

/// Disables events on creation and restores the previous state on drop.
///
/// The saved state belongs to the current *thread*: if the thread is switched out and resumes
/// on another vCPU, dropping the guard restores the flag there, which is what a thread wants.
pub(crate) struct IrqGuard {
    was_enabled: bool,
    _not_send: PhantomData<*const ()>,
}

impl IrqGuard {
    /// Disables events, remembering whether they were enabled.
    pub(crate) fn new() -> Self {
        Self {
            was_enabled: disable(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        if self.was_enabled {
            enable();
        }
    }
}

/// Clears the virtual interrupt flag; returns whether it was set.
#[cfg(not(test))]
fn disable() -> bool {
    stub::irq_disable()
}

/// Sets the virtual interrupt flag.
#[cfg(not(test))]
fn enable() {
    stub::irq_enable()
}

/// Host unit tests: no virtual interrupt flag (events are never "enabled").
#[cfg(test)]
fn disable() -> bool {
    false
}

/// Host unit tests: never called (see [`disable`]).
#[cfg(test)]
fn enable() {}

/// A spin lock whose holder runs with events disabled.
pub(crate) struct IrqLock<T> {
    inner: spin::Mutex<T>,
}

/// Holds an [`IrqLock`]; unlocks, then restores the interrupt flag, on drop.
pub(crate) struct IrqLockGuard<'a, T> {
    // Field order matters: the mutex is released before events are re-enabled.
    guard: spin::MutexGuard<'a, T>,
    _irq: IrqGuard,
}

impl<T> IrqLock<T> {
    /// A new unlocked lock.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// Exclusive access without locking (the caller owns the lock).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Disables events, then takes the lock.
    pub(crate) fn lock(&self) -> IrqLockGuard<'_, T> {
        let irq = IrqGuard::new();
        IrqLockGuard {
            guard: self.inner.lock(),
            _irq: irq,
        }
    }

    /// Like [`IrqLock::lock`], but gives up at once if the lock is held.
    pub(crate) fn try_lock(&self) -> Option<IrqLockGuard<'_, T>> {
        let irq = IrqGuard::new();
        let guard = self.inner.try_lock()?;
        Some(IrqLockGuard { guard, _irq: irq })
    }
}

impl<T> Deref for IrqLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
