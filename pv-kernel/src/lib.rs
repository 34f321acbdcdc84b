//! The pvmux guest kernel: a no_std paravirtual kernel written only against the pvmux ABI
//! (`pvmux-hypercalls`). It runs in ring 3 inside a sandbox process; privileged operations go
//! through the stub's entry table (`stub`) and host hypercalls (`hcall`).
//!
//! Boot (vCPU 0, [`kernel_entry`]): check the ABI structures, console, frame allocator, page
//! tables, heap, trap/event entries, per-vCPU scheduler state, start the other vCPUs, then run
//! the command line in the `main` kernel thread while vCPU 0 idles.
//!
//! This crate is the whole kernel as a library, so that `cargo test` runs its pure parts on the
//! host (`cfg(test)` links `std`). The bootable image is the tiny `pvmux-kernel-image` crate in
//! `image/` (its own workspace, built only by the nested build in `tools/build.rs`): it holds
//! the entry point `_start` and the panic handler, and calls [`kernel_entry`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
#[cfg(feature = "diagnostics")]
mod bench;
mod boot;
mod cmdline;
mod commands;
mod console;
mod fs;
mod hcall;
#[cfg(feature = "diagnostics")]
mod hostile;
mod irq;
mod linux;
mod mem;
mod mm;
pub mod panic;
mod sched;
#[cfg(feature = "diagnostics")]
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
/// Exit code: the command line asks for a test-kernel command this kernel was built without.
#[cfg(not(feature = "diagnostics"))]
const EXIT_NO_DIAGNOSTICS: u64 = 123;

/// Best-effort message and shutdown before the ABI structures were accepted: the raw table
/// entry (through [`hcall::before_install`]) and the raw boot information to find the
/// message's guest-physical address.
fn early_fail(bi: &BootInfo, table: &StubTable, msg: &'static [u8], code: u64) -> ! {
    let va = msg.as_ptr() as u64;
    let gpa = va
        .checked_sub(bi.kernel_virt_base)
        .and_then(|off| off.checked_add(bi.kernel_phys_base));
    hcall::before_install(table.hypercall, gpa.map(|g| (g, msg.len() as u64)), code)
}

/// Rust entry on vCPU 0, called by the image's `_start` with `rdi` = &BootInfo and
/// `rsi` = &StubTable (ABI `image.rs`), events disabled.
///
/// # Safety
///
/// Only the image's `_start` may call this, once, with the two pointers the domain builder
/// passed at the guest entry point.
pub unsafe extern "sysv64" fn kernel_entry(bi: *const BootInfo, table: *const StubTable) -> ! {
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
    #[cfg(feature = "diagnostics")]
    let bench_quick = cmdline::parse(boot::cmdline()).any(|c| c == Command::BenchQuick);
    fs::init();
    for cmd in cmdline::parse(boot::cmdline()) {
        match cmd {
            Command::Exit(code) => commands::exit(code),
            Command::Sleep(ms) => time::sleep_ms(ms),
            Command::Ls(path) => commands::fs::ls(path),
            Command::Cat(path) => commands::fs::cat(path),
            Command::Init(words) => commands::run_init(words),
            Command::BenchQuick | Command::HostileParam | Command::Option => {}
            Command::Unknown(word) => {
                println!("pvmux-kernel: warning: ignoring unknown command-line word \"{word}\"")
            }
            #[cfg(feature = "diagnostics")]
            Command::Bench(list) => bench::run(list, bench_quick),
            #[cfg(feature = "diagnostics")]
            Command::Selftest => selftest::run(),
            #[cfg(feature = "diagnostics")]
            Command::Panic => commands::crash::requested_panic(),
            #[cfg(feature = "diagnostics")]
            Command::Syscall => commands::crash::raw_syscalls(),
            #[cfg(feature = "diagnostics")]
            Command::DoubleFault => commands::crash::double_fault(),
            #[cfg(feature = "diagnostics")]
            Command::StubSyscall => commands::crash::stub_syscall(),
            #[cfg(feature = "diagnostics")]
            Command::Hostile(case) => hostile::run(case),
            #[cfg(feature = "diagnostics")]
            Command::FsSelftest => fs::selftest::run(),
            #[cfg(not(feature = "diagnostics"))]
            Command::Bench(_)
            | Command::Selftest
            | Command::Panic
            | Command::Syscall
            | Command::DoubleFault
            | Command::StubSyscall
            | Command::Hostile(_)
            | Command::FsSelftest => {
                println!(
                    "pvmux-kernel: {cmd:?} is a command of the test kernel (built with the \
                     `diagnostics` feature); this kernel does not have it"
                );
                hcall::shutdown(EXIT_NO_DIAGNOSTICS)
            }
        }
    }
    println!("pvmux-kernel: nothing left to do, shutting down");
    hcall::shutdown(0)
}
