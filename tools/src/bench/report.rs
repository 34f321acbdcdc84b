//! Output: the human table and the JSON document.

use std::fmt::Write as _;

use serde::Serialize;

use super::apps;
use super::contended;
use super::hostinfo::HostInfo;
use super::oci;
use super::user::{self, Peer};
use super::{BenchReport, BenchResult, Unit, BENCHMARKS};

/// Formats a figure in its unit with a readable scale (`142.3 ns`, `2.41 µs`, `1.50 MiB`).
pub fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ns if v < 1e3 => format!("{v:.1} ns"),
        Unit::Ns if v < 1e6 => format!("{:.2} µs", v / 1e3),
        Unit::Ns if v < 1e9 => format!("{:.2} ms", v / 1e6),
        Unit::Ns => format!("{:.2} s", v / 1e9),
        Unit::Bytes if v < 1024.0 => format!("{v:.0} B"),
        Unit::Bytes if v < 1024.0 * 1024.0 => format!("{:.1} KiB", v / 1024.0),
        Unit::Bytes => format!("{:.2} MiB", v / (1024.0 * 1024.0)),
    }
}

/// A ratio with three significant digits (`0.0912×`, `17.6×`, `243×`; at most six decimals).
pub fn format_ratio(r: f64) -> String {
    if r >= 100.0 || r <= 0.0 || !r.is_finite() {
        return format!("{r:.0}×");
    }
    let decimals = (2 - r.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{r:.decimals$}×")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The header describing the host.
pub fn header(report: &BenchReport) -> String {
    let h = &report.host;
    let hyper = match (&h.hypervisor, &h.hypervisor_vendor) {
        (true, Some(v)) => format!("yes ({v})"),
        (b, _) => yes_no(*b).to_owned(),
    };
    let kvm = if h.kvm.works {
        format!("works ({})", h.kvm.detail)
    } else if h.kvm.dev_kvm_opens {
        format!("/dev/kvm opens but KVM does not work: {}", h.kvm.detail)
    } else {
        format!("unavailable: {}", h.kvm.detail)
    };
    format!(
        "pvmux {} bench{}: {}, Linux {}, {} CPU{}\n\
         host: VT-x {}, SVM {}, hypervisor {}; KVM {}\n",
        h.pvmux_version,
        if h.quick { " (quick)" } else { "" },
        h.cpu_model,
        h.kernel,
        h.nr_cpus,
        if h.nr_cpus == 1 { "" } else { "s" },
        yes_no(h.vmx),
        yes_no(h.svm),
        hyper,
        kvm
    )
}

/// The human-readable table: header, then one row per figure with its ratios to
/// `native.syscall.getppid` and `kvm.exit_to_user` and its target; the user-mode figures
/// (`*.user.*`) follow in their own table (see [`user_table`]).
pub fn table(report: &BenchReport) -> String {
    let (base, kvm) = (report.baseline_ns, report.kvm_baseline_ns);
    let mut out = header(report);
    let (users, others): (Vec<&BenchResult>, Vec<&BenchResult>) = report
        .results
        .iter()
        .partition(|r| user::split(r.name).is_some());
    let (apps, others): (Vec<&BenchResult>, Vec<&BenchResult>) = others
        .into_iter()
        .partition(|r| apps::split(r.name).is_some());
    let (ocis, others): (Vec<&BenchResult>, Vec<&BenchResult>) = others
        .into_iter()
        .partition(|r| oci::split(r.name).is_some());
    let (contendeds, others): (Vec<&BenchResult>, Vec<&BenchResult>) = others
        .into_iter()
        .partition(|r| contended::split(r.name).is_some());
    if !others.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{:38} {:>11} {:>11} {:>8} {:>9} {:>9}  target",
            "benchmark", "median", "p99", "samples", "/getppid", "/kvm-exit"
        );
        for r in others {
            out.push_str(&row(r, base, kvm));
            out.push('\n');
        }
    }
    if !users.is_empty() {
        out.push('\n');
        out.push_str(&user_table(&users));
    }
    if !apps.is_empty() {
        out.push('\n');
        out.push_str(&app_table(&apps));
    }
    if !ocis.is_empty() {
        out.push('\n');
        out.push_str(&oci_table(&ocis));
    }
    if !contendeds.is_empty() {
        out.push('\n');
        out.push_str(&contended_table(&contendeds));
    }
    out
}

/// The OCI runtime figures (`*.oci.*`) side by side: one row per figure, one column per
/// runtime (runc, gVisor, pvmux), each cell the median and its ratio to runc's; then why
/// the missing cells are missing.
pub fn oci_table(results: &[&BenchResult]) -> String {
    let find = |rt: oci::Runtime, figure: &str| {
        results
            .iter()
            .find(|r| oci::split(r.name) == Some((rt, figure)))
    };
    let mut out =
        String::from("oci: podman with each runtime, one busybox image; median (ratio to runc)\n");
    let _ = write!(out, "{:20}", "figure");
    for rt in oci::Runtime::ALL {
        let _ = write!(out, " {:>CELL$}", rt.prefix());
    }
    out.push('\n');
    for (figure, unit) in oci::FIGURES {
        if oci::Runtime::ALL
            .iter()
            .all(|&rt| find(rt, figure).is_none())
        {
            continue;
        }
        let runc = find(oci::Runtime::Runc, figure)
            .and_then(|r| r.value.as_ref().ok())
            .map(|s| s.median)
            .filter(|&m| m > 0.0);
        let _ = write!(out, "{figure:20}");
        for rt in oci::Runtime::ALL {
            let cell = match find(rt, figure).map(|r| &r.value) {
                None => "-".to_owned(),
                Some(Err(_)) => "unavailable".to_owned(),
                Some(Ok(s)) => match runc {
                    Some(n) if rt != oci::Runtime::Runc => format!(
                        "{} ({})",
                        format_value(s.median, unit),
                        format_ratio(s.median / n)
                    ),
                    _ => format_value(s.median, unit),
                },
            };
            let _ = write!(out, " {cell:>CELL$}");
        }
        out.push('\n');
    }
    for r in results {
        if let Err(why) = &r.value {
            let _ = writeln!(out, "{}: unavailable: {why}", r.name);
        }
    }
    out
}

/// Width of a cell of the user-mode table.
const CELL: usize = 21;

/// The user-mode figures side by side: one row per figure, one column per peer (native, UML,
/// gVisor, pvmux), each cell the median and its ratio to the native median; then why the
/// missing cells are missing (once per peer when one reason covers all its figures).
pub fn user_table(results: &[&BenchResult]) -> String {
    let figures: Vec<&str> = user::WORKLOAD.iter().copied().chain([user::BOOT]).collect();
    peer_table(
        results,
        user::split,
        &figures,
        "user mode: the same static program (pvmux-user-bench) on each system; \
         median (ratio to native)",
        "user",
    )
}

/// The whole-program figures (`*.app.*`) side by side, as [`user_table`].
pub fn app_table(results: &[&BenchResult]) -> String {
    let figures: Vec<&str> = apps::APPS.iter().map(|(f, _)| *f).collect();
    peer_table(
        results,
        apps::split,
        &figures,
        "apps: programs from the host's root, spawn to exit, start-up of each system \
         included; median (ratio to native)",
        "app",
    )
}

/// The user-mode figures measured next to CPU hogs (`*.user.*.contended`), as
/// [`user_table`].
pub fn contended_table(results: &[&BenchResult]) -> String {
    peer_table(
        results,
        contended::split,
        &contended::FIGURES,
        &format!(
            "user mode next to {} CPU-bound host processes (`*.contended`); median (ratio to \
             native under the same load)",
            contended::HOGS
        ),
        "user.*.contended",
    )
}

/// A table of per-peer figures named `PEER.FAMILY.FIGURE` (`split` parses a name).
fn peer_table(
    results: &[&BenchResult],
    split: fn(&str) -> Option<(Peer, &str)>,
    figures: &[&str],
    title: &str,
    family: &str,
) -> String {
    let find = |peer: Peer, figure: &str| {
        results
            .iter()
            .find(|r| split(r.name) == Some((peer, figure)))
    };
    let mut out = format!("{title}\n");
    let _ = write!(out, "{:16}", "figure");
    for p in Peer::ALL {
        let _ = write!(out, " {:>CELL$}", p.prefix());
    }
    out.push('\n');
    for &figure in figures {
        if Peer::ALL.iter().all(|&p| find(p, figure).is_none()) {
            continue;
        }
        let native = find(Peer::Native, figure)
            .and_then(|r| r.value.as_ref().ok())
            .map(|s| s.median)
            .filter(|&m| m > 0.0);
        let _ = write!(out, "{figure:16}");
        for p in Peer::ALL {
            let cell = match find(p, figure).map(|r| &r.value) {
                None => "-".to_owned(),
                Some(Err(_)) => "unavailable".to_owned(),
                Some(Ok(s)) => match native {
                    Some(n) if p != Peer::Native => format!(
                        "{} ({})",
                        format_value(s.median, Unit::Ns),
                        format_ratio(s.median / n)
                    ),
                    _ => format_value(s.median, Unit::Ns),
                },
            };
            let _ = write!(out, " {cell:>CELL$}");
        }
        out.push('\n');
    }
    for p in Peer::ALL {
        let reasons: Vec<(&str, &str)> = results
            .iter()
            .filter(|r| split(r.name).is_some_and(|(q, _)| q == p))
            .filter_map(|r| r.value.as_ref().err().map(|why| (r.name, why.as_str())))
            .collect();
        let all = results
            .iter()
            .filter(|r| split(r.name).is_some_and(|(q, _)| q == p))
            .count();
        match reasons.first() {
            None => {}
            Some((_, why)) if reasons.len() == all && reasons.iter().all(|(_, w)| w == why) => {
                let _ = writeln!(out, "{}.{family}.*: unavailable: {why}", p.prefix());
            }
            Some(_) => {
                for (name, why) in reasons {
                    let _ = writeln!(out, "{name}: unavailable: {why}");
                }
            }
        }
    }
    out
}

fn row(r: &BenchResult, base: Option<f64>, kvm: Option<f64>) -> String {
    let s = match &r.value {
        Err(why) => return format!("{:38} unavailable: {why}", r.name),
        Ok(s) => s,
    };
    let ratio = |b: Option<f64>| match (r.unit, b) {
        (Unit::Ns, Some(b)) => format_ratio(s.median / b),
        _ => "-".to_owned(),
    };
    let target = BENCHMARKS
        .iter()
        .find(|d| d.name == r.name)
        .and_then(|d| d.target)
        .map(|t| {
            let verdict = if s.median <= t {
                "met".to_owned()
            } else {
                format!("missed, {} of it", format_ratio(s.median / t))
            };
            format!("≤ {} ({verdict})", format_value(t, r.unit))
        })
        .unwrap_or_default();
    format!(
        "{:38} {:>11} {:>11} {:>8} {:>9} {:>9}  {target}",
        r.name,
        format_value(s.median, r.unit),
        format_value(s.p99, r.unit),
        s.samples,
        ratio(base),
        ratio(kvm),
    )
    .trim_end()
    .to_owned()
}

/// `v` to three decimals, as the JSON document gives figures.
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The JSON document: `{"host": {...}, "results": [...]}`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// The host.
    pub host: &'a HostInfo,
    /// One entry per selected benchmark.
    pub results: Vec<JsonResult>,
}

/// One entry of [`JsonReport::results`]: the numbers, or `unavailable` with the reason.
#[derive(Debug, Serialize)]
pub struct JsonResult {
    /// Benchmark name.
    pub name: &'static str,
    /// Median, in `unit` (the key says ns for every unit, for a uniform schema).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_ns: Option<f64>,
    /// 99th percentile, in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<f64>,
    /// Number of samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Why there are no numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// `ns` or `bytes`.
    pub unit: &'static str,
}

/// The JSON document of a report.
pub fn json(report: &BenchReport) -> JsonReport<'_> {
    let results = report
        .results
        .iter()
        .map(|r| {
            let (s, why) = match &r.value {
                Ok(s) => (Some(s), None),
                Err(why) => (None, Some(why.clone())),
            };
            JsonResult {
                name: r.name,
                median_ns: s.map(|s| round3(s.median)),
                p99_ns: s.map(|s| round3(s.p99)),
                samples: s.map(|s| s.samples),
                unavailable: why,
                unit: r.unit.as_str(),
            }
        })
        .collect();
    JsonReport {
        host: &report.host,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hostinfo::KvmInfo;
    use crate::bench::stats::Summary;
    use crate::bench::{BASELINE, KVM_BASELINE};

    fn report() -> BenchReport {
        let s = |m| {
            Ok(Summary {
                median: m,
                p99: m * 2.0,
                samples: 100,
            })
        };
        BenchReport {
            host: HostInfo {
                cpu_model: "Test CPU".into(),
                kernel: "6.0".into(),
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
                load_avg: None,
                date_utc: None,
            },
            results: vec![
                BenchResult {
                    name: "pvmux.hypercall.spin",
                    unit: Unit::Ns,
                    value: s(300.0),
                },
                BenchResult {
                    name: "pvmux.host_rss_per_tenant",
                    unit: Unit::Bytes,
                    value: s(1048576.0),
                },
                BenchResult {
                    name: BASELINE,
                    unit: Unit::Ns,
                    value: s(150.0),
                },
                BenchResult {
                    name: KVM_BASELINE,
                    unit: Unit::Ns,
                    value: Err("/dev/kvm: No such file or directory".into()),
                },
            ],
            baseline_ns: Some(150.0),
            kvm_baseline_ns: None,
        }
    }

    #[test]
    fn table_has_ratios_targets_and_reasons() {
        let t = table(&report());
        assert!(t.contains("hypervisor yes (KVM)"), "{t}");
        let spin = t
            .lines()
            .find(|l| l.starts_with("pvmux.hypercall.spin"))
            .unwrap();
        assert!(spin.contains("2.00×"), "{spin}");
        assert!(spin.contains("missed, 1.20× of it"), "{spin}");
        let rss = t.lines().find(|l| l.starts_with("pvmux.host_rss")).unwrap();
        assert!(rss.contains("1.00 MiB") && rss.contains("(met)"), "{rss}");
        assert!(t.contains("kvm.exit_to_user                       unavailable: /dev/kvm"));
    }

    #[test]
    fn json_schema() {
        let r = report();
        let text = serde_json::to_string(&json(&r)).unwrap();
        assert!(
            text.starts_with(r#"{"host":{"cpu_model":"Test CPU""#),
            "{text}"
        );
        assert!(text.contains(r#"{"name":"pvmux.hypercall.spin","median_ns":300.0,"p99_ns":600.0,"samples":100,"unit":"ns"}"#), "{text}");
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["host"]["cpu_model"], "Test CPU");
        let r = j["results"].as_array().unwrap();
        assert_eq!(r[0]["median_ns"], 300.0);
        assert_eq!(r[0]["unit"], "ns");
        assert_eq!(r[1]["unit"], "bytes");
        assert!(r[3].get("median_ns").is_none());
        assert_eq!(r[3]["unavailable"], "/dev/kvm: No such file or directory");
    }

    #[test]
    fn user_figures_are_side_by_side() {
        let s = |m: f64| {
            Ok(Summary {
                median: m,
                p99: m,
                samples: 10,
            })
        };
        let mut r = report();
        let user = |name, value| BenchResult {
            name,
            unit: Unit::Ns,
            value,
        };
        r.results.extend([
            user("native.user.syscall_getppid", s(200.0)),
            user("uml.user.syscall_getppid", s(60_000.0)),
            user(
                "gvisor.user.syscall_getppid",
                Err("runsc is not installed".into()),
            ),
            user("pvmux.user.syscall_getppid", Err("no @ready".into())),
            user("native.user.boot_to_init", s(600_000.0)),
            user("uml.user.boot_to_init", s(1.5e9)),
            user("gvisor.user.boot_to_init", s(1.4e8)),
            user("pvmux.user.boot_to_init", Err("no @ready".into())),
        ]);
        let t = table(&r);
        assert!(
            !t.contains("\nnative.user."),
            "no plain rows for user figures:\n{t}"
        );
        let line = |start: &str| {
            t.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} in\n{t}"))
                .to_owned()
        };
        let getppid = line("syscall_getppid");
        let cells: Vec<&str> = getppid
            .split("  ")
            .filter(|c| !c.trim().is_empty())
            .collect();
        assert_eq!(
            cells.iter().map(|c| c.trim()).collect::<Vec<_>>(),
            [
                "syscall_getppid",
                "200.0 ns",
                "60.00 µs (300×)",
                "unavailable",
                "unavailable",
                "-"
            ],
            "{t}"
        );
        assert!(line("boot_to_init").contains("1.50 s (2500×)"), "{t}");
        assert!(
            !t.contains("page_fault"),
            "unselected figures have no row:\n{t}"
        );
        assert_eq!(line("pvmux.user.*"), "pvmux.user.*: unavailable: no @ready");
        assert_eq!(
            line("gvisor.user.syscall_getppid"),
            "gvisor.user.syscall_getppid: unavailable: runsc is not installed"
        );
        assert!(
            t.contains("pvmux.hypercall.spin"),
            "the other figures stay:\n{t}"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_value(142.34, Unit::Ns), "142.3 ns");
        assert_eq!(format_value(2410.0, Unit::Ns), "2.41 µs");
        assert_eq!(format_value(3.5e6, Unit::Ns), "3.50 ms");
        assert_eq!(format_value(1536.0, Unit::Bytes), "1.5 KiB");
        assert_eq!(format_ratio(0.09123), "0.0912×");
        assert_eq!(format_ratio(0.000333), "0.000333×");
        assert_eq!(format_ratio(17.64), "17.6×");
        assert_eq!(format_ratio(2.0), "2.00×");
        assert_eq!(format_ratio(243.4), "243×");
    }
}
