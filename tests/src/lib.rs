//! Helpers for pvmux integration tests: a host with the embedded stub, the embedded kernel,
//! and tenants whose console is captured.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use pvmux_host::{Host, KernelImage, Tenant, TenantConfig};

/// A host running the embedded stub.
pub fn host() -> Host {
    Host::new(pvmux::images::STUB).expect("host starts")
}

/// The embedded guest kernel.
pub fn kernel() -> Arc<KernelImage> {
    Arc::new(KernelImage::parse(pvmux::images::KERNEL.to_vec()).expect("embedded kernel parses"))
}

/// A console sink that keeps everything the guest printed.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything captured so far, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Launches the embedded kernel with `cmdline` on `vcpus` vCPUs and 64 MiB of memory.
pub fn launch(host: &Host, name: &str, cmdline: &str, vcpus: u32) -> (Tenant, Capture) {
    let console = Capture::default();
    let cfg = TenantConfig {
        name: name.to_owned(),
        kernel: kernel(),
        mem_size: 64 << 20,
        vcpus,
        cmdline: cmdline.to_owned(),
        console: Box::new(console.clone()),
        console_stderr: Box::new(std::io::stderr()),
        kernel_log: pvmux_host::KernelLog::Stdout,
        console_input: None,
        watchdog: None,
        console_rate: None,
        cpu_limit: None,
        cpu_seconds: None,
        crash_dump: None,
        initrd: None,
        hostfs: None,
    };
    let tenant = host.launch(cfg).expect("tenant launches");
    assert!(
        tenant.wait_started(std::time::Duration::from_secs(10)),
        "tenant {name} did not start: {:?}",
        tenant.state()
    );
    (tenant, console)
}
