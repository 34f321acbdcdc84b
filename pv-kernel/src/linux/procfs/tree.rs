//! The names of `/proc` and `/sys`: what each path is ([`classify`]), what a directory holds
//! ([`list`]) and what a file says ([`contents`]), from the kernel's state at the moment of
//! the call. Paths are given as components after the mount point.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::snap;
use super::text;
use crate::fs::mount::{self, MountKind};
use crate::fs::ramfs::dt;
use crate::fs::Errno;
use crate::linux::files::tty::pty;
use crate::linux::files::OpenFile;
use crate::linux::task::{self, Process, Task};

/// What a synthetic path names.
pub(crate) enum Node {
    /// A directory.
    Dir,
    /// A generated file.
    File,
    /// A symbolic link: its target (absolute, or relative to the directory holding it).
    Link(Vec<u8>),
    /// A `/proc/PID/fd/N` link: the open file itself.
    FdLink(Arc<OpenFile>),
}

/// `d_type` of a character device.
const DT_CHR: u8 = 2;

/// A generated file's contents.
type Gen = fn() -> Vec<u8>;

/// `/proc`'s files that do not belong to a process, by path.
const PROC_FILES: [(&str, Gen); 40] = [
    ("cpuinfo", snap::cpuinfo),
    ("locks", crate::linux::files::locks::proc_locks),
    ("meminfo", snap::meminfo),
    ("stat", snap::stat),
    ("uptime", snap::uptime),
    ("loadavg", snap::loadavg),
    ("filesystems", mount::filesystems_text),
    ("version", || {
        alloc::format!(
            "Linux version {} (pvmux) #1 SMP pvmux guest kernel\n",
            alloc::string::String::from_utf8_lossy(crate::linux::handover::release())
        )
        .into_bytes()
    }),
    ("cmdline", || b"pvmux\n".to_vec()),
    ("swaps", || {
        b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".to_vec()
    }),
    ("vmstat", snap::vmstat),
    ("partitions", || {
        let disks: Vec<(u32, u64)> = crate::fs::disk::attached()
            .into_iter()
            .map(|(slot, sectors, _)| (slot, sectors))
            .collect();
        mount::partitions_text(&disks)
    }),
    ("devices", || {
        b"Character devices:\n  1 mem\n  5 /dev/tty\n  5 /dev/console\n  5 /dev/ptmx\n136 pts\n240 pvmux\n\nBlock devices:\n254 virtblk\n"
            .to_vec()
    }),
    ("sys/kernel/ostype", || b"Linux\n".to_vec()),
    ("sys/kernel/osrelease", || b"6.1.0-pvmux\n".to_vec()),
    ("sys/kernel/version", || {
        b"#1 SMP pvmux guest kernel\n".to_vec()
    }),
    ("sys/kernel/hostname", || {
        let mut v = crate::linux::misc::hostname();
        v.push(b'\n');
        v
    }),
    ("sys/kernel/domainname", || {
        let mut v = crate::linux::misc::domainname();
        v.push(b'\n');
        v
    }),
    ("sys/kernel/pid_max", || b"4194304\n".to_vec()),
    ("sys/kernel/threads-max", || {
        format!("{}\n", task::max_tasks()).into_bytes()
    }),
    ("sys/kernel/ngroups_max", || b"65536\n".to_vec()),
    ("sys/kernel/cap_last_cap", || b"40\n".to_vec()),
    ("sys/kernel/random/uuid", snap::uuid),
    ("sys/kernel/random/boot_id", snap::boot_id),
    ("sys/kernel/random/entropy_avail", || b"256\n".to_vec()),
    ("sys/kernel/random/poolsize", || b"256\n".to_vec()),
    ("sys/vm/overcommit_memory", || b"0\n".to_vec()),
    ("sys/vm/overcommit_ratio", || b"50\n".to_vec()),
    ("sys/vm/max_map_count", || b"65530\n".to_vec()),
    ("sys/vm/swappiness", || b"60\n".to_vec()),
    ("sys/fs/file-max", || b"9223372036854775807\n".to_vec()),
    ("sys/fs/nr_open", || {
        format!("{}\n", crate::linux::rlimit::NR_OPEN).into_bytes()
    }),
    ("sys/net/core/somaxconn", || b"4096\n".to_vec()),
    ("net/dev", crate::linux::net::proc_net::dev),
    ("net/if_inet6", crate::linux::net::proc_net::if_inet6),
    ("net/route", crate::linux::net::proc_net::route),
    ("net/tcp", crate::linux::net::proc_net::tcp),
    ("net/tcp6", crate::linux::net::proc_net::tcp6),
    ("net/udp", crate::linux::net::proc_net::udp),
    ("net/udp6", crate::linux::net::proc_net::udp6),
];

/// `/sys`'s fixed files, by path (the `cpuN` directories are added per vCPU).
const SYS_FILES: [(&str, Gen); 6] = [
    ("devices/system/cpu/online", snap::cpu_range),
    ("devices/system/cpu/possible", snap::cpu_range),
    ("devices/system/cpu/present", snap::cpu_range),
    ("devices/system/cpu/kernel_max", || b"8191\n".to_vec()),
    ("kernel/mm/transparent_hugepage/enabled", || {
        b"always madvise [never]\n".to_vec()
    }),
    ("fs/cgroup/.keep", Vec::new),
];

/// Files of a process (or thread) directory.
const PID_FILES: [&str; 17] = [
    "status",
    "stat",
    "statm",
    "maps",
    "cmdline",
    "environ",
    "comm",
    "limits",
    "mounts",
    "mountinfo",
    "cgroup",
    "oom_score",
    "oom_score_adj",
    "loginuid",
    "sessionid",
    "wchan",
    "io",
];

/// `comps` joined with `/`.
pub(crate) fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// What a static table says about `path`: a file (its generator), a directory (a proper
/// prefix of some file's path), or nothing.
fn in_table(table: &[(&str, Gen)], path: &[u8]) -> Option<Option<Gen>> {
    if path.is_empty() {
        return Some(None);
    }
    for (p, g) in table {
        let p = p.as_bytes();
        if p == path {
            return Some(Some(*g));
        }
        if p.len() > path.len() && p.starts_with(path) && p[path.len()] == b'/' {
            return Some(None);
        }
    }
    None
}

/// The names directly under `path` in a static table: `(name, is_dir)`.
fn table_children(table: &[(&str, Gen)], path: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
    for (p, _) in table {
        let p = p.as_bytes();
        let rest = if path.is_empty() {
            p
        } else if p.len() > path.len() && p.starts_with(path) && p[path.len()] == b'/' {
            &p[path.len() + 1..]
        } else {
            continue;
        };
        let (name, dir) = match rest.iter().position(|&b| b == b'/') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        if name.starts_with(b".") || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        out.push((name.to_vec(), dir));
    }
    out
}

/// A decimal id component.
fn parse_id(c: &[u8]) -> Option<i32> {
    if c.is_empty() || c.len() > 9 || !c.iter().all(u8::is_ascii_digit) || c[0] == b'0' {
        return None;
    }
    core::str::from_utf8(c).ok()?.parse().ok()
}

/// The process and, in `/proc/PID/task/TID`, the thread a per-process path is about.
#[derive(Clone)]
pub(crate) struct Who {
    /// The process.
    pub(crate) p: Arc<Process>,
    /// The thread (for `task/TID`), else `None`.
    pub(crate) t: Option<Arc<Task>>,
}

/// The process named by a pid component (a thread id names its process, like Linux's
/// hidden `/proc/TID`).
fn who(c: &[u8]) -> Option<Who> {
    let id = parse_id(c)?;
    if let Some(p) = task::find_process(id) {
        return Some(Who { p, t: None });
    }
    let t = task::find_task(id)?;
    Some(Who {
        p: t.process.clone(),
        t: Some(t),
    })
}

/// The pid of the caller (`/proc/self`).
fn self_pid() -> i32 {
    task::try_current_task().map_or(1, |t| t.process.pid)
}

/// What `comps` names in filesystem `kind`.
pub(crate) fn classify(kind: MountKind, comps: &[Vec<u8>]) -> Result<Node, Errno> {
    match kind {
        MountKind::Proc => classify_proc(comps),
        MountKind::Sys => classify_sys(comps),
        MountKind::DevPts => match comps {
            [] => Ok(Node::Dir),
            [p] if p == b"ptmx" => Ok(Node::File),
            [n] => match parse_fd(n) {
                Ok(i) if pty::exists(i as u32) => Ok(Node::File),
                _ => Err(Errno::ENOENT),
            },
            _ => Err(Errno::ENOENT),
        },
    }
}

/// Files of a `/sys/block/vdX` directory.
const BLOCK_FILES: [&str; 4] = ["dev", "ro", "removable", "size"];

/// The attached disk named `name` (`vda`, ...): (slot, sectors, read-only).
fn block_disk(name: &[u8]) -> Option<(u32, u64, bool)> {
    crate::fs::disk::attached()
        .into_iter()
        .find(|&(slot, _, _)| crate::linux::files::dev::disk_name(slot) == name)
}

/// `/sys/block/vdX/FILE`.
fn block_file(name: &[u8], file: &[u8]) -> Result<Vec<u8>, Errno> {
    let (slot, sectors, ro) = block_disk(name).ok_or(Errno::ENOENT)?;
    let (major, minor) = crate::linux::files::dev::Dev::Disk(slot as u8).number();
    Ok(match file {
        b"dev" => format!("{major}:{minor}\n"),
        b"ro" => format!("{}\n", u8::from(ro)),
        b"removable" => "0\n".into(),
        b"size" => format!("{sectors}\n"),
        _ => return Err(Errno::ENOENT),
    }
    .into_bytes())
}

fn classify_sys(comps: &[Vec<u8>]) -> Result<Node, Errno> {
    match comps {
        [b] if b == b"block" => return Ok(Node::Dir),
        [b, d] if b == b"block" => {
            return block_disk(d).map(|_| Node::Dir).ok_or(Errno::ENOENT);
        }
        [b, d, f] if b == b"block" => {
            return match block_disk(d) {
                Some(_) if BLOCK_FILES.iter().any(|n| n.as_bytes() == f) => Ok(Node::File),
                _ => Err(Errno::ENOENT),
            };
        }
        _ => {}
    }
    let path = join(comps);
    if let Some(g) = in_table(&SYS_FILES, &path) {
        return Ok(if g.is_some() { Node::File } else { Node::Dir });
    }
    // devices/system/cpu/cpuN[/online]
    if comps.len() >= 4 && comps[..3] == [&b"devices"[..], b"system", b"cpu"] {
        let n =
            comps[3].strip_prefix(b"cpu").and_then(
                |d| {
                    if d == b"0" {
                        Some(0)
                    } else {
                        parse_id(d)
                    }
                },
            );
        if n.is_some_and(|n| (n as u32) < crate::boot::nr_vcpus()) {
            return match &comps[4..] {
                [] => Ok(Node::Dir),
                [f] if f == b"online" => Ok(Node::File),
                _ => Err(Errno::ENOENT),
            };
        }
    }
    Err(Errno::ENOENT)
}

fn classify_proc(comps: &[Vec<u8>]) -> Result<Node, Errno> {
    let Some(first) = comps.first() else {
        return Ok(Node::Dir);
    };
    match first.as_slice() {
        b"self" if comps.len() == 1 => {
            return Ok(Node::Link(format!("{}", self_pid()).into_bytes()))
        }
        b"thread-self" if comps.len() == 1 => {
            let tid = task::try_current_task().map_or(1, |t| t.tid);
            return Ok(Node::Link(
                format!("{}/task/{tid}", self_pid()).into_bytes(),
            ));
        }
        b"mounts" if comps.len() == 1 => return Ok(Node::Link(b"self/mounts".to_vec())),
        _ => {}
    }
    if let Some(w) = who(first) {
        return classify_pid(&w, &comps[1..], w.t.is_some());
    }
    match in_table(&PROC_FILES, &join(comps)) {
        Some(Some(_)) => Ok(Node::File),
        Some(None) => Ok(Node::Dir),
        None => Err(Errno::ENOENT),
    }
}

/// What `rest` names under a process's (or thread's: `in_task`) directory.
fn classify_pid(w: &Who, rest: &[Vec<u8>], in_task: bool) -> Result<Node, Errno> {
    let Some(first) = rest.first() else {
        return Ok(Node::Dir);
    };
    let more = &rest[1..];
    match (first.as_slice(), more) {
        (b"fd" | b"fdinfo", []) => Ok(Node::Dir),
        (b"fd", [n]) => {
            let fd = parse_fd(n)?;
            let f = w.p.files.lock().get(fd).map_err(|_| Errno::ENOENT)?;
            Ok(Node::FdLink(f))
        }
        (b"fdinfo", [n]) => {
            let fd = parse_fd(n)?;
            w.p.files.lock().get(fd).map_err(|_| Errno::ENOENT)?;
            Ok(Node::File)
        }
        (b"task", []) if !in_task => Ok(Node::Dir),
        (b"task", [tid, sub @ ..]) if !in_task => {
            let tid = parse_id(tid).ok_or(Errno::ENOENT)?;
            let t =
                w.p.threads
                    .lock()
                    .iter()
                    .find(|t| t.tid == tid)
                    .cloned()
                    .ok_or(Errno::ENOENT)?;
            let w = Who {
                p: w.p.clone(),
                t: Some(t),
            };
            classify_pid(&w, sub, true)
        }
        (b"exe", []) => {
            let exe = w.p.exe.lock().clone();
            if exe.is_empty() {
                return Err(Errno::ENOENT);
            }
            Ok(Node::Link(exe))
        }
        (b"cwd", []) => {
            let (cwd, synth) = {
                let c = w.p.fs.lock();
                (c.cwd, c.synth.clone())
            };
            match synth {
                Some((kind, comps)) => Ok(Node::Link(abs_path(kind, &comps))),
                None => Ok(Node::Link(crate::linux::files::path::dir_path(cwd)?)),
            }
        }
        (b"root", []) => {
            let root = w.p.fs.lock().root;
            Ok(Node::Link(crate::linux::files::path::dir_path(root)?))
        }
        (name, []) if PID_FILES.iter().any(|f| f.as_bytes() == name) => Ok(Node::File),
        _ => Err(Errno::ENOENT),
    }
}

/// A descriptor (or pty) number component.
pub(crate) fn parse_fd(c: &[u8]) -> Result<i32, Errno> {
    if c == b"0" {
        return Ok(0);
    }
    parse_id(c).ok_or(Errno::ENOENT)
}

/// The entries of directory `comps` (without `.` and `..`): `(name, d_type)`.
pub(crate) fn list(kind: MountKind, comps: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, u8)>, Errno> {
    let dtype = |dir: bool| if dir { dt::DT_DIR } else { dt::DT_REG };
    match kind {
        MountKind::DevPts => {
            if !comps.is_empty() {
                return Err(Errno::ENOTDIR);
            }
            let mut out = alloc::vec![(b"ptmx".to_vec(), DT_CHR)];
            for n in pty::numbers() {
                out.push((format!("{n}").into_bytes(), DT_CHR));
            }
            Ok(out)
        }
        MountKind::Sys => {
            let path = join(comps);
            let mut out: Vec<(Vec<u8>, u8)> = table_children(&SYS_FILES, &path)
                .into_iter()
                .map(|(n, d)| (n, dtype(d)))
                .collect();
            if path.is_empty() {
                out.push((b"block".to_vec(), dt::DT_DIR));
            } else if path == b"block" {
                for (slot, _, _) in crate::fs::disk::attached() {
                    let name = crate::linux::files::dev::disk_name(slot);
                    out.push((name.to_vec(), dt::DT_DIR));
                }
            } else if comps.len() == 2 && comps[0] == b"block" {
                block_disk(&comps[1]).ok_or(Errno::ENOENT)?;
                for f in BLOCK_FILES {
                    out.push((f.as_bytes().to_vec(), dt::DT_REG));
                }
            } else if path == b"devices/system/cpu" {
                for i in 0..crate::boot::nr_vcpus() {
                    out.push((format!("cpu{i}").into_bytes(), dt::DT_DIR));
                }
            } else if comps.len() == 4 && path.starts_with(b"devices/system/cpu/cpu") {
                out.push((b"online".to_vec(), dt::DT_REG));
            }
            Ok(out)
        }
        MountKind::Proc => {
            let Some(first) = comps.first() else {
                let mut out: Vec<(Vec<u8>, u8)> = Vec::new();
                for p in task::all_processes() {
                    out.push((format!("{}", p.pid).into_bytes(), dt::DT_DIR));
                }
                for n in [&b"self"[..], b"thread-self", b"mounts"] {
                    out.push((n.to_vec(), dt::DT_LNK));
                }
                out.extend(
                    table_children(&PROC_FILES, b"")
                        .into_iter()
                        .map(|(n, d)| (n, dtype(d))),
                );
                return Ok(out);
            };
            if let Some(w) = who(first) {
                return list_pid(&w, &comps[1..], w.t.is_some());
            }
            Ok(table_children(&PROC_FILES, &join(comps))
                .into_iter()
                .map(|(n, d)| (n, dtype(d)))
                .collect())
        }
    }
}

/// The entries of a process's directory `rest`.
fn list_pid(w: &Who, rest: &[Vec<u8>], in_task: bool) -> Result<Vec<(Vec<u8>, u8)>, Errno> {
    match rest {
        [] => {
            let mut out: Vec<(Vec<u8>, u8)> = PID_FILES
                .iter()
                .map(|f| (f.as_bytes().to_vec(), dt::DT_REG))
                .collect();
            out.push((b"fd".to_vec(), dt::DT_DIR));
            out.push((b"fdinfo".to_vec(), dt::DT_DIR));
            if !in_task {
                out.push((b"task".to_vec(), dt::DT_DIR));
            }
            for l in ["exe", "cwd", "root"] {
                out.push((l.as_bytes().to_vec(), dt::DT_LNK));
            }
            Ok(out)
        }
        [d] if d == b"fd" || d == b"fdinfo" => {
            let ty = if d == b"fd" { dt::DT_LNK } else { dt::DT_REG };
            Ok(snap::open_fds(&w.p)
                .into_iter()
                .map(|fd| (format!("{fd}").into_bytes(), ty))
                .collect())
        }
        [t] if t == b"task" && !in_task => Ok(w
            .p
            .threads
            .lock()
            .iter()
            .map(|t| (format!("{}", t.tid).into_bytes(), dt::DT_DIR))
            .collect()),
        [t, tid, sub @ ..] if t == b"task" && !in_task => {
            let tid = parse_id(tid).ok_or(Errno::ENOENT)?;
            let th =
                w.p.threads
                    .lock()
                    .iter()
                    .find(|t| t.tid == tid)
                    .cloned()
                    .ok_or(Errno::ENOENT)?;
            let w = Who {
                p: w.p.clone(),
                t: Some(th),
            };
            list_pid(&w, sub, true)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

/// The contents of file `comps`.
pub(crate) fn contents(kind: MountKind, comps: &[Vec<u8>]) -> Result<Vec<u8>, Errno> {
    match kind {
        MountKind::DevPts => Err(Errno::EINVAL),
        MountKind::Sys => {
            if let Some(Some(g)) = in_table(&SYS_FILES, &join(comps)) {
                return Ok(g());
            }
            if let [b, d, f] = comps {
                if b == b"block" {
                    return block_file(d, f);
                }
            }
            match classify_sys(comps)? {
                Node::File => Ok(b"1\n".to_vec()),
                _ => Err(Errno::EISDIR),
            }
        }
        MountKind::Proc => {
            let first = comps.first().ok_or(Errno::EISDIR)?;
            if let Some(w) = who(first) {
                return pid_contents(&w, &comps[1..]);
            }
            match in_table(&PROC_FILES, &join(comps)) {
                Some(Some(g)) => Ok(g()),
                Some(None) => Err(Errno::EISDIR),
                None => Err(Errno::ENOENT),
            }
        }
    }
}

/// The contents of a per-process file `rest`.
fn pid_contents(w: &Who, rest: &[Vec<u8>]) -> Result<Vec<u8>, Errno> {
    match rest {
        [t, tid, sub @ ..] if t == b"task" && w.t.is_none() => {
            let tid = parse_id(tid).ok_or(Errno::ENOENT)?;
            let th = w
                .p
                .threads
                .lock()
                .iter()
                .find(|t| t.tid == tid)
                .cloned()
                .ok_or(Errno::ENOENT)?;
            pid_contents(
                &Who {
                    p: w.p.clone(),
                    t: Some(th),
                },
                sub,
            )
        }
        [d, n] if d == b"fdinfo" => {
            let fd = parse_fd(n)?;
            let f = w.p.files.lock().get(fd).map_err(|_| Errno::ENOENT)?;
            let pos = *f.pos();
            let mut text =
                format!("pos:\t{pos}\nflags:\t0{:o}\nmnt_id:\t0\nino:\t0\n", f.flags()).into_bytes();
            if let Some(o) = crate::linux::files::object::object_of(&f) {
                text.extend_from_slice(&o.fdinfo());
            }
            Ok(text)
        }
        [name] => Ok(match name.as_slice() {
            b"status" => text::status(&snap::info(w)),
            b"stat" => text::stat(&snap::info(w)),
            b"statm" => text::statm(&snap::info(w)),
            b"maps" => text::maps(&snap::maps(&w.p)),
            b"cmdline" => w.p.args.lock().cmdline.clone(),
            b"environ" => w.p.args.lock().environ.clone(),
            b"comm" => {
                let mut c = snap::comm_of(w);
                c.push(b'\n');
                c
            }
            b"limits" => snap::limits(&w.p),
            b"mounts" => mount::mounts_text(),
            b"mountinfo" => snap::mountinfo(),
            b"cgroup" => b"0::/\n".to_vec(),
            b"oom_score" | b"oom_score_adj" => b"0\n".to_vec(),
            b"loginuid" => b"4294967295".to_vec(),
            b"sessionid" => b"4294967295".to_vec(),
            b"wchan" => b"0".to_vec(),
            b"io" => b"rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n".to_vec(),
            _ => return Err(Errno::ENOENT),
        }),
        _ => Err(Errno::ENOENT),
    }
}

/// An inode number for a synthetic path (FNV-1a of the filesystem and path; stable, so
/// `find` and `ls` see the same number twice).
pub(crate) fn ino_of(kind: MountKind, comps: &[Vec<u8>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ kind.magic();
    for c in comps {
        for &b in c.iter().chain(core::iter::once(&b'/')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h >> 8) | (1 << 48)
}

/// The absolute path of `comps` in `kind`.
pub(crate) fn abs_path(kind: MountKind, comps: &[Vec<u8>]) -> Vec<u8> {
    let mut p = kind.path().to_vec();
    for c in comps {
        p.push(b'/');
        p.extend_from_slice(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Vec<Vec<u8>> {
        s.split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn static_tables_give_files_and_dirs() {
        assert!(matches!(
            classify(MountKind::Proc, &comps("cpuinfo")),
            Ok(Node::File)
        ));
        assert!(matches!(
            classify(MountKind::Proc, &comps("sys/kernel")),
            Ok(Node::Dir)
        ));
        assert!(matches!(
            classify(MountKind::Proc, &comps("sys/kernel/pid_max")),
            Ok(Node::File)
        ));
        assert!(matches!(
            classify(MountKind::Proc, &comps("sys/kern")),
            Err(Errno::ENOENT)
        ));
        assert!(matches!(
            classify(MountKind::Sys, &comps("devices/system/cpu/online")),
            Ok(Node::File)
        ));
        let names: Vec<Vec<u8>> = table_children(&PROC_FILES, b"sys")
            .into_iter()
            .map(|(n, d)| {
                assert!(d);
                n
            })
            .collect();
        assert_eq!(names, [&b"kernel"[..], b"vm", b"fs", b"net"]);
        // Hidden placeholders are not listed.
        assert!(table_children(&SYS_FILES, b"fs/cgroup").is_empty());
    }

    #[test]
    fn ids_are_canonical_decimals() {
        assert_eq!(parse_id(b"12"), Some(12));
        assert_eq!(parse_id(b"012"), None);
        assert_eq!(parse_id(b"self"), None);
        assert_eq!(parse_id(b"9999999999"), None);
        assert_eq!(parse_fd(b"0"), Ok(0));
    }

    #[test]
    fn paths_and_inodes() {
        assert_eq!(
            abs_path(MountKind::Proc, &comps("1/status")),
            b"/proc/1/status"
        );
        assert_eq!(join(&comps("a/b")), b"a/b");
        let a = ino_of(MountKind::Proc, &comps("1/status"));
        assert_eq!(a, ino_of(MountKind::Proc, &comps("1/status")));
        assert_ne!(a, ino_of(MountKind::Proc, &comps("1/stat")));
        assert_ne!(a, ino_of(MountKind::Sys, &comps("1/status")));
    }
}
