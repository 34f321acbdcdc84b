//! `pvmux stats NAME`: per-vCPU run time, hypercalls/s, faults/s and syscalls/s, and the
//! guest's memory in use, from two `vcpu-stats` answers of the monitor (`ctl.sock`) one
//! interval apart. Run time and hypercalls are the host's own measures; syscalls and faults
//! the guest's counters (untrusted, clamped by the host).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::control::{self, Request, VcpuStatsAnswer};
use super::state::{StateDir, Status};
use super::{Format, GlobalArgs};

/// `pvmux stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit (default: one every interval until the tenant ends).
    #[arg(long)]
    pub no_stream: bool,
    /// Output format: a table, or JSON (one object per sample and line).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Seconds between samples (rates are over this interval).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// The tenant's name (or a container's id).
    pub name: String,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("invalid interval {s:?}: seconds, e.g. 1 or 0.5"))?;
    if !secs.is_finite() || !(0.05..=3600.0).contains(&secs) {
        return Err(format!("interval {s} is outside 0.05..=3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One vCPU's figures over an interval.
#[derive(Debug, serde::Serialize)]
struct VcpuRates {
    vcpu: u32,
    /// Host CPU time of its threads since boot (s).
    run_time_s: f64,
    /// Share of one host CPU its threads used over the interval (%).
    cpu_percent: f64,
    hypercalls_per_s: f64,
    faults_per_s: f64,
    syscalls_per_s: f64,
    /// Totals since boot.
    hypercalls: u64,
    faults: u64,
    syscalls: u64,
}

/// One sample.
#[derive(Debug, serde::Serialize)]
struct Sample {
    name: String,
    interval_s: f64,
    vcpus: Vec<VcpuRates>,
    /// The guest's memory in use (bytes), if it answered.
    memory_used: Option<u64>,
    memory_total: u64,
}

fn rates(name: &str, a: &VcpuStatsAnswer, b: &VcpuStatsAnswer) -> Sample {
    let dt = (b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9).max(1e-9);
    let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
    let vcpus = b
        .vcpus
        .iter()
        .map(|v| {
            let old = a.vcpus.iter().find(|o| o.index == v.index);
            let o = old.cloned().unwrap_or_default();
            VcpuRates {
                vcpu: v.index,
                run_time_s: v.run_ns as f64 / 1e9,
                cpu_percent: per_s(o.run_ns, v.run_ns) / 1e9 * 100.0,
                hypercalls_per_s: per_s(o.hypercalls, v.hypercalls),
                faults_per_s: per_s(o.faults, v.faults),
                syscalls_per_s: per_s(o.syscalls, v.syscalls),
                hypercalls: v.hypercalls,
                faults: v.faults,
                syscalls: v.syscalls,
            }
        })
        .collect();
    Sample {
        name: name.to_owned(),
        interval_s: dt,
        vcpus,
        memory_used: b.mem_used,
        memory_total: b.mem_total,
    }
}

fn ask(sd: &StateDir, name: &str) -> anyhow::Result<VcpuStatsAnswer> {
    let r = sd.read()?;
    match r.effective_status() {
        Status::Running | Status::Paused => {}
        s => bail!("{name} is not running: it is {}", s.as_str()),
    }
    let json = control::request(&sd.control_socket(), &Request::VcpuStats)?;
    serde_json::from_str(&json).context("the monitor's figures are malformed")
}

/// `pvmux stats NAME`.
pub(crate) fn stats(g: &GlobalArgs, a: &StatsArgs) -> anyhow::Result<u8> {
    let sd = StateDir::open(&g.root, &a.name)
        .map_err(|_| anyhow::anyhow!("no tenant or container named {:?}", a.name))?;
    let mut last = ask(&sd, &a.name)?;
    loop {
        std::thread::sleep(a.interval);
        let now = match ask(&sd, &a.name) {
            Ok(n) => n,
            // Streaming ends with the tenant.
            Err(_) if !a.no_stream && sd.read().is_ok_and(|r| !r.monitor_alive()) => return Ok(0),
            Err(e) => return Err(e),
        };
        let s = rates(&a.name, &last, &now);
        match a.format {
            Format::Json => println!("{}", serde_json::to_string(&s)?),
            Format::Table => print_table(&s),
        }
        if a.no_stream {
            return Ok(0);
        }
        last = now;
    }
}

fn print_table(s: &Sample) {
    let mem = match s.memory_used {
        Some(u) => format!(
            "{} / {}",
            crate::cli::format_size(u),
            crate::cli::format_size(s.memory_total)
        ),
        None => format!("? / {}", crate::cli::format_size(s.memory_total)),
    };
    println!("{}  memory in use {mem}", s.name);
    println!(
        "{:>4} {:>10} {:>6} {:>13} {:>10} {:>12}",
        "VCPU", "RUN TIME", "CPU%", "HYPERCALLS/S", "FAULTS/S", "SYSCALLS/S"
    );
    for v in &s.vcpus {
        println!(
            "{:>4} {:>9.2}s {:>6.1} {:>13.0} {:>10.0} {:>12.0}",
            v.vcpu,
            v.run_time_s,
            v.cpu_percent,
            v.hypercalls_per_s,
            v.faults_per_s,
            v.syscalls_per_s
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::control::VcpuCounters;
    use super::*;

    #[test]
    fn rates_over_the_interval_never_go_negative() {
        let c = |i, run, h, s| VcpuCounters {
            index: i,
            run_ns: run,
            hypercalls: h,
            syscalls: s,
            faults: 0,
        };
        let a = VcpuStatsAnswer {
            at_ns: 1_000_000_000,
            vcpus: vec![c(0, 0, 10, 100), c(1, 0, 0, 50)],
            mem_used: None,
            mem_total: 1 << 30,
        };
        let b = VcpuStatsAnswer {
            at_ns: 3_000_000_000,
            // vCPU 1's guest counter went backwards (a lying guest): 0, not negative.
            vcpus: vec![c(0, 1_000_000_000, 30, 2100), c(1, 0, 0, 10)],
            mem_used: Some(4 << 20),
            mem_total: 1 << 30,
        };
        let s = rates("t", &a, &b);
        assert_eq!(s.vcpus[0].hypercalls_per_s, 10.0);
        assert_eq!(s.vcpus[0].syscalls_per_s, 1000.0);
        assert_eq!(s.vcpus[0].cpu_percent, 50.0);
        assert_eq!(s.vcpus[1].syscalls_per_s, 0.0);
        assert!(parse_interval("0").is_err() && parse_interval("x").is_err());
    }
}
