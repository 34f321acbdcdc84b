//! Futexes, keyed like Linux keys them: a word in shared memory (`MAP_SHARED` anonymous
//! memory, whose frames never change) by the guest-physical address of the word, so that
//! processes sharing the memory meet on it; any other word by its address space and virtual
//! address — not by its frame, which a copy-on-write break after `fork` replaces between a
//! thread's `FUTEX_WAIT` and the `FUTEX_WAKE` meant for it.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{Errno, SysResult};
use crate::irq::IrqLock;
use crate::sched::thread::Thread;

struct Waiter {
    thread: Arc<Thread>,
    woken: AtomicBool,
    bitset: u32,
}

/// What identifies a futex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// A word in shared memory: its guest-physical address.
    Shared(u64),
    /// A word in private memory: the address space (its address) and the word's address.
    Private(usize, u64),
}

static TABLE: IrqLock<BTreeMap<Key, Vec<Arc<Waiter>>>> = IrqLock::new(BTreeMap::new());

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_CMD_MASK: u64 = 0x7f;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// The key of the futex word at user address `uaddr` of the current process.
fn key(uaddr: u64) -> Result<Key, Errno> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    // The word must be readable (this also populates it).
    super::space::current_copy(uaddr, 4, false, |_, _| {})?;
    let t = super::task::current_task();
    let space = t.process.space().ok_or(Errno::EFAULT)?;
    let mm = space.mm.lock();
    let (_, vma) = mm.vma_at(uaddr).ok_or(Errno::EFAULT)?;
    if vma.shm.is_none() {
        return Ok(Key::Private(Arc::as_ptr(&space) as usize, uaddr));
    }
    let frame = mm.frame_of(uaddr).ok_or(Errno::EFAULT)?;
    Ok(Key::Shared(frame + (uaddr & 4095)))
}

/// Wakes up to `n` waiters on `uaddr` (also used for CLONE_CHILD_CLEARTID).
pub(crate) fn wake_addr(uaddr: u64, n: u32) -> SysResult {
    let k = key(uaddr)?;
    Ok(wake_key(k, n, u32::MAX))
}

fn wake_key(k: Key, n: u32, bitset: u32) -> u64 {
    let woken: Vec<Arc<Waiter>> = {
        let mut t = TABLE.lock();
        let Some(list) = t.get_mut(&k) else { return 0 };
        let mut out = Vec::new();
        list.retain(|w| {
            if (out.len() as u32) < n && w.bitset & bitset != 0 {
                out.push(w.clone());
                false
            } else {
                true
            }
        });
        if list.is_empty() {
            t.remove(&k);
        }
        out
    };
    for w in &woken {
        w.woken.store(true, Ordering::Release);
        crate::sched::wake(&w.thread);
    }
    woken.len() as u64
}

fn wait(uaddr: u64, val: u32, deadline: u64, bitset: u32) -> SysResult {
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let k = key(uaddr)?;
    let cur = crate::sched::current();
    let w = Arc::new(Waiter {
        thread: cur.clone(),
        woken: AtomicBool::new(false),
        bitset,
    });
    TABLE.lock().entry(k).or_default().push(w.clone());
    let remove = || {
        let mut t = TABLE.lock();
        if let Some(list) = t.get_mut(&k) {
            list.retain(|x| !Arc::ptr_eq(x, &w));
            if list.is_empty() {
                t.remove(&k);
            }
        }
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

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)`.
pub(crate) fn sys_futex(a: [u64; 6]) -> SysResult {
    let (uaddr, op, val) = (a[0], a[1], a[2] as u32);
    match op & FUTEX_CMD_MASK {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if op & FUTEX_CMD_MASK == FUTEX_WAIT {
                u32::MAX
            } else {
                a[5] as u32
            };
            let deadline = if a[3] == 0 {
                u64::MAX
            } else {
                let t = read_timespec(a[3])?;
                if op & FUTEX_CMD_MASK == FUTEX_WAIT {
                    crate::time::now_ns().saturating_add(t)
                } else if op & FUTEX_CLOCK_REALTIME != 0 {
                    // Absolute wall-clock deadline.
                    crate::time::now_ns()
                        .saturating_add(t.saturating_sub(super::misc::realtime_ns()))
                } else {
                    // Absolute CLOCK_MONOTONIC deadline (our monotonic clock is guest time).
                    t
                }
            };
            wait(uaddr, val, deadline, bitset)
        }
        FUTEX_WAKE => wake_addr(uaddr, val),
        FUTEX_WAKE_BITSET => Ok(wake_key(key(uaddr)?, val, a[5] as u32)),
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if op & FUTEX_CMD_MASK == FUTEX_CMP_REQUEUE {
                let v: u32 = super::uaccess::read_val(uaddr)?;
                if v != a[5] as u32 {
                    return Err(Errno::EAGAIN);
                }
            }
            // Waking everyone instead of requeueing is allowed (spurious wake-ups).
            let k = key(uaddr)?;
            Ok(wake_key(k, u32::MAX, u32::MAX))
        }
        FUTEX_WAKE_OP => {
            let k1 = key(uaddr)?;
            let n1 = wake_key(k1, val, u32::MAX);
            let n2 = match key(a[4]) {
                Ok(k2) => wake_key(k2, a[3] as u32, u32::MAX),
                Err(_) => 0,
            };
            Ok(n1 + n2)
        }
        _ => Err(Errno::ENOSYS),
    }
}
