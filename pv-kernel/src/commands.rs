//! The non-selftest command-line commands: `exit=N`, `panic`, `syscall`.

use core::sync::atomic::Ordering;

use crate::irq::IrqGuard;
use crate::selftest::raw_syscall;
use crate::trap::STATS;
use crate::{hcall, println};

/// `exit=N`.
pub(crate) fn exit(code: u64) -> ! {
    println!("pvmux-kernel: exiting with {code}");
    hcall::shutdown(code)
}

/// `panic`: a deliberate panic from a named function (the crash report names it).
#[inline(never)]
pub(crate) fn requested_panic() -> ! {
    panic!("requested panic")
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
