//! Restarting crashed tenants: [`RestartPolicy`] and [`run_with_restarts`].

use std::str::FromStr;
use std::time::Duration;

use crate::{CrashReport, TenantOutcome};

/// First backoff before a restart.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest backoff before a restart.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Restarts allowed by `on-crash` without a count.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// When a tenant is started again after it ended. A clean exit (any exit code) is never
/// restarted; a crash is, up to `max_restarts` times, with exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// How many times a crashed tenant is restarted (0 = never).
    pub max_restarts: u32,
    /// Backoff before the first restart; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::never()
    }
}

impl RestartPolicy {
    /// Never restart.
    pub const fn never() -> Self {
        Self::on_crash(0)
    }

    /// Restart a crashed tenant up to `n` times (100 ms, 200 ms, 400 ms ... capped at 5 s).
    pub const fn on_crash(n: u32) -> Self {
        Self {
            max_restarts: n,
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }

    /// The wait before restart number `k` (1-based).
    pub fn backoff(&self, k: u32) -> Duration {
        let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Error parsing a restart policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart policy {0:?}: expected `no`, `on-crash` or `on-crash:N`")]
pub struct ParseRestartPolicyError(String);

impl FromStr for RestartPolicy {
    type Err = ParseRestartPolicyError;

    /// `no` / `never`, `on-crash` (3 restarts) or `on-crash:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseRestartPolicyError(s.to_owned());
        match s.trim() {
            "no" | "never" => Ok(Self::never()),
            "on-crash" => Ok(Self::on_crash(DEFAULT_MAX_RESTARTS)),
            t => {
                let n = t.strip_prefix("on-crash:").ok_or_else(err)?;
                n.parse().map(Self::on_crash).map_err(|_| err())
            }
        }
    }
}

/// A crash that is followed by a restart (passed to the observer of [`run_with_restarts`]).
#[derive(Debug)]
pub struct Restart<'a> {
    /// The crash.
    pub report: &'a CrashReport,
    /// Which restart this is (1-based).
    pub restart: u32,
    /// The policy's maximum.
    pub max_restarts: u32,
    /// How long the runner waits before it.
    pub backoff: Duration,
}

/// Runs a tenant through `run_once` (given the attempt number, 0 for the first run) and
/// restarts it according to `policy` while it crashes. Before each restart, `on_restart` sees
/// the crash; then the backoff is slept. Returns the outcome of the last run (whose crash,
/// if any, has not been passed to `on_restart`), or the first error of `run_once`.
pub fn run_with_restarts<E>(
    policy: &RestartPolicy,
    mut run_once: impl FnMut(u32) -> Result<TenantOutcome, E>,
    mut on_restart: impl FnMut(&Restart<'_>),
) -> Result<TenantOutcome, E> {
    let mut attempt = 0;
    loop {
        let outcome = run_once(attempt)?;
        let TenantOutcome::Crashed(report) = &outcome else {
            return Ok(outcome);
        };
        if attempt >= policy.max_restarts {
            return Ok(outcome);
        }
        attempt += 1;
        let backoff = policy.backoff(attempt);
        on_restart(&Restart {
            report,
            restart: attempt,
            max_restarts: policy.max_restarts,
            backoff,
        });
        std::thread::sleep(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CrashCause;

    fn crash() -> TenantOutcome {
        TenantOutcome::Crashed(Box::new(CrashReport::new(
            "t",
            CrashCause::GuestPanic {
                message: "boom".into(),
            },
        )))
    }

    #[test]
    fn parses_policies() {
        assert_eq!("no".parse(), Ok(RestartPolicy::never()));
        assert_eq!("on-crash".parse(), Ok(RestartPolicy::on_crash(3)));
        assert_eq!("on-crash:7".parse(), Ok(RestartPolicy::on_crash(7)));
        assert_eq!("on-crash:0".parse(), Ok(RestartPolicy::never()));
        for bad in [
            "",
            "always",
            "on-crash:",
            "on-crash:-1",
            "on-crash:x",
            "on-crash3",
        ] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RestartPolicy::on_crash(100);
        let ms = |k| p.backoff(k).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
        assert_eq!(ms(6), 3200);
        assert_eq!(ms(7), 5000);
        assert_eq!(ms(40), 5000);
        assert_eq!(ms(u32::MAX), 5000);
    }

    fn fast(n: u32) -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RestartPolicy::on_crash(n)
        }
    }

    #[test]
    fn crashes_are_restarted_up_to_the_limit() {
        let mut runs = 0;
        let mut seen = Vec::new();
        let out = run_with_restarts::<()>(
            &fast(2),
            |a| {
                assert_eq!(a, runs);
                runs += 1;
                Ok(crash())
            },
            |r| seen.push((r.restart, r.max_restarts)),
        );
        assert!(matches!(out, Ok(TenantOutcome::Crashed(_))));
        assert_eq!(runs, 3);
        assert_eq!(seen, [(1, 2), (2, 2)]);
    }

    #[test]
    fn clean_exits_and_recoveries_end_the_loop() {
        let mut runs = 0;
        let out = run_with_restarts::<()>(
            &fast(3),
            |_| {
                runs += 1;
                Ok(TenantOutcome::Exited(5))
            },
            |_| panic!("no restart"),
        );
        assert_eq!(out, Ok(TenantOutcome::Exited(5)));
        assert_eq!(runs, 1);
        // Crash, crash, then success: the last outcome wins.
        let out = run_with_restarts::<()>(
            &fast(3),
            |a| {
                Ok(if a < 2 {
                    crash()
                } else {
                    TenantOutcome::Exited(0)
                })
            },
            |_| {},
        );
        assert_eq!(out, Ok(TenantOutcome::Exited(0)));
        // Errors stop at once.
        let out = run_with_restarts(&fast(3), |_| Err("launch failed"), |_| {});
        assert_eq!(out, Err("launch failed"));
        // Never: one run.
        let mut runs = 0;
        let _ = run_with_restarts::<()>(
            &RestartPolicy::never(),
            |_| {
                runs += 1;
                Ok(crash())
            },
            |_| panic!("no restart"),
        );
        assert_eq!(runs, 1);
    }
}
