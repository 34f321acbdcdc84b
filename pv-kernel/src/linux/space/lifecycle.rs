//! A space's sandbox from birth to grave: `SpaceCreate` (the host hands out a warm spare user
//! sandbox, so there is no host `fork`/`exec` on the guest's `fork` path) with a fresh context
//! region and a reaped word, `fork` as a snapshot, and destruction — `SpaceDestroy` only kills,
//! the frames wait in the graveyard until the host has reaped the sandbox.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::user::user_ctx_size;
use pvmux_hypercalls::PAGE_SIZE;

use super::graveyard::{self, reap_graveyard, Grave, RECLAIM_POLL_NS, RECLAIM_WAIT_NS};
use super::{Mm, Space};
use crate::irq::IrqLock;
use crate::linux::{pool, Errno};
use crate::mm::user_ctx::{self, GrantPage};
use crate::sched::wait::WaitQueue;

/// Live spaces (statistics).
pub(crate) static LIVE: AtomicU32 = AtomicU32::new(0);

impl Space {
    /// Creates an empty space and asks the host for its user sandbox.
    pub(crate) fn new() -> Result<Arc<Self>, Errno> {
        let created_ns = crate::time::now_ns();
        reap_graveyard();
        graveyard::throttle();
        let n = crate::boot::nr_vcpus();
        let size = user_ctx_size(n);
        let pages = (size / PAGE_SIZE) as usize;
        // Grant words, granted time and the host's proof of death live in kernel memory
        // (see `Grave::grants`).
        let grants = GrantPage::new().ok_or(Errno::ENOMEM)?;
        // Short of memory with destroyed spaces not dead yet: their sandboxes are being
        // reaped (a matter of microseconds to milliseconds); wait for them a little.
        let deadline = crate::time::now_ns() + RECLAIM_WAIT_NS;
        let ctx_gpa = loop {
            match pool::alloc_contiguous_zeroed(pages) {
                Ok(g) => break g,
                Err(e) => {
                    let now = crate::time::now_ns();
                    if reap_graveyard() {
                        continue;
                    }
                    if !graveyard::occupied() || now >= deadline {
                        return Err(e);
                    }
                    crate::sched::sleep_until(now + RECLAIM_POLL_NS);
                }
            }
        };
        // Nobody else sees the (zeroed) region before `SpaceCreate`.
        user_ctx::init_header(ctx_gpa, n);
        let Ok(handle) = crate::hcall::space_create(ctx_gpa, grants.gpa()) else {
            for p in 0..pages as u64 {
                pool::put(ctx_gpa + p * PAGE_SIZE);
            }
            return Err(Errno::EAGAIN);
        };
        LIVE.fetch_add(1, Ordering::Relaxed);
        super::watch::start();
        Ok(Arc::new(Self::empty(
            handle,
            ctx_gpa,
            pages,
            Some(grants),
            created_ns,
            false,
        )))
    }

    /// A space with no mappings and fresh counters: one constructor for both kinds, so a new
    /// field cannot be set in one and forgotten in the other.
    fn empty(
        handle: u64,
        ctx_gpa: u64,
        ctx_pages: usize,
        grants: Option<GrantPage>,
        created_ns: u64,
        inproc: bool,
    ) -> Self {
        Self {
            handle: AtomicU64::new(handle),
            epoch: AtomicU64::new(crate::suspend::epoch()),
            revive_lock: IrqLock::new(()),
            ctx_gpa,
            ctx_pages,
            grants,
            death_seen: AtomicU32::new(0),
            failure: AtomicU64::new(0),
            mm: IrqLock::new(Mm::new()),
            slice_deadline: [const { AtomicU64::new(0) }; pvmux_hypercalls::MAX_VCPUS as usize],
            slot_ticks: [const { AtomicU64::new(u64::MAX) }; pvmux_hypercalls::MAX_VCPUS as usize],
            slot_fp: super::slot_fp::SlotImages::new(),
            patch_skip: [const { AtomicU64::new(0) }; crate::linux::patch::SKIP_SLOTS],
            forking: AtomicU32::new(0),
            fork_done: WaitQueue::new(),
            created_ns,
            inproc,
            id: super::inproc::next_id(),
        }
    }

    /// Creates an empty space that runs in the kernel sandbox (the trusted in-process mode,
    /// `super::inproc`): no user sandbox.
    pub(crate) fn new_inproc() -> Result<Arc<Self>, Errno> {
        let created_ns = crate::time::now_ns();
        reap_graveyard();
        graveyard::throttle();
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Self::empty(0, 0, 0, None, created_ns, true)))
    }

    /// Gives the space a user sandbox in this host process if a snapshot resumed since it
    /// got its last one (`crate::suspend`): a fresh context region header and sandbox, and
    /// every page of its map to be mapped again at its first fault (as a `fork` child's
    /// are). The old sandbox was never in this process, so nothing needs unmapping and
    /// frames waiting for an unmap are free. `Err` if the host gives no sandbox.
    pub(super) fn revive(&self) -> Result<(), ()> {
        let now = crate::suspend::epoch();
        if self.epoch.load(Ordering::Acquire) == now {
            return Ok(());
        }
        let _g = self.revive_lock.lock();
        if self.epoch.load(Ordering::Acquire) == now {
            return Ok(());
        }
        if self.inproc {
            // The new kernel sandbox's user window is empty, and its syscall entry moved.
            self.resumed_inproc();
            self.epoch.store(now, Ordering::Release);
            return Ok(());
        }
        let n = crate::boot::nr_vcpus();
        // The slots' unread FPU images (threads parked in the kernel at the snapshot) are
        // set aside before the region is cleared; the new sandbox's slots hold none.
        self.slot_fp
            .park_all(|cpu, len| self.read_slot_fp_left(cpu, len));
        crate::mm::pool_mem::zero(self.ctx_gpa, self.ctx_pages * PAGE_SIZE as usize);
        user_ctx::init_header(self.ctx_gpa, n);
        let handle =
            crate::hcall::space_create(self.ctx_gpa, self.grants().gpa()).map_err(|_| ())?;
        self.handle.store(handle, Ordering::Release);
        for d in &self.slice_deadline {
            d.store(0, Ordering::Relaxed);
        }
        for t in &self.slot_ticks {
            t.store(u64::MAX, Ordering::Relaxed);
        }
        let freed = self.mm.lock().forget_sandbox();
        for f in freed {
            pool::put(f);
        }
        self.epoch.store(now, Ordering::Release);
        Ok(())
    }

    /// A copy-on-write copy of this space (`fork`): a snapshot of the parent at one instant.
    /// Returns once the parent's write protection is in force in its sandbox (so no thread of
    /// the parent can write into a page it now shares with the child); meanwhile the parent's
    /// other threads wait before entering user code.
    /// `own`: the child's private copies made at once, `hot`: addresses whose blocks it
    /// maps with its first run (see [`Mm::fork_into`] and [`Mm::map_hot`]).
    pub(crate) fn fork(&self, own: &[u64], hot: &[u64]) -> Result<Arc<Self>, Errno> {
        let child = Self::new()?;
        let mut pm = self.mm.lock();
        // Under the lock that the page map is copied under: a thread that changes the map
        // after the copy sees the fork when it next wants to run user code.
        self.forking.fetch_add(1, Ordering::SeqCst);
        {
            let mut cm = child.mm.lock();
            pm.fork_into(&mut cm, own);
            cm.map_hot(hot);
            crate::linux::patch::after_fork(self.inproc, &mut cm);
        }
        drop(pm);
        let synced = self.sync_ops();
        self.forking.fetch_sub(1, Ordering::SeqCst);
        self.fork_done.wake_all();
        // A parent whose sandbox is gone is being killed (its next run says so).
        synced.map(|()| child).map_err(|()| Errno::EAGAIN)
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        if self.inproc {
            // No sandbox: once the window no longer holds this space's mappings (or never
            // held them), nothing can reach its frames.
            self.leave_window();
            LIVE.fetch_sub(1, Ordering::Relaxed);
            pool::put_all(self.mm.get_mut().take_frames());
            return;
        }
        // The host kills the sandbox and returns at once; it sets our `reaped` word once the
        // process is reaped. Until then the sandbox may still touch the context region and
        // the pages, so they wait in the graveyard. (A sandbox that died on its own was
        // reaped already: the word is set and the graveyard releases it at once.)
        let _ = crate::hcall::space_destroy(self.handle.load(Ordering::Acquire));
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let frames = self.mm.get_mut().take_frames();
        let grants = self.grants.take().expect("grant page");
        graveyard::bury(Grave {
            ctx_gpa: self.ctx_gpa,
            ctx_pages: self.ctx_pages,
            frames,
            grants,
        });
    }
}
