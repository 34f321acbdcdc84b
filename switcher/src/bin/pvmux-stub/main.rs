//! The pvmux sandbox stub: the guest kernel's "PV firmware" and the only code in a kernel
//! sandbox process that may make system calls.
//!
//! A libc-free static-pie, started by the host with exactly two fds (guest memory and the
//! control region). It relocates itself, maps the control region and a physmap of guest
//! memory, prepares every vCPU thread, installs the seccomp filter on all of them and enters
//! the guest. From then on it runs only as signal handlers (shadow misses, exceptions,
//! events) and as entry points the guest calls (see `pvmux_hypercalls::StubTable`).
//!
//! The same binary is the stub of a *user sandbox* (`SandboxHeader::kind == kind::USER`),
//! which runs one guest address space's user code for the guest kernel (see `user`).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod doorbell;
mod entries;
mod host_limits;
mod inproc;
mod mem;
mod shadow;
mod sigctx;
mod start;
mod state;
mod sys;
mod trap;
mod user;
mod xsave;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Stub code does not panic by design; if it ever does, end the sandbox with a crash
    // record the host can report (a user sandbox's is in its control page: FS is the
    // user's there, and so is the slot).
    if user::active() {
        user::crash::crash(
            pvmux_hypercalls::sandbox::user_crash::PANIC,
            user::crash::NO_SLOT,
            None,
        );
    }
    let frame = pvmux_hypercalls::TrapFrame::default();
    trap::crash(
        state::StubCpu::current().shared(),
        pvmux_hypercalls::CrashReason::StubFault,
        &frame,
        0,
    )
}
