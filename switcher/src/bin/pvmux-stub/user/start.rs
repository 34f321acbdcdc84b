//! Start-up of a user sandbox: check the header, map the per-slot areas, install the
//! handlers, create the slot threads (each with its alternate signal stack and slice timer),
//! build the filters, install the base filter, wait for a context region (a spare waits here
//! until `SpaceCreate` assigns it one), map and check it and the grant page, install the lock
//! filter on every thread, and enter the handler loop.

use core::arch::global_asm;
use core::mem::offset_of;
use core::ptr::addr_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use pvmux_hypercalls::layout::{CTL_BASE, MAX_GUEST_MEM};
use pvmux_hypercalls::sandbox::{kind, status, CTL_FD, GUEST_MEM_FD, STUB_EXIT_SETUP};
use pvmux_hypercalls::user::grant::USER_GRANT_BASE;
use pvmux_hypercalls::user::{user_ctx_size, UserCtxHeader, USER_CTX_BASE, USER_CTX_MAGIC};
use pvmux_hypercalls::{ABI_MAGIC, ABI_VERSION, MAX_VCPUS, PAGE_SIZE};
use pvmux_switcher::host_memory::user_address_space_limit;
use pvmux_switcher::seccomp::MAX_FILTER_LEN;
use pvmux_switcher::seccomp::{
    build_user_base_filter, build_user_lock_filter, build_user_template_filter, FilterParams,
    SockFilter, UserFilterParams, CTL_PAGE_MAP, CTX_MAP_FLAGS, CTX_MAP_PROT, GRANT_MAP_PROT,
    SLOT_THREAD_FLAGS,
};

use super::cpu::{ucpu, UserCpu, USER_AREAS_BASE};
use super::fsbase::FSGSBASE;
use super::slot::{ctx_read, ctx_ready};
use super::USER_MODE;
use crate::host_limits;
use crate::start::{
    fail, install_filter, install_filter_flags, install_handlers, set_altstack, thread_timer, Step,
    MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_RW,
};
use crate::state::{header, header_atomics, ALTSTACK_SIZE, AREA_ALTSTACK, AREA_SIZE, G, SIG_EVENT};
use crate::sys::{self, nr, syscall6};

/// Top of the stack a cloned slot thread starts on (it leaves it at its first signal).
const AREA_CLONE_STACK_TOP: u64 = AREA_ALTSTACK;
const EINVAL: u32 = 22;

/// Start gate of the slot threads: 1 once the filter is in force.
static GO: AtomicU32 = AtomicU32::new(0);

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
        || h.clock_mult == 0
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
    // The guest clock, for the hand-off's spin budgets.
    G.tsc_base.store(h.tsc_base, Relaxed);
    G.clock_mult.store(h.clock_mult, Relaxed);
    G.clock_shift.store(h.clock_shift.min(63), Relaxed);
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
    if let Err(e) = super::patch::setup() {
        fail(Step::MapAreas, e);
    }
    for i in 0..n {
        ucpu(i).slot.store(i, Relaxed);
    }
    // Leave the growable initial stack for slot 0's start stack (this thread is slot 0) and
    // unmap it (`host_limits`).
    let top = USER_AREAS_BASE + AREA_CLONE_STACK_TOP;
    // SAFETY: slot 0's start stack is mapped, writable and used by no other thread.
    unsafe { host_limits::switch_stack(top, main_on_own_stack, n.into(), mem, pool) }
}

/// The rest of a user sandbox's start-up, on slot 0's start stack: a spawned sandbox starts
/// its threads, installs the base filter and waits for its context region; a template
/// (`kind::USER_TEMPLATE`) installs the template filter and forks children
/// ([`super::template`]), each of which continues in [`child_start`].
extern "sysv64" fn main_on_own_stack(n: u64, mem: u64, pool: u64) -> ! {
    if let Err(e) = host_limits::release_initial_stack() {
        fail(Step::Stack, e);
    }
    let n = n as u32;
    if let Err(e) = install_handlers(crate::start::pvmux_stub_signal_user as *const () as u64) {
        fail(Step::SigAction, e);
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS; inherited by every thread created below.
    if let Err(e) = sys::check(unsafe { syscall6(nr::PRCTL, [38, 1, 0, 0, 0, 0]) }) {
        fail(Step::NoNewPrivs, e);
    }
    // Bound the address space (the context region, mapped later, is part of the limit): the
    // stub's own mappings plus the user-mapping budget (`request.rs` evicts at the limit).
    if let Err(e) = host_limits::limit_address_space(user_address_space_limit(mem, pool, n)) {
        fail(Step::Limits, e);
    }
    let template = header().kind == kind::USER_TEMPLATE;
    if template {
        super::template::prepare();
    } else {
        start_threads(n);
    }
    // Lock every thread into the base filter (the template filter for a template, which
    // its children inherit): the user policy plus the context and grant mappings and the
    // lock filter's installation (docs/SECURITY.md, "Layers"). Both filters stay in force.
    {
        let params = user_filter_params(mem, pool);
        let mut base = [SockFilter::default(); MAX_FILTER_LEN];
        let built = if template {
            build_user_template_filter(&params, &mut base)
        } else {
            build_user_base_filter(&params, &mut base)
        };
        let Ok(base_len) = built else {
            fail(Step::Filter, EINVAL)
        };
        // A notification listener only for a tenant with host file windows.
        let windows = header().windows != 0;
        if template && windows {
            // With a notification listener (the host answers the children's requests for
            // host file windows on it); a host kernel without listeners: none (the host
            // then gives this tenant no windows).
            const NEW_LISTENER: usize = 8;
            let listener = match install_filter_flags(&base[..base_len], NEW_LISTENER) {
                Ok(fd) => fd as i32,
                Err(e) => match install_filter_flags(&base[..base_len], 0) {
                    Ok(_) => -(e as i32),
                    Err(e) => fail(Step::Seccomp, e),
                },
            };
            super::template::set_listener(listener);
        } else if template {
            if let Err(e) = install_filter_flags(&base[..base_len], 0) {
                fail(Step::Seccomp, e);
            }
            super::template::set_listener(-1);
        } else if windows {
            // On every thread, with a notification listener of its own (the host takes it
            // when the sandbox is assigned a space, and answers its window requests on it);
            // a host kernel without listeners: none, and no windows.
            const TSYNC_LISTENER: usize = 1 | 8 | 16; // TSYNC | NEW_LISTENER | TSYNC_ESRCH
            match install_filter_flags(&base[..base_len], TSYNC_LISTENER) {
                Ok(fd) => {
                    header_atomics()
                        .window_listener
                        .store(fd as u32 + 1, Release);
                    super::windows::enable();
                }
                Err(_) => {
                    if let Err(e) = install_filter(&base[..base_len]) {
                        fail(Step::Seccomp, e);
                    }
                }
            }
        } else if let Err(e) = install_filter(&base[..base_len]) {
            fail(Step::Seccomp, e);
        }
    }
    if template {
        super::template::serve_forks()
    }
    finish_start(n, mem, pool)
}

/// The filters' parameters: the stub's code range, the user pool and the memory size.
fn user_filter_params(mem: u64, pool: u64) -> UserFilterParams {
    UserFilterParams {
        common: FilterParams {
            text_start: G.text_start.load(Relaxed),
            text_end: G.text_end.load(Relaxed),
            pid: G.pid.load(Relaxed),
            event_signal: SIG_EVENT,
        },
        pool_base: pool,
        mem_size: mem,
    }
}

/// Where a template's child starts, forked with the template's filter in force and nothing
/// else but the template's memory: it takes control page `page` of the template's control
/// memfd as its own header (mapped over the template's) and closes the memfd, so that no
/// other page of it is reachable from this process; then it starts like a spawned sandbox.
pub(super) fn child_start(page: u32) -> ! {
    // SAFETY: CTL_BASE holds the template's control page (one page, MAP_SHARED); this
    // replaces it with the child's page of the same memfd, the one call the template filter
    // allows for it. Nothing holds a reference into the old page across the call (`header()`
    // is re-read below).
    let mapped = unsafe {
        sys::mmap(
            CTL_BASE,
            PAGE_SIZE,
            CTL_PAGE_MAP[0],
            CTL_PAGE_MAP[1],
            CTL_FD,
            u64::from(page) * PAGE_SIZE,
        )
    };
    if mapped.is_err() {
        // No header of its own to report into.
        sys::exit_group(STUB_EXIT_SETUP);
    }
    sys::close(CTL_FD);
    super::windows::enable();
    G.pid.store(sys::getpid(), Relaxed);
    let h = header();
    let (n, mem, pool) = (h.nr_vcpus, h.mem_size, h.user_pool_base);
    if n != G.nr_vcpus.load(Relaxed) || mem != G.mem_size.load(Relaxed) || h.kind != kind::USER {
        fail(Step::BadHeader, EINVAL);
    }
    start_threads(n);
    finish_start(n, mem, pool)
}

/// Sets up this thread as slot 0, starts slot threads 1..n and waits until each has set
/// itself up.
fn start_threads(n: u32) {
    if let Err(e) = thread_setup(ucpu(0)) {
        fail(Step::ThreadSetup, e);
    }
    for i in 1..n {
        let area = USER_AREAS_BASE + u64::from(i) * AREA_SIZE;
        // SAFETY: thread-only clone onto this slot's start stack, which nothing else uses.
        let r = unsafe {
            pvmux_user_clone(
                u64::from(SLOT_THREAD_FLAGS),
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
}

/// The end of a user sandbox's start-up, with its threads started and the base (or
/// template) filter in force: waits for the context region (a spare waits here until
/// `SpaceCreate` assigns it one), maps and checks it and the grant page, installs the lock
/// filter on every thread, releases the threads and enters the handler loop.
fn finish_start(n: u32, mem: u64, pool: u64) -> ! {
    let h = header();
    let params = user_filter_params(mem, pool);
    let mut prog = [SockFilter::default(); MAX_FILTER_LEN];
    let len = match build_user_lock_filter(&params.common, &mut prog) {
        Ok(l) => l,
        Err(_) => fail(Step::Filter, EINVAL),
    };
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
            CTX_MAP_PROT, // the exact call the base filter lets through
            CTX_MAP_FLAGS,
            GUEST_MEM_FD,
            ctx,
        )
    } {
        fail(Step::MapControl, e);
    }
    // SAFETY: the region is mapped; plain, aligned fields of its header, read once.
    let (magic, version, slots): (u64, u32, u32) = unsafe {
        (
            ctx_read(offset_of!(UserCtxHeader, magic)),
            ctx_read(offset_of!(UserCtxHeader, abi_version)),
            ctx_read(offset_of!(UserCtxHeader, nr_slots)),
        )
    };
    if magic != USER_CTX_MAGIC || version != ABI_VERSION || slots != n {
        fail(Step::BadUserCtx, EINVAL);
    }
    map_grant_page(pool);
    if let Err(e) = install_filter(&prog[..len]) {
        fail(Step::Seccomp, e);
    }
    // From here on the filter is in force for every thread: release them.
    GO.store(1, Release);
    sys::futex_wake(&GO, i32::MAX as u32);
    h.stub_status.store(status::READY, Release);
    sys::futex_wake(&h.stub_status, i32::MAX as u32);
    ctx_ready().store(1, Release);
    enter()
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

/// Maps the space's grant page (`pvmux_hypercalls::user::grant`; guest-kernel memory below
/// the user pool, validated by the host and again here) read-only at `USER_GRANT_BASE`,
/// before the filter: the filter lets nothing map, unmap or re-protect anything outside the
/// user window afterwards, so user code can read the page but never write it.
fn map_grant_page(pool: u64) {
    // SAFETY: an 8-aligned word of the control header, mapped for the life of the process,
    // written by the host before `user_ctx_len` (which was read with Acquire).
    let gpa = unsafe { &*(addr_of!(header().user_grant_gpa) as *const AtomicU64) }.load(Acquire);
    if gpa == 0
        || !gpa.is_multiple_of(PAGE_SIZE)
        || gpa.checked_add(PAGE_SIZE).is_none_or(|e| e > pool)
    {
        fail(Step::BadHeader, EINVAL);
    }
    // SAFETY: USER_GRANT_BASE is reserved for the grant page (between the context region
    // and the per-slot areas); NOREPLACE.
    if let Err(e) = unsafe {
        sys::mmap(
            USER_GRANT_BASE,
            PAGE_SIZE,
            GRANT_MAP_PROT, // read-only; the exact call the base filter lets through
            CTX_MAP_FLAGS,
            GUEST_MEM_FD,
            gpa,
        )
    } {
        fail(Step::MapControl, e);
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
    enter()
}

/// Enters this thread's handler with a breakpoint trap (`SIGTRAP`, `si_code` `SI_KERNEL`,
/// from stub code): the handler never returns here (it returns into user code), so this is
/// where the thread starts living in its handler. A trap rather than a signal sent or a timer
/// fired at once: the user policy has no call that signals a process, and a one-nanosecond
/// timer cost ~18 µs of CPU (a host timer interrupt in a nested VM) against ~2.3 µs for the
/// trap (docs/BENCHMARKS.md).
fn enter() -> ! {
    // SAFETY: `int3` only raises SIGTRAP for this thread, whose handler is installed.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
    // The handler returns into user code, never here.
    sys::exit_group(STUB_EXIT_SETUP)
}

/// Per-thread set-up before the filter: signal stack, tid, slice timer.
fn thread_setup(c: &UserCpu) -> Result<(), u32> {
    let area = c as *const UserCpu as u64;
    set_altstack(area + AREA_ALTSTACK, ALTSTACK_SIZE)?;
    let tid = sys::gettid();
    c.tid.store(tid, Relaxed);
    c.timer_id.store(thread_timer(tid, 0)?, Relaxed);
    super::patch::thread_setup(c)
}
