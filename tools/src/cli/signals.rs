//! Host signals turned into calls: a thread of its own waits for a signal and calls a
//! closure at each (`SIGWINCH`: the console follows the terminal's size, `winsize`;
//! `SIGQUIT`: `pvmux run` asks the guest kernel for a dump of its tasks).

use anyhow::Context;

/// Watches for a signal while it lives.
pub(crate) struct Watch(signal_hook::iterator::Handle);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Calls `f()` in a thread named `name` at every `signal` until the returned [`Watch`] drops.
pub(crate) fn on(signal: i32, name: &str, f: impl Fn() + Send + 'static) -> anyhow::Result<Watch> {
    let mut signals = signal_hook::iterator::Signals::new([signal])
        .with_context(|| format!("cannot handle signal {signal}"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for _ in signals.forever() {
                f();
            }
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok(Watch(handle))
}
