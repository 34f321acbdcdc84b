//! Guest user mode: user sandboxes and the context region a guest kernel shares with each.
//!
//! Every guest address space (a guest process and its threads) runs in its own *user sandbox*
//! process, spawned by the host on [`crate::Hypercall::SpaceCreate`] from the same stub. The
//! user sandbox maps nothing of guest memory but
//!
//! * its *context region* (`user_ctx_size(nr_vcpus)` bytes at guest-physical `ctx_gpa`, in the
//!   user pool), mapped at [`USER_CTX_BASE`], and
//! * the user pages the guest kernel asks for with [`UserOp`]s, which must lie in the user
//!   pool (the [`crate::MemRegionKind::UserPool`] region) and are mapped at guest user
//!   addresses inside [`USER_BASE`]..[`USER_END`].
//!
//! The context region is page 0, a [`UserCtxHeader`], followed by one [`UserSlot`] per vCPU.
//! A vCPU of the guest kernel runs user code by filling the slot with registers and queued
//! operations and bumping [`UserSlot::run_seq`]; the user stub's thread for that vCPU applies
//! the operations, loads the registers and runs the user code until it makes a system call,
//! faults, or its time slice ends; then it saves the state into the slot and bumps
//! [`UserSlot::done_seq`]. Both words are futexes (shared, not private: the two sides are
//! different processes); each side spins briefly, then sleeps, and announces sleeping with its
//! `*_waiting` flag.
//!
//! The slots of a space are served by different threads of one sandbox process, so the
//! operations the kernel queued for the space in one order could be applied in another. They
//! are not: every request names its place in the space's order ([`UserSlot::ops_seq`]), and a
//! slot thread applies its operations, and runs user code, only after everything queued before
//! was applied — by whichever slot carried it.
//!
//! Everything in the context region is writable by the user program (it is in the user
//! sandbox's address space): the guest kernel must validate all it reads there.
//!
//! The protocol itself — both halves of the hand-off, the batch order, who writes which field
//! — is [`handoff`], used by the pvmux kernel, the user stub and the stub's host test.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{TrapFrame, PAGE_SIZE};

pub mod grant;
pub mod handoff;
pub mod inproc;
pub mod patch;

/// Lowest guest user virtual address.
pub const USER_BASE: u64 = 0x1_0000;
/// End (exclusive) of guest user virtual addresses: 64 TiB.
pub const USER_END: u64 = 0x4000_0000_0000;
/// Where the user stub maps the context region (above [`USER_END`], below the stub).
pub const USER_CTX_BASE: u64 = 0x4800_0000_0000;

/// Bytes of one [`UserSlot`].
pub const USER_SLOT_SIZE: u64 = 4 * PAGE_SIZE;
/// Offset of slot 0 in the context region.
pub const USER_SLOT_OFFSET: u64 = PAGE_SIZE;

/// Size of the context region of a tenant with `nr_vcpus` vCPUs.
pub const fn user_ctx_size(nr_vcpus: u32) -> u64 {
    USER_SLOT_OFFSET + nr_vcpus as u64 * USER_SLOT_SIZE
}

/// Whether `[addr, addr + len)` lies inside the guest user window.
pub const fn in_user_window(addr: u64, len: u64) -> bool {
    addr >= USER_BASE
        && len <= USER_END - USER_BASE
        && addr - USER_BASE <= USER_END - USER_BASE - len
}

/// [`UserCtxHeader::magic`]: "PVMUXUSR".
pub const USER_CTX_MAGIC: u64 = u64::from_le_bytes(*b"PVMUXUSR");

/// Page 0 of a context region. Written by the guest kernel before `SpaceCreate`.
#[derive(Debug, FromBytes, KnownLayout)]
#[repr(C)]
pub struct UserCtxHeader {
    /// [`USER_CTX_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of slots (= the tenant's vCPUs).
    pub nr_slots: u32,
    /// The user stub sets 1 once every slot's thread waits for work (informational).
    pub ready: AtomicU32,
    /// The host sets 1 when the user sandbox process has ended (then every slot reports
    /// [`UserExit::Dead`]).
    pub dead: AtomicU32,
    /// How the sandbox ended, set by the host with `dead`: exit status, or `0x100 | signal`.
    pub dead_status: AtomicU32,
    _reserved0: u32,
}

const _: () = assert!(size_of::<UserCtxHeader>() == 32);
const _: () = assert!(offset_of!(UserCtxHeader, dead) == 20);

/// What the guest kernel asks of a slot ([`UserSlot::command`]).
pub mod command {
    /// Apply the queued operations, then run user code.
    pub const RUN: u32 = 1;
    /// Apply the queued operations and report [`super::UserExit::OpsDone`].
    pub const OPS_ONLY: u32 = 2;
}

/// Why a slot came back to the guest kernel ([`UserSlot::exit_reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum UserExit {
    /// The user code made a system call: `regs.rax` is the number, `rdi, rsi, rdx, r10, r8,
    /// r9` the arguments, `rip` points after the `syscall` instruction.
    Syscall = 1,
    /// The user code raised an exception: `exit_vector`, `exit_error_code`, `exit_addr`
    /// (for #PF: the fault address; error code bits as in [`crate::frame::pf`]).
    Exception = 2,
    /// The time slice ([`UserSlot::slice_ns`]) ended.
    Interrupt = 3,
    /// The operations of an [`command::OPS_ONLY`] request were applied.
    OpsDone = 4,
    /// Operation number `op_failed` failed with `op_errno`; nothing after it was applied and
    /// no user code ran.
    OpFailed = 5,
    /// The user sandbox process is gone (set by the host; see [`UserCtxHeader::dead_status`]).
    Dead = 6,
}

impl UserExit {
    /// Decodes a raw exit reason (`None` for anything else: treat as hostile).
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Syscall,
            2 => Self::Exception,
            3 => Self::Interrupt,
            4 => Self::OpsDone,
            5 => Self::OpFailed,
            6 => Self::Dead,
            _ => return None,
        })
    }
}

/// [`UserOp::kind`] values.
pub mod op {
    /// `mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, guest memfd, offset)`.
    pub const MAP: u32 = 1;
    /// `munmap(addr, len)`.
    pub const UNMAP: u32 = 2;
    /// `mprotect(addr, len, prot)`.
    pub const PROTECT: u32 = 3;
    /// As [`MAP`], with `MAP_POPULATE`: the host fills the page-table entries of the whole
    /// range at once (a demand-zero fault's block, which the program is about to touch: one
    /// system call instead of one host page fault per page).
    pub const MAP_POPULATE: u32 = 4;
}

/// [`UserOp::prot`] bits (Linux `PROT_*`).
pub mod prot {
    /// Readable.
    pub const READ: u32 = 1;
    /// Writable.
    pub const WRITE: u32 = 2;
    /// Executable.
    pub const EXEC: u32 = 4;
    /// All bits an operation may use.
    pub const ALL: u32 = READ | WRITE | EXEC;
}

/// One queued address-space operation. `addr`, `len` and `offset` are page aligned; `addr..
/// addr+len` lies in the user window; for [`op::MAP`] (and [`op::MAP_POPULATE`]), `offset..offset+len` lies in the user
/// pool (the seccomp filter enforces the pool's start, the sealed memfd its end).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UserOp {
    /// [`op`] kind.
    pub kind: u32,
    /// [`prot`] bits (MAP, PROTECT).
    pub prot: u32,
    /// Guest user virtual address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Guest-physical address of the first page (MAP).
    pub offset: u64,
}

const _: () = assert!(size_of::<UserOp>() == 32);

/// Operations one slot can carry per request.
pub const USER_OPS_MAX: usize = 200;
/// Bytes reserved for the user FPU/SSE/AVX state (XSAVE layout as the host kernel's signal
/// frame has it).
pub const USER_FPSTATE_MAX: usize = 8192;

/// One vCPU's slot in a context region ([`USER_SLOT_SIZE`] bytes).
#[derive(Debug, FromBytes, KnownLayout)]
#[repr(C)]
pub struct UserSlot {
    // ---- 0x00: hand-off words ----
    /// Guest kernel -> user: incremented to hand the slot over. Futex word of the user side.
    pub run_seq: AtomicU32,
    /// User -> guest kernel: set equal to `run_seq` when the slot comes back. Futex word of
    /// the kernel side.
    pub done_seq: AtomicU32,
    /// 1 while the user thread sleeps on its grant word: the kernel must futex-wake that.
    pub user_waiting: AtomicU32,
    /// 1 while the kernel sleeps on `done_seq`: the user thread must futex-wake it.
    pub kernel_waiting: AtomicU32,
    // ---- 0x10: request (kernel -> user) ----
    /// [`command`] of this request.
    pub command: u32,
    /// Number of valid entries in `ops` (at most [`USER_OPS_MAX`]).
    pub nr_ops: u32,
    /// FS base to load before running user code.
    pub fs_base: u64,
    /// Arm the slice timer to fire this many ns from now (0: leave the timer as it is).
    pub slice_ns: u64,
    /// Bytes of `fpstate` to load before running (0: keep the thread's current state; the
    /// user stub then resets it to the initial FPU state if `fp_init` is 1).
    pub fp_len: u32,
    /// 1: reset the FPU state to its initial configuration (fresh program).
    pub fp_init: u32,
    // ---- 0x30: result (user -> kernel) ----
    /// Raw [`UserExit`].
    pub exit_reason: u32,
    /// Exception vector ([`crate::Vector`]) for [`UserExit::Exception`].
    pub exit_vector: u32,
    /// Exception error code.
    pub exit_error_code: u64,
    /// Fault address.
    pub exit_addr: u64,
    /// Index of the failed operation ([`UserExit::OpFailed`]).
    pub op_failed: u32,
    /// Its (positive) errno.
    pub op_errno: u32,
    /// Bytes of `fpstate` the user stub saved.
    pub fp_saved_len: u32,
    /// 1 from an exit's report until the user stub has written those bytes: a system call
    /// from a patched site hands the slot back first and writes the image while the kernel
    /// serves the call. The kernel waits for 0 before it reads `fpstate`
    /// (`handoff::KernelSlot::wait_fp`). On the line the kernel reads the exit from: a word
    /// of its own line cost each call ~70 ns (measured; docs/BENCHMARKS.md).
    pub fp_pending: AtomicU32,
    // ---- 0x58: registers (both directions) ----
    /// User registers (the `vector`, `error_code`, `fault_addr` words are unused).
    pub regs: TrapFrame,
    // ---- 0x100: counters (user stub, informational) ----
    /// Runs, syscalls, exceptions, interrupts, ops applied, futex sleeps.
    pub stats: [AtomicU64; 8],
    // ---- 0x140: operation ordering (kernel -> user) ----
    /// The space's operation *batches* — the `ops` of the requests of all its slots — are
    /// numbered 1, 2, 3 ... in the order the guest kernel took them from the space's queue.
    /// With `nr_ops > 0` this is the number of the batch this request carries: the stub
    /// applies it only after every lower-numbered batch (carried by other slots) was applied.
    /// Either way it runs user code or reports `OpsDone` only once every batch up to this
    /// number is applied (with `nr_ops == 0`: the last batch taken before this request).
    /// 0: no ordering (the request's operations are applied at once).
    pub ops_seq: u64,
    // ---- 0x148: where each side runs (hints for spinning, never trusted) ----
    /// The host CPU the user thread last ran on, plus 1 (0: not known): written by the user
    /// side while it waits and when it hands the slot back. The kernel does not spin for an
    /// answer while this names its own CPU (the thread that must answer would be waiting
    /// for that CPU). Only a hint: a wrong value costs speed, never correctness.
    pub user_cpu: AtomicU32,
    /// The host CPU the guest kernel's vCPU thread last ran on, plus 1 (0: not known):
    /// written by the kernel while it waits and when it hands the slot over; the user side
    /// does not spin for a grant while this names its own CPU.
    pub kernel_cpu: AtomicU32,
    _reserved: [u64; 54],
    // ---- 0x300: operations ----
    /// Queued operations, applied in order before user code runs.
    pub ops: [UserOp; USER_OPS_MAX],
    _pad1: [u8; 0x2000 - 0x300 - 32 * USER_OPS_MAX],
    // ---- 0x2000: FPU state ----
    /// XSAVE image of the user FPU state (see `fp_len`, `fp_saved_len`).
    pub fpstate: [u8; USER_FPSTATE_MAX],
}

/// Indices into [`UserSlot::stats`].
pub mod user_stat {
    /// Requests served.
    pub const RUNS: usize = 0;
    /// System calls trapped.
    pub const SYSCALLS: usize = 1;
    /// Exceptions.
    pub const EXCEPTIONS: usize = 2;
    /// Slice-timer interrupts.
    pub const INTERRUPTS: usize = 3;
    /// Operations applied.
    pub const OPS: usize = 4;
    /// Futex sleeps while waiting for work.
    pub const SLEEPS: usize = 5;
    /// TSC ticks spent running user code: from entering it until the signal that brought it
    /// back (the guest kernel's user-time accounting; untrusted, like every slot field).
    pub const USER_TICKS: usize = 6;
    /// TSC ticks a slot thread spent waiting for a grant it got without sleeping: from
    /// entering the wait until it had the grant's request loaded (untrusted; for the host's
    /// log of an audit kill, to tell the stub's spinning from time in user code).
    pub const SPIN_TICKS: usize = 7;
}

const _: () = assert!(size_of::<UserSlot>() == USER_SLOT_SIZE as usize);
const _: () = assert!(offset_of!(UserSlot, command) == 0x10);
const _: () = assert!(offset_of!(UserSlot, exit_reason) == 0x30);
const _: () = assert!(offset_of!(UserSlot, regs) == 0x58);
const _: () = assert!(offset_of!(UserSlot, stats) == 0x100);
const _: () = assert!(offset_of!(UserSlot, ops_seq) == 0x140);
const _: () = assert!(offset_of!(UserSlot, user_cpu) == 0x148);
const _: () = assert!(offset_of!(UserSlot, kernel_cpu) == 0x14c);
const _: () = assert!(offset_of!(UserSlot, fp_pending) == 0x54);
const _: () = assert!(offset_of!(UserSlot, ops) == 0x300);
const _: () = assert!(offset_of!(UserSlot, fpstate) == 0x2000);

/// Offset of slot `i` in a context region.
pub const fn user_slot_offset(i: u32) -> u64 {
    USER_SLOT_OFFSET + i as u64 * USER_SLOT_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_window_bounds() {
        assert!(in_user_window(USER_BASE, 4096));
        assert!(in_user_window(USER_END - 4096, 4096));
        assert!(!in_user_window(USER_END - 4096, 8192));
        assert!(!in_user_window(0, 4096));
        assert!(!in_user_window(u64::MAX - 4095, 4096));
        assert!(!in_user_window(USER_BASE, u64::MAX));
    }

    #[test]
    fn exit_codes_round_trip() {
        for raw in 0..10 {
            if let Some(e) = UserExit::from_raw(raw) {
                assert_eq!(e as u32, raw);
            }
        }
        assert_eq!(UserExit::from_raw(0), None);
    }
}
