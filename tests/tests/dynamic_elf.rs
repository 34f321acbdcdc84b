//! Dynamically linked programs (`PT_INTERP`): the host's own glibc programs (`/bin/true`,
//! `echo`, `ls`, `cat`, `sh`), copied with their shared libraries and `ld.so` (as `ldd` lists
//! them) into a temporary rootfs, run as pvmux guests (`pvmux run --rootfs DIR -- PROGRAM`)
//! on 1 and 2 vCPUs, each compared with the same program run natively (stdout and exit
//! status). And the errors: a program whose interpreter is missing (`pvmux run` says so,
//! exit 127) or is not an ELF file (`ELIBBAD`), also when a guest shell runs it, against the
//! native run. Ignored (`needs glibc's dynamic loader`) on a host without glibc's `ld.so`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{run_with_timeout, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (the loaded 2-core CI machine reads every library
/// through the host share).
const TIMEOUT: Duration = Duration::from_secs(120);
/// glibc's program interpreter, as `PT_INTERP` names it.
const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
/// The programs the rootfs holds (with their libraries).
const PROGRAMS: [&str; 6] = [
    "/bin/true",
    "/bin/false",
    "/bin/echo",
    "/bin/ls",
    "/bin/cat",
    "/bin/sh",
];

/// Runs `cmd` with null stdin and an empty environment, killing it after [`TIMEOUT`].
fn run(mut cmd: Command) -> Run {
    cmd.env_clear();
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(10), |_| {})
}

/// Copies host file `path` to the same path under `root` (following symbolic links).
fn copy_in(root: &Path, path: &str) {
    let dest = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
    std::fs::copy(path, &dest).unwrap_or_else(|e| panic!("copy {path}: {e}"));
}

/// The shared libraries and interpreter `ldd` lists for `program`.
fn libraries(program: &str) -> Vec<String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .expect("run ldd (libc-bin)");
    assert!(out.status.success(), "ldd {program}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-... (0x...)".
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// A rootfs holding [`PROGRAMS`] with their libraries, and `/data` with a small tree.
fn rootfs() -> TempDir {
    let root = TempDir::unique("pvmux-dynelf", "rootfs");
    for p in PROGRAMS {
        copy_in(&root.0, p);
        for lib in libraries(p) {
            copy_in(&root.0, &lib);
        }
    }
    let data = root.0.join("data");
    std::fs::create_dir_all(data.join("sub/deeper")).expect("mkdir data");
    std::fs::write(data.join("file.txt"), "first line\nsecond line\n\ttabbed\n").expect("write");
    std::fs::write(data.join("B-upper"), "").expect("write");
    std::fs::write(data.join("a-lower"), vec![b'x'; 10_000]).expect("write");
    std::fs::write(data.join("sub/.hidden"), "h").expect("write");
    std::fs::write(data.join("sub/zz"), "z").expect("write");
    root
}

/// Runs `argv` under pvmux with `root` as its rootfs on `vcpus` virtual CPUs.
fn guest(root: &TempDir, vcpus: u32, argv: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--vcpus")
        .arg(vcpus.to_string())
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .args(argv);
    run(cmd)
}

/// Runs `argv` under pvmux with the host's own root as its rootfs (paths, and the messages
/// naming them, are the native run's) on `vcpus` virtual CPUs.
fn guest_on_host_root(vcpus: u32, argv: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--vcpus")
        .arg(vcpus.to_string())
        .args(["--rootfs", "/", "--"])
        .args(argv);
    run(cmd)
}

/// Runs `argv` natively in `root` (its working directory; the guest's is its `/`, so
/// relative paths name the same files).
fn native(root: &TempDir, argv: &[&str]) -> Run {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).current_dir(&root.0);
    run(cmd)
}

/// The cases compared with the native run: exit statuses 0, 1 and 2, output of every size,
/// and a shell that forks and runs dynamically linked programs in a pipeline.
const CASES: [&[&str]; 9] = [
    &["/bin/true"],
    &["/bin/false"],
    &["/bin/echo", "hi"],
    &["/bin/echo", "-n", "several", "words"],
    &["/bin/ls", "data"],
    &["/bin/ls", "-a", "-R", "data/sub"],
    &["/bin/ls", "data/missing"],
    &["/bin/cat", "data/file.txt", "data/a-lower"],
    &[
        "/bin/sh",
        "-c",
        "echo a | /bin/cat; /bin/ls data | /bin/cat -n; /bin/false || echo status $?",
    ],
];

fn matches_native(vcpus: u32) {
    let root = rootfs();
    for argv in CASES {
        let want = native(&root, argv);
        let got = guest(&root, vcpus, argv);
        assert_eq!(
            (got.code(), &got.stdout),
            (want.code(), &want.stdout),
            "{argv:?} on {vcpus} vCPU(s): guest\n{}\nnative\n{}",
            got.context(),
            want.context()
        );
    }
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn dynamic_programs_match_native_on_1_vcpu() {
    matches_native(1);
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn dynamic_programs_match_native_on_2_vcpus() {
    matches_native(2);
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn a_missing_interpreter_is_named_and_exits_127() {
    let root = TempDir::unique("pvmux-dynelf", "nold");
    copy_in(&root.0, "/bin/true");
    // By path, and found through the default PATH.
    for name in ["/bin/true", "true"] {
        let r = guest(&root, 1, &[name]);
        assert_eq!(r.code(), Some(127), "{}", r.context());
        assert!(
            r.stderr.contains(&format!(
                "cannot run {name}: its program interpreter {LD_SO} was not found"
            )),
            "{}",
            r.context()
        );
    }
}

/// A copy of `/bin/true` under `root` at `name` whose `PT_INTERP` says `interp` instead.
fn with_interpreter(root: &Path, name: &str, interp: &str) {
    let mut f = std::fs::read("/bin/true").expect("read /bin/true");
    let old = format!("{LD_SO}\0");
    let at = f
        .windows(old.len())
        .position(|w| w == old.as_bytes())
        .expect("/bin/true names glibc's ld.so");
    assert!(interp.len() < old.len());
    let slot = &mut f[at..at + old.len()];
    slot.fill(0);
    slot[..interp.len()].copy_from_slice(interp.as_bytes());
    let dest = root.join(name);
    std::fs::write(&dest, f).expect("write");
    std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn a_shell_running_programs_with_missing_bad_and_relative_interpreters_matches_native() {
    // Relative interpreter paths are looked up from the working directory (Linux does
    // that): the native run in the rootfs and the guest in `/` find the same files.
    let root = rootfs();
    with_interpreter(&root.0, "bin/orphan", "lib64/ld-absent.so.2");
    with_interpreter(&root.0, "bin/badld", "garbage-ld.so");
    with_interpreter(&root.0, "bin/reltrue", "lib64/ld-linux-x86-64.so.2");
    std::fs::write(
        root.0.join("garbage-ld.so"),
        "not an ELF file\n".repeat(100),
    )
    .expect("w");
    std::fs::set_permissions(
        root.0.join("garbage-ld.so"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let script = "bin/orphan; echo orphan $?; bin/badld; echo badld $?; \
                  bin/reltrue; echo reltrue $?; bin/orphan";
    let argv = ["/bin/sh", "-c", script];
    let want = native(&root, &argv);
    assert_eq!(
        want.stdout,
        "orphan 127\nbadld 126\nreltrue 0\n",
        "{}",
        want.context()
    );
    for vcpus in [1, 2] {
        let got = guest(&root, vcpus, &argv);
        assert_eq!(
            (got.code(), &got.stdout, &got.stderr),
            (want.code(), &want.stdout, &want.stderr),
            "on {vcpus} vCPU(s)"
        );
    }
}

/// The guest test programs.
const PROG_DIR: &str = env!("PVMUX_PROG_DIR");

/// A shell script running the `c-dynamic` programs built with `suffix` (`""` for glibc,
/// `"-musl"`): a program linked against a shared library found through `LD_LIBRARY_PATH`,
/// one that `dlopen`s it and one that fails to, and the linked program without its library.
fn library_script(suffix: &str) -> String {
    let d = PROG_DIR;
    format!(
        "LD_LIBRARY_PATH={d} {d}/dynelf-linked{suffix}; echo linked $?; \
         {d}/dynelf-dlopen{suffix} {d}/libdynelf-plugin{suffix}.so; echo dlopen $?; \
         {d}/dynelf-dlopen{suffix} /nonexistent/libnothing.so; echo missing $?; \
         {d}/dynelf-linked{suffix}; echo unlinked $?"
    )
}

/// Runs [`library_script`] natively and in a guest sharing the host root (so that paths,
/// and with them the messages, are the same), on 1 and 2 vCPUs.
fn libraries_match_native(suffix: &str) {
    let script = library_script(suffix);
    let argv = ["/bin/sh", "-c", script.as_str()];
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let want = run(cmd);
    assert!(
        want.stdout.contains("plugin loaded\nmain 43\nlinked 7\n")
            && want
                .stdout
                .contains("answer 42\nanswer 53\ndlclose 0\ndlopen 0\n")
            && want.stdout.contains("missing 1\n")
            && want.stdout.ends_with("unlinked 127\n"),
        "native reference: {}",
        want.context()
    );
    for vcpus in [1, 2] {
        let got = guest_on_host_root(vcpus, &argv);
        assert_eq!(
            (got.code(), &got.stdout, &got.stderr),
            (want.code(), &want.stdout, &want.stderr),
            "on {vcpus} vCPU(s)"
        );
    }
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn glibc_shared_libraries_and_dlopen_match_native() {
    libraries_match_native("");
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn musl_shared_libraries_and_dlopen_match_native() {
    libraries_match_native("-musl");
}

/// A program that finds its library through `$ORIGIN` (`dynelf-origin`, linked with
/// `-rpath '$ORIGIN'`), run through a symbolic link in another directory, natively and in
/// a guest sharing the host root: the loader (glibc's and musl's) takes `$ORIGIN` from
/// `/proc/self/exe`, which names the program's own file with every link resolved (this is
/// how `java`, run as `/usr/bin/java` through `/etc/alternatives`, finds `libjli.so`).
/// Before, the guest's `/proc/self/exe` was the path as run, the link: the loader looked in
/// the link's directory and the program exited 127.
fn origin_through_a_link_matches_native(suffix: &str) {
    let dir = TempDir::unique("pvmux-dynelf", "origin");
    let link = dir.0.join("run-me");
    std::os::unix::fs::symlink(format!("{PROG_DIR}/dynelf-origin{suffix}"), &link)
        .expect("symlink");
    let link = link.to_str().expect("utf-8 path").to_owned();
    let want = run(Command::new(&link));
    assert_eq!(
        (want.code(), want.stdout.as_str()),
        (Some(7), "plugin loaded\nmain 43\n"),
        "native reference: {}",
        want.context()
    );
    for vcpus in [1, 2] {
        let got = guest_on_host_root(vcpus, &[&link]);
        assert_eq!(
            (got.code(), &got.stdout, &got.stderr),
            (want.code(), &want.stdout, &want.stderr),
            "on {vcpus} vCPU(s): {}",
            got.context()
        );
    }
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn glibc_origin_through_a_link_matches_native() {
    origin_through_a_link_matches_native("");
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn musl_origin_through_a_link_matches_native() {
    origin_through_a_link_matches_native("-musl");
}

/// A library removed while it is mapped keeps its bytes, as on Linux: `dynelf-removed`
/// `dlopen`s `libdynelf-big.so` (2 MiB of data the loader does not read), removes the
/// file, then reads bytes at its start, middle and end. Natively it removes a copy; in the
/// guest it removes the shared host file from the guest's view (the host's file stays).
/// Before, the guest kernel freed the removed file's inode, and the pages of the library
/// not read yet could no longer be read: `SIGSEGV`.
fn a_removed_library_keeps_its_bytes(suffix: &str) {
    let lib = format!("{PROG_DIR}/libdynelf-big{suffix}.so");
    let prog = format!("{PROG_DIR}/dynelf-removed{suffix}");
    let copy = TempDir::unique("pvmux-dynelf", "removed");
    let copied = copy.0.join("libdynelf-big.so");
    std::fs::copy(&lib, &copied).expect("copy the library");
    let mut cmd = Command::new(&prog);
    cmd.arg(&copied);
    let want = run(cmd);
    assert_eq!(
        (want.code(), want.stdout.as_str()),
        (Some(0), "1 2 3\n"),
        "native: {}",
        want.context()
    );
    for vcpus in [1, 2] {
        let got = guest_on_host_root(vcpus, &[&prog, &lib]);
        assert_eq!(
            (got.code(), &got.stdout),
            (want.code(), &want.stdout),
            "on {vcpus} vCPU(s): {}",
            got.context()
        );
        assert!(Path::new(&lib).exists(), "the host's library stays");
    }
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn a_removed_glibc_library_keeps_its_bytes() {
    a_removed_library_keeps_its_bytes("");
}

#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn a_removed_musl_library_keeps_its_bytes() {
    a_removed_library_keeps_its_bytes("-musl");
}
