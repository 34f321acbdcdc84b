//! Grants: which slot thread of a user sandbox may run, and how long the space's slots held
//! a vCPU (docs/ABI.md §16.10).
//!
//! A program can write every byte of its user sandbox — the context region included — so a
//! request in a slot is no proof that the guest kernel handed that slot a vCPU: a program can
//! forge run requests into the idle slots of its own space and wake their threads. The proof
//! is the slot's **grant word** in a [`UserGrant`] page: one page of *guest-kernel* memory per
//! space (below the user pool), which the user stub maps read-only at [`USER_GRANT_BASE`]
//! before its filter is installed, outside the user window, where the filter lets nothing map,
//! unmap or re-protect. Only the guest kernel writes a grant word: `grant[i] = run_seq` of the
//! request it hands slot *i* (published after `run_seq`), `0` once the reply is back. An idle
//! slot thread serves only a grant it has not served yet ([`next_grant`]), and waits for one
//! with every signal blocked, keeping its state in registers (the stub's wait loop).
//!
//! A thread that *was* granted can still forge its own exit and keep running after the kernel
//! took the grant back; nothing inside the process can stop that. So the kernel also publishes
//! the space's **granted time** ([`UserGrant::granted_ns`], [`UserGrant::begin`] /
//! [`UserGrant::end`]), and the host audits every user sandbox's CPU time against it
//! ([`allowed_ns`], [`audit`]): a sandbox that used more than it was granted, plus slack, is
//! killed (and the host says so in [`UserGrant::audit_killed`]).

use core::mem::{offset_of, size_of};
use core::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::USER_CTX_BASE;
use crate::{MAX_VCPUS, PAGE_SIZE};

/// Where the user stub maps the space's [`UserGrant`] page, read-only: above the context
/// region (at most 1 MiB + 4 KiB) and below the stub's per-slot areas (`USER_CTX_BASE +
/// 1 GiB`), outside the user window.
pub const USER_GRANT_BASE: u64 = USER_CTX_BASE + 0x2000_0000;

/// How long after a reply a slot's thread is still counted as granted, at most (ns): the
/// user stub spins ≈ [`super::handoff::USER_SPIN_NS`] for its next request before it sleeps,
/// on CPU time the kernel's vCPU is still spending on that thread. The credit for a reply is
/// `min(time until the slot's next grant, LINGER_NS)`: the spin and half of it again (for the
/// clock reads between spin iterations and the futex call that ends it).
pub const LINGER_NS: u64 = super::handoff::USER_SPIN_NS + super::handoff::USER_SPIN_NS / 2;

/// Fixed part of the CPU time a user sandbox may use beyond its grants before the host kills
/// it (ns): its start-up, a spare's wait, timer and scheduling noise.
pub const AUDIT_SLACK_NS: u64 = 250_000_000;
/// Proportional part of the slack: `granted >> AUDIT_SLACK_SHIFT` (1/32, ≈ 3 %) for the
/// stub's work around each hand-off that falls outside the kernel's measurement.
pub const AUDIT_SLACK_SHIFT: u32 = 5;
/// How often the host audits every user sandbox of a tenant (ns).
pub const AUDIT_PERIOD_NS: u64 = 200_000_000;

/// [`UserGrant::audit_killed`]: the host killed the sandbox for CPU time beyond its grants.
pub const AUDIT_KILLED: u32 = 1;

/// One page of guest-kernel memory per space: grant words and the space's granted time
/// (guest kernel), its reaped word and audit verdict (host). Every field is an atomic: three
/// parties (guest kernel, host, and read-only the user sandbox) access it concurrently.
#[derive(Debug)]
#[repr(C)]
pub struct UserGrant {
    /// Per slot: the `run_seq` of the request the guest kernel handed it and has not got back
    /// yet; 0 = none (kernel).
    pub grant: [AtomicU32; MAX_VCPUS as usize],
    /// Per slot: guest time (ns, never 0) at which its current grant began; 0 = none held
    /// (kernel).
    pub since_ns: [AtomicU64; MAX_VCPUS as usize],
    /// Per slot: guest time (ns, never 0) of its last reply whose linger credit
    /// ([`LINGER_NS`]) is not in `granted_ns` yet; 0 = none (kernel).
    pub replied_ns: [AtomicU64; MAX_VCPUS as usize],
    /// Time (ns) the space's slots held grants, summed over slots, plus their linger credits:
    /// only ever grows (kernel).
    pub granted_ns: AtomicU64,
    /// Set to 1 by the host once the sandbox process is reaped (the `SpaceCreate` reaped
    /// word): kernel memory, so the sandbox cannot forge it (host).
    pub reaped: AtomicU32,
    /// [`AUDIT_KILLED`] once the host has killed the sandbox for CPU time beyond its grants;
    /// written before the kill (host).
    pub audit_killed: AtomicU32,
    /// The sandbox's CPU time (ns) at that audit (host).
    pub audit_cpu_ns: AtomicU64,
    /// What it was allowed at that audit ([`allowed_ns`] plus slack, ns) (host).
    pub audit_allowed_ns: AtomicU64,
    /// Reserved, 0.
    pub _reserved: [AtomicU64; 348],
}

const _: () = assert!(size_of::<UserGrant>() == PAGE_SIZE as usize);
const _: () = assert!(offset_of!(UserGrant, since_ns) == 0x100);
const _: () = assert!(offset_of!(UserGrant, replied_ns) == 0x300);
const _: () = assert!(offset_of!(UserGrant, granted_ns) == 0x500);
const _: () = assert!(offset_of!(UserGrant, reaped) == 0x508);
const _: () = assert!(offset_of!(UserGrant, audit_killed) == 0x50c);
const _: () = assert!(offset_of!(UserGrant, audit_cpu_ns) == 0x510);
const _: () = assert!(offset_of!(UserGrant, audit_allowed_ns) == 0x518);

/// Byte offset of slot `i`'s grant word in the page (what the stub adds to
/// [`USER_GRANT_BASE`]).
pub const fn grant_offset(i: u32) -> u64 {
    offset_of!(UserGrant, grant) as u64 + 4 * i as u64
}

/// Byte offset of [`UserGrant::reaped`] (the host's reaped word of the space).
pub const REAPED_OFFSET: u64 = offset_of!(UserGrant, reaped) as u64;

impl Default for UserGrant {
    fn default() -> Self {
        Self::new()
    }
}

impl UserGrant {
    /// An all-zero page: no grants, nothing counted (what the kernel starts from).
    pub const fn new() -> Self {
        Self {
            grant: [const { AtomicU32::new(0) }; MAX_VCPUS as usize],
            since_ns: [const { AtomicU64::new(0) }; MAX_VCPUS as usize],
            replied_ns: [const { AtomicU64::new(0) }; MAX_VCPUS as usize],
            granted_ns: AtomicU64::new(0),
            reaped: AtomicU32::new(0),
            audit_killed: AtomicU32::new(0),
            audit_cpu_ns: AtomicU64::new(0),
            audit_allowed_ns: AtomicU64::new(0),
            _reserved: [const { AtomicU64::new(0) }; 348],
        }
    }

    /// Guest kernel: slot `i` is about to be handed a request at guest time `now`. Adds the
    /// slot's linger credit of its last reply (the time since, at most [`LINGER_NS`]) and
    /// starts counting.
    ///
    /// Slot `i`'s words have one writer, the vCPU that owns the slot, so they are loaded and
    /// stored (release: in this order for a reader, who acquires), without a locked
    /// instruction; only the shared total takes an atomic add.
    pub fn begin(&self, i: usize, now: u64) {
        let r = self.replied_ns[i].load(Relaxed);
        if r != 0 {
            self.replied_ns[i].store(0, Release);
            self.granted_ns
                .fetch_add(now.saturating_sub(r).min(LINGER_NS), SeqCst);
        }
        self.since_ns[i].store(now.max(1), Release);
    }

    /// Guest kernel: slot `i`'s request came back (or was given up) at guest time `now`.
    /// Counts the grant (into `granted_ns` first, then clears `since_ns`, so a concurrent
    /// reader never misses it) and starts the linger credit.
    pub fn end(&self, i: usize, now: u64) {
        let s = self.since_ns[i].load(Relaxed);
        if s != 0 {
            self.granted_ns.fetch_add(now.saturating_sub(s), SeqCst);
        }
        self.replied_ns[i].store(now.max(1), Release);
        self.since_ns[i].store(0, Release);
    }
}

/// What a user sandbox may have used by guest time `now` (ns): its granted time, the grants
/// its slots hold now, and a full [`LINGER_NS`] per slot whose linger is still open. Reads
/// each slot's `since_ns` and `replied_ns` before the total, so a reply the kernel counts
/// meanwhile is counted twice rather than missed (only a linger credit being moved into the
/// total, at most [`LINGER_NS`] per slot, can be missed; the slack covers it).
pub fn allowed_ns(g: &UserGrant, nr_slots: u32, now: u64) -> u64 {
    let mut open = 0u64;
    for i in 0..(nr_slots.min(MAX_VCPUS) as usize) {
        let s = g.since_ns[i].load(SeqCst);
        if s != 0 {
            open = open.saturating_add(now.saturating_sub(s));
        }
        if g.replied_ns[i].load(SeqCst) != 0 {
            open = open.saturating_add(LINGER_NS);
        }
    }
    g.granted_ns.load(SeqCst).saturating_add(open)
}

/// The CPU time a sandbox granted `allowed` ns may use: `allowed + allowed / 32 +
/// AUDIT_SLACK_NS`.
pub const fn cpu_bound_ns(allowed: u64) -> u64 {
    allowed
        .saturating_add(allowed >> AUDIT_SLACK_SHIFT)
        .saturating_add(AUDIT_SLACK_NS)
}

/// The host's verdict on a sandbox that used `cpu_ns` of CPU time (read *before* `allowed`):
/// `Some(bound)` if it used more than [`cpu_bound_ns`]`(allowed)` and must be killed.
pub const fn audit(cpu_ns: u64, allowed: u64) -> Option<u64> {
    let bound = cpu_bound_ns(allowed);
    if cpu_ns > bound {
        Some(bound)
    } else {
        None
    }
}

/// The grant a waiting slot thread may serve next, given the grant word's value `grant` and
/// the last grant it served, `last`: a non-zero value it has not served. (The kernel clears
/// the word only after the reply, so an idle thread sees its own last grant again until
/// then; it must not serve it twice.)
pub const fn next_grant(grant: u32, last: u32) -> Option<u32> {
    if grant != 0 && grant != last {
        Some(grant)
    } else {
        None
    }
}

/// The `run_seq` after `seq`: incremented, wrapping, skipping 0 (which means "no grant").
pub const fn next_seq(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        0 => 1,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    fn page() -> Box<UserGrant> {
        Box::new(UserGrant::new())
    }

    #[test]
    fn a_slot_serves_each_grant_once() {
        assert_eq!(next_grant(0, 0), None);
        assert_eq!(next_grant(5, 0), Some(5));
        assert_eq!(
            next_grant(5, 5),
            None,
            "its own last grant, not yet cleared"
        );
        assert_eq!(next_grant(6, 5), Some(6));
        assert_eq!(next_grant(0, 5), None);
    }

    #[test]
    fn sequences_skip_zero() {
        assert_eq!(next_seq(0), 1);
        assert_eq!(next_seq(7), 8);
        assert_eq!(next_seq(u32::MAX), 1);
    }

    #[test]
    fn granted_time_counts_grants_and_linger() {
        let g = page();
        g.begin(0, 1_000);
        assert_eq!(
            allowed_ns(&g, 2, 1_500),
            500,
            "an open grant counts up to now"
        );
        g.end(0, 2_000);
        assert_eq!(g.granted_ns.load(SeqCst), 1_000);
        assert_eq!(
            allowed_ns(&g, 2, 2_010),
            1_000 + LINGER_NS,
            "open linger: full credit"
        );
        // Next grant 10 µs later: 10 µs of linger.
        g.begin(0, 12_000);
        assert_eq!(g.granted_ns.load(SeqCst), 1_000 + 10_000);
        g.end(0, 13_000);
        // Next grant much later: the linger is capped.
        g.begin(0, 10_000_000);
        assert_eq!(g.granted_ns.load(SeqCst), 12_000 + LINGER_NS);
        g.end(0, 10_000_100);
        // Two slots add up.
        g.begin(1, 20_000_000);
        g.end(1, 21_000_000);
        assert_eq!(g.granted_ns.load(SeqCst), 12_100 + LINGER_NS + 1_000_000);
        assert!(allowed_ns(&g, 2, 30_000_000) >= g.granted_ns.load(SeqCst) + 2 * LINGER_NS);
    }

    #[test]
    fn a_forged_exit_is_outside_the_granted_time() {
        // The kernel counted 100 ms of grants; the sandbox ran a thread for 1 s more.
        let g = page();
        g.begin(0, 1);
        g.end(0, 100_000_001);
        let allowed = allowed_ns(&g, 1, 1_100_000_001);
        assert_eq!(allowed, 100_000_000 + LINGER_NS);
        assert!(audit(1_100_000_000, allowed).is_some());
        // Honest use of the whole grant, and the slack, pass.
        assert!(audit(100_000_000, allowed).is_none());
        assert!(audit(cpu_bound_ns(allowed), allowed).is_none());
        assert!(audit(cpu_bound_ns(allowed) + 1, allowed).is_some());
        // A space never granted anything may still use the fixed slack (start-up).
        assert!(audit(AUDIT_SLACK_NS, 0).is_none());
        assert!(audit(AUDIT_SLACK_NS + 1, 0).is_some());
    }

    #[test]
    fn bounds_saturate() {
        assert_eq!(cpu_bound_ns(u64::MAX), u64::MAX);
        assert!(audit(u64::MAX, u64::MAX).is_none());
        let g = page();
        g.since_ns[0].store(1, SeqCst);
        assert_eq!(allowed_ns(&g, 64, u64::MAX), u64::MAX - 1);
        assert_eq!(
            allowed_ns(&g, 1000, 0),
            0,
            "more slots than exist are ignored"
        );
    }
}
