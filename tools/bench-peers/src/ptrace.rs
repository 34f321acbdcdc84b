//! `native.ptrace_sysemu`: a system call of a tracee caught with `PTRACE_SYSEMU`, its
//! registers read and written by the tracer, and the tracee resumed — one system call of a
//! User-Mode-Linux (or gVisor-ptrace) guest, minus the guest kernel's own work.

use nix::sys::ptrace;
use nix::sys::signal::{kill, raise, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::{child, measure, PeerError, Plan, Samples};

/// Operations per sample (tens of µs each).
const BATCH: u32 = 1;

/// Times `PTRACE_SYSEMU` round trips: a tracer process (forked from the caller) traces a
/// grandchild that calls `getppid` in a loop.
pub fn ptrace_sysemu(plan: &Plan) -> Result<Samples, PeerError> {
    let plan = *plan;
    let report = child::run(plan.timeout, |out| {
        let r = trace(&plan);
        out.send(&measure::encode("ptrace", &r));
    });
    match measure::decode("ptrace", &report.text) {
        Some(r) => r,
        None => Err(report
            .end
            .err()
            .unwrap_or_else(|| PeerError::ChildDied("reported nothing".to_owned()))),
    }
}

/// The tracer: forks the tracee and times its system calls. Both run on the first allowed
/// CPU: unpinned, the host scheduler may put them on two CPUs, and every stop and resume
/// becomes a cross-CPU wake-up, which makes the figure bimodal from run to run.
fn trace(plan: &Plan) -> Result<Samples, PeerError> {
    let cpu = crate::allowed_cpus().first().copied().unwrap_or(0);
    crate::futex::pin(cpu)?;
    // SAFETY: the tracee only makes raw system calls (no locks, no allocation) and never
    // returns from `tracee`.
    let pid = match unsafe { fork() } {
        Err(e) => return Err(PeerError::failed("fork", e)),
        Ok(ForkResult::Child) => tracee(),
        Ok(ForkResult::Parent { child }) => child,
    };
    let r = serve(plan, pid);
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
    r
}

fn tracee() -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if ptrace::traceme().is_err() {
        child::exit_child(2);
    }
    let _ = raise(Signal::SIGSTOP);
    loop {
        std::hint::black_box(rustix::process::getppid());
    }
}

fn serve(plan: &Plan, pid: Pid) -> Result<Samples, PeerError> {
    match waitpid(pid, None) {
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
        Ok(WaitStatus::Exited(_, 2)) => {
            return Err(PeerError::Unavailable(
                "PTRACE_TRACEME refused (ptrace restricted here?)".to_owned(),
            ))
        }
        Ok(other) => {
            return Err(PeerError::Unavailable(format!(
                "tracee did not stop as expected: {other:?}"
            )))
        }
        Err(e) => return Err(PeerError::failed("waitpid", e)),
    }
    ptrace::setoptions(
        pid,
        ptrace::Options::PTRACE_O_EXITKILL | ptrace::Options::PTRACE_O_TRACESYSGOOD,
    )
    .map_err(|e| PeerError::failed("PTRACE_SETOPTIONS", e))?;
    measure::batches(plan, BATCH, || {
        ptrace::sysemu(pid, None).map_err(|e| PeerError::failed("PTRACE_SYSEMU", e))?;
        match waitpid(pid, None) {
            Ok(WaitStatus::PtraceSyscall(_)) => {}
            Ok(other) => {
                return Err(PeerError::Unavailable(format!(
                    "unexpected tracee stop: {other:?}"
                )))
            }
            Err(e) => return Err(PeerError::failed("waitpid", e)),
        }
        let mut regs = ptrace::getregs(pid).map_err(|e| PeerError::failed("PTRACE_GETREGS", e))?;
        regs.rax = 0;
        ptrace::setregs(pid, regs).map_err(|e| PeerError::failed("PTRACE_SETREGS", e))
    })
}
