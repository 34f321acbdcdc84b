//! A state root of its own for a test of the named-tenant commands (`pvmux --root DIR run
//! --name`, `ps`, `exec`, `stop`, `snapshot`, `disk`, `upgrade`, ...): the `pvmux` command
//! line run against it with a timeout, the usual queries, and a clean-up that leaves no tenant
//! running when the test fails half-way.
//!
//! The `pvmux` command line is only known to integration tests
//! (`env!("CARGO_BIN_EXE_pvmux-cli")`), so [`StateRoot::new`] takes it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::oci::TIMEOUT;
use crate::{run_with_timeout, Run, TempDir};

/// A temporary `--root` directory and the `pvmux` binary to run against it.
pub struct StateRoot {
    dir: TempDir,
    pvmux: &'static str,
}

impl StateRoot {
    /// A fresh state root named after `prefix` and `tag`; `pvmux` is the CLI binary.
    pub fn new(pvmux: &'static str, prefix: &str, tag: &str) -> Self {
        Self {
            dir: TempDir::unique(prefix, tag),
            pvmux,
        }
    }

    /// The state root directory.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// `pvmux --root ROOT ARGS...` to its end (at most [`TIMEOUT`]).
    pub fn pvmux(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(self.pvmux);
        cmd.arg("--root").arg(self.dir()).args(args);
        run_with_timeout(
            cmd,
            &args.join(" "),
            TIMEOUT,
            Duration::from_millis(10),
            |_| {},
        )
    }

    /// [`Self::pvmux`], asserting exit status 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.pvmux(args);
        assert_eq!(r.code(), Some(0), "{}", r.context());
        r
    }

    /// `pvmux exec NAME -- /bin/sh -c SCRIPT`.
    pub fn sh(&self, name: &str, script: &str) -> Run {
        self.pvmux(&["exec", name, "--", "/bin/sh", "-c", script])
    }

    /// `pvmux ps --format json`: one object per tenant.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        let r = self.ok(&["ps", "--format", "json"]);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("ps: not JSON ({e}): {}", r.context()))
    }

    /// The `ps` row of tenant `name`, if listed.
    pub fn row(&self, name: &str) -> Option<serde_json::Value> {
        self.ps().into_iter().find(|r| r["name"] == name)
    }

    /// The host pid of tenant `name`'s monitor (it must be running).
    pub fn monitor_pid(&self, name: &str) -> i32 {
        let row = self
            .row(name)
            .unwrap_or_else(|| panic!("ps does not list {name}"));
        row["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} has no pid: {row}")) as i32
    }
}

impl Drop for StateRoot {
    /// A test that failed half-way leaves no tenant running: each listed tenant's monitor is
    /// killed (its sandboxes die with it). When the test is failing, each one's console log
    /// is printed first.
    fn drop(&mut self) {
        let mut cmd = Command::new(self.pvmux);
        cmd.arg("--root")
            .arg(self.dir())
            .args(["ps", "--format", "json"]);
        let Ok(out) = cmd.output() else { return };
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if std::thread::panicking() {
            for name in rows.iter().filter_map(|r| r["name"].as_str()) {
                let logs = Command::new(self.pvmux)
                    .arg("--root")
                    .arg(self.dir())
                    .args(["logs", name])
                    .output();
                if let Ok(o) = logs {
                    eprintln!(
                        "--- pvmux logs {name}:\n{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        for r in rows {
            if let Some(pid) = r["pid"].as_i64().and_then(|p| i32::try_from(p).ok()) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}
