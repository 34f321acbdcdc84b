//! Guest address spaces: the kernel's record of a process's memory and the user sandbox that
//! realises it.
//!
//! * [`mm`]: the memory map ([`Mm`]) — regions ([`mm::Vma`]), user pages (a pool frame each,
//!   possibly copy-on-write), the queue of [`UserOp`](pvmux_hypercalls::user::UserOp)s for the
//!   sandbox and its numbered batches; pure bookkeeping, unit-tested on the host;
//! * [`lifecycle`]: creating a space (a warm spare sandbox from the host), `fork`, destroying;
//! * [`graveyard`]: destroyed spaces whose sandboxes may still run, until the host's reaped
//!   word says they are gone;
//! * [`handoff`]: running user code ([`Space::run`]) — the kernel half of the ABI's slot
//!   hand-off (`pvmux_hypercalls::user::handoff`) on this vCPU's slot of the context region;
//! * [`slot_fp`]: a thread's FPU image stays unread in its slot after an exit, until the
//!   kernel needs it or another run needs the slot;
//! * [`copy`]: copies between the kernel and a space's user memory;
//! * [`watch`]: notices sandboxes that died while their process was not running user code
//!   (killed by the host's CPU audit, by its filter, ...) and kills the process.
//!
//! User memory is never mapped in the kernel sandbox: the kernel reads and writes it through
//! the framework's copies (`crate::mm::pool_mem`) after translating here. Changes are queued
//! as operations that the user sandbox applies before it next runs user code
//! ([`Space::run`]); frames whose mappings are being removed are freed only after that.
//!
//! The threads of a process take queued operations from the space's one queue in *batches*
//! and hand them to their own slots, i.e. to different threads of the sandbox process. Each
//! batch is numbered (`UserSlot::ops_seq`), and the user stub applies them in that order and
//! runs a thread's user code only once every batch taken before its request is applied: a
//! thread never runs on a mapping another thread's operations already changed, and an old
//! mapping can never be applied after a newer one of the same page (e.g. a fault's writable
//! mapping after `fork`'s write protection).
//!
//! `fork` ([`Space::fork`]) is a snapshot: the child gets the parent's page map with every
//! private page copy-on-write, and the parent's write protection is in force — applied on the
//! forking thread's slot ([`Space::sync_ops`]) — before `fork` returns and the child can run.
//! Until then the parent's other threads do not enter user code ([`Space::run`] waits for the
//! fork): one of them could otherwise fault in a page the child does not have, and then write
//! into a page the two still share (the child would see the second write without the first).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::Errno;
use crate::irq::IrqLock;
use crate::mm::user_ctx::GrantPage;
use crate::sched::wait::WaitQueue;

mod copy;
mod graveyard;
mod handoff;
mod inproc;
mod lifecycle;
pub(crate) mod mm;
mod slot_fp;
mod watch;

pub(crate) use copy::{
    copy_in, copy_out, current_atomic_update_u32, current_copy, current_copy_in, current_copy_out,
};
pub(crate) use graveyard::{alloc_reclaiming, release_all as release_graves, wait_for_reclaim};
pub(crate) use handoff::{Exit, UserState};
pub(crate) use inproc::trusted_mode;
pub(crate) use mm::{ImageMap, MapFile, MapGeneration, MemUsage, Mm, OnFork};

/// A guest address space and its user sandbox.
pub(crate) struct Space {
    /// Host handle of the user sandbox (a new one after a snapshot resumed: [`Space::revive`]).
    handle: AtomicU64,
    /// The resume epoch (`crate::suspend::epoch`) its sandbox belongs to: a space of an
    /// older epoch has no sandbox in this host process yet.
    epoch: AtomicU64,
    /// Orders the threads of the space that find it from an older epoch.
    revive_lock: IrqLock<()>,
    /// Guest-physical address of the context region.
    ctx_gpa: u64,
    /// Its size in pages.
    ctx_pages: usize,
    /// The memory map.
    pub(crate) mm: IrqLock<Mm>,
    /// The space's grant page (kernel memory: grant words, granted time, the host's reaped
    /// word and audit verdict; see `graveyard::Grave::grants`); moved into the graveyard on
    /// drop.
    grants: Option<GrantPage>,
    /// The death of its sandbox has been dealt with ([`watch`]).
    death_seen: AtomicU32,
    /// Why its sandbox was last given up on (`handoff::Failure`, packed; 0: never).
    failure: AtomicU64,
    /// Per slot: guest time at which its slice timer fires (0 = not armed). The timer is
    /// re-armed only once it has fired, which saves a host timer call per entry.
    slice_deadline: [AtomicU64; pvmux_hypercalls::MAX_VCPUS as usize],
    /// Per slot: the user side's tick counter as the last reply left it (`u64::MAX`: not
    /// known), so that a request need not read it first (`KernelSlot::with_user_ticks`).
    slot_ticks: [AtomicU64; pvmux_hypercalls::MAX_VCPUS as usize],
    /// Which thread's FPU image each slot's `fpstate` holds, and the unread images set aside
    /// ([`slot_fp`]).
    slot_fp: slot_fp::SlotImages,
    /// Forks of this space under way ([`Space::fork`]): its threads wait in [`Space::run`]
    /// until there are none.
    forking: AtomicU32,
    /// Woken when a fork of this space is done.
    fork_done: WaitQueue,
    /// Guest time at which the space was created (by `execve` or `fork`): image-cache
    /// chunks verified since then need no new check for it (`imagecache::for_mapping`).
    pub(crate) created_ns: u64,
    /// Return addresses of trapped system calls whose site cannot be patched, direct-mapped
    /// (`linux/patch.rs`): such a site traps every time, and this spares it the check.
    pub(crate) patch_skip: [AtomicU64; crate::linux::patch::SKIP_SLOTS],
    /// The space runs in the kernel sandbox (the trusted in-process mode, [`inproc`]): no
    /// user sandbox, context region or grant page.
    inproc: bool,
    /// A number no other space has (the in-process window's owner, [`inproc`]).
    id: u64,
}

impl Space {
    /// Whether the space runs in the kernel sandbox (the trusted in-process mode).
    pub(crate) fn is_inproc(&self) -> bool {
        self.inproc
    }
}

/// Handles a user page fault of `space`; `Err` means SIGSEGV. Returns the space's map
/// generation afterwards (see [`MapGeneration`]).
pub(crate) fn handle_fault(
    space: &Space,
    addr: u64,
    error_code: u64,
) -> Result<MapGeneration, Errno> {
    space.mm.lock().fault(addr, error_code)
}

/// The current task's address space.
fn current_space() -> Result<Arc<Space>, Errno> {
    let t = super::task::try_current_task().ok_or(Errno::EFAULT)?;
    let s = t.process.space.lock().clone();
    s.ok_or(Errno::EFAULT)
}
