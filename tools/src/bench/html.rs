//! `pvmux bench --html FILE`: one self-contained HTML page (no external assets, no script)
//! with the host header and one bar chart (inline SVG) per figure.
//!
//! Figures are grouped by name alone, so new ones appear without changes here: a name is
//! `SYSTEM.FIGURE` (`pvmux.user.page_fault`: system `pvmux`, figure `user.page_fault`); the
//! figures of one name after the system are one chart, with one bar per system that has it
//! in the report; a `contended` segment anywhere in the figure (`user.page_fault.contended`)
//! marks a second bar per system in the same chart (idle, then contended). Charts are grouped
//! in sections by the figure's first segment (`user`, `app`, `oci`, `hypercall`, ...), and a
//! section's systems are all those with a figure in it: a system that has no figure of a
//! chart shows "not measured", one that could not run shows its reason. A chart of pvmux
//! alone (a transition no peer has) shows the reference figures of the same run
//! (`native.syscall.getppid`, `kvm.exit_to_user`) when measured. Every figure is a cost:
//! lower is better; the catalogue's target, if any, is a dashed line.
//!
//! Every string from the report (names, reasons, the host's description) is escaped.

use std::fmt::Write as _;

use serde::Deserialize;

use super::hostinfo::HostInfo;
use super::report::{format_ratio, format_value, round3};
use super::stats::Summary;
use super::{BenchReport, Unit, BASELINE, BENCHMARKS, KVM_BASELINE};

/// One figure as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Full name (`pvmux.user.page_fault`).
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// Its statistics, or why there are none.
    pub value: Result<Summary, String>,
}

/// The figures of a finished run, rounded as its JSON document gives them (so a page from
/// the saved document is the same page).
pub fn figures(report: &BenchReport) -> Vec<Figure> {
    report
        .results
        .iter()
        .map(|r| Figure {
            name: r.name.to_owned(),
            unit: r.unit,
            value: r.value.clone().map(|s| Summary {
                median: round3(s.median),
                p99: round3(s.p99),
                samples: s.samples,
            }),
        })
        .collect()
}

/// A saved `pvmux bench --json` document.
#[derive(Debug, Deserialize)]
pub struct SavedReport {
    /// The host.
    pub host: HostInfo,
    /// The results.
    pub results: Vec<SavedResult>,
}

/// One entry of [`SavedReport::results`] (the schema of `report::JsonResult`).
#[derive(Debug, Deserialize)]
pub struct SavedResult {
    /// Benchmark name.
    pub name: String,
    /// Median, in `unit`.
    pub median_ns: Option<f64>,
    /// 99th percentile, in `unit`.
    pub p99_ns: Option<f64>,
    /// Number of samples.
    pub samples: Option<u64>,
    /// Why there are no numbers.
    pub unavailable: Option<String>,
    /// `ns` or `bytes`.
    pub unit: String,
}

/// Why a saved report cannot be shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SavedError {
    /// A result's unit is neither `ns` nor `bytes`.
    #[error("result {name:?}: unknown unit {unit:?} (ns or bytes)")]
    Unit {
        /// The result.
        name: String,
        /// Its unit.
        unit: String,
    },
    /// A result has neither numbers nor a reason.
    #[error("result {0:?}: neither median_ns/p99_ns/samples nor unavailable")]
    Incomplete(String),
}

impl SavedReport {
    /// The figures of the saved results.
    pub fn figures(&self) -> Result<Vec<Figure>, SavedError> {
        self.results
            .iter()
            .map(|r| {
                let unit = match r.unit.as_str() {
                    "ns" => Unit::Ns,
                    "bytes" => Unit::Bytes,
                    _ => {
                        return Err(SavedError::Unit {
                            name: r.name.clone(),
                            unit: r.unit.clone(),
                        })
                    }
                };
                let value = match (r.median_ns, r.p99_ns, r.samples, &r.unavailable) {
                    (Some(median), Some(p99), Some(samples), None) => Ok(Summary {
                        median,
                        p99,
                        samples,
                    }),
                    (_, _, _, Some(why)) => Err(why.clone()),
                    _ => return Err(SavedError::Incomplete(r.name.clone())),
                };
                Ok(Figure {
                    name: r.name.clone(),
                    unit,
                    value,
                })
            })
            .collect()
    }
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name split into its system, the chart it belongs to and whether it is the contended
/// variant. `None` for a name without a system (no dot).
fn parse(name: &str) -> Option<(&str, String, bool)> {
    let (system, figure) = name.split_once('.')?;
    let mut contended = false;
    let parts: Vec<&str> = figure
        .split('.')
        .filter(|p| {
            let c = *p == "contended";
            contended |= c;
            !c
        })
        .collect();
    Some((system, parts.join("."), contended))
}

/// The first segment of a chart's figure: its section.
fn section_of(chart: &str) -> &str {
    chart.split('.').next().unwrap_or(chart)
}

/// One bar of a chart.
struct Bar<'a> {
    label: String,
    value: BarValue<'a>,
    pvmux: bool,
}

enum BarValue<'a> {
    Measured(&'a Summary),
    Unavailable(&'a str),
    NotMeasured,
}

/// One chart: a figure over systems (and variants).
struct Chart<'a> {
    figure: String,
    unit: Unit,
    /// The catalogue's target and the name it belongs to.
    target: Option<(f64, &'a str)>,
    about: Option<&'static str>,
    bars: Vec<Bar<'a>>,
    /// Whether reference figures of other names were added (a chart of pvmux alone).
    references: bool,
}

/// Systems in page order: pvmux first, then as they first appear.
fn order_systems(systems: Vec<&str>) -> Vec<&str> {
    let mut seen = Vec::new();
    for s in systems {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen.sort_by_key(|s| *s != "pvmux");
    seen
}

/// The charts, grouped in sections, in order of first appearance.
fn charts(figs: &[Figure]) -> Vec<(String, Vec<Chart<'_>>)> {
    let parsed: Vec<(&Figure, &str, String, bool)> = figs
        .iter()
        .filter_map(|f| {
            let (sys, chart, contended) = parse(&f.name)?;
            Some((f, sys, chart, contended))
        })
        .collect();
    let mut sections: Vec<String> = Vec::new();
    let mut chart_names: Vec<String> = Vec::new();
    for (_, _, chart, _) in &parsed {
        let sec = section_of(chart).to_owned();
        if !sections.contains(&sec) {
            sections.push(sec);
        }
        if !chart_names.contains(chart) {
            chart_names.push(chart.clone());
        }
    }
    let measured = |name: &str| {
        figs.iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value.as_ref().ok())
    };
    sections
        .into_iter()
        .map(|sec| {
            let systems = order_systems(
                parsed
                    .iter()
                    .filter(|(_, _, c, _)| section_of(c) == sec)
                    .map(|(_, s, _, _)| *s)
                    .collect(),
            );
            let charts = chart_names
                .iter()
                .filter(|c| section_of(c) == sec)
                .map(|chart| {
                    let of_chart: Vec<&(&Figure, &str, String, bool)> =
                        parsed.iter().filter(|(_, _, c, _)| c == chart).collect();
                    let has_contended = of_chart.iter().any(|(_, _, _, k)| *k);
                    let variants: &[bool] = if has_contended {
                        &[false, true]
                    } else {
                        &[false]
                    };
                    let unit = of_chart[0].0.unit;
                    let mut bars = Vec::new();
                    for &sys in &systems {
                        for &contended in variants {
                            let label = if contended {
                                format!("{sys} (contended)")
                            } else {
                                sys.to_owned()
                            };
                            let found = of_chart
                                .iter()
                                .find(|(_, s, _, k)| *s == sys && *k == contended);
                            let value = match found.map(|(f, ..)| &f.value) {
                                None => BarValue::NotMeasured,
                                Some(Ok(s)) => BarValue::Measured(s),
                                Some(Err(why)) => BarValue::Unavailable(why),
                            };
                            bars.push(Bar {
                                label,
                                value,
                                pvmux: sys == "pvmux",
                            });
                        }
                    }
                    let defs = || {
                        of_chart
                            .iter()
                            .filter_map(|(f, ..)| BENCHMARKS.iter().find(|d| d.name == f.name))
                    };
                    let target = defs().find_map(|d| d.target.map(|t| (t, d.name)));
                    let about = defs()
                        .find(|d| d.name.starts_with("pvmux."))
                        .or_else(|| defs().next())
                        .map(|d| d.about);
                    // A transition only pvmux has: the run's references, for scale.
                    let mut references = false;
                    if systems == ["pvmux"] && unit == Unit::Ns {
                        for (name, label) in [
                            (BASELINE, "native getppid (reference)"),
                            (KVM_BASELINE, "KVM exit to user (reference)"),
                        ] {
                            if let Some(s) = measured(name) {
                                references = true;
                                bars.push(Bar {
                                    label: label.to_owned(),
                                    value: BarValue::Measured(s),
                                    pvmux: false,
                                });
                            }
                        }
                    }
                    Chart {
                        figure: chart.clone(),
                        unit,
                        target,
                        about,
                        bars,
                        references,
                    }
                })
                .collect();
            (sec, charts)
        })
        .collect()
}

/// Widths of a chart (SVG user units).
const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 190.0;
const BAR_MAX: f64 = 360.0;
const ROW_H: f64 = 24.0;

/// The inline SVG of one chart.
fn svg(c: &Chart<'_>) -> String {
    let max = c
        .bars
        .iter()
        .filter_map(|b| match b.value {
            BarValue::Measured(s) => Some(s.median),
            _ => None,
        })
        .chain(c.target.map(|(t, _)| t))
        .fold(0.0_f64, f64::max);
    let scale = |v: f64| {
        if max > 0.0 {
            (v / max * BAR_MAX).max(1.0)
        } else {
            1.0
        }
    };
    let pvmux_idle = c.bars.iter().find_map(|b| match (&b.value, b.pvmux) {
        (BarValue::Measured(s), true) if s.median > 0.0 => Some(s.median),
        _ => None,
    });
    let top = if c.target.is_some() { 18.0 } else { 4.0 };
    let height = top + ROW_H * c.bars.len() as f64 + 6.0;
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n"
    );
    for (i, b) in c.bars.iter().enumerate() {
        let y = top + ROW_H * i as f64;
        let _ = writeln!(
            out,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 8.0,
            y + 16.0,
            escape(&b.label)
        );
        match b.value {
            BarValue::Measured(s) => {
                let w = scale(s.median);
                let class = if b.pvmux { "bar pvmux" } else { "bar peer" };
                let ratio = match pvmux_idle {
                    Some(p) if !b.pvmux || s.median != p => {
                        format!(" ({} pvmux)", format_ratio(s.median / p))
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "<rect class=\"{class}\" x=\"{LABEL_W}\" y=\"{:.1}\" width=\"{w:.1}\" \
                     height=\"{:.1}\"><title>{}: median {}, p99 {}, {} samples</title></rect>",
                    y + 3.0,
                    ROW_H - 6.0,
                    escape(&b.label),
                    escape(&format_value(s.median, c.unit)),
                    escape(&format_value(s.p99, c.unit)),
                    s.samples
                );
                let _ = writeln!(
                    out,
                    "<text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{}{}</text>",
                    LABEL_W + w + 6.0,
                    y + 16.0,
                    escape(&format_value(s.median, c.unit)),
                    escape(&ratio)
                );
            }
            BarValue::Unavailable(why) => {
                let _ = writeln!(
                    out,
                    "<text class=\"missing\" x=\"{LABEL_W}\" y=\"{:.1}\">unavailable (below)\
                     <title>{}</title></text>",
                    y + 16.0,
                    escape(why)
                );
            }
            BarValue::NotMeasured => {
                let _ = writeln!(
                    out,
                    "<text class=\"missing\" x=\"{LABEL_W}\" y=\"{:.1}\">not measured</text>",
                    y + 16.0
                );
            }
        }
    }
    if let Some((t, _)) = c.target {
        let x = LABEL_W + scale(t);
        let _ = writeln!(
            out,
            "<line class=\"target\" x1=\"{x:.1}\" y1=\"14\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\n\
             <text class=\"target\" x=\"{x:.1}\" y=\"11\" text-anchor=\"middle\">target ≤ {}</text>",
            height - 2.0,
            escape(&format_value(t, c.unit))
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The verdict on a chart's target: met or missed by pvmux's idle figure (the target's own).
fn verdict(c: &Chart<'_>, figs: &[Figure]) -> Option<String> {
    let (t, name) = c.target?;
    let own = figs
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.as_ref().ok())?;
    Some(if own.median <= t {
        format!("{name}: target ≤ {} met", format_value(t, c.unit))
    } else {
        format!(
            "{name}: target ≤ {} missed ({} of it)",
            format_value(t, c.unit),
            format_ratio(own.median / t)
        )
    })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
h3{font-size:1em;margin:1.4em 0 .2em;font-family:monospace}\
table.host td{padding:.1em .8em .1em 0;vertical-align:top}\
p.about{margin:.1em 0;color:#555}\
svg.chart{display:block;font-size:12px;font-family:system-ui,sans-serif}\
rect.pvmux{fill:#2b6cb0}rect.peer{fill:#a0aec0}\
text.missing{fill:#a33;font-style:italic}ul.reasons{color:#a33;font-size:.9em;margin:.2em 0}text.value{fill:#222}\
line.target{stroke:#c05621;stroke-width:1.5;stroke-dasharray:4 3}text.target{fill:#c05621;font-size:11px}";

/// The whole page.
pub fn render(host: &HostInfo, figs: &[Figure]) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        out,
        "<title>pvmux {} bench{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&host.pvmux_version),
        if host.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        out,
        "<h1>pvmux {} bench{}</h1>",
        escape(&host.pvmux_version),
        if host.quick { " (quick run)" } else { "" }
    );
    out.push_str(&host_table(host));
    out.push_str(
        "<p>Every figure is a median over many repetitions in one run (hover a bar for its \
         99th percentile and samples); all systems of a chart were measured in the same run. \
         Every figure is a cost: <strong>lower is better</strong>. Bars are to a linear \
         scale per chart; ratios are to pvmux's figure.</p>\n",
    );
    for (section, charts) in charts(figs) {
        let _ = writeln!(out, "<section>\n<h2>{}</h2>", escape(&section));
        for c in &charts {
            let _ = writeln!(
                out,
                "<div class=\"figure\">\n<h3>{}</h3>",
                escape(&c.figure)
            );
            let mut about = String::new();
            if let Some(a) = c.about {
                about.push_str(a);
                about.push_str("; ");
            }
            about.push_str(match c.unit {
                Unit::Ns => "time per operation",
                Unit::Bytes => "memory",
            });
            about.push_str(", lower is better");
            if c.references {
                about.push_str("; no peer has this transition: the run's references for scale");
            }
            let _ = writeln!(out, "<p class=\"about\">{}</p>", escape(&about));
            out.push_str(&svg(c));
            let reasons: Vec<String> = c
                .bars
                .iter()
                .filter_map(|b| match b.value {
                    BarValue::Unavailable(why) => Some(format!(
                        "<li>{}: unavailable: {}</li>",
                        escape(&b.label),
                        escape(why)
                    )),
                    _ => None,
                })
                .collect();
            if !reasons.is_empty() {
                let _ = writeln!(out, "<ul class=\"reasons\">\n{}\n</ul>", reasons.join("\n"));
            }
            if let Some(v) = verdict(c, figs) {
                let _ = writeln!(out, "<p class=\"about\">{}</p>", escape(&v));
            }
            out.push_str("</div>\n");
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The host header as a table.
fn host_table(h: &HostInfo) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let virt = format!(
        "VT-x {}, AMD-V {}; {}",
        yes_no(h.vmx),
        yes_no(h.svm),
        match (&h.hypervisor, &h.hypervisor_vendor) {
            (true, Some(v)) => format!("nested: under a hypervisor ({v})"),
            (true, None) => "nested: under a hypervisor".to_owned(),
            (false, _) => "no hypervisor".to_owned(),
        }
    );
    let kvm = if h.kvm.works {
        format!("works ({})", h.kvm.detail)
    } else {
        format!("unavailable: {}", h.kvm.detail)
    };
    let load = h
        .load_avg
        .map(|[a, b, c]| format!("{a:.2} {b:.2} {c:.2} (1, 5, 15 min)"))
        .unwrap_or_else(|| "not recorded".to_owned());
    let rows = [
        (
            "CPU",
            format!("{} ({} CPUs usable)", h.cpu_model, h.nr_cpus),
        ),
        ("kernel", format!("Linux {}", h.kernel)),
        ("virtualization", virt),
        ("KVM", kvm),
        ("load average", load),
        (
            "date",
            h.date_utc.clone().unwrap_or_else(|| "not recorded".into()),
        ),
        (
            "pvmux",
            format!(
                "{}{}",
                h.pvmux_version,
                if h.quick { ", --quick" } else { "" }
            ),
        ),
    ];
    let mut out = String::from("<table class=\"host\">\n");
    for (k, v) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(k),
            escape(&v)
        );
    }
    out.push_str("</table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hostinfo::KvmInfo;

    fn host() -> HostInfo {
        HostInfo {
            cpu_model: "Test <CPU> & \"co\"".into(),
            kernel: "6.1".into(),
            nr_cpus: 2,
            vmx: false,
            svm: false,
            hypervisor: true,
            hypervisor_vendor: Some("KVM".into()),
            kvm: KvmInfo {
                dev_kvm_opens: false,
                vm_creatable: None,
                guest_mode: None,
                works: false,
                detail: "/dev/kvm: No such file or directory".into(),
            },
            pvmux_version: "0.1.0".into(),
            quick: true,
            load_avg: Some([3.5, 2.25, 1.0]),
            date_utc: Some("2026-12-03T15:00:00Z".into()),
        }
    }

    fn fig(name: &str, v: Result<f64, &str>) -> Figure {
        Figure {
            name: name.into(),
            unit: Unit::Ns,
            value: v
                .map(|m| Summary {
                    median: m,
                    p99: m * 2.0,
                    samples: 50,
                })
                .map_err(str::to_owned),
        }
    }

    /// A run with the user family (one peer not measured for one figure, one unavailable),
    /// a contended variant, a pvmux-only transition with a target, and the references.
    fn synthetic() -> Vec<Figure> {
        vec![
            fig("pvmux.hypercall.spin", Ok(300.0)),
            fig(BASELINE, Ok(150.0)),
            fig(KVM_BASELINE, Err("no /dev/kvm")),
            fig("native.user.syscall_getppid", Ok(100.0)),
            fig("uml.user.syscall_getppid", Ok(30_000.0)),
            fig("gvisor.user.syscall_getppid", Err("runsc <missing> & gone")),
            fig("pvmux.user.syscall_getppid", Ok(1_000.0)),
            fig("native.user.syscall_getppid.contended", Ok(120.0)),
            fig("pvmux.user.syscall_getppid.contended", Ok(1_500.0)),
            fig("native.user.page_fault", Ok(500.0)),
            fig("pvmux.user.page_fault", Ok(2_000.0)),
        ]
    }

    /// The `<div class="figure">` of chart `name`.
    fn chart<'a>(page: &'a str, name: &str) -> &'a str {
        let start = page
            .find(&format!("<h3>{name}</h3>"))
            .unwrap_or_else(|| panic!("no chart {name} in\n{page}"));
        let end = page[start..].find("</div>").unwrap() + start;
        &page[start..end]
    }

    #[test]
    fn one_self_contained_page() {
        let page = render(&host(), &synthetic());
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.ends_with("</html>\n"));
        for external in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!page.contains(external), "{external} in\n{page}");
        }
        assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
        assert_eq!(page.matches("<h3>").count(), 5, "{page}");
        for sec in ["hypercall", "syscall", "exit_to_user", "user"] {
            assert!(page.contains(&format!("<h2>{sec}</h2>")), "{sec}:\n{page}");
        }
        assert!(page.contains("lower is better"));
        assert!(page.contains("3.50 2.25 1.00"), "load average");
        assert!(page.contains("2026-12-03T15:00:00Z"));
        assert!(page.contains("nested: under a hypervisor (KVM)"));
    }

    #[test]
    fn every_string_is_escaped() {
        let mut figs = synthetic();
        figs.push(fig("pvmux.evil<b>.x", Err("<script>alert('x')</script>")));
        let page = render(&host(), &figs);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("<CPU>"), "{page}");
        assert!(page.contains("Test &lt;CPU&gt; &amp; &quot;co&quot;"));
        assert!(page.contains("runsc &lt;missing&gt; &amp; gone"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&#39;");
    }

    #[test]
    fn one_bar_per_measured_system_and_missing_ones_said() {
        let page = render(&host(), &synthetic());
        let getppid = chart(&page, "user.syscall_getppid");
        // native, uml and pvmux measured idle; native and pvmux contended: five bars.
        assert_eq!(getppid.matches("<rect").count(), 5, "{getppid}");
        assert_eq!(getppid.matches("<rect class=\"bar pvmux\"").count(), 2);
        assert!(getppid.contains("<li>gvisor: unavailable: runsc &lt;missing&gt; &amp; gone</li>"));
        assert_eq!(
            getppid.matches("unavailable (below)").count(),
            1,
            "{getppid}"
        );
        // uml and gvisor have no contended figure: not measured.
        assert_eq!(getppid.matches("not measured").count(), 2, "{getppid}");
        assert!(getppid.contains(">pvmux (contended)</text>"));
        // Ratios to pvmux's idle figure; pvmux first.
        assert!(getppid.contains("100.0 ns (0.100× pvmux)"), "{getppid}");
        assert!(getppid.contains("1.50 µs (1.50× pvmux)"), "{getppid}");
        let first_label = getppid.find(">pvmux</text>").unwrap();
        assert!(first_label < getppid.find(">native</text>").unwrap());
        // A section's systems are in each of its charts: uml and gvisor have no page fault.
        let fault = chart(&page, "user.page_fault");
        assert_eq!(fault.matches("<rect").count(), 2, "{fault}");
        assert_eq!(fault.matches("not measured").count(), 2, "{fault}");
        assert!(!fault.contains("contended"), "{fault}");
    }

    #[test]
    fn targets_and_references() {
        let page = render(&host(), &synthetic());
        let spin = chart(&page, "hypercall.spin");
        assert!(spin.contains("class=\"target\""), "{spin}");
        assert!(spin.contains("target ≤ 250.0 ns"), "{spin}");
        assert!(
            spin.contains("pvmux.hypercall.spin: target ≤ 250.0 ns missed (1.20× of it)"),
            "{spin}"
        );
        // pvmux alone: the measured reference is shown, the unavailable one is not.
        assert!(spin.contains("native getppid (reference)"), "{spin}");
        assert!(!spin.contains("KVM exit"), "{spin}");
        assert_eq!(spin.matches("<rect").count(), 2, "{spin}");
        // No target: no line.
        assert!(!chart(&page, "user.page_fault").contains("class=\"target\""));
    }

    #[test]
    fn saved_reports_render_the_same() {
        use crate::bench::{BenchReport, BenchResult};
        let mut figs = synthetic();
        // A median the JSON rounds: the live page shows what the JSON says.
        figs.push(fig("native.user.pipe_pingpong", Ok(1234.56549)));
        figs.push(fig("pvmux.user.pipe_pingpong", Ok(71.764_9)));
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let report = BenchReport {
            host: host(),
            results: figs
                .iter()
                .map(|f| BenchResult {
                    name: leak(&f.name),
                    unit: f.unit,
                    value: f.value.clone(),
                })
                .collect(),
            baseline_ns: Some(150.0),
            kvm_baseline_ns: None,
        };
        let text = serde_json::to_string(&crate::bench::report::json(&report)).unwrap();
        let saved: SavedReport = serde_json::from_str(&text).unwrap();
        let back = saved.figures().unwrap();
        assert_eq!(
            render(&saved.host, &back),
            render(&report.host, &figures(&report))
        );
        let bad: SavedReport = serde_json::from_str(
            r#"{"host": {"cpu_model":"c","kernel":"k","nr_cpus":1,"vmx":false,"svm":false,
                "hypervisor":false,"hypervisor_vendor":null,"kvm":{"dev_kvm_opens":false,
                "vm_creatable":null,"guest_mode":null,"works":false,"detail":""},
                "pvmux_version":"0","quick":false},
                "results":[{"name":"a.b","unit":"s","median_ns":1.0}]}"#,
        )
        .unwrap();
        assert!(matches!(bad.figures(), Err(SavedError::Unit { .. })));
    }
}
