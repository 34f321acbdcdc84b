//! `kvm.exit_to_user` and `kvm.exit_in_kernel`: what hardware-assisted (or, on hosts with a
//! PVM-style module, kernel-assisted) virtualization costs on this host, measured with a tiny
//! guest — where `/dev/kvm` opens and a VM can be created at all.
//!
//! The guest is tried in real mode first, then in 64-bit mode. Each attempt runs in its own
//! child process with a timeout, so a `KVM_RUN` that never returns cannot hang the caller.

use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};

use crate::child::{self, Reporter};
use crate::{measure, PeerError, Plan, Samples};

/// The processor mode the tiny guest runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMode {
    /// 16-bit real mode (the state a vCPU is created in, with CS moved to 0).
    Real,
    /// 64-bit long mode with identity-mapped page tables.
    Long,
}

impl std::fmt::Display for GuestMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestMode::Real => "real mode",
            GuestMode::Long => "64-bit mode",
        })
    }
}

/// What the KVM probe found and measured.
#[derive(Clone, Debug, PartialEq)]
pub struct KvmReport {
    /// `/dev/kvm` opened and reported the stable API version.
    pub dev_kvm_opens: bool,
    /// A VM could be created (`None`: not tried because `/dev/kvm` did not open).
    pub vm_creatable: Option<bool>,
    /// The mode a tiny guest ran in, if any did.
    pub guest_mode: Option<GuestMode>,
    /// Why KVM does not work, or a short note on what worked.
    pub detail: String,
    /// An `out` to a port: exit to this process and back into the guest, ns per round trip.
    pub exit_to_user: Result<Samples, PeerError>,
    /// A `cpuid`: exit handled in the host kernel, ns per instruction.
    pub exit_in_kernel: Result<Samples, PeerError>,
}

/// Guest-physical layout of the tiny guest.
const MEM_SIZE: usize = 0x10000;
const GDT: u64 = 0x500;
const OUT_LOOP: u64 = 0x1000;
const CPUID_LOOP: u64 = 0x1100;
const PML4: u64 = 0x2000;
const PDPT: u64 = 0x3000;
const PD: u64 = 0x4000;
/// The port the guest writes to.
const PORT: u16 = 0x10;
/// `cpuid`s per exit to user space in the `cpuid` loop.
const CPUIDS_PER_RUN: u16 = 200;
/// `out` round trips per sample.
const OUT_BATCH: u32 = 4;

/// `out 0x10, al; jmp $-2` (the same bytes in 16- and 64-bit mode).
const OUT_CODE: [u8; 4] = [0xe6, 0x10, 0xeb, 0xfc];

/// `mov di, N; l: xor eax, eax; cpuid; dec di; jnz l; out 0x10, al; jmp start` (16-bit).
fn cpuid_code_real(n: u16) -> Vec<u8> {
    let [lo, hi] = n.to_le_bytes();
    vec![
        0xbf, lo, hi, // mov di, n
        0x66, 0x31, 0xc0, // xor eax, eax
        0x0f, 0xa2, // cpuid
        0x4f, // dec di
        0x75, 0xf8, // jnz l
        0xe6, 0x10, // out 0x10, al
        0xeb, 0xf1, // jmp start
    ]
}

/// The same loop in 64-bit mode (`mov edi, N` ... `dec edi`).
fn cpuid_code_long(n: u16) -> Vec<u8> {
    let [a, b, c, d] = u32::from(n).to_le_bytes();
    vec![
        0xbf, a, b, c, d, // mov edi, n
        0x31, 0xc0, // xor eax, eax
        0x0f, 0xa2, // cpuid
        0xff, 0xcf, // dec edi
        0x75, 0xf8, // jnz l
        0xe6, 0x10, // out 0x10, al
        0xeb, 0xef, // jmp start
    ]
}

/// Probes KVM and, if a tiny guest runs, times both kinds of exit.
pub fn kvm(plan: &Plan) -> KvmReport {
    let mut report = KvmReport {
        dev_kvm_opens: false,
        vm_creatable: None,
        guest_mode: None,
        detail: String::new(),
        exit_to_user: Err(PeerError::Unavailable(String::new())),
        exit_in_kernel: Err(PeerError::Unavailable(String::new())),
    };
    let mut failures = Vec::new();
    for mode in [GuestMode::Real, GuestMode::Long] {
        let plan = *plan;
        let out = child::run(plan.timeout, |out| attempt(&plan, mode, out));
        let line = |tag: &str| {
            out.text
                .lines()
                .find_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
                .map(str::to_owned)
        };
        let ended = || match &out.end {
            Ok(()) => "the probe reported nothing".to_owned(),
            Err(e) => format!("the probe {e}"),
        };
        match line("open") {
            Some(s) if s == "ok" => report.dev_kvm_opens = true,
            Some(s) => {
                report.detail = format!("/dev/kvm: {}", s.trim_start_matches("err "));
                break;
            }
            None => {
                report.detail = format!("/dev/kvm: {}", ended());
                break;
            }
        }
        match line("vm") {
            Some(s) if s == "ok" => report.vm_creatable = Some(true),
            Some(s) => {
                report.vm_creatable = Some(false);
                report.detail = format!("cannot create a VM: {}", s.trim_start_matches("err "));
                break;
            }
            None => {
                report.detail = format!("creating a VM: {}", ended());
                break;
            }
        }
        match line("guest") {
            Some(s) if s == "ok" => {
                report.guest_mode = Some(mode);
                let get =
                    |tag| {
                        measure::decode(tag, &out.text).unwrap_or_else(|| {
                            Err(out.end.clone().err().unwrap_or_else(|| {
                                PeerError::ChildDied("reported nothing".to_owned())
                            }))
                        })
                    };
                report.exit_to_user = get("user");
                report.exit_in_kernel = get("kernel");
                report.detail = format!("a tiny guest runs in {mode}");
                return report;
            }
            Some(s) => failures.push(format!("{mode}: {}", s.trim_start_matches("err "))),
            None => failures.push(format!("{mode}: {}", ended())),
        }
    }
    if !failures.is_empty() {
        report.detail = format!("no tiny guest runs ({})", failures.join("; "));
    }
    let e = PeerError::Unavailable(report.detail.clone());
    report.exit_to_user = Err(e.clone());
    report.exit_in_kernel = Err(e);
    report
}

/// One attempt, in the child: reports `open`, `vm`, `guest`, then `user` and `kernel` lines.
fn attempt(plan: &Plan, mode: GuestMode, out: &mut Reporter) {
    let kvm = match Kvm::new() {
        Ok(k) => k,
        Err(e) => return out.send(&format!("open err {e}\n")),
    };
    out.send("open ok\n");
    let vm = match kvm.create_vm() {
        Ok(v) => v,
        Err(e) => return out.send(&format!("vm err KVM_CREATE_VM: {e}\n")),
    };
    out.send("vm ok\n");
    let mut vcpu = match setup(&vm, mode) {
        Ok(v) => v,
        Err(e) => return out.send(&format!("guest err {e}\n")),
    };
    // The first run must come back as an `out` to our port.
    if let Err(e) = run_to_out(&mut vcpu) {
        return out.send(&format!("guest err {e}\n"));
    }
    out.send("guest ok\n");
    let user = measure::batches(plan, OUT_BATCH, || run_to_out(&mut vcpu));
    out.send(&measure::encode("user", &user));
    let kernel = time_cpuid(plan, mode, &mut vcpu, &user);
    out.send(&measure::encode("kernel", &kernel));
}

/// Times the `cpuid` loop: each run is `CPUIDS_PER_RUN` in-kernel exits plus one exit to
/// user space, whose median cost (from `user`) is subtracted.
fn time_cpuid(
    plan: &Plan,
    mode: GuestMode,
    vcpu: &mut VcpuFd,
    user: &Result<Samples, PeerError>,
) -> Result<Samples, PeerError> {
    let out_ns = match user {
        Ok(s) if !s.is_empty() => {
            let mut v = s.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        }
        _ => 0.0,
    };
    let mut regs = vcpu
        .get_regs()
        .map_err(|e| PeerError::failed("KVM_GET_REGS", e))?;
    regs.rip = CPUID_LOOP;
    if mode == GuestMode::Long {
        regs.rsp = 0x8000;
    }
    vcpu.set_regs(&regs)
        .map_err(|e| PeerError::failed("KVM_SET_REGS", e))?;
    let n = f64::from(CPUIDS_PER_RUN);
    let mut raw = measure::batches(plan, 1, || run_to_out(vcpu))?;
    for v in &mut raw {
        *v = ((*v - out_ns) / n).max(0.0);
    }
    Ok(raw)
}

/// Runs the vCPU until its next exit, which must be an `out` to [`PORT`].
fn run_to_out(vcpu: &mut VcpuFd) -> Result<(), PeerError> {
    let t0 = Instant::now();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(PORT, _)) => return Ok(()),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Ok(other) => {
                return Err(PeerError::Unavailable(format!(
                    "KVM_RUN: unexpected exit {other:?}"
                )))
            }
            Err(e) => return Err(PeerError::failed("KVM_RUN", e)),
        }
        if t0.elapsed() > Duration::from_secs(1) {
            return Err(PeerError::Unavailable(
                "KVM_RUN keeps being interrupted".into(),
            ));
        }
    }
}

/// Creates guest memory with both programs (and 64-bit page tables), one vCPU, and sets it up
/// to run the `out` loop in `mode`.
fn setup(vm: &VmFd, mode: GuestMode) -> Result<VcpuFd, PeerError> {
    // SAFETY: a fresh private anonymous mapping; it is never unmapped (the child exits).
    let mem = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            MEM_SIZE,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }
    .map_err(|e| PeerError::failed("mmap", e))?;
    // SAFETY: `mem` is MEM_SIZE writable bytes that nothing else references.
    let bytes = unsafe { std::slice::from_raw_parts_mut(mem.cast::<u8>(), MEM_SIZE) };
    let put = |bytes: &mut [u8], at: u64, data: &[u8]| {
        bytes[at as usize..at as usize + data.len()].copy_from_slice(data);
    };
    put(bytes, OUT_LOOP, &OUT_CODE);
    let cpuid = match mode {
        GuestMode::Real => cpuid_code_real(CPUIDS_PER_RUN),
        GuestMode::Long => cpuid_code_long(CPUIDS_PER_RUN),
    };
    put(bytes, CPUID_LOOP, &cpuid);
    // Identity map of the first 2 MiB; null, code and data descriptors.
    put(bytes, PML4, &(PDPT | 3).to_le_bytes());
    put(bytes, PDPT, &(PD | 3).to_le_bytes());
    put(bytes, PD, &0x83u64.to_le_bytes());
    put(bytes, GDT + 8, &0x00af_9a00_0000_ffffu64.to_le_bytes());
    put(bytes, GDT + 16, &0x00cf_9200_0000_ffffu64.to_le_bytes());
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem as u64,
    };
    // SAFETY: the region is a valid mapping of MEM_SIZE bytes that lives as long as the VM.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| PeerError::failed("KVM_SET_USER_MEMORY_REGION", e))?;
    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| PeerError::failed("KVM_CREATE_VCPU", e))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| PeerError::failed("KVM_GET_SREGS", e))?;
    match mode {
        GuestMode::Real => {
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
        }
        GuestMode::Long => long_mode(&mut sregs),
    }
    vcpu.set_sregs(&sregs)
        .map_err(|e| PeerError::failed("KVM_SET_SREGS", e))?;
    let regs = kvm_regs {
        rip: OUT_LOOP,
        rflags: 2,
        rsp: 0x8000,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(|e| PeerError::failed("KVM_SET_REGS", e))?;
    Ok(vcpu)
}

fn long_mode(s: &mut kvm_sregs) {
    let seg = |selector: u16, type_: u8, l: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1 - l,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.cs = seg(8, 11, 1);
    let data = seg(16, 3, 0);
    (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
    s.gdt.base = GDT;
    s.gdt.limit = 23;
    s.cr3 = PML4;
    s.cr4 = 1 << 5; // PAE
    s.cr0 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31); // PE MP ET NE WP PG
    s.efer = (1 << 8) | (1 << 10); // LME LMA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_jumps_land_on_instruction_starts() {
        // rel8 targets: jnz back to offset of `xor`, jmp back to 0.
        let r = cpuid_code_real(7);
        assert_eq!(r.len(), 15);
        assert_eq!(11 + (r[10] as i8) as isize, 3);
        assert_eq!(15 + (r[14] as i8) as isize, 0);
        let l = cpuid_code_long(7);
        assert_eq!(l.len(), 17);
        assert_eq!(13 + (l[12] as i8) as isize, 5);
        assert_eq!(17 + (l[16] as i8) as isize, 0);
        assert_eq!(4 + (OUT_CODE[3] as i8) as isize, 0);
    }

    #[test]
    fn probe_never_hangs_or_panics() {
        let plan = Plan {
            warmup: 1,
            samples: 20,
            max_time: Duration::from_millis(100),
            timeout: Duration::from_secs(3),
        };
        let r = kvm(&plan);
        assert!(!r.detail.is_empty());
        assert_eq!(r.exit_to_user.is_ok(), r.guest_mode.is_some(), "{r:?}");
    }
}
