//! Scheduling parameters a program sets and reads back in a guest, against the same program
//! natively: nice values (`setpriority`/`getpriority` of itself and of a child, inherited by
//! `fork`, clamped, in `/proc/PID/stat`, the `nice` command) and the CPU affinity
//! (`sched_setaffinity`/`sched_getaffinity`, what `nproc` then counts, a mask of no CPU).
//! Before, `setpriority` and `sched_setaffinity` were accepted and forgotten.

use pvmux_tests::python_same_as_native;

const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

const SCHED_PY: &str = r#"
import os, subprocess
os.setpriority(os.PRIO_PROCESS, 0, 5)
print("getpriority", os.getpriority(os.PRIO_PROCESS, 0))
pid = os.fork()
if pid == 0:
    print("a child inherits it", os.getpriority(os.PRIO_PROCESS, 0), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(r, 1)
    print("set by its parent", os.getpriority(os.PRIO_PROCESS, 0), flush=True)
    os._exit(0)
os.setpriority(os.PRIO_PROCESS, pid, 10)
print("the parent reads the child's", os.getpriority(os.PRIO_PROCESS, pid))
os.write(w, b"x")
os.waitpid(pid, 0)
with open("/proc/self/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
print("/proc/self/stat priority, nice", fields[15], fields[16])
os.setpriority(os.PRIO_PROCESS, 0, -3)
print("lowered by root", os.getpriority(os.PRIO_PROCESS, 0))
os.setpriority(os.PRIO_PROCESS, 0, 100)
print("clamped", os.getpriority(os.PRIO_PROCESS, 0))
print("nice -n -3 nice", subprocess.run(["nice", "-n", "-3", "nice"], capture_output=True, text=True).stdout.strip())
try:
    os.setpriority(os.PRIO_PROCESS, 999999, 1)
except OSError as e:
    print("no such process", e.errno)
os.sched_setaffinity(0, {0})
print("affinity", sorted(os.sched_getaffinity(0)))
print("nproc", subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
with open("/proc/self/status") as f:
    print([l.strip() for l in f if l.startswith("Cpus_allowed_list")])
pid = os.fork()
if pid == 0:
    print("a child inherits it", sorted(os.sched_getaffinity(0)), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
try:
    os.sched_setaffinity(0, {99})
except OSError as e:
    print("a mask of no CPU", e.errno)
"#;

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn nice_values_and_affinity_are_kept_as_natively() {
    python_same_as_native(PVMUX, "sched", SCHED_PY);
}
