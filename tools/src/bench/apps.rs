//! `*.app.*`: whole programs from the host's own root filesystem, timed from the spawn of the
//! system that runs them to their end: `python3 -c pass`, `bash -c true` and compiling and
//! running a C hello world with `gcc`. Each runs natively, in gVisor (`runsc do`, which
//! shows the host's root), as init of User-Mode Linux (hostfs root `/`) and in a pvmux guest
//! (`pvmux run --rootfs /`): what a user waits for, start-up of the sandbox included.
//!
//! User-Mode Linux cannot end cleanly when its init ends, so there the program runs under a
//! small `/bin/sh` script that prints `@app-exit STATUS` afterwards; the figure is the time to
//! that line (one `sh` start more than the others, well under a millisecond natively).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::progress::Progress;
use super::stats::Summary;
use super::user::{Peer, RUNSC_ENV, UML_ENV};

/// One program: its figure name (after `app.`) and its command line. `$SCRATCH` in an
/// argument is the run's scratch directory (guest: `/tmp`).
pub const APPS: [(&str, &[&str]); 3] = [
    ("python3_pass", &["/usr/bin/python3", "-c", "pass"]),
    ("bash_true", &["/bin/bash", "-c", "true"]),
    (
        "gcc_hello",
        &[
            "/bin/sh",
            "-c",
            "cd \"$SCRATCH\" && printf '#include <stdio.h>\\nint main(void){puts(\"hi\");return 0;}\\n' \
             > hello.c && gcc -o hello hello.c && ./hello > /dev/null",
        ],
    ),
];

/// Guest and UML memory for the programs (gcc needs room).
const MEM: &str = "512M";
/// Longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The peer and figure of an `*.app.*` name.
pub fn split(name: &str) -> Option<(Peer, &str)> {
    let (prefix, figure) = name.split_once(".app.")?;
    let peer = Peer::ALL.into_iter().find(|p| p.prefix() == prefix)?;
    APPS.iter()
        .any(|(f, _)| *f == figure)
        .then_some((peer, figure))
}

/// Runs per peer and program (each run is a whole program start-up).
fn runs(quick: bool) -> usize {
    if quick {
        3
    } else {
        10
    }
}

/// A private scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pvmux-app-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create a temp dir: {e}"))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The command running `argv` on `peer` (`scratch`: the run's directory on the host).
fn command(peer: Peer, argv: &[&str], scratch: &Path) -> Result<Command, String> {
    let mut c = match peer {
        Peer::Native => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]).env("SCRATCH", scratch);
            c
        }
        Peer::Gvisor => {
            let runsc = std::env::var_os(RUNSC_ENV).unwrap_or_else(|| "runsc".into());
            let mut c = Command::new(runsc);
            c.arg(format!("--root={}", scratch.join("runsc").display()))
                .args(["--platform=ptrace", "--network=none", "--ignore-cgroups"]);
            if !rustix::process::geteuid().is_root() {
                c.arg("--rootless");
            }
            c.arg("do").args(argv).env("SCRATCH", "/tmp");
            c
        }
        Peer::Pvmux | Peer::PvmuxTrusted => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find the pvmux executable: {e}"))?;
            let mut c = Command::new(exe);
            c.arg("run");
            if peer == Peer::PvmuxTrusted {
                c.arg("--user-isolation=none");
            }
            c.args(["--rootfs", "/", "--mem", MEM, "--env", "SCRATCH=/tmp", "--"])
                .args(argv);
            c
        }
        Peer::Uml => {
            let script = scratch.join("app.sh");
            let quoted: Vec<String> = argv
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect();
            let text = format!(
                "#!/bin/sh\nexport SCRATCH='{}' PATH=/usr/bin:/bin\n{} >/dev/null 2>&1\n\
                 echo \"@app-exit $?\"\nexec sleep 1000\n",
                scratch.display(),
                quoted.join(" ")
            );
            std::fs::write(&script, text).map_err(|e| format!("cannot write a script: {e}"))?;
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| format!("cannot write a script: {e}"))?;
            let uml = std::env::var_os(UML_ENV).unwrap_or_else(|| "linux.uml".into());
            let mut c = Command::new(uml);
            c.arg(format!("mem={MEM}"))
                .arg("quiet")
                .arg(format!("uml_dir={}", scratch.display()))
                .arg("umid=pvmux-app-bench")
                .arg("rootfstype=hostfs")
                .arg("rootflags=/")
                .arg(format!("init={}", script.display()))
                .arg("con0=null,fd:1")
                .arg("con=null")
                .env("TMPDIR", scratch);
            c
        }
    };
    c.current_dir(scratch);
    Ok(c)
}

/// Runs `cmd` once in its own process group: the nanoseconds until it exits with status 0
/// (or, for UML, prints `@app-exit 0`); everything it started is killed afterwards.
fn time_one(mut cmd: Command, uml: bool) -> Result<f64, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{program} is not installed (not found)")
        } else {
            format!("cannot run {program}: {e}")
        }
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let console = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(mut out) = child.stdout.take() {
        let console = std::sync::Arc::clone(&console);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                let mut text = console.lock().unwrap_or_else(|e| e.into_inner());
                text.extend_from_slice(&buf[..n]);
                if let Some(line) = String::from_utf8_lossy(&text)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("@app-exit ").map(str::to_owned))
                {
                    let _ = tx.send((start.elapsed(), line));
                    return;
                }
            }
        });
    }
    let mut stderr = child.stderr.take();
    let result = loop {
        if uml {
            if let Ok((at, status)) = rx.try_recv() {
                break match status.as_str() {
                    "0" => Ok(at.as_nanos() as f64),
                    s => Err(format!("the program failed in UML (status {s})")),
                };
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let at = start.elapsed();
                break if !uml && status.success() {
                    Ok(at.as_nanos() as f64)
                } else {
                    let mut err = String::new();
                    if let Some(e) = stderr.as_mut() {
                        let _ = e.read_to_string(&mut err);
                    }
                    // UML's console (stdout) says why it stopped; others say it on stderr.
                    let out = console.lock().map(|t| t.clone()).unwrap_or_default();
                    let out = String::from_utf8_lossy(&out);
                    let uml_why = out
                        .lines()
                        .filter(|l| l.contains("failed, errno") || l.contains("Kernel panic"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let last = if uml_why.is_empty() {
                        err.lines().rev().find(|l| !l.trim().is_empty())
                    } else {
                        Some(uml_why.as_str())
                    };
                    Err(format!(
                        "{program} ended ({status}){}",
                        last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
                    ))
                };
            }
            Ok(None) => {}
            Err(e) => break Err(format!("cannot wait for {program}: {e}")),
        }
        if start.elapsed() > RUN_LIMIT {
            break Err(format!("{program} did not finish within {RUN_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Runs the wanted `*.app.*` figures (full catalogue names) and returns one result each.
pub fn run(
    wanted: &[&'static str],
    quick: bool,
    progress: &Progress,
) -> Vec<(&'static str, Result<Summary, String>)> {
    let mut out = Vec::new();
    for &name in wanted {
        let Some((peer, figure)) = split(name) else {
            continue;
        };
        progress.start(name);
        let argv = APPS
            .iter()
            .find(|(f, _)| *f == figure)
            .map(|(_, a)| *a)
            .unwrap_or(&[]);
        let mut samples = Vec::new();
        let mut failure = None;
        for _ in 0..runs(quick) {
            let r = Scratch::new().and_then(|s| {
                let cmd = command(peer, argv, &s.0)?;
                time_one(cmd, peer == Peer::Uml)
            });
            match r {
                Ok(ns) => samples.push(ns),
                Err(why) => {
                    failure = Some(why);
                    break;
                }
            }
        }
        let r = match failure {
            Some(why) => Err(why),
            None => Summary::of(&mut samples).ok_or_else(|| "no samples".to_owned()),
        };
        out.push((name, r));
        progress.inc();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_peer_and_program() {
        assert_eq!(
            split("pvmux.app.python3_pass"),
            Some((Peer::Pvmux, "python3_pass"))
        );
        assert_eq!(split("uml.app.gcc_hello"), Some((Peer::Uml, "gcc_hello")));
        assert_eq!(split("pvmux.app.nothing"), None);
        assert_eq!(split("pvmux.user.page_fault"), None);
    }

    #[test]
    fn a_native_run_is_timed_and_a_failure_explained() {
        let s = Scratch::new().unwrap();
        let ok = time_one(command(Peer::Native, &["/bin/true"], &s.0).unwrap(), false);
        assert!(ok.is_ok_and(|ns| ns > 0.0));
        let bad = time_one(
            command(
                Peer::Native,
                &["/bin/sh", "-c", "echo oops >&2; exit 3"],
                &s.0,
            )
            .unwrap(),
            false,
        );
        let why = bad.unwrap_err();
        assert!(
            why.contains("exit status: 3") && why.contains("oops"),
            "{why}"
        );
    }
}
