//! The pvmux guest kernel: a no_std paravirtual kernel written only against the pvmux ABI
//! (`pvmux-hypercalls`). It runs in ring 3 inside a sandbox process; privileged operations go
//! through the stub's entry table (`stub`) and host hypercalls (`hcall`).
//!
//! Boot (vCPU 0, [`kernel_entry`]): check the ABI structures, console, frame allocator, page
//! tables, heap, trap/event entries, per-vCPU scheduler state, start the other vCPUs, then run
//! the commands of the boot arguments (decoded once by `boot`) in the `main` kernel thread
//! while vCPU 0 idles.
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
mod commands;
mod console;
mod dump;
mod fs;
mod hcall;
#[cfg(feature = "diagnostics")]
mod hostile;
mod irq;
mod kept_fp;
mod linux;
#[cfg(test)]
mod linux_abi_tests;
mod mem;
mod mm;
pub mod panic;
mod sched;
#[cfg(feature = "diagnostics")]
mod selftest;
mod simd;
mod smp;
mod stub;
mod suspend;
mod time;
mod trap;

use pvmux_hypercalls::bootargs::Command;
use pvmux_hypercalls::{BootInfo, KernelAbiHeader, StubTable, ABI_MAGIC, ABI_VERSION};

/// Offset of `BootInfo::flags`, for the image's `_start` (which jumps to
/// `pvmux_resume_entry` when a snapshot resumes).
pub const BOOT_FLAGS_OFFSET: usize = core::mem::offset_of!(BootInfo, flags);
/// `boot_flags::RESUME`, for the image's `_start`.
pub const BOOT_FLAG_RESUME: u32 = pvmux_hypercalls::boot::boot_flags::RESUME;

/// The ABI declaration the domain builder checks before loading us.
#[used]
#[unsafe(link_section = ".pvmux_abi")]
static ABI: KernelAbiHeader = KernelAbiHeader::CURRENT;

/// The hand-over note the host reads before `pvmux upgrade` (docs/ABI.md §handover): the
/// record versions this kernel writes and adopts, and its release.
#[used]
#[unsafe(link_section = ".pvmux_handover")]
static HANDOVER: pvmux_hypercalls::handover::HandoverNote =
    pvmux_hypercalls::handover::HandoverNote::new(linux::handover::RELEASE);

/// The hand-over note as this image carries it (read through an opaque reference, so an
/// image whose note was rewritten after the build reports what the note says).
pub(crate) fn handover_note() -> &'static pvmux_hypercalls::handover::HandoverNote {
    core::hint::black_box(&HANDOVER)
}

/// Exit code: the boot information page is missing, of another ABI version, or inconsistent.
const EXIT_BAD_BOOT_INFO: u64 = 120;
/// Exit code: the stub table has another magic or ABI version.
const EXIT_BAD_STUB_TABLE: u64 = 121;
/// Exit code: the stub table has too few (or null) entries.
const EXIT_STUB_TOO_OLD: u64 = 122;
/// Exit code: the boot arguments ask for a test-kernel command this kernel was built without.
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
                boot::BootError::Args(_) => b"pvmux-kernel: malformed boot arguments\n",
            };
            early_fail(bi, table, msg, EXIT_BAD_BOOT_INFO)
        }
    };
    let quiet = boot::args().options.quiet;
    if !quiet {
        println!(
            "pvmux-kernel: ABI v{}, {} vCPUs, {} MiB, boot arguments \"{}\"",
            ABI_VERSION,
            bi.nr_vcpus,
            bi.mem_size >> 20,
            boot::args()
        );
    }
    mm::frame::init();
    mm::paging::init();
    let heap = mm::heap::init();
    let (used, total) = mm::frame::stats();
    if !quiet {
        println!(
            "pvmux-kernel: heap {} KiB, {} of {} frames in use, kernel at {:#x} (phys {:#x})",
            heap >> 10,
            used,
            total,
            bi.kernel_virt_base,
            bi.kernel_phys_base
        );
    }
    trap::init();
    smp::cpu_init();
    smp::start_aps();
    if let Err(e) = sched::spawn("main", None, kmain) {
        panic!("cannot create the main thread: {e:?}");
    }
    sched::idle_loop()
}

/// The `main` kernel thread: fills the filesystem from the initramfs, then runs the commands
/// of the boot arguments in order, then the init program if there is one.
fn kmain() {
    let args = boot::args();
    // File contents live in the user pool (the page cache): take it over first.
    linux::pool::init();
    // Booted to adopt a hand-over record (`pvmux upgrade`): the record checked, and its
    // frames adopted by the pool before anything takes one (a check ends here).
    // (`adopt-refuse-switch` refuses only a real adoption: the host's fallback is tested.)
    let adopting = args.adopt().map(|a| {
        let switch = a.flags & pvmux_hypercalls::handover::adopt_flags::CHECK == 0;
        let refuse = args.adopt_refuse() || (switch && args.adopt_refuse_switch());
        linux::handover::adopt::begin(&a, refuse)
    });
    // A tenant that starts below its maximum (`--mem-max`): its balloon, before anything
    // takes pool frames.
    linux::balloon::at_boot();
    fs::init();
    fs::volume::mount_all();
    fs::disk::attach_at_boot();
    console::boot_done();
    // The adopted processes instead of the commands and a new init: rebuilt, running, and
    // init waited for as at a boot.
    if let Some(a) = adopting {
        // The one command an adopting test kernel takes from its words: its processes'
        // exits wait too (tests of the next hand-over's freeze).
        #[cfg(feature = "diagnostics")]
        for c in args.commands() {
            if let Command::SlowExit(ms) = c {
                linux::task::slow_exits(ms);
            }
        }
        // `/dev` and `/proc`, which a first process's console table would create.
        linux::files::init();
        linux::handover::fs_booted();
        let exe = linux::handover::adopt::finish(a);
        let status = linux::task::serve_until_init_ends();
        let exe = args.argv().next().map_or(exe, <[u8]>::to_vec);
        commands::init_ended(status, &exe)
    }
    for cmd in args.commands() {
        match cmd {
            Command::Exit(code) => commands::exit(code),
            Command::Sleep(ms) => time::sleep_ms(ms),
            Command::Ls(path) => commands::fs::ls(path),
            Command::Cat(path) => commands::fs::cat(path),
            // Settings of the init program, read by `commands::run_init`.
            Command::Env(_)
            | Command::Workdir(_)
            | Command::Volume(_)
            | Command::Rlimit { .. }
            | Command::User { .. }
            | Command::Groups(_)
            | Command::Hostname(_)
            | Command::TaskLimit(_)
            | Command::Caps(_)
            | Command::UserIsolationNone
            | Command::NoPatch
            | Command::NoFileWindows
            | Command::Channel(_)
            | Command::Adopt(_)
            | Command::AdoptRefuse
            | Command::AdoptRefuseSwitch => {}
            #[cfg(feature = "diagnostics")]
            Command::Bench(list) => bench::run(list, args.options.bench_quick),
            #[cfg(feature = "diagnostics")]
            Command::Selftest => selftest::run(),
            #[cfg(feature = "diagnostics")]
            Command::Panic => commands::crash::requested_panic(),
            #[cfg(feature = "diagnostics")]
            Command::Syscall => commands::crash::raw_syscalls(),
            #[cfg(feature = "diagnostics")]
            Command::CrashDoubleFault => commands::crash::double_fault(),
            #[cfg(feature = "diagnostics")]
            Command::CrashStubSyscall => commands::crash::stub_syscall(),
            #[cfg(feature = "diagnostics")]
            Command::Hostile(case) => hostile::run(case),
            #[cfg(feature = "diagnostics")]
            Command::FsSelftest => fs::selftest::run(),
            #[cfg(feature = "diagnostics")]
            Command::SlowExit(ms) => linux::task::slow_exits(ms),
            // The test kernel's commands (and any the ABI adds later).
            _ => {
                println!(
                    "pvmux-kernel: \"{cmd}\" is a command of the test kernel (built with the \
                     `diagnostics` feature); this kernel does not have it"
                );
                hcall::shutdown(EXIT_NO_DIAGNOSTICS)
            }
        }
    }
    if args.argv().next().is_some() {
        commands::run_init(args);
    }
    println!("pvmux-kernel: nothing left to do, shutting down");
    fs::disk::unmount_all();
    hcall::shutdown(0)
}
