//! What the host is: CPU, kernel, virtualization features, KVM.

use raw_cpuid::{CpuId, Hypervisor};
use serde::{Deserialize, Serialize};

use pvmux_bench_peers::KvmReport;

/// The host the benchmarks ran on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    /// CPU brand string (CPUID).
    pub cpu_model: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPUs this process may run on.
    pub nr_cpus: usize,
    /// VT-x (CPUID.1:ECX.VMX).
    pub vmx: bool,
    /// AMD-V (CPUID.80000001h:ECX.SVM).
    pub svm: bool,
    /// Running under a hypervisor (CPUID.1:ECX bit 31).
    pub hypervisor: bool,
    /// The hypervisor's identity (CPUID leaf 4000_0000h), if any.
    pub hypervisor_vendor: Option<String>,
    /// What the KVM probe found.
    pub kvm: KvmInfo,
    /// pvmux version.
    pub pvmux_version: String,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// The load average (1, 5, 15 minutes) when the run ended (`/proc/loadavg`).
    #[serde(default)]
    pub load_avg: Option<[f64; 3]>,
    /// When the run ended, RFC 3339 UTC (set by the command line).
    #[serde(default)]
    pub date_utc: Option<String>,
}

/// What the KVM probe found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KvmInfo {
    /// `/dev/kvm` opened.
    pub dev_kvm_opens: bool,
    /// A VM could be created (`null`: not tried).
    pub vm_creatable: Option<bool>,
    /// A tiny guest ran: in which mode (`null`: none ran).
    pub guest_mode: Option<String>,
    /// KVM works: a tiny guest ran and exited as expected.
    pub works: bool,
    /// Details (why it does not work, or what worked).
    pub detail: String,
}

impl KvmInfo {
    /// From the probe's report.
    pub fn from_report(r: &KvmReport) -> Self {
        Self {
            dev_kvm_opens: r.dev_kvm_opens,
            vm_creatable: r.vm_creatable,
            guest_mode: r.guest_mode.map(|m| m.to_string()),
            works: r.guest_mode.is_some(),
            detail: r.detail.clone(),
        }
    }
}

impl HostInfo {
    /// Collects the host's description.
    pub fn collect(kvm: KvmInfo, quick: bool) -> Self {
        let cpuid = CpuId::new();
        let features = cpuid.get_feature_info();
        let hypervisor = features.as_ref().is_some_and(|f| f.has_hypervisor());
        let hypervisor_vendor = cpuid
            .get_hypervisor_info()
            .map(|h| match h.identify() {
                Hypervisor::Unknown(b, c, d) => {
                    let bytes: Vec<u8> = [b, c, d].iter().flat_map(|r| r.to_le_bytes()).collect();
                    let s = String::from_utf8_lossy(&bytes);
                    let s = s.trim_matches(char::from(0)).trim();
                    if s.is_empty() {
                        "unknown".to_owned()
                    } else {
                        s.to_owned()
                    }
                }
                known => format!("{known:?}"),
            })
            .filter(|_| hypervisor);
        Self {
            cpu_model: cpuid
                .get_processor_brand_string()
                .map(|b| b.as_str().trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned()),
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            nr_cpus: pvmux_bench_peers::allowed_cpus().len(),
            vmx: features.as_ref().is_some_and(|f| f.has_vmx()),
            svm: cpuid
                .get_extended_processor_and_feature_identifiers()
                .is_some_and(|e| e.has_svm()),
            hypervisor,
            hypervisor_vendor,
            kvm,
            pvmux_version: env!("CARGO_PKG_VERSION").to_owned(),
            quick,
            load_avg: load_avg(),
            date_utc: None,
        }
    }
}

/// The load average (1, 5, 15 minutes) from `/proc/loadavg`.
fn load_avg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_loadavg(&text)
}

/// The first three fields of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|w| w.parse().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

#[cfg(test)]
mod tests {
    #[test]
    fn loadavg() {
        assert_eq!(
            super::parse_loadavg("3.52 2.10 1.05 4/812 12345\n"),
            Some([3.52, 2.10, 1.05])
        );
        assert_eq!(super::parse_loadavg("3.52 x"), None);
    }
}
