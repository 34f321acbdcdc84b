//! `pvmux run`: boot one guest and run it to completion.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pvmux_host::console_input::{host_terminals, terminal_size};
use pvmux_host::hostfs::HostFs;
use pvmux_host::initramfs::{self, DEFAULT_MAX_SIZE};
use pvmux_host::volume::Volume;
use pvmux_host::{
    run_with_restarts, ConsoleInput, Host, KernelImage, KernelLog, RestartPolicy, TenantConfig,
    TenantOutcome,
};
use pvmux_hypercalls::bootargs::words::{self, Words};
use pvmux_hypercalls::bootargs::{
    BootArgsBuf, Command, ConsoleSize, EncodeError, Gids, Terminals, VolumeMount, BOOT_ARGS_MAX,
    GROUPS_MAX,
};

use super::environ::{check_workdir, Environment, ENV_HELP};
use super::exit::EXIT_GUEST_CRASH;
use super::limits::{parse_ulimit, LIMITS_HELP};
use super::size::{format_size, parse_mem_size, parse_size};
use super::terminal::RawTerminal;
use super::volume::{check_volumes, parse_volume, VolumeSpec};
use crate::images;

/// Text for `pvmux run --help` after the options: running programs, the kernel command-line
/// words (from the ABI's table) and the exit status.
pub static RUN_AFTER_HELP: LazyLock<String> = LazyLock::new(|| {
    let mut words = String::new();
    for (word, help) in words::HELP {
        words.push_str(&format!("  {word:<30} {help}\n"));
    }
    format!(
        "\
Running a program:
  pvmux run [OPTIONS] -- PROGRAM [ARGS...] runs PROGRAM (a Linux x86-64 binary, static or
  dynamically linked: its interpreter and libraries must be in the guest's files too, e.g.
  --rootfs /) as the guest's init process, with ARGS. With --rootfs DIR, DIR is shared
  read-only with the guest and PROGRAM is a path inside it; with --initrd FILE, inside the
  archive. Without PROGRAM, --initrd/--rootfs run /init. The program's stdout and stderr are
  pvmux's, host stdin feeds its console input (a host terminal is put into raw mode while the
  program runs, and restored: the guest kernel echoes and edits lines, and ^C interrupts the
  guest's foreground programs), and the kernel's own log is hidden (shown on
  stderr with --log debug, which also reports unknown system calls). PROGRAM and ARGS (any
  bytes) reach the kernel in its typed boot arguments, which are limited to {BOOT_ARGS_MAX}
  bytes in all (each argument takes its length plus 2, each environment variable its length
  plus 4). `kill -QUIT` of pvmux asks the guest kernel what its tasks are doing (as a JVM
  prints its threads): each vCPU's thread, the run queue, the timed sleepers and every
  process's threads, on stderr as lines starting `pvmux: dump:`; the guest goes on.

{ENV_HELP}

{LIMITS_HELP}

Kernel command line (--cmdline \"WORDS\"), separated by spaces; an unknown word is an error.
(*) marks commands of the test kernel, which pvmux then boots instead of the default one:
{words}
Named tenants:
  pvmux run --name NAME [-d] [OPTIONS] [-- PROGRAM [ARGS...]] runs the guest under a name, with
  a monitor process and a state directory under --root (as an OCI container's). Attached (the
  default), stdio and the exit status are as without a name and the name is freed at the end.
  With -d/--detach pvmux prints the name once the guest runs and returns; the console goes to
  a log file (`pvmux logs [-f] NAME`), and the tenant stays listed (`pvmux ps`) after its
  program ended, as `stopped`, until `pvmux stop NAME` or `pvmux delete NAME`. --restart does
  not apply. See README.md, docs/MULTIKERNEL.md.

OCI containers:
  pvmux run [--bundle DIR] [--pid-file F] [-d] [--keep] ID runs the container of the bundle
  as `runc run` does: create, start, wait, delete (docs/OCI.md). An ID and a -- PROGRAM
  exclude each other; without an ID, the container flags are errors.

Exit status:
  0-255    the guest's exit status: the program's exit code, or 128+N when it was killed
           by signal N (from the kernel's shutdown; a guest should not use 124 or 125).
           A program killed by a signal other than SIGINT or SIGPIPE, or for memory, gets
           one line on stderr saying how (e.g. `pvmux: /bin/prog (pid 1) killed by
           SIGSEGV: segfault at 0x0 ip 0x401136 sp 0x7ffc3b5f10 error 6`)
  124      the guest kernel crashed; a crash report is printed on stderr
  125      host-side error (bad flag, unknown --cmdline word, unusable kernel image or
           rootfs, boot arguments too long, bad --env/--env-file/--workdir, sandbox spawn
           failure)
  126/127  the program (or --workdir, or a --volume the guest cannot mount) could not be
           used: 127 not found, 126 otherwise"
    )
});

/// Arguments of `pvmux run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Guest kernel image (an x86-64 static-pie ELF built for the pvmux ABI) [default: the
    /// kernel embedded in pvmux].
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    /// Guest memory size: a multiple of 2M from 16M up, with an optional K/M/G/T suffix
    /// (e.g. 64M, 1G, 1048576). Memory is taken from the host only when the guest first
    /// touches it, so the 1G default costs what the guest uses; the kernel keeps a quarter
    /// (64M..1G) and programs and files (/tmp up to half of --mem) share the rest.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_mem_size)]
    pub mem: u64,

    /// The most memory the guest may grow to (`pvmux mem`, docs/MULTIKERNEL.md): the guest
    /// starts with --mem and the rest in its balloon. Default: --mem. At least a quarter of
    /// it plus 8M (the kernel's own part and what it keeps free) must be --mem.
    #[arg(long, value_name = "SIZE", value_parser = parse_mem_size)]
    pub mem_max: Option<u64>,

    /// Number of virtual CPUs (1..=64).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(pvmux_hypercalls::MAX_VCPUS))
    )]
    pub vcpus: u32,

    /// Kernel command line: words (listed below) that pvmux turns into the kernel's typed
    /// boot arguments [default: `selftest`, or none when a PROGRAM, --initrd or --rootfs is
    /// given]. With a PROGRAM, pvmux adds the console options and the program itself.
    #[arg(long, value_name = "WORDS")]
    pub cmdline: Option<String>,

    /// Liveness watchdog: a guest with a vCPU that takes no events (timer, kick, host
    /// heartbeat) for SECS seconds is killed and reported as crashed. 0 disables it.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_watchdog)]
    // Fully qualified: clap treats a plain `Option` field as an optional flag of `Duration`,
    // while here the parser itself yields `None` for 0.
    pub watchdog: std::option::Option<Duration>,

    /// Console output limit in bytes per second, with a K/M/G suffix (burst: one second's
    /// worth). Excess output is dropped and a line `[pvmux: console output throttled, N
    /// bytes dropped]` says so. 0 disables the limit.
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub console_rate: u64,

    /// CPU rate limit of the whole tenant in CPUs (e.g. 0.5): the tenant cgroup's CFS quota
    /// on its sandboxes (cgroup v2 or v1, where the host allows one), and host work on its
    /// behalf (e.g. --rootfs reads) is delayed to the same rate. Without a cgroup only host
    /// work is throttled (add --cpu-seconds).
    #[arg(long, value_name = "FRACTION", value_parser = parse_cpus)]
    pub cpus: Option<f64>,

    /// CPU-time budget of the whole tenant in seconds: all its processes plus host work on
    /// its behalf. Once spent, the guest is killed and reported as crashed ("CPU-time budget
    /// exhausted").
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub cpu_seconds: Option<u64>,

    /// Relative CPU weight of the whole tenant against other tenants and host processes, in
    /// cgroup v1 `cpu.shares` units (1024 = one thread's default): the tenant cgroup's
    /// `cpu.shares`, or on cgroup v2 its `cpu.weight` (converted as runc does), where the
    /// host has a `cpu` controller [default: 1024 per vCPU]. OCI's `cpu.shares`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=262_144))]
    pub cpu_shares: Option<u64>,

    /// When pvmux runs as root: the user (and group) the sandbox processes run as, numeric,
    /// `UID` (group = UID) or `UID:GID` as podman's `--user` (Firecracker's jailer: `--uid`
    /// and `--gid`). The default is a dedicated id no account uses; give each tenant its own
    /// id to separate tenants at the uid level too. Supplementary groups are always cleared
    /// and every capability is dropped. Ignored when pvmux is not root (sandboxes keep its
    /// uid, in a user namespace when the host allows one). Jail layers in force: `--log info`.
    #[arg(
        long,
        value_name = "UID[:GID]",
        default_value = "2000000000:2000000000"
    )]
    pub sandbox_user: pvmux_host::jail::SandboxUser,

    /// Restart a crashed guest: `no`, `on-crash` (up to 3 times) or `on-crash:N`, with
    /// backoff 100 ms, 200 ms, 400 ms ... (at most 5 s). A clean exit is never restarted;
    /// the exit status is that of the last run.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: RestartPolicy,

    /// Initial RAM disk: a cpio "newc" archive, plain or gzip-compressed. It is checked
    /// before boot and handed to the guest uncompressed, page aligned just below the user pool
    /// (the upper three quarters of guest memory; BootInfo.initrd_gpa/initrd_len); at most
    /// 1 GiB uncompressed, and it must fit beside the kernel in the guest kernel's part of
    /// --mem (a quarter, 64M..1G; the error names the --mem that fits).
    #[arg(long, value_name = "FILE", conflicts_with = "rootfs_pack")]
    pub initrd: Option<PathBuf>,

    /// Host directory shared read-only with the guest as its root filesystem, read lazily
    /// (nothing is copied up front, so `--rootfs /` works): paths cannot leave DIR, host
    /// pseudo filesystems (/proc, /sys, ...) show empty, devices, FIFOs and sockets are not
    /// shown; the guest's writes stay in guest memory. An --initrd overlays it.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,

    /// Host directory packed on the fly into the guest's initial RAM disk (cpio newc):
    /// regular files, directories and symbolic links (not followed), owned by root, with
    /// their permissions and mtimes; sockets, FIFOs and devices are skipped.
    #[arg(long, value_name = "DIR")]
    pub rootfs_pack: Option<PathBuf>,

    /// Write a crash dump for each crash to `DIR/<tenant>-<unix time>-<n>/`: report.txt,
    /// registers.json, guest-memory.bin (sparse) and console.txt. DIR is created if missing.
    #[arg(long, value_name = "DIR")]
    pub crash_dump: Option<PathBuf>,

    /// Set a variable of the program's environment: NAME=VALUE, or NAME to pass pvmux's own
    /// value (skipped if unset), like podman's --env. Repeatable; overrides --env-file and
    /// the defaults (see "Environment" below).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<OsString>,

    /// Read environment variables from FILE: NAME=VALUE (or NAME) lines, # comments and
    /// blank lines ignored (podman's format). Repeatable, read in order; --env overrides.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Working directory of the program in the guest (an absolute path; default /). It must
    /// exist in the guest: otherwise the run ends with exit status 126.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<OsString>,

    /// Networking: `none` (default) gives the guest only its own loopback (127.0.0.0/8, ::1),
    /// isolated from the host's; `host` makes the guest's internet sockets host sockets that
    /// pvmux opens for it (TCP and UDP only, at most 256 at once): its addresses, 127.0.0.1
    /// included, are the host's.
    #[arg(long, value_enum, default_value = "none", value_name = "MODE")]
    pub net: super::net::NetMode,

    /// How the guest's programs are isolated from the guest kernel: `process` (default)
    /// runs every address space in a user sandbox process of its own, which cannot touch
    /// the kernel; `none` is the trusted in-process mode: init's address space (and what it
    /// execs) runs inside the kernel sandbox, on the vCPU threads, so its system calls,
    /// faults and context switches need no second process, but the program can read and
    /// write the guest kernel's memory (fork children still get user sandboxes). The host
    /// stays protected by the same sandbox either way (docs/SECURITY.md). For a
    /// single application you trust, as in a unikernel.
    #[arg(long, value_enum, default_value = "process", value_name = "MODE")]
    pub user_isolation: UserIsolation,

    /// Publish a guest port: the host listens on HOSTPORT, or IP:HOSTPORT (IP default
    /// 127.0.0.1; an IPv6 address in brackets) and hands each connection to the guest's listener on
    /// GUESTPORT (on its 127.0.0.1, else ::1). `/udp`: the host binds HOSTPORT and relays each
    /// client's datagrams to the guest's socket bound on GUESTPORT from a guest port of its own
    /// per client (replies go back to that client; a client idle 30 s is forgotten; at most 64
    /// clients and 256 queued datagrams, more are dropped). Repeatable; the same port may be
    /// published for /tcp and /udp. Only with --net none: with --net host the guest's sockets
    /// are host sockets already (bind them on the host's address instead). No port ranges.
    #[arg(short = 'p', long, value_name = "[IP:]HOSTPORT:GUESTPORT[/tcp|/udp]", value_parser = super::net::parse_publish)]
    pub publish: Vec<pvmux_host::net::Publish>,

    /// Give the guest a host directory it may write, at GUESTDIR (absolute; created in the
    /// guest if missing), like docker's and podman's -v: HOSTDIR must be an existing
    /// directory; `:ro` makes every change fail with EROFS. Repeatable (at most 64). Paths
    /// cannot leave HOSTDIR (symbolic links resolve inside it), no device nodes, FIFOs or
    /// sockets can be made, set-user-id/set-group-id bits are cleared; the guest's writes
    /// reach the host file at once (write-through), stores through a MAP_SHARED mapping on
    /// msync, munmap, fsync or exit. HOSTFILE:GUESTFILE (a regular file) gives the guest that
    /// one file at GUESTFILE, replacing the image's file of that name as a bind mount does
    /// (it cannot be removed or renamed: EBUSY).
    #[arg(short = 'v', long = "volume", value_name = "HOSTDIR:GUESTDIR[:ro|rw]", value_parser = parse_volume)]
    pub volume: Vec<VolumeSpec>,

    /// Give the guest a block device: the image FILE (an ext2 filesystem, e.g. made with
    /// `mkfs.ext2 FILE 64M`) is /dev/vda, /dev/vdb, ... in order; with mount=PATH the guest
    /// kernel mounts it at PATH before the program starts, without it the guest's programs
    /// mount it (`mount -t ext2 /dev/vda /mnt`) or read and write it raw. `:ro` opens the
    /// image read-only and every change in the guest is EROFS. The image is locked: one tenant owns it at a
    /// time (another `--disk` of it is refused); `pvmux disk move` hands it to another
    /// tenant. The guest caches metadata: changes reach the image on fsync, sync, unmount
    /// and exit. Repeatable (at most 8). A filesystem the guest cannot mount (not ext2,
    /// corrupted) ends the run with status 126 and a message.
    #[arg(long = "disk", value_name = "FILE[:ro][,mount=PATH]", value_parser = super::disk::parse_disk)]
    pub disk: Vec<super::disk::DiskSpec>,

    /// Set one of the program's resource limits, docker's syntax: NAME=SOFT or NAME=SOFT:HARD
    /// (e.g. nofile=1024:4096, core=0, stack=unlimited). Repeatable (see "Resource limits" below).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,

    /// Run the program as this user and group (default 0:0, root): numeric ids, or names
    /// looked up in --rootfs DIR/etc/passwd and /etc/group.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// (Debug) Listen on a UNIX socket at PATH for `pvmux exec --socket PATH -- CMD`: each
    /// connection starts CMD as a new process in the running guest (docs/ARCHITECTURE.md,
    /// "Exec sessions"). PATH must not exist; it is removed when the guest ends. The OCI
    /// runtime's per-container control socket will replace it.
    #[arg(long, value_name = "PATH", hide = true)]
    pub exec_socket: Option<PathBuf>,
    /// Internal (`pvmux restore`): resume the snapshot in DIR instead of booting.
    #[arg(long, hide = true, value_name = "DIR")]
    pub restore: Option<PathBuf>,
    /// Add a supplementary group to the program's (podman's --group-add): a numeric gid or a
    /// name looked up in --rootfs DIR/etc/group. Repeatable; joins the groups /etc/group
    /// lists a --user NAME in (at most 4096 in all).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Drop capabilities from the program's (podman's --cap-drop): names as CAP_NET_RAW or
    /// NET_RAW, comma-separated, or ALL. Repeatable. Without --cap-drop/--cap-add, root has
    /// every capability and another --user none.
    #[arg(long = "cap-drop", value_name = "CAP,...")]
    pub cap_drop: Vec<String>,
    /// Add capabilities (podman's --cap-add; after --cap-drop ALL, only these): for a
    /// non-root --user they are also its permitted, effective and ambient ones.
    #[arg(long = "cap-add", value_name = "CAP,...")]
    pub cap_add: Vec<String>,
    /// (OCI) The program's five capability sets verbatim, hexadecimal masks
    /// EFF:PRM:INH:BND:AMB (an OCI config's process.capabilities); overrides
    /// --cap-drop/--cap-add.
    #[arg(long = "cap-sets", value_name = "EFF:PRM:INH:BND:AMB", hide = true,
          value_parser = super::caps::parse_sets)]
    pub cap_sets: Option<pvmux_hypercalls::bootargs::CapSets>,

    /// runc's `run`: the container's id. With an ID, pvmux runs the container of the bundle
    /// (--bundle, default the current directory) as an OCI runtime does, and the other
    /// flags come from its config.json (see "OCI containers" below).
    #[arg(value_name = "ID")]
    pub container_id: Option<String>,

    /// The guest's host name (`uname -n`, `hostname`; 1 to 64 bytes) [default: pvmux].
    #[arg(long, value_name = "NAME", value_parser = parse_hostname)]
    pub hostname: Option<String>,

    /// The most tasks (processes and their threads) the guest's programs run at once, like
    /// podman's --pids-limit: fork and clone beyond it fail with EAGAIN, and a task leaves
    /// the count when it exits. The guest kernel's own ceiling (from its heap, at most
    /// 4096) applies too.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids_limit: Option<u32>,

    /// Give the tenant a name: it gets a state directory under --root, as an OCI container
    /// does, and `pvmux ps`, `stop`, `logs`, `exec NAME`, `stats`, `kill`, `state` reach it
    /// (see "Named tenants" below). Letters, digits, '_', '.' and '-', starting with a
    /// letter or digit; a name in use is an error.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Connect the guest to another tenant through the channel NAME (docs/MULTIKERNEL.md,
    /// "Channels between kernels"): the first tenant to name a channel creates it under
    /// --root (ROOT/.channels/NAME), the second joins it, a third is refused. In the guest
    /// it is the character device /dev/pvmux/NAME, a byte stream to the other kernel with a
    /// pipe's rules (reads block until data comes; end of file once the other side closed
    /// its last writer or ended; writes fail with EPIPE once it closed its last reader).
    /// Letters, digits, '_', '.' and '-' (at most 64, starting with a letter or digit).
    /// Repeatable (at most 16).
    #[arg(long = "channel", value_name = "NAME", value_parser = parse_channel)]
    pub channel: Vec<String>,
    /// Leave the guest programs' system-call sites as they are. By default the guest kernel
    /// rewrites a `mov $nr,%eax; syscall` site after it trapped once, in that process's copy
    /// of the code, to enter the kernel without a signal (several times faster); a program
    /// that checksums its own code then sees the changed bytes.
    #[arg(long)]
    pub no_patch: bool,
    /// Copy the --rootfs programs and libraries the guest runs into its memory instead of
    /// mapping them read-only from the host's page cache (host file windows, the default:
    /// nothing is read or copied at start-up and every tenant shares the host's pages). A
    /// snapshot saves the windows' bytes either way.
    #[arg(long)]
    pub no_file_windows: bool,

    /// The program to run as init, and its arguments (after `--`; see below).
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<OsString>,

    /// runc's flags of `run ID`.
    #[command(flatten)]
    pub oci: OciRunFlags,
}

/// The flags of runc's `run ID` (with an ID only).
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "OCI container (with an ID)")]
pub struct OciRunFlags {
    /// As `create`'s.
    #[command(flatten)]
    pub create: super::oci::CreateFlags,
    /// Return once the container runs, leaving it running.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it ended (`delete` removes it).
    #[arg(long)]
    pub keep: bool,
    /// Accepted and ignored (the container's process is pvmux's child anyway).
    #[arg(long)]
    pub no_subreaper: bool,
}

impl OciRunFlags {
    /// Whether any of them was given.
    pub(crate) fn any(&self) -> bool {
        let c = &self.create;
        c.bundle.is_some()
            || c.pid_file.is_some()
            || c.console_socket.is_some()
            || c.no_pivot
            || c.no_new_keyring
            || c.preserve_fds != 0
            || self.detach
            || self.keep
            || self.no_subreaper
    }
}

/// `--watchdog SECS`: seconds (fractions allowed); 0 = disabled.
fn parse_watchdog(s: &str) -> Result<Option<Duration>, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid watchdog timeout {s:?}: expected seconds, e.g. 10 or 0.5"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("watchdog timeout {s} is outside 0..=86400 seconds"));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// `--hostname NAME`: 1 to 64 bytes, no NUL.
fn parse_hostname(s: &str) -> Result<String, String> {
    if pvmux_hypercalls::bootargs::hostname_ok(s.as_bytes()) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "host name {s:?} must be 1 to {} bytes",
            pvmux_hypercalls::bootargs::HOSTNAME_MAX
        ))
    }
}

/// `--channel NAME`: a valid channel name.
fn parse_channel(s: &str) -> Result<String, String> {
    pvmux_host::channel::check_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `--cpus FRACTION`: a positive number of CPUs.
fn parse_cpus(s: &str) -> Result<f64, String> {
    let c: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU limit {s:?}: expected a number of CPUs, e.g. 0.5"))?;
    if !c.is_finite() || c <= 0.0 || c > 1024.0 {
        return Err(format!("CPU limit {s} is outside (0, 1024]"));
    }
    Ok(c)
}

/// How the guest's console is set up when a program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleSetup {
    /// Which host streams are terminals.
    pub terminals: Terminals,
    /// Size of the stdout terminal, if it is one.
    pub size: Option<ConsoleSize>,
    /// Ask the kernel to report the system calls it does not implement.
    pub syscall_report: bool,
}

/// The init program's environment and working directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitSetup {
    /// The whole environment (defaults included); empty: the kernel's own default.
    pub env: Environment,
    /// The working directory, if not `/`.
    pub workdir: Option<Vec<u8>>,
    /// --env, --env-file or --workdir was given: an error when no program runs.
    pub given: bool,
    /// The `--volume` mounts: (volume id, read-only, guest directory).
    pub volumes: Vec<(u32, bool, Vec<u8>)>,
    /// `--ulimit` values `(resource, soft, hard)`, in order.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// `--user`: `(uid, gid)`.
    pub user: Option<(u32, u32)>,
    /// The supplementary groups (`--user NAME`'s and `--group-add`), ascending, no
    /// duplicates; empty: none.
    pub groups: Vec<u32>,
    /// `--hostname`.
    pub hostname: Option<Vec<u8>>,
    /// `--pids-limit`.
    pub task_limit: Option<u32>,
    /// `--cap-drop`/`--cap-add`/`--cap-sets`: init's capability sets.
    pub caps: Option<pvmux_hypercalls::bootargs::CapSets>,
    /// `--user-isolation none`: the trusted in-process mode.
    pub user_isolation_none: bool,
    /// `--no-patch`: leave system-call sites unpatched.
    pub no_patch: bool,
    /// `--no-file-windows`: copy host programs into guest memory.
    pub no_file_windows: bool,
    /// `--channel` names, in index order.
    pub channels: Vec<Vec<u8>>,
}

impl InitSetup {
    /// From `pvmux run`'s flags; `terminal`: the guest's console is a terminal. Variables
    /// named alone are looked up in pvmux's environment.
    pub fn from_args(args: &RunArgs, terminal: bool) -> anyhow::Result<Self> {
        let lookup = |n: &std::ffi::OsStr| std::env::var_os(n);
        let mut env = Environment::defaults(terminal);
        // Names are looked up in the guest root (the share, or the directory packed).
        let root = args.rootfs.as_deref().or(args.rootfs_pack.as_deref());
        let resolved = args
            .user
            .as_deref()
            .map(|u| super::passwd::resolve_in(u, root))
            .transpose()?;
        if let Some(home) = resolved.as_ref().and_then(|u| u.home.as_deref()) {
            env.set_default("HOME", home);
        }
        let mut groups = resolved
            .as_ref()
            .map(|u| u.groups.clone())
            .unwrap_or_default();
        for g in &args.group_add {
            groups.push(super::passwd::resolve_group_in(g, root)?);
        }
        groups.sort_unstable();
        groups.dedup();
        if groups.len() > GROUPS_MAX {
            anyhow::bail!(
                "{} supplementary groups (--user and --group-add): at most {GROUPS_MAX}",
                groups.len()
            );
        }
        for file in &args.env_file {
            env.apply_file(file, lookup)?;
        }
        for e in &args.env {
            env.apply_flag(e, lookup)?;
        }
        let workdir = match &args.workdir {
            Some(dir) => Some(check_workdir(dir)?.to_vec()),
            None => None,
        };
        let rlimits = args
            .ulimit
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<anyhow::Result<_>>()?;
        let user = resolved.map(|u| (u.uid, u.gid));
        let caps = match args.cap_sets {
            Some(c) => Some(c),
            None => super::caps::from_flags(
                &args.cap_drop,
                &args.cap_add,
                user.map_or(0, |(uid, _)| uid),
            )?,
        };
        Ok(Self {
            env,
            workdir,
            given: !args.env.is_empty()
                || !args.env_file.is_empty()
                || args.workdir.is_some()
                || !args.ulimit.is_empty()
                || args.user.is_some()
                || !args.group_add.is_empty()
                || caps.is_some(),
            volumes: args
                .volume
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u32, v.read_only, v.guest.clone()))
                .collect(),
            rlimits,
            user,
            groups,
            hostname: args.hostname.as_ref().map(|h| h.as_bytes().to_vec()),
            task_limit: args.pids_limit,
            caps,
            user_isolation_none: args.user_isolation == UserIsolation::None,
            no_patch: args.no_patch,
            no_file_windows: args.no_file_windows,
            channels: args.channel.iter().map(|c| c.as_bytes().to_vec()).collect(),
        })
    }
}

/// `--user-isolation`: whether guest programs run in user sandboxes or in the kernel
/// sandbox (the trusted in-process mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UserIsolation {
    /// Every address space in a user sandbox process of its own (isolated from the kernel).
    #[default]
    Process,
    /// Init's address space in the kernel sandbox (trusted: it can write kernel memory).
    None,
}

/// The boot arguments for `--cmdline` (`None`: not given), `program` (with its arguments;
/// empty: none), whether an initial RAM disk or root is given and whether the host shares a
/// directory. Returns them and whether a program (PROGRAM, or /init) runs with its console
/// set up. An unknown or malformed word, or arguments beyond the limit, are errors.
pub fn boot_args(
    cmdline: Option<&str>,
    program: &[OsString],
    has_root: bool,
    hostfs: bool,
    console: &ConsoleSetup,
    init: &InitSetup,
) -> anyhow::Result<(BootArgsBuf, bool)> {
    let gid_bytes: Vec<u8> = init.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let words = Words::parse(cmdline.unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("--cmdline: {e} (`pvmux run --help` lists the words)"))?;
    let mut options = words.options;
    options.hostfs |= hostfs;
    // The kernel's own settings, with a program or without.
    let volumes: Vec<Command<'_>> = init
        .volumes
        .iter()
        .map(|(id, read_only, path)| {
            Command::Volume(VolumeMount {
                id: *id,
                read_only: *read_only,
                path,
            })
        })
        .chain(init.hostname.as_deref().map(Command::Hostname))
        .chain(init.task_limit.map(Command::TaskLimit))
        .chain(
            init.user_isolation_none
                .then_some(Command::UserIsolationNone),
        )
        .chain(init.no_patch.then_some(Command::NoPatch))
        .chain(init.no_file_windows.then_some(Command::NoFileWindows))
        .chain(init.channels.iter().map(|c| Command::Channel(c)))
        .collect();
    let argv: Vec<&[u8]> = if !program.is_empty() {
        if words.has_separator() {
            anyhow::bail!("--cmdline must not contain the word -- when a PROGRAM is given");
        }
        program.iter().map(|a| a.as_bytes()).collect()
    } else if has_root && cmdline.is_none() {
        vec![b"/init"]
    } else {
        // The words alone: `selftest` when none were given.
        if init.given {
            anyhow::bail!(
                "--env, --env-file, --workdir, --ulimit, --user and --group-add apply to a \
                 program: give one after `--` (or --initrd/--rootfs, which run /init)"
            );
        }
        let default = [Command::Selftest];
        let commands: Vec<Command<'_>> = match cmdline {
            Some(_) => words.commands().collect(),
            None => default.to_vec(),
        };
        let commands = volumes.iter().copied().chain(commands);
        let args = BootArgsBuf::new(&options, commands, words.argv()).map_err(too_long)?;
        return Ok((args, false));
    };
    options.terminals = console.terminals;
    if let Some(size) = console.size {
        options.console_size = Some(size);
    }
    options.syscall_report |= console.syscall_report;
    let setup = init
        .env
        .entries()
        .map(Command::Env)
        .chain(init.workdir.as_deref().map(Command::Workdir))
        .chain(
            init.rlimits
                .iter()
                .map(|&(resource, soft, hard)| Command::Rlimit {
                    resource,
                    soft,
                    hard,
                }),
        )
        .chain(init.user.map(|(uid, gid)| Command::User { uid, gid }))
        .chain(init.caps.map(Command::Caps));
    let groups = if init.groups.is_empty() {
        None
    } else {
        // `from_args` sorted, deduplicated and counted them.
        Some(Command::Groups(
            Gids::from_le_bytes(&gid_bytes).ok_or_else(|| {
                anyhow::anyhow!("at most {GROUPS_MAX} distinct supplementary groups")
            })?,
        ))
    };
    let setup = setup.chain(groups);
    let commands = volumes.iter().copied().chain(words.commands()).chain(setup);
    let args = BootArgsBuf::new(&options, commands, argv).map_err(too_long)?;
    Ok((args, true))
}

fn too_long(e: EncodeError) -> anyhow::Error {
    match e {
        EncodeError::TooLong { needed, limit } => anyhow::anyhow!(
            "the kernel's boot arguments need at least {needed} bytes, beyond the limit of \
             {limit} (each program argument takes its length plus 2, each environment \
             variable its length plus 4)"
        ),
        e => anyhow::anyhow!("cannot encode the kernel's boot arguments: {e}"),
    }
}

/// Whether the effective log filter (RUST_LOG if set, else `--log`) enables debug output.
fn debug_logging(log: &str) -> bool {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => v,
        _ => log.to_owned(),
    };
    tracing_subscriber::EnvFilter::try_new(filter)
        .ok()
        .and_then(|f| f.max_level_hint())
        .is_some_and(|l| l >= tracing_subscriber::filter::LevelFilter::DEBUG)
}

/// The guest console: stdout, flushed after every write so output appears promptly. Output
/// is held back until [`Console::open`] so the banner comes first.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Option<Vec<u8>>>>);

impl Console {
    fn held() -> Self {
        Self(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// Writes out what was held back; later writes go straight through.
    fn open(&self) -> std::io::Result<()> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match held {
            Some(bytes) => Self::emit(&bytes),
            None => Ok(()),
        }
    }

    fn emit(buf: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(pending) => pending.extend_from_slice(buf),
            None => Self::emit(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// What `run_once` needs besides the arguments.
struct Plan {
    boot_args: BootArgsBuf,
    /// A program (PROGRAM or /init) runs: its console setup applies.
    program: bool,
    kernel_log: KernelLog,
    /// The `--rootfs` share.
    hostfs: Option<Arc<HostFs>>,
    /// The `--volume` directories, by volume id.
    volumes: Vec<Arc<Volume>>,
    /// The `--channel` ends, by channel index.
    channels: Vec<Arc<pvmux_host::channel::ChannelEnd>>,
    /// The `--disk` images, opened and locked by `prepare`; the first launch takes them,
    /// a restart opens them again.
    disks: std::sync::Mutex<Option<Vec<pvmux_host::disk::Disk>>>,
}

/// Opens the `--volume` directories once, before anything boots (an unusable one is a host
/// error).
fn open_volumes(specs: &[VolumeSpec]) -> anyhow::Result<Vec<Arc<Volume>>> {
    check_volumes(specs).map_err(anyhow::Error::msg)?;
    specs
        .iter()
        .map(|v| {
            Volume::open(&v.host, v.read_only)
                .map(Arc::new)
                .with_context(|| format!("--volume {} is not usable", v.host.display()))
        })
        .collect()
}

/// A guest ready to boot: its flags checked, its files opened, its kernel parsed.
pub(crate) struct Prepared {
    host: Host,
    kernel: Arc<KernelImage>,
    initrd: Option<Initrd>,
    plan: Plan,
    label: String,
    ttys: Terminals,
}

/// The directory of the channels under state root `root`.
pub(crate) fn channels_dir(root: &std::path::Path) -> PathBuf {
    root.join(".channels")
}

/// Checks `args` and opens everything the guest needs, booting nothing. `log` is the `--log`
/// filter; `root` the state root (where `--channel`s live).
pub(crate) fn prepare(
    args: &RunArgs,
    log: &str,
    root: &std::path::Path,
) -> anyhow::Result<Prepared> {
    // The host's one-time detection runs while this prepares the boot.
    pvmux_host::warm_up();
    let debug = debug_logging(log);
    let ttys = host_terminals();
    let console = ConsoleSetup {
        terminals: ttys,
        size: ttys
            .stdout
            .then(|| terminal_size(std::io::stdout()))
            .flatten(),
        syscall_report: debug,
    };
    let has_root = args.initrd.is_some() || args.rootfs.is_some() || args.rootfs_pack.is_some();
    let (boot_args, program) = boot_args(
        args.cmdline.as_deref(),
        &args.program,
        has_root,
        args.rootfs.is_some(),
        &console,
        &InitSetup::from_args(args, ttys.stdin || ttys.stdout)?,
    )?;
    // The share: opened once, before anything boots (fails early if DIR is unusable); the
    // kernel uses it because its boot arguments have the `hostfs` option.
    let hostfs = match &args.rootfs {
        Some(dir) => {
            Some(Arc::new(HostFs::open_cached(dir).with_context(|| {
                format!("--rootfs {} is not usable", dir.display())
            })?))
        }
        None => None,
    };
    let volumes = open_volumes(&args.volume)?;
    if !args.channel.is_empty() && args.restart != RestartPolicy::never() {
        anyhow::bail!(
            "--channel and --restart exclude each other (a channel carries one stream each way)"
        );
    }
    let channels = if args.channel.is_empty() {
        Vec::new()
    } else {
        let dir = channels_dir(&std::path::absolute(root)?);
        pvmux_host::channel::join_all(&dir, &args.channel)
            .map_err(|e| anyhow::anyhow!("--channel: {e}"))?
    };
    let disks = super::disk::open_disks(&args.disk)?;
    let plan = Plan {
        hostfs,
        volumes,
        channels,
        disks: std::sync::Mutex::new(Some(disks)),
        boot_args,
        program,
        kernel_log: match (program, debug) {
            (false, _) => KernelLog::Stdout,
            (true, false) => KernelLog::Hidden,
            (true, true) => KernelLog::Stderr,
        },
    };
    tracing::debug!(boot_args = %plan.boot_args, "kernel boot arguments");
    // The embedded images are parsed where they are, not copied first.
    let (bytes, label): (std::borrow::Cow<'static, [u8]>, String) = match &args.kernel {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read kernel image {}", path.display()))?
                .into(),
            path.display().to_string(),
        ),
        // The test kernel has the self-tests, hostile cases, benchmarks and crash commands.
        None if plan.boot_args.args().needs_diagnostics() => {
            (images::KERNEL_TEST.into(), "embedded (test)".to_owned())
        }
        None => (images::KERNEL.into(), "embedded".to_owned()),
    };
    let kernel =
        KernelImage::parse(bytes).with_context(|| format!("kernel image {label} is not usable"))?;
    let initrd = load_initrd(args)?;
    let host = Host::new(images::STUB).context("cannot prepare the sandbox stub")?;
    Ok(Prepared {
        host,
        kernel: Arc::new(kernel),
        initrd,
        plan,
        label,
        ttys,
    })
}

impl Prepared {
    /// Boots the guest with its console on stdout and stderr, input from stdin (no banner, no
    /// restarts: what a container monitor runs).
    /// The guest console's size at boot is `size` (an OCI container's terminal, sized by the
    /// engine between `create`, which prepared the guest, and `start`). Nothing changes when
    /// the console is not a terminal.
    pub(crate) fn set_console_size(&mut self, size: ConsoleSize) -> anyhow::Result<()> {
        let a = self.plan.boot_args.args();
        if !a.options.terminals.stdout || a.options.console_size == Some(size) {
            return Ok(());
        }
        let mut options = a.options;
        options.console_size = Some(size);
        let commands: Vec<Command<'_>> = a.commands().collect();
        let argv: Vec<&[u8]> = a.argv().collect();
        let buf = BootArgsBuf::new(&options, commands, argv)
            .map_err(|e| anyhow::anyhow!("cannot set the console size: {e}"))?;
        self.plan.boot_args = buf;
        Ok(())
    }

    /// The kernel image's name (`embedded`, or its path).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn launch(&self, args: &RunArgs) -> anyhow::Result<pvmux_host::Tenant> {
        let cfg = tenant_config(
            args,
            &self.plan,
            &self.kernel,
            self.initrd.as_ref(),
            Box::new(Console::default()),
        )?;
        if let Some(dir) = &args.restore {
            let t = self
                .host
                .restore(cfg, dir)
                .with_context(|| format!("cannot restore {}", dir.display()))?;
            if !t.handle().wait_restored(std::time::Duration::from_secs(30)) {
                t.kill();
                anyhow::bail!("the restored guest did not resume within 30 s");
            }
            return Ok(t);
        }
        self.host.launch(cfg).context("cannot launch the guest")
    }
}

/// Runs a guest; returns pvmux's exit code. `log` is the `--log` filter.
pub(crate) fn run(args: &RunArgs, log: &str, root: &std::path::Path) -> anyhow::Result<u8> {
    let Prepared {
        host,
        kernel,
        initrd,
        plan,
        label,
        ttys,
    } = prepare(args, log, root)?;
    // The guest kernel does the line editing and echo of a terminal: the host terminal passes
    // keys through raw while the program runs (restored when this guard drops). Only when
    // the guest can echo to a host terminal (stdout or stderr); otherwise the host's own
    // echo is all the user would see.
    let _raw = (plan.program && ttys.stdin && (ttys.stdout || ttys.stderr))
        .then(RawTerminal::enable)
        .flatten();
    let outcome = run_with_restarts(
        &args.restart,
        |_| run_once(&host, &kernel, initrd.as_ref(), args, &plan, &label),
        |r| {
            eprint!("{}", r.report);
            eprintln!(
                "pvmux: restart {}/{} after crash",
                r.restart, r.max_restarts
            );
        },
    )?;
    Ok(outcome_code(&outcome, args.mem))
}

/// pvmux's exit code for `outcome`, after saying on stderr how the program died (if killed)
/// or the crash report (if the guest crashed). `mem`: the guest's memory size.
pub(crate) fn outcome_code(outcome: &TenantOutcome, mem: u64) -> u8 {
    match outcome {
        TenantOutcome::Exited(code) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        TenantOutcome::ProgramKilled(death) => {
            if let Some(line) = super::death::killed_line(death, mem) {
                eprintln!("{line}");
            }
            u8::try_from(death.code & 0xff).unwrap_or(u8::MAX)
        }
        TenantOutcome::Crashed(report) => {
            eprint!("{report}");
            EXIT_GUEST_CRASH
        }
    }
}

/// An initial RAM disk ready for the guest, and what to say about it in the banner.
struct Initrd {
    bytes: Arc<Vec<u8>>,
    label: String,
}

/// Reads `--initrd` or packs `--rootfs-pack` into a validated plain newc archive.
fn load_initrd(args: &RunArgs) -> anyhow::Result<Option<Initrd>> {
    let (bytes, summary, what) = if let Some(path) = &args.initrd {
        let (bytes, summary) = initramfs::load_file(path, DEFAULT_MAX_SIZE)
            .with_context(|| format!("--initrd {} is not usable", path.display()))?;
        (bytes, summary, format!("initrd {}", path.display()))
    } else if let Some(dir) = &args.rootfs_pack {
        let bytes = initramfs::pack_dir(dir)
            .with_context(|| format!("cannot pack --rootfs-pack {}", dir.display()))?;
        // Packing writes well-formed archives; checking anyway keeps one rule: the guest
        // only ever receives what `validate` accepted.
        let summary = initramfs::validate(&bytes).with_context(|| {
            format!(
                "packed --rootfs-pack {} is not a valid archive",
                dir.display()
            )
        })?;
        (bytes, summary, format!("rootfs {}", dir.display()))
    } else {
        return Ok(None);
    };
    tracing::info!(?summary, "{what}: initial RAM disk ready");
    let label = format!(
        "{what} ({} entries, {})",
        summary.entries,
        format_size(bytes.len() as u64)
    );
    Ok(Some(Initrd {
        bytes: Arc::new(bytes),
        label,
    }))
}

/// Boots the guest once and waits for it.
fn run_once(
    host: &Host,
    kernel: &Arc<KernelImage>,
    initrd: Option<&Initrd>,
    args: &RunArgs,
    plan: &Plan,
    label: &str,
) -> anyhow::Result<TenantOutcome> {
    // A program's output is not preceded by a banner (unless logging at info or more).
    let banner = !plan.program || tracing::enabled!(tracing::Level::INFO);
    let console = if banner {
        Console::held()
    } else {
        Console::default()
    };
    let tenant = host
        .launch(tenant_config(
            args,
            plan,
            kernel,
            initrd,
            Box::new(console.clone()),
        )?)
        .context("cannot launch the guest")?;
    // Exec sessions through the control socket while the guest runs (removed at the end).
    let _exec_server = match &args.exec_socket {
        Some(path) => Some(
            pvmux_host::exec::socket::ExecServer::bind(path, tenant.exec_handle())
                .context("cannot open the --exec-socket")?,
        ),
        None => None,
    };
    // In a terminal the guest console follows its resizes (the size at boot is the boot
    // arguments').
    let _winch = if plan.program && host_terminals().stdout {
        let h = tenant.handle();
        Some(super::winsize::watch(move || {
            if let Some((rows, cols)) = super::winsize::of(std::io::stdout()) {
                if let Some(size) = ConsoleSize::new(cols, rows) {
                    h.resize_console(size);
                }
            }
        })?)
    } else {
        None
    };
    // `kill -QUIT` asks the guest kernel what its tasks are doing (as a JVM prints its
    // threads): the dump goes to standard error and the guest goes on.
    let _quit = {
        let h = tenant.handle();
        super::signals::on(signal_hook::consts::SIGQUIT, "pvmux-quit", move || {
            h.request_dump()
        })?
    };
    // The banner names the running sandbox; guest output held until then follows it.
    if banner {
        tenant.wait_started(Duration::from_secs(10));
        print_banner(args, initrd, label, tenant.sandbox_pid());
    }
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    let outcome = tenant.wait();
    console
        .open()
        .context("cannot write the guest console to stdout")?;
    Ok(outcome)
}

/// The tenant of `args` and `plan`, its console output going to `console`.
fn tenant_config(
    args: &RunArgs,
    plan: &Plan,
    kernel: &Arc<KernelImage>,
    initrd: Option<&Initrd>,
    console: Box<dyn Write + Send>,
) -> anyhow::Result<TenantConfig> {
    Ok(TenantConfig {
        name: "guest".to_owned(),
        kernel: Arc::clone(kernel),
        mem_size: args.mem_max.unwrap_or(args.mem),
        mem_initial: args.mem_max.map(|_| args.mem),
        vcpus: args.vcpus,
        boot_args: plan.boot_args.clone(),
        console,
        console_stderr: Box::new(std::io::stderr()),
        kernel_log: plan.kernel_log,
        console_input: plan.program.then_some(ConsoleInput::HostStdin),
        watchdog: args.watchdog,
        console_rate: (args.console_rate > 0).then_some(args.console_rate),
        cpu_limit: args.cpus,
        cpu_seconds: args.cpu_seconds,
        cpu_shares: args.cpu_shares,
        crash_dump: args.crash_dump.clone(),
        initrd: initrd.map(|i| Arc::clone(&i.bytes)),
        hostfs: plan.hostfs.clone(),
        volumes: plan.volumes.clone(),
        disks: match plan.disks.lock().ok().and_then(|mut d| d.take()) {
            Some(d) => d,
            None => super::disk::open_disks(&args.disk)?,
        },
        sandbox_user: args.sandbox_user,
        net: super::net::config(args.net, &args.publish).map_err(anyhow::Error::msg)?,
        channels: plan.channels.clone(),
    })
}

fn print_banner(args: &RunArgs, initrd: Option<&Initrd>, label: &str, pid: u32) {
    eprintln!(
        "pvmux {}: ABI v{}, {} vCPU{}, {}, kernel {label}{}{}, sandbox pid {}",
        env!("CARGO_PKG_VERSION"),
        pvmux_hypercalls::ABI_VERSION,
        args.vcpus,
        if args.vcpus == 1 { "" } else { "s" },
        format_size(args.mem),
        args.rootfs
            .as_ref()
            .map(|d| format!(", rootfs {} (shared read-only)", d.display()))
            .unwrap_or_default(),
        initrd.map(|i| format!(", {}", i.label)).unwrap_or_default(),
        pid
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    /// The boot arguments as words, and whether a program runs.
    fn words(
        c: Option<&str>,
        p: &[&str],
        root: bool,
        share: bool,
        setup: &ConsoleSetup,
    ) -> Result<(String, bool), String> {
        boot_args(c, &os(p), root, share, setup, &InitSetup::default())
            .map(|(a, program)| (a.to_string(), program))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn boot_arguments() {
        let plain = ConsoleSetup::default();
        let tty = ConsoleSetup {
            terminals: Terminals {
                stdin: true,
                stdout: true,
                stderr: false,
            },
            size: ConsoleSize::new(80, 24),
            syscall_report: true,
        };
        let b = |c, p: &[&str], root, w: &ConsoleSetup| words(c, p, root, false, w);
        assert_eq!(b(None, &[], false, &plain), Ok(("selftest".into(), false)));
        assert_eq!(
            b(Some("exit=3"), &[], true, &plain),
            Ok(("exit=3".into(), false))
        );
        assert_eq!(b(Some(""), &[], false, &plain), Ok(("".into(), false)));
        assert_eq!(b(None, &[], true, &plain), Ok(("-- /init".into(), true)));
        assert_eq!(
            b(None, &["/bin/sh", "-c", "echo 100% done"], false, &tty),
            Ok((
                "console-tty=3 console-size=80x24 syscall-report -- /bin/sh -c \"echo 100% done\""
                    .into(),
                true
            ))
        );
        assert_eq!(
            b(Some(" fs-selftest quiet "), &["/x"], true, &plain),
            Ok(("quiet fs-selftest -- /x".into(), true))
        );
        // The share adds `hostfs`, program or not; the host's console options win.
        assert_eq!(
            words(Some("console-tty=7 ls=/"), &["/x"], false, true, &plain),
            Ok(("hostfs ls=/ -- /x".into(), true))
        );
        assert_eq!(
            words(Some("ls=/"), &[], false, true, &plain),
            Ok(("hostfs ls=/".into(), false))
        );
        // Without PROGRAM, the words after -- are the program's arguments.
        assert_eq!(
            b(Some("exit=1 -- /bin/echo a"), &[], false, &plain),
            Ok(("exit=1 -- /bin/echo a".into(), false))
        );
        assert!(b(Some("exit=1 -- b"), &["/x"], false, &plain)
            .unwrap_err()
            .contains("must not contain"));
        let e = b(Some("selftest bogus"), &[], false, &plain).unwrap_err();
        assert!(
            e.contains("unknown kernel command-line word \"bogus\""),
            "{e}"
        );
        let e = b(Some("exit=-1"), &["/x"], false, &plain).unwrap_err();
        assert!(e.contains("\"exit=-1\": expected a decimal number"), "{e}");
        // Empty and non-UTF-8 arguments pass as they are.
        let raw = OsString::from(std::ffi::OsStr::from_bytes(b"\xff"));
        let (a, _) = boot_args(
            None,
            &[raw, OsString::new()],
            false,
            false,
            &plain,
            &InitSetup::default(),
        )
        .unwrap();
        assert!(a.args().argv().eq([&b"\xff"[..], b""]));
        // The limit: header (48) and each argument's length prefix (2) count (an argument
        // is at most 65535 bytes).
        let fill = |total: usize| {
            let (mut left, mut v) = (total - 48, Vec::new());
            while left > 0 {
                let n = (left - 2).min(60_000);
                v.push("a".repeat(n));
                left -= n + 2;
            }
            v
        };
        let fits = fill(BOOT_ARGS_MAX);
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let (a, _) = boot_args(
            None,
            &os(&refs(&fits)),
            false,
            false,
            &plain,
            &InitSetup::default(),
        )
        .unwrap();
        assert_eq!(a.as_bytes().len(), BOOT_ARGS_MAX);
        let mut long = fits.clone();
        long.last_mut().unwrap().push('a');
        let e = b(None, &refs(&long), false, &plain).unwrap_err();
        assert!(
            e.contains(&format!("beyond the limit of {BOOT_ARGS_MAX}")),
            "{e}"
        );
        assert!(
            b(None, &vec!["/x"; BOOT_ARGS_MAX / 4 + 1], false, &plain).is_err(),
            "4 bytes per /x"
        );
        assert!(b(
            Some(&"ls=/ ".repeat(BOOT_ARGS_MAX / 5 + 1)),
            &[],
            false,
            &plain
        )
        .is_err());
    }

    #[test]
    fn volumes_are_mounted_with_or_without_a_program() {
        let init = InitSetup {
            volumes: vec![(0, false, b"/data".to_vec()), (1, true, b"/ro".to_vec())],
            ..Default::default()
        };
        for (c, p) in [(None, &["/x"][..]), (Some("exit=0"), &[][..])] {
            let (a, _) =
                boot_args(c, &os(p), false, false, &ConsoleSetup::default(), &init).unwrap();
            let v: Vec<_> = a.args().volumes().collect();
            assert_eq!(v.len(), 2);
            assert_eq!(
                (v[0].id, v[0].read_only, v[0].path),
                (0, false, &b"/data"[..])
            );
            assert_eq!((v[1].id, v[1].read_only, v[1].path), (1, true, &b"/ro"[..]));
            assert!(!a.args().needs_diagnostics());
        }
    }

    #[test]
    fn environment_and_workdir_follow_the_program() {
        let init = InitSetup {
            env: Environment::defaults(false),
            workdir: Some(b"/srv".to_vec()),
            given: true,
            rlimits: vec![(7, 64, 128)],
            user: Some((1000, 100)),
            groups: vec![4, 27],
            ..Default::default()
        };
        let run = |c: Option<&str>, p: &[&str], root| {
            boot_args(c, &os(p), root, false, &ConsoleSetup::default(), &init)
        };
        let (a, program) = run(Some("exit=0"), &["/x"], false).unwrap();
        assert!(program);
        let args = a.args();
        assert!(args.env().eq(init.env.entries()));
        assert_eq!(args.workdir(), Some(&b"/srv"[..]));
        assert!(args.rlimits().eq([(7, 64, 128)]));
        assert_eq!(args.user(), Some((1000, 100)));
        assert!(args.groups().is_some_and(|g| g.iter().eq([4, 27])));
        assert!(!args.needs_diagnostics());
        assert_eq!(
            args.commands().next(),
            Some(Command::Exit(0)),
            "the words' commands first"
        );
        // /init of --initrd/--rootfs gets them too; without a program they are an error.
        assert_eq!(
            run(None, &[], true).unwrap().0.args().workdir(),
            Some(&b"/srv"[..])
        );
        let e = run(Some("exit=1"), &[], false).unwrap_err().to_string();
        assert!(e.contains("apply to a program"), "{e}");
        // The size limit counts the environment: 4 bytes per record.
        let mut big = Environment::default();
        let value = format!("V={}", "x".repeat(BOOT_ARGS_MAX / 2));
        let init = InitSetup {
            env: {
                for name in ["V", "W", "X"] {
                    big.apply_flag(std::ffi::OsStr::new(&value.replace('V', name)), |_| None)
                        .unwrap();
                }
                big
            },
            workdir: None,
            given: true,
            ..Default::default()
        };
        let e = boot_args(
            None,
            &os(&["/x"]),
            false,
            false,
            &ConsoleSetup::default(),
            &init,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("each environment variable its length plus 4"),
            "{e}"
        );
    }

    #[test]
    fn test_kernel_only_for_test_commands() {
        let needs = |c: &str| {
            boot_args(
                Some(c),
                &[],
                false,
                false,
                &ConsoleSetup::default(),
                &InitSetup::default(),
            )
            .unwrap()
            .0
            .args()
            .needs_diagnostics()
        };
        for c in [
            "selftest",
            "fs-selftest",
            "panic",
            "syscall",
            "crash=double-fault",
            "crash=stub-syscall",
            "bench=all",
            "hostile=storm hostpid=1",
            "exit=0 selftest",
        ] {
            assert!(needs(c), "{c}");
        }
        for c in [
            "",
            "exit=3",
            "sleep=1 ls=/ cat=/x",
            "bench_quick quiet",
            "-- selftest",
        ] {
            assert!(!needs(c), "{c}");
        }
        let default = boot_args(
            None,
            &[],
            false,
            false,
            &ConsoleSetup::default(),
            &InitSetup::default(),
        )
        .unwrap();
        assert!(default.0.args().needs_diagnostics(), "selftest by default");
    }

    #[test]
    fn help_lists_the_words() {
        for (word, _) in words::HELP {
            assert!(RUN_AFTER_HELP.contains(word), "{word}");
        }
    }
}
