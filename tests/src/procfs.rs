//! Counts of this test process's resources, and sandboxes left behind, from `/proc`, for leak
//! tests.

/// The number of entries in directory `dir` (e.g. `/proc/self/fd`).
pub fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("proc dir").count()
}

/// The open flags of process `pid`'s file descriptor `fd` (`/proc/PID/fdinfo/FD`'s `flags:`,
/// octal), with the fdinfo text for messages. `flags & 3` is the access mode (0: read-only).
pub fn fd_flags(pid: u32, fd: i32) -> (u32, String) {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .expect("flags");
    (flags, info)
}

/// The number of mappings of pvmux memfds (guest memory and control regions).
pub fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .filter(|l| l.contains("memfd:pvmux"))
        .count()
}

/// The number of child processes of all of this process's threads.
pub fn children() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .map(|t| {
            let p = t.expect("task").path().join("children");
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .sum()
}

/// Host pids of `pvmux-sandbox` processes whose parent is no `pvmux` process: sandboxes a
/// `pvmux` process left behind (each sandbox's parent is the `pvmux` process that runs it, or
/// for a sandbox forked from a tenant's user sandbox template, the template, whose parent is).
pub fn orphaned_sandboxes() -> Vec<u32> {
    let field = |pid: &str, name: &str| -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let cmdline = |pid: &str| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| cmdline(pid).starts_with(b"pvmux-sandbox\0"))
        .filter(|pid| {
            let by_pvmux = |p: &str| field(p, "Name:").is_some_and(|n| n.starts_with("pvmux"));
            let parent = field(pid, "PPid:").unwrap_or_default();
            let template_of_pvmux = cmdline(&parent).starts_with(b"pvmux-sandbox\0")
                && by_pvmux(&field(&parent, "PPid:").unwrap_or_default());
            !by_pvmux(&parent) && !template_of_pvmux
        })
        .filter_map(|pid| pid.parse().ok())
        .collect()
}
