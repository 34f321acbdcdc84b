//! Host logging: `tracing` to stderr, filtered by RUST_LOG if set, else by `--log`.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub(crate) fn init(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("invalid RUST_LOG {v:?}"))?
        }
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid --log level {level:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
