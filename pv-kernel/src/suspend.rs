//! Snapshot park and resume (docs/ABI.md §snapshot, docs/MULTIKERNEL.md "Snapshot and
//! restore"): a suspend-to-RAM of the whole kernel, self-contained here.
//!
//! * **Park.** The host raises `pending::SNAPSHOT` (on vCPU 0): [`host_request`] sets
//!   [`SUSPEND`] and kicks every other vCPU. While it is set the scheduler runs nothing but
//!   the idle threads (`sched`): every vCPU switches away from what it runs at its next
//!   event (a vCPU running user code comes back within a time slice), so every thread's
//!   context is saved on its own stack, in guest memory, by the ordinary context switch.
//!   Each idle thread then calls [`park`]: its callee-saved registers and `rsp` go into
//!   [`PARKED_RSP`] (`pvmux_suspend_park`) and the vCPU blocks in hypercall `SnapshotPark`.
//!   Once every online vCPU is parked the host saves guest memory. If the tenant goes on in
//!   this process, the hypercalls return and the idle loops continue.
//! * **Resume.** A restored tenant starts vCPU 0 at the kernel's entry point with
//!   `boot_flags::RESUME` in its boot information: `_start` jumps to `pvmux_resume_entry`,
//!   which runs [`resume_main`] on vCPU 0's park stack (allocated before the park, so
//!   nothing lives there): the new sandbox's stub table and clock are taken, the trap entries
//!   registered again, the other vCPUs started at `pvmux_ap_resume_entry` on theirs, and
//!   each vCPU loads the context it parked (`pvmux_resume_context`): `park` returns 1 in
//!   its idle thread and the scheduler goes on with every thread where it stopped.
//! * **What lived outside guest memory** is rebuilt lazily: each address space gets a new
//!   user sandbox the next time one of its threads runs user code, with its pages mapped
//!   again at their first faults ([`epoch`], `linux::space::Space::revive`); destroyed
//!   spaces waiting for their old sandboxes to be reaped are released at once; the vDSO's
//!   clock page is published again.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use pvmux_hypercalls::{BootInfo, StubTable, ABI_MAGIC, ABI_VERSION, MAX_VCPUS};

const NR: usize = MAX_VCPUS as usize;

/// Pages of each vCPU's park stack (the stack its resume entry runs on).
const STACK_PAGES: u64 = 16;

/// Set while the kernel parks (and in a resumed kernel until it runs again).
static SUSPEND: AtomicBool = AtomicBool::new(false);
/// Per vCPU: the `rsp` of its parked context (`pvmux_suspend_park`).
static PARKED_RSP: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
/// Per vCPU: the top of its park stack (0: none yet). Entry 0 is read by
/// `pvmux_resume_entry`.
static STACK_TOP: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
/// vCPUs online when the park was asked for: the ones that park and resume.
static ONLINE_AT_PARK: AtomicU32 = AtomicU32::new(0);
/// vCPUs back from a resume.
static RESUMED: AtomicU32 = AtomicU32::new(0);
/// Resumes so far in this memory's history: a space whose sandbox belongs to an older epoch
/// needs a new one.
static EPOCH: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    ".pushsection .text.pvmux_suspend, \"ax\", @progbits",
    // pvmux_suspend_park(saved: *mut u64 /* rdi */, online: u64 /* rsi */) -> u64: saves
    // the callee-saved registers and `rsp` at `*saved`, makes the park hypercall on the same
    // stack below them; returns 0 when the hypercall returns, or 1 through
    // `pvmux_resume_context` in a restored sandbox.
    ".globl pvmux_suspend_park",
    ".p2align 4",
    "pvmux_suspend_park:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    sub rsp, 8",
    "    mov rdi, rsi",
    "    call {park_call}",
    "    add rsp, 8",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    xor eax, eax",
    "    ret",
    // pvmux_resume_context(rsp /* rdi */) -> !: returns 1 from the `pvmux_suspend_park`
    // that saved `rsp`.
    ".globl pvmux_resume_context",
    ".p2align 4",
    "pvmux_resume_context:",
    "    mov rsp, rdi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    mov eax, 1",
    "    ret",
    // vCPU 0 of a restored sandbox, from `_start`: rdi = &BootInfo, rsi = &StubTable.
    ".globl pvmux_resume_entry",
    ".p2align 4",
    "pvmux_resume_entry:",
    "    mov rsp, qword ptr [rip + {stacks}]",
    "    test rsp, rsp",
    "    jz 2f",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {resume_main}",
    "2:",
    "    ud2",
    // Another vCPU of a restored sandbox: rdi = its id, rsp = its park stack.
    ".globl pvmux_ap_resume_entry",
    ".p2align 4",
    "pvmux_ap_resume_entry:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {ap_resume}",
    "    ud2",
    ".popsection",
    park_call = sym park_call,
    stacks = sym STACK_TOP,
    resume_main = sym resume_main,
    ap_resume = sym ap_resume,
);

unsafe extern "sysv64" {
    fn pvmux_suspend_park(saved: *mut u64, online: u64) -> u64;
    fn pvmux_resume_context(rsp: u64) -> !;
    fn pvmux_ap_resume_entry();
}

/// Whether the kernel is parking: the scheduler runs only idle threads.
pub(crate) fn suspending() -> bool {
    SUSPEND.load(Ordering::Acquire)
}

/// The resume epoch (see [`EPOCH`]).
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// Gives every vCPU a park stack, once (the frame allocator's, never freed: the next
/// snapshot uses them again).
fn ensure_stacks(n: usize) -> bool {
    for top in STACK_TOP.iter().take(n) {
        if top.load(Ordering::Acquire) != 0 {
            continue;
        }
        let Some(gpa) = crate::mm::frame::alloc_contiguous(STACK_PAGES) else {
            return false;
        };
        let base = crate::boot::phys_to_virt(gpa);
        let len = STACK_PAGES * pvmux_hypercalls::PAGE_SIZE;
        crate::stub::prefault(base, len, true);
        top.store(base + len, Ordering::Release);
    }
    true
}

/// The host asks for a snapshot (`pending::SNAPSHOT`): every vCPU parks at its idle loop.
pub(crate) fn host_request() {
    let n = crate::boot::nr_vcpus() as usize;
    if !ensure_stacks(n.min(NR)) {
        crate::println!("pvmux-kernel: no memory for the snapshot's park stacks");
        return;
    }
    ONLINE_AT_PARK.store(crate::smp::online(), Ordering::Release);
    if SUSPEND.swap(true, Ordering::AcqRel) {
        return;
    }
    let me = crate::stub::vcpu_id();
    for id in 0..crate::smp::online() {
        if id != me {
            crate::stub::vcpu_kick(id);
        }
    }
}

/// Parks this vCPU (its idle thread, events disabled) until the tenant goes on, here or in a
/// restored sandbox.
pub(crate) fn park() {
    let me = crate::stub::vcpu_id() as usize % NR;
    let online = ONLINE_AT_PARK.load(Ordering::Acquire);
    // SAFETY: events are disabled and this is the idle thread of vCPU `me`: the saved
    // context stays on its stack, which nothing else runs on, until it is resumed here
    // (the hypercall returns) or by `pvmux_resume_context` in a restored sandbox.
    let resumed = unsafe { pvmux_suspend_park(PARKED_RSP[me].as_ptr(), u64::from(online)) };
    if resumed == 0 {
        // Taken (or given up): the tenant goes on in this process.
        SUSPEND.store(false, Ordering::Release);
        return;
    }
    let back = RESUMED.fetch_add(1, Ordering::AcqRel) + 1;
    if back == online.max(1) {
        crate::println!("pvmux-kernel: resumed from a snapshot ({back} vCPUs)");
        let _ = crate::hcall::snapshot_resumed(back);
    }
}

/// Called by `pvmux_suspend_park` on the idle stack: the park hypercall.
extern "sysv64" fn park_call(online: u64) {
    let _ = crate::hcall::snapshot_park(online as u32);
}

/// Per-vCPU state that lives in the sandbox and not in guest memory.
fn cpu_reinit(id: usize) {
    let percpu = &crate::sched::CPU_STATS[id % NR] as *const crate::sched::CpuStats as u64;
    crate::stub::vcpu_self().guest[0].store(percpu, Ordering::Relaxed);
}

/// vCPU 0 of a restored sandbox (see the module documentation).
extern "sysv64" fn resume_main(bi: *const BootInfo, table: *const StubTable) -> ! {
    // SAFETY: the domain builder passes a mapped (read-only) boot information page and the
    // stub's table, as at a cold boot (`kernel_entry`); both are checked before use.
    let (bi, table) = unsafe { (&*bi, &*table) };
    if bi.magic != ABI_MAGIC || bi.abi_version != ABI_VERSION {
        crate::arch::die();
    }
    if crate::stub::reinstall(table, bi.vcpu_shared_base).is_err() {
        crate::arch::die();
    }
    crate::time::set_resumed_clock(bi.tsc_base, bi.wall_clock_epoch_ns);
    crate::trap::init();
    EPOCH.fetch_add(1, Ordering::AcqRel);
    RESUMED.store(0, Ordering::Release);
    crate::linux::space::release_graves();
    crate::linux::vdso::republish();
    SUSPEND.store(false, Ordering::Release);
    let online = ONLINE_AT_PARK.load(Ordering::Acquire).clamp(1, bi.nr_vcpus);
    for id in 1..online {
        let top = STACK_TOP[id as usize % NR].load(Ordering::Acquire);
        let ret = crate::stub::vcpu_start(
            id,
            pvmux_ap_resume_entry as *const () as u64,
            top,
            u64::from(id),
        );
        if ret < 0 {
            panic!("cannot resume vCPU {id}: {ret}");
        }
    }
    cpu_reinit(0);
    // SAFETY: vCPU 0's idle thread saved this context in `park` before the snapshot; its
    // stack is in this memory and nothing else runs on it.
    unsafe { pvmux_resume_context(PARKED_RSP[0].load(Ordering::Acquire)) }
}

/// Another vCPU of a restored sandbox, on its park stack.
extern "sysv64" fn ap_resume(id: u64) -> ! {
    let id = id as usize % NR;
    cpu_reinit(id);
    // SAFETY: as in `resume_main`, for vCPU `id`'s idle thread.
    unsafe { pvmux_resume_context(PARKED_RSP[id].load(Ordering::Acquire)) }
}
