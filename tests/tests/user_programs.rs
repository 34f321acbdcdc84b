//! Static guest test programs (`tests/programs`, built by `tests/build.rs` into
//! `PVMUX_PROG_DIR`): native reference runs that pin down what each program does, and the
//! same programs run as guest user processes with `pvmux run --rootfs DIR -- /PROGRAM`,
//! whose output and exit status must match the native run.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_native, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// The Rust test programs.
const RUST_PROGRAMS: [&str; 7] = [
    "hello", "threads", "fsdemo", "spawn", "segv", "exitcode", "toolbox",
];
/// The static C program (built when the host has a static glibc: `have_static_glibc`).
const C_HELLO: &str = "hello-c";
/// Longest any single run may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// SIGSEGV on x86-64 Linux.
const SIGSEGV: i32 = 11;
/// SIGBUS on x86-64 Linux.
const SIGBUS: i32 = 7;

/// Runs `cmd` with null stdin and a clean environment, killing it after [`TIMEOUT`].
fn run(cmd: Command) -> Run {
    run_clean(cmd, TIMEOUT)
}

/// Runs test program `name` natively with `args`.
fn native(name: &str, args: &[&str]) -> Run {
    run_native(name, args, TIMEOUT)
}

/// A rootfs with every test program at `/NAME` and an empty `/tmp`.
fn rootfs() -> TempDir {
    let dir = TempDir::unique("pvmux-user-programs", "rootfs");
    for name in RUST_PROGRAMS
        .iter()
        .chain(&[C_HELLO, "hello-c-pie", "hello-musl"])
    {
        if prog(name).exists() {
            std::fs::copy(prog(name), dir.0.join(name)).expect("copy program");
        }
    }
    std::fs::create_dir(dir.0.join("tmp")).expect("mkdir tmp");
    dir
}

/// Runs `/program args...` under pvmux with `root` as its rootfs.
fn guest(root: &TempDir, program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .arg("--rootfs")
        .arg(&root.0)
        .arg("--")
        .arg(program)
        .args(args);
    run(cmd)
}

/// Asserts that a guest run printed and returned exactly what the native run did.
fn assert_same(what: &str, native: &Run, guest: &Run) {
    assert_eq!(
        guest.stdout, native.stdout,
        "{what}: guest stdout differs from the native run (guest stderr:\n{})",
        guest.stderr
    );
    assert_eq!(
        guest.code(),
        native.code(),
        "{what}: exit status (guest stderr:\n{})",
        guest.stderr
    );
}

/// The ELF program header types of `path` (64-bit little-endian only).
fn program_header_types(path: &Path) -> Vec<u32> {
    let elf = std::fs::read(path).expect("read program");
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(elf[4], 2, "{} is not 64-bit", path.display());
    assert_eq!(elf[5], 1, "{} is not little-endian", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes"));
    assert_eq!(u16_at(18), 62, "{} is not x86-64", path.display());
    let phoff = usize::try_from(u64_at(32)).expect("phoff");
    let phentsize = usize::from(u16_at(54));
    let phnum = usize::from(u16_at(56));
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

const HELLO_42: &str = "hello from a guest program\nargv0: hello\nargc: 4\n\
argv[1]: \"42\"\nargv[2]: \"a\"\nargv[3]: \"b c\"\n";

const THREADS: &str = "\
queue: producers=4 consumers=2 items=10000 sum=35820880000 ok
scope: partial=[312512500, 937512500, 1562512500, 2187512500] total=5000050000 ok
tls: child saw 0 then 99 as tls-child, main still 7
threads: all ok
";

#[test]
fn programs_are_static_executables() {
    const PT_INTERP: u32 = 3;
    const PT_LOAD: u32 = 1;
    let mut names: Vec<&str> = RUST_PROGRAMS.to_vec();
    if cfg!(have_static_glibc) {
        names.extend([C_HELLO, "hello-c-pie"]);
    }
    if cfg!(have_musl) {
        names.push("hello-musl");
    }
    for name in names {
        let types = program_header_types(&prog(name));
        assert!(types.contains(&PT_LOAD), "{name} has no PT_LOAD: {types:?}");
        assert!(
            !types.contains(&PT_INTERP),
            "{name} has an interpreter: it is not static"
        );
    }
}

#[test]
fn hello_native_reference() {
    let r = native("hello", &["42", "a", "b c"]);
    assert_eq!(r.stdout, HELLO_42);
    assert_eq!(r.code(), Some(42));
    let r = native("hello", &[]);
    assert_eq!(r.code(), Some(0));
    assert!(r.stdout.ends_with("argc: 1\n"), "{}", r.stdout);
}

#[test]
fn threads_native_reference() {
    let r = native("threads", &[]);
    assert_eq!(r.stdout, THREADS, "stderr: {}", r.stderr);
    assert_eq!(r.code(), Some(0));
}

#[test]
fn fsdemo_native_reference() {
    let (a, b) = (
        TempDir::unique("pvmux-user-programs", "fs-a"),
        TempDir::unique("pvmux-user-programs", "fs-b"),
    );
    let ra = native("fsdemo", &[a.0.to_str().expect("utf-8 path")]);
    let rb = native("fsdemo", &[b.0.to_str().expect("utf-8 path")]);
    assert_eq!(ra.code(), Some(0), "{}", ra.stdout);
    assert!(ra.stdout.ends_with("fsdemo: done\n"), "{}", ra.stdout);
    for line in [
        "append greeting.txt: \"hello, fs\\nsecond line\\n\"",
        "big.bin: len 100000 identical true",
        "rename to a/b/c/moved.txt: old exists false, new exists true",
        "metadata moved.txt: file true dir false len 9",
        "ls .: 5 entries\n  Beta file 12\n  a dir\n  alpha file 15\n  mid file 9\n  zeta file 12\n",
        "rmdir non-empty: error DirectoryNotEmpty",
        "remove fsdemo: exists false",
    ] {
        assert!(
            ra.stdout.contains(line),
            "missing {line:?} in\n{}",
            ra.stdout
        );
    }
    assert_eq!(
        ra.stdout, rb.stdout,
        "the transcript depends on the directory"
    );
    assert!(!a.0.join("fsdemo").exists(), "fsdemo left its directory");
}

#[test]
fn spawn_native_reference() {
    let hello = prog("hello");
    let r = native("spawn", &[hello.to_str().expect("utf-8 path")]);
    assert_eq!(r.code(), Some(0), "{}\n{}", r.stdout, r.stderr);
    for line in [
        "output> argv[2]: \"two words\"",
        "output> env PVMUX_TEST_FROM=\"spawn\"",
        "output: status Some(3)",
        "env PVMUX_TEST_INHERITED=\"yes\"\nstatus: Some(0)",
        "stdin> stdin: 72 bytes, 3 lines",
        "stdin> | LINE 2 THROUGH THE PIPE",
        "pipeline> | ARGV[2]: \"PIPED\"",
        "pipeline: first status Some(5), second status Some(0)",
        "missing: error NotFound",
        "spawn: all ok",
    ] {
        assert!(r.stdout.contains(line), "missing {line:?} in\n{}", r.stdout);
    }
    // Without an argument it finds `hello` next to itself.
    let r2 = native("spawn", &[]);
    assert_eq!(r2.stdout, r.stdout);
}

#[test]
fn segv_native_reference() {
    let r = native("segv", &[]);
    assert_eq!(r.status.signal(), Some(SIGSEGV), "{:?}", r.status);
    assert_eq!(r.stdout, "segv: writing to 0x10\n");
}

#[test]
fn segv_align_native_reference() {
    let r = native("segv", &["align"]);
    assert_eq!(r.status.signal(), Some(SIGBUS), "{:?}", r.status);
    assert_eq!(r.stdout, "segv: unaligned load with AC set\n");
}

#[test]
fn exitcode_native_reference() {
    for code in [0, 7, 255] {
        assert_eq!(native("exitcode", &[&code.to_string()]).code(), Some(code));
    }
    assert_eq!(native("exitcode", &[]).code(), Some(2));
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn c_hello_native_reference() {
    let r = native(C_HELLO, &["5", "x"]);
    assert_eq!(r.code(), Some(5), "{}", r.stdout);
    for line in [
        "hello from a static C program\nargc: 3\nargv[1]: 5\nargv[2]: x\n",
        "malloc(16): sum 0\n",
        "malloc(8388608): sum 66846720\n",
        "realloc: 7000 bytes\n",
        "getpid positive: yes\n",
        "time plausible: yes\n",
        "failures: 0\n",
    ] {
        assert!(r.stdout.contains(line), "missing {line:?} in\n{}", r.stdout);
    }
}

#[test]
fn hello_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/hello", &["42", "a", "b c"]);
    assert_same("hello 42", &native("hello", &["42", "a", "b c"]), &g);
    assert_eq!(g.stdout, HELLO_42);
    let g = guest(&root, "/hello", &[]);
    assert_same("hello", &native("hello", &[]), &g);
    assert_eq!(g.code(), Some(0));
}

#[test]
fn threads_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/threads", &[]);
    assert_same("threads", &native("threads", &[]), &g);
    assert_eq!(g.stdout, THREADS);
}

#[test]
fn fsdemo_under_pvmux() {
    let root = rootfs();
    let host_dir = TempDir::unique("pvmux-user-programs", "fs-native");
    let n = native("fsdemo", &[host_dir.0.to_str().expect("utf-8 path")]);
    assert_eq!(n.code(), Some(0));
    let g = guest(&root, "/fsdemo", &["/tmp"]);
    assert_same("fsdemo", &n, &g);
}

#[test]
fn spawn_under_pvmux() {
    let root = rootfs();
    let hello = prog("hello");
    let n = native("spawn", &[hello.to_str().expect("utf-8 path")]);
    let g = guest(&root, "/spawn", &["/hello"]);
    assert_same("spawn /hello", &n, &g);
    assert!(g.stdout.ends_with("spawn: all ok\n"), "{}", g.stdout);
    // The sibling lookup from argv[0] works in the guest too.
    let g = guest(&root, "/spawn", &[]);
    assert_same("spawn", &n, &g);
}

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn c_hello_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/hello-c", &["5", "x"]);
    assert_same("hello-c", &native(C_HELLO, &["5", "x"]), &g);
    assert_eq!(g.code(), Some(5));
}

#[test]
fn segv_exits_139_and_the_next_run_works() {
    let root = rootfs();
    let g = guest(&root, "/segv", &[]);
    assert_eq!(g.code(), Some(128 + SIGSEGV), "stderr:\n{}", g.stderr);
    assert_eq!(g.stdout, "segv: writing to 0x10\n");
    let g = guest(&root, "/hello", &["42", "a", "b c"]);
    assert_eq!(g.stdout, HELLO_42, "stderr:\n{}", g.stderr);
    assert_eq!(g.code(), Some(42));
}

/// An alignment check (#AC) in user code is a SIGBUS, as natively: the host's SIGBUS with
/// trap 17 reaches the guest kernel as `AlignmentCheck`, not as a page fault at address 0.
#[test]
fn alignment_check_is_sigbus_as_natively() {
    let root = rootfs();
    let n = native("segv", &["align"]);
    let g = guest(&root, "/segv", &["align"]);
    // pvmux exits with 128 + the signal that killed the program.
    assert_eq!(n.status.signal(), Some(SIGBUS), "native: {:?}", n.status);
    assert_eq!(g.code(), Some(128 + SIGBUS), "stderr:\n{}", g.stderr);
    assert_eq!(g.stdout, n.stdout, "stderr:\n{}", g.stderr);
}

#[test]
fn exitcode_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/exitcode", &["7"]);
    assert_eq!(g.code(), Some(7), "stderr:\n{}", g.stderr);
    assert_eq!(g.stdout, "");
    assert_eq!(guest(&root, "/exitcode", &["0"]).code(), Some(0));
}

/// The same C program as glibc static-pie: output and status identical to the native run.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn c_static_pie_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/hello-c-pie", &["6", "y"]);
    assert_same("hello-c-pie", &native("hello-c-pie", &["6", "y"]), &g);
    assert_eq!(g.code(), Some(6));
}

/// The same C program linked statically against musl: output and status identical to the
/// native run.
#[test]
#[cfg_attr(not(have_musl), ignore = "needs musl-gcc: apt-get install musl-tools")]
fn c_musl_under_pvmux() {
    let root = rootfs();
    let g = guest(&root, "/hello-musl", &["6", "y"]);
    assert_same("hello-musl", &native("hello-musl", &["6", "y"]), &g);
    assert_eq!(g.code(), Some(6));
}
