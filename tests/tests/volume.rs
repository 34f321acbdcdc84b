//! Writable volumes (`pvmux run -v/--volume HOSTDIR:GUESTDIR[:ro|rw]`), end to end: a bash
//! script from the host's root writes, renames and removes files and directories in a volume
//! and reads host-prepared files, and the same script run natively on another directory must
//! leave the same tree and print the same; a `:ro` volume refuses every change with the
//! error text the native program prints for EROFS; symbolic links (made by the guest or on
//! the host) never lead out of the volume; FIFOs and device nodes cannot be made, set-id bits
//! do not reach the host; bad `--volume` values are clear CLI errors; and a hostile kernel's
//! malformed `VolumeOp` requests are refused while the host survives and nothing outside the
//! volume changes. A file volume (`-v HOSTFILE:GUESTFILE`) behaves as a native bind mount
//! of the file does: reads and writes reach the host file, `:ro` refuses changes, and the
//! mount point cannot be removed, renamed or hard-linked elsewhere.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pvmux_host::volume::Volume;
use pvmux_host::{TenantConfig, TenantOutcome};
use pvmux_tests::{host, kernel, Capture, TempDir};

/// The `pvmux` CLI built with this test crate.
fn pvmux_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pvmux-cli"))
}

fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn context(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `pvmux run --rootfs ROOT FLAGS -- PROGRAM...` with a clean environment.
fn guest(root: &str, flags: &[&str], program: &[&str]) -> Output {
    let mut cmd = Command::new(pvmux_bin());
    cmd.env_clear()
        .env("LC_ALL", "C")
        .args(["run", "--rootfs", root])
        .args(flags)
        .arg("--")
        .args(program);
    output(cmd)
}

/// `bash -c SCRIPT` natively with `DATA=data` and the C locale.
fn native_bash(script: &str, data: &Path) -> Output {
    let mut cmd = Command::new("/bin/bash");
    cmd.env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin")
        .env("DATA", data)
        .args(["-c", script]);
    output(cmd)
}

/// The same script in a guest with the volume at `/data`.
fn guest_bash(script: &str, vol: &Path, mode: &str) -> Output {
    let spec = format!("{}:/data{mode}", vol.display());
    guest(
        "/",
        &["-v", &spec, "--env", "DATA=/data", "--env", "LC_ALL=C"],
        &["/bin/bash", "-c", script],
    )
}

/// What a tree holds, for comparing two trees: relative path → (kind, permission bits,
/// contents or link target). Directory sizes and times are left out (filesystem details).
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let perm = m.permissions().mode() & 0o7777;
            let v = if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                ('l', 0, t.into_os_string().into_encoded_bytes())
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', perm, Vec::new())
            } else if m.is_file() {
                ('f', perm, std::fs::read(&p).expect("read"))
            } else {
                ('?', perm, Vec::new())
            };
            out.insert(rel, v);
        }
    }
    out
}

/// The host-prepared part of a volume: a file, a nested file, an empty directory.
fn prepare(dir: &Path) {
    std::fs::create_dir_all(dir.join("pre/sub")).expect("mkdir");
    std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
    std::fs::write(dir.join("pre/hello.txt"), b"hello from the host\n").expect("write");
    std::fs::write(
        dir.join("pre/sub/data.bin"),
        (0..=255u8).cycle().take(300_000).collect::<Vec<_>>(),
    )
    .expect("write");
    std::fs::set_permissions(dir.join("pre/hello.txt"), PermissionsExt::from_mode(0o640))
        .expect("chmod");
}

/// The script both runs execute: every operation a volume serves.
const SCRIPT: &str = r#"set -e
umask 022
cd "$DATA"
cat pre/hello.txt
cksum < pre/sub/data.bin
echo one > a.txt
echo two >> a.txt
printf 'x%.0s' $(seq 1 5000) > big.txt
head -c 70000 pre/sub/data.bin > copy.bin
mkdir -p d1/d2/d3
echo deep > d1/d2/d3/f
mv a.txt d1/moved.txt
mv d1/d2 d1/renamed
rm d1/renamed/d3/f
rmdir d1/renamed/d3
mkdir gone && rmdir gone
touch -d @1000000000 . && stat -c 'root %Y' .
touch t && rm t
ln -s moved.txt d1/link
readlink d1/link
cat d1/link
chmod 600 d1/moved.txt
chmod 751 d1
truncate -s 3 big.txt
truncate -s 10000 copy.bin
mkdir -m 700 private
echo replaced > r1 && echo old > r2 && mv -f r1 r2
exec 3> open-unlinked && echo kept >&3 && rm open-unlinked && exec 3>&-
: > empty/new
rm -rf empty
sync
ls -1 . d1 | cat
stat -c '%n %A %s' big.txt copy.bin d1/moved.txt r2 | sort
stat -c '%n %A' d1 private | sort
find . | sort
rm -v pre/hello.txt
cat pre/hello.txt 2>&1 || echo "status $?"
mkfifo fifo 2>&1 || echo "mkfifo status $?"
"#;

#[test]
fn guest_changes_reach_the_host_like_native_ones() {
    let t = TempDir::unique("pvmux-volume", "rw");
    let (gv, nv) = (t.0.join("guest"), t.0.join("native"));
    prepare(&gv);
    prepare(&nv);
    let native = native_bash(SCRIPT, &nv);
    let g = guest_bash(SCRIPT, &gv, "");
    // mkfifo is refused in a volume; natively it works: only that line may differ.
    assert_eq!(
        native.status.code(),
        Some(0),
        "native: {}",
        context(&native)
    );
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(&g));
    let strip = |s: String| -> String {
        s.lines()
            .filter(|l| !l.contains("mkfifo"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        strip(text(&g.stdout)),
        strip(text(&native.stdout)),
        "guest: {}",
        context(&g)
    );
    assert!(
        text(&g.stdout).contains("mkfifo: cannot create fifo 'fifo': Operation not permitted"),
        "{}",
        context(&g)
    );
    let (mut gs, mut ns) = (snapshot(&gv), snapshot(&nv));
    ns.remove("fifo");
    assert_eq!(gs.remove("fifo"), None, "no FIFO on the host");
    assert_eq!(gs, ns, "the guest's volume and the native tree differ");
    assert_eq!(
        std::fs::read(gv.join("d1/moved.txt")).unwrap(),
        b"one\ntwo\n",
        "the bytes are on the host"
    );
}

#[test]
fn a_read_only_volume_refuses_every_change_with_erofs() {
    let t = TempDir::unique("pvmux-volume", "ro");
    prepare(&t.0);
    let before = snapshot(&t.0);
    // Each command fails; bash and coreutils print the errno's text.
    let script = r#"cd "$DATA"
cat pre/hello.txt
echo x > new
echo x >> pre/hello.txt
touch pre/hello.txt
mkdir d
rm pre/hello.txt
rmdir empty
mv pre/hello.txt moved
chmod 777 pre/hello.txt
ln -s a b
truncate -s 0 pre/hello.txt
exit 0
"#;
    let o = guest_bash(script, &t.0, ":ro");
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    assert_eq!(text(&o.stdout), "hello from the host\n", "{}", context(&o));
    // The host C library's text for EROFS (30), as a native program prints it.
    let erofs = std::io::Error::from_raw_os_error(30).to_string();
    let erofs = erofs.split(" (os error").next().unwrap().to_owned();
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 10, "one error per change:\n{err}");
    for l in lines {
        assert!(l.ends_with(&format!(": {erofs}")), "not EROFS: {l}\n{err}");
    }
    assert_eq!(snapshot(&t.0), before, "the host tree is unchanged");
}

/// A root for the guest with only the host's static busybox in it, so the guest's
/// namespace holds nothing from outside the volume.
fn busybox_root(t: &Path) -> PathBuf {
    let bb = std::fs::canonicalize("/bin/busybox").expect("the build found /bin/busybox");
    let root = t.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir root/bin");
    std::fs::copy(bb, root.join("bin/busybox")).expect("copy busybox into the root");
    root
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn symbolic_links_never_lead_out_of_the_volume() {
    let t = TempDir::unique("pvmux-volume", "links");
    let root = busybox_root(&t.0);
    let vol = t.0.join("vol");
    let outside = t.0.join("outside");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"TOP-SECRET\n").unwrap();
    let secret_abs = outside.join("secret");
    // Host-side links pointing out: absolute, relative, to a directory.
    std::os::unix::fs::symlink(&secret_abs, vol.join("abs")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", vol.join("rel")).unwrap();
    std::os::unix::fs::symlink("../outside", vol.join("dir")).unwrap();
    let before_outside = snapshot(&outside);
    let spec = format!("{}:/data", vol.display());
    let script = format!(
        "cd /data; ln -s / esc; ln -s ../../.. up; \
         for p in abs rel dir/secret esc{s} up{s} esc/outside/secret; do \
           cat $p 2>&1; done; \
         echo pwned > rel; echo pwned > dir/pwned; echo pwned > esc{s}; \
         ls /data; echo done",
        s = secret_abs.display()
    );
    let o = guest(
        root.to_str().unwrap(),
        &["-v", &spec],
        &["/bin/busybox", "sh", "-c", &script],
    );
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    let out = text(&o.stdout);
    assert!(out.ends_with("done\n"), "{}", context(&o));
    assert!(!out.contains("TOP-SECRET"), "read outside: {}", context(&o));
    assert_eq!(snapshot(&outside), before_outside, "the outside changed");
    // The guest's links are stored as given, and nothing else appeared in the volume.
    assert_eq!(std::fs::read_link(vol.join("esc")).unwrap(), Path::new("/"));
    let names: Vec<String> = snapshot(&vol).into_keys().collect();
    assert_eq!(names, ["abs", "dir", "esc", "rel", "up"], "{}", context(&o));
}

#[test]
fn special_files_and_set_id_bits_do_not_reach_the_host() {
    let t = TempDir::unique("pvmux-volume", "special");
    let script = r#"cd "$DATA"
mkfifo fifo
mknod blk b 8 0
mknod chr c 1 3
echo '#!/bin/sh' > suid && chmod 6755 suid && stat -c '%a' suid
mkdir -m 2775 sgid && stat -c '%a' sgid
exit 0
"#;
    let o = guest_bash(script, &t.0, "");
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    let err = text(&o.stderr);
    assert_eq!(
        err.matches("Operation not permitted").count(),
        3,
        "mkfifo and mknod fail with EPERM:\n{err}"
    );
    // The guest sees what the host has: the bits were cleared.
    assert_eq!(text(&o.stdout), "755\n775\n", "{}", context(&o));
    let names: Vec<String> = snapshot(&t.0).into_keys().collect();
    assert_eq!(names, ["sgid", "suid"]);
    for (name, mode) in [("suid", 0o755), ("sgid", 0o775)] {
        let m = std::fs::metadata(t.0.join(name)).unwrap().mode() & 0o7777;
        assert_eq!(m, mode, "{name}: set-id bits on the host");
    }
}

#[test]
fn bad_volume_values_are_clear_cli_errors() {
    let t = TempDir::unique("pvmux-volume", "cli");
    let d = t.0.to_str().unwrap().to_owned();
    for (value, needle) in [
        (format!("{d}:data"), "is not absolute"),
        (format!("{d}:/"), "cannot be /"),
        (format!("{d}:/a/../b"), "must not contain . or .."),
        (
            format!("{d}:/data:rx"),
            "invalid mode \"rx\": expected ro or rw",
        ),
        (format!("{d}:/data:ro:x"), "too many `:`"),
        (
            "/data".to_owned(),
            "needs a host directory and a guest path",
        ),
        (format!("{d}/missing:/data"), "No such file or directory"),
        (
            "/dev/null:/data".to_owned(),
            "neither a directory nor a regular file",
        ),
    ] {
        let o = guest("/", &["-v", &value], &["/bin/true"]);
        assert_eq!(o.status.code(), Some(125), "{value}: {}", context(&o));
        assert!(o.stdout.is_empty(), "{value}: nothing ran: {}", context(&o));
        assert!(
            text(&o.stderr).contains(needle),
            "{value}: expected {needle:?}: {}",
            context(&o)
        );
    }
    let o = guest(
        "/",
        &["-v", &format!("{d}:/x"), "--volume", &format!("{d}:/x/:ro")],
        &["/bin/true"],
    );
    assert_eq!(o.status.code(), Some(125), "{}", context(&o));
    assert!(
        text(&o.stderr).contains("duplicate mount point /x"),
        "{}",
        context(&o)
    );
    // `pvmux run --help` documents the flag.
    let mut help = Command::new(pvmux_bin());
    help.args(["run", "--help"]);
    let h = text(&output(help).stdout);
    assert!(h.contains("-v, --volume <HOSTDIR:GUESTDIR[:ro|rw]>"), "{h}");
    // A guest path the guest cannot make a directory: the program does not run.
    let o = guest(
        "/",
        &["-v", &format!("{d}:/etc/passwd/x")],
        &["/bin/echo", "ran"],
    );
    assert_eq!(o.status.code(), Some(126), "{}", context(&o));
    assert!(o.stdout.is_empty(), "{}", context(&o));
    assert!(
        text(&o.stderr).contains(
            "pvmux: volume \"/etc/passwd/x\" cannot be mounted in the guest: Not a directory"
        ),
        "{}",
        context(&o)
    );
}

#[test]
fn malformed_volume_requests_are_refused_and_the_host_survives() {
    let t = TempDir::unique("pvmux-volume", "hostile");
    let vol = t.0.join("vol");
    let outside = t.0.join("outside");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"unchanged\n").unwrap();
    std::os::unix::fs::symlink("../outside", vol.join("esc")).unwrap();
    std::os::unix::fs::symlink(outside.join("pwned"), vol.join("hostlink")).unwrap();
    let canary = outside.join("canary");
    let before = snapshot(&outside);
    let owners = || -> Vec<(u32, u32)> {
        [outside.clone(), outside.join("keep"), t.0.clone()]
            .iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(p).unwrap();
                (m.uid(), m.gid())
            })
            .collect()
    };
    let owners_before = owners();
    let console = Capture::default();
    let mut words =
        pvmux_hypercalls::bootargs::words::Words::parse("hostile=volume exit=0").expect("words");
    let canary_s = canary.to_str().unwrap().to_owned();
    words.options.canary = Some(&canary_s);
    let mut commands: Vec<_> = vec![pvmux_hypercalls::bootargs::Command::Volume(
        pvmux_hypercalls::bootargs::VolumeMount {
            id: 0,
            read_only: false,
            path: b"/data",
        },
    )];
    commands.extend(words.commands());
    let boot = pvmux_hypercalls::BootArgsBuf::new(&words.options, commands, words.argv())
        .expect("boot arguments");
    let mut cfg = TenantConfig::new(
        "volume-hostile",
        kernel(),
        64 << 20,
        2,
        boot,
        Box::new(console.clone()),
    );
    cfg.volumes = vec![Arc::new(Volume::open(&vol, false).expect("volume opens"))];
    let tenant = host().launch(cfg).expect("tenant launches");
    assert!(tenant.wait_started(Duration::from_secs(10)));
    let outcome = tenant.wait();
    let out = console.text();
    assert!(
        matches!(outcome, TenantOutcome::Exited(0)),
        "{outcome:?}\n{out}"
    );
    assert!(out.contains("hostile: volume CONTAINED"), "{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
    assert!(!canary.exists(), "the canary was created");
    assert_eq!(snapshot(&outside), before, "the outside changed");
    assert_eq!(owners(), owners_before, "an owner outside changed");
    // The host still serves volumes: a second tenant reads one.
    std::fs::write(vol.join("after"), b"still here\n").unwrap();
    let console = Capture::default();
    let mut cfg = TenantConfig::new(
        "volume-after",
        kernel(),
        64 << 20,
        1,
        {
            let v = pvmux_hypercalls::bootargs::Command::Volume(
                pvmux_hypercalls::bootargs::VolumeMount {
                    id: 0,
                    read_only: true,
                    path: b"/v",
                },
            );
            let c = pvmux_hypercalls::bootargs::Command::Cat("/v/after");
            pvmux_hypercalls::BootArgsBuf::new(&Default::default(), [v, c], [&b""[..]; 0])
                .expect("boot arguments")
        },
        Box::new(console.clone()),
    );
    cfg.volumes = vec![Arc::new(Volume::open(&vol, true).expect("volume opens"))];
    let tenant = host().launch(cfg).expect("tenant launches");
    let outcome = tenant.wait();
    assert!(matches!(outcome, TenantOutcome::Exited(0)), "{outcome:?}");
    assert!(console.text().contains("still here"), "{}", console.text());
}

/// git's object store (renames, `O_EXCL` lock files, fsync) and a python3 sqlite3 database
/// (journal, fsync, truncate) work in a volume as natively: same output, and the host's git
/// can read the repository the guest made.
#[test]
#[cfg_attr(not(have_git), ignore = "needs git: apt-get install git")]
#[cfg_attr(not(have_python3), ignore = "needs python3: apt-get install python3")]
fn git_and_sqlite_work_in_a_volume_as_natively() {
    let script = r#"set -e
export HOME="$DATA" GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t.invalid
export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t.invalid
export GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z
cd "$DATA"
git init -q -b main repo && cd repo
for i in 1 2 3; do echo "line $i" >> f; git add f; git commit -qm "commit $i"; done
git mv f g && git commit -qm rename
git log --oneline | cat
git fsck --no-progress 2>&1 | cat
cd ..
python3 -c '
import sqlite3
c = sqlite3.connect("db.sqlite")
c.execute("create table t(x integer)")
c.executemany("insert into t values (?)", [(i,) for i in range(1000)])
c.commit()
c.execute("delete from t where x % 2 = 0")
c.commit()
c.execute("vacuum")
print(c.execute("select count(*), sum(x) from t").fetchone())
'
"#;
    let t = TempDir::unique("pvmux-volume", "software");
    let (gv, nv) = (t.0.join("guest"), t.0.join("native"));
    std::fs::create_dir_all(&gv).unwrap();
    std::fs::create_dir_all(&nv).unwrap();
    let native = native_bash(script, &nv);
    let mut cmd = Command::new(pvmux_bin());
    cmd.env_clear()
        .args(["run", "--rootfs", "/", "--mem", "1G", "-v"]);
    cmd.arg(format!("{}:/data", gv.display()));
    cmd.args([
        "-e",
        "DATA=/data",
        "-e",
        "LC_ALL=C",
        "-e",
        "PATH=/usr/bin:/bin",
    ]);
    cmd.args(["--", "/bin/bash", "-c", script]);
    let g = output(cmd);
    assert_eq!(
        native.status.code(),
        Some(0),
        "native: {}",
        context(&native)
    );
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(&g));
    assert_eq!(
        text(&g.stdout),
        text(&native.stdout),
        "guest: {}",
        context(&g)
    );
    // The host's git reads what the guest wrote.
    let log = Command::new("git")
        .args([
            "-C",
            gv.join("repo").to_str().unwrap(),
            "log",
            "--format=%s",
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &gv)
        .output()
        .expect("git runs");
    assert_eq!(text(&log.stdout), "rename\ncommit 3\ncommit 2\ncommit 1\n");
}

/// Writable `MAP_SHARED` mappings of volume files: the same program on a volume and natively
/// on a host directory prints the same (a store through the mapping read back by `read`,
/// `write` seen by the mapping, a second mapping sharing the pages, `msync`, `ftruncate`
/// while mapped) and leaves the same files on the host (the stores written back on `msync`,
/// `munmap`, `fsync` and the exit of the process that made them, each checked at once through
/// a second volume of the same directory).
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn shared_mappings_of_volume_files_reach_the_host_like_native_ones() {
    for name in pvmux_tests::variants("volume-maps") {
        let t = TempDir::unique("pvmux-volume", "maps");
        let (gv, nv) = (t.0.join("guest"), t.0.join("native"));
        std::fs::create_dir(&gv).unwrap();
        std::fs::create_dir(&nv).unwrap();
        let p = pvmux_tests::prog(&name);
        let p = p.to_str().unwrap();
        // The second path to the directory reads the files themselves: natively the same
        // directory, in the guest a second volume of it (not the mapped files' cache).
        let native = output({
            let mut c = Command::new(p);
            c.arg(&nv).arg(&nv);
            c
        });
        let spec = format!("{}:/data", gv.display());
        let view = format!("{}:/view", gv.display());
        let g = guest("/", &["-v", &spec, "-v", &view], &[p, "/data", "/view"]);
        assert_eq!(
            native.status.code(),
            Some(0),
            "native: {}",
            context(&native)
        );
        let out = text(&native.stdout);
        assert!(!out.contains("FAILED"), "{}", context(&native));
        assert!(out.contains("in the file after msync MS_SYNC: ok"), "{out}");
        assert_eq!(
            text(&g.stdout),
            text(&native.stdout),
            "{name}: guest: {}",
            context(&g)
        );
        assert_eq!(g.status.code(), Some(0), "{name}: guest: {}", context(&g));
        let (gs, ns) = (snapshot(&gv), snapshot(&nv));
        assert_eq!(gs.len(), 4, "{:?}", gs.keys());
        assert_eq!(
            gs, ns,
            "{name}: the files the guest left differ from the native ones"
        );
    }
}

/// Touching a page of a volume file's mapping wholly past the end of the file is `SIGBUS`
/// (`BUS_ADRERR`) as natively, shared and private, and after a truncate while mapped.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn touching_past_the_end_of_a_mapped_volume_file_is_sigbus_as_natively() {
    for name in pvmux_tests::variants("sigbus-eof") {
        let t = TempDir::unique("pvmux-volume", "sigbus");
        let (gv, nv) = (t.0.join("guest"), t.0.join("native"));
        std::fs::create_dir(&gv).unwrap();
        std::fs::create_dir(&nv).unwrap();
        // A host-made file of the volume, mapped read-only past its end.
        for d in [&gv, &nv] {
            std::fs::write(d.join("existing.dat"), vec![b'e'; 2 * 4096 + 7]).unwrap();
        }
        let p = pvmux_tests::prog(&name);
        let p = p.to_str().unwrap();
        let native = output({
            let mut c = Command::new(p);
            c.arg(&nv).arg(nv.join("existing.dat"));
            c
        });
        let spec = format!("{}:/data", gv.display());
        let g = guest("/", &["-v", &spec], &[p, "/data", "/data/existing.dat"]);
        assert_eq!(
            native.status.code(),
            Some(0),
            "native: {}",
            context(&native)
        );
        let out = text(&native.stdout);
        assert!(
            out.contains("shared write +8292: SIGBUS code=BUS_ADRERR at +8292"),
            "{out}"
        );
        assert_eq!(text(&g.stdout), out, "{name}: guest: {}", context(&g));
        assert_eq!(snapshot(&gv), snapshot(&nv), "{name}");
    }
}

/// A file the host makes in a volume while the guest runs is found by name, even in a
/// directory the guest has already listed, and listed from then on (a container's volume is
/// a live host directory).
#[test]
fn files_the_host_makes_meanwhile_are_seen_by_the_guest() {
    let t = TempDir::unique("pvmux-volume", "live");
    let vol = t.0.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    // The guest lists the volume, says so through it, then waits (at most 60 s) for `go`.
    let script = "ls /data >/dev/null; echo listed > /data/listed; n=0; \
                  until [ -e /data/go ]; do sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && exit 9; \
                  done; cat /data/go; ls /data";
    let spec = format!("{}:/data", vol.display());
    let child = Command::new(pvmux_bin())
        .env_clear()
        .env("LC_ALL", "C")
        .args([
            "run",
            "--rootfs",
            "/",
            "-v",
            &spec,
            "--",
            "/bin/bash",
            "-c",
            script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pvmux");
    let start = std::time::Instant::now();
    while !vol.join("listed").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the guest never wrote /data/listed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(vol.join("go"), "from the host\n").unwrap();
    let out = child.wait_with_output().expect("wait for pvmux");
    assert_eq!(out.status.code(), Some(0), "{}", context(&out));
    assert_eq!(
        text(&out.stdout),
        "from the host\ngo\nlisted\n",
        "{}",
        context(&out)
    );
}

/// `bash -c SCRIPT` natively in a private mount namespace where `src` is bind-mounted on
/// `target` (read-only with `ro`), with `CONF=target`.
fn native_bind_bash(script: &str, src: &Path, target: &Path, ro: bool) -> Output {
    let setup = r#"mount --make-rprivate / && mount --bind "$SRC" "$CONF" &&
        { [ -z "$RO" ] || mount -o remount,bind,ro "$CONF"; } && exec /bin/bash -c "$SCRIPT""#;
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SRC", src)
        .env("CONF", target)
        .env("RO", if ro { "1" } else { "" })
        .env("SCRIPT", script)
        .args(["-m", "/bin/bash", "-c", setup]);
    output(cmd)
}

/// The same script in a guest with `src` as a file volume at `target`.
fn guest_file_bash(script: &str, src: &Path, target: &Path, mode: &str) -> Output {
    let spec = format!("{}:{}{mode}", src.display(), target.display());
    let conf = format!("CONF={}", target.display());
    guest(
        "/",
        &["-v", &spec, "--env", &conf, "--env", "LC_ALL=C"],
        &["/bin/bash", "-c", script],
    )
}

/// Two host files with the same bytes and bits (one for the native run, one for the guest),
/// and the file of the "image" (the host root the guest boots from) they are mounted over.
fn file_volume_setup(what: &str) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let t = TempDir::unique("pvmux-volume", what);
    let (native, guest) = (t.0.join("native.conf"), t.0.join("guest.conf"));
    for f in [&native, &guest] {
        std::fs::write(f, b"key = value\n").unwrap();
        std::fs::set_permissions(f, PermissionsExt::from_mode(0o644)).unwrap();
    }
    let target = t.0.join("etc/app.conf");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"the image's own file\n").unwrap();
    (t, native, guest, target)
}

/// Reads and writes, then removal, rename, a hard link elsewhere and a path below the file:
/// the guest prints what the native program prints with a real bind mount of the file
/// (`EBUSY`, `EXDEV`, `ENOTDIR`), and both host files end up with the same bytes and bits.
#[test]
fn a_file_volume_reads_and_writes_through_like_a_native_bind_mount() {
    let (_t, native_src, guest_src, target) = file_volume_setup("file-rw");
    let script = r#"exec 2>&1
cat "$CONF"
echo appended >> "$CONF"
printf 'KEY' | dd of="$CONF" conv=notrunc status=none
stat -c '%s %a %F' "$CONF"
chmod 600 "$CONF"
stat -c '%a' "$CONF"
rm "$CONF"
mv "$CONF" "$CONF.moved"
ln "$CONF" "$CONF.link"
mkdir "$CONF/x"
ls "$(dirname "$CONF")"
cat "$CONF"
exit 0
"#;
    let native = native_bind_bash(script, &native_src, &target, false);
    assert_eq!(
        native.status.code(),
        Some(0),
        "native: {}",
        context(&native)
    );
    let g = guest_file_bash(script, &guest_src, &target, "");
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(&g));
    assert_eq!(
        text(&g.stdout),
        text(&native.stdout),
        "guest: {}",
        context(&g)
    );
    assert!(
        text(&g.stdout).contains("Device or resource busy"),
        "{}",
        context(&g)
    );
    let host = std::fs::read(&guest_src).unwrap();
    assert_eq!(
        host, b"KEY = value\nappended\n",
        "the guest's bytes are on the host"
    );
    assert_eq!(host, std::fs::read(&native_src).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&guest_src), 0o600);
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"the image's own file\n",
        "the file mounted over is untouched"
    );
}

/// A `:ro` file volume refuses every change as a read-only native bind mount does, and the
/// host file keeps its bytes.
#[test]
fn a_read_only_file_volume_refuses_changes_like_a_native_one() {
    let (_t, native_src, guest_src, target) = file_volume_setup("file-ro");
    let script = r#"exec 2>&1
cat "$CONF"
echo x >> "$CONF"
truncate -s 0 "$CONF"
touch "$CONF"
chmod 600 "$CONF"
rm "$CONF"
cat "$CONF"
exit 0
"#;
    let native = native_bind_bash(script, &native_src, &target, true);
    assert_eq!(
        native.status.code(),
        Some(0),
        "native: {}",
        context(&native)
    );
    let g = guest_file_bash(script, &guest_src, &target, ":ro");
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(&g));
    assert_eq!(
        text(&g.stdout),
        text(&native.stdout),
        "guest: {}",
        context(&g)
    );
    let erofs = std::io::Error::from_raw_os_error(30).to_string();
    let erofs = erofs.split(" (os error").next().unwrap().to_owned();
    assert!(text(&g.stdout).contains(&erofs), "{}", context(&g));
    assert_eq!(std::fs::read(&guest_src).unwrap(), b"key = value\n");
    assert_eq!(
        std::fs::metadata(&guest_src).unwrap().mode() & 0o7777,
        0o644
    );
}

/// A `MAP_SHARED` mapping of a file volume: stores reach the host file on `msync` and are
/// what `read` sees, as through a native bind mount of the file.
#[test]
#[cfg_attr(not(have_python3), ignore = "needs python3: apt-get install python3")]
fn a_shared_mapping_of_a_file_volume_reaches_the_host_like_a_native_one() {
    let (_t, native_src, guest_src, target) = file_volume_setup("file-map");
    let py = r#"
import mmap, os, sys
path = os.environ["CONF"]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED)
print(m[:])
m[0:3] = b"KEY"
m.flush()
print(open(path, "rb").read())
m.close()
os.close(fd)
"#;
    let script = format!("exec 2>&1\n/usr/bin/python3 -c '{py}'\ncat \"$CONF\"\n");
    let native = native_bind_bash(&script, &native_src, &target, false);
    assert_eq!(
        native.status.code(),
        Some(0),
        "native: {}",
        context(&native)
    );
    let g = guest_file_bash(&script, &guest_src, &target, "");
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(&g));
    assert_eq!(
        text(&g.stdout),
        text(&native.stdout),
        "guest: {}",
        context(&g)
    );
    assert_eq!(std::fs::read(&guest_src).unwrap(), b"KEY = value\n");
    assert_eq!(
        std::fs::read(&guest_src).unwrap(),
        std::fs::read(&native_src).unwrap()
    );
}

/// Both runs succeeded and printed the same.
fn same_as_native(g: &Output, native: &Output) {
    assert_eq!(native.status.code(), Some(0), "native: {}", context(native));
    assert_eq!(g.status.code(), Some(0), "guest: {}", context(g));
    assert_eq!(
        text(&g.stdout),
        text(&native.stdout),
        "guest: {}",
        context(g)
    );
}

/// What root does in a fresh volume, then a database-like user in it (as an image's
/// entrypoint does for `-v pgdata:/var/lib/postgresql/data`): a private directory, files, a
/// link, an owner given to a link itself.
const OWNERS_SCRIPT: &str = r#"set -e
cd "$DATA"
chown 101:104 .
setpriv --reuid 101 --regid 104 --clear-groups bash -c '
  set -e
  umask 077
  mkdir -m 700 pgdata
  mkdir pgdata/base
  echo 15 > pgdata/PG_VERSION
  ln -s base pgdata/link
  ls pgdata
  cat pgdata/PG_VERSION
  stat -c "%n %u:%g %a" . pgdata pgdata/base pgdata/PG_VERSION
  chown 101:104 pgdata/base
  chown 0 pgdata/base 2>&1 || echo "chown status $?"
'
chown -h 7:8 pgdata/link
stat -c '%n %u:%g %F' pgdata/link pgdata/base
"#;

/// The next run, as that user only: what the first left must still be theirs.
const OWNERS_AGAIN: &str = r#"set -e
cd "$DATA"
echo 16 >> pgdata/PG_VERSION
cat pgdata/PG_VERSION
mkdir pgdata/base/1 && ls pgdata/base
stat -c "%n %u:%g %a" pgdata pgdata/base/1
"#;

/// Owners in a volume (pvmux as root, as runc without a user namespace: the guest's ids
/// are the host's): what a guest user makes is theirs on the host, and theirs again in the
/// next run; `chown` reaches the host, on the volume's root and on a link itself. Before,
/// the host kept its own owner (root), so a user's `mkdir -m 700` made a directory that user
/// could not enter (`initdb` on a volume failed). Compared with the same scripts run
/// natively (`setpriv` for the user), output and the trees' owners.
#[test]
#[cfg_attr(
    not(all(have_root, have_setpriv)),
    ignore = "needs root and setpriv (util-linux): run the tests as root (CI does)"
)]
fn a_guest_users_files_in_a_volume_are_theirs_as_natively() {
    let t = TempDir::unique("pvmux-volume", "owners");
    let (gv, nv) = (t.0.join("guest"), t.0.join("native"));
    std::fs::create_dir_all(&gv).unwrap();
    std::fs::create_dir_all(&nv).unwrap();
    let native = native_bash(OWNERS_SCRIPT, &nv);
    same_as_native(&guest_bash(OWNERS_SCRIPT, &gv, ""), &native);
    let owners = |root: &Path| -> BTreeMap<String, (u32, u32)> {
        snapshot(root)
            .into_keys()
            .chain([String::new()])
            .map(|rel| {
                let m = std::fs::symlink_metadata(root.join(&rel)).unwrap();
                (rel, (m.uid(), m.gid()))
            })
            .collect()
    };
    let want = owners(&nv);
    assert_eq!(want.get("pgdata"), Some(&(101, 104)), "{want:?}");
    assert_eq!(owners(&gv), want, "the owners on the host");
    // The next run, as the user: native through setpriv.
    let again = format!("setpriv --reuid 101 --regid 104 --clear-groups bash -c '{OWNERS_AGAIN}'");
    let native = native_bash(&again, &nv);
    let spec = format!("{}:/data", gv.display());
    let g = guest(
        "/",
        &["-v", &spec, "--env", "DATA=/data", "--user", "101:104"],
        &["/bin/bash", "-c", OWNERS_AGAIN],
    );
    same_as_native(&g, &native);
    assert_eq!(
        owners(&gv),
        owners(&nv),
        "the owners on the host after the second run"
    );
}
