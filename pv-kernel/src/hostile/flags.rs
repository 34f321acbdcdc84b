//! `hostile=ac-entries`: a kernel running with the alignment-check flag (AC) set calls every
//! stub entry. The entries run on the caller's flags; stub code must not fault on its own
//! unaligned accesses (which would end the tenant with a stub fault), and every entry must
//! give the caller its flags back (AC still set on return). Last, with AC set, `iret` to a
//! context whose stack pointer is not 8-aligned (legal on x86): the stub writes the return
//! address below that stack, an unaligned store.

use core::arch::asm;
use core::mem::offset_of;

use pvmux_hypercalls::TrapFrame;

use crate::irq::IrqGuard;
use crate::{hcall, println, stub};

/// The `rflags` alignment-check flag.
const RFLAGS_AC: u64 = 1 << 18;
/// The virtual interrupt flag in a [`TrapFrame`]'s `rflags`.
const RFLAGS_VIF: u64 = pvmux_hypercalls::frame::RFLAGS_IF;

fn rflags() -> u64 {
    let f: u64;
    // SAFETY: pushes and pops the flags register, nothing else.
    unsafe { asm!("pushfq", "pop {}", out(reg) f) };
    f
}

/// Sets or clears AC. With AC set, this kernel's own code must make no unaligned access
/// until it is cleared again: the region below only calls entries and stores aligned words.
fn set_ac(on: bool) {
    // SAFETY: changes only the AC bit of the flags (allowed in user mode).
    unsafe {
        if on {
            asm!("pushfq", "or dword ptr [rsp], {ac}", "popfq", ac = const RFLAGS_AC as u32);
        } else {
            asm!("pushfq", "and dword ptr [rsp], {keep}", "popfq", keep = const !RFLAGS_AC as u32);
        }
    }
}

/// One entry's result and whether AC was still set when it returned.
#[derive(Clone, Copy, Default)]
struct Call {
    ret: i64,
    ac_kept: bool,
}

/// Runs `f` (with AC set) and records its result.
#[inline(always)]
fn call(f: impl FnOnce() -> i64) -> Call {
    let ret = f();
    Call {
        ret,
        ac_kept: rflags() & RFLAGS_AC != 0,
    }
}

/// Stub entry `addr` (one taking no argument) as a function.
fn entry0(addr: u64) -> extern "sysv64" fn() -> i64 {
    // SAFETY: the stub table's entries taking no argument (`tlb_flush_all`, `vcpu_id`,
    // `vcpu_self`, `irq_enable`, `irq_disable`) are System V functions; their results fit
    // an `i64` (`irq_enable` leaves `rax` unspecified, and its result is not used).
    unsafe { core::mem::transmute::<u64, extern "sysv64" fn() -> i64>(addr) }
}

/// A word of this kernel's data (its page is flushed and prefaulted).
static PROBE: u64 = 0;

/// The names of the calls below, in order.
const NAMES: [&str; 15] = [
    "clock_ns",
    "vcpu_id",
    "vcpu_self",
    "hypercall Nop",
    "vcpu_kick self",
    "irq_enable with a pending event",
    "irq_disable",
    "halt with a pending event",
    "timer_arm",
    "set_fault_around",
    "set_fault_around (restore)",
    "tlb_flush",
    "prefault",
    "tlb_flush_all",
    "user_wake",
];

pub(crate) fn ac_entries() -> bool {
    // Events stay off except inside `irq_enable`, whose event the kernel's handler takes
    // with AC clear (stub delivery), returning to this frame with AC set again by `iret`.
    let _irq = IrqGuard::new();
    let id = stub::vcpu_id();
    // A page of this kernel's data to flush and prefault (it is mapped, so refilled).
    let page = (&raw const PROBE as u64) & !0xfff;
    let table = super::stub_table();
    // The kernel reads its vCPU and the clock and flips the interrupt flag itself (FS block,
    // ABI §6): the entries are called here through the table.
    let flush_all = entry0(table.tlb_flush_all);
    let (vcpu_id, vcpu_self) = (entry0(table.vcpu_id), entry0(table.vcpu_self));
    let (irq_enable, irq_disable) = (entry0(table.irq_enable), entry0(table.irq_disable));
    let mut r = [Call::default(); NAMES.len()];
    set_ac(true);
    let ac_set = rflags() & RFLAGS_AC != 0;
    r[0] = call(|| stub::clock_ns() as i64);
    r[1] = call(|| vcpu_id());
    r[2] = call(|| vcpu_self());
    r[3] = call(|| hcall::nop(0));
    r[4] = call(|| stub::vcpu_kick(id));
    r[5] = call(|| {
        irq_enable();
        0
    });
    r[6] = call(|| irq_disable());
    r[7] = call(|| {
        stub::vcpu_kick(id);
        stub::halt();
        0
    });
    r[8] = call(|| stub::timer_arm(stub::clock_ns() + 1_000_000));
    r[9] = call(|| stub::set_fault_around(1));
    let before = r[9].ret.max(1) as u64;
    r[10] = call(|| stub::set_fault_around(before));
    r[11] = call(|| stub::tlb_flush(page, 4096));
    r[12] = call(|| stub::prefault(page, 4096, false));
    r[13] = call(|| flush_all());
    r[14] = call(|| stub::user_wake(0));
    set_ac(false);
    let iret_entry = super::stub_table().iret;
    let (landed, flags_after) = iret_to_unaligned_stack_with_ac(iret_entry);
    println!("hostile: AC set before the calls: {ac_set}");
    let mut ok = ac_set;
    for (name, c) in NAMES.iter().zip(r) {
        let good = c.ac_kept && c.ret >= 0;
        println!(
            "hostile: {name} with AC set -> {} ({}, AC {} on return)",
            c.ret,
            if good { "ok" } else { "MISMATCH" },
            if c.ac_kept { "still set" } else { "CLEARED" }
        );
        ok &= good;
    }
    let good = landed == 1 && flags_after & RFLAGS_AC == 0;
    println!(
        "hostile: iret with AC set to an unaligned stack -> landed {landed}, AC {} ({})",
        if flags_after & RFLAGS_AC != 0 {
            "set"
        } else {
            "clear"
        },
        if good { "ok" } else { "MISMATCH" }
    );
    ok && good
}

/// With AC set, `iret`s (through the stub entry `iret`) to the label below on a stack
/// pointer 4 bytes off 8-byte alignment (516 bytes below the current one) with the caller's
/// flags minus AC and events off; the landing code restores the stack. Returns the `rax` the
/// frame resumed with (1) and the flags after landing.
fn iret_to_unaligned_stack_with_ac(iret: u64) -> (u64, u64) {
    let mut frame = [0u64; core::mem::size_of::<TrapFrame>() / 8];
    let landed: u64;
    // SAFETY: builds a complete frame for the current context: rbx and rbp as they are, rsp
    // restored at the landing label from r12, rip the label, rflags without AC and with the
    // virtual IF clear (events stay off, as in the caller's IrqGuard); every other register
    // is declared clobbered (the frame gives them 0, rax 1). The unaligned stack is only
    // used by the stub's restore sequence, 516 bytes below this stack's pointer (inside it).
    unsafe {
        asm!(
            "mov [rsi + {o_rbx}], rbx",
            "mov [rsi + {o_rbp}], rbp",
            "mov [rsi + {o_r12}], rsp",
            "lea rax, [rip + 2f]",
            "mov [rsi + {o_rip}], rax",
            "lea rax, [rsp - 516]",
            "mov [rsi + {o_rsp}], rax",
            "pushfq",
            "pop rax",
            "and eax, {keep}",
            "mov [rsi + {o_rflags}], rax",
            "mov qword ptr [rsi + {o_rax}], 1",
            "pushfq",
            "or dword ptr [rsp], {ac}",
            "popfq",
            "mov rdi, rsi",
            "call rdx",
            "ud2",
            "2:",
            "mov rsp, r12",
            o_rbx = const offset_of!(TrapFrame, rbx),
            o_rbp = const offset_of!(TrapFrame, rbp),
            o_r12 = const offset_of!(TrapFrame, r12),
            o_rip = const offset_of!(TrapFrame, rip),
            o_rsp = const offset_of!(TrapFrame, rsp),
            o_rflags = const offset_of!(TrapFrame, rflags),
            o_rax = const offset_of!(TrapFrame, rax),
            keep = const !(RFLAGS_AC | RFLAGS_VIF) as u32,
            ac = const RFLAGS_AC as u32,
            in("rsi") frame.as_mut_ptr(),
            in("rdx") iret,
            out("rax") landed,
            out("rcx") _,
            out("rdi") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        );
    }
    (landed, rflags())
}
