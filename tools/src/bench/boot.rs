//! `pvmux.boot.*`: how long a tenant takes from the launch call to its first guest instruction,
//! and to the end of a full self-test.

use std::sync::Arc;
use std::time::Duration;

use pvmux_host::{Host, KernelImage, TenantOutcome};
use pvmux_hypercalls::bootargs::Command;

use super::progress::Progress;
use super::tenants::{self, GUEST_MEM};

/// Longest a benchmark boot may take before it counts as failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a self-test may take.
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Times `reps` launches of the kernel with `exit=0` (after one warm-up launch): ns from just
/// before [`Host::launch`] to vCPU 0's first guest instruction, as the stub timestamps it.
pub fn first_instruction(
    host: &Host,
    kernel: &Arc<KernelImage>,
    reps: usize,
    progress: &Progress,
) -> Result<Vec<f64>, String> {
    let mut samples = Vec::with_capacity(reps);
    for i in 0..=reps {
        let l = tenants::launch(
            host,
            kernel,
            "boot",
            GUEST_MEM,
            tenants::commands(&[Command::Exit(0)])?,
            Box::new(std::io::sink()),
        )
        .map_err(|e| format!("cannot launch: {e}"))?;
        let started = l.tenant.wait_started(BOOT_TIMEOUT);
        let clock = l.tenant.clock();
        let first = l.tenant.boot_times().first_insn_ns;
        let (outcome, _) = tenants::wait(l.tenant, BOOT_TIMEOUT);
        progress.inc();
        let first = match (started, first) {
            (true, Some(ns)) => ns,
            _ => return Err(format!("the guest did not start: {}", describe(&outcome))),
        };
        if i == 0 {
            continue; // warm-up
        }
        let ns = (clock.mono_base_ns + first).saturating_sub(l.start_mono_ns);
        samples.push(ns as f64);
    }
    Ok(samples)
}

/// Times `reps` full self-test runs: ns from just before [`Host::launch`] to the guest's
/// shutdown (exit code 0 required).
pub fn selftest_done(
    host: &Host,
    kernel: &Arc<KernelImage>,
    reps: usize,
    progress: &Progress,
) -> Result<Vec<f64>, String> {
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let l = tenants::launch(
            host,
            kernel,
            "selftest",
            GUEST_MEM,
            tenants::commands(&[Command::Selftest])?,
            Box::new(std::io::sink()),
        )
        .map_err(|e| format!("cannot launch: {e}"))?;
        let (outcome, ended) = tenants::wait(l.tenant, SELFTEST_TIMEOUT);
        progress.inc();
        match (outcome, ended) {
            (TenantOutcome::Exited(0), Some(t)) => {
                samples.push(t.saturating_sub(l.start_mono_ns) as f64)
            }
            (o, _) => return Err(format!("the self-test did not pass: {}", describe(&o))),
        }
    }
    Ok(samples)
}

/// A short description of how a tenant ended.
pub fn describe(outcome: &TenantOutcome) -> String {
    match outcome {
        TenantOutcome::Exited(code) => format!("guest exited with code {code}"),
        TenantOutcome::ProgramKilled(d) => {
            format!("guest exited with code {}: its program was {d}", d.code)
        }
        TenantOutcome::Crashed(r) => format!("guest crashed: {}", r.cause),
    }
}
