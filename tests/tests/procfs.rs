//! `/proc`, `/sys` and the `/dev` entries programs expect, in a guest run from the host's
//! root (`pvmux run --rootfs / --vcpus 2`): the same script natively and in the guest where
//! the output can be made host-independent (paths, names, field layouts, process
//! substitution through `/dev/fd`), structural facts otherwise (`nproc` is the vCPU count,
//! `ps -e` lists the script's own processes, `free`'s total is `--mem`).

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest one run may take (programs are read through the host share; CI's 2-core machine
/// runs several tests at once).
const TIMEOUT: Duration = Duration::from_secs(300);
/// `--mem` of the guest runs.
const MEM_MIB: u64 = 512;

fn run(mut cmd: Command) -> Run {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C");
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

/// `script` under `/bin/bash -c` in a guest with 2 vCPUs and [`MEM_MIB`] of memory.
fn guest(script: &str) -> Run {
    let mut c = Command::new(PVMUX);
    c.args(["run", "--rootfs", "/", "--vcpus", "2", "--mem"])
        .arg(format!("{MEM_MIB}M"))
        .args(["--", "/bin/bash", "-c", script]);
    run(c)
}

/// `script` under `/bin/bash -c` natively, from `/`.
fn native(script: &str) -> Run {
    let mut c = Command::new("/bin/bash");
    c.args(["-c", script]).current_dir("/");
    run(c)
}

/// Asserts the guest and the native run print the same and exit the same.
fn same_as_native(name: &str, script: &str) {
    let script = format!("set -e\ncd /\n{script}");
    let n = native(&script);
    assert_eq!(
        n.code(),
        Some(0),
        "{name}: the native run failed\n{}",
        n.context()
    );
    let g = guest(&script);
    assert_eq!(
        g.stdout,
        n.stdout,
        "{name}: guest and native differ\nguest:\n{}\nnative stderr:\n{}",
        g.context(),
        n.stderr
    );
    assert_eq!(g.code(), n.code(), "{name}: exit status\n{}", g.context());
}

#[test]
fn proc_self_files_same_as_native() {
    same_as_native(
        "proc-self",
        r#"
readlink /proc/self/exe
ls -l /proc/self/exe | awk '{print $1, $(NF-1), $NF}'
ln -s /usr/bin/readlink /tmp/pvmux-procfs-rl-$$; /tmp/pvmux-procfs-rl-$$ /proc/self/exe; rm /tmp/pvmux-procfs-rl-$$
/bin/readlink /proc/self/exe
cd /bin && ./readlink /proc/self/exe && cd /usr/lib && ../bin/readlink /proc/self/exe && cd /
printf '#!/bin/sh\nreadlink /proc/$$/exe\n' > /tmp/pvmux-procfs-sh-$$; chmod +x /tmp/pvmux-procfs-sh-$$
/tmp/pvmux-procfs-sh-$$; rm /tmp/pvmux-procfs-sh-$$
ls -l /proc/self/status | cut -c1-10
cat /proc/self/comm
awk -F'\t' '/^(Name|State|Uid|Gid|Threads|PPid):/ {print $1, ($1=="PPid:") ? ($2 > 0) : $2}' /proc/self/status
awk '{print NF, $3}' /proc/self/stat
awk '{print NF}' /proc/self/statm
tr '\0' '|' < /proc/self/cmdline; echo
read -r pid rest < /proc/self/stat; [ "$pid" = "$$" ] && echo self-is-the-shell
[ -d /proc/$$/fd ] && [ -r /proc/$$/status ] && echo pid-dir
[ "$(readlink /proc/self)" != "" ] && echo self-link
cd /tmp && readlink /proc/self/cwd && cd /
readlink /proc/self/root
cd /proc/self && /bin/pwd | grep -c '^/proc/[0-9]*$' && cat comm && cd ../sys/kernel && cat ostype && readlink /proc/self/cwd && cd /
ls /proc/self/fd | grep -E '^[0-3]$'
exec 7</etc/hostname; readlink /proc/$$/fd/7; exec 7<&-
readlink /dev/stdin /dev/fd
grep -c -E '^(status|stat|statm|maps|cmdline|environ|exe|cwd|fd|limits|mounts|task)$' <(ls /proc/self)
ls /proc/self/task | wc -l
awk '/^Max open files/ {print $1, $2, $3}' /proc/self/limits
grep -q '\[stack\]' /proc/self/maps && echo has-stack
cut -d' ' -f1-4 /proc/self/maps | awk '{print ($1 ~ /^[0-9a-f]+-[0-9a-f]+$/) ? "range-ok" : $0, length($2)}' | sort -u
FOO=bar env | grep -c FOO; FOO=bar cat /proc/self/environ | tr '\0' '\n' | grep '^FOO='
"#,
    );
}

#[test]
fn proc_and_sys_global_files_same_as_native() {
    same_as_native(
        "proc-global",
        r#"
cat /proc/sys/kernel/ostype
stat -f -c %T /proc /sys /proc/self/status
awk -F: '{print $1}' /proc/meminfo | grep -E '^(MemTotal|MemFree|MemAvailable|Shmem|SwapTotal)$'
grep -c '^processor' /proc/cpuinfo >/dev/null && echo cpuinfo
awk '{print NF}' /proc/uptime /proc/loadavg
grep -E -o '^(cpu |btime|processes)' /proc/stat
grep -E -o '^proc /proc proc|sysfs /sys sysfs' /proc/mounts | sort -u
grep -q proc /proc/filesystems && echo filesystems
[ "$(cat /proc/sys/kernel/pid_max)" -gt 0 ] && echo pid_max
grep -E -q '^[0-9]+$' /proc/sys/vm/overcommit_memory && echo overcommit
grep -E -q '^[0-9a-f-]{36}$' /proc/sys/kernel/random/boot_id && echo boot_id
ls /sys/devices/system/cpu | grep -E -c '^(online|possible|present)$'
grep -E -q '^0(-[0-9]+)?$' /sys/devices/system/cpu/online && echo online
echo x > /proc/version 2>/dev/null || echo read-only
touch /proc/nope 2>/dev/null || echo no-create
mkdir /proc/nope 2>/dev/null || echo no-mkdir
ln /etc/hostname /sys/nope 2>/dev/null || echo no-link
"#,
    );
}

#[test]
fn process_substitution_and_dev_fd_same_as_native() {
    same_as_native(
        "dev-fd",
        r#"
diff <(printf 'a\nb\n') <(printf 'a\nc\n') || echo "diff said: $?"
diff <(seq 3) <(seq 3) && echo same
while read -r w; do echo "read: $w"; done < <(printf 'x\ny\n')
cat <(echo via-dev-fd) /dev/stdin <<< from-stdin
paste <(seq 2) <(seq 3 4)
echo to-stdout > /dev/stdout
echo to-stderr > /dev/stderr 2>/dev/null
exec 9< <(echo nine); cat /dev/fd/9
echo kept > /tmp/pvmux-procfs-$$; exec 8</tmp/pvmux-procfs-$$; rm /tmp/pvmux-procfs-$$; cat /dev/fd/8; exec 8<&-
wc -c < /proc/self/status | awk '{print ($1 > 100)}'
"#,
    );
}

#[test]
fn ps_top_free_df_nproc() {
    let g = guest(
        r#"
nproc
grep -c '^processor' /proc/cpuinfo
cat /sys/devices/system/cpu/online
echo "self=$$"
sleep 5 & echo "bg=$!"
ps -e -o pid=,comm=
ps -ef | head -1
ps aux | head -1
free -k | awk '/^Mem:/ {print "memtotal", $2}'
top -b -n1 | head -1 | cut -c1-5
df -k /tmp | tail -1 | awk '{print "df", ($2 > 0)}'
ls /proc/self/fd | tr '\n' ' '; echo
kill %1
"#,
    );
    assert_eq!(g.code(), Some(0), "{}", g.context());
    let lines: Vec<&str> = g.stdout.lines().collect();
    assert_eq!(&lines[..3], ["2", "2", "0-1"], "{}", g.context());
    let val = |key: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in\n{}", g.context()))
            .to_string()
    };
    let me = val("self=");
    let bg = val("bg=");
    let ps: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pid = w.next()?;
            let comm = w.next()?;
            pid.parse::<u32>().ok()?;
            (w.next().is_none()).then(|| (pid.to_string(), comm.to_string()))
        })
        .collect();
    assert!(
        ps.contains(&(me.clone(), "bash".into())),
        "ps -e lacks the shell {me}\n{}",
        g.context()
    );
    assert!(
        ps.contains(&(bg.clone(), "sleep".into())),
        "ps -e lacks the background sleep {bg}\n{}",
        g.context()
    );
    assert!(ps.iter().any(|(_, c)| c == "ps"), "{}", g.context());
    assert!(g.has_line("UID          PID    PPID  C STIME TTY          TIME CMD"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("USER") && l.contains("COMMAND")));
    let total: u64 = val("memtotal ").parse().expect("free's total");
    let mem_kib = MEM_MIB * 1024;
    assert_eq!(total, mem_kib, "free's total is not --mem\n{}", g.context());
    assert!(g.has_line("top -"), "{}", g.context());
    assert!(g.has_line("df 1"), "{}", g.context());
    assert!(g.has_line("0 1 2 3 "), "{}", g.context());
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn pseudo_terminals_same_as_native() {
    same_as_native(
        "pty",
        r#"
python3 - <<'PY'
import os, pty, termios, tty
out = []
m, s = os.openpty()
out.append(("isatty", os.isatty(s), os.isatty(m)))
out.append(("ttyname", os.ttyname(s).startswith("/dev/pts/")))
n = int(os.ttyname(s).rsplit("/", 1)[1])
out.append(("listed", str(n) in os.listdir("/dev/pts"), "ptmx" in os.listdir("/dev/pts")))
out.append(("rdev", os.major(os.stat(os.ttyname(s)).st_rdev), os.major(os.fstat(m).st_rdev)))
os.write(m, b"hello\n")
out.append(("slave read", os.read(s, 100)))
out.append(("echo", os.read(m, 100)))
os.write(s, b"out\n")
out.append(("master read", os.read(m, 100)))
out.append(("icanon", bool(termios.tcgetattr(s)[3] & termios.ICANON)))
tty.setraw(s)
os.write(m, b"x\r")
out.append(("raw read", os.read(s, 10)))
out.append(("winsize", termios.tcgetwinsize(s) if hasattr(termios, "tcgetwinsize") else (24, 80)))
os.close(s)
try:
    os.read(m, 10)
except OSError as e:
    out.append(("after close", e.errno))
pid, fd = pty.fork()
if pid == 0:
    os.write(1, b"child isatty %d\n" % os.isatty(0))
    os._exit(3)
data = b""
while True:
    try:
        d = os.read(fd, 100)
    except OSError:
        break
    if not d:
        break
    data += d
_, st = os.waitpid(pid, 0)
out.append(("child", data, os.waitstatus_to_exitcode(st)))
for o in out:
    print(*o)
PY
"#,
    );
}

/// A `/proc` file kept open is read again as `top` and `free` (procps) poll `/proc/stat` and
/// `/proc/meminfo`: `lseek(fd, 0, SEEK_SET)` then `read`, or `pread` at 0, give the file as
/// it is now, not as it was at the first read; a read that goes on from the middle keeps
/// the snapshot it started with (Linux's `seq_file`).
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn proc_files_kept_open_are_generated_again_at_offset_zero() {
    same_as_native(
        "re-read",
        r#"
python3 - <<'PY'
import os, time
fd = os.open("/proc/uptime", os.O_RDONLY)
first = os.read(fd, 4096)
time.sleep(0.05)
os.lseek(fd, 0, os.SEEK_SET)
second = os.read(fd, 4096)
time.sleep(0.05)
third = os.pread(fd, 4096, 0)
print("lseek gives new contents", first != second)
print("pread at 0 gives new contents", second != third)
# A read in pieces: the pieces of one snapshot (one line, one newline at its end).
fd2 = os.open("/proc/self/status", os.O_RDONLY)
head = os.read(fd2, 7)
rest = b""
while True:
    b = os.read(fd2, 64)
    if not b:
        break
    rest += b
whole = head + rest
print("pieces", head, whole.count(b"\nName:") == 0 and whole.startswith(b"Name:"), whole.endswith(b"\n"))
PY
"#,
    );
}

/// `prctl`'s kept state, as Linux gives it: a thread's name (`PR_SET_NAME`, cut to 15
/// bytes) in `PR_GET_NAME`, `/proc/self/comm`, `status` and `task/TID/comm`, another
/// thread's own name; no-new-privs (set once, kept by a `fork` child, a bad argument
/// `EINVAL`); dumpability and `PR_SET_THP_DISABLE` (kept by a `fork` child); the
/// parent-death signal (not kept by a `fork` child, sent when the parent ends); a child
/// subreaper that gets its orphaned grandchild, and reaps it.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn prctl_names_parent_death_signal_and_subreaper_same_as_native() {
    same_as_native(
        "prctl",
        r#"
python3 - <<'PY'
import ctypes, os, signal, threading, time
libc = ctypes.CDLL(None, use_errno=True)
SET_PDEATHSIG, GET_PDEATHSIG, SET_NAME, GET_NAME = 1, 2, 15, 16
SET_SUBREAPER, GET_SUBREAPER, SET_NNP, GET_NNP = 36, 37, 38, 39
def getint(opt):
    v = ctypes.c_int(-1)
    libc.prctl(opt, ctypes.byref(v), 0, 0, 0)
    return v.value
out = []
buf = ctypes.create_string_buffer(16)
libc.prctl(SET_NAME, b"a-long-worker-name-here", 0, 0, 0)
libc.prctl(GET_NAME, buf, 0, 0, 0)
comm = lambda p: open(p).read().strip()
out.append(("name", buf.value, comm("/proc/self/comm"), comm(f"/proc/self/task/{os.getpid()}/comm")))
out.append(("status", [l for l in open("/proc/self/status") if l.startswith("Name:")][0].strip()))
def named():
    libc.prctl(SET_NAME, b"second", 0, 0, 0)
    tid = threading.get_native_id()
    out.append(("thread", comm(f"/proc/self/task/{tid}/comm"), comm("/proc/self/comm")))
th = threading.Thread(target=named)
th.start()
th.join()
out.append(("nnp", libc.prctl(GET_NNP, 0, 0, 0, 0), libc.prctl(SET_NNP, 2, 0, 0, 0),
            libc.prctl(SET_NNP, 1, 0, 0, 0), libc.prctl(GET_NNP, 0, 0, 0, 0)))
out.append(("dumpable", libc.prctl(3, 0, 0, 0, 0), libc.prctl(4, 2, 0, 0, 0),
            libc.prctl(4, 0, 0, 0, 0), libc.prctl(3, 0, 0, 0, 0)))
out.append(("thp", libc.prctl(42, 0, 0, 0, 0), libc.prctl(41, 1, 0, 0, 0),
            libc.prctl(42, 0, 0, 0, 0), libc.prctl(42, 1, 0, 0, 0)))
libc.prctl(SET_PDEATHSIG, signal.SIGUSR2, 0, 0, 0)
out.append(("pdeathsig", getint(GET_PDEATHSIG), libc.prctl(SET_PDEATHSIG, 65, 0, 0, 0)))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, repr((getint(GET_PDEATHSIG), libc.prctl(GET_NNP, 0, 0, 0, 0), comm("/proc/self/comm"),
                      libc.prctl(3, 0, 0, 0, 0), libc.prctl(42, 0, 0, 0, 0))).encode())
    os._exit(0)
os.waitpid(pid, 0)
out.append(("fork child", os.read(r, 200).decode()))
libc.prctl(4, 1, 0, 0, 0)
libc.prctl(SET_PDEATHSIG, 0, 0, 0, 0)
libc.prctl(SET_SUBREAPER, 1, 0, 0, 0)
out.append(("subreaper", getint(GET_SUBREAPER)))
r2, w2 = os.pipe()
go_r, go_w = os.pipe()
child = os.fork()
if child == 0:
    if os.fork() == 0:
        got = []
        signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
        libc.prctl(SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        os.write(go_w, b"x")
        deadline = time.time() + 10
        while not got and time.time() < deadline:
            time.sleep(0.01)
        os.write(w2, repr((got, os.getppid())).encode())
        os._exit(0)
    os.read(go_r, 1)
    os._exit(0)
os.waitpid(child, 0)
got, ppid = eval(os.read(r2, 200).decode())
out.append(("grandchild", got, ppid == os.getpid()))
out.append(("reaped", os.wait()[0] not in (0, child)))
for o in out:
    print(*o)
PY
"#,
    );
}
