//! The host terminal in raw mode while a program runs.
//!
//! When host stdin is a terminal, the guest kernel is the line discipline (echo, line
//! editing, `^C`): the host terminal must pass every byte through untouched, like `cfmakeraw`,
//! except for output processing (`OPOST | ONLCR`), so that the guest's `\n` still renders as
//! CRLF. The saved settings are restored on every way out: [`RawTerminal`]'s `Drop` (normal
//! exit, guest crash, host error), a panic hook, and `SIGINT`/`SIGTERM`/`SIGHUP` sent to pvmux
//! (restore, then the signal's default action).

use std::sync::{Mutex, Once};
use std::thread::JoinHandle;

use rustix::termios::{self, OptionalActions, OutputModes, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// The terminal settings to restore (set while the terminal is raw).
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Restores the saved settings of the terminal on stdin, once.
fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &t);
    }
}

/// `settings` made raw (`cfmakeraw`) but with output processing kept: `OPOST | ONLCR`.
pub(crate) fn raw_settings(settings: &Termios) -> Termios {
    let mut raw = settings.clone();
    raw.make_raw();
    raw.output_modes |= OutputModes::OPOST | OutputModes::ONLCR;
    raw
}

/// The host terminal on stdin in raw mode; restores it when dropped.
pub(crate) struct RawTerminal {
    /// Closes the signal thread's iterator.
    signals: Option<Handle>,
    thread: Option<JoinHandle<()>>,
}

impl RawTerminal {
    /// Puts the terminal on stdin into raw mode. `None` (nothing changed) if stdin is not a
    /// terminal or its settings cannot be changed.
    pub(crate) fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        if !termios::isatty(&stdin) {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let raw = raw_settings(&saved);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        // Signals to pvmux: restore the terminal, then die of the signal as before.
        let (signals, thread) = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(mut signals) => {
                let handle = signals.handle();
                let thread = std::thread::Builder::new()
                    .name("pvmux-tty-signals".to_owned())
                    .spawn(move || {
                        if let Some(signo) = signals.forever().next() {
                            restore();
                            let _ = signal_hook::low_level::emulate_default_handler(signo);
                        }
                    })
                    .ok();
                (Some(handle), thread)
            }
            Err(e) => {
                tracing::warn!("cannot handle signals to restore the terminal: {e}");
                (None, None)
            }
        };
        // Host code panics abort (no unwinding, no `Drop`): restore in the panic hook.
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let guard = Self { signals, thread };
        if let Err(e) = termios::tcsetattr(&stdin, OptionalActions::Now, &raw) {
            tracing::warn!("cannot put the terminal into raw mode: {e}");
            SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
            return None;
        }
        Some(guard)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore();
        if let Some(h) = self.signals.take() {
            h.close();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::termios::{InputModes, LocalModes};

    #[test]
    fn raw_keeps_output_processing() {
        // Needs a terminal on stdin (the `tty` integration test covers the real thing).
        let Ok(cooked) = termios::tcgetattr(std::io::stdin()) else {
            return;
        };
        let raw = raw_settings(&cooked);
        assert!(!raw.local_modes.intersects(
            LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN
        ));
        assert!(!raw
            .input_modes
            .intersects(InputModes::ICRNL | InputModes::IXON));
        assert!(raw
            .output_modes
            .contains(OutputModes::OPOST | OutputModes::ONLCR));
    }
}
