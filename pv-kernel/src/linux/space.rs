//! Guest address spaces: the kernel's record of a process's memory (mappings and pages) and
//! the user sandbox that realises it.
//!
//! The kernel keeps, per space, the mapped regions ([`Vma`]) and the user pages
//! ([`Pte`]: a pool frame, possibly copy-on-write). User memory is never mapped in the kernel
//! sandbox: the kernel reads and writes it through the direct map after translating here.
//! Changes are queued as [`UserOp`]s that the user sandbox applies before it next runs user
//! code ([`Space::run`]); frames whose mappings are being removed are freed only after that.
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
//! forking thread's slot, [`Space::sync_ops`] — before `fork` returns and the child can run.
//! Until then the parent's other threads do not enter user code ([`Space::run`] waits for the
//! fork): one of them could otherwise fault in a page the child does not have, and then write
//! into a page the two still share (the child would see the second write without the first).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::user::{
    command, in_user_window, op, prot, user_ctx_size, user_slot_offset, user_stat, UserCtxHeader,
    UserExit, UserOp, UserSlot, USER_CTX_MAGIC, USER_FPSTATE_MAX, USER_OPS_MAX,
};
use pvmux_hypercalls::{TrapFrame, ABI_VERSION, PAGE_SIZE};

use super::shmem::ShmRef;
use super::{pool, Errno};
use crate::irq::{IrqGuard, IrqLock};
use crate::sched::wait::WaitQueue;

/// Pages mapped around an anonymous fault (aligned block, inside the region).
const FAULT_AROUND: u64 = 16;
/// How long the kernel spins for a slot to come back before sleeping.
const SPIN_NS: u64 = 30_000;
/// Sleep slices while waiting (re-checks the sandbox's death flag in between).
const WAIT_SLICE_NS: u64 = 20_000_000;
/// Longest a request may stay unanswered before the space is treated as dead. An honest
/// user stub answers within a time slice; a user program can keep it from ever answering
/// (it can write its slot's sequence words, or stop its slice timer from stub code), and
/// this vCPU must not wait for it forever.
const RUN_TIMEOUT_NS: u64 = 2_000_000_000;

/// A mapped region `[start, end)`.
#[derive(Clone, Debug)]
pub(crate) struct Vma {
    /// End (exclusive).
    pub(crate) end: u64,
    /// `PROT_*` bits.
    pub(crate) prot: u32,
    /// `MAP_SHARED` anonymous memory: the object whose pages the region maps, shared (not
    /// copy-on-write) with every other region of it, in this space or another.
    pub(crate) shm: Option<ShmRef>,
}

impl Vma {
    /// The part of this region (which starts at `start`) from `at` on.
    fn tail(&self, start: u64, at: u64) -> Self {
        Self {
            end: self.end,
            prot: self.prot,
            shm: self.shm.as_ref().map(|s| s.advanced(at - start)),
        }
    }

    /// The shared object seen from `va` of this region (which starts at `start`), if any.
    pub(crate) fn shm_at(&self, start: u64, va: u64) -> Option<ShmRef> {
        self.shm.as_ref().map(|s| s.advanced(va - start))
    }
}

/// One user page.
#[derive(Clone, Copy, Debug)]
struct Pte {
    /// Pool frame.
    gpa: u64,
    /// Shared with another space after `fork`: the first write copies it.
    cow: bool,
}

/// The memory map of a space (under its lock).
pub(crate) struct Mm {
    vmas: BTreeMap<u64, Vma>,
    pages: BTreeMap<u64, Pte>,
    ops: Vec<UserOp>,
    /// Frames to release once the queued operations have been applied.
    deferred: Vec<u64>,
    /// Start of the heap (`brk` cannot go below).
    pub(crate) brk_base: u64,
    /// Current program break.
    pub(crate) brk: u64,
    /// Next top-down `mmap` placement hint.
    pub(crate) mmap_top: u64,
    /// Bumped by every change to the page map or the regions (each one queues an op), not
    /// by a fault that only re-sends a mapping the sandbox should already have: see
    /// [`MapGeneration`].
    generation: u64,
    /// Number of the last batch of operations taken from `ops` (`UserSlot::ops_seq`).
    ops_seq: u64,
}

/// Operations taken from a space's queue for one request.
struct Batch {
    ops: Vec<UserOp>,
    /// Its number, or with no operations the number of the last batch taken before.
    seq: u64,
    /// More operations are queued after these.
    more: bool,
    /// Frames to release once the request has come back (with the last batch only).
    freed: Vec<u64>,
}

/// A version of a space's memory map, returned by [`handle_fault`]: two faults of a thread at
/// one address that come back with the same generation mean nothing at all changed in the
/// address space in between — the handler found the page already resolved both times and
/// only re-sent its mapping — so the sandbox is not honouring that mapping (a fault loop).
/// A fault that repeats *with* changes in between is progress: e.g. a parent that forks in a
/// loop write-faults at the same stack slot after every `fork` (each time a new
/// copy-on-write break).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct MapGeneration(u64);

/// Memory use of a space (for the out-of-memory killer and `getrusage`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemUsage {
    /// Bytes mapped (all regions).
    pub(crate) mapped: u64,
    /// Resident pages of private memory.
    pub(crate) private_pages: usize,
    /// Resident pages of shared memory.
    pub(crate) shared_pages: usize,
}

/// What came back from running user code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A system call (number in `regs.rax`).
    Syscall,
    /// An exception.
    Exception {
        /// Vector.
        vector: u32,
        /// Error code.
        error_code: u64,
        /// Fault address.
        addr: u64,
    },
    /// The time slice ended.
    Interrupt,
    /// The sandbox is gone (killed, crashed) or misbehaved.
    Dead,
}

/// A thread's user-mode state, carried into and out of [`Space::run`].
pub(crate) struct UserState {
    /// Registers.
    pub(crate) regs: TrapFrame,
    /// FS base (TLS).
    pub(crate) fs_base: u64,
    /// Saved FPU state (XSAVE image); empty = initial state.
    pub(crate) fp: Vec<u8>,
    /// Time user code ran in the runs since this was last taken (the user sandbox's count,
    /// clamped to how long each run took).
    pub(crate) user_ns: u64,
}

impl UserState {
    /// A fresh state entering at `rip` with stack `rsp`.
    pub(crate) fn new(rip: u64, rsp: u64) -> Self {
        Self {
            regs: TrapFrame {
                rip,
                rsp,
                rflags: 0x202,
                ..Default::default()
            },
            fs_base: 0,
            fp: Vec::new(),
            user_ns: 0,
        }
    }
}

/// A guest address space and its user sandbox.
pub(crate) struct Space {
    /// Host handle of the user sandbox.
    handle: u64,
    /// Guest-physical address of the context region.
    ctx_gpa: u64,
    /// Its size in pages.
    ctx_pages: usize,
    /// The memory map.
    pub(crate) mm: IrqLock<Mm>,
    /// The host's proof of death for this space's sandbox (see [`Grave::reaped`]); moved
    /// into the graveyard on drop.
    reaped: spin::Mutex<Option<alloc::boxed::Box<AtomicU32>>>,
    /// Per slot: guest time at which its slice timer fires (0 = not armed). The timer is
    /// re-armed only once it has fired, which saves a host timer call per entry.
    slice_deadline: [AtomicU64; pvmux_hypercalls::MAX_VCPUS as usize],
    /// Forks of this space under way ([`Space::fork`]): its threads wait in [`Space::run`]
    /// until there are none.
    forking: AtomicU32,
    /// Woken when a fork of this space is done.
    fork_done: WaitQueue,
}

/// Spaces destroyed but possibly not dead yet: their frames are released once the host
/// reports the sandbox gone (it may still touch them until then). `SpaceDestroy` returns
/// at once and the host marks the space dead once it has reaped the sandbox, so every
/// destroyed space passes through here.
static GRAVEYARD: IrqLock<Vec<Grave>> = IrqLock::new(Vec::new());

/// A destroyed space waiting for its sandbox to be gone.
struct Grave {
    /// Context region and its size in pages.
    ctx_gpa: u64,
    ctx_pages: usize,
    /// Its user pages.
    frames: Vec<u64>,
    /// Set to 1 by the host once the sandbox process is reaped. It lives in kernel memory
    /// (below the user pool), so unlike the context region's `dead` flag — which the sandbox
    /// itself can write — a hostile program cannot fake it to get its memory reused while
    /// it still runs.
    reaped: alloc::boxed::Box<AtomicU32>,
}
/// Entries in [`GRAVEYARD`] (checked without the lock on hot paths).
static GRAVE_LEN: AtomicU32 = AtomicU32::new(0);
/// Longest [`Space::new`] waits for destroyed spaces to die when the pool is short.
const RECLAIM_WAIT_NS: u64 = 1_000_000_000;
/// Poll period of that wait.
const RECLAIM_POLL_NS: u64 = 100_000;

/// Live spaces (statistics).
pub(crate) static LIVE: AtomicU32 = AtomicU32::new(0);

/// Waits (at most [`RECLAIM_WAIT_NS`]) until destroyed spaces die and their memory returns to
/// the pool; true if anything was released. For callers that ran out of pool memory (must not
/// hold a space lock).
pub(crate) fn wait_for_reclaim() -> bool {
    let deadline = crate::stub::clock_ns() + RECLAIM_WAIT_NS;
    loop {
        if reap_graveyard() {
            return true;
        }
        let now = crate::stub::clock_ns();
        if GRAVE_LEN.load(Ordering::Acquire) == 0 || now >= deadline {
            return false;
        }
        crate::sched::sleep_until(now + RECLAIM_POLL_NS);
    }
}

/// TSC ticks as nanoseconds (the boot information's clock scale).
fn ticks_to_ns(ticks: u64) -> u64 {
    let bi = crate::boot::info();
    ((u128::from(ticks) * u128::from(bi.clock_mult)) >> bi.clock_shift.min(63)) as u64
}

/// The slot index of `slot_gpa` in the context region at `ctx_gpa`.
fn cpu_of(slot_gpa: u64, ctx_gpa: u64) -> usize {
    ((slot_gpa - ctx_gpa - user_slot_offset(0)) / pvmux_hypercalls::user::USER_SLOT_SIZE) as usize
}

fn header(ctx_gpa: u64) -> *mut UserCtxHeader {
    crate::boot::phys_to_virt(ctx_gpa) as *mut UserCtxHeader
}

fn is_dead(ctx_gpa: u64) -> bool {
    // SAFETY: the context region stays allocated while any reference to it exists (it is
    // released from the graveyard only after this flag was seen); `dead` is an atomic.
    unsafe { (*header(ctx_gpa)).dead.load(Ordering::Acquire) != 0 }
}

/// Releases the frames of destroyed spaces whose sandboxes have ended. Returns whether it
/// released any. Cheap when the graveyard is empty.
pub(crate) fn reap_graveyard() -> bool {
    if GRAVE_LEN.load(Ordering::Acquire) == 0 {
        return false;
    }
    let done: Vec<Grave> = {
        let mut g = GRAVEYARD.lock();
        let mut done = Vec::new();
        let mut i = 0;
        while i < g.len() {
            if g[i].reaped.load(Ordering::Acquire) != 0 {
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
        for f in grave.frames {
            pool::put(f);
        }
        for p in 0..grave.ctx_pages as u64 {
            pool::put(grave.ctx_gpa + p * PAGE_SIZE);
        }
    }
    any
}

/// A pool allocation that, when the pool is empty, first releases what the graveyard can
/// (without waiting: callers may hold locks) or else the program image cache, and tries once
/// more.
fn alloc_reclaiming(f: impl Fn() -> Result<u64, Errno>) -> Result<u64, Errno> {
    f().or_else(|e| {
        if reap_graveyard() || super::imagecache::shrink() {
            f()
        } else {
            Err(e)
        }
    })
}

impl Mm {
    fn new() -> Self {
        Self {
            vmas: BTreeMap::new(),
            pages: BTreeMap::new(),
            ops: Vec::new(),
            deferred: Vec::new(),
            brk_base: 0,
            brk: 0,
            mmap_top: super::exec::MMAP_TOP,
            generation: 0,
            ops_seq: 0,
        }
    }

    /// Takes the next batch of queued operations (at most a slot's worth).
    fn take_batch(&mut self) -> Batch {
        let n = self.ops.len().min(USER_OPS_MAX);
        let ops: Vec<UserOp> = self.ops.drain(..n).collect();
        if n > 0 {
            self.ops_seq += 1;
        }
        let more = !self.ops.is_empty();
        // The frames queued for release so far are unmapped by the operations taken up to
        // now: once this batch (and so every earlier one) is applied, they are unused.
        let freed = if more {
            Vec::new()
        } else {
            core::mem::take(&mut self.deferred)
        };
        Batch {
            ops,
            seq: self.ops_seq,
            more,
            freed,
        }
    }

    /// The region containing `va`.
    pub(crate) fn vma_at(&self, va: u64) -> Option<(u64, Vma)> {
        let (&s, v) = self.vmas.range(..=va).next_back()?;
        (va < v.end).then(|| (s, v.clone()))
    }

    /// True if `[start, end)` overlaps no region.
    pub(crate) fn is_free(&self, start: u64, end: u64) -> bool {
        if let Some((_, v)) = self.vmas.range(..end).next_back() {
            if v.end > start {
                return false;
            }
        }
        true
    }

    /// Queues a change of the sandbox's mappings (a new [`MapGeneration`]).
    fn push_op(&mut self, kind: u32, prot_bits: u32, addr: u64, len: u64, offset: u64) {
        self.generation += 1;
        self.push_op_again(kind, prot_bits, addr, len, offset);
    }

    /// Queues an operation that changes nothing in the map: it re-sends what the sandbox
    /// should already have (see [`handle_fault`]).
    fn push_op_again(&mut self, kind: u32, prot_bits: u32, addr: u64, len: u64, offset: u64) {
        if let Some(last) = self.ops.last_mut() {
            let contiguous = last.kind == kind
                && last.prot == prot_bits
                && last.addr + last.len == addr
                && (kind != op::MAP || last.offset + last.len == offset);
            if contiguous {
                last.len += len;
                return;
            }
        }
        self.ops.push(UserOp {
            kind,
            prot: prot_bits,
            addr,
            len,
            offset,
        });
    }

    fn map_prot(vma: &Vma, pte: &Pte) -> u32 {
        let mut p = vma.prot & prot::ALL;
        if pte.cow {
            p &= !prot::WRITE;
        }
        if p != 0 {
            p |= prot::READ;
        }
        p
    }

    fn queue_map(&mut self, va: u64, vma: &Vma, pte: &Pte) {
        let p = Self::map_prot(vma, pte);
        self.push_op(op::MAP, p, va, PAGE_SIZE, pte.gpa);
    }

    /// Adds a region (the range must be free), mapping the shared object `shm` if given.
    /// Pages are populated on demand.
    pub(crate) fn add_vma(&mut self, start: u64, end: u64, prot_bits: u32, shm: Option<ShmRef>) {
        self.vmas.insert(
            start,
            Vma {
                end,
                prot: prot_bits,
                shm,
            },
        );
    }

    /// Removes `[start, end)` from the map: regions are trimmed or split, pages released
    /// (after the sandbox has unmapped them).
    pub(crate) fn unmap(&mut self, start: u64, end: u64) {
        let keys: Vec<u64> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, _)| s)
            .collect();
        if keys.is_empty() {
            return;
        }
        for s in keys {
            let v = self.vmas.remove(&s).expect("region");
            if s < start {
                self.vmas.insert(
                    s,
                    Vma {
                        end: start,
                        ..v.clone()
                    },
                );
            }
            if v.end > end {
                self.vmas.insert(end, v.tail(s, end));
            }
        }
        let pages: Vec<u64> = self.pages.range(start..end).map(|(&va, _)| va).collect();
        for va in pages {
            if let Some(p) = self.pages.remove(&va) {
                self.deferred.push(p.gpa);
            }
        }
        self.push_op(op::UNMAP, 0, start, end - start, 0);
    }

    /// Changes the protection of `[start, end)` (which must be fully mapped).
    pub(crate) fn protect(&mut self, start: u64, end: u64, prot_bits: u32) -> Result<(), Errno> {
        // Check coverage first.
        let mut at = start;
        while at < end {
            let (_, v) = self.vma_at(at).ok_or(Errno::ENOMEM)?;
            at = v.end;
        }
        let keys: Vec<u64> = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(&s, _)| s)
            .collect();
        for s in keys {
            let v = self.vmas.remove(&s).expect("region");
            if s < start {
                self.vmas.insert(
                    s,
                    Vma {
                        end: start,
                        ..v.clone()
                    },
                );
            }
            let (ns, ne) = (s.max(start), v.end.min(end));
            self.vmas.insert(
                ns,
                Vma {
                    end: ne,
                    prot: prot_bits,
                    shm: v.shm_at(s, ns),
                },
            );
            if v.end > end {
                self.vmas.insert(end, v.tail(s, end));
            }
        }
        // Re-map the present pages with the new rights (or unmap them for PROT_NONE).
        let pages: Vec<(u64, Pte)> = self
            .pages
            .range(start..end)
            .map(|(&va, &p)| (va, p))
            .collect();
        for (va, pte) in pages {
            let (_, v) = self.vma_at(va).expect("covered");
            if v.prot & prot::ALL == 0 {
                self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            } else {
                self.queue_map(va, &v, &pte);
            }
        }
        Ok(())
    }

    /// Resolves a user access to `va`, populating or copying the page as a fault would.
    /// Returns the frame. `Err(EFAULT)` if the access is not allowed.
    pub(crate) fn touch(&mut self, va: u64, write: bool, exec: bool) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        let (vstart, vma) = self.vma_at(page).ok_or(Errno::EFAULT)?;
        let p = vma.prot;
        if p & prot::ALL == 0 || (write && p & prot::WRITE == 0) || (exec && p & prot::EXEC == 0) {
            return Err(Errno::EFAULT);
        }
        if let Some(pte) = self.pages.get(&page).copied() {
            if write && pte.cow {
                let npte = if pool::refs(pte.gpa) == 1 {
                    Pte {
                        gpa: pte.gpa,
                        cow: false,
                    }
                } else {
                    let new = alloc_reclaiming(pool::alloc)?;
                    // SAFETY: both are pool frames covered by the direct map; `new` is ours
                    // alone, `pte.gpa` is only read.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            pool::frame_ptr(pte.gpa),
                            pool::frame_ptr(new),
                            PAGE_SIZE as usize,
                        )
                    };
                    self.deferred.push(pte.gpa);
                    Pte {
                        gpa: new,
                        cow: false,
                    }
                };
                self.pages.insert(page, npte);
                self.queue_map(page, &vma, &npte);
                return Ok(npte.gpa);
            }
            return Ok(pte.gpa);
        }
        // Populate: this page and, for anonymous memory, an aligned block around it.
        let block = FAULT_AROUND * PAGE_SIZE;
        let lo = (page & !(block - 1)).max(vstart);
        let hi = ((page & !(block - 1)) + block).min(vma.end);
        let mut first = 0;
        let mut va_i = lo;
        while va_i < hi {
            if let alloc::collections::btree_map::Entry::Vacant(slot) = self.pages.entry(va_i) {
                let gpa = if va_i == page {
                    Some(Self::fresh_frame(&vma, vstart, va_i)?)
                } else {
                    Self::around_frame(&vma, vstart, va_i)
                };
                match gpa {
                    Some(gpa) => {
                        let pte = *slot.insert(Pte { gpa, cow: false });
                        self.queue_map(va_i, &vma, &pte);
                        if va_i == page {
                            first = gpa;
                        }
                    }
                    // Private memory: the pool is short, stop the fault-around.
                    None if vma.shm.is_none() => break,
                    None => {}
                }
            }
            va_i += PAGE_SIZE;
        }
        Ok(first)
    }

    /// The frame for a first access to `va` in `vma` (starting at `vstart`), with one
    /// reference for this space: the shared object's page (created zeroed if it has none)
    /// for shared memory, else a fresh zeroed frame.
    fn fresh_frame(vma: &Vma, vstart: u64, va: u64) -> Result<u64, Errno> {
        match &vma.shm {
            Some(shm) => shm.obj.frame(shm.index(vstart, va), || {
                alloc_reclaiming(pool::alloc_zeroed)
            }),
            None => alloc_reclaiming(pool::alloc_zeroed),
        }
    }

    /// A frame to map ahead at `va` around a fault: for shared memory only a page the object
    /// already has; for private memory a fresh zeroed frame while the pool is not short.
    fn around_frame(vma: &Vma, vstart: u64, va: u64) -> Option<u64> {
        match &vma.shm {
            Some(shm) => shm.obj.existing(shm.index(vstart, va)),
            None if pool::stats().0 > 64 => alloc_reclaiming(pool::alloc_zeroed).ok(),
            None => None,
        }
    }

    /// The frame at `va`, allocating a zero page if none (kernel use: ignores protection;
    /// the page must be inside a region).
    pub(crate) fn populate(&mut self, va: u64) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        if let Some(p) = self.pages.get(&page) {
            return Ok(p.gpa);
        }
        let (vstart, vma) = self.vma_at(page).ok_or(Errno::EFAULT)?;
        let gpa = Self::fresh_frame(&vma, vstart, page)?;
        let pte = Pte { gpa, cow: false };
        self.pages.insert(page, pte);
        self.queue_map(page, &vma, &pte);
        Ok(gpa)
    }

    /// The private frame at `va` for the kernel to write into: allocated (zeroed) if absent,
    /// copied first if shared copy-on-write. Ignores protection (exec, signal frames).
    pub(crate) fn populate_private(&mut self, va: u64) -> Result<u64, Errno> {
        let page = va & !(PAGE_SIZE - 1);
        match self.pages.get(&page).copied() {
            Some(p) if p.cow => {
                let new = alloc_reclaiming(pool::alloc)?;
                // SAFETY: both pool frames are covered by the direct map; `new` is ours alone.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        pool::frame_ptr(p.gpa),
                        pool::frame_ptr(new),
                        PAGE_SIZE as usize,
                    )
                };
                self.deferred.push(p.gpa);
                let npte = Pte {
                    gpa: new,
                    cow: false,
                };
                self.pages.insert(page, npte);
                if let Some((_, v)) = self.vma_at(page) {
                    self.queue_map(page, &v, &npte);
                }
                Ok(new)
            }
            _ => self.populate(va),
        }
    }

    /// Maps pool frame `gpa` (the caller gave this space one reference) at `va` copy-on-write:
    /// shared read-only until the first write copies it. `va` must be in a region and
    /// unpopulated.
    pub(crate) fn install_cow(&mut self, va: u64, gpa: u64) {
        let page = va & !(PAGE_SIZE - 1);
        let pte = Pte { gpa, cow: true };
        if let Some(old) = self.pages.insert(page, pte) {
            self.deferred.push(old.gpa);
        }
        if let Some((_, v)) = self.vma_at(page) {
            self.queue_map(page, &v, &pte);
        }
    }

    /// Adds `[s, e)` with `prot_bits`; parts already mapped get the union of both rights
    /// (ELF segments sharing a page).
    pub(crate) fn add_region_merging(&mut self, s: u64, e: u64, prot_bits: u32) {
        let mut at = s;
        while at < e {
            if let Some((_, v)) = self.vma_at(at) {
                let end = v.end.min(e);
                let _ = self.protect(at, end, v.prot | prot_bits);
                at = end;
            } else {
                let next = self.vmas.range(at..).next().map_or(e, |(&k, _)| k).min(e);
                self.add_vma(at, next, prot_bits, None);
                at = next;
            }
        }
    }

    /// Frame of a present page (no population).
    pub(crate) fn frame_of(&self, va: u64) -> Option<u64> {
        self.pages.get(&(va & !(PAGE_SIZE - 1))).map(|p| p.gpa)
    }

    /// Discards the pages of `[start, end)` (MADV_DONTNEED: they read as zero again).
    pub(crate) fn discard(&mut self, start: u64, end: u64) {
        let pages: Vec<u64> = self.pages.range(start..end).map(|(&va, _)| va).collect();
        for va in pages {
            if let Some(p) = self.pages.remove(&va) {
                self.deferred.push(p.gpa);
                self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            }
        }
    }

    /// Number of resident pages.
    pub(crate) fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// What the space uses: mapped bytes and resident pages, private and shared.
    pub(crate) fn usage(&self) -> MemUsage {
        let mut u = MemUsage {
            mapped: self.vmas.iter().map(|(&s, v)| v.end - s).sum(),
            ..MemUsage::default()
        };
        for (&s, v) in &self.vmas {
            let n = self.pages.range(s..v.end).count();
            if v.shm.is_some() {
                u.shared_pages += n;
            } else {
                u.private_pages += n;
            }
        }
        u
    }

    /// Regions, for `/proc`-like listings and `mremap`.
    pub(crate) fn vmas(&self) -> impl Iterator<Item = (u64, &Vma)> + '_ {
        self.vmas.iter().map(|(&s, v)| (s, v))
    }

    /// Moves the pages of `[old, old+len)` to `[new, new+len)` (mremap with a move).
    pub(crate) fn move_pages(&mut self, old: u64, new: u64, len: u64) {
        let pages: Vec<(u64, Pte)> = self
            .pages
            .range(old..old + len)
            .map(|(&va, &p)| (va, p))
            .collect();
        for (va, pte) in pages {
            self.pages.remove(&va);
            self.push_op(op::UNMAP, 0, va, PAGE_SIZE, 0);
            let nva = va - old + new;
            self.pages.insert(nva, pte);
            if let Some((_, v)) = self.vma_at(nva) {
                self.queue_map(nva, &v, &pte);
            }
        }
    }
}

impl Space {
    /// Creates an empty space and asks the host for its user sandbox.
    pub(crate) fn new() -> Result<Arc<Self>, Errno> {
        reap_graveyard();
        let n = crate::boot::nr_vcpus();
        let size = user_ctx_size(n);
        let pages = (size / PAGE_SIZE) as usize;
        // Short of memory with destroyed spaces not dead yet: their sandboxes are being
        // reaped (a matter of microseconds to milliseconds); wait for them a little.
        let deadline = crate::stub::clock_ns() + RECLAIM_WAIT_NS;
        let ctx_gpa = loop {
            match pool::alloc_contiguous_zeroed(pages) {
                Ok(g) => break g,
                Err(e) => {
                    let now = crate::stub::clock_ns();
                    if reap_graveyard() {
                        continue;
                    }
                    if GRAVE_LEN.load(Ordering::Acquire) == 0 || now >= deadline {
                        return Err(e);
                    }
                    crate::sched::sleep_until(now + RECLAIM_POLL_NS);
                }
            }
        };
        let h = header(ctx_gpa);
        // SAFETY: the region was just allocated and zeroed; the header is plain data that
        // nobody else sees before `SpaceCreate`.
        unsafe {
            addr_of_mut!((*h).magic).write_volatile(USER_CTX_MAGIC);
            addr_of_mut!((*h).abi_version).write_volatile(ABI_VERSION);
            addr_of_mut!((*h).nr_slots).write_volatile(n);
        }
        let reaped = alloc::boxed::Box::new(AtomicU32::new(0));
        let reaped_gpa = crate::boot::virt_to_phys(&*reaped as *const AtomicU32 as u64, 4)
            .ok_or(Errno::ENOMEM)?;
        let Ok(handle) = crate::hcall::space_create(ctx_gpa, reaped_gpa) else {
            for p in 0..pages as u64 {
                pool::put(ctx_gpa + p * PAGE_SIZE);
            }
            return Err(Errno::EAGAIN);
        };
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Self {
            handle,
            ctx_gpa,
            ctx_pages: pages,
            reaped: spin::Mutex::new(Some(reaped)),
            mm: IrqLock::new(Mm::new()),
            slice_deadline: [const { AtomicU64::new(0) }; pvmux_hypercalls::MAX_VCPUS as usize],
            forking: AtomicU32::new(0),
            fork_done: WaitQueue::new(),
        }))
    }

    /// A copy-on-write copy of this space (`fork`): a snapshot of the parent at one instant.
    /// Returns once the parent's write protection is in force in its sandbox (so no thread of
    /// the parent can write into a page it now shares with the child); meanwhile the parent's
    /// other threads wait before entering user code.
    pub(crate) fn fork(&self) -> Result<Arc<Self>, Errno> {
        let child = Self::new()?;
        let mut pm = self.mm.lock();
        // Under the lock that the page map is copied under: a thread that changes the map
        // after the copy sees the fork when it next wants to run user code.
        self.forking.fetch_add(1, Ordering::SeqCst);
        let mut cm = child.mm.lock();
        cm.vmas = pm.vmas.clone();
        cm.brk_base = pm.brk_base;
        cm.brk = pm.brk;
        cm.mmap_top = pm.mmap_top;
        let pages: Vec<(u64, Pte)> = pm.pages.iter().map(|(&va, &p)| (va, p)).collect();
        for (va, pte) in pages {
            let Some((_, vma)) = pm.vma_at(va) else {
                continue;
            };
            pool::get(pte.gpa);
            let share = vma.shm.is_some();
            let npte = Pte {
                gpa: pte.gpa,
                cow: !share,
            };
            if !share && !pte.cow {
                pm.pages.insert(va, npte);
                if vma.prot & prot::WRITE != 0 {
                    pm.queue_map(va, &vma, &npte);
                }
            }
            cm.pages.insert(va, npte);
            cm.queue_map(va, &vma, &npte);
        }
        drop(cm);
        drop(pm);
        let synced = self.sync_ops();
        self.forking.fetch_sub(1, Ordering::SeqCst);
        self.fork_done.wake_all();
        // A parent whose sandbox is gone is being killed (its next run says so).
        synced.map(|()| child).map_err(|()| Errno::EAGAIN)
    }

    /// Puts every operation queued so far in force now, on this vCPU's slot (in rounds if
    /// there are many), and waits until the batches other threads took before are applied
    /// too. `Err` if the sandbox is dead.
    fn sync_ops(&self) -> Result<(), ()> {
        let _irq = IrqGuard::new();
        let cpu = crate::stub::vcpu_id();
        let slot_gpa = self.ctx_gpa + user_slot_offset(cpu);
        let slot = crate::boot::phys_to_virt(slot_gpa) as *mut UserSlot;
        let mut unused = UserState::new(0, 0);
        loop {
            let batch = self.mm.lock().take_batch();
            // SAFETY: the slot lies in our context region (as in `run`).
            let exit = unsafe { self.hand_over(slot, slot_gpa, &batch, true, &mut unused, false) };
            self.release(batch.freed, exit.is_some());
            match exit {
                None if batch.more => continue,
                None => return Ok(()),
                Some(_) => return Err(()),
            }
        }
    }

    /// Runs user code on this vCPU's slot until it comes back. Applies queued operations
    /// first (in several rounds if there are many).
    pub(crate) fn run(&self, st: &mut UserState, fp_init: bool) -> Exit {
        // Release destroyed spaces that have died since (exit + wait4 + fork loops would
        // otherwise only release them in `Space::new`).
        reap_graveyard();
        // A fork of this space is under way: user code waits until its write protection is
        // in force (see the module documentation).
        if self.forking.load(Ordering::SeqCst) != 0 {
            self.fork_done
                .wait_until(|| self.forking.load(Ordering::SeqCst) == 0);
        }
        let _irq = IrqGuard::new();
        let cpu = crate::stub::vcpu_id();
        let slot_gpa = self.ctx_gpa + user_slot_offset(cpu);
        let slot = crate::boot::phys_to_virt(slot_gpa) as *mut UserSlot;
        loop {
            let batch = self.mm.lock().take_batch();
            // SAFETY: the slot lies in our context region (allocated for this space's
            // lifetime); the user side may scribble on it concurrently, which only affects
            // this process's own state: every field is written with volatile stores and read
            // back with volatile loads, and nothing read is trusted.
            let exit = unsafe { self.hand_over(slot, slot_gpa, &batch, batch.more, st, fp_init) };
            self.release(batch.freed, exit == Some(Exit::Dead));
            if let Some(e) = exit {
                return e;
            }
        }
    }

    /// Releases the frames a batch unmapped, once its request came back. If it came back
    /// `dead` the operations may not have been applied (a sandbox that did not answer in time
    /// may still run): the frames go back to the space, to wait in the graveyard with it.
    fn release(&self, freed: Vec<u64>, dead: bool) {
        if dead {
            self.mm.lock().deferred.extend(freed);
        } else {
            for f in freed {
                pool::put(f);
            }
        }
    }

    /// One request on a slot. Returns `None` for a completed OPS_ONLY round.
    ///
    /// # Safety
    /// `slot` must point to this space's slot for the current vCPU (`slot_gpa`).
    unsafe fn hand_over(
        &self,
        slot: *mut UserSlot,
        slot_gpa: u64,
        batch: &Batch,
        ops_only: bool,
        st: &mut UserState,
        fp_init: bool,
    ) -> Option<Exit> {
        use core::ptr::{read_volatile as rv, write_volatile as wv};
        // SAFETY: per the function contract `slot` is valid; see `run` for the sharing rules.
        unsafe {
            let s = &*slot;
            for (i, o) in batch.ops.iter().enumerate() {
                wv(addr_of_mut!((*slot).ops[i]), *o);
            }
            wv(addr_of_mut!((*slot).nr_ops), batch.ops.len() as u32);
            wv(addr_of_mut!((*slot).ops_seq), batch.seq);
            wv(
                addr_of_mut!((*slot).command),
                if ops_only {
                    command::OPS_ONLY
                } else {
                    command::RUN
                },
            );
            if !ops_only {
                wv(addr_of_mut!((*slot).regs), st.regs);
                wv(addr_of_mut!((*slot).fs_base), st.fs_base);
                let now = crate::stub::clock_ns();
                let dl = &self.slice_deadline[cpu_of(slot_gpa, self.ctx_gpa)];
                let slice = if dl.load(Ordering::Relaxed) <= now {
                    dl.store(now + super::task::SLICE_NS, Ordering::Relaxed);
                    super::task::SLICE_NS
                } else {
                    0
                };
                wv(addr_of_mut!((*slot).slice_ns), slice);
                let fl = st.fp.len().min(USER_FPSTATE_MAX);
                if fl > 0 {
                    core::ptr::copy_nonoverlapping(
                        st.fp.as_ptr(),
                        addr_of_mut!((*slot).fpstate) as *mut u8,
                        fl,
                    );
                }
                wv(addr_of_mut!((*slot).fp_len), fl as u32);
                wv(addr_of_mut!((*slot).fp_init), u32::from(fp_init && fl == 0));
            }
            let seq = s.run_seq.load(Ordering::Relaxed).wrapping_add(1);
            let old_done = s.done_seq.load(Ordering::Relaxed);
            let user_ticks = &s.stats[user_stat::USER_TICKS];
            let (ticks_before, tsc_before) =
                (user_ticks.load(Ordering::Relaxed), crate::arch::rdtsc());
            s.run_seq.store(seq, Ordering::SeqCst);
            if s.user_waiting.load(Ordering::SeqCst) != 0 {
                crate::stub::user_wake(slot_gpa);
            }
            let done_gpa = slot_gpa + 4;
            let start = crate::stub::clock_ns();
            // Bounded spin, then sleep. (An adaptive budget that shrank after sleeps was
            // measured: once below the user side's turnaround it never recovered, and every
            // system call paid a futex wake-up: 7-10 µs instead of 4 µs.)
            let spin = SPIN_NS;
            let mut slept = false;
            loop {
                let d = s.done_seq.load(Ordering::Acquire);
                if d == seq {
                    break;
                }
                if is_dead(self.ctx_gpa) {
                    return Some(Exit::Dead);
                }
                let waited = crate::stub::clock_ns().wrapping_sub(start);
                if waited > RUN_TIMEOUT_NS {
                    return Some(Exit::Dead);
                }
                if !slept && waited < spin {
                    core::hint::spin_loop();
                    continue;
                }
                slept = true;
                s.kernel_waiting.store(1, Ordering::SeqCst);
                let d2 = s.done_seq.load(Ordering::SeqCst);
                if d2 != seq {
                    crate::stub::user_wait(done_gpa, d2, WAIT_SLICE_NS);
                }
                s.kernel_waiting.store(0, Ordering::Relaxed);
                let _ = old_done;
            }
            let reason = rv(addr_of_mut!((*slot).exit_reason));
            let exit = match UserExit::from_raw(reason) {
                Some(UserExit::OpsDone) if ops_only => return None,
                Some(UserExit::Syscall) => Exit::Syscall,
                Some(UserExit::Exception) => Exit::Exception {
                    vector: rv(addr_of_mut!((*slot).exit_vector)),
                    error_code: rv(addr_of_mut!((*slot).exit_error_code)),
                    addr: rv(addr_of_mut!((*slot).exit_addr)),
                },
                Some(UserExit::Interrupt) => {
                    self.slice_deadline[cpu_of(slot_gpa, self.ctx_gpa)].store(0, Ordering::Relaxed);
                    Exit::Interrupt
                }
                // A failed operation means the sandbox refused a mapping we validated:
                // treat it as broken. Anything else is garbage.
                _ => return Some(Exit::Dead),
            };
            if ops_only {
                return Some(Exit::Dead);
            }
            // User time: what the sandbox counted, at most the whole run.
            let ticks = user_ticks
                .load(Ordering::Relaxed)
                .wrapping_sub(ticks_before)
                .min(crate::arch::rdtsc().wrapping_sub(tsc_before));
            st.user_ns += ticks_to_ns(ticks);
            let mut regs: TrapFrame = rv(addr_of_mut!((*slot).regs));
            regs.vector = 0;
            regs.error_code = 0;
            regs.fault_addr = 0;
            st.regs = regs;
            st.fs_base = rv(addr_of_mut!((*slot).fs_base));
            let saved = (rv(addr_of_mut!((*slot).fp_saved_len)) as usize).min(USER_FPSTATE_MAX);
            st.fp.clear();
            st.fp.extend_from_slice(core::slice::from_raw_parts(
                addr_of_mut!((*slot).fpstate) as *const u8,
                saved,
            ));
            Some(exit)
        }
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        // The host kills the sandbox and returns at once; it sets our `reaped` word once the
        // process is reaped. Until then the sandbox may still touch the context region and
        // the pages, so they wait in the graveyard. (A sandbox that died on its own was
        // reaped already: the word is set and the graveyard releases it at once.)
        let _ = crate::hcall::space_destroy(self.handle);
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let mm = self.mm.get_mut();
        let mut frames: Vec<u64> = mm.pages.values().map(|p| p.gpa).collect();
        frames.append(&mut mm.deferred);
        mm.pages.clear();
        {
            let reaped = self.reaped.lock().take().expect("reaped word");
            let mut g = GRAVEYARD.lock();
            g.push(Grave {
                ctx_gpa: self.ctx_gpa,
                ctx_pages: self.ctx_pages,
                frames,
                reaped,
            });
            GRAVE_LEN.store(g.len() as u32, Ordering::Release);
        }
        reap_graveyard();
    }
}

/// The current task's address space.
fn current_space() -> Result<Arc<Space>, Errno> {
    let t = super::task::try_current_task().ok_or(Errno::EFAULT)?;
    let s = t.process.space.lock().clone();
    s.ok_or(Errno::EFAULT)
}

/// Walks `[va, va+len)` of the current address space, calling `f(offset, bytes)` per page
/// chunk (populating pages as a user access would; `write` breaks copy-on-write).
pub(crate) fn current_copy(
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(usize, &[u8]),
) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    if !in_user_window(va, len as u64) {
        return Err(Errno::EFAULT);
    }
    let space = current_space()?;
    let mut mm = space.mm.lock();
    let mut off = 0usize;
    while off < len {
        let a = va + off as u64;
        let in_page = (PAGE_SIZE - (a & (PAGE_SIZE - 1))) as usize;
        let n = in_page.min(len - off);
        let gpa = mm.touch(a, write, false)?;
        let p = pool::frame_ptr(gpa + (a & (PAGE_SIZE - 1)));
        // SAFETY: `gpa` is a pool frame of this space (held by its page map while we hold
        // the lock); the chunk stays inside the frame.
        f(off, unsafe { core::slice::from_raw_parts(p, n) });
        off += n;
    }
    Ok(())
}

/// Copies `data` into the current address space at `va`.
pub(crate) fn current_copy_out(va: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    if !in_user_window(va, data.len() as u64) {
        return Err(Errno::EFAULT);
    }
    let space = current_space()?;
    let mut mm = space.mm.lock();
    let mut off = 0usize;
    while off < data.len() {
        let a = va + off as u64;
        let in_page = (PAGE_SIZE - (a & (PAGE_SIZE - 1))) as usize;
        let n = in_page.min(data.len() - off);
        let gpa = mm.touch(a, true, false)?;
        // SAFETY: as in `current_copy`; the page is writable and not shared copy-on-write.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data[off..].as_ptr(),
                pool::frame_ptr(gpa + (a & (PAGE_SIZE - 1))),
                n,
            )
        };
        off += n;
    }
    Ok(())
}

/// Handles a user page fault; `Err` means SIGSEGV. Returns the space's map generation
/// afterwards (see [`MapGeneration`]).
pub(crate) fn handle_fault(
    space: &Space,
    addr: u64,
    error_code: u64,
) -> Result<MapGeneration, Errno> {
    if !in_user_window(addr, 1) {
        return Err(Errno::EFAULT);
    }
    let write = error_code & pf::WRITE != 0;
    let exec = error_code & pf::FETCH != 0;
    let mut mm = space.mm.lock();
    let page = addr & !(PAGE_SIZE - 1);
    let before = mm.pages.get(&page).copied();
    mm.touch(addr, write, exec)?;
    let after = mm.pages.get(&page).copied();
    // A present page that did not change (no copy-on-write break) faulted because the
    // sandbox does not map it (yet): send its mapping again, without a new generation.
    if let (Some(b), Some(a)) = (before, after) {
        if b.gpa == a.gpa && b.cow == a.cow {
            if let Some((_, v)) = mm.vma_at(page) {
                let p = Mm::map_prot(&v, &a);
                mm.push_op_again(op::MAP, p, page, PAGE_SIZE, a.gpa);
            }
        }
    }
    Ok(MapGeneration(mm.generation))
}

/// Copies `data` into `space` at `va` (not necessarily the current space).
pub(crate) fn copy_out(space: &Space, va: u64, data: &[u8]) -> Result<(), Errno> {
    if !in_user_window(va, data.len() as u64) {
        return Err(Errno::EFAULT);
    }
    let mut mm = space.mm.lock();
    let mut off = 0usize;
    while off < data.len() {
        let a = va + off as u64;
        let n = ((PAGE_SIZE - (a & (PAGE_SIZE - 1))) as usize).min(data.len() - off);
        let gpa = mm.touch(a, true, false)?;
        // SAFETY: as in `current_copy_out`.
        unsafe {
            core::ptr::copy_nonoverlapping(
                data[off..].as_ptr(),
                pool::frame_ptr(gpa + (a & (PAGE_SIZE - 1))),
                n,
            )
        };
        off += n;
    }
    Ok(())
}
