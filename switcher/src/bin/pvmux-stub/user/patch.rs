//! The patch entry: how a guest program's *patched* system-call site enters the guest kernel
//! without a signal (`pvmux_hypercalls::user::patch`, docs/ARCHITECTURE.md "Syscall-site
//! patching").
//!
//! A patched site jumps through its cell of the space's patch table to [`USER_PATCH_ENTRY`], a
//! page this stub maps at start-up (read and execute, outside the user window, where the
//! filter lets the program map, unmap or re-protect nothing) holding `jmp *[rip + 2]` to
//! `pvmux_patch_entry` (its target quad aligned: `entry_jump`). The entry arrives on the program's stack with `rax` = the call's
//! number and `rcx` = the address after the site; it never touches that stack (the red zone
//! below `rsp` belongs to the program). It stores the user registers, flags and `rsp` through
//! GS (each slot thread's GS base is its area, set before the filter; guest programs have no
//! way to set GS: the guest kernel ignores `ARCH_SET_GS`) into the slot's
//! `UserCpu::tramp` words — the layout of a signal frame's sigcontext, so the handler's code
//! records and loads them — `xsave`s the FPU state into the area's buffer, switches to the
//! area's entry stack and calls [`on_patched_syscall`]: the same hand-off as the `SIGSYS`
//! handler (record, publish, serve), with `exit_addr` = `SYSCALL_FROM_ENTRY`. Then it
//! `xrstor`s and loads whatever state the kernel sent (usually the same registers with `rax`
//! the result, `rcx` the return address and `r11` the flags, as `syscall` leaves them) and
//! jumps to its `rip`.
//!
//! Signals are not blocked meanwhile (blocking them would cost two system calls). The handler
//! ([`super::handler`]) recognises a signal that interrupted the entry ([`interrupted`]): in
//! the epilogue (`pvmux_patch_exit`..`pvmux_patch_end`) the save area already holds the
//! complete state user code is to resume with, so the handler *finishes* the return there (the
//! frame gets that state) and reports the signal as if it had hit the first user instruction;
//! anywhere before, a slice-timer signal is held back (`tick_pending`) and reported as an
//! interrupt exit once the call's reply is loaded, before user code runs; any other signal
//! there is a stub crash. A program that jumps to the entry itself, with any registers, only
//! makes a system call of its own (its number in `rax`) that returns to its `rcx`.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::Ordering::Relaxed;

use pvmux_hypercalls::user::handoff::UserTrap;
use pvmux_hypercalls::user::patch::{entry_jump, SYSCALL_FROM_ENTRY, USER_PATCH_ENTRY};
use pvmux_hypercalls::user::UserExit;
use pvmux_hypercalls::{Vector, PAGE_SIZE};

use super::cpu::{ucpu_from_stack, UserCpu, AREA_TRAMP_FP, AREA_TRAMP_STACK_TOP};
use super::handler::record;
use super::rdtsc;
use super::request::{serve, side};
use super::slot::{Futex, Slot};
use crate::sigctx::*;
use crate::start::{MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_RW};
use crate::sys;

const TRAMP: usize = offset_of!(UserCpu, tramp);

global_asm!(
    ".globl pvmux_patch_entry",
    "pvmux_patch_entry:",
    // No flag, no register but rsp changes before the flags are stored.
    "mov qword ptr gs:[{rsp}], rsp",
    "mov rsp, qword ptr gs:[{stack}]",
    "pushfq",
    "mov qword ptr gs:[{rax}], rax",
    "pop rax",
    "mov qword ptr gs:[{eflags}], rax",
    "mov qword ptr gs:[{r11}], rax", // `syscall` leaves the flags in r11
    "push 2",
    "popfq", // AC, DF, TF clear for stub code
    "mov qword ptr gs:[{rcx}], rcx",
    "mov qword ptr gs:[{rip}], rcx", // the address after the site
    "mov qword ptr gs:[{rbx}], rbx",
    "mov qword ptr gs:[{rdx}], rdx",
    "mov qword ptr gs:[{rsi}], rsi",
    "mov qword ptr gs:[{rdi}], rdi",
    "mov qword ptr gs:[{rbp}], rbp",
    "mov qword ptr gs:[{r8}], r8",
    "mov qword ptr gs:[{r9}], r9",
    "mov qword ptr gs:[{r10}], r10",
    "mov qword ptr gs:[{r12}], r12",
    "mov qword ptr gs:[{r13}], r13",
    "mov qword ptr gs:[{r14}], r14",
    "mov qword ptr gs:[{r15}], r15",
    "mov rdi, qword ptr gs:[{fpbuf}]",
    "mov qword ptr gs:[{fpstate}], rdi",
    "mov eax, dword ptr [rip + {xfeatures}]",
    "mov edx, dword ptr [rip + {xfeatures} + 4]",
    "cmp dword ptr [rip + {xsave_size}], 0",
    "je 1f",
    "xsave64 [rdi]",
    "jmp 2f",
    "1:",
    "fxsave64 [rdi]",
    "2:",
    "mov dword ptr gs:[{in_tramp}], 1",
    "call {body}",
    ".globl pvmux_patch_exit",
    "pvmux_patch_exit:",
    // From here on the save area holds the whole state to resume (see `interrupted`).
    "mov rdi, qword ptr gs:[{fpbuf}]",
    "mov eax, dword ptr [rip + {xfeatures}]",
    "mov edx, dword ptr [rip + {xfeatures} + 4]",
    "cmp dword ptr [rip + {xsave_size}], 0",
    "je 1f",
    "xrstor64 [rdi]",
    "jmp 2f",
    "1:",
    "fxrstor64 [rdi]",
    "2:",
    "mov dword ptr gs:[{in_tramp}], 0",
    "mov rax, qword ptr gs:[{rax}]",
    "mov rbx, qword ptr gs:[{rbx}]",
    "mov rcx, qword ptr gs:[{rcx}]",
    "mov rdx, qword ptr gs:[{rdx}]",
    "mov rsi, qword ptr gs:[{rsi}]",
    "mov rdi, qword ptr gs:[{rdi}]",
    "mov rbp, qword ptr gs:[{rbp}]",
    "mov r8, qword ptr gs:[{r8}]",
    "mov r9, qword ptr gs:[{r9}]",
    "mov r10, qword ptr gs:[{r10}]",
    "mov r11, qword ptr gs:[{r11}]",
    "mov r12, qword ptr gs:[{r12}]",
    "mov r13, qword ptr gs:[{r13}]",
    "mov r14, qword ptr gs:[{r14}]",
    "mov r15, qword ptr gs:[{r15}]",
    "push qword ptr gs:[{eflags}]",
    "popfq",
    "mov rsp, qword ptr gs:[{rsp}]",
    "jmp qword ptr gs:[{rip}]",
    ".globl pvmux_patch_end",
    "pvmux_patch_end:",
    "ud2",
    rsp = const TRAMP + 8 * RSP,
    rax = const TRAMP + 8 * RAX,
    rbx = const TRAMP + 8 * RBX,
    rcx = const TRAMP + 8 * RCX,
    rdx = const TRAMP + 8 * RDX,
    rsi = const TRAMP + 8 * RSI,
    rdi = const TRAMP + 8 * RDI,
    rbp = const TRAMP + 8 * RBP,
    r8 = const TRAMP + 8 * R8,
    r9 = const TRAMP + 8 * R9,
    r10 = const TRAMP + 8 * R10,
    r11 = const TRAMP + 8 * R11,
    r12 = const TRAMP + 8 * R12,
    r13 = const TRAMP + 8 * R13,
    r14 = const TRAMP + 8 * R14,
    r15 = const TRAMP + 8 * R15,
    rip = const TRAMP + 8 * RIP,
    eflags = const TRAMP + 8 * EFLAGS,
    fpstate = const TRAMP + 8 * FPSTATE,
    stack = const offset_of!(UserCpu, tramp_stack),
    fpbuf = const offset_of!(UserCpu, tramp_fp),
    in_tramp = const offset_of!(UserCpu, in_tramp),
    xsave_size = sym XSAVE_SIZE,
    xfeatures = sym XFEATURES,
    body = sym on_patched_syscall,
);

extern "sysv64" {
    fn pvmux_patch_entry();
    fn pvmux_patch_exit();
    fn pvmux_patch_end();
}

/// Bytes of the entry's XSAVE image of [`XFEATURES`] (standard format: the end of the
/// highest component); 0: no XSAVE, the entry uses `fxsave` (512 bytes). Written once at
/// start-up.
static XSAVE_SIZE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// The features the entry saves and restores (its `xsave`/`xrstor` mask, and the image's
/// `xfeatures` software word): the host's signal-frame features
/// ([`crate::xsave::signal_frame_features`]; with the AMX tile data the image would not fit
/// a slot).
static XFEATURES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The signal frame's software bytes (`struct _fpx_sw_bytes` at 464) and magic2 the handler's
/// FPU code checks ([`super::fpu`]).
const FX_SW: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;

/// Start-up (before the filter): finds the XSAVE size, maps the entry page at
/// [`USER_PATCH_ENTRY`] (a `jmp *[rip + 2]` to `pvmux_patch_entry`, then read and execute).
pub(super) fn setup() -> Result<(), u32> {
    if let Some((mask, size)) = crate::xsave::signal_frame_features() {
        let fits = u64::from(size) + 4 <= super::cpu::TRAMP_FP_SIZE
            && size as usize <= pvmux_hypercalls::user::USER_FPSTATE_MAX;
        if fits {
            XSAVE_SIZE.store(size, Relaxed);
            XFEATURES.store(mask, Relaxed);
        }
    }
    // SAFETY: a fresh private anonymous page at the address reserved for it; NOREPLACE.
    unsafe {
        sys::mmap(
            USER_PATCH_ENTRY,
            PAGE_SIZE,
            PROT_RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )?;
        let p = USER_PATCH_ENTRY as *mut u8;
        // jmp qword ptr [rip + 2]; .quad pvmux_patch_entry (aligned: see `entry_jump`)
        let code = entry_jump(pvmux_patch_entry as *const () as u64);
        for (i, b) in code.into_iter().enumerate() {
            p.add(i).write(b);
        }
        sys::mprotect(USER_PATCH_ENTRY, PAGE_SIZE, 1 | 4)?;
    }
    Ok(())
}

/// Per-thread set-up (before the filter): GS base = the area, the entry's stack and buffer.
pub(super) fn thread_setup(c: &UserCpu) -> Result<(), u32> {
    let area = c as *const UserCpu as u64;
    c.tramp_stack.store(area + AREA_TRAMP_STACK_TOP, Relaxed);
    c.tramp_fp.store(area + AREA_TRAMP_FP, Relaxed);
    sys::set_gs(area)
}

/// Whether `rip` lies in the entry's own code.
fn in_entry(rip: u64) -> bool {
    (pvmux_patch_entry as *const () as u64..pvmux_patch_end as *const () as u64).contains(&rip)
}

/// Whether `rip` lies in the epilogue (the save area is the state to resume).
fn in_epilogue(rip: u64) -> bool {
    (pvmux_patch_exit as *const () as u64..pvmux_patch_end as *const () as u64).contains(&rip)
}

/// What the handler does with a signal that hit stub code.
pub(super) enum Interrupted {
    /// Not the entry's: a stub crash.
    No,
    /// Held back: return to the interrupted entry at once.
    Resume,
    /// The epilogue was cut short: `g` now holds the state it was returning to (its FPU image
    /// copied into the frame); handle the signal as one from user code.
    Finished,
}

/// Classifies signal `sig` that interrupted stub code at `g[RIP]` on slot thread `c`.
pub(super) fn interrupted(c: &UserCpu, sig: i32, g: &mut [u64; 32]) -> Interrupted {
    let rip = g[RIP];
    if !in_entry(rip) && c.in_tramp.load(Relaxed) == 0 {
        return Interrupted::No;
    }
    if sig != crate::state::SIG_EVENT as i32 {
        return Interrupted::No;
    }
    if !in_epilogue(rip) {
        c.tick_pending.store(1, Relaxed);
        return Interrupted::Resume;
    }
    let saved = tramp_read(c);
    for i in [
        R8, R9, R10, R11, R12, R13, R14, R15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP, RIP,
    ] {
        g[i] = saved[i];
    }
    g[EFLAGS] = saved[EFLAGS];
    let size = match XSAVE_SIZE.load(Relaxed) {
        0 => 512,
        s => s as usize,
    };
    super::fpu::load_fpu_from(c.tramp_fp.load(Relaxed) as *const u8, g, size);
    c.in_tramp.store(0, Relaxed);
    Interrupted::Finished
}

/// Copies the save area in (volatile: the program can write it).
fn tramp_read(c: &UserCpu) -> [u64; 32] {
    let mut w = [0u64; 32];
    for (i, v) in w.iter_mut().enumerate() {
        *v = c.tramp[i].load(Relaxed);
    }
    w
}

/// Writes the software bytes of a signal frame's FP area into the entry's buffer, so the
/// handler's FPU code ([`super::fpu`]) takes it for one.
fn mark_fp_buffer(buf: u64) {
    let size = XSAVE_SIZE.load(Relaxed);
    if size == 0 {
        return;
    }
    let p = buf as *mut u8;
    // SAFETY: the buffer lies in this thread's area (TRAMP_FP_SIZE bytes, at least size + 4,
    // checked in `setup`); the software bytes (464..512) are not written by XSAVE.
    unsafe {
        (p.add(FX_SW) as *mut u32).write(FP_XSTATE_MAGIC1);
        (p.add(FX_SW + 4) as *mut u32).write(size + 4);
        (p.add(FX_SW + 8) as *mut u64).write(XFEATURES.load(Relaxed));
        (p.add(FX_SW + 16) as *mut u32).write(size);
        (p.add(size as usize) as *mut u32).write_unaligned(FP_XSTATE_MAGIC2);
    }
}

/// The entry's body, on the area's entry stack: hands the call to the guest kernel (the
/// handler's record, publish, serve) and leaves the state to resume in the save area.
extern "sysv64" fn on_patched_syscall() {
    let c = ucpu_from_stack();
    let slot = Slot::get(c.slot.load(Relaxed));
    let mut words = tramp_read(c);
    let g = &mut words;
    g[FPSTATE] = c.tramp_fp.load(Relaxed);
    mark_fp_buffer(g[FPSTATE]);
    // Loads and stores, no `xchg`: only this thread writes these words, and a signal that
    // comes meanwhile (in the entry) leaves them alone but for setting `tick_pending`.
    let since = c.user_since.load(Relaxed);
    if since != 0 {
        c.user_since.store(0, Relaxed);
        side(&slot).add_user_ticks(rdtsc().saturating_sub(since));
    }
    let trap = UserTrap {
        reason: UserExit::Syscall,
        vector: Vector::Syscall as u32,
        error_code: g[RAX],
        addr: SYSCALL_FROM_ENTRY,
    };
    record(c, slot, g, &trap);
    side(&slot).publish(&Futex, c.cur_seq.load(Relaxed), trap.reason);
    loop {
        serve(c, slot, g, core::ptr::null_mut());
        if c.tick_pending.load(Relaxed) == 0 {
            break;
        }
        // (A tick that comes between the load and this store merges with this one.)
        c.tick_pending.store(0, Relaxed);
        // A slice-timer signal came while the call was in here: report it now, as the
        // handler would have had it hit the first user instruction.
        c.user_since.store(0, Relaxed);
        let tick = UserTrap {
            reason: UserExit::Interrupt,
            vector: Vector::Event as u32,
            error_code: 0,
            addr: 0,
        };
        record(c, slot, g, &tick);
        side(&slot).publish(&Futex, c.cur_seq.load(Relaxed), tick.reason);
    }
    for (i, v) in words.iter().enumerate() {
        c.tramp[i].store(*v, Relaxed);
    }
}
