//! The pvmux guest kernel: a no_std paravirtual kernel written only against the pvmux ABI
//! (`pvmux-hypercalls`). It runs in ring 3 inside a sandbox process; privileged operations go
//! through the stub's entry table ([`stub`]) and host hypercalls ([`hcall`]).
//!
//! Boot (vCPU 0, [`kernel_entry`]): check the ABI structures, console, frame allocator, page
//! tables, heap, trap/event entries, per-vCPU scheduler state, start the other vCPUs, then run
//! the command line in the `main` kernel thread while vCPU 0 idles.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod bench;
mod boot;
mod cmdline;
mod commands;
mod console;
mod fs;
mod hcall;
mod hostile;
mod irq;
mod linux;
mod mem;
mod mm;
mod panic;
mod sched;
mod selftest;
mod smp;
mod stub;
mod time;
mod trap;

use pvmux_hypercalls::{BootInfo, KernelAbiHeader, StubTable, ABI_MAGIC, ABI_VERSION};

use cmdline::Command;

/// The ABI declaration the domain builder checks before loading us.
#[used]
#[unsafe(link_section = ".pvmux_abi")]
static ABI: KernelAbiHeader = KernelAbiHeader::CURRENT;

/// Exit code: the boot information page is missing, of another ABI version, or inconsistent.
const EXIT_BAD_BOOT_INFO: u64 = 120;
/// Exit code: the stub table has another magic or ABI version.
const EXIT_BAD_STUB_TABLE: u64 = 121;
/// Exit code: the stub table has too few (or null) entries.
const EXIT_STUB_TOO_OLD: u64 = 122;

core::arch::global_asm!(
    ".pushsection .text._start, \"ax\", @progbits",
    ".globl _start",
    ".p2align 4",
    // rdi = &BootInfo, rsi = &StubTable, rsp ≡ 8 (mod 16), events disabled.
    "_start:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {entry}",
    "    ud2",
    ".popsection",
    entry = sym kernel_entry,
);

/// Best-effort message and shutdown before the ABI structures were accepted: uses the raw
/// table entry and the raw boot information to find the message's guest-physical address.
fn early_fail(bi: &BootInfo, table: &StubTable, msg: &'static [u8], code: u64) -> ! {
    if table.hypercall != 0 {
        // SAFETY: best effort on a table we could not validate (the caller tried everything
        // else first): the ABI places `hypercall` at offset 16 in every version.
        let hc = unsafe {
            core::mem::transmute::<u64, extern "sysv64" fn(u64, u64, u64, u64, u64, u64) -> i64>(
                table.hypercall,
            )
        };
        let va = msg.as_ptr() as u64;
        if va >= bi.kernel_virt_base {
            let gpa = va - bi.kernel_virt_base + bi.kernel_phys_base;
            let nr = pvmux_hypercalls::Hypercall::ConsoleWrite as u64;
            hc(nr, gpa, msg.len() as u64, 0, 0, 0);
        }
        hc(
            pvmux_hypercalls::Hypercall::Shutdown as u64,
            code,
            0,
            0,
            0,
            0,
        );
    }
    arch::die()
}

/// Rust entry on vCPU 0.
extern "sysv64" fn kernel_entry(bi: *const BootInfo, table: *const StubTable) -> ! {
    // SAFETY: `ABI` is our own static; the volatile read keeps the section referenced.
    let abi = unsafe { core::ptr::read_volatile(&raw const ABI) };
    // SAFETY: the domain builder passes a mapped (read-only) boot information page and the
    // stub's table (ABI image.rs); both stay mapped. They are validated before any other use.
    let (bi, table) = unsafe { (&*bi, &*table) };
    if abi.magic != ABI_MAGIC || abi.abi_version != ABI_VERSION {
        early_fail(
            bi,
            table,
            b"pvmux-kernel: corrupt ABI header\n",
            EXIT_BAD_STUB_TABLE,
        );
    }
    match stub::install(table, bi.vcpu_shared_base) {
        Ok(()) => {}
        Err(stub::TableError::Version) => early_fail(
            bi,
            table,
            b"pvmux-kernel: stub table magic/ABI version mismatch\n",
            EXIT_BAD_STUB_TABLE,
        ),
        Err(stub::TableError::Entries) => early_fail(
            bi,
            table,
            b"pvmux-kernel: stub table has too few entries\n",
            EXIT_STUB_TOO_OLD,
        ),
    }
    let bi = match boot::install(bi) {
        Ok(bi) => bi,
        Err(e) => {
            let msg: &'static [u8] = match e {
                boot::BootError::Version => b"pvmux-kernel: boot info magic/ABI version mismatch\n",
                boot::BootError::Contents => b"pvmux-kernel: inconsistent boot info\n",
            };
            early_fail(bi, table, msg, EXIT_BAD_BOOT_INFO)
        }
    };
    println!(
        "pvmux-kernel: ABI v{}, {} vCPUs, {} MiB, cmdline \"{}\"",
        ABI_VERSION,
        bi.nr_vcpus,
        bi.mem_size >> 20,
        boot::cmdline()
    );
    mm::frame::init();
    mm::paging::init();
    let heap = mm::heap::init();
    let (used, total) = mm::frame::stats();
    println!(
        "pvmux-kernel: heap {} KiB, {} of {} frames in use, kernel at {:#x} (phys {:#x})",
        heap >> 10,
        used,
        total,
        bi.kernel_virt_base,
        bi.kernel_phys_base
    );
    trap::init();
    smp::cpu_init();
    smp::start_aps();
    if let Err(e) = sched::spawn("main", None, kmain) {
        panic!("cannot create the main thread: {e:?}");
    }
    sched::idle_loop()
}

/// The `main` kernel thread: fills the filesystem from the initramfs, then runs the command
/// line.
fn kmain() {
    let bench_quick = cmdline::parse(boot::cmdline()).any(|c| c == Command::BenchQuick);
    fs::init();
    for cmd in cmdline::parse(boot::cmdline()) {
        match cmd {
            Command::Bench(list) => bench::run(list, bench_quick),
            Command::BenchQuick => {}
            Command::Selftest => selftest::run(),
            Command::Exit(code) => commands::exit(code),
            Command::Sleep(ms) => time::sleep_ms(ms),
            Command::Panic => commands::requested_panic(),
            Command::Syscall => commands::raw_syscalls(),
            Command::DoubleFault => commands::double_fault(),
            Command::StubSyscall => commands::stub_syscall(),
            Command::Hostile(case) => hostile::run(case),
            Command::HostileParam => {}
            Command::FsSelftest => fs::selftest::run(),
            Command::Ls(path) => commands::fs::ls(path),
            Command::Cat(path) => commands::fs::cat(path),
            Command::Init(words) => commands::run_init(words),
            Command::Option => {}
            Command::Unknown(word) => {
                println!("pvmux-kernel: warning: ignoring unknown command-line word \"{word}\"")
            }
        }
    }
    println!("pvmux-kernel: nothing left to do, shutting down");
    hcall::shutdown(0)
}
