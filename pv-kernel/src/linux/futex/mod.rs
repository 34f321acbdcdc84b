//! Futexes, keyed like Linux keys them: a word in shared memory (`MAP_SHARED` anonymous
//! memory, whose frames never change) by the guest-physical address of the word, so that
//! processes sharing the memory meet on it; any other word — and any word of an operation
//! with `FUTEX_PRIVATE_FLAG` — by its address space and virtual address, not by its frame,
//! which a copy-on-write break after `fork` replaces between a thread's `FUTEX_WAIT` and the
//! `FUTEX_WAKE` meant for it.
//!
//! [`op`] decodes the arguments (commands, flags, timeouts, wake counts, `FUTEX_WAKE_OP`'s
//! operation) and [`queues`] keeps the waiters; both are pure and unit-tested on the host.
//! `FUTEX_REQUEUE` and `FUTEX_CMP_REQUEUE` wake every waiter instead of moving them (a
//! spurious wake-up, which every futex user must accept).

#![deny(unsafe_code)]

mod op;
mod queues;
pub(crate) mod robust;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{Errno, SysResult};
use crate::irq::IrqLock;
use crate::sched::thread::Thread;
use op::{wake_limit, Cmd, Op, Timeout, WakeOp};
use queues::{Key, Queues};

struct Waiter {
    thread: Arc<Thread>,
    woken: AtomicBool,
    bitset: u32,
}

static TABLE: IrqLock<Queues<Arc<Waiter>>> = IrqLock::new(Queues::new());

/// Every waiter's bitset matches this.
const BITSET_MATCH_ANY: u32 = u32::MAX;

/// The key of the futex word at user address `uaddr` of the current process, for an
/// operation with `FUTEX_PRIVATE_FLAG` if `private`.
fn key(uaddr: u64, private: bool) -> Result<Key, Errno> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    // The word must be readable (this also populates it).
    super::space::current_copy(uaddr, 4, false, |_, _| {})?;
    let t = super::task::current_task();
    let space = t.process.space().ok_or(Errno::EFAULT)?;
    let mm = space.mm.lock();
    let (_, vma) = mm.vma_at(uaddr).ok_or(Errno::EFAULT)?;
    let shared = if vma.shm.is_some() && !private {
        Some(mm.frame_of(uaddr).ok_or(Errno::EFAULT)? + (uaddr & 4095))
    } else {
        None
    };
    Ok(Key::of(
        private,
        Arc::as_ptr(&space) as usize,
        uaddr,
        shared,
    ))
}

/// The end of thread `tid` (it exits, or execs) whose robust list starts at `head` (0:
/// none; `robust.rs`): each robust futex word it still owns is marked `FUTEX_OWNER_DIED`
/// and one waiter woken; a lock it was taking (the pending entry, still 0) wakes one waiter
/// too, who then takes it. Words it cannot read or write are left as they are.
pub(crate) fn release_robust_list(tid: i32, head: u64) {
    if head == 0 {
        return;
    }
    let read = |va: u64| super::uaccess::read_val::<u64>(va).ok();
    for d in robust::entries(head, read) {
        if !d.uaddr.is_multiple_of(4) {
            continue;
        }
        let Ok(cur) = super::uaccess::read_val::<u32>(d.uaddr) else {
            continue;
        };
        if d.pending && !d.pi && cur == 0 {
            let _ = wake_addr(d.uaddr, 1);
            continue;
        }
        let mut wake = false;
        let r =
            super::uaccess::atomic_update_u32(d.uaddr, |old| match robust::owner_died(old, tid) {
                Some((new, w)) => {
                    wake = w;
                    new
                }
                None => {
                    wake = false;
                    old
                }
            });
        if r.is_ok() && wake {
            let _ = wake_addr(d.uaddr, 1);
        }
    }
}

/// Wakes up to `n` waiters on `uaddr` (also used for CLONE_CHILD_CLEARTID, a shared wake).
pub(crate) fn wake_addr(uaddr: u64, n: u32) -> SysResult {
    let k = key(uaddr, false)?;
    Ok(wake_key(k, wake_limit(n), BITSET_MATCH_ANY))
}

/// Wakes up to `limit` waiters of `k` whose bitset intersects `bitset`; returns how many.
fn wake_key(k: Key, limit: usize, bitset: u32) -> u64 {
    let woken = TABLE.lock().take(k, limit, |w| w.bitset & bitset != 0);
    for w in &woken {
        w.woken.store(true, Ordering::Release);
        crate::sched::wake(&w.thread);
    }
    woken.len() as u64
}

fn wait(uaddr: u64, private: bool, val: u32, deadline: u64, bitset: u32) -> SysResult {
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let k = key(uaddr, private)?;
    let cur = crate::sched::current();
    let w = Arc::new(Waiter {
        thread: cur.clone(),
        woken: AtomicBool::new(false),
        bitset,
    });
    TABLE.lock().push(k, w.clone());
    let remove = || {
        TABLE.lock().remove(k, |x| Arc::ptr_eq(x, &w));
    };
    let v: u32 = match super::uaccess::read_val(uaddr) {
        Ok(v) => v,
        Err(e) => {
            remove();
            return Err(e);
        }
    };
    if v != val {
        remove();
        return Err(Errno::EAGAIN);
    }
    loop {
        crate::sched::prepare_block(&cur);
        if w.woken.load(Ordering::Acquire)
            || super::signal::pending()
            || crate::time::now_ns() >= deadline
        {
            crate::sched::cancel_block(&cur);
        } else {
            crate::sched::timed_block(deadline);
        }
        if w.woken.load(Ordering::Acquire) {
            return Ok(0);
        }
        if super::signal::pending() {
            remove();
            return if w.woken.load(Ordering::Acquire) {
                Ok(0)
            } else {
                Err(Errno::EINTR)
            };
        }
        if crate::time::now_ns() >= deadline {
            remove();
            return if w.woken.load(Ordering::Acquire) {
                Ok(0)
            } else {
                Err(Errno::ETIMEDOUT)
            };
        }
    }
}

/// Reads a `struct timespec` as nanoseconds.
pub(crate) fn read_timespec(va: u64) -> Result<u64, Errno> {
    let ts: [i64; 2] = super::uaccess::read_val(va)?;
    if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok((ts[0] as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts[1] as u64))
}

/// `FUTEX_WAKE_OP` (Linux's `futex_wake_op`): changes the word at `uaddr2` atomically as
/// `encoded` says, wakes up to `nr_wake` waiters of `uaddr`, and — if the old value of
/// `uaddr2` passes `encoded`'s comparison — up to `nr_wake2` waiters of `uaddr2`. Returns
/// the number woken.
fn wake_op(
    uaddr: u64,
    uaddr2: u64,
    private: bool,
    nr_wake: u32,
    nr_wake2: u32,
    encoded: u32,
) -> SysResult {
    let k1 = key(uaddr, private)?;
    let k2 = key(uaddr2, private)?;
    let wop = WakeOp::decode(encoded)?;
    let old = super::uaccess::atomic_update_u32(uaddr2, |v| wop.apply(v))?;
    // An unknown comparison fails after the operation, waking no one (as Linux).
    let wake2 = wop.compare(old)?;
    let mut n = wake_key(k1, wake_limit(nr_wake), BITSET_MATCH_ANY);
    if wake2 {
        n += wake_key(k2, wake_limit(nr_wake2), BITSET_MATCH_ANY);
    }
    Ok(n)
}

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)`.
pub(crate) fn sys_futex(a: [u64; 6]) -> SysResult {
    let (uaddr, val) = (a[0], a[2] as u32);
    let op = Op::decode(a[1] as u32)?;
    match op.cmd {
        Cmd::Wait | Cmd::WaitBitset => {
            let bitset = if op.cmd == Cmd::Wait {
                BITSET_MATCH_ANY
            } else {
                a[5] as u32
            };
            let deadline = if a[3] == 0 {
                u64::MAX
            } else {
                let t = read_timespec(a[3])?;
                match op.timeout() {
                    // A relative wait a hand-over freeze stopped goes on until the deadline
                    // it had (`timers::sleep::with_continued_deadline`); an absolute one is
                    // re-issued as it was.
                    Timeout::Relative => {
                        let d = crate::time::now_ns().saturating_add(t);
                        return crate::linux::timers::sleep::with_continued_deadline(
                            super::abi::nr::FUTEX,
                            Some(d),
                            |d| wait(uaddr, op.private, val, d.unwrap_or(u64::MAX), bitset),
                        );
                    }
                    // Absolute wall-clock deadline.
                    Timeout::Realtime => crate::time::now_ns()
                        .saturating_add(t.saturating_sub(super::misc::realtime_ns())),
                    // Absolute CLOCK_MONOTONIC deadline (our monotonic clock is guest time).
                    Timeout::Monotonic => t,
                }
            };
            wait(uaddr, op.private, val, deadline, bitset)
        }
        Cmd::Wake => Ok(wake_key(
            key(uaddr, op.private)?,
            wake_limit(val),
            BITSET_MATCH_ANY,
        )),
        Cmd::WakeBitset => {
            let bitset = a[5] as u32;
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(wake_key(key(uaddr, op.private)?, wake_limit(val), bitset))
        }
        Cmd::Requeue | Cmd::CmpRequeue => {
            if op.cmd == Cmd::CmpRequeue {
                let v: u32 = super::uaccess::read_val(uaddr)?;
                if v != a[5] as u32 {
                    return Err(Errno::EAGAIN);
                }
            }
            // Waking everyone instead of requeueing is allowed (spurious wake-ups).
            let k = key(uaddr, op.private)?;
            Ok(wake_key(k, usize::MAX, BITSET_MATCH_ANY))
        }
        Cmd::WakeOp => wake_op(uaddr, a[4], op.private, val, a[3] as u32, a[5] as u32),
    }
}
