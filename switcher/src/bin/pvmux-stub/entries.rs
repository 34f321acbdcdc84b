//! The guest's "PV firmware": the entry points of the [`StubTable`].
//!
//! All but `hypercall` are *in-sandbox*: no host round trip. Each is an `extern "sysv64"`
//! function running on the guest's stack; the few that must restore or capture a complete
//! register context (`iret`, `irq_enable`) are assembly.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::Ordering::*;
use pvmux_hypercalls::frame::{pf, RFLAGS_IF, RFLAGS_USER_MASK, TRAP_FRAME_SIZE};
use pvmux_hypercalls::layout::{in_window, PHYSMAP_BASE, WINDOW_BASE};
use pvmux_hypercalls::sandbox::GUEST_MEM_FD;
use pvmux_hypercalls::stub::STUB_ENTRIES;
use pvmux_hypercalls::vcpu::{pending, stat};
use pvmux_hypercalls::{
    CrashReason, HcError, StubTable, TrapFrame, VcpuShared, Vector, ABI_MAGIC, ABI_VERSION,
    PAGE_SIZE,
};

use crate::shadow::{self, MAX_FAULT_AROUND};
use crate::start::RFLAGS_AC;
use crate::state::{
    self, cpu, StubCpu, AREA_STACK_TOP, G, OFF_IRET_SCRATCH, OFF_XMM_SAVE, SIG_EVENT,
};
use crate::{doorbell, sys, trap};

extern "sysv64" {
    fn pvmux_stub_hypercall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64;
    fn pvmux_stub_iret(frame: u64) -> !;
    fn pvmux_stub_irq_enable();
    fn pvmux_stub_null() -> u64;
    fn pvmux_stub_set_callbacks();
    fn pvmux_stub_irq_disable();
    fn pvmux_stub_halt();
    fn pvmux_stub_timer_arm();
    fn pvmux_stub_clock_ns();
    fn pvmux_stub_vcpu_start();
    fn pvmux_stub_vcpu_kick();
    fn pvmux_stub_vcpu_self();
    fn pvmux_stub_vcpu_id();
    fn pvmux_stub_load_root();
    fn pvmux_stub_tlb_flush();
    fn pvmux_stub_tlb_flush_all();
    fn pvmux_stub_prefault();
    fn pvmux_stub_set_fault_around();
    fn pvmux_stub_user_wait();
    fn pvmux_stub_user_wake();
    fn pvmux_stub_mem_write();
}

/// Fills the stub table with the entry addresses.
pub(crate) fn table() -> StubTable {
    StubTable {
        magic: ABI_MAGIC,
        abi_version: ABI_VERSION,
        nr_entries: STUB_ENTRIES,
        hypercall: pvmux_stub_hypercall as *const () as u64,
        set_callbacks: pvmux_stub_set_callbacks as *const () as u64,
        iret: pvmux_stub_iret as *const () as u64,
        irq_enable: pvmux_stub_irq_enable as *const () as u64,
        irq_disable: pvmux_stub_irq_disable as *const () as u64,
        halt: pvmux_stub_halt as *const () as u64,
        timer_arm: pvmux_stub_timer_arm as *const () as u64,
        clock_ns: pvmux_stub_clock_ns as *const () as u64,
        vcpu_start: pvmux_stub_vcpu_start as *const () as u64,
        vcpu_kick: pvmux_stub_vcpu_kick as *const () as u64,
        vcpu_self: pvmux_stub_vcpu_self as *const () as u64,
        vcpu_id: pvmux_stub_vcpu_id as *const () as u64,
        load_root: pvmux_stub_load_root as *const () as u64,
        tlb_flush: pvmux_stub_tlb_flush as *const () as u64,
        tlb_flush_all: pvmux_stub_tlb_flush_all as *const () as u64,
        prefault: pvmux_stub_prefault as *const () as u64,
        set_fault_around: pvmux_stub_set_fault_around as *const () as u64,
        null: pvmux_stub_null as *const () as u64,
        user_wait: pvmux_stub_user_wait as *const () as u64,
        user_wake: pvmux_stub_user_wake as *const () as u64,
        inproc_ops: crate::inproc::ops_entry(),
        inproc_run: crate::inproc::run_entry(),
        inproc_syscall: crate::inproc::syscall_entry(),
        inproc_fp_save: crate::inproc::fp_save_entry(),
        mem_write: pvmux_stub_mem_write as *const () as u64,
    }
}

// The guest calls every entry with its own rflags. Stub code must not run with the guest's
// AC (alignment check: the compiler's unaligned accesses would fault inside stub code and end
// the tenant) or DF (the System V ABI wants it clear; the stub's string instructions would
// run backwards). Each Rust entry is reached through a trampoline that, only when either flag
// is set (`popfq` is slow), clears both for the call and gives the caller its flags back on
// return. Arguments stay in their registers and results in rax/rdx; the stack stays aligned
// as the callee expects (`pushfq` then `call` adds 16 bytes). The assembly entries clear the
// flags themselves before they call Rust code; `null` runs no memory access that could fault.
global_asm!(
    ".macro pvmux_entry name, target",
    ".globl \\name",
    "\\name:",
    "pushfq",
    "test dword ptr [rsp], {ac_df}",
    "jnz 1f",
    "add rsp, 8",
    "jmp \\target",
    "1:",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "call \\target",
    "popfq",
    "ret",
    ".endm",
    // The entries that change the shadow (prefault, tlb_flush, tlb_flush_all, load_root) run
    // on the vCPU's own stub stack (the parking stack of its area, unused once the vCPU runs
    // the guest): they hold the shadow lock, and an eviction of the whole window (VMA budget)
    // or a flush that covers the caller's stack would unmap the very stack they run on; the
    // next stack access would fault into the signal handler, which waits for the lock this
    // thread holds. The caller's rsp is kept at the top of that stack; flags as above.
    ".macro pvmux_entry_stub_stack name, target",
    ".globl \\name",
    "\\name:",
    "mov rax, fs:[0]",
    "add rax, {stack_top}",
    "mov [rax - 8], rsp",
    "lea rsp, [rax - 16]",
    "pushfq",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "sub rsp, 8",
    "call \\target",
    "add rsp, 8",
    "popfq",
    "mov rsp, [rsp + 8]",
    "ret",
    ".endm",
    "pvmux_entry pvmux_stub_set_callbacks, {set_callbacks}",
    "pvmux_entry pvmux_stub_irq_disable, {irq_disable}",
    "pvmux_entry pvmux_stub_halt, {halt}",
    "pvmux_entry pvmux_stub_timer_arm, {timer_arm}",
    "pvmux_entry pvmux_stub_clock_ns, {clock_ns}",
    "pvmux_entry pvmux_stub_vcpu_start, {vcpu_start}",
    "pvmux_entry pvmux_stub_vcpu_kick, {vcpu_kick}",
    "pvmux_entry pvmux_stub_vcpu_self, {vcpu_self}",
    "pvmux_entry pvmux_stub_vcpu_id, {vcpu_id}",
    "pvmux_entry_stub_stack pvmux_stub_load_root, {load_root}",
    "pvmux_entry_stub_stack pvmux_stub_tlb_flush, {tlb_flush}",
    "pvmux_entry_stub_stack pvmux_stub_tlb_flush_all, {tlb_flush_all}",
    "pvmux_entry_stub_stack pvmux_stub_prefault, {prefault}",
    "pvmux_entry pvmux_stub_set_fault_around, {set_fault_around}",
    "pvmux_entry pvmux_stub_user_wait, {user_wait}",
    "pvmux_entry pvmux_stub_user_wake, {user_wake}",
    "pvmux_entry pvmux_stub_mem_write, {mem_write}",
    ac_df = const FLAGS_CLEARED as u32,
    keep = const !FLAGS_CLEARED as u32,
    stack_top = const AREA_STACK_TOP,
    set_callbacks = sym set_callbacks,
    irq_disable = sym irq_disable,
    halt = sym halt,
    timer_arm = sym timer_arm,
    clock_ns = sym clock_ns,
    vcpu_start = sym vcpu_start,
    vcpu_kick = sym vcpu_kick,
    vcpu_self = sym vcpu_self,
    vcpu_id = sym vcpu_id,
    load_root = sym load_root,
    tlb_flush = sym tlb_flush,
    tlb_flush_all = sym tlb_flush_all,
    prefault = sym prefault,
    set_fault_around = sym set_fault_around,
    user_wait = sym user_wait,
    user_wake = sym user_wake,
    mem_write = sym mem_write,
);

/// The `rflags` bits stub code runs without: AC (alignment check) and DF (direction).
const FLAGS_CLEARED: u64 = RFLAGS_AC | RFLAGS_DF;
/// The `rflags` direction flag.
const RFLAGS_DF: u64 = 1 << 10;

const ERR_INVAL: i64 = HcError::InvalidArgument.to_ret();
const ERR_BADADDR: i64 = HcError::BadAddress.to_ret();

global_asm!(
    // hypercall(nr, a0..a5): record the caller's context for host reports, then the doorbell
    // (with AC and DF cleared for the call when the caller had them set, as `pvmux_entry`).
    // `a5` is the seventh argument, on the stack above the return address: the tail call
    // leaves it there; the AC/DF path copies it below its saved flags (8 bytes of padding
    // keep the callee's stack 16-byte aligned).
    ".globl pvmux_stub_hypercall",
    "pvmux_stub_hypercall:",
    "mov rax, fs:[8]",
    "mov r11, [rsp]",
    "mov [rax + {caller_rip}], r11",
    "lea r11, [rsp + 8]",
    "mov [rax + {caller_rsp}], r11",
    "mov [rax + {caller_rbp}], rbp",
    "pushfq",
    "test dword ptr [rsp], {ac_df}",
    "jnz 5f",
    "add rsp, 8",
    "jmp {hypercall}",
    "5:",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    // [rsp] = the caller's flags, [rsp + 8] = return address, [rsp + 16] = a5.
    "sub rsp, 8",
    "push qword ptr [rsp + 24]",
    "call {hypercall}",
    "add rsp, 16",
    "popfq",
    "ret",
    //
    ".globl pvmux_stub_null",
    "pvmux_stub_null:",
    "xor eax, eax",
    "ret",
    //
    // irq_enable(): set the virtual IF (xchg: a full fence against vcpu_kick), and if events
    // are pending deliver them now as if interrupted at the return address.
    ".globl pvmux_stub_irq_enable",
    "pvmux_stub_irq_enable:",
    "mov rax, fs:[8]",
    "mov r11d, 1",
    "xchg dword ptr [rax + {irq_enabled}], r11d",
    "cmp dword ptr [rax + {pending}], 0",
    "jne 2f",
    "ret",
    "2:",
    "push rax",
    "lea rax, [rsp + 16]",
    "sub rax, {below}",
    "and rax, -16",
    "mov [rax + {f_rbx}], rbx",
    "mov [rax + {f_rcx}], rcx",
    "mov [rax + {f_rdx}], rdx",
    "mov [rax + {f_rsi}], rsi",
    "mov [rax + {f_rdi}], rdi",
    "mov [rax + {f_rbp}], rbp",
    "mov [rax + {f_r8}], r8",
    "mov [rax + {f_r9}], r9",
    "mov [rax + {f_r10}], r10",
    "mov [rax + {f_r11}], r11",
    "mov [rax + {f_r12}], r12",
    "mov [rax + {f_r13}], r13",
    "mov [rax + {f_r14}], r14",
    "mov [rax + {f_r15}], r15",
    "pop rbx",
    "mov [rax + {f_rax}], rbx",
    "pop rbx",
    "mov [rax + {f_rip}], rbx",
    "mov [rax + {f_rsp}], rsp",
    "pushfq",
    "pop rbx",
    "or rbx, {rflags_if}",
    "mov [rax + {f_rflags}], rbx",
    "mov rbx, rax",
    "lea rsp, [rax - 16]",
    // Stub code runs with AC and DF clear (the frame keeps the caller's flags; the event
    // entry starts with them clear, as after a trap).
    "pushfq",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "mov rdi, rax",
    "call {event_prepare}",
    "test rax, rax",
    "jnz 4f",
    // No event entry registered: leave the events pending and resume the caller.
    "mov rdi, rbx",
    "jmp pvmux_stub_iret",
    "4:",
    "lea rsp, [rbx - 8]",
    "mov qword ptr [rsp], 0",
    "mov rdi, rbx",
    "jmp rax",
    //
    // iret(frame): validate and copy the frame (Rust), then restore every register. rip and
    // rflags go below the target stack's red zone so that `popfq; ret 128` lands exactly on
    // the target rsp without touching the red zone.
    ".globl pvmux_stub_iret",
    "pvmux_stub_iret:",
    "and rsp, -16",
    "mov rax, fs:[0]",
    "movdqa [rax + {xmm} + 0], xmm0",
    "movdqa [rax + {xmm} + 16], xmm1",
    "movdqa [rax + {xmm} + 32], xmm2",
    "movdqa [rax + {xmm} + 48], xmm3",
    "movdqa [rax + {xmm} + 64], xmm4",
    "movdqa [rax + {xmm} + 80], xmm5",
    "movdqa [rax + {xmm} + 96], xmm6",
    "movdqa [rax + {xmm} + 112], xmm7",
    "movdqa [rax + {xmm} + 128], xmm8",
    "movdqa [rax + {xmm} + 144], xmm9",
    "movdqa [rax + {xmm} + 160], xmm10",
    "movdqa [rax + {xmm} + 176], xmm11",
    "movdqa [rax + {xmm} + 192], xmm12",
    "movdqa [rax + {xmm} + 208], xmm13",
    "movdqa [rax + {xmm} + 224], xmm14",
    "movdqa [rax + {xmm} + 240], xmm15",
    // Stub code runs with AC and DF clear (the frame's rflags are restored at the end).
    "pushfq",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "call {iret_prepare}",
    "mov rcx, fs:[0]",
    "movdqa xmm0, [rcx + {xmm} + 0]",
    "movdqa xmm1, [rcx + {xmm} + 16]",
    "movdqa xmm2, [rcx + {xmm} + 32]",
    "movdqa xmm3, [rcx + {xmm} + 48]",
    "movdqa xmm4, [rcx + {xmm} + 64]",
    "movdqa xmm5, [rcx + {xmm} + 80]",
    "movdqa xmm6, [rcx + {xmm} + 96]",
    "movdqa xmm7, [rcx + {xmm} + 112]",
    "movdqa xmm8, [rcx + {xmm} + 128]",
    "movdqa xmm9, [rcx + {xmm} + 144]",
    "movdqa xmm10, [rcx + {xmm} + 160]",
    "movdqa xmm11, [rcx + {xmm} + 176]",
    "movdqa xmm12, [rcx + {xmm} + 192]",
    "movdqa xmm13, [rcx + {xmm} + 208]",
    "movdqa xmm14, [rcx + {xmm} + 224]",
    "movdqa xmm15, [rcx + {xmm} + 240]",
    "test rax, rax",
    "jnz 3f",
    "mov rbx, rdx",
    "mov rsp, [rbx + {f_rsp}]",
    "sub rsp, 144",
    "mov rax, [rbx + {f_rax}]",
    "mov rcx, [rbx + {f_rcx}]",
    "mov rdx, [rbx + {f_rdx}]",
    "mov rsi, [rbx + {f_rsi}]",
    "mov rdi, [rbx + {f_rdi}]",
    "mov rbp, [rbx + {f_rbp}]",
    "mov r8, [rbx + {f_r8}]",
    "mov r9, [rbx + {f_r9}]",
    "mov r10, [rbx + {f_r10}]",
    "mov r11, [rbx + {f_r11}]",
    "mov r12, [rbx + {f_r12}]",
    "mov r13, [rbx + {f_r13}]",
    "mov r14, [rbx + {f_r14}]",
    "mov r15, [rbx + {f_r15}]",
    "mov rbx, [rbx + {f_rbx}]",
    "popfq",
    "ret 128",
    "3:",
    "lea rsp, [rdx - 8]",
    "mov qword ptr [rsp], 0",
    "mov rdi, rdx",
    "jmp rax",
    hypercall = sym doorbell::hypercall,
    caller_rip = const offset_of!(VcpuShared, hc_caller_rip),
    caller_rsp = const offset_of!(VcpuShared, hc_caller_rsp),
    caller_rbp = const offset_of!(VcpuShared, hc_caller_rbp),
    irq_enabled = const offset_of!(VcpuShared, irq_enabled),
    pending = const offset_of!(VcpuShared, pending),
    event_prepare = sym event_prepare,
    iret_prepare = sym iret_prepare,
    f_rax = const offset_of!(TrapFrame, rax),
    f_rbx = const offset_of!(TrapFrame, rbx),
    f_rcx = const offset_of!(TrapFrame, rcx),
    f_rdx = const offset_of!(TrapFrame, rdx),
    f_rsi = const offset_of!(TrapFrame, rsi),
    f_rdi = const offset_of!(TrapFrame, rdi),
    f_rbp = const offset_of!(TrapFrame, rbp),
    f_r8 = const offset_of!(TrapFrame, r8),
    f_r9 = const offset_of!(TrapFrame, r9),
    f_r10 = const offset_of!(TrapFrame, r10),
    f_r11 = const offset_of!(TrapFrame, r11),
    f_r12 = const offset_of!(TrapFrame, r12),
    f_r13 = const offset_of!(TrapFrame, r13),
    f_r14 = const offset_of!(TrapFrame, r14),
    f_r15 = const offset_of!(TrapFrame, r15),
    f_rip = const offset_of!(TrapFrame, rip),
    f_rflags = const offset_of!(TrapFrame, rflags),
    f_rsp = const offset_of!(TrapFrame, rsp),
    below = const 128 + TRAP_FRAME_SIZE,
    xmm = const OFF_XMM_SAVE,
    rflags_if = const RFLAGS_IF,
    ac_df = const FLAGS_CLEARED as u32,
    keep = const !FLAGS_CLEARED as u32,
);

/// Two-register return (`rax`, `rdx`) for the assembly.
#[repr(C)]
struct Pair(u64, u64);

/// The entry events are delivered to.
fn event_entry() -> u64 {
    match G.event_entry.load(Acquire) {
        0 => G.trap_entry.load(Acquire),
        e => e,
    }
}

/// Turns the frame the assembly built into an event frame; returns the entry to jump to, or
/// 0 (events left pending) if the guest registered none.
extern "sysv64" fn event_prepare(frame: u64) -> u64 {
    let shared = StubCpu::current().shared();
    let entry = event_entry();
    if entry == 0 {
        return 0;
    }
    let bits = shared.pending.swap(0, SeqCst);
    shared.irq_enabled.store(0, SeqCst);
    set_event_fields(frame, bits);
    crate::state::count(shared, stat::EVENTS);
    entry
}

/// Turns the frame at `frame` into an event frame for the pending-event bits `bits`.
///
/// The frame lies on the guest's stack, which the guest (another vCPU) may write at any
/// time, so no reference to it is formed: each field is one volatile store.
fn set_event_fields(frame: u64, bits: u32) {
    let field = |off: usize| (frame + off as u64) as *mut u64;
    // SAFETY: callers pass an 8-aligned frame in the window that was just written (by the
    // assembly) or read (by `iret_prepare`), so it is mapped; a shadow miss is filled by the
    // signal handler.
    unsafe {
        field(offset_of!(TrapFrame, vector)).write_volatile(Vector::Event as u64);
        field(offset_of!(TrapFrame, error_code)).write_volatile(u64::from(bits));
        field(offset_of!(TrapFrame, fault_addr)).write_volatile(0);
    }
}

/// Validates and copies the frame for `iret`; writes rip/rflags below the target's red zone.
/// Returns `(0, scratch)` to restore, or `(entry, frame)` to deliver pending events instead.
extern "sysv64" fn iret_prepare(frame: u64) -> Pair {
    let cpu = StubCpu::current();
    let shared = cpu.shared();
    let bad = |detail: u64| -> ! {
        let f = TrapFrame {
            rip: frame,
            vector: 0,
            ..Default::default()
        };
        trap::crash(shared, CrashReason::AbiViolation, &f, detail)
    };
    if !frame.is_multiple_of(8) || !in_window(frame, TRAP_FRAME_SIZE as u64) {
        bad(frame);
    }
    let mut words = [0u64; 21];
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: the frame lies in the window; a shadow miss here is filled by the signal
        // handler (or is a crash if the guest's tables do not map it).
        *w = unsafe { ((frame + 8 * i as u64) as *const u64).read_volatile() };
    }
    let f: TrapFrame = zerocopy::transmute!(words);
    if !in_window(f.rip, 1) || f.rsp < WINDOW_BASE + 4096 || !in_window(f.rsp - 144, 144) {
        bad(f.rip);
    }
    for (slot, w) in cpu.iret_scratch.iter().zip(words) {
        slot.store(w, Relaxed);
    }
    if f.rflags & RFLAGS_IF != 0 {
        shared.irq_enabled.swap(1, SeqCst);
        let entry = event_entry();
        if shared.pending.load(SeqCst) != 0 && entry != 0 {
            // Deliver the pending events with the same frame, untouched but for the event
            // fields (nothing below the target stack has been written yet).
            let bits = shared.pending.swap(0, SeqCst);
            shared.irq_enabled.store(0, SeqCst);
            set_event_fields(frame, bits);
            crate::state::count(shared, stat::EVENTS);
            return Pair(entry, frame);
        }
    } else {
        shared.irq_enabled.store(0, SeqCst);
    }
    // Restore path: rip and rflags go just below the target's red zone (they may overlap the
    // guest's frame, which is why the frame was copied to the scratch area first).
    let rflags = (f.rflags & RFLAGS_USER_MASK) | 0x202;
    write_guest_stack_word(f.rsp - 136, f.rip);
    write_guest_stack_word(f.rsp - 144, rflags);
    Pair(0, cpu as *const StubCpu as u64 + OFF_IRET_SCRATCH as u64)
}

/// Writes `value` at `addr` on a guest stack that `iret_prepare` checked lies in the window.
/// The guest may resume with any `rsp`, 8-aligned or not: an unaligned word is written byte
/// by byte (volatile stores of the alignment they have, never a reference).
fn write_guest_stack_word(addr: u64, value: u64) {
    // SAFETY: `addr..addr + 8` lies in the window (checked by the caller); a shadow miss is
    // filled by the signal handler, a refused one is the guest's fault (a crash record).
    unsafe {
        if addr.is_multiple_of(8) {
            (addr as *mut u64).write_volatile(value);
        } else {
            for (i, b) in value.to_le_bytes().into_iter().enumerate() {
                ((addr + i as u64) as *mut u8).write_volatile(b);
            }
        }
    }
}

extern "sysv64" fn set_callbacks(trap_entry: u64, event_entry: u64) -> i64 {
    let ok = |e: u64| e == 0 || in_window(e, 1);
    if !ok(trap_entry) || !ok(event_entry) {
        return ERR_INVAL;
    }
    G.trap_entry.store(trap_entry, Release);
    G.event_entry.store(event_entry, Release);
    0
}

extern "sysv64" fn irq_disable() -> u64 {
    u64::from(StubCpu::current().shared().irq_enabled.swap(0, SeqCst) != 0)
}

extern "sysv64" fn halt() {
    let shared = StubCpu::current().shared();
    if shared.pending.load(SeqCst) != 0 {
        return;
    }
    shared.halted.swap(1, SeqCst);
    if shared.pending.load(SeqCst) == 0 {
        let _ = sys::futex_wait(&shared.pending, 0);
    }
    shared.halted.store(0, SeqCst);
}

/// Arms the timer *relative* to now on the guest's own (TSC) clock, so it fires when
/// `clock_ns()` reaches the deadline whatever the TSC calibration error: an absolute
/// CLOCK_MONOTONIC deadline would drift by (error × uptime) and fire early, which makes a
/// guest that re-arms for the same deadline see an event storm.
extern "sysv64" fn timer_arm(deadline_ns: u64) -> i64 {
    let cpu = StubCpu::current();
    let mut spec = sys::Itimerspec::default();
    if deadline_ns != 0 {
        // A deadline already reached fires at once (1 ns: zero would disarm).
        let rel = deadline_ns.saturating_sub(state::clock_ns()).max(1);
        spec.value = sys::Timespec {
            sec: (rel / 1_000_000_000) as i64,
            nsec: (rel % 1_000_000_000) as i64,
        };
    }
    match sys::timer_settime(cpu.timer_id.load(Relaxed), 0, &spec) {
        Ok(()) => 0,
        Err(_) => ERR_INVAL,
    }
}

extern "sysv64" fn clock_ns() -> u64 {
    state::clock_ns()
}

extern "sysv64" fn vcpu_start(id: u64, rip: u64, rsp: u64, arg: u64) -> i64 {
    if id >= u64::from(G.nr_vcpus.load(Relaxed))
        || !in_window(rip, 1)
        || !in_window(rsp.wrapping_sub(8), 8)
    {
        return ERR_INVAL;
    }
    let target = cpu(id as u32);
    if target
        .started
        .compare_exchange(0, 1, AcqRel, Relaxed)
        .is_err()
    {
        return HcError::Busy.to_ret();
    }
    target.start_rip.store(rip, Relaxed);
    target.start_rsp.store(rsp, Relaxed);
    target.start_arg.store(arg, Relaxed);
    target.start_word.store(1, Release);
    sys::futex_wake(&target.start_word, 1);
    0
}

extern "sysv64" fn vcpu_kick(id: u64) -> i64 {
    if id >= u64::from(G.nr_vcpus.load(Relaxed)) {
        return ERR_INVAL;
    }
    let target = state::shared(id as u32);
    target.pending.fetch_or(pending::KICK, SeqCst);
    if target.halted.load(SeqCst) != 0 {
        sys::futex_wake(&target.pending, 1);
    } else if id != u64::from(StubCpu::current().id.load(Relaxed))
        && (target.irq_enabled.load(SeqCst) != 0 || crate::inproc::in_user(cpu(id as u32)))
    {
        let tid = cpu(id as u32).tid.load(Relaxed);
        if tid != 0 {
            let _ = sys::tgkill(G.pid.load(Relaxed), tid, SIG_EVENT);
        }
    }
    0
}

extern "sysv64" fn vcpu_self() -> u64 {
    StubCpu::current().shared.load(Relaxed)
}

extern "sysv64" fn vcpu_id() -> u64 {
    u64::from(StubCpu::current().id.load(Relaxed))
}

extern "sysv64" fn load_root(gpa: u64) -> i64 {
    if !gpa.is_multiple_of(PAGE_SIZE) || !in_guest_memory(gpa, PAGE_SIZE) {
        return ERR_BADADDR;
    }
    G.root.store(gpa, Release);
    shadow::flush_all();
    crate::state::count(StubCpu::current().shared(), stat::TLB_FLUSHES);
    0
}

extern "sysv64" fn tlb_flush(va: u64, len: u64) -> i64 {
    shadow::flush(va, len);
    crate::state::count(StubCpu::current().shared(), stat::TLB_FLUSHES);
    0
}

extern "sysv64" fn tlb_flush_all() -> i64 {
    shadow::flush_all();
    crate::state::count(StubCpu::current().shared(), stat::TLB_FLUSHES);
    0
}

extern "sysv64" fn prefault(va: u64, len: u64, write: u64) -> i64 {
    if !in_window(va, len) {
        return ERR_BADADDR;
    }
    let shared = StubCpu::current().shared();
    let access = if write != 0 { pf::WRITE } else { 0 };
    let (mut page, end) = (va & !(PAGE_SIZE - 1), va + len);
    let mut mapped = 0i64;
    while page < end {
        let leaf = match shadow::walk(page) {
            Ok(l) => l,
            Err(_) => return ERR_BADADDR,
        };
        // A large leaf is mapped whole or not at all (a flush may have cut holes): one the
        // shadow maps already stays, with the host page-table entries its pages have. (Mapped
        // again, it lost them all: the kernel heap's leaf, refilled at every kernel stack's
        // allocation, took ~16 host page faults per `fork`.)
        let leaf_end = leaf.page_va.saturating_add(leaf.size.bytes());
        let present = leaf.size.bytes() > PAGE_SIZE
            && leaf.permits(access).is_ok()
            && shadow::is_mapped(page, end.min(leaf_end) - page);
        if !present && shadow::fill(page, access, shared).is_err() {
            return ERR_BADADDR;
        }
        let step = if leaf.size.bytes() > PAGE_SIZE {
            leaf.size.bytes() - (page - leaf.page_va)
        } else {
            PAGE_SIZE * u64::from(G.fault_around.load(Relaxed).max(1))
                - (page % (PAGE_SIZE * u64::from(G.fault_around.load(Relaxed).max(1))))
        };
        mapped += (step / PAGE_SIZE) as i64;
        page = page.saturating_add(step);
    }
    mapped
}

extern "sysv64" fn set_fault_around(pages: u64) -> i64 {
    if pages == 0 || pages > u64::from(MAX_FAULT_AROUND) || !pages.is_power_of_two() {
        return ERR_INVAL;
    }
    i64::from(G.fault_around.swap(pages as u32, Relaxed))
}

/// The futex word at guest-physical `gpa` in the physmap, if `gpa` is 4-byte aligned and the
/// word lies inside guest memory.
fn user_word(gpa: u64) -> Option<&'static core::sync::atomic::AtomicU32> {
    if !gpa.is_multiple_of(4) || !in_guest_memory(gpa, 4) {
        return None;
    }
    // SAFETY: the physmap maps all of guest memory (MAP_SHARED, for the life of the process)
    // and the word lies inside it, aligned; an AtomicU32 may alias memory other processes
    // (the user sandbox, the host) change concurrently.
    Some(unsafe { &*((PHYSMAP_BASE + gpa) as *const core::sync::atomic::AtomicU32) })
}

extern "sysv64" fn user_wait(gpa: u64, expected: u64, timeout_ns: u64) -> i64 {
    const EAGAIN: u32 = 11;
    let Some(word) = user_word(gpa) else {
        return ERR_BADADDR;
    };
    let Ok(expected) = u32::try_from(expected) else {
        return ERR_INVAL;
    };
    let timeout = (timeout_ns != 0).then_some(sys::Timespec {
        sec: (timeout_ns / 1_000_000_000) as i64,
        nsec: (timeout_ns % 1_000_000_000) as i64,
    });
    match sys::futex_wait_shared(word, expected, timeout.as_ref()) {
        Ok(()) | Err(EAGAIN) => 0,
        // ETIMEDOUT, EINTR (an event signal arrived: the guest re-checks).
        Err(_) => HcError::Busy.to_ret(),
    }
}

extern "sysv64" fn user_wake(gpa: u64) -> i64 {
    match user_word(gpa) {
        Some(word) => i64::from(sys::futex_wake(word, i32::MAX as u32)),
        None => ERR_BADADDR,
    }
}

/// Whether `[gpa, gpa + len)` lies inside guest memory.
pub(crate) fn in_guest_memory(gpa: u64, len: u64) -> bool {
    gpa.checked_add(len)
        .is_some_and(|end| end <= G.mem_size.load(Relaxed))
}

extern "sysv64" fn mem_write(dst_gpa: u64, src: u64, len: u64) -> i64 {
    if !in_window(src, len) || !in_guest_memory(dst_gpa, len) {
        return ERR_BADADDR;
    }
    if len == 0 {
        return 0;
    }
    // SAFETY: `src` is a window address range: guest memory as the guest maps it, which the
    // guest may pass to the host to read; a part the shadow does not map ends the write short
    // (the host kernel checks the source, nothing faults in the stub).
    match unsafe { sys::pwrite(GUEST_MEM_FD, src, len, dst_gpa) } {
        Ok(n) => n as i64,
        Err(_) => ERR_BADADDR,
    }
}
