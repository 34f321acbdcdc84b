//! Advisory file locks in a guest against the same program natively: `flock` (shared,
//! exclusive, non-blocking, converted, shared by `fork`), POSIX record locks (`fcntl`
//! `F_SETLK`/`F_SETLKW`/`F_GETLK`: ranges, the holder's pid, waiting, dropped by closing
//! any descriptor of the file, `EDEADLK`), open file description locks (`F_OFD_*`),
//! `/proc/locks`, and what they are for: processes updating one file or one SQLite database
//! at once lose no update. And robust mutexes, the lock a process or thread that ends
//! holding it releases with `EOWNERDEAD` (`set_robust_list`).

use pvmux_tests::python_same_as_native;

const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// The program: prints what each lock did; the directory to work in is its argument.
const LOCKS_PY: &str = r#"
import errno, fcntl, os, sqlite3, struct, sys, time

d = sys.argv[1]

def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def wait(pid):
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)

def counter(path, procs, rounds):
    with open(path, "w") as f:
        f.write("0")
    kids = []
    for k in range(procs):
        pid = os.fork()
        if pid == 0:
            fd = os.open(path, os.O_RDWR)
            for _ in range(rounds):
                fcntl.flock(fd, fcntl.LOCK_EX)
                n = int(os.pread(fd, 32, 0))
                time.sleep(0.0005)
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(n + 1).encode(), 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            os._exit(0)
        kids.append(pid)
    codes = [wait(p) for p in kids]
    with open(path) as f:
        return f.read(), codes

# flock: processes counting under an exclusive lock lose no update.
print("flock counter", counter(d + "/count", 4, 100))

# flock: a second description waits (or fails with LOCK_NB); fork shares the description.
p = d + "/f"
open(p, "w").close()
a = os.open(p, os.O_RDWR)
b = os.open(p, os.O_RDWR)
fcntl.flock(a, fcntl.LOCK_SH)
fcntl.flock(b, fcntl.LOCK_SH)
try:
    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock convert: granted")
except OSError as e:
    print("flock convert:", name(e))
fcntl.flock(a, fcntl.LOCK_UN)
fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("flock convert after unlock: granted")
try:
    fcntl.flock(a, fcntl.LOCK_SH | fcntl.LOCK_NB)
    print("flock shared beside exclusive: granted")
except OSError as e:
    print("flock shared beside exclusive:", name(e))
pid = os.fork()
if pid == 0:
    # The same description: a conversion, not a conflict.
    fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os._exit(7)
print("flock in the child on the inherited description: exit", wait(pid))
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    os.close(b)  # the description's last descriptor: its lock goes
    os._exit(0)
os.close(b)
fcntl.flock(a, fcntl.LOCK_EX)
print("flock waited for the last close:", time.monotonic() - t0 >= 0.25)
wait(pid)
os.close(a)

# POSIX record locks.
p = d + "/r"
with open(p, "wb") as f:
    f.write(b"x" * 100)
fd = os.open(p, os.O_RDWR)
me = os.getpid()
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
fcntl.lockf(fd, fcntl.LOCK_SH, 10, 20)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    out = []
    q = os.open(p, os.O_RDWR)
    for start, ln, t in [(5, 10, fcntl.F_RDLCK), (12, 5, fcntl.F_WRLCK), (22, 1, fcntl.F_RDLCK),
                         (22, 1, fcntl.F_WRLCK), (40, 0, fcntl.F_WRLCK)]:
        got = fcntl.fcntl(q, fcntl.F_GETLK, struct.pack("hhxxxxqqixxxx", t, 0, start, ln, 0))
        lt, wh, s, l, who = struct.unpack("hhxxxxqqixxxx", got)
        out.append((start, ln, lt, s, l, who == me if lt != fcntl.F_UNLCK else None))
    try:
        fcntl.lockf(q, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 3)
        out.append("overlapping: granted")
    except OSError as e:
        out.append("overlapping: " + name(e))
    fcntl.lockf(q, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 10)
    out.append("beside: granted")
    os.write(w, repr(out).encode())
    os._exit(0)
wait(pid)
print("posix from another process", os.read(r, 4096).decode())
# Closing another descriptor of the file drops this process's record locks.
other = os.open(p, os.O_RDONLY)
os.close(other)
pid = os.fork()
if pid == 0:
    q = os.open(p, os.O_RDWR)
    fcntl.lockf(q, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
    os._exit(0)
print("posix after closing another descriptor: exit", wait(pid))
# A lock needs the descriptor open for it.
ro = os.open(p, os.O_RDONLY)
try:
    fcntl.lockf(ro, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    print("write lock on a read-only descriptor: granted")
except OSError as e:
    print("write lock on a read-only descriptor:", name(e))
os.close(ro)

# F_SETLKW waits; a wait that closes a cycle fails with EDEADLK.
fd = os.open(p, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    q = os.open(p, os.O_RDWR)
    fcntl.lockf(q, fcntl.LOCK_EX, 1, 1)
    os.write(w, b"1")
    time.sleep(0.5)  # the parent is waiting for byte 1 by then
    try:
        fcntl.lockf(q, fcntl.LOCK_EX, 1, 0)
        os.write(w, b"granted")
    except OSError as e:
        os.write(w, name(e).encode())
    os._exit(0)
os.read(r, 1)
t0 = time.monotonic()
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 1)  # waits for the child, which then waits for us
print("posix deadlock in the child:", os.read(r, 64).decode(),
      "; waited:", time.monotonic() - t0 >= 0.4)
wait(pid)
os.close(fd)

# Open file description locks: per description, against POSIX locks too.
p = d + "/o"
with open(p, "wb") as f:
    f.write(b"y" * 10)
a = os.open(p, os.O_RDWR)
b = os.open(p, os.O_RDWR)
fcntl.fcntl(a, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, 0, 0, 4, 0))
got = fcntl.fcntl(b, fcntl.F_OFD_GETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_RDLCK, 0, 2, 1, 0))
print("ofd from another description", struct.unpack("hhxxxxqqixxxx", got))
for cmd, what in [(fcntl.F_OFD_SETLK, "ofd"), (fcntl.F_SETLK, "posix")]:
    try:
        fcntl.fcntl(b, cmd, struct.pack("hhxxxxqqixxxx", fcntl.F_RDLCK, 0, 3, 2, 0))
        print(what, "beside an ofd lock of another description: granted")
    except OSError as e:
        print(what, "beside an ofd lock of another description:", name(e))
try:
    fcntl.fcntl(b, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_RDLCK, 0, 0, 1, 5))
except OSError as e:
    print("ofd with a pid:", name(e))
os.close(a)
fcntl.fcntl(b, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, 0, 0, 0, 0))
print("ofd after the holder's close: granted")

# /proc/locks shows them (what lslocks reads): the lines of this file.
p = d + "/pl"
with open(p, "wb") as f:
    f.write(b"z" * 10)
a = os.open(p, os.O_RDWR)
fcntl.lockf(a, fcntl.LOCK_EX, 4, 2)
b = os.open(p, os.O_RDWR)
fcntl.flock(b, fcntl.LOCK_SH)
st = os.stat(p)
key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
rows = []
with open("/proc/locks") as f:
    for line in f:
        w = line.split()
        if w[5] == key:
            rows.append((w[1], w[3], int(w[4]) == os.getpid(), w[6], w[7]))
print("proc locks", sorted(rows))
os.close(a)
os.close(b)

# SQLite from several processes at once: every row arrives.
db = d + "/db"
con = sqlite3.connect(db)
con.execute("create table t(k, v)")
con.commit()
con.close()
kids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        c = sqlite3.connect(db, timeout=60, isolation_level=None)
        for i in range(25):
            # The count and the insert in one write transaction: each row's number once.
            c.execute("begin immediate")
            n = c.execute("select count(*) from t").fetchone()[0]
            c.execute("insert into t values (?, ?)", (k, n))
            c.execute("commit")
        os._exit(0)
    kids.append(pid)
print("sqlite workers", [wait(p) for p in kids])
c = sqlite3.connect(db)
print("sqlite rows", c.execute("select count(*), count(distinct v) from t").fetchone(),
      c.execute("pragma integrity_check").fetchone())
"#;

/// Robust process-shared mutexes (glibc through ctypes) whose owner ends holding them — a
/// process exiting, exec'ing or killed, a thread exiting — as the next locker and a
/// blocked waiter see it; `get_robust_list` and a bad `set_robust_list`.
const ROBUST_PY: &str = r#"
import ctypes, errno, mmap, os, threading, time

libc = ctypes.CDLL(None, use_errno=True)

class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

def deadline(s):
    t = time.clock_gettime(time.CLOCK_REALTIME) + s
    return Timespec(int(t), int((t % 1) * 1e9))

def name(r):
    return errno.errorcode.get(r, str(r))

shm = mmap.mmap(-1, 4096)
buf = (ctypes.c_char * 4096).from_buffer(shm)
m = ctypes.c_void_p(ctypes.addressof(buf))
attr = ctypes.create_string_buffer(16)
libc.pthread_mutexattr_init(attr)
libc.pthread_mutexattr_setpshared(attr, 1)
libc.pthread_mutexattr_setrobust(attr, 1)
libc.pthread_mutex_init(m, attr)

def lock(s=5):
    d = deadline(s)
    return name(libc.pthread_mutex_timedlock(m, ctypes.byref(d)))

# A process that ends holding it: the next lock says the owner died.
pid = os.fork()
if pid == 0:
    libc.pthread_mutex_lock(m)
    os._exit(0)
os.waitpid(pid, 0)
print("after its owner process ended:", lock())
print("made consistent:", libc.pthread_mutex_consistent(m), libc.pthread_mutex_unlock(m))
print("then:", lock(), libc.pthread_mutex_unlock(m))

# A waiter blocked when the owner ends is woken with EOWNERDEAD.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    libc.pthread_mutex_lock(m)
    os.write(w, b"x")
    time.sleep(0.3)
    os._exit(0)
os.read(r, 1)
t0 = time.monotonic()
print("a waiter:", lock(), time.monotonic() - t0 >= 0.2)
libc.pthread_mutex_consistent(m)
libc.pthread_mutex_unlock(m)
os.waitpid(pid, 0)

# A thread of this process that ends holding it.
t = threading.Thread(target=lambda: libc.pthread_mutex_lock(m))
t.start()
t.join()
print("after its owner thread ended:", lock())
libc.pthread_mutex_consistent(m)
libc.pthread_mutex_unlock(m)

# A process that execs holding it.
pid = os.fork()
if pid == 0:
    libc.pthread_mutex_lock(m)
    os.execv("/bin/true", ["true"])
os.waitpid(pid, 0)
print("after its owner process exec'd:", lock())
libc.pthread_mutex_consistent(m)
libc.pthread_mutex_unlock(m)

# A process killed holding it.
pid = os.fork()
if pid == 0:
    libc.pthread_mutex_lock(m)
    os.write(w, b"y")
    time.sleep(100)
    os._exit(0)
os.read(r, 1)
os.kill(pid, 9)
os.waitpid(pid, 0)
print("after its owner was killed:", lock())

# get_robust_list of this thread: its head, 24 bytes.
head = ctypes.c_void_p()
ln = ctypes.c_size_t()
rc = libc.syscall(274, 0, ctypes.byref(head), ctypes.byref(ln))
print("get_robust_list:", rc, head.value is not None and head.value != 0, ln.value)
print("set_robust_list of a bad length:", libc.syscall(273, head, 8), name(ctypes.get_errno()))
"#;

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn advisory_locks_act_as_natively() {
    python_same_as_native(PVMUX, "locks", LOCKS_PY);
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn robust_mutexes_of_an_ended_owner_say_so_as_natively() {
    python_same_as_native(PVMUX, "robust", ROBUST_PY);
}
