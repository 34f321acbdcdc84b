//! A user sandbox *template* (`kind::USER_TEMPLATE`): it does a spawned sandbox's start-up up
//! to its threads (mappings, handlers, limits), installs the template filter
//! (`build_user_template_filter`) and then forks children on the host's request
//! ([`TemplateCtl`]). A child inherits all of that, compiled filter included, and only starts
//! its threads and waits for a context region (`super::start::child_start`): a spare made
//! without an `execve`, a jail or a filter compilation of its own.
//!
//! The template runs no guest code: its only input is its control page, which only the host
//! writes. It reaps its children itself (`wait4`, woken by `SIGCHLD`), so their CPU time adds
//! to its own children's time, which the host gets when it reaps the template; the host, which
//! holds each child's pidfd, reads the exit status from the pidfd (`PIDFD_INFO_EXIT`).

use core::arch::global_asm;
use core::sync::atomic::Ordering::{Acquire, Release};

use pvmux_hypercalls::layout::CTL_BASE;
use pvmux_hypercalls::sandbox::{status, TemplateCtl, TEMPLATE_CTL_OFFSET, TEMPLATE_MAX_PAGES};
use pvmux_switcher::seccomp::TEMPLATE_FORK_FLAGS;

use crate::start::{fail, Step};
use crate::state::header_atomics;
use crate::sys::{self, nr, syscall6};

/// `EINVAL`.
const EINVAL: u32 = 22;
/// Longest the template sleeps between two looks for exited children: the backstop for a
/// `SIGCHLD` that came between its last `wait4` and its sleep (ns).
const REAP_BACKSTOP_NS: i64 = 50_000_000;

global_asm!(
    // The template's SIGCHLD handler: nothing to do but interrupt its futex wait.
    ".globl pvmux_template_on_sigchld",
    "pvmux_template_on_sigchld:",
    "ret",
);

extern "sysv64" {
    fn pvmux_template_on_sigchld();
}

/// The template's fork channel in its control page.
fn ctl() -> &'static TemplateCtl {
    // SAFETY: the control page is mapped at CTL_BASE for the life of the template, which
    // never remaps it (only a child does, in its own address space); TemplateCtl is four
    // atomics at a const-asserted offset inside the page, which only the host writes besides
    // this process, and the template runs no guest code.
    unsafe { &*((CTL_BASE as usize + TEMPLATE_CTL_OFFSET) as *const TemplateCtl) }
}

/// Before the filter: a `SIGCHLD` handler that only interrupts the template's wait for a
/// request (no `SA_RESTART`), so that it reaps a child as soon as it exits.
pub(super) fn prepare() {
    const SIGCHLD: usize = 17;
    const SA_RESTORER: u64 = 0x0400_0000;
    let act: [u64; 4] = [
        pvmux_template_on_sigchld as *const () as u64,
        SA_RESTORER,
        crate::start::pvmux_stub_restorer as *const () as u64,
        0,
    ];
    // SAFETY: rt_sigaction(SIGCHLD) with a valid 32-byte sigaction whose handler and
    // restorer are stub code.
    if let Err(e) = sys::check(unsafe {
        syscall6(
            nr::RT_SIGACTION,
            [SIGCHLD, act.as_ptr() as usize, 0, 8, 0, 0],
        )
    }) {
        fail(Step::SigAction, e);
    }
}

/// Reaps every child that has exited (`wait4(-1, NULL, WNOHANG, NULL)` until none).
fn reap_children() {
    const WNOHANG: usize = 1;
    // SAFETY: wait4 with null status and rusage pointers writes no memory.
    while unsafe { syscall6(nr::WAIT4, [usize::MAX, 0, WNOHANG, 0, 0, 0]) } > 0 {}
}

/// Publishes the template filter's notification listener (its descriptor, or `-errno`) for
/// the host, which takes its own copy before it asks for the first fork.
pub(super) fn set_listener(fd: i32) {
    ctl().listener.store(fd, Release);
}

/// Serves fork requests for ever (the host kills the template with its tenant). A request
/// names the child's control page; the answer is the child's pidfd in this process, which
/// stays open until the next request (the host takes its own copy meanwhile).
pub(super) fn serve_forks() -> ! {
    let t = ctl();
    let h = header_atomics();
    h.stub_status.store(status::READY, Release);
    sys::futex_wake(h.stub_status, u32::MAX);
    let mut held: Option<i32> = None;
    let mut done = t.done.load(Acquire);
    loop {
        reap_children();
        let request = t.request.load(Acquire);
        if request == done {
            let backstop = sys::Timespec {
                sec: 0,
                nsec: REAP_BACKSTOP_NS,
            };
            let _ = sys::futex_wait_shared(&t.request, request, Some(&backstop));
            continue;
        }
        if let Some(fd) = held.take() {
            sys::close(fd);
        }
        // The host took its copy of the listener before this first request: no child may
        // inherit one (it could answer its siblings' window requests).
        let listener = t.listener.swap(-1, Acquire);
        if listener >= 0 {
            sys::close(listener);
        }
        let page = t.page.load(Acquire);
        // Children are born holding every window the tenant has open.
        super::windows::take_all(t.windows.load(Acquire));
        let answer = if page == 0 || page >= TEMPLATE_MAX_PAGES {
            -(EINVAL as i32)
        } else {
            let mut pidfd: i32 = -1;
            // SAFETY: a fork (no CLONE_VM) of this single-threaded process: the child runs on
            // a copy of this stack and memory; CLONE_PIDFD writes the pidfd to `pidfd`.
            let r = unsafe {
                syscall6(
                    nr::CLONE,
                    [
                        TEMPLATE_FORK_FLAGS as usize,
                        0,
                        &mut pidfd as *mut i32 as usize,
                        0,
                        0,
                        0,
                    ],
                )
            };
            if r == 0 {
                super::start::child_start(page)
            }
            match sys::check(r) {
                Ok(_) => {
                    held = Some(pidfd);
                    pidfd
                }
                Err(e) => -(e as i32),
            }
        };
        t.pidfd.store(answer, Release);
        done = request;
        t.done.store(done, Release);
        sys::futex_wake(&t.done, u32::MAX);
    }
}
