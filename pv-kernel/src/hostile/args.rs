//! Out-of-range, overflowing and malformed arguments to every host hypercall and every stub
//! entry. Everything that returns must return the documented value; `iret` with a bad frame
//! and `Panic` with a bad buffer end the tenant (reported by the host).

use pvmux_hypercalls::hypercall::CONSOLE_WRITE_MAX;
use pvmux_hypercalls::layout::{WINDOW_BASE, WINDOW_END};
use pvmux_hypercalls::{HcError, Hypercall, StubTable, HC_FLAG_NOSPIN, PAGE_SIZE};

use crate::irq::IrqGuard;
use crate::{hcall, println};

// The calls, as raw numbers (flags and garbage are or'ed into them below).
const CONSOLE_WRITE: u64 = Hypercall::ConsoleWrite as u64;
const WALL_CLOCK: u64 = Hypercall::WallClock as u64;
const PANIC: u64 = Hypercall::Panic as u64;
const SPACE_CREATE: u64 = Hypercall::SpaceCreate as u64;
const SPACE_DESTROY: u64 = Hypercall::SpaceDestroy as u64;
const CONSOLE_READ: u64 = Hypercall::ConsoleRead as u64;
const SIGNAL_TAKE: u64 = Hypercall::SignalTake as u64;

const UNKNOWN: i64 = HcError::UnknownCall.to_ret();
const INVAL: i64 = HcError::InvalidArgument.to_ret();
const BADADDR: i64 = HcError::BadAddress.to_ret();
const TOOLARGE: i64 = HcError::TooLarge.to_ret();
const BUSY: i64 = HcError::Busy.to_ret();

type Fn1 = extern "sysv64" fn(u64) -> i64;
type Fn2 = extern "sysv64" fn(u64, u64) -> i64;
type Fn3 = extern "sysv64" fn(u64, u64, u64) -> i64;
type Fn4 = extern "sysv64" fn(u64, u64, u64, u64) -> i64;

/// Raw entry `addr` as a function pointer of type `F`.
///
/// # Safety
/// `addr` must be a stub entry whose ABI signature is `F`.
unsafe fn entry<F: Copy>(addr: u64) -> F {
    // SAFETY: caller contract; F is a function-pointer type of pointer size.
    unsafe { core::mem::transmute_copy::<u64, F>(&addr) }
}

/// Compares one result with the expectation and prints it.
pub(super) fn expect(what: &str, got: i64, want: impl Fn(i64) -> bool, want_text: &str) -> bool {
    let ok = want(got);
    println!(
        "hostile: {what} -> {got} ({}: expected {want_text})",
        if ok { "ok" } else { "MISMATCH" }
    );
    ok
}

pub(super) fn eq(v: i64) -> impl Fn(i64) -> bool {
    move |g| g == v
}

/// `hostile=args`: hypercalls, then every stub entry, then a `Shutdown` with a huge code whose
/// low byte is 0 if everything matched (1 otherwise).
pub(crate) fn run() -> bool {
    let t = super::stub_table();
    let mem = crate::boot::info().mem_size;
    let msg = b"hostile: console write from the last bytes of memory\n";
    let mut ok = true;
    // A pseudo-flag of this test only: pass 3 as the third argument (a console stream).
    const STREAM3: u64 = 1 << 40;
    let mut call = |what: &str, nr: u64, a0: u64, a1: u64, want: i64| {
        let a2 = if nr & STREAM3 != 0 { 3 } else { 0 };
        let got = hcall::raw(nr & !STREAM3, [a0, a1, a2, 0, 0]);
        ok &= expect(what, got, eq(want), &alloc::format!("{want}"));
    };
    call(
        "ConsoleWrite gpa=mem_size len=1",
        CONSOLE_WRITE,
        mem,
        1,
        BADADDR,
    );
    call(
        "ConsoleWrite gpa=mem_size-1 len=2",
        CONSOLE_WRITE,
        mem - 1,
        2,
        BADADDR,
    );
    call(
        "ConsoleWrite gpa=u64::MAX len=1",
        CONSOLE_WRITE,
        u64::MAX,
        1,
        BADADDR,
    );
    call(
        "ConsoleWrite gpa+len wraps u64",
        CONSOLE_WRITE,
        u64::MAX - 2,
        16,
        BADADDR,
    );
    call(
        "ConsoleWrite gpa=2^63 len=8",
        CONSOLE_WRITE,
        1 << 63,
        8,
        BADADDR,
    );
    call(
        "ConsoleWrite len=CONSOLE_WRITE_MAX+1",
        CONSOLE_WRITE,
        0,
        CONSOLE_WRITE_MAX + 1,
        TOOLARGE,
    );
    call(
        "ConsoleWrite len=u64::MAX",
        CONSOLE_WRITE,
        0,
        u64::MAX,
        TOOLARGE,
    );
    call(
        "ConsoleWrite gpa=u64::MAX len=u64::MAX",
        CONSOLE_WRITE,
        u64::MAX,
        u64::MAX,
        TOOLARGE,
    );
    call("ConsoleWrite len=0", CONSOLE_WRITE, 0x1000, 0, 0);
    call(
        "ConsoleWrite len=0 gpa=u64::MAX",
        CONSOLE_WRITE,
        u64::MAX,
        0,
        BADADDR,
    );
    call(
        "ConsoleWrite last page, crossing the end",
        CONSOLE_WRITE,
        mem - PAGE_SIZE + 16,
        2 * PAGE_SIZE,
        BADADDR,
    );
    // A legal write from the very end of memory: copy a message there through the direct map.
    let end_gpa = mem - msg.len() as u64;
    // SAFETY: the last bytes of guest memory, reached through the direct map; hostile cases
    // do not care what they overwrite there (the top of memory holds free frames or heap).
    unsafe {
        core::ptr::copy_nonoverlapping(
            msg.as_ptr(),
            crate::boot::phys_to_virt(end_gpa) as *mut u8,
            msg.len(),
        )
    };
    call(
        "ConsoleWrite ending exactly at mem_size",
        CONSOLE_WRITE,
        end_gpa,
        msg.len() as u64,
        msg.len() as i64,
    );
    // Unknown numbers, flags.
    call("hypercall nr=10 (VolumeOp, no volumes)", 10, 0, 0, UNKNOWN);
    call(
        "hypercall nr=36 (ChannelSend, no channels)",
        36,
        0,
        0,
        UNKNOWN,
    );
    call(
        "hypercall nr=38 (ChannelCtl, no channels)",
        38,
        0,
        1,
        UNKNOWN,
    );
    // User-mode and console-input calls with bad arguments (SpaceCreate outside the user
    // pool, unaligned, past the end; SpaceDestroy of handles never created; ConsoleRead
    // outside memory).
    call(
        "SpaceCreate gpa=0 (kernel memory)",
        SPACE_CREATE,
        0,
        0,
        BADADDR,
    );
    call(
        "SpaceCreate gpa unaligned",
        SPACE_CREATE,
        mem - 4096 + 8,
        0,
        BADADDR,
    );
    call("SpaceCreate gpa=mem_size", SPACE_CREATE, mem, 0, BADADDR);
    call(
        "SpaceCreate gpa=u64::MAX",
        SPACE_CREATE,
        u64::MAX,
        0,
        BADADDR,
    );
    call("SpaceDestroy handle=0", SPACE_DESTROY, 0, 0, INVAL);
    call(
        "SpaceDestroy handle=u64::MAX",
        SPACE_DESTROY,
        u64::MAX,
        0,
        INVAL,
    );
    call("ConsoleRead gpa=mem_size", CONSOLE_READ, mem, 1, BADADDR);
    call(
        "ConsoleWrite stream=3",
        CONSOLE_WRITE | STREAM3,
        0,
        0,
        INVAL,
    );
    // SignalTake ignores its arguments; nothing was sent: the empty set.
    call(
        "SignalTake with garbage arguments",
        SIGNAL_TAKE,
        u64::MAX,
        u64::MAX,
        0,
    );
    call("hypercall nr=0x7fff_ffff", 0x7fff_ffff, 0, 0, UNKNOWN);
    call("hypercall nr=u32::MAX", 0xffff_ffff, 0, 0, UNKNOWN);
    call("hypercall nr=u64::MAX (all flags)", u64::MAX, 0, 0, UNKNOWN);
    call("Nop with unknown flag bits", 0xffff_fffe_0000_0000, 0, 0, 0);
    call("Nop with NOSPIN", HC_FLAG_NOSPIN, 0, 0, 0);
    {
        let got = hcall::raw(WALL_CLOCK | 0xabcd_0000_0000_0000, [0; 5]);
        ok &= expect("WallClock with flag bits", got, |g| g > 0, "> 0");
    }

    ok &= entries(&t);

    let code = if ok {
        0xdead_beef_0000_0000
    } else {
        0xdead_beef_0000_0001
    };
    println!(
        "hostile: args {}; Shutdown({code:#x})",
        if ok {
            "all as documented"
        } else {
            "MISMATCHES"
        }
    );
    hcall::shutdown(code)
}

/// Every in-sandbox entry with bad arguments.
fn entries(t: &StubTable) -> bool {
    let nr = u64::from(crate::boot::nr_vcpus());
    let mem = crate::boot::info().mem_size;
    let code = crate::hostile::args::entries as *const () as u64;
    let good_rsp = crate::boot::info().direct_map_base + 0x10_0000;
    // SAFETY: each field is the entry with the signature named (ABI stub.rs).
    let (vcpu_start, vcpu_kick, load_root, tlb_flush, prefault, set_fa, set_cb): (
        Fn4,
        Fn1,
        Fn1,
        Fn2,
        Fn3,
        Fn1,
        Fn2,
    ) = unsafe {
        (
            entry(t.vcpu_start),
            entry(t.vcpu_kick),
            entry(t.load_root),
            entry(t.tlb_flush),
            entry(t.prefault),
            entry(t.set_fault_around),
            entry(t.set_callbacks),
        )
    };
    let ok = core::cell::Cell::new(true);
    let check = |what: &str, got: i64, want: i64| {
        ok.set(ok.get() & expect(what, got, eq(want), &alloc::format!("{want}")));
    };
    let _irq = IrqGuard::new();
    // vcpu_start
    check(
        "vcpu_start(id=nr_vcpus)",
        vcpu_start(nr, code, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(id=64)",
        vcpu_start(64, code, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(id=2^32)",
        vcpu_start(1 << 32, code, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(id=u64::MAX)",
        vcpu_start(u64::MAX, code, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(id=0=self, boot vCPU)",
        vcpu_start(0, code, good_rsp, 0),
        BUSY,
    );
    if nr > 1 {
        check(
            "vcpu_start(id=1, already online)",
            vcpu_start(1, code, good_rsp, 0),
            BUSY,
        );
    }
    let last = nr - 1;
    check("vcpu_start(rip=0)", vcpu_start(last, 0, good_rsp, 0), INVAL);
    check(
        "vcpu_start(rip=stub code)",
        vcpu_start(last, t.null, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(rip=WINDOW_END)",
        vcpu_start(last, WINDOW_END, good_rsp, 0),
        INVAL,
    );
    check(
        "vcpu_start(rsp=WINDOW_BASE+4)",
        vcpu_start(last, code, WINDOW_BASE + 4, 0),
        INVAL,
    );
    check("vcpu_start(rsp=0)", vcpu_start(last, code, 0, 0), INVAL);
    check(
        "vcpu_start(rsp=u64::MAX)",
        vcpu_start(last, code, u64::MAX, 0),
        INVAL,
    );
    check(
        "vcpu_start(rsp=WINDOW_END+8)",
        vcpu_start(last, code, WINDOW_END + 8, 0),
        INVAL,
    );
    // vcpu_kick
    check("vcpu_kick(nr_vcpus)", vcpu_kick(nr), INVAL);
    check("vcpu_kick(2^32)", vcpu_kick(1 << 32), INVAL);
    check("vcpu_kick(u64::MAX)", vcpu_kick(u64::MAX), INVAL);
    // load_root
    check("load_root(mem_size)", load_root(mem), BADADDR);
    check(
        "load_root(mem_size-4096+8) (unaligned)",
        load_root(mem - PAGE_SIZE + 8),
        BADADDR,
    );
    check("load_root(1)", load_root(1), BADADDR);
    check("load_root(!0xfff)", load_root(!0xfff), BADADDR);
    check("load_root(2^52)", load_root(1 << 52), BADADDR);
    // tlb_flush: ignores what lies outside the window, whatever wraps.
    check(
        "tlb_flush(u64::MAX-10, 100)",
        tlb_flush(u64::MAX - 10, 100),
        0,
    );
    check(
        "tlb_flush(WINDOW_END-4096, u64::MAX)",
        tlb_flush(WINDOW_END - 4096, u64::MAX),
        0,
    );
    check("tlb_flush(0, WINDOW_BASE)", tlb_flush(0, WINDOW_BASE), 0);
    check("tlb_flush(0, u64::MAX)", tlb_flush(0, u64::MAX), 0);
    // prefault
    check(
        "prefault(u64::MAX-4095, 8192)",
        prefault(u64::MAX - 4095, 8192, 1),
        BADADDR,
    );
    check(
        "prefault(WINDOW_END-4096, 8192)",
        prefault(WINDOW_END - 4096, 8192, 0),
        BADADDR,
    );
    check("prefault(0, 4096)", prefault(0, 4096, 0), BADADDR);
    check(
        "prefault(WINDOW_BASE, u64::MAX)",
        prefault(WINDOW_BASE, u64::MAX, 0),
        BADADDR,
    );
    check(
        "prefault(unmapped GUEST_FREE_BASE+3TiB)",
        prefault(
            pvmux_hypercalls::layout::GUEST_FREE_BASE + (3 << 40),
            4096,
            0,
        ),
        BADADDR,
    );
    check("prefault(WINDOW_BASE, 0)", prefault(WINDOW_BASE, 0, 0), 0);
    // set_fault_around
    for bad in [0u64, 3, 513, 1024, 1 << 32, u64::MAX] {
        check(
            &alloc::format!("set_fault_around({bad:#x})"),
            set_fa(bad),
            INVAL,
        );
    }
    let prev = set_fa(16);
    ok.set(
        ok.get()
            & expect(
                "set_fault_around(16)",
                prev,
                |g| (1..=512).contains(&g),
                "previous value",
            ),
    );
    set_fa(prev as u64);
    // set_callbacks: refused, and the old entries stay registered (checked by an int3 below).
    check("set_callbacks(stub code, 0)", set_cb(t.null, 0), INVAL);
    check(
        "set_callbacks(0x1000, 0x1000)",
        set_cb(0x1000, 0x1000),
        INVAL,
    );
    check("set_callbacks(WINDOW_END, 0)", set_cb(WINDOW_END, 0), INVAL);
    check(
        "set_callbacks(code, CTL_BASE)",
        set_cb(code, pvmux_hypercalls::layout::CTL_BASE),
        INVAL,
    );
    // mem_write: a source outside the window, or that the shadow does not map, and a
    // destination past guest memory or whose end overflows are refused, and nothing is
    // written to the destination (a kernel heap buffer here).
    let mem_write: Fn3 = {
        // SAFETY: the entry with this signature (ABI stub.rs).
        unsafe { entry(t.mem_write) }
    };
    let src: alloc::vec::Vec<u8> = alloc::vec![0xa5; 2 * PAGE_SIZE as usize];
    // A mutable buffer whose address escapes to the stub: the host writes it behind the
    // compiler, which must then read it again.
    let mut dst: alloc::vec::Vec<u8> = alloc::vec![0; 2 * PAGE_SIZE as usize];
    let (s, d) = (src.as_ptr() as u64, dst.as_mut_ptr() as u64);
    let dgpa = crate::boot::virt_to_phys(d, 2 * PAGE_SIZE).unwrap_or(u64::MAX);
    let unmapped = pvmux_hypercalls::layout::GUEST_FREE_BASE + (3 << 40);
    for (what, args) in [
        ("mem_write(src in stub code)", [dgpa, t.null, 16]),
        (
            "mem_write(src across WINDOW_END)",
            [dgpa, WINDOW_END - 8, 16],
        ),
        ("mem_write(src unmapped)", [dgpa, unmapped, PAGE_SIZE]),
        (
            "mem_write(dst past memory)",
            [mem - PAGE_SIZE, s, 2 * PAGE_SIZE],
        ),
        ("mem_write(dst + len overflows)", [u64::MAX - 8, s, 16]),
        ("mem_write(len = 2^63)", [dgpa, s, 1 << 63]),
    ] {
        check(what, mem_write(args[0], args[1], args[2]), BADADDR);
    }
    check(
        "mem_write leaves its destination alone when refused",
        i64::from(dst.iter().any(|&b| b != 0)),
        0,
    );
    check(
        "mem_write(heap buffer, 2 pages)",
        mem_write(dgpa, s, 2 * PAGE_SIZE),
        2 * PAGE_SIZE as i64,
    );
    check(
        "mem_write wrote what it said",
        i64::from(dst.iter().all(|&b| b == 0xa5)),
        1,
    );
    drop(_irq);
    let b0 = crate::trap::STATS
        .breakpoints
        .load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: int3 is delivered to our trap entry, which counts it and resumes after it.
    unsafe { core::arch::asm!("int3") };
    let b1 = crate::trap::STATS
        .breakpoints
        .load(core::sync::atomic::Ordering::Relaxed);
    ok.set(
        ok.get()
            & expect(
                "int3 after refused set_callbacks still reaches the kernel",
                (b1 - b0) as i64,
                eq(1),
                "1",
            ),
    );
    ok.get()
}

/// `hostile=extra-vcpus`: more vCPUs than configured (refused), and a raw thread `clone`
/// (trapped).
pub(crate) fn extra_vcpus() -> bool {
    let t = super::stub_table();
    // SAFETY: vcpu_start's ABI signature.
    let vcpu_start: Fn4 = unsafe { entry(t.vcpu_start) };
    let nr = u64::from(crate::boot::nr_vcpus());
    let code = extra_vcpus as *const () as u64;
    let rsp = crate::boot::info().direct_map_base + 0x10_0000;
    let mut ok = true;
    for id in nr..nr + 4 {
        ok &= expect(
            &alloc::format!("vcpu_start({id}) with {nr} vCPUs"),
            vcpu_start(id, code, rsp, 0),
            eq(INVAL),
            "InvalidArgument",
        );
    }
    // A raw thread clone from guest code is trapped.
    let _irq = IrqGuard::new();
    let n0 = crate::trap::STATS
        .syscalls
        .load(core::sync::atomic::Ordering::Relaxed);
    let ret = super::syscalls::raw6(56, [0x5_0f00, rsp, 0, 0, 0, 0]);
    let trapped = crate::trap::STATS
        .syscalls
        .load(core::sync::atomic::Ordering::Relaxed)
        == n0 + 1;
    drop(_irq);
    ok &= expect(
        "raw clone(CLONE_VM|CLONE_THREAD|...)",
        ret,
        |g| trapped && g == -38,
        "trapped, -ENOSYS",
    );
    ok
}

/// `hostile=panic-bad-address`: the `Panic` hypercall with a message outside guest memory.
pub(crate) fn panic_bad_address() -> bool {
    let mem = crate::boot::info().mem_size;
    println!("hostile: Panic hypercall with a message at gpa mem_size-16, len 4096");
    hcall::raw(PANIC, [mem - 16, 4096, 0, 0, 0]);
    println!("hostile: the host returned from Panic");
    hcall::shutdown(super::EXIT_NOT_CONTAINED)
}

/// `hostile=iret-*`: `iret` with a frame outside the window, unaligned, or with `rip`/`rsp`
/// outside the window. Each ends the tenant with an ABI-violation record.
pub(crate) fn iret(case: &str) -> bool {
    let t = super::stub_table();
    let here = iret as *const () as u64;
    let stack: &'static mut [u64; 64] = alloc::boxed::Box::leak(alloc::boxed::Box::new([0; 64]));
    let frame_va = stack.as_ptr() as u64 + 64;
    // A plausible frame: rip/rsp valid unless the case breaks them.
    let f = frame_va as *mut u64;
    let (frame, rip, rsp) = match case {
        "iret-bad-frame" => (0x1000, here, frame_va),
        "iret-unaligned-frame" => (frame_va + 4, here, frame_va),
        "iret-bad-rip" => (frame_va, 0x4000, frame_va + 0x100),
        _ => (frame_va, here, WINDOW_BASE + 8),
    };
    // SAFETY: the frame lies in a leaked, mapped buffer of 64 words (168-byte frame fits).
    unsafe {
        f.add(18).write(rip);
        f.add(19).write(0x202);
        f.add(20).write(rsp);
    }
    println!("hostile: {case}: iret(frame {frame:#x}) with rip {rip:#x}, rsp {rsp:#x}");
    crate::stub::irq_disable();
    // SAFETY: iret's ABI signature; it does not return.
    let iret_fn: extern "sysv64" fn(u64) -> ! = unsafe { core::mem::transmute(t.iret) };
    iret_fn(frame)
}
