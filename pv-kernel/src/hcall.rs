//! Host hypercalls over the stub's doorbell: every hypercall the kernel makes goes through
//! this module (console, shutdown and its record, panic, wall clock, user sandboxes, console
//! input, the host share), so the numbers and argument conventions of ABI §12 live in one
//! place.
//!
//! Every call runs with events disabled: the doorbell is per vCPU, so a thread must neither be
//! preempted and migrated nor interrupted by an event handler that rings the same doorbell.
//! Buffers are passed by guest-physical address ([`crate::boot::virt_to_phys`]).

use pvmux_hypercalls::hypercall::{stream, CONSOLE_WRITE_MAX, PANIC_MSG_MAX};
use pvmux_hypercalls::{HcError, Hypercall};

use crate::irq::IrqGuard;

/// Makes host hypercall `nr` (number | flags) with five arguments, events disabled.
fn call_raw(nr: u64, [a0, a1, a2, a3, a4]: [u64; 5]) -> i64 {
    call_raw6(nr, [a0, a1, a2, a3, a4, 0])
}

/// Makes host hypercall `nr` (number | flags) with six arguments, events disabled.
fn call_raw6(nr: u64, a: [u64; 6]) -> i64 {
    let _irq = IrqGuard::new();
    crate::stub::hypercall(nr, a)
}

/// Makes host hypercall `nr` with five arguments.
fn call(nr: Hypercall, a: [u64; 5]) -> i64 {
    call_raw(nr as u64, a)
}

/// A hypercall's return value as a result: the value, or its error.
fn result(ret: i64) -> Result<u64, HcError> {
    // A host of this ABI version (checked at boot) returns only known codes.
    u64::try_from(ret).map_err(|_| HcError::from_ret(ret).unwrap_or(HcError::InvalidArgument))
}

/// Writes `bytes` to the kernel log (console stream 1, which the host routes: with standard
/// output by default, hidden or to standard error when a program runs).
pub(crate) fn console_write(bytes: &[u8]) {
    console_write_stream(stream::KERNEL_LOG, bytes);
}

/// Writes `bytes` to console `stream` ([`stream::STDOUT`], [`stream::KERNEL_LOG`] or
/// [`stream::STDERR`]). Bytes outside the image and direct map are dropped.
pub(crate) fn console_write_stream(stream: u64, bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        let va = chunk.as_ptr() as u64;
        if let Some(gpa) = crate::boot::virt_to_phys(va, chunk.len() as u64) {
            call(
                Hypercall::ConsoleWrite,
                [gpa, chunk.len() as u64, stream, 0, 0],
            );
        }
    }
}

/// `ConsoleRead`: up to `len` bytes of console input into guest-physical `gpa`. `Ok(0)` at
/// end of input, `Err(Busy)` when nothing is buffered yet.
pub(crate) fn console_read(gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ConsoleRead, [gpa, len, 0, 0, 0]))
}

/// `SignalTake`: the signals the host sent to init since the last call (bit `n - 1`: signal
/// `n`), taken.
pub(crate) fn signal_take() -> u64 {
    result(call(Hypercall::SignalTake, [0; 5])).unwrap_or(0)
}

/// `ConsoleWinsize`: the console's (rows, columns) as the host last set them; `None` if it
/// never did (or answered nonsense: a zero dimension, bits above 32).
pub(crate) fn console_winsize() -> Option<(u16, u16)> {
    let v = result(call(Hypercall::ConsoleWinsize, [0; 5])).ok()?;
    let v = u32::try_from(v).ok()?;
    let (rows, cols) = ((v >> 16) as u16, v as u16);
    (rows != 0 && cols != 0).then_some((rows, cols))
}

/// `TaskLimitTake`: the task limit the host set since the last call (0: none,
/// [`pvmux_hypercalls::resources::TASK_LIMIT_NONE`]: the kernel's ceiling only), taken.
pub(crate) fn task_limit_take() -> u32 {
    result(call(Hypercall::TaskLimitTake, [0; 5]))
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// `StatsReport`: the guest's figures for the host.
pub(crate) fn stats_report(stats: &pvmux_hypercalls::resources::GuestStats) {
    let va = stats as *const _ as u64;
    let len = core::mem::size_of_val(stats) as u64;
    if let Some(gpa) = crate::boot::virt_to_phys(va, len) {
        let _ = call(Hypercall::StatsReport, [gpa, 0, 0, 0, 0]);
    }
}

/// `HandoverTake`: the hand-over record version the host asks for (0: none).
pub(crate) fn handover_take() -> Result<u64, HcError> {
    result(call(Hypercall::HandoverTake, [0; 5]))
}

/// `HandoverRecord`: the record, `len` bytes at `gpa`.
pub(crate) fn handover_record(gpa: u64, len: u64) {
    let _ = result(call(Hypercall::HandoverRecord, [gpa, len, 0, 0, 0]));
}

/// `HandoverRecord` with no record: why the guest could not write one.
pub(crate) fn handover_record_failed(e: HcError) {
    let code = e.to_ret().unsigned_abs();
    let _ = result(call(Hypercall::HandoverRecord, [code, 0, 0, 0, 0]));
}

/// `HandoverFetch`: copies the record the host offers to `gpa` when `len` holds it; its
/// length.
pub(crate) fn handover_fetch(gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(Hypercall::HandoverFetch, [gpa, len, 0, 0, 0]))
}

/// `HandoverAdopted`: this kernel's verdict on the offered record (`reason`: text, with
/// `adopt_status::REFUSES`).
pub(crate) fn handover_adopted(status: u64, reason: &[u8]) {
    let gpa = if reason.is_empty() {
        Some(0)
    } else {
        crate::boot::virt_to_phys(reason.as_ptr() as u64, reason.len() as u64)
    };
    let (gpa, len) = match gpa {
        Some(g) => (g, reason.len() as u64),
        None => (0, 0),
    };
    let _ = result(call(Hypercall::HandoverAdopted, [status, gpa, len, 0, 0]));
}

/// `BalloonTake`: the balloon target (pages); `None` from a host without the balloon.
pub(crate) fn balloon_take() -> Option<u64> {
    result(call(Hypercall::BalloonTake, [0; 5])).ok()
}

/// `BalloonReport`: released or reclaimed runs and the answer's status.
pub(crate) fn balloon_report(
    ranges: &[pvmux_hypercalls::balloon::BalloonRange],
    status: u64,
) -> Result<(), HcError> {
    let gpa = if ranges.is_empty() {
        0
    } else {
        let va = ranges.as_ptr() as u64;
        let len = core::mem::size_of_val(ranges) as u64;
        crate::boot::virt_to_phys(va, len).ok_or(HcError::BadAddress)?
    };
    let n = ranges.len() as u64;
    result(call(Hypercall::BalloonReport, [gpa, n, status, 0, 0])).map(|_| ())
}

/// `SpaceCreate`: a user sandbox for the context region at `ctx_gpa`; the host sets the
/// 32-bit word at `reaped_gpa` once the sandbox process is gone. Returns its handle.
pub(crate) fn space_create(ctx_gpa: u64, reaped_gpa: u64) -> Result<u64, HcError> {
    result(call(Hypercall::SpaceCreate, [ctx_gpa, reaped_gpa, 0, 0, 0]))
}

/// `SpaceDestroy`: the host kills the user sandbox `handle` (and reaps it asynchronously).
pub(crate) fn space_destroy(handle: u64) -> Result<u64, HcError> {
    result(call(Hypercall::SpaceDestroy, [handle, 0, 0, 0, 0]))
}

/// `HostfsLookup`: the one listing record of the path's last component (`path_gpa`,
/// `path_len`) of the host share into the buffer (`buf_gpa`, `buf_len`). Returns the bytes
/// written, 0 when there is no such entry.
pub(crate) fn hostfs_lookup(
    path_gpa: u64,
    path_len: u64,
    buf_gpa: u64,
    buf_len: u64,
) -> Result<u64, HcError> {
    result(call(
        Hypercall::HostfsLookup,
        [path_gpa, path_len, buf_gpa, buf_len, 0],
    ))
}

/// `HostfsList`: the directory at the path (`path_gpa`, `path_len`) of the host share, from
/// `cookie`, into the buffer (`buf_gpa`, `buf_len`). Returns the bytes written.
pub(crate) fn hostfs_list(
    path_gpa: u64,
    path_len: u64,
    buf_gpa: u64,
    buf_len: u64,
    cookie: u64,
) -> Result<u64, HcError> {
    result(call(
        Hypercall::HostfsList,
        [path_gpa, path_len, buf_gpa, buf_len, cookie],
    ))
}

/// `HostfsRead`: bytes of the regular file at the path (`path_gpa`, `path_len`) of the host
/// share from offset `off` into the buffer (`buf_gpa`, `buf_len`) and, with a `copy_gpa`
/// (not 0), into `buf_len` bytes there too. Returns the bytes read.
pub(crate) fn hostfs_read(
    path_gpa: u64,
    path_len: u64,
    off: u64,
    (buf_gpa, buf_len): (u64, u64),
    copy_gpa: u64,
) -> Result<u64, HcError> {
    result(call_raw6(
        Hypercall::HostfsRead as u64,
        [path_gpa, path_len, off, buf_gpa, buf_len, copy_gpa],
    ))
}

/// `WindowOpen`: the host file window slot of the share's regular file at the path
/// (`path_gpa`, `path_len`), of `size` bytes last modified at `mtime_ns`.
pub(crate) fn window_open(
    path_gpa: u64,
    path_len: u64,
    size: u64,
    mtime_ns: u64,
) -> Result<u64, HcError> {
    result(call(
        Hypercall::WindowOpen,
        [path_gpa, path_len, size, mtime_ns, 0],
    ))
}

/// `WindowRead`: up to `len` bytes of window `slot`'s file at `off` into guest memory at
/// `gpa`. Returns the bytes read.
#[cfg_attr(test, allow(dead_code))] // (host unit tests read no windows)
pub(crate) fn window_read(slot: u32, off: u64, gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(
        Hypercall::WindowRead,
        [u64::from(slot), off, gpa, len, 0],
    ))
}

/// `DiskTake`: the next disk event at `event_gpa` (1), or none (0).
pub(crate) fn disk_take(event_gpa: u64) -> Result<u64, HcError> {
    result(call(Hypercall::DiskTake, [event_gpa, 0, 0, 0, 0]))
}

/// `DiskSubmit`: the disk doorbell for `count` descriptors at `ring_gpa`.
pub(crate) fn disk_submit(slot: u32, ring_gpa: u64, count: u64) -> Result<u64, HcError> {
    result(call(
        Hypercall::DiskSubmit,
        [u64::from(slot), ring_gpa, count, 0, 0],
    ))
}

/// `DiskReport`: the answer to a disk event.
pub(crate) fn disk_report(slot: u32, generation: u64, errno: u64) -> Result<u64, HcError> {
    result(call(
        Hypercall::DiskReport,
        [u64::from(slot), generation, errno, 0, 0],
    ))
}

/// `DiskMounted`: where disk `slot` is mounted now (`len` bytes of path at `gpa`; 0 and
/// flags 0: not mounted), with `disk::mounted` flags.
pub(crate) fn disk_mounted(slot: u32, gpa: u64, len: u64, flags: u64) -> Result<u64, HcError> {
    result(call(
        Hypercall::DiskMounted,
        [u64::from(slot), gpa, len, flags, 0],
    ))
}

/// `VolumeOp`: the request at `req_gpa` (a `volume::VolumeRequest`); the host writes a
/// `volume::VolumeResponse` at `resp_gpa`.
pub(crate) fn volume_op(req_gpa: u64, resp_gpa: u64) -> Result<u64, HcError> {
    result(call(Hypercall::VolumeOp, [req_gpa, resp_gpa, 0, 0, 0]))
}

/// Ends the tenant with exit code `code & 0xff`.
pub(crate) fn shutdown(code: u64) -> ! {
    crate::console::flush_held();
    call(Hypercall::Shutdown, [code, 0, 0, 0, 0]);
    // The host does not return from a shutdown; if it does, crash loudly.
    crate::arch::die()
}

/// Ends the tenant with exit code `code & 0xff`, telling the host how init ended.
pub(crate) fn shutdown_with_record(code: u64, record: &pvmux_hypercalls::ShutdownRecord) -> ! {
    crate::console::flush_held();
    let va = record as *const _ as u64;
    let len = core::mem::size_of_val(record) as u64;
    let gpa = crate::boot::virt_to_phys(va, len).unwrap_or(0);
    call(Hypercall::Shutdown, [code, gpa, 0, 0, 0]);
    crate::arch::die()
}

/// Reports a kernel panic with `msg`; the host records a crash report. Does not return.
pub(crate) fn panic(msg: &[u8]) -> ! {
    let len = msg.len().min(PANIC_MSG_MAX as usize);
    if let Some(gpa) = crate::boot::virt_to_phys(msg.as_ptr() as u64, len as u64) {
        call(Hypercall::Panic, [gpa, len as u64, 0, 0, 0]);
    }
    shutdown(125)
}

/// Host wall-clock time in ns since the Unix epoch.
#[cfg(feature = "diagnostics")]
pub(crate) fn wall_clock_ns() -> u64 {
    call(Hypercall::WallClock, [0; 5]).max(0) as u64
}

/// `Nop` with `flags` (e.g. `HC_FLAG_NOSPIN`): the round trip the benchmarks time.
#[cfg(feature = "diagnostics")]
pub(crate) fn nop(flags: u64) -> i64 {
    call_raw(Hypercall::Nop as u64 | flags, [0; 5])
}

/// Any number and arguments, as they are: for the hostile cases, which send what no
/// well-formed caller would (unassigned numbers, bad flags, buffers crossing the end of
/// memory).
#[cfg(feature = "diagnostics")]
pub(crate) fn raw(nr: u64, args: [u64; 5]) -> i64 {
    call_raw(nr, args)
}

/// Before the stub table was validated ([`crate::stub::install`]): best effort to write the
/// message at guest-physical `msg` (address, length), if any, and shut down with `code`,
/// through `entry`, the `hypercall` entry of the unvalidated table (the ABI places it at the
/// same offset in every version). Events are still disabled at this point (entry state), and
/// the typed calls above cannot be used: they go through the validated table.
pub(crate) fn before_install(entry: u64, msg: Option<(u64, u64)>, code: u64) -> ! {
    if entry != 0 {
        // SAFETY: best effort on a table we could not validate (the caller tried everything
        // else first): the ABI defines this entry as a System V function with this signature.
        let hc = unsafe {
            core::mem::transmute::<u64, extern "sysv64" fn(u64, u64, u64, u64, u64, u64, u64) -> i64>(
                entry,
            )
        };
        if let Some((gpa, len)) = msg {
            // Standard output: the host's log routing may not apply to a kernel this broken.
            hc(
                Hypercall::ConsoleWrite as u64,
                gpa,
                len,
                stream::STDOUT,
                0,
                0,
                0,
            );
        }
        hc(Hypercall::Shutdown as u64, code, 0, 0, 0, 0, 0);
    }
    crate::arch::die()
}

/// A host network call (`NetSocket`..`NetPublished`, docs/ABI.md §net): the raw return value
/// (a socket error is `-(ERRNO_BASE + errno)`, see [`pvmux_hypercalls::net`]).
pub(crate) fn net(nr: Hypercall, a: [u64; 5]) -> i64 {
    call(nr, a)
}

/// A channel call (`ChannelSend`, `ChannelRecv`, `ChannelCtl`; docs/ABI.md §channels) with
/// its three arguments: the raw return value.
pub(crate) fn channel(nr: Hypercall, a: [u64; 3]) -> i64 {
    call(nr, [a[0], a[1], a[2], 0, 0])
}

/// `ChannelSend`/`ChannelRecv` with flags (`pvmux_hypercalls::channel::flag`).
pub(crate) fn channel_flags(nr: Hypercall, a: [u64; 3], flags: u64) -> i64 {
    call(nr, [a[0], a[1], a[2], flags, 0])
}

/// `ExecFetch`: the next queued exec request into the buffer at `gpa` (`len` bytes); its
/// length, or `Busy` when none is queued.
pub(crate) fn exec_fetch(gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecFetch, [gpa, len, 0, 0, 0]))
}

/// `ExecStatus`: exec session `session` started / could not start / ended
/// (`pvmux_hypercalls::exec::status`).
pub(crate) fn exec_status(session: u64, kind: u64, value: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecStatus, [session, kind, value, 0, 0]))
}

/// `ExecWrite`: output of exec session `session` on `stream`; the bytes the host took, or
/// `Busy` while its buffer is full.
pub(crate) fn exec_write(session: u64, stream: u64, gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecWrite, [session, stream, gpa, len, 0]))
}

/// `ExecTermSize`: exec session `session`'s terminal size, `(rows << 16) | cols`.
pub(crate) fn exec_term_size(session: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecTermSize, [session, 0, 0, 0, 0]))
}

/// `ExecSignalTake`: the signals the host sent to exec session `session`'s program since the
/// last call (bit `n - 1`: signal `n`), taken.
pub(crate) fn exec_signal_take(session: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecSignalTake, [session, 0, 0, 0, 0]))
}

/// `ExecRead`: input of exec session `session`; 0 at its end, `Busy` while none is buffered.
pub(crate) fn exec_read(session: u64, gpa: u64, len: u64) -> Result<u64, HcError> {
    result(call(Hypercall::ExecRead, [session, gpa, len, 0, 0]))
}

/// `SnapshotPark`: this vCPU is parked for a snapshot, `online` vCPUs in all (docs/ABI.md
/// §snapshot). Returns when the tenant goes on in this host process.
pub(crate) fn snapshot_park(online: u32) -> Result<u64, HcError> {
    result(call(
        Hypercall::SnapshotPark,
        [u64::from(online), 0, 0, 0, 0],
    ))
}

/// `SnapshotResumed`: a restored snapshot runs again with `parked` vCPUs resumed.
pub(crate) fn snapshot_resumed(parked: u32) -> Result<u64, HcError> {
    result(call(
        Hypercall::SnapshotResumed,
        [u64::from(parked), 0, 0, 0, 0],
    ))
}
