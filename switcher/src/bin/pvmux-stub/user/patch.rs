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
//! records and loads them — saves the only FPU state stub code changes, `MXCSR` and
//! `xmm0`-`xmm15` (`fpu::SSE_PARTS`), at their places in the area's XSAVE buffer, switches to
//! the area's entry stack and calls [`on_patched_syscall`]: the same hand-off as the `SIGSYS`
//! handler (record, publish, serve), with `exit_addr` = `SYSCALL_FROM_ENTRY`. The rest of the
//! FPU state stays in the registers: the thread's whole image is written into the slot
//! *after* the report, while the kernel serves the call (`UserSlot::fp_pending` tells the
//! kernel when it is there), so no XSAVE or XRSTOR lies on the call's path. Then it puts
//! back `MXCSR` and `xmm0`-`xmm15` — or, when the kernel sent an FPU state, `xrstor`s the
//! whole buffer (`UserCpu::tramp_full`) — loads whatever registers the kernel sent (usually
//! the same with `rax` the result, `rcx` the return address and `r11` the flags, as `syscall`
//! leaves them) and jumps to its `rip`.
//!
//! Signals are not blocked meanwhile (blocking them would cost two system calls). The handler
//! ([`super::handler`]) recognises a signal that interrupted the entry ([`interrupted`]): in
//! the epilogue (`pvmux_patch_exit`..`pvmux_patch_end`) the save area already holds the
//! complete state user code is to resume with (with the FPU registers the signal frame holds),
//! so the handler *finishes* the return there (the frame gets that state) and reports the
//! signal as if it had hit the first user instruction;
//! anywhere before, a slice-timer signal is held back (`tick_pending`) and reported as an
//! interrupt exit once the call's reply is loaded, before user code runs; any other signal
//! there is a stub crash. A program that jumps to the entry itself, with any registers, only
//! makes a system call of its own (its number in `rax`) that returns to its `rcx`.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::Ordering::Relaxed;

use pvmux_hypercalls::user::handoff::UserTrap;
use pvmux_hypercalls::user::patch::{entry_jump, SYSCALL_FROM_ENTRY, USER_PATCH_ENTRY};
use pvmux_hypercalls::user::{
    UserExit, UserSlot, USER_FPSTATE_MAX, USER_SLOT_OFFSET, USER_SLOT_SIZE,
};
use pvmux_hypercalls::{Vector, PAGE_SIZE};

use super::cpu::{ucpu_from_stack, UserCpu, AREA_TRAMP_FP, AREA_TRAMP_STACK_TOP};
use super::handler::{record, record_regs};
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
    // Only the FPU state stub code changes (`fpu::SSE_PARTS`), at its place in an image;
    // the rest stays in the registers.
    "stmxcsr dword ptr [rdi + 24]",
    "movdqa xmmword ptr [rdi + 160], xmm0",
    "movdqa xmmword ptr [rdi + 176], xmm1",
    "movdqa xmmword ptr [rdi + 192], xmm2",
    "movdqa xmmword ptr [rdi + 208], xmm3",
    "movdqa xmmword ptr [rdi + 224], xmm4",
    "movdqa xmmword ptr [rdi + 240], xmm5",
    "movdqa xmmword ptr [rdi + 256], xmm6",
    "movdqa xmmword ptr [rdi + 272], xmm7",
    "movdqa xmmword ptr [rdi + 288], xmm8",
    "movdqa xmmword ptr [rdi + 304], xmm9",
    "movdqa xmmword ptr [rdi + 320], xmm10",
    "movdqa xmmword ptr [rdi + 336], xmm11",
    "movdqa xmmword ptr [rdi + 352], xmm12",
    "movdqa xmmword ptr [rdi + 368], xmm13",
    "movdqa xmmword ptr [rdi + 384], xmm14",
    "movdqa xmmword ptr [rdi + 400], xmm15",
    "mov dword ptr gs:[{in_tramp}], 1",
    "call {body}",
    ".globl pvmux_patch_exit",
    "pvmux_patch_exit:",
    // From here on the save area holds the whole state to resume (see `interrupted`).
    "mov rdi, qword ptr gs:[{fpbuf}]",
    "cmp dword ptr gs:[{full}], 0",
    "je 3f",
    // The kernel sent an image (or reset the state): load it whole.
    "mov eax, dword ptr [rip + {xfeatures}]",
    "mov edx, dword ptr [rip + {xfeatures} + 4]",
    "cmp dword ptr [rip + {xsave_size}], 0",
    "je 1f",
    "xrstor64 [rdi]",
    "jmp 2f",
    "1:",
    "fxrstor64 [rdi]",
    "2:",
    "mov dword ptr gs:[{full}], 0",
    "jmp 4f",
    "3:",
    // The state stayed in the registers: put back what stub code changed.
    "ldmxcsr dword ptr [rdi + 24]",
    "movdqa xmm0, xmmword ptr [rdi + 160]",
    "movdqa xmm1, xmmword ptr [rdi + 176]",
    "movdqa xmm2, xmmword ptr [rdi + 192]",
    "movdqa xmm3, xmmword ptr [rdi + 208]",
    "movdqa xmm4, xmmword ptr [rdi + 224]",
    "movdqa xmm5, xmmword ptr [rdi + 240]",
    "movdqa xmm6, xmmword ptr [rdi + 256]",
    "movdqa xmm7, xmmword ptr [rdi + 272]",
    "movdqa xmm8, xmmword ptr [rdi + 288]",
    "movdqa xmm9, xmmword ptr [rdi + 304]",
    "movdqa xmm10, xmmword ptr [rdi + 320]",
    "movdqa xmm11, xmmword ptr [rdi + 336]",
    "movdqa xmm12, xmmword ptr [rdi + 352]",
    "movdqa xmm13, xmmword ptr [rdi + 368]",
    "movdqa xmm14, xmmword ptr [rdi + 384]",
    "movdqa xmm15, xmmword ptr [rdi + 400]",
    "4:",
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
    full = const offset_of!(UserCpu, tramp_full),
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

// The entry's asm saves and loads `fpu::SSE_PARTS` at these offsets.
const _: () = assert!(
    super::fpu::SSE_PARTS[0].0 == 24
        && super::fpu::SSE_PARTS[0].1 == 4
        && super::fpu::SSE_PARTS[1].0 == 160
        && super::fpu::SSE_PARTS[1].1 == 16 * 16
);

// The exit's image is saved straight into the slot: XSAVE needs 64-byte alignment.
const _: () = assert!(
    USER_SLOT_OFFSET.is_multiple_of(64)
        && USER_SLOT_SIZE.is_multiple_of(64)
        && offset_of!(UserSlot, fpstate).is_multiple_of(64)
);

/// Start-up (before the filter): finds the XSAVE size, maps the entry page at
/// [`USER_PATCH_ENTRY`] (a `jmp *[rip + 2]` to `pvmux_patch_entry`, then read and execute).
pub(super) fn setup() -> Result<(), u32> {
    if let Some((mask, size)) = crate::xsave::signal_frame_features() {
        let fits =
            u64::from(size) + 4 <= super::cpu::TRAMP_FP_SIZE && size as usize <= USER_FPSTATE_MAX;
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

/// Per-thread set-up (before the filter): GS base = the area, the entry's stack and buffer
/// (given a signal frame's software bytes once: nothing writes them later).
pub(super) fn thread_setup(c: &UserCpu) -> Result<(), u32> {
    let area = c as *const UserCpu as u64;
    c.tramp_stack.store(area + AREA_TRAMP_STACK_TOP, Relaxed);
    c.tramp_fp.store(area + AREA_TRAMP_FP, Relaxed);
    mark_fp_buffer(area + AREA_TRAMP_FP);
    sys::set_gs(area)
}

/// Bytes of the images the entry saves: the XSAVE size, or 512 (FXSAVE).
fn image_len() -> u32 {
    match XSAVE_SIZE.load(Relaxed) {
        0 => 512,
        s => s,
    }
}

/// Saves the FPU registers as they are into the image at `dst` (XSAVE of [`XFEATURES`], or
/// FXSAVE).
///
/// # Safety
/// `dst` is 64-byte aligned and valid for [`image_len`] bytes.
unsafe fn save_registers(dst: *mut u8) {
    let features = XFEATURES.load(Relaxed);
    // SAFETY: the caller vouches for `dst`; XSAVE is used only where start-up found it
    // enabled (`XSAVE_SIZE` != 0), with the features it found.
    unsafe {
        if XSAVE_SIZE.load(Relaxed) != 0 {
            core::arch::asm!(
                "xsave64 [{p}]",
                p = in(reg) dst,
                in("eax") features as u32,
                in("edx") (features >> 32) as u32,
                options(nostack, preserves_flags),
            );
        } else {
            core::arch::asm!("fxsave64 [{p}]", p = in(reg) dst, options(nostack, preserves_flags));
        }
    }
}

/// After a patched call's report: writes the thread's FPU image into the slot, where the
/// kernel reads it if it needs it (after `KernelSlot::wait_fp`). The registers still
/// hold the thread's state but for what stub code changed (`fpu::SSE_PARTS`), which the
/// entry saved into its buffer.
fn write_image(c: &UserCpu, slot: Slot) {
    let dst = slot.fpstate();
    let buf = c.tramp_fp.load(Relaxed) as *const u8;
    // SAFETY: the slot's `fpstate` is 64-byte aligned (asserted above) and holds
    // USER_FPSTATE_MAX >= image_len() bytes (checked in `setup`); the buffer (512 bytes at
    // least, in this thread's area) is not the slot.
    unsafe {
        save_registers(dst);
        super::fpu::copy_sse(buf, dst, XSAVE_SIZE.load(Relaxed) != 0);
    }
    mark_sw_bytes(dst);
    side(&slot).fp_written();
}

/// Before the kernel's image of `len` bytes (or a reset) is loaded into the entry's buffer
/// for the way back ([`super::request`]): a shorter image leaves the rest of the state as it
/// is, so the buffer must first hold the whole current state, which is in the registers
/// unless the buffer already has it.
pub(super) fn prepare_full_load(c: &UserCpu, len: usize) {
    if c.tramp_full.load(Relaxed) != 0 || len >= image_len() as usize {
        return;
    }
    let buf = c.tramp_fp.load(Relaxed) as *mut u8;
    let mut sse = [0u8; 512];
    // SAFETY: the buffer is this thread's, 64-byte aligned, TRAMP_FP_SIZE >= image_len()
    // bytes; `sse` is a local copy of its first 512 bytes (what the entry saved).
    unsafe {
        core::ptr::copy_nonoverlapping(buf, sse.as_mut_ptr(), sse.len());
        save_registers(buf);
        super::fpu::copy_sse(sse.as_ptr(), buf, XSAVE_SIZE.load(Relaxed) != 0);
    }
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
    let buf = c.tramp_fp.load(Relaxed) as *const u8;
    if c.tramp_full.load(Relaxed) != 0 {
        // The buffer holds the whole state the epilogue loads (or has loaded).
        super::fpu::load_fpu_from(buf, g, image_len() as usize);
    } else {
        // The frame holds the thread's registers but for what stub code changed.
        super::fpu::load_sse_from(buf, g);
    }
    c.tramp_full.store(0, Relaxed);
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

/// Writes the software bytes of a signal frame's FP area (and its second magic word) into
/// the entry's buffer, so the handler's FPU code ([`super::fpu`]) takes it for one.
fn mark_fp_buffer(buf: u64) {
    let size = XSAVE_SIZE.load(Relaxed);
    if size == 0 {
        return;
    }
    let p = buf as *mut u8;
    mark_sw_bytes(p);
    // SAFETY: the buffer lies in this thread's area (TRAMP_FP_SIZE bytes, at least size + 4,
    // checked in `setup`).
    unsafe { (p.add(size as usize) as *mut u32).write_unaligned(FP_XSTATE_MAGIC2) };
}

/// Writes a signal frame's software bytes (464..512, which XSAVE does not write) into the
/// XSAVE image at `p`, as the host's own frames have them; nothing without XSAVE.
fn mark_sw_bytes(p: *mut u8) {
    let size = XSAVE_SIZE.load(Relaxed);
    if size == 0 {
        return;
    }
    // SAFETY: callers pass an image of at least 512 bytes (the entry's buffer or the slot's
    // `fpstate`).
    unsafe {
        (p.add(FX_SW) as *mut u32).write(FP_XSTATE_MAGIC1);
        (p.add(FX_SW + 4) as *mut u32).write(size + 4);
        (p.add(FX_SW + 8) as *mut u64).write(XFEATURES.load(Relaxed));
        (p.add(FX_SW + 16) as *mut u32).write(size);
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
    // The state is in the registers (and the entry's buffer) until a reply changes it.
    c.tramp_full.store(0, Relaxed);
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
    // The FPU image follows the report: the kernel rarely needs it, and writing it while
    // the kernel serves the call keeps the XSAVE off the call's path.
    record_regs(c, slot, g, &trap, image_len(), true);
    side(&slot).publish(&Futex, c.cur_seq.load(Relaxed), trap.reason);
    write_image(c, slot);
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
        if c.tramp_full.load(Relaxed) != 0 {
            // The kernel sent a state: the buffer holds all of it.
            record(c, slot, g, &tick);
        } else {
            // The state is the one whose image was written after the call's report.
            record_regs(c, slot, g, &tick, image_len(), false);
        }
        side(&slot).publish(&Futex, c.cur_seq.load(Relaxed), tick.reason);
    }
    for (i, v) in words.iter().enumerate() {
        c.tramp[i].store(*v, Relaxed);
    }
}
