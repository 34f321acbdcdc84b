//! The jail every sandbox process (kernel, user, spare) is started in: defense in depth under
//! the seccomp policy, in the manner of Firecracker's jailer (docs/SECURITY.md, "Layers").
//!
//! In the cloned child, before it `execveat`s the stub (`sandbox::exec_child`):
//!
//! 1. **Namespaces** — the child is cloned into new pid, net, mount, ipc, uts and cgroup
//!    namespaces (and, when pvmux is not root, a new user namespace that maps only pvmux's own
//!    uid and gid, which is what lets an unprivileged pvmux create the others). As root, the
//!    net, ipc, uts and (with the empty root) mount namespaces are made once per tenant, by
//!    its kernel sandbox, and every later sandbox of the tenant joins them
//!    (`SharedNamespaces`, `setns` first thing in the child): they are empty (no interface
//!    but a down loopback, no IPC object, a default host name, no mount but the empty root)
//!    and the filter lets no sandbox use them, and a new network namespace per process cost
//!    ~0.3 ms of host CPU per guest `fork` (its creation and its teardown), a new mount
//!    namespace a copy of the host's mount tree and two expedited RCU grace periods. As root no user
//!    namespace is made: the sandbox then holds no capability in *any* namespace, where a user
//!    namespace would make it the owner (with a full capability set) of the namespaces it
//!    lives in, which only widens the host kernel's attack surface.
//! 2. **Empty root** — in its mount namespace the child makes every mount private, mounts an
//!    empty read-only tmpfs (`nosuid,nodev,noexec`), `pivot_root`s into it, detaches the old
//!    root and changes to `/`: no host file is reachable by path, even to a process that got
//!    past seccomp. (The stub is exec'd from its memfd, which needs no path.) A sandbox that
//!    joins the tenant's mount namespace (as root) is there already: `setns` made its root.
//! 3. **Resource limits** ([`RLIMITS`]): no file may be written (`FSIZE` 0; a kernel sandbox's
//!    is its guest memory's size, `ChildJail::for_kernel_sandbox`), no memory locked,
//!    no message queue, no core dump, no real-time priority, no nice raise, no file lock, no
//!    fd above the ones the stub holds and the host file windows the host may install
//!    (`NOFILE`; the filters allow no call that makes a descriptor); and the tenant's CPU budget (`RLIMIT_CPU`),
//!    which the host may not be able to set after the uid change.
//! 4. **Credentials** — started as root, the child drops the capability bounding set, clears
//!    its supplementary groups and switches to the [`SandboxUser`] (all of real, effective and
//!    saved ids), which empties its permitted, effective and ambient sets; then the
//!    inheritable set and the ambient set are cleared explicitly (also when not root: inside
//!    its user namespace it drops the bounding set too). `no_new_privs` is set.
//! 5. **Parent death** — `PR_SET_PDEATHSIG(SIGKILL)` is set *after* the last credential change
//!    (a uid change clears it), and then the child checks that its creator is still its
//!    parent: in a new pid namespace `getppid()` is 0, so it reads `PPid` from
//!    `/proc/self/stat` of the host's procfs, opened before the root was changed.
//!
//! What the host allows is detected once per process ([`layers`]) by cloning probe children
//! that do exactly these steps; a layer that fails is left out and every sandbox is started
//! with the others, and the layers in force are logged at info level. Without root and without
//! user namespaces, only the resource limits, the cleared capabilities and `no_new_privs` are
//! left: the seccomp policy is the security boundary either way.
//!
//! Pitfalls handled elsewhere: the stub sees itself as pid 1 and its threads with namespace
//! tids, so the host translates a tid the stub published before it signals it
//! ([`host_tid`]); the uid change sets the dumpable flag of the memory the vfork child shares
//! with the host, so `sandbox::spawn` restores the host's flag after the clone.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use pvmux_hypercalls::sandbox::{CTL_FD, GUEST_MEM_FD};

/// The file descriptors a sandbox holds once its stub runs (everything else is closed before
/// the exec): the guest-memory memfd and the control memfd. (A kernel sandbox may hold one
/// more, read-only, below the limit too: its kernel image's file,
/// [`pvmux_hypercalls::sandbox::KERNEL_IMAGE_FD`].)
pub const SANDBOX_FDS: &[i32] = &[GUEST_MEM_FD, CTL_FD];

/// `RLIMIT_NOFILE` of a sandbox: one above the highest fd it may hold — the host file
/// windows' descriptors, which the host installs in a user sandbox at their fixed numbers
/// (`pvmux_hypercalls::window::WINDOW_FD_BASE` + slot), above the ones it starts with. The
/// filters allow no call that makes a descriptor, so this is not what stops a sandbox from
/// making one: it bounds what the host may install.
pub const SANDBOX_NOFILE: u64 = {
    use pvmux_hypercalls::window::{MAX_WINDOWS, WINDOW_FD_BASE};
    WINDOW_FD_BASE as u64 + MAX_WINDOWS as u64
};
const _: () = {
    let mut i = 0;
    while i < SANDBOX_FDS.len() {
        assert!(SANDBOX_FDS[i] < pvmux_hypercalls::window::WINDOW_FD_BASE);
        i += 1;
    }
    assert!(pvmux_hypercalls::sandbox::KERNEL_IMAGE_FD < pvmux_hypercalls::window::WINDOW_FD_BASE);
};

/// The uid and gid sandboxes run as when pvmux is started as root
/// (`pvmux run --sandbox-user UID[:GID]`, [`crate::TenantConfig::sandbox_user`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SandboxUser {
    /// User id (real, effective, saved and filesystem).
    pub uid: u32,
    /// Group id (real, effective, saved and filesystem); no supplementary groups.
    pub gid: u32,
}

impl SandboxUser {
    /// The default: uid = gid = 2,000,000,000 ([`DEFAULT_SANDBOX_ID`]).
    pub const DEFAULT: Self = Self {
        uid: DEFAULT_SANDBOX_ID,
        gid: DEFAULT_SANDBOX_ID,
    };
}

impl Default for SandboxUser {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The dedicated id the sandboxes of every tenant run as by default when pvmux is root.
///
/// One fixed id, not one per tenant: it is outside every range Linux distributions hand out
/// (system and regular accounts below 60,000, systemd's dynamic users 61,184–65,519, subuid
/// ranges from 100,000 in blocks of 65,536, systemd-nspawn's container range 524,288–
/// 1,879,048,191, systemd's foreign range from 2,147,352,576) and below 2^31, so it owns no
/// file and shares no process with any account or service on the host; that is what the uid
/// layer is for (files, signals, `/proc` of other users, root's privileges). Between tenants
/// it adds nothing the other layers lack — tenants cannot see each other's processes (pid
/// namespaces), make no `kill`, `ptrace` or `open` (seccomp) — while per-tenant ids would need
/// an id range reserved on the host and an allocator shared by every pvmux process. An operator
/// who wants them passes one per tenant, as Firecracker's jailer takes `--uid`/`--gid` per
/// microVM.
pub const DEFAULT_SANDBOX_ID: u32 = 2_000_000_000;

/// Errors parsing a [`SandboxUser`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SandboxUserError {
    /// Not `UID` or `UID:GID` with decimal ids.
    #[error("expected UID or UID:GID with numeric ids, got {0:?}")]
    Syntax(String),
    /// `4294967295` is `(uid_t)-1`, "no change", for the kernel.
    #[error("id 4294967295 is not a valid id")]
    Invalid,
}

impl std::str::FromStr for SandboxUser {
    type Err = SandboxUserError;
    /// `UID` (gid = uid) or `UID:GID`, numeric.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SandboxUserError::Syntax(s.to_owned());
        let id = |t: &str| -> Result<u32, SandboxUserError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match t.parse::<u32>() {
                Ok(u32::MAX) => Err(SandboxUserError::Invalid),
                Ok(v) => Ok(v),
                Err(_) => Err(bad()),
            }
        };
        let (uid, gid) = match s.split_once(':') {
            Some((u, g)) => (id(u)?, id(g)?),
            None => {
                let u = id(s)?;
                (u, u)
            }
        };
        Ok(Self { uid, gid })
    }
}

impl std::fmt::Display for SandboxUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// The resource limits every sandbox gets (soft = hard).
/// `RLIMIT_AS` and `RLIMIT_STACK` are the stub's own business; `RLIMIT_CPU` is the tenant's
/// CPU budget (set by the host after the spawn); `RLIMIT_NPROC` and `RLIMIT_SIGPENDING` count
/// per user, not per sandbox, so they are left alone (threads are bounded by the filter: the
/// stub creates one per vCPU and then has no `clone`), except that a sandbox switched from
/// root to [`SandboxUser`] gets an unlimited `RLIMIT_NPROC` (see [`nproc_for_uid_change`]).
pub const RLIMITS: [Rlimit; 8] = [
    Rlimit::new(libc::RLIMIT_NOFILE, "Max open files", SANDBOX_NOFILE),
    Rlimit::new(libc::RLIMIT_FSIZE, "Max file size", 0),
    Rlimit::new(libc::RLIMIT_MEMLOCK, "Max locked memory", 0),
    Rlimit::new(libc::RLIMIT_MSGQUEUE, "Max msgqueue size", 0),
    Rlimit::new(libc::RLIMIT_CORE, "Max core file size", 0),
    Rlimit::new(libc::RLIMIT_RTPRIO, "Max realtime priority", 0),
    Rlimit::new(libc::RLIMIT_NICE, "Max nice priority", 0),
    Rlimit::new(libc::RLIMIT_LOCKS, "Max file locks", 0),
];

/// One resource limit of [`RLIMITS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// The `RLIMIT_*` resource.
    pub resource: libc::__rlimit_resource_t,
    /// Its name in `/proc/PID/limits`.
    pub proc_name: &'static str,
    /// Soft and hard limit.
    pub value: u64,
}

impl Rlimit {
    const fn new(resource: libc::__rlimit_resource_t, proc_name: &'static str, value: u64) -> Self {
        Self {
            resource,
            proc_name,
            value,
        }
    }
}

/// `RLIMIT_NPROC` of a sandbox that switches from root to a [`SandboxUser`]: pvmux's own hard
/// limit (soft = hard; unlimited if pvmux's is). The limit counts every process and thread of
/// the *real uid*, which all sandboxes of all tenants (and of other pvmux processes) share, so
/// no per-sandbox value is right; root ignores the limit, and a lower soft `ulimit -u`
/// inherited by the dedicated uid would make vCPU threads fail to start once enough sandboxes
/// run. The bound is the filter's: no `clone` once it is in force, one thread per vCPU before.
pub fn nproc_for_uid_change() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut r) } != 0 {
        return libc::RLIM_INFINITY;
    }
    r.rlim_max
}

/// What the host allows, detected once ([`layers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    /// pvmux runs as root (effective uid 0): sandboxes switch to a [`SandboxUser`].
    pub root: bool,
    /// `CLONE_NEW*` flags every sandbox is cloned with (`CLONE_NEWUSER` only when not root).
    pub namespaces: i32,
    /// The sandbox's root is an empty read-only tmpfs (needs a mount namespace).
    pub empty_root: bool,
    /// The capability bounding set can be dropped (root, or inside a user namespace).
    pub drop_bounding: bool,
}

impl Layers {
    /// Whether sandboxes live in their own pid namespace (pids and tids differ from the host's).
    pub fn pid_namespace(&self) -> bool {
        self.namespaces & libc::CLONE_NEWPID != 0
    }
    /// Human-readable list of the layers in force, for the log.
    pub fn describe(&self) -> String {
        let mut v: Vec<&str> = Vec::new();
        for (flag, name) in NAMESPACES {
            if self.namespaces & flag != 0 {
                v.push(name);
            }
        }
        let ns = if v.is_empty() {
            "no namespaces".to_owned()
        } else {
            format!("namespaces {}", v.join(","))
        };
        format!(
            "{ns}; {}; {}; capabilities cleared, bounding set {}; rlimits; no_new_privs; seccomp",
            if self.empty_root {
                "empty read-only root"
            } else {
                "host root (no mount namespace)"
            },
            if self.root {
                "dedicated uid/gid, no supplementary groups"
            } else {
                "pvmux's own uid (not root)"
            },
            if self.drop_bounding {
                "dropped"
            } else {
                "kept (no CAP_SETPCAP)"
            },
        )
    }
}

/// The namespaces tried, with their names in `/proc/PID/ns`.
pub const NAMESPACES: [(i32, &str); 7] = [
    (libc::CLONE_NEWUSER, "user"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWNS, "mnt"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
];

/// Where the empty root is mounted before `pivot_root` (inside the new mount namespace only:
/// the host never sees the mount). The first existing directory is used.
const ROOT_MOUNT_POINTS: [&CStr; 4] = [c"/tmp", c"/mnt", c"/dev", c"/proc"];

/// What the host allows, detected on first use (by probe children that run the same jail
/// code as a sandbox, then exit) and logged once at info level.
pub fn layers() -> Layers {
    static LAYERS: OnceLock<Layers> = OnceLock::new();
    *LAYERS.get_or_init(|| {
        let l = detect();
        tracing::info!("sandbox jail: {}", l.describe());
        l
    })
}

fn detect() -> Layers {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let user_flag = if root { 0 } else { libc::CLONE_NEWUSER };
    let mount_point = ROOT_MOUNT_POINTS
        .into_iter()
        .find(|p| std::fs::metadata(p.to_str().unwrap_or("/")).is_ok_and(|m| m.is_dir()));
    let try_layers = |namespaces: i32, empty_root: bool| {
        let l = Layers {
            root,
            namespaces,
            empty_root,
            drop_bounding: root || namespaces & libc::CLONE_NEWUSER != 0,
        };
        let j = ChildJail::new(&l, SandboxUser::DEFAULT, None, mount_point);
        crate::sandbox::probe(&j).then_some(l)
    };
    // Without a user namespace, an unprivileged process can make no namespace at all.
    if !root && try_layers(libc::CLONE_NEWUSER, false).is_none() {
        return Layers {
            root,
            namespaces: 0,
            empty_root: false,
            drop_bounding: false,
        };
    }
    // The common case first: every layer at once, one probe (each probe is a clone that
    // makes namespaces, on every pvmux start).
    let every = NAMESPACES
        .iter()
        .fold(user_flag, |acc, &(flag, _)| acc | flag)
        & !(libc::CLONE_NEWUSER & !user_flag);
    if mount_point.is_some() {
        if let Some(l) = try_layers(every, true) {
            return l;
        }
    }
    let mut flags = user_flag;
    for (flag, _) in NAMESPACES {
        if flag != libc::CLONE_NEWUSER && try_layers(user_flag | flag, false).is_some() {
            flags |= flag;
        }
    }
    let empty_root = flags & libc::CLONE_NEWNS != 0
        && mount_point.is_some()
        && try_layers(user_flag | libc::CLONE_NEWNS, true).is_some();
    try_layers(flags, empty_root)
        .or_else(|| try_layers(flags, false))
        .unwrap_or(Layers {
            root,
            namespaces: 0,
            empty_root: false,
            drop_bounding: root,
        })
}

/// Everything the cloned child needs to jail itself, prepared by the parent (the child only
/// reads it, with async-signal-safe calls).
#[derive(Debug)]
pub(crate) struct ChildJail {
    /// `CLONE_NEW*` flags for the clone.
    pub(crate) namespaces: i32,
    /// `uid_map` and `gid_map` lines when a user namespace is made (pvmux's own ids).
    maps: Option<([u8; 32], usize, [u8; 32], usize)>,
    /// Mount point of the empty root, when it is made.
    root_at: Option<&'static CStr>,
    /// `(uid, gid)` to switch to (root only).
    creds: Option<(u32, u32)>,
    drop_bounding: bool,
    /// `(resource, soft, hard)`.
    rlimits: [(libc::__rlimit_resource_t, u64, u64); 10],
    nr_rlimits: usize,
    /// The child is pid 1 of a new pid namespace (it checks its parent through procfs).
    pid_namespace: bool,
    /// Namespaces to join (`setns(fd, flag)`) instead of making them.
    join: [(RawFd, i32); SHARED_NAMESPACES.len()],
    nr_join: usize,
}

/// The namespaces one tenant's sandboxes share when pvmux is root: made by the first sandbox
/// (the kernel sandbox), adopted from `/proc/PID/ns/*` right after it is spawned, and joined
/// (`setns`) by every later one instead of making its own.
#[derive(Debug, Default)]
pub(crate) struct SharedNamespaces {
    fds: OnceLock<Vec<(OwnedFd, i32)>>,
}

/// The namespaces a tenant's sandboxes share (as root): `(flag, name in /proc/PID/ns)`.
///
/// The mount namespace only when the jail makes the empty root: the kernel sandbox's holds
/// nothing but that read-only, empty tmpfs, so a sandbox that joins it (`setns` makes the
/// namespace's root its root and cwd) is where one that made its own would be after
/// `pivot_root`, without the host's work per sandbox: copying the host's mount tree, mounting
/// the tmpfs and detaching the old root, each detach and each teardown of the namespace
/// waiting for an expedited RCU grace period (IPIs to every host CPU) — a few percent of all
/// host CPU time in a guest `fork` loop. The parent check of step 5 reads `/proc/self/stat`
/// of the host's procfs, which such a sandbox no longer reaches: it is opened before the
/// namespaces are joined ([`open_parent_stat`]). Not the pid namespace: each sandbox is pid 1
/// of its own.
const SHARED_NAMESPACES: [(i32, &str); 4] = [
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWNS, "mnt"),
];

impl SharedNamespaces {
    /// Takes the shared namespaces from sandbox `pid` (host pid, not reaped) if none are
    /// held yet and the jail makes them; a namespace that cannot be opened is simply made
    /// anew by every sandbox.
    pub(crate) fn adopt(&self, pid: u32) {
        let l = layers();
        if !l.root || self.fds.get().is_some() {
            return;
        }
        let fds = SHARED_NAMESPACES
            .iter()
            .filter(|(flag, _)| l.namespaces & flag != 0)
            // The kernel sandbox's mount namespace is worth joining only as the empty root.
            .filter(|&&(flag, _)| flag != libc::CLONE_NEWNS || l.empty_root)
            .filter_map(|&(flag, name)| {
                let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}")).ok()?;
                Some((OwnedFd::from(f), flag))
            })
            .collect();
        let _ = self.fds.set(fds);
    }
}

/// `"ID ID 1\n"` in a fixed buffer.
fn id_map(id: u32) -> ([u8; 32], usize) {
    let s = format!("{id} {id} 1\n");
    let mut b = [0u8; 32];
    b[..s.len()].copy_from_slice(s.as_bytes());
    (b, s.len())
}

impl ChildJail {
    /// Whether the child is pid 1 of a pid namespace of its own: its death kills every
    /// process it forks (a user sandbox template's children die with it).
    pub(crate) fn has_pid_namespace(&self) -> bool {
        self.pid_namespace
    }

    pub(crate) fn new(
        l: &Layers,
        user: SandboxUser,
        cpu_seconds: Option<u64>,
        root_at: Option<&'static CStr>,
    ) -> Self {
        let maps = (l.namespaces & libc::CLONE_NEWUSER != 0).then(|| {
            // SAFETY: geteuid/getegid have no preconditions.
            let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
            let (ub, ul) = id_map(u);
            let (gb, gl) = id_map(g);
            (ub, ul, gb, gl)
        });
        let mut rl = [(libc::RLIMIT_NOFILE, 0u64, 0u64); 10];
        for (d, r) in rl.iter_mut().zip(RLIMITS) {
            *d = (r.resource, r.value, r.value);
        }
        let mut n = RLIMITS.len();
        if l.root {
            let nproc = nproc_for_uid_change();
            rl[n] = (libc::RLIMIT_NPROC, nproc, nproc);
            n += 1;
        }
        // The per-sandbox backstop of the tenant's CPU budget (`crate::limits`: the monitor
        // ends the tenant when the whole tenant has used its budget; this fires only if it
        // did not: soft one second after the budget, SIGXCPU; hard one more second later,
        // SIGKILL). Set here because once the uid changed the host may not be allowed to
        // `prlimit` the sandbox (that needs CAP_SYS_RESOURCE, which a container's root may
        // lack); `limits::set_cpu_rlimit` then accepts what it finds in /proc.
        if let Some(secs) = cpu_seconds {
            let backstop = secs.saturating_add(1);
            rl[n] = (libc::RLIMIT_CPU, backstop, backstop.saturating_add(1));
            n += 1;
        }
        Self {
            namespaces: l.namespaces,
            maps,
            root_at: if l.empty_root { root_at } else { None },
            creds: l.root.then_some((user.uid, user.gid)),
            drop_bounding: l.drop_bounding,
            rlimits: rl,
            nr_rlimits: n,
            pid_namespace: l.pid_namespace(),
            join: [(-1, 0); SHARED_NAMESPACES.len()],
            nr_join: 0,
        }
    }

    /// Joins the namespaces of `shared` instead of making them (the fds stay owned by
    /// `shared`, which outlives the spawn).
    fn joining(mut self, shared: &SharedNamespaces) -> Self {
        for (fd, flag) in shared.fds.get().into_iter().flatten() {
            if self.namespaces & flag != 0 && self.nr_join < self.join.len() {
                self.namespaces &= !flag;
                self.join[self.nr_join] = (fd.as_raw_fd(), *flag);
                self.nr_join += 1;
                if *flag == libc::CLONE_NEWNS {
                    // Its root is the empty root already.
                    self.root_at = None;
                }
            }
        }
        self
    }

    /// A kernel sandbox's jail ([`ChildJail::for_sandbox`]) for guest memory of `mem_size`
    /// bytes: its `RLIMIT_FSIZE` is `mem_size`, so that its stub's `mem_write` (a `pwrite` on
    /// the guest memfd, which the filter allows on that fd only) reaches all of guest memory.
    /// It writes no other file: the filter allows no other write, and the memfd's seals keep
    /// its size.
    pub(crate) fn for_kernel_sandbox(
        user: SandboxUser,
        cpu_seconds: Option<u64>,
        shared: &SharedNamespaces,
        mem_size: u64,
    ) -> Self {
        let mut j = Self::for_sandbox(user, cpu_seconds, shared);
        for r in &mut j.rlimits[..j.nr_rlimits] {
            if r.0 == libc::RLIMIT_FSIZE {
                *r = (r.0, mem_size, mem_size);
            }
        }
        j
    }

    /// The jail for a sandbox of a tenant configured with `user` and the CPU budget
    /// `cpu_seconds` (`RLIMIT_CPU`), joining the tenant's `shared` namespaces if it has them.
    pub(crate) fn for_sandbox(
        user: SandboxUser,
        cpu_seconds: Option<u64>,
        shared: &SharedNamespaces,
    ) -> Self {
        static MOUNT_POINT: OnceLock<Option<&'static CStr>> = OnceLock::new();
        let l = layers();
        let at = *MOUNT_POINT.get_or_init(|| {
            ROOT_MOUNT_POINTS
                .into_iter()
                .find(|p| std::fs::metadata(p.to_str().unwrap_or("/")).is_ok_and(|m| m.is_dir()))
        });
        Self::new(&l, user, cpu_seconds, at).joining(shared)
    }
}

/// Writes `data` to the file `path` (async-signal-safe).
///
/// # Safety
/// Raw system calls only; `path` is NUL-terminated.
unsafe fn write_file(path: &CStr, data: &[u8]) -> bool {
    // SAFETY: plain system calls on a valid path and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
        libc::close(fd);
        ok
    }
}

/// Reads the `PPid` field of `/proc/self/stat` through `fd` (async-signal-safe).
///
/// # Safety
/// Raw system calls only.
unsafe fn stat_ppid(fd: i32) -> Option<libc::pid_t> {
    let mut buf = [0u8; 512];
    // SAFETY: reads into a local buffer.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    let n = usize::try_from(n).ok()?;
    let b = &buf[..n];
    // "pid (comm) S ppid ...": comm may hold anything, so start after the last ')'.
    let close = b.iter().rposition(|&c| c == b')')?;
    let mut fields = b[close + 1..]
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty());
    let _state = fields.next()?;
    let ppid = fields.next()?;
    let mut v: libc::pid_t = 0;
    for &d in ppid {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v
            .checked_mul(10)?
            .checked_add(libc::pid_t::from(d - b'0'))?;
    }
    Some(v)
}

/// Joins the shared namespaces of `j` (before the child arranges its fds: the namespace fds
/// are the parent's, copied by the clone, and closed with the rest).
///
/// # Safety
/// Same as [`enter`].
pub(crate) unsafe fn join(j: &ChildJail) -> bool {
    j.join[..j.nr_join]
        .iter()
        // SAFETY: setns on plain integers.
        .all(|&(fd, flag)| unsafe { libc::setns(fd, flag) } == 0)
}

/// Opens the host procfs's `/proc/self/stat` for the parent check of [`enter`] when the
/// child is in a pid namespace of its own (there `getppid()` is 0): `Some(-1)` when it is
/// not, `None` if it cannot be opened. Called before [`join`], while the host's procfs is
/// still reachable (a joined mount namespace is the empty root); close-on-exec.
///
/// # Safety
/// Same as [`enter`].
pub(crate) unsafe fn open_parent_stat(j: &ChildJail) -> Option<RawFd> {
    if !j.pid_namespace {
        return Some(-1);
    }
    // SAFETY: open of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    (fd >= 0).then_some(fd)
}

/// Drops every capability of the calling thread's bounding set that is still in it: false
/// if one cannot be dropped. A drop allocates new credentials and frees the old ones through
/// RCU (~1 µs each, 41 of them on Linux 6.x), so capabilities already gone are only read
/// (`PR_CAPBSET_READ`): a child spawned by a thread that dropped its own set first
/// ([`drop_thread_bounding_set`]) does no drop at all.
///
/// # Safety
/// As [`enter`]: raw `prctl`s only, async-signal-safe.
unsafe fn drop_bounding_set() -> bool {
    for cap in 0..64 {
        // SAFETY: prctl on plain integers.
        match unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong) } {
            0 => {}
            // EINVAL: past the last capability this kernel knows.
            r if r < 0 => return cap > 0,
            _ => {
                // SAFETY: prctl on plain integers.
                let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) };
                if dropped != 0 {
                    return false;
                }
            }
        }
    }
    true
}

/// Empties the calling host thread's own capability bounding set, so that the sandboxes it
/// spawns inherit an empty one and their jail drops nothing (`enter`'s drop then only reads:
/// ~40 µs of CPU less per spawn, a `fork`'s spare). Credentials are per thread in Linux, and a
/// bounding set limits only what an `execve` may grant, which no pvmux thread does: the
/// thread keeps its effective and permitted capabilities (namespaces, cgroups). For a thread
/// that only spawns sandboxes (a tenant's reaper). Returns whether the set is empty now (not
/// where the thread may not drop them, e.g. pvmux without root; the jail drops them in each
/// child's user namespace then, whose set starts full anyway).
pub(crate) fn drop_thread_bounding_set() -> bool {
    // SAFETY: raw prctls on plain integers, on the calling thread's own credentials.
    unsafe { drop_bounding_set() }
}

/// Jails the calling child (see the module documentation); `parent` is the host pid of the
/// process that cloned it and `stat` what [`open_parent_stat`] opened (closed here). Returns
/// `false` if a step failed or the parent is gone.
///
/// # Safety
/// Must be called only in a child just cloned (`CLONE_VM | CLONE_VFORK`, with
/// `j.namespaces`) with every signal blocked, after its file descriptors are arranged: it
/// makes only async-signal-safe system calls and writes nothing but its own stack.
pub(crate) unsafe fn enter(j: &ChildJail, parent: libc::pid_t, stat: RawFd) -> bool {
    // SAFETY: raw system calls on plain integers and on pointers to NUL-terminated strings
    // and buffers that outlive the calls.
    unsafe {
        if let Some((ub, ul, gb, gl)) = &j.maps {
            if !write_file(c"/proc/self/setgroups", b"deny")
                || !write_file(c"/proc/self/uid_map", &ub[..*ul])
                || !write_file(c"/proc/self/gid_map", &gb[..*gl])
            {
                return false;
            }
        }
        if let Some(at) = j.root_at {
            let none = std::ptr::null::<libc::c_char>();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
                || libc::mount(
                    c"pvmux-empty".as_ptr(),
                    at.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"size=4k,mode=0555".as_ptr().cast(),
                ) != 0
                || libc::chdir(at.as_ptr()) != 0
                || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                || libc::chdir(c"/".as_ptr()) != 0
            {
                return false;
            }
        } else if libc::chdir(c"/".as_ptr()) != 0 {
            return false;
        }
        for &(res, soft, hard) in &j.rlimits[..j.nr_rlimits] {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(res, &lim) != 0 {
                return false;
            }
        }
        if j.drop_bounding && !drop_bounding_set() {
            return false;
        }
        if let Some((uid, gid)) = j.creds {
            // Raw system calls, not glibc's wrappers: those apply a credential change to
            // every thread of the process (`__nptl_setxid`), walking the thread list of the
            // memory this child shares with the multi-threaded host — and wait for a host
            // thread being created or ending, forever if the host exits meanwhile. The
            // child is a process of its own: the calls change exactly it.
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            {
                return false;
            }
        }
        // Leaving uid 0 emptied permitted, effective and ambient; clear inheritable (and
        // everything, when there was no uid change) explicitly.
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
            || libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return false;
        }
        // After the last credential change (which clears it), then check the parent: if it
        // died before this point, no signal will come.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return false;
        }
        let ppid = if j.pid_namespace {
            stat_ppid(stat)
        } else {
            Some(libc::getppid())
        };
        if stat >= 0 {
            libc::close(stat);
        }
        ppid == Some(parent)
    }
}

/// The host tid of the thread that the stub of sandbox `pid` knows as `tid` (the stub
/// publishes tids in its own pid namespace, where it is pid 1). Without a pid namespace the
/// two are the same. `None` if no thread of the sandbox has that tid (a guest can write any
/// number there).
pub fn host_tid(pid: u32, tid: u32) -> Option<u32> {
    if !layers().pid_namespace() {
        return Some(tid);
    }
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for e in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        // "NSpid:\t<host tid>\t<tid in the sandbox's namespace>"
        let Some(line) = status.lines().find(|l| l.starts_with("NSpid:")) else {
            continue;
        };
        let ids: Vec<u32> = line[6..]
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if ids.len() >= 2 && ids.last() == Some(&tid) {
            return ids.first().copied();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_user_parses_like_podman_user() {
        assert_eq!(
            "1234".parse(),
            Ok(SandboxUser {
                uid: 1234,
                gid: 1234
            })
        );
        assert_eq!("5:6".parse(), Ok(SandboxUser { uid: 5, gid: 6 }));
        assert_eq!("0:0".parse(), Ok(SandboxUser { uid: 0, gid: 0 }));
        for bad in [
            "",
            ":",
            "1:",
            ":1",
            "a",
            "-1",
            "1:2:3",
            "+1",
            " 1",
            "99999999999",
        ] {
            assert!(bad.parse::<SandboxUser>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "4294967295".parse::<SandboxUser>(),
            Err(SandboxUserError::Invalid)
        );
        assert_eq!(SandboxUser::DEFAULT.to_string(), "2000000000:2000000000");
    }

    #[test]
    fn nofile_is_one_above_the_highest_window_fd() {
        use pvmux_hypercalls::window::{MAX_WINDOWS, WINDOW_FD_BASE};
        assert_eq!(
            SANDBOX_NOFILE,
            (WINDOW_FD_BASE + MAX_WINDOWS as i32 - 1) as u64 + 1
        );
    }

    #[test]
    fn stat_ppid_parses_odd_command_names() {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("pvmux-jail-stat-{}", std::process::id()));
        std::fs::write(&p, b"7 (a) b) c (d) S 4242 7 7 0 -1").expect("write");
        let f = std::fs::File::open(&p).expect("open");
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open fd.
        assert_eq!(unsafe { stat_ppid(f.as_raw_fd()) }, Some(4242));
        std::fs::remove_file(&p).expect("rm");
    }

    #[test]
    fn detection_yields_a_usable_jail() {
        let l = layers();
        // The probe already ran the full jail once; a sandbox spawn with it must work too.
        assert!(crate::sandbox::probe(&ChildJail::for_sandbox(
            SandboxUser::DEFAULT,
            Some(100),
            &SharedNamespaces::default(),
        )));
        if l.root {
            assert!(l.drop_bounding);
        }
    }
}
