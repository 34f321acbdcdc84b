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

/// Where the OCI commands log (runc's `--log FILE` and `--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines as `pvmux run` writes them on stderr.
    #[default]
    Text,
    /// One JSON object a line, `{"level":..,"msg":..,"time":..}`, as runc writes them (what
    /// containerd's shim reads back on an error).
    Json,
}

/// Installs the subscriber of the OCI commands: to `file` (appended) if given, else to stderr
/// (`stderr`) or nowhere (the monitor, whose stderr is the container's); level `debug` with
/// `--debug`, else `warn` (RUST_LOG still wins).
pub(crate) fn init_oci(
    file: Option<&std::path::Path>,
    format: LogFormat,
    debug: bool,
    stderr: bool,
) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let level = if debug { "debug" } else { "warn" };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("invalid RUST_LOG {v:?}"))?
        }
        _ => EnvFilter::new(level),
    };
    let writer = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None if stderr => BoxMakeWriter::new(std::io::stderr),
        None => BoxMakeWriter::new(std::io::sink),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let r = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.event_format(RuncJson).try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// runc's JSON log lines: `{"level":"warning","msg":"...","time":"2024-01-01T00:00:00Z"}`.
struct RuncJson;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for RuncJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut msg = Message::default();
        event.record(&mut msg);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let line = serde_json::json!({
            "level": level,
            "msg": msg.0,
            "time": super::oci::now_rfc3339(),
        });
        writeln!(writer, "{line}")
    }
}

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
