//! The host's side of the balloon (docs/ABI.md §balloon): memory that moves between kernels
//! (`pvmux mem NAME SIZE`, [`crate::TenantHandle::set_memory`]).
//!
//! A tenant's memfd has the size of its *maximum*, sealed, so the host's memory charge for
//! the tenant never exceeds it whatever the guest does. The host sets a balloon target (the
//! pages the guest must not use) and raises `pending::BALLOON`; the guest takes it
//! (`BalloonTake`) and reports the runs of pages it released or reclaimed
//! (`BalloonReport`). Every report is checked whole before any of it applies
//! (`check_ranges`): at most [`MAX_RANGES`] runs, each page aligned, inside the user pool,
//! no page released twice, only released pages reclaimed, never more reclaimed than the
//! target allows. Released pages are punched out of the memfd here, by the host
//! (`fallocate(PUNCH_HOLE)`; the sandboxes' seccomp filters allow no such call), so host
//! memory really drops; a page the guest reports released and writes anyway only allocates
//! memfd memory again, still within the maximum.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pvmux_hypercalls::balloon::{kind, status, BalloonRange, BALLOON_RANGE_SIZE, MAX_RANGES};
use pvmux_hypercalls::{HcError, PAGE_SIZE};
use zerocopy::FromBytes;

use crate::GuestMemory;

/// How long the host waits for the guest to answer a new balloon target.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a memory change of a running tenant failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BalloonError {
    /// The tenant is not running.
    #[error("the tenant is not running")]
    NotRunning,
    /// The tenant is paused (its guest cannot answer).
    #[error("the tenant is paused: resume it first")]
    Paused,
    /// Not a whole number of pages.
    #[error("{size} bytes is not a whole number of 4 KiB pages")]
    BadSize {
        /// The size asked for.
        size: u64,
    },
    /// More than the maximum set at start.
    #[error("{} is above the tenant's maximum, {} (set when it started)", mib(*size), mib(*max))]
    AboveMax {
        /// The size asked for.
        size: u64,
        /// The tenant's maximum.
        max: u64,
    },
    /// Less than the kernel's own part plus the user pool's reserve.
    #[error(
        "{} is below the tenant's minimum, {} (the kernel's own memory and {} the guest keeps free)",
        mib(*size), mib(*min), mib(pvmux_hypercalls::balloon::RESERVE_PAGES * PAGE_SIZE)
    )]
    BelowMin {
        /// The size asked for.
        size: u64,
        /// The tenant's minimum.
        min: u64,
    },
    /// The guest has too little free memory to shrink that far (nothing changed, or only
    /// part: `now` is the size in force).
    #[error(
        "the guest cannot free enough memory to shrink to {} (its programs use the rest); \
         its memory is {}",
        mib(*size), mib(*now)
    )]
    CannotFree {
        /// The size asked for.
        size: u64,
        /// The size in force.
        now: u64,
    },
    /// The guest did not answer in time (a kernel without the balloon, or busy).
    #[error("the guest kernel did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// `bytes` in MiB for messages (with a fraction when not whole).
fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

/// A tenant's memory figures (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryFigures {
    /// The maximum: the memfd's size, fixed at start.
    pub max: u64,
    /// The memory the guest may use: the maximum less its balloon (its `MemTotal`).
    pub size: u64,
    /// The smallest size it may be asked for.
    pub min: u64,
    /// Host memory the memfd holds now (its allocated blocks).
    pub host_allocated: u64,
}

/// Why a `BalloonReport` is refused (the guest sees `InvalidArgument`; nothing applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeError {
    /// More than [`MAX_RANGES`] runs.
    TooMany,
    /// A kind that is neither released nor reclaimed.
    BadKind,
    /// A run not page aligned, empty, or outside the user pool.
    OutsidePool,
    /// A page released that already was.
    AlreadyReleased,
    /// A page reclaimed that was not released.
    NotReleased,
    /// The reclaims leave fewer pages released than the target.
    BeyondTarget,
}

/// The released pages of the user pool, one bit each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Released {
    bits: Vec<u64>,
    count: u64,
}

impl Released {
    fn new(pages: u64) -> Self {
        Self {
            bits: vec![0; pages.div_ceil(64) as usize],
            count: 0,
        }
    }

    fn get(&self, i: u64) -> bool {
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: u64) {
        self.bits[(i / 64) as usize] ^= 1 << (i % 64);
    }
}

/// Checks `ranges` against the released pages `rel` of a pool of `pool_pages` pages at
/// `pool_base` and the target, and returns the released pages after them.
pub(crate) fn check_ranges(
    rel: &Released,
    pool_base: u64,
    pool_pages: u64,
    target: u64,
    ranges: &[BalloonRange],
) -> Result<Released, RangeError> {
    if ranges.len() > MAX_RANGES {
        return Err(RangeError::TooMany);
    }
    let mut after = rel.clone();
    let mut reclaimed = false;
    for r in ranges {
        if r.kind != kind::RELEASED && r.kind != kind::RECLAIMED {
            return Err(RangeError::BadKind);
        }
        let first = r
            .gpa
            .checked_sub(pool_base)
            .filter(|off| off.is_multiple_of(PAGE_SIZE))
            .map(|off| off / PAGE_SIZE)
            .ok_or(RangeError::OutsidePool)?;
        let end = first
            .checked_add(u64::from(r.pages))
            .filter(|&e| r.pages > 0 && e <= pool_pages)
            .ok_or(RangeError::OutsidePool)?;
        for i in first..end {
            match (r.kind, after.get(i)) {
                (kind::RELEASED, true) => return Err(RangeError::AlreadyReleased),
                (kind::RECLAIMED, false) => return Err(RangeError::NotReleased),
                (kind::RELEASED, false) => after.count += 1,
                _ => {
                    after.count -= 1;
                    reclaimed = true;
                }
            }
            after.flip(i);
        }
    }
    if reclaimed && after.count < target {
        return Err(RangeError::BeyondTarget);
    }
    Ok(after)
}

#[derive(Debug)]
struct State {
    /// Pages the guest must not use.
    target: u64,
    released: Released,
    /// Targets set so far.
    asked: u64,
    /// `asked` when the guest last took the target.
    taken: u64,
    /// `taken` when the guest last finished an answer.
    answered: u64,
    /// Whether that answer fell short of the target.
    short: bool,
}

/// The host's end of the balloon, one per tenant.
#[derive(Debug)]
pub(crate) struct Balloon {
    pool_base: u64,
    pool_pages: u64,
    state: Mutex<State>,
    changed: Condvar,
}

impl Balloon {
    /// The balloon of a guest whose user pool is `[pool_base, mem_size)`.
    pub(crate) fn new(pool_base: u64, mem_size: u64) -> Self {
        let pool_pages = mem_size.saturating_sub(pool_base) / PAGE_SIZE;
        Self {
            pool_base,
            pool_pages,
            state: Mutex::new(State {
                target: 0,
                released: Released::new(pool_pages),
                asked: 0,
                taken: 0,
                answered: 0,
                short: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of the user pool (what a balloon can hold at most).
    #[cfg(test)]
    pub(crate) fn pool_bytes(&self) -> u64 {
        self.pool_pages * PAGE_SIZE
    }

    /// A new kernel of the same tenant (a hand-over) boots: nothing is released any more as
    /// far as its pool goes (the frames the old kernel released read as zeros, and the new
    /// kernel may use them), and it takes the current target at boot, as a first kernel
    /// takes its initial balloon.
    pub(crate) fn restart(&self) {
        let mut s = self.lock();
        s.released = Released::new(self.pool_pages);
        s.asked += 1;
        s.answered = s.taken;
        s.short = false;
        self.changed.notify_all();
    }

    /// Pages released now.
    pub(crate) fn released_pages(&self) -> u64 {
        self.lock().released.count
    }

    /// The target and the released pages as runs `(gpa, pages)` in address order (a
    /// snapshot's).
    pub(crate) fn carried(&self) -> (u64, Vec<(u64, u64)>) {
        let s = self.lock();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in (0..self.pool_pages).filter(|&i| s.released.get(i)) {
            let gpa = self.pool_base + i * PAGE_SIZE;
            match runs.last_mut() {
                Some((g, n)) if *g + *n * PAGE_SIZE == gpa => *n += 1,
                _ => runs.push((gpa, 1)),
            }
        }
        (s.target, runs)
    }

    /// A restored tenant's balloon: its snapshot's target and released runs (checked as a
    /// guest's report is: inside the pool, page aligned, each page once), before the
    /// guest runs. Nothing changes on an error.
    pub(crate) fn restore(&self, target: u64, runs: &[(u64, u64)]) -> Result<(), RangeError> {
        let mut s = self.lock();
        let mut rel = Released::new(self.pool_pages);
        for chunk in runs.chunks(MAX_RANGES) {
            let ranges = chunk
                .iter()
                .map(|&(gpa, pages)| {
                    Ok(BalloonRange {
                        gpa,
                        pages: u32::try_from(pages).map_err(|_| RangeError::OutsidePool)?,
                        kind: kind::RELEASED,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            rel = check_ranges(&rel, self.pool_base, self.pool_pages, 0, &ranges)?;
        }
        if target > self.pool_pages {
            return Err(RangeError::OutsidePool);
        }
        s.released = rel;
        s.target = target;
        Ok(())
    }

    /// Sets a new target; returns its number for [`Balloon::wait_answer`].
    pub(crate) fn set_target(&self, pages: u64) -> u64 {
        let mut s = self.lock();
        s.target = pages.min(self.pool_pages);
        s.asked += 1;
        s.asked
    }

    /// `BalloonTake`.
    pub(crate) fn take(&self) -> u64 {
        let mut s = self.lock();
        s.taken = s.asked;
        s.target
    }

    /// Waits at most `timeout` for the guest's answer to target number `asked`: the pages
    /// released then and whether the guest fell short.
    pub(crate) fn wait_answer(&self, asked: u64, timeout: Duration) -> Option<(u64, bool)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.answered >= asked {
                return Some((s.released.count, s.short));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// `BalloonReport(ranges_gpa, count, status)`: copies the runs once, checks them all,
    /// punches the released ones out of the memfd and records them.
    pub(crate) fn report(
        &self,
        mem: &GuestMemory,
        gpa: u64,
        count: u64,
        st: u64,
    ) -> Result<(), HcError> {
        if st > status::SHORT {
            return Err(HcError::InvalidArgument);
        }
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= MAX_RANGES)
            .ok_or(HcError::TooLarge)?;
        let bytes = if n == 0 {
            Vec::new()
        } else {
            mem.read_vec(gpa, n * BALLOON_RANGE_SIZE)
                .map_err(|_| HcError::BadAddress)?
        };
        let ranges: Vec<BalloonRange> = bytes
            .chunks_exact(BALLOON_RANGE_SIZE)
            .map(|c| BalloonRange::read_from_bytes(c).map_err(|_| HcError::InvalidArgument))
            .collect::<Result<_, _>>()?;
        let mut s = self.lock();
        let after = check_ranges(
            &s.released,
            self.pool_base,
            self.pool_pages,
            s.target,
            &ranges,
        )
        .map_err(|e| {
            tracing::warn!(?e, "balloon report refused");
            HcError::InvalidArgument
        })?;
        for r in ranges.iter().filter(|r| r.kind == kind::RELEASED) {
            punch(mem, r.gpa, u64::from(r.pages) * PAGE_SIZE);
        }
        s.released = after;
        if st != status::MORE {
            s.answered = s.taken;
            s.short = st == status::SHORT;
            if s.short {
                // What the guest holds is the target now: it is not asked again.
                s.target = s.released.count;
            }
            self.changed.notify_all();
        }
        Ok(())
    }
}

/// Gives the memfd's pages of `[gpa, gpa + len)` back to the host (checked in guest memory).
fn punch(mem: &GuestMemory, gpa: u64, len: u64) {
    use rustix::fs::FallocateFlags;
    if mem.check_range(gpa, len).is_err() {
        return;
    }
    if let Err(e) = rustix::fs::fallocate(
        mem.fd(),
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        gpa,
        len,
    ) {
        tracing::warn!(%e, gpa, len, "cannot punch released guest memory");
    }
}

/// The smallest memory a tenant whose maximum is `mem_size` may have: the kernel's own
/// part (below the user pool, `domain_builder::user_pool_base`) and the pool's reserve.
pub fn min_mem_size(mem_size: u64) -> u64 {
    let reserve = pvmux_hypercalls::balloon::RESERVE_PAGES * PAGE_SIZE;
    (crate::domain_builder::user_pool_base(mem_size) + reserve).min(mem_size)
}

/// The pages a guest's balloon starts with for `TenantConfig::mem_initial`, checked.
pub fn initial_balloon(mem_size: u64, initial: Option<u64>) -> Result<u64, crate::HostError> {
    let Some(size) = initial else {
        return Ok(0);
    };
    let err = |what: String| Err(crate::HostError::InvalidConfig(what));
    if !size.is_multiple_of(PAGE_SIZE) {
        return err(BalloonError::BadSize { size }.to_string());
    }
    if size > mem_size {
        return err(format!(
            "the initial memory, {}, is above the maximum, {}",
            mib(size),
            mib(mem_size)
        ));
    }
    let min = min_mem_size(mem_size);
    if size < min {
        return err(format!(
            "the initial memory, {}, is below the smallest a guest of {} may have, {} (its \
             kernel's own memory and the {} it keeps free)",
            mib(size),
            mib(mem_size),
            mib(min),
            mib(pvmux_hypercalls::balloon::RESERVE_PAGES * PAGE_SIZE)
        ));
    }
    Ok((mem_size - size) / PAGE_SIZE)
}

/// Host memory the memfd of `mem` holds (its allocated blocks, bytes).
pub(crate) fn host_allocated(mem: &GuestMemory) -> u64 {
    rustix::fs::fstat(mem.fd()).map_or(0, |st| st.st_blocks as u64 * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x100_0000;

    fn run(page: u64, pages: u32, k: u32) -> BalloonRange {
        BalloonRange {
            gpa: BASE + page * PAGE_SIZE,
            pages,
            kind: k,
        }
    }

    #[test]
    fn ranges_are_checked_whole() {
        let rel = Released::new(64);
        let ok = check_ranges(
            &rel,
            BASE,
            64,
            10,
            &[run(0, 4, kind::RELEASED), run(60, 4, kind::RELEASED)],
        )
        .unwrap();
        assert_eq!(ok.count, 8);
        assert!(ok.get(0) && ok.get(63) && !ok.get(4));
        let bad = |rel: &Released, target, ranges: &[BalloonRange]| {
            check_ranges(rel, BASE, 64, target, ranges).unwrap_err()
        };
        // Outside the pool, unaligned, empty, past its end, overflowing.
        for r in [
            BalloonRange {
                gpa: BASE - PAGE_SIZE,
                pages: 1,
                kind: kind::RELEASED,
            },
            BalloonRange {
                gpa: BASE + 8,
                pages: 1,
                kind: kind::RELEASED,
            },
            run(3, 0, kind::RELEASED),
            run(62, 3, kind::RELEASED),
            BalloonRange {
                gpa: !(PAGE_SIZE - 1),
                pages: u32::MAX,
                kind: kind::RELEASED,
            },
        ] {
            assert_eq!(bad(&rel, 10, &[r]), RangeError::OutsidePool, "{r:?}");
        }
        assert_eq!(bad(&rel, 10, &[run(0, 1, 3)]), RangeError::BadKind);
        // Twice, in one report or across two; the first run does not apply either.
        assert_eq!(
            bad(
                &rel,
                10,
                &[run(0, 2, kind::RELEASED), run(1, 1, kind::RELEASED)]
            ),
            RangeError::AlreadyReleased
        );
        assert_eq!(
            bad(
                &ok,
                10,
                &[run(10, 1, kind::RELEASED), run(2, 1, kind::RELEASED)]
            ),
            RangeError::AlreadyReleased
        );
        assert_eq!(ok.count, 8);
        // Reclaims: only released pages, never below the target.
        assert_eq!(
            bad(&ok, 0, &[run(4, 1, kind::RECLAIMED)]),
            RangeError::NotReleased
        );
        assert_eq!(
            bad(&ok, 6, &[run(0, 4, kind::RECLAIMED)]),
            RangeError::BeyondTarget
        );
        let back = check_ranges(&ok, BASE, 64, 4, &[run(0, 4, kind::RECLAIMED)]).unwrap();
        assert_eq!(back.count, 4);
        assert!(!back.get(0) && back.get(60));
        let many = vec![run(0, 1, kind::RELEASED); MAX_RANGES + 1];
        assert_eq!(bad(&rel, 10, &many), RangeError::TooMany);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512, ..proptest::prelude::ProptestConfig::default()
        })]
        /// Hostile reports (any runs, kinds and targets) never panic, and the released set
        /// only ever holds pool pages, counted exactly.
        #[test]
        fn hostile_reports_keep_the_books_exact(
            reports in proptest::collection::vec(
                (0u64..20, proptest::collection::vec((0u64..80, 0u32..20, 0u32..4, proptest::bool::ANY), 0..6)),
                1..12,
            )
        ) {
            let mut rel = Released::new(64);
            for (target, runs) in reports {
                let ranges: Vec<BalloonRange> = runs
                    .iter()
                    .map(|&(page, pages, k, aligned)| BalloonRange {
                        gpa: BASE + page * PAGE_SIZE + if aligned { 0 } else { 8 },
                        pages,
                        kind: k,
                    })
                    .collect();
                if let Ok(after) = check_ranges(&rel, BASE, 64, target, &ranges) {
                    rel = after;
                }
                let set: u64 = (0..64).filter(|&i| rel.get(i)).count() as u64;
                proptest::prop_assert_eq!(set, rel.count);
                proptest::prop_assert!(rel.bits.len() == 1);
            }
        }
    }

    #[test]
    fn a_snapshots_balloon_is_carried_and_checked() {
        let b = Balloon::new(BASE, BASE + 512 * PAGE_SIZE);
        let p = |page: u64| BASE + page * PAGE_SIZE;
        // Fragmented: more runs than one report takes.
        let runs: Vec<(u64, u64)> = (0..200).map(|i| (p(i * 2 + 10), 1)).collect();
        b.restore(600, &[]).unwrap_err();
        b.restore(200, &runs).unwrap();
        assert_eq!(b.released_pages(), 200);
        assert_eq!(b.carried(), (200, runs.clone()));
        // Adjacent pages come back as one run.
        let c = Balloon::new(BASE, BASE + 256 * PAGE_SIZE);
        c.restore(5, &[(p(3), 2), (p(5), 3)]).unwrap();
        assert_eq!(c.carried(), (5, vec![(p(3), 5)]));
        // Outside the pool, unaligned, twice, too large: refused, nothing changes.
        for bad in [
            &[(p(255), 2)][..],
            &[(BASE - PAGE_SIZE, 1)],
            &[(p(1) + 8, 1)],
            &[(p(1), 2), (p(2), 1)],
            &[(p(0), u64::from(u32::MAX) + 1)],
        ] {
            assert!(c.restore(1, bad).is_err(), "{bad:?}");
            assert_eq!(c.carried(), (5, vec![(p(3), 5)]));
        }
    }

    #[test]
    fn reports_punch_the_memfd_and_answer_the_target() {
        use zerocopy::IntoBytes;
        let mem = GuestMemory::new(32 << 20).unwrap();
        let pool_base = 16 << 20;
        let b = Balloon::new(pool_base, mem.size());
        assert_eq!(b.pool_bytes(), 16 << 20);
        let ranges = [BalloonRange {
            gpa: pool_base,
            pages: 1024,
            kind: kind::RELEASED,
        }];
        mem.write(0x1000, ranges.as_bytes()).unwrap();
        // The guest touched 4 MiB of its pool.
        mem.write(pool_base, &vec![0xa5; 4 << 20]).unwrap();
        let before = host_allocated(&mem);
        assert!(before >= 4 << 20, "{before}");
        let asked = b.set_target(1024);
        assert_eq!(b.wait_answer(asked, Duration::ZERO), None);
        assert_eq!(b.take(), 1024);
        b.report(&mem, 0x1000, 1, status::DONE).unwrap();
        assert_eq!(b.wait_answer(asked, Duration::ZERO), Some((1024, false)));
        assert_eq!(b.released_pages(), 1024);
        let after = host_allocated(&mem);
        assert!(after + (4 << 20) <= before, "{before} -> {after}");
        assert_eq!(
            mem.read_vec(pool_base, 1).unwrap(),
            [0],
            "punched pages read as zeros"
        );
        // The same run again is refused, and so are bad arguments.
        assert_eq!(
            b.report(&mem, 0x1000, 1, status::DONE),
            Err(HcError::InvalidArgument)
        );
        assert_eq!(
            b.report(&mem, 0x1000, MAX_RANGES as u64 + 1, status::DONE),
            Err(HcError::TooLarge)
        );
        assert_eq!(b.report(&mem, 0x1000, 0, 7), Err(HcError::InvalidArgument));
        assert_eq!(
            b.report(&mem, mem.size(), 1, status::DONE),
            Err(HcError::BadAddress)
        );
        // A guest that falls short: its balloon is the target from then on.
        let asked = b.set_target(4000);
        b.take();
        b.report(&mem, 0, 0, status::SHORT).unwrap();
        assert_eq!(b.wait_answer(asked, Duration::ZERO), Some((1024, true)));
        assert_eq!(b.take(), 1024);
    }
}
