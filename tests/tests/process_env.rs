//! The init program's environment and working directory (`pvmux run --env`, `--env-file`,
//! `--workdir` and the default environment), end to end through the CLI with the host's
//! static busybox as the guest program (`--rootfs /`), each compared with the same program
//! run natively with the environment and directory the flags ask for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pvmux_tests::TempDir;

/// The `pvmux` CLI built with this test crate (`tests/src/bin/pvmux-cli.rs`).
fn pvmux_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pvmux-cli"))
}

/// The host's busybox (static), by its real path (no symbolic link on the way, so `pwd`
/// agrees); the tests that use it are ignored without it (`have_busybox`).
fn busybox() -> PathBuf {
    let p = std::fs::canonicalize("/bin/busybox").expect("the build found /bin/busybox");
    assert!(p.is_file(), "{} is not a file", p.display());
    p
}

/// Runs `cmd` with stdin, stdout and stderr not terminals (no TERM by default).
fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `pvmux run --rootfs / FLAGS -- PROGRAM...`, with pvmux's own environment `host_env` only.
fn guest(flags: &[&str], program: &[&str], host_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pvmux_bin());
    cmd.env_clear()
        .envs(host_env.iter().copied())
        .args(["run", "--rootfs", "/"])
        .args(flags)
        .arg("--")
        .args(program);
    output(cmd)
}

/// PROGRAM run natively with exactly `env`, in this order (`env -i NAME=VALUE... PROGRAM`),
/// in `dir`.
fn native(program: &[&str], env: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new("/usr/bin/env");
    cmd.arg("-i")
        .args(env)
        .args(program)
        .env_clear()
        .current_dir(dir);
    output(cmd)
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

/// The default environment `pvmux run` gives when the console is not a terminal.
const DEFAULTS: [&str; 3] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOSTNAME=pvmux",
    "HOME=/root",
];

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn default_environment_is_like_other_runtimes() {
    let bb = busybox();
    let bb = bb.to_str().expect("utf-8 path");
    let o = guest(&[], &[bb, "env"], &[("TERM", "dumb"), ("SECRET", "x")]);
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    // Nothing of pvmux's own environment leaks in; no TERM without a terminal.
    let n = native(&[bb, "env"], &DEFAULTS, Path::new("/"));
    assert_eq!(text(&o.stdout), text(&n.stdout), "{}", context(&o));
    assert_eq!(text(&o.stdout).lines().collect::<Vec<_>>(), DEFAULTS);
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn env_flags_and_files_give_the_environment_asked_for() {
    let bb = busybox();
    let bb = bb.to_str().expect("utf-8 path");
    let dir = TempDir::unique("pvmux-process-env", "files");
    let file = dir.0.join("vars.env");
    std::fs::write(
        &file,
        "# podman's format\n\nFROM_FILE=file value\n  HOME=/home/file\nINHERIT_FILE\n\
         OVERRIDDEN=by file\nEQ=a=b=c\nSPACES=  kept  \n",
    )
    .expect("write env file");
    let file = file.to_str().expect("utf-8 path");
    let o = guest(
        &[
            "--env-file",
            file,
            "-e",
            "OVERRIDDEN=by flag",
            "--env",
            "UTF8=héllo wörld",
            "-e",
            "INHERIT",
            "-e",
            "UNSET_ON_HOST",
            "-e",
            "EMPTY=",
            "-e",
            "HOSTNAME=custom",
        ],
        &[bb, "env"],
        &[("INHERIT", "from pvmux"), ("INHERIT_FILE", "file lookup")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    let want = [
        DEFAULTS[0],
        "HOSTNAME=custom",
        "HOME=/home/file",
        "FROM_FILE=file value",
        "INHERIT_FILE=file lookup",
        "OVERRIDDEN=by flag",
        "EQ=a=b=c",
        "SPACES=  kept  ",
        "UTF8=héllo wörld",
        "INHERIT=from pvmux",
        "EMPTY=",
    ];
    // `env -i`-style native run with the same variables: the same output, byte for byte.
    let n = native(&[bb, "env"], &want, Path::new("/"));
    assert_eq!(n.status.code(), Some(0));
    assert_eq!(text(&o.stdout), text(&n.stdout), "{}", context(&o));
    assert_eq!(text(&o.stdout).lines().collect::<Vec<_>>(), want);
    // A shell sees them as variables, and a later --env of one name wins.
    let o = guest(
        &["-e", "X=1", "-e", "X=2 3"],
        &[bb, "sh", "-c", "echo \"[$X]\"; echo \"[$HOME]\""],
        &[],
    );
    assert_eq!(text(&o.stdout), "[2 3]\n[/root]\n", "{}", context(&o));
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn workdir_is_the_programs_cwd() {
    let bb = busybox();
    let bbs = bb.to_str().expect("utf-8 path");
    let dir = TempDir::unique("pvmux-process-env", "workdir");
    let real = std::fs::canonicalize(&dir.0).expect("canonical temp dir");
    std::fs::create_dir(real.join("sub")).expect("mkdir");
    std::fs::write(real.join("sub/data.txt"), "relative read\n").expect("write");
    let w = real.to_str().expect("utf-8 path");
    // pwd, as natively in the same directory.
    let o = guest(&["--workdir", w], &[bbs, "pwd"], &[]);
    let n = native(&[bbs, "pwd"], &DEFAULTS, &real);
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    assert_eq!(text(&o.stdout), text(&n.stdout));
    assert_eq!(text(&o.stdout), format!("{w}\n"));
    // Relative paths resolve there: a file, and a directory to change into.
    let script = "cat sub/data.txt; cd sub && pwd && ls";
    let o = guest(&["-w", w], &[bbs, "sh", "-c", script], &[]);
    let n = native(&[bbs, "sh", "-c", script], &DEFAULTS, &real);
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    assert_eq!(text(&o.stdout), text(&n.stdout), "{}", context(&o));
    assert_eq!(
        text(&o.stdout),
        format!("relative read\n{w}/sub\ndata.txt\n")
    );
    // A relative PROGRAM path resolves in the workdir too.
    let bin_dir = bb.parent().expect("busybox has a directory");
    let name = format!("./{}", bb.file_name().unwrap().to_str().unwrap());
    let o = guest(
        &["-w", bin_dir.to_str().unwrap()],
        &[&name, "echo", "relative program"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", context(&o));
    assert_eq!(text(&o.stdout), "relative program\n");
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn a_workdir_the_guest_lacks_is_a_clear_error() {
    let bb = busybox();
    let bb = bb.to_str().expect("utf-8 path");
    let o = guest(&["-w", "/nonexistent-pvmux-workdir"], &[bb, "pwd"], &[]);
    assert_eq!(o.status.code(), Some(126), "{}", context(&o));
    assert!(o.stdout.is_empty(), "{}", context(&o));
    assert!(
        text(&o.stderr).contains(
            "pvmux: workdir \"/nonexistent-pvmux-workdir\" does not exist in the guest: \
             No such file or directory"
        ),
        "{}",
        context(&o)
    );
    // A file is not a directory.
    let o = guest(&["-w", bb], &[bb, "pwd"], &[]);
    assert_eq!(o.status.code(), Some(126), "{}", context(&o));
    assert!(
        text(&o.stderr).contains("does not exist in the guest: Not a directory"),
        "{}",
        context(&o)
    );
}

#[test]
#[cfg_attr(
    not(have_busybox),
    ignore = "needs /bin/busybox: apt-get install busybox-static"
)]
fn bad_environment_input_is_a_host_error() {
    let bb = busybox();
    let bb = bb.to_str().expect("utf-8 path");
    let dir = TempDir::unique("pvmux-process-env", "bad");
    let bad_file = dir.0.join("bad.env");
    std::fs::write(&bad_file, "OK=1\nBAD NAME=2\n").expect("write");
    let bad_file = bad_file.to_str().unwrap().to_owned();
    let missing = dir.0.join("missing.env");
    let missing = missing.to_str().unwrap().to_owned();
    for (flags, needle) in [
        (
            vec!["-e", "=value"],
            "invalid environment variable: the name is empty",
        ),
        (vec!["-e", "A\tB=1"], "contains whitespace"),
        (vec!["--env-file", &bad_file], "line 2"),
        (vec!["--env-file", &missing], "cannot read it"),
        (vec!["-w", "not/absolute"], "must be an absolute path"),
    ] {
        let o = guest(&flags, &[bb, "env"], &[]);
        assert_eq!(o.status.code(), Some(125), "{flags:?}: {}", context(&o));
        assert!(
            o.stdout.is_empty(),
            "{flags:?}: nothing ran: {}",
            context(&o)
        );
        assert!(
            text(&o.stderr).contains(needle),
            "{flags:?}: expected {needle:?}: {}",
            context(&o)
        );
    }
}
