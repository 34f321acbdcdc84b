//! `pvmux bench`: pvmux's transitions measured inside a real guest and on the host, next to
//! peers (native system calls, seccomp traps, ptrace, futexes, KVM) measured on the same host
//! in the same run. The names, units and methodology are documented in docs/BENCHMARKS.md.

pub mod apps;
pub mod boot;
pub mod channel;
pub mod contended;
pub mod guest;
pub mod hostinfo;
pub mod html;
pub mod oci;
pub mod progress;
pub mod report;
pub mod rss;
pub mod select;
pub mod stats;
pub mod tenants;
pub mod trusted;
pub mod user;

use std::sync::Arc;
use std::time::Duration;

use pvmux_bench_peers::{KvmReport, PeerError, Placement, Plan, Samples};
use pvmux_host::{Host, HostError, ImageError, KernelImage};

use crate::images;
use hostinfo::{HostInfo, KvmInfo};
use progress::Progress;
use stats::Summary;

/// The unit of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds (a time per operation).
    Ns,
    /// Bytes (memory).
    Bytes,
}

impl Unit {
    /// The name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Bytes => "bytes",
        }
    }
}

/// One benchmark of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct BenchDef {
    /// Stable name (`pvmux.*`, `native.*`, `kvm.*`).
    pub name: &'static str,
    /// Unit of its figures.
    pub unit: Unit,
    /// The design target for the median, if there is one (in `unit`).
    pub target: Option<f64>,
    /// One line saying what one operation is.
    pub about: &'static str,
}

const fn def(name: &'static str, unit: Unit, target: Option<f64>, about: &'static str) -> BenchDef {
    BenchDef {
        name,
        unit,
        target,
        about,
    }
}

/// Every benchmark, in output order. Names are stable (documented in docs/BENCHMARKS.md).
pub const BENCHMARKS: &[BenchDef] = &[
    def(
        "pvmux.call.in_sandbox",
        Unit::Ns,
        Some(50.0),
        "guest call of a stub entry that needs no system call",
    ),
    def(
        "pvmux.hypercall.spin",
        Unit::Ns,
        Some(250.0),
        "host hypercall round trip, both sides spinning",
    ),
    def(
        "pvmux.hypercall.block",
        Unit::Ns,
        Some(8000.0),
        "host hypercall round trip, both sides blocking on futexes",
    ),
    def(
        "pvmux.exception.int3",
        Unit::Ns,
        Some(4000.0),
        "int3 to the guest kernel's trap handler and back",
    ),
    def(
        "pvmux.interrupt.timer",
        Unit::Ns,
        None,
        "timer deadline to the guest's event handler (latency)",
    ),
    def(
        "pvmux.shadow_fill.page",
        Unit::Ns,
        Some(2000.0),
        "first touch of a fresh guest page, amortised, fault-around 16",
    ),
    def(
        "pvmux.shadow_fill.page_nofaultaround",
        Unit::Ns,
        None,
        "first touch of a fresh guest page, one miss per page",
    ),
    def(
        "pvmux.halt_wake",
        Unit::Ns,
        None,
        "waking a halted vCPU from another vCPU, until its thread runs",
    ),
    def(
        "pvmux.thread_switch",
        Unit::Ns,
        None,
        "guest kernel thread switch on one vCPU",
    ),
    def(
        "pvmux.boot.first_instruction",
        Unit::Ns,
        Some(5e6),
        "launch call to the guest's first instruction",
    ),
    def(
        "pvmux.boot.selftest_done",
        Unit::Ns,
        None,
        "launch call to the end of a full self-test (incl. a 50 ms sleep)",
    ),
    def(
        "pvmux.host_rss_per_tenant",
        Unit::Bytes,
        Some(4.0 * 1024.0 * 1024.0),
        "host memory of an idle tenant beyond its guest RAM",
    ),
    def(
        "native.syscall.getppid",
        Unit::Ns,
        None,
        "getppid system call",
    ),
    def(
        "native.seccomp_trap",
        Unit::Ns,
        None,
        "getppid trapped by seccomp into a SIGSYS handler and back",
    ),
    def(
        "native.ptrace_sysemu",
        Unit::Ns,
        None,
        "getppid caught by a PTRACE_SYSEMU tracer (UML-style) and resumed",
    ),
    def(
        "native.futex_pingpong.same_core",
        Unit::Ns,
        None,
        "futex wake/wait round trip, two processes on one CPU",
    ),
    def(
        "native.futex_pingpong.cross_core",
        Unit::Ns,
        None,
        "futex wake/wait round trip, two processes on two CPUs",
    ),
    def(
        "kvm.exit_to_user",
        Unit::Ns,
        None,
        "KVM tiny guest: out to a port, exit to user space and back",
    ),
    def(
        "kvm.exit_in_kernel",
        Unit::Ns,
        None,
        "KVM tiny guest: cpuid, exit handled in the host kernel",
    ),
    def(
        "native.user.syscall_getppid",
        Unit::Ns,
        None,
        "user: raw getppid, native",
    ),
    def(
        "uml.user.syscall_getppid",
        Unit::Ns,
        None,
        "user: raw getppid, as UML init",
    ),
    def(
        "gvisor.user.syscall_getppid",
        Unit::Ns,
        None,
        "user: raw getppid, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.syscall_getppid",
        Unit::Ns,
        None,
        "user: raw getppid, as pvmux guest init",
    ),
    def(
        "native.user.page_fault",
        Unit::Ns,
        None,
        "user: first write to a fresh anonymous page, native",
    ),
    def(
        "uml.user.page_fault",
        Unit::Ns,
        None,
        "user: first write to a fresh anonymous page, as UML init",
    ),
    def(
        "gvisor.user.page_fault",
        Unit::Ns,
        None,
        "user: first write to a fresh anonymous page, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.page_fault",
        Unit::Ns,
        None,
        "user: first write to a fresh anonymous page, as pvmux guest init",
    ),
    def(
        "native.user.fork_exit_wait",
        Unit::Ns,
        None,
        "user: fork, child _exit(0), waitpid, native",
    ),
    def(
        "uml.user.fork_exit_wait",
        Unit::Ns,
        None,
        "user: fork, child _exit(0), waitpid, as UML init",
    ),
    def(
        "gvisor.user.fork_exit_wait",
        Unit::Ns,
        None,
        "user: fork, child _exit(0), waitpid, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.fork_exit_wait",
        Unit::Ns,
        None,
        "user: fork, child _exit(0), waitpid, as pvmux guest init",
    ),
    def(
        "native.user.pipe_pingpong",
        Unit::Ns,
        None,
        "user: pipe round trip between two processes, native",
    ),
    def(
        "uml.user.pipe_pingpong",
        Unit::Ns,
        None,
        "user: pipe round trip between two processes, as UML init",
    ),
    def(
        "gvisor.user.pipe_pingpong",
        Unit::Ns,
        None,
        "user: pipe round trip between two processes, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.pipe_pingpong",
        Unit::Ns,
        None,
        "user: pipe round trip between two processes, as pvmux guest init",
    ),
    def(
        "native.user.clock_gettime",
        Unit::Ns,
        None,
        "user: clock_gettime(CLOCK_MONOTONIC) through the C library, native",
    ),
    def(
        "uml.user.clock_gettime",
        Unit::Ns,
        None,
        "user: clock_gettime(CLOCK_MONOTONIC) through the C library, as UML init",
    ),
    def(
        "gvisor.user.clock_gettime",
        Unit::Ns,
        None,
        "user: clock_gettime(CLOCK_MONOTONIC) through the C library, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.clock_gettime",
        Unit::Ns,
        None,
        "user: clock_gettime(CLOCK_MONOTONIC) through the C library, as pvmux guest init (vDSO)",
    ),
    def(
        "native.user.read_4k_cached",
        Unit::Ns,
        None,
        "user: a 4 KiB pread of a cached file (pvmux: from the --rootfs share), native",
    ),
    def(
        "uml.user.read_4k_cached",
        Unit::Ns,
        None,
        "user: a 4 KiB pread of a cached file (pvmux: from the --rootfs share), as UML init",
    ),
    def(
        "gvisor.user.read_4k_cached",
        Unit::Ns,
        None,
        "user: a 4 KiB pread of a cached file (pvmux: from the --rootfs share), in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.read_4k_cached",
        Unit::Ns,
        Some(5000.0),
        "user: a 4 KiB pread of a cached file (pvmux: from the --rootfs share), as pvmux guest init",
    ),
    def(
        "native.user.open_read_close",
        Unit::Ns,
        None,
        "user: open + 4 KiB read + close of a file (pvmux: from the --rootfs share), native",
    ),
    def(
        "uml.user.open_read_close",
        Unit::Ns,
        None,
        "user: open + 4 KiB read + close of a file (pvmux: from the --rootfs share), as UML init",
    ),
    def(
        "gvisor.user.open_read_close",
        Unit::Ns,
        None,
        "user: open + 4 KiB read + close of a file (pvmux: from the --rootfs share), in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.open_read_close",
        Unit::Ns,
        None,
        "user: open + 4 KiB read + close of a file (pvmux: from the --rootfs share), as pvmux guest init",
    ),
    def(
        "native.user.fork_exec_wait",
        Unit::Ns,
        None,
        "user: fork, child execs the (static) workload again, which exits at once, waitpid, native",
    ),
    def(
        "uml.user.fork_exec_wait",
        Unit::Ns,
        None,
        "user: fork, child execs the (static) workload again, which exits at once, waitpid, as UML init",
    ),
    def(
        "gvisor.user.fork_exec_wait",
        Unit::Ns,
        None,
        "user: fork, child execs the (static) workload again, which exits at once, waitpid, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.fork_exec_wait",
        Unit::Ns,
        None,
        "user: fork, child execs the (static) workload again, which exits at once, waitpid, as pvmux guest init",
    ),
    def(
        "native.user.boot_to_init",
        Unit::Ns,
        None,
        "user: launch to the workload's @ready line, native",
    ),
    def(
        "uml.user.boot_to_init",
        Unit::Ns,
        None,
        "user: launch to the workload's @ready line, as UML init",
    ),
    def(
        "gvisor.user.boot_to_init",
        Unit::Ns,
        None,
        "user: launch to the workload's @ready line, in gVisor (ptrace)",
    ),
    def(
        "pvmux.user.boot_to_init",
        Unit::Ns,
        None,
        "user: launch to the workload's @ready line, as pvmux guest init",
    ),
    def(
        "pvmux-trusted.user.syscall_getppid",
        Unit::Ns,
        Some(150.0),
        "user: raw getppid, as pvmux guest init, --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.page_fault",
        Unit::Ns,
        Some(1500.0),
        "user: first write to a fresh anonymous page, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.fork_exit_wait",
        Unit::Ns,
        Some(250_000.0),
        "user: fork, child _exit, parent wait4, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.pipe_pingpong",
        Unit::Ns,
        None,
        "user: pipe round trip between two processes, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.clock_gettime",
        Unit::Ns,
        None,
        "user: clock_gettime(CLOCK_MONOTONIC), pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.read_4k_cached",
        Unit::Ns,
        None,
        "user: pread of 4 KiB of a cached file, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.open_read_close",
        Unit::Ns,
        None,
        "user: open + read 4 KiB + close, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.fork_exec_wait",
        Unit::Ns,
        None,
        "user: fork, child execs the (static) workload again, which exits at once, waitpid, pvmux --user-isolation none",
    ),
    def(
        "pvmux-trusted.user.boot_to_init",
        Unit::Ns,
        Some(5_000_000.0),
        "user: launch to the workload's @ready line, pvmux --user-isolation none",
    ),
    def(
        "native.app.python3_pass",
        Unit::Ns,
        None,
        "app: `python3 -c pass` from the host's root, native",
    ),
    def(
        "uml.app.python3_pass",
        Unit::Ns,
        None,
        "app: `python3 -c pass` from the host's root, as UML init (hostfs /)",
    ),
    def(
        "gvisor.app.python3_pass",
        Unit::Ns,
        None,
        "app: `python3 -c pass` from the host's root, in gVisor (runsc do)",
    ),
    def(
        "pvmux.app.python3_pass",
        Unit::Ns,
        None,
        "app: `python3 -c pass` from the host's root, in a pvmux guest (--rootfs /)",
    ),
    def(
        "native.app.bash_true",
        Unit::Ns,
        None,
        "app: `bash -c true` from the host's root, native",
    ),
    def(
        "uml.app.bash_true",
        Unit::Ns,
        None,
        "app: `bash -c true` from the host's root, as UML init (hostfs /)",
    ),
    def(
        "gvisor.app.bash_true",
        Unit::Ns,
        None,
        "app: `bash -c true` from the host's root, in gVisor (runsc do)",
    ),
    def(
        "pvmux.app.bash_true",
        Unit::Ns,
        None,
        "app: `bash -c true` from the host's root, in a pvmux guest (--rootfs /)",
    ),
    def(
        "native.app.gcc_hello",
        Unit::Ns,
        None,
        "app: gcc compiles and runs a C hello world, native",
    ),
    def(
        "uml.app.gcc_hello",
        Unit::Ns,
        None,
        "app: gcc compiles and runs a C hello world, as UML init (hostfs /)",
    ),
    def(
        "gvisor.app.gcc_hello",
        Unit::Ns,
        None,
        "app: gcc compiles and runs a C hello world, in gVisor (runsc do)",
    ),
    def(
        "pvmux.app.gcc_hello",
        Unit::Ns,
        None,
        "app: gcc compiles and runs a C hello world, in a pvmux guest (--rootfs /)",
    ),
    def(
        "runc.oci.podman_run_true",
        Unit::Ns,
        None,
        "oci: `podman run --rm IMAGE true` with runc, wall time",
    ),
    def(
        "gvisor.oci.podman_run_true",
        Unit::Ns,
        None,
        "oci: `podman run --rm IMAGE true` with runsc (ptrace, no network), wall time",
    ),
    def(
        "pvmux.oci.podman_run_true",
        Unit::Ns,
        Some(150e6),
        "oci: `podman run --rm IMAGE true` with pvmux, wall time",
    ),
    def(
        "runc.oci.idle_container_pss",
        Unit::Bytes,
        None,
        "oci: host memory (PSS) of an idle podman container's processes, runc",
    ),
    def(
        "gvisor.oci.idle_container_pss",
        Unit::Bytes,
        None,
        "oci: host memory (PSS) of an idle podman container's processes, runsc",
    ),
    def(
        "pvmux.oci.idle_container_pss",
        Unit::Bytes,
        None,
        "oci: host memory (PSS) of an idle podman container's processes, pvmux",
    ),
    def(
        "native.user.syscall_getppid.contended",
        Unit::Ns,
        None,
        "contended: `getppid` system call, native, next to 2 CPU hogs",
    ),
    def(
        "gvisor.user.syscall_getppid.contended",
        Unit::Ns,
        None,
        "contended: `getppid` system call, in gVisor (runsc ptrace), next to 2 CPU hogs",
    ),
    def(
        "pvmux.user.syscall_getppid.contended",
        Unit::Ns,
        Some(10_000.0),
        "contended: `getppid` system call, as a pvmux guest's program, next to 2 CPU hogs",
    ),
    def(
        "pvmux-trusted.user.syscall_getppid.contended",
        Unit::Ns,
        Some(300.0),
        "contended: `getppid` system call, as a pvmux guest's program in the trusted in-process mode, next to 2 CPU hogs",
    ),
    def(
        "native.user.page_fault.contended",
        Unit::Ns,
        None,
        "contended: first touch of an anonymous page, native, next to 2 CPU hogs",
    ),
    def(
        "gvisor.user.page_fault.contended",
        Unit::Ns,
        None,
        "contended: first touch of an anonymous page, in gVisor (runsc ptrace), next to 2 CPU hogs",
    ),
    def(
        "pvmux.user.page_fault.contended",
        Unit::Ns,
        None,
        "contended: first touch of an anonymous page, as a pvmux guest's program, next to 2 CPU hogs",
    ),
    def(
        "pvmux-trusted.user.page_fault.contended",
        Unit::Ns,
        None,
        "contended: first touch of an anonymous page, as a pvmux guest's program in the trusted in-process mode, next to 2 CPU hogs",
    ),
    def(
        "native.user.fork_exit_wait.contended",
        Unit::Ns,
        None,
        "contended: fork, child exit, wait, native, next to 2 CPU hogs",
    ),
    def(
        "gvisor.user.fork_exit_wait.contended",
        Unit::Ns,
        None,
        "contended: fork, child exit, wait, in gVisor (runsc ptrace), next to 2 CPU hogs",
    ),
    def(
        "pvmux.user.fork_exit_wait.contended",
        Unit::Ns,
        None,
        "contended: fork, child exit, wait, as a pvmux guest's program, next to 2 CPU hogs",
    ),
    def(
        "pvmux-trusted.user.fork_exit_wait.contended",
        Unit::Ns,
        None,
        "contended: fork, child exit, wait, as a pvmux guest's program in the trusted in-process mode, next to 2 CPU hogs",
    ),
    def(
        "native.user.pipe_pingpong.contended",
        Unit::Ns,
        None,
        "contended: pipe round trip between two processes, native, next to 2 CPU hogs",
    ),
    def(
        "gvisor.user.pipe_pingpong.contended",
        Unit::Ns,
        None,
        "contended: pipe round trip between two processes, in gVisor (runsc ptrace), next to 2 CPU hogs",
    ),
    def(
        "pvmux.user.pipe_pingpong.contended",
        Unit::Ns,
        None,
        "contended: pipe round trip between two processes, as a pvmux guest's program, next to 2 CPU hogs",
    ),
    def(
        "pvmux-trusted.user.pipe_pingpong.contended",
        Unit::Ns,
        None,
        "contended: pipe round trip between two processes, as a pvmux guest's program in the trusted in-process mode, next to 2 CPU hogs",
    ),
    def(
        "pvmux.hypercall.spin.contended",
        Unit::Ns,
        None,
        "contended: host hypercall round trip (spinning), next to 2 CPU hogs",
    ),
    def(
        "pvmux.hypercall.block.contended",
        Unit::Ns,
        None,
        "contended: host hypercall round trip (blocking), next to 2 CPU hogs",
    ),
    def(
        "native.channel.roundtrip",
        Unit::Ns,
        None,
        "channel: one byte there and back between two host processes, UNIX stream socket",
    ),
    def(
        "native.channel.throughput",
        Unit::Ns,
        None,
        "channel: ns per MiB sent one way between two host processes, UNIX stream socket",
    ),
    def(
        "pvmux.channel.roundtrip",
        Unit::Ns,
        None,
        "channel: one byte there and back between programs of two kernels (--channel)",
    ),
    def(
        "pvmux.channel.throughput",
        Unit::Ns,
        None,
        "channel: ns per MiB sent one way between programs of two kernels (--channel)",
    ),
];

/// Name of the reference every figure is compared to.
pub const BASELINE: &str = "native.syscall.getppid";
/// Name of the second reference, when available.
pub const KVM_BASELINE: &str = "kvm.exit_to_user";

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Fewer repetitions (`--quick`).
    pub quick: bool,
    /// Select benchmarks by substring or glob; empty: all (`--only`).
    pub only: Vec<String>,
    /// Report progress on stderr.
    pub progress: bool,
}

/// One figure.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// The benchmark.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Its statistics, or why there are none.
    pub value: Result<Summary, String>,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The host.
    pub host: HostInfo,
    /// The selected benchmarks, in catalogue order.
    pub results: Vec<BenchResult>,
    /// Median of [`BASELINE`] (measured even when not selected), for the ratios.
    pub baseline_ns: Option<f64>,
    /// Median of [`KVM_BASELINE`] (from the KVM probe, which always runs), for the ratios.
    pub kvm_baseline_ns: Option<f64>,
}

/// Errors that stop `pvmux bench` (a benchmark that cannot run is reported, not an error).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--only` selected nothing.
    #[error("no benchmark matches {0:?}; `pvmux bench --help` lists the names")]
    NoMatch(Vec<String>),
    /// The embedded sandbox stub is unusable.
    #[error("cannot prepare the sandbox stub: {0}")]
    Host(#[from] HostError),
    /// The embedded kernel is unusable.
    #[error("the embedded kernel image is not usable: {0}")]
    Image(#[from] ImageError),
}

/// Repetition counts of one run.
#[derive(Clone, Copy, Debug)]
struct Reps {
    peers: Plan,
    boots: usize,
    selftests: usize,
    idle_tenants: usize,
    guest_timeout: Duration,
}

impl Reps {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                peers: Plan::QUICK,
                boots: 8,
                selftests: 3,
                idle_tenants: 4,
                guest_timeout: Duration::from_secs(60),
            }
        } else {
            Self {
                peers: Plan::FULL,
                boots: 20,
                selftests: 10,
                idle_tenants: 8,
                guest_timeout: Duration::from_secs(600),
            }
        }
    }
}

/// The catalogue entries `only` selects (all if empty).
pub fn selected(only: &[String]) -> Vec<&'static BenchDef> {
    BENCHMARKS
        .iter()
        .filter(|b| only.is_empty() || only.iter().any(|p| select::matches(p, b.name)))
        .collect()
}

fn summarize(r: Result<Samples, String>) -> Result<Summary, String> {
    let mut samples = r?;
    Summary::of(&mut samples).ok_or_else(|| "no valid samples".to_owned())
}

fn peer(r: Result<Samples, PeerError>) -> Result<Summary, String> {
    summarize(r.map_err(|e| e.to_string()))
}

/// Runs the selected benchmarks.
pub fn run(opts: &Options) -> Result<BenchReport, BenchError> {
    let defs = selected(&opts.only);
    if defs.is_empty() {
        return Err(BenchError::NoMatch(opts.only.clone()));
    }
    let want = |name: &str| defs.iter().any(|d| d.name == name);
    let reps = Reps::new(opts.quick);
    let host = Host::new(images::STUB)?;
    let kernel = Arc::new(KernelImage::parse(images::KERNEL_TEST)?);

    let guest_wanted: Vec<&'static str> = guest::GUEST_NAMES
        .iter()
        .copied()
        .filter(|n| want(&format!("pvmux.{n}")))
        .collect();
    let user_wanted: Vec<&'static str> = defs
        .iter()
        .map(|d| d.name)
        .filter(|n| user::split(n).is_some())
        .collect();
    let app_wanted: Vec<&'static str> = defs
        .iter()
        .map(|d| d.name)
        .filter(|n| apps::split(n).is_some())
        .collect();
    let oci_wanted: Vec<&'static str> = defs
        .iter()
        .map(|d| d.name)
        .filter(|n| oci::split(n).is_some())
        .collect();
    let channel_wanted: Vec<&'static str> = defs
        .iter()
        .map(|d| d.name)
        .filter(|n| channel::split(n).is_some())
        .collect();
    let contended_wanted: Vec<&'static str> = defs
        .iter()
        .map(|d| d.name)
        .filter(|n| contended::is_contended(n))
        .collect();
    let natives = [
        "native.syscall.getppid",
        "native.seccomp_trap",
        "native.ptrace_sysemu",
        "native.futex_pingpong.same_core",
        "native.futex_pingpong.cross_core",
    ];
    let steps = natives
        .iter()
        .filter(|&&n| want(n) || n == BASELINE)
        .count()
        + 1
        + guest_wanted.len()
        + if want("pvmux.boot.first_instruction") {
            reps.boots + 1
        } else {
            0
        }
        + if want("pvmux.boot.selftest_done") {
            reps.selftests
        } else {
            0
        }
        + usize::from(want("pvmux.host_rss_per_tenant"))
        + user::Peer::ALL
            .iter()
            .filter(|p| {
                user_wanted
                    .iter()
                    .any(|n| user::split(n).is_some_and(|(q, _)| q == **p))
            })
            .count()
        + app_wanted.len()
        + oci_wanted.len()
        + ["native", "pvmux"]
            .iter()
            .filter(|p| {
                channel_wanted
                    .iter()
                    .any(|n| channel::split(n).is_some_and(|(q, _)| q == **p))
            })
            .count()
        + contended::steps(&contended_wanted);
    let progress = Progress::stderr(opts.progress);
    progress.set_total(steps as u64);

    let mut values: Vec<(&'static str, Result<Summary, String>)> = Vec::new();
    let plan = &reps.peers;
    // The baseline of every ratio is measured even when not selected (it takes ~0.1 s).
    let natives_run = natives
        .into_iter()
        .filter(|&n| want(n) || n == BASELINE)
        .collect::<Vec<_>>();
    for name in natives_run {
        progress.start(name);
        let r = match name {
            "native.syscall.getppid" => pvmux_bench_peers::getppid(plan),
            "native.seccomp_trap" => pvmux_bench_peers::seccomp_trap(plan),
            "native.ptrace_sysemu" => pvmux_bench_peers::ptrace_sysemu(plan),
            "native.futex_pingpong.same_core" => {
                pvmux_bench_peers::futex_pingpong(plan, Placement::SameCore)
            }
            _ => pvmux_bench_peers::futex_pingpong(plan, Placement::CrossCore),
        };
        values.push((name, peer(r)));
        progress.inc();
    }

    // KVM is always probed (the header says whether it works); measured fully only if wanted.
    progress.start("kvm");
    let kvm_wanted = want("kvm.exit_to_user") || want("kvm.exit_in_kernel");
    let kvm_plan = if kvm_wanted {
        *plan
    } else {
        Plan {
            warmup: 1,
            samples: Plan::MIN_SAMPLES,
            ..*plan
        }
    };
    let kvm: KvmReport = pvmux_bench_peers::kvm(&kvm_plan);
    values.push(("kvm.exit_to_user", peer(kvm.exit_to_user.clone())));
    values.push(("kvm.exit_in_kernel", peer(kvm.exit_in_kernel.clone())));
    progress.inc();

    if !guest_wanted.is_empty() {
        progress.start(&format!(
            "{} guest micro-benchmark(s) in one tenant",
            guest_wanted.len()
        ));
        for (name, r) in guest::run(
            &host,
            &kernel,
            &guest_wanted,
            opts.quick,
            reps.guest_timeout,
            &progress,
        ) {
            values.push((guest_full_name(name), r));
        }
    }
    if want("pvmux.boot.first_instruction") {
        progress.start("pvmux.boot.first_instruction");
        let r = boot::first_instruction(&host, &kernel, reps.boots, &progress);
        values.push(("pvmux.boot.first_instruction", summarize(r)));
    }
    if want("pvmux.boot.selftest_done") {
        progress.start("pvmux.boot.selftest_done");
        let r = boot::selftest_done(&host, &kernel, reps.selftests, &progress);
        values.push(("pvmux.boot.selftest_done", summarize(r)));
    }
    if want("pvmux.host_rss_per_tenant") {
        progress.start("pvmux.host_rss_per_tenant");
        let r = rss::per_tenant(&host, &kernel, reps.idle_tenants);
        values.push(("pvmux.host_rss_per_tenant", summarize(r)));
        progress.inc();
    }
    if !user_wanted.is_empty() {
        values.extend(user::run(
            &host,
            &kernel,
            &user_wanted,
            opts.quick,
            &progress,
        ));
    }
    if !app_wanted.is_empty() {
        values.extend(apps::run(&app_wanted, opts.quick, &progress));
    }
    values.extend(oci::run_figures(&oci_wanted, opts.quick, &progress));
    if !channel_wanted.is_empty() {
        values.extend(channel::run(
            &host,
            &kernel,
            &channel_wanted,
            opts.quick,
            reps.guest_timeout,
            &progress,
        ));
    }
    // Last: everything above ran on a host without the hogs.
    values.extend(contended::run(
        &host,
        &kernel,
        &contended_wanted,
        opts.quick,
        reps.guest_timeout,
        &progress,
    ));
    progress.finish();

    let median = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_ref().ok())
            .map(|s| s.median)
            .filter(|&m| m > 0.0)
    };
    let (baseline_ns, kvm_baseline_ns) = (median(BASELINE), median(KVM_BASELINE));
    let results = defs
        .iter()
        .map(|d| BenchResult {
            name: d.name,
            unit: d.unit,
            value: values
                .iter()
                .find(|(n, _)| *n == d.name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| Err("not measured".to_owned())),
        })
        .collect();
    Ok(BenchReport {
        host: HostInfo::collect(KvmInfo::from_report(&kvm), opts.quick),
        results,
        baseline_ns,
        kvm_baseline_ns,
    })
}

/// `pvmux.` + a guest benchmark name, as a catalogue name.
fn guest_full_name(short: &str) -> &'static str {
    BENCHMARKS
        .iter()
        .find(|d| d.name.strip_prefix("pvmux.") == Some(short))
        .map_or("pvmux.unknown", |d| d.name)
}

/// The `--help` text listing every benchmark.
pub fn help_text() -> String {
    let mut s = String::from("Benchmarks (select with --only; see docs/BENCHMARKS.md):\n");
    for d in BENCHMARKS {
        s.push_str(&format!("  {:38} {}\n", d.name, d.about));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        let mut names: Vec<_> = BENCHMARKS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BENCHMARKS.len(), "duplicate names");
        for g in guest::GUEST_NAMES {
            assert_ne!(guest_full_name(g), "pvmux.unknown", "{g}");
        }
        assert!(BENCHMARKS.iter().any(|d| d.name == BASELINE));
        assert!(BENCHMARKS.iter().any(|d| d.name == KVM_BASELINE));
        for peer in user::Peer::ALL {
            for f in user::WORKLOAD.iter().chain([&user::BOOT]) {
                let name = format!("{}.user.{f}", peer.prefix());
                assert!(BENCHMARKS.iter().any(|d| d.name == name), "{name}");
            }
        }
    }

    #[test]
    fn selection() {
        assert_eq!(selected(&[]).len(), BENCHMARKS.len());
        let n = selected(&["native.*".to_owned()]);
        assert_eq!(n.len(), 17 + 4 + 2);
        assert!(n.iter().all(|d| d.name.starts_with("native.")));
        let both = selected(&["kvm".to_owned(), "boot".to_owned()]);
        assert_eq!(both.len(), 9);
        let user = selected(&["*.user.*".to_owned()]);
        assert_eq!(user.len(), 45 + 16);
        assert!(user
            .iter()
            .all(|d| user::split(d.name).is_some() || contended::split(d.name).is_some()));
        let contended = selected(&["*.contended".to_owned()]);
        assert_eq!(contended.len(), 18);
        assert!(contended.iter().all(|d| contended::is_contended(d.name)));
        let apps = selected(&["*.app.*".to_owned()]);
        assert_eq!(apps.len(), 12);
        assert!(apps.iter().all(|d| apps::split(d.name).is_some()));
        let oci = selected(&["*.oci.*".to_owned()]);
        assert_eq!(oci.len(), 6);
        assert!(oci.iter().all(|d| oci::split(d.name).is_some()));
        let channel = selected(&["*.channel.*".to_owned()]);
        assert_eq!(channel.len(), 4);
        assert!(channel.iter().all(|d| channel::split(d.name).is_some()));
        assert!(selected(&["nothing-like-this".to_owned()]).is_empty());
    }
}
