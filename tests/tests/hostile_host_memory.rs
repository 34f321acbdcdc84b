//! Host memory a tenant can take from a guest user program (docs/SECURITY.md, "Host memory per
//! tenant"): the program `hostmem_attack` (tests/programs/c/) jumps into its user stub's code
//! to map the user pool again and again (dense: 64 MiB aliases read every 2 MiB; sparse: one
//! 4 KiB mapping per 2 MiB or per 1 GiB). While it holds its mappings, every sandbox of the
//! tenant is sampled from /proc: its host page tables (`VmPTE`) must stay within
//! `pvmux_switcher::host_memory::page_table_bound` of the `RLIMIT_AS` the stub set (which
//! must be the documented formula), its private memory (`RssAnon`) within the stub's areas,
//! and no sandbox may have a growable stack or be able to dump core. Afterwards the attacking
//! processes must still get memory from the guest kernel and finish normally.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pvmux_host::domain_builder::user_pool_base;
use pvmux_switcher::host_memory::{
    kernel_address_space_limit, page_table_bound, stub_private_bound, user_address_space_limit,
    DEFAULT_MAX_MAP_COUNT,
};
use pvmux_tests::{run_with_timeout, TempDir};

const PROG_DIR: &str = env!("PVMUX_PROG_DIR");
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
const TIMEOUT: Duration = Duration::from_secs(60);
const SANDBOX_ARGV0: &[u8] = b"pvmux-sandbox";
/// Guest memory and vCPUs of every run.
const MEM: u64 = 256 << 20;
const VCPUS: u32 = 2;

/// A rootfs with `/attack` and `/hello`.
fn rootfs() -> TempDir {
    let dir = TempDir::unique("pvmux-hostmem", "rootfs");
    for (from, to) in [("hostmem-attack", "attack"), ("hello", "hello")] {
        std::fs::copy(Path::new(PROG_DIR).join(from), dir.0.join(to)).expect("copy program");
    }
    dir
}

/// The host's `vm.max_map_count`.
fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_MAP_COUNT)
}

/// The sandboxes (children named `pvmux-sandbox`) of process `pid`.
fn sandboxes(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let argv0 = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if argv0.split(|&b| b == 0).next() == Some(SANDBOX_ARGV0) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// What one look at a sandbox found.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// `VmPTE` in bytes (the most seen).
    pte: u64,
    /// `RssAnon` in bytes (the most seen).
    anon: u64,
    /// `RLIMIT_AS` (soft and hard), bytes.
    as_limit: (Option<u64>, Option<u64>),
    /// `RLIMIT_CORE` (soft and hard).
    core_limit: (Option<u64>, Option<u64>),
    /// Lines of /proc/PID/maps naming `[stack]`, and smaps VMAs with the `gd` flag.
    stacks: Vec<String>,
    growsdown: usize,
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

fn limit(limits: &str, name: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = limits.lines().find(|l| l.starts_with(name)) else {
        return (None, None);
    };
    let f: Vec<&str> = line[name.len()..].split_whitespace().collect();
    let v = |s: Option<&&str>| s.and_then(|s| s.parse::<u64>().ok());
    (v(f.first()), v(f.get(1)))
}

/// Samples every sandbox of `pvmux` process `pid` into `seen`.
fn sample(pid: u32, seen: &mut BTreeMap<u32, Sample>) {
    for s in sandboxes(pid) {
        let (Ok(status), Ok(limits), Ok(maps), Ok(smaps)) = (
            std::fs::read_to_string(format!("/proc/{s}/status")),
            std::fs::read_to_string(format!("/proc/{s}/limits")),
            std::fs::read_to_string(format!("/proc/{s}/maps")),
            std::fs::read_to_string(format!("/proc/{s}/smaps")),
        ) else {
            continue;
        };
        // A sandbox that has not exec'd the stub yet (or is exiting) has nothing to check.
        if status_kib(&status, "VmPTE").is_none() || maps.is_empty() {
            continue;
        }
        let e = seen.entry(s).or_default();
        e.pte = e.pte.max(status_kib(&status, "VmPTE").unwrap_or(0));
        e.anon = e.anon.max(status_kib(&status, "RssAnon").unwrap_or(0));
        let as_limit = limit(&limits, "Max address space");
        // Before the stub set it, the limit is still the host's (unlimited): keep the last.
        if as_limit.0.is_some() {
            e.as_limit = as_limit;
        }
        e.core_limit = limit(&limits, "Max core file size");
        e.stacks = maps
            .lines()
            .filter(|l| l.ends_with("[stack]"))
            .map(String::from)
            .collect();
        e.growsdown = smaps
            .lines()
            .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "gd"))
            .count();
    }
}

/// Runs `pvmux run --mem 256M --vcpus 2 --rootfs ROOT -- PROGRAM ARGS`, sampling every
/// sandbox every 20 ms; returns the run and the samples.
fn run_sampled(
    root: &TempDir,
    program: &str,
    args: &[&str],
) -> (pvmux_tests::Run, BTreeMap<u32, Sample>) {
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--mem", "256M", "--vcpus", "2", "--rootfs"])
        .arg(&root.0)
        .arg("--")
        .arg(program)
        .args(args);
    let what = format!("{cmd:?}");
    cmd.env_clear();
    let mut seen = BTreeMap::new();
    let run = run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |pid| {
        sample(pid, &mut seen)
    });
    (run, seen)
}

/// The checks every sampled sandbox must pass; returns how many user sandboxes there were.
fn check_sandboxes(seen: &BTreeMap<u32, Sample>, context: &str) -> usize {
    let maps = max_map_count();
    let kernel_limit = kernel_address_space_limit(MEM, VCPUS);
    let user_limit = user_address_space_limit(MEM, user_pool_base(MEM), VCPUS);
    let (mut kernels, mut users) = (0, 0);
    for (pid, s) in seen {
        let msg = format!("sandbox {pid}: {s:?}\n{context}");
        assert_eq!(
            s.core_limit,
            (Some(0), Some(0)),
            "core dumps possible: {msg}"
        );
        // The stub keeps only a fixed copy of the argument strings (at most two pages, so
        // `/proc/PID/cmdline` still names the sandbox) where the host's stack was; the host
        // labels it `[stack]` when the initial stack pointer's page is part of it.
        for line in &s.stacks {
            let range = line.split_whitespace().next().unwrap_or("");
            let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
            let len = u64::from_str_radix(b, 16).unwrap_or(u64::MAX)
                - u64::from_str_radix(a, 16).unwrap_or(0);
            assert!(len <= 2 * 4096, "the host's stack is left ({line}): {msg}");
        }
        assert_eq!(s.growsdown, 0, "a MAP_GROWSDOWN mapping is left: {msg}");
        let (limit, kernel) = match s.as_limit {
            (Some(a), Some(b)) if a == b && a == kernel_limit => (a, true),
            (Some(a), Some(b)) if a == b && a == user_limit => (a, false),
            _ => panic!(
                "RLIMIT_AS is not the documented formula ({kernel_limit} or {user_limit}): {msg}"
            ),
        };
        if kernel {
            kernels += 1;
        } else {
            users += 1;
        }
        let pt = page_table_bound(limit, maps);
        assert!(s.pte <= pt, "page tables {} > bound {pt}: {msg}", s.pte);
        let private = stub_private_bound(VCPUS, kernel);
        assert!(
            s.anon <= private,
            "private memory {} > bound {private}: {msg}",
            s.anon
        );
    }
    assert_eq!(kernels, 1, "one kernel sandbox sampled\n{context}");
    users
}

/// The attack with `procs` processes; returns the largest `VmPTE` of a user sandbox.
fn attack(mode: &str, procs: usize, extra: &[&str]) -> u64 {
    let root = rootfs();
    let mem = MEM.to_string();
    let procs_s = procs.to_string();
    let mut args = vec![mode, &mem, &procs_s, "1500"];
    args.extend_from_slice(extra);
    let (run, seen) = run_sampled(&root, "/attack", &args);
    let context = run.context();
    assert_eq!(
        run.code(),
        Some(0),
        "the attack did not finish normally\n{context}"
    );
    // Every attacking process mapped until the host said no (or the attack's own cap) and
    // then still got memory from the guest kernel.
    let mapped = run
        .stdout
        .lines()
        .filter(|l| l.contains(" aliases (errno "))
        .count();
    let heap = run
        .stdout
        .lines()
        .filter(|l| l.contains(" heap ok "))
        .count();
    assert_eq!((mapped, heap), (procs, procs), "{context}");
    assert!(
        run.has_line(&format!("attack: done {procs}/{procs}")),
        "{context}"
    );
    let users = check_sandboxes(&seen, &context);
    // The attacking processes' sandboxes, plus spares.
    assert!(users >= procs, "{users} user sandboxes sampled\n{context}");
    let user_limit = user_address_space_limit(MEM, user_pool_base(MEM), VCPUS);
    let worst = seen
        .values()
        .filter(|s| s.as_limit.0 == Some(user_limit))
        .map(|s| s.pte)
        .max()
        .unwrap_or(0);
    // The tenant goes on: a new program runs in a new tenant as well.
    let (hello, _) = run_sampled(&root, "/hello", &[]);
    assert_eq!(hello.code(), Some(0), "{}", hello.context());
    worst
}

#[test]
fn dense_aliases_of_the_pool_are_bounded_by_the_address_space_limit() {
    // Without a limit this took ~500 MiB of page tables per process (docs: issue 10).
    let worst = attack("dense", 2, &[]);
    // Dense: about one PTE page per 2 MiB of the (limited) address space.
    let user_limit = user_address_space_limit(MEM, user_pool_base(MEM), VCPUS);
    assert!(worst <= user_limit / 256, "dense page tables {worst}");
}

#[test]
fn sparse_mappings_every_2_mib_are_bounded() {
    attack("sparse", 2, &["0x200000"]);
}

#[test]
fn sparse_mappings_every_gib_are_bounded() {
    // The worst case per mapping: a PTE page and a PMD page each.
    let worst = attack("sparse", 2, &["0x40000000"]);
    assert!(
        worst > 64 << 20,
        "the attack did not build page tables ({worst})"
    );
}

/// Files named `core*` in `dir`.
fn cores(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("core"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs pvmux with `RLIMIT_CORE` unlimited (`prlimit`) in an empty working directory.
fn run_with_cores_allowed(
    extra: &[&str],
    args: &[&str],
) -> (pvmux_tests::Run, Vec<PathBuf>, BTreeMap<u32, Sample>) {
    let root = rootfs();
    let cwd = TempDir::unique("pvmux-hostmem", "cwd");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--core=unlimited", "--"])
        .arg(PVMUX)
        .args(["run", "--mem", "256M", "--vcpus", "2"])
        .args(extra)
        .arg("--rootfs")
        .arg(&root.0)
        .args(["--", "/attack"])
        .args(args)
        .current_dir(&cwd.0);
    let what = format!("{cmd:?}");
    cmd.env_clear();
    let mut seen = BTreeMap::new();
    let run = run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |pid| {
        // `prlimit` execs pvmux: same pid.
        sample(pid, &mut seen)
    });
    // The host kernel writes a core before the parent sees the death: none may be there.
    (run, cores(&cwd.0), seen)
}

#[test]
fn int_0x80_kills_the_sandbox_without_a_core_dump() {
    let (run, cores, seen) = run_with_cores_allowed(&[], &["int80"]);
    let context = run.context();
    assert!(run.has_line("int80: now"), "{context}");
    assert!(!run.has_line("int80: survived"), "{context}");
    assert_eq!(
        run.code(),
        Some(128 + 9),
        "init is killed (SIGKILL)\n{context}"
    );
    assert!(cores.is_empty(), "core files written: {cores:?}\n{context}");
    check_sandboxes(&seen, &context);
}

#[test]
fn sigxcpu_from_the_cpu_budget_dumps_no_core() {
    let (run, cores, seen) = run_with_cores_allowed(&["--cpu-seconds", "1"], &["spin"]);
    let context = run.context();
    assert!(run.has_line("spin: now"), "{context}");
    assert_ne!(run.code(), Some(0), "{context}");
    assert!(cores.is_empty(), "core files written: {cores:?}\n{context}");
    check_sandboxes(&seen, &context);
}
