//! The sandbox header: page 0 of the control memfd, written by the host before it starts the
//! stub, and reported back into by the stub.
//!
//! The stub is started with two file descriptors: [`GUEST_MEM_FD`] (guest-physical memory)
//! and [`CTL_FD`] (the control region); a kernel sandbox may hold a third,
//! [`KERNEL_IMAGE_FD`] (its kernel image's file, read-only). It maps the first two, checks
//! this header, prepares every vCPU thread, installs its seccomp filter, and only then enters
//! the guest.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// File descriptor of the guest-memory memfd inside a sandbox.
pub const GUEST_MEM_FD: i32 = 3;
/// File descriptor of the control memfd inside a sandbox.
pub const CTL_FD: i32 = 4;
/// File descriptor, in a kernel sandbox whose header has [`SandboxHeader::shared_image`]
/// ranges, of the file that holds its kernel image (opened read-only by the host): the
/// stub maps the image's read-only pages from it instead of from guest memory, so every
/// tenant of that image shares one copy of them in the host's page cache and no launch
/// writes them. Absent (closed) otherwise.
pub const KERNEL_IMAGE_FD: i32 = 5;
/// Most [`SharedImageRange`]s a kernel sandbox's header holds.
pub const MAX_SHARED_IMAGE_RANGES: usize = 4;

/// Guest-physical pages a kernel sandbox maps read-only from [`KERNEL_IMAGE_FD`] instead of
/// from guest memory: `[gpa, gpa + len)` is the file's `[file_offset, file_offset + len)`.
/// All three are multiples of the page size; `len == 0`: unused. The guest memfd has holes
/// there (the host never writes those pages); a write to them through any guest mapping is
/// a page fault of the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout)]
#[repr(C)]
pub struct SharedImageRange {
    /// First guest-physical byte.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset in the file of [`KERNEL_IMAGE_FD`].
    pub file_offset: u64,
}

impl SharedImageRange {
    /// Whether the range is well formed for guest memory of `mem_size` bytes: page aligned,
    /// inside guest memory, its file offset page aligned (`len == 0`: unused, always fine).
    pub fn is_valid(&self, mem_size: u64) -> bool {
        let page = crate::PAGE_SIZE;
        self.len == 0
            || (self.gpa.is_multiple_of(page)
                && self.len.is_multiple_of(page)
                && self.file_offset.is_multiple_of(page)
                && self
                    .gpa
                    .checked_add(self.len)
                    .is_some_and(|e| e <= mem_size)
                && self.file_offset.checked_add(self.len).is_some())
    }
}
/// Exit status of a sandbox whose stub crashed: a kernel sandbox's stub recorded the crash
/// in a [`crate::VcpuShared`] page, a user sandbox's in its control page
/// ([`UserStubCrash`]).
pub const STUB_EXIT_CRASH: i32 = 124;
/// Exit status of a sandbox whose stub failed before entering the guest (see `stub_error`).
pub const STUB_EXIT_SETUP: i32 = 125;

/// Stub start-up progress, in [`SandboxHeader::stub_status`].
pub mod status {
    /// The stub has not reported yet.
    pub const STARTING: u32 = 0;
    /// Seccomp is installed and every vCPU thread is parked; vCPU 0 is about to enter.
    pub const READY: u32 = 1;
    /// vCPU 0 executed (is about to execute) the first guest instruction.
    pub const RUNNING: u32 = 2;
    /// Start-up failed at step `stub_step` with errno `stub_error`.
    pub const FAILED: u32 = 3;
}

/// Page 0 of the control region.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout)]
#[repr(C)]
pub struct SandboxHeader {
    /// [`crate::ABI_MAGIC`] (host).
    pub magic: u64,
    /// [`crate::ABI_VERSION`] (host).
    pub abi_version: u32,
    /// Number of vCPUs (host).
    pub nr_vcpus: u32,
    /// Guest memory size, the guest memfd's size (host).
    pub mem_size: u64,
    /// Guest-virtual entry point of vCPU 0 (host).
    pub entry_rip: u64,
    /// Initial `rsp` of vCPU 0 (host).
    pub entry_rsp: u64,
    /// Initial `rdi` of vCPU 0: the boot info's guest-virtual address (host).
    pub entry_rdi: u64,
    /// Guest-physical address of the initial PML4 (host).
    pub page_table_root: u64,
    /// TSC value at guest time 0 (host).
    pub tsc_base: u64,
    /// CLOCK_MONOTONIC in ns at guest time 0 (host).
    pub mono_base_ns: u64,
    /// TSC-to-ns multiplier (host).
    pub clock_mult: u64,
    /// TSC-to-ns shift (host).
    pub clock_shift: u32,
    /// Pages the stub maps around a shadow miss (host default; the guest may change it).
    pub fault_around_pages: u32,
    /// Start-up progress, a [`status`] value (stub).
    pub stub_status: AtomicU32,
    /// Start-up step that failed (stub).
    pub stub_step: AtomicU32,
    /// errno of the failed start-up step (stub).
    pub stub_error: AtomicU32,
    /// A spawned user sandbox's seccomp notification listener, its descriptor plus one (0:
    /// none yet, or none), written once its base filter is in force (stub): the host takes
    /// it with `pidfd_getfd` and answers the sandbox's requests for host file windows on it
    /// (`crate::window`). A template publishes its own in [`TemplateCtl::listener`].
    pub window_listener: AtomicU32,
    /// Address of the stub's [`crate::StubTable`] (stub).
    pub stub_table: AtomicU64,
    /// TSC just before the first guest instruction (stub).
    pub first_insn_tsc: AtomicU64,
    /// TSC when the stub started executing (stub).
    pub stub_start_tsc: AtomicU64,
    /// [`kind`] of sandbox to become (host).
    pub kind: u32,
    /// Kernel sandboxes: 1 while the host is still building the domain (host). A launch
    /// starts the sandbox while it builds, so the stub's own start-up (namespaces, exec,
    /// threads, filter) overlaps the build: the stub reads `entry_rip`, `entry_rsp`,
    /// `entry_rdi`, `page_table_root`, `tsc_base`, `mono_base_ns`, `clock_mult` and
    /// `clock_shift` only once this word is 0, waiting on it as a shared futex; the host
    /// writes those fields, then 0 here, then wakes it. 0 when the header is complete from
    /// the start (a restore, a kernel hand-over, user sandboxes).
    pub entry_held: AtomicU32,
    /// User sandboxes: first guest-physical byte of the user pool; the filter refuses
    /// mappings of lower memfd offsets (host).
    pub user_pool_base: u64,
    /// User sandboxes: guest-physical address of the context region (host, validated).
    /// 0 in a *spare* until the host assigns it, written before `user_ctx_len`.
    pub user_ctx_gpa: u64,
    /// User sandboxes: length of the context region (host). 0 in a *spare* (a user sandbox
    /// started before it has a space): its stub does the start-up that needs no context
    /// region, then sleeps on a shared futex on the low 32 bits of this word until the host
    /// writes it (after `user_ctx_gpa`) and wakes it.
    pub user_ctx_len: u64,
    /// User sandboxes: guest-physical address of the space's
    /// [`UserGrant`](crate::user::grant::UserGrant) page (host, validated: page aligned,
    /// below the user pool), which the stub maps read-only at
    /// [`USER_GRANT_BASE`](crate::user::grant::USER_GRANT_BASE). 0 in a *spare* until the
    /// host assigns it, written before `user_ctx_gpa`; 0 in a space created without one
    /// (the stub then refuses to start).
    pub user_grant_gpa: u64,
    /// Kernel sandboxes: [`user_isolation`] of the tenant (host). With
    /// [`user_isolation::NONE`] the stub lets the kernel map user pages in its own process
    /// and run user code on its vCPU threads (`crate::user::inproc`).
    pub user_isolation: u32,
    /// User sandboxes: 1 when the tenant has host file windows (`crate::window`), so the stub
    /// installs its filter with a notification listener the host answers window requests
    /// on; 0: no listener (host).
    pub windows: u32,
    /// The FPU state components of the host's signal frames: XCR0 without the dynamically
    /// enabled ones (AMX tile data), 0 when the OS did not enable XSAVE (host). The stub
    /// saves and restores user code's FPU registers with these (patched calls, the trusted
    /// mode) instead of asking CPUID, which traps to the hypervisor in a VM (~4 µs a call on
    /// a nested EPYC, and a user sandbox asked eight times at every start).
    pub xsave_mask: u64,
    /// Bytes of the standard-format XSAVE image of [`Self::xsave_mask`]'s components (the end
    /// of the highest one, at least 576); 0 with the mask (host).
    pub xsave_size: u32,
    /// [`cpu_flags`] of the host CPU (host).
    pub cpu_flags: u32,
    /// Kernel sandboxes: the guest-physical pages mapped from [`KERNEL_IMAGE_FD`] (host;
    /// with the entry fields, so read only once `entry_held` is 0). All unused without that
    /// fd.
    pub shared_image: [SharedImageRange; MAX_SHARED_IMAGE_RANGES],
}

/// [`SandboxHeader::cpu_flags`] bits.
pub mod cpu_flags {
    /// The CPU implements `rdtscp` (CPUID.8000_0001h:EDX bit 27).
    pub const RDTSCP: u32 = 1 << 0;
}

/// [`SandboxHeader::user_isolation`] values.
pub mod user_isolation {
    /// Every guest address space runs in a user sandbox of its own (the default).
    pub const PROCESS: u32 = 0;
    /// The trusted in-process mode: init's address space runs in the kernel sandbox.
    pub const NONE: u32 = 1;
}

/// [`SandboxHeader::kind`] values.
pub mod kind {
    /// A kernel sandbox: stub + guest kernel, one thread per vCPU.
    pub const KERNEL: u32 = 0;
    /// A user sandbox: stub + one guest address space's user code, one thread per vCPU.
    pub const USER: u32 = 1;
    /// A user sandbox *template*: a stub that does a user sandbox's start-up up to its
    /// threads, installs the template filter and then only forks children on the host's
    /// request ([`super::TemplateCtl`]); each child is a spare user sandbox with the control
    /// page the host named. It runs no guest code.
    pub const USER_TEMPLATE: u32 = 2;
}

/// Where a template's [`TemplateCtl`] lies in its control page 0 (after the header).
pub const TEMPLATE_CTL_OFFSET: usize = 0x800;
/// Most control pages a template's control memfd has: page 0 (the template's own) and one
/// per child that may exist at once.
pub const TEMPLATE_MAX_PAGES: u32 = 4096;

/// The fork channel of a user sandbox template (in its control page 0, at
/// [`TEMPLATE_CTL_OFFSET`]). The host writes the child's header into control page `page`,
/// then `page`, then bumps `request` and wakes it (shared futex); the template forks a
/// child, which maps that page as its own header at `CTL_BASE` and closes the control memfd
/// before it does anything else, and answers with `pidfd` and `done = request` (woken).
/// The host takes the child's pidfd from the template with `pidfd_getfd`; the template
/// closes its own copy when the next request comes.
#[derive(Debug)]
#[repr(C)]
pub struct TemplateCtl {
    /// Number of the last fork asked for (host; the template's futex word).
    pub request: AtomicU32,
    /// The control page (1.. [`TEMPLATE_MAX_PAGES`]) of the child to fork (host).
    pub page: AtomicU32,
    /// Number of the last fork answered (template; the host's futex word).
    pub done: AtomicU32,
    /// The child's pidfd in the template (its fd number), or `-errno` if the fork failed
    /// (template).
    pub pidfd: core::sync::atomic::AtomicI32,
    /// The template filter's notification listener in the template (its fd number), or
    /// `-errno` if the filter has none (template, before it reports `READY`). The host takes
    /// its own copy with `pidfd_getfd` before it asks for the first fork, at which the
    /// template closes its copy, so no child holds it: the host answers the children's
    /// window requests on it (`crate::window::WINDOW_SYNC_NR`).
    pub listener: core::sync::atomic::AtomicI32,
    /// How many host file windows the tenant has open (host, written with each fork
    /// request): when it grew, the template asks for all of them before it forks, so that
    /// its children are born holding them (`crate::window::WINDOW_SYNC_NR`).
    pub windows: AtomicU32,
}

/// Where a user sandbox's stub writes its [`UserStubCrash`] in its control page 0 (after the
/// header, before a template's [`TemplateCtl`]).
pub const USER_CRASH_OFFSET: usize = 0x400;

/// What a user sandbox's stub saw when it crashed, written just before it exits with
/// [`STUB_EXIT_CRASH`] (the kernel sandbox's record, in its `VcpuShared` pages, has no
/// counterpart there: user code owns FS and every page of that process). User code of the
/// sandbox can write this page, so the host only logs it; the exit status is the fact.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct UserStubCrash {
    /// A [`user_crash`] cause; 0: nothing recorded.
    pub cause: u32,
    /// The host signal the stub's handler was running for (0: none, a panic).
    pub signal: u32,
    /// Its `si_code`.
    pub si_code: i32,
    /// The slot (vCPU) whose thread crashed; [`user_crash::NO_SLOT`] when its stack named
    /// none.
    pub slot: u32,
    /// `rip` where the signal was raised.
    pub rip: u64,
    /// `si_addr` (the fault address of `SIGSEGV`/`SIGBUS`).
    pub addr: u64,
    /// `rsp` where the signal was raised.
    pub rsp: u64,
}

const _: () = assert!(size_of::<UserStubCrash>() == 40);
const _: () = assert!(USER_CRASH_OFFSET >= size_of::<SandboxHeader>());
const _: () = assert!(USER_CRASH_OFFSET + size_of::<UserStubCrash>() <= TEMPLATE_CTL_OFFSET);
const _: () = assert!(USER_CRASH_OFFSET.is_multiple_of(8));

impl core::fmt::Display for UserStubCrash {
    /// One line for the host's log: the cause, the signal and where it was raised.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", user_crash::describe(self.cause))?;
        if self.signal != 0 {
            write!(
                f,
                ": signal {} (si_code {}) at rip {:#x}, rsp {:#x}, address {:#x}",
                self.signal, self.si_code, self.rip, self.rsp, self.addr
            )?;
        }
        match self.slot {
            user_crash::NO_SLOT => write!(f, ", no slot"),
            s => write!(f, ", slot {s}"),
        }
    }
}

/// [`UserStubCrash::cause`] values.
pub mod user_crash {
    /// A slot thread's first signal was not the breakpoint of its start.
    pub const NOT_STARTED: u32 = 1;
    /// A signal at stub code outside the patch entry's resumable points (user code jumped
    /// into the stub, or corrupted its state).
    pub const IN_STUB_CODE: u32 = 2;
    /// A handler ran on a stack outside every slot's area.
    pub const FOREIGN_STACK: u32 = 3;
    /// Stub code panicked.
    pub const PANIC: u32 = 4;

    /// [`super::UserStubCrash::slot`] of a crash whose thread has no slot.
    pub const NO_SLOT: u32 = u32::MAX;

    /// What `cause` means, for a log line.
    pub const fn describe(cause: u32) -> &'static str {
        match cause {
            NOT_STARTED => "a slot thread's first signal was not its start",
            IN_STUB_CODE => "a signal raised in stub code",
            FOREIGN_STACK => "a signal handled on a stack outside the slots' areas",
            PANIC => "stub code panicked",
            _ => "an unknown cause",
        }
    }
}

const _: () = assert!(TEMPLATE_CTL_OFFSET >= size_of::<SandboxHeader>());
const _: () = assert!(TEMPLATE_CTL_OFFSET + size_of::<TemplateCtl>() <= crate::PAGE_SIZE as usize);
const _: () = assert!(size_of::<TemplateCtl>() == 24);

const _: () = assert!(offset_of!(SandboxHeader, stub_status) == 88);
const _: () = assert!(offset_of!(SandboxHeader, stub_table) == 104);
const _: () = assert!(offset_of!(SandboxHeader, kind) == 128);
const _: () = assert!(offset_of!(SandboxHeader, entry_held) == 132);
const _: () = assert!(offset_of!(SandboxHeader, user_ctx_gpa) == 144);
const _: () = assert!(offset_of!(SandboxHeader, user_grant_gpa) == 160);
const _: () = assert!(offset_of!(SandboxHeader, user_isolation) == 168);
const _: () = assert!(offset_of!(SandboxHeader, xsave_mask) == 176);
const _: () = assert!(offset_of!(SandboxHeader, xsave_size) == 184);
const _: () = assert!(offset_of!(SandboxHeader, cpu_flags) == 188);
const _: () = assert!(offset_of!(SandboxHeader, shared_image) == 192);
const _: () = assert!(size_of::<SharedImageRange>() == 24);
const _: () = assert!(size_of::<SandboxHeader>() == 288);
