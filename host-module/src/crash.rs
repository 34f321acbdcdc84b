//! Crash reports: what happened to a tenant, where, and what it printed last.

use std::fmt;

use pvmux_hypercalls::{CrashReason, TrapFrame, Vector};

use crate::escape::{escape_guest_str, Mode};
use crate::page_table::read_virt_u64;
use crate::{GuestMemory, KernelImage};

/// Most frames in a backtrace.
pub const MAX_BACKTRACE_FRAMES: usize = 32;

/// Why a tenant crashed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashCause {
    /// The guest kernel called the `panic` hypercall.
    GuestPanic {
        /// The panic message, escaped for a terminal ([`crate::escape`]).
        message: String,
    },
    /// The stub recorded a crash in a vCPU's shared page.
    Stub {
        /// Raw [`CrashReason`].
        reason: u32,
        /// Raw [`Vector`].
        vector: u32,
        /// Exception error code.
        error_code: u64,
        /// Fault address.
        fault_addr: u64,
        /// Reason-specific detail.
        detail: u64,
    },
    /// The sandbox exited with the crash status but recorded no crash.
    CrashWithoutRecord,
    /// The whole tenant (its sandboxes and the host work on its behalf) used up its CPU-time
    /// budget (`--cpu-seconds`); the host ended it.
    CpuBudget {
        /// CPU time used when it was found spent.
        used: std::time::Duration,
        /// Of it, host work on the tenant's behalf.
        host: std::time::Duration,
        /// The budget.
        budget: std::time::Duration,
    },
    /// The stub failed before entering the guest.
    SetupFailed {
        /// Start-up step that failed.
        step: u32,
        /// errno of the failure.
        errno: u32,
    },
    /// The sandbox was killed by a signal.
    Signal {
        /// Signal number.
        signo: i32,
    },
    /// The host killed the tenant ([`crate::Tenant::kill`]).
    KilledByHost,
    /// The sandbox exited with an unexpected status.
    UnexpectedExit {
        /// Exit status.
        status: i32,
    },
    /// The watchdog found a vCPU that did not take events (see [`crate::watchdog`]).
    Watchdog {
        /// The vCPU.
        vcpu: u32,
        /// The watchdog timeout it exceeded.
        timeout: std::time::Duration,
    },
    /// A kernel hand-over (`pvmux upgrade`) stopped the old kernel, and neither the new
    /// kernel nor the old one adopted its record.
    HandoverFailed {
        /// What each kernel did.
        reason: String,
    },
}

impl CrashCause {
    /// A short machine-readable name of the kind of cause.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GuestPanic { .. } => "guest_panic",
            Self::Stub { .. } => "stub",
            Self::CrashWithoutRecord => "crash_without_record",
            Self::CpuBudget { .. } => "cpu_budget",
            Self::SetupFailed { .. } => "setup_failed",
            Self::Signal { .. } => "signal",
            Self::KilledByHost => "killed_by_host",
            Self::UnexpectedExit { .. } => "unexpected_exit",
            Self::Watchdog { .. } => "watchdog",
            Self::HandoverFailed { .. } => "handover_failed",
        }
    }
}

/// Name of a signal number.
pub fn signal_name(signo: i32) -> String {
    let name = match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signo}"),
    };
    name.to_owned()
}

impl fmt::Display for CrashCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GuestPanic { message } => write!(f, "guest kernel panicked: {message}"),
            Self::Stub {
                reason,
                vector,
                error_code,
                fault_addr,
                detail,
            } => {
                let known = CrashReason::from_raw(*reason);
                match known {
                    Some(r) => write!(f, "{}", r.describe())?,
                    None => write!(f, "unknown crash reason {reason}")?,
                }
                // The vector, error code and fault address only mean something for
                // exception-related reasons.
                if matches!(
                    known,
                    None | Some(CrashReason::UnhandledException | CrashReason::DoubleFault)
                ) {
                    let vname = Vector::from_raw(u64::from(*vector))
                        .map_or_else(|| format!("vector {vector}"), |v| v.name().to_owned());
                    write!(
                        f,
                        ": {vname}, error code {error_code:#x}, fault address {fault_addr:#x}"
                    )?;
                }
                write!(f, ", detail {detail:#x}")
            }
            Self::CrashWithoutRecord => {
                write!(
                    f,
                    "sandbox reported a crash but recorded no crash information"
                )
            }
            Self::SetupFailed { step, errno } => write!(
                f,
                "sandbox start-up failed at step {step}: errno {errno} ({})",
                std::io::Error::from_raw_os_error(*errno as i32)
            ),
            Self::Signal { signo } if *signo == libc::SIGSYS => write!(
                f,
                "sandbox killed by SIGSYS: killed by seccomp: a system call outside the \
                 sandbox policy"
            ),
            Self::CpuBudget { used, host, budget } => write!(
                f,
                "CPU-time budget exhausted: the tenant used {:.2} s of CPU ({:.2} s of it host \
                 work on its behalf), its budget is {} s",
                used.as_secs_f64(),
                host.as_secs_f64(),
                budget.as_secs()
            ),
            Self::Signal { signo } if *signo == libc::SIGXCPU => write!(
                f,
                "sandbox killed by SIGXCPU: its CPU-time budget (the RLIMIT_CPU backstop) is exhausted"
            ),
            Self::Signal { signo } => write!(f, "sandbox killed by {}", signal_name(*signo)),
            Self::KilledByHost => write!(f, "tenant killed by the host"),
            Self::HandoverFailed { reason } => write!(
                f,
                "kernel hand-over failed: no kernel adopted the tenant's record ({reason})"
            ),
            Self::UnexpectedExit { status } => {
                write!(f, "sandbox exited unexpectedly (status {status})")
            }
            Self::Watchdog { vcpu, timeout } => write!(
                f,
                "watchdog: vCPU {vcpu} did not take events for {}",
                crate::watchdog::format_secs(*timeout)
            ),
        }
    }
}

/// One backtrace frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Guest-virtual code address (the return address for frames after the first).
    pub addr: u64,
    /// `symbol+0xoff`, if known.
    pub symbol: Option<String>,
}

/// A multi-line human-readable report of a tenant crash (see its `Display`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashReport {
    /// Tenant name.
    pub tenant: String,
    /// What happened.
    pub cause: CrashCause,
    /// vCPU involved, if known.
    pub vcpu: Option<u32>,
    /// Registers at the crash, if known (for a panic only `rip`, `rsp`, `rbp`).
    pub regs: Option<TrapFrame>,
    /// Frame-pointer backtrace, starting at `rip`.
    pub backtrace: Vec<Frame>,
    /// Extra findings, one line each (e.g. the symbol a crash detail points into).
    pub notes: Vec<String>,
    /// Last lines of console output.
    pub console_tail: Vec<String>,
}

impl CrashReport {
    /// A report with just a cause.
    pub fn new(tenant: &str, cause: CrashCause) -> Self {
        Self {
            tenant: tenant.to_owned(),
            cause,
            vcpu: None,
            regs: None,
            backtrace: Vec::new(),
            notes: Vec::new(),
            console_tail: Vec::new(),
        }
    }
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tenant {:?} crashed: {}", self.tenant, self.cause)?;
        if let Some(v) = self.vcpu {
            writeln!(f, "  on vCPU {v}")?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        if let Some(r) = &self.regs {
            let sym = self
                .backtrace
                .first()
                .and_then(|fr| fr.symbol.as_deref())
                .map(|s| format!(" <{s}>"))
                .unwrap_or_default();
            writeln!(f, "  rip {:#018x}{sym}", r.rip)?;
            writeln!(f, "  registers:")?;
            let regs = r.named_registers();
            for row in regs.chunks(3) {
                write!(f, "   ")?;
                for (name, v) in row {
                    write!(f, " {name:>6} {v:#018x}")?;
                }
                writeln!(f)?;
            }
        }
        if !self.backtrace.is_empty() {
            writeln!(f, "  backtrace:")?;
            for (i, fr) in self.backtrace.iter().enumerate() {
                let sym = fr.symbol.as_deref().unwrap_or("??");
                writeln!(f, "    #{i:<2} {:#018x} {sym}", fr.addr)?;
            }
        }
        if !self.console_tail.is_empty() {
            writeln!(f, "  last console output:")?;
            for line in &self.console_tail {
                writeln!(f, "    | {line}")?;
            }
        }
        Ok(())
    }
}

/// Symbolizes guest addresses and walks frame-pointer chains of one tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Symbolizer<'a> {
    pub(crate) kernel: &'a KernelImage,
    pub(crate) kernel_base: u64,
    pub(crate) mem: &'a GuestMemory,
    pub(crate) root: u64,
}

impl Symbolizer<'_> {
    /// `name+0xoff` for a runtime address inside the kernel.
    pub(crate) fn symbol(&self, addr: u64) -> Option<String> {
        let link = addr.checked_sub(self.kernel_base)?;
        let (name, off) = self.kernel.symbolize(link)?;
        Some(format!("{}+{off:#x}", escape_guest_str(&name, Mode::Line)))
    }

    /// Like [`Self::symbol`] for a return address: the call instruction is just before it
    /// (a call to a `noreturn` function may be the last instruction of its function).
    fn return_symbol(&self, ret: u64) -> Option<String> {
        let link = ret.checked_sub(self.kernel_base)?.checked_sub(1)?;
        let (name, off) = self.kernel.symbolize(link)?;
        Some(format!(
            "{}+{:#x}",
            escape_guest_str(&name, Mode::Line),
            off + 1
        ))
    }

    /// Frames starting at `rip`, following the `rbp` chain through the guest's page tables;
    /// stops at anything invalid or after [`MAX_BACKTRACE_FRAMES`].
    pub(crate) fn backtrace(&self, rip: u64, mut rbp: u64) -> Vec<Frame> {
        let mut frames = vec![Frame {
            addr: rip,
            symbol: self.symbol(rip),
        }];
        while frames.len() < MAX_BACKTRACE_FRAMES {
            if rbp == 0 || !rbp.is_multiple_of(8) {
                break;
            }
            let Some(ret_slot) = rbp.checked_add(8) else {
                break;
            };
            let (Some(next), Some(ret)) = (
                read_virt_u64(self.mem, self.root, rbp),
                read_virt_u64(self.mem, self.root, ret_slot),
            ) else {
                break;
            };
            if ret == 0 {
                break;
            }
            frames.push(Frame {
                addr: ret,
                symbol: self.return_symbol(ret),
            });
            if next <= rbp {
                break;
            }
            rbp = next;
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockParams;
    use crate::domain_builder::{build, random_kernel_base, BuildParams, BOOT_STACK_TOP_GVA};
    use crate::test_elf::TestElf;

    #[test]
    fn report_formatting() {
        let mut r = CrashReport::new(
            "t1",
            CrashCause::Stub {
                reason: 1,
                vector: 14,
                error_code: 2,
                fault_addr: 0xdead,
                detail: 0,
            },
        );
        r.vcpu = Some(1);
        r.regs = Some(TrapFrame {
            rip: 0x1234,
            ..Default::default()
        });
        r.backtrace = vec![Frame {
            addr: 0x1234,
            symbol: Some("kmain+0x4".into()),
        }];
        r.console_tail = vec!["hello".into()];
        let s = r.to_string();
        assert!(
            s.starts_with("tenant \"t1\" crashed: unhandled exception"),
            "{s}"
        );
        assert!(
            s.contains("#PF, error code 0x2, fault address 0xdead"),
            "{s}"
        );
        assert!(s.contains("rip 0x0000000000001234 <kmain+0x4>"), "{s}");
        assert!(s.contains("    | hello"), "{s}");
        assert!(s.contains("r15"), "{s}");
        let s = CrashReport::new(
            "t",
            CrashCause::Signal {
                signo: libc::SIGSYS,
            },
        )
        .to_string();
        assert!(s.contains("killed by seccomp"), "{s}");
        let s = CrashReport::new("t", CrashCause::SetupFailed { step: 3, errno: 1 }).to_string();
        assert!(
            s.contains("sandbox start-up failed at step 3: errno 1"),
            "{s}"
        );
        let s = CrashReport::new(
            "t",
            CrashCause::Watchdog {
                vcpu: 1,
                timeout: std::time::Duration::from_secs(10),
            },
        )
        .to_string();
        assert!(
            s.contains("watchdog: vCPU 1 did not take events for 10 s"),
            "{s}"
        );
        let s = CrashReport::new(
            "t",
            CrashCause::Signal {
                signo: libc::SIGXCPU,
            },
        )
        .to_string();
        assert!(s.contains("CPU-time budget"), "{s}");
        let s = CrashReport::new("t", CrashCause::UnexpectedExit { status: 9 }).to_string();
        assert!(s.contains("sandbox exited unexpectedly (status 9)"), "{s}");
        let s = CrashReport::new(
            "t",
            CrashCause::Stub {
                reason: 99,
                vector: 99,
                error_code: 0,
                fault_addr: 0,
                detail: 0,
            },
        )
        .to_string();
        assert!(s.contains("unknown crash reason 99: vector 99"), "{s}");
    }

    #[test]
    fn backtrace_follows_frame_pointers() {
        let kernel = KernelImage::parse(TestElf::default().build()).unwrap();
        let mem = GuestMemory::new(16 << 20).unwrap();
        let clock = ClockParams::now();
        let p = BuildParams {
            nr_vcpus: 1,
            boot_args: &pvmux_hypercalls::BootArgsBuf::default(),
            clock: Some(&clock),
            initrd: None,
        };
        let base = random_kernel_base(kernel.span());
        let l = build(&mem, &kernel, &p, base).unwrap();
        // Two frames on the boot stack: frame A at top-0x40 -> frame B at top-0x20 -> 0.
        let gpa_of = |gva: u64| {
            crate::page_table::translate(&mem, l.page_table_root, gva)
                .unwrap()
                .gpa
        };
        let a = BOOT_STACK_TOP_GVA - 0x40;
        let b = BOOT_STACK_TOP_GVA - 0x20;
        mem.write_u64(gpa_of(a), b).unwrap();
        mem.write_u64(gpa_of(a + 8), base + 0x100c).unwrap();
        mem.write_u64(gpa_of(b), 0).unwrap();
        mem.write_u64(gpa_of(b + 8), base + 0x1002).unwrap();
        let s = Symbolizer {
            kernel: &kernel,
            kernel_base: base,
            mem: &mem,
            root: l.page_table_root,
        };
        let bt = s.backtrace(base + 0x1009, a);
        let syms: Vec<_> = bt
            .iter()
            .map(|f| f.symbol.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            syms,
            [
                "pvmux_kernel::main+0x1",
                "pvmux_kernel::main+0x4",
                "_start+0x2"
            ]
        );
        // Garbage chains stop cleanly.
        assert_eq!(s.backtrace(0, 0).len(), 1);
        assert_eq!(s.backtrace(0, 7).len(), 1);
        assert_eq!(s.backtrace(0, !7).len(), 1);
        // A loop is cut (next <= rbp).
        mem.write_u64(gpa_of(b), a).unwrap();
        assert_eq!(s.backtrace(0, a).len(), 3);
    }
}
