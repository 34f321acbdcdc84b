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
//! Safe code only (`forbid(unsafe_code)`): the initrd bytes come from [`crate::mm::initrd`],
//! which owns the raw access. Everything but this file's lock and boot glue, and `hostfs`'s
//! hypercalls, is pure and unit-tested on the host (`cargo test -p pvmux-kernel`).
//!
//! Every operation runs under the lock with events disabled (the rule for all kernel locks,
//! see [`crate::irq`]), so operations are atomic with respect to each other; they copy at
//! most the caller's buffer, which keeps the time with events off short.

#![forbid(unsafe_code)]

pub(crate) mod cpio;
pub(crate) mod disk;
pub(crate) mod errno;
pub(crate) mod ext2;
pub(crate) mod hostfs;
pub(crate) mod initramfs;
pub(crate) mod mount;
pub(crate) mod pagecache;
pub(crate) mod perm;
pub(crate) mod ramfs;
#[cfg(feature = "diagnostics")]
pub(crate) mod selftest;
#[cfg(test)]
mod testdata;
pub(crate) mod volume;

use alloc::sync::Arc;

use crate::irq::IrqLock;
use crate::mm::initrd;
use crate::println;

pub(crate) use errno::Errno;
pub(crate) use ramfs::{Fs, Limits};

/// Exit code: the initramfs does not fit the filesystem's limits or the kernel's memory
/// (boot ends; run with more `--mem` or a smaller archive).
pub(crate) const EXIT_INITRAMFS_TOO_LARGE: u64 = 119;

/// The filesystem (created on first use).
static FS: IrqLock<Option<Fs>> = IrqLock::new(None);

/// Runs `f` on the filesystem under its lock, with the permission checks of the current
/// process's filesystem credentials (none for root or outside a process) and its root
/// directory (`chroot`; `/` outside a process).
pub(crate) fn with<R>(f: impl FnOnce(&mut Fs) -> R) -> R {
    let cred = crate::linux::creds::fs_cred();
    let root = crate::linux::files::fs_root();
    let mut fs = FS.lock();
    let fs = fs.get_or_insert_with(|| {
        let mut fs = Fs::new(crate::time::realtime_ns);
        fs.set_limits(limits());
        fs.set_owner(crate::linux::creds::fs_owner);
        fs
    });
    fs.set_cred(cred);
    fs.set_walk_root(root);
    f(fs)
}

/// The directory a new program starts in (a `--workdir`, an exec session's): `/` for none,
/// else the directory `dir` names from `/`; the name and the lookup's error if it fails.
pub(crate) fn workdir(dir: Option<&[u8]>) -> Result<ramfs::Ino, (&[u8], Errno)> {
    match dir {
        None => Ok(ramfs::ROOT_INO),
        Some(d) => with_real_root(|fs| fs.lookup_dir(ramfs::ROOT_INO, d)).map_err(|e| (d, e)),
    }
}

/// [`with`], absolute paths from `/` whatever the current process's root: for paths the
/// kernel made itself (device nodes, a hand-over's records, boot commands).
pub(crate) fn with_real_root<R>(f: impl FnOnce(&mut Fs) -> R) -> R {
    with(|fs| fs.at_real_root(f))
}

/// [`with`], unless the filesystem is in use (on this CPU, further up the stack: a caller
/// that may run inside [`with`] must not wait for it): `None` then.
pub(crate) fn try_with<R>(f: impl FnOnce(&mut Fs) -> R) -> Option<R> {
    let cred = crate::linux::creds::fs_cred();
    let root = crate::linux::files::fs_root();
    let mut fs = FS.try_lock()?;
    let fs = fs.as_mut()?;
    fs.set_cred(cred);
    fs.set_walk_root(root);
    Some(f(fs))
}

/// The filesystem's limits: tmpfs's defaults for the guest's memory, the contents at most
/// two thirds of the user pool they live in (so programs keep a third: this binds for guests
/// of less than 256 MiB, whose pool is only half of memory).
fn limits() -> Limits {
    let mut l = Limits::tmpfs_defaults(crate::boot::info().mem_size);
    let pool_pages = crate::linux::pool::stats().1 as u64;
    if pool_pages > 0 {
        l.max_pages = l.max_pages.min(pool_pages * 2 / 3);
    }
    l
}

/// A fresh filesystem with [`limits`]: empty, or lazily showing the host share if `share`.
fn fresh(share: bool) -> Fs {
    let mut fs = Fs::new(crate::time::realtime_ns);
    fs.set_limits(limits());
    fs.set_owner(crate::linux::creds::fs_owner);
    if share && fs.attach_host(Arc::new(hostfs::Share)).is_err() {
        println!("pvmux-kernel: hostfs: error: cannot attach the host share");
    }
    fs
}

/// Sets up the filesystem: the host share if the boot arguments ask for it (`hostfs`) and
/// the host has one, then the initrd, if the host gave one, on top. A malformed archive is
/// reported and boot goes on without it (with an empty filesystem if there is no share); an
/// archive too large for the filesystem's limits or the kernel's memory ends boot with a
/// message and [`EXIT_INITRAMFS_TOO_LARGE`].
pub(crate) fn init() {
    let l = limits();
    if !crate::boot::args().options.quiet {
        println!(
            "pvmux-kernel: fs: limits {} MiB of file contents, {} inodes; kernel heap grows \
             to {} MiB (reserve {} KiB)",
            (l.max_pages * pvmux_hypercalls::PAGE_SIZE) >> 20,
            l.max_inodes,
            crate::mm::heap::max_size() >> 20,
            crate::mm::heap::reserve() >> 10
        );
    }
    let share = crate::boot::args().options.hostfs && {
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
    let archive = match initrd::bytes() {
        Ok(Some(a)) => a,
        Ok(None) => {
            if share {
                *FS.lock() = Some(fresh(true));
            }
            return;
        }
        Err(e) => {
            println!("pvmux-kernel: initramfs: error: {}; {empty}", e.reason());
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
        Err(e) if e.out_of_space() => {
            // Free the partial tree before saying so (the message needs no heap, but the
            // shutdown path should not start on an exhausted one).
            drop(fs);
            // On standard error too: the operator must see why boot ended.
            let msg = alloc::format!(
                "pvmux-kernel: initramfs: error: {e}: the archive ({} bytes) does not fit the \
                 filesystem (at most {} inodes and {} MiB of file contents, in kernel \
                 memory); boot needs a smaller archive or more --mem\n",
                archive.len(),
                l.max_inodes,
                (l.max_pages * pvmux_hypercalls::PAGE_SIZE) >> 20
            );
            crate::print!("{msg}");
            crate::hcall::console_write_stream(
                pvmux_hypercalls::hypercall::stream::STDERR,
                msg.as_bytes(),
            );
            crate::hcall::shutdown(EXIT_INITRAMFS_TOO_LARGE)
        }
        Err(e) => {
            println!("pvmux-kernel: initramfs: error: {e}; {empty}");
            *FS.lock() = Some(fresh(share));
        }
    }
}
