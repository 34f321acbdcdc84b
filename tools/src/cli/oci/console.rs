//! A container with `process.terminal`: the monitor makes a pseudo-terminal, sends its master
//! to the engine's `--console-socket` as runc does (one `sendmsg` with the terminal's name as
//! data and the master as an `SCM_RIGHTS` descriptor), and makes the slave its own stdin,
//! stdout and stderr, in raw mode: the guest kernel is the line discipline (echo, editing,
//! ^C), exactly as for `pvmux run` in a terminal. The engine (conmon, the shim) relays the
//! master to the user. Resizes after the start are not passed on (pvmux has no resize yet).

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

/// Makes the terminal, sends its master to `socket` and puts its slave on fds 0, 1 and 2.
pub(crate) fn attach(socket: &Path) -> anyhow::Result<()> {
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
    let raw = super::super::terminal::raw_settings(&tcgetattr(&slave).context("tcgetattr")?);
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
    rustix::stdio::dup2_stdin(&slave).context("dup2 stdin")?;
    rustix::stdio::dup2_stdout(&slave).context("dup2 stdout")?;
    rustix::stdio::dup2_stderr(&slave).context("dup2 stderr")?;
    Ok(())
}
