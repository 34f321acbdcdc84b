//! User sandboxes (`SandboxHeader::kind == kind::USER`): the stub runs guest user code for one
//! guest address space, one thread per context slot (see `pvmux_hypercalls::user`).
//!
//! Start-up maps the per-slot areas just above `USER_CTX_BASE`, installs the handlers, creates
//! every slot thread and its slice timer and builds the filter program; then it waits until
//! the host has written the context region into the control header (at once for a sandbox
//! spawned for a space; a *spare* sleeps here, on a futex on the low half of
//! `user_ctx_len`, until `SpaceCreate` assigns it one), maps the region at `USER_CTX_BASE`,
//! installs the user filter (TSYNC) and releases the threads. Each thread then raises a signal to itself
//! and *lives in its signal handler*: it waits for a request on its slot, applies the queued
//! operations (in the space's batch order, `UserSlot::ops_seq`: after the batches other slots
//! carry that were queued before, and user code runs only once all of those are applied),
//! writes the requested registers into the signal's saved context and returns,
//! which `rt_sigreturn`s into user code. The next signal from user code (a trapped system
//! call, a fault, the slice timer) enters the handler afresh on the alternate stack: the
//! handler saves the user state into the slot, hands the slot back, and waits again.
//!
//! User code owns FS (its TLS) and can write anything in the process, so nothing here uses
//! FS; a handler finds its slot from its stack pointer (areas are `AREA_SIZE` aligned) and
//! checks the area is one of ours. A fault in stub code ends the sandbox (status 124).

use crate::sigctx::*;
use core::arch::global_asm;
use core::mem::offset_of;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use pvmux_hypercalls::frame::RFLAGS_USER_MASK;
use pvmux_hypercalls::layout::MAX_GUEST_MEM;
use pvmux_hypercalls::sandbox::{status, GUEST_MEM_FD, STUB_EXIT_CRASH};
use pvmux_hypercalls::user::{
    command, in_user_window, op, prot, user_ctx_size, user_slot_offset, user_stat, UserCtxHeader,
    UserExit, UserOp, UserSlot, USER_CTX_BASE, USER_CTX_MAGIC, USER_FPSTATE_MAX, USER_OPS_MAX,
};
use pvmux_hypercalls::{Vector, ABI_MAGIC, ABI_VERSION, MAX_VCPUS, PAGE_SIZE};
use pvmux_switcher::exception::{classify, Classified, SandboxKind};
use pvmux_switcher::seccomp::{
    build_user_filter, FilterParams, SockFilter, UserFilterParams, MAX_FILTER_LEN, USER_LEN_MAX,
};

use crate::start::{
    fail, install_filter, install_handlers, set_altstack, thread_timer, Step, MAP_ANONYMOUS,
    MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, PROT_RW,
};
use crate::state::{header, is_stub_code, ALTSTACK_SIZE, AREA_ALTSTACK, AREA_SIZE, G, SIG_EVENT};
use crate::sys::{self, nr, syscall6};

/// Where the per-slot areas start (above the context region, below the stub).
const USER_AREAS_BASE: u64 = USER_CTX_BASE + 0x4000_0000;
/// Top of the stack a cloned slot thread starts on (it leaves it at its first signal).
const AREA_CLONE_STACK_TOP: u64 = AREA_ALTSTACK;
/// How long a slot thread spins for its next request before it sleeps (TSC ticks, ~20 µs).
const SPIN_TICKS: u64 = 50_000;
const EINVAL: u32 = 22;

// The FP area of a signal frame (FXSAVE layout, then the XSAVE header and extended state).
const FX_FCW: usize = 0;
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
/// `struct _fpx_sw_bytes` (the kernel's software-reserved bytes): magic1, extended_size,
/// xfeatures (u64), xstate_size.
const FX_SW: usize = 464;
const FX_LEGACY: usize = 512;
const XSAVE_HDR_END: usize = 576;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

/// Set once a user sandbox starts (the panic handler must not use kernel-mode state).
static USER_MODE: AtomicU32 = AtomicU32::new(0);
/// The highest operation batch of this space applied so far (`UserSlot::ops_seq`: the slot
/// threads apply the batches in the order the guest kernel numbered them).
static OPS_APPLIED: AtomicU64 = AtomicU64::new(0);
/// Bumped after every change of `OPS_APPLIED`: the futex word of the threads waiting for it.
static OPS_EVENT: AtomicU32 = AtomicU32::new(0);
/// Slot threads sleeping on `OPS_EVENT`.
static OPS_WAITERS: AtomicU32 = AtomicU32::new(0);
/// Start gate of the slot threads: 1 once the filter is in force.
static GO: AtomicU32 = AtomicU32::new(0);

/// True in a user sandbox.
pub(crate) fn active() -> bool {
    USER_MODE.load(Relaxed) != 0
}

/// Per-slot stub state at the start of the slot's area (only its own thread uses it).
#[repr(C)]
struct UserCpu {
    /// Slot index.
    slot: AtomicU32,
    /// Host thread id.
    tid: AtomicU32,
    /// Kernel id of the slice timer.
    timer_id: AtomicI32,
    /// 1 once the thread is in its handler loop.
    started: AtomicU32,
    /// `run_seq` of the request being served.
    cur_seq: AtomicU32,
    /// 1 while `last_fs` is this thread's FS base.
    fs_known: AtomicU32,
    /// The FS base last set or observed.
    last_fs: AtomicU64,
    /// TSC when user code was last entered (0: not running it), for `user_stat::USER_TICKS`.
    user_since: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<UserCpu>() <= 4096);

fn ucpu(i: u32) -> &'static UserCpu {
    // SAFETY: start-up maps one zeroed area per slot at USER_AREAS_BASE (all-zero is a valid
    // UserCpu: every field is atomic) and never unmaps them; callers pass i < nr_vcpus.
    unsafe { &*((USER_AREAS_BASE + u64::from(i) * AREA_SIZE) as *const UserCpu) }
}

/// The current thread's `UserCpu`, from the stack pointer (handlers run on the alternate
/// stack inside the slot's area). Anything else is a stub crash.
fn ucpu_from_stack() -> &'static UserCpu {
    let sp: u64;
    // SAFETY: reads rsp.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nostack, nomem, preserves_flags))
    };
    let area = sp & !(AREA_SIZE - 1);
    let n = u64::from(G.nr_vcpus.load(Relaxed));
    if area < USER_AREAS_BASE || area >= USER_AREAS_BASE + n * AREA_SIZE {
        sys::exit_group(STUB_EXIT_CRASH);
    }
    ucpu(((area - USER_AREAS_BASE) / AREA_SIZE) as u32)
}

/// The context region's header.
fn ctx_header() -> &'static UserCtxHeader {
    // SAFETY: start-up maps the context region at USER_CTX_BASE before anything calls this;
    // it stays mapped. Only atomic fields are read after start-up.
    unsafe { &*(USER_CTX_BASE as *const UserCtxHeader) }
}

/// A slot of the context region. Every field may change under us (user code of other slots
/// can write it): atomics are used as such, everything else is copied with one volatile
/// access and validated.
#[derive(Clone, Copy)]
struct Slot(*mut UserSlot);

impl Slot {
    fn get(i: u32) -> Self {
        Self((USER_CTX_BASE + user_slot_offset(i)) as *mut UserSlot)
    }
    /// The atomic word at byte offset `off` of the slot.
    fn atomic32(&self, off: usize) -> &'static AtomicU32 {
        // SAFETY: callers pass the offset of an AtomicU32 field; the slot lies in the context
        // region, mapped for the life of the process.
        unsafe { &*((self.0 as *const u8).add(off) as *const AtomicU32) }
    }
    fn run_seq(&self) -> &'static AtomicU32 {
        self.atomic32(offset_of!(UserSlot, run_seq))
    }
    fn done_seq(&self) -> &'static AtomicU32 {
        self.atomic32(offset_of!(UserSlot, done_seq))
    }
    fn user_waiting(&self) -> &'static AtomicU32 {
        self.atomic32(offset_of!(UserSlot, user_waiting))
    }
    fn kernel_waiting(&self) -> &'static AtomicU32 {
        self.atomic32(offset_of!(UserSlot, kernel_waiting))
    }
    fn count(&self, idx: usize) {
        self.add(idx, 1);
    }
    fn add(&self, idx: usize, n: u64) {
        // SAFETY: as in `atomic32`; `stats` is an array of atomics in the slot.
        let stats = unsafe { &*addr_of!((*self.0).stats) };
        if let Some(c) = stats.get(idx) {
            c.fetch_add(n, Relaxed);
        }
    }
}

/// Reads a field of shared memory once.
///
/// # Safety
/// `p` must point into a mapping that stays valid (the context region).
unsafe fn vread<T: Copy>(p: *const T) -> T {
    // SAFETY: caller contract; any bit pattern of these plain-integer fields is valid.
    unsafe { p.read_volatile() }
}

/// Writes a field of shared memory once.
///
/// # Safety
/// `p` must point into a mapping that stays valid (the context region).
unsafe fn vwrite<T: Copy>(p: *mut T, v: T) {
    // SAFETY: caller contract.
    unsafe { p.write_volatile(v) }
}

global_asm!(
    // clone(flags, stack, slot): the child calls user_ap_main(slot) on its new stack.
    ".globl pvmux_user_clone",
    "pvmux_user_clone:",
    "mov r9, rdx",
    "xor edx, edx",
    "xor r10d, r10d",
    "xor r8d, r8d",
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
    ap_main = sym user_ap_main,
);

extern "sysv64" {
    fn pvmux_user_clone(flags: u64, stack: u64, slot: u64) -> i64;
}

/// Start of a user sandbox (called by `stub_main` on the main thread, which becomes slot 0).
pub(crate) fn main(image_base: u64, text_start: u64, text_end: u64, fsgsbase: bool) -> ! {
    USER_MODE.store(1, Relaxed);
    FSGSBASE.store(u32::from(fsgsbase), Relaxed);
    let h = header();
    let (n, mem, pool) = (h.nr_vcpus, h.mem_size, h.user_pool_base);
    if h.magic != ABI_MAGIC
        || h.abi_version != ABI_VERSION
        || n == 0
        || n > MAX_VCPUS
        || mem == 0
        || mem > MAX_GUEST_MEM
        || !mem.is_multiple_of(PAGE_SIZE)
        || !pool.is_multiple_of(PAGE_SIZE)
        || pool >= mem
    {
        fail(Step::BadHeader, EINVAL);
    }
    // The filter lets user code map over anything below USER_CTX_BASE: the stub must live
    // above it (the kernel places a static-pie high unless the legacy layout is forced).
    if image_base < USER_CTX_BASE {
        fail(Step::Layout, EINVAL);
    }
    G.nr_vcpus.store(n, Relaxed);
    G.mem_size.store(mem, Relaxed);
    G.text_start.store(text_start, Relaxed);
    G.text_end.store(text_end, Relaxed);
    G.pid.store(sys::getpid(), Relaxed);

    // SAFETY: a fresh private anonymous mapping at an address reserved for it; NOREPLACE.
    if let Err(e) = unsafe {
        sys::mmap(
            USER_AREAS_BASE,
            u64::from(n) * AREA_SIZE,
            PROT_RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    } {
        fail(Step::MapAreas, e);
    }
    G.areas.store(USER_AREAS_BASE, Relaxed);
    for i in 0..n {
        ucpu(i).slot.store(i, Relaxed);
    }
    if let Err(e) = install_handlers(crate::start::pvmux_stub_signal_user as *const () as u64) {
        fail(Step::SigAction, e);
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS; inherited by every thread created below.
    if let Err(e) = sys::check(unsafe { syscall6(nr::PRCTL, [38, 1, 0, 0, 0, 0]) }) {
        fail(Step::NoNewPrivs, e);
    }
    if let Err(e) = thread_setup(ucpu(0)) {
        fail(Step::ThreadSetup, e);
    }
    // CLONE_VM | FS | FILES | SIGHAND | THREAD | SYSVSEM; no SETTLS: nothing uses FS.
    const CLONE_THREAD_FLAGS: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000 | 0x4_0000;
    for i in 1..n {
        let area = USER_AREAS_BASE + u64::from(i) * AREA_SIZE;
        // SAFETY: thread-only clone onto this slot's start stack, which nothing else uses.
        let r = unsafe {
            pvmux_user_clone(
                CLONE_THREAD_FLAGS,
                area + AREA_CLONE_STACK_TOP,
                u64::from(i),
            )
        };
        if r < 0 {
            fail(Step::Clone, (-r) as u32);
        }
    }
    loop {
        let seen = G.ready.load(Acquire);
        if seen >= n - 1 {
            break;
        }
        let _ = sys::futex_wait(&G.ready, seen);
    }
    let mut prog = [SockFilter::default(); MAX_FILTER_LEN];
    let params = UserFilterParams {
        common: FilterParams {
            text_start,
            text_end,
            pid: G.pid.load(Relaxed),
            event_signal: SIG_EVENT,
        },
        pool_base: pool,
        mem_size: mem,
    };
    let len = match build_user_filter(&params, &mut prog) {
        Ok(l) => l,
        Err(_) => fail(Step::Filter, EINVAL),
    };
    // Everything that does not need the context region is done: wait for it (a spare
    // waits here until `SpaceCreate` assigns it one).
    let (ctx, ctx_len) = wait_for_context();
    if !ctx.is_multiple_of(PAGE_SIZE)
        || ctx < pool
        || ctx_len != user_ctx_size(n)
        || ctx.checked_add(ctx_len).is_none_or(|e| e > mem)
    {
        fail(Step::BadHeader, EINVAL);
    }
    // SAFETY: USER_CTX_BASE is reserved for the context region; NOREPLACE.
    if let Err(e) = unsafe {
        sys::mmap(
            USER_CTX_BASE,
            ctx_len,
            PROT_RW,
            MAP_SHARED | MAP_FIXED_NOREPLACE,
            GUEST_MEM_FD,
            ctx,
        )
    } {
        fail(Step::MapControl, e);
    }
    let ch = ctx_header();
    // SAFETY: plain fields of the mapped header, read once.
    let (magic, version, slots) = unsafe {
        (
            vread(addr_of!(ch.magic)),
            vread(addr_of!(ch.abi_version)),
            vread(addr_of!(ch.nr_slots)),
        )
    };
    if magic != USER_CTX_MAGIC || version != ABI_VERSION || slots != n {
        fail(Step::BadUserCtx, EINVAL);
    }
    if let Err(e) = install_filter(&prog[..len]) {
        fail(Step::Seccomp, e);
    }
    // From here on the filter is in force for every thread: release them.
    GO.store(1, Release);
    sys::futex_wake(&GO, i32::MAX as u32);
    h.stub_status.store(status::READY, Release);
    sys::futex_wake(&h.stub_status, i32::MAX as u32);
    ch.ready.store(1, Release);
    enter(ucpu(0))
}

/// Waits until the host has written the context region into the control header:
/// `user_ctx_len` becomes non-zero last (its low half is the futex word), then
/// `user_ctx_gpa` is read. Returns `(user_ctx_gpa, user_ctx_len)`, still to be validated.
fn wait_for_context() -> (u64, u64) {
    let h = header();
    // SAFETY: both fields are 8-aligned words of the control header, mapped for the life
    // of the process; the host writes them concurrently, so they are accessed atomically
    // (the low half of `user_ctx_len`, little-endian, is the futex word).
    let (gpa, len, word) = unsafe {
        let len = addr_of!(h.user_ctx_len);
        (
            &*(addr_of!(h.user_ctx_gpa) as *const AtomicU64),
            &*(len as *const AtomicU64),
            &*(len as *const AtomicU32),
        )
    };
    loop {
        let l = len.load(Acquire);
        if l != 0 {
            return (gpa.load(Acquire), l);
        }
        if word.load(Acquire) == 0 {
            let _ = sys::futex_wait_shared(word, 0, None);
        }
    }
}

/// Body of slot threads 1..n: set up, report, wait for the filter, enter the handler loop.
extern "sysv64" fn user_ap_main(slot: u64) -> ! {
    let c = ucpu(slot as u32);
    if let Err(e) = thread_setup(c) {
        fail(Step::ThreadSetup, e);
    }
    G.ready.fetch_add(1, AcqRel);
    sys::futex_wake(&G.ready, 1);
    while GO.load(Acquire) == 0 {
        let _ = sys::futex_wait(&GO, 0);
    }
    enter(c)
}

/// Raises the timer signal at this thread: its handler never returns here (it returns into
/// user code), so this is where the thread starts living in its handler.
fn enter(c: &UserCpu) -> ! {
    let _ = sys::tgkill(G.pid.load(Relaxed), c.tid.load(Relaxed), SIG_EVENT);
    sys::exit_group(STUB_EXIT_CRASH)
}

/// Per-thread set-up before the filter: signal stack, tid, slice timer.
fn thread_setup(c: &UserCpu) -> Result<(), u32> {
    let area = c as *const UserCpu as u64;
    set_altstack(area + AREA_ALTSTACK, ALTSTACK_SIZE)?;
    let tid = sys::gettid();
    c.tid.store(tid, Relaxed);
    c.timer_id.store(thread_timer(tid, 0)?, Relaxed);
    Ok(())
}

/// Why user code came back, as reported in the slot.
#[derive(Clone, Copy)]
struct Exit {
    reason: UserExit,
    vector: u64,
    error_code: u64,
    addr: u64,
}

/// The handler of every signal of a user sandbox (SA_SIGINFO | SA_ONSTACK, all signals
/// blocked while it runs; entered through `pvmux_stub_signal_user`, which clears AC).
///
/// # Safety
/// Called only by the kernel, with valid `info` and `uc` pointers, on the alternate stack.
pub(crate) unsafe extern "C" fn on_signal(sig: i32, info: *const u8, uc: *mut u8) {
    let c = ucpu_from_stack();
    let slot = Slot::get(c.slot.load(Relaxed));
    // SAFETY: the kernel passes a valid ucontext: 32 sigcontext words at offset 40.
    let g = unsafe { &mut *(uc.add(UC_MCONTEXT) as *mut [u64; 32]) };
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let si = unsafe { SigInfo::read(info) };
    if c.started.load(Relaxed) == 0 {
        // The thread's own first signal (`enter`): start serving.
        if sig != SIG_EVENT as i32 || !is_stub_code(g[RIP]) {
            sys::exit_group(STUB_EXIT_CRASH);
        }
        c.started.store(1, Relaxed);
    } else {
        if is_stub_code(g[RIP]) {
            // A fault in stub code (user code jumped into it, or corrupted its state).
            sys::exit_group(STUB_EXIT_CRASH);
        }
        // User code ran from `user_since` until this signal.
        let since = c.user_since.swap(0, Relaxed);
        if since != 0 {
            slot.add(user_stat::USER_TICKS, rdtsc().saturating_sub(since));
        }
        let Some(exit) = exit_for(c, sig, si, g) else {
            c.user_since.store(rdtsc(), Relaxed);
            return; // a stale slice-timer expiry: resume user code
        };
        record(c, slot, g, &exit);
        publish(c, slot, exit.reason);
    }
    serve(c, slot, g, uc);
}

/// Maps a signal from user code to an exit (the classification is the one the kernel
/// sandbox uses, [`classify`]); `None` for a stale slice-timer expiry (the timer was re-armed
/// after it fired while the thread was in its handler).
fn exit_for(c: &UserCpu, sig: i32, si: SigInfo, g: &[u64; 32]) -> Option<Exit> {
    Some(match classify(&si.host_signal(sig, g), SandboxKind::User) {
        Classified::Syscall { nr } => Exit {
            reason: UserExit::Syscall,
            vector: Vector::Syscall as u64,
            error_code: nr,
            addr: 0,
        },
        Classified::Exception {
            vector,
            error_code,
            fault_addr,
        } => Exit {
            reason: UserExit::Exception,
            vector: vector as u64,
            error_code,
            addr: fault_addr,
        },
        Classified::Other => {
            if si.code == SI_TIMER {
                if let Ok(t) = sys::timer_gettime(c.timer_id.load(Relaxed)) {
                    if t.value.sec != 0 || t.value.nsec != 0 {
                        return None;
                    }
                }
            }
            Exit {
                reason: UserExit::Interrupt,
                vector: Vector::Event as u64,
                error_code: 0,
                addr: 0,
            }
        }
    })
}

/// 1 when the host kernel lets user space read and write the FS base directly
/// (`AT_HWCAP2 & HWCAP2_FSGSBASE`): the hot path then avoids two `arch_prctl` calls.
static FSGSBASE: AtomicU32 = AtomicU32::new(0);

/// This thread's FS base (the interrupted user code's: signal delivery does not change it).
fn get_fs() -> Result<u64, u32> {
    if FSGSBASE.load(Relaxed) != 0 {
        let v: u64;
        // SAFETY: `rdfsbase` is enabled for user space (AT_HWCAP2); it only reads FS base.
        unsafe {
            core::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        return Ok(v);
    }
    sys::get_fs()
}

/// Sets this thread's FS base for the user code about to run. Addresses outside the lower
/// canonical half fail (`EPERM`, as `arch_prctl` would) instead of faulting in the stub.
fn set_fs(v: u64) -> Result<(), u32> {
    if FSGSBASE.load(Relaxed) != 0 && v < 0x0000_8000_0000_0000 {
        // SAFETY: `wrfsbase` is enabled for user space (AT_HWCAP2) and `v` is canonical; it
        // changes only this thread's FS base, which no stub code of a user sandbox reads.
        unsafe {
            core::arch::asm!("wrfsbase {}", in(reg) v, options(nomem, nostack, preserves_flags))
        };
        return Ok(());
    }
    sys::set_fs(v)
}

/// The time-stamp counter.
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and is allowed in user mode on pvmux hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Saves the interrupted user state into the slot.
fn record(c: &UserCpu, slot: Slot, g: &[u64; 32], exit: &Exit) {
    let rax = if exit.reason == UserExit::Syscall {
        exit.error_code
    } else {
        g[RAX]
    };
    let mut regs = trap_frame(g, exit.vector, exit.error_code, exit.addr);
    regs.rax = rax;
    let fs = match get_fs() {
        Ok(v) => {
            c.last_fs.store(v, Relaxed);
            c.fs_known.store(1, Relaxed);
            v
        }
        Err(_) => {
            c.fs_known.store(0, Relaxed);
            0
        }
    };
    let saved = save_fpu(slot, g);
    let p = slot.0;
    // SAFETY: plain fields of the slot, in the mapped context region.
    unsafe {
        vwrite(addr_of_mut!((*p).regs), regs);
        vwrite(addr_of_mut!((*p).fs_base), fs);
        vwrite(addr_of_mut!((*p).fp_saved_len), saved);
        vwrite(addr_of_mut!((*p).exit_vector), exit.vector as u32);
        vwrite(addr_of_mut!((*p).exit_error_code), exit.error_code);
        vwrite(addr_of_mut!((*p).exit_addr), exit.addr);
    }
    slot.count(match exit.reason {
        UserExit::Syscall => user_stat::SYSCALLS,
        UserExit::Exception => user_stat::EXCEPTIONS,
        _ => user_stat::INTERRUPTS,
    });
}

/// Hands the slot back: `exit_reason`, then `done_seq = run_seq`, then a wake if the guest
/// kernel sleeps.
fn publish(c: &UserCpu, slot: Slot, reason: UserExit) {
    // SAFETY: a plain field of the slot.
    unsafe { vwrite(addr_of_mut!((*slot.0).exit_reason), reason as u32) };
    slot.done_seq().store(c.cur_seq.load(Relaxed), SeqCst);
    if slot.kernel_waiting().load(SeqCst) != 0 {
        sys::futex_wake(slot.done_seq(), i32::MAX as u32);
    }
}

/// Reports a failed request: nothing after operation `index` was applied, no user code ran.
fn op_failed(c: &UserCpu, slot: Slot, index: u32, errno: u32) {
    // SAFETY: plain fields of the slot.
    unsafe {
        vwrite(addr_of_mut!((*slot.0).op_failed), index);
        vwrite(addr_of_mut!((*slot.0).op_errno), errno);
    }
    publish(c, slot, UserExit::OpFailed);
}

/// Serves requests until one runs user code (then returns, so the handler's `rt_sigreturn`
/// enters it).
fn serve(c: &UserCpu, slot: Slot, g: &mut [u64; 32], uc: *mut u8) {
    loop {
        let seq = wait_request(slot);
        c.cur_seq.store(seq, Relaxed);
        slot.count(user_stat::RUNS);
        // SAFETY: plain fields of the slot, read once.
        let (cmd, nr_ops, ops_seq) = unsafe {
            (
                vread(addr_of!((*slot.0).command)),
                vread(addr_of!((*slot.0).nr_ops)),
                vread(addr_of!((*slot.0).ops_seq)),
            )
        };
        if !matches!(cmd, command::RUN | command::OPS_ONLY) || nr_ops as usize > USER_OPS_MAX {
            op_failed(c, slot, u32::MAX, EINVAL);
            continue;
        }
        // This request's batch goes after every earlier one (other slots carry them), and
        // nothing runs before all batches up to `ops_seq` are in force.
        let ordered = ops_seq != 0;
        if ordered && nr_ops > 0 {
            wait_ops_applied(ops_seq - 1);
        }
        let applied = apply_ops(slot, nr_ops);
        if ordered && nr_ops > 0 {
            // Failed or not, later batches must not wait for this one forever (a failure
            // ends the space anyway).
            ops_done(ops_seq);
        }
        if let Err((i, e)) = applied {
            op_failed(c, slot, i, e);
            continue;
        }
        if ordered {
            wait_ops_applied(ops_seq);
        }
        if cmd == command::OPS_ONLY {
            publish(c, slot, UserExit::OpsDone);
            continue;
        }
        match prepare_run(c, slot, g, uc) {
            Ok(()) => {
                c.user_since.store(rdtsc(), Relaxed);
                return;
            }
            Err(e) => op_failed(c, slot, nr_ops, e),
        }
    }
}

/// Waits until the slot is handed over (`run_seq != done_seq`); returns `run_seq`. Exits the
/// sandbox if the host marked it dead.
fn wait_request(slot: Slot) -> u32 {
    let (run, done, waiting) = (slot.run_seq(), slot.done_seq(), slot.user_waiting());
    loop {
        if ctx_header().dead.load(Relaxed) != 0 {
            sys::exit_group(0);
        }
        // SAFETY: rdtsc has no memory effects.
        let start = unsafe { core::arch::x86_64::_rdtsc() };
        loop {
            let r = run.load(Acquire);
            if r != done.load(Relaxed) {
                return r;
            }
            // SAFETY: as above.
            if unsafe { core::arch::x86_64::_rdtsc() }.wrapping_sub(start) > SPIN_TICKS {
                break;
            }
            core::hint::spin_loop();
        }
        waiting.store(1, SeqCst);
        let r = run.load(SeqCst);
        if r == done.load(SeqCst) && ctx_header().dead.load(Relaxed) == 0 {
            slot.count(user_stat::SLEEPS);
            let _ = sys::futex_wait_shared(run, r, None);
        }
        waiting.store(0, Relaxed);
    }
}

/// Waits until every operation batch up to `seq` is applied (by any slot thread). Exits the
/// sandbox if the host marked it dead.
fn wait_ops_applied(seq: u64) {
    if OPS_APPLIED.load(Acquire) >= seq {
        return;
    }
    // SAFETY: rdtsc has no memory effects.
    let start = unsafe { core::arch::x86_64::_rdtsc() };
    loop {
        let event = OPS_EVENT.load(SeqCst);
        if OPS_APPLIED.load(Acquire) >= seq {
            return;
        }
        if ctx_header().dead.load(Relaxed) != 0 {
            sys::exit_group(0);
        }
        // SAFETY: as above.
        if unsafe { core::arch::x86_64::_rdtsc() }.wrapping_sub(start) < SPIN_TICKS {
            core::hint::spin_loop();
            continue;
        }
        // Another slot is applying (or about to be handed) the earlier batch: sleep until it
        // is done, re-checking `dead` now and then.
        OPS_WAITERS.fetch_add(1, SeqCst);
        if OPS_APPLIED.load(SeqCst) < seq {
            let timeout = sys::Timespec {
                sec: 0,
                nsec: 10_000_000,
            };
            let _ = sys::futex_wait_shared(&OPS_EVENT, event, Some(&timeout));
        }
        OPS_WAITERS.fetch_sub(1, SeqCst);
    }
}

/// Records batch `seq` as applied and wakes the slot threads waiting for it.
fn ops_done(seq: u64) {
    OPS_APPLIED.fetch_max(seq, SeqCst);
    OPS_EVENT.fetch_add(1, SeqCst);
    if OPS_WAITERS.load(SeqCst) != 0 {
        sys::futex_wake(&OPS_EVENT, i32::MAX as u32);
    }
}

/// Applies `ops[0..nr_ops]` in order; `Err((index, errno))` at the first failure.
fn apply_ops(slot: Slot, nr_ops: u32) -> Result<(), (u32, u32)> {
    for i in 0..nr_ops {
        // SAFETY: i < USER_OPS_MAX (checked by the caller): an element of the slot's array.
        let o: UserOp = unsafe { vread(addr_of!((*slot.0).ops[i as usize])) };
        apply_op(&o).map_err(|e| (i, e))?;
        slot.count(user_stat::OPS);
    }
    Ok(())
}

/// Validates and applies one operation (ranges longer than [`USER_LEN_MAX`], which the filter
/// refuses, are split).
fn apply_op(o: &UserOp) -> Result<(), u32> {
    if o.len == 0
        || !o.addr.is_multiple_of(PAGE_SIZE)
        || !o.len.is_multiple_of(PAGE_SIZE)
        || !in_user_window(o.addr, o.len)
    {
        return Err(EINVAL);
    }
    let prot_ok = o.prot & !prot::ALL == 0;
    let mem = G.mem_size.load(Relaxed);
    match o.kind {
        op::MAP
            if prot_ok
                && o.offset.is_multiple_of(PAGE_SIZE)
                && o.offset.checked_add(o.len).is_some_and(|e| e <= mem) => {}
        op::UNMAP => {}
        op::PROTECT if prot_ok => {}
        _ => return Err(EINVAL),
    }
    let mut done = 0;
    while done < o.len {
        let (addr, len) = (o.addr + done, (o.len - done).min(USER_LEN_MAX));
        // SAFETY: the range lies in the user window, where the stub keeps nothing (its image,
        // areas and context region are above USER_CTX_BASE, checked at start-up).
        unsafe {
            match o.kind {
                op::MAP => sys::mmap(
                    addr,
                    len,
                    o.prot,
                    MAP_SHARED | crate::start::MAP_FIXED,
                    GUEST_MEM_FD,
                    o.offset + done,
                )
                .map(|_| ()),
                op::UNMAP => sys::munmap(addr, len),
                _ => sys::mprotect(addr, len, o.prot),
            }
        }?;
        done += len;
    }
    Ok(())
}

/// Loads the requested user state into the signal context (registers, FS base, FPU state)
/// and arms the slice timer. `Err(errno)` if the FS base cannot be loaded.
fn prepare_run(c: &UserCpu, slot: Slot, g: &mut [u64; 32], uc: *mut u8) -> Result<(), u32> {
    let p = slot.0;
    // SAFETY: plain fields of the slot, each read once.
    let (regs, fs, slice, fp_len, fp_init) = unsafe {
        (
            vread(addr_of!((*p).regs)),
            vread(addr_of!((*p).fs_base)),
            vread(addr_of!((*p).slice_ns)),
            vread(addr_of!((*p).fp_len)),
            vread(addr_of!((*p).fp_init)),
        )
    };
    if c.fs_known.load(Relaxed) == 0 || c.last_fs.load(Relaxed) != fs {
        c.fs_known.store(0, Relaxed);
        set_fs(fs)?;
        c.last_fs.store(fs, Relaxed);
        c.fs_known.store(1, Relaxed);
    }
    if fp_len != 0 {
        load_fpu(slot, g, fp_len as usize);
    } else if fp_init == 1 {
        init_fpu(g);
    }
    g[RAX] = regs.rax;
    g[RBX] = regs.rbx;
    g[RCX] = regs.rcx;
    g[RDX] = regs.rdx;
    g[RSI] = regs.rsi;
    g[RDI] = regs.rdi;
    g[RBP] = regs.rbp;
    g[R8] = regs.r8;
    g[R9] = regs.r9;
    g[R10] = regs.r10;
    g[R11] = regs.r11;
    g[R12] = regs.r12;
    g[R13] = regs.r13;
    g[R14] = regs.r14;
    g[R15] = regs.r15;
    g[RIP] = regs.rip;
    g[RSP] = regs.rsp;
    g[EFLAGS] = (g[EFLAGS] & !RFLAGS_USER_MASK) | (regs.rflags & RFLAGS_USER_MASK);
    // SAFETY: the ucontext's signal mask (8 bytes at 296): user code runs with nothing
    // blocked, whatever the frame says.
    unsafe { (uc.add(UC_SIGMASK) as *mut u64).write(0) };
    if slice != 0 {
        let spec = sys::Itimerspec {
            value: sys::Timespec {
                sec: (slice / 1_000_000_000).min(i64::MAX as u64) as i64,
                nsec: (slice % 1_000_000_000) as i64,
            },
            ..Default::default()
        };
        let _ = sys::timer_settime(c.timer_id.load(Relaxed), 0, &spec);
    }
    Ok(())
}

/// The signal frame's FP area: `(address, size)`, where size is the XSAVE size the kernel
/// recorded (magic1 present) or 512 (FXSAVE only). `None` if absent or not inside this
/// thread's signal stack.
fn frame_fp(g: &[u64; 32]) -> Option<(*mut u8, usize, bool)> {
    let fp = g[FPSTATE];
    let area = fp & !(AREA_SIZE - 1);
    let (lo, hi) = (area + AREA_ALTSTACK, area + AREA_SIZE);
    if fp < lo || fp + FX_LEGACY as u64 > hi || area < USER_AREAS_BASE {
        return None;
    }
    let p = fp as *mut u8;
    // SAFETY: 512 bytes at p lie in the signal stack (checked above).
    let (magic, size) = unsafe {
        (
            (p.add(FX_SW) as *const u32).read(),
            (p.add(FX_SW + 16) as *const u32).read() as usize,
        )
    };
    if magic == FP_XSTATE_MAGIC1 && size >= XSAVE_HDR_END && fp + size as u64 + 4 <= hi {
        Some((p, size, true))
    } else {
        Some((p, FX_LEGACY, false))
    }
}

/// Copies the frame's FP state into the slot; returns the bytes saved (0 if it does not fit).
fn save_fpu(slot: Slot, g: &[u64; 32]) -> u32 {
    let Some((p, size, _)) = frame_fp(g) else {
        return 0;
    };
    if size > USER_FPSTATE_MAX {
        return 0;
    }
    // SAFETY: `size` bytes at p lie in the signal stack; the slot's fpstate holds
    // USER_FPSTATE_MAX >= size bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(p, addr_of_mut!((*slot.0).fpstate) as *mut u8, size);
    }
    size as u32
}

/// Loads `fpstate[..len]` from the slot into the frame (bounded by the frame's size), keeping
/// the kernel's software bytes and sanitising what the CPU would refuse (MXCSR reserved bits,
/// XSAVE header).
fn load_fpu(slot: Slot, g: &[u64; 32], len: usize) {
    let Some((p, size, xsave)) = frame_fp(g) else {
        return;
    };
    let n = len.min(size).min(USER_FPSTATE_MAX);
    // SAFETY: `n` bytes fit both the frame's FP area (in the signal stack) and the slot's
    // fpstate; the software bytes at 464..512 and magic2 (at p + size) are not written.
    unsafe {
        let src = addr_of!((*slot.0).fpstate) as *const u8;
        let mask = match (p.add(FX_MXCSR_MASK) as *const u32).read() {
            0 => 0xffbf,
            m => m,
        };
        core::ptr::copy_nonoverlapping(src, p, n.min(FX_SW));
        if n > FX_LEGACY {
            core::ptr::copy_nonoverlapping(src.add(FX_LEGACY), p.add(FX_LEGACY), n - FX_LEGACY);
        }
        let mxcsr = p.add(FX_MXCSR) as *mut u32;
        mxcsr.write(mxcsr.read() & mask);
        if xsave && n >= XSAVE_HDR_END {
            let features = (p.add(FX_SW + 8) as *const u64).read();
            let bv = p.add(FX_LEGACY) as *mut u64;
            bv.write(bv.read() & features);
            core::ptr::write_bytes(p.add(FX_LEGACY + 8), 0, XSAVE_HDR_END - FX_LEGACY - 8);
        }
    }
}

/// Resets the frame's FP state to the initial configuration (FCW 0x37f, MXCSR 0x1f80, all
/// else zero, XSAVE header `xstate_bv` = 0).
fn init_fpu(g: &[u64; 32]) {
    let Some((p, size, xsave)) = frame_fp(g) else {
        return;
    };
    // SAFETY: `size` bytes at p lie in the signal stack; the software bytes at 464..512 and
    // magic2 (at p + size) are not written.
    unsafe {
        let mask = (p.add(FX_MXCSR_MASK) as *const u32).read();
        core::ptr::write_bytes(p, 0, FX_SW);
        (p.add(FX_FCW) as *mut u16).write(0x37f);
        (p.add(FX_MXCSR) as *mut u32).write(0x1f80);
        (p.add(FX_MXCSR_MASK) as *mut u32).write(mask);
        if xsave {
            core::ptr::write_bytes(p.add(FX_LEGACY), 0, size - FX_LEGACY);
        }
    }
}
