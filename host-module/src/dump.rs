//! Crash dumps: a directory per crash with the report, the registers as JSON, the guest's
//! memory (sparse) and its last console lines.
//!
//! Layout: `DIR/<tenant>-<unix seconds>-<n>/` with
//! - `report.txt`: the human-readable [`CrashReport`];
//! - `registers.json`: [`DumpRegisters`] (reason, vector, error code, fault address, every
//!   register, symbol, backtrace);
//! - `guest-memory.bin`: guest-physical memory from address 0, exactly the tenant's memory
//!   size, with holes where 4 KiB pages are all zero;
//! - `console.txt`: the last console lines.
//!
//! The text files hold the report's text, in which every guest string (console lines, panic
//! message, symbols) is already escaped for a terminal ([`crate::escape`]); only
//! `guest-memory.bin` holds raw guest bytes.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pvmux_hypercalls::{CrashReason, TrapFrame, Vector};
use serde::Serialize;

use crate::{CrashCause, CrashReport, GuestMemory};

/// Dumps written by this process (the `<n>` of the directory name).
static DUMPS: AtomicU64 = AtomicU64::new(0);

/// One backtrace frame in `registers.json`.
#[derive(Debug, Serialize)]
pub struct DumpFrame {
    /// Code address.
    pub addr: u64,
    /// `symbol+0xoff`, if known.
    pub symbol: Option<String>,
}

/// The contents of `registers.json`.
#[derive(Debug, Serialize)]
pub struct DumpRegisters {
    /// Tenant name.
    pub tenant: String,
    /// One-line cause (as in the report's first line).
    pub cause: String,
    /// Short machine-readable kind: `guest_panic`, `stub`, `watchdog`, `signal`, ...
    pub kind: &'static str,
    /// Stub crash reason name, for stub-recorded crashes.
    pub reason: Option<String>,
    /// Exception vector number, if the crash has one.
    pub vector: Option<u32>,
    /// Exception vector name.
    pub vector_name: Option<String>,
    /// Exception error code.
    pub error_code: Option<u64>,
    /// Fault address.
    pub fault_addr: Option<u64>,
    /// vCPU, if known.
    pub vcpu: Option<u32>,
    /// Registers by name, if known.
    pub registers: Option<std::collections::BTreeMap<&'static str, u64>>,
    /// Symbol of `rip`.
    pub symbol: Option<String>,
    /// Frame-pointer backtrace.
    pub backtrace: Vec<DumpFrame>,
    /// Extra findings.
    pub notes: Vec<String>,
}

/// Named registers of a trap frame.
fn registers(r: &TrapFrame) -> std::collections::BTreeMap<&'static str, u64> {
    r.named_registers().into_iter().collect()
}

impl DumpRegisters {
    /// The JSON view of a report.
    pub fn from_report(r: &CrashReport) -> Self {
        let mut d = Self {
            tenant: r.tenant.clone(),
            cause: r.cause.to_string(),
            kind: r.cause.kind(),
            reason: None,
            vector: None,
            vector_name: None,
            error_code: None,
            fault_addr: None,
            vcpu: r.vcpu,
            registers: r.regs.as_ref().map(registers),
            symbol: r.backtrace.first().and_then(|f| f.symbol.clone()),
            backtrace: r
                .backtrace
                .iter()
                .map(|f| DumpFrame {
                    addr: f.addr,
                    symbol: f.symbol.clone(),
                })
                .collect(),
            notes: r.notes.clone(),
        };
        if let CrashCause::Stub {
            reason,
            vector,
            error_code,
            fault_addr,
            ..
        } = &r.cause
        {
            d.reason = Some(
                CrashReason::from_raw(*reason)
                    .map_or_else(|| format!("unknown ({reason})"), |x| format!("{x:?}")),
            );
            d.vector = Some(*vector);
            d.vector_name = Vector::from_raw(u64::from(*vector)).map(|v| v.name().to_owned());
            d.error_code = Some(*error_code);
            d.fault_addr = Some(*fault_addr);
        }
        d
    }
}

/// Writes guest memory to `path` with holes for all-zero 4 KiB pages; the file is exactly
/// `mem.size()` bytes long.
pub fn write_sparse_memory(mem: &GuestMemory, path: &Path) -> io::Result<()> {
    const PAGE: usize = 4096;
    const CHUNK: usize = 256 * PAGE;
    let f = File::create(path)?;
    let mut buf = vec![0u8; CHUNK];
    let zero = [0u8; PAGE];
    let size = mem.size();
    let mut gpa = 0u64;
    while gpa < size {
        let n = (size - gpa).min(CHUNK as u64) as usize;
        mem.read(gpa, &mut buf[..n])
            .map_err(|e| io::Error::other(e.to_string()))?;
        for (i, page) in buf[..n].chunks(PAGE).enumerate() {
            if page != &zero[..page.len()] {
                f.write_all_at(page, gpa + (i * PAGE) as u64)?;
            }
        }
        gpa += n as u64;
    }
    f.set_len(size)?;
    Ok(())
}

/// Writes a crash dump of `report` (and `mem`) into a new directory under `dir` (created if
/// missing); returns the new directory.
pub fn write_crash_dump(
    dir: &Path,
    report: &CrashReport,
    mem: &GuestMemory,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name: String = report
        .tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let out = loop {
        let n = DUMPS.fetch_add(1, Relaxed);
        let p = dir.join(format!("{name}-{ts}-{n}"));
        match std::fs::create_dir(&p) {
            Ok(()) => break p,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    std::fs::write(out.join("report.txt"), report.to_string())?;
    let json =
        serde_json::to_vec_pretty(&DumpRegisters::from_report(report)).map_err(io::Error::other)?;
    std::fs::write(out.join("registers.json"), json)?;
    let mut console = File::create(out.join("console.txt"))?;
    for line in &report.console_tail {
        writeln!(console, "{line}")?;
    }
    write_sparse_memory(mem, &out.join("guest-memory.bin"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn dump_has_every_file_and_memory_is_sparse() {
        let tmp = std::env::temp_dir().join(format!("pvmux-dump-test-{}", std::process::id()));
        let mem = GuestMemory::new(16 << 20).unwrap();
        mem.write(0x5000, b"hello").unwrap();
        mem.write_u64((16 << 20) - 8, 0xfeed).unwrap();
        let mut r = CrashReport::new(
            "t/1",
            CrashCause::Stub {
                reason: 1,
                vector: 14,
                error_code: 6,
                fault_addr: 0xdead,
                detail: 0,
            },
        );
        r.regs = Some(TrapFrame {
            rip: 0x1234,
            rax: 7,
            ..Default::default()
        });
        r.backtrace = vec![Frame {
            addr: 0x1234,
            symbol: Some("kmain+0x4".into()),
        }];
        r.console_tail = vec!["last line".into()];
        let out = write_crash_dump(&tmp.join("new/dir"), &r, &mem).unwrap();
        assert!(out
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("t_1-"));
        let report = std::fs::read_to_string(out.join("report.txt")).unwrap();
        assert!(report.contains("unhandled exception"), "{report}");
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("registers.json")).unwrap()).unwrap();
        assert_eq!(j["kind"], "stub");
        assert_eq!(j["reason"], "UnhandledException");
        assert_eq!(j["vector"], 14);
        assert_eq!(j["vector_name"], "#PF");
        assert_eq!(j["fault_addr"], 0xdead);
        assert_eq!(j["registers"]["rip"], 0x1234);
        assert_eq!(j["registers"]["rax"], 7);
        assert_eq!(j["symbol"], "kmain+0x4");
        assert_eq!(j["backtrace"][0]["addr"], 0x1234);
        assert_eq!(
            std::fs::read_to_string(out.join("console.txt")).unwrap(),
            "last line\n"
        );
        let bin = out.join("guest-memory.bin");
        let bytes = std::fs::read(&bin).unwrap();
        assert_eq!(bytes.len(), 16 << 20);
        assert_eq!(&bytes[0x5000..0x5005], b"hello");
        assert_eq!(
            u64::from_le_bytes(bytes[(16 << 20) - 8..].try_into().unwrap()),
            0xfeed
        );
        // Two non-zero pages: a few KiB allocated, not 16 MiB (when the file system
        // supports holes, as tmpfs and ext4 do).
        let blocks = std::fs::metadata(&bin).unwrap().blocks() * 512;
        assert!(blocks < 1 << 20, "{blocks} bytes allocated");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
