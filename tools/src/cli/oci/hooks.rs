//! config.json's hooks, run on the host as runc runs them: `prestart` and `createRuntime` at
//! the end of `create` (a failure fails the create), `poststart` after `start`, `poststop`
//! after `delete` (failures of those two are logged). Each hook gets the container's state
//! JSON on stdin, its `args` (`args[0]` as its `argv[0]`) and exactly its `env`, and is killed
//! after its `timeout` seconds. `createContainer` and `startContainer` would run inside the
//! container's namespaces, which here are a guest kernel's: they are not run (a warning says
//! so).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oci_spec::runtime::Hook;

/// Runs `hooks` of `kind` in order with `state` on their stdin; the first failure is the
/// error.
pub(crate) fn run(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> anyhow::Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state)
            .with_context(|| format!("{kind} hook #{i} ({}) failed", h.path().display()))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &serde_json::Value) -> anyhow::Result<()> {
    let args = h.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1)).env_clear();
    for e in h.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run it")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is no error.
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let deadline = h
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if let Some(s) = child.try_wait().context("cannot wait for it")? {
            break s;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {} s", h.timeout().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{status}: {}", text.trim_end());
    }
    Ok(())
}
