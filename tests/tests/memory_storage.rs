//! Memory and storage that scale with `--mem` (issue 11, items 1 and 7): file contents in the
//! page cache (user-pool frames), file mappings, large programs and allocations, and clear
//! errors when memory runs out. Every guest runs with the default `--mem` unless a test is
//! about a small guest, from the host's root (`--rootfs /`), and is compared with the same
//! program or script run natively where the behaviour is Linux's.

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded and runs write
/// hundreds of megabytes).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `argv` natively, with a clean environment but for `PATH`.
fn native(argv: &[&str]) -> Run {
    let mut cmd = Command::new(argv[0]);
    let what = format!("{argv:?}");
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    pvmux_tests::run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

/// Runs `argv` in a guest with the extra `pvmux run` options `opts`, from the host's root.
fn guest(opts: &[&str], argv: &[&str]) -> Run {
    let mut cmd = Command::new(PVMUX);
    cmd.arg("run")
        .args(opts)
        .args(["--rootfs", "/", "--"])
        .args(argv);
    run_clean(cmd, TIMEOUT)
}

/// Asserts that a guest run printed and returned exactly what the native run did.
fn assert_same(what: &str, native: &Run, guest: &Run) {
    assert_eq!(
        native.code(),
        Some(0),
        "{what}: the native run failed\n{}",
        native.context()
    );
    assert_eq!(
        guest.stdout, native.stdout,
        "{what}: guest stdout differs from the native run (guest stderr:\n{})",
        guest.stderr
    );
    assert_eq!(
        guest.code(),
        native.code(),
        "{what}: exit status\n{}",
        guest.context()
    );
}

/// The script of the big-file test: writes `SIZE` bytes of a repeated line to `$1/big`,
/// prints its size and checksum read back twice (once through `cat`, once as stdin), and
/// removes it.
const BIG_FILE_SCRIPT: &str = r#"
set -e
f="$1/big"
yes 'pvmux page cache: a line of a file larger than the kernel heap ever was' \
    | head -c 300000000 > "$f"
wc -c < "$f"
md5sum < "$f"
cat "$f" | md5sum
rm "$f"
"#;

/// A 300 MB file in the guest's `/tmp` (guest memory: the page cache) with the default
/// `--mem`: written, read back twice, the same size and checksum as natively.
#[test]
fn a_300_mb_file_in_tmp_has_the_native_checksum() {
    let dir = TempDir::unique("pvmux-memory-storage", "big");
    let d = dir.0.to_str().expect("utf-8 temp path");
    let n = native(&["/bin/sh", "-c", BIG_FILE_SCRIPT, "sh", d]);
    let g = guest(&[], &["/bin/sh", "-c", BIG_FILE_SCRIPT, "sh", "/tmp"]);
    assert_same("300 MB file", &n, &g);
    assert!(n.stdout.starts_with("300000000\n"), "{}", n.stdout);
}

/// A 200 MB `malloc`, every page touched, with the default `--mem`.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_200_mb_malloc_works_with_the_default_mem() {
    for name in variants("big-alloc") {
        let p = prog(&name);
        let p = p.to_str().expect("utf-8 path");
        let n = native(&[p, "200"]);
        let g = guest(&[], &[p, "200"]);
        assert_same(&name, &n, &g);
        assert_eq!(g.stdout, "touched 200 MiB, sum 6528000\n");
    }
}

/// The python script of the large-guest test: 64 MiB written page by page, eight `fork`ed
/// children each flipping a byte in every eighth page (copy-on-write) and exiting with a
/// byte of their copy's SHA-256, the parent's own hash: the same output natively.
const FORK_WRITE_SCRIPT: &str = r#"
import hashlib, os
b = bytearray(64 << 20)
for i in range(0, len(b), 4096):
    b[i] = i // 4096 % 251
pids = []
for k in range(8):
    p = os.fork()
    if p == 0:
        for i in range(k, len(b) // 4096, 8):
            b[i * 4096] ^= 0xFF
        os._exit(hashlib.sha256(b).digest()[0])
    pids.append(p)
print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids], hashlib.sha256(b).hexdigest())
"#;

/// A 64 GiB guest on this much smaller host: memory is taken on first touch, and the user
/// pool's per-frame tables (33.5 MiB for its 16.5 million frames, in frames that read as
/// zero until written: `mm::frame::boot_zeroed`) are not written at boot. It reports its size,
/// and a program that allocates, forks and writes copy-on-write pages runs as natively.
#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn a_64_gib_guest_boots_and_its_programs_run_as_natively() {
    let mem = guest(&["--mem", "64G"], &["/bin/head", "-1", "/proc/meminfo"]);
    assert_eq!(mem.code(), Some(0), "{}", mem.context());
    assert_eq!(
        mem.stdout.split_whitespace().collect::<Vec<_>>(),
        ["MemTotal:", "67108864", "kB"],
        "{}",
        mem.context()
    );
    let argv = ["/usr/bin/python3", "-c", FORK_WRITE_SCRIPT];
    let n = native(&argv);
    let g = guest(&["--mem", "64G"], &argv);
    assert_same("fork-write in a 64 GiB guest", &n, &g);
}

/// File mappings on a guest file (in `/tmp`, guest memory): a writable `MAP_SHARED` mapping
/// is seen by `read`, by a second process mapping the file and after `munmap`; `write` is
/// seen by the mapping; `msync`'s flags and errors; `MAP_PRIVATE` copy-on-write stays
/// private; the errors of a writable shared mapping of a read-only descriptor — the same
/// output as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn file_mappings_behave_as_natively() {
    let dir = TempDir::unique("pvmux-memory-storage", "maps");
    let d = dir.0.to_str().expect("utf-8 temp path");
    for name in variants("file-maps") {
        let p = prog(&name);
        let p = p.to_str().expect("utf-8 path");
        let n = native(&[p, d]);
        let g = guest(&["--vcpus", "1"], &[p, "/tmp"]);
        assert_same(&name, &n, &g);
        assert!(!n.stdout.contains("FAILED"), "native: {}", n.stdout);
        // And on 2 vCPUs (the default), the second process on either.
        let g2 = guest(&[], &[p, "/tmp"]);
        assert_same(&name, &n, &g2);
    }
}

/// Touching a page of a file mapping wholly past the end of the file is `SIGBUS`
/// (`BUS_ADRERR`, `si_addr` the address touched) and the page holding the end reads zeros past
/// it, for a page-cache file (the guest's `/tmp`) and a `--rootfs` file (a host file mapped
/// read-only); a file shrunk while mapped loses the pages past its new end (touched ones,
/// private copies too) and gets them back as zeros when it grows — the same output as
/// natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn touching_past_the_end_of_a_mapped_file_is_sigbus_as_natively() {
    let dir = TempDir::unique("pvmux-memory-storage", "sigbus");
    let d = dir.0.to_str().expect("utf-8 temp path");
    // An existing host file, not a multiple of the page size.
    let file = dir.0.join("existing.dat");
    std::fs::write(&file, vec![b'e'; 3 * 4096 + 123]).expect("write the host file");
    let f = file.to_str().expect("utf-8 path");
    for name in variants("sigbus-eof") {
        let p = prog(&name);
        let p = p.to_str().expect("utf-8 path");
        let n = native(&[p, d, f]);
        let g = guest(&[], &[p, "/tmp", f]);
        assert_same(&name, &n, &g);
        // Not vacuous: the native run met SIGBUS where Linux sends it, and nothing else.
        assert!(
            n.stdout
                .contains("shared read +8192: SIGBUS code=BUS_ADRERR at +8192"),
            "{}",
            n.stdout
        );
        assert!(
            n.stdout
                .contains("existing private read +16384: SIGBUS code=BUS_ADRERR at +16384"),
            "{}",
            n.stdout
        );
        assert!(!n.stdout.contains("SIGSEGV"), "{}", n.stdout);
    }
}

/// A program larger than 64 MiB (a static C program with a 72 MiB initialised array, built
/// here) runs, from the host share, with the same output as natively.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn a_program_larger_than_64_mib_runs() {
    let dir = TempDir::unique("pvmux-memory-storage", "bigexe");
    let src = dir.0.join("bigexe.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n\
         static unsigned char big[72 << 20] = {1, 2, 3};\n\
         int main(void) {\n\
             unsigned long s = 0;\n\
             for (unsigned long i = 0; i < sizeof big; i += 4096) big[i] = (unsigned char)i ^ 7;\n\
             for (unsigned long i = 0; i < sizeof big; i += 4096) s += big[i] + big[i + 1];\n\
             printf(\"%zu %lu\\n\", sizeof big, s);\n\
             return 0;\n\
         }\n",
    )
    .expect("write the source");
    let exe = dir.0.join("bigexe");
    let cc = Command::new("gcc")
        .args(["-O1", "-static", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(cc.success(), "gcc failed");
    let size = std::fs::metadata(&exe).expect("stat").len();
    assert!(size > 64 << 20, "the program is only {size} bytes");
    let e = exe.to_str().expect("utf-8 path");
    let n = native(&[e]);
    let g = guest(&[], &[e]);
    assert_same("72 MiB program", &n, &g);
    // Twice: the second exec maps it from the image cache.
    let g = guest(&[], &["/bin/sh", "-c", &format!("{e} && {e}")]);
    assert_eq!(g.stdout, n.stdout.repeat(2), "{}", g.context());
}

/// Running out of memory is a clear error: a file past `/tmp`'s limit (half of `--mem`)
/// gets `ENOSPC` after the bytes that fit, as tmpfs; a program that touches more than the
/// guest has is killed with pvmux's out-of-memory line.
#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn running_out_of_memory_is_a_clear_error() {
    let g = guest(
        &["--mem", "256M"],
        &[
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/tmp/f bs=1M count=200 2>&1; echo status $?; wc -c < /tmp/f",
        ],
    );
    assert!(
        g.stdout.contains("No space left on device"),
        "{}",
        g.context()
    );
    // tmpfs's default limit, half of memory: 128 MiB of the 256 MiB.
    assert!(
        g.stdout.ends_with(&format!("status 1\n{}\n", 128 << 20)),
        "{}",
        g.context()
    );

    let name = "big-alloc";
    let p = prog(name);
    let g = guest(
        &["--mem", "128M"],
        &[p.to_str().expect("utf-8 path"), "200"],
    );
    assert_eq!(g.code(), Some(128 + 9), "{}", g.context());
    let line = g.stderr.trim_end();
    assert!(
        line.starts_with(&format!(
            "pvmux: {} (pid 1) killed: out of memory",
            p.display()
        )) && line.ends_with("guest memory 128 MiB, try a larger --mem)"),
        "{:?}",
        g.stderr
    );
}
