//! Context regions of user sandboxes (ABI §16.3) as the kernel reaches them: the header and
//! the slots, in user-pool memory the sandbox — and so a hostile program — writes at will.
//! Plain fields are only copied ([`super::pool_mem`]); the hand-off words, the counters and
//! the header's `dead` flag are shared atomics. [`Slot`] is the kernel's
//! [`SlotMem`] for the ABI's hand-off protocol (`pvmux_hypercalls::user::handoff`), and
//! [`StubWaiter`] its clock and futexes (the stub's `user_wait`/`user_wake` entries).
//!
//! [`GrantPage`] is the other half of a space: one frame of *kernel* memory (below the pool)
//! holding the space's grant words, its granted time and the host's reaped word and audit
//! verdict (`pvmux_hypercalls::user::grant`). The user sandbox maps it read-only; only this
//! kernel (and the host, for its own words) writes it.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::user::grant::{grant_offset, UserGrant};
use pvmux_hypercalls::user::handoff::{SlotMem, Waiter, Word};
use pvmux_hypercalls::user::{
    user_ctx_size, user_slot_offset, UserCtxHeader, UserSlot, USER_CTX_MAGIC, USER_SLOT_SIZE,
};
use pvmux_hypercalls::ABI_VERSION;

use super::pool_mem;

/// A space's grant page: one zeroed frame of kernel memory, freed when dropped.
#[derive(Debug)]
pub(crate) struct GrantPage {
    gpa: u64,
}

impl GrantPage {
    /// A fresh, zeroed page; `None` if kernel memory is exhausted.
    pub(crate) fn new() -> Option<Self> {
        let frame = super::frame::alloc_zeroed()?;
        Some(Self {
            gpa: frame.start_address().as_u64(),
        })
    }

    /// Its guest-physical address (for `SpaceCreate`).
    pub(crate) fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The page. Kernel memory, written concurrently only by the host (its `reaped` and
    /// `audit_*` words) and only atomically: every field of `UserGrant` is an atomic.
    pub(crate) fn page(&self) -> &UserGrant {
        let va = crate::boot::phys_to_virt(self.gpa);
        // SAFETY: a frame this page owns, in the direct map (read-write, page aligned, so
        // aligned for `UserGrant`, which is one page of atomics, valid when zeroed); it is
        // freed only when `self` is dropped, which the borrow prevents meanwhile.
        unsafe { &*(va as *const UserGrant) }
    }
}

impl Drop for GrantPage {
    /// Gives the frame back. The owner drops a page only once no sandbox can map it any
    /// more: never handed to the host, or the host's reaped word in it is set.
    fn drop(&mut self) {
        use x86_64::structures::paging::PhysFrame;
        use x86_64::PhysAddr;
        let frame = PhysFrame::containing_address(PhysAddr::new(self.gpa));
        // SAFETY: the frame came from the frame allocator (`new`) and, per the contract
        // above, nothing maps or uses it any more.
        unsafe { super::frame::free(frame) };
    }
}

/// Fills the header of the (zeroed) context region at `ctx_gpa` for `nr_slots` slots, as
/// `SpaceCreate` requires. The whole region must lie in the user pool.
pub(crate) fn init_header(ctx_gpa: u64, nr_slots: u32) {
    assert!(
        pool_mem::contains(ctx_gpa, user_ctx_size(nr_slots)),
        "context region outside the pool"
    );
    pool_mem::write(
        ctx_gpa + offset_of!(UserCtxHeader, magic) as u64,
        &USER_CTX_MAGIC.to_le_bytes(),
    );
    pool_mem::write(
        ctx_gpa + offset_of!(UserCtxHeader, abi_version) as u64,
        &ABI_VERSION.to_le_bytes(),
    );
    pool_mem::write(
        ctx_gpa + offset_of!(UserCtxHeader, nr_slots) as u64,
        &nr_slots.to_le_bytes(),
    );
}

/// Whether the host has marked the sandbox of the context region at `ctx_gpa` dead. (Its
/// own sandbox can write this flag too: it must never decide when the region is reused.)
pub(crate) fn is_dead(ctx_gpa: u64) -> bool {
    pool_mem::atomic_u32(ctx_gpa + offset_of!(UserCtxHeader, dead) as u64).load(Ordering::Acquire)
        != 0
}

/// The `dead_status` the host wrote into the context region at `ctx_gpa` (untrusted: the
/// sandbox can write it too).
pub(crate) fn dead_status(ctx_gpa: u64) -> u32 {
    pool_mem::atomic_u32(ctx_gpa + offset_of!(UserCtxHeader, dead_status) as u64)
        .load(Ordering::Acquire)
}

/// Slot `index` of the context region at `ctx_gpa`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<'a> {
    ctx_gpa: u64,
    gpa: u64,
    grant: &'a AtomicU32,
}

impl<'a> Slot<'a> {
    /// Slot `index` of the context region at `ctx_gpa` (which must lie in the pool), with its
    /// grant word in `grants`.
    pub(crate) fn new(ctx_gpa: u64, grants: &'a GrantPage, index: u32) -> Self {
        let gpa = ctx_gpa + user_slot_offset(index);
        assert!(
            pool_mem::contains(gpa, USER_SLOT_SIZE),
            "slot outside the pool"
        );
        debug_assert_eq!(grant_offset(index), 4 * u64::from(index));
        Self {
            ctx_gpa,
            gpa,
            grant: &grants.page().grant[index as usize],
        }
    }

    /// Guest-physical address of byte `off` of the slot, for `len` bytes inside it.
    fn at(&self, off: usize, len: usize) -> u64 {
        assert!(
            off <= USER_SLOT_SIZE as usize && len <= USER_SLOT_SIZE as usize - off,
            "outside the slot"
        );
        self.gpa + off as u64
    }
}

impl SlotMem for Slot<'_> {
    fn word(&self, w: Word) -> &AtomicU32 {
        pool_mem::atomic_u32(self.at(w.offset(), 4))
    }

    fn counter(&self, index: usize) -> &AtomicU64 {
        assert!(index < 8, "no such counter");
        pool_mem::atomic_u64(self.at(offset_of!(UserSlot, stats) + 8 * index, 8))
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        pool_mem::read(self.at(off, buf.len()), buf);
    }

    fn write(&self, off: usize, data: &[u8]) {
        pool_mem::write(self.at(off, data.len()), data);
    }

    fn dead(&self) -> bool {
        is_dead(self.ctx_gpa)
    }

    fn grant(&self) -> &AtomicU32 {
        self.grant
    }
}

/// The kernel's clock and the stub's shared futexes on guest-physical words, for the
/// hand-off.
pub(crate) struct StubWaiter;

impl Waiter for StubWaiter {
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    fn wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        // The words are in the direct map; their guest-physical address is the futex key the
        // user sandbox shares.
        if let Some(gpa) = crate::boot::virt_to_phys(word.as_ptr() as u64, 4) {
            // 0 = woken or changed; anything else (timeout, an event, a bad address) means
            // "look again", which the protocol does.
            let _ = crate::stub::user_wait(gpa, expected, timeout_ns.unwrap_or(0));
        }
    }

    fn cpu(&self) -> u32 {
        crate::arch::host_cpu()
    }

    fn wake(&self, word: &AtomicU32, _count: u32) {
        // `user_wake` wakes every waiter: only ever one sleeps on a slot's word.
        if let Some(gpa) = crate::boot::virt_to_phys(word.as_ptr() as u64, 4) {
            let _ = crate::stub::user_wake(gpa);
        }
    }
}
