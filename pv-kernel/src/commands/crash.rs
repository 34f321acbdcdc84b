//! The crash commands of the test kernel (`diagnostics` feature): `panic`,
//! `crash=double-fault`, `crash=stub-syscall` and `syscall`. Each one misbehaves on purpose so
//! the tests can check the host's crash report and the seccomp filter.

use core::sync::atomic::Ordering;

use crate::irq::IrqGuard;
use crate::selftest::raw_syscall;
use crate::trap::STATS;
use crate::{hcall, println};

/// `panic`: a deliberate panic from a named function (the crash report names it).
#[inline(never)]
pub(crate) fn requested_panic() -> ! {
    panic!("requested panic")
}

/// `crash=double-fault`: raise #UD on a stack the page tables do not map, so the stub cannot
/// deliver the exception (the host reports a double fault).
#[inline(never)]
pub(crate) fn double_fault() -> ! {
    println!("pvmux-kernel: raising #UD on an unmapped stack");
    let bad_stack = pvmux_hypercalls::layout::GUEST_FREE_BASE + (3 << 40);
    // SAFETY: deliberately crashes this tenant; nothing returns.
    unsafe { core::arch::asm!("mov rsp, {0}", "ud2", in(reg) bad_stack, options(noreturn)) }
}

/// `crash=stub-syscall`: a hostile kernel jumps straight onto a `syscall` instruction inside
/// stub code with `open("/etc/passwd")` in its registers. The seccomp filter refuses it (the
/// call is not executed) and the stub ends the tenant with an ABI-violation record.
#[inline(never)]
pub(crate) fn stub_syscall() -> ! {
    static PATH: &[u8] = b"/etc/passwd\0";
    let start = crate::stub::halt_entry_address();
    let target = (start..start + 0x1_0000).find(|&a| {
        // SAFETY: stub code is mapped readable in the sandbox; scanning stops at the first hit.
        unsafe { (a as *const [u8; 2]).read_unaligned() == [0x0f, 0x05] }
    });
    let Some(target) = target else {
        println!("pvmux-kernel: no syscall instruction found in stub code");
        hcall::shutdown(1)
    };
    println!("pvmux-kernel: jumping into stub code at {target:#x} with open(\"/etc/passwd\")");
    // SAFETY: deliberately hostile; the filter refuses the call and the tenant ends.
    unsafe {
        core::arch::asm!(
            "jmp {t}",
            t = in(reg) target,
            in("rax") 2u64,
            in("rdi") PATH.as_ptr(),
            in("rsi") 0u64,
            in("rdx") 0u64,
            options(noreturn)
        )
    }
}

/// Runs one raw system call and reports whether it was trapped; returns (trapped, result).
fn trapped_syscall(name: &str, nr: u64, a0: u64, a1: u64, a2: u64) -> (bool, i64) {
    let _irq = IrqGuard::new();
    let n0 = STATS.syscalls.load(Ordering::Relaxed);
    let ret = raw_syscall(nr, a0, a1, a2);
    let trapped = STATS.syscalls.load(Ordering::Relaxed) == n0 + 1;
    drop(_irq);
    if trapped {
        let got = STATS.last_syscall_nr.load(Ordering::Relaxed);
        println!("raw syscall {name} trapped: nr={got}, returned {ret}");
    } else {
        println!("raw syscall {name} NOT trapped: returned {ret}");
    }
    (trapped, ret)
}

/// `syscall`: raw Linux system calls must never reach the host.
pub(crate) fn raw_syscalls() -> ! {
    const SYS_READ: u64 = 0;
    const SYS_WRITE: u64 = 1;
    const SYS_OPEN: u64 = 2;
    static PATH: &[u8] = b"/etc/passwd\0";
    static LEAK: &[u8] = b"LEAK\n";
    let mut all = true;
    let (t, fd) = trapped_syscall("open", SYS_OPEN, PATH.as_ptr() as u64, 0, 0);
    all &= t;
    if fd >= 0 {
        let mut buf = [0u8; 256];
        let (t, n) = trapped_syscall(
            "read",
            SYS_READ,
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        );
        all &= t;
        if n > 0 {
            let n = (n as usize).min(buf.len());
            println!(
                "read from host file: {:?}",
                core::str::from_utf8(&buf[..n]).unwrap_or("<binary>")
            );
        }
    }
    let (t, _) = trapped_syscall(
        "write",
        SYS_WRITE,
        1,
        LEAK.as_ptr() as u64,
        LEAK.len() as u64,
    );
    all &= t;
    let code = if all { 0 } else { 1 };
    println!(
        "pvmux-kernel: raw syscalls {}; exiting with {code}",
        if all {
            "all trapped"
        } else {
            "NOT all trapped"
        }
    );
    hcall::shutdown(code)
}
