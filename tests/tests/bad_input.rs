//! Bad input gets a clear error, never a kernel panic: malformed executables fail `execve`
//! as on Linux (a guest shell running them prints and exits exactly as the native one), and
//! a system call the kernel does not implement returns `ENOSYS` and is named once in the
//! kernel log (`pvmux run --log debug`). (A missing or non-ELF interpreter and a library that
//! does not load: `dynamic_elf.rs`.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{procfs, run_with_timeout, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (loaded 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(180);

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

/// `program` and the shared libraries `ldd` lists for it, copied into `root`.
fn copy_with_libraries(root: &Path, program: &str) {
    copy_in(root, program);
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .expect("run ldd (libc-bin)");
    assert!(out.status.success(), "ldd {program}: {out:?}");
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let l = l.trim();
        let path = l.split_once("=> ").map_or(l, |(_, p)| p);
        if let Some(p) = path
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            copy_in(root, p);
        }
    }
}

fn executable(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

#[test]
#[cfg_attr(
    not(have_glibc_ld_so),
    ignore = "needs glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd: apt-get install libc6 libc-bin"
)]
fn malformed_executables_fail_as_on_linux() {
    let root = TempDir::unique("pvmux-badinput", "rootfs");
    copy_with_libraries(&root.0, "/bin/sh");
    let good = std::fs::read("/bin/sh").expect("read /bin/sh");
    // Only the ELF magic and a few bytes: shorter than an ELF header.
    executable(&root.0.join("short"), b"\x7fELF\x02\x01\x01\0\0\0\0\0");
    // A whole program for another machine (e_machine = AArch64).
    let mut arm = good;
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    executable(&root.0.join("arm"), &arm);
    // (Not compared: a 64-bit program whose `EI_CLASS` says 32-bit. Linux does not look at
    // that byte and runs it; the pvmux loader refuses it with `ENOEXEC`.)
    // An executable file that is not readable as a program at all (binary garbage).
    executable(
        &root.0.join("garbage"),
        &[0u8, 1, 2, 3, 0xff, 0, 0, 9].repeat(64),
    );
    let script = "./short; echo short $?; ./arm; echo arm $?; \
                  ./garbage; echo garbage $?";
    let argv = ["/bin/sh", "-c", script];
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).current_dir(&root.0);
    let want = run(cmd);
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .args(argv);
    let got = run(cmd);
    assert_eq!(
        (got.code(), &got.stdout, &got.stderr),
        (want.code(), &want.stdout, &want.stderr),
        "guest:\n{}\nnative:\n{}",
        got.context(),
        want.context()
    );
}

#[test]
#[cfg_attr(not(have_python3), ignore = "needs python3: apt-get install python3")]
fn an_unimplemented_system_call_is_enosys_and_named_once() {
    // kexec_load (246): a guest may never load a kernel; three calls, one log line.
    let prog = "import ctypes\n\
                libc = ctypes.CDLL(None, use_errno=True)\n\
                for _ in range(3):\n    \
                    r = libc.syscall(246, 0, 0, 0, 0)\n    \
                    print(r, ctypes.get_errno())\n";
    let mut cmd = Command::new(PVMUX);
    cmd.args(["--log", "debug", "run", "--rootfs", "/", "--"])
        .args(["/usr/bin/python3", "-c", prog]);
    let got = run(cmd);
    assert_eq!(got.code(), Some(0), "{}", got.context());
    assert_eq!(got.stdout, "-1 38\n".repeat(3), "{}", got.context());
    let named = got
        .stderr
        .lines()
        .filter(|l| l.contains("system call 246 (kexec_load) is not implemented: ENOSYS"))
        .count();
    assert_eq!(named, 1, "{}", got.context());
}

#[test]
fn a_launch_whose_domain_does_not_fit_fails_clearly_and_leaves_no_sandbox() {
    // The launch starts the kernel sandbox while it builds the domain: a build that fails
    // (an initramfs larger than the guest memory) must end that sandbox too.
    let root = TempDir::unique("pvmux-badinput", "too-big");
    let blob = std::fs::File::create(root.0.join("blob")).expect("create");
    blob.set_len(80 << 20).expect("a sparse 80 MiB file");
    let before = procfs::orphaned_sandboxes();
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--mem", "64M", "--rootfs-pack"])
        .arg(&root.0)
        .args(["--", "/blob"]);
    let r = run(cmd);
    assert_eq!(r.code(), Some(125), "{}", r.context());
    assert!(
        r.stderr.contains("does not fit in guest memory of 64 MiB"),
        "{}",
        r.context()
    );
    // A sandbox left behind would still be there (it waits for an entry point forever).
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<u32> = procfs::orphaned_sandboxes()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(left.is_empty(), "sandboxes left behind: {left:?}");
}
