//! Helpers for pvmux integration tests: a host with the embedded stub, the embedded kernel,
//! tenants whose console is captured, parsers for the guest's `ls=`/`cat=` output, temporary
//! directories, and running a command (such as the `pvmux` CLI) with a timeout.
//!
//! `CARGO_BIN_EXE_pvmux-cli` is only known to integration tests, so helpers that run the CLI
//! take the command from the test.
//!
//! # Guest programs
//!
//! Tests run the workspace's own static programs as guest programs: the Rust programs in
//! `tests/programs/src/bin/` and the C programs in `tests/programs/c/`, built by `build.rs`
//! into the directory `env!("PVMUX_PROG_DIR")` (see `toolbox` for small commands such as
//! `cat`, `sleep` and a fork-exec loop). Prefer them to host tools: they are always there.
//!
//! # Tests that need an optional host tool
//!
//! A test that needs a tool the workspace does not build (busybox-static to test a real
//! shell, a C toolchain, a pseudo-terminal, a benchmark peer) is *ignored* without it, never
//! silently passed: `build.rs` detects each tool once (`tests/build/optional_tools.rs`) and
//! sets a cfg, and the test carries one attribute saying what it needs and how to get it:
//!
//! ```text
//! #[test]
//! #[cfg_attr(not(have_busybox), ignore = "needs /bin/busybox: apt-get install busybox-static")]
//! fn my_busybox_test() { ... }
//! ```
//!
//! | cfg                 | tool                     | Debian package    |
//! |---------------------|--------------------------|-------------------|
//! | `have_busybox`      | static `/bin/busybox`    | `busybox-static`  |
//! | `have_static_glibc` | `libc.a` (C programs)    | `libc6-dev`       |
//! | `have_musl`         | `musl-gcc` (C programs)  | `musl-tools`      |
//! | `have_script`       | `script` (a terminal)    | `bsdutils`        |
//! | `have_uml`          | `linux.uml` (bench peer) | `user-mode-linux` |
//! | `have_runsc`        | `runsc` (bench peer)     | `runsc`           |
//! | `have_python3`      | `/usr/bin/python3`       | `python3`         |
//! | `have_perl`         | `/usr/bin/perl`          | `perl`            |
//! | `have_make`         | `make` (with gcc)        | `make`, `gcc`     |
//! | `have_gcc`          | `gcc` (dynamic C builds) | `gcc`             |
//! | `have_timeout`      | `/usr/bin/timeout`       | `coreutils`       |
//! | `have_git`          | `git`                    | `git`             |
//! | `have_sqlite3`      | the `sqlite3` shell      | `sqlite3`         |
//! | `have_shfmt`        | `shfmt` (a Go program)   | `shfmt`           |
//! | `have_java`         | a JDK (`java`, `javac`)  | `openjdk-17-jdk-headless` |
//! | `have_node`         | Node.js (`node`)         | `nodejs`          |
//! | `have_postgres`     | PostgreSQL 15 server     | `postgresql-15`   |
//! | `have_podman`       | `podman` (OCI engine)    | `podman`          |
//! | `have_containerd`   | containerd, `ctr`, shim  | `containerd`      |
//! | `have_root`         | running as root          | (run as root)     |
//! | `have_user_nobody`  | a user `nobody`          | (`useradd nobody`)|
//!
//! Without the tool, libtest prints `ignored, needs ...` for the test and counts it in the
//! summary, and the build prints one warning per missing tool naming the ignored tests and
//! the package. With `PVMUX_REQUIRE_ALL_TESTS=1` (CI) a missing tool is a build error. Several
//! tools: `not(all(have_busybox, have_script))`. A new tool is one entry in `TOOLS` in
//! `tests/build/optional_tools.rs`.
//!
//! `have_root` is the build's effective uid (the tests run as the user who builds them): a
//! test whose native run changes ids or whose fixture has files of other owners carries
//! `#[cfg_attr(not(have_root), ignore = "needs root: run the tests as root (CI does)")]`.
//! What a build-time cfg cannot know (a native run failing) is a failed assertion, not a skip.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmux_host::{Host, KernelImage, Tenant, TenantConfig};
use pvmux_hypercalls::BootArgsBuf;

pub mod ext2;
pub mod oci;
pub mod procfs;
pub mod state_root;

/// A host running the embedded stub.
pub fn host() -> Host {
    Host::new(pvmux::images::STUB).expect("host starts")
}

/// The embedded test kernel (the guest kernel with its `diagnostics` feature: `selftest`,
/// `hostile=`, `bench=`, the crash commands), which the library-level tests boot.
pub fn kernel() -> Arc<KernelImage> {
    Arc::new(KernelImage::parse(pvmux::images::KERNEL_TEST).expect("embedded kernel parses"))
}

/// The embedded default kernel: what `pvmux run` boots for programs (no diagnostics).
pub fn default_kernel() -> Arc<KernelImage> {
    Arc::new(KernelImage::parse(pvmux::images::KERNEL).expect("embedded kernel parses"))
}

/// A console sink that keeps everything the guest printed.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything captured so far, as raw bytes (`cat=` output need not be UTF-8).
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("capture lock").clone()
    }

    /// Everything captured so far, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The boot arguments of kernel command-line `words` (as `pvmux run --cmdline` takes them);
/// an unknown or malformed word fails the test.
pub fn args(words: &str) -> BootArgsBuf {
    BootArgsBuf::from_words(words).unwrap_or_else(|e| panic!("--cmdline {words:?}: {e}"))
}

/// The test configuration every helper starts from: the test kernel, 64 MiB, the console
/// discarded and the kernel log on stdout, no limits, no initrd or share. `words` are the
/// kernel command line ([`args`]).
pub fn config(name: &str, words: &str, vcpus: u32) -> TenantConfig {
    TenantConfig::new(
        name,
        kernel(),
        64 << 20,
        vcpus,
        args(words),
        Box::new(std::io::sink()),
    )
}

/// Launches the embedded kernel with the command-line `words` on `vcpus` vCPUs and 64 MiB
/// of memory.
pub fn launch(host: &Host, name: &str, words: &str, vcpus: u32) -> (Tenant, Capture) {
    let console = Capture::default();
    let cfg = TenantConfig {
        console: Box::new(console.clone()),
        ..config(name, words, vcpus)
    };
    let tenant = host.launch(cfg).expect("tenant launches");
    assert!(
        tenant.wait_started(std::time::Duration::from_secs(10)),
        "tenant {name} did not start: {:?}",
        tenant.state()
    );
    (tenant, console)
}

/// Holds a [`launch_waiting`] tenant's program back: its console input stays open until
/// [`Gate::open`] (or drop) ends it.
pub struct Gate(Option<std::io::PipeWriter>);

impl Gate {
    /// A gate that ends a console input when `writer` (its pipe's write end) is dropped.
    pub fn new(writer: std::io::PipeWriter) -> Self {
        Self(Some(writer))
    }

    /// Ends the console input: the program exits with its code.
    pub fn open(&mut self) {
        self.0.take();
    }
}

/// Launches the embedded test kernel on `vcpus` vCPUs running `/toolbox wait-eof CODE` (the
/// workspace's test programs are shared as the guest's root): the program exits with `code`
/// only once its console input ends, when the returned [`Gate`] is opened. Until then the
/// tenant cannot end by itself, so a test can look at its sandbox without racing its exit.
pub fn launch_waiting(host: &Host, name: &str, vcpus: u32, code: u8) -> (Tenant, Capture, Gate) {
    let (input, gate) = std::io::pipe().expect("pipe for the console input");
    let options = pvmux_hypercalls::bootargs::Options {
        hostfs: true,
        ..Default::default()
    };
    let code_arg = code.to_string();
    let argv = ["/toolbox", "wait-eof", code_arg.as_str()];
    let share = pvmux_host::hostfs::HostFs::open(std::path::Path::new(env!("PVMUX_PROG_DIR")))
        .expect("the test programs' directory can be shared");
    let console = Capture::default();
    let cfg = TenantConfig {
        console: Box::new(console.clone()),
        boot_args: BootArgsBuf::new(&options, [], argv).expect("boot arguments fit"),
        console_input: Some(pvmux_host::ConsoleInput::Reader(Box::new(input))),
        hostfs: Some(Arc::new(share)),
        ..config(name, "", vcpus)
    };
    let tenant = host.launch(cfg).expect("tenant launches");
    assert!(
        tenant.wait_started(std::time::Duration::from_secs(10)),
        "tenant {name} did not start: {:?}",
        tenant.state()
    );
    (tenant, console, Gate(Some(gate)))
}

/// The lines printed after `pvmux-kernel: ls PATH: N entries` (which must be present).
pub fn ls_lines(out: &str, path: &str) -> Vec<String> {
    let prefix = format!("pvmux-kernel: ls {path}: ");
    let mut lines = out.lines();
    let header = lines
        .by_ref()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `ls {path}` output:\n{out}"));
    let n: usize = header[prefix.len()..]
        .strip_suffix(" entries")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad ls header {header:?}"));
    lines.take(n).map(str::to_owned).collect()
}

/// The bytes printed by `cat=PATH` (after its `N bytes` header line).
pub fn cat_bytes(out: &[u8], path: &str) -> Vec<u8> {
    let prefix = format!("pvmux-kernel: cat {path}: ");
    let at = out
        .windows(prefix.len())
        .position(|w| w == prefix.as_bytes())
        .unwrap_or_else(|| panic!("no `cat {path}` output:\n{}", String::from_utf8_lossy(out)));
    let rest = &out[at + prefix.len()..];
    let eol = rest
        .iter()
        .position(|&b| b == b'\n')
        .expect("header line ends");
    let n: usize = std::str::from_utf8(&rest[..eol])
        .ok()
        .and_then(|s| s.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .expect("cat header has a byte count");
    rest[eol + 1..eol + 1 + n].to_vec()
}

/// A fresh directory under the system temp dir, removed (best effort) on drop.
pub struct TempDir(
    /// The directory's path.
    pub PathBuf,
);

impl TempDir {
    /// Creates `path` as a fresh, empty directory (removing a leftover of an earlier run).
    pub fn at(path: PathBuf) -> Self {
        // Ignoring the error: a leftover of an earlier run usually does not exist.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// `TMP/PREFIX-PID-N-WHAT`, with `N` counting the directories made so far by this
    /// process, so every call gets its own directory.
    pub fn unique(prefix: &str, what: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self::at(std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{what}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// `TMP/PREFIX-TAG-PID`: one directory per tag and test process.
    pub fn per_process(prefix: &str, tag: &str) -> Self {
        Self::at(std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Ignoring the error: cleanup is best effort.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a finished process left: exit status, stdout and stderr.
pub struct Run {
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout, as (lossy) UTF-8.
    pub stdout: String,
    /// Everything it wrote to stderr, as (lossy) UTF-8.
    pub stderr: String,
}

impl Run {
    /// The exit code, or `None` when the process was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether stdout has exactly this line.
    pub fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }

    /// Stdout and stderr, for assertion messages.
    pub fn context(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to its end with null stdin and a clean environment (`PATH=/usr/bin:/bin`,
/// `LC_ALL=C`: native and guest runs print alike), capturing its output; panics if it cannot
/// start.
pub fn output_in_clean_env(mut cmd: Command) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` with null stdin, capturing stdout and stderr, and panics (after killing it) if
/// it has not finished within `timeout`. `what` names the command in panic messages. Every
/// `poll`, `sample` is called with the child's pid, then the child is checked for exit.
pub fn run_with_timeout(
    cmd: Command,
    what: &str,
    timeout: Duration,
    poll: Duration,
    sample: impl FnMut(u32),
) -> Run {
    run_with_timeout_stdin(cmd, Stdio::null(), what, timeout, poll, sample)
}

/// [`run_with_timeout`] with `stdin` as the child's stdin. `Stdio::piped()` gives a stdin
/// that stays open and empty until the child ends (a pipe nobody writes): for `script`,
/// which types the terminal's end-of-file character (`^D`) into its session as soon as its
/// own stdin ends — input that reaches the program under test, at a moment that depends on
/// timing.
pub fn run_with_timeout_stdin(
    mut cmd: Command,
    stdin: Stdio,
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut sample: impl FnMut(u32),
) -> Run {
    // A piped stdin's write end stays in `child` (open) until the child has been waited for.
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = child.id();
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).map(|_| v)
    });
    let start = Instant::now();
    let status = loop {
        sample(pid);
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > timeout {
            // Ignoring the errors: the child may have exited just now.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(poll);
    };
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    Run {
        status,
        stdout: text(out_reader.join().expect("reader").expect("read stdout")),
        stderr: text(err_reader.join().expect("reader").expect("read stderr")),
    }
}

/// Path of the built guest test program `name` (`PVMUX_PROG_DIR`, see `tests/build.rs`).
pub fn prog(name: &str) -> PathBuf {
    Path::new(env!("PVMUX_PROG_DIR")).join(name)
}

/// The glibc build of C program `name`, and the musl build (`NAME-musl`) when musl-gcc was
/// there (`have_musl`; CI requires it, and the build warns without it).
pub fn variants(name: &str) -> Vec<String> {
    let mut v = vec![name.to_owned()];
    if cfg!(have_musl) {
        v.push(format!("{name}-musl"));
    }
    v
}

/// Runs `cmd` with null stdin and a clean environment, killing it after `timeout`.
pub fn run_clean(mut cmd: Command, timeout: Duration) -> Run {
    let what = format!("{cmd:?}");
    cmd.env_clear();
    run_with_timeout(cmd, &what, timeout, Duration::from_millis(10), |_| {})
}

/// Ends a `pvmux run` that seems stuck so that its failure says what the guest was doing:
/// asks the guest kernel for a dump of its tasks (`SIGQUIT`: one line per thread, with the
/// system call it waits in, on the run's stderr), gives it 2 s to write it, then kills it.
pub fn dump_then_kill(child: &mut std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
}

/// Runs test program `name` natively with `args` ([`run_clean`]: the reference a guest run
/// is compared with).
pub fn run_native(name: &str, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(prog(name));
    cmd.args(args);
    run_clean(cmd, timeout)
}

/// Runs python3 `program` natively and in a guest of `pvmux` (`run --rootfs / --vcpus 2`),
/// with the directory to work in as its argument — natively a fresh one, in the guest its
/// `/tmp` (guest memory) — and the same `PATH` and `LC_ALL=C`, and checks that both exit 0
/// and print the same. Each side may take two minutes.
pub fn python_same_as_native(pvmux: &str, tag: &str, program: &str) {
    const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    let limit = std::time::Duration::from_secs(120);
    let run = |cmd: std::process::Command| {
        let what = format!("{cmd:?}");
        run_with_timeout(
            cmd,
            &what,
            limit,
            std::time::Duration::from_millis(20),
            |_| {},
        )
    };
    let dir = TempDir::unique("pvmux-as-native", tag);
    let script = dir.0.join("p.py");
    std::fs::write(&script, program).expect("write the script");
    let script = script.to_str().expect("utf-8 temp path");
    let work = dir.0.join("native");
    std::fs::create_dir(&work).expect("native dir");
    let mut native = std::process::Command::new("/usr/bin/python3");
    native
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", PATH)
        .arg(script)
        .arg(&work);
    let native = run(native);
    assert_eq!(native.code(), Some(0), "native run:\n{}", native.context());
    let mut guest = std::process::Command::new(pvmux);
    guest
        .env_clear()
        .args(["run", "--rootfs", "/", "--vcpus", "2", "--mem", "1G"])
        .args(["--env", "LC_ALL=C", "--env", &format!("PATH={PATH}")])
        .args(["--", "/usr/bin/python3", script, "/tmp"]);
    let guest = run(guest);
    assert_eq!(
        guest.stdout,
        native.stdout,
        "guest and native differ\nguest:\n{}\nnative stderr:\n{}",
        guest.context(),
        native.stderr
    );
    assert_eq!(guest.code(), Some(0), "guest run:\n{}", guest.context());
}
