//! `hostile=syscalls`: raw host system calls of every dangerous kind from guest code. Each
//! must arrive as the `Syscall` exception (trapped, not executed); the kernel's handler
//! answers `-ENOSYS`.

use core::sync::atomic::Ordering;

use pvmux_hypercalls::frame::SYSCALL_COMPAT;

use crate::irq::IrqGuard;
use crate::println;
use crate::trap::STATS;

/// `-ENOSYS`, what the kernel's trap handler answers.
const ENOSYS: i64 = -38;

/// Executes a raw `syscall` with six arguments from guest code.
pub(crate) fn raw6(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the seccomp filter traps every system call made outside stub code; the stub
    // delivers it as `Vector::Syscall` and the kernel answers -ENOSYS and resumes after the
    // instruction (rcx/r11 clobbered as by a real `syscall`). Nothing is executed on the host.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

/// Runs one raw call and checks that it was trapped with the right number and answered
/// -ENOSYS. `compat` expects the non-native bit ([`SYSCALL_COMPAT`]) in the trapped number.
fn check(name: &str, nr: u64, run: impl FnOnce() -> i64, compat: bool) -> bool {
    let _irq = IrqGuard::new();
    let n0 = STATS.syscalls.load(Ordering::Relaxed);
    let ret = run();
    let trapped = STATS.syscalls.load(Ordering::Relaxed) == n0 + 1;
    let got = STATS.last_syscall_nr.load(Ordering::Relaxed);
    let want = nr | if compat { SYSCALL_COMPAT } else { 0 };
    let ok = trapped && got == want && ret == ENOSYS;
    if ok {
        println!("hostile: raw syscall {name} (nr {nr}) trapped, returned {ret}");
    } else {
        println!(
            "hostile: raw syscall {name} (nr {nr}) NOT trapped as expected: trapped={trapped} \
             nr={got:#x} returned {ret}"
        );
    }
    ok
}

/// `hostile=syscalls hostpid=N canary=PATH`.
pub(crate) fn run() -> bool {
    let canary = super::canary().as_ptr() as u64;
    let host = super::host_pid();
    static SH: &[u8] = b"/bin/sh\0";
    static DASH_C: &[u8] = b"-c\0";
    let script = {
        let mut s = alloc::string::String::from("echo pwned > ");
        s.push_str(super::canary_path());
        super::c_string(&s)
    };
    let argv: &'static [u64; 4] = alloc::boxed::Box::leak(alloc::boxed::Box::new([
        SH.as_ptr() as u64,
        DASH_C.as_ptr() as u64,
        script.as_ptr() as u64,
        0,
    ]));
    let zeros: &'static [u64; 16] = alloc::boxed::Box::leak(alloc::boxed::Box::new([0; 16]));
    let stub_text = super::stub_table().hypercall & !0xfff;
    const O_CREAT_WRONLY: u64 = 0o101;
    const AT_FDCWD: u64 = -100i64 as u64;
    const SIGKILL: u64 = 9;
    const SIGCHLD: u64 = 17;
    const PTRACE_ATTACH: u64 = 16;
    let calls: [(&str, u64, [u64; 6]); 21] = [
        (
            "open(canary, O_CREAT)",
            2,
            [canary, O_CREAT_WRONLY, 0o644, 0, 0, 0],
        ),
        (
            "openat(AT_FDCWD, canary, O_CREAT)",
            257,
            [AT_FDCWD, canary, O_CREAT_WRONLY, 0o644, 0, 0],
        ),
        ("creat(canary)", 85, [canary, 0o644, 0, 0, 0, 0]),
        ("unlink(canary)", 87, [canary, 0, 0, 0, 0, 0]),
        ("socket(AF_INET, SOCK_STREAM)", 41, [2, 1, 0, 0, 0, 0]),
        ("socket(AF_UNIX, SOCK_DGRAM)", 41, [1, 2, 0, 0, 0, 0]),
        (
            "execve(/bin/sh -c 'echo pwned > canary')",
            59,
            [SH.as_ptr() as u64, argv.as_ptr() as u64, 0, 0, 0, 0],
        ),
        (
            "ptrace(PTRACE_ATTACH, host)",
            101,
            [PTRACE_ATTACH, host, 0, 0, 0, 0],
        ),
        ("kill(host, SIGKILL)", 62, [host, SIGKILL, 0, 0, 0, 0]),
        (
            "tgkill(host, host, SIGKILL)",
            234,
            [host, host, SIGKILL, 0, 0, 0],
        ),
        ("kill(-1, SIGKILL)", 62, [-1i64 as u64, SIGKILL, 0, 0, 0, 0]),
        (
            "mmap(anonymous, RWX)",
            9,
            [0, 0x1000, 7, 0x22, -1i64 as u64, 0],
        ),
        (
            "mprotect(stub text, RWX)",
            10,
            [stub_text, 0x1000, 7, 0, 0, 0],
        ),
        ("munmap(stub text)", 11, [stub_text, 0x1000, 0, 0, 0, 0]),
        ("prctl(PR_SET_PDEATHSIG, 0)", 157, [1, 0, 0, 0, 0, 0]),
        ("seccomp(SET_MODE_STRICT)", 317, [0, 0, 0, 0, 0, 0]),
        (
            "clone(SIGCHLD) (a new process)",
            56,
            [SIGCHLD, 0, 0, 0, 0, 0],
        ),
        ("fork", 57, [0; 6]),
        ("vfork", 58, [0; 6]),
        ("memfd_create", 319, [canary, 0, 0, 0, 0, 0]),
        (
            "io_uring_setup",
            425,
            [8, zeros.as_ptr() as u64, 0, 0, 0, 0],
        ),
    ];
    let mut all = true;
    for (name, nr, a) in calls {
        all &= check(name, nr, || raw6(nr, a), false);
    }
    all &= int80_inner();
    println!(
        "hostile: raw syscalls {}",
        if all {
            "all trapped"
        } else {
            "NOT all trapped"
        }
    );
    all
}

/// `int 0x80` (the 32-bit system call gate) from 64-bit guest code: i386 `open` (5) and
/// `kill` (37) of the host.
fn int80_inner() -> bool {
    let canary = super::canary().as_ptr() as u64;
    let host = super::host_pid();
    let mut ok = true;
    for (name, nr, b, c) in [
        ("int 0x80 open(canary, O_CREAT)", 5u64, canary, 0o101u64),
        ("int 0x80 kill(host, SIGKILL)", 37, host, 9),
    ] {
        ok &= check(
            name,
            nr,
            || {
                let ret: i64;
                // SAFETY: `int 0x80` is trapped like `syscall` (arch i386, number with bit 63
                // set in the frame) and resumed after the instruction with -ENOSYS in rax.
                unsafe {
                    core::arch::asm!(
                        "xchg {b}, rbx",
                        "int 0x80",
                        "xchg {b}, rbx",
                        b = inout(reg) b => _,
                        inlateout("rax") nr => ret,
                        in("rcx") c, in("rdx") 0o644u64,
                        options(nostack),
                    )
                };
                // The 32-bit return value is sign-extended from eax by the handler's rax.
                ret
            },
            true,
        );
    }
    ok
}

/// `hostile=int80`.
pub(crate) fn int80() -> bool {
    int80_inner()
}

/// Host `uretprobe` (335) and `uprobe` (336): Linux (6.11+ / 6.17+) runs them without
/// consulting seccomp (`seccomp_uprobe_exception`), so they are *not* trapped on such hosts.
/// Without a uprobe the host attached to this process they do nothing but fail: `uprobe`
/// returns an error (`-ENXIO`; `-EPROTO` in some versions) because the caller is not in a
/// `[uprobes-trampoline]` mapping, `uretprobe` sends `SIGILL` (no return-probe trampoline),
/// which the stub delivers as `#UD` — caught here by a fixup. On older hosts both are trapped
/// like any other call (`-ENOSYS`).
pub(crate) fn uprobe_calls() -> bool {
    const ENXIO: i64 = -6;
    const EPROTO: i64 = -71;
    let _irq = IrqGuard::new();
    // uprobe (336).
    let n0 = STATS.syscalls.load(Ordering::Relaxed);
    let ret = raw6(336, [0; 6]);
    let trapped = STATS.syscalls.load(Ordering::Relaxed) != n0;
    let uprobe_ok = if trapped {
        ret == ENOSYS
    } else {
        ret == ENXIO || ret == EPROTO
    };
    println!(
        "hostile: uprobe (nr 336) {} returned {ret}",
        if trapped {
            "trapped,"
        } else {
            "passed seccomp,"
        }
    );
    // uretprobe (335), with a #UD fixup armed around the `syscall`.
    let fixup = crate::trap::this_fixup();
    fixup.arm(pvmux_hypercalls::Vector::InvalidOpcode);
    let slot = fixup.resume_slot();
    let n0 = STATS.syscalls.load(Ordering::Relaxed);
    let ret: i64;
    // SAFETY: a raw `syscall` (335) from guest code: trapped (-ENOSYS), or run by the host
    // kernel, which sends SIGILL after it (rip after the instruction); the armed #UD fixup
    // resumes at label 2, which is the same place. `slot` is this vCPU's fixup resume word;
    // events are disabled, so the thread stays on this vCPU.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{slot}], {tmp}",
            "syscall",
            "2:",
            slot = in(reg) slot,
            tmp = out(reg) _,
            inlateout("rax") 335u64 => ret,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        )
    };
    let trapped = STATS.syscalls.load(Ordering::Relaxed) != n0;
    let ud = fixup.disarm().is_some();
    let uretprobe_ok = if trapped { ret == ENOSYS && !ud } else { ud };
    println!(
        "hostile: uretprobe (nr 335) {}",
        match (trapped, ud) {
            (true, _) => alloc::format!("trapped, returned {ret}"),
            (false, true) => alloc::string::String::from("passed seccomp, SIGILL (#UD)"),
            (false, false) => alloc::format!("passed seccomp, returned {ret}"),
        }
    );
    uprobe_ok && uretprobe_ok
}
