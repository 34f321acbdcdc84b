//! The software people run, from the host's own Debian userland (`pvmux run --rootfs /`):
//! one test per family — bash, coreutils, findutils, grep/sed/awk, tar+gzip+xz, python3,
//! perl, gcc+make, git, the sqlite3 shell, a Go program (shfmt), Java, Node.js, a
//! PostgreSQL server, APT — each a script run in a guest and natively, with stdout and exit
//! status compared.
//!
//! Both runs get the same environment (`PATH`, `HOME`, `LC_ALL=C`, `TZ=UTC`, fixed git
//! identities and dates) and a fresh working directory `$WORK`: `/tmp/work` in the guest
//! (guest memory), a temporary directory natively. Scripts print only what does not depend on
//! where they run (no absolute paths, pids, times or hostnames), so any difference is a
//! difference of the guest kernel. A family whose tools the host lacks is ignored with the
//! package to install (`tests/build/optional_tools.rs`).

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest one run may take: every program and library is read through the host share, and
/// CI's 2-core machine runs several tests at once.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The working directory in the guest.
const GUEST_WORK: &str = "/tmp/work";
/// The environment of both runs (besides `WORK` and `HOME`).
const ENV: [(&str, &str); 10] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
    ("LC_ALL", "C"),
    ("TZ", "UTC"),
    ("GIT_AUTHOR_NAME", "Pvmux Test"),
    ("GIT_AUTHOR_EMAIL", "test@pvmux.invalid"),
    ("GIT_COMMITTER_NAME", "Pvmux Test"),
    ("GIT_COMMITTER_EMAIL", "test@pvmux.invalid"),
    ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
    ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// Runs `cmd` (its environment already cleared and set) with null stdin, killing it after
/// [`TIMEOUT`].
fn run(cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

/// Runs `script` with `/bin/bash` natively and in a guest (2 vCPUs), in a fresh `$WORK`
/// (also `$HOME`), and asserts the same stdout and exit status. Returns the guest run.
fn same_as_native(name: &str, script: &str) -> Run {
    let work = TempDir::unique("pvmux-software", name);
    let full = format!("set -e\nmkdir -p \"$WORK\"\ncd \"$WORK\"\n{script}");

    let mut native = Command::new("/bin/bash");
    native.env_clear().args(["-c", &full]);
    native.current_dir(&work.0);
    for (k, v) in ENV {
        native.env(k, v);
    }
    let wd = work.0.to_str().expect("utf-8 temp path");
    native.env("WORK", wd).env("HOME", wd);
    let native = run(native);

    let mut guest = Command::new(PVMUX);
    guest
        .env_clear()
        .args(["run", "--rootfs", "/", "--vcpus", "2", "--mem", "1G"]);
    for (k, v) in ENV {
        guest.arg("--env").arg(format!("{k}={v}"));
    }
    guest.arg("--env").arg(format!("WORK={GUEST_WORK}"));
    guest.arg("--env").arg(format!("HOME={GUEST_WORK}"));
    guest.args(["--", "/bin/bash", "-c", &full]);
    let guest = run(guest);

    assert_eq!(
        native.code(),
        Some(0),
        "{name}: the native run failed\n{}",
        native.context()
    );
    assert_eq!(
        guest.stdout,
        native.stdout,
        "{name}: guest and native differ\nguest:\n{}\nnative stderr:\n{}",
        guest.context(),
        native.stderr
    );
    assert_eq!(
        guest.code(),
        native.code(),
        "{name}: exit status differs\n{}",
        guest.context()
    );
    guest
}

#[test]
fn bash_scripts_pipelines_substitution_and_jobs() {
    same_as_native(
        "bash",
        r#"
f() { local x=$1; echo "f($x) = $((x * x + 1))"; }
for i in 1 2 3; do f "$i"; done
arr=(zeta alpha "with space" beta)
printf '%s\n' "${arr[@]}" | sort | tr a-z A-Z
declare -A assoc=([one]=1 [two]=2)
echo "assoc: ${assoc[one]} ${assoc[two]} ${#assoc[@]}"
echo "substitution: $(echo inner | rev) ${#arr[@]}"
cat <<EOF | wc -l
line one
line two
EOF
seq 1 1000 | paste -sd+ | bc 2>/dev/null || seq 1 1000 | awk '{s+=$1} END {print s}'
diff <(printf 'a\nb\n') <(printf 'a\nc\n') || echo "diff said: $?"
while read -r w; do echo "read: $w"; done < <(printf 'x\ny\n')
( exit 3 ) || echo "subshell exit: $?"
sleep 0.2 & pid=$!
wait "$pid"; echo "waited: $?"
sleep 5 & victim=$!
kill -TERM "$victim"; wait "$victim" || echo "killed job status: $?"
trap 'echo got USR1' USR1
kill -USR1 $$
{ echo to-stderr >&2; echo to-stdout; } 2>/dev/null
set +e; false; echo "false: $?"; set -e
echo done
"#,
    );
}

#[test]
fn coreutils() {
    same_as_native(
        "coreutils",
        r#"
printf 'pear\napple\nfig\napple\n' > fruit
sort fruit | uniq -c | sort -rn | head -2
wc -l < fruit; wc -c < fruit
cut -c1-3 fruit | tr '\n' ' '; echo
seq 5 | tac | head -3 | tail -1
mkdir -p a/b/c && touch a/b/c/f && cp -r a copy && mv copy moved && ls -R moved
ln -s fruit link && readlink link && cat link | md5sum
stat -c '%s %F' fruit link; stat -c %F moved
dd if=/dev/zero bs=1k count=64 2>/dev/null | sha256sum
head -c 1000 /dev/zero | base64 | head -2
printf 'abc' | od -An -tx1
date -u -d @0 '+%Y-%m-%d %H:%M:%S'
touch -d '2001-02-03 04:05:06 UTC' old && date -u -r old '+%F %T'
basename /x/y/z.txt .txt; dirname /x/y/z.txt
realpath -m moved/../fruit --relative-to=.
expr 6 \* 7; test -d moved && echo is-dir
env -i FOO=bar env
rm -r moved a && ls
truncate -s 10000 sparse && stat -c %s sparse
split -b 3 fruit part- && ls part-* | wc -l && cat part-* | cmp - fruit && echo split-ok
nproc >/dev/null && echo nproc-ok
"#,
    );
}

#[test]
fn findutils() {
    same_as_native(
        "findutils",
        r#"
mkdir -p t/one/two t/three
for f in t/a.txt t/one/b.txt t/one/two/c.log t/three/d.txt; do echo "$f" > "$f"; done
head -c 5000 /dev/zero > t/one/big.bin
touch -d '2001-01-01 00:00:00 UTC' t/a.txt t/three/d.txt
find t -type f | sort
find t -name '*.txt' -newer t/a.txt -o -name '*.log' | sort
find t -type f -size +4k
find t -type d | sort | xargs -n1 basename
find t -name '*.txt' -print0 | sort -z | xargs -0 cat
find t -type f -exec wc -c {} + | sort | tail -1
find t -maxdepth 1 -mindepth 1 | sort
"#,
    );
}

#[test]
fn grep_sed_awk() {
    same_as_native(
        "text",
        r#"
for i in $(seq 1 200); do echo "row $i value $((i * 7 % 13)) name$((i % 5))"; done > data
grep -c 'value 3 ' data
grep -E 'name(1|4)$' data | head -3
grep -n -m2 'row 1[0-9] ' data
mkdir -p dir/sub && cp data dir/sub/x && grep -rl 'row 77' dir
sed -n '5,7p' data
sed 's/value \([0-9]*\)/v=\1/; s/name/n/' data | tail -2
cp data edit && sed -i '/row 1[0-9]* /d' edit && wc -l < edit
awk '{s += $4; n++} END {printf "%d %d %.3f\n", s, n, s / n}' data
awk -F' ' '$4 > 10 {c[$5]++} END {for (k in c) print k, c[k]}' data | sort
echo "a,b,c" | awk -F, -v OFS=: '{$1 = $1; print}'
"#,
    );
}

#[test]
fn tar_gzip_xz() {
    same_as_native(
        "archives",
        r#"
mkdir -p src/deep
seq 1 20000 > src/numbers
printf 'hello\n' > src/deep/hello
head -c 100000 /dev/zero > src/zeros
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf all.tar src
tar -tvf all.tar | awk '{print $1, $3, $6}'
gzip -9 -n -k all.tar && gzip -l all.tar.gz | tail -1 | awk '{print $2}'
xz -k -T1 all.tar && xz -l all.tar.xz | tail -1 | awk '{print $5, $6}'
mkdir out && tar -xzf all.tar.gz -C out && diff -r src out/src && echo gz-same
mkdir out2 && tar -xJf all.tar.xz -C out2 && diff -r src out2/src && echo xz-same
tar -czf - src | tar -tzf - | sort
md5sum all.tar | cut -d' ' -f1
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn python3_script() {
    same_as_native(
        "python3",
        r#"
cat > script.py <<'EOF'
import hashlib, json, multiprocessing, socket, sqlite3, subprocess, sys, threading

def square(x):
    return x * x

def main():
    data = {"name": "pvmux", "values": list(range(10)), "nested": {"ok": True}}
    text = json.dumps(data, sort_keys=True)
    print("json", json.loads(text) == data, len(text))
    print("sha256", hashlib.sha256(text.encode()).hexdigest()[:16])

    db = sqlite3.connect("test.db")
    db.execute("create table t (k integer primary key, v text)")
    db.executemany("insert into t (v) values (?)", [(f"row{i}",) for i in range(100)])
    db.commit()
    print("sqlite", db.execute("select count(*), min(v), max(k) from t").fetchone())
    db.close()

    results = []
    lock = threading.Lock()
    def work(n):
        s = sum(range(n))
        with lock:
            results.append(s)
    threads = [threading.Thread(target=work, args=(i * 1000,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("threads", sorted(results)[-1], len(results))

    with multiprocessing.Pool(2) as pool:
        print("pool", pool.map(square, range(10)))

    out = subprocess.run(["sh", "-c", "echo from child; exit 4"], capture_output=True, text=True)
    print("subprocess", out.stdout.strip(), out.returncode)

    a, b = socket.socketpair()
    a.sendall(b"ping" * 1000)
    got = b""
    while len(got) < 4000:
        got += b.recv(65536)
    print("socketpair", len(got), got[:8])

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    cli.sendall(b"hello over tcp")
    print("tcp", conn.recv(100))
    for s in (cli, conn, srv, a, b):
        s.close()

if __name__ == "__main__":
    main()
    sys.exit(0)
EOF
/usr/bin/python3 script.py
"#,
    );
}

#[test]
#[cfg_attr(not(have_perl), ignore = "needs /usr/bin/perl: apt-get install perl")]
fn perl_script() {
    same_as_native(
        "perl",
        r#"
cat > s.pl <<'EOF'
use strict; use warnings; use Digest::MD5 qw(md5_hex); use POSIX qw(floor);
my %count;
$count{$_ % 7}++ for 1 .. 1000;
print join(",", map { "$_=$count{$_}" } sort keys %count), "\n";
my $s = "The quick brown fox jumps over the lazy dog";
my @w = ($s =~ /\b(\w{5})\b/g);
print "five: @w\n", md5_hex($s), "\n", floor(7.9), "\n";
open(my $fh, ">", "out.txt") or die; print $fh "line $_\n" for 1 .. 3; close $fh;
open($fh, "<", "out.txt") or die; my @l = <$fh>; close $fh;
printf "%d lines, last: %s", scalar @l, $l[-1];
my $pid = fork(); if ($pid == 0) { exit 7 } waitpid($pid, 0); print "child: ", $? >> 8, "\n";
print "sorted: @{[sort { $b <=> $a } (3, 11, 2)]}\n";
EOF
/usr/bin/perl s.pl
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_make),
    ignore = "needs make (with gcc): apt-get install make gcc"
)]
fn gcc_and_make_build_and_run() {
    same_as_native(
        "gcc",
        r#"
cat > util.c <<'EOF'
int triple(int x) { return 3 * x; }
EOF
cat > main.c <<'EOF'
#include <stdio.h>
int triple(int);
int main(void) { for (int i = 1; i <= 3; i++) printf("triple(%d) = %d\n", i, triple(i)); return 0; }
EOF
printf 'prog: main.o util.o\n\tgcc -o $@ $^\n%%.o: %%.c\n\tgcc -O2 -c $<\n' > Makefile
make -s
./prog
make -s && echo up-to-date
gcc -static -O2 -o prog-static main.c util.c && ./prog-static | tail -1
"#,
    );
}

#[test]
#[cfg_attr(not(have_git), ignore = "needs git: apt-get install git")]
fn git_init_add_commit_log() {
    same_as_native(
        "git",
        r#"
git init -q -b main repo
cd repo
echo one > a.txt
git add a.txt && git commit -q -m first
echo two >> a.txt && mkdir d && echo x > d/x
git add -A && git commit -q -m second
git log --format='%H %an %s'
git show --stat --format=%s HEAD | tail -3
git diff HEAD~1 --numstat
git status --porcelain | wc -l
git fsck --no-progress 2>&1 | wc -l
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_sqlite3),
    ignore = "needs the sqlite3 shell: apt-get install sqlite3"
)]
fn sqlite3_shell() {
    same_as_native(
        "sqlite3",
        r#"
sqlite3 test.db <<'EOF'
create table people (id integer primary key, name text, age integer);
insert into people (name, age) values ('ada', 36), ('alan', 41), ('grace', 85);
create index by_age on people (age);
.mode csv
select name, age from people where age > 40 order by age;
select count(*), sum(age), avg(age) from people;
EOF
sqlite3 test.db 'pragma integrity_check;' 'select group_concat(name, "+") from people;'
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_shfmt),
    ignore = "needs shfmt (a Go program): apt-get install shfmt"
)]
fn go_program_shfmt() {
    same_as_native(
        "shfmt",
        r#"
printf 'if [ 1 ];then\necho   hi;fi\nfor x in a b;do echo $x;done\n' > in.sh
shfmt in.sh
shfmt -i 2 -ci in.sh | md5sum
shfmt -l in.sh || true
shfmt -d in.sh > /dev/null || echo "diff status $?"
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_java),
    ignore = "needs a JDK (java, javac): apt-get install openjdk-17-jdk-headless"
)]
fn java_program() {
    // The JVM: `/usr/bin/java` reached through `/etc/alternatives` (its libraries found by
    // `$ORIGIN`, which `/proc/self/exe` gives), a JIT, a thread pool and parallel streams,
    // garbage collection, null checks and bounds checks taken as signals, and a child
    // process started through `jspawnhelper`.
    same_as_native(
        "java",
        r##"
cat > Work.java <<'JAVA'
import java.util.*;
import java.util.concurrent.*;
import java.util.stream.*;
public class Work {
  public static void main(String[] a) throws Exception {
    ExecutorService ex = Executors.newFixedThreadPool(4);
    List<Future<Long>> fs = new ArrayList<>();
    for (int t = 0; t < 8; t++) {
      final int k = t;
      fs.add(ex.submit(() -> { long s = 0; for (int i = 0; i < 2_000_000; i++) s += (i ^ k) % 7; return s; }));
    }
    long tot = 0;
    for (Future<Long> f : fs) tot += f.get();
    ex.shutdown();
    System.out.println("sum " + tot);
    List<int[]> junk = new ArrayList<>();
    for (int i = 0; i < 2000; i++) { junk.add(new int[10000]); if (junk.size() > 50) junk.remove(0); }
    System.out.println("kept " + junk.size());
    Map<String, Integer> m = new TreeMap<>();
    for (String w : "the quick brown fox jumps over the lazy dog the end".split(" ")) m.merge(w, 1, Integer::sum);
    System.out.println(m);
    System.out.println(IntStream.range(0, 1000).parallel().map(x -> x * x).sum());
    try { Object o = null; o.toString(); } catch (NullPointerException e) { System.out.println("null caught"); }
    try { int[] z = new int[1]; z[2] = 1; } catch (ArrayIndexOutOfBoundsException e) { System.out.println("bounds caught"); }
    Process p = new ProcessBuilder("/bin/sh", "-c", "echo child; exit 3").redirectErrorStream(true).start();
    System.out.print(new String(p.getInputStream().readAllBytes()));
    System.out.println("exit " + p.waitFor());
  }
}
JAVA
java Work.java
"##,
    );
}

#[test]
#[cfg_attr(not(have_node), ignore = "needs Node.js: apt-get install nodejs")]
fn node_script() {
    // Node.js: libuv's event loop (epoll, timers), a worker thread, a child process, crypto,
    // files, an HTTP server and client on the loopback, and the loopback device as
    // `os.networkInterfaces()` lists it (getifaddrs over netlink; it threw before).
    same_as_native(
        "node",
        r##"
cat > work.js <<'JS'
const fs = require('fs'), cp = require('child_process'), crypto = require('crypto'), http = require('http');
const { Worker } = require('worker_threads');
fs.writeFileSync('lines.txt', 'a\nb\nc\n');
console.log('lines', fs.readFileSync('lines.txt', 'utf8').split('\n').length);
console.log('sha', crypto.createHash('sha256').update('pvmux').digest('hex'));
console.log('child', cp.execFileSync('/bin/sh', ['-c', 'echo hi']).toString().trim());
console.log('lo', JSON.stringify(require('os').networkInterfaces().lo));
const w = new Worker('const {parentPort}=require("worker_threads"); let s=0; for(let i=0;i<1e6;i++) s+=i%3; parentPort.postMessage(s);', { eval: true });
w.on('message', (m) => {
  console.log('worker', m);
  const srv = http.createServer((q, r) => r.end('pong ' + q.url)).listen(0, '127.0.0.1', () => {
    http.get({ host: '127.0.0.1', port: srv.address().port, path: '/x' }, (r) => {
      let b = '';
      r.on('data', (d) => b += d);
      r.on('end', () => { console.log('http', b); srv.close(); setTimeout(() => console.log('timer'), 20); });
    });
  });
});
JS
node work.js
"##,
    );
}

#[test]
#[cfg_attr(
    not(have_postgres),
    ignore = "needs PostgreSQL 15: apt-get install postgresql-15"
)]
fn postgresql_server_and_queries() {
    // A database server: initdb, the postmaster and its backends (fork, System V and POSIX
    // shared memory, semaphores in shared memory, signals), queries over its Unix socket, a
    // rolled-back transaction, an index, a clean shutdown. PostgreSQL refuses to run as
    // root: it runs as `postgres` (setpriv), natively and in the guest alike.
    let g = same_as_native(
        "postgres",
        r##"
B=/usr/lib/postgresql/15/bin
mkdir pg
chown postgres:postgres pg
pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
pg $B/initdb -D pg/data -A trust -U postgres > pg/initdb.log 2>&1 || cat pg/initdb.log
pg $B/pg_ctl -D pg/data -l pg/server.log -o "-k $WORK/pg -c listen_addresses=''" -w start > /dev/null
q() { pg $B/psql -X -h "$WORK/pg" -U postgres -d postgres -Atc "$1"; }
q "create table t(a int, b text); insert into t select g, md5(g::text) from generate_series(1, 2000) g"
q "select count(*), sum(a), min(b) from t"
q "create index on t(b); select a from t where b = md5('1234')"
q "begin; update t set a = a + 1; rollback; select sum(a) from t"
q "select count(*) from pg_stat_activity where backend_type = 'client backend'"
pg $B/pg_ctl -D pg/data -m fast -w stop > /dev/null
echo "stopped $?"
"##,
    );
    // The queries' answers (both runs printed the same): 2,000 rows summing to 2,001,000,
    // the row the index finds, the sum after the rollback, one client.
    assert!(
        g.stdout.contains("\n2000|2001000|")
            && g.stdout.contains("\nCREATE INDEX\n1234\n")
            && g.stdout.ends_with("\nROLLBACK\n2001000\n1\nstopped 0\n"),
        "{}",
        g.context()
    );
}

#[test]
#[cfg_attr(
    not(all(have_root, have_user_nobody)),
    ignore = "needs to run as root, and a user nobody"
)]
fn su_and_runuser_switch_users_through_pam() {
    // PAM's stacks (pam_rootok, pam_limits, pam_unix, pam_keyinit, libpam's audit log, which
    // finds no audit socket in the guest) and the user switch that follows.
    same_as_native(
        "su",
        r#"
runuser -u nobody -- id -un
su -s /bin/sh nobody -c 'id -un; id -u'
runuser -u nobody -- sh -c 'ulimit -n'
"#,
    );
}

#[test]
fn apt_updates_and_resolves_from_a_local_repository() {
    // A repository of 300 packages in `$WORK` (nothing of the host's APT state is read or
    // written): `apt-get update` through the `file:` method (its worker processes, their
    // pipes, the unprivileged `_apt` sandbox user), the package cache built in memory and
    // grown 64 KiB at a time with `mremap` (it was `EFAULT` at the second grow: "Dynamic MMap
    // ran out of room"), a simulated install with dependencies, `apt-cache` queries.
    same_as_native(
        "apt",
        r#"
mkdir -p repo lists/partial cache/archives/partial etc/parts
for i in $(seq 1 300); do
  printf 'Package: pkg%s\nVersion: 1.%s\nArchitecture: all\nMaintainer: T <t@t.invalid>\nDepends: lib%s (>= 1.0)\nFilename: ./pkg%s.deb\nSize: 100\nDescription: test package %s\n\n' $i $i $((i % 7)) $i $i
done > repo/Packages
for i in $(seq 0 6); do
  printf 'Package: lib%s\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@t.invalid>\nFilename: ./lib%s.deb\nSize: 100\nDescription: lib %s\n\n' $i $i $i
done >> repo/Packages
xz -k repo/Packages
: > status
echo "deb [trusted=yes] file:$WORK/repo ./" > etc/sources.list
O="-o Dir::State::Lists=$WORK/lists -o Dir::State::status=$WORK/status -o Dir::Cache=$WORK/cache
   -o Dir::Etc::SourceList=$WORK/etc/sources.list -o Dir::Etc::SourceParts=$WORK/etc/parts
   -o Dir::Etc::Preferences=$WORK/etc/preferences -o Dir::Etc::PreferencesParts=$WORK/etc/parts
   -o APT::Cache-Start=65536 -o APT::Cache-Grow=65536 -o Debug::NoLocking=1"
apt-get $O -q update | sed "s|$WORK|WORK|g"
apt-get $O -s install pkg17 pkg42
apt-cache $O depends pkg5
apt-cache $O search 'test package 29' | sort
apt-cache $O policy pkg300 | sed "s|$WORK|WORK|g"
"#,
    );
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn network_devices_and_sockets_as_ip_ss_and_python_list_them() {
    // The loopback device through netlink (iproute2's `ip`, glibc's `if_nameindex`) and the
    // interface ioctls (`if_nametoindex`, `SIOCGIFADDR`): before, netlink sockets were
    // EAFNOSUPPORT ("Cannot open netlink socket") and the ioctls ENOTTY. Then the script's
    // own sockets in /proc/net/{tcp,udp,tcp6} (found by their fstat inodes: states, an
    // unread queue) and in `ss` (which reads /proc/net/tcp in the guest, netlink natively),
    // and /proc/net/{dev,if_inet6,route}; none of those files existed. Only `lo` and the
    // script's sockets are compared: the host has other devices and sockets.
    same_as_native(
        "netdev",
        r#"
ip -br addr show lo
ip -br link show lo
ip link show lo
ip addr show dev lo | grep -E "inet|link/"
ip -4 -o addr show lo | awk '{print $2, $4}'
python3 - <<'PY'
import fcntl, socket, struct
print([n for n in socket.if_nameindex() if n[1] == "lo"], socket.if_nametoindex("lo"), socket.if_indextoname(1))
s = socket.socket()
r = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"lo"))
print("SIOCGIFADDR", socket.inet_ntoa(r[20:24]))
try:
    socket.if_nametoindex("nonexistent0")
except OSError as e:
    print("nonexistent0:", e)
PY
python3 - <<'PY'
import os, socket, subprocess
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(5)
port = l.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port)); a, _ = l.accept()
c.sendall(b"abc")
while len(a.recv(3, socket.MSG_PEEK)) < 3:  # arrived (left unread)
    pass
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
l6 = socket.socket(socket.AF_INET6); l6.bind(("::1", 0)); l6.listen(1)
ports = (port, u.getsockname()[1], l6.getsockname()[1])
mine = {os.fstat(s.fileno()).st_ino: n for n, s in [("listener", l), ("client", c), ("accepted", a), ("udp", u), ("listener6", l6)]}
for name in ["tcp", "udp", "tcp6"]:
    with open("/proc/net/" + name) as f:
        lines = f.read().splitlines()
    print(name, lines[0].split()[:3])
    # (Sorted: Linux lists sockets in its hash tables' order.)
    for r in sorted((l.split() for l in lines[1:]), key=lambda r: mine.get(int(r[9]), "")):
        if int(r[9]) in mine:
            print(" ", mine[int(r[9])], "state", r[3], "queues", r[4], "uid", r[7],
                  "local port is ours", int(r[1].split(":")[1], 16) in ports)
out = subprocess.run(["ss", "-Htln", "sport", "=", ":%d" % port], capture_output=True, text=True).stdout.split()
print("ss:", out[0], out[3].replace(str(port), "PORT"))
PY
grep -c "^ *lo:" /proc/net/dev
grep " lo$" /proc/net/if_inet6
head -1 /proc/net/route | cut -f1-4
"#,
    );
}
