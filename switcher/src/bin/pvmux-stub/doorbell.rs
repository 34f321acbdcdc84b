//! The guest half of the host doorbell (the host half lives in `pvmux-host`).
//!
//! Ring: write the call, bump `hc_req`, wake the host only if it sleeps. Wait: spin a bounded
//! time on `hc_resp` (never on `HC_FLAG_NOSPIN`), then announce `guest_waiting` and futex-wait.
//! Both sides store-then-load with full fences, so a wake-up is never lost.

use core::sync::atomic::Ordering::*;
use pvmux_hypercalls::hypercall::HC_FLAG_NOSPIN;

use crate::state::{self, StubCpu};
use crate::sys;

/// How long the guest spins for a response before it blocks.
const SPIN_NS: u64 = 30_000;

/// The `hypercall` entry (tail-called by the assembly trampoline).
pub(crate) extern "sysv64" fn hypercall(
    nr: u64,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
) -> i64 {
    let s = StubCpu::current().shared();
    crate::state::count(s, pvmux_hypercalls::vcpu::stat::HYPERCALLS);
    s.hc_nr.store(nr, Relaxed);
    for (slot, v) in s.hc_args.iter().zip([a0, a1, a2, a3, a4, 0]) {
        slot.store(v, Relaxed);
    }
    let seq = s.hc_req.load(Relaxed).wrapping_add(1);
    s.hc_req.swap(seq, SeqCst);
    if s.host_waiting.load(SeqCst) != 0 {
        sys::futex_wake(&s.hc_req, 1);
    }
    if nr & HC_FLAG_NOSPIN == 0 {
        let deadline = state::clock_ns() + SPIN_NS;
        let mut i = 0u32;
        loop {
            if s.hc_resp.load(Acquire) == seq {
                return s.hc_ret.load(Acquire) as i64;
            }
            core::hint::spin_loop();
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) && state::clock_ns() > deadline {
                break;
            }
        }
    }
    loop {
        s.guest_waiting.swap(1, SeqCst);
        let cur = s.hc_resp.load(SeqCst);
        if cur == seq {
            break;
        }
        let _ = sys::futex_wait(&s.hc_resp, cur);
    }
    s.guest_waiting.store(0, Relaxed);
    s.hc_ret.load(Acquire) as i64
}
