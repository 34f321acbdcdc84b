//! Host file windows (docs/ABI.md §windows, `pvmux_hypercalls::window`), the guest side: a
//! `--rootfs` file's bytes as guest-physical pages of their own, above guest memory, which
//! the user sandboxes map read-only straight from the host's page cache. The image cache
//! (`imagecache.rs`) takes a program or library from a window when the host gives one, instead
//! of reading it into pool frames: nothing is read, copied or hashed at start-up, and every
//! process of every tenant maps the same host pages. Frames of a window are never pool
//! frames: they have no reference count (`pool::get`/`put` pass them by), are never writable
//! in a user mapping (a write breaks copy-on-write into a pool frame, filled by `WindowRead`),
//! and the kernel reads them through the host (`mm::pool_mem`).
//!
//! Not used with `pvmux run --no-file-windows` (boot command `NO_FILE_WINDOWS`), in the
//! trusted in-process mode (whose kernel sandbox maps user pages itself and
//! holds no window descriptors), nor when the host has none for the tenant (no share, a host
//! kernel without seccomp listeners, or an older host: `UnknownCall`), where files are read
//! into the image cache as before.

use core::sync::atomic::{AtomicU8, Ordering};

use pvmux_hypercalls::window::{self, WINDOW_SPAN};
use pvmux_hypercalls::HcError;

use crate::hcall;

/// 0: not known yet, 1: the host has windows for this tenant, 2: it has none.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether windows may be asked for at all.
fn wanted() -> bool {
    if STATE.load(Ordering::Relaxed) == 0 && crate::boot::args().no_file_windows() {
        STATE.store(2, Ordering::Relaxed);
    }
    STATE.load(Ordering::Relaxed) != 2 && !super::space::trusted_mode()
}

/// The window slot of the share's file at `path` (`size` bytes, modified at `mtime_ns`, as
/// the guest knows it), if the host gives one; `None` means: read the file as before.
pub(crate) fn open(path: &[u8], size: u64, mtime_ns: u64) -> Option<u32> {
    if !wanted() || size == 0 || size >= WINDOW_SPAN {
        return None;
    }
    let r = crate::fs::hostfs::with_path(path, |gpa| {
        Ok(hcall::window_open(gpa, path.len() as u64, size, mtime_ns))
    })
    .ok()?;
    match r {
        Ok(slot) => {
            STATE.store(1, Ordering::Relaxed);
            u32::try_from(slot)
                .ok()
                .filter(|&s| s < window::MAX_WINDOWS)
        }
        Err(HcError::UnknownCall) => {
            STATE.store(2, Ordering::Relaxed);
            None
        }
        // A file the host sees differently (changed since the guest looked), or all slots
        // taken: this file is read as before.
        Err(_) => None,
    }
}
