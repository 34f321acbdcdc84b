//! Where an idle slot thread waits for its next grant (`pvmux_hypercalls::user::grant`).
//!
//! The program can write every byte of the process while the thread waits: its stack, its
//! `UserCpu`, the context region. So the wait is one assembly loop that keeps all its state in
//! registers — the grant word's address, the last grant served, the spin deadline — and
//! leaves only when the grant word (in the read-only grant page, which only the guest kernel
//! writes) holds a grant it has not served — or ends the process, there and then, once the
//! context header says the sandbox is dead. The thread waits inside its signal handler, with
//! every signal blocked (its own mask, which another thread cannot change), so neither a
//! signal nor a futex wake the program sends can make it leave early: a spurious wake-up only
//! re-checks the grant word. Whatever the program writes meanwhile (the return address on this
//! stack included) can only take effect after the kernel has granted this slot a request — a
//! thread that then runs more than it was granted is the host's CPU audit's to catch.

use core::arch::global_asm;

global_asm!(
    // Waited pvmux_user_wait_grant(const u32 *grant, u32 last, u32 *waiting, u64 spin_ticks,
    //                           const u32 *dead, u32 *cpus):
    // spins on *grant until the TSC passes now + spin_ticks, then announces itself in
    // *waiting and sleeps on *grant (shared FUTEX_WAIT, no timeout), until *grant is neither
    // 0 nor `last`. Returns that grant in rax, with bit 32 set if it slept, and in rdx the
    // spin deadline (the TSC at entry + spin_ticks) if it did not sleep. Once *dead (the context
    // header's flag) is set it ends the process with exit_group(0) right here: a `ret` with
    // no grant could return through an address the program wrote.
    // With `cpus` (the slot's `user_cpu` word, `kernel_cpu` after it; null: not used) it
    // reads the TSC with `rdtscp`, keeps `user_cpu` at this thread's CPU + 1 (TSC_AUX's
    // low 12 bits, as Linux sets it) and stops spinning at once when `kernel_cpu` names the
    // same CPU: the guest kernel's thread would be waiting for this CPU.
    ".globl pvmux_user_wait_grant",
    "pvmux_user_wait_grant:",
    "push rbx",
    "mov ebx, esi", // last (kept in a register the futex call preserves)
    "mov r11, r9",  // cpus (only used while spinning: the futex call clobbers r11)
    "mov r9, rdx",  // waiting
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "lea r10, [rax + rcx]", // spin deadline
    "2:",
    "cmp dword ptr [r8], 0",
    "jne 7f",
    "mov eax, dword ptr [rdi]",
    "test eax, eax",
    "jz 3f",
    "cmp eax, ebx",
    "jne 9f",
    "3:",
    "pause",
    "test r11, r11",
    "jz 32f",
    "rdtscp", // edx:eax = TSC, ecx = TSC_AUX
    "and ecx, 0xfff",
    "inc ecx",
    "cmp dword ptr [r11], ecx",
    "je 31f",
    "mov dword ptr [r11], ecx",
    "31:",
    "cmp dword ptr [r11 + 4], ecx",
    "je 4f", // the kernel's thread last ran on this CPU: let it have it
    "jmp 33f",
    "32:",
    "rdtsc",
    "33:",
    "shl rdx, 32",
    "or rax, rdx",
    "cmp rax, r10",
    "jb 2b",
    // Sleep: announce, full fence, re-check, wait; syscall keeps rbx, rdi, r8, r9.
    "4:",
    "mov dword ptr [r9], 1",
    "mfence",
    "cmp dword ptr [r8], 0",
    "jne 7f",
    "mov eax, dword ptr [rdi]",
    "test eax, eax",
    "jz 5f",
    "cmp eax, ebx",
    "jne 8f",
    "5:",
    "mov edx, eax",   // expected value
    "xor esi, esi",   // FUTEX_WAIT, shared
    "xor r10d, r10d", // no timeout
    "mov eax, 202",   // futex
    "syscall",
    "jmp 4b", // woken, interrupted or changed: look again
    "7:",
    "xor edi, edi",
    "mov eax, 231", // exit_group(0)
    "syscall",
    "ud2",
    "8:",
    "mov dword ptr [r9], 0",
    "bts rax, 32",
    "9:",
    "mov rdx, r10", // the spin deadline (after a sleep: whatever the futex call left)
    "pop rbx",
    "ret",
);

/// What the wait loop returns (in `rax` and `rdx`).
#[repr(C)]
struct Waited {
    /// The grant, with bit 32 set if the thread slept.
    grant: u64,
    /// The spin deadline in TSC ticks (meaningful only if the thread did not sleep).
    deadline: u64,
}

extern "sysv64" {
    fn pvmux_user_wait_grant(
        grant: *const u32,
        last: u32,
        waiting: *mut u32,
        spin: u64,
        dead: *const u32,
        cpus: *mut u32,
    ) -> Waited;
}

/// How a wait for a grant went.
pub(super) struct Wait {
    /// The grant to serve.
    pub grant: u32,
    /// Whether the thread slept for it.
    pub slept: bool,
    /// When the wait began (TSC), if the thread did not sleep.
    pub spin_from: Option<u64>,
}

/// Waits until `*grant` holds a grant other than 0 and `last`; returns it, whether the
/// thread slept and, if not, when it began waiting. Spins for `spin_ticks` TSC ticks first — unless `cpus` (the slot's
/// `user_cpu` word, `kernel_cpu` after it; null: no `rdtscp`) shows the kernel's thread on
/// this CPU. Ends the process (status 0) once `*dead` is set.
pub(super) fn wait_grant(
    grant: *const u32,
    last: u32,
    waiting: *mut u32,
    spin_ticks: u64,
    dead: *const u32,
    cpus: *mut u32,
) -> Wait {
    // SAFETY: `grant` is a word of the read-only grant page, `waiting` and `dead` words of
    // the context region, all mapped (at fixed addresses outside the user window, which the
    // filter lets nothing unmap) for the life of the process; the loop only loads `grant` and
    // `dead` and stores 0/1 into `waiting`, and makes only `futex` and `exit_group` calls,
    // which the filter allows from stub code. `cpus`, if not null, is the slot's 8-byte
    // `user_cpu`/`kernel_cpu` pair in the same region (loaded, `user_cpu` stored), and the
    // caller passes it only when the CPU has `rdtscp`.
    let r = unsafe { pvmux_user_wait_grant(grant, last, waiting, spin_ticks, dead, cpus) };
    let slept = r.grant >> 32 != 0;
    Wait {
        grant: r.grant as u32,
        slept,
        spin_from: (!slept).then(|| r.deadline.wrapping_sub(spin_ticks)),
    }
}
