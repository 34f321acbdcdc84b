//! How the program a guest ran as init died, as the guest kernel reported it with its
//! shutdown record ([`ShutdownRecord`], the `Shutdown` hypercall's second argument): copied
//! once, checked, and decoded into a [`ProgramDeath`]. Nothing in it is trusted beyond being
//! the guest's account: the program path is sanitised before anyone prints it.

use std::fmt;

use pvmux_hypercalls::shutdown::{record_flags, ProgramEnd, ShutdownRecord};
use pvmux_hypercalls::Vector;

/// A Linux signal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(pub u32);

impl Signal {
    /// `SIGINT`: what ^C sends.
    pub const SIGINT: Self = Self(2);
    /// `SIGKILL`.
    pub const SIGKILL: Self = Self(9);
    /// `SIGPIPE`: what writing to a closed pipe sends (`prog | head`).
    pub const SIGPIPE: Self = Self(13);

    /// The signal's name (`SIGSEGV`), or `SIG<n>` / `SIGRTMIN+<n>` for the others.
    pub fn name(self) -> String {
        const NAMES: [&str; 31] = [
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        match self.0 {
            n @ 1..=31 => NAMES[n as usize - 1].to_owned(),
            n @ 32..=64 => format!("SIGRTMIN+{}", n - 32),
            n => format!("SIG{n}"),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An exception of the program that the kernel turned into its fatal signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The exception (`None`: a vector this host does not know).
    pub vector: Option<Vector>,
    /// Faulting address (page faults), else the instruction's.
    pub addr: u64,
    /// Instruction pointer.
    pub ip: u64,
    /// Stack pointer.
    pub sp: u64,
    /// x86 error code (for a page fault: bit 0 present, 1 write, 2 user, 4 fetch).
    pub error_code: u64,
}

/// Who sent the signal that killed the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A process of the guest (itself, e.g. `abort`, or another).
    Process(i32),
    /// The guest kernel (`SI_KERNEL` and the like: a terminal key, a sandbox that died).
    Kernel,
    /// Someone outside the guest: the host passed it on to init (`pvmux kill`, `pvmux stop`,
    /// a container engine; `SI_USER` from pid 0).
    Outside,
    /// The kernel did not see it ([`record_flags::UNSEEN`]).
    Unknown,
}

impl Sender {
    /// The sender a record names.
    fn of(r: &ShutdownRecord) -> Self {
        const SI_USER: i32 = 0;
        if r.flags & record_flags::UNSEEN != 0 {
            Self::Unknown
        } else if r.sender_pid != 0 {
            Self::Process(r.sender_pid)
        } else if r.code == SI_USER {
            Self::Outside
        } else {
            Self::Kernel
        }
    }
}

/// Why the program died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathCause {
    /// A signal sent to it.
    Sent {
        /// Who sent it.
        sender: Sender,
    },
    /// One of its own exceptions.
    Fault(Fault),
    /// The guest kernel's out-of-memory killer chose it, with this much memory (KiB).
    OutOfMemory {
        /// Mapped virtual memory.
        total_vm_kib: u64,
        /// Resident private memory.
        anon_rss_kib: u64,
        /// Resident shared memory.
        shmem_rss_kib: u64,
    },
}

/// How the guest's init program died (by a signal or for memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramDeath {
    /// The guest's exit code: 128 + the signal.
    pub code: i32,
    /// The program's process id in the guest.
    pub pid: i32,
    /// The program's path as the guest reported it (control characters escaped).
    pub program: String,
    /// The signal that ended it.
    pub signal: Signal,
    /// Why.
    pub cause: DeathCause,
}

impl ProgramDeath {
    /// Decodes the record a guest sent with exit code `code`; `None` unless it is well
    /// formed (magic, known kind, a signal whose 128 + n is `code`).
    pub fn decode(r: &ShutdownRecord, code: i32) -> Option<Self> {
        if r.magic != pvmux_hypercalls::shutdown::SHUTDOWN_RECORD_MAGIC
            || !(1..=64).contains(&r.signal)
            || code != 128 + r.signal as i32
        {
            return None;
        }
        let cause = match ProgramEnd::from_raw(r.kind)? {
            ProgramEnd::OutOfMemory => DeathCause::OutOfMemory {
                total_vm_kib: r.total_vm_kib,
                anon_rss_kib: r.anon_rss_kib,
                shmem_rss_kib: r.shmem_rss_kib,
            },
            ProgramEnd::Signaled if r.flags & record_flags::FAULT != 0 => {
                DeathCause::Fault(Fault {
                    vector: Vector::from_raw(u64::from(r.fault_vector)),
                    addr: r.fault_addr,
                    ip: r.fault_ip,
                    sp: r.fault_sp,
                    error_code: r.fault_error_code,
                })
            }
            ProgramEnd::Signaled => DeathCause::Sent {
                sender: Sender::of(r),
            },
            _ => return None,
        };
        Some(Self {
            code,
            pid: r.pid,
            program: sanitize(r.exe()),
            signal: Signal(r.signal),
            cause,
        })
    }

    /// True for deaths a user causes on purpose and expects no message for, as a shell
    /// prints none: `SIGINT` (^C) and `SIGPIPE` (a reader that went away, `prog | head`).
    pub fn is_quiet(&self) -> bool {
        matches!(self.cause, DeathCause::Sent { .. })
            && (self.signal == Signal::SIGINT || self.signal == Signal::SIGPIPE)
    }
}

impl fmt::Display for ProgramDeath {
    /// `killed by SIGSEGV: segfault at 0x0 ip 0x401136 sp 0x7ffd6c3b5f10 error 6`,
    /// `killed by SIGTERM (sent by pid 7)`, `killed: out of memory (anon-rss 250 MiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            DeathCause::OutOfMemory { anon_rss_kib, .. } => write!(
                f,
                "killed: out of memory (it had {} resident)",
                kib(anon_rss_kib)
            ),
            DeathCause::Sent { sender } => {
                write!(f, "killed by {}", self.signal)?;
                match sender {
                    Sender::Kernel => write!(f, " (sent by the kernel)"),
                    Sender::Outside => write!(f, " (sent from outside the guest)"),
                    Sender::Unknown => Ok(()),
                    Sender::Process(p) if p == self.pid => write!(f, " (sent by itself)"),
                    Sender::Process(p) => write!(f, " (sent by pid {p})"),
                }
            }
            DeathCause::Fault(x) => {
                write!(f, "killed by {}: ", self.signal)?;
                let at = format!("ip {:#x} sp {:#x}", x.ip, x.sp);
                match x.vector {
                    Some(Vector::PageFault) => write!(
                        f,
                        "{} at {:#x} {at} error {:x}",
                        if self.signal.0 == 11 {
                            "segfault"
                        } else {
                            "bus error"
                        },
                        x.addr,
                        x.error_code
                    ),
                    Some(Vector::GeneralProtection) => {
                        write!(f, "general protection fault {at} error {:x}", x.error_code)
                    }
                    Some(Vector::InvalidOpcode) => write!(f, "invalid opcode {at}"),
                    Some(Vector::DivideError) => write!(f, "divide error {at}"),
                    Some(Vector::X87Fp | Vector::SimdFp) => {
                        write!(f, "floating-point exception {at}")
                    }
                    Some(Vector::Breakpoint) => write!(f, "breakpoint (int3) {at}"),
                    Some(Vector::Debug) => write!(f, "debug trap {at}"),
                    Some(Vector::AlignmentCheck) => {
                        write!(f, "alignment check at {:#x} {at}", x.addr)
                    }
                    Some(v) => write!(f, "exception {} {at}", v.name()),
                    None => write!(f, "exception {at}"),
                }
            }
        }
    }
}

/// KiB as a short human size.
fn kib(k: u64) -> String {
    if k >= 10 << 10 {
        format!("{} MiB", k >> 10)
    } else {
        format!("{k} KiB")
    }
}

/// The guest's bytes as one line of text fit for a terminal ([`crate::escape`]).
fn sanitize(bytes: &[u8]) -> String {
    crate::escape::escape_guest(bytes, crate::escape::Mode::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: ProgramEnd, signal: u32) -> ShutdownRecord {
        let mut r = ShutdownRecord::new(kind);
        r.pid = 1;
        r.signal = signal;
        r.set_exe(b"/bin/prog");
        r
    }

    #[test]
    fn segfault() {
        let mut r = record(ProgramEnd::Signaled, 11);
        r.flags = record_flags::FAULT;
        r.fault_vector = 14;
        r.fault_addr = 0;
        r.fault_ip = 0x401136;
        r.fault_sp = 0x7ffd_6c3b_5f10;
        r.fault_error_code = 6;
        let d = ProgramDeath::decode(&r, 139).expect("valid");
        assert_eq!(d.program, "/bin/prog");
        assert_eq!(
            d.to_string(),
            "killed by SIGSEGV: segfault at 0x0 ip 0x401136 sp 0x7ffd6c3b5f10 error 6"
        );
        assert!(!d.is_quiet());
    }

    #[test]
    fn sent_and_quiet() {
        let mut r = record(ProgramEnd::Signaled, 15);
        r.sender_pid = 7;
        let d = ProgramDeath::decode(&r, 143).expect("valid");
        assert_eq!(d.to_string(), "killed by SIGTERM (sent by pid 7)");
        let mut r = record(ProgramEnd::Signaled, 2);
        r.code = 0x80;
        let d = ProgramDeath::decode(&r, 130).expect("valid");
        assert!(d.is_quiet());
        assert_eq!(d.to_string(), "killed by SIGINT (sent by the kernel)");
        // SI_USER from no process: the host passed it on.
        let d = ProgramDeath::decode(&record(ProgramEnd::Signaled, 9), 137).expect("valid");
        assert_eq!(
            d.to_string(),
            "killed by SIGKILL (sent from outside the guest)"
        );
        let mut r = record(ProgramEnd::Signaled, 9);
        r.flags = record_flags::UNSEEN;
        r.sender_pid = 5;
        let d = ProgramDeath::decode(&r, 137).expect("valid");
        assert_eq!(d.to_string(), "killed by SIGKILL");
        assert!(ProgramDeath::decode(&record(ProgramEnd::Signaled, 13), 141)
            .expect("valid")
            .is_quiet());
        let mut r = record(ProgramEnd::Signaled, 6);
        r.sender_pid = 1;
        let d = ProgramDeath::decode(&r, 134).expect("valid");
        assert_eq!(d.to_string(), "killed by SIGABRT (sent by itself)");
    }

    #[test]
    fn out_of_memory() {
        let mut r = record(ProgramEnd::OutOfMemory, 9);
        r.anon_rss_kib = 250 << 10;
        let d = ProgramDeath::decode(&r, 137).expect("valid");
        assert_eq!(
            d.to_string(),
            "killed: out of memory (it had 250 MiB resident)"
        );
    }

    #[test]
    fn garbage_is_refused_and_text_sanitised() {
        let r = record(ProgramEnd::Signaled, 11);
        assert!(
            ProgramDeath::decode(&r, 11).is_none(),
            "code must be 128 + signal"
        );
        let mut bad = r;
        bad.magic = 0;
        assert!(ProgramDeath::decode(&bad, 139).is_none());
        let mut bad = r;
        bad.kind = 99;
        assert!(ProgramDeath::decode(&bad, 139).is_none());
        let mut bad = r;
        bad.signal = 65;
        assert!(ProgramDeath::decode(&bad, 193).is_none());
        let mut evil = r;
        evil.set_exe(b"/x\x1b[2J\xff");
        evil.exe_len = 9999; // clamped
        let d = ProgramDeath::decode(&evil, 139).expect("valid");
        assert!(!d.program.contains('\x1b'), "{:?}", d.program);
        assert!(d.program.starts_with("/x\\x1b[2J\\xff"), "{:?}", d.program);
    }

    #[test]
    fn signal_names() {
        assert_eq!(Signal(11).name(), "SIGSEGV");
        assert_eq!(Signal(31).name(), "SIGSYS");
        assert_eq!(Signal(34).name(), "SIGRTMIN+2");
        assert_eq!(Signal(0).name(), "SIG0");
    }
}
