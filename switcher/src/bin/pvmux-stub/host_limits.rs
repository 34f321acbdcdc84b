//! Host memory the sandbox may take, set by the stub itself before its filter goes on (the
//! filter has neither `prlimit64`/`setrlimit` nor `prctl`, so nothing a guest runs can undo it):
//!
//! * **No core dumps**: `RLIMIT_CORE` 0 (soft and hard) and `PR_SET_DUMPABLE` 0, first thing,
//!   so a sandbox killed by `SIGSYS`, `SIGXCPU` or any other core signal never writes guest
//!   memory to the host's disk (and a non-dumpable process is not dumped through a pipe
//!   `core_pattern` either).
//! * **No growable stack**: the host kernel starts the process on a `[stack]` mapping that
//!   grows on demand up to `RLIMIT_STACK`. The stub copies what it needs from it (the
//!   auxiliary vector), moves to a stack inside its own areas (mapped without
//!   `MAP_GROWSDOWN`, see [`switch_stack`]) and unmaps the original ([`release_initial_stack`];
//!   the argument strings, at most two pages, are put back in a fixed private mapping so
//!   `/proc/PID/cmdline` still names the sandbox).
//! * **A bounded address space**: `RLIMIT_AS` from `pvmux_switcher::host_memory` (what the
//!   sandbox legitimately maps plus its mapping budget), which bounds the host page tables
//!   the process can build. Mappings past it fail with `ENOMEM`, which the stub handles like
//!   the VMA budget: evict and retry.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pvmux_hypercalls::PAGE_SIZE;
use pvmux_switcher::host_memory::largest_fitting;

use crate::sys::{self, syscall6};

const NR_PRCTL: usize = 157;
const NR_PRLIMIT64: usize = 302;
const PR_SET_DUMPABLE: usize = 4;
const RLIMIT_CORE: usize = 4;
const RLIMIT_AS: usize = 9;
const ENOMEM: u32 = 12;
/// Most pages of the initial stack the stub looks at below its first stack pointer (the
/// host kernel gives it ~132 KiB plus the argument strings; the stub uses a few KiB).
const MAX_STACK_SCAN_PAGES: u64 = 4096;

/// The original `[stack]` mapping, `[lo, hi)`, recorded by [`record_initial_stack`].
static STACK_LO: AtomicU64 = AtomicU64::new(0);
static STACK_HI: AtomicU64 = AtomicU64::new(0);
/// The page holding `argv[0]`: from there to `STACK_HI` the strings are kept (see
/// [`release_initial_stack`]).
static ARGS_PAGE: AtomicU64 = AtomicU64::new(0);
/// Most bytes of argument strings kept.
const ARGS_KEEP_MAX: u64 = 2 * PAGE_SIZE;

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

/// Sets resource `res` of this process to `want` (soft and hard), never above the hard
/// limit it already has (lowering needs no privilege).
fn limit(res: usize, want: u64) -> Result<(), u32> {
    let mut old = Rlimit { cur: 0, max: 0 };
    // SAFETY: prlimit64(0 = self, res, NULL, &old): the kernel writes one rlimit to `old`.
    sys::check(unsafe {
        syscall6(
            NR_PRLIMIT64,
            [0, res, 0, &mut old as *mut Rlimit as usize, 0, 0],
        )
    })?;
    let v = want.min(old.max);
    let new = Rlimit { cur: v, max: v };
    // SAFETY: prlimit64(0 = self, res, &new, NULL): reads one rlimit.
    sys::check(unsafe {
        syscall6(
            NR_PRLIMIT64,
            [0, res, &new as *const Rlimit as usize, 0, 0, 0],
        )
    })
    .map(|_| ())
}

/// `RLIMIT_CORE` 0/0 and `PR_SET_DUMPABLE` 0: the sandbox never dumps core.
pub(crate) fn no_core_dumps() -> Result<(), u32> {
    limit(RLIMIT_CORE, 0)?;
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) has no memory effects.
    sys::check(unsafe { syscall6(NR_PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0, 0]) }).map(|_| ())
}

/// `RLIMIT_AS` = `bytes` (soft and hard).
pub(crate) fn limit_address_space(bytes: u64) -> Result<(), u32> {
    limit(RLIMIT_AS, bytes)
}

/// Whether the page at `page` is mapped (`mincore` fails with `ENOMEM` on a hole).
fn mapped(page: u64) -> bool {
    let mut vec = [0u8; 1];
    sys::all_mapped(page, &mut vec)
}

/// Whether all of the `n` pages (at most [`MAX_STACK_SCAN_PAGES`]) from `page` on are mapped.
/// Takes 4 KiB of stack: for the initial stack's scan only.
fn pages_mapped(page: u64, n: u64) -> bool {
    let mut vec = [0u8; MAX_STACK_SCAN_PAGES as usize];
    match usize::try_from(n) {
        Ok(0) => true,
        Ok(n) if n <= vec.len() => sys::all_mapped(page, &mut vec[..n]),
        _ => false,
    }
}

/// Records the initial `[stack]` mapping: its top is the page after the executable's name
/// (`AT_EXECFN`), which the host kernel copies to the very top, followed only by an 8-byte
/// end marker; its bottom is the first hole below the stack pointer. Runs on that stack.
///
/// # Safety
/// `execfn` must be `AT_EXECFN` of this process (a NUL-terminated string on the stack) and
/// `sp` a stack pointer on the initial stack.
pub(crate) unsafe fn record_initial_stack(sp: u64, execfn: u64) -> Result<(), u32> {
    let mut end = execfn;
    // SAFETY: per the contract, a NUL-terminated string on the (mapped) initial stack.
    while unsafe { (end as *const u8).read_volatile() } != 0 {
        end += 1;
    }
    let hi = (end + 1 + 8).next_multiple_of(PAGE_SIZE);
    let sp_page = sp & !(PAGE_SIZE - 1);
    // The pages right below the stack pointer's that are mapped (a range `mincore` per step:
    // about a dozen calls for the ~33 pages of an initial stack, not one per page).
    let n = largest_fitting(MAX_STACK_SCAN_PAGES, |n| {
        n < sp_page / PAGE_SIZE && pages_mapped(sp_page - n * PAGE_SIZE, n)
    });
    let lo = sp_page - n * PAGE_SIZE;
    if sp < lo || sp >= hi || !mapped(hi - PAGE_SIZE) || n == MAX_STACK_SCAN_PAGES {
        return Err(ENOMEM);
    }
    STACK_LO.store(lo, Relaxed);
    STACK_HI.store(hi, Relaxed);
    // SAFETY: `sp` points at argc, followed by the argv pointers (mapped, per the contract).
    let (argc, argv0) = unsafe { ((sp as *const u64).read(), ((sp + 8) as *const u64).read()) };
    let page = argv0 & !(PAGE_SIZE - 1);
    if argc > 0 && page >= lo && page < hi && hi - page <= ARGS_KEEP_MAX {
        ARGS_PAGE.store(page, Relaxed);
    }
    Ok(())
}

/// Unmaps the initial `[stack]` (call only after [`switch_stack`] left it); checks that
/// nothing is left of it.
pub(crate) fn release_initial_stack() -> Result<(), u32> {
    let (lo, hi) = (STACK_LO.load(Relaxed), STACK_HI.load(Relaxed));
    if lo == 0 || hi <= lo {
        return Err(ENOMEM);
    }
    // The argument strings stay readable (`/proc/PID/cmdline`, `ps`: the host names its
    // sandboxes by `argv[0]`): copied out, and back into a fixed-size private mapping at the
    // same place after the stack is gone.
    let args = ARGS_PAGE.load(Relaxed);
    let mut keep = [0u8; ARGS_KEEP_MAX as usize];
    let keep_len = if args != 0 { hi - args } else { 0 };
    // SAFETY: `[args, hi)` lies in the mapped initial stack (checked when recorded) and fits
    // `keep`; nothing writes it concurrently (no other thread exists yet).
    unsafe { crate::mem::memcpy(keep.as_mut_ptr(), args as *const u8, keep_len as usize) };
    // SAFETY: the range is the initial stack, which nothing uses any more: the stub runs on
    // its own stack and copied what it needed (the auxiliary vector's values) beforehand.
    unsafe { sys::munmap(lo, hi - lo) }?;
    if mapped(lo) || mapped(hi - PAGE_SIZE) {
        return Err(ENOMEM);
    }
    if keep_len != 0 {
        use crate::start::{MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_RW};
        // SAFETY: a fresh private mapping where the stack was (now a hole), without
        // MAP_GROWSDOWN; the strings are copied back into it.
        unsafe {
            sys::mmap(
                args,
                keep_len,
                PROT_RW,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                -1,
                0,
            )?;
            crate::mem::memcpy(args as *mut u8, keep.as_ptr(), keep_len as usize);
        }
    }
    Ok(())
}

global_asm!(
    // switch_stack(top, f, a, b, c): continue in f(a, b, c) on the stack ending at `top`.
    ".globl pvmux_stub_switch_stack",
    "pvmux_stub_switch_stack:",
    "mov rsp, rdi",
    "and rsp, -16",
    "mov rax, rsi",
    "mov rdi, rdx",
    "mov rsi, rcx",
    "mov rdx, r8",
    "xor ebp, ebp",
    "call rax",
    "ud2",
);

/// A start-up continuation running on the stub's own stack; it never returns.
pub(crate) type Continuation = extern "sysv64" fn(u64, u64, u64) -> !;

extern "sysv64" {
    fn pvmux_stub_switch_stack(top: u64, f: Continuation, a: u64, b: u64, c: u64) -> !;
}

/// Leaves the initial stack: continues in `f(a, b, c)` on the stack ending at `top` (inside
/// one of the stub's areas). Nothing on the old stack may be used afterwards.
///
/// # Safety
/// `[top - 16 KiB, top)` must be mapped, writable memory no one else uses while `f` runs.
pub(crate) unsafe fn switch_stack(top: u64, f: Continuation, a: u64, b: u64, c: u64) -> ! {
    // SAFETY: the caller guarantees the new stack; `f` never returns.
    unsafe { pvmux_stub_switch_stack(top, f, a, b, c) }
}
