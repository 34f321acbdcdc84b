//! `selftest`: boot-time checks of every kernel mechanism, one result line per check.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pvmux_hypercalls::{frame::pf, layout::GUEST_FREE_BASE, Vector, PAGE_SIZE};

use crate::irq::IrqGuard;
use crate::mm::demand;
use crate::sched::{self, thread::state, Completion};
use crate::time::{host_wall_ns, now_ns, sleep_ms};
use crate::trap::{self, STATS};
use crate::{boot, println, smp, stub};

/// A named check.
type Check = (&'static str, fn() -> Outcome);

/// Result of one check.
enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// Runs every check, prints the summary and shuts down with the number of failures.
pub(crate) fn run() -> ! {
    let checks: [Check; 15] = [
        ("smp_online", smp_online),
        ("demand_paging", demand_paging),
        ("exception_breakpoint", exception_breakpoint),
        ("exception_invalid_opcode", exception_invalid_opcode),
        ("exception_divide_error", exception_divide_error),
        ("exception_general_protection", exception_general_protection),
        (
            "exception_page_fault_unmapped",
            exception_page_fault_unmapped,
        ),
        ("exception_raw_syscall", exception_raw_syscall),
        ("kernel_threads", kernel_threads),
        ("preemption", preemption),
        ("cross_vcpu_wakeup", cross_vcpu_wakeup),
        ("timer_accuracy", timer_accuracy),
        ("shadow_vma_budget", shadow_vma_budget),
        ("prefault_keeps_mappings", prefault_keeps_mappings),
        ("memfd_write", memfd_write),
    ];
    let (mut passed, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    for (name, check) in checks {
        match check() {
            Outcome::Pass => {
                passed += 1;
                println!("PASS {name}");
            }
            Outcome::Fail(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
            Outcome::Skip(why) => {
                skipped += 1;
                println!("SKIP {name}: {why}");
            }
        }
    }
    println!("selftest: {}/{} checks passed", passed, passed + failed);
    if skipped > 0 {
        println!("selftest: {skipped} checks skipped");
    }
    print_stats();
    crate::hcall::shutdown(failed)
}

/// Prints per-vCPU scheduler counters (informational).
fn print_stats() {
    let (heap_used, heap_size) = crate::mm::heap::stats();
    let (frames_used, frames_total) = crate::mm::frame::stats();
    println!(
        "  memory: heap {} of {} KiB used, {frames_used} of {frames_total} frames used, {} demand faults",
        heap_used >> 10,
        heap_size >> 10,
        demand::faults()
    );
    for id in 0..boot::nr_vcpus() as usize {
        let s = &sched::CPU_STATS[id];
        println!(
            "  vCPU {id}: events={} preemptions={} switches={} halts={} kicks_sent={}",
            s.events.load(Ordering::Relaxed),
            s.preemptions.load(Ordering::Relaxed),
            s.switches.load(Ordering::Relaxed),
            s.halts.load(Ordering::Relaxed),
            s.kicks_sent.load(Ordering::Relaxed),
        );
    }
}

/// Prints an informational line for a check.
macro_rules! note {
    ($name:literal, $($arg:tt)*) => { println!("  {}: {}", $name, format_args!($($arg)*)) };
}

fn smp_online() -> Outcome {
    let want = boot::nr_vcpus();
    let t0 = now_ns();
    while smp::online() < want && now_ns() - t0 < 1_000_000_000 {
        sleep_ms(5);
    }
    let got = smp::online();
    note!("smp_online", "{got}/{want} vCPUs online");
    if got == want {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("only {got} of {want} vCPUs came online"))
    }
}

fn demand_paging() -> Outcome {
    const PAGES: u64 = 512;
    let Some(base) = demand::reserve(PAGES * PAGE_SIZE) else {
        return Outcome::Fail("demand area exhausted".into());
    };
    if crate::mm::paging::translate(base).is_some() {
        return Outcome::Fail(format!("{base:#x} is mapped before first touch"));
    }
    let f0 = demand::faults();
    let pattern = |i: u64| 0x5056_4d55_0000_0000 ^ (i * 0x9e37_79b9);
    for i in 0..PAGES {
        let p = (base + i * PAGE_SIZE + (i * 8) % PAGE_SIZE) as *mut u64;
        // SAFETY: `p` lies in a fresh demand reservation that only this check uses; the page
        // is mapped by the fault handler on first touch; it is 8-byte aligned.
        unsafe { p.write_volatile(pattern(i)) };
    }
    let faults = demand::faults() - f0;
    let mut bad = 0u64;
    for i in 0..PAGES {
        let p = (base + i * PAGE_SIZE + (i * 8) % PAGE_SIZE) as *const u64;
        // SAFETY: as above; the page is mapped now.
        if unsafe { p.read_volatile() } != pattern(i) {
            bad += 1;
        }
    }
    note!(
        "demand_paging",
        "{PAGES} pages at {base:#x}, {faults} faults handled"
    );
    if bad != 0 {
        Outcome::Fail(format!("{bad} of {PAGES} pages read back wrong"))
    } else if faults < PAGES {
        Outcome::Fail(format!("only {faults} demand faults for {PAGES} pages"))
    } else {
        Outcome::Pass
    }
}

fn exception_breakpoint() -> Outcome {
    let b0 = STATS.breakpoints.load(Ordering::Relaxed);
    // SAFETY: `int3` traps to our handler, which counts it and resumes after it.
    unsafe { core::arch::asm!("int3") };
    let n = STATS.breakpoints.load(Ordering::Relaxed) - b0;
    if n == 1 {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("{n} breakpoints counted, expected 1"))
    }
}

/// What a fixed-up exception looked like.
struct Hit {
    vector: u64,
    error_code: u64,
    fault_addr: u64,
    /// `rip` as delivered.
    rip: u64,
    /// Resume address the asm block registered (just after the faulting instruction).
    resume: u64,
}

/// Arms a fixup for `vector` on this vCPU and runs `raise(slot)`, which must store its resume
/// address into `slot` and then raise the exception. Events stay disabled throughout, so the
/// thread cannot migrate away from the armed fixup.
fn with_fixup(vector: Vector, raise: impl FnOnce(*mut u64)) -> Option<Hit> {
    let _irq = IrqGuard::new();
    let fixup = trap::this_fixup();
    fixup.arm(vector);
    let slot = fixup.resume_slot();
    raise(slot);
    // SAFETY: `slot` points at this vCPU's fixup resume word (a live static atomic).
    let resume = unsafe { slot.read_volatile() };
    let vector = fixup.disarm()?;
    Some(Hit {
        vector,
        error_code: fixup.hit_error_code.load(Ordering::Relaxed),
        fault_addr: fixup.hit_fault_addr.load(Ordering::Relaxed),
        rip: fixup.hit_rip.load(Ordering::Relaxed),
        resume,
    })
}

/// Common verdict for a fixed-up exception that reports `rip` at the faulting instruction.
fn fault_verdict(hit: Option<Hit>, want: Vector) -> Outcome {
    let Some(hit) = hit else {
        return Outcome::Fail(format!("no {} was delivered", want.name()));
    };
    if hit.vector != want as u64 {
        return Outcome::Fail(format!(
            "got vector {} instead of {}",
            hit.vector, want as u64
        ));
    }
    if hit.rip >= hit.resume || hit.resume - hit.rip > 15 {
        return Outcome::Fail(format!(
            "rip {:#x} is not the faulting instruction before {:#x}",
            hit.rip, hit.resume
        ));
    }
    Outcome::Pass
}

fn exception_invalid_opcode() -> Outcome {
    let hit = with_fixup(Vector::InvalidOpcode, |slot| {
        // SAFETY: stores the resume address into the fixup slot, then `ud2` raises #UD, which
        // the armed fixup resumes at label 2; no register is changed besides `tmp`.
        unsafe {
            core::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov qword ptr [{slot}], {tmp}",
                "ud2",
                "2:",
                slot = in(reg) slot,
                tmp = out(reg) _,
            )
        }
    });
    fault_verdict(hit, Vector::InvalidOpcode)
}

fn exception_divide_error() -> Outcome {
    let hit = with_fixup(Vector::DivideError, |slot| {
        // SAFETY: as for #UD; `div` by zero raises #DE (rax/rdx are declared clobbered).
        unsafe {
            core::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov qword ptr [{slot}], {tmp}",
                "xor edx, edx",
                "div {zero}",
                "2:",
                slot = in(reg) slot,
                tmp = out(reg) _,
                zero = in(reg) 0u64,
                inout("rax") 1u64 => _,
                out("rdx") _,
            )
        }
    });
    fault_verdict(hit, Vector::DivideError)
}

fn exception_general_protection() -> Outcome {
    let hit = with_fixup(Vector::GeneralProtection, |slot| {
        // SAFETY: as for #UD; `hlt` is privileged, so in ring 3 it raises #GP.
        unsafe {
            core::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov qword ptr [{slot}], {tmp}",
                "hlt",
                "2:",
                slot = in(reg) slot,
                tmp = out(reg) _,
            )
        }
    });
    fault_verdict(hit, Vector::GeneralProtection)
}

fn exception_page_fault_unmapped() -> Outcome {
    // Inside the window, outside the demand area, never mapped by this kernel.
    let addr = GUEST_FREE_BASE + (2 << 40) + 0x1238;
    if crate::mm::paging::translate(addr).is_some() {
        return Outcome::Skip(format!("{addr:#x} is unexpectedly mapped"));
    }
    let hit = trap::read_u64_or_fault(addr).err().map(|f| Hit {
        vector: Vector::PageFault as u64,
        error_code: f.error_code,
        fault_addr: f.fault_addr,
        rip: f.rip,
        resume: f.resume,
    });
    if let Some(h) = &hit {
        note!(
            "exception_page_fault_unmapped",
            "fault_addr={:#x} error_code={:#x}",
            h.fault_addr,
            h.error_code
        );
        if h.vector == Vector::PageFault as u64 && h.fault_addr != addr {
            return Outcome::Fail(format!(
                "fault_addr {:#x}, expected {addr:#x}",
                h.fault_addr
            ));
        }
        if h.vector == Vector::PageFault as u64 && h.error_code & (pf::PRESENT | pf::WRITE) != 0 {
            return Outcome::Fail(format!(
                "error code {:#x} claims present/write",
                h.error_code
            ));
        }
    }
    fault_verdict(hit, Vector::PageFault)
}

/// Executes a raw Linux system call with up to three arguments.
pub(crate) fn raw_syscall(nr: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: the stub traps raw system calls and delivers them as `Vector::Syscall`; our
    // handler answers -ENOSYS in rax and resumes after the instruction. rcx/r11 are clobbered
    // as by a real `syscall`. Nothing in memory is touched by a trapped call.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

fn exception_raw_syscall() -> Outcome {
    let _irq = IrqGuard::new();
    let n0 = STATS.syscalls.load(Ordering::Relaxed);
    let ret: i64;
    let after: u64;
    // SAFETY: as in `raw_syscall`; `after` receives the address just after `syscall`.
    unsafe {
        core::arch::asm!(
            "lea {after}, [rip + 2f]",
            "syscall",
            "2:",
            after = out(reg) after,
            inlateout("rax") 39u64 => ret,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    let n = STATS.syscalls.load(Ordering::Relaxed) - n0;
    let nr = STATS.last_syscall_nr.load(Ordering::Relaxed);
    let rip = STATS.last_syscall_rip.load(Ordering::Relaxed);
    if n != 1 {
        Outcome::Fail(format!(
            "getpid was not trapped as a syscall vector (returned {ret})"
        ))
    } else if nr != 39 {
        Outcome::Fail(format!("trapped with error_code {nr}, expected 39"))
    } else if rip != after {
        Outcome::Fail(format!("trapped with rip {rip:#x}, expected {after:#x}"))
    } else if ret != -38 {
        Outcome::Fail(format!(
            "returned {ret}, expected -38 (ENOSYS from our handler)"
        ))
    } else {
        Outcome::Pass
    }
}

fn kernel_threads() -> Outcome {
    const THREADS: u64 = 8;
    const ADDS: u64 = 1000;
    let nr = boot::nr_vcpus();
    let counter = Arc::new(AtomicU64::new(0));
    let cpus = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..THREADS {
        let (counter, cpus) = (counter.clone(), cpus.clone());
        let affinity = Some((i % u64::from(nr)) as u32);
        let h = sched::spawn("adder", affinity, move || {
            for k in 1..=ADDS {
                counter.fetch_add(k, Ordering::Relaxed);
                if k == ADDS / 2 {
                    sleep_ms(1);
                }
            }
            cpus.fetch_or(1 << stub::vcpu_id(), Ordering::Relaxed);
        });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => return Outcome::Fail(format!("spawn failed: {e:?}")),
        }
    }
    for h in handles {
        h.join();
    }
    let want = THREADS * ADDS * (ADDS + 1) / 2;
    let got = counter.load(Ordering::Relaxed);
    let used = cpus.load(Ordering::Relaxed).count_ones();
    note!(
        "kernel_threads",
        "{THREADS} threads joined, counter={got}, ran on {used} vCPUs"
    );
    if got != want {
        Outcome::Fail(format!("counter {got}, expected {want}"))
    } else if used != nr.min(THREADS as u32) {
        Outcome::Fail(format!(
            "threads ran on {used} vCPUs, expected {}",
            nr.min(THREADS as u32)
        ))
    } else {
        Outcome::Pass
    }
}

fn preemption() -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let flag = Arc::new(AtomicBool::new(false));
    let p0 = sched::CPU_STATS[0].preemptions.load(Ordering::Relaxed);
    let busy = {
        let (stop, started) = (stop.clone(), started.clone());
        sched::spawn("busy-loop", Some(0), move || {
            started.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        })
    };
    let setter = {
        let (stop, started, flag) = (stop.clone(), started.clone(), flag.clone());
        sched::spawn("flag-setter", Some(0), move || {
            while !stop.load(Ordering::SeqCst) {
                // Both threads are pinned to vCPU 0: if the busy loop has started and we run,
                // the busy loop was preempted.
                if started.load(Ordering::SeqCst) {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                sched::yield_now();
            }
        })
    };
    let (busy, setter) = match (busy, setter) {
        (Ok(b), Ok(s)) => (b, s),
        (b, s) => {
            stop.store(true, Ordering::SeqCst);
            return Outcome::Fail(format!("spawn failed: {:?} {:?}", b.err(), s.err()));
        }
    };
    let t0 = now_ns();
    while !flag.load(Ordering::SeqCst) && now_ns() - t0 < 2_000_000_000 {
        sleep_ms(5);
    }
    let waited_ms = (now_ns() - t0) / 1_000_000;
    stop.store(true, Ordering::SeqCst);
    busy.join();
    setter.join();
    let preemptions = sched::CPU_STATS[0].preemptions.load(Ordering::Relaxed) - p0;
    note!(
        "preemption",
        "flag set after {waited_ms} ms; {preemptions} preemptions on vCPU 0"
    );
    if flag.load(Ordering::SeqCst) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "no other thread ran on vCPU 0 within {waited_ms} ms of a busy loop"
        ))
    }
}

fn cross_vcpu_wakeup() -> Outcome {
    if boot::nr_vcpus() < 2 {
        return Outcome::Skip("needs at least 2 vCPUs".into());
    }
    let completion = Arc::new(Completion::new());
    let woken_at = Arc::new(AtomicU64::new(0));
    let woken_on = Arc::new(AtomicU64::new(u64::MAX));
    let waiter = {
        let (c, at, on) = (completion.clone(), woken_at.clone(), woken_on.clone());
        sched::spawn("wait-on-vcpu1", Some(1), move || {
            c.wait();
            at.store(now_ns(), Ordering::SeqCst);
            on.store(u64::from(stub::vcpu_id()), Ordering::SeqCst);
        })
    };
    let waiter = match waiter {
        Ok(w) => w,
        Err(e) => return Outcome::Fail(format!("spawn failed: {e:?}")),
    };
    let target = waiter.thread().clone();
    let signalled_at = Arc::new(AtomicU64::new(0));
    let saw_halted = Arc::new(AtomicBool::new(false));
    let waker = {
        let (c, at, halted) = (completion.clone(), signalled_at.clone(), saw_halted.clone());
        sched::spawn("waker-on-vcpu0", Some(0), move || {
            // Wait (bounded) until the waiter is blocked and vCPU 1 sleeps in `halt`.
            let t0 = now_ns();
            while now_ns() - t0 < 1_000_000_000 {
                let blocked =
                    target.state() == state::BLOCKED && !target.on_cpu.load(Ordering::Relaxed);
                if blocked
                    && sched::cpu_is_idle(1)
                    && stub::vcpu_shared(1).halted.load(Ordering::SeqCst) == 1
                {
                    halted.store(true, Ordering::SeqCst);
                    break;
                }
                sleep_ms(1);
            }
            at.store(now_ns(), Ordering::SeqCst);
            c.signal();
        })
    };
    let waker = match waker {
        Ok(w) => w,
        Err(e) => {
            completion.signal();
            return Outcome::Fail(format!("spawn failed: {e:?}"));
        }
    };
    waker.join();
    let t0 = now_ns();
    while !waiter.is_finished() && now_ns() - t0 < 2_000_000_000 {
        sleep_ms(2);
    }
    if !waiter.is_finished() {
        return Outcome::Fail("the thread on vCPU 1 was not woken within 2 s".into());
    }
    waiter.join();
    let latency = woken_at
        .load(Ordering::SeqCst)
        .saturating_sub(signalled_at.load(Ordering::SeqCst));
    let on = woken_on.load(Ordering::SeqCst);
    let halted = saw_halted.load(Ordering::SeqCst);
    note!(
        "cross_vcpu_wakeup",
        "woken after {} us on vCPU {on} (vCPU 1 seen halted: {})",
        latency / 1000,
        if halted { "yes" } else { "no" }
    );
    if on != 1 {
        Outcome::Fail(format!("the pinned thread resumed on vCPU {on}"))
    } else if latency > 1_000_000_000 {
        Outcome::Fail(format!("woken after {} ms", latency / 1_000_000))
    } else {
        Outcome::Pass
    }
}

fn timer_accuracy() -> Outcome {
    let w0 = host_wall_ns();
    sleep_ms(50);
    let w1 = host_wall_ns();
    let us = w1.saturating_sub(w0) / 1000;
    let text = format!("{}.{:03} ms", us / 1000, us % 1000);
    note!(
        "timer_accuracy",
        "sleep(50 ms) took {text} of wall-clock time"
    );
    if (45_000..=80_000).contains(&us) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!("sleep(50 ms) took {text}"))
    }
}

/// A `prefault` of heap memory the shadow maps already (the direct map's large leaf, as for
/// a new kernel stack) maps nothing again — mapped again, the leaf would lose the host
/// page-table entries of all its pages — and one of a range with a hole (a page flushed)
/// fills it; the bytes stay.
fn prefault_keeps_mappings() -> Outcome {
    const LEN: usize = 16 * PAGE_SIZE as usize;
    let _irq = IrqGuard::new();
    let fills = || {
        stub::vcpu_self().stats[pvmux_hypercalls::vcpu::stat::SHADOW_FILLS].load(Ordering::Relaxed)
    };
    let mut buf: Vec<u8> = (0..LEN + PAGE_SIZE as usize).map(|i| i as u8).collect();
    let base = (buf.as_ptr() as u64).next_multiple_of(PAGE_SIZE);
    let before = fills();
    let first = stub::prefault(base, LEN as u64, true);
    let again = fills() - before;
    stub::tlb_flush(base + PAGE_SIZE, PAGE_SIZE);
    let second = stub::prefault(base, LEN as u64, true);
    let hole = fills() - before - again;
    let intact = buf.iter().enumerate().all(|(i, &b)| b == i as u8);
    buf.clear();
    note!(
        "prefault_keeps_mappings",
        "prefaults -> {first}, {second}; shadow fills: {again} for the mapped range, {hole} \
         for the range with a hole"
    );
    if first < 0 || second < 0 {
        Outcome::Fail(format!("prefault failed: {first}, {second}"))
    } else if again != 0 {
        Outcome::Fail(format!("{again} shadow fills for memory mapped already"))
    } else if hole == 0 {
        Outcome::Fail("the flushed page was not filled again".into())
    } else if !intact {
        Outcome::Fail("the buffer changed".into())
    } else {
        Outcome::Pass
    }
}

/// The stub's `mem_write` writes guest memory through the memfd (the jail lets the kernel
/// sandbox write that file, the filter lets the stub call `pwrite` on it): what it wrote reads
/// back through the kernel's mapping. (The kernel falls back to copying when the call fails,
/// so only this check tells that it works; the hostile suite's `args` case checks what it
/// refuses.)
fn memfd_write() -> Outcome {
    const PAGES: usize = 3;
    let Ok(gpa) = crate::linux::pool::alloc_contiguous(PAGES) else {
        return Outcome::Skip("no pool frames".into());
    };
    let data: Vec<u8> = (0..PAGES * PAGE_SIZE as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let wrote = stub::mem_write(gpa, &data);
    let mut back = alloc::vec![0u8; data.len()];
    crate::mm::pool_mem::read(gpa, &mut back);
    crate::linux::pool::put_all((0..PAGES as u64).map(|i| gpa + i * PAGE_SIZE).collect());
    if wrote != data.len() as i64 {
        Outcome::Fail(format!(
            "mem_write of {} bytes returned {wrote}",
            data.len()
        ))
    } else if back != data {
        Outcome::Fail("the bytes written do not read back".into())
    } else {
        Outcome::Pass
    }
}

/// Shadow evictions the stub reported on all vCPUs.
fn shadow_evictions() -> u64 {
    (0..boot::nr_vcpus())
        .map(|id| {
            stub::vcpu_shared(id).stats[pvmux_hypercalls::vcpu::stat::EVICTIONS]
                .load(Ordering::Relaxed)
        })
        .sum()
}

/// More live shadow mappings than the stub's host-VMA budget: one frame aliased at 40,000
/// pages (so no two mappings can merge) must still read back correctly, with the stub
/// evicting its shadow instead of failing.
fn shadow_vma_budget() -> Outcome {
    use x86_64::structures::paging::PageTableFlags as F;
    const PAGES: u64 = 40_000;
    const PATTERN: u64 = 0x7076_6d75_7856_4d41;
    let Some(base) = demand::reserve(PAGES * PAGE_SIZE) else {
        return Outcome::Fail("demand area exhausted".into());
    };
    let Some(frame) = crate::mm::frame::alloc_zeroed() else {
        return Outcome::Fail("out of frames".into());
    };
    let dm = boot::phys_to_virt(frame.start_address().as_u64()) as *mut u64;
    // SAFETY: a freshly allocated frame, reached through the direct map.
    unsafe { dm.write_volatile(PATTERN) };
    for i in 0..PAGES {
        // SAFETY: read-only aliases of a frame this check owns, in its own reservation.
        let mapped =
            unsafe { crate::mm::paging::map_page(base + i * PAGE_SIZE, frame, F::NO_EXECUTE) };
        if let Err(e) = mapped {
            return Outcome::Fail(format!("mapping page {i} failed: {e:?}"));
        }
    }
    let before = shadow_evictions();
    let mut bad = 0u64;
    for round in 0..2 {
        for i in 0..PAGES {
            // SAFETY: mapped just above (read-only), 8-byte aligned.
            let v = unsafe { ((base + i * PAGE_SIZE) as *const u64).read_volatile() };
            if v != PATTERN {
                bad += 1;
                if bad == 1 {
                    note!("shadow_vma_budget", "round {round} page {i}: read {v:#x}");
                }
            }
        }
    }
    let evictions = shadow_evictions() - before;
    note!(
        "shadow_vma_budget",
        "{PAGES} aliases read twice, {evictions} shadow evictions, {bad} bad reads"
    );
    if bad > 0 {
        Outcome::Fail(format!("{bad} reads returned wrong data"))
    } else if evictions == 0 {
        Outcome::Fail("the stub never evicted its shadow".into())
    } else {
        Outcome::Pass
    }
}
