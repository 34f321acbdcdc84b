//! Typed wrappers around the stub's entry table (the guest's "PV firmware", ABI `stub.rs`).
//!
//! The table is validated and copied once at boot ([`install`]); every wrapper then reads the
//! entry's code address from the copy and calls it with the System V convention. All entries
//! are *in-sandbox* except `hypercall`.

use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::{StubTable, VcpuShared, ABI_MAGIC, ABI_VERSION};

/// The validated copy of the stub table: written by [`install`] at boot and by
/// [`reinstall`] when a snapshot resumes in a new sandbox (whose stub has other entry
/// addresses), each time while no other vCPU runs.
struct TableCell(core::cell::UnsafeCell<StubTable>);

// SAFETY: the cell is written only by `install` and `reinstall`, both on vCPU 0 while it is
// the only vCPU running kernel code (before the others are started), and read afterwards.
unsafe impl Sync for TableCell {}

static TABLE: TableCell = TableCell(core::cell::UnsafeCell::new(StubTable::ZERO));

/// Whether [`TABLE`] holds a validated table.
static INSTALLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Code address of the stub's `iret` entry; read by the trap entry assembly.
pub(crate) static IRET_ADDR: AtomicU64 = AtomicU64::new(0);

/// Guest-virtual address of vCPU 0's shared page (from `BootInfo::vcpu_shared_base`).
static VCPU_SHARED_BASE: AtomicU64 = AtomicU64::new(0);

/// Why a stub table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// Wrong magic or ABI version.
    Version,
    /// Fewer entries than this ABI version needs, or a null entry.
    Entries,
}

/// Number of stub entries this kernel calls (every entry of the current ABI version).
const ENTRIES: usize = pvmux_hypercalls::stub::STUB_ENTRIES as usize;

/// The entry addresses of `table` in declaration order.
fn entries(t: &StubTable) -> [u64; ENTRIES] {
    t.entries()
}

/// Checks a stub table and installs a copy of it for the wrappers below.
pub(crate) fn install(table: &StubTable, vcpu_shared_base: u64) -> Result<(), TableError> {
    if table.magic != ABI_MAGIC || table.abi_version != ABI_VERSION {
        return Err(TableError::Version);
    }
    if (table.nr_entries as usize) < ENTRIES || entries(table).contains(&0) {
        return Err(TableError::Entries);
    }
    // SAFETY: see `TableCell`: only vCPU 0 runs (at boot, or resuming a snapshot before it
    // starts the others), and no reference into the cell is alive across this write.
    unsafe { TABLE.0.get().write(*table) };
    INSTALLED.store(true, Ordering::Release);
    IRET_ADDR.store(table.iret, Ordering::Relaxed);
    VCPU_SHARED_BASE.store(vcpu_shared_base, Ordering::Relaxed);
    Ok(())
}

/// Installs the stub table of a new sandbox when a snapshot resumes (`crate::suspend`): the
/// same checks as [`install`]. Only vCPU 0 may call it, before it starts the other vCPUs.
pub(crate) fn reinstall(table: &StubTable, vcpu_shared_base: u64) -> Result<(), TableError> {
    install(table, vcpu_shared_base)
}

/// True once [`install`] succeeded.
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// The installed table. Stub calls before [`install`] are a kernel bug: trap with `ud2`.
fn table() -> &'static StubTable {
    if !INSTALLED.load(Ordering::Acquire) {
        crate::arch::die();
    }
    // SAFETY: installed (above); the cell is only written while no other vCPU runs and no
    // reference obtained here is held across a resume (callers copy an entry out at once).
    unsafe { &*TABLE.0.get() }
}

/// The 8 bytes at `fs:OFF` of this vCPU thread's FS block (ABI §7, "The FS block"), as a
/// `u64`. Not `pure`: a kernel thread may resume on another vCPU thread (another FS base)
/// after any call.
macro_rules! fs_block {
    ($off:expr) => {{
        debug_assert!(installed(), "FS block read before the stub table is installed");
        let v: u64;
        // SAFETY: a plain 8-byte load from the FS block the stub set up for this vCPU
        // thread before any guest code ran (ABI §7, inside its `StubCpu`); no other effect.
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr fs:[{off}]",
                out(reg) v,
                off = const $off,
                options(nostack, readonly, preserves_flags),
            )
        };
        v
    }};
}

/// Turns a stub entry address into a callable function pointer of the given signature.
macro_rules! entry {
    ($field:ident: fn($($arg:ty),*) $(-> $ret:ty)?) => {{
        let addr = table().$field;
        // SAFETY: `install` checked the table's magic/version and that this entry is
        // non-null; the ABI (stub.rs) defines this entry as a System V function with exactly
        // this signature that only needs 4 KiB of the caller's stack.
        unsafe { core::mem::transmute::<u64, extern "sysv64" fn($($arg),*) $(-> $ret)?>(addr) }
    }};
}

#[cfg(feature = "diagnostics")]
/// Address of the stub's `halt` entry (the hostile `crash=stub-syscall` command scans stub
/// code from there).
pub(crate) fn halt_entry_address() -> u64 {
    table().halt
}

/// Host hypercall through the doorbell. Only [`crate::hcall`] calls it: every hypercall the
/// kernel makes goes through that module.
pub(crate) fn hypercall(nr: u64, [a0, a1, a2, a3, a4, a5]: [u64; 6]) -> i64 {
    entry!(hypercall: fn(u64, u64, u64, u64, u64, u64, u64) -> i64)(nr, a0, a1, a2, a3, a4, a5)
}

/// Registers the tenant-wide trap and event entries.
pub(crate) fn set_callbacks(trap_entry: u64, event_entry: u64) -> i64 {
    entry!(set_callbacks: fn(u64, u64) -> i64)(trap_entry, event_entry)
}

/// Sets the virtual interrupt flag and delivers pending events before returning: the flag is
/// set here (`xchg`, a full fence against a `vcpu_kick` that sets a pending bit and then
/// looks at the flag), and the stub's `irq_enable` is called only when events are pending.
#[inline]
pub(crate) fn irq_enable() {
    let shared = vcpu_self();
    shared.irq_enabled.swap(1, Ordering::SeqCst);
    if shared.pending.load(Ordering::SeqCst) != 0 {
        entry!(irq_enable: fn())()
    }
}

// `irq_disable`'s body: find the vCPU's shared page through the FS block, read the flag,
// store 0. Events are still enabled until the store, and an event may preempt the thread and
// resume it on another vCPU: the page found before that is the old vCPU's. So the event
// handler restarts an interrupted sequence from its first instruction
// (`irq_disable_restart`), as Linux restarts an interrupted rseq critical section; after the
// store no event can come. Only this vCPU's thread writes the flag, and the stub's signal
// handlers see its stores in program order: no locked instruction is needed.
core::arch::global_asm!(
    ".globl pvmux_kernel_irq_disable",
    ".globl pvmux_kernel_irq_disable_end",
    "pvmux_kernel_irq_disable:",
    "mov rdx, qword ptr fs:[{fs}]",
    "mov eax, dword ptr [rdx + {flag}]",
    "mov dword ptr [rdx + {flag}], 0",
    "pvmux_kernel_irq_disable_end:",
    "ret",
    fs = const pvmux_hypercalls::stub::FS_VCPU_SHARED,
    flag = const core::mem::offset_of!(VcpuShared, irq_enabled),
);

extern "sysv64" {
    /// Clears this vCPU's virtual interrupt flag; returns its previous value. Clobbers only
    /// `rax` and `rdx` (a System V call).
    fn pvmux_kernel_irq_disable() -> u32;
    /// The end of [`pvmux_kernel_irq_disable`]'s restartable part (its `ret`).
    static pvmux_kernel_irq_disable_end: u8;
}

/// Clears the virtual interrupt flag; returns whether it was set: a store into the vCPU's
/// shared page (ABI §8.3: the guest may clear the flag itself), no stub call.
#[inline]
pub(crate) fn irq_disable() -> bool {
    // SAFETY: the function reads fs:8 (the FS block the stub set for this thread, ABI §7)
    // and the flag word of the page it names, writes 0 there, and returns; as a call it is
    // a compiler barrier, so nothing of the section events are off for moves above it.
    unsafe { pvmux_kernel_irq_disable() != 0 }
}

/// Where an event that interrupted `rip` must resume: the start of [`irq_disable`]'s
/// sequence if `rip` lies inside it (the thread may run on another vCPU when it resumes);
/// `None` elsewhere.
pub(crate) fn irq_disable_restart(rip: u64) -> Option<u64> {
    let start = pvmux_kernel_irq_disable as *const () as u64;
    let end = (&raw const pvmux_kernel_irq_disable_end) as u64;
    (start..end).contains(&rip).then_some(start)
}

/// With events disabled: sleeps until a pending bit is set (returns at once if one is).
pub(crate) fn halt() {
    entry!(halt: fn())()
}

/// Arms this vCPU's one-shot timer at guest time `deadline_ns` (0 disarms).
pub(crate) fn timer_arm(deadline_ns: u64) -> i64 {
    entry!(timer_arm: fn(u64) -> i64)(deadline_ns)
}

#[cfg(feature = "diagnostics")]
/// The stub's `clock_ns` entry (the kernel computes guest time itself: `crate::time::now_ns`).
pub(crate) fn clock_ns() -> u64 {
    entry!(clock_ns: fn() -> u64)()
}

/// Starts parked vCPU `id` at `rip` on stack `rsp` with `rdi = arg`, events disabled.
pub(crate) fn vcpu_start(id: u32, rip: u64, rsp: u64, arg: u64) -> i64 {
    entry!(vcpu_start: fn(u64, u64, u64, u64) -> i64)(u64::from(id), rip, rsp, arg)
}

/// Sets `pending::KICK` on vCPU `id` and wakes it.
pub(crate) fn vcpu_kick(id: u32) -> i64 {
    entry!(vcpu_kick: fn(u64) -> i64)(u64::from(id))
}

/// This vCPU's index, read from the thread's FS block (ABI
/// [`pvmux_hypercalls::stub::FS_VCPU_ID`]: stub memory, not the shared page, which the guest
/// can overwrite).
#[inline]
pub(crate) fn vcpu_id() -> u32 {
    // The index is the low half of the 8 bytes there (little-endian; the stub's next field
    // follows it).
    fs_block!(pvmux_hypercalls::stub::FS_VCPU_ID) as u32
}

/// Adds one to this vCPU's counter `index` (a [`pvmux_hypercalls::vcpu::stat`] index the
/// guest kernel keeps); nothing before the stub table is installed (host unit tests).
pub(crate) fn count(index: usize) {
    if installed() {
        if let Some(c) = vcpu_self().stats.get(index) {
            // This vCPU's thread is the only writer of the guest's counters (the stub keeps
            // others): a load and a store, without a locked add.
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }
}

/// This vCPU's shared page, read from the thread's FS block (ABI
/// [`pvmux_hypercalls::stub::FS_VCPU_SHARED`]) rather than by calling `vcpu_self`: the lock
/// paths disable and enable events through it.
#[inline]
pub(crate) fn vcpu_self() -> &'static VcpuShared {
    let ptr = fs_block!(pvmux_hypercalls::stub::FS_VCPU_SHARED);
    // SAFETY: the stub keeps this vCPU's shared page at that address, mapped read-write for
    // the sandbox's whole life; all its fields are atomics.
    unsafe { &*(ptr as *const VcpuShared) }
}

#[cfg(feature = "diagnostics")]
/// vCPU `id`'s shared page (read-only use: e.g. to observe `halted`).
pub(crate) fn vcpu_shared(id: u32) -> &'static VcpuShared {
    let addr =
        VCPU_SHARED_BASE.load(Ordering::Relaxed) + u64::from(id) * pvmux_hypercalls::PAGE_SIZE;
    // SAFETY: BootInfo promises vCPU `i`'s shared page at `vcpu_shared_base + i * PAGE_SIZE`,
    // mapped for the sandbox's whole life; callers pass `id < nr_vcpus`; all fields are atomics.
    unsafe { &*(addr as *const VcpuShared) }
}

/// Invalidates the (shared) shadow mappings of `[va, va + len)`.
pub(crate) fn tlb_flush(va: u64, len: u64) -> i64 {
    entry!(tlb_flush: fn(u64, u64) -> i64)(va, len)
}

#[cfg(feature = "diagnostics")]
/// Sets the tenant-wide shadow fault-around block (a power of two in 1..=512 pages); returns
/// the previous value or an error.
pub(crate) fn set_fault_around(pages: u64) -> i64 {
    entry!(set_fault_around: fn(u64) -> i64)(pages)
}

#[cfg(feature = "diagnostics")]
/// The stub's `null` entry (returns 0, no syscall) as a function pointer, so a benchmark can
/// call it in a loop without re-reading the table each time.
pub(crate) fn null_entry() -> extern "sysv64" fn() -> u64 {
    entry!(null: fn() -> u64)
}

/// Fills the shadow for `[va, va + len)` now; returns pages mapped or an error.
pub(crate) fn prefault(va: u64, len: u64, write: bool) -> i64 {
    entry!(prefault: fn(u64, u64, u64) -> i64)(va, len, u64::from(write))
}

/// Shared-futex wait on the 32-bit word at guest-physical `gpa` while it equals `expected`,
/// at most `timeout_ns` (0 = no limit). 0 = woken or changed; negative = timeout,
/// interruption by an event, or a bad address (the caller re-checks in every case).
pub(crate) fn user_wait(gpa: u64, expected: u32, timeout_ns: u64) -> i64 {
    entry!(user_wait: fn(u64, u64, u64) -> i64)(gpa, u64::from(expected), timeout_ns)
}

/// Shared-futex wake of every waiter on the word at guest-physical `gpa`.
pub(crate) fn user_wake(gpa: u64) -> i64 {
    entry!(user_wake: fn(u64) -> i64)(gpa)
}

/// Writes `src` to guest-physical `dst_gpa` through the guest memfd, not a mapping (`src`
/// is kernel memory in the window). The bytes written (fewer when part of `src` is not
/// mapped in the host), or a negative error.
pub(crate) fn mem_write(dst_gpa: u64, src: &[u8]) -> i64 {
    entry!(mem_write: fn(u64, u64, u64) -> i64)(dst_gpa, src.as_ptr() as u64, src.len() as u64)
}

/// Trusted in-process mode: applies `ops` to the kernel sandbox's user mappings (at most
/// `INPROC_OPS_MAX`). 0 or a negative error.
pub(crate) fn inproc_ops(ops: &[pvmux_hypercalls::user::UserOp]) -> i64 {
    entry!(inproc_ops: fn(u64, u64) -> i64)(ops.as_ptr() as u64, ops.len() as u64)
}

/// Trusted in-process mode: the stub's syscall entry, which a patched call site of an
/// in-process space jumps to (the space's patch-table header, `linux/patch.rs`).
pub(crate) fn inproc_syscall_entry() -> u64 {
    table().inproc_syscall
}

/// Trusted in-process mode: runs user code with `run`'s state until it comes back; the FPU
/// image is loaded from `fp` (empty: the initial state) and saved back into it. 0 or a
/// negative error.
pub(crate) fn inproc_run(
    run: &mut pvmux_hypercalls::user::inproc::InprocRun,
    fp: &mut alloc::vec::Vec<u8>,
) -> i64 {
    let len = fp.len();
    fp.reserve(pvmux_hypercalls::user::USER_FPSTATE_MAX.saturating_sub(len));
    run.fp_addr = fp.as_mut_ptr() as u64;
    run.fp_cap = u32::try_from(fp.capacity()).unwrap_or(u32::MAX);
    run.fp_len = len as u32;
    let r = entry!(inproc_run: fn(u64) -> i64)(run as *mut _ as u64);
    let kept = run.fp_flags & pvmux_hypercalls::user::inproc::fp_flags::KEPT != 0;
    let n = if r == 0 && !kept {
        (run.fp_len as usize).min(fp.capacity())
    } else {
        len
    };
    // SAFETY: the stub wrote `run.fp_len` bytes (at most the capacity it was given) from
    // the buffer's start, or nothing (then the first `len` bytes are the old image); bytes
    // need no other initialisation.
    unsafe { fp.set_len(n) };
    r
}

/// Trusted in-process mode: the FPU state this vCPU's last system-call exit kept in its
/// registers, as an image in `fp` (replacing what it held; no allocation when it already
/// has `USER_FPSTATE_MAX` bytes of room). Its length, or a negative error (`fp` is then
/// empty).
pub(crate) fn inproc_fp_save(fp: &mut alloc::vec::Vec<u8>) -> i64 {
    fp.clear();
    fp.reserve(pvmux_hypercalls::user::USER_FPSTATE_MAX);
    let cap = fp.capacity();
    let r = entry!(inproc_fp_save: fn(u64, u64) -> i64)(fp.as_mut_ptr() as u64, cap as u64);
    if r > 0 {
        // SAFETY: the stub wrote `r` bytes (at most `cap`, which it was given) from the
        // buffer's start; bytes need no other initialisation.
        unsafe { fp.set_len((r as usize).min(cap)) };
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event anywhere before `irq_disable`'s store restarts the sequence; at its `ret`
    /// (the store done: no event can come) and outside it nothing changes.
    #[test]
    fn irq_disable_restarts_only_inside_its_sequence() {
        let start = pvmux_kernel_irq_disable as *const () as u64;
        let end = (&raw const pvmux_kernel_irq_disable_end) as u64;
        assert!(end > start, "the sequence has instructions");
        for rip in start..end {
            assert_eq!(irq_disable_restart(rip), Some(start), "rip {rip:#x}");
        }
        assert_eq!(irq_disable_restart(end), None);
        assert_eq!(irq_disable_restart(start - 1), None);
        assert_eq!(irq_disable_restart(0), None);
    }
}
