//! The kernel sandbox's seccomp filter.
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
//! | `mmap` | fd == guest memfd, flags == `MAP_SHARED\|MAP_FIXED`, addr in window, len <= window size | shadow fill |
//! | `munmap` | addr in window, len <= window size | shadow invalidation |
//! | `timer_settime` | - | arming the vCPU timer (timers were created before the filter) |
//! | `tgkill` | tgid == the sandbox's pid, signal == the event signal | kicking another vCPU |
//!
//! No `clone`: every vCPU thread exists before the filter is installed. No `open`, `socket`,
//! `execve`, `ptrace`, `kill`, anonymous `mmap`, `mprotect`, `prctl`, `seccomp`,
//! `memfd_create`, `io_uring_*` or anything else.

use pvmux_hypercalls::layout::{WINDOW_BASE, WINDOW_END, WINDOW_SIZE};
use pvmux_hypercalls::sandbox::GUEST_MEM_FD;

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
/// What a refused call from stub code gets: `SECCOMP_RET_TRAP` with `SECCOMP_RET_DATA` = 1.
/// The call is not executed; the stub's SIGSYS handler sees `si_errno` = 1 and a stub
/// instruction pointer, records an ABI violation naming the call, and ends the sandbox.
/// (If a guest managed to block SIGSYS, the kernel kills the process instead.)
pub const RET_REFUSE: u32 = RET_TRAP | 1;

/// System-call numbers the policy names.
pub mod nr {
    #![allow(missing_docs)]
    pub const MMAP: u32 = 9;
    pub const MUNMAP: u32 = 11;
    pub const RT_SIGRETURN: u32 = 15;
    pub const SCHED_YIELD: u32 = 24;
    pub const EXIT: u32 = 60;
    pub const FUTEX: u32 = 202;
    pub const TIMER_SETTIME: u32 = 223;
    pub const EXIT_GROUP: u32 = 231;
    pub const TGKILL: u32 = 234;
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const AND_K: u16 = 0x54;

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

/// Errors building a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// The code range is empty or crosses a 4 GiB boundary (BPF compares 32-bit halves).
    BadTextRange,
    /// The output buffer is too small.
    BufferTooSmall,
}

/// Maximum length of the filter in instructions.
pub const MAX_FILTER_LEN: usize = 128;

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
    Skip(usize),
}

struct Builder {
    insns: [(SockFilter, Target, Target, usize); MAX_FILTER_LEN],
    len: usize,
    block: usize,
}

impl Builder {
    fn push(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
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
    /// Refuses unless the 64-bit argument `i` lies in `[WINDOW_BASE, WINDOW_END)`.
    fn arg_in_window(&mut self, i: u32) {
        // WINDOW_BASE and WINDOW_END are 4 GiB aligned, so the high half decides.
        self.ld(arg_hi(i));
        self.jmp(
            JGE_K,
            (WINDOW_BASE >> 32) as u32,
            Target::Next,
            Target::Refuse,
        );
        self.jmp(
            JGE_K,
            (WINDOW_END >> 32) as u32,
            Target::Refuse,
            Target::Next,
        );
    }
    /// Refuses unless the 64-bit argument `i` is at most `WINDOW_SIZE` (so a whole-window
    /// `munmap` passes, and `addr + len` of an address in the window stays inside the window
    /// and its guard).
    fn arg_at_most_window_size(&mut self, i: u32) {
        // WINDOW_SIZE is 4 GiB aligned: a high half above its high half is too long; equal
        // high halves are fine only with a zero low half.
        self.ld(arg_hi(i));
        self.jmp(
            JGT_K,
            (WINDOW_SIZE >> 32) as u32,
            Target::Refuse,
            Target::Next,
        );
        self.jmp(
            JEQ_K,
            (WINDOW_SIZE >> 32) as u32,
            Target::Next,
            Target::Skip(2),
        );
        self.ld(arg_lo(i));
        self.jmp(JEQ_K, 0, Target::Next, Target::Refuse);
    }
    /// Refuses unless the 64-bit argument `i` equals `v` (as a 32-bit value, high half zero).
    fn arg_eq32(&mut self, i: u32, v: u32) {
        self.ld(arg_hi(i));
        self.jmp(JEQ_K, 0, Target::Next, Target::Refuse);
        self.ld(arg_lo(i));
        self.jmp(JEQ_K, v, Target::Next, Target::Refuse);
    }

    fn finish(self, out: &mut [SockFilter]) -> Result<usize, FilterError> {
        let n = self.len + 4;
        if out.len() < n {
            return Err(FilterError::BufferTooSmall);
        }
        let (allow, refuse, trap, die) = (self.len, self.len + 1, self.len + 2, self.len + 3);
        for (i, &(mut insn, jt, jf, block)) in self.insns[..self.len].iter().enumerate() {
            let resolve = |t: Target| -> Result<u8, FilterError> {
                let dest = match t {
                    Target::Next => i + 1,
                    Target::Allow => allow,
                    Target::Refuse => refuse,
                    Target::Trap => trap,
                    Target::Die => die,
                    Target::Skip(n) => i + 1 + n,
                    Target::NextBlock => (i + 1..self.len)
                        .find(|&j| self.insns[j].3 > block)
                        .unwrap_or(refuse),
                };
                u8::try_from(dest - i - 1).map_err(|_| FilterError::BufferTooSmall)
            };
            if insn.code != RET_K && insn.code != LD_W_ABS && insn.code != AND_K {
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
    let end = p.text_end;
    // seccomp reports the address *after* the 2-byte `syscall`, so a call made by stub code
    // reports an IP in [text_start + 2, text_end]; text_start or text_start + 1 would mean a
    // `syscall` in the bytes just before the stub's code.
    let first = p.text_start.wrapping_add(2);
    if first > end || p.text_start >> 32 != end >> 32 || first >> 32 != end >> 32 {
        return Err(FilterError::BadTextRange);
    }
    let mut b = Builder {
        insns: [(SockFilter::default(), Target::Next, Target::Next, 0); MAX_FILTER_LEN],
        len: 0,
        block: 0,
    };
    // 1. Only system calls made by stub code run at all; the rest trap to the guest.
    b.ld(OFF_IP_HI);
    b.jmp(
        JEQ_K,
        (p.text_start >> 32) as u32,
        Target::Next,
        Target::Trap,
    );
    b.ld(OFF_IP_LO);
    b.jmp(JGE_K, first as u32, Target::Next, Target::Trap);
    b.jmp(JGT_K, end as u32, Target::Trap, Target::Next);
    // 2. From stub code: native x86-64 calls only (no x32, no int 0x80).
    b.ld(OFF_ARCH);
    b.jmp(JEQ_K, AUDIT_ARCH_X86_64, Target::Next, Target::Die);
    // 3. The allow-list.
    for n in [
        nr::RT_SIGRETURN,
        nr::EXIT_GROUP,
        nr::SCHED_YIELD,
        nr::TIMER_SETTIME,
    ] {
        b.block(n);
        b.ret(RET_ALLOW);
    }
    b.block(nr::FUTEX);
    b.ld(arg_lo(1));
    b.push(AND_K, !0x180, Target::Next, Target::Next); // strip PRIVATE and CLOCK_REALTIME
    b.jmp(JEQ_K, 0, Target::Allow, Target::Next); // FUTEX_WAIT
    b.jmp(JEQ_K, 1, Target::Allow, Target::Refuse); // FUTEX_WAKE
    b.block(nr::MMAP);
    b.arg_in_window(0);
    b.arg_at_most_window_size(1);
    b.arg_eq32(3, 0x11); // MAP_SHARED | MAP_FIXED, nothing else
    b.arg_eq32(4, GUEST_MEM_FD as u32);
    b.ret(RET_ALLOW);
    b.block(nr::MUNMAP);
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
    fn rejects_bad_ranges() {
        let mut out = [SockFilter::default(); MAX_FILTER_LEN];
        let bad = FilterParams {
            text_start: 0xffff_f000,
            text_end: 0x1_0000_1000,
            ..P
        };
        assert_eq!(
            build_kernel_filter(&bad, &mut out),
            Err(FilterError::BadTextRange)
        );
        assert_eq!(
            build_kernel_filter(&P, &mut out[..4]),
            Err(FilterError::BufferTooSmall)
        );
    }
}
