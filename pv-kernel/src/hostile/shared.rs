//! Shared-page abuse: scribbling garbage over every `VcpuShared` page and the `SandboxHeader`
//! while hypercalls run, and hypercall storms from every vCPU.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::layout::{vcpu_shared_addr, CTL_BASE};
use pvmux_hypercalls::{Hypercall, HC_FLAG_NOSPIN, PAGE_SIZE};

use crate::irq::IrqGuard;
use crate::time::now_ns;
use crate::{hcall, println};

const NOP: u64 = Hypercall::Nop as u64;
const CONSOLE_WRITE: u64 = Hypercall::ConsoleWrite as u64;

/// `hostile=storm`: every vCPU makes Nop / empty ConsoleWrite / short ConsoleWrite hypercalls
/// as fast as it can for ~1 s.
pub(crate) fn storm() -> bool {
    let n = crate::boot::nr_vcpus();
    let deadline = now_ns() + 1_000_000_000;
    static LINE: &[u8] = b"storm\n";
    let line_gpa = crate::boot::virt_to_phys(LINE.as_ptr() as u64, LINE.len() as u64).unwrap_or(0);
    let total: &'static AtomicU64 =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..n)
        .filter_map(|cpu| {
            crate::sched::spawn("storm", Some(cpu), move || {
                let mut i = 0u64;
                while now_ns() < deadline {
                    let _irq = IrqGuard::new();
                    for _ in 0..64 {
                        let (nr, a0, a1) = match i % 1024 {
                            0 => (CONSOLE_WRITE, line_gpa, LINE.len() as u64),
                            k if k.is_multiple_of(2) => (NOP, 0, 0),
                            k if k.is_multiple_of(3) => (NOP | HC_FLAG_NOSPIN, 0, 0),
                            _ => (CONSOLE_WRITE, line_gpa, 0),
                        };
                        hcall::raw(nr, [a0, a1, 0, 0, 0]);
                        i += 1;
                    }
                }
                total.fetch_add(i, Ordering::Relaxed);
            })
            .ok()
        })
        .collect();
    for h in handles {
        h.join();
    }
    println!(
        "hostile: storm: {} hypercalls from {n} vCPUs in ~1 s",
        total.load(Ordering::Relaxed)
    );
    true
}

/// `hostile=scribble`: one vCPU writes random values over the host-read fields of every
/// `VcpuShared` page (doorbell, caller, crash record, stats) and over the whole
/// `SandboxHeader` page for ~1.5 s while another vCPU makes hypercalls; then the scribbler
/// shuts the tenant down with 0. The tenant may end in any reported way before that.
pub(crate) fn scribble() -> bool {
    let n = crate::boot::nr_vcpus();
    if n < 2 {
        println!("hostile: scribble needs at least 2 vCPUs");
        return false;
    }
    let stop: &'static AtomicBool =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(AtomicBool::new(false)));
    let seed = super::seed().unwrap_or(7);
    let caller = crate::sched::spawn("hc-stream", Some(0), move || {
        let msg = b"hostile: hypercall under scribbling\n";
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if i.is_multiple_of(256) {
                hcall::console_write(msg);
            } else {
                hcall::nop(if i.is_multiple_of(3) {
                    HC_FLAG_NOSPIN
                } else {
                    0
                });
            }
            i += 1;
        }
    });
    let scribbler = crate::sched::spawn("scribbler", Some(1), move || {
        let mut rng = super::Rng::new(seed);
        let deadline = now_ns() + 1_500_000_000;
        let mut writes = 0u64;
        while now_ns() < deadline {
            for _ in 0..256 {
                let v = rng.next();
                let page = v % (u64::from(n) + 1);
                let base = if page == u64::from(n) {
                    CTL_BASE
                } else {
                    vcpu_shared_addr(page as u32)
                };
                // Skip irq_enabled/pending (guest-owned interrupt state) in VcpuShared pages.
                let lo = if page == u64::from(n) { 0 } else { 8 };
                let off = lo + (rng.next() % ((PAGE_SIZE - lo) / 8)) * 8;
                let val = match rng.next() % 4 {
                    0 => rng.next() % 8,
                    1 => rng.next() & 0xffff_ffff,
                    _ => rng.next(),
                };
                // SAFETY: the control region (header and VcpuShared pages) is mapped
                // read-write in the sandbox for its whole life; 8-aligned atomic stores.
                unsafe { (*((base + off) as *const AtomicU64)).store(val, Ordering::Relaxed) };
                writes += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        println!("hostile: scribble: {writes} random writes done, shutting down");
        hcall::shutdown(0);
    });
    if let Ok(h) = scribbler {
        h.join();
    }
    if let Ok(h) = caller {
        h.join();
    }
    true
}
