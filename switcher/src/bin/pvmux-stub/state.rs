//! Stub state: tenant-wide globals and the per-vCPU [`StubCpu`] areas.
//!
//! Every vCPU thread owns one `AREA_SIZE`-aligned area holding its `StubCpu`, its parking
//! stack and its signal stack. A signal handler finds its `StubCpu` from its stack pointer
//! (the alternate stack lies inside the area), so it never trusts a register the guest can
//! set; stub entries called by the guest use `fs:[0]`, set per thread by the stub.

use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed};
use pvmux_hypercalls::layout::{vcpu_shared_addr, CTL_BASE};
use pvmux_hypercalls::sandbox::MAX_SHARED_IMAGE_RANGES;
use pvmux_hypercalls::{SandboxHeader, VcpuShared};

/// Size (and alignment) of a per-vCPU area.
pub(crate) const AREA_SIZE: u64 = pvmux_switcher::host_memory::STUB_AREA_SIZE;
/// Top of the parking stack inside an area (the stack grows down towards the `StubCpu`): a
/// parked vCPU thread runs on it until it enters the guest; after that, the entries that
/// change the shadow run on it (see `entries.rs`).
pub(crate) const AREA_STACK_TOP: u64 = 40 * 1024;
/// Start of the alternate signal stack inside an area.
pub(crate) const AREA_ALTSTACK: u64 = 40 * 1024;
/// Size of the alternate signal stack.
pub(crate) const ALTSTACK_SIZE: u64 = AREA_SIZE - AREA_ALTSTACK;

/// The signal used for vCPU events (timer expiry, kicks): the kernel's SIGRTMIN + 2.
pub(crate) const SIG_EVENT: u32 = 34;
/// `sigev_value` of a vCPU's retry timer (the guest timer uses 0).
pub(crate) const RETRY_TIMER_VALUE: u64 = 1;

/// Per-vCPU stub state. `repr(C)`: the assembly reads `self_ptr`, `shared` and `iret_scratch`.
#[repr(C)]
pub(crate) struct StubCpu {
    /// Address of this struct (`fs:[0]`).
    pub(crate) self_ptr: AtomicU64,
    /// Address of this vCPU's [`VcpuShared`] (`fs:[8]`: guest kernel code reads it there,
    /// `pvmux_hypercalls::stub::FS_VCPU_SHARED`).
    pub(crate) shared: AtomicU64,
    /// vCPU index (`fs:[16]`: guest kernel code reads it there,
    /// `pvmux_hypercalls::stub::FS_VCPU_ID`).
    pub(crate) id: AtomicU32,
    /// Host thread id.
    pub(crate) tid: AtomicU32,
    /// Kernel timer id of the guest's one-shot timer.
    pub(crate) timer_id: AtomicI32,
    /// Kernel timer id of the delivery-retry timer.
    pub(crate) retry_timer_id: AtomicI32,
    /// Futex word a parked vCPU waits on: 1 = go.
    pub(crate) start_word: AtomicU32,
    /// 0 = parked, 1 = started.
    pub(crate) started: AtomicU32,
    /// Start context for a parked vCPU.
    pub(crate) start_rip: AtomicU64,
    /// Start stack for a parked vCPU.
    pub(crate) start_rsp: AtomicU64,
    /// Start argument (`rdi`) for a parked vCPU.
    pub(crate) start_arg: AtomicU64,
    /// 1 while the retry timer is armed.
    pub(crate) retry_armed: AtomicU32,
    _pad: u32,
    /// The frame `iret` restores from (a private copy, so the guest cannot change it midway).
    pub(crate) iret_scratch: [AtomicU64; 21],
    _pad2: [u64; 2],
    /// xmm0-15 of the context `iret` resumes, saved around the stub's Rust code (which may
    /// use SSE registers); 16-byte aligned.
    pub(crate) xmm_save: [AtomicU64; 32],
    /// The trusted in-process mode's per-vCPU state (`crate::inproc`).
    pub(crate) inproc: crate::inproc::InprocCpu,
}

/// Offset of `iret_scratch` (used by assembly).
pub(crate) const OFF_IRET_SCRATCH: usize = core::mem::offset_of!(StubCpu, iret_scratch);
const _: () = assert!(
    core::mem::offset_of!(StubCpu, shared) == pvmux_hypercalls::stub::FS_VCPU_SHARED as usize
);
const _: () =
    assert!(core::mem::offset_of!(StubCpu, id) == pvmux_hypercalls::stub::FS_VCPU_ID as usize);
const _: () = assert!(OFF_IRET_SCRATCH == 72);
/// Offset of `xmm_save` (used by assembly).
pub(crate) const OFF_XMM_SAVE: usize = core::mem::offset_of!(StubCpu, xmm_save);
const _: () = assert!(OFF_XMM_SAVE.is_multiple_of(16) && AREA_SIZE.is_multiple_of(4096));
const _: () = assert!(core::mem::size_of::<StubCpu>() <= 4096);
/// Offset of `inproc` (used by assembly).
pub(crate) const OFF_INPROC: usize = core::mem::offset_of!(StubCpu, inproc);

impl StubCpu {
    /// This vCPU's shared page.
    pub(crate) fn shared(&self) -> &'static VcpuShared {
        shared(self.id.load(Relaxed))
    }

    /// The `StubCpu` of the current thread, found through `fs:[0]` (entry points).
    pub(crate) fn current() -> &'static StubCpu {
        let p: u64;
        // SAFETY: reading fs:[0] is a plain load; the stub sets FS to the StubCpu of every
        // vCPU thread before any guest code runs. A guest that rewrites FS only hurts itself.
        unsafe {
            core::arch::asm!("mov {}, fs:[0]", out(reg) p, options(nostack, readonly, preserves_flags))
        };
        // SAFETY: see above: p is this thread's StubCpu, which lives as long as the process.
        unsafe { &*(p as *const StubCpu) }
    }

    /// The `StubCpu` of the current thread, found from the stack pointer (signal handlers,
    /// which run on the alternate stack inside the vCPU's area).
    pub(crate) fn from_stack() -> &'static StubCpu {
        let sp: u64;
        // SAFETY: reads rsp.
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nostack, nomem, preserves_flags))
        };
        // SAFETY: handlers run only on the alternate stack, which lies in an AREA_SIZE-aligned
        // area that starts with this vCPU's StubCpu; areas live as long as the process.
        unsafe { &*((sp & !(AREA_SIZE - 1)) as *const StubCpu) }
    }
}

/// Tenant-wide stub state (set during start-up, read-mostly after).
pub(crate) struct Globals {
    pub(crate) nr_vcpus: AtomicU32,
    pub(crate) pid: AtomicU32,
    pub(crate) mem_size: AtomicU64,
    pub(crate) areas: AtomicU64,
    pub(crate) trap_entry: AtomicU64,
    pub(crate) event_entry: AtomicU64,
    pub(crate) root: AtomicU64,
    pub(crate) fault_around: AtomicU32,
    pub(crate) shadow_lock: AtomicU32,
    pub(crate) vma_count: AtomicU32,
    pub(crate) ready: AtomicU32,
    pub(crate) tsc_base: AtomicU64,
    pub(crate) clock_mult: AtomicU64,
    pub(crate) clock_shift: AtomicU32,
    pub(crate) text_start: AtomicU64,
    pub(crate) text_end: AtomicU64,
    /// The header's [`SharedImageRange`](pvmux_hypercalls::sandbox::SharedImageRange)s,
    /// checked, as `gpa, len, file_offset` triples (set before the guest runs).
    pub(crate) shared_image: [AtomicU64; 3 * MAX_SHARED_IMAGE_RANGES],
}

/// The globals.
pub(crate) static G: Globals = Globals {
    nr_vcpus: AtomicU32::new(0),
    pid: AtomicU32::new(0),
    mem_size: AtomicU64::new(0),
    areas: AtomicU64::new(0),
    trap_entry: AtomicU64::new(0),
    event_entry: AtomicU64::new(0),
    root: AtomicU64::new(0),
    fault_around: AtomicU32::new(16),
    shadow_lock: AtomicU32::new(0),
    vma_count: AtomicU32::new(0),
    ready: AtomicU32::new(0),
    tsc_base: AtomicU64::new(0),
    clock_mult: AtomicU64::new(0),
    clock_shift: AtomicU32::new(0),
    text_start: AtomicU64::new(0),
    text_end: AtomicU64::new(0),
    shared_image: [const { AtomicU64::new(0) }; 3 * MAX_SHARED_IMAGE_RANGES],
};

/// The sandbox header (page 0 of the control region; mapped during start-up).
///
/// The host writes some plain fields after start-up (a spare's `user_ctx_gpa`/`user_ctx_len`)
/// and guest code can write the page, so the kernel sandbox forms no reference to the whole
/// header: it reads plain fields with [`header_read!`] and uses the atomic ones through
/// [`header_atomics`]. (The user sandbox's `user.rs` still takes this reference.)
pub(crate) fn header() -> &'static SandboxHeader {
    // SAFETY: start-up maps the control region at CTL_BASE before anything calls this, and it
    // stays mapped for the life of the process; every field written after start is atomic.
    unsafe { &*(CTL_BASE as *const SandboxHeader) }
}

/// Address of the sandbox header, for [`header_read!`].
pub(crate) const HEADER: *const SandboxHeader = CTL_BASE as *const SandboxHeader;

/// Reads plain field `$field` of the sandbox header with one volatile load (no reference to
/// the header is formed). Only after start-up has mapped page 0 of the control region.
macro_rules! header_read {
    ($field:ident) => {
        // SAFETY: start-up maps page 0 of the control region at CTL_BASE (for the life of the
        // process) before any read; the field is naturally aligned in the `repr(C)` header.
        unsafe { core::ptr::addr_of!((*$crate::state::HEADER).$field).read_volatile() }
    };
}
pub(crate) use header_read;

/// The atomic (stub-written) fields of the sandbox header.
pub(crate) struct HeaderAtomics {
    pub(crate) stub_status: &'static AtomicU32,
    pub(crate) stub_step: &'static AtomicU32,
    pub(crate) stub_error: &'static AtomicU32,
    pub(crate) window_listener: &'static AtomicU32,
    pub(crate) stub_table: &'static AtomicU64,
    pub(crate) first_insn_tsc: &'static AtomicU64,
    pub(crate) stub_start_tsc: &'static AtomicU64,
}

/// References to the sandbox header's atomic fields only (atomics may alias memory others
/// write). Only after start-up has mapped page 0 of the control region.
pub(crate) fn header_atomics() -> HeaderAtomics {
    // SAFETY: as for `header_read!`; each reference covers one atomic field, never the
    // header's plain fields.
    unsafe {
        HeaderAtomics {
            stub_status: &*core::ptr::addr_of!((*HEADER).stub_status),
            stub_step: &*core::ptr::addr_of!((*HEADER).stub_step),
            stub_error: &*core::ptr::addr_of!((*HEADER).stub_error),
            window_listener: &*core::ptr::addr_of!((*HEADER).window_listener),
            stub_table: &*core::ptr::addr_of!((*HEADER).stub_table),
            first_insn_tsc: &*core::ptr::addr_of!((*HEADER).first_insn_tsc),
            stub_start_tsc: &*core::ptr::addr_of!((*HEADER).stub_start_tsc),
        }
    }
}

/// vCPU `id`'s shared page (`id` must be below the vCPU count).
pub(crate) fn shared(id: u32) -> &'static VcpuShared {
    // SAFETY: the control region maps one VcpuShared page per vCPU and stays mapped; callers
    // check `id < nr_vcpus`. All fields are atomics.
    unsafe { &*(vcpu_shared_addr(id) as *const VcpuShared) }
}

/// vCPU `id`'s `StubCpu` (`id` must be below the vCPU count).
pub(crate) fn cpu(id: u32) -> &'static StubCpu {
    let base = G.areas.load(Relaxed) + u64::from(id) * AREA_SIZE;
    // SAFETY: start-up allocates one zeroed, AREA_SIZE-aligned area per vCPU (all-zero is a
    // valid StubCpu: every field is atomic) and never frees them; callers check the index.
    unsafe { &*(base as *const StubCpu) }
}

/// True if `rip` lies in stub code.
pub(crate) fn is_stub_code(rip: u64) -> bool {
    rip >= G.text_start.load(Relaxed) && rip <= G.text_end.load(Relaxed)
}

/// Guest time in ns from the TSC.
pub(crate) fn clock_ns() -> u64 {
    // SAFETY: rdtsc has no memory effects and is allowed in user mode on pvmux hosts.
    clock_ns_at(unsafe { core::arch::x86_64::_rdtsc() })
}

/// Guest time in ns at TSC value `tsc`.
pub(crate) fn clock_ns_at(tsc: u64) -> u64 {
    let ticks = tsc.saturating_sub(G.tsc_base.load(Relaxed));
    ((u128::from(ticks) * u128::from(G.clock_mult.load(Relaxed))) >> G.clock_shift.load(Relaxed))
        as u64
}

/// The host CPU this thread runs on, plus 1: `rdtscp`'s `TSC_AUX`, which Linux sets to
/// `node << 12 | cpu`. 0 if the CPU has no `rdtscp` (CPUID.8000_0001h:EDX bit 27, asked by
/// the host).
/// A hint for the hand-offs' spinning (`pvmux_hypercalls::doorbell::Waiter::cpu`).
pub(crate) fn host_cpu() -> u32 {
    if !crate::xsave::has_rdtscp() {
        return 0;
    }
    let mut aux = 0u32;
    // SAFETY: the CPU implements `rdtscp` (checked above); it writes only `aux`.
    unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
    (aux & 0xfff) + 1
}

/// Bumps a statistics counter of this vCPU's shared page.
pub(crate) fn count(shared: &VcpuShared, idx: usize) {
    if let Some(c) = shared.stats.get(idx) {
        c.fetch_add(1, Relaxed);
    }
}
