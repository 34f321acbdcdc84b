//! The stub's entry table: the guest's "PV firmware".
//!
//! At the guest entry point `rsi` holds the address of a [`StubTable`] in stub memory (outside
//! the guest window, readable by the guest). Each entry is the address of a function with the
//! System V AMD64 calling convention: arguments in `rdi, rsi, rdx, rcx, r8, r9`, result in
//! `rax`, caller-saved registers clobbered, callee-saved preserved, direction flag clear on
//! call. An entry runs on the caller's stack and needs at most [`STUB_STACK_NEED`] bytes of it.
//! Entries marked *in-sandbox* make no host round trip. Errors are negative
//! [`crate::HcError`] values.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Stack a stub call may use below the caller's `rsp`.
pub const STUB_STACK_NEED: u64 = 4096;

/// Where guest kernel code finds its vCPU without a call: on every vCPU thread, while guest
/// kernel code runs, the 8 bytes at `fs:FS_VCPU_SHARED` hold the address of that vCPU's
/// [`crate::VcpuShared`] page (what `vcpu_self` returns). The FS base is the stub's: guest
/// kernel code does not change it (in-process user code runs with its own, which
/// `inproc_run` swaps in and out). With it a guest clears the virtual interrupt flag, sets it
/// (calling `irq_enable` only when events are pending) and reads its vCPU index with plain
/// memory accesses (docs/ABI.md §7, "The FS block").
pub const FS_VCPU_SHARED: u32 = 8;

/// The 4 bytes at `fs:FS_VCPU_ID` hold the vCPU's index (what `vcpu_id` returns), in stub
/// memory: unlike `VcpuShared::vcpu_id`, nothing the guest writes by mistake (or on purpose:
/// the hostile suite scribbles over its shared pages) can change it.
pub const FS_VCPU_ID: u32 = 16;

/// Table of stub entry points (all `u64` code addresses).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StubTable {
    /// [`crate::ABI_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of entry points that follow (a newer stub may have more).
    pub nr_entries: u32,
    /// `hypercall(nr | flags, a0, a1, a2, a3, a4, a5) -> i64`: host hypercall through the
    /// per-vCPU doorbell (bounded spin, then futex; no spin with `HC_FLAG_NOSPIN`).
    pub hypercall: u64,
    /// `set_callbacks(trap_entry, event_entry) -> i64` *in-sandbox*: register the entries
    /// exceptions and events are delivered to (tenant-wide). 0 = none.
    pub set_callbacks: u64,
    /// `iret(frame: *const TrapFrame) -> !` *in-sandbox*: resume the context in `frame`
    /// (all GPRs, `rip`, `rsp`, the user bits of `rflags`) and set the virtual interrupt flag
    /// from its IF bit; if that enables events and some are pending they are delivered at once
    /// with the same frame. A non-canonical or out-of-window `rip`/`rsp` is an ABI violation.
    pub iret: u64,
    /// `irq_enable()` *in-sandbox*: set the virtual interrupt flag; deliver pending events
    /// (the event handler's `iret` returns to the caller).
    pub irq_enable: u64,
    /// `irq_disable() -> u64` *in-sandbox*: clear the flag, return its previous value (0/1).
    pub irq_disable: u64,
    /// `halt()` *in-sandbox*: with events disabled, sleep until a pending bit is set (returns
    /// at once if one is). Returns with events still disabled; the caller then enables them.
    pub halt: u64,
    /// `timer_arm(deadline_ns) -> i64` *in-sandbox*: one-shot timer at guest time
    /// `deadline_ns` (absolute; in the past = fire now); 0 disarms. Sets `pending::TIMER`.
    pub timer_arm: u64,
    /// `clock_ns() -> u64` *in-sandbox*: guest time in ns (TSC based, see `BootInfo`).
    pub clock_ns: u64,
    /// `vcpu_start(id, rip, rsp, arg) -> i64` *in-sandbox*: start parked vCPU `id` at `rip`
    /// with `rsp` and `rdi = arg`, events disabled. `Busy` if already started.
    pub vcpu_start: u64,
    /// `vcpu_kick(id) -> i64` *in-sandbox*: set `pending::KICK` on vCPU `id` and wake it
    /// (from `halt`, or interrupt it if it is running).
    pub vcpu_kick: u64,
    /// `vcpu_self() -> *mut VcpuShared` *in-sandbox*: this vCPU's shared page.
    pub vcpu_self: u64,
    /// `vcpu_id() -> u64` *in-sandbox*: this vCPU's index.
    pub vcpu_id: u64,
    /// `load_root(pml4_gpa) -> i64` *in-sandbox*: switch to another PML4 (CR3 load) and
    /// flush the whole shadow.
    pub load_root: u64,
    /// `tlb_flush(va, len) -> i64` *in-sandbox*: invalidate shadow mappings of
    /// `[va, va+len)` (all vCPUs: the shadow is shared).
    pub tlb_flush: u64,
    /// `tlb_flush_all() -> i64` *in-sandbox*: invalidate the whole shadow.
    pub tlb_flush_all: u64,
    /// `prefault(va, len, write) -> i64` *in-sandbox*: fill the shadow for `[va, va+len)`
    /// now; returns pages mapped, or `BadAddress` at the first page the guest tables refuse.
    pub prefault: u64,
    /// `set_fault_around(pages) -> i64` *in-sandbox*: pages mapped around a shadow miss
    /// (1 = no fault-around, max 512); returns the previous value.
    pub set_fault_around: u64,
    /// `null() -> u64` *in-sandbox*: returns 0 (call-cost benchmark).
    pub null: u64,
    /// `user_wait(gpa, expected, timeout_ns) -> i64` *in-sandbox*: shared-futex wait on the
    /// 32-bit word at guest-physical `gpa` (4-byte aligned) while it equals `expected`, at most
    /// `timeout_ns` (0 = no limit). Returns 0 (woken or value changed), `Busy` on timeout or
    /// interruption by an event (the caller re-checks), `BadAddress` for a bad `gpa`.
    pub user_wait: u64,
    /// `user_wake(gpa) -> i64` *in-sandbox*: shared-futex wake of every waiter on the word at
    /// guest-physical `gpa` (the user sandbox side of a context slot). Returns the count woken.
    pub user_wake: u64,
    /// `inproc_ops(ops: *const UserOp, n) -> i64` *in-sandbox*, trusted in-process mode only
    /// ([`crate::user::inproc`]): apply user mappings in the kernel sandbox.
    pub inproc_ops: u64,
    /// `inproc_run(run: *mut InprocRun) -> i64` *in-sandbox*, trusted in-process mode only
    /// ([`crate::user::inproc`]): run user code on this vCPU until it traps back.
    pub inproc_run: u64,
    /// Not a function: the in-process *syscall entry* a patched `syscall` site of user code
    /// jumps to (trusted in-process mode only), with the registers a `syscall` instruction
    /// leaves (`rax` = number, `rcx` = return address, `r11` = rflags; every other register
    /// the program's). It ends the current `inproc_run` with a system-call exit, like a
    /// trapped `syscall`, without a signal ([`crate::user::inproc`]).
    pub inproc_syscall: u64,
    /// `inproc_fp_save(buf, cap) -> i64` *in-sandbox*, trusted in-process mode only: the FPU
    /// state this vCPU's last system-call exit kept in the registers, as an XSAVE image in
    /// `buf`; returns its length ([`crate::user::inproc`], "The FPU state kept in the
    /// registers").
    pub inproc_fp_save: u64,
    /// `mem_write(dst_gpa, src, len) -> i64` *in-sandbox*: copies `len` bytes from the
    /// guest-virtual `src` (a window address) to guest-physical `dst_gpa` through the guest
    /// memfd (`pwrite`), not through a mapping: a page the sandbox has not touched costs no
    /// host page fault (and no host page-table entry) here. Returns the bytes written (fewer
    /// if `src` runs into memory the shadow does not map: the caller copies the rest).
    pub mem_write: u64,
}

impl StubTable {
    /// Every field 0: a table not filled in yet (the stub's own before start-up, the
    /// kernel's before it installs the stub's).
    pub const ZERO: Self = Self {
        magic: 0,
        abi_version: 0,
        nr_entries: 0,
        hypercall: 0,
        set_callbacks: 0,
        iret: 0,
        irq_enable: 0,
        irq_disable: 0,
        halt: 0,
        timer_arm: 0,
        clock_ns: 0,
        vcpu_start: 0,
        vcpu_kick: 0,
        vcpu_self: 0,
        vcpu_id: 0,
        load_root: 0,
        tlb_flush: 0,
        tlb_flush_all: 0,
        prefault: 0,
        set_fault_around: 0,
        null: 0,
        user_wait: 0,
        user_wake: 0,
        inproc_ops: 0,
        inproc_run: 0,
        inproc_syscall: 0,
        inproc_fp_save: 0,
        mem_write: 0,
    };

    /// The entry addresses in declaration order.
    pub const fn entries(&self) -> [u64; STUB_ENTRIES as usize] {
        [
            self.hypercall,
            self.set_callbacks,
            self.iret,
            self.irq_enable,
            self.irq_disable,
            self.halt,
            self.timer_arm,
            self.clock_ns,
            self.vcpu_start,
            self.vcpu_kick,
            self.vcpu_self,
            self.vcpu_id,
            self.load_root,
            self.tlb_flush,
            self.tlb_flush_all,
            self.prefault,
            self.set_fault_around,
            self.null,
            self.user_wait,
            self.user_wake,
            self.inproc_ops,
            self.inproc_run,
            self.inproc_syscall,
            self.inproc_fp_save,
            self.mem_write,
        ]
    }
}

/// Number of entry points in this ABI version's [`StubTable`].
pub const STUB_ENTRIES: u32 = 25;

const _: () = assert!(offset_of!(StubTable, hypercall) == 16);
const _: () = assert!(size_of::<StubTable>() == 16 + 8 * STUB_ENTRIES as usize);
