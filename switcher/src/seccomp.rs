//! The sandbox stub's seccomp filters: one for kernel sandboxes, one for user sandboxes.
//!
//! # Kernel sandboxes ([`build_kernel_filter`])
//!
//! The stub builds this filter from its own code range and installs it (with
//! `SECCOMP_FILTER_FLAG_TSYNC`, on every vCPU thread at once) before the first guest
//! instruction. Policy:
//!
//! * a system call whose instruction pointer is outside the stub's code is **trapped**
//!   (`SECCOMP_RET_TRAP`): it is not executed, and the stub delivers it to the guest as the
//!   `Syscall` exception vector;
//! * from stub code, only the calls below are allowed, with the argument checks BPF can
//!   express; anything else is refused ([`RET_REFUSE`]: not executed, and the stub ends the
//!   sandbox with a crash record naming the call), because stub code only makes such a call
//!   when a guest jumped into it with crafted registers. Non-native system calls (x32,
//!   `int 0x80`) from stub code kill the sandbox outright.
//!
//! | call | check | why |
//! |---|---|---|
//! | `rt_sigreturn` | - | return from the stub's signal handler |
//! | `exit_group` | - | sandbox exit (crash path; a single vCPU thread can never exit alone) |
//! | `futex` | op is `FUTEX_WAIT` or `FUTEX_WAKE` (private flag allowed) | halt, doorbell, parking |
//! | `sched_yield` | - | bounded spinning backs off |
//! | `restart_syscall` | - | the kernel's continuation of a `futex` wait with a timeout that a stop (`SIGSTOP`: a paused tenant, `pvmux_host::pause`) interrupted; it only resumes the interrupted, already allowed call |
//! | `mmap` | fd == guest memfd, flags == `MAP_SHARED\|MAP_FIXED`, addr in window, len <= window size | shadow fill |
//! | `mmap` | fd == the kernel image's file (read-only), prot within `PROT_READ\|PROT_EXEC`, flags == `MAP_SHARED\|MAP_FIXED`, addr in window, len <= window size | shadow fill of the image's shared pages |
//! | `munmap` | addr in window, len <= window size | shadow invalidation |
//! | `pwrite64` | fd == guest memfd | `mem_write`: guest pages written without a mapping (`RLIMIT_FSIZE` is the memfd's size) |
//! | `timer_settime` | - | arming the vCPU timer (timers were created before the filter) |
//! | `tgkill` | tgid == the sandbox's pid, signal == the event signal | kicking another vCPU |
//!
//! No `clone`: every vCPU thread exists before the filter is installed. No `open`, `socket`,
//! `execve`, `ptrace`, `kill`, anonymous `mmap`, `mprotect`, `prctl`, `seccomp`,
//! `memfd_create`, `io_uring_*` or anything else.
//!
//! # User sandboxes ([`build_user_base_filter`] + [`build_user_lock_filter`])
//!
//! A user sandbox runs untrusted guest user code next to the stub, so its filter is stricter:
//!
//! * a non-native system call (x32 is native-arch but numbered above the table and traps;
//!   `int 0x80` is `AUDIT_ARCH_I386`) **kills** the sandbox, whoever makes it;
//! * a system call whose instruction pointer is outside the stub's code is **trapped**
//!   (`SECCOMP_RET_TRAP`): the stub reports it to the guest kernel as `UserExit::Syscall`;
//! * from stub code, only the calls below pass; anything else, or a bad argument,
//!   **kills** the sandbox (`SECCOMP_RET_KILL_PROCESS`): stub code never makes such a call, so
//!   user code jumped into it. The guest kernel sees the sandbox as `Dead`.
//!
//! The *user window* is `[USER_BASE, USER_END)`; lengths are capped at [`USER_LEN_MAX`]
//! (`USER_CTX_BASE - USER_END`), so an allowed range starting in the window ends below
//! `USER_CTX_BASE`: `[USER_END, USER_CTX_BASE)` is a guard the stub never maps, and the stub
//! refuses to start unless its image and all its own mappings lie at or above
//! `USER_CTX_BASE`. All 64-bit comparisons test both halves.
//!
//! | call | check | why |
//! |---|---|---|
//! | `rt_sigreturn` | - | entering user code / returning from the handler |
//! | `exit_group` | - | crash or `dead` exit |
//! | `sched_yield` | - | back-off while spinning |
//! | `restart_syscall` | - | as in the kernel filter: a timed `futex` wait interrupted by a stop continues |
//! | `futex` | op is `FUTEX_WAIT` or `FUTEX_WAKE` (private flag allowed) | slot hand-off |
//! | `timer_settime`, `timer_gettime` | - | the slice timer (created before the filter); `gettime` tells a stale expiry from a live one |
//! | `arch_prctl` | option is `ARCH_SET_FS` or `ARCH_GET_FS` | the user FS base (TLS) |
//! | `mmap` | addr in the user window, len <= [`USER_LEN_MAX`], prot within RWX, flags == `MAP_SHARED\|MAP_FIXED`, optionally with `MAP_POPULATE`, fd == guest memfd, `user_pool_base <= offset < mem_size` | `UserOp` MAP, MAP_POPULATE |
//! | `mmap` | addr in the user window, len <= [`USER_LEN_MAX`], prot within `PROT_READ\|PROT_EXEC`, flags as above, fd a host file window's (`WINDOW_FD_BASE ..` `+ MAX_WINDOWS`, opened read-only by the host), offset < `WINDOW_SPAN` | `UserOp` MAP of a window's pages |
//! | `munmap` | addr in the user window, len <= [`USER_LEN_MAX`] | `UserOp` UNMAP |
//! | `mprotect` | addr in the user window, len <= [`USER_LEN_MAX`], prot within RWX | `UserOp` PROTECT |
//! | `tuxcall` ([`WINDOW_SYNC_NR`]) | a0 < `MAX_WINDOWS` | `SECCOMP_RET_USER_NOTIF`: the host, holding the filter's listener, installs the window's descriptor |
//!
//! Every user sandbox first installs the *base filter* ([`build_user_base_filter`]) as soon as
//! its threads exist, before it waits for its context region (a spare waits there until it
//! is assigned): this policy plus exactly the context and grant-page mappings and the
//! installation of a second filter. Once those mappings are made, and before any user code
//! runs, it installs the *lock filter* ([`build_user_lock_filter`]) on top, which kills those
//! three calls from stub code and allows everything else. Both stay in force, and the
//! strictest answer wins, so the stack enforces exactly the policy above
//! ([`evaluate_stack`] evaluates it as the kernel does).
//!
//! Note what this does *not* protect: user code can write the stub's memory and jump into
//! its code, so it can make any call above with any arguments the checks pass, e.g. map any
//! page of the user pool (which other address spaces of the tenant share) into its window.
//! The filter confines a user sandbox to the user pool, never to its own pages.

use pvmux_hypercalls::layout::{CTL_BASE, WINDOW_BASE, WINDOW_END, WINDOW_SIZE};
use pvmux_hypercalls::sandbox::{CTL_FD, GUEST_MEM_FD, KERNEL_IMAGE_FD};
use pvmux_hypercalls::user::grant::USER_GRANT_BASE;
use pvmux_hypercalls::user::inproc::{INPROC_HIGH, INPROC_LEN_MAX, INPROC_LOW};
use pvmux_hypercalls::user::{user_ctx_size, USER_BASE, USER_CTX_BASE, USER_END};
use pvmux_hypercalls::window::{MAX_WINDOWS, WINDOW_FD_BASE, WINDOW_SPAN, WINDOW_SYNC_NR};
use pvmux_hypercalls::{MAX_VCPUS, PAGE_SIZE};

/// Longest range one `mmap`/`munmap`/`mprotect` of a user sandbox may cover (8 TiB): a range
/// that starts in the user window then ends below `USER_CTX_BASE`.
pub const USER_LEN_MAX: u64 = USER_CTX_BASE - USER_END;

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_TRAP`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `SECCOMP_RET_USER_NOTIF`: the call waits for the answer of the filter's listener.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// What a refused call from stub code gets: `SECCOMP_RET_TRAP` with `SECCOMP_RET_DATA` = 1.
/// The call is not executed; the stub's SIGSYS handler sees `si_errno` = 1 and a stub
/// instruction pointer, records an ABI violation naming the call, and ends the sandbox.
/// (If a guest managed to block SIGSYS, the kernel kills the process instead.)
pub const RET_REFUSE: u32 = RET_TRAP | 1;

/// System-call numbers the policy names.
pub mod nr {
    #![allow(missing_docs)]
    pub const CLOSE: u32 = 3;
    pub const MMAP: u32 = 9;
    pub const MPROTECT: u32 = 10;
    pub const MUNMAP: u32 = 11;
    pub const PWRITE64: u32 = 18;
    pub const MINCORE: u32 = 27;
    pub const RT_SIGRETURN: u32 = 15;
    pub const SCHED_YIELD: u32 = 24;
    pub const GETPID: u32 = 39;
    pub const CLONE: u32 = 56;
    pub const WAIT4: u32 = 61;
    pub const SIGALTSTACK: u32 = 131;
    pub const EXIT: u32 = 60;
    pub const ARCH_PRCTL: u32 = 158;
    pub const GETTID: u32 = 186;
    pub const FUTEX: u32 = 202;
    pub const RESTART_SYSCALL: u32 = 219;
    pub const TIMER_CREATE: u32 = 222;
    pub const TIMER_SETTIME: u32 = 223;
    pub const TIMER_GETTIME: u32 = 224;
    pub const EXIT_GROUP: u32 = 231;
    pub const TGKILL: u32 = 234;
    pub const SECCOMP: u32 = 317;
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`: an unconditional jump over `k` instructions.
const JA: u16 = 0x05;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;
const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// Inputs of the filter, known only at run time inside the sandbox.
#[derive(Clone, Copy, Debug)]
pub struct FilterParams {
    /// First byte of the stub's code.
    pub text_start: u64,
    /// One past the last byte of the stub's code (a `syscall` at the very end reports this IP).
    pub text_end: u64,
    /// The sandbox's pid (thread-group id), for `tgkill`.
    pub pid: u32,
    /// The signal used for vCPU events.
    pub event_signal: u32,
}

/// Inputs of the user-sandbox filter.
#[derive(Clone, Copy, Debug)]
pub struct UserFilterParams {
    /// Stub code range, pid and timer signal (`event_signal`).
    pub common: FilterParams,
    /// First guest-physical byte of the user pool: the lowest memfd offset `mmap` may map.
    pub pool_base: u64,
    /// Guest memory size: `mmap` offsets must be below it.
    pub mem_size: u64,
}

/// Errors building a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// The code range is empty or ends below its start.
    BadTextRange,
    /// The output buffer is too small.
    BufferTooSmall,
    /// The user pool is empty (`pool_base >= mem_size`).
    BadPool,
}

/// Maximum length of a filter in instructions.
pub const MAX_FILTER_LEN: usize = 352;

/// `arch_prctl` options a user sandbox may use.
pub const ARCH_SET_FS: u32 = 0x1002;
/// See [`ARCH_SET_FS`].
pub const ARCH_GET_FS: u32 = 0x1003;
/// `arch_prctl` option a template's child uses for its new threads' GS base (without
/// FSGSBASE): only before its lock filter.
pub const ARCH_SET_GS: u32 = 0x1001;

/// `clone` flags of a template's fork of a child: `CLONE_PIDFD` (the pidfd goes to the
/// `parent_tid` argument) and `SIGCHLD` as the exit signal (the template reaps its children
/// on it).
pub const TEMPLATE_FORK_FLAGS: u32 = 0x1000 | 17;
/// `clone` flags of a slot thread: `CLONE_VM | FS | FILES | SIGHAND | THREAD | SYSVSEM`.
pub const SLOT_THREAD_FLAGS: u32 = 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000 | 0x4_0000;
/// `prot` and `flags` of a template child's `mmap` of its own control page over its
/// template's (`PROT_READ | PROT_WRITE`, `MAP_SHARED | MAP_FIXED`).
pub const CTL_PAGE_MAP: [u32; 2] = [3, 0x11];

/// Jump targets resolved when the program is finished.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Allow,
    Refuse,
    Trap,
    Die,
    /// Skip to the start of the next syscall block.
    NextBlock,
    /// Skip this many instructions after the next one.
    Skip(u8),
}

/// A filter being built. Its instructions take 12 bytes each (a `SockFilter`, two targets
/// and a block number, `u16`): the stub builds filters on a thread's start stack, which is
/// 20 KiB, and a debug build keeps copies of the builder in several frames.
struct Builder {
    insns: [(SockFilter, Target, Target, u16); MAX_FILTER_LEN],
    len: usize,
    block: u16,
    /// Where a failed argument check (and an unknown call) goes.
    fail: Target,
    /// More than [`MAX_FILTER_LEN`] instructions were pushed.
    overflow: bool,
}

// A builder of 48-byte instructions (usize targets) overflowed a slot thread's start stack in
// debug builds once filters could be 320 instructions long: the stub's start-up then wrote
// over the slot's FPU buffer, and programs' threads got corrupted registers.
const _: () = assert!(core::mem::size_of::<Builder>() <= 6 * 1024);

impl Builder {
    fn new(fail: Target) -> Self {
        Self {
            insns: [(SockFilter::default(), Target::Next, Target::Next, 0); MAX_FILTER_LEN],
            len: 0,
            block: 0,
            fail,
            overflow: false,
        }
    }
    /// Puts a `ret TRAP` and a `ret KILL_PROCESS` here, jumped over: the trap and kill
    /// targets of the instructions before it resolve to these instead of the program's end.
    /// A conditional jump reaches at most 255 instructions ahead, so a program longer than
    /// that needs this after the checks it opens with.
    fn island(&mut self) {
        self.push(JA, 2, Target::Next, Target::Next);
        self.ret(RET_TRAP);
        self.ret(RET_KILL_PROCESS);
    }
    fn push(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        // Overflow is reported by `finish` (the program is cut at MAX_FILTER_LEN).
        if self.len == MAX_FILTER_LEN {
            self.overflow = true;
            return;
        }
        self.insns[self.len] = (
            SockFilter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            jt,
            jf,
            self.block,
        );
        self.len += 1;
    }
    fn ld(&mut self, off: u32) {
        self.push(LD_W_ABS, off, Target::Next, Target::Next);
    }
    fn jmp(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.push(code, k, jt, jf);
    }
    fn ret(&mut self, k: u32) {
        self.push(RET_K, k, Target::Next, Target::Next);
    }
    /// Starts a block for syscall `nr`: if the number differs, skip to the next block.
    fn block(&mut self, nr: u32) {
        self.block += 1;
        self.ld(OFF_NR);
        self.jmp(JEQ_K, nr, Target::Next, Target::NextBlock);
    }
    /// Fails unless the 64-bit argument `i` lies in `[WINDOW_BASE, WINDOW_END)`.
    fn arg_in_window(&mut self, i: u32) {
        // WINDOW_BASE and WINDOW_END are 4 GiB aligned, so the high half decides.
        let fail = self.fail;
        self.ld(arg_hi(i));
        self.jmp(JGE_K, (WINDOW_BASE >> 32) as u32, Target::Next, fail);
        self.jmp(JGE_K, (WINDOW_END >> 32) as u32, fail, Target::Next);
    }
    /// Fails unless the 64-bit argument `i` is at most `WINDOW_SIZE` (so a whole-window
    /// `munmap` passes, and `addr + len` of an address in the window stays inside the window
    /// and its guard).
    fn arg_at_most_window_size(&mut self, i: u32) {
        self.arg_le(i, WINDOW_SIZE);
    }
    /// Fails unless the 64-bit argument `i` is at most `k` (unsigned).
    fn arg_le(&mut self, i: u32, k: u64) {
        let fail = self.fail;
        let (hi, lo) = ((k >> 32) as u32, k as u32);
        self.ld(arg_hi(i));
        self.jmp(JGT_K, hi, fail, Target::Next);
        self.jmp(JEQ_K, hi, Target::Next, Target::Skip(2));
        self.ld(arg_lo(i));
        self.jmp(JGT_K, lo, fail, Target::Next);
    }
    /// Fails unless the 64-bit argument `i` is below `k` (unsigned).
    fn arg_lt(&mut self, i: u32, k: u64) {
        let fail = self.fail;
        let (hi, lo) = ((k >> 32) as u32, k as u32);
        self.ld(arg_hi(i));
        self.jmp(JGT_K, hi, fail, Target::Next);
        self.jmp(JEQ_K, hi, Target::Next, Target::Skip(2));
        self.ld(arg_lo(i));
        self.jmp(JGE_K, lo, fail, Target::Next);
    }
    /// Fails unless the 64-bit argument `i` is at least `k` (unsigned).
    fn arg_ge(&mut self, i: u32, k: u64) {
        let fail = self.fail;
        let (hi, lo) = ((k >> 32) as u32, k as u32);
        self.ld(arg_hi(i));
        self.jmp(JGT_K, hi, Target::Skip(3), Target::Next);
        self.jmp(JEQ_K, hi, Target::Next, fail);
        self.ld(arg_lo(i));
        self.jmp(JGE_K, lo, Target::Next, fail);
    }
    /// Fails unless the 64-bit argument `i` equals `v` (as a 32-bit value, high half zero).
    fn arg_eq32(&mut self, i: u32, v: u32) {
        let fail = self.fail;
        self.ld(arg_hi(i));
        self.jmp(JEQ_K, 0, Target::Next, fail);
        self.ld(arg_lo(i));
        self.jmp(JEQ_K, v, Target::Next, fail);
    }
    /// Fails unless the 64-bit argument `i` equals `v` or `v | optional` (32-bit values,
    /// high half zero; `optional` bits outside `v`).
    fn arg_eq32_optional(&mut self, i: u32, v: u32, optional: u32) {
        let fail = self.fail;
        self.ld(arg_hi(i));
        self.jmp(JEQ_K, 0, Target::Next, fail);
        self.ld(arg_lo(i));
        self.push(AND_K, !optional, Target::Next, Target::Next);
        self.jmp(JEQ_K, v, Target::Next, fail);
    }
    /// Fails unless the 64-bit argument `i` has no bit outside `mask` (`mask` is 32-bit).
    fn arg_within_bits(&mut self, i: u32, mask: u32) {
        let fail = self.fail;
        self.ld(arg_hi(i));
        self.jmp(JEQ_K, 0, Target::Next, fail);
        self.ld(arg_lo(i));
        self.push(AND_K, !mask, Target::Next, Target::Next);
        self.jmp(JEQ_K, 0, Target::Next, fail);
    }
    /// Fails unless `[arg i, arg i + arg j)` starts in the user window and `arg j` is at most
    /// [`USER_LEN_MAX`] (so the range ends below `USER_CTX_BASE`).
    fn user_range(&mut self, addr: u32, len: u32) {
        self.arg_ge(addr, USER_BASE);
        self.arg_lt(addr, USER_END);
        self.arg_le(len, USER_LEN_MAX);
    }
    /// A block that allows call `nr` when its first argument is `v` (both halves).
    fn allow_with_arg0(&mut self, nr: u32, v: u32) {
        self.block(nr);
        self.arg_eq32(0, v);
        self.ret(RET_ALLOW);
    }
    /// The futex block shared by both filters: `FUTEX_WAIT` or `FUTEX_WAKE` only.
    fn futex_block(&mut self) {
        let fail = self.fail;
        self.block(nr::FUTEX);
        self.ld(arg_lo(1));
        self.push(AND_K, !0x180, Target::Next, Target::Next); // strip PRIVATE and CLOCK_REALTIME
        self.jmp(JEQ_K, 0, Target::Allow, Target::Next); // FUTEX_WAIT
        self.jmp(JEQ_K, 1, Target::Allow, fail); // FUTEX_WAKE
    }
    /// Traps every call whose IP is outside `[text_start + 2, text_end]` (see
    /// [`build_kernel_filter`]); checks the range first.
    fn trap_outside_text(&mut self, p: &FilterParams) -> Result<(), FilterError> {
        self.outside_text(p, Target::Trap)
    }
    /// Sends every call whose IP is outside `[text_start + 2, text_end]` to `to`; checks the
    /// range first.
    fn outside_text(&mut self, p: &FilterParams, to: Target) -> Result<(), FilterError> {
        let end = p.text_end;
        // seccomp reports the address *after* the 2-byte `syscall`, so a call made by stub
        // code reports an IP in [text_start + 2, text_end]; text_start or text_start + 1 would
        // mean a `syscall` in the bytes just before the stub's code.
        let Some(first) = p.text_start.checked_add(2) else {
            return Err(FilterError::BadTextRange);
        };
        if first > end {
            return Err(FilterError::BadTextRange);
        }
        let (first_hi, first_lo) = ((first >> 32) as u32, first as u32);
        let (end_hi, end_lo) = ((end >> 32) as u32, end as u32);
        if first_hi == end_hi {
            // The common case: one 4 GiB half, one comparison of the high half.
            self.ld(OFF_IP_HI);
            self.jmp(JEQ_K, first_hi, Target::Next, to);
            self.ld(OFF_IP_LO);
            self.jmp(JGE_K, first_lo, Target::Next, to);
            self.jmp(JGT_K, end_lo, to, Target::Next);
        } else {
            // A load address that puts the code across a 4 GiB boundary (ASLR can): compare
            // the 64-bit IP with each bound, half by half.
            self.ld(OFF_IP_HI);
            self.jmp(JGT_K, first_hi, Target::Skip(3), Target::Next);
            self.jmp(JEQ_K, first_hi, Target::Next, to);
            self.ld(OFF_IP_LO);
            self.jmp(JGE_K, first_lo, Target::Next, to);
            self.ld(OFF_IP_HI);
            self.jmp(JGT_K, end_hi, to, Target::Next);
            self.jmp(JEQ_K, end_hi, Target::Next, Target::Skip(2));
            self.ld(OFF_IP_LO);
            self.jmp(JGT_K, end_lo, to, Target::Next);
        }
        Ok(())
    }

    fn finish(self, out: &mut [SockFilter]) -> Result<usize, FilterError> {
        let n = self.len + 4;
        if self.overflow || out.len() < n {
            return Err(FilterError::BufferTooSmall);
        }
        let (allow, refuse, trap, die) = (self.len, self.len + 1, self.len + 2, self.len + 3);
        let fail = match self.fail {
            Target::Die => die,
            _ => refuse,
        };
        for (i, &(mut insn, jt, jf, block)) in self.insns[..self.len].iter().enumerate() {
            // A return target resolves to the nearest `ret` of that action after the jump
            // (a block's own, or an island's: within a jump's reach in a long filter), else
            // to the shared one at the end.
            let nearest = |k: u32, end: usize| {
                (i + 1..self.len)
                    .find(|&j| self.insns[j].0.code == RET_K && self.insns[j].0.k == k)
                    .unwrap_or(end)
            };
            let resolve = |t: Target| -> Result<u8, FilterError> {
                let dest = match t {
                    Target::Next => i + 1,
                    Target::Allow => nearest(RET_ALLOW, allow),
                    Target::Refuse => refuse,
                    Target::Trap => nearest(RET_TRAP, trap),
                    Target::Die => nearest(RET_KILL_PROCESS, die),
                    Target::Skip(n) => i + 1 + usize::from(n),
                    Target::NextBlock => (i + 1..self.len)
                        .find(|&j| self.insns[j].3 > block)
                        .unwrap_or(fail),
                };
                u8::try_from(dest - i - 1).map_err(|_| FilterError::BufferTooSmall)
            };
            if !matches!(insn.code, RET_K | LD_W_ABS | AND_K | JA) {
                insn.jt = resolve(jt)?;
                insn.jf = resolve(jf)?;
            }
            out[i] = insn;
        }
        let ret = |k: u32| SockFilter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k,
        };
        out[allow] = ret(RET_ALLOW);
        out[refuse] = ret(RET_REFUSE);
        out[trap] = ret(RET_TRAP);
        out[die] = ret(RET_KILL_PROCESS);
        Ok(n)
    }
}

/// Builds the kernel-sandbox filter into `out`; returns the number of instructions.
pub fn build_kernel_filter(p: &FilterParams, out: &mut [SockFilter]) -> Result<usize, FilterError> {
    build_kernel_filter_with(p, false, out)
}

/// Builds the kernel-sandbox filter into `out`, with `inproc` the trusted in-process mode's
/// extra rules (see the module documentation); returns the number of instructions.
pub fn build_kernel_filter_with(
    p: &FilterParams,
    inproc: bool,
    out: &mut [SockFilter],
) -> Result<usize, FilterError> {
    let mut b = Builder::new(Target::Refuse);
    // 1. Only system calls made by stub code run at all; the rest trap to the guest.
    b.trap_outside_text(p)?;
    // 2. From stub code: native x86-64 calls only (no x32, no int 0x80).
    b.ld(OFF_ARCH);
    b.jmp(JEQ_K, AUDIT_ARCH_X86_64, Target::Next, Target::Die);
    // (Their trap and kill within reach: with the in-process rules the filter is longer
    // than a jump.)
    b.island();
    // 3. The allow-list.
    for n in [
        nr::RT_SIGRETURN,
        nr::EXIT_GROUP,
        nr::SCHED_YIELD,
        nr::TIMER_SETTIME,
        nr::RESTART_SYSCALL,
    ] {
        b.block(n);
        b.ret(RET_ALLOW);
    }
    // The guest memfd written without a mapping (`mem_write`): memory the sandbox maps
    // read-write anyway (the memfd's seals keep its size, and the jail's `RLIMIT_FSIZE` is
    // that size). The fd is the one check that matters: the buffer is the sandbox's own
    // memory and the offset the file's. A call with another fd goes on to the next blocks,
    // none of which allows it: refused. (Here, before the blocks whose failed checks jump to
    // the end, so that those jumps stay short enough.)
    b.fail = Target::NextBlock;
    b.block(nr::PWRITE64);
    b.arg_eq32(0, GUEST_MEM_FD as u32);
    b.ret(RET_ALLOW);
    b.fail = Target::Refuse;
    b.futex_block();
    if inproc {
        inproc_rules(&mut b);
    }
    // (A call failing the first `mmap` block's checks goes on to the second.)
    b.fail = Target::NextBlock;
    b.block(nr::MMAP);
    b.arg_in_window(0);
    b.arg_at_most_window_size(1);
    b.arg_eq32(3, 0x11); // MAP_SHARED | MAP_FIXED, nothing else
    b.arg_eq32(4, GUEST_MEM_FD as u32);
    b.ret(RET_ALLOW);
    b.fail = Target::Refuse;
    // The kernel image's shared pages: read and execute at most (the fd is read-only too).
    b.block(nr::MMAP);
    b.arg_in_window(0);
    b.arg_at_most_window_size(1);
    b.arg_within_bits(2, PROT_READ_EXEC);
    b.arg_eq32(3, 0x11);
    b.arg_eq32(4, KERNEL_IMAGE_FD as u32);
    b.ret(RET_ALLOW);
    b.block(nr::MUNMAP);
    b.arg_in_window(0);
    b.arg_at_most_window_size(1);
    b.ret(RET_ALLOW);
    b.block(nr::MINCORE);
    b.arg_in_window(0);
    b.arg_at_most_window_size(1);
    b.ret(RET_ALLOW);
    b.block(nr::TGKILL);
    b.arg_eq32(0, p.pid);
    b.arg_eq32(2, p.event_signal);
    b.ret(RET_ALLOW);
    // Anything else from stub code: a guest is abusing stub code.
    b.block(u32::MAX);
    b.ret(RET_REFUSE);
    b.finish(out)
}

/// The trusted in-process mode's rules of the kernel filter: `mmap` of the guest memfd
/// (`MAP_SHARED|MAP_FIXED`, optionally with `MAP_POPULATE`: `UserOp` `MAP_POPULATE`),
/// `munmap` and `mprotect` (RWX at most) of ranges starting in the free parts of the user
/// window (`INPROC_LOW`, `INPROC_HIGH`) at most `INPROC_LEN_MAX` long, and `arch_prctl(ARCH_SET_FS | ARCH_GET_FS)`. A call that fails one block's checks
/// goes on to the next block (and finally to the kernel filter's own rules).
fn inproc_rules(b: &mut Builder) {
    b.fail = Target::NextBlock;
    for (lo, hi) in [INPROC_LOW, INPROC_HIGH] {
        b.block(nr::MMAP);
        b.arg_ge(0, lo);
        b.arg_lt(0, hi);
        b.arg_le(1, INPROC_LEN_MAX);
        b.arg_within_bits(2, 7);
        // MAP_SHARED | MAP_FIXED, and MAP_POPULATE or nothing else.
        b.arg_eq32_optional(3, 0x11, USER_MAP_POPULATE);
        b.arg_eq32(4, GUEST_MEM_FD as u32);
        b.ret(RET_ALLOW);
        b.block(nr::MUNMAP);
        b.arg_ge(0, lo);
        b.arg_lt(0, hi);
        b.arg_le(1, INPROC_LEN_MAX);
        b.ret(RET_ALLOW);
        b.block(nr::MPROTECT);
        b.arg_ge(0, lo);
        b.arg_lt(0, hi);
        b.arg_le(1, INPROC_LEN_MAX);
        b.arg_within_bits(2, 7);
        b.ret(RET_ALLOW);
    }
    b.allow_with_arg0(nr::ARCH_PRCTL, ARCH_SET_FS);
    b.allow_with_arg0(nr::ARCH_PRCTL, ARCH_GET_FS);
    b.fail = Target::Refuse;
}

/// `MAP_POPULATE`: the one flag a user sandbox's `mmap` of pool memory may add to
/// `MAP_SHARED | MAP_FIXED` (it only fills page-table entries of a range the mapping itself
/// may reach).
pub const USER_MAP_POPULATE: u32 = 0x8000;
/// `PROT_READ | PROT_EXEC`: the most a kernel sandbox may map the kernel image's file with.
const PROT_READ_EXEC: u32 = 1 | 4;

/// `flags` of the stub's one `mmap` of its context region (`MAP_SHARED | MAP_FIXED_NOREPLACE`).
pub const CTX_MAP_FLAGS: u32 = 0x01 | 0x10_0000;
/// `prot` of that mapping (`PROT_READ | PROT_WRITE`).
pub const CTX_MAP_PROT: u32 = 3;
/// `prot` of the stub's one `mmap` of its grant page (`PROT_READ`).
pub const GRANT_MAP_PROT: u32 = 1;
/// `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ..)`: the only `seccomp` call
/// the base filter lets through (installing the lock filter on top of it).
pub const SECCOMP_SET_MODE_FILTER_TSYNC: [u32; 2] = [1, 1];

/// Builds the *base* filter of a user sandbox into `out`: the filter every user sandbox
/// installs (on all its threads) as soon as its threads exist, before it waits for its context
/// region — so a spare never waits without seccomp. It is the user policy (module
/// documentation) plus exactly the three calls the stub still makes before it runs user code:
///
/// * `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog)` (installing the lock
///   filter; the pointer cannot be checked);
/// * `mmap(USER_CTX_BASE, len <= user_ctx_size(MAX_VCPUS), PROT_READ|PROT_WRITE,
///   MAP_SHARED|MAP_FIXED_NOREPLACE, guest memfd, user_pool_base <= offset < mem_size)`
///   (mapping the assigned context region);
/// * `mmap(USER_GRANT_BASE, len <= PAGE_SIZE, PROT_READ, MAP_SHARED|MAP_FIXED_NOREPLACE,
///   guest memfd, offset < user_pool_base)` (mapping the space's grant page, which lives in
///   guest-kernel memory below the pool; no untrusted code runs before the lock filter is
///   installed on top, and that filter kills this call).
///
/// [`build_user_lock_filter`] takes the three away again.
pub fn build_user_base_filter(
    p: &UserFilterParams,
    out: &mut [SockFilter],
) -> Result<usize, FilterError> {
    build_user_start_filter(p, false, out)
}

/// Builds the filter of a user sandbox *template* into `out`: the base filter
/// ([`build_user_base_filter`]) plus what the template and its children do from stub code
/// before a child's lock filter, and nothing else:
///
/// * `clone(TEMPLATE_FORK_FLAGS, ...)` (the template forks a child) and
///   `clone(SLOT_THREAD_FLAGS, ...)` (a child starts its slot threads);
/// * `timer_create`, `sigaltstack`, `gettid`, `getpid`, `close`, `wait4` (a child's thread
///   set-up, the close of the template's control memfd and of the pidfds it handed over, the
///   template's reaping of its children);
/// * `arch_prctl(ARCH_SET_GS)` (a new thread's GS base without FSGSBASE);
/// * `mmap(CTL_BASE, len <= PAGE_SIZE, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, CTL_FD)`
///   (a child maps its own control page over the template's).
///
/// Children inherit it (filters survive `fork`, compiled once), and each installs the lock
/// filter ([`build_user_lock_filter`]) before any user code runs, which kills all of these
/// from stub code: the stack enforces the user policy, as for a spawned sandbox.
pub fn build_user_template_filter(
    p: &UserFilterParams,
    out: &mut [SockFilter],
) -> Result<usize, FilterError> {
    build_user_start_filter(p, true, out)
}

/// [`build_user_base_filter`], with [`build_user_template_filter`]'s additions if `template`.
fn build_user_start_filter(
    p: &UserFilterParams,
    template: bool,
    out: &mut [SockFilter],
) -> Result<usize, FilterError> {
    if p.pool_base >= p.mem_size {
        return Err(FilterError::BadPool);
    }
    let mut b = Builder::new(Target::Die);
    // 1. Native x86-64 calls only, from anywhere (`int 0x80` and friends kill).
    b.ld(OFF_ARCH);
    b.jmp(JEQ_K, AUDIT_ARCH_X86_64, Target::Next, Target::Die);
    // 2. Calls from user code trap: they are the guest program's system calls.
    b.trap_outside_text(&p.common)?;
    // (Their trap and kill within reach: the filter is longer than a jump.)
    b.island();
    // 3. The allow-list for stub code.
    for n in [
        nr::RT_SIGRETURN,
        nr::EXIT_GROUP,
        nr::SCHED_YIELD,
        nr::TIMER_SETTIME,
        nr::TIMER_GETTIME,
        nr::RESTART_SYSCALL,
    ] {
        b.block(n);
        b.ret(RET_ALLOW);
    }
    b.futex_block();
    b.block(nr::SECCOMP);
    b.arg_eq32(0, SECCOMP_SET_MODE_FILTER_TSYNC[0]);
    b.arg_eq32(1, SECCOMP_SET_MODE_FILTER_TSYNC[1]);
    b.ret(RET_ALLOW);
    // The context mapping; any other `mmap` goes on to the user window's rules below.
    b.fail = Target::NextBlock;
    b.block(nr::MMAP);
    b.arg_ge(0, USER_CTX_BASE);
    b.arg_le(0, USER_CTX_BASE);
    b.arg_le(1, user_ctx_size(MAX_VCPUS));
    b.arg_eq32(2, CTX_MAP_PROT);
    b.arg_eq32(3, CTX_MAP_FLAGS);
    b.arg_eq32(4, GUEST_MEM_FD as u32);
    b.arg_ge(5, p.pool_base);
    b.arg_lt(5, p.mem_size);
    b.ret(RET_ALLOW);
    // The grant page, read-only, from guest-kernel memory.
    b.block(nr::MMAP);
    b.arg_ge(0, USER_GRANT_BASE);
    b.arg_le(0, USER_GRANT_BASE);
    b.arg_le(1, PAGE_SIZE);
    b.arg_eq32(2, GRANT_MAP_PROT);
    b.arg_eq32(3, CTX_MAP_FLAGS);
    b.arg_eq32(4, GUEST_MEM_FD as u32);
    b.arg_lt(5, p.pool_base);
    b.ret(RET_ALLOW);
    // A request for a host file window's descriptor: answered by the host, which holds this
    // filter's notification listener (`pvmux_hypercalls::window`; a template's children
    // share the template's).
    b.block(WINDOW_SYNC_NR);
    b.arg_lt(0, u64::from(MAX_WINDOWS));
    b.ret(RET_USER_NOTIF);
    b.fail = Target::NextBlock;
    // (A second trap and kill within reach of the checks above and below.)
    b.island();
    if template {
        template_rules(&mut b);
    }
    b.fail = Target::Die;
    b.block(nr::ARCH_PRCTL);
    b.ld(arg_hi(0));
    b.jmp(JEQ_K, 0, Target::Next, Target::Die);
    b.ld(arg_lo(0));
    b.jmp(JEQ_K, ARCH_SET_FS, Target::Allow, Target::Next);
    b.jmp(JEQ_K, ARCH_GET_FS, Target::Allow, Target::Die);
    // (A call failing the pool block's checks goes on to the window block.)
    b.fail = Target::NextBlock;
    b.block(nr::MMAP);
    b.user_range(0, 1);
    b.arg_within_bits(2, 7); // PROT_READ | PROT_WRITE | PROT_EXEC
                             // MAP_SHARED | MAP_FIXED, and MAP_POPULATE or nothing else (`UserOp` MAP_POPULATE).
    b.arg_eq32_optional(3, 0x11, USER_MAP_POPULATE);
    b.arg_eq32(4, GUEST_MEM_FD as u32);
    b.arg_ge(5, p.pool_base);
    b.arg_lt(5, p.mem_size);
    b.ret(RET_ALLOW);
    b.fail = Target::Die;
    // A host file window (`pvmux_hypercalls::window`): its read-only descriptors, read and
    // execute at most (the descriptors are read-only, so no `mprotect` can add writing).
    b.block(nr::MMAP);
    b.user_range(0, 1);
    b.arg_within_bits(2, PROT_READ_EXEC);
    b.arg_eq32_optional(3, 0x11, USER_MAP_POPULATE);
    b.arg_ge(4, WINDOW_FD_BASE as u64);
    b.arg_lt(4, WINDOW_FD_BASE as u64 + u64::from(MAX_WINDOWS));
    b.arg_lt(5, WINDOW_SPAN);
    b.ret(RET_ALLOW);
    b.block(nr::MUNMAP);
    b.user_range(0, 1);
    b.ret(RET_ALLOW);
    b.block(nr::MPROTECT);
    b.user_range(0, 1);
    b.arg_within_bits(2, 7);
    b.ret(RET_ALLOW);
    // Anything else from stub code: user code is abusing stub code.
    b.block(u32::MAX);
    b.ret(RET_KILL_PROCESS);
    b.finish(out)
}

/// The template's additions to the base filter ([`build_user_template_filter`]); a call that
/// fails a block's checks goes on to the next block.
fn template_rules(b: &mut Builder) {
    for flags in [TEMPLATE_FORK_FLAGS, SLOT_THREAD_FLAGS] {
        b.allow_with_arg0(nr::CLONE, flags);
    }
    for n in TEMPLATE_ONLY {
        b.block(n);
        b.ret(RET_ALLOW);
    }
    b.allow_with_arg0(nr::ARCH_PRCTL, ARCH_SET_GS);
    b.block(nr::MMAP);
    b.arg_ge(0, CTL_BASE);
    b.arg_le(0, CTL_BASE);
    b.arg_le(1, PAGE_SIZE);
    b.arg_eq32(2, CTL_PAGE_MAP[0]);
    b.arg_eq32(3, CTL_PAGE_MAP[1]);
    b.arg_eq32(4, CTL_FD as u32);
    b.ret(RET_ALLOW);
}

/// Calls the template filter allows from stub code with any arguments (the lock filter kills
/// them, with `clone`).
const TEMPLATE_ONLY: [u32; 6] = [
    nr::TIMER_CREATE,
    nr::SIGALTSTACK,
    nr::GETTID,
    nr::GETPID,
    nr::CLOSE,
    nr::WAIT4,
];

/// Builds the *lock* filter of a user sandbox into `out`: the filter it stacks on its base
/// filter ([`build_user_base_filter`]) once its context region and grant page are mapped,
/// before any user code runs. From stub code it kills `seccomp` and every `mmap` at
/// `USER_CTX_BASE` or `USER_GRANT_BASE` — the three calls the base filter allows beyond the
/// user policy, which stub code never makes again — and it allows everything else, which
/// leaves the answer to the base filter (filters stack, and the strictest answer wins: calls
/// from user code stay trapped, and every other call from stub code is judged by the base
/// filter's user policy). So the stack enforces exactly the user policy, as a second copy of
/// the whole policy on top would, with a filter of about twenty instructions instead of a
/// hundred and forty: each sandbox start JIT-compiles half as much, and each system call the
/// sandbox makes runs a shorter second filter.
pub fn build_user_lock_filter(
    p: &FilterParams,
    out: &mut [SockFilter],
) -> Result<usize, FilterError> {
    let mut b = Builder::new(Target::Die);
    // Calls from user code: the base filter traps them.
    b.outside_text(p, Target::Allow)?;
    b.ld(OFF_NR);
    for n in [nr::SECCOMP, nr::CLONE].into_iter().chain(TEMPLATE_ONLY) {
        b.jmp(JEQ_K, n, Target::Die, Target::Next);
    }
    // `arch_prctl(ARCH_SET_GS)` (which the base filter kills anyway).
    b.jmp(JEQ_K, nr::ARCH_PRCTL, Target::Next, Target::Skip(4));
    b.ld(arg_hi(0));
    b.jmp(JEQ_K, 0, Target::Next, Target::Allow);
    b.ld(arg_lo(0));
    b.jmp(JEQ_K, ARCH_SET_GS, Target::Die, Target::Allow);
    b.jmp(JEQ_K, nr::MMAP, Target::Next, Target::Allow);
    for addr in [USER_CTX_BASE, USER_GRANT_BASE, CTL_BASE] {
        b.ld(arg_hi(0));
        b.jmp(JEQ_K, (addr >> 32) as u32, Target::Next, Target::Skip(2));
        b.ld(arg_lo(0));
        b.jmp(JEQ_K, addr as u32, Target::Die, Target::Next);
    }
    b.ret(RET_ALLOW);
    b.finish(out)
}

/// Evaluates a stack of filters on one system call, like the kernel: every filter runs and
/// the answer with the strictest action wins (`KILL_PROCESS`, then `KILL_THREAD`, `TRAP`,
/// `ERRNO`, ..., `ALLOW`: the kernel compares the actions as signed 32-bit numbers); between
/// equal actions the first in `progs` wins, so list the newest filter first, as the kernel
/// walks them. An empty stack allows.
pub fn evaluate_stack(progs: &[&[SockFilter]], nr: u32, arch: u32, ip: u64, args: [u64; 6]) -> u32 {
    progs
        .iter()
        .map(|p| evaluate(p, nr, arch, ip, args))
        .min_by_key(|&r| (r & 0xffff_0000) as i32)
        .unwrap_or(RET_ALLOW)
}

/// Evaluates a filter on one system call, like the kernel does (for tests and fuzzing).
pub fn evaluate(prog: &[SockFilter], nr: u32, arch: u32, ip: u64, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            OFF_IP_LO => ip as u32,
            OFF_IP_HI => (ip >> 32) as u32,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if o % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => 0,
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let skip = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            LD_W_ABS => acc = word(i.k),
            AND_K => acc &= i.k,
            RET_K => return i.k,
            JEQ_K => pc += skip(acc == i.k),
            JGT_K => pc += skip(acc > i.k),
            JGE_K => pc += skip(acc >= i.k),
            JA => pc += i.k as usize,
            _ => return RET_KILL_PROCESS,
        }
    }
    RET_KILL_PROCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: u64 = 0x7f12_3400_0000;
    const P: FilterParams = FilterParams {
        text_start: TEXT,
        text_end: TEXT + 0x8000,
        pid: 4242,
        event_signal: 34,
    };
    const X86: u32 = AUDIT_ARCH_X86_64;

    fn prog() -> ([SockFilter; MAX_FILTER_LEN], usize) {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_kernel_filter(&P, &mut out).expect("filter builds");
        (out, n)
    }

    fn eval(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let (p, n) = prog();
        evaluate(&p[..n], nr, X86, ip, args)
    }

    fn eval_inproc(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_kernel_filter_with(&P, true, &mut out).expect("filter builds");
        evaluate(&out[..n], nr, X86, ip, args)
    }

    #[test]
    fn inproc_rules_allow_user_mappings_of_the_memfd_only() {
        let ip = TEXT + 0x100;
        let fd = GUEST_MEM_FD as u64;
        for addr in [0x40_0000, INPROC_HIGH.0, 0x3ff0_0000_0000] {
            let map = [addr, 0x1000, 7, 0x11, fd, 0x1000];
            assert_eq!(eval_inproc(nr::MMAP, ip, map), RET_ALLOW, "{addr:#x}");
            assert_eq!(eval(nr::MMAP, ip, map), RET_REFUSE, "{addr:#x}: mode off");
            // A demand-zero fault's block (`UserOp` MAP_POPULATE).
            let mut populated = map;
            populated[3] |= u64::from(USER_MAP_POPULATE);
            assert_eq!(eval_inproc(nr::MMAP, ip, populated), RET_ALLOW, "{addr:#x}");
            assert_eq!(eval(nr::MMAP, ip, populated), RET_REFUSE, "{addr:#x}: off");
            let unmap = [addr, 0x1000, 0, 0, 0, 0];
            assert_eq!(eval_inproc(nr::MUNMAP, ip, unmap), RET_ALLOW);
            assert_eq!(
                eval_inproc(nr::MPROTECT, ip, [addr, 0x1000, 1, 0, 0, 0]),
                RET_ALLOW
            );
        }
        // Anonymous or foreign-fd mappings, ranges reaching the control region, the
        // physmap or beyond the user window, too long, or with odd rights: refused.
        let refused: [(u32, [u64; 6]); 9] = [
            (nr::MMAP, [0x40_0000, 0x1000, 3, 0x31, u64::MAX, 0]),
            (nr::MMAP, [0x40_0000, 0x1000, 3, 0x8031, fd, 0]),
            (nr::MMAP, [0x40_0000, 0x1000, 3, 0x11, 4, 0]),
            (nr::MMAP, [0x40_0000, 0x1000, 3, 0x12, fd, 0]),
            (nr::MMAP, [INPROC_LOW.1, 0x1000, 3, 0x11, fd, 0]),
            (
                nr::MMAP,
                [0x40_0000, INPROC_LEN_MAX + 0x1000, 3, 0x11, fd, 0],
            ),
            (nr::MMAP, [0x40_0000, 0x1000, 8, 0x11, fd, 0]),
            (nr::MUNMAP, [USER_END, 0x1000, 0, 0, 0, 0]),
            (nr::MPROTECT, [0x40_0000, 0x1000, 8, 0, 0, 0]),
        ];
        for (n, args) in refused {
            assert_eq!(eval_inproc(n, ip, args), RET_REFUSE, "{n} {args:x?}");
        }
        assert_eq!(
            eval_inproc(nr::ARCH_PRCTL, ip, [0x1002, 7, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            eval_inproc(nr::ARCH_PRCTL, ip, [0x1001, 7, 0, 0, 0, 0]),
            RET_REFUSE
        );
        // The kernel filter's own rules still hold; user code still traps.
        assert_eq!(
            eval_inproc(nr::MMAP, ip, [WINDOW_BASE, 0x1000, 3, 0x11, fd, 0]),
            RET_ALLOW
        );
        assert_eq!(eval_inproc(nr::MMAP, 0x40_1000, [0; 6]), RET_TRAP);
    }

    /// `mem_write`: `pwrite64` on the guest memfd only, from stub code only, in both modes;
    /// any other fd (the control region's, a high half set) is refused.
    #[test]
    fn stub_writes_the_guest_memfd_only() {
        let ip = TEXT + 0x100;
        let fd = GUEST_MEM_FD as u64;
        let other = CTL_FD as u64;
        for eval in [eval, eval_inproc] {
            let pw = |f: u64| eval(nr::PWRITE64, ip, [f, WINDOW_BASE, 0x1000, 0x2000, 0, 0]);
            assert_eq!(pw(fd), RET_ALLOW);
            assert_eq!(pw(other), RET_REFUSE);
            assert_eq!(pw(fd | 1 << 32), RET_REFUSE);
            // From guest code they are the guest's own system calls.
            let args = [fd, WINDOW_BASE, 0x1000, 0, 0, 0];
            assert_eq!(eval(nr::PWRITE64, 0x40_1000, args), RET_TRAP);
            assert_eq!(eval(nr::PWRITE64, WINDOW_BASE, args), RET_TRAP);
        }
    }

    /// The kernel image's file is mapped into the window read-only or read-execute only, as
    /// `MAP_SHARED|MAP_FIXED`, in both modes; writable, elsewhere, other flags: refused.
    #[test]
    fn the_kernel_image_is_mapped_read_and_execute_only() {
        let ip = TEXT + 0x100;
        let img = KERNEL_IMAGE_FD as u64;
        for eval in [eval, eval_inproc] {
            let map = |prot: u64, flags: u64, addr: u64, fd: u64| {
                eval(nr::MMAP, ip, [addr, 0x3000, prot, flags, fd, 0x5000])
            };
            assert_eq!(map(1, 0x11, WINDOW_BASE, img), RET_ALLOW);
            assert_eq!(map(5, 0x11, WINDOW_BASE + 0x10_0000, img), RET_ALLOW);
            for prot in [2, 3, 7, 8] {
                assert_eq!(map(prot, 0x11, WINDOW_BASE, img), RET_REFUSE, "prot {prot}");
            }
            assert_eq!(map(5, 0x12, WINDOW_BASE, img), RET_REFUSE, "private");
            assert_eq!(map(5, 0x31, WINDOW_BASE, img), RET_REFUSE, "anonymous");
            assert_eq!(
                map(5, 0x11, CTL_BASE, img),
                RET_REFUSE,
                "outside the window"
            );
            assert_eq!(map(5, 0x11, WINDOW_BASE, img | 1 << 32), RET_REFUSE);
            assert_eq!(map(5, 0x11, WINDOW_BASE, 6), RET_REFUSE, "another fd");
            // The guest memfd keeps its read-write mappings.
            let fd = GUEST_MEM_FD as u64;
            assert_eq!(map(3, 0x11, WINDOW_BASE, fd), RET_ALLOW);
            // From guest code it is the guest's own system call.
            let args = [WINDOW_BASE, 0x1000, 5, 0x11, img, 0];
            assert_eq!(eval(nr::MMAP, 0x40_1000, args), RET_TRAP);
        }
    }

    #[test]
    fn guest_code_syscalls_trap() {
        for nr in [0, 2, 9, 11, 15, 57, 59, 60, 101, 202, 231, 317, 425] {
            assert_eq!(eval(nr, WINDOW_BASE + 0x1000, [0; 6]), RET_TRAP, "nr {nr}");
            assert_eq!(eval(nr, TEXT - 1, [0; 6]), RET_TRAP, "nr {nr}");
            // A `syscall` in the two bytes before the stub's code reports TEXT or TEXT + 1.
            assert_eq!(eval(nr, TEXT, [0; 6]), RET_TRAP, "nr {nr}");
            assert_eq!(eval(nr, TEXT + 1, [0; 6]), RET_TRAP, "nr {nr}");
            assert_eq!(eval(nr, TEXT + 0x8001, [0; 6]), RET_TRAP, "nr {nr}");
        }
    }

    #[test]
    fn stub_allowed_calls() {
        let ip = TEXT + 0x100;
        assert_eq!(eval(nr::RT_SIGRETURN, ip, [0; 6]), RET_ALLOW);
        assert_eq!(eval(nr::RT_SIGRETURN, TEXT + 2, [0; 6]), RET_ALLOW);
        assert_eq!(
            eval(nr::EXIT, ip, [0; 6]),
            RET_REFUSE,
            "a lone vCPU thread may not exit"
        );
        assert_eq!(eval(nr::EXIT_GROUP, TEXT + 0x8000, [0; 6]), RET_ALLOW);
        // A timed futex wait that a stop interrupted continues (a paused tenant).
        assert_eq!(eval(nr::RESTART_SYSCALL, ip, [0; 6]), RET_ALLOW);
        assert_eq!(eval(nr::FUTEX, ip, [0, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(nr::FUTEX, ip, [0, 129, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            eval(nr::FUTEX, ip, [0, 9, 0, 0, 0, 0]),
            RET_REFUSE,
            "FUTEX_WAIT_BITSET"
        );
        assert_eq!(
            eval(nr::FUTEX, ip, [0, 4, 0, 0, 0, 0]),
            RET_REFUSE,
            "FUTEX_CMP_REQUEUE"
        );
        let good_mmap = [WINDOW_BASE + 0x5000, 0x1000, 3, 0x11, 3, 0];
        assert_eq!(eval(nr::MMAP, ip, good_mmap), RET_ALLOW);
        assert_eq!(eval(nr::TGKILL, ip, [4242, 4243, 34, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            eval(nr::MUNMAP, ip, [WINDOW_BASE, WINDOW_SIZE - 1, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn stub_bad_arguments_are_refused() {
        let ip = TEXT + 0x100;
        let refuse = RET_REFUSE;
        // Anonymous, private, or foreign-fd mappings; mappings outside the window.
        assert_eq!(
            eval(nr::MMAP, ip, [WINDOW_BASE, 0x1000, 3, 0x31, u64::MAX, 0]),
            refuse
        );
        assert_eq!(
            eval(nr::MMAP, ip, [WINDOW_BASE, 0x1000, 3, 0x12, 3, 0]),
            refuse
        );
        assert_eq!(
            eval(nr::MMAP, ip, [WINDOW_BASE, 0x1000, 3, 0x11, 4, 0]),
            refuse
        );
        assert_eq!(
            eval(
                nr::MMAP,
                ip,
                [WINDOW_BASE, 0x1000, 3, 0x11, 3 | (1 << 32), 0]
            ),
            refuse
        );
        assert_eq!(eval(nr::MMAP, ip, [TEXT, 0x1000, 7, 0x11, 3, 0]), refuse);
        assert_eq!(
            eval(nr::MMAP, ip, [WINDOW_END, 0x1000, 3, 0x11, 3, 0]),
            refuse
        );
        let too_long = WINDOW_SIZE + (4 << 30);
        assert_eq!(
            eval(nr::MMAP, ip, [WINDOW_BASE, too_long, 3, 0x11, 3, 0]),
            refuse
        );
        assert_eq!(
            eval(nr::MUNMAP, ip, [WINDOW_BASE, too_long, 0, 0, 0, 0]),
            refuse
        );
        assert_eq!(eval(nr::MUNMAP, ip, [TEXT, 0x1000, 0, 0, 0, 0]), refuse);
        assert_eq!(eval(nr::TGKILL, ip, [1, 1, 34, 0, 0, 0]), refuse);
        assert_eq!(eval(nr::TGKILL, ip, [4242, 4243, 9, 0, 0, 0]), refuse);
        for nr in [
            0,
            1,
            2,
            10,
            41,
            56,
            57,
            59,
            62,
            101,
            157,
            317,
            319,
            425,
            435,
            0x4000_0000,
        ] {
            assert_eq!(eval(nr, ip, [0; 6]), refuse, "nr {nr}");
        }
        // Non-native architectures from stub code.
        let (p, n) = prog();
        assert_eq!(
            evaluate(&p[..n], nr::EXIT, 0x4000_0003, ip, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn code_across_a_4_gib_boundary_is_checked_as_64_bit_addresses() {
        // ASLR may load the stub so its code crosses a 4 GiB boundary: the filter must still
        // build (it once refused, failing one sandbox start in tens of thousands).
        for (start, end) in [
            (0x5_ffff_f000_u64, 0x6_0000_1000_u64),
            (0x5_ffff_fffe, 0x6_0000_1000),
            (0x5_ffff_ffff, 0x6_0000_1000),
            (0x5_ffff_f000, 0x6_0000_0000),
        ] {
            let params = FilterParams {
                text_start: start,
                text_end: end,
                ..P
            };
            let mut out = [SockFilter::default(); MAX_FILTER_LEN];
            let n = build_kernel_filter(&params, &mut out).expect("filter builds");
            let run = |ip: u64| evaluate(&out[..n], nr::SCHED_YIELD, X86, ip, [0; 6]);
            let user = UserFilterParams {
                common: params,
                pool_base: 0x1_0000_0000,
                mem_size: 0x2_0000_0000,
            };
            let mut user_out = [SockFilter::default(); MAX_FILTER_LEN];
            build_user_base_filter(&user, &mut user_out).expect("base filter builds");
            build_kernel_filter_with(&params, true, &mut user_out).expect("in-process builds");
            let mut lock_out = [SockFilter::default(); MAX_FILTER_LEN];
            let n_lock = build_user_lock_filter(&params, &mut lock_out).expect("lock builds");
            let lock = |ip: u64| evaluate(&lock_out[..n_lock], nr::SECCOMP, X86, ip, [1; 6]);
            let first = start + 2;
            for ip in [first, first + 1, 0x5_ffff_ffff, 0x6_0000_0000, end] {
                if ip >= first && ip <= end {
                    assert_eq!(run(ip), RET_ALLOW, "{start:#x}..{end:#x}: ip {ip:#x}");
                    assert_eq!(
                        lock(ip),
                        RET_KILL_PROCESS,
                        "{start:#x}..{end:#x}: ip {ip:#x}"
                    );
                }
            }
            for ip in [
                start,
                start + 1,
                end + 1,
                end + 0x1_0000_0000,
                first - 0x1_0000_0000,
                0x5_0000_0000,
                0x6_ffff_ffff,
                0x7_0000_0000,
                0,
                u64::MAX,
            ] {
                assert_eq!(run(ip), RET_TRAP, "{start:#x}..{end:#x}: ip {ip:#x}");
                assert_eq!(lock(ip), RET_ALLOW, "{start:#x}..{end:#x}: ip {ip:#x}");
            }
        }
    }

    #[test]
    fn rejects_bad_ranges() {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        for (text_start, text_end) in [(0x2000, 0x1000), (0x1000, 0x1001), (u64::MAX - 1, u64::MAX)]
        {
            let bad = FilterParams {
                text_start,
                text_end,
                ..P
            };
            assert_eq!(
                build_kernel_filter(&bad, &mut out),
                Err(FilterError::BadTextRange),
                "{text_start:#x}..{text_end:#x}"
            );
        }
        assert_eq!(
            build_kernel_filter(&P, &mut out[..4]),
            Err(FilterError::BufferTooSmall)
        );
    }

    const POOL: u64 = 0x1_0000_0000; // 4 GiB: the pool's start has a non-zero high half
    const MEM: u64 = 0x2_0000_0000;
    const UP: UserFilterParams = UserFilterParams {
        common: P,
        pool_base: POOL,
        mem_size: MEM,
    };

    /// The user policy: what a user sandbox's two filters answer together once it runs user
    /// code (the lock filter stacked on the base filter).
    fn user_eval(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        user_eval_arch(nr, X86, ip, args)
    }

    fn user_eval_arch(nr: u32, arch: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut base = [SockFilter::default(); MAX_FILTER_LEN];
        let nb = build_user_base_filter(&UP, &mut base).expect("base filter builds");
        let mut lock = [SockFilter::default(); MAX_FILTER_LEN];
        let nl = build_user_lock_filter(&UP.common, &mut lock).expect("lock filter builds");
        evaluate_stack(&[&lock[..nl], &base[..nb]], nr, arch, ip, args)
    }

    const GOOD_MAP: [u64; 6] = [0x40_0000, 0x2000, 5, 0x11, 3, POOL + 0x3000];

    #[test]
    fn user_code_syscalls_trap_and_foreign_arches_die() {
        for nr in [0, 1, 9, 10, 11, 15, 39, 60, 158, 202, 231, 0x4000_0001] {
            for ip in [0x40_1000, TEXT, TEXT + 1, TEXT + 0x8001, USER_END + 0x100] {
                assert_eq!(user_eval(nr, ip, GOOD_MAP), RET_TRAP, "nr {nr} ip {ip:#x}");
            }
        }
        for ip in [0x40_1000, TEXT + 0x100] {
            assert_eq!(
                user_eval_arch(1, 0x4000_0003, ip, [0; 6]),
                RET_KILL_PROCESS,
                "int 0x80 at {ip:#x}"
            );
        }
    }

    #[test]
    fn user_stub_allowed_calls() {
        let ip = TEXT + 0x100;
        for nr in [
            nr::RT_SIGRETURN,
            nr::EXIT_GROUP,
            nr::SCHED_YIELD,
            nr::TIMER_SETTIME,
            nr::TIMER_GETTIME,
            nr::RESTART_SYSCALL,
        ] {
            assert_eq!(user_eval(nr, ip, [0; 6]), RET_ALLOW, "nr {nr}");
        }
        assert_eq!(user_eval(nr::FUTEX, ip, [0, 0, 5, 0x1000, 0, 0]), RET_ALLOW);
        assert_eq!(user_eval(nr::FUTEX, ip, [0, 129, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            user_eval(nr::ARCH_PRCTL, ip, [0x1002, 7, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            user_eval(nr::ARCH_PRCTL, ip, [0x1003, 7, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(user_eval(nr::MMAP, ip, GOOD_MAP), RET_ALLOW);
        let mut m = GOOD_MAP;
        m[5] = POOL; // the pool's first page
        assert_eq!(user_eval(nr::MMAP, ip, m), RET_ALLOW);
        m[5] = MEM - 0x1000; // its last page
        assert_eq!(user_eval(nr::MMAP, ip, m), RET_ALLOW);
        m = [USER_BASE, USER_LEN_MAX, 0, 0x11, 3, POOL];
        assert_eq!(user_eval(nr::MMAP, ip, m), RET_ALLOW);
        m = [USER_END - 0x1000, 0x1000, 7, 0x11, 3, POOL];
        assert_eq!(user_eval(nr::MMAP, ip, m), RET_ALLOW);
        m[3] = 0x11 | u64::from(USER_MAP_POPULATE); // a fault's block, populated
        assert_eq!(user_eval(nr::MMAP, ip, m), RET_ALLOW);
        assert_eq!(
            user_eval(nr::MUNMAP, ip, [USER_BASE, USER_LEN_MAX, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            user_eval(nr::MPROTECT, ip, [0x40_0000, 0x1000, 7, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn user_stub_bad_arguments_kill() {
        let ip = TEXT + 0x100;
        let kill = RET_KILL_PROCESS;
        let with = |i: usize, v: u64| {
            let mut m = GOOD_MAP;
            m[i] = v;
            user_eval(nr::MMAP, ip, m)
        };
        // Offsets below the pool (guest kernel memory), at or past the end of memory, with a
        // high half that would pass a 32-bit compare.
        for off in [
            0,
            0x1000,
            POOL - 0x1000,
            POOL - 1,
            MEM,
            MEM + 0x1000,
            POOL | 1 << 40,
        ] {
            assert_eq!(with(5, off), kill, "offset {off:#x}");
        }
        assert_eq!(
            with(5, (POOL & 0xffff_ffff) | 0x3000),
            kill,
            "low half only"
        );
        // Another fd, private / anonymous / extra flags.
        for fd in [0, 4, 5, u64::MAX, 3 | 1 << 32] {
            assert_eq!(with(4, fd), kill, "fd {fd:#x}");
        }
        for flags in [
            0x01,
            0x10,
            0x12,
            0x22,
            0x31,
            0x11 | 0x100,
            0x11 | 0x10_0000,
            0x11 | 1 << 32,
            0x8000,
            0x8001,
            0x8010,
            0x8011 | 0x100,
            0x8011 | 1 << 32,
        ] {
            assert_eq!(with(3, flags), kill, "flags {flags:#x}");
        }
        // Prot beyond RWX (PROT_SEM, PROT_GROWSDOWN, high bits).
        for prot in [8, 0x0100_0000, 1 << 32] {
            assert_eq!(with(2, prot), kill, "prot {prot:#x}");
        }
        // Addresses outside the user window, lengths past the guard.
        for addr in [
            0,
            USER_BASE - 0x1000,
            USER_END,
            USER_CTX_BASE,
            TEXT,
            1 << 47,
            !0xfff,
        ] {
            assert_eq!(with(0, addr), kill, "addr {addr:#x}");
            assert_eq!(
                user_eval(nr::MUNMAP, ip, [addr, 0x1000, 0, 0, 0, 0]),
                kill,
                "munmap {addr:#x}"
            );
            assert_eq!(
                user_eval(nr::MPROTECT, ip, [addr, 0x1000, 1, 0, 0, 0]),
                kill,
                "mprotect {addr:#x}"
            );
        }
        for len in [
            USER_LEN_MAX + 1,
            USER_LEN_MAX + 0x1000,
            USER_END,
            u64::MAX,
            1 << 32 | USER_LEN_MAX,
        ] {
            assert_eq!(with(1, len), kill, "len {len:#x}");
            assert_eq!(
                user_eval(nr::MUNMAP, ip, [USER_BASE, len, 0, 0, 0, 0]),
                kill,
                "munmap len {len:#x}"
            );
            assert_eq!(
                user_eval(nr::MPROTECT, ip, [USER_BASE, len, 0, 0, 0, 0]),
                kill,
                "mprotect len {len:#x}"
            );
        }
        assert_eq!(
            user_eval(nr::MPROTECT, ip, [0x40_0000, 0x1000, 8, 0, 0, 0]),
            kill
        );
        assert_eq!(
            user_eval(nr::FUTEX, ip, [0, 9, 0, 0, 0, 0]),
            kill,
            "WAIT_BITSET"
        );
        assert_eq!(
            user_eval(nr::FUTEX, ip, [0, 4, 0, 0, 0, 0]),
            kill,
            "CMP_REQUEUE"
        );
        // No call that signals a process: a thread enters its handler through its timer.
        for args in [
            [4242, 4243, 34, 0, 0, 0],
            [1, 1, 34, 0, 0, 0],
            [4242, 4243, 9, 0, 0, 0],
        ] {
            assert_eq!(user_eval(nr::TGKILL, ip, args), kill, "{args:?}");
        }
        for opt in [0x1001, 0x1004, 0x1002 | 1 << 32, 0x3001, 0x4001] {
            assert_eq!(
                user_eval(nr::ARCH_PRCTL, ip, [opt, 0, 0, 0, 0, 0]),
                kill,
                "arch_prctl {opt:#x}"
            );
        }
        // Calls the kernel filter allows or nobody should make: all kill here.
        for nr in [
            0,
            1,
            2,
            13,
            14,
            39,
            56,
            57,
            59,
            60,
            62,
            101,
            131,
            157,
            186,
            222,
            317,
            425,
            0x4000_0000,
        ] {
            assert_eq!(user_eval(nr, ip, [0; 6]), kill, "nr {nr}");
        }
    }

    #[test]
    fn user_filter_rejects_an_empty_pool() {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let bad = UserFilterParams {
            pool_base: MEM,
            ..UP
        };
        assert_eq!(
            build_user_base_filter(&bad, &mut out),
            Err(FilterError::BadPool)
        );
        let n = build_user_base_filter(&UP, &mut out).expect("builds");
        assert_eq!(
            build_user_base_filter(&UP, &mut out[..n - 1]),
            Err(FilterError::BufferTooSmall)
        );
        let n = build_user_lock_filter(&P, &mut out).expect("builds");
        assert_eq!(
            build_user_lock_filter(&P, &mut out[..n - 1]),
            Err(FilterError::BufferTooSmall)
        );
    }

    #[test]
    fn the_lock_filter_is_short_and_kills_only_the_set_up_calls_from_stub_code() {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_user_lock_filter(&P, &mut out).expect("builds");
        assert!(n <= 40, "{n} instructions");
        let lock = |nr: u32, ip: u64, a: [u64; 6]| evaluate(&out[..n], nr, X86, ip, a);
        let ip = TEXT + 0x100;
        assert_eq!(lock(nr::SECCOMP, ip, [1, 1, 0, 0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(lock(nr::SECCOMP, ip, [0; 6]), RET_KILL_PROCESS);
        // A template child's start-up calls ([`build_user_template_filter`]).
        for nr in [
            nr::CLONE,
            nr::TIMER_CREATE,
            nr::SIGALTSTACK,
            nr::GETTID,
            nr::GETPID,
            nr::CLOSE,
            nr::WAIT4,
        ] {
            assert_eq!(lock(nr, ip, [0; 6]), RET_KILL_PROCESS, "nr {nr}");
        }
        assert_eq!(
            lock(nr::ARCH_PRCTL, ip, [u64::from(ARCH_SET_GS), 0, 0, 0, 0, 0]),
            RET_KILL_PROCESS
        );
        for opt in [ARCH_SET_FS, ARCH_GET_FS] {
            assert_eq!(
                lock(nr::ARCH_PRCTL, ip, [u64::from(opt), 0, 0, 0, 0, 0]),
                RET_ALLOW
            );
        }
        let gs_high = u64::from(ARCH_SET_GS) | 1 << 32;
        assert_eq!(
            lock(nr::ARCH_PRCTL, ip, [gs_high, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        for addr in [USER_CTX_BASE, USER_GRANT_BASE, CTL_BASE] {
            assert_eq!(lock(nr::MMAP, ip, [addr, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
            // The same low or high half alone is another address.
            for other in [addr ^ (1 << 40), addr ^ 0x1000] {
                assert_eq!(lock(nr::MMAP, ip, [other, 0, 0, 0, 0, 0]), RET_ALLOW);
            }
        }
        for nr in [
            nr::FUTEX,
            nr::MUNMAP,
            nr::MPROTECT,
            nr::EXIT_GROUP,
            59,
            0x4000_013d,
        ] {
            assert_eq!(lock(nr, ip, [USER_CTX_BASE; 6]), RET_ALLOW, "nr {nr}");
        }
        // From user code it allows everything: the base filter traps it.
        for nr in [nr::SECCOMP, nr::MMAP] {
            assert_eq!(lock(nr, 0x40_1000, [USER_CTX_BASE; 6]), RET_ALLOW);
        }
    }

    #[test]
    fn a_stack_answers_with_its_strictest_filter() {
        let ret = |k: u32| {
            [SockFilter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k,
            }]
        };
        let (allow, trap, kill) = (ret(RET_ALLOW), ret(RET_TRAP), ret(RET_KILL_PROCESS));
        let refuse = ret(RET_REFUSE);
        let eval = |s: &[&[SockFilter]]| evaluate_stack(s, 0, X86, 0, [0; 6]);
        assert_eq!(eval(&[]), RET_ALLOW);
        assert_eq!(eval(&[&allow, &trap]), RET_TRAP);
        assert_eq!(eval(&[&trap, &kill, &allow]), RET_KILL_PROCESS);
        // Equal actions: the first (newest) filter's data.
        assert_eq!(eval(&[&refuse, &trap]), RET_REFUSE);
        assert_eq!(eval(&[&trap, &refuse]), RET_TRAP);
    }

    fn template_eval(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_user_template_filter(&UP, &mut out).expect("template filter builds");
        evaluate(&out[..n], nr, X86, ip, args)
    }

    /// What a template's child runs user code under: the lock filter on the template filter.
    fn child_eval(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut t = [SockFilter::default(); MAX_FILTER_LEN];
        let nt = build_user_template_filter(&UP, &mut t).expect("template filter builds");
        let mut lock = [SockFilter::default(); MAX_FILTER_LEN];
        let nl = build_user_lock_filter(&UP.common, &mut lock).expect("lock filter builds");
        evaluate_stack(&[&lock[..nl], &t[..nt]], nr, X86, ip, args)
    }

    #[test]
    fn the_template_filter_adds_only_forks_thread_set_up_and_the_control_page() {
        let ip = TEXT + 0x100;
        let ctl = [CTL_BASE, PAGE_SIZE, 3, 0x11, 4, 7 * PAGE_SIZE];
        let allowed = [
            (
                nr::CLONE,
                [u64::from(TEMPLATE_FORK_FLAGS), 0, 0x1000, 0, 0, 0],
            ),
            (
                nr::CLONE,
                [u64::from(SLOT_THREAD_FLAGS), 0x7000, 0, 0, 0, 0],
            ),
            (nr::TIMER_CREATE, [1, 0x1000, 0x2000, 0, 0, 0]),
            (nr::SIGALTSTACK, [0x1000, 0, 0, 0, 0, 0]),
            (nr::GETTID, [0; 6]),
            (nr::GETPID, [0; 6]),
            (nr::CLOSE, [5, 0, 0, 0, 0, 0]),
            (nr::WAIT4, [u64::MAX, 0, 1, 0, 0, 0]),
            (nr::ARCH_PRCTL, [u64::from(ARCH_SET_GS), 0x1000, 0, 0, 0, 0]),
            (nr::MMAP, ctl),
        ];
        for (nr, a) in allowed {
            assert_eq!(template_eval(nr, ip, a), RET_ALLOW, "nr {nr} {a:#x?}");
            // The base filter never allowed them, and a child's lock filter kills them.
            assert_eq!(base_eval(nr, ip, a), RET_KILL_PROCESS, "nr {nr} {a:#x?}");
            assert_eq!(child_eval(nr, ip, a), RET_KILL_PROCESS, "nr {nr} {a:#x?}");
            // From user code they trap.
            assert_eq!(template_eval(nr, 0x40_1000, a), RET_TRAP, "nr {nr}");
        }
        let with = |i: usize, v: u64| {
            let mut a = ctl;
            a[i] = v;
            a
        };
        for a in [
            with(0, CTL_BASE + PAGE_SIZE),
            with(1, 2 * PAGE_SIZE),
            with(2, 7),
            with(3, 0x10_0011),
            with(4, 3),
        ] {
            assert_eq!(template_eval(nr::MMAP, ip, a), RET_KILL_PROCESS, "{a:#x?}");
        }
        for flags in [
            0,
            17,
            0x1000,
            u64::from(SLOT_THREAD_FLAGS) | 0x8000,
            0x2_0000_0000,
        ] {
            let a = [flags, 0, 0, 0, 0, 0];
            assert_eq!(
                template_eval(nr::CLONE, ip, a),
                RET_KILL_PROCESS,
                "{flags:#x}"
            );
        }
        // Everything the base filter allows, the template filter allows.
        assert_eq!(template_eval(nr::MMAP, ip, GOOD_MAP), RET_ALLOW);
        assert_eq!(child_eval(nr::MMAP, ip, GOOD_MAP), RET_ALLOW);
        assert_eq!(child_eval(nr::FUTEX, ip, [0, 0, 5, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn window_descriptors_map_read_only_and_are_asked_for_from_stub_code() {
        let ip = TEXT + 0x100;
        let fd = WINDOW_FD_BASE as u64;
        let map = [GOOD_MAP[0], GOOD_MAP[1], 5, 0x11, fd + 3, 0x2000];
        for eval in [base_eval, template_eval, child_eval] {
            assert_eq!(eval(nr::MMAP, ip, map), RET_ALLOW);
            let with = |i: usize, v: u64| {
                let mut a = map;
                a[i] = v;
                a
            };
            for a in [
                with(2, 3),                           // writable
                with(2, 7),                           // writable and executable
                with(3, 0x12),                        // MAP_PRIVATE
                with(4, fd - 1),                      // below the window descriptors
                with(4, fd + u64::from(MAX_WINDOWS)), // above them
                with(4, (1 << 32) | fd),              // high bits set
                with(5, WINDOW_SPAN),                 // past a slot's largest file
                with(0, USER_CTX_BASE),               // outside the user window
            ] {
                assert_eq!(eval(nr::MMAP, ip, a), RET_KILL_PROCESS, "{a:#x?}");
            }
            assert_eq!(eval(nr::MMAP, 0x40_1000, map), RET_TRAP, "from user code");
        }
        // The request for a window's descriptor goes to the host's listener: from stub code
        // only, for a slot that can exist.
        let sync = [7, 0, 0, 0, 0, 0];
        for eval in [base_eval, child_eval] {
            assert_eq!(eval(WINDOW_SYNC_NR, ip, sync), RET_USER_NOTIF);
            assert_eq!(
                eval(WINDOW_SYNC_NR, ip, [u64::from(MAX_WINDOWS), 0, 0, 0, 0, 0]),
                RET_KILL_PROCESS
            );
            assert_eq!(eval(WINDOW_SYNC_NR, 0x40_1000, sync), RET_TRAP);
        }
    }

    fn base_eval(nr: u32, ip: u64, args: [u64; 6]) -> u32 {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let n = build_user_base_filter(&UP, &mut out).expect("base filter builds");
        evaluate(&out[..n], nr, X86, ip, args)
    }

    #[test]
    fn base_filter_adds_the_read_only_grant_page_mapping() {
        let ip = TEXT + 0x100;
        let grant = [
            USER_GRANT_BASE,
            PAGE_SIZE,
            u64::from(GRANT_MAP_PROT),
            u64::from(CTX_MAP_FLAGS),
            3,
            POOL - 0x1000,
        ];
        assert_eq!(base_eval(nr::MMAP, ip, grant), RET_ALLOW);
        // The lock filter on top kills it.
        assert_eq!(user_eval(nr::MMAP, ip, grant), RET_KILL_PROCESS);
        let with = |i: usize, v: u64| {
            let mut a = grant;
            a[i] = v;
            a
        };
        for a in [
            with(0, USER_GRANT_BASE + 0x1000),
            with(1, 2 * PAGE_SIZE),
            with(2, 3),
            with(3, 0x11),
            with(4, 4),
            with(5, POOL),
        ] {
            assert_eq!(base_eval(nr::MMAP, ip, a), RET_KILL_PROCESS, "{a:#x?}");
        }
    }

    #[test]
    fn base_filter_adds_only_the_context_mapping_and_the_second_filter() {
        let ip = TEXT + 0x100;
        let ctx = [
            USER_CTX_BASE,
            user_ctx_size(2),
            u64::from(CTX_MAP_PROT),
            u64::from(CTX_MAP_FLAGS),
            3,
            POOL + 0x4000,
        ];
        let tsync = [1, 1, 0x7fff_0000_1000, 0, 0, 0];
        assert_eq!(base_eval(nr::MMAP, ip, ctx), RET_ALLOW);
        assert_eq!(base_eval(nr::SECCOMP, ip, tsync), RET_ALLOW);
        // The lock filter (stacked on top once assigned) kills both.
        assert_eq!(user_eval(nr::MMAP, ip, ctx), RET_KILL_PROCESS);
        assert_eq!(user_eval(nr::SECCOMP, ip, tsync), RET_KILL_PROCESS);
        // Every other context mapping or seccomp call is killed by the base filter too.
        let with = |i: usize, v: u64| {
            let mut a = ctx;
            a[i] = v;
            a
        };
        for a in [
            with(0, USER_CTX_BASE + 0x1000),
            with(0, USER_CTX_BASE | (1 << 63)),
            with(1, user_ctx_size(MAX_VCPUS) + 1),
            with(2, 7),
            with(3, 0x11 | 0x10_0000),
            with(4, 4),
            with(5, POOL - 0x1000),
            with(5, MEM),
        ] {
            assert_eq!(base_eval(nr::MMAP, ip, a), RET_KILL_PROCESS, "{a:#x?}");
        }
        for a in [[0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0]] {
            assert_eq!(base_eval(nr::SECCOMP, ip, a), RET_KILL_PROCESS, "{a:?}");
        }
        // And from user code they trap like any call.
        assert_eq!(base_eval(nr::MMAP, 0x40_1000, ctx), RET_TRAP);
        assert_eq!(base_eval(nr::SECCOMP, 0x40_1000, tsync), RET_TRAP);
        // What the user policy allows, the base filter allows.
        assert_eq!(base_eval(nr::MMAP, ip, GOOD_MAP), RET_ALLOW);
        assert_eq!(base_eval(nr::FUTEX, ip, [0, 0, 5, 0, 0, 0]), RET_ALLOW);
    }
}
