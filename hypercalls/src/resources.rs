//! A running guest's resources, live (ABI v6): the host asks the guest kernel for its figures
//! (`pvmux events`) and changes its task limit (`pvmux update --pids-limit`).
//!
//! The host sets its request and raises `pending::RESOURCES` on vCPU 0. The guest then calls
//! `TaskLimitTake` (a new task limit, if the host set one) and applies it, and reports its
//! figures with `StatsReport`: a [`GuestStats`] record at a guest-physical address. The host
//! copies the record once and checks it ([`GuestStats::check`]); the figures are the guest's
//! account, shown as such.

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `TaskLimitTake`'s result for "no limit but the guest kernel's own ceiling" (`pids.limit`
/// -1, `pvmux update --pids-limit -1`); 0 means the host set nothing new.
pub const TASK_LIMIT_NONE: u32 = u32::MAX;

/// The guest's figures (`StatsReport`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GuestStats {
    /// Live tasks (threads, the kernel's own included): what the task limit counts.
    pub tasks: u32,
    /// The task limit in force (the boot arguments' or the host's, under the kernel's
    /// ceiling).
    pub task_limit: u32,
    /// Live processes (thread groups).
    pub processes: u32,
    /// Written as zero.
    pub _reserved: u32,
    /// Guest memory, bytes: the tenant's memory size less the guest's balloon
    /// (`crate::balloon`).
    pub mem_total: u64,
    /// Guest memory free, bytes (as `/proc/meminfo`'s `MemFree`).
    pub mem_free: u64,
}

/// Size of [`GuestStats`].
pub const GUEST_STATS_SIZE: usize = 32;
const _: () = assert!(size_of::<GuestStats>() == GUEST_STATS_SIZE);

impl GuestStats {
    /// Checks a record against the guest's memory size `mem_size` (its maximum): the memory
    /// figures within it, a task limit, no more processes than tasks. Tasks may exceed the limit (it may
    /// have been lowered below the tasks already running, as Linux's `pids.max` may).
    pub fn check(&self, mem_size: u64) -> Result<(), &'static str> {
        if self.mem_total > mem_size {
            return Err("mem_total exceeds the guest's memory size");
        }
        if self.mem_free > self.mem_total {
            return Err("mem_free exceeds mem_total");
        }
        if self.task_limit == 0 {
            return Err("no task limit");
        }
        if self.processes > self.tasks {
            return Err("more processes than tasks");
        }
        Ok(())
    }

    /// Guest memory in use, bytes.
    pub fn mem_used(&self) -> u64 {
        self.mem_total.saturating_sub(self.mem_free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let good = GuestStats {
            tasks: 5,
            task_limit: 100,
            processes: 3,
            _reserved: 0,
            mem_total: 64 << 20,
            mem_free: 32 << 20,
        };
        assert_eq!(good.check(64 << 20), Ok(()));
        assert_eq!(good.mem_used(), 32 << 20);
        assert_eq!(
            good.check(128 << 20),
            Ok(()),
            "a guest with part of its memory ballooned"
        );
        assert!(good.check(32 << 20).is_err());
        for bad in [
            GuestStats {
                mem_free: 65 << 20,
                ..good
            },
            GuestStats {
                task_limit: 0,
                ..good
            },
            GuestStats {
                processes: 6,
                ..good
            },
        ] {
            assert!(bad.check(64 << 20).is_err(), "{bad:?}");
        }
        // A limit lowered below the running tasks is a real state.
        assert_eq!(
            GuestStats {
                task_limit: 2,
                ..good
            }
            .check(64 << 20),
            Ok(())
        );
    }
}
