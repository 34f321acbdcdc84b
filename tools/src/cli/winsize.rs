//! Terminal sizes that follow the user's: a thread turns each `SIGWINCH` (the terminal this
//! process is in the foreground of, or the controlling terminal it leads, changed size) into a
//! call that passes the new size on to a guest: the console of `pvmux run` in a terminal and
//! of an OCI container's terminal (`TenantHandle::resize_console`), an exec session's
//! terminal (`RESIZE` frames).

use std::os::fd::AsFd;

/// The size of terminal `fd` as (rows, columns); `None` if it is not a terminal or its size
/// is unset (0 x 0: an engine has not sized it yet).
pub(crate) fn of(fd: impl AsFd) -> Option<(u16, u16)> {
    let w = rustix::termios::tcgetwinsize(fd).ok()?;
    (w.ws_row != 0 && w.ws_col != 0).then_some((w.ws_row, w.ws_col))
}

/// The size of the terminal on stdin.
pub(crate) fn stdin() -> Option<(u16, u16)> {
    of(std::io::stdin())
}

/// The size of the terminal on stdin once it has one, polled every millisecond for at most
/// `limit`; `None` if it is still unsized (or not a terminal) by then.
pub(crate) fn stdin_within(limit: std::time::Duration) -> Option<(u16, u16)> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(size) = stdin() {
            return Some(size);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Calls `resized()` in a thread of its own at every `SIGWINCH` until the returned watch
/// drops. Set up before a terminal is handed out, a resize cannot be missed.
pub(crate) fn watch(resized: impl Fn() + Send + 'static) -> anyhow::Result<super::signals::Watch> {
    super::signals::on(signal_hook::consts::SIGWINCH, "pvmux-winch", resized)
}
