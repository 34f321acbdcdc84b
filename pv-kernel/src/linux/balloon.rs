//! The balloon (`pending::BALLOON`, docs/ABI.md §balloon): memory that moves between kernels.
//! The host sets a target, the pages of guest memory the guest must not use; the guest takes
//! free frames of its user pool into its balloon (never handing them out again) or gives
//! frames of its balloon back to its pool, and reports each run to the host, which punches
//! released pages out of the guest's memfd. `/proc/meminfo`'s `MemTotal` is the memory size
//! less the balloon ([`mem_total_bytes`]).
//!
//! A shrink never starves the guest's programs: the guest keeps
//! [`RESERVE_PAGES`](pvmux_hypercalls::balloon::RESERVE_PAGES) of its pool free and refuses
//! ([`status::SHORT`]) a target it cannot reach with free frames.

use pvmux_hypercalls::balloon::{status, BalloonRange, MAX_RANGES, RESERVE_PAGES};
use pvmux_hypercalls::PAGE_SIZE;

use super::pool::{self, BalloonCursor};
use crate::irq::IrqLock;

/// The report's ranges, aligned to their size so that they never cross a page.
#[repr(C, align(2048))]
struct Ranges([BalloonRange; MAX_RANGES]);
const _: () = assert!(core::mem::size_of::<Ranges>() == 2048);

/// Where the ranges are written: a static, in the kernel image (an event may run on a stack
/// outside the direct map, whose addresses have no guest-physical translation).
static RANGES: IrqLock<Ranges> = IrqLock::new(Ranges(
    [BalloonRange {
        gpa: 0,
        pages: 0,
        kind: 0,
    }; MAX_RANGES],
));

/// Guest memory less the balloon, bytes (`MemTotal`).
pub(crate) fn mem_total_bytes() -> u64 {
    let size = crate::boot::info().mem_size;
    size.saturating_sub(pool::ballooned() as u64 * PAGE_SIZE)
}

/// Takes the balloon the host set before boot, if any (no report when there is none).
pub(crate) fn at_boot() {
    if crate::hcall::balloon_take().is_some_and(|t| t > 0) {
        host_request();
    }
}

/// Answers the host. Safe in event context (locks are interrupt-safe; no allocation).
pub(crate) fn host_request() {
    let Some(target) = crate::hcall::balloon_take() else {
        return;
    };
    let have = pool::ballooned() as u64;
    if target > have {
        inflate(target - have);
    } else if target < have {
        deflate(have - target);
    } else {
        let _ = crate::hcall::balloon_report(&[], status::DONE);
    }
}

/// Takes `need` frames into the balloon, all or none when it starts (a shrink that cannot
/// be met is refused, never done by starving the guest's programs).
fn inflate(need: u64) {
    let (free, _) = pool::stats();
    if (free as u64) < need.saturating_add(RESERVE_PAGES) {
        let _ = crate::hcall::balloon_report(&[], status::SHORT);
        return;
    }
    let mut cur = BalloonCursor::default();
    let mut left = need;
    let mut buf = RANGES.lock();
    loop {
        let (n, got) = pool::balloon_inflate(left, RESERVE_PAGES, &mut cur, &mut buf.0);
        left -= got;
        let st = match (left, got) {
            (0, _) => status::DONE,
            // Programs allocated meanwhile: what was reported stands.
            (_, 0) => status::SHORT,
            _ => status::MORE,
        };
        if crate::hcall::balloon_report(&buf.0[..n], st).is_err() {
            // The host refused these runs: they are the guest's again.
            pool::balloon_undo(&buf.0[..n]);
            let _ = crate::hcall::balloon_report(&[], status::SHORT);
            return;
        }
        if st != status::MORE {
            return;
        }
    }
}

/// Gives `give` frames of the balloon back to the pool.
fn deflate(give: u64) {
    let mut cur = BalloonCursor::default();
    let mut left = give;
    let mut buf = RANGES.lock();
    loop {
        let (n, got) = pool::balloon_deflate(left, &mut cur, &mut buf.0);
        left -= got;
        let st = match (left, got) {
            (0, _) => status::DONE,
            (_, 0) => status::SHORT,
            _ => status::MORE,
        };
        // A host that refuses a reclaim of pages it gave back is broken; the frames are
        // free in the guest either way (touching them only gives the host's memfd pages
        // back, within the tenant's maximum).
        let _ = crate::hcall::balloon_report(&buf.0[..n], st);
        if st != status::MORE {
            return;
        }
    }
}
