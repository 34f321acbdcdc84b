//! `*.contended`: figures measured again while two CPU-bound host processes run.
//!
//! Cloud hosts are shared: what a guest system call costs when the host's CPUs are busy is
//! what a tenant gets most of the time. This module starts [`HOGS`] CPU hogs
//! ([`pvmux_bench_peers::CpuHogs`]: forked busy loops at the bench's nice value, killed and
//! reaped afterwards, and killed by the kernel if `pvmux bench` dies), then, with the hogs
//! running, measures
//!
//! * the user-mode workload ([`super::user`]) natively, under gVisor, in pvmux and in pvmux's
//!   trusted in-process mode, one after the other: `PEER.user.FIGURE.contended` for each of
//!   [`FIGURES`];
//! * the guest's hypercall figures ([`super::guest`]): `pvmux.hypercall.NAME.contended`.
//!
//! The idle figures of the same run are measured before the hogs start, so each contended
//! figure can be read next to its idle one.

use std::sync::Arc;

use pvmux_bench_peers::CpuHogs;
use pvmux_host::{Host, KernelImage};

use super::progress::Progress;
use super::stats::Summary;
use super::user::{self, Peer};
use super::{guest, BENCHMARKS};

/// CPU-bound host processes running during the measurements.
pub const HOGS: usize = 2;
/// The suffix of every figure of this module.
pub const SUFFIX: &str = ".contended";
/// The user-mode figures measured under load (after `user.`).
pub const FIGURES: [&str; 4] = [
    "syscall_getppid",
    "page_fault",
    "fork_exit_wait",
    "pipe_pingpong",
];
/// The systems the user-mode figures are measured on under load.
pub const PEERS: [Peer; 4] = [Peer::Native, Peer::Gvisor, Peer::Pvmux, Peer::PvmuxTrusted];
/// The guest figures measured under load (after `pvmux.`).
pub const GUEST: [&str; 2] = ["hypercall.spin", "hypercall.block"];

/// `PEER.user.FIGURE.contended` split into its peer and figure (one of [`FIGURES`]).
pub fn split(name: &str) -> Option<(Peer, &str)> {
    let (peer, figure) = user::split(name.strip_suffix(SUFFIX)?)?;
    (PEERS.contains(&peer) && FIGURES.contains(&figure)).then_some((peer, figure))
}

/// `pvmux.NAME.contended` for a guest figure `NAME` of [`GUEST`].
pub fn guest_split(name: &str) -> Option<&str> {
    let short = name.strip_suffix(SUFFIX)?.strip_prefix("pvmux.")?;
    GUEST.contains(&short).then_some(short)
}

/// Whether `name` is one of this module's figures.
pub fn is_contended(name: &str) -> bool {
    split(name).is_some() || guest_split(name).is_some()
}

/// The catalogue's own copy of `name`.
fn catalogue(name: &str) -> Option<&'static str> {
    BENCHMARKS.iter().find(|d| d.name == name).map(|d| d.name)
}

/// How many progress steps [`run`] takes for `wanted`.
pub fn steps(wanted: &[&'static str]) -> usize {
    let peers = PEERS
        .iter()
        .filter(|p| {
            wanted
                .iter()
                .any(|n| split(n).is_some_and(|(q, _)| q == **p))
        })
        .count();
    peers + usize::from(wanted.iter().any(|n| guest_split(n).is_some()))
}

/// Runs the wanted `*.contended` figures (full catalogue names) under [`HOGS`] CPU hogs and
/// returns one result each.
pub fn run(
    host: &Host,
    kernel: &Arc<KernelImage>,
    wanted: &[&'static str],
    quick: bool,
    guest_timeout: std::time::Duration,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let hogs = match CpuHogs::start(HOGS) {
        Ok(h) => h,
        Err(e) => {
            let why = format!("cannot start the CPU hogs: {e}");
            return wanted.iter().map(|&n| (n, Err(why.clone()))).collect();
        }
    };
    tracing::debug!(pids = ?hogs.pids(), "CPU hogs running");
    let mut out = Vec::new();
    // The user-mode figures, by their idle names (what `user::run` measures).
    let idle: Vec<&'static str> = wanted
        .iter()
        .filter(|n| split(n).is_some())
        .filter_map(|n| catalogue(n.strip_suffix(SUFFIX)?))
        .collect();
    if !idle.is_empty() {
        for (name, r) in user::run(host, kernel, &idle, quick, progress) {
            if let Some(c) = catalogue(&format!("{name}{SUFFIX}")) {
                out.push((c, r));
            }
        }
    }
    let guest_wanted: Vec<&'static str> = GUEST
        .into_iter()
        .filter(|g| wanted.iter().any(|n| guest_split(n) == Some(*g)))
        .collect();
    if !guest_wanted.is_empty() {
        progress.start(&format!(
            "{} guest figure(s) next to {HOGS} CPU hogs",
            guest_wanted.len()
        ));
        for (name, r) in guest::run(host, kernel, &guest_wanted, quick, guest_timeout, progress) {
            if let Some(c) = catalogue(&format!("pvmux.{name}{SUFFIX}")) {
                out.push((c, r));
            }
        }
        progress.inc();
    }
    drop(hogs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            split("pvmux.user.syscall_getppid.contended"),
            Some((Peer::Pvmux, "syscall_getppid"))
        );
        assert_eq!(
            split("native.user.pipe_pingpong.contended"),
            Some((Peer::Native, "pipe_pingpong"))
        );
        assert_eq!(split("pvmux.user.syscall_getppid"), None);
        assert_eq!(split("uml.user.syscall_getppid.contended"), None);
        assert_eq!(split("pvmux.user.clock_gettime.contended"), None);
        assert_eq!(
            guest_split("pvmux.hypercall.block.contended"),
            Some("hypercall.block")
        );
        assert_eq!(guest_split("pvmux.halt_wake.contended"), None);
        // Every figure of the module is in the catalogue, and its idle twin too.
        for p in PEERS {
            for f in FIGURES {
                let idle = format!("{}.user.{f}", p.prefix());
                assert!(catalogue(&idle).is_some(), "{idle}");
                assert!(catalogue(&format!("{idle}{SUFFIX}")).is_some(), "{idle}");
            }
        }
        for g in GUEST {
            assert!(catalogue(&format!("pvmux.{g}{SUFFIX}")).is_some(), "{g}");
        }
        let all: Vec<_> = BENCHMARKS.iter().filter(|d| is_contended(d.name)).collect();
        assert_eq!(all.len(), PEERS.len() * FIGURES.len() + GUEST.len());
    }
}
