//! The boot-argument commands other than the self-tests: `exit=N`, running init, the
//! filesystem commands in [`fs`], and (test kernel only) the crash commands in [`crash`].

#[cfg(feature = "diagnostics")]
pub(crate) mod crash;
pub(crate) mod fs;

use crate::{hcall, println};

/// `exit=N`.
pub(crate) fn exit(code: u64) -> ! {
    println!("pvmux-kernel: exiting with {code}");
    crate::fs::disk::unmount_all();
    hcall::shutdown(code)
}

/// The init program (`args.argv()`, not empty), with the environment of `args.env()` (the
/// kernel's default when none is given) started in `args.workdir()` (default `/`): runs it as
/// init and shuts down with its status: the exit code, or 128 + the signal that killed it
/// (the shell convention), with a shutdown record saying how it was killed. A program that
/// cannot be started ends the tenant with 127 (not found) or 126 (not executable, or a
/// working directory that does not exist).
pub(crate) fn run_init(args: &pvmux_hypercalls::bootargs::BootArgs<'_>) -> ! {
    let argv: alloc::vec::Vec<alloc::vec::Vec<u8>> = args.argv().map(<[u8]>::to_vec).collect();
    let env: alloc::vec::Vec<alloc::vec::Vec<u8>> = args.env().map(<[u8]>::to_vec).collect();
    let exe = argv.first().cloned().unwrap_or_default();
    let name = alloc::string::String::from_utf8_lossy(&exe).into_owned();
    let cwd = match crate::fs::workdir(args.workdir()) {
        Ok(ino) => ino,
        Err((dir, e)) => {
            let dir = alloc::string::String::from_utf8_lossy(dir);
            let msg = alloc::format!(
                "pvmux: workdir \"{}\" does not exist in the guest: {}\n",
                dir.escape_debug(),
                e.message()
            );
            crate::hcall::console_write_stream(
                pvmux_hypercalls::hypercall::stream::STDERR,
                msg.as_bytes(),
            );
            crate::println!("pvmux-kernel: cannot enter workdir {dir:?}: {e}");
            hcall::shutdown(126)
        }
    };
    let code = match crate::linux::task::run_init(argv, (!env.is_empty()).then_some(env), cwd) {
        Ok(status) => init_ended(status, &exe),
        Err(e) => {
            // The program's own stderr (visible without --log debug), and the kernel log.
            let msg = match crate::linux::exec::missing_interpreter(
                cwd,
                &crate::linux::task::resolve_init(&exe),
            ) {
                Some(interp) if e == crate::fs::Errno::ENOENT => alloc::format!(
                    "pvmux: cannot run {name}: its program interpreter {} was not found\n",
                    alloc::string::String::from_utf8_lossy(&interp)
                ),
                _ => alloc::format!("pvmux: cannot run {name}: {}\n", e.message()),
            };
            crate::hcall::console_write_stream(
                pvmux_hypercalls::hypercall::stream::STDERR,
                msg.as_bytes(),
            );
            crate::println!("pvmux-kernel: cannot run {name}: {e}");
            match e {
                crate::fs::Errno::ENOENT | crate::fs::Errno::ENOTDIR => 127,
                _ => 126,
            }
        }
    };
    shut_down(code, None)
}

/// Init (program `exe`) ended with wait status `status` — started by [`run_init`], or
/// adopted from a hand-over record (`linux::handover::adopt`): shuts down with its status,
/// the exit code, or 128 + the signal that killed it (the shell convention), with a
/// shutdown record saying how it was killed.
pub(crate) fn init_ended(status: i32, exe: &[u8]) -> ! {
    // Killed: the host learns how (the kernel log is hidden unless --log debug).
    let record = crate::linux::death::shutdown_record(status, exe).map(alloc::boxed::Box::new);
    let code = if status & 0x7f == 0 {
        ((status >> 8) & 0xff) as u64
    } else {
        128 + (status & 0x7f) as u64
    };
    shut_down(code, record)
}

/// The end of a tenant whose init ran: the unknown system calls' report if asked, the
/// disks unmounted, and the shutdown with `code` (and `record`).
fn shut_down(code: u64, record: Option<alloc::boxed::Box<pvmux_hypercalls::ShutdownRecord>>) -> ! {
    if crate::boot::args().options.syscall_report {
        crate::linux::dispatch::report_unknown();
    }
    // The disks are written back and left clean, as a shutdown unmounts them.
    crate::fs::disk::unmount_all();
    match record {
        Some(r) => hcall::shutdown_with_record(code, &r),
        None => hcall::shutdown(code),
    }
}
