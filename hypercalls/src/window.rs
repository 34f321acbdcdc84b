//! Host file windows (docs/ABI.md §windows): read-only regular files of the `--rootfs` share
//! that a tenant's user sandboxes map straight from the host's page cache, instead of the
//! guest kernel copying them into guest memory (a program's text and read-only data: one
//! copy on the host for every process of every tenant, and nothing read or written at
//! start-up).
//!
//! * `WindowOpen(path_gpa, path_len, size, mtime_ns) -> slot`: the host opens the share's
//!   regular file at the path (resolved as `HostfsRead` resolves it), checks that its size
//!   and modification time are the ones the guest expects (so the window holds the version
//!   of the file the guest knows) and that it is at most [`WINDOW_SPAN`] bytes, and returns
//!   its window *slot* (`0..MAX_WINDOWS`): the same slot for the same file and version.
//!   `UnknownCall` when the tenant has no share or its sandboxes cannot take windows (the
//!   guest then copies files as before), `InvalidArgument` for a path that is not such a
//!   file, or whose size or time differ, `NoResources` when all slots are taken.
//! * `WindowRead(slot, offset, buf_gpa, len) -> bytes`: up to `min(len, READ_MAX)` bytes of
//!   the window's file at `offset` into guest memory (0 at or past its end): the kernel's own
//!   copy of a window page (a copy-on-write break, a system call's buffer in a program's
//!   read-only data).
//!
//! A window's bytes have guest-physical addresses of their own, above all guest memory:
//! page `p` of slot `s` is [`gpa`]`(s, p * PAGE_SIZE)`. The guest kernel names them in a user
//! mapping operation's offset like a pool frame's ([`crate::user::UserOp`]); such a mapping
//! is never writable. A user sandbox holds slot `s`'s file as descriptor
//! [`WINDOW_FD_BASE`]` + s`, read-only, which its stub asks the host for with the private
//! system call [`WINDOW_SYNC_NR`]`(s, flags)` the first time it maps the slot: the host
//! installs the descriptor (with [`SYNC_ALL`], every open slot's) and answers with the
//! number of slots open (slots `0..n`). A template asks for all of them before it forks a
//! child when the number grew, so its children are born holding them.

use crate::layout::MAX_GUEST_MEM;
use crate::PAGE_SIZE;

/// First guest-physical address of the windows: right above the largest guest memory.
pub const WINDOW_GPA_BASE: u64 = MAX_GUEST_MEM;
/// Guest-physical bytes per slot, and the largest file a window holds (4 GiB).
pub const WINDOW_SPAN: u64 = 1 << 32;
/// Most windows a tenant has open at once.
pub const MAX_WINDOWS: u32 = 256;
/// End of the windows' guest-physical addresses.
pub const WINDOW_GPA_END: u64 = WINDOW_GPA_BASE + MAX_WINDOWS as u64 * WINDOW_SPAN;
/// A user sandbox's descriptor of slot `s` is `WINDOW_FD_BASE + s`.
pub const WINDOW_FD_BASE: i32 = 8;
/// The system call number a user sandbox's stub makes (from stub code) to be given the
/// descriptor of slot `a0`: x86-64's `tuxcall`, which Linux never implemented. The template
/// filter hands it to the host (`SECCOMP_RET_USER_NOTIF`), which installs the descriptor
/// (`SECCOMP_IOCTL_NOTIF_ADDFD`) and answers 0, or a negative errno for a slot the tenant
/// does not have.
pub const WINDOW_SYNC_NR: u32 = 184;

/// [`WINDOW_SYNC_NR`]'s flag (`a1`): install every open slot's descriptor, not only `a0`'s.
pub const SYNC_ALL: u64 = 1;

const _: () = assert!(WINDOW_GPA_BASE.is_multiple_of(WINDOW_SPAN));
const _: () = assert!(WINDOW_SPAN.is_multiple_of(PAGE_SIZE));

/// Guest-physical address of byte `offset` (below [`WINDOW_SPAN`]) of window `slot`.
pub const fn gpa(slot: u32, offset: u64) -> u64 {
    WINDOW_GPA_BASE + slot as u64 * WINDOW_SPAN + offset
}

/// The window slot and file offset of guest-physical address `gpa`, if it is a window's.
pub const fn slot_of(gpa: u64) -> Option<(u32, u64)> {
    if gpa < WINDOW_GPA_BASE || gpa >= WINDOW_GPA_END {
        return None;
    }
    let rel = gpa - WINDOW_GPA_BASE;
    Some(((rel / WINDOW_SPAN) as u32, rel % WINDOW_SPAN))
}

/// Whether `[gpa, gpa + len)` (`len` > 0) lies inside one window slot: the slot and the
/// offset of its first byte.
pub fn range_of(gpa: u64, len: u64) -> Option<(u32, u64)> {
    let (slot, off) = slot_of(gpa)?;
    let last = gpa.checked_add(len.checked_sub(1)?)?;
    (slot_of(last)?.0 == slot).then_some((slot, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_addresses_round_trip_and_stay_in_their_slot() {
        assert_eq!(slot_of(gpa(0, 0)), Some((0, 0)));
        assert_eq!(slot_of(gpa(7, 0x1234)), Some((7, 0x1234)));
        assert_eq!(
            slot_of(gpa(MAX_WINDOWS - 1, WINDOW_SPAN - 1)),
            Some((MAX_WINDOWS - 1, WINDOW_SPAN - 1))
        );
        assert_eq!(slot_of(WINDOW_GPA_BASE - 1), None);
        assert_eq!(slot_of(WINDOW_GPA_END), None);
        assert_eq!(range_of(gpa(3, 0), WINDOW_SPAN), Some((3, 0)));
        assert_eq!(
            range_of(gpa(3, PAGE_SIZE), WINDOW_SPAN),
            None,
            "crosses into slot 4"
        );
        assert_eq!(range_of(gpa(3, 0), 0), None);
        assert_eq!(range_of(u64::MAX - 4, 16), None);
    }
}
