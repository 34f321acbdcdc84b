//! Counts of this test process's resources from `/proc`, for leak tests.

/// The number of entries in directory `dir` (e.g. `/proc/self/fd`).
pub fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("proc dir").count()
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
