//! The compatibility chart (`docs/COMPATIBILITY.md`): every x86-64 Linux system call with its
//! status in this kernel, generated from the system-call table ([`super::abi`]) and the
//! dispatchers, plus [`NOTES`].
//!
//! Which calls exist is derived, not written down: a call is *implemented* when one of the
//! dispatchers ([`DISPATCHERS`]: `dispatch.rs`, `files/mod.rs`, `net/syscalls.rs`, `creds.rs`,
//! `timers/mod.rs`) has a
//! match arm for its `nr::` constant whose body is not just `Err(Errno::ENOSYS)`; every other
//! call is *not implemented* (it returns `ENOSYS`). [`NOTES`] adds, one line per call, what a
//! call does not do (status *partial*) or a remark. After adding a system call (and, if it is
//! incomplete, its line in [`NOTES`]), regenerate the chart:
//!
//! ```text
//! PVMUX_UPDATE_COMPAT=1 cargo test -p pvmux-kernel --lib compat
//! ```
//!
//! The same test without the variable fails when the file is stale.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What a note says about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// Implemented, but this is missing.
    Partial(&'static str),
    /// A remark on a call that is complete, or on one that is not implemented.
    Remark(&'static str),
}

use Note::{Partial, Remark};

/// Per-call notes, by the call's lower-case name: one line each, any order.
pub(crate) const NOTES: &[(&str, Note)] = &[
    ("arch_prctl", Partial("ARCH_SET_FS/ARCH_GET_FS; ARCH_SET_GS is accepted and ignored; the CET and AMX codes are EINVAL")),
    ("clock_gettime", Remark("also answered in user space by the vDSO for the realtime and monotonic clocks (no trap)")),
    ("gettimeofday", Remark("also answered in user space by the vDSO")),
    ("restart_syscall", Remark("continues a `nanosleep` or relative `clock_nanosleep` on a wall clock that a kernel hand-over's freeze stopped, with the time it had left (also under the adopting kernel); `EINTR` when there is none, as on Linux")),
    ("time", Remark("also answered in user space by the vDSO")),
    ("clock_getres", Remark("1 ns for every clock; also answered by the vDSO")),
    ("getcpu", Remark("the vDSO answers CPU 0, node 0")),
    ("setuid", Remark("Linux's rules; file accesses are checked against the filesystem ids (owner/group/other bits, no ACLs)")),
    ("setgroups", Remark("kept sorted as Linux; they take part in permission checks; init starts with `pvmux run --user NAME`'s groups (as `initgroups(3)`) and `--group-add`'s")),
    ("capget", Remark("effective, permitted and inheritable sets, v1/v2/v3 headers; init's sets come from `pvmux run --cap-drop`/`--cap-add` or an OCI config's `process.capabilities` (root: all)")),
    ("capset", Remark("Linux's rules (`CAP_SETPCAP` for inheritable bits beyond the permitted set); no file capabilities exist in the guest")),
    ("prctl", Partial("PR_SET/GET_NAME (per thread, in /proc/PID/comm and task/TID/comm), PR_SET/GET_PDEATHSIG and PR_SET/GET_NO_NEW_PRIVS (kept per process: the signal comes when the parent process ends, not the parent thread), PR_SET/GET_CHILD_SUBREAPER, PR_SET/GET_DUMPABLE and PR_SET/GET_THP_DISABLE (kept; nothing else changes: no core dumps, no huge pages), PR_CAPBSET_READ/DROP, PR_CAP_AMBIENT, PR_GET/SET_KEEPCAPS; other options EINVAL")),
    ("setpriority", Partial("the nice value is kept per thread, inherited, checked as Linux (EPERM, EACCES) and reported (getpriority, /proc/PID/stat), but the guest scheduler gives every thread the same share")),
    ("sched_setaffinity", Partial("the mask is kept per thread, inherited and reported (sched_getaffinity, so nproc counts it), but the guest scheduler may run a thread on any vCPU")),
    ("sched_setscheduler", Partial("SCHED_OTHER, SCHED_BATCH and SCHED_IDLE (with SCHED_RESET_ON_FORK) are kept per thread, inherited, checked as Linux and reported, but the guest scheduler gives every thread the same share; the real-time policies are EPERM (no real-time scheduling in the guest); a kernel hand-over resets the policy to SCHED_OTHER")),
    ("ioprio_set", Partial("the priority is kept per thread, inherited, checked as Linux (classes and levels, EPERM) and reported (ioprio_get), but not enforced: the guest's files are in guest memory or read with the host's priority; a kernel hand-over resets it")),
    ("sched_setparam", Partial("priority 0 of the normal policies only (see sched_setscheduler)")),
    ("sched_rr_get_interval", Remark("the guest scheduler's time slice, for every policy")),
    ("mincore", Partial("a page counts as resident once this process has it mapped (touched, or populated with a fault around it): a file's page in the guest's page cache that this process has not touched reads 0")),
    ("personality", Partial("PER_LINUX with ADDR_NO_RANDOMIZE (guest mappings are never randomised anyway) and ADDR_COMPAT_LAYOUT, kept per process (inherited by fork, kept by execve) and reported; other execution domains (PER_LINUX32) and flags are EINVAL, not kept unhonoured; a kernel hand-over resets it to PER_LINUX")),
    ("shmget", Partial("System V shared memory as Linux (keys, IPC_CREAT/IPC_EXCL, permissions, SHMMNI 4096 segments); the ids are not carried by a kernel hand-over (the mappings are)")),
    ("shmctl", Partial("IPC_STAT, IPC_SET, IPC_RMID (the segment goes with its last attachment), IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY; SHM_LOCK/SHM_UNLOCK accepted (nothing is ever swapped); no /proc/sysvipc")),
    ("chroot", Partial("a process's root as Linux (absolute paths and links start there, `..` stops there, inherited, a descriptor opened before still leads out; getcwd's (unreachable)); /proc, /sys and /dev/pts are seen in a chroot where mount -t proc/sysfs/devpts put them; a kernel upgrade is refused while a process has its own root")),
    ("semget", Partial("System V semaphores as Linux (keys, sizes, permissions, SEMMNI/SEMMSL 32000); a kernel upgrade is refused while a set exists (a record does not carry them)")),
    ("semop", Partial("atomic, IPC_NOWAIT, SEM_UNDO (applied at exit; kept per process, not shared through clone's CLONE_SYSVSEM); a waiter retries after each change instead of Linux's queue order among sleepers")),
    ("semtimedop", Remark("as semop, with the timeout")),
    ("semctl", Remark("every command (IPC_STAT/SET/RMID/INFO, SEM_INFO, SEM_STAT(_ANY), GET*/SET*); no /proc/sysvipc (ipcs reads the calls)")),
    ("msgget", Partial("System V message queues as Linux (keys, permissions, MSGMNI 32000, MSGMAX 8192, MSGMNB 16384); a kernel upgrade is refused while a queue exists (a record does not carry them)")),
    ("msgrcv", Remark("every selection (type, MSG_EXCEPT, lowest type up to a bound, MSG_COPY), MSG_NOERROR, IPC_NOWAIT")),
    ("msgctl", Remark("IPC_STAT/SET/RMID/INFO, MSG_INFO, MSG_STAT(_ANY); raising msg_qbytes past 16384 needs CAP_SYS_RESOURCE; no /proc/sysvipc")),
    ("mlock", Partial("accepted, nothing is ever swapped")),
    ("mlock2", Partial("as mlock (MLOCK_ONFAULT accepted, other flags EINVAL)")),
    ("mlockall", Partial("accepted (flags checked as Linux), nothing is ever swapped")),
    ("munlockall", Partial("accepted, nothing is ever swapped")),
    ("sethostname", Partial("the guest's own name (uname, /proc/sys/kernel/hostname), CAP_SYS_ADMIN as Linux; a kernel hand-over goes back to the boot name")),
    ("setdomainname", Partial("as sethostname")),
    ("munlock", Partial("accepted, nothing is ever swapped")),
    ("msync", Remark("guest files' shared mappings map the page cache's frames (nothing to write back); a `--volume` file's are written to the host, `MS_ASYNC` synchronously too; the flags are checked as Linux")),
    ("mmap", Remark("a page wholly past the end of a mapped file is SIGBUS as on Linux; a `--volume` file mapped `MAP_SHARED` is cached in the guest while mapped, its stores reach the host on msync, munmap, fsync and exit")),
    ("mount", Partial("ext2 on the disks attached to this kernel (`/dev/vdX`, `pvmux run --disk`), one mount per disk, and proc, sysfs and devpts over any directory (a chroot's; read-write only); MS_RDONLY honoured, the other per-mount flags accepted; remount, bind, move and propagation changes are EINVAL; no tmpfs")),
    ("umount2", Partial("a disk's mount point only (EINVAL for other paths); EBUSY while the disk is in use (files open, a working directory in it), MNT_FORCE as a plain call; MNT_DETACH lazy as Linux (out of the tree at once, released when its last file closes)")),
    ("sched_setattr", Partial("the normal policies and SCHED_FLAG_RESET_ON_FORK, KEEP_POLICY and KEEP_PARAMS; SCHED_FIFO, SCHED_RR and SCHED_DEADLINE are EPERM (no real-time scheduling in the guest); utilisation clamps are checked and not kept")),
    ("openat2", Partial("RESOLVE_BENEATH, RESOLVE_IN_ROOT and RESOLVE_NO_XDEV walks do not enter /proc, /sys or /dev/pts (EXDEV) nor start from a descriptor inside them (ENOTDIR); RESOLVE_NO_XDEV does not see a --volume's or a disk's mount point as one; RESOLVE_NO_SYMLINKS acts as RESOLVE_NO_MAGICLINKS inside /proc; RESOLVE_CACHED always resolves")),
    ("clone3", Partial("set_tid (a chosen pid) and CLONE_INTO_CGROUP are EINVAL, as is CLONE_PIDFD with CLONE_THREAD (a thread's pidfd)")),
    ("clone", Partial("CLONE_PIDFD with CLONE_THREAD (a thread's pidfd) is EINVAL; the namespace flags are accepted and make no namespace; CLONE_FILES and CLONE_FS copy rather than share")),
    ("pidfd_open", Partial("PIDFD_THREAD (a thread's pidfd) is EINVAL")),
    ("pidfd_send_signal", Remark("also PIDFD_SIGNAL_THREAD and PIDFD_SIGNAL_PROCESS_GROUP; a /proc/PID directory descriptor is EBADF, not a pidfd")),
    ("madvise", Partial("MADV_DONTNEED and MADV_FREE drop pages (a private file mapping's come back from the file at their next touch), MADV_DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK set what fork copies; the rest of Linux's advice is accepted and does nothing (MADV_REMOVE frees nothing, MADV_GUARD_INSTALL installs no guard)")),
    ("timer_create", Partial("the alarm clocks are EOPNOTSUPP; at most 4,096 timers per process")),
    ("timerfd_create", Partial("the alarm clocks are EOPNOTSUPP")),
    ("timerfd_settime", Partial("TFD_TIMER_CANCEL_ON_SET never cancels: the guest's clock is never set")),
    ("socket", Partial("AF_UNIX; AF_INET/AF_INET6 TCP and UDP (the guest's loopback, or host sockets with --net host); AF_NETLINK's NETLINK_ROUTE, reading the loopback device and its addresses (other dumps empty, changes EPERM/EOPNOTSUPP; other netlink protocols EPROTONOSUPPORT); other families EAFNOSUPPORT")),
    ("sendmsg", Partial("MSG_OOB is EOPNOTSUPP")),
    ("epoll_wait", Remark("readiness is recomputed for every entry on each wake-up")),
    ("inotify_add_watch", Partial("no IN_ACCESS for directory listings; IN_EXCL_UNLINK has no effect")),
    ("getxattr", Partial("no extended attributes: ENOTSUP")),
    ("lgetxattr", Partial("no extended attributes: ENOTSUP")),
    ("fgetxattr", Partial("no extended attributes: ENOTSUP")),
    ("setxattr", Partial("no extended attributes: ENOTSUP")),
    ("rseq", Remark("ENOSYS: the C library then works without restartable sequences")),
    ("membarrier", Remark("ENOSYS")),
    ("get_robust_list", Remark("another process's thread needs CAP_SYS_PTRACE (no ptrace access check beyond it)")),
];

/// The source files (relative to `src/linux/`) whose `match` arms dispatch system calls.
pub(crate) const DISPATCHERS: [&str; 5] = [
    "dispatch.rs",
    "files/mod.rs",
    "net/syscalls.rs",
    "creds.rs",
    "timers/mod.rs",
];

/// The `nr::` names that have a match arm in `source` whose body is not only
/// `Err(Errno::ENOSYS)`: the arm's patterns are `nr::NAME` tokens joined by `|` before a
/// `=>` (on one line or continued over several).
pub(crate) fn dispatched(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        let (pats, body) = match t.split_once("=>") {
            Some((p, b)) => (p, Some(b.trim())),
            None => (t, None),
        };
        let names: Vec<String> = pats
            .split('|')
            .map(str::trim)
            .filter_map(|p| p.strip_prefix("nr::"))
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(String::from)
            .collect();
        // A pattern line: only `nr::` alternatives (possibly starting or ending with `|`).
        let only_patterns = !names.is_empty()
            && pats
                .split('|')
                .map(str::trim)
                .all(|p| p.is_empty() || p.starts_with("nr::"));
        if !only_patterns {
            pending.clear();
            continue;
        }
        pending.extend(names);
        if let Some(body) = body {
            if !body.starts_with("Err(Errno::ENOSYS)") {
                found.extend(pending.drain(..));
            }
            pending.clear();
        }
    }
    found
}

/// The chart's Markdown for the system calls `calls` (`(number, name)`), of which those in
/// `implemented` (upper-case constant names) are.
pub(crate) fn chart(calls: &[(u64, &str)], implemented: &BTreeSet<String>) -> String {
    let mut rows = String::new();
    let (mut full, mut partial, mut missing) = (0, 0, 0);
    for &(nr, name) in calls {
        let note = NOTES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, note)| note);
        let is_impl = implemented.contains(&name.to_ascii_uppercase());
        let (status, text) = match (is_impl, note) {
            (true, Some(Partial(t))) => {
                partial += 1;
                ("partial", t)
            }
            (true, Some(Remark(t))) => {
                full += 1;
                ("full", t)
            }
            (true, None) => {
                full += 1;
                ("full", "")
            }
            (false, n) => {
                missing += 1;
                let t = match n {
                    Some(Partial(t) | Remark(t)) => t,
                    None => "",
                };
                ("not implemented", t)
            }
        };
        rows.push_str(&format!("| {nr} | `{name}` | {status} | {text} |\n"));
    }
    format!(
        "# System-call compatibility\n\n\
         Every x86-64 Linux system call and its status in the pvmux guest kernel\n\
         (`pv-kernel/`): **full** (implemented; a remark may follow), **partial** (implemented,\n\
         with what is missing) or **not implemented** (the call returns `ENOSYS`, and the kernel\n\
         log names it the first time a program makes it: `pvmux run --log debug`).\n\n\
         Generated from the kernel's system-call table and dispatchers and the notes in\n\
         `pv-kernel/src/linux/compat.rs` — do not edit by hand; regenerate with\n\
         `PVMUX_UPDATE_COMPAT=1 cargo test -p pvmux-kernel --lib compat` (the same test fails\n\
         when this file is stale).\n\n\
         {total} system calls: {full} full, {partial} partial, {missing} not implemented.\n\n\
         | nr | name | status | notes |\n|---|---|---|---|\n{rows}",
        total = calls.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/linux")
    }

    #[test]
    fn dispatched_arms_are_found() {
        let src = "match n {\n    nr::READ => sys_read(a),\n    nr::GETUID | nr::GETEUID => Ok(0),\n    \
                   nr::SETUID\n    | nr::SETGID => Ok(0),\n    nr::RSEQ => Err(Errno::ENOSYS),\n    \
                   x if x == nr::OPEN => foo(),\n    _ => Err(Errno::ENOSYS),\n}\n";
        let d = dispatched(src);
        let want: BTreeSet<String> = ["READ", "GETUID", "GETEUID", "SETUID", "SETGID"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(d, want);
    }

    #[test]
    fn notes_name_real_calls_once() {
        let names: Vec<&str> = super::super::abi::SYSCALLS
            .iter()
            .map(|&(_, n)| n)
            .collect();
        let mut seen = BTreeSet::new();
        for (n, _) in NOTES {
            assert!(names.contains(n), "note for unknown system call {n}");
            assert!(seen.insert(*n), "two notes for {n}");
        }
    }

    /// The chart in docs/COMPATIBILITY.md is what the table, the dispatchers and the notes
    /// give (`PVMUX_UPDATE_COMPAT=1` rewrites it).
    #[test]
    fn compatibility_chart_is_current() {
        let mut implemented = BTreeSet::new();
        for f in DISPATCHERS {
            let src = std::fs::read_to_string(linux_dir().join(f)).expect("dispatcher source");
            implemented.extend(dispatched(&src));
        }
        assert!(implemented.contains("READ") && implemented.contains("FUTEX"));
        let text = chart(super::super::abi::SYSCALLS, &implemented);
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/COMPATIBILITY.md");
        if std::env::var_os("PVMUX_UPDATE_COMPAT").is_some() {
            std::fs::write(&path, &text).expect("write docs/COMPATIBILITY.md");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "docs/COMPATIBILITY.md is stale: run PVMUX_UPDATE_COMPAT=1 cargo test -p pvmux-kernel --lib compat"
        );
    }
}
