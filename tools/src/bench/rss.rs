//! `pvmux.host_rss_per_tenant`: host memory a tenant costs beyond its guest RAM.
//!
//! For each sandbox process: `RssAnon + RssFile + VmPTE` from `/proc/PID/status` (`RssShmem`
//! is left out: it is guest RAM and the control pages, both memfds). Added to that: the host
//! process's own growth while the tenants run (`VmRSS - RssShmem + VmPTE`, after minus
//! before), divided by the number of tenants — its service threads, buffers, bookkeeping and
//! the page tables of its own mappings of guest memory.

use std::sync::Arc;
use std::time::Duration;

use pvmux_host::{Host, KernelImage};
use pvmux_hypercalls::bootargs::Command;

use super::tenants;

/// Guest memory of each idle tenant.
pub const IDLE_MEM: u64 = 64 << 20;
/// What each idle tenant does: `sleep=5000 exit=0`.
pub const IDLE_COMMANDS: [Command<'static>; 2] = [Command::Sleep(5000), Command::Exit(0)];
/// Time given to the idle tenants to finish booting and settle before measuring.
const SETTLE: Duration = Duration::from_millis(300);

/// Fields of a `/proc/*/status` file, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `VmRSS`.
    pub vm_rss: u64,
    /// `RssAnon`.
    pub rss_anon: u64,
    /// `RssFile`.
    pub rss_file: u64,
    /// `RssShmem`.
    pub rss_shmem: u64,
    /// `VmPTE`.
    pub vm_pte: u64,
}

impl Status {
    /// Parses the text of a `/proc/*/status` file (values in kB).
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let kib = value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
            let field = match key {
                "VmRSS" => &mut s.vm_rss,
                "RssAnon" => &mut s.rss_anon,
                "RssFile" => &mut s.rss_file,
                "RssShmem" => &mut s.rss_shmem,
                "VmPTE" => &mut s.vm_pte,
                _ => continue,
            };
            *field = kib * 1024;
        }
        s
    }

    /// Reads `/proc/<pid>/status` (`pid` `None`: this process).
    pub fn read(pid: Option<u32>) -> std::io::Result<Self> {
        let path = match pid {
            Some(p) => format!("/proc/{p}/status"),
            None => "/proc/self/status".to_owned(),
        };
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Memory of a sandbox that is not guest RAM: `RssAnon + RssFile + VmPTE`.
    pub fn beyond_guest_ram(&self) -> u64 {
        self.rss_anon + self.rss_file + self.vm_pte
    }

    /// Memory of the host process that is not shared memory: `VmRSS - RssShmem + VmPTE`.
    pub fn host_private(&self) -> u64 {
        self.vm_rss.saturating_sub(self.rss_shmem) + self.vm_pte
    }
}

/// Launches `n` idle tenants, measures, kills them; returns bytes per tenant.
pub fn per_tenant(host: &Host, kernel: &Arc<KernelImage>, n: usize) -> Result<Vec<f64>, String> {
    let before = Status::read(None).map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let mut running = Vec::with_capacity(n);
    let result = (|| {
        for i in 0..n {
            let l = tenants::launch(
                host,
                kernel,
                &format!("idle{i}"),
                IDLE_MEM,
                tenants::commands(&IDLE_COMMANDS)?,
                Box::new(std::io::sink()),
            )
            .map_err(|e| format!("cannot launch tenant {i}: {e}"))?;
            running.push(l.tenant);
        }
        for t in &running {
            if !t.wait_started(Duration::from_secs(10)) {
                return Err("an idle tenant did not start".to_owned());
            }
        }
        std::thread::sleep(SETTLE);
        let after = Status::read(None).map_err(|e| format!("reading /proc/self/status: {e}"))?;
        let host_share = after.host_private().saturating_sub(before.host_private()) / n as u64;
        running
            .iter()
            .map(|t| {
                let s = Status::read(Some(t.sandbox_pid()))
                    .map_err(|e| format!("reading /proc/{}/status: {e}", t.sandbox_pid()))?;
                Ok((s.beyond_guest_ram() + host_share) as f64)
            })
            .collect()
    })();
    for t in &running {
        t.kill();
    }
    for t in running {
        let _ = t.wait();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = Status::parse(
            "Name:\tpvmux-sandbox\nVmRSS:\t    5000 kB\nRssAnon:\t     100 kB\n\
             RssFile:\t       4 kB\nRssShmem:\t    4896 kB\nVmPTE:\t      60 kB\nThreads:\t3\n",
        );
        assert_eq!(s.vm_rss, 5000 * 1024);
        assert_eq!(s.beyond_guest_ram(), 164 * 1024);
        assert_eq!(s.host_private(), 164 * 1024);
        let me = Status::read(None).unwrap();
        assert!(me.vm_rss > 0);
    }
}
