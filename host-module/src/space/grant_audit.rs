//! The host's CPU audit of user sandboxes (docs/SECURITY.md, "User threads run only on a
//! granted vCPU").
//!
//! A slot thread serves only requests the guest kernel granted it (the grant words of the
//! space's `UserGrant` page), but a program whose thread *was* granted can forge that thread's
//! exit and keep it running after the kernel took the grant back: nothing inside the process
//! can stop that. So the reaper thread, every [`AUDIT_PERIOD_NS`], reads each user sandbox's
//! CPU time (`/proc/PID/stat`, user + system, all its threads) and then what its kernel granted
//! the space ([`allowed_ns`]: the time its slots held grants, plus the linger after each reply),
//! and kills a sandbox whose CPU time exceeds [`cpu_bound_ns`] of that (granted + 1/32 +
//! [`AUDIT_SLACK_NS`](pvmux_hypercalls::user::grant::AUDIT_SLACK_NS)). Before the kill it
//! records the verdict in the grant page ([`UserGrant::audit_killed`], CPU and bound), where
//! the guest kernel reads why the space died. The CPU time is read first, so the grants read
//! afterwards cover at least as much time: the comparison never favours the host.
//!
//! A guest kernel that lies about its grants can only get its own programs killed, or spare
//! them the audit: either way only its own tenant is affected (the tenant's CPU limits bound
//! the whole tenant).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pvmux_hypercalls::user::grant::{allowed_ns, audit, AUDIT_KILLED, AUDIT_PERIOD_NS};
use rustix::fs::Timespec;

use super::Inner;
use crate::sandbox;

/// When the next audit is due, and what the last one saw.
pub(super) struct Audit {
    next: Instant,
    /// Per sandbox pid: what the last audit read (for the log of a kill).
    last: HashMap<i32, Seen>,
}

/// One audit's reading of one sandbox.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: Instant,
    cpu_ns: u64,
    allowed_ns: u64,
}

impl Audit {
    /// The first audit one period from now.
    pub(super) fn new() -> Self {
        Self {
            next: Instant::now() + Duration::from_nanos(AUDIT_PERIOD_NS),
            last: HashMap::new(),
        }
    }

    /// How long the reaper may wait for events before the next audit is due (at least 1 ms).
    pub(super) fn timeout(&self) -> Timespec {
        let left = self
            .next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    }

    /// Audits every live user sandbox of the tenant if a period has passed.
    pub(super) fn run_if_due(&mut self, inner: &Inner) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_nanos(AUDIT_PERIOD_NS);
        self.last = audit_all(inner, &self.last);
    }
}

/// One audit of every live (not destroyed) space that has a grant page; returns what it read
/// of each (`last`: what the audit before read, for the log of a kill). Runs on the reaper
/// thread, the only thread that reaps a spawned sandbox: the pids read here stay ours while
/// it runs; one forked from the tenant's template is checked to be alive after its read.
fn audit_all(inner: &Inner, last: &HashMap<i32, Seen>) -> HashMap<i32, Seen> {
    let mut seen = HashMap::new();
    let targets: Vec<_> = {
        let st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closed {
            return seen;
        }
        st.entries
            .values()
            .filter(|e| !e.destroyed)
            .filter_map(|e| {
                Some((
                    e.pid,
                    e.grant_gpa?,
                    e.ctx_gpa,
                    std::sync::Arc::clone(&e.pidfd),
                ))
            })
            .collect()
    };
    let clock = &inner.cfg.clock;
    for (pid, gpa, ctx_gpa, pidfd) in targets {
        let raw = pid.as_raw_nonzero().get();
        // CPU first, then the grants (which only grow): see the module documentation.
        let at = Instant::now();
        let Some(split) = cpu_split(raw) else {
            continue;
        };
        // Read while the process lives, so the pid was still its own (a sandbox its template
        // reaps frees its pid before the reaper sees its pidfd).
        if sandbox::wait_exited(&pidfd, Some(std::time::Duration::ZERO)) {
            continue;
        }
        let cpu = split.total_ns();
        let Some(g) = inner.mem.user_grant(gpa) else {
            continue;
        };
        let now = clock.tsc_to_ns(crate::clock::rdtsc());
        let allowed = allowed_ns(g, inner.cfg.nr_vcpus, now);
        seen.insert(
            raw,
            Seen {
                at,
                cpu_ns: cpu,
                allowed_ns: allowed,
            },
        );
        let Some(bound) = audit(cpu, allowed) else {
            continue;
        };
        if g.audit_killed.load(std::sync::atomic::Ordering::SeqCst) == AUDIT_KILLED {
            continue; // killed already, being reaped
        }
        g.audit_cpu_ns
            .store(cpu, std::sync::atomic::Ordering::SeqCst);
        g.audit_allowed_ns
            .store(bound, std::sync::atomic::Ordering::SeqCst);
        g.audit_killed
            .store(AUDIT_KILLED, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(
            tenant = %inner.cfg.name,
            pid = raw,
            cpu_ms = cpu / 1_000_000,
            granted_ms = allowed / 1_000_000,
            bound_ms = bound / 1_000_000,
            user_ms = split.user_ns / 1_000_000,
            system_ms = split.system_ns / 1_000_000,
            since_last = %since_last(last.get(&raw), at, cpu, allowed),
            threads_ms = %threads_ms(raw),
            sched = %threads_sched(raw),
            open = %open_grants(g, inner.cfg.nr_vcpus, now),
            slots = %ctx_gpa
                .map(|c| slot_stats(&inner.mem, clock, inner.cfg.nr_vcpus, c))
                .unwrap_or_default(),
            "user sandbox used CPU time its guest kernel never granted: killed"
        );
        sandbox::kill(&pidfd);
    }
    seen
}

/// For the log of a kill: what each slot's counters in the context region say (the sandbox's
/// own count, untrusted: `SLOT:runs=N,interrupts=N,sleeps=N,user_ms=MS,spin_ms=MS`,
/// space-separated), to
/// tell time in user code from time in the stub's own waits and spins.
fn slot_stats(
    mem: &crate::GuestMemory,
    clock: &crate::clock::ClockParams,
    nr_slots: u32,
    ctx_gpa: u64,
) -> String {
    use pvmux_hypercalls::user::{user_slot_offset, user_stat, UserSlot};
    (0..nr_slots.min(pvmux_hypercalls::MAX_VCPUS))
        .map(|i| {
            let base = ctx_gpa
                .saturating_add(user_slot_offset(i))
                .saturating_add(std::mem::offset_of!(UserSlot, stats) as u64);
            let stat = |k: usize| mem.read_u64(base.saturating_add(8 * k as u64)).unwrap_or(0);
            let ms = |k: usize| clock.ticks_to_ns(stat(k)) / 1_000_000;
            let (user_ms, spin_ms) = (ms(user_stat::USER_TICKS), ms(user_stat::SPIN_TICKS));
            format!(
                "{i}:runs={},interrupts={},sleeps={},user_ms={user_ms},spin_ms={spin_ms}",
                stat(user_stat::RUNS),
                stat(user_stat::INTERRUPTS),
                stat(user_stat::SLEEPS)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// For the log of a kill: how the CPU time and the grants grew since the audit before
/// (`MS ms: cpu +MS, granted +MS`), or `none` for a sandbox audited for the first time.
fn since_last(last: Option<&Seen>, at: Instant, cpu_ns: u64, allowed_ns: u64) -> String {
    let Some(l) = last else {
        return "none".to_owned();
    };
    let ms = |ns: u64| ns / 1_000_000;
    format!(
        "{} ms: cpu +{}, granted +{}",
        at.saturating_duration_since(l.at).as_millis(),
        ms(cpu_ns.saturating_sub(l.cpu_ns)),
        ms(allowed_ns.saturating_sub(l.allowed_ns))
    )
}

/// `TID:WHAT` for each thread of process `pid`, space-separated, where `what` reads the
/// thread's `/proc/PID/task/TID` directory (threads it has nothing for are left out).
fn per_thread(pid: i32, what: impl Fn(&std::path::Path) -> Option<String>) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return String::new();
    };
    dir.flatten()
        .filter_map(|t| {
            Some(format!(
                "{}:{}",
                t.file_name().to_string_lossy(),
                what(&t.path())?
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// For the log of a kill: each thread's user and system CPU time in ms (`TID:USER+SYSTEM`,
/// space-separated), to tell one runaway thread from time spread over all of them, and time
/// spent in user code from time the host kernel charged to the thread.
fn threads_ms(pid: i32) -> String {
    per_thread(pid, |dir| {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (u, s) = parse_utime_stime(&stat)?;
        let ms = |ticks: u64| ticks.saturating_mul(1000 / USER_HZ);
        Some(format!("{}+{}", ms(u), ms(s)))
    })
}

/// For the log of a kill: what the host scheduler says of each thread
/// (`TID:RUN_MS/WAIT_MS/SLICES/VOLUNTARY/INVOLUNTARY`, space-separated: CPU time and time
/// spent runnable from `/proc/.../schedstat`, with the number of times it ran; context
/// switches from `status`), to tell a thread that spun from one that was switched in and out.
fn threads_sched(pid: i32) -> String {
    per_thread(pid, |dir| {
        let sched = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        format_sched(&sched, &status)
    })
}

/// `RUN_MS/WAIT_MS/SLICES/VOLUNTARY/INVOLUNTARY` of a thread's `schedstat` and `status`.
fn format_sched(schedstat: &str, status: &str) -> Option<String> {
    let mut f = schedstat.split_ascii_whitespace();
    let mut next = || f.next()?.parse::<u64>().ok();
    let (run, wait, slices) = (next()?, next()?, next()?);
    let switches = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
    };
    Some(format!(
        "{}/{}/{slices}/{}/{}",
        run / 1_000_000,
        wait / 1_000_000,
        switches("voluntary_ctxt_switches:")?,
        switches("nonvoluntary_ctxt_switches:")?
    ))
}

/// For the log of a kill: per slot, how long its current grant has been held and whether a
/// reply's linger is still open (`SLOT:MS+linger`, space-separated; idle slots left out).
fn open_grants(g: &pvmux_hypercalls::user::grant::UserGrant, nr_slots: u32, now: u64) -> String {
    use std::sync::atomic::Ordering::SeqCst;
    (0..nr_slots.min(pvmux_hypercalls::MAX_VCPUS) as usize)
        .filter_map(|i| {
            let since = g.since_ns[i].load(SeqCst);
            let linger = g.replied_ns[i].load(SeqCst) != 0;
            let held = if since != 0 {
                format!("{}", now.saturating_sub(since) / 1_000_000)
            } else if linger {
                "0".to_owned()
            } else {
                return None;
            };
            Some(format!("{i}:{held}{}", if linger { "+linger" } else { "" }))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Clock ticks per second of `/proc` (`USER_HZ`: 100 on x86-64, whatever the kernel's HZ).
const USER_HZ: u64 = 100;

/// A process's CPU time (all threads) in ns, split as `/proc/PID/stat` splits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuSplit {
    user_ns: u64,
    system_ns: u64,
}

impl CpuSplit {
    fn total_ns(self) -> u64 {
        self.user_ns.saturating_add(self.system_ns)
    }
}

/// CPU time (user and system, all threads) of process `pid`, from `/proc/PID/stat`; `None`
/// if it cannot be read (the process is gone).
fn cpu_split(pid: i32) -> Option<CpuSplit> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (utime, stime) = parse_utime_stime(&stat)?;
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / USER_HZ);
    Some(CpuSplit {
        user_ns: ns(utime),
        system_ns: ns(stime),
    })
}

/// `(utime, stime)` (fields 14 and 15, clock ticks) of a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
fn parse_utime_stime(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_parsed_after_the_command_name() {
        let line = "4242 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 250 17 0 0 20 0 3 0";
        assert_eq!(parse_utime_stime(line), Some((250, 17)));
        assert_eq!(parse_utime_stime("1 (x) R 1 2"), None);
        assert_eq!(parse_utime_stime("garbage"), None);
    }

    #[test]
    fn a_kills_log_names_each_thread_and_each_open_grant() {
        // Our own threads: this one and a busy one.
        let busy = std::thread::spawn(|| {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {
                std::hint::black_box(0u64);
            }
        });
        let me = std::process::id();
        let line = threads_ms(me as i32);
        assert!(
            line.split(' ').any(|t| t.starts_with(&format!("{me}:"))),
            "{line}"
        );
        busy.join().expect("busy thread");
        let g = pvmux_hypercalls::user::grant::UserGrant::default();
        assert_eq!(open_grants(&g, 2, 10_000_000), "");
        g.begin(1, 4_000_000);
        assert_eq!(open_grants(&g, 2, 10_000_000), "1:6");
        g.end(1, 9_000_000);
        g.begin(0, 9_500_000);
        assert_eq!(open_grants(&g, 2, 10_000_000), "0:0 1:0+linger");
    }

    #[test]
    fn a_kills_log_reads_each_threads_scheduler_figures() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(
            format_sched("2500000000 1000000 77\n", status).as_deref(),
            Some("2500/1/77/12/3")
        );
        assert_eq!(format_sched("1 2\n", status), None);
        assert_eq!(format_sched("1 2 3\n", "Name:\tx\n"), None);
        // Our own threads: this one at least.
        let me = std::process::id();
        let line = threads_sched(me as i32);
        assert!(
            line.split(' ').any(|t| t.starts_with(&format!("{me}:"))),
            "{line}"
        );
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        let me = std::process::id() as i32;
        let t0 = cpu_split(me).expect("own /proc/PID/stat");
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let t1 = cpu_split(me).expect("again");
        assert!(
            t1.total_ns() >= t0.total_ns() && t1.user_ns >= t0.user_ns,
            "{t0:?} {t1:?}"
        );
    }

    #[test]
    fn a_kills_log_reads_each_slots_counters() {
        use pvmux_hypercalls::user::{user_slot_offset, user_stat, UserSlot};
        let mem = crate::GuestMemory::new(16 << 20).expect("guest memory");
        let clock = crate::clock::ClockParams::test_1ghz();
        let ctx = 8 << 20;
        let stats =
            |i: u32| ctx + user_slot_offset(i) + std::mem::offset_of!(UserSlot, stats) as u64;
        let put =
            |i: u32, k: usize, v: u64| mem.write_u64(stats(i) + 8 * k as u64, v).expect("write");
        put(0, user_stat::RUNS, 12);
        put(0, user_stat::INTERRUPTS, 3);
        put(0, user_stat::SLEEPS, 4);
        put(0, user_stat::USER_TICKS, 250_000_000);
        put(0, user_stat::SPIN_TICKS, 40_000_000);
        put(1, user_stat::RUNS, 1);
        assert_eq!(
            slot_stats(&mem, &clock, 2, ctx),
            "0:runs=12,interrupts=3,sleeps=4,user_ms=250,spin_ms=40 \
             1:runs=1,interrupts=0,sleeps=0,user_ms=0,spin_ms=0"
        );
        // Outside guest memory: zeros, no panic.
        assert_eq!(
            slot_stats(&mem, &clock, 1, u64::MAX - 4096),
            "0:runs=0,interrupts=0,sleeps=0,user_ms=0,spin_ms=0"
        );
    }

    #[test]
    fn a_kills_log_says_how_cpu_and_grants_grew_since_the_audit_before() {
        let at = Instant::now();
        assert_eq!(since_last(None, at, 5, 5), "none");
        let before = Seen {
            at: at - Duration::from_millis(210),
            cpu_ns: 100_000_000,
            allowed_ns: 90_000_000,
        };
        assert_eq!(
            since_last(Some(&before), at, 400_000_000, 120_000_000),
            "210 ms: cpu +300, granted +30"
        );
    }
}
