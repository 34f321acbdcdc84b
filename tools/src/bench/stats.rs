//! Sample statistics: median and 99th percentile.

/// Median and 99th percentile of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The median (for an even count, the mean of the two middle samples).
    pub median: f64,
    /// The 99th percentile (nearest rank: element `ceil(0.99 n) - 1` of the sorted samples).
    pub p99: f64,
    /// Number of samples.
    pub samples: u64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). `None` if there are none or any is not finite.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        let n = samples.len();
        if n == 0 || samples.iter().any(|v| !v.is_finite()) {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        let p99_rank = (99 * n).div_ceil(100).max(1) - 1;
        Some(Self {
            median,
            p99: samples[p99_rank],
            samples: n as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.median, s.p99, s.samples), (50.5, 99.0, 100));
        let s = Summary::of(&mut [3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.p99, s.samples), (2.0, 3.0, 3));
        let s = Summary::of(&mut [7.0]).unwrap();
        assert_eq!((s.median, s.p99), (7.0, 7.0));
        assert_eq!(Summary::of(&mut []), None);
        assert_eq!(Summary::of(&mut [1.0, f64::NAN]), None);
    }
}
