//! `pvmux bench`: measure pvmux's transitions and their peers on this host.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::Context;
use clap::Args;

use crate::bench::{self, report, Options};

/// Arguments of `pvmux bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Fewer repetitions: a few seconds on a 2-CPU machine instead of ~10 s (noisier figures).
    #[arg(long)]
    pub quick: bool,

    /// Print one JSON object on stdout instead of the table:
    /// {"host": {...}, "results": [{"name", "median_ns", "p99_ns", "samples", "unit"} or
    /// {"name", "unavailable", "unit"}, ...]}.
    #[arg(long)]
    pub json: bool,

    /// Run only the benchmarks whose name contains PATTERN, or matches it as a glob if it
    /// contains `*` or `?` (e.g. 'native.*'). May be repeated.
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,

    /// Also write one self-contained HTML page to FILE: the host, then per figure a bar chart
    /// of pvmux and each peer measured in the run (targets as lines; lower is better).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// With --html: render the page from a saved `pvmux bench --json` document instead of
    /// running the benchmarks.
    #[arg(long, value_name = "JSON", requires = "html")]
    pub from_json: Option<PathBuf>,
}

/// `--help` epilogue: every benchmark name, then the exit codes.
pub(super) static BENCH_AFTER_HELP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}\nEvery figure is the median and 99th percentile over many repetitions after a \
         warm-up; peers that cannot run here print `unavailable: <reason>`.\n\n\
         Exit status:\n  0        the benchmarks ran (some may be unavailable)\n  \
         125      host-side error (bad flag, no benchmark matches --only, unusable images)",
        bench::help_text()
    )
});

/// Runs the benchmarks and prints the table or JSON; returns pvmux's exit code.
pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<u8> {
    if let (Some(html), Some(saved)) = (&args.html, &args.from_json) {
        let text = std::fs::read_to_string(saved)
            .with_context(|| format!("cannot read {}", saved.display()))?;
        let saved_report: bench::html::SavedReport =
            serde_json::from_str(&text).with_context(|| {
                format!("{} is not a `pvmux bench --json` document", saved.display())
            })?;
        let figures = saved_report
            .figures()
            .with_context(|| format!("{}", saved.display()))?;
        write_html(html, &bench::html::render(&saved_report.host, &figures))?;
        return Ok(0);
    }
    let mut report = bench::run(&Options {
        quick: args.quick,
        only: args.only.clone(),
        progress: true,
    })?;
    report.host.date_utc = Some(super::oci::now_rfc3339());
    if let Some(html) = &args.html {
        write_html(
            html,
            &bench::html::render(&report.host, &bench::html::figures(&report)),
        )?;
    }
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report::json(&report))
            .context("cannot encode the results as JSON")?;
        s.push('\n');
        s
    } else {
        report::table(&report)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the results to stdout")?;
    Ok(0)
}

/// Writes the HTML page to `path`.
fn write_html(path: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("pvmux bench: wrote {}", path.display());
    Ok(())
}
