//! What a signal carries: its `siginfo_t` (who sent it, or the fault, or the child's state
//! change), and the x86-64 encoding of it.

/// `si_code` values (`<asm-generic/siginfo.h>`).
#[allow(dead_code)]
pub(crate) mod code {
    /// Sent by `kill`.
    pub(crate) const SI_USER: i32 = 0;
    /// Sent by the kernel.
    pub(crate) const SI_KERNEL: i32 = 0x80;
    /// Sent by `sigqueue`.
    pub(crate) const SI_QUEUE: i32 = -1;
    /// Sent by a POSIX timer's expiry.
    pub(crate) const SI_TIMER: i32 = -2;
    /// Sent by `tkill`/`tgkill`.
    pub(crate) const SI_TKILL: i32 = -6;
    /// SIGSEGV: address not mapped.
    pub(crate) const SEGV_MAPERR: i32 = 1;
    /// SIGSEGV: no permission for the access.
    pub(crate) const SEGV_ACCERR: i32 = 2;
    /// SIGILL: illegal operand (what Linux reports for `#UD`).
    pub(crate) const ILL_ILLOPN: i32 = 2;
    /// SIGFPE: integer divide by zero.
    pub(crate) const FPE_INTDIV: i32 = 1;
    /// SIGFPE: floating-point invalid operation (x87/SIMD exceptions).
    pub(crate) const FPE_FLTINV: i32 = 7;
    /// SIGTRAP: trace trap.
    pub(crate) const TRAP_TRACE: i32 = 2;
    /// SIGBUS: invalid address alignment.
    pub(crate) const BUS_ADRALN: i32 = 1;
    /// `SIGBUS`: a nonexistent physical address (a file mapping's page past the end).
    pub(crate) const BUS_ADRERR: i32 = 2;
    /// SIGCHLD: the child exited.
    pub(crate) const CLD_EXITED: i32 = 1;
    /// SIGCHLD: the child was killed.
    pub(crate) const CLD_KILLED: i32 = 2;
}

/// Size of the x86-64 `siginfo_t`.
pub(crate) const SIGINFO_SIZE: usize = 128;

/// What a fault signal carries besides `si_addr`: where the program was and what it did, for
/// the signal frame's `uc_mcontext` and the kernel log's `segfault at` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fault {
    /// `si_addr`: the faulting address (page faults), else the instruction's.
    pub(crate) addr: u64,
    /// The exception vector (`uc_mcontext.trapno`).
    pub(crate) vector: u32,
    /// The exception's error code (`uc_mcontext.err`).
    pub(crate) error_code: u64,
    /// Instruction pointer of the faulting instruction.
    pub(crate) ip: u64,
    /// Stack pointer at the fault.
    pub(crate) sp: u64,
}

/// The kind-specific part of a signal's information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Sent by a process (`kill`, `tgkill`, `SIGPIPE`), or by the kernel (pid 0).
    Sender {
        /// Sending process.
        pid: i32,
        /// Its real user id.
        uid: u32,
    },
    /// `rt_sigqueueinfo`: the sender's own `siginfo_t`, passed through.
    Queued {
        /// `si_errno`.
        errno: i32,
        /// Everything after the header (`si_pid`, `si_uid`, `si_value`, ...).
        rest: [u8; SIGINFO_SIZE - 16],
    },
    /// A child's state change (`SIGCHLD`).
    Child {
        /// The child.
        pid: i32,
        /// Its real user id.
        uid: u32,
        /// Exit code or killing signal.
        status: i32,
        /// User CPU time in clock ticks.
        utime: i64,
        /// System CPU time in clock ticks.
        stime: i64,
    },
    /// A fault of the program itself.
    Fault(Fault),
    /// A POSIX timer's expiry (`SI_TIMER`).
    Timer {
        /// `si_timerid`: the timer's id in its process.
        timerid: i32,
        /// `si_overrun`: filled in when the signal is taken.
        overrun: i32,
        /// `si_value`: the timer's `sigev_value`.
        value: u64,
        /// Which arm of the timer queued it (not part of the encoding).
        key: u64,
    },
}

/// A signal's information as a hand-over record carries it (see [`SigInfo::to_carried`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Carried {
    /// `sig_detail` kind.
    pub(crate) detail: u32,
    pub(crate) a: i32,
    pub(crate) b: u32,
    pub(crate) c: i32,
    pub(crate) v: [u64; 4],
    /// A queued signal's `siginfo_t` after its header.
    pub(crate) rest: Option<[u8; SIGINFO_SIZE - 16]>,
}

/// One signal's information: what the `siginfo_t` of its delivery says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SigInfo {
    /// Signal number.
    pub(crate) signo: u32,
    /// `si_code`.
    pub(crate) code: i32,
    /// The rest.
    pub(crate) detail: Detail,
}

impl SigInfo {
    /// A signal from the kernel itself (terminal keys, a dead sandbox).
    pub(crate) const fn kernel(signo: u32) -> Self {
        Self {
            signo,
            code: code::SI_KERNEL,
            detail: Detail::Sender { pid: 0, uid: 0 },
        }
    }

    /// A signal sent by process `pid` with `code` (`SI_USER`, `SI_TKILL`).
    pub(crate) const fn from_process(signo: u32, code: i32, pid: i32) -> Self {
        Self {
            signo,
            code,
            detail: Detail::Sender { pid, uid: 0 },
        }
    }

    /// A fault signal.
    pub(crate) const fn fault(signo: u32, code: i32, fault: Fault) -> Self {
        Self {
            signo,
            code,
            detail: Detail::Fault(fault),
        }
    }

    /// The information of `rt_sigqueueinfo`'s `siginfo_t` `raw` for signal `signo`: the
    /// signal number is the system call's, the rest passes through (as Linux).
    pub(crate) fn queued(signo: u32, raw: &[u8; SIGINFO_SIZE]) -> Self {
        let word = |o: usize| i32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let mut rest = [0u8; SIGINFO_SIZE - 16];
        rest.copy_from_slice(&raw[16..]);
        Self {
            signo,
            code: word(8),
            detail: Detail::Queued {
                errno: word(4),
                rest,
            },
        }
    }

    /// The expiry of POSIX timer `timerid` (armed as `key`) with `sigev_value` `value`.
    pub(crate) const fn timer(signo: u32, timerid: i32, value: u64, key: u64) -> Self {
        Self {
            signo,
            code: code::SI_TIMER,
            detail: Detail::Timer {
                timerid,
                overrun: 0,
                value,
                key,
            },
        }
    }

    /// An adopted POSIX timer signal (whose arm key was not carried) linked to the arm
    /// `key_of(timerid)` gives, if any: returns its timer id when it was linked.
    pub(crate) fn link_timer(&mut self, key_of: impl Fn(i32) -> Option<u64>) -> Option<i32> {
        match &mut self.detail {
            Detail::Timer { timerid, key, .. } if *key == u64::MAX => {
                *key = key_of(*timerid)?;
                Some(*timerid)
            }
            _ => None,
        }
    }

    /// The information as a hand-over record carries it (section 32): (detail kind, a, b, c,
    /// v, a queued signal's `siginfo_t` rest). A timer's arm key is not carried: it names
    /// an arm of this kernel's timer.
    pub(crate) fn to_carried(self) -> Carried {
        use pvmux_hypercalls::handover::sig_detail as d;
        let mut c = Carried {
            detail: d::SENDER,
            a: 0,
            b: 0,
            c: 0,
            v: [0; 4],
            rest: None,
        };
        match self.detail {
            Detail::Sender { pid, uid } => (c.a, c.b) = (pid, uid),
            Detail::Queued { errno, rest } => {
                (c.detail, c.a, c.rest) = (d::QUEUED, errno, Some(rest));
            }
            Detail::Child {
                pid,
                uid,
                status,
                utime,
                stime,
            } => {
                (c.detail, c.a, c.b, c.c) = (d::CHILD, pid, uid, status);
                c.v = [utime as u64, stime as u64, 0, 0];
            }
            Detail::Fault(f) => {
                (c.detail, c.a) = (d::FAULT, f.vector as i32);
                c.v = [f.addr, f.error_code, f.ip, f.sp];
            }
            Detail::Timer {
                timerid,
                overrun,
                value,
                ..
            } => {
                (c.detail, c.a, c.b) = (d::TIMER, timerid, overrun as u32);
                c.v = [value, 0, 0, 0];
            }
        }
        c
    }

    /// The information of signal `signo` (`si_code` `code`) a hand-over record carried
    /// ([`Self::to_carried`]); `None` for an unknown detail or a queued one without its
    /// rest. A timer's signal names no arm of this kernel's (its overrun is then 0 when it
    /// is taken, as for a timer set again since).
    pub(crate) fn from_carried(signo: u32, code: i32, c: &Carried) -> Option<Self> {
        use pvmux_hypercalls::handover::sig_detail as d;
        let detail = match c.detail {
            d::SENDER => Detail::Sender { pid: c.a, uid: c.b },
            d::QUEUED => Detail::Queued {
                errno: c.a,
                rest: c.rest?,
            },
            d::CHILD => Detail::Child {
                pid: c.a,
                uid: c.b,
                status: c.c,
                utime: c.v[0] as i64,
                stime: c.v[1] as i64,
            },
            d::FAULT => Detail::Fault(Fault {
                addr: c.v[0],
                vector: c.a as u32,
                error_code: c.v[1],
                ip: c.v[2],
                sp: c.v[3],
            }),
            d::TIMER => Detail::Timer {
                timerid: c.a,
                overrun: c.b as i32,
                value: c.v[0],
                key: u64::MAX,
            },
            _ => return None,
        };
        Some(Self {
            signo,
            code,
            detail,
        })
    }

    /// The fault, for fault signals.
    pub(crate) const fn fault_info(&self) -> Option<Fault> {
        match self.detail {
            Detail::Fault(f) => Some(f),
            _ => None,
        }
    }

    /// The x86-64 `siginfo_t`.
    pub(crate) fn to_bytes(self) -> [u8; SIGINFO_SIZE] {
        let mut b = [0u8; SIGINFO_SIZE];
        b[0..4].copy_from_slice(&(self.signo as i32).to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        match self.detail {
            Detail::Sender { pid, uid } => {
                b[16..20].copy_from_slice(&pid.to_le_bytes());
                b[20..24].copy_from_slice(&uid.to_le_bytes());
            }
            Detail::Queued { errno, rest } => {
                b[4..8].copy_from_slice(&errno.to_le_bytes());
                b[16..].copy_from_slice(&rest);
            }
            Detail::Child {
                pid,
                uid,
                status,
                utime,
                stime,
            } => {
                b[16..20].copy_from_slice(&pid.to_le_bytes());
                b[20..24].copy_from_slice(&uid.to_le_bytes());
                b[24..28].copy_from_slice(&status.to_le_bytes());
                b[32..40].copy_from_slice(&utime.to_le_bytes());
                b[40..48].copy_from_slice(&stime.to_le_bytes());
            }
            Detail::Fault(f) => b[16..24].copy_from_slice(&f.addr.to_le_bytes()),
            Detail::Timer {
                timerid,
                overrun,
                value,
                ..
            } => {
                b[16..20].copy_from_slice(&timerid.to_le_bytes());
                b[20..24].copy_from_slice(&overrun.to_le_bytes());
                b[24..32].copy_from_slice(&value.to_le_bytes());
            }
        }
        b
    }
}

/// The encoding read back through the libc crate's `siginfo_t` accessors: see
/// `crate::linux_abi_tests` (those accessors are unsafe, and the Linux layer has no unsafe
/// code, tests included).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_host_linux() {
        assert_eq!(code::SI_USER, libc::SI_USER);
        assert_eq!(code::SI_KERNEL, libc::SI_KERNEL);
        assert_eq!(code::SI_QUEUE, libc::SI_QUEUE);
        assert_eq!(code::SI_TIMER, libc::SI_TIMER);
        assert_eq!(code::SI_TKILL, libc::SI_TKILL);
        assert_eq!(code::BUS_ADRALN, libc::BUS_ADRALN);
        assert_eq!(code::BUS_ADRERR, libc::BUS_ADRERR);
        assert_eq!(code::TRAP_TRACE, libc::TRAP_TRACE);
        assert_eq!(code::CLD_EXITED, libc::CLD_EXITED);
        assert_eq!(code::CLD_KILLED, libc::CLD_KILLED);
    }

    #[test]
    fn every_kind_of_information_round_trips_through_a_hand_over_record() {
        let mut rest = [0u8; SIGINFO_SIZE - 16];
        rest[0] = 42;
        rest[111] = 7;
        let fault = Fault {
            addr: 0xdead_0000,
            vector: 14,
            error_code: 6,
            ip: 0x40_1000,
            sp: 0x7fff_0000,
        };
        let child = SigInfo {
            signo: 17,
            code: code::CLD_EXITED,
            detail: Detail::Child {
                pid: 9,
                uid: 1000,
                status: 3,
                utime: 12,
                stime: 5,
            },
        };
        for info in [
            SigInfo::from_process(10, code::SI_TKILL, 4),
            SigInfo::kernel(2),
            SigInfo::queued(40, &{
                let mut raw = [0u8; SIGINFO_SIZE];
                raw[4] = 1;
                raw[8] = 0xff;
                raw[16..].copy_from_slice(&rest);
                raw
            }),
            child,
            SigInfo::fault(11, code::SEGV_MAPERR, fault),
        ] {
            let c = info.to_carried();
            assert_eq!(SigInfo::from_carried(info.signo, info.code, &c), Some(info));
        }
        // A timer's signal comes back without its arm (no arm of this kernel's).
        let t = SigInfo {
            signo: 34,
            code: code::SI_TIMER,
            detail: Detail::Timer {
                timerid: 3,
                overrun: 2,
                value: 99,
                key: 17,
            },
        };
        let back = SigInfo::from_carried(34, code::SI_TIMER, &t.to_carried()).expect("back");
        assert_eq!(back.to_bytes(), t.to_bytes(), "the same siginfo_t");
        assert!(matches!(back.detail, Detail::Timer { key: u64::MAX, .. }));
        // Unknown details, and a queued signal without its bytes, are refused.
        let mut c = child.to_carried();
        c.detail = 9;
        assert_eq!(SigInfo::from_carried(17, 1, &c), None);
        let mut q = SigInfo::queued(40, &[0; SIGINFO_SIZE]).to_carried();
        q.rest = None;
        assert_eq!(SigInfo::from_carried(40, 0, &q), None);
    }
}
