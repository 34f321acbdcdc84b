//! User sandboxes (`SandboxHeader::kind == kind::USER`): the stub runs guest user code for one
//! guest address space, one thread per context slot (see `pvmux_hypercalls::user`).
//!
//! Start-up ([`start`]) maps the per-slot areas just above `USER_CTX_BASE`, installs the
//! handlers, creates every slot thread and its slice timer and builds the filter program; then
//! it waits until the host has written the context region into the control header (at once for
//! a sandbox spawned for a space; a *spare* sleeps here, on a futex on the low half of
//! `user_ctx_len`, until `SpaceCreate` assigns it one), maps the region at `USER_CTX_BASE`,
//! installs the user filter (TSYNC) and releases the threads. Each thread then raises a signal
//! to itself and *lives in its signal handler* ([`handler`]): it serves the requests the guest
//! kernel *grants* its slot (the grant word in the read-only grant page, waited for in
//! [`idle`]'s register-only loop: a program can forge requests, not grants) on its slot
//! ([`request`]: the user half of the hand-off, `pvmux_hypercalls::user::handoff`, with the
//! stub's system calls behind it) until one is to run user code, writes the requested
//! registers into the signal's saved context and returns, which `rt_sigreturn`s into user
//! code. The next signal from user code (a trapped system call, a fault, the slice timer)
//! enters the handler afresh on the alternate stack: the handler saves the user state into the
//! slot (registers, FS base [`fsbase`], FPU image [`fpu`]), hands the slot back, and serves
//! again.
//!
//! User code owns FS (its TLS) and can write anything in the process, so nothing here uses
//! FS; a handler finds its slot from its stack pointer ([`cpu`]: areas are `AREA_SIZE`
//! aligned) and checks the area is one of ours. The context region is reached only through
//! [`slot`]: atomics for the hand-off words, copies for everything else. A fault in stub code
//! ends the sandbox (status 124)
//! after a record of what it saw in the control page ([`crash`]).

mod cpu;
pub(crate) mod crash;
mod fpu;
mod fsbase;
mod handler;
mod idle;
mod patch;
mod request;
mod slot;
mod start;
mod template;
mod windows;

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

pub(crate) use handler::on_signal;
pub(crate) use start::main;

/// Set once a user sandbox starts (the panic handler must not use kernel-mode state).
static USER_MODE: AtomicU32 = AtomicU32::new(0);

/// True in a user sandbox.
pub(crate) fn active() -> bool {
    USER_MODE.load(Relaxed) != 0
}

/// The time-stamp counter.
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and is allowed in user mode on pvmux hosts.
    unsafe { core::arch::x86_64::_rdtsc() }
}
