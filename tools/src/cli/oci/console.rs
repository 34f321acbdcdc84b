//! A container with `process.terminal`: the monitor makes a pseudo-terminal, sends its master
//! to the engine's `--console-socket` as runc does (one `sendmsg` with the terminal's name as
//! data and the master as an `SCM_RIGHTS` descriptor), and makes the slave its own stdin,
//! stdout and stderr, in raw mode: the guest kernel is the line discipline (echo, editing,
//! ^C), exactly as for `pvmux run` in a terminal. The engine (conmon, the shim) relays the
//! master to the user.
//!
//! Resizes: the process holding the slave makes it its controlling terminal (a session of its
//! own, `TIOCSCTTY`), so the host kernel sends it `SIGWINCH` whenever the engine resizes the
//! master (`TIOCSWINSZ`); it reads the new size from the slave and passes it to the guest
//! ([`super::super::winsize`]). `pvmux exec --detach --tty` uses the same terminal for exec
//! sessions, without output processing (their guest terminal already did it); either way the
//! settings are made before the master is sent, since the engine may change them after.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};

/// What the host terminal does to the guest's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `\n` becomes `\r\n` (a container's console: the guest console writes `\n`).
    Processed,
    /// Passed as it is (an exec session, whose guest terminal already did it).
    Raw,
}

/// Makes the terminal, in raw mode with `output` processing, sends its master to `socket`,
/// makes its slave this process's controlling terminal (in a new session) and puts it on fds
/// 0, 1 and 2. The settings are made before the master is sent: the engine may change the
/// terminal's settings once it has the master (a read-modify-write that would undo ours).
pub(crate) fn attach(socket: &Path, output: Output) -> anyhow::Result<()> {
    let slave = send_terminal(socket, output)?;
    rustix::process::setsid().context("cannot start a session for the terminal")?;
    rustix::process::ioctl_tiocsctty(&slave).context("cannot make the terminal controlling")?;
    rustix::stdio::dup2_stdin(&slave).context("dup2 stdin")?;
    rustix::stdio::dup2_stdout(&slave).context("dup2 stdout")?;
    rustix::stdio::dup2_stderr(&slave).context("dup2 stderr")?;
    Ok(())
}

/// Makes the terminal and sends its master to `socket`; returns its slave, in raw mode with
/// `output` processing.
pub(crate) fn send_terminal(socket: &Path, output: Output) -> anyhow::Result<std::fs::File> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .context("cannot open a pseudo-terminal")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname(&master, Vec::new()).context("ptsname")?;
    let path = std::ffi::OsStr::new(
        std::str::from_utf8(name.as_bytes()).context("the terminal's name is not UTF-8")?,
    );
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(path)
        .with_context(|| format!("cannot open {}", path.to_string_lossy()))?;
    let settings = tcgetattr(&slave).context("tcgetattr")?;
    let raw = match output {
        Output::Processed => super::super::terminal::raw_settings(&settings),
        Output::Raw => {
            let mut t = settings;
            t.make_raw();
            t
        }
    };
    tcsetattr(&slave, OptionalActions::Now, &raw).context("cannot make the terminal raw")?;
    let sock = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to --console-socket {}", socket.display()))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [master.as_fd()];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        anyhow::bail!("cannot attach the terminal's descriptor");
    }
    sendmsg(
        &sock,
        &[IoSlice::new(name.as_bytes())],
        &mut cmsg,
        SendFlags::empty(),
    )
    .with_context(|| format!("cannot send the terminal to {}", socket.display()))?;
    drop(master);
    Ok(slave)
}
