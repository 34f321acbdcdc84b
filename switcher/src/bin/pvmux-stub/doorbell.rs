//! The stub's `hypercall` entry: the guest half of the host doorbell, as the ABI crate defines
//! it (`pvmux_hypercalls::doorbell`; the host half lives in `pvmux-host`). This module only
//! supplies the platform: the guest clock and shared futexes.

use core::sync::atomic::AtomicU32;
use pvmux_hypercalls::doorbell::{GuestDoorbell, Waiter};

use crate::state::{self, StubCpu};
use crate::sys;

/// The stub's clock and futexes.
struct Stub;

impl Waiter for Stub {
    fn now_ns(&self) -> u64 {
        state::clock_ns()
    }

    fn wait(&self, word: &AtomicU32, expected: u32, _timeout_ns: Option<u64>) {
        // The guest half never asks for a timeout. EAGAIN and EINTR just mean "look again".
        let _ = sys::futex_wait(word, expected);
    }

    fn wake(&self, word: &AtomicU32, count: u32) {
        sys::futex_wake(word, count);
    }

    fn cpu(&self) -> u32 {
        state::host_cpu()
    }
}

/// The `hypercall` entry (tail-called by the assembly trampoline).
pub(crate) extern "sysv64" fn hypercall(
    nr: u64,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> i64 {
    let s = StubCpu::current().shared();
    crate::state::count(s, pvmux_hypercalls::vcpu::stat::HYPERCALLS);
    GuestDoorbell::new(s).call(&Stub, nr, [a0, a1, a2, a3, a4, a5])
}
