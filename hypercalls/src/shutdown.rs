//! The shutdown record: how the program a guest ran as init ended, handed to the host with
//! the `Shutdown` hypercall (its second argument, the record's guest-physical address), so
//! that the host can say why a program died although the guest kernel's own log is hidden.
//!
//! A kernel sends a record only when init ended abnormally: killed by a signal
//! ([`ProgramEnd::Signaled`]) or for memory ([`ProgramEnd::OutOfMemory`]); the exit code
//! (`Shutdown`'s first argument) is then 128 + the signal. The host copies the record once,
//! checks [`ShutdownRecord::magic`], and trusts nothing else in it: it is the guest's account,
//! shown to the user as such (strings sanitised).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// [`ShutdownRecord::magic`]: "PVMX" in little endian.
pub const SHUTDOWN_RECORD_MAGIC: u32 = u32::from_le_bytes(*b"PVMX");
/// Bytes of the program path a record carries ([`ShutdownRecord::exe`]).
pub const SHUTDOWN_EXE_MAX: usize = 256;

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u32)]
pub enum ProgramEnd {
    /// Killed by a signal: [`ShutdownRecord::signal`] (with a fault if
    /// [`record_flags::FAULT`] is set, and the sender in `sender_pid`).
    Signaled = 1,
    /// Killed by the kernel's out-of-memory killer (with `SIGKILL`); the memory fields say
    /// how much it had.
    OutOfMemory = 2,
}

impl ProgramEnd {
    /// Decodes a raw kind; `None` for values this ABI version does not know.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Signaled,
            2 => Self::OutOfMemory,
            _ => return None,
        })
    }
}

/// [`ShutdownRecord::flags`] bits.
pub mod record_flags {
    /// The signal came from an exception of the program: the `fault_*` fields are valid.
    pub const FAULT: u32 = 1 << 0;
    /// The kernel did not see what sent the signal (init ended in a race with its
    /// bookkeeping): `code` and `sender_pid` mean nothing.
    pub const UNSEEN: u32 = 1 << 1;
}

/// How init ended (see the module documentation).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ShutdownRecord {
    /// [`SHUTDOWN_RECORD_MAGIC`].
    pub magic: u32,
    /// A [`ProgramEnd`] as `u32`.
    pub kind: u32,
    /// [`record_flags`].
    pub flags: u32,
    /// The program's process id (1 for init).
    pub pid: i32,
    /// The signal that ended it (Linux numbering; `SIGKILL` (9) for out of memory).
    pub signal: u32,
    /// The signal's `si_code` (Linux values: `SI_USER` 0, `SI_KERNEL` 0x80, `SI_TKILL` -6,
    /// `SEGV_MAPERR` 1, ...).
    pub code: i32,
    /// The process that sent the signal (0: the kernel, a fault, or the host: `code`
    /// `SI_USER` (0) with `sender_pid` 0 is a signal from outside the guest).
    pub sender_pid: i32,
    /// The exception vector of the fault (a [`crate::Vector`]), if [`record_flags::FAULT`].
    pub fault_vector: u32,
    /// The faulting address (page faults), else the instruction's.
    pub fault_addr: u64,
    /// Instruction pointer at the fault.
    pub fault_ip: u64,
    /// Stack pointer at the fault.
    pub fault_sp: u64,
    /// The x86 error code of the fault (for #PF: bit 0 present, 1 write, 2 user, 4 fetch).
    pub fault_error_code: u64,
    /// Virtual memory the program had mapped, in KiB.
    pub total_vm_kib: u64,
    /// Its resident private memory, in KiB.
    pub anon_rss_kib: u64,
    /// Its resident file-backed memory, in KiB.
    pub file_rss_kib: u64,
    /// Its resident shared memory, in KiB.
    pub shmem_rss_kib: u64,
    /// Length of `exe`.
    pub exe_len: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The program's path (the running image, not necessarily the one started), UTF-8 or
    /// not, not NUL-terminated.
    pub exe: [u8; SHUTDOWN_EXE_MAX],
}

impl ShutdownRecord {
    /// An empty record of kind `kind`.
    pub const fn new(kind: ProgramEnd) -> Self {
        Self {
            magic: SHUTDOWN_RECORD_MAGIC,
            kind: kind as u32,
            flags: 0,
            pid: 0,
            signal: 0,
            code: 0,
            sender_pid: 0,
            fault_vector: 0,
            fault_addr: 0,
            fault_ip: 0,
            fault_sp: 0,
            fault_error_code: 0,
            total_vm_kib: 0,
            anon_rss_kib: 0,
            file_rss_kib: 0,
            shmem_rss_kib: 0,
            exe_len: 0,
            _reserved: 0,
            exe: [0; SHUTDOWN_EXE_MAX],
        }
    }

    /// Sets `exe` (truncated to [`SHUTDOWN_EXE_MAX`] bytes).
    pub fn set_exe(&mut self, path: &[u8]) {
        let n = path.len().min(SHUTDOWN_EXE_MAX);
        self.exe[..n].copy_from_slice(&path[..n]);
        self.exe_len = n as u32;
    }

    /// The valid part of `exe`.
    pub fn exe(&self) -> &[u8] {
        &self.exe[..(self.exe_len as usize).min(SHUTDOWN_EXE_MAX)]
    }
}

/// Size of [`ShutdownRecord`] in bytes.
pub const SHUTDOWN_RECORD_SIZE: usize = 360;

const _: () = assert!(size_of::<ShutdownRecord>() == SHUTDOWN_RECORD_SIZE);
const _: () = assert!(offset_of!(ShutdownRecord, fault_vector) == 28);
const _: () = assert!(offset_of!(ShutdownRecord, fault_addr) == 32);
const _: () = assert!(offset_of!(ShutdownRecord, total_vm_kib) == 64);
const _: () = assert!(offset_of!(ShutdownRecord, exe_len) == 96);
const _: () = assert!(offset_of!(ShutdownRecord, exe) == 104);
