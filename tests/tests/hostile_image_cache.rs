//! A program that rewrites the kernel's cached image of a binary (through stub code it can
//! map every user-pool page, docs/SECURITY.md) must not change what later runs of that
//! binary execute once it has exited: the guest kernel verifies a cached image before every
//! exec that uses it and reads the file again if it was modified
//! (`pv-kernel/src/linux/imagecache.rs`). Those frames hold a `--rootfs` program only with
//! `--no-file-windows`: by default its pages are the host's, mapped read-only from a host
//! file window, and no pool page holds a copy to patch (checked below too).

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_with_timeout, Run, TempDir};

const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Guest memory of the run.
const MEM: u64 = 64 << 20;
/// What `hello` prints first, and the same length patched in.
const FROM: &str = "hello from a guest program";
const TO: &str = "HACKED from a guest progra";

fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    cmd.env_clear();
    run_with_timeout(
        cmd,
        &what,
        Duration::from_secs(120),
        Duration::from_millis(20),
        |_| {},
    )
}

/// `pvmux run` with the image cache copying `--rootfs` programs into pool frames (what the
/// attacks below go after), the kernel log on stderr.
const COPYING_RUN: [&str; 6] = ["run", "--mem", "64M", "--log", "debug", "--no-file-windows"];

/// How many pool copies of its target `patch-image` reported patching.
fn patched_copies(guest: &Run) -> u32 {
    guest
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("patch-image: patched "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no patch report: {}", guest.context()))
}

/// Both runs of the target in `guest` (before and after the attack) printed exactly what
/// its native run prints.
fn assert_both_runs_native(guest: &Run, native: &Run) {
    let runs: Vec<&str> = guest
        .stdout
        .lines()
        .filter(|l| !l.starts_with("patch-image:") && !l.starts_with("hostile:"))
        .collect();
    let want: Vec<&str> = native.stdout.lines().chain(native.stdout.lines()).collect();
    assert_eq!(runs, want, "{}", guest.context());
}

/// A root holding `hostile` and `hello`, and `hello`'s native run.
fn hello_root(tag: &str) -> (TempDir, Run) {
    let root = TempDir::unique("pvmux-image-cache", tag);
    for name in ["hostile", "hello"] {
        std::fs::copy(prog(name), root.0.join(name)).expect("copy program");
    }
    let native = run(Command::new(prog("hello")));
    assert_eq!(native.code(), Some(0), "{}", native.context());
    (root, native)
}

#[test]
fn a_patched_cached_image_does_not_outlive_the_attacker() {
    let (root, native) = hello_root("rootfs");
    let base = pvmux_host::domain_builder::user_pool_base(MEM);
    let mut cmd = Command::new(PVMUX);
    cmd.args(COPYING_RUN)
        .arg("--rootfs")
        .arg(&root.0)
        .args(["--", "/hostile", "patch-image"])
        .arg(base.to_string())
        .arg((MEM - base).to_string())
        .args(["/hello", FROM, TO]);
    let guest = run(cmd);
    let ctx = guest.context();
    assert_eq!(guest.code(), Some(0), "{ctx}");
    // The attack really happened: the attacker patched at least the cached copy.
    let patched = patched_copies(&guest);
    assert!(patched >= 1, "{ctx}");
    assert!(guest.has_line("patch-image: attacker exited 0"), "{ctx}");
    // Both runs of hello printed exactly what the native run prints; nothing patched ran.
    assert_both_runs_native(&guest, &native);
    assert!(!guest.stdout.contains("HACKED"), "{ctx}");
    assert!(guest.has_line("hostile: contained"), "{ctx}");
    // The kernel noticed and said so (kernel log on stderr with --log debug).
    assert!(
        guest.stderr.contains("was modified"),
        "the kernel did not report the modified image: {ctx}"
    );
}

/// By default a `--rootfs` program's pages are a host file window's, which no guest program
/// can write: whatever pool copy of the file the attacker patches (the page cache's, from
/// its own read), the program's next run executes the host's bytes.
#[test]
fn a_program_run_from_a_host_file_window_cannot_be_patched() {
    let (root, native) = hello_root("window");
    let base = pvmux_host::domain_builder::user_pool_base(MEM);
    let mut cmd = Command::new(PVMUX);
    cmd.args(["run", "--mem", "64M", "--log", "debug", "--rootfs"])
        .arg(&root.0)
        .args(["--", "/hostile", "patch-image"])
        .arg(base.to_string())
        .arg((MEM - base).to_string())
        .args(["/hello", FROM, TO]);
    let guest = run(cmd);
    let ctx = guest.context();
    // The attacker may find the page cache's copy of the file (it read the file to know
    // what to look for), never one the program runs from: the second run is unchanged, and
    // the kernel had no cached image to find modified.
    assert_both_runs_native(&guest, &native);
    assert!(
        guest.has_line("patch-image: attacker exited 0") || guest.stdout.contains("patched 0"),
        "{ctx}"
    );
    assert!(!guest.stdout.contains("HACKED"), "{ctx}");
    assert!(!guest.stderr.contains("was modified"), "{ctx}");
}

/// Builds `libmagic.so` from `lib_c` and a program from `main_c` that uses it, runs the
/// program natively and then, in the guest, before and after an attacker rewrote `from` to
/// `to` in every pool copy of the library it found: both guest runs must print what the
/// native run prints, and the kernel must have noticed the change.
fn patched_library_case(name: &str, lib_c: &str, main_c: &str, from: &str, to: &str) {
    let dir = TempDir::unique("pvmux-image-cache", name);
    let d = dir.0.display().to_string();
    std::fs::write(dir.0.join("magic.c"), lib_c).expect("write magic.c");
    std::fs::write(dir.0.join("main.c"), main_c).expect("write main.c");
    let build = |args: &[&str]| {
        let out = Command::new("gcc")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .expect("gcc");
        assert!(out.status.success(), "gcc {args:?}: {out:?}");
    };
    build(&["-O1", "-fPIC", "-shared", "-o", "libmagic.so", "magic.c"]);
    let rpath = format!("-Wl,-rpath,{d}");
    build(&["-O1", "-o", "prog", "main.c", "-L.", "-lmagic", &rpath]);
    let (lib, prog_path) = (format!("{d}/libmagic.so"), format!("{d}/prog"));
    let native = run(Command::new(&prog_path));
    assert_eq!(native.code(), Some(0), "{}", native.context());
    assert!(native.stdout.contains(from), "{}", native.context());
    let base = pvmux_host::domain_builder::user_pool_base(MEM);
    let mut cmd = Command::new(PVMUX);
    cmd.args(COPYING_RUN)
        .args(["--rootfs", "/", "--"])
        .arg(prog("hostile"))
        .arg("patch-image")
        .arg(base.to_string())
        .arg((MEM - base).to_string())
        .args([lib.as_str(), from, to, prog_path.as_str()]);
    let guest = run(cmd);
    let ctx = guest.context();
    assert_eq!(guest.code(), Some(0), "{ctx}");
    let patched = patched_copies(&guest);
    assert!(patched >= 1, "{ctx}");
    assert!(guest.has_line("patch-image: attacker exited 0"), "{ctx}");
    assert_both_runs_native(&guest, &native);
    assert!(!guest.stdout.contains(&format!("{to}\n")), "{ctx}");
    assert!(guest.has_line("hostile: contained"), "{ctx}");
    assert!(
        guest.stderr.contains("was modified"),
        "the kernel did not report the modified library image: {ctx}"
    );
}

/// The code of a shared library comes from the image cache too (an executable `mmap` of a
/// host file maps the cached frames after verifying them): a program that patches those
/// frames and exits must not change what the library runs in a later process. The library's
/// function returns a constant whose bytes (`MAGI`) are an immediate in its code.
#[test]
#[cfg_attr(not(have_gcc), ignore = "needs gcc: apt-get install gcc")]
fn a_patched_cached_library_does_not_outlive_the_attacker() {
    patched_library_case(
        "library-code",
        "unsigned magic(void) { return 0x4947414d; }\n",
        "#include <stdio.h>\nunsigned magic(void);\n\
         int main(void) { unsigned v = magic(); printf(\"magic %.4s\\n\", (char *)&v); return 0; }\n",
        "MAGI",
        "HACK",
    );
}

/// So do the library's other parts (`ld.so` maps its headers, read-only data and data
/// without `PROT_EXEC`): a string constant of the library, patched in the pool by a program
/// that then exits, must read as in the file in a later process.
#[test]
#[cfg_attr(not(have_gcc), ignore = "needs gcc: apt-get install gcc")]
fn a_patched_library_constant_does_not_outlive_the_attacker() {
    patched_library_case(
        "library-data",
        "const char *word(void) { return \"pvmux-original-word\"; }\n",
        "#include <stdio.h>\nconst char *word(void);\n\
         int main(void) { printf(\"word %s\\n\", word()); return 0; }\n",
        "pvmux-original-word",
        "pvmux-HACKED---word",
    );
}

/// Runs `/NAME MODE` in a guest whose root is `root` (the program copied there), with a
/// clean environment.
fn guest_image_bytes(root: &TempDir, name: &str, mode: &str) -> Run {
    let mut cmd = Command::new(PVMUX);
    // `--no-patch`: the program compares its own code with its file, which is what the
    // opt-out is for — with syscall-site patching (the default) its patched sites differ from
    // the file, as documented (docs/ARCHITECTURE.md, "Syscall-site patching").
    cmd.args(["run", "--no-patch", "--mem", "64M", "--rootfs"])
        .arg(&root.0)
        .args(["--", &format!("/{name}"), mode]);
    run(cmd)
}

/// Program images are read lazily, a 64 KiB chunk at first touch
/// (`pv-kernel/src/linux/imagecache.rs`): every byte of a program's read-only segments (over
/// 1 MiB here, most of it never touched before the check) is the file's, as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_lazily_read_image_holds_the_files_bytes_as_natively() {
    for name in pvmux_tests::variants("image-bytes") {
        let root = TempDir::unique("pvmux-image-cache", "lazy");
        std::fs::copy(prog(&name), root.0.join(&name)).expect("copy program");
        let native = pvmux_tests::run_native(&name, &["check"], Duration::from_secs(30));
        assert_eq!(native.code(), Some(0), "{}", native.context());
        assert!(
            native
                .stdout
                .contains("over 1 MiB of bytes, as in the file"),
            "{}",
            native.stdout
        );
        // Twice in one guest: the second exec maps the cached chunks (checked, not read).
        let guest = guest_image_bytes(&root, &name, "check");
        assert_eq!(guest.code(), Some(0), "{}", guest.context());
        assert_eq!(guest.stdout, native.stdout, "{}", guest.context());
    }
}

/// A program that makes its own read-only image writable (`mprotect`) and rewrites it gets
/// a private copy: the cached image stays the file's, and the next exec of the program (its
/// own child) sees the file's bytes, as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_program_rewriting_its_own_image_gets_a_private_copy() {
    for name in pvmux_tests::variants("image-bytes") {
        let root = TempDir::unique("pvmux-image-cache", "rewrite");
        std::fs::copy(prog(&name), root.0.join(&name)).expect("copy program");
        let native = pvmux_tests::run_native(&name, &["write"], Duration::from_secs(30));
        assert_eq!(native.code(), Some(0), "{}", native.context());
        assert!(
            native.has_line("rewritten: REWRITTEN in memory")
                && native.has_line("message: the message as the file has it")
                && native.has_line("child: exit 0"),
            "{}",
            native.stdout
        );
        let guest = guest_image_bytes(&root, &name, "write");
        assert_eq!(guest.code(), Some(0), "{}", guest.context());
        assert_eq!(guest.stdout, native.stdout, "{}", guest.context());
    }
}

/// A program whose file shrinks on the host while it runs gets `SIGBUS` (`BUS_ADRERR`) when
/// it first touches a page of its image past the new end, as Linux gives for a file mapping
/// truncated under it — never zeros or bytes of another file in place of its own. (Natively
/// the host refuses to truncate a running program, `ETXTBSY`: no native reference.)
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_program_truncated_under_it_gets_sigbus_not_garbage() {
    // From a host file window (the host's `SIGBUS` under the mapping), and from the image
    // cache's frames (the chunk's read finds the file changed).
    truncated_case(&[]);
    truncated_case(&["--no-file-windows"]);
}

fn truncated_case(extra: &[&str]) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let name = "image-bytes";
    let root = TempDir::unique("pvmux-image-cache", &format!("truncate{}", extra.len()));
    let file = root.0.join(name);
    std::fs::copy(prog(name), &file).expect("copy program");
    let mut child = Command::new(PVMUX)
        .env_clear()
        .args(["run", "--mem", "64M"])
        .args(extra)
        .arg("--rootfs")
        .arg(&root.0)
        .args(["--", &format!("/{name}"), "truncate"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pvmux");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(out).lines() {
            let line = line.expect("read stdout");
            if let Some(off) = line.strip_prefix("ready ") {
                tx.send(off.parse::<u64>().expect("offset")).expect("send");
            }
            lines.push(line);
        }
        lines
    });
    let off = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the guest program never got ready");
    let len = std::fs::metadata(&file).expect("stat").len();
    assert!(off > 0 && off + 4096 < len, "offset {off} of {len}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(off))
        .expect("truncate the host file");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the guest did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().expect("reader");
    assert!(!lines.iter().any(|l| l.starts_with("read ")), "{lines:?}");
    if extra.is_empty() {
        // A window's pages past the new end are all gone, as a file mapping's are on Linux
        // (the host's page cache dropped them), the handler's code too if it lies there:
        // `SIGBUS` kills the program (pvmux exits 128 + 7) unless its handler still runs.
        let handled = lines.iter().any(|l| l == "signal 7 code 2") && status.code() == Some(7);
        assert!(
            handled || status.code() == Some(128 + 7),
            "{lines:?} {status:?}"
        );
    } else {
        // SIGBUS is 7, BUS_ADRERR 2; the handler (in pages read before) exits 7.
        assert!(
            lines.iter().any(|l| l == "signal 7 code 2"),
            "{lines:?} {status:?}"
        );
        assert_eq!(status.code(), Some(7), "{lines:?}");
    }
}
