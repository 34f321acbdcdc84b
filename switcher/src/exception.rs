//! Host signal → guest exception: the one classification both sandbox kinds of the stub use
//! (docs/ABI.md §8.2 for kernel sandboxes, §16 for user sandboxes).
//!
//! The stub copies what it needs out of the host's `siginfo` and signal context into a
//! [`HostSignal`]; [`classify`] says what the guest sees:
//!
//! | host signal | guest |
//! |---|---|
//! | `SIGSEGV`, trap 14 (page fault) | `PageFault`, the host error code's `PRESENT WRITE RESERVED FETCH` bits (+ `USER` in a user sandbox), address = CR2 |
//! | other `SIGSEGV` | `GeneralProtection`, host error code & `0xffff` |
//! | `SIGBUS`, trap 17 (alignment check: `AC` set, unaligned access) | `AlignmentCheck` |
//! | other `SIGBUS` (access beyond the memfd) | `PageFault`, `PRESENT RESERVED` + the access's `WRITE`/`FETCH` (+ `USER`), address = `si_addr` |
//! | `SIGILL` | `InvalidOpcode` |
//! | `SIGFPE` | `X87Fp` (trap 16), `SimdFp` (trap 19), else `DivideError` |
//! | `SIGTRAP` | `Breakpoint` (trap 3), else `Debug` |
//! | `SIGSYS` (seccomp trap) | a system call: `si_syscall`, with [`SYSCALL_COMPAT`] unless `si_arch` is x86-64 |
//! | anything else | [`Classified::Other`]: the caller decides (the event signal, a timer) |
//!
//! A kernel sandbox first tries to resolve a `PageFault` inside the window as a shadow miss;
//! only a miss the guest's own tables refuse reaches the guest.

use pvmux_hypercalls::frame::{pf, SYSCALL_COMPAT};
use pvmux_hypercalls::Vector;

use crate::seccomp::AUDIT_ARCH_X86_64;

/// Host signal numbers (x86-64 Linux) the stub handles.
pub mod signo {
    /// Illegal instruction.
    pub const SIGILL: i32 = 4;
    /// Breakpoint / single step.
    pub const SIGTRAP: i32 = 5;
    /// Bus error (access beyond a file mapping's end, alignment check).
    pub const SIGBUS: i32 = 7;
    /// Arithmetic exception.
    pub const SIGFPE: i32 = 8;
    /// Segmentation fault.
    pub const SIGSEGV: i32 = 11;
    /// Bad system call (a seccomp trap).
    pub const SIGSYS: i32 = 31;
}

/// Which sandbox took the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxKind {
    /// A kernel sandbox: the guest kernel runs with one privilege level.
    Kernel,
    /// A user sandbox: the guest's user code (page faults carry `pf::USER`).
    User,
}

/// What the stub copied out of the host's `siginfo` and `struct sigcontext`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSignal {
    /// Signal number.
    pub signo: i32,
    /// `si_addr` (faults).
    pub si_addr: u64,
    /// `si_syscall` (SIGSYS).
    pub si_syscall: u32,
    /// `si_arch` (SIGSYS): an `AUDIT_ARCH_*` value.
    pub si_arch: u32,
    /// `sigcontext.trapno`: the hardware vector of the fault.
    pub trapno: u64,
    /// `sigcontext.err`: the hardware error code.
    pub err: u64,
    /// `sigcontext.cr2`: the page-fault address.
    pub cr2: u64,
}

/// What the guest sees of a host signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// An exception: vector, error code, fault address.
    Exception {
        /// The vector.
        vector: Vector,
        /// Its error code.
        error_code: u64,
        /// The fault address (page faults), else 0.
        fault_addr: u64,
    },
    /// A system call that was not executed: its number, with [`SYSCALL_COMPAT`] for a
    /// non-x86-64 ABI (the [`Vector::Syscall`] error code).
    Syscall {
        /// Number | compat bit.
        nr: u64,
    },
    /// Not an exception (the event signal, a timer, anything unexpected).
    Other,
}

/// The guest view of a host signal taken in a sandbox of `kind`.
pub fn classify(s: &HostSignal, kind: SandboxKind) -> Classified {
    use signo::*;
    let user = match kind {
        SandboxKind::Kernel => 0,
        SandboxKind::User => pf::USER,
    };
    let exc = |vector: Vector, error_code: u64, fault_addr: u64| Classified::Exception {
        vector,
        error_code,
        fault_addr,
    };
    let trap = |v: Vector| s.trapno == v as u64;
    match s.signo {
        SIGSEGV if trap(Vector::PageFault) => exc(
            Vector::PageFault,
            s.err & (pf::PRESENT | pf::WRITE | pf::RESERVED | pf::FETCH) | user,
            s.cr2,
        ),
        SIGSEGV => exc(Vector::GeneralProtection, s.err & 0xffff, 0),
        SIGBUS if trap(Vector::AlignmentCheck) => exc(Vector::AlignmentCheck, 0, 0),
        SIGBUS => exc(
            Vector::PageFault,
            pf::PRESENT | pf::RESERVED | (s.err & (pf::WRITE | pf::FETCH)) | user,
            s.si_addr,
        ),
        SIGILL => exc(Vector::InvalidOpcode, 0, 0),
        SIGFPE if trap(Vector::X87Fp) => exc(Vector::X87Fp, 0, 0),
        SIGFPE if trap(Vector::SimdFp) => exc(Vector::SimdFp, 0, 0),
        SIGFPE => exc(Vector::DivideError, 0, 0),
        SIGTRAP if trap(Vector::Breakpoint) => exc(Vector::Breakpoint, 0, 0),
        SIGTRAP => exc(Vector::Debug, 0, 0),
        SIGSYS => {
            let compat = if s.si_arch == AUDIT_ARCH_X86_64 {
                0
            } else {
                SYSCALL_COMPAT
            };
            Classified::Syscall {
                nr: u64::from(s.si_syscall) | compat,
            }
        }
        _ => Classified::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::signo::*;
    use super::*;

    const KINDS: [SandboxKind; 2] = [SandboxKind::Kernel, SandboxKind::User];
    /// `AUDIT_ARCH_I386` (`int 0x80`).
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    /// Hardware #PF error-code bit 2 (user mode): always set for a fault in a sandbox.
    const HW_USER: u64 = 4;

    fn exc(vector: Vector, error_code: u64, fault_addr: u64) -> Classified {
        Classified::Exception {
            vector,
            error_code,
            fault_addr,
        }
    }

    fn user_bit(kind: SandboxKind) -> u64 {
        match kind {
            SandboxKind::Kernel => 0,
            SandboxKind::User => pf::USER,
        }
    }

    #[test]
    fn page_faults_keep_the_access_and_mark_user_mode() {
        for kind in KINDS {
            let s = HostSignal {
                signo: SIGSEGV,
                trapno: 14,
                err: HW_USER | pf::WRITE | pf::PRESENT | 0xffe0,
                cr2: 0x1234,
                si_addr: 0x1234,
                ..Default::default()
            };
            assert_eq!(
                classify(&s, kind),
                exc(
                    Vector::PageFault,
                    pf::PRESENT | pf::WRITE | user_bit(kind),
                    0x1234
                ),
                "{kind:?}"
            );
            let fetch = HostSignal {
                err: HW_USER | pf::FETCH,
                ..s
            };
            assert_eq!(
                classify(&fetch, kind),
                exc(Vector::PageFault, pf::FETCH | user_bit(kind), 0x1234)
            );
        }
    }

    #[test]
    fn other_segv_is_a_general_protection_fault() {
        for kind in KINDS {
            let s = HostSignal {
                signo: SIGSEGV,
                trapno: 13,
                err: 0x1_0402,
                cr2: 0x99,
                ..Default::default()
            };
            assert_eq!(
                classify(&s, kind),
                exc(Vector::GeneralProtection, 0x0402, 0)
            );
        }
    }

    /// The two sandbox kinds used to disagree here (the kernel's lost the access bits, and
    /// both turned an alignment check into a page fault at address 0).
    #[test]
    fn sigbus_is_a_reserved_page_fault_with_the_access_or_an_alignment_check() {
        for kind in KINDS {
            // Access beyond the memfd: the host reports a page fault's trap and error code.
            let s = HostSignal {
                signo: SIGBUS,
                trapno: 14,
                err: HW_USER | pf::WRITE,
                cr2: 0x5000,
                si_addr: 0x5000,
                ..Default::default()
            };
            assert_eq!(
                classify(&s, kind),
                exc(
                    Vector::PageFault,
                    pf::PRESENT | pf::RESERVED | pf::WRITE | user_bit(kind),
                    0x5000
                ),
                "{kind:?}"
            );
            let fetch = HostSignal {
                err: HW_USER | pf::FETCH,
                ..s
            };
            assert_eq!(
                classify(&fetch, kind),
                exc(
                    Vector::PageFault,
                    pf::PRESENT | pf::RESERVED | pf::FETCH | user_bit(kind),
                    0x5000
                )
            );
            // AC set and an unaligned access: trap 17, BUS_ADRALN, no address.
            let ac = HostSignal {
                signo: SIGBUS,
                trapno: 17,
                ..Default::default()
            };
            assert_eq!(classify(&ac, kind), exc(Vector::AlignmentCheck, 0, 0));
        }
    }

    /// The user sandbox used to drop the compat bit (its filter kills `int 0x80` first, but
    /// the classification is the same for both kinds).
    #[test]
    fn sigsys_carries_the_number_and_the_compat_bit() {
        for kind in KINDS {
            let native = HostSignal {
                signo: SIGSYS,
                si_syscall: 39,
                si_arch: AUDIT_ARCH_X86_64,
                ..Default::default()
            };
            assert_eq!(classify(&native, kind), Classified::Syscall { nr: 39 });
            // x32 numbers are native-arch: no compat bit, the number says it.
            let x32 = HostSignal {
                si_syscall: 0x4000_0027,
                ..native
            };
            assert_eq!(
                classify(&x32, kind),
                Classified::Syscall { nr: 0x4000_0027 }
            );
            let int80 = HostSignal {
                si_syscall: 20,
                si_arch: AUDIT_ARCH_I386,
                ..native
            };
            assert_eq!(
                classify(&int80, kind),
                Classified::Syscall {
                    nr: 20 | SYSCALL_COMPAT
                }
            );
        }
    }

    #[test]
    fn ill_fpe_trap_and_others() {
        let cases = [
            (SIGILL, 6, exc(Vector::InvalidOpcode, 0, 0)),
            (SIGFPE, 0, exc(Vector::DivideError, 0, 0)),
            (SIGFPE, 16, exc(Vector::X87Fp, 0, 0)),
            (SIGFPE, 19, exc(Vector::SimdFp, 0, 0)),
            (SIGTRAP, 3, exc(Vector::Breakpoint, 0, 0)),
            (SIGTRAP, 1, exc(Vector::Debug, 0, 0)),
            (34, 0, Classified::Other),
            (SIGBUS - 1, 14, Classified::Other),
        ];
        for kind in KINDS {
            for (signo, trapno, want) in cases {
                let s = HostSignal {
                    signo,
                    trapno,
                    err: 0xff,
                    cr2: 0x77,
                    si_addr: 0x77,
                    ..Default::default()
                };
                assert_eq!(classify(&s, kind), want, "{signo} {trapno} {kind:?}");
            }
        }
    }
}
