//! Jumps into stub code with crafted registers: onto a `syscall` instruction (every refused
//! call must end the tenant with an ABI-violation record naming it), into the signal
//! restorer with forged `rt_sigreturn` frames, and to random offsets of the entries.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

use pvmux_hypercalls::PAGE_SIZE;

use crate::{hcall, println};

/// True if the byte at `addr` is readable (a fault is fixed up, not fatal).
fn probe(addr: u64) -> bool {
    crate::trap::read_u64_or_fault(addr & !7).is_ok()
}

/// The readable pages around stub code, as one range `[lo, hi)` (found by probing from the
/// lowest to the highest table entry, at most 64 pages beyond either).
fn stub_range() -> (u64, u64) {
    let t = super::stub_table();
    let e = entries(&t);
    let (min, max) = (
        e.iter().copied().min().unwrap_or(0),
        e.iter().copied().max().unwrap_or(0),
    );
    let mut lo = min & !(PAGE_SIZE - 1);
    for _ in 0..64 {
        if !probe(lo - PAGE_SIZE) {
            break;
        }
        lo -= PAGE_SIZE;
    }
    let mut hi = (max & !(PAGE_SIZE - 1)) + PAGE_SIZE;
    for _ in 0..64 {
        if !probe(hi) {
            break;
        }
        hi += PAGE_SIZE;
    }
    (lo, hi)
}

/// Address of the first occurrence of `pat` in stub code. The executable segment's first page
/// also maps the file bytes before it, so code near the start of the text can appear a second
/// time, one page lower, in the (non-executable) read-only segment: such a copy is skipped.
fn find(pat: &[u8]) -> Option<u64> {
    let (lo, hi) = stub_range();
    let at = |a: u64| {
        a >= lo
            && a + pat.len() as u64 <= hi
            // SAFETY: [lo, hi) was probed readable page by page; the pattern fits below hi.
            && unsafe { core::slice::from_raw_parts(a as *const u8, pat.len()) == pat }
    };
    (lo..hi - pat.len() as u64).find(|&a| at(a) && !at(a + PAGE_SIZE))
}

/// Address of a `syscall` instruction in stub code (the first after the `halt` entry).
fn stub_syscall_insn() -> u64 {
    let start = super::stub_table().halt;
    let hit = (start..start + 0x1_0000).find(|&a| {
        // SAFETY: stub code is mapped readable; the scan stops at the first hit.
        unsafe { (a as *const [u8; 2]).read_unaligned() == [0x0f, 0x05] }
    });
    match hit {
        Some(a) => a,
        None => {
            println!("hostile: no syscall instruction in stub code");
            hcall::shutdown(super::EXIT_NOT_CONTAINED)
        }
    }
}

/// The addresses of every stub entry of the current ABI version.
fn entries(
    t: &pvmux_hypercalls::StubTable,
) -> [u64; pvmux_hypercalls::stub::STUB_ENTRIES as usize] {
    t.entries()
}

/// Jumps to `target` with the Linux system-call registers set to `nr` and `a`.
fn jump_syscall(target: u64, nr: u64, a: [u64; 6]) -> ! {
    // SAFETY: deliberately hostile: stub code makes the call; the filter decides.
    unsafe {
        core::arch::asm!(
            "jmp {t}",
            t = in(reg) target,
            in("rax") nr,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            options(noreturn)
        )
    }
}

/// `hostile=stub-syscall:<call>`: one refused call (or `exit_group`, which is allowed).
pub(crate) fn stub_syscall(call: &str) -> bool {
    let canary = super::canary().as_ptr() as u64;
    let host = super::host_pid();
    let stub_page = super::stub_table().hypercall & !(PAGE_SIZE - 1);
    let window = crate::boot::info().direct_map_base + 0x40_0000;
    static SH: &[u8] = b"/bin/sh\0";
    let argv: &'static [u64; 2] = Box::leak(Box::new([SH.as_ptr() as u64, 0]));
    let zeros: &'static [u64; 16] = Box::leak(Box::new([0; 16]));
    let futex_word: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let (nr, a): (u64, [u64; 6]) = match call {
        "open" => (2, [canary, 0o101, 0o644, 0, 0, 0]),
        "openat" => (257, [-100i64 as u64, canary, 0o101, 0o644, 0, 0]),
        "socket" => (41, [2, 1, 0, 0, 0, 0]),
        "execve" => (59, [SH.as_ptr() as u64, argv.as_ptr() as u64, 0, 0, 0, 0]),
        "kill" => (62, [host, 9, 0, 0, 0, 0]),
        "tgkill" => (234, [host, host, 9, 0, 0, 0]),
        "ptrace" => (101, [16, host, 0, 0, 0, 0]),
        "mmap-anon" => (9, [0, 0x1000, 7, 0x22, -1i64 as u64, 0]),
        "mmap-anon-window" => (9, [window, 0x1000, 7, 0x31, -1i64 as u64, 0]),
        "mmap-ctl-fd" => (9, [window, 0x1000, 3, 0x11, 4, 0]),
        // `pwrite64` is allowed from stub code on the guest memfd only (`mem_write`).
        "pwrite-ctl-fd" => (18, [4, window, 8, 0, 0, 0]),
        "mmap-over-stub" => (9, [stub_page, 0x1000, 7, 0x11, 3, 0]),
        "mprotect" => (10, [stub_page, 0x1000, 7, 0, 0, 0]),
        "munmap-stub" => (11, [stub_page, 0x1000, 0, 0, 0, 0]),
        "clone" => (56, [17, 0, 0, 0, 0, 0]),
        "clone-thread" => (56, [0x5_0f00, 0, 0, 0, 0, 0]),
        "fork" => (57, [0; 6]),
        "io_uring" => (425, [8, zeros.as_ptr() as u64, 0, 0, 0, 0]),
        "memfd" => (319, [canary, 0, 0, 0, 0, 0]),
        "prctl" => (157, [1, 0, 0, 0, 0, 0]),
        "seccomp" => (317, [0, 0, 0, 0, 0, 0]),
        "futex-requeue" => (202, [futex_word.as_ptr() as u64, 4, 1, 1, 0, 0]),
        "exit_group" => (231, [0; 6]),
        _ => {
            println!("hostile: unknown stub-syscall call {call}");
            return false;
        }
    };
    let target = stub_syscall_insn();
    println!("hostile: jumping onto the stub syscall at {target:#x} with {call} (nr {nr})");
    crate::stub::irq_disable();
    jump_syscall(target, nr, a)
}

/// Forged `rt_sigreturn` frames, entered through the stub's own signal restorer
/// (`mov eax, 15; syscall`, allowed from stub code).
pub(crate) fn sigreturn(case: &str) -> bool {
    let Some(restorer) = find(&[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]) else {
        println!("hostile: signal restorer not found");
        return false;
    };
    // The stub's per-vCPU area (fs:[0]) holds its alternate signal stack at +40 KiB.
    let stub_cpu: u64;
    // SAFETY: the stub keeps FS pointing at this vCPU's StubCpu; a plain load.
    unsafe { core::arch::asm!("mov {}, fs:[0]", out(reg) stub_cpu, options(nostack, readonly)) };
    let stack = leaked_stack();
    let landing_ud2 = hostile_landing_ud2 as *const () as u64;
    let landing_push = hostile_landing_push as *const () as u64;
    // Prefault what the landings touch, so no shadow miss needs a signal.
    crate::stub::prefault(landing_ud2 & !(PAGE_SIZE - 1), 2 * PAGE_SIZE, false);
    crate::stub::prefault(stack - 0x1_0000, 0x1_0000, true);
    // struct ucontext: flags, link, stack_t{sp, flags, size}, sigcontext (r8..cr2, fpstate,
    // reserved[8]), sigmask.
    let mut uc = [0u64; 48];
    let (ss_sp, ss_flags, ss_size) = (2usize, 3usize, 4usize);
    const MC: usize = 5;
    let (rdi, rsi, rdx, rax, rsp, rip, eflags, csgsfs, sigmask) = (
        MC + 8,
        MC + 9,
        MC + 12,
        MC + 13,
        MC + 15,
        MC + 16,
        MC + 17,
        MC + 18,
        37,
    );
    uc[ss_sp] = stub_cpu + 40 * 1024;
    uc[ss_flags] = 0;
    uc[ss_size] = 88 * 1024;
    uc[eflags] = 0x202;
    // cs = 0x33 (64-bit user), gs = fs = 0, ss = 0x2b.
    uc[csgsfs] = 0x33 | 0x2b << 48;
    uc[rsp] = stack - 8;
    match case {
        "sigreturn-mask" => {
            // Every signal blocked, then straight onto a refused stub system call: the
            // kernel cannot deliver SIGSYS, so it must kill the sandbox.
            uc[sigmask] = !0;
            uc[rip] = stub_syscall_insn();
            uc[rax] = 2;
            uc[rdi] = super::canary().as_ptr() as u64;
            uc[rsi] = 0o101;
            uc[rdx] = 0o644;
        }
        "sigreturn-bogus-rip" => {
            uc[sigmask] = !0;
            uc[rip] = 0x8000_dead_beef_0000;
            uc[csgsfs] = 0xffff | 0xffff << 48;
        }
        "sigreturn-bad-stack" => {
            uc[rip] = landing_push;
            uc[rsp] = 0x1000;
        }
        "sigreturn-cs32" => {
            uc[rip] = landing_ud2;
            uc[csgsfs] = 0x23 | 0x2b << 48;
        }
        "sigreturn-no-altstack" => {
            uc[ss_sp] = 0;
            uc[ss_flags] = 2; // SS_DISABLE
            uc[ss_size] = 0;
            uc[rip] = landing_ud2;
        }
        _ => return false,
    }
    let frame: &'static mut [u64; 48] = Box::leak(Box::new(uc));
    println!(
        "hostile: {case}: jumping into the stub's signal restorer at {restorer:#x} with a forged \
         frame (rip {:#x}, rsp {:#x}, sigmask {:#x})",
        frame[rip], frame[rsp], frame[sigmask]
    );
    crate::stub::irq_disable();
    // SAFETY: deliberately hostile: rt_sigreturn from stub code with a forged frame at rsp.
    unsafe {
        core::arch::asm!(
            "mov rsp, {f}",
            "jmp {t}",
            f = in(reg) frame.as_ptr(),
            t = in(reg) restorer,
            options(noreturn)
        )
    }
}

/// A leaked 64 KiB stack in the direct map; returns its (16-aligned) top.
fn leaked_stack() -> u64 {
    let s: &'static mut [u64] = Box::leak(alloc::vec![0u64; 8192].into_boxed_slice());
    (s.as_ptr() as u64 + 8 * 8192) & !15
}

core::arch::global_asm!(
    ".pushsection .text.hostile_landing, \"ax\", @progbits",
    ".globl hostile_landing_ud2",
    "hostile_landing_ud2:",
    "    ud2",
    ".globl hostile_landing_push",
    "hostile_landing_push:",
    "    push rax",
    "    push rax",
    "    ud2",
    // Where a random stub jump lands if stub code `ret`s: a fresh stack, then Rust.
    ".globl hostile_landing_ret",
    "hostile_landing_ret:",
    "    mov rsp, [rip + {stack}]",
    "    and rsp, -16",
    "    call {rust}",
    "    ud2",
    ".popsection",
    stack = sym LANDING_STACK,
    rust = sym landing_ret,
);

unsafe extern "C" {
    fn hostile_landing_ud2();
    fn hostile_landing_push();
    fn hostile_landing_ret();
}

/// Stack top for [`hostile_landing_ret`].
static LANDING_STACK: AtomicU64 = AtomicU64::new(0);

extern "sysv64" fn landing_ret() -> ! {
    crate::stub::irq_disable();
    println!("hostile: stub-random: stub code returned to the guest");
    hcall::shutdown(0)
}

/// `hostile=stub-random seed=N`: jump to a pseudo-random offset of a pseudo-random stub entry
/// with garbage in every register but `rsp`, whose top word returns to a landing pad.
pub(crate) fn random(seed: u64) -> bool {
    let mut rng = super::Rng::new(seed);
    let t = super::stub_table();
    let e = entries(&t);
    let idx = (rng.next() % e.len() as u64) as usize;
    let off = rng.next() % 48;
    let target = e[idx] + off;
    LANDING_STACK.store(leaked_stack(), Ordering::Relaxed);
    let stack = leaked_stack();
    crate::stub::prefault(stack - 0x1_0000, 0x1_0000, true);
    let buf = leaked_stack() - 0x8000;
    let mut reg = || {
        let v = rng.next();
        match v % 4 {
            0 => buf + (v >> 40) % 0x4000,
            1 => v & 0xffff,
            _ => v,
        }
    };
    let regs: [u64; 13] = core::array::from_fn(|_| reg());
    // The entry sees `rsp` ≡ 8 (mod 16) with a return address to the landing pad on top.
    let rsp = stack - 72;
    // SAFETY: `rsp` lies in the leaked stack just prefaulted.
    unsafe { (rsp as *mut u64).write(hostile_landing_ret as *const () as u64) };
    println!("hostile: stub-random seed {seed}: jumping to entry {idx} + {off:#x} = {target:#x}");
    crate::stub::irq_disable();
    // SAFETY: deliberately hostile; whatever the stub does is contained by the sandbox.
    unsafe {
        core::arch::asm!(
            "mov rsp, rax",
            "mov rbp, rdx",
            "push r14",
            "mov rax, [r15]",
            "mov rbx, [r15 + 8]",
            "mov rcx, [r15 + 16]",
            "mov rdx, [r15 + 24]",
            "mov rsi, [r15 + 32]",
            "mov rdi, [r15 + 40]",
            "mov r8, [r15 + 48]",
            "mov r9, [r15 + 56]",
            "mov r10, [r15 + 64]",
            "mov r11, [r15 + 72]",
            "mov r12, [r15 + 80]",
            "mov r13, [r15 + 88]",
            "mov r14, [r15 + 96]",
            "mov r15, [r15 + 8]",
            "ret",
            in("rax") rsp,
            in("rdx") regs[12],
            in("r14") target,
            in("r15") regs.as_ptr(),
            options(noreturn)
        )
    }
}
