//! The context region as the user stub reaches it: the slots through the ABI's
//! [`SlotMem`] (atomics for the hand-off words and counters, copies for every other field:
//! user code of any slot can write the region at any time, so no Rust reference is formed over
//! it), the header's `ready` and `dead` words, each slot's grant word (in the space's grant
//! page, mapped read-only at `USER_GRANT_BASE`), and the stub's clock and futexes for the
//! hand-off ([`Futex`]).

use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use pvmux_hypercalls::user::grant::{grant_offset, USER_GRANT_BASE};
use pvmux_hypercalls::user::handoff::{SlotMem, Waiter, Word};
use pvmux_hypercalls::user::{
    user_slot_offset, UserCtxHeader, UserSlot, USER_CTX_BASE, USER_FPSTATE_MAX, USER_SLOT_SIZE,
};

use crate::mem::memcpy;
use crate::{state, sys};

/// A 32-bit atomic word of the context header at byte offset `off` (4-aligned).
fn header_word(off: usize) -> &'static AtomicU32 {
    debug_assert!(off.is_multiple_of(4) && off + 4 <= core::mem::size_of::<UserCtxHeader>());
    // SAFETY: start-up maps the context region at USER_CTX_BASE before any slot thread
    // serves, and it stays mapped; `off` is the offset of an aligned u32 of the header, which
    // both processes access only atomically.
    unsafe { &*((USER_CTX_BASE + off as u64) as *const AtomicU32) }
}

/// Whether the host has marked this sandbox dead.
pub(super) fn ctx_dead() -> bool {
    header_word(offset_of!(UserCtxHeader, dead)).load(Relaxed) != 0
}

/// The address of the header's `dead` word (for the idle loop, which only loads it).
pub(super) fn ctx_dead_word() -> *const u32 {
    header_word(offset_of!(UserCtxHeader, dead)).as_ptr()
}

/// The header's `ready` word.
pub(super) fn ctx_ready() -> &'static AtomicU32 {
    header_word(offset_of!(UserCtxHeader, ready))
}

/// Reads a plain field of the mapped context header once.
///
/// # Safety
/// The context region must be mapped at `USER_CTX_BASE`; `off + size_of::<T>()` must lie in
/// the header and be aligned for `T`.
pub(super) unsafe fn ctx_read<T: Copy>(off: usize) -> T {
    // SAFETY: caller contract; any bit pattern of the header's integer fields is valid.
    unsafe { ((USER_CTX_BASE + off as u64) as *const T).read_volatile() }
}

/// One slot of the mapped context region.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    base: u64,
    index: u32,
}

impl Slot {
    /// Slot `i` (< nr_vcpus, checked by the caller).
    pub(super) const fn get(i: u32) -> Self {
        Self {
            base: USER_CTX_BASE + user_slot_offset(i),
            index: i,
        }
    }

    /// The slot's grant word, in the read-only grant page (only ever read, and only used as
    /// a futex address).
    pub(super) fn grant_word(&self) -> *const u32 {
        (USER_GRANT_BASE + grant_offset(self.index)) as *const u32
    }

    /// The slot's `user_waiting` word.
    pub(super) fn waiting_word(&self) -> *mut u32 {
        self.at(Word::UserWaiting.offset(), 4) as *mut u32
    }

    /// The slot's `user_cpu` word (`kernel_cpu` follows it), for the idle loop's spinning.
    pub(super) fn cpu_words(&self) -> *mut u32 {
        const _: () = assert!(Word::KernelCpu.offset() == Word::UserCpu.offset() + 4);
        self.at(Word::UserCpu.offset(), 8) as *mut u32
    }

    /// The address of `len` bytes at byte offset `off` of the slot (panics outside it).
    fn at(&self, off: usize, len: usize) -> *mut u8 {
        assert!(
            off <= USER_SLOT_SIZE as usize && len <= USER_SLOT_SIZE as usize - off,
            "outside the slot"
        );
        (self.base + off as u64) as *mut u8
    }

    /// The slot's FPU image area ([`USER_FPSTATE_MAX`] bytes), for raw copies to and from the
    /// signal frame.
    pub(super) fn fpstate(&self) -> *mut u8 {
        self.at(offset_of!(UserSlot, fpstate), USER_FPSTATE_MAX)
    }
}

impl SlotMem for Slot {
    fn word(&self, w: Word) -> &AtomicU32 {
        let p = self.at(w.offset(), 4);
        // SAFETY: an aligned u32 hand-off word inside the slot, in the context region, which
        // stays mapped; both processes access it only atomically.
        unsafe { &*(p as *const AtomicU32) }
    }

    fn counter(&self, index: usize) -> &AtomicU64 {
        assert!(index < 8, "no such counter");
        let p = self.at(offset_of!(UserSlot, stats) + 8 * index, 8);
        // SAFETY: an aligned u64 counter inside the slot (as in `word`), accessed atomically.
        unsafe { &*(p as *const AtomicU64) }
    }

    fn read(&self, off: usize, buf: &mut [u8]) {
        let src = self.at(off, buf.len());
        match buf.len() {
            // A single aligned word: one volatile load.
            4 if (src as usize).is_multiple_of(4) => {
                // SAFETY: 4 aligned bytes of the mapped slot (checked); any value is valid.
                let v = unsafe { (src as *const u32).read_volatile() };
                buf.copy_from_slice(&v.to_ne_bytes());
            }
            8 if (src as usize).is_multiple_of(8) => {
                // SAFETY: as above, 8 aligned bytes.
                let v = unsafe { (src as *const u64).read_volatile() };
                buf.copy_from_slice(&v.to_ne_bytes());
            }
            // SAFETY: `n` bytes at `src` lie in the mapped slot (checked); `buf` is ours. The
            // copy (`rep movsb`) forms no reference to the slot, whose bytes may change under
            // it: the result is whatever they were, validated by the caller.
            n => unsafe {
                memcpy(buf.as_mut_ptr(), src, n);
            },
        }
    }

    fn write(&self, off: usize, data: &[u8]) {
        let dst = self.at(off, data.len());
        match *data {
            // SAFETY: 4 aligned bytes of the mapped slot (checked).
            [a, b, c, d] if (dst as usize).is_multiple_of(4) => unsafe {
                (dst as *mut u32).write_volatile(u32::from_ne_bytes([a, b, c, d]));
            },
            [a, b, c, d, e, f, g, h] if (dst as usize).is_multiple_of(8) => {
                let v = u64::from_ne_bytes([a, b, c, d, e, f, g, h]);
                // SAFETY: as above, 8 aligned bytes.
                unsafe { (dst as *mut u64).write_volatile(v) };
            }
            // SAFETY: as in `read`, the other way round.
            _ => unsafe {
                memcpy(dst, data.as_ptr(), data.len());
            },
        }
    }

    fn dead(&self) -> bool {
        ctx_dead()
    }

    fn grant(&self) -> &AtomicU32 {
        // SAFETY: an aligned u32 of the grant page, which start-up maps (read-only) before
        // any slot thread serves and which stays mapped; the guest kernel writes it
        // atomically, the stub only loads it (this reference is used for nothing else).
        unsafe { &*(self.grant_word() as *const AtomicU32) }
    }
}

/// The stub's clock and futexes for the hand-off: shared futexes (the guest kernel waits in
/// another process) with relative timeouts.
pub(super) struct Futex;

impl Waiter for Futex {
    fn now_ns(&self) -> u64 {
        state::clock_ns()
    }

    fn wait(&self, word: &AtomicU32, expected: u32, timeout_ns: Option<u64>) {
        let timeout = timeout_ns.map(|ns| sys::Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        });
        // EAGAIN, ETIMEDOUT and EINTR all mean "look again".
        let _ = sys::futex_wait_shared(word, expected, timeout.as_ref());
    }

    fn cpu(&self) -> u32 {
        state::host_cpu()
    }

    fn wake(&self, word: &AtomicU32, count: u32) {
        // FUTEX_WAKE takes an int: more than i32::MAX would read as negative (one waiter).
        sys::futex_wake(word, count.min(i32::MAX as u32));
    }
}
