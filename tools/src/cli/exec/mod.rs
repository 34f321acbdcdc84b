//! `pvmux exec`: a new process in a running guest, through the guest's exec control socket
//! (`pvmux run --exec-socket PATH`; the protocol is `pvmux_host::exec::socket`).
//! `exec --detach` in runc's form leaves a host process holding the session ([`detached`]).

mod detached;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use pvmux_host::exec::socket::{run_client, Client, ClientEnd, ClientEvent, SocketError};
use pvmux_host::ExecSpec;
use pvmux_hypercalls::exec::ExecRlimit;

/// `pvmux exec [OPTIONS] ID [PROGRAM [ARGS...]]` (runc's form: a container under `--root`),
/// or `pvmux exec [OPTIONS] --socket PATH -- PROGRAM [ARGS...]` (a guest started with
/// `pvmux run --exec-socket PATH`).
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The guest's exec control socket (`pvmux run --exec-socket PATH`) instead of a
    /// container ID.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// runc's process.json: the program's args, env, cwd, user and terminal (OCI
    /// `process`), instead of PROGRAM and the flags.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,

    /// Write the pid of the host process that stands for the program to FILE: it ends with
    /// the program and carries its exit status (this pvmux process; with --detach, the one
    /// left holding the session). The program's own pid is in the guest.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// With a terminal and --detach (runc's form): send the terminal's master to this Unix
    /// socket, as runc does (conmon's `podman exec -t`).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,

    /// Internal: this process holds a detached session (`exec --detach`'s hand-shake socket).
    #[arg(long, hide = true, value_name = "PATH")]
    pub holder: Option<PathBuf>,

    /// Set a variable of the program's environment: NAME=VALUE, or NAME to pass pvmux's own
    /// value (skipped if unset). Repeatable. Without any, the guest kernel's default
    /// environment (PATH, HOME=/, TERM=linux, SHELL=/bin/sh).
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<OsString>,

    /// Working directory in the guest (absolute; default /).
    #[arg(short = 'w', long, visible_alias = "cwd", value_name = "DIR")]
    pub workdir: Option<OsString>,

    /// Run as this numeric user and group (UID or UID:GID; default: those of the guest's
    /// init program).
    #[arg(short = 'u', long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<(u32, u32)>,

    /// Return once the program runs. With a container ID (runc's form): a host process is
    /// left holding it, with this one's stdin, stdout and stderr (or, with a terminal, the
    /// one sent to --console-socket); --pid-file names it and its exit status is the
    /// program's. With --socket: print the program's guest pid; its output is discarded and
    /// its input is empty.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Give the program a terminal (a pseudo-terminal in the guest, the size of pvmux's):
    /// its stderr goes to stdout, and a host terminal on stdin is put in raw mode meanwhile
    /// (the guest's terminal edits lines and echoes).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// runc flags that do not apply to a guest process (accepted, ignored): --no-new-privs
    /// (always so), --process-label, --apparmor, --cap, --preserve-fds, --cgroup,
    /// --ignore-paused. `--additional-gids GID` (repeated, or comma-separated) gives the
    /// program exactly these supplementary groups, as runc's.
    #[arg(long, hide = true)]
    pub no_new_privs: bool,
    #[arg(long, hide = true, value_name = "X")]
    pub process_label: Option<String>,
    #[arg(long, hide = true, value_name = "X")]
    pub apparmor: Option<String>,
    #[arg(short = 'c', long = "cap", hide = true, value_name = "X")]
    pub caps: Vec<String>,
    #[arg(long, hide = true, value_name = "N")]
    pub preserve_fds: Option<u32>,
    #[arg(long, hide = true, value_name = "X")]
    pub cgroup: Option<String>,
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    #[arg(
        short = 'g',
        long = "additional-gids",
        hide = true,
        value_name = "GID",
        value_delimiter = ','
    )]
    pub additional_gids: Vec<u32>,

    /// The container ID, then the program and its arguments (runc's form); with --socket
    /// the program and its arguments (after `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ID] [PROGRAM [ARGS]"
    )]
    pub args: Vec<OsString>,
}

impl ExecArgs {
    /// Whether this is runc's form (a container ID, or the holder of `exec --detach`: runc's
    /// `--log FILE` and error codes).
    pub(crate) fn is_oci(&self) -> bool {
        self.socket.is_none() || self.holder.is_some()
    }
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

/// The spec `args` ask for, running `program`.
fn spec(args: &ExecArgs, program: &[OsString]) -> ExecSpec {
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
        argv: program.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        cwd: args.workdir.as_ref().map(|w| w.as_bytes().to_vec()),
        user: args.user,
        tty: args.tty,
        tty_size: args
            .tty
            .then(|| pvmux_host::console_input::terminal_size(std::io::stdout()))
            .flatten()
            .map(|s| (s.rows.get(), s.cols.get())),
        rlimits: Vec::new(),
        groups: (!args.additional_gids.is_empty()).then(|| {
            let set: std::collections::BTreeSet<u32> =
                args.additional_gids.iter().copied().collect();
            set.into_iter().collect()
        }),
        caps: None,
    }
}

/// The spec of runc's `--process FILE` (an OCI `process` object).
fn process_spec(file: &std::path::Path) -> anyhow::Result<ExecSpec> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read --process {}", file.display()))?;
    let p: oci_spec::runtime::Process = serde_json::from_str(&text)
        .with_context(|| format!("--process {} is not an OCI process", file.display()))?;
    let argv: Vec<Vec<u8>> = p
        .args()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    if argv.is_empty() {
        bail!("--process {}: no args", file.display());
    }
    let env = p
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| e.as_bytes().to_vec())
        .collect();
    let cwd = p.cwd().as_os_str().as_bytes().to_vec();
    let user = p.user();
    // The program's supplementary groups, as runc sets them (`setgroups`; none when the
    // list is absent): the set, ascending.
    let groups: std::collections::BTreeSet<u32> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .copied()
        .collect();
    if groups.len() > pvmux_hypercalls::bootargs::GROUPS_MAX {
        bail!(
            "--process {}: process.user.additionalGids has {} groups, more than {}",
            file.display(),
            groups.len(),
            pvmux_hypercalls::bootargs::GROUPS_MAX
        );
    }
    let mut warnings = Vec::new();
    // runc gives the program exactly these sets (else the container's).
    let caps = p
        .capabilities()
        .as_ref()
        .map(|c| super::oci::config::cap_sets(c, &mut warnings))
        .transpose()
        .with_context(|| format!("--process {}", file.display()))?;
    // The same lowering and checks as init's (`--ulimit`); a later entry of a resource
    // overrides an earlier one.
    let mut rlimits = std::collections::BTreeMap::new();
    for r in p.rlimits().as_deref().unwrap_or_default() {
        let value = super::oci::config::ulimit(r, &mut warnings);
        let (resource, soft, hard) = super::limits::parse_ulimit(&value)
            .with_context(|| format!("--process {}: process.rlimits", file.display()))?;
        rlimits.insert(resource, (soft, hard));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(ExecSpec {
        argv,
        env,
        cwd: (!cwd.is_empty()).then_some(cwd),
        user: Some((user.uid(), user.gid())),
        tty: p.terminal().unwrap_or(false),
        tty_size: p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16)),
        rlimits: rlimits
            .into_iter()
            .map(|(resource, (soft, hard))| ExecRlimit {
                resource,
                reserved: 0,
                soft,
                hard,
            })
            .collect(),
        groups: Some(groups.into_iter().collect()),
        caps,
    })
}

/// Runs the program; returns its exit status. `g`: the OCI global options (`--root`).
pub(crate) fn run(
    g: &super::oci::GlobalArgs,
    log: Option<&std::path::Path>,
    args: &ExecArgs,
) -> anyhow::Result<u8> {
    if let Some(nfy) = &args.holder {
        let Some(socket) = &args.socket else {
            bail!("--holder needs --socket");
        };
        return detached::hold(nfy, socket, args.console_socket.as_deref());
    }
    let (socket, program) = match &args.socket {
        Some(s) => (s.clone(), &args.args[..]),
        None => {
            let Some((id, program)) = args.args.split_first() else {
                bail!("exec needs a container ID (or --socket PATH)");
            };
            let id = id.to_str().context("the container ID is not UTF-8")?;
            // `pvmux exec NAME -- CMD`: the `--` separates, it is no program.
            let program = match program.split_first() {
                Some((dashes, rest)) if dashes == "--" => rest,
                _ => program,
            };
            (super::oci::exec_socket(g, id)?, program)
        }
    };
    let mut spec = match &args.process {
        Some(f) => process_spec(f)?,
        None if program.is_empty() => bail!("exec needs a PROGRAM (or --process FILE)"),
        None => spec(args, program),
    };
    if let Some(dir) = &spec.cwd {
        if !dir.starts_with(b"/") {
            bail!("--workdir must be an absolute path");
        }
    }
    if args.detach && args.is_oci() {
        spec.tty |= args.tty;
        return detached::start(
            &socket,
            &spec,
            args.console_socket.as_deref(),
            args.pid_file.as_deref(),
            log,
        );
    }
    if let Some(f) = &args.pid_file {
        std::fs::write(f, format!("{}", std::process::id()))
            .with_context(|| format!("cannot write --pid-file {}", f.display()))?;
    }
    let stdin: Option<Box<dyn std::io::Read + Send>> =
        (!args.detach).then(|| Box::new(std::io::stdin()) as _);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let _raw = (spec.tty && !args.detach && std::io::stdin().is_terminal())
        .then(super::terminal::RawTerminal::enable)
        .flatten();
    let end = match (spec.tty && !args.detach, stdin) {
        // A terminal of pvmux's own: its resizes reach the session's terminal.
        (true, Some(stdin)) if std::io::stdout().is_terminal() => {
            following_resizes(&socket, &spec, stdin, &mut out, &mut err)
        }
        (_, stdin) => run_client(&socket, &spec, stdin, args.detach, &mut out, &mut err),
    };
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

/// [`run_client`] of a terminal session on pvmux's own terminal, whose resizes (`SIGWINCH`)
/// are sent on to the session's terminal.
fn following_resizes(
    socket: &std::path::Path,
    spec: &ExecSpec,
    stdin: Box<dyn std::io::Read + Send>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ClientEnd, SocketError> {
    let io = |source| SocketError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut client = Client::connect(socket, spec)?;
    let w = client.writer();
    let _watch = super::winsize::watch(move || {
        if let Some((rows, cols)) = super::winsize::of(std::io::stdout()) {
            let _ = w.resize(rows, cols);
        }
    })
    .map_err(|e| io(std::io::Error::other(crate::cli::error_text::text(&e))))?;
    client.writer().spawn_stdin(stdin);
    let mut pid = None;
    loop {
        match client.next_event()? {
            ClientEvent::Started(p) => pid = Some(p),
            ClientEvent::Stdout(b) => out.write_all(&b).and_then(|()| out.flush()).map_err(io)?,
            ClientEvent::Stderr(b) => err.write_all(&b).and_then(|()| err.flush()).map_err(io)?,
            ClientEvent::End(exit) => return Ok(ClientEnd { pid, exit }),
        }
    }
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

    #[test]
    fn process_json_groups_and_caps() {
        let dir = std::env::temp_dir().join(format!("pvmux-process-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.json");
        let write = |v: serde_json::Value| std::fs::write(&file, v.to_string()).unwrap();
        write(serde_json::json!({
            "args": ["id"], "cwd": "/",
            "user": {"uid": 5, "gid": 6, "additionalGids": [30, 4, 30, 10]},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL"],
                "effective": ["CAP_KILL"], "inheritable": [], "ambient": [],
            },
        }));
        let spec = process_spec(&file).unwrap();
        assert_eq!(spec.user, Some((5, 6)));
        assert_eq!(spec.groups, Some(vec![4, 10, 30]), "the set, ascending");
        assert_eq!(
            spec.caps,
            Some(pvmux_hypercalls::bootargs::CapSets {
                effective: 1 << 5,
                permitted: 1 << 5,
                inheritable: 0,
                bounding: 1 << 5 | 1,
                ambient: 0,
            })
        );
        // Absent: no groups (runc's setgroups of an empty list), the container's sets.
        write(serde_json::json!({"args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}}));
        let spec = process_spec(&file).unwrap();
        assert_eq!((spec.groups, spec.caps), (Some(vec![]), None));
        // Sets Linux cannot hold, an unknown capability: errors.
        for caps in [
            serde_json::json!({"permitted": [], "effective": ["CAP_KILL"]}),
            serde_json::json!({"bounding": ["CAP_NO_SUCH_THING"]}),
        ] {
            write(serde_json::json!({
                "args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "capabilities": caps,
            }));
            assert!(process_spec(&file).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn additional_gids_flag() {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            e: ExecArgs,
        }
        let p =
            P::try_parse_from(["x", "-g", "20,3", "--additional-gids", "3", "c1", "id"]).unwrap();
        assert_eq!(spec(&p.e, &p.e.args[1..]).groups, Some(vec![3, 20]));
        let p = P::try_parse_from(["x", "c1", "id"]).unwrap();
        assert_eq!(spec(&p.e, &p.e.args[1..]).groups, None);
        assert!(P::try_parse_from(["x", "-g", "abc", "c1", "id"]).is_err());
    }
}
