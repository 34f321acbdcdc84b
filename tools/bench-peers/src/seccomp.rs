//! `native.seccomp_trap`: a system call trapped by seccomp (`SECCOMP_RET_TRAP`) into a `SIGSYS`
//! handler that sets the return value and returns — the mechanism a user-space kernel such as
//! gVisor's systrap (or pvmux's own stub) uses to catch system calls.

use std::ffi::c_void;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::{child, measure, PeerError, Plan, Samples};

/// Operations per sample (~2.5 µs each here).
const BATCH: u32 = 10;
/// `AUDIT_ARCH_X86_64` (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// Times trapped `getppid` calls in a child process whose seccomp filter turns `getppid` into
/// `SIGSYS`.
pub fn seccomp_trap(plan: &Plan) -> Result<Samples, PeerError> {
    let plan = *plan;
    let report = child::run(plan.timeout, |out| {
        let r = install().and_then(|()| {
            measure::batches(&plan, BATCH, || {
                std::hint::black_box(rustix::process::getppid());
                Ok(())
            })
        });
        out.send(&measure::encode("seccomp", &r));
    });
    match measure::decode("seccomp", &report.text) {
        Some(r) => r,
        None => Err(report
            .end
            .err()
            .unwrap_or_else(|| PeerError::ChildDied("reported nothing".to_owned()))),
    }
}

/// The `SIGSYS` handler: the trapped call "returns" 0.
extern "C" fn on_sigsys(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid, exclusively ours
    // `ucontext_t` as the third argument; it is restored by `rt_sigreturn`.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    uc.uc_mcontext.gregs[libc::REG_RAX as usize] = 0;
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// Installs the `SIGSYS` handler and a filter trapping `getppid` on this (forked, single
/// threaded) process.
fn install() -> Result<(), PeerError> {
    let action = SigAction::new(
        SigHandler::SigAction(on_sigsys),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only edits the ucontext it is given (async-signal-safe).
    unsafe { sigaction(Signal::SIGSYS, &action) }.map_err(|e| PeerError::failed("sigaction", e))?;
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        stmt(ld, DATA_ARCH),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, DATA_NR),
        jeq(libc::SYS_getppid as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_TRAP),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    nix::sys::prctl::set_no_new_privs().map_err(|e| PeerError::failed("PR_SET_NO_NEW_PRIVS", e))?;
    // SAFETY: `prog` points to a valid filter that outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(PeerError::failed(
            "installing the seccomp filter",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
