//! The trusted in-process mode (`SandboxHeader::user_isolation == NONE`): the kernel sandbox
//! runs user code of one guest address space itself, on the vCPU thread that asks
//! (`pvmux_hypercalls::user::inproc`; docs/ARCHITECTURE.md, "Trusted in-process mode").
//!
//! * `inproc_ops` applies [`UserOp`]s to the kernel sandbox's own user mappings (the parts of
//!   the user window its layout leaves free, `INPROC_LOW` and `INPROC_HIGH`).
//! * `inproc_run` saves the kernel's callee-saved registers, stack pointer and FPU control
//!   words in the vCPU's [`InprocCpu`], loads the user state (FS base, an XSAVE image, the
//!   registers) and jumps into user code. The jump and the syscall entry find the vCPU's
//!   state through GS, which the stub sets to the vCPU's `StubCpu` (user code owns FS).
//! * User code comes back by a signal (a trapped `syscall`, a fault, the slice timer, a vCPU
//!   event: the handler records the state and redirects the signal's context to
//!   `pvmux_stub_inproc_resume`) or, with no signal, through `pvmux_stub_inproc_syscall`,
//!   which a patched system-call site jumps to with the registers a `syscall` instruction
//!   leaves (`rax` number, `rcx` return address, `r11` rflags). Both end in
//!   `pvmux_stub_inproc_resume`, which returns from `inproc_run` to the kernel.
//!
//! Nothing here protects the guest kernel from the user code: it runs in the same process,
//! can write kernel memory and stub state, and jump into stub code. The host stays protected
//! by the kernel sandbox's filter, which this mode widens only by mappings of the guest
//! memfd in the user window's free parts and `arch_prctl(ARCH_SET_FS/ARCH_GET_FS)`.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::Ordering::*;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

use pvmux_hypercalls::frame::RFLAGS_USER_MASK;
use pvmux_hypercalls::layout::in_window;
use pvmux_hypercalls::sandbox::GUEST_MEM_FD;
use pvmux_hypercalls::user::inproc::{
    fp_flags, in_inproc_window, InprocRun, INPROC_HIGH, INPROC_LEN_MAX, INPROC_LOW, INPROC_OPS_MAX,
    INPROC_WIPE,
};
use pvmux_hypercalls::user::patch::SYSCALL_FROM_ENTRY;
use pvmux_hypercalls::user::{op, UserExit, UserOp};
use pvmux_hypercalls::vcpu::pending;
use pvmux_hypercalls::{HcError, TrapFrame, Vector};
use pvmux_switcher::exception::{classify, Classified, SandboxKind};

use crate::sigctx::{trap_frame, SigInfo, FPSTATE, SI_TIMER};
use crate::start::{MAP_FIXED, MAP_POPULATE, MAP_SHARED};
use crate::state::{StubCpu, AREA_ALTSTACK, AREA_SIZE, OFF_INPROC, RETRY_TIMER_VALUE, SIG_EVENT};
use crate::sys;

/// `sigev_value` of a vCPU's slice timer (trusted in-process mode only).
pub(crate) const SLICE_TIMER_VALUE: u64 = 2;

/// Where a vCPU's XSAVE area lies in its stub area (64-byte aligned; between the `StubCpu`
/// and the parking stack, which grows down from `AREA_STACK_TOP`).
const XSAVE_OFF: usize = 4096;
/// Size of that area.
const XSAVE_MAX: usize = 8192;

/// `InprocCpu::fp_len` of a system-call exit that kept the FPU state in the registers.
const FP_KEPT: u32 = u32::MAX;

/// 1 when the mode is on (set once at start-up).
static ON: AtomicU32 = AtomicU32::new(0);
/// 1 when user space may use `rdfsbase`/`wrfsbase` (`AT_HWCAP2`).
pub(crate) static FSGSBASE: AtomicU32 = AtomicU32::new(0);
/// Bytes of the standard-format XSAVE image of `PVMUX_INPROC_XMASK`'s features.
static XSAVE_SIZE: AtomicU32 = AtomicU32::new(0);
/// The XSAVE features the stub saves and restores: the host's signal-frame features
/// ([`crate::xsave::signal_frame_features`]).
#[no_mangle]
static PVMUX_INPROC_XMASK: AtomicU64 = AtomicU64::new(0);

/// The per-vCPU state of the mode, inside `StubCpu` (`repr(C)`: the assembly uses it).
#[repr(C)]
pub(crate) struct InprocCpu {
    /// The user registers: in a `TrapFrame`'s order (loaded by `inproc_run`, saved by an
    /// exit).
    u: [AtomicU64; 21],
    /// The kernel's stack pointer inside `inproc_run` (its saved registers are above it).
    k_rsp: AtomicU64,
    /// The `InprocRun` being served.
    run: AtomicU64,
    /// TSC when user code was entered.
    user_since: AtomicU64,
    /// The kernel's MXCSR.
    k_mxcsr: AtomicU32,
    /// The kernel's x87 control word.
    k_fcw: AtomicU32,
    /// 1 from the entry into user code until it has come back.
    pub(crate) in_user: AtomicU32,
    /// Bytes of the user's FPU image in the XSAVE area (0: an `xsave` image without the
    /// software bytes, see `leave`; [`FP_KEPT`]: no image, the state is in the registers and
    /// `u_xmm`, `u_mxcsr`, `u_fcw`).
    fp_len: AtomicU32,
    /// Kernel id of the slice timer.
    pub(crate) slice_timer_id: AtomicI32,
    /// Guest time (ns) at which the armed slice ends; 0 when none is armed (never armed,
    /// or it fired: [`slice_ended`]).
    slice_end: AtomicU64,
    /// 1 when the kernel's last `inproc_run` allowed a system-call exit to keep the FPU
    /// state in the registers (`fp_flags::MAY_KEEP`).
    may_keep: AtomicU32,
    /// The user's MXCSR at a kept exit.
    u_mxcsr: AtomicU32,
    /// The user's x87 control word at a kept exit.
    u_fcw: AtomicU32,
    _pad: [u32; 2],
    /// The user's xmm0-15 at a kept exit (16-byte aligned: the entry may run with
    /// `EFLAGS.AC` set, and `movaps` needs it).
    u_xmm: Xmm,
}

/// Room for xmm0-15, 16-byte aligned.
#[repr(C, align(16))]
struct Xmm([AtomicU64; 32]);

const fn u_off(field: usize) -> usize {
    OFF_INPROC + offset_of!(InprocCpu, u) + field
}
const fn c_off(field: usize) -> usize {
    OFF_INPROC + field
}
const U_XMM: usize = c_off(offset_of!(InprocCpu, u_xmm));
const _: () = assert!(U_XMM.is_multiple_of(16));

/// Whether the mode is on.
pub(crate) fn active() -> bool {
    ON.load(Relaxed) != 0
}

/// Turns the mode on (start-up, before the vCPU threads exist). `Err` if the CPU lacks
/// what it needs (XSAVE).
pub(crate) fn init(fsgsbase: bool) -> Result<(), u32> {
    let Some((mask, size)) = crate::xsave::signal_frame_features() else {
        return Err(95); // EOPNOTSUPP
    };
    if size as usize > XSAVE_MAX {
        return Err(95);
    }
    PVMUX_INPROC_XMASK.store(mask, Relaxed);
    XSAVE_SIZE.store(size, Relaxed);
    FSGSBASE.store(u32::from(fsgsbase), Relaxed);
    ON.store(1, Release);
    Ok(())
}

/// Per-thread set-up (before the filter): GS = this vCPU's `StubCpu`, the slice timer.
pub(crate) fn thread_setup(c: &StubCpu, tid: u32) -> Result<(), u32> {
    let base = c as *const StubCpu as u64;
    // SAFETY: ARCH_SET_GS changes only this thread's GS base, which nothing else uses.
    sys::check(unsafe { sys::syscall6(sys::nr::ARCH_PRCTL, [0x1001, base as usize, 0, 0, 0, 0]) })?;
    c.inproc
        .slice_timer_id
        .store(crate::start::thread_timer(tid, SLICE_TIMER_VALUE)?, Relaxed);
    Ok(())
}

/// The slice timer of vCPU `c` fired: the next run arms a new slice.
pub(crate) fn slice_ended(c: &StubCpu) {
    c.inproc.slice_end.store(0, Relaxed);
}

/// True while vCPU `c` runs (or is entering or leaving) user code.
pub(crate) fn in_user(c: &StubCpu) -> bool {
    active() && c.inproc.in_user.load(Relaxed) != 0
}

global_asm!(
    // inproc_run(run): save the kernel's context, load the user's, jump.
    ".globl pvmux_stub_inproc_run",
    "pvmux_stub_inproc_run:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    // The kernel's flags (discarded on the way back); AC and DF cleared if set (`popfq`
    // costs ~20 cycles: only then).
    "pushfq",
    "test dword ptr [rsp], {ac_df}",
    "jz 4f",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "4:",
    "mov rax, fs:[0]",
    "mov [rax + {k_rsp}], rsp",
    "stmxcsr [rax + {k_mxcsr}]",
    "fnstcw [rax + {k_fcw}]",
    "call {enter}",
    "test rax, rax",
    "jz 2f",
    "mov rbx, rax",
    "test edx, edx",
    "jnz 5f",
    "mov eax, dword ptr [rip + PVMUX_INPROC_XMASK]",
    "mov edx, dword ptr [rip + PVMUX_INPROC_XMASK + 4]",
    "xrstor64 [rbx + {xsave}]",
    "jmp 6f",
    // The state kept at the last exit: only what the kernel may have changed comes back.
    "5:",
    "movaps xmm0, [rbx + {u_xmm}]",
    "movaps xmm1, [rbx + {u_xmm} + 16]",
    "movaps xmm2, [rbx + {u_xmm} + 32]",
    "movaps xmm3, [rbx + {u_xmm} + 48]",
    "movaps xmm4, [rbx + {u_xmm} + 64]",
    "movaps xmm5, [rbx + {u_xmm} + 80]",
    "movaps xmm6, [rbx + {u_xmm} + 96]",
    "movaps xmm7, [rbx + {u_xmm} + 112]",
    "movaps xmm8, [rbx + {u_xmm} + 128]",
    "movaps xmm9, [rbx + {u_xmm} + 144]",
    "movaps xmm10, [rbx + {u_xmm} + 160]",
    "movaps xmm11, [rbx + {u_xmm} + 176]",
    "movaps xmm12, [rbx + {u_xmm} + 192]",
    "movaps xmm13, [rbx + {u_xmm} + 208]",
    "movaps xmm14, [rbx + {u_xmm} + 224]",
    "movaps xmm15, [rbx + {u_xmm} + 240]",
    "ldmxcsr [rbx + {u_mxcsr}]",
    "fldcw [rbx + {u_fcw}]",
    "6:",
    "lea rsp, [rbx + {u_rflags}]",
    "popfq",
    "mov rax, [rbx + {u_rax}]",
    "mov rcx, [rbx + {u_rcx}]",
    "mov rdx, [rbx + {u_rdx}]",
    "mov rsi, [rbx + {u_rsi}]",
    "mov rdi, [rbx + {u_rdi}]",
    "mov rbp, [rbx + {u_rbp}]",
    "mov r8, [rbx + {u_r8}]",
    "mov r9, [rbx + {u_r9}]",
    "mov r10, [rbx + {u_r10}]",
    "mov r11, [rbx + {u_r11}]",
    "mov r12, [rbx + {u_r12}]",
    "mov r13, [rbx + {u_r13}]",
    "mov r14, [rbx + {u_r14}]",
    "mov r15, [rbx + {u_r15}]",
    "mov rsp, [rbx + {u_rsp}]",
    "mov rbx, [rbx + {u_rbx}]",
    "jmp qword ptr gs:[{u_rip}]",
    "2:",
    "mov rax, rdx",
    "jmp 3f",
    //
    // The way back: rbx = this vCPU's StubCpu, eax = the UserExit code, the user state in
    // InprocCpu (and its FPU image in the XSAVE area).
    ".globl pvmux_stub_inproc_resume",
    "pvmux_stub_inproc_resume:",
    "mov rsp, [rbx + {k_rsp}]",
    // The user's flags may have AC or DF set: cleared before any Rust code runs.
    "pushfq",
    "test dword ptr [rsp], {ac_df}",
    "lea rsp, [rsp + 8]",
    "jz 4f",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "4:",
    "ldmxcsr [rbx + {k_mxcsr}]",
    "fldcw [rbx + {k_fcw}]",
    "mov rdi, rbx",
    "mov esi, eax",
    "call {leave}",
    "3:",
    // The kernel's saved flags: nothing in them matters to the caller (AC and DF are
    // clear), so they are dropped rather than reloaded.
    "lea rsp, [rsp + 8]",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    //
    // The syscall entry: a patched call site jumps here through its cell of the patch
    // table (`pvmux_hypercalls::user::patch`) with rax = the number, rcx = the address after
    // the site and every other register the program's, on the program's stack, which it
    // must not touch (the red zone). Every load before the flags are cleared is aligned (the
    // program may run with EFLAGS.AC set).
    ".globl pvmux_stub_inproc_syscall",
    "pvmux_stub_inproc_syscall:",
    // No flag, no register but rsp and rbx changes before the flags are stored.
    "mov gs:[{u_rsp}], rsp",
    "mov gs:[{u_rbx}], rbx",
    "mov rbx, gs:[0]",
    "mov rsp, [rbx + {k_rsp}]", // the kernel's stack, below inproc_run's frame
    "pushfq",
    "mov gs:[{u_rax}], rax",
    "pop rax",
    "mov gs:[{u_rflags}], rax",
    "mov gs:[{u_r11}], rax", // as `syscall`: r11 = rflags
    "mov rax, gs:[{u_rax}]",
    "mov gs:[{u_rcx}], rcx",
    "mov gs:[{u_rdx}], rdx",
    "mov gs:[{u_rsi}], rsi",
    "mov gs:[{u_rdi}], rdi",
    "mov gs:[{u_rbp}], rbp",
    "mov gs:[{u_r8}], r8",
    "mov gs:[{u_r9}], r9",
    "mov gs:[{u_r10}], r10",
    "mov gs:[{u_r12}], r12",
    "mov gs:[{u_r13}], r13",
    "mov gs:[{u_r14}], r14",
    "mov gs:[{u_r15}], r15",
    "mov gs:[{u_rip}], rcx",
    "mov qword ptr gs:[{u_vector}], {vec_syscall}",
    "mov gs:[{u_error}], rax",
    "mov qword ptr gs:[{u_addr}], {from_entry}",
    "cmp dword ptr [rbx + {in_user}], 1",
    "jne 9f",
    "cmp dword ptr [rbx + {may_keep}], 0",
    "je 8f",
    // Keep the state: save only what the kernel's code may change (module docs of
    // `pvmux_hypercalls::user::inproc`).
    "movaps [rbx + {u_xmm}], xmm0",
    "movaps [rbx + {u_xmm} + 16], xmm1",
    "movaps [rbx + {u_xmm} + 32], xmm2",
    "movaps [rbx + {u_xmm} + 48], xmm3",
    "movaps [rbx + {u_xmm} + 64], xmm4",
    "movaps [rbx + {u_xmm} + 80], xmm5",
    "movaps [rbx + {u_xmm} + 96], xmm6",
    "movaps [rbx + {u_xmm} + 112], xmm7",
    "movaps [rbx + {u_xmm} + 128], xmm8",
    "movaps [rbx + {u_xmm} + 144], xmm9",
    "movaps [rbx + {u_xmm} + 160], xmm10",
    "movaps [rbx + {u_xmm} + 176], xmm11",
    "movaps [rbx + {u_xmm} + 192], xmm12",
    "movaps [rbx + {u_xmm} + 208], xmm13",
    "movaps [rbx + {u_xmm} + 224], xmm14",
    "movaps [rbx + {u_xmm} + 240], xmm15",
    "stmxcsr [rbx + {u_mxcsr}]",
    "fnstcw [rbx + {u_fcw}]",
    "mov dword ptr [rbx + {fp_len}], {fp_kept}",
    "jmp 7f",
    "8:",
    "mov eax, dword ptr [rip + PVMUX_INPROC_XMASK]",
    "mov edx, dword ptr [rip + PVMUX_INPROC_XMASK + 4]",
    "xsave64 [rbx + {xsave}]",
    "mov dword ptr [rbx + {fp_len}], 0",
    "7:",
    "mov eax, {exit_syscall}",
    "jmp pvmux_stub_inproc_resume",
    "9:",
    "ud2",
    keep = const !(crate::start::RFLAGS_AC | (1u64 << 10)) as u32,
    ac_df = const (crate::start::RFLAGS_AC | (1u64 << 10)) as u32,
    k_rsp = const c_off(offset_of!(InprocCpu, k_rsp)),
    k_mxcsr = const c_off(offset_of!(InprocCpu, k_mxcsr)),
    k_fcw = const c_off(offset_of!(InprocCpu, k_fcw)),
    in_user = const c_off(offset_of!(InprocCpu, in_user)),
    fp_len = const c_off(offset_of!(InprocCpu, fp_len)),
    may_keep = const c_off(offset_of!(InprocCpu, may_keep)),
    u_mxcsr = const c_off(offset_of!(InprocCpu, u_mxcsr)),
    u_fcw = const c_off(offset_of!(InprocCpu, u_fcw)),
    u_xmm = const U_XMM,
    fp_kept = const FP_KEPT,
    xsave = const XSAVE_OFF,
    enter = sym enter,
    leave = sym leave,
    u_rax = const u_off(offset_of!(TrapFrame, rax)),
    u_rbx = const u_off(offset_of!(TrapFrame, rbx)),
    u_rcx = const u_off(offset_of!(TrapFrame, rcx)),
    u_rdx = const u_off(offset_of!(TrapFrame, rdx)),
    u_rsi = const u_off(offset_of!(TrapFrame, rsi)),
    u_rdi = const u_off(offset_of!(TrapFrame, rdi)),
    u_rbp = const u_off(offset_of!(TrapFrame, rbp)),
    u_r8 = const u_off(offset_of!(TrapFrame, r8)),
    u_r9 = const u_off(offset_of!(TrapFrame, r9)),
    u_r10 = const u_off(offset_of!(TrapFrame, r10)),
    u_r11 = const u_off(offset_of!(TrapFrame, r11)),
    u_r12 = const u_off(offset_of!(TrapFrame, r12)),
    u_r13 = const u_off(offset_of!(TrapFrame, r13)),
    u_r14 = const u_off(offset_of!(TrapFrame, r14)),
    u_r15 = const u_off(offset_of!(TrapFrame, r15)),
    u_vector = const u_off(offset_of!(TrapFrame, vector)),
    u_error = const u_off(offset_of!(TrapFrame, error_code)),
    u_addr = const u_off(offset_of!(TrapFrame, fault_addr)),
    u_rip = const u_off(offset_of!(TrapFrame, rip)),
    u_rflags = const u_off(offset_of!(TrapFrame, rflags)),
    u_rsp = const u_off(offset_of!(TrapFrame, rsp)),
    vec_syscall = const Vector::Syscall as u32,
    exit_syscall = const UserExit::Syscall as u32,
    from_entry = const SYSCALL_FROM_ENTRY,
);

extern "sysv64" {
    fn pvmux_stub_inproc_run(run: u64) -> i64;
    fn pvmux_stub_inproc_resume();
    fn pvmux_stub_inproc_syscall();
}

/// The `inproc_run` entry's address (for the stub table).
pub(crate) fn run_entry() -> u64 {
    pvmux_stub_inproc_run as *const () as u64
}

/// The address of the syscall entry a patched call site jumps to.
pub(crate) fn syscall_entry() -> u64 {
    pvmux_stub_inproc_syscall as *const () as u64
}

const ERR_INVAL: i64 = HcError::InvalidArgument.to_ret();
const ERR_BADADDR: i64 = HcError::BadAddress.to_ret();

/// Two-register return (`rax`, `rdx`) for the assembly.
#[repr(C)]
struct Pair(u64, u64);

const RUN_WORDS: usize = size_of::<InprocRun>() / 8;

/// Whether vCPU `c` needs a new slice at TSC `now`: its timer fired, was never armed, or the
/// slice's end has passed on the guest clock (a kernel passes the slice length at every run
/// and reads no clock for it).
fn slice_due(c: &StubCpu, now: u64) -> bool {
    let end = c.inproc.slice_end.load(Relaxed);
    end == 0 || crate::state::clock_ns_at(now) >= end
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and is allowed in user mode on pvmux hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn xsave_area(c: &StubCpu) -> *mut u8 {
    (c as *const StubCpu as u64 + XSAVE_OFF as u64) as *mut u8
}

fn get_fs() -> u64 {
    if FSGSBASE.load(Relaxed) != 0 {
        let v: u64;
        // SAFETY: `rdfsbase` is enabled for user space (AT_HWCAP2); it only reads FS base.
        unsafe {
            core::arch::asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        return v;
    }
    sys::get_fs().unwrap_or(0)
}

fn set_fs(v: u64) -> Result<(), u32> {
    if v >= 0x0000_8000_0000_0000 {
        return Err(1);
    }
    if FSGSBASE.load(Relaxed) != 0 {
        // SAFETY: `wrfsbase` is enabled for user space (AT_HWCAP2) and `v` is canonical; it
        // changes only this thread's FS base.
        unsafe {
            core::arch::asm!("wrfsbase {}", in(reg) v, options(nomem, nostack, preserves_flags))
        };
        return Ok(());
    }
    sys::set_fs(v)
}

/// Reads the kernel's `InprocRun` at `run` (checked to lie in the window).
fn read_run(run: u64) -> InprocRun {
    let mut words = [0u64; RUN_WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        // SAFETY: `run` is 8-aligned and the whole struct lies in the window (checked by
        // the caller); a shadow miss is filled by the signal handler.
        *w = unsafe { ((run + 8 * i as u64) as *const u64).read_volatile() };
    }
    zerocopy::transmute!(words)
}

/// Writes an exit's outputs into the `InprocRun` at `run` (checked by `enter`): the
/// registers `InprocCpu` holds, FS base, exit code, user ticks, FPU flags and length.
fn write_outputs(c: &StubCpu, run: u64, fs: u64, exit: u32, ticks: u64, flags: u32, len: u32) {
    let at = |off: usize| run + off as u64;
    // SAFETY: `run` is 8-aligned and the whole struct lies in the window (checked when the
    // run was entered); plain volatile stores, no reference is formed.
    unsafe {
        for (i, slot) in c.inproc.u.iter().enumerate() {
            (at(offset_of!(InprocRun, regs) + 8 * i) as *mut u64)
                .write_volatile(slot.load(Relaxed));
        }
        (at(offset_of!(InprocRun, fs_base)) as *mut u64).write_volatile(fs);
        (at(offset_of!(InprocRun, fp_len)) as *mut u32).write_volatile(len);
        (at(offset_of!(InprocRun, fp_flags)) as *mut u32).write_volatile(flags);
        (at(offset_of!(InprocRun, exit)) as *mut u32).write_volatile(exit);
        (at(offset_of!(InprocRun, user_ticks)) as *mut u64).write_volatile(ticks);
    }
}

/// Writes `r` back to `run`.
fn write_run(run: u64, r: &InprocRun) {
    let words: [u64; RUN_WORDS] = zerocopy::transmute!(*r);
    for (i, w) in words.iter().enumerate() {
        // SAFETY: as in `read_run`.
        unsafe { ((run + 8 * i as u64) as *mut u64).write_volatile(*w) };
    }
}

// Offsets in an XSAVE image.
const FX_FCW: usize = 0;
const FX_MXCSR: usize = 24;
const FX_MXCSR_MASK: usize = 28;
const FX_SW: usize = 464;
const XSTATE_BV: usize = 512;
const XSAVE_HDR_END: usize = 576;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

/// Loads the kernel's image (`len` bytes at `addr`, 0: the initial state) into the XSAVE
/// area, made safe for `xrstor`.
fn load_image(c: &StubCpu, addr: u64, len: usize) {
    let area = xsave_area(c);
    let n = len.min(XSAVE_MAX);
    // SAFETY: the area is XSAVE_MAX bytes of this vCPU's stub area; `addr..addr + n` lies in
    // the window (checked by the caller). Raw copies; no reference is formed.
    unsafe {
        core::ptr::write_bytes(area, 0, XSAVE_HDR_END);
        if n == 0 {
            (area.add(FX_FCW) as *mut u16).write(0x37f);
            (area.add(FX_MXCSR) as *mut u32).write(0x1f80);
            return;
        }
        core::ptr::copy_nonoverlapping(addr as *const u8, area, n);
        let mask = match (area.add(FX_MXCSR_MASK) as *const u32).read() {
            0 => 0xffbf,
            m => m,
        };
        let mxcsr = area.add(FX_MXCSR) as *mut u32;
        mxcsr.write(mxcsr.read() & mask);
        let bv = if n >= XSAVE_HDR_END {
            (area.add(XSTATE_BV) as *const u64).read() & PVMUX_INPROC_XMASK.load(Relaxed)
        } else {
            0b11
        };
        core::ptr::write_bytes(area.add(XSTATE_BV), 0, XSAVE_HDR_END - XSTATE_BV);
        (area.add(XSTATE_BV) as *mut u64).write(bv);
    }
}

/// The Rust half of `inproc_run`'s entry: checks and loads the state. Returns this vCPU's
/// `StubCpu` (FS is the user's from here on) and 1 if the assembly restores the kept
/// registers instead of the XSAVE area (`fp_flags::LIVE`), or `(0, error)`.
extern "sysv64" fn enter(run: u64) -> Pair {
    if !active() {
        return Pair(0, ERR_INVAL as u64);
    }
    if !run.is_multiple_of(8) || !in_window(run, size_of::<InprocRun>() as u64) {
        return Pair(0, ERR_BADADDR as u64);
    }
    let c = StubCpu::current();
    let r = read_run(run);
    if r.regs.rip >= 0x0000_8000_0000_0000 || r.fs_base >= 0x0000_8000_0000_0000 {
        return Pair(0, ERR_INVAL as u64);
    }
    let live = r.fp_flags & fp_flags::LIVE != 0;
    let fp_len = r.fp_len as usize;
    if live {
        if c.inproc.fp_len.load(Relaxed) != FP_KEPT {
            return Pair(0, ERR_INVAL as u64);
        }
    } else if fp_len != 0 && !in_window(r.fp_addr, fp_len as u64) {
        return Pair(0, ERR_BADADDR as u64);
    }
    let mut regs = r.regs;
    // No single-stepping: a trap flag would fire inside the stub's return path.
    regs.rflags = (regs.rflags & RFLAGS_USER_MASK & !0x100) | 0x202;
    let words: [u64; 21] = zerocopy::transmute!(regs);
    for (slot, w) in c.inproc.u.iter().zip(words) {
        slot.store(w, Relaxed);
    }
    if !live {
        load_image(c, r.fp_addr, fp_len);
    }
    // Whatever was kept is in use again (or replaced): the next exit says what it saved.
    c.inproc.fp_len.store(0, Relaxed);
    c.inproc
        .may_keep
        .store(u32::from(r.fp_flags & fp_flags::MAY_KEEP != 0), Relaxed);
    let mut now = rdtsc();
    if r.slice_ns != 0 && slice_due(c, now) {
        let spec = sys::Itimerspec {
            value: sys::Timespec {
                sec: (r.slice_ns / 1_000_000_000).min(i64::MAX as u64) as i64,
                nsec: (r.slice_ns % 1_000_000_000) as i64,
            },
            ..Default::default()
        };
        let _ = sys::timer_settime(c.inproc.slice_timer_id.load(Relaxed), 0, &spec);
        let end = crate::state::clock_ns_at(now).saturating_add(r.slice_ns);
        c.inproc.slice_end.store(end.max(1), Relaxed);
        now = rdtsc();
    }
    c.inproc.run.store(run, Relaxed);
    c.inproc.user_since.store(now, Relaxed);
    // A full fence between this store and the load of `pending`, against `vcpu_kick`,
    // which sets a pending bit and then looks at `in_user`: either it sees user code
    // running and interrupts it, or this sees the bit and user code comes back shortly
    // (the retry timer) for the kernel to take the event.
    c.inproc.in_user.store(1, SeqCst);
    if c.shared().pending.load(SeqCst) != 0 {
        crate::trap::arm_retry(c);
    }
    if set_fs(r.fs_base).is_err() {
        c.inproc.in_user.store(0, SeqCst);
        return Pair(0, ERR_INVAL as u64);
    }
    Pair(c as *const StubCpu as u64, u64::from(live))
}

/// The Rust half of the way back: the kernel's FS again, the user state written back into
/// the `InprocRun`. Returns 0 (`inproc_run`'s result).
extern "sysv64" fn leave(cpu: u64, exit: u32) -> i64 {
    // SAFETY: the assembly passes this vCPU's StubCpu (it lives as long as the process).
    let c = unsafe { &*(cpu as *const StubCpu) };
    let user_fs = get_fs();
    if set_fs(cpu).is_err() {
        sys::exit_group(pvmux_hypercalls::sandbox::STUB_EXIT_CRASH);
    }
    let ticks = rdtsc().saturating_sub(c.inproc.user_since.load(Relaxed));
    // Release, no fence: a kick that still sees 1 only sends a signal the stub then
    // defers, and the kernel takes pending events when it enables them.
    c.inproc.in_user.store(0, Release);
    let run = c.inproc.run.load(Relaxed);
    if c.inproc.fp_len.load(Relaxed) == FP_KEPT {
        // The state stays in the registers: no image. Only the outputs are written (the
        // common case, a patched system call: no read of the whole `InprocRun`).
        write_outputs(c, run, user_fs, exit, ticks, fp_flags::KEPT, 0);
        return 0;
    }
    let mut r = read_run(run);
    let mut words = [0u64; 21];
    for (w, slot) in words.iter_mut().zip(c.inproc.u.iter()) {
        *w = slot.load(Relaxed);
    }
    r.regs = zerocopy::transmute!(words);
    r.fs_base = user_fs;
    r.exit = exit;
    r.user_ticks = ticks;
    r.fp_flags = 0;
    let area = xsave_area(c);
    let len = match c.inproc.fp_len.load(Relaxed) as usize {
        0 => add_software_bytes(c),
        n => n.min(XSAVE_MAX),
    };
    if len <= r.fp_cap as usize && in_window(r.fp_addr, len as u64) {
        // SAFETY: `len` bytes of the XSAVE area to the kernel's buffer in the window.
        unsafe { core::ptr::copy_nonoverlapping(area, r.fp_addr as *mut u8, len) };
        r.fp_len = len as u32;
    } else {
        r.fp_len = 0;
    }
    write_run(run, &r);
    0
}

/// Adds the software bytes a signal frame's image has to the `xsave` image in `c`'s XSAVE
/// area; returns the image's size.
fn add_software_bytes(c: &StubCpu) -> usize {
    let area = xsave_area(c);
    let size = XSAVE_SIZE.load(Relaxed);
    // SAFETY: FX_SW..FX_SW + 24 lies in the XSAVE area; plain stores.
    unsafe {
        (area.add(FX_SW) as *mut u32).write(FP_XSTATE_MAGIC1);
        (area.add(FX_SW + 4) as *mut u32).write(size + 4);
        (area.add(FX_SW + 8) as *mut u64).write(PVMUX_INPROC_XMASK.load(Relaxed));
        (area.add(FX_SW + 16) as *mut u32).write(size);
    }
    size as usize
}

/// `inproc_fp_save(buf, cap)`: the FPU state this vCPU's last system-call exit kept in the
/// registers, written into `buf` as an image; returns its length
/// (`pvmux_hypercalls::user::inproc`). Runs in kernel context: the registers hold the
/// user's state except xmm0-15, MXCSR and the x87 control word, which are in `InprocCpu`.
extern "sysv64" fn inproc_fp_save(buf: u64, cap: u64) -> i64 {
    if !active() {
        return ERR_INVAL;
    }
    let c = StubCpu::current();
    if c.inproc.fp_len.load(Relaxed) != FP_KEPT {
        return ERR_INVAL;
    }
    let size = XSAVE_SIZE.load(Relaxed) as u64;
    if cap < size || !in_window(buf, size) {
        return ERR_BADADDR;
    }
    let area = xsave_area(c);
    let kept = c as *const StubCpu as u64 + OFF_INPROC as u64;
    let mask = PVMUX_INPROC_XMASK.load(Relaxed);
    let (mut k_mxcsr, mut k_fcw) = (0u32, 0u16);
    // SAFETY: `kept` is this vCPU's `InprocCpu` (its `u_xmm` 16-byte aligned, asserted
    // above) and `area` its 64-byte-aligned XSAVE area of XSAVE_MAX >= XSAVE_SIZE bytes.
    // The user's xmm0-15, MXCSR and control word are put back in the registers, the whole
    // state saved, and the kernel's MXCSR and control word restored; xmm0-15 are declared
    // clobbered.
    unsafe {
        core::arch::asm!(
            "stmxcsr [{k_mxcsr}]",
            "fnstcw [{k_fcw}]",
            "movaps xmm0, [{kept} + {x}]",
            "movaps xmm1, [{kept} + {x} + 16]",
            "movaps xmm2, [{kept} + {x} + 32]",
            "movaps xmm3, [{kept} + {x} + 48]",
            "movaps xmm4, [{kept} + {x} + 64]",
            "movaps xmm5, [{kept} + {x} + 80]",
            "movaps xmm6, [{kept} + {x} + 96]",
            "movaps xmm7, [{kept} + {x} + 112]",
            "movaps xmm8, [{kept} + {x} + 128]",
            "movaps xmm9, [{kept} + {x} + 144]",
            "movaps xmm10, [{kept} + {x} + 160]",
            "movaps xmm11, [{kept} + {x} + 176]",
            "movaps xmm12, [{kept} + {x} + 192]",
            "movaps xmm13, [{kept} + {x} + 208]",
            "movaps xmm14, [{kept} + {x} + 224]",
            "movaps xmm15, [{kept} + {x} + 240]",
            "ldmxcsr [{kept} + {m}]",
            "fldcw [{kept} + {f}]",
            "xsave64 [{area}]",
            "ldmxcsr [{k_mxcsr}]",
            "fldcw [{k_fcw}]",
            kept = in(reg) kept,
            area = in(reg) area,
            k_mxcsr = in(reg) &raw mut k_mxcsr,
            k_fcw = in(reg) &raw mut k_fcw,
            x = const offset_of!(InprocCpu, u_xmm),
            m = const offset_of!(InprocCpu, u_mxcsr),
            f = const offset_of!(InprocCpu, u_fcw),
            in("eax") mask as u32,
            in("edx") (mask >> 32) as u32,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack, preserves_flags),
        );
    }
    let len = add_software_bytes(c);
    // SAFETY: `len` (XSAVE_SIZE) bytes of the XSAVE area to the kernel's buffer, which lies
    // in the window (checked above). Raw copy; no reference is formed.
    unsafe { core::ptr::copy_nonoverlapping(area, buf as *mut u8, len) };
    c.inproc.fp_len.store(0, Relaxed);
    len as i64
}

/// The `inproc_fp_save` entry's address (for the stub table).
pub(crate) fn fp_save_entry() -> u64 {
    inproc_fp_save as *const () as u64
}

/// A signal that interrupted user code of vCPU `c` (`g`: the frame's context words): records
/// the exit (registers, FPU image) and returns its `UserExit` code.
pub(crate) fn exit_from_signal(c: &StubCpu, sig: i32, si: SigInfo, g: &[u64; 32]) -> u32 {
    let (exit, vector, error, addr) = if sig == SIG_EVENT as i32 {
        if si.code == SI_TIMER {
            match si.word24 {
                RETRY_TIMER_VALUE => c.retry_armed.store(0, Relaxed),
                SLICE_TIMER_VALUE => slice_ended(c),
                _ => {
                    c.shared().pending.fetch_or(pending::TIMER, SeqCst);
                }
            }
        }
        (UserExit::Interrupt, Vector::Event as u64, 0, 0)
    } else {
        match classify(&si.host_signal(sig, g), SandboxKind::User) {
            Classified::Syscall { nr } => (UserExit::Syscall, Vector::Syscall as u64, nr, 0),
            Classified::Exception {
                vector,
                error_code,
                fault_addr,
            } => (UserExit::Exception, vector as u64, error_code, fault_addr),
            Classified::Other => (UserExit::Interrupt, Vector::Event as u64, 0, 0),
        }
    };
    let mut regs = trap_frame(g, vector, error, addr);
    if exit == UserExit::Syscall {
        regs.rax = error;
    }
    let words: [u64; 21] = zerocopy::transmute!(regs);
    for (slot, w) in c.inproc.u.iter().zip(words) {
        slot.store(w, Relaxed);
    }
    c.inproc.fp_len.store(save_frame_fp(c, g), Relaxed);
    exit as u32
}

/// Copies the signal frame's FPU image into the XSAVE area; returns its size.
fn save_frame_fp(c: &StubCpu, g: &[u64; 32]) -> u32 {
    let fp = g[FPSTATE];
    let area_base = c as *const StubCpu as u64;
    let (lo, hi) = (area_base + AREA_ALTSTACK, area_base + AREA_SIZE);
    if fp < lo || fp + 512 > hi {
        // No image (never the case on x86-64): the initial state.
        load_image(c, 0, 0);
        return 512;
    }
    let p = fp as *const u8;
    // SAFETY: 512 bytes at p lie in this vCPU's signal stack (checked above).
    let (magic, size) = unsafe {
        (
            (p.add(FX_SW) as *const u32).read(),
            (p.add(FX_SW + 16) as *const u32).read() as usize,
        )
    };
    let size = if magic == FP_XSTATE_MAGIC1
        && (XSAVE_HDR_END..=XSAVE_MAX).contains(&size)
        && fp + size as u64 <= hi
    {
        size
    } else {
        512
    };
    // SAFETY: `size` bytes at p lie in the signal stack; the XSAVE area holds XSAVE_MAX.
    unsafe { core::ptr::copy_nonoverlapping(p, xsave_area(c), size) };
    size as u32
}

/// The resume point a signal's context is redirected to.
pub(crate) fn resume_addr() -> u64 {
    pvmux_stub_inproc_resume as *const () as u64
}

/// The kernel's stack pointer inside `inproc_run` on vCPU `c`.
pub(crate) fn kernel_rsp(c: &StubCpu) -> u64 {
    c.inproc.k_rsp.load(Relaxed)
}

/// `ENOMEM` from the host.
const ENOMEM: u32 = 12;

/// Unmaps every user mapping of the kernel sandbox (both free parts of the user window).
fn wipe() {
    for (lo, hi) in [INPROC_LOW, INPROC_HIGH] {
        let mut a = lo;
        while a < hi {
            let len = (hi - a).min(INPROC_LEN_MAX);
            // SAFETY: the range lies in a free part of the user window, which holds nothing
            // of the stub's or the guest kernel's.
            let _ = unsafe { sys::munmap(a, len) };
            a += len;
        }
    }
}

/// Applies `len` bytes of `o` from byte `done` on.
fn apply_part(o: &UserOp, done: u64, len: u64) -> Result<(), u32> {
    let addr = o.addr + done;
    // SAFETY: the range lies in a free part of the user window (checked by the caller).
    unsafe {
        match o.kind {
            // `MAP_POPULATE`: a demand-zero fault's block, which the program is about to
            // touch: the host fills its page-table entries in this call instead of taking
            // one host page fault per page (the filter allows that one extra flag).
            op::MAP | op::MAP_POPULATE => sys::mmap(
                addr,
                len,
                o.prot,
                MAP_SHARED
                    | MAP_FIXED
                    | if o.kind == op::MAP_POPULATE {
                        MAP_POPULATE
                    } else {
                        0
                    },
                GUEST_MEM_FD,
                o.offset + done,
            )
            .map(|_| ()),
            op::UNMAP => sys::munmap(addr, len),
            _ => sys::mprotect(addr, len, o.prot),
        }
    }
}

/// Applies one operation. `MAP` on `ENOMEM` (address-space or VMA budget): wipe, retry.
/// `PROTECT` that fails (a page of the range is not mapped, e.g. after a wipe): the range is
/// unmapped instead, so rights are only ever taken away (the pages refault).
fn apply(o: &UserOp) -> Result<(), u32> {
    let mut done = 0;
    while done < o.len {
        let len = (o.len - done).min(INPROC_LEN_MAX);
        match apply_part(o, done, len) {
            Ok(()) => {}
            Err(ENOMEM) if matches!(o.kind, op::MAP | op::MAP_POPULATE) => {
                wipe();
                apply_part(o, done, len)?;
            }
            Err(_) if o.kind == op::PROTECT => {
                // SAFETY: as in `apply_part`.
                let _ = unsafe { sys::munmap(o.addr + done, len) };
            }
            Err(_) if o.kind == op::UNMAP => {}
            Err(e) => return Err(e),
        }
        done += len;
    }
    Ok(())
}

extern "sysv64" fn inproc_ops(ops: u64, n: u64) -> i64 {
    if !active() {
        return ERR_INVAL;
    }
    let bytes = n.saturating_mul(size_of::<UserOp>() as u64);
    if n > INPROC_OPS_MAX || !ops.is_multiple_of(8) || (n != 0 && !in_window(ops, bytes)) {
        return ERR_BADADDR;
    }
    for i in 0..n {
        let mut words = [0u64; size_of::<UserOp>() / 8];
        for (j, w) in words.iter_mut().enumerate() {
            let at = ops + i * size_of::<UserOp>() as u64 + 8 * j as u64;
            // SAFETY: inside the checked array in the window.
            *w = unsafe { (at as *const u64).read_volatile() };
        }
        let o: UserOp = zerocopy::transmute!(words);
        if o.kind == INPROC_WIPE {
            wipe();
            continue;
        }
        if o.len == 0 || !in_inproc_window(o.addr, o.len) {
            continue; // the kernel sandbox's own layout is there: the pages stay unmapped
        }
        if apply(&o).is_err() {
            return ERR_INVAL;
        }
    }
    0
}

extern "sysv64" {
    fn pvmux_stub_inproc_ops(ops: u64, n: u64) -> i64;
}

global_asm!(
    ".globl pvmux_stub_inproc_ops",
    "pvmux_stub_inproc_ops:",
    "mov rax, fs:[0]",
    "add rax, {stack_top}",
    "mov [rax - 8], rsp",
    "lea rsp, [rax - 16]",
    "pushfq",
    "push qword ptr [rsp]",
    "and dword ptr [rsp], {keep}",
    "popfq",
    "sub rsp, 8",
    "call {target}",
    "add rsp, 8",
    "popfq",
    "mov rsp, [rsp + 8]",
    "ret",
    stack_top = const crate::state::AREA_STACK_TOP,
    keep = const !(crate::start::RFLAGS_AC | (1u64 << 10)) as u32,
    target = sym inproc_ops,
);

/// The `inproc_ops` entry's address (for the stub table).
pub(crate) fn ops_entry() -> u64 {
    pvmux_stub_inproc_ops as *const () as u64
}
