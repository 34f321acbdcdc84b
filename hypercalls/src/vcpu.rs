//! The per-vCPU shared page.
//!
//! One 4 KiB page per vCPU in the control region, mapped read-write into the sandbox at
//! [`crate::layout::vcpu_shared_addr`] and into the host. Fields are atomics: each side copies a
//! value out with one load and validates the copy; nothing here is trusted by the host.
//! Host-written and guest-written doorbell fields sit on separate cache lines.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use zerocopy::{FromBytes, KnownLayout};

use crate::TrapFrame;

/// Pending-event bits in [`VcpuShared::pending`].
pub mod pending {
    /// The vCPU's one-shot timer expired.
    pub const TIMER: u32 = 1 << 0;
    /// Another vCPU kicked this one (`vcpu_kick`): reschedule / wake-up.
    pub const KICK: u32 = 1 << 1;
    /// The host has something for the guest.
    pub const HOST: u32 = 1 << 2;
    /// Console input arrived (`ConsoleRead` has data or end of input).
    pub const INPUT: u32 = 1 << 3;
    /// A host socket may be ready, or a `--publish` connection arrived (`NetPoll`,
    /// `NetPublished`; docs/ABI.md §net).
    pub const NET: u32 = 1 << 4;
    /// An exec request was queued, or an exec session's input arrived or its output buffer
    /// has room again (docs/ABI.md §exec).
    pub const EXEC: u32 = 1 << 5;
    /// The host sent the guest's init a signal (`SignalTake`; `pvmux kill` of a container).
    pub const SIGNAL: u32 = 1 << 6;
    /// The host changed the console terminal's size (`ConsoleWinsize`).
    pub const CONSOLE_SIZE: u32 = 1 << 7;
    /// The host asks for the guest's figures (`StatsReport`) or set a new task limit
    /// (`TaskLimitTake`; docs/ABI.md §resources).
    pub const RESOURCES: u32 = 1 << 8;
    /// A channel between kernels moved: the peer wrote, read or closed (`ChannelRecv`,
    /// `ChannelSend`, `ChannelCtl`; docs/ABI.md §channels).
    pub const CHANNEL: u32 = 1 << 9;
    /// The host changed the balloon target (`BalloonTake`; docs/ABI.md §balloon).
    pub const BALLOON: u32 = 1 << 14;
    /// A disk event waits (`DiskTake`: a disk attached or asked back; docs/ABI.md §disks).
    pub const DISK: u32 = 1 << 10;
    /// The host asks for a snapshot: every vCPU parks (`SnapshotPark`; docs/ABI.md
    /// §snapshot).
    pub const SNAPSHOT: u32 = 1 << 11;
    /// The host asks for a kernel hand-over record (`HandoverTake`; docs/ABI.md §handover).
    pub const HANDOVER: u32 = 1 << 12;
    /// The host asks for a dump of the guest's tasks (`pvmux run` got `SIGQUIT`): the pvmux
    /// kernel writes its vCPUs, run queue, timed sleepers and every process's threads to the
    /// console's standard error. Informational; a kernel may ignore it.
    pub const DUMP: u32 = 1 << 15;
    /// All bits defined by this ABI version.
    pub const ALL: u32 = TIMER
        | KICK
        | HOST
        | INPUT
        | NET
        | EXEC
        | SIGNAL
        | CONSOLE_SIZE
        | RESOURCES
        | CHANNEL
        | DISK
        | BALLOON
        | SNAPSHOT
        | HANDOVER
        | DUMP;
}

/// Indices into [`VcpuShared::stats`] (maintained by the stub, informational; 8 and 9 by the
/// guest kernel). Every one is guest-writable: the host reads them as untrusted figures.
pub mod stat {
    /// Shadow-page fills (misses resolved without the guest).
    pub const SHADOW_FILLS: usize = 0;
    /// Pages mapped by shadow fills (including fault-around).
    pub const SHADOW_PAGES: usize = 1;
    /// Exceptions delivered to the guest.
    pub const EXCEPTIONS: usize = 2;
    /// Events delivered to the guest.
    pub const EVENTS: usize = 3;
    /// Host hypercalls made.
    pub const HYPERCALLS: usize = 4;
    /// TLB flushes (shadow invalidations).
    pub const TLB_FLUSHES: usize = 5;
    /// Whole-shadow evictions caused by the host VMA budget.
    pub const EVICTIONS: usize = 6;
    /// Raw syscalls trapped and delivered as [`crate::Vector::Syscall`].
    pub const SYSCALL_TRAPS: usize = 7;
    /// System calls of the guest's programs served on this vCPU (the guest kernel counts
    /// them; `pvmux stats`).
    pub const GUEST_SYSCALLS: usize = 8;
    /// Exceptions of the guest's programs (page faults and others) the guest kernel handled
    /// on this vCPU (`pvmux stats`).
    pub const GUEST_FAULTS: usize = 9;
}

/// Why a stub recorded a crash (see [`CrashInfo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum CrashReason {
    /// An exception arrived before the guest registered a trap entry, or the vector has no entry.
    UnhandledException = 1,
    /// A fault happened while delivering an exception (the guest stack is not mapped).
    DoubleFault = 2,
    /// A fault inside stub code that is not a shadow miss (a bad pointer passed to a stub call).
    StubFault = 3,
    /// A malformed `iret` (frame, `rip` or `rsp` outside the window) or a raw system call made
    /// from stub code.
    AbiViolation = 4,
    /// The host refused a mapping even after evicting the whole shadow.
    OutOfHostMappings = 5,
    /// A system call from stub code failed in a way the stub cannot recover from.
    StubSyscallFailed = 6,
}

impl CrashReason {
    /// Decodes a raw reason; `None` for values this ABI version does not know.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::UnhandledException,
            2 => Self::DoubleFault,
            3 => Self::StubFault,
            4 => Self::AbiViolation,
            5 => Self::OutOfHostMappings,
            6 => Self::StubSyscallFailed,
            _ => return None,
        })
    }

    /// A short human description.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::UnhandledException => "unhandled exception (no guest trap entry)",
            Self::DoubleFault => "double fault (fault while delivering an exception)",
            Self::StubFault => "fault in stub code (bad pointer in a stub call)",
            Self::AbiViolation => "ABI violation in a stub call",
            Self::OutOfHostMappings => "out of host mappings",
            Self::StubSyscallFailed => "stub system call failed",
        }
    }
}

/// A crash record as copied out of a [`VcpuShared`] page (plain data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashInfo {
    /// Raw [`CrashReason`]; 0 = no crash recorded.
    pub reason: u32,
    /// Raw [`crate::Vector`] involved, if any.
    pub vector: u32,
    /// Error code of the exception.
    pub error_code: u64,
    /// Fault address of the exception.
    pub fault_addr: u64,
    /// Reason-specific detail (e.g. the failing syscall's errno, or the nested fault address).
    pub detail: u64,
    /// Registers at the crash (`vector`, `error_code`, `fault_addr` mirror the fields above).
    pub regs: TrapFrame,
}

/// The per-vCPU shared page.
#[derive(Debug, FromBytes, KnownLayout)]
#[repr(C, align(4096))]
pub struct VcpuShared {
    // ---- line 0: interrupt state (guest and stub) ----
    /// Virtual interrupt flag: 1 = events may be delivered now. The guest may store 0 directly;
    /// to set it to 1 it must call `irq_enable` (which delivers anything pending).
    pub irq_enabled: AtomicU32,
    /// Pending event bits ([`pending`]); futex word the vCPU sleeps on in `halt`.
    pub pending: AtomicU32,
    /// 1 while the vCPU sleeps in `halt` (stub).
    pub halted: AtomicU32,
    /// 1 once the vCPU has been started (stub).
    pub online: AtomicU32,
    /// Host thread id of the vCPU's thread (stub, informational).
    pub tid: AtomicU32,
    /// This vCPU's index (stub).
    pub vcpu_id: AtomicU32,
    _pad0: [u32; 10],
    // ---- line 1: doorbell, guest -> host ----
    /// Request sequence: the guest increments it to ring the doorbell; host futex word.
    pub hc_req: AtomicU32,
    /// 1 while the guest sleeps on `hc_resp`: the host must futex-wake it.
    pub guest_waiting: AtomicU32,
    /// Hypercall number and flags of the current request.
    pub hc_nr: AtomicU64,
    /// Arguments of the current request.
    pub hc_args: [AtomicU64; 6],
    // ---- line 2: doorbell, host -> guest ----
    /// Response sequence: the host sets it equal to `hc_req` when done; guest futex word.
    pub hc_resp: AtomicU32,
    /// 1 while the host sleeps on `hc_req`: the guest must futex-wake it.
    pub host_waiting: AtomicU32,
    /// Result of the last request (an `i64`: >= 0 result, < 0 [`crate::HcError`]).
    pub hc_ret: AtomicU64,
    /// The host CPU the host's service thread last ran on, plus 1 (0: not known): written
    /// by the host when it waits and when it answers. The guest does not spin for an answer
    /// while this names its own CPU. A hint only.
    pub host_cpu: AtomicU32,
    /// The host CPU the vCPU's thread last ran on, plus 1 (0: not known): written by the
    /// guest half when it rings and while it waits. The host does not spin for a request
    /// while this names its own CPU. A hint only: the host never trusts it further.
    pub guest_cpu: AtomicU32,
    _pad2: [u64; 5],
    // ---- line 3: hypercall caller context (stub) ----
    /// Return address of the `hypercall` stub call.
    pub hc_caller_rip: AtomicU64,
    /// Caller's `rsp` after return.
    pub hc_caller_rsp: AtomicU64,
    /// Caller's `rbp` (frame-pointer chain for host backtraces).
    pub hc_caller_rbp: AtomicU64,
    _pad3: [u64; 5],
    // ---- 0x100: crash record (stub -> host) ----
    /// Raw [`CrashReason`], 0 if none; written last.
    pub crash_reason: AtomicU32,
    /// Raw vector of the crash.
    pub crash_vector: AtomicU32,
    /// Error code of the crash.
    pub crash_error_code: AtomicU64,
    /// Fault address of the crash.
    pub crash_fault_addr: AtomicU64,
    /// Reason-specific detail.
    pub crash_detail: AtomicU64,
    /// Registers at the crash, in [`TrapFrame`] order (21 words).
    pub crash_regs: [AtomicU64; 21],
    _pad4: [u64; 7],
    // ---- 0x200: counters (stub), see [`stat`] ----
    /// Informational counters.
    pub stats: [AtomicU64; 16],
    // ---- 0x280: guest-owned scratch (e.g. the guest's per-CPU pointer) ----
    /// Free for the guest; neither the stub nor the host interprets it.
    pub guest: [AtomicU64; 16],
    _reserved: [u64; 416],
}

impl VcpuShared {
    /// Copies the crash record out (one load per field).
    pub fn read_crash(&self) -> CrashInfo {
        let r: [u64; 21] = core::array::from_fn(|i| self.crash_regs[i].load(Relaxed));
        let regs = TrapFrame {
            rax: r[0],
            rbx: r[1],
            rcx: r[2],
            rdx: r[3],
            rsi: r[4],
            rdi: r[5],
            rbp: r[6],
            r8: r[7],
            r9: r[8],
            r10: r[9],
            r11: r[10],
            r12: r[11],
            r13: r[12],
            r14: r[13],
            r15: r[14],
            vector: r[15],
            error_code: r[16],
            fault_addr: r[17],
            rip: r[18],
            rflags: r[19],
            rsp: r[20],
        };
        CrashInfo {
            reason: self.crash_reason.load(Relaxed),
            vector: self.crash_vector.load(Relaxed),
            error_code: self.crash_error_code.load(Relaxed),
            fault_addr: self.crash_fault_addr.load(Relaxed),
            detail: self.crash_detail.load(Relaxed),
            regs,
        }
    }

    /// Copies the statistics counters out.
    pub fn read_stats(&self) -> [u64; 16] {
        core::array::from_fn(|i| self.stats[i].load(Relaxed))
    }
}

const _: () = assert!(size_of::<VcpuShared>() == crate::PAGE_SIZE as usize);
const _: () = assert!(offset_of!(VcpuShared, pending) == 4);
const _: () = assert!(offset_of!(VcpuShared, hc_req) == 0x40);
const _: () = assert!(offset_of!(VcpuShared, hc_args) == 0x50);
const _: () = assert!(offset_of!(VcpuShared, hc_resp) == 0x80);
const _: () = assert!(offset_of!(VcpuShared, hc_ret) == 0x88);
const _: () = assert!(offset_of!(VcpuShared, host_cpu) == 0x90);
const _: () = assert!(offset_of!(VcpuShared, guest_cpu) == 0x94);
const _: () = assert!(offset_of!(VcpuShared, hc_caller_rip) == 0xc0);
const _: () = assert!(offset_of!(VcpuShared, crash_reason) == 0x100);
const _: () = assert!(offset_of!(VcpuShared, crash_regs) == 0x120);
const _: () = assert!(offset_of!(VcpuShared, stats) == 0x200);
const _: () = assert!(offset_of!(VcpuShared, guest) == 0x280);
