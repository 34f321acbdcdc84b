//! Linux's permission checks for a process that is not root (`pvmux run --user`): the same
//! shell script run as uid/gid 1000 in the guest (`--rootfs /`, seeing the host's files
//! with their host owners and modes) and natively under `setpriv` over the same host
//! fixture, outputs compared — reading a root 0600 file, writing into a root 0755
//! directory, removing another user's file from a sticky directory, `ls` and `cd` of a 0700
//! directory, `chmod`/`chown`/`touch -d` of others' files, and the user's own files. And
//! `--user NAME[:GROUP]` looked up in the guest root's /etc/passwd, compared with `id`
//! natively. Supplementary groups: `--user NAME` in a guest root of its own, whose
//! /etc/passwd and /etc/group give the user groups, compared with `id NAME` run natively
//! (chrooted) over the same files and with the groups those files give; a file readable only
//! through one of them; `--group-add`; `setgroups(2)` as root, then dropping to a user, as
//! natively. The native runs need root to change ids (ignored otherwise, `have_root`).

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;

use pvmux_tests::output_in_clean_env;

/// The `pvmux` CLI built with this test crate.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");

/// Run as `sh -c SCRIPT sh DIR`: each step prints its messages and exit status.
const SCRIPT: &str = r#"d=$1
step() { "$@" 2>&1; echo "$*: $?"; }
step cat $d/secret
step cat $d/public
step sh -c "echo x > $d/rootdir/new"
step mkdir $d/rootdir/sub
step rm -f $d/rootdir/file
step mv $d/rootdir/file $d/sticky/moved
step truncate -s 0 $d/public
step rm -f $d/sticky/other
step mv $d/sticky/other $d/sticky/mine2
step chmod 777 $d/secret
step chown 1000 $d/public
step chgrp 1000 $d/public
step touch -d 2001-02-03 $d/public
step ls $d/private
step cat $d/private/file
step cd $d/private
step ls $d/rootdir
step sh -c "echo mine > $d/sticky/mine"
step cat $d/sticky/mine
step chmod 640 $d/sticky/mine
step touch -d 2001-02-03 $d/sticky/mine
step stat -c '%a %u %g %y' $d/sticky/mine
step mkdir $d/sticky/mydir
step sh -c "echo deep > $d/sticky/mydir/f"
step chmod 0 $d/sticky/mydir
step cat $d/sticky/mydir/f
step chmod 700 $d/sticky/mydir
step rm -r $d/sticky/mydir $d/sticky/mine
step ls $d/sticky
"#;

fn put(path: &Path, text: &str, mode: u32, owner: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    chown(path, Some(owner), Some(owner)).unwrap();
}

fn dir(path: &Path, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The fixture, made by root: `secret` 0600, `public` 0644, `rootdir` 0755 with `file`,
/// `private` 0700 with `file`, and `sticky` 1777 holding uid 2000's `other`.
fn fixture(d: &Path) {
    dir(d, 0o755);
    put(&d.join("secret"), "secret\n", 0o600, 0);
    put(&d.join("public"), "public\n", 0o644, 0);
    dir(&d.join("rootdir"), 0o755);
    put(&d.join("rootdir/file"), "f\n", 0o644, 0);
    dir(&d.join("private"), 0o700);
    put(&d.join("private/file"), "p\n", 0o644, 0);
    dir(&d.join("sticky"), 0o1777);
    put(&d.join("sticky/other"), "other\n", 0o666, 2000);
}

fn text(o: &std::process::Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(not(have_root), ignore = "needs root: run the tests as root (CI does)")]
fn an_unprivileged_user_is_checked_as_natively() {
    let tmp = pvmux_tests::TempDir::unique("pvmux-perm", "fixture");
    let d = tmp.0.join("d");
    fixture(&d);
    let d = d.to_str().unwrap();
    // The guest first: its writes stay in guest memory, the host fixture is unchanged for
    // the native run.
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", "/", "--user", "1000:1000"])
        .args(["--", "/bin/sh", "-c", SCRIPT, "sh", d]);
    let got = output_in_clean_env(guest);
    let mut native = Command::new("setpriv");
    native
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "--"])
        .args(["/bin/sh", "-c", SCRIPT, "sh", d]);
    let want = output_in_clean_env(native);
    assert!(
        want.status.success(),
        "native run: {:?}",
        String::from_utf8_lossy(&want.stderr)
    );
    assert_eq!(text(&got), text(&want));
    // The script met each kind of refusal (not a vacuous comparison).
    let out = String::from_utf8_lossy(&want.stdout);
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

/// `id`, `id -G` and the home directory, in a script.
const ID_SCRIPT: &str = "id; id -G; echo \"home=$HOME\"";

#[test]
#[cfg_attr(
    not(all(have_root, have_user_nobody)),
    ignore = "needs root and a user nobody: run the tests as root (CI does); useradd --system --no-create-home nobody"
)]
fn user_names_are_looked_up_in_the_guest_root() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let nobody = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == "nobody")
        .expect("the build found a user nobody in /etc/passwd");
    let (uid, gid, home) = (nobody[2], nobody[3], nobody[5]);
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let group_name = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[2] == gid)
        .map(|f| f[0].to_owned());
    let mut cases = vec![("nobody".to_owned(), gid.to_owned())];
    if let Some(g) = group_name {
        cases.push((format!("nobody:{g}"), gid.to_owned()));
    }
    cases.push(("nobody:0".to_owned(), "0".to_owned()));
    for (user, native_gid) in cases {
        let mut guest = Command::new(PVMUX);
        guest
            .args(["run", "--rootfs", "/", "--user", &user])
            .args(["--", "/bin/sh", "-c", ID_SCRIPT]);
        let got = output_in_clean_env(guest);
        let mut native = Command::new("setpriv");
        native
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={native_gid}"))
            .args(["--clear-groups", "--"])
            .arg("env")
            .arg(format!("HOME={home}"))
            .args(["/bin/sh", "-c", ID_SCRIPT]);
        let want = output_in_clean_env(native);
        assert!(want.status.success(), "native {user}: {:?}", text(&want));
        assert_eq!(text(&got), text(&want), "--user {user}");
    }
    // --env HOME wins over the passwd entry.
    let mut guest = Command::new(PVMUX);
    guest
        .args([
            "run", "--rootfs", "/", "--user", "nobody", "--env", "HOME=/x",
        ])
        .args(["--", "/bin/sh", "-c", "echo $HOME"]);
    assert_eq!(
        String::from_utf8_lossy(&output_in_clean_env(guest).stdout),
        "/x\n"
    );
}

#[test]
fn unknown_names_are_host_errors() {
    for (value, says) in [
        ("pvmux-no-such-user", "no user \"pvmux-no-such-user\""),
        (
            "root:pvmux-no-such-group",
            "no group \"pvmux-no-such-group\"",
        ),
        ("1000:", "neither a numeric id nor a name"),
    ] {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--rootfs", "/", "--user", value, "--", "/bin/true"]);
        let o = output_in_clean_env(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{value}: {err}");
        assert!(err.contains(says), "{value}: {err}");
    }
}

/// The guest root for the supplementary-group tests: `etc/passwd` and `etc/group` that put
/// `alice` (uid 1000, passwd group 1000) in `staff` and `pvgrp` but not `other`, the host's
/// static busybox and the `groups` test program in `bin/`, and `secret`, owned by 0:4242
/// (`pvgrp`) with mode 0640.
fn group_root(root: &Path, busybox: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    dir(&root.join("tmp"), 0o1777);
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n\
         bob:x:1001:1001::/home/bob:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nstaff:x:50:bob,alice\nalice:x:1000:\nother:x:60:bob\npvgrp:x:4242:alice\n",
    )
    .unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::fs::copy(pvmux_tests::prog("groups"), root.join("bin/groups")).unwrap();
    put(&root.join("secret"), "group secret\n", 0o640, 0);
    chown(root.join("secret"), Some(0), Some(4242)).unwrap();
    // A program only `pvgrp` may run.
    let grp_only = root.join("bin/groups-pvgrp");
    std::fs::copy(pvmux_tests::prog("groups"), &grp_only).unwrap();
    chown(&grp_only, Some(0), Some(4242)).unwrap();
    std::fs::set_permissions(&grp_only, std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// The gids `initgroups(3)` gives `user` from the root's own files: its passwd group and
/// every group whose member list names it, ascending.
fn expected_groups(root: &Path, user: &str) -> Vec<u32> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let primary: u32 = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .map(|f| f[3].parse().unwrap())
        .unwrap();
    let mut gids: Vec<u32> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .map(|f| f[2].parse().unwrap())
        .chain([primary])
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// `id`'s output with its groups list sorted (the guest's `id` lists `getgroups`, which is
/// ascending; `id NAME` lists `getgrouplist`, in /etc/group order).
fn id_normalised(line: &str) -> String {
    line.split(' ')
        .map(|part| match part.strip_prefix("groups=") {
            Some(list) => {
                let mut g: Vec<&str> = list.split(',').collect();
                g.sort_unstable();
                format!("groups={}", g.join(","))
            }
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids of `id -G`'s output, ascending.
fn id_g(line: &str) -> Vec<u32> {
    let mut g: Vec<u32> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

#[test]
#[cfg_attr(
    not(all(have_root, have_busybox)),
    ignore = "needs root and /bin/busybox: run the tests as root (CI does); apt-get install busybox-static"
)]
fn a_named_users_supplementary_groups_are_as_natively() {
    let busybox = std::fs::canonicalize("/bin/busybox").expect("the build found /bin/busybox");
    let tmp = pvmux_tests::TempDir::unique("pvmux-perm", "groups");
    let r = tmp.0.join("root");
    group_root(&r, &busybox);
    let root_dir = r.to_str().unwrap();
    let want = expected_groups(&r, "alice");
    assert!(want.len() >= 3, "the fixture gives alice groups: {want:?}");
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", root_dir, "--user", "alice", "--"])
        .args(["/bin/busybox", "sh", "-c"])
        .arg("/bin/busybox id; /bin/busybox id -G; /bin/groups show; /bin/busybox cat /secret");
    let got = output_in_clean_env(guest);
    let (code, out, err) = text(&got);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    // `id NAME` natively, chrooted into the same root: the same files looked up by libc.
    let native = |args: &[&str]| {
        let mut c = Command::new("/usr/sbin/chroot");
        c.arg(root_dir).arg("/bin/busybox").args(args);
        let o = output_in_clean_env(c);
        assert!(o.status.success(), "native {args:?}: {:?}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
    };
    assert_eq!(
        id_normalised(lines[0]),
        id_normalised(&native(&["id", "alice"])),
        "{out}"
    );
    assert_eq!(
        id_g(lines[1]),
        id_g(&native(&["id", "-G", "alice"])),
        "{out}"
    );
    assert_eq!(id_g(lines[1]), want, "{out}");
    // getgroups(2) and /proc/self/status give exactly that set, ascending.
    let list = |v: &[u32]| v.iter().map(|g| format!(" {g}")).collect::<String>();
    assert!(
        got_line(&out, &format!("getgroups:{}", list(&want))),
        "{out}"
    );
    assert!(
        got_line(&out, &format!("getgroups(0): {}", want.len())),
        "{out}"
    );
    assert!(got_line(&out, "getgroups(1): -1 Invalid argument"), "{out}");
    assert!(
        got_line(&out, &format!("Groups:\t{} ", list(&want).trim_start())),
        "{out}"
    );
    assert!(got_line(&out, "Uid:\t1000\t1000\t1000\t1000"), "{out}");
    // The file only group 4242 may read.
    assert!(got_line(&out, "group secret"), "{out}");

    // --group-add by name and by number joins them; `:GROUP` drops the /etc/group ones.
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", root_dir, "--user", "alice:alice"])
        .args(["--group-add", "other", "--group-add", "77", "--"])
        .args(["/bin/groups", "show"]);
    let (code, out, err) = text(&output_in_clean_env(guest));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(got_line(&out, "getgroups: 60 77"), "{out}");
    // Init itself may be a program only a supplementary group may run.
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", root_dir, "--user", "alice", "--"])
        .args(["/bin/groups-pvgrp", "show"]);
    let (code, out, err) = text(&output_in_clean_env(guest));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        got_line(&out, "uid=1000 euid=1000 gid=1000 egid=1000"),
        "{out}"
    );
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", root_dir, "--user", "bob", "--"])
        .args(["/bin/groups-pvgrp", "show"]);
    let (code, _, err) = text(&output_in_clean_env(guest));
    assert_eq!(code, Some(126), "bob may not run it: {err}");
    let mut guest = Command::new(PVMUX);
    guest
        .args(["run", "--rootfs", root_dir, "--user", "bob", "--"])
        .args(["/bin/busybox", "cat", "/secret"]);
    let (code, _, err) = text(&output_in_clean_env(guest));
    assert_eq!(code, Some(1), "bob is not in pvgrp: {err}");
    assert!(err.contains("Permission denied"), "{err}");
}

fn got_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[test]
#[cfg_attr(not(have_root), ignore = "needs root: run the tests as root (CI does)")]
fn setgroups_as_root_then_dropping_is_as_natively() {
    for name in pvmux_tests::variants("groups") {
        let program = pvmux_tests::prog(&name);
        let program = program.to_str().unwrap();
        let mut guest = Command::new(PVMUX);
        guest.args(["run", "--rootfs", "/", "--", program, "drop", "/tmp"]);
        let got = output_in_clean_env(guest);
        let tmp = pvmux_tests::TempDir::unique("pvmux-perm", "setgroups");
        std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut native = Command::new(program);
        native.args(["drop", tmp.0.to_str().unwrap()]);
        let want = output_in_clean_env(native);
        assert!(want.status.success(), "native {name}: {:?}", text(&want));
        assert_eq!(text(&got), text(&want), "{name}");
        let out = String::from_utf8_lossy(&want.stdout);
        // Not a vacuous comparison: the group opened the file, its absence did not.
        assert!(out.contains("with group 4242: read 13 bytes"), "{out}");
        assert!(
            out.contains("without group 4242: read: Permission denied"),
            "{out}"
        );
        assert!(
            out.contains("getgroups after setgroups: 3 7 7 4242"),
            "{out}"
        );
    }
}

#[test]
fn a_bad_group_add_is_a_host_error() {
    for (value, says) in [
        (
            "pvmux-no-such-group",
            "--group-add \"pvmux-no-such-group\": no group \"pvmux-no-such-group\"",
        ),
        ("-5", "neither a numeric id nor a group name"),
    ] {
        let mut cmd = Command::new(PVMUX);
        cmd.args(["run", "--rootfs", "/"])
            .arg(format!("--group-add={value}"))
            .args(["--", "/bin/true"]);
        let o = output_in_clean_env(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{value}: {err}");
        assert!(err.contains(says), "{value}: {err}");
    }
}
