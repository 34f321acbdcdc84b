//! Secondary vCPUs: start-up and the online count.
//!
//! Per-CPU data: kernel state that is per vCPU lives in arrays indexed by the stub's
//! `vcpu_id()` (scheduler slots, counters, fixups); each vCPU also stores the address of its
//! counters in `VcpuShared::guest[0]` for debugging from the host side.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::sched;

core::arch::global_asm!(
    ".pushsection .text.pvmux_ap_entry, \"ax\", @progbits",
    ".globl pvmux_ap_entry",
    ".p2align 4",
    // rdi = vCPU id, rsp = top of this vCPU's stack, events disabled.
    "pvmux_ap_entry:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {main}",
    "    ud2",
    ".popsection",
    main = sym ap_main,
);

unsafe extern "C" {
    /// Assembly entry of a secondary vCPU. Never called from Rust.
    fn pvmux_ap_entry();
}

/// Pages of a secondary vCPU's (idle) stack: 64 KiB like the boot stack.
const AP_STACK_PAGES: u64 = 16;

/// vCPUs running the scheduler.
static ONLINE: AtomicU32 = AtomicU32::new(0);

/// Number of vCPUs online.
pub(crate) fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

/// Per-vCPU set-up common to all vCPUs (events disabled).
pub(crate) fn cpu_init() {
    sched::init_cpu();
    let id = crate::stub::vcpu_id() as usize % sched::CPU_STATS.len();
    let percpu = &sched::CPU_STATS[id] as *const sched::CpuStats as u64;
    crate::stub::vcpu_self().guest[0].store(percpu, Ordering::Relaxed);
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Starts every other vCPU on its own stack.
pub(crate) fn start_aps() {
    for id in 1..crate::boot::nr_vcpus() {
        // The stack belongs to the vCPU's idle context forever: take it straight from the
        // frame allocator (direct map) rather than the heap.
        let Some(gpa) = crate::mm::frame::alloc_contiguous(AP_STACK_PAGES) else {
            crate::println!("pvmux-kernel: no memory for vCPU {id}'s stack");
            continue;
        };
        let base = crate::boot::phys_to_virt(gpa);
        let len = AP_STACK_PAGES * pvmux_hypercalls::PAGE_SIZE;
        crate::stub::prefault(base, len, true);
        let top = base + len;
        let ret =
            crate::stub::vcpu_start(id, pvmux_ap_entry as *const () as u64, top, u64::from(id));
        if ret < 0 {
            crate::println!("pvmux-kernel: vcpu_start({id}) failed: {ret}");
        }
    }
}

/// Rust entry of a secondary vCPU.
extern "sysv64" fn ap_main(id: u64) -> ! {
    cpu_init();
    crate::println!("pvmux-kernel: vCPU {id} online");
    sched::idle_loop()
}
