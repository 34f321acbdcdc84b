//! Memory that moves between kernels (ABI v6): the balloon (`pvmux mem NAME SIZE`).
//!
//! A tenant's guest memory (its memfd) has a fixed size, the tenant's *maximum*. The host
//! sets a *balloon target*: how many pages of it the guest must not use, and raises
//! `pending::BALLOON` on vCPU 0. The guest calls `BalloonTake` for the target and compares
//! it with the pages it has in its balloon: to shrink it takes free frames of its user pool
//! out of use (it never hands them out again until the host gives them back) and reports
//! them [`RELEASED`](kind::RELEASED); to grow it takes frames out of its balloon back into
//! its pool and reports them [`RECLAIMED`](kind::RECLAIMED). Each `BalloonReport` carries at
//! most [`MAX_RANGES`] [`BalloonRange`]s and a [`status`]; the last one of an answer says
//! [`status::DONE`] or [`status::SHORT`] (the guest could not free enough: it keeps
//! [`RESERVE_PAGES`] of its pool free so that its programs are never starved to satisfy the
//! host). The host checks every range (inside the user pool, page aligned, not released
//! twice, only released pages reclaimed, never more reclaimed than the target allows) and
//! punches released pages out of the memfd, so host memory really drops.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most ranges in one `BalloonReport`.
pub const MAX_RANGES: usize = 128;

/// Pages of its user pool the guest keeps free however small the host asks it to be (8 MiB):
/// a shrink that would leave less is refused ([`status::SHORT`]).
pub const RESERVE_PAGES: u64 = 2048;

/// What a [`BalloonRange`] says about its pages.
pub mod kind {
    /// The guest released the pages: it does not use them until it reclaims them.
    pub const RELEASED: u32 = 1;
    /// The guest takes released pages back into use.
    pub const RECLAIMED: u32 = 2;
}

/// `BalloonReport`'s status argument.
pub mod status {
    /// More reports follow for this target.
    pub const MORE: u64 = 0;
    /// The guest's balloon now holds the target.
    pub const DONE: u64 = 1;
    /// The guest could not free enough frames for the target; its balloon holds what the
    /// host was told so far.
    pub const SHORT: u64 = 2;
}

/// A run of guest pages released or reclaimed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BalloonRange {
    /// First guest-physical byte (page aligned).
    pub gpa: u64,
    /// Pages (at least 1).
    pub pages: u32,
    /// [`kind::RELEASED`] or [`kind::RECLAIMED`].
    pub kind: u32,
}

/// Size of [`BalloonRange`].
pub const BALLOON_RANGE_SIZE: usize = 16;
const _: () = assert!(size_of::<BalloonRange>() == BALLOON_RANGE_SIZE);
