//! Start of day: self-relocation, mappings, vCPU threads, signal handlers, seccomp, guest entry.
//!
//! Order matters: everything that needs a system call the filter forbids (mapping the control
//! region and the physmap, per-vCPU areas, signal stacks, timers, FS bases, every vCPU thread)
//! happens first; then the filter goes on for all threads at once (TSYNC); only then does
//! vCPU 0 jump to the guest. Parked vCPUs wait on a futex until `vcpu_start`.

use core::arch::global_asm;
use core::sync::atomic::Ordering::*;
use pvmux_hypercalls::frame::pf;
use pvmux_hypercalls::layout::{
    ctl_size, in_window, vcpu_shared_addr, CTL_BASE, MAX_GUEST_MEM, PHYSMAP_BASE,
};
use pvmux_hypercalls::sandbox::{
    kind, status, user_isolation, CTL_FD, GUEST_MEM_FD, STUB_EXIT_SETUP,
};
use pvmux_hypercalls::{StubTable, ABI_MAGIC, ABI_VERSION, MAX_VCPUS, PAGE_SIZE};
use pvmux_switcher::host_memory::kernel_address_space_limit;
use pvmux_switcher::seccomp::{build_kernel_filter_with, FilterParams, SockFilter, MAX_FILTER_LEN};

use crate::state::{
    cpu, header_atomics, header_read, StubCpu, ALTSTACK_SIZE, AREA_ALTSTACK, AREA_SIZE,
    AREA_STACK_TOP, G, RETRY_TIMER_VALUE, SIG_EVENT,
};
use crate::sys::{self, nr, syscall6};
use crate::{entries, host_limits, shadow, trap};

global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "lea rdi, [rip + __ehdr_start]",
    "lea rsi, [rip + _DYNAMIC]",
    "mov rdx, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    // Signal restorer: must be stub code (the filter allows rt_sigreturn only from here).
    ".globl pvmux_stub_restorer",
    "pvmux_stub_restorer:",
    "mov eax, 15",
    "syscall",
    "ud2",
    // clone(flags, stack, tls, cpu): the child calls ap_main(cpu) on its new stack.
    ".globl pvmux_stub_clone",
    "pvmux_stub_clone:",
    "mov r8, rdx",
    "xor edx, edx",
    "xor r10d, r10d",
    "mov r9, rcx",
    "mov eax, 56",
    "syscall",
    "test rax, rax",
    "jnz 1f",
    "mov rdi, r9",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {ap_main}",
    "ud2",
    "1:",
    "ret",
    // enter_guest(rip, rsp, rdi, rsi): clear everything the guest should not inherit.
    ".globl pvmux_stub_enter_guest",
    "pvmux_stub_enter_guest:",
    "mov rsp, rsi",
    "mov rax, rdi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r11d, r11d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "push 0x202",
    "popfq",
    "jmp rax",
    // Signal entries, one per sandbox kind. The host kernel enters a handler with the
    // interrupted code's AC flag (alignment check): clear it before any Rust code runs, or
    // the first unaligned access the compiler emits would fault with every signal blocked
    // and kill the sandbox. (`rt_sigreturn` gives the interrupted code its flags back.)
    // (`popfq` is slow: only when AC is actually set.)
    ".globl pvmux_stub_signal_kernel",
    "pvmux_stub_signal_kernel:",
    "pushfq",
    "test dword ptr [rsp], {ac}",
    "jnz 2f",
    "add rsp, 8",
    "jmp {kernel_handler}",
    "2:",
    "and dword ptr [rsp], {no_ac}",
    "popfq",
    "jmp {kernel_handler}",
    ".globl pvmux_stub_signal_user",
    "pvmux_stub_signal_user:",
    "pushfq",
    "test dword ptr [rsp], {ac}",
    "jnz 3f",
    "add rsp, 8",
    "jmp {user_handler}",
    "3:",
    "and dword ptr [rsp], {no_ac}",
    "popfq",
    "jmp {user_handler}",
    main = sym stub_main,
    ap_main = sym ap_main,
    kernel_handler = sym trap::on_signal,
    user_handler = sym crate::user::on_signal,
    ac = const RFLAGS_AC as u32,
    no_ac = const !RFLAGS_AC as u32,
);

/// The `rflags` alignment-check flag.
pub(crate) const RFLAGS_AC: u64 = 1 << 18;

extern "sysv64" {
    pub(crate) fn pvmux_stub_restorer();
    /// The signal handler of a kernel sandbox (AC cleared, then `trap::on_signal`).
    pub(crate) fn pvmux_stub_signal_kernel();
    /// The signal handler of a user sandbox (AC cleared, then `user::on_signal`).
    pub(crate) fn pvmux_stub_signal_user();
    fn pvmux_stub_clone(flags: u64, stack: u64, tls: u64, cpu: u64) -> i64;
    fn pvmux_stub_enter_guest(rip: u64, rsp: u64, rdi: u64, rsi: u64) -> !;
}

/// The stub's entry table; its address is handed to the guest in `rsi`.
static mut TABLE: StubTable = StubTable::ZERO;

pub(crate) const PROT_RW: u32 = 3;
pub(crate) const MAP_SHARED: u32 = 0x01;
pub(crate) const MAP_PRIVATE: u32 = 0x02;
pub(crate) const MAP_FIXED: u32 = 0x10;
/// `MAP_POPULATE` (user ops `MAP_POPULATE` only).
pub(crate) const MAP_POPULATE: u32 = 0x8000;
pub(crate) const MAP_ANONYMOUS: u32 = 0x20;
pub(crate) const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;

/// Start-up steps, reported in `SandboxHeader::stub_step` on failure.
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum Step {
    MapHeader = 1,
    BadHeader = 2,
    MapControl = 3,
    MapPhysmap = 4,
    MapAreas = 5,
    SigAction = 6,
    NoNewPrivs = 7,
    ThreadSetup = 8,
    Clone = 9,
    Filter = 10,
    Seccomp = 11,
    /// User sandbox: the context region's header does not match the sandbox header.
    BadUserCtx = 12,
    /// User sandbox: the stub image lies below `USER_CTX_BASE` (it could be mapped over).
    Layout = 13,
    /// No core dumps / address-space limit (`host_limits`).
    Limits = 14,
    /// Leaving the initial `[stack]` (`host_limits`).
    Stack = 15,
}

pub(crate) fn fail(step: Step, errno: u32) -> ! {
    if step as u32 > Step::MapHeader as u32 {
        let h = header_atomics();
        h.stub_step.store(step as u32, Relaxed);
        h.stub_error.store(errno, Relaxed);
        h.stub_status.store(status::FAILED, Release);
        sys::futex_wake(h.stub_status, u32::MAX);
    }
    sys::exit_group(STUB_EXIT_SETUP)
}

/// Applies the stub's own `R_X86_64_RELATIVE` relocations (it is a static-pie with no loader).
///
/// # Safety
/// `base` must be the load address and `dynamic` the `_DYNAMIC` array of this image; must run
/// before anything reads a relocated pointer.
unsafe fn relocate(base: u64, dynamic: *const [u64; 2]) {
    const DT_RELA: u64 = 7;
    const DT_RELASZ: u64 = 8;
    const R_X86_64_RELATIVE: u64 = 8;
    let (mut rela, mut relasz) = (0u64, 0u64);
    let mut d = dynamic;
    // SAFETY: _DYNAMIC is a DT_NULL-terminated array of (tag, value) pairs.
    unsafe {
        while (*d)[0] != 0 {
            match (*d)[0] {
                DT_RELA => rela = (*d)[1],
                DT_RELASZ => relasz = (*d)[1],
                _ => {}
            }
            d = d.add(1);
        }
    }
    let mut off = 0;
    while off + 24 <= relasz {
        let r = (base + rela + off) as *const [u64; 3];
        // SAFETY: the relocation table lies in the image; RELATIVE targets are writable
        // (the kernel maps RELRO data writable; nothing has protected it yet).
        unsafe {
            let [r_offset, r_info, addend] = *r;
            if r_info & 0xffff_ffff == R_X86_64_RELATIVE {
                ((base + r_offset) as *mut u64).write(base.wrapping_add(addend));
            }
        }
        off += 24;
    }
}

/// The stub's executable segment, from its own program headers.
///
/// # Safety
/// `base` must be the address of this image's (mapped) ELF header.
unsafe fn text_range(base: u64) -> (u64, u64) {
    const PT_LOAD: u32 = 1;
    const PF_X: u32 = 1;
    // SAFETY: ELF64 header: e_phoff at 32, e_phentsize at 54, e_phnum at 56; the program
    // headers are mapped with the first segment.
    unsafe {
        let phoff = ((base + 32) as *const u64).read();
        let phentsize = u64::from(((base + 54) as *const u16).read());
        let phnum = u64::from(((base + 56) as *const u16).read());
        for i in 0..phnum {
            let ph = base + phoff + i * phentsize;
            let (ty, flags) = ((ph as *const u32).read(), ((ph + 4) as *const u32).read());
            if ty == PT_LOAD && flags & PF_X != 0 {
                let vaddr = ((ph + 16) as *const u64).read();
                let memsz = ((ph + 40) as *const u64).read();
                return (base + vaddr, base + vaddr + memsz);
            }
        }
    }
    (0, 0)
}

#[repr(C)]
struct SigAction {
    pub(crate) handler: u64,
    pub(crate) flags: u64,
    pub(crate) restorer: u64,
    pub(crate) mask: u64,
}

#[repr(C)]
struct StackT {
    pub(crate) sp: u64,
    pub(crate) flags: i32,
    pub(crate) _pad: i32,
    pub(crate) size: u64,
}

#[repr(C)]
struct SigEvent {
    pub(crate) value: u64,
    pub(crate) signo: i32,
    pub(crate) notify: i32,
    pub(crate) tid: i32,
    pub(crate) _pad: [i32; 11],
}

/// Installs the seccomp filter `prog` on every thread of the process at once (TSYNC).
pub(crate) fn install_filter(prog: &[SockFilter]) -> Result<(), u32> {
    install_filter_flags(prog, 1).map(|_| ())
}

/// Installs the seccomp filter `prog` with `SECCOMP_SET_MODE_FILTER` flags `flags`: the
/// call's non-negative result (a listener's descriptor with `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
pub(crate) fn install_filter_flags(prog: &[SockFilter], flags: usize) -> Result<usize, u32> {
    #[repr(C)]
    struct Fprog {
        len: u16,
        filter: *const SockFilter,
    }
    let fprog = Fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: SECCOMP_SET_MODE_FILTER with TSYNC and a valid program that outlives the call.
    let r = unsafe {
        syscall6(
            nr::SECCOMP,
            [1, flags, &fprog as *const Fprog as usize, 0, 0, 0],
        )
    };
    match r {
        r if r < 0 => Err((-r) as u32),
        r => Ok(r as usize),
    }
}

/// Gives the calling thread its alternate signal stack `[sp, sp + size)`.
pub(crate) fn set_altstack(sp: u64, size: u64) -> Result<(), u32> {
    let ss = StackT {
        sp,
        flags: 0,
        _pad: 0,
        size,
    };
    // SAFETY: valid stack_t; callers pass a stack in their thread's area, never freed.
    sys::check(unsafe { syscall6(nr::SIGALTSTACK, [&ss as *const _ as usize, 0, 0, 0, 0, 0]) })
        .map(|_| ())
}

/// Creates a CLOCK_MONOTONIC timer that signals [`SIG_EVENT`] (with `value`) to thread
/// `tid` only; returns its id.
pub(crate) fn thread_timer(tid: u32, value: u64) -> Result<i32, u32> {
    let ev = SigEvent {
        value,
        signo: SIG_EVENT as i32,
        notify: 4, /* SIGEV_THREAD_ID */
        tid: tid as i32,
        _pad: [0; 11],
    };
    let mut id: i32 = -1;
    // SAFETY: valid sigevent and out pointer; CLOCK_MONOTONIC.
    sys::check(unsafe {
        syscall6(
            nr::TIMER_CREATE,
            [
                1,
                &ev as *const _ as usize,
                &mut id as *mut i32 as usize,
                0,
                0,
                0,
            ],
        )
    })?;
    Ok(id)
}

/// Installs `handler` (on the alternate stack, every signal blocked while it runs, returning
/// through the stub's restorer) for the fault signals and [`SIG_EVENT`], then unblocks
/// every signal (the mask survives exec).
pub(crate) fn install_handlers(handler: u64) -> Result<(), u32> {
    const SA_SIGINFO: u64 = 4;
    const SA_ONSTACK: u64 = 0x0800_0000;
    const SA_RESTORER: u64 = 0x0400_0000;
    let act = SigAction {
        handler,
        flags: SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
        restorer: pvmux_stub_restorer as *const () as u64,
        mask: !0,
    };
    use crate::sigctx::{SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGSYS, SIGTRAP};
    for sig in [
        SIGILL,
        SIGTRAP,
        SIGBUS,
        SIGFPE,
        SIGSEGV,
        SIGSYS,
        SIG_EVENT as i32,
    ] {
        // SAFETY: valid sigaction; the handler and restorer are stub code.
        sys::check(unsafe {
            syscall6(
                nr::RT_SIGACTION,
                [sig as usize, &act as *const _ as usize, 0, 8, 0, 0],
            )
        })?;
    }
    let empty = 0u64;
    // SAFETY: SIG_SETMASK with a valid 8-byte set.
    sys::check(unsafe { syscall6(14, [2, &empty as *const u64 as usize, 0, 8, 0, 0]) })?;
    Ok(())
}

/// Per-thread set-up, done by each vCPU thread itself before the filter: FS base, signal
/// stack, timers, tid.
fn thread_setup(c: &StubCpu) -> Result<(), u32> {
    let base = c as *const StubCpu as u64;
    // SAFETY: ARCH_SET_FS changes only this thread's FS base; the stub uses no TLS.
    sys::check(unsafe { syscall6(nr::ARCH_PRCTL, [0x1002, base as usize, 0, 0, 0, 0]) })?;
    set_altstack(base + AREA_ALTSTACK, ALTSTACK_SIZE)?;
    let tid = sys::gettid();
    c.tid.store(tid, Relaxed);
    c.shared().tid.store(tid, Relaxed);
    c.timer_id.store(thread_timer(tid, 0)?, Relaxed);
    c.retry_timer_id
        .store(thread_timer(tid, RETRY_TIMER_VALUE)?, Relaxed);
    if crate::inproc::active() {
        crate::inproc::thread_setup(c, tid)?;
    }
    Ok(())
}

/// `AT_HWCAP2` in the auxiliary vector.
const AT_HWCAP2: u64 = 26;
/// `AT_EXECFN` in the auxiliary vector: the executable's name, at the top of the stack.
const AT_EXECFN: u64 = 31;
/// `AT_HWCAP2` bit: the kernel lets user space use `rdfsbase`/`wrfsbase`.
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// The value of auxiliary-vector entry `key`.
///
/// # Safety
/// `sp` must be the initial stack pointer of the process (argc, argv..., 0, envp..., 0, auxv).
unsafe fn auxv(sp: u64, key: u64) -> Option<u64> {
    // SAFETY: per the contract, the words from `sp` are the initial stack the kernel built:
    // argc, argc + 1 argv words, the envp words up to a 0, then (key, value) pairs up to
    // AT_NULL; every read stays inside it.
    unsafe {
        let argc = (sp as *const u64).read();
        let mut p = (sp as *const u64).add(1 + argc as usize + 1);
        while p.read() != 0 {
            p = p.add(1);
        }
        p = p.add(1);
        loop {
            let (k, v) = (p.read(), p.add(1).read());
            if k == 0 {
                return None;
            }
            if k == key {
                return Some(v);
            }
            p = p.add(2);
        }
    }
}

/// Main thread (vCPU 0).
extern "sysv64" fn stub_main(base: u64, dynamic: u64, initial_sp: u64) -> ! {
    // SAFETY: the assembly passes this image's base and _DYNAMIC; nothing ran before.
    unsafe { relocate(base, dynamic as *const [u64; 2]) };
    // SAFETY: base is this image's ELF header, mapped by the kernel.
    let (text_start, text_end) = unsafe { text_range(base) };
    // SAFETY: rdtsc has no memory effects.
    let start_tsc = unsafe { core::arch::x86_64::_rdtsc() };
    // SAFETY: CTL_BASE is reserved by the layout for the control region; NOREPLACE.
    if let Err(e) = unsafe {
        sys::mmap(
            CTL_BASE,
            PAGE_SIZE,
            PROT_RW,
            MAP_SHARED | MAP_FIXED_NOREPLACE,
            CTL_FD,
            0,
        )
    } {
        fail(Step::MapHeader, e);
    }
    let h = header_atomics();
    h.stub_start_tsc.store(start_tsc, Relaxed);
    crate::xsave::load();
    // Never dump core, whatever kills the sandbox (before anything else can).
    if let Err(e) = host_limits::no_core_dumps() {
        fail(Step::Limits, e);
    }
    // SAFETY: `initial_sp` is the process's initial stack pointer, as the kernel laid out
    // argc, argv, envp and the auxiliary vector (read before anything overwrote it); the
    // values are copied here, before the stub leaves that stack.
    let (hwcap2, execfn) = unsafe {
        (
            auxv(initial_sp, AT_HWCAP2).unwrap_or(0),
            auxv(initial_sp, AT_EXECFN).unwrap_or(0),
        )
    };
    // SAFETY: AT_EXECFN of this process and a stack pointer on its initial stack.
    if let Err(e) = unsafe { host_limits::record_initial_stack(initial_sp, execfn) } {
        fail(Step::Stack, e);
    }
    let sandbox_kind = header_read!(kind);
    if sandbox_kind == kind::KERNEL && header_read!(user_isolation) == user_isolation::NONE {
        if let Err(e) = crate::inproc::init(hwcap2 & HWCAP2_FSGSBASE != 0) {
            fail(Step::BadHeader, e);
        }
    }
    if sandbox_kind == kind::USER || sandbox_kind == kind::USER_TEMPLATE {
        crate::user::main(base, text_start, text_end, hwcap2 & HWCAP2_FSGSBASE != 0)
    }
    // The kernel sandbox's header fields the build does not change, each read once (the
    // entry, root and clock come after `entry_held`, in `kernel_main`).
    let (n, mem) = (header_read!(nr_vcpus), header_read!(mem_size));
    if header_read!(magic) != ABI_MAGIC
        || header_read!(abi_version) != ABI_VERSION
        || sandbox_kind != kind::KERNEL
        || n == 0
        || n > MAX_VCPUS
        || mem == 0
        || mem > MAX_GUEST_MEM
        || mem % PAGE_SIZE != 0
    {
        fail(Step::BadHeader, 22);
    }
    // SAFETY: extends the header mapping over the whole control region, same place.
    if let Err(e) = unsafe {
        sys::mmap(
            CTL_BASE,
            ctl_size(n),
            PROT_RW,
            MAP_SHARED | MAP_FIXED,
            CTL_FD,
            0,
        )
    } {
        fail(Step::MapControl, e);
    }
    // SAFETY: PHYSMAP_BASE is reserved by the layout; NOREPLACE.
    if let Err(e) = unsafe {
        sys::mmap(
            PHYSMAP_BASE,
            mem,
            PROT_RW,
            MAP_SHARED | MAP_FIXED_NOREPLACE,
            GUEST_MEM_FD,
            0,
        )
    } {
        fail(Step::MapPhysmap, e);
    }
    G.nr_vcpus.store(n, Relaxed);
    G.mem_size.store(mem, Relaxed);
    G.fault_around.store(
        header_read!(fault_around_pages)
            .clamp(1, shadow::MAX_FAULT_AROUND)
            .next_power_of_two(),
        Relaxed,
    );
    G.text_start.store(text_start, Relaxed);
    G.text_end.store(text_end, Relaxed);
    G.pid.store(sys::getpid(), Relaxed);

    let span = u64::from(n + 1) * AREA_SIZE;
    // SAFETY: a fresh private anonymous mapping chosen by the kernel.
    let raw = match unsafe { sys::mmap(0, span, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) } {
        Ok(a) => a,
        Err(e) => fail(Step::MapAreas, e),
    };
    G.areas
        .store((raw + AREA_SIZE - 1) & !(AREA_SIZE - 1), Relaxed);
    for id in 0..n {
        let c = cpu(id);
        c.self_ptr.store(c as *const StubCpu as u64, Relaxed);
        c.shared.store(vcpu_shared_addr(id), Relaxed);
        c.id.store(id, Relaxed);
        c.shared().vcpu_id.store(id, Relaxed);
    }
    // Leave the growable initial stack for vCPU 0's parking stack (its thread is this one;
    // it parks nowhere else) and unmap it.
    let top = cpu(0) as *const StubCpu as u64 + AREA_STACK_TOP;
    // SAFETY: vCPU 0's parking stack is mapped, writable and unused until the guest runs.
    unsafe { host_limits::switch_stack(top, kernel_main, 0, 0, 0) }
}

/// Waits until the host has built the domain (`entry_held` is 0), then reads and checks the
/// header fields the build wrote: the entry point, stack and argument, the page-table root
/// (stored in `G`) and the clock (stored in `G`). Returns (rip, rsp, rdi).
fn await_entry(mem: u64) -> (u64, u64, u64) {
    // SAFETY: as for `header_read!`; the reference covers the one atomic field.
    let held = unsafe { &*core::ptr::addr_of!((*crate::state::HEADER).entry_held) };
    loop {
        let v = held.load(Acquire);
        if v == 0 {
            break;
        }
        // A shared futex (the host wakes it from its own mapping); EAGAIN or EINTR: look
        // again.
        let _ = sys::futex_wait(held, v);
    }
    let root = header_read!(page_table_root);
    let (rip, rsp, rdi) = (
        header_read!(entry_rip),
        header_read!(entry_rsp),
        header_read!(entry_rdi),
    );
    if !root.is_multiple_of(PAGE_SIZE)
        || root >= mem
        || !in_window(rip, 1)
        || !in_window(rsp.wrapping_sub(8), 8)
    {
        fail(Step::BadHeader, 22);
    }
    // The kernel image's shared pages (`KERNEL_IMAGE_FD`), before any shadow fill.
    let ranges = header_read!(shared_image);
    if !ranges.iter().all(|r| r.is_valid(mem)) {
        fail(Step::BadHeader, 22);
    }
    for (i, r) in ranges.iter().enumerate() {
        G.shared_image[3 * i].store(r.gpa, Relaxed);
        G.shared_image[3 * i + 1].store(r.len, Relaxed);
        G.shared_image[3 * i + 2].store(r.file_offset, Relaxed);
    }
    G.root.store(root, Release);
    G.tsc_base.store(header_read!(tsc_base), Relaxed);
    G.clock_mult.store(header_read!(clock_mult), Relaxed);
    G.clock_shift
        .store(header_read!(clock_shift).min(63), Relaxed);
    (rip, rsp, rdi)
}

/// The rest of vCPU 0's start-up, on its parking stack: unmap the initial stack, handlers,
/// vCPU threads, limits, filter, the domain (`await_entry`), guest entry.
extern "sysv64" fn kernel_main(_: u64, _: u64, _: u64) -> ! {
    if let Err(e) = host_limits::release_initial_stack() {
        fail(Step::Stack, e);
    }
    let h = header_atomics();
    let (n, mem) = (G.nr_vcpus.load(Relaxed), G.mem_size.load(Relaxed));
    let (text_start, text_end) = (G.text_start.load(Relaxed), G.text_end.load(Relaxed));
    // SAFETY: single-threaded here; the guest only reads the table.
    unsafe { TABLE = entries::table() };

    if let Err(e) = install_handlers(pvmux_stub_signal_kernel as *const () as u64) {
        fail(Step::SigAction, e);
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS; inherited by every thread created below.
    if let Err(e) = sys::check(unsafe { syscall6(nr::PRCTL, [38, 1, 0, 0, 0, 0]) }) {
        fail(Step::NoNewPrivs, e);
    }
    if let Err(e) = thread_setup(cpu(0)) {
        fail(Step::ThreadSetup, e);
    }
    const CLONE_THREAD_FLAGS: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000 | 0x4_0000 | 0x8_0000;
    for id in 1..n {
        let c = cpu(id);
        let base = c as *const StubCpu as u64;
        // SAFETY: thread-only clone onto this vCPU's parking stack, TLS = its StubCpu.
        let r = unsafe { pvmux_stub_clone(CLONE_THREAD_FLAGS, base + AREA_STACK_TOP, base, base) };
        if r < 0 {
            fail(Step::Clone, (-r) as u32);
        }
    }
    while G.ready.load(Acquire) < n - 1 {
        let seen = G.ready.load(Acquire);
        if seen >= n - 1 {
            break;
        }
        let _ = sys::futex_wait(&G.ready, seen);
    }

    // Every mapping of the stub's own is in place: bound the address space (physmap, shadow
    // budget and the stub's own; the shadow evicts when it reaches it).
    // The trusted in-process mode maps user pages too: at most the user pool, once.
    let user = if crate::inproc::active() { mem } else { 0 };
    if let Err(e) = host_limits::limit_address_space(kernel_address_space_limit(mem, n) + user) {
        fail(Step::Limits, e);
    }
    let mut prog = [SockFilter::default(); MAX_FILTER_LEN];
    let params = FilterParams {
        text_start,
        text_end,
        pid: G.pid.load(Relaxed),
        event_signal: SIG_EVENT,
    };
    let len = match build_kernel_filter_with(&params, crate::inproc::active(), &mut prog) {
        Ok(l) => l,
        Err(_) => fail(Step::Filter, 22),
    };
    if let Err(e) = install_filter(&prog[..len]) {
        fail(Step::Seccomp, e);
    }
    // From here on the filter is in force for every thread.
    let (entry_rip, entry_rsp, entry_rdi) = await_entry(mem);
    let table = &raw const TABLE as u64;
    h.stub_table.store(table, Relaxed);
    h.stub_status.store(status::READY, Release);
    // Pre-fill the first instruction and stack pages to save two round trips through the
    // signal handler on boot (failures just fall back to demand filling).
    let shared0 = cpu(0).shared();
    let _ = shadow::fill(entry_rip, pf::FETCH, shared0);
    let _ = shadow::fill(entry_rsp - 8, pf::WRITE, shared0);
    cpu(0).started.store(1, Relaxed);
    shared0.online.store(1, Relaxed);
    // SAFETY: rdtsc has no memory effects.
    h.first_insn_tsc
        .store(unsafe { core::arch::x86_64::_rdtsc() }, Relaxed);
    h.stub_status.store(status::RUNNING, Release);
    sys::futex_wake(h.stub_status, u32::MAX);
    // SAFETY: the header was validated: entry and stack lie in the window.
    unsafe { pvmux_stub_enter_guest(entry_rip, entry_rsp, entry_rdi, table) }
}

/// Body of vCPU threads 1..n: set up, report ready, park until `vcpu_start`, enter the guest.
extern "sysv64" fn ap_main(cpu_addr: u64) -> ! {
    // SAFETY: the creator passes this vCPU's StubCpu, which lives for the process.
    let c = unsafe { &*(cpu_addr as *const StubCpu) };
    if let Err(e) = thread_setup(c) {
        fail(Step::ThreadSetup, e);
    }
    G.ready.fetch_add(1, AcqRel);
    sys::futex_wake(&G.ready, 1);
    while c.start_word.load(Acquire) == 0 {
        let _ = sys::futex_wait(&c.start_word, 0);
    }
    c.shared().online.store(1, Relaxed);
    let table = &raw const TABLE as u64;
    // SAFETY: vcpu_start validated rip and rsp (both in the window).
    unsafe {
        pvmux_stub_enter_guest(
            c.start_rip.load(Relaxed),
            c.start_rsp.load(Relaxed),
            c.start_arg.load(Relaxed),
            table,
        )
    }
}
