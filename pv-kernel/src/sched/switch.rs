//! The context switch and the first-run trampoline of a new thread.
//!
//! A switched-out thread's stack holds, from its saved `rsp` up: r15, r14, r13, r12, rbx, rbp
//! and the return address into `switch_context`'s caller. Caller-saved registers and the
//! FPU/SSE state need no saving at a call (a preempted thread's FPU state is saved by the
//! trap entry on its own stack).

core::arch::global_asm!(
    ".pushsection .text.pvmux_switch, \"ax\", @progbits",
    ".globl pvmux_switch_context",
    ".p2align 4",
    // pvmux_switch_context(prev_rsp: *mut u64 /* rdi */, next_rsp: u64 /* rsi */)
    "pvmux_switch_context:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    ".globl pvmux_thread_trampoline",
    ".p2align 4",
    // First `ret` target of a new thread: r12 = argument. Entered with rsp = top - 8.
    "pvmux_thread_trampoline:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    mov rdi, r12",
    "    call {start}",
    "    ud2",
    ".popsection",
    start = sym super::thread::thread_start,
);

unsafe extern "sysv64" {
    /// Saves the callee-saved registers and `rsp` into `*prev_rsp`, then resumes the context
    /// saved at `next_rsp`.
    fn pvmux_switch_context(prev_rsp: *mut u64, next_rsp: u64);
    /// First-run entry of a new thread (see [`initial_stack`]).
    fn pvmux_thread_trampoline();
}

/// Switches from the current context to the one saved at `next_rsp`; returns when something
/// switches back to the saved `*prev_rsp`.
///
/// # Safety
/// `prev_rsp` must be valid for writes and stay so; `next_rsp` must be a context saved by this
/// function or built by [`initial_stack`] on a live stack that nothing else runs on. Events
/// must be disabled.
pub(super) unsafe fn switch_context(prev_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { pvmux_switch_context(prev_rsp, next_rsp) }
}

/// Builds the initial context of a new thread on the stack whose top is `top` (16-byte
/// aligned); returns the `rsp` to pass to [`switch_context`]. The thread starts in
/// `thread_start(arg)`.
///
/// # Safety
/// `[top - 64, top)` must be writable memory owned by the new thread's stack.
pub(super) unsafe fn initial_stack(top: u64, arg: u64) -> u64 {
    let words: [u64; 8] = [
        0,                                           // r15
        0,                                           // r14
        0,                                           // r13
        arg,                                         // r12
        0,                                           // rbx
        0,                                           // rbp
        pvmux_thread_trampoline as *const () as u64, // return address
        0,                                           // fake return address of the trampoline
    ];
    let rsp = top - 64;
    // SAFETY: the caller guarantees the 64 bytes below `top` are ours; `top` is aligned.
    unsafe { (rsp as *mut [u64; 8]).write(words) };
    rsp
}
