//! How programs die, said the way Linux says it: the kernel log's lines for a fatal fault
//! (`prog[pid]: segfault at ADDR ip IP sp SP error E`, `traps: prog[pid] general protection
//! fault ...`) and for an out-of-memory kill (`Out of memory: Killed process PID (prog)
//! total-vm:...kB, anon-rss:...kB, ...`), and the typed record of how init died that the
//! kernel hands to the host with `Shutdown` ([`pvmux_hypercalls::ShutdownRecord`]): the log is
//! hidden unless `--log debug`, and `pvmux run` must still say why its program died.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::shutdown::record_flags;
use pvmux_hypercalls::{ProgramEnd, ShutdownRecord, Vector};

use super::signal::{sig, Detail, SigInfo};
use super::space::MemUsage;
use super::task::{self, Process};
use crate::irq::IrqLock;

/// Why init was killed.
#[derive(Clone, Copy, Debug)]
enum Cause {
    /// By this signal.
    Signal(SigInfo),
    /// For memory, using this much.
    OutOfMemory(MemUsage),
}

/// How init ended, if it was killed: the cause and its program at the time.
static INIT_END: IrqLock<Option<(Cause, Vec<u8>)>> = IrqLock::new(None);

/// The name Linux gives a process (`comm`): the last component of the path it was run by
/// (`sh` for `/bin/sh`, whose program is `/usr/bin/dash`), at most 15 bytes.
pub(crate) fn comm(p: &Process) -> String {
    String::from_utf8_lossy(&crate::linux::procfs::snap::comm(p)).into_owned()
}

/// What Linux's trap messages call an exception.
fn trap_name(v: Option<Vector>) -> &'static str {
    match v {
        Some(Vector::GeneralProtection) => "general protection fault",
        Some(Vector::DivideError) => "trap divide error",
        Some(Vector::InvalidOpcode) => "trap invalid opcode",
        Some(Vector::Breakpoint) => "trap int3",
        Some(Vector::Debug) => "trap debug",
        Some(Vector::X87Fp) => "trap coprocessor error",
        Some(Vector::SimdFp) => "trap SIMD floating point exception",
        Some(Vector::AlignmentCheck) => "trap alignment check",
        Some(Vector::PageFault) => "trap page fault",
        _ => "trap",
    }
}

/// The kernel log line for fault signal `info` of process `pid` named `name` (Linux's
/// formats, numbers in hex), or `None` for a signal that is not a fault.
pub(crate) fn fault_line(name: &str, pid: i32, info: &SigInfo) -> Option<String> {
    let f = info.fault_info()?;
    let vector = Vector::from_raw(u64::from(f.vector));
    Some(
        if vector == Some(Vector::PageFault) && info.signo == sig::SIGSEGV {
            alloc::format!(
                "{name}[{pid}]: segfault at {:x} ip {:016x} sp {:016x} error {:x}",
                f.addr,
                f.ip,
                f.sp,
                f.error_code
            )
        } else {
            alloc::format!(
                "traps: {name}[{pid}] {} ip:{:x} sp:{:x} error:{:x}",
                trap_name(vector),
                f.ip,
                f.sp,
                f.error_code
            )
        },
    )
}

/// Logs a fault the program does not handle (it is about to die of it), as Linux does.
pub(crate) fn log_fatal_fault(p: &Process, info: &SigInfo) {
    if let Some(line) = fault_line(&comm(p), p.pid, info) {
        crate::println!("{line}");
    }
}

/// Ends `p` as killed by `info`'s signal, remembering why if it is init.
pub(crate) fn killed(p: &Arc<Process>, info: &SigInfo) {
    record(p, Cause::Signal(*info));
    task::kill_process(p, info.signo);
}

/// The kernel log line of an out-of-memory kill.
pub(crate) fn oom_line(name: &str, pid: i32, u: &MemUsage) -> String {
    alloc::format!(
        "Out of memory: Killed process {pid} ({name}) total-vm:{}kB, anon-rss:{}kB, \
         file-rss:0kB, shmem-rss:{}kB, UID:0",
        u.mapped / 1024,
        u.private_pages * 4,
        u.shared_pages * 4
    )
}

/// The out-of-memory killer's kill of `p`, which uses `usage`: logs it and ends `p` with
/// SIGKILL.
pub(crate) fn oom_kill(p: &Arc<Process>, usage: MemUsage) {
    crate::println!("{}", oom_line(&comm(p), p.pid, &usage));
    record(p, Cause::OutOfMemory(usage));
    task::kill_process(p, sig::SIGKILL);
}

/// Remembers `cause` if `p` is init and nothing ended it yet.
fn record(p: &Process, cause: Cause) {
    if p.pid != 1 || p.exit_status.lock().is_some() {
        return;
    }
    let mut end = INIT_END.lock();
    if end.is_none() {
        *end = Some((cause, p.exe.lock().clone()));
    }
}

/// The shutdown record for init's wait status `status`, if a signal ended it; `exe` names
/// init's program when the kernel did not see it die (a racing exit).
pub(crate) fn shutdown_record(status: i32, exe: &[u8]) -> Option<ShutdownRecord> {
    let signo = (status & 0x7f) as u32;
    if signo == 0 {
        return None;
    }
    let end = INIT_END.lock().take();
    Some(match end {
        Some((Cause::OutOfMemory(u), exe)) if signo == sig::SIGKILL => {
            let mut r = ShutdownRecord::new(ProgramEnd::OutOfMemory);
            r.code = super::signal::code::SI_KERNEL;
            r.total_vm_kib = u.mapped / 1024;
            r.anon_rss_kib = u.private_pages as u64 * 4;
            r.shmem_rss_kib = u.shared_pages as u64 * 4;
            finish(r, signo, &exe)
        }
        Some((Cause::Signal(info), exe)) if info.signo == signo => {
            let mut r = ShutdownRecord::new(ProgramEnd::Signaled);
            r.code = info.code;
            match info.detail {
                Detail::Sender { pid, .. } => r.sender_pid = pid,
                Detail::Fault(f) => {
                    r.flags |= record_flags::FAULT;
                    r.fault_vector = f.vector;
                    r.fault_addr = f.addr;
                    r.fault_ip = f.ip;
                    r.fault_sp = f.sp;
                    r.fault_error_code = f.error_code;
                }
                Detail::Queued { rest, .. } => {
                    r.sender_pid = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                }
                Detail::Child { .. } | Detail::Timer { .. } => {}
            }
            finish(r, signo, &exe)
        }
        _ => {
            let mut r = ShutdownRecord::new(ProgramEnd::Signaled);
            r.flags |= record_flags::UNSEEN;
            finish(r, signo, exe)
        }
    })
}

fn finish(mut r: ShutdownRecord, signo: u32, exe: &[u8]) -> ShutdownRecord {
    r.pid = 1;
    r.signal = signo;
    r.set_exe(exe);
    r
}

#[cfg(test)]
mod tests {
    use super::super::signal::{code, Fault};
    use super::*;

    #[test]
    fn linux_log_formats() {
        let segv = SigInfo::fault(
            sig::SIGSEGV,
            code::SEGV_MAPERR,
            Fault {
                addr: 0,
                vector: 14,
                error_code: 6,
                ip: 0x401136,
                sp: 0x7ffd_6c3b_5f10,
            },
        );
        assert_eq!(
            fault_line("prog", 7, &segv).unwrap(),
            "prog[7]: segfault at 0 ip 0000000000401136 sp 00007ffd6c3b5f10 error 6"
        );
        let gp = SigInfo::fault(
            sig::SIGSEGV,
            code::SI_KERNEL,
            Fault {
                vector: 13,
                ip: 0x401000,
                sp: 0x7ff0,
                ..Fault::default()
            },
        );
        assert_eq!(
            fault_line("a", 1, &gp).unwrap(),
            "traps: a[1] general protection fault ip:401000 sp:7ff0 error:0"
        );
        assert_eq!(fault_line("a", 1, &SigInfo::kernel(sig::SIGKILL)), None);
        let u = MemUsage {
            mapped: 10 << 20,
            private_pages: 256,
            shared_pages: 1,
        };
        assert_eq!(
            oom_line("hog", 3, &u),
            "Out of memory: Killed process 3 (hog) total-vm:10240kB, anon-rss:1024kB, \
             file-rss:0kB, shmem-rss:4kB, UID:0"
        );
    }

    /// A death the kernel did not record says so rather than naming a sender.
    #[test]
    fn an_unseen_death_is_marked_unseen() {
        *INIT_END.lock() = None;
        let r = shutdown_record(9, b"/bin/x").expect("a signal ended it");
        assert_eq!(r.kind, ProgramEnd::Signaled as u32);
        assert_eq!(r.flags & record_flags::UNSEEN, record_flags::UNSEEN);
        assert_eq!(r.exe(), b"/bin/x");
        *INIT_END.lock() = Some((
            Cause::Signal(SigInfo::kernel(sig::SIGKILL)),
            b"/bin/y".to_vec(),
        ));
        let r = shutdown_record(9, b"/bin/x").expect("a signal ended it");
        assert_eq!(r.flags & record_flags::UNSEEN, 0);
        assert_eq!(r.code, code::SI_KERNEL);
        assert_eq!(r.exe(), b"/bin/y");
        assert!(shutdown_record(0, b"").is_none());
    }
}
