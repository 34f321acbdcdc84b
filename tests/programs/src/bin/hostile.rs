//! `hostile SUBCOMMAND [ARGS]`: a guest user program that attacks its own user sandbox, the
//! guest kernel and the host. Every subcommand prints one line per attempt and exits 0 when
//! every attempt was contained as expected, 1 when something got through, 2 on bad usage,
//! 3 when the attack could not be set up.
//!
//! * `host-syscalls CANARY [HOSTPID]`: host-only system calls (raw socket, ptrace, kill and
//!   `process_vm_readv` of HOSTPID, open/execve of the host path CANARY, userfaultfd,
//!   perf_event_open, io_uring_setup, bpf, mount, reboot, unshare, setns, personality, an
//!   x32 call) must all fail; `int 0x80` (in a child) must kill the child.
//! * `stub-jump MEM_BYTES`: finds the user stub's `syscall; pop rbp; ret` code through the
//!   signal frames left on the stub's signal stacks and calls it with crafted registers, each
//!   in a child: `mmap(MAP_SHARED|MAP_FIXED, fd 3)` of the last page of guest memory (in the
//!   user pool: allowed, the child prints what it read and exits 0) and of offset 0 (the
//!   guest kernel's memory, below the pool: the filter must kill the child's sandbox, which
//!   the guest kernel reports as SIGKILL).
//! * `ctx-scribble [slots|all]`: a child fills its context region (`USER_CTX_BASE`, every
//!   slot; with `all` the header too) with garbage and makes system calls; whatever happens
//!   to it, the parent must still run and fork.
//! * `read-kernel`: children read where the guest kernel lives in the kernel sandbox (direct
//!   map, kernel region), address 0 and the context guard; each must die of SIGSEGV. An
//!   anonymous `MAP_FIXED` mapping over the kernel's addresses must read as zeros.
//! * `fork-bomb N`: forks sleeping children until `fork` fails (at most N), kills and reaps
//!   them all, then forks once more.
//! * `memory-hog [MAX_MIB]`: a child maps and touches memory until it fails or dies; the
//!   parent then allocates and touches 4 MiB itself.
//! * `spin`: spins forever.
//! * `patch-image POOL_BASE POOL_LEN TARGET FROM TO`: runs TARGET once (so the guest kernel
//!   caches its image), then a child maps the whole user pool through stub code, finds every
//!   pool copy of TARGET's first page and overwrites the first FROM in the file with TO
//!   (same length) there, and exits; then TARGET runs again. The second run's output must be
//!   the unpatched one: the kernel's image cache must not carry the patch past the attacker.
//!   With a sixth argument RUN, RUN is the program run before and after (TARGET then being,
//!   e.g., a shared library whose code RUN maps).
//! * `spin-and-check`: a child spins while the parent sleeps 100 × 1 ms; the parent must be
//!   done within 5 s, then kills the child.

use std::arch::asm;
use std::ffi::CString;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the user stub maps the context region (`pvmux_hypercalls::user::USER_CTX_BASE`).
const USER_CTX_BASE: u64 = 0x4800_0000_0000;
/// The user stub's per-slot areas (`USER_CTX_BASE + 1 GiB`).
const USER_AREAS_BASE: u64 = USER_CTX_BASE + 0x4000_0000;
/// Size of one area, offset and size of its signal stack.
const AREA_SIZE: u64 = 128 * 1024;
const AREA_ALTSTACK: u64 = 40 * 1024;
const ALTSTACK_SIZE: u64 = AREA_SIZE - AREA_ALTSTACK;
/// One context slot; slot 0 starts one page into the region.
const SLOT_SIZE: u64 = 4 * 4096;
const SLOT_OFFSET: u64 = 4096;
/// Most slots a tenant has (`MAX_VCPUS`).
const MAX_SLOTS: u32 = 64;
/// The guest kernel's direct map and kernel region in the kernel sandbox.
const KERNEL_DIRECT_MAP: u64 = 0x1000_0000_0000;
const KERNEL_REGION: u64 = 0x1200_0000_0000;
/// End of guest user addresses.
const USER_END: u64 = 0x4000_0000_0000;
/// The guest memory memfd in every sandbox.
const GUEST_MEM_FD: u64 = 3;

const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;

mod nr {
    pub(crate) const MMAP: u64 = 9;
    pub(crate) const PAUSE: u64 = 34;
    pub(crate) const GETPID: u64 = 39;
    pub(crate) const SOCKET: u64 = 41;
    pub(crate) const FORK: u64 = 57;
    pub(crate) const EXECVE: u64 = 59;
    pub(crate) const EXIT_GROUP: u64 = 231;
    pub(crate) const WAIT4: u64 = 61;
    pub(crate) const KILL: u64 = 62;
    pub(crate) const PTRACE: u64 = 101;
    pub(crate) const PERSONALITY: u64 = 135;
    pub(crate) const MOUNT: u64 = 165;
    pub(crate) const REBOOT: u64 = 169;
    pub(crate) const OPEN: u64 = 2;
    pub(crate) const UNSHARE: u64 = 272;
    pub(crate) const SETNS: u64 = 308;
    pub(crate) const PROCESS_VM_READV: u64 = 310;
    pub(crate) const PERF_EVENT_OPEN: u64 = 298;
    pub(crate) const USERFAULTFD: u64 = 323;
    pub(crate) const BPF: u64 = 321;
    pub(crate) const IO_URING_SETUP: u64 = 425;
    pub(crate) const X32_BIT: u64 = 0x4000_0000;
}

/// A raw system call.
fn sys(n: u64, a: [u64; 6]) -> i64 {
    let r: i64;
    // SAFETY: a plain `syscall`; the calls made here take only integers or pointers to live
    // buffers, and the ones that could change this process's memory (mmap) are given
    // addresses nothing else uses.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as i64 => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    r
}

fn sys0(n: u64) -> i64 {
    sys(n, [0; 6])
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // Ignoring errors: the exit status carries the verdict.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn exit_now(code: i32) -> ! {
    sys(nr::EXIT_GROUP, [code as u64, 0, 0, 0, 0, 0]);
    unreachable!("exit_group returned");
}

/// `fork()`: `Ok(0)` in the child, `Ok(pid)` in the parent, `Err(errno)`.
fn fork() -> Result<i64, i64> {
    let r = sys0(nr::FORK);
    if r < 0 {
        Err(-r)
    } else {
        Ok(r)
    }
}

/// How a waited-for child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exited {c}"),
            Status::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

fn wait(pid: i64) -> Result<Status, i64> {
    let mut st: i32 = 0;
    let r = sys(
        nr::WAIT4,
        [pid as u64, &mut st as *mut i32 as u64, 0, 0, 0, 0],
    );
    if r < 0 {
        return Err(-r);
    }
    Ok(if st & 0x7f == 0 {
        Status::Exited((st >> 8) & 0xff)
    } else {
        Status::Signaled(st & 0x7f)
    })
}

/// Says how stub-jump's child `what` ended; whether it was killed with `SIGKILL`, as it must be.
fn says_killed(what: &str, st: Status) -> bool {
    let killed = st == Status::Signaled(SIGKILL);
    say(&format!(
        "stub-jump: {what} {st}{}",
        if killed { "" } else { " (EXPECTED SIGKILL)" }
    ));
    killed
}

/// Runs `f` in a forked child (its return value is the exit code) and waits for it.
fn in_child(f: impl FnOnce() -> i32) -> Status {
    match fork() {
        Ok(0) => exit_now(f()),
        Ok(pid) => wait(pid).unwrap_or_else(|e| {
            say(&format!("wait4 failed: errno {e}"));
            exit_now(3)
        }),
        Err(e) => {
            say(&format!("fork failed: errno {e}"));
            exit_now(3)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let ok = match arg(1) {
        Some("host-syscalls") => match arg(2) {
            Some(canary) => host_syscalls(canary, arg(3).and_then(|p| p.parse().ok())),
            None => return usage(),
        },
        Some("stub-jump") => match arg(2).and_then(|m| m.parse().ok()) {
            Some(mem) => stub_jump(mem),
            None => return usage(),
        },
        Some("ctx-scribble") => ctx_scribble(arg(2) == Some("all")),
        Some("read-kernel") => read_kernel(),
        Some("fork-bomb") => match arg(2).and_then(|n| n.parse().ok()) {
            Some(n) => fork_bomb(n),
            None => return usage(),
        },
        Some("memory-hog") => memory_hog(arg(2).and_then(|n| n.parse().ok()).unwrap_or(4096)),
        Some("spin") => loop {
            core::hint::spin_loop();
        },
        Some("spin-and-check") => spin_and_check(),
        Some("patch-image") => match (
            arg(2).and_then(|m| m.parse().ok()),
            arg(3).and_then(|m| m.parse().ok()),
            arg(4),
            arg(5),
            arg(6),
        ) {
            (Some(base), Some(len), Some(target), Some(from), Some(to))
                if from.len() == to.len() =>
            {
                let run = arg(7).unwrap_or(target);
                patch_image(base, len, target, from.as_bytes(), to.as_bytes(), run)
            }
            _ => return usage(),
        },
        _ => return usage(),
    };
    match ok {
        Ok(true) => {
            say("hostile: contained");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            say("hostile: NOT CONTAINED");
            ExitCode::from(1)
        }
        Err(e) => {
            say(&format!("hostile: setup failed: {e}"));
            ExitCode::from(3)
        }
    }
}

fn usage() -> ExitCode {
    say("usage: hostile host-syscalls CANARY [HOSTPID] | stub-jump MEM_BYTES | ctx-scribble [slots|all] | read-kernel | fork-bomb N | memory-hog [MAX_MIB] | spin | spin-and-check");
    ExitCode::from(2)
}

type Verdict = Result<bool, String>;

/// Prints `name: result` and whether it failed as it must.
fn expect_failure(name: &str, r: i64) -> bool {
    if r < 0 {
        say(&format!("{name}: refused (errno {})", -r));
        true
    } else {
        say(&format!("{name}: SUCCEEDED ({r})"));
        false
    }
}

fn host_syscalls(canary: &str, host_pid: Option<u64>) -> Verdict {
    let path = CString::new(canary).map_err(|e| e.to_string())?;
    let escaped = CString::new(format!("/../../../../../..{canary}")).map_err(|e| e.to_string())?;
    let argv = [path.as_ptr() as u64, 0];
    let hp = host_pid.unwrap_or(1_000_000);
    let mut buf = [0u8; 64];
    let local = [buf.as_mut_ptr() as u64, buf.len() as u64];
    let remote = [0x1000u64, 64];
    let mut ok = true;
    let calls: [(&str, u64, [u64; 6]); 20] = [
        ("socket(AF_INET, SOCK_RAW)", nr::SOCKET, [2, 3, 0, 0, 0, 0]),
        // (NETLINK_ROUTE is the guest kernel's own, answered from its device table; the
        // protocols that would reach a kernel's audit log or device events are not.)
        (
            "socket(AF_NETLINK, NETLINK_AUDIT)",
            nr::SOCKET,
            [16, 3, 9, 0, 0, 0],
        ),
        ("ptrace(ATTACH host pid)", nr::PTRACE, [16, hp, 0, 0, 0, 0]),
        ("kill(host pid, SIGKILL)", nr::KILL, [hp, 9, 0, 0, 0, 0]),
        ("kill(host pid, 0)", nr::KILL, [hp, 0, 0, 0, 0, 0]),
        (
            "open(canary)",
            nr::OPEN,
            [path.as_ptr() as u64, 0, 0, 0, 0, 0],
        ),
        (
            "open(/../..canary)",
            nr::OPEN,
            [escaped.as_ptr() as u64, 0, 0, 0, 0, 0],
        ),
        (
            "open(canary, O_CREAT|O_WRONLY|O_TRUNC)",
            nr::OPEN,
            [path.as_ptr() as u64, 0o1101, 0o644, 0, 0, 0],
        ),
        (
            "execve(canary)",
            nr::EXECVE,
            [path.as_ptr() as u64, argv.as_ptr() as u64, 0, 0, 0, 0],
        ),
        (
            // (memfd_create is the guest kernel's own now: a memfd of guest memory.)
            "userfaultfd",
            nr::USERFAULTFD,
            [0, 0, 0, 0, 0, 0],
        ),
        (
            "perf_event_open",
            nr::PERF_EVENT_OPEN,
            [path.as_ptr() as u64, 0, u64::MAX, u64::MAX, 0, 0],
        ),
        (
            "io_uring_setup",
            nr::IO_URING_SETUP,
            [8, buf.as_mut_ptr() as u64, 0, 0, 0, 0],
        ),
        ("bpf", nr::BPF, [0, buf.as_mut_ptr() as u64, 64, 0, 0, 0]),
        (
            "mount(tmpfs)",
            nr::MOUNT,
            [path.as_ptr() as u64, path.as_ptr() as u64, 0, 0, 0, 0],
        ),
        (
            "reboot(POWER_OFF)",
            nr::REBOOT,
            [0xfee1_dead, 672_274_793, 0x4321_fedc, 0, 0, 0],
        ),
        (
            "unshare(NEWUSER|NEWNET)",
            nr::UNSHARE,
            [0x1000_0000 | 0x4000_0000, 0, 0, 0, 0, 0],
        ),
        ("setns(0, 0)", nr::SETNS, [0, 0, 0, 0, 0, 0]),
        (
            "process_vm_readv(host pid)",
            nr::PROCESS_VM_READV,
            [hp, local.as_ptr() as u64, 1, remote.as_ptr() as u64, 1, 0],
        ),
        (
            "personality(PER_LINUX32)",
            nr::PERSONALITY,
            [8, 0, 0, 0, 0, 0],
        ),
        ("x32 getpid", nr::X32_BIT | nr::GETPID, [0; 6]),
    ];
    for (name, n, a) in calls {
        ok &= expect_failure(name, sys(n, a));
    }
    // The 32-bit system call entry: the filter kills the sandbox whoever makes it (or the
    // host has no ia32 emulation and it is a #GP). Either way the child must not survive.
    let st = in_child(|| {
        let r: i64;
        // SAFETY: `int 0x80` with eax = 20 (i386 getpid) touches no memory.
        unsafe {
            asm!("int 0x80", inlateout("rax") 20i64 => r, options(nostack));
        }
        say(&format!("int 0x80: RETURNED {r}"));
        0
    });
    let died = matches!(st, Status::Signaled(_));
    say(&format!(
        "int 0x80: child {st}{}",
        if died { "" } else { " (NOT KILLED)" }
    ));
    ok &= died;
    Ok(ok)
}

/// The stack pointer stub-jump's stub-fault child runs stub code with: in the user window,
/// never mapped.
const STUB_FAULT_RSP: u64 = 0x3f00_0002_0000;

/// Finds the user stub's signal restorer (`mov eax, 15; syscall`) through the `rt_sigframe`s
/// the host kernel left on the stub's signal stacks: the frame's first word is the restorer,
/// followed by the `ucontext`, whose `uc_stack` records the signal stack.
fn find_restorer() -> Option<u64> {
    // SAFETY: the context region header is mapped in every user sandbox.
    let slots = unsafe { ((USER_CTX_BASE + 12) as *const u32).read_volatile() };
    for i in 0..slots.min(MAX_SLOTS) {
        let area = USER_AREAS_BASE + u64::from(i) * AREA_SIZE;
        let ss_sp = area + AREA_ALTSTACK;
        let words = (ALTSTACK_SIZE / 8) as usize;
        let w = |j: usize| -> u64 {
            // SAFETY: the stub maps one area per slot, read-write, for its whole life.
            unsafe { ((ss_sp + 8 * j as u64) as *const u64).read_volatile() }
        };
        for j in 3..words - 2 {
            if w(j) != ss_sp || w(j + 2) != ALTSTACK_SIZE {
                continue;
            }
            let cand = w(j - 3);
            if !(USER_CTX_BASE..0x8000_0000_0000).contains(&cand) {
                continue;
            }
            let code: [u8; 7] = [0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05];
            // SAFETY: a pretcode the host kernel wrote points at mapped stub code.
            let bytes = unsafe { (cand as *const [u8; 7]).read_volatile() };
            if bytes == code {
                return Some(cand);
            }
        }
    }
    None
}

/// Finds `syscall; pop rbp; ret` in the stub's code after its restorer (same text segment).
fn find_gadget(restorer: u64) -> Option<u64> {
    let want = [0x0f, 0x05, 0x5d, 0xc3];
    // The restorer sits near the start of the stub's code; its wrappers follow within a few
    // KiB. Stay within 16 KiB of code after it.
    (restorer..restorer + 16 * 1024).find(|&a| {
        // SAFETY: stub code, mapped readable (bounded scan inside its text segment).
        let b = unsafe { (a as *const [u8; 4]).read_volatile() };
        b == want
    })
}

/// Calls `syscall; pop rbp; ret` at `gadget` with `rax = n` and the arguments: the system
/// call is made from stub code.
fn stub_call(gadget: u64, n: u64, a: [u64; 6]) -> i64 {
    let r: i64;
    // SAFETY: pushes a return address and rbp for the gadget's `pop rbp; ret`, which bring
    // execution back to label 2 with the stack as it was; the system call itself is the
    // attack (it may map memory at the otherwise unused address `a[0]` in the user window, or
    // end the process).
    unsafe {
        asm!(
            "lea r11, [rip + 2f]",
            "push r11",
            "push rbp",
            "jmp {g}",
            "2:",
            g = in(reg) gadget,
            inlateout("rax") n as i64 => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            out("rcx") _, out("r11") _,
        );
    }
    r
}

/// `mmap(addr, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd 3, offset)` from stub code.
fn stub_map(offset: u64) -> Result<(u64, i64), String> {
    let restorer = find_restorer().ok_or("no signal frame with the stub's restorer found")?;
    let gadget = find_gadget(restorer).ok_or("no `syscall; pop rbp; ret` in stub code")?;
    let addr = 0x3f00_0000_0000u64;
    let r = stub_call(
        gadget,
        nr::MMAP,
        [addr, 4096, 1, 0x01 | 0x10, GUEST_MEM_FD, offset],
    );
    Ok((addr, r))
}

fn stub_jump(mem: u64) -> Verdict {
    let restorer = find_restorer().ok_or("no signal frame with the stub's restorer found")?;
    let gadget = find_gadget(restorer).ok_or("no `syscall; pop rbp; ret` in stub code")?;
    say(&format!(
        "stub-jump: restorer at {restorer:#x}, gadget at +{:#x}",
        gadget - restorer
    ));
    // 1. Positive control: the last page of guest memory is in the user pool, which the
    // filter lets stub code map (documented: a user program can reach any pool page).
    let top = mem - 4096;
    let st = in_child(|| match stub_map(top) {
        Ok((addr, r)) if r == addr as i64 => {
            // SAFETY: just mapped readable at `addr`.
            let v = unsafe { (addr as *const u64).read_volatile() };
            say(&format!(
                "stub-jump: mmap of pool page {top:#x} from stub code mapped it (first word {v:#x})"
            ));
            0
        }
        Ok((_, r)) => {
            say(&format!(
                "stub-jump: mmap of pool page {top:#x} returned {r}"
            ));
            4
        }
        Err(e) => {
            say(&format!("stub-jump: {e}"));
            3
        }
    });
    say(&format!("stub-jump: pool-page child {st}"));
    if st != Status::Exited(0) {
        return Err(format!("positive control failed: {st}"));
    }
    // 2. The attack: offset 0 is the guest kernel's memory (below the pool).
    let mut ok = true;
    for off in [0u64, 0x20_0000] {
        let st = in_child(|| match stub_map(off) {
            Ok((_, r)) => {
                say(&format!(
                    "stub-jump: mmap of kernel memory {off:#x} from stub code RETURNED {r}"
                ));
                1
            }
            Err(e) => {
                say(&format!("stub-jump: {e}"));
                3
            }
        });
        ok &= says_killed(&format!("kernel-memory child (offset {off:#x})"), st);
    }
    // 2b. What a template's child does before its lock filter (clone, thread set-up, its
    // control page), and tgkill: once user code runs, each kills the sandbox.
    let word = 0x3f00_0001_0000u64; // unmapped: the call must not get as far as using it
    for (name, n, a) in [
        ("clone-fork", 56, [0x1000 | 17, 0, word, 0, 0, 0]),
        ("clone-thread", 56, [0x50f00, word, 0, 0, 0, 0]),
        ("close-ctl", 3, [4, 0, 0, 0, 0, 0]),
        (
            "mmap-ctl",
            nr::MMAP,
            [0x0800_0000_0000, 4096, 3, 0x11, 4, 4096],
        ),
        ("timer_create", 222, [1, 0, word, 0, 0, 0]),
        ("sigaltstack", 131, [0, word, 0, 0, 0, 0]),
        ("gettid", 186, [0; 6]),
        ("getpid", nr::GETPID, [0; 6]),
        ("wait4", nr::WAIT4, [u64::MAX, 0, 1, 0, 0, 0]),
        ("arch_prctl-set-gs", 158, [0x1001, 0, 0, 0, 0, 0]),
        ("tgkill", 234, [1, 1, 34, 0, 0, 0]),
    ] {
        // (The child's sandbox has its own stub, maybe at another address.)
        let st = in_child(|| {
            let Some(g) = find_restorer().and_then(find_gadget) else {
                say("stub-jump: no stub gadget in the child");
                return 3;
            };
            let r = stub_call(g, n, a);
            say(&format!("stub-jump: {name} from stub code RETURNED {r}"));
            1
        });
        ok &= says_killed(&format!("{name} child"), st);
    }
    // 2c. A fault in stub code: the gadget's `pop rbp; ret` on an unmapped stack. The stub
    // gives up (status 124) after a crash record the host logs; the process is killed.
    let st = in_child(|| {
        let Some(g) = find_restorer().and_then(find_gadget) else {
            say("stub-jump: no stub gadget in the child");
            return 3;
        };
        let (rip, rsp) = (g + 2, STUB_FAULT_RSP);
        say(&format!(
            "stub-jump: stub-fault jumps to {rip:#x} with rsp {rsp:#x}"
        ));
        // SAFETY: the attack: stub code runs on a stack that is not mapped; it faults at its
        // first instruction and the sandbox ends, so nothing after the jump runs.
        unsafe {
            asm!("mov rsp, {sp}", "jmp {g}", sp = in(reg) rsp, g = in(reg) rip, options(noreturn))
        }
    });
    ok &= says_killed("stub-fault child", st);
    // 3. The guest kernel carries on: fork and run a child normally.
    let st = in_child(|| {
        say(&format!(
            "stub-jump: after the attack, child pid {}",
            sys0(nr::GETPID)
        ));
        0
    });
    say(&format!("stub-jump: normal child {st}"));
    Ok(ok && st == Status::Exited(0))
}

fn ctx_scribble(header_too: bool) -> Verdict {
    let st = in_child(|| {
        // SAFETY: the header is mapped in every user sandbox.
        let slots = unsafe { ((USER_CTX_BASE + 12) as *const u32).read_volatile() };
        let slots = slots.min(MAX_SLOTS);
        let start = if header_too {
            USER_CTX_BASE
        } else {
            USER_CTX_BASE + SLOT_OFFSET
        };
        let end = USER_CTX_BASE + SLOT_OFFSET + u64::from(slots) * SLOT_SIZE;
        say(&format!(
            "ctx-scribble: {slots} slot(s), writing garbage over {start:#x}..{end:#x}"
        ));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _round in 0..3 {
            let mut a = start;
            while a < end {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // SAFETY: the context region is mapped read-write in this sandbox; writing
                // it is the attack.
                unsafe { (a as *mut u64).write_volatile(x) };
                a += 8;
            }
            let pid = sys0(nr::GETPID);
            say(&format!("ctx-scribble: getpid after scribbling: {pid}"));
        }
        7
    });
    say(&format!("ctx-scribble: scribbling child {st}"));
    let st2 = in_child(|| {
        say("ctx-scribble: a new child runs normally");
        0
    });
    say(&format!("ctx-scribble: normal child {st2}"));
    // Whatever happened to the scribbler (killed, or carried on), the kernel must.
    let scribbler_ok = matches!(st, Status::Signaled(_) | Status::Exited(7));
    Ok(scribbler_ok && st2 == Status::Exited(0))
}

fn read_kernel() -> Verdict {
    let mut ok = true;
    let targets = [
        ("guest kernel direct map", KERNEL_DIRECT_MAP),
        (
            "guest kernel direct map + 1 MiB",
            KERNEL_DIRECT_MAP + 0x10_0000,
        ),
        ("guest kernel region", KERNEL_REGION),
        ("guest kernel region + 2 MiB", KERNEL_REGION + 0x20_0000),
        ("address 0", 0),
        ("end of the user window", USER_END),
        ("guard below the context region", USER_CTX_BASE - 4096),
    ];
    for (what, addr) in targets {
        let st = in_child(|| {
            // SAFETY: deliberately reading an address this process has no mapping for.
            let v = unsafe { (addr as *const u64).read_volatile() };
            say(&format!("read-kernel: {what} {addr:#x} READ {v:#x}"));
            0
        });
        let segv = st == Status::Signaled(SIGSEGV);
        say(&format!(
            "read-kernel: {what} {addr:#x}: child {st}{}",
            if segv { "" } else { " (EXPECTED SIGSEGV)" }
        ));
        ok &= segv;
    }
    // Mapping anonymous memory over the kernel's addresses gives fresh zero pages.
    for addr in [KERNEL_DIRECT_MAP, KERNEL_REGION] {
        let len = 2u64 << 20;
        let r = sys(nr::MMAP, [addr, len, 3, 0x02 | 0x20 | 0x10, u64::MAX, 0]);
        if r != addr as i64 {
            say(&format!("read-kernel: mmap(MAP_FIXED) at {addr:#x}: {r}"));
            ok = false;
            continue;
        }
        let mut nonzero = 0u64;
        let mut a = addr;
        while a < addr + len {
            // SAFETY: just mapped readable.
            nonzero += u64::from(unsafe { (a as *const u64).read_volatile() } != 0);
            a += 512;
        }
        say(&format!(
            "read-kernel: anonymous mapping at {addr:#x}: {nonzero} non-zero word(s) sampled"
        ));
        ok &= nonzero == 0;
    }
    Ok(ok)
}

fn fork_bomb(max: usize) -> Verdict {
    let mut kids = Vec::new();
    let mut failure = None;
    while kids.len() < max {
        match fork() {
            Ok(0) => loop {
                sys0(nr::PAUSE);
            },
            Ok(pid) => kids.push(pid),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match failure {
        Some(e) => say(&format!(
            "fork-bomb: {} children, then fork failed with errno {e}",
            kids.len()
        )),
        None => say(&format!(
            "fork-bomb: {} children and fork never failed",
            kids.len()
        )),
    }
    for &pid in &kids {
        sys(nr::KILL, [pid as u64, SIGKILL as u64, 0, 0, 0, 0]);
    }
    // Every child is reaped, dead of our SIGKILL — or of SIGSEGV: with the user pool
    // exhausted, a child's first copy-on-write fault can find no memory (as an OOM kill would).
    let mut killed = 0;
    for &pid in &kids {
        if matches!(
            wait(pid),
            Ok(Status::Signaled(SIGKILL)) | Ok(Status::Signaled(SIGSEGV))
        ) {
            killed += 1;
        }
    }
    say(&format!("fork-bomb: {killed} children killed and reaped"));
    // The children's memory is back once they are reaped: fork works again (retried for
    // up to 1 s, in case releasing it is asynchronous).
    let mut again = None;
    for attempt in 0..20 {
        match fork() {
            Ok(0) => exit_now(0),
            Ok(pid) => {
                again = Some(wait(pid).map_err(|e| format!("wait4: errno {e}"))?);
                break;
            }
            Err(e) => {
                say(&format!(
                    "fork-bomb: fork after cleanup failed with errno {e} (attempt {attempt})"
                ));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let Some(again) = again else {
        say("fork-bomb: fork after cleanup never worked again");
        return Ok(false);
    };
    say(&format!("fork-bomb: fork after cleanup: child {again}"));
    // EAGAIN (11) or ENOMEM (12).
    let failed_cleanly = matches!(failure, Some(11 | 12));
    Ok(failed_cleanly && killed == kids.len() && again == Status::Exited(0))
}

/// Maps and touches `mib` MiB in 1 MiB pieces; returns the MiB touched when mmap fails.
fn hog(max_mib: u64) -> (u64, i64) {
    let mut mib = 0;
    while mib < max_mib {
        let r = sys(nr::MMAP, [0, 1 << 20, 3, 0x02 | 0x20, u64::MAX, 0]);
        if r < 0 {
            return (mib, r);
        }
        let mut a = r as u64;
        while a < r as u64 + (1 << 20) {
            // SAFETY: freshly mapped read-write anonymous memory.
            unsafe { (a as *mut u8).write_volatile(1) };
            a += 4096;
        }
        mib += 1;
        if mib.is_multiple_of(16) {
            say(&format!("memory-hog: {mib} MiB touched"));
        }
    }
    (mib, 0)
}

fn memory_hog(max_mib: u64) -> Verdict {
    let st = in_child(|| {
        let (mib, r) = hog(max_mib);
        say(&format!(
            "memory-hog: stopped after {mib} MiB (mmap returned {r})"
        ));
        if r < 0 {
            0
        } else {
            5
        }
    });
    say(&format!("memory-hog: hog child {st}"));
    // It must have been stopped: mmap failed (exit 0) or a touch could not be backed
    // (SIGSEGV / SIGKILL). Exit 5 means the bound was reached.
    let stopped = matches!(st, Status::Exited(0) | Status::Signaled(SIGSEGV | SIGKILL));
    let (mib, r) = hog(4);
    say(&format!(
        "memory-hog: the parent then touched {mib} MiB (mmap result {r})"
    ));
    Ok(stopped && mib == 4)
}

fn spin_and_check() -> Verdict {
    let child = fork().map_err(|e| format!("fork: errno {e}"))?;
    if child == 0 {
        loop {
            core::hint::spin_loop();
        }
    }
    let start = Instant::now();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    say(&format!(
        "spin-and-check: 100 sleeps of 1 ms took {} ms next to a spinning child",
        took.as_millis()
    ));
    sys(nr::KILL, [child as u64, SIGKILL as u64, 0, 0, 0, 0]);
    let st = wait(child).map_err(|e| format!("wait4: errno {e}"))?;
    say(&format!("spin-and-check: spinning child {st}"));
    Ok(took < Duration::from_secs(5) && st == Status::Signaled(SIGKILL))
}

/// Runs `target` (no arguments) in a child and waits for it.
fn run_program(target: &str) -> Result<Status, String> {
    let path = CString::new(target).map_err(|e| e.to_string())?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp: [*const std::ffi::c_char; 1] = [std::ptr::null()];
    let _ = std::io::stdout().flush();
    match fork() {
        Ok(0) => {
            sys(
                nr::EXECVE,
                [
                    path.as_ptr() as u64,
                    argv.as_ptr() as u64,
                    envp.as_ptr() as u64,
                    0,
                    0,
                    0,
                ],
            );
            exit_now(127)
        }
        Ok(pid) => wait(pid).map_err(|e| format!("wait4: {e}")),
        Err(e) => Err(format!("fork: {e}")),
    }
}

/// `patch-image`: see the module documentation.
fn patch_image(
    pool_base: u64,
    pool_len: u64,
    target: &str,
    from: &[u8],
    to: &[u8],
    run: &str,
) -> Verdict {
    let file = std::fs::read(target).map_err(|e| format!("read {target}: {e}"))?;
    let off = file
        .windows(from.len())
        .position(|w| w == from)
        .ok_or("FROM is not in TARGET")? as u64;
    if file.len() < 4096 {
        return Err("TARGET is smaller than a page".into());
    }
    // The first page, kept inverted so this process's own copy never matches.
    let first: Vec<u8> = file[..4096].iter().map(|b| !b).collect();
    drop(file);
    say(&format!(
        "patch-image: first run of {run}: {}",
        run_program(run)?
    ));
    let st = in_child(|| {
        let restorer = match find_restorer() {
            Some(r) => r,
            None => return 3,
        };
        let Some(gadget) = find_gadget(restorer) else {
            return 3;
        };
        let addr = 0x3000_0000_0000u64;
        let r = stub_call(
            gadget,
            nr::MMAP,
            [addr, pool_len, 3, 0x01 | 0x10, GUEST_MEM_FD, pool_base],
        );
        if r != addr as i64 {
            say(&format!("patch-image: mmap of the pool returned {r}"));
            return 3;
        }
        let mut patched = 0;
        let mut page = 0;
        while page + 4096 <= pool_len {
            let base = addr + page;
            let same = (0..4096u64).step_by(8).all(|i| {
                // SAFETY: the whole pool is mapped read-write at `addr`; `base + i` is in it.
                let w = unsafe { ((base + i) as *const u64).read_volatile() };
                let want =
                    u64::from_le_bytes(first[i as usize..i as usize + 8].try_into().unwrap());
                w == !want
            });
            if same && page + off + from.len() as u64 <= pool_len {
                let at = base + off;
                // SAFETY: inside the mapped pool (checked above).
                let here: Vec<u8> = (0..from.len() as u64)
                    .map(|i| unsafe { ((at + i) as *const u8).read_volatile() })
                    .collect();
                if here == from {
                    for (i, &b) in to.iter().enumerate() {
                        // SAFETY: as above; the pool is mapped writable.
                        unsafe { ((at + i as u64) as *mut u8).write_volatile(b) };
                    }
                    patched += 1;
                }
            }
            page += 4096;
        }
        say(&format!(
            "patch-image: patched {patched} pool copies of {target}"
        ));
        if patched == 0 {
            4
        } else {
            0
        }
    });
    say(&format!("patch-image: attacker {st}"));
    if st != Status::Exited(0) {
        return Err(format!("the patch could not be applied: {st}"));
    }
    say(&format!(
        "patch-image: second run of {run}: {}",
        run_program(run)?
    ));
    Ok(true)
}
