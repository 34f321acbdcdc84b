//! Optional host tools some integration tests need (e2fsprogs, busybox-static, a static glibc,
//! musl-gcc, gcc, `script`, glibc's dynamic loader, User-Mode Linux, gVisor's `runsc`, podman,
//! containerd), and what else of the host they need (running as root, a user `nobody`),
//! detected once per build.
//!
//! For each tool found, the test crate gets `--cfg have_NAME`; tests that need it carry
//! `#[cfg_attr(not(have_NAME), ignore = "needs ...: apt-get install PACKAGE")]`, so that without
//! the tool libtest reports them as `ignored` with that reason and counts them in the summary.
//! For each tool missing, one `cargo:warning` names the ignored tests (found by looking for
//! `not(have_NAME)` in `tests/*.rs`) and the package to install. Cargo shows the warning on
//! every build of the test crate, not only when this script runs.
//!
//! The decision is remade when a tool appears or goes away: a found tool's path is watched
//! (`rerun-if-changed`), and for a missing one the directories it would be installed in (an
//! installation changes their modification time). While a tool is missing the test files are
//! watched too, so that the warning's list of tests stays true. Running as root is decided by
//! the build's effective uid (the tests run as the user who builds them); nothing on disk
//! changes with it, so the decision is remade when `USER`, `LOGNAME` or `SUDO_UID` (set by
//! `su` and `sudo`) change.
//!
//! With `PVMUX_REQUIRE_ALL_TESTS=1` (CI sets it) a missing tool is a build error instead, so
//! that CI never silently loses coverage.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to turn a missing optional tool into a build error.
const REQUIRE_ALL: &str = "PVMUX_REQUIRE_ALL_TESTS";

/// How a tool is found.
enum Locate {
    /// The first of these paths that exists (and, for `static_elf`, is a static executable).
    Paths {
        paths: &'static [&'static str],
        static_elf: bool,
    },
    /// A static glibc: `libc.a` where the C compiler looks for it.
    StaticLibc,
    /// The build (and so the tests) running as root: effective uid 0.
    EffectiveRoot,
    /// A user of this name in `/etc/passwd`.
    User(&'static str),
}

/// What looking for a tool found.
struct Search {
    /// Where the tool is (for the build steps that use it), `None` when missing.
    found: Option<PathBuf>,
    /// The paths whose change remakes the decision.
    watch: Vec<PathBuf>,
}

/// One optional tool.
struct Tool {
    /// `have_NAME`: the cfg set when it is there.
    cfg: &'static str,
    /// What the tests need, for the warning.
    what: &'static str,
    /// How to install it on Debian (and derivatives).
    install: &'static str,
    locate: Locate,
}

/// Every optional tool. A test needing one of them carries the attribute
/// `#[cfg_attr(not(have_NAME), ignore = "needs WHAT: INSTALL")]`.
const TOOLS: [Tool; 25] = [
    Tool {
        cfg: "have_mke2fs",
        what: "e2fsprogs (mkfs.ext2, e2fsck, debugfs)",
        install: "apt-get install e2fsprogs",
        locate: Locate::Paths {
            paths: &["/usr/sbin/mkfs.ext2", "/sbin/mkfs.ext2"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_busybox",
        what: "static /bin/busybox",
        install: "apt-get install busybox-static",
        locate: Locate::Paths {
            paths: &["/bin/busybox"],
            static_elf: true,
        },
    },
    Tool {
        cfg: "have_static_glibc",
        what: "static glibc (libc.a)",
        install: "apt-get install libc6-dev (Fedora: glibc-static)",
        locate: Locate::StaticLibc,
    },
    Tool {
        cfg: "have_musl",
        what: "musl-gcc",
        install: "apt-get install musl-tools",
        locate: Locate::Paths {
            paths: &["/usr/bin/musl-gcc", "/usr/local/bin/musl-gcc"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_script",
        what: "script(1)",
        install: "apt-get install bsdutils",
        locate: Locate::Paths {
            paths: &["/usr/bin/script", "/bin/script"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_uml",
        what: "linux.uml",
        install: "apt-get install user-mode-linux",
        locate: Locate::Paths {
            paths: &["/usr/bin/linux.uml"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_glibc_ld_so",
        what: "glibc's dynamic loader /lib64/ld-linux-x86-64.so.2 and ldd",
        install: "apt-get install libc6 libc-bin",
        locate: Locate::Paths {
            paths: &["/lib64/ld-linux-x86-64.so.2"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_runsc",
        what: "runsc",
        install: "apt-get install runsc",
        locate: Locate::Paths {
            paths: &["/usr/bin/runsc", "/usr/local/bin/runsc"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_python3",
        what: "/usr/bin/python3",
        install: "apt-get install python3",
        locate: Locate::Paths {
            paths: &["/usr/bin/python3"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_perl",
        what: "/usr/bin/perl",
        install: "apt-get install perl",
        locate: Locate::Paths {
            paths: &["/usr/bin/perl"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_make",
        what: "make (with gcc)",
        install: "apt-get install make gcc",
        locate: Locate::Paths {
            paths: &["/usr/bin/make"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_gcc",
        what: "gcc",
        install: "apt-get install gcc",
        locate: Locate::Paths {
            paths: &["/usr/bin/gcc", "/usr/local/bin/gcc"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_timeout",
        what: "coreutils' /usr/bin/timeout",
        install: "apt-get install coreutils",
        locate: Locate::Paths {
            paths: &["/usr/bin/timeout"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_git",
        what: "git",
        install: "apt-get install git",
        locate: Locate::Paths {
            paths: &["/usr/bin/git", "/usr/local/bin/git"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_sqlite3",
        what: "the sqlite3 shell",
        install: "apt-get install sqlite3",
        locate: Locate::Paths {
            paths: &["/usr/bin/sqlite3"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_shfmt",
        what: "shfmt (a Go program)",
        install: "apt-get install shfmt",
        locate: Locate::Paths {
            paths: &["/usr/bin/shfmt"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_java",
        what: "a JDK (java, and javac for its single-file source launcher)",
        install: "apt-get install openjdk-17-jdk-headless",
        locate: Locate::Paths {
            paths: &["/usr/bin/javac"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_node",
        what: "Node.js",
        install: "apt-get install nodejs",
        locate: Locate::Paths {
            paths: &["/usr/bin/node", "/usr/bin/nodejs"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_postgres",
        what: "PostgreSQL 15 (its server binaries, and the user postgres)",
        install: "apt-get install postgresql-15",
        locate: Locate::Paths {
            paths: &["/usr/lib/postgresql/15/bin/postgres"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_podman",
        what: "podman (a container engine, with conmon and runc)",
        install: "apt-get install podman",
        locate: Locate::Paths {
            paths: &["/usr/bin/podman"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_containerd",
        what: "containerd (with ctr and its runc shim)",
        install: "apt-get install containerd",
        locate: Locate::Paths {
            paths: &["/usr/bin/containerd-shim-runc-v2"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_runc",
        what: "runc",
        install: "apt-get install runc",
        locate: Locate::Paths {
            paths: &["/usr/sbin/runc", "/usr/bin/runc"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_setpriv",
        what: "setpriv(1)",
        install: "apt-get install util-linux",
        locate: Locate::Paths {
            paths: &["/usr/bin/setpriv"],
            static_elf: false,
        },
    },
    Tool {
        cfg: "have_root",
        what: "root (to change ids natively, or own host fixtures)",
        install: "run the tests as root (CI does)",
        locate: Locate::EffectiveRoot,
    },
    Tool {
        cfg: "have_user_nobody",
        what: "a user nobody in /etc/passwd",
        install: "useradd --system --no-create-home nobody",
        locate: Locate::User("nobody"),
    },
];

/// What was found, for the build steps that need a tool themselves.
pub(crate) struct Found {
    /// Whether the C compiler can link statically against glibc.
    pub(crate) static_glibc: bool,
    /// The musl C compiler wrapper.
    pub(crate) musl_gcc: Option<PathBuf>,
}

/// Detects every tool, tells Cargo (cfgs, watched paths, warnings) and returns what the
/// build needs. `tests_dir` holds the integration tests; `cc` is the C compiler.
pub(crate) fn detect(tests_dir: &Path, cc: &std::ffi::OsStr) -> Found {
    println!("cargo::rerun-if-env-changed={REQUIRE_ALL}");
    let require_all = std::env::var_os(REQUIRE_ALL).is_some_and(|v| v == "1");
    let mut found = Found {
        static_glibc: false,
        musl_gcc: None,
    };
    let mut missing = Vec::new();
    for tool in &TOOLS {
        println!("cargo::rustc-check-cfg=cfg({})", tool.cfg);
        let search = match &tool.locate {
            Locate::Paths { paths, static_elf } => locate(paths, *static_elf),
            Locate::StaticLibc => static_libc(cc),
            Locate::EffectiveRoot => effective_root(),
            Locate::User(name) => passwd_user(name),
        };
        for path in &search.watch {
            println!("cargo::rerun-if-changed={}", path.display());
        }
        let Some(path) = search.found else {
            missing.push(tool);
            continue;
        };
        println!("cargo::rustc-cfg={}", tool.cfg);
        match tool.cfg {
            "have_static_glibc" => found.static_glibc = true,
            "have_musl" => found.musl_gcc = Some(path),
            _ => {}
        }
    }
    if !missing.is_empty() {
        // The warnings name the ignored tests: keep them true when tests change (only then,
        // as a rerun rebuilds every test of the crate).
        println!("cargo::rerun-if-changed={}", tests_dir.display());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|tool| {
            let tests = gated_tests(tests_dir, tool.cfg);
            format!(
                "{} not found: {} test{} ignored ({}); to run {}: {}",
                tool.what,
                tests.count,
                if tests.count == 1 { "" } else { "s" },
                tests.by_file.join(", "),
                if tests.count == 1 { "it" } else { "them" },
                tool.install
            )
        })
        .collect();
    if require_all && !lines.is_empty() {
        panic!(
            "{REQUIRE_ALL}=1, but optional test tools are missing:\n  {}",
            lines.join("\n  ")
        );
    }
    for line in lines {
        println!("cargo::warning={line}");
    }
    found
}

/// The first of `paths` that is there (watched); otherwise the directories to watch for it.
fn locate(paths: &[&str], static_elf: bool) -> Search {
    for path in paths.iter().map(Path::new) {
        if path.is_file() {
            if !static_elf || is_static_elf(path) {
                return Search {
                    found: Some(path.to_path_buf()),
                    watch: vec![path.to_path_buf()],
                };
            }
            // A dynamic build (Debian's `busybox`, not `busybox-static`) is not enough; the
            // file itself changes when the static one replaces it.
            println!(
                "cargo::warning={} is dynamically linked: the tests need a static one",
                path.display()
            );
            return Search {
                found: None,
                watch: vec![path.to_path_buf()],
            };
        }
    }
    let dirs = paths
        .iter()
        .filter_map(|p| Path::new(p).parent())
        .filter(|d| d.is_dir())
        .map(Path::to_path_buf)
        .collect();
    Search {
        found: None,
        watch: dirs,
    }
}

/// `libc.a` as the C compiler finds it (`cc -print-file-name=libc.a` prints the bare name
/// when it has none); otherwise the directory of `libc.so` to watch.
fn static_libc(cc: &std::ffi::OsStr) -> Search {
    let print = |name: &str| -> Option<PathBuf> {
        let out = Command::new(cc)
            .arg(format!("-print-file-name={name}"))
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        (out.status.success() && path.is_absolute() && path.exists()).then_some(path)
    };
    match print("libc.a") {
        Some(path) => Search {
            found: Some(path.clone()),
            watch: vec![path],
        },
        None => {
            let dir = print("libc.so").and_then(|p| p.parent().map(Path::to_path_buf));
            Search {
                found: None,
                watch: dir.into_iter().collect(),
            }
        }
    }
}

/// Whether this build runs with effective uid 0: the second id of the `Uid:` line of
/// `/proc/self/status` (real, effective, saved, filesystem). Found, it is that file, which
/// is not watched (its time is the process's); the variables `su` and `sudo` set are.
fn effective_root() -> Search {
    const STATUS: &str = "/proc/self/status";
    for var in ["USER", "LOGNAME", "SUDO_UID"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let euid = std::fs::read_to_string(STATUS).ok().and_then(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|id| id.parse::<u32>().ok())
    });
    Search {
        found: (euid == Some(0)).then(|| PathBuf::from(STATUS)),
        watch: Vec::new(),
    }
}

/// `/etc/passwd` (watched) when it has a user `name`.
fn passwd_user(name: &str) -> Search {
    const PASSWD: &str = "/etc/passwd";
    let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
    let has = passwd
        .lines()
        .any(|l| l.split(':').next() == Some(name) && l.split(':').count() >= 7);
    let file = Path::new(PASSWD);
    Search {
        found: has.then(|| file.to_path_buf()),
        watch: file
            .exists()
            .then(|| file.to_path_buf())
            .into_iter()
            .collect(),
    }
}

/// Whether `path` is an ELF executable without a program interpreter (`PT_INTERP`).
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (the tests run x86-64 programs).
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .map(|i| u32_at(phoff + i * usize::from(entsize)))
        .all(|t| t.is_some_and(|t| t != PT_INTERP))
}

/// The tests that are ignored without `cfg`.
struct Gated {
    /// How many.
    count: usize,
    /// `FILE::{test, test}` for every test file with some.
    by_file: Vec<String>,
}

/// Finds `not(... cfg ...)` in the `cfg_attr(..., ignore ...)` attributes of the test files
/// in `dir`; the test is the next `fn`.
fn gated_tests(dir: &Path, cfg: &str) -> Gated {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut gated = Gated {
        count: 0,
        by_file: Vec::new(),
    };
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut names = Vec::new();
        let mut lines = text.lines().map(str::trim);
        let mut armed = false;
        while let Some(line) = lines.next() {
            if line.starts_with("#[cfg_attr(") {
                // rustfmt breaks a long attribute over several lines.
                let mut attr = line.to_owned();
                while !attr.ends_with(")]") {
                    let Some(next) = lines.next() else { break };
                    attr.push(' ');
                    attr.push_str(next);
                }
                armed |= attr.contains("ignore") && mentions(&attr, cfg);
            } else if armed {
                let rest = line.strip_prefix("pub ").unwrap_or(line);
                if let Some(rest) = rest.strip_prefix("fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    names.push(name);
                    armed = false;
                }
            }
        }
        if !names.is_empty() {
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            gated.count += names.len();
            gated
                .by_file
                .push(format!("{stem}::{{{}}}", names.join(", ")));
        }
    }
    gated
}

/// Whether `line` names `cfg` as a whole word.
fn mentions(line: &str, cfg: &str) -> bool {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == cfg)
}
