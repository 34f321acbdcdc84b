//! Destroyed spaces whose sandboxes may still run: the graveyard. `SpaceDestroy` only kills
//! (the host reaps the sandbox asynchronously), so a destroyed space's context region and
//! user pages wait here until the host sets the space's *reaped word* — which lives in kernel
//! memory, unlike the context region's `dead` flag that the sandbox itself can forge — and
//! only then go back to the pool.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

use crate::irq::IrqLock;
use crate::linux::{pool, Errno};
use crate::mm::user_ctx::GrantPage;

/// Spaces destroyed but possibly not dead yet: their frames are released once the host
/// reports the sandbox gone (it may still touch them until then). `SpaceDestroy` returns
/// at once and the host marks the space dead once it has reaped the sandbox, so every
/// destroyed space passes through here.
static GRAVEYARD: IrqLock<Vec<Grave>> = IrqLock::new(Vec::new());

/// A destroyed space waiting for its sandbox to be gone.
pub(super) struct Grave {
    /// Context region and its size in pages.
    pub(super) ctx_gpa: u64,
    pub(super) ctx_pages: usize,
    /// Its user pages.
    pub(super) frames: Vec<u64>,
    /// The space's grant page, whose `reaped` word the host sets to 1 once the sandbox
    /// process is reaped. It lives in kernel memory (below the user pool, read-only in the
    /// sandbox), so unlike the context region's `dead` flag — which the sandbox itself can
    /// write — a hostile program cannot fake it to get its memory reused while it still runs.
    /// Freed with the rest.
    pub(super) grants: GrantPage,
}

/// Entries in [`GRAVEYARD`] (checked without the lock on hot paths).
static GRAVE_LEN: AtomicU32 = AtomicU32::new(0);
/// Longest [`wait_for_reclaim`] (and `Space::new`) waits for destroyed spaces to die when the
/// pool is short. Their memory is not in use, only not yet released: the host kills and
/// reaps every destroyed sandbox (a sandbox cannot delay it), which takes microseconds on an
/// idle host but can take more than a second on a host whose CPUs are over-committed (a fork
/// loop under CI load was OOM-killed with a 1 s bound). Waiting costs nothing unless the pool
/// is empty while destroyed spaces are pending.
pub(super) const RECLAIM_WAIT_NS: u64 = 10_000_000_000;
/// Destroyed spaces allowed to wait for their sandboxes before `Space::new` waits for some
/// to be reaped ([`throttle`]): a fork loop cannot get ahead of the host's reaping and fill
/// the pool with memory of dead processes.
const MAX_GRAVES: u32 = 64;
/// Poll period of that wait.
pub(super) const RECLAIM_POLL_NS: u64 = 100_000;

/// Buries a destroyed space; releases what it can at once (a sandbox that died on its own
/// was reaped already).
pub(super) fn bury(grave: Grave) {
    {
        let mut g = GRAVEYARD.lock();
        g.push(grave);
        GRAVE_LEN.store(g.len() as u32, Ordering::Release);
    }
    reap_graveyard();
}

/// Whether destroyed spaces are waiting for their sandboxes to end.
/// Releases every grave at once: a snapshot resumed in a new host process, where none of
/// their sandboxes exists (`crate::suspend`).
pub(crate) fn release_all() {
    let done: Vec<Grave> = {
        let mut g = GRAVEYARD.lock();
        GRAVE_LEN.store(0, Ordering::Release);
        core::mem::take(&mut *g)
    };
    for grave in done {
        pool::put_all(grave.frames);
        for p in 0..grave.ctx_pages as u64 {
            pool::put(grave.ctx_gpa + p * PAGE_SIZE);
        }
    }
}

pub(super) fn occupied() -> bool {
    GRAVE_LEN.load(Ordering::Acquire) != 0
}

/// Waits (at most [`RECLAIM_WAIT_NS`]) while more than [`MAX_GRAVES`] destroyed spaces wait
/// for their sandboxes to be reaped (before a new space is made: back-pressure on fork
/// loops). Must not be called with a space lock held.
pub(super) fn throttle() {
    if GRAVE_LEN.load(Ordering::Acquire) <= MAX_GRAVES {
        return;
    }
    let deadline = crate::time::now_ns() + RECLAIM_WAIT_NS;
    loop {
        reap_graveyard();
        let now = crate::time::now_ns();
        if GRAVE_LEN.load(Ordering::Acquire) <= MAX_GRAVES || now >= deadline {
            return;
        }
        crate::sched::sleep_until(now + RECLAIM_POLL_NS);
    }
}

/// Waits (at most [`RECLAIM_WAIT_NS`]) until destroyed spaces die and their memory returns to
/// the pool; true if anything was released. For callers that ran out of pool memory (must not
/// hold a space lock).
pub(crate) fn wait_for_reclaim() -> bool {
    let deadline = crate::time::now_ns() + RECLAIM_WAIT_NS;
    loop {
        if reap_graveyard() {
            return true;
        }
        let now = crate::time::now_ns();
        if !occupied() || now >= deadline {
            return false;
        }
        crate::sched::sleep_until(now + RECLAIM_POLL_NS);
    }
}

/// Releases the frames of destroyed spaces whose sandboxes have ended. Returns whether it
/// released any. Cheap when the graveyard is empty.
pub(crate) fn reap_graveyard() -> bool {
    if !occupied() {
        return false;
    }
    let done: Vec<Grave> = {
        let mut g = GRAVEYARD.lock();
        let mut done = Vec::new();
        let mut i = 0;
        while i < g.len() {
            if g[i].grants.page().reaped.load(Ordering::Acquire) != 0 {
                done.push(g.swap_remove(i));
            } else {
                i += 1;
            }
        }
        GRAVE_LEN.store(g.len() as u32, Ordering::Release);
        done
    };
    let any = !done.is_empty();
    for grave in done {
        pool::put_all(grave.frames);
        for p in 0..grave.ctx_pages as u64 {
            pool::put(grave.ctx_gpa + p * PAGE_SIZE);
        }
    }
    any
}

/// A pool allocation that, when the pool is empty, first releases what the graveyard can
/// (without waiting: callers may hold locks), clean pages of the page cache, or else the
/// program image cache, and tries once more.
pub(crate) fn alloc_reclaiming(f: impl Fn() -> Result<u64, Errno>) -> Result<u64, Errno> {
    f().or_else(|e| {
        if reap_graveyard()
            || crate::fs::pagecache::shrink(256)
            || crate::linux::imagecache::shrink()
        {
            f()
        } else {
            Err(e)
        }
    })
}
