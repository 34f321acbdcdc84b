//! `pvmux exec`: a new process in a running guest, through the guest's exec control socket
//! (`pvmux run --exec-socket PATH`; the protocol is `pvmux_host::exec::socket`).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pvmux_host::exec::socket::{run_client, SocketError};
use pvmux_host::ExecSpec;

/// `pvmux exec [OPTIONS] --socket PATH -- PROGRAM [ARGS...]`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The guest's exec control socket (`pvmux run --exec-socket PATH`).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// Set a variable of the program's environment: NAME=VALUE, or NAME to pass pvmux's own
    /// value (skipped if unset). Repeatable. Without any, the guest kernel's default
    /// environment (PATH, HOME=/, TERM=linux, SHELL=/bin/sh).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<OsString>,

    /// Working directory in the guest (absolute; default /).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<OsString>,

    /// Run as this numeric user and group (UID or UID:GID; default: those of the guest's
    /// init program).
    #[arg(short = 'u', long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<(u32, u32)>,

    /// Start the program and return at once, printing its guest pid; its output is
    /// discarded and its input is empty.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Give the program a terminal (a pseudo-terminal in the guest, the size of pvmux's):
    /// its stderr goes to stdout, and a host terminal on stdin is put in raw mode meanwhile
    /// (the guest's terminal edits lines and echoes).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// The program and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    pub program: Vec<OsString>,
}

/// `UID` or `UID:GID` (a missing GID is the UID, as runc's numeric form).
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let num = |t: &str| {
        t.parse::<u32>()
            .map_err(|_| format!("\"{t}\" is not a numeric id (names are not looked up)"))
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u)?, num(g)?)),
        None => num(s).map(|u| (u, u)),
    }
}

/// The spec `args` ask for.
fn spec(args: &ExecArgs) -> ExecSpec {
    let env = args
        .env
        .iter()
        .filter_map(|e| {
            let b = e.as_bytes();
            if b.contains(&b'=') {
                Some(b.to_vec())
            } else {
                let v = std::env::var_os(e)?;
                let mut kv = b.to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Some(kv)
            }
        })
        .collect();
    ExecSpec {
        argv: args.program.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        cwd: args.workdir.as_ref().map(|w| w.as_bytes().to_vec()),
        user: args.user,
        tty: args.tty,
        tty_size: args
            .tty
            .then(|| pvmux_host::console_input::terminal_size(std::io::stdout()))
            .flatten()
            .map(|s| (s.rows.get(), s.cols.get())),
    }
}

/// Runs the program; returns its exit status.
pub(crate) fn run(args: &ExecArgs) -> anyhow::Result<u8> {
    let spec = spec(args);
    if let Some(dir) = &spec.cwd {
        if !dir.starts_with(b"/") {
            bail!("--workdir must be an absolute path");
        }
    }
    let stdin: Option<Box<dyn std::io::Read + Send>> =
        (!args.detach).then(|| Box::new(std::io::stdin()) as _);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let _raw = (args.tty && !args.detach && std::io::stdin().is_terminal())
        .then(super::terminal::RawTerminal::enable)
        .flatten();
    let end = run_client(&args.socket, &spec, stdin, args.detach, &mut out, &mut err);
    let end = match end {
        Ok(end) => end,
        Err(SocketError::Refused(msg)) => bail!("the guest refused to run the program: {msg}"),
        Err(e) => return Err(e).context("cannot run the program in the guest"),
    };
    if args.detach {
        if let Some(pid) = end.pid {
            writeln!(out, "{pid}").context("cannot write the pid")?;
            return Ok(0);
        }
    }
    Ok(u8::try_from(end.exit.code() & 0xff).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("5"), Ok((5, 5)));
        assert_eq!(parse_user("5:7"), Ok((5, 7)));
        assert!(parse_user("root").is_err());
        assert!(parse_user("1:x").is_err());
    }
}
