//! Sample statistics and the `@bench` number format.

use core::fmt;

/// A duration in picoseconds, displayed as nanoseconds with three fractional digits
/// (`2125` → `2.125`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ps(pub(crate) u64);

impl fmt::Display for Ps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Median and 99th percentile of a benchmark's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The median (for an even count, the mean of the two middle samples).
    pub(crate) median: Ps,
    /// The 99th percentile: element `ceil(0.99 * n) - 1` of the sorted samples.
    pub(crate) p99: Ps,
    /// Number of samples.
    pub(crate) samples: usize,
}

impl Summary {
    /// Summarises `samples` (picoseconds; sorted in place). `None` if there are none.
    pub(crate) fn of(samples: &mut [u64]) -> Option<Self> {
        let n = samples.len();
        if n == 0 {
            return None;
        }
        samples.sort_unstable();
        let p99_rank = (99 * n).div_ceil(100).max(1) - 1;
        Some(Self {
            median: Ps(if n % 2 == 1 {
                samples[n / 2]
            } else {
                samples[n / 2 - 1] / 2
                    + samples[n / 2] / 2
                    + (samples[n / 2 - 1] % 2 + samples[n / 2] % 2) / 2
            }),
            p99: Ps(samples[p99_rank]),
            samples: n,
        })
    }
}
