//! The in-guest filesystem: one in-memory filesystem ([`ramfs::Fs`]) behind an [`IrqLock`],
//! backed at boot by the host share (`--rootfs DIR`, when the command line has the word
//! `hostfs`), then filled from the initramfs the host placed in guest memory (whose members
//! overlay the share's entries of the same name).
//!
//! * [`cpio`] parses the newc archive (strictly, trusting nothing),
//! * [`initramfs`] unpacks it (file bytes stay in the initrd region, zero copy),
//! * [`hostfs`] calls the host for lazy host-backed directories and files,
//! * [`ramfs`] is the filesystem with Linux semantics and [`errno::Errno`] errors,
//! * [`selftest`] is `fs-selftest`.
//!
//! Every operation runs under the lock with events disabled (the rule for all kernel locks,
//! see [`crate::irq`]), so operations are atomic with respect to each other; they copy at
//! most the caller's buffer, which keeps the time with events off short.

pub(crate) mod cpio;
pub(crate) mod errno;
pub(crate) mod hostfs;
pub(crate) mod initramfs;
pub(crate) mod ramfs;
#[cfg(feature = "diagnostics")]
pub(crate) mod selftest;

use alloc::sync::Arc;

use pvmux_hypercalls::MemRegionKind;

use crate::irq::IrqLock;
use crate::println;

pub(crate) use errno::Errno;
pub(crate) use ramfs::Fs;

/// The filesystem (created on first use).
static FS: IrqLock<Option<Fs>> = IrqLock::new(None);

/// Runs `f` on the filesystem under its lock.
pub(crate) fn with<R>(f: impl FnOnce(&mut Fs) -> R) -> R {
    let mut fs = FS.lock();
    f(fs.get_or_insert_with(|| Fs::new(crate::time::realtime_ns)))
}

/// Why the initrd was not used.
enum InitrdError {
    /// Its range overflows or is not inside guest memory.
    OutOfMemory,
    /// It is not covered by one `Initrd` region of the memory map, or overlaps memory the
    /// kernel allocates from.
    NotReserved,
}

/// The initrd bytes, after checking that the host's memory map reserves them.
fn initrd() -> Result<Option<&'static [u8]>, InitrdError> {
    let bi = crate::boot::info();
    let (gpa, len) = (bi.initrd_gpa, bi.initrd_len);
    if len == 0 {
        return Ok(None);
    }
    let end = gpa.checked_add(len).ok_or(InitrdError::OutOfMemory)?;
    if gpa == 0 || end > bi.mem_size || usize::try_from(len).is_err() {
        return Err(InitrdError::OutOfMemory);
    }
    let regions = bi.mem_regions();
    let covered = regions.iter().any(|r| {
        MemRegionKind::from_raw(r.kind) == Some(MemRegionKind::Initrd)
            && r.base <= gpa
            && r.base.checked_add(r.len).is_some_and(|e| end <= e)
    });
    // Do not rely on the map being non-overlapping: no other region may touch the initrd.
    let overlaps = regions.iter().any(|r| {
        MemRegionKind::from_raw(r.kind) != Some(MemRegionKind::Initrd)
            && r.base < end
            && r.base.saturating_add(r.len) > gpa
    });
    if !covered || overlaps {
        return Err(InitrdError::NotReserved);
    }
    let va = crate::boot::phys_to_virt(gpa);
    // SAFETY: `[gpa, end)` lies inside guest memory, which the direct map covers read-write
    // for the kernel's lifetime; the memory map reserves it as the initrd (checked above),
    // so neither the frame allocator nor anything else ever writes it, and nothing frees it:
    // a shared `'static` slice is sound.
    Ok(Some(unsafe {
        core::slice::from_raw_parts(va as *const u8, len as usize)
    }))
}

/// A fresh filesystem: empty, or lazily showing the host share if `share`.
fn fresh(share: bool) -> Fs {
    let mut fs = Fs::new(crate::time::realtime_ns);
    if share && fs.attach_host(Arc::new(hostfs::Share)).is_err() {
        println!("pvmux-kernel: hostfs: error: cannot attach the host share");
    }
    fs
}

/// Sets up the filesystem: the host share if the command line asks for it (`hostfs`) and
/// the host has one, then the initrd, if the host gave one, on top. A malformed archive is
/// reported and boot goes on without it (with an empty filesystem if there is no share).
pub(crate) fn init() {
    let share = crate::cmdline::has_option("hostfs") && {
        let ok = hostfs::present();
        if ok {
            println!("pvmux-kernel: hostfs: host directory shared read-only at /");
        } else {
            println!(
                "pvmux-kernel: hostfs: error: the host shares no directory; continuing without it"
            );
        }
        ok
    };
    let empty = if share {
        "continuing with the host share only"
    } else {
        "continuing with an empty filesystem"
    };
    let archive = match initrd() {
        Ok(Some(a)) => a,
        Ok(None) => {
            if share {
                *FS.lock() = Some(fresh(true));
            }
            return;
        }
        Err(e) => {
            let why = match e {
                InitrdError::OutOfMemory => "the initrd lies outside guest memory",
                InitrdError::NotReserved => "the initrd is not reserved in the memory map",
            };
            println!("pvmux-kernel: initramfs: error: {why}; {empty}");
            *FS.lock() = Some(fresh(share));
            return;
        }
    };
    // Unpack into a scratch filesystem without holding the lock, then install it whole.
    let mut fs = fresh(share);
    match initramfs::unpack(&mut fs, archive) {
        Ok(s) => {
            println!(
                "pvmux-kernel: initramfs: {} entries, {} bytes",
                s.entries,
                archive.len()
            );
            if s.skipped > 0 {
                println!(
                    "pvmux-kernel: initramfs: skipped {} device nodes, FIFOs and sockets",
                    s.skipped
                );
            }
            *FS.lock() = Some(fs);
        }
        Err(e) => {
            println!("pvmux-kernel: initramfs: error: {e}; {empty}");
            *FS.lock() = Some(fresh(share));
        }
    }
}
